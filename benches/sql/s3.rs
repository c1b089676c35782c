//! The object-storage mode of the SQL benchmark (`STRATA_BENCH_S3=1`; only this mode runs):
//! the same data on local disk and on an S3 protocol server on loopback (`moto`, started as
//! the engine's tests start it, `scripts/s3-test-server.sh`), timed cold and warm, with the
//! GET requests and bytes each run fetched (the database's `object_gets` and
//! `object_get_bytes` counters, one statement at a time).
//!
//! * Q1-Q8 on table (a) (bulk-loaded, fully compacted): on local disk (median of
//!   `STRATA_BENCH_REPEATS` after a warm-up); on S3 **cold** (database reopened, its disk
//!   cache deleted: nothing of it in memory or on local disk), **disk** (reopened with the
//!   disk cache kept: memory caches empty), **warm** (the same open again: memory and disk).
//!   Cold and disk runs are one statement per reopen, `STRATA_BENCH_S3_COLD_RUNS` of them
//!   (default 3), median. Answers of S3 are checked against those of the local copy.
//! * `readrandom`: `STRATA_BENCH_S3_KV_N` keys (default 1,000,000; 16-byte decimal keys,
//!   100-byte values as in `benches/kv.rs`) written in random order, flushed and compacted;
//!   then N/2 point lookups of random existing keys, ops/s, local and S3 cold, disk, warm as
//!   above (one round each).
//! * The WAL question, per group-commit window of 4 KiB, 64 KiB and 1 MiB of WAL bytes: what
//!   the local WAL pays to make a window durable (append the bytes to a file in the local WAL
//!   directory, then `fdatasync`, as `SyncMode::Always` does) against what a WAL on the object
//!   store would pay (one conditional PUT, `If-None-Match: *`, of a new object holding the
//!   window, through the engine's own `Storage`: the same HTTP client, retries and I/O
//!   runtime as its commits). Median and p99 of `STRATA_BENCH_S3_WAL_SAMPLES` (default 200)
//!   of each, and the single writer's ceiling they imply: commits/s = 1 / median, and
//!   bytes/s. Also one `put` through the engine with `SyncMode::Always`, for reference.
//!
//! The store: `moto` on loopback, started here, unless `STRATA_BENCH_STORE_URL` names another
//! (`s3://bucket/prefix`, `gs://...`, `az://...`; settings and credentials from the usual
//! `AWS_*`, `GOOGLE_*`, `AZURE_*` variables, as for any database URL): then everything runs
//! under a fresh prefix below it, deleted at the end. moto is a Python server on the same
//! machine: its per-request latency and throughput are far from S3's (no network, no
//! replication before the answer), so its figures compare the engine's request counts and
//! the cost of its caches on one machine; the request and byte counts are what carries over,
//! and a real store's latencies are measured by pointing `STRATA_BENCH_STORE_URL` at it.
//! Writes `target/bench-results/sql-s3.md`.

use std::io::Write as _;
use std::path::PathBuf;

use strata_engine::SyncMode;
use strata_engine::storage::{PutCondition, PutOutcome, Storage};

use super::*;

#[path = "../../crates/strata-engine/tests/s3_server/mod.rs"]
mod s3_server;

/// The GET requests and bytes a closure caused (the database's counters around it).
#[derive(Debug, Clone, Copy, Default)]
struct Fetched {
    gets: u64,
    bytes: u64,
}

fn fetched_by<T>(db: &Db, f: impl FnOnce() -> T) -> (T, Fetched) {
    let before = (metric(db, "object_gets"), metric(db, "object_get_bytes"));
    let out = f();
    let fetched = Fetched {
        gets: metric(db, "object_gets") - before.0,
        bytes: metric(db, "object_get_bytes") - before.1,
    };
    (out, fetched)
}

fn mb_of(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// A database on S3 (its local WAL and disk cache under `local`) and how to reopen it.
struct Remote {
    url: String,
    local: PathBuf,
    options: Options,
}

impl Remote {
    fn options(&self) -> Options {
        Options {
            local_wal_dir: Some(self.local.clone()),
            ..self.options.clone()
        }
    }

    fn cache_dir(&self) -> PathBuf {
        self.local.join("cache")
    }

    fn open_session(&self, drop_disk_cache: bool) -> BoxResult<strata_datafusion::StrataSession> {
        if drop_disk_cache {
            let dir = self.cache_dir();
            if dir.exists() {
                std::fs::remove_dir_all(&dir)?;
            }
        }
        Ok(strata_datafusion::open(
            PathBuf::from(&self.url),
            self.options(),
        )?)
    }
}

/// Where the databases of the run live: buckets on the loopback moto server, or prefixes
/// under `STRATA_BENCH_STORE_URL`.
enum Target {
    Moto { endpoint: &'static str },
    External { run: String },
}

impl Target {
    fn from_env() -> BoxResult<Self> {
        match std::env::var("STRATA_BENCH_STORE_URL") {
            Ok(url) if !url.trim().is_empty() => {
                let base = strata_engine::storage::StoreUrl::parse(url.trim())?;
                let stamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_secs();
                Ok(Target::External {
                    run: format!(
                        "{}/strata-bench-{stamp}-{}",
                        base.display(),
                        std::process::id()
                    ),
                })
            }
            _ => Ok(Target::Moto {
                endpoint: s3_server::server(),
            }),
        }
    }

    /// The URL of a fresh location named `name`.
    fn location(&self, name: &str) -> String {
        match self {
            Target::Moto { .. } => format!("s3://{}/{name}", s3_server::bucket(name)),
            Target::External { run } => format!("{run}/{name}"),
        }
    }

    fn describe(&self) -> String {
        match self {
            Target::Moto { endpoint } => format!("moto on loopback, {endpoint}"),
            Target::External { run } => format!("{run}, from STRATA_BENCH_STORE_URL"),
        }
    }

    /// Deletes what the run wrote to an external store (moto's buckets go with the server).
    fn clean_up(&self) -> BoxResult<()> {
        if let Target::External { run } = self {
            let storage = Storage::open_url(run, None)?;
            for object in storage.list("")? {
                storage.delete(&object)?;
            }
        }
        Ok(())
    }
}

/// One query's figures on S3: (time, fetched) of the cold, disk and warm runs.
struct S3Query {
    name: &'static str,
    local: Duration,
    cold: (Duration, Fetched),
    disk: (Duration, Fetched),
    warm: (Duration, Fetched),
}

fn median_run(mut runs: Vec<(Duration, Fetched)>) -> (Duration, Fetched) {
    runs.sort_by_key(|r| r.0);
    runs[runs.len() / 2]
}

/// Runs the S3 mode; true when every answer checked out.
pub fn run_s3(
    rows: u64,
    repeats: usize,
    only: &Option<Vec<String>>,
    base: &str,
) -> BoxResult<bool> {
    let target = Target::from_env()?;
    let cold_runs = env_u64("STRATA_BENCH_S3_COLD_RUNS", 3)?.max(1) as usize;
    let kv_n = env_u64("STRATA_BENCH_S3_KV_N", 1_000_000)?;
    let dir = tempfile::tempdir_in(base)?;
    let mut ok = true;
    let mut log = String::new();
    macro_rules! say {
        ($($arg:tt)*) => {{
            let line = format!($($arg)*);
            println!("{line}");
            log.push_str(&line);
            log.push('\n');
        }};
    }
    say!(
        "# SQL and readrandom on object storage ({})\n",
        target.describe()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let schema = events_schema();
    let batches = generate(&schema, rows)?;
    let params = Params::scaled(rows);
    let options = sst_layout(Options::default());

    // The same table (a) on local disk and on S3.
    let local = strata_datafusion::open(dir.path().join("local"), options.clone())?;
    let t = Instant::now();
    let table = build_a(local.db(), &schema, &batches)?;
    say!(
        "local (a) built in {:.1} s: {}",
        t.elapsed().as_secs_f64(),
        describe(&table)
    );
    drop(table);
    let remote = Remote {
        url: target.location("bench"),
        local: dir.path().join("s3-local"),
        options: options.clone(),
    };
    {
        let session = remote.open_session(true)?;
        let t = Instant::now();
        let table = build_a(session.db(), &schema, &batches)?;
        say!(
            "S3 (a) built in {:.1} s: {}",
            t.elapsed().as_secs_f64(),
            describe(&table)
        );
        drop(table);
        session.close()?;
    }
    drop(batches);

    let mut figures = Vec::new();
    for (name, sql) in params.queries("events_a") {
        if only.as_ref().is_some_and(|o| !o.iter().any(|q| q == name)) {
            continue;
        }
        // Local: warm-up, then the median of `repeats`.
        let (_, expected) = rt.block_on(run_sql(&local, &sql))?;
        let expected = rows_of(&expected)?;
        let mut times = Vec::new();
        for _ in 0..repeats {
            times.push(rt.block_on(run_sql(&local, &sql))?.0);
        }
        let local_time = median(times);
        let mut check = |what: &str, batches: &[RecordBatch]| -> BoxResult<()> {
            if !same_rows(&rows_of(batches)?, &expected) {
                say!("**{name} {what}: the answer on S3 differs from the local one**");
                ok = false;
            }
            Ok(())
        };
        // Cold: a reopen with no disk cache, one statement.
        let mut cold = Vec::new();
        for _ in 0..cold_runs {
            let session = remote.open_session(true)?;
            let (result, f) = fetched_by(session.db(), || rt.block_on(run_sql(&session, &sql)));
            let (time, batches) = result?;
            check("cold", &batches)?;
            cold.push((time, f));
            session.close()?;
        }
        // Disk: a reopen keeping the disk cache the cold runs filled.
        let mut disk = Vec::new();
        let mut warm = Vec::new();
        for run in 0..cold_runs {
            let session = remote.open_session(false)?;
            let (result, f) = fetched_by(session.db(), || rt.block_on(run_sql(&session, &sql)));
            let (time, batches) = result?;
            check("disk", &batches)?;
            disk.push((time, f));
            if run + 1 == cold_runs {
                // Warm: the same open, memory caches filled too.
                for _ in 0..repeats {
                    let (result, f) =
                        fetched_by(session.db(), || rt.block_on(run_sql(&session, &sql)));
                    let (time, batches) = result?;
                    check("warm", &batches)?;
                    warm.push((time, f));
                }
            }
            session.close()?;
        }
        let q = S3Query {
            name,
            local: local_time,
            cold: median_run(cold),
            disk: median_run(disk),
            warm: median_run(warm),
        };
        println!(
            "{name}: local {:.1} ms, S3 cold {:.1} ms ({} GETs, {:.2} MB), disk {:.1} ms ({} GETs), warm {:.1} ms ({} GETs)",
            ms(q.local),
            ms(q.cold.0),
            q.cold.1.gets,
            mb_of(q.cold.1.bytes),
            ms(q.disk.0),
            q.disk.1.gets,
            ms(q.warm.0),
            q.warm.1.gets
        );
        figures.push(q);
    }
    say!(
        "\n## Q1-Q8, table (a), {rows} rows\n\n\
         Median ms; GETs and MB fetched by the statement (cold and disk: one statement per \
         reopen, median of {cold_runs}; warm: median of {repeats} in the same open).\n\n\
         | query | local disk (ms) | S3 cold (ms) | cold GETs | cold MB | S3 disk cache (ms) | disk GETs | S3 warm (ms) | warm GETs |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for q in &figures {
        say!(
            "| {} | {:.1} | {:.1} | {} | {:.2} | {:.1} | {} | {:.1} | {} |",
            q.name,
            ms(q.local),
            ms(q.cold.0),
            q.cold.1.gets,
            mb_of(q.cold.1.bytes),
            ms(q.disk.0),
            q.disk.1.gets,
            ms(q.warm.0),
            q.warm.1.gets
        );
    }
    drop(local);

    if kv_n > 0 {
        ok &= readrandom(kv_n, &target, dir.path(), &options, &mut log)?;
    }
    wal_latency(&target, dir.path(), &mut log)?;
    target.clean_up()?;

    let out_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-results");
    std::fs::create_dir_all(&out_dir)?;
    std::fs::write(out_dir.join("sql-s3.md"), &log)?;
    println!("wrote {}", out_dir.join("sql-s3.md").display());
    Ok(ok)
}

// ---- readrandom ------------------------------------------------------------------------

fn kv_key(k: u64) -> Vec<u8> {
    format!("{k:016}").into_bytes()
}

fn kv_value(k: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(100);
    let mut x = k;
    while out.len() < 100 {
        x = splitmix64(x);
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(100);
    out
}

/// Writes keys `0..n` in a random order in batches, flushes, compacts.
fn fill(db: &Db, n: u64) -> BoxResult<()> {
    let kv = db.kv("kv")?;
    let mut order: Vec<u64> = (0..n).collect();
    for i in (1..order.len()).rev() {
        let j = (splitmix64(i as u64) % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    for chunk in order.chunks(10_000) {
        let mut batch = strata_engine::WriteBatch::new();
        for &k in chunk {
            batch.put(kv_key(k), kv_value(k));
        }
        kv.write(&batch)?;
    }
    db.flush()?;
    kv.table().compact()?;
    Ok(())
}

/// N/2 lookups of random existing keys: (ops/s, fetched).
fn lookups(db: &Db, n: u64, seed: u64) -> BoxResult<(f64, Fetched)> {
    let kv = db.kv("kv")?;
    let count = n / 2;
    let (result, fetched) = fetched_by(db, || -> BoxResult<Duration> {
        let start = Instant::now();
        for i in 0..count {
            let k = splitmix64(seed ^ i) % n;
            let got = kv.get(kv_key(k))?;
            if got.as_deref() != Some(&kv_value(k)[..]) {
                return Err(format!("readrandom: wrong value for key {k}").into());
            }
        }
        Ok(start.elapsed())
    });
    let elapsed = result?;
    Ok((count as f64 / elapsed.as_secs_f64(), fetched))
}

fn readrandom(
    n: u64,
    target: &Target,
    dir: &Path,
    options: &Options,
    log: &mut String,
) -> BoxResult<bool> {
    let local_dir = dir.join("kv-local");
    let db = Db::open(&local_dir, options.clone())?;
    let t = Instant::now();
    fill(&db, n)?;
    let built_local = t.elapsed();
    lookups(&db, n, 1)?; // warm-up
    let (local_ops, _) = lookups(&db, n, 2)?;
    let local_bytes = db.kv("kv")?.table().stats().sst_bytes;
    db.close()?;
    let remote = Remote {
        url: target.location("kv"),
        local: dir.join("kv-s3-local"),
        options: options.clone(),
    };
    let db = Db::open(&remote.url, remote.options())?;
    let t = Instant::now();
    fill(&db, n)?;
    let built_s3 = t.elapsed();
    db.close()?;
    // Cold: nothing on local disk; disk: reopened with the disk cache; warm: same open.
    let open = |drop_cache: bool| -> BoxResult<Db> {
        if drop_cache && remote.cache_dir().exists() {
            std::fs::remove_dir_all(remote.cache_dir())?;
        }
        Ok(Db::open(&remote.url, remote.options())?)
    };
    let db = open(true)?;
    let cold = lookups(&db, n, 3)?;
    db.close()?;
    let db = open(false)?;
    let disk = lookups(&db, n, 4)?;
    let warm = lookups(&db, n, 5)?;
    let cache_bytes = metric(&db, "disk_cache_bytes");
    db.close()?;
    let line = |what: &str, (ops, f): (f64, Fetched)| {
        format!("| {what} | {ops:.0} | {} | {:.2} |", f.gets, mb_of(f.bytes))
    };
    let text = format!(
        "\n## readrandom, {n} keys ({:.1} MB of SSTs; filled in {:.1} s locally, {:.1} s on S3)\n\n\
         {} lookups of random existing keys per row; GETs and MB fetched by them. Disk cache \
         after the runs: {:.1} MB.\n\n\
         | where | ops/s | GETs | MB fetched |\n|---|---:|---:|---:|\n\
         | local disk | {local_ops:.0} | 0 | 0 |\n{}\n{}\n{}",
        mb_of(local_bytes),
        built_local.as_secs_f64(),
        built_s3.as_secs_f64(),
        n / 2,
        mb_of(cache_bytes),
        line("S3 cold (no disk cache)", cold),
        line("S3 disk cache (reopened)", disk),
        line("S3 warm (same open)", warm),
    );
    println!("{text}");
    log.push_str(&text);
    log.push('\n');
    Ok(true)
}

// ---- the WAL question ------------------------------------------------------------------

/// The group-commit windows compared, in bytes of WAL records made durable at once.
const WAL_WINDOWS: [usize; 3] = [4 << 10, 64 << 10, 1 << 20];

/// Latencies of one way of making a window durable.
struct Durability {
    median: Duration,
    p99: Duration,
}

impl Durability {
    fn of(samples: Vec<Duration>) -> Self {
        Durability {
            p99: percentile(samples.clone(), 99),
            median: median(samples),
        }
    }

    /// `| median | p99 | commits/s | MB/s |` cells for a window of `bytes`.
    fn cells(&self, bytes: usize) -> String {
        let seconds = self.median.as_secs_f64();
        format!(
            "{:.3} | {:.3} | {:.0} | {:.1}",
            ms(self.median),
            ms(self.p99),
            1.0 / seconds,
            bytes as f64 / seconds / 1e6
        )
    }
}

fn window_label(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes >> 10)
    }
}

/// Appends `window` to a file in `wal_dir` and `fdatasync`s it, `samples` times (after three
/// unmeasured appends): the local WAL's cost of a durable window.
fn local_windows(wal_dir: &Path, window: &bytes::Bytes, samples: usize) -> BoxResult<Durability> {
    std::fs::create_dir_all(wal_dir)?;
    let path = wal_dir.join(format!("window-{}.log", window.len()));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    let mut times = Vec::with_capacity(samples);
    for i in 0..samples + 3 {
        let start = Instant::now();
        file.write_all(window)?;
        file.sync_data()?;
        if i >= 3 {
            times.push(start.elapsed());
        }
    }
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(Durability::of(times))
}

/// One create-if-absent PUT of a new object holding `window`, `samples` times (after three
/// unmeasured ones), through the engine's storage: an object-store WAL's cost of a durable
/// window. The objects are deleted after.
fn remote_windows(
    storage: &Storage,
    window: &bytes::Bytes,
    samples: usize,
) -> BoxResult<Durability> {
    let mut times = Vec::with_capacity(samples);
    let mut written = Vec::with_capacity(samples + 3);
    for i in 0..samples + 3 {
        let name = format!("wal-{}/{i:06}.log", window.len());
        let start = Instant::now();
        let outcome = storage.put_if(&name, window.clone(), PutCondition::Create)?;
        let elapsed = start.elapsed();
        if let PutOutcome::Conflict = outcome {
            return Err(format!("WAL window object {name} already existed").into());
        }
        if i >= 3 {
            times.push(elapsed);
        }
        written.push(name);
    }
    for name in written {
        storage.delete(&name)?;
    }
    Ok(Durability::of(times))
}

fn wal_latency(target: &Target, dir: &Path, log: &mut String) -> BoxResult<()> {
    let samples = env_u64("STRATA_BENCH_S3_WAL_SAMPLES", 200)?.max(1) as usize;
    // For reference: one put through the engine, acknowledged after the WAL's fdatasync.
    const WRITES: usize = 200;
    let db = Db::open(
        dir.join("wal-local"),
        Options {
            sync_mode: SyncMode::Always,
            ..Options::default()
        },
    )?;
    let kv = db.kv("kv")?;
    let mut engine = Vec::with_capacity(WRITES);
    for i in 0..WRITES as u64 {
        let start = Instant::now();
        kv.put(kv_key(i), kv_value(i))?;
        engine.push(start.elapsed());
    }
    drop(kv);
    db.close()?;
    let engine = Durability::of(engine);

    let storage = Storage::open_url(&target.location("wal"), None)?;
    let wal_dir = dir.join("wal-windows");
    let mut rows = Vec::new();
    for &bytes in &WAL_WINDOWS {
        let window = bytes::Bytes::from(
            (0..bytes)
                .map(|i| (splitmix64(i as u64) & 0xff) as u8)
                .collect::<Vec<u8>>(),
        );
        let local = local_windows(&wal_dir, &window, samples)?;
        let remote = remote_windows(&storage, &window, samples)?;
        println!(
            "WAL window {}: local append + fdatasync {:.3} ms median, PUT {:.3} ms median",
            window_label(bytes),
            ms(local.median),
            ms(remote.median)
        );
        rows.push(format!(
            "| {} | {} | {} |",
            window_label(bytes),
            local.cells(bytes),
            remote.cells(bytes)
        ));
    }
    let text = format!(
        "\n## The WAL: a durable group-commit window on the local disk against one PUT\n\n\
         Per window of WAL bytes, {samples} samples: the local WAL (append to a file in the \
         local WAL directory, then fdatasync) against an object-store WAL (one PUT with \
         `If-None-Match: *` of a new object holding the window, through the engine's storage). \
         commits/s = 1 / median: the ceiling of one writer waiting for each window; MB/s = \
         window / median.\n\n\
         | window | local median (ms) | local p99 (ms) | local commits/s | local MB/s \
         | PUT median (ms) | PUT p99 (ms) | PUT commits/s | PUT MB/s |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n{}\n\n\
         For reference, one `put` of a 16-byte key and 100-byte value through the engine with \
         `SyncMode::Always` (a WAL append and fdatasync per write): {:.3} ms median, {:.3} ms \
         p99 ({WRITES} writes).",
        rows.join("\n"),
        ms(engine.median),
        ms(engine.p99),
    );
    println!("{text}");
    log.push_str(&text);
    log.push('\n');
    Ok(())
}

/// The `p`-th percentile (nearest rank) of `values`.
fn percentile(mut values: Vec<Duration>, p: usize) -> Duration {
    debug_assert!(!values.is_empty() && p <= 100);
    values.sort();
    let rank = (values.len() * p).div_ceil(100).max(1);
    values[rank - 1]
}
