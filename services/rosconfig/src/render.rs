//! Renderer: [`Config`] -> export text in RouterOS's own format.
//!
//! Wrapping reproduces RouterOS's terminal wrapping (derived from the corpus, where it
//! matches every wrapped command of the 80-column files and of the 252- and 215-column
//! files 06 and 15): for a terminal of `C` columns, physical lines hold at most `C - 2`
//! characters plus the trailing `\`. Tokens are `key=value` pairs and bare words; a pair
//! that does not fit moves to a new line, or breaks right after `key=` when `key=` still
//! fits with one column to spare; a value too long for a fresh line (or a value with
//! newlines) is filled character by character, escape sequences kept whole, breaking
//! before each `\n`; a continuation that would start with a space starts with `\_`.

use crate::lex::{LineEnding, units};
use crate::model::{Attr, Config, Selector, Stmt};

/// Header lines to write.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HeaderMode {
    /// No header (normalised text).
    #[default]
    Omit,
    /// The header lines as parsed.
    Original,
    /// A header generated from the given facts.
    Generated(ExportHeader),
}

/// Facts for a generated export header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExportHeader {
    /// Date and time as RouterOS prints it for the version (`mar/02/2023 11:27:56` before
    /// 7.10, `2023-03-02 11:27:56` from 7.10).
    pub timestamp: String,
    /// RouterOS version, e.g. `7.16.2`.
    pub version: String,
    /// Software id (`None` omits the line; `Some("")` prints `# software id = `).
    pub software_id: Option<String>,
    /// Model line (absent on CHR/x86).
    pub model: Option<String>,
    /// Serial number line.
    pub serial: Option<String>,
}

impl ExportHeader {
    /// The header lines.
    pub fn lines(&self) -> Vec<String> {
        let mut v = vec![format!("# {} by RouterOS {}", self.timestamp, self.version)];
        if let Some(s) = &self.software_id {
            v.push(format!("# software id = {s}"));
        }
        v.push("#".to_string());
        if let Some(m) = &self.model {
            v.push(format!("# model = {m}"));
        }
        if let Some(s) = &self.serial {
            v.push(format!("# serial number = {s}"));
        }
        v
    }
}

/// Line wrapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Wrap {
    /// One physical line per command.
    #[default]
    None,
    /// Wrap as an export taken on a terminal this many columns wide (RouterOS default 80).
    Terminal(usize),
}

/// Rendering options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RenderOptions {
    /// Header lines.
    pub header: HeaderMode,
    /// Wrapping.
    pub wrap: Wrap,
    /// Line terminator; `None` keeps the configuration's own.
    pub line_ending: Option<LineEnding>,
    /// Write RouterOS remark comments.
    pub remarks: bool,
    /// Use the v7 leading-dot shorthand; `None` decides from the header version (>= 7).
    pub dotted_shorthand: Option<bool>,
    /// Write trailing non-config lines (captured prompt).
    pub trailer: bool,
}

impl RenderOptions {
    /// Options that reproduce a parsed export: original header, remarks and trailer,
    /// wrapping as given.
    pub fn faithful(wrap: Wrap) -> RenderOptions {
        RenderOptions {
            header: HeaderMode::Original,
            wrap,
            line_ending: None,
            remarks: true,
            dotted_shorthand: None,
            trailer: true,
        }
    }

    /// Canonical text for hashing and diffing: no header, no remarks, unwrapped, LF.
    pub fn normalised() -> RenderOptions {
        RenderOptions {
            header: HeaderMode::Omit,
            wrap: Wrap::None,
            line_ending: Some(LineEnding::Lf),
            remarks: false,
            dotted_shorthand: None,
            trailer: false,
        }
    }
}

/// A piece of a command for wrapping: `("key=", "value")` or `("", "word")`.
type Piece = (String, String);

fn dotted_prefix(key: &str) -> Option<&str> {
    key.split_once('.')
        .map(|(p, _)| p)
        .filter(|p| !p.is_empty())
}

fn attr_pieces(attrs: &[Attr], shorthand: bool, out: &mut Vec<Piece>) {
    let mut prev: Option<&str> = None;
    for a in attrs {
        let shown = match (shorthand, dotted_prefix(&a.key), prev) {
            (true, Some(p), Some(q)) if p == q => a.key[p.len()..].to_string(),
            _ => a.key.clone(),
        };
        prev = dotted_prefix(&a.key);
        match &a.value {
            Some(_) if a.bare => out.push((String::new(), shown)),
            Some(_) => out.push((format!("{shown}="), a.encoded_value())),
            None => out.push((String::new(), format!("!{shown}"))),
        }
    }
}

fn selector_pieces(sel: &Selector, out: &mut Vec<Piece>) {
    match sel {
        Selector::None => {}
        Selector::Find(f) => {
            // split like the words RouterOS prints: "[", "find", "k=v", "]"
            let text = f.render();
            for w in text.split(' ') {
                match w.split_once('=') {
                    Some((k, v)) if !k.is_empty() && !w.starts_with('"') => {
                        out.push((format!("{k}="), v.to_string()));
                    }
                    _ => out.push((String::new(), w.to_string())),
                }
            }
        }
        other => out.push((String::new(), other.render())),
    }
}

/// Pieces of one statement (without remark handling).
fn stmt_pieces(stmt: &Stmt, shorthand: bool) -> Vec<Piece> {
    let mut p = Vec::new();
    match stmt {
        Stmt::Add(e) => {
            p.push((String::new(), "add".to_string()));
            attr_pieces(&e.attrs, shorthand, &mut p);
        }
        Stmt::Set(s) => {
            p.push((String::new(), "set".to_string()));
            selector_pieces(&s.selector, &mut p);
            attr_pieces(&s.attrs, shorthand, &mut p);
        }
        Stmt::Remove(sel) => {
            p.push((String::new(), "remove".to_string()));
            selector_pieces(sel, &mut p);
        }
        Stmt::Remark(r) => p.push((String::new(), format!("#{r}"))),
    }
    p
}

fn len(s: &str) -> usize {
    s.chars().count()
}

/// Wraps pieces to physical lines for a terminal of `columns` columns.
pub(crate) fn wrap_pieces(pieces: &[Piece], columns: usize) -> Vec<String> {
    let max = columns.saturating_sub(2).max(8); // content columns before the `\`
    let mut out = Vec::new();
    let mut line = String::new();
    let fresh = |l: &String| l.trim().is_empty();
    for (k, v) in pieces {
        let sep = if fresh(&line) { "" } else { " " };
        let vu = units(v);
        let multiline = vu.contains(&"\\n");
        if !multiline && len(&line) + len(sep) + len(k) + len(v) < max {
            line.push_str(sep);
            line.push_str(k);
            line.push_str(v);
            continue;
        }
        if !k.is_empty() {
            if len(&line) + len(sep) + len(k) < max {
                line.push_str(sep);
                line.push_str(k);
            } else {
                out.push(format!("{line} \\"));
                line = format!("    {k}");
            }
            if !multiline && len(&line) + len(v) < max {
                line.push_str(v);
                continue;
            }
            if !multiline && 4 + len(v) < max {
                out.push(format!("{line}\\"));
                line = format!("    {v}");
                continue;
            }
        } else {
            if !multiline && 4 + len(v) < max {
                out.push(format!("{line} \\"));
                line = format!("    {v}");
                continue;
            }
            line.push_str(sep);
        }
        for u in vu {
            if u == "\\n" && multiline && !fresh(&line) {
                out.push(format!("{line}\\"));
                line = "    ".to_string();
            }
            if len(&line) + len(u) > max {
                out.push(format!("{line}\\"));
                line = format!("    {}", if u == " " { "\\_" } else { u });
            } else {
                line.push_str(u);
            }
        }
    }
    out.push(line);
    out
}

fn join_unwrapped(pieces: &[Piece]) -> String {
    let mut s = String::new();
    for (i, (k, v)) in pieces.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(k);
        s.push_str(v);
    }
    s
}

/// Renders one statement as physical lines.
pub(crate) fn render_stmt(stmt: &Stmt, shorthand: bool, wrap: Wrap) -> Vec<String> {
    if let Stmt::Remark(r) = stmt {
        return vec![format!("#{r}")];
    }
    physical_lines(&stmt_pieces(stmt, shorthand), wrap)
}

/// One command's pieces as physical lines: one line, or wrapped like a terminal of `wrap`.
fn physical_lines(pieces: &[Piece], wrap: Wrap) -> Vec<String> {
    match wrap {
        Wrap::None => vec![join_unwrapped(pieces)],
        Wrap::Terminal(cols) => wrap_pieces(pieces, cols),
    }
}

/// The text being rendered: lines with the chosen line ending, the header first.
struct Out {
    text: String,
    eol: &'static str,
}

impl Out {
    /// Starts the output of `cfg` with the header `opts` asks for.
    fn start(cfg: &Config, opts: &RenderOptions) -> Out {
        let mut out = Out {
            text: String::new(),
            eol: opts.line_ending.unwrap_or(cfg.line_ending).as_str(),
        };
        match &opts.header {
            HeaderMode::Omit => {}
            HeaderMode::Original => cfg.header.lines.iter().for_each(|l| out.push(l)),
            HeaderMode::Generated(h) => h.lines().iter().for_each(|l| out.push(l)),
        }
        out
    }

    fn push(&mut self, line: &str) {
        self.text.push_str(line);
        self.text.push_str(self.eol);
    }

    /// Ends the output with the trailer, if `opts` keeps it.
    fn finish(mut self, cfg: &Config, opts: &RenderOptions) -> String {
        if opts.trailer {
            for l in &cfg.trailer {
                self.push(l);
            }
        }
        self.text
    }
}

/// Whether v7 dotted sub-properties are written with the leading-dot shorthand.
fn uses_shorthand(cfg: &Config, opts: &RenderOptions) -> bool {
    opts.dotted_shorthand
        .or(cfg.dotted_shorthand)
        .unwrap_or_else(|| cfg.header.major_version().is_some_and(|m| m >= 7))
}

/// Renders a configuration.
pub fn render(cfg: &Config, opts: &RenderOptions) -> String {
    let shorthand = uses_shorthand(cfg, opts);
    let mut out = Out::start(cfg, opts);
    for sec in &cfg.sections {
        let visible: Vec<&Stmt> = sec
            .stmts
            .iter()
            .filter(|s| opts.remarks || !matches!(s, Stmt::Remark(_)))
            .collect();
        if (!sec.path.is_root() || !visible.is_empty())
            && (!sec.path.is_root() || visible.iter().any(|s| !matches!(s, Stmt::Remark(_))))
        {
            out.push(&sec.path.to_cli());
        }
        for st in visible {
            for l in render_stmt(st, shorthand, opts.wrap) {
                out.push(&l);
            }
        }
    }
    out.finish(cfg, opts)
}

/// Renders a configuration as `/export terse` does: every command on one line after its
/// full menu path (`/ip firewall filter add action=accept chain=input`), in the order of
/// [`render`]; header, remarks, trailer, line endings and wrapping follow `opts` as there.
///
/// A menu path line on its own is written where the model needs it to read back the same
/// ([`crate::parse_export`] of the result equals the configuration): for a section without
/// commands, for a section that starts with a remark (so the remark stays in its menu), and
/// for a section right after another of the same menu (so the two stay apart).
pub fn render_terse(cfg: &Config, opts: &RenderOptions) -> String {
    let shorthand = uses_shorthand(cfg, opts);
    let mut out = Out::start(cfg, opts);
    let mut prev: Option<&crate::model::MenuPath> = None;
    for sec in &cfg.sections {
        let visible: Vec<&Stmt> = sec
            .stmts
            .iter()
            .filter(|s| opts.remarks || !matches!(s, Stmt::Remark(_)))
            .collect();
        let commands = visible.iter().any(|s| !matches!(s, Stmt::Remark(_)));
        let bare_line = if sec.path.is_root() {
            // remarks before any menu, as parsed; the root has no commands in an export
            false
        } else {
            !commands
                || visible
                    .first()
                    .is_some_and(|s| matches!(s, Stmt::Remark(_)))
                || prev == Some(&sec.path)
        };
        if bare_line {
            out.push(&sec.path.to_cli());
        }
        if commands || bare_line {
            prev = Some(&sec.path);
        }
        for st in visible {
            let lines = match st {
                Stmt::Remark(_) => render_stmt(st, shorthand, Wrap::None),
                _ => {
                    let mut pieces = vec![(String::new(), sec.path.to_cli())];
                    pieces.extend(stmt_pieces(st, shorthand));
                    physical_lines(&pieces, opts.wrap)
                }
            };
            for l in lines {
                out.push(&l);
            }
        }
    }
    out.finish(cfg, opts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_export;

    #[test]
    fn wraps_like_routeros() {
        let src = "/x\nadd channel=channel6 channel.frequency=\"\" comment=NDALEM configuration.mode=ap configuration.ssid=\"KGS Connect 2.5\" datapath=datapath-ndalem disabled=no\n";
        let c = parse_export(src).unwrap();
        let out = render(
            &c,
            &RenderOptions {
                wrap: Wrap::Terminal(80),
                ..RenderOptions::normalised()
            },
        );
        assert_eq!(
            out,
            "/x\nadd channel=channel6 channel.frequency=\"\" comment=NDALEM configuration.mode=\\\n    ap configuration.ssid=\"KGS Connect 2.5\" datapath=datapath-ndalem \\\n    disabled=no\n"
        );
    }

    #[test]
    fn generated_header() {
        let h = ExportHeader {
            timestamp: "2025-01-01 00:00:00".into(),
            version: "7.16".into(),
            software_id: Some("AB-CD".into()),
            model: None,
            serial: None,
        };
        assert_eq!(
            h.lines(),
            vec![
                "# 2025-01-01 00:00:00 by RouterOS 7.16",
                "# software id = AB-CD",
                "#"
            ]
        );
    }
}
