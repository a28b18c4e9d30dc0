//! A file's identity without reading it: size, modification time, inode
//! and device (following symlinks). Two equal stamps mean, for any writer
//! that does not fake timestamps, the same content.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    pub len: u64,
    pub mtime_ns: i128,
    pub ino: u64,
    pub dev: u64,
}

impl FileStamp {
    /// The stamp of the file at `path`, `None` if it is not a readable
    /// regular file.
    pub fn of(path: &Path) -> Option<FileStamp> {
        Self::from_metadata(&std::fs::metadata(path).ok()?)
    }

    /// Modified less than 2 s ago (or in the future): another write could
    /// still land within the same timestamp tick and leave the stamp as is.
    pub fn is_recent(&self) -> bool {
        !self.settled_before(std::time::SystemTime::now())
    }

    /// Last modified at least 2 s before `t` (git's "racily clean" margin):
    /// a read at `t` saw the content this stamp stands for.
    pub fn settled_before(&self, t: std::time::SystemTime) -> bool {
        let t = t
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        t - self.mtime_ns >= 2_000_000_000
    }

    pub fn from_metadata(m: &std::fs::Metadata) -> Option<FileStamp> {
        m.is_file().then(|| FileStamp {
            len: m.len(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ino: m.ino(),
            dev: m.dev(),
        })
    }
}
