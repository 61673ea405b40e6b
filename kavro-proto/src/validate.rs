//! The rules for valid input, shared so the client can refuse bad input before
//! a round trip and the server enforces exactly the same thing.
//!
//! Every check returns a human-readable reason; the server turns it into the
//! `details` of a `422 Validation failed` body.

use base64::Engine as _;

/// Request bodies larger than this are refused with `413`.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Largest decoded ciphertext the relay accepts.
pub const MAX_CIPHERTEXT_BYTES: usize = 64 * 1024;
/// Largest `metadata` of a message, as compact serialized JSON.
pub const MAX_METADATA_BYTES: usize = 4 * 1024;
/// Longest `device_name`, in characters.
pub const MAX_DEVICE_NAME_CHARS: usize = 64;
/// Username length bounds, in characters.
pub const USERNAME_MIN: usize = 3;
pub const USERNAME_MAX: usize = 30;
/// Password length bounds, in characters.
pub const PASSWORD_MIN: usize = 8;
pub const PASSWORD_MAX: usize = 128;
/// Inbox page size bounds and default.
pub const INBOX_LIMIT_MIN: u32 = 1;
pub const INBOX_LIMIT_MAX: u32 = 200;
pub const INBOX_LIMIT_DEFAULT: u32 = 50;
/// Longest long-poll, in seconds.
pub const INBOX_WAIT_MAX: u32 = 60;
/// Most ids in one batch acknowledgement.
pub const BATCH_ACK_MAX: usize = 500;
/// Longest base64 text of a ciphertext: the encoding of 64 KiB.
pub const MAX_CIPHERTEXT_B64_CHARS: usize = MAX_CIPHERTEXT_BYTES.div_ceil(3) * 4;
/// Length of a hex-encoded X25519 public key.
pub const PUBKEY_HEX_LEN: usize = 64;

/// The username pattern, as documented in the OpenAPI spec.
pub const USERNAME_PATTERN: &str = "^[A-Za-z0-9_-]{3,30}$";
/// The password classes as a pattern without look-ahead (so every schema
/// tool can use it): the three classes in any order. Length is `minLength` /
/// `maxLength` beside it.
pub const PASSWORD_PATTERN: &str = "^(?:[\\s\\S]*[A-Z][\\s\\S]*[a-z][\\s\\S]*[0-9]|[\\s\\S]*[A-Z][\\s\\S]*[0-9][\\s\\S]*[a-z]|[\\s\\S]*[a-z][\\s\\S]*[A-Z][\\s\\S]*[0-9]|[\\s\\S]*[a-z][\\s\\S]*[0-9][\\s\\S]*[A-Z]|[\\s\\S]*[0-9][\\s\\S]*[A-Z][\\s\\S]*[a-z]|[\\s\\S]*[0-9][\\s\\S]*[a-z][\\s\\S]*[A-Z])[\\s\\S]*$";

/// A username is 3–30 characters of `[A-Za-z0-9_-]`.
pub fn username(name: &str) -> Result<(), String> {
    let len = name.chars().count();
    if !(USERNAME_MIN..=USERNAME_MAX).contains(&len) {
        return Err(format!(
            "must be {USERNAME_MIN} to {USERNAME_MAX} characters long (got {len})"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "may contain only letters A-Z and a-z, digits, '_' and '-' (found {bad:?})"
        ));
    }
    Ok(())
}

/// The case-insensitive form under which a username is unique.
pub fn normalize_username(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// A password is 8–128 characters with an uppercase letter (A-Z), a lowercase
/// letter (a-z) and a digit (0-9). The reason names everything that is missing.
pub fn password(password: &str) -> Result<(), String> {
    let len = password.chars().count();
    let mut missing = Vec::new();
    if len < PASSWORD_MIN {
        missing.push(format!("at least {PASSWORD_MIN} characters"));
    }
    if len > PASSWORD_MAX {
        return Err(format!("must be at most {PASSWORD_MAX} characters long"));
    }
    if !password.chars().any(|c| c.is_ascii_uppercase()) {
        missing.push("an uppercase letter".to_owned());
    }
    if !password.chars().any(|c| c.is_ascii_lowercase()) {
        missing.push("a lowercase letter".to_owned());
    }
    if !password.chars().any(|c| c.is_ascii_digit()) {
        missing.push("a digit".to_owned());
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("must contain {}", missing.join(", ")))
    }
}

/// Parses the hex of a 32-byte X25519 public key (either case).
pub fn pubkey_hex(text: &str) -> Result<[u8; 32], String> {
    if text.len() != PUBKEY_HEX_LEN {
        return Err(format!(
            "must be {PUBKEY_HEX_LEN} hex characters (32 bytes), got {} characters",
            text.chars().count()
        ));
    }
    let mut key = [0u8; 32];
    hex::decode_to_slice(text, &mut key)
        .map_err(|_| "must contain only hex digits 0-9 and a-f".to_owned())?;
    Ok(key)
}

/// A device name is optional and at most 64 characters, without control characters.
pub fn device_name(name: &str) -> Result<(), String> {
    if name.chars().count() > MAX_DEVICE_NAME_CHARS {
        return Err(format!(
            "must be at most {MAX_DEVICE_NAME_CHARS} characters"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("must not contain control characters".to_owned());
    }
    Ok(())
}

/// A message's `metadata` is at most [`MAX_METADATA_BYTES`] of compact JSON.
pub fn metadata(value: &serde_json::Value) -> Result<(), String> {
    let size = serde_json::to_vec(value).map_or(usize::MAX, |bytes| bytes.len());
    if size > MAX_METADATA_BYTES {
        return Err(format!(
            "must be at most {MAX_METADATA_BYTES} bytes of JSON (got {size})"
        ));
    }
    Ok(())
}

/// Why a ciphertext was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CiphertextError {
    #[error("ciphertext is not valid base64 (standard alphabet, padded, no whitespace)")]
    InvalidBase64,
    /// Longer than any base64 of 64 KiB can be (a schema violation).
    #[error("ciphertext is longer than {MAX_CIPHERTEXT_B64_CHARS} characters")]
    TooLong,
    #[error("ciphertext is larger than {MAX_CIPHERTEXT_BYTES} bytes once decoded")]
    TooLarge,
    #[error("ciphertext is empty")]
    Empty,
}

/// Decodes strict base64: standard alphabet, padding required, no whitespace,
/// canonical trailing bits.
pub fn base64_strict(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// Encodes with the standard alphabet and padding, the form the relay returns.
pub fn base64_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes and bounds a message ciphertext.
pub fn ciphertext(text: &str) -> Result<Vec<u8>, CiphertextError> {
    // A bound before decoding: base64 is 4 characters per 3 bytes.
    if text.len() > MAX_CIPHERTEXT_B64_CHARS {
        return Err(CiphertextError::TooLong);
    }
    let bytes = base64_strict(text).ok_or(CiphertextError::InvalidBase64)?;
    if bytes.is_empty() {
        return Err(CiphertextError::Empty);
    }
    if bytes.len() > MAX_CIPHERTEXT_BYTES {
        return Err(CiphertextError::TooLarge);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert!(username("alice").is_ok());
        assert!(username("A_b-9").is_ok());
        assert!(username("ab").is_err());
        assert!(username(&"a".repeat(31)).is_err());
        assert!(username(&"a".repeat(30)).is_ok());
        assert!(username("al ice").is_err());
        assert!(username("alice'; DROP TABLE users;--").is_err());
        assert!(username("ålice").is_err());
        assert_eq!(normalize_username("AliCe"), "alice");
    }

    #[test]
    fn metadata_is_capped_at_4_kib_of_json() {
        // `"` + 4094 characters + `"` is exactly 4096 bytes.
        let at_limit = serde_json::Value::String("x".repeat(MAX_METADATA_BYTES - 2));
        assert!(metadata(&at_limit).is_ok());
        let over = serde_json::Value::String("x".repeat(MAX_METADATA_BYTES - 1));
        let err = metadata(&over).unwrap_err();
        assert!(err.contains("4096") && err.contains("4097"), "{err}");
        assert!(metadata(&serde_json::json!({"n": 1, "tags": ["a", "b"]})).is_ok());
        // Escapes count as sent: 700 newlines are 1,400 bytes of JSON text.
        let nested = serde_json::json!([vec!["\n".repeat(700); 3]]);
        assert!(metadata(&nested).is_err());
    }

    #[test]
    fn passwords_name_what_is_missing() {
        assert!(password("Passw0rd").is_ok());
        let err = password("password").unwrap_err();
        assert!(err.contains("uppercase") && err.contains("digit"), "{err}");
        assert!(!err.contains("lowercase"), "{err}");
        let err = password("Ab1").unwrap_err();
        assert!(err.contains("at least 8"), "{err}");
        assert!(password(&format!("Aa1{}", "x".repeat(126))).is_err());
        assert!(password(&format!("Aa1{}", "x".repeat(125))).is_ok());
        assert!(
            password("ÉMILE1234é").is_err(),
            "the classes are ASCII, as documented"
        );
    }

    #[test]
    fn password_pattern_agrees_with_the_rule() {
        let pattern = regex::Regex::new(PASSWORD_PATTERN).unwrap();
        let within_length = |p: &str| (PASSWORD_MIN..=PASSWORD_MAX).contains(&p.chars().count());
        for sample in [
            "Passw0rd",
            "0aA00000",
            "aaaaaaaA1",
            "1\nAa....",
            "ÉMILE1234é",
            "password",
            "PASSWORD1",
            "12345678",
            "aB3",
            "Ab1 with spaces",
            "日本語Aa1日本語",
        ] {
            assert_eq!(
                password(sample).is_ok(),
                pattern.is_match(sample) && within_length(sample),
                "{sample:?}"
            );
        }
        let names = regex::Regex::new(USERNAME_PATTERN).unwrap();
        for sample in [
            "alice",
            "ab",
            "a-b_c",
            "x".repeat(31).as_str(),
            "é1234",
            "bad name",
        ] {
            assert_eq!(
                username(sample).is_ok(),
                names.is_match(sample),
                "{sample:?}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn password_pattern_matches_the_rule_on_any_text(text in "[a-zA-Z0-9 é\\n]{0,40}") {
            let pattern = regex::Regex::new(PASSWORD_PATTERN).unwrap();
            let length_ok = (PASSWORD_MIN..=PASSWORD_MAX).contains(&text.chars().count());
            proptest::prop_assert_eq!(password(&text).is_ok(), pattern.is_match(&text) && length_ok);
        }
    }

    #[test]
    fn pubkeys() {
        assert_eq!(pubkey_hex(&"ab".repeat(32)).unwrap(), [0xab; 32]);
        assert_eq!(pubkey_hex(&"AB".repeat(32)).unwrap(), [0xab; 32]);
        assert!(pubkey_hex(&"ab".repeat(31)).is_err());
        assert!(pubkey_hex(&"zz".repeat(32)).is_err());
        assert!(pubkey_hex(&"é".repeat(32)).is_err());
    }

    #[test]
    fn strict_base64() {
        assert_eq!(base64_strict("aGk="), Some(b"hi".to_vec()));
        assert_eq!(base64_strict("aGk"), None, "padding is required");
        assert_eq!(base64_strict("aG k="), None, "no whitespace");
        assert_eq!(base64_strict("aGk=\n"), None);
        assert_eq!(base64_strict("aGl="), None, "non-canonical trailing bits");
        assert_eq!(base64_strict("a-_="), None, "url-safe alphabet is refused");
        assert_eq!(ciphertext(""), Err(CiphertextError::Empty));
        let big = base64_encode(&vec![0u8; MAX_CIPHERTEXT_BYTES + 1]);
        assert_eq!(ciphertext(&big), Err(CiphertextError::TooLarge));
        let max = base64_encode(&vec![0u8; MAX_CIPHERTEXT_BYTES]);
        assert_eq!(ciphertext(&max).map(|b| b.len()), Ok(MAX_CIPHERTEXT_BYTES));
    }

    #[test]
    fn device_names() {
        assert!(device_name("laptop").is_ok());
        assert!(device_name(&"x".repeat(65)).is_err());
        assert!(device_name("a\u{0}b").is_err());
    }
}
