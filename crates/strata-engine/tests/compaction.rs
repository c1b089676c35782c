//! Compaction end to end: both strategies in the background, snapshots across compactions,
//! the tombstone traps (a delete must survive a partial compaction and a reopen), sequence
//! numbers never rewritten, and reads racing compactions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow::array::AsArray;
use arrow::datatypes::UInt64Type;
use strata_engine::{
    CompactionOptions, Db, KeyRange, KvStore, Options, ScanOptions, StrategyKind, TableOptions,
};

fn options(strategy: StrategyKind) -> Options {
    Options {
        table_defaults: TableOptions {
            memtable_size_bytes: 64 * 1024,
            sst_index_block_rows: 16,
            sst_row_group_rows: 256,
            sst_scan_row_group_rows: 256,
            compaction: CompactionOptions {
                strategy,
                l0_compaction_trigger: 2,
                l0_slowdown_trigger: 8,
                l0_stop_trigger: 16,
                level_base_bytes: 128 * 1024,
                level_size_multiplier: 2,
                target_file_size_bytes: 64 * 1024,
                memory_bytes_max: 8 << 20,
                ..CompactionOptions::default()
            },
            ..TableOptions::default()
        },
        write_buffer_budget_bytes: 4 << 20,
        ..Options::default()
    }
}

fn fill(kv: &KvStore, rounds: u32, keys: u32) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut model = BTreeMap::new();
    for round in 0..rounds {
        for i in 0..keys {
            let k = format!("key{:06}", (i * 7_919) % keys).into_bytes();
            // Values that do not compress away, so data grows into deeper levels.
            let mix = |x: u64| x.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29) ^ x;
            let seed = u64::from(i) << 8 | u64::from(round);
            let v = format!(
                "{round}-{:016x}{:016x}{:016x}",
                mix(seed),
                mix(seed + 1),
                mix(seed + 2)
            )
            .into_bytes();
            kv.put(&k, &v).unwrap();
            model.insert(k, v);
        }
    }
    model
}

fn all(kv: &KvStore) -> BTreeMap<Vec<u8>, Vec<u8>> {
    kv.scan(..).unwrap().map(Result::unwrap).collect()
}

/// Waits until background compaction is idle: the compaction count has not moved for two
/// seconds (a loaded machine can take well over 50 ms per merge), or two minutes passed.
fn settle(db: &Db) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut last = db.metrics().get("compactions");
    let mut quiet = 0;
    while quiet < 40 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
        let now = db.metrics().get("compactions");
        if now == last {
            quiet += 1;
        } else {
            quiet = 0;
            last = now;
        }
    }
}

/// The compaction report of a table that was filled and compacted in the background: its
/// per-level figures add up to the table's and agree with the database's counters.
fn check_report(db: &Db, kv: &KvStore, strategy: StrategyKind) {
    let report = kv.table().compaction_report();
    let metrics = db.metrics();
    let totals = report.totals();
    // One table: its counters are the database's.
    assert_eq!(
        report.writes.rows_written,
        metrics.get("rows_written").unwrap()
    );
    assert_eq!(totals.bytes_flushed, metrics.get("flush_bytes").unwrap());
    assert_eq!(totals.flushes, metrics.get("flushes").unwrap());
    assert_eq!(
        totals.bytes_written,
        metrics.get("compaction_bytes_written").unwrap()
    );
    assert_eq!(totals.compactions, metrics.get("compactions").unwrap());
    // 6 rounds of 3,000 9-byte keys with 50-byte values, plus the encodings' framing.
    let raw = 6 * 3_000 * (9 + 50);
    let user = report.writes.user_bytes;
    assert!(user >= raw && user < raw + 6 * 3_000 * 16, "{user}");
    assert!(report.levels[0].stats.flushes > 0, "{strategy}");
    assert!(
        report.levels.iter().skip(1).all(|l| l.stats.flushes == 0),
        "{strategy}: flushes write level 0 only"
    );
    let per_level: f64 = report
        .levels
        .iter()
        .map(|l| l.write_amplification.unwrap())
        .sum();
    let wa = report.write_amplification().unwrap();
    assert!(
        (per_level - wa).abs() < 1e-9,
        "{strategy}: {per_level} vs {wa}"
    );
    let written = totals.bytes_flushed + totals.bytes_written;
    assert!(
        (wa - written as f64 / report.writes.user_bytes as f64).abs() < 1e-9,
        "{strategy}"
    );
    // Compaction rewrote data, so more was written than flushed.
    assert!(wa > totals.bytes_flushed as f64 / user as f64, "{strategy}");
    let version_bytes: u64 = report.levels.iter().map(|l| l.bytes).sum();
    assert_eq!(version_bytes, report.sst_bytes);
    let space = report.space_amplification().unwrap();
    assert!(space >= 1.0, "{strategy}: {space}");
    // A full compaction leaves one sorted run: space amplification 1.
    kv.table().compact().unwrap();
    let after = kv.table().compaction_report();
    assert_eq!(after.space_amplification(), Some(1.0), "{strategy}");
    assert_eq!(after.largest_run_bytes, after.sst_bytes);
}

/// Compactions that cannot run (every SST read fails) let level 0 grow to the slowdown and
/// then the stop trigger: writes are slowed, then stall until compaction catches up, and the
/// time is counted for the table and the database. Level 0 never grows past the stop
/// trigger while writers wait.
#[test]
fn backpressure_slows_then_stalls_writers_and_counts_the_time() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(strata_engine::FaultInjector::new());
    let mut opts = options(StrategyKind::Leveled);
    opts.faults = Some(Arc::clone(&faults));
    opts.table_defaults.compaction.l0_compaction_trigger = 2;
    opts.table_defaults.compaction.l0_slowdown_trigger = 3;
    opts.table_defaults.compaction.l0_stop_trigger = 6;
    let db = Arc::new(Db::open(dir.path(), opts).unwrap());
    let kv = db.kv("t").unwrap();
    faults.fail_after(
        &[strata_engine::IoOp::SstRead],
        0,
        std::io::ErrorKind::Other,
    );
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (kv, done) = (kv.clone(), Arc::clone(&done));
        std::thread::spawn(move || {
            for round in 0..8u32 {
                for i in 0..500u32 {
                    let k = format!("key{i:05}");
                    kv.put(k.as_bytes(), format!("{round}-{i:0100}").as_bytes())
                        .unwrap();
                }
                kv.flush().unwrap();
            }
            done.store(true, Ordering::Release);
        })
    };
    // Wait until the writer is stalled, and check level 0 stays bounded meanwhile.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while kv.table().compaction_report().writes.write_stalls == 0 {
        assert!(std::time::Instant::now() < deadline, "writes never stalled");
        assert!(
            !done.load(Ordering::Acquire),
            "the writer finished without stalling"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!done.load(Ordering::Acquire), "a stalled writer went on");
    let l0 = kv.table().levels()[0].files;
    assert!(l0 <= 6, "level 0 grew past the stop trigger: {l0}");
    // Let compaction run: the stall ends and every write lands.
    faults.disarm();
    writer.join().unwrap();
    let writes = kv.table().compaction_report().writes;
    assert!(writes.write_slowdowns > 0, "{writes:?}");
    assert!(writes.write_slowdown_micros > 0, "{writes:?}");
    assert!(writes.write_stalls > 0, "{writes:?}");
    assert!(writes.write_stall_micros >= 300_000, "{writes:?}");
    let metrics = db.metrics();
    assert_eq!(metrics.get("write_stalls"), Some(writes.write_stalls));
    assert_eq!(
        metrics.get("write_stall_micros"),
        Some(writes.write_stall_micros)
    );
    assert!(metrics.get("background_errors").unwrap() > 0);
    for i in 0..500u32 {
        let k = format!("key{i:05}");
        assert_eq!(
            kv.get(k.as_bytes()).unwrap().unwrap(),
            format!("7-{i:0100}").into_bytes()
        );
    }
}

#[test]
fn both_strategies_compact_in_the_background_and_keep_the_data() {
    for strategy in [StrategyKind::Leveled, StrategyKind::SizeTiered] {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), options(strategy)).unwrap();
        let kv = db.kv("t").unwrap();
        let model = fill(&kv, 6, 3_000);
        kv.flush().unwrap();
        settle(&db);
        assert!(
            db.metrics().get("compactions").unwrap() > 0,
            "{strategy}: no background compaction ran"
        );
        let levels = kv.table().levels();
        match strategy {
            StrategyKind::Leveled => {
                assert!(
                    levels.iter().skip(1).any(|l| l.files > 0),
                    "{strategy}: nothing below L0: {levels:?}"
                );
                for level in levels.iter().skip(1) {
                    assert!(
                        level.overlap_depth <= 1,
                        "{strategy}: level {} overlaps",
                        level.level
                    );
                }
            }
            _ => assert!(
                levels[0].runs < 6,
                "{strategy}: runs were not merged: {levels:?}"
            ),
        }
        assert_eq!(all(&kv), model, "{strategy}");
        let stats = kv.table().compaction_stats();
        assert!(stats.iter().map(|s| s.bytes_written).sum::<u64>() > 0);
        check_report(&db, &kv, strategy);
        drop(kv);
        db.close().unwrap();
        let db = Db::open(dir.path(), options(strategy)).unwrap();
        assert_eq!(all(&db.kv("t").unwrap()), model, "{strategy} after reopen");
    }
}

#[test]
fn a_snapshot_reads_the_same_data_during_and_after_compaction() {
    for strategy in [StrategyKind::Leveled, StrategyKind::SizeTiered] {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(dir.path(), options(strategy)).unwrap());
        let kv = db.kv("t").unwrap();
        let before = fill(&kv, 2, 2_000);
        kv.flush().unwrap();
        let snapshot = db.snapshot();
        // Overwrite and delete everything after the snapshot, then compact it all.
        fill(&kv, 2, 2_000);
        for (i, key) in before.keys().enumerate() {
            if i % 3 == 0 {
                kv.delete(key).unwrap();
            }
        }
        let done = AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    let seen: BTreeMap<_, _> = kv
                        .scan_at(&snapshot, ..)
                        .unwrap()
                        .map(Result::unwrap)
                        .collect();
                    assert_eq!(
                        seen, before,
                        "{strategy}: snapshot changed during compaction"
                    );
                }
            });
            kv.flush().unwrap();
            kv.table().compact().unwrap();
            settle(&db);
            done.store(true, Ordering::Relaxed);
        });
        let seen: BTreeMap<_, _> = kv
            .scan_at(&snapshot, ..)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            seen, before,
            "{strategy}: snapshot changed after compaction"
        );
        drop(snapshot);
        // Without the snapshot a full compaction drops the old versions and tombstones.
        kv.table().compact().unwrap();
        let stats = kv.table().stats();
        assert_eq!(stats.sst_tombstones, 0, "{strategy}: {stats:?}");
        assert_eq!(
            stats.sst_rows as usize,
            all(&kv).len(),
            "{strategy}: old versions kept"
        );
    }
}

/// Sequence numbers of every stored version, by key.
fn versions(kv: &KvStore) -> BTreeMap<Vec<u8>, Vec<(u64, u8)>> {
    let mut out: BTreeMap<Vec<u8>, Vec<(u64, u8)>> = BTreeMap::new();
    for batch in kv
        .table()
        .scan(KeyRange::all(), ScanOptions::default().with_versions())
        .unwrap()
    {
        let batch = batch.unwrap();
        let keys = batch.column(0).as_binary::<i32>();
        let seqs = batch
            .column_by_name("_seq")
            .unwrap()
            .as_primitive::<UInt64Type>();
        let ops = batch
            .column_by_name("_op")
            .unwrap()
            .as_primitive::<arrow::datatypes::UInt8Type>();
        for i in 0..batch.num_rows() {
            out.entry(keys.value(i).to_vec())
                .or_default()
                .push((seqs.value(i), ops.value(i)));
        }
    }
    out
}

#[test]
fn a_delete_survives_partial_compactions_and_reopen_with_sequence_numbers_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let mut manual = options(StrategyKind::None);
    manual.table_defaults.compaction.strategy = StrategyKind::None;
    let db = Db::open(dir.path(), manual.clone()).unwrap();
    let kv = db.kv("t").unwrap();
    // Old versions, pushed down by a full compaction.
    for i in 0..200u32 {
        kv.put(format!("k{i:03}"), "old").unwrap();
    }
    kv.flush().unwrap();
    kv.table().compact().unwrap();
    let old = versions(&kv);
    // Delete one key; the tombstone lands in L0, above the old version.
    kv.delete("k100").unwrap();
    kv.put("k150", "new").unwrap();
    kv.flush().unwrap();
    let seq_of_delete = versions(&kv)["k100".as_bytes()][0].0;
    // Compact only a part of the key space that holds the tombstone.
    let range = KeyRange::new(
        std::ops::Bound::Included(b"k090".to_vec()),
        std::ops::Bound::Included(b"k110".to_vec()),
    );
    kv.table().compact_range(&range).unwrap();
    assert_eq!(kv.get("k100").unwrap(), None);
    drop(kv);
    db.close().unwrap();
    let db = Db::open(dir.path(), manual).unwrap();
    let kv = db.kv("t").unwrap();
    assert_eq!(
        kv.get("k100").unwrap(),
        None,
        "deleted key came back after reopen"
    );
    assert_eq!(kv.get("k150").unwrap(), Some(b"new".to_vec()));
    assert!(!all(&kv).contains_key("k100".as_bytes()));
    // Every surviving version kept its original sequence number.
    let now = versions(&kv);
    for (key, seqs) in &now {
        if key.as_slice() == b"k150" {
            continue;
        }
        if key.as_slice() == b"k100" {
            // Either the tombstone was dropped with the old version, or both remain.
            assert!(seqs.is_empty() || seqs[0] == (seq_of_delete, 1), "{seqs:?}");
            continue;
        }
        assert_eq!(
            Some(seqs),
            old.get(key),
            "sequence numbers of {:?} changed",
            String::from_utf8_lossy(key)
        );
    }
    // A full compaction removes the key completely.
    kv.table().compact().unwrap();
    assert!(!versions(&kv).contains_key("k100".as_bytes()));
    assert_eq!(kv.table().stats().sst_tombstones, 0);
}

#[test]
fn a_tombstone_is_kept_while_an_older_file_below_may_hold_the_key() {
    // Leveled with tiny levels, so data reaches L2 and deeper.
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options(StrategyKind::Leveled)).unwrap();
    let kv = db.kv("t").unwrap();
    let model = fill(&kv, 3, 4_000);
    kv.flush().unwrap();
    settle(&db);
    let levels = kv.table().levels();
    assert!(
        levels.len() >= 3,
        "want at least two levels below L0: {levels:?}"
    );
    // Delete keys everywhere, flush, and let L0 -> L1 compactions run: the tombstones must
    // stay as long as deeper levels hold the keys.
    let mut model = model;
    for (i, key) in model.clone().keys().enumerate() {
        if i % 5 == 0 {
            kv.delete(key).unwrap();
            model.remove(key);
        }
    }
    kv.flush().unwrap();
    settle(&db);
    assert_eq!(all(&kv), model);
    drop(kv);
    db.close().unwrap();
    let db = Db::open(dir.path(), options(StrategyKind::Leveled)).unwrap();
    let kv = db.kv("t").unwrap();
    assert_eq!(all(&kv), model, "deleted keys came back after reopen");
    for key in model.keys().take(100) {
        assert!(kv.get(key).unwrap().is_some());
    }
}

#[test]
fn reads_racing_compactions_never_miss_data() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options(StrategyKind::Leveled)).unwrap();
    let kv = db.kv("t").unwrap();
    let model = fill(&kv, 1, 3_000);
    kv.flush().unwrap();
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    assert_eq!(
                        all(&kv).len(),
                        model.len(),
                        "a scan lost rows during a compaction"
                    );
                    for key in model.keys().step_by(97) {
                        assert!(
                            kv.get(key).unwrap().is_some(),
                            "a lookup missed during a compaction"
                        );
                    }
                }
            });
        }
        for _ in 0..5 {
            // Rewrite the same keys so compactions keep replacing files under the readers.
            for key in model.keys() {
                kv.put(key, model[key].clone()).unwrap();
            }
            kv.flush().unwrap();
            kv.table().compact().unwrap();
        }
        done.store(true, Ordering::Relaxed);
    });
    assert_eq!(all(&kv), model);
}
