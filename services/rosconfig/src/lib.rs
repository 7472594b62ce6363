//! RouterOS configuration export text: parse, model, render, normalise, diff, mask, and
//! change scripts. Pure: no IO, no async, no clock; depends on nothing of ours.
//!
//! * [`parse_export`] turns export text (any of the corpus's 16 real exports; compact,
//!   `terse` or `verbose`) into a [`Config`]: ordered [`Section`]s keyed by [`MenuPath`],
//!   holding `add` [`Entry`]s with RouterOS-style ids (`*1`, `*2`, ... per menu), `set`
//!   statements ([`SetStmt`]) on built-in or singleton items, and RouterOS remark comments.
//!   Text that is not export syntax is an error naming and showing the line.
//! * [`render`] writes export text in RouterOS's format, wrapped like a terminal of a given
//!   width ([`Wrap`]) or unwrapped, with the original or a generated header;
//!   [`render_terse`] writes the `terse` form. [`detect_form`] tells the forms apart.
//! * [`known_defaults`] is the table of default values known from the corpus;
//!   [`Config::drop_known_defaults`] drops them so verbose and compact exports compare.
//! * [`normalise`] gives canonical text for hashing and diffing ([`normalise_with`] can
//!   drop known defaults); [`mask_secrets`] replaces
//!   secret values with `MASKED` before text leaves the platform (git);
//!   [`mask_script`] masks the secret values of change scripts (what is journaled and shown).
//! * [`unified_diff`] and [`semantic_diff`] compare configurations
//!   ([`semantic_diff_known_defaults`] across compact and verbose exports).
//! * [`parse_script`] / [`apply_script`] handle change scripts (`/import` semantics).
//!
//! Errors are typed ([`ParseError`] with line, column and the offending line, [`ModelError`],
//! [`ScriptError`]); no input makes this crate panic.

mod defaults;
mod diff;
mod error;
mod form;
mod lex;
mod mask;
mod model;
mod normalize;
mod parse;
mod render;
mod script;

pub use defaults::{DefaultValue, KnownDefault, RowKind, known_default, known_defaults};
pub use diff::{
    AttrChange, Change, DiffLine, SectionDiff, SemanticDiff, line_diff, semantic_diff,
    semantic_diff_known_defaults, unified_diff,
};
pub use error::{EXCERPT_CHARS, ModelError, ParseError, ParseErrorKind, ScriptError};
pub use form::{ExportForm, VERBOSE_MIN_VALUES, VERBOSE_SHARE, detect_form};
pub use lex::{LineEnding, encode_value, needs_quotes};
pub use mask::{MASK, MaskedScript, is_secret, is_secret_key, mask_script, redact};
pub use model::{
    Attr, BadItemId, Config, Entry, FindExpr, FindTerm, Header, ItemId, MenuPath, Section,
    Selector, SetStmt, Stmt, get_attr,
};
pub use normalize::{NormaliseOptions, mask_secrets, normalise, normalise_masked, normalise_with};
pub use parse::parse_export;
pub use render::{ExportHeader, HeaderMode, RenderOptions, Wrap, render, render_terse};
pub use script::{
    ApplyReport, Arg, ScriptCommand, Substitution, apply_command, apply_script, dry_run,
    parse_script,
};

/// Marker of a change id in device text: `netledger-change-<id>`, the id made of letters,
/// digits, `-` and `_`. The push writes it into every change it applies (netops) and the
/// simulator counts applications by it (devsim); both use this one constant.
pub const CHANGE_MARKER: &str = "netledger-change-";
