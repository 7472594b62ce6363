//! RouterOS version numbers and the behaviour that depends on them.

use std::fmt;
use std::str::FromStr;

/// A RouterOS version such as `7.16.2` or `6.49.7` (suffixes like `rc1` are dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RosVersion {
    /// Major (6 or 7).
    pub major: u16,
    /// Minor.
    pub minor: u16,
    /// Patch (0 when absent).
    pub patch: u16,
}

impl RosVersion {
    /// A version.
    pub const fn new(major: u16, minor: u16, patch: u16) -> RosVersion {
        RosVersion {
            major,
            minor,
            patch,
        }
    }

    /// `!empty` replies exist from 7.18 (ROUTEROS-NOTES §1.5).
    pub fn has_empty_reply(self) -> bool {
        self >= RosVersion::new(7, 18, 0)
    }

    /// `/import dry-run` from 7.16 (third-party notes only).
    pub fn has_import_dry_run(self) -> bool {
        self >= RosVersion::new(7, 16, 0)
    }

    /// `/file/read` from 7.13.
    pub fn has_file_read(self) -> bool {
        self >= RosVersion::new(7, 13, 0)
    }

    /// ISO dates from 7.10, `mmm/dd/yyyy` before.
    pub fn iso_dates(self) -> bool {
        self >= RosVersion::new(7, 10, 0)
    }

    /// Legacy challenge login before 6.43.
    pub fn legacy_login(self) -> bool {
        self < RosVersion::new(6, 43, 0)
    }

    /// Largest `/file` `contents` readable through print (4 KB on v6, 60 KB on v7).
    pub fn file_contents_limit(self) -> usize {
        if self.major >= 7 { 61_440 } else { 4_096 }
    }
}

impl fmt::Display for RosVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.patch == 0 {
            write!(f, "{}.{}", self.major, self.minor)
        } else {
            write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
        }
    }
}

/// Not a RouterOS version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid RouterOS version {0:?}")]
pub struct BadVersion(pub String);

impl FromStr for RosVersion {
    type Err = BadVersion;
    fn from_str(s: &str) -> Result<RosVersion, BadVersion> {
        let bad = || BadVersion(s.to_string());
        let mut it = s.trim().split('.');
        let num = |p: Option<&str>| -> Result<u16, BadVersion> {
            let p = p.ok_or_else(bad)?;
            let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().map_err(|_| bad())
        };
        let major = num(it.next())?;
        let minor = num(it.next())?;
        let patch = match it.next() {
            Some(p) => num(Some(p))?,
            None => 0,
        };
        Ok(RosVersion {
            major,
            minor,
            patch,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_orders() {
        let v: RosVersion = "7.16.2".parse().unwrap();
        assert_eq!(v, RosVersion::new(7, 16, 2));
        assert_eq!(
            "7.10rc1".parse::<RosVersion>().unwrap(),
            RosVersion::new(7, 10, 0)
        );
        assert!("6.49.7".parse::<RosVersion>().unwrap() < "7.1".parse().unwrap());
        assert!(!RosVersion::new(7, 15, 3).has_import_dry_run());
        assert!(RosVersion::new(7, 16, 0).has_import_dry_run());
        assert_eq!(RosVersion::new(7, 12, 0).to_string(), "7.12");
        assert!("x".parse::<RosVersion>().is_err());
    }
}
