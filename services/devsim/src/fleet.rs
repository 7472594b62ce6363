//! A fleet of devices on loopback: port scheme, certificates, manifest, timers.
//!
//! Port scheme: device `i` listens for the API on `base + 2i`, for API-SSL on
//! `base + 2i + 1` and for SSH on `base + 2n + i` (`n` devices; after all the API ports).
//! With base port 0 every listener gets an ephemeral port (tests).
//!
//! SSH host keys are Ed25519 keys derived from the fleet seed and the device index (the
//! 32-byte seed is SHA-256 of `devsim-ssh-host-key/<seed>/<index>`), so a fleet restarted
//! with the same seed keeps its host keys and pinned fingerprints stay valid.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::board::{BOARDS, VERSIONS, board_for_model, factory_config};
use crate::clock::Clock;
use crate::device::{Device, Link, Shared};
use crate::state::DeviceState;
use crate::version::RosVersion;

/// Errors starting or driving a fleet.
#[derive(Debug, thiserror::Error)]
pub enum DevsimError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Port arithmetic left the u16 range.
    #[error("port range exhausted for {devices} devices from {base}")]
    Ports {
        /// Base address.
        base: SocketAddr,
        /// Requested devices.
        devices: usize,
    },
    /// Certificate generation failed.
    #[error("cannot generate a certificate: {0}")]
    Certificate(String),
    /// An export file given to load does not parse.
    #[error("export for device {index} does not parse")]
    Export {
        /// Device index.
        index: usize,
        /// Parse error.
        #[source]
        source: rosconfig::ParseError,
    },
    /// An export file given to load cannot be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The manifest cannot be written.
    #[error("cannot write the manifest {}", path.display())]
    Manifest {
        /// The file.
        path: std::path::PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Another I/O failure.
    #[error("i/o error")]
    Io(#[from] std::io::Error),
}

/// How to start a fleet.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// Number of devices.
    pub devices: usize,
    /// Base listen address (see the module docs for the port scheme).
    pub listen: SocketAddr,
    /// Time source.
    pub clock: Arc<dyn Clock>,
    /// Share of devices on RouterOS 6 (0.0-1.0).
    pub v6_share: f64,
    /// How long a reboot keeps a device offline.
    pub reboot_time: Duration,
    /// API user name of every device.
    pub username: String,
    /// Seed for passwords, serials and counters.
    pub seed: u64,
    /// Export texts loaded as configuration of the first devices (device `i` gets
    /// `exports[i]`); the device takes version and model from the export header.
    pub exports: Vec<String>,
    /// Background timer period (`None`: only [`Fleet::tick`] advances timers, for tests
    /// with a manual clock).
    pub tick: Option<Duration>,
    /// Serve SSH (exec, shell, SFTP) on every device (default `true`). Off: no SSH
    /// listeners; the manifest's `ssh` is then `0.0.0.0:0`.
    pub ssh: bool,
}

impl FleetOptions {
    /// Defaults: loopback ephemeral ports, 30 % v6, 5 s reboots, user `admin`, 250 ms
    /// ticks, SSH on.
    pub fn new(devices: usize, clock: Arc<dyn Clock>) -> FleetOptions {
        FleetOptions {
            devices,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            clock,
            v6_share: 0.3,
            reboot_time: Duration::from_secs(5),
            username: "admin".into(),
            seed: 1,
            exports: Vec::new(),
            tick: Some(Duration::from_millis(250)),
            ssh: true,
        }
    }
}

/// One device as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Device index.
    pub id: usize,
    /// Identity at start.
    pub identity: String,
    /// API address.
    pub api: SocketAddr,
    /// API-SSL address.
    pub api_ssl: SocketAddr,
    /// SHA-256 of the API-SSL certificate (lowercase hex).
    pub tls_sha256: String,
    /// SSH address (exec, interactive shell, SFTP); `0.0.0.0:0` when the fleet runs
    /// without SSH ([`FleetOptions::ssh`]).
    #[serde(default = "no_ssh")]
    pub ssh: SocketAddr,
    /// SHA-256 of the SSH host public key in SSH wire encoding (lowercase hex; OpenSSH's
    /// `SHA256:` fingerprint is the unpadded base64 of the same 32 bytes).
    #[serde(default)]
    pub ssh_host_key_sha256: String,
    /// API user.
    pub username: String,
    /// API password.
    pub password: String,
    /// RouterOS version at start.
    pub version: String,
    /// Board name.
    pub board: String,
}

fn no_ssh() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}

/// A running fleet.
#[derive(Debug)]
pub struct Fleet {
    devices: Vec<Arc<Device>>,
    addrs: Vec<(SocketAddr, SocketAddr, SocketAddr)>,
    tasks: Vec<JoinHandle<()>>,
}

fn make_cert(name: &str) -> Result<(Arc<rustls::sign::CertifiedKey>, [u8; 32]), DevsimError> {
    let err = |e: &dyn std::fmt::Display| DevsimError::Certificate(e.to_string());
    let key = rcgen::KeyPair::generate().map_err(|e| err(&e))?;
    let params = rcgen::CertificateParams::new(vec![name.to_string()]).map_err(|e| err(&e))?;
    let cert = params.self_signed(&key).map_err(|e| err(&e))?;
    let der = cert.der().clone();
    let fp: [u8; 32] = sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(
        der.as_ref(),
    ))
    .into();
    let pk = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        key.serialize_der(),
    ));
    let signer = rustls::crypto::ring::sign::any_supported_type(&pk).map_err(|e| err(&e))?;
    Ok((
        Arc::new(rustls::sign::CertifiedKey::new(vec![der], signer)),
        fp,
    ))
}

async fn listen(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), DevsimError> {
    let l = TcpListener::bind(addr)
        .await
        .map_err(|source| DevsimError::Bind { addr, source })?;
    let a = l.local_addr()?;
    Ok((l, a))
}

impl Fleet {
    /// Binds every device's listeners and starts serving.
    pub async fn start(opts: FleetOptions) -> Result<Fleet, DevsimError> {
        let shared = Arc::new(Shared {
            clock: opts.clock.clone(),
            reboot_time: opts.reboot_time,
            username: opts.username.clone(),
            seed: opts.seed,
        });
        let now = opts.clock.now();
        let mut templates: Vec<((usize, u16), Arc<rosconfig::Config>)> = Vec::new();
        let mut devices = Vec::with_capacity(opts.devices);
        let mut addrs = Vec::with_capacity(opts.devices);
        let mut tasks = Vec::with_capacity(opts.devices + 1);
        let v6: Vec<&str> = VERSIONS
            .iter()
            .copied()
            .filter(|v| v.starts_with('6'))
            .collect();
        let v7: Vec<&str> = VERSIONS
            .iter()
            .copied()
            .filter(|v| !v.starts_with('6'))
            .collect();
        for i in 0..opts.devices {
            let (api_addr, ssl_addr) = if opts.listen.port() == 0 {
                (opts.listen, opts.listen)
            } else {
                let p = usize::from(opts.listen.port()) + 2 * i;
                let ok = u16::try_from(p + 1).is_ok();
                if !ok {
                    return Err(DevsimError::Ports {
                        base: opts.listen,
                        devices: opts.devices,
                    });
                }
                let mut a = opts.listen;
                a.set_port(p as u16);
                let mut b = opts.listen;
                b.set_port((p + 1) as u16);
                (a, b)
            };
            let (api_l, api_addr) = listen(api_addr).await?;
            let (ssl_l, ssl_addr) = listen(ssl_addr).await?;
            let ssh = if opts.ssh {
                let mut a = opts.listen;
                if a.port() != 0 {
                    let p = usize::from(a.port()) + 2 * opts.devices + i;
                    let Ok(p) = u16::try_from(p) else {
                        return Err(DevsimError::Ports {
                            base: opts.listen,
                            devices: opts.devices,
                        });
                    };
                    a.set_port(p);
                }
                Some(listen(a).await?)
            } else {
                None
            };
            let (board, version, config) = match opts.exports.get(i) {
                Some(text) => {
                    let cfg = rosconfig::parse_export(text)
                        .map_err(|source| DevsimError::Export { index: i, source })?;
                    let version: RosVersion = cfg
                        .header
                        .version
                        .as_deref()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(RosVersion::new(7, 16, 0));
                    (
                        board_for_model(cfg.header.model.as_deref()),
                        version,
                        Arc::new(cfg),
                    )
                }
                None => {
                    let is_v6 = ((i as f64 + 1.0) * opts.v6_share).floor()
                        > (i as f64 * opts.v6_share).floor();
                    let list = if is_v6 && !v6.is_empty() { &v6 } else { &v7 };
                    let vs = list.get(i % list.len().max(1)).copied().unwrap_or("7.16.2");
                    let version: RosVersion = vs.parse().unwrap_or(RosVersion::new(7, 16, 0));
                    let bi = i % BOARDS.len();
                    let board = &BOARDS[bi];
                    let key = (bi, version.major);
                    let cfg = match templates.iter().find(|(k, _)| *k == key) {
                        Some((_, c)) => c.clone(),
                        None => {
                            let c = factory_config(board, version.major);
                            templates.push((key, c.clone()));
                            c
                        }
                    };
                    (board, version, cfg)
                }
            };
            let (cert, fingerprint) = make_cert(&format!("devsim-{i:05}"))?;
            let (link, _) = watch::channel(Link {
                api: true,
                ssl: true,
                ssh: true,
                epoch: 0,
            });
            let dev = Arc::new(Device {
                index: i as u32,
                board,
                fingerprint,
                cert,
                ssh_key: Arc::new(crate::ssh::host_key(opts.seed, i as u32)),
                shared: shared.clone(),
                state: std::sync::Mutex::new(DeviceState::new(config, version, now)),
                link,
                needs_tick: AtomicBool::new(false),
            });
            dev.update_link();
            dev.needs_tick.store(true, Ordering::Relaxed);
            tasks.push(tokio::spawn(crate::server::device_task(
                dev.clone(),
                api_l,
                ssl_l,
                api_addr,
                ssl_addr,
            )));
            let ssh_addr = match ssh {
                Some((l, a)) => {
                    tasks.push(tokio::spawn(crate::ssh::listener_task(dev.clone(), l, a)));
                    a
                }
                None => no_ssh(),
            };
            devices.push(dev);
            addrs.push((api_addr, ssl_addr, ssh_addr));
        }
        let mut fleet = Fleet {
            devices,
            addrs,
            tasks,
        };
        if let Some(period) = opts.tick {
            let devs = fleet.devices.clone();
            fleet.tasks.push(tokio::spawn(async move {
                let mut iv = tokio::time::interval(period);
                loop {
                    iv.tick().await;
                    tick_all(&devs);
                }
            }));
        }
        Ok(fleet)
    }

    /// The manifest: one entry per device.
    pub fn manifest(&self) -> Vec<ManifestEntry> {
        self.devices
            .iter()
            .zip(&self.addrs)
            .map(|(d, (api, ssl, ssh))| {
                let identity = {
                    let st = d.lock();
                    d.identity(&st)
                };
                ManifestEntry {
                    id: d.index() as usize,
                    identity,
                    api: *api,
                    api_ssl: *ssl,
                    tls_sha256: hex::encode(d.fingerprint()),
                    ssh: *ssh,
                    ssh_host_key_sha256: hex::encode(d.ssh_host_key_sha256()),
                    username: d.username().to_string(),
                    password: d.password(),
                    version: d.version().to_string(),
                    board: d.board.board_name.to_string(),
                }
            })
            .collect()
    }

    /// A device by index.
    pub fn device(&self, i: usize) -> Option<&Arc<Device>> {
        self.devices.get(i)
    }

    /// All devices.
    pub fn devices(&self) -> &[Arc<Device>] {
        &self.devices
    }

    /// Runs due timers now (reboots finishing, scheduler entries).
    pub fn tick(&self) {
        tick_all(&self.devices);
    }

    /// Stops serving (listeners close; open sessions end when their peers leave).
    pub fn shutdown(self) {
        for t in self.tasks {
            t.abort();
        }
    }
}

fn tick_all(devs: &[Arc<Device>]) {
    for d in devs {
        if d.needs_tick.load(Ordering::Relaxed) {
            let keep = d.tick();
            if !keep {
                d.needs_tick.store(false, Ordering::Relaxed);
            }
        }
    }
}
