//! Config history: one ordinary git repository per tenant (git2), one file per device, a
//! commit per snapshot that changed something; normalised and secret-masked before it is
//! written. Knows nothing of devices' network access, HTTP or the event store.
//!
//! * Layout under the root directory: `<tenant-id>.git` (bare repository, branch `main`)
//!   holding `devices/<device-id>.rsc` and `checkpoints/<seq>.json`; `<tenant-id>/blobs/
//!   <sha256>` for binary backups outside git.
//! * [`Archive::prepare`] is the pure part: export text -> normalised, masked text and its
//!   SHA-256 (what [`Archive::record`] stores, byte for byte).
//! * Several processes may write one repository at once: branch `main` moves only by
//!   compare-and-swap on its old target; a writer that loses rebuilds its tree on the new
//!   head and tries again, so no commit is lost and history stays linear.
//! * Every method blocks (filesystem and libgit2): call it from `spawn_blocking`.
//!
//! See `docs/config-history.md`.

mod blob;
mod bundle;
mod diff;
mod error;
mod message;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use git2::{Commit, ErrorCode, ObjectType, Oid, Repository, RepositoryInitOptions, Tree};
use netledger_domain::audit::Checkpoint;
use netledger_domain::canonical::canonical_json;
use netledger_domain::clock::Clock;
use netledger_domain::device::SnapshotReason;
use netledger_domain::event::Actor;
use netledger_domain::ids::{DeviceId, TenantId, WorkflowId};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

pub use crate::bundle::{BadBundle, GitBundle};
pub use crate::diff::{AttrChange, Change, ConfigDiff, MenuChanges, SemanticDiff};
pub use crate::error::{ArchiveError, Mismatch};

use crate::error::shorten;

/// The branch every tenant repository keeps its history on.
pub const BRANCH: &str = "refs/heads/main";

const FILE_MODE: i32 = 0o100_644;
const TREE_MODE: i32 = 0o040_000;

/// Who took a snapshot, why, and when (goes into the commit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// Who caused it (the commit's author).
    pub actor: Actor,
    /// Why it was taken.
    pub reason: SnapshotReason,
    /// The command or event that caused it.
    pub causation_id: Uuid,
    /// The request or workflow it belongs to.
    pub correlation_id: Uuid,
    /// When it was taken (injected clock): the commit's author and committer time.
    pub at: OffsetDateTime,
    /// RouterOS version the export came from.
    pub routeros_version: String,
    /// The workflow that took it, if any.
    pub workflow_id: Option<WorkflowId>,
}

/// What [`Archive::record`] would store for an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// Normalised, secret-masked export text (the exact file content).
    pub text: String,
    /// Lowercase hex SHA-256 of `text`'s bytes.
    pub sha256: String,
}

/// The outcome of [`Archive::record`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    /// The commit that holds this content: the new commit, or when nothing changed, the
    /// commit that last changed the device's file.
    pub commit: String,
    /// Lowercase hex SHA-256 of the stored file's bytes.
    pub sha256: String,
    /// Whether a new commit was made.
    pub changed: bool,
}

/// One version of a device's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// Commit id.
    pub commit: String,
    /// When the snapshot was taken (the recording time, to the nanosecond when the commit
    /// carries it, else the commit time).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// SHA-256 of the stored file.
    pub sha256: String,
    /// The commit's summary line.
    pub summary: String,
}

/// Settings of an [`Archive`].
#[derive(Clone)]
pub struct ArchiveOptions {
    /// fsync objects, refs and blobs before reporting success (new repositories get
    /// `core.fsyncObjectFiles`). Default on; tests may turn it off.
    pub fsync: bool,
    /// How many times a commit is rebuilt on a moved branch before giving up.
    pub max_attempts: u32,
    /// Time of checkpoint commits; without it they take the time of the branch head (or
    /// the Unix epoch in an empty repository). Snapshots always use [`SnapshotMeta::at`].
    pub clock: Option<Arc<dyn Clock>>,
    /// Called at the commit's crash points, in order: `objects_written` (the chain's objects
    /// are written, not yet synced, the branch not moved), `objects_synced` (they are
    /// durable, the branch not moved) and `branch_moved` (`main` moved, not yet synced).
    /// Only the kill-mid-commit test sets it (its child process dies at a planned point);
    /// `None` otherwise, and nothing configures it.
    pub crash_points: Option<CrashHook>,
}

/// A test's hook at the commit's crash points (see [`ArchiveOptions::crash_points`]).
pub type CrashHook = Arc<dyn Fn(&str) + Send + Sync>;

impl Default for ArchiveOptions {
    fn default() -> Self {
        ArchiveOptions {
            fsync: true,
            max_attempts: 1000,
            clock: None,
            crash_points: None,
        }
    }
}

impl std::fmt::Debug for ArchiveOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveOptions")
            .field("fsync", &self.fsync)
            .field("max_attempts", &self.max_attempts)
            .field("clock", &self.clock.as_ref().map(|_| "set"))
            .field("crash_points", &self.crash_points.as_ref().map(|_| "set"))
            .finish()
    }
}

/// A known fact: at commit `head`, the device's file was last changed by `commit`, to `blob`.
#[derive(Debug, Clone, Copy)]
struct LastChange {
    head: Oid,
    commit: Oid,
    blob: Oid,
}

struct Inner {
    root: PathBuf,
    options: ArchiveOptions,
    last_change: Mutex<HashMap<(TenantId, DeviceId), LastChange>>,
    /// One commit queue per tenant repository within this instance (clones share it):
    /// threads of one process hand their commits to whichever of them holds the tenant's
    /// writer lock, which commits all that are queued as one chain (group commit); other
    /// processes are handled by the compare-and-swap.
    writers: Mutex<HashMap<TenantId, Arc<Writer>>>,
    /// Tenants whose repository configuration was checked (`repo_for_writing`).
    configured: Mutex<std::collections::HashSet<TenantId>>,
}

/// The commit queue of one tenant repository (see [`Archive::commit_retrying`]).
#[derive(Default)]
struct Writer {
    /// Jobs waiting for a leader, each with the slot its result goes to.
    queue: Mutex<Vec<(Job, Arc<Slot>)>>,
    /// Held by the thread that commits the queue (the leader).
    leader: Mutex<()>,
}

/// Where a leader puts the result of a queued job.
#[derive(Default)]
struct Slot(Mutex<Option<Result<Outcome, ArchiveError>>>);

impl Slot {
    fn put(&self, r: Result<Outcome, ArchiveError>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
    }

    fn take(&self) -> Option<Result<Outcome, ArchiveError>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// The tree edit of a commit: gets the tree of the commit it will follow (`None` in an
/// empty repository) and lists every object it writes in the `Vec` (to be made durable
/// before the branch moves).
type EditFn =
    Box<dyn FnMut(&Repo, Option<&Tree<'_>>, &mut Vec<Oid>) -> Result<Edit, ArchiveError> + Send>;

/// Author and committer of a commit (git2 signatures cannot cross threads; the leader
/// builds them).
type SignFn = Box<
    dyn Fn() -> Result<(git2::Signature<'static>, git2::Signature<'static>), git2::Error> + Send,
>;

/// One commit to make: its message, signatures, tree edit, and the objects its submitter
/// already wrote (a blob).
struct Job {
    message: String,
    sign: SignFn,
    edit: EditFn,
    written: Vec<Oid>,
}

/// At most this many queued commits go into one chain.
const MAX_CHAIN: usize = 128;

/// The config-history store. Cheap to clone; all methods block.
#[derive(Clone)]
pub struct Archive {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive")
            .field("root", &self.inner.root)
            .field("options", &self.inner.options)
            .finish()
    }
}

/// What an edit of the branch head's tree decided.
enum Edit {
    /// Nothing to commit.
    Unchanged,
    /// Commit this tree.
    Tree(Oid),
}

/// What the commit loop did.
enum Outcome {
    Committed(Oid),
    /// Nothing to commit at this head.
    Unchanged(Option<Oid>),
}

/// An open tenant repository.
struct Repo {
    git: Repository,
    path: PathBuf,
    tenant: TenantId,
}

fn device_path(device: DeviceId) -> String {
    format!("devices/{device}.rsc")
}

fn checkpoint_name(seq: i64) -> String {
    format!("{seq:012}.json")
}

fn git_time(commit: &Commit<'_>) -> OffsetDateTime {
    let t = commit.time();
    let utc =
        OffsetDateTime::from_unix_timestamp(t.seconds()).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    match time::UtcOffset::from_whole_seconds(t.offset_minutes() * 60) {
        Ok(off) => utc.to_offset(off),
        Err(_) => utc,
    }
}

/// Sleeps a random time below a cap that doubles with each attempt (100 µs .. 6.4 ms).
fn backoff(attempt: u32) {
    let cap_us: u64 = 100u64 << attempt.min(6);
    let r = (Uuid::new_v4().as_u128() as u64) % cap_us.max(1);
    std::thread::sleep(Duration::from_micros(r + 50));
}

/// The error of a queued job that got no answer (cannot happen: see [`Slot`]).
fn e_unanswered(repo: &Repo) -> ArchiveError {
    ArchiveError::Unanswered {
        repo: repo.path.clone(),
    }
}

/// fsyncs every path (files and directories), from up to 16 threads at once; a path that
/// does not exist is skipped.
fn sync_paths(paths: &[PathBuf]) -> Result<(), ArchiveError> {
    fn sync(path: &Path) -> Result<(), ArchiveError> {
        match fs::File::open(path).and_then(|f| f.sync_all()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(ArchiveError::Io {
                action: "sync",
                path: path.to_path_buf(),
                source,
            }),
        }
    }
    if paths.len() <= 1 {
        return paths.iter().try_for_each(|p| sync(p));
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let threads = paths.len().min(16);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(p) = paths.get(i) else {
                            return Ok(());
                        };
                        sync(p)?;
                    }
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join().unwrap_or_else(|_| {
                Err(ArchiveError::Io {
                    action: "sync (thread panicked)",
                    path: paths.first().cloned().unwrap_or_default(),
                    source: std::io::Error::other("fsync thread panicked"),
                })
            })
        })
    })
}

impl Repo {
    fn err(&self, op: &'static str) -> impl FnOnce(git2::Error) -> ArchiveError + use<> {
        let repo = self.path.clone();
        move |source| ArchiveError::Git { repo, op, source }
    }

    fn head(&self) -> Result<Option<Oid>, ArchiveError> {
        match self.git.refname_to_id(BRANCH) {
            Ok(id) => Ok(Some(id)),
            Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(self.err("read branch main")(e)),
        }
    }

    fn commit(&self, id: Oid) -> Result<Commit<'_>, ArchiveError> {
        self.git.find_commit(id).map_err(self.err("read commit"))
    }

    fn tree_entry(&self, tree: &Tree<'_>, path: &str) -> Result<Option<Oid>, ArchiveError> {
        match tree.get_path(Path::new(path)) {
            Ok(e) => Ok(Some(e.id())),
            Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(self.err("look up a path in a tree")(e)),
        }
    }

    /// The blob at `path` in `commit`, if any.
    fn entry(&self, commit: &Commit<'_>, path: &str) -> Result<Option<Oid>, ArchiveError> {
        let tree = commit.tree().map_err(self.err("read tree"))?;
        self.tree_entry(&tree, path)
    }

    fn blob_bytes(&self, id: Oid) -> Result<Vec<u8>, ArchiveError> {
        let b = self.git.find_blob(id).map_err(self.err("read blob"))?;
        Ok(b.content().to_vec())
    }

    /// A tree equal to `root` with `dir/name` set to `blob`; the trees it writes are added
    /// to `written`.
    fn put_file(
        &self,
        root: Option<&Tree<'_>>,
        dir: &str,
        name: &str,
        blob: Oid,
        written: &mut Vec<Oid>,
    ) -> Result<Oid, ArchiveError> {
        let sub = match root.and_then(|t| t.get_name(dir)) {
            Some(e) if e.kind() == Some(ObjectType::Tree) => {
                Some(self.git.find_tree(e.id()).map_err(self.err("read tree"))?)
            }
            _ => None,
        };
        let mut sb = self
            .git
            .treebuilder(sub.as_ref())
            .map_err(self.err("build tree"))?;
        sb.insert(name, blob, FILE_MODE)
            .map_err(self.err("build tree"))?;
        let sub_id = sb.write().map_err(self.err("write tree"))?;
        written.push(sub_id);
        let mut rb = self.git.treebuilder(root).map_err(self.err("build tree"))?;
        rb.insert(dir, sub_id, TREE_MODE)
            .map_err(self.err("build tree"))?;
        let root_id = rb.write().map_err(self.err("write tree"))?;
        written.push(root_id);
        Ok(root_id)
    }

    /// Makes loose objects durable: fsyncs each object file, its directory and `objects/`,
    /// all at once from several threads, so the filesystem commits them together instead
    /// of one journal commit per file (objects that are not loose, because an operator
    /// packed them, are durable already).
    fn sync_objects(&self, ids: &[Oid]) -> Result<(), ArchiveError> {
        let objects = self.path.join("objects");
        let mut paths: Vec<PathBuf> = Vec::with_capacity(ids.len() * 2 + 1);
        for id in ids {
            let hex = id.to_string();
            let dir = objects.join(&hex[..2]);
            paths.push(dir.join(&hex[2..]));
            paths.push(dir);
        }
        paths.push(objects);
        paths.sort();
        paths.dedup();
        sync_paths(&paths)
    }

    /// Makes the branch durable (its file and its directory).
    fn sync_branch(&self) -> Result<(), ArchiveError> {
        let heads = self.path.join("refs").join("heads");
        sync_paths(&[heads.join("main"), heads])
    }

    /// Resolves a caller's commit id (4-40 hex digits) to a commit on branch `main`.
    fn resolve(&self, given: &str) -> Result<Commit<'_>, ArchiveError> {
        let bad = |reason| ArchiveError::BadCommitId {
            given: shorten(given),
            reason,
        };
        if given.len() < 4 || given.len() > 40 {
            return Err(bad("wrong length"));
        }
        if !given.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("not hexadecimal"));
        }
        let not_found = || ArchiveError::CommitNotFound {
            tenant: self.tenant,
            commit: given.to_string(),
        };
        let object = if given.len() == 40 {
            let oid = Oid::from_str(given).map_err(|_| bad("not hexadecimal"))?;
            match self.git.find_object(oid, None) {
                Ok(o) => o,
                Err(e) if e.code() == ErrorCode::NotFound => return Err(not_found()),
                Err(e) => return Err(self.err("find object")(e)),
            }
        } else {
            match self.git.find_object_by_prefix(given, None) {
                Ok(o) => o,
                Err(e) if e.code() == ErrorCode::NotFound => return Err(not_found()),
                Err(e) if e.code() == ErrorCode::Ambiguous => {
                    return Err(ArchiveError::AmbiguousCommitId {
                        tenant: self.tenant,
                        given: given.to_string(),
                    });
                }
                Err(e) => return Err(self.err("find object by prefix")(e)),
            }
        };
        let commit = match object.into_commit() {
            Ok(c) => c,
            Err(o) => {
                return Err(ArchiveError::NotACommit {
                    tenant: self.tenant,
                    commit: given.to_string(),
                    kind: o.kind().map_or("unknown object", |k| k.str()).to_string(),
                });
            }
        };
        let on_history = match self.head()? {
            Some(h) => {
                h == commit.id()
                    || self
                        .git
                        .graph_descendant_of(h, commit.id())
                        .map_err(self.err("check ancestry"))?
            }
            None => false,
        };
        if !on_history {
            return Err(ArchiveError::NotOnHistory {
                tenant: self.tenant,
                commit: commit.id().to_string(),
            });
        }
        Ok(commit)
    }

    /// The text of `path` in `commit`.
    fn text_at(&self, commit: &Commit<'_>, device: DeviceId) -> Result<String, ArchiveError> {
        let path = device_path(device);
        let Some(blob) = self.entry(commit, &path)? else {
            return Err(ArchiveError::DeviceNotInCommit {
                tenant: self.tenant,
                device,
                commit: commit.id().to_string(),
            });
        };
        String::from_utf8(self.blob_bytes(blob)?).map_err(|_| ArchiveError::CorruptFile {
            tenant: self.tenant,
            commit: commit.id().to_string(),
            path,
            reason: "not UTF-8".to_string(),
        })
    }
}

impl Archive {
    /// Opens (creating the directory if needed) an archive rooted at `root`, with default
    /// options (fsync on).
    pub fn open(root: impl Into<PathBuf>) -> Result<Archive, ArchiveError> {
        Archive::open_with(root, ArchiveOptions::default())
    }

    /// Opens an archive with explicit options.
    pub fn open_with(
        root: impl Into<PathBuf>,
        options: ArchiveOptions,
    ) -> Result<Archive, ArchiveError> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(|source| ArchiveError::Io {
            action: "create directory",
            path: root.clone(),
            source,
        })?;
        Ok(Archive {
            inner: Arc::new(Inner {
                root,
                options,
                last_change: Mutex::new(HashMap::new()),
                writers: Mutex::new(HashMap::new()),
                configured: Mutex::new(std::collections::HashSet::new()),
            }),
        })
    }

    /// The archive's root directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The tenant's bare repository, `<root>/<tenant-id>.git`.
    pub fn repo_path(&self, tenant: TenantId) -> PathBuf {
        self.inner.root.join(format!("{tenant}.git"))
    }

    /// The tenant's blob directory, `<root>/<tenant-id>/blobs`.
    pub fn blob_dir(&self, tenant: TenantId) -> PathBuf {
        self.inner.root.join(tenant.to_string()).join("blobs")
    }

    /// Normalises and masks an export; returns what [`Archive::record`] would store and its
    /// SHA-256. Pure: touches nothing (for cheap drift checks). An export with no
    /// configuration lines (empty or truncated output) is refused: recording it would look
    /// like the device lost its whole configuration.
    pub fn prepare(export: &str) -> Result<Prepared, ArchiveError> {
        let text =
            rosconfig::normalise_masked(export).map_err(|source| ArchiveError::Parse { source })?;
        if text.trim().is_empty() {
            return Err(ArchiveError::EmptyExport);
        }
        let sha256 = blob::sha256_hex(text.as_bytes());
        Ok(Prepared { text, sha256 })
    }

    /// Opens the tenant's repository, `None` if it does not exist (reads never create one).
    fn repo(&self, tenant: TenantId) -> Result<Option<Repo>, ArchiveError> {
        let path = self.repo_path(tenant);
        if !path.join("HEAD").exists() {
            return Ok(None);
        }
        let git = Repository::open_bare(&path).map_err(|source| ArchiveError::Git {
            repo: path.clone(),
            op: "open repository",
            source,
        })?;
        Ok(Some(Repo { git, path, tenant }))
    }

    /// Opens the tenant's repository, creating it if needed.
    fn repo_for_writing(&self, tenant: TenantId) -> Result<Repo, ArchiveError> {
        let path = self.repo_path(tenant);
        if !path.join("HEAD").exists() {
            self.init_repo(tenant, &path)?;
            if self.inner.options.fsync {
                // the new repository's directories and its place under the root
                sync_paths(&[
                    self.inner.root.clone(),
                    path.clone(),
                    path.join("objects"),
                    path.join("refs"),
                    path.join("refs").join("heads"),
                ])?;
            }
        }
        let open = || {
            Repository::open_bare(&path).map_err(|source| ArchiveError::Git {
                repo: path.clone(),
                op: "open repository",
                source,
            })
        };
        let mut git = open()?;
        let known = self
            .inner
            .configured
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&tenant);
        if !known {
            // repositories created before the archive synced objects itself ask libgit2 to
            // fsync every object: switch that off once (the archive syncs, batched)
            let per_object = git
                .config()
                .and_then(|c| c.get_bool("core.fsyncObjectFiles"))
                .unwrap_or(false);
            if per_object {
                let set = git
                    .config()
                    .and_then(|mut c| c.set_bool("core.fsyncObjectFiles", false));
                if let Err(e) = set {
                    tracing::warn!(repo = %path.display(), error = %e,
                        "cannot switch off per-object fsync; commits stay slower");
                }
                git = open()?;
            }
            self.inner
                .configured
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(tenant);
        }
        Ok(Repo { git, path, tenant })
    }

    /// Creates the repository in a temporary directory and renames it into place, so a
    /// concurrent opener sees either nothing or a complete repository.
    fn init_repo(&self, tenant: TenantId, path: &Path) -> Result<(), ArchiveError> {
        let tmp = self
            .inner
            .root
            .join(format!(".init-{tenant}-{}.git", Uuid::new_v4().simple()));
        let git_err = |op| {
            let repo = tmp.clone();
            move |source| ArchiveError::Git { repo, op, source }
        };
        let init = || -> Result<(), ArchiveError> {
            let mut opts = RepositoryInitOptions::new();
            opts.bare(true)
                .initial_head("main")
                .mkdir(true)
                .mkpath(false);
            let git = Repository::init_opts(&tmp, &opts).map_err(git_err("init repository"))?;
            let mut cfg = git.config().map_err(git_err("open config"))?;
            // the archive makes objects and the branch durable itself, a whole chain of
            // commits at once (`sync_objects`, `sync_branch`); libgit2 would fsync each
            // object file and its directory in turn
            cfg.set_bool("core.fsyncObjectFiles", false)
                .map_err(git_err("write config"))?;
            cfg.set_bool("core.logAllRefUpdates", false)
                .map_err(git_err("write config"))?;
            fs::write(
                tmp.join("description"),
                format!("netledger config history of tenant {tenant}\n"),
            )
            .map_err(|source| ArchiveError::Io {
                action: "write",
                path: tmp.join("description"),
                source,
            })?;
            Ok(())
        };
        let result = init().and_then(|()| {
            fs::rename(&tmp, path).or_else(|source| {
                // lost the race to a concurrent creator: theirs is as good as ours
                if path.join("HEAD").exists() {
                    Ok(())
                } else {
                    Err(ArchiveError::Io {
                        action: "move new repository into place at",
                        path: path.to_path_buf(),
                        source,
                    })
                }
            })
        });
        if tmp.exists() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result
    }

    /// Commits the tree `job.edit` derives from the branch head, moving `main` by
    /// compare-and-swap; on a conflict, re-reads the head and edits again.
    ///
    /// Group commit: the job is queued on the tenant's [`Writer`]; the thread holding its
    /// leader lock takes up to [`MAX_CHAIN`] queued jobs and commits them as one chain
    /// (each job its own commit, a child of the one before), makes every new object durable
    /// at once, moves `main` once and answers each job. A thread that gets the lock and
    /// finds its job answered returns; otherwise its job is still queued and it leads.
    fn commit_retrying(&self, repo: &Repo, job: Job) -> Result<Outcome, ArchiveError> {
        let writer = {
            let mut m = self.inner.writers.lock().unwrap_or_else(|p| p.into_inner());
            m.entry(repo.tenant).or_default().clone()
        };
        let slot = Arc::new(Slot::default());
        writer
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((job, slot.clone()));
        let _leader = writer.leader.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(result) = slot.take() {
                return result;
            }
            let mut batch: Vec<(Job, Arc<Slot>)> = {
                let mut q = writer.queue.lock().unwrap_or_else(|p| p.into_inner());
                let n = q.len().min(MAX_CHAIN);
                q.drain(..n).collect()
            };
            if batch.is_empty() {
                // cannot happen: a job without an answer is still queued (a leader answers
                // every job it took before it releases the lock)
                return Err(e_unanswered(repo));
            }
            let mut jobs: Vec<&mut Job> = batch.iter_mut().map(|(j, _)| j).collect();
            match self.commit_chain(repo, &mut jobs) {
                Ok(results) => {
                    for ((_, slot), r) in batch.iter().zip(results) {
                        slot.put(r);
                    }
                }
                Err(e) if batch.len() == 1 => {
                    if let Some((_, slot)) = batch.first() {
                        slot.put(Err(e));
                    }
                }
                Err(e) => {
                    // something failed for the chain as a whole: each job on its own, so
                    // each gets its own error (and one bad job cannot fail the others)
                    tracing::debug!(repo = %repo.path.display(), error = %e, size = batch.len(),
                        "chained commit failed; committing one by one");
                    for (job, slot) in &mut batch {
                        let r = self
                            .commit_chain(repo, &mut [job])
                            .and_then(|mut r| r.pop().unwrap_or(Err(e_unanswered(repo))));
                        slot.put(r);
                    }
                }
            }
        }
    }

    /// Reports a commit crash point to the test hook, if any ([`ArchiveOptions::crash_points`]).
    fn crash_point(&self, label: &str) {
        if let Some(hook) = &self.inner.options.crash_points {
            hook(label);
        }
    }

    /// Builds one commit per job, each on the one before, starting at the branch head;
    /// makes the new objects durable and moves `main` from that head to the last one by
    /// compare-and-swap (rebuilding on the new head when another process moved it). One
    /// result per job: its commit, `Unchanged` at the commit it would have followed, or the
    /// error of its edit. `Err` when the chain as a whole failed.
    fn commit_chain(
        &self,
        repo: &Repo,
        jobs: &mut [&mut Job],
    ) -> Result<Vec<Result<Outcome, ArchiveError>>, ArchiveError> {
        let attempts = self.inner.options.max_attempts.max(1);
        for attempt in 0..attempts {
            let head = repo.head()?;
            let mut tip = match head {
                Some(h) => Some(repo.commit(h)?),
                None => None,
            };
            let mut written: Vec<Oid> = Vec::with_capacity(jobs.len() * 4);
            let mut results = Vec::with_capacity(jobs.len());
            for job in jobs.iter_mut() {
                written.extend_from_slice(&job.written);
                let tree = match &tip {
                    Some(c) => Some(c.tree().map_err(repo.err("read tree"))?),
                    None => None,
                };
                let new_tree = match (job.edit)(repo, tree.as_ref(), &mut written) {
                    Err(e) => {
                        results.push(Err(e));
                        continue;
                    }
                    Ok(Edit::Unchanged) => {
                        results.push(Ok(Outcome::Unchanged(tip.as_ref().map(Commit::id))));
                        continue;
                    }
                    Ok(Edit::Tree(t)) => repo.git.find_tree(t).map_err(repo.err("read tree"))?,
                };
                let (author, committer) = match (job.sign)() {
                    Ok(s) => s,
                    Err(e) => {
                        results.push(Err(repo.err("make signature")(e)));
                        continue;
                    }
                };
                let parents: Vec<&Commit<'_>> = tip.iter().collect();
                let id = repo
                    .git
                    .commit(None, &author, &committer, &job.message, &new_tree, &parents)
                    .map_err(repo.err("write commit"))?;
                written.push(id);
                tip = Some(repo.commit(id)?);
                results.push(Ok(Outcome::Committed(id)));
            }
            let new_head = tip.as_ref().map(Commit::id);
            let Some(new_head) = new_head.filter(|n| Some(*n) != head) else {
                return Ok(results);
            };
            self.crash_point("objects_written");
            if self.inner.options.fsync {
                repo.sync_objects(&written)?;
            }
            self.crash_point("objects_synced");
            let moved = match head {
                None => {
                    repo.git
                        .reference(BRANCH, new_head, false, "netledger-archive: first commit")
                }
                Some(h) => repo.git.reference_matching(
                    BRANCH,
                    new_head,
                    true,
                    h,
                    "netledger-archive: commit",
                ),
            };
            match moved {
                Ok(_) => {
                    self.crash_point("branch_moved");
                    if self.inner.options.fsync {
                        repo.sync_branch()?;
                    }
                    return Ok(results);
                }
                Err(e)
                    if matches!(
                        e.code(),
                        ErrorCode::Modified | ErrorCode::Exists | ErrorCode::Locked
                    ) =>
                {
                    tracing::debug!(
                        repo = %repo.path.display(),
                        attempt,
                        code = ?e.code(),
                        "branch main moved or is locked; rebuilding on the new head"
                    );
                    backoff(attempt);
                }
                Err(e) => return Err(repo.err("move branch main")(e)),
            }
        }
        Err(ArchiveError::Contended {
            repo: repo.path.clone(),
            attempts,
            lock: repo.path.join("refs/heads/main.lock"),
        })
    }

    /// Records an export of a device: normalises and masks it, and commits
    /// `devices/<device>.rsc` if the content differs from what the branch holds.
    pub fn record(
        &self,
        tenant: TenantId,
        device: DeviceId,
        export: &str,
        meta: &SnapshotMeta,
    ) -> Result<Recorded, ArchiveError> {
        let prepared = Archive::prepare(export)?;
        self.record_prepared(tenant, device, &prepared, meta)
    }

    /// [`Archive::record`] for text that [`Archive::prepare`] already produced.
    pub fn record_prepared(
        &self,
        tenant: TenantId,
        device: DeviceId,
        prepared: &Prepared,
        meta: &SnapshotMeta,
    ) -> Result<Recorded, ArchiveError> {
        let repo = self.repo_for_writing(tenant)?;
        let path = device_path(device);
        let file = format!("{device}.rsc");
        let blob = repo
            .git
            .blob(prepared.text.as_bytes())
            .map_err(repo.err("write blob"))?;
        let message = message::snapshot(device, meta, &prepared.sha256);
        let (actor, at) = (meta.actor.clone(), meta.at);
        let job = Job {
            message,
            sign: Box::new(move || {
                Ok((
                    message::author(&actor, at)?,
                    message::signature(message::COMMITTER_NAME, message::COMMITTER_EMAIL, at)?,
                ))
            }),
            edit: Box::new(move |repo, tree, written| {
                if let Some(t) = tree
                    && repo.tree_entry(t, &path)? == Some(blob)
                {
                    return Ok(Edit::Unchanged);
                }
                Ok(Edit::Tree(
                    repo.put_file(tree, "devices", &file, blob, written)?,
                ))
            }),
            written: vec![blob],
        };
        let outcome = self.commit_retrying(&repo, job)?;
        let (commit, changed) = match outcome {
            Outcome::Committed(c) => {
                self.remember(
                    tenant,
                    device,
                    LastChange {
                        head: c,
                        commit: c,
                        blob,
                    },
                );
                (c, true)
            }
            Outcome::Unchanged(Some(head)) => (self.last_change(&repo, device, head)?, false),
            Outcome::Unchanged(None) => {
                return Err(ArchiveError::CommitNotFound {
                    tenant,
                    commit: "main".to_string(),
                });
            }
        };
        tracing::debug!(%tenant, %device, %commit, changed, "config snapshot recorded");
        Ok(Recorded {
            commit: commit.to_string(),
            sha256: prepared.sha256.clone(),
            changed,
        })
    }

    fn remember(&self, tenant: TenantId, device: DeviceId, fact: LastChange) {
        let mut m = self
            .inner
            .last_change
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        m.insert((tenant, device), fact);
    }

    /// The commit that last changed the device's file as of `head` (first-parent walk,
    /// stopping early at a commit already known).
    fn last_change(&self, repo: &Repo, device: DeviceId, head: Oid) -> Result<Oid, ArchiveError> {
        let known = {
            let m = self
                .inner
                .last_change
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            m.get(&(repo.tenant, device)).copied()
        };
        let path = device_path(device);
        let mut cur = repo.commit(head)?;
        let blob = repo.entry(&cur, &path)?;
        let found = loop {
            if let Some(k) = known
                && k.head == cur.id()
                && Some(k.blob) == blob
            {
                break k.commit;
            }
            if cur.parent_count() == 0 {
                break cur.id();
            }
            let parent = cur.parent(0).map_err(repo.err("read parent commit"))?;
            if repo.entry(&parent, &path)? != blob {
                break cur.id();
            }
            cur = parent;
        };
        if let Some(b) = blob {
            self.remember(
                repo.tenant,
                device,
                LastChange {
                    head,
                    commit: found,
                    blob: b,
                },
            );
        }
        Ok(found)
    }

    /// The device's stored config in `commit` (a commit on branch `main`).
    pub fn read(
        &self,
        tenant: TenantId,
        device: DeviceId,
        commit: &str,
    ) -> Result<String, ArchiveError> {
        let repo = self.existing(tenant, commit)?;
        let c = repo.resolve(commit)?;
        repo.text_at(&c, device)
    }

    /// The tenant's repository, or `CommitNotFound` for `commit` when it has none.
    fn existing(&self, tenant: TenantId, commit: &str) -> Result<Repo, ArchiveError> {
        self.repo(tenant)?
            .ok_or_else(|| ArchiveError::CommitNotFound {
                tenant,
                commit: shorten(commit),
            })
    }

    /// The versions of a device's config, newest first: the commits on `main` that changed
    /// its file.
    pub fn versions(
        &self,
        tenant: TenantId,
        device: DeviceId,
    ) -> Result<Vec<Version>, ArchiveError> {
        let Some(repo) = self.repo(tenant)? else {
            return Ok(Vec::new());
        };
        let Some(head) = repo.head()? else {
            return Ok(Vec::new());
        };
        let path = device_path(device);
        let mut out = Vec::new();
        let mut cur = repo.commit(head)?;
        let mut cur_blob = repo.entry(&cur, &path)?;
        loop {
            let parent = if cur.parent_count() > 0 {
                Some(cur.parent(0).map_err(repo.err("read parent commit"))?)
            } else {
                None
            };
            let parent_blob = match &parent {
                Some(p) => repo.entry(p, &path)?,
                None => None,
            };
            if let Some(b) = cur_blob
                && cur_blob != parent_blob
            {
                let message = String::from_utf8_lossy(cur.message_bytes()).into_owned();
                out.push(Version {
                    commit: cur.id().to_string(),
                    at: message::recorded_at(&message).unwrap_or_else(|| git_time(&cur)),
                    sha256: blob::sha256_hex(&repo.blob_bytes(b)?),
                    summary: String::from_utf8_lossy(cur.summary_bytes().unwrap_or_default())
                        .into_owned(),
                });
            }
            match parent {
                Some(p) => {
                    cur = p;
                    cur_blob = parent_blob;
                }
                None => break,
            }
        }
        Ok(out)
    }

    /// The device's config as of `at`: the version with the latest recording time not after
    /// `at` (on equal times, the later commit); `None` before the first snapshot.
    pub fn as_of(
        &self,
        tenant: TenantId,
        device: DeviceId,
        at: OffsetDateTime,
    ) -> Result<Option<Version>, ArchiveError> {
        let mut best: Option<Version> = None;
        // newest first: a later entry replaces the best only with a strictly later time
        for v in self.versions(tenant, device)? {
            if v.at <= at && best.as_ref().is_none_or(|b| v.at > b.at) {
                best = Some(v);
            }
        }
        Ok(best)
    }

    /// Diff of the device's config between two commits on `main`.
    pub fn diff(
        &self,
        tenant: TenantId,
        device: DeviceId,
        from: &str,
        to: &str,
    ) -> Result<ConfigDiff, ArchiveError> {
        let repo = self.existing(tenant, from)?;
        let (a, b) = (repo.resolve(from)?, repo.resolve(to)?);
        let (ta, tb) = (repo.text_at(&a, device)?, repo.text_at(&b, device)?);
        let short = |c: &Commit<'_>| {
            let id = c.id().to_string();
            format!("{device}.rsc@{}", &id[..12.min(id.len())])
        };
        ConfigDiff::between(&ta, &tb, &short(&a), &short(&b))
    }

    /// Checks that git holds, at `commit`, a file for the device whose SHA-256 is `sha256`
    /// (what a `ConfigSnapshotRecorded` event carries). `Err(Mismatch)` names what differs.
    pub fn verify(
        &self,
        tenant: TenantId,
        device: DeviceId,
        commit: &str,
        sha256: &str,
    ) -> Result<(), ArchiveError> {
        blob::check_sha256(sha256)?;
        let mismatch = |what| ArchiveError::Mismatch {
            tenant,
            device,
            commit: shorten(commit),
            what,
        };
        let Some(repo) = self.repo(tenant)? else {
            return Err(mismatch(Mismatch::CommitMissing));
        };
        let c = match repo.resolve(commit) {
            Ok(c) => c,
            Err(ArchiveError::CommitNotFound { .. } | ArchiveError::NotACommit { .. }) => {
                return Err(mismatch(Mismatch::CommitMissing));
            }
            Err(ArchiveError::NotOnHistory { .. }) => {
                return Err(mismatch(Mismatch::NotOnHistory));
            }
            Err(e) => return Err(e),
        };
        let Some(b) = repo.entry(&c, &device_path(device))? else {
            return Err(mismatch(Mismatch::FileMissing));
        };
        let found = blob::sha256_hex(&repo.blob_bytes(b)?);
        if found != sha256 {
            return Err(mismatch(Mismatch::Sha256 {
                expected: sha256.to_string(),
                found,
            }));
        }
        Ok(())
    }

    /// Publishes a signed checkpoint as `checkpoints/<seq, 12 digits>.json` (canonical
    /// JSON). Returns the new commit, or `None` if this checkpoint is already published.
    /// A different checkpoint under the same sequence number is refused.
    pub fn publish_checkpoint(
        &self,
        tenant: TenantId,
        checkpoint: &Checkpoint,
    ) -> Result<Option<String>, ArchiveError> {
        let seq = checkpoint.body.seq;
        if checkpoint.body.tenant_id != tenant {
            return Err(ArchiveError::CheckpointTenant {
                expected: tenant,
                found: checkpoint.body.tenant_id,
                seq,
            });
        }
        if seq < 1 {
            return Err(ArchiveError::BadCheckpoint { seq });
        }
        let value = serde_json::to_value(checkpoint).map_err(|e| ArchiveError::CorruptFile {
            tenant,
            commit: String::new(),
            path: format!("checkpoints/{}", checkpoint_name(seq)),
            reason: format!("checkpoint does not serialise: {e}"),
        })?;
        let bytes = canonical_json(&value);
        let repo = self.repo_for_writing(tenant)?;
        let name = checkpoint_name(seq);
        let path = format!("checkpoints/{name}");
        let blob = repo.git.blob(&bytes).map_err(repo.err("write blob"))?;
        let at = match &self.inner.options.clock {
            Some(c) => c.now(),
            None => match repo.head()? {
                Some(h) => git_time(&repo.commit(h)?),
                None => OffsetDateTime::UNIX_EPOCH,
            },
        };
        let message = message::checkpoint(checkpoint, at);
        let job = Job {
            message,
            sign: Box::new(move || {
                let sig =
                    message::signature(message::COMMITTER_NAME, message::COMMITTER_EMAIL, at)?;
                Ok((sig.clone(), sig))
            }),
            edit: Box::new(move |repo, tree, written| {
                if let Some(t) = tree
                    && let Some(existing) = repo.tree_entry(t, &path)?
                {
                    if existing == blob {
                        return Ok(Edit::Unchanged);
                    }
                    return Err(ArchiveError::CheckpointConflict {
                        tenant,
                        seq,
                        path: path.clone(),
                    });
                }
                Ok(Edit::Tree(repo.put_file(
                    tree,
                    "checkpoints",
                    &name,
                    blob,
                    written,
                )?))
            }),
            written: vec![blob],
        };
        let outcome = self.commit_retrying(&repo, job)?;
        Ok(match outcome {
            Outcome::Committed(c) => {
                tracing::debug!(%tenant, seq, commit = %c, "checkpoint published to git");
                Some(c.to_string())
            }
            Outcome::Unchanged(_) => None,
        })
    }

    /// The checkpoints published in the tenant's repository, by sequence number.
    pub fn checkpoints(&self, tenant: TenantId) -> Result<Vec<Checkpoint>, ArchiveError> {
        let Some(repo) = self.repo(tenant)? else {
            return Ok(Vec::new());
        };
        let Some(head) = repo.head()? else {
            return Ok(Vec::new());
        };
        let commit = repo.commit(head)?;
        let tree = commit.tree().map_err(repo.err("read tree"))?;
        let Some(dir) = repo.tree_entry(&tree, "checkpoints")? else {
            return Ok(Vec::new());
        };
        let dir = repo.git.find_tree(dir).map_err(repo.err("read tree"))?;
        let mut out = Vec::new();
        for e in dir.iter() {
            let name = String::from_utf8_lossy(e.name_bytes()).into_owned();
            let bytes = repo.blob_bytes(e.id())?;
            let cp: Checkpoint =
                serde_json::from_slice(&bytes).map_err(|err| ArchiveError::CorruptFile {
                    tenant,
                    commit: head.to_string(),
                    path: format!("checkpoints/{name}"),
                    reason: format!("not a checkpoint: {err}"),
                })?;
            out.push(cp);
        }
        out.sort_by_key(|c| c.body.seq);
        Ok(out)
    }

    /// Stores a binary backup of a device outside git, as `<root>/<tenant>/blobs/<sha256>`
    /// (atomically: temporary file, then rename); returns the SHA-256.
    pub fn store_blob(
        &self,
        tenant: TenantId,
        device: DeviceId,
        bytes: &[u8],
    ) -> Result<String, ArchiveError> {
        let sha = blob::store(&self.blob_dir(tenant), bytes, self.inner.options.fsync)?;
        tracing::debug!(%tenant, %device, sha256 = %sha, len = bytes.len(), "blob stored");
        Ok(sha)
    }

    /// Deletes a blob (key rotation deletes the file it superseded); `false` when there
    /// was none.
    pub fn remove_blob(&self, tenant: TenantId, sha256: &str) -> Result<bool, ArchiveError> {
        blob::remove(&self.blob_dir(tenant), sha256, self.inner.options.fsync)
    }

    /// Loads a blob and checks that its content hashes to `sha256`.
    pub fn load_blob(&self, tenant: TenantId, sha256: &str) -> Result<Vec<u8>, ArchiveError> {
        match blob::load(&self.blob_dir(tenant), sha256)? {
            Ok(bytes) => Ok(bytes),
            Err(path) => Err(ArchiveError::BlobNotFound {
                tenant,
                sha256: sha256.to_string(),
                path,
            }),
        }
    }
}
