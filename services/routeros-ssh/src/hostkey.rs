//! SSH host-key trust: SHA-256 pinning and explicit trust-on-first-use.
//!
//! A fingerprint is the SHA-256 of the host public key in SSH wire encoding (the key blob
//! of RFC 4253 §6.6), the value OpenSSH prints as `SHA256:<base64 without padding>` and
//! devsim's manifest lists as lowercase hex. Both forms parse ([`Fingerprint`]'s
//! `FromStr`); [`Fingerprint`] displays in the OpenSSH form, [`Fingerprint::to_hex`] gives
//! the hex one.
//!
//! Trusting an unknown key is only possible by choosing [`HostKeyPolicy::TrustOnFirstUse`],
//! and even then the session reports the key it accepted ([`crate::SshSession::host_key`],
//! [`Trust::FirstUse`]) so the caller records it and pins it from then on. russh checks the
//! key-exchange signature against the presented key before asking the policy, so a pinned key
//! cannot be replayed without its private half.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use russh::keys::{PublicKey, PublicKeyOrCertificate};
use sha2::{Digest, Sha256};

/// SHA-256 of an SSH public key's wire encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a key blob in SSH wire encoding.
    pub fn of_wire(blob: &[u8]) -> Self {
        Fingerprint(Sha256::digest(blob).into())
    }

    /// The fingerprint of a public key; `None` if the key cannot be encoded (it always can
    /// for keys russh parsed off the wire).
    pub fn of_key(key: &PublicKey) -> Option<Self> {
        key.to_bytes().ok().map(|blob| Self::of_wire(&blob))
    }

    /// Lowercase hex, 64 characters (the form devsim's manifest uses).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Fingerprint {
    /// OpenSSH form: `SHA256:` and the unpadded base64 of the digest (43 characters).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SHA256:{}", STANDARD_NO_PAD.encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// A fingerprint string in neither accepted form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "not an SSH host key SHA-256 fingerprint (64 hex digits, or SHA256: and 43 base64 characters)"
)]
pub struct FingerprintParseError;

impl FromStr for Fingerprint {
    type Err = FingerprintParseError;

    /// Accepts `SHA256:<base64>` (padding optional), or 64 hex digits in either case,
    /// optionally separated by `:`. Surrounding whitespace is ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let mut out = [0u8; 32];
        if let Some(b64) = s.strip_prefix("SHA256:") {
            let bytes = STANDARD_NO_PAD
                .decode(b64.trim_end_matches('='))
                .map_err(|_| FingerprintParseError)?;
            out = bytes.try_into().map_err(|_| FingerprintParseError)?;
        } else {
            let digits: String = s.chars().filter(|&c| c != ':').collect();
            hex::decode_to_slice(digits, &mut out).map_err(|_| FingerprintParseError)?;
        }
        Ok(Fingerprint(out))
    }
}

/// How to trust the device's SSH host key. There is no default: every caller chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Accept exactly the host key with this SHA-256 fingerprint ([`Fingerprint`]).
    PinnedSha256([u8; 32]),
    /// Accept whatever key is presented and report it ([`HostKey`] with
    /// [`Trust::FirstUse`]) so the caller records and pins it. Never silent.
    TrustOnFirstUse,
}

impl HostKeyPolicy {
    /// Pins this fingerprint.
    pub fn pinned(fingerprint: Fingerprint) -> Self {
        HostKeyPolicy::PinnedSha256(fingerprint.0)
    }
}

impl FromStr for HostKeyPolicy {
    type Err = FingerprintParseError;

    /// A pin, in either [`Fingerprint`] form.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(HostKeyPolicy::pinned)
    }
}

/// How the session's host key came to be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// It matched the pinned fingerprint.
    Pinned,
    /// Accepted on first use: record [`HostKey::fingerprint_sha256`] and pin it.
    FirstUse,
}

/// The host key the device presented on this session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKey {
    /// SHA-256 of its wire encoding.
    pub fingerprint_sha256: [u8; 32],
    /// Its algorithm name (`ssh-ed25519`, `ssh-rsa`, `ecdsa-sha2-nistp256`).
    pub algorithm: String,
    /// Why it was accepted.
    pub trust: Trust,
}

impl HostKey {
    /// The fingerprint as a [`Fingerprint`] (display and hex forms).
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint(self.fingerprint_sha256)
    }
}

/// What the handler saw during key exchange; read back after `connect_stream` returns,
/// whether it succeeded or not.
#[derive(Debug, Clone, Default)]
pub(crate) struct Seen {
    /// Fingerprint and algorithm of the presented key.
    pub key: Option<(Fingerprint, String)>,
    /// The device presented an OpenSSH host certificate (not supported).
    pub certificate: bool,
}

/// russh client handler: records the presented key, then applies the policy.
pub(crate) struct Handler {
    pub policy: HostKeyPolicy,
    pub seen: Arc<Mutex<Seen>>,
}

impl Handler {
    fn record(&self, f: impl FnOnce(&mut Seen)) {
        f(&mut self.seen.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

impl russh::client::Handler for Handler {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match server_public_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key,
            // Certificates are not offered (no `host_key_certificates` preference); a device
            // sending one anyway is refused rather than trusted by the CA it names.
            PublicKeyOrCertificate::Certificate(_) => {
                self.record(|s| s.certificate = true);
                return Ok(false);
            }
        };
        let Some(fingerprint) = Fingerprint::of_key(key) else {
            return Ok(false);
        };
        let algorithm = key.algorithm().as_str().to_owned();
        self.record(|s| s.key = Some((fingerprint, algorithm)));
        Ok(match self.policy {
            HostKeyPolicy::PinnedSha256(pin) => pin == fingerprint.0,
            HostKeyPolicy::TrustOnFirstUse => true,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_hex_and_openssh_forms_to_the_same_fingerprint() {
        let fp = Fingerprint(core::array::from_fn(|i| (i * 7 + 3) as u8));
        let hex = fp.to_hex();
        assert_eq!(hex.len(), 64);
        assert_eq!(hex.parse::<Fingerprint>(), Ok(fp));
        assert_eq!(hex.to_uppercase().parse::<Fingerprint>(), Ok(fp));
        let colons =
            fp.0.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":");
        assert_eq!(colons.parse::<Fingerprint>(), Ok(fp));
        let openssh = fp.to_string();
        assert!(openssh.starts_with("SHA256:"));
        assert_eq!(openssh.len(), "SHA256:".len() + 43);
        assert_eq!(openssh.parse::<Fingerprint>(), Ok(fp));
        assert_eq!(format!("{openssh}=").parse::<Fingerprint>(), Ok(fp));
        assert_eq!(format!("  {openssh}\n").parse::<Fingerprint>(), Ok(fp));
        assert_eq!(
            hex.parse::<HostKeyPolicy>(),
            Ok(HostKeyPolicy::PinnedSha256(fp.0))
        );
        assert_eq!(
            openssh.parse::<HostKeyPolicy>(),
            Ok(HostKeyPolicy::PinnedSha256(fp.0))
        );
    }

    #[test]
    fn rejects_other_strings() {
        for bad in [
            "",
            "abcd",
            "SHA256:",
            "SHA256:AAAA",
            "SHA1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "sha256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "MD5:00:11:22",
        ] {
            assert_eq!(
                bad.parse::<Fingerprint>(),
                Err(FingerprintParseError),
                "{bad}"
            );
        }
        assert_eq!(
            "zz".repeat(32).parse::<Fingerprint>(),
            Err(FingerprintParseError)
        );
        assert_eq!(
            "00".repeat(33).parse::<Fingerprint>(),
            Err(FingerprintParseError)
        );
    }

    /// The OpenSSH form of a known key: `ssh-keygen -lf` on this line prints
    /// `256 SHA256:... (ED25519)`; the value below is the digest of its decoded blob, so the
    /// test pins the definition (hash of the wire blob, unpadded standard base64).
    #[test]
    fn fingerprint_is_sha256_of_the_wire_blob() {
        let line =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
        let key = PublicKey::from_openssh(line).unwrap();
        let blob = base64::engine::general_purpose::STANDARD
            .decode("AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl")
            .unwrap();
        assert_eq!(Fingerprint::of_key(&key), Some(Fingerprint::of_wire(&blob)));
        // ssh-key's own OpenSSH fingerprint agrees with ours.
        assert_eq!(
            Fingerprint::of_wire(&blob).to_string(),
            key.fingerprint(Default::default()).to_string()
        );
    }
}
