//! Crash test: a real child process writes with `SyncMode::Always` and reports every
//! acknowledged batch on stdout; the parent kills it with SIGKILL at a random moment, reopens
//! the database and checks that every acknowledged batch is there and that every batch is
//! all-or-nothing. Cycles accumulate in one database, so later cycles also recover from
//! earlier crashes (flushes, compactions, WAL segments, manifest edits interrupted at random
//! points). Odd cycles use leveled compaction and even cycles size-tiered, with small triggers,
//! so the child is usually in the middle of a compaction when it dies.
//!
//! CI runs 20 cycles. Locally: `STRATA_CRASH_CYCLES=1000 cargo test -p strata-engine --test crash --release`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use strata_engine::{
    CompactionOptions, Db, Options, StrategyKind, SyncMode, TableOptions, WriteBatch,
};

const CHILD_ENV: &str = "STRATA_CRASH_CHILD_DIR";
const CYCLE_ENV: &str = "STRATA_CRASH_CHILD_CYCLE";
/// Keys written by one batch.
const KEYS_PER_BATCH: u64 = 5;
/// Every `DELETE_EVERY`-th batch also deletes the keys of the batch `DELETE_LAG` before it.
const DELETE_EVERY: u64 = 7;
const DELETE_LAG: u64 = 3;

fn options(cycle: u64) -> Options {
    let strategy = if cycle % 2 == 1 {
        StrategyKind::Leveled
    } else {
        StrategyKind::SizeTiered
    };
    Options {
        sync_mode: SyncMode::Always,
        wal_segment_size_bytes: 64 * 1024,
        table_defaults: TableOptions {
            memtable_size_bytes: 64 * 1024,
            compaction: CompactionOptions {
                strategy,
                l0_compaction_trigger: 2,
                level_base_bytes: 128 * 1024,
                level_size_multiplier: 2,
                target_file_size_bytes: 64 * 1024,
                memory_bytes_max: 4 << 20,
                ..CompactionOptions::default()
            },
            sst_index_block_rows: 16,
            sst_row_group_rows: 64,
            ..TableOptions::default()
        },
        write_buffer_budget_bytes: 1 << 20,
        ..Options::default()
    }
}

fn unique_key(batch: u64, i: u64) -> Vec<u8> {
    format!("u{batch:012}-{i}").into_bytes()
}

fn marker_key(batch: u64) -> Vec<u8> {
    format!("d{batch:012}").into_bytes()
}

/// The child: writes batches until killed, printing `ack <id>` after each one returns.
fn child(dir: &Path, cycle: u64) {
    let db = Db::open(dir, options(cycle)).expect("child open");
    let kv = db.kv("crash").expect("child kv");
    let mut stdout = std::io::stdout().lock();
    let first = cycle * 1_000_000;
    for batch_id in first.. {
        let mut batch = WriteBatch::new();
        // Values are large enough that memtables fill and flush during the run.
        let value = format!("{batch_id}:{}", "x".repeat(200));
        for i in 0..KEYS_PER_BATCH {
            batch.put(unique_key(batch_id, i), &value);
        }
        if batch_id % DELETE_EVERY == 0 && batch_id >= first + DELETE_LAG {
            let victim = batch_id - DELETE_LAG;
            for i in 0..KEYS_PER_BATCH {
                batch.delete(unique_key(victim, i));
            }
            batch.put(marker_key(batch_id), victim.to_string());
        }
        kv.write(&batch).expect("child write");
        use std::io::Write;
        writeln!(stdout, "ack {batch_id}").expect("stdout");
        stdout.flush().expect("stdout");
    }
}

#[test]
fn crash_child() {
    // Runs only when launched by `crash_recovery_keeps_every_acknowledged_write`.
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        let cycle = std::env::var(CYCLE_ENV)
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        child(Path::new(&dir), cycle);
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Runs one child until a random moment, kills it, returns the batches it acknowledged.
fn run_cycle(dir: &Path, cycle: u64, rng: &mut Rng) -> BTreeSet<u64> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .env(CYCLE_ENV, cycle.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(id) = line
                .strip_prefix("ack ")
                .and_then(|n| n.parse::<u64>().ok())
                && sender.send(id).is_err()
            {
                break;
            }
        }
    });
    // Kill after a random delay (sometimes right away, during open and replay).
    let delay = Duration::from_millis(rng.next() % 400);
    let started = Instant::now();
    let mut acked = BTreeSet::new();
    while started.elapsed() < delay {
        if let Ok(id) = receiver.recv_timeout(Duration::from_millis(5)) {
            acked.insert(id);
        }
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    reader.join().unwrap();
    acked.extend(receiver.try_iter());
    acked
}

#[test]
fn crash_recovery_keeps_every_acknowledged_write() {
    let cycles: u64 = std::env::var("STRATA_CRASH_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0xC0FFEE);
    let mut acked_all: BTreeSet<u64> = BTreeSet::new();
    let mut deepest_level = 0;
    for cycle in 1..=cycles {
        let acked = run_cycle(dir.path(), cycle, &mut rng);
        acked_all.extend(&acked);
        let db = Db::open(dir.path(), options(cycle))
            .unwrap_or_else(|e| panic!("cycle {cycle}: reopen failed: {e}"));
        let kv = db.kv("crash").unwrap();
        let mut present: BTreeMap<u64, u64> = BTreeMap::new();
        let mut deleted_by: BTreeMap<u64, u64> = BTreeMap::new();
        for pair in kv.scan(..).unwrap() {
            let (key, value) = pair.unwrap();
            let key = String::from_utf8(key).unwrap();
            let value = String::from_utf8(value).unwrap();
            if let Some(rest) = key.strip_prefix('u') {
                let batch: u64 = rest.split('-').next().unwrap().parse().unwrap();
                let written: u64 = value.split(':').next().unwrap().parse().unwrap();
                assert_eq!(
                    written, batch,
                    "cycle {cycle}: key {key} holds another batch's value"
                );
                *present.entry(batch).or_default() += 1;
            } else if let Some(rest) = key.strip_prefix('d') {
                deleted_by.insert(value.parse().unwrap(), rest.parse().unwrap());
            }
        }
        // All-or-nothing: a batch's keys are all there or none (unless a later batch deleted them).
        for (batch, count) in &present {
            assert_eq!(
                *count, KEYS_PER_BATCH,
                "cycle {cycle}: batch {batch} is partial"
            );
            assert!(
                !deleted_by.contains_key(batch),
                "cycle {cycle}: batch {batch} was deleted but is back"
            );
        }
        // Every acknowledged batch is there, or deleted by a batch that is there.
        for batch in &acked_all {
            let survives = present.contains_key(batch) || deleted_by.contains_key(batch);
            assert!(survives, "cycle {cycle}: acknowledged batch {batch} lost");
            if *batch % DELETE_EVERY == 0 && *batch % 1_000_000 >= DELETE_LAG {
                assert!(
                    deleted_by.values().any(|b| b == batch),
                    "cycle {cycle}: acknowledged delete batch {batch} lost"
                );
            }
        }
        let levels = kv.table().levels();
        deepest_level = deepest_level.max(
            levels
                .iter()
                .filter(|l| l.files > 0)
                .map(|l| l.level)
                .max()
                .unwrap_or(0),
        );
        drop(kv);
        db.close().unwrap();
    }
    assert!(
        !acked_all.is_empty(),
        "the child never acknowledged a write"
    );
    assert!(
        deepest_level >= 1,
        "no compaction ever moved data below level 0"
    );
}
