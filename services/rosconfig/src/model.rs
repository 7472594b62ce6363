//! The configuration model: ordered sections keyed by menu path, each holding `add`
//! entries (with RouterOS-style internal ids), `set` statements on existing or singleton
//! items, `remove` statements and RouterOS remark comments, in file order.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::error::ModelError;
use crate::lex::{LineEnding, encode_value, needs_quotes};

/// A menu path such as `/ip firewall filter` (stored as segments).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MenuPath(Vec<String>);

impl MenuPath {
    /// The root menu `/`.
    pub fn root() -> MenuPath {
        MenuPath(Vec::new())
    }

    /// Parses the CLI (`/ip firewall filter`) or API (`/ip/firewall/filter`) form; the
    /// leading slash is optional.
    pub fn parse(s: &str) -> MenuPath {
        MenuPath(
            s.split(['/', ' ', '\t'])
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect(),
        )
    }

    /// Builds a path from segments.
    pub fn from_segments<I, S>(segs: I) -> MenuPath
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        MenuPath(segs.into_iter().map(Into::into).collect())
    }

    /// The segments.
    pub fn segments(&self) -> &[String] {
        &self.0
    }

    /// True for `/`.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// CLI form with spaces: `/ip firewall filter` (`/` for the root).
    pub fn to_cli(&self) -> String {
        format!("/{}", self.0.join(" "))
    }

    /// API form with slashes: `/ip/firewall/filter`.
    pub fn to_api(&self) -> String {
        format!("/{}", self.0.join("/"))
    }

    /// Appends a segment.
    pub fn push(&mut self, seg: impl Into<String>) {
        self.0.push(seg.into());
    }

    /// The path with one more segment.
    pub fn join(&self, seg: impl Into<String>) -> MenuPath {
        let mut p = self.clone();
        p.push(seg);
        p
    }
}

impl fmt::Display for MenuPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_cli())
    }
}

/// A RouterOS internal item id, written `*1`, `*A`, `*FFFFFFFE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemId(pub u32);

impl fmt::Display for ItemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "*{:X}", self.0)
    }
}

/// `ItemId` parsing failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid item id")]
pub struct BadItemId;

impl FromStr for ItemId {
    type Err = BadItemId;
    fn from_str(s: &str) -> Result<ItemId, BadItemId> {
        let hex = s.strip_prefix('*').ok_or(BadItemId)?;
        if hex.is_empty() || hex.len() > 8 {
            return Err(BadItemId);
        }
        u32::from_str_radix(hex, 16)
            .map(ItemId)
            .map_err(|_| BadItemId)
    }
}

/// One `name=value` of a command, or a `!name` "not set" marker of verbose exports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    /// Full property name (v7 leading-dot shorthand is expanded on parse).
    pub key: String,
    /// Decoded value; `None` for a `!name` marker.
    pub value: Option<String>,
    /// Whether the value is written in double quotes.
    pub quoted: bool,
    /// A bare boolean flag written without `=` (v7 `... passive`); its value reads `yes`.
    pub bare: bool,
}

impl Attr {
    /// A value attribute, quoted when [`needs_quotes`] says so.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Attr {
        let value = value.into();
        Attr {
            key: key.into(),
            quoted: needs_quotes(&value),
            value: Some(value),
            bare: false,
        }
    }

    /// A `!name` marker (property not set, verbose exports).
    pub fn not_set(key: impl Into<String>) -> Attr {
        Attr {
            key: key.into(),
            value: None,
            quoted: false,
            bare: false,
        }
    }

    /// A bare flag (`passive`), value `yes`.
    pub fn flag(key: impl Into<String>) -> Attr {
        Attr {
            key: key.into(),
            value: Some("yes".to_string()),
            quoted: false,
            bare: true,
        }
    }

    /// The value, or `None` for a `!name` marker.
    pub fn value(&self) -> Option<&str> {
        self.value.as_deref()
    }

    /// The encoded value as written in an export (`"a b"`, `ether1`).
    pub fn encoded_value(&self) -> String {
        match &self.value {
            Some(v) => encode_value(v, self.quoted || needs_quotes(v)),
            None => String::new(),
        }
    }
}

/// One condition of a `[ find ... ]` expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FindTerm {
    /// `key=value`
    Eq {
        /// property
        key: String,
        /// value
        value: String,
        /// was quoted
        quoted: bool,
    },
    /// `key!=value`
    Ne {
        /// property
        key: String,
        /// value
        value: String,
        /// was quoted
        quoted: bool,
    },
    /// A boolean property used as a flag: `default`, `dynamic`, `!disabled`.
    Flag {
        /// property
        name: String,
        /// `!name`
        negated: bool,
    },
}

/// A `[ find ... ]` expression: conditions ANDed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FindExpr {
    /// Conditions, ANDed.
    pub terms: Vec<FindTerm>,
    /// Whether the source used the `where` keyword.
    pub where_kw: bool,
}

fn truthy(v: Option<&str>) -> bool {
    matches!(v, Some("yes" | "true"))
}

impl FindExpr {
    /// `[ find key=value ]`
    pub fn eq(key: impl Into<String>, value: impl Into<String>) -> FindExpr {
        let value = value.into();
        FindExpr {
            terms: vec![FindTerm::Eq {
                key: key.into(),
                quoted: needs_quotes(&value),
                value,
            }],
            where_kw: false,
        }
    }

    /// Evaluates against an item, given a property lookup.
    pub fn matches<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.terms.iter().all(|t| match t {
            FindTerm::Eq { key, value, .. } => get(key).unwrap_or("") == value,
            FindTerm::Ne { key, value, .. } => get(key).unwrap_or("") != value,
            FindTerm::Flag { name, negated } => truthy(get(name)) != *negated,
        })
    }

    /// Renders as RouterOS exports do: `[ find default-name=ether1 ]`.
    pub fn render(&self) -> String {
        let mut s = String::from("[ find ");
        if self.where_kw {
            s.push_str("where ");
        }
        for t in &self.terms {
            match t {
                FindTerm::Eq { key, value, quoted } => {
                    s.push_str(&format!(
                        "{key}={} ",
                        encode_value(value, *quoted || needs_quotes(value))
                    ));
                }
                FindTerm::Ne { key, value, quoted } => {
                    s.push_str(&format!(
                        "{key}!={} ",
                        encode_value(value, *quoted || needs_quotes(value))
                    ));
                }
                FindTerm::Flag { name, negated } => {
                    s.push_str(&format!("{}{name} ", if *negated { "!" } else { "" }));
                }
            }
        }
        s.push(']');
        s
    }
}

/// Which items a `set`/`remove` addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// No selector: the menu is a singleton (`/system identity set name=x`).
    None,
    /// `[ find ... ]`
    Find(FindExpr),
    /// A CLI row number (`set 0 ...`).
    Number(u32),
    /// An internal id (`set *FFFFFFFE ...`).
    Id(ItemId),
    /// An item name (`set ftp disabled=yes`, `set ether1 ...`), possibly a comma list.
    Name {
        /// the name
        name: String,
        /// was quoted
        quoted: bool,
    },
}

impl Selector {
    /// Text as written after the verb (empty for [`Selector::None`]).
    pub fn render(&self) -> String {
        match self {
            Selector::None => String::new(),
            Selector::Find(f) => f.render(),
            Selector::Number(n) => n.to_string(),
            Selector::Id(id) => id.to_string(),
            Selector::Name { name, quoted } => encode_value(name, *quoted || needs_quotes(name)),
        }
    }
}

/// An item created by `add`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Internal id assigned by the model (`*1`, `*2`, ... per menu).
    pub id: ItemId,
    /// Attributes in order.
    pub attrs: Vec<Attr>,
}

fn upsert_attr(attrs: &mut Vec<Attr>, attr: Attr) {
    if let Some(a) = attrs.iter_mut().find(|a| a.key == attr.key) {
        *a = attr;
        return;
    }
    // RouterOS exports list properties sorted by full name; keep that order when the
    // existing list is sorted, append otherwise.
    let sorted = attrs.windows(2).all(|w| w[0].key <= w[1].key);
    if sorted {
        let pos = attrs.partition_point(|a| a.key < attr.key);
        attrs.insert(pos, attr);
    } else {
        attrs.push(attr);
    }
}

/// The value of the first attribute named `key` (`None` when absent or a bare flag).
pub fn get_attr<'a>(attrs: &'a [Attr], key: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_deref())
}

impl Entry {
    /// Value of a property.
    pub fn get(&self, key: &str) -> Option<&str> {
        get_attr(&self.attrs, key)
    }

    /// Sets (or adds, in sorted position) a property.
    pub fn set_attr(&mut self, attr: Attr) {
        upsert_attr(&mut self.attrs, attr);
    }

    /// Removes a property; returns whether it was present.
    pub fn unset_attr(&mut self, key: &str) -> bool {
        let before = self.attrs.len();
        self.attrs.retain(|a| a.key != key);
        before != self.attrs.len()
    }
}

/// A `set` on existing (default, built-in) items or on a singleton menu.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetStmt {
    /// Which items.
    pub selector: Selector,
    /// Attributes in order.
    pub attrs: Vec<Attr>,
}

impl SetStmt {
    /// Value of a property.
    pub fn get(&self, key: &str) -> Option<&str> {
        get_attr(&self.attrs, key)
    }
}

/// One statement of a section, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stmt {
    /// `add ...`
    Add(Entry),
    /// `set ...`
    Set(SetStmt),
    /// `remove ...`
    Remove(Selector),
    /// A RouterOS remark line (`# managed by CAPsMAN`), text after `#` (state, not config).
    Remark(String),
}

/// The statements under one menu path line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Menu path.
    pub path: MenuPath,
    /// Statements in order.
    pub stmts: Vec<Stmt>,
}

/// Header comment lines of an export.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Header {
    /// The raw header comment lines, in order.
    pub lines: Vec<String>,
    /// `<date> <time>` of the first line.
    pub timestamp: Option<String>,
    /// RouterOS version of the first line.
    pub version: Option<String>,
    /// `# software id = ...` (may be empty).
    pub software_id: Option<String>,
    /// `# model = ...`
    pub model: Option<String>,
    /// `# serial number = ...`
    pub serial: Option<String>,
}

impl Header {
    /// Major RouterOS version from the header, if any.
    pub fn major_version(&self) -> Option<u32> {
        self.version.as_deref()?.split('.').next()?.parse().ok()
    }
}

/// Menus whose items must have unique names (RouterOS refuses a duplicate). Not every
/// menu does: the corpus has two `/routing bgp connection` entries with one name.
fn unique_names(path: &MenuPath) -> bool {
    const MENUS: &[&str] = &[
        "/ip/pool",
        "/ip/dhcp-server",
        "/ip/vrf",
        "/ip/hotspot",
        "/ip/hotspot/profile",
        "/ip/ipsec/profile",
        "/ip/ipsec/proposal",
        "/ip/ipsec/peer",
        "/system/script",
        "/system/scheduler",
        "/ppp/profile",
        "/ppp/secret",
        "/user",
        "/user/group",
        "/queue/simple",
        "/queue/tree",
        "/queue/type",
        "/routing/table",
        "/routing/ospf/instance",
        "/routing/ospf/area",
        "/caps-man/configuration",
        "/caps-man/datapath",
        "/caps-man/channel",
        "/caps-man/security",
    ];
    let api = path.to_api();
    let first = path.segments().first().map(String::as_str);
    (first == Some("interface")
        && !api.ends_with("/port")
        && !api.ends_with("/member")
        && !api.ends_with("/vlan"))
        || MENUS.contains(&api.as_str())
}

/// A parsed configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    /// Header comments.
    pub header: Header,
    /// Sections in file order (a path may occur more than once, as RouterOS sometimes does).
    pub sections: Vec<Section>,
    /// Line terminator of the source text.
    pub line_ending: LineEnding,
    /// Trailing non-config lines (a captured CLI prompt such as `[admin@x] > `).
    pub trailer: Vec<String>,
    /// Whether the source used the v7 leading-dot shorthand (`Some(true)` when seen);
    /// rendering uses it unless told otherwise, else decides by header version.
    pub dotted_shorthand: Option<bool>,
    next_id: BTreeMap<MenuPath, u32>,
}

impl Config {
    /// An empty configuration.
    pub fn new() -> Config {
        Config::default()
    }

    pub(crate) fn alloc_id(&mut self, path: &MenuPath) -> ItemId {
        let n = self.next_id.entry(path.clone()).or_insert(0);
        *n += 1;
        ItemId(*n)
    }

    /// Distinct menu paths in first-seen order.
    pub fn paths(&self) -> Vec<&MenuPath> {
        let mut out: Vec<&MenuPath> = Vec::new();
        for s in &self.sections {
            if !out.contains(&&s.path) {
                out.push(&s.path);
            }
        }
        out
    }

    /// All statements of a path across its sections.
    pub fn stmts<'a, 'p>(
        &'a self,
        path: &'p MenuPath,
    ) -> impl Iterator<Item = &'a Stmt> + use<'a, 'p> {
        self.sections
            .iter()
            .filter(move |s| &s.path == path)
            .flat_map(|s| s.stmts.iter())
    }

    /// `add` entries of a path in order.
    pub fn entries<'a, 'p>(
        &'a self,
        path: &'p MenuPath,
    ) -> impl Iterator<Item = &'a Entry> + use<'a, 'p> {
        self.stmts(path).filter_map(|s| match s {
            Stmt::Add(e) => Some(e),
            _ => None,
        })
    }

    /// `set` statements of a path in order.
    pub fn set_stmts<'a, 'p>(
        &'a self,
        path: &'p MenuPath,
    ) -> impl Iterator<Item = &'a SetStmt> + use<'a, 'p> {
        self.stmts(path).filter_map(|s| match s {
            Stmt::Set(e) => Some(e),
            _ => None,
        })
    }

    /// Entry by id.
    pub fn entry(&self, path: &MenuPath, id: ItemId) -> Option<&Entry> {
        self.entries(path).find(|e| e.id == id)
    }

    fn entry_mut(&mut self, path: &MenuPath, id: ItemId) -> Option<&mut Entry> {
        self.sections
            .iter_mut()
            .filter(|s| &s.path == path)
            .flat_map(|s| s.stmts.iter_mut())
            .find_map(|s| match s {
                Stmt::Add(e) if e.id == id => Some(e),
                _ => None,
            })
    }

    /// Ids of entries matching a predicate.
    pub fn find_where(&self, path: &MenuPath, pred: impl Fn(&Entry) -> bool) -> Vec<ItemId> {
        self.entries(path)
            .filter(|e| pred(e))
            .map(|e| e.id)
            .collect()
    }

    /// Ids of entries matching a `find` expression.
    pub fn find(&self, path: &MenuPath, expr: &FindExpr) -> Vec<ItemId> {
        self.find_where(path, |e| expr.matches(|k| e.get(k)))
    }

    /// Ids of entries whose properties equal all of `query`.
    pub fn find_by(&self, path: &MenuPath, query: &[(&str, &str)]) -> Vec<ItemId> {
        self.find_where(path, |e| query.iter().all(|(k, v)| e.get(k) == Some(*v)))
    }

    /// Resolves a selector to entry ids. `Find` may resolve to nothing; an id, number or
    /// name that denotes no entry is [`ModelError::NoSuchItem`].
    pub fn resolve(&self, path: &MenuPath, sel: &Selector) -> Result<Vec<ItemId>, ModelError> {
        match sel {
            Selector::None => Err(ModelError::NoSuchItem),
            Selector::Find(f) => Ok(self.find(path, f)),
            Selector::Id(id) => self
                .entry(path, *id)
                .map(|e| vec![e.id])
                .ok_or(ModelError::NoSuchItem),
            Selector::Number(n) => self
                .entries(path)
                .nth(*n as usize)
                .map(|e| vec![e.id])
                .ok_or(ModelError::NoSuchItem),
            Selector::Name { name, .. } => {
                let mut out = Vec::new();
                for part in name.split(',') {
                    if let Ok(id) = part.parse::<ItemId>()
                        && self.entry(path, id).is_some()
                    {
                        out.push(id);
                        continue;
                    }
                    let ids = self.find_by(path, &[("name", part)]);
                    if ids.is_empty() {
                        return Err(ModelError::NoSuchItem);
                    }
                    out.extend(ids);
                }
                Ok(out)
            }
        }
    }

    fn section_index_for_insert(&mut self, path: &MenuPath) -> usize {
        match self.sections.iter().rposition(|s| &s.path == path) {
            Some(i) => i,
            None => {
                self.sections.push(Section {
                    path: path.clone(),
                    stmts: Vec::new(),
                });
                self.sections.len() - 1
            }
        }
    }

    /// Appends an entry without validation; returns its new id.
    pub fn add(&mut self, path: &MenuPath, mut attrs: Vec<Attr>) -> ItemId {
        attrs.sort_by(|a, b| a.key.cmp(&b.key));
        let id = self.alloc_id(path);
        let idx = self.section_index_for_insert(path);
        if let Some(sec) = self.sections.get_mut(idx) {
            // after the last `add` of the section (or at its end)
            let pos = sec
                .stmts
                .iter()
                .rposition(|s| matches!(s, Stmt::Add(_)))
                .map(|p| p + 1)
                .unwrap_or(sec.stmts.len());
            sec.stmts.insert(pos, Stmt::Add(Entry { id, attrs }));
        }
        id
    }

    /// Like [`Config::add`] but refuses duplicates the way RouterOS does for named items
    /// (`failure: item with such name already exists`) and `/ip address` entries
    /// (`failure: already have such address`).
    pub fn add_checked(&mut self, path: &MenuPath, attrs: Vec<Attr>) -> Result<ItemId, ModelError> {
        if let Some(name) = get_attr(&attrs, "name")
            && unique_names(path)
            && !self.find_by(path, &[("name", name)]).is_empty()
        {
            return Err(ModelError::DuplicateName);
        }
        if path.to_api() == "/ip/address" || path.to_api() == "/ipv6/address" {
            let addr = get_attr(&attrs, "address")
                .ok_or_else(|| ModelError::MissingArgument("address".into()))?;
            let iface = get_attr(&attrs, "interface").unwrap_or("");
            if !self
                .find_by(path, &[("address", addr), ("interface", iface)])
                .is_empty()
            {
                return Err(ModelError::DuplicateAddress);
            }
        }
        Ok(self.add(path, attrs))
    }

    /// Sets properties of an entry.
    pub fn set(&mut self, path: &MenuPath, id: ItemId, attrs: Vec<Attr>) -> Result<(), ModelError> {
        if let Some(name) = get_attr(&attrs, "name")
            && unique_names(path)
            && self
                .find_by(path, &[("name", name)])
                .iter()
                .any(|other| *other != id)
        {
            return Err(ModelError::DuplicateName);
        }
        let e = self.entry_mut(path, id).ok_or(ModelError::NoSuchItem)?;
        for a in attrs {
            e.set_attr(a);
        }
        Ok(())
    }

    /// Removes properties of an entry (`unset`).
    pub fn unset(&mut self, path: &MenuPath, id: ItemId, keys: &[&str]) -> Result<(), ModelError> {
        let e = self.entry_mut(path, id).ok_or(ModelError::NoSuchItem)?;
        for k in keys {
            e.unset_attr(k);
        }
        Ok(())
    }

    /// Removes an entry.
    pub fn remove(&mut self, path: &MenuPath, id: ItemId) -> Result<(), ModelError> {
        for sec in self.sections.iter_mut().filter(|s| &s.path == path) {
            if let Some(pos) = sec
                .stmts
                .iter()
                .position(|s| matches!(s, Stmt::Add(e) if e.id == id))
            {
                sec.stmts.remove(pos);
                return Ok(());
            }
        }
        Err(ModelError::NoSuchItem)
    }

    /// The `set` statement with exactly this selector, if any.
    pub fn set_stmt(&self, path: &MenuPath, sel: &Selector) -> Option<&SetStmt> {
        self.set_stmts(path).find(|s| &s.selector == sel)
    }

    /// Merges properties into the `set` statement with this selector, creating it at the
    /// end of the path's last section when absent.
    pub fn upsert_set(&mut self, path: &MenuPath, sel: &Selector, attrs: Vec<Attr>) {
        for sec in self.sections.iter_mut().filter(|s| &s.path == path) {
            for st in sec.stmts.iter_mut() {
                if let Stmt::Set(s) = st
                    && &s.selector == sel
                {
                    for a in attrs {
                        upsert_attr(&mut s.attrs, a);
                    }
                    return;
                }
            }
        }
        let idx = self.section_index_for_insert(path);
        let mut sorted = attrs;
        sorted.sort_by(|a, b| a.key.cmp(&b.key));
        if let Some(sec) = self.sections.get_mut(idx) {
            sec.stmts.push(Stmt::Set(SetStmt {
                selector: sel.clone(),
                attrs: sorted,
            }));
        }
    }

    /// Removes properties from the `set` statement with this selector.
    pub fn unset_on(&mut self, path: &MenuPath, sel: &Selector, keys: &[&str]) {
        for sec in self.sections.iter_mut().filter(|s| &s.path == path) {
            for st in sec.stmts.iter_mut() {
                if let Stmt::Set(s) = st
                    && &s.selector == sel
                {
                    s.attrs.retain(|a| !keys.contains(&a.key.as_str()));
                }
            }
        }
    }

    /// Singleton settings of a menu: the properties of its selector-less `set` statements,
    /// later ones overriding earlier ones.
    pub fn settings(&self, path: &MenuPath) -> Vec<Attr> {
        let mut out: Vec<Attr> = Vec::new();
        for s in self
            .set_stmts(path)
            .filter(|s| s.selector == Selector::None)
        {
            for a in &s.attrs {
                upsert_attr(&mut out, a.clone());
            }
        }
        out
    }

    /// One singleton setting.
    pub fn setting(&self, path: &MenuPath, key: &str) -> Option<String> {
        self.settings(path)
            .into_iter()
            .find(|a| a.key == key)
            .and_then(|a| a.value)
    }

    /// Sets singleton settings (`/system identity set name=x`).
    pub fn set_settings(&mut self, path: &MenuPath, attrs: Vec<Attr>) {
        self.upsert_set(path, &Selector::None, attrs);
    }

    /// Total number of `add` entries.
    pub fn entry_count(&self) -> usize {
        self.sections
            .iter()
            .flat_map(|s| s.stmts.iter())
            .filter(|s| matches!(s, Stmt::Add(_)))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_render_and_parse() {
        assert_eq!(ItemId(0xFFFF_FFFE).to_string(), "*FFFFFFFE");
        assert_eq!("*1A".parse::<ItemId>(), Ok(ItemId(0x1A)));
        assert!("1A".parse::<ItemId>().is_err());
        assert!("*".parse::<ItemId>().is_err());
        assert!("*123456789".parse::<ItemId>().is_err());
    }

    #[test]
    fn menu_path_forms() {
        let p = MenuPath::parse("/ip/firewall/filter");
        assert_eq!(p, MenuPath::parse("/ip firewall filter"));
        assert_eq!(p.to_cli(), "/ip firewall filter");
        assert_eq!(p.to_api(), "/ip/firewall/filter");
        assert_eq!(MenuPath::root().to_cli(), "/");
    }

    #[test]
    fn add_set_remove_find() {
        let mut c = Config::new();
        let p = MenuPath::parse("/ip address");
        let a = c
            .add_checked(
                &p,
                vec![
                    Attr::new("interface", "ether1"),
                    Attr::new("address", "10.0.0.1/24"),
                ],
            )
            .unwrap();
        assert_eq!(a, ItemId(1));
        assert_eq!(
            c.add_checked(
                &p,
                vec![
                    Attr::new("address", "10.0.0.1/24"),
                    Attr::new("interface", "ether1")
                ]
            ),
            Err(ModelError::DuplicateAddress)
        );
        let b = c.add(
            &p,
            vec![
                Attr::new("address", "10.0.1.1/24"),
                Attr::new("interface", "ether2"),
            ],
        );
        assert_eq!(b, ItemId(2));
        // attributes sorted like an export
        assert_eq!(c.entry(&p, a).unwrap().attrs[0].key, "address");
        c.set(&p, b, vec![Attr::new("comment", "x y")]).unwrap();
        assert_eq!(c.entry(&p, b).unwrap().get("comment"), Some("x y"));
        assert_eq!(c.find_by(&p, &[("interface", "ether2")]), vec![b]);
        c.remove(&p, a).unwrap();
        assert_eq!(c.remove(&p, a), Err(ModelError::NoSuchItem));
        assert_eq!(c.set(&p, a, vec![]), Err(ModelError::NoSuchItem));
        // ids are not reused
        let d = c.add(&p, vec![Attr::new("address", "10.0.2.1/24")]);
        assert_eq!(d, ItemId(3));
    }

    #[test]
    fn singleton_settings() {
        let mut c = Config::new();
        let p = MenuPath::parse("/system identity");
        c.set_settings(&p, vec![Attr::new("name", "r1")]);
        c.set_settings(&p, vec![Attr::new("name", "r2")]);
        assert_eq!(c.setting(&p, "name").as_deref(), Some("r2"));
        assert_eq!(c.set_stmts(&p).count(), 1);
    }
}
