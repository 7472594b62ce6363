//! How to reach and log in to one router over SSH: [`SshConfig`], credentials
//! ([`SshAuth`], [`Password`], [`ClientKey`]) and the [`AddressGuard`].
//!
//! Secrets never appear in `Debug` output. A [`Password`] is overwritten when dropped (best
//! effort: russh keeps its own copy while it authenticates); a [`ClientKey`]'s private half is
//! zeroized by `ssh-key` when the last clone is dropped.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::error::SshError;
use crate::hostkey::{Fingerprint, HostKeyPolicy};

/// A password that never appears in `Debug` output and is overwritten on drop.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wraps a password.
    pub fn new(password: impl Into<String>) -> Self {
        Self(password.into())
    }

    /// The clear text, to put on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl Drop for Password {
    fn drop(&mut self) {
        let mut bytes = std::mem::take(&mut self.0).into_bytes();
        bytes.iter_mut().for_each(|b| *b = 0);
        // Keep the writes from being optimised away as dead stores before the free.
        std::hint::black_box(&bytes);
    }
}

/// A client private key for public-key login, parsed once from its text.
#[derive(Clone)]
pub struct ClientKey(Arc<russh::keys::PrivateKey>);

impl ClientKey {
    /// Parses a private key: OpenSSH (`BEGIN OPENSSH PRIVATE KEY`), PKCS#8, PKCS#1 RSA or
    /// PuTTY text, decrypting it with `passphrase` when it is encrypted.
    pub fn from_text(text: &str, passphrase: Option<&str>) -> Result<Self, SshError> {
        russh::keys::decode_secret_key(text, passphrase)
            .map(|k| ClientKey(Arc::new(k)))
            .map_err(|source| SshError::InvalidKey { source })
    }

    /// The public half as an OpenSSH `authorized_keys` line (`ssh-ed25519 AAAA… comment`),
    /// what RouterOS `/user ssh-keys import` takes.
    pub fn public_key_openssh(&self) -> Result<String, SshError> {
        self.0
            .public_key()
            .to_openssh()
            .map_err(|e| SshError::InvalidKey { source: e.into() })
    }

    /// The key's algorithm name (`ssh-ed25519`, `ssh-rsa`).
    pub fn algorithm(&self) -> String {
        self.0.algorithm().as_str().to_owned()
    }

    /// The SHA-256 fingerprint of the public half (what `ssh-keygen -l` prints as
    /// `SHA256:…`); `None` only if the key cannot be encoded, which a parsed key always can.
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        Fingerprint::of_key(self.0.public_key())
    }

    pub(crate) fn inner(&self) -> Arc<russh::keys::PrivateKey> {
        self.0.clone()
    }
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let public = Fingerprint::of_key(self.0.public_key());
        f.debug_struct("ClientKey")
            .field("algorithm", &self.0.algorithm().as_str())
            .field("public", &public)
            .finish_non_exhaustive()
    }
}

/// How to authenticate.
#[derive(Debug, Clone)]
pub enum SshAuth {
    /// SSH `password` authentication.
    Password(Password),
    /// SSH `publickey` authentication with this key (RSA keys sign with the best hash the
    /// device announces, SHA-1 `ssh-rsa` when it announces none, as RouterOS 6 does not).
    PublicKey(ClientKey),
}

impl SshAuth {
    /// Password authentication.
    pub fn password(password: impl Into<String>) -> Self {
        SshAuth::Password(Password::new(password))
    }

    /// Public-key authentication with a key given as text (see [`ClientKey::from_text`]).
    pub fn public_key(text: &str, passphrase: Option<&str>) -> Result<Self, SshError> {
        ClientKey::from_text(text, passphrase).map(SshAuth::PublicKey)
    }
}

/// Decides whether the client may connect to one address its host resolved to: `Err` with
/// the reason refuses that address. The session applies it to every resolved address and
/// connects only to the addresses it accepted (no second resolution). It has the shape of
/// `routeros::AddressGuard`, so the same check serves both clients:
/// `AddressGuard::new(move |a| api_guard.check(a))`.
#[derive(Clone)]
pub struct AddressGuard(Arc<dyn Fn(SocketAddr) -> Result<(), String> + Send + Sync>);

impl AddressGuard {
    /// A guard running `check` on each resolved address.
    pub fn new(check: impl Fn(SocketAddr) -> Result<(), String> + Send + Sync + 'static) -> Self {
        Self(Arc::new(check))
    }

    /// Runs the check.
    pub fn check(&self, addr: SocketAddr) -> Result<(), String> {
        (self.0)(addr)
    }
}

impl fmt::Debug for AddressGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AddressGuard(..)")
    }
}

/// How to reach and log in to one router over SSH, and the bounds on what it may send.
#[derive(Debug, Clone)]
pub struct SshConfig {
    /// Host name or IP address.
    pub host: String,
    /// TCP port (default [`SshConfig::DEFAULT_PORT`]).
    pub port: u16,
    /// User name.
    pub username: String,
    /// Credentials.
    pub auth: SshAuth,
    /// How the device's host key is trusted.
    pub host_key: HostKeyPolicy,
    /// Bound on connecting: name resolution, TCP connect, key exchange and authentication
    /// together.
    pub connect_timeout: Duration,
    /// Bound on one command from opening its channel to its close, and on each SFTP
    /// request (open, stat, remove, close, each chunk of a transfer).
    pub command_timeout: Duration,
    /// Most bytes one command may print (stdout and stderr together); past it the command
    /// fails with [`SshError::OutputTooLarge`].
    pub max_output: usize,
    /// Most bytes of one downloaded file; past it the read fails with
    /// [`SshError::FileTooLarge`].
    pub max_file: u64,
    /// Slowest whole-transfer rate tolerated, in bytes per second: a transfer of `n` bytes
    /// must finish within `command_timeout + n / min_transfer_rate` even when every chunk
    /// arrives in time.
    pub min_transfer_rate: u64,
    /// Checks every address the host resolves to before connecting; `None` connects to any.
    pub address_guard: Option<AddressGuard>,
}

impl SshConfig {
    /// The SSH port RouterOS listens on unless `/ip service` moves it.
    pub const DEFAULT_PORT: u16 = 22;
    /// Default [`SshConfig::connect_timeout`].
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default [`SshConfig::command_timeout`].
    pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
    /// Default [`SshConfig::max_output`]: 16 MiB (exports of the largest configurations
    /// seen are a few MiB).
    pub const DEFAULT_MAX_OUTPUT: usize = 16 << 20;
    /// Default [`SshConfig::max_file`]: 256 MiB (backups and RouterOS packages are tens of
    /// MiB).
    pub const DEFAULT_MAX_FILE: u64 = 256 << 20;
    /// Default [`SshConfig::min_transfer_rate`]: 64 KiB/s.
    pub const DEFAULT_MIN_TRANSFER_RATE: u64 = 64 << 10;

    /// Port 22, the default timeouts and bounds, no address guard.
    pub fn new(
        host: impl Into<String>,
        username: impl Into<String>,
        auth: SshAuth,
        host_key: HostKeyPolicy,
    ) -> Self {
        Self {
            host: host.into(),
            port: Self::DEFAULT_PORT,
            username: username.into(),
            auth,
            host_key,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            command_timeout: Self::DEFAULT_COMMAND_TIMEOUT,
            max_output: Self::DEFAULT_MAX_OUTPUT,
            max_file: Self::DEFAULT_MAX_FILE,
            min_transfer_rate: Self::DEFAULT_MIN_TRANSFER_RATE,
            address_guard: None,
        }
    }

    /// Sets the port.
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Sets the address guard.
    pub fn with_address_guard(mut self, guard: AddressGuard) -> Self {
        self.address_guard = Some(guard);
        self
    }

    /// `host:port`, as errors name it (IPv6 literals in brackets).
    pub fn addr(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = SshConfig::new(
            "10.0.0.1",
            "admin",
            SshAuth::password("pw"),
            HostKeyPolicy::TrustOnFirstUse,
        );
        assert_eq!(c.port, 22);
        assert_eq!(c.connect_timeout, Duration::from_secs(10));
        assert_eq!(c.command_timeout, Duration::from_secs(30));
        assert_eq!(c.max_output, 16 * 1024 * 1024);
        assert_eq!(c.max_file, 256 * 1024 * 1024);
        assert_eq!(c.min_transfer_rate, 64 * 1024);
        assert!(c.address_guard.is_none());
        assert_eq!(c.addr(), "10.0.0.1:22");
        assert_eq!(c.clone().with_port(2222).addr(), "10.0.0.1:2222");
        let v6 = SshConfig {
            host: "fe80::1".into(),
            ..c
        };
        assert_eq!(v6.addr(), "[fe80::1]:22");
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let c = SshConfig::new(
            "h",
            "admin",
            SshAuth::password("hunter2"),
            HostKeyPolicy::TrustOnFirstUse,
        );
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("Password(<redacted>)"), "{shown}");
    }

    #[test]
    fn client_key_parses_openssh_text_and_hides_the_private_half() {
        // An unencrypted Ed25519 key (generated for this test only).
        let seed = [7u8; 32];
        let pair = russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&seed);
        let key = russh::keys::PrivateKey::new(
            russh::keys::ssh_key::private::KeypairData::Ed25519(pair),
            "test",
        )
        .unwrap();
        let text = key
            .to_openssh(russh::keys::ssh_key::LineEnding::LF)
            .unwrap();
        let parsed = ClientKey::from_text(&text, None).unwrap();
        assert_eq!(parsed.algorithm(), "ssh-ed25519");
        assert_eq!(
            parsed.fingerprint().unwrap(),
            Fingerprint::of_key(key.public_key()).unwrap()
        );
        let line = parsed.public_key_openssh().unwrap();
        assert!(line.starts_with("ssh-ed25519 AAAA"), "{line}");
        let shown = format!("{parsed:?}");
        assert!(shown.contains("SHA256:"), "{shown}");
        assert!(!shown.contains("OPENSSH PRIVATE KEY"), "{shown}");
        let e = ClientKey::from_text("not a key", None).unwrap_err();
        assert!(matches!(e, SshError::InvalidKey { .. }), "{e}");
    }

    /// The three private-key forms the platform accepts (keys written by `ssh-keygen`, in
    /// `testdata/`) parse, with their algorithm and a fingerprint.
    #[test]
    fn openssh_pkcs1_and_pkcs8_keys_parse() {
        for (text, algorithm) in [
            (
                include_str!("../testdata/ed25519-openssh.key"),
                "ssh-ed25519",
            ),
            (include_str!("../testdata/rsa-pkcs1.pem"), "ssh-rsa"),
            (
                include_str!("../testdata/ecdsa-pkcs8.pem"),
                "ecdsa-sha2-nistp256",
            ),
        ] {
            let key = ClientKey::from_text(text, None).unwrap();
            assert_eq!(key.algorithm(), algorithm);
            assert!(key.fingerprint().is_some());
            assert!(key.public_key_openssh().unwrap().starts_with(algorithm));
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        /// Whatever an operator pastes as a private key (the API parses it on input) is a
        /// key or an `InvalidKey`, never a panic: arbitrary text, and arbitrary bytes
        /// dressed as each PEM form the parser tries.
        #[test]
        fn key_text_never_panics(
            text in "\\PC{0,300}",
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
            form in 0usize..4,
        ) {
            use base64::Engine as _;
            let _ = ClientKey::from_text(&text, None);
            let label = ["OPENSSH PRIVATE KEY", "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"][form];
            let body = base64::engine::general_purpose::STANDARD.encode(&bytes);
            let pem = format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----\n");
            let _ = ClientKey::from_text(&pem, None);
            let _ = ClientKey::from_text(&pem, Some("pass"));
            // a real key's body with bytes flipped
            let seed = [bytes.first().copied().unwrap_or(1); 32];
            let pair = russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&seed);
            let key = russh::keys::PrivateKey::new(
                russh::keys::ssh_key::private::KeypairData::Ed25519(pair),
                "t",
            )
            .unwrap();
            let good = key.to_openssh(russh::keys::ssh_key::LineEnding::LF).unwrap().to_string();
            let mut raw: Vec<u8> = good.into_bytes();
            for (i, b) in bytes.iter().enumerate().take(8) {
                let at = 40 + (usize::from(*b) * 7 + i * 13) % (raw.len() - 80);
                raw[at] = b"AZaz09+/"[usize::from(*b) % 8];
            }
            let _ = ClientKey::from_text(&String::from_utf8_lossy(&raw), None);
        }
    }

    #[test]
    fn guard_runs_its_check() {
        let g = AddressGuard::new(|a| {
            if a.ip().is_loopback() {
                Err("loopback".into())
            } else {
                Ok(())
            }
        });
        assert_eq!(
            g.check(SocketAddr::from(([127, 0, 0, 1], 22))),
            Err("loopback".into())
        );
        assert_eq!(g.check(SocketAddr::from(([10, 0, 0, 1], 22))), Ok(()));
    }
}
