//! `netledger bench api`: device-list latency under an open-loop load.
//!
//! A scratch database gets `devices` devices registered through the real device commands
//! (one tenant, spread over 20 tags), the projections catch up, the real router serves on a
//! loopback port, and a real HTTP/1.1 client (hyper, pooled keep-alive connections) sends
//! `GET /api/v1/devices` pages at a fixed rate. Requests are scheduled at fixed times and
//! sent at those times whether or not earlier ones finished (open loop); each latency is
//! measured from its *scheduled* send time, so a server stall counts against every request
//! it delays (no coordinated omission). Pages cycle through the first pages of the plain
//! list and of tag-filtered lists.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use netledger_domain::clock::Clock;
use netledger_domain::device::{DeviceName, Endpoint, Host, Tag, Transport};
use netledger_domain::{Actor, DeviceId, EventMetadata, TenantId};
use netledger_store::credentials::{CredentialKeys, DevicePassword, KeyMaterial};
use netledger_store::devices::{DeviceCommands, RegisterDevice};
use netledger_store::{EventStore, Pools, StoreOptions};
use serde::Serialize;
use uuid::Uuid;

use netledger_api::{ApiConfig, ApiDeps, ApiState};

/// What to run.
#[derive(Clone)]
pub struct ApiBenchArgs {
    /// Owner URL of the PostgreSQL server (a scratch database is created and dropped).
    pub database_url: String,
    /// Devices to register.
    pub devices: usize,
    /// Requests per second offered.
    pub rps: u32,
    /// How long the load runs.
    pub duration: Duration,
    /// Devices per page.
    pub page_size: u32,
    /// The clock (the binary passes the system clock).
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for ApiBenchArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiBenchArgs")
            .field("devices", &self.devices)
            .field("rps", &self.rps)
            .field("duration", &self.duration)
            .field("page_size", &self.page_size)
            .finish_non_exhaustive()
    }
}

/// The benchmark's figures (`--json` prints this).
#[derive(Debug, Clone, Serialize)]
pub struct ApiBenchReport {
    /// Devices registered.
    pub devices: usize,
    /// Seconds the registrations took (not part of the measurement).
    pub register_secs: f64,
    /// Requests per second offered.
    pub target_rps: u32,
    /// Requests per second completed over the load window.
    pub rps: f64,
    /// Requests sent.
    pub requests: u64,
    /// Requests that did not answer 200.
    pub errors: u64,
    /// Median latency from the scheduled send time, ms.
    pub p50_ms: f64,
    /// 90th percentile, ms.
    pub p90_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Maximum, ms.
    pub max_ms: f64,
    /// Devices per page.
    pub page_size: u32,
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
#[error("bench api: {0}")]
pub struct BenchError(pub String);

fn fail(context: &'static str) -> impl Fn(&dyn std::fmt::Display) -> BenchError {
    move |e| BenchError(format!("{context}: {e}"))
}

/// Runs the benchmark; see the module docs. The scratch database is dropped afterwards
/// (also when the run fails after creating it).
pub async fn bench_api(args: ApiBenchArgs) -> Result<ApiBenchReport, BenchError> {
    let scratch = netledger_testkit::ScratchDb::create(&args.database_url)
        .await
        .map_err(|e| fail("scratch database")(&e))?;
    let owner = scratch.owner.clone();
    let result = run(args, owner).await;
    if let Err(e) = scratch.drop_db().await {
        tracing::warn!(error = %e, "could not drop the scratch database");
    }
    result
}

async fn run(
    args: ApiBenchArgs,
    owner: sqlx::postgres::PgConnectOptions,
) -> Result<ApiBenchReport, BenchError> {
    let pools = Pools::connect(&owner, None, None, 16)
        .await
        .map_err(|e| fail("pools")(&e))?;
    let store = EventStore::start(pools.app.clone(), StoreOptions::default());
    let keys = CredentialKeys::new("bench", [("bench".to_owned(), KeyMaterial::generate())])
        .map_err(|e| fail("credential keys")(&e))?;
    let commands = DeviceCommands::new(pools.app.clone(), keys);
    let mut deps = ApiDeps::new(pools.clone(), store, args.clock.clone());
    deps.devices = Some(commands.clone());
    let state = ApiState::new(deps, ApiConfig::development()).map_err(|e| fail("api state")(&e))?;
    let password = format!("bench-{}", Uuid::new_v4());
    let created = netledger_api::bootstrap_admin(&state, "bench@example.net", &password)
        .await
        .map_err(|e| fail("bootstrap admin")(&e))?;
    let tenant = match created {
        netledger_api::BootstrapOutcome::Created { tenant_id, .. } => {
            TenantId::from_uuid(tenant_id)
        }
        netledger_api::BootstrapOutcome::AlreadyInitialised => {
            return Err(BenchError(
                "the scratch database already had users".to_owned(),
            ));
        }
    };

    // Register the fleet through the real commands, 16 at a time.
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (commands, next, n) = (commands.clone(), next.clone(), args.devices);
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return Ok::<(), BenchError>(());
                }
                let cmd = register(i).map_err(|e| fail("device values")(&e))?;
                let meta = EventMetadata::for_command(Actor::system("bench"), Uuid::new_v4());
                commands
                    .register(tenant, cmd, meta)
                    .await
                    .map_err(|e| fail("register device")(&e))?;
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| fail("register task")(&e))??;
    }
    let register_secs = started.elapsed().as_secs_f64();
    netledger_projections::catch_up(&pools.system, None, 2_000)
        .await
        .map_err(|e| fail("projections")(&e))?;
    // Fresh statistics, as autovacuum would gather on a live system (only the owner may
    // analyze the read-model tables; without it the planner sorts the whole tenant).
    {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect_with(&owner)
            .await
            .map_err(|e| fail("connect as owner")(&e))?;
        sqlx::query("ANALYZE")
            .execute(&mut conn)
            .await
            .map_err(|e| fail("analyze")(&e))?;
        conn.close().await.ok();
    }

    // Serve on loopback.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| fail("bind")(&e))?;
    let addr = listener.local_addr().map_err(|e| fail("bind")(&e))?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(netledger_api::serve(listener, state.clone(), async move {
        let _ = stop_rx.await;
    }));
    let token = login(&addr, &password).await?;

    let client: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build_http();
    let uris = page_uris(&client, &addr, &token, args.page_size).await?;

    // Open-loop load.
    let total = (f64::from(args.rps) * args.duration.as_secs_f64()).round() as u64;
    let interval = Duration::from_secs_f64(1.0 / f64::from(args.rps.max(1)));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Duration, bool)>();
    let t0 = tokio::time::Instant::now() + Duration::from_millis(50);
    for i in 0..total {
        let scheduled = t0 + interval.mul_f64(i as f64);
        tokio::time::sleep_until(scheduled).await;
        let (client, tx) = (client.clone(), tx.clone());
        let uri = uris[(i as usize) % uris.len()].clone();
        let token = token.clone();
        tokio::spawn(async move {
            let ok = get(&client, &uri, &token).await.is_ok();
            let _ = tx.send((tokio::time::Instant::now() - scheduled, ok));
        });
    }
    drop(tx);
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)
        .map_err(|e| fail("histogram")(&e))?;
    let mut errors = 0u64;
    let mut last_done = t0;
    while let Some((latency, ok)) = rx.recv().await {
        if !ok {
            errors += 1;
        }
        let _ = hist.record(
            u64::try_from(latency.as_micros())
                .unwrap_or(u64::MAX)
                .max(1),
        );
        last_done = tokio::time::Instant::now().max(last_done);
    }
    let window = (last_done - t0).as_secs_f64().max(1e-9);
    let _ = stop_tx.send(());
    state.begin_shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    Ok(ApiBenchReport {
        devices: args.devices,
        register_secs,
        target_rps: args.rps,
        rps: hist.len() as f64 / window,
        requests: hist.len(),
        errors,
        p50_ms: ms(0.5),
        p90_ms: ms(0.9),
        p99_ms: ms(0.99),
        max_ms: hist.max() as f64 / 1000.0,
        page_size: args.page_size,
    })
}

fn register(i: usize) -> Result<RegisterDevice, netledger_domain::device::DeviceError> {
    Ok(RegisterDevice {
        device_id: DeviceId::from_uuid(Uuid::now_v7()),
        name: DeviceName::parse(&format!("rtr-{i:05}"))?,
        endpoint: Endpoint {
            host: Host::parse(&format!(
                "10.{}.{}.{}",
                (i >> 16) & 255,
                (i >> 8) & 255,
                i & 255
            ))?,
            port: 8728,
            transport: Transport::Plain,
            ssh: None,
        },
        username: "api".to_owned(),
        password: DevicePassword::new("bench-password"),
        tags: [Tag::parse(&format!("site-{:02}", i % 20))?]
            .into_iter()
            .collect(),
        poll_interval_secs: 60,
        ssh_key: None,
    })
}

async fn login(addr: &std::net::SocketAddr, password: &str) -> Result<String, BenchError> {
    let client: Client<_, http_body_util::Full<bytes::Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let body = serde_json::json!({"email": "bench@example.net", "password": password}).to_string();
    let req = hyper::Request::post(format!("http://{addr}/api/v1/auth/login"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .map_err(|e| fail("login request")(&e))?;
    let res = client.request(req).await.map_err(|e| fail("login")(&e))?;
    let bytes = res
        .into_body()
        .collect()
        .await
        .map_err(|e| fail("login body")(&e))?
        .to_bytes();
    let v: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| fail("login answer")(&e))?;
    v["access_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| BenchError(format!("login failed: {v}")))
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<bytes::Bytes>>;

async fn get(client: &HttpClient, uri: &str, token: &str) -> Result<bytes::Bytes, String> {
    let req = hyper::Request::get(uri)
        .header("authorization", format!("Bearer {token}"))
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let res = client.request(req).await.map_err(|e| e.to_string())?;
    let status = res.status();
    let body = res
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if status == hyper::StatusCode::OK {
        Ok(body)
    } else {
        Err(format!("status {status}"))
    }
}

/// The pages the load cycles through: the first 10 pages of the plain list (walked with
/// their cursors) and the first page of each tag.
async fn page_uris(
    client: &HttpClient,
    addr: &std::net::SocketAddr,
    token: &str,
    page_size: u32,
) -> Result<Vec<String>, BenchError> {
    let base = format!("http://{addr}/api/v1/devices?limit={page_size}");
    let mut uris = vec![base.clone()];
    let mut cursor: Option<String> = None;
    for _ in 0..9 {
        let uri = match &cursor {
            Some(c) => format!("{base}&cursor={c}"),
            None => base.clone(),
        };
        let body = get(client, &uri, token)
            .await
            .map_err(|e| BenchError(format!("warm-up page: {e}")))?;
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| fail("warm-up page")(&e))?;
        match v["next_cursor"].as_str() {
            Some(c) => {
                cursor = Some(c.to_owned());
                uris.push(format!("{base}&cursor={c}"));
            }
            None => break,
        }
    }
    for t in 0..20 {
        uris.push(format!("{base}&tag=site-{t:02}"));
    }
    Ok(uris)
}
