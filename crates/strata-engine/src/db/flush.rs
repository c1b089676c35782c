//! Flushing: an immutable memtable becomes an L0 SST, installed with one manifest edit.
//!
//! A flush keeps the newest version of every key, every older version a live snapshot still
//! sees, and every tombstone (older versions of the key may live in SSTs). The SST is stored
//! and synced first; then, under the manifest lock, one edit adds the file and advances the
//! table's flushed sequence, and the new super version (without the memtable, with the file)
//! is published (`db::install`). A crash before the edit leaves an orphan file, removed at the next open; the
//! memtable's writes are still in the WAL.
//!
//! ## A table that cannot flush
//!
//! Tables flush independently: a failed flush of one table (a full disk, an I/O error, a
//! corrupt input) leaves its memtables in place, their writes safe in the WAL, and never stops
//! another table's flush. [`Db::flush_tables`] tries every table and reports the ones that
//! failed; the background retries a failed flush per table with a backoff (see
//! `background`), without holding a worker. What the failing table does hold back is
//! inherent: WAL segments interleave the writes of every table, so a segment can be deleted
//! only once every table's entries in it are flushed; while one table cannot flush, the
//! segments from its oldest unflushed write on stay (the other tables' flushes still delete
//! everything older), and its own writers stall once it has `max_immutable_memtables`
//! waiting. Closing the database is unaffected: nothing is flushed at close, and the
//! unflushed rows are replayed from the WAL at the next open.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::background::Job;
use super::dvs::DvUpdate;
use super::install::FileInstall;
use super::{Db, DbInner, display_name};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::read::{Dedup, KeyRange, MergeIter, memtable_run};
use crate::sst::{SstLayout, SstMeta, SstWriter};
use crate::table::TableInner;
use crate::types::{FileId, MAX_SEQ};
use crate::version::{FileChange, MemtableSlot, SstHandle};

/// Rows per batch while flushing.
const FLUSH_BATCH_ROWS: usize = 8192;

impl Db {
    /// Flushes the memtables of every table, each on its own: a table that fails to flush
    /// does not stop the others. Returns the tables that could not be flushed (name, as
    /// `namespace.name` outside the default namespace, and error); their unflushed writes stay
    /// in memtables and the WAL.
    pub fn flush_tables(&self) -> Result<Vec<(String, Error)>> {
        self.inner.check_open()?;
        let tables: Vec<(Arc<TableInner>, String)> = {
            let catalog = self.inner.catalog.read();
            catalog
                .by_id
                .iter()
                .map(|(id, table)| {
                    let namespace = catalog.meta.get(id).map_or("", |m| m.namespace.as_str());
                    (Arc::clone(table), display_name(namespace, &table.name))
                })
                .collect()
        };
        let mut failed = Vec::new();
        for (table, name) in tables {
            if let Err(error) = self.inner.flush_table(&table) {
                tracing::error!(table = %name, %error, "flush failed");
                failed.push((name, error));
            }
        }
        Ok(failed)
    }
}

impl DbInner {
    /// Queues a background flush of `table` unless one is already queued; false when it could
    /// not be queued (the queue is full or stopped).
    pub(crate) fn schedule_flush(&self, table: &Arc<TableInner>) -> bool {
        if table.flush_queued.swap(true, Ordering::AcqRel) {
            return true;
        }
        if !self.background.submit(Job::Flush(table.id)) {
            table.flush_queued.store(false, Ordering::Release);
            return false;
        }
        true
    }

    /// Makes the active memtable immutable (if it holds anything) and flushes every immutable
    /// memtable of `table` before returning.
    pub(crate) fn flush_table(&self, table: &Arc<TableInner>) -> Result<()> {
        self.commit.exclusive(|| self.switch_memtable(table))?;
        self.flush_immutables(table)
    }

    /// Flushes the immutable memtables of `table`, oldest first.
    pub(crate) fn flush_immutables(&self, table: &Arc<TableInner>) -> Result<()> {
        let _one_flush_at_a_time = table.flush_lock.lock();
        loop {
            if table.dropped.load(Ordering::Acquire) {
                return Ok(());
            }
            let Some(oldest) = table.super_version().immutables.last().cloned() else {
                return Ok(());
            };
            self.flush_memtable(table, &oldest)?;
        }
    }

    fn flush_memtable(&self, table: &Arc<TableInner>, slot: &Arc<MemtableSlot>) -> Result<()> {
        let started = Instant::now();
        let file_id = self.manifest.lock().allocate_file_id();
        let written = self.write_memtable_sst(table, slot, file_id)?;
        let discard = |sst: &Option<SstMeta>| {
            if let Some(meta) = sst {
                self.discard_sst(meta);
            }
        };
        // The new file and the deletion vectors it implies for the older files, computed
        // against the version it is installed over (the table's change lock).
        let changing = table.versions.lock_changes();
        let handle = written.as_ref().map(|meta| {
            Arc::new(SstHandle::new(
                meta.clone(),
                Arc::clone(&table.schema),
                Arc::clone(&self.files),
            ))
        });
        let dvs = match &handle {
            Some(new) if !table.dropped.load(Ordering::Acquire) => {
                let version = changing.version();
                match self.dvs_for_new_files(table, &version, std::slice::from_ref(new)) {
                    Ok(dvs) => dvs,
                    Err(error) => {
                        discard(&written);
                        return Err(error);
                    }
                }
            }
            _ => DvUpdate::default(),
        };
        let flushed_seq = slot.switched_at();
        debug_assert!(
            flushed_seq >= slot.max_seq(),
            "memtable holds writes past its switch"
        );
        let install = FileInstall {
            change: FileChange {
                added: handle.into_iter().collect(),
                ..FileChange::default()
            },
            dvs,
            flushed_seq: Some(flushed_seq),
            flushed_memtable: Some(Arc::clone(slot)),
            record_last_seq: true,
            ..FileInstall::default()
        };
        match self.install_file_change(table, &changing, install) {
            Ok(true) => {}
            Ok(false) => {
                discard(&written);
                return Ok(());
            }
            Err(error) => {
                discard(&written);
                return Err(error);
            }
        }
        let memory = slot.memory_bytes();
        let _ = self
            .memtable_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                Some(b.saturating_sub(memory))
            });
        Metrics::inc(&self.metrics.flushes);
        if let Some(meta) = &written {
            Metrics::add(&self.metrics.flush_rows, meta.rows);
            Metrics::add(&self.metrics.flush_bytes, meta.size_bytes);
            table.count_flush(meta);
        }
        Metrics::add(
            &self.metrics.flush_micros,
            started.elapsed().as_micros() as u64,
        );
        tracing::debug!(table = %table.name, file = file_id, "flushed memtable");
        self.release_wal();
        self.signal_progress();
        self.schedule_compaction(table);
        Ok(())
    }

    /// Writes the contents of a memtable as SST `file_id` (stored and synced, not yet in the
    /// manifest). `None` when no row remains.
    fn write_memtable_sst(
        &self,
        table: &Arc<TableInner>,
        slot: &Arc<MemtableSlot>,
        file_id: FileId,
    ) -> Result<Option<SstMeta>> {
        let schema = &table.schema;
        let options = table.options.read().clone();
        let all: Vec<usize> = (0..schema.storage_schema().fields().len()).collect();
        let run = memtable_run(
            Arc::clone(slot),
            Arc::clone(schema),
            KeyRange::all(),
            all,
            MAX_SEQ,
            FLUSH_BATCH_ROWS,
        );
        let dedup = Dedup::Retain {
            snapshots: self.snapshot_seqs(),
            drop_tombstones: false,
        };
        let mut merge = MergeIter::new(vec![run], dedup, FLUSH_BATCH_ROWS, true);
        let mut writer: Option<SstWriter> = None;
        while let Some(batch) = merge.next_batch()? {
            let writer = match writer.as_mut() {
                Some(w) => w,
                None => writer.insert(self.sst_writer(
                    table,
                    &options,
                    SstLayout::Lookup,
                    file_id,
                    file_id,
                    0,
                    slot.memtable.len() as u64,
                )?),
            };
            writer.write(&batch.batch, &batch.keys)?;
        }
        writer.map(SstWriter::finish).transpose()
    }
}
