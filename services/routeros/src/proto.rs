//! Typed sentences above the codec: the commands a client sends and the replies a router sends.
//!
//! Both directions are symmetric so that a client and a simulated router share one model:
//! a client builds a [`Command`] and encodes it with [`Command::to_sentence`]; a server parses
//! it back with [`Command::from_sentence`], answers with [`Reply`] values encoded by
//! [`Reply::to_sentence`], which the client parses with [`Reply::from_sentence`].
//!
//! Word forms (ROUTEROS-NOTES §1.3–§1.5):
//! - command word first: `/ip/address/print` (a server receives whatever the client sent; the
//!   router answers a word without the leading `/` with a trap, so parsing does not reject it);
//! - attribute words `=name=value` (value may contain `=` and may be empty; a bare `=name` is
//!   read as an empty value, as go-routeros does). `.id` and `.proplist` are ordinary
//!   attributes on the wire (`=.id=*1`);
//! - the only API attribute is `.tag=value`; an empty tag means "untagged";
//! - query words `?name`, `?-name`, `?name=x` / `?=name=x`, `?<name=x`, `?>name=x`, `?#ops`;
//! - replies `!re`, `!done`, `!trap`, `!fatal`, `!empty` (7.18+). `!fatal`'s reason is a bare
//!   word, not an attribute; `=message=` is accepted too because some fakes send it.
//!
//! Names (attribute and query names) are UTF-8 text; values are raw bytes ([`Bytes`]).

use std::borrow::Cow;
use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::{CodecError, Sentence};

/// A malformed or unencodable sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// The sentence has no words.
    #[error("empty sentence")]
    EmptySentence,
    /// A reply's first word is not one of the five reply words.
    #[error("unknown reply word {word:?}")]
    UnknownReply {
        /// The first word, lossily decoded.
        word: String,
    },
    /// A word that has no meaning at its place in the sentence.
    #[error("unexpected word {word:?} in {context}")]
    UnexpectedWord {
        /// The word, lossily decoded and truncated to 64 characters.
        word: String,
        /// What was being parsed (`"command"`, `"!re"`, ...).
        context: &'static str,
    },
    /// A name, path or tag that must be UTF-8 is not.
    #[error("{what} is not valid UTF-8")]
    NotUtf8 {
        /// Which part of the word.
        what: &'static str,
    },
    /// A name that cannot be encoded unambiguously (empty, containing `=`, or starting with a
    /// character that changes the meaning of a query word).
    #[error("invalid {what} name {name:?}")]
    InvalidName {
        /// The offending name.
        name: String,
        /// `"attribute"` or `"query"`.
        what: &'static str,
    },
    /// An empty command path.
    #[error("empty command path")]
    EmptyPath,
    /// More than one `.tag=` word.
    #[error("more than one .tag word")]
    DuplicateTag,
    /// The sentence could not be framed (a word too long for the wire format).
    #[error("cannot frame the sentence")]
    Codec {
        /// The codec's reason.
        #[source]
        source: CodecError,
    },
    /// A `!trap` whose `category` is not a decimal number.
    #[error("trap category {value:?} is not a number")]
    BadCategory {
        /// The category value, lossily decoded.
        value: String,
    },
}

/// The `.tag` that routes replies to their command. Never empty (an empty tag means untagged).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    /// A tag, or `None` for the empty string.
    pub fn new(tag: impl Into<String>) -> Option<Tag> {
        let tag = tag.into();
        (!tag.is_empty()).then_some(Tag(tag))
    }

    /// The tag text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<u64> for Tag {
    fn from(n: u64) -> Self {
        Tag(n.to_string())
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Ordered `name -> value` attributes of a sentence. Duplicates are kept (`.about` may repeat);
/// lookups return the first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Attrs(Vec<(String, Bytes)>);

impl Attrs {
    /// No attributes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an attribute.
    pub fn push(&mut self, name: impl Into<String>, value: impl AsRef<[u8]>) {
        self.0
            .push((name.into(), Bytes::copy_from_slice(value.as_ref())));
    }

    /// Appends an attribute whose value is already [`Bytes`] (no copy).
    pub fn push_bytes(&mut self, name: impl Into<String>, value: Bytes) {
        self.0.push((name.into(), value));
    }

    /// Builder form of [`Attrs::push`].
    pub fn with(mut self, name: impl Into<String>, value: impl AsRef<[u8]>) -> Self {
        self.push(name, value);
        self
    }

    /// The raw value of the first attribute called `name`.
    pub fn get(&self, name: &str) -> Option<&Bytes> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The value as text; `None` when absent or not UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The value as text, invalid UTF-8 replaced by U+FFFD.
    pub fn get_lossy(&self, name: &str) -> Option<Cow<'_, str>> {
        self.get(name).map(|v| String::from_utf8_lossy(v))
    }

    /// True when an attribute called `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// All attributes in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Bytes)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v))
    }

    /// Number of attributes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<N: Into<String>, V: AsRef<[u8]>> FromIterator<(N, V)> for Attrs {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        let mut a = Attrs::new();
        for (n, v) in iter {
            a.push(n, v);
        }
        a
    }
}

/// One query word of a `print` (ROUTEROS-NOTES §1.4). Order is significant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Query {
    /// `?name`: the item has a value for `name`.
    Has(String),
    /// `?-name`: the item has no value for `name`.
    Absent(String),
    /// `?name=value`: the value equals.
    Equals(String, Bytes),
    /// `?<name=value`: the value is less than.
    Less(String, Bytes),
    /// `?>name=value`: the value is greater than.
    Greater(String, Bytes),
    /// `?#ops`: stack operations such as `|`, `&`, `!`.
    Ops(String),
}

impl Query {
    /// `?name=value`.
    pub fn eq(name: impl Into<String>, value: impl AsRef<[u8]>) -> Self {
        Query::Equals(name.into(), Bytes::copy_from_slice(value.as_ref()))
    }

    fn encode(&self) -> Result<Bytes, ProtoError> {
        let mut w = BytesMut::new();
        w.put_u8(b'?');
        let (op, name, value): (&str, &str, Option<&Bytes>) = match self {
            Query::Has(n) => ("", n, None),
            Query::Absent(n) => ("-", n, None),
            Query::Equals(n, v) => ("", n, Some(v)),
            Query::Less(n, v) => ("<", n, Some(v)),
            Query::Greater(n, v) => (">", n, Some(v)),
            Query::Ops(ops) => {
                w.put_u8(b'#');
                w.put_slice(ops.as_bytes());
                return Ok(w.freeze());
            }
        };
        check_name(name, "query")?;
        if name.starts_with(['-', '<', '>', '#']) {
            return Err(ProtoError::InvalidName {
                name: name.to_owned(),
                what: "query",
            });
        }
        w.put_slice(op.as_bytes());
        w.put_slice(name.as_bytes());
        if let Some(v) = value {
            w.put_u8(b'=');
            w.put_slice(v);
        }
        Ok(w.freeze())
    }

    /// Parses the text after the leading `?`.
    fn parse(body: &[u8]) -> Result<Self, ProtoError> {
        let bad = || ProtoError::UnexpectedWord {
            word: excerpt(&[b"?", body].concat()),
            context: "query",
        };
        let (first, rest) = body.split_first().ok_or_else(bad)?;
        let name_value = |s: &[u8]| -> Result<(String, Bytes), ProtoError> {
            let (n, v) = split_once(s, b'=').ok_or_else(bad)?;
            Ok((utf8_name(n, "query name")?, Bytes::copy_from_slice(v)))
        };
        Ok(match first {
            b'#' => Query::Ops(utf8(rest, "query operations")?.to_owned()),
            b'-' if !rest.is_empty() => Query::Absent(utf8_name(rest, "query name")?),
            b'<' => {
                let (n, v) = name_value(rest)?;
                Query::Less(n, v)
            }
            b'>' => {
                let (n, v) = name_value(rest)?;
                Query::Greater(n, v)
            }
            b'=' => {
                let (n, v) = name_value(rest)?;
                Query::Equals(n, v)
            }
            _ => match split_once(body, b'=') {
                Some(_) => {
                    let (n, v) = name_value(body)?;
                    Query::Equals(n, v)
                }
                None => Query::Has(utf8_name(body, "query name")?),
            },
        })
    }
}

/// A request: command path, attributes, queries and an optional tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    path: String,
    attrs: Attrs,
    queries: Vec<Query>,
    tag: Option<Tag>,
}

impl Command {
    /// A command for `path`, e.g. `/ip/address/print`.
    pub fn new(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            attrs: Attrs::new(),
            queries: Vec::new(),
            tag: None,
        }
    }

    /// Adds `=name=value`.
    pub fn attr(mut self, name: impl Into<String>, value: impl AsRef<[u8]>) -> Self {
        self.attrs.push(name, value);
        self
    }

    /// Adds `=name=` (an empty value, as used by flags such as `count-only` or `follow`).
    pub fn flag(self, name: impl Into<String>) -> Self {
        self.attr(name, b"")
    }

    /// Adds `=.id=id`.
    pub fn id(self, id: impl fmt::Display) -> Self {
        self.attr(".id", id.to_string())
    }

    /// Adds `=.proplist=a,b,c`.
    pub fn proplist<S: AsRef<str>>(self, props: &[S]) -> Self {
        let list = props
            .iter()
            .map(AsRef::as_ref)
            .collect::<Vec<_>>()
            .join(",");
        self.attr(".proplist", list)
    }

    /// Appends a query word.
    pub fn query(mut self, q: Query) -> Self {
        self.queries.push(q);
        self
    }

    /// Sets or replaces the `.tag`.
    pub fn with_tag(mut self, tag: Option<Tag>) -> Self {
        self.tag = tag;
        self
    }

    /// The command path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The attributes in order.
    pub fn attrs(&self) -> &Attrs {
        &self.attrs
    }

    /// The queries in order.
    pub fn queries(&self) -> &[Query] {
        &self.queries
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&Tag> {
        self.tag.as_ref()
    }

    /// Encodes: path, attributes, queries, then `.tag`.
    pub fn to_sentence(&self) -> Result<Sentence, ProtoError> {
        if self.path.is_empty() {
            return Err(ProtoError::EmptyPath);
        }
        let mut s = Sentence::default();
        s.push(Bytes::copy_from_slice(self.path.as_bytes()));
        for (name, value) in self.attrs.iter() {
            s.push(attr_word(name, value)?);
        }
        for q in &self.queries {
            s.push(q.encode()?);
        }
        if let Some(tag) = &self.tag {
            s.push(tag_word(tag));
        }
        Ok(s)
    }

    /// Encodes straight to wire bytes.
    pub fn to_bytes(&self) -> Result<Bytes, ProtoError> {
        frame(self.to_sentence()?)
    }

    /// Parses a request as a router would receive it.
    pub fn from_sentence(sentence: &Sentence) -> Result<Self, ProtoError> {
        let (first, rest) = sentence
            .words()
            .split_first()
            .ok_or(ProtoError::EmptySentence)?;
        let path = utf8(first, "command path")?;
        if path.is_empty() {
            return Err(ProtoError::EmptyPath);
        }
        let mut cmd = Command::new(path);
        let mut tag = TagSlot::default();
        for word in rest {
            if let Some(body) = word.strip_prefix(b"?") {
                cmd.queries.push(Query::parse(body)?);
            } else if !tag.take(word)? {
                let (n, v) = parse_attr(word, "command")?;
                cmd.attrs.push_bytes(n, v);
            }
        }
        cmd.tag = tag.0;
        Ok(cmd)
    }
}

/// `!trap` categories (ROUTEROS-NOTES §1.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrapCategory {
    /// 0: missing item or command.
    MissingItemOrCommand,
    /// 1: argument value failure.
    ArgumentValue,
    /// 2: execution of command interrupted (the normal end of a cancelled stream).
    Interrupted,
    /// 3: scripting related failure.
    Scripting,
    /// 4: general failure.
    General,
    /// 5: API related failure.
    Api,
    /// 6: TTY related failure.
    Tty,
    /// 7: value generated with `:return`.
    Return,
    /// Any other number.
    Other(u32),
}

impl TrapCategory {
    /// The category for a wire number.
    pub fn from_code(code: u32) -> Self {
        match code {
            0 => Self::MissingItemOrCommand,
            1 => Self::ArgumentValue,
            2 => Self::Interrupted,
            3 => Self::Scripting,
            4 => Self::General,
            5 => Self::Api,
            6 => Self::Tty,
            7 => Self::Return,
            n => Self::Other(n),
        }
    }

    /// The wire number.
    pub fn code(self) -> u32 {
        match self {
            Self::MissingItemOrCommand => 0,
            Self::ArgumentValue => 1,
            Self::Interrupted => 2,
            Self::Scripting => 3,
            Self::General => 4,
            Self::Api => 5,
            Self::Tty => 6,
            Self::Return => 7,
            Self::Other(n) => n,
        }
    }
}

impl fmt::Display for TrapCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code())
    }
}

/// A `!trap`: an error or exceptional condition. Many traps carry no category.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trap {
    /// `=category=`, when present.
    pub category: Option<TrapCategory>,
    /// `=message=` (lossily decoded; empty when absent).
    pub message: String,
    /// Any other attributes, in order.
    pub attrs: Attrs,
}

impl Trap {
    /// A trap with a message and optional category.
    pub fn new(category: Option<TrapCategory>, message: impl Into<String>) -> Self {
        Self {
            category,
            message: message.into(),
            attrs: Attrs::new(),
        }
    }

    /// True for `category=2` (`interrupted`), how a cancelled command ends.
    pub fn is_interrupted(&self) -> bool {
        self.category == Some(TrapCategory::Interrupted)
    }
}

/// What a reply sentence says, without its tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyKind {
    /// `!re`: one data row.
    Re(Attrs),
    /// `!done`: the last reply of a command; may carry `=ret=`.
    Done(Attrs),
    /// `!trap`: an error; a `!done` still follows.
    Trap(Trap),
    /// `!fatal`: the router is closing the connection; the reason.
    Fatal(String),
    /// `!empty` (7.18+): no data; a `!done` follows.
    Empty,
}

/// A reply sentence: its kind and `.tag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The `.tag` of the command this answers, if it was tagged.
    pub tag: Option<Tag>,
    /// The reply itself.
    pub kind: ReplyKind,
}

impl Reply {
    /// An untagged reply.
    pub fn new(kind: ReplyKind) -> Self {
        Self { tag: None, kind }
    }

    /// `!re` with the given attributes.
    pub fn re(attrs: Attrs) -> Self {
        Self::new(ReplyKind::Re(attrs))
    }

    /// `!done` without attributes.
    pub fn done() -> Self {
        Self::new(ReplyKind::Done(Attrs::new()))
    }

    /// `!done =ret=value`.
    pub fn done_ret(ret: impl AsRef<[u8]>) -> Self {
        Self::new(ReplyKind::Done(Attrs::new().with("ret", ret)))
    }

    /// `!trap` with an optional category and a message.
    pub fn trap(category: Option<TrapCategory>, message: impl Into<String>) -> Self {
        Self::new(ReplyKind::Trap(Trap::new(category, message)))
    }

    /// `!fatal reason`.
    pub fn fatal(reason: impl Into<String>) -> Self {
        Self::new(ReplyKind::Fatal(reason.into()))
    }

    /// `!empty`.
    pub fn empty() -> Self {
        Self::new(ReplyKind::Empty)
    }

    /// Sets the tag.
    pub fn with_tag(mut self, tag: Option<Tag>) -> Self {
        self.tag = tag;
        self
    }

    /// For `!done`, the `=ret=` value.
    pub fn ret(&self) -> Option<&Bytes> {
        match &self.kind {
            ReplyKind::Done(a) => a.get("ret"),
            _ => None,
        }
    }

    /// Encodes: reply word, attributes (`category` before `message` for traps), then `.tag`.
    pub fn to_sentence(&self) -> Result<Sentence, ProtoError> {
        let mut s = Sentence::default();
        let attrs_into = |s: &mut Sentence, a: &Attrs| -> Result<(), ProtoError> {
            for (n, v) in a.iter() {
                s.push(attr_word(n, v)?);
            }
            Ok(())
        };
        match &self.kind {
            ReplyKind::Re(a) => {
                s.push(Bytes::from_static(b"!re"));
                attrs_into(&mut s, a)?;
            }
            ReplyKind::Done(a) => {
                s.push(Bytes::from_static(b"!done"));
                attrs_into(&mut s, a)?;
            }
            ReplyKind::Trap(t) => {
                s.push(Bytes::from_static(b"!trap"));
                if let Some(c) = t.category {
                    s.push(attr_word("category", c.code().to_string().as_bytes())?);
                }
                s.push(attr_word("message", t.message.as_bytes())?);
                attrs_into(&mut s, &t.attrs)?;
            }
            ReplyKind::Fatal(reason) => {
                s.push(Bytes::from_static(b"!fatal"));
                // The router sends the reason as a bare word; one that would read as an
                // attribute or a tag goes as `=message=` so it parses back unchanged.
                if reason.starts_with('=') || reason.starts_with(".tag=") {
                    s.push(attr_word("message", reason.as_bytes())?);
                } else if !reason.is_empty() {
                    s.push(Bytes::copy_from_slice(reason.as_bytes()));
                }
            }
            ReplyKind::Empty => s.push(Bytes::from_static(b"!empty")),
        }
        if let Some(tag) = &self.tag {
            s.push(tag_word(tag));
        }
        Ok(s)
    }

    /// Encodes straight to wire bytes.
    pub fn to_bytes(&self) -> Result<Bytes, ProtoError> {
        frame(self.to_sentence()?)
    }

    /// Parses a reply sentence.
    pub fn from_sentence(sentence: &Sentence) -> Result<Self, ProtoError> {
        let (first, rest) = sentence
            .words()
            .split_first()
            .ok_or(ProtoError::EmptySentence)?;
        let mut tag = TagSlot::default();
        let kind = match &first[..] {
            b"!fatal" => {
                let mut reason: Option<String> = None;
                for w in rest {
                    if tag.take(w)? {
                        continue;
                    }
                    if let Some(m) = w.strip_prefix(b"=message=") {
                        reason = Some(String::from_utf8_lossy(m).into_owned());
                    } else if reason.is_none() && !w.starts_with(b"=") {
                        reason = Some(String::from_utf8_lossy(w).into_owned());
                    }
                }
                ReplyKind::Fatal(reason.unwrap_or_default())
            }
            word @ (b"!re" | b"!done" | b"!trap" | b"!empty") => {
                // `word` is one of the four ASCII literals above.
                let context = match word {
                    b"!re" => "!re",
                    b"!done" => "!done",
                    b"!trap" => "!trap",
                    _ => "!empty",
                };
                let mut attrs = Attrs::new();
                for w in rest {
                    if !tag.take(w)? {
                        let (n, v) = parse_attr(w, context)?;
                        attrs.push_bytes(n, v);
                    }
                }
                match word {
                    b"!re" => ReplyKind::Re(attrs),
                    b"!done" => ReplyKind::Done(attrs),
                    b"!trap" => ReplyKind::Trap(trap_from_attrs(attrs)?),
                    // `!empty` carries nothing but its tag; anything else is ignored.
                    _ => ReplyKind::Empty,
                }
            }
            _ => {
                return Err(ProtoError::UnknownReply {
                    word: excerpt(first),
                });
            }
        };
        Ok(Reply { tag: tag.0, kind })
    }
}

/// The `.tag` of a sentence, found without parsing the rest. Lets a client route a sentence it
/// could not parse to the command it belongs to.
pub fn sentence_tag(sentence: &Sentence) -> Option<Tag> {
    sentence
        .words()
        .iter()
        .skip(1)
        .find_map(|w| w.strip_prefix(b".tag="))
        .and_then(|t| std::str::from_utf8(t).ok())
        .and_then(Tag::new)
}

fn frame(sentence: Sentence) -> Result<Bytes, ProtoError> {
    sentence
        .to_bytes()
        .map_err(|source| ProtoError::Codec { source })
}

fn trap_from_attrs(attrs: Attrs) -> Result<Trap, ProtoError> {
    let mut trap = Trap::new(None, String::new());
    for (n, v) in attrs.0 {
        match n.as_str() {
            "category" if trap.category.is_none() => {
                let code = std::str::from_utf8(&v)
                    .ok()
                    .and_then(|s| s.parse::<u32>().ok())
                    .ok_or_else(|| ProtoError::BadCategory { value: excerpt(&v) })?;
                trap.category = Some(TrapCategory::from_code(code));
            }
            "message" if trap.message.is_empty() => {
                trap.message = String::from_utf8_lossy(&v).into_owned();
            }
            _ => trap.attrs.push_bytes(n, v),
        }
    }
    Ok(trap)
}

/// Collects at most one `.tag=` word.
#[derive(Default)]
struct TagSlot(Option<Tag>);

impl TagSlot {
    /// Consumes `word` if it is a `.tag=` word; returns whether it was.
    fn take(&mut self, word: &[u8]) -> Result<bool, ProtoError> {
        let Some(t) = word.strip_prefix(b".tag=") else {
            return Ok(false);
        };
        if self.0.is_some() {
            return Err(ProtoError::DuplicateTag);
        }
        self.0 = Tag::new(utf8(t, "tag")?);
        Ok(true)
    }
}

fn tag_word(tag: &Tag) -> Bytes {
    let mut w = BytesMut::with_capacity(5 + tag.0.len());
    w.put_slice(b".tag=");
    w.put_slice(tag.0.as_bytes());
    w.freeze()
}

fn check_name(name: &str, what: &'static str) -> Result<(), ProtoError> {
    if name.is_empty() || name.contains('=') {
        return Err(ProtoError::InvalidName {
            name: name.to_owned(),
            what,
        });
    }
    Ok(())
}

fn attr_word(name: &str, value: &[u8]) -> Result<Bytes, ProtoError> {
    check_name(name, "attribute")?;
    let mut w = BytesMut::with_capacity(2 + name.len() + value.len());
    w.put_u8(b'=');
    w.put_slice(name.as_bytes());
    w.put_u8(b'=');
    w.put_slice(value);
    Ok(w.freeze())
}

/// Parses `=name=value` (or the tolerated bare `=name`).
fn parse_attr(word: &Bytes, context: &'static str) -> Result<(String, Bytes), ProtoError> {
    let unexpected = || ProtoError::UnexpectedWord {
        word: excerpt(word),
        context,
    };
    let body = word.strip_prefix(b"=").ok_or_else(unexpected)?;
    let (name, value) = match split_once(body, b'=') {
        // `body` starts one byte into `word`; the value starts after the second `=`.
        Some((n, _)) => (n, word.slice(n.len() + 2..)),
        None => (body, Bytes::new()),
    };
    if name.is_empty() {
        return Err(unexpected());
    }
    Ok((utf8(name, "attribute name")?.to_owned(), value))
}

fn split_once(s: &[u8], sep: u8) -> Option<(&[u8], &[u8])> {
    let i = s.iter().position(|&b| b == sep)?;
    Some((&s[..i], &s[i + 1..]))
}

fn utf8<'a>(b: &'a [u8], what: &'static str) -> Result<&'a str, ProtoError> {
    std::str::from_utf8(b).map_err(|_| ProtoError::NotUtf8 { what })
}

fn utf8_name(b: &[u8], what: &'static str) -> Result<String, ProtoError> {
    let s = utf8(b, what)?;
    if s.is_empty() {
        return Err(ProtoError::InvalidName {
            name: String::new(),
            what,
        });
    }
    Ok(s.to_owned())
}

/// A word for an error message: lossy, at most 64 characters.
fn excerpt(word: &[u8]) -> String {
    String::from_utf8_lossy(word).chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sentence(words: &[&[u8]]) -> Sentence {
        words.iter().map(|w| Bytes::copy_from_slice(w)).collect()
    }

    fn words(s: &Sentence) -> Vec<&[u8]> {
        s.words().iter().map(|w| &w[..]).collect()
    }

    #[test]
    fn command_encodes_in_wire_order() {
        let cmd = Command::new("/ip/address/add")
            .attr("address", "10.0.0.1/24")
            .attr("interface", "ether1")
            .with_tag(Tag::new("7"));
        let s = cmd.to_sentence().unwrap();
        assert_eq!(
            words(&s),
            [
                &b"/ip/address/add"[..],
                b"=address=10.0.0.1/24",
                b"=interface=ether1",
                b".tag=7"
            ]
        );
        assert_eq!(Command::from_sentence(&s).unwrap(), cmd);
    }

    #[test]
    fn command_parses_queries_and_api_attributes() {
        let s = sentence(&[
            b"/interface/print",
            b"?type=ether",
            b".tag=p1",
            b"?=type=vlan",
            b"?#|",
            b"=.proplist=name,type",
            b"?-comment",
            b"?>comment=",
            b"?<mtu=1500",
            b"?running",
            b"=count-only",
        ]);
        let c = Command::from_sentence(&s).unwrap();
        assert_eq!(c.path(), "/interface/print");
        assert_eq!(c.tag(), Tag::new("p1").as_ref());
        assert_eq!(c.attrs().get_str(".proplist"), Some("name,type"));
        assert_eq!(c.attrs().get_str("count-only"), Some(""));
        assert_eq!(
            c.queries(),
            &[
                Query::eq("type", "ether"),
                Query::eq("type", "vlan"),
                Query::Ops("|".into()),
                Query::Absent("comment".into()),
                Query::Greater("comment".into(), Bytes::new()),
                Query::Less("mtu".into(), Bytes::from_static(b"1500")),
                Query::Has("running".into()),
            ]
        );
    }

    #[test]
    fn attribute_values_keep_equals_signs_and_bytes() {
        let s = sentence(&[b"!re", b"=comment=a=b==c", b"=x=", b"=raw=\xff\x00"]);
        let r = Reply::from_sentence(&s).unwrap();
        let ReplyKind::Re(a) = &r.kind else {
            panic!("{r:?}")
        };
        assert_eq!(a.get_str("comment"), Some("a=b==c"));
        assert_eq!(a.get_str("x"), Some(""));
        assert_eq!(a.get("raw").map(|b| &b[..]), Some(&b"\xff\x00"[..]));
        assert_eq!(a.get_str("raw"), None);
    }

    #[test]
    fn trap_with_and_without_category() {
        let r = Reply::from_sentence(&sentence(&[
            b"!trap",
            b"=category=1",
            b"=message=input does not match any value of interface",
        ]))
        .unwrap();
        assert_eq!(
            r.kind,
            ReplyKind::Trap(Trap::new(
                Some(TrapCategory::ArgumentValue),
                "input does not match any value of interface"
            ))
        );
        let r = Reply::from_sentence(&sentence(&[
            b"!trap",
            b"=message=invalid user name or password (6)",
        ]))
        .unwrap();
        assert_eq!(
            r.kind,
            ReplyKind::Trap(Trap::new(None, "invalid user name or password (6)"))
        );
        assert_eq!(
            Reply::from_sentence(&sentence(&[b"!trap", b"=category=x"])),
            Err(ProtoError::BadCategory { value: "x".into() })
        );
    }

    #[test]
    fn fatal_reason_is_a_bare_word_or_message() {
        let r = Reply::from_sentence(&sentence(&[b"!fatal", b"session terminated on request"]))
            .unwrap();
        assert_eq!(
            r.kind,
            ReplyKind::Fatal("session terminated on request".into())
        );
        let r = Reply::from_sentence(&sentence(&[b"!fatal", b"=message=too many"])).unwrap();
        assert_eq!(r.kind, ReplyKind::Fatal("too many".into()));
        assert_eq!(
            words(&Reply::fatal("bye").to_sentence().unwrap()),
            [&b"!fatal"[..], b"bye"]
        );
        for odd in ["=x=y", ".tag=5", "=message="] {
            let r = Reply::fatal(odd);
            assert_eq!(Reply::from_sentence(&r.to_sentence().unwrap()).unwrap(), r);
        }
    }

    #[test]
    fn cancel_sequence_from_the_manual() {
        let trap = Reply::from_sentence(&sentence(&[
            b"!trap",
            b"=category=2",
            b"=message=interrupted",
            b".tag=2",
        ]))
        .unwrap();
        assert_eq!(trap.tag, Tag::new("2"));
        assert!(matches!(&trap.kind, ReplyKind::Trap(t) if t.is_interrupted()));
        let empty = Reply::from_sentence(&sentence(&[b"!empty", b".tag=p1"])).unwrap();
        assert_eq!(empty, Reply::empty().with_tag(Tag::new("p1")));
        let done = Reply::from_sentence(&sentence(&[b"!done", b"=ret=*3"])).unwrap();
        assert_eq!(done.ret().map(|b| &b[..]), Some(&b"*3"[..]));
    }

    #[test]
    fn empty_tag_means_untagged() {
        let r = Reply::from_sentence(&sentence(&[b"!done", b".tag="])).unwrap();
        assert_eq!(r.tag, None);
    }

    #[test]
    fn malformed_replies_are_typed_errors() {
        assert_eq!(
            Reply::from_sentence(&Sentence::default()),
            Err(ProtoError::EmptySentence)
        );
        assert!(matches!(
            Reply::from_sentence(&sentence(&[b"!bogus"])),
            Err(ProtoError::UnknownReply { .. })
        ));
        assert!(matches!(
            Reply::from_sentence(&sentence(&[b"/ip/print"])),
            Err(ProtoError::UnknownReply { .. })
        ));
        assert!(matches!(
            Reply::from_sentence(&sentence(&[b"!re", b"name=x"])),
            Err(ProtoError::UnexpectedWord { context: "!re", .. })
        ));
        assert!(matches!(
            Reply::from_sentence(&sentence(&[b"!re", b"==x"])),
            Err(ProtoError::UnexpectedWord { .. })
        ));
        assert_eq!(
            Reply::from_sentence(&sentence(&[b"!done", b".tag=1", b".tag=2"])),
            Err(ProtoError::DuplicateTag)
        );
        assert_eq!(
            Reply::from_sentence(&sentence(&[b"!re", b"=\xff=1"])),
            Err(ProtoError::NotUtf8 {
                what: "attribute name"
            })
        );
    }

    #[test]
    fn unencodable_names_are_refused() {
        assert!(matches!(
            Command::new("/x").attr("a=b", "c").to_sentence(),
            Err(ProtoError::InvalidName { .. })
        ));
        assert!(matches!(
            Command::new("/x").attr("", "c").to_sentence(),
            Err(ProtoError::InvalidName { .. })
        ));
        assert!(matches!(
            Command::new("/x")
                .query(Query::Has("-x".into()))
                .to_sentence(),
            Err(ProtoError::InvalidName { .. })
        ));
        assert_eq!(Command::new("").to_sentence(), Err(ProtoError::EmptyPath));
    }

    #[test]
    fn sentence_tag_finds_tag_of_unparseable_sentence() {
        let s = sentence(&[b"!bogus", b"junk", b".tag=9"]);
        assert_eq!(sentence_tag(&s), Tag::new("9"));
        assert_eq!(sentence_tag(&sentence(&[b".tag=9"])), None);
    }

    fn name() -> impl Strategy<Value = String> {
        "[a-z.][a-z0-9.-]{0,12}"
    }

    fn value() -> impl Strategy<Value = Bytes> {
        proptest::collection::vec(any::<u8>(), 0..24).prop_map(Bytes::from)
    }

    fn attrs() -> impl Strategy<Value = Attrs> {
        proptest::collection::vec((name(), value()), 0..5).prop_map(|v| v.into_iter().collect())
    }

    fn tag() -> impl Strategy<Value = Option<Tag>> {
        proptest::option::of("[a-z0-9]{1,6}").prop_map(|t| t.and_then(Tag::new))
    }

    fn query() -> impl Strategy<Value = Query> {
        prop_oneof![
            name().prop_map(Query::Has),
            name().prop_map(Query::Absent),
            (name(), value()).prop_map(|(n, v)| Query::Equals(n, v)),
            (name(), value()).prop_map(|(n, v)| Query::Less(n, v)),
            (name(), value()).prop_map(|(n, v)| Query::Greater(n, v)),
            "[0-9|&!.]{0,6}".prop_map(Query::Ops),
        ]
    }

    fn reply() -> impl Strategy<Value = Reply> {
        let trap_attrs = proptest::collection::vec(("[a-z][a-z0-9-]{0,8}", value()), 0..3)
            .prop_map(|v| {
                v.into_iter()
                    .filter(|(n, _)| n != "category" && n != "message")
                    .collect::<Attrs>()
            });
        let kind = prop_oneof![
            attrs().prop_map(ReplyKind::Re),
            attrs().prop_map(ReplyKind::Done),
            (
                proptest::option::of(any::<u32>()),
                "[ -~]{1,30}",
                trap_attrs
            )
                .prop_map(|(c, m, attrs)| ReplyKind::Trap(Trap {
                    category: c.map(TrapCategory::from_code),
                    message: m,
                    attrs
                })),
            "[ -~]{0,30}".prop_map(ReplyKind::Fatal),
            Just(ReplyKind::Empty),
        ];
        (kind, tag()).prop_map(|(kind, tag)| Reply { tag, kind })
    }

    proptest! {
        #[test]
        fn commands_round_trip(
            path in "/[a-z/-]{1,20}",
            attrs in attrs(),
            queries in proptest::collection::vec(query(), 0..4),
            tag in tag(),
        ) {
            let mut cmd = Command::new(path).with_tag(tag);
            for (n, v) in attrs.iter() { cmd = cmd.attr(n, v); }
            for q in queries { cmd = cmd.query(q); }
            let s = cmd.to_sentence().unwrap();
            prop_assert_eq!(Command::from_sentence(&s).unwrap(), cmd);
        }

        #[test]
        fn replies_round_trip(r in reply()) {
            let s = r.to_sentence().unwrap();
            prop_assert_eq!(Reply::from_sentence(&s).unwrap(), r);
        }

        #[test]
        fn arbitrary_sentences_never_panic(ws in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..12), 0..6)
        ) {
            let s: Sentence = ws.into_iter().collect();
            let _ = Reply::from_sentence(&s);
            let _ = Command::from_sentence(&s);
            let _ = sentence_tag(&s);
        }
    }
}
