//! Newtypes for the integer identifiers the relay hands out, so a user id is
//! never passed where a message id is expected.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(poem_openapi::NewType))]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<i64> for $name {
            fn from(value: i64) -> Self {
                Self(value)
            }
        }
    };
}
// v2's identifiers are made the same way.
pub(crate) use id_type;

id_type!(
    /// A relay account.
    UserId
);
id_type!(
    /// A message queued on the relay.
    MessageId
);
id_type!(
    /// A published identity key ("device") of a user.
    DeviceId
);
