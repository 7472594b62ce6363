//! `netledger keys ...`: `init` generates every secret a production installation needs, one
//! file per secret, each read by its role through a `*_FILE` variable (Docker and Kubernetes
//! secrets; nothing is overwritten: an existing file is an error naming it);
//! `rotate-credentials` re-encrypts what the credential keys sealed under the current key;
//! `rotate-audit-key` replaces the checkpoint signing key in such a folder, keeping every
//! earlier public key trusted by its key id.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::Engine as _;
use ed25519_dalek::SigningKey;
use rand::RngCore as _;

/// One generated file: its name, what it is, the variable that reads it and the roles that
/// need it.
#[derive(Debug, Clone, Copy)]
pub struct KeyFile {
    /// File name inside the output folder.
    pub name: &'static str,
    /// The variable that reads it (`<VAR>` = the path).
    pub variable: &'static str,
    /// The roles that need it.
    pub roles: &'static str,
}

/// The files `keys init` writes, in order.
pub const FILES: &[KeyFile] = &[
    KeyFile {
        name: "jwt-secret",
        variable: "NETLEDGER_API_JWT_SECRET_FILE",
        roles: "api",
    },
    KeyFile {
        name: "credential-keys",
        variable: "NETLEDGER_SECRETS_CREDENTIAL_KEYS_FILE",
        roles: "api, worker, poller",
    },
    KeyFile {
        name: "credential-key-id",
        variable: "NETLEDGER_SECRETS_CURRENT_CREDENTIAL_KEY_FILE",
        roles: "api, worker, poller",
    },
    KeyFile {
        name: "audit-signing.key",
        variable: "NETLEDGER_AUDIT_SIGNING_KEY_FILE",
        roles: "projector",
    },
    KeyFile {
        name: "audit-signing.pub",
        variable: "NETLEDGER_AUDIT_VERIFYING_KEY_FILE",
        roles: "api (and your auditors)",
    },
    KeyFile {
        name: "audit-key-id",
        variable: "NETLEDGER_AUDIT_KEY_ID_FILE",
        roles: "projector",
    },
    KeyFile {
        name: "database-password",
        variable: "NETLEDGER_DATABASE_PASSWORD_FILE",
        roles: "migrate (the schema owner; also the PostgreSQL server's POSTGRES_PASSWORD_FILE)",
    },
    KeyFile {
        name: "app-db-password",
        variable: "NETLEDGER_APP_DB_PASSWORD_FILE",
        roles: "migrate (sets it), and the URL of api, worker, poller",
    },
    KeyFile {
        name: "system-db-password",
        variable: "NETLEDGER_SYSTEM_DB_PASSWORD_FILE",
        roles: "migrate (sets it), and the URL of api, worker, poller, projector",
    },
    KeyFile {
        name: "bootstrap-admin-password",
        variable: "NETLEDGER_BOOTSTRAP_ADMIN_PASSWORD_FILE",
        roles: "api (the first administrator, created at the first start)",
    },
];

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

/// The texts of every file of [`FILES`], freshly generated (key ids carry a random suffix
/// so that a later rotation never reuses one).
pub fn generate() -> Vec<(&'static KeyFile, String)> {
    let mut credential = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut credential);
    let credential_id = format!("cred-{}", random_hex(4));
    let signing = SigningKey::generate(&mut rand::rngs::OsRng);
    let audit_id = format!("audit-{}", random_hex(4));
    let texts = [
        random_hex(32),
        format!(
            "{credential_id}={}",
            base64::engine::general_purpose::STANDARD.encode(credential)
        ),
        credential_id,
        hex::encode(signing.to_bytes()),
        // Named by its key id: rotation adds the next key beside it.
        format!(
            "{audit_id}={}",
            hex::encode(signing.verifying_key().to_bytes())
        ),
        audit_id,
        // Hex: safe inside a PostgreSQL URL without escaping.
        random_hex(24),
        random_hex(24),
        random_hex(24),
        random_hex(12),
    ];
    FILES.iter().zip(texts).collect()
}

/// Writes every file of [`FILES`] into `dir` (created 0700 if missing; files 0600, newline
/// terminated). Refuses before writing anything when one of them exists already.
pub fn init(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if let Some(existing) = FILES.iter().map(|f| dir.join(f.name)).find(|p| p.exists()) {
        anyhow::bail!(
            "{} exists already; keys init never overwrites a key (move the folder away, or \
             rotate keys instead)",
            existing.display()
        );
    }
    create_private_dir(dir)?;
    let mut written = Vec::new();
    for (file, text) in generate() {
        let path = dir.join(file.name);
        write_private(&path, &format!("{text}\n"))?;
        written.push(path);
    }
    Ok(written)
}

/// `keys rotate-credentials`: everything sealed with the credential keys re-encrypted under
/// the current one (`netledger_netops::workflows::rotate_all`), as actor `system:keys`.
pub async fn rotate_credentials(
    pools: &netledger_store::Pools,
    archive: &netledger_archive::Archive,
    keys: &netledger_store::credentials::CredentialKeys,
) -> anyhow::Result<netledger_netops::workflows::KeyRotation> {
    let meta = netledger_domain::EventMetadata::for_command(
        netledger_domain::Actor::system("keys"),
        uuid::Uuid::new_v4(),
    );
    Ok(
        netledger_netops::workflows::rotate_all(&pools.app, &pools.system, archive, keys, meta)
            .await?,
    )
}

/// What [`rotate_audit_key`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditKeyRotation {
    /// The key id checkpoints were signed with until now.
    pub old_id: String,
    /// The new key id.
    pub new_id: String,
    /// Every key id `audit-signing.pub` trusts now.
    pub trusted: Vec<String>,
}

/// `keys rotate-audit-key`: in a folder `keys init` wrote, generates a new audit signing key
/// and key id, replaces `audit-signing.key` and `audit-key-id` with them and adds the new
/// public key to `audit-signing.pub` next to every earlier one, each as `<key id>=<hex>`
/// (a bare key from before is named by the old key id), and writes the old key's hand-over
/// to the new one into the new key file (`docs/auditing.md` §6). Each file is replaced atomically
/// (written 0600 beside it, then renamed); the old private key is gone afterwards.
/// Checkpoints already signed keep their key id and verify with the list.
pub fn rotate_audit_key(dir: &Path) -> anyhow::Result<AuditKeyRotation> {
    use netledger_domain::audit::TrustedKeys;
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {}; rotate-audit-key works on the folder `netledger keys init` wrote",
                path.display()
            )
        })
    };
    let old_id = read("audit-key-id")?.trim().to_owned();
    let old_key = crate::roles::signing_key_from_text(&read("audit-signing.key")?)
        .context("audit-signing.key")?;
    let trusted = TrustedKeys::parse(&read("audit-signing.pub")?)
        .map_err(|e| anyhow::anyhow!("audit-signing.pub: {e}"))?
        .naming_any(&old_id);
    if trusted.get(&old_id) != Some(&old_key.verifying_key()) {
        anyhow::bail!(
            "audit-signing.pub does not trust the public key of audit-signing.key under the key \
             id `{old_id}` (audit-key-id); the folder is inconsistent: fix it before rotating"
        );
    }
    let new_id = loop {
        let id = format!("audit-{}", random_hex(4));
        if trusted.get(&id).is_none() {
            break id;
        }
    };
    let new_key = SigningKey::generate(&mut rand::rngs::OsRng);
    let trusted = trusted
        .with(&new_id, new_key.verifying_key())
        .map_err(anyhow::Error::msg)?;
    // Trust first (harmless on its own), then the key, then its id.
    replace_private(&dir.join("audit-signing.pub"), &trusted.to_text())?;
    // The new key file carries the old key's hand-over to it (signed by both; the old
    // private key is gone afterwards): the checkpointer attaches it to the first checkpoint
    // the new key signs, so auditors who pinned the old key trust the new one.
    let handover = netledger_domain::audit::Handover::sign(
        &old_id,
        &old_key,
        &new_id,
        &new_key,
        netledger_domain::clock::Clock::now(&crate::clock::SystemClock),
    );
    let handover = serde_json::to_string(&handover).context("encoding the hand-over")?;
    replace_private(
        &dir.join("audit-signing.key"),
        &format!("{}\nhandover={handover}\n", hex::encode(new_key.to_bytes())),
    )?;
    replace_private(&dir.join("audit-key-id"), &format!("{new_id}\n"))?;
    Ok(AuditKeyRotation {
        old_id,
        new_id,
        trusted: trusted.ids().map(str::to_owned).collect(),
    })
}

/// Replaces `path` atomically with a new 0600 file holding `text`.
fn replace_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", random_hex(4)));
    write_private(&tmp, text)?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    let created = {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
    };
    #[cfg(not(unix))]
    let created = std::fs::create_dir_all(dir);
    created.with_context(|| format!("creating {}", dir.display()))
}

/// Writes a new file readable by its owner only (0600); refuses to replace an existing one.
/// Synced before it returns. Every key and secret this binary writes goes through here.
pub(crate) fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    file.sync_all()
        .with_context(|| format!("syncing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::config::Config;

    /// Each file of [`FILES`] in `dir` given through its variable, in production mode.
    fn production_env(dir: &Path) -> Vec<(String, String)> {
        FILES
            .iter()
            .map(|f| {
                (
                    f.variable.to_owned(),
                    dir.join(f.name).display().to_string(),
                )
            })
            .chain([("NETLEDGER_PRODUCTION".to_owned(), "true".to_owned())])
            .collect()
    }

    /// The generated files are what a production configuration reads: loading them through
    /// their `*_FILE` variables gives a configuration whose keys work together.
    #[test]
    fn init_writes_keys_a_production_config_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("secrets");
        let written = init(&out).unwrap();
        assert_eq!(written.len(), FILES.len());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            for p in &written {
                let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", p.display());
            }
        }
        let mut env = production_env(&out);
        env.push(("NETLEDGER_LISTEN".into(), "0.0.0.0:8080".into()));
        let config = Config::load(None, env).unwrap();
        // The token secret is long enough for a non-loopback listener in production.
        crate::config::api_config(&config).unwrap();
        let keys = crate::config::credential_keys(&config).unwrap();
        assert!(keys.current_key_id().starts_with("cred-"));
        let (tenant, device) = (
            netledger_domain::TenantId::new_random(),
            netledger_domain::DeviceId::new_random(),
        );
        let sealed = keys.seal(tenant, device, "device password").unwrap();
        assert_eq!(
            keys.open(tenant, device, &sealed).unwrap().expose(),
            "device password"
        );
        let signing = crate::roles::signing_key(&config).unwrap();
        assert_eq!(
            crate::roles::verifying_key(&config)
                .unwrap()
                .get(&config.audit.key_id),
            Some(&signing.verifying_key())
        );
        assert!(config.audit.key_id.starts_with("audit-"));
        assert_eq!(config.app_db_password.as_ref().unwrap().expose().len(), 48);
        crate::roles::refuse_development_keys_off_loopback(&config).unwrap();
        // A second run refuses, naming the file, and changes nothing.
        let before = std::fs::read(out.join("jwt-secret")).unwrap();
        let err = init(&out).unwrap_err().to_string();
        assert!(
            err.contains("jwt-secret") && err.contains("never overwrites"),
            "{err}"
        );
        assert_eq!(std::fs::read(out.join("jwt-secret")).unwrap(), before);
    }

    /// Rotation in a `keys init` folder: a new key and id; the public list keeps the old key
    /// under its id and adds the new one; production configuration loads the result; a
    /// folder whose list does not hold the signing key's public half is refused untouched.
    #[test]
    fn rotate_audit_key_replaces_the_key_and_keeps_the_old_one_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("secrets");
        init(&out).unwrap();
        let old_key = std::fs::read_to_string(out.join("audit-signing.key")).unwrap();
        let old_public = crate::roles::signing_key_from_text(&old_key)
            .unwrap()
            .verifying_key();
        let r = rotate_audit_key(&out).unwrap();
        assert_ne!(r.old_id, r.new_id);
        assert_eq!(r.trusted.len(), 2, "{r:?}");
        assert!(r.trusted.contains(&r.old_id) && r.trusted.contains(&r.new_id));
        assert_ne!(
            std::fs::read_to_string(out.join("audit-signing.key")).unwrap(),
            old_key
        );
        let config = Config::load(None, production_env(&out)).unwrap();
        assert_eq!(config.audit.key_id, r.new_id);
        let trusted = crate::roles::verifying_key(&config).unwrap();
        assert_eq!(trusted.get(&r.old_id), Some(&old_public));
        assert_eq!(
            trusted.get(&r.new_id),
            Some(&crate::roles::signing_key(&config).unwrap().verifying_key())
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            for name in ["audit-signing.key", "audit-signing.pub", "audit-key-id"] {
                let mode = std::fs::metadata(out.join(name))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600, "{name}");
            }
        }
        // a second rotation keeps all three
        let again = rotate_audit_key(&out).unwrap();
        assert_eq!(again.old_id, r.new_id);
        assert_eq!(again.trusted.len(), 3);
        // inconsistent folder: refused, nothing changed
        let other = SigningKey::from_bytes(&[5; 32]);
        std::fs::write(out.join("audit-signing.key"), hex::encode(other.to_bytes())).unwrap();
        let before = std::fs::read(out.join("audit-signing.pub")).unwrap();
        let err = rotate_audit_key(&out).unwrap_err().to_string();
        assert!(err.contains("inconsistent"), "{err}");
        assert_eq!(
            std::fs::read(out.join("audit-signing.pub")).unwrap(),
            before
        );
        let leftovers: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    /// Two runs never share a key or a key id.
    #[test]
    fn every_run_is_fresh() {
        let (a, b) = (generate(), generate());
        for ((fa, ta), (_, tb)) in a.iter().zip(&b) {
            assert_ne!(ta, tb, "{}", fa.name);
        }
    }
}
