//! A table's schema: the user's Arrow schema, its primary key, and the storage schema of its
//! SST files.
//!
//! ## Storage schema (SST column order, format version 1)
//!
//! ```text
//! user columns, in table order (key columns NOT NULL)  |  [_rowid UInt64]  |  _seq UInt64  |  _op UInt8
//! ```
//!
//! * Key columns keep their own Arrow types, so every Parquet reader sees typed columns with
//!   statistics and bloom filters (a key stored only as an opaque blob would lose them).
//! * `_rowid` exists only in tables created without a primary key: it is the hidden key, a
//!   unique, increasing number assigned at insert (the row's first sequence number).
//! * `_seq` is the write's sequence number, `_op` is `0` (put) or `1` (delete). A delete row
//!   carries its key columns and NULL in every other user column.
//!
//! Column names starting with `_seq`, `_op` and `_rowid` are reserved.
//!
//! ## SST file schema
//!
//! The Parquet columns of an SST are the storage schema's with value columns nullable
//! ([`TableSchema::sst_schema`]), each stored as its *file type* (`sst::file_types`): the
//! same type, except for the types Parquet cannot hold (`Interval(MonthDayNano)` becomes a
//! struct of its three parts, dictionaries their values, list views lists), mapped at the
//! SST reader and writer so that everything else sees the table's own types. Because nested
//! columns span several Parquet leaf columns, a storage column's Parquet *leaf* index (used
//! by sorting columns and bloom filters) is [`TableSchema::sst_leaf_column`], not its
//! storage index.

use std::io::Cursor;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, RecordBatch, RecordBatchOptions, UInt8Array, UInt32Array, UInt64Array,
};
use arrow::compute::take;
use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;

use crate::codec::{ByteRows, KeyCodec, KeyValue, RowCodec};
use crate::error::{Error, Result};
use crate::sst::file_types;
use crate::types::{OpKind, SeqNo};

/// Name of the sequence-number column in SSTs and version scans.
pub const SEQ_COLUMN: &str = "_seq";
/// Name of the operation column (`0` put, `1` delete).
pub const OP_COLUMN: &str = "_op";
/// Name of the hidden key of tables without a primary key.
pub const ROWID_COLUMN: &str = "_rowid";

const RESERVED: [&str; 3] = [SEQ_COLUMN, OP_COLUMN, ROWID_COLUMN];

/// The schema of one table: user columns, primary key, storage layout and the codecs.
#[derive(Debug, Clone)]
pub struct TableSchema {
    user: SchemaRef,
    storage: SchemaRef,
    primary_key: Vec<String>,
    /// Storage-schema indices of the key columns, in key order.
    key_indices: Vec<usize>,
    /// Storage-schema indices of the user columns that are not part of the key.
    value_indices: Vec<usize>,
    key_codec: KeyCodec,
    row_codec: RowCodec,
    /// The Parquet schema of SST files ([`TableSchema::sst_file_schema`]).
    sst_file: SchemaRef,
    /// For each storage column, its first Parquet leaf column in SST files.
    leaf_columns: Vec<usize>,
    /// True when every SST file column has its storage column's type.
    file_types_match: bool,
}

impl TableSchema {
    /// Builds the schema of a table with user columns `user` and primary key `primary_key`
    /// (column names, in key order). An empty key makes an append-only table keyed by a hidden
    /// row id.
    pub fn new(user: SchemaRef, primary_key: &[impl AsRef<str>]) -> Result<Self> {
        if user.fields().is_empty() {
            return Err(Error::InvalidArgument(
                "a table needs at least one column".into(),
            ));
        }
        for field in user.fields() {
            if RESERVED.contains(&field.name().as_str()) {
                return Err(Error::InvalidArgument(format!(
                    "column name '{}' is reserved by Strata",
                    field.name()
                )));
            }
        }
        for (i, field) in user.fields().iter().enumerate() {
            if user.fields()[..i].iter().any(|f| f.name() == field.name()) {
                return Err(Error::InvalidArgument(format!(
                    "duplicate column name '{}'",
                    field.name()
                )));
            }
        }
        let primary_key: Vec<String> = primary_key.iter().map(|k| k.as_ref().to_string()).collect();
        let mut user_key_indices = Vec::with_capacity(primary_key.len());
        for (i, name) in primary_key.iter().enumerate() {
            let index = user.index_of(name).map_err(|_| {
                Error::InvalidArgument(format!(
                    "primary key column '{name}' is not a column of the table"
                ))
            })?;
            if primary_key[..i].contains(name) {
                return Err(Error::InvalidArgument(format!(
                    "primary key column '{name}' is listed twice"
                )));
            }
            user_key_indices.push(index);
        }
        // Key columns are stored NOT NULL; the user schema says so too.
        let user_fields: Vec<FieldRef> = user
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                if user_key_indices.contains(&i) && f.is_nullable() {
                    Arc::new(f.as_ref().clone().with_nullable(false))
                } else {
                    Arc::clone(f)
                }
            })
            .collect();
        let user = Arc::new(Schema::new_with_metadata(
            user_fields.clone(),
            user.metadata().clone(),
        ));
        let mut storage_fields = user_fields.clone();
        let key_indices = if primary_key.is_empty() {
            storage_fields.push(Arc::new(Field::new(ROWID_COLUMN, DataType::UInt64, false)));
            vec![storage_fields.len() - 1]
        } else {
            user_key_indices.clone()
        };
        storage_fields.push(Arc::new(Field::new(SEQ_COLUMN, DataType::UInt64, false)));
        storage_fields.push(Arc::new(Field::new(OP_COLUMN, DataType::UInt8, false)));
        let storage = Arc::new(Schema::new(storage_fields));
        let value_indices: Vec<usize> = (0..user.fields().len())
            .filter(|i| !key_indices.contains(i))
            .collect();
        let key_codec = KeyCodec::new(
            key_indices
                .iter()
                .map(|i| Arc::clone(&storage.fields()[*i]))
                .collect(),
        )?;
        // Values are stored nullable: a tombstone row has NULL in every value column.
        let row_codec = RowCodec::new(
            value_indices
                .iter()
                .map(|i| Arc::clone(&user.fields()[*i]))
                .collect(),
        )?;
        let mut schema = TableSchema {
            user,
            storage,
            primary_key,
            key_indices,
            value_indices,
            key_codec,
            row_codec,
            sst_file: Arc::new(Schema::empty()),
            leaf_columns: Vec::new(),
            file_types_match: true,
        };
        let sst = schema.sst_schema();
        let file_fields: Vec<FieldRef> = sst.fields().iter().map(file_types::file_field).collect();
        let mut next_leaf = 0;
        schema.leaf_columns = file_fields
            .iter()
            .map(|f| {
                next_leaf += file_types::leaf_columns(f.data_type());
                next_leaf - file_types::leaf_columns(f.data_type())
            })
            .collect();
        schema.sst_file = Arc::new(Schema::new(file_fields));
        schema.file_types_match =
            (0..schema.storage.fields().len()).all(|i| !schema.sst_file_type_differs(i));
        debug_assert!(
            schema
                .key_indices
                .iter()
                .all(|i| !schema.sst_file_type_differs(*i)),
            "key columns are stored with their own types"
        );
        Ok(schema)
    }

    /// The Parquet schema of SST files: [`TableSchema::sst_schema`] with every column as its
    /// file type (see the module docs).
    pub fn sst_file_schema(&self) -> &SchemaRef {
        &self.sst_file
    }

    /// True when storage column `index` is stored in SST files as another type than its own.
    pub fn sst_file_type_differs(&self, index: usize) -> bool {
        self.sst_file.field(index).data_type() != self.storage.field(index).data_type()
    }

    /// True when every column of SST files has the table's own type, so a Parquet reader
    /// given the user schema reads the files' user columns as they are. When false, files
    /// must be read through the engine's SST reader (which maps the columns back), never
    /// by a foreign reader expecting the user types.
    pub fn sst_file_types_are_user_types(&self) -> bool {
        self.file_types_match
    }

    /// The first Parquet leaf column of storage column `index` in SST files.
    pub fn sst_leaf_column(&self, index: usize) -> usize {
        self.leaf_columns[index]
    }

    /// Converts a batch of the SST schema into the SST file schema (for writing).
    pub fn to_sst_file_batch(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        if self.sst_file_types_are_user_types() {
            return Ok(batch.clone());
        }
        let columns = batch
            .columns()
            .iter()
            .map(file_types::to_file)
            .collect::<Result<Vec<_>>>()?;
        Ok(RecordBatch::try_new_with_options(
            Arc::clone(&self.sst_file),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
        )?)
    }

    /// Converts a batch read from an SST file, holding the storage columns `columns`
    /// (ascending), back into those columns of the SST schema.
    pub fn from_sst_file_batch(
        &self,
        columns: &[usize],
        batch: RecordBatch,
    ) -> Result<RecordBatch> {
        if columns.iter().all(|c| !self.sst_file_type_differs(*c)) {
            return Ok(batch);
        }
        let sst = self.sst_schema();
        let fields: Vec<FieldRef> = columns
            .iter()
            .map(|c| Arc::clone(&sst.fields()[*c]))
            .collect();
        let arrays = batch
            .columns()
            .iter()
            .zip(&fields)
            .map(|(array, field)| file_types::from_file(array, field.data_type()))
            .collect::<Result<Vec<_>>>()?;
        Ok(RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            arrays,
            &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
        )?)
    }

    /// The schema users see (key columns NOT NULL, no hidden columns).
    pub fn user_schema(&self) -> &SchemaRef {
        &self.user
    }

    /// The schema of SST files and of version scans (see the module docs).
    pub fn storage_schema(&self) -> &SchemaRef {
        &self.storage
    }

    /// Primary-key column names in key order (empty for append-only tables).
    pub fn primary_key(&self) -> &[String] {
        &self.primary_key
    }

    /// True for tables keyed by the hidden `_rowid`.
    pub fn has_hidden_rowid(&self) -> bool {
        self.primary_key.is_empty()
    }

    /// Storage-schema indices of the key columns, in key order.
    pub fn key_indices(&self) -> &[usize] {
        &self.key_indices
    }

    /// Storage-schema indices of the non-key user columns.
    pub fn value_indices(&self) -> &[usize] {
        &self.value_indices
    }

    /// Index of `_seq` in the storage schema.
    pub fn seq_index(&self) -> usize {
        self.storage.fields().len() - 2
    }

    /// Index of `_op` in the storage schema.
    pub fn op_index(&self) -> usize {
        self.storage.fields().len() - 1
    }

    /// The key codec.
    pub fn key_codec(&self) -> &KeyCodec {
        &self.key_codec
    }

    /// The value codec.
    pub fn row_codec(&self) -> &RowCodec {
        &self.row_codec
    }

    /// Checks that `batch` has exactly the table's user columns (names and types).
    pub fn check_batch(&self, batch: &RecordBatch) -> Result<()> {
        let got = batch.schema();
        if got.fields().len() != self.user.fields().len() {
            return Err(Error::SchemaMismatch(format!(
                "batch has {} columns, table has {} ({})",
                got.fields().len(),
                self.user.fields().len(),
                column_list(&self.user)
            )));
        }
        for (have, want) in got.fields().iter().zip(self.user.fields()) {
            if have.name() != want.name() {
                return Err(Error::SchemaMismatch(format!(
                    "batch column '{}' where the table has '{}' ({})",
                    have.name(),
                    want.name(),
                    column_list(&self.user)
                )));
            }
            if have.data_type() != want.data_type() {
                return Err(Error::SchemaMismatch(format!(
                    "column '{}' has type {}, the table expects {}",
                    have.name(),
                    have.data_type(),
                    want.data_type()
                )));
            }
        }
        Ok(())
    }

    /// Encodes the rows of `batch` as (keys, values). For append-only tables `first_rowid` gives
    /// the hidden key of the first row; the next rows take the following numbers.
    pub fn encode_rows(
        &self,
        batch: &RecordBatch,
        first_rowid: u64,
    ) -> Result<(ByteRows, ByteRows)> {
        self.check_batch(batch)?;
        let key_columns: Vec<ArrayRef> = if self.has_hidden_rowid() {
            let ids: UInt64Array = (first_rowid..first_rowid + batch.num_rows() as u64).collect();
            vec![Arc::new(ids)]
        } else {
            self.key_indices
                .iter()
                .map(|i| Arc::clone(batch.column(*i)))
                .collect()
        };
        let keys = self.key_codec.encode_columns(&key_columns)?;
        let value_columns: Vec<ArrayRef> = self
            .value_indices
            .iter()
            .map(|i| Arc::clone(batch.column(*i)))
            .collect();
        let values = if value_columns.is_empty() {
            // A table of key columns only: every row has an empty value (the codec alone
            // cannot tell how many rows a batch of no columns has).
            let mut empty = ByteRows::with_capacity(batch.num_rows(), 0);
            for _ in 0..batch.num_rows() {
                empty.push(&[]);
            }
            empty
        } else {
            self.row_codec.encode_columns(&value_columns)?
        };
        Ok((keys, values))
    }

    /// Encodes the keys in `keys`, a batch holding exactly the primary-key columns (matched by
    /// name, in any order; `_rowid` for append-only tables).
    pub fn encode_key_batch(&self, keys: &RecordBatch) -> Result<ByteRows> {
        let schema = keys.schema();
        if schema.fields().len() != self.key_indices.len() {
            return Err(Error::SchemaMismatch(format!(
                "a key batch needs exactly the primary-key columns ({}), got {}",
                self.key_names().join(", "),
                column_list(&schema)
            )));
        }
        let mut columns = Vec::with_capacity(self.key_indices.len());
        for index in &self.key_indices {
            let field = &self.storage.fields()[*index];
            let column = keys.column_by_name(field.name()).ok_or_else(|| {
                Error::SchemaMismatch(format!("key batch lacks key column '{}'", field.name()))
            })?;
            columns.push(Arc::clone(column));
        }
        self.key_codec.encode_columns(&columns)
    }

    /// Encodes a full key given as typed values in key order.
    pub fn encode_key_values(&self, key: &[KeyValue]) -> Result<Vec<u8>> {
        if key.len() != self.key_codec.arity() {
            return Err(Error::InvalidArgument(format!(
                "key has {} values; the primary key ({}) has {}",
                key.len(),
                self.key_names().join(", "),
                self.key_codec.arity()
            )));
        }
        self.key_codec.encode_values(key)
    }

    /// Names of the key columns in key order (`_rowid` for append-only tables).
    pub fn key_names(&self) -> Vec<String> {
        self.key_indices
            .iter()
            .map(|i| self.storage.field(*i).name().clone())
            .collect()
    }

    /// Builds a storage-schema batch from encoded entries, materialising only the storage
    /// columns in `columns` (sorted storage indices; key columns, `_seq` and `_op` may be
    /// included or not).
    pub fn decode_entries<'a>(
        &self,
        keys: impl ExactSizeIterator<Item = &'a [u8]>,
        values: impl ExactSizeIterator<Item = &'a [u8]>,
        seqs: &[SeqNo],
        ops: &[OpKind],
        columns: &[usize],
    ) -> Result<RecordBatch> {
        let rows = keys.len();
        debug_assert_eq!(seqs.len(), rows);
        debug_assert_eq!(ops.len(), rows);
        let key_columns = if columns.iter().any(|c| self.key_indices.contains(c)) {
            self.key_codec.decode(keys)?
        } else {
            Vec::new()
        };
        let wants_values = columns.iter().any(|c| self.value_indices.contains(c));
        let value_columns = if wants_values {
            self.decode_values_with_tombstones(values, ops)?
        } else {
            Vec::new()
        };
        let fields: Vec<FieldRef> = columns
            .iter()
            .map(|c| self.storage_field_for_decode(*c))
            .collect();
        let mut arrays = Vec::with_capacity(columns.len());
        for &c in columns {
            let array: ArrayRef = if let Some(k) = self.key_indices.iter().position(|i| *i == c) {
                Arc::clone(&key_columns[k])
            } else if let Some(v) = self.value_indices.iter().position(|i| *i == c) {
                Arc::clone(&value_columns[v])
            } else if c == self.seq_index() {
                Arc::new(UInt64Array::from(seqs.to_vec()))
            } else if c == self.op_index() {
                Arc::new(UInt8Array::from_iter_values(ops.iter().map(|o| o.as_u8())))
            } else {
                return Err(Error::internal(format!("storage column {c} out of range")));
            };
            arrays.push(array);
        }
        let schema = Arc::new(Schema::new(fields));
        Ok(RecordBatch::try_new_with_options(
            schema,
            arrays,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )?)
    }

    /// The storage field, made nullable for value columns: tombstones hold NULLs there even
    /// when the user column is NOT NULL.
    fn storage_field_for_decode(&self, index: usize) -> FieldRef {
        let field = &self.storage.fields()[index];
        if self.value_indices.contains(&index) && !field.is_nullable() {
            Arc::new(field.as_ref().clone().with_nullable(true))
        } else {
            Arc::clone(field)
        }
    }

    /// The SST file schema: the storage schema with value columns nullable (tombstones).
    pub fn sst_schema(&self) -> SchemaRef {
        let fields: Vec<FieldRef> = (0..self.storage.fields().len())
            .map(|i| self.storage_field_for_decode(i))
            .collect();
        Arc::new(Schema::new(fields))
    }

    /// Decodes value rows; a tombstone's row is empty and decodes as NULL in every column.
    fn decode_values_with_tombstones<'a>(
        &self,
        values: impl ExactSizeIterator<Item = &'a [u8]>,
        ops: &[OpKind],
    ) -> Result<Vec<ArrayRef>> {
        let puts = ops.iter().filter(|op| **op == OpKind::Put).count();
        let put_rows = values
            .zip(ops)
            .filter(|(_, op)| **op == OpKind::Put)
            .map(|(v, _)| v);
        let decoded = self.row_codec.decode(put_rows)?;
        if puts == ops.len() {
            return Ok(decoded);
        }
        // Spread the decoded puts over all rows; tombstone positions take a NULL index.
        let mut next = 0u32;
        let indices: UInt32Array = ops
            .iter()
            .map(|op| {
                (*op == OpKind::Put).then(|| {
                    next += 1;
                    next - 1
                })
            })
            .collect();
        decoded
            .iter()
            .map(|column| Ok(take(column.as_ref(), &indices, None)?))
            .collect()
    }

    /// Serialises the user schema (Arrow IPC stream with no batches) for the manifest.
    pub fn user_schema_ipc(&self) -> Result<Vec<u8>> {
        schema_to_ipc(&self.user)
    }
}

fn column_list(schema: &Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name(), f.data_type()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Serialises a schema as an Arrow IPC stream holding only the schema message.
pub fn schema_to_ipc(schema: &Schema) -> Result<Vec<u8>> {
    let mut writer = StreamWriter::try_new(Vec::new(), schema)?;
    writer.finish()?;
    Ok(writer.into_inner()?)
}

/// Reads a schema written by [`schema_to_ipc`].
pub fn schema_from_ipc(bytes: &[u8]) -> Result<Schema> {
    let reader = StreamReader::try_new(Cursor::new(bytes), None)?;
    Ok(reader.schema().as_ref().clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Int64Array, StringArray};

    fn users() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, true),
            Field::new("id", DataType::Int64, true),
            Field::new("age", DataType::Int32, true),
        ]))
    }

    #[test]
    fn key_columns_become_not_null_and_follow_key_order() {
        let schema = TableSchema::new(users(), &["id", "name"]).unwrap();
        assert_eq!(schema.key_indices(), &[1, 0]);
        assert_eq!(schema.value_indices(), &[2]);
        assert!(!schema.user_schema().field(1).is_nullable());
        assert!(schema.user_schema().field(2).is_nullable());
        let storage: Vec<&str> = schema
            .storage_schema()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(storage, vec!["name", "id", "age", "_seq", "_op"]);
    }

    #[test]
    fn keyless_tables_get_a_hidden_rowid() {
        let schema = TableSchema::new(users(), &[] as &[&str]).unwrap();
        assert!(schema.has_hidden_rowid());
        assert_eq!(schema.storage_schema().field(3).name(), ROWID_COLUMN);
        assert_eq!(schema.key_indices(), &[3]);
        assert_eq!(schema.value_indices(), &[0, 1, 2]);
    }

    #[test]
    fn bad_definitions_are_rejected() {
        assert!(TableSchema::new(users(), &["nope"]).is_err());
        assert!(TableSchema::new(users(), &["id", "id"]).is_err());
        let reserved = Arc::new(Schema::new(vec![Field::new(
            "_seq",
            DataType::Int64,
            false,
        )]));
        assert!(TableSchema::new(reserved, &["_seq"]).is_err());
    }

    #[test]
    fn encode_and_decode_entries() {
        let schema = TableSchema::new(users(), &["id"]).unwrap();
        let batch = RecordBatch::try_new(
            Arc::clone(schema.user_schema()),
            vec![
                Arc::new(StringArray::from(vec![Some("a"), None])),
                Arc::new(Int64Array::from(vec![2, 1])),
                Arc::new(arrow::array::Int32Array::from(vec![Some(30), None])),
            ],
        )
        .unwrap();
        let (keys, values) = schema.encode_rows(&batch, 0).unwrap();
        let all: Vec<usize> = (0..schema.storage_schema().fields().len()).collect();
        let decoded = schema
            .decode_entries(
                keys.iter(),
                values.iter(),
                &[5, 6],
                &[OpKind::Put, OpKind::Delete],
                &all,
            )
            .unwrap();
        assert_eq!(decoded.num_rows(), 2);
        assert_eq!(decoded.column(1).as_ref(), batch.column(1).as_ref());
        // Row 1 is a tombstone: its value columns decode as NULL.
        assert!(decoded.column(0).is_null(1));
        assert!(decoded.column(2).is_null(1));
        assert_eq!(
            decoded.column(0).as_ref(),
            &StringArray::from(vec![Some("a"), None]) as &dyn Array
        );
    }

    #[test]
    fn wrong_batches_are_rejected_with_clear_errors() {
        let schema = TableSchema::new(users(), &["id"]).unwrap();
        let wrong_type = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("name", DataType::Utf8, true),
                Field::new("id", DataType::Utf8, true),
                Field::new("age", DataType::Int32, true),
            ])),
            vec![
                Arc::new(StringArray::from(vec!["a"])),
                Arc::new(StringArray::from(vec!["1"])),
                Arc::new(arrow::array::Int32Array::from(vec![1])),
            ],
        )
        .unwrap();
        let err = schema.encode_rows(&wrong_type, 0).unwrap_err().to_string();
        assert!(
            err.contains("column 'id' has type Utf8, the table expects Int64"),
            "{err}"
        );
        let null_key = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("name", DataType::Utf8, true),
                Field::new("id", DataType::Int64, true),
                Field::new("age", DataType::Int32, true),
            ])),
            vec![
                Arc::new(StringArray::from(vec!["a"])),
                Arc::new(Int64Array::from(vec![None])),
                Arc::new(arrow::array::Int32Array::from(vec![1])),
            ],
        )
        .unwrap();
        assert!(matches!(
            schema.encode_rows(&null_key, 0),
            Err(Error::NullKey { .. })
        ));
    }

    #[test]
    fn sst_file_types_and_leaf_columns() {
        let list = DataType::List(Arc::new(Field::new("item", DataType::Int32, true)));
        let pair = DataType::Struct(
            vec![
                Field::new("a", DataType::Int32, true),
                Field::new("b", list.clone(), true),
            ]
            .into(),
        );
        let nested = Arc::new(Schema::new(vec![
            Field::new("s", pair, true),
            Field::new("id", DataType::Int64, false),
            Field::new("l", list, true),
        ]));
        let schema = TableSchema::new(nested, &["id"]).unwrap();
        // Nested types Parquet holds as they are: the files have the user types.
        assert!(schema.sst_file_types_are_user_types());
        assert_eq!(
            schema.sst_file_schema().as_ref(),
            schema.sst_schema().as_ref()
        );
        // s spans leaves 0 (s.a) and 1 (s.b.item); id is leaf 2, l leaf 3, _seq 4, _op 5.
        let leaves: Vec<usize> = (0..5).map(|i| schema.sst_leaf_column(i)).collect();
        assert_eq!(leaves, vec![0, 2, 3, 4, 5]);
        let interval = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new(
                "d",
                DataType::Interval(arrow::datatypes::IntervalUnit::MonthDayNano),
                true,
            ),
        ]));
        let schema = TableSchema::new(interval, &["id"]).unwrap();
        assert!(!schema.sst_file_types_are_user_types());
        assert!(schema.sst_file_type_differs(1) && !schema.sst_file_type_differs(0));
        assert!(matches!(
            schema.sst_file_schema().field(1).data_type(),
            DataType::Struct(fields) if fields.len() == 3
        ));
    }

    #[test]
    fn schema_ipc_round_trip() {
        let schema = TableSchema::new(users(), &["id"]).unwrap();
        let bytes = schema.user_schema_ipc().unwrap();
        assert_eq!(
            &schema_from_ipc(&bytes).unwrap(),
            schema.user_schema().as_ref()
        );
    }
}
