//! How the platform reaches a registered device: the one mapping from a device's endpoint
//! (host, port, [`Transport`]) and login to a RouterOS client configuration
//! ([`routeros::Config`]), used by every component that connects to devices (the poller and
//! the netops workflows), so a device that can be polled can also be pushed to, and the
//! other way round.
//!
//! Owns: which [`routeros::TlsPolicy`] each [`Transport`] becomes (plain API, a pinned
//! certificate fingerprint, CA verification against the process's trust roots), the
//! timeouts applied, the refusal when an endpoint cannot be reached as registered, and the
//! connect-time address check: every address the host resolves to is checked against the
//! tenant's [`DeviceNetworkPolicy`] (loopback, link-local, the platform's own services...)
//! right before the client connects, through [`routeros::AddressGuard`], so a DNS name that
//! resolves somewhere forbidden after registration is refused too.
//! Does not own: where the password comes from (each caller decrypts it in memory), when to
//! connect, or the RouterOS protocol (`routeros`).
//!
//! Why a crate of its own: the mapping needs both the domain's [`Transport`] and the
//! client's types. `routeros` depends on nothing of ours and `netledger-domain` is pure (no
//! network client), so neither may hold it; `netledger-store` and `netledger-archive`, the
//! other crates both callers share, own persistence and know nothing of device clients.
//! Depends on `netledger-domain`, `routeros`, `routeros-ssh` and `rustls` (the trust-root
//! type) only.
//!
//! SSH ([`ssh_config`]): a device registered with SSH access is reached over SSH/SFTP for
//! the file jobs its version cannot do over the API ([`netledger_domain::device::file_access`]),
//! on the same host, with the same login and password, the host key pinned or (explicitly,
//! [`SshHostKey::FirstUse`]) trusted on first use, and the same connect-time address check.

use std::sync::Arc;
use std::time::Duration;

use netledger_domain::device::network::DeviceNetworkPolicy;
use netledger_domain::device::{SshAccess, SshHostKey, Transport};
use routeros::{AddressGuard, Config, Fingerprint, Password, TlsPolicy};

/// What a caller brings besides the endpoint: its timeouts and trust roots.
#[derive(Clone)]
pub struct ClientSettings {
    /// Bound on TCP connect plus TLS handshake.
    pub connect_timeout: Duration,
    /// Default bound on one command (login included).
    pub command_timeout: Duration,
    /// CA roots for devices registered with verified TLS ([`Transport::TlsVerified`]);
    /// without them such devices are refused with [`EndpointError::NoCaRoots`].
    pub tls_roots: Option<Arc<rustls::RootCertStore>>,
    /// Where the device may be: checked on every resolved address before each connect (the
    /// tenant's allowed networks plus the operator's, and the platform's service endpoints).
    pub device_networks: DeviceNetworkPolicy,
}

impl std::fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSettings")
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("tls_roots", &self.tls_roots.as_ref().map(|r| r.len()))
            .field("device_networks", &self.device_networks)
            .finish()
    }
}

/// Why an endpoint cannot be turned into a client configuration (a registration problem,
/// not a network one: retrying does not help).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// The pinned fingerprint does not parse.
    #[error(
        "the pinned certificate fingerprint `{0}` is not 64 hex digits; update the device's endpoint"
    )]
    BadFingerprint(String),
    /// The pinned SSH host-key fingerprint does not parse.
    #[error(
        "the pinned SSH host key fingerprint `{0}` is not 64 hex digits; update the device's SSH access"
    )]
    BadSshFingerprint(String),
    /// The stored SSH private key cannot be read (it was checked when it was stored, so
    /// the row or the key library changed since).
    #[error(
        "the device's stored SSH private key cannot be read ({0}); set the device's credentials again with a key in OpenSSH, PKCS#8 or PKCS#1 form"
    )]
    BadSshKey(String),
    /// `TlsVerified` without CA roots configured.
    #[error("the device uses TLS verified against CA roots, but no CA roots are configured")]
    NoCaRoots,
}

/// The client configuration for a device registered at `host:port` over `transport` (the
/// parts of its `netledger_domain::device::Endpoint`, as the poller's work table and the
/// workflows' journaled target hold them), logging in as `username` with `password`: plain
/// API, API-SSL accepting only the pinned certificate, or API-SSL verified against
/// `settings.tls_roots` (server name: the host).
pub fn client_config(
    host: &str,
    port: u16,
    transport: &Transport,
    username: &str,
    password: Password,
    settings: &ClientSettings,
) -> Result<Config, EndpointError> {
    let mut c = Config::new(host.to_owned(), username.to_owned(), password).with_port(port);
    c.connect_timeout = settings.connect_timeout;
    c.command_timeout = settings.command_timeout;
    let policy = settings.device_networks.clone();
    c.address_guard = Some(address_guard(policy));
    match transport {
        Transport::Plain => {}
        Transport::TlsPinned { fingerprint_sha256 } => {
            let fp: Fingerprint = fingerprint_sha256
                .parse()
                .map_err(|_| EndpointError::BadFingerprint(fingerprint_sha256.clone()))?;
            c = c.with_tls(TlsPolicy::PinnedSha256(fp.0));
        }
        Transport::TlsVerified => match &settings.tls_roots {
            Some(roots) => c = c.with_tls(TlsPolicy::Ca((**roots).clone())),
            None => return Err(EndpointError::NoCaRoots),
        },
    }
    Ok(c)
}

/// How a device is logged in to over SSH: with the SSH key its credentials hold
/// (`private_key`, its text) when they hold one, else with the API's password. There is no
/// fallback from a refused key to the password: an operator who stored a key expects it to
/// be the login, and RouterOS refuses password logins for a user with a key by default.
pub fn ssh_auth(
    password: &str,
    private_key: Option<&str>,
) -> Result<routeros_ssh::SshAuth, EndpointError> {
    match private_key {
        None => Ok(routeros_ssh::SshAuth::password(password)),
        Some(text) => ssh_client_key(text).map(routeros_ssh::SshAuth::PublicKey),
    }
}

/// Parses a stored SSH private key's text (unencrypted: Netledger seals it itself).
pub fn ssh_client_key(text: &str) -> Result<routeros_ssh::ClientKey, EndpointError> {
    routeros_ssh::ClientKey::from_text(text, None).map_err(|e| {
        EndpointError::BadSshKey(
            std::error::Error::source(&e).map_or_else(|| e.to_string(), ToString::to_string),
        )
    })
}

/// The SSH client configuration for a device at `host` with SSH access `ssh`, logging in
/// as `username` with `auth` ([`ssh_auth`]: the stored key or the API's password): the
/// pinned host key, or trust on first use when the registration chose it (the caller
/// records the key the session reports and pins it, `DeviceSshHostKeyPinned`), the caller's
/// timeouts and the connect-time address check.
pub fn ssh_config(
    host: &str,
    ssh: &SshAccess,
    username: &str,
    auth: routeros_ssh::SshAuth,
    settings: &ClientSettings,
) -> Result<routeros_ssh::SshConfig, EndpointError> {
    let host_key = ssh_host_key_policy(&ssh.host_key)?;
    let policy = settings.device_networks.clone();
    let mut c = routeros_ssh::SshConfig::new(host, username, auth, host_key)
        .with_port(ssh.port)
        .with_address_guard(routeros_ssh::AddressGuard::new(move |a| {
            policy.check(a.ip(), a.port()).map_err(|e| e.to_string())
        }));
    c.connect_timeout = settings.connect_timeout;
    c.command_timeout = settings.command_timeout;
    Ok(c)
}

/// The SSH configuration for a device whose API client configuration is `api` (same host,
/// login and connect-time address check, built by [`client_config`]), with SSH access
/// `ssh`, logging in with `key` when its credentials hold one (else the API's password), and
/// `command_timeout` per SSH request: for callers that keep only the API configuration and
/// need SSH rarely (the poller, for exports before 7.13).
pub fn ssh_config_for(
    api: &Config,
    ssh: &SshAccess,
    key: Option<&routeros_ssh::ClientKey>,
    command_timeout: std::time::Duration,
) -> Result<routeros_ssh::SshConfig, EndpointError> {
    let host_key = ssh_host_key_policy(&ssh.host_key)?;
    let auth = match key {
        Some(k) => routeros_ssh::SshAuth::PublicKey(k.clone()),
        None => routeros_ssh::SshAuth::password(api.password.expose()),
    };
    let mut c = routeros_ssh::SshConfig::new(api.host.clone(), api.user.clone(), auth, host_key)
        .with_port(ssh.port);
    if let Some(guard) = api.address_guard.clone() {
        c = c.with_address_guard(routeros_ssh::AddressGuard::new(move |a| guard.check(a)));
    }
    c.connect_timeout = api.connect_timeout;
    c.command_timeout = command_timeout;
    Ok(c)
}

fn ssh_host_key_policy(key: &SshHostKey) -> Result<routeros_ssh::HostKeyPolicy, EndpointError> {
    match key {
        SshHostKey::Pinned { fingerprint_sha256 } => fingerprint_sha256
            .parse::<routeros_ssh::HostKeyPolicy>()
            .map_err(|_| EndpointError::BadSshFingerprint(fingerprint_sha256.clone())),
        SshHostKey::FirstUse => Ok(routeros_ssh::HostKeyPolicy::TrustOnFirstUse),
    }
}

/// The guard that refuses addresses `policy` refuses (the reason names the rule and how to
/// allow the address).
pub fn address_guard(policy: DeviceNetworkPolicy) -> AddressGuard {
    AddressGuard::new(move |a| policy.check(a.ip(), a.port()).map_err(|e| e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn settings(roots: bool) -> ClientSettings {
        ClientSettings {
            connect_timeout: Duration::from_secs(2),
            command_timeout: Duration::from_secs(7),
            tls_roots: roots.then(|| Arc::new(rustls::RootCertStore::empty())),
            device_networks: DeviceNetworkPolicy::default(),
        }
    }

    fn config(t: &Transport, roots: bool) -> Result<Config, EndpointError> {
        client_config(
            "10.0.0.1",
            8729,
            t,
            "admin",
            Password::new("pw"),
            &settings(roots),
        )
    }

    #[test]
    fn plain_has_no_tls_and_carries_timeouts() {
        let c = config(&Transport::Plain, false).unwrap();
        assert!(c.tls.is_none());
        assert_eq!(
            (c.host.as_str(), c.port, c.user.as_str()),
            ("10.0.0.1", Some(8729), "admin")
        );
        assert_eq!(c.connect_timeout, Duration::from_secs(2));
        assert_eq!(c.command_timeout, Duration::from_secs(7));
    }

    #[test]
    fn pinned_parses_the_fingerprint() {
        let fp = "ab".repeat(32);
        let c = config(
            &Transport::TlsPinned {
                fingerprint_sha256: fp,
            },
            false,
        )
        .unwrap();
        assert!(matches!(c.tls, Some(TlsPolicy::PinnedSha256(b)) if b == [0xab; 32]));
        let bad = Transport::TlsPinned {
            fingerprint_sha256: "xyz".into(),
        };
        assert_eq!(
            config(&bad, true).unwrap_err(),
            EndpointError::BadFingerprint("xyz".into())
        );
    }

    /// The connect-time check: a host that resolves to loopback (a name, so registration
    /// could not see it) is refused before any byte is sent; an allowed network lets it in.
    #[tokio::test]
    async fn connect_refuses_a_loopback_host_unless_allowed() {
        use netledger_domain::device::network::Cidr;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut s = settings(false);
        let c = client_config(
            "localhost",
            port,
            &Transport::Plain,
            "admin",
            Password::new("pw"),
            &s,
        )
        .unwrap();
        let e = routeros::Client::connect(&c).await.unwrap_err();
        assert!(
            matches!(&e, routeros::Error::AddressRefused { reason, .. } if reason.contains("`loopback` rule")),
            "{e}"
        );
        // Nothing reached the listener.
        let accepted = tokio::time::timeout(Duration::from_millis(50), listener.accept()).await;
        assert!(
            accepted.is_err(),
            "a refused address must not be connected to"
        );

        s.device_networks = DeviceNetworkPolicy::default().allowing([
            Cidr::parse("127.0.0.0/8").unwrap(),
            Cidr::parse("::1").unwrap(),
        ]);
        let c = client_config(
            "localhost",
            port,
            &Transport::Plain,
            "admin",
            Password::new("pw"),
            &s,
        )
        .unwrap();
        let server = tokio::spawn(async move { listener.accept().await.map(|_| ()) });
        // The login fails (nobody answers RouterOS), but the connection was made.
        let _ = tokio::time::timeout(Duration::from_secs(5), routeros::Client::connect(&c)).await;
        tokio::time::timeout(Duration::from_secs(30), server)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    fn pw() -> routeros_ssh::SshAuth {
        ssh_auth("pw", None).unwrap()
    }

    #[test]
    fn ssh_logs_in_with_the_stored_key_when_there_is_one() {
        let pair = russh_keys_for_test();
        let auth = ssh_auth("pw", Some(&pair)).unwrap();
        assert!(matches!(auth, routeros_ssh::SshAuth::PublicKey(_)));
        assert!(matches!(
            ssh_auth("pw", None).unwrap(),
            routeros_ssh::SshAuth::Password(p) if p.expose() == "pw"
        ));
        assert!(matches!(
            ssh_auth("pw", Some("not a key")).unwrap_err(),
            EndpointError::BadSshKey(_)
        ));
        let api = config(&Transport::Plain, false).unwrap();
        let ssh = SshAccess {
            port: 22,
            host_key: SshHostKey::FirstUse,
        };
        let key = routeros_ssh::ClientKey::from_text(&pair, None).unwrap();
        let c = ssh_config_for(&api, &ssh, Some(&key), Duration::from_secs(60)).unwrap();
        assert!(matches!(&c.auth, routeros_ssh::SshAuth::PublicKey(_)));
    }

    /// An Ed25519 private key in OpenSSH form (fixed seed).
    fn russh_keys_for_test() -> String {
        use russh::keys::ssh_key::{LineEnding, private};
        let pair = private::Ed25519Keypair::from_seed(&[7; 32]);
        russh::keys::PrivateKey::new(private::KeypairData::Ed25519(pair), "test")
            .unwrap()
            .to_openssh(LineEnding::LF)
            .unwrap()
            .to_string()
    }

    #[test]
    fn ssh_pins_the_registered_key_or_trusts_on_first_use_and_carries_timeouts() {
        let fp = "ab".repeat(32);
        let pinned = SshAccess {
            port: 2222,
            host_key: SshHostKey::Pinned {
                fingerprint_sha256: fp,
            },
        };
        let c = ssh_config("10.0.0.1", &pinned, "admin", pw(), &settings(false)).unwrap();
        assert_eq!(
            c.host_key,
            routeros_ssh::HostKeyPolicy::PinnedSha256([0xab; 32])
        );
        assert_eq!((c.port, c.username.as_str()), (2222, "admin"));
        assert_eq!(c.connect_timeout, Duration::from_secs(2));
        assert_eq!(c.command_timeout, Duration::from_secs(7));
        assert!(c.address_guard.is_some());
        let first = SshAccess {
            port: 22,
            host_key: SshHostKey::FirstUse,
        };
        let c = ssh_config("10.0.0.1", &first, "admin", pw(), &settings(false)).unwrap();
        assert_eq!(c.host_key, routeros_ssh::HostKeyPolicy::TrustOnFirstUse);
        let bad = SshAccess {
            port: 22,
            host_key: SshHostKey::Pinned {
                fingerprint_sha256: "xyz".into(),
            },
        };
        assert_eq!(
            ssh_config("10.0.0.1", &bad, "admin", pw(), &settings(false)).unwrap_err(),
            EndpointError::BadSshFingerprint("xyz".into())
        );
    }

    #[test]
    fn ssh_from_the_api_configuration_keeps_login_guard_and_timeouts() {
        let api = config(&Transport::Plain, false).unwrap();
        let ssh = SshAccess {
            port: 22,
            host_key: SshHostKey::FirstUse,
        };
        let c = ssh_config_for(&api, &ssh, None, Duration::from_secs(60)).unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.username.as_str()),
            ("10.0.0.1", 22, "admin")
        );
        assert!(matches!(&c.auth, routeros_ssh::SshAuth::Password(p) if p.expose() == "pw"));
        assert_eq!(c.connect_timeout, Duration::from_secs(2));
        assert_eq!(c.command_timeout, Duration::from_secs(60));
        assert!(c.address_guard.is_some());
        assert_eq!(c.host_key, routeros_ssh::HostKeyPolicy::TrustOnFirstUse);
    }

    #[test]
    fn verified_uses_the_ca_roots_or_is_refused_without() {
        let c = config(&Transport::TlsVerified, true).unwrap();
        assert!(matches!(c.tls, Some(TlsPolicy::Ca(_))));
        assert_eq!(
            config(&Transport::TlsVerified, false).unwrap_err(),
            EndpointError::NoCaRoots
        );
    }
}
