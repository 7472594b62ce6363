//! Device credentials encrypted at rest (DESIGN invariant 13): AES-256-GCM with a key id for
//! rotation, a random 96-bit nonce per encryption, and associated data that binds the
//! ciphertext to its tenant, device and key id. The rows live in `device_credentials`,
//! outside the event stream; events carry only the login name and the key id
//! (`DeviceRegistered`, `DeviceCredentialsChanged`). Passwords are decrypted only in memory,
//! into a [`DevicePassword`] that never prints.
//!
//! Keys come from the binary's configuration (`[secrets]`), never from here; this module
//! neither reads files nor the environment. Rotation (re-encrypting rows under an older key id
//! with the current key, with an event per device) is [`crate::devices::DeviceCommands::rotate_credentials`].

use std::collections::BTreeMap;
use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use netledger_domain::{DeviceId, TenantId};
use rand::RngCore as _;
use sqlx::{PgConnection, PgPool, Row};

/// Prefix of the associated data: a version tag, so a future format cannot be confused with
/// this one.
const AAD_TAG: &[u8] = b"netledger-device-credentials/v1\0";

/// Associated-data tag of a sealed SSH private key (the subject is the device id): a
/// password ciphertext cannot be opened as a key, nor the other way round.
const SSH_KEY_TAG: &[u8] = b"netledger-device-ssh-key/v1\0";

/// The longest SSH private key text accepted (an RSA-16384 OpenSSH key is about 12 KiB).
pub const MAX_SSH_KEY_LEN: usize = 32 * 1024;

/// Why credentials could not be sealed, opened, stored or loaded.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// A configured key is unusable.
    #[error(
        "credential key `{key_id}` is invalid: {reason}; give 32 random bytes in base64 (for example the output of `openssl rand -base64 32`)"
    )]
    BadKey {
        /// The key id.
        key_id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The current key id names no configured key.
    #[error(
        "the current credential key `{current}` is not among the configured keys ({known}); set [secrets] current_credential_key to one of them"
    )]
    NoCurrentKey {
        /// The configured current key id.
        current: String,
        /// The configured key ids.
        known: String,
    },
    /// A row is encrypted under a key id that is not configured.
    #[error(
        "credentials of device {device} are encrypted with key `{key_id}`, which is not configured (known key ids: {known}); add that key to [secrets] credential_keys, or set the device's credentials again"
    )]
    UnknownKey {
        /// The device.
        device: DeviceId,
        /// The key id the row names.
        key_id: String,
        /// The configured key ids.
        known: String,
    },
    /// The ciphertext does not decrypt under its key, tenant and device.
    #[error(
        "credentials of device {device} do not decrypt with key `{key_id}`: the configured key is not the one they were encrypted with, or the row was altered or copied from another device; set the device's credentials again"
    )]
    Decrypt {
        /// The device.
        device: DeviceId,
        /// The key id used.
        key_id: String,
    },
    /// The password is unusable.
    #[error("the password is invalid: {0}")]
    BadPassword(&'static str),
    /// Encryption failed (it only fails on absurd input sizes).
    #[error("encrypting the credentials of device {device} failed")]
    Encrypt {
        /// The device.
        device: DeviceId,
    },
    /// No credentials row exists for the device.
    #[error(
        "no stored credentials for device {device}; register the device or set its credentials"
    )]
    NotFound {
        /// The device.
        device: DeviceId,
    },
    /// A stored row is malformed.
    #[error("stored credentials of device {device} are malformed: {detail}")]
    Corrupt {
        /// The device.
        device: DeviceId,
        /// What is wrong.
        detail: String,
    },
    /// The database refused or failed.
    #[error("database error during {operation}")]
    Database {
        /// What was being done.
        operation: &'static str,
        /// The driver error.
        #[source]
        source: sqlx::Error,
    },
}

fn db(operation: &'static str) -> impl FnOnce(sqlx::Error) -> CredentialError {
    move |source| CredentialError::Database { operation, source }
}

/// A decrypted device password. Never printed; [`DevicePassword::expose`] only where it is
/// put on the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct DevicePassword(String);

impl DevicePassword {
    /// Wraps a password.
    pub fn new(password: impl Into<String>) -> Self {
        Self(password.into())
    }
    /// The clear text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DevicePassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DevicePassword(***)")
    }
}

/// A decrypted SSH private key (its text: OpenSSH, PKCS#8 or PKCS#1). Never printed;
/// [`DeviceSshKey::expose`] only where the SSH client parses it.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceSshKey(String);

impl DeviceSshKey {
    /// Wraps a key's text.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }
    /// The clear text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DeviceSshKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeviceSshKey(***)")
    }
}

/// 32 bytes of key material. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyMaterial([u8; 32]);

impl KeyMaterial {
    /// Wraps raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Parses standard base64 (padding optional) that must decode to exactly 32 bytes.
    pub fn from_base64(key_id: &str, text: &str) -> Result<Self, CredentialError> {
        let text = text.trim();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
            .map_err(|e| CredentialError::BadKey {
                key_id: key_id.to_owned(),
                reason: format!("not base64 ({e})"),
            })?;
        let array =
            <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| CredentialError::BadKey {
                key_id: key_id.to_owned(),
                reason: format!("{} bytes, need 32", bytes.len()),
            })?;
        Ok(Self(array))
    }

    /// A fresh random key (for a generated development key).
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// The key as standard base64, to write to a private file.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyMaterial(***)")
    }
}

/// Ciphertext of one device's password, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedCredentials {
    /// Id of the key that encrypted it.
    pub key_id: String,
    /// The random 96-bit nonce.
    pub nonce: [u8; 12],
    /// AES-256-GCM ciphertext with its 16-byte tag.
    pub ciphertext: Vec<u8>,
}

/// A stored row: login name, sealed password and, when one was given, the sealed SSH
/// private key (same key id as the password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCredentials {
    /// Owning tenant.
    pub tenant: TenantId,
    /// The device.
    pub device: DeviceId,
    /// Login name.
    pub username: String,
    /// The sealed password.
    pub sealed: SealedCredentials,
    /// The sealed SSH private key.
    pub ssh_key: Option<SealedCredentials>,
}

/// The configured keys: the current one encrypts, every one may decrypt.
#[derive(Clone)]
pub struct CredentialKeys {
    current: String,
    keys: BTreeMap<String, Aes256Gcm>,
}

impl fmt::Debug for CredentialKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialKeys")
            .field("current", &self.current)
            .field("key_ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl CredentialKeys {
    /// Keys by id; `current` must be one of them. Key ids are 1-100 characters of
    /// `[A-Za-z0-9._-]`.
    pub fn new(
        current: &str,
        keys: impl IntoIterator<Item = (String, KeyMaterial)>,
    ) -> Result<Self, CredentialError> {
        let mut map = BTreeMap::new();
        for (id, material) in keys {
            if !netledger_domain::is_key_id(&id) {
                return Err(CredentialError::BadKey {
                    key_id: id,
                    reason: "key ids are 1-100 characters of letters, digits, `.`, `_` or `-`"
                        .to_owned(),
                });
            }
            let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&material.0));
            map.insert(id, cipher);
        }
        if !map.contains_key(current) {
            return Err(CredentialError::NoCurrentKey {
                current: current.to_owned(),
                known: known(&map),
            });
        }
        Ok(Self {
            current: current.to_owned(),
            keys: map,
        })
    }

    /// The id of the key new credentials are encrypted with.
    pub fn current_key_id(&self) -> &str {
        &self.current
    }

    /// Whether `key_id` is configured.
    pub fn has_key(&self, key_id: &str) -> bool {
        self.keys.contains_key(key_id)
    }

    /// The configured key ids.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// Encrypts `password` for `device` of `tenant` under the current key, with a fresh
    /// random nonce.
    pub fn seal(
        &self,
        tenant: TenantId,
        device: DeviceId,
        password: &str,
    ) -> Result<SealedCredentials, CredentialError> {
        if password.is_empty() {
            return Err(CredentialError::BadPassword("it is empty"));
        }
        if password.contains('\0') {
            return Err(CredentialError::BadPassword("it contains a NUL character"));
        }
        let cipher = self
            .keys
            .get(&self.current)
            .ok_or_else(|| CredentialError::NoCurrentKey {
                current: self.current.clone(),
                known: known(&self.keys),
            })?;
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = aad(tenant, device, &self.current);
        let ciphertext = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: password.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| CredentialError::Encrypt { device })?;
        Ok(SealedCredentials {
            key_id: self.current.clone(),
            nonce,
            ciphertext,
        })
    }

    /// Decrypts a sealed password of `device` of `tenant`.
    pub fn open(
        &self,
        tenant: TenantId,
        device: DeviceId,
        sealed: &SealedCredentials,
    ) -> Result<DevicePassword, CredentialError> {
        let cipher = self
            .keys
            .get(&sealed.key_id)
            .ok_or_else(|| CredentialError::UnknownKey {
                device,
                key_id: sealed.key_id.clone(),
                known: known(&self.keys),
            })?;
        let aad = aad(tenant, device, &sealed.key_id);
        let clear = cipher
            .decrypt(
                Nonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| CredentialError::Decrypt {
                device,
                key_id: sealed.key_id.clone(),
            })?;
        String::from_utf8(clear)
            .map(DevicePassword)
            .map_err(|_| CredentialError::Decrypt {
                device,
                key_id: sealed.key_id.clone(),
            })
    }
}

impl CredentialKeys {
    /// Encrypts the text of an SSH private key for `device` of `tenant` under the current
    /// key (its own associated-data tag; [`CredentialKeys::open_ssh_key`] reverses it).
    pub fn seal_ssh_key(
        &self,
        tenant: TenantId,
        device: DeviceId,
        key: &DeviceSshKey,
    ) -> Result<SealedCredentials, CredentialError> {
        self.seal_bytes(
            SSH_KEY_TAG,
            tenant,
            device.as_uuid().as_bytes(),
            key.expose().as_bytes(),
        )
        .ok_or(CredentialError::Encrypt { device })
    }

    /// Decrypts a sealed SSH private key of `device` of `tenant`.
    pub fn open_ssh_key(
        &self,
        tenant: TenantId,
        device: DeviceId,
        sealed: &SealedCredentials,
    ) -> Result<DeviceSshKey, CredentialError> {
        let decrypt = || CredentialError::Decrypt {
            device,
            key_id: sealed.key_id.clone(),
        };
        let clear = self
            .open_bytes(SSH_KEY_TAG, tenant, device.as_uuid().as_bytes(), sealed)
            .map_err(|e| match e {
                None => CredentialError::UnknownKey {
                    device,
                    key_id: sealed.key_id.clone(),
                    known: known(&self.keys),
                },
                Some(()) => decrypt(),
            })?;
        String::from_utf8(clear)
            .map(DeviceSshKey)
            .map_err(|_| decrypt())
    }

    /// Encrypts `clear` under the current key with a fresh nonce, the associated data being
    /// `tag`, the tenant, `subject` and the key id (the same construction as a device
    /// password, under another tag, so one kind of ciphertext cannot be opened as another).
    pub(crate) fn seal_bytes(
        &self,
        tag: &[u8],
        tenant: TenantId,
        subject: &[u8],
        clear: &[u8],
    ) -> Option<SealedCredentials> {
        let cipher = self.keys.get(&self.current)?;
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = aad_for(tag, tenant, subject, &self.current);
        let ciphertext = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: clear,
                    aad: &aad,
                },
            )
            .ok()?;
        Some(SealedCredentials {
            key_id: self.current.clone(),
            nonce,
            ciphertext,
        })
    }

    /// Decrypts what [`CredentialKeys::seal_bytes`] sealed; `Err(None)`: the key id is not
    /// configured; `Err(Some(()))`: it does not decrypt (another key, tenant or subject, or
    /// altered).
    pub(crate) fn open_bytes(
        &self,
        tag: &[u8],
        tenant: TenantId,
        subject: &[u8],
        sealed: &SealedCredentials,
    ) -> Result<Vec<u8>, Option<()>> {
        let cipher = self.keys.get(&sealed.key_id).ok_or(None)?;
        let aad = aad_for(tag, tenant, subject, &sealed.key_id);
        cipher
            .decrypt(
                Nonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| Some(()))
    }
}

fn aad_for(tag: &[u8], tenant: TenantId, subject: &[u8], key_id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(tag.len() + 16 + subject.len() + key_id.len());
    aad.extend_from_slice(tag);
    aad.extend_from_slice(tenant.as_uuid().as_bytes());
    aad.extend_from_slice(subject);
    aad.extend_from_slice(key_id.as_bytes());
    aad
}

fn known(keys: &BTreeMap<String, Aes256Gcm>) -> String {
    if keys.is_empty() {
        return "none".to_owned();
    }
    keys.keys().cloned().collect::<Vec<_>>().join(", ")
}

/// Associated data: version tag, tenant and device ids (16 bytes each), key id.
fn aad(tenant: TenantId, device: DeviceId, key_id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_TAG.len() + 32 + key_id.len());
    aad.extend_from_slice(AAD_TAG);
    aad.extend_from_slice(tenant.as_uuid().as_bytes());
    aad.extend_from_slice(device.as_uuid().as_bytes());
    aad.extend_from_slice(key_id.as_bytes());
    aad
}

/// Writes (inserts or replaces) a device's credentials row, inside the caller's transaction
/// scoped to `tenant` (role `netledger_app`). `ssh_key` must be sealed under the same key
/// as `sealed` (both with the current key); `None` stores no key (and drops an earlier one).
pub async fn store(
    conn: &mut PgConnection,
    tenant: TenantId,
    device: DeviceId,
    username: &str,
    sealed: &SealedCredentials,
    ssh_key: Option<&SealedCredentials>,
) -> Result<(), CredentialError> {
    if let Some(k) = ssh_key
        && k.key_id != sealed.key_id
    {
        return Err(CredentialError::Corrupt {
            device,
            detail: format!(
                "the SSH key is sealed under key `{}`, the password under `{}`",
                k.key_id, sealed.key_id
            ),
        });
    }
    sqlx::query(
        "INSERT INTO device_credentials \
             (tenant_id, device_id, username, key_id, nonce, ciphertext, ssh_key_nonce, ssh_key_ciphertext) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (tenant_id, device_id) DO UPDATE SET username = excluded.username, \
             key_id = excluded.key_id, nonce = excluded.nonce, ciphertext = excluded.ciphertext, \
             ssh_key_nonce = excluded.ssh_key_nonce, \
             ssh_key_ciphertext = excluded.ssh_key_ciphertext, updated_at = now()",
    )
    .bind(tenant.as_uuid())
    .bind(device.as_uuid())
    .bind(username)
    .bind(&sealed.key_id)
    .bind(sealed.nonce.as_slice())
    .bind(&sealed.ciphertext)
    .bind(ssh_key.map(|k| k.nonce.to_vec()))
    .bind(ssh_key.map(|k| k.ciphertext.clone()))
    .execute(conn)
    .await
    .map_err(db("store device credentials"))?;
    Ok(())
}

/// Deletes a device's credentials row inside the caller's transaction scoped to `tenant`.
pub async fn delete(
    conn: &mut PgConnection,
    tenant: TenantId,
    device: DeviceId,
) -> Result<(), CredentialError> {
    sqlx::query("DELETE FROM device_credentials WHERE tenant_id = $1 AND device_id = $2")
        .bind(tenant.as_uuid())
        .bind(device.as_uuid())
        .execute(conn)
        .await
        .map_err(db("delete device credentials"))?;
    Ok(())
}

fn decode_row(row: &sqlx::postgres::PgRow) -> Result<StoredCredentials, CredentialError> {
    let device = DeviceId::from_uuid(row.try_get("device_id").map_err(db("read credentials"))?);
    let tenant = TenantId::from_uuid(row.try_get("tenant_id").map_err(db("read credentials"))?);
    let nonce: Vec<u8> = row.try_get("nonce").map_err(db("read credentials"))?;
    let nonce = <[u8; 12]>::try_from(nonce.as_slice()).map_err(|_| CredentialError::Corrupt {
        device,
        detail: "nonce is not 12 bytes".to_owned(),
    })?;
    let key_id: String = row.try_get("key_id").map_err(db("read credentials"))?;
    let ssh_nonce: Option<Vec<u8>> = row
        .try_get("ssh_key_nonce")
        .map_err(db("read credentials"))?;
    let ssh_ciphertext: Option<Vec<u8>> = row
        .try_get("ssh_key_ciphertext")
        .map_err(db("read credentials"))?;
    let ssh_key = match (ssh_nonce, ssh_ciphertext) {
        (None, None) => None,
        (Some(n), Some(ciphertext)) => Some(SealedCredentials {
            key_id: key_id.clone(),
            nonce: <[u8; 12]>::try_from(n.as_slice()).map_err(|_| CredentialError::Corrupt {
                device,
                detail: "SSH key nonce is not 12 bytes".to_owned(),
            })?,
            ciphertext,
        }),
        _ => {
            return Err(CredentialError::Corrupt {
                device,
                detail: "SSH key nonce and ciphertext are not both set".to_owned(),
            });
        }
    };
    Ok(StoredCredentials {
        tenant,
        device,
        username: row.try_get("username").map_err(db("read credentials"))?,
        sealed: SealedCredentials {
            key_id,
            nonce,
            ciphertext: row.try_get("ciphertext").map_err(db("read credentials"))?,
        },
        ssh_key,
    })
}

/// Loads one device's row. `pool` is the system pool (every tenant) or, inside a tenant
/// transaction, use [`load_in`].
pub async fn load(
    pool: &PgPool,
    tenant: TenantId,
    device: DeviceId,
) -> Result<StoredCredentials, CredentialError> {
    let row = sqlx::query(
        "SELECT tenant_id, device_id, username, key_id, nonce, ciphertext, ssh_key_nonce, \
         ssh_key_ciphertext FROM device_credentials \
         WHERE tenant_id = $1 AND device_id = $2",
    )
    .bind(tenant.as_uuid())
    .bind(device.as_uuid())
    .fetch_optional(pool)
    .await
    .map_err(db("load device credentials"))?
    .ok_or(CredentialError::NotFound { device })?;
    decode_row(&row)
}

/// Loads one device's row inside the caller's transaction (scoped to `tenant`).
pub async fn load_in(
    conn: &mut PgConnection,
    tenant: TenantId,
    device: DeviceId,
) -> Result<Option<StoredCredentials>, CredentialError> {
    let row = sqlx::query(
        "SELECT tenant_id, device_id, username, key_id, nonce, ciphertext, ssh_key_nonce, \
         ssh_key_ciphertext FROM device_credentials \
         WHERE tenant_id = $1 AND device_id = $2",
    )
    .bind(tenant.as_uuid())
    .bind(device.as_uuid())
    .fetch_optional(conn)
    .await
    .map_err(db("load device credentials"))?;
    row.as_ref().map(decode_row).transpose()
}

/// Loads the rows of many devices at once (system pool), for a poller taking over a shard.
pub async fn load_many(
    system_pool: &PgPool,
    devices: &[(TenantId, DeviceId)],
) -> Result<Vec<StoredCredentials>, CredentialError> {
    let tenants: Vec<uuid::Uuid> = devices.iter().map(|(t, _)| *t.as_uuid()).collect();
    let ids: Vec<uuid::Uuid> = devices.iter().map(|(_, d)| *d.as_uuid()).collect();
    let rows = sqlx::query(
        "SELECT c.tenant_id, c.device_id, c.username, c.key_id, c.nonce, c.ciphertext, \
         c.ssh_key_nonce, c.ssh_key_ciphertext \
         FROM unnest($1::uuid[], $2::uuid[]) AS w(tenant_id, device_id) \
         JOIN device_credentials c USING (tenant_id, device_id)",
    )
    .bind(&tenants)
    .bind(&ids)
    .fetch_all(system_pool)
    .await
    .map_err(db("load device credentials"))?;
    rows.iter().map(decode_row).collect()
}

/// Devices whose credentials are encrypted under another key than `current` (system pool).
pub async fn under_other_keys(
    system_pool: &PgPool,
    current: &str,
) -> Result<Vec<(TenantId, DeviceId, String)>, CredentialError> {
    let rows = sqlx::query(
        "SELECT tenant_id, device_id, key_id FROM device_credentials WHERE key_id <> $1 \
         ORDER BY tenant_id, device_id",
    )
    .bind(current)
    .fetch_all(system_pool)
    .await
    .map_err(db("list credentials under old keys"))?;
    rows.iter()
        .map(|r| {
            Ok((
                TenantId::from_uuid(r.try_get("tenant_id").map_err(db("read credentials"))?),
                DeviceId::from_uuid(r.try_get("device_id").map_err(db("read credentials"))?),
                r.try_get("key_id").map_err(db("read credentials"))?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn keys(current: &str) -> CredentialKeys {
        CredentialKeys::new(
            current,
            [
                ("k1".to_owned(), KeyMaterial::from_bytes([1; 32])),
                ("k2".to_owned(), KeyMaterial::from_bytes([2; 32])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn ssh_keys_round_trip_and_never_open_as_a_password_or_for_another_device() {
        let k = keys("k1");
        let (t, d) = (TenantId::new_random(), DeviceId::new_random());
        let text = DeviceSshKey::new("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn...\n");
        let sealed = k.seal_ssh_key(t, d, &text).unwrap();
        assert_eq!(k.open_ssh_key(t, d, &sealed).unwrap(), text);
        assert!(!format!("{text:?}").contains("OPENSSH"));
        // another tag: not a password, not another device's key
        assert!(matches!(
            k.open(t, d, &sealed),
            Err(CredentialError::Decrypt { .. })
        ));
        assert!(matches!(
            k.open_ssh_key(t, DeviceId::new_random(), &sealed),
            Err(CredentialError::Decrypt { .. })
        ));
        let password = k.seal(t, d, "pw").unwrap();
        assert!(matches!(
            k.open_ssh_key(t, d, &password),
            Err(CredentialError::Decrypt { .. })
        ));
        assert!(matches!(
            keys("k2").open_ssh_key(t, d, &sealed).map(|_| ()),
            Ok(())
        ));
    }

    #[test]
    fn seal_then_open_round_trips_and_nonces_differ() {
        let k = keys("k1");
        let (t, d) = (TenantId::new_random(), DeviceId::new_random());
        let a = k.seal(t, d, "s3cret-pw").unwrap();
        let b = k.seal(t, d, "s3cret-pw").unwrap();
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
        assert_eq!(k.open(t, d, &a).unwrap().expose(), "s3cret-pw");
        assert!(!format!("{:?}", k.open(t, d, &a).unwrap()).contains("s3cret"));
        assert!(
            !a.ciphertext
                .windows(b"s3cret".len())
                .any(|w| w == b"s3cret")
        );
    }

    #[test]
    fn associated_data_binds_tenant_device_and_key_id() {
        let k = keys("k1");
        let (t, d) = (TenantId::new_random(), DeviceId::new_random());
        let sealed = k.seal(t, d, "pw").unwrap();
        let other_device = k.open(t, DeviceId::new_random(), &sealed).unwrap_err();
        assert!(matches!(other_device, CredentialError::Decrypt { .. }));
        let other_tenant = k.open(TenantId::new_random(), d, &sealed).unwrap_err();
        assert!(matches!(other_tenant, CredentialError::Decrypt { .. }));
        let mut relabelled = sealed.clone();
        relabelled.key_id = "k2".to_owned();
        assert!(matches!(
            k.open(t, d, &relabelled).unwrap_err(),
            CredentialError::Decrypt { .. }
        ));
        let mut unknown = sealed;
        unknown.key_id = "k0".to_owned();
        let e = k.open(t, d, &unknown).unwrap_err();
        assert!(e.to_string().contains("`k0`"), "{e}");
        assert!(e.to_string().contains("k1, k2"), "{e}");
    }

    #[test]
    fn keys_are_validated_and_never_printed() {
        assert!(matches!(
            CredentialKeys::new(
                "nope",
                [("k1".to_owned(), KeyMaterial::from_bytes([1; 32]))]
            ),
            Err(CredentialError::NoCurrentKey { .. })
        ));
        assert!(KeyMaterial::from_base64("k", "c2hvcnQ=").is_err());
        let m = KeyMaterial::generate();
        let again = KeyMaterial::from_base64("k", &m.to_base64()).unwrap();
        assert_eq!(m, again);
        assert!(!format!("{m:?}").contains(&m.to_base64()));
        let k = keys("k2");
        assert_eq!(k.current_key_id(), "k2");
        assert!(!format!("{k:?}").contains("KeyMaterial"));
    }
}
