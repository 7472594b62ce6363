//! The SFTP subsystem (russh-sftp server) over a device's `/file`: the file names are the
//! paths (`flash/x.rsc` is `/flash/x.rsc`), directories are the `directory` files and the
//! prefixes of names. Open, read, write, close, stat, lstat, fstat, opendir, readdir,
//! remove, realpath, rename, mkdir and rmdir; setstat/fsetstat are accepted and ignored
//! (devsim has no modes or times to set).
//!
//! Byte-exact: a download returns the file's bytes; an upload is stored when its handle
//! is closed ([`Device::file_uploaded`]: typed by name, so an `.npk` is a `package` the next
//! reboot installs; a `*.auto.rsc` runs). Attributes: size, mode 0644 for files and 0755
//! for directories, uid/gid 0, both times the file's creation time. The `delay_ms` fault
//! delays every reply. Users and policies are not modelled: every logged-in user may use
//! SFTP (RouterOS needs policy `ftp`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use russh_sftp::protocol::{
    Attrs, Data, File, FileAttributes, Handle, Name, OpenFlags, Status, StatusCode, Version,
};
use russh_sftp::server::StatusReply;

use crate::device::Device;

/// What an open handle refers to.
#[derive(Debug)]
enum Open {
    /// A file: its name, its bytes (a snapshot when read, the new contents when written).
    File {
        name: String,
        data: Vec<u8>,
        write: bool,
    },
    /// A directory being listed; `done` once its entries were sent.
    Dir { path: String, done: bool },
}

/// One SFTP session of a logged-in user.
#[derive(Debug)]
pub(crate) struct Sftp {
    dev: Arc<Device>,
    user: String,
    handles: HashMap<String, Open>,
    next: u64,
}

/// `/a/./b/../c` → `a/c`; the root is the empty path.
fn norm(path: &str) -> String {
    let mut segs: Vec<&str> = Vec::new();
    for s in path.split('/') {
        match s {
            "" | "." => {}
            ".." => {
                segs.pop();
            }
            s => segs.push(s),
        }
    }
    segs.join("/")
}

fn status(id: u32) -> Status {
    Status {
        id,
        status_code: StatusCode::Ok,
        error_message: "Ok".to_string(),
        language_tag: "en-US".to_string(),
    }
}

fn no_such(path: &str) -> StatusReply {
    StatusCode::NoSuchFile.with_message(format!("no such file {path}"))
}

fn file_attrs(size: u64, time: Duration) -> FileAttributes {
    let t = u32::try_from(time.as_secs()).unwrap_or(u32::MAX);
    FileAttributes {
        size: Some(size),
        uid: Some(0),
        user: None,
        gid: Some(0),
        group: None,
        permissions: Some(0o100_644),
        atime: Some(t),
        mtime: Some(t),
    }
}

fn dir_attrs(time: Duration) -> FileAttributes {
    FileAttributes {
        size: Some(0),
        permissions: Some(0o040_755),
        ..file_attrs(0, time)
    }
}

/// What a path is on the device.
enum Node {
    File { size: u64, time: Duration },
    Dir { time: Duration },
}

impl Sftp {
    pub(crate) fn new(dev: Arc<Device>, user: String) -> Sftp {
        Sftp {
            dev,
            user,
            handles: HashMap::new(),
            next: 1,
        }
    }

    async fn pause(&self) {
        let ms = self.dev.faults().delay_ms;
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }

    fn handle(&mut self, open: Open) -> String {
        let h = format!("h{}", self.next);
        self.next += 1;
        self.handles.insert(h.clone(), open);
        h
    }

    /// The file or directory at `p` (normalised).
    fn node(&self, p: &str) -> Option<Node> {
        let st = self.dev.lock();
        if p.is_empty() {
            return Some(Node::Dir { time: st.boot_at });
        }
        if let Some(f) = st.file(p) {
            return Some(if f.kind == "directory" {
                Node::Dir { time: f.created }
            } else {
                Node::File {
                    size: f.contents.len() as u64,
                    time: f.created,
                }
            });
        }
        let prefix = format!("{p}/");
        st.files
            .iter()
            .find(|f| f.name.starts_with(&prefix))
            .map(|f| Node::Dir { time: f.created })
    }

    fn attrs_of(&self, path: &str) -> Result<FileAttributes, StatusReply> {
        match self.node(&norm(path)) {
            Some(Node::File { size, time }) => Ok(file_attrs(size, time)),
            Some(Node::Dir { time }) => Ok(dir_attrs(time)),
            None => Err(no_such(path)),
        }
    }

    /// The entries directly in directory `dir` (normalised).
    fn list(&self, dir: &str) -> Vec<File> {
        let st = self.dev.lock();
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let mut out: Vec<File> = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        for f in &st.files {
            let Some(rest) = f.name.strip_prefix(&prefix) else {
                continue;
            };
            if rest.is_empty() {
                continue;
            }
            let (child, is_dir) = match rest.split_once('/') {
                Some((c, _)) => (c, true),
                None => (rest, f.kind == "directory"),
            };
            if seen.iter().any(|s| s == child) {
                continue;
            }
            seen.push(child.to_string());
            let attrs = if is_dir {
                dir_attrs(f.created)
            } else {
                file_attrs(f.contents.len() as u64, f.created)
            };
            out.push(File::new(child, attrs));
        }
        out
    }
}

impl russh_sftp::server::Handler for Sftp {
    type Error = StatusReply;

    fn unimplemented(&self) -> Self::Error {
        StatusReply::new(StatusCode::OpUnsupported)
    }

    async fn init(
        &mut self,
        _version: u32,
        _extensions: HashMap<String, String>,
    ) -> Result<Version, Self::Error> {
        Ok(Version::new())
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        pflags: OpenFlags,
        _attrs: FileAttributes,
    ) -> Result<Handle, Self::Error> {
        self.pause().await;
        let name = norm(&filename);
        let node = self.node(&name);
        if name.is_empty() || matches!(node, Some(Node::Dir { .. })) {
            return Err(StatusCode::Failure.with_message(format!("{filename} is a directory")));
        }
        let write = pflags.intersects(
            OpenFlags::WRITE | OpenFlags::APPEND | OpenFlags::CREATE | OpenFlags::TRUNCATE,
        );
        let existing: Option<Bytes> = self.dev.lock().file(&name).map(|f| f.contents.clone());
        let data = match (&existing, write) {
            (None, false) => return Err(no_such(&filename)),
            (Some(_), true)
                if pflags.contains(OpenFlags::CREATE) && pflags.contains(OpenFlags::EXCLUDE) =>
            {
                return Err(StatusCode::Failure.with_message(format!("{filename} exists")));
            }
            (None, true) if !pflags.contains(OpenFlags::CREATE) => return Err(no_such(&filename)),
            (Some(b), _) if !pflags.contains(OpenFlags::TRUNCATE) => b.to_vec(),
            _ => Vec::new(),
        };
        let handle = self.handle(Open::File { name, data, write });
        Ok(Handle { id, handle })
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, Self::Error> {
        self.pause().await;
        match self.handles.remove(&handle) {
            Some(Open::File {
                name,
                data,
                write: true,
            }) => {
                self.dev.file_uploaded(&self.user, &name, Bytes::from(data));
                Ok(status(id))
            }
            Some(_) => Ok(status(id)),
            None => Err(StatusCode::Failure.with_message("no such handle")),
        }
    }

    async fn read(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        len: u32,
    ) -> Result<Data, Self::Error> {
        self.pause().await;
        let Some(Open::File { data, .. }) = self.handles.get(&handle) else {
            return Err(StatusCode::Failure.with_message("no such file handle"));
        };
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        if start >= data.len() {
            return Err(StatusReply::new(StatusCode::Eof));
        }
        let end = start.saturating_add(len as usize).min(data.len());
        Ok(Data {
            id,
            data: data[start..end].to_vec(),
        })
    }

    async fn write(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        bytes: Vec<u8>,
    ) -> Result<Status, Self::Error> {
        self.pause().await;
        let Some(Open::File { data, write, .. }) = self.handles.get_mut(&handle) else {
            return Err(StatusCode::Failure.with_message("no such file handle"));
        };
        if !*write {
            return Err(StatusCode::PermissionDenied.with_message("not open for writing"));
        }
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let end = start.saturating_add(bytes.len());
        if end > crate::fetch::MAX_BODY {
            return Err(StatusCode::Failure.with_message("file too big"));
        }
        if data.len() < end {
            data.resize(end, 0);
        }
        data[start..end].copy_from_slice(&bytes);
        Ok(status(id))
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        self.pause().await;
        Ok(Attrs {
            id,
            attrs: self.attrs_of(&path)?,
        })
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        self.pause().await;
        Ok(Attrs {
            id,
            attrs: self.attrs_of(&path)?,
        })
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, Self::Error> {
        self.pause().await;
        let attrs = match self.handles.get(&handle) {
            Some(Open::File { name, data, .. }) => {
                let time = self
                    .dev
                    .lock()
                    .file(name)
                    .map(|f| f.created)
                    .unwrap_or_default();
                file_attrs(data.len() as u64, time)
            }
            Some(Open::Dir { path, .. }) => self.attrs_of(&path.clone())?,
            None => return Err(StatusCode::Failure.with_message("no such handle")),
        };
        Ok(Attrs { id, attrs })
    }

    async fn setstat(
        &mut self,
        id: u32,
        path: String,
        _attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        self.attrs_of(&path)?;
        Ok(status(id))
    }

    async fn fsetstat(
        &mut self,
        id: u32,
        handle: String,
        _attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        if !self.handles.contains_key(&handle) {
            return Err(StatusCode::Failure.with_message("no such handle"));
        }
        Ok(status(id))
    }

    async fn opendir(&mut self, id: u32, path: String) -> Result<Handle, Self::Error> {
        self.pause().await;
        let p = norm(&path);
        match self.node(&p) {
            Some(Node::Dir { .. }) => {}
            Some(Node::File { .. }) => {
                return Err(StatusCode::Failure.with_message(format!("{path} is not a directory")));
            }
            None => return Err(no_such(&path)),
        }
        let handle = self.handle(Open::Dir {
            path: p,
            done: false,
        });
        Ok(Handle { id, handle })
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Result<Name, Self::Error> {
        self.pause().await;
        let path = match self.handles.get_mut(&handle) {
            Some(Open::Dir { done: false, path }) => path.clone(),
            Some(Open::Dir { done: true, .. }) => return Err(StatusReply::new(StatusCode::Eof)),
            _ => return Err(StatusCode::Failure.with_message("no such directory handle")),
        };
        let files = self.list(&path);
        if let Some(Open::Dir { done, .. }) = self.handles.get_mut(&handle) {
            *done = true;
        }
        if files.is_empty() {
            return Err(StatusReply::new(StatusCode::Eof));
        }
        Ok(Name { id, files })
    }

    async fn remove(&mut self, id: u32, filename: String) -> Result<Status, Self::Error> {
        self.pause().await;
        let name = norm(&filename);
        let removed = {
            let mut st = self.dev.lock();
            let before = st.files.len();
            st.files.retain(|f| f.name != name || f.kind == "directory");
            st.files.len() != before
        };
        if removed {
            Ok(status(id))
        } else {
            Err(no_such(&filename))
        }
    }

    async fn mkdir(
        &mut self,
        id: u32,
        path: String,
        _attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        self.pause().await;
        let name = norm(&path);
        if name.is_empty() || self.node(&name).is_some() {
            return Err(StatusCode::Failure.with_message(format!("{path} exists")));
        }
        let mut st = self.dev.lock();
        let now = self.dev.now();
        st.put_file(&name, "directory", Bytes::new(), now);
        Ok(status(id))
    }

    async fn rmdir(&mut self, id: u32, path: String) -> Result<Status, Self::Error> {
        self.pause().await;
        let name = norm(&path);
        let prefix = format!("{name}/");
        let mut st = self.dev.lock();
        if st.files.iter().any(|f| f.name.starts_with(&prefix)) {
            return Err(StatusCode::Failure.with_message(format!("{path} is not empty")));
        }
        let before = st.files.len();
        st.files
            .retain(|f| !(f.name == name && f.kind == "directory"));
        if st.files.len() == before {
            return Err(no_such(&path));
        }
        Ok(status(id))
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        self.pause().await;
        Ok(Name {
            id,
            files: vec![File::dummy(format!("/{}", norm(&path)))],
        })
    }

    async fn rename(
        &mut self,
        id: u32,
        oldpath: String,
        newpath: String,
    ) -> Result<Status, Self::Error> {
        self.pause().await;
        let (from, to) = (norm(&oldpath), norm(&newpath));
        let mut st = self.dev.lock();
        if to.is_empty() || st.file(&to).is_some() {
            return Err(StatusCode::Failure.with_message(format!("{newpath} exists")));
        }
        let kind = crate::fetch::file_kind(&to);
        let Some(f) = st.files.iter_mut().find(|f| f.name == from) else {
            return Err(no_such(&oldpath));
        };
        f.name = to;
        if f.kind != "directory" {
            f.kind = kind;
        }
        Ok(status(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(norm("/"), "");
        assert_eq!(norm("."), "");
        assert_eq!(norm("/flash/./x.rsc"), "flash/x.rsc");
        assert_eq!(norm("a/../b"), "b");
        assert_eq!(norm("x.backup"), "x.backup");
    }
}
