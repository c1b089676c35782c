//! Concurrency stress: writers, readers, flushes and compactions (background and manual) at the
//! same time for a bounded time,
//! checked against the expected state. Each writer owns its keys; every write is a batch that
//! sets a key *and* its twin to the same value, so a reader that ever sees the two differ has
//! seen half a batch.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use strata_engine::{
    CompactionOptions, Db, MemtableKind, Options, StrategyKind, TableOptions, WriteBatch,
};

const WRITERS: usize = 3;
const KEYS_PER_WRITER: u64 = 200;
const RUN_FOR: Duration = Duration::from_millis(1_500);

fn options(kind: MemtableKind, strategy: StrategyKind) -> Options {
    Options {
        table_defaults: TableOptions {
            memtable_kind: kind,
            compaction: CompactionOptions {
                strategy,
                l0_compaction_trigger: 2,
                level_base_bytes: 128 * 1024,
                level_size_multiplier: 2,
                target_file_size_bytes: 64 * 1024,
                memory_bytes_max: 4 << 20,
                ..CompactionOptions::default()
            },
            memtable_size_bytes: 64 * 1024,
            sst_index_block_rows: 16,
            sst_row_group_rows: 64,
            sst_scan_row_group_rows: 64,
            ..TableOptions::default()
        },
        write_buffer_budget_bytes: 1 << 20,
        ..Options::default()
    }
}

fn keys(writer: usize, k: u64) -> (Vec<u8>, Vec<u8>) {
    (
        format!("w{writer}-{k:04}-a").into_bytes(),
        format!("w{writer}-{k:04}-b").into_bytes(),
    )
}

fn stress(kind: MemtableKind, strategy: StrategyKind) {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(dir.path(), options(kind, strategy)).unwrap());
    let kv = db.kv("stress").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let models: Vec<BTreeMap<u64, Option<u64>>> = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let kv = kv.clone();
                scope.spawn(move || {
                    let mut model = BTreeMap::new();
                    let mut version = 0u64;
                    while started.elapsed() < RUN_FOR {
                        version += 1;
                        let k = (version * 7919) % KEYS_PER_WRITER;
                        let (a, b) = keys(w, k);
                        let mut batch = WriteBatch::new();
                        if version.is_multiple_of(11) {
                            batch.delete(&a).delete(&b);
                            model.insert(k, None);
                        } else {
                            let value = version.to_string();
                            batch.put(&a, &value).put(&b, &value);
                            model.insert(k, Some(version));
                        }
                        kv.write(&batch).unwrap();
                    }
                    model
                })
            })
            .collect();
        for _ in 0..2 {
            let (kv, stop) = (kv.clone(), Arc::clone(&stop));
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let pairs: Vec<(Vec<u8>, Vec<u8>)> =
                        kv.scan(..).unwrap().map(Result::unwrap).collect();
                    assert!(
                        pairs.windows(2).all(|p| p[0].0 < p[1].0),
                        "{kind}: scan out of order or duplicated"
                    );
                    for pair in pairs.chunks(2) {
                        let [(a, va), (b, vb)] = pair else {
                            panic!("{kind}: a key without its twin: {pair:?}");
                        };
                        assert_eq!(
                            &a[..a.len() - 1],
                            &b[..b.len() - 1],
                            "{kind}: twins not adjacent"
                        );
                        assert_eq!(
                            va,
                            vb,
                            "{kind}: saw half of a batch for {}",
                            String::from_utf8_lossy(a)
                        );
                    }
                }
            });
        }
        {
            let (kv, stop) = (kv.clone(), Arc::clone(&stop));
            scope.spawn(move || {
                let mut round = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    kv.flush().unwrap();
                    round += 1;
                    if round.is_multiple_of(4) {
                        kv.table().compact().unwrap();
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
        }
        let models = writers.into_iter().map(|h| h.join().unwrap()).collect();
        stop.store(true, Ordering::Relaxed);
        models
    });
    let check = |kv: &strata_engine::KvStore| {
        for (w, model) in models.iter().enumerate() {
            for (k, expected) in model {
                let (a, b) = keys(w, *k);
                let expected = expected.map(|v| v.to_string().into_bytes());
                assert_eq!(kv.get(&a).unwrap(), expected, "{kind}: writer {w} key {k}");
                assert_eq!(
                    kv.get(&b).unwrap(),
                    expected,
                    "{kind}: writer {w} key {k} twin"
                );
            }
        }
    };
    check(&kv);
    drop(kv);
    Arc::try_unwrap(db).unwrap().close().unwrap();
    let db = Db::open(dir.path(), options(kind, strategy)).unwrap();
    check(&db.kv("stress").unwrap());
}

#[test]
fn writers_readers_flushes_and_compactions_agree_with_the_model() {
    for (i, kind) in MemtableKind::ALL.iter().enumerate() {
        let strategy = if i % 2 == 0 {
            StrategyKind::Leveled
        } else {
            StrategyKind::SizeTiered
        };
        stress(*kind, strategy);
    }
}

/// Writes the view races against: one writer, one row per batch, so row `i` has sequence
/// number `first + i`.
const RACE_ROWS: i64 = 40_000;
/// Views each reader takes and checks.
const RACE_VIEWS: usize = 20_000;

/// A view's read sequence number and its memtable/file set are one consistent pair: every
/// write at or below the read sequence is visible through the view, none above it, while
/// memtables are switched (full ones by the commit path, and by explicit flushes) and flushed,
/// and files compacted. More reader threads than cores, so readers are often preempted
/// between any two steps of taking a view.
#[test]
fn a_view_sees_every_write_up_to_its_read_sequence_across_memtable_switches() {
    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use strata_engine::KeyValue;

    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(
        dir.path(),
        options(MemtableKind::EnhancedSkipList, StrategyKind::Leveled),
    )
    .unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("v", DataType::Int64, false),
    ]));
    let table = db
        .create_table("race", Arc::clone(&schema), &["id"])
        .unwrap();
    let row = |i: i64| {
        RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(vec![i])),
                Arc::new(Int64Array::from(vec![i])),
            ],
        )
        .unwrap()
    };
    table.insert(&row(0)).unwrap();
    let first = db.visible_seq();
    let done = AtomicBool::new(false);
    let readers_done = std::sync::atomic::AtomicUsize::new(0);
    const READERS: usize = 4;
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for i in 1..RACE_ROWS {
                table.insert(&row(i)).unwrap();
                if readers_done.load(Ordering::Relaxed) == READERS {
                    break;
                }
            }
            done.store(true, Ordering::Relaxed);
        });
        scope.spawn(|| {
            let mut round = 0u32;
            while !done.load(Ordering::Relaxed) {
                table.flush().unwrap();
                round += 1;
                if round.is_multiple_of(8) {
                    table.compact().unwrap();
                }
            }
        });
        for _ in 0..READERS {
            scope.spawn(|| {
                for _ in 0..RACE_VIEWS {
                    let view = table.view().unwrap();
                    let newest = (view.read_seq() - first) as i64;
                    let found = view.get(&[KeyValue::Int(i128::from(newest))]).unwrap();
                    assert!(
                        found.is_some(),
                        "a view at sequence {} misses row {newest}, written at it",
                        view.read_seq()
                    );
                    let next = view.get(&[KeyValue::Int(i128::from(newest + 1))]).unwrap();
                    assert!(
                        next.is_none(),
                        "a view sees row {}, written after it",
                        newest + 1
                    );
                    if newest > 0 && newest % 97 == 0 {
                        // An older write too, likely flushed by now.
                        let older = view.get(&[KeyValue::Int(i128::from(newest / 2))]).unwrap();
                        assert!(older.is_some(), "a view misses row {}", newest / 2);
                    }
                }
                readers_done.fetch_add(1, Ordering::Relaxed);
            });
        }
    });
    assert!(db.visible_seq() > first);
}
