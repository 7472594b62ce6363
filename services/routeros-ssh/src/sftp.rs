//! SFTP on a router: read, write, stat and remove whole files, bounded in size and time.
//!
//! Time bounds: every request (open, stat, remove, close) and every chunk of a transfer must
//! complete within the session's command timeout (an idle timeout: a transfer that keeps
//! moving is not cut off for being long), and a whole transfer of `n` bytes must finish
//! within `command_timeout + n / min_transfer_rate` (a device trickling bytes cannot hold a
//! worker forever). Size bounds: a read checks the size by stat first and stops reading past
//! [`crate::SshConfig::max_file`] even if the file grows; nothing is ever truncated
//! silently.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use russh::Channel;
use russh::client::Msg;
use russh_sftp::client::SftpSession;
use russh_sftp::client::error::Error as SftpClientError;
use russh_sftp::protocol::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::error::SshError;
use crate::session::{Bounds, Inner};

/// Bytes handed to the SFTP client per write call and asked for per read call.
const CHUNK: usize = 32 * 1024;
/// Initial buffer for a download, whatever size the device claims.
const MAX_INITIAL_CAPACITY: u64 = 8 << 20;

/// An SFTP session on one channel of an [`crate::SshSession`] (which it keeps alive).
pub struct Sftp {
    session: SftpSession,
    bounds: Bounds,
    _owner: Arc<Inner>,
}

impl fmt::Debug for Sftp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sftp")
            .field("bounds", &self.bounds)
            .finish_non_exhaustive()
    }
}

impl Sftp {
    /// Starts the SFTP protocol on a channel whose subsystem request was accepted.
    pub(crate) async fn start(channel: Channel<Msg>, owner: Arc<Inner>) -> Result<Sftp, SshError> {
        let bounds = owner.bounds;
        let config = russh_sftp::client::Config {
            // russh-sftp's own per-request bound, in whole seconds; ours (below) is exact.
            request_timeout_secs: bounds.command_timeout.as_secs().saturating_add(1),
            ..Default::default()
        };
        let session = SftpSession::new_with_config(channel.into_stream(), config)
            .await
            .map_err(|e| SshError::Protocol(format!("starting SFTP failed: {e}")))?;
        Ok(Sftp {
            session,
            bounds,
            _owner: owner,
        })
    }

    /// The whole file. Fails with [`SshError::NotFound`] if it does not exist and
    /// [`SshError::FileTooLarge`] if stat reports more than `max_file` bytes (or the file
    /// grows past it while being read).
    #[tracing::instrument(skip_all, fields(path))]
    pub async fn read(&self, path: &str) -> Result<Vec<u8>, SshError> {
        let Some(size) = self.stat(path).await? else {
            return Err(SshError::NotFound { path: path.into() });
        };
        let limit = self.bounds.max_file;
        if size > limit {
            return Err(SshError::FileTooLarge {
                path: path.into(),
                size,
                limit,
            });
        }
        let started = Instant::now();
        let allowance = self.bounds.transfer_allowance(size);
        let deadline = started + allowance;
        let mut file = self.request("open", path, self.session.open(path)).await?;
        let mut data =
            Vec::with_capacity(usize::try_from(size.min(MAX_INITIAL_CAPACITY)).unwrap_or(0));
        let mut chunk = vec![0u8; CHUNK];
        loop {
            let n = self
                .chunk("read", path, deadline, allowance, file.read(&mut chunk))
                .await?;
            if n == 0 {
                break;
            }
            let total = data.len() as u64 + n as u64;
            if total > limit {
                return Err(SshError::FileTooLarge {
                    path: path.into(),
                    size: total,
                    limit,
                });
            }
            data.extend_from_slice(chunk.get(..n).unwrap_or_default());
        }
        // The data is complete; a failing close of a read handle changes nothing.
        let _ = tokio::time::timeout(self.bounds.command_timeout, file.close()).await;
        Ok(data)
    }

    /// Creates or replaces the file with `bytes`, then checks by stat that the device holds
    /// exactly `bytes.len()` bytes.
    ///
    /// RouterOS acts on some uploads by name (`*.auto.rsc` is run on upload, `*.npk` is
    /// installed at the next reboot), so upload under the final name only what may act.
    #[tracing::instrument(skip_all, fields(path, len = bytes.len()))]
    pub async fn write(&self, path: &str, bytes: &[u8]) -> Result<(), SshError> {
        let allowance = self.bounds.transfer_allowance(bytes.len() as u64);
        let deadline = Instant::now() + allowance;
        let mut file = self
            .request("open for writing", path, self.session.create(path))
            .await?;
        for piece in bytes.chunks(CHUNK) {
            self.chunk("write", path, deadline, allowance, file.write_all(piece))
                .await?;
        }
        // Waits for every outstanding write to be acknowledged, then closes the handle.
        self.chunk("close", path, deadline, allowance, file.shutdown())
            .await?;
        match self.stat(path).await? {
            Some(size) if size == bytes.len() as u64 => Ok(()),
            Some(size) => Err(SshError::Sftp {
                path: path.into(),
                message: format!(
                    "the device holds {size} bytes after writing {}",
                    bytes.len()
                ),
            }),
            None => Err(SshError::Sftp {
                path: path.into(),
                message: "the file is missing after writing it".into(),
            }),
        }
    }

    /// Removes the file; [`SshError::NotFound`] if it does not exist.
    pub async fn remove(&self, path: &str) -> Result<(), SshError> {
        self.request("remove", path, self.session.remove_file(path))
            .await
    }

    /// The file's size in bytes, or `None` if it does not exist.
    pub async fn stat(&self, path: &str) -> Result<Option<u64>, SshError> {
        match self
            .request("stat", path, self.session.metadata(path))
            .await
        {
            Ok(meta) => meta.size.map(Some).ok_or_else(|| SshError::Sftp {
                path: path.into(),
                message: "the device did not report the file size".into(),
            }),
            Err(SshError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Ends the SFTP session (the SSH connection stays open).
    pub async fn close(self) {
        let _ = tokio::time::timeout(self.bounds.command_timeout, self.session.close()).await;
    }

    /// One request under the command timeout, its error mapped.
    async fn request<T>(
        &self,
        what: &str,
        path: &str,
        fut: impl Future<Output = Result<T, SftpClientError>>,
    ) -> Result<T, SshError> {
        let after = self.bounds.command_timeout;
        match tokio::time::timeout(after, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(map_error(what, path, after, e)),
            Err(_) => Err(timeout(what, path, after)),
        }
    }

    /// One chunk of a transfer: within the command timeout and before the transfer deadline.
    async fn chunk<T>(
        &self,
        what: &str,
        path: &str,
        deadline: Instant,
        allowance: Duration,
        fut: impl Future<Output = io::Result<T>>,
    ) -> Result<T, SshError> {
        let idle = self.bounds.command_timeout;
        let (until, after) = if Instant::now() + idle < deadline {
            (Instant::now() + idle, idle)
        } else {
            (deadline, allowance)
        };
        match tokio::time::timeout_at(until, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(map_io_error(what, path, idle, e)),
            Err(_) => Err(timeout(what, path, after)),
        }
    }
}

fn timeout(what: &str, path: &str, after: Duration) -> SshError {
    SshError::Timeout {
        what: format!("SFTP {what} of {path:?}"),
        after,
    }
}

fn map_error(what: &str, path: &str, after: Duration, e: SftpClientError) -> SshError {
    match e {
        SftpClientError::Status(s) if s.status_code == StatusCode::NoSuchFile => {
            SshError::NotFound { path: path.into() }
        }
        SftpClientError::Timeout => timeout(what, path, after),
        // The SFTP channel's sender or receiver is gone: the session ended under us.
        SftpClientError::IO(detail) => SshError::SftpConnectionLost {
            path: path.into(),
            what: what.into(),
            detail,
        },
        other => SshError::Sftp {
            path: path.into(),
            message: format!("{what}: {other}"),
        },
    }
}

/// File reads and writes report through `io::Error`; the SFTP error is often inside.
fn map_io_error(what: &str, path: &str, after: Duration, e: io::Error) -> SshError {
    if e.kind() == io::ErrorKind::TimedOut {
        return timeout(what, path, after);
    }
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<SftpClientError>())
    {
        Some(inner) => map_error(what, path, after, inner.clone()),
        None if matches!(
            e.kind(),
            io::ErrorKind::BrokenPipe
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::UnexpectedEof
                | io::ErrorKind::NotConnected
        ) =>
        {
            SshError::SftpConnectionLost {
                path: path.into(),
                what: what.into(),
                detail: e.to_string(),
            }
        }
        None => SshError::Sftp {
            path: path.into(),
            message: format!("{what}: {e}"),
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use russh_sftp::protocol::Status;

    #[test]
    fn a_lost_channel_is_transient_and_a_refusal_is_not() {
        let d = Duration::from_secs(1);
        let lost = map_error(
            "read",
            "x.backup",
            d,
            SftpClientError::IO("sender dropped".into()),
        );
        assert!(lost.is_transient(), "{lost}");
        assert!(
            lost.to_string().contains("connection was lost during read"),
            "{lost}"
        );
        let eof = map_io_error(
            "read",
            "x",
            d,
            io::Error::from(io::ErrorKind::UnexpectedEof),
        );
        assert!(eof.is_transient(), "{eof}");
        let denied = map_error("write", "x", d, status(StatusCode::PermissionDenied));
        assert!(!denied.is_transient(), "{denied}");
    }

    fn status(code: StatusCode) -> SftpClientError {
        SftpClientError::Status(Status {
            id: 1,
            status_code: code,
            error_message: "msg".into(),
            language_tag: "en".into(),
        })
    }

    #[test]
    fn statuses_map_to_typed_errors() {
        let after = Duration::from_secs(1);
        assert!(matches!(
            map_error("stat", "x", after, status(StatusCode::NoSuchFile)),
            SshError::NotFound { path } if path == "x"
        ));
        let denied = map_error("open", "x", after, status(StatusCode::PermissionDenied));
        assert!(matches!(&denied, SshError::Sftp { .. }), "{denied}");
        assert!(matches!(
            map_error("open", "x", after, SftpClientError::Timeout),
            SshError::Timeout { .. }
        ));
        let wrapped = io::Error::other(status(StatusCode::NoSuchFile));
        assert!(matches!(
            map_io_error("read", "x", after, wrapped),
            SshError::NotFound { .. }
        ));
        let plain = io::Error::other("boom");
        assert!(matches!(
            map_io_error("read", "x", after, plain),
            SshError::Sftp { message, .. } if message == "read: boom"
        ));
    }
}
