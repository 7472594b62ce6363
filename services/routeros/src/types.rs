//! Value formats RouterOS uses on the wire (ROUTEROS-NOTES §4): item ids (`*1A`), durations
//! (`1w2d3h4m5s`, `3d02:04:05`), booleans (`true`/`false`, `yes`/`no`) and version strings
//! (`7.4 (stable)`, `7.10rc1`). Pure parsing, no IO.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A value that is not in the expected RouterOS format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid {expected}")]
pub struct ValueError {
    /// What was expected (`"item id"`, `"duration"`, ...).
    pub expected: &'static str,
    /// The offending text (truncated to 64 characters).
    pub value: String,
}

impl ValueError {
    fn new(expected: &'static str, value: &str) -> Self {
        Self {
            expected,
            value: value.chars().take(64).collect(),
        }
    }
}

/// An internal item id: `*` followed by up to eight hex digits (`*1`, `*1A`, `*FFFFFFFE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemId(pub u32);

impl FromStr for ItemId {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ValueError::new("item id", s);
        let hex = s.strip_prefix('*').ok_or_else(err)?;
        if hex.is_empty() || hex.len() > 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err());
        }
        u32::from_str_radix(hex, 16).map(ItemId).map_err(|_| err())
    }
}

impl fmt::Display for ItemId {
    /// Uppercase hex, as RouterOS prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "*{:X}", self.0)
    }
}

/// Parses `true`/`false` (replies) and `yes`/`no` (requests, CLI, old versions).
pub fn parse_bool(s: &str) -> Result<bool, ValueError> {
    match s {
        "true" | "yes" => Ok(true),
        "false" | "no" => Ok(false),
        _ => Err(ValueError::new("boolean", s)),
    }
}

/// Parses a RouterOS duration.
///
/// Accepted: the unit form `1w2d3h4m5s` (units `w d h m s ms us`, any subset, in order or
/// not), the clock form `hh:mm:ss` with optional fractional seconds, and a unit prefix before
/// the clock form with or without a space (`3d02:04:05`, `1d 00:00:00`, `1w2d03:00:00`).
pub fn parse_duration(s: &str) -> Result<Duration, ValueError> {
    let err = || ValueError::new("duration", s);
    let t = s.trim();
    if t.is_empty() {
        return Err(err());
    }
    let Some(colon) = t.find(':') else {
        return units(t).ok_or_else(err);
    };
    // The clock part starts after the last non-digit before the first colon.
    let clock_start = t
        .get(..colon)
        .and_then(|head| head.rfind(|c: char| !c.is_ascii_digit()).map(|i| i + 1))
        .unwrap_or(0);
    let (head, clock_text) = t.split_at(clock_start);
    let head = head.trim_end();
    let prefix = if head.is_empty() {
        Duration::ZERO
    } else {
        units(head).ok_or_else(err)?
    };
    prefix
        .checked_add(clock(clock_text).ok_or_else(err)?)
        .ok_or_else(err)
}

/// `1w2d3h4m5s500ms`.
fn units(s: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest.get(..digits)?.parse().ok()?;
        rest = rest.get(digits..)?;
        let letters = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = rest.get(..letters)?;
        rest = rest.get(letters..)?;
        let part = match unit {
            "w" => Duration::from_secs(n.checked_mul(7 * 86_400)?),
            "d" => Duration::from_secs(n.checked_mul(86_400)?),
            "h" => Duration::from_secs(n.checked_mul(3_600)?),
            "m" => Duration::from_secs(n.checked_mul(60)?),
            "s" => Duration::from_secs(n),
            "ms" => Duration::from_millis(n),
            "us" => Duration::from_micros(n),
            _ => return None,
        };
        total = total.checked_add(part)?;
    }
    Some(total)
}

/// `hh:mm:ss[.fraction]`; minutes and seconds below 60.
fn clock(s: &str) -> Option<Duration> {
    let mut parts = s.split(':');
    let (h, m, sec) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let num = |p: &str| -> Option<u64> {
        (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .then(|| p.parse().ok())
            .flatten()
    };
    let (whole, frac) = match sec.split_once('.') {
        None => (sec, None),
        Some((w, f)) => (w, Some(f)),
    };
    let (h, m, whole) = (num(h)?, num(m)?, num(whole)?);
    if m >= 60 || whole >= 60 {
        return None;
    }
    let nanos = match frac {
        None => 0,
        Some(f) => {
            if f.is_empty() || f.len() > 9 || !f.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let scale = 10u32.pow(9 - f.len() as u32);
            f.parse::<u32>().ok()? * scale
        }
    };
    let secs = h.checked_mul(3_600)?.checked_add(m * 60 + whole)?;
    Some(Duration::new(secs, nanos))
}

/// Formats a duration in the unit form RouterOS prints (`1w2d3h4m5s`, `0s`, `1s500ms`);
/// sub-millisecond parts are written in `us`, nanoseconds below a microsecond are dropped.
pub fn format_duration(d: Duration) -> String {
    let mut out = String::new();
    let mut secs = d.as_secs();
    for (unit, size) in [
        ("w", 604_800),
        ("d", 86_400),
        ("h", 3_600),
        ("m", 60),
        ("s", 1),
    ] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    let micros = d.subsec_micros();
    if micros >= 1000 {
        out.push_str(&format!("{}ms", micros / 1000));
    }
    if !micros.is_multiple_of(1000) {
        out.push_str(&format!("{}us", micros % 1000));
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

/// A RouterOS version as `/system/resource` reports it, e.g. `7.4 (stable)`, `6.49.7
/// (long-term)`, `7.10rc1`, `7.1beta3`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version {
    /// Major (6, 7).
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Patch, when present (`6.49.7`).
    pub patch: Option<u32>,
    /// Pre-release suffix (`rc1`, `beta3`), empty for releases.
    pub pre: String,
    /// Release channel in parentheses (`stable`, `long-term`, `testing`, `development`).
    pub channel: Option<String>,
}

impl Version {
    /// True when this version is at least `major.minor`.
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }
}

impl FromStr for Version {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ValueError::new("RouterOS version", s);
        let t = s.trim();
        let (number, channel) = match t.split_once(char::is_whitespace) {
            None => (t, None),
            Some((n, rest)) => {
                let ch = rest
                    .trim()
                    .strip_prefix('(')
                    .and_then(|r| r.strip_suffix(')'))
                    .filter(|c| !c.is_empty())
                    .ok_or_else(err)?;
                (n, Some(ch.to_owned()))
            }
        };
        let split = number
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(number.len());
        let (digits, pre) = number.split_at(split);
        let mut nums = digits.split('.').map(|p| p.parse::<u32>().ok());
        let major = nums.next().flatten().ok_or_else(err)?;
        let minor = nums.next().flatten().ok_or_else(err)?;
        let patch = match nums.next() {
            None => None,
            Some(p) => Some(p.ok_or_else(err)?),
        };
        if nums.next().is_some() || !pre.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(err());
        }
        Ok(Version {
            major,
            minor,
            patch,
            pre: pre.to_owned(),
            channel,
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)?;
        if let Some(p) = self.patch {
            write!(f, ".{p}")?;
        }
        f.write_str(&self.pre)?;
        if let Some(c) = &self.channel {
            write!(f, " ({c})")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn item_ids() {
        assert_eq!("*1A".parse(), Ok(ItemId(0x1A)));
        assert_eq!("*1a".parse(), Ok(ItemId(0x1A)));
        assert_eq!("*FFFFFFFE".parse(), Ok(ItemId(0xFFFF_FFFE)));
        assert_eq!(ItemId(0x4F2).to_string(), "*4F2");
        for bad in ["1A", "*", "*G", "*123456789", "* 1", "*+1", "ether1"] {
            assert!(bad.parse::<ItemId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn unit_durations() {
        assert_eq!(
            parse_duration("1w2d3h4m5s"),
            Ok(secs(604_800 + 2 * 86_400 + 3 * 3600 + 4 * 60 + 5))
        );
        assert_eq!(
            parse_duration("1w4d23h26m9s"),
            Ok(secs(11 * 86_400 + 23 * 3600 + 26 * 60 + 9))
        );
        assert_eq!(parse_duration("1m30s"), Ok(secs(90)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("1d"), Ok(secs(86_400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1s250ms"), Ok(Duration::from_millis(1250)));
        assert_eq!(parse_duration("10us"), Ok(Duration::from_micros(10)));
    }

    #[test]
    fn clock_durations() {
        assert_eq!(
            parse_duration("3d02:04:05"),
            Ok(secs(3 * 86_400 + 2 * 3600 + 4 * 60 + 5))
        );
        assert_eq!(parse_duration("01:22:53"), Ok(secs(3600 + 22 * 60 + 53)));
        assert_eq!(parse_duration("1d 00:00:00"), Ok(secs(86_400)));
        assert_eq!(
            parse_duration("1w2d03:00:00"),
            Ok(secs(9 * 86_400 + 3 * 3600))
        );
        assert_eq!(
            parse_duration("00:00:01.5"),
            Ok(Duration::from_millis(1500))
        );
        assert_eq!(parse_duration("100:00:00"), Ok(secs(360_000)));
    }

    #[test]
    fn bad_durations() {
        for bad in [
            "",
            " ",
            "s",
            "1x",
            "1",
            "5m5",
            "1:2",
            "00:60:00",
            "00:00:60",
            "1d:00:00",
            "a1s",
            "1s 2s",
            "00:00:00.",
            "00:00:00.1234567891",
            "99999999999999999999w",
            "40000000000000w",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn durations_format_in_unit_form() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(secs(86_400)), "1d");
        assert_eq!(format_duration(secs(90)), "1m30s");
        assert_eq!(
            format_duration(secs(604_800 + 2 * 86_400 + 3 * 3600 + 4 * 60 + 5)),
            "1w2d3h4m5s"
        );
        assert_eq!(
            format_duration(Duration::from_micros(1_500_250)),
            "1s500ms250us"
        );
    }

    #[test]
    fn booleans() {
        assert_eq!(parse_bool("true"), Ok(true));
        assert_eq!(parse_bool("yes"), Ok(true));
        assert_eq!(parse_bool("false"), Ok(false));
        assert_eq!(parse_bool("no"), Ok(false));
        assert!(parse_bool("TRUE").is_err());
        assert!(parse_bool("").is_err());
    }

    #[test]
    fn versions() {
        let v: Version = "7.4 (stable)".parse().unwrap();
        assert_eq!((v.major, v.minor, v.patch), (7, 4, None));
        assert_eq!(v.channel.as_deref(), Some("stable"));
        let v: Version = "6.49.7 (long-term)".parse().unwrap();
        assert_eq!((v.major, v.minor, v.patch), (6, 49, Some(7)));
        assert!(v.at_least(6, 43) && !v.at_least(7, 0));
        let v: Version = "7.10rc1".parse().unwrap();
        assert_eq!(
            (v.minor, v.pre.as_str(), v.channel.as_deref()),
            (10, "rc1", None)
        );
        assert!(v.at_least(7, 10) && !v.at_least(7, 13));
        assert_eq!(v.to_string(), "7.10rc1");
        assert_eq!(
            "7.1beta3 (development)"
                .parse::<Version>()
                .unwrap()
                .to_string(),
            "7.1beta3 (development)"
        );
        for bad in ["", "7", "x.1", "7.4 stable", "7.4 ()", "7.4.1.2", "7.4-rc1"] {
            assert!(bad.parse::<Version>().is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn unit_form_round_trips(s in 0u64..10_000_000_000, us in 0u32..1_000_000) {
            let d = Duration::new(s, us * 1000);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }

        #[test]
        fn duration_parser_never_panics(s in "[0-9wdhmsu: .]{0,24}") {
            let _ = parse_duration(&s);
        }

        #[test]
        fn item_ids_round_trip(n in any::<u32>()) {
            prop_assert_eq!(ItemId(n).to_string().parse(), Ok(ItemId(n)));
        }
    }
}
