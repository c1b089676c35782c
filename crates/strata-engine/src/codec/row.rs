//! Strata's row encoding of the non-key columns of a table (format version 2).
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
//! | fixed-width primitives (integers, floats incl. `Float16`, decimals of every width, dates, times, timestamps, durations, intervals of every unit) | the value's little-endian bytes (Arrow's in-memory width) |
//! | `FixedSizeBinary(w)` | `w` raw bytes |
//! | `Utf8`, `LargeUtf8`, `Utf8View`, `Binary`, `LargeBinary`, `BinaryView` | LEB128 varint length, then the bytes |
//! | `List`, `LargeList`, `ListView`, `LargeListView`, `FixedSizeList(_, w)`, `Map` | *items* (below) |
//! | `Struct` with `k` fields | item bitmap of `k` bits, then each non-NULL field's value, in field order |
//! | `Dictionary(K, V)` | the value as a `V` (dictionaries are stored as their values) |
//! | `Null` | never present: a `Null` column is NULL in every row |
//!
//! *Items* (a list-like value with `m` elements): LEB128 varint `m`, an item bitmap of `m`
//! bits, then each non-NULL element's value, in order. A `Map`'s elements are its entries
//! (each a non-NULL struct of key and value); a `FixedSizeList(_, w)` always has `m = w`.
//! An *item bitmap* of `m` bits is `ceil(m/8)` bytes, bit `j` (byte `j / 8`, bit `j % 8`,
//! least significant first) set when element (or field) `j` is NULL; it is present whatever
//! the child field's nullability says. Nested values use these rules recursively, so every
//! value is self-delimiting: its length follows from its type and its bytes.
//!
//! ## Versions
//!
//! * Version 1 stored only the non-nested types (the first rows of the table above).
//! * Version 2 adds the nested types, dictionaries and `Null`. It encodes every row of a
//!   version-1 table byte for byte as version 1 did, so a WAL written by version 1 replays
//!   unchanged (the format of a row follows from the table's schema; no version is stored).
//!
//! `Union` and `RunEndEncoded` columns, dictionaries of nested values and structs without
//! fields are not storable (Parquet has no representation for them in Strata's SSTs);
//! [`RowCodec::new`] rejects them with an error naming the column and the type.

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
    /// Nested types, dictionaries and `Null` (the recursive encoding of the module docs).
    Nested,
}

/// The encoding of a non-nested type, or `None`.
fn leaf_kind(data_type: &DataType) -> Option<ValueKind> {
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

fn value_kind(data_type: &DataType) -> Option<ValueKind> {
    match leaf_kind(data_type) {
        Some(kind) => Some(kind),
        None => unstorable_part(data_type)
            .is_none()
            .then_some(ValueKind::Nested),
    }
}

/// The part of `data_type` (itself or a type nested in it) that cannot be stored, with why;
/// `None` when the whole type is storable.
fn unstorable_part(data_type: &DataType) -> Option<String> {
    match data_type {
        dt if leaf_kind(dt).is_some() => None,
        DataType::Null => None,
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::Map(f, _) => unstorable_part(f.data_type()),
        DataType::FixedSizeList(f, w) if *w >= 0 => unstorable_part(f.data_type()),
        DataType::Struct(fields) if fields.is_empty() => {
            Some("a struct without fields has no Parquet representation".into())
        }
        DataType::Struct(fields) => fields.iter().find_map(|f| unstorable_part(f.data_type())),
        DataType::Dictionary(key, value) => {
            if !key.is_dictionary_key_type() {
                Some(format!("{key} is not a dictionary key type"))
            } else if !dictionary_value_type(value) {
                Some(format!(
                    "a dictionary of {value} values (dictionaries of numbers, decimals, dates, \
                     times, timestamps, strings and binary only)"
                ))
            } else {
                None
            }
        }
        other => Some(format!("{other} has no Parquet representation")),
    }
}

/// True for the value types of a storable dictionary: the ones a decoded column of values
/// can be dictionary-encoded again from (Arrow's dictionary packing).
fn dictionary_value_type(value: &DataType) -> bool {
    matches!(
        value,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Float16
            | DataType::Float32
            | DataType::Float64
            | DataType::Decimal32(_, _)
            | DataType::Decimal64(_, _)
            | DataType::Decimal128(_, _)
            | DataType::Decimal256(_, _)
            | DataType::Date32
            | DataType::Date64
            | DataType::Time32(_)
            | DataType::Time64(_)
            | DataType::Timestamp(_, _)
            | DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::FixedSizeBinary(_)
    )
}

/// True when a column of this type can be stored by the engine as a value column (key
/// columns are further limited by the key codec).
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
                    let why = unstorable_part(f.data_type()).unwrap_or_default();
                    Error::UnsupportedType(format!(
                        "column '{}' has type {}, which Strata tables cannot store: {why}",
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
            if !field.is_nullable() && column.logical_null_count() > 0 {
                return Err(Error::SchemaMismatch(format!(
                    "column '{}' is NOT NULL but the batch holds NULLs",
                    field.name()
                )));
            }
        }
        // Nested columns are encoded value by value first: their lengths need the encoding.
        let nested: Vec<Option<ByteRows>> = self
            .kinds
            .iter()
            .zip(columns)
            .map(|(kind, column)| {
                (*kind == ValueKind::Nested)
                    .then(|| encode_nested_column(column))
                    .transpose()
            })
            .collect::<Result<_>>()?;
        // Pass 1: lengths.
        let mut lengths = vec![self.bitmap_bytes; rows];
        for ((kind, column), nested) in self.kinds.iter().zip(columns).zip(&nested) {
            add_value_lengths(*kind, column, nested.as_ref(), &mut lengths);
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
        for (((kind, column), bit), nested) in self
            .kinds
            .iter()
            .zip(columns)
            .zip(&self.null_bits)
            .zip(&nested)
        {
            if let (Some(bit), Some(nulls)) = (bit, column.logical_nulls()) {
                for (row, start) in offsets[..rows].iter().enumerate() {
                    if nulls.is_null(row) {
                        data[start + bit / 8] |= 1 << (bit % 8);
                    }
                }
            }
            write_values(*kind, column, nested.as_ref(), &mut data, &mut cursors);
        }
        debug_assert!(cursors.iter().zip(&offsets[1..]).all(|(c, e)| c == e));
        Ok(ByteRows::from_parts(data, offsets))
    }

    /// Decodes encoded rows back into the value columns (in storage order).
    pub fn decode<'a>(&self, rows: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<ArrayRef>> {
        let rows: Vec<&[u8]> = rows.into_iter().collect();
        let mut builders: Vec<ColumnBuilder> = self
            .fields
            .iter()
            .map(|f| ColumnBuilder::for_type(f.data_type(), rows.len()))
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

fn add_value_lengths(
    kind: ValueKind,
    column: &ArrayRef,
    nested: Option<&ByteRows>,
    lengths: &mut [usize],
) {
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
        ValueKind::Nested => {
            let nested = nested.expect("nested columns are pre-encoded");
            lengths
                .iter_mut()
                .enumerate()
                .for_each(|(i, l)| *l += nested.get(i).len());
        }
    }
}

fn write_values(
    kind: ValueKind,
    column: &ArrayRef,
    nested: Option<&ByteRows>,
    data: &mut [u8],
    cursors: &mut [usize],
) {
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
        ValueKind::Nested => {
            let nested = nested.expect("nested columns are pre-encoded");
            for (i, cursor) in cursors.iter_mut().enumerate() {
                let bytes = nested.get(i);
                data[*cursor..*cursor + bytes.len()].copy_from_slice(bytes);
                *cursor += bytes.len();
            }
        }
    }
}

/// Encodes every non-NULL value of a nested column (NULL rows get no bytes).
fn encode_nested_column(column: &ArrayRef) -> Result<ByteRows> {
    let writer = NestedWriter::new(column)?;
    let mut data = Vec::new();
    let mut offsets = Vec::with_capacity(column.len() + 1);
    offsets.push(0);
    for i in 0..column.len() {
        if writer.is_valid(i) {
            writer.encode(i, &mut data);
        }
        offsets.push(data.len());
    }
    Ok(ByteRows::from_parts(data, offsets))
}

/// Writes single values of one array (of any storable type) in the row encoding, with the
/// logical NULLs and child writers of nested arrays computed once.
struct NestedWriter {
    nulls: Option<NullBuffer>,
    node: WriterNode,
}

enum WriterNode {
    Leaf {
        kind: ValueKind,
        array: ArrayRef,
        /// The value bytes of a fixed-width array, from its first value.
        fixed: Option<Buffer>,
    },
    /// Lists, list views, fixed-size lists and maps: the element range of each value.
    Items {
        ranges: Vec<(usize, usize)>,
        child: Box<NestedWriter>,
    },
    Struct(Vec<NestedWriter>),
    /// A dictionary: the value index of each row and the values.
    Dictionary {
        keys: Vec<usize>,
        values: Box<NestedWriter>,
    },
    Null,
}

impl NestedWriter {
    fn new(array: &ArrayRef) -> Result<Self> {
        let nulls = array.logical_nulls();
        let items = |ranges: Vec<(usize, usize)>, values: &ArrayRef| -> Result<WriterNode> {
            Ok(WriterNode::Items {
                ranges,
                child: Box::new(NestedWriter::new(values)?),
            })
        };
        fn offset_ranges<O: arrow::array::OffsetSizeTrait>(
            offsets: &OffsetBuffer<O>,
        ) -> Vec<(usize, usize)> {
            offsets
                .windows(2)
                .map(|w| (w[0].as_usize(), w[1].as_usize()))
                .collect()
        }
        fn view_ranges<O: arrow::array::OffsetSizeTrait>(
            array: &arrow::array::GenericListViewArray<O>,
        ) -> Vec<(usize, usize)> {
            array
                .offsets()
                .iter()
                .zip(array.sizes().iter())
                .map(|(o, s)| (o.as_usize(), o.as_usize() + s.as_usize()))
                .collect()
        }
        let node = match array.data_type() {
            DataType::Null => WriterNode::Null,
            DataType::List(_) => {
                let list = array.as_list::<i32>();
                items(offset_ranges(list.offsets()), list.values())?
            }
            DataType::LargeList(_) => {
                let list = array.as_list::<i64>();
                items(offset_ranges(list.offsets()), list.values())?
            }
            DataType::ListView(_) => {
                let list = array.as_list_view::<i32>();
                items(view_ranges(list), list.values())?
            }
            DataType::LargeListView(_) => {
                let list = array.as_list_view::<i64>();
                items(view_ranges(list), list.values())?
            }
            DataType::FixedSizeList(_, w) => {
                let list = array.as_fixed_size_list();
                let w = *w as usize;
                let ranges = (0..list.len())
                    .map(|i| {
                        let start = list.value_offset(i) as usize;
                        (start, start + w)
                    })
                    .collect();
                items(ranges, list.values())?
            }
            DataType::Map(_, _) => {
                let map = array.as_map();
                let entries: ArrayRef = Arc::new(map.entries().clone());
                items(offset_ranges(map.offsets()), &entries)?
            }
            DataType::Struct(_) => WriterNode::Struct(
                array
                    .as_struct()
                    .columns()
                    .iter()
                    .map(NestedWriter::new)
                    .collect::<Result<_>>()?,
            ),
            DataType::Dictionary(_, _) => {
                let dictionary = array.as_any_dictionary();
                // Without values every row is NULL (and `normalized_keys` would panic).
                let keys = if dictionary.values().is_empty() {
                    vec![0; array.len()]
                } else {
                    dictionary.normalized_keys()
                };
                WriterNode::Dictionary {
                    keys,
                    values: Box::new(NestedWriter::new(dictionary.values())?),
                }
            }
            dt => {
                let kind = leaf_kind(dt).ok_or_else(|| {
                    Error::UnsupportedType(format!("cannot encode a value of type {dt}"))
                })?;
                let fixed = match kind {
                    ValueKind::Fixed(width) => {
                        let data = array.to_data();
                        Some(data.buffers()[0].slice(data.offset() * width))
                    }
                    _ => None,
                };
                WriterNode::Leaf {
                    kind,
                    array: Arc::clone(array),
                    fixed,
                }
            }
        };
        Ok(NestedWriter { nulls, node })
    }

    fn is_valid(&self, i: usize) -> bool {
        self.nulls.as_ref().is_none_or(|n| n.is_valid(i))
    }

    /// Appends the encoding of value `i`, which is not NULL.
    fn encode(&self, i: usize, out: &mut Vec<u8>) {
        debug_assert!(self.is_valid(i));
        match &self.node {
            WriterNode::Leaf { kind, array, fixed } => match kind {
                ValueKind::Bool => out.push(array.as_boolean().value(i) as u8),
                ValueKind::Fixed(width) => {
                    let bytes = fixed.as_ref().expect("fixed-width values");
                    out.extend_from_slice(&bytes[i * width..(i + 1) * width]);
                }
                ValueKind::FixedBinary(_) => {
                    out.extend_from_slice(array.as_fixed_size_binary().value(i))
                }
                ValueKind::Var => {
                    let bytes = var_bytes(array, i);
                    put_varint(out, bytes.len() as u64);
                    out.extend_from_slice(bytes);
                }
                ValueKind::Nested => unreachable!("a leaf is not nested"),
            },
            WriterNode::Items { ranges, child } => {
                let (start, end) = ranges[i];
                put_varint(out, (end - start) as u64);
                child.encode_items(start..end, out);
            }
            WriterNode::Struct(children) => {
                let bitmap_at = out.len();
                out.resize(bitmap_at + children.len().div_ceil(8), 0);
                for (j, child) in children.iter().enumerate() {
                    if child.is_valid(i) {
                        child.encode(i, out);
                    } else {
                        out[bitmap_at + j / 8] |= 1 << (j % 8);
                    }
                }
            }
            WriterNode::Dictionary { keys, values } => values.encode(keys[i], out),
            WriterNode::Null => unreachable!("a Null value is always NULL"),
        }
    }

    /// Appends the item bitmap of values `range`, then each non-NULL value.
    fn encode_items(&self, range: std::ops::Range<usize>, out: &mut Vec<u8>) {
        let bitmap_at = out.len();
        out.resize(bitmap_at + range.len().div_ceil(8), 0);
        for (j, i) in range.enumerate() {
            if self.is_valid(i) {
                self.encode(i, out);
            } else {
                out[bitmap_at + j / 8] |= 1 << (j % 8);
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
    /// Lists, list views, fixed-size lists (`fixed`: their size) and maps.
    Items {
        fixed: Option<usize>,
        offsets: Vec<usize>,
        validity: BooleanBufferBuilder,
        child: Box<ColumnBuilder>,
    },
    Struct {
        len: usize,
        validity: BooleanBufferBuilder,
        children: Vec<ColumnBuilder>,
    },
    /// A dictionary, decoded as its values and dictionary-encoded when finished.
    Dictionary(Box<ColumnBuilder>),
    Null {
        len: usize,
    },
}

impl ColumnBuilder {
    /// A builder for values of `data_type` (a storable type), sized for `rows` rows.
    fn for_type(data_type: &DataType, rows: usize) -> Self {
        let items = |fixed: Option<usize>, child: &DataType| {
            let mut offsets = Vec::with_capacity(rows + 1);
            offsets.push(0);
            ColumnBuilder::Items {
                fixed,
                offsets,
                validity: BooleanBufferBuilder::new(rows),
                child: Box::new(ColumnBuilder::for_type(child, 0)),
            }
        };
        match data_type {
            DataType::Null => ColumnBuilder::Null { len: 0 },
            DataType::List(f)
            | DataType::LargeList(f)
            | DataType::ListView(f)
            | DataType::LargeListView(f)
            | DataType::Map(f, _) => items(None, f.data_type()),
            DataType::FixedSizeList(f, w) => items(Some(*w as usize), f.data_type()),
            DataType::Struct(fields) => ColumnBuilder::Struct {
                len: 0,
                validity: BooleanBufferBuilder::new(rows),
                children: fields
                    .iter()
                    .map(|f| ColumnBuilder::for_type(f.data_type(), rows))
                    .collect(),
            },
            DataType::Dictionary(_, value) => {
                ColumnBuilder::Dictionary(Box::new(ColumnBuilder::for_type(value, rows)))
            }
            dt => ColumnBuilder::new(leaf_kind(dt).unwrap_or(ValueKind::Var), rows),
        }
    }

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
            ValueKind::Var | ValueKind::Nested => {
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
            ColumnBuilder::Items {
                fixed,
                offsets,
                validity,
                child,
            } => {
                validity.append(!is_null);
                let mut items = 0;
                if !is_null {
                    items =
                        get_varint(row, pos).ok_or_else(|| malformed("bad item count"))? as usize;
                    if fixed.is_some_and(|w| w != items) {
                        return Err(malformed("fixed-size list of the wrong size"));
                    }
                    let bitmap = take(pos, items.div_ceil(8))?;
                    for j in 0..items {
                        child.push(row, pos, bitmap[j / 8] & (1 << (j % 8)) != 0)?;
                    }
                } else if let Some(w) = *fixed {
                    // A NULL fixed-size list still has its `w` (NULL) elements.
                    items = w;
                    for _ in 0..w {
                        child.push(row, pos, true)?;
                    }
                }
                offsets.push(offsets.last().copied().unwrap_or(0) + items);
            }
            ColumnBuilder::Struct {
                len,
                validity,
                children,
            } => {
                validity.append(!is_null);
                *len += 1;
                if is_null {
                    for child in children.iter_mut() {
                        child.push(row, pos, true)?;
                    }
                } else {
                    let bitmap = take(pos, children.len().div_ceil(8))?;
                    for (j, child) in children.iter_mut().enumerate() {
                        child.push(row, pos, bitmap[j / 8] & (1 << (j % 8)) != 0)?;
                    }
                }
            }
            ColumnBuilder::Dictionary(values) => values.push(row, pos, is_null)?,
            ColumnBuilder::Null { len } => {
                if !is_null {
                    return Err(malformed("a non-NULL value in a Null column"));
                }
                *len += 1;
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
            ColumnBuilder::Items {
                offsets,
                validity,
                child,
                ..
            } => build_items(data_type, offsets, nulls(validity), *child),
            ColumnBuilder::Struct {
                len,
                validity,
                children,
            } => {
                let DataType::Struct(fields) = data_type else {
                    return Err(Error::internal(format!("not a struct type: {data_type}")));
                };
                let columns = children
                    .into_iter()
                    .zip(fields.iter())
                    .map(|(c, f)| c.finish(f.data_type()))
                    .collect::<Result<Vec<_>>>()?;
                Ok(Arc::new(arrow::array::StructArray::try_new_with_length(
                    fields.clone(),
                    columns,
                    nulls(validity),
                    len,
                )?))
            }
            ColumnBuilder::Dictionary(values) => {
                let DataType::Dictionary(_, value_type) = data_type else {
                    return Err(Error::internal(format!(
                        "not a dictionary type: {data_type}"
                    )));
                };
                let values = values.finish(value_type)?;
                Ok(arrow::compute::cast(&values, data_type)?)
            }
            ColumnBuilder::Null { len } => Ok(Arc::new(arrow::array::NullArray::new(len))),
        }
    }
}

/// Builds a list-like array of `data_type` from element offsets, NULLs and its elements.
fn build_items(
    data_type: &DataType,
    offsets: Vec<usize>,
    nulls: Option<NullBuffer>,
    child: ColumnBuilder,
) -> Result<ArrayRef> {
    use arrow::array::{FixedSizeListArray, GenericListArray, GenericListViewArray, MapArray};
    use arrow::buffer::ScalarBuffer;
    fn offsets_of<O: arrow::array::OffsetSizeTrait>(offsets: &[usize]) -> Result<Vec<O>> {
        offsets
            .iter()
            .map(|o| {
                O::from_usize(*o).ok_or_else(|| {
                    Error::LimitExceeded("list data too large for its offset type".into())
                })
            })
            .collect()
    }
    fn view<O: arrow::array::OffsetSizeTrait>(
        field: &FieldRef,
        offsets: &[usize],
        values: ArrayRef,
        nulls: Option<NullBuffer>,
    ) -> Result<ArrayRef> {
        let all = offsets_of::<O>(offsets)?;
        let starts = ScalarBuffer::from(all[..all.len() - 1].to_vec());
        let sizes = ScalarBuffer::from(all.windows(2).map(|w| w[1] - w[0]).collect::<Vec<O>>());
        Ok(Arc::new(GenericListViewArray::<O>::try_new(
            Arc::clone(field),
            starts,
            sizes,
            values,
            nulls,
        )?))
    }
    let len = offsets.len() - 1;
    Ok(match data_type {
        DataType::List(f) => Arc::new(GenericListArray::<i32>::try_new(
            Arc::clone(f),
            OffsetBuffer::new(offsets_of(&offsets)?.into()),
            child.finish(f.data_type())?,
            nulls,
        )?),
        DataType::LargeList(f) => Arc::new(GenericListArray::<i64>::try_new(
            Arc::clone(f),
            OffsetBuffer::new(offsets_of(&offsets)?.into()),
            child.finish(f.data_type())?,
            nulls,
        )?),
        DataType::ListView(f) => view::<i32>(f, &offsets, child.finish(f.data_type())?, nulls)?,
        DataType::LargeListView(f) => {
            view::<i64>(f, &offsets, child.finish(f.data_type())?, nulls)?
        }
        DataType::FixedSizeList(f, w) => Arc::new(FixedSizeListArray::try_new_with_length(
            Arc::clone(f),
            *w,
            child.finish(f.data_type())?,
            nulls,
            len,
        )?),
        DataType::Map(f, ordered) => {
            let entries = child.finish(f.data_type())?;
            Arc::new(MapArray::try_new(
                Arc::clone(f),
                OffsetBuffer::new(offsets_of(&offsets)?.into()),
                entries.as_struct().clone(),
                nulls,
                *ordered,
            )?)
        }
        other => {
            return Err(Error::internal(format!("not a list-like type: {other}")));
        }
    })
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
pub(crate) mod tests {
    use super::*;
    use arrow::array::{
        BinaryArray, BooleanArray, Decimal128Array, Float64Array, Int32Array, StringArray,
        StringViewArray, TimestampMicrosecondArray,
    };
    use arrow::datatypes::{Field, TimeUnit};

    pub(crate) fn field(name: &str, dt: DataType, nullable: bool) -> FieldRef {
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

    /// Nested values with NULLs at every level, every list-like kind, maps, dictionaries,
    /// `Null` and the interval units.
    pub(crate) fn nested_columns() -> (Vec<FieldRef>, Vec<ArrayRef>) {
        use arrow::array::{
            DictionaryArray, FixedSizeListBuilder, Int32Builder, IntervalMonthDayNanoArray,
            ListBuilder, MapBuilder, NullArray, StringBuilder, StructArray,
        };
        use arrow::datatypes::{Int8Type, IntervalMonthDayNano};
        // list<int32>: [1, NULL, 3], NULL, [], [NULL]
        let mut list = ListBuilder::new(Int32Builder::new());
        list.append_value([Some(1), None, Some(3)]);
        list.append_null();
        list.append_value([] as [Option<i32>; 0]);
        list.append_value([None]);
        let list: ArrayRef = Arc::new(list.finish());
        // struct<a: int32, s: utf8, l: list<int32>>, NULL row 1, NULL fields in row 2
        let a: ArrayRef = Arc::new(Int32Array::from(vec![Some(1), None, None, Some(4)]));
        let st: ArrayRef = Arc::new(StringArray::from(vec![Some("x"), None, None, Some("")]));
        let fields = arrow::datatypes::Fields::from(vec![
            Field::new("a", DataType::Int32, true),
            Field::new("s", DataType::Utf8, true),
            Field::new("l", list.data_type().clone(), true),
        ]);
        let strukt: ArrayRef = Arc::new(
            StructArray::try_new(
                fields,
                vec![a, st, Arc::clone(&list)],
                Some(NullBuffer::from(vec![true, false, true, true])),
            )
            .unwrap(),
        );
        // map<utf8, int32>
        let mut map = MapBuilder::new(None, StringBuilder::new(), Int32Builder::new());
        map.keys().append_value("k1");
        map.values().append_value(1);
        map.keys().append_value("k2");
        map.values().append_null();
        map.append(true).unwrap();
        map.append(false).unwrap();
        map.append(true).unwrap();
        map.keys().append_value("k3");
        map.values().append_value(3);
        map.append(true).unwrap();
        let map: ArrayRef = Arc::new(map.finish());
        // fixed_size_list<int32, 2>
        let mut fixed = FixedSizeListBuilder::new(Int32Builder::new(), 2);
        for row in [Some([Some(1), None]), None, Some([Some(5), Some(6)]), None] {
            match row {
                Some(values) => {
                    values.iter().for_each(|v| fixed.values().append_option(*v));
                    fixed.append(true);
                }
                None => {
                    fixed.values().append_nulls(2);
                    fixed.append(false);
                }
            }
        }
        let fixed: ArrayRef = Arc::new(fixed.finish());
        let dictionary: ArrayRef = Arc::new(
            vec![Some("red"), None, Some("red"), Some("blue")]
                .into_iter()
                .collect::<DictionaryArray<Int8Type>>(),
        );
        let interval: ArrayRef = Arc::new(IntervalMonthDayNanoArray::from(vec![
            Some(IntervalMonthDayNano::new(1, 2, 3)),
            None,
            Some(IntervalMonthDayNano::new(-1, 0, i64::MAX)),
            Some(IntervalMonthDayNano::new(0, 0, 0)),
        ]));
        let large_list: ArrayRef = arrow::compute::cast(
            &list,
            &DataType::LargeList(Arc::new(Field::new("item", DataType::Int32, true))),
        )
        .unwrap();
        let list_view: ArrayRef = arrow::compute::cast(
            &list,
            &DataType::ListView(Arc::new(Field::new("item", DataType::Int32, true))),
        )
        .unwrap();
        let null: ArrayRef = Arc::new(NullArray::new(4));
        let columns = vec![
            list, strukt, map, fixed, dictionary, interval, large_list, list_view, null,
        ];
        let names = [
            "list", "st", "map", "fixed", "dict", "iv", "large", "view", "nothing",
        ];
        let fields = names
            .iter()
            .zip(&columns)
            .map(|(n, c)| field(n, c.data_type().clone(), true))
            .collect();
        (fields, columns)
    }

    /// Four rows of every non-nested type family DataFusion produces, with NULLs.
    pub(crate) fn leaf_columns() -> (Vec<FieldRef>, Vec<ArrayRef>) {
        use arrow::array::{
            BinaryViewArray, Date64Array, Decimal32Array, Decimal64Array, Decimal256Array,
            DurationNanosecondArray, DurationSecondArray, FixedSizeBinaryArray,
            IntervalDayTimeArray, IntervalYearMonthArray, LargeStringArray, Time32MillisecondArray,
            Time64NanosecondArray, TimestampNanosecondArray, UInt64Array,
        };
        use arrow::datatypes::{IntervalDayTime, i256};
        let columns: Vec<ArrayRef> = vec![
            arrow::compute::cast(
                &arrow::array::Float32Array::from(vec![
                    Some(1.5),
                    None,
                    Some(f32::NAN),
                    Some(-0.0),
                ]),
                &DataType::Float16,
            )
            .unwrap(),
            Arc::new(
                Decimal32Array::from(vec![Some(12345), None, Some(-1), Some(0)])
                    .with_precision_and_scale(9, 2)
                    .unwrap(),
            ),
            Arc::new(
                Decimal64Array::from(vec![Some(1), Some(-99), None, Some(7)])
                    .with_precision_and_scale(18, 3)
                    .unwrap(),
            ),
            Arc::new(
                Decimal128Array::from(vec![Some(i128::MAX / 7), None, Some(-5), Some(0)])
                    .with_precision_and_scale(38, 10)
                    .unwrap(),
            ),
            Arc::new(
                Decimal256Array::from(vec![Some(i256::from_i128(-3)), None, None, Some(i256::ONE)])
                    .with_precision_and_scale(76, 4)
                    .unwrap(),
            ),
            Arc::new(DurationSecondArray::from(vec![
                Some(-1),
                None,
                Some(3),
                Some(4),
            ])),
            Arc::new(DurationNanosecondArray::from(vec![
                Some(i64::MIN),
                Some(0),
                None,
                Some(9),
            ])),
            Arc::new(Time32MillisecondArray::from(vec![
                Some(1000),
                None,
                Some(0),
                Some(86_399_999),
            ])),
            Arc::new(Time64NanosecondArray::from(vec![
                Some(1),
                Some(2),
                None,
                Some(3),
            ])),
            Arc::new(
                TimestampNanosecondArray::from(vec![Some(-1), None, Some(0), Some(1 << 60)])
                    .with_timezone("+05:30"),
            ),
            Arc::new(TimestampMicrosecondArray::from(vec![
                Some(5),
                Some(6),
                None,
                None,
            ])),
            Arc::new(Date64Array::from(vec![
                Some(86_400_000),
                None,
                Some(0),
                Some(-86_400_000),
            ])),
            Arc::new(IntervalYearMonthArray::from(vec![
                Some(13),
                None,
                Some(-2),
                Some(0),
            ])),
            Arc::new(IntervalDayTimeArray::from(vec![
                Some(IntervalDayTime::new(1, 2)),
                None,
                Some(IntervalDayTime::new(-3, 4)),
                Some(IntervalDayTime::new(0, 0)),
            ])),
            Arc::new(StringViewArray::from(vec![
                Some("a view longer than twelve bytes"),
                None,
                Some(""),
                Some("short"),
            ])),
            Arc::new(BinaryViewArray::from(vec![
                Some(b"\0\x01".as_ref()),
                None,
                Some(b"".as_ref()),
                Some(b"binary view longer than twelve".as_ref()),
            ])),
            Arc::new(LargeStringArray::from(vec![
                Some("large"),
                None,
                Some(""),
                Some("z"),
            ])),
            Arc::new(
                FixedSizeBinaryArray::try_from_sparse_iter_with_size(
                    vec![Some([1u8, 2]), None, Some([0, 0]), Some([255, 255])].into_iter(),
                    2,
                )
                .unwrap(),
            ),
            Arc::new(UInt64Array::from(vec![
                Some(u64::MAX),
                None,
                Some(0),
                Some(1),
            ])),
            Arc::new(BooleanArray::from(vec![
                Some(true),
                Some(false),
                None,
                Some(true),
            ])),
        ];
        let fields = columns
            .iter()
            .enumerate()
            .map(|(i, c)| field(&format!("leaf{i}"), c.data_type().clone(), true))
            .collect();
        (fields, columns)
    }

    #[test]
    fn nested_values_round_trip_with_nulls_at_every_level() {
        let (fields, columns) = nested_columns();
        let codec = RowCodec::new(fields).unwrap();
        let rows = codec.encode_columns(&columns).unwrap();
        let back = codec.decode(rows.iter()).unwrap();
        for (b, c) in back.iter().zip(&columns) {
            assert_eq!(b.as_ref(), c.as_ref(), "{}", c.data_type());
        }
        let (leaf_fields, leaves) = leaf_columns();
        let leaf_codec = RowCodec::new(leaf_fields).unwrap();
        let back = leaf_codec
            .decode(leaf_codec.encode_columns(&leaves).unwrap().iter())
            .unwrap();
        for (b, c) in back.iter().zip(&leaves) {
            assert_eq!(b.to_data(), c.to_data(), "{}", c.data_type());
        }
        // Sliced input, and every truncation an error rather than a panic.
        let sliced: Vec<ArrayRef> = columns.iter().map(|c| c.slice(1, 3)).collect();
        let rows = codec.encode_columns(&sliced).unwrap();
        let back = codec.decode(rows.iter()).unwrap();
        for (b, c) in back.iter().zip(&sliced) {
            assert_eq!(b.as_ref(), c.as_ref(), "{}", c.data_type());
        }
        let row = rows.get(2);
        for cut in 0..row.len() {
            assert!(codec.decode([&row[..cut]]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn dictionaries_of_every_accepted_value_type_round_trip() {
        use arrow::datatypes::Int16Type;
        let (fields, leaves) = leaf_columns();
        let mut accepted = 0;
        for (field, values) in fields.iter().zip(&leaves) {
            let dt = DataType::Dictionary(
                Box::new(DataType::Int16),
                Box::new(values.data_type().clone()),
            );
            let codec = match RowCodec::new(vec![
                field.as_ref().clone().with_data_type(dt.clone()).into(),
            ]) {
                Ok(codec) => codec,
                Err(e) => {
                    assert!(!dictionary_value_type(values.data_type()), "{dt}: {e}");
                    assert!(e.to_string().contains("dictionary"), "{e}");
                    continue;
                }
            };
            accepted += 1;
            let column = arrow::compute::cast(values, &dt).unwrap();
            assert!(column.as_dictionary_opt::<Int16Type>().is_some());
            let rows = codec.encode_columns(std::slice::from_ref(&column)).unwrap();
            let back = codec.decode(rows.iter()).unwrap();
            let logical = |a: &ArrayRef| {
                arrow::compute::cast(a, values.data_type())
                    .unwrap()
                    .to_data()
            };
            assert_eq!(back[0].data_type(), &dt);
            assert_eq!(logical(&back[0]), logical(&column), "{dt}");
        }
        assert!(accepted >= 15, "{accepted}");
        // An all-NULL dictionary may have no values at all.
        let dt = DataType::Dictionary(Box::new(DataType::Int16), Box::new(DataType::Utf8));
        let codec = RowCodec::new(vec![field("d", dt.clone(), true)]).unwrap();
        let empty = arrow::array::new_null_array(&dt, 3);
        let rows = codec.encode_columns(&[empty]).unwrap();
        assert_eq!(codec.decode(rows.iter()).unwrap()[0].null_count(), 3);
        let booleans = DataType::Dictionary(Box::new(DataType::Int8), Box::new(DataType::Boolean));
        assert!(RowCodec::new(vec![field("b", booleans, true)]).is_err());
    }

    #[test]
    fn version_1_rows_are_unchanged() {
        // An Int32 and a Utf8 column: bitmap, 4 LE bytes, varint length and the bytes.
        let codec = RowCodec::new(vec![
            field("i", DataType::Int32, true),
            field("s", DataType::Utf8, true),
        ])
        .unwrap();
        let i: ArrayRef = Arc::new(Int32Array::from(vec![Some(7), None]));
        let s: ArrayRef = Arc::new(StringArray::from(vec![Some("ab"), Some("c")]));
        let rows = codec.encode_columns(&[i, s]).unwrap();
        assert_eq!(rows.get(0), &[0, 7, 0, 0, 0, 2, b'a', b'b']);
        assert_eq!(rows.get(1), &[1, 1, b'c']);
    }

    #[test]
    fn nested_encoding_is_as_documented() {
        // list<int32> [5, NULL]: count 2, item bitmap 0b10, then 5 as 4 LE bytes.
        let mut list = arrow::array::ListBuilder::new(arrow::array::Int32Builder::new());
        list.append_value([Some(5), None]);
        let list: ArrayRef = Arc::new(list.finish());
        let codec = RowCodec::new(vec![field("l", list.data_type().clone(), false)]).unwrap();
        let rows = codec.encode_columns(&[list]).unwrap();
        assert_eq!(rows.get(0), &[2, 0b10, 5, 0, 0, 0]);
    }

    #[test]
    fn unstorable_types_are_rejected_naming_column_and_type() {
        use arrow::datatypes::{UnionFields, UnionMode};
        let union = DataType::Union(
            UnionFields::try_new(vec![0], vec![Field::new("a", DataType::Int32, true)]).unwrap(),
            UnionMode::Sparse,
        );
        let list_of_union = DataType::List(Arc::new(Field::new("item", union.clone(), true)));
        for dt in [union, list_of_union] {
            let err = RowCodec::new(vec![field("u", dt, true)]).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("column 'u'"), "{text}");
            assert!(text.contains("cannot store"), "{text}");
            assert!(text.contains("Union"), "{text}");
        }
        let run_ends = DataType::RunEndEncoded(
            Arc::new(Field::new("run_ends", DataType::Int32, false)),
            Arc::new(Field::new("values", DataType::Utf8, true)),
        );
        assert!(RowCodec::new(vec![field("r", run_ends, true)]).is_err());
        assert!(is_storable(&DataType::Null));
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
