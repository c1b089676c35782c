//! Leases end to end: the SSTs a shipped scan reads (`ReadView::shipped_scan`) stay on the
//! storage through a compaction that replaces them while a lease names them, even once no
//! version of this process holds them; after the lease is released, the next deletion
//! removes them.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use strata_engine::lease::{LEASE_DIR, Lease};
use strata_engine::{CompactionOptions, Db, Options, StrategyKind, TableOptions};

fn rows(schema: &Arc<Schema>, lo: i64, hi: i64, v: i64) -> RecordBatch {
    RecordBatch::try_new(
        Arc::clone(schema),
        vec![
            Arc::new(Int64Array::from((lo..hi).collect::<Vec<_>>())),
            Arc::new(Int64Array::from(vec![v; (hi - lo) as usize])),
        ],
    )
    .unwrap()
}

#[test]
fn compaction_keeps_leased_files_until_the_lease_is_released() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        table_defaults: TableOptions {
            compaction: CompactionOptions {
                strategy: StrategyKind::None,
                ..CompactionOptions::default()
            },
            ..TableOptions::default()
        },
        ..Options::default()
    };
    let db = Db::open(dir.path(), options).unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("v", DataType::Int64, true),
    ]));
    let table = db.create_table("t", Arc::clone(&schema), &["id"]).unwrap();
    for (lo, hi, v) in [(0, 1000, 1), (500, 1500, 2)] {
        table.insert(&rows(&schema, lo, hi, v)).unwrap();
        table.flush().unwrap();
    }
    let view = table.view().unwrap();
    let shipped = view.shipped_scan(None).unwrap().expect("a shipped plan");
    let objects = shipped.objects();
    assert_eq!(objects.len(), 2);
    let lease = Lease::acquire(&view.storage(), objects.clone(), Duration::from_secs(600)).unwrap();
    assert!(dir.path().join(lease.object()).exists());
    drop(shipped);
    drop(view);

    // The compaction replaces both files; no version of this process holds them any more.
    table.compact().unwrap();
    let live: Vec<String> = table
        .view()
        .unwrap()
        .files_by_level()
        .into_iter()
        .flatten()
        .map(|m| m.object_path())
        .collect();
    assert!(objects.iter().all(|o| !live.contains(o)));
    for object in &objects {
        assert!(
            dir.path().join(object).exists(),
            "{object} was deleted under its lease"
        );
    }

    // Released: the next deletion in the process removes them.
    drop(lease);
    assert_eq!(
        std::fs::read_dir(dir.path().join(LEASE_DIR))
            .unwrap()
            .count(),
        0
    );
    table.insert(&rows(&schema, 2000, 2100, 3)).unwrap();
    table.flush().unwrap();
    table.compact().unwrap();
    for object in &objects {
        assert!(!dir.path().join(object).exists(), "{object} left behind");
    }
    db.close().unwrap();
}
