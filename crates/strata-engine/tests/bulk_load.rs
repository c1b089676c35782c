//! Bulk loads (`Table::bulk_load`): writers of every table go on while a load writes its
//! files, and the load still appears at once at its commit, newer than every write before
//! it, invisible to reads and snapshots taken earlier, and whole (or absent) after a reopen.

use std::sync::Arc;

use arrow::array::{Array, AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use strata_engine::{
    Db, IngestOptions, KeyRange, KeyValue, Options, ScanOptions, Snapshot, Table, TableOptions,
};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("v", DataType::Utf8, true),
    ]))
}

fn rows(ids: impl IntoIterator<Item = i64>, tag: &str) -> RecordBatch {
    let ids: Vec<i64> = ids.into_iter().collect();
    let values: Vec<String> = ids.iter().map(|i| format!("{tag}{i}")).collect();
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(StringArray::from(values)),
        ],
    )
    .unwrap()
}

fn options() -> Options {
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

/// Small files, so a load of a few thousand rows spans several.
fn small_chunks() -> IngestOptions {
    IngestOptions {
        chunk_rows: 700,
        ..IngestOptions::default()
    }
}

/// Pushes `batch` in slices of 500 rows (a file holds whole pushed batches).
fn push(load: &mut strata_engine::BulkLoad, batch: RecordBatch) {
    for start in (0..batch.num_rows()).step_by(500) {
        let len = (batch.num_rows() - start).min(500);
        load.push(batch.slice(start, len)).unwrap();
    }
}

fn all(table: &Table) -> Vec<(i64, String)> {
    scan(table, None)
}

fn scan(table: &Table, snapshot: Option<&Snapshot>) -> Vec<(i64, String)> {
    let iter = match snapshot {
        Some(s) => table.scan_at(s, KeyRange::all(), ScanOptions::default()),
        None => table.scan(KeyRange::all(), ScanOptions::default()),
    }
    .unwrap();
    let mut out = Vec::new();
    for batch in iter {
        let batch = batch.unwrap();
        let ids = batch.column(0).as_primitive::<Int64Type>();
        let values = batch.column(1).as_string::<i32>();
        for i in 0..batch.num_rows() {
            assert!(values.is_valid(i));
            out.push((ids.value(i), values.value(i).to_string()));
        }
    }
    out
}

fn get(table: &Table, id: i64) -> Option<String> {
    table
        .get(&[KeyValue::from(id)])
        .unwrap()
        .map(|b| b.column(1).as_string::<i32>().value(0).to_string())
}

/// What the table holds after: old rows 0..1000 ("old"), then during the load writes to 5 and
/// 2000 ("during"), then the load of 0..3000 in three passes where the last pass ("c") wins.
#[test]
fn writers_go_on_during_a_load_which_commits_newer_than_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    let table = db.create_table("t", schema(), &["id"]).unwrap();
    let other = db.create_table("u", schema(), &["id"]).unwrap();
    table.insert(&rows(0..500, "old")).unwrap();
    table.flush().unwrap();
    table.insert(&rows(500..1000, "old")).unwrap();

    let mut load = table.bulk_load(&small_chunks()).unwrap();
    push(&mut load, rows(0..3000, "a"));
    push(&mut load, rows((0..3000).rev(), "b"));
    assert!(load.files() >= 6, "{} files written so far", load.files());
    // Writers of this and of other tables do not wait for the load (this thread drives it, so
    // a write that waited would never return).
    table.insert(&rows([5, 2000], "during")).unwrap();
    other.insert(&rows(0..100, "u")).unwrap();
    // Nothing of the load is visible before its commit, also through a snapshot.
    let before = db.snapshot();
    let seen = all(&table);
    assert_eq!(seen.len(), 1001);
    assert!(
        seen.iter()
            .all(|(_, v)| v.starts_with("old") || v.starts_with("during"))
    );
    assert_eq!(get(&table, 5).as_deref(), Some("during5"));
    push(&mut load, rows(0..3000, "c"));
    assert_eq!(load.finish().unwrap(), 9000);

    // The load is newer than the writes made while it ran: its last pass wins everywhere.
    let after = all(&table);
    assert_eq!(after.len(), 3000);
    assert!(
        after.iter().all(|(id, v)| *v == format!("c{id}")),
        "{after:?}"
    );
    assert_eq!(get(&table, 5).as_deref(), Some("c5"));
    assert_eq!(get(&table, 2000).as_deref(), Some("c2000"));
    // The snapshot taken before the commit never changes.
    let old = scan(&table, Some(&before));
    assert_eq!(old, seen);
    drop(before);
    // Later writes win over the load.
    table.insert(&rows([7], "new")).unwrap();
    other.insert(&rows([1], "new")).unwrap();
    assert_eq!(get(&table, 7).as_deref(), Some("new7"));

    // Across a reopen without a flush (the later writes are in the WAL only).
    drop((table, other));
    db.close().unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    let table = db.table("t").unwrap();
    let other = db.table("u").unwrap();
    let reopened = all(&table);
    assert_eq!(reopened.len(), 3000);
    for (id, v) in &reopened {
        let want = if *id == 7 {
            "new7".to_string()
        } else {
            format!("c{id}")
        };
        assert_eq!(*v, want);
    }
    let u = all(&other);
    assert_eq!(u.len(), 100);
    assert_eq!(u[1].1, "new1");
    assert_eq!(u[2].1, "u2");
}

#[test]
fn a_dropped_load_leaves_nothing_and_the_next_load_runs() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    let table = db.create_table("t", schema(), &["id"]).unwrap();
    table.insert(&rows([1], "keep")).unwrap();
    let sst = dir.path().join("sst");
    let files = |dir: &std::path::Path| walkdir(dir);
    let before = files(&sst);
    {
        let mut load = table.bulk_load(&small_chunks()).unwrap();
        push(&mut load, rows(0..5000, "x"));
        assert!(files(&sst) > before, "the load wrote files");
        // Dropped unfinished (an INSERT that failed or was cancelled).
    }
    assert_eq!(
        files(&sst),
        before,
        "the files of the dropped load are gone"
    );
    assert_eq!(all(&table), vec![(1, "keep1".to_string())]);
    // The gate of the dropped load is open again.
    let rows_loaded = table
        .ingest([Ok(rows(0..10, "y"))], &IngestOptions::default())
        .unwrap();
    assert_eq!(rows_loaded, 10);
    assert_eq!(all(&table).len(), 10);
    assert_eq!(db.metrics().get("ingests"), Some(1));
    assert_eq!(db.metrics().get("ingest_rows"), Some(5010));
}

#[test]
fn a_load_into_a_table_dropped_meanwhile_fails_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    let table = db.create_table("t", schema(), &["id"]).unwrap();
    let mut load = table.bulk_load(&small_chunks()).unwrap();
    push(&mut load, rows(0..2000, "x"));
    db.drop_table("t").unwrap();
    assert!(load.finish().is_err());
    drop(table);
    db.close().unwrap();
    assert_eq!(walkdir(&dir.path().join("sst")), 0);
}

fn walkdir(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            if e.path().is_dir() {
                walkdir(&e.path())
            } else {
                1
            }
        })
        .sum()
}
