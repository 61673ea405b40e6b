//! String fields of the wire types that carry rules: a username, a password, a
//! hex public key, a base64 ciphertext.
//!
//! On the wire they are plain JSON strings. They parse leniently (any string)
//! so that the server can answer a rule violation with the contract's
//! field-level `422` details (see [`crate::validate`]), while the OpenAPI schema
//! still documents each rule (length, pattern), so generated clients and API
//! fuzzers know them. A JSON value of the wrong type (a number for a username)
//! is refused at parse time.

use std::fmt;

use serde::{Deserialize, Serialize};

#[cfg(feature = "openapi")]
use crate::validate;

macro_rules! checked_string {
    ($(#[$meta:meta])* $name:ident, $schema:expr) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The text as received; not yet validated.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_inner(mut self) -> String {
                std::mem::take(&mut self.0)
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_owned())
            }
        }

        #[cfg(feature = "openapi")]
        impl poem_openapi::types::Type for $name {
            const IS_REQUIRED: bool = true;
            type RawValueType = Self;
            type RawElementValueType = Self;

            fn name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn schema_ref() -> poem_openapi::registry::MetaSchemaRef {
                let schema: fn() -> poem_openapi::registry::MetaSchema = $schema;
                poem_openapi::registry::MetaSchemaRef::Inline(Box::new(schema()))
            }

            fn as_raw_value(&self) -> Option<&Self::RawValueType> {
                Some(self)
            }

            fn raw_element_iter<'a>(
                &'a self,
            ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
                Box::new(self.as_raw_value().into_iter())
            }
        }

        #[cfg(feature = "openapi")]
        impl poem_openapi::types::ParseFromJSON for $name {
            fn parse_from_json(
                value: Option<serde_json::Value>,
            ) -> poem_openapi::types::ParseResult<Self> {
                match value {
                    Some(serde_json::Value::String(text)) => Ok(Self(text)),
                    other => Err(poem_openapi::types::ParseError::expected_type(
                        other.unwrap_or_default(),
                    )),
                }
            }
        }

        #[cfg(feature = "openapi")]
        impl poem_openapi::types::ToJSON for $name {
            fn to_json(&self) -> Option<serde_json::Value> {
                Some(serde_json::Value::String(self.0.clone()))
            }
        }
    };
}

// The v2 wire types (crate::v2) declare their own checked strings.
pub(crate) use checked_string;

#[cfg(feature = "openapi")]
pub(crate) fn string_schema(
    description: &'static str,
    min: Option<usize>,
    max: Option<usize>,
    pattern: Option<&str>,
) -> poem_openapi::registry::MetaSchema {
    let mut schema = poem_openapi::registry::MetaSchema::new("string");
    schema.description = Some(description);
    schema.min_length = min;
    schema.max_length = max;
    schema.pattern = pattern.map(str::to_owned);
    schema
}

#[cfg(not(feature = "openapi"))]
#[allow(dead_code)]
pub(crate) fn string_schema(_: &'static str, _: Option<usize>, _: Option<usize>, _: Option<&str>) {}

checked_string!(
    /// A username: 3–30 characters of `[A-Za-z0-9_-]`, unique case-insensitively.
    Username,
    || string_schema(
        "3 to 30 characters of A-Z, a-z, 0-9, '_' and '-'; unique ignoring case.",
        Some(validate::USERNAME_MIN),
        Some(validate::USERNAME_MAX),
        Some(validate::USERNAME_PATTERN),
    )
);

checked_string!(
    /// A password as sent to register or log in. Its `Debug` is redacted.
    Password,
    || {
        let mut schema = string_schema(
            "8 to 128 characters, with at least one uppercase letter (A-Z), one lowercase letter (a-z) and one digit.",
            Some(validate::PASSWORD_MIN),
            Some(validate::PASSWORD_MAX),
            Some(validate::PASSWORD_PATTERN),
        );
        schema.format = Some("password");
        schema
    }
);

checked_string!(
    /// The hex of a 32-byte X25519 public key.
    PublicKeyHex,
    || string_schema(
        "Hex of a 32-byte X25519 public key (64 hex digits).",
        Some(validate::PUBKEY_HEX_LEN),
        Some(validate::PUBKEY_HEX_LEN),
        Some("^[0-9a-fA-F]{64}$"),
    )
);

checked_string!(
    /// A device's label: at most 64 characters, no control characters.
    DeviceName,
    || string_schema(
        "Optional label of the device, at most 64 characters, no control characters; stored encrypted.",
        None,
        Some(validate::MAX_DEVICE_NAME_CHARS),
        Some("^[^\\u0000-\\u001F\\u007F-\\u009F]*$"),
    )
);

checked_string!(
    /// Opaque ciphertext, strict base64 (standard alphabet, padded).
    Base64Ciphertext,
    || {
        let mut schema = string_schema(
            "Opaque ciphertext: standard base64 with padding, at most 64 KiB once decoded. \
             Our clients put nonce(24) || crypto_box here.",
            Some(4),
            Some(validate::MAX_CIPHERTEXT_B64_CHARS),
            Some("^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"),
        );
        schema.format = Some("byte");
        schema
    }
);

impl fmt::Debug for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Debug for DeviceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Debug for PublicKeyHex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Debug for Base64Ciphertext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Base64Ciphertext({} chars)", self.0.len())
    }
}

checked_string!(
    /// An invite code, for relays with `registration = "invite"`. A JSON
    /// string only (a number or `true` is refused at parse time, not
    /// stringified). Its `Debug` is redacted: a code is a bearer credential.
    InviteCode,
    || string_schema(
        "The invite code the relay's operator gave you; needed where registration is by invitation.",
        None,
        None,
        None,
    )
);

impl fmt::Debug for InviteCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InviteCode(<redacted>)")
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl Drop for Password {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_debug_is_redacted() {
        let password = Password::from("Sup3rSecret");
        assert!(!format!("{password:?}").contains("Sup3r"));
    }

    #[test]
    fn serialize_as_plain_strings() {
        let name: Username = serde_json::from_str("\"alice\"").unwrap();
        assert_eq!(name.as_str(), "alice");
        assert_eq!(serde_json::to_string(&name).unwrap(), "\"alice\"");
        assert!(serde_json::from_str::<Username>("12").is_err());
        assert!(serde_json::from_str::<InviteCode>("false").is_err());
        assert!(!format!("{:?}", InviteCode::from("c0de-s3cret")).contains("s3cret"));
    }
}
