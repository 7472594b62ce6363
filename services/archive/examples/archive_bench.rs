//! Snapshot commits per second into one tenant repository: `cargo run --release -p
//! netledger-archive --example archive_bench -- <devices> <snapshots per device> <threads>
//! <fsync 0|1> [dir]`. Each thread records its share of the devices, one snapshot after the
//! other (as workflow steps do); every snapshot changes the device's file, so every record
//! is a commit. Prints one JSON line.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::disallowed_methods,
    clippy::print_stdout
)]

use std::sync::{Arc, Barrier};
use std::time::Instant;

use netledger_archive::{Archive, ArchiveOptions, SnapshotMeta};
use netledger_domain::device::SnapshotReason;
use netledger_domain::event::Actor;
use netledger_domain::ids::{DeviceId, TenantId};
use uuid::Uuid;

fn export(device: usize, snapshot: usize) -> String {
    let mut s = String::from("/interface bridge\nadd name=bridge1\n/ip address\n");
    for i in 0..40 {
        s.push_str(&format!(
            "add address=10.{}.{}.1/24 interface=ether{} comment=\"d{device} n{i}\"\n",
            device % 250,
            i,
            i % 8 + 1
        ));
    }
    s.push_str(&format!(
        "/system identity\nset name=dev-{device}-snap-{snapshot}\n"
    ));
    s
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let arg = |i: usize, d: usize| a.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (devices, snapshots, threads, fsync) = (arg(1, 1000), arg(2, 2), arg(3, 64), arg(4, 1));
    let dir = a.get(5).map_or_else(
        || std::env::temp_dir().join(format!("archive-bench-{}", std::process::id())),
        std::path::PathBuf::from,
    );
    let archive = Archive::open_with(
        &dir,
        ArchiveOptions {
            fsync: fsync == 1,
            ..ArchiveOptions::default()
        },
    )
    .unwrap();
    let tenant = TenantId::new_random();
    let ids: Arc<Vec<DeviceId>> = Arc::new((0..devices).map(|_| DeviceId::new_random()).collect());
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (archive, ids, barrier) = (archive.clone(), ids.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let mut worst = 0f64;
                for s in 0..snapshots {
                    for (d, device) in ids.iter().enumerate().skip(t).step_by(threads) {
                        let meta = SnapshotMeta {
                            actor: Actor::system("archive-bench"),
                            reason: SnapshotReason::PrePush,
                            causation_id: Uuid::new_v4(),
                            correlation_id: Uuid::new_v4(),
                            at: time::OffsetDateTime::now_utc(),
                            routeros_version: "7.19.4".to_owned(),
                            workflow_id: None,
                        };
                        let t0 = Instant::now();
                        let r = archive
                            .record(tenant, *device, &export(d, s), &meta)
                            .unwrap();
                        worst = worst.max(t0.elapsed().as_secs_f64());
                        assert!(r.changed);
                    }
                }
                worst
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    let worst = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .fold(0f64, f64::max);
    let secs = started.elapsed().as_secs_f64();
    let commits = devices * snapshots;
    println!(
        "{{\"devices\":{devices},\"commits\":{commits},\"threads\":{threads},\"fsync\":{},\"seconds\":{secs:.2},\"commits_per_s\":{:.1},\"worst_record_ms\":{:.1}}}",
        fsync == 1,
        commits as f64 / secs,
        worst * 1000.0
    );
    let _ = std::fs::remove_dir_all(&dir);
}
