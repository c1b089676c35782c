//! The engine's catalog edits: staging tables published in one manifest edit (atomic replace),
//! namespaces, and table properties, each across a reopen and a manifest rewrite.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{AsArray, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use strata_engine::{
    Db, Error, FaultInjector, IoOp, KeyRange, Mutation, Options, ScanOptions, Table, TableSpec,
    WriteOptions,
};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("v", DataType::Int64, true),
    ]))
}

fn spec(namespace: &str, name: &str) -> TableSpec {
    TableSpec {
        namespace: namespace.to_string(),
        ..TableSpec::new(name, schema(), &["id"], Options::default().table_defaults)
    }
}

fn write(table: &Table, ids: &[i64], v: i64) {
    let batch = RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from(ids.to_vec())),
            Arc::new(Int64Array::from(vec![v; ids.len()])),
        ],
    )
    .unwrap();
    table
        .write(&[Mutation::Upsert(&batch)], WriteOptions::default())
        .unwrap();
}

fn rows(table: &Table) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    for batch in table.scan(KeyRange::all(), ScanOptions::default()).unwrap() {
        let batch = batch.unwrap();
        let ids = batch.column(0).as_primitive::<Int64Type>();
        let vs = batch.column(1).as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            out.push((ids.value(i), vs.value(i)));
        }
    }
    out
}

fn open(dir: &Path) -> Db {
    Db::open(dir, Options::default()).unwrap()
}

/// Small manifest logs, so every few edits the log is rewritten as one snapshot edit.
fn open_rewriting(dir: &Path) -> Db {
    Db::open(
        dir,
        Options {
            manifest_rewrite_bytes: 512,
            ..Options::default()
        },
    )
    .unwrap()
}

fn sst_dirs(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("sst"))
        .map(|d| d.flatten().count())
        .unwrap_or(0)
}

#[test]
fn a_staging_table_is_invisible_until_published_and_replaces_in_one_edit() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let old = db.create_table_from(spec("", "t")).unwrap();
    write(&old, &[1, 2], 10);
    let staged = db.create_staging_table(spec("", "t")).unwrap();
    write(&staged, &[3], 30);
    staged.flush().unwrap();
    write(&staged, &[4], 40);
    // Nobody sees the staging table by name; the old one is untouched.
    assert_eq!(rows(&db.table("t").unwrap()), [(1, 10), (2, 10)]);
    assert_eq!(db.list_tables().len(), 1);
    // Publishing without replace refuses an existing name and changes nothing.
    assert!(matches!(
        db.publish_table(&staged, false),
        Err(Error::TableExists(_))
    ));
    assert_eq!(rows(&db.table("t").unwrap()), [(1, 10), (2, 10)]);
    db.publish_table(&staged, true).unwrap();
    assert_eq!(rows(&db.table("t").unwrap()), [(3, 30), (4, 40)]);
    assert_eq!(db.table("t").unwrap().id(), staged.id());
    assert!(db.publish_table(&staged, true).is_err(), "published twice");
    db.close().unwrap();
    for _ in 0..2 {
        let db = open_rewriting(dir.path());
        assert_eq!(rows(&db.table("t").unwrap()), [(3, 30), (4, 40)]);
        assert_eq!(db.list_tables().len(), 1);
        db.close().unwrap();
    }
    assert_eq!(sst_dirs(dir.path()), 1, "the old table's files are gone");
}

#[test]
fn a_crash_between_staging_and_the_swap_keeps_the_old_table_and_drops_the_staging_one() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(FaultInjector::new());
    let options = Options {
        faults: Some(Arc::clone(&faults)),
        ..Options::default()
    };
    let db = Db::open(dir.path(), options).unwrap();
    let old = db.create_table_from(spec("", "t")).unwrap();
    write(&old, &[1, 2], 10);
    let staged = db.create_staging_table(spec("", "t")).unwrap();
    write(&staged, &[3], 30);
    staged.flush().unwrap();
    write(&staged, &[4], 40);
    // The swap's manifest write fails: as if the process died just before it.
    faults.fail_after(&[IoOp::ManifestWrite], 0, io::ErrorKind::Other);
    assert!(db.publish_table(&staged, true).is_err());
    faults.disarm();
    assert_eq!(rows(&db.table("t").unwrap()), [(1, 10), (2, 10)]);
    assert_eq!(sst_dirs(dir.path()), 1, "the staging table flushed a file");
    let staged_dir = dir.path().join("sst").join(format!("t{:06}", staged.id()));
    assert!(staged_dir.exists());
    db.close().unwrap();
    let db = open(dir.path());
    assert_eq!(rows(&db.table("t").unwrap()), [(1, 10), (2, 10)]);
    assert_eq!(db.list_tables().len(), 1);
    // The staging table's SST and WAL entries are gone with it. (Only its directory is
    // checked: the reopened database may flush the old table's recovered rows meanwhile.)
    assert!(
        !staged_dir.exists(),
        "left behind: {:?}",
        files_under(&dir.path().join("sst"))
    );
    // Its name is free for the next attempt.
    let again = db.create_staging_table(spec("", "t")).unwrap();
    write(&again, &[5], 50);
    db.publish_table(&again, true).unwrap();
    db.close().unwrap();
    let db = open(dir.path());
    assert_eq!(rows(&db.table("t").unwrap()), [(5, 50)]);
    db.close().unwrap();
}

#[test]
fn a_discarded_staging_table_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let staged = db.create_staging_table(spec("", "t")).unwrap();
    write(&staged, &[1], 1);
    staged.flush().unwrap();
    db.discard_staging_table(&staged).unwrap();
    assert!(!db.has_table("t"));
    assert!(db.publish_table(&staged, false).is_err());
    db.close().unwrap();
    let db = open(dir.path());
    assert!(db.list_tables().is_empty());
    assert_eq!(sst_dirs(dir.path()), 0);
    db.close().unwrap();
}

#[test]
fn namespaces_keep_their_tables_apart_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    assert!(
        db.create_table_from(spec("a", "b")).is_err(),
        "no namespace a"
    );
    db.create_namespace("a").unwrap();
    db.create_namespace("empty").unwrap();
    assert!(db.create_namespace("a").is_err());
    // `a.b` and a default-namespace table literally named "a.b" are different tables.
    let in_a = db.create_table_from(spec("a", "b")).unwrap();
    let dotted = db.create_table_from(spec("", "a.b")).unwrap();
    let same_name = db.create_table_from(spec("", "b")).unwrap();
    write(&in_a, &[1], 1);
    write(&dotted, &[2], 2);
    write(&same_name, &[3], 3);
    assert!(db.create_table_from(spec("a", "b")).is_err());
    db.close().unwrap();
    let db = open_rewriting(dir.path());
    assert_eq!(db.namespaces(), ["a", "empty"]);
    assert!(db.has_namespace("") && db.has_namespace("empty"));
    assert_eq!(rows(&db.table_in("a", "b").unwrap()), [(1, 1)]);
    assert_eq!(rows(&db.table("a.b").unwrap()), [(2, 2)]);
    assert_eq!(rows(&db.table("b").unwrap()), [(3, 3)]);
    let listed: Vec<(String, String)> = db
        .list_tables()
        .into_iter()
        .map(|t| (t.namespace, t.name))
        .collect();
    assert_eq!(
        listed,
        [
            ("".into(), "a.b".into()),
            ("".into(), "b".into()),
            ("a".into(), "b".into())
        ]
    );
    // RESTRICT refuses a namespace with tables; CASCADE drops them in the same edit.
    assert!(db.drop_namespace("a", false).is_err());
    db.drop_namespace("empty", false).unwrap();
    db.drop_namespace("a", true).unwrap();
    assert!(!db.has_table_in("a", "b"));
    assert!(db.drop_namespace("a", true).is_err());
    db.close().unwrap();
    let db = open(dir.path());
    assert!(db.namespaces().is_empty());
    assert_eq!(db.list_tables().len(), 2);
    assert_eq!(rows(&db.table("b").unwrap()), [(3, 3)]);
    db.close().unwrap();
}

#[test]
fn table_properties_are_stored_with_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut with = spec("", "t");
    with.properties = BTreeMap::from([("default.v".to_string(), "42".to_string())]);
    let table = db.create_table_from(with.clone()).unwrap();
    assert_eq!(db.table_properties(&table), with.properties);
    let mut staged_spec = spec("", "s");
    staged_spec.properties = BTreeMap::from([("k".to_string(), "x".to_string())]);
    let staged = db.create_staging_table(staged_spec.clone()).unwrap();
    db.publish_table(&staged, false).unwrap();
    db.close().unwrap();
    for _ in 0..3 {
        let db = open_rewriting(dir.path());
        let t = db.table("t").unwrap();
        assert_eq!(db.table_properties(&t), with.properties);
        let s = db.table("s").unwrap();
        assert_eq!(db.table_properties(&s), staged_spec.properties);
        let info = db.list_tables();
        assert_eq!(info[1].properties, with.properties);
        // Some edits, so the small log is rewritten between the opens.
        db.create_table("x", schema(), &["id"]).unwrap();
        db.drop_table("x").unwrap();
        db.close().unwrap();
    }
}
/// Every path under `dir` (for failure messages).
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        out.push(entry.path().display().to_string());
        if entry.path().is_dir() {
            out.extend(files_under(&entry.path()));
        }
    }
    out
}
