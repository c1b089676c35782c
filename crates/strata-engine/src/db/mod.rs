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
//!   drop appends one manifest edit and swaps in a new version while holding it. A change of a
//!   table's files goes through `install` (one edit, one swap, under the table's change lock).
//! * `catalog` (RwLock) maps `(namespace, name)` and ids to tables; held only to look up or
//!   insert.
//! * `snapshots` (Mutex) holds the live snapshot sequence numbers, read by flushes.
//!
//! Lock order: `commit` leadership, then a table's change lock (`VersionControl`), then
//! `manifest`, then `catalog`, then a table's `sv`.
//!
//! ## Namespaces and staging tables
//!
//! A table lives in a namespace: the default one (empty name, always present) or one made by
//! [`Db::create_namespace`], which persists even while empty. Names are unique per namespace,
//! so `a.b` (table `b` of namespace `a`) and a default-namespace table named `a.b` differ.
//! A *staging* table is written through its handle but found by no name until
//! [`Db::publish_table`] makes it visible, dropping any table holding its name in the same
//! manifest edit; staging tables a crash left behind are dropped at open. Tables carry
//! string *properties*, stored in the edit that creates them.
//!
//! ## Invariants
//!
//! * `visible_seq` only grows, and every write with a sequence number up to it is in a memtable
//!   or an SST of its table. A reader takes a table's super version and `visible_seq` as one
//!   pair, under the table's `sv` lock (`TableInner::pin_latest`); an ingest publishes its
//!   files and its `visible_seq` in one step under that lock.
//! * A WAL segment is deleted only when every entry in it is below the flush floor: the
//!   smallest sequence number held by any memtable of any table (tables with empty memtables do
//!   not hold the floor back).

mod background;
mod compact;
mod dvs;
mod flush;
mod ingest;
mod install;
mod open;
mod write;

use std::collections::{BTreeMap, BTreeSet, HashMap};
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
use crate::sst::{SstLayout, SstMeta, SstWriter, now_ms};
use crate::table::{Table, TableInner, TableStats, table_stats};
use crate::types::{FileId, SeqNo, TableId};
use crate::version::{FileContext, SuperVersion, Version, VersionControl};
use crate::wal::Wal;

pub(crate) use background::Background;
pub(crate) use compact::level_entry;
pub(crate) use compact::levels_of;
pub use compact::{CompactionReport, LevelCompactionStats, LevelReport};
pub use ingest::{BulkLoad, IngestOptions, batch_bytes};
pub(crate) use write::CommitQueue;

/// Longest table name, in bytes.
pub const TABLE_NAME_BYTES_MAX: usize = 255;

/// Names and ids of the live tables.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    /// Published tables by `(namespace, name)` (staging tables have no name yet).
    pub by_name: HashMap<(String, String), Arc<TableInner>>,
    /// Every live table, staging tables included, by id.
    pub by_id: HashMap<TableId, Arc<TableInner>>,
    /// Namespace, properties and staging state of every table in `by_id`.
    pub meta: HashMap<TableId, TableMeta>,
    /// The namespaces besides the default one (as in the manifest; read without its lock).
    pub namespaces: BTreeSet<String>,
}

/// What the catalog keeps of a table's definition besides the [`TableInner`].
#[derive(Debug, Clone)]
pub(crate) struct TableMeta {
    pub namespace: String,
    pub properties: BTreeMap<String, String>,
    pub staging: bool,
}

impl Catalog {
    /// Adds a table built from `def`.
    pub(crate) fn insert(&mut self, def: &TableDef, inner: Arc<TableInner>) {
        if !def.staging {
            self.by_name.insert(
                (def.namespace.clone(), def.name.clone()),
                Arc::clone(&inner),
            );
        }
        self.meta.insert(
            def.id,
            TableMeta {
                namespace: def.namespace.clone(),
                properties: def.properties.clone(),
                staging: def.staging,
            },
        );
        self.by_id.insert(def.id, inner);
    }

    /// The published table `name` of `namespace`.
    fn get(&self, namespace: &str, name: &str) -> Option<&Arc<TableInner>> {
        self.by_name.get(&(namespace.to_string(), name.to_string()))
    }

    /// Removes a table (published or staging).
    fn remove(&mut self, table: &TableInner) {
        if let Some(meta) = self.meta.remove(&table.id)
            && !meta.staging
        {
            let key = (meta.namespace, table.name.clone());
            if self.by_name.get(&key).is_some_and(|t| t.id == table.id) {
                self.by_name.remove(&key);
            }
        }
        self.by_id.remove(&table.id);
    }
}

/// The definition of a table to create (see [`Db::create_table_from`] and
/// [`Db::create_staging_table`]).
#[derive(Debug, Clone)]
pub struct TableSpec {
    /// The namespace ([`DEFAULT_NAMESPACE`] or one made by [`Db::create_namespace`]).
    pub namespace: String,
    /// The table's name, unique in its namespace.
    pub name: String,
    /// The user schema.
    pub schema: SchemaRef,
    /// Key columns in key order; empty for an append-only table keyed by a hidden row id.
    pub primary_key: Vec<String>,
    /// Options.
    pub options: TableOptions,
    /// Metadata kept with the table for the layer above (see [`TableDef::properties`]).
    pub properties: BTreeMap<String, String>,
}

impl TableSpec {
    /// A table `name` in the default namespace with `options` and no properties.
    pub fn new(
        name: impl Into<String>,
        schema: SchemaRef,
        primary_key: &[&str],
        options: TableOptions,
    ) -> Self {
        TableSpec {
            namespace: DEFAULT_NAMESPACE.to_string(),
            name: name.into(),
            schema,
            primary_key: primary_key.iter().map(|k| k.to_string()).collect(),
            options,
            properties: BTreeMap::new(),
        }
    }
}

/// The namespace of tables created without one: always present, never dropped.
pub const DEFAULT_NAMESPACE: &str = "";

/// `namespace.name` for messages (just `name` in the default namespace).
pub fn display_name(namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}.{name}")
    }
}

fn check_name(kind: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > TABLE_NAME_BYTES_MAX {
        return Err(Error::InvalidArgument(format!(
            "{kind} names must be 1 to {TABLE_NAME_BYTES_MAX} bytes"
        )));
    }
    Ok(())
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
    /// Lets one bulk load run at a time (see `ingest`).
    pub loads: ingest::LoadGate,
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
    /// Namespace ([`DEFAULT_NAMESPACE`] for most tables).
    pub namespace: String,
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
    /// Metadata kept with the table (see [`TableDef::properties`]).
    pub properties: BTreeMap<String, String>,
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

    /// [`Db::close`] through a shared handle (a `Db` that sessions and query results hold in
    /// an `Arc`): every later call through any handle returns [`Error::Closed`]. Idempotent.
    pub fn close_shared(&self) -> Result<()> {
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
        self.create_table_from(TableSpec::new(name, schema, primary_key, options))
    }

    /// Creates the table `spec` describes, visible at once (one manifest edit).
    pub fn create_table_from(&self, spec: TableSpec) -> Result<Table> {
        self.inner.create_table(spec, false)
    }

    /// Creates a *staging* table: it can be written, flushed and read through the returned
    /// handle, but no lookup by name finds it until [`Db::publish_table`] makes it visible.
    /// A staging table that is neither published nor discarded is dropped at the next open,
    /// with everything written to it, so a crash while it is filled leaves no trace.
    pub fn create_staging_table(&self, spec: TableSpec) -> Result<Table> {
        self.inner.create_table(spec, true)
    }

    /// Makes the staging table `staged` visible under its name, in one manifest edit. With
    /// `replace`, a table already holding that name is dropped in the same edit (after a
    /// crash, either the old table or the new one exists, never neither); without it, an
    /// existing table is [`Error::TableExists`] and nothing changes.
    pub fn publish_table(&self, staged: &Table, replace: bool) -> Result<()> {
        self.inner.publish_table(staged.id(), replace)
    }

    /// Drops the staging table `staged` (and everything written to it).
    pub fn discard_staging_table(&self, staged: &Table) -> Result<()> {
        self.inner.check_open()?;
        let manifest = self.inner.manifest.lock();
        let table = {
            let catalog = self.inner.catalog.read();
            match (
                catalog.by_id.get(&staged.id()),
                catalog.meta.get(&staged.id()),
            ) {
                (Some(table), Some(meta)) if meta.staging => Arc::clone(table),
                _ => {
                    return Err(Error::InvalidArgument(format!(
                        "table {} is not a staging table",
                        staged.name()
                    )));
                }
            }
        };
        self.inner
            .drop_tables_locked(manifest, vec![table], Vec::new())
    }

    /// The table named `name` in the default namespace.
    pub fn table(&self, name: &str) -> Result<Table> {
        self.table_in(DEFAULT_NAMESPACE, name)
    }

    /// The table named `name` in `namespace`.
    pub fn table_in(&self, namespace: &str, name: &str) -> Result<Table> {
        self.inner.check_open()?;
        let catalog = self.inner.catalog.read();
        let inner = catalog
            .get(namespace, name)
            .ok_or_else(|| Error::TableNotFound(display_name(namespace, name)))?;
        Ok(Table {
            db: Arc::clone(&self.inner),
            inner: Arc::clone(inner),
        })
    }

    /// True when a table named `name` exists in the default namespace.
    pub fn has_table(&self, name: &str) -> bool {
        self.has_table_in(DEFAULT_NAMESPACE, name)
    }

    /// True when a table named `name` exists in `namespace`.
    pub fn has_table_in(&self, namespace: &str, name: &str) -> bool {
        self.inner.catalog.read().get(namespace, name).is_some()
    }

    /// The namespace of `table` ([`DEFAULT_NAMESPACE`] once it is dropped).
    pub fn table_namespace(&self, table: &Table) -> String {
        self.inner
            .catalog
            .read()
            .meta
            .get(&table.id())
            .map(|m| m.namespace.clone())
            .unwrap_or_default()
    }

    /// The properties stored with `table` (empty once it is dropped).
    pub fn table_properties(&self, table: &Table) -> BTreeMap<String, String> {
        self.inner
            .catalog
            .read()
            .meta
            .get(&table.id())
            .map(|m| m.properties.clone())
            .unwrap_or_default()
    }

    /// Drops the table named `name` in the default namespace: it disappears at once, its
    /// files are deleted when the last reader lets go of them.
    pub fn drop_table(&self, name: &str) -> Result<()> {
        self.drop_table_in(DEFAULT_NAMESPACE, name)
    }

    /// Drops the table named `name` in `namespace` (see [`Db::drop_table`]).
    pub fn drop_table_in(&self, namespace: &str, name: &str) -> Result<()> {
        self.inner.check_open()?;
        let manifest = self.inner.manifest.lock();
        let table = self
            .inner
            .catalog
            .read()
            .get(namespace, name)
            .cloned()
            .ok_or_else(|| Error::TableNotFound(display_name(namespace, name)))?;
        self.inner
            .drop_tables_locked(manifest, vec![table], Vec::new())
    }

    /// Creates the namespace `namespace` (one manifest edit). Fails when it exists.
    pub fn create_namespace(&self, namespace: &str) -> Result<()> {
        self.inner.check_open()?;
        check_name("namespace", namespace)?;
        let mut manifest = self.inner.manifest.lock();
        if manifest.state().namespaces.contains(namespace) {
            return Err(Error::InvalidArgument(format!(
                "namespace '{namespace}' already exists"
            )));
        }
        manifest.apply(VersionEdit {
            create_namespaces: vec![namespace.to_string()],
            ..VersionEdit::default()
        })?;
        self.inner
            .catalog
            .write()
            .namespaces
            .insert(namespace.to_string());
        Ok(())
    }

    /// True when `namespace` exists (the default namespace always does).
    pub fn has_namespace(&self, namespace: &str) -> bool {
        namespace == DEFAULT_NAMESPACE || self.inner.catalog.read().namespaces.contains(namespace)
    }

    /// The namespaces besides the default one, sorted.
    pub fn namespaces(&self) -> Vec<String> {
        self.inner
            .catalog
            .read()
            .namespaces
            .iter()
            .cloned()
            .collect()
    }

    /// Drops `namespace`. Without `cascade` it must hold no table; with it, its tables are
    /// dropped in the same manifest edit.
    pub fn drop_namespace(&self, namespace: &str, cascade: bool) -> Result<()> {
        self.inner.check_open()?;
        let manifest = self.inner.manifest.lock();
        if !manifest.state().namespaces.contains(namespace) {
            return Err(Error::InvalidArgument(format!(
                "namespace '{namespace}' does not exist"
            )));
        }
        let tables: Vec<Arc<TableInner>> = {
            let catalog = self.inner.catalog.read();
            catalog
                .meta
                .iter()
                .filter(|(_, meta)| meta.namespace == namespace)
                .filter_map(|(id, _)| catalog.by_id.get(id).cloned())
                .collect()
        };
        if !cascade && !tables.is_empty() {
            let mut names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
            names.sort_unstable();
            return Err(Error::InvalidArgument(format!(
                "namespace '{namespace}' still holds tables ({})",
                names.join(", ")
            )));
        }
        self.inner
            .drop_tables_locked(manifest, tables, vec![namespace.to_string()])
    }

    /// Every published table of every namespace, by namespace and name.
    pub fn list_tables(&self) -> Vec<TableInfo> {
        let catalog = self.inner.catalog.read();
        let mut tables: Vec<TableInfo> = catalog
            .by_name
            .iter()
            .map(|((namespace, _), t)| TableInfo {
                id: t.id,
                namespace: namespace.clone(),
                name: t.name.clone(),
                schema: Arc::clone(t.schema.user_schema()),
                primary_key: t.schema.primary_key().to_vec(),
                options: t.options.read().clone(),
                stats: table_stats(t),
                created_at_ms: t.created_at_ms,
                properties: catalog
                    .meta
                    .get(&t.id)
                    .map(|m| m.properties.clone())
                    .unwrap_or_default(),
            })
            .collect();
        tables.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
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
    ///
    /// Every table is tried even when one fails (see [`Db::flush_tables`]); the error is the
    /// first failure.
    pub fn flush(&self) -> Result<()> {
        match self.flush_tables()?.into_iter().next() {
            None => Ok(()),
            Some((_, error)) => Err(error),
        }
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
        snapshot.push("key_cache_bytes", self.inner.files.keys.bytes());
        snapshot.push(
            "disk_cache_bytes",
            self.inner.files.store.disk_cache().map_or(0, |c| c.bytes()),
        );
        snapshot.push(
            "live_snapshots",
            self.inner.snapshots.lock().values().sum::<usize>() as u64,
        );
        snapshot.push(
            "obsolete_files_held_back",
            self.inner.files.purger.held_back() as u64,
        );
        snapshot
    }

    /// Deletes now the obsolete files no version holds any more: waits until the purger
    /// ([`crate::purge`]) has deleted every file released so far, and tries again the ones
    /// held back by query leases. Returns how many stay held back by live leases. The purger
    /// does this on its own soon after a file is released; this is for a caller that needs the
    /// space back, or the files gone, before it goes on.
    pub fn purge_obsolete_files(&self) -> usize {
        self.inner.files.purger.purge_now()
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
    /// A writer of SST `file_id` of `table` (sorted run `run_id`, `level`, about
    /// `expected_rows` rows, laid out for `layout`) whose keys go to the key cache when it is
    /// finished: every file the database writes (flushes, compactions, bulk loads) is made
    /// here.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn sst_writer(
        &self,
        table: &TableInner,
        options: &TableOptions,
        layout: SstLayout,
        file_id: FileId,
        run_id: u64,
        level: u32,
        expected_rows: u64,
    ) -> Result<SstWriter> {
        let mut writer = SstWriter::new(
            &self.files.store,
            table.id,
            file_id,
            run_id,
            &table.schema,
            options,
            layout,
            level,
            expected_rows,
        )?;
        writer.cache_keys_in(&self.files.keys, expected_rows);
        Ok(writer)
    }

    /// Deletes an SST written for a change that is not installed (and drops the keys its
    /// writer put in the key cache). A failure leaves an orphan, removed at the next open.
    pub(crate) fn discard_sst(&self, meta: &SstMeta) {
        self.files.keys.remove(meta.id);
        let _ = self.files.store.delete(&meta.object_path());
    }

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
        dvs: Vec<Arc<crate::dv::DeletionVector>>,
        dvs_maintained: bool,
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
            versions: VersionControl::new(SuperVersion::new(
                active,
                Arc::new(Version::with_dvs(handles, dvs, dvs_maintained)),
            )),
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
            plan_cache: Default::default(),
        }))
    }

    fn create_table(self: &Arc<Self>, spec: TableSpec, staging: bool) -> Result<Table> {
        self.check_open()?;
        check_name("table", &spec.name)?;
        spec.options.validate()?;
        let key: Vec<&str> = spec.primary_key.iter().map(String::as_str).collect();
        let table_schema = TableSchema::new(spec.schema, &key)?;
        let mut manifest = self.manifest.lock();
        let display = display_name(&spec.namespace, &spec.name);
        if !spec.namespace.is_empty() && !manifest.state().namespaces.contains(&spec.namespace) {
            return Err(Error::InvalidArgument(format!(
                "cannot create table {display}: namespace '{}' does not exist",
                spec.namespace
            )));
        }
        if !staging
            && self
                .catalog
                .read()
                .get(&spec.namespace, &spec.name)
                .is_some()
        {
            return Err(Error::TableExists(display));
        }
        let id = manifest.allocate_table_id();
        let def = TableDef {
            id,
            name: spec.name,
            namespace: spec.namespace,
            schema_ipc: table_schema.user_schema_ipc()?,
            primary_key: table_schema.primary_key().to_vec(),
            options: spec.options,
            created_at_ms: now_ms(),
            properties: spec.properties,
            staging,
        };
        // A new table has no files, so its (empty) deletion vectors are complete.
        let maintained = def.options.deletion_vectors;
        let inner = self.table_from_def(&def, Vec::new(), Vec::new(), maintained, 0)?;
        manifest.apply(VersionEdit {
            create_tables: vec![def.clone()],
            maintain_dvs: if maintained { vec![id] } else { Vec::new() },
            last_seq: Some(self.visible_seq()),
            ..VersionEdit::default()
        })?;
        self.catalog.write().insert(&def, Arc::clone(&inner));
        Ok(Table {
            db: Arc::clone(self),
            inner,
        })
    }

    fn publish_table(&self, id: TableId, replace: bool) -> Result<()> {
        self.check_open()?;
        let mut manifest = self.manifest.lock();
        let (staged, meta, old) = {
            let catalog = self.catalog.read();
            let (staged, meta) = match (catalog.by_id.get(&id), catalog.meta.get(&id)) {
                (Some(table), Some(meta)) if meta.staging => (Arc::clone(table), meta.clone()),
                _ => {
                    return Err(Error::InvalidArgument(format!(
                        "table id {id} is not a staging table (discarded, or published already)"
                    )));
                }
            };
            let old = catalog.get(&meta.namespace, &staged.name).cloned();
            (staged, meta, old)
        };
        if old.is_some() && !replace {
            return Err(Error::TableExists(display_name(
                &meta.namespace,
                &staged.name,
            )));
        }
        manifest.apply(VersionEdit {
            drop_tables: old.iter().map(|t| t.id).collect(),
            publish_tables: vec![id],
            last_seq: Some(self.visible_seq()),
            ..VersionEdit::default()
        })?;
        {
            let mut catalog = self.catalog.write();
            if let Some(old) = &old {
                catalog.remove(old);
            }
            if let Some(meta) = catalog.meta.get_mut(&id) {
                meta.staging = false;
            }
            catalog
                .by_name
                .insert((meta.namespace.clone(), staged.name.clone()), staged);
        }
        if let Some(old) = old {
            self.retire_table(&old);
        }
        drop(manifest);
        self.release_wal();
        self.signal_progress();
        Ok(())
    }

    /// Drops `tables` and `namespaces` in one manifest edit (the caller holds the manifest).
    fn drop_tables_locked(
        &self,
        mut manifest: parking_lot::MutexGuard<'_, Manifest>,
        tables: Vec<Arc<TableInner>>,
        namespaces: Vec<String>,
    ) -> Result<()> {
        manifest.apply(VersionEdit {
            drop_tables: tables.iter().map(|t| t.id).collect(),
            drop_namespaces: namespaces.clone(),
            last_seq: Some(self.visible_seq()),
            ..VersionEdit::default()
        })?;
        {
            let mut catalog = self.catalog.write();
            for table in &tables {
                catalog.remove(table);
            }
            for namespace in &namespaces {
                catalog.namespaces.remove(namespace);
            }
        }
        for table in &tables {
            self.retire_table(table);
        }
        drop(manifest);
        self.release_wal();
        self.signal_progress();
        Ok(())
    }

    /// Lets go of a table the manifest no longer lists: its files go when unreferenced, its
    /// memtables no longer count or hold the WAL floor back.
    fn retire_table(&self, table: &TableInner) {
        table.dropped.store(true, Ordering::Release);
        let sv = table.super_version();
        for file in sv.version.files() {
            file.mark_obsolete();
        }
        for dv in sv.version.dvs() {
            dv.mark_obsolete();
        }
        self.memtable_bytes.fetch_sub(
            sv.memtable_bytes()
                .min(self.memtable_bytes.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
        table.reset_versions(Arc::new(crate::version::MemtableSlot::new(
            sv.active.memtable.kind().create(),
        )));
    }

    /// Deletes WAL segments whose entries are all in SSTs.
    pub(crate) fn release_wal(&self) {
        // The sequence number before the memtables: every write at or below it is then in a
        // memtable looked at below or already in an SST, and every later write is above it,
        // so at or above the floor. Read after the memtables, it could cover a write that
        // landed in a memtable already looked at (empty then) and whose segment a rotation
        // closed meanwhile: that segment would be deleted with the write only in memory.
        let visible = self.visible_seq();
        let tables: Vec<Arc<TableInner>> = self.catalog.read().by_id.values().cloned().collect();
        let floor = tables
            .iter()
            .filter_map(|t| t.super_version().min_unflushed_seq())
            .min()
            .map_or(visible + 1, |seq| seq.min(visible + 1));
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
        // Files released before the close are deleted before it returns.
        self.files.purger.wait_idle();
        let synced = self.wal.close();
        if let Some(file) = self.lock_file.lock().take() {
            let _ = file.unlock();
        }
        if let Some(cache) = self.files.store.disk_cache() {
            cache.close();
        }
        synced
    }
}
