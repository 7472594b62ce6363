//! Restore scripts on the 16 real exports (`shared/routeros-exports`, RouterOS v6 and v7):
//! applied to the model of `current`, the script gives exactly `target`, over hand-picked
//! cases and a table of changes generated on every export (entries added, removed,
//! changed, settings changed); what cannot be derived exactly is refused with the menu.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{all_exports, export};
use netledger_changeplan::{Policy, RestoreError, policy_violations, restore_script};
use rosconfig::{Attr, Config, Selector, Stmt};

/// Normalised text with each menu's statements in one place: a menu that an export shows
/// twice (RouterOS splits `/caps-man interface` around `/caps-man rates`) is merged into its
/// first place, menus without statements are left out, and property names are written in
/// full. The model appends an `add` to
/// the last place of its menu and keeps a menu whose last entry was removed; a device's
/// export shows neither, so these are not differences of configuration.
fn canonical(cfg: &Config) -> String {
    let mut c = cfg.clone();
    let mut merged: Vec<rosconfig::Section> = Vec::new();
    for sec in c.sections.drain(..) {
        match merged.iter_mut().find(|m| m.path == sec.path) {
            Some(m) => m.stmts.extend(sec.stmts),
            None => merged.push(sec),
        }
    }
    merged.retain(|s| !s.stmts.iter().all(|st| matches!(st, Stmt::Remark(_))));
    c.sections = merged;
    // full property names: the v7 `.key` shorthand is a rendering choice
    c.dotted_shorthand = Some(false);
    rosconfig::render(
        &c,
        &rosconfig::RenderOptions {
            dotted_shorthand: Some(false),
            ..rosconfig::RenderOptions::normalised()
        },
    )
}

/// Restores `current` to `target` and checks the property: the script applied to the model
/// of `current` gives `target`'s normalised text; and it stays out of forbidden menus
/// unless the difference is there.
fn check_restore(label: &str, current: &str, target: &str) -> Result<String, RestoreError> {
    let script = restore_script(current, target)?;
    let mut cfg = rosconfig::parse_export(current).unwrap();
    rosconfig::apply_script(&mut cfg, &script)
        .unwrap_or_else(|e| panic!("{label}: script does not apply: {e:?}\n{script}"));
    let want = rosconfig::parse_export(target).unwrap();
    let (got, want_text) = (canonical(&cfg), canonical(&want));
    assert!(
        got == want_text,
        "{label}: the script does not give the target:\n{}\nscript:\n{}",
        rosconfig::unified_diff(&got, &want_text, "got", "target", 1),
        script.lines().take(20).collect::<Vec<_>>().join("\n")
    );
    let check = policy_violations(&script, &Policy::default());
    assert!(check.commands.is_ok(), "{label}");
    let d = rosconfig::semantic_diff(&rosconfig::parse_export(current).unwrap(), &want);
    let forbidden_differs = d.sections.iter().any(|s| {
        let api = s.path.to_api();
        ["/user", "/ip/service", "/system/scheduler"]
            .iter()
            .any(|f| api == *f || api.starts_with(&format!("{f}/")))
    });
    if !forbidden_differs {
        // only the rules an approved high-risk request lifts (code on the device): a
        // restore script never carries a substitution or the machinery's names
        let hard: Vec<&String> = check
            .violations
            .iter()
            .filter(|v| !v.contains("approved high-risk change request"))
            .collect();
        assert!(hard.is_empty(), "{label}: {hard:?}\n{script}");
    }
    Ok(script)
}

#[test]
fn restore_of_an_export_to_itself_is_empty() {
    for (name, text) in all_exports() {
        assert_eq!(restore_script(&text, &text).unwrap(), "", "{name}");
        // also from its own normalised form (wrapping and header do not matter)
        let n = rosconfig::normalise(&text).unwrap();
        assert_eq!(restore_script(&n, &text).unwrap(), "", "{name}");
    }
}

#[test]
fn restore_script_on_hand_picked_changes() {
    let target = export("09-");
    // a pool added and another changed on the device since the archived version
    let mut current = rosconfig::parse_export(&target).unwrap();
    rosconfig::apply_script(
        &mut current,
        "/ip pool add name=extra ranges=10.0.0.1\n/ip pool set [ find name=vpn ] ranges=192.168.89.2-192.168.89.9\n",
    )
    .unwrap();
    let script = check_restore("09", &current.normalised(), &target).unwrap();
    assert_eq!(
        script,
        "/ip pool\nremove [ find name=extra ]\nset [ find name=vpn ] ranges=192.168.89.2-192.168.89.255\n"
    );
    // the identity changed on a v6 device
    let target6 = export("02-");
    let mut current = rosconfig::parse_export(&target6).unwrap();
    rosconfig::apply_script(&mut current, "/system identity set name=moved\n").unwrap();
    let script = check_restore("02", &current.normalised(), &target6).unwrap();
    assert_eq!(script, "/system identity\nset name=10G\n");
    // a bridge port removed in the middle: re-added, and the ports after it re-created so the
    // order is the archived one
    let mut current = rosconfig::parse_export(&target).unwrap();
    rosconfig::apply_script(
        &mut current,
        "/interface bridge port remove [ find interface=ether5 ]\n",
    )
    .unwrap();
    let script = check_restore("09 port", &current.normalised(), &target).unwrap();
    assert!(script.starts_with("/interface bridge port\nremove [ find bridge=bridge comment=defconf interface=ether6 ]\n"), "{script}");
    assert!(script.contains("add bridge=bridge comment=defconf interface=ether5\nadd bridge=bridge comment=defconf interface=ether6\n"), "{script}");
}

#[test]
fn restore_refuses_what_it_cannot_derive_exactly() {
    let target = export("09-");
    // a setting the archived version does not have: its default is unknown
    let mut current = rosconfig::parse_export(&target).unwrap();
    rosconfig::apply_script(&mut current, "/ip dns set servers=1.1.1.1\n").unwrap();
    let e = restore_script(&current.normalised(), &target).unwrap_err();
    assert!(matches!(e, RestoreError::DefaultUnknown { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "/ip dns: property servers of `set` must go back to its default value, which an export does not show; write that change as a script instead"
    );
    // identical entries, one of which must go
    let e = restore_script(
        "/ip firewall filter\nadd action=accept chain=input\nadd action=accept chain=input\n",
        "/ip firewall filter\nadd action=accept chain=input\n",
    )
    .unwrap_err();
    assert!(matches!(e, RestoreError::Ambiguous { .. }), "{e:?}");
    assert!(
        e.to_string()
            .starts_with("/ip firewall filter: the entry action=accept chain=input"),
        "{e}"
    );
    // a masked value that must be written
    let e = restore_script(
        "/ppp secret\nadd name=a password=MASKED\n",
        "/ppp secret\nadd name=a password=MASKED\nadd name=b password=MASKED\n",
    )
    .unwrap_err();
    assert!(matches!(e, RestoreError::Masked { .. }), "{e:?}");
    assert!(e.to_string().contains("password"), "{e}");
    // but a masked entry that is only addressed is fine (secrets are not used to find it)
    let s = check_restore(
        "masked",
        "/ppp secret\nadd name=a password=MASKED\nadd name=b password=MASKED\n",
        "/ppp secret\nadd name=a password=MASKED\n",
    )
    .unwrap();
    assert_eq!(s, "/ppp secret\nremove [ find name=b ]\n");
    // identical entries that all go are removed with one find
    let s = check_restore(
        "dups",
        "/ip firewall filter\nadd action=accept chain=input\nadd action=drop chain=input\nadd action=drop chain=input\n",
        "/ip firewall filter\nadd action=accept chain=input\n",
    )
    .unwrap();
    assert_eq!(
        s,
        "/ip firewall filter\nremove [ find action=drop chain=input ]\n"
    );
    // an entry that is a subset of another is told apart with key=""
    let s = check_restore(
        "subset",
        "/ip firewall filter\nadd action=accept chain=input protocol=icmp\nadd action=accept chain=input\n",
        "/ip firewall filter\nadd action=accept chain=input protocol=icmp\n",
    )
    .unwrap();
    assert_eq!(
        s,
        "/ip firewall filter\nremove [ find action=accept chain=input protocol=\"\" ]\n"
    );
    let e = restore_script("/ip pool\nadd name=\"open\n", "").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("the current export does not parse"),
        "{e}"
    );
}

/// The changes generated on one export: (label, current configuration). The target is the
/// export itself.
fn generated_changes(target: &Config) -> Vec<(String, Config)> {
    let mut out = Vec::new();
    for path in target.paths() {
        let menu = path.to_cli();
        let ids: Vec<_> = target.entries(path).map(|e| e.id).collect();
        if !ids.is_empty() {
            let picks = [0, ids.len() - 1];
            for (k, i) in picks.iter().enumerate() {
                if k > 0 && picks[..k].contains(i) {
                    continue;
                }
                let id = ids[*i];
                // the device lost this entry since
                let mut c = target.clone();
                c.remove(path, id).unwrap();
                out.push((format!("{menu}: entry {i} removed"), c));
                // the device has this entry with a comment more (or another comment)
                let mut c = target.clone();
                c.set(path, id, vec![Attr::new("comment", "changed since")])
                    .unwrap();
                out.push((format!("{menu}: entry {i} commented"), c));
                // the device lacks one of its properties
                let e = target.entry(path, id).unwrap();
                if let Some(a) = e.attrs.iter().find(|a| a.key != "name") {
                    let mut c = target.clone();
                    c.unset(path, id, &[a.key.as_str()]).unwrap();
                    out.push((format!("{menu}: entry {i} without {}", a.key), c));
                }
            }
            // the device has an entry more, at the end
            let mut c = target.clone();
            let mut attrs = target.entry(path, ids[0]).unwrap().attrs.clone();
            for a in attrs.iter_mut() {
                if a.key == "name" {
                    a.value = Some(format!("{}-extra", a.value.clone().unwrap_or_default()));
                }
            }
            attrs.retain(|a| a.key != "comment");
            attrs.push(Attr::new("comment", "added on the device"));
            c.add(path, attrs);
            out.push((format!("{menu}: entry added"), c));
        }
        // singleton settings changed on the device
        let settings = target.settings(path);
        if let Some(a) = settings.iter().find(|a| a.value.is_some() && !a.bare) {
            let mut c = target.clone();
            c.set_settings(path, vec![Attr::new(a.key.clone(), "changed-on-device")]);
            out.push((format!("{menu}: setting {} changed", a.key), c));
        }
        // a built-in item's setting changed on the device
        if let Some(s) = target.set_stmts(path).find(|s| {
            s.selector != Selector::None && s.attrs.iter().any(|a| a.value.is_some() && !a.bare)
        }) {
            let a = s
                .attrs
                .iter()
                .find(|a| a.value.is_some() && !a.bare)
                .unwrap();
            let mut c = target.clone();
            c.upsert_set(
                path,
                &s.selector,
                vec![Attr::new(a.key.clone(), "changed-on-device")],
            );
            out.push((
                format!("{menu}: set {} {} changed", s.selector.render(), a.key),
                c,
            ));
        }
    }
    out
}

/// Runs the generated changes on the exports whose file names start with one of
/// `prefixes`; returns (restored, refused).
fn restore_generated(prefixes: &[&str]) -> (usize, Vec<String>) {
    let (mut ok, mut refused) = (0usize, Vec::new());
    for (name, text) in all_exports()
        .into_iter()
        .filter(|(n, _)| prefixes.iter().any(|p| n.starts_with(p)))
    {
        let target = rosconfig::parse_export(&text).unwrap();
        for (label, current) in generated_changes(&target) {
            let label = format!("{name}: {label}");
            match check_restore(&label, &current.normalised(), &text) {
                Ok(script) => {
                    assert!(!script.is_empty(), "{label}: the change is not restored");
                    ok += 1;
                }
                Err(e) => {
                    // only what an export cannot say exactly is refused
                    assert!(
                        matches!(
                            e,
                            RestoreError::Masked { .. } | RestoreError::Ambiguous { .. }
                        ) || matches!(&e, RestoreError::Unsupported { what, .. } if what.contains("by its number")),
                        "{label}: {e}"
                    );
                    refused.push(format!("{label}: {e}"));
                }
            }
        }
    }
    eprintln!(
        "{ok} restored, {} refused:\n{}",
        refused.len(),
        refused.join("\n")
    );
    (ok, refused)
}

// The 16 exports in six tests (they run in parallel): about 1,500 generated changes, of
// which about 50 are refused (masked secrets, `set 0` on built-in items, entries without
// distinguishing properties).

fn check_generated(prefixes: &[&str], at_least: usize) {
    let (ok, refused) = restore_generated(prefixes);
    assert!(
        ok >= at_least && refused.len() * 10 < ok,
        "{ok} restored, {} refused",
        refused.len()
    );
}

#[test]
fn restore_generated_changes_01() {
    check_generated(&["01-"], 200);
}

#[test]
fn restore_generated_changes_02_03_05() {
    check_generated(&["02-", "03-", "05-"], 200);
}

#[test]
fn restore_generated_changes_04() {
    check_generated(&["04-"], 100);
}

#[test]
fn restore_generated_changes_06_07_08() {
    check_generated(&["06-", "07-", "08-"], 200);
}

#[test]
fn restore_generated_changes_09_to_12() {
    check_generated(&["09-", "10-", "11-", "12-"], 200);
}

#[test]
fn restore_generated_changes_13_to_16() {
    check_generated(&["13-", "14-", "15-", "16-"], 200);
}
