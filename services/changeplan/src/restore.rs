//! Restore as a change: the RouterOS script that brings a device's configuration from one
//! export (`current`) to another (`target`, an archived version), so that "restore device X
//! to version V" runs through the ordinary push with its snapshot, rollback timer and
//! verification.
//!
//! The script is derived on the configuration model, menu by menu:
//!
//! - `set` statements (singletons such as `/system identity`, built-in items such as
//!   `[ find default-name=ether1 ]` or `ftp`): one `set` with the properties that differ.
//! - List entries (`add`): the target's entries are matched in order against the current
//!   ones (an identical entry, else one with the same `name`, else one with at least half
//!   of its properties equal; a matched entry may gain or change properties, never lose
//!   one). Matched entries that differ get `set [ find <identity> ] ...`; unmatched current
//!   entries get `remove [ find <identity> ]`; the target's entries after the last matched
//!   one are added with `add ...` in order (RouterOS appends, so an entry that must go
//!   before kept ones forces those to be re-created after it: rule order is kept).
//! - The identity of an entry is `name=` when that names exactly one entry, else all its
//!   properties except secrets (plus `key=""` to exclude entries that carry more), checked
//!   against the model at that point of the script.
//!
//! Removals run first, in reverse menu order (dependants before what they use); then sets
//! and adds in the target's menu order (the order RouterOS exports in, which respects
//! dependencies). The script is applied to the current model before it is returned, and
//! returned only if the result equals the target semantically
//! ([`rosconfig::semantic_diff`] is empty).
//!
//! What cannot be derived exactly is a [`RestoreError`] naming the menu: a property that
//! must go back to a default value the export does not show, a value the archive masks,
//! entries no `find` can tell apart, a built-in item addressed by number (`set 3 ...`),
//! `remove` statements in an export.

use std::collections::BTreeSet;

use rosconfig::{
    Attr, Config, Entry, FindExpr, FindTerm, ItemId, MenuPath, RenderOptions, Section, Selector,
    SetStmt, Stmt,
};

/// Why no exact restore script can be derived.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// One of the two exports does not parse.
    #[error("the {which} export does not parse: {message}")]
    Export {
        /// `current` or `target`.
        which: &'static str,
        /// Parser message with line and column.
        message: String,
    },
    /// An entry that must be removed or changed cannot be addressed on its own.
    #[error(
        "{menu}: the entry {entry} cannot be told apart from other entries by its properties, so no script can address it alone"
    )]
    Ambiguous {
        /// Menu (CLI form).
        menu: String,
        /// The entry's properties.
        entry: String,
    },
    /// A property would have to go back to its default, which an export does not show.
    #[error(
        "{menu}: {what} must go back to its default value, which an export does not show; write that change as a script instead"
    )]
    DefaultUnknown {
        /// Menu (CLI form).
        menu: String,
        /// Which property of which item.
        what: String,
    },
    /// A value to restore is masked in the archived export.
    #[error("{menu}: {what} is masked in the archive, so its value cannot be restored")]
    Masked {
        /// Menu (CLI form).
        menu: String,
        /// Which property of which item.
        what: String,
    },
    /// Something in the exports that restore does not handle.
    #[error("{menu}: {what}")]
    Unsupported {
        /// Menu (CLI form).
        menu: String,
        /// What, and why.
        what: String,
    },
}

type Restore<T> = Result<T, RestoreError>;

/// The RouterOS script that turns the configuration of `current_export` into that of
/// `target_export` (see the module docs); empty when they are the same configuration.
pub fn restore_script(current_export: &str, target_export: &str) -> Result<String, RestoreError> {
    let parse = |text: &str, which: &'static str| {
        rosconfig::parse_export(text).map_err(|e| RestoreError::Export {
            which,
            message: e.to_string(),
        })
    };
    let current = parse(current_export, "current")?;
    let target = parse(target_export, "target")?;
    let mut paths: Vec<&MenuPath> = current.paths();
    for p in target.paths() {
        if !paths.contains(&p) {
            paths.push(p);
        }
    }
    for p in &paths {
        if removes(&current, p) != removes(&target, p) {
            return Err(RestoreError::Unsupported {
                menu: p.to_cli(),
                what: "the exports differ in `remove` statements, which restore does not derive"
                    .into(),
            });
        }
    }
    let plans: Vec<(&MenuPath, ListPlan)> = paths
        .iter()
        .map(|p| (*p, list_plan(&current, &target, p)))
        .collect();
    let mut w = Writer {
        work: current.clone(),
        script: String::new(),
        menu: None,
    };
    // removals, dependants first
    for (path, plan) in plans.iter().rev() {
        w.remove_entries(path, &plan.remove)?;
    }
    // sets and adds in the target's order (menus only in `current` have nothing to add)
    for (path, plan) in &plans {
        w.sets(path, &target)?;
        for (id, t) in &plan.changed {
            w.change_entry(path, *id, t)?;
        }
        for t in &plan.add {
            w.add_entry(path, t)?;
        }
    }
    let left = rosconfig::semantic_diff(&w.work, &target);
    if let Some(s) = left.sections.first() {
        return Err(RestoreError::Unsupported {
            menu: s.path.to_cli(),
            what: format!(
                "the derived script does not reproduce the target configuration here ({})",
                left.to_string()
                    .lines()
                    .skip(1)
                    .take(3)
                    .collect::<Vec<_>>()
                    .join("; ")
                    .trim()
            ),
        });
    }
    Ok(w.script)
}

fn removes(cfg: &Config, path: &MenuPath) -> Vec<String> {
    cfg.stmts(path)
        .filter_map(|s| match s {
            Stmt::Remove(sel) => Some(sel.render()),
            _ => None,
        })
        .collect()
}

/// What to do with one menu's entries.
#[derive(Debug, Default)]
struct ListPlan {
    /// Current entries to remove.
    remove: Vec<ItemId>,
    /// Current entries kept but changed, with their target form.
    changed: Vec<(ItemId, Entry)>,
    /// Target entries to add, in order.
    add: Vec<Entry>,
}

/// `key=value` as exported (encoded value; `!key` for a not-set marker; bare flags as is).
fn attr_text(a: &Attr) -> String {
    if a.bare {
        return a.key.clone();
    }
    match &a.value {
        Some(_) => format!("{}={}", a.key, a.encoded_value()),
        None => format!("!{}", a.key),
    }
}

/// Whether the current entry `c` can be turned into the target entry `t` with one `set`:
/// no property lost, and the same `name` (both named) or at least half of the other
/// properties equal.
fn compatible(c: &Entry, t: &Entry) -> bool {
    if c.attrs
        .iter()
        .any(|a| t.attrs.iter().all(|b| b.key != a.key))
    {
        return false;
    }
    match (c.get("name"), t.get("name")) {
        (Some(x), Some(y)) => x == y,
        _ => {
            let key = |e: &Entry| -> Vec<String> {
                e.attrs
                    .iter()
                    .filter(|a| a.key != "name")
                    .map(attr_text)
                    .collect()
            };
            let (ck, tk) = (key(c), key(t));
            let common = ck.iter().filter(|x| tk.contains(x)).count();
            common > 0 && common * 2 >= ck.len().max(tk.len())
        }
    }
}

/// Index pairs of a longest common subsequence of identical entries (above a size limit:
/// the common prefix and suffix only).
fn anchors(cur: &[Vec<String>], tgt: &[Vec<String>]) -> Vec<(usize, usize)> {
    let (n, m) = (cur.len(), tgt.len());
    if n.saturating_mul(m) > 4_000_000 {
        let pre = cur.iter().zip(tgt).take_while(|(a, b)| a == b).count();
        let suf = cur[pre..]
            .iter()
            .rev()
            .zip(tgt[pre..].iter().rev())
            .take_while(|(a, b)| a == b)
            .count();
        let mut out: Vec<(usize, usize)> = (0..pre).map(|i| (i, i)).collect();
        out.extend((0..suf).map(|k| (n - suf + k, m - suf + k)));
        return out;
    }
    // dp[i][j]: LCS length of cur[i..] and tgt[j..]
    let w = m + 1;
    let mut dp = vec![0u32; (n + 1) * w];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            dp[i * w + j] = if cur[i] == tgt[j] {
                dp[(i + 1) * w + j + 1] + 1
            } else {
                dp[(i + 1) * w + j].max(dp[i * w + j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < n && j < m {
        if cur[i] == tgt[j] {
            out.push((i, j));
            i += 1;
            j += 1;
        } else if dp[(i + 1) * w + j] >= dp[i * w + j + 1] {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// Matches the target's entries in order against the current ones: identical entries (a
/// longest common subsequence) first, then, between two of those, a [`compatible`] one;
/// stops at the first target entry without a match (it and all after it are added).
fn list_plan(current: &Config, target: &Config, path: &MenuPath) -> ListPlan {
    let cur: Vec<&Entry> = current.entries(path).collect();
    let tgt: Vec<&Entry> = target.entries(path).collect();
    let key = |e: &&Entry| e.attrs.iter().map(attr_text).collect::<Vec<_>>();
    let pairs = anchors(
        &cur.iter().map(key).collect::<Vec<_>>(),
        &tgt.iter().map(key).collect::<Vec<_>>(),
    );
    let exact_of = |j: usize| pairs.iter().find(|p| p.1 == j).map(|p| p.0);
    let anchored: BTreeSet<usize> = pairs.iter().map(|p| p.0).collect();
    let mut plan = ListPlan::default();
    let mut kept: BTreeSet<usize> = BTreeSet::new();
    let mut next = 0;
    let mut matched = 0;
    for (j, t) in tgt.iter().enumerate() {
        let found = match exact_of(j) {
            Some(i) if i >= next => Some(i),
            Some(_) => None,
            None => {
                // only up to the current entry of the next identical pair
                let limit = pairs
                    .iter()
                    .find(|p| p.1 > j)
                    .map_or(cur.len(), |p| p.0)
                    .max(next);
                (next..limit).find(|&i| !anchored.contains(&i) && compatible(cur[i], t))
            }
        };
        let Some(i) = found else { break };
        if exact_of(j) != Some(i) {
            plan.changed.push((cur[i].id, (*t).clone()));
        }
        kept.insert(i);
        next = i + 1;
        matched += 1;
    }
    plan.remove = cur
        .iter()
        .enumerate()
        .filter(|(i, _)| !kept.contains(i))
        .map(|(_, e)| e.id)
        .collect();
    plan.add = tgt.iter().skip(matched).map(|e| (*e).clone()).collect();
    plan
}

/// Builds the script and applies each line to the model as it goes, so every `find` is
/// resolved against the configuration the device will have at that line.
struct Writer {
    work: Config,
    script: String,
    menu: Option<MenuPath>,
}

impl Writer {
    /// Renders one statement as a script line (full property names, no wrapping), applies
    /// it to the model and appends it to the script.
    fn emit(&mut self, path: &MenuPath, stmt: Stmt) -> Restore<()> {
        let mut one = Config::new();
        one.sections.push(Section {
            path: path.clone(),
            stmts: vec![stmt],
        });
        let text = rosconfig::render(
            &one,
            &RenderOptions {
                dotted_shorthand: Some(false),
                ..RenderOptions::normalised()
            },
        );
        let line = text.lines().nth(1).unwrap_or_default().to_string();
        let unsupported = |why: String| RestoreError::Unsupported {
            menu: path.to_cli(),
            what: format!("the derived command `{line}` {why}"),
        };
        let cmds = rosconfig::parse_script(&text)
            .map_err(|e| unsupported(format!("does not parse back: {}", e.message)))?;
        for c in &cmds {
            rosconfig::apply_command(&mut self.work, c)
                .map_err(|e| unsupported(format!("does not apply: {e}")))?;
        }
        if self.menu.as_ref() != Some(path) {
            self.script.push_str(&path.to_cli());
            self.script.push('\n');
            self.menu = Some(path.clone());
        }
        self.script.push_str(&line);
        self.script.push('\n');
        Ok(())
    }

    /// A `find` that selects entry `id` and the entries it matches in the model now.
    fn address(&self, path: &MenuPath, id: ItemId) -> (FindExpr, Vec<ItemId>) {
        let Some(e) = self.work.entry(path, id) else {
            return (FindExpr::default(), Vec::new());
        };
        if let Some(name) = e.get("name")
            && !rosconfig::is_secret(path, "name")
        {
            let x = FindExpr::eq("name", name);
            let m = self.work.find(path, &x);
            if m == [id] {
                return (x, m);
            }
        }
        let mut x = FindExpr::default();
        for a in e
            .attrs
            .iter()
            .filter(|a| !rosconfig::is_secret(path, &a.key))
        {
            x.terms
                .push(eq_term(&a.key, a.value.as_deref().unwrap_or("")));
        }
        let mut m = self.work.find(path, &x);
        if m.len() > 1 {
            // exclude entries that carry properties this one does not have
            for other in m.iter().filter(|o| **o != id) {
                let Some(o) = self.work.entry(path, *other) else {
                    continue;
                };
                if let Some(extra) = o
                    .attrs
                    .iter()
                    .find(|a| e.attrs.iter().all(|b| b.key != a.key))
                {
                    let t = eq_term(&extra.key, "");
                    if !x.terms.contains(&t) {
                        x.terms.push(t);
                    }
                }
            }
            m = self.work.find(path, &x);
        }
        (x, m)
    }

    fn describe(&self, path: &MenuPath, id: ItemId) -> String {
        self.work.entry(path, id).map_or_else(
            || id.to_string(),
            |e| e.attrs.iter().map(attr_text).collect::<Vec<_>>().join(" "),
        )
    }

    fn remove_entries(&mut self, path: &MenuPath, ids: &[ItemId]) -> Restore<()> {
        let mut left: Vec<ItemId> = ids.to_vec();
        while let Some(id) = left.first().copied() {
            let (x, m) = self.address(path, id);
            // a find matching only entries that all go is fine (identical duplicates)
            if m.is_empty() || !m.iter().all(|i| left.contains(i)) {
                return Err(RestoreError::Ambiguous {
                    menu: path.to_cli(),
                    entry: self.describe(path, id),
                });
            }
            self.emit(path, Stmt::Remove(Selector::Find(x)))?;
            left.retain(|i| !m.contains(i));
        }
        Ok(())
    }

    fn change_entry(&mut self, path: &MenuPath, id: ItemId, target: &Entry) -> Restore<()> {
        let (x, m) = self.address(path, id);
        if m != [id] {
            return Err(RestoreError::Ambiguous {
                menu: path.to_cli(),
                entry: self.describe(path, id),
            });
        }
        let old: Vec<String> = self
            .work
            .entry(path, id)
            .map(|e| e.attrs.iter().map(attr_text).collect())
            .unwrap_or_default();
        let attrs: Vec<Attr> = target
            .attrs
            .iter()
            .filter(|a| !old.contains(&attr_text(a)))
            .cloned()
            .collect();
        let what = format!("property {{}} of the entry {}", x.render());
        unmasked(path, &attrs, &what)?;
        self.emit(
            path,
            Stmt::Set(SetStmt {
                selector: Selector::Find(x),
                attrs,
            }),
        )
    }

    fn add_entry(&mut self, path: &MenuPath, target: &Entry) -> Restore<()> {
        unmasked(path, &target.attrs, "property {} of an entry to add")?;
        self.emit(path, Stmt::Add(target.clone()))
    }

    /// The `set` statements of one menu: one `set` per selector with what differs.
    fn sets(&mut self, path: &MenuPath, target: &Config) -> Restore<()> {
        let mut selectors: Vec<Selector> = Vec::new();
        for s in target.set_stmts(path).chain(self.work.set_stmts(path)) {
            if !selectors.iter().any(|x| x.render() == s.selector.render()) {
                selectors.push(s.selector.clone());
            }
        }
        for sel in selectors {
            let want = merged(target, path, &sel);
            let have = merged(&self.work, path, &sel);
            let shown = if sel == Selector::None {
                "set".to_string()
            } else {
                format!("set {}", sel.render())
            };
            if let Some(lost) = have.iter().find(|a| want.iter().all(|b| b.key != a.key)) {
                return Err(RestoreError::DefaultUnknown {
                    menu: path.to_cli(),
                    what: format!("property {} of `{shown}`", lost.key),
                });
            }
            let old: Vec<String> = have.iter().map(attr_text).collect();
            let attrs: Vec<Attr> = want
                .into_iter()
                .filter(|a| !old.contains(&attr_text(a)))
                .collect();
            if attrs.is_empty() {
                continue;
            }
            if let Selector::Number(n) = sel {
                return Err(RestoreError::Unsupported {
                    menu: path.to_cli(),
                    what: format!(
                        "`{shown}` addresses a built-in item by its number {n}, which a script cannot address reliably (numbers count the items a print showed); restore it with an explicit script change"
                    ),
                });
            }
            unmasked(path, &attrs, &format!("property {{}} of `{shown}`"))?;
            self.emit(
                path,
                Stmt::Set(SetStmt {
                    selector: sel,
                    attrs,
                }),
            )?;
        }
        Ok(())
    }
}

/// The properties of a menu's `set` statements with this selector, later ones winning.
fn merged(cfg: &Config, path: &MenuPath, sel: &Selector) -> Vec<Attr> {
    let key = sel.render();
    let mut out: Vec<Attr> = Vec::new();
    for s in cfg.set_stmts(path).filter(|s| s.selector.render() == key) {
        for a in &s.attrs {
            match out.iter_mut().find(|x| x.key == a.key) {
                Some(x) => *x = a.clone(),
                None => out.push(a.clone()),
            }
        }
    }
    out
}

fn eq_term(key: &str, value: &str) -> FindTerm {
    FindTerm::Eq {
        key: key.to_string(),
        value: value.to_string(),
        quoted: rosconfig::needs_quotes(value),
    }
}

/// Refuses to write a value the archive masked (`what` has a `{}` for the property).
fn unmasked(path: &MenuPath, attrs: &[Attr], what: &str) -> Restore<()> {
    match attrs
        .iter()
        .find(|a| a.value.as_deref() == Some(rosconfig::MASK))
    {
        Some(a) => Err(RestoreError::Masked {
            menu: path.to_cli(),
            what: what.replacen("{}", &a.key, 1),
        }),
        None => Ok(()),
    }
}
