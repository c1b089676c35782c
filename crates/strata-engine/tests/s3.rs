//! Databases on S3-compatible object storage, against a real S3 protocol server on loopback:
//! `moto` in server mode (pinned by `scripts/s3-test-server.sh`, which these tests run, so they
//! need nothing installed beyond Python 3).
//!
//! One server per test process, on a free port of 127.0.0.1, stopped when the process exits
//! (a watchdog shell kills it); each test uses a bucket of its own.
//!
//! * open, write, reopen (from another local WAL directory: the flushed data is on the store);
//! * the server enforces `If-Match` and `If-None-Match` (412), which the commits rely on;
//! * two writer processes: the first is fenced by the second's open, and the database holds
//!   exactly what was committed before and by the winner;
//! * a writer process killed with SIGKILL: every acknowledged write is there after reopen;
//! * faults injected below `object_store`'s retries (throttling, failing and slow requests):
//!   retried within bounds, clear errors, nothing acknowledged lost, nothing half-committed;
//! * the cache hierarchy: reads GET the SST bytes when cold and not when warm (memory caches
//!   gone with a reopen, the disk cache kept); a corrupt disk-cache file is detected and its
//!   bytes fetched again.

use crate::s3_server;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use s3_server::{bucket, child_env};

use bytes::Bytes;
use strata_engine::storage::{PutCondition, PutOutcome, Storage};
use strata_engine::{
    Db, Error, FaultInjector, IoOp, Options, ReadCounter, ReadStats, SyncMode, track_reads,
};

fn options(wal: &Path) -> Options {
    Options {
        local_wal_dir: Some(wal.to_path_buf()),
        sync_mode: SyncMode::Always,
        ..Options::default()
    }
}

fn key(i: u64) -> Vec<u8> {
    format!("key{i:08}").into_bytes()
}

fn value(i: u64) -> Vec<u8> {
    format!("value {i}").into_bytes()
}

/// Every key of table `kv`, in order.
fn keys_of(db: &Db) -> Vec<u64> {
    let kv = db.kv("kv").unwrap();
    kv.scan(..)
        .unwrap()
        .map(|item| {
            let (k, v) = item.unwrap();
            let i: u64 = std::str::from_utf8(&k[3..]).unwrap().parse().unwrap();
            assert_eq!(v, value(i), "value of key {i}");
            i
        })
        .collect()
}

fn put_range(db: &Db, range: std::ops::Range<u64>) {
    let kv = db.kv("kv").unwrap();
    for i in range {
        kv.put(key(i), value(i)).unwrap();
    }
}

#[test]
fn open_write_reopen_on_s3() {
    let url = format!("s3://{}/db/one", bucket("reopen"));
    let wal = tempfile::tempdir().unwrap();
    let db = Db::open(&url, options(wal.path())).unwrap();
    assert_eq!(db.path(), Path::new(&url));
    put_range(&db, 0..500);
    db.flush().unwrap();
    put_range(&db, 500..600); // only in the local WAL
    db.close().unwrap();

    // Same WAL directory: everything, the unflushed tail replayed from the WAL.
    let db = Db::open(&url, options(wal.path())).unwrap();
    assert_eq!(keys_of(&db), (0..600).collect::<Vec<_>>());
    db.flush().unwrap();
    put_range(&db, 600..610);
    db.close().unwrap();

    // Another WAL directory (another machine): what was flushed, from the store alone.
    let other = tempfile::tempdir().unwrap();
    let db = Db::open(&url, options(other.path())).unwrap();
    assert_eq!(keys_of(&db), (0..600).collect::<Vec<_>>());
    db.close().unwrap();

    // The objects are where the storage module documents them.
    let storage = Storage::open_url(&url, None).unwrap();
    let root = storage.list_root("").unwrap();
    assert!(root.contains(&"CURRENT".to_string()), "{root:?}");
    assert!(root.iter().any(|n| n.starts_with("MANIFEST-")), "{root:?}");
    let ssts = storage.list("sst").unwrap();
    assert!(ssts.iter().any(|p| p.ends_with(".parquet")), "{ssts:?}");

    // A missing database is not created when create_if_missing is off.
    let missing = format!("s3://{}/nothing", bucket("missing"));
    let err = Db::open(
        &missing,
        Options {
            create_if_missing: false,
            ..options(other.path())
        },
    )
    .unwrap_err();
    assert!(matches!(err, Error::DatabaseNotFound(_)), "{err}");
}

/// The commits rely on the server refusing a put whose `If-Match` or `If-None-Match` fails:
/// this fails if the server ignores them.
#[test]
fn the_server_enforces_conditional_puts() {
    let url = format!("s3://{}/cond", bucket("cond"));
    let storage = Storage::open_url(&url, None).unwrap();
    let first = match storage
        .put_if("CURRENT", Bytes::from("a"), PutCondition::Create)
        .unwrap()
    {
        PutOutcome::Written(version) => version,
        PutOutcome::Conflict => panic!("create of a new object refused"),
    };
    assert!(first.e_tag.is_some(), "the server returned no e-tag");
    // If-None-Match: * on an existing object.
    assert!(matches!(
        storage
            .put_if("CURRENT", Bytes::from("b"), PutCondition::Create)
            .unwrap(),
        PutOutcome::Conflict
    ));
    // If-Match with the current version succeeds...
    let second = match storage
        .put_if(
            "CURRENT",
            Bytes::from("c"),
            PutCondition::Matches(first.clone()),
        )
        .unwrap()
    {
        PutOutcome::Written(version) => version,
        PutOutcome::Conflict => panic!("If-Match with the current e-tag refused"),
    };
    // ...and with a stale one fails, leaving the object as it was.
    assert!(matches!(
        storage
            .put_if("CURRENT", Bytes::from("d"), PutCondition::Matches(first))
            .unwrap(),
        PutOutcome::Conflict
    ));
    let (bytes, now) = storage.get("CURRENT").unwrap().unwrap();
    assert_eq!(&bytes[..], b"c");
    assert_eq!(now.e_tag, second.e_tag);
}

// ---- child processes ----------------------------------------------------------------------

const CHILD_ENV: &str = "STRATA_S3_CHILD";
/// Starts each line a child reports (libtest prints lines of its own around them).
const MARK: &str = "s3-child: ";

/// Runs this test binary again as a child doing `role` on `url` with local WAL dir `wal`.
fn spawn_child(role: &str, url: &str, wal: &Path) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "s3::child_process",
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_ENV, format!("{role}\x1f{url}\x1f{}", wal.display()))
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    child_env(&mut cmd);
    cmd.spawn().unwrap()
}

/// The child side: does nothing unless run by [`spawn_child`].
#[test]
fn child_process() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let parts: Vec<&str> = spec.split('\x1f').collect();
    let (role, url, wal) = (parts[0], parts[1], PathBuf::from(parts[2]));
    let out = std::io::stdout();
    let say = |line: String| {
        let mut out = out.lock();
        if let Err(e) = writeln!(out, "{MARK}{line}").and_then(|()| out.flush()) {
            panic!("writing {line:?} to stdout: {e}");
        }
    };
    match role {
        // Commits keys 0..100, then waits for a line on stdin, then tries to commit 100..200.
        "first" => {
            let db = Db::open(url, options(&wal)).unwrap();
            put_range(&db, 0..100);
            db.flush().unwrap();
            say("committed".into());
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).unwrap();
            let kv = db.kv("kv").unwrap();
            let mut outcome = Ok(());
            for i in 100..200 {
                if let Err(e) = kv.put(key(i), value(i)) {
                    outcome = Err(e);
                    break;
                }
            }
            if outcome.is_ok() {
                outcome = db.flush();
            }
            match outcome {
                Ok(()) => say("result: committed".into()),
                Err(e) => say(format!("result: {e}")),
            }
            let _ = db.close();
        }
        // Opens (fencing the first), commits 1000..1100, closes.
        "second" => {
            let db = Db::open(url, options(&wal)).unwrap();
            put_range(&db, 1000..1100);
            db.flush().unwrap();
            db.close().unwrap();
            say("done".into());
        }
        // Writes forever, flushing now and then, reporting each acknowledged key.
        "writer" => {
            let db = Db::open(url, options(&wal)).unwrap();
            let kv = db.kv("kv").unwrap();
            let start: u64 = std::fs::read_to_string(wal.join("next"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0);
            for i in start.. {
                kv.put(key(i), value(i)).unwrap();
                say(format!("acked {i}"));
                if i % 150 == 149 {
                    db.flush().unwrap();
                }
            }
        }
        other => panic!("unknown child role {other}"),
    }
    std::process::exit(0);
}

/// The next line the child reported; empty at the end of its output.
fn read_line(reader: &mut impl BufRead) -> String {
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            return String::new();
        }
        if let Some(at) = line.find(MARK) {
            return line[at + MARK.len()..].trim_end().to_string();
        }
    }
}

#[test]
fn a_second_writer_fences_the_first() {
    let url = format!("s3://{}/fenced", bucket("fence"));
    let (wal_a, wal_b, wal_c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let mut first = spawn_child("first", &url, wal_a.path());
    let mut first_out = BufReader::new(first.stdout.take().unwrap());
    assert_eq!(read_line(&mut first_out), "committed");

    let mut second = spawn_child("second", &url, wal_b.path());
    let mut second_out = BufReader::new(second.stdout.take().unwrap());
    assert_eq!(read_line(&mut second_out), "done");
    assert!(second.wait().unwrap().success());

    // The first writer goes on: its next commit is refused.
    writeln!(first.stdin.take().unwrap()).unwrap();
    let result = read_line(&mut first_out);
    assert!(
        result.starts_with("result: ") && result.contains("fenced"),
        "the first writer was not fenced: {result}"
    );
    first.wait().unwrap();

    // Exactly the first writer's commit before the second opened, and the second's.
    let db = Db::open(&url, options(wal_c.path())).unwrap();
    let expected: Vec<u64> = (0..100).chain(1000..1100).collect();
    assert_eq!(keys_of(&db), expected);
    db.close().unwrap();
}

#[test]
fn a_killed_writer_loses_no_acknowledged_write() {
    let url = format!("s3://{}/crash", bucket("crash"));
    let wal = tempfile::tempdir().unwrap();
    let mut acked_total = 0u64;
    for cycle in 0..2 {
        std::fs::write(wal.path().join("next"), acked_total.to_string()).unwrap();
        let mut child = spawn_child("writer", &url, wal.path());
        let mut out = BufReader::new(child.stdout.take().unwrap());
        // Kill it at a point that moves with the cycle: mid-way between flushes.
        let stop_after = acked_total + 200 + 70 * cycle;
        let mut last = None;
        while last.is_none_or(|l| l < stop_after) {
            let line = read_line(&mut out);
            let n: u64 = line
                .strip_prefix("acked ")
                .unwrap_or_else(|| panic!("child said {line:?}"))
                .parse()
                .unwrap();
            last = Some(n);
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Acknowledgements printed after the last one read are acknowledged too: drain them.
        loop {
            let line = read_line(&mut out);
            if line.is_empty() {
                break;
            }
            if let Some(n) = line.strip_prefix("acked ").and_then(|n| n.parse().ok()) {
                last = Some(n);
            }
        }
        acked_total = last.unwrap() + 1;
        let db = Db::open(&url, options(wal.path())).unwrap();
        let keys = keys_of(&db);
        // Every acknowledged key; at most one more (written, not yet reported).
        assert!(
            keys.len() as u64 == acked_total || keys.len() as u64 == acked_total + 1,
            "cycle {cycle}: {} keys after {acked_total} acknowledged",
            keys.len()
        );
        assert_eq!(
            keys[..acked_total as usize],
            (0..acked_total).collect::<Vec<_>>()[..]
        );
        acked_total = keys.len() as u64;
        db.close().unwrap();
    }
}

// ---- faults ---------------------------------------------------------------------------------

fn faulty(wal: &Path) -> (Options, Arc<FaultInjector>) {
    let faults = Arc::new(FaultInjector::new());
    let options = Options {
        faults: Some(Arc::clone(&faults)),
        ..options(wal)
    };
    (options, faults)
}

#[test]
fn throttled_requests_are_retried() {
    let url = format!("s3://{}/throttled", bucket("throttle"));
    let wal = tempfile::tempdir().unwrap();
    let (options, faults) = faulty(wal.path());
    let db = Db::open(&url, options.clone()).unwrap();
    put_range(&db, 0..300);
    // Two throttling answers (503 SlowDown) for the flush's requests, within the retries.
    faults.fail_times(
        &[IoOp::SstWrite, IoOp::ManifestWrite, IoOp::SstRead],
        2,
        std::io::ErrorKind::QuotaExceeded,
    );
    db.flush().unwrap();
    assert_eq!(faults.failures(), 2);
    faults.disarm();
    db.close().unwrap();
    let other = tempfile::tempdir().unwrap();
    let db = Db::open(&url, self::options(other.path())).unwrap();
    assert_eq!(keys_of(&db), (0..300).collect::<Vec<_>>());
    db.close().unwrap();
}

#[test]
fn failing_requests_give_a_clear_error_and_lose_nothing() {
    for ops in [[IoOp::SstWrite], [IoOp::ManifestWrite]] {
        let url = format!("s3://{}/failing", bucket("failing"));
        let wal = tempfile::tempdir().unwrap();
        let (options, faults) = faulty(wal.path());
        let db = Db::open(&url, options.clone()).unwrap();
        put_range(&db, 0..200);
        db.flush().unwrap();
        put_range(&db, 200..400);
        // Every request of this kind fails (500) until disarmed: retries run out.
        faults.fail_after(&ops, 0, std::io::ErrorKind::Other);
        let err = db.flush().unwrap_err().to_string();
        assert!(
            err.contains("500") || err.contains("InternalError") || err.contains("injected"),
            "{ops:?}: unclear error: {err}"
        );
        faults.disarm();
        let _ = db.close();
        // Nothing acknowledged lost (the WAL has what the failed flush did not commit), and
        // the store holds no half-commit (the open reads and checks every manifest file).
        let db = Db::open(&url, self::options(wal.path())).unwrap();
        assert_eq!(keys_of(&db), (0..400).collect::<Vec<_>>(), "{ops:?}");
        db.flush().unwrap();
        db.close().unwrap();
        let other = tempfile::tempdir().unwrap();
        let db = Db::open(&url, self::options(other.path())).unwrap();
        assert_eq!(keys_of(&db), (0..400).collect::<Vec<_>>(), "{ops:?}");
        db.close().unwrap();
    }
}

/// One request fails after its first attempt and exactly `REMOTE_MAX_RETRIES` retries, with
/// the server's answer in the error; a transient failure within them is not seen at all.
#[test]
fn retries_are_bounded() {
    let url = format!("s3://{}/bounded", bucket("bounded"));
    let faults = Arc::new(FaultInjector::new());
    let storage = Storage::open_url(&url, Some(Arc::clone(&faults))).unwrap();
    faults.fail_after(&[IoOp::SstWrite], 0, std::io::ErrorKind::Other);
    let err = storage
        .put("sst/t000001/x.parquet", Bytes::from("x"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        faults.failures(),
        1 + strata_engine::storage::REMOTE_MAX_RETRIES as u64
    );
    assert!(err.contains("500") && err.contains("injected"), "{err}");
    assert!(storage.get("sst/t000001/x.parquet").unwrap().is_none());
    faults.fail_times(&[IoOp::SstWrite], 2, std::io::ErrorKind::QuotaExceeded);
    storage
        .put("sst/t000001/x.parquet", Bytes::from("x"))
        .unwrap();
    assert_eq!(faults.failures(), 2);
    assert!(storage.get("sst/t000001/x.parquet").unwrap().is_some());
}

#[test]
fn slow_requests_still_complete() {
    let url = format!("s3://{}/slow", bucket("slow"));
    let wal = tempfile::tempdir().unwrap();
    let (options, faults) = faulty(wal.path());
    faults.delay(
        &[
            IoOp::SstWrite,
            IoOp::ManifestWrite,
            IoOp::SstRead,
            IoOp::Delete,
        ],
        Duration::from_millis(200),
    );
    let db = Db::open(&url, options.clone()).unwrap();
    put_range(&db, 0..100);
    db.flush().unwrap();
    assert_eq!(keys_of(&db), (0..100).collect::<Vec<_>>());
    assert!(faults.failures() > 0, "no request was delayed");
    db.close().unwrap();
    faults.disarm();
    let other = tempfile::tempdir().unwrap();
    let db = Db::open(&url, self::options(other.path())).unwrap();
    assert_eq!(keys_of(&db), (0..100).collect::<Vec<_>>());
    db.close().unwrap();
}

// ---- the cache hierarchy --------------------------------------------------------------------

/// Scans table `kv` whole and looks up every 97th key of `0..n`, returning the reads this
/// made on this thread (the values are checked).
fn read_all(db: &Db, n: u64) -> Arc<ReadStats> {
    let stats = Arc::new(ReadStats::default());
    track_reads(&stats, || {
        assert_eq!(keys_of(db), (0..n).collect::<Vec<_>>());
        let kv = db.kv("kv").unwrap();
        for i in (0..n).step_by(97) {
            assert_eq!(kv.get(key(i)).unwrap(), Some(value(i)), "key {i}");
        }
    });
    stats
}

/// Every chunk file of the disk cache in `dir`.
fn cache_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(cache_files(&path));
        } else if path.file_name().unwrap() != "LOCK" {
            files.push(path);
        }
    }
    files
}

#[test]
fn reads_get_when_cold_and_hit_the_disk_cache_when_warm() {
    let url = format!("s3://{}/cached", bucket("cache"));
    let n = 20_000;
    let writer = tempfile::tempdir().unwrap();
    let db = Db::open(&url, options(writer.path())).unwrap();
    let kv = db.kv("kv").unwrap();
    for half in [0..n / 2, n / 2..n] {
        let mut batch = strata_engine::WriteBatch::new();
        for i in half {
            batch.put(key(i), value(i));
        }
        kv.write(&batch).unwrap();
        db.flush().unwrap();
    }
    db.close().unwrap();

    // Cold: another local directory (another machine), an empty disk cache.
    let local = tempfile::tempdir().unwrap();
    let db = Db::open(&url, options(local.path())).unwrap();
    let cold = read_all(&db, n);
    assert!(cold.get(ReadCounter::ObjectGet) > 0, "{:?}", cold.values());
    assert!(cold.get(ReadCounter::ObjectGetBytes) > 0);
    assert!(cold.get(ReadCounter::DiskCacheMiss) > 0);
    assert!(cold.get(ReadCounter::BlockCacheMiss) > 0);
    let metrics = db.metrics();
    assert!(metrics.get("disk_cache_bytes").unwrap() > 0);
    assert_eq!(
        metrics.get("disk_cache_misses"),
        Some(cold.get(ReadCounter::DiskCacheMiss))
    );
    db.close().unwrap();
    let cache_dir = local.path().join("cache");
    let files = cache_files(&cache_dir);
    assert!(
        !files.is_empty(),
        "nothing cached in {}",
        cache_dir.display()
    );

    // Warm: the memory caches went with the closed database, the disk cache survived.
    let db = Db::open(&url, options(local.path())).unwrap();
    let warm = read_all(&db, n);
    assert_eq!(warm.get(ReadCounter::ObjectGet), 0, "{:?}", warm.values());
    assert_eq!(warm.get(ReadCounter::DiskCacheMiss), 0);
    assert!(warm.get(ReadCounter::DiskCacheHit) > 0);
    assert!(warm.get(ReadCounter::BlockCacheMiss) > 0);
    assert_eq!(db.metrics().get("disk_cache_misses"), Some(0));
    // Within one open, the memory block cache answers the second round of lookups.
    let again = read_all(&db, n);
    assert!(
        again.get(ReadCounter::BlockCacheHit) > 0,
        "{:?}",
        again.values()
    );
    db.close().unwrap();

    // A flipped byte in every cached file: each is detected, dropped and fetched again,
    // and the values read are right.
    for file in &files {
        let mut bytes = std::fs::read(file).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        std::fs::write(file, bytes).unwrap();
    }
    let db = Db::open(&url, options(local.path())).unwrap();
    let repaired = read_all(&db, n);
    assert!(repaired.get(ReadCounter::ObjectGet) > 0);
    assert_eq!(
        db.metrics().get("disk_cache_invalid"),
        Some(files.len() as u64),
        "every corrupt file detected"
    );
    db.close().unwrap();
    // Rewritten: warm again.
    let db = Db::open(&url, options(local.path())).unwrap();
    let warm = read_all(&db, n);
    assert_eq!(warm.get(ReadCounter::ObjectGet), 0, "{:?}", warm.values());
    assert_eq!(db.metrics().get("disk_cache_invalid"), Some(0));
    db.close().unwrap();

    // No disk cache: every read not in memory is a GET.
    let bare = tempfile::tempdir().unwrap();
    let db = Db::open(
        &url,
        Options {
            disk_cache_bytes: 0,
            ..options(bare.path())
        },
    )
    .unwrap();
    let uncached = read_all(&db, n);
    assert!(uncached.get(ReadCounter::ObjectGet) > 0);
    assert_eq!(uncached.get(ReadCounter::DiskCacheHit), 0);
    assert!(!bare.path().join("cache").exists());
    db.close().unwrap();
}

/// The read-only `object_store` over a database's storage (`Storage::read_store`, which
/// DataFusion's Parquet reader uses): ranged reads (bounded, offset, suffix, head) return the
/// object's bytes, the first read GETs and fills the disk cache, a second read is a disk-cache
/// hit with no GET; writes and listings are refused.
#[test]
fn the_read_store_reads_through_the_disk_cache() {
    use object_store::path::Path as ObjectPath;
    use object_store::{GetOptions, GetRange, ObjectStoreExt, PutPayload};
    use strata_engine::disk_cache::DiskCache;
    use strata_engine::metrics::Metrics;

    let url = format!("s3://{}/store", bucket("readstore"));
    let object: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let path = "sst/t000001/00000000000000000001.parquet";
    Storage::open_url(&url, None)
        .unwrap()
        .put(path, Bytes::from(object.clone()))
        .unwrap();
    let local = tempfile::tempdir().unwrap();
    let open = || {
        let cache = Arc::new(DiskCache::open(&local.path().join("cache"), 64 << 20).unwrap());
        Storage::open_url(&url, None)
            .unwrap()
            .with_reads(Arc::new(Metrics::default()), Some(cache))
            .read_store()
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let location = ObjectPath::from(path);
    let read = |store: &Arc<dyn object_store::ObjectStore>, range: GetRange| {
        let stats = Arc::new(ReadStats::default());
        let options = GetOptions {
            range: Some(range),
            ..GetOptions::default()
        };
        let got = track_reads(&stats, || {
            runtime.block_on(async {
                let got = store.get_opts(&location, options).await.unwrap();
                let range = got.range.clone();
                assert_eq!(got.meta.size, object.len() as u64);
                (range, got.bytes().await.unwrap())
            })
        });
        (got, stats)
    };

    let store = open();
    let ((range, bytes), cold) = read(&store, GetRange::Bounded(1000..70_000));
    assert_eq!(range, 1000..70_000);
    assert_eq!(&bytes[..], &object[1000..70_000]);
    assert!(cold.get(ReadCounter::ObjectGet) > 0);
    assert!(cold.get(ReadCounter::DiskCacheMiss) > 0);
    // The same bytes again, from another store over a reopened storage: the disk cache.
    drop(store);
    let store = open();
    let ((_, bytes), warm) = read(&store, GetRange::Bounded(1000..70_000));
    assert_eq!(&bytes[..], &object[1000..70_000]);
    assert_eq!(warm.get(ReadCounter::ObjectGet), 0);
    assert!(warm.get(ReadCounter::DiskCacheHit) > 0);
    let ((range, bytes), _) = read(&store, GetRange::Offset(299_000));
    assert_eq!(range, 299_000..300_000);
    assert_eq!(&bytes[..], &object[299_000..]);
    let ((range, bytes), _) = read(&store, GetRange::Suffix(10));
    assert_eq!(range, 299_990..300_000);
    assert_eq!(&bytes[..], &object[299_990..]);
    assert!(
        runtime
            .block_on(store.get_range(&location, 300_000..300_001))
            .is_err()
    );
    let ranges = runtime
        .block_on(store.get_ranges(&location, &[0..10, 5..20]))
        .unwrap();
    assert_eq!(&ranges[0][..], &object[0..10]);
    assert_eq!(&ranges[1][..], &object[5..20]);
    let head = runtime.block_on(store.head(&location)).unwrap();
    assert_eq!(head.size, object.len() as u64);
    let whole = runtime
        .block_on(async { store.get(&location).await.unwrap().bytes().await })
        .unwrap();
    assert_eq!(&whole[..], &object[..]);

    let refused = runtime.block_on(store.put(&location, PutPayload::from_static(b"x")));
    assert!(matches!(
        refused,
        Err(object_store::Error::NotSupported { .. })
    ));
    let refused = runtime.block_on(store.list_with_delimiter(None));
    assert!(matches!(
        refused,
        Err(object_store::Error::NotSupported { .. })
    ));
    let refused = runtime.block_on(store.delete(&location));
    assert!(matches!(
        refused,
        Err(object_store::Error::NotSupported { .. })
    ));
}
