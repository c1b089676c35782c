//! Versions: immutable snapshots of a table's structure, shared by `Arc`.
//!
//! * A [`Version`] is the list of live SST files of one table by level. It never changes;
//!   a flush or compaction builds a new one and publishes it. Readers and compactions hold an
//!   `Arc<Version>` for as long as they work, so the files they see stay on disk.
//! * A [`SuperVersion`] pins everything a read needs at once: the active memtable, the
//!   immutable memtables waiting for flush, and the version. A reader takes it (an `Arc` clone
//!   under a short read lock) together with its read sequence number, under that same lock
//!   (`TableInner::pin_latest`), so every write up to that number is in one of the pinned
//!   sources.
//! * A version also holds the [deletion vectors](crate::dv) of its files, when the table's DVs
//!   are maintained: immutable like the version, so a reader pinned before a DV update keeps
//!   the DVs of its version.
//! * A [`VersionControl`] (one per table) owns the current super version and is the only way
//!   to replace it: every new super version is built from the current one by a
//!   [`SuperVersionBuilder`] under the `sv` write lock, and every change of the table's files
//!   is installed while the table's change lock is held (see below).
//! * An [`SstHandle`] is one live file. When the manifest drops a file (compaction, table
//!   drop) the handle is marked obsolete; the file is deleted when the last version holding the
//!   handle is dropped, never while a reader can still reach it.
//!
//! ## Invariants
//!
//! * Level 0 is ordered newest first (by `max_seq`, descending); for any key, versions in L0
//!   are newer than versions in L1, which are newer than those in L2, and so on. A point lookup
//!   can therefore stop at the first file that holds a visible version.
//! * Files of levels 1 and deeper do not overlap and are ordered by key.
//! * Immutable memtables are ordered newest first; each one holds exactly the table's writes
//!   with sequence numbers in `(previous switch, its switch]`, and they are flushed oldest
//!   first.
//!
//! ## Version control
//!
//! [`VersionControl`] holds two locks:
//!
//! * the *change lock* ([`VersionControl::lock_changes`], a [`ChangeGuard`]): held by whoever
//!   changes the table's files (flush, ingest and compaction installs, DV rebuilds) from before
//!   it computes what the change implies for the current version (its deletion vectors) until
//!   the change is installed, so no other file change slips in between. Lock order: commit
//!   leadership (if taken), then the change lock, then the manifest lock (`db::install`), then
//!   the `sv` write lock. The version current under the change lock is the one the change is
//!   installed over ([`ChangeGuard::version`]).
//! * the `sv` lock: readers hold it for reading only to clone the current `Arc` (and read the
//!   visible sequence number with it, `TableInner::pin_latest`); it is taken for writing only
//!   inside this type, for the swap itself. What must become visible in the same step as a
//!   new super version (an ingest's sequence numbers) is published by a closure run under it.
//!
//! Memtable-only changes (a memtable switch, under commit leadership; replacing the empty active
//! memtable during recovery) do not take the change lock: they keep the version as it is, and
//! a file change keeps the memtables it does not flush.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::{Mutex, MutexGuard, RwLock, RwLockReadGuard};

use crate::codec::ByteRows;
use crate::dv::DeletionVector;
use crate::error::{Error, Result};
use crate::memtable::Memtable;
use crate::metrics::Metrics;
use crate::purge::{ObsoleteKind, Purger};
use crate::read::KeyRange;
use crate::schema::TableSchema;
use crate::sst::{BlockCache, FileKeys, KeyCache, SstMeta, SstReader, SstStore};
use crate::types::{FileId, OpKind, SeqNo};

/// Shared services an SST handle needs to open and delete its file.
#[derive(Debug)]
pub struct FileContext {
    /// Where files live.
    pub store: SstStore,
    /// The decoded-block cache.
    pub cache: Arc<BlockCache>,
    /// The key cache.
    pub keys: Arc<KeyCache>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Verify checksums before first use.
    pub verify: bool,
    /// Deletes the files of dropped obsolete handles, off the dropping thread.
    pub purger: Purger,
}

/// One live SST file.
pub struct SstHandle {
    meta: SstMeta,
    schema: Arc<TableSchema>,
    context: Arc<FileContext>,
    reader: Mutex<Option<Arc<SstReader>>>,
    /// The corruption the first failed open found: a file known to be corrupt stays corrupt
    /// for every later read in this process (statistics included), never retried into data.
    corruption: OnceLock<Error>,
    obsolete: AtomicBool,
}

impl std::fmt::Debug for SstHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SstHandle")
            .field("id", &self.meta.id)
            .field("level", &self.meta.level)
            .finish()
    }
}

impl SstHandle {
    /// A handle for the file described by `meta`.
    pub fn new(meta: SstMeta, schema: Arc<TableSchema>, context: Arc<FileContext>) -> Self {
        SstHandle {
            meta,
            schema,
            context,
            reader: Mutex::new(None),
            corruption: OnceLock::new(),
            obsolete: AtomicBool::new(false),
        }
    }

    /// The file's metadata.
    pub fn meta(&self) -> &SstMeta {
        &self.meta
    }

    /// The encoded key of every row of the file, in file order: from the key cache, or read
    /// from the file's key columns (and cached when the cache admits them).
    pub fn keys(&self) -> Result<Arc<FileKeys>> {
        if let Some(keys) = self.context.keys.get(self.meta.id) {
            Metrics::inc(&self.context.metrics.key_cache_hits);
            return Ok(keys);
        }
        Metrics::inc(&self.context.metrics.key_cache_misses);
        let keys = Arc::new(self.reader()?.read_keys()?);
        self.context.keys.insert(self.meta.id, Arc::clone(&keys));
        Ok(keys)
    }

    /// The file's keys if the key cache holds them.
    pub fn cached_keys(&self) -> Option<Arc<FileKeys>> {
        self.context.keys.get(self.meta.id)
    }

    /// True when the file's keys are in the key cache or small enough to be cached there
    /// ([`KeyCache::admits`], from the file's row count and key lengths).
    pub fn keys_cacheable(&self) -> bool {
        if self.context.keys.get(self.meta.id).is_some() {
            return true;
        }
        self.context.keys.admits(self.keys_bytes_estimate())
    }

    /// About the memory the file's keys take in the key cache, from its row count and the
    /// lengths of its smallest and largest keys.
    pub fn keys_bytes_estimate(&self) -> usize {
        let (min, max) = (self.meta.min_key.len(), self.meta.max_key.len());
        // Fixed-width keys are packed; others carry an 8-byte offset each.
        let per_row = if min == max { min } else { min.max(max) + 8 };
        usize::try_from(self.meta.rows)
            .unwrap_or(usize::MAX)
            .saturating_mul(per_row)
    }

    /// Reads the file's keys into the key cache ahead of use (the key-cache warmer after an
    /// open, `db::background`): counted as a warmed file, not as a cache miss.
    pub fn warm_keys(&self) -> Result<()> {
        if self.context.keys.get(self.meta.id).is_some() {
            return Ok(());
        }
        let keys = Arc::new(self.reader()?.read_keys()?);
        self.context.keys.insert(self.meta.id, keys);
        Metrics::inc(&self.context.metrics.key_cache_files_warmed);
        Ok(())
    }

    /// The opened file (opened and verified on first use). An open that failed for an I/O
    /// reason is retried next time; one that found corruption fails the same way every time.
    pub fn reader(&self) -> Result<Arc<SstReader>> {
        let mut slot = self.reader.lock();
        if let Some(reader) = slot.as_ref() {
            return Ok(Arc::clone(reader));
        }
        if let Some(corruption) = self.corruption.get() {
            return Err(corruption.duplicate());
        }
        let opened = SstReader::open(
            &self.context.store,
            &self.meta,
            Arc::clone(&self.schema),
            self.context.verify,
            Arc::clone(&self.context.cache),
            Arc::clone(&self.context.metrics),
        );
        let reader = match opened {
            Ok(reader) => Arc::new(reader),
            Err(error) if error.is_corruption() => {
                let again = error.duplicate();
                let _ = self.corruption.set(error);
                return Err(again);
            }
            Err(error) => return Err(error),
        };
        *slot = Some(Arc::clone(&reader));
        Ok(reader)
    }

    /// True when an open of this file in this process found it corrupt.
    pub fn known_corrupt(&self) -> bool {
        self.corruption.get().is_some()
    }

    /// Marks the file for deletion once no version holds it.
    pub fn mark_obsolete(&self) {
        self.obsolete.store(true, Ordering::Release);
    }

    /// The local path of the file.
    pub fn local_path(&self) -> std::path::PathBuf {
        self.context.store.local_path(&self.meta.object_path())
    }

    /// True when the file is on an object store (it has no local path to be read by).
    pub fn is_remote(&self) -> bool {
        self.context.store.is_remote()
    }
}

impl Drop for SstHandle {
    fn drop(&mut self) {
        if self.obsolete.load(Ordering::Acquire) {
            // Its keys are of no use to anyone again (file ids are never reused).
            self.context.keys.remove(self.meta.id);
            // Deleted on the purger's thread: this may be a query's (crate::purge).
            self.context
                .purger
                .release(self.meta.object_path(), ObsoleteKind::Sst);
        }
    }
}

/// The live files of one table, by level, with their deletion vectors.
#[derive(Debug, Clone, Default)]
pub struct Version {
    levels: Vec<Vec<Arc<SstHandle>>>,
    /// Deletion vectors by SST file id (files without one have no deleted rows, when
    /// `dvs_maintained`).
    dvs: std::collections::HashMap<FileId, Arc<DeletionVector>>,
    /// True when the DVs are complete (see [`crate::dv`]); false for a table whose DVs were
    /// never built or could not be loaded (reads then merge).
    dvs_maintained: bool,
}

/// A change of a table's files: what a flush, ingest or compaction installs.
#[derive(Debug, Default)]
pub struct FileChange {
    /// Files added.
    pub added: Vec<Arc<SstHandle>>,
    /// Files removed (their DVs go with them).
    pub removed: Vec<FileId>,
    /// DVs written: each replaces the DV of its file.
    pub set_dvs: Vec<Arc<DeletionVector>>,
    /// Files whose DV is dropped.
    pub drop_dvs: Vec<FileId>,
    /// The table's DVs are complete after this change (`None`: unchanged).
    pub dvs_maintained: Option<bool>,
}

impl Version {
    /// A version of `files` with the DVs `dvs` (complete when `maintained`).
    pub fn with_dvs(
        files: Vec<Arc<SstHandle>>,
        dvs: Vec<Arc<DeletionVector>>,
        maintained: bool,
    ) -> Self {
        let mut version = Version::new(files);
        version.dvs = dvs.into_iter().map(|dv| (dv.meta().file, dv)).collect();
        version.dvs_maintained = maintained;
        debug_assert!(version.dvs.keys().all(|id| version.file(*id).is_some()));
        version
    }

    /// The version after `change`.
    pub fn apply(&self, change: &FileChange) -> Version {
        let files = self
            .files()
            .filter(|f| !change.removed.contains(&f.meta().id))
            .cloned()
            .chain(change.added.iter().cloned())
            .collect();
        let mut next = Version::new(files);
        next.dvs = self
            .dvs
            .iter()
            .filter(|(id, _)| !change.removed.contains(id) && !change.drop_dvs.contains(id))
            .map(|(id, dv)| (*id, Arc::clone(dv)))
            .collect();
        for dv in &change.set_dvs {
            next.dvs.insert(dv.meta().file, Arc::clone(dv));
        }
        next.dvs_maintained = change.dvs_maintained.unwrap_or(self.dvs_maintained);
        debug_assert!(next.dvs.keys().all(|id| next.file(*id).is_some()));
        next
    }

    /// The DV of file `id`, if it has deleted rows.
    pub fn dv(&self, id: FileId) -> Option<&Arc<DeletionVector>> {
        self.dvs.get(&id)
    }

    /// Every DV of the version.
    pub fn dvs(&self) -> impl Iterator<Item = &Arc<DeletionVector>> {
        self.dvs.values()
    }

    /// True when the DVs are complete.
    pub fn dvs_maintained(&self) -> bool {
        self.dvs_maintained
    }

    /// The file with id `id`.
    pub fn file(&self, id: FileId) -> Option<&Arc<SstHandle>> {
        self.files().find(|f| f.meta().id == id)
    }

    /// A version holding `files` (any order; they are sorted per the invariants).
    pub fn new(files: Vec<Arc<SstHandle>>) -> Self {
        let mut version = Version::default();
        for file in files {
            let level = file.meta().level as usize;
            if version.levels.len() <= level {
                version.levels.resize_with(level + 1, Vec::new);
            }
            version.levels[level].push(file);
        }
        version.sort();
        version
    }

    fn sort(&mut self) {
        if let Some(l0) = self.levels.first_mut() {
            l0.sort_by_key(|f| std::cmp::Reverse(f.meta().max_seq));
        }
        for level in self.levels.iter_mut().skip(1) {
            level.sort_by(|a, b| a.meta().min_key.cmp(&b.meta().min_key));
            debug_assert!(
                level
                    .windows(2)
                    .all(|w| w[0].meta().max_key < w[1].meta().min_key)
            );
        }
        while self.levels.last().is_some_and(Vec::is_empty) {
            self.levels.pop();
        }
    }

    /// A new version with `added` files and without the files in `removed` (and their DVs),
    /// whose DVs are not maintained when files were added (as the manifest records such an
    /// edit; see [`FileChange`] for a change that maintains them).
    pub fn edit(&self, added: Vec<Arc<SstHandle>>, removed: &[FileId]) -> Version {
        let maintained = self.dvs_maintained && added.is_empty();
        self.apply(&FileChange {
            added,
            removed: removed.to_vec(),
            dvs_maintained: Some(maintained),
            ..FileChange::default()
        })
    }

    /// The files that may hold a version visible at `read_seq` of a key in one of `ranges`:
    /// files whose key span overlaps a range and that hold a row at or below `read_seq`, level
    /// by level in the order of [`Version::level`] (L0 newest first, deeper levels by key). A
    /// point lookup can stop at the first file that has a visible version of its key.
    pub fn files_overlapping<'a>(
        &'a self,
        ranges: &'a [KeyRange],
        read_seq: SeqNo,
    ) -> impl Iterator<Item = &'a Arc<SstHandle>> + 'a {
        (0..self.num_levels())
            .flat_map(move |level| self.level_overlapping(level, ranges, read_seq))
    }

    /// [`Version::files_overlapping`] for the files of one level. In a level of 1 or deeper
    /// (files disjoint, in key order) only the window of files between the ranges' lowest and
    /// highest bounds is looked at (two binary searches).
    pub fn level_overlapping<'a>(
        &'a self,
        level: usize,
        ranges: &'a [KeyRange],
        read_seq: SeqNo,
    ) -> impl Iterator<Item = &'a Arc<SstHandle>> + 'a {
        let files = self.level(level);
        let window = if level == 0 {
            files
        } else {
            // Files entirely below every range come first, files entirely above every range
            // last (max and min keys both ascend along a level).
            let start = ranges
                .iter()
                .map(|r| files.partition_point(|f| r.starts_after(&f.meta().max_key)))
                .min()
                .unwrap_or(files.len());
            let end = ranges
                .iter()
                .map(|r| files.partition_point(|f| !r.ends_before(&f.meta().min_key)))
                .max()
                .unwrap_or(0)
                .max(start);
            &files[start..end]
        };
        window.iter().filter(move |f| {
            let meta = f.meta();
            meta.min_seq <= read_seq
                && ranges
                    .iter()
                    .any(|r| r.overlaps(&meta.min_key, &meta.max_key))
        })
    }

    /// Files of `level` (L0 newest first; deeper levels by key).
    pub fn level(&self, level: usize) -> &[Arc<SstHandle>] {
        self.levels.get(level).map_or(&[], Vec::as_slice)
    }

    /// Number of levels that hold files.
    pub fn num_levels(&self) -> usize {
        self.levels.len()
    }

    /// All files, level by level.
    pub fn files(&self) -> impl Iterator<Item = &Arc<SstHandle>> {
        self.levels.iter().flatten()
    }

    /// Total bytes of all files.
    pub fn size_bytes(&self) -> u64 {
        self.files().map(|f| f.meta().size_bytes).sum()
    }
}

/// Bytes of a change-log entry besides its key (sequence number and offset).
pub const CHANGE_LOG_BYTES_PER_ENTRY: usize = 16;

/// One memtable of a table with the bookkeeping the engine needs around it.
#[derive(Debug)]
pub struct MemtableSlot {
    /// The memtable.
    pub memtable: Arc<dyn Memtable>,
    /// Smallest sequence number inserted (`u64::MAX` while empty).
    min_seq: AtomicU64,
    /// Largest sequence number inserted.
    max_seq: AtomicU64,
    /// For an immutable memtable: every write of the table with a sequence number up to this
    /// is in this memtable or an older source.
    switched_at: AtomicU64,
    /// The keys inserted, in insertion order (which is sequence order: one commit leader
    /// inserts at a time, in sequence order), so a scan plan made earlier can be brought up
    /// to date with only the keys written since ([`crate::read::plan_cache`]).
    changes: Mutex<ChangeLog>,
}

/// The keys inserted into a memtable and their sequence numbers, in insertion order.
#[derive(Debug, Default)]
struct ChangeLog {
    keys: ByteRows,
    seqs: Vec<SeqNo>,
}

/// Keys a memtable took, read from its change log ([`MemtableSlot::changes_since`]).
#[derive(Debug, Default)]
pub struct MemtableChanges {
    /// The keys (repeated when written more than once), in sequence order.
    pub keys: ByteRows,
    /// Position in the change log after the last key returned.
    pub end: usize,
}

impl MemtableSlot {
    /// Wraps a fresh memtable.
    pub fn new(memtable: Arc<dyn Memtable>) -> Self {
        MemtableSlot {
            memtable,
            min_seq: AtomicU64::new(u64::MAX),
            max_seq: AtomicU64::new(0),
            switched_at: AtomicU64::new(0),
            changes: Mutex::new(ChangeLog::default()),
        }
    }

    /// Records that sequence numbers `first..=last` were inserted.
    pub fn note_inserted(&self, first: SeqNo, last: SeqNo) {
        self.min_seq.fetch_min(first, Ordering::AcqRel);
        self.max_seq.fetch_max(last, Ordering::AcqRel);
    }

    /// Inserts one version of `key` into the memtable and records it (its sequence number
    /// and its key in the change log). Returns the bytes of memory this took.
    pub fn insert(&self, key: &[u8], seq: SeqNo, op: OpKind, value: &[u8]) -> usize {
        let before = self.memtable.memory_bytes();
        self.memtable.insert(key, seq, op, value);
        let grown = self.memtable.memory_bytes().saturating_sub(before);
        let mut changes = self.changes.lock();
        debug_assert!(
            changes.seqs.last().is_none_or(|last| *last < seq),
            "memtable inserts come in sequence order"
        );
        changes.keys.push(key);
        changes.seqs.push(seq);
        drop(changes);
        self.note_inserted(seq, seq);
        grown + key.len() + CHANGE_LOG_BYTES_PER_ENTRY
    }

    /// The keys inserted at change-log positions `start..` with sequence numbers up to
    /// `read_seq`.
    pub fn changes_since(&self, start: usize, read_seq: SeqNo) -> MemtableChanges {
        let changes = self.changes.lock();
        let start = start.min(changes.seqs.len());
        let end = start + changes.seqs[start..].partition_point(|s| *s <= read_seq);
        let mut keys = ByteRows::with_capacity(end - start, (end - start) * 16);
        for i in start..end {
            keys.push(changes.keys.get(i));
        }
        MemtableChanges { keys, end }
    }

    /// Number of change-log entries with sequence numbers up to `read_seq`.
    pub fn change_log_position(&self, read_seq: SeqNo) -> usize {
        self.changes.lock().seqs.partition_point(|s| *s <= read_seq)
    }

    /// Memory of the memtable and its change log.
    pub fn memory_bytes(&self) -> usize {
        let changes = self.changes.lock();
        self.memtable.memory_bytes()
            + changes.keys.data_len()
            + changes.seqs.len() * CHANGE_LOG_BYTES_PER_ENTRY
    }

    /// Smallest inserted sequence number, if any.
    pub fn min_seq(&self) -> Option<SeqNo> {
        let seq = self.min_seq.load(Ordering::Acquire);
        (seq != u64::MAX).then_some(seq)
    }

    /// Largest inserted sequence number (0 if empty).
    pub fn max_seq(&self) -> SeqNo {
        self.max_seq.load(Ordering::Acquire)
    }

    /// Marks the memtable immutable as of sequence number `seq`.
    pub fn mark_switched(&self, seq: SeqNo) {
        self.switched_at.store(seq, Ordering::Release);
    }

    /// The sequence number at which it became immutable (0 while active).
    pub fn switched_at(&self) -> SeqNo {
        self.switched_at.load(Ordering::Acquire)
    }
}

/// Everything a read of one table pins: memtables and the file version.
///
/// Built by a [`SuperVersionBuilder`]; replaced through the table's [`VersionControl`].
#[derive(Debug, Clone)]
pub struct SuperVersion {
    /// The memtable taking writes.
    pub active: Arc<MemtableSlot>,
    /// Memtables waiting for flush, newest first.
    pub immutables: Vec<Arc<MemtableSlot>>,
    /// The SST files.
    pub version: Arc<Version>,
}

impl SuperVersion {
    /// A super version with an empty active memtable `active`, no immutable memtable, and
    /// the files of `version`.
    pub fn new(active: Arc<MemtableSlot>, version: Arc<Version>) -> Self {
        SuperVersionBuilder::new(active).version(version).build()
    }

    /// Memory of all memtables (with their change logs).
    pub fn memtable_bytes(&self) -> usize {
        self.active.memory_bytes()
            + self
                .immutables
                .iter()
                .map(|m| m.memory_bytes())
                .sum::<usize>()
    }

    /// Memtables newest first: the active one, then the immutables.
    pub fn memtables(&self) -> impl Iterator<Item = &Arc<MemtableSlot>> {
        std::iter::once(&self.active).chain(self.immutables.iter())
    }

    /// The smallest sequence number held by any memtable (the table's WAL floor).
    pub fn min_unflushed_seq(&self) -> Option<SeqNo> {
        self.memtables().filter_map(|m| m.min_seq()).min()
    }
}

/// Builds the next super version from the current one (copy on write: what a step does not
/// change is shared with the current one).
#[derive(Debug)]
pub struct SuperVersionBuilder {
    active: Arc<MemtableSlot>,
    immutables: Vec<Arc<MemtableSlot>>,
    version: Arc<Version>,
}

impl SuperVersionBuilder {
    /// A builder with the active memtable `active`, no immutable memtable and no file.
    pub fn new(active: Arc<MemtableSlot>) -> Self {
        SuperVersionBuilder {
            active,
            immutables: Vec::new(),
            version: Arc::new(Version::default()),
        }
    }

    /// A builder starting from `current`.
    pub fn from_current(current: &SuperVersion) -> Self {
        SuperVersionBuilder {
            active: Arc::clone(&current.active),
            immutables: current.immutables.clone(),
            version: Arc::clone(&current.version),
        }
    }

    /// Replaces the file version.
    pub fn version(mut self, version: Arc<Version>) -> Self {
        self.version = version;
        self
    }

    /// Applies a change of the files (see [`Version::apply`]). Every removed file must be in
    /// the version, and no added one unless it is removed too (a file moved to another level
    /// keeps its id).
    pub fn apply(mut self, change: &FileChange) -> Self {
        debug_assert!(
            change
                .removed
                .iter()
                .all(|id| self.version.file(*id).is_some()),
            "a change removes a file its version does not hold"
        );
        debug_assert!(
            change
                .added
                .iter()
                .all(|f| self.version.file(f.meta().id).is_none()
                    || change.removed.contains(&f.meta().id)),
            "a change adds a file its version already holds"
        );
        self.version = Arc::new(self.version.apply(change));
        self
    }

    /// Makes the active memtable the newest immutable one and `fresh` (empty) the active one.
    pub fn switch_memtable(mut self, fresh: Arc<MemtableSlot>) -> Self {
        debug_assert!(fresh.memtable.is_empty(), "a new active memtable is empty");
        debug_assert!(
            self.immutables
                .first()
                .is_none_or(|newest| newest.switched_at() <= self.active.switched_at()),
            "immutable memtables are switched in sequence order"
        );
        let previous = std::mem::replace(&mut self.active, fresh);
        self.immutables.insert(0, previous);
        self
    }

    /// Replaces the active memtable, which holds nothing (recovery swaps memtable kinds).
    pub fn replace_active(mut self, fresh: Arc<MemtableSlot>) -> Self {
        debug_assert!(
            self.active.memtable.is_empty(),
            "only an empty active memtable is replaced"
        );
        self.active = fresh;
        self
    }

    /// Removes the flushed memtable `slot`, the oldest immutable one (memtables are flushed
    /// oldest first).
    pub fn remove_flushed(mut self, slot: &Arc<MemtableSlot>) -> Self {
        debug_assert!(
            self.immutables.last().is_some_and(|m| Arc::ptr_eq(m, slot)),
            "the flushed memtable is the oldest immutable one"
        );
        self.immutables.retain(|m| !Arc::ptr_eq(m, slot));
        self
    }

    /// The super version.
    pub fn build(self) -> SuperVersion {
        SuperVersion {
            active: self.active,
            immutables: self.immutables,
            version: self.version,
        }
    }
}

/// The current super version of one table and the locks that order its changes (see the
/// module docs).
#[derive(Debug)]
pub struct VersionControl {
    current: RwLock<Arc<SuperVersion>>,
    changes: Mutex<()>,
}

/// Proof that the change lock of one [`VersionControl`] is held: the table's files change
/// only through it.
pub struct ChangeGuard<'a> {
    control: &'a VersionControl,
    _lock: MutexGuard<'a, ()>,
}

impl std::fmt::Debug for ChangeGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeGuard").finish_non_exhaustive()
    }
}

impl ChangeGuard<'_> {
    /// The current file version: the one a change made under this guard is installed over
    /// (no other file change can happen while the guard is held).
    pub fn version(&self) -> Arc<Version> {
        Arc::clone(&self.control.current().version)
    }
}

impl VersionControl {
    /// A control whose current super version is `sv`.
    pub fn new(sv: SuperVersion) -> Self {
        VersionControl {
            current: RwLock::new(Arc::new(sv)),
            changes: Mutex::new(()),
        }
    }

    /// The current super version.
    pub fn current(&self) -> Arc<SuperVersion> {
        Arc::clone(&self.current.read())
    }

    /// The current super version under the `sv` read lock: no new one is installed while the
    /// guard lives (what `TableInner::pin_latest` reads its sequence number under).
    pub fn read(&self) -> RwLockReadGuard<'_, Arc<SuperVersion>> {
        self.current.read()
    }

    /// Takes the change lock (after commit leadership, before the manifest lock).
    pub fn lock_changes(&self) -> ChangeGuard<'_> {
        ChangeGuard {
            control: self,
            _lock: self.changes.lock(),
        }
    }

    /// Installs `build(current)` as the current super version, under the `sv` write lock.
    /// Returns the new version.
    fn swap(
        &self,
        build: impl FnOnce(&SuperVersion, SuperVersionBuilder) -> SuperVersionBuilder,
    ) -> Arc<Version> {
        let mut guard = self.current.write();
        let next = build(&guard, SuperVersionBuilder::from_current(&guard)).build();
        let version = Arc::clone(&next.version);
        *guard = Arc::new(next);
        version
    }

    /// Makes the active memtable immutable and `fresh` the active one (the caller holds commit
    /// leadership, so no write lands in the old one afterwards). The files stay as they are.
    pub fn switch_memtable(&self, fresh: Arc<MemtableSlot>) -> Arc<Version> {
        self.swap(|_, b| b.switch_memtable(fresh))
    }

    /// Replaces the empty active memtable with `fresh`.
    pub fn replace_active(&self, fresh: Arc<MemtableSlot>) -> Arc<Version> {
        self.swap(|_, b| b.replace_active(fresh))
    }

    /// Installs a change of the files, made under `guard`: the version after `change`, without
    /// the memtable `flushed` (whose rows the added file holds, so they leave and arrive in the
    /// same swap). `publish` runs under the `sv` write lock with the super version being
    /// replaced, before any reader can see the new one. Returns the new version.
    pub fn install(
        &self,
        guard: &ChangeGuard<'_>,
        change: &FileChange,
        flushed: Option<&Arc<MemtableSlot>>,
        publish: impl FnOnce(&SuperVersion),
    ) -> Arc<Version> {
        debug_assert!(
            std::ptr::eq(guard.control, self),
            "a change is installed under its own table's change lock"
        );
        self.swap(|current, b| {
            publish(current);
            let b = b.apply(change);
            match flushed {
                Some(slot) => b.remove_flushed(slot),
                None => b,
            }
        })
    }

    /// Replaces everything with an empty super version (a dropped table), without the change
    /// lock: the table's changes check that it is dropped before they install.
    pub fn reset(&self, fresh: Arc<MemtableSlot>) -> Arc<Version> {
        self.swap(|_, _| SuperVersionBuilder::new(fresh))
    }
}

#[cfg(test)]
mod tests {
    use std::ops::Bound;

    use proptest::prelude::*;

    use super::*;

    fn context(dir: &std::path::Path) -> Arc<FileContext> {
        let store = SstStore::new(dir, None).expect("store");
        Arc::new(FileContext {
            cache: Arc::new(BlockCache::new(1 << 20, 0)),
            keys: Arc::new(KeyCache::new(1 << 20)),
            metrics: Arc::new(Metrics::default()),
            verify: false,
            purger: Purger::start(
                store.clone(),
                Arc::new(Metrics::default()),
                std::time::Duration::from_secs(1),
                64,
            )
            .expect("purger"),
            store,
        })
    }

    fn schema() -> Arc<TableSchema> {
        let user = arrow::datatypes::Schema::new(vec![arrow::datatypes::Field::new(
            "k",
            arrow::datatypes::DataType::Int64,
            false,
        )]);
        Arc::new(TableSchema::new(Arc::new(user), &["k"]).expect("schema"))
    }

    /// A handle for a file that is never opened.
    fn file(
        context: &Arc<FileContext>,
        id: FileId,
        level: u32,
        keys: (u8, u8),
        seqs: (SeqNo, SeqNo),
    ) -> Arc<SstHandle> {
        let meta = SstMeta {
            id,
            table_id: 1,
            level,
            run_id: id,
            size_bytes: 1,
            crc32c: 0,
            rows: 1,
            tombstones: 0,
            older_versions: 0,
            min_key: vec![keys.0],
            max_key: vec![keys.1],
            min_seq: seqs.0,
            max_seq: seqs.1,
            created_at_ms: 0,
        };
        Arc::new(SstHandle::new(meta, schema(), Arc::clone(context)))
    }

    fn range_of(lower: Option<(u8, bool)>, upper: Option<(u8, bool)>) -> KeyRange {
        let bound = |b: Option<(u8, bool)>| match b {
            None => Bound::Unbounded,
            Some((k, true)) => Bound::Included(vec![k]),
            Some((k, false)) => Bound::Excluded(vec![k]),
        };
        KeyRange::new(bound(lower), bound(upper))
    }

    fn arb_range() -> impl Strategy<Value = KeyRange> {
        let bound = prop::option::of((0u8..40, any::<bool>()));
        (bound.clone(), bound).prop_map(|(l, u)| range_of(l, u))
    }

    /// Files: a few L0 files anywhere, and disjoint files on levels 1 and 2.
    /// A file: level, key span, sequence span.
    type FileSpec = (u32, (u8, u8), (SeqNo, SeqNo));

    fn arb_files() -> impl Strategy<Value = Vec<FileSpec>> {
        let l0 =
            prop::collection::vec((0u8..40, 0u8..8, 1u64..50, 0u64..10), 0..5).prop_map(|files| {
                files
                    .into_iter()
                    .map(|(k, w, s, d)| (0, (k, k.saturating_add(w)), (s, s + d)))
                    .collect::<Vec<_>>()
            });
        let level = |level: u32| {
            prop::collection::btree_set(0u8..40, 0..12).prop_map(move |cuts| {
                // Consecutive pairs of distinct cut points: disjoint, in key order.
                let cuts: Vec<u8> = cuts.into_iter().collect();
                cuts.chunks_exact(2)
                    .enumerate()
                    .map(|(i, c)| (level, (c[0], c[1]), (i as u64 + 1, i as u64 + 20)))
                    .collect::<Vec<_>>()
            })
        };
        (l0, level(1), level(2)).prop_map(|(a, b, c)| a.into_iter().chain(b).chain(c).collect())
    }

    proptest! {
        #[test]
        fn files_overlapping_is_the_filter_over_every_file(
            files in arb_files(),
            ranges in prop::collection::vec(arb_range(), 0..4),
            read_seq in 0u64..60,
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let context = context(dir.path());
            let handles: Vec<Arc<SstHandle>> = files
                .iter()
                .enumerate()
                .map(|(i, (level, keys, seqs))| file(&context, i as FileId + 1, *level, *keys, *seqs))
                .collect();
            let version = Version::new(handles);
            let expected: Vec<FileId> = version
                .files()
                .filter(|f| {
                    let m = f.meta();
                    m.min_seq <= read_seq
                        && ranges.iter().any(|r| r.overlaps(&m.min_key, &m.max_key))
                })
                .map(|f| f.meta().id)
                .collect();
            let got: Vec<FileId> = version
                .files_overlapping(&ranges, read_seq)
                .map(|f| f.meta().id)
                .collect();
            prop_assert_eq!(got, expected);
        }
    }

    #[test]
    fn a_point_finds_l0_newest_first_then_one_file_per_level() {
        let dir = tempfile::tempdir().expect("tempdir");
        let context = context(dir.path());
        let version = Version::new(vec![
            file(&context, 1, 0, (5, 9), (30, 31)),
            file(&context, 2, 0, (0, 20), (40, 41)),
            file(&context, 3, 0, (7, 7), (50, 60)),
            file(&context, 4, 1, (0, 4), (10, 11)),
            file(&context, 5, 1, (5, 8), (12, 13)),
            file(&context, 6, 1, (9, 12), (14, 15)),
            file(&context, 7, 2, (6, 30), (1, 2)),
        ]);
        let ids = |ranges: &[KeyRange], read_seq| -> Vec<FileId> {
            version
                .files_overlapping(ranges, read_seq)
                .map(|f| f.meta().id)
                .collect()
        };
        let point = [KeyRange::point(vec![7])];
        assert_eq!(ids(&point, 100), vec![3, 2, 1, 5, 7]);
        // File 3 holds nothing at or below 45; file 2 holds rows from 40 on.
        assert_eq!(ids(&point, 45), vec![2, 1, 5, 7]);
        assert_eq!(ids(&point, 5), vec![7]);
        assert_eq!(ids(&[KeyRange::point(vec![21])], 100), vec![7]);
        assert_eq!(ids(&[KeyRange::empty()], 100), Vec::<FileId>::new());
        assert_eq!(ids(&[], 100), Vec::<FileId>::new());
        let two = [
            range_of(None, Some((4, true))),
            range_of(Some((12, false)), None),
        ];
        assert_eq!(ids(&two, 100), vec![2, 4, 7]);
    }

    fn slot_with(seq: SeqNo) -> Arc<MemtableSlot> {
        let slot = Arc::new(MemtableSlot::new(
            crate::memtable::MemtableKind::Sorted.create(),
        ));
        if seq > 0 {
            slot.memtable
                .insert(&[1], seq, crate::types::OpKind::Put, b"v");
            slot.note_inserted(seq, seq);
        }
        slot
    }

    #[test]
    fn version_control_switches_flushes_and_publishes_in_one_swap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let context = context(dir.path());
        let control = VersionControl::new(SuperVersion::new(
            slot_with(0),
            Arc::new(Version::default()),
        ));
        // Recovery replaces the empty active memtable.
        let first = slot_with(3);
        control.replace_active(Arc::clone(&first));
        first.mark_switched(3);
        let second = slot_with(0);
        control.switch_memtable(Arc::clone(&second));
        second
            .memtable
            .insert(&[2], 5, crate::types::OpKind::Put, b"w");
        second.note_inserted(5, 5);
        second.mark_switched(5);
        control.switch_memtable(slot_with(0));
        let sv = control.current();
        let immutables: Vec<SeqNo> = sv.immutables.iter().map(|m| m.switched_at()).collect();
        assert_eq!(immutables, vec![5, 3], "immutable memtables newest first");
        // Flushing the oldest: its file arrives and it leaves in the same swap, and what is
        // published is published under the sv lock, seeing the super version it replaces.
        let pinned = control.current();
        let guard = control.lock_changes();
        let change = FileChange {
            added: vec![file(&context, 7, 0, (1, 1), (3, 3))],
            ..FileChange::default()
        };
        let mut seen_before = None;
        let version = control.install(&guard, &change, Some(&first), |current| {
            seen_before = Some(current.immutables.len());
        });
        drop(guard);
        assert_eq!(seen_before, Some(2));
        assert_eq!(version.files().count(), 1);
        let sv = control.current();
        assert!(Arc::ptr_eq(&sv.version, &version));
        assert_eq!(sv.immutables.len(), 1);
        assert!(Arc::ptr_eq(&sv.immutables[0], &second));
        // A reader pinned before keeps what it pinned.
        assert_eq!(pinned.immutables.len(), 2);
        assert_eq!(pinned.version.files().count(), 0);
        // A moved file: removed and added with the same id.
        let guard = control.lock_changes();
        let moved = FileChange {
            added: vec![file(&context, 7, 1, (1, 1), (3, 3))],
            removed: vec![7],
            ..FileChange::default()
        };
        let version = control.install(&guard, &moved, None, |_| {});
        assert_eq!(guard.version().level(1).len(), 1);
        drop(guard);
        assert_eq!(version.level(0).len(), 0);
        // A dropped table lets go of everything.
        control.reset(slot_with(0));
        let sv = control.current();
        assert!(sv.immutables.is_empty() && sv.version.files().count() == 0);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "the flushed memtable is the oldest immutable one")]
    fn flushing_a_memtable_other_than_the_oldest_is_caught() {
        let control = VersionControl::new(SuperVersion::new(
            slot_with(0),
            Arc::new(Version::default()),
        ));
        let old = slot_with(1);
        control.replace_active(Arc::clone(&old));
        old.mark_switched(1);
        let newer = slot_with(0);
        control.switch_memtable(Arc::clone(&newer));
        newer
            .memtable
            .insert(&[2], 2, crate::types::OpKind::Put, b"w");
        newer.note_inserted(2, 2);
        newer.mark_switched(2);
        control.switch_memtable(slot_with(0));
        let guard = control.lock_changes();
        control.install(&guard, &FileChange::default(), Some(&newer), |_| {});
    }
}
