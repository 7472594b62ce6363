//! `/tool/fetch` (an HTTP download into `/file`) and RouterOS packages: an uploaded `.npk`
//! is installed by the next reboot, as RouterOS does (ROUTEROS-NOTES §5.12; MT-UPG).
//!
//! Fetch is the one command that does network I/O, so the server runs it outside the device
//! lock, in its own task: [`fetch`] downloads (plain `http://` only; HTTP/1.1 with
//! `Connection: close`; bodies up to [`MAX_BODY`]) and stores the file. Replies follow the LR
//! trace of ROUTEROS-NOTES §5.12: `!re status=connecting`, `!re status=downloading`,
//! `!re status=finished`, `!done`; an HTTP error is `!trap failure: Status 404, Not Found`
//! (MT-FETCH's text); device-mode `fetch=no` gives `failure: not allowed by device-mode`.
//!
//! Packages: a file named `routeros-<version>-<arch>.npk` (v7), `routeros-<version>.npk`
//! (x86/CHR, no architecture) or `routeros-<arch>-<version>.npk` (v6) has type `package` and
//! the `package-*` properties. At the end of the next reboot the newest package for the
//! board's architecture that is newer than the running version is installed (the
//! `fail_upgrade` knob still applies) and the package files for that architecture are
//! removed. Files keep the fetched bytes exactly (devsim models a package by name and
//! size; an SFTP upload of a `.npk` lands in `/file` the same way).

use std::time::Duration;

use routeros::{Attrs, Command, Reply, TrapCategory};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::device::Device;
use crate::state::DeviceState;
use crate::version::RosVersion;

/// Largest body a fetch accepts.
pub(crate) const MAX_BODY: usize = 512 << 20;
/// Bound on one whole download.
const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// A RouterOS package file name, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PackageName {
    pub version: RosVersion,
    /// `None` for the x86 package, which carries no architecture in its name.
    pub arch: Option<String>,
}

impl PackageName {
    /// Whether the package installs on a board of this architecture.
    pub fn fits(&self, arch: &str) -> bool {
        match &self.arch {
            Some(a) => a == arch,
            None => arch.starts_with("x86"),
        }
    }

    /// `package-architecture` as `/file print` shows it.
    pub fn architecture(&self) -> &str {
        self.arch.as_deref().unwrap_or("x86_64")
    }
}

fn strict_version(s: &str) -> Option<RosVersion> {
    let ok = !s.is_empty()
        && s.starts_with(|c: char| c.is_ascii_digit())
        && s.contains('.')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '.');
    if ok { s.parse().ok() } else { None }
}

/// Parses `routeros-7.19.4-arm64.npk`, `routeros-7.19.4.npk`, `routeros-mipsbe-6.49.7.npk`
/// (with or without a directory).
pub(crate) fn parse_package(name: &str) -> Option<PackageName> {
    let base = name.rsplit('/').next().unwrap_or(name);
    let stem = base.strip_suffix(".npk")?.strip_prefix("routeros-")?;
    if let Some(version) = strict_version(stem) {
        return Some(PackageName {
            version,
            arch: None,
        });
    }
    let (a, b) = stem.split_once('-')?;
    if let Some(version) = strict_version(a) {
        return Some(PackageName {
            version,
            arch: Some(b.to_string()),
        });
    }
    let (arch, v) = stem.rsplit_once('-')?;
    strict_version(v).map(|version| PackageName {
        version,
        arch: Some(arch.to_string()),
    })
}

/// At the end of a reboot: stages the newest fitting uploaded package as the pending version
/// and removes the package files of this architecture.
pub(crate) fn install_uploaded_packages(st: &mut DeviceState, arch: &str) {
    let mut best: Option<RosVersion> = None;
    for f in &st.files {
        if f.kind != "package" {
            continue;
        }
        if let Some(p) = parse_package(&f.name)
            && p.fits(arch)
            && p.version > st.version
            && best.is_none_or(|b| p.version > b)
        {
            best = Some(p.version);
        }
    }
    st.files
        .retain(|f| f.kind != "package" || parse_package(&f.name).is_none_or(|p| !p.fits(arch)));
    if let Some(v) = best {
        st.pending_version = Some(v);
    }
}

/// File type for a stored name.
pub(crate) fn file_kind(name: &str) -> &'static str {
    if parse_package(name).is_some() {
        "package"
    } else if name.ends_with(".rsc") {
        "script"
    } else if name.ends_with(".backup") {
        "backup"
    } else if name.ends_with(".txt") {
        ".txt file"
    } else {
        "file"
    }
}

fn trap(message: impl Into<String>) -> Vec<Reply> {
    vec![Reply::trap(None, message), Reply::done()]
}

fn status(attrs: &[(&str, String)]) -> Reply {
    let mut a = Attrs::new();
    for (k, v) in attrs {
        a.push(*k, v);
    }
    Reply::re(a)
}

/// Splits `http://host:port/path` into `(host:port, /path)`.
fn split_url(url: &str) -> Result<(String, String), String> {
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(format!(
            "failure: devsim fetches plain http:// URLs only, not {url:?}"
        ));
    };
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let host = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:80")
    };
    Ok((host, path.to_string()))
}

async fn http_get(host: &str, path: &str) -> Result<(u16, String, Vec<u8>), String> {
    let mut s = tokio::net::TcpStream::connect(host)
        .await
        .map_err(|e| format!("failure: connection failed ({e})"))?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("failure: {e}"))?;
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = s
            .read(&mut buf)
            .await
            .map_err(|e| format!("failure: {e}"))?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if raw.len() > MAX_BODY + 64 * 1024 {
            return Err("failure: file too big".into());
        }
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| "failure: malformed HTTP response".to_string())?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let body = raw[split + 4..].to_vec();
    let status_line = head.lines().next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let _version = parts.next();
    let code: u16 = parts
        .next()
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| "failure: malformed HTTP status line".to_string())?;
    let reason = parts.next().unwrap_or("").to_string();
    if head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    }) {
        return Err("failure: devsim fetch does not decode chunked bodies".into());
    }
    Ok((code, reason, body))
}

/// Runs `/tool/fetch url=... [dst-path=...]` against `dev`.
pub(crate) async fn fetch(dev: &Device, cmd: &Command) -> Vec<Reply> {
    let attrs = cmd.attrs();
    if !dev.lock().scheduler_allowed {
        // devsim ties the device-mode `fetch` flag to `scheduler` (home mode clears both)
        return trap("failure: not allowed by device-mode");
    }
    let Some(url) = attrs.get_str("url").map(str::to_string) else {
        return vec![
            Reply::trap(
                Some(TrapCategory::from_code(1)),
                "missing value for url (devsim fetches by url only)",
            ),
            Reply::done(),
        ];
    };
    let (host, path) = match split_url(&url) {
        Ok(x) => x,
        Err(e) => return trap(e),
    };
    let dst = attrs
        .get_str("dst-path")
        .filter(|d| !d.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| path.rsplit('/').next().unwrap_or("").to_string());
    if dst.is_empty() {
        return trap("failure: no file name in url; give dst-path");
    }
    let got = tokio::time::timeout(FETCH_TIMEOUT, http_get(&host, &path)).await;
    let (code, reason, body) = match got {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return trap(e),
        Err(_) => return trap("failure: timeout"),
    };
    if code != 200 {
        return trap(format!("failure: Status {code}, {reason}"));
    }
    let n = body.len().to_string();
    {
        let mut st = dev.lock();
        let now = dev.shared.clock.now();
        st.put_file(&dst, file_kind(&dst), body, now);
    }
    vec![
        status(&[("status", "connecting".into())]),
        status(&[
            ("status", "downloading".into()),
            ("downloaded", n.clone()),
            ("total", n.clone()),
            ("duration", "1s".into()),
        ]),
        status(&[
            ("status", "finished".into()),
            ("downloaded", n.clone()),
            ("total", n),
            ("duration", "1s".into()),
        ]),
        Reply::done(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names() {
        let p = parse_package("routeros-7.19.4-arm64.npk").unwrap();
        assert_eq!(p.version, RosVersion::new(7, 19, 4));
        assert_eq!(p.arch.as_deref(), Some("arm64"));
        assert!(p.fits("arm64") && !p.fits("mipsbe"));
        let p = parse_package("flash/routeros-7.16.npk").unwrap();
        assert_eq!((p.version, p.arch), (RosVersion::new(7, 16, 0), None));
        let p = parse_package("routeros-mipsbe-6.49.7.npk").unwrap();
        assert_eq!(p.version, RosVersion::new(6, 49, 7));
        assert_eq!(p.arch.as_deref(), Some("mipsbe"));
        assert!(parse_package("routeros-arm64.npk").is_none());
        assert!(parse_package("notes.txt").is_none());
        assert_eq!(file_kind("x.rsc"), "script");
        assert_eq!(file_kind("routeros-7.19.4-arm.npk"), "package");
    }

    #[test]
    fn urls() {
        assert_eq!(
            split_url("http://127.0.0.1:8080/a/b.npk").unwrap(),
            ("127.0.0.1:8080".into(), "/a/b.npk".into())
        );
        assert_eq!(split_url("http://h").unwrap(), ("h:80".into(), "/".into()));
        assert!(split_url("https://h/x").is_err());
    }
}
