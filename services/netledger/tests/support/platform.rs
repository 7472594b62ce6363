//! The platform as real processes for end-to-end tests: `netledger devsim` (a simulated
//! RouterOS fleet with its HTTP control API) and `netledger all` (API, worker, poller,
//! projector) on the test's fresh database and a private NATS server, driven over HTTP.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use sqlx::PgPool;

use super::nats::Nats;

/// The bootstrap administrator's login.
pub const ADMIN_EMAIL: &str = "e2e-admin@netledger.test";
/// Its password.
pub const ADMIN_PASSWORD: &str = "e2e-admin-password-1234";

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A JSON-over-HTTP client of one base URL.
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

/// What a call answered.
#[derive(Debug)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// Body as JSON (`Null` when empty or not JSON).
    pub body: Value,
    /// Body as text.
    pub text: String,
}

impl Http {
    /// A client of `base` (`http://127.0.0.1:8080`).
    pub fn new(base: String) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            base,
        }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `method path` with an optional bearer token, JSON body and extra headers.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, String)],
    ) -> Answer {
        self.try_call(method, path, token, body, headers)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// [`Http::call`], with a connection error as an error (while a server starts).
    pub async fn try_call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, String)],
    ) -> Result<Answer, String> {
        let mut req = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        let bytes = match body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                Bytes::from(serde_json::to_vec(&b).unwrap())
            }
            None => Bytes::new(),
        };
        let res = self
            .client
            .request(req.body(Full::new(bytes)).unwrap())
            .await
            .map_err(|e| e.to_string())?;
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let text = String::from_utf8_lossy(&body).into_owned();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Answer {
            status,
            headers,
            body,
            text,
        })
    }

    /// A call that must answer `expect`; returns the body.
    pub async fn ok(
        &self,
        expect: u16,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Value {
        let a = self.call(method, path, Some(token), body, &[]).await;
        assert_eq!(a.status, expect, "{method} {path}: {:#}", a.body);
        a.body
    }

    /// Creates a user as `admin` (a token) and logs them in; returns (id, access token).
    pub async fn new_user(
        &self,
        admin: &str,
        email: &str,
        role: &str,
        password: &str,
    ) -> (String, String) {
        let body = self
            .ok(
                201,
                "POST",
                "/api/v1/users",
                admin,
                Some(json!({
                    "email": email, "display_name": email, "role": role, "password": password,
                })),
            )
            .await;
        let id = body["user"]["id"]
            .as_str()
            .or_else(|| body["id"].as_str())
            .unwrap()
            .to_owned();
        (id, self.login(email, password).await)
    }

    /// Logs in; returns the access token.
    pub async fn login(&self, email: &str, password: &str) -> String {
        let a = self
            .call(
                "POST",
                "/api/v1/auth/login",
                None,
                Some(json!({ "email": email, "password": password })),
                &[],
            )
            .await;
        assert_eq!(a.status, 200, "login {email}: {:#}", a.body);
        a.body["access_token"].as_str().unwrap().to_owned()
    }
}

/// `netledger devsim` with `devices` RouterOS 7 devices on ephemeral loopback ports (reboots
/// take 1 s), its manifest in `dir`; returns once the manifest lists them all: the process,
/// the manifest and the control API's port.
pub async fn start_devsim(dir: &std::path::Path, devices: usize) -> (Child, Vec<Value>, u16) {
    let manifest_path: PathBuf = dir.join("fleet.json");
    let control_port = free_port();
    let devsim = Command::new(env!("CARGO_BIN_EXE_netledger"))
        .args(["devsim", "--devices", &devices.to_string()])
        .args([
            "--listen",
            "127.0.0.1:0",
            "--v6-share",
            "0",
            "--reboot-secs",
            "1",
        ])
        .arg("--manifest")
        .arg(&manifest_path)
        .args(["--control", &format!("127.0.0.1:{control_port}")])
        .env("NETLEDGER_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let manifest: Vec<Value> = loop {
        if let Ok(text) = std::fs::read_to_string(&manifest_path)
            && let Ok(m) = serde_json::from_str::<Vec<Value>>(&text)
            && m.len() == devices
        {
            break m;
        }
        assert!(Instant::now() < deadline, "devsim wrote no manifest");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    (devsim, manifest, control_port)
}

/// Registers the devsim device of manifest entry `m` as `name` through `api` (plain API,
/// `poll_secs` interval); returns its id.
pub async fn register_device(
    api: &Http,
    token: &str,
    m: &Value,
    name: &str,
    poll_secs: u32,
) -> String {
    let addr: std::net::SocketAddr = m["api"].as_str().unwrap().parse().unwrap();
    let body = api
        .ok(
            201,
            "POST",
            "/api/v1/devices",
            token,
            Some(json!({
                "name": name, "host": addr.ip().to_string(), "port": addr.port(),
                "transport": {"mode": "plain"},
                "username": m["username"], "password": m["password"],
                "poll_interval_secs": poll_secs,
            })),
        )
        .await;
    body["device_id"].as_str().unwrap().to_owned()
}

/// Starts a backup of `device` through `api` with `Idempotency-Key: key`; its workflow id.
pub async fn start_backup(api: &Http, token: &str, device: &str, key: &str) -> String {
    let a = api
        .call(
            "POST",
            "/api/v1/workflows/backup",
            Some(token),
            Some(json!({ "device_id": device })),
            &[("idempotency-key", key.to_owned())],
        )
        .await;
    assert_eq!(a.status, 201, "backup: {:#}", a.body);
    a.body["workflow_id"].as_str().unwrap().to_owned()
}

/// Starts a backup of `device` (idempotency key `key`) and waits (up to 60 s) until its
/// workflow ends `succeeded`.
pub async fn backup_succeeds(api: &Http, token: &str, device: &str, key: &str) {
    let id = start_backup(api, token, device, key).await;
    workflow_succeeds(api, token, &id).await;
}

/// Waits (up to 60 s) until workflow `id` ends `succeeded`.
pub async fn workflow_succeeds(api: &Http, token: &str, id: &str) {
    let outcome = until("the workflow ended", Duration::from_secs(60), || async {
        // 404 until the read model has it.
        let w = api
            .call(
                "GET",
                &format!("/api/v1/workflows/{id}"),
                Some(token),
                None,
                &[],
            )
            .await;
        w.body["run"]["outcome"].as_str().map(str::to_owned)
    })
    .await;
    assert_eq!(outcome, "succeeded");
}

/// `netledger devsim` + `netledger all` as child processes (killed on drop).
pub struct Platform {
    devsim: Child,
    all: Child,
    /// The API.
    pub api: Http,
    /// devsim's control API.
    pub control: Http,
    /// devsim's manifest (one entry per device).
    pub manifest: Vec<Value>,
    launch: Launch,
    _nats: Nats,
    _work: tempfile::TempDir,
}

impl Drop for Platform {
    fn drop(&mut self) {
        for c in [&mut self.all, &mut self.devsim] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The URL of the test's database (`owner`'s), on the server `DATABASE_URL` names.
pub fn database_url(owner: &PgPool) -> String {
    let db = owner
        .connect_options()
        .get_database()
        .unwrap_or("postgres")
        .to_owned();
    let base = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let (server, _) = base.rsplit_once('/').unwrap();
    format!("{server}/{db}")
}

/// How [`Platform::start_with`] runs `netledger all`.
#[derive(Debug, Default)]
pub struct Options {
    /// Where its stderr (the log) goes; inherited when `None`.
    pub log_file: Option<PathBuf>,
    /// Its `NETLEDGER_LOG` (the test environment's, else `warn`, when `None`).
    pub log_filter: Option<String>,
    /// More TOML appended to its configuration file (after its own keys, so `[section]`
    /// tables other than `[devices]`).
    pub extra_toml: Option<String>,
}

/// Waits (up to `within`) until `api`'s `/health/ready` answers 200; panics if `all` exits
/// first.
pub async fn wait_ready(all: &mut Child, api: &Http, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(Some(status)) = all.try_wait() {
            panic!("netledger all exited during start: {status}");
        }
        let ready = tokio::time::timeout(
            Duration::from_secs(2),
            api.try_call("GET", "/health/ready", None, None, &[]),
        )
        .await;
        if matches!(ready, Ok(Ok(Answer { status: 200, .. }))) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "netledger all was not ready in {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How `netledger all` is started (again, by [`Platform::restart_with`]).
struct Launch {
    config: PathBuf,
    data_dir: PathBuf,
    port: u16,
    firmware_port: u16,
    database_url: String,
    nats_url: String,
    options: Options,
}

impl Launch {
    /// Writes the configuration file and starts `netledger all`.
    fn spawn(&self) -> Child {
        std::fs::write(
            &self.config,
            // The simulated fleet listens on loopback: this harness's one opt-in.
            format!(
                "data_dir = \"{}\"\n[devices]\nallowed_networks = [\"127.0.0.0/8\", \"::1/128\"]\n{}",
                self.data_dir.to_string_lossy(),
                self.options.extra_toml.as_deref().unwrap_or("")
            ),
        )
        .unwrap();
        Command::new(env!("CARGO_BIN_EXE_netledger"))
            .arg("--config")
            .arg(&self.config)
            .args(["all", "--listen", &format!("127.0.0.1:{}", self.port)])
            .args([
                "--firmware-listen",
                &format!("127.0.0.1:{}", self.firmware_port),
            ])
            .env("DATABASE_URL", &self.database_url)
            .env("NATS_URL", &self.nats_url)
            .env("NETLEDGER_BOOTSTRAP_ADMIN_EMAIL", ADMIN_EMAIL)
            .env("NETLEDGER_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env(
                "NETLEDGER_LOG",
                self.options.log_filter.clone().unwrap_or_else(|| {
                    std::env::var("NETLEDGER_LOG").unwrap_or_else(|_| "warn".into())
                }),
            )
            .stdout(Stdio::null())
            .stderr(match &self.options.log_file {
                Some(path) => Stdio::from(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .unwrap(),
                ),
                None => Stdio::inherit(),
            })
            .spawn()
            .unwrap()
    }
}

impl Platform {
    /// Starts `devices` simulated RouterOS 7 devices and the platform on the test database;
    /// returns once `/health/ready` answers 200.
    pub async fn start(owner: &PgPool, devices: usize) -> Platform {
        Self::start_with(owner, devices, Options::default()).await
    }

    /// [`Platform::start`] with [`Options`].
    pub async fn start_with(owner: &PgPool, devices: usize, options: Options) -> Platform {
        let work = tempfile::tempdir().unwrap();
        let nats = Nats::start();
        let (devsim, manifest, control_port) = start_devsim(work.path(), devices).await;
        let port = free_port();
        let launch = Launch {
            config: work.path().join("netledger.toml"),
            data_dir: work.path().join("data"),
            port,
            firmware_port: free_port(),
            database_url: database_url(owner),
            nats_url: nats.url(),
            options,
        };
        let all = launch.spawn();
        let mut platform = Platform {
            devsim,
            all,
            api: Http::new(format!("http://127.0.0.1:{port}")),
            control: Http::new(format!("http://127.0.0.1:{control_port}")),
            manifest,
            launch,
            _nats: nats,
            _work: work,
        };
        platform.wait_ready().await;
        platform
    }

    /// Waits (up to 120 s) until `/health/ready` answers 200.
    async fn wait_ready(&mut self) {
        wait_ready(&mut self.all, &self.api, Duration::from_secs(120)).await;
    }

    /// Stops `netledger all` (SIGTERM, then waits) and starts it again on the same database,
    /// NATS server, data folder and port with `extra_toml` in place of the configuration's
    /// extra part; returns once it is ready.
    pub async fn restart_with(&mut self, extra_toml: &str) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.all.id().to_string()])
            .status();
        let _ = self.all.wait();
        self.launch.options.extra_toml = Some(extra_toml.to_owned());
        self.all = self.launch.spawn();
        self.wait_ready().await;
    }

    /// The configuration file `netledger all` runs with (for other commands on the same
    /// installation).
    pub fn config_file(&self) -> &std::path::Path {
        &self.launch.config
    }

    /// The private NATS server's URL.
    pub fn nats_url(&self) -> String {
        self._nats.url()
    }

    /// Stops `netledger all` (SIGKILL) and keeps the simulated fleet running.
    pub fn kill_platform(&mut self) {
        let _ = self.all.kill();
        let _ = self.all.wait();
    }

    /// The platform's data directory (`data_dir` of its configuration).
    pub fn data_dir(&self) -> PathBuf {
        self.launch.data_dir.clone()
    }

    /// Registers manifest device `i` as `name`; returns its id.
    pub async fn register(&self, token: &str, i: usize, name: &str) -> String {
        register_device(&self.api, token, &self.manifest[i], name, 5).await
    }

    /// Sets device `i`'s fault knobs (all others off).
    pub async fn faults(&self, i: usize, faults: Value) {
        let a = self
            .control
            .call(
                "PUT",
                &format!("/devices/{i}/faults"),
                None,
                Some(faults),
                &[],
            )
            .await;
        assert!(a.status < 300, "set faults: {} {:#}", a.status, a.body);
    }
}

/// Polls `f` every 250 ms until it returns `Some`, for at most `within`.
pub async fn until<T, F, Fut>(what: &str, within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
