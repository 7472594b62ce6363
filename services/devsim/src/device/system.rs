//! Device lifecycle and firmware: reboot (over the API the connection drops instead of
//! `!done`, ROUTEROS-NOTES §5.13), `/system/package/update` (check, download, install),
//! RouterBOARD firmware that lags an upgrade until `/system/routerboard/upgrade` and another
//! reboot (§5.3), and the boot sequence run by [`Device::tick`] when a reboot ends
//! (pending or uploaded packages installed, the failed-upgrade fault, scheduler runs).

use routeros::{Attrs, Reply};

use super::Device;
use super::exec::{Done, Origin, Refusal};
use crate::state::DeviceState;

impl Device {
    /// Starts a reboot: the device is offline for the fleet's reboot time.
    pub(crate) fn begin_reboot(&self, st: &mut DeviceState) {
        st.offline_until = Some(self.now() + self.shared.reboot_time);
        self.needs_tick
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// `/system/reboot`, `/system/shutdown` (a shutdown comes back like a reboot in
    /// devsim). A dry run stops there without rebooting.
    pub(super) fn reboot_cmd(&self, st: &mut DeviceState, origin: Origin<'_>) -> Done {
        if !origin.is_dry() {
            self.begin_reboot(st);
        }
        Done::down()
    }

    /// `/system/package/update/check-for-updates`: one status row (ROUTEROS-NOTES §5.4).
    pub(super) fn check_for_updates(&self, st: &mut DeviceState) -> Done {
        let newer = st.available_version.filter(|v| *v > st.version);
        st.update_status = if newer.is_some() {
            "New version is available"
        } else {
            "System is already up to date"
        };
        let mut a = Attrs::new();
        a.push("channel", "stable");
        a.push("installed-version", st.version.to_string());
        a.push("latest-version", newer.unwrap_or(st.version).to_string());
        a.push("status", st.update_status);
        Done::replies(vec![Reply::re(a), Reply::done()])
    }

    /// `/system/package/update/install` (download, then reboot) and `download` (reboot
    /// later). Without a newer version both refuse with `System is already up to date`
    /// over the API and in scripts alike (the exact CLI/script behaviour is unsourced).
    pub(super) fn package_update(
        &self,
        st: &mut DeviceState,
        origin: Origin<'_>,
        verb: &str,
    ) -> Result<Done, Refusal> {
        let Some(newer) = st.available_version.filter(|v| *v > st.version) else {
            return Err(Refusal::trap("System is already up to date"));
        };
        if origin.is_dry() {
            return Ok(Done::ok());
        }
        st.pending_version = Some(newer);
        if verb == "install" {
            self.begin_reboot(st);
            Ok(Done::down())
        } else {
            st.update_status = "Downloaded, please reboot router to upgrade it";
            Ok(Done::ok())
        }
    }

    /// `/system/routerboard/upgrade`: the next reboot brings the firmware up to date.
    pub(super) fn routerboard_upgrade(&self, st: &mut DeviceState, origin: Origin<'_>) -> Done {
        if !origin.is_dry() {
            st.rb_upgrade_staged = true;
        }
        Done::ok()
    }

    /// Advances time-driven state: reboot completion (version change after an install) and
    /// scheduler runs. Returns whether the device still needs ticks.
    pub(crate) fn tick(&self) -> bool {
        let now = self.now();
        let mut link_changed = false;
        let keep = {
            let mut st = self.lock();
            if let Some(until) = st.offline_until {
                if now < until {
                    return true;
                }
                st.offline_until = None;
                st.boot_at = now;
                st.sched.clear();
                let before = st.version;
                if st.pending_version.is_none() {
                    crate::fetch::install_uploaded_packages(&mut st, self.board.arch);
                }
                if st.rb_upgrade_staged {
                    st.rb_upgrade_staged = false;
                    st.rb_firmware = None;
                }
                if let Some(v) = st.pending_version.take() {
                    if st.faults.fail_upgrade {
                        st.faults.fail_upgrade = false;
                        st.upgrades_failed += 1;
                    } else {
                        st.version = v;
                    }
                }
                if st.version != before && self.board.model.is_some() {
                    // RouterBOARD firmware stays behind until `/system routerboard upgrade`
                    st.rb_firmware.get_or_insert(before);
                }
                st.update_status = "";
                // files outside flash vanish on reboot on some boards: devsim keeps them
                link_changed = true;
            }
            self.run_due(&mut st, now)
        };
        if link_changed {
            self.update_link();
        }
        self.update_link();
        keep
    }
}
