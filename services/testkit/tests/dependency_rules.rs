//! The crate layering of `docs/architecture.md` ("Crates"), checked against `cargo
//! metadata`: every workspace crate's normal dependencies on workspace crates are exactly
//! those of its row, and no library reaches a crate that belongs to benchmarks, chaos
//! workers, simulators, tests or command lines. Fails naming every broken rule.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Crates no library may reach through normal dependencies (directly or transitively).
const FORBIDDEN_IN_LIBRARIES: &[&str] = &[
    "devsim",
    "netledger-testkit",
    "netledger-chaos",
    "clap",
    "anyhow",
    "hdrhistogram",
];

/// Crates no library may declare itself (they may appear below other crates: axum serves
/// HTTP with hyper; the HTTP client and the process-signal crate are bench/chaos only).
const UNDECLARED_IN_LIBRARIES: &[&str] = &["hyper", "hyper-util", "rustix"];

/// The exceptions: the API's own accept loop drives hyper's HTTP/1 server directly, for the
/// connection cap and the request-head read timeout that `axum::serve` does not offer.
const DECLARED_BY: &[(&str, &str)] = &[("netledger-api", "hyper"), ("netledger-api", "hyper-util")];

/// One row of the table.
#[derive(Debug)]
struct Row {
    kind: String,
    depends_on: BTreeSet<String>,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("services/testkit is two levels below the root")
        .to_path_buf()
}

/// The "Crates" table: path (`services/poller`) -> row.
fn documented(root: &Path) -> BTreeMap<String, Row> {
    let text = std::fs::read_to_string(root.join("docs/architecture.md")).unwrap();
    let section = text
        .split("\n## ")
        .find(|s| s.starts_with("Crates"))
        .expect("docs/architecture.md has a Crates section");
    let mut rows = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        assert_eq!(cells.len(), 4, "a crate row has 4 cells: {line}");
        let path = cells[0].trim_matches('`').to_owned();
        let depends_on = cells[3]
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty() && *d != "—")
            .map(str::to_owned)
            .collect();
        rows.insert(
            path,
            Row {
                kind: cells[1].to_owned(),
                depends_on,
            },
        );
    }
    assert!(!rows.is_empty(), "no crate rows found");
    rows
}

struct Metadata {
    /// Workspace package id -> (path relative to the root, short name = last path part).
    members: BTreeMap<String, (String, String)>,
    /// Package id -> package name.
    names: BTreeMap<String, String>,
    /// Package id -> its declared normal dependencies (names).
    declared: BTreeMap<String, BTreeSet<String>>,
    /// Package id -> package ids of its normal dependencies (resolved).
    normal: BTreeMap<String, BTreeSet<String>>,
}

/// The host's target triple (`rustc -vV`): metadata is filtered to it, so it needs no
/// other platform's crates (and no network).
fn host() -> String {
    let out = Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("rustc runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("rustc -vV names the host")
        .to_owned()
}

fn metadata(root: &Path) -> Metadata {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--offline"])
        .args(["--filter-platform", &host(), "--manifest-path"])
        .arg(root.join("Cargo.toml"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let members: BTreeSet<&str> = v["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    let mut m = Metadata {
        members: BTreeMap::new(),
        names: BTreeMap::new(),
        declared: BTreeMap::new(),
        normal: BTreeMap::new(),
    };
    for p in v["packages"].as_array().unwrap() {
        let id = p["id"].as_str().unwrap().to_owned();
        m.names
            .insert(id.clone(), p["name"].as_str().unwrap().to_owned());
        if members.contains(id.as_str()) {
            let manifest = Path::new(p["manifest_path"].as_str().unwrap());
            let dir = manifest.parent().unwrap();
            let rel = dir
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let short = dir.file_name().unwrap().to_string_lossy().into_owned();
            m.members.insert(id.clone(), (rel, short));
            let declared = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| d["name"].as_str().unwrap().to_owned())
                .collect();
            m.declared.insert(id, declared);
        }
    }
    for node in v["resolve"]["nodes"].as_array().unwrap() {
        let id = node["id"].as_str().unwrap().to_owned();
        let deps = node["deps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k["kind"].is_null())
            })
            .map(|d| d["pkg"].as_str().unwrap().to_owned())
            .collect();
        m.normal.insert(id, deps);
    }
    m
}

/// Every package reachable from `id` through normal dependencies, with the path that
/// reached it first.
fn closure(m: &Metadata, id: &str) -> BTreeMap<String, Vec<String>> {
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut stack = vec![(id.to_owned(), vec![m.names[id].clone()])];
    while let Some((at, path)) = stack.pop() {
        for dep in m.normal.get(&at).into_iter().flatten() {
            if !seen.contains_key(dep) {
                let mut p = path.clone();
                p.push(m.names[dep].clone());
                seen.insert(dep.clone(), p.clone());
                stack.push((dep.clone(), p));
            }
        }
    }
    seen
}

/// The rule violations of the workspace as it is.
fn violations(root: &Path) -> Vec<String> {
    let table = documented(root);
    let m = metadata(root);
    let short_of: BTreeMap<&str, &str> = m
        .members
        .iter()
        .map(|(id, (_, short))| (id.as_str(), short.as_str()))
        .collect();
    let mut bad = Vec::new();
    for (id, (path, _)) in &m.members {
        let name = &m.names[id];
        let Some(row) = table.get(path) else {
            bad.push(format!(
                "{name} ({path}) has no row in the Crates table of docs/architecture.md"
            ));
            continue;
        };
        let actual: BTreeSet<String> = m.normal[id]
            .iter()
            .filter_map(|d| short_of.get(d.as_str()).map(|s| (*s).to_owned()))
            .collect();
        for extra in actual.difference(&row.depends_on) {
            bad.push(format!(
                "{name} depends on {extra}, which its row in docs/architecture.md does not allow"
            ));
        }
        for missing in row.depends_on.difference(&actual) {
            bad.push(format!(
                "{name} no longer depends on {missing}: update its row in docs/architecture.md"
            ));
        }
        if row.kind == "library" || row.kind == "simulator" {
            for (dep, via) in closure(&m, id) {
                if FORBIDDEN_IN_LIBRARIES.contains(&m.names[&dep].as_str()) {
                    bad.push(format!(
                        "library {name} reaches {} through normal dependencies: {}",
                        m.names[&dep],
                        via.join(" -> ")
                    ));
                }
            }
            for dep in &m.declared[id] {
                if UNDECLARED_IN_LIBRARIES.contains(&dep.as_str())
                    && !DECLARED_BY.contains(&(name.as_str(), dep.as_str()))
                {
                    bad.push(format!("library {name} declares {dep}"));
                }
            }
        }
    }
    for path in table.keys() {
        if !m.members.values().any(|(p, _)| p == path) {
            bad.push(format!(
                "docs/architecture.md lists {path}, which is not a workspace member"
            ));
        }
    }
    bad
}

#[test]
fn the_crate_graph_follows_docs_architecture() {
    let bad = violations(&workspace_root());
    assert!(
        bad.is_empty(),
        "dependency rules broken:\n{}",
        bad.join("\n")
    );
}
