//! Who the caller is: password hashing ([`password`]) and access tokens ([`tokens`]).

pub mod password;
pub mod tokens;
