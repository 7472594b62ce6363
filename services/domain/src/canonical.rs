//! Canonical bytes of an event and the per-stream hash chain.
//!
//! An event's hash is split in two so that the part that depends on where the event lands
//! (position, version, previous hash, time) is cheap to compute while the store holds its
//! append lock, inside PostgreSQL:
//!
//! ```text
//! content_hash = SHA-256("NLEC1" | 16 tenant_id | str stream | 16 event_id | str event_type
//!                        | u32 schema_version | str canonical_json(metadata)
//!                        | str canonical_json(payload))
//! hash         = SHA-256("NLEV2" | 32 prev_hash | i64 position | i64 tenant_prev_position
//!                        | i64 version | i64 recorded_at_micros | 32 content_hash)
//! ```
//! Integers are big-endian; `str` is a u32 big-endian length followed by UTF-8 bytes.
//! Canonical JSON is compact with object keys sorted by their UTF-8 bytes, so the bytes do
//! not depend on how PostgreSQL's `jsonb` or serde happened to order keys.

use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::event::{EventMetadata, RecordedEvent};
use crate::ids::{EventId, StreamName, TenantId};

/// The previous hash of the first event in a stream.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// Writes `value` as canonical JSON (compact, keys sorted bytewise).
pub fn write_canonical_json(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Value::String(s) => write_json_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical_json(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json_string(key, out);
                out.push(b':');
                write_canonical_json(item, out);
            }
            out.push(b'}');
        }
    }
}

/// Canonical JSON of `value` as a byte vector.
pub fn canonical_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_canonical_json(value, &mut out);
    out
}

fn write_json_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{08}' => out.extend_from_slice(b"\\b"),
            '\u{0c}' => out.extend_from_slice(b"\\f"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// The fields of an event that its hash covers.
#[derive(Debug, Clone, Copy)]
pub struct HashedFields<'a> {
    /// Global position.
    pub position: i64,
    /// Previous position of the same tenant.
    pub tenant_prev_position: i64,
    /// Owning tenant.
    pub tenant_id: &'a TenantId,
    /// Stream.
    pub stream: &'a StreamName,
    /// Version in the stream.
    pub version: i64,
    /// Event id.
    pub event_id: &'a EventId,
    /// Type name.
    pub event_type: &'a str,
    /// Schema version.
    pub schema_version: u32,
    /// Recorded-at, truncated to microseconds.
    pub recorded_at: OffsetDateTime,
    /// Metadata.
    pub metadata: &'a EventMetadata,
    /// Payload.
    pub payload: &'a Value,
}

impl<'a> From<&'a RecordedEvent> for HashedFields<'a> {
    fn from(e: &'a RecordedEvent) -> Self {
        Self {
            position: e.position,
            tenant_prev_position: e.tenant_prev_position,
            tenant_id: &e.tenant_id,
            stream: &e.stream,
            version: e.version,
            event_id: &e.event_id,
            event_type: &e.event_type,
            schema_version: e.schema_version,
            recorded_at: e.recorded_at,
            metadata: &e.metadata,
            payload: &e.payload,
        }
    }
}

/// Microseconds since the Unix epoch (PostgreSQL `timestamptz` precision).
pub fn unix_micros(t: OffsetDateTime) -> i64 {
    let micros = t.unix_timestamp_nanos() / 1_000;
    i64::try_from(micros).unwrap_or(if micros < 0 { i64::MIN } else { i64::MAX })
}

pub(crate) fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    // Lengths above u32::MAX cannot occur for stored events (PostgreSQL caps a field at 1 GB).
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s);
}

/// The content part of an event: everything that does not depend on where it lands.
#[derive(Debug, Clone, Copy)]
pub struct Content<'a> {
    /// Owning tenant.
    pub tenant_id: &'a TenantId,
    /// Stream.
    pub stream: &'a StreamName,
    /// Event id.
    pub event_id: &'a EventId,
    /// Type name.
    pub event_type: &'a str,
    /// Schema version.
    pub schema_version: u32,
    /// Metadata.
    pub metadata: &'a EventMetadata,
    /// Payload.
    pub payload: &'a Value,
}

impl<'a> From<HashedFields<'a>> for Content<'a> {
    fn from(f: HashedFields<'a>) -> Self {
        Self {
            tenant_id: f.tenant_id,
            stream: f.stream,
            event_id: f.event_id,
            event_type: f.event_type,
            schema_version: f.schema_version,
            metadata: f.metadata,
            payload: f.payload,
        }
    }
}

/// SHA-256 of an event's canonical content bytes; `scratch` is reused between calls.
pub fn content_hash(c: Content<'_>, scratch: &mut Vec<u8>) -> [u8; 32] {
    let meta = serde_json::to_value(c.metadata).unwrap_or(Value::Null);
    content_hash_json(
        ContentJson {
            tenant_id: c.tenant_id,
            stream: c.stream.as_str(),
            event_id: c.event_id,
            event_type: c.event_type,
            schema_version: c.schema_version,
            metadata: &meta,
            payload: c.payload,
        },
        scratch,
    )
}

/// [`Content`] with the metadata as JSON, exactly as an audit bundle holds it.
#[derive(Debug, Clone, Copy)]
pub struct ContentJson<'a> {
    /// Owning tenant.
    pub tenant_id: &'a TenantId,
    /// Stream name.
    pub stream: &'a str,
    /// Event id.
    pub event_id: &'a EventId,
    /// Type name.
    pub event_type: &'a str,
    /// Schema version.
    pub schema_version: u32,
    /// Metadata.
    pub metadata: &'a Value,
    /// Payload.
    pub payload: &'a Value,
}

/// The canonical content bytes of an event (`docs/auditing.md` §4), into `out`.
pub fn content_bytes(c: ContentJson<'_>, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(b"NLEC1");
    out.extend_from_slice(c.tenant_id.as_uuid().as_bytes());
    put_str(out, c.stream.as_bytes());
    out.extend_from_slice(c.event_id.as_uuid().as_bytes());
    put_str(out, c.event_type.as_bytes());
    out.extend_from_slice(&c.schema_version.to_be_bytes());
    let mut json = Vec::with_capacity(256);
    write_canonical_json(c.metadata, &mut json);
    put_str(out, &json);
    json.clear();
    write_canonical_json(c.payload, &mut json);
    put_str(out, &json);
}

/// SHA-256 of [`content_bytes`]; `scratch` is reused between calls.
pub fn content_hash_json(c: ContentJson<'_>, scratch: &mut Vec<u8>) -> [u8; 32] {
    content_bytes(c, scratch);
    Sha256::digest(&scratch[..]).into()
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`: UTC with exactly six fraction digits, the time format of
/// audit bundles.
pub fn format_micros(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// Parses exactly the [`format_micros`] form (years 0000-9999).
pub fn parse_micros(s: &str) -> Option<OffsetDateTime> {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = b.get(r)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if b.len() != 27
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'.'
        || b[26] != b'Z'
    {
        return None;
    }
    let month = time::Month::try_from(u8::try_from(digits(5..7)?).ok()?).ok()?;
    let date = time::Date::from_calendar_date(
        i32::try_from(digits(0..4)?).ok()?,
        month,
        u8::try_from(digits(8..10)?).ok()?,
    )
    .ok()?;
    let clock = time::Time::from_hms_micro(
        u8::try_from(digits(11..13)?).ok()?,
        u8::try_from(digits(14..16)?).ok()?,
        u8::try_from(digits(17..19)?).ok()?,
        digits(20..26)?,
    )
    .ok()?;
    Some(date.with_time(clock).assume_utc())
}

/// Serde for a time in the [`format_micros`] form (sub-microsecond digits dropped).
pub mod micros_time {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::OffsetDateTime;

    /// Serialises `t` as [`super::format_micros`].
    pub fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_micros(*t))
    }

    /// Parses the [`super::format_micros`] form.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_micros(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`{text}` is not a UTC time as YYYY-MM-DDTHH:MM:SS.ffffffZ"
            ))
        })
    }
}

/// Where an event landed: the inputs of its chain hash besides the content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// Global position.
    pub position: i64,
    /// Previous position of the same tenant.
    pub tenant_prev_position: i64,
    /// Version in the stream.
    pub version: i64,
    /// Recorded-at, microseconds since the epoch.
    pub recorded_at_micros: i64,
}

/// The chain hash of an event from its previous hash, placement and content hash.
pub fn chain_hash(prev_hash: &[u8; 32], at: Placement, content: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"NLEV2");
    h.update(prev_hash);
    h.update(at.position.to_be_bytes());
    h.update(at.tenant_prev_position.to_be_bytes());
    h.update(at.version.to_be_bytes());
    h.update(at.recorded_at_micros.to_be_bytes());
    h.update(content);
    h.finalize().into()
}

/// The full hash of an event; `scratch` is reused between calls.
pub fn event_hash(
    prev_hash: &[u8; 32],
    fields: HashedFields<'_>,
    scratch: &mut Vec<u8>,
) -> [u8; 32] {
    let content = content_hash(Content::from(fields), scratch);
    let at = Placement {
        position: fields.position,
        tenant_prev_position: fields.tenant_prev_position,
        version: fields.version,
        recorded_at_micros: unix_micros(fields.recorded_at),
    };
    chain_hash(prev_hash, at, &content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_and_is_compact() {
        let v: Value =
            serde_json::from_str(r#"{"b": 1, "a": {"z": [1, 2.5, "x\n"], "y": null}}"#).unwrap();
        assert_eq!(
            String::from_utf8(canonical_json(&v)).unwrap(),
            r#"{"a":{"y":null,"z":[1,2.5,"x\n"]},"b":1}"#
        );
    }

    #[test]
    fn canonical_json_string_escapes_parse_back() {
        let s = "q\"b\\s\u{1}\u{7f}é😀\t";
        let bytes = canonical_json(&Value::String(s.to_owned()));
        let back: String = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, s);
    }
}
