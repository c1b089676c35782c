//! Where SST files live: written, listed and deleted through `object_store` (a local file
//! system store rooted at the database directory), read with positioned reads of the local file.
//!
//! Writes go through `object_store` so the placement of files is one abstraction away from
//! S3-style storage; the local store renames a finished temporary file into place, and Strata
//! then syncs the file and its directory, so a file the manifest names is complete and durable.
//! Reads use the local file directly (`pread`), because point lookups issue many small reads
//! and the async object-store path costs a thread hand-off per read.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::file::reader::{ChunkReader, Length};

use crate::error::{Error, Result};
use crate::fault::{self, FaultInjector, IoOp};
use crate::fsutil::sync_dir;

/// The SST files of one database.
#[derive(Debug, Clone)]
pub struct SstStore {
    root: PathBuf,
    store: Arc<dyn ObjectStore>,
    faults: Option<Arc<FaultInjector>>,
}

impl SstStore {
    /// A store rooted at the database directory `root`.
    pub fn new(root: &Path, faults: Option<Arc<FaultInjector>>) -> Result<Self> {
        std::fs::create_dir_all(root.join("sst")).map_err(|e| Error::io(root, e))?;
        let store = LocalFileSystem::new_with_prefix(root).map_err(|e| Error::ObjectStore {
            path: root.display().to_string(),
            message: e.to_string(),
        })?;
        Ok(SstStore {
            root: root.to_path_buf(),
            store: Arc::new(store),
            faults,
        })
    }

    /// The `object_store` holding the files (its paths are relative to the database root).
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.store)
    }

    /// The database directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The local path of an object path.
    pub fn local_path(&self, object_path: &str) -> PathBuf {
        self.root.join(object_path)
    }

    /// Fails if the fault injector says `op` on `object_path` must fail now.
    pub(crate) fn check(&self, op: IoOp, object_path: &str) -> Result<()> {
        let local = self.local_path(object_path);
        fault::check(self.faults.as_deref(), op, &local).map_err(|e| Error::io(&local, e))
    }

    /// Syncs a file written through the object store, and its directory.
    pub fn sync_file(&self, object_path: &str) -> Result<()> {
        let local = self.local_path(object_path);
        File::open(&local)
            .and_then(|f| f.sync_all())
            .and_then(|()| local.parent().map_or(Ok(()), sync_dir))
            .map_err(|e| Error::io(&local, e))
    }

    /// Writes a whole file durably.
    pub fn put(&self, object_path: &str, bytes: Bytes) -> Result<()> {
        let local = self.local_path(object_path);
        fault::check(self.faults.as_deref(), IoOp::SstWrite, &local)
            .map_err(|e| Error::io(&local, e))?;
        let path = ObjectPath::from(object_path);
        futures::executor::block_on(self.store.put(&path, PutPayload::from(bytes))).map_err(
            |e| Error::ObjectStore {
                path: object_path.to_string(),
                message: e.to_string(),
            },
        )?;
        let synced = File::open(&local)
            .and_then(|f| f.sync_all())
            .and_then(|()| local.parent().map_or(Ok(()), sync_dir));
        synced.map_err(|e| Error::io(&local, e))
    }

    /// Deletes a file; a missing file is not an error.
    pub fn delete(&self, object_path: &str) -> Result<()> {
        let local = self.local_path(object_path);
        fault::check(self.faults.as_deref(), IoOp::Delete, &local)
            .map_err(|e| Error::io(&local, e))?;
        let path = ObjectPath::from(object_path);
        match futures::executor::block_on(self.store.delete(&path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Error::ObjectStore {
                path: object_path.to_string(),
                message: e.to_string(),
            }),
        }
    }

    /// Object paths of every file under `sst/`.
    pub fn list(&self) -> Result<Vec<String>> {
        let prefix = ObjectPath::from("sst");
        let listed: Vec<_> =
            futures::executor::block_on(self.store.list(Some(&prefix)).collect::<Vec<_>>());
        listed
            .into_iter()
            .map(|item| {
                item.map(|meta| meta.location.to_string())
                    .map_err(|e| Error::ObjectStore {
                        path: "sst/".into(),
                        message: e.to_string(),
                    })
            })
            .collect()
    }

    /// Opens a file for reading.
    pub fn open(&self, object_path: &str) -> Result<LocalFile> {
        let path = self.local_path(object_path);
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let len = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        Ok(LocalFile {
            inner: Arc::new(LocalFileInner {
                file,
                len,
                path,
                faults: self.faults.clone(),
            }),
        })
    }
}

#[derive(Debug)]
struct LocalFileInner {
    file: File,
    len: u64,
    path: PathBuf,
    faults: Option<Arc<FaultInjector>>,
}

/// A shared handle to an open SST file, implementing Parquet's `ChunkReader` with positioned
/// reads (no seeking, no file-descriptor duplication).
#[derive(Debug, Clone)]
pub struct LocalFile {
    inner: Arc<LocalFileInner>,
}

impl LocalFile {
    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Reads exactly `buf.len()` bytes at `offset`.
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        fault::check(
            self.inner.faults.as_deref(),
            IoOp::SstRead,
            &self.inner.path,
        )?;
        self.inner.file.read_exact_at(buf, offset)
    }

    /// crc32c of the whole file, read in 4 MiB chunks.
    pub fn crc32c(&self) -> std::io::Result<u32> {
        let mut crc = 0u32;
        let mut buf = vec![0u8; 4 << 20];
        let mut offset = 0u64;
        while offset < self.inner.len {
            let n = ((self.inner.len - offset) as usize).min(buf.len());
            self.read_exact_at(&mut buf[..n], offset)?;
            crc = crc32c::crc32c_append(crc, &buf[..n]);
            offset += n as u64;
        }
        Ok(crc)
    }
}

impl Length for LocalFile {
    fn len(&self) -> u64 {
        self.inner.len
    }
}

/// A `Read` over a [`LocalFile`] from a position, using positioned reads.
pub struct PositionedReader {
    file: LocalFile,
    pos: u64,
}

impl Read for PositionedReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        fault::check(
            self.file.inner.faults.as_deref(),
            IoOp::SstRead,
            &self.file.inner.path,
        )?;
        let n = self.file.inner.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl ChunkReader for LocalFile {
    type T = std::io::BufReader<PositionedReader>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        Ok(std::io::BufReader::with_capacity(
            64 * 1024,
            PositionedReader {
                file: self.clone(),
                pos: start,
            },
        ))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let end = start
            .checked_add(length as u64)
            .filter(|end| *end <= self.inner.len);
        if end.is_none() {
            return Err(parquet::errors::ParquetError::EOF(format!(
                "read of {length} bytes at {start} past the end of {} ({} bytes)",
                self.inner.path.display(),
                self.inner.len
            )));
        }
        let mut buf = vec![0u8; length];
        self.read_exact_at(&mut buf, start)
            .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))?;
        Ok(Bytes::from(buf))
    }
}
