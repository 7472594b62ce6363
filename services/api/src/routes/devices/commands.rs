//! Device commands: register, update, replace tags or credentials, remove. Each appends to
//! the device's stream through the store and answers with the events it wrote.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use netledger_domain::DeviceId;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Require;
use crate::authz::perm;
use crate::error::{
    ApiError, ApiResult, Conflict, NotFound, PreconditionFailed, PreconditionRequired, Unavailable,
    Validation,
};
use crate::http::{IdempotencyKey, IfMatch, Json, Path, Query, RequestId, Written, etag};
use crate::idempotency::{self, Stored};
use crate::state::ApiState;

use super::live_state;

/// How the platform talks to a device.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TransportInput {
    /// `plain` (API, port 8728), `tls_pinned` (API-SSL accepting one certificate) or
    /// `tls_verified` (API-SSL verified against the platform's trust roots).
    #[schema(value_type = netledger_projections::query::TransportKind)]
    pub mode: String,
    /// For `tls_pinned`: lowercase hex SHA-256 of the device certificate (DER).
    pub fingerprint_sha256: Option<String>,
}

impl TransportInput {
    fn parse(&self) -> ApiResult<netledger_domain::device::Transport> {
        use netledger_domain::device::Transport;
        match (self.mode.as_str(), &self.fingerprint_sha256) {
            ("plain", None) => Ok(Transport::Plain),
            ("tls_verified", None) => Ok(Transport::TlsVerified),
            ("tls_pinned", Some(f))
                if f.len() == 64 && f.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                Ok(Transport::TlsPinned {
                    fingerprint_sha256: f.to_ascii_lowercase(),
                })
            }
            ("tls_pinned", _) => Err(ApiError::validation(
                "tls_pinned needs fingerprint_sha256: 64 hex digits (SHA-256 of the certificate)",
            )),
            ("plain" | "tls_verified", Some(_)) => Err(ApiError::validation(
                "fingerprint_sha256 is only for mode tls_pinned",
            )),
            (other, _) => Err(ApiError::validation(format!(
                "transport mode `{other}` is unknown: use plain, tls_pinned or tls_verified"
            ))),
        }
    }
}

/// SSH access to a device, for what the API cannot do on RouterOS 6 and 7.0-7.12 (exports of
/// any size, backup downloads, change-script and firmware uploads). Same RouterOS user and
/// password as the API; its group needs the `ssh` and `ftp` policies. Give the host key's
/// fingerprint, or ask explicitly for trust on first use (the first connection records the
/// key, `DeviceSshHostKeyPinned`, and pins it).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SshInput {
    /// SSH port (default 22).
    #[schema(minimum = 1, maximum = 65535)]
    pub port: Option<u16>,
    /// SHA-256 of the device's SSH host key: 64 hex digits, or OpenSSH form
    /// (`SHA256:` and 43 base64 characters, as `ssh-keygen -lf` prints it).
    #[schema(pattern = r"^([0-9A-Fa-f]{64}|SHA256:[A-Za-z0-9+/]{43}=?)$")]
    pub host_key_sha256: Option<String>,
    /// Accept the key the device presents on the first connection and pin it (default
    /// false). Give either this or `host_key_sha256`.
    #[serde(default)]
    pub trust_on_first_use: bool,
}

impl SshInput {
    fn parse(&self) -> ApiResult<netledger_domain::device::SshAccess> {
        use netledger_domain::device::{SshAccess, SshHostKey};
        let host_key = match (&self.host_key_sha256, self.trust_on_first_use) {
            (Some(fp), false) => {
                SshHostKey::pinned(fp).map_err(|e| ApiError::validation(e.to_string()))?
            }
            (None, true) => SshHostKey::FirstUse,
            (Some(_), true) => {
                return Err(ApiError::validation(
                    "ssh: give host_key_sha256 or trust_on_first_use, not both",
                ));
            }
            (None, false) => {
                return Err(ApiError::validation(
                    "ssh: give host_key_sha256 (the SHA-256 of the device's SSH host key) or \
                     set trust_on_first_use: true to pin the key the first connection sees",
                ));
            }
        };
        Ok(SshAccess {
            port: self.port.unwrap_or(22),
            host_key,
        })
    }
}

/// Parses an `ssh_private_key` given with credentials: the text is sealed, the public half
/// (algorithm, fingerprint, OpenSSH line) goes into the event and the device's read model.
/// Absent, `null`, empty or blank: no key (what a form's empty field sends).
fn ssh_key_input(text: Option<&str>) -> ApiResult<Option<netledger_store::devices::NewSshKey>> {
    let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
        return Ok(None);
    };
    let fix = "give an unencrypted private key in OpenSSH, PKCS#8 or PKCS#1 PEM form (for \
               example the file `ssh-keygen -t ed25519 -N ''` writes), or omit ssh_private_key \
               to log in over SSH with the password";
    let max = netledger_store::credentials::MAX_SSH_KEY_LEN;
    if text.len() > max {
        return Err(ApiError::validation(format!(
            "ssh_private_key is {} bytes, more than the {max} accepted; {fix}",
            text.len()
        )));
    }
    let first = text.trim_start();
    if first.starts_with("ssh-") || first.starts_with("ecdsa-") || first.starts_with("sk-") {
        return Err(ApiError::validation(format!(
            "ssh_private_key holds a public key; Netledger needs the private half to log in \
             (import the public key on the device with `/user ssh-keys import`); {fix}"
        )));
    }
    let key = routeros_ssh::ClientKey::from_text(text, None).map_err(|e| {
        let why = std::error::Error::source(&e)
            .map(|s| s.to_string())
            .unwrap_or_else(|| e.to_string());
        ApiError::validation(format!(
            "ssh_private_key could not be read as a private key ({why}); a passphrase-protected \
             key is not accepted (Netledger encrypts it at rest itself); {fix}"
        ))
    })?;
    let public = netledger_domain::device::SshClientKey {
        algorithm: key.algorithm(),
        fingerprint_sha256: key
            .fingerprint()
            .map(|f| f.to_hex())
            .ok_or_else(|| ApiError::validation(format!("ssh_private_key: {fix}")))?,
        public_key: key
            .public_key_openssh()
            .map_err(|e| ApiError::validation(format!("ssh_private_key: {e}; {fix}")))?,
    };
    Ok(Some(netledger_store::devices::NewSshKey {
        private: netledger_store::credentials::DeviceSshKey::new(text),
        public,
    }))
}

/// `null` in a JSON body becomes `Some(None)` (remove), absent stays `None` (keep).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A device to register. The password is stored encrypted and never returned.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NewDevice {
    /// Name: 1-64 of letters, digits, `.`, `_`, `-`.
    #[schema(min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    pub name: String,
    /// Hostname or IP address.
    #[schema(
        min_length = 1,
        max_length = 253,
        pattern = r"^[A-Za-z0-9.:_-]{1,253}$"
    )]
    pub host: String,
    /// API port (default 8728 for `plain`, 8729 for TLS).
    #[schema(minimum = 1, maximum = 65535)]
    pub port: Option<u16>,
    /// Transport (default `tls_verified`: API-SSL verified against the platform's trust
    /// roots). Production refuses `plain` unless the tenant's device settings allow it.
    pub transport: Option<TransportInput>,
    /// API login name.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]{1,100}$"
    )]
    pub username: String,
    /// API password (write-only): not empty, no NUL character.
    #[schema(min_length = 1, pattern = r"^[^\x00]+$")]
    pub password: String,
    /// Tags: each 1-64 of letters, digits, `.`, `_`, `-`, `:`, `/`.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Poll interval in seconds, 5-86400 (default 60).
    #[schema(minimum = 5, maximum = 86400)]
    pub poll_interval_secs: Option<u32>,
    /// SSH access (none by default: API only; RouterOS 6 and 7.0-7.12 then cannot have
    /// changes pushed or backups archived, see `file_access` on the device).
    pub ssh: Option<SshInput>,
    /// Private key to log in over SSH with instead of the password (write-only, stored
    /// encrypted like the password): unencrypted OpenSSH, PKCS#8 or PKCS#1 PEM text of at
    /// most 32768 bytes (format `ssh-private-key`); empty means none; anything else is a 422
    /// saying what to give. Import its public half (shown as `ssh_client_key` on the device) for the user
    /// on the device.
    #[schema(format = "ssh-private-key")]
    pub ssh_private_key: Option<String>,
}

/// A device after a write (read the device for its full state).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceWritten {
    /// The device.
    pub device_id: Uuid,
    /// Its stream version after the write (the new `ETag`).
    pub version: u64,
    /// Events appended (none when nothing changed).
    pub events: Vec<Written>,
}

fn parse_tags(
    tags: &[String],
) -> ApiResult<std::collections::BTreeSet<netledger_domain::device::Tag>> {
    tags.iter()
        .map(|t| {
            netledger_domain::device::Tag::parse(t).map_err(|e| ApiError::validation(e.to_string()))
        })
        .collect()
}

fn endpoint(
    host: &str,
    port: Option<u16>,
    transport: Option<&TransportInput>,
    ssh: Option<&SshInput>,
) -> ApiResult<netledger_domain::device::Endpoint> {
    use netledger_domain::device::{Endpoint, Host, Transport};
    let transport = match transport {
        Some(t) => t.parse()?,
        None => Transport::TlsVerified,
    };
    let default_port = if transport == Transport::Plain {
        8728
    } else {
        8729
    };
    Ok(Endpoint {
        host: Host::parse(host).map_err(|e| ApiError::validation(e.to_string()))?,
        port: port.unwrap_or(default_port),
        transport,
        ssh: ssh.map(SshInput::parse).transpose()?,
    })
}

/// Refuses an endpoint the tenant's device settings refuse: in production the plain API
/// unless the tenant allows it (the password would cross the network in clear text), and an
/// address the network policy refuses (loopback, link-local, unspecified, multicast unless
/// allowed; the platform's own services always). Both are 403 naming the rule and how to
/// allow it: the request is well formed, the tenant's policy refuses it. A host name is resolved here and every address checked; one that does not
/// resolve from the API passes (the poller and the workers check every address they connect
/// to again, `netledger-device-client`).
pub(crate) async fn check_device_endpoint(
    state: &ApiState,
    tenant: netledger_domain::TenantId,
    endpoint: &netledger_domain::device::Endpoint,
) -> ApiResult<()> {
    let settings = {
        let mut tx = netledger_store::begin_tenant(&state.pools().app, tenant).await?;
        let s = netledger_store::devices::settings::device_settings(&mut tx, tenant).await?;
        tx.commit().await?;
        s
    };
    if state.config().production
        && endpoint.transport == netledger_domain::device::Transport::Plain
        && !settings.allow_plain_transport
    {
        tracing::warn!(%tenant, "plain transport refused in production");
        return Err(ApiError::forbidden_because(format!(
            "transport `plain` is refused by the `plain-transport` rule: in production the \
             device's password and every reply would cross the network in clear text; use \
             tls_pinned or tls_verified (API-SSL, port 8729), or a tenant admin allows plain \
             with PUT /api/v1/tenants/{tenant}/device-settings {{\"allow_plain_transport\": true}}"
        )));
    }
    let policy = state
        .config()
        .device_networks
        .clone()
        .allowing(settings.allowed_networks.iter().copied());
    let host = endpoint.host.as_str();
    let literal = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let addrs: Vec<std::net::IpAddr> = match literal.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => {
            let lookup = tokio::time::timeout(
                std::time::Duration::from_secs(3),
                tokio::net::lookup_host((host, endpoint.port)),
            )
            .await;
            match lookup {
                Ok(Ok(found)) => found.map(|a| a.ip()).collect(),
                _ => {
                    tracing::info!(
                        host,
                        "device host does not resolve from the API; checked at connect time"
                    );
                    Vec::new()
                }
            }
        }
    };
    for ip in addrs {
        if let Err(refused) = policy.check(ip, endpoint.port) {
            tracing::warn!(host, %ip, rule = refused.rule(), "device address refused");
            return Err(ApiError::forbidden_because(if literal == ip.to_string() {
                refused.to_string()
            } else {
                format!("host `{host}` resolves to {ip}: {refused}")
            }));
        }
    }
    Ok(())
}

fn device_written(
    id: Uuid,
    outcome: Option<netledger_store::AppendOutcome>,
    version: u64,
) -> DeviceWritten {
    let stream = DeviceId::from_uuid(id).stream();
    DeviceWritten {
        device_id: id,
        version: outcome.map(|o| o.stream_version).unwrap_or(version),
        events: outcome
            .map(|o| vec![Written::new(&stream, o)])
            .into_iter()
            .flatten()
            .collect(),
    }
}

/// Register a device (accepts `Idempotency-Key`).
#[utoipa::path(
    post,
    path = "/devices",
    operation_id = "register_device",
    tag = "devices",
    security(("bearer" = ["devices:write"])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key and body return the first result.")),
    request_body = NewDevice,
    responses(
        (status = 201, description = "Registered; `ETag` is its stream version.", body = DeviceWritten),
        (status = 409, response = Conflict),
        (status = 422, response = Validation),
        (status = 503, response = Unavailable),
    )
)]
/// With `Idempotency-Key`, a retry with the same body answers with the first result
/// (`idempotency-replayed: true`); another body under the key is 422
/// `idempotency-key-reused`; a retry while the first runs is 409 `idempotency-in-progress`.
pub async fn register_device(
    State(state): State<ApiState>,
    auth: Require<perm::DevicesWrite>,
    rid: RequestId,
    key: IdempotencyKey,
    Json(body): Json<NewDevice>,
) -> ApiResult<Response> {
    let p = auth.principal().clone();
    let st = state.clone();
    let request = body.clone();
    idempotency::run(
        &state,
        p.tenant,
        key.0,
        "register_device",
        &request,
        || async move {
            let cmd = netledger_store::devices::RegisterDevice {
                device_id: DeviceId::from_uuid(Uuid::now_v7()),
                name: netledger_domain::device::DeviceName::parse(&body.name)
                    .map_err(|e| ApiError::validation(e.to_string()))?,
                endpoint: endpoint(
                    &body.host,
                    body.port,
                    body.transport.as_ref(),
                    body.ssh.as_ref(),
                )?,
                username: body.username.clone(),
                password: netledger_store::credentials::DevicePassword::new(body.password.clone()),
                tags: parse_tags(&body.tags)?,
                poll_interval_secs: body.poll_interval_secs.unwrap_or(60),
                ssh_key: ssh_key_input(body.ssh_private_key.as_deref())?,
            };
            check_device_endpoint(&st, p.tenant, &cmd.endpoint).await?;
            let id = *cmd.device_id.as_uuid();
            let outcome = st
                .devices()?
                .register(p.tenant, cmd, rid.metadata(p.actor()))
                .await?;
            let w = device_written(id, Some(outcome), 0);
            Stored::json(axum::http::StatusCode::CREATED, Some(w.version), &w)
        },
    )
    .await
}

/// Changes to a device; absent fields stay.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct DevicePatch {
    /// New name (as at registration).
    #[schema(min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    pub name: Option<String>,
    /// New host (as at registration).
    #[schema(
        min_length = 1,
        max_length = 253,
        pattern = r"^[A-Za-z0-9.:_-]{1,253}$"
    )]
    pub host: Option<String>,
    /// New port.
    #[schema(minimum = 1, maximum = 65535)]
    pub port: Option<u16>,
    /// New transport.
    pub transport: Option<TransportInput>,
    /// New SSH access; `null` removes it (API only from then on). Changing it keeps the
    /// stored credentials (the host is the same).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<SshInput>, nullable)]
    pub ssh: Option<Option<SshInput>>,
    /// New poll interval in seconds, 5-86400.
    #[schema(minimum = 5, maximum = 86400)]
    pub poll_interval_secs: Option<u32>,
}

/// Update a device's name, endpoint or poll interval (If-Match). Changing host, port or
/// transport deletes the stored credentials (`DeviceCredentialsCleared`): the password was
/// entered for the old endpoint and is never sent to another; set new ones with
/// `PUT /devices/{id}/credentials` (`devices:credentials`).
#[utoipa::path(
    patch,
    path = "/devices/{device_id}",
    operation_id = "update_device",
    tag = "devices",
    security(("bearer" = ["devices:write"])),
    params(
        ("device_id" = Uuid, Path, description = "Device id."),
        ("If-Match" = String, Header, description = "The device's ETag, or `*`."),
    ),
    request_body = DevicePatch,
    responses(
        (status = 200, description = "Updated (no events when nothing changed).", body = DeviceWritten),
        (status = 404, response = NotFound),
        (status = 412, response = PreconditionFailed),
        (status = 422, response = Validation),
        (status = 428, response = PreconditionRequired),
        (status = 503, response = Unavailable),
    )
)]
pub async fn update_device(
    State(state): State<ApiState>,
    auth: Require<perm::DevicesWrite>,
    rid: RequestId,
    Path(id): Path<Uuid>,
    if_match: IfMatch,
    Json(body): Json<DevicePatch>,
) -> ApiResult<Response> {
    let p = auth.principal();
    let current = live_state(&state, p.tenant, id).await?;
    let reg = current
        .registration
        .as_ref()
        .ok_or_else(|| ApiError::not_found(format!("device {id}")))?;
    let endpoint_changed = body.host.is_some()
        || body.port.is_some()
        || body.transport.is_some()
        || body.ssh.is_some();
    let new_endpoint = if endpoint_changed {
        let host = body
            .host
            .clone()
            .unwrap_or_else(|| reg.endpoint.host.as_str().to_owned());
        let mut e = endpoint(
            &host,
            body.port.or(Some(reg.endpoint.port)),
            body.transport.as_ref(),
            None,
        )?;
        if body.transport.is_none() {
            e.transport = reg.endpoint.transport.clone();
        }
        e.ssh = match &body.ssh {
            None => reg.endpoint.ssh.clone(),
            Some(None) => None,
            Some(Some(s)) => Some(s.parse()?),
        };
        check_device_endpoint(&state, p.tenant, &e).await?;
        Some(e)
    } else {
        None
    };
    let changes = netledger_store::devices::UpdateDevice {
        name: body
            .name
            .as_deref()
            .map(netledger_domain::device::DeviceName::parse)
            .transpose()
            .map_err(|e| ApiError::validation(e.to_string()))?,
        endpoint: new_endpoint,
        poll_interval_secs: body.poll_interval_secs,
    };
    let outcome = state
        .devices()?
        .update(
            p.tenant,
            DeviceId::from_uuid(id),
            changes,
            if_match.version(),
            rid.metadata(p.actor()),
        )
        .await?;
    let w = device_written(id, outcome, current.version);
    Ok((etag(w.version), Json(w)).into_response())
}

/// A device's tags.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TagsInput {
    /// The whole new tag set: each 1-64 of letters, digits, `.`, `_`, `-`, `:`, `/`.
    pub tags: Vec<String>,
}

/// Replace a device's tags (If-Match).
#[utoipa::path(
    put,
    path = "/devices/{device_id}/tags",
    operation_id = "set_device_tags",
    tag = "devices",
    security(("bearer" = ["devices:write"])),
    params(
        ("device_id" = Uuid, Path, description = "Device id."),
        ("If-Match" = String, Header, description = "The device's ETag, or `*`."),
    ),
    request_body = TagsInput,
    responses(
        (status = 200, description = "Set (no events when unchanged).", body = DeviceWritten),
        (status = 404, response = NotFound),
        (status = 412, response = PreconditionFailed),
        (status = 422, response = Validation),
        (status = 428, response = PreconditionRequired),
        (status = 503, response = Unavailable),
    )
)]
pub async fn set_device_tags(
    State(state): State<ApiState>,
    auth: Require<perm::DevicesWrite>,
    rid: RequestId,
    Path(id): Path<Uuid>,
    if_match: IfMatch,
    Json(body): Json<TagsInput>,
) -> ApiResult<Response> {
    let p = auth.principal();
    let tags = parse_tags(&body.tags)?;
    let current = live_state(&state, p.tenant, id).await?;
    let outcome = state
        .devices()?
        .set_tags(
            p.tenant,
            DeviceId::from_uuid(id),
            tags,
            if_match.version(),
            rid.metadata(p.actor()),
        )
        .await?;
    let w = device_written(id, outcome, current.version);
    Ok((etag(w.version), Json(w)).into_response())
}

/// New device credentials (write-only: never returned).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CredentialsInput {
    /// API login name.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]{1,100}$"
    )]
    pub username: String,
    /// API password: not empty, no NUL character.
    #[schema(min_length = 1, pattern = r"^[^\x00]+$")]
    pub password: String,
    /// Private key to log in over SSH with instead of the password (write-only, stored
    /// encrypted): unencrypted OpenSSH, PKCS#8 or PKCS#1 PEM text of at most 32768 bytes
    /// (format `ssh-private-key`); empty means none; anything else is a 422 saying what to
    /// give. New credentials replace the old ones whole: without it the device has no SSH
    /// key afterwards.
    #[schema(format = "ssh-private-key")]
    pub ssh_private_key: Option<String>,
}

/// Replace a device's login credentials (If-Match; write-only).
#[utoipa::path(
    put,
    path = "/devices/{device_id}/credentials",
    operation_id = "set_device_credentials",
    tag = "devices",
    security(("bearer" = ["devices:credentials"])),
    params(
        ("device_id" = Uuid, Path, description = "Device id."),
        ("If-Match" = String, Header, description = "The device's ETag, or `*`."),
    ),
    request_body = CredentialsInput,
    responses(
        (status = 200, description = "Stored encrypted.", body = DeviceWritten),
        (status = 404, response = NotFound),
        (status = 412, response = PreconditionFailed),
        (status = 422, response = Validation),
        (status = 428, response = PreconditionRequired),
        (status = 503, response = Unavailable),
    )
)]
pub async fn set_device_credentials(
    State(state): State<ApiState>,
    auth: Require<perm::DevicesCredentials>,
    rid: RequestId,
    Path(id): Path<Uuid>,
    if_match: IfMatch,
    Json(body): Json<CredentialsInput>,
) -> ApiResult<Response> {
    let p = auth.principal();
    let current = live_state(&state, p.tenant, id).await?;
    let ssh_key = ssh_key_input(body.ssh_private_key.as_deref())?;
    let outcome = state
        .devices()?
        .change_credentials(
            p.tenant,
            DeviceId::from_uuid(id),
            &body.username,
            &netledger_store::credentials::DevicePassword::new(body.password),
            ssh_key.as_ref(),
            if_match.version(),
            rid.metadata(p.actor()),
        )
        .await?;
    let w = device_written(id, Some(outcome), current.version);
    Ok((etag(w.version), Json(w)).into_response())
}

/// Why a device is removed.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RemoveParams {
    /// Recorded on the `DeviceRemoved` event.
    pub reason: Option<String>,
}

/// Remove a device from management; its credentials are deleted (If-Match).
#[utoipa::path(
    delete,
    path = "/devices/{device_id}",
    operation_id = "remove_device",
    tag = "devices",
    security(("bearer" = ["devices:write"])),
    params(
        ("device_id" = Uuid, Path, description = "Device id."),
        ("If-Match" = String, Header, description = "The device's ETag, or `*`."),
        RemoveParams,
    ),
    responses(
        (status = 200, description = "Removed.", body = DeviceWritten),
        (status = 404, response = NotFound),
        (status = 412, response = PreconditionFailed),
        (status = 428, response = PreconditionRequired),
        (status = 503, response = Unavailable),
    )
)]
pub async fn remove_device(
    State(state): State<ApiState>,
    auth: Require<perm::DevicesWrite>,
    rid: RequestId,
    Path(id): Path<Uuid>,
    if_match: IfMatch,
    Query(q): Query<RemoveParams>,
) -> ApiResult<Response> {
    let p = auth.principal();
    let current = live_state(&state, p.tenant, id).await?;
    let reason = q
        .reason
        .unwrap_or_else(|| "removed through the API".to_owned());
    let outcome = state
        .devices()?
        .remove(
            p.tenant,
            DeviceId::from_uuid(id),
            &reason,
            if_match.version(),
            rid.metadata(p.actor()),
        )
        .await?;
    let w = device_written(id, Some(outcome), current.version);
    Ok((etag(w.version), Json(w)).into_response())
}
