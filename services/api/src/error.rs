//! The one API error type, mapped to `application/problem+json` (RFC 9457) at the edge.
//!
//! Every error has a stable machine `type` (`urn:netledger:problem:<code>`), a public
//! `title`, the status, and a public `detail`. For 5xx errors the private detail is logged
//! with the request id and never sent. The same table ([`ProblemKind`]) feeds the OpenAPI
//! document's error responses, so documentation and behaviour cannot drift.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use netledger_store::StoreError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa::openapi::{ContentBuilder, RefOr, ResponseBuilder};

use crate::authz::Permission;

/// The media type of error bodies.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error body (RFC 9457 problem details).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Problem {
    /// Stable machine-readable error type, `urn:netledger:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short human-readable summary of the type.
    pub title: String,
    /// HTTP status code.
    pub status: u16,
    /// What happened in this case, safe to show.
    pub detail: String,
    /// For `precondition-failed`: the resource's current version (its `ETag`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<u64>,
    /// For `rate-limited`: seconds until a retry may succeed (also in `Retry-After`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// For `forbidden`: the permission the route requires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_permission: Option<String>,
    /// For a change request's illegal transition (`conflict`): its current state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// For a change request's illegal transition (`conflict`): the states the command is
    /// allowed in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_states: Option<Vec<String>>,
    /// For a change request refused for policy violations (`validation`): each device's
    /// violations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub violations: Option<Vec<ViolationDto>>,
}

/// The push-policy violations found on one device.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ViolationDto {
    /// The device.
    pub device_id: uuid::Uuid,
    /// One sentence per violation.
    pub violations: Vec<String>,
}

macro_rules! problem_kinds {
    ($($variant:ident => ($status:expr, $code:literal, $title:literal, $doc:literal)),+ $(,)?) => {
        /// The error types the API returns; each is one documented response.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ProblemKind {
            $(#[doc = $doc] $variant,)+
        }

        impl ProblemKind {
            /// Every kind.
            pub const ALL: &'static [ProblemKind] = &[$(ProblemKind::$variant,)+];

            /// The HTTP status.
            pub fn status(self) -> StatusCode {
                match self { $(ProblemKind::$variant => $status,)+ }
            }
            /// The stable code (last part of the `type`).
            pub fn code(self) -> &'static str {
                match self { $(ProblemKind::$variant => $code,)+ }
            }
            /// The title.
            pub fn title(self) -> &'static str {
                match self { $(ProblemKind::$variant => $title,)+ }
            }
            /// When this error is returned (the response's description in OpenAPI).
            pub fn description(self) -> &'static str {
                match self { $(ProblemKind::$variant => $doc,)+ }
            }
            /// The name of its reusable response in the OpenAPI components.
            pub fn response_name(self) -> &'static str {
                match self { $(ProblemKind::$variant => stringify!($variant),)+ }
            }
        }

        $(
            #[doc = $doc]
            #[doc = ""]
            #[doc = "A marker type for `responses(...)` in `#[utoipa::path]`."]
            pub struct $variant;
            impl<'s> utoipa::ToResponse<'s> for $variant {
                fn response() -> (&'s str, RefOr<utoipa::openapi::Response>) {
                    (stringify!($variant), ProblemKind::$variant.openapi_response().into())
                }
            }
        )+
    };
}

problem_kinds! {
    BadRequest => (StatusCode::BAD_REQUEST, "bad-request", "Bad request",
        "The request is malformed: unreadable JSON, a bad path or query parameter, or a bad header."),
    Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated", "Authentication required",
        "No valid access token or API key was presented (missing, expired, revoked or malformed)."),
    InvalidCredentials => (StatusCode::UNAUTHORIZED, "invalid-credentials", "Invalid credentials",
        "The e-mail address and password do not match an enabled user."),
    RefreshTokenInvalid => (StatusCode::UNAUTHORIZED, "refresh-token-invalid", "Refresh token invalid",
        "The refresh cookie is missing, expired or revoked; log in again."),
    RefreshTokenReused => (StatusCode::UNAUTHORIZED, "refresh-token-reused", "Refresh token reused",
        "A refresh token was presented a second time; its whole session was revoked. Log in again."),
    Forbidden => (StatusCode::FORBIDDEN, "forbidden", "Forbidden",
        "The caller's role or API key scopes lack the permission this route requires."),
    NotFound => (StatusCode::NOT_FOUND, "not-found", "Not found",
        "The resource does not exist or belongs to another tenant."),
    Conflict => (StatusCode::CONFLICT, "conflict", "Conflict",
        "The request conflicts with the current state (already exists, already finished, in use)."),
    IdempotencyInProgress => (StatusCode::CONFLICT, "idempotency-in-progress", "Request in progress",
        "A request with this Idempotency-Key is still running; retry later for its result."),
    PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", "Payload too large",
        "The request body exceeds the limit."),
    PreconditionFailed => (StatusCode::PRECONDITION_FAILED, "precondition-failed", "Precondition failed",
        "If-Match names a version that is no longer current: re-read the resource (its ETag is in `current_version`) and retry."),
    Validation => (StatusCode::UNPROCESSABLE_ENTITY, "validation", "Invalid input",
        "The request is well-formed but a value is invalid; `detail` names it."),
    IdempotencyKeyReused => (StatusCode::UNPROCESSABLE_ENTITY, "idempotency-key-reused", "Idempotency key reused",
        "This Idempotency-Key was used before for a different request."),
    PreconditionRequired => (StatusCode::PRECONDITION_REQUIRED, "precondition-required", "Precondition required",
        "Updates need If-Match with the resource's ETag (or `*` to overwrite whatever is current)."),
    RateLimited => (StatusCode::TOO_MANY_REQUESTS, "rate-limited", "Too many requests",
        "Too many attempts from this address or for this account; wait `Retry-After` seconds."),
    Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error",
        "The server failed; the response's x-request-id names the log entry."),
    Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Service unavailable",
        "A dependency (database, NATS, a worker component) is unavailable or not configured; retry later."),
}

impl ProblemKind {
    /// The full `type` URI.
    pub fn type_uri(self) -> String {
        format!("urn:netledger:problem:{}", self.code())
    }

    /// The OpenAPI response documenting this kind: problem+json with the [`Problem`] schema
    /// and an example.
    pub fn openapi_response(self) -> utoipa::openapi::Response {
        let example = serde_json::json!({
            "type": self.type_uri(),
            "title": self.title(),
            "status": self.status().as_u16(),
            "detail": self.description(),
        });
        let mut builder = ResponseBuilder::new()
            .description(format!("`{}`: {}", self.code(), self.description()))
            .content(
                PROBLEM_JSON,
                ContentBuilder::new()
                    .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                        "Problem",
                    ))))
                    .example(Some(example))
                    .build(),
            );
        if self == ProblemKind::RateLimited {
            builder = builder.header(
                "Retry-After",
                utoipa::openapi::HeaderBuilder::new()
                    .schema(Some(
                        utoipa::openapi::ObjectBuilder::new()
                            .schema_type(utoipa::openapi::schema::Type::Integer),
                    ))
                    .description(Some("Seconds to wait before retrying."))
                    .build(),
            );
        }
        builder.build()
    }
}

/// An API error: a kind, a public detail, and for server errors a private detail that is
/// logged, never sent.
#[derive(Debug)]
pub struct ApiError {
    kind: ProblemKind,
    detail: String,
    private: Option<String>,
    current_version: Option<u64>,
    retry_after: Option<u64>,
    permission: Option<Permission>,
    www_authenticate: bool,
    /// Members of change request problems (boxed: rare, and errors stay small).
    change: Option<Box<ChangeMembers>>,
}

/// The extension members of a change request's problem.
#[derive(Debug, Default)]
struct ChangeMembers {
    state: Option<String>,
    allowed_states: Option<Vec<String>>,
    violations: Option<Vec<ViolationDto>>,
}

impl ApiError {
    /// An error of `kind` with a public detail.
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            private: None,
            current_version: None,
            retry_after: None,
            permission: None,
            www_authenticate: false,
            change: None,
        }
    }

    /// The kind.
    pub fn kind(&self) -> ProblemKind {
        self.kind
    }

    /// The public detail.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// A malformed request.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(ProblemKind::BadRequest, detail)
    }
    /// A well-formed request with an invalid value.
    pub fn validation(detail: impl Into<String>) -> Self {
        Self::new(ProblemKind::Validation, detail)
    }
    /// Not authenticated.
    pub fn unauthenticated(detail: impl Into<String>) -> Self {
        let mut e = Self::new(ProblemKind::Unauthenticated, detail);
        e.www_authenticate = true;
        e
    }
    /// The caller lacks `permission`.
    pub fn forbidden(permission: Permission) -> Self {
        let mut e = Self::new(
            ProblemKind::Forbidden,
            format!(
                "this route requires the `{}` permission",
                permission.as_str()
            ),
        );
        e.permission = Some(permission);
        e
    }
    /// The caller holds neither `a` nor `b`.
    pub fn forbidden_any(a: Permission, b: Permission) -> Self {
        let mut e = Self::new(
            ProblemKind::Forbidden,
            format!(
                "this route requires the `{}` or the `{}` permission",
                a.as_str(),
                b.as_str()
            ),
        );
        e.permission = Some(a);
        e
    }
    /// 403 with a detail of its own (a rule other than a missing permission refuses).
    pub fn forbidden_because(detail: impl Into<String>) -> Self {
        Self::new(ProblemKind::Forbidden, detail)
    }
    /// A change request command not allowed in its current state: 409 naming the state and
    /// the allowed ones (also as members `state` and `allowed_states`).
    pub fn illegal_transition(
        detail: impl Into<String>,
        state: impl Into<String>,
        allowed: Vec<String>,
    ) -> Self {
        let mut e = Self::new(ProblemKind::Conflict, detail);
        e.change = Some(Box::new(ChangeMembers {
            state: Some(state.into()),
            allowed_states: Some(allowed),
            violations: None,
        }));
        e
    }
    /// Adds the per-device violations (a `validation` problem of a change request).
    pub fn with_violations(mut self, violations: Vec<ViolationDto>) -> Self {
        self.change.get_or_insert_with(Default::default).violations = Some(violations);
        self
    }
    /// Nothing visible under that name.
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(ProblemKind::NotFound, format!("{what} not found"))
    }
    /// Conflicts with the current state.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(ProblemKind::Conflict, detail)
    }
    /// If-Match did not match.
    pub fn precondition_failed(current_version: u64) -> Self {
        let mut e = Self::new(
            ProblemKind::PreconditionFailed,
            format!(
                "the resource is at version {current_version}; re-read it and retry with \
                 If-Match: \"{current_version}\""
            ),
        );
        e.current_version = Some(current_version);
        e
    }
    /// If-Match missing.
    pub fn precondition_required() -> Self {
        Self::new(
            ProblemKind::PreconditionRequired,
            "send If-Match with the resource's ETag (from a GET), or If-Match: * to overwrite \
             whatever is current",
        )
    }
    /// Too many attempts.
    pub fn rate_limited(retry_after: u64) -> Self {
        let mut e = Self::new(
            ProblemKind::RateLimited,
            format!("too many attempts; retry in {retry_after} s"),
        );
        e.retry_after = Some(retry_after);
        e
    }
    /// Too many of something (named in `detail`); retry after `retry_after` seconds.
    pub fn rate_limited_because(retry_after: u64, detail: impl Into<String>) -> Self {
        let mut e = Self::new(ProblemKind::RateLimited, detail);
        e.retry_after = Some(retry_after);
        e
    }
    /// A dependency is unavailable.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(ProblemKind::Unavailable, detail)
    }
    /// A server failure: `private` is logged, never sent.
    pub fn internal(private: impl Into<String>) -> Self {
        let mut e = Self::new(
            ProblemKind::Internal,
            "the server failed to handle the request; the x-request-id header names the log entry",
        );
        e.private = Some(private.into());
        e
    }

    /// Adds a private detail (logged for 5xx, never sent).
    pub fn with_private(mut self, private: impl Into<String>) -> Self {
        self.private = Some(private.into());
        self
    }

    /// The body as it is sent.
    pub fn problem(&self) -> Problem {
        Problem {
            kind: self.kind.type_uri(),
            title: self.kind.title().to_owned(),
            status: self.kind.status().as_u16(),
            detail: self.detail.clone(),
            current_version: self.current_version,
            retry_after: self.retry_after,
            required_permission: self.permission.map(|p| p.as_str().to_owned()),
            state: self.change.as_ref().and_then(|c| c.state.clone()),
            allowed_states: self.change.as_ref().and_then(|c| c.allowed_states.clone()),
            violations: self.change.as_ref().and_then(|c| c.violations.clone()),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.code(), self.detail)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.kind.status();
        if status.is_server_error() {
            tracing::error!(
                problem = self.kind.code(),
                detail = self.private.as_deref().unwrap_or(&self.detail),
                "request failed"
            );
        } else if let Some(private) = &self.private {
            tracing::info!(problem = self.kind.code(), detail = %private, "request refused");
        }
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            headers.insert(header::RETRY_AFTER, v);
        }
        if let Some(v) = self.current_version
            && let Ok(v) = HeaderValue::from_str(&format!("\"{v}\""))
        {
            headers.insert(header::ETAG, v);
        }
        if self.www_authenticate {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"netledger\""),
            );
        }
        (status, headers, body).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict { actual, .. } => ApiError::precondition_failed(actual),
            StoreError::Closed => ApiError::unavailable("the event store is shutting down"),
            other => ApiError::internal(error_chain(&other)),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
                ApiError::unavailable("the database is unavailable").with_private(err.to_string())
            }
            // Text PostgreSQL cannot hold (a NUL; the extractors refuse it first, this is the
            // net under any path they do not see): the input's fault, not the server's.
            sqlx::Error::Database(db)
                if matches!(db.code().as_deref(), Some("22021" | "22P05")) =>
            {
                ApiError::bad_request("the request has text the database cannot store (U+0000)")
                    .with_private(err.to_string())
            }
            _ => ApiError::internal(error_chain(&err)),
        }
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(r: axum::extract::rejection::JsonRejection) -> Self {
        use axum::extract::rejection::JsonRejection as J;
        match r {
            J::JsonDataError(e) => ApiError::validation(e.body_text()),
            J::JsonSyntaxError(e) => ApiError::bad_request(e.body_text()),
            J::MissingJsonContentType(_) => {
                ApiError::bad_request("send the body as JSON with Content-Type: application/json")
            }
            J::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::new(ProblemKind::PayloadTooLarge, e.body_text())
            }
            other => ApiError::bad_request(other.body_text()),
        }
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(r: axum::extract::rejection::PathRejection) -> Self {
        ApiError::bad_request(r.body_text())
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(r: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::bad_request(r.body_text())
    }
}

impl From<netledger_projections::ProjectionError> for ApiError {
    fn from(err: netledger_projections::ProjectionError) -> Self {
        use netledger_projections::ProjectionError as P;
        match err {
            P::BadCursor { .. } => ApiError::bad_request(err.to_string()),
            P::Store(e) => e.into(),
            other => ApiError::internal(error_chain(&other)),
        }
    }
}

impl From<netledger_archive::ArchiveError> for ApiError {
    fn from(err: netledger_archive::ArchiveError) -> Self {
        use netledger_archive::ArchiveError as A;
        match &err {
            A::CommitNotFound { .. }
            | A::NotACommit { .. }
            | A::NotOnHistory { .. }
            | A::DeviceNotInCommit { .. } => ApiError::new(ProblemKind::NotFound, err.to_string()),
            A::BadCommitId { .. } | A::AmbiguousCommitId { .. } => {
                ApiError::bad_request(err.to_string())
            }
            _ => ApiError::internal(error_chain(&err)),
        }
    }
}

impl From<netledger_store::devices::DeviceCommandError> for ApiError {
    fn from(err: netledger_store::devices::DeviceCommandError) -> Self {
        use netledger_store::devices::DeviceCommandError as D;
        match err {
            D::AlreadyRegistered(_) => ApiError::conflict(err.to_string()),
            D::NotFound(_) => ApiError::new(ProblemKind::NotFound, err.to_string()),
            D::Conflict { actual, .. } => ApiError::precondition_failed(actual),
            D::Stale { current, .. } => ApiError::precondition_failed(current),
            D::Invalid(_) | D::BadUsername(_) => ApiError::validation(err.to_string()),
            D::Credentials(netledger_store::credentials::CredentialError::BadPassword(_)) => {
                ApiError::validation(err.to_string())
            }
            D::Store(e) => e.into(),
            other => ApiError::internal(error_chain(&other)),
        }
    }
}

impl From<netledger_engine::EngineError> for ApiError {
    fn from(err: netledger_engine::EngineError) -> Self {
        use netledger_engine::EngineError as E;
        match &err {
            E::DeviceBusy { .. } | E::Finished(_) => ApiError::conflict(err.to_string()),
            E::IdempotencyKeyReused { .. } => {
                ApiError::new(ProblemKind::IdempotencyKeyReused, err.to_string())
            }
            E::NotFound(_) => ApiError::new(ProblemKind::NotFound, err.to_string()),
            E::Invalid(_) => ApiError::validation(err.to_string()),
            E::UnknownKind { .. } => ApiError::unavailable(err.to_string()),
            _ => ApiError::internal(error_chain(&err)),
        }
    }
}

/// The error and its sources, `: `-separated, for logs (the one shared implementation).
pub use netledger_domain::errors::error_chain;

/// The result type of handlers.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_statuses_are_errors() {
        let mut codes = std::collections::HashSet::new();
        for k in ProblemKind::ALL {
            assert!(codes.insert(k.code()), "duplicate code {}", k.code());
            assert!(k.status().is_client_error() || k.status().is_server_error());
        }
    }

    #[test]
    fn server_errors_do_not_send_their_private_detail() {
        let e = ApiError::internal("password=hunter2 at db.rs:10");
        let p = e.problem();
        assert!(!p.detail.contains("hunter2"));
        assert_eq!(p.kind, "urn:netledger:problem:internal");
    }
}
