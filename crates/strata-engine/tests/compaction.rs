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
