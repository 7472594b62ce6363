//! Lexing of RouterOS export/script text: physical lines to logical lines (continuations
//! joined), logical lines to tokens, and the escape rules of quoted strings.
//!
//! Continuation rule (observed in the corpus and in RouterOS output): a physical line whose
//! last character is a backslash that is not itself part of an escape sequence continues on
//! the next physical line; the leading spaces/tabs of that next line are dropped (RouterOS
//! indents with four spaces and writes a space that would start the continuation as `\_`).

use crate::error::{ParseError, ParseErrorKind};

/// One logical line: physical lines joined at continuations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogicalLine {
    /// Joined text without line terminators.
    pub text: String,
    /// 1-based number of the first physical line.
    pub line: usize,
    /// Number of physical lines it spans.
    pub span: usize,
    /// The text ended inside this line's continuation (its last physical line ends in `\`).
    pub open: bool,
}

/// Line terminator style of a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LineEnding {
    /// `\n`
    #[default]
    Lf,
    /// `\r\n`
    CrLf,
}

impl LineEnding {
    /// The terminator itself.
    pub fn as_str(self) -> &'static str {
        match self {
            LineEnding::Lf => "\n",
            LineEnding::CrLf => "\r\n",
        }
    }

    /// Detects the style from the first terminator of `text` (LF when there is none).
    pub fn detect(text: &str) -> LineEnding {
        match text.find('\n') {
            Some(i) if i > 0 && text.as_bytes().get(i - 1) == Some(&b'\r') => LineEnding::CrLf,
            _ => LineEnding::Lf,
        }
    }
}

/// Splits text into physical lines, accepting LF and CRLF (a lone trailing CR is dropped).
pub(crate) fn physical_lines(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    if text.ends_with('\n') {
        lines.pop();
    }
    lines
}

/// True when `line` ends with a backslash that is not consumed by an escape.
fn ends_with_continuation(line: &str) -> bool {
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            if i + 1 == b.len() {
                return true;
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    false
}

/// Joins continuation lines. Comment lines (first non-blank char `#`) never continue.
pub(crate) fn logical_lines(text: &str) -> Vec<LogicalLine> {
    let mut out = Vec::new();
    let mut cur: Option<LogicalLine> = None;
    for (idx, raw) in physical_lines(text).into_iter().enumerate() {
        let lineno = idx + 1;
        let piece = match cur {
            Some(_) => raw.trim_start_matches([' ', '\t']),
            None => raw,
        };
        let is_comment = cur.is_none() && piece.trim_start().starts_with('#');
        let cont = !is_comment && ends_with_continuation(piece);
        let body = if cont {
            &piece[..piece.len() - 1]
        } else {
            piece
        };
        let ll = cur.get_or_insert_with(|| LogicalLine {
            text: String::new(),
            line: lineno,
            span: 0,
            open: false,
        });
        ll.text.push_str(body);
        ll.span += 1;
        if !cont && let Some(done) = cur.take() {
            out.push(done);
        }
    }
    if let Some(mut done) = cur.take() {
        done.open = true;
        out.push(done);
    }
    out
}

/// A lexical token of a command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    /// A bare word (`add`, `ftp`, `0`, `*FFFFFFFE`, `!bridge`, `/ip`).
    Word { text: String, col: usize },
    /// A standalone quoted string (decoded).
    Quoted { text: String, col: usize },
    /// `key=value`; `quoted` tells whether the value was in double quotes.
    Pair {
        key: String,
        value: String,
        quoted: bool,
        col: usize,
    },
    /// `[ ... ]` with its raw inner text.
    Bracket { inner: String, col: usize },
    /// `;` statement separator.
    Semi { col: usize },
}

impl Tok {
    pub(crate) fn col(&self) -> usize {
        match self {
            Tok::Word { col, .. }
            | Tok::Quoted { col, .. }
            | Tok::Pair { col, .. }
            | Tok::Bracket { col, .. }
            | Tok::Semi { col } => *col,
        }
    }
}

/// A character outside any literal that RouterOS evaluates when it runs a line: an unescaped
/// `$` (variable or `$[...]`/`$(...)` substitution, also inside quotes), and outside quotes
/// `[`/`]` glued to a word, `(`, `)`, `{`, `}` (expressions and code blocks). The tokens
/// keep such text as if it were literal; script checks must refuse it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hazard {
    /// 1-based column.
    pub col: usize,
    /// The character.
    pub ch: char,
}

struct Cursor<'a> {
    chars: Vec<char>,
    pos: usize,
    line: usize,
    _src: &'a str,
    hazards: Vec<Hazard>,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn peek_at(&self, n: usize) -> Option<char> {
        self.chars.get(self.pos + n).copied()
    }
    fn err(&self, kind: ParseErrorKind) -> ParseError {
        ParseError::new(self.line, self.pos + 1, kind)
    }

    /// Reads one escape sequence after a backslash (the backslash already consumed),
    /// appending decoded bytes.
    fn escape(&mut self, out: &mut Vec<u8>) -> Result<(), ParseError> {
        let Some(c) = self.peek() else {
            return Err(self.err(ParseErrorKind::BadEscape));
        };
        let h1 = c.to_digit(16);
        let h2 = self.peek_at(1).and_then(|d| d.to_digit(16));
        if let (Some(a), Some(b)) = (h1, h2)
            && (c.is_ascii_uppercase() || c.is_ascii_digit() || c.is_ascii_lowercase())
        {
            // `\AB` hex byte. RouterOS writes uppercase; `\ab` is accepted too, except
            // that `\a`/`\b`/`\f` followed by a hex digit are ambiguous: hex wins, as
            // RouterOS reads two hex digits first.
            out.push((a * 16 + b) as u8);
            self.pos += 2;
            return Ok(());
        }
        let decoded: &[u8] = match c {
            '"' => b"\"",
            '\\' => b"\\",
            '$' => b"$",
            '?' => b"?",
            '_' => b" ",
            'a' => b"\x07",
            'b' => b"\x08",
            'f' => b"\x0c",
            'n' => b"\n",
            'r' => b"\r",
            't' => b"\t",
            'v' => b"\x0b",
            _ => return Err(self.err(ParseErrorKind::BadEscape)),
        };
        out.extend_from_slice(decoded);
        self.pos += 1;
        Ok(())
    }

    /// Reads a quoted string starting at the opening quote.
    fn quoted(&mut self) -> Result<String, ParseError> {
        let start = self.pos;
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => {
                    return Err(ParseError::new(
                        self.line,
                        start + 1,
                        ParseErrorKind::UnterminatedQuote,
                    ));
                }
                Some('"') => {
                    self.pos += 1;
                    break;
                }
                Some('\\') => {
                    self.pos += 1;
                    self.escape(&mut out)?;
                }
                Some(c) => {
                    if c == '$' {
                        self.hazards.push(Hazard {
                            col: self.pos + 1,
                            ch: c,
                        });
                    }
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    self.pos += 1;
                }
            }
        }
        String::from_utf8(out)
            .map_err(|_| ParseError::new(self.line, start + 1, ParseErrorKind::InvalidUtf8))
    }

    /// Reads a bracket expression starting at `[`, returning the raw inner text.
    fn bracket(&mut self) -> Result<String, ParseError> {
        let start = self.pos;
        let mut depth = 0usize;
        let mut in_q = false;
        while let Some(c) = self.peek() {
            self.pos += 1;
            match c {
                '\\' => self.pos += 1,
                '"' => in_q = !in_q,
                '[' if !in_q => depth += 1,
                ']' if !in_q => {
                    depth -= 1;
                    if depth == 0 {
                        let inner: String = self.chars[start + 1..self.pos - 1].iter().collect();
                        return Ok(inner);
                    }
                }
                _ => {}
            }
        }
        Err(ParseError::new(
            self.line,
            start + 1,
            ParseErrorKind::UnterminatedBracket,
        ))
    }

    /// Reads an unquoted run until whitespace or `;`, decoding escapes.
    fn bare(&mut self, stop_at_eq: bool) -> Result<String, ParseError> {
        let start = self.pos;
        let mut out = Vec::new();
        while let Some(c) = self.peek() {
            if c == ' ' || c == '\t' || c == ';' || (stop_at_eq && c == '=') {
                break;
            }
            if c == '\\' {
                self.pos += 1;
                self.escape(&mut out)?;
                continue;
            }
            if c == '"' && self.pos > start {
                // a quote in the middle of a bare word is not valid RouterOS syntax
                return Err(self.err(ParseErrorKind::Unexpected("\"".into())));
            }
            if matches!(c, '$' | '[' | ']' | '(' | ')' | '{' | '}') {
                self.hazards.push(Hazard {
                    col: self.pos + 1,
                    ch: c,
                });
            }
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            self.pos += 1;
        }
        String::from_utf8(out)
            .map_err(|_| ParseError::new(self.line, start + 1, ParseErrorKind::InvalidUtf8))
    }
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '/' | '_' | '!')
}

/// Tokenizes one logical line. `line` is used for error positions.
pub(crate) fn tokenize(text: &str, line: usize) -> Result<Vec<Tok>, ParseError> {
    tokenize_with_hazards(text, line).map(|(toks, _)| toks)
}

/// Tokenizes one logical line and reports the [`Hazard`]s in it (inside bracket
/// expressions too: their inner text is kept raw, so they are scanned here).
pub(crate) fn tokenize_with_hazards(
    text: &str,
    line: usize,
) -> Result<(Vec<Tok>, Vec<Hazard>), ParseError> {
    let mut cur = Cursor {
        chars: text.chars().collect(),
        pos: 0,
        line,
        _src: text,
        hazards: Vec::new(),
    };
    let mut toks = Vec::new();
    while let Some(c) = cur.peek() {
        let col = cur.pos + 1;
        match c {
            ' ' | '\t' => cur.pos += 1,
            ';' => {
                cur.pos += 1;
                toks.push(Tok::Semi { col });
            }
            '"' => {
                let text = cur.quoted()?;
                toks.push(Tok::Quoted { text, col });
            }
            '[' => {
                let inner = cur.bracket()?;
                toks.push(Tok::Bracket { inner, col });
            }
            _ => {
                // key=value or bare word
                let save = cur.pos;
                let mut k = String::new();
                while let Some(ch) = cur.peek() {
                    if is_key_char(ch) {
                        k.push(ch);
                        cur.pos += 1;
                    } else {
                        break;
                    }
                }
                if cur.peek() == Some('=') && !k.is_empty() {
                    cur.pos += 1;
                    let (value, quoted) = match cur.peek() {
                        Some('"') => (cur.quoted()?, true),
                        Some('[') => (format!("[{}]", cur.bracket()?), false),
                        _ => (cur.bare(false)?, false),
                    };
                    // a value glued to more text (`a="x"y`) is a syntax error
                    if let Some(n) = cur.peek()
                        && n != ' '
                        && n != '\t'
                        && n != ';'
                    {
                        return Err(cur.err(ParseErrorKind::Unexpected(n.to_string())));
                    }
                    toks.push(Tok::Pair {
                        key: k,
                        value,
                        quoted,
                        col,
                    });
                } else {
                    cur.pos = save;
                    let text = cur.bare(false)?;
                    toks.push(Tok::Word { text, col });
                }
            }
        }
    }
    Ok((toks, cur.hazards))
}

/// Characters RouterOS leaves unquoted in values (observed in the corpus).
fn is_plain_value_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            '!' | '*' | '+' | ',' | '-' | '.' | '/' | ':' | '<' | '>' | '@' | '_' | '%' | '&' | '|'
        )
}

/// Whether a new value must be written in double quotes. Values read from a file keep the
/// quoting they had; this rule is for values set through the model (API, scripts).
/// Observed: empty values and values with spaces or `= [ ] " \ $ ? ; # { }` are quoted;
/// long comma lists are sometimes quoted by RouterOS too (threshold unknown: not reproduced).
pub fn needs_quotes(value: &str) -> bool {
    value.is_empty() || !value.chars().all(is_plain_value_char)
}

/// Encodes a value for export text: quoted form with escapes when `quoted`, else as is.
pub fn encode_value(value: &str, quoted: bool) -> String {
    if !quoted {
        return value.to_string();
    }
    let mut s = String::with_capacity(value.len() + 2);
    s.push('"');
    for c in value.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '$' => s.push_str("\\$"),
            '?' => s.push_str("\\?"),
            '\r' => s.push_str("\\r"),
            '\n' => s.push_str("\\n"),
            '\t' => s.push_str("\\t"),
            c if c.is_ascii() && !c.is_ascii_control() => s.push(c),
            c => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).as_bytes() {
                    s.push_str(&format!("\\{b:02X}"));
                }
            }
        }
    }
    s.push('"');
    s
}

/// Splits encoded text into wrap units: an escape sequence (`\r`, `\"`, `\AB`) is one unit.
pub(crate) fn units(encoded: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let b = encoded.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let len = if b[i] == b'\\' && i + 1 < b.len() {
            let hex = i + 2 < b.len()
                && b[i + 1].is_ascii_hexdigit()
                && b[i + 2].is_ascii_hexdigit()
                && (b[i + 1].is_ascii_digit() || b[i + 1].is_ascii_uppercase());
            if hex { 3 } else { 2 }
        } else {
            // one UTF-8 char
            let c = b[i];
            if c < 0x80 {
                1
            } else if c >= 0xF0 {
                4
            } else if c >= 0xE0 {
                3
            } else {
                2
            }
        };
        let end = (i + len).min(b.len());
        out.push(encoded.get(i..end).unwrap_or(""));
        i = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_continuations_inside_quotes() {
        let t = "add a=\"x\\\n    \\_y\" b=1\r\nset c=2\n";
        let ll = logical_lines(t);
        assert_eq!(ll.len(), 2);
        assert_eq!(ll[0].text, "add a=\"x\\_y\" b=1");
        assert_eq!(ll[0].span, 2);
        assert_eq!(ll[1].line, 3);
        assert!(!ll[1].open);
        let ll = logical_lines("add a=b \\\n    c=d \\");
        assert_eq!(ll.len(), 1);
        assert!(ll[0].open);
        assert_eq!(ll[0].text, "add a=b c=d ");
    }

    #[test]
    fn escaped_backslash_at_end_is_not_continuation() {
        assert!(!ends_with_continuation("a=\"x\\\\"));
        assert!(ends_with_continuation("a=\"x\\\\\\"));
    }

    #[test]
    fn tokenizes_pairs_words_brackets() {
        let t = tokenize(
            "set [ find default-name=ether1 ] comment=\"a \\\"b\\\" \\$c\\41\" !x",
            1,
        )
        .unwrap();
        assert_eq!(t.len(), 4);
        assert!(
            matches!(&t[1], Tok::Bracket { inner, .. } if inner == " find default-name=ether1 ")
        );
        assert!(
            matches!(&t[2], Tok::Pair { key, value, quoted: true, .. } if key == "comment" && value == "a \"b\" $cA")
        );
        assert!(matches!(&t[3], Tok::Word { text, .. } if text == "!x"));
    }

    #[test]
    fn unterminated_quote_is_an_error() {
        let e = tokenize("add a=\"x", 7).unwrap_err();
        assert_eq!(e.line, 7);
        assert_eq!(e.kind, ParseErrorKind::UnterminatedQuote);
    }

    #[test]
    fn encode_roundtrip() {
        let v = "a \"b\" $c?\r\n\té";
        let enc = encode_value(v, true);
        assert_eq!(enc, "\"a \\\"b\\\" \\$c\\?\\r\\n\\t\\C3\\A9\"");
        let t = tokenize(&format!("x={enc}"), 1).unwrap();
        assert!(matches!(&t[0], Tok::Pair { value, .. } if value == v));
    }
}
