//! Ascending encoded keys packed for point lookups: the keys of a cached key block and the
//! first keys of a file's key index.
//!
//! The keys' common prefix is stored once; the rest of each key (its *suffix*) is stored
//! without a per-key offset when the suffixes share one width, and as a big-endian integer
//! (`u32` or `u64`) when that width is at most 8 bytes, so a binary search compares integers
//! instead of calling `memcmp`. Sorted keys share long prefixes (the key-value benchmark's
//! 16-byte keys keep 3 or 4 bytes of suffix in a block of 256 rows), so a key block takes a
//! fraction of the bytes of its keys.
//!
//! The prefix is kept inside the struct (up to [`PREFIX_BYTES`]; a longer common prefix is
//! cut there), and the integer suffixes have a sample of every [`STRIDE`]th value in front,
//! so a search of a cold key block touches few cache lines: the struct, one line of samples
//! (for a block of 256 keys), one line of values.
//!
//! Invariants: the keys are ascending (checked by the constructor); a search answers exactly
//! what the same search over the unpacked keys answers (byte-wise order, a shorter key before
//! the longer keys it is a prefix of).

use std::cmp::Ordering;

use crate::codec::{ByteRows, partition_index};

/// Longest prefix kept.
pub const PREFIX_BYTES: usize = 24;

/// Every `STRIDE`th integer suffix is sampled for the first level of a search.
const STRIDE: usize = 16;

/// Ascending keys, packed (see the module docs).
#[derive(Debug)]
pub struct SortedKeys {
    /// The prefix every key starts with (`prefix_len` bytes).
    prefix: [u8; PREFIX_BYTES],
    prefix_len: usize,
    suffixes: Suffixes,
    len: usize,
}

/// The keys past their common prefix.
#[derive(Debug)]
enum Suffixes {
    /// One width of at most 4 bytes, big-endian in the low bytes of each value.
    U32 { values: Sampled<u32>, width: usize },
    /// One width of 5 to 8 bytes, big-endian in the low bytes of each value.
    U64 { values: Sampled<u64>, width: usize },
    /// One wider width, packed back to back.
    Fixed { data: Vec<u8>, width: usize },
    /// Several widths.
    Variable(ByteRows),
}

/// Ascending integers with every [`STRIDE`]th one sampled: `data` holds the samples, then the
/// values.
#[derive(Debug)]
struct Sampled<T> {
    data: Vec<T>,
    samples: usize,
}

impl<T: Copy + Into<u64>> Sampled<T> {
    fn new(values: impl ExactSizeIterator<Item = T>) -> Self {
        let len = values.len();
        let samples = len.div_ceil(STRIDE);
        let mut data = Vec::with_capacity(samples + len);
        data.extend(values);
        debug_assert_eq!(data.len(), len);
        let sampled: Vec<T> = data.iter().step_by(STRIDE).copied().collect();
        data.splice(0..0, sampled);
        debug_assert_eq!(data.len(), samples + len);
        Sampled { data, samples }
    }

    fn values(&self) -> &[T] {
        &self.data[self.samples..]
    }

    fn bytes(&self) -> usize {
        self.data.capacity() * std::mem::size_of::<T>()
    }

    /// The number of values for which `below` holds (it holds for a leading run): a search of
    /// the samples, then of the one stride they point to.
    #[inline]
    fn partition(&self, below: impl Fn(u64) -> bool) -> usize {
        let (samples, values) = self.data.split_at(self.samples);
        let s = samples.partition_point(|v| below((*v).into()));
        if s == 0 {
            return 0;
        }
        let start = (s - 1) * STRIDE;
        let end = (s * STRIDE).min(values.len());
        start + values[start..end].partition_point(|v| below((*v).into()))
    }
}

/// `bytes` (at most 8) as a big-endian integer.
#[inline]
fn be(bytes: &[u8]) -> u64 {
    debug_assert!(bytes.len() <= 8);
    bytes.iter().fold(0u64, |v, b| (v << 8) | u64::from(*b))
}

/// Where a probe stands against fixed-width suffixes of `width` bytes packed as integers:
/// the number of suffixes below it is the number of values `< bound` (`inclusive` false) or
/// `<= bound` (`inclusive` true).
#[derive(Debug, Clone, Copy)]
struct IntProbe {
    bound: u64,
    inclusive: bool,
}

impl IntProbe {
    /// A probe suffix `rest` against suffixes of `width` bytes. A shorter probe is padded with
    /// zero bytes: a suffix is below it exactly when it is below the padded value. A longer
    /// one is cut to `width`: a suffix is below it exactly when it is at or below the cut.
    fn new(rest: &[u8], width: usize) -> IntProbe {
        match rest.len().cmp(&width) {
            Ordering::Equal => IntProbe {
                bound: be(rest),
                inclusive: false,
            },
            Ordering::Less => IntProbe {
                // An empty probe pads to 0 (a shift by 64 bits would overflow).
                bound: be(rest)
                    .checked_shl(8 * (width - rest.len()) as u32)
                    .unwrap_or(0),
                inclusive: false,
            },
            Ordering::Greater => IntProbe {
                bound: be(&rest[..width]),
                inclusive: true,
            },
        }
    }

    #[inline]
    fn below(&self, value: u64) -> bool {
        if self.inclusive {
            value <= self.bound
        } else {
            value < self.bound
        }
    }
}

impl SortedKeys {
    /// Packs `keys` (ascending); `None` when they are not ascending.
    pub fn new<'a>(keys: impl ExactSizeIterator<Item = &'a [u8]> + Clone) -> Option<SortedKeys> {
        let len = keys.len();
        let mut iter = keys.clone();
        let Some(first) = iter.next() else {
            return Some(SortedKeys {
                prefix: [0; PREFIX_BYTES],
                prefix_len: 0,
                suffixes: Suffixes::Variable(ByteRows::with_capacity(0, 0)),
                len: 0,
            });
        };
        // Ascending keys share the prefix common to the first and the last.
        let mut previous = first;
        let mut last = first;
        let mut width = Some(first.len());
        for key in iter {
            if key < previous {
                return None;
            }
            if width != Some(key.len()) {
                width = None;
            }
            previous = key;
            last = key;
        }
        let shared = first
            .iter()
            .zip(last)
            .take(PREFIX_BYTES)
            .take_while(|(a, b)| a == b)
            .count();
        let mut prefix = [0; PREFIX_BYTES];
        prefix[..shared].copy_from_slice(&first[..shared]);
        let suffixes = match width.map(|w| w - shared) {
            Some(width) if width <= 4 => Suffixes::U32 {
                values: Sampled::new(keys.map(|k| be(&k[shared..]) as u32)),
                width,
            },
            Some(width) if width <= 8 => Suffixes::U64 {
                values: Sampled::new(keys.map(|k| be(&k[shared..]))),
                width,
            },
            Some(width) => {
                let mut data = Vec::with_capacity(len * width);
                keys.for_each(|k| data.extend_from_slice(&k[shared..]));
                Suffixes::Fixed { data, width }
            }
            None => {
                let total = keys.clone().map(|k| k.len() - shared).sum();
                let mut rows = ByteRows::with_capacity(len, total);
                keys.for_each(|k| rows.push(&k[shared..]));
                Suffixes::Variable(rows)
            }
        };
        Some(SortedKeys {
            prefix,
            prefix_len: shared,
            suffixes,
            len,
        })
    }

    /// The common prefix kept.
    #[inline]
    fn prefix(&self) -> &[u8] {
        &self.prefix[..self.prefix_len]
    }

    /// Packs the keys of `rows` (ascending); `None` when they are not ascending.
    pub fn from_rows(rows: &ByteRows) -> Option<SortedKeys> {
        SortedKeys::new((0..rows.len()).map(|i| rows.get(i)))
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no keys.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Memory held.
    pub fn bytes(&self) -> usize {
        let suffixes = match &self.suffixes {
            Suffixes::U32 { values, .. } => values.bytes(),
            Suffixes::U64 { values, .. } => values.bytes(),
            Suffixes::Fixed { data, .. } => data.capacity(),
            Suffixes::Variable(rows) => rows.data_len() + rows.len() * 8,
        };
        std::mem::size_of::<Self>() + suffixes
    }

    /// The number of keys below `key` (a binary search).
    #[inline]
    pub fn lower_bound(&self, key: &[u8]) -> usize {
        let prefix = self.prefix();
        let shared = prefix.len();
        if key.len() < shared || key[..shared] != *prefix {
            // Every key starts with the prefix: all of them are above `key` or all below.
            return if key < prefix { 0 } else { self.len };
        }
        let rest = &key[shared..];
        match &self.suffixes {
            Suffixes::U32 { values, width } => {
                let probe = IntProbe::new(rest, *width);
                values.partition(|v| probe.below(v))
            }
            Suffixes::U64 { values, width } => {
                let probe = IntProbe::new(rest, *width);
                values.partition(|v| probe.below(v))
            }
            Suffixes::Fixed { data, width } => {
                partition_index(0..self.len, |i| &data[i * width..(i + 1) * width] < rest)
            }
            Suffixes::Variable(rows) => rows.partition_point(0, |row| row < rest),
        }
    }

    /// True when key `i` is `key`.
    #[inline]
    pub fn eq(&self, i: usize, key: &[u8]) -> bool {
        debug_assert!(i < self.len);
        let prefix = self.prefix();
        let shared = prefix.len();
        if key.len() < shared || key[..shared] != *prefix {
            return false;
        }
        let rest = &key[shared..];
        match &self.suffixes {
            Suffixes::U32 { values, width } => {
                rest.len() == *width && u64::from(values.values()[i]) == be(rest)
            }
            Suffixes::U64 { values, width } => {
                rest.len() == *width && values.values()[i] == be(rest)
            }
            Suffixes::Fixed { data, width } => &data[i * width..(i + 1) * width] == rest,
            Suffixes::Variable(rows) => rows.get(i) == rest,
        }
    }

    /// Key `i`, unpacked (for tests and diagnostics).
    pub fn get(&self, i: usize) -> Vec<u8> {
        let mut key = self.prefix().to_vec();
        match &self.suffixes {
            Suffixes::U32 { values, width } => {
                key.extend_from_slice(&values.values()[i].to_be_bytes()[4 - width..])
            }
            Suffixes::U64 { values, width } => {
                key.extend_from_slice(&values.values()[i].to_be_bytes()[8 - width..])
            }
            Suffixes::Fixed { data, width } => {
                key.extend_from_slice(&data[i * width..(i + 1) * width])
            }
            Suffixes::Variable(rows) => key.extend_from_slice(rows.get(i)),
        }
        key
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn check(keys: &[Vec<u8>], probes: &[Vec<u8>]) {
        let packed = SortedKeys::new(keys.iter().map(Vec::as_slice)).expect("ascending");
        assert_eq!(packed.len(), keys.len());
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(&packed.get(i), key);
        }
        for probe in probes.iter().chain(keys) {
            let expected = keys.partition_point(|k| k < probe);
            assert_eq!(packed.lower_bound(probe), expected, "{keys:?} {probe:?}");
            for (i, key) in keys.iter().enumerate() {
                assert_eq!(packed.eq(i, probe), key == probe, "{keys:?} {probe:?} {i}");
            }
        }
    }

    #[test]
    fn searches_answer_as_over_the_unpacked_keys() {
        let keys: Vec<Vec<u8>> = [100u64, 102, 104, 350, 352, 512]
            .iter()
            .map(|k| format!("{k:016}").into_bytes())
            .collect();
        let probes: Vec<Vec<u8>> = [0u64, 101, 103, 351, 511, 513, 99999]
            .iter()
            .map(|k| format!("{k:016}").into_bytes())
            .chain([
                b"".to_vec(),
                b"0000000000000".to_vec(),
                b"00000000000001".to_vec(),
                b"000000000000010".to_vec(),
                b"00000000000001000".to_vec(),
                b"0000000000000104\x00".to_vec(),
                b"1".to_vec(),
            ])
            .collect();
        check(&keys, &probes);
        // Suffixes of every packing: 1..4 bytes, 5..8, wider, several widths, none.
        for width in [1usize, 3, 4, 5, 8, 9, 20] {
            let keys: Vec<Vec<u8>> = (0..50u8)
                .map(|i| {
                    let mut key = b"pre".to_vec();
                    key.extend(std::iter::repeat_n(0u8, width - 1));
                    key.push(i * 5);
                    key
                })
                .collect();
            check(&keys, &probes);
        }
        // More keys than a stride, a prefix longer than the one kept.
        let long: Vec<Vec<u8>> = (0..300u64)
            .map(|k| format!("{:040}", k * 3).into_bytes())
            .collect();
        let long_probes: Vec<Vec<u8>> = (0..905u64)
            .map(|k| format!("{k:040}").into_bytes())
            .collect();
        check(&long, &long_probes);
        // A probe that is exactly the prefix, against 8-byte suffixes.
        let wide: Vec<Vec<u8>> = (1..4u64)
            .map(|k| [b"p".as_slice(), &(k << 56).to_be_bytes()].concat())
            .collect();
        check(&wide, &[b"p".to_vec(), b"".to_vec(), b"q".to_vec()]);
        check(&[b"a".to_vec(), b"ab".to_vec(), b"abc".to_vec()], &probes);
        check(&[b"k".to_vec(), b"k".to_vec(), b"k".to_vec()], &probes);
        check(&[], &probes);
        assert!(SortedKeys::new([b"b".as_slice(), b"a".as_slice()].into_iter()).is_none());
    }

    proptest! {
        #[test]
        fn any_sorted_keys_search_as_unpacked(
            mut keys in prop::collection::vec(prop::collection::vec(0u8..4, 0..12), 0..80),
            fixed in 0usize..30,
            probes in prop::collection::vec(prop::collection::vec(0u8..4, 0..13), 0..20),
        ) {
            if fixed > 0 {
                keys.iter_mut().for_each(|k| k.resize(fixed, 1));
            }
            keys.sort();
            check(&keys, &probes);
        }
    }
}
