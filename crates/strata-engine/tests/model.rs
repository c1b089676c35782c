//! Model-based property test: random sequences of puts, deletes, atomic batches, gets, scans,
//! snapshots, flushes, manual compactions and reopens against a `BTreeMap`, with zero
//! divergences allowed. Each case picks a memtable variant and a compaction strategy (small
//! triggers, so background compactions run between the operations too).
//!
//! CI runs `CASES` cases of up to `OPS_PER_CASE` operations (at least 10,000 operations in
//! total). For a longer local run: `STRATA_MODEL_CASES=500 cargo test -p strata-engine --test model --release`.

use std::collections::BTreeMap;
use std::ops::Bound;

use proptest::prelude::*;
use strata_engine::{
    CompactionOptions, Db, KeyRange, MemtableKind, Options, Snapshot, StrategyKind, TableOptions,
    WriteBatch,
};

const CASES: u32 = 24;
const OPS_PER_CASE: usize = 600;

#[derive(Debug, Clone)]
enum Op {
    Put(u16, u16),
    Delete(u16),
    Batch(Vec<(u16, Option<u16>)>),
    Get(u16),
    Scan(u16, u16),
    TakeSnapshot,
    GetAt(usize, u16),
    ScanAt(usize),
    ReleaseSnapshot(usize),
    Flush,
    Compact,
    CompactRange(u16, u16),
    Reopen,
}

fn key(k: u16) -> Vec<u8> {
    // Varied lengths with shared prefixes exercise the key ordering.
    let mut key = format!("k{:03}", k % 300).into_bytes();
    if k.is_multiple_of(7) {
        key.push(0);
    }
    key
}

fn value(v: u16) -> Vec<u8> {
    vec![(v % 251) as u8; (v % 40) as usize]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => (any::<u16>(), any::<u16>()).prop_map(|(k, v)| Op::Put(k, v)),
        8 => any::<u16>().prop_map(Op::Delete),
        5 => proptest::collection::vec((any::<u16>(), proptest::option::of(any::<u16>())), 1..12).prop_map(Op::Batch),
        20 => any::<u16>().prop_map(Op::Get),
        6 => (any::<u16>(), any::<u16>()).prop_map(|(a, b)| Op::Scan(a, b)),
        2 => Just(Op::TakeSnapshot),
        4 => (any::<usize>(), any::<u16>()).prop_map(|(i, k)| Op::GetAt(i, k)),
        2 => any::<usize>().prop_map(Op::ScanAt),
        2 => any::<usize>().prop_map(Op::ReleaseSnapshot),
        2 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => (any::<u16>(), any::<u16>()).prop_map(|(a, b)| Op::CompactRange(a, b)),
        1 => Just(Op::Reopen),
    ]
}

fn options(kind: MemtableKind, strategy: StrategyKind) -> Options {
    Options {
        table_defaults: TableOptions {
            memtable_kind: kind,
            compaction: CompactionOptions {
                strategy,
                l0_compaction_trigger: 2,
                l0_slowdown_trigger: 6,
                l0_stop_trigger: 12,
                level_base_bytes: 64 * 1024,
                level_size_multiplier: 2,
                target_file_size_bytes: 64 * 1024,
                memory_bytes_max: 4 << 20,
                ..CompactionOptions::default()
            },
            memtable_size_bytes: 64 * 1024,
            sst_index_block_rows: 16,
            sst_row_group_rows: 64,
            sst_page_size_bytes: 1024,
            ..TableOptions::default()
        },
        write_buffer_budget_bytes: 1 << 20,
        block_cache_bytes: 64 * 1024,
        ..Options::default()
    }
}

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn scan_model(model: &Model, lower: &[u8], upper: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    if lower > upper {
        return Vec::new();
    }
    model
        .range::<[u8], _>((Bound::Included(lower), Bound::Excluded(upper)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn run(ops: &[Op], kind: MemtableKind, strategy: StrategyKind) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Some(Db::open(dir.path(), options(kind, strategy)).unwrap());
    let mut kv = db.as_ref().unwrap().kv("model").unwrap();
    let mut model = Model::new();
    let mut snapshots: Vec<(Snapshot, Model)> = Vec::new();
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Put(k, v) => {
                kv.put(key(*k), value(*v)).unwrap();
                model.insert(key(*k), value(*v));
            }
            Op::Delete(k) => {
                kv.delete(key(*k)).unwrap();
                model.remove(&key(*k));
            }
            Op::Batch(entries) => {
                let mut batch = WriteBatch::new();
                for (k, v) in entries {
                    match v {
                        Some(v) => {
                            batch.put(key(*k), value(*v));
                            model.insert(key(*k), value(*v));
                        }
                        None => {
                            batch.delete(key(*k));
                            model.remove(&key(*k));
                        }
                    }
                }
                kv.write(&batch).unwrap();
            }
            Op::Get(k) => {
                prop_assert_eq!(
                    kv.get(key(*k)).unwrap(),
                    model.get(&key(*k)).cloned(),
                    "step {}: get",
                    step
                );
            }
            Op::Scan(a, b) => {
                let (lower, upper) = (key(*a), key(*b));
                let got: Vec<_> = kv
                    .scan(lower.clone()..upper.clone())
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                prop_assert_eq!(
                    got,
                    scan_model(&model, &lower, &upper),
                    "step {}: scan",
                    step
                );
            }
            Op::TakeSnapshot => {
                if snapshots.len() < 4 {
                    snapshots.push((db.as_ref().unwrap().snapshot(), model.clone()));
                }
            }
            Op::GetAt(i, k) => {
                if !snapshots.is_empty() {
                    let (snapshot, past) = &snapshots[i % snapshots.len()];
                    prop_assert_eq!(
                        kv.get_at(snapshot, key(*k)).unwrap(),
                        past.get(&key(*k)).cloned(),
                        "step {}: get at snapshot",
                        step
                    );
                }
            }
            Op::ScanAt(i) => {
                if !snapshots.is_empty() {
                    let (snapshot, past) = &snapshots[i % snapshots.len()];
                    let got: Vec<_> = kv
                        .scan_at(snapshot, ..)
                        .unwrap()
                        .map(Result::unwrap)
                        .collect();
                    let want: Vec<_> = past.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                    prop_assert_eq!(got, want, "step {}: scan at snapshot", step);
                }
            }
            Op::ReleaseSnapshot(i) => {
                if !snapshots.is_empty() {
                    let index = i % snapshots.len();
                    snapshots.remove(index);
                }
            }
            Op::Flush => kv.flush().unwrap(),
            Op::Compact => kv.table().compact().unwrap(),
            Op::CompactRange(a, b) => {
                let range = KeyRange::new(Bound::Included(key(*a)), Bound::Excluded(key(*b)));
                kv.table().compact_range(&range).unwrap();
            }
            Op::Reopen => {
                snapshots.clear();
                drop(kv);
                db.take().unwrap().close().unwrap();
                db = Some(Db::open(dir.path(), options(kind, strategy)).unwrap());
                kv = db.as_ref().unwrap().kv("model").unwrap();
            }
        }
    }
    // Final full comparison, then once more after a reopen.
    let all: Vec<_> = kv.scan(..).unwrap().map(Result::unwrap).collect();
    prop_assert_eq!(
        all,
        model
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Vec<_>>()
    );
    snapshots.clear();
    drop(kv);
    db.take().unwrap().close().unwrap();
    let db = Db::open(dir.path(), options(kind, strategy)).unwrap();
    let kv = db.kv("model").unwrap();
    let all: Vec<_> = kv.scan(..).unwrap().map(Result::unwrap).collect();
    prop_assert_eq!(
        all,
        model.into_iter().collect::<Vec<_>>(),
        "after the final reopen"
    );
    Ok(())
}

fn cases() -> u32 {
    std::env::var("STRATA_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CASES)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_a_btreemap(
        ops in proptest::collection::vec(op(), OPS_PER_CASE / 2..OPS_PER_CASE),
        kind_index in 0usize..64,
        strategy_index in 0usize..3,
    ) {
        let kind = MemtableKind::ALL[kind_index % MemtableKind::ALL.len()];
        run(&ops, kind, StrategyKind::ALL[strategy_index])?;
    }
}

/// Regression seeds found by the property test are kept here as plain tests.
#[test]
fn delete_then_flush_then_reopen_keeps_the_key_deleted() {
    let ops = vec![
        Op::Put(1, 1),
        Op::Flush,
        Op::Compact,
        Op::Delete(1),
        Op::Flush,
        Op::CompactRange(0, 2),
        Op::Reopen,
        Op::Get(1),
        Op::Scan(0, 400),
    ];
    for kind in MemtableKind::ALL {
        for strategy in StrategyKind::ALL {
            run(&ops, *kind, *strategy).unwrap();
        }
    }
}
