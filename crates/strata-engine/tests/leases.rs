//! Leases end to end: the SSTs a shipped scan reads (`ReadView::shipped_scan`) stay on the
//! storage through a compaction that replaces them while a lease names them, even once no
//! version of this process holds them, and however many times-to-live the lease is held (its
//! handle renews it); after the lease is released, the next deletion removes them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use strata_engine::lease::{LEASE_DIR, Lease};
use strata_engine::{CompactionOptions, Db, Options, StrategyKind, TableOptions};

/// A table `t` (no automatic compaction) with two overlapping files, and the objects a
/// shipped scan of it reads.
fn table_with_two_files(
    dir: &std::path::Path,
) -> (Db, strata_engine::Table, Arc<Schema>, Vec<String>) {
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
    for object in &objects {
        assert!(
            dir.path().join(object).exists(),
            "{object} was deleted under a lease held past its time-to-live"
        );
    }
    assert!(lease.renewals() > 0);
    assert!(expiry(&lease_path) > first_expiry, "the lease was renewed");

    // Still held a while later: another deletion pass (a flush and a compaction deleting the
    // replaced file) skips them too.
    let checked = Instant::now();
    hold_for(checked, ttl + ttl / 2);
    table.insert(&rows(&schema, 2000, 2100, 3)).unwrap();
    table.flush().unwrap();
    table.compact().unwrap();
    for object in &objects {
        assert!(
            dir.path().join(object).exists(),
            "{object} was deleted under a lease held past its time-to-live"
        );
    }

    // Dropped: the renewals stop, the lease object is gone, and the next deletion pass
    // removes the files.
    drop(lease);
    assert!(!lease_path.exists(), "the lease object outlives its handle");
    table.insert(&rows(&schema, 3000, 3100, 4)).unwrap();
    table.flush().unwrap();
    table.compact().unwrap();
    for object in &objects {
        assert!(!dir.path().join(object).exists(), "{object} left behind");
    }
    assert_eq!(
        std::fs::read_dir(dir.path().join(LEASE_DIR))
            .unwrap()
            .count(),
        0
    );
    db.close().unwrap();
}
