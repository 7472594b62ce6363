//! Error types of the crate boundary.

use std::fmt;

/// What went wrong while parsing export or script text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// A double-quoted string is not closed before the end of the logical line.
    UnterminatedQuote,
    /// A `[` has no matching `]`.
    UnterminatedBracket,
    /// A backslash escape that RouterOS does not define.
    BadEscape,
    /// Decoded bytes (hex escapes) are not valid UTF-8.
    InvalidUtf8,
    /// A token that does not belong where it stands.
    Unexpected(String),
    /// A command verb that is not known in this position.
    BadCommand(String),
    /// An `add`/`set`/`remove` before any menu path line.
    CommandOutsideMenu,
    /// A selector expression (`[ find ... ]`) this crate does not understand.
    BadSelector(String),
    /// Text after the end of a command (for example a second selector).
    ExpectedEndOfCommand,
    /// A control character (other than tab) or U+FFFD: binary data, or bytes that were not
    /// UTF-8; RouterOS writes such bytes as `\XX` escapes inside quotes.
    ControlCharacter(char),
    /// The text ends inside a line continuation (a last line ending in `\`): truncated.
    ContinuationAtEnd,
    /// A captured CLI prompt (`[admin@MikroTik] > `) followed by more text; only a trailing
    /// prompt (what a captured session ends with) is accepted.
    PromptNotAtEnd,
    /// A menu path segment that is not a RouterOS menu name (lowercase letters, digits and
    /// `-`).
    BadMenuPath(String),
    /// A property name that is not a RouterOS property name (lowercase letters, digits, `-`,
    /// `.`, `/`).
    BadProperty(String),
}

impl fmt::Display for ParseErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseErrorKind::UnterminatedQuote => write!(f, "unterminated quoted string"),
            ParseErrorKind::UnterminatedBracket => write!(f, "unterminated [ ] expression"),
            ParseErrorKind::BadEscape => write!(f, "invalid escape sequence"),
            ParseErrorKind::InvalidUtf8 => write!(f, "escaped bytes are not valid UTF-8"),
            ParseErrorKind::Unexpected(t) => write!(f, "unexpected `{t}`"),
            ParseErrorKind::BadCommand(c) => write!(f, "bad command name {c}"),
            ParseErrorKind::CommandOutsideMenu => write!(f, "command before any menu path line"),
            ParseErrorKind::BadSelector(s) => write!(f, "unsupported selector `{s}`"),
            ParseErrorKind::ExpectedEndOfCommand => write!(f, "expected end of command"),
            ParseErrorKind::ControlCharacter(c) => write!(
                f,
                "control character U+{:04X}: binary data or text that was not UTF-8",
                u32::from(*c)
            ),
            ParseErrorKind::ContinuationAtEnd => write!(
                f,
                "the text ends inside a line continuation (last line ends in `\\`): truncated"
            ),
            ParseErrorKind::PromptNotAtEnd => write!(
                f,
                "captured CLI prompt followed by more text (only a trailing prompt is accepted)"
            ),
            ParseErrorKind::BadMenuPath(s) => write!(f, "`{s}` is not a RouterOS menu name"),
            ParseErrorKind::BadProperty(s) => {
                write!(f, "`{s}` is not a RouterOS property name")
            }
        }
    }
}

/// A parse failure with its position (1-based physical line of the logical line's start, and
/// 1-based column within the logical line, continuations joined) and, from
/// [`crate::parse_export`], the offending line itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column in the logical line.
    pub column: usize,
    /// What went wrong.
    pub kind: ParseErrorKind,
    /// The offending line as it can be shown: continuations joined, secret values masked
    /// ([`crate::mask_script`]), control characters escaped, cut to [`EXCERPT_CHARS`]
    /// characters (`...` marks the cut). Empty when the parser had no line to show.
    pub excerpt: String,
}

/// Longest [`ParseError::excerpt`] in characters (before the `...` that marks a cut).
pub const EXCERPT_CHARS: usize = 60;

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {} column {}: {}",
            self.line, self.column, self.kind
        )?;
        if !self.excerpt.is_empty() {
            write!(f, ": `{}`", self.excerpt)?;
        }
        Ok(())
    }
}

impl std::error::Error for ParseError {}

/// The shown form of a line: secrets masked, control characters escaped, cut.
pub(crate) fn excerpt(line: &str) -> String {
    let masked = crate::mask::mask_script(line).text;
    let mut out = String::new();
    for (n, c) in masked.chars().enumerate() {
        if n == EXCERPT_CHARS {
            out.push_str("...");
            break;
        }
        if c.is_control() || c == '\u{FFFD}' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

impl ParseError {
    pub(crate) fn new(line: usize, column: usize, kind: ParseErrorKind) -> ParseError {
        ParseError {
            line,
            column,
            kind,
            excerpt: String::new(),
        }
    }

    /// The same error showing `line` (see [`ParseError::excerpt`]) unless it shows one
    /// already.
    pub(crate) fn with_line(mut self, line: &str) -> ParseError {
        if self.excerpt.is_empty() {
            self.excerpt = excerpt(line);
        }
        self
    }

    /// The text RouterOS prints for this class of error in `import`/`:parse`
    /// (`syntax error (line N column M)`, `expected end of command (...)`,
    /// `bad command name X (...)`).
    pub fn routeros_message(&self) -> String {
        match &self.kind {
            ParseErrorKind::BadCommand(c) => {
                format!(
                    "bad command name {c} (line {} column {})",
                    self.line, self.column
                )
            }
            ParseErrorKind::ExpectedEndOfCommand => format!(
                "expected end of command (line {} column {})",
                self.line, self.column
            ),
            _ => format!("syntax error (line {} column {})", self.line, self.column),
        }
    }
}

/// A failure of a model operation (add/set/remove) on a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// The id, name or index does not denote an item of the menu.
    #[error("no such item")]
    NoSuchItem,
    /// An item with the same name already exists in the menu.
    #[error("failure: item with such name already exists")]
    DuplicateName,
    /// `/ip address` already has this address on this interface.
    #[error("failure: already have such address")]
    DuplicateAddress,
    /// A required argument is missing (wording unsourced).
    #[error("missing value for {0}")]
    MissingArgument(String),
    /// The command is not supported on this menu.
    #[error("no such command")]
    NoSuchCommand,
}

/// A change script failed at a line: either it does not parse or a command failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ScriptError {
    /// 1-based line of the failing command.
    pub line: usize,
    /// RouterOS-like message (`syntax error (line 3 column 5)`, `no such item`, ...).
    pub message: String,
}
