//! A realistic generated workload for the replay benchmark and the tests: several tenants,
//! each with a fleet of devices (registration, online/offline, version and identity changes,
//! breaker trips, config snapshots and drift, tag and setting edits, a few removals),
//! workflow journals (config pushes, firmware upgrades, backups with retried steps, timers,
//! signals and every outcome, some left running) and rollouts over those devices (canaries,
//! batches, pauses, halts, some left running).
//!
//! Appends go through [`EventStore`] with an exact expected version per stream, from many
//! concurrent writers that each interleave appends to several open streams.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use netledger_domain::device::{
    ConfigDriftDetected, ConfigSnapshotRecorded, DeviceCameOnline, DeviceCredentialsChanged,
    DeviceFacts, DeviceHardwareChanged, DeviceIdentityChanged, DeviceName, DevicePollingResumed,
    DevicePollingSuspended, DeviceRegistered, DeviceRemoved, DeviceTagsSet, DeviceUpdated,
    DeviceVersionChanged, DeviceWentOffline, Endpoint, Host, SnapshotReason, Tag, Transport,
};
use netledger_domain::workflow::{
    FailureClass, Outcome, RolloutCreated, RolloutDeviceFinished, RolloutState,
    RolloutStateChanged, RolloutTarget, WorkflowFinished, WorkflowSignalled, WorkflowStarted,
    WorkflowStepCompleted, WorkflowStepFailed, WorkflowStepStarted, WorkflowTimerScheduled,
};
use netledger_domain::{
    Actor, DeviceId, EventMetadata, EventType, ExpectedVersion, NewEvent, RolloutId, StreamName,
    TenantId, WorkflowId,
};
use netledger_store::EventStore;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

/// Why a workload could not be generated or appended.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// A generated value or event was refused (a generator bug).
    #[error("building the workload failed: {0}")]
    Build(String),
    /// An append failed.
    #[error("appending the workload failed")]
    Store(#[from] netledger_store::StoreError),
}

/// The shape of a workload.
#[derive(Debug, Clone)]
pub struct WorkloadSpec {
    /// Tenants.
    pub tenants: usize,
    /// Devices per tenant.
    pub devices_per_tenant: usize,
    /// Events to generate, exactly (the streams opened last are cut short to fit; a cut
    /// journal is a workflow or rollout still running).
    pub events: u64,
    /// Concurrent appenders.
    pub writers: usize,
    /// Most events in one append.
    pub max_append: usize,
    /// Random seed (content and ids follow from it).
    pub seed: u64,
}

impl WorkloadSpec {
    /// A small mixed workload for tests: 3 tenants, 12 devices each, about `events` events.
    pub fn small(events: u64, seed: u64) -> Self {
        Self {
            tenants: 3,
            devices_per_tenant: 12,
            events,
            writers: 6,
            max_append: 4,
            seed,
        }
    }
}

/// What [`fill`] appended.
#[derive(Debug, Clone, Serialize)]
pub struct FillReport {
    /// Events appended.
    pub events: u64,
    /// Streams written.
    pub streams: u64,
    /// Seconds it took.
    pub seconds: f64,
    /// The tenants used.
    pub tenants: Vec<TenantId>,
}

const TAGS: &[&str] = &[
    "site:ber",
    "site:muc",
    "site:ham",
    "role:core",
    "role:edge",
    "role:access",
    "vendor:mikrotik",
    "rack/a1",
];

fn base_time() -> OffsetDateTime {
    // 2026-11-01T00:00:00Z: payload times are offsets from here; no clock is read.
    OffsetDateTime::from_unix_timestamp(1_793_491_200).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn random_uuid(rng: &mut StdRng) -> Uuid {
    uuid::Builder::from_random_bytes(rng.r#gen()).into_uuid()
}

#[derive(Debug, Clone, Copy)]
enum Job {
    Device {
        tenant: usize,
        index: usize,
        len: usize,
    },
    Workflow {
        tenant: usize,
    },
    Rollout {
        tenant: usize,
    },
}

struct Fleet {
    tenants: Vec<TenantId>,
    devices: Vec<Vec<DeviceId>>,
    users: Vec<Uuid>,
}

/// A stream's generated events and where its append has got to.
struct Open {
    tenant: TenantId,
    stream: StreamName,
    events: Vec<NewEvent>,
    version: u64,
}

struct Gen<'a> {
    rng: StdRng,
    fleet: &'a Fleet,
}

type Built = Result<NewEvent, WorkloadError>;

fn event<E: EventType>(payload: &E, actor: &Actor, correlation: Uuid) -> Built {
    NewEvent::from_typed(
        payload,
        EventMetadata {
            actor: actor.clone(),
            causation_id: correlation,
            correlation_id: correlation,
        },
    )
    .map_err(|e| WorkloadError::Build(format!("building an event: {e}")))
}

fn bad(e: impl std::fmt::Display) -> WorkloadError {
    WorkloadError::Build(e.to_string())
}

impl Gen<'_> {
    fn pick<'b, T>(&mut self, items: &'b [T]) -> Option<&'b T> {
        items.choose(&mut self.rng)
    }

    fn tags(&mut self) -> Result<BTreeSet<Tag>, WorkloadError> {
        let n = self.rng.gen_range(0..=3);
        let mut tags = BTreeSet::new();
        for _ in 0..n {
            if let Some(t) = self.pick(TAGS) {
                tags.insert(Tag::parse(t).map_err(bad)?);
            }
        }
        Ok(tags)
    }

    fn facts(&mut self, name: &str, version: &str) -> DeviceFacts {
        DeviceFacts {
            identity: name.to_owned(),
            version: format!("{version} (stable)"),
            board_name: "CCR2004-1G-12S+2XS".to_owned(),
            architecture: "arm64".to_owned(),
            routerboard_firmware: Some(version.to_owned()),
        }
    }

    fn device(&mut self, tenant: usize, index: usize, len: usize) -> Result<Open, WorkloadError> {
        let device = self.fleet.devices[tenant][index];
        let user = Actor::User {
            id: self.fleet.users[tenant],
        };
        let poller = Actor::system("poller");
        let c = random_uuid(&mut self.rng);
        let name = format!("r{tenant}-{index:05}");
        let transport = if self.rng.gen_bool(0.2) {
            Transport::TlsPinned {
                fingerprint_sha256: format!("{:064x}", self.rng.r#gen::<u128>()),
            }
        } else {
            Transport::Plain
        };
        let mut events = vec![event(
            &DeviceRegistered {
                device_id: device,
                name: DeviceName::parse(&name).map_err(bad)?,
                endpoint: Endpoint {
                    host: Host::parse(&format!("10.{tenant}.{}.{}", index / 250, index % 250 + 1))
                        .map_err(bad)?,
                    port: 8728,
                    transport,
                    ssh: None,
                },
                username: "admin".to_owned(),
                credentials_key_id: "k1".to_owned(),
                tags: self.tags()?,
                poll_interval_secs: 60,
                ssh_client_key: None,
            },
            &user,
            c,
        )?];
        let (mut online, mut suspended) = (false, false);
        let mut minor = 15u32;
        let mut identity = name.clone();
        let mut sha = format!("{:064x}", self.rng.r#gen::<u128>());
        let mut t = base_time() + Duration::minutes(index as i64);
        let removed = self.rng.gen_bool(0.01);
        let body = len.saturating_sub(if removed { 2 } else { 1 });
        for _ in 0..body {
            t += Duration::minutes(self.rng.gen_range(1..120));
            let roll: u32 = self.rng.gen_range(0..100);
            let version = format!("7.{minor}");
            let e = if !online {
                match roll {
                    0..=69 => {
                        online = true;
                        let facts = self.facts(&identity, &version);
                        if suspended {
                            suspended = false;
                            events.push(event(&DevicePollingResumed {}, &poller, c)?);
                        }
                        event(&DeviceCameOnline { facts }, &poller, c)?
                    }
                    70..=84 if !suspended => {
                        suspended = true;
                        event(
                            &DevicePollingSuspended {
                                consecutive_failures: self.rng.gen_range(3..10),
                                retry_at: t + Duration::minutes(5),
                                last_error: "connection timed out".to_owned(),
                            },
                            &poller,
                            c,
                        )?
                    }
                    85..=92 => event(&DeviceTagsSet { tags: self.tags()? }, &user, c)?,
                    _ => event(
                        &DeviceCredentialsChanged {
                            username: "netledger".to_owned(),
                            key_id: format!("k{}", self.rng.gen_range(1..4)),
                            ssh_client_key: None,
                        },
                        &user,
                        c,
                    )?,
                }
            } else {
                match roll {
                    0..=14 => {
                        online = false;
                        let reason = *self
                            .pick(&["timeout", "connection refused", "login failed"])
                            .unwrap_or(&"timeout");
                        event(
                            &DeviceWentOffline {
                                reason: reason.to_owned(),
                            },
                            &poller,
                            c,
                        )?
                    }
                    15..=24 => {
                        let from = format!("7.{minor} (stable)");
                        minor += 1;
                        event(
                            &DeviceVersionChanged {
                                from,
                                to: format!("7.{minor} (stable)"),
                            },
                            &poller,
                            c,
                        )?
                    }
                    25..=27 => {
                        let to = format!("{name}-{}", self.rng.gen_range(0..100));
                        let from = std::mem::replace(&mut identity, to.clone());
                        event(&DeviceIdentityChanged { from, to }, &poller, c)?
                    }
                    28..=29 => event(
                        &DeviceHardwareChanged {
                            board_name: (
                                "CCR2004-1G-12S+2XS".to_owned(),
                                "CCR2004-1G-12S+2XS".to_owned(),
                            ),
                            routerboard_firmware: (
                                Some(version.clone()),
                                Some(format!("{version}.1")),
                            ),
                        },
                        &poller,
                        c,
                    )?,
                    30..=69 => {
                        let changed = self.rng.gen_bool(0.3);
                        if changed {
                            sha = format!("{:064x}", self.rng.r#gen::<u128>());
                        }
                        let reason = *self
                            .pick(&[
                                SnapshotReason::Scheduled,
                                SnapshotReason::Scheduled,
                                SnapshotReason::OnDemand,
                                SnapshotReason::PrePush,
                                SnapshotReason::PostPush,
                            ])
                            .unwrap_or(&SnapshotReason::Scheduled);
                        event(
                            &ConfigSnapshotRecorded {
                                commit: format!("{:040x}", self.rng.r#gen::<u128>()),
                                sha256: sha.clone(),
                                changed,
                                reason,
                                routeros_version: format!("7.{minor}"),
                                workflow_id: matches!(
                                    reason,
                                    SnapshotReason::PrePush | SnapshotReason::PostPush
                                )
                                .then(|| WorkflowId::from_uuid(random_uuid(&mut self.rng))),
                            },
                            &poller,
                            c,
                        )?
                    }
                    70..=74 => {
                        let found = format!("{:064x}", self.rng.r#gen::<u128>());
                        let expected = std::mem::replace(&mut sha, found.clone());
                        event(
                            &ConfigDriftDetected {
                                expected_sha256: expected,
                                found_sha256: found,
                                commit: format!("{:040x}", self.rng.r#gen::<u128>()),
                                ..Default::default()
                            },
                            &poller,
                            c,
                        )?
                    }
                    75..=84 => event(&DeviceTagsSet { tags: self.tags()? }, &user, c)?,
                    85..=92 => event(
                        &DeviceUpdated {
                            name: None,
                            endpoint: None,
                            poll_interval_secs: Some(*self.pick(&[30, 60, 300]).unwrap_or(&60)),
                        },
                        &user,
                        c,
                    )?,
                    _ => {
                        let to = format!("{:064x}", self.rng.r#gen::<u128>());
                        event(
                            &ConfigSnapshotRecorded {
                                commit: format!("{:040x}", self.rng.r#gen::<u128>()),
                                sha256: std::mem::replace(&mut sha, to),
                                changed: false,
                                reason: SnapshotReason::Scheduled,
                                routeros_version: format!("7.{minor}"),
                                workflow_id: None,
                            },
                            &poller,
                            c,
                        )?
                    }
                }
            };
            events.push(e);
        }
        if removed {
            events.push(event(
                &DeviceRemoved {
                    reason: "decommissioned".to_owned(),
                },
                &user,
                c,
            )?);
        }
        Ok(Open {
            tenant: self.fleet.tenants[tenant],
            stream: device.stream(),
            events,
            version: 0,
        })
    }

    fn workflow(&mut self, tenant: usize) -> Result<Open, WorkloadError> {
        let id = WorkflowId::from_uuid(random_uuid(&mut self.rng));
        let worker = Actor::system("worker");
        let c = random_uuid(&mut self.rng);
        let device = *self
            .pick(&self.fleet.devices[tenant])
            .ok_or_else(|| bad("a tenant without devices"))?;
        let (kind, steps): (&str, &[&str]) = match self.rng.gen_range(0..10) {
            0..=4 => (
                "config_push",
                &[
                    "snapshot",
                    "validate",
                    "arm_rollback",
                    "apply",
                    "verify",
                    "commit",
                ],
            ),
            5..=6 => (
                "firmware_upgrade",
                &[
                    "precheck", "snapshot", "upload", "reboot", "await", "verify",
                ],
            ),
            7..=8 => ("backup", &["export", "store"]),
            _ => ("noop", &["noop"]),
        };
        let mut events = vec![event(
            &WorkflowStarted {
                kind: kind.to_owned(),
                definition_version: 1,
                input: serde_json::json!({"device": device, "change": format!("c{}", self.rng.r#gen::<u32>())}),
                idempotency_key: self
                    .rng
                    .gen_bool(0.5)
                    .then(|| format!("key-{}", self.rng.r#gen::<u64>())),
                devices: vec![device],
                rollout_id: None,
            },
            &Actor::User {
                id: self.fleet.users[tenant],
            },
            c,
        )?];
        let unfinished = self.rng.gen_bool(0.05);
        let stop_at = if unfinished {
            self.rng.gen_range(0..steps.len())
        } else {
            steps.len()
        };
        let t = base_time() + Duration::hours(self.rng.gen_range(0..2000));
        for (i, step) in steps.iter().enumerate().take(stop_at) {
            let step = (*step).to_owned();
            events.push(event(
                &WorkflowStepStarted {
                    step: step.clone(),
                    attempt: 1,
                },
                &worker,
                c,
            )?);
            let mut attempt = 1;
            if self.rng.gen_bool(0.1) {
                events.push(event(
                    &WorkflowStepFailed {
                        step: step.clone(),
                        attempt,
                        error: "device did not answer in 10s".to_owned(),
                        class: FailureClass::Retryable,
                        retry_at: Some(t + Duration::seconds(30 * i as i64)),
                    },
                    &worker,
                    c,
                )?);
                attempt = 2;
                events.push(event(
                    &WorkflowStepStarted {
                        step: step.clone(),
                        attempt,
                    },
                    &worker,
                    c,
                )?);
            }
            if step == "await" {
                events.push(event(
                    &WorkflowTimerScheduled {
                        name: "reboot-timeout".to_owned(),
                        fire_at: t + Duration::minutes(5),
                    },
                    &worker,
                    c,
                )?);
            }
            events.push(event(
                &WorkflowStepCompleted {
                    step,
                    attempt,
                    output: serde_json::json!({"ok": true, "took_ms": self.rng.gen_range(5..5000)}),
                },
                &worker,
                c,
            )?);
        }
        if self.rng.gen_bool(0.03) {
            events.push(event(
                &WorkflowSignalled {
                    signal: "pause".to_owned(),
                    payload: serde_json::json!({}),
                },
                &Actor::User {
                    id: self.fleet.users[tenant],
                },
                c,
            )?);
        }
        if !unfinished {
            let roll = self.rng.gen_range(0..100);
            let (outcome, reason) = match (kind, roll) {
                ("config_push" | "firmware_upgrade", 0..=84) => (Outcome::Committed, None),
                ("config_push" | "firmware_upgrade", 85..=94) => {
                    (Outcome::RolledBack, Some("verify failed".to_owned()))
                }
                (_, 0..=94) => (Outcome::Succeeded, None),
                (_, 95..=97) => (
                    Outcome::Failed,
                    Some("device refused the change".to_owned()),
                ),
                _ => (Outcome::Cancelled, Some("cancelled by operator".to_owned())),
            };
            events.push(event(
                &WorkflowFinished {
                    outcome,
                    reason,
                    output: serde_json::json!({"device": device}),
                },
                &worker,
                c,
            )?);
        }
        Ok(Open {
            tenant: self.fleet.tenants[tenant],
            stream: id.stream(),
            events,
            version: 0,
        })
    }

    fn rollout(&mut self, tenant: usize) -> Result<Open, WorkloadError> {
        let id = RolloutId::from_uuid(random_uuid(&mut self.rng));
        let worker = Actor::system("worker");
        let user = Actor::User {
            id: self.fleet.users[tenant],
        };
        let c = random_uuid(&mut self.rng);
        let fleet = &self.fleet.devices[tenant];
        let n = self.rng.gen_range(10..40).min(fleet.len());
        let chosen: Vec<DeviceId> = fleet.choose_multiple(&mut self.rng, n).copied().collect();
        let (canaries, devices) = chosen.split_at(2.min(chosen.len()));
        let batch_size = 10u32;
        let threshold = 3u32;
        let mut events = vec![event(
            &RolloutCreated {
                name: format!("rollout-{}", self.rng.gen_range(0..10_000)),
                target: if self.rng.gen_bool(0.5) {
                    RolloutTarget::Firmware {
                        version: "7.16.2".to_owned(),
                    }
                } else {
                    RolloutTarget::ChangeSet {
                        script: "/ip dns set servers=10.0.0.53".to_owned(),
                        sealed_script: None,
                    }
                },
                canaries: canaries.to_vec(),
                devices: devices.to_vec(),
                batch_size,
                parallelism: 4,
                failure_threshold: threshold,
                rollback_on_halt: true,
                workflow_id: WorkflowId::from_uuid(random_uuid(&mut self.rng)),
            },
            &user,
            c,
        )?];
        let unfinished = self.rng.gen_bool(0.1);
        let stop_at = if unfinished {
            self.rng.gen_range(0..chosen.len().max(1))
        } else {
            chosen.len()
        };
        let mut failures = 0;
        let mut halted = false;
        for (i, d) in chosen.iter().enumerate().take(stop_at) {
            let batch = if i < canaries.len() {
                0
            } else {
                1 + (i - canaries.len()) as u32 / batch_size
            };
            if i == canaries.len() + 5 && self.rng.gen_bool(0.2) {
                events.push(event(
                    &RolloutStateChanged {
                        state: RolloutState::Paused,
                        reason: Some("checking the canaries".to_owned()),
                    },
                    &user,
                    c,
                )?);
                events.push(event(
                    &RolloutStateChanged {
                        state: RolloutState::Running,
                        reason: None,
                    },
                    &user,
                    c,
                )?);
            }
            let outcome = match self.rng.gen_range(0..100) {
                0..=91 => Outcome::Committed,
                92..=96 => Outcome::RolledBack,
                _ => Outcome::Failed,
            };
            if outcome != Outcome::Committed {
                failures += 1;
            }
            events.push(event(
                &RolloutDeviceFinished {
                    device_id: *d,
                    workflow_id: WorkflowId::from_uuid(random_uuid(&mut self.rng)),
                    batch,
                    outcome,
                },
                &worker,
                c,
            )?);
            if failures >= threshold {
                halted = true;
                events.push(event(
                    &RolloutStateChanged {
                        state: RolloutState::Halted,
                        reason: Some(format!("{failures} failures reached the threshold")),
                    },
                    &worker,
                    c,
                )?);
                break;
            }
        }
        if !unfinished && !halted {
            events.push(event(
                &RolloutStateChanged {
                    state: RolloutState::Completed,
                    reason: None,
                },
                &worker,
                c,
            )?);
        }
        Ok(Open {
            tenant: self.fleet.tenants[tenant],
            stream: id.stream(),
            events,
            version: 0,
        })
    }

    fn open(&mut self, job: Job) -> Result<Open, WorkloadError> {
        match job {
            Job::Device { tenant, index, len } => self.device(tenant, index, len),
            Job::Workflow { tenant } => self.workflow(tenant),
            Job::Rollout { tenant } => self.rollout(tenant),
        }
    }
}

/// Appends a generated workload through `store` and reports what it wrote. About 45% of the
/// events are device events, 45% workflow journals, 10% rollouts.
pub async fn fill(store: &EventStore, spec: &WorkloadSpec) -> Result<FillReport, WorkloadError> {
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let tenants = spec.tenants.max(1);
    let per = spec.devices_per_tenant.max(2);
    let fleet = Fleet {
        tenants: (0..tenants)
            .map(|_| TenantId::from_uuid(random_uuid(&mut rng)))
            .collect(),
        devices: (0..tenants)
            .map(|_| {
                (0..per)
                    .map(|_| DeviceId::from_uuid(random_uuid(&mut rng)))
                    .collect()
            })
            .collect(),
        users: (0..tenants).map(|_| random_uuid(&mut rng)).collect(),
    };
    let devices = (tenants * per) as u64;
    let device_len = (spec.events * 45 / 100 / devices).max(2) as usize;
    // Average journal lengths: about 12 events per workflow, 25 per rollout; 10% more jobs
    // than needed, the budget cuts the last ones.
    let workflows = spec.events * 45 / 100 / 12 * 11 / 10;
    let rollouts = (spec.events / 10 / 25 * 11 / 10).max(tenants as u64);
    let mut jobs = Vec::new();
    for tenant in 0..tenants {
        for index in 0..per {
            jobs.push(Job::Device {
                tenant,
                index,
                len: device_len,
            });
        }
    }
    for i in 0..workflows {
        jobs.push(Job::Workflow {
            tenant: (i as usize) % tenants,
        });
    }
    for i in 0..rollouts {
        jobs.push(Job::Rollout {
            tenant: (i as usize) % tenants,
        });
    }
    // Devices first within each writer's share so workflows and rollouts mostly follow the
    // registration of the devices they name, as in production.
    let (device_jobs, mut other_jobs): (Vec<Job>, Vec<Job>) = jobs
        .into_iter()
        .partition(|j| matches!(j, Job::Device { .. }));
    other_jobs.shuffle(&mut rng);
    let writers = spec.writers.max(1);
    let mut shares: Vec<Vec<Job>> = vec![Vec::new(); writers];
    for (i, j) in device_jobs.into_iter().chain(other_jobs).enumerate() {
        shares[i % writers].push(j);
    }
    let fleet = std::sync::Arc::new(fleet);
    let budget = std::sync::Arc::new(AtomicU64::new(spec.events));
    let mut tasks = tokio::task::JoinSet::new();
    for (w, share) in shares.into_iter().enumerate() {
        let store = store.clone();
        let fleet = fleet.clone();
        let budget = budget.clone();
        let seed = spec.seed.wrapping_add(1 + w as u64);
        let max_append = spec.max_append.max(1);
        tasks.spawn(
            async move { write_share(&store, &fleet, &budget, share, seed, max_append).await },
        );
    }
    let (mut events, mut streams) = (0u64, 0u64);
    while let Some(done) = tasks.join_next().await {
        let (e, s) = done.map_err(bad)??;
        events += e;
        streams += s;
    }
    Ok(FillReport {
        events,
        streams,
        seconds: started.elapsed().as_secs_f64(),
        tenants: fleet.tenants.clone(),
    })
}

async fn write_share(
    store: &EventStore,
    fleet: &Fleet,
    budget: &AtomicU64,
    share: Vec<Job>,
    seed: u64,
    max_append: usize,
) -> Result<(u64, u64), WorkloadError> {
    let mut generator = Gen {
        rng: StdRng::seed_from_u64(seed),
        fleet,
    };
    let mut jobs = share.into_iter();
    let mut open: Vec<Open> = Vec::new();
    let (mut events, mut streams) = (0u64, 0u64);
    loop {
        while open.len() < 6 {
            let Some(job) = jobs.next() else {
                break;
            };
            let mut o = generator.open(job)?;
            let want = o.events.len() as u64;
            let granted = budget
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                    Some(left.saturating_sub(want))
                })
                .map_or(0, |left| left.min(want));
            if granted == 0 {
                break;
            }
            o.events.truncate(granted as usize);
            open.push(o);
            streams += 1;
        }
        if open.is_empty() {
            return Ok((events, streams));
        }
        let i = generator.rng.gen_range(0..open.len());
        let n = generator.rng.gen_range(1..=max_append);
        let o = &mut open[i];
        let chunk: Vec<NewEvent> = o.events.drain(..n.min(o.events.len())).collect();
        let appended = chunk.len() as u64;
        let expected = if o.version == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(o.version)
        };
        let outcome = store.append(o.tenant, &o.stream, expected, chunk).await?;
        events += appended;
        o.version = outcome.stream_version;
        if o.events.is_empty() {
            open.swap_remove(i);
        }
    }
}
