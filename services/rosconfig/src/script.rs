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
use crate::lex::{Hazard, Tok, logical_lines, tokenize_with_hazards};
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

/// Text of a command that RouterOS evaluates when it runs the line instead of taking it
/// literally: a bracket expression other than a literal `[ find ... ]` (positional, as a
/// `key=[...]` value, or nested inside a `find`), an unescaped `$` (variables and
/// `$[...]`/`$(...)` substitutions, inside quotes too), and outside quotes `[`/`]` glued to a
/// word, `(`, `)`, `{` or `}`. What such text does cannot be known before the device runs
/// it, so a check of the command is only complete when there is none
/// ([`ScriptCommand::is_literal`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Substitution {
    /// 1-based column where it starts.
    pub column: usize,
    /// The text (`[/system clock get time]`, `$`, `{`).
    pub text: String,
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
    /// Everything in the command the device evaluates at run time (see [`Substitution`]);
    /// empty for a command made of literals and literal `[ find ... ]` expressions.
    pub substitutions: Vec<Substitution>,
}

impl ScriptCommand {
    /// Whether the command is all literal text: no [`Substitution`].
    pub fn is_literal(&self) -> bool {
        self.substitutions.is_empty()
    }

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

/// Whether a bracket's inner text is a `find` expression (its first word is `find`).
fn is_find(inner: &str) -> bool {
    let t = inner.trim_start();
    t.strip_prefix("find")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
}

/// The substitutions inside the inner text of a bracket at `col`: none for a literal
/// `[ find ... ]` (its conditions compare properties with literal values); the whole
/// bracket when it is anything else or does not tokenize.
fn bracket_substitutions(inner: &str, line: usize, col: usize) -> Vec<Substitution> {
    let whole = || {
        vec![Substitution {
            column: col,
            text: format!("[{inner}]"),
        }]
    };
    if !is_find(inner) {
        return whole();
    }
    let Ok((toks, hazards)) = tokenize_with_hazards(inner, line) else {
        return whole();
    };
    let mut out: Vec<Substitution> = hazards
        .iter()
        .map(|h| Substitution {
            column: col + h.col,
            text: h.ch.to_string(),
        })
        .collect();
    for t in toks {
        match t {
            Tok::Bracket { inner: i, col: c } => out.push(Substitution {
                column: col + c,
                text: format!("[{i}]"),
            }),
            Tok::Pair {
                value,
                quoted: false,
                col: c,
                ..
            } if value.starts_with('[') => out.push(Substitution {
                column: col + c,
                text: value,
            }),
            Tok::Semi { col: c } => out.push(Substitution {
                column: col + c,
                text: ";".into(),
            }),
            _ => {}
        }
    }
    out
}

/// The substitutions of one statement's tokens (bracket expressions; `hazards` are the
/// lexer's for the statement's columns).
fn statement_substitutions(toks: &[Tok], hazards: &[Hazard], line: usize) -> Vec<Substitution> {
    let mut out: Vec<Substitution> = hazards
        .iter()
        .map(|h| Substitution {
            column: h.col,
            text: h.ch.to_string(),
        })
        .collect();
    for t in toks {
        match t {
            Tok::Bracket { inner, col } => out.extend(bracket_substitutions(inner, line, *col)),
            Tok::Pair {
                key,
                value,
                quoted: false,
                col,
            } if value.starts_with('[') => {
                let inner = value
                    .strip_prefix('[')
                    .and_then(|v| v.strip_suffix(']'))
                    .unwrap_or(value);
                let at = col + key.chars().count() + 1;
                out.extend(bracket_substitutions(inner, line, at));
            }
            _ => {}
        }
    }
    out.sort_by_key(|s| s.column);
    out
}

fn to_arg(t: Tok, line: usize) -> Result<Arg, ParseError> {
    match t {
        Tok::Word { text, .. } => Ok(Arg::Word(text)),
        Tok::Quoted { text, .. } => Ok(Arg::Quoted(text)),
        Tok::Bracket { inner, col } => {
            if is_find(&inner) {
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
        let (toks, hazards) = tokenize_with_hazards(&ll.text, ll.line).map_err(perr)?;
        // split at `;`, each statement with the lexer hazards of its columns
        let mut stmts: Vec<(Vec<Tok>, Vec<Hazard>)> = vec![(Vec::new(), Vec::new())];
        let mut hz = hazards.into_iter().peekable();
        for tk in toks {
            match tk {
                Tok::Semi { col } => {
                    if let Some(last) = stmts.last_mut() {
                        while let Some(h) = hz.next_if(|h| h.col < col) {
                            last.1.push(h);
                        }
                    }
                    stmts.push((Vec::new(), Vec::new()));
                }
                other => {
                    if let Some(last) = stmts.last_mut() {
                        last.0.push(other);
                    }
                }
            }
        }
        if let Some(last) = stmts.last_mut() {
            last.1.extend(hz);
        }
        for (st, hazards) in stmts.into_iter().filter(|s| !s.0.is_empty()) {
            let first_col = st.first().map(Tok::col).unwrap_or(1);
            let substitutions = statement_substitutions(&st, &hazards, ll.line);
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
                substitutions,
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
