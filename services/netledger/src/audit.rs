//! `netledger audit verify` for both bundle formats: v2 tars ([`crate::bundle`]) and the
//! v1 JSON bundles earlier versions exported (events and checkpoints only, verified with the
//! public keys alone: one key, or one per key id after rotations). New exports are v2.

use std::path::Path;

use anyhow::Context as _;
use netledger_domain::audit::{Checkpoint, TrustedKeys, verify_tenant_history};
use netledger_domain::{RecordedEvent, TenantId};
use serde::{Deserialize, Serialize};

/// Format tag of a bundle.
pub const BUNDLE_FORMAT: &str = "netledger-audit-bundle/1";

/// An exported audit bundle: one tenant's complete history and its signed checkpoints.
#[derive(Debug, Serialize, Deserialize)]
pub struct Bundle {
    /// Always [`BUNDLE_FORMAT`].
    pub format: String,
    /// The tenant.
    pub tenant_id: TenantId,
    /// Every event of the tenant, in position order.
    pub events: Vec<RecordedEvent>,
    /// Every checkpoint of the tenant.
    pub checkpoints: Vec<Checkpoint>,
}

/// Writes the v1 bundle of `tenant` to `out` (kept for tests of v1 verification; the CLI
/// exports v2).
pub async fn export_v1(system: &sqlx::PgPool, tenant: TenantId, out: &Path) -> anyhow::Result<()> {
    let (events, checkpoints) = netledger_store::audit::export_tenant(system, tenant).await?;
    let bundle = Bundle {
        format: BUNDLE_FORMAT.to_owned(),
        tenant_id: tenant,
        events,
        checkpoints,
    };
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    serde_json::to_writer(std::io::BufWriter::new(file), &bundle)?;
    println!(
        "exported {} events and {} checkpoints of tenant {tenant} to {}",
        bundle.events.len(),
        bundle.checkpoints.len(),
        out.display()
    );
    Ok(())
}

/// Verifies a bundle of either format with the keys an auditor trusts (`--trusted-key`
/// values and key files' text); prints the verdict line. Returns the exit code: 0 verified,
/// 1 tampering found.
pub fn verify_any(
    bundle: &Path,
    trusted: &[String],
    extra_checkpoints: Option<&Path>,
) -> anyhow::Result<i32> {
    let mut file =
        std::fs::File::open(bundle).with_context(|| format!("reading {}", bundle.display()))?;
    if !crate::bundle::looks_like_v2(&mut file)? {
        return verify(bundle, &trusted.join("\n"), extra_checkpoints);
    }
    if extra_checkpoints.is_some() {
        anyhow::bail!(
            "--checkpoints is for v1 bundles; a v2 bundle carries the checkpoint published \
             outside PostgreSQL itself"
        );
    }
    let pinned = crate::bundle::parse_pinned(trusted)?;
    let verdict = crate::bundle::verify(bundle, &pinned)?;
    println!("{}", verdict.line());
    Ok(match verdict {
        crate::bundle::Verdict::Ok(_) => 0,
        crate::bundle::Verdict::Tampered(..) => 1,
    })
}

/// Verifies a v1 bundle; `extra_checkpoints` are checkpoints obtained elsewhere (JetStream, git)
/// as a JSON array; `public_keys` is a hex key or `<key id>=<hex>` entries
/// ([`TrustedKeys::parse`]). Returns the process exit code: 0 verified, 1 tampering found.
pub fn verify(
    bundle: &Path,
    public_keys: &str,
    extra_checkpoints: Option<&Path>,
) -> anyhow::Result<i32> {
    let key = TrustedKeys::parse(public_keys).map_err(anyhow::Error::msg)?;
    let text = std::fs::read(bundle).with_context(|| format!("reading {}", bundle.display()))?;
    let mut b: Bundle = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a netledger audit bundle", bundle.display()))?;
    if b.format != BUNDLE_FORMAT {
        anyhow::bail!(
            "unsupported bundle format `{}` (this build reads {BUNDLE_FORMAT})",
            b.format
        );
    }
    if let Some(path) = extra_checkpoints {
        let extra: Vec<Checkpoint> = serde_json::from_slice(&std::fs::read(path)?)
            .with_context(|| format!("{} is not a JSON array of checkpoints", path.display()))?;
        for cp in extra {
            match b.checkpoints.iter().find(|c| c.body.seq == cp.body.seq) {
                Some(existing) if existing == &cp => {}
                Some(_) => {
                    println!(
                        "TAMPERED: checkpoint {} in the bundle differs from the independent copy",
                        cp.body.seq
                    );
                    return Ok(1);
                }
                None => b.checkpoints.push(cp),
            }
        }
    }
    if b.events.iter().any(|e| e.tenant_id != b.tenant_id) {
        println!("TAMPERED: the bundle holds events of another tenant");
        return Ok(1);
    }
    match verify_tenant_history(&b.events, &b.checkpoints, &key) {
        Ok(report) => {
            println!(
                "OK: {} events, {} checkpoints; signed through position {}, last position {}",
                report.events, report.checkpoints, report.signed_through, report.last_position
            );
            if report.signed_through < report.last_position {
                println!(
                    "note: events after position {} are hash-chained but not yet covered by a signed checkpoint",
                    report.signed_through
                );
            }
            Ok(0)
        }
        Err(tamper) => {
            println!("TAMPERED at position {}: {tamper}", tamper.position());
            Ok(1)
        }
    }
}
