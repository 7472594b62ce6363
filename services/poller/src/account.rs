//! Who changed a drifted device, as the device itself recorded it: the reading of RouterOS
//! `/system/history` (action, `by` user, policy, time) and `/user/active` (logged-in users)
//! that goes into `ConfigDriftDetected` (ROUTEROS-NOTES §5.14, §5.16).
//!
//! [`read`] runs both prints at once on the device's session under one timeout; a failure
//! or timeout of either never holds up the drift event: it is recorded without that part
//! (the history's failure is named in the event). [`select`] is the pure part: which history
//! rows go into the event. RouterOS item ids are `*` + hex and grow as items are added
//! (ROUTEROS-NOTES §4.1; that they never go backwards except when the history restarts is
//! inferred), so the rows "since the previous snapshot" are those with an id above the
//! newest id seen when the configuration last matched the snapshot (the *mark*). Without a
//! mark (a poller that just took the device over), or when the ids went backwards (the
//! history restarted, e.g. at a reboot), it takes the newest rows. Either way at most
//! `limit` rows, newest first, each field cut to [`FIELD_MAX`] characters. The rows' `time`
//! is kept as the device printed it: the device's clock and zone are its own, so it is not
//! used to select rows.

use std::time::Duration;

use netledger_domain::device::{ActiveUser, DeviceHistoryEntry};
use netledger_domain::errors::error_chain;
use routeros::{Attrs, Client, Command};

use crate::decide::DeviceAccount;

/// Longest text kept of one field of a device's row.
pub const FIELD_MAX: usize = 200;

/// A `/system/history` row with its numeric id (`*1F` → 31), when it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    /// The row's id, parsed.
    pub id: Option<u64>,
    /// The row as the event records it.
    pub entry: DeviceHistoryEntry,
}

/// The numeric value of a RouterOS id (`*1F`).
pub fn parse_id(id: &str) -> Option<u64> {
    u64::from_str_radix(id.strip_prefix('*')?, 16).ok()
}

fn field(row: &Attrs, key: &str) -> Option<String> {
    row.get_str(key)
        .map(|v| v.chars().take(FIELD_MAX).collect())
}

/// A `/system/history` row.
pub fn history_row(row: &Attrs) -> HistoryRow {
    HistoryRow {
        id: row.get_str(".id").and_then(parse_id),
        entry: DeviceHistoryEntry {
            action: field(row, "action").unwrap_or_default(),
            by: field(row, "by").unwrap_or_default(),
            time: field(row, "time").unwrap_or_default(),
            policy: field(row, "policy"),
        },
    }
}

/// A `/user/active` row.
pub fn active_user(row: &Attrs) -> ActiveUser {
    ActiveUser {
        name: field(row, "name").unwrap_or_default(),
        address: field(row, "address").unwrap_or_default(),
        via: field(row, "via").unwrap_or_default(),
        when: field(row, "when"),
    }
}

/// The newest id of a history read: `Some(0)` for an empty history, `None` when an id does
/// not parse (then no mark can be kept).
pub fn head(rows: &[HistoryRow]) -> Option<u64> {
    rows.iter()
        .try_fold(0u64, |max, r| r.id.map(|id| max.max(id)))
}

/// The rows for the event: newer than `mark` when that can be told, newest first, at most
/// `limit` (see the module docs).
pub fn select(
    mut rows: Vec<HistoryRow>,
    mark: Option<u64>,
    limit: usize,
) -> Vec<DeviceHistoryEntry> {
    let ids_known = rows.iter().all(|r| r.id.is_some());
    if ids_known {
        // Newest first whatever order the device printed them in.
        rows.sort_by_key(|r| std::cmp::Reverse(r.id));
        let newest = head(&rows).unwrap_or(0);
        if let Some(mark) = mark.filter(|m| *m <= newest) {
            rows.retain(|r| r.id.is_some_and(|id| id > mark));
        }
    }
    rows.into_iter().take(limit).map(|r| r.entry).collect()
}

/// What [`read`] found: the event's part and the newest history id (for the next mark).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Read {
    /// For the event.
    pub account: DeviceAccount,
    /// The newest id of the history read, when read and parseable.
    pub head: Option<u64>,
}

/// Reads `/system/history` and `/user/active` on `client`, both within `timeout`.
pub async fn read(client: &Client, timeout: Duration, mark: Option<u64>, limit: usize) -> Read {
    let history =
        Command::new("/system/history/print").proplist(&[".id", "action", "by", "policy", "time"]);
    let active = Command::new("/user/active/print").proplist(&["name", "address", "via", "when"]);
    let (h, a) = tokio::join!(
        client.run_with_timeout(history, timeout),
        client.run_with_timeout(active, timeout)
    );
    let mut out = Read::default();
    match h {
        Ok(resp) => {
            let rows: Vec<HistoryRow> = resp.rows.iter().map(history_row).collect();
            out.head = head(&rows);
            out.account.history = Some(select(rows, mark, limit));
        }
        Err(e) => out.account.history_error = Some(error_chain(&e)),
    }
    match a {
        Ok(resp) => out.account.active_users = Some(resp.rows.iter().map(active_user).collect()),
        Err(e) => tracing::debug!(error = %error_chain(&e), "reading /user/active failed"),
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn row(id: Option<u64>, action: &str) -> HistoryRow {
        HistoryRow {
            id,
            entry: DeviceHistoryEntry {
                action: action.into(),
                by: "bob".into(),
                time: "t".into(),
                policy: None,
            },
        }
    }

    fn actions(v: &[DeviceHistoryEntry]) -> Vec<&str> {
        v.iter().map(|e| e.action.as_str()).collect()
    }

    #[test]
    fn ids_parse_as_routeros_prints_them() {
        assert_eq!(parse_id("*1F"), Some(31));
        assert_eq!(parse_id("*1"), Some(1));
        assert_eq!(parse_id("1"), None);
        assert_eq!(parse_id("*x"), None);
    }

    #[test]
    fn rows_since_the_mark_newest_first_bounded() {
        // printed oldest first here: the order does not matter
        let rows = || {
            (1..=6)
                .map(|i| row(Some(i), &format!("a{i}")))
                .collect::<Vec<_>>()
        };
        assert_eq!(head(&rows()), Some(6));
        assert_eq!(actions(&select(rows(), Some(3), 20)), ["a6", "a5", "a4"]);
        assert_eq!(actions(&select(rows(), Some(3), 2)), ["a6", "a5"]);
        // no mark: the newest rows
        assert_eq!(actions(&select(rows(), None, 2)), ["a6", "a5"]);
        // nothing since the mark
        assert!(select(rows(), Some(6), 20).is_empty());
        // ids went backwards (the history restarted): the newest rows
        assert_eq!(actions(&select(rows(), Some(40), 3)), ["a6", "a5", "a4"]);
        // empty history
        assert_eq!(head(&[]), Some(0));
        assert!(select(Vec::new(), Some(2), 20).is_empty());
    }

    #[test]
    fn without_ids_the_devices_order_is_kept_and_no_mark_applies() {
        let rows = vec![row(None, "n1"), row(Some(9), "n2"), row(Some(1), "n3")];
        assert_eq!(head(&rows), None);
        assert_eq!(actions(&select(rows, Some(5), 2)), ["n1", "n2"]);
    }

    #[test]
    fn long_fields_are_cut() {
        let mut attrs = Attrs::new();
        attrs.push(".id", "*A");
        attrs.push("action", "x".repeat(FIELD_MAX + 50));
        attrs.push("by", "bob");
        let r = history_row(&attrs);
        assert_eq!(r.id, Some(10));
        assert_eq!(r.entry.action.chars().count(), FIELD_MAX);
        assert_eq!(r.entry.by, "bob");
        assert_eq!(r.entry.time, "");
        assert_eq!(r.entry.policy, None);
    }
}
