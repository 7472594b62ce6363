//! The preview of a change on real exports (`shared/routeros-exports`, RouterOS v6 and v7):
//! the right `+`/`-` lines, every policy violation, and a note when the expected
//! configuration cannot be computed offline.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::export;
use netledger_changeplan::{Policy, preview};

fn diff_lines(diff: &str, sign: char) -> Vec<String> {
    diff.lines()
        .filter(|l| l.starts_with(sign) && !l.starts_with("---") && !l.starts_with("+++"))
        .map(|l| l[1..].to_string())
        .collect()
}

#[test]
fn preview_of_a_change_on_a_v7_export_shows_its_lines() {
    let base = export("09-");
    let p = preview(
        &base,
        "/system identity\nset name=branch-7\n/ip pool\nadd name=guests ranges=10.9.0.10-10.9.0.99\nset [ find name=vpn ] ranges=192.168.89.2-192.168.89.100\n",
        &Policy::default(),
    );
    assert_eq!(p.note, None, "{p:?}");
    assert!(p.violations.is_empty(), "{:?}", p.violations);
    assert!(
        p.diff.starts_with("--- archived\n+++ expected\n"),
        "{}",
        p.diff
    );
    let mut added = diff_lines(&p.diff, '+');
    let mut removed = diff_lines(&p.diff, '-');
    added.sort();
    removed.sort();
    assert_eq!(
        added,
        vec![
            "/system identity",
            "add name=guests ranges=10.9.0.10-10.9.0.99",
            "add name=vpn ranges=192.168.89.2-192.168.89.100",
            "set name=branch-7",
        ]
    );
    assert_eq!(
        removed,
        vec!["add name=vpn ranges=192.168.89.2-192.168.89.255"]
    );
    // the new /system identity menu line counts too
    assert_eq!(p.changed_lines, 5);
    // the new pool goes after the existing ones, in the /ip pool menu
    let at = p.diff.find("+add name=guests").unwrap();
    assert!(p.diff[..at].contains("add name=dhcp ranges=192.168.1.100-192.168.1.254"));
}

#[test]
fn preview_of_a_change_on_a_v6_export_shows_its_lines() {
    let base = export("02-");
    let p = preview(
        &base,
        "/ip pool remove [ find name=vpn ]\n/system identity set name=\"core 10G\"\n",
        &Policy::default(),
    );
    assert_eq!(p.note, None, "{p:?}");
    assert_eq!(
        diff_lines(&p.diff, '-'),
        vec![
            "add name=vpn ranges=192.168.89.2-192.168.89.255",
            "set name=10G"
        ]
    );
    assert_eq!(diff_lines(&p.diff, '+'), vec!["set name=\"core 10G\""]);
    assert_eq!(p.changed_lines, 3);
    // a no-op has no diff and no note
    let same = preview(&base, "/system identity set name=10G\n", &Policy::default());
    assert_eq!(
        (same.diff.as_str(), same.changed_lines, same.note),
        ("", 0, None)
    );
}

#[test]
fn violations_are_all_listed_and_secrets_stay_masked() {
    let base = export("14-");
    let script = "/user add name=eve group=full password=hunter2\n/ip pool add name=x ranges=10.1.1.1\n/ip service set telnet disabled=yes\n";
    let p = preview(&base, script, &Policy::default());
    assert_eq!(p.note, None, "{p:?}");
    assert_eq!(p.violations.len(), 2, "{:?}", p.violations);
    assert!(
        p.violations[0].starts_with("line 1: /user is a forbidden menu"),
        "{:?}",
        p.violations
    );
    assert!(
        p.violations[1].starts_with("line 3: /ip service is a forbidden menu"),
        "{:?}",
        p.violations
    );
    // the diff is still computed, with the password masked
    assert!(
        p.diff.contains("+add group=full name=eve password=MASKED"),
        "{}",
        p.diff
    );
    assert!(!p.diff.contains("hunter2"));
    // size and command count too, all of them at once
    let tight = Policy {
        max_commands: 2,
        max_bytes: 40,
        ..Policy::default()
    };
    let p = preview(&base, script, &tight);
    assert_eq!(p.violations.len(), 4, "{:?}", p.violations);
    assert!(
        p.violations[0].contains("bytes, more than the 40 allowed"),
        "{:?}",
        p.violations
    );
    assert_eq!(p.violations[1], "3 commands, more than the 2 allowed");
    // the preview serialises for the API
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["changed_lines"], p.changed_lines);
    assert_eq!(json["violations"].as_array().unwrap().len(), 4);
    assert!(json["note"].is_null());
    let back: netledger_changeplan::DevicePreview = serde_json::from_value(json).unwrap();
    assert_eq!(back, p);
}

#[test]
fn a_script_that_does_not_apply_gives_a_note() {
    let base = export("09-");
    let p = preview(
        &base,
        "/system identity set name=x\n/ip pool\nadd name=dhcp ranges=10.0.0.1\n",
        &Policy::default(),
    );
    let note = p.note.as_deref().unwrap();
    assert!(
        note.starts_with("cannot be computed offline: the script does not apply"),
        "{note}"
    );
    assert!(
        note.contains("item with such name already exists (line 3 column 1)"),
        "{note}"
    );
    assert_eq!((p.diff.as_str(), p.changed_lines), ("", 0));
    // a script that does not parse: note, and the violations found before parsing
    let p = preview(
        &base,
        "/ip pool\nadd name=\"open\n",
        &Policy {
            max_bytes: 5,
            ..Policy::default()
        },
    );
    assert!(
        p.note
            .as_deref()
            .unwrap()
            .contains("does not parse: syntax error (line 2"),
        "{p:?}"
    );
    assert_eq!(p.violations.len(), 1);
    // an export that does not parse
    let p = preview(
        "/ip pool\nadd name=\"open\n",
        "/ip pool add name=a\n",
        &Policy::default(),
    );
    assert!(
        p.note
            .as_deref()
            .unwrap()
            .contains("archived export does not parse"),
        "{p:?}"
    );
}
