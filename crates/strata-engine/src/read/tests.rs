//! Unit tests of the merge ([`MergeIter`]) over synthetic runs, checked against a model: a
//! sorted list of every version, deduplicated the way each [`Dedup`] mode defines.
//!
//! A run here is a list of rows in internal order (key ascending, sequence descending), cut
//! into batches at chosen boundaries, each batch flagged `clean` exactly when a real source
//! would flag it (one version per key, no tombstone, nothing newer than the read).

use std::sync::Arc;

use arrow::array::{Array, AsArray, Int64Array, RecordBatch, UInt8Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, UInt8Type, UInt64Type};
use proptest::prelude::*;

use super::merge::{Dedup, MergeIter};
use super::runs::RunIter;
use crate::codec::ByteRows;
use crate::error::{Error, Result};
use crate::sst::KeyedBatch;
use crate::types::{MAX_SEQ, OpKind, SeqNo};

/// One version: key, sequence number, operation, value.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    key: Vec<u8>,
    seq: SeqNo,
    op: OpKind,
    value: i64,
}

fn put(key: &[u8], seq: SeqNo, value: i64) -> Row {
    Row {
        key: key.to_vec(),
        seq,
        op: OpKind::Put,
        value,
    }
}

fn del(key: &[u8], seq: SeqNo) -> Row {
    Row {
        key: key.to_vec(),
        seq,
        op: OpKind::Delete,
        value: 0,
    }
}

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("v", DataType::Int64, false),
        Field::new("_seq", DataType::UInt64, false),
        Field::new("_op", DataType::UInt8, false),
    ]))
}

/// A batch of `rows` (internal order), clean when a source reading at `read_seq` would say so.
fn keyed_batch(rows: &[Row], read_seq: SeqNo) -> KeyedBatch {
    let mut keys = ByteRows::with_capacity(rows.len(), rows.len() * 4);
    rows.iter().for_each(|r| keys.push(&r.key));
    let clean = rows.windows(2).all(|w| w[0].key != w[1].key)
        && rows
            .iter()
            .all(|r| r.op == OpKind::Put && r.seq <= read_seq);
    let batch = RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.value))),
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.seq))),
            Arc::new(UInt8Array::from_iter_values(
                rows.iter().map(|r| r.op.as_u8()),
            )),
        ],
    )
    .expect("test batch");
    KeyedBatch {
        batch,
        keys: Arc::new(keys),
        seq_column: 1,
        op_column: 2,
        clean,
    }
}

/// A run of `rows` (sorted here into internal order) cut into batches of the given sizes
/// (the last size repeats; an empty `sizes` makes one batch).
fn run_of(mut rows: Vec<Row>, sizes: &[usize], read_seq: SeqNo) -> Vec<KeyedBatch> {
    rows.sort_by(|a, b| a.key.cmp(&b.key).then(b.seq.cmp(&a.seq)));
    let mut batches = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while start < rows.len() {
        let size = sizes
            .get(i)
            .or(sizes.last())
            .copied()
            .unwrap_or(rows.len())
            .max(1);
        let end = (start + size).min(rows.len());
        batches.push(keyed_batch(&rows[start..end], read_seq));
        start = end;
        i += 1;
    }
    batches
}

fn iter_of(batches: Vec<KeyedBatch>) -> RunIter {
    Box::new(batches.into_iter().map(Ok))
}

/// A run that yields `batches`, then fails (and, if asked again, yields `after`: a run that
/// misbehaves past its error must not be read).
fn failing_run(batches: Vec<KeyedBatch>, after: Vec<KeyedBatch>) -> RunIter {
    let error = std::iter::once(Err(Error::Internal("injected read failure".into())));
    Box::new(
        batches
            .into_iter()
            .map(Ok)
            .chain(error)
            .chain(after.into_iter().map(Ok)),
    )
}

/// Every output row of a merge, or the first error with the rows output before it.
fn drain(merge: &mut MergeIter) -> (Vec<Row>, Option<Error>) {
    let mut rows = Vec::new();
    loop {
        match merge.next_batch() {
            Ok(Some(batch)) => {
                assert!(batch.num_rows() > 0, "the merge output an empty batch");
                let values = batch.batch.column(0).as_primitive::<Int64Type>();
                let seqs = batch.batch.column(1).as_primitive::<UInt64Type>();
                let ops = batch.batch.column(2).as_primitive::<UInt8Type>();
                assert_eq!(batch.keys.len(), batch.num_rows(), "keys follow the rows");
                for i in 0..batch.num_rows() {
                    rows.push(Row {
                        key: batch.keys.get(i).to_vec(),
                        seq: seqs.value(i),
                        op: OpKind::from_u8(ops.value(i)).expect("op byte"),
                        value: values.value(i),
                    });
                }
                assert_eq!(values.null_count(), 0);
            }
            Ok(None) => return (rows, None),
            Err(error) => return (rows, Some(error)),
        }
    }
}

/// What `dedup` keeps of `rows` (every version of every run), in output order.
fn model(rows: &[Row], dedup: &Dedup) -> Vec<Row> {
    let mut sorted = rows.to_vec();
    sorted.sort_by(|a, b| a.key.cmp(&b.key).then(b.seq.cmp(&a.seq)));
    let mut out = Vec::new();
    for group in sorted.chunk_by(|a, b| a.key == b.key) {
        match dedup {
            Dedup::Latest { read_seq } => {
                if let Some(newest) = group.iter().find(|r| r.seq <= *read_seq)
                    && newest.op == OpKind::Put
                {
                    out.push(newest.clone());
                }
            }
            Dedup::All { read_seq } => {
                out.extend(group.iter().filter(|r| r.seq <= *read_seq).cloned());
            }
            Dedup::Retain {
                snapshots,
                drop_tombstones,
            } => {
                // The newest version, and each older one a snapshot in [its seq, the next
                // newer version's seq) still reads.
                let mut kept: Vec<Row> = vec![group[0].clone()];
                for pair in group.windows(2) {
                    let (newer, older) = (&pair[0], &pair[1]);
                    if snapshots.iter().any(|s| *s >= older.seq && *s < newer.seq) {
                        kept.push(older.clone());
                    }
                }
                if *drop_tombstones {
                    while kept.last().is_some_and(|r| r.op == OpKind::Delete) {
                        kept.pop();
                    }
                }
                out.extend(kept);
            }
        }
    }
    out
}

fn read_seq_of(dedup: &Dedup) -> SeqNo {
    match dedup {
        Dedup::Latest { read_seq } | Dedup::All { read_seq } => *read_seq,
        Dedup::Retain { .. } => MAX_SEQ,
    }
}

/// Merges `runs` (rows and batch sizes, newest run first) with `dedup` and checks the output
/// against the model, for several output batch sizes.
fn check(runs: &[(Vec<Row>, Vec<usize>)], dedup: Dedup) {
    let all: Vec<Row> = runs.iter().flat_map(|(rows, _)| rows.clone()).collect();
    let expected = model(&all, &dedup);
    for batch_rows in [1, 2, 3, 7, 8192] {
        let iters: Vec<RunIter> = runs
            .iter()
            .map(|(rows, sizes)| iter_of(run_of(rows.clone(), sizes, read_seq_of(&dedup))))
            .collect();
        let mut merge = MergeIter::new(iters, dedup.clone(), batch_rows, true);
        let (rows, error) = drain(&mut merge);
        assert!(error.is_none(), "{error:?}");
        assert_eq!(rows, expected, "{dedup:?}, output batches of {batch_rows}");
        let dropped = merge.rows_dropped() as usize;
        if !matches!(dedup, Dedup::All { .. }) {
            assert_eq!(dropped, all.len() - expected.len(), "rows dropped");
        }
        assert!(merge.next_batch().expect("after the end").is_none());
    }
}

#[test]
fn no_runs_and_empty_runs_give_nothing() {
    for dedup in [
        Dedup::Latest { read_seq: MAX_SEQ },
        Dedup::All { read_seq: MAX_SEQ },
        Dedup::Retain {
            snapshots: vec![],
            drop_tombstones: true,
        },
    ] {
        let mut merge = MergeIter::new(Vec::new(), dedup.clone(), 8, true);
        assert_eq!(merge.runs(), 0);
        assert!(merge.next_batch().expect("no runs").is_none());
        let empty: Vec<RunIter> = vec![iter_of(Vec::new()), iter_of(Vec::new())];
        let mut merge = MergeIter::new(empty, dedup, 8, true);
        assert!(merge.next_batch().expect("empty runs").is_none());
    }
}

#[test]
fn empty_runs_among_others_change_nothing() {
    let rows = vec![put(b"a", 3, 1), put(b"b", 4, 2), del(b"c", 5)];
    check(
        &[
            (Vec::new(), vec![]),
            (rows.clone(), vec![1]),
            (Vec::new(), vec![]),
        ],
        Dedup::Latest { read_seq: MAX_SEQ },
    );
    // A run whose batches are all empty (a source that filtered every row out).
    let iters: Vec<RunIter> = vec![
        Box::new(vec![Ok(keyed_batch(&[], MAX_SEQ)), Ok(keyed_batch(&[], MAX_SEQ))].into_iter()),
        iter_of(run_of(rows, &[2], MAX_SEQ)),
    ];
    let mut merge = MergeIter::new(iters, Dedup::Latest { read_seq: MAX_SEQ }, 8, true);
    let (out, error) = drain(&mut merge);
    assert!(error.is_none());
    assert_eq!(out, vec![put(b"a", 3, 1), put(b"b", 4, 2)]);
}

#[test]
fn equal_keys_across_runs_newest_sequence_wins() {
    // The newest version of "k" sits in the run given last: run order never decides.
    let newest_last = [
        (vec![put(b"j", 1, 10), put(b"k", 2, 20)], vec![]),
        (vec![put(b"k", 5, 50), put(b"l", 3, 30)], vec![]),
        (vec![put(b"k", 9, 90)], vec![]),
    ];
    let (out, _) = drain(&mut MergeIter::new(
        newest_last
            .iter()
            .map(|(rows, sizes)| iter_of(run_of(rows.clone(), sizes, MAX_SEQ)))
            .collect(),
        Dedup::Latest { read_seq: MAX_SEQ },
        16,
        true,
    ));
    assert_eq!(
        out,
        vec![put(b"j", 1, 10), put(b"k", 9, 90), put(b"l", 3, 30)]
    );
    check(&newest_last, Dedup::Latest { read_seq: MAX_SEQ });
    // At an older read sequence the version it sees wins.
    check(&newest_last, Dedup::Latest { read_seq: 5 });
    check(&newest_last, Dedup::Latest { read_seq: 4 });
    check(&newest_last, Dedup::All { read_seq: MAX_SEQ });
    check(&newest_last, Dedup::All { read_seq: 4 });
}

#[test]
fn tombstones_hide_older_versions_in_other_runs() {
    let runs = [
        (vec![del(b"a", 8), put(b"b", 9, 2)], vec![]),
        (vec![put(b"a", 4, 1), del(b"b", 6), put(b"c", 5, 3)], vec![]),
        (
            vec![put(b"a", 1, 0), put(b"b", 2, 0), put(b"c", 3, 0)],
            vec![],
        ),
    ];
    let iters = |read_seq| -> Vec<RunIter> {
        runs.iter()
            .map(|(rows, sizes)| iter_of(run_of(rows.clone(), sizes, read_seq)))
            .collect()
    };
    let latest = |read_seq| {
        drain(&mut MergeIter::new(
            iters(read_seq),
            Dedup::Latest { read_seq },
            8,
            true,
        ))
        .0
    };
    // "a" is deleted at 8; "b" was deleted at 6 and put again at 9.
    assert_eq!(latest(MAX_SEQ), vec![put(b"b", 9, 2), put(b"c", 5, 3)]);
    // Before the delete of "a" and the re-put of "b": "a" at 4, "b" deleted.
    assert_eq!(latest(7), vec![put(b"a", 4, 1), put(b"c", 5, 3)]);
    // Before anything of the newer runs.
    assert_eq!(
        latest(3),
        vec![put(b"a", 1, 0), put(b"b", 2, 0), put(b"c", 3, 0)]
    );
    for read_seq in 0..=10 {
        check(&runs, Dedup::Latest { read_seq });
        check(&runs, Dedup::All { read_seq });
    }
}

#[test]
fn version_scans_keep_tombstones_and_every_visible_version() {
    let runs = [
        (vec![del(b"a", 8), put(b"a", 7, 3)], vec![1]),
        (vec![put(b"a", 4, 1), put(b"b", 2, 0)], vec![]),
    ];
    let (out, _) = drain(&mut MergeIter::new(
        runs.iter()
            .map(|(rows, sizes)| iter_of(run_of(rows.clone(), sizes, 7)))
            .collect(),
        Dedup::All { read_seq: 7 },
        8,
        true,
    ));
    assert_eq!(
        out,
        vec![put(b"a", 7, 3), put(b"a", 4, 1), put(b"b", 2, 0)],
        "versions newer than the read are left out, the rest kept newest first"
    );
    check(&runs, Dedup::All { read_seq: MAX_SEQ });
}

#[test]
fn retain_keeps_the_versions_snapshots_see() {
    // "k": versions at 10, 7, 4 (tombstone), 2.
    let runs = [
        (vec![put(b"k", 10, 100)], vec![]),
        (vec![put(b"k", 7, 70), del(b"k", 4)], vec![]),
        (vec![put(b"k", 2, 20), put(b"z", 1, 1)], vec![]),
    ];
    let retain = |snapshots: Vec<SeqNo>, drop_tombstones| {
        let dedup = Dedup::Retain {
            snapshots,
            drop_tombstones,
        };
        check(&runs, dedup.clone());
        let iters = runs
            .iter()
            .map(|(rows, sizes)| iter_of(run_of(rows.clone(), sizes, MAX_SEQ)))
            .collect();
        drain(&mut MergeIter::new(iters, dedup, 8, true)).0
    };
    // No snapshot: the newest version of each key only.
    assert_eq!(
        retain(vec![], false),
        vec![put(b"k", 10, 100), put(b"z", 1, 1)]
    );
    // Retention boundaries: a snapshot at exactly a version's sequence sees that version;
    // one just below the next newer version's sequence still sees it; one at the newer
    // version's sequence sees the newer one instead.
    assert_eq!(
        retain(vec![7], false),
        vec![put(b"k", 10, 100), put(b"k", 7, 70), put(b"z", 1, 1)]
    );
    assert_eq!(
        retain(vec![9], false),
        vec![put(b"k", 10, 100), put(b"k", 7, 70), put(b"z", 1, 1)]
    );
    assert_eq!(
        retain(vec![10], false),
        vec![put(b"k", 10, 100), put(b"z", 1, 1)]
    );
    assert_eq!(
        retain(vec![6], false),
        vec![put(b"k", 10, 100), del(b"k", 4), put(b"z", 1, 1)],
        "a snapshot between a tombstone and the next put keeps the tombstone"
    );
    assert_eq!(
        retain(vec![1, 2, 3], false),
        vec![put(b"k", 10, 100), put(b"k", 2, 20), put(b"z", 1, 1)],
    );
    // At the bottom of the tree a tombstone that is the oldest version kept goes too ...
    assert_eq!(
        retain(vec![6], true),
        vec![put(b"k", 10, 100), put(b"z", 1, 1)]
    );
    // ... but not one an older kept version still needs hiding.
    assert_eq!(
        retain(vec![2, 6], true),
        vec![
            put(b"k", 10, 100),
            del(b"k", 4),
            put(b"k", 2, 20),
            put(b"z", 1, 1)
        ]
    );
    for snapshots in [vec![], vec![1], vec![4], vec![5, 8], vec![2, 4, 7, 10, 11]] {
        for drop_tombstones in [false, true] {
            retain(snapshots.clone(), drop_tombstones);
        }
    }
}

#[test]
fn retain_drops_a_lone_bottom_tombstone_and_keeps_a_newest_one_otherwise() {
    let runs = [(vec![del(b"a", 5), put(b"b", 6, 1)], vec![])];
    check(
        &runs,
        Dedup::Retain {
            snapshots: vec![],
            drop_tombstones: true,
        },
    );
    check(
        &runs,
        Dedup::Retain {
            snapshots: vec![],
            drop_tombstones: false,
        },
    );
    let out = drain(&mut MergeIter::new(
        vec![iter_of(run_of(runs[0].0.clone(), &[], MAX_SEQ))],
        Dedup::Retain {
            snapshots: vec![],
            drop_tombstones: false,
        },
        8,
        true,
    ))
    .0;
    assert_eq!(out, vec![del(b"a", 5), put(b"b", 6, 1)]);
}

#[test]
fn batch_boundaries_inside_a_key_versions() {
    // One run holds many versions of "m", cut into batches of one and two rows, so the newest
    // version ends one batch and the older ones start the next (each batch alone looks clean).
    let one_run = vec![
        put(b"l", 1, 1),
        put(b"m", 9, 9),
        put(b"m", 7, 7),
        put(b"m", 5, 5),
        del(b"m", 4),
        put(b"m", 3, 3),
        put(b"n", 2, 2),
    ];
    for sizes in [vec![1], vec![2], vec![3], vec![2, 1], vec![1, 3, 1]] {
        let runs = [(one_run.clone(), sizes.clone())];
        for read_seq in [MAX_SEQ, 8, 6, 4, 3, 2, 0] {
            check(&runs, Dedup::Latest { read_seq });
            check(&runs, Dedup::All { read_seq });
        }
        for snapshots in [vec![], vec![4], vec![3, 6, 8]] {
            for drop_tombstones in [false, true] {
                check(
                    &runs,
                    Dedup::Retain {
                        snapshots: snapshots.clone(),
                        drop_tombstones,
                    },
                );
            }
        }
    }
    // The same versions split between two runs, each cut inside the key.
    let runs = [
        (
            vec![put(b"m", 9, 9), put(b"m", 5, 5), put(b"n", 10, 10)],
            vec![1],
        ),
        (
            vec![put(b"l", 1, 1), put(b"m", 7, 7), del(b"m", 4)],
            vec![2],
        ),
    ];
    for read_seq in [MAX_SEQ, 8, 6, 4, 0] {
        check(&runs, Dedup::Latest { read_seq });
    }
    check(
        &runs,
        Dedup::Retain {
            snapshots: vec![4, 6],
            drop_tombstones: true,
        },
    );
}

#[test]
fn a_clean_batch_starting_at_a_decided_key_is_filtered() {
    // Run 1's clean batch ends with "b"@9; run 2's clean batch starts with "b"@3 and must not
    // be copied whole.
    let runs = [
        (vec![put(b"a", 8, 1), put(b"b", 9, 2)], vec![]),
        (vec![put(b"b", 3, 0), put(b"c", 4, 3)], vec![]),
    ];
    check(&runs, Dedup::Latest { read_seq: MAX_SEQ });
}

/// Rows of `n` batches of a run over keys 0..: the rows the merge has seen when a run fails
/// after them.
fn numbered_rows(first_seq: SeqNo, keys: impl Iterator<Item = u8>) -> Vec<Row> {
    keys.enumerate()
        .map(|(i, k)| put(&[k], first_seq + i as SeqNo, i64::from(k)))
        .collect()
}

#[test]
fn a_run_failing_at_step_n_fails_the_merge_and_it_stays_failed() {
    let healthy = numbered_rows(1000, (0..40).map(|k| k * 2));
    let failing_rows = numbered_rows(2000, (0..40).map(|k| k * 2 + 1));
    let failing_batches = run_of(failing_rows.clone(), &[4], MAX_SEQ);
    let all: Vec<Row> = healthy.iter().chain(&failing_rows).cloned().collect();
    for dedup in [
        Dedup::Latest { read_seq: MAX_SEQ },
        Dedup::All { read_seq: MAX_SEQ },
        Dedup::Retain {
            snapshots: vec![1500],
            drop_tombstones: true,
        },
    ] {
        let expected = model(&all, &dedup);
        for fail_at in 0..=failing_batches.len() {
            for batch_rows in [1, 5, 8192] {
                let runs = vec![
                    iter_of(run_of(healthy.clone(), &[3], MAX_SEQ)),
                    failing_run(
                        failing_batches[..fail_at].to_vec(),
                        failing_batches[fail_at..].to_vec(),
                    ),
                ];
                let mut merge = MergeIter::new(runs, dedup.clone(), batch_rows, true);
                let (rows, error) = drain(&mut merge);
                let error = error.unwrap_or_else(|| {
                    panic!("a run failing after {fail_at} batches ended the merge without error")
                });
                assert!(
                    error.to_string().contains("injected read failure"),
                    "the run's own error is returned: {error}"
                );
                // Whatever came out before the error is exactly the start of the answer.
                assert!(
                    rows.len() < expected.len(),
                    "the whole answer came out before the error"
                );
                assert_eq!(rows, expected[..rows.len()], "{dedup:?}, fail at {fail_at}");
                // Once failed, no more rows, whatever the runs would still give.
                for _ in 0..3 {
                    assert!(merge.next_batch().expect("after the error").is_none());
                }
                assert!(merge.next().is_none());
            }
        }
    }
}

#[test]
fn a_failure_in_the_first_fill_is_returned() {
    let runs = vec![
        iter_of(run_of(vec![put(b"a", 1, 1)], &[], MAX_SEQ)),
        failing_run(Vec::new(), Vec::new()),
    ];
    let mut merge = MergeIter::new(runs, Dedup::Latest { read_seq: MAX_SEQ }, 8, true);
    let (rows, error) = drain(&mut merge);
    assert!(rows.is_empty());
    assert!(error.is_some());
    assert!(merge.next_batch().expect("after the error").is_none());
}

#[test]
fn through_the_iterator_an_error_is_the_last_item() {
    let runs = vec![failing_run(
        run_of(numbered_rows(1, 0..10), &[2], MAX_SEQ),
        run_of(numbered_rows(100, 10..20), &[2], MAX_SEQ),
    )];
    let items: Vec<Result<KeyedBatch>> =
        MergeIter::new(runs, Dedup::Latest { read_seq: MAX_SEQ }, 4, true).collect();
    let (last, before) = items.split_last().expect("items");
    assert!(last.is_err());
    assert!(before.iter().all(|b| b.is_ok()));
    let rows: usize = before.iter().flatten().map(|b| b.num_rows()).sum();
    assert!(rows <= 10, "no row past the failure");
}

/// Runs (rows and batch sizes) and snapshot sequence numbers.
type RunsAndSnapshots = (Vec<(Vec<Row>, Vec<usize>)>, Vec<SeqNo>);

/// Random runs: `(key, op is delete, run)` per version, sequence numbers distinct.
fn arb_runs() -> impl Strategy<Value = RunsAndSnapshots> {
    (
        1usize..5,
        prop::collection::vec((0u8..12, any::<bool>(), 0usize..4, any::<i32>()), 0..60),
        prop::collection::vec(prop::collection::vec(1usize..5, 1..4), 4),
        prop::collection::btree_set(0u64..70, 0..4),
    )
        .prop_map(|(runs, versions, sizes, snapshots)| {
            let mut rows: Vec<Vec<Row>> = vec![Vec::new(); runs];
            for (i, (key, delete, run, value)) in versions.into_iter().enumerate() {
                let seq = i as SeqNo + 1;
                let key = vec![b'k', key];
                let row = if delete {
                    del(&key, seq)
                } else {
                    put(&key, seq, i64::from(value))
                };
                rows[run % runs].push(row);
            }
            let runs = rows.into_iter().zip(sizes).collect();
            (runs, snapshots.into_iter().collect())
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn merges_match_the_model(
        (runs, snapshots) in arb_runs(),
        read_seq in 0u64..70,
        drop_tombstones in any::<bool>(),
    ) {
        check(&runs, Dedup::Latest { read_seq });
        check(&runs, Dedup::Latest { read_seq: MAX_SEQ });
        check(&runs, Dedup::All { read_seq });
        check(&runs, Dedup::Retain { snapshots, drop_tombstones });
    }
}

/// Small keys over a two-letter alphabet: every bound and key a test range can meet.
fn arb_key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(b'a'..=b'b', 0..3)
}

fn arb_bound() -> impl Strategy<Value = std::ops::Bound<Vec<u8>>> {
    use std::ops::Bound;
    prop_oneof![
        Just(Bound::Unbounded),
        arb_key().prop_map(Bound::Included),
        arb_key().prop_map(Bound::Excluded),
    ]
}

fn arb_range() -> impl Strategy<Value = super::KeyRange> {
    (arb_bound(), arb_bound()).prop_map(|(lower, upper)| super::KeyRange::new(lower, upper))
}

/// Every key of up to three letters of the alphabet (what ranges over [`arb_key`] bounds can
/// tell apart).
fn all_keys() -> Vec<Vec<u8>> {
    let mut keys = vec![Vec::new()];
    for len in 1..=3u32 {
        for n in 0..2usize.pow(len) {
            keys.push(
                (0..len)
                    .rev()
                    .map(|bit| if n >> bit & 1 == 1 { b'b' } else { b'a' })
                    .collect(),
            );
        }
    }
    keys
}

#[test]
fn intersect_examples() {
    use super::KeyRange;
    use std::ops::Bound::{Excluded, Included, Unbounded};
    let r = |lower, upper| KeyRange::new(lower, upper);
    let k = |s: &str| s.as_bytes().to_vec();
    assert_eq!(
        KeyRange::all().intersect(&r(Included(k("b")), Excluded(k("d")))),
        r(Included(k("b")), Excluded(k("d")))
    );
    assert_eq!(
        r(Included(k("a")), Included(k("c"))).intersect(&r(Excluded(k("b")), Unbounded)),
        r(Excluded(k("b")), Included(k("c")))
    );
    // At equal keys, the exclusive bound is the tighter one, on either side.
    assert_eq!(
        r(Included(k("b")), Included(k("c"))).intersect(&r(Excluded(k("b")), Excluded(k("c")))),
        r(Excluded(k("b")), Excluded(k("c")))
    );
    assert!(
        r(Unbounded, Excluded(k("b")))
            .intersect(&r(Included(k("b")), Unbounded))
            .is_empty()
    );
    assert!(
        KeyRange::point(k("b"))
            .intersect(&KeyRange::point(k("c")))
            .is_empty()
    );
    assert_eq!(
        KeyRange::point(k("b")).intersect(&KeyRange::prefix(k("b"))),
        KeyRange::point(k("b"))
    );
    assert!(KeyRange::empty().intersect(&KeyRange::all()).is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn intersect_holds_exactly_the_keys_of_both(a in arb_range(), b in arb_range()) {
        let both = a.intersect(&b);
        prop_assert_eq!(&both, &b.intersect(&a), "intersection is symmetric");
        for key in all_keys() {
            prop_assert_eq!(
                both.contains(&key),
                a.contains(&key) && b.contains(&key),
                "key {:?} in {:?} ∩ {:?} = {:?}", key, a, b, both
            );
            if both.is_empty() {
                prop_assert!(!both.contains(&key));
            }
        }
    }

    #[test]
    fn overlaps_never_misses_a_key(range in arb_range(), x in arb_key(), y in arb_key()) {
        let (min, max) = if x <= y { (x, y) } else { (y, x) };
        let any_key = all_keys()
            .iter()
            .any(|k| *k >= min && *k <= max && range.contains(k));
        if any_key {
            prop_assert!(range.overlaps(&min, &max));
        }
        for key in all_keys() {
            if range.starts_after(&key) || range.ends_before(&key) {
                prop_assert!(!range.contains(&key));
            }
        }
    }
}
