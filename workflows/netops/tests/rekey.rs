//! Key rotation (issue #16) against a real PostgreSQL and devsim: `rotate_all` re-encrypts
//! the device's credentials, a sealed change script and the encrypted backups of three
//! snapshots (two of a push, one on-demand) under the new key, first from the journals
//! (k1 -> k2), then from the rows a rotation wrote (k2 -> k3); a worker that has only the
//! newest key then restores the pushed change from its archived, re-encrypted backup.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeSet;

use netledger_domain::workflow::Outcome;
use netledger_domain::{Actor, EventMetadata, TenantId};
use netledger_netops::workflows::{KeyRotation, rotate_all};
use netledger_store::credentials::{CredentialKeys, KeyMaterial};
use netledger_store::{begin_tenant, sealed};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use support::{Env, K1, env};

const CHANGE: &str =
    "/ip pool\nadd name=pool-rk ranges=10.78.0.10-10.78.0.20\n/system identity\nset name=rekeyed\n";
const SCRIPT: &str = "/ppp secret\nadd name=branch password=s3cret-rk service=pppoe\n";

fn keys(current: &str, ids: &[(&str, u8)]) -> CredentialKeys {
    CredentialKeys::new(
        current,
        ids.iter()
            .map(|(id, b)| ((*id).to_owned(), KeyMaterial::from_bytes([*b; 32]))),
    )
    .unwrap()
}

async fn rotate(e: &Env, keys: &CredentialKeys) -> KeyRotation {
    let meta = EventMetadata::for_command(Actor::system("test"), Uuid::new_v4());
    rotate_all(&e.pools.app, &e.pools.system, &e.deps.archive, keys, meta)
        .await
        .unwrap()
}

/// Every backup file of the tenant: (name, the key id it is sealed with).
fn blob_files(e: &Env) -> BTreeSet<(String, String)> {
    std::fs::read_dir(e.deps.archive.blob_dir(e.tenant))
        .unwrap()
        .map(|f| {
            let f = f.unwrap();
            let v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(f.path()).unwrap()).unwrap();
            (
                f.file_name().to_string_lossy().into_owned(),
                v["key_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn open_script(pool: &PgPool, keys: &CredentialKeys, tenant: TenantId, id: Uuid) -> String {
    let mut tx = begin_tenant(pool, tenant).await.unwrap();
    let s = sealed::open(&mut tx, keys, tenant, id).await.unwrap();
    tx.commit().await.unwrap();
    s
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn rotation_re_encrypts_everything_and_the_old_keys_can_go(owner: PgPool) {
    let mut e = env(owner, 1, "rekey-test").await;
    assert_eq!(
        K1, [0x11; 32],
        "keys() below builds k1 from the harness's bytes"
    );
    let device = e.register(0).await;
    let push = e
        .start(
            "config_push",
            device,
            json!({ "device_id": device, "change_id": "rk-1", "script": CHANGE }),
        )
        .await;
    let (o, j) = e.finish(push).await;
    assert_eq!(o, Outcome::Committed, "{j:?}");
    let backup = e
        .start("backup", device, json!({ "device_id": device }))
        .await;
    let (o, j) = e.finish(backup).await;
    assert_eq!(o, Outcome::Succeeded, "{j:?}");
    let script = Uuid::new_v4();
    let mut tx = begin_tenant(&e.pools.app, e.tenant).await.unwrap();
    sealed::seal(&mut tx, &e.deps.keys, e.tenant, script, SCRIPT)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let before = blob_files(&e);
    assert_eq!(
        before.len(),
        3,
        "pre-push, post-push, on-demand: {before:?}"
    );
    assert!(before.iter().all(|(_, k)| k == "k1"), "{before:?}");

    // k1 -> k2: from the journals
    let k2 = keys("k2", &[("k1", 0x11), ("k2", 0x22)]);
    let r = rotate(&e, &k2).await;
    assert_eq!(r.failed(), 0, "{r}");
    assert_eq!(r.credentials.rotated, [device], "{r}");
    assert_eq!(r.scripts.rotated, 1, "{r}");
    assert_eq!(
        (r.backups.seen, r.backups.rotated, r.backups.files_removed),
        (3, 3, 3),
        "{r}"
    );
    let after = blob_files(&e);
    assert_eq!(after.len(), 3, "{after:?}");
    assert!(after.iter().all(|(_, k)| k == "k2"), "{after:?}");
    assert!(
        after.is_disjoint(&before),
        "re-encrypted files have new names"
    );
    // nothing left to do
    let again = rotate(&e, &k2).await;
    assert_eq!(
        (
            again.credentials.rotated.len(),
            again.scripts.rotated,
            again.backups.seen,
            again.backups.rotated,
            again.failed()
        ),
        (0, 0, 3, 0, 0),
        "{again}"
    );

    // k2 -> k3: from the rows the first rotation wrote
    let k3 = keys("k3", &[("k2", 0x22), ("k3", 0x33)]);
    let r = rotate(&e, &k3).await;
    assert_eq!(r.failed(), 0, "{r}");
    assert_eq!((r.backups.rotated, r.backups.files_removed), (3, 3), "{r}");
    assert!(blob_files(&e).iter().all(|(_, k)| k == "k3"));

    // without a key it needs, a rotation reports what it could not do and goes on
    let k4_only = keys("k4", &[("k4", 0x44)]);
    let stuck = rotate(&e, &k4_only).await;
    assert_eq!(stuck.credentials.failed.len(), 1, "{stuck}");
    assert_eq!(stuck.scripts.failed.len(), 1, "{stuck}");
    assert_eq!(stuck.backups.failed.len(), 3, "{stuck}");
    let text = stuck.to_string();
    assert!(
        text.contains("`k3`") && text.contains("keep those keys"),
        "{text}"
    );
    assert!(
        blob_files(&e).iter().all(|(_, k)| k == "k3"),
        "nothing lost"
    );

    // only k3 from now on: the script opens, and the worker restores the pushed change from
    // the archived backup (file and password both re-encrypted twice)
    let only_k3 = keys("k3", &[("k3", 0x33)]);
    assert_eq!(
        open_script(&e.pools.app, &only_k3, e.tenant, script).await,
        SCRIPT
    );
    e.restart_worker_with(only_k3).await;
    let restore = e
        .start(
            "config_restore",
            device,
            json!({ "device_id": device, "push_workflow_id": push }),
        )
        .await;
    let (o, j) = e.finish_within(restore, 1200).await;
    assert_eq!(o, Outcome::RolledBack, "{j:?}");
    let finished = &j.iter().find(|(t, _)| t == "WorkflowFinished").unwrap().1;
    assert_eq!(finished["output"]["result"], "restored", "{finished}");
    let d = e.fleet.device(0).unwrap();
    assert_eq!(
        d.command_log()
            .iter()
            .filter(|l| l.contains("/system/backup/load"))
            .count(),
        1,
        "the archived backup was uploaded and loaded with its password"
    );
    assert!(
        !d.export(false).contains("name=rekeyed"),
        "the change is undone"
    );
    e.stop().await;
}
