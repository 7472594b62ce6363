//! Who changed the device, as the device itself records it: `/system/history` (RouterOS's
//! undo history, ROUTEROS-NOTES §5.14) and `/user/active` (the logged-in sessions, §5.16).
//! Owns the `action` text of a configuration change, the history rows `print` shows, the
//! live API sessions and their rows. Which changes are recorded, and by whom, is the
//! executor's [`super::exec::Origin::history_by`]; the writes call
//! [`crate::state::DeviceState::note_history`] with the text made here.
//!
//! What is sourced and what is a guess (MikroTik manual "Configuration Management", MT-CFG):
//! - sourced: the properties `action`, `by`, `policy`, `time`; `policy=write` on
//!   configuration changes; the action texts `filter rule added` (`/ip firewall filter add`)
//!   and `route 0.0.0.0/0 added` (`/ip route add` without arguments: the destination is
//!   named, the default one included); `time` printed like every date of the version
//!   (`oct/10/2019 18:51:05`, ISO from 7.10, §4.3); rows listed newest first (the manual's
//!   `print detail` lists 18:51:05 before 18:49:03); about 100 actions kept;
//! - inferred: the flags U (undoable) and R (redoable) as the boolean properties
//!   `undoable`/`redoable` over the API (the CLI's flag names; how the API spells them is
//!   unsourced), every change undoable and none redoable (devsim has no `/undo`);
//! - guessed: every other action text. They follow the sourced pattern `<what> <verb>`:
//!   `<what>` is `filter|nat|mangle|raw rule` for the firewall tables, `route <dst>` for
//!   routes, otherwise the menu's last word with `-` as a space (`address`, `identity`,
//!   `address list`, `scheduler`); `<verb>` is `added`, `removed`, or `changed` (`set`,
//!   `enable`, `disable`, `unset`). One row per command even when it names several items.
//!   A `/system backup load` records `configuration restored from <file>`.
//! - not simulated: the `redo`/`undo` properties (CLI text of the command and its
//!   inverse), the F (floating-undo, safe mode) flag, the `---` rows of the manual's
//!   example, and whether RouterOS clears the history at reboot (devsim keeps it).
//!
//! `/user/active` rows (`.id`, `when`, `name`, `address`, `via`, `group`, `radius`: the
//! property names are sourced, MT-REST §5.1) are the device's live API and SSH sessions:
//! added at a successful login, gone when the connection ends. `via` is `api` for API and
//! API-SSL sessions alike (whether RouterOS names API-SSL sessions differently is
//! unsourced) and `ssh` for SSH sessions (unsourced value);
//! `when` is the login time in the version's date format.

use std::net::SocketAddr;
use std::time::Duration;

use rosconfig::{ItemId, MenuPath};

use super::Device;
use super::values::fmt_date_time;
use crate::query::{Row, get};
use crate::state::DeviceState;

/// `policy` of a configuration change (MT-CFG).
pub(crate) const WRITE_POLICY: &str = "write";

/// The `action` text of a configuration change: `verb` on `menu`; `dst` is a route's
/// destination when known (see the module docs for what is sourced).
pub(crate) fn action(menu: &MenuPath, verb: &str, dst: Option<&str>) -> String {
    let past = match verb {
        "add" => "added",
        "remove" => "removed",
        _ => "changed",
    };
    let api = menu.to_api();
    let what = match api.as_str() {
        "/ip/firewall/filter"
        | "/ip/firewall/nat"
        | "/ip/firewall/mangle"
        | "/ip/firewall/raw"
        | "/ipv6/firewall/filter"
        | "/ipv6/firewall/nat"
        | "/ipv6/firewall/mangle"
        | "/ipv6/firewall/raw" => {
            format!("{} rule", menu.segments().last().map_or("", String::as_str))
        }
        "/ip/route" | "/ipv6/route" => match (verb, dst) {
            (_, Some(d)) => format!("route {d}"),
            ("add", None) if api == "/ip/route" => "route 0.0.0.0/0".to_owned(),
            ("add", None) => "route ::/0".to_owned(),
            _ => "route".to_owned(),
        },
        _ => menu
            .segments()
            .last()
            .map(|s| s.replace('-', " "))
            .unwrap_or_else(|| "item".to_owned()),
    };
    format!("{what} {past}")
}

/// `/system backup load`'s history text (a guess).
pub(crate) fn restore_action(file: &str) -> String {
    format!("configuration restored from {file}")
}

/// One live API session (a `/user/active` row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ActiveSession {
    pub id: u32,
    pub name: String,
    pub address: String,
    pub via: &'static str,
    pub since: Duration,
}

impl Device {
    /// `/system history` rows, newest first.
    pub(super) fn history_rows(&self, st: &DeviceState) -> Vec<(ItemId, Row)> {
        st.history
            .iter()
            .rev()
            .map(|h| {
                let (d, t) = fmt_date_time(h.at, st.version);
                let row: Row = vec![
                    (".id".into(), ItemId(h.id).to_string()),
                    ("action".into(), h.action.clone()),
                    ("by".into(), h.by.clone()),
                    ("policy".into(), WRITE_POLICY.into()),
                    ("time".into(), format!("{d} {t}")),
                    ("undoable".into(), "true".into()),
                    ("redoable".into(), "false".into()),
                ];
                (ItemId(h.id), row)
            })
            .collect()
    }

    /// `/user active` rows, in login order.
    pub(super) fn active_rows(&self, st: &DeviceState) -> Vec<(ItemId, Row)> {
        let users = self.items(st, &MenuPath::parse("/user"));
        st.sessions
            .iter()
            .map(|s| {
                let group = users
                    .iter()
                    .find(|u| get(&u.row, "name") == Some(s.name.as_str()))
                    .and_then(|u| get(&u.row, "group"))
                    .unwrap_or("full");
                let (d, t) = fmt_date_time(s.since, st.version);
                let row: Row = vec![
                    (".id".into(), ItemId(s.id).to_string()),
                    ("when".into(), format!("{d} {t}")),
                    ("name".into(), s.name.clone()),
                    ("address".into(), s.address.clone()),
                    ("via".into(), s.via.into()),
                    ("group".into(), group.into()),
                    ("radius".into(), "false".into()),
                ];
                (ItemId(s.id), row)
            })
            .collect()
    }

    /// A login succeeded: the session appears in `/user active` (`via`: `api` or `ssh`).
    /// Returns its row id.
    pub(super) fn session_started(
        &self,
        st: &mut DeviceState,
        name: &str,
        peer: Option<SocketAddr>,
        via: &'static str,
    ) -> u32 {
        let id = st.next_session;
        st.next_session = st.next_session.wrapping_add(1);
        st.sessions.push(ActiveSession {
            id,
            name: name.to_owned(),
            address: peer.map(|p| p.ip().to_string()).unwrap_or_default(),
            via,
            since: self.now(),
        });
        id
    }

    /// The connection of a session ended: it leaves `/user active`.
    pub(crate) fn session_ended(&self, id: u32) {
        self.lock().sessions.retain(|s| s.id != id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_texts() {
        let m = |p: &str| MenuPath::parse(p);
        // sourced (MT-CFG)
        assert_eq!(
            action(&m("/ip firewall filter"), "add", None),
            "filter rule added"
        );
        assert_eq!(
            action(&m("/ip route"), "add", None),
            "route 0.0.0.0/0 added"
        );
        // guesses in the same pattern
        assert_eq!(
            action(&m("/ip route"), "add", Some("10.0.0.0/8")),
            "route 10.0.0.0/8 added"
        );
        assert_eq!(
            action(&m("/ip firewall nat"), "remove", None),
            "nat rule removed"
        );
        assert_eq!(action(&m("/ip address"), "set", None), "address changed");
        assert_eq!(
            action(&m("/system identity"), "set", None),
            "identity changed"
        );
        assert_eq!(
            action(&m("/ip firewall address-list"), "disable", None),
            "address list changed"
        );
    }
}
