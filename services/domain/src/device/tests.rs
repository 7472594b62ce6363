//! The device aggregate's tests: given/when/then for every command and refusal, the poller's
//! observations, the event enum's stored shape, and properties of the fold.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::event::{Actor, EventMetadata, RecordedEvent};
use crate::ids::{EventId, StreamName, TenantId};
use crate::testing::device::arb_command;
use crate::testing::given;

fn id() -> DeviceId {
    DeviceId::from_uuid(Uuid::from_u128(7))
}

fn endpoint(host: &str, port: u16) -> Endpoint {
    Endpoint {
        host: Host::parse(host).unwrap(),
        port,
        transport: Transport::Plain,
        ssh: None,
    }
}

fn tags(list: &[&str]) -> BTreeSet<Tag> {
    list.iter().map(|t| Tag::parse(t).unwrap()).collect()
}

fn register_cmd() -> RegisterDevice {
    RegisterDevice {
        device_id: id(),
        name: DeviceName::parse("core-1").unwrap(),
        endpoint: endpoint("127.0.0.1", 8728),
        username: "admin".into(),
        credentials_key_id: "k1".into(),
        tags: tags(&["site:ber"]),
        poll_interval_secs: 60,
        ssh_client_key: None,
    }
}

fn registered_event() -> DeviceEvent {
    DeviceEvent::Registered(DeviceRegistered {
        device_id: id(),
        name: DeviceName::parse("core-1").unwrap(),
        endpoint: endpoint("127.0.0.1", 8728),
        username: "admin".into(),
        credentials_key_id: "k1".into(),
        tags: tags(&["site:ber"]),
        poll_interval_secs: 60,
        ssh_client_key: None,
    })
}

fn removed_event() -> DeviceEvent {
    DeviceEvent::Removed(DeviceRemoved {
        reason: "decommissioned".into(),
    })
}

fn registered() -> DeviceState {
    DeviceState::fold(&[registered_event()])
}

fn facts(version: &str) -> DeviceFacts {
    DeviceFacts {
        identity: "core-1".into(),
        version: version.into(),
        board_name: "CCR2004".into(),
        architecture: "arm64".into(),
        routerboard_firmware: Some("7.15".into()),
    }
}

fn apply(s: &mut DeviceState, events: &[DeviceEvent]) {
    for e in events {
        s.evolve(e);
    }
}

fn types(events: &[DeviceEvent]) -> Vec<&'static str> {
    events.iter().map(EventEnum::event_type).collect()
}

// ---- commands, given/when/then -----------------------------------------------------------

#[test]
fn register_a_new_device() {
    let state = given::<DeviceState>([])
        .when(DeviceCommand::Register(register_cmd()))
        .then([registered_event()]);
    assert!(state.is_managed());
    assert_eq!(state.version, 1);
}

#[test]
fn register_twice_is_refused_but_a_removed_device_may_come_back() {
    given::<DeviceState>([registered_event()])
        .when(DeviceCommand::Register(register_cmd()))
        .then_refused(DeviceError::AlreadyRegistered(id()));
    given::<DeviceState>([registered_event(), removed_event()])
        .when(DeviceCommand::Register(register_cmd()))
        .then([registered_event()]);
}

#[test]
fn register_refuses_bad_values_before_looking_at_the_state() {
    let mut cmd = register_cmd();
    cmd.poll_interval_secs = 4;
    given::<DeviceState>([registered_event()])
        .when(DeviceCommand::Register(cmd))
        .then_refused(DeviceError::BadInterval(4));
    let mut cmd = register_cmd();
    cmd.poll_interval_secs = 86_401;
    given::<DeviceState>([])
        .when(DeviceCommand::Register(cmd))
        .then_refused(DeviceError::BadInterval(86_401));
    let mut cmd = register_cmd();
    cmd.endpoint.port = 0;
    given::<DeviceState>([])
        .when(DeviceCommand::Register(cmd))
        .then_refused(DeviceError::BadPort);
    for bad in ["", "ad\nmin", &"x".repeat(101)] {
        let mut cmd = register_cmd();
        cmd.username = bad.to_owned();
        given::<DeviceState>([])
            .when(DeviceCommand::Register(cmd))
            .then_refused(DeviceError::BadUsername(bad.to_owned()));
    }
}

#[test]
fn update_records_only_what_differs() {
    let renamed = DeviceName::parse("core-2").unwrap();
    let state = given::<DeviceState>([registered_event()])
        .when(DeviceCommand::Update(UpdateDevice {
            name: Some(renamed.clone()),
            endpoint: Some(endpoint("127.0.0.1", 8728)),
            poll_interval_secs: Some(300),
        }))
        .then([DeviceEvent::Updated(DeviceUpdated {
            name: Some(renamed.clone()),
            endpoint: None,
            poll_interval_secs: Some(300),
        })]);
    let reg = state.registration.unwrap();
    assert_eq!((reg.name, reg.poll_interval_secs), (renamed, 300));
}

/// Item 8 of issue 15: a password is never sent to a host it was not entered for. Changing
/// host, port or transport clears the stored credentials in the same decision; other changes
/// keep them; a credentials change sets them again.
#[test]
fn an_endpoint_change_clears_the_credentials() {
    for (new, what) in [
        (endpoint("10.0.0.99", 8728), "host"),
        (endpoint("127.0.0.1", 8729), "port"),
        (
            Endpoint {
                transport: Transport::TlsVerified,
                ..endpoint("127.0.0.1", 8728)
            },
            "transport",
        ),
    ] {
        let state = given::<DeviceState>([registered_event()])
            .when(DeviceCommand::Update(UpdateDevice {
                endpoint: Some(new.clone()),
                ..UpdateDevice::default()
            }))
            .then([
                DeviceEvent::Updated(DeviceUpdated {
                    name: None,
                    endpoint: Some(new),
                    poll_interval_secs: None,
                }),
                DeviceEvent::CredentialsCleared(DeviceCredentialsCleared {
                    reason: format!("endpoint changed: {what}"),
                }),
            ]);
        assert!(!state.has_credentials);
        // Already cleared: a further endpoint change clears nothing more.
        let again = Endpoint {
            port: 9999,
            ..state.registration.clone().unwrap().endpoint
        };
        let mut s = state.clone();
        let events = s
            .decide(&DeviceCommand::Update(UpdateDevice {
                endpoint: Some(again),
                ..UpdateDevice::default()
            }))
            .unwrap();
        assert_eq!(types(&events), ["DeviceUpdated"]);
        // New credentials set them again.
        let set = s
            .decide(&DeviceCommand::ChangeCredentials {
                username: "ops".into(),
                key_id: "k2".into(),
                ssh_client_key: None,
            })
            .unwrap();
        apply(&mut s, &set);
        assert!(s.has_credentials);
    }
    // Name and interval changes keep them.
    let kept = given::<DeviceState>([registered_event()])
        .when(DeviceCommand::Update(UpdateDevice {
            name: Some(DeviceName::parse("core-9").unwrap()),
            poll_interval_secs: Some(120),
            ..UpdateDevice::default()
        }))
        .then([DeviceEvent::Updated(DeviceUpdated {
            name: Some(DeviceName::parse("core-9").unwrap()),
            endpoint: None,
            poll_interval_secs: Some(120),
        })]);
    assert!(kept.has_credentials);
}

#[test]
fn an_update_that_changes_nothing_appends_nothing() {
    given::<DeviceState>([registered_event()])
        .when(DeviceCommand::Update(UpdateDevice {
            name: Some(DeviceName::parse("core-1").unwrap()),
            endpoint: None,
            poll_interval_secs: Some(60),
        }))
        .then([]);
    given::<DeviceState>([registered_event()])
        .when(DeviceCommand::Update(UpdateDevice::default()))
        .then([]);
}

#[test]
fn update_refusals() {
    given::<DeviceState>([])
        .when(DeviceCommand::Update(UpdateDevice::default()))
        .then_refused(DeviceError::NotRegistered);
    given::<DeviceState>([registered_event(), removed_event()])
        .when(DeviceCommand::Update(UpdateDevice::default()))
        .then_refused(DeviceError::NotRegistered);
    given::<DeviceState>([registered_event()])
        .when(DeviceCommand::Update(UpdateDevice {
            poll_interval_secs: Some(0),
            ..UpdateDevice::default()
        }))
        .then_refused(DeviceError::BadInterval(0));
    given::<DeviceState>([registered_event()])
        .when(DeviceCommand::Update(UpdateDevice {
            endpoint: Some(endpoint("10.0.0.1", 0)),
            ..UpdateDevice::default()
        }))
        .then_refused(DeviceError::BadPort);
}

#[test]
fn set_tags_replaces_the_set_once() {
    let new = tags(&["site:muc", "role:edge"]);
    given::<DeviceState>([registered_event()])
        .when(DeviceCommand::SetTags { tags: new.clone() })
        .then([DeviceEvent::TagsSet(DeviceTagsSet { tags: new.clone() })]);
    given::<DeviceState>([
        registered_event(),
        DeviceEvent::TagsSet(DeviceTagsSet { tags: new.clone() }),
    ])
    .when(DeviceCommand::SetTags { tags: new.clone() })
    .then([]);
    given::<DeviceState>([registered_event(), removed_event()])
        .when(DeviceCommand::SetTags { tags: new })
        .then_refused(DeviceError::NotRegistered);
}

#[test]
fn change_credentials() {
    let state = given::<DeviceState>([registered_event()])
        .when(DeviceCommand::ChangeCredentials {
            username: "ops".into(),
            key_id: "k2".into(),
            ssh_client_key: None,
        })
        .then([DeviceEvent::CredentialsChanged(DeviceCredentialsChanged {
            username: "ops".into(),
            key_id: "k2".into(),
            ssh_client_key: None,
        })]);
    let reg = state.registration.unwrap();
    assert_eq!(
        (reg.username.as_str(), reg.credentials_key_id.as_str()),
        ("ops", "k2")
    );
    given::<DeviceState>([])
        .when(DeviceCommand::ChangeCredentials {
            username: "ops".into(),
            key_id: "k2".into(),
            ssh_client_key: None,
        })
        .then_refused(DeviceError::NotRegistered);
    given::<DeviceState>([registered_event()])
        .when(DeviceCommand::ChangeCredentials {
            username: String::new(),
            key_id: "k2".into(),
            ssh_client_key: None,
        })
        .then_refused(DeviceError::BadUsername(String::new()));
}

#[test]
fn rotate_credentials_keeps_the_login_name() {
    given::<DeviceState>([registered_event()])
        .when(DeviceCommand::RotateCredentials {
            key_id: "k9".into(),
        })
        .then([DeviceEvent::CredentialsChanged(DeviceCredentialsChanged {
            username: "admin".into(),
            key_id: "k9".into(),
            ssh_client_key: None,
        })]);
    given::<DeviceState>([registered_event(), removed_event()])
        .when(DeviceCommand::RotateCredentials {
            key_id: "k9".into(),
        })
        .then_refused(DeviceError::NotRegistered);
}

#[test]
fn remove_once() {
    let state = given::<DeviceState>([registered_event()])
        .when(DeviceCommand::Remove {
            reason: "decommissioned".into(),
        })
        .then([removed_event()]);
    assert!(!state.is_managed());
    given::<DeviceState>([registered_event(), removed_event()])
        .when(DeviceCommand::Remove {
            reason: "again".into(),
        })
        .then_refused(DeviceError::NotRegistered);
    given::<DeviceState>([])
        .when(DeviceCommand::Remove {
            reason: "never was".into(),
        })
        .then_refused(DeviceError::NotRegistered);
}

#[test]
fn observations_are_commands_that_are_never_refused() {
    given::<DeviceState>([registered_event()])
        .when(DeviceCommand::Observe(Observation::Reachable(facts(
            "7.15",
        ))))
        .then([DeviceEvent::CameOnline(DeviceCameOnline {
            facts: facts("7.15"),
        })]);
    given::<DeviceState>([registered_event(), removed_event()])
        .when(DeviceCommand::Observe(Observation::Unreachable("x".into())))
        .then([]);
}

// ---- observations ------------------------------------------------------------------------

#[test]
fn first_contact_then_the_same_facts_again_emit_one_event() {
    let mut s = registered();
    let seen = Observation::Reachable(facts("7.15"));
    let first = observe(&s, &seen);
    assert_eq!(types(&first), ["DeviceCameOnline"]);
    apply(&mut s, &first);
    assert!(observe(&s, &seen).is_empty());
}

#[test]
fn offline_is_reported_once_and_online_again_once() {
    let mut s = registered();
    let up = observe(&s, &Observation::Reachable(facts("7.15")));
    apply(&mut s, &up);
    let down = Observation::Unreachable("connection refused".into());
    let first = observe(&s, &down);
    assert_eq!(types(&first), ["DeviceWentOffline"]);
    apply(&mut s, &first);
    assert!(observe(&s, &down).is_empty());
    assert_eq!(s.offline_reason.as_deref(), Some("connection refused"));
    let back = observe(&s, &Observation::Reachable(facts("7.15")));
    assert_eq!(types(&back), ["DeviceCameOnline"]);
}

#[test]
fn an_upgrade_while_away_is_a_version_change() {
    let mut s = registered();
    let up = observe(&s, &Observation::Reachable(facts("7.15")));
    apply(&mut s, &up);
    let down = observe(&s, &Observation::Unreachable("rebooting".into()));
    apply(&mut s, &down);
    let back = observe(&s, &Observation::Reachable(facts("7.16")));
    assert_eq!(types(&back), ["DeviceVersionChanged", "DeviceCameOnline"]);
    apply(&mut s, &back);
    assert_eq!(s.facts.unwrap().version, "7.16");
}

#[test]
fn online_changes_are_named_by_kind() {
    let mut s = registered();
    let up = observe(&s, &Observation::Reachable(facts("7.15")));
    apply(&mut s, &up);
    let mut f = facts("7.16");
    f.identity = "core-renamed".into();
    f.routerboard_firmware = Some("7.16".into());
    let out = observe(&s, &Observation::Reachable(f));
    assert_eq!(
        types(&out),
        [
            "DeviceVersionChanged",
            "DeviceIdentityChanged",
            "DeviceHardwareChanged"
        ]
    );
}

#[test]
fn removed_devices_produce_nothing() {
    let mut s = registered();
    s.evolve(&DeviceEvent::Removed(DeviceRemoved {
        reason: "decommissioned".into(),
    }));
    assert!(observe(&s, &Observation::Unreachable("x".into())).is_empty());
}

#[test]
fn value_objects_refuse_bad_text() {
    assert!(DeviceName::parse("").is_err());
    assert!(DeviceName::parse("a b").is_err());
    assert!(Host::parse("10.0.0.1 ").is_err());
    assert!(Tag::parse("site:ber/rack-2").is_ok());
    assert!(serde_json::from_str::<DeviceName>("\"ok-1\"").is_ok());
    assert!(serde_json::from_str::<DeviceName>("\"no way\"").is_err());
}

// ---- the stored shape ----------------------------------------------------------------------

fn stored(event_type: &str, schema_version: u32, payload: serde_json::Value) -> RecordedEvent {
    RecordedEvent {
        position: 9,
        tenant_prev_position: 0,
        tenant_id: TenantId::new_random(),
        stream: StreamName::parse("device-1").unwrap(),
        version: 1,
        event_id: EventId::new_random(),
        event_type: event_type.to_owned(),
        schema_version,
        payload,
        metadata: EventMetadata::for_command(Actor::system("test"), Uuid::new_v4()),
        recorded_at: time::OffsetDateTime::UNIX_EPOCH,
        prev_hash: [0; 32],
        hash: [0; 32],
    }
}

#[test]
fn stored_device_events_read_back_unchanged() {
    // Payloads as the store holds them (written by the code before the enum existed).
    let registered = serde_json::json!({
        "device_id": "00000000-0000-0000-0000-000000000007",
        "name": "core-1",
        "endpoint": {"host": "127.0.0.1", "port": 8728, "transport": {"mode": "plain"}},
        "username": "admin",
        "credentials_key_id": "k1",
        "tags": ["site:ber"],
        "poll_interval_secs": 60
    });
    let e = DeviceEvent::decode(&stored("DeviceRegistered", 1, registered.clone())).unwrap();
    assert_eq!(e, registered_event());
    assert_eq!(e.payload().unwrap(), registered);
    assert_eq!(
        (e.event_type(), e.schema_version()),
        ("DeviceRegistered", 1)
    );
    let resumed = DeviceEvent::decode(&stored("DevicePollingResumed", 1, serde_json::json!({})));
    assert_eq!(
        resumed.unwrap(),
        DeviceEvent::PollingResumed(DevicePollingResumed {})
    );
    assert_eq!(DeviceEvent::TYPES.len(), 18);
    assert_eq!(DeviceEvent::CATEGORY, "device");
}

#[test]
fn a_type_that_is_not_a_device_event_is_a_typed_error_and_counts_a_version() {
    let unknown = stored("DeviceSomethingNew", 1, serde_json::json!({"x": 1}));
    let err = DeviceEvent::decode(&unknown).unwrap_err();
    assert!(
        matches!(&err, DecodeError::UnknownType { category: "device", found, .. } if found == "DeviceSomethingNew"),
        "{err}"
    );
    let mut state = registered();
    state.evolve_stored(unknown.parts()).unwrap();
    assert_eq!(state.version, 2);
    assert_eq!(state.registration, registered().registration);
    // A known type with a broken payload or a newer schema is an error, not a skip.
    let broken = stored("DeviceRemoved", 1, serde_json::json!({"reason": 5}));
    assert!(state.evolve_stored(broken.parts()).is_err());
    let newer = stored("DeviceRemoved", 2, serde_json::json!({"reason": "x"}));
    assert!(matches!(
        state.evolve_stored(newer.parts()),
        Err(DecodeError::UnknownVersion { .. })
    ));
}

// ---- properties ------------------------------------------------------------------------------

proptest! {
    /// Deciding on a folded state and folding the decision is the same as folding the whole
    /// history; a refusal about the stream matches the state (only a managed device refuses a
    /// registration, only an unmanaged one refuses the other commands); and a command decided
    /// again right after it was applied decides nothing new for every command that is
    /// idempotent by rule (update, tags, observations).
    #[test]
    fn decisions_fold_consistently(commands in prop::collection::vec(arb_command(), 0..40)) {
        let mut state = DeviceState::default();
        let mut history = Vec::new();
        for cmd in &commands {
            match state.decide(cmd) {
                Ok(events) => {
                    for e in &events {
                        state.evolve(e);
                    }
                    history.extend(events);
                    let idempotent = matches!(
                        cmd,
                        DeviceCommand::Update(_) | DeviceCommand::SetTags { .. } | DeviceCommand::Observe(_)
                    );
                    if idempotent {
                        prop_assert_eq!(state.decide(cmd), Ok(Vec::new()));
                    }
                }
                Err(DeviceError::AlreadyRegistered(_)) => prop_assert!(state.is_managed()),
                Err(DeviceError::NotRegistered) => prop_assert!(!state.is_managed()),
                Err(other) => prop_assert_eq!(cmd.validate(), Err(other)),
            }
            prop_assert_eq!(&DeviceState::fold(&history), &state);
            prop_assert_eq!(state.version, history.len() as u64);
        }
    }

    /// Every decided event survives the trip through its stored form.
    #[test]
    fn decided_events_round_trip_through_the_store_shape(commands in prop::collection::vec(arb_command(), 0..20)) {
        let mut state = DeviceState::default();
        for cmd in &commands {
            if let Ok(events) = state.decide(cmd) {
                for e in &events {
                    let back = stored(e.event_type(), e.schema_version(), e.payload().unwrap());
                    prop_assert_eq!(&DeviceEvent::decode(&back).unwrap(), e);
                    state.evolve(e);
                }
            }
        }
    }
}

// ---- SSH access (issue 17) -----------------------------------------------------------------

fn with_ssh(host_key: SshHostKey) -> Endpoint {
    Endpoint {
        ssh: Some(SshAccess { port: 22, host_key }),
        ..endpoint("127.0.0.1", 8728)
    }
}

const FP: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// A registration written before SSH existed reads back and re-serialises byte for byte
/// (no `ssh` key appears), and one with SSH round-trips with its trust mode.
#[test]
fn endpoints_without_ssh_serialise_as_before_and_with_ssh_round_trip() {
    let old = r#"{"host":"10.0.0.1","port":8729,"transport":{"mode":"tls_pinned","fingerprint_sha256":"ab"}}"#;
    let e: Endpoint = serde_json::from_str(old).unwrap();
    assert_eq!(e.ssh, None);
    assert_eq!(serde_json::to_string(&e).unwrap(), old);
    for key in [SshHostKey::FirstUse, SshHostKey::pinned(FP).unwrap()] {
        let e = with_ssh(key);
        let text = serde_json::to_string(&e).unwrap();
        assert!(
            text.contains(r#""ssh":{"port":22,"host_key":{"trust":"#),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<Endpoint>(&text).unwrap(), e);
    }
}

/// Fingerprints are accepted as hex (any case) or in OpenSSH `SHA256:` form and pinned as
/// lowercase hex; anything else is refused with a message that says both forms.
#[test]
fn host_key_fingerprints_parse_from_hex_and_openssh_form() {
    use base64::Engine;
    let bytes = hex::decode(FP).unwrap();
    let openssh = format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(&bytes)
    );
    for text in [
        FP.to_string(),
        FP.to_uppercase(),
        openssh.clone(),
        format!("{openssh}="),
    ] {
        assert_eq!(
            SshHostKey::pinned(&text).unwrap().fingerprint(),
            Some(FP),
            "{text}"
        );
    }
    for bad in [
        "",
        "SHA256:",
        "SHA256:abc",
        &FP[..63],
        "MD5:aa:bb",
        &format!("{FP}00"),
    ] {
        let e = SshHostKey::pinned(bad).unwrap_err();
        assert!(e.to_string().contains("64 hex"), "{e}");
    }
    // A registration carrying an upper-case or short pin is refused before any event.
    given::<DeviceState>([])
        .when(DeviceCommand::Register(RegisterDevice {
            endpoint: with_ssh(SshHostKey::Pinned {
                fingerprint_sha256: FP.to_uppercase(),
            }),
            ..register_cmd()
        }))
        .then_refused(DeviceError::BadSshFingerprint(FP.to_uppercase()));
    given::<DeviceState>([])
        .when(DeviceCommand::Register(RegisterDevice {
            endpoint: Endpoint {
                ssh: Some(SshAccess {
                    port: 0,
                    host_key: SshHostKey::FirstUse,
                }),
                ..endpoint("127.0.0.1", 8728)
            },
            ..register_cmd()
        }))
        .then_refused(DeviceError::BadPort);
}

/// Adding or changing SSH access keeps the stored credentials: the password still goes to
/// the host it was entered for (host, port and transport are what clear them).
#[test]
fn ssh_settings_alone_keep_the_credentials() {
    let new = with_ssh(SshHostKey::FirstUse);
    let state = given::<DeviceState>([registered_event()])
        .when(DeviceCommand::Update(UpdateDevice {
            endpoint: Some(new.clone()),
            ..UpdateDevice::default()
        }))
        .then([DeviceEvent::Updated(DeviceUpdated {
            name: None,
            endpoint: Some(new),
            poll_interval_secs: None,
        })]);
    assert!(state.has_credentials);
}

/// Trust on first use: the first key is recorded once and pinned; the same key again adds
/// nothing; another key, a pinned device or a device without SSH is refused.
#[test]
fn the_first_ssh_host_key_is_recorded_once_and_then_pinned() {
    let registered = DeviceEvent::Registered(DeviceRegistered {
        endpoint: with_ssh(SshHostKey::FirstUse),
        ..match registered_event() {
            DeviceEvent::Registered(r) => r,
            _ => unreachable!(),
        }
    });
    let record = |fp: &str| DeviceCommand::RecordSshHostKey {
        fingerprint_sha256: fp.into(),
        algorithm: "ssh-ed25519".into(),
        recorded_by: "poller".into(),
    };
    let state = given::<DeviceState>([registered.clone()])
        .when(record(&FP.to_uppercase()))
        .then([DeviceEvent::SshHostKeyPinned(DeviceSshHostKeyPinned {
            fingerprint_sha256: FP.into(),
            algorithm: "ssh-ed25519".into(),
            recorded_by: "poller".into(),
        })]);
    let pinned = state
        .registration
        .as_ref()
        .unwrap()
        .endpoint
        .ssh
        .clone()
        .unwrap();
    assert_eq!(pinned.host_key.fingerprint(), Some(FP));
    assert_eq!(state.decide(&record(FP)).unwrap(), Vec::new());
    let other = "00".repeat(32);
    assert_eq!(
        state.decide(&record(&other)).unwrap_err(),
        DeviceError::SshKeyNotAwaited(FP.into())
    );
    given::<DeviceState>([registered_event()])
        .when(record(FP))
        .then_refused(DeviceError::SshKeyNotAwaited("no SSH access".into()));
    given::<DeviceState>([registered])
        .when(record("not a fingerprint"))
        .then_refused(DeviceError::BadSshFingerprint("not a fingerprint".into()));
}

/// The path each file job takes, by version and registered SSH access.
#[test]
fn file_access_uses_the_api_where_it_can_and_ssh_where_it_cannot() {
    use Via::*;
    let cases = [
        ((6, 49), false, (Api, Unavailable, Unavailable)),
        ((6, 49), true, (Ssh, Ssh, Ssh)),
        ((7, 8), true, (Ssh, Ssh, Ssh)),
        ((7, 9), true, (Ssh, Api, Ssh)),
        ((7, 12), false, (Api, Api, Unavailable)),
        ((7, 13), true, (Api, Api, Api)),
        ((7, 16), false, (Api, Api, Api)),
    ];
    for ((ma, mi), ssh, (export, upload, download)) in cases {
        assert_eq!(
            file_access(ma, mi, ssh),
            FileAccess {
                export,
                upload,
                download
            },
            "{ma}.{mi} ssh={ssh}"
        );
    }
}

fn client_key() -> SshClientKey {
    SshClientKey {
        algorithm: "ssh-ed25519".into(),
        fingerprint_sha256: "ab".repeat(32),
        public_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB netledger".into(),
    }
}

/// An SSH client key set with the credentials is kept by a key rotation, replaced (or
/// dropped) by the next credentials change and cleared with them by an endpoint change.
#[test]
fn the_ssh_client_key_follows_the_credentials() {
    let with_key = DeviceCommand::ChangeCredentials {
        username: "ops".into(),
        key_id: "k2".into(),
        ssh_client_key: Some(client_key()),
    };
    let state = given::<DeviceState>([registered_event()])
        .when(with_key.clone())
        .then([DeviceEvent::CredentialsChanged(DeviceCredentialsChanged {
            username: "ops".into(),
            key_id: "k2".into(),
            ssh_client_key: Some(client_key()),
        })]);
    assert_eq!(
        state.registration.as_ref().unwrap().ssh_client_key,
        Some(client_key())
    );
    let rotated = state
        .decide(&DeviceCommand::RotateCredentials {
            key_id: "k3".into(),
        })
        .unwrap();
    assert_eq!(
        rotated,
        [DeviceEvent::CredentialsChanged(DeviceCredentialsChanged {
            username: "ops".into(),
            key_id: "k3".into(),
            ssh_client_key: Some(client_key()),
        })]
    );
    // a password-only change drops the key
    let mut s = state.clone();
    let set = s
        .decide(&DeviceCommand::ChangeCredentials {
            username: "ops".into(),
            key_id: "k2".into(),
            ssh_client_key: None,
        })
        .unwrap();
    apply(&mut s, &set);
    assert_eq!(s.registration.as_ref().unwrap().ssh_client_key, None);
    // an endpoint change clears it with the password
    let mut s = state;
    let moved = s
        .decide(&DeviceCommand::Update(UpdateDevice {
            endpoint: Some(endpoint("10.9.9.9", 8728)),
            ..UpdateDevice::default()
        }))
        .unwrap();
    apply(&mut s, &moved);
    assert!(types(&moved).contains(&"DeviceCredentialsCleared"));
    assert_eq!(s.registration.as_ref().unwrap().ssh_client_key, None);
}

#[test]
fn a_malformed_ssh_client_key_is_refused() {
    let bad = |f: fn(&mut SshClientKey)| {
        let mut k = client_key();
        f(&mut k);
        DeviceCommand::ChangeCredentials {
            username: "ops".into(),
            key_id: "k2".into(),
            ssh_client_key: Some(k),
        }
        .validate()
        .unwrap_err()
    };
    assert!(matches!(
        bad(|k| k.fingerprint_sha256 = "AB".repeat(32)),
        DeviceError::BadSshClientKey(_)
    ));
    assert!(matches!(
        bad(|k| k.public_key = "ssh-ed25519".into()),
        DeviceError::BadSshClientKey(_)
    ));
    assert!(matches!(
        bad(|k| k.algorithm = "ssh ed25519".into()),
        DeviceError::BadSshClientKey(_)
    ));
    let mut cmd = register_cmd();
    cmd.ssh_client_key = Some(SshClientKey {
        public_key: "ssh-ed25519 AAAA\nssh-rsa AAAA".into(),
        ..client_key()
    });
    assert!(matches!(
        DeviceCommand::Register(cmd).validate(),
        Err(DeviceError::BadSshClientKey(_))
    ));
}

/// Credentials events written before SSH keys existed read back without a key and
/// re-serialise byte for byte.
#[test]
fn credentials_events_without_an_ssh_key_serialise_as_before() {
    let old = r#"{"username":"ops","key_id":"k1"}"#;
    let e: DeviceCredentialsChanged = serde_json::from_str(old).unwrap();
    assert_eq!(e.ssh_client_key, None);
    assert_eq!(serde_json::to_string(&e).unwrap(), old);
    let with = DeviceCredentialsChanged {
        ssh_client_key: Some(client_key()),
        ..e
    };
    let text = serde_json::to_string(&with).unwrap();
    assert_eq!(
        serde_json::from_str::<DeviceCredentialsChanged>(&text).unwrap(),
        with
    );
}
