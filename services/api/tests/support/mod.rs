//! The harness the API test binaries share (`mod support;` in each): an [`App`] built on a
//! fresh database (real pools, event store, engine with stand-in workflows, device
//! commands, a git config archive in a temporary folder and a test clock) with the first
//! admin bootstrapped and logged in, and request helpers that return a [`Reply`]. Each
//! binary uses part of it, hence `dead_code` is allowed here.

#![allow(dead_code)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use netledger_api::config::PasswordParams;
use netledger_api::{ApiConfig, ApiDeps, ApiState, BootstrapOutcome, bootstrap_admin};
use netledger_archive::{Archive, ArchiveOptions};
use netledger_domain::TenantId;
use netledger_domain::clock::Clock;
use netledger_domain::identity::Role;
use netledger_store::{EventStore, Pools, StoreOptions};
use netledger_testkit::TestClock;
use serde_json::{Value, json};
use sqlx::PgPool;
use tower::ServiceExt;

pub const ADMIN_EMAIL: &str = "admin@example.net";
pub const PASSWORD: &str = "correct horse battery staple";

/// The router over a test's state, with the bootstrapped admin's token and tenant.
pub struct App {
    pub router: Router,
    pub state: ApiState,
    pub clock: Arc<TestClock>,
    /// The archive the API reads configurations from (in a temporary folder).
    pub archive: Archive,
    _dir: tempfile::TempDir,
    /// The first admin's access token.
    pub admin: String,
    /// The first admin's tenant.
    pub tenant: TenantId,
}

/// A response, its body parsed as JSON (a string when it is not JSON, null when empty or a
/// live event stream).
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn problem_type(&self) -> &str {
        self.body["type"].as_str().unwrap_or("")
    }
    pub fn is_problem(&self) -> bool {
        self.headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v == "application/problem+json")
    }
    pub fn detail(&self) -> String {
        self.body["detail"].as_str().unwrap_or("").to_owned()
    }
}

/// The development configuration with cheap password hashing. Device hosts on loopback are
/// allowed (`device_networks`: the harness's one opt-in; simulated devices listen on this
/// host): a test of the default refusal sets `c.device_networks` back to the default.
pub fn config() -> ApiConfig {
    let mut c = ApiConfig::development();
    c.password = PasswordParams::TESTING;
    c.device_networks =
        netledger_domain::device::network::DeviceNetworkPolicy::default().with_loopback();
    c
}

/// An API state before any user exists, with what it was built from. Keep it alive while
/// the state is used: it owns the archive's folder.
pub struct Setup {
    pub state: ApiState,
    pub clock: Arc<TestClock>,
    pub archive: Archive,
    dir: tempfile::TempDir,
}

/// Builds the state; `tweak` may change the dependencies before the state is made.
pub async fn setup(pool: &PgPool, config: ApiConfig, tweak: impl FnOnce(&mut ApiDeps)) -> Setup {
    let pools = Pools::connect(&pool.connect_options(), None, None, 10)
        .await
        .unwrap();
    let store = EventStore::start(pools.app.clone(), StoreOptions::default());
    let clock = Arc::new(TestClock::new());
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    let mut deps = ApiDeps::new(pools.clone(), store.clone(), dyn_clock.clone());
    let keys = netledger_store::credentials::CredentialKeys::new(
        "test-1",
        [(
            "test-1".to_owned(),
            netledger_store::credentials::KeyMaterial::generate(),
        )],
    )
    .unwrap();
    deps.devices = Some(netledger_store::devices::DeviceCommands::new(
        pools.app.clone(),
        keys,
    ));
    deps.engine = Some(netledger_engine::Engine::new(
        pools.app.clone(),
        store,
        Arc::new(registry()),
        dyn_clock,
    ));
    deps.firmware_dir = Some(tempfile::tempdir().unwrap().keep());
    let dir = tempfile::tempdir().unwrap();
    let archive = Archive::open_with(
        dir.path(),
        ArchiveOptions {
            fsync: false,
            ..Default::default()
        },
    )
    .unwrap();
    deps.archive = Some(archive.clone());
    tweak(&mut deps);
    Setup {
        state: ApiState::new(deps, config).unwrap(),
        clock,
        archive,
        dir,
    }
}

/// Stand-ins for the netops definitions under the kinds the API starts (no worker runs
/// them here; the tests look at what starting and signalling journal).
fn registry() -> netledger_engine::Registry {
    use netledger_domain::workflow::card;
    use netledger_engine::{Definition, StepError};
    fn stand_in<C: netledger_engine::WorkflowCard>(c: C) -> Definition {
        Definition::of(c, |_ctx, _input| async move {
            Err(StepError::fatal("a stand-in: no worker runs it here"))
        })
    }
    netledger_engine::Registry::new()
        .with(stand_in(card::Backup))
        .and_then(|r| r.with(stand_in(card::ConfigPush)))
        .and_then(|r| r.with(stand_in(card::FirmwareUpgrade)))
        .and_then(|r| r.with(stand_in(card::Rollout)))
        .and_then(|r| r.with(stand_in(card::ChangeRun)))
        .unwrap()
}

/// The app on [`config`], without NATS.
pub async fn app(pool: PgPool) -> App {
    app_with(pool, config(), None).await
}

pub async fn app_with(pool: PgPool, config: ApiConfig, nats: Option<async_nats::Client>) -> App {
    setup(&pool, config, |d| d.nats = nats).await.app().await
}

impl Setup {
    /// Bootstraps the first admin and logs them in.
    pub async fn app(self) -> App {
        let outcome = bootstrap_admin(&self.state, ADMIN_EMAIL, PASSWORD)
            .await
            .unwrap();
        assert!(matches!(outcome, BootstrapOutcome::Created { .. }));
        let (router, _) = netledger_api::router(self.state.clone());
        let mut app = App {
            router,
            state: self.state,
            clock: self.clock,
            archive: self.archive,
            _dir: self.dir,
            admin: String::new(),
            tenant: TenantId::from_uuid(uuid::Uuid::nil()),
        };
        app.admin = app.login(ADMIN_EMAIL, PASSWORD).await;
        let me = app.get("/api/v1/auth/me", &app.admin).await.body;
        app.tenant = me["tenant_id"].as_str().unwrap().parse().unwrap();
        app
    }
}

impl App {
    pub async fn send(&self, req: Request<Body>) -> Reply {
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        if headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v == "text/event-stream")
        {
            // A live stream never ends: report its head only.
            return Reply {
                status,
                headers,
                body: Value::Null,
            };
        }
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
        extra: &[(&str, &str)],
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        self.send(req).await
    }

    pub async fn get(&self, uri: &str, token: &str) -> Reply {
        self.call(Method::GET, uri, Some(token), None, &[]).await
    }

    pub async fn post(&self, uri: &str, token: &str, body: Value) -> Reply {
        self.call(Method::POST, uri, Some(token), Some(body), &[])
            .await
    }

    pub async fn login_reply(&self, email: &str, password: &str) -> Reply {
        self.call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"email": email, "password": password})),
            &[],
        )
        .await
    }

    pub async fn login(&self, email: &str, password: &str) -> String {
        let r = self.login_reply(email, password).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        r.body["access_token"].as_str().unwrap().to_owned()
    }

    /// Sets the admin's tenant's change control (`required` or `optional`).
    pub async fn change_control(&self, mode: &str) {
        let r = self
            .call(
                Method::PUT,
                &format!("/api/v1/tenants/{}/change-policy", self.tenant),
                Some(&self.admin),
                Some(json!({"change_control": mode})),
                &[],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert_eq!(r.body["change_control"], mode);
    }

    /// Registers a device called `name` (tag `edge`) as the admin: its id.
    pub async fn register_device(&self, name: &str) -> String {
        let r = self
            .post(
                "/api/v1/devices",
                &self.admin,
                json!({"name": name, "host": "192.0.2.10", "username": "api", "password": "device-secret-1234", "tags": ["edge"]}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        r.body["device_id"].as_str().unwrap().to_owned()
    }

    /// Creates a user with `role` in the admin's tenant (display name "`role` user") and
    /// logs them in: (id, token).
    pub async fn user(&self, email: &str, role: Role) -> (String, String) {
        self.create_user(email, &format!("{role} user"), role).await
    }

    /// Creates a user called `name` (`name@example.net`) with `role` in the admin's tenant
    /// and logs them in: (id, token).
    pub async fn named_user(&self, name: &str, role: Role) -> (String, String) {
        self.create_user(&format!("{name}@example.net"), name, role)
            .await
    }

    async fn create_user(&self, email: &str, display_name: &str, role: Role) -> (String, String) {
        let r = self
            .post(
                "/api/v1/users",
                &self.admin,
                json!({"email": email, "display_name": display_name, "role": role.as_str(), "password": PASSWORD}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let id = r.body["user"]["id"].as_str().unwrap().to_owned();
        (id, self.login(email, PASSWORD).await)
    }
}

/// The content of a script change request on `devices` (a plan of one canary, batches of
/// ten), as `POST /change-requests` takes it.
pub fn change_content(title: &str, devices: &[&str], script: &str, risk: &str) -> Value {
    json!({
        "title": title,
        "reason": "the fleet needs it",
        "ticket": "CHG-1",
        "target": {"kind": "devices", "device_ids": devices},
        "action": {"kind": "script", "script": script},
        "plan": {"canaries": 1, "batch_size": 10, "parallelism": 2, "failure_threshold": 1, "rollback_on_halt": true},
        "risk": risk,
    })
}
