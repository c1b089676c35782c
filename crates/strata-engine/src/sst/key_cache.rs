//! The key cache: the encoded primary key of every row of an SST, in file order, kept in
//! memory so the engine finds the rows holding given keys without reading the file again.
//! Three readers use it: a scan plan resolving its memtable overlay against the base files
//! (`read::plan`: the base rows a newer overlay version or tombstone hides become row
//! positions, so the scan needs no anti-join), a flush's deletion-vector pass (`db::dvs`:
//! the rows of older files that the new file's keys supersede), and point lookups whose key
//! block is not in the block cache (`SstReader::get_columns`: the row is found here instead
//! of in the key, `_seq` and `_op` pages of its block, when the file allows it).
//!
//! Filled two ways: by the writers of new files (a flush, a compaction, a bulk load gather the
//! keys as they write them, [`KeyCollector`], and insert them when the file is complete), so
//! the first plan or DV pass after a compaction does not read millions of keys back; and on a
//! miss, by one pass over the file's key columns.
//!
//! Bounded by bytes (`Options::key_cache_bytes`), shared by all tables of a database,
//! evicting with the CLOCK-Pro policy of `quick_cache`. A file's keys are loaded whole (one
//! pass over its key columns) or not at all; a file whose keys alone would take more than a
//! quarter of the capacity is never cached (the callers then read its key column as before).
//!
//! Invariants: a [`FileKeys`] holds exactly the file's rows, in file order (ascending key, the
//! versions of a key adjacent); it never changes (SSTs are immutable) and is keyed by the
//! file's id, which a database never reuses.

use std::ops::Range;
use std::sync::Arc;

use roaring::RoaringBitmap;

use crate::codec::{ByteRows, partition_index};
use crate::types::FileId;

/// The encoded key of every row of one SST, in file order, with a sparse index over them.
///
/// The sparse index holds the *word* of every [`SPARSE_STRIDE`]th key: the 8 bytes after the
/// prefix all the file's keys share, big-endian (zero-padded). Words are in key order, and a
/// smaller (larger) word means a smaller (larger) key, so a search narrows the rows to one
/// stride in the index (8 bytes a stride, in the processor's caches) before it reads a key;
/// only keys with equal words need the keys themselves.
#[derive(Debug)]
pub struct FileKeys {
    rows: KeyRows,
    /// Length of the prefix every key of the file shares.
    shared: usize,
    /// The word of row `i * SPARSE_STRIDE`, for each such row.
    sparse: Vec<u64>,
}

/// Rows per entry of a [`FileKeys`] sparse index.
const SPARSE_STRIDE: usize = 32;

/// The 8 bytes of `key` after its first `shared`, big-endian, zero-padded.
#[inline(always)]
fn key_word(key: &[u8], shared: usize) -> u64 {
    let rest = key.get(shared..).unwrap_or_default();
    match rest.first_chunk::<8>() {
        Some(word) => u64::from_be_bytes(*word),
        None => {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            u64::from_be_bytes(word)
        }
    }
}

/// Key storage: keys of one width packed without offsets (an `Int64` key, any fixed-width
/// key), or a general [`ByteRows`].
#[derive(Debug)]
enum KeyRows {
    Fixed {
        data: Vec<u8>,
        width: usize,
        len: usize,
    },
    Variable(ByteRows),
}

impl FileKeys {
    /// Wraps the keys of a file (in file order), packing them when they share one width.
    pub fn new(rows: ByteRows) -> Self {
        let width = rows.iter().next().map_or(0, <[u8]>::len);
        let rows = if width > 0 && rows.iter().all(|k| k.len() == width) {
            let len = rows.len();
            let mut data = Vec::with_capacity(len * width);
            for key in rows.iter() {
                data.extend_from_slice(key);
            }
            KeyRows::Fixed { data, width, len }
        } else {
            KeyRows::Variable(rows)
        };
        FileKeys::indexed(rows)
    }

    /// The keys `rows` (in file order) with their sparse index.
    fn indexed(rows: KeyRows) -> Self {
        let mut keys = FileKeys {
            rows,
            shared: 0,
            sparse: Vec::new(),
        };
        debug_assert!(
            (1..keys.len()).all(|i| keys.get(i - 1) <= keys.get(i)),
            "file keys must be in ascending order"
        );
        if let Some(last) = keys.len().checked_sub(1) {
            // Sorted keys: what the first and last share, every key shares.
            let (first, last) = (keys.get(0), keys.get(last));
            keys.shared = first.iter().zip(last).take_while(|(a, b)| a == b).count();
            keys.sparse = (0..keys.len())
                .step_by(SPARSE_STRIDE)
                .map(|i| key_word(keys.get(i), keys.shared))
                .collect();
        }
        keys
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        match &self.rows {
            KeyRows::Fixed { len, .. } => *len,
            KeyRows::Variable(rows) => rows.len(),
        }
    }

    /// True when the file has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The key of row `i`.
    #[inline]
    pub fn get(&self, i: usize) -> &[u8] {
        match &self.rows {
            KeyRows::Fixed { data, width, .. } => &data[i * width..(i + 1) * width],
            KeyRows::Variable(rows) => rows.get(i),
        }
    }

    /// The number of leading rows whose key is below `key` (binary search).
    #[inline]
    pub fn lower_bound(&self, key: &[u8]) -> usize {
        self.lower_bound_in(0..self.len(), key)
    }

    /// The first row of `rows` whose key is not below `key`, or `rows.end` (binary search
    /// within `rows`, which must lie within the file's rows).
    #[inline]
    pub fn lower_bound_in(&self, rows: Range<usize>, key: &[u8]) -> usize {
        debug_assert!(rows.start <= rows.end && rows.end <= self.len());
        partition_index(rows, |i| self.get(i) < key)
    }

    /// Memory held.
    pub fn bytes(&self) -> usize {
        let index = self.sparse.capacity() * 8 + 64;
        index
            + match &self.rows {
                KeyRows::Fixed { data, .. } => data.capacity(),
                KeyRows::Variable(rows) => rows.data_len() + rows.len() * 8,
            }
    }

    /// Calls `matched(j, rows)` for each `(j, key)` of `keys` (ascending, distinct keys) that
    /// the file holds, with the rows holding it: a galloping walk, so a caller walking
    /// ascending keys pays the log of each step, not of the file.
    fn walk<'a>(
        &self,
        keys: impl IntoIterator<Item = (usize, &'a [u8])>,
        matched: impl FnMut(usize, Range<usize>),
    ) {
        // One walk per storage, so the row accessor is inlined into the search.
        match &self.rows {
            KeyRows::Fixed { data, width, len } => {
                let width = *width;
                let rows = Rows {
                    len: *len,
                    row: |i| &data[i * width..(i + 1) * width],
                    shared: self.shared,
                    sparse: &self.sparse,
                };
                walk_rows(&rows, keys, matched);
            }
            KeyRows::Variable(variable) => {
                let rows = Rows {
                    len: variable.len(),
                    row: |i| variable.get(i),
                    shared: self.shared,
                    sparse: &self.sparse,
                };
                walk_rows(&rows, keys, matched);
            }
        }
    }

    /// Adds to `positions` every row whose key is one of `keys` (ascending, distinct) and
    /// returns how many rows that was.
    pub fn mark<'a>(
        &self,
        keys: impl IntoIterator<Item = &'a [u8]>,
        positions: &mut RoaringBitmap,
    ) -> u64 {
        let mut marked = 0u64;
        self.walk(keys.into_iter().map(|k| (0, k)), |_, rows| {
            marked += rows.len() as u64;
            positions.insert_range(rows.start as u32..rows.end as u32);
        });
        marked
    }

    /// The rows holding a *live* version of each of `keys` (ascending, distinct), `deleted`
    /// being the file's rows that are not live: calls `found(j, rows)`, with every row of the
    /// key, for each `(j, key)` of which some row is live.
    ///
    /// Where at most one row of a key is live across the files being searched (the base of a
    /// version whose DVs are complete), a key found live in one file is done: its rows in
    /// every other file are already deleted, so the caller need not look there.
    pub fn find_live<'a>(
        &self,
        keys: impl IntoIterator<Item = (usize, &'a [u8])>,
        deleted: Option<&RoaringBitmap>,
        mut found: impl FnMut(usize, Range<usize>),
    ) {
        self.walk(keys, |j, rows| {
            let live = deleted.is_none_or(|d| rows.clone().any(|r| !d.contains(r as u32)));
            if live {
                found(j, rows);
            }
        });
    }
}

/// The rows of a [`FileKeys`] as its searches see them: `len` keys, `row(i)` the key of row
/// `i`, and the sparse index (`shared`, `sparse`).
struct Rows<'s, F> {
    len: usize,
    row: F,
    shared: usize,
    sparse: &'s [u64],
}

/// [`FileKeys::walk`] over `rows`.
#[inline]
fn walk_rows<'k, 'a>(
    rows: &Rows<'_, impl Fn(usize) -> &'k [u8]>,
    keys: impl IntoIterator<Item = (usize, &'a [u8])>,
    mut matched: impl FnMut(usize, Range<usize>),
) {
    let (len, row) = (rows.len, &rows.row);
    let mut cursor = 0usize;
    let mut previous: Option<&[u8]> = None;
    for (j, key) in keys {
        debug_assert!(
            previous.is_none_or(|p| p < key),
            "keys must be ascending and distinct"
        );
        previous = Some(key);
        cursor = seek(rows, cursor, key);
        if cursor == len {
            break;
        }
        let first = cursor;
        while cursor < len && compare_keys(row(cursor), key).is_eq() {
            cursor += 1;
        }
        if cursor > first {
            matched(j, first..cursor);
        }
    }
}

/// The first row at or after `from` whose key is not below `key` (`len` if none). The
/// sparse index narrows the rows to those between two entries whose words are below and
/// above the key's (galloping from `from`'s entry, so a walk over ascending keys pays the log
/// of each step); only those rows' keys are read.
#[inline]
fn seek<'k>(rows: &Rows<'_, impl Fn(usize) -> &'k [u8]>, from: usize, key: &[u8]) -> usize {
    let (len, row) = (rows.len, &rows.row);
    let below = |i: usize| compare_keys(row(i), key).is_lt();
    if from >= len {
        return len;
    }
    // A key outside the shared prefix is below or above every row.
    let prefix = &row(0)[..rows.shared];
    match key
        .get(..rows.shared)
        .map_or(key.cmp(prefix), |k| k.cmp(prefix))
    {
        std::cmp::Ordering::Less => return from,
        std::cmp::Ordering::Greater => return len,
        std::cmp::Ordering::Equal => {}
    }
    let word = key_word(key, rows.shared);
    let sparse = rows.sparse;
    debug_assert_eq!(sparse.len(), len.div_ceil(SPARSE_STRIDE));
    // Entries from `from`'s on: the last whose word is below the key's (its row is below the
    // key), then the first whose word is above it (its row is above the key).
    let start = from / SPARSE_STRIDE;
    let after_below = gallop(start, sparse.len(), |s| sparse[s] < word);
    let above = gallop(after_below, sparse.len(), |s| sparse[s] <= word);
    let lo = match after_below.checked_sub(1) {
        Some(s) if s >= start => (s * SPARSE_STRIDE + 1).max(from),
        _ => from,
    };
    let hi = (above * SPARSE_STRIDE).min(len);
    if lo >= hi {
        return lo.min(len);
    }
    partition_index(lo..hi, below)
}

/// The first index in `from..len` at which `below` turns false (`len` if it never does),
/// `below` being true up to some index and false after: a galloping search from `from`.
#[inline(always)]
fn gallop(from: usize, len: usize, below: impl Fn(usize) -> bool) -> usize {
    if from >= len || !below(from) {
        return from.min(len);
    }
    // below(lo); find hi with !below(hi) (or hi = len).
    let (mut lo, mut step) = (from, 1usize);
    let hi = loop {
        let probe = lo.saturating_add(step);
        if probe >= len {
            break len;
        }
        if !below(probe) {
            break probe;
        }
        lo = probe;
        step = step.saturating_mul(2);
    };
    partition_index(lo + 1..hi, below)
}

/// The byte order of two encoded keys, as `a.cmp(b)`: keys of 8 bytes or more compare their
/// first 8 as one big-endian word first (inlined, where a slice comparison calls `memcmp`;
/// encoded keys mostly differ there).
#[inline(always)]
fn compare_keys(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    if let (Some((x, a_rest)), Some((y, b_rest))) =
        (a.split_first_chunk::<8>(), b.split_first_chunk::<8>())
    {
        let (x, y) = (u64::from_be_bytes(*x), u64::from_be_bytes(*y));
        if x != y {
            return x.cmp(&y);
        }
        return a_rest.cmp(b_rest);
    }
    a.cmp(b)
}

/// Gathers the keys of a file while it is written (a flush, a compaction and a bulk load
/// encode every key anyway), so the key cache holds them without reading the file back: the
/// next scan plan or deletion-vector pass that needs them finds them there.
///
/// Bounded: once the keys gathered outgrow `limit_bytes` (what the cache admits), the
/// collector frees them and gathers nothing more.
#[derive(Debug)]
pub struct KeyCollector {
    rows: KeyRows,
    limit_bytes: usize,
    expected_rows: usize,
    gave_up: bool,
}

impl KeyCollector {
    /// A collector for a file of about `expected_rows` rows, giving up past `limit_bytes`.
    pub fn new(limit_bytes: usize, expected_rows: u64) -> Self {
        KeyCollector {
            rows: KeyRows::Fixed {
                data: Vec::new(),
                width: 0,
                len: 0,
            },
            limit_bytes,
            expected_rows: usize::try_from(expected_rows).unwrap_or(usize::MAX),
            gave_up: false,
        }
    }

    /// Appends the key of the next row (rows come in file order).
    pub fn push(&mut self, key: &[u8]) {
        if self.gave_up {
            return;
        }
        match &mut self.rows {
            KeyRows::Fixed { data, width, len } if *len == 0 && !key.is_empty() => {
                // Room for the expected rows at the first key's width, at most 1 MiB ahead
                // (an estimate can be far too high); past that the vector grows as it fills.
                let bytes = self.expected_rows.saturating_mul(key.len());
                data.reserve_exact(bytes.min(self.limit_bytes).min(1 << 20));
                *width = key.len();
                data.extend_from_slice(key);
                *len = 1;
            }
            KeyRows::Fixed { data, width, len } if *width == key.len() && *len > 0 => {
                data.extend_from_slice(key);
                *len += 1;
            }
            KeyRows::Fixed { data, width, len } => {
                // A key of another width (or an empty first key): fall back to offsets.
                let mut rows = ByteRows::with_capacity(*len + 1, data.len() + key.len());
                for row in 0..*len {
                    rows.push(&data[row * *width..(row + 1) * *width]);
                }
                rows.push(key);
                self.rows = KeyRows::Variable(rows);
            }
            KeyRows::Variable(rows) => rows.push(key),
        }
        let held = match &self.rows {
            KeyRows::Fixed { data, .. } => data.len(),
            KeyRows::Variable(rows) => rows.data_len() + rows.len() * 8,
        };
        if held > self.limit_bytes {
            self.gave_up = true;
            self.rows = KeyRows::Variable(ByteRows::default());
        }
    }

    /// The keys gathered, unless the collector gave up.
    pub fn finish(self) -> Option<FileKeys> {
        if self.gave_up {
            return None;
        }
        let rows = match self.rows {
            KeyRows::Fixed {
                mut data,
                width,
                len,
            } => {
                // Give back a large unused tail (an estimate of the rows that was too high).
                if data.capacity() - data.len() > data.len() / 8 {
                    data.shrink_to_fit();
                }
                KeyRows::Fixed { data, width, len }
            }
            variable => variable,
        };
        Some(FileKeys::indexed(rows))
    }
}

#[derive(Clone)]
struct KeysWeighter;

impl quick_cache::Weighter<FileId, Arc<FileKeys>> for KeysWeighter {
    fn weight(&self, _file: &FileId, keys: &Arc<FileKeys>) -> u64 {
        keys.bytes() as u64
    }
}

/// A byte-bounded cache of [`FileKeys`], shared by all tables of a database.
pub struct KeyCache {
    cache: Option<quick_cache::sync::Cache<FileId, Arc<FileKeys>, KeysWeighter>>,
    capacity: usize,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("bytes", &self.bytes())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl KeyCache {
    /// A cache holding at most `capacity_bytes` (0 disables it).
    pub fn new(capacity_bytes: usize) -> Self {
        let cache = (capacity_bytes > 0).then(|| {
            // One shard: `quick_cache` splits its capacity into equal shards (by default four
            // per core, each bounded alone), and a file's keys are few large items (up to a
            // quarter of the capacity) that must not compete for an eighth of it. Lookups are
            // per file and plan, not per row: one lock is no contention. New files' keys come
            // in as the old files' leave (recency, not frequency): half the room is for items
            // not yet used twice.
            let options = quick_cache::OptionsBuilder::new()
                // Estimate items from a file of ~1 MiB of keys.
                .estimated_items_capacity((capacity_bytes >> 20).max(16))
                .weight_capacity(capacity_bytes as u64)
                .shards(1)
                .hot_allocation(0.5)
                .build()
                .expect("the key cache's options are complete");
            quick_cache::sync::Cache::with_options(
                options,
                KeysWeighter,
                Default::default(),
                Default::default(),
            )
        });
        KeyCache {
            cache,
            capacity: capacity_bytes,
        }
    }

    /// The cached keys of `file`, if any.
    pub fn get(&self, file: FileId) -> Option<Arc<FileKeys>> {
        self.cache.as_ref()?.get(&file)
    }

    /// True when keys of about `bytes` bytes may be cached: at most a quarter of the
    /// capacity, so one large file cannot evict every other.
    pub fn admits(&self, bytes: usize) -> bool {
        self.cache.is_some() && bytes <= self.admission_limit()
    }

    /// The most bytes of keys of one file the cache admits (0 when it is disabled).
    pub fn admission_limit(&self) -> usize {
        if self.cache.is_some() {
            self.capacity / 4
        } else {
            0
        }
    }

    /// Caches the keys of `file` (when [`KeyCache::admits`] their size).
    pub fn insert(&self, file: FileId, keys: Arc<FileKeys>) {
        if let Some(cache) = &self.cache
            && self.admits(keys.bytes())
        {
            cache.insert(file, keys);
        }
    }

    /// Drops the keys of `file` (a file deleted for good: its id is never used again).
    pub fn remove(&self, file: FileId) {
        if let Some(cache) = &self.cache {
            cache.remove(&file);
        }
    }

    /// Bytes currently cached.
    pub fn bytes(&self) -> u64 {
        self.cache.as_ref().map_or(0, |c| c.weight())
    }

    /// Capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.capacity as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rows(keys: &[Vec<u8>]) -> ByteRows {
        let mut rows = ByteRows::with_capacity(keys.len(), 0);
        for key in keys {
            rows.push(key);
        }
        rows
    }

    proptest! {
        /// `mark` finds exactly the rows a linear scan finds, for fixed-width and variable
        /// keys, with repeated keys (several versions) in the file.
        #[test]
        fn mark_is_set_membership(
            mut file in proptest::collection::vec(0u16..200, 0..300),
            probe in proptest::collection::btree_set(0u16..220, 0..60),
            fixed in any::<bool>(),
        ) {
            file.sort_unstable();
            let encode = |v: u16| -> Vec<u8> {
                if fixed {
                    v.to_be_bytes().to_vec()
                } else {
                    // Variable width, still ordered: the value's decimal digits, zero-padded
                    // to a length that grows with it.
                    let digits = format!("{v:03}");
                    let mut key = vec![digits.len() as u8];
                    key.extend(digits.bytes());
                    key
                }
            };
            let keys = FileKeys::new(rows(&file.iter().map(|v| encode(*v)).collect::<Vec<_>>()));
            prop_assert_eq!(keys.len(), file.len());
            let probe_keys: Vec<Vec<u8>> = probe.iter().map(|v| encode(*v)).collect();
            let mut got = RoaringBitmap::new();
            let marked = keys.mark(probe_keys.iter().map(Vec::as_slice), &mut got);
            let want: RoaringBitmap = file
                .iter()
                .enumerate()
                .filter(|(_, v)| probe.contains(v))
                .map(|(i, _)| i as u32)
                .collect();
            prop_assert_eq!(marked, want.len());
            prop_assert_eq!(got, want);
        }

        /// `find_live` reports exactly the probe keys with a row outside `deleted`, each with
        /// all of its rows, and the probe's own indices.
        #[test]
        fn find_live_reports_keys_with_a_live_row(
            mut file in proptest::collection::vec(0u16..100, 0..200),
            probe in proptest::collection::btree_set(0u16..110, 0..40),
            deleted in proptest::collection::btree_set(0u32..200, 0..150),
        ) {
            file.sort_unstable();
            let keys = FileKeys::new(rows(
                &file.iter().map(|v| v.to_be_bytes().to_vec()).collect::<Vec<_>>(),
            ));
            let deleted: RoaringBitmap = deleted.into_iter().collect();
            let probe: Vec<u16> = probe.into_iter().collect();
            let encoded: Vec<[u8; 2]> = probe.iter().map(|v| v.to_be_bytes()).collect();
            let mut got = Vec::new();
            keys.find_live(
                encoded.iter().enumerate().map(|(j, k)| (j * 3, k.as_slice())),
                Some(&deleted),
                |j, rows| got.push((j, rows)),
            );
            let mut want = Vec::new();
            for (j, v) in probe.iter().enumerate() {
                let rows: Vec<usize> = (0..file.len()).filter(|i| file[*i] == *v).collect();
                if rows.iter().any(|r| !deleted.contains(*r as u32)) {
                    want.push((j * 3, rows[0]..rows[rows.len() - 1] + 1));
                }
            }
            prop_assert_eq!(got, want);
        }
    }

    /// A key byte: often 0 (the sparse index pads short words with zeros), 1 or 255.
    fn key_byte() -> impl Strategy<Value = u8> {
        prop_oneof![Just(0u8), Just(1u8), Just(255u8), any::<u8>()]
    }

    /// What follows a file's shared prefix in a key: often one of a few 8-byte heads (keys
    /// whose words tie) and a short suffix, else a few bytes.
    fn key_tail() -> impl Strategy<Value = Vec<u8>> {
        let head = prop_oneof![
            Just(vec![0u8; 8]),
            Just(vec![1u8; 8]),
            Just(vec![0, 0, 0, 0, 0, 0, 0, 1]),
            proptest::collection::vec(key_byte(), 0..8),
        ];
        (head, proptest::collection::vec(key_byte(), 0..4))
            .prop_map(|(head, suffix)| [head, suffix].concat())
    }

    proptest! {
        /// Walks through the sparse index find exactly what a linear scan finds: keys of any
        /// length sharing a prefix (so words often tie, and zero padding matters), packed or
        /// not, runs of one key longer than a stride, probes inside and outside the prefix.
        #[test]
        fn walks_through_the_sparse_index_find_what_a_scan_finds(
            tails in proptest::collection::vec((key_tail(), 1usize..80), 0..40),
            prefix_len in 0usize..10,
            probes in proptest::collection::btree_set(
                proptest::collection::vec(key_byte(), 0..22),
                0..30,
            ),
            fixed in any::<bool>(),
        ) {
            let prefix = vec![7u8; prefix_len];
            let widen = |mut key: Vec<u8>| {
                if fixed {
                    key.resize(prefix_len + 12, 0);
                }
                key
            };
            let mut file: Vec<Vec<u8>> = Vec::new();
            for (tail, repeat) in &tails {
                let key = widen([prefix.as_slice(), tail].concat());
                file.extend(std::iter::repeat_n(key, *repeat));
            }
            file.sort();
            let keys = FileKeys::new(rows(&file));
            prop_assert_eq!(keys.len(), file.len());
            // Probes: random keys, with and without the prefix, and every other file key.
            let mut probe: std::collections::BTreeSet<Vec<u8>> = probes.clone();
            probe.extend(probes.iter().map(|p| [prefix.as_slice(), p].concat()));
            probe.extend(file.iter().step_by(2).cloned());
            let mut got = Vec::new();
            keys.walk(
                probe.iter().enumerate().map(|(j, k)| (j, k.as_slice())),
                |j, rows| got.push((j, rows)),
            );
            let mut want = Vec::new();
            for (j, key) in probe.iter().enumerate() {
                let first = file.partition_point(|k| k < key);
                let end = file.partition_point(|k| k <= key);
                if first < end {
                    want.push((j, first..end));
                }
            }
            prop_assert_eq!(got, want);
        }
    }

    proptest! {
        /// `compare_keys` orders as the byte order, whatever the lengths.
        #[test]
        fn compare_keys_is_byte_order(
            a in proptest::collection::vec(any::<u8>(), 0..20),
            b in proptest::collection::vec(any::<u8>(), 0..20),
            shared in 0usize..12,
        ) {
            // Often equal in the first word, so the tails are compared too.
            let mut b = b;
            let n = shared.min(a.len()).min(b.len());
            b[..n].copy_from_slice(&a[..n]);
            prop_assert_eq!(compare_keys(&a, &b), a.cmp(&b));
        }
    }

    proptest! {
        /// A collector fed a file's keys in order holds exactly what `FileKeys::new` holds,
        /// fixed-width or not, and gives up past its limit.
        #[test]
        fn collected_keys_equal_the_file_keys(
            mut file in proptest::collection::vec((0u16..500, 1usize..4), 0..300),
            limit in 0usize..4000,
        ) {
            file.sort_unstable();
            let keys: Vec<Vec<u8>> = file
                .iter()
                .map(|(v, width)| {
                    // Ordered whatever the width: the value first, then padding.
                    let mut key = v.to_be_bytes().to_vec();
                    key.resize(1 + *width, 0);
                    key
                })
                .collect();
            let mut collector = KeyCollector::new(limit, keys.len() as u64);
            for key in &keys {
                collector.push(key);
            }
            let want = FileKeys::new(rows(&keys));
            let held: usize = if keys.iter().all(|k| k.len() == keys[0].len()) {
                keys.iter().map(Vec::len).sum()
            } else {
                keys.iter().map(|k| k.len() + 8).sum()
            };
            match collector.finish() {
                Some(got) => {
                    prop_assert!(held <= limit);
                    prop_assert_eq!(got.len(), want.len());
                    for i in 0..want.len() {
                        prop_assert_eq!(got.get(i), want.get(i));
                    }
                }
                None => prop_assert!(held > limit),
            }
        }
    }

    /// Keys of `rows` rows of `width` bytes (all zero), without writing them.
    fn zero_keys(width: usize, rows: usize) -> Arc<FileKeys> {
        Arc::new(FileKeys::indexed(KeyRows::Fixed {
            data: vec![0; width * rows],
            width,
            len: rows,
        }))
    }

    /// Files whose keys take up to a quarter of the capacity are admitted and stay together
    /// (the cache is not split into shards each holding an eighth of it).
    #[test]
    fn files_up_to_a_quarter_of_the_capacity_stay_cached_together() {
        let cache = KeyCache::new(256 << 20);
        for file in 1..=3 {
            cache.insert(file, zero_keys(9, (60 << 20) / 9));
        }
        for file in 1..=3 {
            assert!(cache.get(file).is_some(), "file {file} was evicted");
        }
        assert!(cache.bytes() > 3 * (59 << 20));
    }

    #[test]
    fn large_files_are_not_admitted() {
        let cache = KeyCache::new(4000);
        let small = Arc::new(FileKeys::new(rows(&vec![vec![1u8; 8]; 10])));
        let large = Arc::new(FileKeys::new(rows(&vec![vec![1u8; 8]; 1000])));
        assert!(cache.admits(small.bytes()));
        assert!(!cache.admits(large.bytes()));
        cache.insert(1, small);
        cache.insert(2, large);
        assert!(cache.get(1).is_some());
        assert!(cache.get(2).is_none());
        cache.remove(1);
        assert!(cache.get(1).is_none());
        assert_eq!(cache.bytes(), 0);
        let off = KeyCache::new(0);
        assert!(!off.admits(1));
    }
}
