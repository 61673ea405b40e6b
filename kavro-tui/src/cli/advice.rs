//! What the command line tells the user to do about an error. The core's
//! errors state facts (`session::SessionError`); the commands to run next
//! are phrased here, for this front end only.

use crate::session::{NotLoggedIn, SessionError};

/// The advice for `err`, if there is any: one or more sentences.
pub fn for_session(err: &SessionError) -> Option<String> {
    let text = match err {
        SessionError::NotLoggedIn(why) => not_logged_in(why),
        SessionError::AuthRefused {
            relogin: Some(name),
            ..
        } => format!("Run `kavro login {name}`."),
        SessionError::AuthRefused { relogin: None, .. } => {
            "Check the username and password.".to_owned()
        }
        SessionError::KeyChanged { username } => format!(
            "Compare safety numbers with `kavro fingerprint {username}` (in person or over \
             another channel), then run `kavro trust {username} <the safety number you compared>`."
        ),
        SessionError::NotTheKeyCompared { username } => format!(
            "Run `kavro fingerprint {username}` again, compare the number it shows now with \
             {username}, and pass that one to `kavro trust {username}`."
        ),
        SessionError::Unreachable { .. } => "Check that it is running and that --server / \
             KAVRO_SERVER points to it, then try again."
            .to_owned(),
        SessionError::Certificate { .. } => "If the relay uses its own certificate authority, \
             give its certificate with --ca-cert FILE (or KAVRO_CA_CERT); otherwise check that \
             --server / KAVRO_SERVER names the host the certificate is for."
            .to_owned(),
        SessionError::Queued { cause } => {
            let sent_later = "Your next `kavro send` or `kavro inbox` sends it.";
            return Some(match for_session(cause) {
                Some(first) => format!("{first} {sent_later}"),
                None => sent_later.to_owned(),
            });
        }
        SessionError::UsernameTaken { username, .. } => {
            format!("Choose another name, or run `kavro login {username}` if it is yours.")
        }
        SessionError::ProfileInUse { username, .. } => format!(
            "Run `kavro login {username}` for that account, or use another profile for another \
             account (`kavro --profile NAME ...`)."
        ),
        SessionError::FilesNotReceivable { username } => format!(
            "Ask {username} to send you a message from their Kavro client, run `kavro inbox`, \
             then send the file again. A text message reaches them as it is."
        ),
        SessionError::NoUsableKey { username, .. } => {
            format!("Ask {username} to run `kavro login {username}`.")
        }
        _ => return None,
    };
    Some(text)
}

fn not_logged_in(why: &NotLoggedIn) -> String {
    match why {
        NotLoggedIn::NoAccount { .. } => "Run `kavro login <username>`, or `kavro register \
             <username>` to create an account."
            .to_owned(),
        NotLoggedIn::OtherServer { .. } => "Drop --server / KAVRO_SERVER, or use another \
             profile (`kavro --profile NAME login <username>`)."
            .to_owned(),
        NotLoggedIn::NoKey { username, .. } => format!(
            "Run `kavro login {username}` (this device will get a new key, which your contacts \
             will see as a key change)."
        ),
        NotLoggedIn::KeyNotPublished { username, .. } => {
            format!("Run `kavro login {username}` to publish it.")
        }
        NotLoggedIn::LoggedOut { .. } | NotLoggedIn::OtherAccount { .. } => format!(
            "Run `kavro login {}`.",
            why.username().unwrap_or("<username>")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advice_names_the_commands() {
        let cases = [
            (
                SessionError::from(NotLoggedIn::NoAccount {
                    profile: "default".into(),
                }),
                "kavro register",
            ),
            (
                NotLoggedIn::LoggedOut {
                    username: "alice".into(),
                }
                .into(),
                "kavro login alice",
            ),
            (
                NotLoggedIn::OtherServer {
                    profile: "default".into(),
                    username: "alice".into(),
                    account_server: "a".into(),
                    server: "b".into(),
                }
                .into(),
                "--profile",
            ),
            (
                SessionError::KeyChanged {
                    username: "bob".into(),
                },
                "kavro trust bob",
            ),
            (
                SessionError::AuthRefused {
                    message: "no".into(),
                    relogin: Some("alice".into()),
                },
                "kavro login alice",
            ),
            (
                SessionError::Queued {
                    cause: Box::new(SessionError::Unreachable {
                        server: "s".into(),
                        detail: "d".into(),
                    }),
                },
                "KAVRO_SERVER",
            ),
            (
                SessionError::UsernameTaken {
                    username: "alice".into(),
                    message: "taken".into(),
                },
                "kavro login alice",
            ),
        ];
        for (err, needle) in cases {
            let advice = for_session(&err).unwrap_or_default();
            assert!(advice.contains(needle), "{err}: {advice}");
            // The core's own text names no command.
            assert!(!err.to_string().contains("`kavro"), "{err}");
        }
        assert_eq!(for_session(&SessionError::NoSuchUser("x".into())), None);
    }
}
