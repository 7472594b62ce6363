//! Typed helpers for the menus the platform touches (ROUTEROS-NOTES §5), as methods on
//! [`Client`], plus the row types they return. Each row type has a pure `from_row` so parsing
//! is testable without a router.
//!
//! # Export text
//!
//! `/export` over the API answers only `!done` with no text (notes §5.11), so
//! [`Client::export`] runs `/export =file=<stem>` (needs the `write` policy), reads
//! `<stem>.rsc` back and removes it:
//! - RouterOS 7.13+: `/file/read` in 32 KiB chunks. Whether a chunk arrives as `!re =data=`
//!   or `!done =ret=` is unsourced, so both are accepted.
//! - older: the file's `contents` property, which RouterOS caps (about 4 KB on v6, 60 KB on
//!   v7); if `contents` is shorter than `size` the export fails with
//!   [`Error::UnexpectedReply`] instead of returning a truncated configuration.
//!
//! Sensitive values are hidden by default ([`Sensitive::Hide`]): the platform archives export
//! text in git, and secrets must not go there. v7 hides them unless `show-sensitive` is given,
//! v6 shows them unless `hide-sensitive` is given, so the helper reads the major version from
//! `/system/resource` and sends the right flag. The text is returned as bytes: exports are not
//! guaranteed to be UTF-8 (comments are stored in the device's code page).
//!
//! # Commands that drop the connection
//!
//! `/system/reboot`, `/system/backup/load` and `/system/package/update/install` restart the
//! router, which closes the connection instead of answering `!done` (notes §5.13). Their
//! helpers treat both `!done` and a closed connection as success; the client is unusable
//! afterwards.

use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::client::{Client, Password, Response};
use crate::error::Error;
use crate::proto::{Attrs, Command, Query, TrapCategory};
use crate::types::{ItemId, ValueError, Version, format_duration, parse_bool, parse_duration};

/// A row attribute that is missing or not in the expected format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// A required attribute is absent.
    #[error("attribute {field} is missing")]
    Missing {
        /// The attribute name.
        field: &'static str,
    },
    /// An attribute has an unparseable value.
    #[error("attribute {field} has an unexpected value")]
    Invalid {
        /// The attribute name.
        field: &'static str,
        /// Why.
        source: ValueError,
    },
}

/// Typed access to one row.
struct Row<'a>(&'a Attrs);

impl Row<'_> {
    fn opt_text(&self, field: &'static str) -> Option<String> {
        self.0.get_lossy(field).map(|v| v.into_owned())
    }

    fn text(&self, field: &'static str) -> Result<String, FieldError> {
        self.opt_text(field).ok_or(FieldError::Missing { field })
    }

    fn opt_parse<T>(
        &self,
        field: &'static str,
        parse: impl FnOnce(&str) -> Result<T, ValueError>,
    ) -> Result<Option<T>, FieldError> {
        self.0
            .get_lossy(field)
            .map(|v| parse(&v).map_err(|source| FieldError::Invalid { field, source }))
            .transpose()
    }

    fn parse<T>(
        &self,
        field: &'static str,
        parse: impl FnOnce(&str) -> Result<T, ValueError>,
    ) -> Result<T, FieldError> {
        self.opt_parse(field, parse)?
            .ok_or(FieldError::Missing { field })
    }

    fn opt_u64(&self, field: &'static str) -> Result<Option<u64>, FieldError> {
        self.opt_parse(field, number)
    }

    fn u64(&self, field: &'static str) -> Result<u64, FieldError> {
        self.parse(field, number)
    }

    /// Booleans default to `false` when absent (RouterOS omits some flags when unset).
    fn flag(&self, field: &'static str) -> Result<bool, FieldError> {
        Ok(self.opt_parse(field, parse_bool)?.unwrap_or(false))
    }

    fn id(&self) -> Result<ItemId, FieldError> {
        self.parse(".id", str::parse)
    }
}

fn number(s: &str) -> Result<u64, ValueError> {
    s.parse().map_err(|_| ValueError {
        expected: "number",
        value: s.chars().take(64).collect(),
    })
}

/// `/system/resource`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    /// Parsed `version`.
    pub version: Version,
    /// Time since boot.
    pub uptime: Duration,
    /// CPU load in percent.
    pub cpu_load: u64,
    /// Free RAM in bytes.
    pub free_memory: u64,
    /// Total RAM in bytes.
    pub total_memory: u64,
    /// Free storage in bytes.
    pub free_hdd_space: u64,
    /// Total storage in bytes.
    pub total_hdd_space: u64,
    /// `board-name` (`CCR2004-16G-2S+`, `CHR`, `x86`).
    pub board_name: Option<String>,
    /// `architecture-name` (`arm64`, `x86_64`, ...).
    pub architecture_name: Option<String>,
    /// `cpu`.
    pub cpu: Option<String>,
    /// `cpu-count`.
    pub cpu_count: Option<u64>,
    /// `platform` (`MikroTik`).
    pub platform: Option<String>,
}

impl Resources {
    /// Parses a `/system/resource/print` row.
    pub fn from_row(attrs: &Attrs) -> Result<Self, FieldError> {
        let r = Row(attrs);
        Ok(Self {
            version: r.parse("version", str::parse)?,
            uptime: r.parse("uptime", parse_duration)?,
            cpu_load: r.u64("cpu-load")?,
            free_memory: r.u64("free-memory")?,
            total_memory: r.u64("total-memory")?,
            free_hdd_space: r.u64("free-hdd-space")?,
            total_hdd_space: r.u64("total-hdd-space")?,
            board_name: r.opt_text("board-name"),
            architecture_name: r.opt_text("architecture-name"),
            cpu: r.opt_text("cpu"),
            cpu_count: r.opt_u64("cpu-count")?,
            platform: r.opt_text("platform"),
        })
    }
}

/// `/system/routerboard`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routerboard {
    /// `routerboard` (false on x86).
    pub routerboard: bool,
    /// `model`.
    pub model: Option<String>,
    /// `serial-number`.
    pub serial_number: Option<String>,
    /// `firmware-type`.
    pub firmware_type: Option<String>,
    /// `factory-firmware`.
    pub factory_firmware: Option<String>,
    /// `current-firmware`.
    pub current_firmware: Option<String>,
    /// `upgrade-firmware`: differs from `current_firmware` when an upgrade is pending.
    pub upgrade_firmware: Option<String>,
}

impl Routerboard {
    /// Parses a `/system/routerboard/print` row.
    pub fn from_row(attrs: &Attrs) -> Result<Self, FieldError> {
        let r = Row(attrs);
        Ok(Self {
            routerboard: r.flag("routerboard")?,
            model: r.opt_text("model"),
            serial_number: r.opt_text("serial-number"),
            firmware_type: r.opt_text("firmware-type"),
            factory_firmware: r.opt_text("factory-firmware"),
            current_firmware: r.opt_text("current-firmware"),
            upgrade_firmware: r.opt_text("upgrade-firmware"),
        })
    }

    /// True when `upgrade-firmware` is present and differs from `current-firmware`.
    pub fn upgrade_pending(&self) -> bool {
        matches!((&self.current_firmware, &self.upgrade_firmware),
            (Some(c), Some(u)) if c != u)
    }
}

/// `/interface` row with counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// `.id`.
    pub id: ItemId,
    /// `name`.
    pub name: String,
    /// `type` (`ether`, `vlan`, `bridge`, ...).
    pub kind: Option<String>,
    /// `running`.
    pub running: bool,
    /// `disabled`.
    pub disabled: bool,
    /// `rx-byte`.
    pub rx_byte: Option<u64>,
    /// `tx-byte`.
    pub tx_byte: Option<u64>,
    /// `rx-error`.
    pub rx_error: Option<u64>,
    /// `tx-error`.
    pub tx_error: Option<u64>,
    /// `mac-address`.
    pub mac_address: Option<String>,
    /// `comment`.
    pub comment: Option<String>,
}

impl Interface {
    /// Parses an `/interface/print` row.
    pub fn from_row(attrs: &Attrs) -> Result<Self, FieldError> {
        let r = Row(attrs);
        Ok(Self {
            id: r.id()?,
            name: r.text("name")?,
            kind: r.opt_text("type"),
            running: r.flag("running")?,
            disabled: r.flag("disabled")?,
            rx_byte: r.opt_u64("rx-byte")?,
            tx_byte: r.opt_u64("tx-byte")?,
            rx_error: r.opt_u64("rx-error")?,
            tx_error: r.opt_u64("tx-error")?,
            mac_address: r.opt_text("mac-address"),
            comment: r.opt_text("comment"),
        })
    }
}

/// `/ip/address` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpAddress {
    /// `.id`.
    pub id: ItemId,
    /// `address` in CIDR form.
    pub address: String,
    /// `network`.
    pub network: Option<String>,
    /// `interface`.
    pub interface: String,
    /// `disabled`.
    pub disabled: bool,
    /// `dynamic`.
    pub dynamic: bool,
    /// `invalid`.
    pub invalid: bool,
    /// `comment`.
    pub comment: Option<String>,
}

impl IpAddress {
    /// Parses an `/ip/address/print` row.
    pub fn from_row(attrs: &Attrs) -> Result<Self, FieldError> {
        let r = Row(attrs);
        Ok(Self {
            id: r.id()?,
            address: r.text("address")?,
            network: r.opt_text("network"),
            interface: r.text("interface")?,
            disabled: r.flag("disabled")?,
            dynamic: r.flag("dynamic")?,
            invalid: r.flag("invalid")?,
            comment: r.opt_text("comment"),
        })
    }
}

/// `/system/package` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// `.id`.
    pub id: ItemId,
    /// `name`.
    pub name: String,
    /// `version` (kept as text: package versions need not parse as [`Version`]).
    pub version: String,
    /// `build-time`.
    pub build_time: Option<String>,
    /// `disabled`.
    pub disabled: bool,
    /// `scheduled` (pending action, empty when none).
    pub scheduled: Option<String>,
}

impl Package {
    /// Parses a `/system/package/print` row.
    pub fn from_row(attrs: &Attrs) -> Result<Self, FieldError> {
        let r = Row(attrs);
        Ok(Self {
            id: r.id()?,
            name: r.text("name")?,
            version: r.text("version")?,
            build_time: r.opt_text("build-time"),
            disabled: r.flag("disabled")?,
            scheduled: r.opt_text("scheduled").filter(|s| !s.is_empty()),
        })
    }
}

/// `/system/package/update`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateStatus {
    /// `channel`.
    pub channel: Option<String>,
    /// `installed-version`.
    pub installed_version: Option<String>,
    /// `latest-version` (may be absent or empty before a check).
    pub latest_version: Option<String>,
    /// `status` (`New version is available`, `System is already up to date`, ...).
    pub status: Option<String>,
}

impl UpdateStatus {
    /// Parses a `/system/package/update/print` row.
    pub fn from_row(attrs: &Attrs) -> Self {
        let r = Row(attrs);
        Self {
            channel: r.opt_text("channel"),
            installed_version: r.opt_text("installed-version"),
            latest_version: r.opt_text("latest-version").filter(|s| !s.is_empty()),
            status: r.opt_text("status"),
        }
    }
}

/// `/user` row (the password is write-only and never returned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// `.id`.
    pub id: ItemId,
    /// `name`.
    pub name: String,
    /// `group`.
    pub group: String,
    /// `disabled`.
    pub disabled: bool,
    /// `address` (allowed prefixes).
    pub address: Option<String>,
    /// `last-logged-in`.
    pub last_logged_in: Option<String>,
    /// `comment`.
    pub comment: Option<String>,
}

impl User {
    /// Parses a `/user/print` row.
    pub fn from_row(attrs: &Attrs) -> Result<Self, FieldError> {
        let r = Row(attrs);
        Ok(Self {
            id: r.id()?,
            name: r.text("name")?,
            group: r.text("group")?,
            disabled: r.flag("disabled")?,
            address: r.opt_text("address").filter(|s| !s.is_empty()),
            last_logged_in: r.opt_text("last-logged-in"),
            comment: r.opt_text("comment"),
        })
    }
}

/// `/system/scheduler` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// `.id`.
    pub id: ItemId,
    /// `name`.
    pub name: String,
    /// `on-event`: a script name or inline source.
    pub on_event: String,
    /// `start-date` (format depends on the version: `sep/15/2019` or `2019-09-15`).
    pub start_date: Option<String>,
    /// `start-time` (`02:00:00` or `startup`).
    pub start_time: Option<String>,
    /// `interval` (zero: run once).
    pub interval: Duration,
    /// `disabled`.
    pub disabled: bool,
    /// `run-count`.
    pub run_count: Option<u64>,
    /// `next-run`.
    pub next_run: Option<String>,
    /// `comment`.
    pub comment: Option<String>,
}

impl Schedule {
    /// Parses a `/system/scheduler/print` row.
    pub fn from_row(attrs: &Attrs) -> Result<Self, FieldError> {
        let r = Row(attrs);
        Ok(Self {
            id: r.id()?,
            name: r.text("name")?,
            on_event: r.opt_text("on-event").unwrap_or_default(),
            start_date: r.opt_text("start-date"),
            start_time: r.opt_text("start-time"),
            interval: r
                .opt_parse("interval", parse_duration)?
                .unwrap_or(Duration::ZERO),
            disabled: r.flag("disabled")?,
            run_count: r.opt_u64("run-count")?,
            next_run: r.opt_text("next-run"),
            comment: r.opt_text("comment"),
        })
    }
}

/// A scheduler entry to add.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewSchedule {
    /// `name` (carry the change id here for idempotence).
    pub name: String,
    /// `on-event`.
    pub on_event: String,
    /// `start-date`, in the device's date format.
    pub start_date: Option<String>,
    /// `start-time` (`hh:mm:ss` or `startup`).
    pub start_time: Option<String>,
    /// `interval`; `None` leaves the default (run once).
    pub interval: Option<Duration>,
    /// `policy`, comma-separated; `None` leaves the default.
    pub policy: Option<String>,
    /// `comment`.
    pub comment: Option<String>,
    /// Add it disabled.
    pub disabled: bool,
}

/// `/system/script` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// `.id`.
    pub id: ItemId,
    /// `name`.
    pub name: String,
    /// `source`.
    pub source: String,
    /// `owner`.
    pub owner: Option<String>,
    /// `policy`.
    pub policy: Option<String>,
    /// `run-count`.
    pub run_count: Option<u64>,
    /// `invalid`.
    pub invalid: bool,
    /// `comment`.
    pub comment: Option<String>,
}

impl Script {
    /// Parses a `/system/script/print` row.
    pub fn from_row(attrs: &Attrs) -> Result<Self, FieldError> {
        let r = Row(attrs);
        Ok(Self {
            id: r.id()?,
            name: r.text("name")?,
            source: r.opt_text("source").unwrap_or_default(),
            owner: r.opt_text("owner"),
            policy: r.opt_text("policy"),
            run_count: r.opt_u64("run-count")?,
            invalid: r.flag("invalid")?,
            comment: r.opt_text("comment"),
        })
    }
}

/// `/file` row (without `contents`, which [`Client::file_contents`] fetches).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// `.id`.
    pub id: ItemId,
    /// `name` (a path such as `flash/x.rsc`).
    pub name: String,
    /// `type` (`directory`, `backup`, `script`, `package`, ...).
    pub kind: Option<String>,
    /// `size` in bytes.
    pub size: Option<u64>,
}

impl File {
    /// Parses a `/file/print` row.
    pub fn from_row(attrs: &Attrs) -> Result<Self, FieldError> {
        let r = Row(attrs);
        Ok(Self {
            id: r.id()?,
            name: r.text("name")?,
            kind: r.opt_text("type"),
            size: r.opt_u64("size")?,
        })
    }
}

/// Whether [`Client::export`] includes passwords, keys and other sensitive values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sensitive {
    /// Leave them out (v6 `hide-sensitive`; v7 default).
    #[default]
    Hide,
    /// Include them (v7 `show-sensitive`; v6 default).
    Show,
}

/// Options for [`Client::export`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportOptions {
    /// File name stem on the device; `.rsc` is appended. Use a name unique to the job when
    /// exports may run concurrently on one device.
    pub file: String,
    /// Sensitive values.
    pub sensitive: Sensitive,
    /// `terse`: each command on one line with its full path.
    pub terse: bool,
    /// `verbose`: every property, defaults included.
    pub verbose: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            file: "netledger-export".into(),
            sensitive: Sensitive::Hide,
            terse: false,
            verbose: false,
        }
    }
}

/// Largest `/file/read` chunk RouterOS accepts.
const READ_CHUNK: usize = 32 * 1024;
/// How often to look again for a file `/export` has just written.
const FILE_APPEAR_TRIES: u32 = 10;
const FILE_APPEAR_WAIT: Duration = Duration::from_millis(100);

impl Client {
    async fn rows<T>(
        &self,
        cmd: Command,
        parse: impl Fn(&Attrs) -> Result<T, FieldError>,
    ) -> Result<Vec<T>, Error> {
        let path = cmd.path().to_owned();
        let response = self.run(cmd).await?;
        response
            .rows
            .iter()
            .map(|row| parse(row).map_err(|e| field(&path, e)))
            .collect()
    }

    async fn single_row(&self, cmd: Command) -> Result<(String, Attrs), Error> {
        let path = cmd.path().to_owned();
        let response = self.run(cmd).await?;
        match response.rows.into_iter().next() {
            Some(row) => Ok((path, row)),
            None => Err(unexpected(&path, "no row returned")),
        }
    }

    async fn added_id(&self, cmd: Command) -> Result<ItemId, Error> {
        let path = cmd.path().to_owned();
        let response = self.run(cmd).await?;
        ret_text(&response)
            .and_then(|r| r.parse().ok())
            .ok_or_else(|| unexpected(&path, "add did not return an item id"))
    }

    /// `/system/identity` name.
    pub async fn identity(&self) -> Result<String, Error> {
        let (path, row) = self
            .single_row(Command::new("/system/identity/print"))
            .await?;
        Row(&row).text("name").map_err(|e| field(&path, e))
    }

    /// Sets the identity.
    pub async fn set_identity(&self, name: &str) -> Result<(), Error> {
        self.run(Command::new("/system/identity/set").attr("name", name))
            .await
            .map(drop)
    }

    /// `/system/resource`.
    pub async fn resources(&self) -> Result<Resources, Error> {
        let (path, row) = self
            .single_row(Command::new("/system/resource/print"))
            .await?;
        Resources::from_row(&row).map_err(|e| field(&path, e))
    }

    /// `/system/routerboard`; `None` where the menu does not exist (CHR).
    pub async fn routerboard(&self) -> Result<Option<Routerboard>, Error> {
        match self
            .single_row(Command::new("/system/routerboard/print"))
            .await
        {
            Ok((path, row)) => Routerboard::from_row(&row)
                .map(Some)
                .map_err(|e| field(&path, e)),
            // CHR: "no such command or directory (routerboard)" (notes §5.3).
            Err(Error::Trap { trap, .. })
                if trap.category == Some(TrapCategory::MissingItemOrCommand)
                    || trap.message.starts_with("no such command") =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// `/system/routerboard/upgrade`: stages the firmware in `upgrade-firmware`; it is applied
    /// by the next reboot.
    pub async fn routerboard_upgrade(&self) -> Result<(), Error> {
        self.run(Command::new("/system/routerboard/upgrade"))
            .await
            .map(drop)
    }

    /// `/interface` with counters (a plain print returns them; no `.proplist` so counters
    /// are computed).
    pub async fn interfaces(&self) -> Result<Vec<Interface>, Error> {
        self.rows(Command::new("/interface/print"), Interface::from_row)
            .await
    }

    /// `/ip/address`.
    pub async fn ip_addresses(&self) -> Result<Vec<IpAddress>, Error> {
        self.rows(Command::new("/ip/address/print"), IpAddress::from_row)
            .await
    }

    /// `/system/package`.
    pub async fn packages(&self) -> Result<Vec<Package>, Error> {
        self.rows(Command::new("/system/package/print"), Package::from_row)
            .await
    }

    /// `/user`.
    pub async fn users(&self) -> Result<Vec<User>, Error> {
        self.rows(Command::new("/user/print"), User::from_row).await
    }

    /// `/system/scheduler` entries.
    pub async fn schedules(&self) -> Result<Vec<Schedule>, Error> {
        self.rows(Command::new("/system/scheduler/print"), Schedule::from_row)
            .await
    }

    /// Adds a scheduler entry and returns its id.
    pub async fn add_schedule(&self, s: &NewSchedule) -> Result<ItemId, Error> {
        let mut cmd = Command::new("/system/scheduler/add")
            .attr("name", &s.name)
            .attr("on-event", &s.on_event);
        let optional = [
            ("start-date", s.start_date.clone()),
            ("start-time", s.start_time.clone()),
            ("interval", s.interval.map(format_duration)),
            ("policy", s.policy.clone()),
            ("comment", s.comment.clone()),
        ];
        for (name, value) in optional {
            if let Some(v) = value {
                cmd = cmd.attr(name, v);
            }
        }
        if s.disabled {
            cmd = cmd.attr("disabled", "yes");
        }
        self.added_id(cmd).await
    }

    /// Removes a scheduler entry.
    pub async fn remove_schedule(&self, id: ItemId) -> Result<(), Error> {
        self.run(Command::new("/system/scheduler/remove").id(id))
            .await
            .map(drop)
    }

    /// Enables or disables a scheduler entry.
    pub async fn enable_schedule(&self, id: ItemId, enabled: bool) -> Result<(), Error> {
        let verb = if enabled { "enable" } else { "disable" };
        self.run(Command::new(format!("/system/scheduler/{verb}")).id(id))
            .await
            .map(drop)
    }

    /// `/system/script` entries.
    pub async fn scripts(&self) -> Result<Vec<Script>, Error> {
        self.rows(Command::new("/system/script/print"), Script::from_row)
            .await
    }

    /// Adds a script and returns its id.
    pub async fn add_script(
        &self,
        name: &str,
        source: &str,
        policy: Option<&str>,
    ) -> Result<ItemId, Error> {
        let mut cmd = Command::new("/system/script/add")
            .attr("name", name)
            .attr("source", source);
        if let Some(p) = policy {
            cmd = cmd.attr("policy", p);
        }
        self.added_id(cmd).await
    }

    /// Removes a script.
    pub async fn remove_script(&self, id: ItemId) -> Result<(), Error> {
        self.run(Command::new("/system/script/remove").id(id))
            .await
            .map(drop)
    }

    /// Runs a script by name; returns what it printed with `:put` (`!done =ret=`), if any.
    pub async fn run_script(&self, name: &str) -> Result<Option<Bytes>, Error> {
        let response = self
            .run(Command::new("/system/script/run").attr("number", name))
            .await?;
        Ok(response.ret().cloned())
    }

    /// `/file` entries.
    pub async fn files(&self) -> Result<Vec<File>, Error> {
        self.rows(
            Command::new("/file/print").proplist(&[".id", "name", "type", "size"]),
            File::from_row,
        )
        .await
    }

    /// Looks up one file by exact name.
    pub async fn file(&self, name: &str) -> Result<Option<File>, Error> {
        let found = self
            .rows(
                Command::new("/file/print")
                    .proplist(&[".id", "name", "type", "size"])
                    .query(Query::eq("name", name)),
                File::from_row,
            )
            .await?;
        Ok(found.into_iter().next())
    }

    /// Removes a file.
    pub async fn remove_file(&self, id: ItemId) -> Result<(), Error> {
        self.run(Command::new("/file/remove").id(id))
            .await
            .map(drop)
    }

    /// A file's bytes. On 7.13+ (`version`) via `/file/read`; otherwise via `contents`,
    /// failing if RouterOS truncated it.
    pub async fn file_contents(&self, name: &str, version: &Version) -> Result<Bytes, Error> {
        if version.at_least(7, 13) {
            self.file_read(name).await
        } else {
            self.file_contents_property(name).await
        }
    }

    async fn file_read(&self, name: &str) -> Result<Bytes, Error> {
        const PATH: &str = "/file/read";
        let mut out = BytesMut::new();
        loop {
            let response = self
                .run(
                    Command::new(PATH)
                        .attr("file", name)
                        .attr("offset", out.len().to_string())
                        .attr("chunk-size", READ_CHUNK.to_string()),
                )
                .await?;
            // Unsourced whether the chunk comes as a row or as `ret`: take either.
            let chunk = response
                .rows
                .iter()
                .find_map(|r| r.get("data"))
                .or_else(|| response.ret())
                .cloned()
                .unwrap_or_default();
            if chunk.len() > READ_CHUNK {
                return Err(unexpected(PATH, "chunk larger than asked for"));
            }
            let max = self.reply_limits().max_file_bytes;
            if out.len() + chunk.len() > max {
                return Err(Error::ReplyTooLarge {
                    command: format!("{PATH} {name}"),
                    limit: format!("{max} bytes"),
                });
            }
            out.extend_from_slice(&chunk);
            if chunk.len() < READ_CHUNK {
                return Ok(out.freeze());
            }
        }
    }

    async fn file_contents_property(&self, name: &str) -> Result<Bytes, Error> {
        const PATH: &str = "/file/print";
        let response = self
            .run(
                Command::new(PATH)
                    .proplist(&["name", "size", "contents"])
                    .query(Query::eq("name", name)),
            )
            .await?;
        let row = response
            .rows
            .first()
            .ok_or_else(|| unexpected(PATH, format!("no file {name:?}")))?;
        let contents = row.get("contents").cloned().unwrap_or_default();
        let size = Row(row).opt_u64("size").map_err(|e| field(PATH, e))?;
        match size {
            Some(size) if (contents.len() as u64) < size => Err(unexpected(
                PATH,
                format!(
                    "contents of {name:?} truncated by RouterOS: {} of {size} bytes \
                     (RouterOS 7.13+ can read it in chunks)",
                    contents.len()
                ),
            )),
            _ => Ok(contents),
        }
    }

    /// The configuration as export text; see the module documentation for how and why.
    pub async fn export(&self, opts: &ExportOptions) -> Result<Bytes, Error> {
        let (file, version) = self.export_to_file(opts).await?;
        let text = self.file_contents(&file.name, &version).await;
        // Remove the file whatever happened reading it; report the read error first.
        let removed = self.remove_file(file.id).await;
        let text = text?;
        removed?;
        Ok(text)
    }

    /// Writes the export to `<opts.file>.rsc` on the device and waits for it to appear: the
    /// file (read it and remove it yourself, e.g. over SFTP where `contents` is capped) and
    /// the device's version.
    pub async fn export_to_file(&self, opts: &ExportOptions) -> Result<(File, Version), Error> {
        let version = self.resources().await?.version;
        let mut cmd = Command::new("/export").attr("file", &opts.file);
        match (opts.sensitive, version.major >= 7) {
            (Sensitive::Hide, false) => cmd = cmd.flag("hide-sensitive"),
            (Sensitive::Show, true) => cmd = cmd.flag("show-sensitive"),
            _ => {}
        }
        if opts.terse {
            cmd = cmd.flag("terse");
        }
        if opts.verbose {
            cmd = cmd.flag("verbose");
        }
        self.run(cmd).await?;

        let name = format!("{}.rsc", opts.file);
        let file = self.wait_for_file(&name).await?;
        Ok((file, version))
    }

    async fn wait_for_file(&self, name: &str) -> Result<File, Error> {
        for _ in 0..FILE_APPEAR_TRIES {
            if let Some(f) = self.file(name).await? {
                return Ok(f);
            }
            tokio::time::sleep(FILE_APPEAR_WAIT).await;
        }
        Err(unexpected(
            "/export",
            format!("{name:?} did not appear after the export"),
        ))
    }

    /// `/system/backup/save`; without a password the backup is unencrypted (6.43+).
    pub async fn backup_save(&self, name: &str, password: Option<&Password>) -> Result<(), Error> {
        let mut cmd = Command::new("/system/backup/save").attr("name", name);
        if let Some(p) = password {
            cmd = cmd.attr("password", p.expose());
        }
        self.run(cmd).await.map(drop)
    }

    /// `/system/backup/load`: restores and restarts the router (connection drops).
    pub async fn backup_load(&self, name: &str, password: Option<&Password>) -> Result<(), Error> {
        let mut cmd = Command::new("/system/backup/load").attr("name", name);
        if let Some(p) = password {
            cmd = cmd.attr("password", p.expose());
        }
        restarting(self.run(cmd).await)
    }

    /// `/system/reboot` (connection drops).
    pub async fn reboot(&self) -> Result<(), Error> {
        restarting(self.run(Command::new("/system/reboot")).await)
    }

    /// `/system/package/update`.
    pub async fn update_status(&self) -> Result<UpdateStatus, Error> {
        let (_, row) = self
            .single_row(Command::new("/system/package/update/print"))
            .await?;
        Ok(UpdateStatus::from_row(&row))
    }

    /// Optionally switches the update channel, runs `check-for-updates once` (the router asks
    /// MikroTik's servers; it traps without internet), and returns the resulting status.
    pub async fn check_for_updates(&self, channel: Option<&str>) -> Result<UpdateStatus, Error> {
        if let Some(channel) = channel {
            self.run(Command::new("/system/package/update/set").attr("channel", channel))
                .await?;
        }
        self.run(Command::new("/system/package/update/check-for-updates").flag("once"))
            .await?;
        self.update_status().await
    }

    /// `/system/package/update/download`: fetches the packages for the next reboot. Bounded
    /// by `timeout` rather than the default command timeout (downloads are slow).
    pub async fn download_updates(&self, timeout: Duration) -> Result<(), Error> {
        self.run_with_timeout(Command::new("/system/package/update/download"), timeout)
            .await
            .map(drop)
    }

    /// `/system/package/update/install`: downloads if needed and reboots into the new version
    /// (connection drops). Bounded by `timeout`.
    pub async fn install_updates(&self, timeout: Duration) -> Result<(), Error> {
        restarting(
            self.run_with_timeout(Command::new("/system/package/update/install"), timeout)
                .await,
        )
    }
}

/// Success for a command that restarts the router: `!done`, or the connection going away.
fn restarting(result: Result<Response, Error>) -> Result<(), Error> {
    match result {
        Ok(_) | Err(Error::ConnectionClosed { .. }) | Err(Error::Fatal { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

fn ret_text(response: &Response) -> Option<&str> {
    response.done.get_str("ret")
}

fn field(command: &str, source: FieldError) -> Error {
    Error::Field {
        command: command.to_owned(),
        source,
    }
}

fn unexpected(command: &str, detail: impl ToString) -> Error {
    Error::UnexpectedReply {
        command: command.to_owned(),
        detail: detail.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pairs: &[(&str, &str)]) -> Attrs {
        pairs.iter().copied().collect()
    }

    #[test]
    fn resources_from_the_ccr2004_mock() {
        // NAP mock values, RouterOS 7.4 (ROUTEROS-NOTES §5.2).
        let r = Resources::from_row(&row(&[
            ("uptime", "1w4d23h26m9s"),
            ("version", "7.4 (stable)"),
            ("factory-software", "7.0.4"),
            ("cpu", "ARM64"),
            ("cpu-count", "4"),
            ("cpu-load", "0"),
            ("free-memory", "3950641152"),
            ("total-memory", "4227858432"),
            ("free-hdd-space", "106233856"),
            ("total-hdd-space", "135266304"),
            ("architecture-name", "arm64"),
            ("board-name", "CCR2004-16G-2S+"),
            ("platform", "MikroTik"),
        ]))
        .unwrap();
        assert_eq!(r.version.major, 7);
        assert_eq!(
            r.uptime,
            Duration::from_secs(11 * 86_400 + 23 * 3600 + 26 * 60 + 9)
        );
        assert_eq!(r.free_memory, 3_950_641_152);
        assert_eq!(r.total_hdd_space, 135_266_304);
        assert_eq!(r.board_name.as_deref(), Some("CCR2004-16G-2S+"));
        assert_eq!(r.architecture_name.as_deref(), Some("arm64"));
        assert_eq!(r.cpu_count, Some(4));
    }

    #[test]
    fn missing_and_invalid_fields_are_named() {
        assert_eq!(
            Resources::from_row(&row(&[("version", "7.4")])),
            Err(FieldError::Missing { field: "uptime" })
        );
        let e = Interface::from_row(&row(&[(".id", "*1"), ("name", "e1"), ("rx-byte", "x")]))
            .unwrap_err();
        assert!(
            matches!(
                e,
                FieldError::Invalid {
                    field: "rx-byte",
                    ..
                }
            ),
            "{e:?}"
        );
        let e = Interface::from_row(&row(&[(".id", "1"), ("name", "e1")])).unwrap_err();
        assert!(
            matches!(e, FieldError::Invalid { field: ".id", .. }),
            "{e:?}"
        );
    }

    #[test]
    fn interface_counters_and_flags() {
        let i = Interface::from_row(&row(&[
            (".id", "*2"),
            ("name", "ether1"),
            ("type", "ether"),
            ("running", "true"),
            ("disabled", "false"),
            ("rx-byte", "123"),
            ("tx-byte", "456"),
            ("rx-error", "0"),
            ("tx-error", "1"),
        ]))
        .unwrap();
        assert_eq!(i.id, ItemId(2));
        assert!(i.running && !i.disabled);
        assert_eq!(
            (i.rx_byte, i.tx_byte, i.rx_error, i.tx_error),
            (Some(123), Some(456), Some(0), Some(1))
        );
        // Old versions say yes/no.
        let i =
            Interface::from_row(&row(&[(".id", "*3"), ("name", "x"), ("running", "no")])).unwrap();
        assert!(!i.running);
        assert_eq!(i.rx_byte, None);
    }

    #[test]
    fn routerboard_upgrade_pending() {
        let rb = Routerboard::from_row(&row(&[
            ("routerboard", "true"),
            ("model", "1200"),
            ("current-firmware", "7.1beta3"),
            ("upgrade-firmware", "7.2"),
        ]))
        .unwrap();
        assert!(rb.routerboard && rb.upgrade_pending());
        let x86 = Routerboard::from_row(&row(&[("routerboard", "false")])).unwrap();
        assert!(!x86.routerboard && !x86.upgrade_pending());
    }

    #[test]
    fn schedule_and_others() {
        let s = Schedule::from_row(&row(&[
            (".id", "*A"),
            ("name", "nl-rollback-42"),
            ("on-event", "/system backup load name=snap"),
            ("interval", "1d"),
            ("start-time", "startup"),
            ("disabled", "false"),
            ("run-count", "3"),
        ]))
        .unwrap();
        assert_eq!(s.interval, Duration::from_secs(86_400));
        assert_eq!(s.run_count, Some(3));
        let u = User::from_row(&row(&[
            (".id", "*1"),
            ("name", "admin"),
            ("group", "full"),
            ("address", ""),
        ]))
        .unwrap();
        assert_eq!(u.address, None);
        let p = Package::from_row(&row(&[
            (".id", "*5"),
            ("name", "routeros"),
            ("version", "7.4"),
            ("scheduled", ""),
        ]))
        .unwrap();
        assert_eq!(p.scheduled, None);
        let st = UpdateStatus::from_row(&row(&[
            ("channel", "stable"),
            ("installed-version", "7.5"),
            ("latest-version", ""),
        ]));
        assert_eq!(st.latest_version, None);
    }

    #[test]
    fn restarting_accepts_a_dropped_connection() {
        assert!(restarting(Err(Error::ConnectionClosed { source: None })).is_ok());
        assert!(restarting(Ok(Response::default())).is_ok());
        assert!(matches!(
            restarting(Err(Error::Timeout {
                command: "/system/reboot".into(),
                after: Duration::from_secs(1)
            })),
            Err(Error::Timeout { .. })
        ));
    }
}
