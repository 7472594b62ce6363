//! Fuzzes the change-script parser and the push policy with untrusted text.
//!
//! Checks, beyond "never panics": parsing is deterministic; whatever the policy accepts
//! (default or elevated) is made of literals only: no command carries a substitution, no
//! positional argument is a raw bracket expression, every unquoted `key=[...]` value is a
//! `find`, no decoded string is in the push machinery's namespace, every verb is a
//! configuration edit or `:log`, and no command is under a forbidden menu; an accepted
//! script applies to an empty configuration without panicking, like the dry-run model.

#![no_main]

use libfuzzer_sys::fuzz_target;
use netledger_changeplan::{Policy, policy_violations, rules};
use rosconfig::{Arg, Config};

const VERBS: &[&str] = &["add", "set", "remove", "enable", "disable", "unset", ":log"];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    assert_eq!(
        rosconfig::parse_script(text),
        rosconfig::parse_script(text),
        "parsing is deterministic"
    );
    for policy in [
        Policy::default(),
        Policy {
            elevated: true,
            ..Policy::default()
        },
    ] {
        let check = policy_violations(text, &policy);
        let Ok(cmds) = &check.commands else {
            continue;
        };
        if !check.violations.is_empty() {
            continue;
        }
        for c in cmds {
            assert!(c.is_literal(), "accepted a substitution: {c:?}");
            assert!(
                !c.positional.iter().any(|a| matches!(a, Arg::Expr(_))),
                "accepted a bracket expression: {c:?}"
            );
            for a in c.attrs.iter().filter(|a| !a.quoted) {
                if let Some(v) = &a.value
                    && v.starts_with('[')
                {
                    assert!(
                        v.trim_start_matches('[').trim_start().starts_with("find"),
                        "accepted a value substitution: {c:?}"
                    );
                }
            }
            assert!(rules::reserved_name(c).is_none(), "accepted a reserved name: {c:?}");
            assert!(VERBS.contains(&c.verb.as_str()), "accepted verb {}", c.verb);
            for f in &policy.forbidden_menus {
                assert!(!rules::under(&c.path, f), "accepted {f}: {c:?}");
            }
            if !policy.elevated {
                assert!(
                    !rules::ELEVATED_MENUS.iter().any(|m| rules::under(&c.path, m)),
                    "accepted code on the device: {c:?}"
                );
            }
        }
        let mut cfg = Config::new();
        let _ = netledger_changeplan::expected(&cfg, cmds);
        let _ = rosconfig::apply_script(&mut cfg, text);
    }
});
