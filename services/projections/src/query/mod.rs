//! Tenant-scoped queries over the read models, for the REST API.
//!
//! Every function takes the **app** pool (`netledger_app`) and a tenant, and runs in one
//! transaction scoped to that tenant ([`netledger_store::begin_tenant`]): row-level security
//! shows only that tenant's rows whatever the query says. Lists are keyset-paginated in a
//! stable order, each order served by an index (see the migration): pass a page's
//! `next_cursor` back unchanged to get the next page; `None` means there is no next page.
//! Limits are clamped to 1..=[`MAX_LIMIT`] (default [`DEFAULT_LIMIT`]).
//!
//! One file per resource (devices, config versions, workflow runs, rollouts, change requests,
//! the audit feed);
//! everything is re-exported here, so callers use `query::list_devices` and so on.

mod audit;
mod changes;
mod configs;
mod devices;
mod rollouts;
mod workflows;

pub use audit::*;
pub use changes::*;
pub use configs::*;
pub use devices::*;
pub use rollouts::*;
pub use workflows::*;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::ProjectionError;

/// Page size when none is asked for.
pub const DEFAULT_LIMIT: i64 = 50;
/// Largest page size.
pub const MAX_LIMIT: i64 = 500;

fn limit_of(limit: Option<i64>) -> i64 {
    limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The items, in the list's order.
    pub items: Vec<T>,
    /// Cursor of the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

fn decode_err(operation: &'static str) -> impl Fn(sqlx::Error) -> ProjectionError {
    move |source| ProjectionError::Database { operation, source }
}

/// A `snake_case` text column as a serde enum.
fn text_enum<T: DeserializeOwned>(text: String) -> Result<T, ProjectionError> {
    serde_json::from_value(serde_json::Value::String(text)).map_err(|e| ProjectionError::Database {
        operation: "decode read-model enum",
        source: sqlx::Error::Decode(Box::new(e)),
    })
}

fn numeric_cursor(cursor: &Option<String>) -> Result<Option<i64>, ProjectionError> {
    match cursor {
        None => Ok(None),
        Some(c) => c
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ProjectionError::BadCursor { cursor: c.clone() }),
    }
}

/// Escapes `%`, `_` and `\` for a `LIKE` pattern.
fn like_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    for ch in text.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// Cuts the extra row fetched to learn whether another page exists, returning its cursor.
fn next_page<T>(items: &mut Vec<T>, limit: i64, cursor: impl Fn(&T) -> String) -> Option<String> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if items.len() > limit {
        items.truncate(limit);
        items.last().map(cursor)
    } else {
        None
    }
}

fn u32_of(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}
