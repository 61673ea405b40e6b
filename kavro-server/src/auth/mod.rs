//! Who the caller is: password hashing ([`password`]), access tokens
//! ([`tokens`]) and the strength check of a configured token secret ([`entropy`]).

pub mod entropy;
pub mod password;
pub mod tokens;
