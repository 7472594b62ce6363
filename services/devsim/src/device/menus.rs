//! What `print` shows: which menus exist (singleton, list, unknown), the built-in items of
//! list menus (ethernet ports, `/ip service`, `/file`, `/system/package`, `/system/history`,
//! `/user/active`, the API user) next to the configuration's `add` entries, singleton rows
//! (`/system/resource`, `/system/routerboard`, `/system/clock`, ...), and `print` itself
//! with `.proplist`, `from`, `count-only`, queries and `!empty` (ROUTEROS-NOTES §4.2, §5).

use rosconfig::{Attr, FindExpr, ItemId, MenuPath, Selector};
use routeros::{Attrs, Command, Reply};

use super::Device;
use super::exec::{Done, Refusal};
use super::values::{api_value, fmt_date_time, fmt_duration, mix};
use crate::board::{KNOWN_MENUS, SINGLETON_MENUS};
use crate::query::{Row, get, matches};
use crate::state::{DeviceState, SchedRun};
use crate::version::RosVersion;

/// Interface menus whose named entries appear in `/interface`, with their `type`.
const IFACE_TYPES: &[(&str, &str)] = &[
    ("bridge", "bridge"),
    ("vlan", "vlan"),
    ("wireguard", "wg"),
    ("bonding", "bond"),
    ("pppoe-client", "pppoe-out"),
    ("l2tp-client", "l2tp-out"),
    ("sstp-client", "sstp-out"),
    ("ovpn-client", "ovpn-out"),
    ("eoip", "eoip"),
    ("gre", "gre-tunnel"),
    ("veth", "veth"),
    ("vrrp", "vrrp"),
];

/// Built-in `/ip service` rows: name, port.
const SERVICES: &[(&str, &str)] = &[
    ("telnet", "23"),
    ("ftp", "21"),
    ("www", "80"),
    ("ssh", "22"),
    ("www-ssl", "443"),
    ("api", "8728"),
    ("winbox", "8291"),
    ("api-ssl", "8729"),
];

/// A list item of a menu: an `add` entry or a built-in item addressed by a selector.
#[derive(Debug, Clone)]
pub(super) enum ItemRef {
    Entry(MenuPath, ItemId),
    Builtin(MenuPath, Selector),
}

#[derive(Debug, Clone)]
pub(super) struct Item {
    pub(super) id: ItemId,
    pub(super) r: ItemRef,
    pub(super) row: Row,
}

/// Id space of built-in items (kept clear of `add` entry ids).
const BUILTIN_BASE: u32 = 0x0100_0000;

impl Device {
    /// `Some(true)` singleton, `Some(false)` list, `None` unknown menu.
    pub(super) fn menu_kind(&self, st: &DeviceState, menu: &MenuPath) -> Option<bool> {
        let api = menu.to_api();
        if api == "/system/routerboard" && self.board.model.is_none() {
            return None;
        }
        if SINGLETON_MENUS.contains(&api.as_str()) || api == "/system/identity" {
            return Some(true);
        }
        if st
            .config
            .set_stmts(menu)
            .any(|s| s.selector == Selector::None)
            && st.config.entries(menu).next().is_none()
        {
            return Some(true);
        }
        if api == "/system/history" || api == "/user/active" {
            return Some(false);
        }
        if KNOWN_MENUS.contains(&api.as_str()) || st.config.paths().contains(&menu) {
            return Some(false);
        }
        None
    }

    fn resource_row(&self, st: &DeviceState) -> Row {
        let now = self.now();
        let up = now.saturating_sub(st.boot_at);
        let b = self.board;
        let t = now.as_secs() / 5;
        let load = mix(self.shared.seed, u64::from(self.index), t) % 30;
        let used = b.memory / 4
            + (mix(self.shared.seed, u64::from(self.index) + 7, t) % (b.memory / 8).max(1));
        let files: u64 = st.files.iter().map(|f| f.contents.len() as u64).sum();
        vec![
            ("uptime".into(), fmt_duration(up)),
            ("version".into(), format!("{} (stable)", st.version)),
            (
                "build-time".into(),
                if st.version.iso_dates() {
                    "2024-11-20 10:00:00".into()
                } else {
                    "nov/20/2024 10:00:00".into()
                },
            ),
            ("factory-software".into(), "6.44.6".into()),
            ("free-memory".into(), (b.memory - used).to_string()),
            ("total-memory".into(), b.memory.to_string()),
            ("cpu".into(), b.cpu.into()),
            ("cpu-count".into(), b.cpu_count.to_string()),
            ("cpu-frequency".into(), b.cpu_mhz.to_string()),
            ("cpu-load".into(), load.to_string()),
            (
                "free-hdd-space".into(),
                (b.storage / 2).saturating_sub(files).to_string(),
            ),
            ("total-hdd-space".into(), b.storage.to_string()),
            ("architecture-name".into(), b.arch.into()),
            ("board-name".into(), b.board_name.into()),
            ("platform".into(), "MikroTik".into()),
        ]
    }

    pub(super) fn serial(&self, st: &DeviceState) -> String {
        st.config
            .header
            .serial
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| {
                format!(
                    "HD{:010X}",
                    mix(self.shared.seed, u64::from(self.index), 1) & 0xFF_FFFF_FFFF
                )
            })
    }

    pub(super) fn software_id(&self, st: &DeviceState) -> String {
        st.config
            .header
            .software_id
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| {
                let x = mix(self.shared.seed, u64::from(self.index), 2);
                format!("{:04X}-{:04X}", x & 0xFFFF, (x >> 16) & 0xFFFF)
            })
    }

    fn mac(&self, port: usize) -> String {
        let x = mix(self.shared.seed, u64::from(self.index), 3);
        format!(
            "48:A9:8A:{:02X}:{:02X}:{:02X}",
            (x >> 8) & 0xFF,
            x & 0xFF,
            port & 0xFF
        )
    }

    /// Items of a list menu (entries and built-ins), with their printable rows.
    pub(super) fn items(&self, st: &DeviceState, menu: &MenuPath) -> Vec<Item> {
        let cfg = &st.config;
        let api = menu.to_api();
        let mut items = Vec::new();
        let entry_row = |id: ItemId, attrs: &[Attr]| -> Row {
            let mut r: Row = vec![(".id".into(), id.to_string())];
            for a in attrs {
                if let Some(v) = &a.value {
                    r.push((a.key.clone(), api_value(v)));
                }
            }
            r
        };
        let with_defaults = |mut r: Row| -> Row {
            if get(&r, "disabled").is_none() {
                r.push(("disabled".into(), "false".into()));
            }
            r
        };
        match api.as_str() {
            "/interface/ethernet" | "/interface" => {
                let now = self.now();
                let up = now.saturating_sub(st.boot_at).as_secs();
                for (k, port) in self.board.ports.iter().enumerate() {
                    let sel = Selector::Find(FindExpr::eq("default-name", *port));
                    let set = cfg.set_stmt(&MenuPath::parse("/interface ethernet"), &sel);
                    let name = set.and_then(|s| s.get("name")).unwrap_or(port).to_string();
                    let rate =
                        1_000 + mix(self.shared.seed, u64::from(self.index), k as u64) % 1_000_000; // bytes/s
                    let mut r: Row = vec![
                        (".id".into(), ItemId(k as u32 + 1).to_string()),
                        ("name".into(), name),
                        ("default-name".into(), (*port).into()),
                        ("type".into(), "ether".into()),
                        (
                            "mtu".into(),
                            set.and_then(|s| s.get("mtu")).unwrap_or("1500").into(),
                        ),
                        ("mac-address".into(), self.mac(k)),
                        ("running".into(), (k == 0 || k % 3 != 2).to_string()),
                        (
                            "disabled".into(),
                            api_value(set.and_then(|s| s.get("disabled")).unwrap_or("no")),
                        ),
                    ];
                    if api == "/interface" {
                        r.push(("rx-byte".into(), (rate * up).to_string()));
                        r.push(("tx-byte".into(), (rate / 3 * up).to_string()));
                        // errors: a few per hour on every third port, rarer on sends
                        r.push(("rx-error".into(), (up * (k as u64 % 3) / 1200).to_string()));
                        r.push(("tx-error".into(), (up / 3600).to_string()));
                        r.push(("rx-packet".into(), (rate * up / 800).to_string()));
                        r.push(("tx-packet".into(), (rate / 3 * up / 600).to_string()));
                        r.push(("link-downs".into(), "0".into()));
                    }
                    if let Some(c) = set.and_then(|s| s.get("comment")) {
                        r.push(("comment".into(), c.into()));
                    }
                    items.push(Item {
                        id: ItemId(k as u32 + 1),
                        r: ItemRef::Builtin(MenuPath::parse("/interface ethernet"), sel),
                        row: r,
                    });
                }
                if api == "/interface" {
                    for (ti, (sub, kind)) in IFACE_TYPES.iter().enumerate() {
                        let p = MenuPath::parse("/interface").join(*sub);
                        for e in cfg.entries(&p) {
                            let Some(name) = e.get("name") else { continue };
                            let id = ItemId(0x0010_0000 * (ti as u32 + 1) + e.id.0);
                            let r: Row = vec![
                                (".id".into(), id.to_string()),
                                ("name".into(), name.into()),
                                ("type".into(), (*kind).into()),
                                ("mtu".into(), e.get("mtu").unwrap_or("1500").into()),
                                ("running".into(), "true".into()),
                                (
                                    "disabled".into(),
                                    api_value(e.get("disabled").unwrap_or("no")),
                                ),
                                ("rx-byte".into(), "0".into()),
                                ("tx-byte".into(), "0".into()),
                            ];
                            items.push(Item {
                                id,
                                r: ItemRef::Entry(p.clone(), e.id),
                                row: r,
                            });
                        }
                    }
                }
                return items;
            }
            "/ip/service" => {
                for (k, (name, port)) in SERVICES.iter().enumerate() {
                    let sel = Selector::Name {
                        name: (*name).into(),
                        quoted: false,
                    };
                    let set = cfg.set_stmt(menu, &sel);
                    let mut r: Row = vec![
                        (".id".into(), ItemId(k as u32 + 1).to_string()),
                        ("name".into(), (*name).into()),
                        (
                            "port".into(),
                            set.and_then(|s| s.get("port")).unwrap_or(port).into(),
                        ),
                        (
                            "address".into(),
                            set.and_then(|s| s.get("address")).unwrap_or("").into(),
                        ),
                        (
                            "disabled".into(),
                            api_value(set.and_then(|s| s.get("disabled")).unwrap_or("no")),
                        ),
                    ];
                    if name.ends_with("ssl") {
                        r.push(("certificate".into(), "devsim".into()));
                    }
                    items.push(Item {
                        id: ItemId(k as u32 + 1),
                        r: ItemRef::Builtin(menu.clone(), sel),
                        row: r,
                    });
                }
                return items;
            }
            "/system/history" | "/user/active" => {
                let rows = if api == "/user/active" {
                    self.active_rows(st)
                } else {
                    self.history_rows(st)
                };
                for (id, row) in rows {
                    items.push(Item {
                        id,
                        r: ItemRef::Builtin(menu.clone(), Selector::Id(id)),
                        row,
                    });
                }
                return items;
            }
            "/file" => {
                let limit = st.version.file_contents_limit();
                for f in &st.files {
                    let (d, t) = fmt_date_time(f.created, st.version);
                    let mut r: Row = vec![
                        (".id".into(), ItemId(f.id).to_string()),
                        ("name".into(), f.name.clone()),
                        ("type".into(), f.kind.into()),
                        ("size".into(), f.contents.len().to_string()),
                    ];
                    let key = if st.version >= RosVersion::new(7, 16, 0) {
                        "last-modified"
                    } else {
                        "creation-time"
                    };
                    r.push((key.into(), format!("{d} {t}")));
                    if f.kind != "backup" && f.kind != "package" && f.contents.len() <= limit {
                        r.push(("contents".into(), f.text().into_owned()));
                    }
                    if let Some(p) = crate::fetch::parse_package(&f.name) {
                        r.push(("package-name".into(), "routeros".into()));
                        r.push(("package-version".into(), p.version.to_string()));
                        r.push(("package-architecture".into(), p.architecture().into()));
                    }
                    items.push(Item {
                        id: ItemId(f.id),
                        r: ItemRef::Builtin(menu.clone(), Selector::Id(ItemId(f.id))),
                        row: r,
                    });
                }
                return items;
            }
            "/system/package" => {
                let names: &[&str] = if st.version.major >= 7 {
                    &["routeros"]
                } else {
                    &[
                        "routeros-arm",
                        "system",
                        "ppp",
                        "dhcp",
                        "security",
                        "wireless",
                    ]
                };
                for (k, n) in names.iter().enumerate() {
                    let r: Row = vec![
                        (".id".into(), ItemId(k as u32 + 1).to_string()),
                        ("name".into(), (*n).into()),
                        ("version".into(), st.version.to_string()),
                        ("build-time".into(), "2024-11-20 10:00:00".into()),
                        (
                            "scheduled".into(),
                            st.pending_version
                                .map(|v| format!("scheduled for upgrade to {v}"))
                                .unwrap_or_default(),
                        ),
                        ("disabled".into(), "false".into()),
                    ];
                    items.push(Item {
                        id: ItemId(k as u32 + 1),
                        r: ItemRef::Builtin(menu.clone(), Selector::Number(k as u32)),
                        row: r,
                    });
                }
                return items;
            }
            "/user" => {
                let r: Row = vec![
                    (".id".into(), ItemId(BUILTIN_BASE).to_string()),
                    ("name".into(), self.shared.username.clone()),
                    ("group".into(), "full".into()),
                    ("disabled".into(), "false".into()),
                ];
                items.push(Item {
                    id: ItemId(BUILTIN_BASE),
                    r: ItemRef::Builtin(
                        menu.clone(),
                        Selector::Name {
                            name: self.shared.username.clone(),
                            quoted: false,
                        },
                    ),
                    row: r,
                });
            }
            _ => {}
        }
        // generic: built-ins from `set` statements with selectors, then `add` entries
        let mut k = 0u32;
        for s in cfg.set_stmts(menu) {
            if s.selector == Selector::None {
                continue;
            }
            if let Ok(ids) = cfg.resolve(menu, &s.selector)
                && !ids.is_empty()
            {
                continue;
            }
            let id = match &s.selector {
                Selector::Id(id) => *id,
                _ => ItemId(BUILTIN_BASE + 0x10 + k),
            };
            k += 1;
            let mut r: Row = vec![(".id".into(), id.to_string())];
            if let Selector::Find(f) = &s.selector {
                for t in &f.terms {
                    if let rosconfig::FindTerm::Eq { key, value, .. } = t {
                        r.push((key.clone(), api_value(value)));
                    }
                }
            }
            if let Selector::Name { name, .. } = &s.selector {
                r.push(("name".into(), name.clone()));
            }
            for a in &s.attrs {
                if let Some(v) = &a.value {
                    match r.iter_mut().find(|(key, _)| *key == a.key) {
                        Some(slot) => slot.1 = api_value(v),
                        None => r.push((a.key.clone(), api_value(v))),
                    }
                }
            }
            items.push(Item {
                id,
                r: ItemRef::Builtin(menu.clone(), s.selector.clone()),
                row: with_defaults(r),
            });
        }
        for e in cfg.entries(menu) {
            let mut r = with_defaults(entry_row(e.id, &e.attrs));
            if api == "/system/scheduler" {
                let run = st.sched.get(&e.id).copied().unwrap_or(SchedRun {
                    next: None,
                    run_count: 0,
                });
                r.push(("owner".into(), self.shared.username.clone()));
                r.push(("run-count".into(), run.run_count.to_string()));
                if let Some(n) = run.next {
                    let (d, t) = fmt_date_time(n, st.version);
                    r.push(("next-run".into(), format!("{d} {t}")));
                }
            }
            if api == "/user" {
                r.retain(|(k, _)| k != "password");
            }
            items.push(Item {
                id: e.id,
                r: ItemRef::Entry(menu.clone(), e.id),
                row: r,
            });
        }
        items
    }

    fn singleton_row(&self, st: &DeviceState, menu: &MenuPath) -> Row {
        let api = menu.to_api();
        let now = self.now();
        let mut r: Row = match api.as_str() {
            "/system/resource" => return self.resource_row(st),
            "/system/identity" => vec![("name".into(), self.identity(st))],
            "/system/routerboard" => vec![
                ("routerboard".into(), "true".into()),
                ("board-name".into(), self.board.board_name.into()),
                ("model".into(), self.board.model.unwrap_or("CHR").into()),
                ("serial-number".into(), self.serial(st)),
                ("firmware-type".into(), "devsim".into()),
                ("factory-firmware".into(), "6.44.6".into()),
                (
                    "current-firmware".into(),
                    st.rb_firmware.unwrap_or(st.version).to_string(),
                ),
                ("upgrade-firmware".into(), st.version.to_string()),
            ],
            "/system/clock" => {
                let (d, t) = fmt_date_time(now, st.version);
                vec![
                    ("time".into(), t),
                    ("date".into(), d),
                    ("time-zone-autodetect".into(), "true".into()),
                    ("time-zone-name".into(), "UTC".into()),
                    ("gmt-offset".into(), "+00:00".into()),
                ]
            }
            "/system/package/update" => vec![
                ("channel".into(), "stable".into()),
                ("installed-version".into(), st.version.to_string()),
                (
                    "latest-version".into(),
                    st.available_version
                        .filter(|v| *v > st.version)
                        .unwrap_or(st.version)
                        .to_string(),
                ),
                ("status".into(), st.update_status.into()),
            ],
            "/system/device-mode" => vec![
                (
                    "mode".into(),
                    if st.scheduler_allowed {
                        "advanced"
                    } else {
                        "home"
                    }
                    .into(),
                ),
                ("scheduler".into(), st.scheduler_allowed.to_string()),
                ("fetch".into(), st.scheduler_allowed.to_string()),
                ("container".into(), "false".into()),
            ],
            _ => Vec::new(),
        };
        for a in st.config.settings(menu) {
            if let Some(v) = a.value {
                match r.iter_mut().find(|(k, _)| *k == a.key) {
                    Some(slot) => slot.1 = api_value(&v),
                    None => r.push((a.key, api_value(&v))),
                }
            }
        }
        r
    }

    /// `print` / `getall` of a menu (API only: a script's output goes nowhere in devsim).
    pub(super) fn print(
        &self,
        st: &DeviceState,
        menu: &MenuPath,
        cmd: &Command,
    ) -> Result<Done, Refusal> {
        let Some(single) = self.menu_kind(st, menu) else {
            let word = menu.segments().last().map(String::as_str).unwrap_or("");
            return Err(Refusal::NoSuchCommand(word.to_string()));
        };
        for (k, _) in cmd.attrs().iter() {
            let ok = matches!(
                k,
                ".proplist"
                    | "detail"
                    | "count-only"
                    | "stats"
                    | "without-paging"
                    | "terse"
                    | "brief"
                    | "from"
                    | "where"
                    | "as-value"
            );
            if !ok {
                return Err(Refusal::trap(format!("unknown parameter {k}")));
            }
        }
        let mut rows: Vec<Row> = if single {
            vec![self.singleton_row(st, menu)]
        } else {
            self.items(st, menu).into_iter().map(|i| i.row).collect()
        };
        if let Some(from) = cmd.attrs().get_str("from") {
            let ids: Vec<&str> = from.split(',').collect();
            rows.retain(|r| {
                get(r, ".id").is_some_and(|id| ids.contains(&id))
                    || get(r, "name").is_some_and(|n| ids.contains(&n))
            });
        }
        rows.retain(|r| matches(r, cmd.queries()));
        if cmd.attrs().contains("count-only") {
            return Ok(Done::replies(vec![Reply::done_ret(rows.len().to_string())]));
        }
        let proplist: Option<Vec<&str>> = cmd
            .attrs()
            .get_str(".proplist")
            .map(|p| p.split(',').collect());
        let mut out = Vec::with_capacity(rows.len() + 1);
        for r in &rows {
            let mut a = Attrs::new();
            for (k, v) in r {
                if proplist.as_ref().is_none_or(|p| p.contains(&k.as_str())) {
                    a.push(k.clone(), v);
                }
            }
            out.push(Reply::re(a));
        }
        if rows.is_empty() && st.version.has_empty_reply() {
            out.push(Reply::empty());
        }
        out.push(Reply::done());
        Ok(Done::replies(out))
    }

    /// Attributes of a write command (API words without `.id`/`numbers`).
    pub(super) fn interface_names(&self, st: &DeviceState) -> Vec<String> {
        let mut v: Vec<String> = self
            .items(st, &MenuPath::parse("/interface"))
            .into_iter()
            .filter_map(|i| get(&i.row, "name").map(str::to_string))
            .collect();
        v.extend(
            st.config
                .entries(&MenuPath::parse("/interface list"))
                .filter_map(|e| e.get("name").map(str::to_string)),
        );
        v
    }
}
