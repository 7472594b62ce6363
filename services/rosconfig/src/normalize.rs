//! Normalisation (canonical text for hashing and diffing) and secret masking.
//!
//! Normalised text drops the volatile header lines (date, software id, model, serial),
//! RouterOS runtime remark comments (`# managed by CAPsMAN`, `# channel: ...`, `# disabled`,
//! `# Firmware upgraded successfully ...`) and a trailing captured prompt, unwraps
//! continuations and uses LF. It is stable: normalising normalised text returns it unchanged.

use crate::error::ParseError;
use crate::model::{Attr, Config, MenuPath, Stmt};
use crate::parse::parse_export;
use crate::render::{RenderOptions, render};

/// The mask written in place of secret values (the corpus convention).
pub const MASK: &str = "MASKED";

/// Property names whose values are secrets (matched on the last dotted segment).
const SECRET_KEYS: &[&str] = &[
    "password",
    "authentication-password",
    "encryption-password",
    "mschapv2-password",
    "radius-password",
    "sae-password",
    "passphrase",
    "private-passphrase",
    "secret",
    "secrets",
    "ipsec-secret",
    "nv2-sync-secret",
    "private-key",
    "preshared-key",
    "pre-shared-key",
    "wpa-pre-shared-key",
    "wpa2-pre-shared-key",
    "nv2-preshared-key",
    "authentication-key",
    "auth-key",
    "management-protection-key",
    "static-key-0",
    "static-key-1",
    "static-key-2",
    "static-key-3",
    "static-sta-private-key",
    "wireless-enc-key",
    "trap-community",
    "tcp-md5-key",
    "key",
];

/// Values that are enum settings rather than secrets and are left alone.
const NON_SECRET_VALUES: &[&str] = &["", "none", "empty", "disabled"];

/// Whether a property of a menu holds a secret.
pub fn is_secret(path: &MenuPath, key: &str) -> bool {
    let last = key.rsplit('.').next().unwrap_or(key);
    if SECRET_KEYS.contains(&last) {
        return true;
    }
    // SNMP community names are the community secret
    path.to_api() == "/snmp/community" && key == "name"
}

/// Replaces secret values with [`MASK`] in place; returns how many values were masked.
/// Scripts' sources are not inspected (a password inside a script body stays).
pub fn mask_secrets(cfg: &mut Config) -> usize {
    let mut n = 0;
    for sec in &mut cfg.sections {
        let path = sec.path.clone();
        for st in &mut sec.stmts {
            let attrs: &mut Vec<Attr> = match st {
                Stmt::Add(e) => &mut e.attrs,
                Stmt::Set(s) => &mut s.attrs,
                _ => continue,
            };
            for a in attrs.iter_mut() {
                let Some(v) = &a.value else { continue };
                if is_secret(&path, &a.key) && !NON_SECRET_VALUES.contains(&v.as_str()) && v != MASK
                {
                    a.value = Some(MASK.to_string());
                    n += 1;
                }
            }
        }
    }
    n
}

impl Config {
    /// Canonical text of this configuration (see the module docs).
    pub fn normalised(&self) -> String {
        render(self, &RenderOptions::normalised())
    }
}

/// Parses and normalises export text.
pub fn normalise(text: &str) -> Result<String, ParseError> {
    Ok(parse_export(text)?.normalised())
}

/// Parses, masks secrets and normalises export text (what goes into git).
pub fn normalise_masked(text: &str) -> Result<String, ParseError> {
    let mut c = parse_export(text)?;
    mask_secrets(&mut c);
    Ok(c.normalised())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_secret_values_only() {
        let t = "/ppp secret\nadd name=u password=hunter2 service=l2tp\n/snmp community\nset [ find default=yes ] name=public\n/snmp\nset trap-community=abc\n/interface wireguard\nadd name=wg private-key=\"abc=\" public-key=\"def=\"\n/x\nadd auth-key=none password=\"\"\n";
        let mut c = parse_export(t).unwrap();
        assert_eq!(mask_secrets(&mut c), 4);
        let n = c.normalised();
        assert!(n.contains("password=MASKED"));
        assert!(n.contains("name=MASKED"));
        assert!(n.contains("trap-community=MASKED"));
        assert!(n.contains("private-key=\"MASKED\""));
        assert!(n.contains("public-key=\"def=\""));
        assert!(n.contains("add auth-key=none password=\"\""));
        assert!(!n.contains("hunter2"));
    }

    #[test]
    fn normalise_drops_volatile_and_unwraps() {
        let t = "# jan/02/1970 00:01:08 by RouterOS 6.20\r\n# software id = X\r\n#\r\n/interface wireless\r\n# managed by CAPsMAN\r\nset [ find default-name=wlan1 ] ssid=\\\r\n    abc\r\n[admin@r] > \r\n";
        let n = normalise(t).unwrap();
        assert_eq!(
            n,
            "/interface wireless\nset [ find default-name=wlan1 ] ssid=abc\n"
        );
        assert_eq!(normalise(&n).unwrap(), n);
    }
}
