//! Obsolete files and leases end to end: the purger deletes a file once no version holds it,
//! on its own thread (not on the thread dropping the last handle); the SSTs a shipped scan
//! reads (`ReadView::shipped_scan`) stay on the storage through a compaction that replaces them
//! while a lease names them, even once no version of this process holds them, and however many
//! times-to-live the lease is held (its handle renews it); after the lease is released, the
//! purger's next pass removes them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use strata_engine::lease::{LEASE_DIR, Lease};
use strata_engine::{
    CompactionOptions, Db, FaultInjector, IoOp, Options, StrategyKind, TableOptions,
};

/// A table `t` (no automatic compaction) with two overlapping files, and the objects a
/// shipped scan of it reads.
fn table_with_two_files(
    dir: &std::path::Path,
) -> (Db, strata_engine::Table, Arc<Schema>, Vec<String>) {
    table_with_two_files_faulty(dir, None)
}

/// [`table_with_two_files`] with `faults` injected into the database's I/O.
fn table_with_two_files_faulty(
    dir: &std::path::Path,
    faults: Option<Arc<FaultInjector>>,
) -> (Db, strata_engine::Table, Arc<Schema>, Vec<String>) {
    let options = Options {
        faults,
        table_defaults: TableOptions {
            compaction: CompactionOptions {
                strategy: StrategyKind::None,
                ..CompactionOptions::default()
            },
            ..TableOptions::default()
        },
        ..Options::default()
    };
    let db = Db::open(dir, options).unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("v", DataType::Int64, true),
    ]));
    let table = db.create_table("t", Arc::clone(&schema), &["id"]).unwrap();
    for (lo, hi, v) in [(0, 1000, 1), (500, 1500, 2)] {
        table.insert(&rows(&schema, lo, hi, v)).unwrap();
        table.flush().unwrap();
    }
    let objects = {
        let view = table.view().unwrap();
        let shipped = view.shipped_scan(None).unwrap().expect("a shipped plan");
        shipped.objects()
    };
    assert_eq!(objects.len(), 2);
    (db, table, schema, objects)
}

/// Asserts that each of `objects` is on disk under `dir` (`present`) or is not; `failure`
/// says what it means when one is not as asserted.
fn assert_on_disk(dir: &std::path::Path, objects: &[String], present: bool, failure: &str) {
    for object in objects {
        assert_eq!(dir.join(object).exists(), present, "{object} {failure}");
    }
}

/// The `expires_at_ms` of the lease object at `path`.
fn expiry(path: &std::path::Path) -> u64 {
    let record: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    record["expires_at_ms"].as_u64().unwrap()
}

/// Waits (polling, bounded) until `held` has passed, so the lease has been held that long.
fn hold_for(since: Instant, held: Duration) {
    let bound = Instant::now() + held + Duration::from_secs(60);
    while since.elapsed() <= held {
        assert!(Instant::now() < bound, "the clock did not advance");
        std::thread::sleep(Duration::from_millis(50));
    }
}

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
fn the_thread_dropping_the_last_handle_of_an_obsolete_file_does_not_delete_it() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(FaultInjector::new());
    let (db, table, _schema, objects) =
        table_with_two_files_faulty(dir.path(), Some(Arc::clone(&faults)));
    // A reader pins the version holding both files; the compaction replaces them.
    let view = table.view().unwrap();
    table.compact().unwrap();
    assert_eq!(db.purge_obsolete_files(), 0);
    assert_on_disk(dir.path(), &objects, true, "deleted under a reader");
    // Every deletion now takes a while: had the reader's drop deleted the files itself, they
    // would be gone when it returns.
    faults.delay(&[IoOp::Delete], Duration::from_millis(300));
    drop(view);
    assert_on_disk(
        dir.path(),
        &objects,
        true,
        "was deleted on the thread that dropped its last handle",
    );
    assert_eq!(db.purge_obsolete_files(), 0);
    faults.disarm();
    assert_on_disk(dir.path(), &objects, false, "left behind");
    assert!(db.metrics().get("sst_files_deleted") >= Some(2));
    db.close().unwrap();
}

#[test]
fn compaction_keeps_leased_files_until_the_lease_is_released() {
    let dir = tempfile::tempdir().unwrap();
    let (db, table, schema, objects) = table_with_two_files(dir.path());
    let lease = Lease::acquire(
        &table.view().unwrap().storage(),
        objects.clone(),
        Duration::from_secs(600),
    )
    .unwrap();
    assert!(dir.path().join(lease.object()).exists());

    // The compaction replaces both files; no version of this process holds them any more,
    // and the purger's pass over them holds both back.
    table.compact().unwrap();
    assert_eq!(db.purge_obsolete_files(), 2);
    assert_eq!(db.metrics().get("obsolete_files_held_back"), Some(2));
    let live: Vec<String> = table
        .view()
        .unwrap()
        .files_by_level()
        .into_iter()
        .flatten()
        .map(|m| m.object_path())
        .collect();
    assert!(objects.iter().all(|o| !live.contains(o)));
    assert_on_disk(dir.path(), &objects, true, "was deleted under its lease");

    // Released: the purger's next pass (here the one of the next compaction's files)
    // removes them.
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
    assert_eq!(db.purge_obsolete_files(), 0);
    assert_on_disk(dir.path(), &objects, false, "left behind");
    db.close().unwrap();
}

#[test]
fn a_lease_held_for_several_ttls_keeps_its_files_through_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let (db, table, schema, objects) = table_with_two_files(dir.path());
    // Short enough to run out several times during the test without renewal.
    let ttl = Duration::from_millis(1500);
    let acquired = Instant::now();
    let lease = Lease::acquire(&table.view().unwrap().storage(), objects.clone(), ttl).unwrap();
    let lease_path = dir.path().join(lease.object());
    let first_expiry = expiry(&lease_path);

    // Held for three times-to-live: only renewals keep it alive. The compaction replaces both
    // files, and its deletion pass must skip them.
    hold_for(acquired, 3 * ttl);
    table.compact().unwrap();
    assert_eq!(db.purge_obsolete_files(), 2);
    assert_on_disk(
        dir.path(),
        &objects,
        true,
        "was deleted under a lease held past its time-to-live",
    );
    assert!(lease.renewals() > 0);
    assert!(expiry(&lease_path) > first_expiry, "the lease was renewed");

    // Still held a while later: another deletion pass (a flush and a compaction deleting the
    // replaced file) skips them too.
    let checked = Instant::now();
    hold_for(checked, ttl + ttl / 2);
    table.insert(&rows(&schema, 2000, 2100, 3)).unwrap();
    table.flush().unwrap();
    table.compact().unwrap();
    assert_eq!(db.purge_obsolete_files(), 2);
    assert_on_disk(
        dir.path(),
        &objects,
        true,
        "was deleted under a lease held past its time-to-live",
    );

    // Dropped: the renewals stop, the lease object is gone, and the next deletion pass
    // removes the files.
    drop(lease);
    assert!(!lease_path.exists(), "the lease object outlives its handle");
    table.insert(&rows(&schema, 3000, 3100, 4)).unwrap();
    table.flush().unwrap();
    table.compact().unwrap();
    assert_eq!(db.purge_obsolete_files(), 0);
    assert_on_disk(dir.path(), &objects, false, "left behind");
    assert_eq!(
        std::fs::read_dir(dir.path().join(LEASE_DIR))
            .unwrap()
            .count(),
        0
    );
    db.close().unwrap();
}
