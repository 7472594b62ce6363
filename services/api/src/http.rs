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
///
/// Numbers follow JSON Schema, which the OpenAPI document speaks: an `integer` is any number
/// with a zero fractional part, so `3.0` and `3e0` are the integer 3 (serde alone refuses
/// them for integer fields). Duplicate object keys stay an error on every path.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        use axum::extract::rejection::JsonRejection;
        if !json_content_type(req.headers()) {
            return Err(JsonRejection::from(
                axum::extract::rejection::MissingJsonContentType::default(),
            )
            .into());
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(JsonRejection::from)?;
        decode_json(&bytes).map(Json)
    }
}

/// `application/json` or any `application/*+json`, parameters ignored (axum's rule).
fn json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.split_once('/') {
        Some(("application", subtype)) => subtype == "json" || subtype.ends_with("+json"),
        _ => false,
    }
}

/// Decodes a body: strictly first (the common case, with serde's path in the error); only
/// when that fails on the data, once more with integral numbers written as floats read as
/// integers. The first error is the one reported when the second attempt fails too. A body
/// that may carry U+0000 is read through [`NulChecked`], which refuses it in every string
/// the target type reads (unknown fields stay ignored, whatever they hold).
fn decode_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    use axum::extract::rejection::JsonRejection;
    // JSON writes U+0000 only as this escape (the six characters may also be text after an
    // escaped backslash: the checked read below tells).
    let may_hold_nul = bytes.windows(6).any(|w| w == br"\u0000");
    let checked = |value: serde_json::Value| T::deserialize(NulChecked(value));
    let is_nul = |e: &serde_json::Error| e.to_string() == NUL_REFUSED;
    match axum::Json::<T>::from_bytes(bytes) {
        Ok(axum::Json(value)) => {
            // The strict value is the one used; the checked read only looks for U+0000.
            if may_hold_nul
                && serde_json::from_slice(bytes)
                    .and_then(checked)
                    .is_err_and(|e| is_nul(&e))
            {
                return Err(ApiError::validation(NUL_REFUSED));
            }
            Ok(value)
        }
        Err(JsonRejection::JsonDataError(first)) => {
            match serde_json::from_slice::<IntegralJson>(bytes) {
                Ok(v) if v.normalized || may_hold_nul => match checked(v.value) {
                    Ok(value) => Ok(value),
                    Err(e) if is_nul(&e) => Err(ApiError::validation(NUL_REFUSED)),
                    Err(_) => Err(JsonRejection::JsonDataError(first).into()),
                },
                _ => Err(JsonRejection::JsonDataError(first).into()),
            }
        }
        Err(other) => Err(other.into()),
    }
}

/// Why text with U+0000 is refused: PostgreSQL's `text` and `jsonb` cannot hold it, so no
/// value the API reads may carry it (stated on every string of the OpenAPI document).
const NUL_REFUSED: &str =
    "text must not contain the NUL character (U+0000, %00 in a query): remove it";

/// A JSON value read by a type's `Deserialize`, refusing U+0000 in every string the type
/// asks for; what it ignores (unknown fields) is not looked at. Numbers, booleans and nulls
/// are `serde_json::Value`'s own. (Internally tagged enums buffer their whole object before
/// they know their fields, so there an unknown field with U+0000 is refused too.)
struct NulChecked(serde_json::Value);

impl<'de> serde::de::IntoDeserializer<'de, serde_json::Error> for NulChecked {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

impl NulChecked {
    fn entries(
        map: serde_json::Map<String, serde_json::Value>,
    ) -> serde::de::value::MapDeserializer<
        'static,
        impl Iterator<Item = (NulChecked, NulChecked)>,
        serde_json::Error,
    > {
        serde::de::value::MapDeserializer::new(
            map.into_iter()
                .map(|(k, v)| (NulChecked(serde_json::Value::String(k)), NulChecked(v))),
        )
    }
}

impl<'de> serde::Deserializer<'de> for NulChecked {
    type Error = serde_json::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        use serde_json::Value as J;
        match self.0 {
            J::String(s) if s.contains('\0') => Err(serde::de::Error::custom(NUL_REFUSED)),
            J::Array(items) => {
                let mut seq =
                    serde::de::value::SeqDeserializer::new(items.into_iter().map(NulChecked));
                let value = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(value)
            }
            J::Object(map) => {
                let mut entries = Self::entries(map);
                let value = visitor.visit_map(&mut entries)?;
                entries.end()?;
                Ok(value)
            }
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_option<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        if self.0.is_null() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_newtype_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: serde::de::Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        use serde::de::IntoDeserializer as _;
        use serde_json::Value as J;
        match self.0 {
            J::String(s) if !s.contains('\0') => visitor.visit_enum(s.into_deserializer()),
            J::Object(map) if map.len() == 1 => visitor.visit_enum(
                serde::de::value::MapAccessDeserializer::new(Self::entries(map)),
            ),
            other => NulChecked(other)
                .deserialize_any(visitor)
                .and(Err(serde::de::Error::custom(format_args!(
                    "expected an enum {name} (one of {variants:?})"
                )))),
        }
    }

    /// A field name is not checked: with U+0000 it names no field, so it is an unknown one.
    fn deserialize_identifier<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0 {
            serde_json::Value::String(s) => visitor.visit_string(s),
            other => NulChecked(other).deserialize_any(visitor),
        }
    }

    fn deserialize_ignored_any<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map struct
    }
}

/// A JSON document read with integral floats (`2.0`, `1e3`) as integers and duplicate object
/// keys refused; `normalized` says whether any number was rewritten.
struct IntegralJson {
    value: serde_json::Value,
    normalized: bool,
}

impl<'de> Deserialize<'de> for IntegralJson {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::DeserializeSeed as _;
        let mut normalized = false;
        let value = IntegralSeed(&mut normalized).deserialize(deserializer)?;
        Ok(Self { value, normalized })
    }
}

/// Builds one value; sets the flag when it rewrites a float.
struct IntegralSeed<'a>(&'a mut bool);

impl<'de> serde::de::DeserializeSeed<'de> for IntegralSeed<'_> {
    type Value = serde_json::Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for IntegralSeed<'_> {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        // 2^63 and 2^64 are exact in f64; every integral float strictly inside is exact too.
        const I64_MIN: f64 = -9_223_372_036_854_775_808.0;
        const U64_END: f64 = 18_446_744_073_709_551_616.0;
        if v.fract() == 0.0 && (I64_MIN..U64_END).contains(&v) {
            *self.0 = true;
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            return Ok(if v < 0.0 {
                (v as i64).into()
            } else {
                (v as u64).into()
            });
        }
        Ok(serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, Into::into))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(IntegralSeed(&mut *self.0))? {
            items.push(item);
        }
        Ok(serde_json::Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(serde::de::Error::custom(format_args!(
                    "duplicate key `{key}`"
                )));
            }
            let value = map.next_value_seed(IntegralSeed(&mut *self.0))?;
            object.insert(key, value);
        }
        Ok(serde_json::Value::Object(object))
    }
}

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
        // `%00` is the only way a NUL reaches a decoded value (percent-decoding is one pass).
        if parts.uri.query().is_some_and(|q| q.contains("%00")) {
            return Err(ApiError::bad_request(NUL_REFUSED));
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
    use crate::error::ProblemKind;

    #[test]
    fn if_match_parses_strong_weak_and_star() {
        assert_eq!(IfMatch::parse("\"7\"").unwrap(), IfMatch::Version(7));
        assert_eq!(IfMatch::parse("W/\"7\"").unwrap(), IfMatch::Version(7));
        assert_eq!(IfMatch::parse("*").unwrap(), IfMatch::Any);
        assert!(IfMatch::parse("7").is_err());
        assert!(IfMatch::Version(3).check(4).is_err());
        assert!(IfMatch::Any.check(4).is_ok());
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Body {
        count: u32,
        delta: i64,
        ratio: f64,
        #[serde(default)]
        tags: Vec<u16>,
    }

    #[test]
    fn integral_floats_are_integers_as_json_schema_says() {
        let body: Body =
            decode_json(br#"{"count": 3.0, "delta": -2e0, "ratio": 2.0, "tags": [1.0, 7]}"#)
                .unwrap();
        assert_eq!(
            body,
            Body {
                count: 3,
                delta: -2,
                ratio: 2.0,
                tags: vec![1, 7]
            }
        );
        // Plain integers and real fractions take the strict path unchanged.
        let body: Body = decode_json(br#"{"count": 3, "delta": 0, "ratio": 0.5}"#).unwrap();
        assert_eq!(body.ratio, 0.5);
    }

    #[test]
    fn the_fallback_refuses_what_the_strict_decoder_refuses() {
        let status = |bytes: &[u8]| {
            decode_json::<Body>(bytes)
                .unwrap_err()
                .kind()
                .status()
                .as_u16()
        };
        // A real fraction for an integer, out of range, a wrong type: 422 with serde's error.
        assert_eq!(status(br#"{"count": 3.5, "delta": 0, "ratio": 1}"#), 422);
        assert_eq!(
            status(br#"{"count": 4294967296.0, "delta": 0, "ratio": 1}"#),
            422
        );
        assert_eq!(status(br#"{"count": "3", "delta": 0, "ratio": 1}"#), 422);
        // Duplicate keys stay refused even when the float rewrite would otherwise apply.
        assert_eq!(
            status(br#"{"count": 1.0, "count": 2, "delta": 0, "ratio": 1}"#),
            422
        );
        assert_eq!(
            status(br#"{"count": 1, "delta": 0, "ratio": 1, "tags": [1.0], "x": 1}"#),
            422
        );
        // Not JSON at all is a 400.
        assert_eq!(status(br#"{"count": 1"#), 400);
    }

    #[test]
    fn text_with_nul_is_refused_and_only_that() {
        let status = |bytes: &[u8]| decode_json::<serde_json::Value>(bytes).map_err(|e| e.kind());
        assert_eq!(
            status(br#"{"a": "x\u0000y"}"#),
            Err(ProblemKind::Validation)
        );
        assert_eq!(status(br#"{"a\u0000": 1}"#), Err(ProblemKind::Validation));
        assert_eq!(status(br#"[["\u0000"]]"#), Err(ProblemKind::Validation));
        // The six characters as text (after an escaped backslash) are not a NUL.
        assert!(status(br#"{"a": "\\u0000"}"#).is_ok());
        assert!(status(br#"{"a": "\u0001"}"#).is_ok());
        // Only what the type reads: an unknown field may hold anything (it is ignored).
        let body = |bytes: &[u8]| decode_json::<Body>(bytes).map_err(|e| e.kind());
        let ok = br#"{"count": 1, "delta": 0, "ratio": 1, "x\u0000": ["\u0000"], "y": "\u0000"}"#;
        assert!(
            body(ok).is_err(),
            "deny_unknown_fields still refuses unknown fields"
        );
        #[derive(Debug, Deserialize)]
        struct Named {
            name: String,
            #[serde(default)]
            tags: Vec<String>,
            n: Option<u8>,
        }
        let named = |bytes: &[u8]| decode_json::<Named>(bytes).map_err(|e| e.kind());
        let read = named(br#"{"name": "a", "x\u0000": {"y": "\u0000"}, "n": 2.0}"#).unwrap();
        assert_eq!(
            (read.name.as_str(), read.n, read.tags.len()),
            ("a", Some(2), 0)
        );
        assert_eq!(
            named(br#"{"name": "a\u0000"}"#).unwrap_err(),
            ProblemKind::Validation
        );
        assert_eq!(
            named(br#"{"name": "a", "tags": ["\u0000"]}"#).unwrap_err(),
            ProblemKind::Validation
        );
        let e = decode_json::<Named>(br#"{"name": "a\u0000"}"#).unwrap_err();
        assert!(e.detail().contains("U+0000"), "{}", e.detail());
        // With a float to normalize too, the NUL is what is reported.
        let e = decode_json::<Named>(br#"{"name": "\u0000", "n": 2.0}"#).unwrap_err();
        assert!(e.detail().contains("U+0000"), "{}", e.detail());
    }

    #[test]
    fn json_content_types_follow_axum() {
        let ok = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(v).unwrap());
            json_content_type(&h)
        };
        assert!(ok("application/json"));
        assert!(ok("application/json; charset=utf-8"));
        assert!(ok("application/merge-patch+json"));
        assert!(ok("Application/JSON"));
        assert!(!ok("text/json"));
        assert!(!ok("application/jsonx"));
        assert!(!json_content_type(&HeaderMap::new()));
    }

    #[test]
    fn cursors_round_trip() {
        let c = encode_cursor("42");
        assert_eq!(decode_cursor(&c).unwrap(), "42");
    }
}
