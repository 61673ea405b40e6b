//! Identifiers of v2: a device (relay-assigned), a stored group message, a
//! position in a device's queue, and an MLS group id (chosen by the client).

use std::fmt;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::limits::{GROUP_ID_MAX_BYTES, GROUP_ID_MAX_CHARS};
use crate::ids::id_type;

id_type!(
    /// A device of an account (an MLS client), assigned by the relay.
    MlsDeviceId
);
id_type!(
    /// A group message stored on the relay (one body, many queue entries).
    V2MessageId
);
id_type!(
    /// A position in one device's queue: strictly increasing, gap-free as
    /// assigned, in the order the relay committed the entries.
    QueueSeq
);

/// An MLS group id: 1 to 64 bytes chosen by the group's creator. On the wire
/// (paths and bodies) it is unpadded base64url (RFC 4648 §5).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId(Vec<u8>);

/// Why a group id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupIdError {
    #[error("group_id must be unpadded base64url (A-Z a-z 0-9 - _)")]
    NotBase64Url,
    #[error("group_id must be 1 to {GROUP_ID_MAX_BYTES} bytes")]
    Length,
}

impl GroupId {
    /// A group id from its bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, GroupIdError> {
        if bytes.is_empty() || bytes.len() > GROUP_ID_MAX_BYTES {
            return Err(GroupIdError::Length);
        }
        Ok(Self(bytes.to_vec()))
    }

    /// Parses the wire form (unpadded base64url).
    pub fn parse(text: &str) -> Result<Self, GroupIdError> {
        if text.is_empty() || text.len() > GROUP_ID_MAX_CHARS {
            return Err(GroupIdError::Length);
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| GroupIdError::NotBase64Url)?;
        Self::from_bytes(&bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The wire form.
    pub fn to_text(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&self.0)
    }
}

impl fmt::Debug for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GroupId({})", self.to_text())
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_ids_round_trip_and_bounds() {
        let id = GroupId::from_bytes(&[0xfb, 0xff, 0x01]).unwrap();
        assert_eq!(id.to_text(), "-_8B");
        assert_eq!(GroupId::parse("-_8B").unwrap(), id);
        assert_eq!(GroupId::parse(""), Err(GroupIdError::Length));
        assert_eq!(GroupId::parse("+/8B"), Err(GroupIdError::NotBase64Url));
        assert_eq!(GroupId::parse("-_8B=="), Err(GroupIdError::NotBase64Url));
        let max = GroupId::from_bytes(&[1; GROUP_ID_MAX_BYTES]).unwrap();
        assert_eq!(GroupId::parse(&max.to_text()).unwrap(), max);
        let over =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([1u8; GROUP_ID_MAX_BYTES + 1]);
        assert_eq!(GroupId::parse(&over), Err(GroupIdError::Length));
        assert_eq!(GroupId::from_bytes(&[]).unwrap_err(), GroupIdError::Length);
    }
}
