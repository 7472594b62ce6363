//! The preview of a change on one device, computed offline from the device's latest
//! archived export: the unified diff of the normalised (and secret-masked) export against
//! the configuration the change is expected to produce, the number of changed lines, and
//! every policy violation (all of them, not only the first).
//!
//! When the expected configuration cannot be computed offline (the export does not parse,
//! the script does not parse or does not apply), [`DevicePreview::note`] says why and the
//! diff is empty; violations found before that point are still listed.

use rosconfig::{Config, DiffLine};
use serde::{Deserialize, Serialize};

use crate::Policy;
use crate::plan::{expected, policy_violations};

/// What a change would do to one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevicePreview {
    /// Unified diff (`--- archived` / `+++ expected`, 3 lines of context) of the normalised,
    /// secret-masked configurations; empty when nothing changes or when [`Self::note`] is set.
    pub diff: String,
    /// Lines added plus lines removed in [`Self::diff`].
    pub changed_lines: u32,
    /// Each policy violation as one sentence (forbidden menu with its line, too many
    /// commands, too large, ...).
    pub violations: Vec<String>,
    /// Why the expected configuration cannot be computed offline (then the diff is empty).
    pub note: Option<String>,
}

impl DevicePreview {
    fn note(violations: Vec<String>, note: String) -> DevicePreview {
        DevicePreview {
            diff: String::new(),
            changed_lines: 0,
            violations,
            note: Some(note),
        }
    }
}

/// Normalised text with secret values masked (what the archive holds, so that a diff never
/// shows a password the script carries).
fn masked(cfg: &Config) -> String {
    let mut c = cfg.clone();
    rosconfig::mask_secrets(&mut c);
    c.normalised()
}

/// The preview of `script` on a device whose latest archived export is `base_export`, under
/// `policy` (see the module docs).
pub fn preview(base_export: &str, script: &str, policy: &Policy) -> DevicePreview {
    let check = policy_violations(script, policy);
    let violations = check.violations;
    let cmds = match check.commands {
        Ok(c) => c,
        Err((_, message)) => {
            return DevicePreview::note(
                violations,
                format!("cannot be computed offline: the script does not parse: {message}"),
            );
        }
    };
    let before = match rosconfig::parse_export(base_export) {
        Ok(c) => c,
        Err(e) => {
            return DevicePreview::note(
                violations,
                format!("cannot be computed offline: the archived export does not parse: {e}"),
            );
        }
    };
    let after = match expected(&before, &cmds) {
        Ok(c) => c,
        Err(message) => {
            return DevicePreview::note(
                violations,
                format!(
                    "cannot be computed offline: the script does not apply to the archived configuration: {message}"
                ),
            );
        }
    };
    let (old, new) = (masked(&before), masked(&after));
    let changed = rosconfig::line_diff(&old, &new)
        .iter()
        .filter(|l| !matches!(l, DiffLine::Same(_)))
        .count();
    DevicePreview {
        diff: rosconfig::unified_diff(&old, &new, "archived", "expected", 3),
        changed_lines: u32::try_from(changed).unwrap_or(u32::MAX),
        violations,
        note: None,
    }
}
