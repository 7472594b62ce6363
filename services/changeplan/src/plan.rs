//! Changes and their pure checks: the change id and the device names derived from it, the
//! push [`Policy`], and the offline plan ([`plan`]): parse the change, check the policy,
//! dry-run it on the snapshot's parsed export, refuse a no-op, and derive the
//! [`Expectation`]s that verify and commit later check against the running configuration.
//!
//! Expectations are semantic and order-insensitive: for every `add` entry the change creates
//! or removes, "exactly N entries of this menu carry all of these properties" (N counted the
//! same way on the expected configuration); for every `set` property it changes, "this
//! selector's property has this value". Secret properties (passwords, keys) are left out:
//! exports hide them, so they are reported as unverifiable instead. Write changes the way
//! the device exports them (no default values, `[ find default-name=... ]` selectors for
//! built-in items) or verify will not recognise them on a real device.

use std::collections::BTreeMap;
use std::fmt;

use rosconfig::{Attr, Config, MenuPath, ScriptCommand};
use serde::{Deserialize, Serialize};

use crate::Policy;
use crate::error::{PlanError, Result};

/// Marker of a change id in device text (devsim counts applications by it).
pub use rosconfig::CHANGE_MARKER;

/// A change id: 1 to 64 ASCII letters, digits, `-` or `_` (so it can be part of device file
/// and scheduler names, and of the `netledger-change-<id>` marker).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ChangeId(String);

impl ChangeId {
    /// Validates an id.
    pub fn parse(s: impl Into<String>) -> Result<ChangeId> {
        let s = s.into();
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(ChangeId(s))
        } else {
            Err(PlanError::InvalidChangeId { id: s })
        }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `netledger-change-<id>`: the marker, and the stem of the uploaded change file.
    pub fn marker(&self) -> String {
        format!("{CHANGE_MARKER}{}", self.0)
    }

    /// `netledger-rollback-<id>`: the rollback scheduler entry.
    pub fn scheduler_name(&self) -> String {
        format!("netledger-rollback-{}", self.0)
    }

    /// `netledger-snap-<id>`: the snapshot backup's stem (`.backup` is appended).
    pub fn backup_stem(&self) -> String {
        format!("netledger-snap-{}", self.0)
    }

    /// `netledger-export-<id>`: the temporary export file's stem.
    pub fn export_stem(&self) -> String {
        format!("netledger-export-{}", self.0)
    }

    /// `netledger-change-<id>.rsc`: the change file that is imported.
    pub fn change_file(&self) -> String {
        format!("{}.rsc", self.marker())
    }

    /// `netledger-applied-<id>.txt`: written by the first line of the change file, so it
    /// exists once the device started executing the change (it survives a configuration
    /// restore, because files are not part of a backup).
    pub fn applied_file(&self) -> String {
        format!("netledger-applied-{}.txt", self.0)
    }

    /// `netledger-applied-<id>`: the stem the first line of the change file passes to
    /// `/export file=` on RouterOS before 7.9 (no `/file add` there, ROUTEROS-NOTES §5.9),
    /// so the applied-marker there is [`ChangeId::applied_export_file`] (`.rsc`, §5.11).
    pub fn applied_export_stem(&self) -> String {
        format!("netledger-applied-{}", self.0)
    }

    /// `netledger-applied-<id>.rsc`: the applied-marker on RouterOS before 7.9, written by
    /// `/export file=`[`ChangeId::applied_export_stem`]; it means what
    /// [`ChangeId::applied_file`] means.
    pub fn applied_export_file(&self) -> String {
        format!("{}.rsc", self.applied_export_stem())
    }

    /// `netledger-dryrun-<id>.rsc`: the bare change for the device's `/import dry-run`.
    pub fn dry_run_file(&self) -> String {
        format!("netledger-dryrun-{}.rsc", self.0)
    }
}

impl TryFrom<String> for ChangeId {
    type Error = PlanError;
    fn try_from(s: String) -> Result<ChangeId> {
        ChangeId::parse(s)
    }
}

impl From<ChangeId> for String {
    fn from(c: ChangeId) -> String {
        c.0
    }
}

impl fmt::Display for ChangeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A configuration change for one device: RouterOS script lines (`/import` semantics).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Its id (carried onto the device).
    pub id: ChangeId,
    /// The script.
    pub script: String,
}

impl Change {
    /// A change.
    pub fn new(id: ChangeId, script: impl Into<String>) -> Change {
        Change {
            id,
            script: script.into(),
        }
    }

    /// The file the device imports: a marker comment, a first line that records that the
    /// device started executing this change (`/file add` of [`ChangeId::applied_file`]),
    /// then the change itself.
    pub fn device_script(&self, applied_file: &str) -> String {
        // keep in step with DEVICE_SCRIPT_PREAMBLE_LINES
        let mut s = format!(
            "# {}\n/file add name={applied_file} contents={}\n",
            self.id.marker(),
            self.id.marker()
        );
        s.push_str(&self.script);
        if !s.ends_with('\n') {
            s.push('\n');
        }
        s
    }
}

/// Lines [`Change::device_script`] puts before the change.
pub const DEVICE_SCRIPT_PREAMBLE_LINES: usize = 2;

/// Rewrites `(line N` in a device message about the device script to the change's own line
/// numbers.
pub fn to_change_lines(message: &str) -> String {
    let Some(pos) = message.find("(line ") else {
        return message.to_string();
    };
    let start = pos + "(line ".len();
    let digits: String = message[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    match digits.parse::<usize>() {
        Ok(n) if n > DEVICE_SCRIPT_PREAMBLE_LINES => format!(
            "{}{}{}",
            &message[..start],
            n - DEVICE_SCRIPT_PREAMBLE_LINES,
            &message[start + digits.len()..]
        ),
        _ => message.to_string(),
    }
}

/// Verbs a change may use: configuration edits and `:log`.
const CONFIG_VERBS: &[&str] = &["add", "set", "remove", "enable", "disable", "unset"];

/// The forbidden menu of `policy` that `path` falls under (abbreviations included), if any.
fn forbids<'p>(policy: &'p Policy, path: &MenuPath) -> Option<&'p str> {
    policy
        .forbidden_menus
        .iter()
        .find(|f| crate::rules::under(path, f))
        .map(String::as_str)
}

/// One checkable consequence of a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Expectation {
    /// Exactly `count` entries of `menu` carry all of `attrs`.
    Entries {
        /// Menu, API form.
        menu: String,
        /// Properties (secrets left out).
        attrs: BTreeMap<String, String>,
        /// How many entries carry them after the change.
        count: usize,
    },
    /// The `set` on `selector` (empty for a singleton menu) has `key` = `value` (`None`:
    /// not set).
    Setting {
        /// Menu, API form.
        menu: String,
        /// Selector as exported (`[ find default-name=ether1 ]`, or empty).
        selector: String,
        /// Property.
        key: String,
        /// Value after the change.
        value: Option<String>,
    },
}

impl fmt::Display for Expectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expectation::Entries { menu, attrs, count } => {
                let a: Vec<String> = attrs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(f, "{menu}: {count} entries with {}", a.join(" "))
            }
            Expectation::Setting {
                menu,
                selector,
                key,
                value,
            } => {
                let sel = if selector.is_empty() {
                    String::new()
                } else {
                    format!(" {selector}")
                };
                match value {
                    Some(v) => write!(f, "{menu}{sel}: {key}={v}"),
                    None => write!(f, "{menu}{sel}: {key} not set"),
                }
            }
        }
    }
}

/// The offline result of checking a change against a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Commands in the change.
    pub commands: usize,
    /// What verify and commit check.
    pub expectations: Vec<Expectation>,
    /// Changed properties that cannot be checked from an export (secrets), as `menu key`.
    pub unverifiable: Vec<String>,
}

fn attr_value(a: &Attr) -> String {
    a.value.clone().unwrap_or_else(|| "!".into())
}

type Canon = BTreeMap<String, String>;

fn canon(path: &MenuPath, attrs: &[Attr], secrets: bool) -> Canon {
    attrs
        .iter()
        .filter(|a| secrets || !rosconfig::is_secret(path, &a.key))
        .map(|a| (a.key.clone(), attr_value(a)))
        .collect()
}

fn entries(cfg: &Config, path: &MenuPath, secrets: bool) -> Vec<Canon> {
    cfg.entries(path)
        .map(|e| canon(path, &e.attrs, secrets))
        .collect()
}

fn subset_count(list: &[Canon], want: &Canon) -> usize {
    list.iter()
        .filter(|e| want.iter().all(|(k, v)| e.get(k) == Some(v)))
        .count()
}

/// Merged `set` properties per rendered selector.
fn settings(cfg: &Config, path: &MenuPath, secrets: bool) -> BTreeMap<String, Canon> {
    let mut out: BTreeMap<String, Canon> = BTreeMap::new();
    for s in cfg.set_stmts(path) {
        let slot = out.entry(s.selector.render()).or_default();
        slot.extend(canon(path, &s.attrs, secrets));
    }
    out
}

fn all_paths<'a>(a: &'a Config, b: &'a Config) -> Vec<&'a MenuPath> {
    let mut paths = a.paths();
    for p in b.paths() {
        if !paths.contains(&p) {
            paths.push(p);
        }
    }
    paths
}

/// Expectations that turn `before` into `after`; with `secrets` false, secret properties
/// are left out.
fn derive(before: &Config, after: &Config, secrets: bool) -> Vec<Expectation> {
    let mut out = Vec::new();
    for path in all_paths(before, after) {
        let menu = path.to_api();
        let (b, a) = (
            entries(before, path, secrets),
            entries(after, path, secrets),
        );
        let mut seen: Vec<&Canon> = Vec::new();
        for e in a.iter().chain(b.iter()) {
            if seen.contains(&e) {
                continue;
            }
            seen.push(e);
            let exact = |l: &[Canon]| l.iter().filter(|x| *x == e).count();
            if exact(&a) != exact(&b) && !e.is_empty() {
                out.push(Expectation::Entries {
                    menu: menu.clone(),
                    attrs: e.clone(),
                    count: subset_count(&a, e),
                });
            }
        }
        let (sb, sa) = (
            settings(before, path, secrets),
            settings(after, path, secrets),
        );
        for (sel, props) in &sa {
            let old = sb.get(sel);
            for (k, v) in props {
                if old.and_then(|o| o.get(k)) != Some(v) {
                    out.push(Expectation::Setting {
                        menu: menu.clone(),
                        selector: sel.clone(),
                        key: k.clone(),
                        value: Some(v.clone()),
                    });
                }
            }
        }
        for (sel, props) in &sb {
            for k in props.keys() {
                if sa.get(sel).is_none_or(|n| !n.contains_key(k)) {
                    out.push(Expectation::Setting {
                        menu: menu.clone(),
                        selector: sel.clone(),
                        key: k.clone(),
                        value: None,
                    });
                }
            }
        }
    }
    out
}

/// Checks expectations against a configuration; returns the unmet ones, described.
pub fn unmet(current: &Config, expectations: &[Expectation]) -> Vec<String> {
    let mut out = Vec::new();
    for x in expectations {
        match x {
            Expectation::Entries { menu, attrs, count } => {
                let p = MenuPath::parse(menu);
                let found = subset_count(&entries(current, &p, false), attrs);
                if found != *count {
                    out.push(format!("{x} expected, found {found}"));
                }
            }
            Expectation::Setting {
                menu,
                selector,
                key,
                value,
            } => {
                let p = MenuPath::parse(menu);
                let s = settings(current, &p, false);
                let found = s.get(selector).and_then(|m| m.get(key));
                if found != value.as_ref() {
                    out.push(format!(
                        "{x} expected, found {}",
                        found.map_or("not set", String::as_str)
                    ));
                }
            }
        }
    }
    out
}

/// Parses export text into a configuration.
pub fn parse_export(text: &str) -> Result<Config> {
    rosconfig::parse_export(text).map_err(|e| PlanError::Export {
        message: e.to_string(),
    })
}

fn script_message(e: &rosconfig::ScriptError) -> String {
    if e.message.contains("(line ") {
        e.message.clone()
    } else {
        format!("{} (line {})", e.message, e.line)
    }
}

/// What checking a script against the push policy found: every violated rule, in the order
/// [`check_policy`] reports them, and the parsed commands (`Err` when the script does not
/// parse: then the rules that need the commands were not checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyCheck {
    /// The commands, or why the script does not parse (line, RouterOS-like message).
    pub commands: std::result::Result<Vec<ScriptCommand>, (usize, String)>,
    /// Each violated rule as one sentence (`line 3: /user is a forbidden menu (...)`).
    pub violations: Vec<String>,
}

/// Checks a script against the policy and collects every violation: size; per command, in
/// line order: run-time substitutions (only literals and literal `[ find ... ]` are
/// analysable), names in the push machinery's `netledger-` namespace (on decoded text),
/// verbs that are not configuration edits, forbidden menus, code-storing menus and script
/// hooks (unless the policy is elevated), and unnamed items in the machinery's menus (see
/// [`crate::rules`]); then the number of commands. A script that does not parse is checked
/// for its size and, on its raw text, for the reserved namespace.
pub fn policy_violations(script: &str, policy: &Policy) -> PolicyCheck {
    let mut violations = Vec::new();
    if script.len() > policy.max_bytes {
        violations.push(format!(
            "{} bytes, more than the {} allowed",
            script.len(),
            policy.max_bytes
        ));
    }
    let cmds = match rosconfig::parse_script(script) {
        Ok(c) => c,
        Err(e) => {
            if script
                .to_ascii_lowercase()
                .contains(crate::rules::RESERVED_NAMESPACE)
            {
                violations.push(format!(
                    "it mentions {}..., names the push machinery owns",
                    crate::rules::RESERVED_NAMESPACE
                ));
            }
            return PolicyCheck {
                commands: Err((e.line, script_message(&e))),
                violations,
            };
        }
    };
    if cmds.len() > policy.max_commands {
        violations.push(format!(
            "{} commands, more than the {} allowed",
            cmds.len(),
            policy.max_commands
        ));
    }
    for c in &cmds {
        violations.extend(crate::rules::grammar_violations(c));
        let verb_ok = CONFIG_VERBS.contains(&c.verb.as_str()) || c.verb == ":log";
        if !verb_ok {
            violations.push(format!(
                "line {}: {} {} is not a configuration edit (allowed: {}, :log)",
                c.line,
                c.path.to_cli(),
                c.verb,
                CONFIG_VERBS.join(", ")
            ));
        }
        if let Some(f) = forbids(policy, &c.path) {
            violations.push(format!(
                "line {}: {} is a forbidden menu ({f}: changes there can cut management access or disarm the rollback)",
                c.line,
                c.path.to_cli()
            ));
        }
        violations.extend(crate::rules::code_violations(c, policy.elevated));
    }
    PolicyCheck {
        commands: Ok(cmds),
        violations,
    }
}

/// Parses a change and checks it against the policy (no device, no snapshot needed); the
/// first violation (see [`policy_violations`]) refuses it, else a parse error does.
pub fn check_policy(change: &Change, policy: &Policy) -> Result<Vec<ScriptCommand>> {
    let id = change.id.to_string();
    let check = policy_violations(&change.script, policy);
    if let Some(rule) = check.violations.into_iter().next() {
        return Err(PlanError::Policy { change: id, rule });
    }
    check.commands.map_err(|(line, message)| PlanError::Parse {
        change: id,
        line,
        message,
    })
}

/// The configuration `before` becomes when `cmds` are applied (`:log` lines are skipped):
/// the dry-run model; `Err` names the first command that does not apply:
/// `message (line N column M)`.
pub fn expected(before: &Config, cmds: &[ScriptCommand]) -> std::result::Result<Config, String> {
    let mut after = before.clone();
    for c in cmds.iter().filter(|c| c.verb != ":log") {
        rosconfig::apply_command(&mut after, c)
            .map_err(|e| format!("{e} (line {} column {})", c.line, c.column))?;
    }
    Ok(after)
}

/// The offline validation: policy, dry run on the snapshot's parsed export, no-op check and
/// expectations (see the module docs).
pub fn plan(change: &Change, snapshot_export: &str, policy: &Policy) -> Result<Plan> {
    let cmds = check_policy(change, policy)?;
    let before = parse_export(snapshot_export)?;
    let after = expected(&before, &cmds).map_err(|message| PlanError::DoesNotApply {
        change: change.id.to_string(),
        message,
    })?;
    let full = derive(&before, &after, true);
    if full.is_empty() {
        return Err(PlanError::NoOp {
            change: change.id.to_string(),
        });
    }
    let expectations = derive(&before, &after, false);
    let mut unverifiable: Vec<String> = Vec::new();
    for x in &full {
        let (menu, keys): (&String, Vec<&String>) = match x {
            Expectation::Entries { menu, attrs, .. } => (menu, attrs.keys().collect()),
            Expectation::Setting { menu, key, .. } => (menu, vec![key]),
        };
        let p = MenuPath::parse(menu);
        for k in keys {
            let item = format!("{menu} {k}");
            if rosconfig::is_secret(&p, k) && !unverifiable.contains(&item) {
                unverifiable.push(item);
            }
        }
    }
    Ok(Plan {
        commands: cmds.len(),
        expectations,
        unverifiable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPORT: &str = "# 2024-01-01 00:00:00 by RouterOS 7.16.2\n/interface ethernet\nset [ find default-name=ether1 ] comment=wan\n/ip pool\nadd name=p1 ranges=10.0.0.1-10.0.0.9\n/system identity\nset name=r1\n";

    fn change(script: &str) -> Change {
        Change::new(ChangeId::parse("c1").unwrap(), script)
    }

    #[test]
    fn change_ids() {
        assert!(ChangeId::parse("a-B_9").is_ok());
        for bad in ["", "a b", "x/y", "é", &"x".repeat(65)] {
            assert!(
                matches!(ChangeId::parse(bad), Err(PlanError::InvalidChangeId { .. })),
                "{bad:?}"
            );
        }
        let id = ChangeId::parse("42").unwrap();
        assert_eq!(id.change_file(), "netledger-change-42.rsc");
        assert_eq!(id.scheduler_name(), "netledger-rollback-42");
        // the rollback and snapshot names must not count as the change on a device
        assert!(!id.scheduler_name().contains(CHANGE_MARKER));
        assert!(!id.backup_stem().contains(CHANGE_MARKER));
        assert!(!id.applied_file().contains(CHANGE_MARKER));
        assert_eq!(id.applied_export_file(), "netledger-applied-42.rsc");
        assert!(!id.applied_export_file().contains(CHANGE_MARKER));
    }

    #[test]
    fn policy_rules() {
        let p = Policy::default();
        let e = check_policy(&change("/user add name=x group=full\n"), &p).unwrap_err();
        assert!(e.to_string().contains("forbidden menu"), "{e}");
        let e = check_policy(&change("/ip service set api disabled=yes\n"), &p).unwrap_err();
        assert!(e.to_string().contains("/ip/service"), "{e}");
        let e = check_policy(&change("/system reboot\n"), &p).unwrap_err();
        assert!(e.to_string().contains("not a configuration edit"), "{e}");
        let e = check_policy(
            &change("/system scheduler remove [find name=netledger-rollback-9]\n"),
            &p,
        )
        .unwrap_err();
        assert!(e.to_string().contains("netledger-rollback-"), "{e}");
        let tight = Policy {
            max_commands: 1,
            ..Policy::default()
        };
        let e = check_policy(&change("/ip pool\nadd name=a\nadd name=b\n"), &tight).unwrap_err();
        assert!(e.to_string().contains("2 commands"), "{e}");
        let e = check_policy(&change("/ip address\nadd comment=\"open\n"), &p).unwrap_err();
        assert!(matches!(&e, PlanError::Parse { line: 2, .. }), "{e:?}");
        assert!(check_policy(&change("/ip pool\nadd name=a\n:log info x\n"), &p).is_ok());
    }

    #[test]
    fn plans_expectations_and_refuses_no_ops() {
        let p = Policy::default();
        let plan1 = plan(
            &change(
                "/ip pool\nadd ranges=10.1.0.1 name=p2\nset [ find name=p1 ] ranges=10.0.0.1\n/system identity\nset name=r2\n/interface ethernet\nset [ find default-name=ether1 ] mtu=1400\n",
            ),
            EXPORT,
            &p,
        )
        .unwrap();
        assert_eq!(plan1.commands, 4);
        let text: Vec<String> = plan1.expectations.iter().map(|x| x.to_string()).collect();
        assert!(
            text.contains(&"/ip/pool: 1 entries with name=p2 ranges=10.1.0.1".to_string()),
            "{text:?}"
        );
        assert!(
            text.contains(&"/ip/pool: 0 entries with name=p1 ranges=10.0.0.1-10.0.0.9".to_string()),
            "{text:?}"
        );
        assert!(
            text.contains(&"/system/identity: name=r2".to_string()),
            "{text:?}"
        );
        assert!(
            text.contains(
                &"/interface/ethernet [ find default-name=ether1 ]: mtu=1400".to_string()
            ),
            "{text:?}"
        );
        // the expected configuration meets them, the snapshot does not
        let before = parse_export(EXPORT).unwrap();
        assert_eq!(
            unmet(&before, &plan1.expectations).len(),
            plan1.expectations.len()
        );
        let mut after = before.clone();
        rosconfig::apply_script(
            &mut after,
            "/interface ethernet\nset [ find default-name=ether1 ] mtu=1400\n/system identity\nset name=r2\n/ip pool\nset [ find name=p1 ] ranges=10.0.0.1\nadd name=p2 ranges=10.1.0.1\n",
        )
        .unwrap();
        assert!(unmet(&after, &plan1.expectations).is_empty());
        // no-op
        let e = plan(&change("/system identity\nset name=r1\n"), EXPORT, &p).unwrap_err();
        assert!(matches!(e, PlanError::NoOp { .. }), "{e:?}");
        // does not apply
        let e = plan(
            &change("/ip pool\nadd name=p1 ranges=1.1.1.1\n"),
            EXPORT,
            &p,
        )
        .unwrap_err();
        assert!(matches!(e, PlanError::DoesNotApply { .. }), "{e:?}");
        // secrets: applied, but only reported as unverifiable
        let s = plan(
            &change("/ppp secret\nadd name=u password=hunter2\n"),
            EXPORT,
            &p,
        )
        .unwrap();
        assert_eq!(s.unverifiable, vec!["/ppp/secret password".to_string()]);
        assert!(
            s.expectations
                .iter()
                .all(|x| !x.to_string().contains("hunter2"))
        );
    }

    #[test]
    fn device_script_carries_the_marker_first() {
        let c = change("/ip pool\nadd name=a ranges=1.1.1.1");
        let s = c.device_script("netledger-applied-c1.txt");
        let cmds = rosconfig::parse_script(&s).unwrap();
        assert_eq!(cmds[0].path.to_api(), "/file");
        assert_eq!(cmds[0].arg("name"), Some("netledger-applied-c1.txt"));
        assert_eq!(cmds[1].path.to_api(), "/ip/pool");
        assert!(s.starts_with("# netledger-change-c1\n"));
        assert_eq!(
            s.lines().position(|l| l == "/ip pool"),
            Some(DEVICE_SCRIPT_PREAMBLE_LINES)
        );
        assert_eq!(
            to_change_lines("no such item (line 4 column 1)"),
            "no such item (line 2 column 1)"
        );
        assert_eq!(to_change_lines("bad"), "bad");
    }
}
