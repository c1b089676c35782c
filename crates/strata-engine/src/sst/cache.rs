//! The block cache: decoded pieces of SST blocks (the rows of one key-index block), bounded by
//! bytes (`Options::block_cache_bytes`), evicting with the CLOCK-Pro policy of `quick_cache`.
//!
//! Two kinds of entries share the capacity: a point lookup caches a block's *key block* (the
//! encoded key, sequence number and operation of each row, [`KeyBlock`]), and reads the other
//! columns of the one row it returns from their pages; the first blocks of a scan are cached
//! whole (all columns, [`DecodedBlock`]). A key block of the key-value store's 16-byte keys
//! takes 25 bytes a row, about a sixth of a whole block, so several times more of a file's
//! blocks stay cached for lookups.

use std::sync::Arc;

use arrow::array::RecordBatch;

use super::FileKeys;
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
    /// Encoded key of each row (packed without offsets when they share one width).
    pub keys: FileKeys,
    /// `_seq` of each row.
    pub seqs: Vec<SeqNo>,
    /// `_op` of each row (`OpKind` bytes, checked when the block was read).
    pub ops: Vec<u8>,
    /// Memory charged to the cache.
    pub bytes: usize,
}

impl KeyBlock {
    /// Wraps the key columns of a block, measuring its memory. `None` when the columns
    /// disagree in length or an operation byte is not an [`OpKind`].
    pub fn new(keys: FileKeys, seqs: Vec<SeqNo>, ops: Vec<u8>) -> Option<Self> {
        let valid = keys.len() == seqs.len()
            && keys.len() == ops.len()
            && ops.iter().all(|op| OpKind::from_u8(*op).is_some());
        let bytes = keys.bytes() + seqs.len() * 8 + ops.len() + 96;
        valid.then_some(KeyBlock {
            keys,
            seqs,
            ops,
            bytes,
        })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.seqs.len()
    }

    /// True when the block has no rows.
    pub fn is_empty(&self) -> bool {
        self.seqs.is_empty()
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

/// A byte-bounded cache of decoded blocks and key blocks, shared by all tables of a database.
pub struct BlockCache {
    cache: Option<quick_cache::sync::Cache<CacheKey, Entry, BlockWeighter>>,
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
    /// A cache holding at most `capacity_bytes` (0 disables caching).
    pub fn new(capacity_bytes: usize) -> Self {
        let cache = (capacity_bytes > 0).then(|| {
            // Estimate items from a typical key block of ~8 KiB.
            let items = (capacity_bytes / (8 * 1024)).max(16);
            quick_cache::sync::Cache::with_weighter(items, capacity_bytes as u64, BlockWeighter)
        });
        BlockCache { cache }
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

    /// The cached key block, if any (counted like [`BlockCache::get`]).
    pub fn get_keys(&self, file: FileId, block: u32) -> Option<Arc<KeyBlock>> {
        let found = match self.lookup(&(file, block, true)) {
            Some(Entry::Keys(block)) => Some(block),
            _ => None,
        };
        count(found.is_some());
        found
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

    /// Bytes currently cached.
    pub fn bytes(&self) -> u64 {
        self.cache.as_ref().map_or(0, |c| c.weight())
    }

    /// Capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.cache.as_ref().map_or(0, |c| c.capacity())
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
