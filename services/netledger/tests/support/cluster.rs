//! Several role processes (`api`, `worker`, `poller`, `projector`, each as its own
//! `netledger` process) on one database, one private NATS server and one data folder, with a
//! `netledger devsim` fleet: the shape of a scaled-out deployment, for the operations tests.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::PgPool;

use super::nats::Nats;
use super::platform::{
    ADMIN_EMAIL, ADMIN_PASSWORD, Http, database_url, free_port, register_device, start_devsim,
};

/// One role process.
pub struct Proc {
    /// `api-1`, `poller-2`, ...
    pub name: String,
    /// The process.
    pub child: Child,
    /// Its stderr (the log).
    pub log: PathBuf,
    /// Its health address (the API's listen address for `api`).
    pub health: Http,
}

impl Proc {
    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM {}", self.name);
    }

    /// Waits up to `within` for the process to exit.
    pub async fn exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {within:?}; log:\n{}",
                self.name,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The processes, the fleet and what they share.
pub struct Cluster {
    /// Every role process, in start order.
    pub procs: Vec<Proc>,
    devsim: Child,
    /// devsim's manifest.
    pub manifest: Vec<Value>,
    /// devsim's control API.
    pub control: Http,
    nats: Nats,
    owner_url: String,
    config: PathBuf,
    work: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        let _ = self.devsim.kill();
        let _ = self.devsim.wait();
    }
}

impl Cluster {
    /// Starts `devices` simulated devices, migrates, then `per_role` processes of each of
    /// `api`, `worker`, `poller`, `projector`; returns when every one answers its readiness.
    pub async fn start(owner: &PgPool, devices: usize, per_role: usize) -> Cluster {
        let bin = env!("CARGO_BIN_EXE_netledger");
        let work = tempfile::tempdir().unwrap();
        let nats = Nats::start();
        let (devsim, manifest, control_port) = start_devsim(work.path(), devices).await;
        let config = work.path().join("netledger.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = \"{}\"\n\
                 [devices]\nallowed_networks = [\"127.0.0.0/8\"]\n\
                 [poller]\nlease_ttl = \"10s\"\nheartbeat = \"1s\"\n\
                 [audit]\ncheckpoint_interval = \"2s\"\n",
                work.path().join("data").display()
            ),
        )
        .unwrap();
        let mut cluster = Cluster {
            procs: Vec::new(),
            devsim,
            manifest,
            control: Http::new(format!("http://127.0.0.1:{control_port}")),
            nats,
            owner_url: database_url(owner),
            config,
            work,
        };
        let migrate = Command::new(bin)
            .arg("--config")
            .arg(&cluster.config)
            .arg("migrate")
            .env("DATABASE_URL", &cluster.owner_url)
            .env("NETLEDGER_LOG", "warn")
            .status()
            .unwrap();
        assert!(migrate.success(), "netledger migrate: {migrate}");
        // The first API creates the administrator before the others start.
        cluster.spawn("api", 1).await;
        for role in ["api", "worker", "poller", "projector"] {
            let first = if role == "api" { 2 } else { 1 };
            for i in first..=per_role {
                cluster.spawn(role, i).await;
            }
        }
        for i in 0..cluster.procs.len() {
            cluster.wait_ready(i).await;
        }
        cluster
    }

    /// Starts `role` number `i` (and waits for nothing).
    pub async fn spawn(&mut self, role: &str, i: usize) -> usize {
        let bin = env!("CARGO_BIN_EXE_netledger");
        let name = format!("{role}-{i}");
        let log = self.work.path().join(format!("{name}.log"));
        let port = free_port();
        let mut cmd = Command::new(bin);
        cmd.arg("--config").arg(&self.config).arg(role);
        match role {
            "api" => {
                cmd.args(["--listen", &format!("127.0.0.1:{port}")]);
                if i == 1 {
                    cmd.env("NETLEDGER_BOOTSTRAP_ADMIN_EMAIL", ADMIN_EMAIL)
                        .env("NETLEDGER_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD);
                }
            }
            "worker" => {
                cmd.args(["--firmware-listen", &format!("127.0.0.1:{}", free_port())])
                    .env("NETLEDGER_HEALTH_LISTEN", format!("127.0.0.1:{port}"));
            }
            _ => {
                cmd.env("NETLEDGER_HEALTH_LISTEN", format!("127.0.0.1:{port}"));
            }
        }
        let child = cmd
            .env("DATABASE_URL", &self.owner_url)
            .env("NATS_URL", self.nats.url())
            .env(
                "NETLEDGER_LOG",
                "info,sqlx=warn,netledger_engine=warn,netledger_poller=warn",
            )
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        self.procs.push(Proc {
            name,
            child,
            log,
            health: Http::new(format!("http://127.0.0.1:{port}")),
        });
        let index = self.procs.len() - 1;
        if role == "api" && i == 1 {
            self.wait_ready(index).await;
        }
        index
    }

    /// Waits until process `i` answers `/health/ready` with 200 (and is still running).
    pub async fn wait_ready(&mut self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let p = &mut self.procs[i];
            if let Some(status) = p.child.try_wait().unwrap() {
                panic!("{} exited during start: {status}\n{}", p.name, p.log_text());
            }
            let ready = tokio::time::timeout(
                Duration::from_secs(2),
                p.health.try_call("GET", "/health/ready", None, None, &[]),
            )
            .await;
            if let Ok(Ok(a)) = ready
                && a.status == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} was not ready in 90 s:\n{}",
                p.name,
                p.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The process named `name`.
    pub fn proc(&mut self, name: &str) -> &mut Proc {
        self.procs.iter_mut().find(|p| p.name == name).unwrap()
    }

    /// The API of `api-<i>`.
    pub fn api(&self, i: usize) -> Http {
        let p = self
            .procs
            .iter()
            .find(|p| p.name == format!("api-{i}"))
            .unwrap();
        Http::new(p.health.base().to_owned())
    }

    /// The private NATS server's URL.
    pub fn nats_url(&self) -> String {
        self.nats.url()
    }

    /// Registers manifest device `i` through `api` (poll interval `poll_secs`); its id.
    pub async fn register(&self, api: &Http, token: &str, i: usize, poll_secs: u32) -> String {
        register_device(
            api,
            token,
            &self.manifest[i],
            &format!("dev-{i}"),
            poll_secs,
        )
        .await
    }
}
