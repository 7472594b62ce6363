//! The file channel of one device step: putting a file on the device, reading a file's
//! bytes back, reading an export, removing a file, each by the path
//! [`netledger_domain::device::file_access`] picks for the device's RouterOS version and
//! registration: the binary API wherever it does the job (`/file add` 7.9+, `/file/read`
//! 7.13+), SSH/SFTP where it cannot and SSH access is registered, and a clear
//! [`NetopsError::Unsupported`] naming what to register otherwise.
//!
//! At most one SSH session per step: opened on the first job that needs it (a 7.13+ device
//! never opens one), reused by the step's later jobs, closed by [`Files::close`]. A session
//! that trusted the device's host key on first use has the key recorded
//! ([`HostKeyRecorder`]) before anything else is sent over it; a pinned key that does not
//! match fails the connect ([`routeros_ssh::SshError::HostKeyMismatch`], fatal).
//!
//! Owns: choosing the path and doing the file job on it. Does not own: what the files are
//! named or mean (`crate::push`, `crate::firmware`), recording the key (the workflows'
//! adapter implements [`HostKeyRecorder`] with the event store).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use netledger_domain::device::{FileAccess, Via, file_access};
use routeros::menus::ExportOptions;
use routeros::{Client, Command};
use routeros_ssh::{HostKey, Sftp, SshConfig, SshError, SshSession, Trust};
use tokio::sync::OnceCell;

use crate::device::remove_file_named;
use crate::error::{NetopsError, Result};

/// Records a host key a session trusted on first use (`DeviceCommand::RecordSshHostKey`):
/// must succeed before the session is used.
pub trait HostKeyRecorder: Send + Sync {
    /// Records `key`; an error stops the step (nothing is sent over the session).
    fn record<'a>(
        &'a self,
        key: &'a HostKey,
    ) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;
}

/// SSH access of a device for one step: the client configuration (pinned key or trust on
/// first use, credentials in memory) and who records a first-use key.
#[derive(Clone)]
pub struct SshLink {
    /// The SSH client configuration (`netledger_device_client::ssh_config`).
    pub config: SshConfig,
    /// Records a key trusted on first use; `None`: such a key is refused (no one could pin
    /// it).
    pub recorder: Option<Arc<dyn HostKeyRecorder>>,
}

impl std::fmt::Debug for SshLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshLink")
            .field("addr", &self.config.addr())
            .field("recorder", &self.recorder.is_some())
            .finish()
    }
}

/// Connects an SSH session with `link`, records a first-use host key before returning it,
/// and refuses to send anything once the worker's lease deadline passed (like
/// [`crate::connect`]).
pub async fn connect_ssh(link: &SshLink) -> Result<SshSession> {
    if netledger_engine::lease::lapsed() {
        return Err(NetopsError::LeaseLapsed {
            deadline: netledger_engine::lease::deadline()
                .map(|d| d.to_string())
                .unwrap_or_default(),
        });
    }
    let session = SshSession::connect(&link.config)
        .await
        .map_err(|e| NetopsError::ssh("SSH connect", e))?;
    if session.host_key().trust == Trust::FirstUse {
        let recorded = match &link.recorder {
            Some(r) => r.record(session.host_key()).await,
            None => Err(NetopsError::Unexpected {
                detail: "the device's SSH host key is not pinned and nothing records it".into(),
            }),
        };
        if let Err(e) = recorded {
            session.close().await;
            return Err(e);
        }
    }
    Ok(session)
}

/// The file jobs of one step on one device: the API client of the step and, when the
/// device has SSH access registered, its [`SshLink`] (used only where the API cannot do the
/// job). Call [`Files::close`] at the end of the step.
pub struct Files<'a> {
    client: &'a Client,
    ssh: Option<&'a SshLink>,
    version: OnceCell<routeros::Version>,
    session: OnceCell<(SshSession, Sftp)>,
}

impl<'a> Files<'a> {
    /// API only (no SSH access registered).
    pub fn api(client: &'a Client) -> Files<'a> {
        Files::new(client, None)
    }

    /// The file jobs over `client`, and over `ssh` where the API cannot do them.
    pub fn new(client: &'a Client, ssh: Option<&'a SshLink>) -> Files<'a> {
        Files {
            client,
            ssh,
            version: OnceCell::new(),
            session: OnceCell::new(),
        }
    }

    /// The step's API client.
    pub fn client(&self) -> &'a Client {
        self.client
    }

    /// Whether SSH access is registered.
    pub fn has_ssh(&self) -> bool {
        self.ssh.is_some()
    }

    /// The device's RouterOS version (read once per step).
    pub async fn version(&self) -> Result<&routeros::Version> {
        self.version
            .get_or_try_init(|| async {
                self.client
                    .resources()
                    .await
                    .map(|r| r.version)
                    .map_err(|e| NetopsError::device("/system/resource/print", e))
            })
            .await
    }

    /// Tells the channel the version when the caller already read it (saves a command).
    pub fn set_version(&self, v: &routeros::Version) {
        let _ = self.version.set(v.clone());
    }

    /// Which path each file job takes on this device. Without SSH access it is the API
    /// for everything, without reading the version (the path a device without SSH always
    /// took; where the API cannot do a job, the step refuses before: `validate`, or the
    /// snapshot keeps no copy).
    pub async fn access(&self) -> Result<FileAccess> {
        if self.ssh.is_none() {
            return Ok(FileAccess {
                export: Via::Api,
                upload: Via::Api,
                download: Via::Api,
            });
        }
        let v = self.version().await?;
        Ok(file_access(v.major, v.minor, true))
    }

    /// Whether the device has `/file add` (RouterOS 7.9 and later, ROUTEROS-NOTES §5.9).
    /// Without SSH access every upload is a `/file add`, so a device without it cannot be
    /// written to at all: `true` then, without reading the version (as [`Files::access`]).
    pub async fn has_file_add(&self) -> Result<bool> {
        Ok(self.access().await?.upload == Via::Api)
    }

    /// The SFTP channel of the step's one SSH session (opened on first use).
    async fn sftp(&self) -> Result<&Sftp> {
        let Some(link) = self.ssh else {
            return Err(NetopsError::Unexpected {
                detail: "an SSH file job on a device without SSH access".into(),
            });
        };
        let (_, sftp) = self
            .session
            .get_or_try_init(|| async {
                let session = connect_ssh(link).await?;
                match session.sftp().await {
                    Ok(sftp) => Ok((session, sftp)),
                    Err(e) => {
                        session.close().await;
                        Err(NetopsError::ssh("opening SFTP", e))
                    }
                }
            })
            .await?;
        Ok(sftp)
    }

    /// Creates or replaces `name` with `bytes`: `/file add` (7.9+; text, capped near 60 KB)
    /// or SFTP.
    pub async fn put(&self, name: &str, bytes: &[u8]) -> Result<()> {
        match self.access().await?.upload {
            Via::Api => {
                let text = std::str::from_utf8(bytes).map_err(|_| NetopsError::Unexpected {
                    detail: format!("{name}: /file add writes text only"),
                })?;
                remove_file_named(self.client, name).await?;
                const PATH: &str = "/file/add";
                self.client
                    .run(Command::new(PATH).attr("name", name).attr("contents", text))
                    .await
                    .map_err(|e| NetopsError::device(PATH, e))?;
                Ok(())
            }
            _ => self
                .sftp()
                .await?
                .write(name, bytes)
                .await
                .map_err(|e| NetopsError::ssh(&format!("SFTP write of {name}"), e)),
        }
    }

    /// Creates or replaces `name` with `bytes` over SFTP whatever the version (a firmware
    /// package: binary and megabytes, which `/file add` cannot write on any version).
    pub async fn put_over_ssh(&self, name: &str, bytes: &[u8]) -> Result<()> {
        self.sftp()
            .await?
            .write(name, bytes)
            .await
            .map_err(|e| NetopsError::ssh(&format!("SFTP write of {name}"), e))
    }

    /// The bytes of `name`: `/file/read` (7.13+) or SFTP.
    pub async fn get(&self, name: &str) -> Result<Vec<u8>> {
        match self.access().await?.download {
            Via::Api => {
                let v = self.version().await?.clone();
                self.client
                    .file_contents(name, &v)
                    .await
                    .map(|b| b.to_vec())
                    .map_err(|e| NetopsError::device("/file/read", e))
            }
            _ => self
                .sftp()
                .await?
                .read(name)
                .await
                .map_err(|e| NetopsError::ssh(&format!("SFTP read of {name}"), e)),
        }
    }

    /// The export text: `/export file=` then the file read back over the API (unchanged
    /// from before SSH existed) or, where [`FileAccess::export`] says SSH (before 7.13 with
    /// SSH access: no `contents` cap), over SFTP, and the file removed.
    pub async fn export(&self, opts: &ExportOptions) -> Result<String> {
        let via = self.access().await?.export;
        let bytes = if via == Via::Ssh {
            let (file, _) = self
                .client
                .export_to_file(opts)
                .await
                .map_err(|e| NetopsError::device("/export", e))?;
            let read = self
                .sftp()
                .await?
                .read(&file.name)
                .await
                .map_err(|e| NetopsError::ssh(&format!("SFTP read of {}", file.name), e));
            let removed = self.client.remove_file(file.id).await;
            let bytes = read?;
            removed.map_err(|e| NetopsError::device("/file/remove", e))?;
            bytes
        } else {
            self.client
                .export(opts)
                .await
                .map_err(|e| NetopsError::device("/export", e))?
                .to_vec()
        };
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Ends the step's SSH session, if one was opened.
    pub async fn close(self) {
        if let Some((session, sftp)) = self.session.into_inner() {
            sftp.close().await;
            session.close().await;
        }
    }
}

/// The SSH error of `what` as this crate's error.
impl NetopsError {
    pub(crate) fn ssh(what: &str, source: SshError) -> NetopsError {
        NetopsError::Ssh {
            op: what.to_owned(),
            error: Box::new(source),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_names_what_to_register() {
        let e = NetopsError::Unsupported {
            what: "uploading a change file over the API (/file add)".into(),
            needs: "7.9".into(),
            version: "6.49.13".into(),
        };
        let s = e.to_string();
        assert!(s.contains("needs RouterOS 7.9 or newer"), "{s}");
        assert!(s.contains("register SSH access"), "{s}");
    }
}
