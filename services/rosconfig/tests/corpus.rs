//! Corpus tests: the 16 real exports in `shared/routeros-exports` parse, render back, and
//! normalise/diff as documented.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use rosconfig::{
    Attr, Change, Config, HeaderMode, ItemId, MenuPath, RenderOptions, Stmt, Wrap, is_secret,
    mask_secrets, normalise, parse_export, render, semantic_diff, unified_diff,
};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/routeros-exports")
}

fn corpus() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = std::fs::read_dir(corpus_dir())
        .expect("corpus dir")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "rsc"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    v.sort();
    assert_eq!(v.len(), 16, "expected the 16 corpus files");
    v
}

/// Terminal width each file was exported with (derived: these reproduce it exactly).
fn wrap_of(name: &str) -> Wrap {
    match &name[..2] {
        "06" => Wrap::Terminal(252),
        "15" => Wrap::Terminal(215),
        "14" | "16" => Wrap::None,
        _ => Wrap::Terminal(80),
    }
}

/// Independent text-level normalisation used to check the renderer: join continuation
/// lines, drop the header block, remarks and the captured prompt, LF endings.
fn naive_normalise(text: &str) -> String {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut cont = false;
    let mut header = true;
    for raw in text.lines() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if cont {
            // RouterOS writes `\_` only because a continuation cannot start with a space;
            // unwrapped, that is a plain space (the documented remaining difference)
            let t = line.trim_start();
            match t.strip_prefix("\\_") {
                Some(rest) => {
                    cur.push(' ');
                    cur.push_str(rest);
                }
                None => cur.push_str(t),
            }
        } else {
            cur = line.to_string();
        }
        if !cur.starts_with('#') && cur.ends_with('\\') {
            // every continuation in the corpus ends with an unescaped backslash
            cur.pop();
            cont = true;
            continue;
        }
        cont = false;
        if cur.starts_with('#') {
            if header {
                continue;
            }
            continue; // remark
        }
        header = false;
        if cur.starts_with("[admin@") || cur.trim().is_empty() {
            continue;
        }
        out.push(std::mem::take(&mut cur));
    }
    let mut s = out.join("\n");
    s.push('\n');
    s
}

#[test]
fn every_file_parses() {
    for (name, text) in corpus() {
        let cfg = parse_export(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(cfg.header.version.is_some(), "{name}: version");
        assert!(!cfg.sections.is_empty(), "{name}: sections");
    }
}

#[test]
fn faithful_render_reproduces_files_byte_for_byte() {
    // Known, documented difference: file 01 has one value collapsed by the corpus's
    // masking (`private-passphrase=MASKED`), so its original wrapping no longer matches
    // what RouterOS would print for the masked text. Everything else is byte-identical.
    for (name, text) in corpus() {
        let cfg = parse_export(&text).unwrap();
        let out = render(&cfg, &RenderOptions::faithful(wrap_of(&name)));
        if name.starts_with("01") {
            let diff = unified_diff(
                &text.replace("\r\n", "\n"),
                &out.replace("\r\n", "\n"),
                "orig",
                "render",
                0,
            );
            let changed: Vec<&str> = diff
                .lines()
                .filter(|l| {
                    l.starts_with(['-', '+']) && !l.starts_with("---") && !l.starts_with("+++")
                })
                .collect();
            assert_eq!(
                changed,
                vec![
                    "-    mac-address=B8:81:98:40:28:0B private-passphrase=MASKED ssid-regexp=\\",
                    "-    \"\"",
                    "+    mac-address=B8:81:98:40:28:0B private-passphrase=MASKED ssid-regexp=\"\"",
                ],
                "{name}"
            );
        } else {
            assert!(
                out == text,
                "{name}:\n{}",
                unified_diff(&text, &out, "orig", "render", 1)
            );
        }
    }
}

#[test]
fn normalised_render_equals_unwrapped_original() {
    for (name, text) in corpus() {
        let n = normalise(&text).unwrap();
        let expected = naive_normalise(&text);
        assert!(
            n == expected,
            "{name}:\n{}",
            unified_diff(&expected, &n, "naive", "normalise", 1)
        );
        // stable
        assert_eq!(normalise(&n).unwrap(), n, "{name}: idempotent");
        assert!(!n.contains('\r'));
        // independent of the terminal width the export was taken with
        let cfg = parse_export(&text).unwrap();
        for w in [Wrap::None, Wrap::Terminal(80), Wrap::Terminal(132)] {
            let rewrapped = render(
                &cfg,
                &RenderOptions {
                    wrap: w,
                    header: HeaderMode::Original,
                    ..RenderOptions::normalised()
                },
            );
            assert_eq!(normalise(&rewrapped).unwrap(), n, "{name}: {w:?}");
        }
    }
}

#[test]
fn every_wrapped_line_fits_the_terminal() {
    for (name, text) in corpus() {
        let cfg = parse_export(&text).unwrap();
        let out = render(
            &cfg,
            &RenderOptions {
                wrap: Wrap::Terminal(80),
                ..RenderOptions::normalised()
            },
        );
        for l in out.lines().filter(|l| !l.starts_with('/')) {
            assert!(l.chars().count() <= 79, "{name}: {l}");
        }
    }
}

#[test]
fn diff_against_itself_is_empty() {
    for (name, text) in corpus() {
        let a = parse_export(&text).unwrap();
        let n = a.normalised();
        assert_eq!(unified_diff(&n, &n, "a", "b", 3), "", "{name}");
        assert!(semantic_diff(&a, &a).is_empty(), "{name}");
        let b = parse_export(&n).unwrap();
        assert!(
            semantic_diff(&a, &b).is_empty(),
            "{name}: reparsed normalised text"
        );
    }
}

fn first_entry(cfg: &Config) -> Option<(MenuPath, ItemId, String)> {
    for s in &cfg.sections {
        for st in &s.stmts {
            if let Stmt::Add(e) = st {
                if e.attrs.len() < 2 {
                    continue;
                }
                if let Some(a) = e
                    .attrs
                    .iter()
                    .find(|a| a.value.is_some() && !a.bare && a.key != "name")
                {
                    return Some((s.path.clone(), e.id, a.key.clone()));
                }
            }
        }
    }
    None
}

fn changed_lines(d: &str) -> (Vec<String>, Vec<String>) {
    let minus = d
        .lines()
        .filter(|l| l.starts_with('-') && !l.starts_with("---"))
        .map(|l| l[1..].to_string())
        .collect();
    let plus = d
        .lines()
        .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
        .map(|l| l[1..].to_string())
        .collect();
    (minus, plus)
}

#[test]
fn diff_reports_exactly_one_changed_attribute() {
    for (name, text) in corpus() {
        let a = parse_export(&text).unwrap();
        let Some((path, id, key)) = first_entry(&a) else {
            continue;
        };
        let mut b = a.clone();
        b.set(&path, id, vec![Attr::new(key.clone(), "changed-value")])
            .unwrap();
        let (na, nb) = (a.normalised(), b.normalised());
        let (minus, plus) = changed_lines(&unified_diff(&na, &nb, "a", "b", 3));
        assert_eq!((minus.len(), plus.len()), (1, 1), "{name}");
        assert!(
            plus[0].contains(&format!("{key}=changed-value")),
            "{name}: {plus:?}"
        );
        let d = semantic_diff(&a, &b);
        assert_eq!(d.len(), 1, "{name}: {d}");
        match &d.sections[0].changes[0] {
            Change::EntryChanged { changes, .. } => {
                assert_eq!(changes.len(), 1);
                assert_eq!(changes[0].key, key);
                assert_eq!(changes[0].new.as_deref(), Some("changed-value"));
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn diff_reports_exactly_one_added_and_one_removed_entry() {
    for (name, text) in corpus() {
        let a = parse_export(&text).unwrap();
        let Some((path, id, _)) = first_entry(&a) else {
            continue;
        };
        // add
        let mut b = a.clone();
        b.add(
            &path,
            vec![
                Attr::new("comment", "netledger change 7"),
                Attr::new("name", "zz-added"),
            ],
        );
        let (minus, plus) =
            changed_lines(&unified_diff(&a.normalised(), &b.normalised(), "a", "b", 3));
        assert!(minus.is_empty(), "{name}");
        assert_eq!(
            plus,
            vec!["add comment=\"netledger change 7\" name=zz-added".to_string()],
            "{name}"
        );
        let d = semantic_diff(&a, &b);
        assert_eq!(d.len(), 1, "{name}: {d}");
        assert!(
            matches!(&d.sections[0].changes[0], Change::EntryAdded { attrs } if attrs.len() == 2),
            "{name}"
        );
        // remove
        let mut c = a.clone();
        c.remove(&path, id).unwrap();
        let (minus, plus) =
            changed_lines(&unified_diff(&a.normalised(), &c.normalised(), "a", "b", 3));
        assert!(plus.is_empty(), "{name}");
        assert_eq!(minus.len(), 1, "{name}");
        assert!(minus[0].starts_with("add "), "{name}");
        let d = semantic_diff(&a, &c);
        assert_eq!(d.len(), 1, "{name}: {d}");
        assert!(
            matches!(&d.sections[0].changes[0], Change::EntryRemoved { .. }),
            "{name}"
        );
    }
}

#[test]
fn masking_covers_the_corpus_convention_and_is_idempotent() {
    for (name, text) in corpus() {
        let mut cfg = parse_export(&text).unwrap();
        // every value the corpus masked is recognised as a secret
        for s in &cfg.sections {
            for st in &s.stmts {
                let attrs = match st {
                    Stmt::Add(e) => &e.attrs,
                    Stmt::Set(x) => &x.attrs,
                    _ => continue,
                };
                for a in attrs {
                    if a.value.as_deref() == Some("MASKED") {
                        assert!(is_secret(&s.path, &a.key), "{name}: {} {}", s.path, a.key);
                    }
                }
            }
        }
        let before = cfg.normalised();
        mask_secrets(&mut cfg);
        let once = cfg.normalised();
        mask_secrets(&mut cfg);
        assert_eq!(once, cfg.normalised(), "{name}");
        // the corpus is already masked: masking changes nothing but public-key-like values stay
        assert_eq!(
            before.matches("MASKED").count(),
            once.matches("MASKED").count(),
            "{name}"
        );
    }
}

#[test]
fn export_can_be_reimported_as_a_change_script() {
    for (name, text) in corpus() {
        let a = parse_export(&text).unwrap();
        let mut b = Config::new();
        b.header = a.header.clone();
        rosconfig::apply_script(&mut b, &a.normalised()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            semantic_diff(&a, &b).is_empty(),
            "{name}: {}",
            semantic_diff(&a, &b)
        );
    }
}
