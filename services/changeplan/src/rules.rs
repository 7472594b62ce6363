//! The per-command rules of the push policy that read what the device will see: the
//! allow-listed grammar (literal words, quoted strings and literal `[ find ... ]`
//! expressions; every other substitution, variable, expression or code block is refused),
//! the push machinery's names checked on decoded text, the menus and properties that store
//! or run code on the device (allowed only under an elevated policy), and the menus holding
//! the push machinery's own objects, where a command must name its item literally.
//!
//! Names are compared after the parser decoded them (escapes such as `\2D`, `\"`, `\\`,
//! quotes, line continuations), lower-cased: the check sees what RouterOS will see.
//! Menus are compared segment by segment, and a segment that is a proper prefix of a
//! listed one counts as that one (RouterOS accepts unambiguous abbreviations: `/sys sch`).

use rosconfig::{Arg, FindExpr, FindTerm, MenuPath, ScriptCommand, Selector};

/// The namespace of every device object the push machinery creates (scheduler entries,
/// backups, files, the change marker): a change may not name anything in it.
pub const RESERVED_NAMESPACE: &str = "netledger-";

/// Menus whose entries store or run code, or move the clock the rollback timer runs on:
/// allowed only under an elevated policy.
pub const ELEVATED_MENUS: &[&str] = &[
    "/file",
    "/system/script",
    "/system/scheduler",
    "/tool/netwatch",
    "/container",
    "/disk",
    "/system/clock",
];

/// Menus that hold the push machinery's own objects (the snapshot backup, the markers, the
/// rollback timer): a command there must name its item by a literal name (`[ find
/// name=x ]` or `x`), never by a number, an id or a condition that could match the
/// machinery's objects, whatever the policy.
pub const OWNED_MENUS: &[&str] = &["/file", "/system/scheduler", "/system/script"];

/// Whether a property holds code the device runs (scheduler `on-event`, netwatch
/// `up-script`/`down-script`/`test-script`, PPP profile `on-up`/`on-down`, DHCP server
/// `lease-script`, DHCP client `script`, hotspot `on-login`/`on-logout`, script `source`).
pub fn is_hook_property(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.ends_with("script")
        || matches!(
            k.as_str(),
            "source"
                | "on-event"
                | "on-up"
                | "on-down"
                | "on-login"
                | "on-logout"
                | "on-error"
                | "cmd"
                | "entrypoint"
        )
}

/// Whether `path` is `menu` or below it; a path segment that is a proper prefix of the
/// menu's segment counts (an abbreviation), compared case-insensitively.
pub fn under(path: &MenuPath, menu: &str) -> bool {
    let m = MenuPath::parse(menu);
    let (p, m) = (path.segments(), m.segments());
    p.len() >= m.len()
        && p.iter().zip(m).all(|(a, b)| {
            let a = a.to_ascii_lowercase();
            !a.is_empty() && b.starts_with(&a)
        })
}

/// Every decoded string a command carries: path segments, positional words and quoted
/// strings, `find` condition keys and values, property keys and values.
fn strings(c: &ScriptCommand) -> Vec<&str> {
    fn find<'a>(f: &'a FindExpr, out: &mut Vec<&'a str>) {
        for t in &f.terms {
            match t {
                FindTerm::Eq { key, value, .. } | FindTerm::Ne { key, value, .. } => {
                    out.push(key);
                    out.push(value);
                }
                FindTerm::Flag { name, .. } => out.push(name),
            }
        }
    }
    let mut out: Vec<&str> = c.path.segments().iter().map(String::as_str).collect();
    for a in &c.positional {
        match a {
            Arg::Word(s) | Arg::Quoted(s) | Arg::Expr(s) => out.push(s),
            Arg::Find(f) => find(f, &mut out),
        }
    }
    for a in &c.attrs {
        out.push(&a.key);
        if let Some(v) = &a.value {
            out.push(v);
        }
    }
    out
}

/// The first decoded string of the command in the reserved namespace.
pub fn reserved_name(c: &ScriptCommand) -> Option<String> {
    strings(c)
        .into_iter()
        .find(|s| s.to_ascii_lowercase().contains(RESERVED_NAMESPACE))
        .map(str::to_owned)
}

/// Whether a selector names its item by a literal name: `x`, `"x"`, or a `find` with a
/// `name=` condition (further conditions only narrow it).
fn names_item(sel: &Selector) -> bool {
    match sel {
        Selector::Name { name, .. } => !name.is_empty() && !name.contains(','),
        Selector::Find(f) => f.terms.iter().any(
            |t| matches!(t, FindTerm::Eq { key, value, .. } if key == "name" && !value.is_empty()),
        ),
        Selector::None | Selector::Number(_) | Selector::Id(_) => false,
    }
}

/// What cannot be analysed or names the machinery: run-time substitutions and names in the
/// reserved namespace (refused whatever the policy).
pub fn grammar_violations(c: &ScriptCommand) -> Vec<String> {
    let mut out = Vec::new();
    let line = c.line;
    for s in &c.substitutions {
        out.push(format!(
            "line {line} column {}: `{}` is evaluated on the device when the line runs; a change may use only literal values and `[ find ... ]` on literal values",
            s.column, s.text
        ));
    }
    if let Some(name) = reserved_name(c) {
        out.push(format!(
            "line {line}: `{name}` is in the {RESERVED_NAMESPACE}... namespace, names the push machinery owns"
        ));
    }
    out
}

/// Code on the device (menus and script hooks; lifted by `elevated`) and unnamed items in
/// the machinery's menus (whatever the policy).
pub fn code_violations(c: &ScriptCommand, elevated: bool) -> Vec<String> {
    let mut out = Vec::new();
    let line = c.line;
    let cli = c.path.to_cli();
    if !elevated {
        if let Some(m) = ELEVATED_MENUS.iter().find(|m| under(&c.path, m)) {
            out.push(format!(
                "line {line}: {cli} ({m}) stores or runs code on the device or moves its clock; allowed only in an approved high-risk change request"
            ));
        }
        for a in c.attrs.iter().filter(|a| is_hook_property(&a.key)) {
            if a.value.as_deref().is_some_and(|v| !v.is_empty()) {
                out.push(format!(
                    "line {line}: {cli} {}= is a script hook (the device runs it later); allowed only in an approved high-risk change request",
                    a.key
                ));
            }
        }
    }
    let selects = matches!(
        c.verb.as_str(),
        "set" | "remove" | "enable" | "disable" | "unset"
    );
    if selects
        && let Some(m) = OWNED_MENUS.iter().find(|m| under(&c.path, m))
        && !names_item(&c.selector())
    {
        out.push(format!(
            "line {line}: {cli} {} must name its item literally (`[ find name=... ]`): {m} holds the push machinery's objects",
            c.verb
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abbreviations_count_as_the_menu() {
        let p = |s: &str| MenuPath::parse(s);
        assert!(under(&p("/sys sch"), "/system/scheduler"));
        assert!(under(&p("/System/Scheduler/x"), "/system/scheduler"));
        assert!(!under(&p("/system"), "/system/scheduler"));
        assert!(!under(&p("/snmp"), "/system"));
        assert!(is_hook_property("lease-script"));
        assert!(is_hook_property("On-Event"));
        assert!(!is_hook_property("on-fail-retry-time"));
    }
}
