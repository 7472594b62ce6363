//! The device filter of an audit bundle (`netledger audit export --devices`,
//! `docs/auditing.md` §3.1): which event streams a bundle holds in full and which as
//! hash-only stubs.
//!
//! The rule depends on the stream name alone, so that a verifier can check it for every
//! line: a stream is *withheld* exactly when it is `device-<uuid>` (a lowercase hyphenated
//! UUID, as Netledger names device streams) and that device is not listed. Every other
//! stream (the listed devices', change requests, rollouts, workflows, users, sessions,
//! security, firmware, the tenant's) is held in full.

use std::collections::BTreeSet;

use netledger_domain::ids::DeviceId;
use serde_json::Value;

/// The devices whose streams a filtered bundle holds in full.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceFilter {
    devices: BTreeSet<DeviceId>,
}

impl DeviceFilter {
    /// A filter listing `devices` (duplicates are ignored; an empty list withholds every
    /// device stream).
    pub fn new(devices: impl IntoIterator<Item = DeviceId>) -> Self {
        Self {
            devices: devices.into_iter().collect(),
        }
    }

    /// The listed devices, in UUID order.
    pub fn devices(&self) -> impl Iterator<Item = &DeviceId> {
        self.devices.iter()
    }

    /// Whether the bundle withholds `stream`: it is `device-<lowercase hyphenated uuid>` of
    /// a device this filter does not list.
    pub fn withholds(&self, stream: &str) -> bool {
        device_of_stream(stream).is_some_and(|d| !self.devices.contains(&d))
    }

    /// The manifest's `devices` value: the listed ids as lowercase hyphenated UUIDs, sorted.
    pub(crate) fn manifest_value(&self) -> Value {
        Value::Array(
            self.devices
                .iter()
                .map(|d| Value::String(d.to_string()))
                .collect(),
        )
    }

    /// The filter a manifest records (`devices`: absent or `null` for none, else an array of
    /// lowercase hyphenated UUIDs), or what is malformed about it.
    pub(crate) fn from_manifest(value: Option<&Value>) -> Result<Option<Self>, String> {
        let list = match value {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Array(list)) => list,
            Some(_) => return Err("`devices` is neither null nor an array".to_owned()),
        };
        let mut devices = BTreeSet::new();
        for v in list {
            let id = v.as_str().and_then(crate::canonical_uuid).ok_or_else(|| {
                format!("`devices` entry {v} is not a lowercase hyphenated UUID string")
            })?;
            devices.insert(DeviceId::from_uuid(id));
        }
        Ok(Some(Self { devices }))
    }
}

impl FromIterator<DeviceId> for DeviceFilter {
    fn from_iter<I: IntoIterator<Item = DeviceId>>(iter: I) -> Self {
        Self::new(iter)
    }
}

impl std::str::FromStr for DeviceFilter {
    type Err = String;

    /// Device ids separated by commas (spaces around them are ignored), e.g. the value of
    /// an HTTP query parameter.
    fn from_str(s: &str) -> Result<Self, String> {
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.parse::<DeviceId>()
                    .map_err(|_| format!("`{p}` is not a device id (a UUID)"))
            })
            .collect()
    }
}

/// The device a stream belongs to: `device-` followed by a lowercase hyphenated UUID.
pub fn device_of_stream(stream: &str) -> Option<DeviceId> {
    stream
        .strip_prefix("device-")
        .and_then(crate::canonical_uuid)
        .map(DeviceId::from_uuid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_device_streams_of_unlisted_devices_are_withheld() {
        let a = "01a2b3c4-0000-7000-8000-00000000000a";
        let b = "01a2b3c4-0000-7000-8000-00000000000b";
        let f: DeviceFilter = format!(" {a} ,{a}").parse().unwrap();
        assert_eq!(f.devices().count(), 1);
        assert!(!f.withholds(&format!("device-{a}")));
        assert!(f.withholds(&format!("device-{b}")));
        // Not a device stream as Netledger names them: held in full.
        assert!(!f.withholds(&format!("device-{}", b.to_uppercase())));
        assert!(!f.withholds("device-1"));
        assert!(!f.withholds(&format!("workflow-{b}")));
        assert!(!f.withholds(&format!("change-{b}")));
        assert!(DeviceFilter::default().withholds(&format!("device-{a}")));
        assert!("x".parse::<DeviceFilter>().is_err());
    }

    #[test]
    fn the_manifest_value_reads_back() {
        let f: DeviceFilter =
            "01a2b3c4-0000-7000-8000-00000000000b,01a2b3c4-0000-7000-8000-00000000000a"
                .parse()
                .unwrap();
        let v = f.manifest_value();
        assert_eq!(
            v,
            serde_json::json!([
                "01a2b3c4-0000-7000-8000-00000000000a",
                "01a2b3c4-0000-7000-8000-00000000000b"
            ])
        );
        assert_eq!(DeviceFilter::from_manifest(Some(&v)).unwrap(), Some(f));
        assert_eq!(DeviceFilter::from_manifest(None).unwrap(), None);
        assert_eq!(
            DeviceFilter::from_manifest(Some(&Value::Null)).unwrap(),
            None
        );
        for bad in [
            serde_json::json!("x"),
            serde_json::json!([1]),
            serde_json::json!(["01A2B3C4-0000-7000-8000-00000000000A"]),
        ] {
            assert!(DeviceFilter::from_manifest(Some(&bad)).is_err(), "{bad}");
        }
    }
}
