//! The database: one directory, one WAL, one manifest, many tables.
//!
//! ## Directory layout
//!
//! ```text
//! <dir>/CURRENT             name of the live manifest log (see `manifest`)
//! <dir>/MANIFEST-<n>        the manifest log
//! <dir>/LOCK                held (flock) by the process that has the database open
//! <dir>/wal/<id>.wal        WAL segments (see `wal`)
//! <dir>/sst/t<table>/<file>.parquet   SST files (see `sst`)
//! ```
//!
//! ## Ownership and locks
//!
//! * `commit` (the commit queue) serialises the write path: one *leader* at a time assigns
//!   sequence numbers, appends a group of batches to the WAL, applies them to memtables and
//!   publishes `visible_seq`. Memtable switches and WAL rotation happen only while holding
//!   leadership, so no write is ever half in an old memtable and half in a new one.
//! * `manifest` (Mutex) serialises structural changes: every flush install, table creation and
//!   drop appends one manifest edit and swaps in a new version while holding it.
//! * `catalog` (RwLock) maps names and ids to tables; held only to look up or insert.
//! * `snapshots` (Mutex) holds the live snapshot sequence numbers, read by flushes.
//!
//! Lock order: `commit` leadership, then `manifest`, then `catalog`, then a table's `sv`.
//!
//! ## Invariants
//!
//! * `visible_seq` only grows, and every write with a sequence number up to it is in a memtable
//!   or an SST of its table.
//! * A WAL segment is deleted only when every entry in it is below the flush floor: the
//!   smallest sequence number held by any memtable of any table (tables with empty memtables do
//!   not hold the floor back).

mod background;
mod compact;
mod flush;
mod ingest;
mod open;
mod write;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parking_lot::{Condvar, Mutex, RwLock};

use crate::error::{Error, Result};
use crate::kv::KvStore;
use crate::manifest::{Manifest, TableDef, VersionEdit};
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::options::{Options, TableOptions};
use crate::schema::TableSchema;
use crate::snapshot::Snapshot;
use crate::sst::now_ms;
use crate::table::{Table, TableInner, TableStats, table_stats};
use crate::types::{SeqNo, TableId};
use crate::version::{FileContext, SuperVersion, Version};
use crate::wal::Wal;

pub(crate) use background::Background;
pub(crate) use compact::level_entry;
pub(crate) use compact::levels_of;
pub use compact::{CompactionReport, LevelCompactionStats, LevelReport};
pub use ingest::IngestOptions;
pub(crate) use write::CommitQueue;

/// Longest table name, in bytes.
pub const TABLE_NAME_BYTES_MAX: usize = 255;

/// Names and ids of the live tables.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    pub by_name: HashMap<String, Arc<TableInner>>,
    pub by_id: HashMap<TableId, Arc<TableInner>>,
}

/// State shared by the database handle, table handles and background threads.
pub(crate) struct DbInner {
    pub path: PathBuf,
    pub options: Options,
    lock_file: Mutex<Option<File>>,
    pub wal: Wal,
    pub manifest: Mutex<Manifest>,
    pub catalog: RwLock<Catalog>,
    pub commit: CommitQueue,
    /// Highest sequence number assigned (commit leader only).
    pub last_seq: AtomicU64,
    /// Highest sequence number readers may see.
    pub visible_seq: AtomicU64,
    pub snapshots: Mutex<BTreeMap<SeqNo, usize>>,
    pub files: Arc<FileContext>,
    pub metrics: Arc<Metrics>,
    /// Memory of all memtables of all tables.
    pub memtable_bytes: AtomicUsize,
    /// Bumped after every flush; stalled writers wait on it.
    pub progress: Mutex<u64>,
    pub progress_changed: Condvar,
    pub background: Background,
    pub closed: AtomicBool,
    /// True while the WAL is replayed at open (memtables are `vector`s meanwhile).
    pub replaying: AtomicBool,
    /// The last background failure, shown in stall errors and metrics.
    pub background_error: Mutex<Option<String>>,
}

impl std::fmt::Debug for DbInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Information about one table, for listings.
#[derive(Debug, Clone)]
pub struct TableInfo {
    /// Table id.
    pub id: TableId,
    /// Name.
    pub name: String,
    /// User schema.
    pub schema: SchemaRef,
    /// Primary-key columns (empty for append-only tables).
    pub primary_key: Vec<String>,
    /// Options.
    pub options: TableOptions,
    /// Sizes and counts.
    pub stats: TableStats,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: u64,
}

/// An open Strata database. `Send + Sync`: share it with `Arc<Db>`. Dropping it closes it
/// (see [`Db::close`]).
pub struct Db {
    pub(crate) inner: Arc<DbInner>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

/// The schema of key-value tables: `(key BINARY PRIMARY KEY, value BINARY NOT NULL)`.
pub fn kv_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("key", DataType::Binary, false),
        Field::new("value", DataType::Binary, false),
    ]))
}

impl Db {
    /// Opens (or creates, with `create_if_missing`) the database in directory `path`:
    /// replays the manifest and the WAL, removes files a crash left behind, and starts the
    /// background threads.
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<Db> {
        open::open(path.as_ref(), options).map(|inner| Db { inner })
    }

    /// Flushes nothing, syncs the WAL, stops background work (a running flush finishes) and
    /// releases the directory lock. Every acknowledged write is in the WAL or an SST.
    pub fn close(self) -> Result<()> {
        self.inner.shutdown()
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The options the database was opened with.
    pub fn options(&self) -> &Options {
        &self.inner.options
    }

    /// Creates a table with the database's default table options.
    pub fn create_table(
        &self,
        name: &str,
        schema: SchemaRef,
        primary_key: &[&str],
    ) -> Result<Table> {
        let options = self.inner.options.table_defaults.clone();
        self.create_table_with(name, schema, primary_key, options)
    }

    /// Creates a table. `primary_key` names its key columns in key order; an empty key makes
    /// an append-only table keyed by a hidden row id.
    pub fn create_table_with(
        &self,
        name: &str,
        schema: SchemaRef,
        primary_key: &[&str],
        options: TableOptions,
    ) -> Result<Table> {
        self.inner.create_table(name, schema, primary_key, options)
    }

    /// The table named `name`.
    pub fn table(&self, name: &str) -> Result<Table> {
        self.inner.check_open()?;
        let catalog = self.inner.catalog.read();
        let inner = catalog
            .by_name
            .get(name)
            .ok_or_else(|| Error::TableNotFound(name.to_string()))?;
        Ok(Table {
            db: Arc::clone(&self.inner),
            inner: Arc::clone(inner),
        })
    }

    /// True when a table named `name` exists.
    pub fn has_table(&self, name: &str) -> bool {
        self.inner.catalog.read().by_name.contains_key(name)
    }

    /// Drops the table named `name`: it disappears at once, its files are deleted when the
    /// last reader lets go of them.
    pub fn drop_table(&self, name: &str) -> Result<()> {
        self.inner.drop_table(name)
    }

    /// Every table, by name.
    pub fn list_tables(&self) -> Vec<TableInfo> {
        let catalog = self.inner.catalog.read();
        let mut tables: Vec<TableInfo> = catalog
            .by_name
            .values()
            .map(|t| TableInfo {
                id: t.id,
                name: t.name.clone(),
                schema: Arc::clone(t.schema.user_schema()),
                primary_key: t.schema.primary_key().to_vec(),
                options: t.options.read().clone(),
                stats: table_stats(t),
                created_at_ms: t.created_at_ms,
            })
            .collect();
        tables.sort_by(|a, b| a.name.cmp(&b.name));
        tables
    }

    /// Changes a table's options. The new memtable kind applies to the next memtable;
    /// SST settings apply to files written from now on.
    pub fn alter_table_options(&self, name: &str, options: TableOptions) -> Result<()> {
        options.validate()?;
        let table = self.table(name)?;
        let mut manifest = self.inner.manifest.lock();
        manifest.apply(VersionEdit {
            table_options: vec![(table.id(), options.clone())],
            ..VersionEdit::default()
        })?;
        *table.inner.options.write() = options;
        table
            .inner
            .refresh_pressure(&table.inner.super_version().version);
        self.inner.schedule_compaction(&table.inner);
        Ok(())
    }

    /// The key-value store named `name` (a table `(key BINARY PRIMARY KEY, value BINARY)`),
    /// created on first use.
    pub fn kv(&self, name: &str) -> Result<KvStore> {
        let table = match self.table(name) {
            Ok(table) => table,
            Err(Error::TableNotFound(_)) => match self.create_table(name, kv_schema(), &["key"]) {
                Err(Error::TableExists(_)) => self.table(name)?,
                other => other?,
            },
            Err(e) => return Err(e),
        };
        KvStore::new(table)
    }

    /// Flushes the memtables of every table to SSTs and waits for it.
    pub fn flush(&self) -> Result<()> {
        self.inner.check_open()?;
        let tables: Vec<Arc<TableInner>> =
            self.inner.catalog.read().by_id.values().cloned().collect();
        for table in tables {
            self.inner.flush_table(&table)?;
        }
        Ok(())
    }

    /// A snapshot: reads through it see the database as it is now, until it is dropped.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::new(Arc::clone(&self.inner))
    }

    /// Counters and gauges.
    pub fn metrics(&self) -> MetricsSnapshot {
        let mut snapshot = self.inner.metrics.snapshot();
        let tables = self.inner.catalog.read().by_id.len() as u64;
        snapshot.push("tables", tables);
        snapshot.push(
            "memtable_bytes",
            self.inner.memtable_bytes.load(Ordering::Relaxed) as u64,
        );
        snapshot.push("visible_seq", self.inner.visible_seq());
        snapshot.push("wal_segments", self.inner.wal.segment_ids().len() as u64);
        snapshot.push("block_cache_bytes", self.inner.files.cache.bytes());
        snapshot.push(
            "live_snapshots",
            self.inner.snapshots.lock().values().sum::<usize>() as u64,
        );
        snapshot
    }

    /// The last background error, if a background job failed (it is retried).
    pub fn background_error(&self) -> Option<String> {
        self.inner.background_error.lock().clone()
    }

    /// The highest sequence number visible to reads.
    pub fn visible_seq(&self) -> SeqNo {
        self.inner.visible_seq()
    }

    /// The `object_store` holding the SST files and the directory it is rooted at, so other
    /// engines can read SSTs as Parquet.
    pub fn sst_object_store(&self) -> Arc<dyn object_store::ObjectStore> {
        self.inner.files.store.object_store()
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Err(error) = self.inner.shutdown() {
            tracing::warn!(%error, "closing the database failed");
        }
    }
}

impl DbInner {
    pub(crate) fn visible_seq(&self) -> SeqNo {
        self.visible_seq.load(Ordering::Acquire)
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed(None));
        }
        Ok(())
    }

    pub(crate) fn table_by_id(&self, id: TableId) -> Option<Arc<TableInner>> {
        self.catalog.read().by_id.get(&id).cloned()
    }

    /// Live snapshot sequence numbers, ascending.
    pub(crate) fn snapshot_seqs(&self) -> Vec<SeqNo> {
        self.snapshots.lock().keys().copied().collect()
    }

    /// Builds the in-memory table for a manifest definition.
    pub(crate) fn table_from_def(
        &self,
        def: &TableDef,
        files: Vec<crate::sst::SstMeta>,
        flushed_seq: SeqNo,
    ) -> Result<Arc<TableInner>> {
        let user = crate::schema::schema_from_ipc(&def.schema_ipc)?;
        let schema = Arc::new(TableSchema::new(Arc::new(user), &def.primary_key)?);
        let handles = files
            .into_iter()
            .map(|meta| {
                Arc::new(crate::version::SstHandle::new(
                    meta,
                    Arc::clone(&schema),
                    Arc::clone(&self.files),
                ))
            })
            .collect();
        let active = Arc::new(crate::version::MemtableSlot::new(
            def.options.memtable_kind.create(),
        ));
        Ok(Arc::new(TableInner {
            id: def.id,
            name: def.name.clone(),
            schema,
            options: RwLock::new(def.options.clone()),
            sv: RwLock::new(Arc::new(SuperVersion {
                active,
                immutables: Vec::new(),
                version: Arc::new(Version::new(handles)),
            })),
            dropped: AtomicBool::new(false),
            flush_queued: AtomicBool::new(false),
            flush_lock: Mutex::new(()),
            compaction_queued: AtomicBool::new(false),
            compaction_lock: Mutex::new(()),
            compaction_stats: Mutex::new(Vec::new()),
            counters: Default::default(),
            write_pressure: AtomicUsize::new(0),
            pending_compaction_bytes: AtomicU64::new(0),
            flushed_seq: AtomicU64::new(flushed_seq),
            next_rowid: AtomicU64::new(0),
            created_at_ms: def.created_at_ms,
        }))
    }

    fn create_table(
        self: &Arc<Self>,
        name: &str,
        schema: SchemaRef,
        primary_key: &[&str],
        options: TableOptions,
    ) -> Result<Table> {
        self.check_open()?;
        if name.is_empty() || name.len() > TABLE_NAME_BYTES_MAX {
            return Err(Error::InvalidArgument(format!(
                "table names must be 1 to {TABLE_NAME_BYTES_MAX} bytes"
            )));
        }
        options.validate()?;
        let table_schema = TableSchema::new(schema, primary_key)?;
        let mut manifest = self.manifest.lock();
        if self.catalog.read().by_name.contains_key(name) {
            return Err(Error::TableExists(name.to_string()));
        }
        let id = manifest.allocate_table_id();
        let def = TableDef {
            id,
            name: name.to_string(),
            schema_ipc: table_schema.user_schema_ipc()?,
            primary_key: table_schema.primary_key().to_vec(),
            options,
            created_at_ms: now_ms(),
        };
        let inner = self.table_from_def(&def, Vec::new(), 0)?;
        manifest.apply(VersionEdit {
            create_tables: vec![def],
            last_seq: Some(self.visible_seq()),
            ..VersionEdit::default()
        })?;
        let mut catalog = self.catalog.write();
        catalog.by_name.insert(name.to_string(), Arc::clone(&inner));
        catalog.by_id.insert(id, Arc::clone(&inner));
        Ok(Table {
            db: Arc::clone(self),
            inner,
        })
    }

    fn drop_table(&self, name: &str) -> Result<()> {
        self.check_open()?;
        let mut manifest = self.manifest.lock();
        let table = self
            .catalog
            .read()
            .by_name
            .get(name)
            .cloned()
            .ok_or_else(|| Error::TableNotFound(name.to_string()))?;
        manifest.apply(VersionEdit {
            drop_tables: vec![table.id],
            last_seq: Some(self.visible_seq()),
            ..VersionEdit::default()
        })?;
        table.dropped.store(true, Ordering::Release);
        {
            let mut catalog = self.catalog.write();
            catalog.by_name.remove(name);
            catalog.by_id.remove(&table.id);
        }
        let sv = table.super_version();
        for file in sv.version.files() {
            file.mark_obsolete();
        }
        self.memtable_bytes.fetch_sub(
            sv.memtable_bytes()
                .min(self.memtable_bytes.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
        // The dropped table no longer holds the WAL floor back; its files go when unreferenced.
        table.install(|sv| SuperVersion {
            active: Arc::new(crate::version::MemtableSlot::new(
                sv.active.memtable.kind().create(),
            )),
            immutables: Vec::new(),
            version: Arc::new(Version::default()),
        });
        drop(manifest);
        self.release_wal();
        self.signal_progress();
        Ok(())
    }

    /// Deletes WAL segments whose entries are all in SSTs.
    pub(crate) fn release_wal(&self) {
        let tables: Vec<Arc<TableInner>> = self.catalog.read().by_id.values().cloned().collect();
        let floor = tables
            .iter()
            .filter_map(|t| t.super_version().min_unflushed_seq())
            .min()
            .unwrap_or_else(|| self.visible_seq() + 1);
        match self.wal.delete_segments_below(floor) {
            Ok(deleted) => Metrics::add(&self.metrics.wal_segments_deleted, deleted as u64),
            Err(error) => tracing::warn!(%error, "could not delete old WAL segments"),
        }
    }

    /// Wakes writers waiting for flush progress.
    pub(crate) fn signal_progress(&self) {
        *self.progress.lock() += 1;
        self.progress_changed.notify_all();
    }

    /// Stops the database (idempotent).
    pub(crate) fn shutdown(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        // Wait for the write group in flight, then stop background work.
        self.commit.exclusive(|| ());
        self.background.stop();
        self.signal_progress();
        let synced = self.wal.close();
        if let Some(file) = self.lock_file.lock().take() {
            let _ = file.unlock();
        }
        synced
    }
}
