//! Strata's row encoding of the non-key columns of a table (format version 1).
//!
//! A memtable entry's value, and a WAL entry's value, is one row of the table's non-key columns
//! in this encoding. It is persisted (in the WAL), so it is documented here and versioned.
//!
//! ## Layout of one row
//!
//! ```text
//! +-----------------------------+----------+----------+-----+
//! | null bitmap (ceil(n/8) B)   | value c0 | value c1 | ... |   (only non-NULL values follow)
//! +-----------------------------+----------+----------+-----+
//! ```
//!
//! * `n` is the number of **nullable** value columns; bit `i` (byte `i / 8`, bit `i % 8`,
//!   least significant first) is set when the `i`-th nullable column is NULL. A table whose
//!   value columns are all `NOT NULL` has no bitmap at all.
//! * Each non-NULL value, in column order:
//!
//! | Arrow type | encoding |
//! |---|---|
//! | `Boolean` | 1 byte, `0` or `1` |
//! | fixed-width primitives (integers, floats, decimals, dates, times, timestamps, durations, intervals) | the value's little-endian bytes (Arrow's in-memory width) |
//! | `FixedSizeBinary(w)` | `w` raw bytes |
//! | `Utf8`, `LargeUtf8`, `Utf8View`, `Binary`, `LargeBinary`, `BinaryView` | LEB128 varint length, then the bytes |
//!
//! Nested types (lists, structs, maps), dictionaries and the `Null` type are not storable;
//! [`RowCodec::new`] rejects them with a clear error.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayData, ArrayRef, AsArray, BinaryViewBuilder, BooleanBufferBuilder,
    FixedSizeBinaryArray, StringViewBuilder, make_array,
};
use arrow::buffer::{Buffer, MutableBuffer, NullBuffer, OffsetBuffer};
use arrow::datatypes::{DataType, FieldRef};

use super::ByteRows;
use super::varint::{get_varint, put_varint, varint_len};
use crate::error::{Error, Result};

#[cfg(target_endian = "big")]
compile_error!("Strata's row encoding stores Arrow's native little-endian bytes");

/// How one value column is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ValueKind {
    Bool,
    Fixed(usize),
    FixedBinary(usize),
    Var,
}

fn value_kind(data_type: &DataType) -> Option<ValueKind> {
    match data_type {
        DataType::Boolean => Some(ValueKind::Bool),
        DataType::FixedSizeBinary(w) if *w >= 0 => Some(ValueKind::FixedBinary(*w as usize)),
        DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView => Some(ValueKind::Var),
        dt if dt.is_primitive() => dt.primitive_width().map(ValueKind::Fixed),
        _ => None,
    }
}

/// True when a column of this type can be stored by the engine (as key or value).
pub fn is_storable(data_type: &DataType) -> bool {
    value_kind(data_type).is_some()
}

/// Encodes and decodes the value columns of one table (see the module docs for the format).
#[derive(Debug, Clone)]
pub struct RowCodec {
    fields: Vec<FieldRef>,
    kinds: Vec<ValueKind>,
    /// For each column, its bit in the null bitmap (nullable columns only).
    null_bits: Vec<Option<usize>>,
    bitmap_bytes: usize,
}

impl RowCodec {
    /// A codec for the value columns `fields`, in storage order.
    pub fn new(fields: Vec<FieldRef>) -> Result<Self> {
        let kinds = fields
            .iter()
            .map(|f| {
                value_kind(f.data_type()).ok_or_else(|| {
                    Error::UnsupportedType(format!(
                        "column '{}' has type {}, which Strata tables cannot store yet \
                         (supported: booleans, numbers, decimals, dates, times, timestamps, \
                         durations, intervals, strings and binary)",
                        f.name(),
                        f.data_type()
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut next_bit = 0;
        let null_bits = fields
            .iter()
            .map(|f| {
                f.is_nullable().then(|| {
                    next_bit += 1;
                    next_bit - 1
                })
            })
            .collect();
        Ok(RowCodec {
            fields,
            kinds,
            null_bits,
            bitmap_bytes: next_bit.div_ceil(8),
        })
    }

    /// The value fields in storage order.
    pub fn fields(&self) -> &[FieldRef] {
        &self.fields
    }

    /// Encodes the value columns of a batch (in storage order).
    pub fn encode_columns(&self, columns: &[ArrayRef]) -> Result<ByteRows> {
        debug_assert_eq!(columns.len(), self.fields.len());
        let rows = columns.first().map_or(0, |c| c.len());
        for (field, column) in self.fields.iter().zip(columns) {
            if column.data_type() != field.data_type() {
                return Err(Error::SchemaMismatch(format!(
                    "column '{}' has type {}, expected {}",
                    field.name(),
                    column.data_type(),
                    field.data_type()
                )));
            }
            if !field.is_nullable() && column.null_count() > 0 {
                return Err(Error::SchemaMismatch(format!(
                    "column '{}' is NOT NULL but the batch holds NULLs",
                    field.name()
                )));
            }
        }
        // Pass 1: lengths.
        let mut lengths = vec![self.bitmap_bytes; rows];
        for (kind, column) in self.kinds.iter().zip(columns) {
            add_value_lengths(*kind, column, &mut lengths);
        }
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0usize);
        let mut total = 0;
        for len in &lengths {
            total += len;
            offsets.push(total);
        }
        // Pass 2: bitmaps, then each column at each row's cursor.
        let mut data = vec![0u8; total];
        let mut cursors: Vec<usize> = offsets[..rows]
            .iter()
            .map(|o| o + self.bitmap_bytes)
            .collect();
        for ((kind, column), bit) in self.kinds.iter().zip(columns).zip(&self.null_bits) {
            if let (Some(bit), Some(nulls)) = (bit, column.logical_nulls()) {
                for (row, start) in offsets[..rows].iter().enumerate() {
                    if nulls.is_null(row) {
                        data[start + bit / 8] |= 1 << (bit % 8);
                    }
                }
            }
            write_values(*kind, column, &mut data, &mut cursors);
        }
        debug_assert!(cursors.iter().zip(&offsets[1..]).all(|(c, e)| c == e));
        Ok(ByteRows::from_parts(data, offsets))
    }

    /// Decodes encoded rows back into the value columns (in storage order).
    pub fn decode<'a>(&self, rows: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<ArrayRef>> {
        let rows: Vec<&[u8]> = rows.into_iter().collect();
        let mut builders: Vec<ColumnBuilder> = self
            .kinds
            .iter()
            .map(|k| ColumnBuilder::new(*k, rows.len()))
            .collect();
        for row in &rows {
            let bitmap = row
                .get(..self.bitmap_bytes)
                .ok_or_else(|| malformed("row shorter than its null bitmap"))?;
            let mut pos = self.bitmap_bytes;
            for (builder, bit) in builders.iter_mut().zip(&self.null_bits) {
                let is_null = bit.is_some_and(|b| bitmap[b / 8] & (1 << (b % 8)) != 0);
                builder.push(row, &mut pos, is_null)?;
            }
            if pos != row.len() {
                return Err(malformed("trailing bytes after the last column"));
            }
        }
        builders
            .into_iter()
            .zip(&self.fields)
            .map(|(b, f)| b.finish(f.data_type()))
            .collect()
    }
}

fn malformed(reason: &str) -> Error {
    Error::internal(format!("malformed encoded row: {reason}"))
}

fn var_len(column: &ArrayRef, i: usize) -> usize {
    var_bytes(column, i).len()
}

#[inline]
fn var_bytes(column: &ArrayRef, i: usize) -> &[u8] {
    match column.data_type() {
        DataType::Utf8 => column.as_string::<i32>().value(i).as_bytes(),
        DataType::LargeUtf8 => column.as_string::<i64>().value(i).as_bytes(),
        DataType::Utf8View => column.as_string_view().value(i).as_bytes(),
        DataType::Binary => column.as_binary::<i32>().value(i),
        DataType::LargeBinary => column.as_binary::<i64>().value(i),
        DataType::BinaryView => column.as_binary_view().value(i),
        other => unreachable!("not a variable-length type: {other}"),
    }
}

fn add_value_lengths(kind: ValueKind, column: &ArrayRef, lengths: &mut [usize]) {
    let nulls = column.logical_nulls();
    let valid = |i: usize| nulls.as_ref().is_none_or(|n| n.is_valid(i));
    match kind {
        ValueKind::Bool => lengths.iter_mut().enumerate().for_each(|(i, l)| {
            if valid(i) {
                *l += 1
            }
        }),
        ValueKind::Fixed(w) | ValueKind::FixedBinary(w) => {
            lengths.iter_mut().enumerate().for_each(|(i, l)| {
                if valid(i) {
                    *l += w
                }
            })
        }
        ValueKind::Var => lengths.iter_mut().enumerate().for_each(|(i, l)| {
            if valid(i) {
                let n = var_len(column, i);
                *l += varint_len(n as u64) + n;
            }
        }),
    }
}

fn write_values(kind: ValueKind, column: &ArrayRef, data: &mut [u8], cursors: &mut [usize]) {
    let nulls = column.logical_nulls();
    let valid = |i: usize| nulls.as_ref().is_none_or(|n| n.is_valid(i));
    match kind {
        ValueKind::Bool => {
            let values = column.as_boolean();
            for (i, cursor) in cursors.iter_mut().enumerate() {
                if valid(i) {
                    data[*cursor] = values.value(i) as u8;
                    *cursor += 1;
                }
            }
        }
        ValueKind::Fixed(width) => {
            let array_data = column.to_data();
            let start = array_data.offset() * width;
            let bytes = &array_data.buffers()[0].as_slice()[start..];
            for (i, cursor) in cursors.iter_mut().enumerate() {
                if valid(i) {
                    data[*cursor..*cursor + width]
                        .copy_from_slice(&bytes[i * width..(i + 1) * width]);
                    *cursor += width;
                }
            }
        }
        ValueKind::FixedBinary(width) => {
            let values = column.as_fixed_size_binary();
            for (i, cursor) in cursors.iter_mut().enumerate() {
                if valid(i) {
                    data[*cursor..*cursor + width].copy_from_slice(values.value(i));
                    *cursor += width;
                }
            }
        }
        ValueKind::Var => {
            let mut scratch = Vec::with_capacity(10);
            for (i, cursor) in cursors.iter_mut().enumerate() {
                if valid(i) {
                    let bytes = var_bytes(column, i);
                    scratch.clear();
                    put_varint(&mut scratch, bytes.len() as u64);
                    data[*cursor..*cursor + scratch.len()].copy_from_slice(&scratch);
                    *cursor += scratch.len();
                    data[*cursor..*cursor + bytes.len()].copy_from_slice(bytes);
                    *cursor += bytes.len();
                }
            }
        }
    }
}

/// Accumulates one column while rows are decoded.
enum ColumnBuilder {
    Bool {
        values: BooleanBufferBuilder,
        validity: BooleanBufferBuilder,
    },
    Fixed {
        width: usize,
        values: MutableBuffer,
        validity: BooleanBufferBuilder,
    },
    FixedBinary {
        width: usize,
        values: MutableBuffer,
        validity: BooleanBufferBuilder,
    },
    Var {
        data: Vec<u8>,
        offsets: Vec<usize>,
        validity: BooleanBufferBuilder,
    },
}

impl ColumnBuilder {
    fn new(kind: ValueKind, rows: usize) -> Self {
        let validity = BooleanBufferBuilder::new(rows);
        match kind {
            ValueKind::Bool => ColumnBuilder::Bool {
                values: BooleanBufferBuilder::new(rows),
                validity,
            },
            ValueKind::Fixed(width) => ColumnBuilder::Fixed {
                width,
                values: MutableBuffer::new(rows * width),
                validity,
            },
            ValueKind::FixedBinary(width) => ColumnBuilder::FixedBinary {
                width,
                values: MutableBuffer::new(rows * width),
                validity,
            },
            ValueKind::Var => {
                let mut offsets = Vec::with_capacity(rows + 1);
                offsets.push(0);
                ColumnBuilder::Var {
                    data: Vec::new(),
                    offsets,
                    validity,
                }
            }
        }
    }

    fn push(&mut self, row: &[u8], pos: &mut usize, is_null: bool) -> Result<()> {
        let take = |pos: &mut usize, n: usize| -> Result<&[u8]> {
            let bytes = row
                .get(*pos..*pos + n)
                .ok_or_else(|| malformed("row shorter than its columns"))?;
            *pos += n;
            Ok(bytes)
        };
        match self {
            ColumnBuilder::Bool { values, validity } => {
                validity.append(!is_null);
                let v = if is_null {
                    false
                } else {
                    take(pos, 1)?[0] != 0
                };
                values.append(v);
            }
            ColumnBuilder::Fixed {
                width,
                values,
                validity,
            }
            | ColumnBuilder::FixedBinary {
                width,
                values,
                validity,
            } => {
                validity.append(!is_null);
                if is_null {
                    values.extend_zeros(*width);
                } else {
                    values.extend_from_slice(take(pos, *width)?);
                }
            }
            ColumnBuilder::Var {
                data,
                offsets,
                validity,
            } => {
                validity.append(!is_null);
                if !is_null {
                    let len = get_varint(row, pos).ok_or_else(|| malformed("bad length"))? as usize;
                    data.extend_from_slice(take(pos, len)?);
                }
                offsets.push(data.len());
            }
        }
        Ok(())
    }

    fn finish(self, data_type: &DataType) -> Result<ArrayRef> {
        fn nulls(mut validity: BooleanBufferBuilder) -> Option<NullBuffer> {
            let nulls = NullBuffer::new(validity.finish());
            (nulls.null_count() > 0).then_some(nulls)
        }
        match self {
            ColumnBuilder::Bool {
                mut values,
                validity,
            } => Ok(Arc::new(arrow::array::BooleanArray::new(
                values.finish(),
                nulls(validity),
            ))),
            ColumnBuilder::Fixed {
                values, validity, ..
            } => {
                let len = validity.len();
                let nulls = nulls(validity);
                let data = ArrayData::builder(data_type.clone())
                    .len(len)
                    .add_buffer(Buffer::from(values))
                    .nulls(nulls)
                    .build()?;
                Ok(make_array(data))
            }
            ColumnBuilder::FixedBinary {
                width,
                values,
                validity,
            } => Ok(Arc::new(FixedSizeBinaryArray::try_new(
                width as i32,
                Buffer::from(values),
                nulls(validity),
            )?)),
            ColumnBuilder::Var {
                data,
                offsets,
                validity,
            } => build_var(data_type, data, offsets, nulls(validity)),
        }
    }
}

fn build_var(
    data_type: &DataType,
    data: Vec<u8>,
    offsets: Vec<usize>,
    nulls: Option<NullBuffer>,
) -> Result<ArrayRef> {
    use arrow::array::{GenericBinaryArray, GenericStringArray};
    fn offsets_of<O: arrow::array::OffsetSizeTrait>(offsets: &[usize]) -> Result<OffsetBuffer<O>> {
        let converted = offsets
            .iter()
            .map(|o| {
                O::from_usize(*o).ok_or_else(|| {
                    Error::LimitExceeded("column data too large for its offset type".into())
                })
            })
            .collect::<Result<Vec<O>>>()?;
        Ok(OffsetBuffer::new(converted.into()))
    }
    let values = Buffer::from_vec(data);
    Ok(match data_type {
        DataType::Utf8 => Arc::new(GenericStringArray::<i32>::try_new(
            offsets_of(&offsets)?,
            values,
            nulls,
        )?),
        DataType::LargeUtf8 => Arc::new(GenericStringArray::<i64>::try_new(
            offsets_of(&offsets)?,
            values,
            nulls,
        )?),
        DataType::Binary => Arc::new(GenericBinaryArray::<i32>::try_new(
            offsets_of(&offsets)?,
            values,
            nulls,
        )?),
        DataType::LargeBinary => Arc::new(GenericBinaryArray::<i64>::try_new(
            offsets_of(&offsets)?,
            values,
            nulls,
        )?),
        DataType::Utf8View => {
            let mut builder = StringViewBuilder::with_capacity(offsets.len() - 1);
            for i in 0..offsets.len() - 1 {
                if nulls.as_ref().is_some_and(|n| n.is_null(i)) {
                    builder.append_null();
                } else {
                    let s = std::str::from_utf8(&values[offsets[i]..offsets[i + 1]])
                        .map_err(|_| malformed("invalid UTF-8 in a text column"))?;
                    builder.append_value(s);
                }
            }
            Arc::new(builder.finish())
        }
        DataType::BinaryView => {
            let mut builder = BinaryViewBuilder::with_capacity(offsets.len() - 1);
            for i in 0..offsets.len() - 1 {
                if nulls.as_ref().is_some_and(|n| n.is_null(i)) {
                    builder.append_null();
                } else {
                    builder.append_value(&values[offsets[i]..offsets[i + 1]]);
                }
            }
            Arc::new(builder.finish())
        }
        other => {
            return Err(Error::internal(format!(
                "not a variable-length type: {other}"
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        BinaryArray, BooleanArray, Decimal128Array, Float64Array, Int32Array, StringArray,
        StringViewArray, TimestampMicrosecondArray,
    };
    use arrow::datatypes::{Field, TimeUnit};

    fn field(name: &str, dt: DataType, nullable: bool) -> FieldRef {
        Arc::new(Field::new(name, dt, nullable))
    }

    #[test]
    fn round_trip_every_kind_with_nulls() {
        let fields = vec![
            field("b", DataType::Boolean, true),
            field("i", DataType::Int32, false),
            field("f", DataType::Float64, true),
            field("s", DataType::Utf8, true),
            field("v", DataType::Utf8View, true),
            field("bin", DataType::Binary, false),
            field("d", DataType::Decimal128(10, 2), true),
            field(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
        ];
        let codec = RowCodec::new(fields.clone()).unwrap();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)])),
            Arc::new(Int32Array::from(vec![1, -2, 3])),
            Arc::new(Float64Array::from(vec![None, Some(2.5), Some(-0.0)])),
            Arc::new(StringArray::from(vec![Some("héllo"), Some(""), None])),
            Arc::new(StringViewArray::from(vec![
                None,
                Some("a string longer than twelve bytes"),
                Some("x"),
            ])),
            Arc::new(BinaryArray::from_iter_values([
                b"\0".as_ref(),
                b"",
                b"\xff\xfe",
            ])),
            Arc::new(
                Decimal128Array::from(vec![Some(12345), None, Some(-1)])
                    .with_precision_and_scale(10, 2)
                    .unwrap(),
            ),
            Arc::new(
                TimestampMicrosecondArray::from(vec![Some(1), Some(2), None]).with_timezone("UTC"),
            ),
        ];
        let rows = codec.encode_columns(&columns).unwrap();
        assert_eq!(rows.len(), 3);
        let back = codec.decode(rows.iter()).unwrap();
        assert_eq!(back, columns);
    }

    #[test]
    fn sliced_input_is_encoded_from_its_offset() {
        let codec = RowCodec::new(vec![
            field("i", DataType::Int32, true),
            field("s", DataType::Utf8, true),
        ])
        .unwrap();
        let i: ArrayRef = Arc::new(Int32Array::from(vec![Some(1), None, Some(3), Some(4)]));
        let s: ArrayRef = Arc::new(StringArray::from(vec![
            Some("a"),
            Some("b"),
            None,
            Some("d"),
        ]));
        let rows = codec
            .encode_columns(&[i.slice(1, 3), s.slice(1, 3)])
            .unwrap();
        let back = codec.decode(rows.iter()).unwrap();
        assert_eq!(back[0].as_ref(), i.slice(1, 3).as_ref());
        assert_eq!(back[1].as_ref(), s.slice(1, 3).as_ref());
    }

    #[test]
    fn not_null_columns_have_no_bitmap() {
        let codec = RowCodec::new(vec![field("v", DataType::Binary, false)]).unwrap();
        let col: ArrayRef = Arc::new(BinaryArray::from_iter_values([vec![7u8; 100]]));
        let rows = codec.encode_columns(&[col]).unwrap();
        assert_eq!(rows.get(0).len(), 1 + 100);
    }

    #[test]
    fn nested_types_are_rejected() {
        let list = DataType::List(Arc::new(Field::new("item", DataType::Int32, true)));
        let err = RowCodec::new(vec![field("l", list, true)]).unwrap_err();
        assert!(err.to_string().contains("cannot store"), "{err}");
    }

    #[test]
    fn truncated_rows_are_errors_not_panics() {
        let codec = RowCodec::new(vec![
            field("s", DataType::Utf8, true),
            field("i", DataType::Int64, false),
        ])
        .unwrap();
        let s: ArrayRef = Arc::new(StringArray::from(vec![Some("hello")]));
        let i: ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![5]));
        let rows = codec.encode_columns(&[s, i]).unwrap();
        let row = rows.get(0);
        for cut in 0..row.len() {
            assert!(codec.decode([&row[..cut]]).is_err(), "cut at {cut}");
        }
    }
}
