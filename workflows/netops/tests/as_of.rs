//! Issue #14, time travel: a device with two committed pushes, a push rolled back after a
//! failed verification and an out-of-band change (captured by a backup's snapshot), asked
//! "as of" at every event's instant, between events and before the first: the config the
//! events name is the one git holds (every version's text hashes to the event's SHA-256,
//! and git's own as-of agrees at each config event), and the state follows the events.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use netledger_audit::as_of::device_as_of;
use netledger_domain::workflow::Outcome;
use netledger_store::{Direction, EventReader};
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use time::Duration;

use support::env;

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_device_as_of_every_instant_agrees_between_events_and_git(owner: PgPool) {
    let e = env(owner, 1, "netops-test").await;
    let device = e.register(0).await;
    let push = |n: u32, checks: Option<serde_json::Value>| {
        let mut input = json!({ "device_id": device, "change_id": format!("asof-{n}"),
                "script": format!("/ip pool\nadd name=pool-{n} ranges=10.8{n}.0.10-10.8{n}.0.20\n") });
        if let Some(c) = checks {
            input["checks"] = c;
        }
        input
    };
    for (n, checks, expected) in [
        (1, None, Outcome::Committed),
        (
            2,
            Some(json!({ "interfaces_running": ["ether99"], "ping": [] })),
            Outcome::RolledBack,
        ),
        (3, None, Outcome::Committed),
    ] {
        let wf = e.start("config_push", device, push(n, checks)).await;
        let (outcome, journal) = e.finish(wf).await;
        assert_eq!(outcome, expected, "{journal:?}");
    }
    e.fleet
        .device(0)
        .unwrap()
        .apply_out_of_band("/system identity set name=changed-by-hand\n")
        .unwrap();
    let wf = e
        .start("backup", device, json!({ "device_id": device }))
        .await;
    assert_eq!(e.finish(wf).await.0, Outcome::Succeeded);

    let reader = EventReader::tenant(e.pools.app.clone(), e.tenant);
    let events = reader
        .read_stream(&device.stream(), 1, Direction::Forward, 10_000)
        .await
        .unwrap();
    let config_events: Vec<_> = events
        .iter()
        .filter(|x| x.event_type == "ConfigSnapshotRecorded")
        .collect();
    assert!(config_events.len() >= 7, "{}", config_events.len());
    // Every version: git's text at the event's commit hashes to the event's SHA-256.
    let mut distinct = std::collections::BTreeSet::new();
    for c in &config_events {
        let commit = c.payload["commit"].as_str().unwrap();
        let text = e.deps.archive.read(e.tenant, device, commit).unwrap();
        assert_eq!(
            hex::encode(Sha256::digest(text.as_bytes())),
            c.payload["sha256"].as_str().unwrap(),
            "position {}",
            c.position
        );
        distinct.insert(c.payload["sha256"].as_str().unwrap().to_owned());
    }
    assert!(
        distinct.len() >= 4,
        "pushes, rollback and the change by hand: {distinct:?}"
    );

    // Instants: before the first event, every event's own instant, and between events.
    let mut instants = vec![events[0].recorded_at - Duration::seconds(1)];
    for pair in events.windows(2) {
        instants.push(pair[0].recorded_at);
        instants.push(pair[0].recorded_at + (pair[1].recorded_at - pair[0].recorded_at) / 2);
    }
    instants.push(events.last().unwrap().recorded_at);
    instants.push(events.last().unwrap().recorded_at + Duration::hours(1));
    let mut checked = 0;
    for at in instants {
        let got = device_as_of(&reader, &e.deps.archive, e.tenant, device, at)
            .await
            .unwrap();
        let upto: Vec<_> = events.iter().filter(|x| x.recorded_at <= at).collect();
        let Some(d) = got else {
            assert!(
                upto.is_empty(),
                "{at}: no answer with {} events",
                upto.len()
            );
            continue;
        };
        assert_eq!(d.position, upto.last().unwrap().position, "{at}");
        assert_eq!(d.stream_version, upto.len() as u64, "{at}");
        let last_config = upto
            .iter()
            .rev()
            .find(|x| x.event_type == "ConfigSnapshotRecorded");
        match last_config {
            None => assert!(d.config.is_none(), "{at}"),
            Some(c) => {
                let got = d.config.as_ref().unwrap();
                assert_eq!(got.sha256, c.payload["sha256"].as_str().unwrap(), "{at}");
                let text = d.config_text.as_deref().unwrap();
                assert_eq!(hex::encode(Sha256::digest(text.as_bytes())), got.sha256);
                if at == c.recorded_at {
                    // git's own history (commit times) names the same content then.
                    let v = e.deps.archive.as_of(e.tenant, device, at).unwrap().unwrap();
                    assert_eq!(v.sha256, got.sha256, "{at}");
                }
                checked += 1;
            }
        }
        assert!(d.registered);
        assert!(d.name.is_some());
    }
    assert!(checked >= 12, "{checked}");
    e.stop().await;
}
