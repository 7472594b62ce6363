//! Device access shared by the push and firmware steps: connecting, the device's own clock
//! ([`DeviceTime`]), the capability/device-mode probe, and small file and scheduler lookups.

use std::fmt;
use std::time::Duration;

use routeros::{Client, Command, Config, Query};
use serde::{Deserialize, Serialize};
use time::{Date, Month, PrimitiveDateTime, Time};

use crate::error::{NetopsError, Result};

/// Connects and logs in; errors name the step as `connect`.
///
/// Every device session of a step starts here, so this is where the step's lease is checked:
/// once the worker's local lease deadline has passed (its heartbeats failed; another worker
/// may be running the same step: see `netledger_engine::lease`), no connection is made and no
/// command is sent; the step fails retryably with [`NetopsError::LeaseLapsed`]. (A session
/// opened before the deadline sends nothing after it either: the worker drops the step's
/// future at the deadline.)
pub async fn connect(config: &Config) -> Result<Client> {
    if netledger_engine::lease::lapsed() {
        return Err(NetopsError::LeaseLapsed {
            deadline: netledger_engine::lease::deadline()
                .map(|d| d.to_string())
                .unwrap_or_default(),
        });
    }
    Client::connect(config)
        .await
        .map_err(|e| NetopsError::device("connect", e))
}

/// Keeps connecting until it succeeds, a non-retryable error occurs (a rejected login), or
/// `within` has passed. Returns the last error as [`NetopsError::NotBack`] on timeout.
pub(crate) async fn connect_within(
    config: &Config,
    within: Duration,
    every: Duration,
) -> Result<Client> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match connect(config).await {
            Ok(c) => return Ok(c),
            Err(e) if !e.is_retryable() || matches!(e, NetopsError::LeaseLapsed { .. }) => {
                return Err(e);
            }
            Err(e) => {
                if tokio::time::Instant::now() + every > deadline {
                    return Err(NetopsError::NotBack {
                        waited: within,
                        last_error: error_chain(&e),
                    });
                }
                tokio::time::sleep(every).await;
            }
        }
    }
}

/// `error: source: source ...` on one line.
pub(crate) use netledger_domain::errors::error_chain;

/// How the device writes dates: ISO `2024-03-02` (7.10+) or `mar/02/2024` (older).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DateStyle {
    /// `yyyy-mm-dd`.
    Iso,
    /// `mmm/dd/yyyy`.
    Legacy,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

/// A wall-clock reading of the device's own clock, in its local time zone (the zone its
/// scheduler uses). Serialised as `yyyy-mm-dd hh:mm:ss`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceTime(PrimitiveDateTime);

impl DeviceTime {
    /// Parses a device date (`2024-03-02` or `mar/02/2024`, any case) and time (`hh:mm:ss`).
    pub fn parse(date: &str, time_of_day: &str) -> Option<(DeviceTime, DateStyle)> {
        let (d, style) = parse_date(date.trim())?;
        let t = parse_time(time_of_day.trim())?;
        Some((DeviceTime(PrimitiveDateTime::new(d, t)), style))
    }

    /// Date in the device's style.
    pub fn date_text(&self, style: DateStyle) -> String {
        let d = self.0.date();
        match style {
            DateStyle::Iso => format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()),
            DateStyle::Legacy => {
                let m = MONTHS
                    .get(usize::from(u8::from(d.month())).saturating_sub(1))
                    .copied()
                    .unwrap_or("jan");
                format!("{m}/{:02}/{:04}", d.day(), d.year())
            }
        }
    }

    /// Time of day `hh:mm:ss`.
    pub fn time_text(&self) -> String {
        let t = self.0.time();
        format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
    }

    /// This time plus `d`, rounded up to a whole second.
    pub fn plus(&self, d: Duration) -> DeviceTime {
        let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
        let secs = i64::try_from(secs).unwrap_or(i64::MAX / 2);
        DeviceTime(self.0.saturating_add(time::Duration::seconds(secs)))
    }

    /// This time minus `d` (whole seconds).
    pub fn minus(&self, d: Duration) -> DeviceTime {
        let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2);
        DeviceTime(self.0.saturating_sub(time::Duration::seconds(secs)))
    }

    /// Whole seconds from `earlier` to `self` (negative if `earlier` is later).
    pub fn seconds_since(&self, earlier: &DeviceTime) -> i64 {
        (self.0 - earlier.0).whole_seconds()
    }
}

impl fmt::Display for DeviceTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.date_text(DateStyle::Iso), self.time_text())
    }
}

impl Serialize for DeviceTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for DeviceTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let (date, t) = s
            .split_once(' ')
            .ok_or_else(|| serde::de::Error::custom(format!("bad device time {s:?}")))?;
        DeviceTime::parse(date, t)
            .map(|(t, _)| t)
            .ok_or_else(|| serde::de::Error::custom(format!("bad device time {s:?}")))
    }
}

fn parse_date(s: &str) -> Option<(Date, DateStyle)> {
    let (y, m, d, style) = if let Some((a, rest)) = s.split_once('-') {
        let (b, c) = rest.split_once('-')?;
        (
            a.parse::<i32>().ok()?,
            b.parse::<u8>().ok()?,
            c.parse::<u8>().ok()?,
            DateStyle::Iso,
        )
    } else {
        let mut it = s.split('/');
        let mon = it.next()?.to_ascii_lowercase();
        let m = u8::try_from(MONTHS.iter().position(|x| *x == mon)? + 1).ok()?;
        let d = it.next()?.parse().ok()?;
        let y = it.next()?.parse().ok()?;
        if it.next().is_some() {
            return None;
        }
        (y, m, d, DateStyle::Legacy)
    };
    let date = Date::from_calendar_date(y, Month::try_from(m).ok()?, d).ok()?;
    Some((date, style))
}

fn parse_time(s: &str) -> Option<Time> {
    let mut it = s.split(':');
    let h = it.next()?.parse().ok()?;
    let m = it.next()?.parse().ok()?;
    let sec = it.next()?.parse().ok()?;
    if it.next().is_some() {
        return None;
    }
    Time::from_hms(h, m, sec).ok()
}

/// Reads `/system/clock`: the device's local time and its date style.
pub async fn device_clock(client: &Client) -> Result<(DeviceTime, DateStyle)> {
    const PATH: &str = "/system/clock/print";
    let r = client
        .run(Command::new(PATH))
        .await
        .map_err(|e| NetopsError::device(PATH, e))?;
    let row = r.rows.first().ok_or_else(|| NetopsError::Unexpected {
        detail: format!("{PATH} returned no row"),
    })?;
    let date = row.get_str("date").unwrap_or("");
    let t = row.get_str("time").unwrap_or("");
    DeviceTime::parse(date, t).ok_or_else(|| NetopsError::Unexpected {
        detail: format!("{PATH}: cannot read date {date:?} time {t:?}"),
    })
}

/// When the device last booted, by its own clock: now minus uptime.
pub async fn device_boot_time(client: &Client) -> Result<(DeviceTime, DeviceTime)> {
    let (now, _) = device_clock(client).await?;
    let res = client
        .resources()
        .await
        .map_err(|e| NetopsError::device("/system/resource/print", e))?;
    Ok((now.minus(res.uptime), now))
}

/// What `/system/device-mode` allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceMode {
    /// False when the menu does not exist (RouterOS before device-mode): nothing restricted.
    pub present: bool,
    /// `mode` (`advanced`, `home`, `basic`, `rose`, or `enterprise` on older 7.x).
    pub mode: Option<String>,
    /// Scheduler actions allowed.
    pub scheduler: bool,
    /// `/tool/fetch` allowed.
    pub fetch: bool,
}

/// What a device is and can do, read before a push or upgrade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceProbe {
    /// `/system/identity` name.
    pub identity: String,
    /// RouterOS version (`7.16.2`).
    pub version: String,
    /// `architecture-name`.
    pub architecture: Option<String>,
    /// `board-name`.
    pub board: Option<String>,
    /// device-mode restrictions.
    pub device_mode: DeviceMode,
    /// `/file add` (7.9+): a change file can be uploaded over the API.
    pub can_upload_files: bool,
    /// `/file/read` (7.13+): binary files (backups) can be read back.
    pub can_read_files: bool,
    /// `/import dry-run` (7.16+, per third-party notes).
    pub has_import_dry_run: bool,
    /// The device's clock when probed.
    pub clock: DeviceTime,
    /// How the device writes dates.
    pub date_style: DateStyle,
}

/// Reads identity, version, architecture, device-mode and clock.
pub async fn probe(client: &Client) -> Result<DeviceProbe> {
    let res = client
        .resources()
        .await
        .map_err(|e| NetopsError::device("/system/resource/print", e))?;
    let identity = client
        .identity()
        .await
        .map_err(|e| NetopsError::device("/system/identity/print", e))?;
    let device_mode = device_mode(client).await?;
    let (clock, date_style) = device_clock(client).await?;
    let v = &res.version;
    Ok(DeviceProbe {
        identity,
        version: version_text(v),
        architecture: res.architecture_name.clone(),
        board: res.board_name.clone(),
        device_mode,
        can_upload_files: v.at_least(7, 9),
        can_read_files: v.at_least(7, 13),
        has_import_dry_run: v.at_least(7, 16),
        clock,
        date_style,
    })
}

/// `7.16.2` without the channel.
pub(crate) fn version_text(v: &routeros::Version) -> String {
    let mut s = format!("{}.{}", v.major, v.minor);
    if let Some(p) = v.patch {
        s.push_str(&format!(".{p}"));
    }
    s.push_str(&v.pre);
    s
}

/// `(major, minor, patch)` for ordering.
pub(crate) fn version_key(v: &routeros::Version) -> (u32, u32, u32) {
    (v.major, v.minor, v.patch.unwrap_or(0))
}

/// `/system/device-mode/print`; a missing menu means no restrictions.
pub async fn device_mode(client: &Client) -> Result<DeviceMode> {
    const PATH: &str = "/system/device-mode/print";
    match client.run(Command::new(PATH)).await {
        Ok(r) => {
            let row = r.rows.first();
            let flag = |k: &str| {
                row.and_then(|r| r.get_str(k))
                    .is_none_or(|v| matches!(v, "true" | "yes"))
            };
            Ok(DeviceMode {
                present: true,
                mode: row.and_then(|r| r.get_str("mode")).map(str::to_string),
                scheduler: flag("scheduler"),
                fetch: flag("fetch"),
            })
        }
        Err(routeros::Error::Trap { trap, .. }) if trap.message.starts_with("no such command") => {
            Ok(DeviceMode {
                present: false,
                mode: None,
                scheduler: true,
                fetch: true,
            })
        }
        Err(e) => Err(NetopsError::device(PATH, e)),
    }
}

/// Where files that must survive a reboot go: `flash/` on devices that have that directory
/// (elsewhere files outside it live in RAM; ROUTEROS-NOTES §5.9), else the root.
pub async fn storage_prefix(client: &Client) -> Result<String> {
    match client.file("flash").await {
        Ok(Some(f)) if f.kind.as_deref() == Some("directory") => Ok("flash/".into()),
        Ok(_) => Ok(String::new()),
        Err(e) => Err(NetopsError::device("/file/print", e)),
    }
}

/// A file's row by exact name.
pub(crate) async fn file_row(client: &Client, name: &str) -> Result<Option<routeros::Attrs>> {
    const PATH: &str = "/file/print";
    let r = client
        .run(Command::new(PATH).query(Query::eq("name", name)))
        .await
        .map_err(|e| NetopsError::device(PATH, e))?;
    Ok(r.rows.into_iter().next())
}

/// Removes a file by name if it exists; returns whether it was there.
pub(crate) async fn remove_file_named(client: &Client, name: &str) -> Result<bool> {
    match client.file(name).await {
        Ok(Some(f)) => client
            .remove_file(f.id)
            .await
            .map(|()| true)
            .map_err(|e| NetopsError::device("/file/remove", e)),
        Ok(None) => Ok(false),
        Err(e) => Err(NetopsError::device("/file/print", e)),
    }
}

/// Polls for a file to appear (RouterOS writes some files asynchronously).
pub(crate) async fn wait_for_file(
    client: &Client,
    name: &str,
    within: Duration,
) -> Result<Option<routeros::menus::File>> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let f = client
            .file(name)
            .await
            .map_err(|e| NetopsError::device("/file/print", e))?;
        if f.is_some() || tokio::time::Instant::now() >= deadline {
            return Ok(f);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The scheduler entry with this exact name.
pub async fn scheduler_entry(
    client: &Client,
    name: &str,
) -> Result<Option<routeros::menus::Schedule>> {
    const PATH: &str = "/system/scheduler/print";
    let r = client
        .run(Command::new(PATH).query(Query::eq("name", name)))
        .await
        .map_err(|e| NetopsError::device(PATH, e))?;
    r.rows
        .first()
        .map(|row| {
            routeros::menus::Schedule::from_row(row).map_err(|source| {
                NetopsError::device(
                    PATH,
                    routeros::Error::Field {
                        command: PATH.into(),
                        source,
                    },
                )
            })
        })
        .transpose()
}

/// Prefix of every Netledger rollback timer (`netledger-rollback-<change id>`).
pub const ROLLBACK_TIMER_PREFIX: &str = "netledger-rollback-";

/// Names of all Netledger rollback timers on the device (any change's), sorted.
pub async fn rollback_timers(client: &Client) -> Result<Vec<String>> {
    const PATH: &str = "/system/scheduler/print";
    let r = client
        .run(Command::new(PATH).attr(".proplist", "name"))
        .await
        .map_err(|e| NetopsError::device(PATH, e))?;
    let mut names: Vec<String> = r
        .rows
        .iter()
        .filter_map(|row| row.get_str("name"))
        .filter(|n| n.starts_with(ROLLBACK_TIMER_PREFIX))
        .map(str::to_string)
        .collect();
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_times() {
        let (t, s) = DeviceTime::parse("2024-12-31", "23:59:58").unwrap();
        assert_eq!(s, DateStyle::Iso);
        let later = t.plus(Duration::from_millis(2500));
        assert_eq!(later.to_string(), "2025-01-01 00:00:01");
        assert_eq!(later.date_text(DateStyle::Legacy), "jan/01/2025");
        assert_eq!(later.seconds_since(&t), 3);
        let (u, s) = DeviceTime::parse("Dec/31/2024", "23:59:58").unwrap();
        assert_eq!((u, s), (t, DateStyle::Legacy));
        assert!(DeviceTime::parse("2024-02-30", "00:00:00").is_none());
        assert!(DeviceTime::parse("2024-02-03", "24:00:00").is_none());
        let json = format!("\"{t}\"");
        let back: DeviceTime = serde_json_like(&json);
        assert_eq!(back, t);
    }

    /// Issue #15 item 4: once the worker's local lease deadline has passed, no device session
    /// starts (nothing is sent), and the step fails retryably.
    #[tokio::test]
    async fn no_device_session_starts_after_the_lease_deadline() {
        // A listener that records whether anyone connected.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let clock: std::sync::Arc<dyn netledger_domain::clock::Clock> = std::sync::Arc::new(
            netledger_domain::clock::ManualClock::new(time::OffsetDateTime::UNIX_EPOCH),
        );
        let passed = clock.now() - time::Duration::seconds(1);
        let config = Config::new(addr.ip().to_string(), "u", routeros::Password::new("p"))
            .with_port(addr.port());
        let r = netledger_engine::lease::with_deadline(clock, passed, connect(&config)).await;
        match r {
            Err(e @ NetopsError::LeaseLapsed { .. }) => assert!(e.is_retryable()),
            other => panic!(
                "connected after the lease deadline: {:?}",
                other.map(|_| ())
            ),
        }
        let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
        assert!(accepted.is_err(), "a connection was opened");
    }

    fn serde_json_like(s: &str) -> DeviceTime {
        // Deserialize through a string deserializer without pulling serde_json into the lib.
        let inner = s.trim_matches('"');
        let d: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
            serde::de::IntoDeserializer::into_deserializer(inner);
        DeviceTime::deserialize(d).unwrap()
    }
}
