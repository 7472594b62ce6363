//! Export parser: text -> [`Config`]. Accepts everything the 16-file corpus contains:
//! header comments, menu path lines (also one-line `terse` commands with a path), `add`,
//! `set`, `remove`, selectors, quoting and escapes, continuations, CRLF/LF, RouterOS remark
//! comments, v7 dotted properties with leading-dot shorthand, verbose `!name` markers and a
//! trailing captured CLI prompt; and refuses what is not export syntax, naming the line
//! (see [`parse_export`]).

use crate::error::{ParseError, ParseErrorKind};
use crate::lex::{LineEnding, LogicalLine, Tok, logical_lines, tokenize};
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

/// The first character of `text` that no export contains: a control character other than
/// tab, or U+FFFD (what lossy UTF-8 decoding leaves of invalid bytes). Returns its 1-based
/// column.
fn forbidden_char(text: &str) -> Option<(usize, char)> {
    text.chars()
        .enumerate()
        .find(|(_, c)| (c.is_control() && *c != '\t') || *c == '\u{FFFD}')
        .map(|(i, c)| (i + 1, c))
}

/// Whether `seg` can be a RouterOS menu name: lowercase letters, digits and `-`, starting
/// with a letter or digit (every menu of the corpus and of the notes).
fn is_menu_name(seg: &str) -> bool {
    seg.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && seg
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Whether `key` can be a RouterOS property name: lowercase letters, digits, `-`, `.`
/// (v7 sub-properties) and `/` (`basic-rates-a/g`), starting with a letter or digit.
pub(crate) fn is_property_name(key: &str) -> bool {
    key.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '/'))
}

/// A token for an error message, cut to 40 characters (the line itself is in the excerpt).
fn cut(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// Export commands: what `/export` writes (other verbs are `bad command name`).
const EXPORT_VERBS: &[&str] = &["add", "set", "remove"];

/// Parses a whole export: the compact (default), `terse` (every command on one line after
/// its full menu path; a menu path line on its own may appear too) and `verbose` forms,
/// which all give the same kind of model (terse and compact text of one configuration give
/// equal models).
///
/// Text that is not RouterOS export syntax is an error naming the line and showing it
/// ([`ParseError::excerpt`]): a command that is not `add`/`set`/`remove` (a stray
/// `Uploaded by ...` or `HTTP/1.1 200 OK` line), a menu path or property name RouterOS
/// cannot have, control characters (binary data), an unterminated quote, a line
/// continuation at the end of the text, or a captured CLI prompt with more text after it
/// (a trailing prompt, as in a captured session, is kept as [`Config::trailer`]).
pub fn parse_export(text: &str) -> Result<Config, ParseError> {
    let mut cfg = Config::new();
    cfg.line_ending = LineEnding::detect(text);
    let mut in_header = true;
    let mut current: Option<usize> = None; // index of current section
    let mut prompt_at: Option<(usize, String)> = None; // first trailing prompt line
    for ll in logical_lines(text) {
        parse_line(&mut cfg, &ll, &mut in_header, &mut current, &mut prompt_at)
            .map_err(|e| e.with_line(&ll.text))?;
    }
    Ok(cfg)
}

/// Parses one logical line into `cfg`.
fn parse_line(
    cfg: &mut Config,
    ll: &LogicalLine,
    in_header: &mut bool,
    current: &mut Option<usize>,
    prompt_at: &mut Option<(usize, String)>,
) -> Result<(), ParseError> {
    let trimmed = ll.text.trim_start();
    let blank = trimmed.trim_end().is_empty();
    if let Some((line, prompt)) = prompt_at
        && !blank
        && !is_prompt(trimmed)
    {
        return Err(ParseError::new(*line, 1, ParseErrorKind::PromptNotAtEnd).with_line(prompt));
    }
    if let Some((col, c)) = forbidden_char(&ll.text) {
        return Err(ParseError::new(
            ll.line,
            col,
            ParseErrorKind::ControlCharacter(c),
        ));
    }
    if ll.open {
        return Err(ParseError::new(
            ll.line,
            ll.text.chars().count().max(1),
            ParseErrorKind::ContinuationAtEnd,
        ));
    }
    if blank {
        return Ok(());
    }
    if is_prompt(trimmed) {
        prompt_at.get_or_insert_with(|| (ll.line, ll.text.clone()));
        cfg.trailer.push(ll.text.clone());
        return Ok(());
    }
    if let Some(rest) = trimmed.strip_prefix('#') {
        if *in_header {
            parse_header_line(&mut cfg.header, trimmed);
        } else {
            let idx = ensure_section(cfg, *current, &MenuPath::root());
            *current = Some(idx);
            if let Some(sec) = cfg.sections.get_mut(idx) {
                sec.stmts.push(Stmt::Remark(rest.to_string()));
            }
        }
        return Ok(());
    }
    *in_header = false;
    let toks = tokenize(&ll.text, ll.line)?;
    if let Some(t) = toks.iter().find(|t| matches!(t, Tok::Semi { .. })) {
        return Err(ParseError::new(
            ll.line,
            t.col(),
            ParseErrorKind::ExpectedEndOfCommand,
        ));
    }
    let path_col = toks.first().map(Tok::col).unwrap_or(1);
    let raw = split_command(toks);
    if let Some(path) = &raw.path {
        if let Some(bad) = path.segments().iter().find(|s| !is_menu_name(s)) {
            return Err(ParseError::new(
                ll.line,
                path_col,
                ParseErrorKind::BadMenuPath(bad.clone()),
            ));
        }
        if raw.verb.is_none() {
            if let Some(t) = raw.args.first() {
                return Err(ParseError::new(
                    ll.line,
                    t.col(),
                    ParseErrorKind::Unexpected(tok_text(t)),
                ));
            }
            // a menu path line: it always starts a section
            cfg.sections.push(Section {
                path: path.clone(),
                stmts: Vec::new(),
            });
            *current = Some(cfg.sections.len() - 1);
            return Ok(());
        }
    }
    let Some((verb, vcol)) = raw.verb else {
        // the line is in the error's excerpt; the kind names the first token only
        let (col, what) = raw
            .args
            .first()
            .map(|t| (t.col(), tok_text(t)))
            .unwrap_or((1, String::new()));
        return Err(ParseError::new(
            ll.line,
            col,
            ParseErrorKind::Unexpected(cut(&what)),
        ));
    };
    if !EXPORT_VERBS.contains(&verb.as_str()) {
        return Err(ParseError::new(
            ll.line,
            vcol,
            ParseErrorKind::BadCommand(cut(&verb)),
        ));
    }
    if let Some(path) = raw.path {
        // a one-line (terse) command: it continues the current section when that is of
        // the same menu (consecutive terse lines, or a menu line just before), else it
        // starts one
        let same = current
            .and_then(|i| cfg.sections.get(i))
            .is_some_and(|s| s.path == path);
        if !same {
            cfg.sections.push(Section {
                path,
                stmts: Vec::new(),
            });
            *current = Some(cfg.sections.len() - 1);
        }
    }
    let Some(idx) = *current else {
        return Err(ParseError::new(
            ll.line,
            1,
            ParseErrorKind::CommandOutsideMenu,
        ));
    };
    let path = cfg
        .sections
        .get(idx)
        .map(|s| s.path.clone())
        .unwrap_or_default();
    if path.is_root() {
        // `/` alone is a menu line, but the root menu has no items to add, set or remove
        return Err(ParseError::new(
            ll.line,
            1,
            ParseErrorKind::BadMenuPath("/".into()),
        ));
    }
    let stmt = build_stmt(cfg, &path, &verb, vcol, raw.args, ll.line)?;
    if let Some(sec) = cfg.sections.get_mut(idx) {
        sec.stmts.push(stmt);
    }
    Ok(())
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
    if let Some(a) = attrs.iter().find(|a| !is_property_name(&a.key)) {
        return Err(ParseError::new(
            line,
            vcol,
            ParseErrorKind::BadProperty(a.key.clone()),
        ));
    }
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

    /// A hand-written v7 export and its terse twin (quoting, escapes, a continuation inside
    /// a quoted value, `[ find ... ]` selectors, dotted shorthand, remarks, `remove`, a menu
    /// line on its own, two sections of one menu).
    const COMPACT: &str = "# 2025-03-24 14:13:48 by RouterOS 7.18.2\n# software id = D555\n#\n\
        /interface bridge\nadd admin-mac=AA:BB:CC:00:00:01 auto-mac=no comment=\"LAN \\\"main\\\" \\$x\" name=bridge\n\
        /interface wifi\n# managed by CAPsMAN\nset [ find default-name=wifi1 ] configuration.country=\"United Kingdom\" .mode=ap .ssid=\"Home \\\n    \\_Net\"\n\
        /interface list\n\
        /ip firewall filter\nadd action=accept chain=input comment=\"defconf: accept ICMP\" protocol=icmp\n# disabled\nadd action=drop chain=input disabled=yes in-interface-list=!LAN\n\
        /routing bgp connection\nadd as=65001 local.role=ebgp name=up1 remote.address=192.0.2.1 .as=65002\n\
        /ip firewall filter\nremove [ find where comment=old and !dynamic ]\n\
        /system identity\nset name=r1\n";

    const TERSE: &str = "# 2025-03-24 14:13:48 by RouterOS 7.18.2\n# software id = D555\n#\n\
        /interface bridge add admin-mac=AA:BB:CC:00:00:01 auto-mac=no comment=\"LAN \\\"main\\\" \\$x\" name=bridge\n\
        /interface wifi\n# managed by CAPsMAN\n/interface wifi set [ find default-name=wifi1 ] configuration.country=\"United Kingdom\" \\\n    .mode=ap .ssid=\"Home \\_Net\"\n\
        /interface list\n\
        /ip firewall filter add action=accept chain=input comment=\"defconf: accept ICMP\" protocol=icmp\n# disabled\n/ip firewall filter add action=drop chain=input disabled=yes in-interface-list=!LAN\n\
        /routing bgp connection add as=65001 local.role=ebgp name=up1 remote.address=192.0.2.1 .as=65002\n\
        /ip/firewall/filter remove [ find where comment=old and !dynamic ]\n\
        /system identity set name=r1\n";

    #[test]
    fn hand_written_terse_parses_like_its_compact_twin() {
        let c = parse_export(COMPACT).unwrap();
        let t = parse_export(TERSE).unwrap();
        assert_eq!(t, c);
        assert_eq!(c.sections.len(), 7);
        let wifi = MenuPath::parse("/interface wifi");
        let set = c.set_stmts(&wifi).next().unwrap();
        assert_eq!(set.get("configuration.ssid"), Some("Home  Net"));
        assert_eq!(set.get("configuration.mode"), Some("ap"));
        let bridge = c
            .entries(&MenuPath::parse("/interface bridge"))
            .next()
            .unwrap();
        assert_eq!(bridge.get("comment"), Some("LAN \"main\" $x"));
        let bgp = c
            .entries(&MenuPath::parse("/routing bgp connection"))
            .next()
            .unwrap();
        assert_eq!(bgp.get("remote.as"), Some("65002"));
        assert!(crate::detect_form(TERSE).terse);
        assert!(!crate::detect_form(COMPACT).terse);
        assert_eq!(
            crate::render_terse(&c, &crate::RenderOptions::faithful(crate::Wrap::None))
                .lines()
                .filter(|l| l.starts_with("/ip firewall filter"))
                .count(),
            3
        );
    }

    #[test]
    fn not_export_syntax_is_an_error_with_the_line() {
        let cases: &[(&str, usize, ParseErrorKind)] = &[
            (
                "HTTP/1.1 200 OK\n/ip address\n",
                1,
                ParseErrorKind::BadCommand("HTTP/1.1".into()),
            ),
            (
                "/ip address\nadd address=1.1.1.1/32\nUploaded by oxidized at 2026-03-01\n",
                3,
                ParseErrorKind::BadCommand("Uploaded".into()),
            ),
            (
                "[admin@MikroTik] > /export\n/ip address\n",
                1,
                ParseErrorKind::PromptNotAtEnd,
            ),
            (
                "/ip address\n[admin@MikroTik] > \nadd address=1.1.1.1/32\n",
                2,
                ParseErrorKind::PromptNotAtEnd,
            ),
            (
                "/ip address\nadd comment=\"x\n",
                2,
                ParseErrorKind::UnterminatedQuote,
            ),
            (
                "/ip address\nadd comment=x \\\n",
                2,
                ParseErrorKind::ContinuationAtEnd,
            ),
            (
                "/ip address\nadd comment=x \\\n    y=1 \\",
                2,
                ParseErrorKind::ContinuationAtEnd,
            ),
            (
                "/ip address\nadd a=\u{0}\n",
                2,
                ParseErrorKind::ControlCharacter('\u{0}'),
            ),
            (
                "/ip address\nadd a=b\r\r\n",
                2,
                ParseErrorKind::ControlCharacter('\r'),
            ),
            (
                "/ip Address\n",
                1,
                ParseErrorKind::BadMenuPath("Address".into()),
            ),
            (
                "/ip address\nadd Address=1\n",
                2,
                ParseErrorKind::BadProperty("Address".into()),
            ),
            (
                "/ip address\nadd Uploaded\n",
                2,
                ParseErrorKind::BadProperty("Uploaded".into()),
            ),
            (
                "/ip address\nadd .as=1\n",
                2,
                ParseErrorKind::BadProperty(".as".into()),
            ),
            (
                "/ip address\nprint\n",
                2,
                ParseErrorKind::BadCommand("print".into()),
            ),
            (
                "/\nset name=x\n",
                2,
                ParseErrorKind::BadMenuPath("/".into()),
            ),
            (
                "/ip address\n/ set =\n",
                2,
                ParseErrorKind::BadMenuPath("/".into()),
            ),
        ];
        for (text, line, kind) in cases {
            let e = parse_export(text).unwrap_err();
            assert_eq!((&e.line, &e.kind), (line, kind), "{text:?}: {e}");
            assert!(!e.excerpt.is_empty(), "{text:?}");
            assert!(
                e.to_string().starts_with(&format!("line {line} column ")),
                "{e}"
            );
        }
        // a trailing prompt is kept, as in a captured session
        let c =
            parse_export("/ip address\nadd address=1.1.1.1/32\n[admin@MikroTik] > \n\n").unwrap();
        assert_eq!(c.trailer, vec!["[admin@MikroTik] > ".to_string()]);
    }

    #[test]
    fn terse_lines_share_a_section() {
        let c = parse_export("/ip address add address=1.1.1.1/32 interface=lo\n/ip address add address=1.1.1.2/32 interface=lo\n").unwrap();
        assert_eq!(c.sections.len(), 1);
        assert_eq!(c.entry_count(), 2);
    }
}
