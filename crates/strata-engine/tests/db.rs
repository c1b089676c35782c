//! End-to-end behaviour of the engine through its public API.

use std::sync::Arc;

use arrow::array::{Array, AsArray, Int32Array, Int64Array, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Int32Type, Int64Type, Schema, SchemaRef, UInt8Type};
use strata_engine::{
    Db, Error, KeyRange, KeyValue, MemtableKind, Mutation, Options, ScanOptions, TableOptions,
    WriteBatch, WriteOptions,
};

fn users_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("age", DataType::Int32, true),
    ]))
}

fn users(ids: &[i64], names: &[Option<&str>], ages: &[Option<i32>]) -> RecordBatch {
    RecordBatch::try_new(
        users_schema(),
        vec![
            Arc::new(Int64Array::from(ids.to_vec())),
            Arc::new(StringArray::from(names.to_vec())),
            Arc::new(Int32Array::from(ages.to_vec())),
        ],
    )
    .unwrap()
}

fn small_options() -> Options {
    Options {
        table_defaults: TableOptions {
            memtable_size_bytes: 64 * 1024,
            sst_index_block_rows: 16,
            sst_row_group_rows: 128,
            sst_scan_row_group_rows: 128,
            ..TableOptions::default()
        },
        write_buffer_budget_bytes: 8 << 20,
        ..Options::default()
    }
}

fn collect_ids(table: &strata_engine::Table, range: KeyRange) -> Vec<(i64, Option<String>)> {
    let mut out = Vec::new();
    for batch in table.scan(range, ScanOptions::default()).unwrap() {
        let batch = batch.unwrap();
        let ids = batch.column(0).as_primitive::<Int64Type>();
        let names = batch.column(1).as_string::<i32>();
        for i in 0..batch.num_rows() {
            out.push((
                ids.value(i),
                names.is_valid(i).then(|| names.value(i).to_string()),
            ));
        }
    }
    out
}

#[test]
fn insert_get_scan_delete_across_flush_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), small_options()).unwrap();
    let table = db.create_table("users", users_schema(), &["id"]).unwrap();
    table
        .insert(&users(
            &[3, 1, 2],
            &[Some("c"), Some("a"), None],
            &[Some(30), Some(10), None],
        ))
        .unwrap();
    let row = table.get(&[KeyValue::from(1i64)]).unwrap().unwrap();
    assert_eq!(row.num_rows(), 1);
    assert_eq!(row.column(1).as_string::<i32>().value(0), "a");
    assert_eq!(
        collect_ids(&table, KeyRange::all()),
        vec![(1, Some("a".into())), (2, None), (3, Some("c".into()))]
    );
    // Upsert replaces; delete hides.
    table
        .insert(&users(&[2], &[Some("b")], &[Some(20)]))
        .unwrap();
    table.delete_keys(&[vec![KeyValue::from(3i64)]]).unwrap();
    assert_eq!(
        collect_ids(&table, KeyRange::all()),
        vec![(1, Some("a".into())), (2, Some("b".into()))]
    );
    table.flush().unwrap();
    assert_eq!(table.stats().files_per_level, vec![1]);
    assert!(table.get(&[KeyValue::from(3i64)]).unwrap().is_none());
    // More writes on top of the SST, then reopen: WAL + SST together.
    table
        .insert(&users(&[4, 1], &[Some("d"), Some("A")], &[None, None]))
        .unwrap();
    drop(table);
    db.close().unwrap();
    let db = Db::open(dir.path(), small_options()).unwrap();
    let table = db.table("users").unwrap();
    assert_eq!(
        collect_ids(&table, KeyRange::all()),
        vec![
            (1, Some("A".into())),
            (2, Some("b".into())),
            (4, Some("d".into()))
        ]
    );
    let bounded = KeyRange::from_values(
        table.table_schema(),
        std::ops::Bound::Included(&[KeyValue::from(2i64)]),
        std::ops::Bound::Excluded(&[KeyValue::from(4i64)]),
    )
    .unwrap();
    assert_eq!(collect_ids(&table, bounded), vec![(2, Some("b".into()))]);
}

#[test]
fn many_flushes_and_a_large_table() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), small_options()).unwrap();
    let table = db.create_table("t", users_schema(), &["id"]).unwrap();
    let n = 20_000i64;
    for chunk in (0..n).collect::<Vec<_>>().chunks(1_000) {
        let ids: Vec<i64> = chunk.iter().map(|i| (i * 7919) % n).collect();
        let names: Vec<String> = ids.iter().map(|i| format!("name-{i}")).collect();
        let names: Vec<Option<&str>> = names.iter().map(|s| Some(s.as_str())).collect();
        let ages: Vec<Option<i32>> = ids.iter().map(|i| Some(*i as i32)).collect();
        table.insert(&users(&ids, &names, &ages)).unwrap();
    }
    db.flush().unwrap();
    assert!(table.stats().files_per_level[0] > 3, "{:?}", table.stats());
    let rows = collect_ids(&table, KeyRange::all());
    assert_eq!(rows.len(), n as usize);
    assert!(rows.windows(2).all(|w| w[0].0 < w[1].0));
    for probe in [0, 1, 4_999, 19_999] {
        let row = table.get(&[KeyValue::from(probe)]).unwrap().unwrap();
        assert_eq!(row.column(2).as_primitive::<Int32Type>().value(0), probe);
    }
    assert!(table.get(&[KeyValue::from(n)]).unwrap().is_none());
    let limited: usize = table
        .scan(KeyRange::all(), ScanOptions::default().with_limit(10))
        .unwrap()
        .map(|b| b.unwrap().num_rows())
        .sum();
    assert_eq!(limited, 10);
}

#[test]
fn composite_keys_in_declared_order_and_projection() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), small_options()).unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("v", DataType::Int32, true),
        Field::new("b", DataType::Utf8, false),
        Field::new("a", DataType::Int64, false),
    ]));
    // Key order (a, b) differs from column order.
    let table = db.create_table("c", schema.clone(), &["a", "b"]).unwrap();
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int32Array::from(vec![1, 2, 3, 4])),
            Arc::new(StringArray::from(vec!["y", "x", "x", "z"])),
            Arc::new(Int64Array::from(vec![2, 2, 1, 1])),
        ],
    )
    .unwrap();
    table.insert(&batch).unwrap();
    table.flush().unwrap();
    table.insert(&batch).unwrap(); // same keys again: still four rows
    let scanned: Vec<RecordBatch> = table
        .scan(
            KeyRange::all(),
            ScanOptions::default().with_projection(vec![2, 0]),
        )
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let batch = arrow::compute::concat_batches(&scanned[0].schema(), &scanned).unwrap();
    assert_eq!(batch.schema().field(0).name(), "a");
    assert_eq!(batch.schema().field(1).name(), "v");
    assert_eq!(
        batch.column(0).as_primitive::<Int64Type>().values(),
        &[1, 1, 2, 2]
    );
    assert_eq!(
        batch.column(1).as_primitive::<Int32Type>().values(),
        &[3, 4, 2, 1]
    );
    // A prefix range: every key with a = 2.
    let range = KeyRange::from_values(
        table.table_schema(),
        std::ops::Bound::Included(&[KeyValue::from(2i64)]),
        std::ops::Bound::Included(&[KeyValue::from(2i64)]),
    )
    .unwrap();
    let rows: usize = table
        .scan(range, ScanOptions::default())
        .unwrap()
        .map(|b| b.unwrap().num_rows())
        .sum();
    assert_eq!(rows, 2);
}

#[test]
fn append_only_tables_get_hidden_row_ids_that_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)]));
    {
        let db = Db::open(dir.path(), small_options()).unwrap();
        let table = db.create_table("log", schema.clone(), &[]).unwrap();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from(vec![5, 5, 5]))],
        )
        .unwrap();
        table.insert(&batch).unwrap();
        table.flush().unwrap();
        table.insert(&batch).unwrap();
        db.close().unwrap();
    }
    let db = Db::open(dir.path(), small_options()).unwrap();
    let table = db.table("log").unwrap();
    let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![7]))]).unwrap();
    table.insert(&batch).unwrap();
    let rows: usize = table
        .scan(KeyRange::all(), ScanOptions::default())
        .unwrap()
        .map(|b| b.unwrap().num_rows())
        .sum();
    assert_eq!(rows, 7, "duplicates are kept in append-only tables");
    // Version scans expose the hidden key; all row ids are distinct.
    let versions: Vec<RecordBatch> = table
        .scan(KeyRange::all(), ScanOptions::default().with_versions())
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let ids: Vec<u64> = versions
        .iter()
        .flat_map(|b| {
            b.column_by_name("_rowid")
                .unwrap()
                .as_primitive::<arrow::datatypes::UInt64Type>()
                .values()
                .to_vec()
        })
        .collect();
    let mut distinct = ids.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), 7);
}

#[test]
fn row_id_scans_return_the_newest_live_row_of_each_row_id() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), small_options()).unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)]));
    let table = db.create_table("log", schema.clone(), &[]).unwrap();
    let batch =
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![10, 20, 30]))]).unwrap();
    table.insert(&batch).unwrap();
    table.flush().unwrap();
    let scan = |options: ScanOptions| -> Vec<(i64, u64)> {
        let mut out = Vec::new();
        for b in table.scan(KeyRange::all(), options).unwrap() {
            let b = b.unwrap();
            assert_eq!(b.schema().field(b.num_columns() - 1).name(), "_rowid");
            let x = b.column(0).as_primitive::<Int64Type>();
            let ids = b
                .column(b.num_columns() - 1)
                .as_primitive::<arrow::datatypes::UInt64Type>();
            out.extend((0..b.num_rows()).map(|i| (x.value(i), ids.value(i))));
        }
        out
    };
    let rows = scan(ScanOptions::default().with_row_ids());
    assert_eq!(
        rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![10, 20, 30]
    );
    // Delete the first row (in the memtable, over the flushed file) and replace the second
    // by its row id: the scan returns each row id once, its newest version, and no tombstone.
    let rowid_schema = Arc::new(Schema::new(vec![Field::new(
        "_rowid",
        DataType::UInt64,
        false,
    )]));
    let dead = RecordBatch::try_new(
        rowid_schema,
        vec![Arc::new(UInt64Array::from(vec![rows[0].1, rows[1].1]))],
    )
    .unwrap();
    let again =
        RecordBatch::try_new(batch.schema(), vec![Arc::new(Int64Array::from(vec![21]))]).unwrap();
    table
        .write(
            &[Mutation::Delete(&dead), Mutation::Upsert(&again)],
            WriteOptions::default(),
        )
        .unwrap();
    let after = scan(
        ScanOptions::default()
            .with_row_ids()
            .with_projection(vec![0]),
    );
    let values: Vec<i64> = after.iter().map(|r| r.0).collect();
    assert_eq!(values, vec![30, 21]);
    assert_eq!(after[0].1, rows[2].1, "an untouched row keeps its row id");
    assert!(after.windows(2).all(|w| w[0].1 < w[1].1), "row id order");
    // Version scans are unchanged by the option (they return _rowid, _seq and _op anyway).
    let versions: usize = table
        .scan(
            KeyRange::all(),
            ScanOptions::default().with_versions().with_row_ids(),
        )
        .unwrap()
        .map(|b| b.unwrap().num_rows())
        .sum();
    assert_eq!(versions, 6);
    // A keyed table has no row id to return.
    let keyed = db.create_table("keyed", users_schema(), &["id"]).unwrap();
    assert!(matches!(
        keyed.scan(KeyRange::all(), ScanOptions::default().with_row_ids()),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn view_row_counts_are_exact_only_for_clean_disjoint_wholly_visible_files() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), small_options()).unwrap();
    let table = db.create_table("t", users_schema(), &["id"]).unwrap();
    let count = |view: &strata_engine::ReadView| {
        let c = view.row_count();
        (c.rows, c.exact)
    };
    assert_eq!(count(&table.view().unwrap()), (0, true), "an empty table");
    table
        .insert(&users(&[1, 2, 3], &[None, None, None], &[None, None, None]))
        .unwrap();
    assert_eq!(
        count(&table.view().unwrap()),
        (3, false),
        "rows in the memtable"
    );
    table.flush().unwrap();
    assert_eq!(count(&table.view().unwrap()), (3, true), "one clean file");
    let before = db.snapshot();
    table
        .insert(&users(&[2, 4], &[Some("b"), None], &[None, None]))
        .unwrap();
    table.flush().unwrap();
    assert_eq!(
        count(&table.view().unwrap()),
        (5, false),
        "two overlapping files: an estimate counting the replaced row twice"
    );
    assert_eq!(
        count(&table.view_at(&before).unwrap()),
        (3, true),
        "the newer file holds nothing visible to the older snapshot"
    );
    drop(before);
    table.compact().unwrap();
    assert_eq!(count(&table.view().unwrap()), (4, true), "one run again");
    table.delete_keys(&[vec![1i64.into()]]).unwrap();
    table.flush().unwrap();
    assert_eq!(count(&table.view().unwrap()), (4, false), "a tombstone");
}

#[test]
fn version_scans_show_every_version_with_seq_and_op() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), small_options()).unwrap();
    let table = db.create_table("v", users_schema(), &["id"]).unwrap();
    table.insert(&users(&[1], &[Some("a")], &[None])).unwrap();
    table.flush().unwrap();
    table.insert(&users(&[1], &[Some("b")], &[None])).unwrap();
    table.delete_keys(&[vec![1i64.into()]]).unwrap();
    let batches: Vec<RecordBatch> = table
        .scan(KeyRange::all(), ScanOptions::default().with_versions())
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let batch = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    assert_eq!(batch.num_rows(), 3);
    let ops = batch
        .column_by_name("_op")
        .unwrap()
        .as_primitive::<UInt8Type>();
    assert_eq!(
        ops.values(),
        &[1, 0, 0],
        "newest first: delete, put b, put a"
    );
    let seqs = batch
        .column_by_name("_seq")
        .unwrap()
        .as_primitive::<arrow::datatypes::UInt64Type>();
    assert!(seqs.value(0) > seqs.value(1) && seqs.value(1) > seqs.value(2));
    assert!(
        batch.column(1).is_null(0),
        "a tombstone carries NULL values"
    );
}

#[test]
fn snapshots_see_the_past() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), small_options()).unwrap();
    let kv = db.kv("kv").unwrap();
    kv.put(b"a", b"1").unwrap();
    let snapshot = db.snapshot();
    kv.put(b"a", b"2").unwrap();
    kv.delete(b"a").unwrap();
    kv.put(b"b", b"3").unwrap();
    kv.flush().unwrap();
    assert_eq!(kv.get(b"a").unwrap(), None);
    assert_eq!(kv.get_at(&snapshot, b"a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(kv.get_at(&snapshot, b"b").unwrap(), None);
    let old: Vec<_> = kv
        .scan_at(&snapshot, ..)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(old, vec![(b"a".to_vec(), b"1".to_vec())]);
    let now: Vec<_> = kv.scan(..).unwrap().map(Result::unwrap).collect();
    assert_eq!(now, vec![(b"b".to_vec(), b"3".to_vec())]);
    drop(snapshot);
    assert_eq!(db.metrics().get("live_snapshots"), Some(0));
}

/// Point lookups find their rows in the key cache (the writers put every new file's keys
/// there) when the key block is not cached (here nothing is: the block cache is off) and the
/// file holds no tombstone and nothing newer than the read. Every answer is the newest value:
/// newer files over older ones, at a snapshot taken between them, after deletes (a file with
/// tombstones reads its key blocks instead) and after a reopen (the key cache starts empty).
#[test]
fn point_lookups_through_the_key_cache_return_the_newest_value() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        block_cache_bytes: 0,
        ..small_options()
    };
    let key = |k: u32| format!("key{k:05}").into_bytes();
    let from_cache = |db: &Db| db.metrics().get("get_rows_from_key_cache").unwrap();
    let expected = |k: u32, deleted: bool| {
        if deleted && k.is_multiple_of(5) {
            None
        } else if k.is_multiple_of(3) {
            Some(format!("second {k}").into_bytes())
        } else {
            Some(format!("first {k}").into_bytes())
        }
    };
    {
        let db = Db::open(dir.path(), options.clone()).unwrap();
        let kv = db.kv("kv").unwrap();
        for k in 0..300 {
            kv.put(key(k), format!("first {k}")).unwrap();
        }
        kv.flush().unwrap();
        let first = db.snapshot();
        for k in (0..300).step_by(3) {
            kv.put(key(k), format!("second {k}")).unwrap();
        }
        kv.flush().unwrap();
        let before = from_cache(&db);
        for k in 0..300 {
            assert_eq!(kv.get(key(k)).unwrap(), expected(k, false), "key {k}");
        }
        // Each key found once, in the newest file holding it, without a key block.
        assert_eq!(from_cache(&db) - before, 300);
        for k in 0..300 {
            assert_eq!(
                kv.get_at(&first, key(k)).unwrap(),
                Some(format!("first {k}").into_bytes()),
                "key {k} at the first snapshot"
            );
        }
        assert_eq!(kv.get(key(300)).unwrap(), None);
        for k in (0..300).step_by(5) {
            kv.delete(key(k)).unwrap();
        }
        kv.flush().unwrap();
        for k in 0..300 {
            assert_eq!(kv.get(key(k)).unwrap(), expected(k, true), "key {k}");
        }
    }
    // Without the warm-up, a reopened database's key cache starts empty: lookups read key
    // blocks. With it (the default), the files' keys come back in the background and the
    // lookups find their rows there again, without a key-cache miss.
    {
        let cold = Options {
            key_cache_warm_on_open: false,
            ..options.clone()
        };
        let db = Db::open(dir.path(), cold).unwrap();
        let kv = db.kv("kv").unwrap();
        for k in 0..300 {
            assert_eq!(kv.get(key(k)).unwrap(), expected(k, true), "key {k}");
        }
        assert_eq!(from_cache(&db), 0, "nothing warmed the key cache");
        assert_eq!(db.metrics().get("key_cache_files_warmed"), Some(0));
    }
    let db = Db::open(dir.path(), options).unwrap();
    let kv = db.kv("kv").unwrap();
    let files = kv.table().stats().files_per_level.iter().sum::<usize>() as u64;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while db.metrics().get("key_cache_files_warmed").unwrap() < files {
        assert!(
            std::time::Instant::now() < deadline,
            "the warm-up did not read the keys of the {files} files"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    for k in 0..300 {
        assert_eq!(kv.get(key(k)).unwrap(), expected(k, true), "key {k}");
    }
    assert!(from_cache(&db) > 0, "lookups found rows in the warmed keys");
    assert_eq!(db.metrics().get("key_cache_misses"), Some(0));
}

/// An SST upload a crash interrupted leaves the local store's staging file
/// (`<file>.parquet#<n>`), which the store's listing does not show: the next open deletes it
/// with the other orphans, and the directory of a table dropped meanwhile with it.
#[test]
fn staging_files_of_interrupted_uploads_are_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(dir.path(), small_options()).unwrap();
        let kv = db.kv("kv").unwrap();
        kv.put(b"a", b"1").unwrap();
        kv.flush().unwrap();
        db.close().unwrap();
    }
    let sst = dir.path().join("sst");
    let table_dir = std::fs::read_dir(&sst)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let stray = table_dir.join("00000000000000000099.parquet#3");
    std::fs::write(&stray, b"half an upload").unwrap();
    let dropped = sst.join("t000999");
    std::fs::create_dir(&dropped).unwrap();
    let dropped_stray = dropped.join("00000000000000000098.parquet#1");
    std::fs::write(&dropped_stray, b"half an upload").unwrap();
    let db = Db::open(dir.path(), small_options()).unwrap();
    assert!(!stray.exists(), "the staging file is left behind");
    assert!(
        !dropped.exists(),
        "the dropped table's directory is left behind"
    );
    assert_eq!(db.kv("kv").unwrap().get(b"a").unwrap(), Some(b"1".to_vec()));
}

#[test]
fn key_value_batches_are_atomic_and_ordered() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), small_options()).unwrap();
    let kv = db.kv("kv").unwrap();
    let mut batch = WriteBatch::new();
    batch
        .put(b"k1", b"v1")
        .put(b"k2", b"v2")
        .delete(b"k1")
        .put(b"k3", b"")
        .put(b"", b"empty key");
    kv.write(&batch).unwrap();
    let all: Vec<_> = kv.scan(..).unwrap().map(Result::unwrap).collect();
    assert_eq!(
        all,
        vec![
            (b"".to_vec(), b"empty key".to_vec()),
            (b"k2".to_vec(), b"v2".to_vec()),
            (b"k3".to_vec(), b"".to_vec())
        ]
    );
    let range: Vec<_> = kv
        .scan(b"k2".to_vec()..b"k3".to_vec())
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(range, vec![(b"k2".to_vec(), b"v2".to_vec())]);
    kv.write_with(&batch, WriteOptions { sync: true }).unwrap();
    assert!(db.metrics().get("wal_syncs").unwrap() >= 1);
}

#[test]
fn bad_input_is_rejected_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(
        dir.path(),
        Options {
            key_size_bytes_max: 100,
            value_size_bytes_max: 1000,
            ..small_options()
        },
    )
    .unwrap();
    let table = db.create_table("users", users_schema(), &["id"]).unwrap();
    // NULL key (the batch's own schema allows NULLs; the table's key does not).
    let nullable = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("age", DataType::Int32, true),
    ]));
    let null_key = RecordBatch::try_new(
        nullable,
        vec![
            Arc::new(Int64Array::from(vec![Some(1), None])),
            Arc::new(StringArray::from(vec!["a", "b"])),
            Arc::new(Int32Array::from(vec![1, 2])),
        ],
    )
    .unwrap();
    assert!(matches!(
        table.insert(&null_key),
        Err(Error::NullKey { row: 1, .. })
    ));
    // Wrong type.
    let wrong = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Int64, true),
            Field::new("age", DataType::Int32, true),
        ])),
        vec![
            Arc::new(Int64Array::from(vec![9])),
            Arc::new(Int64Array::from(vec![1])),
            Arc::new(Int32Array::from(vec![1])),
        ],
    )
    .unwrap();
    let err = table.insert(&wrong).unwrap_err();
    assert!(matches!(err, Error::SchemaMismatch(_)), "{err}");
    // Oversized value inside a multi-row batch: the whole batch is refused.
    let long = "x".repeat(2_000);
    let err = table
        .insert(&users(&[10, 11], &[Some("ok"), Some(&long)], &[None, None]))
        .unwrap_err();
    assert!(matches!(err, Error::LimitExceeded(_)), "{err}");
    let kv = db.kv("kv").unwrap();
    assert!(matches!(
        kv.put(vec![0u8; 101], b"v"),
        Err(Error::LimitExceeded(_))
    ));
    assert!(
        collect_ids(&table, KeyRange::all()).is_empty(),
        "nothing of the refused batches was written"
    );
    assert!(kv.scan(..).unwrap().next().is_none());
    // Unknown table, duplicate table, bad key names.
    assert!(matches!(db.table("nope"), Err(Error::TableNotFound(_))));
    assert!(matches!(
        db.create_table("users", users_schema(), &["id"]),
        Err(Error::TableExists(_))
    ));
    assert!(db.create_table("x", users_schema(), &["missing"]).is_err());
    // A kv() on a table that is not a key-value table.
    assert!(matches!(db.kv("users"), Err(Error::SchemaMismatch(_))));
}

#[test]
fn directories_that_are_not_databases_and_locks() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "hello").unwrap();
    let err = Db::open(dir.path(), Options::default()).unwrap_err();
    assert!(matches!(err, Error::NotADatabase { .. }), "{err}");
    assert!(
        !dir.path().join("CURRENT").exists(),
        "nothing written into a foreign directory"
    );
    let missing = dir.path().join("missing");
    let err = Db::open(
        &missing,
        Options {
            create_if_missing: false,
            ..Options::default()
        },
    )
    .unwrap_err();
    assert!(matches!(err, Error::DatabaseNotFound(_)), "{err}");
    let path = dir.path().join("db");
    let db = Db::open(&path, Options::default()).unwrap();
    let err = Db::open(&path, Options::default()).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    db.close().unwrap();
    let db = Db::open(&path, Options::default()).unwrap();
    drop(db);
    Db::open(&path, Options::default()).unwrap();
}

#[test]
fn drop_table_removes_files_and_names_can_be_reused() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), small_options()).unwrap();
    let table = db.create_table("t", users_schema(), &["id"]).unwrap();
    table
        .insert(&users(&[1, 2], &[None, None], &[None, None]))
        .unwrap();
    table.flush().unwrap();
    let sst_dir = dir.path().join("sst");
    let count_files = || walk(&sst_dir);
    assert_eq!(count_files(), 1);
    db.drop_table("t").unwrap();
    assert!(matches!(
        table.insert(&users(&[3], &[None], &[None])),
        Err(Error::TableNotFound(_))
    ));
    drop(table);
    assert_eq!(db.purge_obsolete_files(), 0);
    assert_eq!(
        count_files(),
        0,
        "dropped table's files deleted once unreferenced"
    );
    let again = db.create_table("t", users_schema(), &["id"]).unwrap();
    assert!(collect_ids(&again, KeyRange::all()).is_empty());
    db.close().unwrap();
    let db = Db::open(dir.path(), small_options()).unwrap();
    assert_eq!(db.list_tables().len(), 1);
}

fn walk(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            if e.path().is_dir() {
                walk(&e.path())
            } else {
                1
            }
        })
        .sum()
}

#[test]
fn wal_segments_are_deleted_after_flush_even_with_an_idle_table() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(
        dir.path(),
        Options {
            wal_segment_size_bytes: 64 * 1024,
            ..small_options()
        },
    )
    .unwrap();
    let idle = db.kv("idle").unwrap();
    idle.put(b"x", b"y").unwrap();
    idle.flush().unwrap();
    let busy = db.kv("busy").unwrap();
    for i in 0..20_000u32 {
        busy.put(i.to_be_bytes(), [7u8; 64]).unwrap();
    }
    db.flush().unwrap();
    let segments = std::fs::read_dir(dir.path().join("wal")).unwrap().count();
    assert!(
        segments <= 2,
        "WAL kept {segments} segments after everything was flushed"
    );
}

#[test]
fn every_memtable_kind_and_profile_works() {
    for kind in MemtableKind::ALL {
        for profile in strata_engine::Profile::ALL {
            let dir = tempfile::tempdir().unwrap();
            let mut options = profile.options();
            options.table_defaults.memtable_kind = *kind;
            let db = Db::open(dir.path(), options).unwrap();
            let table = db.create_table("t", users_schema(), &["id"]).unwrap();
            table
                .insert(&users(&[2, 1], &[Some("b"), Some("a")], &[None, None]))
                .unwrap();
            assert_eq!(table.options().memtable_kind, *kind);
            assert_eq!(
                collect_ids(&table, KeyRange::all()).len(),
                2,
                "{kind} {profile}"
            );
            table.flush().unwrap();
            assert_eq!(
                collect_ids(&table, KeyRange::all()).len(),
                2,
                "{kind} {profile}"
            );
        }
    }
}

#[test]
fn atomic_mutations_delete_then_upsert() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), small_options()).unwrap();
    let table = db.create_table("t", users_schema(), &["id"]).unwrap();
    table
        .insert(&users(&[1, 2], &[Some("a"), Some("b")], &[None, None]))
        .unwrap();
    let keys = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)])),
        vec![Arc::new(Int64Array::from(vec![1, 2]))],
    )
    .unwrap();
    let upsert = users(&[2, 5], &[Some("B"), Some("e")], &[None, None]);
    let written = table
        .write(
            &[Mutation::Delete(&keys), Mutation::Upsert(&upsert)],
            WriteOptions::default(),
        )
        .unwrap();
    assert_eq!(written, 4);
    assert_eq!(
        collect_ids(&table, KeyRange::all()),
        vec![(2, Some("B".into())), (5, Some("e".into()))]
    );
    let metrics = db.metrics();
    assert!(metrics.get("rows_written").unwrap() >= 6);
    let _ = UInt64Array::from(vec![0u64]);
}

#[test]
fn bulk_ingest_is_atomic_sorted_and_last_row_wins() {
    use strata_engine::IngestOptions;
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), small_options()).unwrap();
    let table = db.create_table("t", users_schema(), &["id"]).unwrap();
    // Older data in the memtable and in an SST.
    table
        .insert(&users(
            &[1, 500],
            &[Some("old"), Some("old")],
            &[None, None],
        ))
        .unwrap();
    table.flush().unwrap();
    table.insert(&users(&[2], &[Some("old")], &[None])).unwrap();
    // 3 chunks of rows in scrambled order; ids repeat, the last occurrence must win.
    let mut batches = Vec::new();
    for round in 0..3 {
        let ids: Vec<i64> = (0..1_000).map(|i| (i * 37 + round * 11) % 1_000).collect();
        let names: Vec<String> = ids.iter().map(|i| format!("r{round}-{i}")).collect();
        let names: Vec<Option<&str>> = names.iter().map(|s| Some(s.as_str())).collect();
        batches.push(Ok(users(&ids, &names, &vec![None; ids.len()])));
    }
    let rows = table
        .ingest(
            batches,
            &IngestOptions {
                chunk_rows: 1_500,
                ..IngestOptions::default()
            },
        )
        .unwrap();
    assert_eq!(rows, 3_000);
    let scanned = collect_ids(&table, KeyRange::all());
    assert_eq!(scanned.len(), 1_000);
    assert!(
        scanned
            .iter()
            .all(|(id, name)| name.as_deref() == Some(format!("r2-{id}").as_str()))
    );
    // Later ordinary writes win over ingested rows.
    table.insert(&users(&[7], &[Some("new")], &[None])).unwrap();
    let row = table.get(&[KeyValue::from(7i64)]).unwrap().unwrap();
    assert_eq!(row.column(1).as_string::<i32>().value(0), "new");
    drop(table);
    db.close().unwrap();
    let db = Db::open(dir.path(), small_options()).unwrap();
    let table = db.table("t").unwrap();
    assert_eq!(collect_ids(&table, KeyRange::all()).len(), 1_000);
    let row = table.get(&[KeyValue::from(500i64)]).unwrap().unwrap();
    assert_eq!(row.column(1).as_string::<i32>().value(0), "r2-500");
    // Split points divide the key space in ascending order.
    let points = table.view().unwrap().split_points(4).unwrap();
    assert!(points.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn failed_ingest_changes_nothing() {
    use strata_engine::IngestOptions;
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), small_options()).unwrap();
    let table = db.create_table("t", users_schema(), &["id"]).unwrap();
    table
        .insert(&users(&[1], &[Some("keep")], &[None]))
        .unwrap();
    let nullable = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("age", DataType::Int32, true),
    ]));
    let good = users(
        &(10..2_000).collect::<Vec<_>>(),
        &vec![None; 1_990],
        &vec![None; 1_990],
    );
    let bad = RecordBatch::try_new(
        nullable,
        vec![
            Arc::new(Int64Array::from(vec![Some(5), None])),
            Arc::new(StringArray::from(vec![Some("x"), Some("y")])),
            Arc::new(Int32Array::from(vec![None, None])),
        ],
    )
    .unwrap();
    let err = table
        .ingest(
            vec![Ok(good), Ok(bad)],
            &IngestOptions {
                chunk_rows: 500,
                ..IngestOptions::default()
            },
        )
        .unwrap_err();
    assert!(matches!(err, Error::NullKey { .. }), "{err}");
    assert_eq!(
        collect_ids(&table, KeyRange::all()),
        vec![(1, Some("keep".into()))]
    );
    let files = walk(&dir.path().join("sst"));
    assert_eq!(
        files,
        table.stats().files_per_level.iter().sum::<usize>(),
        "no file of the failed ingest remains"
    );
}

/// A memtable switched while the WAL is replayed must be bounded by what was replayed so far,
/// not by the last sequence number the manifest remembers: here table `b`'s writes sit in
/// the WAL only, below a later flush of table `a` (which moved the manifest's last sequence
/// number past all of them), and the reopen runs with a write buffer so small that `b`'s
/// replayed memtable is flushed part-way. Every write of `b` must survive the reopen.
#[test]
fn a_flush_during_wal_replay_keeps_the_rest_of_the_replay() {
    let dir = tempfile::tempdir().unwrap();
    let roomy = Options {
        table_defaults: TableOptions {
            memtable_size_bytes: 64 << 20,
            ..TableOptions::default()
        },
        write_buffer_budget_bytes: 256 << 20,
        ..Options::default()
    };
    let keys = 5_000u32;
    {
        let db = Db::open(dir.path(), roomy.clone()).unwrap();
        let b = db.kv("b").unwrap();
        for i in 0..keys {
            b.put(
                format!("key{i:06}").as_bytes(),
                format!("value-{i:0100}").as_bytes(),
            )
            .unwrap();
        }
        let a = db.kv("a").unwrap();
        a.put(b"only", b"one").unwrap();
        a.flush().unwrap();
        db.close().unwrap();
    }
    // Table `b` keeps its own 64 MiB memtable; the database-wide budget forces the flushes.
    let tight = Options {
        table_defaults: TableOptions {
            memtable_size_bytes: 64 * 1024,
            ..TableOptions::default()
        },
        write_buffer_budget_bytes: 64 * 1024,
        ..roomy
    };
    let db = Db::open(dir.path(), tight).unwrap();
    assert!(
        db.metrics().get("flushes").unwrap() > 0,
        "the replay did not flush part-way, so the test checks nothing"
    );
    let b = db.kv("b").unwrap();
    for i in 0..keys {
        assert_eq!(
            b.get(format!("key{i:06}").as_bytes()).unwrap(),
            Some(format!("value-{i:0100}").into_bytes()),
            "key {i} lost by the replay"
        );
    }
    assert_eq!(b.scan(..).unwrap().count(), keys as usize);
    assert_eq!(
        db.kv("a").unwrap().get(b"only").unwrap(),
        Some(b"one".to_vec())
    );
}
