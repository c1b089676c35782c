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

/// The encoded key of every row of one SST, in file order.
#[derive(Debug)]
pub struct FileKeys {
    rows: KeyRows,
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
        let keys = FileKeys { rows };
        debug_assert!(
            (1..keys.len()).all(|i| keys.get(i - 1) <= keys.get(i)),
            "file keys must be in ascending order"
        );
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
        match &self.rows {
            KeyRows::Fixed { data, .. } => data.capacity() + 64,
            KeyRows::Variable(rows) => rows.data_len() + rows.len() * 8 + 64,
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
                walk_rows(*len, |i| &data[i * width..(i + 1) * width], keys, matched);
            }
            KeyRows::Variable(rows) => walk_rows(rows.len(), |i| rows.get(i), keys, matched),
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

/// [`FileKeys::walk`] over `len` rows whose key `row(i)` gives.
#[inline]
fn walk_rows<'k, 'a>(
    len: usize,
    row: impl Fn(usize) -> &'k [u8],
    keys: impl IntoIterator<Item = (usize, &'a [u8])>,
    mut matched: impl FnMut(usize, Range<usize>),
) {
    let mut cursor = 0usize;
    let mut previous: Option<&[u8]> = None;
    for (j, key) in keys {
        debug_assert!(
            previous.is_none_or(|p| p < key),
            "keys must be ascending and distinct"
        );
        previous = Some(key);
        cursor = seek(len, &row, cursor, key);
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

/// The first row at or after `from` whose key is not below `key` (`len` if none): a
/// galloping search.
#[inline]
fn seek<'k>(len: usize, row: &impl Fn(usize) -> &'k [u8], from: usize, key: &[u8]) -> usize {
    let below = |i: usize| compare_keys(row(i), key).is_lt();
    if from >= len || !below(from) {
        return from.min(len);
    }
    // row(lo) < key; find hi with row(hi) >= key (or hi = len).
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
    // row(lo) < key, and hi == len or row(hi) >= key: the answer is in lo + 1..=hi.
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
        let keys = FileKeys { rows };
        debug_assert!(
            (1..keys.len()).all(|i| keys.get(i - 1) <= keys.get(i)),
            "file keys must be in ascending order"
        );
        Some(keys)
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
        Arc::new(FileKeys {
            rows: KeyRows::Fixed {
                data: vec![0; width * rows],
                width,
                len: rows,
            },
        })
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
