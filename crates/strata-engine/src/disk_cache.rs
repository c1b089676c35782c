//! The disk cache: byte ranges of SST objects of a database on object storage, kept in a
//! local directory, bounded in bytes, surviving a restart, checksummed.
//!
//! It is the second level below the memory block cache ([`crate::sst::BlockCache`], decoded
//! blocks for point lookups): every read of an SST on an object store ([`crate::sst::SstFile`])
//! asks it first, and only the chunks it does not hold are fetched, with one GET per run of
//! consecutive missing chunks, then written to it. A local database has none.
//!
//! ## Chunks
//!
//! An object is cut into chunks of [`CHUNK_BYTES`] at fixed offsets (the last one shorter);
//! a read of any byte range reads the chunks covering it. Fixed chunks make the cache's
//! entries independent of how readers cut their reads (a scan reads whole column chunks, a
//! point lookup one page), at the cost of fetching up to a chunk more than asked on a miss.
//! SST objects are immutable and never reused under the same name by one database, so a
//! cached chunk stays right as long as the object exists; the entry also records the
//! object's size and e-tag, and an entry whose object has another version (a database
//! recreated at the same URL) is dropped as stale.
//!
//! ## Files
//!
//! The cache directory mirrors the object layout: the chunk `n` of object `sst/t000001/
//! 000000000003.parquet` is the file `sst/t000001/000000000003.parquet@<n:010>`. Each file
//! is, byte by byte (integers little-endian):
//!
//! ```text
//! 0      4  magic "SDC1"
//! 4      4  crc32c of bytes 8..end
//! 8      8  object size
//! 16     8  offset of the chunk in the object (n * CHUNK_BYTES)
//! 24     4  payload length
//! 28     2  e-tag length t
//! 30     t  the object's e-tag (UTF-8; empty when the store gives none)
//! 30+t      payload: the chunk's bytes
//! ```
//!
//! A file is written under a temporary name and renamed into place, without `fsync`: after a
//! crash a file may be missing (a miss) or torn (its checksum fails). A read checks the magic,
//! the checksum, the size, offset and length it expects and the object's e-tag; any mismatch
//! drops the file and the chunk is fetched again, so a corrupt entry is never returned
//! (counted as `disk_cache_invalid`).
//!
//! ## Bound and restart
//!
//! The files' total size is kept at or below the capacity ([`crate::Options::disk_cache_bytes`]):
//! inserting a chunk evicts the least recently used ones first. At open the directory is
//! walked to rebuild the index (least recently modified files oldest), temporary files of an
//! earlier process are deleted, and the cache is trimmed to a capacity that may have shrunk.
//! The directory belongs to one open database: it holds a `LOCK` file locked while the cache
//! is open, released by [`DiskCache::close`] (the database's close), after which this cache
//! reads from the store without caching.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::metrics::{Metrics, ReadCounter};

/// Bytes of one cached chunk of an object (the last chunk of an object is shorter).
pub const CHUNK_BYTES: u64 = 256 * 1024;

const MAGIC: &[u8; 4] = b"SDC1";
const HEADER_BYTES: usize = 30;
const LOCK_FILE: &str = "LOCK";
const TEMP_MARK: &str = ".tmp-";

/// A chunk: its object's path and its number.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ChunkKey {
    object: String,
    chunk: u64,
}

#[derive(Debug)]
struct Entry {
    /// Size of the file.
    bytes: u64,
    /// Its place in the recency order.
    tick: u64,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<ChunkKey, Entry>,
    /// Chunks by last use, oldest first.
    order: BTreeMap<u64, ChunkKey>,
    /// Total size of the files.
    bytes: u64,
    next_tick: u64,
}

impl State {
    fn touch(&mut self, key: &ChunkKey) {
        let tick = self.next_tick;
        if let Some(entry) = self.entries.get_mut(key) {
            self.order.remove(&entry.tick);
            entry.tick = tick;
            self.order.insert(tick, key.clone());
            self.next_tick += 1;
        }
    }

    fn insert(&mut self, key: ChunkKey, bytes: u64) {
        self.remove(&key);
        let tick = self.next_tick;
        self.next_tick += 1;
        self.order.insert(tick, key.clone());
        self.entries.insert(key, Entry { bytes, tick });
        self.bytes += bytes;
    }

    fn remove(&mut self, key: &ChunkKey) -> bool {
        match self.entries.remove(key) {
            Some(entry) => {
                self.order.remove(&entry.tick);
                self.bytes -= entry.bytes;
                true
            }
            None => false,
        }
    }

    /// Removes the oldest entries until `room` more bytes fit in `capacity`; their keys.
    fn evict_for(&mut self, room: u64, capacity: u64) -> Vec<ChunkKey> {
        let mut victims = Vec::new();
        while self.bytes + room > capacity {
            let Some((_, key)) = self.order.pop_first() else {
                break;
            };
            if let Some(entry) = self.entries.remove(&key) {
                self.bytes -= entry.bytes;
            }
            victims.push(key);
        }
        victims
    }
}

/// The version of an object its cached chunks must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectId {
    /// The object's path in the database.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its e-tag (empty when the store gives none).
    pub e_tag: String,
}

/// A size-bounded local cache of chunks of SST objects (see the module docs).
#[derive(Debug)]
pub struct DiskCache {
    dir: PathBuf,
    capacity: u64,
    state: Mutex<State>,
    temp_names: AtomicU64,
    /// The locked `LOCK` file, until closed.
    lock: Mutex<Option<File>>,
    closed: AtomicBool,
}

impl DiskCache {
    /// Opens (creating it if missing) the cache in `dir`, holding at most `capacity` bytes;
    /// rebuilds its index from the files there. Fails if another open database uses `dir`.
    pub fn open(dir: &Path, capacity: u64) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Locked {
                    path: dir.to_path_buf(),
                    lock: lock_path,
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&lock_path, e)),
        }
        let mut found = Vec::new();
        scan_dir(dir, dir, &mut found)?;
        found.sort_by_key(|(_, _, modified)| *modified);
        let mut state = State::default();
        for (key, bytes, _) in found {
            state.insert(key, bytes);
        }
        let cache = DiskCache {
            dir: dir.to_path_buf(),
            capacity,
            state: Mutex::new(state),
            temp_names: AtomicU64::new(0),
            lock: Mutex::new(Some(lock)),
            closed: AtomicBool::new(false),
        };
        let victims = cache.state.lock().evict_for(0, capacity);
        cache.delete_files(&victims);
        Ok(cache)
    }

    /// Releases the directory (its lock) for another open; later reads go to the store
    /// uncached. Idempotent.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        if let Some(file) = self.lock.lock().take() {
            let _ = file.unlock();
        }
    }

    /// The cache's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes of the cached files.
    pub fn bytes(&self) -> u64 {
        self.state.lock().bytes
    }

    /// The most bytes the cache holds.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Number of cached chunks.
    pub fn len(&self) -> usize {
        self.state.lock().entries.len()
    }

    /// True when no chunk is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The file of a chunk.
    pub fn chunk_path(&self, object: &str, chunk: u64) -> PathBuf {
        self.dir.join(format!("{object}@{chunk:010}"))
    }

    /// Bytes `range` of `object`: cached chunks from disk, the others fetched with `fetch`
    /// (called with a chunk-aligned range, once per run of consecutive missing chunks) and
    /// cached. Counts hits, misses and invalid entries in `metrics`.
    pub fn read(
        &self,
        object: &ObjectId,
        range: Range<u64>,
        metrics: &Metrics,
        mut fetch: impl FnMut(Range<u64>) -> Result<Bytes>,
    ) -> Result<Bytes> {
        debug_assert!(range.start <= range.end && range.end <= object.size);
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        if self.closed.load(Ordering::Acquire) {
            return fetch(range);
        }
        let first = range.start / CHUNK_BYTES;
        let last = (range.end - 1) / CHUNK_BYTES;
        let mut chunks: Vec<Option<Bytes>> = (first..=last)
            .map(|chunk| self.load(object, chunk, metrics))
            .collect();
        let mut i = 0;
        while i < chunks.len() {
            if chunks[i].is_some() {
                i += 1;
                continue;
            }
            let mut end = i;
            while end < chunks.len() && chunks[end].is_none() {
                end += 1;
            }
            let start_byte = (first + i as u64) * CHUNK_BYTES;
            let end_byte = ((first + end as u64) * CHUNK_BYTES).min(object.size);
            let fetched = fetch(start_byte..end_byte)?;
            if fetched.len() as u64 != end_byte - start_byte {
                return Err(Error::ObjectStore {
                    path: object.path.clone(),
                    message: format!(
                        "asked for bytes {start_byte}..{end_byte}, got {} bytes",
                        fetched.len()
                    ),
                });
            }
            for (j, slot) in chunks.iter_mut().enumerate().take(end).skip(i) {
                let chunk = first + j as u64;
                let from = (chunk * CHUNK_BYTES - start_byte) as usize;
                let to = (from + CHUNK_BYTES as usize).min(fetched.len());
                let bytes = fetched.slice(from..to);
                metrics.count_read(ReadCounter::DiskCacheMiss, 1);
                self.store(object, chunk, &bytes, metrics)?;
                *slot = Some(bytes);
            }
            i = end;
        }
        let offset = (range.start - first * CHUNK_BYTES) as usize;
        let len = (range.end - range.start) as usize;
        if chunks.len() == 1 {
            let only = chunks
                .pop()
                .flatten()
                .expect("every chunk loaded or fetched");
            return Ok(only.slice(offset..offset + len));
        }
        let mut out = BytesMut::with_capacity(len);
        let mut skip = offset;
        for chunk in chunks.into_iter().flatten() {
            let want = len - out.len();
            let take = (chunk.len() - skip).min(want);
            out.extend_from_slice(&chunk[skip..skip + take]);
            skip = 0;
        }
        debug_assert_eq!(out.len(), len);
        Ok(out.freeze())
    }

    /// The cached chunk, if the cache holds a valid one; a file that fails its checks is
    /// deleted.
    fn load(&self, object: &ObjectId, chunk: u64, metrics: &Metrics) -> Option<Bytes> {
        let key = ChunkKey {
            object: object.path.clone(),
            chunk,
        };
        if !self.state.lock().entries.contains_key(&key) {
            return None;
        }
        let path = self.chunk_path(&object.path, chunk);
        let valid = std::fs::read(&path)
            .ok()
            .and_then(|file| decode(&file, object, chunk).map(|(start, end)| (file, start, end)));
        match valid {
            Some((file, start, end)) => {
                self.state.lock().touch(&key);
                metrics.count_read(ReadCounter::DiskCacheHit, 1);
                Some(Bytes::from(file).slice(start..end))
            }
            None => {
                tracing::warn!(path = %path.display(), "disk cache entry invalid; fetching again");
                Metrics::inc(&metrics.disk_cache_invalid);
                self.state.lock().remove(&key);
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Writes a chunk's file and adds it to the index, evicting older chunks to make room.
    fn store(
        &self,
        object: &ObjectId,
        chunk: u64,
        payload: &[u8],
        metrics: &Metrics,
    ) -> Result<()> {
        let file = encode(object, chunk, payload);
        let size = file.len() as u64;
        if size > self.capacity {
            return Ok(());
        }
        let key = ChunkKey {
            object: object.path.clone(),
            chunk,
        };
        let victims = self.state.lock().evict_for(size, self.capacity);
        Metrics::add(&metrics.disk_cache_evictions, victims.len() as u64);
        self.delete_files(&victims);
        let path = self.chunk_path(&object.path, chunk);
        let n = self.temp_names.fetch_add(1, Ordering::Relaxed);
        let temp = PathBuf::from(format!(
            "{}{TEMP_MARK}{}-{n}",
            path.display(),
            std::process::id()
        ));
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| {
                let mut out = File::create(&temp)?;
                out.write_all(&file)
            })
            .and_then(|()| std::fs::rename(&temp, &path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(Error::io(&path, e));
        }
        let mut state = self.state.lock();
        state.insert(key, size);
        // Another thread may have inserted meanwhile.
        let victims = state.evict_for(0, self.capacity);
        drop(state);
        Metrics::add(&metrics.disk_cache_evictions, victims.len() as u64);
        self.delete_files(&victims);
        Ok(())
    }

    fn delete_files(&self, victims: &[ChunkKey]) {
        for key in victims {
            let _ = std::fs::remove_file(self.chunk_path(&key.object, key.chunk));
        }
    }
}

/// The file of a chunk (see the module docs).
fn encode(object: &ObjectId, chunk: u64, payload: &[u8]) -> Vec<u8> {
    let tag = object.e_tag.as_bytes();
    let tag = &tag[..tag.len().min(u16::MAX as usize)];
    let mut out = Vec::with_capacity(HEADER_BYTES + tag.len() + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&object.size.to_le_bytes());
    out.extend_from_slice(&(chunk * CHUNK_BYTES).to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&(tag.len() as u16).to_le_bytes());
    out.extend_from_slice(tag);
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out[8..]);
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(out.len(), HEADER_BYTES + tag.len() + payload.len());
    out
}

/// The payload's place in a chunk's file, if the file is intact and is chunk `chunk` of
/// this version of `object`.
fn decode(file: &[u8], object: &ObjectId, chunk: u64) -> Option<(usize, usize)> {
    let u64_at = |at: usize| u64::from_le_bytes(file[at..at + 8].try_into().expect("8 bytes"));
    if file.len() < HEADER_BYTES || &file[..4] != MAGIC {
        return None;
    }
    let crc = u32::from_le_bytes(file[4..8].try_into().expect("4 bytes"));
    if crc32c::crc32c(&file[8..]) != crc {
        return None;
    }
    let len = u32::from_le_bytes(file[24..28].try_into().expect("4 bytes")) as usize;
    let tag_len = u16::from_le_bytes(file[28..30].try_into().expect("2 bytes")) as usize;
    let start = HEADER_BYTES + tag_len;
    let offset = chunk * CHUNK_BYTES;
    let expected_len = CHUNK_BYTES.min(object.size.saturating_sub(offset)) as usize;
    let tag = object.e_tag.as_bytes();
    let tag = &tag[..tag.len().min(u16::MAX as usize)];
    let matches = u64_at(8) == object.size
        && u64_at(16) == offset
        && len == expected_len
        && file.len() == start + len
        && &file[HEADER_BYTES..start] == tag;
    matches.then_some((start, start + len))
}

/// Adds every chunk file under `dir` to `found` (key, size, modification time); deletes
/// temporary files.
fn scan_dir(
    root: &Path,
    dir: &Path,
    found: &mut Vec<(ChunkKey, u64, std::time::SystemTime)>,
) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let meta = entry.metadata().map_err(|e| Error::io(&path, e))?;
        if meta.is_dir() {
            scan_dir(root, &path, found)?;
            continue;
        }
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.contains(TEMP_MARK) {
            let _ = std::fs::remove_file(&path);
            continue;
        }
        let relative = path.strip_prefix(root).ok().and_then(Path::to_str);
        let parsed = relative
            .and_then(|r| r.rsplit_once('@'))
            .and_then(|(object, n)| {
                n.parse::<u64>().ok().map(|chunk| ChunkKey {
                    object: object.to_string(),
                    chunk,
                })
            });
        if let Some(key) = parsed {
            let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
            found.push((key, meta.len(), modified));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn object(size: u64) -> (ObjectId, Bytes) {
        let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        let id = ObjectId {
            path: "sst/t000001/000000000003.parquet".into(),
            size,
            e_tag: "\"etag-1\"".into(),
        };
        (id, Bytes::from(data))
    }

    /// Reads `range` through the cache, fetching from `data`; the number of fetches.
    fn read(
        cache: &DiskCache,
        id: &ObjectId,
        data: &Bytes,
        range: Range<u64>,
        metrics: &Metrics,
    ) -> usize {
        let fetches = AtomicUsize::new(0);
        let got = cache
            .read(id, range.clone(), metrics, |r| {
                fetches.fetch_add(1, Ordering::Relaxed);
                Ok(data.slice(r.start as usize..r.end as usize))
            })
            .unwrap();
        assert_eq!(got, data.slice(range.start as usize..range.end as usize));
        fetches.into_inner()
    }

    #[test]
    fn reads_are_served_from_disk_after_the_first_and_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::default();
        let (id, data) = object(3 * CHUNK_BYTES + 100);
        let cache = DiskCache::open(dir.path(), 1 << 30).unwrap();
        // Spans chunks 0..=3: one fetch for the run of four missing chunks.
        assert_eq!(
            read(&cache, &id, &data, 10..3 * CHUNK_BYTES + 50, &metrics),
            1
        );
        assert_eq!(cache.len(), 4);
        assert_eq!(read(&cache, &id, &data, 5..CHUNK_BYTES + 9, &metrics), 0);
        assert_eq!(
            read(&cache, &id, &data, 3 * CHUNK_BYTES..id.size, &metrics),
            0
        );
        drop(cache);
        let cache = DiskCache::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(cache.len(), 4);
        assert_eq!(read(&cache, &id, &data, 0..id.size, &metrics), 0);
        assert_eq!(metrics.disk_cache_misses.load(Ordering::Relaxed), 4);
        assert_eq!(metrics.disk_cache_hits.load(Ordering::Relaxed), 2 + 1 + 4);
        // A second open of the same directory is refused while the first holds it; once
        // closed, the first reads uncached and the directory opens again.
        assert!(matches!(
            DiskCache::open(dir.path(), 1 << 30),
            Err(Error::Locked { .. })
        ));
        cache.close();
        assert_eq!(read(&cache, &id, &data, 0..10, &metrics), 1);
        let again = DiskCache::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(again.len(), 4);
    }

    #[test]
    fn corrupt_torn_and_stale_entries_are_fetched_again() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::default();
        let (id, data) = object(2 * CHUNK_BYTES);
        let cache = DiskCache::open(dir.path(), 1 << 30).unwrap();
        read(&cache, &id, &data, 0..id.size, &metrics);
        // A flipped payload byte.
        let path = cache.chunk_path(&id.path, 0);
        let mut file = std::fs::read(&path).unwrap();
        let last = file.len() - 1;
        file[last] ^= 0x40;
        std::fs::write(&path, &file).unwrap();
        // A torn file.
        let path1 = cache.chunk_path(&id.path, 1);
        let file1 = std::fs::read(&path1).unwrap();
        std::fs::write(&path1, &file1[..file1.len() / 2]).unwrap();
        assert_eq!(read(&cache, &id, &data, 0..id.size, &metrics), 1);
        assert_eq!(metrics.disk_cache_invalid.load(Ordering::Relaxed), 2);
        // Rewritten: served from disk again.
        assert_eq!(read(&cache, &id, &data, 0..id.size, &metrics), 0);
        // Another version of the object (same path and size, new e-tag): stale.
        let newer = ObjectId {
            e_tag: "\"etag-2\"".into(),
            ..id.clone()
        };
        assert_eq!(read(&cache, &newer, &data, 0..10, &metrics), 1);
        assert_eq!(metrics.disk_cache_invalid.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn the_cache_stays_within_its_capacity() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::default();
        let (id, data) = object(10 * CHUNK_BYTES);
        let entry = (HEADER_BYTES + id.e_tag.len()) as u64 + CHUNK_BYTES;
        let cache = DiskCache::open(dir.path(), 3 * entry).unwrap();
        read(&cache, &id, &data, 0..id.size, &metrics);
        assert_eq!(cache.len(), 3);
        assert!(cache.bytes() <= cache.capacity());
        assert_eq!(metrics.disk_cache_evictions.load(Ordering::Relaxed), 7);
        // The last chunks read are the ones kept; the first ones were evicted.
        assert_eq!(
            read(&cache, &id, &data, 9 * CHUNK_BYTES..id.size, &metrics),
            0
        );
        assert_eq!(read(&cache, &id, &data, 0..10, &metrics), 1);
        let files = std::fs::read_dir(dir.path().join("sst/t000001"))
            .unwrap()
            .count();
        assert_eq!(files, 3);
        drop(cache);
        // Reopened with a smaller capacity: trimmed.
        let cache = DiskCache::open(dir.path(), entry).unwrap();
        assert_eq!(cache.len(), 1);
        assert!(cache.bytes() <= entry);
    }
}
