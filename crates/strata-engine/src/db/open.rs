//! Opening a database: directory checks, the lock, the manifest, orphan cleanup, WAL replay.
//!
//! A database on object storage ([`crate::storage`]) has no directory to check: its `LOCK`
//! and WAL are in the local WAL directory ([`Options::local_wal_dir`]), and opening its
//! manifest commits a new writer epoch (fencing earlier writers) before anything else is
//! written, so the orphan cleanup that follows cannot delete a file an earlier writer could
//! still commit.
//!
//! Recovery replays every WAL segment in order into the memtables of the tables the manifest
//! lists, skipping entries already in SSTs (at or below the table's flushed sequence) and
//! entries of dropped tables. A memtable that fills up during replay is flushed on the spot,
//! so memory stays bounded however long the log is. A torn tail of the newest segment holding a
//! record is cut off (empty segments after it, left by an open that failed, are deleted first);
//! any other damage stops the open with [`Error::Corruption`].

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};

use super::{Background, Catalog, CommitQueue, DbInner};
use crate::disk_cache::DiskCache;
use crate::error::{Error, Result};
use crate::manifest::{CURRENT, Manifest, ManifestState};
use crate::metrics::Metrics;
use crate::options::Options;
use crate::purge::{PURGE_QUEUE_CAPACITY, Purger};
use crate::sst::{BlockCache, KeyCache, SstStore, parse_sst_object_path};
use crate::storage::{Storage, is_url};
use crate::version::FileContext;
use crate::wal::{
    SegmentInfo, Wal, drop_empty_newest_segments, parse_segment_file_name, read_segment,
    segment_file_name,
};

/// Entries replayed between two checks of memtable sizes during recovery.
const ROOM_CHECK_ENTRIES: usize = 1024;

/// Name of the lock file.
pub const LOCK_FILE: &str = "LOCK";

/// The disk cache's directory in the local WAL directory of a database on object storage,
/// unless [`Options::disk_cache_dir`] names another.
pub const DISK_CACHE_DIR: &str = "cache";

pub(super) fn open(path: &Path, options: Options) -> Result<Arc<DbInner>> {
    options.validate()?;
    let faults = options.faults.clone();
    let metrics = Arc::new(Metrics::default());
    let (lock_file, mut manifest, store, wal_dir) = if is_url(path) {
        let store = Storage::for_path(path, faults.clone())?;
        let local = match &options.local_wal_dir {
            Some(dir) => dir.clone(),
            None => default_local_wal_dir(&store)?,
        };
        std::fs::create_dir_all(&local).map_err(|e| Error::io(&local, e))?;
        let lock_file = acquire_lock(&local)?;
        let disk_cache = if options.disk_cache_bytes > 0 {
            let dir = match &options.disk_cache_dir {
                Some(dir) => dir.clone(),
                None => local.join(DISK_CACHE_DIR),
            };
            Some(Arc::new(DiskCache::open(&dir, options.disk_cache_bytes)?))
        } else {
            None
        };
        let store = store.with_reads(Arc::clone(&metrics), disk_cache);
        let manifest = Manifest::open_remote(&store, options.create_if_missing, faults.clone())
            .map_err(|e| store.with_settings_note(e))?
            .ok_or_else(|| Error::DatabaseNotFound(path.to_path_buf()))?;
        (lock_file, manifest, store, local.join("wal"))
    } else {
        prepare_directory(path, &options)?;
        let lock_file = acquire_lock(path)?;
        let manifest = if Manifest::exists(path) {
            Manifest::open(path, options.manifest_rewrite_bytes, faults.clone())?
        } else {
            Manifest::create(path, options.manifest_rewrite_bytes, faults.clone())?
        };
        let store = SstStore::new(path, faults.clone())?;
        (lock_file, manifest, store, path.join("wal"))
    };
    manifest.remove_stale_logs()?;
    drop_staging_tables(&mut manifest)?;
    remove_orphans(&store, manifest.state())?;
    let files = Arc::new(FileContext {
        cache: Arc::new(BlockCache::new(
            options.block_cache_bytes,
            options.block_cache_bytes / 100 * usize::from(options.row_page_cache_percent),
        )),
        keys: Arc::new(KeyCache::new(options.key_cache_bytes)),
        metrics: Arc::clone(&metrics),
        verify: options.verify_sst_checksums,
        purger: Purger::start(
            store.clone(),
            Arc::clone(&metrics),
            Duration::from_millis(options.obsolete_file_retry_ms),
            PURGE_QUEUE_CAPACITY,
        )?,
        store,
    });
    std::fs::create_dir_all(&wal_dir).map_err(|e| Error::io(&wal_dir, e))?;
    let segments = list_segments(&wal_dir)?;
    let next_segment = segments.last().map_or(1, |id| id + 1);
    // Before this open adds its own segment: an earlier open that failed left one, empty,
    // and the newest segment that may hold a torn tail is the newest one holding a record.
    let segments = drop_empty_newest_segments(&wal_dir, segments)?;
    let wal = Wal::create(
        &wal_dir,
        next_segment,
        Vec::new(),
        options.wal_segment_size_bytes,
        faults,
    )?;
    let last_seq = manifest.state().last_seq;
    let state = manifest.state().clone();
    let inner = Arc::new(DbInner {
        path: if is_url(path) {
            files.store.root()
        } else {
            path.to_path_buf()
        },
        options,
        lock_file: Mutex::new(Some(lock_file)),
        wal,
        manifest: Mutex::new(manifest),
        catalog: RwLock::new(Catalog::default()),
        commit: CommitQueue::default(),
        last_seq: AtomicU64::new(last_seq),
        visible_seq: AtomicU64::new(last_seq),
        snapshots: Mutex::new(BTreeMap::new()),
        files,
        metrics,
        memtable_bytes: AtomicUsize::new(0),
        progress: Mutex::new(0),
        progress_changed: Condvar::new(),
        background: Background::default(),
        closed: AtomicBool::new(false),
        replaying: AtomicBool::new(true),
        background_error: Mutex::new(None),
        loads: Default::default(),
    });
    {
        let mut catalog = inner.catalog.write();
        catalog.namespaces = state.namespaces.clone();
        for table in state.tables.values() {
            let files: Vec<_> = table.files.values().cloned().collect();
            let (dvs, maintained) = load_dvs(&inner.files, table);
            let built =
                inner.table_from_def(&table.def, files, dvs, maintained, table.flushed_seq)?;
            catalog.insert(&table.def, built);
        }
    }
    build_missing_dvs(&inner);
    replay_into_vectors(&inner, &wal_dir, &segments)?;
    init_row_ids(&inner);
    inner
        .background
        .start(&inner)
        .map_err(|e| Error::io(path, e))?;
    let tables: Vec<_> = inner.catalog.read().by_id.values().cloned().collect();
    for table in &tables {
        table.refresh_pressure(&table.super_version().version);
        if !table.super_version().immutables.is_empty() {
            inner.schedule_flush(table);
        }
        inner.schedule_compaction(table);
    }
    inner.release_wal();
    Ok(inner)
}

/// Drops the staging tables a crash left unpublished (one manifest edit), before their files
/// are taken for orphans and their WAL entries skipped as entries of dropped tables.
fn drop_staging_tables(manifest: &mut Manifest) -> Result<()> {
    let staged: Vec<_> = manifest
        .state()
        .tables
        .values()
        .filter(|t| t.def.staging)
        .map(|t| t.def.id)
        .collect();
    if staged.is_empty() {
        return Ok(());
    }
    tracing::info!(tables = ?staged, "dropping staging tables left unpublished by a crash");
    manifest.apply(crate::manifest::VersionEdit {
        drop_tables: staged,
        ..Default::default()
    })
}

/// Creates the directory if allowed, and refuses directories that are not Strata databases.
fn prepare_directory(path: &Path, options: &Options) -> Result<()> {
    if !path.exists() {
        if !options.create_if_missing {
            return Err(Error::DatabaseNotFound(path.to_path_buf()));
        }
        std::fs::create_dir_all(path).map_err(|e| Error::io(path, e))?;
        return Ok(());
    }
    if !path.is_dir() {
        return Err(Error::NotADatabase {
            path: path.to_path_buf(),
            reason: "it is not a directory".into(),
        });
    }
    if path.join(CURRENT).exists() {
        return Ok(());
    }
    // No CURRENT: only an empty directory (or one a crash left half-created) may become a
    // database.
    let entries = std::fs::read_dir(path).map_err(|e| Error::io(path, e))?;
    let foreign: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| {
            !matches!(name.as_str(), "LOCK" | "wal" | "sst" | "CURRENT.tmp")
                && !name.starts_with("MANIFEST-")
        })
        .collect();
    if !foreign.is_empty() {
        return Err(Error::NotADatabase {
            path: path.to_path_buf(),
            reason: format!(
                "it holds other files ({}) and no CURRENT file",
                foreign.join(", ")
            ),
        });
    }
    let has_wal = std::fs::read_dir(path.join("wal"))
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if has_wal {
        return Err(Error::corruption(
            path.join(CURRENT),
            0,
            "the WAL exists but CURRENT is missing",
        ));
    }
    if !options.create_if_missing {
        return Err(Error::DatabaseNotFound(path.to_path_buf()));
    }
    Ok(())
}

/// The default local WAL directory of a database on object storage:
/// `$XDG_DATA_HOME/strata/<scheme>/<bucket>/<prefix>` (`$HOME/.local/share` without
/// `XDG_DATA_HOME`).
fn default_local_wal_dir(store: &Storage) -> Result<PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .ok_or_else(|| {
            Error::InvalidArgument(
                "no HOME or XDG_DATA_HOME for the local WAL of a database on object storage; \
                 set Options::local_wal_dir"
                    .into(),
            )
        })?;
    let url = store.root().display().to_string();
    let (scheme, rest) = url.split_once("://").unwrap_or(("s3", url.as_str()));
    Ok(base.join("strata").join(scheme).join(rest))
}

fn acquire_lock(path: &Path) -> Result<File> {
    let lock_path = path.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::io(&lock_path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Locked {
            path: path.to_path_buf(),
            lock: lock_path,
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&lock_path, e)),
    }
}

/// Deletes SST and deletion-vector files the manifest does not name (a crash between writing
/// a file and recording it, or after an edit stopped naming it) and anything else under `sst/`,
/// except the files a live query lease names ([`crate::lease`]).
fn remove_orphans(store: &SstStore, state: &ManifestState) -> Result<()> {
    let leased = crate::lease::leased_objects(store)?;
    for object in store.list("sst")? {
        if leased.contains(&object) {
            continue;
        }
        let live = parse_sst_object_path(&object).is_some_and(|(table, file)| {
            state
                .tables
                .get(&table)
                .is_some_and(|t| t.files.contains_key(&file))
        }) || crate::dv::parse_dv_object_path(&object).is_some_and(|(table, dv)| {
            state
                .tables
                .get(&table)
                .is_some_and(|t| t.dvs.values().any(|d| d.id == dv))
        });
        if !live {
            tracing::info!(file = %object, "removing orphan SST file");
            store.delete(&object)?;
        }
    }
    // Directories of dropped tables (an object store has no directories).
    let Some(root) = store.local_root() else {
        return Ok(());
    };
    remove_staging_files(&root.join("sst"));
    if let Ok(entries) = std::fs::read_dir(root.join("sst")) {
        for entry in entries.flatten() {
            let _ = std::fs::remove_dir(entry.path());
        }
    }
    Ok(())
}

/// Deletes, under the local directory `dir`, the staging files of uploads a crash (or a
/// close during a flush or compaction) interrupted: the local store writes an object to
/// `<object>#<n>` and renames it when complete, and its listing hides such files, so
/// [`remove_orphans`] finds them on disk. Only called at open, under the database's lock,
/// before any job can upload. Best effort: what cannot be read or deleted stays.
fn remove_staging_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(kind) if kind.is_dir() => remove_staging_files(&path),
            Ok(kind) if kind.is_file() && is_staging_file_name(&entry.file_name()) => {
                tracing::info!(file = %path.display(), "removing an interrupted upload");
                let _ = std::fs::remove_file(&path);
            }
            _ => {}
        }
    }
}

/// True for a local store's staging file name: `<name>#<digits>`.
fn is_staging_file_name(name: &std::ffi::OsStr) -> bool {
    name.to_str()
        .and_then(|n| n.rsplit_once('#'))
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The deletion vectors the manifest names for `table`, loaded and checked, and whether they
/// are complete. A DV that fails its checks (missing, damaged) leaves the table without DVs,
/// to be rebuilt from the SSTs (which stay the source of truth), never read as data.
fn load_dvs(
    files: &Arc<FileContext>,
    table: &crate::manifest::TableState,
) -> (Vec<Arc<crate::dv::DeletionVector>>, bool) {
    if !table.dvs_maintained {
        return (Vec::new(), false);
    }
    let mut dvs = Vec::with_capacity(table.dvs.len());
    for meta in table.dvs.values() {
        let rows = table.files.get(&meta.file).map_or(0, |f| f.rows);
        match crate::dv::DeletionVector::load(files, meta, rows) {
            Ok(dv) => dvs.push(dv),
            Err(error) => {
                tracing::error!(
                    table = %table.def.name, %error,
                    "deletion vector unusable; rebuilding the table's deletion vectors"
                );
                return (Vec::new(), false);
            }
        }
    }
    (dvs, true)
}

/// Builds the deletion vectors of every table whose DVs are not complete (a database written
/// before DVs, or a DV that failed its checks). A table whose rebuild fails stays without DVs:
/// its scans merge, as before DVs existed, and the failure is logged.
fn build_missing_dvs(inner: &Arc<DbInner>) {
    let tables: Vec<_> = inner.catalog.read().by_id.values().cloned().collect();
    for table in tables {
        if table.super_version().version.dvs_maintained() {
            continue;
        }
        if let Err(error) = inner.rebuild_table_dvs(&table) {
            tracing::warn!(table = %table.name, %error, "could not build deletion vectors");
        }
    }
}

fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let mut ids: Vec<u64> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .flatten()
        .filter_map(|e| parse_segment_file_name(&e.file_name().to_string_lossy()))
        .collect();
    ids.sort_unstable();
    Ok(ids)
}

fn replay_wal(inner: &Arc<DbInner>, dir: &Path, segments: &[u64]) -> Result<()> {
    let started = Instant::now();
    let mut replayed = Vec::with_capacity(segments.len());
    let mut since_check = 0usize;
    for (i, id) in segments.iter().enumerate() {
        let path = dir.join(segment_file_name(*id));
        let is_newest = i + 1 == segments.len();
        let result = read_segment(&path, is_newest, |record| {
            inner.apply_payload(record.payload, record.count, record.first_seq, true)?;
            let last = record.first_seq + u64::from(record.count) - 1;
            inner.last_seq.fetch_max(last, Ordering::AcqRel);
            inner.visible_seq.fetch_max(last, Ordering::AcqRel);
            Metrics::inc(&inner.metrics.recovered_records);
            Metrics::add(&inner.metrics.recovered_rows, u64::from(record.count));
            // Memory is checked every ROOM_CHECK_ENTRIES entries, so the overshoot is bounded.
            since_check += record.count as usize;
            if since_check >= ROOM_CHECK_ENTRIES {
                since_check = 0;
                make_room_during_replay(inner)?;
            }
            Ok(())
        })?;
        if result.torn_bytes > 0 {
            let file = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| Error::io(&path, e))?;
            file.set_len(result.valid_bytes)
                .map_err(|e| Error::io(&path, e))?;
            file.sync_all().map_err(|e| Error::io(&path, e))?;
        }
        replayed.push(SegmentInfo {
            id: *id,
            max_seq: result.max_seq,
        });
    }
    inner.wal.adopt_closed(replayed);
    Metrics::add(
        &inner.metrics.recovery_micros,
        started.elapsed().as_micros() as u64,
    );
    Ok(())
}

/// Replays the WAL into `vector` memtables (appends, sorted once when flushed: far faster
/// than inserting into an ordered structure in sequence order), then makes every non-empty
/// one immutable, to be flushed in the background, and gives each table a fresh active
/// memtable of its own kind.
fn replay_into_vectors(inner: &Arc<DbInner>, wal_dir: &Path, segments: &[u64]) -> Result<()> {
    let tables: Vec<_> = inner.catalog.read().by_id.values().cloned().collect();
    let vector = || {
        Arc::new(crate::version::MemtableSlot::new(
            crate::memtable::MemtableKind::Vector.create(),
        ))
    };
    for table in &tables {
        table.replace_active_memtable(vector());
    }
    let replayed = replay_wal(inner, wal_dir, segments);
    inner.replaying.store(false, Ordering::Release);
    replayed?;
    for table in &tables {
        if table.super_version().active.memtable.is_empty() {
            let fresh = table.new_memtable();
            table.replace_active_memtable(fresh);
        } else {
            inner.switch_memtable(table)?;
        }
    }
    Ok(())
}

/// Flushes memtables that filled up during replay, so recovery memory stays bounded.
fn make_room_during_replay(inner: &Arc<DbInner>) -> Result<()> {
    let tables: Vec<_> = inner.catalog.read().by_id.values().cloned().collect();
    for table in tables {
        let full =
            table.super_version().active.memory_bytes() >= table.options.read().memtable_size_bytes;
        let over_budget =
            inner.memtable_bytes.load(Ordering::Relaxed) >= inner.options.write_buffer_budget_bytes;
        if full || (over_budget && !table.super_version().active.memtable.is_empty()) {
            inner.switch_memtable(&table)?;
            inner.flush_immutables(&table)?;
        }
    }
    Ok(())
}

/// Sets the next hidden row id of append-only tables past every id in use.
fn init_row_ids(inner: &Arc<DbInner>) {
    let tables: Vec<_> = inner.catalog.read().by_id.values().cloned().collect();
    for table in tables.iter().filter(|t| t.schema.has_hidden_rowid()) {
        let sv = table.super_version();
        let mut next = 0u64;
        for file in sv.version.files() {
            next = next.max(decode_rowid(&file.meta().max_key).saturating_add(1));
        }
        for slot in sv.memtables() {
            slot.memtable
                .visit_from(&[], crate::types::MAX_SEQ, &mut |e| {
                    next = next.max(decode_rowid(e.key).saturating_add(1));
                    true
                });
        }
        table.next_rowid.fetch_max(next, Ordering::AcqRel);
    }
}

/// The row id encoded in a hidden-key table's key (an unsigned 64-bit big-endian number).
fn decode_rowid(key: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    let n = key.len().min(8);
    buf[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(buf)
}
