//! The crate's error type: every failure names the tenant, device, commit or path it
//! concerns and, where there is one, the fix.

use std::fmt;
use std::path::PathBuf;

use netledger_domain::ids::{DeviceId, TenantId};

/// What differs between git and an event (see [`crate::Archive::verify`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// The stored file's SHA-256 is not the one the event carries.
    Sha256 {
        /// What the event says.
        expected: String,
        /// What git holds.
        found: String,
    },
    /// The commit does not exist in the tenant's repository.
    CommitMissing,
    /// The commit exists but is not on branch `main` (never published: a lost concurrent
    /// attempt or a foreign object).
    NotOnHistory,
    /// The commit does not hold a file for the device.
    FileMissing,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Sha256 { expected, found } => {
                write!(f, "the event says sha256 {expected}, git holds {found}")
            }
            Mismatch::CommitMissing => write!(f, "the commit does not exist in git"),
            Mismatch::NotOnHistory => write!(f, "the commit is not on branch main"),
            Mismatch::FileMissing => write!(f, "the commit holds no file for the device"),
        }
    }
}

/// Errors of the config archive.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// A filesystem operation failed.
    #[error("{action} {path} failed (check that the archive root exists and is writable)")]
    Io {
        /// What was being done (`create directory`, `write blob`, ...).
        action: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A git (libgit2) operation failed.
    #[error("git: {op} in {repo} failed")]
    Git {
        /// The repository.
        repo: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The cause.
        #[source]
        source: git2::Error,
    },
    /// The export text does not parse; nothing was recorded.
    #[error("the export does not parse as RouterOS export text; nothing was recorded")]
    Parse {
        /// The parse error (line, column, what).
        #[source]
        source: rosconfig::ParseError,
    },
    /// The export holds no configuration at all.
    #[error(
        "the export holds no configuration lines (empty or truncated output?); nothing was \
         recorded: take the export again"
    )]
    EmptyExport,
    /// A commit id given by a caller is malformed.
    #[error("`{given}` is not a commit id: {reason} (give 4 to 40 hexadecimal digits)")]
    BadCommitId {
        /// The refused text (truncated to 80 characters).
        given: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A commit id prefix matches several objects.
    #[error(
        "commit id prefix `{given}` is ambiguous in tenant {tenant}'s repository; give more digits"
    )]
    AmbiguousCommitId {
        /// Tenant.
        tenant: TenantId,
        /// The prefix.
        given: String,
    },
    /// No such commit in the tenant's repository.
    #[error("commit {commit} does not exist in tenant {tenant}'s config history")]
    CommitNotFound {
        /// Tenant.
        tenant: TenantId,
        /// The id as given.
        commit: String,
    },
    /// The object exists but is not a commit.
    #[error("{commit} in tenant {tenant}'s repository is a {kind}, not a commit")]
    NotACommit {
        /// Tenant.
        tenant: TenantId,
        /// The id as given.
        commit: String,
        /// The object's kind.
        kind: String,
    },
    /// The commit exists but was never published on branch `main`.
    #[error(
        "commit {commit} is not on branch main of tenant {tenant} (an abandoned concurrent \
         attempt or a foreign object); use a commit id from a recorded event or `versions`"
    )]
    NotOnHistory {
        /// Tenant.
        tenant: TenantId,
        /// Full commit id.
        commit: String,
    },
    /// The commit holds no file for the device.
    #[error("device {device} has no config in commit {commit} of tenant {tenant}")]
    DeviceNotInCommit {
        /// Tenant.
        tenant: TenantId,
        /// Device.
        device: DeviceId,
        /// Full commit id.
        commit: String,
    },
    /// A stored file is not what the archive writes (not UTF-8, not JSON).
    #[error("{path} in commit {commit} of tenant {tenant} is corrupt: {reason}")]
    CorruptFile {
        /// Tenant.
        tenant: TenantId,
        /// Full commit id.
        commit: String,
        /// Path in the tree.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Git and an event disagree.
    #[error(
        "git and the event disagree for device {device} of tenant {tenant} at commit {commit}: {what}"
    )]
    Mismatch {
        /// Tenant.
        tenant: TenantId,
        /// Device.
        device: DeviceId,
        /// The commit id as the event gave it.
        commit: String,
        /// What differs.
        what: Mismatch,
    },
    /// The branch kept moving or stayed locked through every attempt.
    #[error(
        "gave up committing to {repo} after {attempts} attempts: branch main kept moving or \
         {lock} stayed locked; if no netledger process is writing to this repository, the \
         lock file is stale (a killed process): remove it"
    )]
    Contended {
        /// The repository.
        repo: PathBuf,
        /// Attempts made.
        attempts: u32,
        /// The branch's lock file.
        lock: PathBuf,
    },
    /// A queued commit was not answered by the thread that committed the queue (a bug in
    /// the group commit; the commit may or may not have been made).
    #[error(
        "the commit queued for {repo} got no answer from the group commit (a bug); retry the \
         snapshot: a repeated snapshot makes no second commit"
    )]
    Unanswered {
        /// The repository.
        repo: PathBuf,
    },
    /// A checkpoint for another tenant was given.
    #[error(
        "checkpoint {seq} belongs to tenant {found}, not to tenant {expected}; publish it into its own tenant's repository"
    )]
    CheckpointTenant {
        /// The tenant asked for.
        expected: TenantId,
        /// The checkpoint's tenant.
        found: TenantId,
        /// Checkpoint sequence number.
        seq: i64,
    },
    /// A checkpoint with this sequence number was already published with other content.
    #[error(
        "checkpoint {seq} of tenant {tenant} is already published at {path} with different \
         content; refusing to overwrite it (the signed history differs from what was \
         published: investigate before going on)"
    )]
    CheckpointConflict {
        /// Tenant.
        tenant: TenantId,
        /// Sequence number.
        seq: i64,
        /// Path in the repository.
        path: String,
    },
    /// A checkpoint that cannot be published (sequence number below 1).
    #[error("checkpoint sequence number {seq} is invalid (sequence numbers start at 1)")]
    BadCheckpoint {
        /// The sequence number.
        seq: i64,
    },
    /// A sha256 given by a caller is malformed.
    #[error("`{given}` is not a sha256 (give 64 lowercase hexadecimal digits)")]
    BadSha256 {
        /// The refused text (truncated to 80 characters).
        given: String,
    },
    /// No blob with this hash.
    #[error("blob {sha256} of tenant {tenant} does not exist at {path}")]
    BlobNotFound {
        /// Tenant.
        tenant: TenantId,
        /// Requested hash.
        sha256: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A blob's content does not hash to its name.
    #[error("blob {path} is corrupt: its content hashes to {found}; restore it from a backup")]
    BlobCorrupt {
        /// The file.
        path: PathBuf,
        /// Hash of what is there.
        found: String,
    },
}

/// Truncates caller-supplied text for an error message.
pub(crate) fn shorten(s: &str) -> String {
    s.chars().take(80).collect()
}
