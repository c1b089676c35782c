use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use arrow::array::{Array, AsArray, Int64Array, RecordBatch, StringArray, UInt8Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};

use super::*;
use crate::metrics::Metrics;
use crate::options::TableOptions;
use crate::schema::TableSchema;
use crate::types::OpKind;

fn table_schema() -> Arc<TableSchema> {
    let user = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
    ]));
    Arc::new(TableSchema::new(user, &["id"]).unwrap())
}

fn small_options() -> TableOptions {
    TableOptions {
        sst_index_block_rows: 16,
        sst_row_group_rows: 64,
        sst_scan_row_group_rows: 64,
        sst_page_size_bytes: 1024,
        ..TableOptions::default()
    }
}

/// Rows: keys 0, 2, 4, ... (n keys); key 10 has three versions (seq 300, 200, 100, the middle
/// one a tombstone); every other key one version with seq = key + 1000.
fn rows(schema: &TableSchema, n: i64) -> (RecordBatch, crate::codec::ByteRows) {
    let mut ids = Vec::new();
    let mut names = Vec::new();
    let mut seqs = Vec::new();
    let mut ops = Vec::new();
    for k in (0..n).map(|i| i * 2) {
        if k == 10 {
            for (seq, op) in [
                (300u64, OpKind::Put),
                (200, OpKind::Delete),
                (100, OpKind::Put),
            ] {
                ids.push(k);
                names.push((op == OpKind::Put).then(|| format!("v{seq}")));
                seqs.push(seq);
                ops.push(op.as_u8());
            }
        } else {
            ids.push(k);
            names.push(Some(format!("name-{k}")));
            seqs.push(k as u64 + 1000);
            ops.push(0);
        }
    }
    let batch = RecordBatch::try_new(
        schema.sst_schema(),
        vec![
            Arc::new(Int64Array::from(ids.clone())),
            Arc::new(StringArray::from(names)),
            Arc::new(UInt64Array::from(seqs)),
            Arc::new(UInt8Array::from(ops)),
        ],
    )
    .unwrap();
    let keys = schema
        .key_codec()
        .encode_columns(&[Arc::new(Int64Array::from(ids)) as _])
        .unwrap();
    (batch, keys)
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: SstStore,
    meta: SstMeta,
    schema: Arc<TableSchema>,
    metrics: Arc<Metrics>,
}

impl Fixture {
    /// The fixture of file `meta`, written to `store` in `dir`, of a table of `schema`.
    fn new(
        dir: tempfile::TempDir,
        store: SstStore,
        meta: SstMeta,
        schema: &Arc<TableSchema>,
    ) -> Fixture {
        Fixture {
            _dir: dir,
            store,
            meta,
            schema: Arc::clone(schema),
            metrics: Arc::new(Metrics::default()),
        }
    }
}

fn fixture(n: i64) -> Fixture {
    fixture_with(n, &small_options())
}

fn fixture_with(n: i64, options: &TableOptions) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = SstStore::new(dir.path(), None).unwrap();
    let schema = table_schema();
    let mut writer = SstWriter::new(
        &store,
        7,
        42,
        42,
        &schema,
        options,
        SstLayout::Lookup,
        0,
        n as u64,
    )
    .unwrap();
    let (batch, keys) = rows(&schema, n);
    // Write in two pieces to check that order and stats carry across batches.
    let half = batch.num_rows() / 2;
    let mut first = crate::codec::ByteRows::with_capacity(half, 0);
    let mut second = crate::codec::ByteRows::with_capacity(batch.num_rows() - half, 0);
    (0..half).for_each(|i| first.push(keys.get(i)));
    (half..keys.len()).for_each(|i| second.push(keys.get(i)));
    writer.write(&batch.slice(0, half), &first).unwrap();
    writer
        .write(&batch.slice(half, batch.num_rows() - half), &second)
        .unwrap();
    let meta = writer.finish().unwrap();
    Fixture::new(dir, store, meta, &schema)
}

/// A fixture of one file written from `batch` (SST columns) and its encoded `keys` in one
/// piece with `options`.
fn written(
    schema: &Arc<TableSchema>,
    batch: &RecordBatch,
    keys: &crate::codec::ByteRows,
    options: &TableOptions,
) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = SstStore::new(dir.path(), None).unwrap();
    let rows = batch.num_rows() as u64;
    let mut writer = SstWriter::new(
        &store,
        7,
        42,
        42,
        schema,
        options,
        SstLayout::Lookup,
        0,
        rows,
    )
    .unwrap();
    writer.write(batch, keys).unwrap();
    let meta = writer.finish().unwrap();
    Fixture::new(dir, store, meta, schema)
}

fn open(f: &Fixture, cache_bytes: usize) -> Result<Arc<SstReader>, crate::Error> {
    SstReader::open(
        &f.store,
        &f.meta,
        Arc::clone(&f.schema),
        true,
        Arc::new(BlockCache::new(cache_bytes, cache_bytes / 2)),
        Arc::clone(&f.metrics),
    )
    .map(Arc::new)
}

fn key(schema: &TableSchema, k: i64) -> Vec<u8> {
    schema.encode_key_values(&[k.into()]).unwrap()
}

#[test]
fn metadata_describes_the_file() {
    let f = fixture(100);
    assert_eq!(f.meta.rows, 102);
    assert_eq!(f.meta.tombstones, 1);
    assert_eq!(f.meta.older_versions, 2);
    assert_eq!(f.meta.min_seq, 100);
    assert_eq!(f.meta.max_seq, 198 + 1000);
    assert_eq!(f.meta.min_key, key(&f.schema, 0));
    assert_eq!(f.meta.max_key, key(&f.schema, 198));
    assert!(!f.meta.is_clean());
    let reader = open(&f, 1 << 20).unwrap();
    assert_eq!(reader.blocks(), 102usize.div_ceil(16));
    assert_eq!(reader.row_groups(), 2);
}

#[test]
fn the_file_is_plain_parquet_with_strata_metadata() {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let f = fixture(50);
    let file = std::fs::File::open(f.store.local_path(&f.meta.object_path())).unwrap();
    let reader = SerializedFileReader::new(file).unwrap();
    let metadata = reader.metadata();
    let kv = metadata.file_metadata().key_value_metadata().unwrap();
    let get = |k: &str| kv.iter().find(|e| e.key == k).and_then(|e| e.value.clone());
    assert_eq!(get(keys::FORMAT_VERSION).as_deref(), Some("1"));
    assert_eq!(get(keys::ROWS).as_deref(), Some("52"));
    let sorting = metadata.row_group(0).sorting_columns().unwrap();
    assert_eq!(sorting.len(), 2);
    assert!(!sorting[0].descending && sorting[1].descending);
    assert!(
        metadata
            .row_group(0)
            .column(0)
            .bloom_filter_offset()
            .is_some()
    );
    // Plain Arrow reading sees the typed columns.
    let batches: Vec<RecordBatch> =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(f.store.local_path(&f.meta.object_path())).unwrap(),
        )
        .unwrap()
        .build()
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let total: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(total, 52);
    assert_eq!(batches[0].schema().field(0).data_type(), &DataType::Int64);
}

#[test]
fn point_lookups_find_the_right_version() {
    let f = fixture(200);
    let reader = open(&f, 1 << 20).unwrap();
    for k in (0..400).step_by(2) {
        if k == 10 {
            continue;
        }
        let (seq, op, row) = reader
            .get(&key(&f.schema, k), u64::MAX)
            .unwrap()
            .unwrap_or_else(|| panic!("key {k}"));
        assert_eq!((seq, op), (k as u64 + 1000, OpKind::Put));
        assert_eq!(
            row.column(1).as_string::<i32>().value(0),
            format!("name-{k}")
        );
        assert_eq!(row.column(0).as_primitive::<Int64Type>().value(0), k);
    }
    let at = |seq| {
        reader
            .get(&key(&f.schema, 10), seq)
            .unwrap()
            .map(|(s, op, _)| (s, op))
    };
    assert_eq!(at(u64::MAX), Some((300, OpKind::Put)));
    assert_eq!(at(299), Some((200, OpKind::Delete)));
    assert_eq!(at(150), Some((100, OpKind::Put)));
    assert_eq!(at(99), None);
    // Absent keys: odd numbers and out of range.
    for k in [-5, 1, 11, 199, 397, 401, 10_000] {
        assert!(
            reader.get(&key(&f.schema, k), u64::MAX).unwrap().is_none(),
            "key {k}"
        );
    }
}

#[test]
fn bloom_filters_rule_out_most_absent_keys() {
    let f = fixture(500);
    let reader = open(&f, 0).unwrap();
    for k in (1..1000).step_by(2) {
        assert!(reader.get(&key(&f.schema, k), u64::MAX).unwrap().is_none());
    }
    let negatives = f
        .metrics
        .bloom_negatives
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        negatives > 450,
        "only {negatives} of 500 absent keys ruled out by bloom filters"
    );
}

#[test]
fn scans_respect_bounds() {
    let f = fixture(100);
    let reader = open(&f, 0).unwrap();
    let all: Vec<usize> = (0..4).collect();
    let collect = |lower: Bound<&[u8]>, upper: Bound<&[u8]>| -> Vec<(i64, u64)> {
        reader
            .scan(lower, upper, all.clone())
            .unwrap()
            .flat_map(|b| {
                let b = b.unwrap();
                let ids = b.batch.column(0).as_primitive::<Int64Type>().clone();
                (0..b.num_rows())
                    .map(move |i| (ids.value(i), b.seq(i)))
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let everything = collect(Bound::Unbounded, Bound::Unbounded);
    assert_eq!(everything.len(), 102);
    let (k10, k50) = (key(&f.schema, 10), key(&f.schema, 50));
    let got = collect(Bound::Included(&k10), Bound::Excluded(&k50));
    let ids: Vec<i64> = got.iter().map(|r| r.0).collect();
    assert_eq!(ids.first(), Some(&10));
    assert_eq!(ids.last(), Some(&48));
    assert_eq!(got.iter().filter(|r| r.0 == 10).count(), 3);
    let got = collect(Bound::Excluded(&k10), Bound::Included(&k50));
    assert_eq!(got.first().map(|r| r.0), Some(12));
    assert_eq!(got.last().map(|r| r.0), Some(50));
    let (k1000, k2000) = (key(&f.schema, 1000), key(&f.schema, 2000));
    assert!(collect(Bound::Included(&k1000), Bound::Included(&k2000)).is_empty());
    let below = key(&f.schema, -10);
    assert!(collect(Bound::Unbounded, Bound::Excluded(&below)).is_empty());
}

#[test]
fn damaged_files_are_corruption_never_data() {
    let f = fixture(100);
    let path = f.store.local_path(&f.meta.object_path());
    let original = std::fs::read(&path).unwrap();
    for position in (0..original.len()).step_by(97) {
        let mut damaged = original.clone();
        damaged[position] ^= 0x01;
        std::fs::write(&path, &damaged).unwrap();
        let err = open(&f, 0).unwrap_err();
        assert!(err.is_corruption(), "flip at {position}: {err}");
        assert!(
            err.to_string().contains(".parquet"),
            "error names the file: {err}"
        );
    }
    std::fs::write(&path, &original[..original.len() - 10]).unwrap();
    assert!(open(&f, 0).unwrap_err().is_corruption());
    std::fs::write(&path, &original).unwrap();
    open(&f, 0).unwrap();
}

#[test]
fn unverified_damage_never_panics() {
    let f = fixture(100);
    let path = f.store.local_path(&f.meta.object_path());
    let original = std::fs::read(&path).unwrap();
    for position in (0..original.len()).step_by(31) {
        let mut damaged = original.clone();
        damaged[position] ^= 0xFF;
        std::fs::write(&path, &damaged).unwrap();
        let opened = SstReader::open(
            &f.store,
            &f.meta,
            Arc::clone(&f.schema),
            false,
            Arc::new(BlockCache::new(0, 0)),
            Arc::clone(&f.metrics),
        );
        if let Ok(reader) = opened {
            let reader = Arc::new(reader);
            let _ = reader.get(&key(&f.schema, 20), u64::MAX);
            if let Ok(scan) = reader.scan(Bound::Unbounded, Bound::Unbounded, (0..4).collect()) {
                for batch in scan {
                    if batch.is_err() {
                        break;
                    }
                }
            }
        }
    }
}

#[test]
fn key_index_round_trip_and_search() {
    let index = KeyIndex {
        block_rows: 4,
        first_keys: vec![b"b".to_vec(), b"d".to_vec(), b"f".to_vec()],
    };
    assert_eq!(KeyIndex::decode(&index.encode()), Some(index.clone()));
    assert_eq!(index.block_for(b"a"), 0);
    assert_eq!(index.block_for(b"d"), 0);
    assert_eq!(index.block_for(b"e"), 1);
    assert_eq!(index.block_for(b"z"), 2);
    assert_eq!(index.last_block_upto(b"a"), None);
    assert_eq!(index.last_block_upto(b"d"), Some(1));
    assert!(KeyIndex::decode(&[0, 0]).is_none());
}

#[test]
fn object_paths_round_trip() {
    assert_eq!(
        parse_sst_object_path(&sst_object_path(3, 99)),
        Some((3, 99))
    );
    assert_eq!(parse_sst_object_path("sst/t3/99.parquet"), None);
}

#[test]
fn nulls_survive() {
    let f = fixture(20);
    let reader = open(&f, 1 << 20).unwrap();
    let (_, op, row) = reader.get(&key(&f.schema, 10), 250).unwrap().unwrap();
    assert_eq!(op, OpKind::Delete);
    assert!(row.column(1).is_null(0));
}

/// A table with every storable value type (nested ones before the key, so Parquet leaf
/// indices differ from storage indices) written as an SST and read back by the SST reader
/// (scan and point lookups) and by the `parquet` crate's own reader.
#[test]
fn every_storable_type_round_trips_through_an_sst() {
    use crate::codec::row::tests::{leaf_columns, nested_columns};
    let (mut fields, mut columns) = nested_columns();
    let (leaf_fields, leaves) = leaf_columns();
    fields.extend(leaf_fields);
    columns.extend(leaves);
    let rows = columns[0].len();
    fields.push(Arc::new(Field::new("id", DataType::Int64, false)));
    let ids: Vec<i64> = (0..rows as i64).collect();
    columns.push(Arc::new(Int64Array::from(ids.clone())));
    let schema = Arc::new(TableSchema::new(Arc::new(Schema::new(fields)), &["id"]).unwrap());
    assert!(!schema.sst_file_types_are_user_types());
    let key_index = schema.key_indices()[0];
    assert!(schema.sst_leaf_column(key_index) > key_index);
    let mut all = columns.clone();
    all.push(Arc::new(UInt64Array::from(vec![9u64; rows])));
    all.push(Arc::new(UInt8Array::from(vec![0u8; rows])));
    let batch = RecordBatch::try_new(schema.sst_schema(), all).unwrap();
    let keys = schema
        .key_codec()
        .encode_columns(&[Arc::new(Int64Array::from(ids)) as _])
        .unwrap();
    let f = written(&schema, &batch, &keys, &small_options());
    let reader = open(&f, 1 << 20).unwrap();
    let all_columns: Vec<usize> = (0..schema.sst_schema().fields().len()).collect();
    let scanned: Vec<RecordBatch> = reader
        .scan(Bound::Unbounded, Bound::Unbounded, all_columns.clone())
        .unwrap()
        .map(|b| b.unwrap().batch)
        .collect();
    let scanned = arrow::compute::concat_batches(&schema.sst_schema(), &scanned).unwrap();
    for (i, (got, want)) in scanned.columns().iter().zip(batch.columns()).enumerate() {
        assert_eq!(
            got.to_data(),
            want.to_data(),
            "column {} ({})",
            i,
            want.data_type()
        );
    }
    // Point lookups (cold: the block is read by the decoder) find each row whole.
    let cold = open(&f, 0).unwrap();
    for row in 0..rows {
        let (_, _, found) = cold.get(keys.get(row), u64::MAX).unwrap().unwrap();
        for (got, want) in found.columns().iter().zip(batch.columns()) {
            assert_eq!(
                got.to_data(),
                want.slice(row, 1).to_data(),
                "{}",
                want.data_type()
            );
        }
    }
    // The key column's bloom filter and sorting column name its Parquet leaf column.
    let file = std::fs::File::open(f.store.local_path(&f.meta.object_path())).unwrap();
    let builder =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let leaf = schema.sst_leaf_column(key_index);
    let row_group = builder.metadata().row_group(0);
    assert_eq!(row_group.column(leaf).column_path().string(), "id");
    assert!(row_group.column(leaf).bloom_filter_offset().is_some());
    assert_eq!(
        row_group.sorting_columns().unwrap()[0].column_idx as usize,
        leaf
    );
    // Another Parquet reader sees every row; the nanosecond interval as its three parts.
    let foreign: Vec<RecordBatch> = builder.build().unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(foreign.iter().map(|b| b.num_rows()).sum::<usize>(), rows);
    let interval = foreign[0].column_by_name("iv").unwrap();
    let parts = interval.as_struct();
    assert_eq!(parts.column_names(), ["months", "days", "nanoseconds"]);
    assert!(interval.is_null(1));
    assert_eq!(
        parts.column(2).as_primitive::<Int64Type>().value(2),
        i64::MAX
    );
}

/// Edge types the row codec accepts (empty fixed-size lists, `Null` children, dictionaries
/// and nanosecond intervals inside lists, maps of structs, deep nesting) write to an SST and
/// read back, all-NULL and with values.
#[test]
fn edge_types_the_codec_accepts_are_storable() {
    use arrow::array::{ArrayRef, new_null_array};
    use arrow::datatypes::{Fields, IntervalUnit};
    let item = |dt: DataType| Arc::new(Field::new("item", dt, true));
    let mdn = DataType::Interval(IntervalUnit::MonthDayNano);
    let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    let pair = DataType::Struct(Fields::from(vec![
        Field::new("n", DataType::Null, true),
        Field::new("i", mdn.clone(), true),
    ]));
    let entries = DataType::Struct(Fields::from(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("value", pair.clone(), true),
    ]));
    let types = vec![
        DataType::FixedSizeList(item(DataType::Int32), 0),
        DataType::List(item(DataType::Null)),
        DataType::List(item(dict.clone())),
        DataType::LargeList(item(mdn.clone())),
        DataType::FixedSizeList(item(mdn.clone()), 2),
        pair.clone(),
        DataType::Map(Arc::new(Field::new("entries", entries, false)), false),
        DataType::List(item(DataType::List(item(DataType::Struct(Fields::from(
            vec![Field::new("d", dict, true)],
        )))))),
        DataType::ListView(item(mdn)),
    ];
    for dt in types {
        assert!(crate::codec::row::is_storable(&dt), "{dt}");
        let user = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("v", dt.clone(), true),
        ]));
        let schema = Arc::new(TableSchema::new(user, &["id"]).unwrap());
        // Rows 0..3 all NULL, then the same values after a trip through the row codec.
        let nulls: ArrayRef = new_null_array(&dt, 3);
        let rows = schema.row_codec().encode_columns(&[nulls]).unwrap();
        let values = schema.row_codec().decode(rows.iter()).unwrap().remove(0);
        let ids: Vec<i64> = vec![0, 1, 2];
        let batch = RecordBatch::try_new(
            schema.sst_schema(),
            vec![
                Arc::new(Int64Array::from(ids.clone())),
                Arc::clone(&values),
                Arc::new(UInt64Array::from(vec![1u64; 3])),
                Arc::new(UInt8Array::from(vec![0u8; 3])),
            ],
        )
        .unwrap();
        let keys = schema
            .key_codec()
            .encode_columns(&[Arc::new(Int64Array::from(ids)) as _])
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = SstStore::new(dir.path(), None).unwrap();
        let mut writer = SstWriter::new(
            &store,
            7,
            1,
            1,
            &schema,
            &small_options(),
            SstLayout::Lookup,
            0,
            3,
        )
        .unwrap_or_else(|e| panic!("{dt}: {e}"));
        writer
            .write(&batch, &keys)
            .unwrap_or_else(|e| panic!("{dt}: {e}"));
        let meta = writer.finish().unwrap_or_else(|e| panic!("{dt}: {e}"));
        let f = Fixture::new(dir, store, meta, &schema);
        let reader = open(&f, 0).unwrap_or_else(|e| panic!("{dt}: {e}"));
        let scanned: Vec<RecordBatch> = reader
            .scan(Bound::Unbounded, Bound::Unbounded, vec![0, 1, 2, 3])
            .unwrap()
            .map(|b| b.unwrap_or_else(|e| panic!("{dt}: {e}")).batch)
            .collect();
        let scanned = arrow::compute::concat_batches(&schema.sst_schema(), &scanned).unwrap();
        assert_eq!(scanned.column(1).to_data(), values.to_data(), "{dt}");
    }
}

/// Every row read from the file by the `parquet` crate's own reader, in file order.
fn parquet_rows(f: &Fixture) -> RecordBatch {
    let path = f.store.local_path(&f.meta.object_path());
    let file = std::fs::File::open(path).unwrap();
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(file, 1 << 16).unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()
}

/// A lookup that misses the block cache reads the block's pages alone (offset index, byte
/// range, decode) and returns exactly the row the file holds: every version of every key,
/// through a reader whose cache is disabled and through one whose cache was dropped after
/// it was filled. The fixture's pages are small (1 KiB), so blocks start inside pages, span
/// several, and the `name` column falls back from dictionary to plain encoding.
#[test]
fn lookups_after_a_cache_drop_return_exactly_the_row() {
    // Small row groups (the dictionary of `name` holds all of a row group), and large ones
    // (it falls back to plain encoding, and reads of the later pages skip the dictionary).
    let large_row_groups = TableOptions {
        sst_row_group_rows: 1024,
        sst_scan_row_group_rows: 1024,
        ..small_options()
    };
    for (options, falls_back) in [(small_options(), false), (large_row_groups, true)] {
        let f = fixture_with(300, &options);
        let reader = open(&f, 0).unwrap();
        let pages = reader.dictionary_encoded_pages(1);
        assert!(pages.iter().all(|(dict, all)| dict <= all), "{pages:?}");
        assert_eq!(
            pages.iter().any(|(dict, all)| dict < all),
            falls_back,
            "{pages:?}"
        );
        lookups_return_exactly_the_row(&f);
    }
}

fn lookups_return_exactly_the_row(f: &Fixture) {
    let expected = parquet_rows(f);
    let ids = expected.column(0).as_primitive::<Int64Type>();
    let seqs = expected
        .column(2)
        .as_primitive::<arrow::datatypes::UInt64Type>();
    let warm = open(f, 1 << 20).unwrap();
    for k in (0..600).step_by(2) {
        warm.get(&key(&f.schema, k), u64::MAX).unwrap().unwrap();
    }
    drop(warm);
    let columns: Vec<usize> = (0..expected.num_columns()).collect();
    // No cache; then a cache whose row pages, filled by the first pass, answer the second.
    for (cache_bytes, passes) in [(0, 1), (1 << 20, 2)] {
        let reader = open(f, cache_bytes).unwrap();
        assert!(reader.reads_block_pages());
        for pass in 0..passes {
            let misses = f.metrics.row_page_cache_misses.load(Ordering::Relaxed);
            for row in 0..expected.num_rows() {
                let id = ids.value(row);
                let seq = seqs.value(row);
                let (found_seq, op, found) = reader
                    .get(&key(&f.schema, id), seq)
                    .unwrap()
                    .unwrap_or_else(|| panic!("key {id} at {seq}"));
                assert_eq!(found_seq, seq);
                assert_eq!(
                    op.as_u8(),
                    expected
                        .column(3)
                        .as_primitive::<arrow::datatypes::UInt8Type>()
                        .value(row)
                );
                assert_eq!(found, expected.slice(row, 1), "key {id} at {seq}");
                // Only the columns asked for, in the order asked; none for a delete.
                let probes = bloom_probes(&f.schema, &key(&f.schema, id)).unwrap();
                for wanted in [vec![1], vec![1, 0], columns.clone()] {
                    let (found_op, found) = reader
                        .get_columns(&key(&f.schema, id), &probes, seq, &wanted, || None)
                        .unwrap()
                        .unwrap();
                    assert_eq!(found_op, op);
                    let expected: Vec<_> = match op {
                        OpKind::Put => wanted
                            .iter()
                            .map(|c| expected.slice(row, 1).column(*c).clone())
                            .collect(),
                        OpKind::Delete => Vec::new(),
                    };
                    let found: Vec<_> = found.iter().map(|(a, i)| a.slice(*i, 1)).collect();
                    assert_eq!(found, expected, "key {id} at {seq}, columns {wanted:?}");
                }
            }
            let misses = f.metrics.row_page_cache_misses.load(Ordering::Relaxed) - misses;
            match (cache_bytes, pass) {
                (0, _) => assert_eq!(misses, 0),
                (_, 0) => assert!(misses > 0),
                _ => assert_eq!(misses, 0, "the second pass reads every row from row pages"),
            }
        }
        // Every column of the fixture is decoded by the lean page decoder.
        assert_eq!(reader.general_decodes(), 0);
    }
}

/// A lookup whose key block is not cached finds its row in the file's keys (the key cache's
/// copy) when the file holds no tombstone and nothing newer than the read: it reads no key
/// block, returns exactly the row the file holds (the newest version of a key with several,
/// versions crossing a block boundary included), and says so in `get_rows_from_key_cache`.
/// A read below the file's newest sequence number, or a file with a tombstone, still reads
/// the key block, and gets the version visible to it.
#[test]
fn lookups_find_rows_in_the_key_cache_without_reading_key_blocks() {
    let schema = table_schema();
    // Keys 0, 2, ..., 198; key 30 has 20 versions (seq 2000 down to 1981, all puts), so with
    // 16-row blocks its versions start in block 0 and end in block 2.
    let mut ids = Vec::new();
    let mut seqs = Vec::new();
    for k in (0..100i64).map(|i| i * 2) {
        let versions = if k == 30 { 20 } else { 1 };
        for v in 0..versions {
            ids.push(k);
            seqs.push(if k == 30 { 2000 - v } else { k as u64 + 1000 });
        }
    }
    let names: Vec<String> = ids
        .iter()
        .zip(&seqs)
        .map(|(k, s)| format!("name-{k}-{s}"))
        .collect();
    let rows = ids.len();
    let batch = RecordBatch::try_new(
        schema.sst_schema(),
        vec![
            Arc::new(Int64Array::from(ids.clone())),
            Arc::new(StringArray::from(names.clone())),
            Arc::new(UInt64Array::from(seqs.clone())),
            Arc::new(UInt8Array::from(vec![0u8; rows])),
        ],
    )
    .unwrap();
    let keys = schema
        .key_codec()
        .encode_columns(&[Arc::new(Int64Array::from(ids.clone())) as _])
        .unwrap();
    let f = written(&schema, &batch, &keys, &small_options());
    assert_eq!((f.meta.tombstones, f.meta.max_seq), (0, 2000));
    let file_keys = open(&f, 0).unwrap().read_keys().unwrap();
    let file_keys = Arc::new(file_keys);
    let counter = |m: &std::sync::atomic::AtomicU64| m.load(Ordering::Relaxed);
    let probes_of = |k: i64| bloom_probes(&schema, &key(&schema, k)).unwrap();
    let reader = open(&f, 1 << 20).unwrap();
    for k in -1..201i64 {
        let (found, misses) = {
            let before = counter(&f.metrics.block_cache_misses);
            let found = reader
                .get_columns(&key(&schema, k), &probes_of(k), u64::MAX, &[1, 0], || {
                    Some(Arc::clone(&file_keys))
                })
                .unwrap();
            (found, counter(&f.metrics.block_cache_misses) - before)
        };
        assert_eq!(misses, 0, "key {k}: no key block is read");
        let expected = ((0..200).contains(&k) && k % 2 == 0).then(|| {
            let seq = if k == 30 { 2000 } else { k as u64 + 1000 };
            format!("name-{k}-{seq}")
        });
        let found = found.map(|(op, columns)| {
            assert_eq!(op, OpKind::Put);
            let (names, i) = &columns[0];
            let (ids, j) = &columns[1];
            assert_eq!(ids.as_primitive::<Int64Type>().value(*j), k);
            names.as_string::<i32>().value(*i).to_string()
        });
        assert_eq!(found, expected, "key {k}");
    }
    assert_eq!(counter(&f.metrics.get_rows_from_key_cache), 100);
    // Below the file's newest sequence number the key block tells the visible version.
    let resolved = counter(&f.metrics.get_rows_from_key_cache);
    let (seq, op, row) = reader
        .get_with_probes(&key(&schema, 30), &probes_of(30), 1990, || {
            Some(Arc::clone(&file_keys))
        })
        .unwrap()
        .unwrap();
    assert_eq!((seq, op), (1990, OpKind::Put));
    assert_eq!(row.column(1).as_string::<i32>().value(0), "name-30-1990");
    assert_eq!(counter(&f.metrics.get_rows_from_key_cache), resolved);
    // A row found through the key cache by `get_with_probes` reads its `_seq`.
    let cold = open(&f, 1 << 20).unwrap();
    let (seq, _, row) = cold
        .get_with_probes(&key(&schema, 30), &probes_of(30), u64::MAX, || {
            Some(Arc::clone(&file_keys))
        })
        .unwrap()
        .unwrap();
    assert_eq!(seq, 2000);
    assert_eq!(
        row,
        batch.slice(ids.iter().position(|k| *k == 30).unwrap(), 1)
    );
    assert_eq!(counter(&f.metrics.get_rows_from_key_cache), resolved + 1);
    // A file with a tombstone reads key blocks: the key cache cannot tell a delete.
    let with_tombstone = fixture(100);
    let tombstone_keys = Arc::new(open(&with_tombstone, 0).unwrap().read_keys().unwrap());
    let reader = open(&with_tombstone, 1 << 20).unwrap();
    let probes = bloom_probes(&with_tombstone.schema, &key(&with_tombstone.schema, 10)).unwrap();
    let found = reader
        .get_columns(&key(&with_tombstone.schema, 10), &probes, 250, &[1], || {
            Some(Arc::clone(&tombstone_keys))
        })
        .unwrap();
    assert!(matches!(found, Some((OpKind::Delete, ref c)) if c.is_empty()));
    assert_eq!(counter(&with_tombstone.metrics.get_rows_from_key_cache), 0);
}

/// Point lookups through the lean page decoder return exactly the rows the `parquet` crate's
/// reader returns, for every type it decodes: nullable and not, dictionary encoded, falling
/// back to plain and plain, multi-byte UTF-8, a two-column key (a string and an integer) in
/// the middle of the columns; with small pages and row groups, and with large row groups.
#[test]
fn lean_page_decoding_returns_exactly_the_row_for_every_type() {
    use arrow::array::{
        ArrayRef, BinaryArray, Date32Array, Float32Array, Float64Array, Int8Array, Int16Array,
        Int32Array, LargeBinaryArray, LargeStringArray, UInt16Array, UInt32Array,
    };
    let user = Arc::new(Schema::new(vec![
        Field::new("i8", DataType::Int8, true),
        Field::new("i16", DataType::Int16, true),
        Field::new("kname", DataType::Utf8, false),
        Field::new("i32", DataType::Int32, true),
        Field::new("u8", DataType::UInt8, true),
        Field::new("u16", DataType::UInt16, true),
        Field::new("u32", DataType::UInt32, true),
        Field::new("kn", DataType::Int32, false),
        Field::new("u64", DataType::UInt64, true),
        Field::new("f32", DataType::Float32, true),
        Field::new("f64", DataType::Float64, true),
        Field::new("d", DataType::Date32, true),
        Field::new("b", DataType::Binary, true),
        Field::new("lb", DataType::LargeBinary, true),
        Field::new("s", DataType::Utf8, true),
        Field::new("ls", DataType::LargeUtf8, true),
    ]));
    let schema = Arc::new(TableSchema::new(user, &["kname", "kn"]).unwrap());
    let n = 500usize;
    let null_if = |i: usize, m: usize, r: usize| i % m != r;
    fn opt<T>(keep: bool, value: T) -> Option<T> {
        keep.then_some(value)
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int8Array::from_iter(
            (0..n).map(|i| opt(null_if(i, 11, 0), (i % 7) as i8 - 3)),
        )),
        Arc::new(Int16Array::from_iter(
            (0..n).map(|i| Some((i as i16).wrapping_mul(-337))),
        )),
        Arc::new(StringArray::from_iter_values(
            (0..n).map(|i| format!("k{:03}", i / 3)),
        )),
        Arc::new(Int32Array::from_iter(
            (0..n).map(|i| opt(null_if(i, 13, 5), i as i32 * 1000 - 5000)),
        )),
        Arc::new(UInt8Array::from_iter(
            (0..n).map(|i| Some((i % 200) as u8 + 50)),
        )),
        Arc::new(UInt16Array::from_iter(
            (0..n).map(|i| Some((i * 300) as u16)),
        )),
        Arc::new(UInt32Array::from_iter(
            (0..n).map(|i| Some(u32::MAX - i as u32)),
        )),
        Arc::new(Int32Array::from_iter_values((0..n).map(|i| (i % 3) as i32))),
        Arc::new(UInt64Array::from_iter(
            (0..n).map(|i| Some(u64::MAX - i as u64 * 7)),
        )),
        Arc::new(Float32Array::from_iter(
            (0..n).map(|i| opt(null_if(i, 5, 0), i as f32 * 0.5)),
        )),
        Arc::new(Float64Array::from_iter(
            (0..n).map(|i| Some(-(i as f64) / 3.0)),
        )),
        Arc::new(Date32Array::from_iter((0..n).map(|i| Some(i as i32 - 200)))),
        Arc::new(BinaryArray::from_iter(
            (0..n).map(|i| opt(null_if(i, 4, 1), vec![i as u8; i % 17])),
        )),
        Arc::new(LargeBinaryArray::from_iter_values(
            (0..n).map(|i| ["x", "yy", "zzz"][i % 3].as_bytes()),
        )),
        Arc::new(StringArray::from_iter((0..n).map(|i| {
            opt(null_if(i, 6, 2), format!("value-{i}-{}", "é".repeat(i % 4)))
        }))),
        Arc::new(LargeStringArray::from_iter_values(
            (0..n).map(|i| ["α", "β"][i % 2]),
        )),
    ];
    let mut all = columns.clone();
    all.push(Arc::new(UInt64Array::from_iter_values(
        (0..n).map(|i| 10 + i as u64),
    )));
    all.push(Arc::new(UInt8Array::from(vec![0u8; n])));
    let batch = RecordBatch::try_new(schema.sst_schema(), all).unwrap();
    let keys = schema
        .key_codec()
        .encode_columns(&[Arc::clone(&columns[2]), Arc::clone(&columns[7])])
        .unwrap();
    let large_row_groups = TableOptions {
        sst_row_group_rows: 1024,
        sst_scan_row_group_rows: 1024,
        ..small_options()
    };
    // Snappy and uncompressed pages are decompressed by the lean decoder itself, the others
    // by the parquet crate's page reader first.
    let compressed = |sst_compression| TableOptions {
        sst_compression,
        ..small_options()
    };
    use crate::options::SstCompression;
    for options in [
        small_options(),
        large_row_groups,
        compressed(SstCompression::None),
        compressed(SstCompression::Lz4),
        compressed(SstCompression::Zstd(1)),
    ] {
        let f = written(&schema, &batch, &keys, &options);
        let expected = parquet_rows(&f);
        assert_eq!(expected.num_rows(), n);
        // `i8` is dictionary encoded throughout, `i32` falls back to plain in large row
        // groups, `u64` is plain (a dictionary never fits a page).
        let probe = open(&f, 0).unwrap();
        let i8_pages = probe.dictionary_encoded_pages(0);
        assert!(
            i8_pages.iter().all(|(dict, all)| dict == all),
            "{i8_pages:?}"
        );
        let i32_pages = probe.dictionary_encoded_pages(3);
        assert_eq!(
            i32_pages.iter().any(|(dict, all)| dict < all),
            options.sst_row_group_rows > 64,
            "{i32_pages:?}"
        );
        for cache_bytes in [0, 1 << 20] {
            let reader = open(&f, cache_bytes).unwrap();
            assert!(reader.reads_block_pages() && reader.keys_from_codec());
            for row in 0..n {
                let (seq, op, found) = reader.get(keys.get(row), u64::MAX).unwrap().unwrap();
                assert_eq!((seq, op), (10 + row as u64, OpKind::Put));
                assert_eq!(found, expected.slice(row, 1), "row {row}");
            }
            assert_eq!(reader.general_decodes(), 0);
        }
    }
}

/// A damaged page is reported as corruption by the lookups that read it, never decoded into
/// a row, even when the file was not checked as a whole when it was opened (or was damaged
/// after): one byte flipped in the middle of each page (data and dictionary pages, every
/// column) in turn, with the file otherwise intact.
#[test]
fn a_damaged_page_is_corruption_never_data() {
    let options = TableOptions {
        sst_row_group_rows: 256,
        sst_scan_row_group_rows: 256,
        ..small_options()
    };
    let f = fixture_with(600, &options);
    let expected = parquet_rows(&f);
    let ids = expected.column(0).as_primitive::<Int64Type>();
    let seqs = expected
        .column(2)
        .as_primitive::<arrow::datatypes::UInt64Type>();
    let path = f.store.local_path(&f.meta.object_path());
    let original = std::fs::read(&path).unwrap();
    let metadata = parquet::file::metadata::ParquetMetaDataReader::new()
        .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Required)
        .parse_and_finish(&bytes::Bytes::from(original.clone()))
        .unwrap();
    let index = metadata.offset_index().unwrap();
    // Without a cache, and with one whose row pages would keep what a lookup decoded.
    let open_unverified = |cache_bytes: usize| {
        SstReader::open(
            &f.store,
            &f.meta,
            Arc::clone(&f.schema),
            false,
            Arc::new(BlockCache::new(cache_bytes, cache_bytes / 2)),
            Arc::clone(&f.metrics),
        )
        .unwrap()
    };
    let mut damaged_pages = 0;
    for (rg, columns) in index.iter().enumerate() {
        let rg_start: i64 = metadata.row_groups()[..rg]
            .iter()
            .map(|r| r.num_rows())
            .sum();
        let rg_rows = metadata.row_group(rg).num_rows();
        for (leaf, column) in columns.iter().enumerate() {
            let locations = column.page_locations();
            let chunk_start = metadata.row_group(rg).column(leaf).byte_range().0 as i64;
            // (first byte, length, rows) of each page; a dictionary page serves every row.
            let mut pages: Vec<(i64, i64, std::ops::Range<i64>)> = Vec::new();
            if locations[0].offset > chunk_start {
                let rows = rg_start..rg_start + locations[0].first_row_index.max(1);
                pages.push((chunk_start, locations[0].offset - chunk_start, rows));
            }
            for (i, page) in locations.iter().enumerate() {
                let end = locations.get(i + 1).map_or(rg_rows, |p| p.first_row_index);
                pages.push((
                    page.offset,
                    i64::from(page.compressed_page_size),
                    rg_start + page.first_row_index..rg_start + end,
                ));
            }
            for (offset, len, rows) in pages {
                let mut damaged = original.clone();
                damaged[(offset + len / 2) as usize] ^= 0x10;
                std::fs::write(&path, &damaged).unwrap();
                for cache_bytes in [0, 1 << 20] {
                    let reader = open_unverified(cache_bytes);
                    // Twice: what failed is not served from the cache the second time.
                    for row in (rows.start as usize..rows.end as usize)
                        .chain(rows.start as usize..rows.end as usize)
                    {
                        let (id, seq) = (ids.value(row), seqs.value(row));
                        match reader.get(&key(&f.schema, id), seq) {
                            Err(e) => {
                                assert!(e.is_corruption(), "{e}");
                                assert!(e.to_string().contains(".parquet"), "{e}");
                            }
                            Ok(found) => panic!(
                                "row {row} read through a damaged page ({rg}, {leaf}, byte {offset}, cache {cache_bytes}): {found:?}"
                            ),
                        }
                    }
                }
                damaged_pages += 1;
            }
        }
    }
    eprintln!("{damaged_pages} pages damaged in turn");
    assert!(damaged_pages > 20, "{damaged_pages} pages damaged");
    std::fs::write(&path, &original).unwrap();
    lookups_return_exactly_the_row(&f);
}

/// `sst_value_page_size_bytes` cuts the value columns' pages smaller than the key columns'
/// (and `_seq`'s), and lookups read exactly the rows through them.
#[test]
fn value_columns_get_their_own_page_size() {
    let pages = |value_page_bytes: usize| {
        let options = TableOptions {
            sst_page_size_bytes: 4 * 1024,
            sst_value_page_size_bytes: value_page_bytes,
            sst_row_group_rows: 2048,
            sst_scan_row_group_rows: 2048,
            ..small_options()
        };
        let f = fixture_with(2000, &options);
        let path = f.store.local_path(&f.meta.object_path());
        let metadata = parquet::file::metadata::ParquetMetaDataReader::new()
            .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Required)
            .parse_and_finish(&bytes::Bytes::from(std::fs::read(path).unwrap()))
            .unwrap();
        let index = &metadata.offset_index().unwrap()[0];
        let counts: Vec<usize> = (0..4).map(|l| index[l].page_locations().len()).collect();
        (counts, f)
    };
    let (default, _) = pages(4 * 1024);
    let (small, f) = pages(1024);
    // Key (0), `_seq` (2) and `_op` (3) pages as before; the names (1) in more pages.
    assert_eq!(
        (small[0], small[2], small[3]),
        (default[0], default[2], default[3])
    );
    assert!(small[1] >= 2 * default[1], "{small:?} against {default:?}");
    lookups_return_exactly_the_row(&f);
}

/// The lean decoder never panics on damaged pages (the page checksums catch damage first;
/// this is the decoder's own guard, as for files without checksums): every byte of a real
/// Snappy page of each column flipped in turn, parsed and decoded, is an error or a row.
#[test]
fn damaged_pages_never_panic_the_lean_decoder() {
    use super::page_decode::{ColumnRows, LeanType, PageView};
    use parquet::basic::Compression;
    let f = fixture(300);
    let bytes = std::fs::read(f.store.local_path(&f.meta.object_path())).unwrap();
    let metadata = parquet::file::metadata::ParquetMetaDataReader::new()
        .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Required)
        .parse_and_finish(&bytes::Bytes::from(bytes.clone()))
        .unwrap();
    let types = [
        (LeanType::Int64, false),
        (LeanType::Utf8, true),
        (LeanType::UInt64, false),
        (LeanType::UInt8, false),
    ];
    for (leaf, (lean, nullable)) in types.into_iter().enumerate() {
        let page = metadata.offset_index().unwrap()[0][leaf].page_locations()[0].clone();
        let range = page.offset as usize..page.offset as usize + page.compressed_page_size as usize;
        let mut scratch = Vec::new();
        let intact = PageView::parse(&bytes[range.clone()], Compression::SNAPPY, &mut scratch);
        let rows = match intact {
            Ok(view) => {
                // Plain pages decode alone; a dictionary-encoded one needs its dictionary.
                let mut rows = ColumnRows::new(lean, nullable, 4);
                let _ = rows.append(&view, None, 0, 4);
                rows.len()
            }
            Err(e) => panic!("leaf {leaf}: {e}"),
        };
        assert!(rows == 4 || leaf == 1 || leaf == 3, "leaf {leaf}");
        for position in range.clone() {
            for flip in [0x01u8, 0x80] {
                let mut damaged = bytes[range.clone()].to_vec();
                damaged[position - range.start] ^= flip;
                if let Ok(view) = PageView::parse(&damaged, Compression::SNAPPY, &mut scratch) {
                    let mut rows = ColumnRows::new(lean, nullable, 16);
                    if rows.append(&view, None, 3, 19).is_ok() {
                        let _ = rows.finish();
                    }
                }
            }
        }
    }
}

/// The key columns of a returned row are decoded from its encoded key: with a time zone, a
/// decimal's precision and scale and a fixed width kept, the rows equal the file's.
#[test]
fn key_columns_decoded_from_the_key_keep_their_types() {
    use arrow::array::{
        ArrayRef, Decimal128Array, FixedSizeBinaryArray, TimestampMicrosecondArray,
    };
    use arrow::datatypes::TimeUnit;
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("+02:00".into()));
    let user = Arc::new(Schema::new(vec![
        Field::new("t", ts.clone(), false),
        Field::new("v", DataType::Utf8, true),
        Field::new("d", DataType::Decimal128(12, 3), false),
        Field::new("f", DataType::FixedSizeBinary(3), false),
    ]));
    let schema = Arc::new(TableSchema::new(user, &["t", "d", "f"]).unwrap());
    let n = 200usize;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            TimestampMicrosecondArray::from_iter_values((0..n).map(|i| (i / 4) as i64 * 1_000))
                .with_timezone("+02:00"),
        ),
        Arc::new(StringArray::from_iter_values(
            (0..n).map(|i| format!("v{i}")),
        )),
        Arc::new(
            Decimal128Array::from_iter_values((0..n).map(|i| (i % 4) as i128 * 1_001 - 2_000))
                .with_precision_and_scale(12, 3)
                .unwrap(),
        ),
        Arc::new(
            FixedSizeBinaryArray::try_from_iter((0..n).map(|i| [(i % 4) as u8, 7, 9])).unwrap(),
        ),
    ];
    let mut all = columns.clone();
    all.push(Arc::new(UInt64Array::from_iter_values(
        (0..n).map(|i| i as u64 + 1),
    )));
    all.push(Arc::new(UInt8Array::from(vec![0u8; n])));
    let batch = RecordBatch::try_new(schema.sst_schema(), all).unwrap();
    let keys = schema
        .key_codec()
        .encode_columns(&[
            Arc::clone(&columns[0]),
            Arc::clone(&columns[2]),
            Arc::clone(&columns[3]),
        ])
        .unwrap();
    let f = written(&schema, &batch, &keys, &small_options());
    let expected = parquet_rows(&f);
    let reader = open(&f, 0).unwrap();
    assert!(reader.keys_from_codec());
    for row in 0..n {
        let (_, _, found) = reader.get(keys.get(row), u64::MAX).unwrap().unwrap();
        assert_eq!(found, expected.slice(row, 1), "row {row}");
        assert_eq!(found.column(0).data_type(), &ts);
    }
}

/// Writes `batch` (SST schema rows of `schema`, keyed by the `Int64` column 0, in key order)
/// as one SST of `layout` in pieces of 3,000 rows (smaller than the scan layout's sample, as
/// compactions write), and parses its footer.
fn write_in_pieces(
    schema: &TableSchema,
    batch: &RecordBatch,
    options: &TableOptions,
    layout: SstLayout,
) -> (
    tempfile::TempDir,
    SstStore,
    SstMeta,
    parquet::file::metadata::ParquetMetaData,
) {
    let n = batch.num_rows();
    let keys = schema
        .key_codec()
        .encode_columns(&[Arc::clone(batch.column(0))])
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = SstStore::new(dir.path(), None).unwrap();
    let mut writer =
        SstWriter::new(&store, 7, 42, 42, schema, options, layout, 0, n as u64).unwrap();
    for start in (0..n).step_by(3000) {
        let end = n.min(start + 3000);
        writer.write_range(batch, &keys, start, end).unwrap();
    }
    let meta = writer.finish().unwrap();
    let bytes = bytes::Bytes::from(std::fs::read(store.local_path(&meta.object_path())).unwrap());
    let metadata = parquet::file::metadata::ParquetMetaDataReader::new()
        .parse_and_finish(&bytes)
        .unwrap();
    (dir, store, meta, metadata)
}

/// Files written for scans (compactions, bulk loads) keep a dictionary larger than a page for
/// a value column of repeating values, and none for a column of unique values (a dictionary
/// page that would fill to its limit and be given up); files written for lookups keep only
/// page-sized dictionaries. Point lookups read both exactly.
#[test]
fn the_scan_layout_keeps_large_dictionaries_of_repeating_values_only() {
    use arrow::array::Float64Array;
    use arrow::datatypes::Float64Type;
    let user = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("amount", DataType::Float64, true),
        Field::new("note", DataType::Utf8, true),
    ]));
    let schema = Arc::new(TableSchema::new(user, &["id"]).unwrap());
    let n = 20_000i64;
    // 2,000 distinct amounts (a 16 KB dictionary, past the 1 KiB page limit), unique notes.
    let amount = |k: i64| ((k * 7919) % 2000) as f64 / 4.0;
    let ids: Vec<i64> = (0..n).collect();
    let batch = RecordBatch::try_new(
        schema.sst_schema(),
        vec![
            Arc::new(Int64Array::from(ids.clone())),
            Arc::new(Float64Array::from_iter_values(
                ids.iter().map(|k| amount(*k)),
            )),
            Arc::new(StringArray::from_iter_values(
                ids.iter().map(|k| format!("note {k:08}")),
            )),
            Arc::new(UInt64Array::from_iter_values(
                ids.iter().map(|k| *k as u64 + 1),
            )),
            Arc::new(UInt8Array::from(vec![0u8; n as usize])),
        ],
    )
    .unwrap();
    let options = TableOptions {
        sst_scan_row_group_rows: 1 << 20,
        ..small_options()
    };
    for layout in [SstLayout::Scan, SstLayout::Lookup] {
        let (dir, store, meta, metadata) = write_in_pieces(&schema, &batch, &options, layout);
        let row_groups = metadata.row_groups();
        // The dictionary page's size: where the data pages start minus where it starts.
        let dictionary_bytes = |column: usize| {
            let chunk = row_groups[0].column(column);
            chunk
                .dictionary_page_offset()
                .map(|at| chunk.data_page_offset() - at)
        };
        match layout {
            SstLayout::Scan => {
                assert_eq!(row_groups.len(), 1, "one row group of the scan layout");
                let amounts = dictionary_bytes(1).expect("amount keeps its dictionary");
                // 16 KB of doubles, compressed: far past the 1 KiB page limit.
                assert!(amounts > 4 * 1024, "a dictionary of {amounts} bytes");
                // Every page holds 11-bit indices (plain doubles would take 160,000 bytes).
                let chunk_bytes = row_groups[0].column(1).compressed_size();
                assert!(chunk_bytes < 60_000, "amounts take {chunk_bytes} bytes");
                assert_eq!(dictionary_bytes(2), None, "unique notes have no dictionary");
            }
            SstLayout::Lookup => {
                assert!(row_groups.len() > 1, "row groups of sst_row_group_rows");
                for column in [1, 2] {
                    assert!(
                        dictionary_bytes(column).is_none_or(|b| b <= 2 * 1024),
                        "column {column}: a dictionary of {:?} bytes",
                        dictionary_bytes(column)
                    );
                }
            }
        }
        let f = Fixture::new(dir, store, meta, &schema);
        let reader = open(&f, 1 << 20).unwrap();
        for k in (0..n).step_by(97).chain([n - 1]) {
            let (seq, _, row) = reader.get(&key(&schema, k), u64::MAX).unwrap().unwrap();
            assert_eq!(seq, k as u64 + 1);
            assert_eq!(
                row.column(1).as_primitive::<Float64Type>().value(0),
                amount(k)
            );
            assert_eq!(
                row.column(2).as_string::<i32>().value(0),
                format!("note {k:08}")
            );
        }
    }
}

/// Files written for scans store the columns a fast codec would barely shrink (random doubles,
/// the indices of a dictionary of random integers) uncompressed and compress the others
/// (sequential keys and sequence numbers, repetitive text); with
/// `sst_compression_min_saving = 0`, with `zstd` and in files written for lookups every column
/// is compressed. Every variant reads back exactly.
#[test]
fn the_scan_layout_compresses_only_the_columns_that_shrink() {
    use arrow::array::{Float64Array, Int32Array};
    use arrow::datatypes::{Float64Type, Int32Type};
    use parquet::basic::Compression;
    let user = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("amount", DataType::Float64, true),
        Field::new("note", DataType::Utf8, true),
        Field::new("user_id", DataType::Int32, true),
    ]));
    let schema = Arc::new(TableSchema::new(user, &["id"]).unwrap());
    let n = 30_000i64;
    let mix = |k: i64| {
        let mut z = (k as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let amount = |k: i64| (mix(k) >> 11) as f64 / (1u64 << 53) as f64;
    let user_id = |k: i64| (mix(k + n) % 1000) as i32;
    let note = |k: i64| format!("order {k:08} shipped to warehouse {}", k % 7);
    let ids: Vec<i64> = (0..n).collect();
    let batch = RecordBatch::try_new(
        schema.sst_schema(),
        vec![
            Arc::new(Int64Array::from(ids.clone())),
            Arc::new(Float64Array::from_iter_values(
                ids.iter().map(|k| amount(*k)),
            )),
            Arc::new(StringArray::from_iter_values(ids.iter().map(|k| note(*k)))),
            Arc::new(Int32Array::from_iter_values(
                ids.iter().map(|k| user_id(*k)),
            )),
            Arc::new(UInt64Array::from_iter_values(
                ids.iter().map(|k| *k as u64 + 1),
            )),
            Arc::new(UInt8Array::from(vec![0u8; n as usize])),
        ],
    )
    .unwrap();
    let scan = TableOptions {
        sst_scan_row_group_rows: 1 << 20,
        ..small_options()
    };
    use Compression::{SNAPPY, UNCOMPRESSED};
    // A file records the codec, not its level.
    let zstd = Compression::ZSTD(parquet::basic::ZstdLevel::default());
    // Options, layout, and the codec of id, amount, note, user_id, _seq, _op.
    let cases = [
        (
            scan.clone(),
            SstLayout::Scan,
            [SNAPPY, UNCOMPRESSED, SNAPPY, UNCOMPRESSED, SNAPPY, SNAPPY],
        ),
        (
            TableOptions {
                sst_compression_min_saving: 0.0,
                ..scan.clone()
            },
            SstLayout::Scan,
            [SNAPPY; 6],
        ),
        (
            TableOptions {
                sst_compression: crate::options::SstCompression::Zstd(3),
                ..scan.clone()
            },
            SstLayout::Scan,
            [zstd; 6],
        ),
        (scan.clone(), SstLayout::Lookup, [SNAPPY; 6]),
    ];
    for (options, layout, codecs) in cases {
        let (dir, store, meta, metadata) = write_in_pieces(&schema, &batch, &options, layout);
        for row_group in metadata.row_groups() {
            let used: Vec<Compression> = row_group
                .columns()
                .iter()
                .map(|c| c.compression())
                .collect();
            assert_eq!(used, codecs, "{layout:?}, {:?}", options.sst_compression);
        }
        let f = Fixture::new(dir, store, meta, &schema);
        let reader = open(&f, 1 << 20).unwrap();
        for k in (0..n).step_by(101).chain([n - 1]) {
            let (seq, _, row) = reader.get(&key(&schema, k), u64::MAX).unwrap().unwrap();
            assert_eq!(seq, k as u64 + 1);
            assert_eq!(
                row.column(1).as_primitive::<Float64Type>().value(0),
                amount(k)
            );
            assert_eq!(row.column(2).as_string::<i32>().value(0), note(k));
            assert_eq!(
                row.column(3).as_primitive::<Int32Type>().value(0),
                user_id(k)
            );
        }
    }
}

/// While a scan-layout writer holds its first rows (slices of the caller's batches), its size
/// estimate, by which compactions cut their output files, counts those rows, not the whole
/// batches they were cut from.
#[test]
fn a_sampling_writer_estimates_the_rows_it_holds() {
    let schema = table_schema();
    let (batch, keys) = rows(&schema, 100_000);
    let dir = tempfile::tempdir().unwrap();
    let store = SstStore::new(dir.path(), None).unwrap();
    let options = TableOptions::default();
    let mut writer =
        SstWriter::new(&store, 7, 42, 42, &schema, &options, SstLayout::Scan, 0, 10).unwrap();
    writer.write_range(&batch, &keys, 0, 10).unwrap();
    let whole = batch.get_array_memory_size() as u64;
    let estimate = writer.estimated_bytes();
    assert!(
        estimate > 0 && estimate < whole / 100,
        "{estimate} bytes estimated for 10 rows of a batch of {whole}"
    );
    writer.finish().unwrap();
}
