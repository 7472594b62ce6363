//! The push policy against scripts written to get past it (issue #15 item 1): run-time
//! substitutions in `:log` arguments, property values and `find` conditions; the push
//! machinery's names hidden by escapes, case and continuations; `/file`; script hooks;
//! menu abbreviations. Each was accepted before the policy allow-listed its grammar.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use netledger_changeplan::{Change, ChangeId, PlanError, Policy, check_policy, policy_violations};

fn refused(script: &str, policy: &Policy) -> String {
    let check = policy_violations(script, policy);
    assert!(
        check.commands.is_ok(),
        "the bypass must parse (else it proves nothing): {script:?}: {:?}",
        check.commands
    );
    let c = Change::new(ChangeId::parse("c1").unwrap(), script);
    match check_policy(&c, policy) {
        Err(PlanError::Policy { rule, .. }) => rule,
        other => panic!("{script:?} was not refused by the policy: {other:?}"),
    }
}

fn accepted(script: &str, policy: &Policy) {
    let check = policy_violations(script, policy);
    assert!(
        check.violations.is_empty() && check.commands.is_ok(),
        "{script:?}: {check:?}"
    );
}

#[test]
fn run_time_substitutions_are_refused_wherever_they_are() {
    let p = Policy::default();
    for (script, shown) in [
        // the bypass: deletes the rollback timer through a :log argument
        (
            ":log info [/system scheduler remove [find]]\n",
            "[/system scheduler remove [find]]",
        ),
        (
            "/ip pool\nadd name=p9 comment=[/system scheduler remove [find]]\n",
            "[/system scheduler remove [find]]",
        ),
        (
            "/system identity set name=[/system clock get time]\n",
            "[/system clock get time]",
        ),
        // nested inside a find condition
        (
            "/ip pool set [find name=[/file remove [find]]] comment=x\n",
            "[/file remove [find]]",
        ),
        // glued to a word
        (":log info x[/system/scheduler/remove [find]]\n", "["),
        // variables and `$[...]` inside quotes
        (":log info \"$[/system scheduler remove [find]]\"\n", "$"),
        ("/ip pool add name=p9 comment=$x\n", "$"),
        (
            "/ip pool set [find comment=\"$[/system scheduler remove [find]]\"] comment=y\n",
            "$",
        ),
        // expressions and code blocks as arguments
        (":log info ([/system scheduler remove [find]])\n", "("),
        ("/ip pool add name=p9 comment={x}\n", "{"),
    ] {
        let rule = refused(script, &p);
        assert!(
            rule.contains("is evaluated on the device") && rule.contains(shown),
            "{script:?}: {rule}"
        );
        assert!(rule.starts_with("line "), "the rule names the line: {rule}");
    }
}

#[test]
fn scripting_commands_are_refused() {
    let p = Policy::default();
    for script in [
        ":global x [/system scheduler find]\n",
        ":local x 1\n",
        ":do { /system scheduler remove [find] }\n",
        ":foreach i in=[/system scheduler find] do={ /system scheduler remove $i }\n",
        ":if (true) do={ /file remove [find] }\n",
        ":execute \"/system scheduler remove [find]\"\n",
        ":parse \"/system scheduler remove [find]\"\n",
        ":put [/system scheduler remove [find]]\n",
    ] {
        let check = policy_violations(script, &p);
        let c = Change::new(ChangeId::parse("c1").unwrap(), script);
        assert!(
            check_policy(&c, &p).is_err(),
            "{script:?} passed: {check:?}"
        );
    }
}

#[test]
fn the_machinerys_names_are_checked_on_decoded_text() {
    let p = Policy::default();
    for script in [
        // `\2D` is `-`
        "/ip pool add name=netledger\\2Drollback\\2Dx ranges=10.9.9.9\n",
        "/ip pool add name=p9 comment=\"netledger\\2Dsnap-c1.backup\"\n",
        // case
        "/ip pool add name=p9 comment=NETLEDGER-applied-c1.txt\n",
        // a continuation inside the quoted name
        "/ip pool add name=p9 comment=\"netledger\\\n    -rollback-c1\"\n",
        // in a find condition
        "/ip pool remove [find comment=\"netledger\\2Dchange-c1\"]\n",
        // `\"` and `\\` around it
        "/ip pool add name=p9 comment=\"\\\"netledger-export-x\\\\\"\n",
    ] {
        let rule = refused(script, &p);
        assert!(rule.contains("namespace"), "{script:?}: {rule}");
    }
    // without the trick the name is refused too, in every attribute
    let rule = refused(
        "/ip pool\nadd name=p9 ranges=10.9.9.9\nset [find name=p9] comment=netledger-rollback-1\n",
        &p,
    );
    assert!(rule.starts_with("line 3:"), "{rule}");
}

#[test]
fn files_scripts_and_hooks_need_an_elevated_policy() {
    let p = Policy::default();
    for script in [
        "/file remove [find]\n",
        "/file add name=x.auto.rsc contents=\"/system scheduler remove 0\"\n",
        "/system script add name=s source=\":log info x\"\n",
        "/tool netwatch add host=10.0.0.1 down-script=\"/system scheduler remove 0\"\n",
        "/ppp profile set [ find name=default ] on-up=\"/system scheduler remove 0\"\n",
        "/ip dhcp-server add name=d1 interface=ether1 lease-script=\"/file remove 0\"\n",
        "/ip dhcp-client add interface=ether1 script=\"/file remove 0\"\n",
        "/ip hotspot user profile set [ find name=default ] on-login=\"/file remove 0\"\n",
        "/system clock set time=00:00:00\n",
        "/container add file=x.tar interface=veth1\n",
    ] {
        let rule = refused(script, &p);
        assert!(
            rule.contains("approved high-risk change request"),
            "{script:?}: {rule}"
        );
    }
    // the scheduler stays forbidden, abbreviated too
    for script in [
        "/system scheduler add name=x on-event=\"/file remove 0\"\n",
        "/sys sch remove [find name=x]\n",
        "/system/sched\nset [find name=x] start-time=00:00:00\n",
    ] {
        let rule = refused(script, &p);
        assert!(rule.contains("forbidden menu"), "{script:?}: {rule}");
    }
    // elevated: hooks and files pass, but only on items named literally, never the
    // machinery's, never a substitution, never a forbidden menu
    let high = Policy {
        elevated: true,
        ..Policy::default()
    };
    accepted(
        "/tool netwatch add host=10.0.0.1 down-script=\":log warning down\"\n/file remove [find name=old.rsc]\n/file set notes.txt contents=\"x\"\n",
        &high,
    );
    for script in [
        "/file remove [find]\n",
        "/file remove [find name!=keep.txt]\n",
        "/file remove 0\n",
        "/file remove *1\n",
        "/file remove [find name=netledger-snap-c1.backup]\n",
        "/file remove \"netledger\\2Dapplied-c1.txt\"\n",
        "/tool netwatch add host=10.0.0.1 down-script=[/system scheduler remove [find]]\n",
        "/system scheduler remove [find name=x]\n",
    ] {
        refused(script, &high);
    }
}

#[test]
fn ordinary_changes_still_pass() {
    let p = Policy::default();
    accepted(
        "/interface ethernet\nset [ find default-name=ether1 ] comment=\"wan \\$5 [x]\" mtu=1400\n/ip pool\nadd name=p2 ranges=10.1.0.1-10.1.0.9\nset [ find where name=p2 !disabled ] comment=\"a;b\"\nremove [ find name=p3 ]\n/ip firewall filter\nadd chain=input action=accept protocol=tcp dst-port=22 comment=\"mgmt (ssh)\"\n:log info \"pool p2 added\"\n:log info [find]\n",
        &p,
    );
}
