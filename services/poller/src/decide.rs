//! What one poll appends, decided purely from the device's folded state: the domain's
//! change-only [`observe`], the breaker's transitions, and the snapshot or drift the poll
//! recorded in the archive. Re-run after a conflicting append on the re-read state, so a
//! decision is never made on stale state.

use netledger_domain::device::{
    ActiveUser, ConfigDriftDetected, ConfigSnapshotRecorded, DeviceCommand, DeviceEvent,
    DeviceHistoryEntry, DevicePollingResumed, DevicePollingSuspended, DeviceState, Observation,
    SnapshotReason,
};
use time::OffsetDateTime;

/// A snapshot the poll recorded in the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedSnapshot {
    /// Why it was recorded.
    pub reason: SnapshotReason,
    /// The commit holding the content.
    pub commit: String,
    /// SHA-256 of the stored (normalised, masked) text.
    pub sha256: String,
    /// Whether the archive made a new commit.
    pub changed: bool,
    /// RouterOS version the export came from.
    pub routeros_version: String,
    /// For drift: what the device itself recorded about who changed it.
    pub device: DeviceAccount,
}

/// What a device itself recorded about changes to it, read when drift is found: its change
/// history (`/system/history`, newest first, bounded) and who was logged in
/// (`/user/active`). Each part is `None` when it was not read or the read failed; a failed
/// history read says why.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceAccount {
    /// The history rows.
    pub history: Option<Vec<DeviceHistoryEntry>>,
    /// Why the history could not be read.
    pub history_error: Option<String>,
    /// The logged-in users.
    pub active_users: Option<Vec<ActiveUser>>,
}

/// The breaker's view for this decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerView {
    /// The breaker is open after this poll.
    pub open: bool,
    /// Consecutive failures.
    pub failures: u32,
    /// When the next attempt is due while open.
    pub retry_at: Option<OffsetDateTime>,
}

/// The events for one poll, in the order they are appended.
pub fn decide(
    state: &DeviceState,
    seen: &Observation,
    breaker: &BreakerView,
    snapshot: Option<&RecordedSnapshot>,
) -> Vec<DeviceEvent> {
    if !state.is_managed() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let reachable = matches!(seen, Observation::Reachable(_));
    if reachable && state.polling_suspended {
        out.push(DeviceEvent::PollingResumed(DevicePollingResumed {}));
    }
    // An observation is never refused (an unmanaged device was handled above).
    out.extend(
        state
            .decide(&DeviceCommand::Observe(seen.clone()))
            .unwrap_or_default(),
    );
    if let Observation::Unreachable(reason) = seen
        && breaker.open
        && !state.polling_suspended
        && let Some(retry_at) = breaker.retry_at
    {
        out.push(DeviceEvent::PollingSuspended(DevicePollingSuspended {
            consecutive_failures: breaker.failures,
            retry_at,
            last_error: reason.clone(),
        }));
    }
    if let Some(s) = snapshot {
        out.extend(snapshot_events(state, s));
    }
    out
}

/// Events for a recorded snapshot, given the state: the first snapshot is always recorded;
/// drift only while the state's last snapshot still differs; a scheduled snapshot only when
/// the archive changed.
pub fn snapshot_events(state: &DeviceState, s: &RecordedSnapshot) -> Vec<DeviceEvent> {
    let last = state.last_snapshot.as_ref().map(|(_, sha)| sha.as_str());
    let recorded = |reason: SnapshotReason| {
        DeviceEvent::SnapshotRecorded(ConfigSnapshotRecorded {
            commit: s.commit.clone(),
            sha256: s.sha256.clone(),
            changed: s.changed,
            reason,
            routeros_version: s.routeros_version.clone(),
            workflow_id: None,
        })
    };
    match (s.reason, last) {
        (SnapshotReason::Initial, None) => vec![recorded(SnapshotReason::Initial)],
        (SnapshotReason::Drift, Some(expected)) if expected != s.sha256 => {
            vec![DeviceEvent::DriftDetected(ConfigDriftDetected {
                expected_sha256: expected.to_owned(),
                found_sha256: s.sha256.clone(),
                commit: s.commit.clone(),
                device_history: s.device.history.clone(),
                device_history_error: s.device.history_error.clone(),
                active_users: s.device.active_users.clone(),
            })]
        }
        (SnapshotReason::Scheduled, Some(last)) if s.changed && last == s.sha256 => {
            vec![recorded(SnapshotReason::Scheduled)]
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use std::collections::BTreeSet;

    use netledger_domain::device::{
        DeviceFacts, DeviceName, DeviceRegistered, Endpoint, Host, Transport,
    };
    use netledger_domain::{DeviceId, EventEnum};

    use super::*;

    fn registered() -> DeviceState {
        let mut s = DeviceState::default();
        let reg = DeviceRegistered {
            device_id: DeviceId::new_random(),
            name: DeviceName::parse("r1").unwrap(),
            endpoint: Endpoint {
                host: Host::parse("127.0.0.1").unwrap(),
                port: 8728,
                transport: Transport::Plain,
                ssh: None,
            },
            username: "admin".into(),
            credentials_key_id: "k1".into(),
            tags: BTreeSet::new(),
            poll_interval_secs: 60,
            ssh_client_key: None,
        };
        s.evolve(&DeviceEvent::Registered(reg));
        s
    }

    fn facts() -> DeviceFacts {
        DeviceFacts {
            identity: "r1".into(),
            version: "7.16.2 (stable)".into(),
            board_name: "RB5009".into(),
            architecture: "arm64".into(),
            routerboard_firmware: Some("7.16.2".into()),
        }
    }

    fn apply(s: &mut DeviceState, events: &[DeviceEvent]) {
        for e in events {
            s.evolve(e);
        }
    }

    fn types(events: &[DeviceEvent]) -> Vec<&'static str> {
        events.iter().map(EventEnum::event_type).collect()
    }

    fn closed() -> BreakerView {
        BreakerView {
            open: false,
            failures: 0,
            retry_at: None,
        }
    }

    fn snap(reason: SnapshotReason, sha: &str, changed: bool) -> RecordedSnapshot {
        RecordedSnapshot {
            reason,
            commit: format!("c-{sha}"),
            sha256: sha.into(),
            changed,
            routeros_version: "7.16.2".into(),
            device: DeviceAccount::default(),
        }
    }

    #[test]
    fn first_contact_comes_online_with_the_initial_snapshot_then_nothing() {
        let mut s = registered();
        let seen = Observation::Reachable(facts());
        let initial = snap(SnapshotReason::Initial, "a", true);
        let first = decide(&s, &seen, &closed(), Some(&initial));
        assert_eq!(
            types(&first),
            ["DeviceCameOnline", "ConfigSnapshotRecorded"]
        );
        apply(&mut s, &first);
        assert!(decide(&s, &seen, &closed(), None).is_empty());
        // A late duplicate of the initial snapshot decides nothing.
        assert!(decide(&s, &seen, &closed(), Some(&initial)).is_empty());
    }

    #[test]
    fn the_breaker_suspends_once_and_resumes_once() {
        let mut s = registered();
        let up = decide(&s, &Observation::Reachable(facts()), &closed(), None);
        apply(&mut s, &up);
        let down = Observation::Unreachable("connection refused".into());
        let first = decide(&s, &down, &closed(), None);
        assert_eq!(types(&first), ["DeviceWentOffline"]);
        apply(&mut s, &first);
        let open = BreakerView {
            open: true,
            failures: 3,
            retry_at: Some(OffsetDateTime::UNIX_EPOCH),
        };
        let opened = decide(&s, &down, &open, None);
        assert_eq!(types(&opened), ["DevicePollingSuspended"]);
        apply(&mut s, &opened);
        assert!(s.polling_suspended);
        assert!(decide(&s, &down, &open, None).is_empty());
        let back = decide(&s, &Observation::Reachable(facts()), &closed(), None);
        assert_eq!(types(&back), ["DevicePollingResumed", "DeviceCameOnline"]);
        apply(&mut s, &back);
        assert!(!s.polling_suspended);
    }

    #[test]
    fn drift_only_while_the_known_snapshot_differs() {
        let mut s = registered();
        let seen = Observation::Reachable(facts());
        let initial = snap(SnapshotReason::Initial, "a", true);
        let first = decide(&s, &seen, &closed(), Some(&initial));
        apply(&mut s, &first);
        let drift = snap(SnapshotReason::Drift, "b", true);
        let out = decide(&s, &seen, &closed(), Some(&drift));
        assert_eq!(types(&out), ["ConfigDriftDetected"]);
        // Re-decided after a workflow recorded the same content (post_push): no drift.
        let mut pushed = s.clone();
        pushed.last_snapshot = Some(("c-b".into(), "b".into()));
        assert!(decide(&pushed, &seen, &closed(), Some(&drift)).is_empty());
        apply(&mut s, &out);
        assert_eq!(s.last_snapshot, Some(("c-b".into(), "b".into())));
    }

    #[test]
    fn drift_carries_what_the_device_recorded_and_a_failed_read_does_not_stop_it() {
        let mut s = registered();
        let seen = Observation::Reachable(facts());
        let first = decide(
            &s,
            &seen,
            &closed(),
            Some(&snap(SnapshotReason::Initial, "a", true)),
        );
        apply(&mut s, &first);
        let bob = DeviceHistoryEntry {
            action: "filter rule added".into(),
            by: "bob".into(),
            time: "2023-06-01 12:11:25".into(),
            policy: Some("write".into()),
        };
        let mut drift = snap(SnapshotReason::Drift, "b", true);
        drift.device = DeviceAccount {
            history: Some(vec![bob.clone()]),
            history_error: None,
            active_users: Some(Vec::new()),
        };
        let out = decide(&s, &seen, &closed(), Some(&drift));
        let [DeviceEvent::DriftDetected(d)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(d.device_history.as_deref(), Some(&[bob][..]));
        assert_eq!(d.changed_by(), ["bob"]);
        // The read failed: the drift is recorded all the same, saying why.
        drift.device = DeviceAccount {
            history: None,
            history_error: Some("timed out".into()),
            active_users: None,
        };
        let out = decide(&s, &seen, &closed(), Some(&drift));
        let [DeviceEvent::DriftDetected(d)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(d.device_history, None);
        assert_eq!(d.device_history_error.as_deref(), Some("timed out"));
    }

    #[test]
    fn scheduled_snapshots_append_only_when_the_archive_changed() {
        let mut s = registered();
        let seen = Observation::Reachable(facts());
        let initial = snap(SnapshotReason::Initial, "a", true);
        let first = decide(&s, &seen, &closed(), Some(&initial));
        apply(&mut s, &first);
        let same = snap(SnapshotReason::Scheduled, "a", false);
        assert!(decide(&s, &seen, &closed(), Some(&same)).is_empty());
        let rewritten = snap(SnapshotReason::Scheduled, "a", true);
        assert_eq!(
            types(&decide(&s, &seen, &closed(), Some(&rewritten))),
            ["ConfigSnapshotRecorded"]
        );
    }
}
