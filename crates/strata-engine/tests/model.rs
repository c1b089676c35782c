//! Model-based property test: random sequences of puts, deletes, atomic batches, gets, scans,
//! snapshots, flushes, manual compactions and reopens against a `BTreeMap`, with zero
//! divergences allowed. Each case picks a memtable variant and a compaction strategy (small
//! triggers, so background compactions run between the operations too).
//!
//! Every put and delete also goes to a second, typed table whose value columns are nested
//! (a struct holding a list with NULL elements, a text that may be NULL and a nanosecond
//! interval, NULL as a whole in some rows, and a map), checked by gets, scans, flushes,
//! compactions and reopens against its own `BTreeMap` (snapshot reads are checked on the
//! key-value table only).
//!
//! CI runs `CASES` cases of up to `OPS_PER_CASE` operations (at least 10,000 operations in
//! total). For a longer local run: `STRATA_MODEL_CASES=500 cargo test -p strata-engine --test integration --release -- model::`.

use std::collections::BTreeMap;
use std::ops::Bound;

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Int32Builder, Int64Array, IntervalMonthDayNanoBuilder, ListBuilder,
    MapBuilder, RecordBatch, StringBuilder, StructBuilder, UInt16Array,
};
use arrow::datatypes::{DataType, Field, Fields, IntervalMonthDayNano, IntervalUnit, Schema};
use proptest::prelude::*;
use strata_engine::{
    CompactionOptions, Db, KeyRange, KeyValue, MemtableKind, Options, ScanOptions, Snapshot,
    StrategyKind, Table, TableOptions, WriteBatch,
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
            sst_scan_row_group_rows: 64,
            sst_page_size_bytes: 1024,
            ..TableOptions::default()
        },
        write_buffer_budget_bytes: 1 << 20,
        block_cache_bytes: 64 * 1024,
        ..Options::default()
    }
}

/// The typed table's key of `key(k)`: one per distinct key.
fn typed_key(k: u16) -> i64 {
    i64::from(k % 300) * 2 + i64::from(k.is_multiple_of(7))
}

fn struct_fields() -> Fields {
    Fields::from(vec![
        Field::new(
            "l",
            DataType::List(Arc::new(Field::new("item", DataType::Int32, true))),
            true,
        ),
        Field::new("s", DataType::Utf8, true),
        Field::new("iv", DataType::Interval(IntervalUnit::MonthDayNano), true),
    ])
}

/// Rows `(key, v)` of the typed table: the nested values follow from `v`.
fn typed_batch(rows: &[(i64, u16)]) -> RecordBatch {
    let mut st = StructBuilder::from_fields(struct_fields(), rows.len());
    let mut map = MapBuilder::new(None, StringBuilder::new(), Int32Builder::new());
    for (_, v) in rows {
        let v = *v;
        let list = st
            .field_builder::<ListBuilder<Box<dyn arrow::array::ArrayBuilder>>>(0)
            .unwrap();
        for j in 0..v % 5 {
            let item = list
                .values()
                .as_any_mut()
                .downcast_mut::<Int32Builder>()
                .unwrap();
            item.append_option(
                (!(u32::from(v) + u32::from(j)).is_multiple_of(3))
                    .then_some(i32::from(j) * i32::from(v)),
            );
        }
        list.append(!v.is_multiple_of(13));
        st.field_builder::<StringBuilder>(1)
            .unwrap()
            .append_option((!v.is_multiple_of(4)).then(|| format!("s{v}")));
        st.field_builder::<IntervalMonthDayNanoBuilder>(2)
            .unwrap()
            .append_value(IntervalMonthDayNano::new(
                i32::from(v),
                -i32::from(v),
                i64::from(v) * 1_000_001,
            ));
        st.append(!v.is_multiple_of(11));
        if v.is_multiple_of(6) {
            map.append(false).unwrap();
        } else {
            for j in 0..v % 3 {
                map.keys().append_value(format!("k{j}"));
                map.values().append_option((j != 1).then_some(i32::from(v)));
            }
            map.append(true).unwrap();
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|(k, _)| *k))),
        Arc::new(UInt16Array::from_iter_values(rows.iter().map(|(_, v)| *v))),
        Arc::new(st.finish()),
        Arc::new(map.finish()),
    ];
    let fields: Vec<Field> = ["id", "v", "st", "m"]
        .iter()
        .zip(&columns)
        .map(|(name, c)| Field::new(*name, c.data_type().clone(), *name != "id"))
        .collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}

type TypedModel = BTreeMap<i64, u16>;

fn typed_put(table: &Table, typed: &mut TypedModel, k: u16, v: u16) {
    table.insert(&typed_batch(&[(typed_key(k), v)])).unwrap();
    typed.insert(typed_key(k), v);
}

fn typed_delete(table: &Table, typed: &mut TypedModel, k: u16) {
    table
        .delete_keys(&[vec![KeyValue::from(typed_key(k))]])
        .unwrap();
    typed.remove(&typed_key(k));
}

/// The whole typed table as one batch, and the batch its model says it holds.
fn typed_scan(table: &Table, typed: &TypedModel) -> (RecordBatch, RecordBatch) {
    let want = typed_batch(&typed.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>());
    let got: Vec<RecordBatch> = table
        .scan(KeyRange::all(), ScanOptions::default())
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let got = arrow::compute::concat_batches(&want.schema(), &got).unwrap();
    (got, want)
}

fn check_typed(table: &Table, typed: &TypedModel, step: usize) -> Result<(), TestCaseError> {
    let (got, want) = typed_scan(table, typed);
    prop_assert_eq!(
        got.num_rows(),
        want.num_rows(),
        "step {}: typed scan rows",
        step
    );
    for (g, w) in got.columns().iter().zip(want.columns()) {
        prop_assert_eq!(g.to_data(), w.to_data(), "step {}: typed scan", step);
    }
    Ok(())
}

fn check_typed_get(
    table: &Table,
    typed: &TypedModel,
    k: u16,
    step: usize,
) -> Result<(), TestCaseError> {
    let key = typed_key(k);
    let found = table.get(&[KeyValue::from(key)]).unwrap();
    match typed.get(&key) {
        None => prop_assert!(found.is_none(), "step {}: typed get of a deleted key", step),
        Some(v) => {
            let found = found.unwrap();
            let want = typed_batch(&[(key, *v)]);
            for (g, w) in found.columns().iter().zip(want.columns()) {
                prop_assert_eq!(g.to_data(), w.to_data(), "step {}: typed get", step);
            }
        }
    }
    Ok(())
}

fn typed_table(db: &Db) -> Table {
    match db.table("typed") {
        Ok(table) => table,
        Err(_) => db
            .create_table("typed", typed_batch(&[]).schema(), &["id"])
            .unwrap(),
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
    let mut table = typed_table(db.as_ref().unwrap());
    let mut typed = TypedModel::new();
    let mut model = Model::new();
    let mut snapshots: Vec<(Snapshot, Model)> = Vec::new();
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Put(k, v) => {
                kv.put(key(*k), value(*v)).unwrap();
                model.insert(key(*k), value(*v));
                typed_put(&table, &mut typed, *k, *v);
            }
            Op::Delete(k) => {
                kv.delete(key(*k)).unwrap();
                model.remove(&key(*k));
                typed_delete(&table, &mut typed, *k);
            }
            Op::Batch(entries) => {
                let mut batch = WriteBatch::new();
                for (k, v) in entries {
                    match v {
                        Some(v) => {
                            batch.put(key(*k), value(*v));
                            model.insert(key(*k), value(*v));
                            typed_put(&table, &mut typed, *k, *v);
                        }
                        None => {
                            batch.delete(key(*k));
                            model.remove(&key(*k));
                            typed_delete(&table, &mut typed, *k);
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
                check_typed_get(&table, &typed, *k, step)?;
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
                check_typed(&table, &typed, step)?;
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
            Op::Flush => {
                kv.flush().unwrap();
                table.flush().unwrap();
            }
            Op::Compact => {
                kv.table().compact().unwrap();
                table.compact().unwrap();
            }
            Op::CompactRange(a, b) => {
                let range = KeyRange::new(Bound::Included(key(*a)), Bound::Excluded(key(*b)));
                kv.table().compact_range(&range).unwrap();
                let (a, b) = (typed_key(*a), typed_key(*b));
                let range = KeyRange::from_values(
                    table.table_schema(),
                    Bound::Included(&[KeyValue::from(a.min(b))]),
                    Bound::Excluded(&[KeyValue::from(a.max(b))]),
                )
                .unwrap();
                table.compact_range(&range).unwrap();
            }
            Op::Reopen => {
                snapshots.clear();
                drop(kv);
                drop(table);
                db.take().unwrap().close().unwrap();
                db = Some(Db::open(dir.path(), options(kind, strategy)).unwrap());
                kv = db.as_ref().unwrap().kv("model").unwrap();
                table = typed_table(db.as_ref().unwrap());
                check_typed(&table, &typed, step)?;
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
    check_typed(&table, &typed, ops.len())?;
    snapshots.clear();
    drop(kv);
    drop(table);
    db.take().unwrap().close().unwrap();
    let db = Db::open(dir.path(), options(kind, strategy)).unwrap();
    check_typed(&typed_table(&db), &typed, ops.len())?;
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
