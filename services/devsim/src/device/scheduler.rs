//! `/system/scheduler` runs (ROUTEROS-NOTES §5.7): first run from `start-date`/
//! `start-time` (or `startup`, 3 s after boot), then every `interval`; `run-count` and
//! `next-run` per entry (reset by a reboot or an edit of the entry); `on-event` is a script
//! name or inline source, run by the executor as [`Origin::Scheduler`]. Device-mode
//! `scheduler=no` keeps entries from running.

use std::time::Duration;

use rosconfig::{ItemId, MenuPath};

use super::Device;
use super::exec::Origin;
use super::values::{parse_date, parse_duration};
use crate::state::{DeviceState, SchedRun};

impl Device {
    pub(super) fn run_due(&self, st: &mut DeviceState, now: Duration) -> bool {
        let p = MenuPath::parse("/system scheduler");
        #[allow(clippy::type_complexity)]
        let entries: Vec<(
            ItemId,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            bool,
        )> = st
            .config
            .entries(&p)
            .map(|e| {
                (
                    e.id,
                    e.get("start-date").map(str::to_string),
                    e.get("start-time").map(str::to_string),
                    e.get("interval").map(str::to_string),
                    e.get("on-event").map(str::to_string),
                    e.get("disabled") == Some("yes"),
                )
            })
            .collect();
        let mut any = false;
        for (id, date, time_s, interval, on_event, disabled) in entries {
            if disabled {
                continue;
            }
            any = true;
            if !st.scheduler_allowed {
                continue;
            }
            let interval = interval
                .as_deref()
                .and_then(parse_duration)
                .unwrap_or_default();
            let run = *st.sched.entry(id).or_insert_with(|| SchedRun {
                next: first_run(
                    now,
                    st.boot_at,
                    date.as_deref(),
                    time_s.as_deref(),
                    interval,
                ),
                run_count: 0,
            });
            let Some(next) = run.next else { continue };
            if now < next {
                continue;
            }
            let follow = if interval.is_zero() {
                None
            } else {
                let mut n = next + interval;
                while n <= now {
                    n += interval;
                }
                Some(n)
            };
            st.sched.insert(
                id,
                SchedRun {
                    next: follow,
                    run_count: run.run_count + 1,
                },
            );
            let Some(src) = on_event else { continue };
            // on-event is a script name or inline source
            let source = self.script_source(st, src.trim()).unwrap_or(src);
            let before_restore = st.offline_until.is_some();
            let r = self.run_source(st, Origin::Scheduler, &source);
            if let Err(e) = r {
                tracing::debug!(device = self.index, error = %e, "scheduler script failed");
            }
            if !before_restore && st.offline_until.is_some() {
                // a backup load/reboot happened: it also restores management access
                st.access_cut = false;
                return true;
            }
        }
        any
    }
}

/// First run time of a scheduler entry created/booted at `created`.
fn first_run(
    now: Duration,
    boot: Duration,
    date: Option<&str>,
    time_s: Option<&str>,
    interval: Duration,
) -> Option<Duration> {
    if time_s == Some("startup") {
        let t = boot + Duration::from_secs(3);
        return Some(if interval.is_zero() { t } else { t + interval });
    }
    let day = match date {
        Some(d) => parse_date(d)?,
        None => Duration::from_secs(now.as_secs() / 86_400 * 86_400),
    };
    let tod = time_s.and_then(parse_duration).unwrap_or_default();
    let start = day + tod;
    if interval.is_zero() {
        return (start + Duration::from_secs(1) >= now).then_some(start.max(now));
    }
    if start >= now {
        return Some(start);
    }
    let k = (now - start).as_secs().div_ceil(interval.as_secs().max(1));
    Some(start + interval * u32::try_from(k).unwrap_or(u32::MAX))
}
