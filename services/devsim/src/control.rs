//! HTTP control API on loopback (JSON): fault knobs, command log, change counts,
//! out-of-band configuration changes, reboots, available upgrades, device-mode, SSH keys.
//!
//! | method | path | body / answer |
//! |---|---|---|
//! | GET | `/devices` | manifest entries |
//! | GET | `/devices/{id}` | status: version, reachable, uptime, faults, change counts |
//! | PUT | `/devices/{id}/faults` | [`Faults`] JSON (replaces all knobs) |
//! | GET | `/devices/{id}/log` | recent API commands |
//! | GET | `/devices/{id}/changes` | `{change id: times applied}` |
//! | POST | `/devices/{id}/config[?user=NAME]` | RouterOS script text, applied out of band by RouterOS user `NAME` (default [`crate::CONSOLE_USER`], `admin`; `/system/history` names it as `by`); 400 + error text of the failing line |
//! | GET | `/devices/{id}/export` | export text (sensitive values shown) |
//! | POST | `/devices/{id}/reboot` | starts a reboot |
//! | PUT | `/devices/{id}/available-version` | `{"version": "7.19.4"}` |
//! | PUT | `/devices/{id}/device-mode` | `{"scheduler": false}` |
//! | POST | `/devices/{id}/ssh-keys` | `{"user": "admin", "key": "ssh-ed25519 AAAA... comment"}`: authorizes the key for SSH logins as `user` (`/user ssh-keys import`); 400 + error text |

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::{Deserialize, Serialize};

use crate::device::Device;
use crate::fleet::ManifestEntry;
use crate::state::Faults;
use crate::version::RosVersion;

#[derive(Clone)]
struct Ctl {
    devices: Arc<Vec<Arc<Device>>>,
    manifest: Arc<Vec<ManifestEntry>>,
}

/// Status of one device.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceStatus {
    /// Index.
    pub id: usize,
    /// RouterOS version now.
    pub version: String,
    /// API listener open.
    pub reachable: bool,
    /// Uptime in seconds.
    pub uptime_secs: u64,
    /// Fault knobs.
    pub faults: Faults,
    /// Change id -> times applied.
    pub changes: std::collections::BTreeMap<String, u32>,
}

#[derive(Deserialize)]
struct VersionBody {
    version: String,
}

#[derive(Deserialize)]
struct ConfigQuery {
    user: Option<String>,
}

#[derive(Deserialize)]
struct ModeBody {
    scheduler: bool,
}

#[derive(Deserialize)]
struct SshKeyBody {
    user: String,
    key: String,
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "no such device").into_response()
}

impl Ctl {
    fn dev(&self, id: usize) -> Option<&Arc<Device>> {
        self.devices.get(id)
    }
}

/// The control router for a fleet's devices.
pub fn router(devices: Vec<Arc<Device>>, manifest: Vec<ManifestEntry>) -> Router {
    let ctl = Ctl {
        devices: Arc::new(devices),
        manifest: Arc::new(manifest),
    };
    Router::new()
        .route("/devices", get(|State(c): State<Ctl>| async move { Json((*c.manifest).clone()) }))
        .route(
            "/devices/{id}",
            get(|State(c): State<Ctl>, Path(id): Path<usize>| async move {
                let Some(d) = c.dev(id) else { return not_found() };
                Json(DeviceStatus {
                    id,
                    version: d.version().to_string(),
                    reachable: d.is_reachable(),
                    uptime_secs: d.uptime().as_secs(),
                    faults: d.faults(),
                    changes: d.change_counts(),
                })
                .into_response()
            }),
        )
        .route(
            "/devices/{id}/faults",
            put(|State(c): State<Ctl>, Path(id): Path<usize>, Json(f): Json<Faults>| async move {
                let Some(d) = c.dev(id) else { return not_found() };
                d.set_faults(f);
                StatusCode::NO_CONTENT.into_response()
            }),
        )
        .route(
            "/devices/{id}/log",
            get(|State(c): State<Ctl>, Path(id): Path<usize>| async move {
                let Some(d) = c.dev(id) else { return not_found() };
                Json(d.command_log()).into_response()
            }),
        )
        .route(
            "/devices/{id}/changes",
            get(|State(c): State<Ctl>, Path(id): Path<usize>| async move {
                let Some(d) = c.dev(id) else { return not_found() };
                Json(d.change_counts()).into_response()
            }),
        )
        .route(
            "/devices/{id}/config",
            post(|State(c): State<Ctl>, Path(id): Path<usize>, Query(q): Query<ConfigQuery>, body: String| async move {
                let Some(d) = c.dev(id) else { return not_found() };
                let user = q.user.as_deref().filter(|u| !u.is_empty()).unwrap_or(crate::CONSOLE_USER);
                match d.apply_out_of_band_as(user, &body) {
                    Ok(()) => StatusCode::NO_CONTENT.into_response(),
                    Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
                }
            }),
        )
        .route(
            "/devices/{id}/export",
            get(|State(c): State<Ctl>, Path(id): Path<usize>| async move {
                let Some(d) = c.dev(id) else { return not_found() };
                d.export(true).into_response()
            }),
        )
        .route(
            "/devices/{id}/reboot",
            post(|State(c): State<Ctl>, Path(id): Path<usize>| async move {
                let Some(d) = c.dev(id) else { return not_found() };
                d.reboot();
                StatusCode::NO_CONTENT.into_response()
            }),
        )
        .route(
            "/devices/{id}/available-version",
            put(|State(c): State<Ctl>, Path(id): Path<usize>, Json(b): Json<VersionBody>| async move {
                let Some(d) = c.dev(id) else { return not_found() };
                match b.version.parse::<RosVersion>() {
                    Ok(v) => {
                        d.set_available_version(v);
                        StatusCode::NO_CONTENT.into_response()
                    }
                    Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
                }
            }),
        )
        .route(
            "/devices/{id}/device-mode",
            put(|State(c): State<Ctl>, Path(id): Path<usize>, Json(b): Json<ModeBody>| async move {
                let Some(d) = c.dev(id) else { return not_found() };
                d.set_scheduler_allowed(b.scheduler);
                StatusCode::NO_CONTENT.into_response()
            }),
        )
        .route(
            "/devices/{id}/ssh-keys",
            post(|State(c): State<Ctl>, Path(id): Path<usize>, Json(b): Json<SshKeyBody>| async move {
                let Some(d) = c.dev(id) else { return not_found() };
                match d.authorize_ssh_key(&b.user, &b.key) {
                    Ok(()) => StatusCode::NO_CONTENT.into_response(),
                    Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
                }
            }),
        )
        .with_state(ctl)
}

/// Serves the control API on `addr` until the task is dropped.
pub async fn serve(addr: SocketAddr, app: Router) -> std::io::Result<()> {
    let l = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(l, app).await
}
