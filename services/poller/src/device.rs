//! One device's polling task: a logged-in session kept across polls, the status commands
//! sent together on it, the circuit breaker, the cheap change indicator and the exports that
//! snapshot the configuration or detect drift, and the fenced, change-only appends.
//!
//! Exports before RouterOS 7.13 on a device with SSH access: the export is written to a file
//! over the API as always, then read back over SFTP (the API's `contents` is capped near
//! 4 KB on RouterOS 6) and removed over the API; the archived text is the file's bytes, the
//! same as a 7.13+ device's `/file/read`. A device registered to trust its SSH host key on
//! first use gets the key recorded (`DeviceSshHostKeyPinned`, fenced like every poller append)
//! before the session is used for anything.
//!
//! Every device has its own task, sleeping until its next poll, so a slow or dead device
//! only ever holds up itself: its poll is bounded by `poll_timeout` (connect by
//! `connect_timeout`), and the only shared resources are the permits bounding concurrent
//! polls and exports, each held for at most that long.

use std::sync::Arc;
use std::time::Duration;

use netledger_archive::{Archive, Prepared, SnapshotMeta};
use netledger_device_client::ClientSettings;
use netledger_domain::clock::Clock;
use netledger_domain::device::{
    DeviceCommand, DeviceEvent, DeviceFacts, DeviceState, Observation, SnapshotReason, Via,
    file_access,
};
use netledger_domain::errors::error_chain;
use netledger_domain::{Actor, EventEnum, EventId, EventMetadata, ExpectedVersion, TenantId};
use netledger_store::append::{AppendRequest, append_in_transaction};
use netledger_store::credentials::{CredentialKeys, DevicePassword};
use netledger_store::{StoreError, begin_tenant};
use rand::Rng as _;
use routeros::menus::{ExportOptions, Interface, Resources};
use routeros::{Client, Command, Password};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use time::OffsetDateTime;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::account;
use crate::breaker::{Breaker, Transition};
use crate::decide::{BreakerView, DeviceAccount, RecordedSnapshot, decide};
use crate::error::PollerError;
use crate::metrics::{InterfaceCounters, Record, Runtime, Sample};
use crate::options::PollerOptions;
use crate::shards::lease_current;
use crate::stats::Stats;
use crate::worktable::WorkRow;

/// Export file stem the poller uses on devices (one poller per device at a time).
const EXPORT_FILE: &str = "netledger-poller";
/// After a failed export, the next attempt waits at least this long.
const EXPORT_RETRY: Duration = Duration::from_secs(600);
/// Appends re-decided after conflicts before giving up until the next poll.
const APPEND_ATTEMPTS: usize = 3;

/// What every device task shares.
pub(crate) struct Ctx {
    pub app: PgPool,
    pub system: PgPool,
    pub archive: Archive,
    pub clock: Arc<dyn Clock>,
    pub options: PollerOptions,
    pub polls: Arc<Semaphore>,
    pub exports: Arc<Semaphore>,
    pub metrics: mpsc::Sender<Record>,
    pub stats: Arc<Stats>,
    pub poller_id: Uuid,
    /// `workflow_device_locks` exists (the engine's device ownership table).
    pub locks_table: bool,
    pub keys: CredentialKeys,
}

/// The lease a device is polled under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fence {
    pub shard: u32,
    pub attempt: i64,
}

/// Everything a device task starts from.
pub(crate) struct DeviceSpec {
    pub row: WorkRow,
    pub username: String,
    pub password: DevicePassword,
    /// The SSH key the credentials hold, parsed (the SSH login instead of the password), or
    /// why it cannot be used (exports over SSH then fail with it).
    pub ssh_key: Result<Option<routeros_ssh::ClientKey>, String>,
    pub fence: Fence,
    pub state: DeviceState,
    pub runtime: Option<Runtime>,
    /// Where the device may be (the operator's policy plus its tenant's allowed networks).
    pub device_networks: netledger_domain::device::network::DeviceNetworkPolicy,
}

/// What a successful status poll saw.
struct Polled {
    facts: DeviceFacts,
    resources: Resources,
    interfaces: Vec<Interface>,
    /// Fingerprint of `/system/history` (None where the menu is missing).
    indicator: Option<String>,
    /// The newest `/system/history` id it read (`Some(0)`: none), when known
    /// ([`account::head`]).
    history_head: Option<u64>,
    at: OffsetDateTime,
}

struct Task {
    ctx: Arc<Ctx>,
    tenant: TenantId,
    row: WorkRow,
    config: Result<routeros::Config, String>,
    ssh_key: Result<Option<routeros_ssh::ClientKey>, String>,
    fence: Fence,
    state: DeviceState,
    session: Option<Client>,
    breaker: Breaker,
    history_supported: bool,
    routerboard_firmware: Option<String>,
    last_uptime: Option<Duration>,
    /// The change indicator the configuration was last compared at.
    checked_indicator: Option<String>,
    /// The newest `/system/history` id known to be in the last snapshot (the mark of
    /// [`account::select`]); `None` until an export matched the snapshot in this task.
    history_mark: Option<u64>,
    next_export_check: Option<OffsetDateTime>,
    next_snapshot: Option<OffsetDateTime>,
    export_blocked_until: Option<OffsetDateTime>,
    export_error_logged: bool,
}

/// The device's client configuration: the one endpoint-to-client mapping the netops
/// workflows use too (`netledger-device-client`), with the poller's timeouts and CA roots.
fn client_config(spec: &DeviceSpec, options: &PollerOptions) -> Result<routeros::Config, String> {
    let (row, username, password) = (&spec.row, &spec.username, &spec.password);
    let settings = ClientSettings {
        connect_timeout: options.connect_timeout,
        command_timeout: options.poll_timeout,
        tls_roots: options.tls_roots.clone(),
        device_networks: spec.device_networks.clone(),
    };
    netledger_device_client::client_config(
        &row.host,
        row.port,
        &row.transport,
        username,
        Password::new(password.expose()),
        &settings,
    )
    .map_err(|e| e.to_string())
}

fn jittered(interval: Duration, jitter: f64) -> Duration {
    let j = jitter.clamp(0.0, 0.5);
    if j == 0.0 {
        return interval;
    }
    let f = rand::thread_rng().gen_range(1.0 - j..=1.0 + j);
    interval.mul_f64(f)
}

fn until(at: OffsetDateTime, now: OffsetDateTime) -> Duration {
    let d = at - now;
    if d.is_negative() {
        Duration::ZERO
    } else {
        Duration::try_from(d).unwrap_or(Duration::ZERO)
    }
}

/// Runs one device until `cancel` (or until its lease is found lost).
pub(crate) async fn run(ctx: Arc<Ctx>, spec: DeviceSpec, cancel: CancellationToken) {
    let interval = ctx
        .options
        .interval_override
        .unwrap_or(Duration::from_secs(u64::from(
            spec.row.poll_interval_secs.max(1),
        )));
    let now = ctx.clock.now();
    let first = match &spec.runtime {
        Some(r) if r.next_due_at > now => until(r.next_due_at, now).min(interval),
        _ => {
            let spread = interval.as_secs_f64() * rand::thread_rng().gen_range(0.0..1.0);
            Duration::from_secs_f64(spread)
        }
    };
    let options = &ctx.options;
    let breaker = if spec.state.polling_suspended {
        Breaker::suspended(&options.breaker)
    } else {
        Breaker::new()
    };
    let config = client_config(&spec, options);
    let jitter_export = |every: Duration| now + jittered(every, 0.5).mul_f64(0.5);
    let mut task = Task {
        tenant: spec.row.tenant,
        config,
        ssh_key: spec.ssh_key,
        fence: spec.fence,
        state: spec.state,
        session: None,
        breaker,
        history_supported: true,
        routerboard_firmware: None,
        last_uptime: None,
        checked_indicator: spec.runtime.and_then(|r| r.checked_indicator),
        history_mark: None,
        next_export_check: Some(jitter_export(options.export_check_interval)),
        next_snapshot: Some(jitter_export(options.snapshot_interval)),
        export_blocked_until: None,
        export_error_logged: false,
        row: spec.row,
        ctx: ctx.clone(),
    };
    let mut next = Instant::now() + first;
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep_until(next) => {}
        }
        let permit = tokio::select! {
            () = cancel.cancelled() => break,
            p = ctx.polls.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        // Boxed: the poll's state machine (several KiB) lives only while a poll runs, not
        // for the whole life of the device's task.
        let result = tokio::select! {
            () = cancel.cancelled() => break,
            r = Box::pin(task.cycle(permit)) => r,
        };
        let delay = match result {
            Ok(delay) => delay,
            Err(PollerError::LeaseLost { shard, attempt }) => {
                tracing::info!(device = %task.row.device, shard, attempt, "lease lost; device task stops");
                break;
            }
            Err(e) => {
                tracing::warn!(device = %task.row.device, error = %error_chain(&e), "poll bookkeeping failed");
                jittered(interval, options.jitter)
            }
        };
        next = Instant::now() + delay;
        let now = ctx.clock.now();
        let runtime = Runtime {
            tenant: task.tenant,
            device: task.row.device,
            last_poll_at: now,
            next_due_at: now + delay,
            checked_indicator: task.checked_indicator.clone(),
        };
        if ctx.metrics.send(Record::Runtime(runtime)).await.is_err() {
            break;
        }
    }
    if let Some(c) = task.session.take() {
        // Do not wait on a device that stopped answering.
        let _ = tokio::time::timeout(Duration::from_secs(1), c.close()).await;
    }
}

impl Task {
    fn interval(&self) -> Duration {
        self.ctx
            .options
            .interval_override
            .unwrap_or(Duration::from_secs(u64::from(
                self.row.poll_interval_secs.max(1),
            )))
    }

    /// One poll with its bookkeeping; returns the delay until the next one. The poll permit
    /// is given back as soon as the status poll is done: an export waits for its own permit
    /// without holding up other devices' polls.
    async fn cycle(&mut self, permit: OwnedSemaphorePermit) -> Result<Duration, PollerError> {
        let started = std::time::Instant::now();
        let timeout = self.ctx.options.poll_timeout;
        let polled = match tokio::time::timeout(timeout, self.poll()).await {
            Ok(r) => r,
            Err(_) => {
                self.session = None;
                Err(format!("poll timed out after {}s", timeout.as_secs_f64()))
            }
        };
        drop(permit);
        self.ctx.stats.poll(polled.is_ok(), started.elapsed());
        let correlation = Uuid::new_v4();
        let options = self.ctx.options.clone();
        match polled {
            Ok(p) => {
                self.breaker.record_success(&options.breaker);
                self.send_sample(&p).await;
                let snapshot = self.snapshot_step(&p, correlation).await;
                let seen = Observation::Reachable(p.facts.clone());
                self.append(&seen, snapshot.as_ref(), correlation).await?;
                Ok(jittered(self.interval(), options.jitter))
            }
            Err(reason) => {
                let now = self.ctx.clock.now();
                let transition = self.breaker.record_failure(now, &options.breaker);
                tracing::debug!(device = %self.row.device, %reason, ?transition, "poll failed");
                let seen = Observation::Unreachable(reason);
                self.append(&seen, None, correlation).await?;
                Ok(match transition {
                    Transition::Opened { retry_at, .. } | Transition::StillOpen { retry_at } => {
                        until(retry_at, now)
                    }
                    Transition::None | Transition::Closed => {
                        jittered(self.interval(), options.jitter)
                    }
                })
            }
        }
    }

    async fn session(&mut self) -> Result<(Client, bool), String> {
        if let Some(c) = &self.session
            && !c.is_closed()
        {
            return Ok((c.clone(), false));
        }
        self.session = None;
        let config = self.config.clone()?;
        let client = Client::connect(&config)
            .await
            .map_err(|e| error_chain(&e))?;
        self.ctx.stats.login();
        self.history_supported = true;
        self.session = Some(client.clone());
        Ok((client, true))
    }

    /// The status poll; retries once on a fresh session if a kept one turns out dead.
    async fn poll(&mut self) -> Result<Polled, String> {
        let (client, new_session) = self.session().await?;
        match self.status(&client, new_session).await {
            Ok(p) => Ok(p),
            Err(e) if !new_session && e.is_connection_lost() => {
                self.session = None;
                let (client, _) = self.session().await?;
                self.status(&client, true).await.map_err(|e| {
                    self.session = None;
                    error_chain(&e)
                })
            }
            Err(e) => {
                if e.is_connection_lost() || matches!(e, routeros::Error::Timeout { .. }) {
                    self.session = None;
                }
                Err(error_chain(&e))
            }
        }
    }

    async fn status(
        &mut self,
        client: &Client,
        new_session: bool,
    ) -> Result<Polled, routeros::Error> {
        let resource = Command::new("/system/resource/print").proplist(&[
            "uptime",
            "version",
            "cpu-load",
            "free-memory",
            "total-memory",
            "free-hdd-space",
            "total-hdd-space",
            "board-name",
            "architecture-name",
        ]);
        let identity = Command::new("/system/identity/print");
        let interfaces = Command::new("/interface/print").proplist(&[
            ".id", "name", "type", "running", "disabled", "rx-byte", "tx-byte", "rx-error",
            "tx-error",
        ]);
        let history = self.history_supported.then(|| {
            Command::new("/system/history/print").proplist(&[".id", "action", "by", "time"])
        });
        let history_fut = async {
            match history {
                Some(cmd) => Some(client.run(cmd).await),
                None => None,
            }
        };
        let (r, i, f, h) = tokio::join!(
            client.run(resource),
            client.run(identity),
            client.run(interfaces),
            history_fut
        );
        let r = r?;
        let row = r
            .rows
            .first()
            .ok_or_else(|| routeros::Error::UnexpectedReply {
                command: "/system/resource/print".into(),
                detail: "no row returned".into(),
            })?;
        let version_text = row.get_str("version").unwrap_or_default().to_owned();
        let resources = Resources::from_row(row).map_err(|source| routeros::Error::Field {
            command: "/system/resource/print".into(),
            source,
        })?;
        let identity = i?
            .rows
            .first()
            .and_then(|r| r.get_str("name").map(str::to_owned))
            .unwrap_or_default();
        let interfaces = f?
            .rows
            .iter()
            .map(Interface::from_row)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| routeros::Error::Field {
                command: "/interface/print".into(),
                source,
            })?;
        let mut history_head = None;
        let indicator = match h {
            None => None,
            Some(Ok(resp)) => {
                history_head = account::head(
                    &resp
                        .rows
                        .iter()
                        .map(account::history_row)
                        .collect::<Vec<_>>(),
                );
                let mut hash = Sha256::new();
                hash.update((resp.rows.len() as u64).to_be_bytes());
                for row in &resp.rows {
                    for (k, v) in row.iter() {
                        hash.update(k.as_bytes());
                        hash.update([0]);
                        hash.update(v);
                        hash.update([0]);
                    }
                    hash.update([1]);
                }
                Some(hex::encode(&hash.finalize()[..16]))
            }
            Some(Err(routeros::Error::Trap { .. })) => {
                // No such menu on this device: rely on the export schedule.
                self.history_supported = false;
                None
            }
            Some(Err(e)) => return Err(e),
        };
        let rebooted = self
            .last_uptime
            .is_some_and(|before| resources.uptime < before);
        self.last_uptime = Some(resources.uptime);
        if new_session || rebooted || self.routerboard_firmware.is_none() {
            // RouterBOARD firmware only changes with a reboot, which ends the session.
            let rb = client.routerboard().await?;
            self.routerboard_firmware = Some(
                rb.filter(|r| r.routerboard)
                    .and_then(|r| r.current_firmware)
                    .unwrap_or_default(),
            );
        }
        if rebooted {
            // A reboot clears the history; compare the configuration itself.
            self.next_export_check = Some(self.ctx.clock.now());
        }
        let facts = DeviceFacts {
            identity,
            version: version_text,
            board_name: resources.board_name.clone().unwrap_or_default(),
            architecture: resources.architecture_name.clone().unwrap_or_default(),
            routerboard_firmware: self.routerboard_firmware.clone().filter(|f| !f.is_empty()),
        };
        Ok(Polled {
            facts,
            resources,
            interfaces,
            indicator,
            history_head,
            at: self.ctx.clock.now(),
        })
    }

    async fn send_sample(&self, p: &Polled) {
        let r = &p.resources;
        let sample = Sample {
            tenant: self.tenant,
            device: self.row.device,
            at: p.at,
            cpu_load: r.cpu_load,
            memory_used: r.total_memory.saturating_sub(r.free_memory),
            memory_total: r.total_memory,
            hdd_free: r.free_hdd_space,
            hdd_total: r.total_hdd_space,
            uptime_secs: r.uptime.as_secs(),
            interfaces: p
                .interfaces
                .iter()
                .map(|i| InterfaceCounters {
                    name: i.name.clone(),
                    rx_bytes: i.rx_byte,
                    tx_bytes: i.tx_byte,
                    rx_errors: i.rx_error,
                    tx_errors: i.tx_error,
                })
                .collect(),
        };
        let _ = self
            .ctx
            .metrics
            .send(Record::Sample(Box::new(sample)))
            .await;
    }

    async fn locked_by_workflow(&self) -> bool {
        if !self.ctx.locks_table {
            return false;
        }
        let locked: Result<bool, sqlx::Error> = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM workflow_device_locks \
                            WHERE tenant_id = $1 AND device_id = $2)",
        )
        .bind(self.tenant.as_uuid())
        .bind(self.row.device.as_uuid())
        .fetch_one(&self.ctx.system)
        .await;
        // If the lock cannot be read, behave as if a workflow owned the device: skipping a
        // drift check is harmless, a false drift is not.
        locked.unwrap_or(true)
    }

    /// Decides whether this poll exports, and records what it found. `None`: no snapshot
    /// to report (not due, locked, or the export failed).
    async fn snapshot_step(&mut self, p: &Polled, correlation: Uuid) -> Option<RecordedSnapshot> {
        if !self.state.is_managed() {
            return None;
        }
        let now = self.ctx.clock.now();
        let initial = self.state.last_snapshot.is_none();
        let indicator_moved = p.indicator.is_some() && p.indicator != self.checked_indicator;
        let check_due = self.next_export_check.is_some_and(|t| now >= t);
        let snapshot_due = self.next_snapshot.is_some_and(|t| now >= t);
        if !(initial || indicator_moved || check_due || snapshot_due) {
            return None;
        }
        if self.export_blocked_until.is_some_and(|t| now < t) {
            return None;
        }
        if self.locked_by_workflow().await {
            return None;
        }
        let client = self.session.clone()?;
        let permit = self.ctx.exports.clone().acquire_owned().await.ok()?;
        let timeout = self.ctx.options.export_timeout;
        let opts = ExportOptions {
            file: EXPORT_FILE.to_owned(),
            ..ExportOptions::default()
        };
        let v = &p.resources.version;
        let over_ssh =
            file_access(v.major, v.minor, self.ssh_access().is_some()).export == Via::Ssh;
        let exported = if over_ssh {
            tokio::time::timeout(timeout, self.export_over_ssh(&client, &opts, correlation)).await
        } else {
            let hint = if v.at_least(7, 13) || self.ssh_access().is_some() {
                ""
            } else {
                "; give the device SSH access to archive configurations of any size before \
                 RouterOS 7.13"
            };
            tokio::time::timeout(timeout, async {
                client
                    .export(&opts)
                    .await
                    .map(|b| b.to_vec())
                    .map_err(|e| format!("{}{hint}", error_chain(&e)))
            })
            .await
        };
        let text = match exported {
            Ok(Ok(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
            Ok(Err(e)) => return self.export_failed(now, &e),
            Err(_) => {
                self.session = None;
                return self.export_failed(now, &format!("export timed out after {timeout:?}"));
            }
        };
        let prepared = match tokio::task::spawn_blocking(move || Archive::prepare(&text)).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => return self.export_failed(now, &error_chain(&e)),
            Err(e) => return self.export_failed(now, &e.to_string()),
        };
        let last = self.state.last_snapshot.as_ref().map(|(_, s)| s.clone());
        let reason = match last {
            None => Some(SnapshotReason::Initial),
            Some(sha) if sha != prepared.sha256 => Some(SnapshotReason::Drift),
            Some(_) if snapshot_due => Some(SnapshotReason::Scheduled),
            Some(_) => None,
        };
        let result = match reason {
            Some(reason) => self.record(&client, p, prepared, reason, correlation).await,
            None => None,
        };
        if reason != Some(SnapshotReason::Drift) {
            // The configuration matches (or now is) the snapshot as of that history.
            self.history_mark = p.history_head;
        }
        drop(permit);
        self.ctx.stats.export(true);
        self.export_error_logged = false;
        self.checked_indicator = p.indicator.clone();
        self.next_export_check = Some(now + jittered(self.ctx.options.export_check_interval, 0.1));
        if snapshot_due || initial {
            self.next_snapshot = Some(now + jittered(self.ctx.options.snapshot_interval, 0.1));
        }
        result
    }

    /// The export written to a file over the API, read back over SFTP and removed over the
    /// API whatever the read did (the read's error is reported first).
    async fn export_over_ssh(
        &mut self,
        client: &Client,
        opts: &ExportOptions,
        correlation: Uuid,
    ) -> Result<Vec<u8>, String> {
        // Built when needed (most devices never export over SSH, every device has a task),
        // from the state: a key recorded on first use is pinned from then on.
        let config = {
            let ssh = self.ssh_access().ok_or("the device has no SSH access")?;
            let api = self.config.as_ref().map_err(Clone::clone)?;
            let key = self.ssh_key.as_ref().map_err(Clone::clone)?;
            netledger_device_client::ssh_config_for(
                api,
                ssh,
                key.as_ref(),
                self.ctx.options.export_timeout,
            )
            .map_err(|e| e.to_string())?
        };
        let (file, _) = client
            .export_to_file(opts)
            .await
            .map_err(|e| error_chain(&e))?;
        let read = self.read_over_sftp(&config, &file.name, correlation).await;
        let removed = client.remove_file(file.id).await;
        let bytes = read?;
        removed.map_err(|e| error_chain(&e))?;
        Ok(bytes)
    }

    /// One SSH session: records a first-use host key before anything else, reads `path`.
    async fn read_over_sftp(
        &mut self,
        config: &routeros_ssh::SshConfig,
        path: &str,
        correlation: Uuid,
    ) -> Result<Vec<u8>, String> {
        let session = routeros_ssh::SshSession::connect(config)
            .await
            .map_err(|e| error_chain(&e))?;
        let result = async {
            if session.host_key().trust == routeros_ssh::Trust::FirstUse {
                self.record_ssh_key(session.host_key(), correlation)
                    .await
                    .map_err(|e| format!("record the device's SSH host key: {e}"))?;
            }
            let sftp = session.sftp().await.map_err(|e| error_chain(&e))?;
            let bytes = sftp.read(path).await.map_err(|e| error_chain(&e));
            sftp.close().await;
            bytes
        }
        .await;
        session.close().await;
        result
    }

    /// Records the SSH host key a first session saw (the registration chose trust on first
    /// use), decided by the device aggregate and appended fenced; afterwards only that key
    /// is accepted. A refusal (another key was recorded meanwhile) is an error: the session
    /// is not used.
    async fn record_ssh_key(
        &mut self,
        key: &routeros_ssh::HostKey,
        correlation: Uuid,
    ) -> Result<(), String> {
        let command = DeviceCommand::RecordSshHostKey {
            fingerprint_sha256: key.fingerprint().to_hex(),
            algorithm: key.algorithm.clone(),
            recorded_by: "poller".into(),
        };
        let mut recorded = false;
        for _ in 0..APPEND_ATTEMPTS {
            let decided = self.state.decide(&command).map_err(|e| e.to_string())?;
            if decided.is_empty() {
                recorded = true;
                break;
            }
            if self
                .try_append(&decided, correlation)
                .await
                .map_err(|e| error_chain(&e))?
            {
                recorded = true;
                break;
            }
        }
        if !recorded {
            return Err(format!(
                "the device's stream kept changing ({APPEND_ATTEMPTS} conflicting appends)"
            ));
        }
        // The state now holds the key as pinned: the next session requires it.
        Ok(())
    }

    /// The device's SSH access as its stream says (the work row's, with a first-use key once
    /// recorded).
    fn ssh_access(&self) -> Option<&netledger_domain::device::SshAccess> {
        self.state
            .registration
            .as_ref()
            .and_then(|r| r.endpoint.ssh.as_ref())
    }

    fn export_failed(&mut self, now: OffsetDateTime, reason: &str) -> Option<RecordedSnapshot> {
        self.ctx.stats.export(false);
        self.export_blocked_until = Some(now + EXPORT_RETRY);
        if !self.export_error_logged {
            tracing::warn!(device = %self.row.device, %reason, "export failed; no snapshot or drift check until it works (retrying every 10 minutes)");
            self.export_error_logged = true;
        }
        None
    }

    /// Records a snapshot in the archive. For drift, first makes sure it still is drift,
    /// then reads who changed the device ([`account::read`], bounded by `history_timeout`;
    /// its failure only leaves the event without it) and moves the history mark once the
    /// drift is recorded.
    async fn record(
        &mut self,
        client: &Client,
        p: &Polled,
        prepared: Prepared,
        reason: SnapshotReason,
        correlation: Uuid,
    ) -> Option<RecordedSnapshot> {
        let version = p.facts.version.as_str();
        let mut who = DeviceAccount::default();
        let mut drift_head = None;
        if reason == SnapshotReason::Drift {
            // Make sure the difference is not just a stale view (a workflow may have recorded
            // this content after our last read).
            if let Err(e) = self.refold().await {
                tracing::warn!(device = %self.row.device, error = %error_chain(&e), "re-reading the device stream failed");
                return None;
            }
            if self
                .state
                .last_snapshot
                .as_ref()
                .is_some_and(|(_, sha)| *sha == prepared.sha256)
            {
                self.history_mark = p.history_head;
                return None;
            }
            let options = &self.ctx.options;
            let read = account::read(
                client,
                options.history_timeout,
                self.history_mark,
                options.history_rows,
            )
            .await;
            if let Some(e) = &read.account.history_error {
                tracing::warn!(device = %self.row.device, error = %e, "reading the device's history for the drift event failed; recording the drift without it");
            }
            drift_head = read.head.or(p.history_head);
            who = read.account;
        }
        let meta = SnapshotMeta {
            actor: Actor::system("poller"),
            reason,
            causation_id: correlation,
            correlation_id: correlation,
            at: self.ctx.clock.now(),
            routeros_version: version.to_owned(),
            workflow_id: None,
        };
        let archive = self.ctx.archive.clone();
        let (tenant, device) = (self.tenant, self.row.device);
        let sha = prepared.sha256.clone();
        let recorded = tokio::task::spawn_blocking(move || {
            archive.record_prepared(tenant, device, &prepared, &meta)
        })
        .await;
        match recorded {
            Ok(Ok(r)) => {
                if reason == SnapshotReason::Drift {
                    self.history_mark = drift_head;
                }
                Some(RecordedSnapshot {
                    reason,
                    commit: r.commit,
                    sha256: sha,
                    changed: r.changed,
                    routeros_version: version.to_owned(),
                    device: who,
                })
            }
            Ok(Err(e)) => {
                tracing::warn!(device = %device, error = %error_chain(&e), "recording the snapshot in the archive failed");
                None
            }
            Err(e) => {
                tracing::warn!(device = %device, error = %e, "archive task failed");
                None
            }
        }
    }

    async fn refold(&mut self) -> Result<(), PollerError> {
        let mut conn = self
            .ctx
            .system
            .acquire()
            .await
            .map_err(PollerError::db("acquire connection"))?;
        self.state = netledger_store::devices::fold_in(&mut conn, self.tenant, self.row.device)
            .await
            .map_err(|e| PollerError::Corrupt(e.to_string()))?;
        Ok(())
    }

    /// Appends what this poll decided, fenced by the shard lease, re-reading and re-deciding
    /// on a conflicting append.
    async fn append(
        &mut self,
        seen: &Observation,
        snapshot: Option<&RecordedSnapshot>,
        correlation: Uuid,
    ) -> Result<(), PollerError> {
        let options = self.ctx.options.breaker;
        for _ in 0..APPEND_ATTEMPTS {
            let view = BreakerView {
                open: self.breaker.is_open(&options),
                failures: self.breaker.failures(),
                retry_at: self.breaker.retry_at(),
            };
            let decided = decide(&self.state, seen, &view, snapshot);
            if decided.is_empty() {
                return Ok(());
            }
            if self.try_append(&decided, correlation).await? {
                return Ok(());
            }
        }
        Ok(())
    }

    /// One fenced append of `decided` at the state's version: `true` when written (and
    /// folded into the state); `false` on a conflicting append, after re-reading the state
    /// so the caller can decide again.
    async fn try_append(
        &mut self,
        decided: &[DeviceEvent],
        correlation: Uuid,
    ) -> Result<bool, PollerError> {
        let expected = match self.state.version {
            0 => ExpectedVersion::NoStream,
            v => ExpectedVersion::Exact(v),
        };
        match self.append_fenced(expected, decided, correlation).await {
            Ok(()) => {
                for d in decided {
                    self.state.evolve(d);
                }
                self.ctx.stats.add_events(decided.len() as u64);
                Ok(true)
            }
            Err(PollerError::Store(StoreError::Conflict { .. })) => {
                self.ctx.stats.conflict();
                self.refold().await?;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    async fn append_fenced(
        &self,
        expected: ExpectedVersion,
        decided: &[DeviceEvent],
        correlation: Uuid,
    ) -> Result<(), PollerError> {
        let meta = EventMetadata::for_command(Actor::system("poller"), correlation);
        let mut events = Vec::with_capacity(decided.len());
        for d in decided {
            events.push(
                d.to_new_event(EventId::new_v7(), meta.clone())
                    .map_err(|e| PollerError::Corrupt(e.to_string()))?,
            );
        }
        let mut tx = begin_tenant(&self.ctx.app, self.tenant).await?;
        if !lease_current(
            &mut tx,
            self.fence.shard,
            self.ctx.poller_id,
            self.fence.attempt,
        )
        .await?
        {
            return Err(PollerError::LeaseLost {
                shard: self.fence.shard,
                attempt: self.fence.attempt,
            });
        }
        let request = AppendRequest {
            tenant: self.tenant,
            stream: self.row.device.stream(),
            expected,
            events,
        };
        append_in_transaction(&mut tx, &request).await?;
        tx.commit()
            .await
            .map_err(PollerError::db("commit poller append"))?;
        Ok(())
    }
}
