//! Export parser: text -> [`Config`]. Accepts everything the 16-file corpus contains:
//! header comments, menu path lines (also one-line `terse` commands with a path), `add`,
//! `set`, `remove`, selectors, quoting and escapes, continuations, CRLF/LF, RouterOS remark
//! comments, v7 dotted properties with leading-dot shorthand, verbose `!name` markers and a
//! trailing captured CLI prompt.

use crate::error::{ParseError, ParseErrorKind};
use crate::lex::{LineEnding, Tok, logical_lines, tokenize};
use crate::model::{
    Attr, Config, Entry, FindExpr, FindTerm, Header, ItemId, MenuPath, Section, Selector, SetStmt,
    Stmt,
};

/// Command verbs that end a menu path on a one-line command (`/ip address add ...`).
pub(crate) const VERBS: &[&str] = &[
    "add",
    "set",
    "remove",
    "enable",
    "disable",
    "unset",
    "comment",
    "move",
    "print",
    "export",
    "import",
    "run",
    "load",
    "save",
    "reboot",
    "shutdown",
    "install",
    "download",
    "check-for-updates",
    "get",
    "find",
    "edit",
    "reset",
    "reset-counters",
    "reset-configuration",
    "monitor",
    "apply-changes",
    "uninstall",
    "unschedule",
    "downgrade",
    "listen",
    "cancel",
];

/// Whether `word` is a verb after the path `p` (`upgrade` is a verb only under
/// `/system routerboard`; `/system upgrade` is a v6 menu).
fn is_verb(p: &MenuPath, word: &str) -> bool {
    VERBS.contains(&word)
        || (word == "upgrade" && p.segments().last().is_some_and(|l| l == "routerboard"))
}

/// A command line split into path, verb and arguments (shared by the export and the
/// change-script parser).
#[derive(Debug, Clone)]
pub(crate) struct RawCommand {
    /// Absolute path given on the line (`/ip address ...`), if any.
    pub path: Option<MenuPath>,
    /// Verb and its column.
    pub verb: Option<(String, usize)>,
    /// Remaining tokens.
    pub args: Vec<Tok>,
}

/// Splits tokens of one command into path/verb/args.
pub(crate) fn split_command(toks: Vec<Tok>) -> RawCommand {
    let mut it = toks.into_iter().peekable();
    let mut path = None;
    let mut verb = None;
    if let Some(Tok::Word { text, col }) = it.peek().cloned() {
        if text.starts_with('/') {
            it.next();
            let mut p = MenuPath::root();
            let mut segs: Vec<String> = text
                .split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            // slash form may carry the verb as last segment: /ip/address/add
            let last = segs.pop();
            for s in segs {
                p.push(s);
            }
            if let Some(l) = last {
                if is_verb(&p, &l) {
                    verb = Some((l, col));
                } else {
                    p.push(l);
                }
            }
            if verb.is_none() {
                while let Some(Tok::Word { text, col }) = it.peek().cloned() {
                    it.next();
                    if is_verb(&p, &text) {
                        verb = Some((text, col));
                        break;
                    }
                    p.push(text);
                }
            }
            path = Some(p);
        } else if !text.starts_with('!') {
            it.next();
            verb = Some((text, col));
        }
    }
    RawCommand {
        path,
        verb,
        args: it.collect(),
    }
}

/// Parses the inner text of `[ find ... ]`.
pub(crate) fn parse_find(inner: &str, line: usize, col: usize) -> Result<FindExpr, ParseError> {
    let bad = || ParseError::new(line, col, ParseErrorKind::BadSelector(format!("[{inner}]")));
    let toks = tokenize(inner, line).map_err(|_| bad())?;
    let mut it = toks.into_iter();
    match it.next() {
        Some(Tok::Word { text, .. }) if text == "find" => {}
        _ => return Err(bad()),
    }
    let mut expr = FindExpr::default();
    for (i, t) in it.enumerate() {
        match t {
            Tok::Word { text, .. } if i == 0 && text == "where" => expr.where_kw = true,
            Tok::Word { text, .. } if text == "and" => {}
            Tok::Word { text, .. } => match text.strip_prefix('!') {
                Some(n) => expr.terms.push(FindTerm::Flag {
                    name: n.to_string(),
                    negated: true,
                }),
                None => expr.terms.push(FindTerm::Flag {
                    name: text,
                    negated: false,
                }),
            },
            Tok::Pair {
                key, value, quoted, ..
            } => match key.strip_suffix('!') {
                Some(k) => expr.terms.push(FindTerm::Ne {
                    key: k.to_string(),
                    value,
                    quoted,
                }),
                None => expr.terms.push(FindTerm::Eq { key, value, quoted }),
            },
            _ => return Err(bad()),
        }
    }
    Ok(expr)
}

/// Turns a positional token into a selector.
pub(crate) fn selector_from(tok: &Tok, line: usize) -> Result<Selector, ParseError> {
    match tok {
        Tok::Bracket { inner, col } => Ok(Selector::Find(parse_find(inner, line, *col)?)),
        Tok::Word { text, .. } => {
            if !text.is_empty()
                && text.chars().all(|c| c.is_ascii_digit())
                && let Ok(n) = text.parse()
            {
                return Ok(Selector::Number(n));
            }
            if let Ok(id) = text.parse::<ItemId>() {
                return Ok(Selector::Id(id));
            }
            Ok(Selector::Name {
                name: text.clone(),
                quoted: false,
            })
        }
        Tok::Quoted { text, .. } => Ok(Selector::Name {
            name: text.clone(),
            quoted: true,
        }),
        other => Err(ParseError::new(
            line,
            other.col(),
            ParseErrorKind::Unexpected(tok_text(other)),
        )),
    }
}

pub(crate) fn tok_text(t: &Tok) -> String {
    match t {
        Tok::Word { text, .. } | Tok::Quoted { text, .. } => text.clone(),
        Tok::Pair { key, .. } => format!("{key}="),
        Tok::Bracket { inner, .. } => format!("[{inner}]"),
        Tok::Semi { .. } => ";".into(),
    }
}

/// How bare words of a command are read by [`collect_attrs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WordMode {
    /// `add`: every bare word is a flag property (`passive`).
    Flags,
    /// `set`/`remove`: a first token before any property is the selector; later bare
    /// words are flags.
    SelectorThenFlags,
    /// Global commands: bare words stay positional.
    Positional,
}

/// Collects `key=value`, `!key` and flag arguments, expanding the `.x` shorthand.
/// Returns the attributes and the tokens that were not attributes (positional).
pub(crate) fn collect_attrs(args: Vec<Tok>, mode: WordMode) -> (Vec<Attr>, Vec<Tok>, bool) {
    let mut attrs: Vec<Attr> = Vec::new();
    let mut positional = Vec::new();
    let mut shorthand = false;
    for (i, t) in args.into_iter().enumerate() {
        let flag_ok = match mode {
            WordMode::Flags => true,
            WordMode::SelectorThenFlags => i > 0,
            WordMode::Positional => false,
        };
        match t {
            Tok::Pair {
                key, value, quoted, ..
            } => {
                let key = match key.strip_prefix('.') {
                    Some(rest) if !rest.is_empty() => {
                        let prefix = attrs
                            .iter()
                            .rev()
                            .find_map(|a| a.key.split_once('.').map(|(p, _)| p.to_string()));
                        match prefix {
                            Some(p) => {
                                shorthand = true;
                                format!("{p}.{rest}")
                            }
                            None => key,
                        }
                    }
                    _ => key,
                };
                attrs.push(Attr {
                    key,
                    value: Some(value),
                    quoted,
                    bare: false,
                });
            }
            Tok::Word { ref text, .. }
                if mode != WordMode::Positional && text.len() > 1 && text.starts_with('!') =>
            {
                attrs.push(Attr::not_set(&text[1..]));
            }
            Tok::Word { ref text, .. }
                if flag_ok
                    && text
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') =>
            {
                attrs.push(Attr::flag(text.clone()));
            }
            other => positional.push(other),
        }
    }
    (attrs, positional, shorthand)
}

fn is_prompt(line: &str) -> bool {
    let t = line.trim_end();
    t.starts_with('[') && t.contains('@') && (t.ends_with("] >") || t.contains("] > "))
}

fn parse_header_line(h: &mut Header, text: &str) {
    let body = text.trim_start_matches('#').trim_start();
    if h.lines.is_empty()
        && let Some((ts, ver)) = body.split_once(" by RouterOS ")
    {
        h.timestamp = Some(ts.trim().to_string());
        h.version = Some(ver.trim().to_string());
    }
    if let Some(v) = body.strip_prefix("software id =") {
        h.software_id = Some(v.trim().to_string());
    } else if let Some(v) = body.strip_prefix("model =") {
        h.model = Some(v.trim().to_string());
    } else if let Some(v) = body.strip_prefix("serial number =") {
        h.serial = Some(v.trim().to_string());
    }
    h.lines.push(text.to_string());
}

/// Parses a whole export.
pub fn parse_export(text: &str) -> Result<Config, ParseError> {
    let mut cfg = Config::new();
    cfg.line_ending = LineEnding::detect(text);
    let mut in_header = true;
    let mut current: Option<usize> = None; // index of current section
    for ll in logical_lines(text) {
        let trimmed = ll.text.trim_start();
        if trimmed.trim_end().is_empty() {
            continue;
        }
        if !cfg.trailer.is_empty() {
            return Err(ParseError::new(
                ll.line,
                1,
                ParseErrorKind::Unexpected(trimmed.to_string()),
            ));
        }
        if let Some(rest) = trimmed.strip_prefix('#') {
            if in_header {
                parse_header_line(&mut cfg.header, trimmed);
            } else {
                let idx = ensure_section(&mut cfg, current, &MenuPath::root());
                current = Some(idx);
                if let Some(sec) = cfg.sections.get_mut(idx) {
                    sec.stmts.push(Stmt::Remark(rest.to_string()));
                }
            }
            continue;
        }
        if is_prompt(trimmed) {
            cfg.trailer.push(ll.text.clone());
            continue;
        }
        in_header = false;
        let toks = tokenize(&ll.text, ll.line)?;
        if let Some(t) = toks.iter().find(|t| matches!(t, Tok::Semi { .. })) {
            return Err(ParseError::new(
                ll.line,
                t.col(),
                ParseErrorKind::ExpectedEndOfCommand,
            ));
        }
        let raw = split_command(toks);
        if let Some(path) = &raw.path {
            // a menu line (possibly with a one-line command)
            let reuse = current
                .and_then(|i| cfg.sections.get(i))
                .is_some_and(|s| &s.path == path && raw.verb.is_some() && !s.stmts.is_empty());
            if !reuse {
                cfg.sections.push(Section {
                    path: path.clone(),
                    stmts: Vec::new(),
                });
                current = Some(cfg.sections.len() - 1);
            }
            if raw.verb.is_none() {
                if let Some(t) = raw.args.first() {
                    return Err(ParseError::new(
                        ll.line,
                        t.col(),
                        ParseErrorKind::Unexpected(tok_text(t)),
                    ));
                }
                continue;
            }
        }
        let Some(idx) = current else {
            return Err(ParseError::new(
                ll.line,
                1,
                ParseErrorKind::CommandOutsideMenu,
            ));
        };
        let Some((verb, vcol)) = raw.verb else {
            let col = raw.args.first().map(Tok::col).unwrap_or(1);
            return Err(ParseError::new(
                ll.line,
                col,
                ParseErrorKind::Unexpected(trimmed.to_string()),
            ));
        };
        let path = cfg
            .sections
            .get(idx)
            .map(|s| s.path.clone())
            .unwrap_or_default();
        let stmt = build_stmt(&mut cfg, &path, &verb, vcol, raw.args, ll.line)?;
        if let Some(sec) = cfg.sections.get_mut(idx) {
            sec.stmts.push(stmt);
        }
    }
    Ok(cfg)
}

fn ensure_section(cfg: &mut Config, current: Option<usize>, root: &MenuPath) -> usize {
    match current {
        Some(i) => i,
        None => {
            cfg.sections.push(Section {
                path: root.clone(),
                stmts: Vec::new(),
            });
            cfg.sections.len() - 1
        }
    }
}

fn build_stmt(
    cfg: &mut Config,
    path: &MenuPath,
    verb: &str,
    vcol: usize,
    args: Vec<Tok>,
    line: usize,
) -> Result<Stmt, ParseError> {
    let mode = if verb == "add" {
        WordMode::Flags
    } else {
        WordMode::SelectorThenFlags
    };
    let (attrs, positional, shorthand) = collect_attrs(args, mode);
    if shorthand {
        cfg.dotted_shorthand = Some(true);
    }
    match verb {
        "add" => {
            if let Some(t) = positional.first() {
                return Err(ParseError::new(
                    line,
                    t.col(),
                    ParseErrorKind::Unexpected(tok_text(t)),
                ));
            }
            let id = cfg.alloc_id(path);
            Ok(Stmt::Add(Entry { id, attrs }))
        }
        "set" => {
            let selector = match positional.as_slice() {
                [] => Selector::None,
                [one] => selector_from(one, line)?,
                [_, extra, ..] => {
                    return Err(ParseError::new(
                        line,
                        extra.col(),
                        ParseErrorKind::ExpectedEndOfCommand,
                    ));
                }
            };
            Ok(Stmt::Set(SetStmt { selector, attrs }))
        }
        "remove" => {
            let selector = match (positional.as_slice(), attrs.as_slice()) {
                ([one], []) => selector_from(one, line)?,
                ([], [a]) if a.key == "numbers" => {
                    let v = a.value.clone().unwrap_or_default();
                    selector_from(&Tok::Word { text: v, col: vcol }, line)?
                }
                _ => {
                    return Err(ParseError::new(
                        line,
                        vcol,
                        ParseErrorKind::ExpectedEndOfCommand,
                    ));
                }
            };
            Ok(Stmt::Remove(selector))
        }
        other => Err(ParseError::new(
            line,
            vcol,
            ParseErrorKind::BadCommand(other.to_string()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_small_export() {
        let t = "# 2025-03-24 14:13:48 by RouterOS 7.18.2\n# software id = D555\n#\n# model = X\n\
                 /interface wifi\nset [ find default-name=wifi1 ] configuration.country=\"United Kingdom\" .mode=ap\n\
                 /ip address\nadd address=10.0.0.1/24 interface=ether1\n# disabled\nadd address=10.0.0.2/24 interface=ether2\n";
        let c = parse_export(t).unwrap();
        assert_eq!(c.header.version.as_deref(), Some("7.18.2"));
        assert_eq!(c.header.model.as_deref(), Some("X"));
        assert_eq!(c.sections.len(), 2);
        let wifi = &c.sections[0].stmts[0];
        let Stmt::Set(s) = wifi else { panic!() };
        assert_eq!(s.attrs[1].key, "configuration.mode");
        assert!(matches!(&s.selector, Selector::Find(f) if f.terms.len() == 1));
        let p = MenuPath::parse("/ip address");
        let ids: Vec<_> = c.entries(&p).map(|e| e.id.to_string()).collect();
        assert_eq!(ids, vec!["*1", "*2"]);
        assert!(matches!(&c.sections[1].stmts[1], Stmt::Remark(r) if r == " disabled"));
    }

    #[test]
    fn errors_carry_line_numbers() {
        let e = parse_export("# h\n/ip address\nadd address=\"x\n").unwrap_err();
        assert_eq!(e.line, 3);
        let e = parse_export("add a=b\n").unwrap_err();
        assert_eq!(e.kind, ParseErrorKind::CommandOutsideMenu);
        let e = parse_export("/ip address\nfrobnicate x=1\n").unwrap_err();
        assert_eq!(e.kind, ParseErrorKind::BadCommand("frobnicate".into()));
        assert_eq!(e.line, 2);
    }

    #[test]
    fn terse_lines_share_a_section() {
        let c = parse_export("/ip address add address=1.1.1.1/32 interface=lo\n/ip address add address=1.1.1.2/32 interface=lo\n").unwrap();
        assert_eq!(c.sections.len(), 1);
        assert_eq!(c.entry_count(), 2);
    }
}
