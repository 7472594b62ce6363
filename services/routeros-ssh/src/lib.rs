//! RouterOS over SSH and SFTP: the client Netledger uses for files and console output on
//! RouterOS 6 and 7.0-7.12. Depends on nothing of ours.
//!
//! Why a second transport next to the binary API (`routeros`): before 7.13 the API cannot
//! read a file in chunks (`/file/read` is 7.13+), before 7.9 it cannot create one, and on
//! v6 `contents` caps a read at about 4 KB (ROUTEROS-NOTES §5.9); `/export` prints nothing
//! over the API at all (§5.11). Over SSH, Netledger runs `/export` and reads exports of any
//! size, and over SFTP it downloads backups and uploads change scripts and firmware packages.
//!
//! - [`session`]: [`SshSession`]: connect (address guard, host-key policy, password or
//!   public key), bounded [`SshSession::exec`] and checked [`SshSession::run`].
//! - [`sftp`]: [`Sftp`]: bounded whole-file read, write, stat, remove.
//! - [`hostkey`]: host-key trust: SHA-256 pins in hex or OpenSSH form, explicit
//!   trust-on-first-use that always reports the key.
//! - [`config`]: [`SshConfig`], credentials with redacted `Debug`, [`AddressGuard`].
//! - [`console`]: recognising RouterOS console error lines in command output.
//! - [`error`]: the crate's [`SshError`].
//!
//! Everything is bounded: connecting (resolution, TCP, key exchange, authentication) by
//! one connect timeout; each command by the command timeout and a cap on its output; each
//! SFTP request and transfer chunk by the command timeout, a whole transfer by a minimum
//! rate, a download by a cap on its size. Exceeding a bound is a typed error, never a
//! silently truncated result.

pub mod config;
pub mod console;
pub mod error;
pub mod hostkey;
pub mod session;
pub mod sftp;

pub use config::{AddressGuard, ClientKey, Password, SshAuth, SshConfig};
pub use console::{CONSOLE_ERROR_PREFIXES, console_error};
pub use error::{Result, SshError, command_path};
pub use hostkey::{Fingerprint, FingerprintParseError, HostKey, HostKeyPolicy, Trust};
pub use session::{ExecOutput, SshSession};
pub use sftp::Sftp;
