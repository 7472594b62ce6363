//! What a change request would do, per target device, without touching a device: the
//! device's latest archived export against the expected result (`netledger_changeplan`),
//! the lines that change and the push-policy violations. Also resolving a target (devices,
//! tags, the whole tenant) to the devices it names now.

use axum::extract::State;
use netledger_domain::change::{
    ChangeAction, ChangeContent, ChangeState, ChangeTarget, DevicePreviewSummary, TagMatch,
};
use netledger_domain::workflow::card::Policy;
use netledger_domain::{DeviceId, TenantId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Require;
use crate::authz::perm;
use crate::error::{ApiError, ApiResult, NotFound, Validation};
use crate::http::{Json, Path};
use crate::state::ApiState;

use super::load;

/// The preview of one device.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DevicePreviewDto {
    /// The device.
    pub device_id: Uuid,
    /// Its name.
    pub device_name: Option<String>,
    /// Unified diff of its normalised configuration (empty when nothing changes or it
    /// could not be computed).
    pub diff: String,
    /// Lines added or removed.
    pub changed_lines: u32,
    /// Push-policy violations, one sentence each.
    pub violations: Vec<String>,
    /// Why the diff could not be computed offline, or what kind of change it is (firmware).
    pub note: Option<String>,
    /// The archived version (config history commit) the diff starts from.
    pub base_commit: Option<String>,
}

impl DevicePreviewDto {
    /// What the submission freezes of it.
    pub(crate) fn summary(&self) -> DevicePreviewSummary {
        DevicePreviewSummary {
            device_id: DeviceId::from_uuid(self.device_id),
            changed_lines: self.changed_lines,
            violations: self.violations.clone(),
            note: self.note.clone(),
        }
    }
}

/// The preview of a change request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChangePreviewDto {
    /// Per device, in rollout order.
    pub devices: Vec<DevicePreviewDto>,
    /// Whether the devices are the list frozen at submission (else the target resolved now).
    pub frozen: bool,
}

/// What to preview: the stored request, or unsaved content for it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct PreviewBody {
    /// Content to preview instead of the stored one (e.g. an edit not saved yet).
    #[serde(default)]
    pub content: Option<ChangeContent>,
}

/// The devices `target` names now: registered and not removed, in order (devices as listed;
/// tags and the whole tenant by name, from the device read model).
pub(crate) async fn resolve_target(
    state: &ApiState,
    tenant: TenantId,
    target: &ChangeTarget,
) -> ApiResult<Vec<DeviceId>> {
    match target {
        ChangeTarget::Devices { device_ids } => {
            let commands = state.devices()?;
            for d in device_ids {
                let s = commands.load(tenant, *d).await?;
                if s.registration.is_none() || s.removed {
                    return Err(ApiError::validation(format!(
                        "target device {d} is not a registered device of this tenant"
                    )));
                }
            }
            Ok(device_ids.clone())
        }
        ChangeTarget::Tags { tags, matching } => {
            devices_of(
                state,
                tenant,
                Some((tags.clone(), *matching == TagMatch::All)),
            )
            .await
        }
        ChangeTarget::Tenant {} => devices_of(state, tenant, None).await,
    }
}

async fn devices_of(
    state: &ApiState,
    tenant: TenantId,
    tags: Option<(Vec<String>, bool)>,
) -> ApiResult<Vec<DeviceId>> {
    let (tags, all) = match tags {
        Some((t, all)) => (Some(t), all),
        None => (None, false),
    };
    let mut tx = netledger_store::begin_tenant(&state.pools().app, tenant).await?;
    let rows: Vec<(Uuid,)> = sqlx::query_as(
        "SELECT device_id FROM rm_devices WHERE tenant_id = $1 AND removed_at IS NULL \
         AND ($2::text[] IS NULL OR (CASE WHEN $3 THEN tags @> $2 ELSE tags && $2 END)) \
         ORDER BY name, device_id",
    )
    .bind(tenant.as_uuid())
    .bind(tags)
    .bind(all)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(rows
        .into_iter()
        .map(|(d,)| DeviceId::from_uuid(d))
        .collect())
}

/// The device's latest archived export and its commit (`None`: none archived yet), and a
/// named version's export when `version` is given.
async fn archived(
    state: &ApiState,
    tenant: TenantId,
    device: DeviceId,
    version: Option<String>,
) -> ApiResult<Result<(String, String, Option<String>), String>> {
    let Some(archive) = state.archive().cloned() else {
        return Ok(Err(
            "the config history (archive) is not configured in this process".to_owned(),
        ));
    };
    tokio::task::spawn_blocking(move || {
        let versions = archive.versions(tenant, device)?;
        let Some(latest) = versions.first() else {
            return Ok(Err(
                "no archived configuration of this device yet (take a backup first); the \
                 push's validate step checks the change on the device"
                    .to_owned(),
            ));
        };
        let text = archive.read(tenant, device, &latest.commit)?;
        let target = match version {
            Some(v) => match archive.read(tenant, device, &v) {
                Ok(t) => Some(t),
                Err(e) => return Ok(Err(format!("archived version {v}: {e}"))),
            },
            None => None,
        };
        Ok(Ok((latest.commit.clone(), text, target)))
    })
    .await
    .map_err(|e| ApiError::internal(format!("archive task: {e}")))?
    .map_err(|e: netledger_archive::ArchiveError| e.into())
}

/// Previews `content` on each of `devices`; for a restore also the script that gets there
/// (`None` when it could not be computed).
pub(crate) async fn compute(
    state: &ApiState,
    tenant: TenantId,
    content: &ChangeContent,
    devices: &[DeviceId],
) -> ApiResult<(Vec<DevicePreviewDto>, Option<String>)> {
    let policy = Policy::default();
    let mut out = Vec::with_capacity(devices.len());
    let mut restore = None;
    for &device in devices {
        let name = state
            .devices()?
            .load(tenant, device)
            .await?
            .registration
            .map(|r| r.name.as_str().to_owned());
        let mut dto = DevicePreviewDto {
            device_id: *device.as_uuid(),
            device_name: name,
            diff: String::new(),
            changed_lines: 0,
            violations: Vec::new(),
            note: None,
            base_commit: None,
        };
        match &content.action {
            ChangeAction::Firmware { version, .. } => {
                dto.note = Some(format!("firmware {version}: no configuration diff"));
            }
            ChangeAction::Script { script } => match archived(state, tenant, device, None).await? {
                Ok((commit, base, _)) => {
                    let p = netledger_changeplan::preview(&base, script, &policy);
                    dto.base_commit = Some(commit);
                    dto.diff = p.diff;
                    dto.changed_lines = p.changed_lines;
                    dto.violations = p.violations;
                    dto.note = p.note;
                }
                Err(note) => {
                    // The policy check needs no export.
                    dto.violations =
                        netledger_changeplan::policy_violations(script, &policy).violations;
                    dto.note = Some(note);
                }
            },
            ChangeAction::Restore { commit, .. } => {
                match archived(state, tenant, device, Some(commit.clone())).await? {
                    Ok((base_commit, current, Some(target))) => {
                        dto.base_commit = Some(base_commit);
                        match netledger_changeplan::restore_script(&current, &target) {
                            Ok(script) => {
                                let p = netledger_changeplan::preview(&current, &script, &policy);
                                dto.diff = p.diff;
                                dto.changed_lines = p.changed_lines;
                                dto.violations = p.violations;
                                dto.note = p.note;
                                restore = Some(script);
                            }
                            Err(e) => dto.note = Some(format!("cannot restore offline: {e}")),
                        }
                    }
                    Ok((_, _, None)) => {}
                    Err(note) => dto.note = Some(note),
                }
            }
        }
        out.push(dto);
    }
    Ok((out, restore))
}

async fn preview_of(
    state: &ApiState,
    tenant: TenantId,
    id: Uuid,
    unsaved: Option<ChangeContent>,
) -> ApiResult<ChangePreviewDto> {
    let loaded = load(state, tenant, id).await?;
    let c = &loaded.change;
    let frozen = unsaved.is_none() && c.state != ChangeState::Draft && !c.devices.is_empty();
    let content = match unsaved {
        Some(u) => {
            netledger_domain::change::validate_content(&u)
                .map_err(|r| ApiError::validation(r.to_string()))?;
            u
        }
        None => c
            .content
            .clone()
            .ok_or_else(|| ApiError::internal("a loaded change request has no content"))?,
    };
    let devices = if frozen {
        c.devices.clone()
    } else {
        resolve_target(state, tenant, &content.target).await?
    };
    let (devices, _) = compute(state, tenant, &content, &devices).await?;
    Ok(ChangePreviewDto { devices, frozen })
}

/// Preview a change request: per target device (the target resolved now; after submission
/// the frozen devices), the unified diff of its latest archived configuration against the
/// expected result, the changed lines and the policy violations. Nothing touches a device.
#[utoipa::path(
    get,
    path = "/change-requests/{change_request_id}/preview",
    operation_id = "get_change_preview",
    tag = "changes",
    security(("bearer" = ["changes:read"])),
    params(("change_request_id" = Uuid, Path, description = "Change request id.")),
    responses(
        (status = 200, description = "The preview.", body = ChangePreviewDto),
        (status = 404, response = NotFound),
        (status = 422, response = Validation),
    )
)]
pub async fn get_change_preview(
    State(state): State<ApiState>,
    auth: Require<perm::ChangesRead>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<ChangePreviewDto>> {
    Ok(Json(
        preview_of(&state, auth.principal().tenant, id, None).await?,
    ))
}

/// Preview a change request on demand, optionally with unsaved content (an edit in
/// progress). Nothing is stored.
#[utoipa::path(
    post,
    path = "/change-requests/{change_request_id}/preview",
    operation_id = "post_change_preview",
    tag = "changes",
    security(("bearer" = ["changes:write"])),
    params(("change_request_id" = Uuid, Path, description = "Change request id.")),
    request_body = PreviewBody,
    responses(
        (status = 200, description = "The preview.", body = ChangePreviewDto),
        (status = 404, response = NotFound),
        (status = 422, response = Validation),
    )
)]
pub async fn post_change_preview(
    State(state): State<ApiState>,
    auth: Require<perm::ChangesWrite>,
    Path(id): Path<Uuid>,
    Json(body): Json<PreviewBody>,
) -> ApiResult<Json<ChangePreviewDto>> {
    Ok(Json(
        preview_of(&state, auth.principal().tenant, id, body.content).await?,
    ))
}
