//! Reading SST files: [`SstFile`], Parquet's `ChunkReader` over a file of the database's
//! [`Storage`] (which owns where files live, and their writes, listing and deletion).
//!
//! A local file is read with positioned reads (`pread`), because point lookups issue many small
//! reads and the async object-store path costs a thread hand-off per read. A file on an object
//! store is read through [`Storage::read_range`]: from the disk cache when it holds the bytes
//! ([`crate::disk_cache`]), else with ranged GETs: one per `get_bytes` call, and one per
//! [`REMOTE_READ_BUFFER_BYTES`] of a sequential read (rounded out to the cache's chunks).

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use parquet::file::reader::{ChunkReader, Length};

use crate::disk_cache::ObjectId;
use crate::error::{Error, Result};
use crate::fault::{self, FaultInjector, IoOp};
pub use crate::storage::Storage as SstStore;
use crate::storage::Storage;

/// Bytes fetched by one GET of a sequential read of a file on an object store.
pub const REMOTE_READ_BUFFER_BYTES: usize = 1 << 20;

impl Storage {
    /// Opens a file for reading.
    pub fn open(&self, object_path: &str) -> Result<SstFile> {
        let path = self.local_path(object_path);
        let (source, len) = if self.is_remote() {
            let object = self.sst_object(object_path)?.ok_or_else(|| {
                Error::io(
                    &path,
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no such object"),
                )
            })?;
            let len = object.size;
            let source = Source::Remote {
                storage: self.clone(),
                object,
            };
            (source, len)
        } else {
            let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
            let len = file.metadata().map_err(|e| Error::io(&path, e))?.len();
            (Source::Local(file), len)
        };
        Ok(SstFile {
            inner: Arc::new(SstFileInner {
                source,
                len,
                path,
                faults: self.faults().cloned(),
            }),
        })
    }
}

#[derive(Debug)]
enum Source {
    Local(File),
    Remote { storage: Storage, object: ObjectId },
}

#[derive(Debug)]
struct SstFileInner {
    source: Source,
    len: u64,
    path: PathBuf,
    faults: Option<Arc<FaultInjector>>,
}

/// A shared handle to an open SST file, implementing Parquet's `ChunkReader` with positioned
/// reads (no seeking, no file-descriptor duplication).
#[derive(Debug, Clone)]
pub struct SstFile {
    inner: Arc<SstFileInner>,
}

impl SstFile {
    /// The file's path (its URL for a file on an object store).
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Reads up to `buf.len()` bytes at `offset` (fewer only at the end of the file).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        match &self.inner.source {
            Source::Local(file) => {
                use std::os::unix::fs::FileExt;
                fault::check(
                    self.inner.faults.as_deref(),
                    IoOp::SstRead,
                    &self.inner.path,
                )?;
                file.read_at(buf, offset)
            }
            Source::Remote { storage, object } => {
                let end = (offset + buf.len() as u64).min(self.inner.len);
                if end <= offset {
                    return Ok(0);
                }
                let bytes = storage
                    .read_range(object, offset..end)
                    .map_err(std::io::Error::other)?;
                let n = bytes.len().min(buf.len());
                buf[..n].copy_from_slice(&bytes[..n]);
                Ok(n)
            }
        }
    }

    /// Reads exactly `buf.len()` bytes at `offset`.
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let n = self.read_at(&mut buf[done..], offset + done as u64)?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("{} ends before byte {}", self.inner.path.display(), offset),
                ));
            }
            done += n;
        }
        Ok(())
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

impl Length for SstFile {
    fn len(&self) -> u64 {
        self.inner.len
    }
}

/// A `Read` over a [`SstFile`] from a position, using positioned reads.
pub struct PositionedReader {
    file: SstFile,
    pos: u64,
}

impl Read for PositionedReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl ChunkReader for SstFile {
    type T = std::io::BufReader<PositionedReader>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        let capacity = match self.inner.source {
            Source::Local(_) => 64 * 1024,
            Source::Remote { .. } => REMOTE_READ_BUFFER_BYTES,
        };
        Ok(std::io::BufReader::with_capacity(
            capacity,
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
        let Some(end) = end else {
            return Err(parquet::errors::ParquetError::EOF(format!(
                "read of {length} bytes at {start} past the end of {} ({} bytes)",
                self.inner.path.display(),
                self.inner.len
            )));
        };
        if let Source::Remote { storage, object } = &self.inner.source {
            return storage
                .read_range(object, start..end)
                .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)));
        }
        let mut buf = vec![0u8; length];
        self.read_exact_at(&mut buf, start)
            .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))?;
        Ok(Bytes::from(buf))
    }
}
