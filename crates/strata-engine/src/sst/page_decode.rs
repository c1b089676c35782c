//! Lean decoding of single Parquet data pages into Arrow arrays, for the page-level reads of
//! point lookups ([`super::reader`]): the rows a lookup needs are decoded straight from the
//! decompressed page (the `parquet` crate's page reader does the header and decompression),
//! without building a record-batch reader per column and page.
//!
//! What it decodes is exactly what the SST writer produces for a flat column of a supported
//! type (the Parquet 1.0 writer of the `parquet` crate):
//!
//! * data pages v1 (levels and values compressed together) and v2 (levels uncompressed in
//!   front), no repetition levels (`max_rep_level == 0`), definition levels absent
//!   (`max_def_level == 0`) or RLE/bit-packed hybrid of bit width 1 (`max_def_level == 1`; in
//!   v1 pages behind a 4-byte little-endian length);
//! * values `PLAIN`, or `PLAIN_DICTIONARY` / `RLE_DICTIONARY` (one byte of bit width, then the
//!   indices as an RLE/bit-packed hybrid) against the column chunk's dictionary page (`PLAIN`
//!   values);
//! * physical and Arrow types: `INT32` as `Int8/16/32`, `UInt8/16/32` and `Date32` (the low
//!   bits, as the Arrow reader takes them), `INT64` as `Int64` and `UInt64` (reinterpreted),
//!   `FLOAT`, `DOUBLE`, `BYTE_ARRAY` as `Binary`, `LargeBinary`, `Utf8`, `LargeUtf8` (strings
//!   checked to be UTF-8).
//!
//! Anything else (another type, encoding or page layout) is not decoded here: [`LeanType::of`]
//! returns `None` for a column whose type is not listed, and a page in an encoding not listed
//! is an [`Unsupported`] error, on which the reader decodes the column through the general
//! Parquet reader instead. Malformed bytes (truncated runs, indices past the dictionary,
//! invalid UTF-8, fewer values than levels) are errors, never panics or wrong rows; the
//! caller reports them as corruption.

use std::sync::Arc;

use arrow::array::{ArrayRef, GenericByteArray, PrimitiveArray};
use arrow::buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::ArrowNativeType;
use arrow::datatypes::{
    ArrowPrimitiveType, ByteArrayType, DataType, Date32Type, Float32Type, Float64Type,
    GenericBinaryType, GenericStringType, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type,
    UInt16Type, UInt32Type, UInt64Type,
};
use parquet::basic::{Compression, Encoding, Type as PhysicalType};
use parquet::column::page::Page;
use parquet::schema::types::ColumnDescriptor;

/// A column this module decodes: its Arrow type, which fixes its Parquet physical type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LeanType {
    Int8,
    Int16,
    Int32,
    UInt8,
    UInt16,
    UInt32,
    Date32,
    Int64,
    UInt64,
    Float32,
    Float64,
    Binary,
    LargeBinary,
    Utf8,
    LargeUtf8,
}

/// Why a page was not decoded: a layout this module does not handle (the caller falls back to
/// the general reader), or malformed bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PageError {
    /// Valid Parquet this module does not decode.
    Unsupported(String),
    /// Bytes that are not a valid page.
    Malformed(String),
}

/// Shorthand for [`PageError::Unsupported`].
pub(crate) use PageError::Unsupported;

fn malformed(what: &str) -> PageError {
    PageError::Malformed(what.to_string())
}

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PageError::Unsupported(what) => write!(f, "unsupported page: {what}"),
            PageError::Malformed(what) => write!(f, "malformed page: {what}"),
        }
    }
}

type Result<T> = std::result::Result<T, PageError>;

impl LeanType {
    /// The lean type of a column of Arrow type `data_type` stored as Parquet leaf `descr`;
    /// `None` when this module does not decode it.
    pub(crate) fn of(data_type: &DataType, descr: &ColumnDescriptor) -> Option<LeanType> {
        if descr.max_rep_level() != 0 || descr.max_def_level() > 1 {
            return None;
        }
        let lean = match data_type {
            DataType::Int8 => LeanType::Int8,
            DataType::Int16 => LeanType::Int16,
            DataType::Int32 => LeanType::Int32,
            DataType::UInt8 => LeanType::UInt8,
            DataType::UInt16 => LeanType::UInt16,
            DataType::UInt32 => LeanType::UInt32,
            DataType::Date32 => LeanType::Date32,
            DataType::Int64 => LeanType::Int64,
            DataType::UInt64 => LeanType::UInt64,
            DataType::Float32 => LeanType::Float32,
            DataType::Float64 => LeanType::Float64,
            DataType::Binary => LeanType::Binary,
            DataType::LargeBinary => LeanType::LargeBinary,
            DataType::Utf8 => LeanType::Utf8,
            DataType::LargeUtf8 => LeanType::LargeUtf8,
            _ => return None,
        };
        (descr.physical_type() == lean.physical()).then_some(lean)
    }

    fn physical(self) -> PhysicalType {
        match self {
            LeanType::Int8
            | LeanType::Int16
            | LeanType::Int32
            | LeanType::UInt8
            | LeanType::UInt16
            | LeanType::UInt32
            | LeanType::Date32 => PhysicalType::INT32,
            LeanType::Int64 | LeanType::UInt64 => PhysicalType::INT64,
            LeanType::Float32 => PhysicalType::FLOAT,
            LeanType::Float64 => PhysicalType::DOUBLE,
            LeanType::Binary | LeanType::LargeBinary | LeanType::Utf8 | LeanType::LargeUtf8 => {
                PhysicalType::BYTE_ARRAY
            }
        }
    }

    /// Bytes of one `PLAIN` value; `None` for byte arrays (length-prefixed).
    fn width(self) -> Option<usize> {
        match self.physical() {
            PhysicalType::INT32 | PhysicalType::FLOAT => Some(4),
            PhysicalType::INT64 | PhysicalType::DOUBLE => Some(8),
            _ => None,
        }
    }
}

/// A decompressed page as the decoder reads it: from the `parquet` crate's [`Page`]
/// ([`PageView::of`]) or parsed and decompressed here ([`PageView::parse`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PageView<'a> {
    kind: ViewKind,
    num_values: usize,
    encoding: Encoding,
    /// Levels and values (v2: the levels uncompressed in front).
    buf: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ViewKind {
    V1 { def_level_encoding: Encoding },
    V2 { def_len: usize, rep_len: usize },
    Dictionary,
}

/// Largest uncompressed page accepted.
const MAX_PAGE_BYTES: usize = 1 << 30;

impl<'a> PageView<'a> {
    /// The view of a page decoded by the `parquet` crate.
    pub(crate) fn of(page: &'a Page) -> PageView<'a> {
        match page {
            Page::DataPage {
                buf,
                num_values,
                encoding,
                def_level_encoding,
                ..
            } => PageView {
                kind: ViewKind::V1 {
                    def_level_encoding: *def_level_encoding,
                },
                num_values: *num_values as usize,
                encoding: *encoding,
                buf,
            },
            Page::DataPageV2 {
                buf,
                num_values,
                encoding,
                def_levels_byte_len,
                rep_levels_byte_len,
                ..
            } => PageView {
                kind: ViewKind::V2 {
                    def_len: *def_levels_byte_len as usize,
                    rep_len: *rep_levels_byte_len as usize,
                },
                num_values: *num_values as usize,
                encoding: *encoding,
                buf,
            },
            Page::DictionaryPage {
                buf,
                num_values,
                encoding,
                ..
            } => PageView {
                kind: ViewKind::Dictionary,
                num_values: *num_values as usize,
                encoding: *encoding,
                buf,
            },
        }
    }

    /// Parses the page (header included) in `bytes` and decompresses it with `codec` into
    /// `scratch` (reused between pages); only `SNAPPY` and `UNCOMPRESSED` pages are
    /// decompressed here (others are [`Unsupported`]).
    pub(crate) fn parse(
        bytes: &'a [u8],
        codec: Compression,
        scratch: &'a mut Vec<u8>,
    ) -> Result<PageView<'a>> {
        let (header_len, info) = super::page_crc::parse_page_header(bytes).map_err(malformed)?;
        let body = bytes
            .get(header_len..)
            .filter(|b| i32::try_from(b.len()).ok() == Some(info.compressed_page_size))
            .ok_or_else(|| malformed("the page's size disagrees with its location"))?;
        let size = |v: i32| usize::try_from(v).map_err(|_| malformed("negative size"));
        let uncompressed = size(info.uncompressed_page_size)?;
        if uncompressed > MAX_PAGE_BYTES {
            return Err(malformed("page larger than 1 GiB"));
        }
        let encoding = encoding_of(info.encoding)?;
        let (kind, levels) = match info.page_type {
            0 => (
                ViewKind::V1 {
                    def_level_encoding: encoding_of(info.definition_level_encoding)?,
                },
                0,
            ),
            2 => (ViewKind::Dictionary, 0),
            3 => {
                let (def_len, rep_len) = (
                    size(info.definition_levels_byte_length)?,
                    size(info.repetition_levels_byte_length)?,
                );
                let levels = def_len
                    .checked_add(rep_len)
                    .filter(|l| *l <= body.len() && *l <= uncompressed)
                    .ok_or_else(|| malformed("levels longer than the page"))?;
                let levels = if info.is_compressed {
                    levels
                } else {
                    body.len()
                };
                (ViewKind::V2 { def_len, rep_len }, levels)
            }
            other => return Err(Unsupported(format!("page type {other}"))),
        };
        let buf: &'a [u8] = match codec {
            Compression::UNCOMPRESSED => body,
            _ if levels == body.len() => body,
            Compression::SNAPPY => {
                scratch.clear();
                scratch.extend_from_slice(&body[..levels]);
                let compressed = &body[levels..];
                let expected = uncompressed - levels.min(uncompressed);
                let len = snap::raw::decompress_len(compressed)
                    .map_err(|e| PageError::Malformed(format!("snappy: {e}")))?;
                if len != expected {
                    return Err(malformed("the decompressed size disagrees with the header"));
                }
                scratch.resize(levels + len, 0);
                let written = snap::raw::Decoder::new()
                    .decompress(compressed, &mut scratch[levels..])
                    .map_err(|e| PageError::Malformed(format!("snappy: {e}")))?;
                if written != len {
                    return Err(malformed("the decompressed size disagrees with the header"));
                }
                scratch
            }
            other => return Err(Unsupported(format!("codec {other}"))),
        };
        if buf.len() != uncompressed {
            return Err(malformed("the page's size disagrees with its header"));
        }
        let num_values =
            usize::try_from(info.num_values).map_err(|_| malformed("negative value count"))?;
        Ok(PageView {
            kind,
            num_values,
            encoding,
            buf,
        })
    }
}

/// The encodings this module reads, by their Thrift number.
fn encoding_of(value: i32) -> Result<Encoding> {
    Ok(match value {
        0 => Encoding::PLAIN,
        2 => Encoding::PLAIN_DICTIONARY,
        3 => Encoding::RLE,
        8 => Encoding::RLE_DICTIONARY,
        other => return Err(Unsupported(format!("encoding {other}"))),
    })
}

/// A decoded dictionary page: its values as `PLAIN` bytes, with the start of each value.
#[derive(Debug)]
pub(crate) struct Dictionary {
    /// The values: fixed-width values back to back, or byte arrays without their prefixes.
    data: Vec<u8>,
    /// Byte arrays: `len + 1` offsets into `data`; empty for fixed-width values.
    offsets: Vec<u32>,
    len: usize,
}

impl Dictionary {
    /// Decodes a dictionary page of a column of type `lean`.
    pub(crate) fn decode(lean: LeanType, page: &PageView) -> Result<Dictionary> {
        if page.kind != ViewKind::Dictionary {
            return Err(malformed("expected a dictionary page"));
        }
        let (buf, encoding) = (page.buf, page.encoding);
        if !matches!(encoding, Encoding::PLAIN | Encoding::PLAIN_DICTIONARY) {
            return Err(Unsupported(format!("dictionary encoding {encoding}")));
        }
        let len = page.num_values;
        match lean.width() {
            Some(width) => {
                let bytes = len
                    .checked_mul(width)
                    .filter(|b| *b <= buf.len())
                    .ok_or_else(|| malformed("dictionary page shorter than its values"))?;
                Ok(Dictionary {
                    data: buf[..bytes].to_vec(),
                    offsets: Vec::new(),
                    len,
                })
            }
            None => {
                let mut data = Vec::with_capacity(buf.len());
                let mut offsets = Vec::with_capacity(len.min(buf.len() / 4) + 1);
                offsets.push(0);
                let mut values = PlainByteArrays::new(buf);
                for _ in 0..len {
                    let value = values.next_value()?;
                    data.extend_from_slice(value);
                    offsets.push(data.len() as u32);
                }
                Ok(Dictionary { data, offsets, len })
            }
        }
    }

    fn value(&self, index: u32, width: Option<usize>) -> Result<&[u8]> {
        let i = index as usize;
        if i >= self.len {
            return Err(malformed("dictionary index past the dictionary"));
        }
        Ok(match width {
            Some(w) => &self.data[i * w..(i + 1) * w],
            None => &self.data[self.offsets[i] as usize..self.offsets[i + 1] as usize],
        })
    }
}

/// `PLAIN` byte arrays: a 4-byte little-endian length, then the bytes, one after the other.
struct PlainByteArrays<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> PlainByteArrays<'a> {
    fn new(data: &'a [u8]) -> Self {
        PlainByteArrays { data, pos: 0 }
    }

    fn next_value(&mut self) -> Result<&'a [u8]> {
        let len = self
            .data
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| malformed("byte array length past the page"))?;
        let len = u32::from_le_bytes(len.try_into().expect("four bytes")) as usize;
        let start = self.pos + 4;
        let value = start
            .checked_add(len)
            .and_then(|end| self.data.get(start..end))
            .ok_or_else(|| malformed("byte array past the page"))?;
        self.pos = start + len;
        Ok(value)
    }
}

/// Calls `f` with each of values `skip..count` of an RLE/bit-packed hybrid sequence of
/// `bit_width`-bit values (at most 32 bits). The values below `skip` are not visited: an RLE
/// run below it is passed over whole, a bit-packed one by its length.
fn hybrid(
    data: &[u8],
    bit_width: u8,
    skip: usize,
    count: usize,
    mut f: impl FnMut(u32),
) -> Result<()> {
    if bit_width > 32 {
        return Err(malformed("bit width above 32"));
    }
    let value_bytes = usize::from(bit_width).div_ceil(8);
    let mask: u64 = if bit_width == 32 {
        u32::MAX as u64
    } else {
        (1u64 << bit_width) - 1
    };
    let mut pos = 0;
    let mut done = 0;
    while done < count {
        let header = uleb128(data, &mut pos)?;
        if header & 1 == 0 {
            // An RLE run: the count, then the value in `value_bytes` little-endian bytes.
            let run = usize::try_from(header >> 1).map_err(|_| malformed("RLE run too long"))?;
            let bytes = data
                .get(pos..pos + value_bytes)
                .ok_or_else(|| malformed("RLE value past the page"))?;
            pos += value_bytes;
            let mut value = 0u32;
            for (i, b) in bytes.iter().enumerate() {
                value |= u32::from(*b) << (8 * i);
            }
            if run == 0 {
                return Err(malformed("empty RLE run"));
            }
            let end = done + run.min(count - done);
            for _ in done.max(skip)..end {
                f(value);
            }
            done = end;
        } else {
            // A bit-packed run: groups of 8 values, `bit_width` bytes per group, LSB first.
            let groups =
                usize::try_from(header >> 1).map_err(|_| malformed("bit-packed run too long"))?;
            let bytes = groups
                .checked_mul(usize::from(bit_width))
                .and_then(|len| data.get(pos..pos.checked_add(len)?))
                .ok_or_else(|| malformed("bit-packed run past the page"))?;
            pos += bytes.len();
            let values = groups * 8;
            if values == 0 {
                return Err(malformed("empty bit-packed run"));
            }
            let take = values.min(count - done);
            for i in skip.saturating_sub(done).min(take)..take {
                let bit = i * usize::from(bit_width);
                let mut word = 0u64;
                for (k, b) in bytes[bit / 8..].iter().take(5).enumerate() {
                    word |= u64::from(*b) << (8 * k);
                }
                f(((word >> (bit % 8)) & mask) as u32);
            }
            done += take;
        }
    }
    Ok(())
}

/// Reads the first `hi` definition levels (bit width 1, RLE/bit-packed hybrid): pushes the
/// validity of rows `lo..hi` onto `valid` and returns the number of values (level 1) before
/// row `lo`. Counts whole runs and bytes (popcount) instead of visiting each level below `lo`.
fn definition_levels(data: &[u8], lo: usize, hi: usize, valid: &mut Vec<bool>) -> Result<usize> {
    let mut pos = 0;
    let mut row = 0;
    let mut skip = 0;
    while row < hi {
        let header = uleb128(data, &mut pos)?;
        let run = usize::try_from(header >> 1).map_err(|_| malformed("level run too long"))?;
        if header & 1 == 0 {
            let level = *data
                .get(pos)
                .ok_or_else(|| malformed("RLE value past the page"))?;
            pos += 1;
            if run == 0 || level > 1 {
                return Err(malformed("bad definition level run"));
            }
            let end = row.saturating_add(run).min(hi);
            let below = lo.saturating_sub(row).min(end - row);
            skip += below * usize::from(level);
            valid.extend(std::iter::repeat_n(level == 1, end - row - below));
            row = end;
        } else {
            // `run` groups of 8 levels, one byte each.
            let bytes = data
                .get(pos..pos.saturating_add(run))
                .ok_or_else(|| malformed("bit-packed run past the page"))?;
            pos += run;
            if run == 0 {
                return Err(malformed("empty bit-packed run"));
            }
            let end = row.saturating_add(run * 8).min(hi);
            let below = lo.saturating_sub(row).min(end - row);
            skip += bytes[..below / 8]
                .iter()
                .map(|b| b.count_ones() as usize)
                .sum::<usize>();
            if below % 8 != 0 {
                skip += (bytes[below / 8] & ((1u8 << (below % 8)) - 1)).count_ones() as usize;
            }
            valid.extend((below..end - row).map(|i| (bytes[i / 8] >> (i % 8)) & 1 == 1));
            row = end;
        }
    }
    Ok(skip)
}

fn uleb128(data: &[u8], pos: &mut usize) -> Result<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *data
            .get(*pos)
            .ok_or_else(|| malformed("run header past the page"))?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(malformed("run header too long"))
}

/// The rows of one column, decoded page by page and appended, then finished into an array.
pub(crate) struct ColumnRows {
    lean: LeanType,
    /// Definition levels present (the column is nullable).
    nullable: bool,
    /// Fixed-width values (NULL rows hold zeros), or the bytes of the byte arrays.
    data: Vec<u8>,
    /// Byte arrays: the end of each row's bytes in `data` (the first row starts at 0).
    ends: Vec<usize>,
    /// Validity of each row.
    valid: Vec<bool>,
}

impl ColumnRows {
    /// Rows of a column of type `lean`, nullable when its `max_def_level` is 1.
    pub(crate) fn new(lean: LeanType, nullable: bool, rows: usize) -> Self {
        ColumnRows {
            lean,
            nullable,
            data: Vec::with_capacity(lean.width().map_or(rows * 16, |w| rows * w)),
            ends: Vec::with_capacity(if lean.width().is_none() { rows } else { 0 }),
            valid: Vec::with_capacity(rows),
        }
    }

    /// Rows appended so far.
    pub(crate) fn len(&self) -> usize {
        self.valid.len()
    }

    /// Appends rows `lo..hi` of the data page `page` (`dictionary`: the column chunk's
    /// dictionary, when the caller has it).
    pub(crate) fn append(
        &mut self,
        page: &PageView,
        dictionary: Option<&Dictionary>,
        lo: usize,
        hi: usize,
    ) -> Result<()> {
        debug_assert!(lo <= hi);
        let (buf, num_values, encoding) = (page.buf, page.num_values, page.encoding);
        let (levels, values): (&[u8], &[u8]) = match page.kind {
            ViewKind::V1 { .. } if !self.nullable => (&[], buf),
            ViewKind::V1 { def_level_encoding } => {
                if def_level_encoding != Encoding::RLE {
                    return Err(Unsupported(format!(
                        "definition levels in {def_level_encoding}"
                    )));
                }
                let len = buf
                    .get(..4)
                    .ok_or_else(|| malformed("definition levels past the page"))?;
                let len = u32::from_le_bytes(len.try_into().expect("four bytes")) as usize;
                let levels = buf
                    .get(4..4usize.saturating_add(len))
                    .ok_or_else(|| malformed("definition levels past the page"))?;
                (levels, &buf[4 + len..])
            }
            ViewKind::V2 { def_len, rep_len } => {
                if rep_len != 0 {
                    return Err(malformed("repetition levels in a flat column"));
                }
                if buf.len() < def_len {
                    return Err(malformed("definition levels past the page"));
                }
                buf.split_at(def_len)
            }
            ViewKind::Dictionary => {
                return Err(malformed("a dictionary page among the data pages"));
            }
        };
        if hi > num_values {
            return Err(malformed("fewer values in the page than its rows"));
        }
        // Which of rows lo..hi hold a value, and how many values come before row lo.
        let first = self.valid.len();
        let skip = if self.nullable {
            definition_levels(levels, lo, hi, &mut self.valid)?
        } else {
            self.valid.resize(first + (hi - lo), true);
            lo
        };
        let take = self.valid[first..].iter().filter(|v| **v).count();
        let width = self.lean.width();
        // The taken values, in order, handed to `put`.
        let mut taken: Vec<&[u8]> = Vec::with_capacity(take);
        match encoding {
            Encoding::PLAIN => match width {
                Some(w) => {
                    let bytes = values
                        .get(skip * w..(skip + take) * w)
                        .ok_or_else(|| malformed("fewer values than levels"))?;
                    taken.extend(bytes.chunks_exact(w));
                }
                None => {
                    let mut arrays = PlainByteArrays::new(values);
                    for _ in 0..skip {
                        arrays.next_value()?;
                    }
                    for _ in 0..take {
                        taken.push(arrays.next_value()?);
                    }
                }
            },
            Encoding::PLAIN_DICTIONARY | Encoding::RLE_DICTIONARY => {
                let dictionary = dictionary
                    .ok_or_else(|| malformed("a dictionary-encoded page without a dictionary"))?;
                let (bit_width, indices) = values
                    .split_first()
                    .ok_or_else(|| malformed("dictionary indices past the page"))?;
                let mut error = None;
                hybrid(indices, *bit_width, skip, skip + take, |index| {
                    if error.is_none() {
                        match dictionary.value(index, width) {
                            Ok(value) => taken.push(value),
                            Err(e) => error = Some(e),
                        }
                    }
                })?;
                if let Some(e) = error {
                    return Err(e);
                }
            }
            other => return Err(Unsupported(format!("value encoding {other}"))),
        }
        debug_assert_eq!(taken.len(), take);
        match width {
            Some(w) => self.data.reserve(w * (self.valid.len() - first)),
            None => {
                self.data.reserve(taken.iter().map(|v| v.len()).sum());
                self.ends.reserve(self.valid.len() - first);
            }
        }
        let mut values = taken.into_iter();
        for row in first..self.valid.len() {
            let value = if self.valid[row] { values.next() } else { None };
            match width {
                Some(w) => match value {
                    Some(v) => self.data.extend_from_slice(v),
                    None => self.data.resize(self.data.len() + w, 0),
                },
                None => {
                    if let Some(v) = value {
                        self.data.extend_from_slice(v);
                    }
                    self.ends.push(self.data.len());
                }
            }
        }
        Ok(())
    }

    /// The rows as an array of the column's Arrow type.
    pub(crate) fn finish(self) -> Result<ArrayRef> {
        let nulls = (self.nullable && self.valid.iter().any(|v| !v))
            .then(|| NullBuffer::new(BooleanBuffer::from(self.valid.as_slice())));
        let ints = |data: &[u8]| -> Vec<i32> {
            data.chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().expect("four bytes")))
                .collect()
        };
        let array: ArrayRef = match self.lean {
            LeanType::Int8 => {
                primitive::<Int8Type>(ints(&self.data).iter().map(|v| *v as i8), nulls)
            }
            LeanType::Int16 => {
                primitive::<Int16Type>(ints(&self.data).iter().map(|v| *v as i16), nulls)
            }
            LeanType::Int32 => primitive::<Int32Type>(ints(&self.data), nulls),
            LeanType::UInt8 => {
                primitive::<UInt8Type>(ints(&self.data).iter().map(|v| *v as u8), nulls)
            }
            LeanType::UInt16 => {
                primitive::<UInt16Type>(ints(&self.data).iter().map(|v| *v as u16), nulls)
            }
            LeanType::UInt32 => {
                primitive::<UInt32Type>(ints(&self.data).iter().map(|v| *v as u32), nulls)
            }
            LeanType::Date32 => primitive::<Date32Type>(ints(&self.data), nulls),
            LeanType::Int64 => primitive::<Int64Type>(
                self.data
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().expect("eight bytes"))),
                nulls,
            ),
            LeanType::UInt64 => primitive::<UInt64Type>(
                self.data
                    .chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().expect("eight bytes"))),
                nulls,
            ),
            LeanType::Float32 => primitive::<Float32Type>(
                self.data
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().expect("four bytes"))),
                nulls,
            ),
            LeanType::Float64 => primitive::<Float64Type>(
                self.data
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().expect("eight bytes"))),
                nulls,
            ),
            LeanType::Binary => bytes::<GenericBinaryType<i32>>(self.data, &self.ends, nulls)?,
            LeanType::LargeBinary => bytes::<GenericBinaryType<i64>>(self.data, &self.ends, nulls)?,
            LeanType::Utf8 => bytes::<GenericStringType<i32>>(self.data, &self.ends, nulls)?,
            LeanType::LargeUtf8 => bytes::<GenericStringType<i64>>(self.data, &self.ends, nulls)?,
        };
        Ok(array)
    }
}

fn primitive<T: ArrowPrimitiveType>(
    values: impl IntoIterator<Item = T::Native>,
    nulls: Option<NullBuffer>,
) -> ArrayRef {
    let values: ScalarBuffer<T::Native> = values.into_iter().collect();
    Arc::new(PrimitiveArray::<T>::new(values, nulls))
}

fn bytes<T: ByteArrayType>(
    data: Vec<u8>,
    ends: &[usize],
    nulls: Option<NullBuffer>,
) -> Result<ArrayRef> {
    let mut offsets: Vec<T::Offset> = Vec::with_capacity(ends.len() + 1);
    offsets.push(T::Offset::default());
    for end in ends {
        let end = T::Offset::from_usize(*end).ok_or_else(|| malformed("page too large"))?;
        offsets.push(end);
    }
    let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
    let array = GenericByteArray::<T>::try_new(offsets, Buffer::from_vec(data), nulls)
        .map_err(|e| malformed(&e.to_string()))?;
    Ok(Arc::new(array))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes `values` as bit-packed runs of `width` bits (8 values a group, zero-padded).
    fn bit_packed(values: &[u32], width: u8) -> Vec<u8> {
        let groups = values.len().div_ceil(8);
        let mut out = vec![((groups << 1) | 1) as u8];
        let mut bits = vec![0u8; groups * usize::from(width)];
        for (i, v) in values.iter().enumerate() {
            for b in 0..usize::from(width) {
                if v >> b & 1 == 1 {
                    let bit = i * usize::from(width) + b;
                    bits[bit / 8] |= 1 << (bit % 8);
                }
            }
        }
        out.extend(bits);
        out
    }

    fn collect(data: &[u8], width: u8, count: usize) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        hybrid(data, width, 0, count, |v| out.push(v))?;
        // Every start gives the same values from there on.
        for skip in 0..=count {
            let mut rest = Vec::new();
            hybrid(data, width, skip, count, |v| rest.push(v))?;
            assert_eq!(rest, out[skip..], "values {skip}..{count}");
        }
        Ok(out)
    }

    #[test]
    fn hybrid_runs_decode() {
        for width in [1u8, 3, 8, 13, 32] {
            let max = if width == 32 {
                u32::MAX
            } else {
                (1 << width) - 1
            };
            let values: Vec<u32> = (0..21u32)
                .map(|i| i.wrapping_mul(2_654_435_761) & max)
                .collect();
            let mut data = bit_packed(&values, width);
            // Then an RLE run of 5 copies of `max`.
            data.push(5 << 1);
            data.extend(&max.to_le_bytes()[..usize::from(width).div_ceil(8)]);
            let mut expected = values.clone();
            // The bit-packed run is padded to 24 values.
            expected.extend([0, 0, 0]);
            expected.extend([max; 5]);
            assert_eq!(collect(&data, width, expected.len()).unwrap(), expected);
            assert_eq!(collect(&data, width, 4).unwrap(), expected[..4]);
            assert!(matches!(
                collect(&data, width, expected.len() + 1),
                Err(PageError::Malformed(_))
            ));
        }
        assert!(collect(&[0x80, 0x80], 1, 1).is_err());
        assert!(collect(&[0], 1, 1).is_err());
        assert!(collect(&[2], 33, 1).is_err());
    }

    /// Rows 1..4 of a nullable column of five rows (NULL, "a", NULL, "bc", "d"): a v1 page
    /// with plain values, and a v2 page with dictionary indices.
    #[test]
    fn v1_and_v2_pages_decode() {
        use arrow::array::{Array, AsArray};
        use bytes::Bytes;
        let levels = bit_packed(&[0, 1, 0, 1, 1], 1);
        let mut v1 = (levels.len() as u32).to_le_bytes().to_vec();
        v1.extend(&levels);
        for value in [&b"a"[..], b"bc", b"d"] {
            v1.extend((value.len() as u32).to_le_bytes());
            v1.extend(value);
        }
        let v1 = Page::DataPage {
            buf: Bytes::from(v1),
            num_values: 5,
            encoding: Encoding::PLAIN,
            def_level_encoding: Encoding::RLE,
            rep_level_encoding: Encoding::RLE,
            statistics: None,
        };
        let mut dictionary_values = Vec::new();
        for value in [&b"d"[..], b"bc", b"a"] {
            dictionary_values.extend((value.len() as u32).to_le_bytes());
            dictionary_values.extend(value);
        }
        let dictionary_page = Page::DictionaryPage {
            buf: Bytes::from(dictionary_values),
            num_values: 3,
            encoding: Encoding::PLAIN,
            is_sorted: false,
        };
        let dictionary =
            Dictionary::decode(LeanType::Utf8, &PageView::of(&dictionary_page)).unwrap();
        let mut v2 = levels.clone();
        v2.push(2);
        v2.extend(bit_packed(&[2, 1, 0], 2));
        let v2 = Page::DataPageV2 {
            buf: Bytes::from(v2),
            num_values: 5,
            encoding: Encoding::RLE_DICTIONARY,
            num_nulls: 2,
            num_rows: 5,
            def_levels_byte_len: levels.len() as u32,
            rep_levels_byte_len: 0,
            is_compressed: false,
            statistics: None,
        };
        for (page, dictionary) in [(&v1, None), (&v2, Some(&dictionary))] {
            let mut rows = ColumnRows::new(LeanType::Utf8, true, 3);
            rows.append(&PageView::of(page), dictionary, 1, 4).unwrap();
            let array = rows.finish().unwrap();
            let strings = array.as_string::<i32>();
            assert_eq!(strings.len(), 3);
            assert_eq!(
                (strings.value(0), strings.is_null(1), strings.value(2)),
                ("a", true, "bc")
            );
        }
        // A dictionary page is needed, and indices must lie within it.
        let mut rows = ColumnRows::new(LeanType::Utf8, true, 3);
        assert!(matches!(
            rows.append(&PageView::of(&v2), None, 1, 4),
            Err(PageError::Malformed(_))
        ));
        let short = Dictionary {
            data: b"d".to_vec(),
            offsets: vec![0, 1],
            len: 1,
        };
        let mut rows = ColumnRows::new(LeanType::Utf8, true, 3);
        assert!(matches!(
            rows.append(&PageView::of(&v2), Some(&short), 1, 4),
            Err(PageError::Malformed(_))
        ));
        // Past the page's values.
        let mut rows = ColumnRows::new(LeanType::Utf8, true, 3);
        assert!(rows.append(&PageView::of(&v1), None, 1, 6).is_err());
    }

    /// `definition_levels` agrees with the general run decoder for every `lo..hi`.
    #[test]
    fn definition_levels_count_and_select() {
        let levels: Vec<u32> = (0..37u32)
            .map(|i| u32::from(i % 3 != 1 && i % 7 != 0))
            .collect();
        let mut data = bit_packed(&levels[..16], 1);
        data.push(5 << 1);
        data.push(1);
        data.push(4 << 1);
        data.push(0);
        data.extend(bit_packed(&levels[25..], 1));
        let mut all = levels[..16].to_vec();
        all.extend([1; 5]);
        all.extend([0; 4]);
        all.extend(&levels[25..]);
        assert_eq!(collect(&data, 1, all.len()).unwrap(), all);
        for lo in 0..=all.len() {
            for hi in lo..=all.len() {
                let mut valid = Vec::new();
                let skip = definition_levels(&data, lo, hi, &mut valid).unwrap();
                assert_eq!(skip, all[..lo].iter().filter(|l| **l == 1).count());
                let expected: Vec<bool> = all[lo..hi].iter().map(|l| *l == 1).collect();
                assert_eq!(valid, expected, "{lo}..{hi}");
            }
        }
        assert!(definition_levels(&data, 0, all.len() + 8, &mut Vec::new()).is_err());
        assert!(definition_levels(&[2 << 1, 2], 0, 1, &mut Vec::new()).is_err());
    }

    #[test]
    fn plain_byte_arrays_are_bounded() {
        let mut page = Vec::new();
        page.extend(3u32.to_le_bytes());
        page.extend(b"abc");
        page.extend(10u32.to_le_bytes());
        page.extend(b"short");
        let mut values = PlainByteArrays::new(&page);
        assert_eq!(values.next_value().unwrap(), b"abc");
        assert!(values.next_value().is_err());
    }
}
