//! A worker process running `netops::workflows::run_worker` (the code `netledger worker`
//! runs) for the chaos test, which kills it with SIGKILL. Arguments:
//! `<database url> <archive dir> <credential key base64> <firmware cache dir> <cache base url> <name>`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::sync::Arc;
use std::time::Duration;

use netledger_archive::{Archive, ArchiveOptions};
use netledger_domain::clock::Clock;
use netledger_engine::WorkerOptions;
use netledger_netops::workflows::{NetopsDeps, NetopsOptions, run_worker};
use netledger_netops::{RollbackOptions, VerifyOptions};
use netledger_store::credentials::{CredentialKeys, KeyMaterial};
use netledger_store::{EventStore, Pools, StoreOptions};

#[derive(Debug)]
struct RealClock;
impl Clock for RealClock {
    fn now(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc()
    }
}

#[tokio::main]
async fn main() {
    let a: Vec<String> = std::env::args().collect();
    let owner: sqlx::postgres::PgConnectOptions = a[1].parse().unwrap();
    let pools = Pools::connect(&owner, None, None, 8).await.unwrap();
    let store = EventStore::start(pools.app.clone(), StoreOptions::default());
    let archive = Archive::open_with(
        a[2].clone(),
        ArchiveOptions {
            fsync: false,
            ..ArchiveOptions::default()
        },
    )
    .unwrap();
    let keys = CredentialKeys::new(
        "k1",
        [(
            "k1".to_owned(),
            KeyMaterial::from_base64("k1", &a[3]).unwrap(),
        )],
    )
    .unwrap();
    let deps = NetopsDeps {
        app: pools.app.clone(),
        system: pools.system.clone(),
        store,
        archive,
        keys,
        firmware_cache: a[4].clone().into(),
        firmware_base_url: a[5].clone(),
        options: NetopsOptions {
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_secs(5),
            verify: VerifyOptions {
                reachable_within: Duration::from_secs(2),
                retry_every: Duration::from_millis(100),
            },
            rollback: RollbackOptions {
                wait_for_device: Duration::from_secs(30),
                reboot_wait: Duration::from_secs(10),
                retry_every: Duration::from_millis(100),
            },
            arm_margin: Duration::from_secs(60),
            await_reboot: netledger_netops::firmware::AwaitOptions {
                within: Duration::from_secs(30),
                retry_every: Duration::from_millis(100),
            },
            // a step interrupted by a kill counts as an attempt: leave room for many kills
            retry: netledger_engine::RetryPolicy {
                max_attempts: 20,
                initial_backoff: Duration::from_millis(100),
                ..netledger_engine::RetryPolicy::default()
            },
            ..NetopsOptions::default()
        },
        clock: Arc::new(RealClock),
    };
    let mut o = WorkerOptions::named(a[6].clone());
    o.lease = Duration::from_millis(1500);
    o.heartbeat = Duration::from_millis(300);
    o.poll = Duration::from_millis(100);
    o.max_inline_wait = Duration::from_secs(5);
    run_worker(deps, o, None, std::future::pending::<()>())
        .await
        .unwrap();
}
