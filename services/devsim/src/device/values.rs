//! Value formats as RouterOS prints and accepts them: booleans on the wire vs in the
//! configuration, durations (`1w2d3h4m5s`), dates by version (ROUTEROS-NOTES §4.3), and the
//! seeded mixer behind serials, MACs, counters and load figures.

use std::time::Duration;

use crate::version::RosVersion;

/// Value as the API shows it (booleans `true`/`false`).
pub(super) fn api_value(v: &str) -> String {
    match v {
        "yes" => "true".into(),
        "no" => "false".into(),
        o => o.into(),
    }
}

/// Value as the configuration stores it (`yes`/`no`).
pub(super) fn cfg_value(v: &str) -> String {
    match v {
        "true" => "yes".into(),
        "false" => "no".into(),
        o => o.into(),
    }
}

/// Duration in RouterOS letter form (`1w2d3h4m5s`).
pub(crate) fn fmt_duration(d: Duration) -> String {
    let mut s = d.as_secs();
    let mut out = String::new();
    for (unit, len) in [("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60)] {
        if s >= len {
            out.push_str(&format!("{}{unit}", s / len));
            s %= len;
        }
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// Parses `1d`, `5m30s`, `00:05:00`, `1d 00:00:00`, `0s`.
pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.contains(':') {
        let (days, hms) = match s.split_once(' ') {
            Some((d, r)) => (parse_duration(d)?.as_secs(), r),
            None => (0, s),
        };
        let parts: Vec<u64> = hms
            .split(':')
            .map(|p| p.parse().ok())
            .collect::<Option<_>>()?;
        let secs = match parts.as_slice() {
            [h, m, sec] => h * 3600 + m * 60 + sec,
            [m, sec] => m * 60 + sec,
            _ => return None,
        };
        return Some(Duration::from_secs(days + secs));
    }
    let mut total = 0u64;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().ok()?;
        num.clear();
        let mult = match c {
            'w' => 604_800,
            'd' => 86_400,
            'h' => 3_600,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                0
            }
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        total += n * mult;
    }
    if !num.is_empty() {
        total += num.parse::<u64>().ok()?;
    }
    Some(Duration::from_secs(total))
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

fn civil(t: Duration) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(i64::try_from(t.as_secs()).unwrap_or(0))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// `(date, time)` as the version prints them.
pub(crate) fn fmt_date_time(t: Duration, v: RosVersion) -> (String, String) {
    let d = civil(t);
    let month = MONTHS
        .get(usize::from(u8::from(d.month())) - 1)
        .copied()
        .unwrap_or("jan");
    let date = if v.iso_dates() {
        format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
    } else {
        format!("{month}/{:02}/{:04}", d.day(), d.year())
    };
    (
        date,
        format!("{:02}:{:02}:{:02}", d.hour(), d.minute(), d.second()),
    )
}

/// Parses `2024-01-31`, `jan/31/2024` (any case) to days since the epoch.
pub(crate) fn parse_date(s: &str) -> Option<Duration> {
    let (y, m, d) = if let Some((a, rest)) = s.split_once('-') {
        let (b, c) = rest.split_once('-')?;
        (
            a.parse::<i32>().ok()?,
            b.parse::<u8>().ok()?,
            c.parse::<u8>().ok()?,
        )
    } else {
        let mut it = s.split('/');
        let mon = it.next()?.to_ascii_lowercase();
        let m = MONTHS.iter().position(|x| *x == mon)? as u8 + 1;
        let d = it.next()?.parse().ok()?;
        let y = it.next()?.parse().ok()?;
        (y, m, d)
    };
    let month = time::Month::try_from(m).ok()?;
    let date = time::Date::from_calendar_date(y, month, d).ok()?;
    let secs = date.midnight().assume_utc().unix_timestamp();
    Some(Duration::from_secs(u64::try_from(secs).ok()?))
}

/// Deterministic pseudo-random number from a seed and inputs.
pub(crate) fn mix(seed: u64, a: u64, b: u64) -> u64 {
    let mut x =
        seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    x ^= x >> 33;
    x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^= x >> 33;
    x
}

/// Date and time parts of a default backup name (`20240131`, `1205`). The template
/// `[identity]-[date]-[time].backup` is sourced (MT-BKP, ROUTEROS-NOTES §5.10); the digit
/// layout (`YYYYMMDD-HHMM`, the same on v6 and v7) is unsourced: it is what commonly seen
/// RouterOS backup file names look like.
pub(crate) fn backup_stamp(t: Duration) -> String {
    let d = civil(t);
    format!(
        "{:04}{:02}{:02}-{:02}{:02}",
        d.year(),
        u8::from(d.month()),
        d.day(),
        d.hour(),
        d.minute()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1d"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("5m30s"), Some(Duration::from_secs(330)));
        assert_eq!(parse_duration("00:05:00"), Some(Duration::from_secs(300)));
        assert_eq!(
            parse_duration("1d 00:00:01"),
            Some(Duration::from_secs(86_401))
        );
        assert_eq!(parse_duration("100ms"), Some(Duration::from_secs(0)));
        assert_eq!(fmt_duration(Duration::from_secs(695_220)), "1w1d1h7m");
        assert_eq!(fmt_duration(Duration::from_secs(0)), "0s");
    }

    #[test]
    fn dates() {
        let t = parse_date("2024-03-02").unwrap();
        assert_eq!(parse_date("mar/02/2024"), Some(t));
        assert_eq!(fmt_date_time(t, RosVersion::new(7, 16, 0)).0, "2024-03-02");
        assert_eq!(fmt_date_time(t, RosVersion::new(6, 49, 0)).0, "mar/02/2024");
        assert_eq!(
            backup_stamp(t + Duration::from_secs(3_723)),
            "20240302-0102"
        );
    }
}
