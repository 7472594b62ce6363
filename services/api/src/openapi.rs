//! The OpenAPI document: generated from the handlers' `#[utoipa::path]` attributes and the
//! DTOs' `ToSchema` derives, then completed here with the security scheme, the reusable
//! problem responses (from [`ProblemKind`]), the errors the shared extractors of
//! [`crate::http`] return on every operation that uses them, and the constraints those
//! extractors enforce on the shared parameters (`If-Match`, `Idempotency-Key`, `limit`,
//! `min_position`). Committed as `openapi/openapi.json`; `tests/api.rs` fails when it drifts,
//! and `scripts/fuzz-http` checks the running server against it.

use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{
    ArrayItems, KnownFormat, Object, Schema, SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Doc, RefOr, Required, Response};
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
    state_change_content_rules(&mut components.schemas);
    for schema in components.schemas.values_mut() {
        each_object(schema, &mut |o| {
            date_time_pattern(o);
            forbid_nul(o);
        });
    }
    for kind in ProblemKind::ALL {
        components.responses.insert(
            kind.response_name().to_owned(),
            RefOr::T(kind.openapi_response()),
        );
    }
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
            constrain_shared_parameters(op);
            add_common_problems(op);
        }
    }
}

fn reference(kind: ProblemKind) -> RefOr<Response> {
    RefOr::Ref(utoipa::openapi::Ref::from_response_name(
        kind.response_name(),
    ))
}

/// The problems an operation can get from the framework and the shared extractors, added
/// where the operation does not list its own response for the status:
/// - 400 `bad-request`: any path, query or header parameter that does not parse, or a body
///   that is not JSON ([`crate::http::Path`], [`crate::http::Query`], [`crate::http::Json`],
///   [`crate::http::IfMatch`], [`crate::http::IdempotencyKey`]);
/// - 404 `not-found`: the resource a path names does not exist (or is another tenant's);
/// - 413 `payload-too-large` and 422 `validation`: a body over the limit, or JSON of the
///   wrong shape;
/// - 412 `precondition-failed` and 428 `precondition-required`: a stale or missing `If-Match`;
/// - 409 `idempotency-in-progress` and 422 `idempotency-key-reused`: an `Idempotency-Key`
///   still running, or reused for another request;
/// - 401/403 on secured operations, 500 and 503 everywhere.
fn add_common_problems(op: &mut Operation) {
    let params: Vec<(ParameterIn, String, bool)> = op
        .parameters
        .iter()
        .flatten()
        .filter_map(|p| match p {
            RefOr::T(p) => Some((
                p.parameter_in.clone(),
                p.name.to_ascii_lowercase(),
                matches!(p.required, Required::True),
            )),
            RefOr::Ref(_) => None,
        })
        .collect();
    let has = |place: ParameterIn| params.iter().any(|(p, _, _)| *p == place);
    let header = |name: &str| {
        params
            .iter()
            .find(|(p, n, _)| *p == ParameterIn::Header && n == name)
    };
    let has_body = op.request_body.is_some();
    let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let mut add = Vec::new();
    if has(ParameterIn::Path) || has(ParameterIn::Query) || has(ParameterIn::Header) || has_body {
        add.push(("400", ProblemKind::BadRequest));
    }
    if has(ParameterIn::Path) {
        add.push(("404", ProblemKind::NotFound));
    }
    if has_body {
        add.push(("413", ProblemKind::PayloadTooLarge));
        add.push(("422", ProblemKind::Validation));
    }
    if let Some((_, _, required)) = header("if-match") {
        add.push(("412", ProblemKind::PreconditionFailed));
        if *required {
            add.push(("428", ProblemKind::PreconditionRequired));
        }
    }
    if header("idempotency-key").is_some() {
        add.push(("409", ProblemKind::IdempotencyInProgress));
        add.push(("422", ProblemKind::IdempotencyKeyReused));
    }
    if secured {
        add.push(("401", ProblemKind::Unauthenticated));
        add.push(("403", ProblemKind::Forbidden));
    }
    add.push(("500", ProblemKind::Internal));
    add.push(("503", ProblemKind::Unavailable));
    let responses = &mut op.responses.responses;
    for (status, kind) in add {
        responses
            .entry(status.to_owned())
            .or_insert_with(|| reference(kind));
    }
}

/// `If-Match` as [`crate::http::IfMatch::parse`] accepts it: `*`, or a (weak) ETag of a
/// stream version.
pub const IF_MATCH_PATTERN: &str = r#"^(\*|(W/)?"[0-9]{1,19}")$"#;
/// `Idempotency-Key` as [`crate::http::IdempotencyKey`] accepts it: 1-200 visible ASCII
/// characters.
pub const IDEMPOTENCY_KEY_PATTERN: &str = "^[!-~]{1,200}$";

/// Writes into the shared parameters' schemas what their one extractor enforces, so that
/// every operation using them states the same rule.
fn constrain_shared_parameters(op: &mut Operation) {
    for p in op.parameters.iter_mut().flatten() {
        let RefOr::T(p) = p else { continue };
        let Some(RefOr::T(Schema::Object(schema))) = p.schema.as_mut() else {
            continue;
        };
        // A header is text or absent, never JSON null: an optional one is not nullable.
        if p.parameter_in == ParameterIn::Header
            && let SchemaType::Array(types) = &schema.schema_type
            && let [one] = types
                .iter()
                .filter(|t| **t != Type::Null)
                .cloned()
                .collect::<Vec<_>>()
                .as_slice()
        {
            schema.schema_type = SchemaType::Type(one.clone());
        }
        date_time_pattern(schema);
        match (&p.parameter_in, p.name.to_ascii_lowercase().as_str()) {
            (ParameterIn::Header, "if-match") => {
                schema.pattern = Some(IF_MATCH_PATTERN.to_owned());
            }
            (ParameterIn::Header, "idempotency-key") => {
                schema.min_length = Some(1);
                schema.max_length = Some(200);
                schema.pattern = Some(IDEMPOTENCY_KEY_PATTERN.to_owned());
            }
            (ParameterIn::Query, "limit") => {
                // A u32: `int32` (signed) would bound it at 2^31 - 1, which the server exceeds.
                schema.format = Some(SchemaFormat::KnownFormat(KnownFormat::Int64));
                schema.minimum = Some(utoipa::Number::UInt(1));
                schema.maximum = Some(utoipa::Number::UInt(u32::MAX as usize));
            }
            (ParameterIn::Header, "last-event-id") => {
                schema.minimum = Some(utoipa::Number::UInt(0));
            }
            (ParameterIn::Query, "min_position") => {
                schema.minimum = Some(utoipa::Number::UInt(0));
            }
            (ParameterIn::Query, _)
                if schema.pattern.is_none()
                    && schema.format.is_none()
                    && schema.enum_values.is_none()
                    && matches!(&schema.schema_type, SchemaType::Type(Type::String)) =>
            {
                // `Query` refuses `%00` in every parameter.
                schema.pattern = Some(NO_NUL_PATTERN.to_owned());
            }
            _ => {}
        }
    }
}

/// Text without U+0000, which the extractors refuse in every body and query (PostgreSQL's
/// `text` and `jsonb` cannot hold it).
pub const NO_NUL_PATTERN: &str = r"^[^\x00]*$";

/// States the NUL rule on an object schema and the `then`/`else` of its content rules
/// (never an `if`; [`each_object`] reaches the nested schemas): a string without a pattern,
/// format or enum gets [`NO_NUL_PATTERN`]; an unanchored pattern `P` ("contains P") becomes
/// `^[^\x00]*(?:P)[^\x00]*$` (each such `P` here matches no NUL itself). Anchored patterns
/// state their whole alphabet already, none with NUL.
fn forbid_nul(o: &mut Object) {
    let is_string = match &o.schema_type {
        SchemaType::Type(t) => *t == Type::String,
        SchemaType::Array(ts) => ts.contains(&Type::String),
        SchemaType::AnyValue => false,
    };
    if is_string && o.format.is_none() && o.enum_values.is_none() {
        o.pattern = Some(nul_free(o.pattern.as_deref()));
    }
    // The content rules (`allOf` of `if`/`then`) travel as extensions.
    if let Some(rules) = o.extensions.as_mut() {
        rules.values_mut().for_each(forbid_nul_json);
    }
}

/// [`forbid_nul`] on a schema written as JSON (the content rules).
fn forbid_nul_json(v: &mut serde_json::Value) {
    if let Some(rules) = v.as_array_mut() {
        rules.iter_mut().for_each(forbid_nul_json);
        return;
    }
    let Some(o) = v.as_object_mut() else { return };
    let is_string = match o.get("type") {
        Some(serde_json::Value::String(t)) => t == "string",
        Some(serde_json::Value::Array(ts)) => ts.iter().any(|t| t == "string"),
        _ => false,
    };
    if is_string
        && !["format", "enum", "const"]
            .iter()
            .any(|k| o.contains_key(*k))
    {
        let pattern = nul_free(o.get("pattern").and_then(|p| p.as_str()));
        o.insert("pattern".into(), pattern.into());
    }
    for (k, child) in o.iter_mut() {
        match k.as_str() {
            "properties" => child
                .as_object_mut()
                .into_iter()
                .flat_map(|m| m.values_mut())
                .for_each(forbid_nul_json),
            "items" | "additionalProperties" | "then" | "else" | "oneOf" | "anyOf" | "allOf" => {
                forbid_nul_json(child)
            }
            _ => {}
        }
    }
}

/// The pattern of a string that must not contain NUL, given its own pattern.
fn nul_free(pattern: Option<&str>) -> String {
    match pattern {
        None => NO_NUL_PATTERN.to_owned(),
        Some(p) if p.starts_with('^') && p.ends_with('$') => p.to_owned(),
        Some(p) => format!(r"^[^\x00]*(?:{p})[^\x00]*$"),
    }
}

/// One event of the live stream (`GET /api/v1/events/stream`, `text/event-stream`): in
/// OpenAPI 3.1 the schema of an event-stream response describes each event by its fields.
/// Keep-alive comments carry no event.
#[derive(ToSchema)]
#[allow(dead_code)] // Documentation only: the handler writes these fields with axum's `Event`.
pub struct LiveEventFrame {
    /// The event's global position; send it back as `Last-Event-ID` to resume.
    id: String,
    /// The event type (`DeviceRegistered`, `WorkflowCompleted`, ...).
    event: String,
    /// The event as JSON: an `EventDto`.
    #[schema(content_media_type = "application/json")]
    data: String,
}

/// Text with a visible character (neither white space nor a control character), as
/// `netledger_domain::change::validate_content` requires of a tag or a reason.
const VISIBLE: &str = r"[^\s\x00-\x1f\x7f-\x9f]";

/// States the rules that the derives cannot: the items of tag lists (a device's tags, a tag
/// target), and the rules between fields that `validate_content` enforces (422 otherwise):
/// - `emergency: true` needs an `emergency_reason` with a visible character;
/// - `overrides.allow_without_timer: true` needs `risk: high` and no `emergency`;
/// - a firmware action needs a `plan` with `rollback_on_halt: false`.
///
/// JSON Schema says each as an `if`/`then` under `allOf` (which TypeScript generators pass
/// over, so the generated types stay those of the fields). utoipa has no field for it, so it
/// travels as a key of the schema's extensions, which serialize their keys verbatim when
/// built with `from_iter`. Rules that compare two values (a window's end
/// after its start, a restore's target being the device it restores) have no JSON Schema;
/// they stay 422 `validation` as documented.
fn state_change_content_rules(schemas: &mut std::collections::BTreeMap<String, RefOr<Schema>>) {
    // A device's tag as `netledger_domain::device::Tag::parse` accepts it.
    let device_tag = serde_json::json!({
        "type": "string",
        "minLength": 1,
        "maxLength": 64,
        "pattern": "^[A-Za-z0-9._:/-]{1,64}$",
    });
    if let Some(target) = schemas.get_mut("ChangeTarget")
        && let Ok(mut value) = serde_json::to_value(&*target)
    {
        if let Some(variants) = value.get_mut("oneOf").and_then(|v| v.as_array_mut()) {
            for variant in variants {
                // `validate`: no device twice.
                if let Some(ids) = variant
                    .pointer_mut("/properties/device_ids")
                    .and_then(|v| v.as_object_mut())
                {
                    ids.insert("uniqueItems".into(), true.into());
                }
                if let Some(items) = variant.pointer_mut("/properties/tags/items") {
                    *items = serde_json::json!({
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 100,
                        "pattern": VISIBLE,
                    });
                }
            }
        }
        if let Ok(constrained) = serde_json::from_value(value) {
            *target = constrained;
        }
    }
    for name in ["NewDevice", "TagsInput"] {
        constrain_at(schemas, name, "/properties/tags/items", device_tag.clone());
    }
    // A push's own change id as `UserChangeId::parse` reads it (the generated forms reserved).
    if let Some(RefOr::T(Schema::Object(push))) = schemas.get_mut("ConfigPushRequest")
        && let Some(RefOr::T(Schema::Object(id))) = push.properties.get_mut("change_id")
    {
        id.pattern = Some(netledger_changeplan::user_change_id_pattern());
    }
    // A tenant's allowed device networks as `Cidr::parse` reads them, as many as it keeps.
    constrain_at(
        schemas,
        "DeviceSettingsBody",
        "/properties/allowed_networks",
        serde_json::json!({
            "description": "CIDRs (`127.0.0.0/8`, `fe80::/10`, a bare address for one host).",
            "type": "array",
            "maxItems": netledger_domain::identity::tenant::MAX_ALLOWED_NETWORKS,
            "items": {
                "type": "string",
                "pattern": netledger_domain::device::network::cidr_pattern(),
            },
        }),
    );
    // A rollout's target: each kind with its one field (`create_rollout`).
    if let Some(RefOr::T(Schema::Object(target))) = schemas.get_mut("RolloutTargetInput") {
        let rules = serde_json::json!([
            {
                "if": { "properties": { "kind": { "const": "change_set" } } },
                "then": {
                    "required": ["script"],
                    "properties": {
                        "script": { "type": "string", "pattern": r"[^\s\x00]|[\x1c-\x1f]" },
                        "version": { "type": "null" },
                    },
                },
            },
            {
                "if": { "properties": { "kind": { "const": "firmware" } } },
                "then": {
                    "required": ["version"],
                    "properties": {
                        "version": {
                            "type": "string",
                            "maxLength": 20,
                            "pattern": r"^[0-9]{1,4}(\.[0-9]{1,4}){1,3}((beta|rc)[0-9]{1,3})?$",
                        },
                        "script": { "type": "null" },
                    },
                },
            },
        ]);
        target.extensions = Some(utoipa::openapi::extensions::Extensions::from_iter([(
            "allOf", rules,
        )]));
    }
    // A transport: the fingerprint with `tls_pinned` only (`TransportInput::parse`).
    if let Some(RefOr::T(Schema::Object(transport))) = schemas.get_mut("TransportInput") {
        let rules = serde_json::json!([
            {
                "if": { "properties": { "mode": { "const": "tls_pinned" } } },
                "then": {
                    "required": ["fingerprint_sha256"],
                    "properties": { "fingerprint_sha256": {
                        "type": "string",
                        "pattern": "^[0-9A-Fa-f]{64}$",
                    } },
                },
                "else": { "properties": { "fingerprint_sha256": { "type": "null" } } },
            },
        ]);
        transport.extensions = Some(utoipa::openapi::extensions::Extensions::from_iter([(
            "allOf", rules,
        )]));
    }
    // SSH access: a pinned key or trust on first use, exactly one (`SshInput::parse`).
    if let Some(RefOr::T(Schema::Object(ssh))) = schemas.get_mut("SshInput") {
        let rules = serde_json::json!([
            {
                "if": {
                    "required": ["trust_on_first_use"],
                    "properties": { "trust_on_first_use": { "const": true } },
                },
                "then": { "properties": { "host_key_sha256": { "type": "null" } } },
                "else": {
                    "required": ["host_key_sha256"],
                    "properties": { "host_key_sha256": { "type": "string" } },
                },
            },
        ]);
        ssh.extensions = Some(utoipa::openapi::extensions::Extensions::from_iter([(
            "allOf", rules,
        )]));
    }
    // A change policy's approvals never fall as risk rises (`ApprovalPolicy::validate`):
    // with every level in 1..=MAX, "medium >= low" is one if/then per value of low.
    if let Some(RefOr::T(Schema::Object(policy))) = schemas.get_mut("ApprovalPolicy") {
        let rule = |lower: &str, higher: &str, k: u32| {
            serde_json::json!({
                "if": { "properties": { lower: { "minimum": k } } },
                "then": { "properties": { higher: { "minimum": k } } },
            })
        };
        let rules: Vec<serde_json::Value> = (2..=netledger_domain::change::ApprovalPolicy::MAX)
            .flat_map(|k| [rule("low", "medium", k), rule("medium", "high", k)])
            .collect();
        policy.extensions = Some(utoipa::openapi::extensions::Extensions::from_iter([(
            "allOf",
            serde_json::Value::Array(rules),
        )]));
    }
    // A rollout: some device; a firmware rollout cannot roll back (`create_rollout`).
    if let Some(RefOr::T(Schema::Object(rollout))) = schemas.get_mut("NewRollout") {
        let rules = serde_json::json!([
            // No device twice within a list (across the two lists has no JSON Schema: 422).
            { "properties": {
                "canaries": { "uniqueItems": true },
                "devices": { "uniqueItems": true },
            } },
            { "anyOf": [
                { "properties": { "devices": { "minItems": 1 } } },
                { "required": ["canaries"], "properties": { "canaries": { "minItems": 1 } } },
            ] },
            {
                "if": {
                    "required": ["target"],
                    "properties": { "target": {
                        "required": ["kind"],
                        "properties": { "kind": { "const": "firmware" } },
                    } },
                },
                "then": { "properties": { "rollback_on_halt": { "const": false } } },
            },
        ]);
        rollout.extensions = Some(utoipa::openapi::extensions::Extensions::from_iter([(
            "allOf", rules,
        )]));
    }
    let Some(RefOr::T(Schema::Object(content))) = schemas.get_mut("ChangeContent") else {
        return;
    };
    let rules = serde_json::json!([
        {
            "if": { "required": ["emergency"], "properties": { "emergency": { "const": true } } },
            "then": {
                "required": ["emergency_reason"],
                "properties": { "emergency_reason": { "type": "string", "pattern": VISIBLE } },
            },
        },
        {
            "if": {
                "required": ["overrides"],
                "properties": { "overrides": {
                    "required": ["allow_without_timer"],
                    "properties": { "allow_without_timer": { "const": true } },
                } },
            },
            "then": {
                "required": ["risk"],
                "properties": { "risk": { "const": "high" }, "emergency": { "const": false } },
            },
        },
        {
            "if": {
                "required": ["action"],
                "properties": { "action": {
                    "required": ["kind"],
                    "properties": { "kind": { "const": "firmware" } },
                } },
            },
            "then": {
                "required": ["plan"],
                "properties": { "plan": {
                    "required": ["rollback_on_halt"],
                    "properties": { "rollback_on_halt": { "const": false } },
                } },
            },
        },
    ]);
    content.extensions = Some(utoipa::openapi::extensions::Extensions::from_iter([(
        "allOf", rules,
    )]));
}

/// An instant as the API parses it (RFC 3339 with the `time` crate: a four-digit year, `T`
/// and `Z` in either case, optional fractions, offsets up to 25 hours). The `date-time`
/// format alone is an annotation in JSON Schema 2020-12, which accepts any string.
pub const DATE_TIME_PATTERN: &str = "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]\
     ([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-5]):[0-5][0-9])$";

/// Gives a `date-time` string its [`DATE_TIME_PATTERN`].
fn date_time_pattern(schema: &mut Object) {
    if matches!(
        schema.format,
        Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))
    ) {
        schema.pattern = Some(DATE_TIME_PATTERN.to_owned());
    }
}

/// Calls `f` on every object schema in `schema`, however deep: properties, additional
/// properties, array items and the variants of `oneOf`/`allOf`/`anyOf` (references are
/// components of their own, visited as such).
fn each_object(schema: &mut RefOr<Schema>, f: &mut impl FnMut(&mut Object)) {
    let RefOr::T(schema) = schema else { return };
    match schema {
        Schema::Object(o) => {
            f(o);
            for p in o.properties.values_mut() {
                each_object(p, f);
            }
            if let Some(extra) = o.additional_properties.as_deref_mut()
                && let utoipa::openapi::schema::AdditionalProperties::RefOr(extra) = extra
            {
                each_object(extra, f);
            }
        }
        Schema::Array(a) => {
            if let ArrayItems::RefOrSchema(items) = &mut a.items {
                each_object(items, f);
            }
        }
        Schema::OneOf(o) => o.items.iter_mut().for_each(|s| each_object(s, f)),
        Schema::AllOf(o) => o.items.iter_mut().for_each(|s| each_object(s, f)),
        Schema::AnyOf(o) => o.items.iter_mut().for_each(|s| each_object(s, f)),
        _ => {}
    }
}

/// Replaces the sub-schema at `pointer` (JSON pointer) of component `name` with `schema`.
fn constrain_at(
    schemas: &mut std::collections::BTreeMap<String, RefOr<Schema>>,
    name: &str,
    pointer: &str,
    schema: serde_json::Value,
) {
    let Some(component) = schemas.get_mut(name) else {
        return;
    };
    let Ok(mut value) = serde_json::to_value(&*component) else {
        return;
    };
    if let Some(at) = value.pointer_mut(pointer) {
        *at = schema;
        if let Ok(constrained) = serde_json::from_value(value) {
            *component = constrained;
        }
    }
}
