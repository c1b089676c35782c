//! Byte encodings of table rows: the memcomparable primary key ([`key`]) and the row
//! encoding of the other columns ([`row`]).
//!
//! The engine stores and compares rows as `(key bytes, value bytes)` pairs: memtables, the WAL
//! and the merge never look at Arrow types. The codecs are the only place where typed Arrow
//! columns become bytes and back, in batches (column at a time), at the edges: when a write
//! batch enters and when a flush or a scan turns memtable entries into Arrow batches again.

pub mod key;
pub mod row;
pub mod varint;

pub use key::{KeyCodec, KeyValue, prefix_successor};
pub use row::RowCodec;

/// The first index of `range` for which `below` fails, `below` holding for a prefix of the
/// range and failing for the rest (a binary search; `range.end` if it never fails). The one
/// lower-bound search of the engine's indexed key sequences (packed keys, byte rows).
pub(crate) fn partition_index(
    range: std::ops::Range<usize>,
    below: impl Fn(usize) -> bool,
) -> usize {
    let (mut lo, mut hi) = (range.start, range.end);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if below(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// A batch of encoded rows (keys or values): one flat byte buffer plus row offsets.
#[derive(Debug, Clone, Default)]
pub struct ByteRows {
    data: Vec<u8>,
    offsets: Vec<usize>,
}

impl ByteRows {
    /// An empty buffer with room for `rows` rows of about `bytes` bytes in total.
    pub fn with_capacity(rows: usize, bytes: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        ByteRows {
            data: Vec::with_capacity(bytes),
            offsets,
        }
    }

    /// Builds from a flat buffer and `rows + 1` offsets starting at 0.
    pub(crate) fn from_parts(data: Vec<u8>, offsets: Vec<usize>) -> Self {
        debug_assert_eq!(offsets.first().copied(), Some(0));
        debug_assert_eq!(offsets.last().copied(), Some(data.len()));
        debug_assert!(offsets.windows(2).all(|w| w[0] <= w[1]));
        ByteRows { data, offsets }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes of row `i`.
    #[inline]
    pub fn get(&self, i: usize) -> &[u8] {
        &self.data[self.offsets[i]..self.offsets[i + 1]]
    }

    /// Appends one row.
    pub fn push(&mut self, row: &[u8]) {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        self.data.extend_from_slice(row);
        self.offsets.push(self.data.len());
    }

    /// The first row at or after `from` for which `below` fails, the rows being sorted so
    /// that it holds for a prefix of them ([`partition_index`]).
    pub(crate) fn partition_point(&self, from: usize, below: impl Fn(&[u8]) -> bool) -> usize {
        partition_index(from.min(self.len())..self.len(), |i| below(self.get(i)))
    }

    /// Iterates over the rows in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        (0..self.len()).map(move |i| self.get(i))
    }

    /// Total bytes of all rows.
    pub fn data_len(&self) -> usize {
        self.data.len()
    }
}
