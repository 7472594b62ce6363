//! The two-phase configuration push for one device, as separate idempotent steps that a
//! durable workflow journals one by one (see `docs/push.md` for each step's idempotence
//! argument and the failure modes it designs out):
//!
//! 1. [`require_scheduler`]: refuse a device whose device-mode disables the scheduler.
//! 2. [`snapshot`]: export text + binary backup on the device (`netledger-snap-<id>.backup`),
//!    its bytes read back; the caller stores them (config archive).
//! 3. [`validate`]: parse, policy, offline dry run on the snapshot, no-op refusal, the
//!    device's own `/import dry-run` where it has one.
//! 4. [`arm`] (+ [`extend`]): a `/system/scheduler` entry `netledger-rollback-<id>` that
//!    loads the snapshot backup at an explicit device-clock date and time.
//! 5. [`apply`]: upload `netledger-change-<id>.rsc` and `/import` it, at most once.
//! 6. [`verify`]: from a fresh connection, the running configuration meets the change's
//!    expectations and the health checks pass.
//! 7. [`commit`] (disarm, confirmed) or [`rollback`] (restore now, or wait for the device's
//!    own revert and confirm it), then [`cleanup`].
//!
//! Steps that run on one connection take a [`Client`]; steps that must reconnect (verify,
//! rollback) take the [`Config`].

use std::time::Duration;

use netledger_engine::crash_point;
use routeros::menus::{ExportOptions, NewSchedule, Sensitive};
use routeros::{Client, Command, Config, Password, Query};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::change::{self, Change, ChangeId, Plan, Policy};
use crate::device::{
    self, DateStyle, DeviceProbe, DeviceTime, connect_within, device_boot_time, device_clock,
    device_mode, error_chain, file_row, remove_file_named, rollback_timers, scheduler_entry,
    storage_prefix, wait_for_file,
};
use crate::error::{NetopsError, Result};
use crate::files::{Files, SshLink};

/// How long to wait for a file RouterOS writes (backup, marker) to show up.
const FILE_WAIT: Duration = Duration::from_secs(5);

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// SHA-256 of the normalised export text (what "same configuration" means here).
pub fn normalised_sha256(export: &str) -> Result<String> {
    let n = rosconfig::normalise(export).map_err(|e| NetopsError::Export {
        message: e.to_string(),
    })?;
    Ok(sha256_hex(n.as_bytes()))
}

/// Whether the push may go on given device-mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedulerGate {
    /// The device's scheduler can run the rollback timer.
    pub timer_effective: bool,
    /// The caller overrode a disabled scheduler (audit this).
    pub overridden: bool,
}

/// Refuses a device whose device-mode disables the scheduler (its rollback timer could never
/// fire) unless `allow_without_timer` is set; the caller audits an override.
pub fn require_scheduler(probe: &DeviceProbe, allow_without_timer: bool) -> Result<SchedulerGate> {
    let m = &probe.device_mode;
    if m.scheduler {
        return Ok(SchedulerGate {
            timer_effective: true,
            overridden: false,
        });
    }
    if allow_without_timer {
        return Ok(SchedulerGate {
            timer_effective: false,
            overridden: true,
        });
    }
    Err(NetopsError::SchedulerDisabled {
        mode: m.mode.clone().unwrap_or_else(|| "unknown".into()),
    })
}

/// The journaled record of a snapshot (small: hashes and names, no configuration text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The change this snapshot protects.
    pub change_id: ChangeId,
    /// Backup file on the device (`[flash/]netledger-snap-<id>.backup`).
    pub backup_file: String,
    /// SHA-256 of the export text as read.
    pub export_sha256: String,
    /// SHA-256 of the normalised export text: what a restore must reproduce.
    pub normalised_sha256: String,
    /// SHA-256 of the backup bytes, when they could be read (RouterOS 7.13+).
    pub backup_sha256: Option<String>,
    /// Size of the backup file in bytes as the device lists it.
    pub backup_size: Option<u64>,
    /// RouterOS version at snapshot time.
    pub device_version: String,
    /// Device clock at snapshot time.
    pub taken_at: DeviceTime,
    /// The backup was saved with a password (`/system/backup/save password=`): loading it
    /// needs the same password (the caller keeps it sealed, `docs/push.md`).
    #[serde(default)]
    pub encrypted: bool,
}

/// What [`snapshot`] returns: the journaled [`Snapshot`] plus the texts the caller stores
/// (config archive: `Archive::record` for the export, `Archive::store_blob` for the backup)
/// and then drops from the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotTaken {
    /// The record.
    pub snapshot: Snapshot,
    /// Export text (sensitive values hidden).
    pub export: String,
    /// Backup bytes; `None` before RouterOS 7.13, which cannot read binary files over the
    /// API (no `/file/read`; `contents` is text and capped).
    #[serde(with = "b64")]
    pub backup: Option<Vec<u8>>,
}

mod b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(&STANDARD.encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| STANDARD.decode(t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Exports the configuration (sensitive values hidden) into a temporary file named after
/// the change and reads it back.
/// Read over the API, or over SFTP where [`Files::export`] says so (before 7.13 with SSH
/// access: the API's `contents` is capped).
async fn export_text(files: &Files<'_>, id: &ChangeId, prefix: &str) -> Result<String> {
    let opts = ExportOptions {
        file: format!("{prefix}{}", id.export_stem()),
        sensitive: Sensitive::Hide,
        terse: false,
        verbose: false,
    };
    files.export(&opts).await
}

/// Step 2: snapshot. Refused once this change's rollback timer is armed or the device has
/// started executing the change (a snapshot then would capture them); otherwise safe to
/// repeat (it overwrites its own backup file).
#[tracing::instrument(skip_all, fields(change = %id))]
pub async fn snapshot(client: &Client, id: &ChangeId) -> Result<SnapshotTaken> {
    snapshot_with(client, id, None).await
}

/// [`snapshot`] with the backup encrypted under `backup_password` (RouterOS encrypts a
/// backup saved with a password, aes-sha256 by default; without one it is stored in clear
/// since 6.43: ROUTEROS-NOTES §5.10). The workflows always pass a per-push password.
#[tracing::instrument(skip_all, fields(change = %id))]
pub async fn snapshot_with(
    client: &Client,
    id: &ChangeId,
    backup_password: Option<&Password>,
) -> Result<SnapshotTaken> {
    snapshot_via(&Files::api(client), id, backup_password).await
}

/// [`snapshot_with`] over a file channel: on a device with SSH access the backup is read
/// back over SFTP before 7.13 (and archived like on 7.13+), and the export too.
#[tracing::instrument(skip_all, fields(change = %id))]
pub async fn snapshot_via(
    files: &Files<'_>,
    id: &ChangeId,
    backup_password: Option<&Password>,
) -> Result<SnapshotTaken> {
    let client = files.client();
    if scheduler_entry(client, &id.scheduler_name())
        .await?
        .is_some()
    {
        return Err(NetopsError::WrongState {
            step: "snapshot",
            change: id.to_string(),
            reason: format!(
                "rollback timer {} is armed: a snapshot now would capture it",
                id.scheduler_name()
            ),
        });
    }
    refuse_foreign_timers(client, id, "snapshot").await?;
    let prefix = storage_prefix(client).await?;
    if applied_marker(client, &prefix, id).await?.is_some() {
        return Err(NetopsError::WrongState {
            step: "snapshot",
            change: id.to_string(),
            reason: "the device already started executing this change".into(),
        });
    }
    let version = client
        .resources()
        .await
        .map_err(|e| NetopsError::device("/system/resource/print", e))?
        .version;
    files.set_version(&version);
    let export = export_text(files, id, &prefix).await?;
    let normalised = normalised_sha256(&export)?;
    let stem = format!("{prefix}{}", id.backup_stem());
    let backup_file = format!("{stem}.backup");
    client
        .backup_save(&stem, backup_password)
        .await
        .map_err(|e| NetopsError::device("/system/backup/save", e))?;
    crash_point("backup_saved");
    let Some(file) = wait_for_file(client, &backup_file, FILE_WAIT).await? else {
        return Err(NetopsError::Unexpected {
            detail: format!("backup {backup_file} did not appear after /system/backup/save"),
        });
    };
    // 7.13+: `/file/read`; before, SFTP where SSH access is registered, else no copy
    let backup = if version.at_least(7, 13) || files.has_ssh() {
        Some(files.get(&backup_file).await?)
    } else {
        None
    };
    let (taken_at, _) = device_clock(client).await?;
    Ok(SnapshotTaken {
        snapshot: Snapshot {
            change_id: id.clone(),
            backup_file,
            export_sha256: sha256_hex(export.as_bytes()),
            normalised_sha256: normalised,
            backup_sha256: backup.as_deref().map(sha256_hex),
            backup_size: file.size,
            device_version: device::version_text(&version),
            taken_at,
            encrypted: backup_password.is_some(),
        },
        export,
        backup,
    })
}

/// What the device's own pre-flight said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum DeviceDryRun {
    /// `/import dry-run` accepted the change.
    Passed,
    /// The device has no `/import dry-run` (before 7.16); only the offline dry run ran.
    NotSupported {
        /// The device's version.
        version: String,
    },
}

impl std::fmt::Display for DeviceDryRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceDryRun::Passed => f.write_str("the device's /import dry-run accepted the change"),
            DeviceDryRun::NotSupported { version } => write!(
                f,
                "validated offline only: RouterOS {version} has no /import dry-run (7.16+), \
                 so the device did not check the change before it is applied"
            ),
        }
    }
}

/// Step 3's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validated {
    /// The change.
    pub change_id: ChangeId,
    /// Offline plan: command count, expectations, unverifiable properties.
    pub plan: Plan,
    /// The device's pre-flight.
    pub device_dry_run: DeviceDryRun,
}

/// Step 3: validate. Offline: [`change::plan`] against the snapshot's export. On the device
/// (7.16+): `/import dry-run` of the bare change from a separate file, removed afterwards.
/// Safe to repeat.
#[tracing::instrument(skip_all, fields(change = %change.id))]
pub async fn validate(
    client: &Client,
    probe: &DeviceProbe,
    change: &Change,
    snapshot_export: &str,
    policy: &Policy,
) -> Result<Validated> {
    validate_via(&Files::api(client), probe, change, snapshot_export, policy).await
}

/// [`validate`] over a file channel: a device without `/file add` (RouterOS 6, 7.0-7.8)
/// is accepted when it has SSH access (the change file goes over SFTP), and refused
/// ([`NetopsError::Unsupported`], naming what to register) otherwise.
#[tracing::instrument(skip_all, fields(change = %change.id))]
pub async fn validate_via(
    files: &Files<'_>,
    probe: &DeviceProbe,
    change: &Change,
    snapshot_export: &str,
    policy: &Policy,
) -> Result<Validated> {
    let client = files.client();
    if !probe.can_upload_files && !files.has_ssh() {
        return Err(NetopsError::Unsupported {
            what: "uploading a change file over the API (/file add)".into(),
            needs: "7.9".into(),
            version: probe.version.clone(),
        });
    }
    let plan = change::plan(change, snapshot_export, policy)?;
    let device_dry_run = if probe.has_import_dry_run {
        let prefix = storage_prefix(client).await?;
        let file = format!("{prefix}{}", change.id.dry_run_file());
        files.put(&file, change.script.as_bytes()).await?;
        let r = client
            .run(
                Command::new("/import")
                    .attr("file-name", &file)
                    .attr("verbose", "yes")
                    .attr("dry-run", ""),
            )
            .await;
        let removed = remove_file_named(client, &file).await;
        match r {
            Ok(_) => {}
            Err(routeros::Error::Trap { trap, .. }) => {
                return Err(NetopsError::DryRunRejected {
                    change: change.id.to_string(),
                    message: trap.message,
                });
            }
            Err(e) => return Err(NetopsError::device("/import dry-run", e)),
        }
        removed?;
        DeviceDryRun::Passed
    } else {
        DeviceDryRun::NotSupported {
            version: probe.version.clone(),
        }
    };
    Ok(Validated {
        change_id: change.id.clone(),
        plan,
        device_dry_run,
    })
}

/// Options of [`arm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArmOptions {
    /// From now (device clock) until the timer fires: must cover apply, verify and commit.
    pub window: Duration,
    /// Arm even though device-mode disables the scheduler (the timer then cannot fire; the
    /// caller audited the override).
    pub allow_without_timer: bool,
}

/// Step 4's output: the armed device-side rollback timer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Armed {
    /// The change.
    pub change_id: ChangeId,
    /// `/system/scheduler` entry name.
    pub scheduler_name: String,
    /// Backup the timer loads.
    pub backup_file: String,
    /// Device clock when armed.
    pub armed_at: DeviceTime,
    /// Explicit device-clock time the timer fires at.
    pub fires_at_device_time: DeviceTime,
    /// How the device writes dates.
    pub date_style: DateStyle,
    /// False when device-mode disables the scheduler (armed under an override).
    pub timer_effective: bool,
}

fn schedule_time(s: &routeros::menus::Schedule) -> Option<DeviceTime> {
    let d = s.start_date.as_deref()?;
    let t = s.start_time.as_deref()?;
    DeviceTime::parse(d, t).map(|(t, _)| t)
}

/// Step 4: arm the rollback timer: `netledger-rollback-<id>`, `on-event` =
/// `/system backup load name=<snapshot backup>`, `start-date`/`start-time` = device clock +
/// `window` (explicit, not an interval), run once. If the entry already exists (a resumed
/// step) it is read back instead of added again.
#[tracing::instrument(skip_all, fields(change = %snapshot.change_id))]
pub async fn arm(client: &Client, snapshot: &Snapshot, opts: &ArmOptions) -> Result<Armed> {
    arm_with(client, snapshot, opts, None).await
}

/// [`arm`] for an encrypted snapshot: the timer's `on-event` passes `backup_password` to
/// `/system backup load` (the entry lives only until commit or rollback removes it).
#[tracing::instrument(skip_all, fields(change = %snapshot.change_id))]
pub async fn arm_with(
    client: &Client,
    snapshot: &Snapshot,
    opts: &ArmOptions,
    backup_password: Option<&Password>,
) -> Result<Armed> {
    arm_via(&Files::api(client), snapshot, opts, backup_password).await
}

/// [`arm_with`] over a file channel (the apply token goes over SFTP before 7.9).
#[tracing::instrument(skip_all, fields(change = %snapshot.change_id))]
pub async fn arm_via(
    files: &Files<'_>,
    snapshot: &Snapshot,
    opts: &ArmOptions,
    backup_password: Option<&Password>,
) -> Result<Armed> {
    let client = files.client();
    let id = &snapshot.change_id;
    let name = id.scheduler_name();
    let mode = device_mode(client).await?;
    if !mode.scheduler && !opts.allow_without_timer {
        return Err(NetopsError::SchedulerDisabled {
            mode: mode.mode.unwrap_or_else(|| "unknown".into()),
        });
    }
    let (now, style) = device_clock(client).await?;
    if let Some(existing) = scheduler_entry(client, &name).await? {
        let fires = schedule_time(&existing).ok_or_else(|| NetopsError::Unexpected {
            detail: format!("scheduler entry {name} has no readable start date/time"),
        })?;
        ensure_apply_token(files, id).await?;
        return Ok(Armed {
            change_id: id.clone(),
            scheduler_name: name,
            backup_file: snapshot.backup_file.clone(),
            armed_at: now,
            fires_at_device_time: fires,
            date_style: style,
            timer_effective: mode.scheduler,
        });
    }
    refuse_foreign_timers(client, id, "arm").await?;
    if file_row(client, &snapshot.backup_file).await?.is_none() {
        return Err(NetopsError::WrongState {
            step: "arm",
            change: id.to_string(),
            reason: format!(
                "snapshot backup {} is not on the device: take the snapshot again",
                snapshot.backup_file
            ),
        });
    }
    let fires = now.plus(opts.window);
    let entry = NewSchedule {
        name: name.clone(),
        on_event: match backup_password {
            Some(p) => format!(
                "/system backup load name={} password=\"{}\"",
                snapshot.backup_file,
                p.expose()
            ),
            None => format!("/system backup load name={}", snapshot.backup_file),
        },
        start_date: Some(fires.date_text(style)),
        start_time: Some(fires.time_text()),
        interval: None,
        policy: None,
        comment: Some(format!("netledger: restores the snapshot of change {id}")),
        disabled: false,
    };
    client
        .add_schedule(&entry)
        .await
        .map_err(|e| NetopsError::device("/system/scheduler/add", e))?;
    crash_point("armed");
    let back = scheduler_entry(client, &name).await?;
    match back {
        Some(s) if !s.disabled && schedule_time(&s) == Some(fires) => {
            ensure_apply_token(files, id).await?;
            Ok(Armed {
                change_id: id.clone(),
                scheduler_name: name,
                backup_file: snapshot.backup_file.clone(),
                armed_at: now,
                fires_at_device_time: fires,
                date_style: style,
                timer_effective: mode.scheduler,
            })
        }
        other => Err(NetopsError::Unexpected {
            detail: format!(
                "scheduler entry {name} read back as {other:?}, expected enabled at {fires}"
            ),
        }),
    }
}

/// Refuses ([`NetopsError::ForeignRollbackTimer`]) while any Netledger rollback timer
/// other than `id`'s own is on the device: it could still fire and revert this change, and a
/// snapshot taken now would capture it (a restore would re-arm it).
pub async fn refuse_foreign_timers(
    client: &Client,
    id: &ChangeId,
    step: &'static str,
) -> Result<()> {
    let own = id.scheduler_name();
    let timers: Vec<String> = rollback_timers(client)
        .await?
        .into_iter()
        .filter(|t| *t != own)
        .collect();
    if timers.is_empty() {
        return Ok(());
    }
    Err(NetopsError::ForeignRollbackTimer {
        step,
        change: id.to_string(),
        timers,
    })
}

/// The apply token of a change: `netledger-armed-<id>.txt`, written by [`arm`] once the
/// timer is confirmed and consumed by the first line of the change file, in the same line
/// that writes the applied-marker (see [`apply`]).
pub fn apply_token_file(id: &ChangeId) -> String {
    format!("netledger-armed-{}.txt", id.as_str())
}

/// Writes the apply token unless the change already started (marker) or the token is
/// there. Only [`arm`] writes it: a journaled step that runs before any apply, so a second
/// (stale) apply cannot bring a consumed token back.
async fn ensure_apply_token(files: &Files<'_>, id: &ChangeId) -> Result<()> {
    let client = files.client();
    let prefix = storage_prefix(client).await?;
    let token = format!("{prefix}{}", apply_token_file(id));
    if applied_marker(client, &prefix, id).await?.is_some()
        || file_row(client, &token).await?.is_some()
    {
        return Ok(());
    }
    files.put(&token, b"netledger apply token").await
}

/// The applied-marker of change `id` under `prefix` (full name), if the device has one:
/// [`ChangeId::applied_file`] (`.txt`, written by `/file add` from RouterOS 7.9) or
/// [`ChangeId::applied_export_file`] (`.rsc`, written by an export before 7.9). Either
/// means the device started executing the change. One `/file/print` (`?name=a ?name=b ?#|`).
async fn applied_marker(client: &Client, prefix: &str, id: &ChangeId) -> Result<Option<String>> {
    const PATH: &str = "/file/print";
    let txt = format!("{prefix}{}", id.applied_file());
    let rsc = format!("{prefix}{}", id.applied_export_file());
    let r = client
        .run(
            Command::new(PATH)
                .query(Query::eq("name", &txt))
                .query(Query::eq("name", &rsc))
                .query(Query::Ops("|".into())),
        )
        .await
        .map_err(|e| NetopsError::device(PATH, e))?;
    let names: Vec<&str> = r.rows.iter().filter_map(|f| f.get_str("name")).collect();
    Ok([txt.as_str(), rsc.as_str()]
        .into_iter()
        .find(|n| names.contains(n))
        .map(str::to_string))
}

/// How the guard line of the change file writes the applied-marker (see
/// [`guarded_device_script`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerWrite {
    /// `/file add name=<marker>.txt contents=netledger-change-<id>`: RouterOS 7.9 and later
    /// (ROUTEROS-NOTES §5.9).
    FileAdd,
    /// `/system identity export file=<stem>`, which writes `<stem>.rsc` (§5.11): before 7.9,
    /// where `/file add` does not exist. A menu export: small, and nothing sensitive in it.
    Export,
}

impl MarkerWrite {
    /// The applied-marker this form writes for change `id`, under `prefix`.
    pub fn marker_file(self, prefix: &str, id: &ChangeId) -> String {
        match self {
            MarkerWrite::FileAdd => format!("{prefix}{}", id.applied_file()),
            MarkerWrite::Export => format!("{prefix}{}", id.applied_export_file()),
        }
    }
}

/// The file [`apply`] uploads and imports: the change behind a guard line that consumes the
/// apply token and writes the applied-marker in one device-side line. `/file remove` of a
/// name that is not there fails (`no such item`, ROUTEROS-NOTES §3) and `/import` stops at
/// the first failing line (§5.11), so of two imports of the same change only the one that
/// removed the token goes on: the check and the import are one device-side operation.
/// `write` picks a marker command that exists on the device ([`MarkerWrite`]); the marker is
/// `write.marker_file(prefix, id)`.
/// Keeps [`change::DEVICE_SCRIPT_PREAMBLE_LINES`] (2) lines before the change.
pub fn guarded_device_script(
    change: &Change,
    token_file: &str,
    prefix: &str,
    write: MarkerWrite,
) -> String {
    let marker = change.id.marker();
    let mut s = match write {
        MarkerWrite::FileAdd => format!(
            "# {marker}\n/file remove {token_file}; /file add name={} contents={marker}\n",
            write.marker_file(prefix, &change.id)
        ),
        MarkerWrite::Export => format!(
            "# {marker}\n/file remove {token_file}; /system identity export file={prefix}{}\n",
            change.id.applied_export_stem()
        ),
    };
    s.push_str(&change.script);
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

/// The 1-based line a device error message names (`... (line N column M)`).
fn error_line(message: &str) -> Option<usize> {
    let pos = message.find("(line ")?;
    let digits: String = message[pos + "(line ".len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Moves the rollback timer to device clock + `window` if that is later than it is now
/// (never earlier). Fails with [`NetopsError::WrongState`] when the entry is gone (the
/// timer fired or was removed: roll back, which confirms the revert).
#[tracing::instrument(skip_all, fields(change = %armed.change_id))]
pub async fn extend(client: &Client, armed: &Armed, window: Duration) -> Result<Armed> {
    let name = &armed.scheduler_name;
    let Some(entry) = scheduler_entry(client, name).await? else {
        return Err(NetopsError::WrongState {
            step: "extend",
            change: armed.change_id.to_string(),
            reason: format!(
                "rollback timer {name} is gone: the device may have reverted; roll back to confirm"
            ),
        });
    };
    let current = schedule_time(&entry).ok_or_else(|| NetopsError::Unexpected {
        detail: format!("scheduler entry {name} has no readable start date/time"),
    })?;
    let (now, style) = device_clock(client).await?;
    let wanted = now.plus(window);
    if wanted <= current {
        return Ok(Armed {
            fires_at_device_time: current,
            ..armed.clone()
        });
    }
    const PATH: &str = "/system/scheduler/set";
    client
        .run(
            Command::new(PATH)
                .id(entry.id)
                .attr("start-date", wanted.date_text(style))
                .attr("start-time", wanted.time_text()),
        )
        .await
        .map_err(|e| NetopsError::device(PATH, e))?;
    crash_point("extended");
    match scheduler_entry(client, name).await? {
        Some(s) if schedule_time(&s) == Some(wanted) => Ok(Armed {
            fires_at_device_time: wanted,
            date_style: style,
            ..armed.clone()
        }),
        other => Err(NetopsError::Unexpected {
            detail: format!("scheduler entry {name} read back as {other:?}, expected {wanted}"),
        }),
    }
}

/// Step 5's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The device had already started this change (its applied-marker file exists); nothing
    /// was sent this time.
    pub already_applied: bool,
    /// The imported file.
    pub change_file: String,
    /// The applied-marker: the one the change's first line writes (`.txt` from RouterOS 7.9,
    /// `.rsc` before, see [`MarkerWrite`]), or the one found when `already_applied`.
    pub applied_file: String,
    /// The marker was seen after this import (always true when `already_applied`).
    pub marker_confirmed: bool,
}

/// Step 5: apply at most once. If the applied-marker exists, returns
/// `already_applied: true` without touching the device. Otherwise refuses unless the
/// rollback timer is armed and not yet due, uploads `netledger-change-<id>.rsc` (marker line
/// first, then the change) and imports it; a failing line fails the step with
/// [`NetopsError::ImportFailed`] (the caller rolls back).
#[tracing::instrument(skip_all, fields(change = %change.id))]
pub async fn apply(client: &Client, change: &Change, armed: &Armed) -> Result<Applied> {
    apply_via(&Files::api(client), change, armed).await
}

/// [`apply`] over a file channel: the change file goes over SFTP before 7.9; `/import`
/// runs over the API on every version.
#[tracing::instrument(skip_all, fields(change = %change.id))]
pub async fn apply_via(files: &Files<'_>, change: &Change, armed: &Armed) -> Result<Applied> {
    let client = files.client();
    let id = &change.id;
    let prefix = storage_prefix(client).await?;
    let change_file = format!("{prefix}{}", id.change_file());
    if let Some(applied_file) = applied_marker(client, &prefix, id).await? {
        return Ok(Applied {
            already_applied: true,
            change_file,
            applied_file,
            marker_confirmed: true,
        });
    }
    let refuse = |reason: String| NetopsError::WrongState {
        step: "apply",
        change: id.to_string(),
        reason,
    };
    let token_file = format!("{prefix}{}", apply_token_file(id));
    let already = |change_file: String, applied_file: String| Applied {
        already_applied: true,
        change_file,
        applied_file,
        marker_confirmed: true,
    };
    match scheduler_entry(client, &armed.scheduler_name).await? {
        None => {
            return Err(refuse(format!(
                "rollback timer {} is not on the device: not applying without it",
                armed.scheduler_name
            )));
        }
        Some(s) if s.disabled => {
            return Err(refuse(format!(
                "rollback timer {} is disabled: not applying without it",
                armed.scheduler_name
            )));
        }
        Some(s) => {
            let (now, _) = device_clock(client).await?;
            let fires = schedule_time(&s).unwrap_or(armed.fires_at_device_time);
            if fires <= now {
                return Err(refuse(format!(
                    "rollback timer {} is due ({fires}, device clock {now}): extend it first",
                    armed.scheduler_name
                )));
            }
        }
    }
    if file_row(client, &token_file).await?.is_none() {
        // consumed by another apply of this change (its marker is there by now), or arm
        // never wrote it
        if let Some(applied_file) = applied_marker(client, &prefix, id).await? {
            return Ok(already(change_file, applied_file));
        }
        return Err(refuse(format!(
            "apply token {token_file} is not on the device: arm again"
        )));
    }
    let write = if files.has_file_add().await? {
        MarkerWrite::FileAdd
    } else {
        MarkerWrite::Export
    };
    let applied_file = write.marker_file(&prefix, id);
    files
        .put(
            &change_file,
            guarded_device_script(change, &token_file, &prefix, write).as_bytes(),
        )
        .await?;
    crash_point("uploaded");
    match client
        .run(Command::new("/import").attr("file-name", &change_file))
        .await
    {
        Ok(_) => crash_point("imported"),
        Err(routeros::Error::Trap { trap, .. })
            if error_line(&trap.message)
                .is_some_and(|l| l <= change::DEVICE_SCRIPT_PREAMBLE_LINES)
                && applied_marker(client, &prefix, id).await?.is_some() =>
        {
            // the guard line refused: another apply of this change consumed the token
            // and started the change; nothing of the change ran here
            tracing::warn!(change = %id, "a concurrent apply of this change ran it; not importing again");
            return Ok(already(change_file, applied_file));
        }
        Err(routeros::Error::Trap { trap, .. }) => {
            return Err(NetopsError::ImportFailed {
                change: id.to_string(),
                message: change::to_change_lines(&trap.message),
            });
        }
        Err(e) => return Err(NetopsError::device("/import", e)),
    }
    // The import succeeded: the change is in. A marker that cannot be seen (not written,
    // or the change cut this connection) is reported, not an error: verify decides.
    let marker_confirmed = matches!(
        wait_for_file(client, &applied_file, FILE_WAIT).await,
        Ok(Some(_))
    );
    if !marker_confirmed {
        tracing::warn!(file = %applied_file, "imported, but the applied-marker was not seen");
    }
    Ok(Applied {
        already_applied: false,
        change_file,
        applied_file,
        marker_confirmed,
    })
}

/// The health checks of a change: the `config_push` card's (`netledger_domain::workflow::card`).
pub use netledger_domain::workflow::card::{HealthChecks, PingCheck};

/// How long [`verify`] tries to reach the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyOptions {
    /// Keep trying to connect for this long before calling the device unreachable.
    pub reachable_within: Duration,
    /// Pause between connection attempts.
    pub retry_every: Duration,
}

/// Why verification failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum VerifyFailure {
    /// No fresh connection could be made.
    Unreachable {
        /// Last connection error.
        detail: String,
    },
    /// The running configuration does not meet the change's expectations.
    ChangeMissing {
        /// The unmet expectations.
        missing: Vec<String>,
    },
    /// A health check failed.
    Unhealthy {
        /// Which check.
        check: String,
        /// What was seen.
        detail: String,
    },
}

/// A passed verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verified {
    /// Expectations checked.
    pub checked: usize,
    /// Changed properties that cannot be checked (secrets).
    pub unverifiable: Vec<String>,
    /// Health checks passed.
    pub health_checks: usize,
    /// Device clock at the end of verification.
    pub device_time: DeviceTime,
}

/// A failed verification (the caller rolls back).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyFailed {
    /// Why.
    pub reason: VerifyFailure,
}

/// Step 6's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Verification {
    /// The change is in effect and the device is healthy.
    Verified(Verified),
    /// It is not: roll back.
    Failed(VerifyFailed),
}

fn failed(reason: VerifyFailure) -> Verification {
    Verification::Failed(VerifyFailed { reason })
}

async fn ping_received(client: &Client, check: &PingCheck) -> Result<u32> {
    const PATH: &str = "/ping";
    let r = client
        .run(
            Command::new(PATH)
                .attr("address", &check.address)
                .attr("count", check.count.to_string()),
        )
        .await
        .map_err(|e| NetopsError::device(PATH, e))?;
    Ok(r.rows
        .iter()
        .rev()
        .find_map(|row| row.get_str("received").and_then(|v| v.parse().ok()))
        .unwrap_or(0))
}

/// Step 6: verify from a fresh connection: reachable within the wait, the running
/// configuration meets every expectation of the plan, and the health checks pass. A failed
/// check is an `Ok(Verification::Failed)`; errors are for what prevents verifying at all
/// (a rejected login, an unreadable export).
#[tracing::instrument(skip_all, fields(change = %validated.change_id))]
pub async fn verify(
    config: &Config,
    validated: &Validated,
    checks: &HealthChecks,
    opts: &VerifyOptions,
) -> Result<Verification> {
    verify_via(config, None, validated, checks, opts).await
}

/// [`verify`] with the device's SSH access (the export is read over SFTP before 7.13); the
/// fresh connection includes a fresh SSH session.
#[tracing::instrument(skip_all, fields(change = %validated.change_id))]
pub async fn verify_via(
    config: &Config,
    ssh: Option<&SshLink>,
    validated: &Validated,
    checks: &HealthChecks,
    opts: &VerifyOptions,
) -> Result<Verification> {
    let client = match connect_within(config, opts.reachable_within, opts.retry_every).await {
        Ok(c) => c,
        Err(e @ NetopsError::NotBack { .. }) => {
            return Ok(failed(VerifyFailure::Unreachable {
                detail: error_chain(&e),
            }));
        }
        Err(e) => return Err(e),
    };
    let files = Files::new(&client, ssh);
    let out = verify_on(&files, validated, checks).await;
    files.close().await;
    client.close().await;
    out
}

async fn verify_on(
    files: &Files<'_>,
    validated: &Validated,
    checks: &HealthChecks,
) -> Result<Verification> {
    let client = files.client();
    let prefix = storage_prefix(client).await?;
    let export = export_text(files, &validated.change_id, &prefix).await?;
    let current = change::parse_export(&export)?;
    let missing = change::unmet(&current, &validated.plan.expectations);
    if !missing.is_empty() {
        return Ok(failed(VerifyFailure::ChangeMissing { missing }));
    }
    let mut passed = 0;
    if !checks.interfaces_running.is_empty() {
        let ifaces = client
            .interfaces()
            .await
            .map_err(|e| NetopsError::device("/interface/print", e))?;
        for name in &checks.interfaces_running {
            let detail = match ifaces.iter().find(|i| &i.name == name) {
                None => Some("no such interface".to_string()),
                Some(i) if i.disabled => Some("disabled".into()),
                Some(i) if !i.running => Some("not running".into()),
                Some(_) => None,
            };
            if let Some(detail) = detail {
                return Ok(failed(VerifyFailure::Unhealthy {
                    check: format!("interface {name} running"),
                    detail,
                }));
            }
            passed += 1;
        }
    }
    for p in &checks.ping {
        let got = ping_received(client, p).await?;
        if got < p.min_received {
            return Ok(failed(VerifyFailure::Unhealthy {
                check: format!("ping {}", p.address),
                detail: format!("{got} of {} answered, {} needed", p.count, p.min_received),
            }));
        }
        passed += 1;
    }
    let (now, _) = device_clock(client).await?;
    Ok(Verification::Verified(Verified {
        checked: validated.plan.expectations.len(),
        unverifiable: validated.plan.unverifiable.clone(),
        health_checks: passed,
        device_time: now,
    }))
}

/// Step 7a's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    /// The timer was removed by this call (false: a previous attempt had removed it).
    pub disarmed_now: bool,
    /// The scheduler entry that is confirmed gone.
    pub scheduler_name: String,
    /// Device clock at commit.
    pub device_time: DeviceTime,
}

/// Removes the rollback timer and reads the scheduler back until the entry is confirmed
/// gone; returns whether this call removed it.
async fn disarm(client: &Client, name: &str) -> Result<bool> {
    let mut removed_now = false;
    if let Some(e) = scheduler_entry(client, name).await? {
        match client.remove_schedule(e.id).await {
            Ok(()) => {
                removed_now = true;
                crash_point("disarmed");
            }
            // it vanished in between (fired, or another attempt removed it): read back
            Err(routeros::Error::Trap { .. }) => {}
            Err(err) => return Err(NetopsError::device("/system/scheduler/remove", err)),
        }
    }
    if scheduler_entry(client, name).await?.is_some() {
        return Err(NetopsError::DisarmUnconfirmed {
            scheduler: name.to_string(),
        });
    }
    Ok(removed_now)
}

/// Step 7a: commit = disarm the rollback timer, confirmed by reading the scheduler back, and
/// only then, the change confirmed still in effect (a timer that fired before the disarm
/// has reverted it: [`NetopsError::Reverted`], not committed). A disarm that cannot be
/// confirmed is [`NetopsError::DisarmUnconfirmed`]: not committed, retry.
#[tracing::instrument(skip_all, fields(change = %armed.change_id))]
pub async fn commit(client: &Client, validated: &Validated, armed: &Armed) -> Result<Committed> {
    commit_via(&Files::api(client), validated, armed).await
}

/// [`commit`] over a file channel (the export is read over SFTP before 7.13 with SSH).
#[tracing::instrument(skip_all, fields(change = %armed.change_id))]
pub async fn commit_via(
    files: &Files<'_>,
    validated: &Validated,
    armed: &Armed,
) -> Result<Committed> {
    let client = files.client();
    let disarmed_now = disarm(client, &armed.scheduler_name).await?;
    let prefix = storage_prefix(client).await?;
    let export = export_text(files, &armed.change_id, &prefix).await?;
    let current = change::parse_export(&export)?;
    let missing = change::unmet(&current, &validated.plan.expectations);
    if !missing.is_empty() {
        return Err(NetopsError::Reverted {
            change: armed.change_id.to_string(),
            detail: format!("unmet: {}", missing.join("; ")),
        });
    }
    let (boot, now) = device_boot_time(client).await?;
    if validated.plan.expectations.is_empty() && boot > armed.armed_at {
        return Err(NetopsError::Reverted {
            change: armed.change_id.to_string(),
            detail: format!(
                "the device rebooted at {boot} (after arming at {}) and the change has nothing checkable",
                armed.armed_at
            ),
        });
    }
    Ok(Committed {
        disarmed_now,
        scheduler_name: armed.scheduler_name.clone(),
        device_time: now,
    })
}

/// Options of [`rollback`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackOptions {
    /// How long to keep trying to reach a device that is unreachable (cover the timer's
    /// remaining window plus a reboot).
    pub wait_for_device: Duration,
    /// How long a restore's reboot may take.
    pub reboot_wait: Duration,
    /// Pause between connection attempts.
    pub retry_every: Duration,
}

/// How the device got back to the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RollbackMethod {
    /// The change never started on the device: the timer was disarmed, nothing restored.
    NotApplied,
    /// This call loaded the snapshot backup (the device rebooted into it).
    RestoredNow,
    /// The device's own timer had already restored the snapshot.
    DeviceReverted,
    /// The configuration already equals the snapshot and no timer is left (a previous
    /// rollback attempt restored it).
    AlreadyAtSnapshot,
}

/// Step 7b's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolledBack {
    /// How.
    pub method: RollbackMethod,
    /// Normalised export sha256 now.
    pub normalised_sha256: String,
    /// Equal to the snapshot's (always true except after `NotApplied`, where a difference is
    /// someone else's change and is left alone).
    pub matches_snapshot: bool,
}

/// Step 7b: roll back, from any point after arm (also on cancel). Reaches the device within
/// `wait_for_device` (an unreachable device is waited for: its own timer restores it and
/// reboots); then:
/// - change never started (no applied-marker): disarm; nothing to restore;
/// - no timer left and the configuration equals the snapshot: the device reverted itself
///   (or a previous attempt restored it): confirmed by the normalised export sha256;
/// - otherwise: `/system/backup/load` of the snapshot now, wait for the reboot, confirm the
///   sha256 ([`NetopsError::RestoreMismatch`] if it differs).
///
/// Still unreachable after the wait: [`NetopsError::RollbackPending`] (retryable).
#[tracing::instrument(skip_all, fields(change = %snapshot.change_id))]
pub async fn rollback(
    config: &Config,
    snapshot: &Snapshot,
    armed: &Armed,
    opts: &RollbackOptions,
) -> Result<RolledBack> {
    rollback_with(config, snapshot, armed, opts, None).await
}

/// [`rollback`] of an encrypted snapshot (`backup_password` loads it).
#[tracing::instrument(skip_all, fields(change = %snapshot.change_id))]
pub async fn rollback_with(
    config: &Config,
    snapshot: &Snapshot,
    armed: &Armed,
    opts: &RollbackOptions,
    backup_password: Option<&Password>,
) -> Result<RolledBack> {
    rollback_via(config, None, snapshot, armed, opts, backup_password).await
}

/// [`rollback_with`] with the device's SSH access (exports over SFTP before 7.13).
#[tracing::instrument(skip_all, fields(change = %snapshot.change_id))]
pub async fn rollback_via(
    config: &Config,
    ssh: Option<&SshLink>,
    snapshot: &Snapshot,
    armed: &Armed,
    opts: &RollbackOptions,
    backup_password: Option<&Password>,
) -> Result<RolledBack> {
    let id = &snapshot.change_id;
    let client = match connect_within(config, opts.wait_for_device, opts.retry_every).await {
        Ok(c) => c,
        Err(e @ NetopsError::NotBack { .. }) => {
            return Err(NetopsError::RollbackPending {
                change: id.to_string(),
                detail: format!(
                    "{}; its rollback timer {} fires at {} device time",
                    error_chain(&e),
                    armed.scheduler_name,
                    armed.fires_at_device_time
                ),
            });
        }
        Err(e) => return Err(e),
    };
    let files = Files::new(&client, ssh);
    let looked = rollback_look(&files, snapshot, armed).await;
    files.close().await;
    match looked {
        Ok(Some(done)) => {
            client.close().await;
            Ok(done)
        }
        Ok(None) => load_snapshot(config, ssh, client, snapshot, opts, backup_password).await,
        Err(e) => {
            client.close().await;
            Err(e)
        }
    }
}

/// What [`rollback_via`] finds on the device: done already (`Some`), or the snapshot must be
/// loaded now (`None`).
async fn rollback_look(
    files: &Files<'_>,
    snapshot: &Snapshot,
    armed: &Armed,
) -> Result<Option<RolledBack>> {
    let client = files.client();
    let id = &snapshot.change_id;
    let prefix = storage_prefix(client).await?;
    let started = applied_marker(client, &prefix, id).await?.is_some();
    if !started {
        disarm(client, &armed.scheduler_name).await?;
        let sha = normalised_sha256(&export_text(files, id, &prefix).await?)?;
        return Ok(Some(RolledBack {
            method: RollbackMethod::NotApplied,
            matches_snapshot: sha == snapshot.normalised_sha256,
            normalised_sha256: sha,
        }));
    }
    let timer = scheduler_entry(client, &armed.scheduler_name).await?;
    let sha = normalised_sha256(&export_text(files, id, &prefix).await?)?;
    if timer.is_none() && sha == snapshot.normalised_sha256 {
        let (boot, _) = device_boot_time(client).await?;
        return Ok(Some(RolledBack {
            method: if boot > armed.armed_at {
                RollbackMethod::DeviceReverted
            } else {
                RollbackMethod::AlreadyAtSnapshot
            },
            normalised_sha256: sha,
            matches_snapshot: true,
        }));
    }
    if file_row(client, &snapshot.backup_file).await?.is_none() {
        return Err(NetopsError::WrongState {
            step: "rollback",
            change: id.to_string(),
            reason: format!(
                "snapshot backup {} is not on the device: restore it from the platform's copy",
                snapshot.backup_file
            ),
        });
    }
    Ok(None)
}

/// Restores a snapshot now, whatever the markers say (the `config_restore` workflow: a
/// committed push's files were cleaned up): the snapshot backup must be on the device
/// ([`upload_backup`] puts the archived copy back), `/system/backup/load`, reboot, and the
/// normalised sha256 must equal the snapshot's.
pub async fn restore_snapshot(
    config: &Config,
    snapshot: &Snapshot,
    opts: &RollbackOptions,
    backup_password: Option<&Password>,
) -> Result<RolledBack> {
    restore_snapshot_via(config, None, snapshot, opts, backup_password).await
}

/// [`restore_snapshot`] with the device's SSH access (the check export over SFTP before
/// 7.13).
pub async fn restore_snapshot_via(
    config: &Config,
    ssh: Option<&SshLink>,
    snapshot: &Snapshot,
    opts: &RollbackOptions,
    backup_password: Option<&Password>,
) -> Result<RolledBack> {
    let client = connect_within(config, opts.wait_for_device, opts.retry_every).await?;
    if file_row(&client, &snapshot.backup_file).await?.is_none() {
        client.close().await;
        return Err(NetopsError::WrongState {
            step: "restore",
            change: snapshot.change_id.to_string(),
            reason: format!(
                "snapshot backup {} is not on the device: upload the archived copy first",
                snapshot.backup_file
            ),
        });
    }
    load_snapshot(config, ssh, client, snapshot, opts, backup_password).await
}

/// Puts a snapshot's backup bytes (the archived copy) back on the device under its name,
/// unless it is there. The API can write a file only as `/file add contents=` text, capped
/// near 60 KB (ROUTEROS-NOTES §5.9): bytes that are not UTF-8 text or are larger are refused
/// ([`NetopsError::WrongState`]): such a backup has to be put back by hand (SFTP).
pub async fn upload_backup(client: &Client, snapshot: &Snapshot, bytes: &[u8]) -> Result<bool> {
    upload_backup_via(&Files::api(client), snapshot, bytes).await
}

/// [`upload_backup`] over a file channel: with SSH access registered the bytes go over
/// SFTP on versions before 7.9 (any size, binary included).
pub async fn upload_backup_via(
    files: &Files<'_>,
    snapshot: &Snapshot,
    bytes: &[u8],
) -> Result<bool> {
    let client = files.client();
    if file_row(client, &snapshot.backup_file).await?.is_some() {
        return Ok(false);
    }
    const LIMIT: usize = 60_000;
    let over_ssh = files.access().await?.upload == netledger_domain::device::Via::Ssh;
    match std::str::from_utf8(bytes) {
        _ if over_ssh => {}
        Ok(_) if bytes.len() <= LIMIT => {}
        _ => {
            return Err(NetopsError::WrongState {
                step: "restore",
                change: snapshot.change_id.to_string(),
                reason: format!(
                    "snapshot backup {} is not on the device and its archived copy ({} bytes, \
                     binary or over {LIMIT}) cannot be written over the API: copy it back by \
                     SFTP, then restore again",
                    snapshot.backup_file,
                    bytes.len()
                ),
            });
        }
    };
    if let Some(sha) = &snapshot.backup_sha256
        && sha256_hex(bytes) != *sha
    {
        return Err(NetopsError::Unexpected {
            detail: format!(
                "the archived backup of {} does not match the snapshot's sha256",
                snapshot.change_id
            ),
        });
    }
    files.put(&snapshot.backup_file, bytes).await?;
    Ok(true)
}

/// `/system/backup/load` of the snapshot on `client`, then the reboot, then the hash check.
async fn load_snapshot(
    config: &Config,
    ssh: Option<&SshLink>,
    client: Client,
    snapshot: &Snapshot,
    opts: &RollbackOptions,
    backup_password: Option<&Password>,
) -> Result<RolledBack> {
    let id = &snapshot.change_id;
    let prefix = storage_prefix(&client).await?;
    let (before, _) = device_clock(&client).await?;
    client
        .backup_load(&snapshot.backup_file, backup_password)
        .await
        .map_err(|e| NetopsError::device("/system/backup/load", e))?;
    crash_point("restore_requested");
    wait_closed(&client, opts.reboot_wait).await;
    let client = await_reboot(config, before, opts.reboot_wait, opts.retry_every).await?;
    let files = Files::new(&client, ssh);
    let export = export_text(&files, id, &prefix).await;
    files.close().await;
    client.close().await;
    let sha = normalised_sha256(&export?)?;
    if sha != snapshot.normalised_sha256 {
        return Err(NetopsError::RestoreMismatch {
            change: id.to_string(),
            expected: snapshot.normalised_sha256.clone(),
            actual: sha,
        });
    }
    Ok(RolledBack {
        method: RollbackMethod::RestoredNow,
        normalised_sha256: sha,
        matches_snapshot: true,
    })
}

/// Waits (bounded) for a connection the device is about to drop (it answered `!done` to a
/// command that reboots it) so that a reconnect reaches the rebooted device.
pub(crate) async fn wait_closed(client: &Client, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    while !client.is_closed() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client.close().await;
}

/// Reconnects after a reboot that started at device time `since`: waits until the device
/// answers and its boot time (clock minus uptime) is not before `since`.
pub(crate) async fn await_reboot(
    config: &Config,
    since: DeviceTime,
    within: Duration,
    every: Duration,
) -> Result<Client> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let client = connect_within(config, left, every).await?;
        let (boot, _) = device_boot_time(&client).await?;
        if boot >= since {
            return Ok(client);
        }
        client.close().await;
        if tokio::time::Instant::now() + every > deadline {
            return Err(NetopsError::NotBack {
                waited: within,
                last_error: format!("the device answers but has not rebooted (booted {boot})"),
            });
        }
        tokio::time::sleep(every).await;
    }
}

/// What [`cleanup`] removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cleaned {
    /// Files removed.
    pub removed: Vec<String>,
    /// Files kept because a change's rollback timer is still armed (its snapshot backup,
    /// applied-marker, apply token and change file): a later cleanup removes them once the
    /// timer is gone.
    #[serde(default)]
    pub kept_for_timer: Vec<String>,
    /// Files kept because the caller asked (the encrypted pre-push backup of a device whose
    /// backup could not be read back and archived, RouterOS before 7.13: it is the only
    /// copy a later `config_restore` can load).
    #[serde(default)]
    pub kept: Vec<String>,
}

/// The files a change can leave on the device, by name without the storage prefix: change
/// file, applied-marker, apply token, snapshot backup (what an armed timer and a rollback
/// still need), then the dry-run file and the temporary export (needed by nothing once their
/// step returned).
fn change_files(id: &ChangeId) -> (Vec<String>, Vec<String>) {
    (
        vec![
            id.change_file(),
            id.applied_file(),
            id.applied_export_file(),
            apply_token_file(id),
            format!("{}.backup", id.backup_stem()),
        ],
        vec![id.dry_run_file(), format!("{}.rsc", id.export_stem())],
    )
}

/// After commit or rollback: removes what the change put on the device (change file,
/// applied-marker, apply token, dry-run file, temporary export, snapshot backup). While the
/// change's rollback timer is still on the device, the files the timer and a rollback need
/// are kept (listed in `kept_for_timer`). Idempotent: a file already gone is skipped.
#[tracing::instrument(skip_all, fields(change = %id))]
pub async fn cleanup(client: &Client, id: &ChangeId) -> Result<Cleaned> {
    cleanup_changes(client, std::slice::from_ref(id), &[]).await
}

/// [`cleanup`] of several change ids on one connection (a push's own id and its `-post`
/// snapshot id), keeping the files named in `keep` (names without the storage prefix).
pub async fn cleanup_changes(
    client: &Client,
    ids: &[ChangeId],
    keep: &[String],
) -> Result<Cleaned> {
    let prefix = storage_prefix(client).await?;
    let mut out = Cleaned {
        removed: Vec::new(),
        kept_for_timer: Vec::new(),
        kept: Vec::new(),
    };
    for id in ids {
        let armed = scheduler_entry(client, &id.scheduler_name())
            .await?
            .is_some();
        let (timer_needs, others) = change_files(id);
        for name in others {
            let full = format!("{prefix}{name}");
            if remove_file_named(client, &full).await? {
                out.removed.push(full);
                if out.removed.len() == 1 {
                    crash_point("removed");
                }
            }
        }
        for name in timer_needs {
            let full = format!("{prefix}{name}");
            if keep.contains(&name) {
                if file_row(client, &full).await?.is_some() {
                    out.kept.push(full);
                }
            } else if armed {
                if file_row(client, &full).await?.is_some() {
                    out.kept_for_timer.push(full);
                }
            } else if remove_file_named(client, &full).await? {
                out.removed.push(full);
                if out.removed.len() == 1 {
                    crash_point("removed");
                }
            }
        }
    }
    Ok(out)
}
