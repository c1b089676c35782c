//! The key-value facade: a table `(key BINARY PRIMARY KEY, value BINARY NOT NULL)` with byte
//! string `put`, `get`, `delete`, `scan` and atomic [`WriteBatch`]es.
//!
//! Keys are stored as they are (the key encoding of a single binary column is the identity),
//! values with the row encoding of one NOT NULL binary column (a varint length, then the bytes),
//! so the facade bypasses Arrow on the write path and on memtable hits.

use std::ops::{Bound, RangeBounds};

use arrow::array::RecordBatch;
use arrow::datatypes::DataType;

use crate::codec::varint::{get_varint, put_varint};
use crate::error::{Error, Result};
use crate::read::{KeyRange, ScanIter, ScanOptions};
use crate::snapshot::Snapshot;
use crate::table::{FoundRow, ReadView, Table, WriteOptions, binary_value};
use crate::types::OpKind;
use crate::wal::BatchPayload;

/// An atomic group of puts and deletes, applied in order.
#[derive(Debug, Clone, Default)]
pub struct WriteBatch {
    ops: Vec<(OpKind, Vec<u8>, Vec<u8>)>,
    bytes: usize,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a put.
    pub fn put(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> &mut Self {
        let (key, value) = (key.as_ref().to_vec(), value.as_ref().to_vec());
        self.bytes += key.len() + value.len();
        self.ops.push((OpKind::Put, key, value));
        self
    }

    /// Adds a delete.
    pub fn delete(&mut self, key: impl AsRef<[u8]>) -> &mut Self {
        let key = key.as_ref().to_vec();
        self.bytes += key.len();
        self.ops.push((OpKind::Delete, key, Vec::new()));
        self
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Removes every operation.
    pub fn clear(&mut self) {
        self.ops.clear();
        self.bytes = 0;
    }
}

/// A key-value store backed by one table.
#[derive(Debug, Clone)]
pub struct KvStore {
    table: Table,
}

impl KvStore {
    pub(crate) fn new(table: Table) -> Result<Self> {
        let schema = table.schema();
        let fits = schema.fields().len() == 2
            && table.primary_key() == ["key"]
            && schema.field(0).data_type() == &DataType::Binary
            && schema.field(1).data_type() == &DataType::Binary
            && !schema.field(1).is_nullable();
        if !fits {
            return Err(Error::SchemaMismatch(format!(
                "table '{}' is not a key-value table (key BINARY PRIMARY KEY, value BINARY NOT NULL)",
                table.name()
            )));
        }
        Ok(KvStore { table })
    }

    /// The table behind the store.
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// Stores `value` under `key`.
    pub fn put(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        let mut batch = WriteBatch::new();
        batch.put(key, value);
        self.write(&batch)
    }

    /// Removes `key` (absent keys are fine).
    pub fn delete(&self, key: impl AsRef<[u8]>) -> Result<()> {
        let mut batch = WriteBatch::new();
        batch.delete(key);
        self.write(&batch)
    }

    /// Applies `batch` atomically.
    pub fn write(&self, batch: &WriteBatch) -> Result<()> {
        self.write_with(batch, WriteOptions::default())
    }

    /// Applies `batch` atomically with explicit write options.
    pub fn write_with(&self, batch: &WriteBatch, options: WriteOptions) -> Result<()> {
        let limits = self.table.db.options.clone();
        let mut payload = BatchPayload::new();
        let mut value = Vec::new();
        for (op, key, raw) in &batch.ops {
            self.table.check_key_size(key)?;
            if raw.len() > limits.value_size_bytes_max {
                return Err(Error::LimitExceeded(format!(
                    "value of {} bytes exceeds value_size_bytes_max ({})",
                    raw.len(),
                    limits.value_size_bytes_max
                )));
            }
            value.clear();
            if *op == OpKind::Put {
                put_varint(&mut value, raw.len() as u64);
                value.extend_from_slice(raw);
            }
            payload.push(self.table.id(), *op, key, &value);
        }
        self.table.commit(payload, options).map(|_| ())
    }

    /// The value stored under `key`.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        get_from(&self.table.view()?, key.as_ref())
    }

    /// The value stored under `key` as of `snapshot`.
    pub fn get_at(&self, snapshot: &Snapshot, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        get_from(&self.table.view_at(snapshot)?, key.as_ref())
    }

    /// Key-value pairs with keys in `range`, in key order.
    pub fn scan<R: RangeBounds<Vec<u8>>>(&self, range: R) -> Result<KvScan> {
        let iter = self.table.scan(key_range(&range), ScanOptions::default())?;
        Ok(KvScan::new(iter))
    }

    /// Like [`KvStore::scan`], as of `snapshot`.
    pub fn scan_at<R: RangeBounds<Vec<u8>>>(
        &self,
        snapshot: &Snapshot,
        range: R,
    ) -> Result<KvScan> {
        let iter = self
            .table
            .scan_at(snapshot, key_range(&range), ScanOptions::default())?;
        Ok(KvScan::new(iter))
    }

    /// Flushes the store's memtables to SSTs.
    pub fn flush(&self) -> Result<()> {
        self.table.flush()
    }
}

fn key_range<R: RangeBounds<Vec<u8>>>(range: &R) -> KeyRange {
    KeyRange::new(range.start_bound().cloned(), range.end_bound().cloned())
}

fn get_from(view: &ReadView, key: &[u8]) -> Result<Option<Vec<u8>>> {
    // Only the value column (SST column 1) of a row found in an SST is read.
    match view.get_row_columns(key, &[1])? {
        None | Some(FoundRow::Deleted) => Ok(None),
        Some(FoundRow::Memtable { value, .. }) => {
            let mut pos = 0;
            let len = get_varint(&value, &mut pos)
                .ok_or_else(|| Error::internal("malformed key-value row"))?
                as usize;
            value
                .get(pos..pos + len)
                .map(|v| Some(v.to_vec()))
                .ok_or_else(|| Error::internal("malformed key-value row"))
        }
        Some(FoundRow::Sst(row)) => Ok(Some(binary_value(row.column(1), 0))),
        Some(FoundRow::SstColumns(columns)) => match columns.first() {
            Some((value, row)) => Ok(Some(binary_value(value, *row))),
            None => Err(Error::internal("a key-value lookup read no value column")),
        },
    }
}

/// Key-value pairs of a scan, in key order.
pub struct KvScan {
    iter: ScanIter,
    batch: Option<RecordBatch>,
    row: usize,
}

impl std::fmt::Debug for KvScan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvScan").finish_non_exhaustive()
    }
}

impl KvScan {
    fn new(iter: ScanIter) -> Self {
        KvScan {
            iter,
            batch: None,
            row: 0,
        }
    }
}

impl Iterator for KvScan {
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(batch) = &self.batch
                && self.row < batch.num_rows()
            {
                let pair = (
                    binary_value(batch.column(0), self.row),
                    binary_value(batch.column(1), self.row),
                );
                self.row += 1;
                return Some(Ok(pair));
            }
            match self.iter.next()? {
                Ok(batch) => {
                    self.batch = Some(batch);
                    self.row = 0;
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// The unbounded range, for `scan(..)` with byte vectors.
pub fn all_keys() -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    (Bound::Unbounded, Bound::Unbounded)
}
