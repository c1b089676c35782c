//! Deletion vectors and base scans against a model.
//!
//! A base scan ([`strata_engine::ReadView::base_scan`]) reads every SST file as it is, minus
//! the rows its deletion vector marks, anti-joins the memtable overlay on the key and adds the
//! overlay's live rows. These tests read the base files with the `parquet` crate's own reader
//! and the plan's row selections (as DataFusion's reader does), never through the merge, and
//! compare with a `BTreeMap` model after random upserts, deletes, flushes, compactions and
//! reopens: every key exactly once, with its newest value. The test also checks that the base
//! path is available whenever the view reads at the latest sequence (so the model really runs
//! through it), and that a snapshot pinned before later flushes keeps seeing its own data.

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use proptest::prelude::*;
use strata_engine::{
    CompactionOptions, Db, IngestOptions, KeyValue, Options, ReadView, StrategyKind, Table,
    TableOptions,
};

type Model = BTreeMap<i64, String>;

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("v", DataType::Utf8, true),
    ]))
}

fn options(strategy: StrategyKind) -> Options {
    Options {
        table_defaults: TableOptions {
            compaction: CompactionOptions {
                strategy,
                l0_compaction_trigger: 3,
                l0_slowdown_trigger: 8,
                l0_stop_trigger: 16,
                level_base_bytes: 128 * 1024,
                level_size_multiplier: 2,
                target_file_size_bytes: 64 * 1024,
                ..CompactionOptions::default()
            },
            memtable_size_bytes: 256 * 1024,
            sst_index_block_rows: 16,
            sst_row_group_rows: 64,
            sst_scan_row_group_rows: 64,
            ..TableOptions::default()
        },
        ..Options::default()
    }
}

fn rows(pairs: &[(i64, String)]) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(pairs.iter().map(|p| p.0))),
            Arc::new(StringArray::from_iter_values(
                pairs.iter().map(|p| p.1.as_str()),
            )),
        ],
    )
    .unwrap()
}

/// The table's rows as the base scan of `view` gives them, key -> value; fails on a key
/// returned twice.
fn read_base(view: &ReadView) -> Result<Option<Model>, String> {
    let Some(batches) = common::base_scan::base_rows(view)? else {
        return Ok(None);
    };
    let mut got = Model::new();
    for batch in &batches {
        let ids = batch.column(0).as_primitive::<Int64Type>();
        let values = batch.column(1).as_string::<i32>();
        for row in 0..batch.num_rows() {
            let previous = got.insert(ids.value(row), values.value(row).to_string());
            if previous.is_some() {
                return Err(format!("key {} returned twice", ids.value(row)));
            }
        }
    }
    Ok(Some(got))
}

#[derive(Debug, Clone)]
enum Op {
    Upsert(Vec<(u16, u16)>),
    /// A bulk load in chunks of a few rows (chunks overlap each other and older files).
    Ingest(Vec<(u16, u16)>, usize),
    Delete(Vec<u16>),
    Flush,
    Compact,
    Snapshot,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => proptest::collection::vec((any::<u16>(), any::<u16>()), 1..40).prop_map(Op::Upsert),
        3 => proptest::collection::vec(any::<u16>(), 1..10).prop_map(Op::Delete),
        2 => (proptest::collection::vec((any::<u16>(), any::<u16>()), 1..60), 1usize..20)
            .prop_map(|(rows, chunk)| Op::Ingest(rows, chunk)),
        4 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => Just(Op::Snapshot),
        1 => Just(Op::Reopen),
    ]
}

fn id(k: u16) -> i64 {
    i64::from(k % 500) * 3 - 700
}

fn table(db: &Db) -> Table {
    match db.table("t") {
        Ok(t) => t,
        Err(_) => db.create_table("t", schema(), &["id"]).unwrap(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn base_scans_match_the_model(
        ops in proptest::collection::vec(op(), 1..120),
        tiered in any::<bool>(),
        key_cache in 0usize..3,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let strategy = if tiered { StrategyKind::SizeTiered } else { StrategyKind::Leveled };
        // No key cache (every DV pass reads key columns), one that admits only small files
        // (writers give up gathering the keys of larger ones), and the default.
        let options = |strategy| Options {
            key_cache_bytes: [0, 16 * 1024, Options::default().key_cache_bytes][key_cache],
            ..options(strategy)
        };
        let mut db = Some(Db::open(dir.path(), options(strategy)).unwrap());
        let mut t = table(db.as_ref().unwrap());
        let mut model = Model::new();
        let mut snapshot: Option<(strata_engine::Snapshot, Model)> = None;
        for (step, op) in ops.iter().enumerate() {
            match op {
                Op::Upsert(pairs) => {
                    let pairs: Vec<(i64, String)> =
                        pairs.iter().map(|(k, v)| (id(*k), format!("v{v}"))).collect();
                    t.insert(&rows(&pairs)).unwrap();
                    for (k, v) in pairs {
                        model.insert(k, v);
                    }
                }
                Op::Ingest(pairs, chunk_rows) => {
                    let pairs: Vec<(i64, String)> =
                        pairs.iter().map(|(k, v)| (id(*k), format!("i{v}"))).collect();
                    let options = IngestOptions { chunk_rows: *chunk_rows, ..IngestOptions::default() };
                    let batches: Vec<_> = pairs.chunks(5).map(|c| Ok(rows(c))).collect();
                    t.ingest(batches, &options).unwrap();
                    for (k, v) in pairs {
                        model.insert(k, v);
                    }
                }
                Op::Delete(keys) => {
                    let ids: Vec<i64> = keys.iter().map(|k| id(*k)).collect();
                    let keys: Vec<Vec<KeyValue>> =
                        ids.iter().map(|k| vec![KeyValue::from(*k)]).collect();
                    t.delete_keys(&keys).unwrap();
                    for k in ids {
                        model.remove(&k);
                    }
                }
                Op::Flush => t.flush().unwrap(),
                Op::Compact => t.compact().unwrap(),
                Op::Snapshot => {
                    let db = db.as_ref().unwrap();
                    snapshot = Some((db.snapshot(), model.clone()));
                }
                Op::Reopen => {
                    snapshot = None;
                    drop(t);
                    db.take().unwrap().close().unwrap();
                    db = Some(Db::open(dir.path(), options(strategy)).unwrap());
                    t = table(db.as_ref().unwrap());
                }
            }
            let view = t.view().unwrap();
            let base = read_base(&view).map_err(|e| TestCaseError::fail(format!("step {step}: {e}")))?;
            let base = base.ok_or_else(|| TestCaseError::fail(format!(
                "step {step}: no base scan at the latest sequence ({op:?})"
            )))?;
            prop_assert_eq!(&base, &model, "step {}: base scan after {:?}", step, op);
            if let Some((snap, past)) = &snapshot {
                let view = t.view_at(snap).unwrap();
                if let Some(base) = read_base(&view).map_err(TestCaseError::fail)? {
                    prop_assert_eq!(&base, past, "step {}: base scan at a snapshot", step);
                }
            }
        }
    }
}

#[test]
fn overlapping_flushes_carry_deletion_vectors_and_count_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options(StrategyKind::None)).unwrap();
    let t = db.create_table("t", schema(), &["id"]).unwrap();
    let all: Vec<(i64, String)> = (0..1000).map(|i| (i, format!("a{i}"))).collect();
    t.insert(&rows(&all)).unwrap();
    t.flush().unwrap();
    // Every tenth key updated, every seventh deleted: a second, overlapping file.
    let updates: Vec<(i64, String)> = (0..1000)
        .step_by(10)
        .map(|i| (i, format!("b{i}")))
        .collect();
    t.insert(&rows(&updates)).unwrap();
    let deletes: Vec<Vec<KeyValue>> = (0..1000)
        .step_by(7)
        .map(|i| vec![KeyValue::from(i)])
        .collect();
    t.delete_keys(&deletes).unwrap();
    t.flush().unwrap();
    let view = t.view().unwrap();
    let plan = view.base_scan(None).unwrap().expect("base scan");
    assert_eq!(plan.files.len(), 2);
    assert!(!plan.disjoint);
    assert_eq!(plan.overlay.keys(), 0);
    let deleted_keys = (0..1000).filter(|i| i % 7 == 0).count() as u64;
    assert_eq!(plan.base_live_rows(), 1000 - deleted_keys);
    let metrics = db.metrics();
    assert!(metrics.get("dv_files_written").unwrap() >= 2);
    // Reopen: the DVs load from their files and say the same.
    drop((view, plan, t));
    db.close().unwrap();
    let db = Db::open(dir.path(), options(StrategyKind::None)).unwrap();
    let t = db.table("t").unwrap();
    let plan = t
        .view()
        .unwrap()
        .base_scan(None)
        .unwrap()
        .expect("base scan");
    assert_eq!(plan.base_live_rows(), 1000 - deleted_keys);
    let base = read_base(&t.view().unwrap()).unwrap().unwrap();
    assert_eq!(base.len() as u64, 1000 - deleted_keys);
    assert_eq!(base[&10], "b10");
    assert!(!base.contains_key(&14));
}

/// With the key cache, the plan resolves the overlay: the base rows it hides join their
/// files' deleted rows. Without it, the overlay keeps its keys as a probe (the anti-join).
#[test]
fn an_overlay_tombstone_or_newer_version_hides_the_base_row() {
    for key_cache in [true, false] {
        overlay_hides_base_rows(key_cache);
    }
}

fn overlay_hides_base_rows(key_cache: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut options = options(StrategyKind::None);
    if !key_cache {
        options.key_cache_bytes = 0;
    }
    let db = Db::open(dir.path(), options).unwrap();
    let t = db.create_table("t", schema(), &["id"]).unwrap();
    t.insert(&rows(&[
        (1, "match".into()),
        (2, "match".into()),
        (3, "x".into()),
    ]))
    .unwrap();
    t.flush().unwrap();
    t.delete_keys(&[vec![KeyValue::from(1i64)]]).unwrap();
    t.insert(&rows(&[(2, "changed".into()), (4, "new".into())]))
        .unwrap();
    let view = t.view().unwrap();
    let plan = view.base_scan(None).unwrap().expect("base scan");
    assert_eq!((plan.overlay.keys(), plan.overlay.tombstones()), (3, 1));
    // Keys 1 and 2 hide base rows; 4 lies beyond the file's keys.
    assert_eq!(plan.overlay.hides_nothing(), key_cache);
    assert_eq!(
        plan.overlay.hidden_base_rows(),
        if key_cache { 2 } else { 0 }
    );
    assert_eq!(plan.base_live_rows(), if key_cache { 1 } else { 3 });
    let base = read_base(&view).unwrap().unwrap();
    let want: Model = [(2, "changed"), (3, "x"), (4, "new")]
        .into_iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect();
    assert_eq!(base, want);
}

#[test]
fn a_damaged_deletion_vector_is_rebuilt_never_read() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(dir.path(), options(StrategyKind::None)).unwrap();
        let t = db.create_table("t", schema(), &["id"]).unwrap();
        t.insert(&rows(
            &(0..100).map(|i| (i, format!("a{i}"))).collect::<Vec<_>>(),
        ))
        .unwrap();
        t.flush().unwrap();
        t.insert(&rows(
            &(0..100)
                .step_by(3)
                .map(|i| (i, format!("b{i}")))
                .collect::<Vec<_>>(),
        ))
        .unwrap();
        t.flush().unwrap();
        db.close().unwrap();
    }
    let dvs: Vec<_> = walk(dir.path())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "dv"))
        .collect();
    assert_eq!(dvs.len(), 1, "one DV: the older file's");
    let mut bytes = std::fs::read(&dvs[0]).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&dvs[0], bytes).unwrap();
    let db = Db::open(dir.path(), options(StrategyKind::None)).unwrap();
    let t = db.table("t").unwrap();
    let base = read_base(&t.view().unwrap())
        .unwrap()
        .expect("rebuilt at open");
    assert_eq!(base.len(), 100);
    assert_eq!(base[&3], "b3");
    assert_eq!(base[&4], "a4");
    assert!(!dvs[0].exists(), "the damaged DV file is replaced");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn selection_runs_count_live_rows() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options(StrategyKind::None)).unwrap();
    let t = db.create_table("t", schema(), &["id"]).unwrap();
    t.insert(&rows(
        &(0..50).map(|i| (i, "a".to_string())).collect::<Vec<_>>(),
    ))
    .unwrap();
    t.flush().unwrap();
    t.delete_keys(
        &(0..50)
            .step_by(2)
            .map(|i| vec![KeyValue::from(i)])
            .collect::<Vec<_>>(),
    )
    .unwrap();
    t.flush().unwrap();
    let plan = t.view().unwrap().base_scan(None).unwrap().unwrap();
    let live: u64 = plan
        .files
        .iter()
        .map(|f| {
            f.selection(0, f.meta.rows)
                .iter()
                .filter(|r| r.0)
                .map(|r| r.1)
                .sum::<u64>()
        })
        .sum();
    assert_eq!(live, 25);
    assert_eq!(plan.base_live_rows(), 25);
}

/// Flushes, compactions and bulk loads put the keys of the files they write into the key
/// cache: later DV passes and scan plans find every file's keys there and read no key column.
#[test]
fn written_files_bring_their_keys_to_the_key_cache() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options(StrategyKind::None)).unwrap();
    let t = db.create_table("t", schema(), &["id"]).unwrap();
    let read = |db: &Db| {
        let m = db.metrics();
        (
            m.get("key_cache_misses").unwrap(),
            m.get("dv_rows_read").unwrap(),
        )
    };
    let mut model: Model = (0..300).map(|i| (i, format!("a{i}"))).collect();
    t.insert(&rows(&model.clone().into_iter().collect::<Vec<_>>()))
        .unwrap();
    t.flush().unwrap();
    // An overlapping flush: its DV pass marks rows of the first file.
    let newer: Vec<(i64, String)> = (0..300).step_by(3).map(|i| (i, format!("b{i}"))).collect();
    t.insert(&rows(&newer)).unwrap();
    t.delete_keys(&[vec![KeyValue::from(1i64)]]).unwrap();
    model.extend(newer);
    model.remove(&1);
    t.flush().unwrap();
    // A bulk load over existing keys, then a compaction of everything.
    let loaded: Vec<(i64, String)> = (250..400).map(|i| (i, format!("i{i}"))).collect();
    t.ingest(
        vec![Ok(rows(&loaded))],
        &IngestOptions {
            chunk_rows: 60,
            ..IngestOptions::default()
        },
    )
    .unwrap();
    model.extend(loaded);
    t.compact().unwrap();
    // The deleted inputs' keys left the cache: it holds the outputs' keys (9 bytes a BIGINT
    // key, packed, a little slack) and nothing else.
    let stats = t.stats();
    let files = stats.files_per_level.iter().sum::<usize>() as u64;
    let cached = db.metrics().get("key_cache_bytes").unwrap();
    assert!(
        cached <= stats.sst_rows * 9 * 9 / 8 + 64 * files,
        "{cached} bytes of keys cached for {} rows in {files} files",
        stats.sst_rows
    );
    t.insert(&rows(&[(2, "c2".into())])).unwrap();
    t.delete_keys(&[vec![KeyValue::from(3i64)]]).unwrap();
    model.insert(2, "c2".into());
    model.remove(&3);
    // The plan resolves its overlay against the compacted files' keys.
    let view = t.view().unwrap();
    let plan = view.base_scan(None).unwrap().expect("base scan");
    assert_eq!(plan.overlay.hidden_base_rows(), 2);
    assert_eq!(read_base(&view).unwrap().unwrap(), model);
    assert_eq!(
        read(&db),
        (0, 0),
        "(key cache misses, key rows read by DV passes)"
    );
}

/// A bulk load that fails leaves no keys of the files it had written in the key cache.
#[test]
fn a_failed_load_leaves_no_keys_in_the_key_cache() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options(StrategyKind::None)).unwrap();
    let t = db.create_table("t", schema(), &["id"]).unwrap();
    let chunks: Vec<strata_engine::Result<RecordBatch>> = vec![
        Ok(rows(
            &(0..100).map(|i| (i, format!("a{i}"))).collect::<Vec<_>>(),
        )),
        Ok(rows(
            &(100..200).map(|i| (i, format!("a{i}"))).collect::<Vec<_>>(),
        )),
        Err(strata_engine::Error::InvalidArgument(
            "the source failed".into(),
        )),
    ];
    let options = IngestOptions {
        chunk_rows: 50,
        ..IngestOptions::default()
    };
    assert!(t.ingest(chunks, &options).is_err());
    assert_eq!(t.stats().sst_rows, 0);
    assert_eq!(db.metrics().get("key_cache_bytes"), Some(0));
}

#[test]
fn a_view_pinned_before_a_dv_update_keeps_its_own_deletion_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options(StrategyKind::None)).unwrap();
    let t = db.create_table("t", schema(), &["id"]).unwrap();
    t.insert(&rows(
        &(0..200).map(|i| (i, format!("a{i}"))).collect::<Vec<_>>(),
    ))
    .unwrap();
    t.flush().unwrap();
    let pinned = t.view().unwrap();
    let before = read_base(&pinned).unwrap().unwrap();
    assert_eq!(before.len(), 200);
    // A newer file supersedes half of the keys and deletes a quarter: the older file gets a
    // new DV, which the pinned view must not see (its version keeps the old one).
    t.insert(&rows(
        &(0..200)
            .step_by(2)
            .map(|i| (i, format!("b{i}")))
            .collect::<Vec<_>>(),
    ))
    .unwrap();
    t.delete_keys(
        &(1..200)
            .step_by(4)
            .map(|i| vec![KeyValue::from(i)])
            .collect::<Vec<_>>(),
    )
    .unwrap();
    t.flush().unwrap();
    assert_eq!(read_base(&pinned).unwrap().unwrap(), before);
    let now = read_base(&t.view().unwrap()).unwrap().unwrap();
    assert_eq!(now.len(), 150);
    assert_eq!(now[&2], "b2");
    assert!(!now.contains_key(&5));
    // After a full compaction too.
    t.compact().unwrap();
    assert_eq!(read_base(&pinned).unwrap().unwrap(), before);
    assert_eq!(read_base(&t.view().unwrap()).unwrap().unwrap(), now);
}

/// A base-scan plan is reused while the table is unchanged, brought up to date with the keys
/// written since (new keys, newer versions, deletes), used by a snapshot between the two
/// kept plans of its ranges, and made afresh after a flush and for a snapshot older than every
/// kept plan (whose plan does not replace the newer ones).
#[test]
fn a_scan_plan_is_reused_and_brought_up_to_date_until_a_flush() {
    let dir = tempfile::tempdir().unwrap();
    // The queries' own planning is counted: no refresher.
    let db = Db::open(
        dir.path(),
        Options {
            scan_plan_refresh_ms: 0,
            ..options(StrategyKind::None)
        },
    )
    .unwrap();
    let t = db.create_table("t", schema(), &["id"]).unwrap();
    let mut model: Model = (0..100).map(|i| (i, format!("a{i}"))).collect();
    let all: Vec<(i64, String)> = model.clone().into_iter().collect();
    t.insert(&rows(&all)).unwrap();
    t.flush().unwrap();
    let (oldest, first) = (db.snapshot(), model.clone());
    t.insert(&rows(&[(5, "b5".into())])).unwrap();
    t.delete_keys(&[vec![KeyValue::from(7i64)]]).unwrap();
    model.insert(5, "b5".into());
    model.remove(&7);
    let counters = |db: &Db| {
        let m = db.metrics();
        [
            m.get("scan_plans_made").unwrap(),
            m.get("scan_plans_reused").unwrap(),
            m.get("scan_plans_updated").unwrap(),
        ]
    };
    let [made, reused, updated] = counters(&db);
    let check = |model: &Model| {
        let view = t.view().unwrap();
        let plan = view.base_scan(None).unwrap().expect("base scan");
        let tombstones = plan.overlay.tombstones();
        let live = plan.base_live_rows() + plan.overlay.rows().num_rows() as u64;
        assert_eq!(live, model.len() as u64, "exact count from the plan");
        assert_eq!(read_base(&view).unwrap().unwrap(), *model);
        tombstones
    };
    assert_eq!(check(&model), 1);
    assert_eq!(counters(&db), [made + 1, reused + 1, updated]);

    // A snapshot, then writes: the latest view brings the plan up to date.
    let before_write = db.snapshot();
    let past = model.clone();
    t.insert(&rows(&[
        (5, "c5".into()),
        (500, "new".into()),
        (7, "back".into()),
    ]))
    .unwrap();
    t.delete_keys(&[vec![KeyValue::from(9i64)], vec![KeyValue::from(501i64)]])
        .unwrap();
    for (k, v) in [(5, "c5"), (500, "new"), (7, "back")] {
        model.insert(k, v.to_string());
    }
    model.remove(&9);
    // Tombstones now: 9 and 501 (7 was put back).
    assert_eq!(check(&model), 2);
    assert_eq!(counters(&db), [made + 1, reused + 2, updated + 1]);
    // The snapshot uses the plan kept from before the writes (the two newest plans of a
    // scan's ranges are kept), and does not see the writes ...
    let at_snapshot = t.view_at(&before_write).unwrap();
    assert_eq!(read_base(&at_snapshot).unwrap().unwrap(), past);
    assert_eq!(counters(&db), [made + 1, reused + 3, updated + 1]);
    // ... nor replace the newer plan.
    assert_eq!(check(&model), 2);
    assert_eq!(counters(&db), [made + 1, reused + 5, updated + 1]);
    // A snapshot older than every kept plan plans afresh.
    let at_start = t.view_at(&oldest).unwrap();
    assert_eq!(read_base(&at_start).unwrap().unwrap(), first);
    assert_eq!(counters(&db), [made + 2, reused + 5, updated + 1]);
    assert_eq!(check(&model), 2);
    assert_eq!(counters(&db), [made + 2, reused + 7, updated + 1]);

    // A flush installs a new version: planned afresh, same rows.
    t.flush().unwrap();
    let [made_now, ..] = counters(&db);
    assert_eq!(check(&model), 0);
    assert_eq!(counters(&db)[0], made_now + 1);
}

/// Many small writes between queries: each query brings the kept plan up to date with the
/// keys written since (their rows kept apart from the plan's settled ones, which they
/// supersede) and, once those pass a fraction of the overlay, consolidates it. Every query's
/// rows and exact count equal the model's, the plan is never made again, and a view pinned
/// along the way keeps reading its own state.
#[test]
fn a_plan_brought_up_to_date_many_times_reads_what_was_written() {
    // The queries do every update and consolidation: no refresher.
    let consolidations = brought_up_to_date_many_times(0);
    // 3,600 keys over an overlay of about 2,000: kept apart up to 1,024 (a query consolidates
    // at four times what the refresher would), then merged.
    assert!(
        (2..=4).contains(&consolidations),
        "{consolidations} consolidations"
    );
}

/// The same with the plan refresher on: it and the queries bring the kept plan up to date and
/// consolidate it concurrently (the refresher past 256 recent keys, a query past 1,024, so
/// there are at least two consolidations whoever makes them), and the queries read what was
/// written.
#[test]
fn a_plan_the_refresher_consolidates_reads_what_was_written() {
    let consolidations = brought_up_to_date_many_times(1);
    assert!(consolidations >= 2, "{consolidations} consolidations");
}

/// 300 rounds of random writes over a base file and an overlay, each followed by a query
/// whose rows and exact count are checked (see the two tests above), with the plan refresher
/// running every `refresh_ms` (0: none); returns how many consolidations the rounds made.
fn brought_up_to_date_many_times(refresh_ms: u64) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    // No flush: one version, one plan brought up to date throughout.
    let mut opts = Options {
        scan_plan_refresh_ms: refresh_ms,
        ..options(StrategyKind::None)
    };
    opts.table_defaults.memtable_size_bytes = 64 << 20;
    let db = Db::open(dir.path(), opts).unwrap();
    let t = db.create_table("t", schema(), &["id"]).unwrap();
    let mut model: Model = (0..3000).map(|i| (i, format!("a{i}"))).collect();
    let all: Vec<(i64, String)> = model.clone().into_iter().collect();
    t.insert(&rows(&all)).unwrap();
    t.flush().unwrap();
    // An overlay of 2,000 keys (puts and deletes, inside and past the base file) ...
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |bound: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % bound) as i64
    };
    let mut write = |model: &mut Model, n: usize, round: usize| {
        let mut puts = Vec::new();
        let mut deletes = Vec::new();
        for _ in 0..n {
            let key = next(4000);
            if next(5) == 0 {
                deletes.push(key);
            } else {
                puts.push((key, format!("r{round}k{key}")));
            }
        }
        // Within one write the put comes after the delete of the same key.
        t.delete_keys(
            &deletes
                .iter()
                .map(|k| vec![KeyValue::from(*k)])
                .collect::<Vec<_>>(),
        )
        .unwrap();
        for k in &deletes {
            model.remove(k);
        }
        let mut batch: BTreeMap<i64, String> = BTreeMap::new();
        for (k, v) in puts {
            batch.insert(k, v);
        }
        let batch: Vec<(i64, String)> = batch.into_iter().collect();
        t.insert(&rows(&batch)).unwrap();
        model.extend(batch);
    };
    write(&mut model, 2000, 0);
    let metric = |name: &str| db.metrics().get(name).unwrap();
    let check = |model: &Model| {
        let view = t.view().unwrap();
        let plan = view.base_scan(None).unwrap().expect("base scan");
        let live = plan.base_live_rows() + plan.overlay.rows().num_rows() as u64;
        assert_eq!(live, model.len() as u64, "exact count from the plan");
        assert_eq!(read_base(&view).unwrap().unwrap(), *model);
    };
    check(&model);
    let (made, updated, consolidated) = (
        metric("scan_plans_made"),
        metric("scan_plans_updated"),
        metric("scan_plan_consolidations"),
    );
    // ... then 300 rounds of 12 writes, a query after each: 3,600 changed keys, past the
    // recent keys a query's update keeps before it consolidates.
    let mut pinned = None;
    for round in 1..=300 {
        write(&mut model, 12, round);
        check(&model);
        if round == 100 {
            pinned = Some((db.snapshot(), model.clone()));
        }
    }
    assert_eq!(metric("scan_plans_made"), made, "never planned afresh");
    if refresh_ms == 0 {
        assert_eq!(metric("scan_plans_updated"), updated + 300);
    }
    let consolidations = metric("scan_plan_consolidations") - consolidated;
    let (snapshot, then) = pinned.unwrap();
    assert_eq!(
        read_base(&t.view_at(&snapshot).unwrap()).unwrap().unwrap(),
        then
    );
    check(&model);
    consolidations
}

/// The plan refresher keeps a scanned table's plan current: writes after a scan and a flush
/// are planned off the query's path, and the query that follows uses the refreshed plan as it
/// is, with the same rows; a view pinned before the refresh still reads its own state. (A
/// refresh counts only when it changed the plan, so each wait below ends with the refresh
/// that took the one write or flush before it.)
#[test]
fn the_refresher_keeps_a_scanned_tables_plan_current() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(
        dir.path(),
        Options {
            scan_plan_refresh_ms: 5,
            ..options(StrategyKind::None)
        },
    )
    .unwrap();
    let t = db.create_table("t", schema(), &["id"]).unwrap();
    let mut model: Model = (0..200).map(|i| (i, format!("a{i}"))).collect();
    let all: Vec<(i64, String)> = model.clone().into_iter().collect();
    t.insert(&rows(&all)).unwrap();
    t.flush().unwrap();
    t.insert(&rows(&[(3, "b3".into())])).unwrap();
    t.delete_keys(&[vec![KeyValue::from(7i64)]]).unwrap();
    model.insert(3, "b3".into());
    model.remove(&7);
    let metric = |name: &str| db.metrics().get(name).unwrap();
    // Waits until the refresher has refreshed at least `n` plans more than `from`. Under 4 s:
    // the refresher idles for 5 s while no table was scanned (as at the start below), so only
    // the first scan's wake-up lets it refresh in time.
    let wait_refreshed = |from: u64, n: u64| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(4);
        while metric("scan_plans_refreshed") < from + n {
            assert!(
                std::time::Instant::now() < deadline,
                "the refresher did not refresh the plan"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    };
    // Nothing scanned yet: nothing refreshed.
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(metric("scan_plans_refreshed"), 0);
    assert_eq!(read_base(&t.view().unwrap()).unwrap().unwrap(), model);

    let pinned = t.view().unwrap();
    let before = model.clone();
    let refreshed = metric("scan_plans_refreshed");
    // One write batch (visible at once), so the first refresh that counts has it all.
    t.insert(&rows(&[
        (5, "c5".into()),
        (7, "back".into()),
        (900, "new".into()),
    ]))
    .unwrap();
    model.insert(5, "c5".into());
    model.insert(7, "back".into());
    model.insert(900, "new".into());
    wait_refreshed(refreshed, 1);
    // The query finds the plan current: no planning of its own, the right rows.
    let (made, updated) = (metric("scan_plans_made"), metric("scan_plans_updated"));
    assert_eq!(read_base(&t.view().unwrap()).unwrap().unwrap(), model);
    assert_eq!(metric("scan_plans_made"), made);
    assert_eq!(metric("scan_plans_updated"), updated);
    // The view pinned before those writes reads its own state.
    assert_eq!(read_base(&pinned).unwrap().unwrap(), before);

    // A flush makes a new version: the refresher plans it.
    let refreshed = metric("scan_plans_refreshed");
    t.flush().unwrap();
    wait_refreshed(refreshed, 1);
    let made = metric("scan_plans_made");
    assert_eq!(read_base(&t.view().unwrap()).unwrap().unwrap(), model);
    assert_eq!(metric("scan_plans_made"), made);
    assert_eq!(read_base(&pinned).unwrap().unwrap(), before);
}
