//! Engine metrics: monotonic counters updated with relaxed atomics on the hot paths, read as
//! a consistent-enough [`MetricsSnapshot`] of `(name, value)` pairs.
//!
//! The reads of SST data (block-cache and disk-cache hits and misses, object-store GETs and
//! the bytes they fetched) are also counted per operation: [`track_reads`] runs a closure with
//! a [`ReadStats`] of its own installed on the thread, and every such read made on that
//! thread while it runs is added to it as well as to the database's counters (a SQL scan
//! partition shows them in `EXPLAIN ANALYZE`). Reads are synchronous on the caller's thread
//! (an object-store request is waited for there), so a thread's reads are its operation's.

use std::cell::RefCell;
use std::sync::Arc;
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
    /// Point-lookup rows found in a file's keys in the key cache, without reading the key
    /// block (the key, `_seq` and `_op` pages) of the row.
    get_rows_from_key_cache,
    /// Bloom-filter checks.
    bloom_checks,
    /// Bloom-filter checks that ruled a file out.
    bloom_negatives,
    /// Block-cache hits.
    block_cache_hits,
    /// Block-cache misses (blocks decoded from disk).
    block_cache_misses,
    /// Row pages (the page of a column holding a row a point lookup returns) found decoded
    /// in the block cache.
    row_page_cache_hits,
    /// Row pages read, checked and decoded for a point lookup (then cached).
    row_page_cache_misses,
    /// Key-cache hits (a file's keys found in memory).
    key_cache_hits,
    /// Key-cache misses (a file's key columns read).
    key_cache_misses,
    /// Files whose keys the key-cache warmer read into the cache after an open
    /// (`Options::key_cache_warm_on_open`).
    key_cache_files_warmed,
    /// Base rows a scan plan found hidden by its memtable overlay (through the key cache,
    /// so the scan needs no anti-join).
    overlay_rows_resolved,
    /// Base scans planned (overlay merged and resolved).
    scan_plans_made,
    /// Base scans that reused the plan of an earlier scan of the same unchanged table
    /// state.
    scan_plans_reused,
    /// Base scans that brought an earlier scan's plan up to date with the keys written since.
    scan_plans_updated,
    /// Microseconds spent making base-scan plans (`scan_plans_made`).
    scan_plan_made_micros,
    /// Microseconds spent bringing kept plans up to date (`scan_plans_updated`).
    scan_plan_updated_micros,
    /// Kept plans made or brought up to date by the plan refresher, off the queries' path
    /// (`Options::scan_plan_refresh_ms`).
    scan_plans_refreshed,
    /// Microseconds the plan refresher spent (`scan_plans_refreshed`).
    scan_plan_refreshed_micros,
    /// Plan updates (by queries or the refresher) that merged the overlay's recently written
    /// keys into its settled ones: a walk of the whole overlay.
    scan_plan_consolidations,
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
    /// Deletion-vector files deleted after they stopped being referenced.
    dv_files_deleted,
    /// Deletions of obsolete files put off because a query lease named them or the leases
    /// could not be listed (each is retried; `crate::purge`).
    obsolete_file_deletions_deferred,
    /// Obsolete files the purger left to the next open (its queue was full or the delete
    /// failed).
    obsolete_files_left,
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
    /// Disk-cache hits: chunks of SST bytes read from the local disk cache (databases on
    /// object storage, see `disk_cache`).
    disk_cache_hits,
    /// Disk-cache misses: chunks fetched from the object store (and then cached).
    disk_cache_misses,
    /// Disk-cache entries found corrupt or stale (checksum, length or object version
    /// mismatch): dropped and fetched again, never returned.
    disk_cache_invalid,
    /// Disk-cache entries evicted to stay within `Options::disk_cache_bytes`.
    disk_cache_evictions,
    /// GET requests to the object store (whole objects and byte ranges).
    object_gets,
    /// Bytes those GET requests fetched.
    object_get_bytes,
}

/// One kind of SST read counted both database-wide and per operation (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadCounter {
    /// A block found in the memory block cache.
    BlockCacheHit,
    /// A block decoded because the block cache did not hold it.
    BlockCacheMiss,
    /// A chunk read from the disk cache.
    DiskCacheHit,
    /// A chunk the disk cache did not hold (fetched).
    DiskCacheMiss,
    /// A GET request to the object store.
    ObjectGet,
    /// Bytes fetched by GET requests.
    ObjectGetBytes,
}

impl ReadCounter {
    /// Every read counter, in [`ReadStats::values`] order.
    pub const ALL: [ReadCounter; 6] = [
        ReadCounter::BlockCacheHit,
        ReadCounter::BlockCacheMiss,
        ReadCounter::DiskCacheHit,
        ReadCounter::DiskCacheMiss,
        ReadCounter::ObjectGet,
        ReadCounter::ObjectGetBytes,
    ];

    /// The counter's name, the same as the database-wide counter's.
    pub fn name(self) -> &'static str {
        match self {
            ReadCounter::BlockCacheHit => "block_cache_hits",
            ReadCounter::BlockCacheMiss => "block_cache_misses",
            ReadCounter::DiskCacheHit => "disk_cache_hits",
            ReadCounter::DiskCacheMiss => "disk_cache_misses",
            ReadCounter::ObjectGet => "object_gets",
            ReadCounter::ObjectGetBytes => "object_get_bytes",
        }
    }
}

/// The SST reads of one operation (see [`track_reads`]).
#[derive(Debug, Default)]
pub struct ReadStats {
    counts: [AtomicU64; 6],
}

impl ReadStats {
    /// The count of `counter`.
    pub fn get(&self, counter: ReadCounter) -> u64 {
        self.counts[counter as usize].load(Ordering::Relaxed)
    }

    /// Every counter with its value, in [`ReadCounter::ALL`] order.
    pub fn values(&self) -> Vec<(ReadCounter, u64)> {
        ReadCounter::ALL.iter().map(|&c| (c, self.get(c))).collect()
    }

    fn add(&self, counter: ReadCounter, n: u64) {
        self.counts[counter as usize].fetch_add(n, Ordering::Relaxed);
    }
}

thread_local! {
    /// The stats of the operation running on this thread, if tracked.
    static CURRENT_READS: RefCell<Option<Arc<ReadStats>>> = const { RefCell::new(None) };
}

/// Runs `f` with `stats` receiving the SST reads made on this thread meanwhile (nested calls
/// count into the innermost stats; the previous ones are restored afterwards, even on panic).
pub fn track_reads<T>(stats: &Arc<ReadStats>, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<Arc<ReadStats>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            CURRENT_READS.with(|current| *current.borrow_mut() = previous);
        }
    }
    let previous = CURRENT_READS.with(|current| current.borrow_mut().replace(Arc::clone(stats)));
    let _restore = Restore(previous);
    f()
}

/// The stats of the operation tracked on this thread ([`track_reads`]), if any: to track
/// the operation's reads made for it on another thread.
pub fn current_reads() -> Option<Arc<ReadStats>> {
    CURRENT_READS.with(|current| current.borrow().clone())
}

/// Adds `n` to `counter` of the operation tracked on this thread, if any (not to the
/// database's counters: see [`Metrics::count_read`]).
pub(crate) fn count_thread_read(counter: ReadCounter, n: u64) {
    CURRENT_READS.with(|current| {
        if let Some(stats) = current.borrow().as_ref() {
            stats.add(counter, n);
        }
    });
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

    /// Adds `n` to a read counter, database-wide and for the operation tracked on this thread
    /// ([`track_reads`]).
    pub fn count_read(&self, counter: ReadCounter, n: u64) {
        let total = match counter {
            ReadCounter::BlockCacheHit => &self.block_cache_hits,
            ReadCounter::BlockCacheMiss => &self.block_cache_misses,
            ReadCounter::DiskCacheHit => &self.disk_cache_hits,
            ReadCounter::DiskCacheMiss => &self.disk_cache_misses,
            ReadCounter::ObjectGet => &self.object_gets,
            ReadCounter::ObjectGetBytes => &self.object_get_bytes,
        };
        Metrics::add(total, n);
        count_thread_read(counter, n);
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
