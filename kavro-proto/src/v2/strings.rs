//! String fields of the v2 wire types that carry rules (base64 of MLS bytes,
//! of an Ed25519 key or signature, a group id). Like the v1 checked strings
//! they parse leniently and are validated by the relay, so a rule violation
//! gets the contract's field-level `422`, while the schema documents the rule.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::strings::checked_string;
#[cfg(feature = "openapi")]
use crate::strings::string_schema;

#[cfg(feature = "openapi")]
use super::limits::{GROUP_ID_MAX_CHARS, MAX_MLS_MESSAGE_B64_CHARS};

#[cfg(feature = "openapi")]
const B64_PATTERN: &str = "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$";

checked_string!(
    /// Opaque MLS bytes (a TLS-serialised `MLSMessage` or `KeyPackage`),
    /// standard base64 with padding.
    MlsBytes,
    || {
        let mut schema = string_schema(
            "TLS-serialised MLS structure (RFC 9420), standard base64 with padding; \
             at most 256 KiB decoded (8 KiB for a key package).",
            Some(4),
            Some(MAX_MLS_MESSAGE_B64_CHARS),
            Some(B64_PATTERN),
        );
        schema.format = Some("byte");
        schema
    }
);

checked_string!(
    /// An Ed25519 public key (32 bytes), standard base64 with padding.
    SignatureKeyB64,
    || {
        let mut schema = string_schema(
            "Ed25519 public key (32 bytes), standard base64 with padding (44 characters).",
            Some(44),
            Some(44),
            Some("^[A-Za-z0-9+/]{43}=$"),
        );
        schema.format = Some("byte");
        schema
    }
);

checked_string!(
    /// An Ed25519 signature (64 bytes), standard base64 with padding.
    SignatureB64,
    || {
        let mut schema = string_schema(
            "Ed25519 signature (64 bytes), standard base64 with padding (88 characters).",
            Some(88),
            Some(88),
            Some("^[A-Za-z0-9+/]{86}==$"),
        );
        schema.format = Some("byte");
        schema
    }
);

checked_string!(
    /// An MLS group id: 1 to 64 bytes, unpadded base64url.
    GroupIdText,
    || string_schema(
        "MLS group id: 1 to 64 bytes, unpadded base64url (RFC 4648 section 5).",
        Some(2),
        Some(GROUP_ID_MAX_CHARS),
        Some("^[A-Za-z0-9_-]+$"),
    )
);

impl fmt::Debug for MlsBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MlsBytes({} chars)", self.as_str().len())
    }
}

impl fmt::Debug for SignatureKeyB64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Debug for SignatureB64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Debug for GroupIdText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}
