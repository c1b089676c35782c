//! Engine metrics: monotonic counters updated with relaxed atomics on the hot paths, read as
//! a consistent-enough [`MetricsSnapshot`] of `(name, value)` pairs.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! metrics {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Counters of one database.
        #[derive(Debug, Default)]
        pub struct Metrics {
            $($(#[$doc])* pub $name: AtomicU64,)*
        }

        impl Metrics {
            /// Every counter as `(name, value)`.
            pub fn snapshot(&self) -> MetricsSnapshot {
                MetricsSnapshot {
                    values: vec![$((stringify!($name), self.$name.load(Ordering::Relaxed)),)*],
                }
            }
        }
    };
}

metrics! {
    /// Write batches committed.
    write_batches,
    /// Rows (entries) committed.
    rows_written,
    /// Bytes appended to the WAL.
    wal_bytes,
    /// WAL `fdatasync` calls.
    wal_syncs,
    /// Commit groups (one WAL write each).
    commit_groups,
    /// Writes that were slowed down by backpressure.
    write_slowdowns,
    /// Microseconds writers spent slowed down.
    write_slowdown_micros,
    /// Writes that stalled until a flush finished.
    write_stalls,
    /// Microseconds writers spent stalled.
    write_stall_micros,
    /// Memtables flushed to SSTs.
    flushes,
    /// Rows written by flushes.
    flush_rows,
    /// SST bytes written by flushes.
    flush_bytes,
    /// Microseconds spent flushing.
    flush_micros,
    /// Bulk loads committed (`Table::ingest`, `Table::bulk_load`, large SQL inserts).
    ingests,
    /// Rows written to SSTs by bulk loads, counted file by file as they are written (before
    /// the load commits, so a load's progress shows; a failed load's rows stay counted).
    ingest_rows,
    /// Failed background jobs (retried).
    background_errors,
    /// Point lookups.
    gets,
    /// Point lookups answered by a memtable.
    get_memtable_hits,
    /// SST files probed by point lookups.
    get_sst_probes,
    /// Bloom-filter checks.
    bloom_checks,
    /// Bloom-filter checks that ruled a file out.
    bloom_negatives,
    /// Block-cache hits.
    block_cache_hits,
    /// Block-cache misses (blocks decoded from disk).
    block_cache_misses,
    /// Key-cache hits (a file's keys found in memory).
    key_cache_hits,
    /// Key-cache misses (a file's key columns read).
    key_cache_misses,
    /// Base rows a scan plan found hidden by its memtable overlay (through the key cache,
    /// so the scan needs no anti-join).
    overlay_rows_resolved,
    /// Base scans planned (overlay merged and resolved).
    scan_plans_made,
    /// Base scans that reused the plan of an earlier scan of the same unchanged table
    /// state.
    scan_plans_reused,
    /// Range scans started.
    scans,
    /// Rows returned by scans.
    scan_rows,
    /// Rows dropped by scans as older versions or tombstones.
    scan_rows_deduplicated,
    /// SST files whose checksum was verified.
    sst_files_verified,
    /// WAL records replayed at open.
    recovered_records,
    /// WAL entries replayed at open.
    recovered_rows,
    /// Microseconds spent replaying the WAL at open.
    recovery_micros,
    /// WAL segments deleted after their data was flushed.
    wal_segments_deleted,
    /// SST files deleted after they stopped being referenced.
    sst_files_deleted,
    /// Compactions run.
    compactions,
    /// Bytes read by compactions.
    compaction_bytes_read,
    /// Bytes written by compactions.
    compaction_bytes_written,
    /// Microseconds spent compacting.
    compaction_micros,
    /// Deletion-vector files written (flushes, ingests and compactions).
    dv_files_written,
    /// Bytes of the deletion-vector files written.
    dv_bytes_written,
    /// Row positions newly marked deleted by deletion-vector maintenance.
    dv_rows_marked,
    /// Rows of older files whose keys were read to maintain deletion vectors.
    dv_rows_read,
    /// Microseconds spent maintaining deletion vectors.
    dv_micros,
    /// Deletion-vector passes that failed (the table's scans merge until a rebuild).
    dv_failures,
}

impl Metrics {
    /// Adds `n` to a counter.
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds one to a counter.
    #[inline]
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A point-in-time copy of the counters (plus gauges added by the database).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// `(name, value)` pairs.
    pub values: Vec<(&'static str, u64)>,
}

impl MetricsSnapshot {
    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }

    /// Adds a gauge.
    pub fn push(&mut self, name: &'static str, value: u64) {
        self.values.push((name, value));
    }
}

/// Write-side counters of one table, kept since the database was opened: the logical bytes
/// its writes committed (the denominator of its write amplification) and the time its
/// writes spent slowed down or stalled by backpressure.
#[derive(Debug, Default)]
pub(crate) struct TableCounters {
    /// Entries committed (puts and deletes, by writes and ingests).
    pub rows_written: AtomicU64,
    /// Encoded key plus value bytes of those entries.
    pub user_bytes: AtomicU64,
    /// Writes to this table that were slowed down.
    pub write_slowdowns: AtomicU64,
    /// Microseconds they were slowed down.
    pub write_slowdown_micros: AtomicU64,
    /// Writes to this table that stalled.
    pub write_stalls: AtomicU64,
    /// Microseconds they stalled.
    pub write_stall_micros: AtomicU64,
}

impl TableCounters {
    /// A copy of the counters.
    pub fn snapshot(&self) -> TableWriteStats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TableWriteStats {
            rows_written: load(&self.rows_written),
            user_bytes: load(&self.user_bytes),
            write_slowdowns: load(&self.write_slowdowns),
            write_slowdown_micros: load(&self.write_slowdown_micros),
            write_stalls: load(&self.write_stalls),
            write_stall_micros: load(&self.write_stall_micros),
        }
    }
}

/// The write-side counters of one table since the database was opened (see
/// [`crate::Table::compaction_report`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableWriteStats {
    /// Entries committed (puts and deletes, by writes and ingests).
    pub rows_written: u64,
    /// Encoded key plus value bytes of those entries: the user bytes write amplification is
    /// measured against.
    pub user_bytes: u64,
    /// Writes to this table that were slowed down by backpressure.
    pub write_slowdowns: u64,
    /// Microseconds they were slowed down.
    pub write_slowdown_micros: u64,
    /// Writes to this table that stalled on backpressure.
    pub write_stalls: u64,
    /// Microseconds they stalled.
    pub write_stall_micros: u64,
}
