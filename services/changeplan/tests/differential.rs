//! Differential tests of the push policy against the simulator's script interpreter
//! (devsim runs a script the way RouterOS `/import` does, bracket substitutions included):
//! for every script of the corpus (the policy's accepted and refused cases, and scripts
//! generated from a real export), when devsim ends somewhere the change plan's dry-run
//! model did not predict, devsim ran something the policy did not see, and the policy must
//! have refused the script. For accepted scripts, devsim and the model agree: same success,
//! same resulting configuration.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use devsim::{Fleet, FleetOptions, ManualClock};
use netledger_changeplan::{Policy, expected, parse_export, policy_violations};
use rosconfig::{Config, MenuPath};

/// The push's rollback timer as it sits on the device while a change is applied.
const TIMER: &str = "/system scheduler add name=netledger-rollback-c1 start-date=2030-01-01 start-time=00:00:00 on-event=\"/system backup load name=netledger-snap-c1.backup\"\n";

/// Scripts that get past a policy that does not read substitutions: devsim runs the
/// substitution (the timer goes), the model never sees it.
const ATTACKS: &[&str] = &[
    ":log info [/system scheduler remove [find]]\n",
    "/ip pool\nadd name=p9 ranges=10.9.9.1 comment=[/system scheduler remove [find]]\n",
    "/ip pool\nadd name=p9 ranges=10.9.9.1\nset [find name=[/system scheduler remove [find]]] comment=x\n",
];

/// The policy tests' other cases, accepted and refused.
const CASES: &[&str] = &[
    "/ip pool\nadd name=p2 ranges=10.1.0.1-10.1.0.9\nset [ find name=p2 ] comment=\"wan \\$5 [x]\"\n:log info \"pool p2 added\"\n",
    "/system identity set name=r9\n",
    "/ip pool add name=netledger\\2Drollback\\2Dx ranges=10.9.9.9\n",
    "/ip pool add name=p9 comment=\"netledger\\\n    -rollback-c1\"\n",
    "/system scheduler remove [find name=netledger-rollback-c1]\n",
    "/sys sch remove [find name=netledger-rollback-c1]\n",
    "/system identity set name=[/system identity get name]\n",
    ":log info x[/system/scheduler/remove [find]]\n",
    "/tool netwatch add host=10.0.0.1 down-script=\":log info down\"\n",
    "/ip pool\nremove [ find name=nope ]\n",
];

fn normalised(cfg: &Config) -> String {
    cfg.normalised()
}

/// Scripts generated from the export: a comment on every named entry of its list menus.
fn generated(export: &str) -> Vec<String> {
    let cfg = parse_export(export).unwrap();
    let mut out = Vec::new();
    for path in cfg.paths() {
        for e in cfg.entries(path).take(2) {
            if let Some(name) = e.get("name") {
                out.push(format!(
                    "{}\nset [ find name={} ] comment=\"diff {}\"\n",
                    path.to_cli(),
                    rosconfig::encode_value(name, true),
                    out.len()
                ));
            }
        }
    }
    out
}

#[tokio::test]
async fn devsim_runs_nothing_the_policy_did_not_see() {
    let base = common::export("09-");
    let mut scripts: Vec<String> = ATTACKS
        .iter()
        .chain(CASES)
        .map(|s| (*s).to_owned())
        .collect();
    scripts.extend(generated(&base));
    assert!(
        scripts.len() > ATTACKS.len() + CASES.len() + 5,
        "the export gives scripts"
    );

    let clock = Arc::new(ManualClock::new(Duration::from_secs(1_700_000_000)));
    let mut opts = FleetOptions::new(scripts.len(), clock);
    opts.tick = None;
    opts.v6_share = 0.0;
    opts.exports = vec![base.clone(); scripts.len()];
    let fleet = Fleet::start(opts).await.unwrap();
    let policy = Policy::default();

    let mut accepted = 0;
    for (i, script) in scripts.iter().enumerate() {
        let dev = fleet.device(i).unwrap();
        dev.apply_out_of_band(TIMER).unwrap();
        let before = parse_export(&dev.export(true)).unwrap();
        let check = policy_violations(script, &policy);
        let refused = !check.violations.is_empty() || check.commands.is_err();
        let model = check
            .commands
            .as_ref()
            .ok()
            .map(|cmds| expected(&before, cmds));
        let ran = dev.apply_out_of_band(script);
        let after = parse_export(&dev.export(true)).unwrap();
        let agree = match (&model, &ran) {
            (Some(Ok(m)), Ok(())) => normalised(m) == normalised(&after),
            (Some(Err(_)), Err(_)) | (None, Err(_)) => true,
            _ => false,
        };
        if !agree {
            assert!(
                refused,
                "devsim and the model disagree on a script the policy accepted: {script:?}\ndevsim: {ran:?}\nmodel: {:?}",
                model.map(|m| m.map(|_| "applies"))
            );
        }
        if !refused {
            accepted += 1;
            assert!(agree, "{script:?}");
        }
        let timer_left = after
            .entries(&MenuPath::parse("/system scheduler"))
            .any(|e| e.get("name") == Some("netledger-rollback-c1"));
        if ATTACKS.contains(&script.as_str()) {
            // the attack is real on the interpreter: the timer is gone, the model kept it
            assert!(
                !timer_left,
                "devsim did not run the substitution of {script:?}"
            );
            assert!(!agree && refused, "{script:?}");
        } else if !refused {
            assert!(timer_left, "{script:?} removed the timer");
        }
    }
    assert!(
        accepted >= 5,
        "the corpus has accepted scripts ({accepted})"
    );
    fleet.shutdown();
}
