//! `/ping address=X count=N` (IPv4 only): a target answers when it is 127.0.0.0/8 or lies in
//! the subnet of one of the device's enabled `/ip address` entries (a connected network);
//! anything else times out. Rows per probe: `seq host size ttl time` or `seq host status=timeout`,
//! each with running `sent received packet-loss` totals. The reply shape over the API is
//! unsourced (ROUTEROS-NOTES has no `/ping` trace): it follows the CLI columns.

use std::net::Ipv4Addr;

use rosconfig::MenuPath;
use routeros::{Attrs, Command, Reply, TrapCategory};

use crate::state::DeviceState;

fn connected(st: &DeviceState, target: Ipv4Addr) -> bool {
    if target.is_loopback() {
        return true;
    }
    let p = MenuPath::parse("/ip address");
    st.config.entries(&p).any(|e| {
        if e.get("disabled") == Some("yes") {
            return false;
        }
        let Some((addr, len)) = e.get("address").and_then(|a| a.split_once('/')) else {
            return false;
        };
        let (Ok(addr), Ok(len)) = (addr.parse::<Ipv4Addr>(), len.parse::<u32>()) else {
            return false;
        };
        let mask = if len == 0 {
            0
        } else {
            u32::MAX << (32 - len.min(32))
        };
        u32::from(addr) & mask == u32::from(target) & mask
    })
}

/// Answers a `/ping` command.
pub(crate) fn ping(st: &DeviceState, cmd: &Command) -> Vec<Reply> {
    let attrs = cmd.attrs();
    let Some(addr) = attrs.get_str("address") else {
        return vec![
            Reply::trap(
                Some(TrapCategory::from_code(1)),
                "missing value for address",
            ),
            Reply::done(),
        ];
    };
    let Ok(target) = addr.parse::<Ipv4Addr>() else {
        return vec![
            Reply::trap(
                Some(TrapCategory::from_code(1)),
                "invalid value for argument address",
            ),
            Reply::done(),
        ];
    };
    let count: u32 = attrs
        .get_str("count")
        .and_then(|c| c.parse().ok())
        .unwrap_or(4)
        .clamp(1, 100);
    let up = connected(st, target);
    let mut out = Vec::new();
    for i in 0..count {
        let mut a = Attrs::new();
        a.push("seq", i.to_string());
        a.push("host", addr);
        if up {
            a.push("size", "56");
            a.push("ttl", "64");
            a.push("time", "1ms");
        } else {
            a.push("status", "timeout");
        }
        let received = if up { i + 1 } else { 0 };
        a.push("sent", (i + 1).to_string());
        a.push("received", received.to_string());
        a.push("packet-loss", (100 - received * 100 / (i + 1)).to_string());
        out.push(Reply::re(a));
    }
    out.push(Reply::done());
    out
}
