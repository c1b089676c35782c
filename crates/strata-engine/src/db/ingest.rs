//! Bulk loads: a stream of rows of any length written straight to sorted L0 SSTs, bypassing
//! the WAL and the memtable, and made visible at once by one manifest edit.
//!
//! ## How a load runs
//!
//! [`BulkLoad`] (made by `Table::bulk_load`, driven by `Table::ingest` for an iterator) takes
//! batches one at a time. Rows gather until a *chunk* is full (`chunk_rows` rows or
//! `chunk_bytes` bytes of Arrow memory, whichever comes first); the chunk is sorted by key,
//! keeps only its newest row per key, and is written as one L0 SST, synced. Memory is bounded
//! by one chunk (and the sort's copies of it) whatever the length of the load; disk is the
//! only bound on its size. Row `i` of the load gets sequence number `first + i`, so a later
//! row of a key wins over an earlier one in whichever chunk it lands, as with ordinary
//! writes. Nothing is visible until [`BulkLoad::finish`] commits every file with one manifest
//! edit ([`DbInner::commit_load`]); on any error, and when a load is dropped unfinished, the
//! files written so far are deleted and the table is unchanged. A crash before the edit leaves
//! orphan files, removed at the next open; after it, the whole load is there. The WAL is not
//! involved: the files are synced before the edit, and the edit is synced.
//!
//! ## Sequence numbers, and why writers do not wait for a load
//!
//! The rows of a load must be newer than everything a reader could have seen before the load
//! commits (a snapshot must never change, and a reader must never see part of a load), yet
//! their sequence numbers are written into the files long before the commit. So a load
//! *reserves* its numbers ahead of the writers: `first = last_seq + 1 + SEQ_GAP`. Writers of
//! every table keep committing below `first` while the load runs (they do not wait for it);
//! snapshots and reads taken meanwhile read at most `visible_seq < first`, so they never see
//! a row of the load. The commit takes commit leadership only for its own short step:
//!
//! 1. Check `last_seq < first` (writers have not reached the reservation: that would take
//!    `SEQ_GAP` = 2^40 writes during one load; the load then fails, nothing written).
//! 2. Switch and flush the table's memtable, so that every write the table took before the
//!    load commits lies in an SST older than the load's files: point lookups read memtables
//!    before L0, and the table's flushed sequence number jumps past the load (WAL replay skips
//!    the table's entries at or below it).
//! 3. Compute the deletion vectors the loaded files imply (`db::dvs`: their keys merged
//!    against the key columns of the older overlapping files, and of earlier chunks of the
//!    load), then append one manifest edit adding every file with those DVs, and publish the
//!    files together with `last_seq = visible_seq = first + rows - 1` under the table's `sv`
//!    lock. The DV pass reads only files that overlap the load (none for a load into a new
//!    table, or of sorted rows past the table's keys), but writers wait for it.
//!
//! Writes committed during the load are older than the load (lower numbers), so it behaves as
//! if it had run entirely at its commit point. L0 is ordered by `max_seq`, and the load's
//! files have the highest numbers, so they are the newest runs. The unused part of the
//! reservation is skipped (sequence numbers need not be dense; 2^24 loads fit in the number
//! space of a database). Loads of one database run one at a time ([`LoadGate`]): a second
//! load waits for the first to commit or fail, since its reservation must lie above the
//! first's rows.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use arrow::array::{ArrayRef, RecordBatch, UInt8Array, UInt32Array, UInt64Array};
use arrow::compute::{concat_batches, take};
use parking_lot::{Condvar, Mutex};

use super::DbInner;
use super::install::FileInstall;
use crate::codec::ByteRows;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::schema::TableSchema;
use crate::sst::{SstLayout, SstMeta};
use crate::table::TableInner;
use crate::types::SeqNo;
use crate::version::{FileChange, SstHandle};

/// The sequence numbers a load leaves free below its own for the writers that commit while
/// it runs (see the module docs).
pub(crate) const SEQ_GAP: SeqNo = 1 << 40;

/// Options of a bulk load.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Rows sorted and written per SST at most. Default 1,048,576.
    pub chunk_rows: usize,
    /// Bytes of Arrow memory gathered per SST at most (the sort holds about three times as
    /// much while it runs). Default 64 MiB.
    pub chunk_bytes: usize,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            chunk_rows: 1 << 20,
            chunk_bytes: 64 << 20,
        }
    }
}

/// Lets one bulk load of a database run at a time.
#[derive(Debug, Default)]
pub(crate) struct LoadGate {
    running: Mutex<bool>,
    done: Condvar,
}

impl LoadGate {
    fn enter(&self) {
        let mut running = self.running.lock();
        while *running {
            self.done.wait(&mut running);
        }
        *running = true;
    }

    fn leave(&self) {
        *self.running.lock() = false;
        self.done.notify_one();
    }
}

/// Memory of a batch as held (slices count only their own rows): what a bulk load's chunk
/// counts, and what a layer above counts against the same kind of budget.
pub fn batch_bytes(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|c| {
            c.to_data()
                .get_slice_memory_size()
                .unwrap_or_else(|_| c.get_array_memory_size())
        })
        .sum()
}

/// A bulk load in progress into one table (see the module docs): [`BulkLoad::push`] the
/// batches in order, then [`BulkLoad::finish`]. Dropping it unfinished discards it.
pub struct BulkLoad {
    db: Arc<DbInner>,
    table: Arc<TableInner>,
    chunk_rows: usize,
    chunk_bytes: usize,
    /// The sequence number of the load's first row.
    first_seq: SeqNo,
    /// Rows already written to files.
    written_rows: u64,
    pending: Vec<RecordBatch>,
    pending_rows: usize,
    pending_bytes: usize,
    written: Vec<SstMeta>,
    /// Holds the database's `LoadGate` until committed or discarded.
    open: bool,
}

impl std::fmt::Debug for BulkLoad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkLoad")
            .field("table", &self.table.name)
            .field("rows", &self.rows())
            .field("files", &self.written.len())
            .finish_non_exhaustive()
    }
}

impl BulkLoad {
    /// Starts a load into `table`, waiting for a load of the same database that runs.
    pub(crate) fn start(
        db: Arc<DbInner>,
        table: Arc<TableInner>,
        options: &IngestOptions,
    ) -> Result<BulkLoad> {
        db.check_open()?;
        db.loads.enter();
        // Reads the writers' high mark; the commit checks they stayed below the reservation.
        let first_seq = db.last_seq.load(Ordering::Acquire) + 1 + SEQ_GAP;
        Ok(BulkLoad {
            db,
            table,
            chunk_rows: options.chunk_rows.max(1),
            chunk_bytes: options.chunk_bytes.max(1),
            first_seq,
            written_rows: 0,
            pending: Vec::new(),
            pending_rows: 0,
            pending_bytes: 0,
            written: Vec::new(),
            open: true,
        })
    }

    /// Rows taken so far (written or gathered for the next file).
    pub fn rows(&self) -> u64 {
        self.written_rows + self.pending_rows as u64
    }

    /// SST files written so far.
    pub fn files(&self) -> usize {
        self.written.len()
    }

    /// Adds the rows of `batch` (the table's user schema) after every row pushed before. A
    /// full chunk is sorted and written before this returns. On error the load is discarded
    /// (its files deleted); later calls fail.
    pub fn push(&mut self, batch: RecordBatch) -> Result<()> {
        if !self.open {
            return Err(Error::InvalidArgument(
                "this bulk load failed or has ended".into(),
            ));
        }
        if let Err(error) = self.table.schema.check_batch(&batch) {
            self.discard();
            return Err(error);
        }
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.pending_rows += batch.num_rows();
        self.pending_bytes += batch_bytes(&batch);
        self.pending.push(batch);
        if self.pending_rows >= self.chunk_rows || self.pending_bytes >= self.chunk_bytes {
            self.write_pending()?;
        }
        Ok(())
    }

    /// Writes the gathered rows as one file (discarding the load on error).
    fn write_pending(&mut self) -> Result<()> {
        if self.pending_rows == 0 {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let rows = self.pending_rows as u64;
        self.pending_rows = 0;
        self.pending_bytes = 0;
        let first = self.first_seq + self.written_rows;
        match self.db.write_chunk(&self.table, &pending, first) {
            Ok(meta) => {
                debug_assert!(meta.min_seq >= first && meta.max_seq < first + rows);
                self.written.push(meta);
                self.written_rows += rows;
                Metrics::add(&self.db.metrics.ingest_rows, rows);
                Ok(())
            }
            Err(error) => {
                self.discard();
                Err(error)
            }
        }
    }

    /// Writes what is gathered and commits the whole load with one manifest edit; returns the
    /// rows loaded. On error nothing of the load is visible and its files are deleted.
    pub fn finish(mut self) -> Result<u64> {
        if !self.open {
            return Err(Error::InvalidArgument(
                "this bulk load failed or has ended".into(),
            ));
        }
        self.write_pending()?;
        let rows = self.written_rows;
        if rows == 0 {
            self.close();
            return Ok(0);
        }
        let result = self
            .db
            .commit_load(&self.table, &self.written, self.first_seq, rows);
        match result {
            Ok(()) => {
                self.written.clear();
                self.close();
                Ok(rows)
            }
            Err(error) => {
                self.discard();
                Err(error)
            }
        }
    }

    /// Deletes the files written so far and ends the load.
    fn discard(&mut self) {
        for meta in self.written.drain(..) {
            self.db.discard_sst(&meta);
        }
        self.pending.clear();
        self.pending_rows = 0;
        self.pending_bytes = 0;
        self.close();
    }

    fn close(&mut self) {
        if self.open {
            self.open = false;
            self.db.loads.leave();
        }
    }
}

impl Drop for BulkLoad {
    fn drop(&mut self) {
        if self.open {
            self.discard();
        }
    }
}

/// The encoded keys of `batch` (user schema); a NULL key is an error. Keyless tables number
/// their rows from `first_rowid`.
fn encode_keys(schema: &TableSchema, batch: &RecordBatch, first_rowid: u64) -> Result<ByteRows> {
    let key_columns: Vec<ArrayRef> = if schema.has_hidden_rowid() {
        let rows = batch.num_rows() as u64;
        vec![Arc::new(UInt64Array::from_iter_values(
            first_rowid..first_rowid + rows,
        ))]
    } else {
        schema
            .key_indices()
            .iter()
            .map(|i| Arc::clone(batch.column(*i)))
            .collect()
    };
    schema.key_codec().encode_columns(&key_columns)
}

/// The bytes the rows of `batch` take as encoded values (the user bytes write amplification
/// is measured against), encoded a slice at a time so the encoding is never held whole.
fn encoded_value_bytes(schema: &TableSchema, batch: &RecordBatch) -> Result<u64> {
    if schema.value_indices().is_empty() {
        return Ok(0);
    }
    let mut total = 0u64;
    for start in (0..batch.num_rows()).step_by(8192) {
        let len = (batch.num_rows() - start).min(8192);
        let columns: Vec<ArrayRef> = schema
            .value_indices()
            .iter()
            .map(|i| batch.column(*i).slice(start, len))
            .collect();
        total += schema.row_codec().encode_columns(&columns)?.data_len() as u64;
    }
    Ok(total)
}

impl DbInner {
    /// Loads `batches` (user schema) into `table` in one bulk load; returns the rows read.
    pub(crate) fn ingest(
        self: &Arc<Self>,
        table: &Arc<TableInner>,
        batches: &mut dyn Iterator<Item = Result<RecordBatch>>,
        options: &IngestOptions,
    ) -> Result<u64> {
        let mut load = BulkLoad::start(Arc::clone(self), Arc::clone(table), options)?;
        for batch in batches {
            load.push(batch?)?;
        }
        load.finish()
    }

    /// Commits a load: the files `written` of `table`, holding the rows numbered
    /// `first_seq..first_seq + rows`, become visible at once, in one manifest edit (see the
    /// module docs for why the short leadership here suffices). This is the one place a load
    /// builds its `VersionEdit` and installs its version. On error nothing changed; the
    /// caller deletes the files.
    fn commit_load(
        &self,
        table: &Arc<TableInner>,
        written: &[SstMeta],
        first_seq: SeqNo,
        rows: u64,
    ) -> Result<()> {
        debug_assert!(rows > 0 && !written.is_empty());
        let last_seq = first_seq + rows - 1;
        self.commit.exclusive(|| {
            self.check_open()?;
            if table.dropped.load(Ordering::Acquire) {
                return Err(Error::TableNotFound(table.name.clone()));
            }
            let writers = self.last_seq.load(Ordering::Acquire);
            if writers >= first_seq {
                return Err(Error::LimitExceeded(format!(
                    "{} writes committed while a bulk load into '{}' ran, more than the {SEQ_GAP} \
                     sequence numbers it leaves free; nothing was loaded, run the load again",
                    writers - (first_seq - SEQ_GAP) + 1,
                    table.name
                )));
            }
            // Every earlier write of the table goes to an SST older than the load's files.
            self.switch_memtable(table)?;
            self.flush_immutables(table)?;
            let handles: Vec<Arc<SstHandle>> = written
                .iter()
                .map(|m| {
                    Arc::new(SstHandle::new(
                        m.clone(),
                        Arc::clone(&table.schema),
                        Arc::clone(&self.files),
                    ))
                })
                .collect();
            // The deletion vectors the loaded files imply for the older ones (and for each
            // other, oldest chunk first), against the version they are installed over.
            let changing = table.versions.lock_changes();
            let version = changing.version();
            let dvs = self.dvs_for_new_files(table, &version, &handles)?;
            // The new files and the sequence number that makes them visible are published in
            // one step, under the table's `sv` write lock: a view never pairs a super version
            // holding them with an older number (a compaction could then drop versions that
            // number still reads, shadowed by loaded rows; see `TableInner::pin_latest`), nor
            // the number with a super version without them.
            let install = FileInstall {
                change: FileChange {
                    added: handles,
                    ..FileChange::default()
                },
                dvs,
                flushed_seq: Some(last_seq),
                record_last_seq: true,
                publish_flushed_seq: true,
                ..FileInstall::default()
            };
            if !self.install_file_change(table, &changing, install)? {
                return Err(Error::TableNotFound(table.name.clone()));
            }
            Metrics::add(&self.metrics.rows_written, rows);
            Metrics::inc(&self.metrics.write_batches);
            Metrics::inc(&self.metrics.ingests);
            self.schedule_compaction(table);
            Ok(())
        })
    }

    /// Sorts one chunk, keeps the newest row per key, and writes it as an L0 SST whose rows
    /// are numbered from `first_seq` in input order.
    fn write_chunk(
        &self,
        table: &Arc<TableInner>,
        batches: &[RecordBatch],
        first_seq: SeqNo,
    ) -> Result<SstMeta> {
        let schema = &table.schema;
        // Concatenate under a schema that admits NULLs, so a NULL key is reported as such by
        // the key encoder rather than as an Arrow schema error.
        let relaxed: Vec<arrow::datatypes::FieldRef> = schema
            .user_schema()
            .fields()
            .iter()
            .map(|f| Arc::new(f.as_ref().clone().with_nullable(true)))
            .collect();
        let batch = concat_batches(&Arc::new(arrow::datatypes::Schema::new(relaxed)), batches)?;
        let rows = batch.num_rows();
        let first_rowid = if schema.has_hidden_rowid() {
            table.next_rowid.fetch_add(rows as u64, Ordering::Relaxed)
        } else {
            0
        };
        let keys = encode_keys(schema, &batch, first_rowid)?;
        let values_len = encoded_value_bytes(schema, &batch)?;
        let key_max = self.options.key_size_bytes_max;
        if let Some(long) = keys.iter().find(|k| k.len() > key_max) {
            return Err(Error::LimitExceeded(format!(
                "encoded key of {} bytes exceeds key_size_bytes_max ({key_max})",
                long.len()
            )));
        }
        // Key ascending; for equal keys the later row (higher sequence) first.
        let mut order: Vec<u32> = (0..rows as u32).collect();
        order.sort_unstable_by(|a, b| {
            keys.get(*a as usize)
                .cmp(keys.get(*b as usize))
                .then(b.cmp(a))
        });
        order.dedup_by(|later, earlier| keys.get(*later as usize) == keys.get(*earlier as usize));
        // Input already in key order without repeats (a load from a sorted source) keeps its
        // columns as they are.
        let identity =
            order.len() == rows && order.iter().enumerate().all(|(i, o)| i == *o as usize);
        let mut columns: Vec<ArrayRef> = if identity {
            batch.columns().to_vec()
        } else {
            let indices = UInt32Array::from(order.clone());
            batch
                .columns()
                .iter()
                .map(|c| take(c.as_ref(), &indices, None))
                .collect::<std::result::Result<_, _>>()?
        };
        drop(batch);
        if schema.has_hidden_rowid() {
            columns.push(Arc::new(UInt64Array::from_iter_values(
                order.iter().map(|i| first_rowid + u64::from(*i)),
            )));
        }
        columns.push(Arc::new(UInt64Array::from_iter_values(
            order.iter().map(|i| first_seq + u64::from(*i)),
        )));
        columns.push(Arc::new(UInt8Array::from(vec![0u8; order.len()])));
        let sorted = RecordBatch::try_new(schema.sst_schema(), columns)?;
        let options = table.options.read().clone();
        let file_id = self.manifest.lock().allocate_file_id();
        let mut writer = self.sst_writer(
            table,
            &options,
            SstLayout::Scan,
            file_id,
            file_id,
            0,
            order.len() as u64,
        )?;
        let written = (|| {
            for start in (0..sorted.num_rows()).step_by(8192) {
                let len = (sorted.num_rows() - start).min(8192);
                let mut chunk_keys = ByteRows::with_capacity(len, 0);
                order[start..start + len]
                    .iter()
                    .for_each(|i| chunk_keys.push(keys.get(*i as usize)));
                writer.write(&sorted.slice(start, len), &chunk_keys)?;
            }
            writer.finish()
        })();
        let meta = match written {
            Ok(meta) => meta,
            Err(error) => {
                // A half-written file (e.g. the disk filled up) is removed at once.
                let _ = self
                    .files
                    .store
                    .delete(&crate::sst::sst_object_path(table.id, file_id));
                return Err(error);
            }
        };
        Metrics::add(&self.metrics.flush_bytes, meta.size_bytes);
        Metrics::add(&table.counters.rows_written, rows as u64);
        Metrics::add(
            &table.counters.user_bytes,
            keys.data_len() as u64 + values_len,
        );
        table.count_flush(&meta);
        Ok(meta)
    }
}
