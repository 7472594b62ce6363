//! The three forms of `/export` text, and telling them apart: compact (the default: menu
//! path lines, then commands with the values that differ from the defaults), `terse`
//! (every command on one line after its full menu path) and `verbose` (every property,
//! defaults included). Terse and verbose are independent (`/export terse verbose` exists).
//!
//! The parser reads every form into the same model; what differs is how to compare them:
//! terse text needs nothing (it parses to the same configuration as its compact twin),
//! verbose text needs [`crate::NormaliseOptions::drop_known_defaults`]. The export header
//! does not say which form a text is. Terse is certain from the text; verbose is a guess
//! from how many values equal a known default ([`crate::known_defaults`]), so callers that
//! know the form should say so rather than rely on [`detect_form`].

use crate::defaults::{RowKind, known_default};
use crate::lex::{logical_lines, tokenize};
use crate::model::{Config, Stmt};
use crate::parse::{parse_export, split_command};

/// How an export was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExportForm {
    /// Every command carries its menu path (`/export terse`).
    pub terse: bool,
    /// Default values are written too (`/export verbose`); a guess, see [`detect_form`].
    pub verbose: bool,
}

/// Share of property values equal to a known default above which a text reads as verbose.
/// Measured on the corpus: the verbose exports are at 0.35 (04: 830 of 2351 values), 0.36
/// (06) and 0.54 (15); every compact export at 0 (by construction: no known default is a
/// value a corpus compact export writes), so the cut sits well below the verbose ones.
pub const VERBOSE_SHARE: f64 = 0.2;

/// Fewest property values for the verbose guess; below it a text reads as compact.
pub const VERBOSE_MIN_VALUES: usize = 20;

/// Tells the form of an export text.
///
/// `terse`: there is at least one command line and every command line starts with its menu
/// path (`/ip address add ...`); a menu path line on its own does not count either way.
/// `verbose`: the text parses, has at least [`VERBOSE_MIN_VALUES`] property values, and
/// more than [`VERBOSE_SHARE`] of them equal their known default for the header's major
/// version. Text that does not parse reads as not verbose.
pub fn detect_form(text: &str) -> ExportForm {
    let mut commands = 0usize;
    let mut with_path = 0usize;
    for ll in logical_lines(text) {
        let t = ll.text.trim_start();
        if t.is_empty() || t.starts_with('#') || t.starts_with('[') {
            continue;
        }
        let Ok(toks) = tokenize(&ll.text, ll.line) else {
            continue;
        };
        let raw = split_command(toks);
        match (raw.path.is_some(), raw.verb.is_some()) {
            (true, true) => {
                commands += 1;
                with_path += 1;
            }
            (false, true) => commands += 1,
            _ => {}
        }
    }
    let verbose = parse_export(text).is_ok_and(|c| {
        let (defaults, values) = default_share(&c);
        values >= VERBOSE_MIN_VALUES && defaults as f64 > VERBOSE_SHARE * values as f64
    });
    ExportForm {
        terse: commands > 0 && with_path == commands,
        verbose,
    }
}

/// How many property values of `add`/`set` rows equal their known default, and how many
/// values there are.
pub(crate) fn default_share(cfg: &Config) -> (usize, usize) {
    let major = cfg.header.major_version();
    let (mut defaults, mut values) = (0, 0);
    for sec in &cfg.sections {
        for st in &sec.stmts {
            let (rows, attrs) = match st {
                Stmt::Add(e) => (RowKind::Add, &e.attrs),
                Stmt::Set(s) => (RowKind::Set, &s.attrs),
                _ => continue,
            };
            for a in attrs {
                values += 1;
                if known_default(major, &sec.path, rows, &a.key).is_some_and(|d| d.matches(a)) {
                    defaults += 1;
                }
            }
        }
    }
    (defaults, values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terse_needs_every_command_with_its_path() {
        let terse = "# 2025-01-01 00:00:00 by RouterOS 7.18\n/ip address\n/ip address add address=10.0.0.1/24 interface=ether1\n/system identity set name=r1\n";
        assert!(detect_form(terse).terse);
        let compact =
            "/ip address\nadd address=10.0.0.1/24 interface=ether1\n/system identity set name=r1\n";
        assert!(!detect_form(compact).terse);
        assert_eq!(detect_form(""), ExportForm::default());
        assert_eq!(detect_form("/ip address\n"), ExportForm::default());
    }
}
