//! Registers a devsim fleet (its manifest) as managed devices: what `netledger all
//! --demo-fleet N` and the benchmark do. Device ids are derived from the tenant, a fleet name
//! and the manifest index, so registering the same fleet again (after a restart, with new
//! ports) updates the existing devices instead of adding new ones.

use std::collections::BTreeSet;

use devsim::ManifestEntry;
use netledger_domain::device::{DeviceName, Endpoint, Host, SshAccess, SshHostKey, Tag, Transport};
use netledger_domain::{Actor, DeviceId, EventMetadata, TenantId};
use netledger_store::credentials::DevicePassword;
use netledger_store::devices::{DeviceCommandError, DeviceCommands, RegisterDevice, UpdateDevice};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// How to register a demo fleet.
#[derive(Debug, Clone)]
pub struct DemoFleet {
    /// Distinguishes fleets of one tenant (part of the device ids and names).
    pub fleet: String,
    /// Use API-SSL with the certificate pinned from the manifest (else plain API).
    pub tls: bool,
    /// Poll interval in seconds.
    pub poll_interval_secs: u32,
    /// Tags given to every device.
    pub tags: Vec<String>,
    /// Give every device that serves SSH SSH access, its host key pinned from the manifest
    /// (RouterOS 6 and 7.0-7.12 then archive exports of any size, and take pushes).
    pub ssh: bool,
}

impl Default for DemoFleet {
    fn default() -> Self {
        Self {
            fleet: "demo".to_owned(),
            tls: true,
            poll_interval_secs: 60,
            tags: vec!["demo".to_owned()],
            ssh: true,
        }
    }
}

/// The id a manifest entry is registered under.
pub fn demo_device_id(tenant: TenantId, fleet: &str, index: usize) -> DeviceId {
    let digest = Sha256::digest(format!("netledger-demo-fleet/{tenant}/{fleet}/{index}"));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    DeviceId::from_uuid(uuid::Builder::from_custom_bytes(bytes).into_uuid())
}

/// Registers (or updates the endpoint and credentials of) every device of `manifest`.
/// Returns the device ids in manifest order.
pub async fn register_demo_fleet(
    commands: &DeviceCommands,
    tenant: TenantId,
    manifest: &[ManifestEntry],
    options: &DemoFleet,
) -> Result<Vec<DeviceId>, DeviceCommandError> {
    let tags: BTreeSet<Tag> = options
        .tags
        .iter()
        .map(|t| Tag::parse(t))
        .collect::<Result<_, _>>()?;
    let mut ids = Vec::with_capacity(manifest.len());
    for entry in manifest {
        let device = demo_device_id(tenant, &options.fleet, entry.id);
        let (addr, transport) = if options.tls {
            (
                entry.api_ssl,
                Transport::TlsPinned {
                    fingerprint_sha256: entry.tls_sha256.clone(),
                },
            )
        } else {
            (entry.api, Transport::Plain)
        };
        let endpoint = Endpoint {
            host: Host::parse(&addr.ip().to_string())?,
            port: addr.port(),
            transport,
            ssh: (options.ssh && entry.ssh.port() != 0).then(|| SshAccess {
                port: entry.ssh.port(),
                host_key: SshHostKey::Pinned {
                    fingerprint_sha256: entry.ssh_host_key_sha256.clone(),
                },
            }),
        };
        let name = DeviceName::parse(&format!("{}-{}", options.fleet, entry.identity))?;
        let meta = EventMetadata::for_command(Actor::system("demo-fleet"), Uuid::new_v4());
        let password = DevicePassword::new(entry.password.clone());
        let registered = commands
            .register(
                tenant,
                RegisterDevice {
                    device_id: device,
                    name: name.clone(),
                    endpoint: endpoint.clone(),
                    username: entry.username.clone(),
                    password: password.clone(),
                    tags: tags.clone(),
                    poll_interval_secs: options.poll_interval_secs,
                    ssh_key: None,
                },
                meta.clone(),
            )
            .await;
        match registered {
            Ok(_) => {}
            Err(DeviceCommandError::AlreadyRegistered(_)) => {
                commands
                    .update(
                        tenant,
                        device,
                        UpdateDevice {
                            name: Some(name),
                            endpoint: Some(endpoint),
                            poll_interval_secs: Some(options.poll_interval_secs),
                        },
                        None,
                        meta.clone(),
                    )
                    .await?;
                commands
                    .change_credentials(
                        tenant,
                        device,
                        &entry.username,
                        &password,
                        None,
                        None,
                        meta,
                    )
                    .await?;
            }
            Err(e) => return Err(e),
        }
        ids.push(device);
    }
    Ok(ids)
}
