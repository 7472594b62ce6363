//! Event envelopes: what a caller appends ([`NewEvent`]) and what the store gives back
//! ([`RecordedEvent`]), with typed payload decoding and upcasting, and the typed event enum
//! of an aggregate ([`EventEnum`], declared with `event_enum!`): one variant per event type
//! of the stream category, decoded by type name and schema version (upcasting older
//! versions, so stored events read back unchanged) and encoded back to a [`NewEvent`].

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::ids::{EventId, StreamName, TenantId};

/// Who caused an event (DESIGN invariant 6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Actor {
    /// A signed-in user.
    User {
        /// The user's id.
        id: Uuid,
    },
    /// An automation client using an API key.
    ApiKey {
        /// The key's id (never the secret).
        id: Uuid,
    },
    /// A component of the platform itself (`poller`, `worker`, `relay`, ...).
    System {
        /// The component's name.
        component: String,
    },
}

impl Actor {
    /// A system component as the actor.
    pub fn system(component: &str) -> Self {
        Self::System {
            component: component.to_owned(),
        }
    }
}

/// Metadata every event carries besides its payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    /// Who caused it.
    pub actor: Actor,
    /// The id of the command or event that directly caused this one.
    pub causation_id: Uuid,
    /// The id shared by everything that one request or workflow caused.
    pub correlation_id: Uuid,
}

impl EventMetadata {
    /// Metadata for an event caused by a fresh command: causation and correlation are the
    /// same new id.
    pub fn for_command(actor: Actor, command_id: Uuid) -> Self {
        Self {
            actor,
            causation_id: command_id,
            correlation_id: command_id,
        }
    }
}

/// A typed event payload: a serde type with a stable name and schema version.
pub trait EventType: Serialize + DeserializeOwned {
    /// The event type name, `[A-Za-z0-9_]{1,100}` (it becomes part of NATS subjects).
    const TYPE: &'static str;
    /// The current schema version of this payload (starts at 1).
    const SCHEMA_VERSION: u32;

    /// Turns a payload written under an older schema version into the shape of the next
    /// version. The default knows no older versions.
    fn upcast(from_version: u32, payload: serde_json::Value) -> Result<serde_json::Value, String> {
        let _ = payload;
        Err(format!("no upcaster from schema version {from_version}"))
    }
}

/// The version a stream must be at for an append to go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// Append whatever the stream's version.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must be exactly at this version (its last event has this version).
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream currently at `current` (0 = no stream) satisfies this expectation.
    pub fn admits(self, current: u64) -> bool {
        match self {
            Self::Any => true,
            Self::NoStream => current == 0,
            Self::Exact(n) => current == n,
        }
    }
}

/// Why an event could not be built or decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The event type name is not usable.
    #[error("event type name `{name}` is invalid: it must be 1-100 characters of [A-Za-z0-9_]")]
    BadTypeName {
        /// The refused name.
        name: String,
    },
    /// The stored event is of another type than asked for.
    #[error("event at position {position} is `{found}`, not `{expected}`")]
    WrongType {
        /// Global position of the event.
        position: i64,
        /// The asked-for type.
        expected: &'static str,
        /// The stored type.
        found: String,
    },
    /// The stored schema version is newer than this code knows, or has no upcaster.
    #[error(
        "event `{event_type}` at position {position} has schema version {found}; this build \
         reads up to version {supported}: {detail}"
    )]
    UnknownVersion {
        /// Global position of the event.
        position: i64,
        /// The event type.
        event_type: String,
        /// The stored schema version.
        found: u32,
        /// The newest version this build knows.
        supported: u32,
        /// What is missing.
        detail: String,
    },
    /// The payload does not match the schema.
    #[error(
        "event `{event_type}` at position {position} has a payload that does not match its schema"
    )]
    Payload {
        /// Global position of the event.
        position: i64,
        /// The event type.
        event_type: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// The stored event's type is not one of its stream category's event types (written by
    /// newer code, or by mistake). Folds that tolerate it (older code reading a newer stream)
    /// match this variant explicitly; it is never skipped silently.
    #[error("event at position {position} is `{found}`, not an event type of `{category}` streams")]
    UnknownType {
        /// Global position of the event (or its stream version, where no position is known).
        position: i64,
        /// The stream category whose enum was asked for.
        category: &'static str,
        /// The stored type.
        found: String,
    },
    /// A payload could not be serialized.
    #[error("event `{event_type}` could not be serialized")]
    Serialize {
        /// The event type.
        event_type: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
}

impl DecodeError {
    /// Whether this is [`DecodeError::UnknownType`]: a type the asked-for enum does not know.
    pub fn is_unknown_type(&self) -> bool {
        matches!(self, Self::UnknownType { .. })
    }
}

/// Whether `name` may be used as an event type name.
pub fn valid_type_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// An event to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    event_id: EventId,
    event_type: String,
    schema_version: u32,
    payload: serde_json::Value,
    metadata: EventMetadata,
}

impl NewEvent {
    /// An event from a typed payload, with a new random id.
    pub fn from_typed<E: EventType>(
        payload: &E,
        metadata: EventMetadata,
    ) -> Result<Self, DecodeError> {
        let value = serde_json::to_value(payload).map_err(|source| DecodeError::Serialize {
            event_type: E::TYPE.to_owned(),
            source,
        })?;
        Self::new(
            EventId::new_random(),
            E::TYPE,
            E::SCHEMA_VERSION,
            value,
            metadata,
        )
    }

    /// An event from its parts; refuses an unusable type name.
    pub fn new(
        event_id: EventId,
        event_type: &str,
        schema_version: u32,
        payload: serde_json::Value,
        metadata: EventMetadata,
    ) -> Result<Self, DecodeError> {
        if !valid_type_name(event_type) {
            return Err(DecodeError::BadTypeName {
                name: event_type.to_owned(),
            });
        }
        Ok(Self {
            event_id,
            event_type: event_type.to_owned(),
            schema_version,
            payload,
            metadata,
        })
    }

    /// The event's id.
    pub fn event_id(&self) -> EventId {
        self.event_id
    }
    /// The type name.
    pub fn event_type(&self) -> &str {
        &self.event_type
    }
    /// The payload's schema version.
    pub fn schema_version(&self) -> u32 {
        self.schema_version
    }
    /// The payload.
    pub fn payload(&self) -> &serde_json::Value {
        &self.payload
    }
    /// The metadata.
    pub fn metadata(&self) -> &EventMetadata {
        &self.metadata
    }
}

/// An event as stored: the envelope, its place in the global order and in its stream, and
/// its link in the stream's hash chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    /// Global position: gapless across all tenants, and the order of commit.
    pub position: i64,
    /// Position of the previous event of the same tenant (0 for its first).
    pub tenant_prev_position: i64,
    /// The tenant that owns it.
    pub tenant_id: TenantId,
    /// The stream it belongs to.
    pub stream: StreamName,
    /// Its version within the stream (1 for the first event).
    pub version: i64,
    /// Unique id.
    pub event_id: EventId,
    /// Type name.
    pub event_type: String,
    /// Payload schema version.
    pub schema_version: u32,
    /// Payload.
    pub payload: serde_json::Value,
    /// Actor, causation and correlation.
    pub metadata: EventMetadata,
    /// When the store recorded it (microsecond precision, never decreasing with position).
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
    /// Hash of the previous event in the stream (zeros for the first).
    #[serde(with = "hex32")]
    pub prev_hash: [u8; 32],
    /// This event's hash: SHA-256 over `prev_hash` and its canonical bytes.
    #[serde(with = "hex32")]
    pub hash: [u8; 32],
}

impl RecordedEvent {
    /// The category part of its stream name.
    pub fn category(&self) -> &str {
        self.stream.category()
    }

    /// Decodes the payload as `E`, upcasting older schema versions; never panics.
    pub fn decode<E: EventType>(&self) -> Result<E, DecodeError> {
        decode_payload(self.parts())
    }

    /// The parts a typed decode needs, borrowed.
    pub fn parts(&self) -> StoredEvent<'_> {
        StoredEvent {
            position: self.position,
            event_type: &self.event_type,
            schema_version: self.schema_version,
            payload: &self.payload,
        }
    }
}

/// The parts of a stored event that a typed decode needs, borrowed from a [`RecordedEvent`]
/// or from a row a fold read itself.
#[derive(Debug, Clone, Copy)]
pub struct StoredEvent<'a> {
    /// Global position (or the stream version, where the reader has no position), for errors.
    pub position: i64,
    /// Type name.
    pub event_type: &'a str,
    /// Payload schema version.
    pub schema_version: u32,
    /// Payload.
    pub payload: &'a serde_json::Value,
}

/// Decodes a stored payload as `E`: refuses another type, a schema version this build does
/// not know (0 or newer than `E::SCHEMA_VERSION`) and a payload that does not match; upcasts
/// older versions with [`EventType::upcast`]. A current-version payload is read in place.
pub fn decode_payload<E: EventType>(e: StoredEvent<'_>) -> Result<E, DecodeError> {
    if e.event_type != E::TYPE {
        return Err(DecodeError::WrongType {
            position: e.position,
            expected: E::TYPE,
            found: e.event_type.to_owned(),
        });
    }
    let unknown = |detail: String| DecodeError::UnknownVersion {
        position: e.position,
        event_type: e.event_type.to_owned(),
        found: e.schema_version,
        supported: E::SCHEMA_VERSION,
        detail,
    };
    if e.schema_version == 0 || e.schema_version > E::SCHEMA_VERSION {
        return Err(unknown("unknown schema version".to_owned()));
    }
    let payload_error = |source| DecodeError::Payload {
        position: e.position,
        event_type: e.event_type.to_owned(),
        source,
    };
    if e.schema_version == E::SCHEMA_VERSION {
        return E::deserialize(e.payload).map_err(payload_error);
    }
    let mut payload = e.payload.clone();
    for from in e.schema_version..E::SCHEMA_VERSION {
        payload = E::upcast(from, payload).map_err(unknown)?;
    }
    serde_json::from_value(payload).map_err(payload_error)
}

/// The typed events of one stream category: an enum with one variant per [`EventType`],
/// declared with `event_enum!` (which writes this impl). Decoding is by type name and schema
/// version; a type the category does not have is [`DecodeError::UnknownType`].
pub trait EventEnum: Sized {
    /// The stream category (`device`, `workflow`, ...).
    const CATEGORY: &'static str;
    /// Every event type name of the enum, in declaration order.
    const TYPES: &'static [&'static str];

    /// Decodes a stored event (see [`decode_payload`]); an unknown type is a typed error.
    fn decode_stored(e: StoredEvent<'_>) -> Result<Self, DecodeError>;

    /// Decodes a recorded event.
    fn decode(e: &RecordedEvent) -> Result<Self, DecodeError> {
        Self::decode_stored(e.parts())
    }

    /// The event's type name.
    fn event_type(&self) -> &'static str;

    /// The schema version it is written under (the current one of its type).
    fn schema_version(&self) -> u32;

    /// The payload as JSON.
    fn payload(&self) -> Result<serde_json::Value, DecodeError>;

    /// The event to append, with this id and metadata.
    fn to_new_event(
        &self,
        event_id: EventId,
        metadata: EventMetadata,
    ) -> Result<NewEvent, DecodeError> {
        NewEvent::new(
            event_id,
            self.event_type(),
            self.schema_version(),
            self.payload()?,
            metadata,
        )
    }
}

/// Declares an aggregate's event enum: `enum Name in "category" { Variant(EventType), .. }`
/// becomes the enum (`Debug, Clone, PartialEq`), its [`EventEnum`] impl and a `From` for each
/// payload type. Variants carry their doc comments.
macro_rules! event_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident in $category:literal {
            $( $(#[$vmeta:meta])* $variant:ident($ty:ty) ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant($ty) ),+
        }

        impl $crate::event::EventEnum for $name {
            const CATEGORY: &'static str = $category;
            const TYPES: &'static [&'static str] =
                &[$(<$ty as $crate::event::EventType>::TYPE),+];

            fn decode_stored(
                e: $crate::event::StoredEvent<'_>,
            ) -> Result<Self, $crate::event::DecodeError> {
                $(
                    if e.event_type == <$ty as $crate::event::EventType>::TYPE {
                        return $crate::event::decode_payload::<$ty>(e).map(Self::$variant);
                    }
                )+
                Err($crate::event::DecodeError::UnknownType {
                    position: e.position,
                    category: $category,
                    found: e.event_type.to_owned(),
                })
            }

            fn event_type(&self) -> &'static str {
                match self {
                    $( Self::$variant(_) => <$ty as $crate::event::EventType>::TYPE ),+
                }
            }

            fn schema_version(&self) -> u32 {
                match self {
                    $( Self::$variant(_) => <$ty as $crate::event::EventType>::SCHEMA_VERSION ),+
                }
            }

            fn payload(&self) -> Result<serde_json::Value, $crate::event::DecodeError> {
                match self {
                    $(
                        Self::$variant(e) => serde_json::to_value(e).map_err(|source| {
                            $crate::event::DecodeError::Serialize {
                                event_type: <$ty as $crate::event::EventType>::TYPE.to_owned(),
                                source,
                            }
                        }),
                    )+
                }
            }
        }

        $(
            impl From<$ty> for $name {
                fn from(e: $ty) -> Self {
                    Self::$variant(e)
                }
            }
        )+
    };
}
pub(crate) use event_enum;

/// Serde helper: a 32-byte hash as lowercase hex.
pub mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the hash as hex.
    pub fn serialize<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    /// Reads a 64-character hex string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&text, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    struct Renamed {
        name: String,
        reason: String,
    }

    impl EventType for Renamed {
        const TYPE: &'static str = "DeviceRenamed";
        const SCHEMA_VERSION: u32 = 2;
        fn upcast(from: u32, mut payload: serde_json::Value) -> Result<serde_json::Value, String> {
            match from {
                1 => {
                    payload["reason"] = serde_json::json!("unspecified");
                    Ok(payload)
                }
                _ => Err(format!("no upcaster from {from}")),
            }
        }
    }

    fn recorded(
        event_type: &str,
        schema_version: u32,
        payload: serde_json::Value,
    ) -> RecordedEvent {
        RecordedEvent {
            position: 7,
            tenant_prev_position: 0,
            tenant_id: TenantId::new_random(),
            stream: StreamName::parse("device-1").unwrap(),
            version: 1,
            event_id: EventId::new_random(),
            event_type: event_type.to_owned(),
            schema_version,
            payload,
            metadata: EventMetadata::for_command(Actor::system("test"), Uuid::new_v4()),
            recorded_at: OffsetDateTime::UNIX_EPOCH,
            prev_hash: [0; 32],
            hash: [0; 32],
        }
    }

    #[test]
    fn old_schema_versions_are_upcast() {
        let e = recorded("DeviceRenamed", 1, serde_json::json!({"name": "r1"}));
        let decoded: Renamed = e.decode().unwrap();
        assert_eq!(decoded.reason, "unspecified");
    }

    #[test]
    fn unknown_type_version_and_bad_payload_are_errors_not_panics() {
        let newer = recorded("DeviceRenamed", 3, serde_json::json!({}));
        assert!(matches!(
            newer.decode::<Renamed>(),
            Err(DecodeError::UnknownVersion { found: 3, .. })
        ));
        let other = recorded("DeviceDeleted", 1, serde_json::json!({}));
        assert!(matches!(
            other.decode::<Renamed>(),
            Err(DecodeError::WrongType { .. })
        ));
        let broken = recorded("DeviceRenamed", 2, serde_json::json!({"name": 5}));
        let err = broken.decode::<Renamed>().unwrap_err();
        assert!(err.to_string().contains("position 7"), "{err}");
    }

    event_enum! {
        /// A one-type enum over the test payload.
        enum TestEvent in "device" {
            /// Renamed.
            Renamed(Renamed),
        }
    }

    #[test]
    fn event_enums_decode_by_type_and_version_and_refuse_unknown_types() {
        let current = recorded(
            "DeviceRenamed",
            2,
            serde_json::json!({"name": "r1", "reason": "typo"}),
        );
        let TestEvent::Renamed(r) = TestEvent::decode(&current).unwrap();
        assert_eq!(r.reason, "typo");
        let old = recorded("DeviceRenamed", 1, serde_json::json!({"name": "r1"}));
        let TestEvent::Renamed(r) = TestEvent::decode(&old).unwrap();
        assert_eq!(r.reason, "unspecified");
        let err =
            TestEvent::decode(&recorded("DeviceMoved", 1, serde_json::json!({}))).unwrap_err();
        assert!(err.is_unknown_type(), "{err}");
        assert!(matches!(
            TestEvent::decode(&recorded("DeviceRenamed", 3, serde_json::json!({}))),
            Err(DecodeError::UnknownVersion { found: 3, .. })
        ));
        assert_eq!(TestEvent::TYPES, ["DeviceRenamed"]);
        assert_eq!(TestEvent::CATEGORY, "device");
    }

    #[test]
    fn event_enums_encode_what_they_decode() {
        let e = TestEvent::from(Renamed {
            name: "r2".into(),
            reason: "moved".into(),
        });
        let meta = EventMetadata::for_command(Actor::system("t"), Uuid::new_v4());
        let new = e.to_new_event(EventId::new_random(), meta).unwrap();
        assert_eq!(new.event_type(), "DeviceRenamed");
        assert_eq!(new.schema_version(), 2);
        let back = recorded(
            new.event_type(),
            new.schema_version(),
            new.payload().clone(),
        );
        assert_eq!(TestEvent::decode(&back).unwrap(), e);
    }

    #[test]
    fn type_names_must_be_subject_safe() {
        let meta = EventMetadata::for_command(Actor::system("t"), Uuid::new_v4());
        for bad in ["", "a.b", "a b", "a>", "x*"] {
            assert!(
                NewEvent::new(
                    EventId::new_random(),
                    bad,
                    1,
                    serde_json::json!({}),
                    meta.clone()
                )
                .is_err()
            );
        }
    }

    #[test]
    fn expected_version_admits() {
        assert!(ExpectedVersion::Any.admits(5));
        assert!(ExpectedVersion::NoStream.admits(0));
        assert!(!ExpectedVersion::NoStream.admits(1));
        assert!(ExpectedVersion::Exact(3).admits(3));
        assert!(!ExpectedVersion::Exact(3).admits(4));
    }
}
