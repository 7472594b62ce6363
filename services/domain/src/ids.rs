//! Typed identifiers and stream names. Values are only built by parsing, so a
//! [`StreamName`] always holds a valid `<category>-<id>`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Whether `id` is a valid key id (credential keys, audit signing keys): 1-100 characters of
/// letters, digits, `.`, `_` or `-`.
pub fn is_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 100
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Why an identifier or name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The text is not a UUID.
    #[error("`{value}` is not a UUID")]
    NotUuid {
        /// The refused text.
        value: String,
    },
    /// The stream name is not `<category>-<id>`.
    #[error(
        "stream name `{value}` is invalid: {reason} (expected `<category>-<id>`, category \
         lowercase ascii letters, id ascii letters, digits, `-`, `_` or `.`, at most 200 bytes)"
    )]
    StreamName {
        /// The refused text.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// Wraps a UUID.
            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }
            /// A new random (v4) id.
            pub fn new_random() -> Self {
                Self(Uuid::new_v4())
            }
            /// The underlying UUID.
            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s)
                    .map(Self)
                    .map_err(|_| IdError::NotUuid { value: s.to_owned() })
            }
        }
    };
}

uuid_id!(
    /// A tenant: the unit of isolation for every row and stream.
    TenantId
);
uuid_id!(
    /// A single event, unique across the whole store.
    EventId
);

uuid_id!(
    /// A managed network device.
    DeviceId
);
uuid_id!(
    /// One durable workflow instance (its journal is the stream `workflow-<id>`).
    WorkflowId
);
uuid_id!(
    /// A fleet rollout (stream `rollout-<id>`).
    RolloutId
);
uuid_id!(
    /// A change request (stream `change-<id>`).
    ChangeRequestId
);

impl DeviceId {
    /// The device's event stream, `device-<id>`.
    pub fn stream(&self) -> StreamName {
        StreamName {
            name: format!("device-{}", self.0),
            category_len: "device".len(),
        }
    }
}

impl WorkflowId {
    /// The workflow's journal stream, `workflow-<id>`.
    pub fn stream(&self) -> StreamName {
        StreamName {
            name: format!("workflow-{}", self.0),
            category_len: "workflow".len(),
        }
    }
}

impl RolloutId {
    /// The rollout's event stream, `rollout-<id>`.
    pub fn stream(&self) -> StreamName {
        StreamName {
            name: format!("rollout-{}", self.0),
            category_len: "rollout".len(),
        }
    }
}

impl ChangeRequestId {
    /// The change request's event stream, `change-<id>`.
    pub fn stream(&self) -> StreamName {
        StreamName {
            name: format!("change-{}", self.0),
            category_len: "change".len(),
        }
    }
}

impl EventId {
    /// A new time-ordered (v7) id: appends stay at the right edge of the unique index.
    pub fn new_v7() -> Self {
        Self(Uuid::now_v7())
    }
}

/// The category part of a stream name (`device` in `device-42`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Category(String);

impl Category {
    /// Parses a category: 1-40 lowercase ascii letters.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if valid_category(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::StreamName {
                value: s.to_owned(),
                reason: "category must be 1-40 lowercase ascii letters",
            })
        }
    }

    /// The category as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn valid_category(s: &str) -> bool {
    !s.is_empty() && s.len() <= 40 && s.bytes().all(|b| b.is_ascii_lowercase())
}

/// A stream name `<category>-<id>`, e.g. `device-7f3c…` or `workflow-42`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StreamName {
    name: String,
    category_len: usize,
}

impl StreamName {
    /// Parses `<category>-<id>`.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let err = |reason| IdError::StreamName {
            value: s.to_owned(),
            reason,
        };
        if s.len() > 200 {
            return Err(err("longer than 200 bytes"));
        }
        let (category, id) = s.split_once('-').ok_or_else(|| err("no `-` separator"))?;
        if !valid_category(category) {
            return Err(err("category must be 1-40 lowercase ascii letters"));
        }
        if id.is_empty() {
            return Err(err("empty id"));
        }
        if !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(err("id has a character outside [A-Za-z0-9-_.]"));
        }
        Ok(Self {
            name: s.to_owned(),
            category_len: category.len(),
        })
    }

    /// Builds `<category>-<id>` from parts.
    pub fn from_parts(category: &Category, id: impl fmt::Display) -> Result<Self, IdError> {
        Self::parse(&format!("{category}-{id}"))
    }

    /// The whole name.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The category part.
    pub fn category(&self) -> &str {
        &self.name[..self.category_len]
    }

    /// The id part.
    pub fn id(&self) -> &str {
        &self.name[self.category_len + 1..]
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl TryFrom<String> for StreamName {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<StreamName> for String {
    fn from(value: StreamName) -> Self {
        value.name
    }
}

impl FromStr for StreamName {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_parse_category_and_id() {
        let s = StreamName::parse("device-3f2a-11").unwrap();
        assert_eq!(s.category(), "device");
        assert_eq!(s.id(), "3f2a-11");
    }

    #[test]
    fn bad_stream_names_are_refused_with_a_reason() {
        for bad in [
            "device",
            "-x",
            "Device-1",
            "device-",
            "dev ice-1",
            "device-a b",
            "device-ä",
        ] {
            let err = StreamName::parse(bad).unwrap_err();
            assert!(err.to_string().contains("invalid"), "{bad}: {err}");
        }
        assert!(StreamName::parse(&format!("device-{}", "x".repeat(300))).is_err());
    }
}
