//! Configuration writes: `add`, `set`, `enable`, `disable`, `unset`, `remove` on
//! configuration menus. An API sentence names items by `.id`/`numbers` (ids or names,
//! built-in items included, as `print` lists them); a script line names them by selector
//! (`[ find ... ]`, a name, `*id`) and `rosconfig::apply_command` resolves it. Either way a
//! change goes through [`Device::changed`] (change ids, `/system history`, the cut-access
//! fault), passwords are kept out of the configuration, and scheduler runtimes of edited
//! entries restart.

use rosconfig::{Attr, MenuPath, ScriptCommand, Selector};
use routeros::Command;

use super::Device;
use super::exec::{Done, Line, Origin, Refusal, Request};
use super::history;
use super::menus::ItemRef;
use super::values::cfg_value;
use crate::query::get;
use crate::state::DeviceState;

impl Device {
    /// A configuration write, whatever sent it.
    pub(super) fn write(
        &self,
        st: &mut DeviceState,
        origin: Origin<'_>,
        req: &Request<'_>,
    ) -> Result<Done, Refusal> {
        match req.line {
            Line::Api(cmd) if req.verb == "add" => self.api_add(st, origin, &req.menu, cmd),
            Line::Api(cmd) => self.api_modify(st, origin, &req.menu, req.verb, cmd),
            Line::Script(line) => self.script_write(st, origin, line),
        }
    }

    /// Records a configuration change: the change ids of an API sentence (a script's are
    /// counted once per run, [`Device::run_source`]), a `/system history` row, and the
    /// cut-access fault.
    fn changed(
        &self,
        st: &mut DeviceState,
        origin: Origin<'_>,
        action: String,
        text: Option<&str>,
    ) {
        if origin.is_api()
            && let Some(text) = text
        {
            super::count_changes(st, text);
        }
        if let Some(by) = origin.history_by() {
            let now = self.now();
            st.note_history(action, by, now);
        }
        if origin.trips_cut() && st.faults.cut_access_on_change {
            st.faults.cut_access_on_change = false;
            st.access_cut = true;
        }
    }

    /// Sets a user's password (kept beside the configuration, never exported).
    fn remember_password(st: &mut DeviceState, name: &str, password: &str) {
        st.passwords.retain(|(n, _)| n != name);
        st.passwords.push((name.to_string(), password.to_string()));
    }

    /// Attributes of a write sentence (API words without `.id`/`numbers`).
    fn write_attrs(cmd: &Command) -> Vec<Attr> {
        cmd.attrs()
            .iter()
            .filter(|(k, _)| !matches!(*k, ".id" | "numbers" | ".proplist"))
            .map(|(k, v)| Attr::new(k, cfg_value(&String::from_utf8_lossy(v))))
            .collect()
    }

    fn api_add(
        &self,
        st: &mut DeviceState,
        origin: Origin<'_>,
        menu: &MenuPath,
        cmd: &Command,
    ) -> Result<Done, Refusal> {
        let no_such = |w: &str| Refusal::NoSuchCommand(w.to_string());
        let Some(single) = self.menu_kind(st, menu) else {
            return Err(no_such(
                menu.segments().last().map(String::as_str).unwrap_or(""),
            ));
        };
        let api = menu.to_api();
        if single
            || matches!(
                api.as_str(),
                "/system/resource" | "/system/package" | "/interface/ethernet" | "/ip/service"
            )
        {
            return Err(no_such("add"));
        }
        let mut attrs = Self::write_attrs(cmd);
        if api == "/ip/address" {
            let Some(addr) = rosconfig::get_attr(&attrs, "address").map(str::to_owned) else {
                return Err(Refusal::Trap(Some(1), "missing value for address".into()));
            };
            let valid = addr
                .split_once('/')
                .map_or(addr.as_str(), |(a, _)| a)
                .parse::<std::net::Ipv4Addr>()
                .is_ok();
            if !valid {
                return Err(Refusal::Trap(
                    Some(1),
                    "invalid value for argument address".into(),
                ));
            }
            let iface = rosconfig::get_attr(&attrs, "interface")
                .map(str::to_owned)
                .unwrap_or_default();
            if !self.interface_names(st).contains(&iface) {
                return Err(Refusal::Trap(
                    Some(1),
                    "input does not match any value of interface".into(),
                ));
            }
        }
        let password = if api == "/user" {
            let pw = rosconfig::get_attr(&attrs, "password").map(str::to_owned);
            attrs.retain(|a| a.key != "password");
            pw
        } else {
            None
        };
        let name = rosconfig::get_attr(&attrs, "name")
            .map(str::to_owned)
            .unwrap_or_default();
        let text = format!("{cmd:?}");
        let action = history::action(menu, "add", rosconfig::get_attr(&attrs, "dst-address"));
        match st.config_mut().add_checked(menu, attrs) {
            Ok(id) => {
                if let Some(pw) = password {
                    Self::remember_password(st, &name, &pw);
                }
                if api == "/system/scheduler" {
                    st.sched.remove(&id);
                }
                self.changed(st, origin, action, Some(&text));
                Ok(Done::ret(id.to_string()))
            }
            Err(e) => Err(Refusal::trap(e.to_string())),
        }
    }

    fn api_modify(
        &self,
        st: &mut DeviceState,
        origin: Origin<'_>,
        menu: &MenuPath,
        verb: &str,
        cmd: &Command,
    ) -> Result<Done, Refusal> {
        let Some(single) = self.menu_kind(st, menu) else {
            return Err(Refusal::NoSuchCommand(
                menu.segments().last().cloned().unwrap_or_default(),
            ));
        };
        let api = menu.to_api();
        let attrs = match verb {
            "enable" => vec![Attr::new("disabled", "no")],
            "disable" => vec![Attr::new("disabled", "yes")],
            _ => Self::write_attrs(cmd),
        };
        let text = format!("{cmd:?}");
        let unset_keys: Vec<String> = cmd
            .attrs()
            .get_str("value-name")
            .map(|v| v.split(',').map(str::to_string).collect())
            .unwrap_or_default();
        let unset_keys: Vec<&str> = unset_keys.iter().map(String::as_str).collect();
        if single {
            if verb != "set" && verb != "unset" {
                return Err(Refusal::NoSuchCommand(verb.to_string()));
            }
            if matches!(
                api.as_str(),
                "/system/resource"
                    | "/system/routerboard"
                    | "/system/package/update"
                    | "/system/device-mode"
            ) {
                return Err(Refusal::trap(format!(
                    "unknown parameter {}",
                    attrs.first().map(|a| a.key.as_str()).unwrap_or("")
                )));
            }
            if verb == "unset" {
                st.config_mut().unset_on(menu, &Selector::None, &unset_keys);
            } else {
                st.config_mut().set_settings(menu, attrs);
            }
            self.changed(st, origin, history::action(menu, verb, None), Some(&text));
            return Ok(Done::ok());
        }
        let Some(ids_word) = cmd
            .attrs()
            .get_str(".id")
            .or_else(|| cmd.attrs().get_str("numbers"))
        else {
            return Err(Refusal::Trap(Some(1), "missing value for numbers".into()));
        };
        let items = self.items(st, menu);
        let mut targets = Vec::new();
        for part in ids_word.split(',') {
            let found = items
                .iter()
                .find(|i| i.id.to_string() == part || get(&i.row, "name") == Some(part));
            match found {
                Some(i) => targets.push(i.clone()),
                None => return Err(Refusal::trap("no such item")),
            }
        }
        let password = if api == "/user" && verb == "set" {
            rosconfig::get_attr(&attrs, "password").map(str::to_owned)
        } else {
            None
        };
        if let Some(pw) = &password {
            for t in &targets {
                if let Some(n) = get(&t.row, "name") {
                    Self::remember_password(st, n, pw);
                }
            }
        }
        let attrs: Vec<Attr> = if api == "/user" {
            attrs.into_iter().filter(|a| a.key != "password").collect()
        } else {
            attrs
        };
        // a route is named by its destination (the first one, when several are named)
        let dst = targets
            .first()
            .and_then(|t| get(&t.row, "dst-address"))
            .map(str::to_owned);
        let action = history::action(menu, verb, dst.as_deref());
        for t in targets {
            let r = match (&t.r, verb) {
                (ItemRef::Entry(p, id), "remove") => {
                    if p.to_api() == "/system/scheduler" {
                        st.sched.remove(id);
                    }
                    st.config_mut().remove(p, *id)
                }
                (ItemRef::Entry(p, id), "unset") => st.config_mut().unset(p, *id, &unset_keys),
                (ItemRef::Entry(p, id), _) => {
                    if p.to_api() == "/system/scheduler" {
                        st.sched.remove(id);
                    }
                    st.config_mut().set(p, *id, attrs.clone())
                }
                (ItemRef::Builtin(..), "remove") => {
                    return Err(Refusal::trap("failure: default item can not be removed"));
                }
                (ItemRef::Builtin(p, sel), "unset") => {
                    st.config_mut().unset_on(p, sel, &unset_keys);
                    Ok(())
                }
                (ItemRef::Builtin(p, sel), _) => {
                    st.config_mut().upsert_set(p, sel, attrs.clone());
                    Ok(())
                }
            };
            if let Err(e) = r {
                return Err(Refusal::trap(e.to_string()));
            }
        }
        self.changed(st, origin, action, Some(&text));
        Ok(Done::ok())
    }

    /// A script line's write, applied like `/import` does (`rosconfig::apply_command`:
    /// `set` on a selector that names no `add` entry records a `set` statement for the
    /// built-in item).
    fn script_write(
        &self,
        st: &mut DeviceState,
        origin: Origin<'_>,
        line: &ScriptCommand,
    ) -> Result<Done, Refusal> {
        let api = line.path.to_api();
        let mut cmd = line.clone();
        let password = if api == "/user" {
            let pw = line.arg("password").map(str::to_string);
            cmd.attrs.retain(|a| a.key != "password");
            pw
        } else {
            None
        };
        let dst = match line.arg("dst-address") {
            Some(d) => Some(d.to_owned()),
            None if line.verb != "add" => st
                .config
                .resolve(&line.path, &line.selector())
                .ok()
                .and_then(|ids| ids.first().copied())
                .and_then(|id| st.config.entry(&line.path, id))
                .and_then(|e| e.get("dst-address").map(str::to_owned)),
            None => None,
        };
        let ids = rosconfig::apply_command(st.config_mut(), &cmd)
            .map_err(|e| Refusal::trap(e.to_string()))?;
        if let Some(pw) = password {
            let names: Vec<String> = match (line.verb.as_str(), line.selector()) {
                ("add", _) => line.arg("name").map(str::to_string).into_iter().collect(),
                (_, Selector::Name { name, .. }) if ids.is_empty() => vec![name],
                _ => ids
                    .iter()
                    .filter_map(|id| st.config.entry(&line.path, *id))
                    .filter_map(|e| e.get("name").map(str::to_string))
                    .collect(),
            };
            for n in names {
                Self::remember_password(st, &n, &pw);
            }
        }
        if api == "/system/scheduler" {
            for id in &ids {
                st.sched.remove(id);
            }
        }
        let action = history::action(&line.path, &line.verb, dst.as_deref());
        self.changed(st, origin, action, None);
        Ok(Done::ok())
    }
}
