//! Corpus tests: the 16 real exports in `shared/routeros-exports` parse, render back, and
//! normalise/diff as documented; their terse renders parse to the same model; the known
//! defaults are backed by the corpus and drop out of verbose exports; text that is not
//! export syntax is refused with the line named.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use proptest::prelude::*;
use rosconfig::{
    Attr, Change, Config, DefaultValue, HeaderMode, ItemId, MenuPath, NormaliseOptions,
    ParseErrorKind, RenderOptions, RowKind, Selector, Stmt, Wrap, detect_form, is_secret,
    known_defaults, mask_secrets, normalise, normalise_with, parse_export, render, render_terse,
    semantic_diff, semantic_diff_known_defaults, unified_diff,
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

// ---------------------------------------------------------------------------------------
// The three export forms

/// The corpus's verbose exports (MANIFEST: 04, 06, 15).
fn is_verbose(name: &str) -> bool {
    matches!(&name[..2], "04" | "06" | "15")
}

fn major_of(name: &str) -> u32 {
    if name.contains("-v6-") { 6 } else { 7 }
}

#[test]
fn terse_render_parses_to_the_same_model() {
    for (name, text) in corpus() {
        let compact = parse_export(&text).unwrap();
        for wrap in [Wrap::None, Wrap::Terminal(80)] {
            let terse = render_terse(&compact, &RenderOptions::faithful(wrap));
            if wrap == Wrap::None {
                // one line per command, each after its full menu path
                for l in terse
                    .lines()
                    .filter(|l| !l.starts_with('#') && !l.starts_with('['))
                {
                    assert!(l.starts_with('/'), "{name}: {l}");
                }
            }
            let back = parse_export(&terse).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(
                back == compact,
                "{name} {wrap:?}:\n{}",
                unified_diff(
                    &compact.normalised(),
                    &back.normalised(),
                    "compact",
                    "terse",
                    1
                )
            );
            assert_eq!(
                normalise(&terse).unwrap(),
                normalise(&text).unwrap(),
                "{name}"
            );
            assert!(semantic_diff(&compact, &back).is_empty(), "{name}");
            let form = detect_form(&terse);
            assert!(form.terse, "{name}");
            assert_eq!(form.verbose, is_verbose(&name), "{name}");
        }
    }
}

#[test]
fn detect_form_tells_the_corpus_apart() {
    for (name, text) in corpus() {
        let form = detect_form(&text);
        assert!(!form.terse, "{name}");
        assert_eq!(form.verbose, is_verbose(&name), "{name}");
    }
}

#[test]
fn normalise_with_default_options_is_normalise() {
    for (name, text) in corpus() {
        assert_eq!(
            normalise_with(&text, NormaliseOptions::default()).unwrap(),
            normalise(&text).unwrap(),
            "{name}"
        );
        assert_eq!(
            normalise_with(
                &text,
                NormaliseOptions {
                    mask_secrets: true,
                    ..NormaliseOptions::default()
                }
            )
            .unwrap(),
            rosconfig::normalise_masked(&text).unwrap(),
            "{name}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Known defaults

/// `add` or `set` rows of `path` in a configuration, as attribute lists.
fn rows<'a>(cfg: &'a Config, path: &MenuPath, kind: RowKind) -> Vec<&'a [Attr]> {
    cfg.stmts(path)
        .filter_map(|s| match (s, kind) {
            (Stmt::Add(e), RowKind::Add) => Some(e.attrs.as_slice()),
            (Stmt::Set(x), RowKind::Set) => Some(x.attrs.as_slice()),
            _ => None,
        })
        .collect()
}

fn holds(attrs: &[Attr], key: &str, value: DefaultValue) -> bool {
    attrs.iter().any(|a| a.key == key && value.matches(a))
}

/// Corpus file numbers named in a source text (`verbose 04 06 (2 rows); left out by
/// compact 01 02`).
fn named_files(source: &str, after: &str) -> Vec<String> {
    source
        .split(". ")
        .filter_map(|part| part.split_once(after).map(|(_, rest)| rest))
        .flat_map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit() && c != ' ')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn every_known_default_is_backed_by_the_corpus() {
    let files: Vec<(String, Config)> = corpus()
        .into_iter()
        .map(|(n, t)| {
            let c = parse_export(&t).unwrap();
            (n, c)
        })
        .collect();
    let by_no = |no: &str| files.iter().find(|(n, _)| n.starts_with(no)).unwrap();
    let mut checked = 0;
    for d in known_defaults() {
        let verbose = named_files(d.source, "verbose ");
        assert!(!verbose.is_empty(), "{d:?}");
        for no in &verbose {
            let (name, cfg) = by_no(no);
            assert!(
                is_verbose(name) && major_of(name) == d.major,
                "{d:?}: {name}"
            );
            let rs = rows(cfg, d.path, d.rows);
            // agreement on every verbose row of the menu that the source names
            assert!(!rs.is_empty(), "{d:?}: no rows in {name}");
            for r in &rs {
                assert!(holds(r, d.key, d.value), "{d:?}: {name} disagrees");
            }
        }
        for (name, cfg) in files.iter().filter(|(n, _)| !is_verbose(n)) {
            if major_of(name) != d.major {
                continue;
            }
            // never contradicted: compact exports write only non-default values
            for r in rows(cfg, d.path, d.rows) {
                assert!(!holds(r, d.key, d.value), "{d:?}: {name} writes it");
            }
        }
        // the compact files named for the group: all of this version, each with rows of the
        // menu, and at least one of them leaving this property out
        let compact = named_files(d.source, "left out by compact ");
        let mut left_out = compact.is_empty();
        for no in &compact {
            let (name, cfg) = by_no(no);
            assert!(
                !is_verbose(name) && major_of(name) == d.major,
                "{d:?}: {name}"
            );
            let rs = rows(cfg, d.path, d.rows);
            assert!(!rs.is_empty(), "{d:?}: {name}");
            left_out |= rs.iter().any(|r| !r.iter().any(|a| a.key == d.key));
        }
        assert!(left_out, "{d:?}: no named compact export leaves it out");
        if d.source.contains("menu in no") {
            for (name, cfg) in files.iter().filter(|(n, _)| !is_verbose(n)) {
                if major_of(name) == d.major {
                    assert!(rows(cfg, d.path, d.rows).is_empty(), "{d:?}: {name}");
                }
            }
        }
        checked += 1;
    }
    assert_eq!(checked, 980);
}

/// The compact export with every known default of its version spelled out, as a verbose
/// export writes them: on every `add`/`set` row of a menu with known defaults, and as
/// `set` statements for the settings menus it does not mention.
fn verbosify(cfg: &Config, major: u32) -> (Config, usize) {
    let mut v = cfg.clone();
    let mut added = 0;
    let defaults: Vec<_> = known_defaults().filter(|d| d.major == major).collect();
    let attr = |key: &str, value: DefaultValue| match value {
        DefaultValue::Value(x) => Attr::new(key, x),
        DefaultValue::NotSet => Attr::not_set(key),
    };
    for sec in &mut v.sections {
        for st in &mut sec.stmts {
            let (kind, attrs) = match st {
                Stmt::Add(e) => (RowKind::Add, &mut e.attrs),
                Stmt::Set(s) => (RowKind::Set, &mut s.attrs),
                _ => continue,
            };
            for d in defaults
                .iter()
                .filter(|d| d.path == &sec.path && d.rows == kind)
            {
                if !attrs.iter().any(|a| a.key == d.key) {
                    attrs.push(attr(d.key, d.value));
                    added += 1;
                }
            }
            attrs.sort_by(|a, b| a.key.cmp(&b.key));
        }
    }
    let mentioned: Vec<MenuPath> = cfg.paths().into_iter().cloned().collect();
    for d in defaults.iter().filter(|d| d.rows == RowKind::Set) {
        if !mentioned.contains(d.path) {
            v.upsert_set(d.path, &Selector::None, vec![attr(d.key, d.value)]);
            added += 1;
        }
    }
    (v, added)
}

#[test]
fn verbose_defaults_do_not_show_against_the_compact_export() {
    for (name, text) in corpus().into_iter().filter(|(n, _)| !is_verbose(n)) {
        let compact = parse_export(&text).unwrap();
        let (verbose, added) = verbosify(&compact, major_of(&name));
        assert!(added > 100, "{name}: {added}");
        let verbose_text = render(&verbose, &RenderOptions::faithful(Wrap::Terminal(80)));
        // plainly, the defaults are differences; with known defaults dropped, none are
        assert!(!semantic_diff(&compact, &verbose).is_empty(), "{name}");
        let d = semantic_diff_known_defaults(&compact, &parse_export(&verbose_text).unwrap());
        assert!(d.is_empty(), "{name}:\n{d}");
        let opts = NormaliseOptions {
            drop_known_defaults: true,
            mask_secrets: true,
        };
        let (nc, nv) = (
            normalise_with(&text, opts).unwrap(),
            normalise_with(&verbose_text, opts).unwrap(),
        );
        assert!(
            nc == nv,
            "{name}:\n{}",
            unified_diff(&nc, &nv, "compact", "verbose", 1)
        );
        // compact text is untouched by dropping known defaults
        assert!(
            compact.without_known_defaults() == compact,
            "{name}:\n{}",
            unified_diff(
                &compact.normalised(),
                &compact.without_known_defaults().normalised(),
                "compact",
                "dropped",
                0
            )
        );
        assert!(detect_form(&verbose_text).verbose, "{name}");
        // a real change next to the defaults still shows, exactly
        let mut changed = parse_export(&verbose_text).unwrap();
        let p = MenuPath::parse("/system identity");
        changed.set_settings(&p, vec![Attr::new("name", "changed-router")]);
        let d = semantic_diff_known_defaults(&compact, &changed);
        assert_eq!(d.len(), 1, "{name}:\n{d}");
    }
}

#[test]
fn real_verbose_exports_lose_their_known_defaults_only() {
    for (name, text) in corpus().into_iter().filter(|(n, _)| is_verbose(n)) {
        let cfg = parse_export(&text).unwrap();
        let total: usize = cfg
            .sections
            .iter()
            .flat_map(|s| s.stmts.iter())
            .map(|s| match s {
                Stmt::Add(e) => e.attrs.len(),
                Stmt::Set(x) => x.attrs.len(),
                _ => 0,
            })
            .sum();
        let mut dropped = cfg.clone();
        let n = dropped.drop_known_defaults();
        // a third or more of a verbose export is known defaults (04: 856 of 2351, 06: 594
        // of 1632, 15: 530 of 952)
        assert!(n * 3 > total, "{name}: {n} of {total}");
        assert!(!detect_form(&dropped.normalised()).verbose, "{name}");
        // idempotent, and what is left reads back the same
        assert_eq!(dropped.clone().drop_known_defaults(), 0, "{name}");
        let back = parse_export(&dropped.normalised()).unwrap();
        assert!(semantic_diff(&dropped, &back).is_empty(), "{name}");
        // every add entry stays (dropping never removes configuration items)
        assert_eq!(dropped.entry_count(), cfg.entry_count(), "{name}");
        // values not known to be defaults stay: an honest difference against compact text
        let queue = MenuPath::parse("/queue interface");
        assert_eq!(
            dropped.set_stmts(&queue).count(),
            cfg.set_stmts(&queue).count(),
            "{name}"
        );
        assert!(dropped.set_stmts(&queue).count() > 0, "{name}");
        // built-in items left with defaults only are gone, like in compact text; values the
        // corpus cannot back stay (v7's `dpd-interval=8s` is no v6 value and no v7 compact
        // export shows the menu)
        let ipsec = MenuPath::parse("/ip ipsec profile");
        assert_eq!(cfg.set_stmts(&ipsec).count(), 1, "{name}");
        let left: Vec<String> = dropped
            .set_stmts(&ipsec)
            .flat_map(|s| s.attrs.iter().map(|a| a.key.clone()))
            .collect();
        if major_of(&name) == 6 {
            assert!(left.is_empty(), "{name}: {left:?}");
        } else {
            assert_eq!(left, ["dpd-interval", "dpd-maximum-failures"], "{name}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Text that is not export syntax

/// 1-based numbers of the lines before which a whole line can be inserted (menu lines:
/// never inside a continuation).
fn insertion_points(text: &str) -> Vec<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with('/'))
        .map(|(i, _)| i + 1)
        .collect()
}

fn insert_line(text: &str, before: usize, line: &str) -> String {
    let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let mut out = String::new();
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == before {
            out.push_str(line);
            out.push_str(eol);
        }
        out.push_str(l);
    }
    if before > text.split_inclusive('\n').count() {
        out.push_str(line);
        out.push_str(eol);
    }
    out
}

/// A stray line and the error kind it must give.
type StrayCase = (&'static str, fn(&ParseErrorKind) -> bool);

#[test]
fn stray_lines_are_errors_naming_and_showing_the_line() {
    let cases: &[StrayCase] = &[
        (
            "Uploaded by oxidized at 2026-03-01 12:00:00",
            |k| matches!(k, ParseErrorKind::BadCommand(c) if c == "Uploaded"),
        ),
        (
            "HTTP/1.1 200 OK",
            |k| matches!(k, ParseErrorKind::BadCommand(c) if c == "HTTP/1.1"),
        ),
        ("[admin@MikroTik] > ", |k| {
            *k == ParseErrorKind::PromptNotAtEnd
        }),
        ("PK\u{3}\u{4}\u{14}\u{0}\u{8}\u{0}binary", |k| {
            *k == ParseErrorKind::ControlCharacter('\u{3}')
        }),
        ("\u{FFFD}\u{FFFD}JFIF", |k| {
            *k == ParseErrorKind::ControlCharacter('\u{FFFD}')
        }),
        (
            "/Uploaded by oxidized",
            |k| matches!(k, ParseErrorKind::BadMenuPath(s) if s == "Uploaded"),
        ),
        ("add comment=\"unterminated", |k| {
            *k == ParseErrorKind::UnterminatedQuote
        }),
        ("<html><body>502 Bad Gateway</body></html>", |k| {
            matches!(k, ParseErrorKind::BadCommand(_))
        }),
    ];
    for (name, text) in corpus() {
        let points = insertion_points(&text);
        let middle = points[points.len() / 2];
        for (garbage, kind_ok) in cases {
            let e = parse_export(&insert_line(&text, middle, garbage))
                .expect_err(&format!("{name}: {garbage:?} accepted"));
            assert_eq!(e.line, middle, "{name}: {garbage:?}: {e}");
            assert!(kind_ok(&e.kind), "{name}: {garbage:?}: {e}");
            assert!(!e.excerpt.is_empty(), "{name}: {e}");
            let shown: String = garbage
                .chars()
                .skip_while(|c| !c.is_ascii_graphic())
                .take_while(|c| c.is_ascii_graphic())
                .take(3)
                .collect();
            assert!(
                e.to_string().contains(&format!("line {middle} ")),
                "{name}: {e}"
            );
            assert!(e.excerpt.contains(&shown), "{name}: {garbage:?}: {e}");
        }
        // appended at the end: after a captured prompt (file 06) the prompt is the line
        let prompt_line = text
            .lines()
            .position(|l| l.starts_with("[admin@"))
            .map(|i| i + 1);
        let end = text.lines().count() + 1;
        for garbage in [
            "Uploaded by oxidized at 2026-03-01 12:00:00",
            "add comment=\"unterminated",
            "add comment=abc \\",
        ] {
            let e = parse_export(&insert_line(&text, end, garbage))
                .expect_err(&format!("{name}: {garbage:?} accepted at the end"));
            match prompt_line {
                Some(p) => {
                    assert_eq!(e.line, p, "{name}: {e}");
                    assert_eq!(e.kind, ParseErrorKind::PromptNotAtEnd, "{name}: {e}");
                    assert!(e.excerpt.starts_with("[admin@"), "{name}: {e}");
                }
                None => assert_eq!(e.line, end, "{name}: {garbage:?}: {e}"),
            }
        }
        if prompt_line.is_none() {
            let e = parse_export(&insert_line(&text, end, "add comment=abc \\")).unwrap_err();
            assert_eq!(e.kind, ParseErrorKind::ContinuationAtEnd, "{name}: {e}");
            // a trailing prompt is what a captured session ends with: accepted
            let c = parse_export(&insert_line(&text, end, "[admin@MikroTik] > ")).unwrap();
            assert_eq!(c.trailer, vec!["[admin@MikroTik] > ".to_string()]);
        }
    }
}

#[test]
fn excerpts_are_cut_and_masked() {
    let long = format!(
        "/ppp secret\nadd name=u password=hunter2 service=any comment=\"{}",
        "x".repeat(200)
    );
    let e = parse_export(&long).unwrap_err();
    assert_eq!(
        (e.line, e.kind.clone()),
        (2, ParseErrorKind::UnterminatedQuote)
    );
    assert!(!e.excerpt.contains("hunter2"), "{e}");
    assert!(e.excerpt.contains("password=MASKED"), "{e}");
    assert!(e.excerpt.ends_with("..."), "{e}");
    assert_eq!(e.excerpt.chars().count(), rosconfig::EXCERPT_CHARS + 3);
}

fn arb_line() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ -~]{0,80}",
        "/[a-z ]{0,20} (add|set|remove) [a-z=\" \\[\\]\\\\.!-]{0,60}",
        "(add|set) [a-zA-Z0-9=\" \\[\\]\\\\$.!-]{0,60}\\\\?",
        "#[ -~]{0,40}",
        "\\[[a-z]+@[a-zA-Z]+\\] > [ -~]{0,10}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        let parsed = parse_export(&text);
        let _ = detect_form(&text);
        let _ = normalise_with(&text, NormaliseOptions { drop_known_defaults: true, mask_secrets: true });
        if let Ok(c) = parsed {
            let _ = render_terse(&c, &RenderOptions::faithful(Wrap::Terminal(80)));
            let _ = c.without_known_defaults();
        }
    }

    #[test]
    fn a_corpus_export_with_a_random_line_inserted_never_panics(
        file in 0usize..16,
        at in any::<prop::sample::Index>(),
        line in arb_line(),
    ) {
        let (_, text) = &corpus()[file];
        let points = insertion_points(text);
        let before = points[at.index(points.len())];
        let t = insert_line(text, before, &line);
        match parse_export(&t) {
            Ok(c) => {
                // accepted text normalises stably, and its terse and compact renders read
                // back as the same configuration
                let n = c.normalised();
                prop_assert_eq!(normalise(&n).unwrap(), n.clone());
                let opts = RenderOptions::faithful(Wrap::None);
                let terse = parse_export(&render_terse(&c, &opts)).unwrap();
                let compact = parse_export(&render(&c, &opts)).unwrap();
                prop_assert!(terse == compact);
            }
            Err(e) => {
                prop_assert!(e.line >= 1);
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }
}
