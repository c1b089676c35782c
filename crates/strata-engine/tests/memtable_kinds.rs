//! Memtable selection end to end: every [`MemtableKind`] chosen as the database default
//! (`Options.table_defaults.memtable_kind`) or per table (`TableOptions`) serves writes, reads,
//! scans, flushes, WAL replay after a reopen, and a switch of kind on a live table.

use std::collections::BTreeMap;

use strata_engine::{Db, MemtableKind, Options, TableOptions, WriteBatch};

fn options(kind: MemtableKind) -> Options {
    Options {
        table_defaults: TableOptions {
            memtable_kind: kind,
            // Small memtables, so the run switches and flushes memtables several times.
            memtable_size_bytes: 64 * 1024,
            sst_index_block_rows: 16,
            sst_row_group_rows: 256,
            sst_scan_row_group_rows: 256,
            ..TableOptions::default()
        },
        write_buffer_budget_bytes: 4 << 20,
        ..Options::default()
    }
}

/// Keys sharing prefixes (the hash variants' buckets) with overwrites and deletes.
fn key(i: u64) -> Vec<u8> {
    format!("user{:03}/item{:05}", i % 37, i).into_bytes()
}

fn write_round(kv: &strata_engine::KvStore, model: &mut BTreeMap<Vec<u8>, Vec<u8>>, round: u64) {
    // Batches of 100 writes keep the WAL commits (and the test) cheap.
    let mut batch = WriteBatch::new();
    for i in 0..1_500u64 {
        let k = key((i * 7919 + round) % 1_200);
        if (i + round).is_multiple_of(9) {
            batch.delete(&k);
            model.remove(&k);
        } else {
            let v = format!("r{round}-{i}-{}", "x".repeat((i % 50) as usize)).into_bytes();
            batch.put(&k, &v);
            model.insert(k, v);
        }
        if batch.len() == 100 {
            kv.write(&batch).unwrap();
            batch.clear();
        }
    }
    kv.write(&batch).unwrap();
    // Single-write commits too.
    for i in 0..20u64 {
        let k = key(2_000 + i + round * 20);
        kv.put(&k, b"single").unwrap();
        model.insert(k, b"single".to_vec());
    }
    let gone = key(2_000 + round * 20);
    kv.delete(&gone).unwrap();
    model.remove(&gone);
}

fn check(kind: MemtableKind, kv: &strata_engine::KvStore, model: &BTreeMap<Vec<u8>, Vec<u8>>) {
    let scanned: Vec<(Vec<u8>, Vec<u8>)> = kv.scan(..).unwrap().map(Result::unwrap).collect();
    let expected: Vec<(Vec<u8>, Vec<u8>)> =
        model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(scanned, expected, "{kind}: full scan");
    for i in (0..1_300u64).step_by(13) {
        let k = key(i);
        assert_eq!(
            kv.get(&k).unwrap(),
            model.get(&k).cloned(),
            "{kind}: get {i}"
        );
    }
    let from = key(600);
    let ranged: Vec<Vec<u8>> = kv
        .scan(from.clone()..key(700))
        .unwrap()
        .map(|r| r.unwrap().0)
        .collect();
    let want: Vec<Vec<u8>> = model
        .range(from..key(700))
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(ranged, want, "{kind}: range scan");
}

#[test]
fn every_kind_as_the_database_default() {
    for kind in MemtableKind::ALL {
        let dir = tempfile::tempdir().unwrap();
        let mut model = BTreeMap::new();
        {
            let db = Db::open(dir.path(), options(*kind)).unwrap();
            let kv = db.kv("items").unwrap();
            assert_eq!(kv.table().options().memtable_kind, *kind);
            write_round(&kv, &mut model, 0);
            check(*kind, &kv, &model);
            kv.flush().unwrap();
            check(*kind, &kv, &model);
            // Left in the memtable (and the WAL) across the reopen.
            write_round(&kv, &mut model, 1);
            check(*kind, &kv, &model);
            drop(kv);
            db.close().unwrap();
        }
        let db = Db::open(dir.path(), options(*kind)).unwrap();
        let kv = db.kv("items").unwrap();
        assert_eq!(
            kv.table().options().memtable_kind,
            *kind,
            "{kind}: after reopen"
        );
        check(*kind, &kv, &model);
        write_round(&kv, &mut model, 2);
        check(*kind, &kv, &model);
        db.close().unwrap();
    }
}

#[test]
fn per_table_kinds_persist_and_can_be_switched() {
    let dir = tempfile::tempdir().unwrap();
    let kinds = MemtableKind::ALL;
    let mut models: Vec<BTreeMap<Vec<u8>, Vec<u8>>> = vec![BTreeMap::new(); kinds.len()];
    {
        // The database default is `sorted`; each table picks its own kind by name.
        let db = Db::open(dir.path(), options(MemtableKind::Sorted)).unwrap();
        for (i, kind) in kinds.iter().enumerate() {
            let table_options = TableOptions {
                memtable_kind: kind.name().parse().unwrap(),
                ..db.options().table_defaults.clone()
            };
            let table = db
                .create_table_with(
                    &format!("t{i}"),
                    strata_engine::kv_schema(),
                    &["key"],
                    table_options,
                )
                .unwrap();
            assert_eq!(table.options().memtable_kind, *kind);
            let kv = db.kv(&format!("t{i}")).unwrap();
            write_round(&kv, &mut models[i], i as u64);
        }
        db.close().unwrap();
    }
    let db = Db::open(dir.path(), options(MemtableKind::Sorted)).unwrap();
    for (i, kind) in kinds.iter().enumerate() {
        let kv = db.kv(&format!("t{i}")).unwrap();
        assert_eq!(
            kv.table().options().memtable_kind,
            *kind,
            "t{i} after reopen"
        );
        check(*kind, &kv, &models[i]);
        // Switch to the next kind: the next memtable uses it, data stays readable.
        let next = kinds[(i + 1) % kinds.len()];
        let altered = TableOptions {
            memtable_kind: next,
            ..kv.table().options()
        };
        db.alter_table_options(&format!("t{i}"), altered).unwrap();
        kv.flush().unwrap();
        write_round(&kv, &mut models[i], 10 + i as u64);
        assert_eq!(kv.table().options().memtable_kind, next);
        check(next, &kv, &models[i]);
    }
    db.close().unwrap();
}

#[test]
fn kinds_parse_by_name_and_round_trip_through_table_options() {
    for kind in MemtableKind::ALL {
        let json = format!(r#"{{"memtable_kind":"{}"}}"#, kind.name());
        let parsed: TableOptions = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed.memtable_kind, *kind);
        let back = serde_json::to_string(&parsed).unwrap();
        assert!(
            back.contains(&format!(r#""memtable_kind":"{}""#, kind.name())),
            "{back}"
        );
        assert_eq!(
            kind.name()
                .replace('_', "-")
                .parse::<MemtableKind>()
                .unwrap(),
            *kind
        );
    }
    let err = serde_json::from_str::<TableOptions>(r#"{"memtable_kind":"splay_tree"}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("valid kinds: sorted, skiplist"), "{err}");
    assert!(err.contains("b_skiplist"), "{err}");
}
