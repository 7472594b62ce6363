//! HTTP conventions shared by every handler: extractors whose rejections are problem+json,
//! `If-Match`/`ETag` carrying stream versions, opaque cursors, and the `Written` record of
//! the events a write produced.

use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use netledger_domain::{ExpectedVersion, StreamName};
use netledger_store::AppendOutcome;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;

/// A JSON body; a bad body is a problem+json 400/422.
#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Path parameters; a bad one is a problem+json 400.
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// Query parameters; a bad one is a problem+json 400. The shared `limit` parameter's
/// documented minimum (1) is enforced here for every list, whatever its handler does with it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let zero_limit = parts.uri.query().is_some_and(|q| {
            q.split('&')
                .filter_map(|kv| kv.split_once('='))
                .any(|(k, v)| k == "limit" && v.parse::<u64>() == Ok(0))
        });
        if zero_limit {
            return Err(ApiError::bad_request("limit must be at least 1"));
        }
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}

/// The `If-Match` precondition of an update: the stream version the client last saw, or
/// `*` for "whatever is current". Missing is 428: updates never overwrite silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfMatch {
    /// `If-Match: *`.
    Any,
    /// `If-Match: "<version>"`.
    Version(u64),
}

impl IfMatch {
    /// The expected version for the append.
    pub fn expected(self) -> ExpectedVersion {
        match self {
            IfMatch::Any => ExpectedVersion::Any,
            IfMatch::Version(v) => ExpectedVersion::Exact(v),
        }
    }

    /// The version the client's change is based on; `None` for `*`. Commands check it
    /// inside their transaction, so a write racing this request still gets 412.
    pub fn version(self) -> Option<u64> {
        match self {
            IfMatch::Any => None,
            IfMatch::Version(v) => Some(v),
        }
    }

    /// Checks against the current version; 412 with the current version when stale.
    pub fn check(self, current: u64) -> Result<(), ApiError> {
        match self {
            IfMatch::Version(v) if v != current => Err(ApiError::precondition_failed(current)),
            _ => Ok(()),
        }
    }

    /// Parses the header value: `*`, `"7"` or `W/"7"`.
    pub fn parse(value: &str) -> Result<Self, ApiError> {
        let v = value.trim();
        if v == "*" {
            return Ok(IfMatch::Any);
        }
        let v = v.strip_prefix("W/").unwrap_or(v);
        v.strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .and_then(|v| v.parse::<u64>().ok())
            .map(IfMatch::Version)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "If-Match `{value}` is not an ETag of this API: send the ETag header of the \
                     last GET (e.g. \"3\") or *"
                ))
            })
    }
}

impl IfMatch {
    /// The header of a request: `None` when absent; a malformed one is a 400.
    fn from_headers(headers: &HeaderMap) -> Result<Option<Self>, ApiError> {
        headers
            .get(header::IF_MATCH)
            .map(|v| {
                v.to_str()
                    .map_err(|_| ApiError::bad_request("If-Match is not text"))
                    .and_then(IfMatch::parse)
            })
            .transpose()
    }
}

/// Required: a missing header is 428 Precondition Required.
impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        IfMatch::from_headers(&parts.headers)?.ok_or_else(ApiError::precondition_required)
    }
}

/// Optional (`Option<IfMatch>`): a missing header is `None`, a malformed one still a 400.
impl<S: Send + Sync> OptionalFromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, ApiError> {
        IfMatch::from_headers(&parts.headers)
    }
}

/// The `ETag` header for a stream version.
pub fn etag(version: u64) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{version}\"")) {
        h.insert(header::ETAG, v);
    }
    h
}

/// The `Idempotency-Key` header, if sent: 1-200 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Some(v) = parts.headers.get("idempotency-key") else {
            return Ok(Self(None));
        };
        let v = v
            .to_str()
            .map_err(|_| ApiError::bad_request("Idempotency-Key is not text"))?;
        if v.is_empty() || v.len() > 200 || !v.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ApiError::bad_request(
                "Idempotency-Key must be 1-200 visible ASCII characters (a UUID is typical)",
            ));
        }
        Ok(Self(Some(v.to_owned())))
    }
}

/// The request id (`x-request-id`, set by the request-id layer): the correlation and
/// causation id of the events a request causes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestId(pub uuid::Uuid);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let id = parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| uuid::Uuid::parse_str(v).ok())
            .unwrap_or_else(uuid::Uuid::new_v4);
        Ok(Self(id))
    }
}

impl RequestId {
    /// Metadata for the events this request causes as `actor`.
    pub fn metadata(self, actor: netledger_domain::Actor) -> netledger_domain::EventMetadata {
        netledger_domain::EventMetadata::for_command(actor, self.0)
    }
}

/// Events one write appended to one stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Written {
    /// The stream (`device-…`, `user-…`).
    pub stream: String,
    /// The stream's version after the write (the new `ETag` of its resource).
    pub stream_version: u64,
    /// Global position of the first event written.
    pub first_position: i64,
    /// Global position of the last event written.
    pub last_position: i64,
}

impl Written {
    /// From an append's outcome.
    pub fn new(stream: &StreamName, outcome: AppendOutcome) -> Self {
        Self {
            stream: stream.as_str().to_owned(),
            stream_version: outcome.stream_version,
            first_position: outcome.first_position,
            last_position: outcome.last_position,
        }
    }
}

/// The header a read answers with when the projectors did not reach its `min_position`
/// within the wait (`ApiConfig::projection_wait`): the read model may miss the caller's
/// latest writes.
pub const PROJECTION_BEHIND: &str = "netledger-projection-behind";

/// `min_position` of a read of one resource from a read model.
#[derive(Debug, Clone, Copy, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MinPosition {
    /// Read-your-writes: wait (bounded) until the read model has passed this global position
    /// (a write's `last_position`); `Netledger-Projection-Behind: true` when it did not.
    pub min_position: Option<i64>,
}

/// Read-your-writes: waits (bounded by `ApiConfig::projection_wait`) until every projector
/// in `projectors` has passed `min_position` (the `last_position` a write returned). The
/// headers to answer with: empty when they did (or no position was asked for), else
/// `Netledger-Projection-Behind: true` and the read answers with what there is.
pub async fn read_your_writes(
    state: &crate::state::ApiState,
    projectors: &[&str],
    min_position: Option<i64>,
) -> Result<HeaderMap, ApiError> {
    let mut headers = HeaderMap::new();
    let Some(min) = min_position else {
        return Ok(headers);
    };
    if min < 0 {
        return Err(ApiError::bad_request("min_position must be 0 or more"));
    }
    let passed = netledger_projections::wait_for_position(
        &state.pools().system,
        projectors,
        min,
        state.config().projection_wait,
    )
    .await?;
    if !passed {
        headers.insert(PROJECTION_BEHIND, HeaderValue::from_static("true"));
    }
    Ok(headers)
}

/// Paging parameters of every list.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// The `next_cursor` of the previous page; absent for the first page.
    #[param(
        pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub cursor: Option<String>,
    /// Items per page (default 50, at most the server's maximum, 500 by default).
    pub limit: Option<u32>,
}

impl PageParams {
    /// The page size, bounded by `max`.
    pub fn limit(&self, max: u32) -> Result<i64, ApiError> {
        match self.limit {
            None => Ok(i64::from(50.min(max))),
            Some(0) => Err(ApiError::bad_request("limit must be at least 1")),
            Some(n) => Ok(i64::from(n.min(max))),
        }
    }
}

/// A cursor: the list's own position as text (a global position, a stream version, an id,
/// `<id>:<name>`). Clients pass `next_cursor` back unchanged; each list's `cursor` parameter
/// states its shape as a pattern in the OpenAPI document, and every value of that shape is a
/// valid position (so a generated client cannot build a cursor the server refuses).
pub fn encode_cursor(value: &str) -> String {
    value.to_owned()
}

/// The position inside a cursor made by [`encode_cursor`]; the list parses it (400 when it
/// does not have the list's shape).
pub fn decode_cursor(cursor: &str) -> Result<String, ApiError> {
    Ok(cursor.to_owned())
}

/// Paging parameters of a list whose cursor is a position (a number).
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PositionPageParams {
    /// The `next_cursor` of the previous page; absent for the first page.
    #[param(pattern = r"^[0-9]{1,9}$")]
    pub cursor: Option<String>,
    /// Items per page (default 50, at most the server's maximum, 500 by default).
    pub limit: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_parses_strong_weak_and_star() {
        assert_eq!(IfMatch::parse("\"7\"").unwrap(), IfMatch::Version(7));
        assert_eq!(IfMatch::parse("W/\"7\"").unwrap(), IfMatch::Version(7));
        assert_eq!(IfMatch::parse("*").unwrap(), IfMatch::Any);
        assert!(IfMatch::parse("7").is_err());
        assert!(IfMatch::Version(3).check(4).is_err());
        assert!(IfMatch::Any.check(4).is_ok());
    }

    #[test]
    fn cursors_round_trip() {
        let c = encode_cursor("42");
        assert_eq!(decode_cursor(&c).unwrap(), "42");
    }
}
