//! Generators for property tests of the device aggregate: commands (valid or not, for one
//! device) and observations, with few distinct values so that repeats and changes both occur.

use std::collections::BTreeSet;

use proptest::prelude::*;
use uuid::Uuid;

use crate::device::{
    DeviceCommand, DeviceFacts, DeviceName, Endpoint, Host, Observation, RegisterDevice, Tag,
    Transport, UpdateDevice,
};
use crate::ids::DeviceId;

/// The device the generated commands are about.
pub fn id() -> DeviceId {
    DeviceId::from_uuid(Uuid::from_u128(7))
}

fn endpoint(host: &str, port: u16) -> Endpoint {
    Endpoint {
        host: Host::parse(host).unwrap_or_else(|_| unreachable!("a valid test host")),
        port,
        transport: Transport::Plain,
        ssh: None,
    }
}

fn tags(list: &[&str]) -> BTreeSet<Tag> {
    list.iter().filter_map(|t| Tag::parse(t).ok()).collect()
}

fn name(n: &str) -> DeviceName {
    DeviceName::parse(n).unwrap_or_else(|_| unreachable!("a valid test name"))
}

fn register_cmd() -> RegisterDevice {
    RegisterDevice {
        device_id: id(),
        name: name("core-1"),
        endpoint: endpoint("127.0.0.1", 8728),
        username: "admin".into(),
        credentials_key_id: "k1".into(),
        tags: tags(&["site:ber"]),
        poll_interval_secs: 60,
        ssh_client_key: None,
    }
}

/// A few device names.
pub fn arb_name() -> impl Strategy<Value = DeviceName> {
    prop::sample::select(vec!["core-1", "core-2", "edge-9"]).prop_map(name)
}

/// Facts a device may report (few values, so changes and repeats both happen).
pub fn arb_facts() -> impl Strategy<Value = DeviceFacts> {
    (
        prop::sample::select(vec!["r1", "r2"]),
        prop::sample::select(vec!["7.15", "7.16"]),
        prop::sample::select(vec!["CCR2004", "RB5009"]),
        prop::option::of(prop::sample::select(vec!["7.15", "7.16"])),
    )
        .prop_map(|(identity, version, board, fw)| DeviceFacts {
            identity: identity.into(),
            version: version.into(),
            board_name: board.into(),
            architecture: "arm64".into(),
            routerboard_firmware: fw.map(Into::into),
        })
}

/// Any device command for the device [`id`], valid or not, accepted or refused.
pub fn arb_command() -> impl Strategy<Value = DeviceCommand> {
    let tag_sets = prop::sample::subsequence(vec!["site:ber", "site:muc", "role:core"], 0..=3)
        .prop_map(|t| tags(&t));
    prop_oneof![
        (
            arb_name(),
            tag_sets.clone(),
            prop::sample::select(vec![0u32, 60, 300]),
            any::<bool>()
        )
            .prop_map(|(name, tags, secs, tls)| {
                let mut cmd = register_cmd();
                cmd.name = name;
                cmd.tags = tags;
                cmd.poll_interval_secs = secs;
                if tls {
                    cmd.endpoint.transport = Transport::TlsVerified;
                }
                DeviceCommand::Register(cmd)
            }),
        (
            prop::option::of(arb_name()),
            prop::option::of(prop::sample::select(vec![0u16, 8728, 8729])),
            prop::option::of(prop::sample::select(vec![1u32, 60, 600])),
        )
            .prop_map(|(name, port, secs)| DeviceCommand::Update(UpdateDevice {
                name,
                endpoint: port.map(|p| endpoint("10.0.0.2", p)),
                poll_interval_secs: secs,
            })),
        tag_sets.prop_map(|tags| DeviceCommand::SetTags { tags }),
        prop::sample::select(vec!["ops", "admin", ""]).prop_map(|u| {
            DeviceCommand::ChangeCredentials {
                username: u.into(),
                key_id: "k2".into(),
                ssh_client_key: None,
            }
        }),
        Just(DeviceCommand::RotateCredentials {
            key_id: "k3".into()
        }),
        Just(DeviceCommand::Remove {
            reason: "gone".into()
        }),
        arb_facts().prop_map(|f| DeviceCommand::Observe(Observation::Reachable(f))),
        prop::sample::select(vec!["timeout", "login failed"])
            .prop_map(|r| DeviceCommand::Observe(Observation::Unreachable(r.into()))),
    ]
}
