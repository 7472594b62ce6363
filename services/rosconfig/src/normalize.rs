//! Normalisation (canonical text for hashing and diffing) and secret masking.
//!
//! Normalised text drops the volatile header lines (date, software id, model, serial),
//! RouterOS runtime remark comments (`# managed by CAPsMAN`, `# channel: ...`, `# disabled`,
//! `# Firmware upgraded successfully ...`) and a trailing captured prompt, unwraps
//! continuations and uses LF. It is stable: normalising normalised text returns it unchanged.
//! Terse text normalises like its compact twin; [`normalise_with`] can also drop known
//! default values so verbose and compact exports compare.

use crate::error::ParseError;
use crate::model::{Attr, Config, Stmt};
use crate::parse::parse_export;
use crate::render::{RenderOptions, render};

use crate::mask::NON_SECRET_VALUES;
use crate::mask::{MASK, is_secret};

/// Replaces secret values with [`MASK`] in place; returns how many values were masked.
/// Scripts' sources are not inspected here (a password inside a `/system script` source
/// stays; [`crate::mask_script`] masks change scripts).
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

/// What [`normalise_with`] does besides [`normalise`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NormaliseOptions {
    /// Drop properties equal to their known default ([`Config::drop_known_defaults`]), so a
    /// `verbose` export normalises like a compact export of the same configuration as far
    /// as the defaults are known. Use it on both sides of a comparison.
    pub drop_known_defaults: bool,
    /// Mask secret values ([`mask_secrets`], as [`normalise_masked`]).
    pub mask_secrets: bool,
}

/// Parses and normalises export text of any form (compact, `terse`, `verbose`): with
/// default options the same text as [`normalise`] (terse text normalises like its compact
/// twin either way).
pub fn normalise_with(text: &str, opts: NormaliseOptions) -> Result<String, ParseError> {
    let mut c = parse_export(text)?;
    if opts.drop_known_defaults {
        c.drop_known_defaults();
    }
    if opts.mask_secrets {
        mask_secrets(&mut c);
    }
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
    fn masks_the_keys_the_old_list_missed() {
        // issue #15 item 9: these reached git unmasked
        let t = "/ip ipsec identity\nadd peer=p private-pre-shared-key=ppsk-1\n/radius\nadd address=10.0.0.1 shared-secret=rad-1\n/interface wireless security-profiles\nadd name=p1 wireless-psk=wpsk-1\n/x\nadd psk=psk-1 eap-password=eap-1\n";
        let mut c = parse_export(t).unwrap();
        assert_eq!(mask_secrets(&mut c), 5);
        let n = c.normalised();
        for s in ["ppsk-1", "rad-1", "wpsk-1", "psk-1", "eap-1"] {
            assert!(!n.contains(s), "{s} unmasked in {n}");
        }
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
