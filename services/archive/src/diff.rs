//! Diffs of two stored configurations: rosconfig's unified and semantic diffs, the latter
//! mirrored into serialisable types for events, the API and the UI.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::ArchiveError;

/// The difference between two versions of a device's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigDiff {
    /// Unified diff (`---`/`+++`/`@@`, 3 lines of context) of the stored texts; empty when
    /// they are equal.
    pub unified: String,
    /// Per-menu changes.
    pub semantic: SemanticDiff,
}

impl ConfigDiff {
    /// Diffs two texts as stored (normalised and masked); names label the `---`/`+++`
    /// lines. Pure.
    pub fn between(
        old: &str,
        new: &str,
        old_name: &str,
        new_name: &str,
    ) -> Result<ConfigDiff, ArchiveError> {
        let unified = rosconfig::unified_diff(old, new, old_name, new_name, 3);
        let parse =
            |t: &str| rosconfig::parse_export(t).map_err(|source| ArchiveError::Parse { source });
        let semantic = SemanticDiff::from(&rosconfig::semantic_diff(&parse(old)?, &parse(new)?));
        Ok(ConfigDiff { unified, semantic })
    }

    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.unified.is_empty() && self.semantic.is_empty()
    }
}

/// Semantic diff: the menus that changed, in first-seen order (mirrors
/// [`rosconfig::SemanticDiff`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SemanticDiff {
    /// Menus with changes.
    pub sections: Vec<MenuChanges>,
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

/// The changes of one menu.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MenuChanges {
    /// Menu path as written in exports (`/ip firewall filter`).
    pub path: String,
    /// Changes in order.
    pub changes: Vec<Change>,
}

/// One change within a menu.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
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
    /// A `set` statement whose properties changed, appeared or disappeared.
    SetChanged {
        /// Selector (`[ find default-name=ether1 ]`; empty for singletons).
        selector: String,
        /// Changed properties.
        changes: Vec<AttrChange>,
    },
    /// A `remove` statement only in the new configuration.
    RemoveAdded {
        /// Its selector.
        selector: String,
    },
    /// A `remove` statement only in the old configuration.
    RemoveDropped {
        /// Its selector.
        selector: String,
    },
}

/// A changed property.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttrChange {
    /// Property name.
    pub key: String,
    /// Old value (`None`: absent).
    pub old: Option<String>,
    /// New value (`None`: absent).
    pub new: Option<String>,
}

fn attr_changes(v: &[rosconfig::AttrChange]) -> Vec<AttrChange> {
    v.iter()
        .map(|c| AttrChange {
            key: c.key.clone(),
            old: c.old.clone(),
            new: c.new.clone(),
        })
        .collect()
}

impl From<&rosconfig::SemanticDiff> for SemanticDiff {
    fn from(d: &rosconfig::SemanticDiff) -> Self {
        let sections = d
            .sections
            .iter()
            .map(|s| MenuChanges {
                path: s.path.to_string(),
                changes: s
                    .changes
                    .iter()
                    .map(|c| match c {
                        rosconfig::Change::EntryAdded { attrs } => Change::EntryAdded {
                            attrs: attrs.clone(),
                        },
                        rosconfig::Change::EntryRemoved { attrs } => Change::EntryRemoved {
                            attrs: attrs.clone(),
                        },
                        rosconfig::Change::EntryChanged { identity, changes } => {
                            Change::EntryChanged {
                                identity: identity.clone(),
                                changes: attr_changes(changes),
                            }
                        }
                        rosconfig::Change::SetChanged { selector, changes } => Change::SetChanged {
                            selector: selector.clone(),
                            changes: attr_changes(changes),
                        },
                        rosconfig::Change::RemoveAdded(s) => Change::RemoveAdded {
                            selector: s.clone(),
                        },
                        rosconfig::Change::RemoveDropped(s) => Change::RemoveDropped {
                            selector: s.clone(),
                        },
                    })
                    .collect(),
            })
            .collect();
        SemanticDiff { sections }
    }
}

fn fmt_attrs(f: &mut fmt::Formatter<'_>, changes: &[AttrChange]) -> fmt::Result {
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

/// Human-readable, one line per change (the same format as rosconfig's).
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
                        fmt_attrs(f, changes)?;
                    }
                    Change::SetChanged { selector, changes } => {
                        writeln!(f, "  ~ set {selector}")?;
                        fmt_attrs(f, changes)?;
                    }
                    Change::RemoveAdded { selector } => writeln!(f, "  + remove {selector}")?,
                    Change::RemoveDropped { selector } => writeln!(f, "  - remove {selector}")?,
                }
            }
        }
        Ok(())
    }
}
