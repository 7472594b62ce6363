//! What keeps a role process honest towards its supervisor (Docker, Kubernetes, systemd):
//! [`supervise`] runs a role's tasks and ends the process with an error as soon as one of
//! them stops on its own (so the supervisor restarts it instead of a half-alive process
//! staying up); [`serve_health`] gives `worker`, `poller` and `projector` the
//! `/health/live` and `/health/ready` endpoints the API has; [`healthcheck`] is the client
//! the container's `HEALTHCHECK` runs (the image has no shell and no curl), over HTTPS too.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use sqlx::PgPool;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// A role's tasks under supervision: each is spawned with the stop signal it must obey.
pub struct Tasks {
    stop: watch::Sender<bool>,
    set: JoinSet<anyhow::Result<()>>,
    names: HashMap<tokio::task::Id, &'static str>,
}

impl Default for Tasks {
    fn default() -> Self {
        Self::new()
    }
}

impl Tasks {
    /// No tasks yet.
    pub fn new() -> Self {
        Self {
            stop: watch::channel(false).0,
            set: JoinSet::new(),
            names: HashMap::new(),
        }
    }

    /// The signal the tasks stop on (set by [`supervise`] on shutdown or when a task ends).
    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Spawns `task`, named `name` in logs and errors.
    pub fn spawn<F>(&mut self, name: &'static str, task: F)
    where
        F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let handle = self.set.spawn(task);
        self.names.insert(handle.id(), name);
    }
}

/// Runs `tasks` until `shutdown`, then waits for each to finish. A task that ends before the
/// shutdown (with an error, a panic or even `Ok`) stops the others and makes this return an
/// error naming it, so that the process exits non-zero and its supervisor restarts it.
/// After a shutdown, the first task error is returned, if any.
pub async fn supervise(
    mut shutdown: watch::Receiver<bool>,
    mut tasks: Tasks,
) -> anyhow::Result<()> {
    let mut stopping = false;
    let mut first_error: Option<anyhow::Error> = None;
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop), if !stopping => {
                // A closed channel (no signal can come any more) stops as well.
                stopping = true;
                let _ = tasks.stop.send(true);
            }
            joined = tasks.set.join_next_with_id() => {
                let Some(joined) = joined else { break };
                let (name, outcome) = match joined {
                    Ok((id, outcome)) => (tasks.names.get(&id).copied().unwrap_or("task"), outcome),
                    Err(e) => (
                        tasks.names.get(&e.id()).copied().unwrap_or("task"),
                        Err(anyhow::anyhow!("panicked: {e}")),
                    ),
                };
                if stopping {
                    if let Err(e) = outcome {
                        tracing::error!(task = name, error = %format!("{e:#}"), "task failed while stopping");
                        first_error.get_or_insert(e.context(format!("{name} failed while stopping")));
                    }
                    continue;
                }
                let error = match outcome {
                    Ok(()) => anyhow::anyhow!("{name} stopped unexpectedly"),
                    Err(e) => e.context(format!("{name} stopped unexpectedly")),
                };
                tracing::error!(task = name, error = %format!("{error:#}"), "a task ended; stopping the process");
                first_error = Some(error);
                stopping = true;
                let _ = tasks.stop.send(true);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// What a role's readiness checks.
#[derive(Clone)]
pub struct HealthDeps {
    /// The role's name (`worker`, `poller`, `projector`), reported in every answer.
    pub role: &'static str,
    /// A pool of the role (its database connection is checked).
    pub pool: PgPool,
    /// The role's NATS connection, when it has one.
    pub nats: Option<async_nats::Client>,
}

/// One readiness check (the API's shape).
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// `database` or `nats`.
    pub name: &'static str,
    /// Whether it passed.
    pub ok: bool,
    /// `ok`, `failed`, `timeout` or the NATS connection state; the error itself is logged.
    pub detail: String,
}

/// A readiness answer: which role, whether it is ready, every check.
#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    /// The role behind this endpoint.
    pub role: &'static str,
    /// `ready` or `not_ready`.
    pub status: &'static str,
    /// The checks.
    pub checks: Vec<Check>,
}

struct HealthState {
    deps: HealthDeps,
    /// The last answer and when it was computed: at most one computation per second,
    /// whatever the request rate (concurrent callers wait for it).
    cache: tokio::sync::Mutex<Option<(Instant, Readiness)>>,
}

async fn readiness(deps: &HealthDeps) -> Readiness {
    let mut checks = Vec::new();
    let db = tokio::time::timeout(
        Duration::from_secs(2),
        sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&deps.pool),
    )
    .await;
    checks.push(match db {
        Ok(Ok(_)) => Check {
            name: "database",
            ok: true,
            detail: "ok".into(),
        },
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: database check failed");
            Check {
                name: "database",
                ok: false,
                detail: "failed".into(),
            }
        }
        Err(_) => Check {
            name: "database",
            ok: false,
            detail: "timeout".into(),
        },
    });
    if let Some(nats) = &deps.nats {
        let state = nats.connection_state();
        checks.push(Check {
            name: "nats",
            ok: state == async_nats::connection::State::Connected,
            detail: format!("{state:?}").to_lowercase(),
        });
    }
    let ready = checks.iter().all(|c| c.ok);
    Readiness {
        role: deps.role,
        status: if ready { "ready" } else { "not_ready" },
        checks,
    }
}

async fn ready(State(state): State<Arc<HealthState>>) -> Response {
    let mut cache = state.cache.lock().await;
    let answer = match cache.as_ref() {
        Some((at, r)) if at.elapsed() < Duration::from_secs(1) => r.clone(),
        _ => {
            let r = readiness(&state.deps).await;
            *cache = Some((Instant::now(), r.clone()));
            r
        }
    };
    drop(cache);
    let code = if answer.status == "ready" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(answer)).into_response()
}

/// Serves `/health/live` and `/health/ready` on `listen` until `stop`.
pub async fn serve_health(
    listen: SocketAddr,
    deps: HealthDeps,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let role = deps.role;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| {
            format!("cannot listen on {listen} for the health endpoints (health.listen)")
        })?;
    tracing::info!(address = %listener.local_addr()?, role, "health endpoints listening");
    let state = Arc::new(HealthState {
        deps,
        cache: tokio::sync::Mutex::new(None),
    });
    let app =
        axum::Router::new()
            .route(
                "/health/live",
                get(move || async move {
                    axum::Json(serde_json::json!({ "status": "ok", "role": role }))
                }),
            )
            .route("/health/ready", get(ready))
            .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
        .context("health endpoints stopped")
}

/// `netledger healthcheck`: asks `http://<addr><path>` (`https://` with `tls`) and returns
/// the status and body of the answer within `timeout`. An unspecified address (`0.0.0.0`,
/// `::`) is asked on loopback.
pub async fn healthcheck(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
    tls: bool,
) -> anyhow::Result<(u16, String)> {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let ask = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        let answer = if tls {
            let connector = tokio_rustls::TlsConnector::from(Arc::new(probe_tls_config()?));
            let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
            let stream = connector
                .connect(name, tcp)
                .await
                .with_context(|| format!("TLS handshake with {addr} failed"))?;
            exchange(stream, &request).await?
        } else {
            exchange(tcp, &request).await?
        };
        let text = String::from_utf8_lossy(&answer).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse::<u16>().ok())
            .with_context(|| format!("{addr} did not answer HTTP"))?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        anyhow::Ok((status, body))
    };
    tokio::time::timeout(timeout, ask)
        .await
        .with_context(|| format!("no answer from {addr} within {timeout:?}"))?
}

/// Writes `request` and reads the answer (a health answer is small: at most 64 KiB).
async fn exchange<S>(mut stream: S, request: &str) -> anyhow::Result<Vec<u8>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    // A TLS peer may end without close_notify once it sent the answer: what arrived counts.
    if let Err(e) = (&mut stream).take(64 * 1024).read_to_end(&mut answer).await
        && answer.is_empty()
    {
        return Err(e.into());
    }
    Ok(answer)
}

/// The probe's TLS settings: the handshake's signatures are checked, the certificate's
/// chain and name are not. The probe asks its own process on loopback whether it answers;
/// who it is, is not the question (its certificate names the public host, and may be signed
/// by a CA this image does not carry).
fn probe_tls_config() -> anyhow::Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AnyCertificate(provider.clone()));
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS settings of the probe")?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    async fn waits_for_stop(mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
        let _ = stop.wait_for(|s| *s).await;
        Ok(())
    }

    /// A task that ends on its own, even with `Ok`, stops the others and fails the process.
    #[tokio::test]
    async fn a_task_that_ends_early_stops_the_rest_and_is_an_error() {
        for early in [Ok(()), Err(anyhow::anyhow!("database went away"))] {
            let (_tx, shutdown) = watch::channel(false);
            let mut tasks = Tasks::new();
            let (saw_stop_tx, saw_stop) = tokio::sync::oneshot::channel();
            let mut stop = tasks.stop_signal();
            tasks.spawn("checkpointer", async move {
                let _ = stop.wait_for(|s| *s).await;
                let _ = saw_stop_tx.send(());
                Ok(())
            });
            let fail = early.is_err();
            tasks.spawn("relay", async move { early });
            let err = tokio::time::timeout(Duration::from_secs(10), supervise(shutdown, tasks))
                .await
                .expect("supervise returned")
                .unwrap_err();
            let text = format!("{err:#}");
            assert!(text.contains("relay stopped unexpectedly"), "{text}");
            assert_eq!(text.contains("database went away"), fail, "{text}");
            saw_stop.await.expect("the other task was told to stop");
        }
    }

    /// A panic is an unexpected end as well.
    #[tokio::test]
    async fn a_panicking_task_is_an_error() {
        let (_tx, shutdown) = watch::channel(false);
        let mut tasks = Tasks::new();
        let stop = tasks.stop_signal();
        tasks.spawn("projections", waits_for_stop(stop));
        tasks.spawn("poller", async { panic!("boom") });
        let err = supervise(shutdown, tasks).await.unwrap_err();
        assert!(
            format!("{err:#}").contains("poller stopped unexpectedly"),
            "{err:#}"
        );
    }

    /// On shutdown every task is told to stop and the process ends cleanly.
    #[tokio::test]
    async fn shutdown_stops_every_task_cleanly() {
        let (tx, shutdown) = watch::channel(false);
        let mut tasks = Tasks::new();
        for name in ["relay", "checkpointer", "projections"] {
            let stop = tasks.stop_signal();
            tasks.spawn(name, waits_for_stop(stop));
        }
        let run = tokio::spawn(supervise(shutdown, tasks));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!run.is_finished());
        tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    /// `healthcheck` reads the status of a real HTTP answer and asks loopback for `0.0.0.0`.
    #[tokio::test]
    async fn healthcheck_reads_the_status() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new()
            .route(
                "/health/ready",
                get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "no") }),
            )
            .route("/health/live", get(|| async { "yes" }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let addr: SocketAddr = format!("0.0.0.0:{port}").parse().unwrap();
        let (code, body) = healthcheck(addr, "/health/live", Duration::from_secs(5), false)
            .await
            .unwrap();
        assert_eq!((code, body.as_str()), (200, "yes"));
        let (code, _) = healthcheck(addr, "/health/ready", Duration::from_secs(5), false)
            .await
            .unwrap();
        assert_eq!(code, 503);
        // Nobody listening: an error, not a hang.
        drop(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
        assert!(
            healthcheck(
                "127.0.0.1:1".parse().unwrap(),
                "/health/live",
                Duration::from_secs(5),
                false
            )
            .await
            .is_err()
        );
    }

    /// Over HTTPS the probe completes the handshake whatever the certificate names (a
    /// self-signed one here) and reads the status; plain HTTP to the TLS port is no answer.
    #[tokio::test]
    async fn healthcheck_speaks_https() {
        let cert =
            rcgen::generate_simple_self_signed(vec!["netledger.example".to_owned()]).unwrap();
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into()),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = [0u8; 1024];
                    let _ = tls.read(&mut buf).await;
                    let _ = tls
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nready")
                        .await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        let (code, body) = healthcheck(addr, "/health/ready", Duration::from_secs(5), true)
            .await
            .unwrap();
        assert_eq!((code, body.as_str()), (200, "ready"));
        assert!(
            healthcheck(addr, "/health/ready", Duration::from_secs(2), false)
                .await
                .is_err()
        );
    }
}
