//! Reading what the user types: the password (no-echo prompt on a terminal,
//! `--password-stdin`, or `KAVRO_PASSWORD`) and a message's text (argument
//! or standard input).

use std::io::{BufRead, IsTerminal as _, Read};

use kavro_proto::crypto::MAX_TEXT_BYTES;
use kavro_proto::strings::Password;
use zeroize::Zeroizing;

use super::exit::UsageError;

/// Environment variable holding the password (for scripts).
pub const ENV_PASSWORD: &str = "KAVRO_PASSWORD";

/// Where the password comes from, in order of precedence.
pub fn password(from_stdin: bool, username: &str, confirm: bool) -> anyhow::Result<Password> {
    if from_stdin {
        return password_from_reader(&mut std::io::stdin().lock());
    }
    if let Some(value) = std::env::var_os(ENV_PASSWORD).filter(|v| !v.is_empty()) {
        let value = Zeroizing::new(
            value
                .into_string()
                .map_err(|_| UsageError(format!("{ENV_PASSWORD} is not valid UTF-8")))?,
        );
        return Ok(Password::from(value.as_str()));
    }
    if !std::io::stdin().is_terminal() {
        return Err(UsageError(format!(
            "no password given: type it at a terminal, pipe it with --password-stdin, or set {ENV_PASSWORD}"
        ))
        .into());
    }
    let first = Zeroizing::new(rpassword::prompt_password(format!(
        "Password for {username}: "
    ))?);
    if confirm {
        let again = Zeroizing::new(rpassword::prompt_password("Repeat the password: ")?);
        if *first != *again {
            return Err(UsageError("the two passwords differ; try again".to_owned()).into());
        }
    }
    Ok(Password::from(first.as_str()))
}

/// The first line of `reader`, without its line ending.
pub fn password_from_reader(reader: &mut impl BufRead) -> anyhow::Result<Password> {
    let mut line = Zeroizing::new(String::new());
    reader.read_line(&mut line)?;
    let trimmed = line.trim_end_matches(['\n', '\r']);
    if trimmed.is_empty() {
        return Err(UsageError("--password-stdin: standard input is empty".to_owned()).into());
    }
    Ok(Password::from(trimmed))
}

/// The message text: the argument, or standard input when there is none
/// or it is `-`.
pub fn message(text: Option<String>) -> anyhow::Result<String> {
    match text {
        Some(text) if text != "-" => Ok(text),
        _ => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprintln!("Type the message; end it with Ctrl-D on a line of its own.");
            }
            message_from_reader(stdin.lock())
        }
    }
}

/// Reads a message from `reader`: at most [`MAX_TEXT_BYTES`] of UTF-8; one
/// trailing line break (as `echo` adds) is dropped.
pub fn message_from_reader(reader: impl Read) -> anyhow::Result<String> {
    let limit = MAX_TEXT_BYTES as u64 + 2;
    let mut bytes = Vec::new();
    reader.take(limit).read_to_end(&mut bytes)?;
    let mut text = String::from_utf8(bytes)
        .map_err(|_| UsageError("the message is not valid UTF-8 text".to_owned()))?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    if text.len() > MAX_TEXT_BYTES {
        return Err(UsageError(format!(
            "the message is too long: at most {MAX_TEXT_BYTES} bytes fit in one message; split it"
        ))
        .into());
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_first_line_only() {
        let pw = password_from_reader(&mut &b"S3cret-pw\nignored\n"[..]).unwrap();
        assert_eq!(pw.as_str(), "S3cret-pw");
        let pw = password_from_reader(&mut &b"Crlf-Pw1\r\n"[..]).unwrap();
        assert_eq!(pw.as_str(), "Crlf-Pw1");
        let pw = password_from_reader(&mut &b"no-newline-A1"[..]).unwrap();
        assert_eq!(pw.as_str(), "no-newline-A1");
        let err = password_from_reader(&mut &b"\n"[..]).unwrap_err();
        assert!(err.downcast_ref::<UsageError>().is_some());
    }

    #[test]
    fn message_text() {
        assert_eq!(message(Some("hi".into())).unwrap(), "hi");
        assert_eq!(message_from_reader(&b"hello\n"[..]).unwrap(), "hello");
        assert_eq!(
            message_from_reader(&b"two\nlines\n\n"[..]).unwrap(),
            "two\nlines\n"
        );
        assert_eq!(message_from_reader(&b"crlf\r\n"[..]).unwrap(), "crlf");
        assert_eq!(message_from_reader(&b""[..]).unwrap(), "");
        assert!(message_from_reader(&[0xff, 0xfe][..]).is_err());
        let long = vec![b'x'; MAX_TEXT_BYTES + 1];
        let err = message_from_reader(&long[..]).unwrap_err();
        assert!(err.to_string().contains("too long"), "{err}");
        let max = vec![b'x'; MAX_TEXT_BYTES];
        assert_eq!(message_from_reader(&max[..]).unwrap().len(), MAX_TEXT_BYTES);
    }
}
