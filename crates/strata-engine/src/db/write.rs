//! The commit path: backpressure, group commit, memtable switching.
//!
//! Writers encode their batch into a WAL payload (off any lock), wait for room (backpressure),
//! and join the commit queue. The first writer to find no leader becomes the leader: it takes
//! the queued batches (up to `commit_group_bytes_max`), switches full memtables, assigns
//! sequence numbers, appends the whole group to the WAL with one `write` (and one `fdatasync`
//! when any writer asked for it), inserts every entry into its table's memtable, publishes the
//! new `visible_seq`, and wakes the group. A failed WAL append fails the whole group and
//! touches no memtable, so a batch is applied entirely or not at all.
//!
//! Backpressure: when a table has `max_immutable_memtables / 2` immutable memtables, its level 0
//! reaches `l0_slowdown_trigger` files (runs, size-tiered), its estimated compaction debt
//! reaches `pending_bytes_slowdown`, or all memtables together pass 1.5x
//! `write_buffer_budget_bytes`, each write is delayed by 1 ms; at `max_immutable_memtables`,
//! `l0_stop_trigger`, `pending_bytes_stop`, or 2x the budget, writers wait for a flush or a
//! compaction to finish. Both are counted in the metrics; a stall longer than
//! [`WRITE_STALL_TIMEOUT`] fails the write with the last background error.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::DbInner;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::options::SyncMode;
use crate::table::TableInner;
use crate::types::{SeqNo, TableId};
use crate::version::SuperVersion;
use crate::wal::{BatchPayload, decode_entries};

/// A table found while replaying a batch, with the super version its entries go into.
type TargetTable = (Arc<TableInner>, Arc<SuperVersion>);

/// How long a writer may stall on backpressure before its write fails.
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// The delay of a slowed-down write.
const SLOWDOWN: Duration = Duration::from_millis(1);

/// One batch waiting to be committed.
pub(crate) struct PendingWrite {
    payload: BatchPayload,
    sync: bool,
    /// Set by the leader: the batch's last sequence number, or the group's error.
    result: Mutex<Option<Result<SeqNo>>>,
}

#[derive(Default)]
struct QueueState {
    pending: Vec<Arc<PendingWrite>>,
    leader_active: bool,
}

/// The queue of batches waiting for the commit leader.
#[derive(Default)]
pub(crate) struct CommitQueue {
    state: Mutex<QueueState>,
    changed: Condvar,
}

impl CommitQueue {
    /// Runs `f` while no write group is in flight and no other exclusive section runs.
    pub fn exclusive<R>(&self, f: impl FnOnce() -> R) -> R {
        let mut state = self.state.lock();
        while state.leader_active {
            self.changed.wait(&mut state);
        }
        state.leader_active = true;
        drop(state);
        let result = f();
        self.state.lock().leader_active = false;
        self.changed.notify_all();
        result
    }
}

impl DbInner {
    /// Commits one batch touching `tables`; returns its last sequence number.
    pub(crate) fn write(
        &self,
        tables: &[Arc<TableInner>],
        payload: BatchPayload,
        sync: bool,
    ) -> Result<SeqNo> {
        self.check_open()?;
        self.wait_for_room(tables)?;
        let write = Arc::new(PendingWrite {
            payload,
            sync,
            result: Mutex::new(None),
        });
        let mut state = self.commit.state.lock();
        state.pending.push(Arc::clone(&write));
        loop {
            if let Some(result) = write.result.lock().take() {
                return result;
            }
            if state.leader_active {
                self.commit.changed.wait(&mut state);
                continue;
            }
            state.leader_active = true;
            let group = take_group(&mut state.pending, self.options.commit_group_bytes_max);
            drop(state);
            self.commit_group(&group);
            state = self.commit.state.lock();
            state.leader_active = false;
            self.commit.changed.notify_all();
        }
    }

    /// The leader's work for one group (see the module docs).
    fn commit_group(&self, group: &[Arc<PendingWrite>]) {
        let outcome = self.commit_group_inner(group);
        if let Err(error) = outcome {
            for write in group {
                *write.result.lock() = Some(Err(error.duplicate()));
            }
        }
    }

    fn commit_group_inner(&self, group: &[Arc<PendingWrite>]) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed(None));
        }
        self.make_room(group)?;
        let mut seq = self.last_seq.load(Ordering::Acquire);
        let bytes: usize = group.iter().map(|w| w.payload.len_bytes() + 32).sum();
        let mut framed = Vec::with_capacity(bytes);
        let mut firsts = Vec::with_capacity(group.len());
        for write in group {
            firsts.push(seq + 1);
            write.payload.frame_into(seq + 1, &mut framed);
            seq += u64::from(write.payload.count());
        }
        let sync = self.options.sync_mode == SyncMode::Always || group.iter().any(|w| w.sync);
        self.wal.append(&framed, seq, sync)?;
        Metrics::add(&self.metrics.wal_bytes, framed.len() as u64);
        Metrics::inc(&self.metrics.commit_groups);
        if sync {
            Metrics::inc(&self.metrics.wal_syncs);
        }
        for (write, first) in group.iter().zip(&firsts) {
            // The payload was checksummed and decoded by its writer's own encoder; a decode
            // failure here is a bug, and the WAL record is already durable: fail loudly.
            self.apply_payload(write.payload.bytes(), write.payload.count(), *first, false)?;
        }
        self.last_seq.store(seq, Ordering::Release);
        self.visible_seq.store(seq, Ordering::Release);
        for (write, first) in group.iter().zip(firsts) {
            let last = first + u64::from(write.payload.count()) - 1;
            Metrics::inc(&self.metrics.write_batches);
            Metrics::add(&self.metrics.rows_written, u64::from(write.payload.count()));
            *write.result.lock() = Some(Ok(last));
        }
        Ok(())
    }

    /// Inserts the entries of one WAL record into their tables' memtables. During recovery,
    /// entries already in SSTs (at or below the table's flushed sequence) are skipped.
    pub(crate) fn apply_payload(
        &self,
        payload: &[u8],
        count: u32,
        first_seq: SeqNo,
        recovering: bool,
    ) -> Result<()> {
        let entries = decode_entries(payload, count)?;
        let mut current: Option<(TableId, Option<TargetTable>)> = None;
        let mut grown = 0usize;
        // Rows and user bytes of the current table, added to its counters when the table
        // changes (replayed entries were counted by the process that wrote them).
        let (mut rows, mut user_bytes) = (0u64, 0u64);
        let count_written = |current: &Option<(TableId, Option<TargetTable>)>, rows, bytes| {
            if let Some((_, Some((table, _)))) = current
                && rows > 0
            {
                Metrics::add(&table.counters.rows_written, rows);
                Metrics::add(&table.counters.user_bytes, bytes);
            }
        };
        for (i, entry) in entries.iter().enumerate() {
            let seq = first_seq + i as u64;
            if current.as_ref().is_none_or(|(id, _)| *id != entry.table) {
                count_written(&current, rows, user_bytes);
                (rows, user_bytes) = (0, 0);
                let found = self.table_by_id(entry.table).map(|t| {
                    let sv = t.super_version();
                    (t, sv)
                });
                current = Some((entry.table, found));
            }
            // Entries of dropped tables are ignored.
            let Some((_, Some((table, sv)))) = current.as_ref() else {
                continue;
            };
            if recovering && seq <= table.flushed_seq.load(Ordering::Acquire) {
                continue;
            }
            grown += sv.active.insert(entry.key, seq, entry.op, entry.value);
            if !recovering {
                rows += 1;
                user_bytes += (entry.key.len() + entry.value.len()) as u64;
            }
        }
        count_written(&current, rows, user_bytes);
        self.memtable_bytes.fetch_add(grown, Ordering::Relaxed);
        Ok(())
    }

    /// Before a group: switches memtables that are full (or the largest one when all of them
    /// together pass the budget), and starts a new WAL segment when the open one is full.
    fn make_room(&self, group: &[Arc<PendingWrite>]) -> Result<()> {
        let mut touched: Vec<TableId> = group
            .iter()
            .flat_map(|w| w.payload.tables().iter().copied())
            .collect();
        touched.sort_unstable();
        touched.dedup();
        for id in touched {
            if let Some(table) = self.table_by_id(id) {
                let full = table.super_version().active.memory_bytes()
                    >= table.options.read().memtable_size_bytes;
                if full {
                    self.switch_memtable(&table)?;
                }
            }
        }
        if self.memtable_bytes.load(Ordering::Relaxed) >= self.options.write_buffer_budget_bytes {
            let largest = self
                .catalog
                .read()
                .by_id
                .values()
                .max_by_key(|t| t.super_version().active.memory_bytes())
                .cloned();
            if let Some(table) = largest {
                self.switch_memtable(&table)?;
            }
        }
        if self.wal.is_full() {
            self.wal.rotate()?;
        }
        Ok(())
    }

    /// Makes the active memtable of `table` immutable and schedules its flush. Must hold
    /// commit leadership (or run inside [`CommitQueue::exclusive`]).
    pub(crate) fn switch_memtable(&self, table: &Arc<TableInner>) -> Result<()> {
        let sv = table.super_version();
        if sv.active.memtable.is_empty() {
            return Ok(());
        }
        // A new segment, so the old one can go once this memtable is flushed.
        self.wal.rotate()?;
        let replaying = self.replaying.load(Ordering::Acquire);
        // The switch point becomes the table's flushed sequence number once the memtable is
        // flushed, and replay skips every entry of the table at or below it. Writers commit
        // above `last_seq`, so it bounds this memtable; during replay `last_seq` starts at
        // the manifest's, which can lie past entries still to be replayed, so the bound is
        // what this memtable holds.
        let switched_at = if replaying {
            sv.active.max_seq()
        } else {
            self.last_seq.load(Ordering::Acquire)
        };
        sv.active.mark_switched(switched_at);
        // While the WAL is replayed, memtables are append-only vectors (sorted once, when
        // flushed): replay inserts in sequence order and nothing reads until the open ends.
        let fresh = if replaying {
            Arc::new(crate::version::MemtableSlot::new(
                crate::memtable::MemtableKind::Vector.create(),
            ))
        } else {
            table.new_memtable()
        };
        table.switch_active_memtable(fresh);
        self.schedule_flush(table);
        Ok(())
    }

    /// Delays or blocks the caller while memtables pile up (see the module docs).
    fn wait_for_room(&self, tables: &[Arc<TableInner>]) -> Result<()> {
        let budget = self.options.write_buffer_budget_bytes;
        let mut slowed = false;
        let mut stall_started: Option<Instant> = None;
        loop {
            self.check_open()?;
            let bytes = self.memtable_bytes.load(Ordering::Relaxed);
            let mut stall = bytes >= budget.saturating_mul(2);
            let mut slow = bytes >= budget + budget / 2;
            for table in tables {
                let options = table.options.read();
                let max = options.max_immutable_memtables;
                let queued = table.versions.read().immutables.len();
                stall |= queued >= max;
                slow |= queued >= (max / 2).max(1);
                let compaction = &options.compaction;
                if compaction.strategy != crate::compaction::StrategyKind::None {
                    let pressure = table.write_pressure.load(Ordering::Acquire);
                    let pending = table.pending_compaction_bytes.load(Ordering::Acquire);
                    stall |= pressure >= compaction.l0_stop_trigger
                        || pending >= compaction.pending_bytes_stop;
                    slow |= pressure >= compaction.l0_slowdown_trigger
                        || pending >= compaction.pending_bytes_slowdown;
                }
            }
            if !stall {
                if let Some(started) = stall_started {
                    self.count_stall(tables, started.elapsed());
                }
                if slow && !slowed && stall_started.is_none() {
                    Metrics::inc(&self.metrics.write_slowdowns);
                    Metrics::add(
                        &self.metrics.write_slowdown_micros,
                        SLOWDOWN.as_micros() as u64,
                    );
                    for table in tables {
                        Metrics::inc(&table.counters.write_slowdowns);
                        Metrics::add(
                            &table.counters.write_slowdown_micros,
                            SLOWDOWN.as_micros() as u64,
                        );
                    }
                    std::thread::sleep(SLOWDOWN);
                    slowed = true;
                    continue;
                }
                return Ok(());
            }
            let started = *stall_started.get_or_insert_with(|| {
                Metrics::inc(&self.metrics.write_stalls);
                tables
                    .iter()
                    .for_each(|t| Metrics::inc(&t.counters.write_stalls));
                Instant::now()
            });
            if started.elapsed() > WRITE_STALL_TIMEOUT {
                self.count_stall(tables, started.elapsed());
                let cause = self
                    .background_error
                    .lock()
                    .clone()
                    .unwrap_or_else(|| "flushes are not keeping up".into());
                return Err(Error::WriteStalled(format!(
                    "write stalled for {}s waiting for memtables to flush: {cause}",
                    started.elapsed().as_secs()
                )));
            }
            let mut progress = self.progress.lock();
            self.progress_changed
                .wait_for(&mut progress, Duration::from_millis(50));
        }
    }
}

impl DbInner {
    /// Adds the time a write stalled to the database's and its tables' stall counters.
    fn count_stall(&self, tables: &[Arc<TableInner>], stalled: Duration) {
        let micros = stalled.as_micros() as u64;
        Metrics::add(&self.metrics.write_stall_micros, micros);
        for table in tables {
            Metrics::add(&table.counters.write_stall_micros, micros);
        }
    }
}

/// Takes a prefix of `pending` of at most `max_bytes` (at least one batch).
fn take_group(pending: &mut Vec<Arc<PendingWrite>>, max_bytes: usize) -> Vec<Arc<PendingWrite>> {
    let mut bytes = 0usize;
    let mut count = 0usize;
    for write in pending.iter() {
        bytes += write.payload.len_bytes();
        if count > 0 && bytes > max_bytes {
            break;
        }
        count += 1;
    }
    pending.drain(..count).collect()
}
