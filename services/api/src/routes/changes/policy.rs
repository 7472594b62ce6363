//! `/api/v1/tenants/{tenant_id}/change-policy`: whether the tenant requires change requests
//! and how many approvals each risk level needs (`TenantChangePolicySet` on the tenant's
//! stream; a tenant that never had one is `optional` with the default counts).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use netledger_domain::TenantId;
use netledger_domain::change::{ApprovalPolicy, ChangeControl};
use netledger_domain::identity::TenantChangePolicySet;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{Principal, Require};
use crate::authz::{Permission, perm};
use crate::error::{ApiError, ApiResult, NotFound, PreconditionFailed, Validation};
use crate::http::{IfMatch, Json, Path, RequestId, Written, etag};
use crate::state::ApiState;

/// A tenant's change policy.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChangePolicyDto {
    /// `required`: config pushes, firmware upgrades and rollouts only through change
    /// requests; `optional`: direct calls work (labs).
    pub change_control: ChangeControl,
    /// Approvals per risk level (1-10 each, never falling as risk rises).
    pub approvals: ApprovalPolicy,
    /// The tenant's version (its `ETag`).
    #[serde(default)]
    pub version: u64,
    /// The events a write appended (absent on reads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<Written>>,
}

/// A change policy to set.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChangePolicyBody {
    /// `required` or `optional`.
    pub change_control: ChangeControl,
    /// Approvals per risk level (default 1/1/2).
    #[serde(default)]
    pub approvals: ApprovalPolicy,
}

fn visible(p: &Principal, id: Uuid) -> ApiResult<TenantId> {
    let tenant = TenantId::from_uuid(id);
    if tenant != p.tenant && !p.can(Permission::TenantsAdmin) {
        return Err(ApiError::not_found(format!("tenant {id}")));
    }
    Ok(tenant)
}

/// Read a tenant's change policy (your own; any for a super admin).
#[utoipa::path(
    get,
    path = "/tenants/{tenant_id}/change-policy",
    operation_id = "get_change_policy",
    tag = "tenants",
    security(("bearer" = ["tenants:read"])),
    params(("tenant_id" = Uuid, Path, description = "Tenant id.")),
    responses(
        (status = 200, description = "The policy; `ETag` is the tenant's version.", body = ChangePolicyDto),
        (status = 404, response = NotFound),
    )
)]
pub async fn get_change_policy(
    State(state): State<ApiState>,
    auth: Require<perm::TenantsRead>,
    Path(id): Path<Uuid>,
) -> ApiResult<Response> {
    let tenant = visible(auth.principal(), id)?;
    let (policy, version) = crate::accounts::change_policy(&state, tenant).await?;
    Ok((
        etag(version),
        Json(ChangePolicyDto {
            change_control: policy.change_control,
            approvals: policy.approvals,
            version,
            events: None,
        }),
    )
        .into_response())
}

/// Set a tenant's change policy (`If-Match` with the tenant's ETag is optional).
#[utoipa::path(
    put,
    path = "/tenants/{tenant_id}/change-policy",
    operation_id = "set_change_policy",
    tag = "tenants",
    security(("bearer" = ["tenants:write"])),
    params(
        ("tenant_id" = Uuid, Path, description = "Tenant id."),
        ("If-Match" = Option<String>, Header, description = "The tenant's ETag, or `*` (optional)."),
    ),
    request_body = ChangePolicyBody,
    responses(
        (status = 200, description = "Set.", body = ChangePolicyDto),
        (status = 404, response = NotFound),
        (status = 412, response = PreconditionFailed),
        (status = 422, response = Validation),
    )
)]
pub async fn set_change_policy(
    State(state): State<ApiState>,
    auth: Require<perm::TenantsWrite>,
    rid: RequestId,
    Path(id): Path<Uuid>,
    if_match: Option<IfMatch>,
    Json(body): Json<ChangePolicyBody>,
) -> ApiResult<Response> {
    let p = auth.principal();
    let tenant = visible(p, id)?;
    let (policy, version, events) = crate::accounts::set_change_policy(
        &state,
        &rid.metadata(p.actor()),
        tenant,
        if_match,
        TenantChangePolicySet {
            change_control: body.change_control,
            approvals: body.approvals,
        },
    )
    .await?;
    Ok((
        etag(version),
        Json(ChangePolicyDto {
            change_control: policy.change_control,
            approvals: policy.approvals,
            version,
            events: Some(events),
        }),
    )
        .into_response())
}
