//! Key-value engine benchmark (db_bench style), the workloads of `shared/BENCHMARKS.md`:
//! fillseq, fillrandom, fillrandom with `sync = true` and 8 writers, readrandom, readmissing,
//! seekrandom, scanall, overwrite and recovery, on Strata (with deletion vectors, the default,
//! and without them, so the cost of their maintenance shows in the same run) and (with
//! `--features peers`) on RocksDB and fjall in the same process, so ratios come from one run.
//! Write amplification counts deletion-vector bytes with the compaction bytes.
//!
//! ```text
//! cargo bench --bench kv                          # Strata only, N = 1,000,000
//! cargo bench --bench kv --features peers         # with RocksDB and fjall
//! STRATA_BENCH_N=200000 STRATA_BENCH_ONLY=fillrandom,readrandom cargo bench --bench kv
//! ```
//!
//! Prints markdown tables and writes `benches/results/kv.json` and `kv.md` (another directory
//! with `STRATA_BENCH_RESULTS`). Data follow the generators of BENCHMARKS.md exactly (16-byte
//! decimal keys, 100-byte values).
//!
//! The `overwrite` workload is a compaction study: each compaction set-up (Strata leveled and
//! size-tiered, RocksDB leveled and universal, all with the same level sizes and triggers)
//! gets a fresh database loaded with the N keys of fillrandom, flushed and left to settle; then
//! N random overwrites are timed while compaction runs in the background. Reported: throughput,
//! the longest single put, write amplification (bytes written by flushes and compactions, and
//! with the WAL, over the user bytes of the overwrites), space amplification (bytes on disk over
//! live user bytes, after settling and after a full compaction), stall time from each engine's
//! own counters, and readrandom / seekrandom before and after a full compaction.
//!
//! Environment: `STRATA_BENCH_N` (default 1,000,000), `STRATA_BENCH_ONLY` (comma-separated
//! workloads), `STRATA_BENCH_ENGINES` (comma-separated engine names, e.g. `strata,rocksdb`),
//! `STRATA_BENCH_READS` (gets of readrandom; default N/2), `STRATA_BENCH_SETUPS` (comma-separated overwrite set-ups, e.g. `strata leveled`), `STRATA_BENCH_DIR` (where the databases go; default `target`),
//! `STRATA_BENCH_RESULTS` (where the tables go; default `benches/results`),
//! `STRATA_BENCH_KEEP` (a directory: the databases of the read workloads are kept there, and a
//! later run with the same N reads them without filling again; for studies of the reads),
//! `STRATA_BENCH_COMPACTION_SCALE` (the overwrite study divides the memtable size, the level-1
//! target and the target file size of Strata and RocksDB alike by it, so that a small N goes
//! through several levels; default 1, the defaults), `STRATA_BENCH_ROW_PAGE_PERCENT` (Strata's
//! `Options::row_page_cache_percent`, the block cache's share for row pages; default 50),
//! `STRATA_BENCH_BLOCK_CACHE_BYTES` and `STRATA_BENCH_KEY_CACHE_BYTES` (Strata's block cache,
//! default the peers' 256 MiB, and key cache, default `Options::key_cache_bytes`),
//! `STRATA_BENCH_KEY_CACHE_WARM=0` (no key-cache warm-up after an open).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
// `splitmix64` of BENCHMARKS.md, shared with the `events` table function.
use strata_datafusion::functions::events::splitmix64;

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// `Rng(seed)`: its k-th output is `splitmix64(seed + k * GOLDEN)`.
struct Rng {
    seed: u64,
    k: u64,
}

impl Rng {
    fn new(seed: u64) -> Self {
        Rng { seed, k: 0 }
    }

    fn next(&mut self) -> u64 {
        let out = splitmix64(self.seed.wrapping_add(self.k.wrapping_mul(GOLDEN)));
        self.k += 1;
        out
    }

    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}

fn key(k: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(format!("{k:016}").as_bytes());
    out
}

fn value(k: u64, round: u64) -> [u8; 100] {
    let mut rng = Rng::new(k ^ round.wrapping_mul(0xD6E8_FEB8_6659_FD93));
    let mut out = [0u8; 100];
    for i in 0..7 {
        let bytes = rng.next().to_le_bytes();
        let take = if i == 6 { 2 } else { 8 };
        out[i * 8..i * 8 + take].copy_from_slice(&bytes[..take]);
    }
    let (head, tail) = out.split_at_mut(50);
    tail.copy_from_slice(head);
    out
}

fn fisher_yates(n: u64) -> Vec<u64> {
    let mut order: Vec<u64> = (0..n).collect();
    let mut rng = Rng::new(1);
    for i in (1..n as usize).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    order
}

/// The operations a benchmarked engine offers.
trait Engine: Send + Sync {
    fn put(&self, key: &[u8], value: &[u8], sync: bool);
    fn get(&self, key: &[u8]) -> Option<Vec<u8>>;
    /// Reads `count` pairs from `start`; returns how many were read.
    fn seek(&self, start: &[u8], count: usize) -> usize;
    fn scan_all(&self) -> usize;
    /// Writes memtables out and waits for the flush.
    fn flush(&self);
    /// Waits until background compaction has nothing left to do (at most `limit`); returns
    /// false on timeout.
    fn settle(&self, limit: Duration) -> bool;
    /// Compacts everything into the fewest runs the strategy allows and waits for it.
    fn compact_all(&self);
    /// The engine's own write counters, where it has them.
    fn counters(&self) -> Counters;
    /// Rows per second of the WAL replay at open, from the engine's own metrics.
    fn replay_rows_per_sec(&self) -> Option<f64> {
        None
    }
    /// The engine's own per-level compaction statistics, as text for the log.
    fn level_stats(&self) -> String {
        String::new()
    }
    /// The engine's own counters of the reads point lookups make, `(name, value, cumulative)`,
    /// where it has them: readrandom notes how much a cumulative one grew, and the value of
    /// the others (sizes) at its end.
    fn read_counters(&self) -> Vec<(&'static str, u64, bool)> {
        Vec::new()
    }
}

/// Cumulative write counters of one engine (bytes and microseconds).
#[derive(Clone, Copy, Debug, Default)]
struct Counters {
    /// Bytes appended to the write-ahead log.
    wal_bytes: u64,
    /// SST bytes written by flushes.
    flush_bytes: u64,
    /// SST bytes written by compactions.
    compaction_bytes: u64,
    /// Microseconds writers were stalled or slowed down (`None`: not reported).
    stall_micros: Option<u64>,
}

impl Counters {
    fn since(self, before: Counters) -> Counters {
        Counters {
            wal_bytes: self.wal_bytes - before.wal_bytes,
            flush_bytes: self.flush_bytes - before.flush_bytes,
            compaction_bytes: self.compaction_bytes - before.compaction_bytes,
            stall_micros: self
                .stall_micros
                .zip(before.stall_micros)
                .map(|(a, b)| a - b),
        }
    }
}

/// How an engine compacts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Style {
    /// Leveled compaction (every engine's default).
    Leveled,
    /// Size-tiered (Strata) / universal (RocksDB).
    Tiered,
    /// RocksDB only: leveled with level targets derived from the size of the last level
    /// (`level_compaction_dynamic_level_bytes`, RocksDB's default since 8.4). `Leveled`
    /// turns it off, so RocksDB's level sizes are Strata's (a fixed level-1 target times the
    /// multiplier per level).
    #[cfg_attr(not(feature = "peers"), allow(dead_code))]
    LeveledDynamic,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Strata,
    /// Strata with deletion vectors off (`TableOptions::deletion_vectors`): the write cost of
    /// the DV pass is the difference to `Strata`.
    StrataNoDv,
    #[cfg(feature = "peers")]
    RocksDb,
    #[cfg(feature = "peers")]
    Fjall,
}

impl Kind {
    fn all() -> Vec<Kind> {
        #[allow(unused_mut)]
        let mut kinds = vec![Kind::Strata, Kind::StrataNoDv];
        #[cfg(feature = "peers")]
        kinds.extend([Kind::RocksDb, Kind::Fjall]);
        kinds
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Strata => "strata",
            Kind::StrataNoDv => "strata (no DVs)",
            #[cfg(feature = "peers")]
            Kind::RocksDb => "rocksdb",
            #[cfg(feature = "peers")]
            Kind::Fjall => "fjall",
        }
    }
}

/// Memtable size of every engine (bytes), and the size used by the recovery workload so that
/// nothing is flushed before the reopen.
const MEMTABLE_BYTES: usize = 64 << 20;
const RECOVERY_MEMTABLE_BYTES: usize = 2 << 30;
const CACHE_BYTES: usize = 256 << 20;
/// Level-1 target and target file size: Strata's and RocksDB's defaults.
const LEVEL_BASE_BYTES: u64 = 256 << 20;
const TARGET_FILE_BYTES: u64 = 64 << 20;
/// Bytes per MiB, for the logs.
const MIB_F: f64 = (1u64 << 20) as f64;

/// Opens an engine for the key-value workloads: every engine with its default compaction
/// (for RocksDB, leveled with dynamic level sizes).
fn open(kind: Kind, dir: &Path, memtable_bytes: usize) -> Box<dyn Engine> {
    #[cfg(feature = "peers")]
    if kind == Kind::RocksDb {
        return open_styled(kind, dir, memtable_bytes, Style::LeveledDynamic, false, 1);
    }
    open_styled(kind, dir, memtable_bytes, Style::Leveled, false, 1)
}

/// Opens an engine with a compaction style; `statistics` turns on RocksDB's statistics (which
/// cost it some throughput, so the plain workloads run without them). `scale` divides the
/// level-1 target (256 MiB) and the target file size (64 MiB) of both Strata and RocksDB alike
/// (1: their defaults), so that a small N still goes through several levels.
fn open_styled(
    kind: Kind,
    dir: &Path,
    memtable_bytes: usize,
    style: Style,
    statistics: bool,
    scale: u64,
) -> Box<dyn Engine> {
    match kind {
        Kind::Strata | Kind::StrataNoDv => {
            let _ = statistics; // Strata's metrics are always on.
            let dvs = kind == Kind::Strata;
            Box::new(strata::Strata::open(dir, memtable_bytes, style, scale, dvs))
        }
        #[cfg(feature = "peers")]
        Kind::RocksDb => Box::new(peers::Rocks::open(
            dir,
            memtable_bytes,
            style,
            statistics,
            scale,
        )),
        #[cfg(feature = "peers")]
        Kind::Fjall => {
            assert_eq!(
                style,
                Style::Leveled,
                "fjall runs with its default strategy only"
            );
            Box::new(peers::Fjall::open(dir, memtable_bytes))
        }
    }
}

mod strata {
    use super::*;
    use strata_engine::{
        CompactionOptions, Db, KvStore, Options, StrategyKind, SyncMode, TableOptions, WriteBatch,
        WriteOptions,
    };

    pub struct Strata {
        db: Db,
        kv: KvStore,
    }

    /// The SST layout overrides of `STRATA_BENCH_ROW_GROUP_ROWS`, `STRATA_BENCH_PAGE_BYTES`,
    /// `STRATA_BENCH_SCAN_ROW_GROUP_ROWS`, `STRATA_BENCH_SCAN_DICTIONARY_BYTES`,
    /// `STRATA_BENCH_VALUE_PAGE_BYTES` and `STRATA_BENCH_INDEX_BLOCK_ROWS` (for studies of the
    /// layout; unset = the defaults).
    fn sst_layout(mut options: TableOptions) -> TableOptions {
        let var = |name: &str| {
            std::env::var(name).ok().map(|v| {
                v.parse::<usize>()
                    .unwrap_or_else(|_| panic!("{name}: not a number"))
            })
        };
        if let Some(rows) = var("STRATA_BENCH_ROW_GROUP_ROWS") {
            options.sst_row_group_rows = rows;
        }
        if let Some(bytes) = var("STRATA_BENCH_PAGE_BYTES") {
            options.sst_page_size_bytes = bytes;
        }
        if let Some(rows) = var("STRATA_BENCH_SCAN_ROW_GROUP_ROWS") {
            options.sst_scan_row_group_rows = rows;
        }
        if let Some(bytes) = var("STRATA_BENCH_SCAN_DICTIONARY_BYTES") {
            options.sst_scan_dictionary_page_size_bytes = bytes;
        }
        if let Some(bytes) = var("STRATA_BENCH_VALUE_PAGE_BYTES") {
            options.sst_value_page_size_bytes = bytes;
        }
        if let Some(rows) = var("STRATA_BENCH_INDEX_BLOCK_ROWS") {
            options.sst_index_block_rows = rows;
        }
        options
    }

    impl Strata {
        /// Default options except the memtable size, the block cache and the strategy; the
        /// compaction defaults (L0 trigger 4, level base 256 MiB, multiplier 10, 64 MiB files;
        /// tiered size ratio 1 %, merge width 2..32, space amplification 200 %) match RocksDB's.
        pub fn open(
            dir: &Path,
            memtable_bytes: usize,
            style: Style,
            scale: u64,
            deletion_vectors: bool,
        ) -> Self {
            let strategy = match style {
                Style::Leveled | Style::LeveledDynamic => StrategyKind::Leveled,
                Style::Tiered => StrategyKind::SizeTiered,
            };
            // `STRATA_BENCH_ROW_PAGE_PERCENT`: the block cache's share for row pages (for
            // studies of the cache; unset = the default).
            let row_page_cache_percent = std::env::var("STRATA_BENCH_ROW_PAGE_PERCENT")
                .ok()
                .map(|v| {
                    v.parse()
                        .expect("STRATA_BENCH_ROW_PAGE_PERCENT: a percentage")
                })
                .unwrap_or(Options::default().row_page_cache_percent);
            // `STRATA_BENCH_BLOCK_CACHE_BYTES`, `STRATA_BENCH_KEY_CACHE_BYTES`: Strata's block
            // and key caches (unset: the peers' block cache size, and the default), for runs
            // where Strata's two caches together hold what the peers' one does.
            let bytes = |name: &str| {
                std::env::var(name).ok().map(|v| {
                    v.parse::<usize>()
                        .unwrap_or_else(|_| panic!("{name}: bytes"))
                })
            };
            let options = Options {
                sync_mode: SyncMode::Never,
                block_cache_bytes: bytes("STRATA_BENCH_BLOCK_CACHE_BYTES").unwrap_or(CACHE_BYTES),
                key_cache_bytes: bytes("STRATA_BENCH_KEY_CACHE_BYTES")
                    .unwrap_or(Options::default().key_cache_bytes),
                row_page_cache_percent,
                // `STRATA_BENCH_KEY_CACHE_WARM=0`: no key-cache warm-up after an open (for
                // reads right after a restart with and without it).
                key_cache_warm_on_open: std::env::var("STRATA_BENCH_KEY_CACHE_WARM")
                    .map_or(true, |v| v != "0"),
                write_buffer_budget_bytes: (memtable_bytes * 4).max(512 << 20),
                table_defaults: TableOptions {
                    memtable_size_bytes: memtable_bytes,
                    compaction: CompactionOptions {
                        strategy,
                        level_base_bytes: LEVEL_BASE_BYTES / scale,
                        target_file_size_bytes: TARGET_FILE_BYTES / scale,
                        ..CompactionOptions::default()
                    },
                    deletion_vectors,
                    ..sst_layout(TableOptions::default())
                },
                ..Options::default()
            };
            let db = Db::open(dir, options).expect("open strata");
            let kv = db.kv("bench").expect("kv");
            Strata { db, kv }
        }
    }

    impl Engine for Strata {
        fn put(&self, key: &[u8], value: &[u8], sync: bool) {
            let mut batch = WriteBatch::new();
            batch.put(key, value);
            self.kv
                .write_with(&batch, WriteOptions { sync })
                .expect("put");
        }

        fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
            self.kv.get(key).expect("get")
        }

        fn seek(&self, start: &[u8], count: usize) -> usize {
            self.kv
                .scan(start.to_vec()..)
                .expect("scan")
                .take(count)
                .count()
        }

        fn scan_all(&self) -> usize {
            self.kv.scan(..).expect("scan").count()
        }

        fn flush(&self) {
            self.db.flush().expect("flush");
        }

        fn settle(&self, limit: Duration) -> bool {
            let table = self.kv.table();
            let options = table.options().compaction;
            let Some(strategy) = options.strategy.strategy() else {
                return true;
            };
            let start = Instant::now();
            // A running task stays in the version until it is installed, so the strategy
            // keeps proposing work until the background worker has done it all.
            while start.elapsed() < limit {
                let levels = table.view().expect("view").files_by_level();
                if strategy.pick(&levels, &options).is_none() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            false
        }

        fn compact_all(&self) {
            self.kv.table().compact().expect("compact");
        }

        fn counters(&self) -> Counters {
            let m = self.db.metrics();
            let get = |name: &str| m.get(name).unwrap_or(0);
            Counters {
                wal_bytes: get("wal_bytes"),
                flush_bytes: get("flush_bytes"),
                // Deletion-vector files are written by flushes and compactions too.
                compaction_bytes: get("compaction_bytes_written") + get("dv_bytes_written"),
                stall_micros: Some(get("write_stall_micros") + get("write_slowdown_micros")),
            }
        }

        fn level_stats(&self) -> String {
            let report = self.kv.table().compaction_report();
            let mut out = format!(
                "  level files MiB flushes flushed_MiB compactions moves read_MiB written_MiB WA \
                 (user {:.1} MiB)\n",
                report.writes.user_bytes as f64 / MIB_F
            );
            for l in &report.levels {
                let s = &l.stats;
                out.push_str(&format!(
                    "  L{} {} {:.1} {} {:.1} {} {} {:.1} {:.1} {:.2}\n",
                    l.level,
                    l.files,
                    l.bytes as f64 / MIB_F,
                    s.flushes,
                    s.bytes_flushed as f64 / MIB_F,
                    s.compactions,
                    s.moves,
                    s.bytes_read as f64 / MIB_F,
                    s.bytes_written as f64 / MIB_F,
                    l.write_amplification.unwrap_or(0.0)
                ));
            }
            out.push_str(&format!(
                "  total WA {:.2}, space amp {:.2}\n",
                report.write_amplification().unwrap_or(0.0),
                report.space_amplification().unwrap_or(0.0)
            ));
            out
        }

        fn read_counters(&self) -> Vec<(&'static str, u64, bool)> {
            let m = self.db.metrics();
            let get = |name: &str| m.get(name).unwrap_or(0);
            vec![
                ("key blocks read", get("block_cache_misses"), true),
                (
                    "rows found in the key cache",
                    get("get_rows_from_key_cache"),
                    true,
                ),
                ("row pages read", get("row_page_cache_misses"), true),
                ("block cache bytes", get("block_cache_bytes"), false),
                ("key cache bytes", get("key_cache_bytes"), false),
            ]
        }

        fn replay_rows_per_sec(&self) -> Option<f64> {
            let m = self.db.metrics();
            let rows = m.get("recovered_rows")?;
            let micros = m.get("recovery_micros")?;
            (micros > 0).then(|| rows as f64 * 1e6 / micros as f64)
        }
    }
}

#[cfg(feature = "peers")]
mod peers {
    use super::*;

    use rocksdb::statistics::Ticker;

    pub struct Rocks {
        db: rocksdb::DB,
        /// Kept for its statistics object (shared with the open database).
        options: rocksdb::Options,
        /// Statistics are collected (only where a workload reports them: they cost time).
        statistics: bool,
    }

    impl Rocks {
        /// Leveled: RocksDB's defaults (L0 trigger 4, 256 MiB level base, multiplier 10,
        /// 64 MiB files), with dynamic level sizes only for `Style::LeveledDynamic`. Universal: its defaults (size ratio 1 %, min merge width 2, space
        /// amplification 200 %).
        pub fn open(
            dir: &Path,
            memtable_bytes: usize,
            style: Style,
            statistics: bool,
            scale: u64,
        ) -> Self {
            let mut options = rocksdb::Options::default();
            options.create_if_missing(true);
            if statistics {
                options.enable_statistics();
            }
            if style == Style::Tiered {
                options.set_compaction_style(rocksdb::DBCompactionStyle::Universal);
            }
            options.set_level_compaction_dynamic_level_bytes(style == Style::LeveledDynamic);
            options.set_write_buffer_size(memtable_bytes);
            options.set_max_bytes_for_level_base(LEVEL_BASE_BYTES / scale);
            options.set_target_file_size_base(TARGET_FILE_BYTES / scale);
            options.set_compression_type(rocksdb::DBCompressionType::Snappy);
            options.increase_parallelism(2);
            options.set_max_background_jobs(2);
            let mut table = rocksdb::BlockBasedOptions::default();
            table.set_block_cache(&rocksdb::Cache::new_lru_cache(CACHE_BYTES));
            table.set_bloom_filter(10.0, false);
            options.set_block_based_table_factory(&table);
            Rocks {
                db: rocksdb::DB::open(&options, dir).expect("open rocksdb"),
                options,
                statistics,
            }
        }
    }

    impl Engine for Rocks {
        fn put(&self, key: &[u8], value: &[u8], sync: bool) {
            let mut write = rocksdb::WriteOptions::default();
            write.set_sync(sync);
            self.db.put_opt(key, value, &write).expect("put");
        }

        fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
            self.db.get(key).expect("get")
        }

        fn seek(&self, start: &[u8], count: usize) -> usize {
            let mode = rocksdb::IteratorMode::From(start, rocksdb::Direction::Forward);
            self.db.iterator(mode).take(count).count()
        }

        fn scan_all(&self) -> usize {
            self.db.iterator(rocksdb::IteratorMode::Start).count()
        }

        fn flush(&self) {
            self.db.flush().expect("flush");
        }

        /// Settled when nothing is pending, or (universal) when nothing has run for two
        /// seconds: with universal compaction `rocksdb.compaction-pending` can stay 1 while
        /// the picker finds no compaction to run (facebook/rocksdb#9275).
        fn settle(&self, limit: Duration) -> bool {
            let start = Instant::now();
            let int = |name: &str| self.db.property_int_value(name).ok().flatten().unwrap_or(0);
            let mut quiet_since: Option<Instant> = None;
            while start.elapsed() < limit {
                let idle = int("rocksdb.num-running-compactions") == 0
                    && int("rocksdb.num-running-flushes") == 0
                    && int("rocksdb.mem-table-flush-pending") == 0;
                if idle && int("rocksdb.compaction-pending") == 0 {
                    return true;
                }
                if !idle {
                    quiet_since = None;
                } else if quiet_since.get_or_insert_with(Instant::now).elapsed()
                    >= Duration::from_secs(2)
                {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            false
        }

        fn compact_all(&self) {
            self.db.compact_range(None::<&[u8]>, None::<&[u8]>);
        }

        fn level_stats(&self) -> String {
            self.db
                .property_value("rocksdb.stats")
                .ok()
                .flatten()
                .map(|stats| {
                    // The compaction table of the default column family, up to its Sum row.
                    stats
                        .lines()
                        .skip_while(|l| !l.starts_with("** Compaction Stats"))
                        .take_while(|l| !l.trim_start().starts_with("Int"))
                        .map(|l| format!("  {l}\n"))
                        .collect()
                })
                .unwrap_or_default()
        }

        fn read_counters(&self) -> Vec<(&'static str, u64, bool)> {
            if !self.statistics {
                return Vec::new();
            }
            let t = |ticker| self.options.get_ticker_count(ticker);
            vec![
                ("data blocks read", t(Ticker::BlockCacheDataMiss), true),
                (
                    "index and filter blocks read",
                    t(Ticker::BlockCacheIndexMiss) + t(Ticker::BlockCacheFilterMiss),
                    true,
                ),
            ]
        }

        fn counters(&self) -> Counters {
            let t = |ticker| self.options.get_ticker_count(ticker);
            Counters {
                wal_bytes: t(Ticker::WalFileBytes),
                flush_bytes: t(Ticker::FlushWriteBytes),
                compaction_bytes: t(Ticker::CompactWriteBytes),
                stall_micros: Some(t(Ticker::StallMicros)),
            }
        }
    }

    pub struct Fjall {
        keyspace: fjall::Keyspace,
        partition: fjall::PartitionHandle,
    }

    impl Fjall {
        pub fn open(dir: &Path, memtable_bytes: usize) -> Self {
            let keyspace = fjall::Config::new(dir)
                .cache_size(CACHE_BYTES as u64)
                .max_write_buffer_size((memtable_bytes * 4) as u64)
                .fsync_ms(None)
                .open()
                .expect("open fjall");
            let partition = keyspace
                .open_partition(
                    "bench",
                    fjall::PartitionCreateOptions::default()
                        .max_memtable_size(memtable_bytes.min(u32::MAX as usize) as u32),
                )
                .expect("partition");
            Fjall {
                keyspace,
                partition,
            }
        }
    }

    impl Engine for Fjall {
        fn put(&self, key: &[u8], value: &[u8], sync: bool) {
            self.partition.insert(key, value).expect("put");
            if sync {
                self.keyspace
                    .persist(fjall::PersistMode::SyncData)
                    .expect("persist");
            }
        }

        fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
            self.partition.get(key).expect("get").map(|v| v.to_vec())
        }

        fn seek(&self, start: &[u8], count: usize) -> usize {
            self.partition.range(start.to_vec()..).take(count).count()
        }

        fn scan_all(&self) -> usize {
            self.partition.iter().count()
        }

        fn flush(&self) {
            self.keyspace
                .persist(fjall::PersistMode::SyncAll)
                .expect("persist");
            self.partition.rotate_memtable_and_wait().expect("rotate");
        }

        fn settle(&self, _limit: Duration) -> bool {
            // fjall exposes no "compaction pending" signal; it is not in the compaction study.
            true
        }

        fn compact_all(&self) {
            self.partition.major_compact().expect("major compaction");
        }

        fn counters(&self) -> Counters {
            Counters::default()
        }
    }
}

/// Bytes this process has caused to be written to storage, less the dirty bytes of files
/// deleted before write-back (`/proc/self/io`: `write_bytes - cancelled_write_bytes`).
fn os_written_bytes() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    let field = |name: &str| -> u64 {
        io.lines()
            .find_map(|line| line.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0)
    };
    field("write_bytes: ").saturating_sub(field("cancelled_write_bytes: "))
}

/// Bytes of every file under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&entry.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// User bytes of one entry: 16-byte key and 100-byte value.
const ENTRY_BYTES: u64 = 16 + 100;

/// How long background compaction may take to settle before the figure is marked.
const SETTLE_LIMIT: Duration = Duration::from_secs(900);

struct Measurement {
    workload: &'static str,
    engine: &'static str,
    ops: u64,
    elapsed: Duration,
    note: String,
}

impl Measurement {
    fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
}

fn timed(
    workload: &'static str,
    engine: &'static str,
    ops: u64,
    f: impl FnOnce() -> String,
) -> Measurement {
    let start = Instant::now();
    let note = f();
    let m = Measurement {
        workload,
        engine,
        ops,
        elapsed: start.elapsed(),
        note,
    };
    eprintln!(
        "{:>12} {:>16}: {:>12.0} ops/s  ({:.2}s) {}",
        m.workload,
        m.engine,
        m.ops_per_sec(),
        m.elapsed.as_secs_f64(),
        m.note
    );
    m
}

fn fill_random(engine: &dyn Engine, order: &[u64]) {
    for j in order {
        engine.put(&key(2 * j), &value(2 * j, 0), false);
    }
}

/// N/2 gets (or `STRATA_BENCH_READS`) of present keys drawn from `Rng(2)`; every one must be
/// found.
fn read_random(engine: &dyn Engine, name: &'static str, n: u64) -> Measurement {
    let mut rng = Rng::new(2);
    let reads = std::env::var("STRATA_BENCH_READS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(n / 2);
    let before = engine.read_counters();
    timed("readrandom", name, reads, || {
        let mut found = 0u64;
        for _ in 0..reads {
            let j = rng.below(n);
            found += u64::from(engine.get(&key(2 * j)).is_some());
        }
        assert_eq!(found, reads, "{name}: readrandom missed keys");
        engine
            .read_counters()
            .iter()
            .zip(&before)
            .map(|((counter, after, cumulative), (_, before, _))| {
                if *cumulative {
                    format!("{counter} {}", after - before)
                } else {
                    format!("{counter} {after}")
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// 10,000 scans of 100 pairs from starts drawn from `Rng(4)`.
fn seek_random(engine: &dyn Engine, name: &'static str, n: u64) -> Measurement {
    let mut rng = Rng::new(4);
    let seeks = 10_000u64;
    timed("seekrandom", name, seeks, || {
        let mut read = 0;
        for _ in 0..seeks {
            let j = rng.below(n);
            read += engine.seek(&key(2 * j), 100);
        }
        format!("{read} pairs read")
    })
}

fn fresh_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(std::env::var("STRATA_BENCH_DIR").unwrap_or_else(|_| "target".into()))
        .expect("tempdir")
}

fn run_engine(kind: Kind, n: u64, only: &dyn Fn(&str) -> bool, order: &[u64]) -> Vec<Measurement> {
    let name = kind.name();
    let mut results = Vec::new();
    if only("fillseq") {
        let dir = fresh_dir();
        let engine = open(kind, dir.path(), MEMTABLE_BYTES);
        results.push(timed("fillseq", name, n, || {
            for j in 0..n {
                engine.put(&key(2 * j), &value(2 * j, 0), false);
            }
            String::new()
        }));
    }
    if only("fillsync8") {
        let dir = fresh_dir();
        let engine: Arc<dyn Engine> = Arc::from(open(kind, dir.path(), MEMTABLE_BYTES));
        let total = (n / 20).max(8_000);
        results.push(timed("fillsync8", name, total, || {
            std::thread::scope(|scope| {
                for t in 0..8u64 {
                    let engine = Arc::clone(&engine);
                    scope.spawn(move || {
                        for i in (t..total).step_by(8) {
                            let j = order[i as usize % order.len()];
                            engine.put(&key(2 * j), &value(2 * j, 0), true);
                        }
                    });
                }
            });
            "8 writers, sync=true".into()
        }));
    }
    let reads = [
        "fillrandom",
        "readrandom",
        "readmissing",
        "seekrandom",
        "scanall",
    ];
    if reads.iter().any(|w| only(w)) {
        // `STRATA_BENCH_KEEP`: the filled database stays in `<dir>/<engine>-<n>`, and a later
        // run with the same settings reads it instead of filling again (no fillrandom row).
        let kept = std::env::var_os("STRATA_BENCH_KEEP")
            .map(|d| Path::new(&d).join(format!("{}-{n}", name.replace([' ', '(', ')'], ""))));
        let filled_mark = kept.as_ref().map(|d| d.join("FILLED"));
        let refill = filled_mark.as_ref().is_none_or(|m| !m.exists());
        let temp = kept.is_none().then(fresh_dir);
        let path = kept
            .clone()
            .unwrap_or_else(|| temp.as_ref().expect("a fresh dir").path().to_path_buf());
        if refill && let Some(dir) = &kept {
            let _ = std::fs::remove_dir_all(dir);
            std::fs::create_dir_all(dir).expect("bench dir");
        }
        let engine = open(kind, &path, MEMTABLE_BYTES);
        if refill {
            results.push(timed("fillrandom", name, n, || {
                fill_random(engine.as_ref(), order);
                String::new()
            }));
            engine.flush();
            if let Some(mark) = &filled_mark {
                // Compactions left behind by the fill finish before the mark is written.
                engine.settle(Duration::from_secs(600));
                std::fs::write(mark, b"").expect("fill mark");
            }
        } else {
            eprintln!("  {name}: reading the database kept in {}", path.display());
        }
        if only("readrandom") {
            results.push(read_random(engine.as_ref(), name, n));
        }
        if only("readmissing") {
            let mut rng = Rng::new(3);
            results.push(timed("readmissing", name, n / 2, || {
                for _ in 0..n / 2 {
                    let j = rng.below(n);
                    assert!(engine.get(&key(2 * j + 1)).is_none());
                }
                String::new()
            }));
        }
        if only("seekrandom") {
            results.push(seek_random(engine.as_ref(), name, n));
        }
        if only("scanall") {
            results.push(timed("scanall", name, n, || {
                let count = engine.scan_all();
                assert_eq!(count as u64, n, "{name}: scanall count");
                String::new()
            }));
        }
    }
    if only("recovery") {
        let dir = fresh_dir();
        {
            let engine = open(kind, dir.path(), RECOVERY_MEMTABLE_BYTES);
            fill_random(engine.as_ref(), order);
        }
        // The reopened engine is dropped after the timing: closing it waits for the flush of
        // the replayed memtables, which is not part of recovery.
        let mut reopened = None;
        let mut m = timed("recovery", name, n, || {
            let engine = open(kind, dir.path(), RECOVERY_MEMTABLE_BYTES);
            assert!(
                engine.get(&key(0)).is_some(),
                "{name}: recovered data missing"
            );
            reopened = Some(engine);
            "reopen after N unflushed puts and one get (WAL replay)".into()
        });
        if let Some(rate) = reopened.as_ref().and_then(|e| e.replay_rows_per_sec()) {
            m.note = format!(
                "{}; WAL replay alone {rate:.0} rows/s (engine metric)",
                m.note
            );
            eprintln!("    {name} recovery: {}", m.note);
        }
        results.push(m);
        drop(reopened);
    }
    results
}

/// One row of the compaction study.
struct Overwrite {
    setup: &'static str,
    /// Overwrite puts per second (compaction running in the background).
    ops_per_sec: f64,
    /// Longest single put (includes any stall it waited out).
    max_put: Duration,
    /// Time to let compaction finish after the overwrites and a flush.
    settle: Duration,
    settled: bool,
    /// Flush + compaction bytes over the overwrites' user bytes.
    write_amp: f64,
    /// The same with the WAL bytes added.
    write_amp_wal: f64,
    /// Flush + compaction bytes since the open (fill and overwrite) over the user bytes of
    /// both: free of where the overwrite window happens to cut the compaction schedule.
    write_amp_total: f64,
    /// `/proc/self/io` bytes over the user bytes (includes the WAL and metadata).
    write_amp_os: f64,
    /// Bytes on disk over live user bytes, after settling.
    space_amp: f64,
    /// The same after a full compaction.
    space_amp_compacted: f64,
    stall: Option<Duration>,
    full_compaction: Duration,
    read_before: f64,
    read_after: f64,
    seek_before: f64,
    seek_after: f64,
}

/// The compaction set-ups of the study, in one run.
fn setups() -> Vec<(&'static str, Kind, Style)> {
    #[allow(unused_mut)]
    let mut all = vec![
        ("strata leveled", Kind::Strata, Style::Leveled),
        ("strata size-tiered", Kind::Strata, Style::Tiered),
        ("strata leveled (no DVs)", Kind::StrataNoDv, Style::Leveled),
        (
            "strata size-tiered (no DVs)",
            Kind::StrataNoDv,
            Style::Tiered,
        ),
    ];
    #[cfg(feature = "peers")]
    all.extend([
        ("rocksdb leveled", Kind::RocksDb, Style::Leveled),
        (
            "rocksdb leveled, dynamic levels",
            Kind::RocksDb,
            Style::LeveledDynamic,
        ),
        ("rocksdb universal", Kind::RocksDb, Style::Tiered),
    ]);
    all
}

fn overwrite_study(
    setup: &'static str,
    kind: Kind,
    style: Style,
    n: u64,
    order: &[u64],
    scale: u64,
) -> Overwrite {
    let dir = fresh_dir();
    let memtable_bytes = MEMTABLE_BYTES / scale as usize;
    let engine = open_styled(kind, dir.path(), memtable_bytes, style, true, scale);
    fill_random(engine.as_ref(), order);
    engine.flush();
    let settled_fill = engine.settle(SETTLE_LIMIT);
    assert!(
        settled_fill,
        "{setup}: compaction after the fill did not settle"
    );

    let counters_before = engine.counters();
    let os_before = os_written_bytes();
    let mut rng = Rng::new(5);
    let mut max_put = Duration::ZERO;
    let start = Instant::now();
    for _ in 0..n {
        let j = rng.below(n);
        let put_start = Instant::now();
        engine.put(&key(2 * j), &value(2 * j, 1), false);
        max_put = max_put.max(put_start.elapsed());
    }
    let elapsed = start.elapsed();
    let settle_start = Instant::now();
    engine.flush();
    let settled = engine.settle(SETTLE_LIMIT);
    let settle = settle_start.elapsed();
    let since_open = engine.counters();
    let delta = since_open.since(counters_before);
    let os_bytes = os_written_bytes() - os_before;
    let user_bytes = (n * ENTRY_BYTES) as f64;
    let sst_bytes = (delta.flush_bytes + delta.compaction_bytes) as f64;
    let space_amp = dir_bytes(dir.path()) as f64 / user_bytes;
    eprintln!(
        "{setup}: overwrite {:.0} ops/s, WA {:.2}, space amp {:.2}",
        n as f64 / elapsed.as_secs_f64(),
        sst_bytes / user_bytes,
        space_amp
    );

    eprint!("{}", engine.level_stats());
    let read_before = read_random(engine.as_ref(), setup, n);
    let seek_before = seek_random(engine.as_ref(), setup, n);
    let compact_start = Instant::now();
    engine.compact_all();
    let full_compaction = compact_start.elapsed();
    let space_amp_compacted = dir_bytes(dir.path()) as f64 / user_bytes;
    let read_after = read_random(engine.as_ref(), setup, n);
    let seek_after = seek_random(engine.as_ref(), setup, n);
    Overwrite {
        setup,
        ops_per_sec: n as f64 / elapsed.as_secs_f64(),
        max_put,
        settle,
        settled,
        write_amp: sst_bytes / user_bytes,
        write_amp_wal: (sst_bytes + delta.wal_bytes as f64) / user_bytes,
        write_amp_total: (since_open.flush_bytes + since_open.compaction_bytes) as f64
            / (2.0 * user_bytes),
        write_amp_os: os_bytes as f64 / user_bytes,
        space_amp,
        space_amp_compacted,
        stall: delta.stall_micros.map(Duration::from_micros),
        full_compaction,
        read_before: read_before.ops_per_sec(),
        read_after: read_after.ops_per_sec(),
        seek_before: seek_before.ops_per_sec(),
        seek_after: seek_after.ops_per_sec(),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let n: u64 = std::env::var("STRATA_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let only_list: Option<Vec<String>> = std::env::var("STRATA_BENCH_ONLY")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect());
    let only = |w: &str| only_list.as_ref().is_none_or(|l| l.iter().any(|x| x == w));
    // `STRATA_BENCH_ENGINES`: comma-separated engine names to run (default all).
    let engines: Option<Vec<String>> = std::env::var("STRATA_BENCH_ENGINES")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect());
    let order = fisher_yates(n);
    let mut all = Vec::new();
    for kind in Kind::all() {
        if engines
            .as_ref()
            .is_some_and(|e| !e.iter().any(|x| x == kind.name()))
        {
            continue;
        }
        eprintln!("== {} (N = {n})", kind.name());
        all.extend(run_engine(kind, n, &only, &order));
    }
    let scale: u64 = std::env::var("STRATA_BENCH_COMPACTION_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let mut study = Vec::new();
    if only("overwrite") {
        // `STRATA_BENCH_SETUPS`: comma-separated set-up names to run (default all).
        let wanted: Option<Vec<String>> = std::env::var("STRATA_BENCH_SETUPS")
            .ok()
            .map(|v| v.split(',').map(|s| s.trim().to_string()).collect());
        for (setup, kind, style) in setups() {
            if wanted
                .as_ref()
                .is_some_and(|w| !w.iter().any(|x| x == setup))
            {
                continue;
            }
            eprintln!("== overwrite: {setup} (N = {n})");
            study.push(overwrite_study(setup, kind, style, n, &order, scale));
        }
    }
    let mut report = kv_table(&all, n);
    if !study.is_empty() {
        report.push('\n');
        report.push_str(&study_table(&study, n, scale));
    }
    println!("\n{report}");
    write_results(&all, &study, n, &report);
}

fn kv_table(all: &[Measurement], n: u64) -> String {
    let engines: Vec<&str> = Kind::all().iter().map(|k| k.name()).collect();
    let mut workloads: Vec<&str> = Vec::new();
    for m in all {
        if !workloads.contains(&m.workload) {
            workloads.push(m.workload);
        }
    }
    let mut out =
        format!("Key-value workloads, N = {n} (ops/s; ratios are Strata / peer, same run)\n\n");
    out.push_str("| workload |");
    for e in &engines {
        out.push_str(&format!(" {e} |"));
    }
    for e in engines.iter().skip(1) {
        out.push_str(&format!(" strata/{e} |"));
    }
    out.push('\n');
    out.push_str(&format!("|---|{}\n", "---:|".repeat(engines.len() * 2 - 1)));
    for w in workloads {
        let get = |e: &str| {
            all.iter()
                .find(|m| m.workload == w && m.engine == e)
                .map(Measurement::ops_per_sec)
        };
        out.push_str(&format!("| {w} |"));
        for e in &engines {
            out.push_str(&get(e).map_or(" - |".into(), |v| format!(" {v:.0} |")));
        }
        for e in engines.iter().skip(1) {
            let ratio = get("strata").zip(get(e)).map(|(s, p)| s / p);
            out.push_str(&ratio.map_or(" - |".into(), |r| format!(" {r:.2} |")));
        }
        out.push('\n');
    }
    out
}

fn study_table(study: &[Overwrite], n: u64, scale: u64) -> String {
    let mut out = format!(
        "Overwrite with compaction running, N = {n}, memtable {} MiB, level-1 target {} MiB, \
         target file {} MiB (fresh database per set-up, loaded by fillrandom and settled \
         first; WA = flush + compaction bytes / user bytes of the overwrites; WA fill + \
         overwrite = the same since the open over the user bytes of both; space amp = \
         bytes on disk / live user bytes)\n\n\
         | set-up | overwrite (ops/s) | longest put (ms) | stall (s) | settle (s) | WA | \
         WA fill + overwrite | WA incl. WAL | WA (OS) | space amp | space amp after full compaction | full compaction (s) | \
         readrandom before (ops/s) | readrandom after | seekrandom before (ops/s) | seekrandom after |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        (MEMTABLE_BYTES as u64 / scale) >> 20,
        (LEVEL_BASE_BYTES / scale) >> 20,
        (TARGET_FILE_BYTES / scale) >> 20,
    );
    for r in study {
        out.push_str(&format!(
            "| {} | {:.0} | {:.1} | {} | {:.1}{} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | \
             {:.1} | \
             {:.0} | {:.0} | {:.0} | {:.0} |\n",
            r.setup,
            r.ops_per_sec,
            r.max_put.as_secs_f64() * 1e3,
            r.stall
                .map_or("n/a".into(), |s| format!("{:.2}", s.as_secs_f64())),
            r.settle.as_secs_f64(),
            if r.settled { "" } else { " (timed out)" },
            r.write_amp,
            r.write_amp_total,
            r.write_amp_wal,
            r.write_amp_os,
            r.space_amp,
            r.space_amp_compacted,
            r.full_compaction.as_secs_f64(),
            r.read_before,
            r.read_after,
            r.seek_before,
            r.seek_after,
        ));
    }
    out
}

fn write_results(all: &[Measurement], study: &[Overwrite], n: u64, report: &str) {
    let rows: Vec<serde_json::Value> = all
        .iter()
        .map(|m| {
            serde_json::json!({
                "workload": m.workload,
                "engine": m.engine,
                "ops": m.ops,
                "seconds": m.elapsed.as_secs_f64(),
                "ops_per_sec": m.ops_per_sec(),
                "note": m.note,
            })
        })
        .collect();
    let overwrite: Vec<serde_json::Value> = study
        .iter()
        .map(|r| {
            serde_json::json!({
                "setup": r.setup,
                "ops_per_sec": r.ops_per_sec,
                "longest_put_ms": r.max_put.as_secs_f64() * 1e3,
                "stall_seconds": r.stall.map(|s| s.as_secs_f64()),
                "settle_seconds": r.settle.as_secs_f64(),
                "settled": r.settled,
                "write_amplification": r.write_amp,
                "write_amplification_with_wal": r.write_amp_wal,
                "write_amplification_fill_and_overwrite": r.write_amp_total,
                "write_amplification_os": r.write_amp_os,
                "space_amplification": r.space_amp,
                "space_amplification_after_full_compaction": r.space_amp_compacted,
                "full_compaction_seconds": r.full_compaction.as_secs_f64(),
                "readrandom_before": r.read_before,
                "readrandom_after": r.read_after,
                "seekrandom_before": r.seek_before,
                "seekrandom_after": r.seek_after,
            })
        })
        .collect();
    let out = serde_json::json!({ "n": n, "results": rows, "overwrite": overwrite });
    let dir = std::env::var_os("STRATA_BENCH_RESULTS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/results"),
        std::path::PathBuf::from,
    );
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(
            dir.join("kv.json"),
            serde_json::to_string_pretty(&out).unwrap_or_default(),
        );
        let _ = std::fs::write(dir.join("kv.md"), report);
        eprintln!("wrote {}", dir.join("kv.md").display());
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn generators_follow_the_specification() {
        assert_eq!(&super::key(42), b"0000000000000042");
        let v = super::value(7, 0);
        assert_eq!(v[..50], v[50..]);
    }
}
