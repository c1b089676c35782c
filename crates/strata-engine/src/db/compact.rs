//! Running compactions: tasks picked by a table's strategy in the background, and manual
//! `compact` / `compact_range`.
//!
//! A merge streams its input runs through the same k-way merge as reads (bounded memory: one
//! batch per run, plus the row group being written), keeping the newest version of each key,
//! every version a live snapshot sees, and tombstones unless the task may drop them. Sequence
//! numbers are never changed. Outputs are cut at `target_file_size_bytes`, always between two
//! keys (all versions of a key stay in one file, so a level stays non-overlapping), and belong
//! to one new sorted run.
//!
//! The swap is one manifest edit (remove the inputs, add the outputs) made under the manifest
//! lock, then a new version is published. Readers that pinned an older version keep reading
//! the inputs; an input file is deleted only when the last version holding it is dropped. A
//! crash before the edit leaves orphan outputs, removed at the next open; after it, the old
//! inputs are orphans, removed likewise. One compaction runs per table at a time
//! (`TableInner::compaction_lock`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::DbInner;
use super::background::Job;
use super::install::FileInstall;
use crate::compaction::{
    CompactionOptions, CompactionTask, StrategyKind, TaskKind, key_span, overlaps,
};
use crate::error::Result;
use crate::metrics::Metrics;
use crate::read::{Dedup, KeyRange, MergeIter, RunIter, sst_run_with_batch_rows};
use crate::sst::{SstLayout, SstMeta, SstWriter};
use crate::table::TableInner;
use crate::types::{FileId, MAX_SEQ};
use crate::version::{FileChange, SstHandle, Version};

/// Tasks one background job runs before it yields the thread (and requeues itself).
const TASKS_PER_JOB: usize = 16;
/// Rows per merged batch.
const MERGE_BATCH_ROWS: usize = 8192;

/// Per-level flush and compaction counters of one table, since the database was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LevelCompactionStats {
    /// Memtable flushes and ingested files written into this level (level 0 only).
    pub flushes: u64,
    /// Bytes of the files they wrote.
    pub bytes_flushed: u64,
    /// Compactions that wrote into this level.
    pub compactions: u64,
    /// Files moved into this level without a rewrite.
    pub moves: u64,
    /// Bytes read by those compactions.
    pub bytes_read: u64,
    /// Bytes they wrote.
    pub bytes_written: u64,
    /// Microseconds they took.
    pub micros: u64,
}

/// One level of a [`CompactionReport`].
#[derive(Debug, Clone, PartialEq)]
pub struct LevelReport {
    /// The level.
    pub level: u32,
    /// Files in the level now.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// What flushes and compactions wrote into the level.
    pub stats: LevelCompactionStats,
    /// The level's share of the table's write amplification: the bytes flushes and
    /// compactions wrote into it over the table's user bytes (`None` before any write).
    pub write_amplification: Option<f64>,
}

/// The compaction figures of one table (`Table::compaction_report`). Counters run from the
/// open of the database; sizes are those of the current version.
///
/// - Write amplification: SST bytes written by flushes and compactions over the user bytes
///   committed (encoded keys plus values). The per-level figures add up to the table's.
/// - Space amplification: SST bytes over the bytes of the largest sorted run, the estimate
///   of live data RocksDB's universal compaction uses: 1.0 for a table in one run, and
///   exact when the largest run holds every live key and nothing else. Obsolete versions
///   inside that run are not seen by this estimate.
#[derive(Debug, Clone, PartialEq)]
pub struct CompactionReport {
    /// One entry per level, from 0 to the deepest level that holds files or was written.
    pub levels: Vec<LevelReport>,
    /// The table's write counters (user bytes, backpressure time).
    pub writes: crate::metrics::TableWriteStats,
    /// SST bytes of the current version.
    pub sst_bytes: u64,
    /// Bytes of its largest sorted run (a level ≥ 1, or one level-0 run).
    pub largest_run_bytes: u64,
}

impl CompactionReport {
    /// Builds the report of a version's `levels` with its counters.
    pub(crate) fn new(
        levels: &[Vec<SstMeta>],
        stats: Vec<LevelCompactionStats>,
        writes: crate::metrics::TableWriteStats,
    ) -> Self {
        let in_use = levels
            .iter()
            .rposition(|l| !l.is_empty())
            .map_or(0, |l| l + 1);
        let depth = in_use.max(stats.len()).max(1);
        let reports = (0..depth)
            .map(|level| {
                let files = levels.get(level).map_or(&[][..], Vec::as_slice);
                let stats = stats.get(level).cloned().unwrap_or_default();
                LevelReport {
                    level: level as u32,
                    files: files.len() as u64,
                    bytes: files.iter().map(|f| f.size_bytes).sum(),
                    write_amplification: per_user_byte(
                        stats.bytes_flushed + stats.bytes_written,
                        writes.user_bytes,
                    ),
                    stats,
                }
            })
            .collect();
        CompactionReport {
            levels: reports,
            writes,
            sst_bytes: levels.iter().flatten().map(|f| f.size_bytes).sum(),
            largest_run_bytes: crate::compaction::sorted_runs(levels)
                .iter()
                .map(|run| run.bytes)
                .max()
                .unwrap_or(0),
        }
    }

    /// SST bytes written by flushes and compactions over user bytes (`None` before any
    /// write since the open).
    pub fn write_amplification(&self) -> Option<f64> {
        let totals = self.totals();
        per_user_byte(
            totals.bytes_flushed + totals.bytes_written,
            self.writes.user_bytes,
        )
    }

    /// SST bytes over the bytes of the largest sorted run (`None` for a table without
    /// SSTs).
    pub fn space_amplification(&self) -> Option<f64> {
        (self.largest_run_bytes > 0).then(|| self.sst_bytes as f64 / self.largest_run_bytes as f64)
    }

    /// Totals of the levels' counters.
    pub fn totals(&self) -> LevelCompactionStats {
        let mut total = LevelCompactionStats::default();
        for l in &self.levels {
            total.flushes += l.stats.flushes;
            total.bytes_flushed += l.stats.bytes_flushed;
            total.compactions += l.stats.compactions;
            total.moves += l.stats.moves;
            total.bytes_read += l.stats.bytes_read;
            total.bytes_written += l.stats.bytes_written;
            total.micros += l.stats.micros;
        }
        total
    }
}

/// `written` bytes per user byte (`None` before any user byte).
fn per_user_byte(written: u64, user_bytes: u64) -> Option<f64> {
    (user_bytes > 0).then(|| written as f64 / user_bytes as f64)
}

/// The counters of `level`, growing the list to reach it.
pub(crate) fn level_entry(
    stats: &mut Vec<LevelCompactionStats>,
    level: u32,
) -> &mut LevelCompactionStats {
    let level = level as usize;
    if stats.len() <= level {
        stats.resize_with(level + 1, LevelCompactionStats::default);
    }
    &mut stats[level]
}

/// The SST files of a version by level, as metadata.
pub(crate) fn levels_of(version: &Version) -> Vec<Vec<SstMeta>> {
    (0..version.num_levels())
        .map(|l| version.level(l).iter().map(|f| f.meta().clone()).collect())
        .collect()
}

/// The task of a manual compaction of `range`: every file overlapping it, closed over the
/// levels down to the output level so the version's invariants hold (see `compaction`).
pub(crate) fn manual_task(
    levels: &[Vec<SstMeta>],
    range: &KeyRange,
    options: &CompactionOptions,
) -> Option<CompactionTask> {
    let mut selected: Vec<SstMeta> = levels
        .iter()
        .flatten()
        .filter(|f| range.overlaps(&f.min_key, &f.max_key))
        .cloned()
        .collect();
    if selected.is_empty() {
        return None;
    }
    let deepest = selected.iter().map(|f| f.level).max().unwrap_or(0);
    let output_level = match options.strategy {
        StrategyKind::SizeTiered => deepest,
        _ => deepest.max(1),
    };
    loop {
        let (lo, hi) = key_span(&selected)?;
        let closed: Vec<SstMeta> = levels
            .iter()
            .take(output_level as usize + 1)
            .flatten()
            .filter(|f| overlaps(f, &lo, &hi))
            .cloned()
            .collect();
        if closed.len() == selected.len() {
            break;
        }
        selected = closed;
    }
    let reason = format!(
        "manual compaction of {} files into level {output_level}",
        selected.len()
    );
    Some(CompactionTask::merge(
        levels,
        selected,
        output_level,
        reason,
    ))
}

impl DbInner {
    /// Queues a background compaction check of `table` unless one is queued or the table
    /// does not compact.
    pub(crate) fn schedule_compaction(&self, table: &Arc<TableInner>) {
        if table.options.read().compaction.strategy == StrategyKind::None {
            return;
        }
        if !table.compaction_queued.swap(true, Ordering::AcqRel)
            && !self.background.submit(Job::Compact(table.id))
        {
            table.compaction_queued.store(false, Ordering::Release);
        }
    }

    /// Runs what the table's strategy picks until it picks nothing (a bounded number of
    /// tasks per call; more work requeues the job).
    pub(crate) fn compact_picked(&self, table: &Arc<TableInner>) -> Result<()> {
        for _ in 0..TASKS_PER_JOB {
            if self.closed.load(Ordering::Acquire) || table.dropped.load(Ordering::Acquire) {
                return Ok(());
            }
            let _one_at_a_time = table.compaction_lock.lock();
            let options = table.options.read().compaction.clone();
            let Some(strategy) = options.strategy.strategy() else {
                return Ok(());
            };
            let levels = levels_of(&table.super_version().version);
            let Some(task) = strategy.pick(&levels, &options) else {
                // Idle: the moment to rebuild deletion vectors a failed pass left incomplete.
                return self.rebuild_table_dvs(table);
            };
            self.run_task(table, &task, &options)?;
        }
        self.schedule_compaction(table);
        Ok(())
    }

    /// Compacts every file of `table` overlapping `range` (all files for
    /// `KeyRange::all()`), dropping tombstones where nothing older remains.
    pub(crate) fn compact_range(&self, table: &Arc<TableInner>, range: &KeyRange) -> Result<()> {
        let _one_at_a_time = table.compaction_lock.lock();
        let options = table.options.read().compaction.clone();
        let levels = levels_of(&table.super_version().version);
        match manual_task(&levels, range, &options) {
            Some(task) => self.run_task(table, &task, &options),
            None => Ok(()),
        }
    }

    fn run_task(
        &self,
        table: &Arc<TableInner>,
        task: &CompactionTask,
        options: &CompactionOptions,
    ) -> Result<()> {
        let started = Instant::now();
        let sv = table.super_version();
        let inputs: Vec<Arc<SstHandle>> = task
            .input_ids()
            .iter()
            .filter_map(|id| sv.version.files().find(|f| f.meta().id == *id).cloned())
            .collect();
        if inputs.len() != task.inputs.len() {
            return Ok(()); // The version moved on; the strategy will pick again.
        }
        tracing::debug!(table = %table.name, reason = %task.reason, "compaction");
        let outputs = match task.kind {
            TaskKind::Move => {
                let mut moved = task.inputs[0].clone();
                moved.level = task.output_level;
                vec![moved]
            }
            TaskKind::Merge => self.merge_files(table, task, &inputs, options)?,
        };
        let removed: Vec<FileId> = task.input_ids();
        let discard = |outputs: &[SstMeta]| {
            if task.kind == TaskKind::Merge {
                for meta in outputs {
                    self.discard_sst(meta);
                }
            }
        };
        let added: Vec<Arc<SstHandle>> = outputs
            .iter()
            .map(|m| {
                Arc::new(SstHandle::new(
                    m.clone(),
                    Arc::clone(&table.schema),
                    Arc::clone(&self.files),
                ))
            })
            .collect();
        // The outputs' deletion vectors, against the files newer than them in the version the
        // outputs are installed over (the table's change lock).
        let changing = table.versions.lock_changes();
        let version = changing.version();
        let moved = task.kind == TaskKind::Move;
        let dvs = match self.dvs_for_compaction(table, &version, &removed, &added, moved) {
            Ok(dvs) => dvs,
            Err(error) => {
                discard(&outputs);
                return Err(error);
            }
        };
        let install = FileInstall {
            change: FileChange {
                added,
                removed: removed.clone(),
                ..FileChange::default()
            },
            dvs,
            record_last_seq: true,
            ..FileInstall::default()
        };
        match self.install_file_change(table, &changing, install) {
            Ok(true) => {}
            Ok(false) => {
                discard(&outputs);
                return Ok(());
            }
            Err(error) => {
                discard(&outputs);
                return Err(error);
            }
        }
        if task.kind == TaskKind::Merge {
            // Deleted when the last version holding them is dropped.
            inputs.iter().for_each(|f| f.mark_obsolete());
        }
        let bytes_read = task.input_bytes();
        let bytes_written: u64 = outputs.iter().map(|m| m.size_bytes).sum();
        let micros = started.elapsed().as_micros() as u64;
        {
            let mut stats = table.compaction_stats.lock();
            let entry = level_entry(&mut stats, task.output_level);
            match task.kind {
                TaskKind::Move => entry.moves += 1,
                TaskKind::Merge => {
                    entry.compactions += 1;
                    entry.bytes_read += bytes_read;
                    entry.bytes_written += bytes_written;
                    entry.micros += micros;
                }
            }
        }
        if task.kind == TaskKind::Merge {
            Metrics::inc(&self.metrics.compactions);
            Metrics::add(&self.metrics.compaction_bytes_read, bytes_read);
            Metrics::add(&self.metrics.compaction_bytes_written, bytes_written);
            Metrics::add(&self.metrics.compaction_micros, micros);
        }
        self.signal_progress();
        Ok(())
    }

    /// Merges the input files into new files of the output level (stored, not yet recorded).
    fn merge_files(
        &self,
        table: &Arc<TableInner>,
        task: &CompactionTask,
        inputs: &[Arc<SstHandle>],
        options: &CompactionOptions,
    ) -> Result<Vec<SstMeta>> {
        let schema = &table.schema;
        let mut table_options = table.options.read().clone();
        let columns: Vec<usize> = (0..schema.storage_schema().fields().len()).collect();
        // Memory: output row groups take at most a quarter of the budget, the read batches of
        // all input runs at most half (the rest is decoder and upload slack).
        let memory = options.memory_bytes_max as usize;
        table_options.sst_row_group_bytes_max =
            table_options.sst_row_group_bytes_max.min(memory / 4);
        // Runs: each level ≥ 1 is one run; level-0 files group by their run id.
        let mut grouped: BTreeMap<(u32, u64), Vec<Arc<SstHandle>>> = BTreeMap::new();
        for file in inputs {
            let meta = file.meta();
            let run = if meta.level == 0 { meta.run() } else { 0 };
            grouped
                .entry((meta.level, run))
                .or_default()
                .push(Arc::clone(file));
        }
        let input_rows: u64 = task.inputs.iter().map(|f| f.rows).sum();
        let row_bytes = (task.input_bytes() / input_rows.max(1)).max(1);
        // Decoded rows are a few times larger than their compressed bytes.
        let decoded_row_bytes = (row_bytes * 4) as usize;
        let batch_rows =
            (memory / 2 / (grouped.len().max(1) * decoded_row_bytes)).clamp(256, MERGE_BATCH_ROWS);
        let runs: Vec<RunIter> = grouped
            .into_values()
            .map(|mut files| {
                files.sort_by(|a, b| a.meta().min_key.cmp(&b.meta().min_key));
                sst_run_with_batch_rows(
                    files,
                    KeyRange::all(),
                    columns.clone(),
                    MAX_SEQ,
                    batch_rows,
                )
            })
            .collect();
        let dedup = Dedup::Retain {
            snapshots: self.snapshot_seqs(),
            drop_tombstones: task.drop_tombstones,
        };
        let mut merge = MergeIter::new(runs, dedup, batch_rows, true);
        let rows_per_file =
            (options.target_file_size_bytes / row_bytes).clamp(1, input_rows.max(1));
        let mut outputs: Vec<SstMeta> = Vec::new();
        let result = (|| -> Result<()> {
            let mut writer: Option<SstWriter> = None;
            let mut run_id = 0u64;
            while let Some(batch) = merge.next_batch()? {
                let rows = batch.num_rows();
                let mut start = 0;
                while start < rows {
                    let current = match writer.as_mut() {
                        Some(w) => w,
                        None => {
                            let id = self.manifest.lock().allocate_file_id();
                            if run_id == 0 {
                                run_id = id;
                            }
                            writer.insert(self.sst_writer(
                                table,
                                &table_options,
                                SstLayout::Scan,
                                id,
                                run_id,
                                task.output_level,
                                rows_per_file,
                            )?)
                        }
                    };
                    let full = current.rows() > 0
                        && current.estimated_bytes() >= options.target_file_size_bytes;
                    if !full {
                        current.write_range(&batch.batch, &batch.keys, start, rows)?;
                        start = rows;
                        continue;
                    }
                    // Full: finish after the last versions of the current key.
                    let boundary = (start..rows)
                        .find(|i| batch.keys.get(*i) != current.last_key())
                        .unwrap_or(rows);
                    if boundary > start {
                        current.write_range(&batch.batch, &batch.keys, start, boundary)?;
                    }
                    if boundary < rows
                        && let Some(done) = writer.take()
                    {
                        outputs.push(done.finish()?);
                    }
                    start = boundary;
                }
            }
            if let Some(done) = writer.take() {
                outputs.push(done.finish()?);
            }
            Ok(())
        })();
        if let Err(error) = result {
            for meta in &outputs {
                self.discard_sst(meta);
            }
            return Err(error);
        }
        debug_assert!(
            outputs.windows(2).all(|w| w[0].max_key < w[1].min_key),
            "outputs overlap"
        );
        Ok(outputs)
    }
}
