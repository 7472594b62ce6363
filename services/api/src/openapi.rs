//! The OpenAPI document: generated from the handlers' `#[utoipa::path]` attributes and the
//! DTOs' `ToSchema` derives, then completed here with the security scheme, the reusable
//! problem responses (from [`ProblemKind`]) and the errors every secured operation can
//! return. Committed as `openapi/openapi.json`; `tests/api.rs` fails when it drifts.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Doc, RefOr, Response};
use utoipa::{OpenApi, ToSchema};

use crate::error::{Problem, ProblemKind};

/// The document's fixed parts.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Netledger API",
        description = "Event-sourced configuration management for MikroTik RouterOS fleets.\n\n\
Conventions (see docs/api.md): JSON bodies; errors are `application/problem+json` with a \
stable `type`; lists page with `cursor`/`next_cursor`; updates need `If-Match` with the \
resource's `ETag` (its stream version) and a stale one gets 412; POSTs that start work \
accept `Idempotency-Key`; every write returns the events it appended (`events`: stream, \
version, global positions). Authenticate with `Authorization: Bearer <access token or API key>`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    tags(
        (name = "auth", description = "Login, token refresh, logout, who am I."),
        (name = "tenants", description = "Tenants (super admins see and create all)."),
        (name = "users", description = "Users and roles of your tenant."),
        (name = "api-keys", description = "Scoped API keys for automation; secrets shown once."),
        (name = "devices", description = "Managed devices: registration, state, metrics."),
        (name = "configs", description = "Config versions, text, diffs and config as of a time."),
        (name = "workflows", description = "Backups, config pushes, firmware upgrades: start, inspect, cancel."),
        (name = "rollouts", description = "Fleet rollouts: create, pause, resume, cancel, progress."),
        (name = "changes", description = "Change requests: previews, four-eyes approval, maintenance windows, break-glass; the only path to devices in a change-controlled tenant."),
        (name = "firmware", description = "The firmware package cache."),
        (name = "events", description = "Event history and live events (SSE)."),
        (name = "audit", description = "Audit feed, signed checkpoints, hash-chain verification."),
        (name = "health", description = "Liveness and readiness."),
    )
)]
struct ApiDoc;

/// The fixed parts (info, tags) before paths are added.
pub(crate) fn base() -> Doc {
    ApiDoc::openapi()
}

/// Adds the security scheme, the `Problem` schema, a reusable response per problem kind,
/// and the 401/403 responses every secured operation can return plus 500 everywhere.
pub(crate) fn finish(doc: &mut Doc) {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT or nlk_ API key")
                .description(Some(
                    "An access token from POST /api/v1/auth/login, or an API key. The scopes \
                     listed on an operation are the permission it requires.",
                ))
                .build(),
        ),
    );
    let mut schemas = Vec::new();
    Problem::schemas(&mut schemas);
    components.schemas.insert(
        Problem::name().into_owned(),
        <Problem as utoipa::PartialSchema>::schema(),
    );
    for (name, schema) in schemas {
        components.schemas.insert(name, schema);
    }
    for kind in ProblemKind::ALL {
        components.responses.insert(
            kind.response_name().to_owned(),
            RefOr::T(kind.openapi_response()),
        );
    }
    let reference = |kind: ProblemKind| -> RefOr<Response> {
        RefOr::Ref(utoipa::openapi::Ref::from_response_name(
            kind.response_name(),
        ))
    };
    for item in doc.paths.paths.values_mut() {
        for op in [
            item.get.as_mut(),
            item.post.as_mut(),
            item.put.as_mut(),
            item.patch.as_mut(),
            item.delete.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
            let responses = &mut op.responses.responses;
            if secured {
                responses
                    .entry("401".to_owned())
                    .or_insert_with(|| reference(ProblemKind::Unauthenticated));
                responses
                    .entry("403".to_owned())
                    .or_insert_with(|| reference(ProblemKind::Forbidden));
            }
            responses
                .entry("500".to_owned())
                .or_insert_with(|| reference(ProblemKind::Internal));
            responses
                .entry("503".to_owned())
                .or_insert_with(|| reference(ProblemKind::Unavailable));
        }
    }
}
