//! Exit codes (documented in `kavro --help`, see `args::EXIT_CODES`) and the
//! mapping from errors to them.

use crate::config::ConfigError;
use crate::keystore::KeystoreError;
use crate::relay::RelayError;
use crate::session::SessionError;
use crate::v2::V2Error;

/// Success.
pub const OK: u8 = 0;
/// Anything not listed below.
pub const OTHER: u8 = 1;
/// Bad arguments or input (clap uses 2 as well).
pub const USAGE: u8 = 2;
/// Not logged in, or the relay refused the password or the session.
pub const AUTH: u8 = 3;
/// A contact's key changed, or they have no usable key.
pub const KEY: u8 = 4;
/// The relay is unreachable or rate limiting.
pub const UNAVAILABLE: u8 = 5;
/// No such user, or no such conversation.
pub const NO_USER: u8 = 6;
/// The relay's TLS certificate is not trusted (see `--ca-cert`).
pub const CERTIFICATE: u8 = 7;

/// A usage error found after parsing (no password source, empty input, ...).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The exit code for a session error.
pub fn for_session(err: &SessionError) -> u8 {
    match err {
        SessionError::NotLoggedIn(_) | SessionError::AuthRefused { .. } => AUTH,
        SessionError::KeyChanged { .. }
        | SessionError::NotTheKeyCompared { .. }
        | SessionError::NoUsableKey { .. } => KEY,
        SessionError::Unreachable { .. } | SessionError::RateLimited { .. } => UNAVAILABLE,
        SessionError::NoSuchUser(_) => NO_USER,
        SessionError::Certificate { .. } => CERTIFICATE,
        SessionError::InvalidInput(_)
        | SessionError::FilesNotReceivable { .. }
        | SessionError::UsernameTaken { .. }
        | SessionError::Keystore {
            source: KeystoreError::InvalidChoice(_),
            ..
        } => USAGE,
        SessionError::Queued { cause } => for_session(cause),
        SessionError::Config(config) => for_config(config),
        SessionError::Relay(relay) if relay.is_transient() => UNAVAILABLE,
        SessionError::ProfileInUse { .. }
        | SessionError::Keystore { .. }
        | SessionError::History(_)
        | SessionError::Seal(_)
        | SessionError::Attachment(_)
        | SessionError::Relay(_) => OTHER,
    }
}

fn for_config(err: &ConfigError) -> u8 {
    match err {
        ConfigError::InvalidServer { .. } | ConfigError::Paths(_) => USAGE,
        _ => OTHER,
    }
}

/// The exit code for a Kavro v2 error.
pub fn for_v2(err: &V2Error) -> u8 {
    match err {
        V2Error::Relay(RelayError::Unauthorized(_)) | V2Error::NoDevice => AUTH,
        V2Error::Relay(RelayError::Certificate { .. }) => CERTIFICATE,
        V2Error::Relay(RelayError::NotFound(_)) | V2Error::UnknownConversation(_) => NO_USER,
        V2Error::Relay(relay) if relay.is_transient() => UNAVAILABLE,
        V2Error::NoDevices(_) | V2Error::Untrusted { .. } => KEY,
        V2Error::DirectPending(_) => UNAVAILABLE,
        V2Error::Queued(cause) => for_v2(cause),
        // The last: a file over the relay's cap, refused as given.
        V2Error::NameTaken(_)
        | V2Error::TooLong(_)
        | V2Error::File(_)
        | V2Error::Relay(RelayError::Rejected { status: 413, .. }) => USAGE,
        V2Error::Relay(_)
        | V2Error::Store(_)
        | V2Error::Mls { .. }
        | V2Error::AlreadyDevice(_)
        | V2Error::Refused(_)
        | V2Error::Contended
        | V2Error::Attachment(_)
        | V2Error::LinkNotApproved(_) => OTHER,
    }
}

/// The exit code for any error: the first cause in the chain that has one.
pub fn for_error(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(v2) = cause.downcast_ref::<V2Error>() {
            return for_v2(v2);
        }
        if let Some(session) = cause.downcast_ref::<SessionError>() {
            return for_session(session);
        }
        if let Some(config) = cause.downcast_ref::<ConfigError>() {
            return for_config(config);
        }
        if cause.downcast_ref::<UsageError>().is_some()
            || matches!(
                cause.downcast_ref::<KeystoreError>(),
                Some(KeystoreError::InvalidChoice(_))
            )
            || cause
                .downcast_ref::<crate::paths::PathsError>()
                .is_some_and(|e| matches!(e, crate::paths::PathsError::InvalidProfile(_)))
        {
            return USAGE;
        }
    }
    OTHER
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn v2_errors_map_to_documented_codes() {
        let cases = [
            (V2Error::UnknownConversation("#x".into()), NO_USER),
            (V2Error::NoDevices("bob".into()), KEY),
            (V2Error::NameTaken("x".into()), USAGE),
            (
                V2Error::Relay(RelayError::Unauthorized("revoked".into())),
                AUTH,
            ),
            (V2Error::Contended, OTHER),
            (
                V2Error::Untrusted {
                    username: "bob".into(),
                    reason: "the root changed".into(),
                },
                KEY,
            ),
            (V2Error::DirectPending("bob".into()), UNAVAILABLE),
            (
                V2Error::Relay(RelayError::Certificate {
                    server: "https://relay.example".into(),
                    detail: "unknown issuer".into(),
                }),
                CERTIFICATE,
            ),
        ];
        for (err, code) in cases {
            assert_eq!(for_error(&anyhow::Error::new(err)), code);
        }
    }

    #[test]
    fn session_errors_map_to_documented_codes() {
        let cases: Vec<(SessionError, u8)> = vec![
            (
                crate::session::NotLoggedIn::NoAccount {
                    profile: "x".into(),
                }
                .into(),
                3,
            ),
            (
                SessionError::AuthRefused {
                    message: "no".into(),
                    relogin: None,
                },
                3,
            ),
            (
                SessionError::KeyChanged {
                    username: "bob".into(),
                },
                4,
            ),
            (
                SessionError::NoUsableKey {
                    username: "bob".into(),
                    reason: "none".into(),
                },
                4,
            ),
            (
                SessionError::Unreachable {
                    server: "s".into(),
                    detail: "d".into(),
                },
                5,
            ),
            (
                SessionError::RateLimited {
                    retry_after: Some(Duration::from_secs(3)),
                },
                5,
            ),
            (SessionError::NoSuchUser("zed".into()), 6),
            (SessionError::InvalidInput("bad".into()), 2),
            (
                SessionError::Queued {
                    cause: Box::new(SessionError::Unreachable {
                        server: "s".into(),
                        detail: "d".into(),
                    }),
                },
                5,
            ),
            (
                SessionError::Relay(RelayError::Server {
                    status: 500,
                    message: "boom".into(),
                    retry_after: None,
                }),
                5,
            ),
            (
                SessionError::Relay(RelayError::Rejected {
                    status: 413,
                    message: "too large".into(),
                    details: Vec::new(),
                }),
                1,
            ),
            (
                SessionError::ProfileInUse {
                    profile: "default".into(),
                    username: "alice".into(),
                    server: "s".into(),
                },
                1,
            ),
        ];
        for (err, code) in cases {
            assert_eq!(for_session(&err), code, "{err}");
            assert_eq!(for_error(&anyhow::Error::new(err)), code);
        }
    }

    #[test]
    fn context_does_not_hide_the_code() {
        let err = anyhow::Error::new(SessionError::NoSuchUser("zed".into())).context("sending");
        assert_eq!(for_error(&err), NO_USER);
        let err = anyhow::Error::new(UsageError("no password".into()));
        assert_eq!(for_error(&err), USAGE);
        assert_eq!(for_error(&anyhow::anyhow!("something else")), OTHER);
        let err = anyhow::Error::new(ConfigError::InvalidServer {
            url: "x".into(),
            reason: "y".into(),
        });
        assert_eq!(for_error(&err), USAGE);
    }

    #[test]
    fn rate_limit_message_says_how_long() {
        let err = SessionError::RateLimited {
            retry_after: Some(Duration::from_secs(42)),
        };
        assert!(err.to_string().contains("wait 42 s"), "{err}");
    }
}
