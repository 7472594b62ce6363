//! Change scripts: the RouterOS script lines the platform pushes (menu lines plus
//! `add`/`set`/`remove`/`enable`/`disable`/`unset`, also one-line `/menu verb ...` and
//! `;`-separated commands). Parse them, validate them, apply them to a [`Config`] like
//! `/import` does (commands before a failing one stay applied), and report the first
//! failing line with RouterOS-like text.
//!
//! Global commands (`:log`, `:delay`, `:put`, ...) and device verbs (`reboot`, `load`,
//! `run`, `import`, ...) are parsed but not executed here: [`apply_command`] refuses them
//! with `bad command name`; the device simulator executes them.

use crate::error::{ModelError, ParseError, ParseErrorKind, ScriptError};
use crate::lex::{Tok, logical_lines, tokenize};
use crate::model::{Attr, Config, FindExpr, ItemId, MenuPath, Selector};
use crate::parse::{
    VERBS, WordMode, collect_attrs, parse_find, selector_from, split_command, tok_text,
};

/// A positional argument of a script command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// A bare word.
    Word(String),
    /// A quoted string (decoded).
    Quoted(String),
    /// A `[ find ... ]` expression.
    Find(FindExpr),
    /// Another bracket expression, raw (`[/system clock get time]`).
    Expr(String),
}

impl Arg {
    /// The text of a word or quoted argument.
    pub fn text(&self) -> Option<&str> {
        match self {
            Arg::Word(s) | Arg::Quoted(s) => Some(s),
            _ => None,
        }
    }
}

/// One parsed command of a change script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptCommand {
    /// 1-based line.
    pub line: usize,
    /// 1-based column of the verb.
    pub column: usize,
    /// Menu the command runs in.
    pub path: MenuPath,
    /// Verb (`add`, `set`, ..., or a global command such as `:log`).
    pub verb: String,
    /// Positional arguments (selector, names).
    pub positional: Vec<Arg>,
    /// `key=value` arguments (shorthand expanded).
    pub attrs: Vec<Attr>,
}

impl ScriptCommand {
    /// Value of a named argument.
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| a.value.as_deref())
    }

    /// The selector of `set`/`remove`/`enable`/`disable`/`unset` (first positional or
    /// `numbers=`), [`Selector::None`] when absent.
    pub fn selector(&self) -> Selector {
        match self.positional.first() {
            Some(Arg::Find(f)) => Selector::Find(f.clone()),
            Some(Arg::Word(w)) => selector_from(
                &Tok::Word {
                    text: w.clone(),
                    col: 1,
                },
                self.line,
            )
            .unwrap_or(Selector::Name {
                name: w.clone(),
                quoted: false,
            }),
            Some(Arg::Quoted(q)) => Selector::Name {
                name: q.clone(),
                quoted: true,
            },
            Some(Arg::Expr(e)) => Selector::Name {
                name: e.clone(),
                quoted: false,
            },
            None => match self.arg("numbers") {
                Some(n) => selector_from(
                    &Tok::Word {
                        text: n.to_string(),
                        col: 1,
                    },
                    self.line,
                )
                .unwrap_or(Selector::Name {
                    name: n.to_string(),
                    quoted: false,
                }),
                None => Selector::None,
            },
        }
    }

    /// Attributes other than `numbers`.
    pub fn value_attrs(&self) -> Vec<Attr> {
        self.attrs
            .iter()
            .filter(|a| a.key != "numbers")
            .cloned()
            .collect()
    }
}

fn to_arg(t: Tok, line: usize) -> Result<Arg, ParseError> {
    match t {
        Tok::Word { text, .. } => Ok(Arg::Word(text)),
        Tok::Quoted { text, .. } => Ok(Arg::Quoted(text)),
        Tok::Bracket { inner, col } => {
            if inner.trim_start().starts_with("find") {
                Ok(Arg::Find(parse_find(&inner, line, col)?))
            } else {
                Ok(Arg::Expr(inner))
            }
        }
        other => Err(ParseError::new(
            line,
            other.col(),
            ParseErrorKind::Unexpected(tok_text(&other)),
        )),
    }
}

/// Parses a change script. Errors carry RouterOS-like text
/// (`syntax error (line N column M)`, `bad command name X (line N column M)`).
pub fn parse_script(text: &str) -> Result<Vec<ScriptCommand>, ScriptError> {
    let perr = |e: ParseError| ScriptError {
        line: e.line,
        message: e.routeros_message(),
    };
    let mut out = Vec::new();
    let mut ctx = MenuPath::root();
    for ll in logical_lines(text) {
        let t = ll.text.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let toks = tokenize(&ll.text, ll.line).map_err(perr)?;
        // split at `;`
        let mut stmts: Vec<Vec<Tok>> = vec![Vec::new()];
        for tk in toks {
            match tk {
                Tok::Semi { .. } => stmts.push(Vec::new()),
                other => {
                    if let Some(last) = stmts.last_mut() {
                        last.push(other);
                    }
                }
            }
        }
        for st in stmts.into_iter().filter(|s| !s.is_empty()) {
            let first_col = st.first().map(Tok::col).unwrap_or(1);
            let raw = split_command(st);
            let path = match &raw.path {
                Some(p) => p.clone(),
                None => ctx.clone(),
            };
            let Some((verb, col)) = raw.verb else {
                if raw.path.is_some() && raw.args.is_empty() {
                    ctx = path;
                    continue;
                }
                let bad = raw.args.first().map(tok_text).unwrap_or_default();
                return Err(perr(ParseError::new(
                    ll.line,
                    first_col,
                    ParseErrorKind::BadCommand(bad),
                )));
            };
            if !verb.starts_with(':') && !VERBS.contains(&verb.as_str()) && verb != "upgrade" {
                return Err(perr(ParseError::new(
                    ll.line,
                    col,
                    ParseErrorKind::BadCommand(verb),
                )));
            }
            let mode = match verb.as_str() {
                "add" => WordMode::Flags,
                "set" | "remove" | "enable" | "disable" | "unset" => WordMode::SelectorThenFlags,
                _ => WordMode::Positional,
            };
            let (attrs, positional, _) = collect_attrs(raw.args, mode);
            let positional = positional
                .into_iter()
                .map(|t| to_arg(t, ll.line))
                .collect::<Result<Vec<_>, _>>()
                .map_err(perr)?;
            let (path, verb) = match verb.strip_prefix(':') {
                Some(_) => (MenuPath::root(), verb),
                None => (path, verb),
            };
            out.push(ScriptCommand {
                line: ll.line,
                column: col,
                path,
                verb,
                positional,
                attrs,
            });
        }
    }
    Ok(out)
}

/// Applies one configuration command to a model (see module docs). `set` on a selector
/// that denotes no `add` entry (built-in items such as `[ find default-name=ether1 ]`,
/// `*FFFFFFFE`, `ftp`) records/merges a `set` statement, as an export does.
pub fn apply_command(cfg: &mut Config, cmd: &ScriptCommand) -> Result<Vec<ItemId>, ModelError> {
    let path = &cmd.path;
    match cmd.verb.as_str() {
        "add" => {
            if !cmd.positional.is_empty() {
                return Err(ModelError::NoSuchCommand);
            }
            Ok(vec![cfg.add_checked(path, cmd.value_attrs())?])
        }
        "set" | "enable" | "disable" | "unset" => {
            let attrs = match cmd.verb.as_str() {
                "enable" => vec![Attr::new("disabled", "no")],
                "disable" => vec![Attr::new("disabled", "yes")],
                _ => cmd.value_attrs(),
            };
            let sel = cmd.selector();
            if sel == Selector::None {
                if cmd.verb == "unset" {
                    let keys: Vec<&str> = cmd
                        .attrs
                        .iter()
                        .filter_map(|a| a.value.as_deref())
                        .collect();
                    cfg.unset_on(path, &Selector::None, &keys);
                } else {
                    cfg.set_settings(path, attrs);
                }
                return Ok(Vec::new());
            }
            let ids = match cfg.resolve(path, &sel) {
                Ok(ids) if !ids.is_empty() => ids,
                _ => {
                    if cmd.verb == "unset" {
                        let keys: Vec<&str> = cmd
                            .attrs
                            .iter()
                            .filter_map(|a| a.value.as_deref())
                            .collect();
                        cfg.unset_on(path, &sel, &keys);
                    } else {
                        cfg.upsert_set(path, &sel, attrs);
                    }
                    return Ok(Vec::new());
                }
            };
            for id in &ids {
                if cmd.verb == "unset" {
                    let keys: Vec<&str> = cmd
                        .attrs
                        .iter()
                        .filter(|a| a.key == "value-name")
                        .filter_map(|a| a.value.as_deref())
                        .collect();
                    cfg.unset(path, *id, &keys)?;
                } else {
                    cfg.set(path, *id, attrs.clone())?;
                }
            }
            Ok(ids)
        }
        "remove" => {
            let sel = cmd.selector();
            let ids = cfg.resolve(path, &sel)?;
            for id in &ids {
                cfg.remove(path, *id)?;
            }
            Ok(ids)
        }
        _ => Err(ModelError::NoSuchCommand),
    }
}

/// Outcome of a successful script application.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApplyReport {
    /// Commands executed.
    pub commands: usize,
    /// Ids of entries created by `add`, in order.
    pub added: Vec<ItemId>,
}

/// Parses and applies a change script. On failure, commands before the failing line stay
/// applied (RouterOS `import` behaviour); the error names the failing line.
pub fn apply_script(cfg: &mut Config, text: &str) -> Result<ApplyReport, ScriptError> {
    let cmds = parse_script(text)?;
    let mut rep = ApplyReport::default();
    for c in &cmds {
        let ids = apply_command(cfg, c).map_err(|e| ScriptError {
            line: c.line,
            message: match e {
                ModelError::NoSuchCommand => format!(
                    "bad command name {} (line {} column {})",
                    c.verb, c.line, c.column
                ),
                other => other.to_string(),
            },
        })?;
        if c.verb == "add" {
            rep.added.extend(ids);
        }
        rep.commands += 1;
    }
    Ok(rep)
}

/// Validates a script against a configuration without changing it (applies to a copy).
pub fn dry_run(cfg: &Config, text: &str) -> Result<ApplyReport, ScriptError> {
    let mut copy = cfg.clone();
    apply_script(&mut copy, text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_export;

    #[test]
    fn applies_and_reports_failing_line() {
        let mut c =
            parse_export("/ip address\nadd address=10.0.0.1/24 interface=ether1\n").unwrap();
        let script = "# change-id 42\n/ip address\nadd address=10.0.1.1/24 interface=ether2\nset [ find address=10.0.0.1/24 ] comment=\"x y\"\n/system identity set name=r9\nremove *99\n";
        let e = apply_script(&mut c, script).unwrap_err();
        assert_eq!(e.line, 6);
        assert_eq!(e.message, "no such item");
        // earlier lines stayed applied
        let p = MenuPath::parse("/ip address");
        assert_eq!(c.entries(&p).count(), 2);
        assert_eq!(c.entry(&p, ItemId(1)).unwrap().get("comment"), Some("x y"));
        assert_eq!(
            c.setting(&MenuPath::parse("/system identity"), "name")
                .as_deref(),
            Some("r9")
        );
    }

    #[test]
    fn syntax_errors_are_routeros_like() {
        let e = parse_script("/ip address\nadd comment=\"open\n").unwrap_err();
        assert_eq!(e.message, "syntax error (line 2 column 13)");
        let e = parse_script("/ip address\nfrob x=1\n").unwrap_err();
        assert_eq!(e.message, "bad command name frob (line 2 column 1)");
    }

    #[test]
    fn semicolons_and_globals() {
        let cmds =
            parse_script("/system scheduler remove [find name=x]; :log info \"done\"\n").unwrap();
        assert_eq!(cmds.len(), 2);
        assert_eq!(cmds[0].path.to_api(), "/system/scheduler");
        assert_eq!(cmds[1].verb, ":log");
        assert_eq!(
            cmds[1].positional,
            vec![Arg::Word("info".into()), Arg::Quoted("done".into())]
        );
    }

    #[test]
    fn dry_run_leaves_config_alone() {
        let c = parse_export("/ip pool\nadd name=a ranges=1.1.1.1\n").unwrap();
        assert!(dry_run(&c, "/ip pool\nadd name=b ranges=1.1.1.2\n").is_ok());
        assert_eq!(c.entry_count(), 1);
        let e = dry_run(&c, "/ip pool\nadd name=a ranges=1.1.1.2\n").unwrap_err();
        assert_eq!(e.message, "failure: item with such name already exists");
    }
}
