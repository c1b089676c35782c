//! Every Arrow type family DataFusion produces, as value columns, through every storage path:
//! write -> get/scan (memtable) -> flush -> get/scan (SST) -> overwrite and delete -> flush ->
//! compact -> get/scan -> close with unflushed writes -> reopen (WAL replay) -> get/scan. The
//! values hold NULLs at every nesting level.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BinaryViewArray, Date64Array, Decimal32Array, Decimal64Array, Decimal128Array,
    Decimal256Array, DictionaryArray, DurationMicrosecondArray, FixedSizeListBuilder, Float32Array,
    Int32Array, Int32Builder, Int64Array, IntervalDayTimeArray, IntervalMonthDayNanoArray,
    IntervalYearMonthArray, LargeListBuilder, ListBuilder, MapBuilder, NullArray, RecordBatch,
    StringArray, StringBuilder, StringViewArray, StructArray, Time64MicrosecondArray,
    TimestampMillisecondArray, UInt32Array,
};
use arrow::buffer::NullBuffer;
use arrow::compute::{concat_batches, take};
use arrow::datatypes::{
    DataType, Field, Fields, Int16Type, IntervalDayTime, IntervalMonthDayNano, Schema, i256,
};
use strata_engine::{Db, KeyRange, KeyValue, Options, ScanOptions, TableOptions};

/// Rows per version: values `0..N` are the first version of keys `0..N`, `N..2N` the second.
const N: usize = 20;

fn options() -> Options {
    Options {
        table_defaults: TableOptions {
            sst_index_block_rows: 16,
            sst_row_group_rows: 16,
            sst_scan_row_group_rows: 16,
            ..TableOptions::default()
        },
        ..Options::default()
    }
}

/// Runs the whole life cycle for value columns `values` (each `2 * N` rows long).
fn exercise(family: &str, values: Vec<(&str, ArrayRef)>) {
    for (name, array) in &values {
        assert_eq!(array.len(), 2 * N, "{family}: column {name}");
    }
    let mut fields = vec![Field::new("id", DataType::Int64, false)];
    fields.extend(
        values
            .iter()
            .map(|(name, array)| Field::new(*name, array.data_type().clone(), true)),
    );
    let schema = Arc::new(Schema::new(fields));
    let batch = |keys: &[i64], rows: &[u32]| -> RecordBatch {
        let rows = UInt32Array::from(rows.to_vec());
        let mut columns: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(keys.to_vec()))];
        columns.extend(values.iter().map(|(_, a)| take(a, &rows, None).unwrap()));
        RecordBatch::try_new(Arc::clone(&schema), columns).unwrap()
    };
    // `expected[k]` is the value row of key `k`, or `None` once deleted.
    let check_table = |db: &Db, name: &str, expected: &[Option<u32>], stage: &str| {
        let table = db.table(name).unwrap();
        let keys: Vec<i64> = (0..expected.len() as i64)
            .filter(|k| expected[*k as usize].is_some())
            .collect();
        let rows: Vec<u32> = expected.iter().flatten().copied().collect();
        let want = batch(&keys, &rows);
        let got: Vec<RecordBatch> = table
            .scan(KeyRange::all(), ScanOptions::default())
            .unwrap()
            .map(|b| b.unwrap())
            .collect();
        let got = concat_batches(&schema, &got).unwrap();
        assert_eq!(
            got.num_rows(),
            want.num_rows(),
            "{family} {stage}: scan rows"
        );
        for (i, (g, w)) in got.columns().iter().zip(want.columns()).enumerate() {
            assert_eq!(
                g.to_data(),
                w.to_data(),
                "{family} {stage}: scan column {}",
                schema.field(i).name()
            );
        }
        for (k, row) in expected.iter().enumerate() {
            let found = table.get(&[KeyValue::from(k as i64)]).unwrap();
            match row {
                None => assert!(found.is_none(), "{family} {stage}: key {k} deleted"),
                Some(row) => {
                    let found = found.unwrap_or_else(|| panic!("{family} {stage}: key {k}"));
                    let want = batch(&[k as i64], &[*row]);
                    for (i, (g, w)) in found.columns().iter().zip(want.columns()).enumerate() {
                        assert_eq!(
                            g.to_data(),
                            w.to_data(),
                            "{family} {stage}: get key {k} column {}",
                            schema.field(i).name()
                        );
                    }
                }
            }
        }
    };
    let check =
        |db: &Db, expected: &[Option<u32>], stage: &str| check_table(db, family, expected, stage);
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    let table = db
        .create_table(family, Arc::clone(&schema), &["id"])
        .unwrap();
    let first: Vec<i64> = (0..N as i64).collect();
    let first_rows: Vec<u32> = (0..N as u32).collect();
    table.insert(&batch(&first, &first_rows)).unwrap();
    let mut expected: Vec<Option<u32>> = first_rows.iter().map(|r| Some(*r)).collect();
    check(&db, &expected, "memtable");
    table.flush().unwrap();
    check(&db, &expected, "flushed");
    // Overwrite the first half with the second version, delete the last key.
    let half = N / 2;
    let second_rows: Vec<u32> = (N..N + half).map(|r| r as u32).collect();
    table.insert(&batch(&first[..half], &second_rows)).unwrap();
    table
        .delete_keys(&[vec![KeyValue::from(N as i64 - 1)]])
        .unwrap();
    for (k, row) in second_rows.iter().enumerate() {
        expected[k] = Some(*row);
    }
    expected[N - 1] = None;
    check(&db, &expected, "memtable over SST");
    table.flush().unwrap();
    check(&db, &expected, "two SSTs");
    table.compact().unwrap();
    check(&db, &expected, "compacted");
    // Unflushed writes at close are replayed from the WAL.
    table
        .insert(&batch(
            &[N as i64 - 1, 0],
            &[2 * N as u32 - 1, N as u32 + half as u32],
        ))
        .unwrap();
    expected[N - 1] = Some(2 * N as u32 - 1);
    expected[0] = Some((N + half) as u32);
    drop(table);
    db.close().unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    check(&db, &expected, "reopened");
    db.table(family).unwrap().flush().unwrap();
    db.table(family).unwrap().compact().unwrap();
    check(&db, &expected, "reopened, flushed and compacted");
    // Bulk ingest writes SSTs directly (two of them here), bypassing WAL and memtable.
    let ingested = format!("{family}_ingested");
    let table = db
        .create_table(&ingested, Arc::clone(&schema), &["id"])
        .unwrap();
    let rows: Vec<u32> = (0..N as u32).rev().collect();
    let keys: Vec<i64> = rows.iter().map(|r| *r as i64).collect();
    let options = strata_engine::IngestOptions {
        chunk_rows: N / 2,
        ..Default::default()
    };
    table.ingest([Ok(batch(&keys, &rows))], &options).unwrap();
    let all: Vec<Option<u32>> = (0..N as u32).map(Some).collect();
    check_table(&db, &ingested, &all, "ingested");
    drop(table);
    db.close().unwrap();
}

/// `list<int32>` rows: `[i, NULL, i+1]`, NULL, `[]`, `[NULL]`, repeating.
fn int_lists() -> ListBuilder<Int32Builder> {
    let mut list = ListBuilder::new(Int32Builder::new());
    for i in 0..2 * N as i32 {
        match i % 4 {
            0 => list.append_value([Some(i), None, Some(i + 1)]),
            1 => list.append_null(),
            2 => list.append_value([] as [Option<i32>; 0]),
            _ => list.append_value([None]),
        }
    }
    list
}

#[test]
fn lists_of_every_kind() {
    let list: ArrayRef = Arc::new(int_lists().finish());
    let mut large = LargeListBuilder::new(StringBuilder::new());
    for i in 0..2 * N {
        if i % 3 == 1 {
            large.append_null();
        } else {
            large.append_value([Some(format!("s{i}")), None]);
        }
    }
    let mut fixed = FixedSizeListBuilder::new(Int32Builder::new(), 2);
    for i in 0..2 * N as i32 {
        if i % 3 == 2 {
            fixed.values().append_nulls(2);
            fixed.append(false);
        } else {
            fixed.values().append_value(i);
            fixed.values().append_null();
            fixed.append(true);
        }
    }
    // A list of lists, with NULLs at both levels.
    let mut nested = ListBuilder::new(ListBuilder::new(Int32Builder::new()));
    for i in 0..2 * N {
        if i % 4 == 3 {
            nested.append_null();
        } else {
            nested.values().append_value([Some(i as i32)]);
            nested.values().append_null();
            nested.append(true);
        }
    }
    let view = arrow::compute::cast(
        &list,
        &DataType::ListView(Arc::new(Field::new("item", DataType::Int32, true))),
    )
    .unwrap();
    exercise(
        "lists",
        vec![
            ("list", list),
            ("large", Arc::new(large.finish())),
            ("fixed", Arc::new(fixed.finish())),
            ("nested", Arc::new(nested.finish())),
            ("view", view),
        ],
    );
}

#[test]
fn structs_with_nested_children() {
    let rows = 2 * N;
    let a: ArrayRef = Arc::new(Int32Array::from_iter(
        (0..rows as i32).map(|i| (i % 3 != 1).then_some(i)),
    ));
    let s: ArrayRef = Arc::new(StringArray::from_iter(
        (0..rows).map(|i| (i % 2 == 0).then(|| format!("text {i}"))),
    ));
    let l: ArrayRef = Arc::new(int_lists().finish());
    let iv: ArrayRef = Arc::new(IntervalMonthDayNanoArray::from_iter((0..rows).map(|i| {
        (i % 4 != 2).then(|| IntervalMonthDayNano::new(i as i32, -(i as i32), i as i64 * 1000))
    })));
    let inner_fields = Fields::from(vec![Field::new("x", DataType::Int32, true)]);
    let inner: ArrayRef = Arc::new(
        StructArray::try_new(
            inner_fields.clone(),
            vec![Arc::clone(&a)],
            Some(NullBuffer::from_iter((0..rows).map(|i| i % 5 != 4))),
        )
        .unwrap(),
    );
    let fields = Fields::from(vec![
        Field::new("a", DataType::Int32, true),
        Field::new("s", DataType::Utf8, true),
        Field::new("l", l.data_type().clone(), true),
        Field::new("iv", iv.data_type().clone(), true),
        Field::new("inner", DataType::Struct(inner_fields), true),
    ]);
    let outer: ArrayRef = Arc::new(
        StructArray::try_new(
            fields,
            vec![a, s, l, iv, inner],
            Some(NullBuffer::from_iter((0..rows).map(|i| i % 6 != 5))),
        )
        .unwrap(),
    );
    exercise("structs", vec![("st", outer)]);
}

#[test]
fn maps() {
    let mut map = MapBuilder::new(None, StringBuilder::new(), Int32Builder::new());
    for i in 0..2 * N {
        match i % 3 {
            0 => {
                map.keys().append_value(format!("k{i}"));
                map.values().append_value(i as i32);
                map.keys().append_value("nothing");
                map.values().append_null();
                map.append(true).unwrap();
            }
            1 => map.append(false).unwrap(),
            _ => map.append(true).unwrap(),
        }
    }
    exercise("maps", vec![("m", Arc::new(map.finish()))]);
}

#[test]
fn dictionaries() {
    let dictionary: DictionaryArray<Int16Type> = (0..2 * N)
        .map(|i| (i % 4 != 3).then(|| ["red", "green", "blue"][i % 3]))
        .collect();
    exercise("dictionaries", vec![("d", Arc::new(dictionary))]);
}

#[test]
fn intervals_of_every_unit() {
    let rows = 2 * N;
    exercise(
        "intervals",
        vec![
            (
                "ym",
                Arc::new(IntervalYearMonthArray::from_iter(
                    (0..rows as i32).map(|i| (i % 3 != 1).then_some(i - 3)),
                )),
            ),
            (
                "dt",
                Arc::new(IntervalDayTimeArray::from_iter((0..rows as i32).map(|i| {
                    (i % 3 != 2).then(|| IntervalDayTime::new(i, -i * 1000))
                }))),
            ),
            (
                "mdn",
                Arc::new(IntervalMonthDayNanoArray::from_iter((0..rows as i64).map(
                    |i| (i % 3 != 0).then(|| IntervalMonthDayNano::new(i as i32, 2, i64::MAX - i)),
                ))),
            ),
        ],
    );
}

#[test]
fn scalars_of_every_other_family() {
    let rows = 2 * N;
    let idx = || 0..rows as i64;
    let float16 = arrow::compute::cast(
        &Float32Array::from_iter(idx().map(|i| (i % 4 != 1).then_some(i as f32 / 2.0))),
        &DataType::Float16,
    )
    .unwrap();
    exercise(
        "scalars",
        vec![
            ("nothing", Arc::new(NullArray::new(rows))),
            ("f16", float16),
            (
                "d32",
                Arc::new(
                    Decimal32Array::from_iter(idx().map(|i| (i % 3 != 0).then_some(i as i32)))
                        .with_precision_and_scale(9, 2)
                        .unwrap(),
                ),
            ),
            (
                "d64",
                Arc::new(
                    Decimal64Array::from_iter(idx().map(|i| (i % 3 != 1).then_some(-i)))
                        .with_precision_and_scale(18, 0)
                        .unwrap(),
                ),
            ),
            (
                "d128",
                Arc::new(
                    Decimal128Array::from_iter(idx().map(|i| (i % 3 != 2).then_some(i as i128)))
                        .with_precision_and_scale(38, 5)
                        .unwrap(),
                ),
            ),
            (
                "d256",
                Arc::new(
                    Decimal256Array::from_iter(
                        idx().map(|i| (i % 2 == 0).then(|| i256::from_i128(i as i128 - 5))),
                    )
                    .with_precision_and_scale(50, 3)
                    .unwrap(),
                ),
            ),
            (
                "dur",
                Arc::new(DurationMicrosecondArray::from_iter(
                    idx().map(|i| (i % 4 != 0).then_some(i * 7)),
                )),
            ),
            (
                "time",
                Arc::new(Time64MicrosecondArray::from_iter(
                    idx().map(|i| (i % 4 != 1).then_some(i * 1_000_000)),
                )),
            ),
            (
                "ts",
                Arc::new(
                    TimestampMillisecondArray::from_iter(
                        idx().map(|i| (i % 4 != 2).then_some(i * 86_400_000)),
                    )
                    .with_timezone("Europe/Paris"),
                ),
            ),
            (
                "date64",
                Arc::new(Date64Array::from_iter(
                    idx().map(|i| (i % 4 != 3).then_some(i * 86_400_000)),
                )),
            ),
            (
                "sv",
                Arc::new(StringViewArray::from_iter(idx().map(|i| {
                    (i % 3 != 0).then(|| format!("string view number {i}"))
                }))),
            ),
            (
                "bv",
                Arc::new(BinaryViewArray::from_iter(
                    idx().map(|i| (i % 3 != 1).then(|| vec![i as u8; i as usize])),
                )),
            ),
        ],
    );
}

#[test]
fn nested_and_interval_columns_cannot_be_keys() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    let list = DataType::List(Arc::new(Field::new("item", DataType::Int32, true)));
    for key_type in [
        list,
        DataType::Interval(arrow::datatypes::IntervalUnit::MonthDayNano),
        DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
    ] {
        let schema = Arc::new(Schema::new(vec![Field::new("k", key_type.clone(), false)]));
        let err = db
            .create_table("bad", schema, &["k"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("column 'k'") && err.contains("cannot be part of a primary key"),
            "{key_type}: {err}"
        );
    }
}
