//! Bulk ingest: a large load written straight to sorted L0 SSTs, bypassing the WAL and the
//! memtable, and made visible at once by one manifest edit.
//!
//! The ingest holds commit leadership for its whole duration, so no other write interleaves
//! with it (writers of every table wait). It first flushes the table's memtables, so every
//! memtable write stays older than the ingested rows (the point-lookup order "memtables, then
//! L0 newest first" remains true). The input is cut into chunks of `chunk_rows` rows; row `i`
//! of the load gets sequence number `first + i`, so a later row of the same key wins, as with
//! ordinary inserts. Each chunk is sorted by key (keeping only its newest row per key) and
//! written as one SST. Nothing is visible until the single manifest edit that adds every file;
//! on any error the files written so far are deleted and the table is unchanged. The WAL is
//! not involved: the edit is synced, and the files before it.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use arrow::array::{ArrayRef, RecordBatch, UInt8Array, UInt32Array, UInt64Array};
use arrow::compute::{concat_batches, take};

use super::DbInner;
use crate::codec::ByteRows;
use crate::error::Result;
use crate::manifest::VersionEdit;
use crate::metrics::Metrics;
use crate::sst::{SstMeta, SstWriter};
use crate::table::TableInner;
use crate::types::SeqNo;
use crate::version::{SstHandle, SuperVersion};

/// Options of a bulk ingest.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Rows sorted and written per SST (bounds the memory of the ingest). Default 1,048,576.
    pub chunk_rows: usize,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            chunk_rows: 1 << 20,
        }
    }
}

impl DbInner {
    /// Ingests `batches` (user schema) into `table`; returns the rows read.
    pub(crate) fn ingest(
        &self,
        table: &Arc<TableInner>,
        batches: &mut dyn Iterator<Item = Result<RecordBatch>>,
        options: &IngestOptions,
    ) -> Result<u64> {
        let chunk_rows = options.chunk_rows.max(1);
        self.commit.exclusive(|| {
            self.check_open()?;
            self.switch_memtable(table)?;
            self.flush_immutables(table)?;
            let first_seq = self.last_seq.load(Ordering::Acquire) + 1;
            let mut written: Vec<SstMeta> = Vec::new();
            let loaded = self.write_chunks(table, batches, chunk_rows, first_seq, &mut written);
            let rows = match loaded {
                Ok(rows) => rows,
                Err(error) => {
                    self.discard(&written);
                    return Err(error);
                }
            };
            if rows == 0 {
                return Ok(0);
            }
            let last_seq = first_seq + rows - 1;
            let mut manifest = self.manifest.lock();
            let edit = VersionEdit {
                add_files: written.clone(),
                flushed_seqs: vec![(table.id, last_seq)],
                last_seq: Some(last_seq),
                ..VersionEdit::default()
            };
            if let Err(error) = manifest.apply(edit) {
                self.discard(&written);
                return Err(error);
            }
            table.flushed_seq.fetch_max(last_seq, Ordering::AcqRel);
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
            // The new files and the sequence number that makes them visible are published in
            // one step, under the table's `sv` write lock: a view never pairs a super version
            // holding them with an older number (a compaction could then drop versions that
            // number still reads, shadowed by ingested rows; see `TableInner::pin_latest`), nor
            // the number with a super version without them.
            table.install(|sv| {
                self.last_seq.store(last_seq, Ordering::Release);
                self.visible_seq.store(last_seq, Ordering::Release);
                SuperVersion {
                    active: Arc::clone(&sv.active),
                    immutables: sv.immutables.clone(),
                    version: Arc::new(sv.version.edit(handles, &[])),
                }
            });
            drop(manifest);
            Metrics::add(&self.metrics.rows_written, rows);
            Metrics::inc(&self.metrics.write_batches);
            self.schedule_compaction(table);
            Ok(rows)
        })
    }

    fn discard(&self, files: &[SstMeta]) {
        for meta in files {
            let _ = self.files.store.delete(&meta.object_path());
        }
    }

    fn write_chunks(
        &self,
        table: &Arc<TableInner>,
        batches: &mut dyn Iterator<Item = Result<RecordBatch>>,
        chunk_rows: usize,
        first_seq: SeqNo,
        written: &mut Vec<SstMeta>,
    ) -> Result<u64> {
        let mut pending: Vec<RecordBatch> = Vec::new();
        let mut pending_rows = 0usize;
        let mut total = 0u64;
        for batch in batches {
            let batch = batch?;
            table.schema.check_batch(&batch)?;
            if batch.num_rows() == 0 {
                continue;
            }
            pending_rows += batch.num_rows();
            pending.push(batch);
            if pending_rows >= chunk_rows {
                let meta = self.write_chunk(table, &pending, first_seq + total)?;
                written.push(meta);
                total += pending_rows as u64;
                pending.clear();
                pending_rows = 0;
            }
        }
        if pending_rows > 0 {
            let meta = self.write_chunk(table, &pending, first_seq + total)?;
            written.push(meta);
            total += pending_rows as u64;
        }
        Ok(total)
    }

    /// Sorts one chunk, keeps the newest row per key, and writes it as an L0 SST.
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
        let (keys, values) = schema.encode_rows(&batch, first_rowid)?;
        let key_max = self.options.key_size_bytes_max;
        if let Some(long) = keys.iter().find(|k| k.len() > key_max) {
            return Err(crate::Error::LimitExceeded(format!(
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
        let indices = UInt32Array::from(order.clone());
        let mut columns: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .map(|c| take(c.as_ref(), &indices, None))
            .collect::<std::result::Result<_, _>>()?;
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
        let mut sorted_keys = ByteRows::with_capacity(order.len(), keys.data_len());
        order
            .iter()
            .for_each(|i| sorted_keys.push(keys.get(*i as usize)));
        let options = table.options.read().clone();
        let file_id = self.manifest.lock().allocate_file_id();
        let mut writer = SstWriter::new(
            &self.files.store,
            table.id,
            file_id,
            file_id,
            schema,
            &options,
            0,
            order.len() as u64,
        )?;
        for start in (0..sorted.num_rows()).step_by(8192) {
            let len = (sorted.num_rows() - start).min(8192);
            let mut chunk_keys = ByteRows::with_capacity(len, 0);
            (start..start + len).for_each(|i| chunk_keys.push(sorted_keys.get(i)));
            writer.write(&sorted.slice(start, len), &chunk_keys)?;
        }
        let meta = writer.finish()?;
        Metrics::add(&self.metrics.flush_bytes, meta.size_bytes);
        Metrics::add(&table.counters.rows_written, rows as u64);
        Metrics::add(
            &table.counters.user_bytes,
            (keys.data_len() + values.data_len()) as u64,
        );
        table.count_flush(&meta);
        Ok(meta)
    }
}
