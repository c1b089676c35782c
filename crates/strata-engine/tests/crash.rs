//! Crash test: a real child process writes with `SyncMode::Always` and reports every
//! acknowledged batch on stdout; the parent kills it with SIGKILL at a random moment, reopens
//! the database and checks that every acknowledged batch is there and that every batch is
//! all-or-nothing. Cycles accumulate in one database, so later cycles also recover from
//! earlier crashes (flushes, compactions, WAL segments, manifest edits interrupted at random
//! points). Odd cycles use leveled compaction and even cycles size-tiered, with small triggers,
//! so the child is usually in the middle of a compaction when it dies.
//!
//! After each reopen, the table read as base files with their deletion vectors (as the SQL
//! layer's Parquet reader reads it) must equal the merge: DV files and edits interrupted at
//! random points never describe other rows.
//!
//! CI runs 20 cycles. Locally: `STRATA_CRASH_CYCLES=1000 cargo test -p strata-engine --test integration --release -- crash::`.
//!
//! A second test kills a writer whose values end in zero bytes, then damages single bytes of the
//! last complete WAL record it left: the open must fail with a corruption error naming the
//! segment and the record, and leave the file alone; only a record cut short is a torn tail.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use strata_engine::{
    CompactionOptions, Db, Options, StrategyKind, SyncMode, TableOptions, WriteBatch,
};

const CHILD_ENV: &str = "STRATA_CRASH_CHILD_DIR";
const ZEROS_CHILD_ENV: &str = "STRATA_CRASH_ZEROS_CHILD_DIR";
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
            sst_scan_row_group_rows: 64,
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
        .args([
            "crash::crash_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
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
        // The deletion vectors the killed child left (written by flushes and compactions it
        // was in the middle of) describe the same rows as the merge.
        let merged: Vec<(Vec<u8>, Vec<u8>)> = kv.scan(..).unwrap().map(Result::unwrap).collect();
        let view = kv.table().view().unwrap();
        let batches = common::base_scan::base_rows(&view)
            .unwrap()
            .unwrap_or_else(|| panic!("cycle {cycle}: no base scan after reopen"));
        let mut base: Vec<(Vec<u8>, Vec<u8>)> = batches.iter().flat_map(binary_pairs).collect();
        base.sort();
        assert_eq!(base.len(), merged.len(), "cycle {cycle}: base rows");
        assert!(
            base == merged,
            "cycle {cycle}: base rows differ from the merge"
        );
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

/// The `(key, value)` pairs of a key-value batch.
fn binary_pairs(batch: &arrow::array::RecordBatch) -> Vec<(Vec<u8>, Vec<u8>)> {
    let (keys, values) = (
        batch.column(0).as_binary::<i32>(),
        batch.column(1).as_binary::<i32>(),
    );
    (0..batch.num_rows())
        .map(|row| (keys.value(row).to_vec(), values.value(row).to_vec()))
        .collect()
}

/// Options of the zero-ended writer: everything stays in the memtable and one WAL segment.
fn zeros_options() -> Options {
    Options {
        sync_mode: SyncMode::Always,
        wal_segment_size_bytes: 64 << 20,
        table_defaults: TableOptions {
            memtable_size_bytes: 64 << 20,
            ..TableOptions::default()
        },
        write_buffer_budget_bytes: 256 << 20,
        ..Options::default()
    }
}

/// The value of batch `id`: its number, then zero bytes (as an integer column's encoding
/// often ends), so every WAL payload ends in zeros.
fn zero_ended_value(id: u64) -> Vec<u8> {
    let mut value = id.to_le_bytes().to_vec();
    value.extend_from_slice(&[0u8; 16]);
    value
}

#[test]
fn crash_zeros_child() {
    // Runs only when launched by `a_damaged_last_wal_record_of_a_killed_writer_is_corruption`.
    if let Ok(dir) = std::env::var(ZEROS_CHILD_ENV) {
        let db = Db::open(Path::new(&dir), zeros_options()).expect("child open");
        let kv = db.kv("zeros").expect("child kv");
        let mut stdout = std::io::stdout().lock();
        for id in 0u64.. {
            kv.put(format!("key-{id:08}"), zero_ended_value(id))
                .expect("child write");
            use std::io::Write;
            writeln!(stdout, "ack {id}").expect("stdout");
            stdout.flush().expect("stdout");
        }
    }
}

/// The newest WAL segment of the database in `dir`.
fn newest_segment(dir: &Path) -> std::path::PathBuf {
    let mut segments: Vec<_> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    segments.sort();
    segments.pop().expect("a WAL segment")
}

#[test]
fn a_damaged_last_wal_record_of_a_killed_writer_is_corruption() {
    use strata_engine::wal::{RECORD_HEADER_LEN, decode_entries, read_segment};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "crash::crash_zeros_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ZEROS_CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    // Kill the writer once it has acknowledged some batches (it is writing the next ones).
    let mut acked = 0u64;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while acked < 50 {
        let line = lines.next().expect("the child stopped early").unwrap();
        if line.starts_with("ack ") {
            acked += 1;
        }
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    drop(lines);

    // The last complete record the writer left, and where its key and value are.
    let segment = newest_segment(dir.path());
    let mut last = None;
    read_segment(&segment, true, |record| {
        let entries = decode_entries(record.payload, record.count)?;
        let entry = entries.last().expect("an entry");
        let in_payload = |part: &[u8]| part.as_ptr() as usize - record.payload.as_ptr() as usize;
        let payload_at = record.offset as usize + RECORD_HEADER_LEN;
        last = Some((
            record.offset as usize,
            payload_at + in_payload(entry.key),
            payload_at + in_payload(entry.value),
            payload_at + record.payload.len(),
        ));
        Ok(())
    })
    .unwrap();
    let (offset, key_at, value_at, end) = last.expect("a complete record");
    let original = std::fs::read(&segment).unwrap();
    assert_eq!(original[end - 1], 0, "the payload ends in zeros");
    for (what, position) in [
        ("a key byte", key_at + 2),
        ("a value byte", value_at + 2),
        ("a zero byte of the value", end - 3),
        ("the payload checksum", offset + 4),
    ] {
        let mut damaged = original.clone();
        damaged[position] ^= 0x08;
        std::fs::write(&segment, &damaged).unwrap();
        match Db::open(dir.path(), zeros_options()) {
            Err(strata_engine::Error::Corruption {
                file, offset: at, ..
            }) => {
                assert_eq!(file.file_name(), segment.file_name(), "{what}");
                assert_eq!(at, offset as u64, "{what}");
            }
            Err(e) => panic!("{what}: expected corruption, got {e}"),
            Ok(_) => panic!("{what}: the damaged record was dropped as a torn tail"),
        }
        assert_eq!(
            std::fs::read(&segment).unwrap(),
            damaged,
            "{what}: the segment was changed"
        );
    }

    // Undamaged (checked on a copy), every record is there, so every acknowledged batch.
    std::fs::write(&segment, &original).unwrap();
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), copy.path());
    let records = original_records(&segment);
    assert!(records as u64 >= acked);
    assert_eq!(keys_present(copy.path()), records);

    // The last record really cut short (as the kill may leave one) is a torn tail: the open
    // succeeds without it, and the segment is cut back to the record. (Each failed open above
    // created a segment of its own before it replayed; they hold no record and are deleted,
    // so the writer's segment is still the newest one, the one allowed a torn tail.)
    std::fs::write(&segment, &original[..end - 5]).unwrap();
    assert_eq!(keys_present(dir.path()), records - 1);
    let left = std::fs::read(&segment).map_or(0, |b| b.len());
    assert!(
        left <= offset,
        "{left} bytes left, the cut record starts at {offset}"
    );
}

/// Number of complete records in a WAL segment.
fn original_records(segment: &Path) -> usize {
    let mut records = 0;
    strata_engine::wal::read_segment(segment, true, |_| {
        records += 1;
        Ok(())
    })
    .unwrap();
    records
}

/// Opens the zero-ended writer's database; checks its keys are `key-0..key-n`, each with its
/// value, and returns n.
fn keys_present(dir: &Path) -> usize {
    let db = Db::open(dir, zeros_options()).unwrap();
    let kv = db.kv("zeros").unwrap();
    let mut n = 0;
    for pair in kv.scan(..).unwrap() {
        let (key, value) = pair.unwrap();
        assert_eq!(key, format!("key-{n:08}").into_bytes());
        assert_eq!(value, zero_ended_value(n as u64));
        n += 1;
    }
    drop(kv);
    db.close().unwrap();
    n
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
