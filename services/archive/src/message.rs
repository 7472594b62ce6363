//! Commit messages and signatures: a summary line, a blank line, then `Key: value`
//! trailers (git's trailer format, so `git log --format='%(trailers)'` reads them).

use git2::{Signature, Time};
use netledger_domain::audit::Checkpoint;
use netledger_domain::event::Actor;
use netledger_domain::ids::DeviceId;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::SnapshotMeta;

/// Trailer holding the exact recording time (git's own times have whole seconds).
pub(crate) const RECORDED_AT: &str = "Recorded-At";

/// Committer of every commit the archive makes.
pub(crate) const COMMITTER_NAME: &str = "netledger-archive";
/// Committer e-mail (`.invalid` is reserved: never a real address).
pub(crate) const COMMITTER_EMAIL: &str = "archive@netledger.invalid";

/// One line of printable text: control characters become spaces.
pub(crate) fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// `user:<id>`, `api-key:<id>`, `system:<component>`.
pub(crate) fn actor_label(actor: &Actor) -> String {
    match actor {
        Actor::User { id } => format!("user:{id}"),
        Actor::ApiKey { id } => format!("api-key:{id}"),
        Actor::System { component } => format!("system:{}", one_line(component)),
    }
}

/// Snake-case name of a serde enum value (`pre_push`).
fn snake<T: serde::Serialize + std::fmt::Debug>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("{v:?}"),
    }
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}

/// Message of a snapshot commit.
pub(crate) fn snapshot(device: DeviceId, meta: &SnapshotMeta, sha256: &str) -> String {
    let reason = snake(&meta.reason);
    let mut m = format!("device {device}: {reason} snapshot\n\n");
    m.push_str(&format!("Device-Id: {device}\n"));
    m.push_str(&format!("Reason: {reason}\n"));
    m.push_str(&format!("Actor: {}\n", actor_label(&meta.actor)));
    m.push_str(&format!("Causation-Id: {}\n", meta.causation_id));
    m.push_str(&format!("Correlation-Id: {}\n", meta.correlation_id));
    if let Some(w) = meta.workflow_id {
        m.push_str(&format!("Workflow-Id: {w}\n"));
    }
    m.push_str(&format!(
        "RouterOS-Version: {}\n",
        one_line(&meta.routeros_version)
    ));
    m.push_str(&format!("{RECORDED_AT}: {}\n", rfc3339(meta.at)));
    m.push_str(&format!("Content-Sha256: {sha256}\n"));
    m
}

/// Message of a checkpoint commit.
pub(crate) fn checkpoint(cp: &Checkpoint, at: OffsetDateTime) -> String {
    let b = &cp.body;
    format!(
        "checkpoint {seq}: positions {from}..={to}\n\n\
         Tenant-Id: {tenant}\n\
         Checkpoint-Seq: {seq}\n\
         From-Position: {from}\n\
         To-Position: {to}\n\
         Event-Count: {count}\n\
         Digest: {digest}\n\
         Key-Id: {key}\n\
         {RECORDED_AT}: {at}\n",
        seq = b.seq,
        from = b.from_position,
        to = b.to_position,
        tenant = b.tenant_id,
        count = b.event_count,
        digest = hex::encode(cp.digest),
        key = one_line(&cp.key_id),
        at = rfc3339(at),
    )
}

/// The exact recording time from a message's trailer.
pub(crate) fn recorded_at(message: &str) -> Option<OffsetDateTime> {
    let prefix = format!("{RECORDED_AT}: ");
    message
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| OffsetDateTime::parse(v.trim(), &Rfc3339).ok())
}

/// A git signature at `at` (whole seconds, the time's own UTC offset).
pub(crate) fn signature(
    name: &str,
    email: &str,
    at: OffsetDateTime,
) -> Result<Signature<'static>, git2::Error> {
    // git refuses `<`, `>` and newlines in names and e-mails
    let clean = |s: &str| one_line(s).replace(['<', '>'], "");
    let offset_minutes = at.offset().whole_minutes() as i32;
    Signature::new(
        &clean(name),
        &clean(email),
        &Time::new(at.unix_timestamp(), offset_minutes),
    )
}

/// Author signature for an actor.
pub(crate) fn author(actor: &Actor, at: OffsetDateTime) -> Result<Signature<'static>, git2::Error> {
    let label = actor_label(actor);
    let local: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    signature(&label, &format!("{local}@netledger.invalid"), at)
}
