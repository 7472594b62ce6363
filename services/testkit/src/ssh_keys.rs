//! SSH client keys for tests and the demo fleet: an Ed25519 key derived from a seed, as the
//! private key's OpenSSH text (what an operator gives with credentials) and its public half
//! (what the API derives from it and devsim authorizes).

use netledger_domain::device::SshClientKey;
use netledger_store::credentials::DeviceSshKey;
use netledger_store::devices::NewSshKey;
use russh::keys::ssh_key::{LineEnding, private};
use sha2::Digest as _;

/// The Ed25519 key of `seed` (deterministic: the same seed gives the same key), or why it
/// could not be encoded.
pub fn ssh_client_key(seed: &str) -> anyhow::Result<NewSshKey> {
    let secret: [u8; 32] = sha2::Sha256::digest(format!("netledger-test-ssh-key/{seed}")).into();
    let pair = private::Ed25519Keypair::from_seed(&secret);
    let key = russh::keys::PrivateKey::new(private::KeypairData::Ed25519(pair), seed)?;
    let text = key.to_openssh(LineEnding::LF)?.to_string();
    let public = key.public_key();
    let wire = public.to_bytes()?;
    Ok(NewSshKey {
        private: DeviceSshKey::new(text),
        public: SshClientKey {
            algorithm: public.algorithm().as_str().to_owned(),
            fingerprint_sha256: hex::encode(sha2::Sha256::digest(&wire)),
            public_key: public.to_openssh()?,
        },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keys_are_deterministic_per_seed_and_printed_in_openssh_form() {
        let a = ssh_client_key("a").unwrap();
        assert_eq!(a.public, ssh_client_key("a").unwrap().public);
        assert_ne!(a.public, ssh_client_key("b").unwrap().public);
        assert!(a.public.public_key.starts_with("ssh-ed25519 AAAA"));
        assert!(
            a.private
                .expose()
                .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----")
        );
        assert_eq!(a.public.fingerprint_sha256.len(), 64);
    }
}
