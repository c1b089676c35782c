//! The block cache: decoded pieces of SST files, bounded by bytes (`Options::block_cache_bytes`),
//! evicting with the CLOCK-Pro policy of `quick_cache`.
//!
//! The capacity is split in two shares that never evict each other's entries:
//!
//! * **Blocks** (the rows of one key-index block): a point lookup caches a block's *key block*
//!   (the encoded key, sequence number and operation of each row, [`KeyBlock`]); the first
//!   blocks of a scan are cached whole (all columns, [`DecodedBlock`]). A key block packs its
//!   keys (`sst::sorted_keys`) and its sequence numbers, and notes which page of each column a
//!   lookup reads holds its rows: about 10 bytes a row for the key-value store's 16-byte keys,
//!   against about 150 for a whole block.
//! * **Row pages** (`Options::row_page_cache_percent` of the capacity): the other columns of
//!   the row a lookup returns are read from the one page of each column that holds it; that
//!   page is cached decoded (all its rows, as an Arrow array of the column's file type), so
//!   the next lookup of a row in it takes the row from it instead of reading, checking and
//!   decompressing the page again. Row pages help while the data read by lookups fits their
//!   share; when it does not, their share is bounded, so they can never push the key blocks
//!   (which every lookup needs) out of the cache.
//!
//! Every entry is decoded from bytes checked against their page checksums, so the cache never
//! holds data from a damaged page.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch};

use super::sorted_keys::SortedKeys;
use crate::codec::ByteRows;
use crate::metrics::{ReadCounter, count_thread_read};
use crate::types::{FileId, OpKind, SeqNo};

/// One decoded block: its rows (all SST columns) and their encoded keys.
#[derive(Debug)]
pub struct DecodedBlock {
    /// The rows, all SST columns.
    pub batch: RecordBatch,
    /// Encoded key of each row.
    pub keys: Arc<ByteRows>,
    /// Memory charged to the cache.
    pub bytes: usize,
}

impl DecodedBlock {
    /// Wraps a decoded block, measuring its memory.
    pub fn new(batch: RecordBatch, keys: Arc<ByteRows>) -> Self {
        let bytes = batch.get_array_memory_size() + keys.data_len() + keys.len() * 8 + 64;
        DecodedBlock { batch, keys, bytes }
    }
}

/// The key columns of one block as point lookups need them: the encoded key, sequence number
/// and operation of each row, in file order.
#[derive(Debug)]
pub struct KeyBlock {
    /// Encoded key of each row, packed ([`SortedKeys`]: the common prefix once, the rest of
    /// each key as an integer when it is short).
    pub keys: SortedKeys,
    /// `_seq` of each row.
    seqs: Seqs,
    /// `_op` of each row (`OpKind` bytes, checked when the block was read).
    pub ops: Vec<u8>,
    /// The pages holding the block's rows in the columns lookups read for the rows they
    /// return, so a lookup finds its row's page without searching the offset index.
    pages: Vec<PageSpan>,
    /// Memory charged to the cache.
    pub bytes: usize,
}

/// One page holding rows of a key block in a column lookups read: the row group, the
/// Parquet leaf column, the page's position in the column chunk's offset index, and the rows
/// of the row group it holds (`first..end`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PageSpan {
    /// Row group.
    pub rg: u32,
    /// Parquet leaf column.
    pub leaf: u32,
    /// Position of the page in the column chunk's offset index.
    pub page: u32,
    /// First row of the page, counted from the start of the row group.
    pub first: u64,
    /// The row after the page's last.
    pub end: u64,
}

/// The sequence numbers of a key block: as 32-bit offsets from the smallest when they span
/// less than 2^32 (the usual case), else whole.
#[derive(Debug)]
enum Seqs {
    Narrow { base: SeqNo, offsets: Vec<u32> },
    Wide(Vec<SeqNo>),
}

impl KeyBlock {
    /// Wraps the key columns of a block, measuring its memory. `None` when the keys are not
    /// ascending, the columns disagree in length or an operation byte is not an [`OpKind`].
    pub fn new(keys: &ByteRows, seqs: &[SeqNo], ops: Vec<u8>) -> Option<Self> {
        let valid = keys.len() == seqs.len()
            && keys.len() == ops.len()
            && ops.iter().all(|op| OpKind::from_u8(*op).is_some());
        if !valid {
            return None;
        }
        let keys = SortedKeys::from_rows(keys)?;
        let base = seqs.iter().copied().min().unwrap_or(0);
        let seqs = if seqs.iter().all(|s| s - base <= u64::from(u32::MAX)) {
            Seqs::Narrow {
                base,
                offsets: seqs.iter().map(|s| (s - base) as u32).collect(),
            }
        } else {
            Seqs::Wide(seqs.to_vec())
        };
        let seq_bytes = match &seqs {
            Seqs::Narrow { offsets, .. } => offsets.capacity() * 4,
            Seqs::Wide(seqs) => seqs.capacity() * 8,
        };
        let bytes = keys.bytes() + seq_bytes + ops.capacity() + 96;
        Some(KeyBlock {
            keys,
            seqs,
            ops,
            pages: Vec::new(),
            bytes,
        })
    }

    /// The block with the pages holding its rows in the columns lookups read.
    pub(crate) fn with_pages(mut self, pages: Vec<PageSpan>) -> Self {
        self.bytes += pages.capacity() * std::mem::size_of::<PageSpan>();
        self.pages = pages;
        self
    }

    /// The page of Parquet leaf `leaf` holding row `at` of row group `rg`, when known.
    #[inline]
    pub(crate) fn page_of(&self, rg: u32, leaf: u32, at: u64) -> Option<&PageSpan> {
        self.pages
            .iter()
            .find(|p| p.rg == rg && p.leaf == leaf && p.first <= at && at < p.end)
    }

    /// `_seq` of row `i`.
    #[inline]
    pub fn seq(&self, i: usize) -> SeqNo {
        match &self.seqs {
            Seqs::Narrow { base, offsets } => base + u64::from(offsets[i]),
            Seqs::Wide(seqs) => seqs[i],
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when the block has no rows.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// What the cache holds for one block.
#[derive(Debug, Clone)]
enum Entry {
    Whole(Arc<DecodedBlock>),
    Keys(Arc<KeyBlock>),
}

/// A cache key: file, block, and whether the entry is the block's key block.
type CacheKey = (FileId, u32, bool);

#[derive(Clone)]
struct BlockWeighter;

impl quick_cache::Weighter<CacheKey, Entry> for BlockWeighter {
    fn weight(&self, _key: &CacheKey, entry: &Entry) -> u64 {
        match entry {
            Entry::Whole(block) => block.bytes as u64,
            Entry::Keys(block) => block.bytes as u64,
        }
    }
}

/// A cache key of a row page: file, row group, Parquet leaf column, and the page's position
/// in the column chunk's offset index.
pub type RowPageKey = (FileId, u32, u32, u32);

/// One decoded row page: all its rows of one column, as the column's file type.
#[derive(Debug, Clone)]
struct RowPage {
    rows: ArrayRef,
    bytes: u64,
}

#[derive(Clone)]
struct RowPageWeighter;

impl quick_cache::Weighter<RowPageKey, RowPage> for RowPageWeighter {
    fn weight(&self, _key: &RowPageKey, page: &RowPage) -> u64 {
        page.bytes
    }
}

/// A byte-bounded cache of decoded blocks, key blocks and row pages, shared by all tables of a
/// database.
pub struct BlockCache {
    cache: Option<quick_cache::sync::Cache<CacheKey, Entry, BlockWeighter>>,
    /// The row pages' share (`None` when it is 0).
    pages: Option<quick_cache::sync::Cache<RowPageKey, RowPage, RowPageWeighter>>,
}

impl std::fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCache")
            .field("bytes", &self.bytes())
            .field("capacity", &self.capacity())
            .finish()
    }
}

impl BlockCache {
    /// A cache holding at most `capacity_bytes` (0 disables caching), of which at most
    /// `row_page_bytes` (at most `capacity_bytes`; 0: none) are row pages and the rest blocks.
    pub fn new(capacity_bytes: usize, row_page_bytes: usize) -> Self {
        let row_page_bytes = row_page_bytes.min(capacity_bytes);
        let block_bytes = capacity_bytes - row_page_bytes;
        // Estimate items from a typical key block or page of ~8 KiB.
        let items = |bytes: usize| (bytes / (8 * 1024)).max(16);
        let cache = (block_bytes > 0).then(|| {
            quick_cache::sync::Cache::with_weighter(
                items(block_bytes),
                block_bytes as u64,
                BlockWeighter,
            )
        });
        let pages = (row_page_bytes > 0).then(|| {
            quick_cache::sync::Cache::with_weighter(
                items(row_page_bytes),
                row_page_bytes as u64,
                RowPageWeighter,
            )
        });
        BlockCache { cache, pages }
    }

    /// True when row pages are cached.
    pub fn caches_row_pages(&self) -> bool {
        self.pages.is_some()
    }

    /// The cached rows of a row page, if any.
    pub fn get_row_page(&self, key: &RowPageKey) -> Option<ArrayRef> {
        self.pages.as_ref()?.get(key).map(|page| page.rows)
    }

    /// Caches the decoded rows of a row page (all of them, the column's file type).
    pub fn insert_row_page(&self, key: RowPageKey, rows: ArrayRef) {
        if let Some(pages) = &self.pages {
            let bytes = rows.get_array_memory_size() as u64 + 64;
            pages.insert(key, RowPage { rows, bytes });
        }
    }

    /// Bytes of row pages currently cached.
    pub fn row_page_bytes(&self) -> u64 {
        self.pages.as_ref().map_or(0, |c| c.weight())
    }

    /// The cached block, if any (a hit or miss is counted for the operation tracked on this
    /// thread, [`crate::metrics::track_reads`]; the caller counts it database-wide).
    pub fn get(&self, file: FileId, block: u32) -> Option<Arc<DecodedBlock>> {
        let found = match self.lookup(&(file, block, false)) {
            Some(Entry::Whole(block)) => Some(block),
            _ => None,
        };
        count(found.is_some());
        found
    }

    /// The cached key block, if any; a hit is counted for the operation tracked on this
    /// thread, a miss is not (a lookup may find the row without the block, through the key
    /// cache; one that reads the block counts the miss, [`BlockCache::count_miss`]).
    pub fn get_keys(&self, file: FileId, block: u32) -> Option<Arc<KeyBlock>> {
        let found = match self.lookup(&(file, block, true)) {
            Some(Entry::Keys(block)) => Some(block),
            _ => None,
        };
        if found.is_some() {
            count(true);
        }
        found
    }

    /// Counts a block-cache miss for the operation tracked on this thread.
    pub fn count_miss(&self) {
        count(false);
    }

    fn lookup(&self, key: &CacheKey) -> Option<Entry> {
        self.cache.as_ref().and_then(|c| c.get(key))
    }

    /// Caches a block.
    pub fn insert(&self, file: FileId, block: u32, decoded: Arc<DecodedBlock>) {
        if let Some(cache) = &self.cache {
            cache.insert((file, block, false), Entry::Whole(decoded));
        }
    }

    /// Caches a key block.
    pub fn insert_keys(&self, file: FileId, block: u32, keys: Arc<KeyBlock>) {
        if let Some(cache) = &self.cache {
            cache.insert((file, block, true), Entry::Keys(keys));
        }
    }

    /// Bytes currently cached (blocks and row pages).
    pub fn bytes(&self) -> u64 {
        self.cache.as_ref().map_or(0, |c| c.weight()) + self.row_page_bytes()
    }

    /// Capacity in bytes (blocks and row pages).
    pub fn capacity(&self) -> u64 {
        self.cache.as_ref().map_or(0, |c| c.capacity())
            + self.pages.as_ref().map_or(0, |c| c.capacity())
    }
}

/// Counts a hit or miss for the operation tracked on this thread.
fn count(hit: bool) {
    let counter = if hit {
        ReadCounter::BlockCacheHit
    } else {
        ReadCounter::BlockCacheMiss
    };
    count_thread_read(counter, 1);
}

#[cfg(test)]
mod tests {
    use arrow::array::BinaryArray;

    use super::*;

    fn key_block(rows: usize) -> Arc<KeyBlock> {
        let mut keys = ByteRows::with_capacity(rows, rows * 8);
        (0..rows as u64).for_each(|k| keys.push(&k.to_be_bytes()));
        let seqs: Vec<SeqNo> = (0..rows as u64).collect();
        Arc::new(KeyBlock::new(&keys, &seqs, vec![0; rows]).unwrap())
    }

    fn page(bytes: usize) -> ArrayRef {
        Arc::new(BinaryArray::from_vec(vec![vec![7u8; bytes].as_slice()]))
    }

    #[test]
    fn row_pages_never_evict_blocks() {
        let cache = BlockCache::new(1 << 20, 1 << 19);
        assert_eq!(cache.capacity(), 1 << 20);
        // Key blocks filling most of the blocks' share.
        let block = key_block(256);
        let blocks = (1 << 19) * 3 / 4 / block.bytes;
        for b in 0..blocks {
            cache.insert_keys(1, b as u32, Arc::clone(&block));
        }
        // Row pages many times their share.
        for p in 0..1000u32 {
            cache.insert_row_page((1, 0, 1, p), page(8 * 1024));
        }
        assert!(cache.row_page_bytes() <= 1 << 19);
        assert!(cache.get_row_page(&(1, 0, 1, 999)).is_some());
        for b in 0..blocks {
            assert!(
                cache.get_keys(1, b as u32).is_some(),
                "key block {b} evicted"
            );
        }
        assert!(cache.bytes() <= cache.capacity());
        // No share for row pages: none are kept.
        let cache = BlockCache::new(1 << 20, 0);
        assert!(!cache.caches_row_pages());
        cache.insert_row_page((1, 0, 1, 0), page(100));
        assert!(cache.get_row_page(&(1, 0, 1, 0)).is_none());
    }

    #[test]
    fn key_blocks_keep_their_rows() {
        let mut keys = ByteRows::with_capacity(4, 64);
        for k in ["key-0001", "key-0001", "key-0005", "key-0123"] {
            keys.push(k.as_bytes());
        }
        let seqs = [9, 3, 1 << 40, 7];
        let block = KeyBlock::new(&keys, &seqs, vec![0, 1, 0, 0]).unwrap();
        assert_eq!(block.len(), 4);
        for (i, seq) in seqs.iter().enumerate() {
            assert_eq!(block.seq(i), *seq);
            assert_eq!(block.keys.get(i), keys.get(i));
        }
        let narrow = KeyBlock::new(&keys, &[9, 3, 5, 7], vec![0, 1, 0, 0]).unwrap();
        assert!(narrow.bytes < block.bytes);
        assert_eq!(narrow.seq(0), 9);
        // Keys out of order, a bad operation, columns of different lengths.
        let mut unordered = ByteRows::with_capacity(2, 16);
        unordered.push(b"b");
        unordered.push(b"a");
        assert!(KeyBlock::new(&unordered, &[1, 2], vec![0, 0]).is_none());
        assert!(KeyBlock::new(&keys, &seqs, vec![0, 9, 0, 0]).is_none());
        assert!(KeyBlock::new(&keys, &seqs[..3], vec![0, 0, 0]).is_none());
    }
}
