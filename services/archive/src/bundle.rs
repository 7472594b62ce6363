//! Git bundles of a tenant's config history, for audit bundles (`docs/auditing.md` §8):
//! writing one (`# v2 git bundle`, `refs/heads/main` and `HEAD`, a complete pack built by libgit2's
//! pack builder, so no `git` binary is needed) and reading one back into a scratch bare
//! repository to resolve the config references of events.

use std::io::Write;
use std::path::{Path, PathBuf};

use git2::{ObjectType, Oid, Repository};

use crate::error::ArchiveError;
use crate::{Archive, BRANCH};

const HEADER: &[u8] = b"# v2 git bundle\n";

impl Archive {
    /// Writes the tenant's whole history on `main` as a git bundle to `out`; returns the
    /// head commit, or `None` (nothing written) when the tenant has no history.
    pub fn write_bundle(
        &self,
        tenant: netledger_domain::ids::TenantId,
        out: &mut dyn Write,
    ) -> Result<Option<String>, ArchiveError> {
        let Some(repo) = self.repo(tenant)? else {
            return Ok(None);
        };
        let Some(head) = repo.head()? else {
            return Ok(None);
        };
        let err = |op| {
            let path = repo.path.clone();
            move |source| ArchiveError::Git {
                repo: path,
                op,
                source,
            }
        };
        let io = |e: std::io::Error| ArchiveError::Io {
            action: "write git bundle",
            path: repo.path.clone(),
            source: e,
        };
        out.write_all(HEADER).map_err(io)?;
        // HEAD too, so that `git clone` checks the branch out.
        out.write_all(format!("{head} {BRANCH}\n{head} HEAD\n\n").as_bytes())
            .map_err(io)?;
        let mut walk = repo.git.revwalk().map_err(err("walk history"))?;
        walk.push(head).map_err(err("walk history"))?;
        let mut pack = repo.git.packbuilder().map_err(err("build pack"))?;
        pack.insert_walk(&mut walk).map_err(err("build pack"))?;
        let mut failed = None;
        pack.foreach(|chunk| match out.write_all(chunk) {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        })
        .map_err(|e| match failed.take() {
            Some(io_err) => io(io_err),
            None => err("write pack")(e),
        })?;
        Ok(Some(head.to_string()))
    }
}

/// A git bundle unpacked into a scratch bare repository (removed on drop).
pub struct GitBundle {
    repo: Repository,
    head: Oid,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for GitBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitBundle")
            .field("head", &self.head)
            .finish()
    }
}

/// Why a git bundle could not be read.
#[derive(Debug, thiserror::Error)]
#[error("not a readable git bundle: {0}")]
pub struct BadBundle(String);

impl GitBundle {
    /// Unpacks `bytes` (a v2 git bundle with one `refs/heads/main` reference and no
    /// prerequisites) under `scratch` (a fresh temporary directory inside it).
    pub fn open(bytes: &[u8], scratch: &Path) -> Result<Self, BadBundle> {
        let bad = |what: &str| BadBundle(what.to_owned());
        let rest = bytes
            .strip_prefix(HEADER)
            .ok_or_else(|| bad("it does not start with `# v2 git bundle`"))?;
        let mut head = None;
        let mut at = 0;
        loop {
            let end = rest[at..]
                .iter()
                .position(|b| *b == b'\n')
                .ok_or_else(|| bad("the header does not end"))?;
            let line = &rest[at..at + end];
            at += end + 1;
            if line.is_empty() {
                break;
            }
            let line = std::str::from_utf8(line).map_err(|_| bad("the header is not UTF-8"))?;
            if line.starts_with('-') {
                return Err(bad("it has prerequisites (it is not complete)"));
            }
            match line.split_once(' ') {
                Some((id, name)) if name == BRANCH && head.is_none() => {
                    head = Some(Oid::from_str(id).map_err(|_| bad("bad reference id"))?);
                }
                // HEAD may name the same commit (what `git clone` checks out).
                Some((_, "HEAD")) => {}
                _ => return Err(bad("its references are not refs/heads/main (and HEAD)")),
            }
        }
        let head = head.ok_or_else(|| bad("it has no refs/heads/main"))?;
        let dir = tempfile::Builder::new()
            .prefix("netledger-bundle-")
            .tempdir_in(scratch)
            .map_err(|e| BadBundle(format!("scratch directory: {e}")))?;
        let repo = Repository::init_bare(dir.path()).map_err(|e| BadBundle(e.to_string()))?;
        {
            let odb = repo.odb().map_err(|e| BadBundle(e.to_string()))?;
            let mut writer = odb.packwriter().map_err(|e| BadBundle(e.to_string()))?;
            writer
                .write_all(&rest[at..])
                .map_err(|e| BadBundle(format!("pack: {e}")))?;
            writer
                .commit()
                .map_err(|e| BadBundle(format!("pack: {}", e.message())))?;
        }
        repo.find_commit(head)
            .map_err(|_| bad("its refs/heads/main commit is not in the pack"))?;
        Ok(Self {
            repo,
            head,
            _dir: dir,
        })
    }

    /// The bundle's `refs/heads/main`.
    pub fn head(&self) -> String {
        self.head.to_string()
    }

    /// The SHA-256 (lowercase hex) of `path` in `commit`; `Err` names what is missing.
    pub fn file_sha256(&self, commit: &str, path: &str) -> Result<String, String> {
        let id = Oid::from_str(commit)
            .ok()
            .filter(|_| commit.len() == 40)
            .ok_or_else(|| format!("`{commit}` is not a commit id"))?;
        let c = self
            .repo
            .find_commit(id)
            .map_err(|_| format!("commit {commit} is not in the config bundle"))?;
        let tree = c.tree().map_err(|e| e.message().to_owned())?;
        let entry = tree
            .get_path(&PathBuf::from(path))
            .map_err(|_| format!("commit {commit} has no {path}"))?;
        if entry.kind() != Some(ObjectType::Blob) {
            return Err(format!("{path} in commit {commit} is not a file"));
        }
        let blob = self
            .repo
            .find_blob(entry.id())
            .map_err(|e| e.message().to_owned())?;
        Ok(crate::blob::sha256_hex(blob.content()))
    }
}
