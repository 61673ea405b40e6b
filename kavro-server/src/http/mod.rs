//! HTTP plumbing around the API: the body-size cap, security headers, the
//! client address behind trusted proxies, request metrics, and the rendering
//! of framework errors in the contract's JSON shape.

pub mod allow;
pub mod body_limit;
pub mod client_ip;
pub mod conn_guard;
pub mod errors;
pub mod headers;
pub mod metrics;
