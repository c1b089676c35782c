//! Strata's memcomparable primary-key encoding (format version 1).
//!
//! Every structure in the engine (memtables, merges, key ranges in SST metadata and the manifest)
//! compares primary keys as plain byte strings. This module turns the typed key columns of a
//! table into such bytes and back. The encoding is persisted (WAL entries, SST metadata, manifest
//! key ranges), so it is Strata's own, versioned and documented here; it never depends on the
//! in-memory format of another library.
//!
//! ## Layout
//!
//! A key is the concatenation of its columns' encodings, in the declared primary-key order
//! (which may differ from the column order of the table). Key columns are never NULL, so there is
//! no null marker.
//!
//! | Arrow type | bytes | encoding |
//! |---|---|---|
//! | `Boolean` | 1 | `0x00` false, `0x01` true |
//! | `Int8/16/32/64`, `Date32/64`, `Time32/64`, `Timestamp(_, _)`, `Duration(_)` | 1/2/4/8 | big-endian two's complement with the sign bit flipped |
//! | `UInt8/16/32/64` | 1/2/4/8 | big-endian |
//! | `Float32/64` | 4/8 | IEEE bits big-endian; negative: all bits flipped, else sign bit flipped (total order: -NaN < -inf < -0 < +0 < +inf < NaN) |
//! | `Decimal128/256` | 16/32 | big-endian two's complement with the sign bit flipped |
//! | `FixedSizeBinary(n)` | n | raw |
//! | `Utf8`, `LargeUtf8`, `Utf8View`, `Binary`, `LargeBinary`, `BinaryView`, not last | var | every `0x00` written as `0x00 0xFF`, then the terminator `0x00 0x00` |
//! | the same types as the **last** key column | var | raw bytes, no escaping, no terminator |
//!
//! The escape makes a shorter string sort before any extension of it, also when more columns
//! follow; the last column needs no terminator because nothing follows it, which keeps
//! single-column binary keys (the key-value store) byte-for-byte equal to the user's key.
//! Timestamps compare by their stored integer; the time zone is metadata and does not take part.
//!
//! ## Invariants
//!
//! For two keys `a`, `b` of the same table: `encode(a) < encode(b)` (bytewise) exactly when `a`
//! sorts before `b` column by column with each column in its natural ascending order, and
//! `decode(encode(a)) == a`. A prefix of the key columns encodes to a byte prefix of the full key.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BinaryViewArray, BooleanArray, FixedSizeBinaryArray,
    LargeBinaryArray, LargeStringArray, PrimitiveArray, StringArray, StringViewArray,
};
use arrow::buffer::ScalarBuffer;
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Date32Type, Date64Type, Decimal128Type, Decimal256Type,
    DurationMicrosecondType, DurationMillisecondType, DurationNanosecondType, DurationSecondType,
    FieldRef, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    Time32MillisecondType, Time32SecondType, Time64MicrosecondType, Time64NanosecondType, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type, i256,
};

use super::ByteRows;
use crate::error::{Error, Result};

/// Version of the key encoding written into SST metadata and the manifest.
pub const KEY_FORMAT_VERSION: u32 = 1;

/// One typed primary-key value, used to address rows from the Rust API (`get`, `delete`,
/// key ranges). Values are converted to the key column's type when encoded; a value that does
/// not fit (an out-of-range integer, text for an integer column) is an error.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyValue {
    /// A boolean.
    Boolean(bool),
    /// A signed integer; also the raw value of date, time, timestamp and duration columns
    /// (in the column's own unit) and the unscaled value of a decimal column.
    Int(i128),
    /// An unsigned integer.
    UInt(u64),
    /// A floating-point number.
    Float(f64),
    /// Text (for string columns; also accepted for binary columns as its UTF-8 bytes).
    Utf8(String),
    /// Bytes (for binary and fixed-size binary columns).
    Binary(Vec<u8>),
}

macro_rules! key_value_from {
    ($($t:ty => $variant:ident),* $(,)?) => {
        $(impl From<$t> for KeyValue {
            fn from(value: $t) -> Self {
                KeyValue::$variant(value.into())
            }
        })*
    };
}
key_value_from!(
    i8 => Int, i16 => Int, i32 => Int, i64 => Int, i128 => Int,
    u8 => UInt, u16 => UInt, u32 => UInt, u64 => UInt,
    f32 => Float, f64 => Float, bool => Boolean,
    String => Utf8, Vec<u8> => Binary,
);

impl From<&str> for KeyValue {
    fn from(value: &str) -> Self {
        KeyValue::Utf8(value.to_string())
    }
}

impl From<&[u8]> for KeyValue {
    fn from(value: &[u8]) -> Self {
        KeyValue::Binary(value.to_vec())
    }
}

/// How one key column is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyColumnKind {
    Bool,
    Signed(usize),
    Unsigned(usize),
    Float32,
    Float64,
    Decimal128,
    Decimal256,
    FixedBinary(usize),
    Var { last: bool },
}

/// Encodes and decodes the primary key of one table (see the module docs for the format).
#[derive(Debug, Clone)]
pub struct KeyCodec {
    fields: Vec<FieldRef>,
    kinds: Vec<KeyColumnKind>,
}

impl KeyCodec {
    /// A codec for the key columns `fields`, in primary-key order.
    ///
    /// Fails with [`Error::UnsupportedType`] for a type that cannot be a key (floats are
    /// allowed and ordered totally; nested, dictionary and NULL types are not).
    pub fn new(fields: Vec<FieldRef>) -> Result<Self> {
        if fields.is_empty() {
            return Err(Error::InvalidArgument(
                "a key codec needs at least one column".into(),
            ));
        }
        let count = fields.len();
        let kinds = fields
            .iter()
            .enumerate()
            .map(|(i, f)| {
                key_kind(f.data_type(), i + 1 == count).ok_or_else(|| {
                    Error::UnsupportedType(format!(
                        "column '{}' of type {} cannot be part of a primary key",
                        f.name(),
                        f.data_type()
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(KeyCodec { fields, kinds })
    }

    /// Number of key columns.
    pub fn arity(&self) -> usize {
        self.fields.len()
    }

    /// The key fields in key order.
    pub fn fields(&self) -> &[FieldRef] {
        &self.fields
    }

    /// Encodes the key columns of a batch (in key order). A NULL anywhere is
    /// [`Error::NullKey`].
    pub fn encode_columns(&self, columns: &[ArrayRef]) -> Result<ByteRows> {
        debug_assert_eq!(columns.len(), self.arity());
        let rows = columns.first().map_or(0, |c| c.len());
        for (field, column) in self.fields.iter().zip(columns) {
            debug_assert_eq!(column.len(), rows);
            if column.null_count() > 0 {
                let row = (0..column.len()).find(|&r| column.is_null(r)).unwrap_or(0);
                return Err(Error::NullKey {
                    column: field.name().clone(),
                    row,
                });
            }
            if column.data_type() != field.data_type() {
                return Err(Error::SchemaMismatch(format!(
                    "key column '{}' has type {}, expected {}",
                    field.name(),
                    column.data_type(),
                    field.data_type()
                )));
            }
        }
        // Pass 1: the length of every key.
        let mut lengths = vec![0usize; rows];
        for (kind, column) in self.kinds.iter().zip(columns) {
            add_lengths(*kind, column, &mut lengths);
        }
        let mut offsets = Vec::with_capacity(rows + 1);
        let mut total = 0usize;
        offsets.push(0);
        for len in &lengths {
            total += len;
            offsets.push(total);
        }
        // Pass 2: every column writes its part of every key at that key's cursor.
        let mut data = vec![0u8; total];
        let mut cursors: Vec<usize> = offsets[..rows].to_vec();
        for (kind, column) in self.kinds.iter().zip(columns) {
            write_column(*kind, column, &mut data, &mut cursors);
        }
        debug_assert!(cursors.iter().zip(&offsets[1..]).all(|(c, end)| c == end));
        Ok(ByteRows::from_parts(data, offsets))
    }

    /// Encodes a full key, or a prefix of it (fewer values than key columns), from typed
    /// values.
    pub fn encode_values(&self, values: &[KeyValue]) -> Result<Vec<u8>> {
        if values.len() > self.arity() {
            return Err(Error::InvalidArgument(format!(
                "key has {} values but the primary key has {} columns",
                values.len(),
                self.arity()
            )));
        }
        let mut out = Vec::new();
        for ((field, kind), value) in self.fields.iter().zip(&self.kinds).zip(values) {
            encode_value(field, *kind, value, &mut out)?;
        }
        Ok(out)
    }

    /// Decodes encoded keys back into typed key columns (in key order).
    pub fn decode<'a>(&self, keys: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<ArrayRef>> {
        let keys: Vec<&[u8]> = keys.into_iter().collect();
        let mut cursors = vec![0usize; keys.len()];
        let mut columns = Vec::with_capacity(self.arity());
        for (field, kind) in self.fields.iter().zip(&self.kinds) {
            columns.push(decode_column(
                field.data_type(),
                *kind,
                &keys,
                &mut cursors,
            )?);
        }
        for (key, cursor) in keys.iter().zip(&cursors) {
            if *cursor != key.len() {
                return Err(malformed("trailing bytes after the last key column"));
            }
        }
        Ok(columns)
    }

    /// Decodes one key into typed values, without building Arrow arrays (point lookups use
    /// it to hash key columns for bloom filters).
    pub fn decode_values(&self, key: &[u8]) -> Result<Vec<KeyValue>> {
        let mut cursor = 0usize;
        let mut values = Vec::with_capacity(self.arity());
        for kind in &self.kinds {
            let value = match *kind {
                KeyColumnKind::Bool => KeyValue::Boolean(take_fixed(key, &mut cursor, 1)?[0] != 0),
                KeyColumnKind::Signed(width) => KeyValue::Int(i128::from(unflip_signed(
                    take_fixed(key, &mut cursor, width)?,
                ))),
                KeyColumnKind::Unsigned(width) => {
                    let mut buf = [0u8; 8];
                    buf[8 - width..].copy_from_slice(take_fixed(key, &mut cursor, width)?);
                    KeyValue::UInt(u64::from_be_bytes(buf))
                }
                KeyColumnKind::Float32
                | KeyColumnKind::Float64
                | KeyColumnKind::Decimal128
                | KeyColumnKind::Decimal256 => {
                    // Decoded through the array path, which knows these layouts.
                    let width = match kind {
                        KeyColumnKind::Float32 => 4,
                        KeyColumnKind::Float64 => 8,
                        KeyColumnKind::Decimal128 => 16,
                        _ => 32,
                    };
                    let bytes = take_fixed(key, &mut cursor, width)?;
                    let index = values.len();
                    let field = &self.fields[index];
                    let column = decode_column(field.data_type(), *kind, &[bytes], &mut [0])?;
                    key_value_at(&column, 0)?
                }
                KeyColumnKind::FixedBinary(width) => {
                    KeyValue::Binary(take_fixed(key, &mut cursor, width)?.to_vec())
                }
                KeyColumnKind::Var { last } => {
                    let mut bytes = Vec::new();
                    take_var(key, &mut cursor, last, &mut bytes)?;
                    let index = values.len();
                    match self.fields[index].data_type() {
                        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                            KeyValue::Utf8(
                                String::from_utf8(bytes)
                                    .map_err(|_| malformed("invalid UTF-8 in a text key"))?,
                            )
                        }
                        _ => KeyValue::Binary(bytes),
                    }
                }
            };
            values.push(value);
        }
        if cursor != key.len() {
            return Err(malformed("trailing bytes after the last key column"));
        }
        Ok(values)
    }
}

/// The smallest byte string greater than every string that starts with `prefix`, or `None`
/// when no such string exists (the prefix is all `0xFF`).
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut out = prefix.to_vec();
    while let Some(last) = out.pop() {
        if last != 0xFF {
            out.push(last + 1);
            return Some(out);
        }
    }
    None
}

fn malformed(reason: &str) -> Error {
    Error::internal(format!("malformed encoded key: {reason}"))
}

fn key_kind(data_type: &DataType, last: bool) -> Option<KeyColumnKind> {
    use KeyColumnKind as K;
    Some(match data_type {
        DataType::Boolean => K::Bool,
        DataType::Int8 => K::Signed(1),
        DataType::Int16 => K::Signed(2),
        DataType::Int32 | DataType::Date32 | DataType::Time32(_) => K::Signed(4),
        DataType::Int64
        | DataType::Date64
        | DataType::Time64(_)
        | DataType::Timestamp(_, _)
        | DataType::Duration(_) => K::Signed(8),
        DataType::UInt8 => K::Unsigned(1),
        DataType::UInt16 => K::Unsigned(2),
        DataType::UInt32 => K::Unsigned(4),
        DataType::UInt64 => K::Unsigned(8),
        DataType::Float32 => K::Float32,
        DataType::Float64 => K::Float64,
        DataType::Decimal128(_, _) => K::Decimal128,
        DataType::Decimal256(_, _) => K::Decimal256,
        DataType::FixedSizeBinary(n) if *n >= 0 => K::FixedBinary(*n as usize),
        DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView => K::Var { last },
        _ => return None,
    })
}

/// Byte access to any string or binary array.
enum VarArray<'a> {
    Utf8(&'a StringArray),
    LargeUtf8(&'a LargeStringArray),
    Utf8View(&'a StringViewArray),
    Binary(&'a BinaryArray),
    LargeBinary(&'a LargeBinaryArray),
    BinaryView(&'a BinaryViewArray),
}

impl<'a> VarArray<'a> {
    fn new(array: &'a ArrayRef) -> Self {
        match array.data_type() {
            DataType::Utf8 => VarArray::Utf8(array.as_string::<i32>()),
            DataType::LargeUtf8 => VarArray::LargeUtf8(array.as_string::<i64>()),
            DataType::Utf8View => VarArray::Utf8View(array.as_string_view()),
            DataType::Binary => VarArray::Binary(array.as_binary::<i32>()),
            DataType::LargeBinary => VarArray::LargeBinary(array.as_binary::<i64>()),
            DataType::BinaryView => VarArray::BinaryView(array.as_binary_view()),
            other => unreachable!("not a variable-length type: {other}"),
        }
    }

    #[inline]
    fn value(&self, i: usize) -> &'a [u8] {
        match self {
            VarArray::Utf8(a) => a.value(i).as_bytes(),
            VarArray::LargeUtf8(a) => a.value(i).as_bytes(),
            VarArray::Utf8View(a) => a.value(i).as_bytes(),
            VarArray::Binary(a) => a.value(i),
            VarArray::LargeBinary(a) => a.value(i),
            VarArray::BinaryView(a) => a.value(i),
        }
    }
}

/// Reads the integer value of row `i` of a signed-integer-like column as i64.
fn signed_values(array: &ArrayRef) -> Vec<i64> {
    macro_rules! collect {
        ($t:ty) => {
            array
                .as_primitive::<$t>()
                .values()
                .iter()
                .map(|v| *v as i64)
                .collect()
        };
    }
    match array.data_type() {
        DataType::Int8 => collect!(Int8Type),
        DataType::Int16 => collect!(Int16Type),
        DataType::Int32 => collect!(Int32Type),
        DataType::Int64 => collect!(Int64Type),
        DataType::Date32 => collect!(Date32Type),
        DataType::Date64 => collect!(Date64Type),
        DataType::Time32(TimeUnit::Second) => collect!(Time32SecondType),
        DataType::Time32(_) => collect!(Time32MillisecondType),
        DataType::Time64(TimeUnit::Microsecond) => collect!(Time64MicrosecondType),
        DataType::Time64(_) => collect!(Time64NanosecondType),
        DataType::Timestamp(TimeUnit::Second, _) => collect!(TimestampSecondType),
        DataType::Timestamp(TimeUnit::Millisecond, _) => collect!(TimestampMillisecondType),
        DataType::Timestamp(TimeUnit::Microsecond, _) => collect!(TimestampMicrosecondType),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => collect!(TimestampNanosecondType),
        DataType::Duration(TimeUnit::Second) => collect!(DurationSecondType),
        DataType::Duration(TimeUnit::Millisecond) => collect!(DurationMillisecondType),
        DataType::Duration(TimeUnit::Microsecond) => collect!(DurationMicrosecondType),
        DataType::Duration(TimeUnit::Nanosecond) => collect!(DurationNanosecondType),
        other => unreachable!("not a signed key type: {other}"),
    }
}

fn unsigned_values(array: &ArrayRef) -> Vec<u64> {
    macro_rules! collect {
        ($t:ty) => {
            array
                .as_primitive::<$t>()
                .values()
                .iter()
                .map(|v| *v as u64)
                .collect()
        };
    }
    match array.data_type() {
        DataType::UInt8 => collect!(UInt8Type),
        DataType::UInt16 => collect!(UInt16Type),
        DataType::UInt32 => collect!(UInt32Type),
        DataType::UInt64 => collect!(UInt64Type),
        other => unreachable!("not an unsigned key type: {other}"),
    }
}

#[inline]
fn escaped_len(bytes: &[u8]) -> usize {
    bytes.len() + bytes.iter().filter(|b| **b == 0).count() + 2
}

fn add_lengths(kind: KeyColumnKind, column: &ArrayRef, lengths: &mut [usize]) {
    let fixed = match kind {
        KeyColumnKind::Bool => 1,
        KeyColumnKind::Signed(w) | KeyColumnKind::Unsigned(w) => w,
        KeyColumnKind::Float32 => 4,
        KeyColumnKind::Float64 => 8,
        KeyColumnKind::Decimal128 => 16,
        KeyColumnKind::Decimal256 => 32,
        KeyColumnKind::FixedBinary(n) => n,
        KeyColumnKind::Var { last } => {
            let values = VarArray::new(column);
            for (i, len) in lengths.iter_mut().enumerate() {
                let v = values.value(i);
                *len += if last { v.len() } else { escaped_len(v) };
            }
            return;
        }
    };
    lengths.iter_mut().for_each(|len| *len += fixed);
}

#[inline]
fn put(data: &mut [u8], cursor: &mut usize, bytes: &[u8]) {
    data[*cursor..*cursor + bytes.len()].copy_from_slice(bytes);
    *cursor += bytes.len();
}

#[inline]
fn signed_bytes(value: i64, width: usize) -> [u8; 8] {
    // Flip the sign bit of the value at its own width, then keep the low `width` bytes.
    let shift = 64 - 8 * width as u32;
    let flipped = ((value as u64) << shift) ^ (1u64 << 63);
    flipped.to_be_bytes()
}

#[inline]
fn f64_key(value: f64) -> [u8; 8] {
    let bits = value.to_bits();
    let ordered = if bits >> 63 == 1 {
        !bits
    } else {
        bits ^ (1 << 63)
    };
    ordered.to_be_bytes()
}

#[inline]
fn f32_key(value: f32) -> [u8; 4] {
    let bits = value.to_bits();
    let ordered = if bits >> 31 == 1 {
        !bits
    } else {
        bits ^ (1 << 31)
    };
    ordered.to_be_bytes()
}

#[inline]
fn i128_key(value: i128) -> [u8; 16] {
    ((value as u128) ^ (1u128 << 127)).to_be_bytes()
}

#[inline]
fn i256_key(value: i256) -> [u8; 32] {
    let mut bytes = value.to_be_bytes();
    bytes[0] ^= 0x80;
    bytes
}

fn write_escaped(data: &mut [u8], cursor: &mut usize, bytes: &[u8]) {
    for &b in bytes {
        data[*cursor] = b;
        *cursor += 1;
        if b == 0 {
            data[*cursor] = 0xFF;
            *cursor += 1;
        }
    }
    data[*cursor] = 0;
    data[*cursor + 1] = 0;
    *cursor += 2;
}

fn write_column(kind: KeyColumnKind, column: &ArrayRef, data: &mut [u8], cursors: &mut [usize]) {
    match kind {
        KeyColumnKind::Bool => {
            let values = column.as_boolean();
            for (i, cursor) in cursors.iter_mut().enumerate() {
                put(data, cursor, &[values.value(i) as u8]);
            }
        }
        KeyColumnKind::Signed(width) => {
            for (value, cursor) in signed_values(column).into_iter().zip(cursors.iter_mut()) {
                put(data, cursor, &signed_bytes(value, width)[..width]);
            }
        }
        KeyColumnKind::Unsigned(width) => {
            for (value, cursor) in unsigned_values(column).into_iter().zip(cursors.iter_mut()) {
                put(data, cursor, &value.to_be_bytes()[8 - width..]);
            }
        }
        KeyColumnKind::Float32 => {
            let values = column.as_primitive::<Float32Type>().values();
            for (value, cursor) in values.iter().zip(cursors.iter_mut()) {
                put(data, cursor, &f32_key(*value));
            }
        }
        KeyColumnKind::Float64 => {
            let values = column.as_primitive::<Float64Type>().values();
            for (value, cursor) in values.iter().zip(cursors.iter_mut()) {
                put(data, cursor, &f64_key(*value));
            }
        }
        KeyColumnKind::Decimal128 => {
            let values = column.as_primitive::<Decimal128Type>().values();
            for (value, cursor) in values.iter().zip(cursors.iter_mut()) {
                put(data, cursor, &i128_key(*value));
            }
        }
        KeyColumnKind::Decimal256 => {
            let values = column.as_primitive::<Decimal256Type>().values();
            for (value, cursor) in values.iter().zip(cursors.iter_mut()) {
                put(data, cursor, &i256_key(*value));
            }
        }
        KeyColumnKind::FixedBinary(_) => {
            let values = column.as_fixed_size_binary();
            for (i, cursor) in cursors.iter_mut().enumerate() {
                put(data, cursor, values.value(i));
            }
        }
        KeyColumnKind::Var { last } => {
            let values = VarArray::new(column);
            for (i, cursor) in cursors.iter_mut().enumerate() {
                if last {
                    put(data, cursor, values.value(i));
                } else {
                    write_escaped(data, cursor, values.value(i));
                }
            }
        }
    }
}

fn type_error(field: &FieldRef, value: &KeyValue) -> Error {
    Error::InvalidArgument(format!(
        "key value {value:?} does not fit column '{}' of type {}",
        field.name(),
        field.data_type()
    ))
}

fn encode_value(
    field: &FieldRef,
    kind: KeyColumnKind,
    value: &KeyValue,
    out: &mut Vec<u8>,
) -> Result<()> {
    let err = || type_error(field, value);
    match kind {
        KeyColumnKind::Bool => match value {
            KeyValue::Boolean(b) => out.push(*b as u8),
            _ => return Err(err()),
        },
        KeyColumnKind::Signed(width) => {
            let v: i128 = match value {
                KeyValue::Int(v) => *v,
                KeyValue::UInt(v) => i128::from(*v),
                _ => return Err(err()),
            };
            let bits = 8 * width as u32;
            let (min, max) = (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1);
            if v < min || v > max {
                return Err(err());
            }
            out.extend_from_slice(&signed_bytes(v as i64, width)[..width]);
        }
        KeyColumnKind::Unsigned(width) => {
            let v: i128 = match value {
                KeyValue::Int(v) => *v,
                KeyValue::UInt(v) => i128::from(*v),
                _ => return Err(err()),
            };
            let max = if width == 8 {
                u64::MAX as i128
            } else {
                (1i128 << (8 * width)) - 1
            };
            if v < 0 || v > max {
                return Err(err());
            }
            out.extend_from_slice(&(v as u64).to_be_bytes()[8 - width..]);
        }
        KeyColumnKind::Float32 => match value {
            KeyValue::Float(v) => out.extend_from_slice(&f32_key(*v as f32)),
            KeyValue::Int(v) => out.extend_from_slice(&f32_key(*v as f32)),
            _ => return Err(err()),
        },
        KeyColumnKind::Float64 => match value {
            KeyValue::Float(v) => out.extend_from_slice(&f64_key(*v)),
            KeyValue::Int(v) => out.extend_from_slice(&f64_key(*v as f64)),
            _ => return Err(err()),
        },
        KeyColumnKind::Decimal128 => match value {
            KeyValue::Int(v) => out.extend_from_slice(&i128_key(*v)),
            _ => return Err(err()),
        },
        KeyColumnKind::Decimal256 => match value {
            KeyValue::Int(v) => out.extend_from_slice(&i256_key(i256::from_i128(*v))),
            _ => return Err(err()),
        },
        KeyColumnKind::FixedBinary(n) => {
            let bytes = match value {
                KeyValue::Binary(b) => b.as_slice(),
                KeyValue::Utf8(s) => s.as_bytes(),
                _ => return Err(err()),
            };
            if bytes.len() != n {
                return Err(err());
            }
            out.extend_from_slice(bytes);
        }
        KeyColumnKind::Var { last } => {
            let is_text = matches!(
                field.data_type(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            );
            let bytes = match value {
                KeyValue::Utf8(s) => s.as_bytes(),
                KeyValue::Binary(b) if !is_text => b.as_slice(),
                _ => return Err(err()),
            };
            if last {
                out.extend_from_slice(bytes);
            } else {
                let start = out.len();
                out.resize(start + escaped_len(bytes), 0);
                let mut cursor = start;
                write_escaped(out, &mut cursor, bytes);
            }
        }
    }
    Ok(())
}

fn take_fixed<'a>(key: &'a [u8], cursor: &mut usize, width: usize) -> Result<&'a [u8]> {
    let end = *cursor + width;
    let bytes = key
        .get(*cursor..end)
        .ok_or_else(|| malformed("key shorter than its fixed-width columns"))?;
    *cursor = end;
    Ok(bytes)
}

fn take_var(key: &[u8], cursor: &mut usize, last: bool, out: &mut Vec<u8>) -> Result<()> {
    if last {
        out.extend_from_slice(&key[*cursor..]);
        *cursor = key.len();
        return Ok(());
    }
    let mut i = *cursor;
    loop {
        let b = *key
            .get(i)
            .ok_or_else(|| malformed("unterminated variable-length column"))?;
        if b == 0 {
            match key.get(i + 1) {
                Some(0) => {
                    *cursor = i + 2;
                    return Ok(());
                }
                Some(0xFF) => {
                    out.push(0);
                    i += 2;
                }
                _ => return Err(malformed("bad escape in variable-length column")),
            }
        } else {
            out.push(b);
            i += 1;
        }
    }
}

fn unflip_signed(bytes: &[u8]) -> i64 {
    let width = bytes.len();
    let mut buf = [0u8; 8];
    buf[..width].copy_from_slice(bytes);
    let raw = u64::from_be_bytes(buf) ^ (1u64 << 63);
    (raw as i64) >> (64 - 8 * width as u32)
}

fn primitive<T: ArrowPrimitiveType>(
    data_type: &DataType,
    values: Vec<T::Native>,
) -> Result<ArrayRef> {
    let array = PrimitiveArray::<T>::new(ScalarBuffer::from(values), None)
        .with_data_type(data_type.clone());
    Ok(Arc::new(array))
}

fn decode_column(
    data_type: &DataType,
    kind: KeyColumnKind,
    keys: &[&[u8]],
    cursors: &mut [usize],
) -> Result<ArrayRef> {
    match kind {
        KeyColumnKind::Bool => {
            let mut values = Vec::with_capacity(keys.len());
            for (key, cursor) in keys.iter().zip(cursors.iter_mut()) {
                values.push(take_fixed(key, cursor, 1)?[0] != 0);
            }
            Ok(Arc::new(BooleanArray::from(values)))
        }
        KeyColumnKind::Signed(width) => {
            let mut values = Vec::with_capacity(keys.len());
            for (key, cursor) in keys.iter().zip(cursors.iter_mut()) {
                values.push(unflip_signed(take_fixed(key, cursor, width)?));
            }
            signed_array(data_type, values)
        }
        KeyColumnKind::Unsigned(width) => {
            let mut values = Vec::with_capacity(keys.len());
            for (key, cursor) in keys.iter().zip(cursors.iter_mut()) {
                let bytes = take_fixed(key, cursor, width)?;
                let mut buf = [0u8; 8];
                buf[8 - width..].copy_from_slice(bytes);
                values.push(u64::from_be_bytes(buf));
            }
            match data_type {
                DataType::UInt8 => {
                    primitive::<UInt8Type>(data_type, values.into_iter().map(|v| v as u8).collect())
                }
                DataType::UInt16 => primitive::<UInt16Type>(
                    data_type,
                    values.into_iter().map(|v| v as u16).collect(),
                ),
                DataType::UInt32 => primitive::<UInt32Type>(
                    data_type,
                    values.into_iter().map(|v| v as u32).collect(),
                ),
                _ => primitive::<UInt64Type>(data_type, values),
            }
        }
        KeyColumnKind::Float32 => {
            let mut values = Vec::with_capacity(keys.len());
            for (key, cursor) in keys.iter().zip(cursors.iter_mut()) {
                let raw =
                    u32::from_be_bytes(take_fixed(key, cursor, 4)?.try_into().unwrap_or_default());
                let bits = if raw >> 31 == 1 {
                    raw ^ (1 << 31)
                } else {
                    !raw
                };
                values.push(f32::from_bits(bits));
            }
            primitive::<Float32Type>(data_type, values)
        }
        KeyColumnKind::Float64 => {
            let mut values = Vec::with_capacity(keys.len());
            for (key, cursor) in keys.iter().zip(cursors.iter_mut()) {
                let raw =
                    u64::from_be_bytes(take_fixed(key, cursor, 8)?.try_into().unwrap_or_default());
                let bits = if raw >> 63 == 1 {
                    raw ^ (1 << 63)
                } else {
                    !raw
                };
                values.push(f64::from_bits(bits));
            }
            primitive::<Float64Type>(data_type, values)
        }
        KeyColumnKind::Decimal128 => {
            let mut values = Vec::with_capacity(keys.len());
            for (key, cursor) in keys.iter().zip(cursors.iter_mut()) {
                let raw = u128::from_be_bytes(
                    take_fixed(key, cursor, 16)?.try_into().unwrap_or_default(),
                );
                values.push((raw ^ (1u128 << 127)) as i128);
            }
            primitive::<Decimal128Type>(data_type, values)
        }
        KeyColumnKind::Decimal256 => {
            let mut values = Vec::with_capacity(keys.len());
            for (key, cursor) in keys.iter().zip(cursors.iter_mut()) {
                let mut bytes: [u8; 32] =
                    take_fixed(key, cursor, 32)?.try_into().unwrap_or_default();
                bytes[0] ^= 0x80;
                values.push(i256::from_be_bytes(bytes));
            }
            primitive::<Decimal256Type>(data_type, values)
        }
        KeyColumnKind::FixedBinary(width) => {
            let mut values = Vec::with_capacity(keys.len());
            for (key, cursor) in keys.iter().zip(cursors.iter_mut()) {
                values.push(take_fixed(key, cursor, width)?);
            }
            Ok(Arc::new(
                FixedSizeBinaryArray::try_from_iter(values.into_iter()).or_else(|_| {
                    // Zero rows, or zero width: build explicitly.
                    Ok::<_, Error>(FixedSizeBinaryArray::new_null(width as i32, 0))
                })?,
            ))
        }
        KeyColumnKind::Var { last } => {
            let mut scratch = Vec::new();
            let mut values: Vec<Vec<u8>> = Vec::with_capacity(keys.len());
            for (key, cursor) in keys.iter().zip(cursors.iter_mut()) {
                scratch.clear();
                take_var(key, cursor, last, &mut scratch)?;
                values.push(scratch.clone());
            }
            var_array(data_type, values)
        }
    }
}

fn signed_array(data_type: &DataType, values: Vec<i64>) -> Result<ArrayRef> {
    macro_rules! narrow {
        ($t:ty, $n:ty) => {
            primitive::<$t>(data_type, values.into_iter().map(|v| v as $n).collect())
        };
    }
    match data_type {
        DataType::Int8 => narrow!(Int8Type, i8),
        DataType::Int16 => narrow!(Int16Type, i16),
        DataType::Int32 => narrow!(Int32Type, i32),
        DataType::Date32 => narrow!(Date32Type, i32),
        DataType::Time32(TimeUnit::Second) => narrow!(Time32SecondType, i32),
        DataType::Time32(_) => narrow!(Time32MillisecondType, i32),
        DataType::Int64 => primitive::<Int64Type>(data_type, values),
        DataType::Date64 => primitive::<Date64Type>(data_type, values),
        DataType::Time64(TimeUnit::Microsecond) => {
            primitive::<Time64MicrosecondType>(data_type, values)
        }
        DataType::Time64(_) => primitive::<Time64NanosecondType>(data_type, values),
        DataType::Timestamp(TimeUnit::Second, _) => {
            primitive::<TimestampSecondType>(data_type, values)
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            primitive::<TimestampMillisecondType>(data_type, values)
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            primitive::<TimestampMicrosecondType>(data_type, values)
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            primitive::<TimestampNanosecondType>(data_type, values)
        }
        DataType::Duration(TimeUnit::Second) => primitive::<DurationSecondType>(data_type, values),
        DataType::Duration(TimeUnit::Millisecond) => {
            primitive::<DurationMillisecondType>(data_type, values)
        }
        DataType::Duration(TimeUnit::Microsecond) => {
            primitive::<DurationMicrosecondType>(data_type, values)
        }
        DataType::Duration(TimeUnit::Nanosecond) => {
            primitive::<DurationNanosecondType>(data_type, values)
        }
        other => Err(Error::internal(format!("not a signed key type: {other}"))),
    }
}

/// Builds a string or binary array of `data_type` from owned byte values.
pub(crate) fn var_array(data_type: &DataType, values: Vec<Vec<u8>>) -> Result<ArrayRef> {
    fn text(values: &[Vec<u8>]) -> Result<Vec<&str>> {
        values
            .iter()
            .map(|v| std::str::from_utf8(v).map_err(|_| malformed("invalid UTF-8 in a text key")))
            .collect()
    }
    Ok(match data_type {
        DataType::Utf8 => Arc::new(StringArray::from(text(&values)?)),
        DataType::LargeUtf8 => Arc::new(LargeStringArray::from(text(&values)?)),
        DataType::Utf8View => Arc::new(StringViewArray::from(text(&values)?)),
        DataType::Binary => Arc::new(BinaryArray::from_iter_values(values.iter())),
        DataType::LargeBinary => Arc::new(LargeBinaryArray::from_iter_values(values.iter())),
        DataType::BinaryView => Arc::new(BinaryViewArray::from_iter_values(values.iter())),
        other => {
            return Err(Error::internal(format!(
                "not a variable-length type: {other}"
            )));
        }
    })
}

/// The typed value at `row` of a key column.
fn key_value_at(column: &ArrayRef, row: usize) -> Result<KeyValue> {
    Ok(match column.data_type() {
        DataType::Boolean => KeyValue::Boolean(column.as_boolean().value(row)),
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
            KeyValue::UInt(unsigned_values(&column.slice(row, 1))[0])
        }
        DataType::Float32 => {
            KeyValue::Float(f64::from(column.as_primitive::<Float32Type>().value(row)))
        }
        DataType::Float64 => KeyValue::Float(column.as_primitive::<Float64Type>().value(row)),
        DataType::Decimal128(_, _) => {
            KeyValue::Int(column.as_primitive::<Decimal128Type>().value(row))
        }
        DataType::Decimal256(_, _) => {
            KeyValue::Int(column.as_primitive::<Decimal256Type>().value(row).as_i128())
        }
        DataType::FixedSizeBinary(_) => {
            KeyValue::Binary(column.as_fixed_size_binary().value(row).to_vec())
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => KeyValue::Utf8(
            String::from_utf8(VarArray::new(column).value(row).to_vec())
                .map_err(|_| malformed("invalid UTF-8"))?,
        ),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
            KeyValue::Binary(VarArray::new(column).value(row).to_vec())
        }
        _ => KeyValue::Int(i128::from(signed_values(&column.slice(row, 1))[0])),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::Field;

    fn codec(types: &[DataType]) -> KeyCodec {
        let fields = types
            .iter()
            .enumerate()
            .map(|(i, t)| Arc::new(Field::new(format!("k{i}"), t.clone(), false)))
            .collect();
        KeyCodec::new(fields).unwrap()
    }

    #[test]
    fn signed_order_and_round_trip() {
        let c = codec(&[DataType::Int64]);
        let values = vec![i64::MIN, -1_000_000, -1, 0, 1, 42, i64::MAX];
        let col: ArrayRef = Arc::new(arrow::array::Int64Array::from(values.clone()));
        let keys = c.encode_columns(std::slice::from_ref(&col)).unwrap();
        for i in 1..keys.len() {
            assert!(keys.get(i - 1) < keys.get(i), "order at {i}");
        }
        let back = c.decode(keys.iter()).unwrap();
        assert_eq!(&back[0], &col);
    }

    #[test]
    fn narrow_signed_round_trip() {
        let c = codec(&[DataType::Int16, DataType::Int8]);
        let a: ArrayRef = Arc::new(arrow::array::Int16Array::from(vec![-300, -1, 0, 300]));
        let b: ArrayRef = Arc::new(arrow::array::Int8Array::from(vec![-128, 127, 0, -5]));
        let keys = c.encode_columns(&[a.clone(), b.clone()]).unwrap();
        assert!(keys.iter().all(|k| k.len() == 3));
        for i in 1..keys.len() {
            assert!(keys.get(i - 1) < keys.get(i));
        }
        let back = c.decode(keys.iter()).unwrap();
        assert_eq!(back, vec![a, b]);
    }

    #[test]
    fn strings_escape_and_order_with_following_column() {
        let c = codec(&[DataType::Utf8, DataType::Int32]);
        let rows: Vec<(&str, i32)> = vec![
            ("", 5),
            ("a", 1),
            ("a", 2),
            ("a\0", 0),
            ("a\0b", -1),
            ("ab", 0),
            ("b", i32::MIN),
        ];
        let a: ArrayRef = Arc::new(StringArray::from(
            rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        ));
        let b: ArrayRef = Arc::new(arrow::array::Int32Array::from(
            rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        ));
        let keys = c.encode_columns(&[a.clone(), b.clone()]).unwrap();
        for (i, row) in rows.iter().enumerate().skip(1) {
            assert!(keys.get(i - 1) < keys.get(i), "order at {i}: {row:?}");
        }
        assert_eq!(c.decode(keys.iter()).unwrap(), vec![a, b]);
    }

    #[test]
    fn last_binary_column_is_raw() {
        let c = codec(&[DataType::Binary]);
        let col: ArrayRef = Arc::new(BinaryArray::from_iter_values([
            b"".as_ref(),
            b"\0\x01",
            b"key",
        ]));
        let keys = c.encode_columns(std::slice::from_ref(&col)).unwrap();
        assert_eq!(keys.get(1), b"\0\x01");
        assert_eq!(keys.get(2), b"key");
        assert_eq!(c.decode(keys.iter()).unwrap(), vec![col]);
    }

    #[test]
    fn floats_total_order() {
        let c = codec(&[DataType::Float64]);
        let values = vec![
            f64::NEG_INFINITY,
            -2.5,
            -0.0,
            0.0,
            1e-300,
            3.0,
            f64::INFINITY,
            f64::NAN,
        ];
        let col: ArrayRef = Arc::new(arrow::array::Float64Array::from(values));
        let keys = c.encode_columns(std::slice::from_ref(&col)).unwrap();
        for i in 1..keys.len() {
            assert!(keys.get(i - 1) < keys.get(i), "order at {i}");
        }
        let back = c.decode(keys.iter()).unwrap();
        let got = back[0].as_primitive::<Float64Type>();
        let want = col.as_primitive::<Float64Type>();
        for i in 0..got.len() {
            assert_eq!(got.value(i).to_bits(), want.value(i).to_bits());
        }
    }

    #[test]
    fn null_key_is_rejected_with_column_and_row() {
        let c = codec(&[DataType::Int32]);
        let col: ArrayRef = Arc::new(arrow::array::Int32Array::from(vec![Some(1), None]));
        match c.encode_columns(&[col]) {
            Err(Error::NullKey { column, row }) => {
                assert_eq!(column, "k0");
                assert_eq!(row, 1);
            }
            other => panic!("expected NullKey, got {other:?}"),
        }
    }

    #[test]
    fn values_match_columns_and_prefixes() {
        let c = codec(&[DataType::Utf8, DataType::UInt16, DataType::Int32]);
        let a: ArrayRef = Arc::new(StringArray::from(vec!["x"]));
        let b: ArrayRef = Arc::new(arrow::array::UInt16Array::from(vec![7]));
        let d: ArrayRef = Arc::new(arrow::array::Int32Array::from(vec![-9]));
        let keys = c.encode_columns(&[a, b, d]).unwrap();
        let full = c
            .encode_values(&["x".into(), 7u16.into(), (-9i32).into()])
            .unwrap();
        assert_eq!(full, keys.get(0));
        let prefix = c.encode_values(&["x".into()]).unwrap();
        assert!(full.starts_with(&prefix));
        assert!(
            c.encode_values(&["x".into(), KeyValue::Int(70_000)])
                .is_err()
        );
        assert!(c.encode_values(&[KeyValue::Int(1)]).is_err());
        assert_eq!(
            c.decode_values(&full).unwrap(),
            vec![
                KeyValue::Utf8("x".into()),
                KeyValue::UInt(7),
                KeyValue::Int(-9)
            ]
        );
    }

    #[test]
    fn unsupported_key_type_is_a_clear_error() {
        let field = Arc::new(Field::new(
            "l",
            DataType::List(Arc::new(Field::new("item", DataType::Int32, true))),
            false,
        ));
        let err = KeyCodec::new(vec![field]).unwrap_err();
        assert!(
            err.to_string().contains("cannot be part of a primary key"),
            "{err}"
        );
    }

    #[test]
    fn prefix_successor_works() {
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_successor(b"\xff\xff"), None);
    }
}
