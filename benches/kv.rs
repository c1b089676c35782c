//! Key-value engine benchmark (db_bench style), the workloads of `shared/BENCHMARKS.md`:
//! fillseq, fillrandom, fillrandom with `sync = true` and 8 writers, readrandom, readmissing,
//! seekrandom, scanall, overwrite and recovery, on Strata and (with `--features peers`) on
//! RocksDB and fjall in the same process, so ratios come from one run.
//!
//! ```text
//! cargo bench --bench kv                          # Strata only, N = 1,000,000
//! cargo bench --bench kv --features peers         # with RocksDB and fjall
//! STRATA_BENCH_N=200000 STRATA_BENCH_ONLY=fillrandom,readrandom cargo bench --bench kv
//! ```
//!
//! Prints a markdown table and writes `target/bench-results/kv.json`. Data follow the
//! generators of BENCHMARKS.md exactly (16-byte decimal keys, 100-byte values).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(GOLDEN);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

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
    /// Writes memtables out and waits for background work to settle.
    fn flush(&self);
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Strata,
    #[cfg(feature = "peers")]
    RocksDb,
    #[cfg(feature = "peers")]
    Fjall,
}

impl Kind {
    fn all() -> Vec<Kind> {
        #[allow(unused_mut)]
        let mut kinds = vec![Kind::Strata];
        #[cfg(feature = "peers")]
        kinds.extend([Kind::RocksDb, Kind::Fjall]);
        kinds
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Strata => "strata",
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

fn open(kind: Kind, dir: &Path, memtable_bytes: usize) -> Box<dyn Engine> {
    match kind {
        Kind::Strata => Box::new(strata::Strata::open(dir, memtable_bytes)),
        #[cfg(feature = "peers")]
        Kind::RocksDb => Box::new(peers::Rocks::open(dir, memtable_bytes)),
        #[cfg(feature = "peers")]
        Kind::Fjall => Box::new(peers::Fjall::open(dir, memtable_bytes)),
    }
}

mod strata {
    use super::*;
    use strata_engine::{Db, KvStore, Options, SyncMode, TableOptions, WriteBatch, WriteOptions};

    pub struct Strata {
        db: Db,
        kv: KvStore,
    }

    impl Strata {
        pub fn open(dir: &Path, memtable_bytes: usize) -> Self {
            let options = Options {
                sync_mode: SyncMode::Never,
                block_cache_bytes: CACHE_BYTES,
                write_buffer_budget_bytes: (memtable_bytes * 4).max(512 << 20),
                table_defaults: TableOptions {
                    memtable_size_bytes: memtable_bytes,
                    ..TableOptions::default()
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
    }
}

#[cfg(feature = "peers")]
mod peers {
    use super::*;

    pub struct Rocks {
        db: rocksdb::DB,
    }

    impl Rocks {
        pub fn open(dir: &Path, memtable_bytes: usize) -> Self {
            let mut options = rocksdb::Options::default();
            options.create_if_missing(true);
            options.set_write_buffer_size(memtable_bytes);
            options.set_compression_type(rocksdb::DBCompressionType::Snappy);
            options.increase_parallelism(2);
            options.set_max_background_jobs(2);
            let mut table = rocksdb::BlockBasedOptions::default();
            table.set_block_cache(&rocksdb::Cache::new_lru_cache(CACHE_BYTES));
            table.set_bloom_filter(10.0, false);
            options.set_block_based_table_factory(&table);
            Rocks {
                db: rocksdb::DB::open(&options, dir).expect("open rocksdb"),
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
    }
}

/// Bytes this process has caused to be written to storage (`/proc/self/io`).
fn written_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|io| {
            io.lines().find_map(|line| {
                line.strip_prefix("write_bytes: ")
                    .and_then(|v| v.trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

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
        "{:>12} {:>8}: {:>12.0} ops/s  ({:.2}s) {}",
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

fn run_engine(kind: Kind, n: u64, only: &dyn Fn(&str) -> bool, order: &[u64]) -> Vec<Measurement> {
    let name = kind.name();
    let mut results = Vec::new();
    let fresh = || {
        tempfile::tempdir_in(std::env::var("STRATA_BENCH_DIR").unwrap_or_else(|_| "target".into()))
            .expect("tempdir")
    };
    if only("fillseq") {
        let dir = fresh();
        let engine = open(kind, dir.path(), MEMTABLE_BYTES);
        results.push(timed("fillseq", name, n, || {
            for j in 0..n {
                engine.put(&key(2 * j), &value(2 * j, 0), false);
            }
            String::new()
        }));
    }
    if only("fillsync8") {
        let dir = fresh();
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
        "overwrite",
    ];
    if reads.iter().any(|w| only(w)) {
        let dir = fresh();
        let engine = open(kind, dir.path(), MEMTABLE_BYTES);
        results.push(timed("fillrandom", name, n, || {
            fill_random(engine.as_ref(), order);
            String::new()
        }));
        engine.flush();
        if only("readrandom") {
            let mut rng = Rng::new(2);
            results.push(timed("readrandom", name, n / 2, || {
                let mut found = 0u64;
                for _ in 0..n / 2 {
                    let j = rng.below(n);
                    found += u64::from(engine.get(&key(2 * j)).is_some());
                }
                assert_eq!(found, n / 2, "{name}: readrandom missed keys");
                String::new()
            }));
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
            let mut rng = Rng::new(4);
            let seeks = 10_000u64;
            results.push(timed("seekrandom", name, seeks, || {
                let mut read = 0;
                for _ in 0..seeks {
                    let j = rng.below(n);
                    read += engine.seek(&key(2 * j), 100);
                }
                format!("{read} pairs read")
            }));
        }
        if only("scanall") {
            results.push(timed("scanall", name, n, || {
                let count = engine.scan_all();
                assert_eq!(count as u64, n, "{name}: scanall count");
                String::new()
            }));
        }
        if only("overwrite") {
            let mut rng = Rng::new(5);
            let before = written_bytes();
            let mut m = timed("overwrite", name, n, || {
                for _ in 0..n {
                    let j = rng.below(n);
                    engine.put(&key(2 * j), &value(2 * j, 1), false);
                }
                String::new()
            });
            engine.flush();
            let user_bytes = n * (16 + 100);
            let wa = (written_bytes() - before) as f64 / user_bytes as f64;
            m.note = format!("write amplification {wa:.2} (process write_bytes / user bytes)");
            eprintln!("    {name} overwrite: {}", m.note);
            results.push(m);
        }
    }
    if only("recovery") {
        let dir = fresh();
        {
            let engine = open(kind, dir.path(), RECOVERY_MEMTABLE_BYTES);
            fill_random(engine.as_ref(), order);
        }
        results.push(timed("recovery", name, n, || {
            let engine = open(kind, dir.path(), RECOVERY_MEMTABLE_BYTES);
            assert!(
                engine.get(&key(0)).is_some(),
                "{name}: recovered data missing"
            );
            "reopen after N unflushed puts (WAL replay)".into()
        }));
    }
    results
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
    let order = fisher_yates(n);
    let mut all = Vec::new();
    for kind in Kind::all() {
        eprintln!("== {} (N = {n})", kind.name());
        all.extend(run_engine(kind, n, &only, &order));
    }
    print_table(&all, n);
    write_json(&all, n);
}

fn print_table(all: &[Measurement], n: u64) {
    let engines: Vec<&str> = Kind::all().iter().map(|k| k.name()).collect();
    let mut workloads: Vec<&str> = Vec::new();
    for m in all {
        if !workloads.contains(&m.workload) {
            workloads.push(m.workload);
        }
    }
    println!("\nKey-value workloads, N = {n} (ops/s; ratios are Strata / peer, same run)\n");
    let mut header = String::from("| workload |");
    for e in &engines {
        header.push_str(&format!(" {e} |"));
    }
    for e in engines.iter().skip(1) {
        header.push_str(&format!(" strata/{e} |"));
    }
    println!("{header}");
    println!("|{}", "---|".repeat(engines.len() * 2));
    for w in workloads {
        let get = |e: &str| {
            all.iter()
                .find(|m| m.workload == w && m.engine == e)
                .map(Measurement::ops_per_sec)
        };
        let mut row = format!("| {w} |");
        for e in &engines {
            row.push_str(&get(e).map_or(" - |".into(), |v| format!(" {v:.0} |")));
        }
        for e in engines.iter().skip(1) {
            let ratio = get("strata").zip(get(e)).map(|(s, p)| s / p);
            row.push_str(&ratio.map_or(" - |".into(), |r| format!(" {r:.2} |")));
        }
        println!("{row}");
    }
    for m in all.iter().filter(|m| !m.note.is_empty()) {
        println!("- {} {}: {}", m.workload, m.engine, m.note);
    }
}

fn write_json(all: &[Measurement], n: u64) {
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
    let out = serde_json::json!({ "n": n, "results": rows });
    let dir = Path::new("target/bench-results");
    if std::fs::create_dir_all(dir).is_ok() {
        let _ = std::fs::write(
            dir.join("kv.json"),
            serde_json::to_string_pretty(&out).unwrap_or_default(),
        );
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
