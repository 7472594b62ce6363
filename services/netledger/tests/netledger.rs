//! Integration tests of the binary's roles against real PostgreSQL and a real NATS server
//! (a private `nats-server` per test, so it can be killed and restarted).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod support;

use async_nats::jetstream;
use netledger::relay::{RELAY_CHECKPOINT, Relay, RelayOptions};
use netledger_domain::{
    Actor, EventId, EventMetadata, ExpectedVersion, NewEvent, StreamName, TenantId,
};
use netledger_store::{EventStore, StoreOptions};
use sqlx::PgPool;
use support::nats::Nats;
use tokio::sync::watch;
use uuid::Uuid;

async fn pools(owner: &PgPool) -> (PgPool, PgPool) {
    let pools = netledger_store::Pools::connect(&owner.connect_options(), None, None, 10)
        .await
        .unwrap();
    (pools.app, pools.system)
}

async fn append_n(store: &EventStore, tenants: &[TenantId], from: usize, n: usize) {
    for i in from..from + n {
        let e = NewEvent::new(
            EventId::new_v7(),
            if i % 2 == 0 {
                "DeviceOnline"
            } else {
                "DeviceOffline"
            },
            1,
            serde_json::json!({"i": i}),
            EventMetadata::for_command(Actor::system("test"), Uuid::new_v4()),
        )
        .unwrap();
        let stream = StreamName::parse(&format!("device-{}", i % 5)).unwrap();
        store
            .append(
                tenants[i % tenants.len()],
                &stream,
                ExpectedVersion::Any,
                vec![e],
            )
            .await
            .unwrap();
    }
}

async fn stream_len(js: &jetstream::Context, name: &str) -> u64 {
    match js.get_stream(name).await {
        Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
        Err(_) => 0,
    }
}

async fn wait_for(js: &jetstream::Context, name: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while stream_len(js, name).await < n {
        assert!(
            Instant::now() < deadline,
            "JetStream stream {name} did not reach {n} messages"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// DESIGN invariant 9: NATS going away mid-run delays delivery but loses and duplicates
/// nothing; JetStream ends up holding every event exactly once, in global order.
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn relay_survives_nats_restarts_without_loss_or_duplicates(owner: PgPool) {
    let (app, system) = pools(&owner).await;
    let store = EventStore::start(app, StoreOptions::default());
    let tenants = [TenantId::new_random(), TenantId::new_random()];
    let mut nats = Nats::start();
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(nats.url())
        .await
        .unwrap();
    let js = jetstream::new(client);
    let name = format!("T{}", Uuid::new_v4().simple());
    let opts = RelayOptions {
        stream: name.clone(),
        subject_prefix: "nltest".to_owned(),
        batch: 50,
        max_bytes: -1,
    };
    let (stop, shutdown) = watch::channel(false);
    let relay = tokio::spawn(Relay::new(system.clone(), js.clone(), opts).run(shutdown));

    append_n(&store, &tenants, 0, 150).await;
    wait_for(&js, &name, 150).await;

    // NATS dies; events keep being committed.
    nats.kill();
    append_n(&store, &tenants, 150, 150).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    nats.restart();
    append_n(&store, &tenants, 300, 100).await;
    wait_for(&js, &name, 400).await;

    // A second outage in the middle of a burst.
    let burst = {
        let store = store.clone();
        tokio::spawn(async move { append_n(&store, &tenants, 400, 200).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    nats.kill();
    tokio::time::sleep(Duration::from_millis(800)).await;
    nats.restart();
    burst.await.unwrap();
    wait_for(&js, &name, 600).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let stream = js.get_stream(&name).await.unwrap();
    let mut info_stream = js.get_stream(&name).await.unwrap();
    let info = info_stream.info().await.unwrap().clone();
    assert_eq!(info.state.messages, 600, "exactly once");
    for seq in 1..=600u64 {
        let msg = stream.get_raw_message(seq).await.unwrap();
        let id = support::nats::message_position(&msg);
        assert_eq!(
            id, seq as i64,
            "JetStream sequence {seq} holds position {id}: out of order"
        );
        let event: netledger_domain::RecordedEvent = serde_json::from_slice(&msg.payload).unwrap();
        assert_eq!(event.position, id);
        assert_eq!(
            msg.subject.as_str(),
            format!("nltest.{}.device.{}", event.tenant_id, event.event_type)
        );
    }
    let checkpoint: i64 =
        sqlx::query_scalar("SELECT position FROM subscription_checkpoints WHERE name = $1")
            .bind(RELAY_CHECKPOINT)
            .fetch_one(&owner)
            .await
            .unwrap();
    assert_eq!(checkpoint, 600);
    stop.send(true).unwrap();
    relay.await.unwrap().unwrap();
}

/// Issue #16: the events stream has a size limit; the oldest messages go, the newest always
/// stays, so a relay that starts over reads its position back and continues exactly once and
/// in order. An existing stream without the limit gets it, its other settings untouched.
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn the_events_stream_is_bounded_and_the_relay_keeps_its_order(owner: PgPool) {
    let (app, system) = pools(&owner).await;
    let store = EventStore::start(app, StoreOptions::default());
    let tenants = [TenantId::new_random()];
    let nats = Nats::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client);
    let name = format!("T{}", Uuid::new_v4().simple());
    let unbounded = RelayOptions {
        stream: name.clone(),
        subject_prefix: "nltest".to_owned(),
        batch: 50,
        max_bytes: -1,
    };
    // Created by an older version (or by hand) without a limit, with a setting of its own.
    netledger::relay::ensure_event_stream(&js, &unbounded)
        .await
        .unwrap();
    let mut info = js
        .get_stream(&name)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    info.config.description = Some("operator's".to_owned());
    js.update_stream(info.config).await.unwrap();

    let limit = 32 * 1024;
    let opts = RelayOptions {
        max_bytes: limit,
        ..unbounded
    };
    let run = |opts: RelayOptions| {
        let (stop, shutdown) = watch::channel(false);
        let relay = tokio::spawn(Relay::new(system.clone(), js.clone(), opts).run(shutdown));
        (stop, relay)
    };
    let (stop, relay) = run(opts.clone());
    append_n(&store, &tenants, 0, 300).await;
    let last_id = |js: jetstream::Context| {
        let name = name.clone();
        async move {
            let mut stream = js.get_stream(&name).await.unwrap();
            let state = stream.info().await.unwrap().state.clone();
            if state.messages == 0 {
                return (state, 0);
            }
            let msg = stream.get_raw_message(state.last_sequence).await.unwrap();
            let id = support::nats::message_position(&msg);
            (state, id)
        }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while last_id(js.clone()).await.1 < 300 {
        assert!(
            std::time::Instant::now() < deadline,
            "relay did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.send(true).unwrap();
    relay.await.unwrap().unwrap();
    let (state, id) = last_id(js.clone()).await;
    let config = js
        .get_stream(&name)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .config
        .clone();
    assert_eq!(
        config.max_bytes, limit,
        "the limit was set on the existing stream"
    );
    assert_eq!(
        config.description.as_deref(),
        Some("operator's"),
        "other settings kept"
    );
    assert!(
        state.bytes <= limit as u64,
        "{} bytes over the {limit} limit",
        state.bytes
    );
    assert!(
        state.messages < 300,
        "nothing was discarded: {}",
        state.messages
    );
    assert_eq!(id, 300, "the newest message stays");

    // Events while no relay runs; a new relay continues from the stream's newest message.
    append_n(&store, &tenants, 300, 40).await;
    let (stop, relay) = run(opts);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while last_id(js.clone()).await.1 < 340 {
        assert!(
            std::time::Instant::now() < deadline,
            "the new relay did not continue"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.send(true).unwrap();
    relay.await.unwrap().unwrap();
    let mut stream = js.get_stream(&name).await.unwrap();
    let state = stream.info().await.unwrap().state.clone();
    // What the stream holds is a contiguous run of positions ending at 340: no duplicate,
    // no gap, in order.
    let mut expected = None;
    for seq in state.first_sequence..=state.last_sequence {
        let msg = stream.get_raw_message(seq).await.unwrap();
        let id = support::nats::message_position(&msg);
        if let Some(e) = expected {
            assert_eq!(id, e, "sequence {seq}");
        }
        expected = Some(id + 1);
    }
    assert_eq!(expected, Some(341));
}

/// A relay pointed at a stream that already holds more than this database produced refuses
/// to publish instead of silently skipping events.
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn relay_refuses_a_stream_from_another_database(owner: PgPool) {
    let (app, system) = pools(&owner).await;
    let store = EventStore::start(app, StoreOptions::default());
    let nats = Nats::start();
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let name = format!("T{}", Uuid::new_v4().simple());
    let opts = RelayOptions {
        stream: name.clone(),
        subject_prefix: "nltest".to_owned(),
        batch: 50,
        max_bytes: -1,
    };
    netledger::relay::ensure_event_stream(&js, &opts)
        .await
        .unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, "999");
    js.publish_with_headers("nltest.x.y.z", headers, "{}".into())
        .await
        .unwrap()
        .await
        .unwrap();
    append_n(&store, &[TenantId::new_random()], 0, 3).await;
    let (_stop, shutdown) = watch::channel(false);
    let err = Relay::new(system, js, opts)
        .run(shutdown)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("belongs to another database"),
        "{err}"
    );
}

/// An auditor verifies an exported bundle offline with the public key alone; a bundle edited
/// after export is caught at the first bad position.
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn audit_bundles_verify_offline_and_name_tampering(owner: PgPool) {
    let (app, system) = pools(&owner).await;
    let store = EventStore::start(app, StoreOptions::default());
    let tenant = TenantId::new_random();
    append_n(&store, &[tenant, TenantId::new_random()], 0, 40).await;
    let key = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
    netledger_store::audit::checkpoint_all(&system, "k1", &key)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle.json");
    netledger::audit::export_v1(&system, tenant, &bundle)
        .await
        .unwrap();
    let public = hex::encode(key.verifying_key().to_bytes());

    let verify = |path: &Path| {
        Command::new(env!("CARGO_BIN_EXE_netledger"))
            .args(["audit", "verify"])
            .arg(path)
            .args(["--public-key", &public])
            .output()
            .unwrap()
    };
    let ok = verify(&bundle);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{stdout}");
    assert!(stdout.contains("OK: 20 events, 1 checkpoints"), "{stdout}");

    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
    let position = doc["events"][7]["position"].as_i64().unwrap();
    doc["events"][7]["payload"]["i"] = serde_json::json!(1_000_000);
    let tampered = dir.path().join("tampered.json");
    std::fs::write(&tampered, serde_json::to_vec(&doc).unwrap()).unwrap();
    let bad = verify(&tampered);
    let stdout = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!("TAMPERED at position {position}")),
        "{stdout}"
    );

    let wrong_key = Command::new(env!("CARGO_BIN_EXE_netledger"))
        .args(["audit", "verify"])
        .arg(&bundle)
        .args(["--public-key", "zz"])
        .output()
        .unwrap();
    assert!(!wrong_key.status.success());
    assert!(String::from_utf8_lossy(&wrong_key.stderr).contains("64 hex characters"));
}

/// Audit signing key rotation (issue #16): checkpoints signed before `keys rotate-audit-key`
/// keep their key id and verify, next to the ones signed after, with the rotated
/// `audit-signing.pub`; without the old key the old checkpoint is named with the id it needs.
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn rotated_audit_keys_keep_old_checkpoints_verifiable(owner: PgPool) {
    let (app, system) = pools(&owner).await;
    let store = EventStore::start(app, StoreOptions::default());
    let tenant = TenantId::new_random();
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    let netledger = || Command::new(env!("CARGO_BIN_EXE_netledger"));
    let init = netledger()
        .args(["keys", "init", "--out-dir"])
        .arg(&secrets)
        .output()
        .unwrap();
    assert!(init.status.success(), "{init:?}");
    let signing = |secrets: &Path| {
        let text = std::fs::read_to_string(secrets.join("audit-signing.key")).unwrap();
        let id = std::fs::read_to_string(secrets.join("audit-key-id")).unwrap();
        (
            id.trim().to_owned(),
            netledger::roles::signing_key_from_text(&text).unwrap(),
        )
    };
    let (old_id, old_key) = signing(&secrets);
    append_n(&store, &[tenant], 0, 20).await;
    netledger_store::audit::checkpoint_all(&system, &old_id, &old_key)
        .await
        .unwrap();

    let rotate = netledger()
        .args(["keys", "rotate-audit-key", "--dir"])
        .arg(&secrets)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&rotate.stdout);
    assert!(rotate.status.success(), "{rotate:?}");
    let (new_id, new_key) = signing(&secrets);
    assert_ne!(new_id, old_id);
    assert!(
        stdout.contains(&format!("`{old_id}` -> `{new_id}`")),
        "{stdout}"
    );
    append_n(&store, &[tenant], 20, 20).await;
    netledger_store::audit::checkpoint_all(&system, &new_id, &new_key)
        .await
        .unwrap();

    let bundle = dir.path().join("bundle.json");
    netledger::audit::export_v1(&system, tenant, &bundle)
        .await
        .unwrap();
    let ids: Vec<String> = serde_json::from_slice::<serde_json::Value>(
        &std::fs::read(&bundle).unwrap(),
    )
    .unwrap()["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, [old_id.clone(), new_id.clone()]);
    let verify = |keys: &[&str]| {
        netledger()
            .args(["audit", "verify"])
            .arg(&bundle)
            .args(keys)
            .output()
            .unwrap()
    };
    let trusted = secrets.join("audit-signing.pub");
    let ok = verify(&["--trusted-keys", trusted.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{stdout}");
    assert!(stdout.contains("OK: 40 events, 2 checkpoints"), "{stdout}");
    // the same list given inline
    let list = std::fs::read_to_string(&trusted)
        .unwrap()
        .replace('\n', ",");
    assert!(verify(&["--public-key", &list]).status.success());
    // the new key alone: the first checkpoint names the key id it needs
    let new_only = format!(
        "{new_id}={}",
        hex::encode(new_key.verifying_key().to_bytes())
    );
    let bad = verify(&["--public-key", &new_only]);
    let stdout = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("checkpoint 1") && stdout.contains(&format!("key id `{old_id}`")),
        "{stdout}"
    );
    // one bare key for every checkpoint (the old way) cannot verify a rotated history
    let bare = hex::encode(new_key.verifying_key().to_bytes());
    assert_eq!(verify(&["--public-key", &bare]).status.code(), Some(1));
}

/// Checkpoints are published to JetStream once each: a restarted checkpointer (empty backlog)
/// finds them there and sends nothing again; new events give exactly the new checkpoints.
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn checkpoints_are_published_once(owner: PgPool) {
    let (app, system) = pools(&owner).await;
    let store = EventStore::start(app, StoreOptions::default());
    let tenants = [TenantId::new_random(), TenantId::new_random()];
    let nats = Nats::start();
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let name = format!("C{}", Uuid::new_v4().simple());
    let archive_dir = tempfile::tempdir().unwrap();
    let checkpointer = netledger::relay::Checkpointer {
        system: system.clone(),
        js: js.clone(),
        stream: name.clone(),
        key: ed25519_dalek::SigningKey::from_bytes(&[7; 32]),
        handover: None,
        key_id: "k1".to_owned(),
        interval: Duration::from_secs(30),
        archive: Some(netledger_archive::Archive::open(archive_dir.path()).unwrap()),
    };
    append_n(&store, &tenants, 0, 10).await;
    let mut backlog = None;
    assert_eq!(checkpointer.run_once(&mut backlog).await.unwrap(), 2);
    assert_eq!(checkpointer.run_once(&mut backlog).await.unwrap(), 0);
    let mut restarted = None;
    assert_eq!(checkpointer.run_once(&mut restarted).await.unwrap(), 0);
    append_n(&store, &tenants[..1], 10, 3).await;
    assert_eq!(checkpointer.run_once(&mut restarted).await.unwrap(), 1);
    assert_eq!(stream_len(&js, &name).await, 3);
    // The same checkpoints are committed into each tenant's git repository, once each.
    let archive = netledger_archive::Archive::open(archive_dir.path()).unwrap();
    let in_git: Vec<usize> = tenants
        .iter()
        .map(|t| archive.checkpoints(*t).unwrap().len())
        .collect();
    assert_eq!(in_git, [2, 1]);
}

/// Item 16: each role connects to NATS with its own credentials from the configuration;
/// a server with authorization refuses a connection without them or with wrong ones.
#[tokio::test]
async fn nats_connections_present_the_roles_credentials() {
    use netledger::config::{NatsAuth, Secret};
    let nats = Nats::start_with(&["--user", "relay", "--pass", "relay-secret"]);
    let good = NatsAuth {
        user: Some("relay".to_owned()),
        password: Some(Secret::new("relay-secret")),
        ..NatsAuth::default()
    };
    let client = netledger::relay::nats_options("projector", &good)
        .await
        .unwrap()
        .connect(nats.url())
        .await
        .expect("the right user and password connect");
    client.flush().await.unwrap();
    let wrong = NatsAuth {
        password: Some(Secret::new("guess")),
        ..good.clone()
    };
    for auth in [NatsAuth::default(), wrong] {
        let refused = netledger::relay::nats_options("projector", &auth)
            .await
            .unwrap()
            .max_reconnects(1)
            .connect(nats.url())
            .await;
        assert!(refused.is_err(), "connected with {auth:?}");
    }
    drop(nats);

    let nats = Nats::start_with(&["--auth", "api-token-1"]);
    let token = NatsAuth {
        token: Some(Secret::new("api-token-1")),
        ..NatsAuth::default()
    };
    netledger::relay::nats_options("api", &token)
        .await
        .unwrap()
        .connect(nats.url())
        .await
        .expect("the token connects");
    // Two kinds of credentials at once are a configuration error.
    let both = NatsAuth {
        token: Some(Secret::new("t")),
        user: Some("u".to_owned()),
        password: Some(Secret::new("p")),
        ..NatsAuth::default()
    };
    assert!(netledger::relay::nats_options("api", &both).await.is_err());
}

/// Issue #15 item 12: `netledger api` runs with only its own credentials. The application
/// roles' URLs and the audit PUBLIC key are configured; the owner's URL and the signing key
/// are configured as files that do not exist, so any attempt to read them stops the process.
/// It must start, log the bootstrap admin in and serve reads.
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn the_api_runs_with_only_the_role_urls_and_the_public_key(owner: PgPool) {
    use support::platform::{Answer, Http, free_port};
    let work = tempfile::tempdir().unwrap();
    let nats = Nats::start();
    let opts = owner.connect_options();
    let role_url = |role: &str| {
        format!(
            "postgres://{role}@{}:{}/{}",
            opts.get_host(),
            opts.get_port(),
            opts.get_database().unwrap()
        )
    };
    let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let port = free_port();
    let mut api = Command::new(env!("CARGO_BIN_EXE_netledger"))
        .args(["api", "--listen", &format!("127.0.0.1:{port}")])
        .env_remove("DATABASE_URL")
        .env("NATS_URL", nats.url())
        .env("NETLEDGER_DATA_DIR", work.path().join("data"))
        .env(
            "NETLEDGER_DATABASE_URL_FILE",
            work.path().join("no-owner-url"),
        )
        .env(
            "NETLEDGER_AUDIT_SIGNING_KEY_FILE",
            work.path().join("no-signing-key"),
        )
        .env("NETLEDGER_APP_DATABASE_URL", role_url("netledger_app"))
        .env(
            "NETLEDGER_SYSTEM_DATABASE_URL",
            role_url("netledger_system"),
        )
        .env(
            "NETLEDGER_AUDIT_VERIFYING_KEY",
            hex::encode(key.verifying_key().to_bytes()),
        )
        .env(
            "NETLEDGER_BOOTSTRAP_ADMIN_EMAIL",
            "roles-admin@netledger.test",
        )
        .env(
            "NETLEDGER_BOOTSTRAP_ADMIN_PASSWORD",
            "roles-admin-password-1234",
        )
        .env("NETLEDGER_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let http = Http::new(format!("http://127.0.0.1:{port}"));
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(Some(status)) = api.try_wait() {
            panic!("netledger api exited during start: {status}");
        }
        let ready = tokio::time::timeout(
            Duration::from_secs(2),
            http.try_call("GET", "/health/ready", None, None, &[]),
        )
        .await;
        if matches!(ready, Ok(Ok(Answer { status: 200, .. }))) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "netledger api was not ready in 120 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let token = http
        .login("roles-admin@netledger.test", "roles-admin-password-1234")
        .await;
    http.ok(200, "GET", "/api/v1/devices", &token, None).await;
    http.ok(200, "GET", "/api/v1/audit/checkpoints", &token, None)
        .await;
    let _ = api.kill();
    let _ = api.wait();
    assert!(!work.path().join("data/audit-signing.key").exists());
}

/// Issue #16: `netledger api` serves HTTPS from its certificate files and reloads them on
/// SIGHUP: new connections get the new certificate, a pair that does not load keeps the
/// current one, and `netledger healthcheck` probes it over HTTPS.
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn the_api_serves_https_and_reloads_its_certificate_on_sighup(owner: PgPool) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    struct Ca(rcgen::Certificate, KeyPair);
    let ca = |name: &str| {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        Ca(p.self_signed(&key).unwrap(), key)
    };
    let work = tempfile::tempdir().unwrap();
    let (cert_file, key_file) = (work.path().join("tls.crt"), work.path().join("tls.key"));
    let issue = |ca: &Ca| {
        let p = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &ca.0, &ca.1).unwrap();
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        cert.der().to_vec()
    };
    let (a, b) = (ca("A"), ca("B"));
    let first = issue(&a);
    // A client trusting both CAs: which certificate it sees, and the status of /health/live.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(a.0.der().clone()).unwrap();
    roots.add(b.0.der().clone()).unwrap();
    let client = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let port = support::platform::free_port();
    let get = |client: Arc<rustls::ClientConfig>| async move {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        let mut tls = tokio_rustls::TlsConnector::from(client)
            .connect(
                rustls::pki_types::ServerName::try_from("localhost").unwrap(),
                tcp,
            )
            .await
            .ok()?;
        let cert = tls.get_ref().1.peer_certificates()?[0].to_vec();
        tls.write_all(b"GET /health/live HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await
            .ok()?;
        let mut answer = Vec::new();
        let _ = tls.read_to_end(&mut answer).await;
        let text = String::from_utf8_lossy(&answer).into_owned();
        let status = text.split_whitespace().nth(1).map(str::to_owned);
        Some((cert, status.as_deref() == Some("200")))
    };

    let nats = Nats::start();
    let bin = env!("CARGO_BIN_EXE_netledger");
    let env = [
        ("NATS_URL", nats.url()),
        ("DATABASE_URL", support::platform::database_url(&owner)),
        (
            "NETLEDGER_DATA_DIR",
            work.path().join("data").display().to_string(),
        ),
        (
            "NETLEDGER_API_TLS_CERT_FILE",
            cert_file.display().to_string(),
        ),
        ("NETLEDGER_API_TLS_KEY_FILE", key_file.display().to_string()),
        ("NETLEDGER_LISTEN", format!("127.0.0.1:{port}")),
        ("NETLEDGER_LOG", "warn".to_owned()),
    ];
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut api = KillOnDrop(
        Command::new(bin)
            .arg("api")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let healthcheck = || {
        Command::new(bin)
            .args(["healthcheck", "--path", "/health/live"])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !healthcheck().status.success() {
        assert!(api.0.try_wait().unwrap().is_none(), "netledger api exited");
        assert!(Instant::now() < deadline, "not ready over HTTPS");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(get(client.clone()).await, Some((first.clone(), true)));

    let hup = |api: &std::process::Child| {
        let s = Command::new("kill")
            .args(["-HUP", &api.id().to_string()])
            .status()
            .unwrap();
        assert!(s.success());
    };
    let second = issue(&b);
    hup(&api.0);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = get(client.clone()).await;
        if seen == Some((second.clone(), true)) {
            break;
        }
        assert!(Instant::now() < deadline, "still {seen:?} after SIGHUP");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A key that does not load: the current certificate stays, the process too.
    std::fs::write(&key_file, "not a key").unwrap();
    hup(&api.0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        api.0.try_wait().unwrap().is_none(),
        "SIGHUP with a bad key ended the API"
    );
    assert_eq!(get(client.clone()).await, Some((second, true)));
    let probe = healthcheck();
    assert!(
        probe.status.success(),
        "{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    drop(api);
}
