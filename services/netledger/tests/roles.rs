//! Issue #16, operations: the roles as separate processes, two of each, on one PostgreSQL,
//! one NATS and one data folder with a simulated fleet. Scale-out: no device is polled by
//! two pollers, no device event is written twice, one relay publishes and every workflow runs
//! once. SIGTERM under load: each stopped process exits 0 after finishing its work, and the
//! other process of its role takes over at once (shards and the relay lock are handed back,
//! not left to expire), and nothing is lost.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// The harness starts real processes and reads the wall clock to time the takeovers.
#![allow(clippy::disallowed_methods)]

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use serde_json::json;
use sqlx::PgPool;

use support::cluster::Cluster;
use support::platform::{ADMIN_EMAIL, ADMIN_PASSWORD, Http, start_backup as backup, until};

/// The relay's advisory lock key ("nlrelay", services/netledger/src/relay.rs).
const RELAY_LOCK: i64 = 0x6e6c_7265_6c61_7900;

async fn relay_lock_holders(owner: &PgPool) -> i64 {
    // A bigint advisory key is split into classid (high 32 bits) and objid (low 32 bits);
    // advisory locks are per database (other tests' relays hold the same key elsewhere).
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         AND objsubid = 1 AND ((classid::bigint << 32) | objid::bigint) = $1",
    )
    .bind(RELAY_LOCK)
    .fetch_one(owner)
    .await
    .unwrap()
}

/// Registers every device of the fleet (alternating APIs) and waits until all are online.
async fn register_fleet(cluster: &Cluster, apis: &[Http], token: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..cluster.manifest.len() {
        ids.push(cluster.register(&apis[i % apis.len()], token, i, 5).await);
    }
    let api = &apis[apis.len() - 1];
    until("every device online", Duration::from_secs(60), || async {
        let page = api
            .ok(200, "GET", "/api/v1/devices?limit=100", token, None)
            .await;
        let items = page["items"].as_array().unwrap();
        (items.len() == ids.len() && items.iter().all(|d| d["status"] == "online")).then_some(())
    })
    .await;
    ids
}

/// Waits until every workflow ended; returns their outcomes.
async fn outcomes(api: &Http, token: &str, ids: &[String], within: Duration) -> Vec<String> {
    until("every workflow ended", within, || async {
        let mut out = Vec::new();
        for id in ids {
            let a = api
                .ok(200, "GET", &format!("/api/v1/workflows/{id}"), token, None)
                .await;
            match a["run"]["outcome"].as_str() {
                Some(o) => out.push(o.to_owned()),
                None => return None,
            }
        }
        Some(out)
    })
    .await
}

/// The events stream holds every event of the store exactly once, in order: message `n`
/// carries position `n` (positions are gapless), and the stream ends at the store's head.
async fn stream_matches_the_store(owner: &PgPool, nats_url: &str) {
    let client = async_nats::connect(nats_url).await.unwrap();
    let js = jetstream::new(client);
    let head: i64 = sqlx::query_scalar("SELECT coalesce(max(position), 0) FROM events")
        .fetch_one(owner)
        .await
        .unwrap();
    let mut stream = js.get_stream("NETLEDGER_EVENTS").await.unwrap();
    until("the relay caught up", Duration::from_secs(30), || {
        let mut stream = stream.clone();
        async move { (stream.info().await.unwrap().state.last_sequence as i64 >= head).then_some(()) }
    })
    .await;
    let state = stream.info().await.unwrap().state.clone();
    assert_eq!(state.first_sequence, 1);
    for seq in 1..=state.last_sequence {
        let msg = stream.get_raw_message(seq).await.unwrap();
        let id = support::nats::message_position(&msg);
        assert_eq!(id, seq as i64, "stream message {seq} carries position {id}");
    }
    assert!(state.last_sequence as i64 >= head);
}

/// No device polled by two pollers: consecutive telemetry samples of a device are never
/// closer than half its poll interval (5 s here; two pollers would interleave).
async fn no_double_polling(owner: &PgPool, devices: &[String]) {
    for d in devices {
        let gaps: Vec<Option<f64>> = sqlx::query_scalar(
            "SELECT extract(epoch FROM at - lag(at) OVER (ORDER BY at))::float8 \
             FROM device_samples WHERE device_id = $1::uuid ORDER BY at",
        )
        .bind(d)
        .fetch_all(owner)
        .await
        .unwrap();
        let gaps: Vec<f64> = gaps.into_iter().flatten().collect();
        assert!(gaps.len() >= 2, "device {d}: {} samples", gaps.len() + 1);
        let min = gaps.iter().copied().fold(f64::INFINITY, f64::min);
        assert!(
            min >= 1.0,
            "device {d} was polled {min:.2} s apart: {gaps:?}"
        );
    }
}

/// No device event written twice: each device came online once and was registered once.
async fn no_double_device_writes(owner: &PgPool, devices: &[String]) {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT stream, event_type, count(*) FROM events WHERE category = 'device' \
         AND event_type IN ('DeviceRegistered', 'DeviceCameOnline') GROUP BY 1, 2",
    )
    .fetch_all(owner)
    .await
    .unwrap();
    let mut seen: BTreeMap<(String, String), i64> = BTreeMap::new();
    for (stream, t, n) in rows {
        seen.insert((stream, t), n);
    }
    for d in devices {
        for t in ["DeviceRegistered", "DeviceCameOnline"] {
            let n = seen.get(&(format!("device-{d}"), t.to_owned())).copied();
            assert_eq!(n, Some(1), "device {d}: {t} written {n:?} times");
        }
    }
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn two_of_each_role_share_the_work_without_doing_it_twice(owner: PgPool) {
    let mut cluster = Cluster::start(&owner, 8, 2).await;
    let apis = [cluster.api(1), cluster.api(2)];
    let token = apis[0].login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let devices = register_fleet(&cluster, &apis, &token).await;

    // Both pollers hold shards; every shard has one owner.
    until(
        "both pollers hold shards",
        Duration::from_secs(30),
        || async {
            let owners: i64 = sqlx::query_scalar(
                "SELECT count(DISTINCT owner) FROM poller_shards \
             WHERE owner IS NOT NULL AND lease_expires_at > now()",
            )
            .fetch_one(&owner)
            .await
            .unwrap();
            (owners == 2).then_some(())
        },
    )
    .await;

    // Every workflow runs once, whichever API started it and whichever worker claims it.
    let mut workflows = Vec::new();
    for (i, d) in devices.iter().enumerate() {
        workflows.push(backup(&apis[i % 2], &token, d, &format!("scale-{i}")).await);
    }
    let ended = outcomes(&apis[1], &token, &workflows, Duration::from_secs(90)).await;
    assert!(ended.iter().all(|o| o == "succeeded"), "{ended:?}");
    let completions: Vec<i64> = sqlx::query_scalar(
        "SELECT count(*) FILTER (WHERE event_type = 'WorkflowFinished') FROM events \
         WHERE category = 'workflow' GROUP BY stream",
    )
    .fetch_all(&owner)
    .await
    .unwrap();
    assert_eq!(completions.len(), workflows.len());
    assert!(completions.iter().all(|&n| n == 1), "{completions:?}");

    // Poll a few more rounds, then look at what the pollers wrote.
    tokio::time::sleep(Duration::from_secs(12)).await;
    no_double_polling(&owner, &devices).await;
    no_double_device_writes(&owner, &devices).await;

    // One relay: one lock holder, one projector that says it publishes, and the stream
    // holds every event once and in order.
    assert_eq!(relay_lock_holders(&owner).await, 1);
    let publishing: Vec<String> = cluster
        .procs
        .iter()
        .filter(|p| p.log_text().contains("relay holds the lock"))
        .map(|p| p.name.clone())
        .collect();
    assert_eq!(publishing.len(), 1, "{publishing:?}");
    stream_matches_the_store(&owner, &cluster.nats_url()).await;
    for name in [
        "api-1",
        "api-2",
        "worker-1",
        "worker-2",
        "poller-1",
        "poller-2",
        "projector-1",
        "projector-2",
    ] {
        let p = cluster.proc(name);
        assert!(
            p.child.try_wait().unwrap().is_none(),
            "{name} exited:\n{}",
            p.log_text()
        );
    }
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn sigterm_under_load_loses_nothing_and_the_peer_takes_over_at_once(owner: PgPool) {
    let mut cluster = Cluster::start(&owner, 8, 2).await;
    let apis = [cluster.api(1), cluster.api(2)];
    let token = apis[0].login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let devices = register_fleet(&cluster, &apis, &token).await;
    let leader = until("a relay leader", Duration::from_secs(30), || async {
        cluster
            .procs
            .iter()
            .find(|p| {
                p.name.starts_with("projector") && p.log_text().contains("relay holds the lock")
            })
            .map(|p| p.name.clone())
    })
    .await;
    let standby = if leader == "projector-1" {
        "projector-2"
    } else {
        "projector-1"
    };

    // Load: slow devices (every reply 150 ms late), so that the backups, one per device,
    // are in flight when the signal comes; and a stream of reads on api-1.
    for i in 0..devices.len() {
        let a = cluster
            .control
            .call(
                "PUT",
                &format!("/devices/{i}/faults"),
                None,
                Some(json!({"delay_ms": 150})),
                &[],
            )
            .await;
        assert!(a.status < 300, "faults: {}", a.status);
    }
    let mut workflows = Vec::new();
    for (i, d) in devices.iter().enumerate() {
        workflows.push(backup(&apis[1], &token, d, &format!("term-{i}")).await);
    }
    let reads = {
        let api = cluster.api(1);
        let token = token.clone();
        tokio::spawn(async move {
            let mut answers = Vec::new();
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(20) {
                let a = api
                    .try_call("GET", "/api/v1/devices?limit=100", Some(&token), None, &[])
                    .await;
                answers.push((Instant::now(), a.map(|a| a.status)));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            answers
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let unfinished: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT stream) FROM events WHERE category = 'workflow' \
         AND stream NOT IN (SELECT stream FROM events WHERE event_type = 'WorkflowFinished')",
    )
    .fetch_one(&owner)
    .await
    .unwrap();
    assert!(
        unfinished > 0,
        "every backup finished before the signal: no load"
    );

    // SIGTERM to one process of each role, the relay's leader among them, all at once.
    let stopped = ["api-1", "worker-1", "poller-1", leader.as_str()];
    let term_at = Instant::now();
    for name in stopped {
        cluster.proc(name).terminate();
    }
    for name in stopped {
        let status = cluster.proc(name).exit(Duration::from_secs(40)).await;
        assert!(
            status.success(),
            "{name} on SIGTERM: {status}\n{}",
            cluster.proc(name).log_text()
        );
    }
    let all_exited = term_at.elapsed();

    // The other poller holds every shard long before the 10 s lease could have expired.
    let shards_taken = until(
        "poller-2 holds every shard",
        Duration::from_secs(30),
        || async {
            let (total, free): (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE owner IS NULL OR lease_expires_at <= now() \
             OR owner <> (SELECT poller_id FROM poller_members ORDER BY started_at DESC LIMIT 1)) \
             FROM poller_shards",
        )
        .fetch_one(&owner)
        .await
        .unwrap();
            (total > 0 && free == 0).then(|| term_at.elapsed())
        },
    )
    .await;
    let members: i64 = sqlx::query_scalar("SELECT count(*) FROM poller_members")
        .fetch_one(&owner)
        .await
        .unwrap();
    assert_eq!(members, 1, "poller-1 left the membership");
    assert!(
        shards_taken < Duration::from_secs(10),
        "shards taken over after {shards_taken:?}: left to lease expiry, not handed back"
    );

    // The standby projector publishes within its 2 s retry.
    let relay_taken = until(
        "the standby relay publishes",
        Duration::from_secs(30),
        || async {
            cluster
                .procs
                .iter()
                .find(|p| p.name == standby)
                .unwrap()
                .log_text()
                .contains("relay holds the lock")
                .then(|| term_at.elapsed())
        },
    )
    .await;
    assert!(
        relay_taken < all_exited + Duration::from_secs(5),
        "relay taken over after {relay_taken:?}"
    );

    // Every workflow ends, succeeded, on the remaining worker; nothing is lost.
    let ended = outcomes(&apis[1], &token, &workflows, Duration::from_secs(120)).await;
    assert!(ended.iter().all(|o| o == "succeeded"), "{ended:?}");
    stream_matches_the_store(&owner, &cluster.nats_url()).await;
    no_double_device_writes(&owner, &devices).await;
    until("every device online", Duration::from_secs(30), || async {
        let page = apis[1]
            .ok(200, "GET", "/api/v1/devices?limit=100", &token, None)
            .await;
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["status"] == "online")
            .then_some(())
    })
    .await;

    // api-1 answered every request it took 200; after SIGTERM it refused new connections.
    let answers = reads.await.unwrap();
    let ok = answers.iter().filter(|(_, a)| matches!(a, Ok(200))).count();
    assert!(ok > 0, "no read answered");
    for (at, a) in &answers {
        match a {
            Ok(200) => {}
            Ok(other) => panic!("api-1 answered {other} while stopping"),
            Err(e) => assert!(*at >= term_at, "a read failed before SIGTERM: {e}"),
        }
    }
    eprintln!(
        "SIGTERM: all four exited after {all_exited:?}; shards taken over after {shards_taken:?}; \
         relay after {relay_taken:?}; {} reads answered 200",
        ok
    );
}
