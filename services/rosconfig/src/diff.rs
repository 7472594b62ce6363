//! Diffs of two configurations: a line-level unified diff of normalised text and a
//! semantic diff per menu (entries added/removed/changed, `set` statements changed).
//!
//! Entries have no stable key in an export, so they are matched in order (longest common
//! subsequence of identical entries); the unmatched ones between two anchors are paired
//! when they share a `name` or at least half of their properties, and reported as changed;
//! the rest are added/removed. A moved entry (rule order matters in firewalls) shows as
//! removed + added.

use std::fmt;

use crate::model::{Attr, Config, Entry, MenuPath, SetStmt, Stmt};

/// Above this many cells the LCS falls back to prefix/suffix matching only.
const LCS_CELL_LIMIT: usize = 16_000_000;

/// Index pairs of a longest common subsequence of `a` and `b`.
pub(crate) fn lcs_pairs<T: PartialEq>(a: &[T], b: &[T]) -> Vec<(usize, usize)> {
    let mut pre = 0;
    while pre < a.len() && pre < b.len() && a[pre] == b[pre] {
        pre += 1;
    }
    let mut suf = 0;
    while suf < a.len() - pre && suf < b.len() - pre && a[a.len() - 1 - suf] == b[b.len() - 1 - suf]
    {
        suf += 1;
    }
    let mut out: Vec<(usize, usize)> = (0..pre).map(|i| (i, i)).collect();
    let am = &a[pre..a.len() - suf];
    let bm = &b[pre..b.len() - suf];
    let (n, m) = (am.len(), bm.len());
    if n > 0 && m > 0 && n.saturating_mul(m) <= LCS_CELL_LIMIT {
        // dp[i][j] = LCS length of am[i..], bm[j..]
        let w = m + 1;
        let mut dp = vec![0u32; (n + 1) * w];
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                dp[i * w + j] = if am[i] == bm[j] {
                    dp[(i + 1) * w + j + 1] + 1
                } else {
                    dp[(i + 1) * w + j].max(dp[i * w + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n && j < m {
            if am[i] == bm[j] {
                out.push((pre + i, pre + j));
                i += 1;
                j += 1;
            } else if dp[(i + 1) * w + j] >= dp[i * w + j + 1] {
                i += 1;
            } else {
                j += 1;
            }
        }
    }
    for k in 0..suf {
        out.push((a.len() - suf + k, b.len() - suf + k));
    }
    out
}

/// One line of a line diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiffLine {
    /// In both.
    Same(String),
    /// Only in the old text.
    Removed(String),
    /// Only in the new text.
    Added(String),
}

/// Line diff of two texts.
pub fn line_diff(old: &str, new: &str) -> Vec<DiffLine> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let pairs = lcs_pairs(&a, &b);
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    for (pi, pj) in pairs.into_iter().chain(std::iter::once((a.len(), b.len()))) {
        while i < pi {
            out.push(DiffLine::Removed(a[i].to_string()));
            i += 1;
        }
        while j < pj {
            out.push(DiffLine::Added(b[j].to_string()));
            j += 1;
        }
        if pi < a.len() && pj < b.len() {
            out.push(DiffLine::Same(a[pi].to_string()));
            i += 1;
            j += 1;
        }
    }
    out
}

/// Unified diff (`---`/`+++`/`@@` hunks with `context` lines); empty when equal.
pub fn unified_diff(
    old: &str,
    new: &str,
    old_name: &str,
    new_name: &str,
    context: usize,
) -> String {
    let lines = line_diff(old, new);
    if lines.iter().all(|l| matches!(l, DiffLine::Same(_))) {
        return String::new();
    }
    // positions (old line no, new line no) before each diff line
    let mut pos = Vec::with_capacity(lines.len());
    let (mut o, mut n) = (0usize, 0usize);
    for l in &lines {
        pos.push((o, n));
        match l {
            DiffLine::Same(_) => {
                o += 1;
                n += 1;
            }
            DiffLine::Removed(_) => o += 1,
            DiffLine::Added(_) => n += 1,
        }
    }
    let changed: Vec<usize> = (0..lines.len())
        .filter(|&i| !matches!(lines[i], DiffLine::Same(_)))
        .collect();
    // group changes into hunks
    let mut hunks: Vec<(usize, usize)> = Vec::new();
    for &c in &changed {
        let start = c.saturating_sub(context);
        let end = (c + context + 1).min(lines.len());
        match hunks.last_mut() {
            Some(h) if start <= h.1 => h.1 = end,
            _ => hunks.push((start, end)),
        }
    }
    let mut out = format!("--- {old_name}\n+++ {new_name}\n");
    for (s, e) in hunks {
        let slice = &lines[s..e];
        let oc = slice
            .iter()
            .filter(|l| !matches!(l, DiffLine::Added(_)))
            .count();
        let nc = slice
            .iter()
            .filter(|l| !matches!(l, DiffLine::Removed(_)))
            .count();
        let (os, ns) = pos[s];
        let ostart = if oc == 0 { os } else { os + 1 };
        let nstart = if nc == 0 { ns } else { ns + 1 };
        out.push_str(&format!("@@ -{ostart},{oc} +{nstart},{nc} @@\n"));
        for l in slice {
            match l {
                DiffLine::Same(t) => out.push_str(&format!(" {t}\n")),
                DiffLine::Removed(t) => out.push_str(&format!("-{t}\n")),
                DiffLine::Added(t) => out.push_str(&format!("+{t}\n")),
            }
        }
    }
    out
}

/// A changed property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrChange {
    /// Property name.
    pub key: String,
    /// Old value (`None`: absent).
    pub old: Option<String>,
    /// New value (`None`: absent).
    pub new: Option<String>,
}

/// One semantic change within a menu.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// An `add` entry only in the new configuration.
    EntryAdded {
        /// Its properties (`key=value` as written).
        attrs: Vec<String>,
    },
    /// An `add` entry only in the old configuration.
    EntryRemoved {
        /// Its properties.
        attrs: Vec<String>,
    },
    /// An entry present in both with different properties.
    EntryChanged {
        /// `name=...` or the old entry's first properties.
        identity: String,
        /// Changed properties.
        changes: Vec<AttrChange>,
    },
    /// A `set` statement (by selector; empty for singletons) whose properties changed,
    /// appeared or disappeared.
    SetChanged {
        /// Selector text (`[ find default-name=ether1 ]`, empty for singletons).
        selector: String,
        /// Changed properties.
        changes: Vec<AttrChange>,
    },
    /// A `remove` statement only in the new configuration.
    RemoveAdded(String),
    /// A `remove` statement only in the old configuration.
    RemoveDropped(String),
}

/// Changes of one menu.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionDiff {
    /// Menu path.
    pub path: MenuPath,
    /// Changes in order.
    pub changes: Vec<Change>,
}

/// Semantic diff of two configurations.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SemanticDiff {
    /// Menus with changes, in first-seen order.
    pub sections: Vec<SectionDiff>,
}

impl SemanticDiff {
    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.sections.is_empty()
    }

    /// Number of changes over all menus.
    pub fn len(&self) -> usize {
        self.sections.iter().map(|s| s.changes.len()).sum()
    }
}

fn attr_text(a: &Attr) -> String {
    if a.bare {
        return a.key.clone();
    }
    match &a.value {
        Some(_) => format!("{}={}", a.key, a.encoded_value()),
        None => format!("!{}", a.key),
    }
}

fn attr_val(a: &Attr) -> Option<String> {
    Some(match &a.value {
        Some(_) => a.encoded_value(),
        None => "!".to_string(),
    })
}

fn attr_changes(old: &[Attr], new: &[Attr]) -> Vec<AttrChange> {
    let mut out = Vec::new();
    for a in old {
        let nv = new.iter().find(|b| b.key == a.key);
        let (ov, nvv) = (attr_val(a), nv.and_then(attr_val));
        if ov != nvv {
            out.push(AttrChange {
                key: a.key.clone(),
                old: ov,
                new: nvv,
            });
        }
    }
    for b in new {
        if !old.iter().any(|a| a.key == b.key) {
            out.push(AttrChange {
                key: b.key.clone(),
                old: None,
                new: attr_val(b),
            });
        }
    }
    out
}

fn entry_key(e: &Entry) -> Vec<String> {
    e.attrs.iter().map(attr_text).collect()
}

fn similar(a: &Entry, b: &Entry) -> bool {
    if let (Some(x), Some(y)) = (a.get("name"), b.get("name"))
        && x == y
    {
        return true;
    }
    // otherwise: at least half of the other properties agree (a rename with everything
    // else equal counts as a change)
    let key = |e: &Entry| -> Vec<String> {
        e.attrs
            .iter()
            .filter(|x| x.key != "name")
            .map(attr_text)
            .collect()
    };
    let (ak, bk) = (key(a), key(b));
    let common = ak.iter().filter(|t| bk.contains(t)).count();
    let total = ak.len().max(bk.len());
    common > 0 && common * 2 >= total
}

fn identity(e: &Entry) -> String {
    match e.get("name") {
        Some(n) => format!("name={n}"),
        None => entry_key(e)
            .into_iter()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    }
}

fn diff_entries(old: &[&Entry], new: &[&Entry], out: &mut Vec<Change>) {
    let ok: Vec<Vec<String>> = old.iter().map(|e| entry_key(e)).collect();
    let nk: Vec<Vec<String>> = new.iter().map(|e| entry_key(e)).collect();
    let pairs = lcs_pairs(&ok, &nk);
    let (mut i, mut j) = (0, 0);
    for (pi, pj) in pairs
        .into_iter()
        .chain(std::iter::once((old.len(), new.len())))
    {
        let gap_old: Vec<&Entry> = old[i..pi].to_vec();
        let mut gap_new: Vec<Option<&Entry>> = new[j..pj].iter().map(|e| Some(*e)).collect();
        for o in gap_old {
            let m = gap_new
                .iter_mut()
                .find(|n| n.is_some_and(|n| similar(o, n)))
                .and_then(Option::take);
            match m {
                Some(n) => out.push(Change::EntryChanged {
                    identity: identity(o),
                    changes: attr_changes(&o.attrs, &n.attrs),
                }),
                None => out.push(Change::EntryRemoved {
                    attrs: entry_key(o),
                }),
            }
        }
        for n in gap_new.into_iter().flatten() {
            out.push(Change::EntryAdded {
                attrs: entry_key(n),
            });
        }
        i = pi + 1;
        j = pj + 1;
    }
}

fn diff_sets(old: &[&SetStmt], new: &[&SetStmt], out: &mut Vec<Change>) {
    let sel = |s: &SetStmt| s.selector.render();
    let mut seen: Vec<String> = Vec::new();
    for o in old.iter().chain(new.iter()) {
        let k = sel(o);
        if seen.contains(&k) {
            continue;
        }
        seen.push(k.clone());
        let merge = |list: &[&SetStmt]| -> Vec<Attr> {
            let mut v: Vec<Attr> = Vec::new();
            for s in list.iter().filter(|s| sel(s) == k) {
                for a in &s.attrs {
                    match v.iter_mut().find(|x| x.key == a.key) {
                        Some(x) => *x = a.clone(),
                        None => v.push(a.clone()),
                    }
                }
            }
            v
        };
        let changes = attr_changes(&merge(old), &merge(new));
        if !changes.is_empty() {
            out.push(Change::SetChanged {
                selector: k,
                changes,
            });
        }
    }
}

/// Semantic diff of two configurations (remarks and headers are ignored).
pub fn semantic_diff(old: &Config, new: &Config) -> SemanticDiff {
    let mut paths: Vec<&MenuPath> = old.paths();
    for p in new.paths() {
        if !paths.contains(&p) {
            paths.push(p);
        }
    }
    let mut d = SemanticDiff::default();
    for p in paths {
        let mut changes = Vec::new();
        let oe: Vec<&Entry> = old.entries(p).collect();
        let ne: Vec<&Entry> = new.entries(p).collect();
        diff_entries(&oe, &ne, &mut changes);
        let os: Vec<&SetStmt> = old.set_stmts(p).collect();
        let ns: Vec<&SetStmt> = new.set_stmts(p).collect();
        diff_sets(&os, &ns, &mut changes);
        let rem = |c: &Config| -> Vec<String> {
            c.stmts(p)
                .filter_map(|s| match s {
                    Stmt::Remove(sel) => Some(sel.render()),
                    _ => None,
                })
                .collect()
        };
        let (or, nr) = (rem(old), rem(new));
        for r in &nr {
            if !or.contains(r) {
                changes.push(Change::RemoveAdded(r.clone()));
            }
        }
        for r in &or {
            if !nr.contains(r) {
                changes.push(Change::RemoveDropped(r.clone()));
            }
        }
        if !changes.is_empty() {
            d.sections.push(SectionDiff {
                path: p.clone(),
                changes,
            });
        }
    }
    d
}

/// [`semantic_diff`] of two configurations with their known defaults dropped
/// ([`Config::drop_known_defaults`]): compares a `verbose` export with a compact one without
/// reporting the defaults the verbose one spells out (where they are known).
pub fn semantic_diff_known_defaults(old: &Config, new: &Config) -> SemanticDiff {
    semantic_diff(&old.without_known_defaults(), &new.without_known_defaults())
}

fn fmt_changes(f: &mut fmt::Formatter<'_>, changes: &[AttrChange]) -> fmt::Result {
    for c in changes {
        writeln!(
            f,
            "    {}: {} -> {}",
            c.key,
            c.old.as_deref().unwrap_or("(unset)"),
            c.new.as_deref().unwrap_or("(unset)")
        )?;
    }
    Ok(())
}

impl fmt::Display for SemanticDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.sections {
            writeln!(f, "{}", s.path)?;
            for c in &s.changes {
                match c {
                    Change::EntryAdded { attrs } => writeln!(f, "  + add {}", attrs.join(" "))?,
                    Change::EntryRemoved { attrs } => writeln!(f, "  - add {}", attrs.join(" "))?,
                    Change::EntryChanged { identity, changes } => {
                        writeln!(f, "  ~ entry {identity}")?;
                        fmt_changes(f, changes)?;
                    }
                    Change::SetChanged { selector, changes } => {
                        writeln!(f, "  ~ set {selector}")?;
                        fmt_changes(f, changes)?;
                    }
                    Change::RemoveAdded(s) => writeln!(f, "  + remove {s}")?,
                    Change::RemoveDropped(s) => writeln!(f, "  - remove {s}")?,
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_export;

    #[test]
    fn unified_diff_hunks() {
        let a = "a\nb\nc\nd\ne\nf\ng\nh\n";
        let b = "a\nb\nc\nD\ne\nf\ng\nh\ni\n";
        let d = unified_diff(a, b, "old", "new", 1);
        assert_eq!(
            d,
            "--- old\n+++ new\n@@ -3,3 +3,3 @@\n c\n-d\n+D\n e\n@@ -8,1 +8,2 @@\n h\n+i\n"
        );
        assert_eq!(unified_diff(a, a, "x", "y", 3), "");
    }

    #[test]
    fn semantic_changes() {
        let a = parse_export("/ip pool\nadd name=p1 ranges=1.1.1.1-1.1.1.9\nadd name=p2 ranges=2.2.2.1\n/system identity\nset name=a\n").unwrap();
        let b = parse_export("/ip pool\nadd name=p1 ranges=1.1.1.1-1.1.1.8\nadd name=p3 ranges=3.3.3.1\n/system identity\nset name=b\n").unwrap();
        let d = semantic_diff(&a, &b);
        assert_eq!(d.sections.len(), 2);
        let c = &d.sections[0].changes;
        assert!(
            matches!(&c[0], Change::EntryChanged { identity, changes } if identity == "name=p1" && changes.len() == 1)
        );
        assert!(matches!(&c[1], Change::EntryRemoved { .. }));
        assert!(matches!(&c[2], Change::EntryAdded { .. }));
        assert!(semantic_diff(&a, &a).is_empty());
        assert!(
            d.to_string()
                .contains("ranges: 1.1.1.1-1.1.1.9 -> 1.1.1.1-1.1.1.8")
        );
    }
}
