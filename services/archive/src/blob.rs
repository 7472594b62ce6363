//! Content-addressed files outside git for binary backups: `<root>/<tenant>/blobs/<sha256>`,
//! written atomically (temporary file in the same directory, then rename).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::{ArchiveError, shorten};

/// Lowercase hex SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Whether `s` is a lowercase hex SHA-256 (the only thing ever joined to a blob path).
pub(crate) fn check_sha256(s: &str) -> Result<(), ArchiveError> {
    if s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(ArchiveError::BadSha256 { given: shorten(s) })
    }
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ArchiveError {
    let path = path.to_path_buf();
    move |source| ArchiveError::Io {
        action,
        path,
        source,
    }
}

/// Writes `bytes` to `dir/<sha256>` atomically; returns the hash. Writing the same bytes
/// again replaces the file with identical content (and repairs a damaged one).
pub(crate) fn store(dir: &Path, bytes: &[u8], fsync: bool) -> Result<String, ArchiveError> {
    fs::create_dir_all(dir).map_err(io("create directory", dir))?;
    let sha = sha256_hex(bytes);
    let dest = dir.join(&sha);
    let tmp = dir.join(format!(".tmp-{sha}-{}", Uuid::new_v4().simple()));
    let write = || -> Result<(), ArchiveError> {
        let mut f = fs::File::create(&tmp).map_err(io("create blob", &tmp))?;
        f.write_all(bytes).map_err(io("write blob", &tmp))?;
        if fsync {
            f.sync_all().map_err(io("sync blob", &tmp))?;
        }
        fs::rename(&tmp, &dest).map_err(io("rename blob into place", &dest))?;
        if fsync {
            sync_dir(dir)?;
        }
        Ok(())
    };
    match write() {
        Ok(()) => Ok(sha),
        Err(e) => {
            // best effort: the temporary file is garbage either way
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Reads `dir/<sha256>` and checks its content against the name.
pub(crate) fn load(dir: &Path, sha256: &str) -> Result<Result<Vec<u8>, PathBuf>, ArchiveError> {
    check_sha256(sha256)?;
    let path = dir.join(sha256);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Err(path)),
        Err(e) => return Err(io("read blob", &path)(e)),
    };
    let found = sha256_hex(&bytes);
    if found != sha256 {
        return Err(ArchiveError::BlobCorrupt { path, found });
    }
    Ok(Ok(bytes))
}

/// Deletes `dir/<sha256>`; `Ok(false)` when it does not exist.
pub(crate) fn remove(dir: &Path, sha256: &str, fsync: bool) -> Result<bool, ArchiveError> {
    check_sha256(sha256)?;
    let path = dir.join(sha256);
    match fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io("remove blob", &path)(e)),
    }
    if fsync {
        sync_dir(dir)?;
    }
    Ok(true)
}

/// Syncs `dir` itself, so a rename or removal in it is durable.
fn sync_dir(dir: &Path) -> Result<(), ArchiveError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync directory", dir))
}
