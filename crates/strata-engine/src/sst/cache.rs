//! The block cache: decoded SST blocks (rows of one key-index block, all columns) kept for
//! point lookups, bounded by bytes (`Options::block_cache_bytes`), evicting with the CLOCK-Pro
//! policy of `quick_cache`.

use std::sync::Arc;

use arrow::array::RecordBatch;

use crate::codec::ByteRows;
use crate::metrics::{ReadCounter, count_thread_read};
use crate::types::FileId;

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

#[derive(Clone)]
struct BlockWeighter;

impl quick_cache::Weighter<(FileId, u32), Arc<DecodedBlock>> for BlockWeighter {
    fn weight(&self, _key: &(FileId, u32), block: &Arc<DecodedBlock>) -> u64 {
        block.bytes as u64
    }
}

/// A byte-bounded cache of decoded blocks, shared by all tables of a database.
pub struct BlockCache {
    cache: Option<quick_cache::sync::Cache<(FileId, u32), Arc<DecodedBlock>, BlockWeighter>>,
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
            // Estimate items from a typical block of ~32 KiB.
            let items = (capacity_bytes / (32 * 1024)).max(16);
            quick_cache::sync::Cache::with_weighter(items, capacity_bytes as u64, BlockWeighter)
        });
        BlockCache { cache }
    }

    /// The cached block, if any (a hit or miss is counted for the operation tracked on this
    /// thread, [`crate::metrics::track_reads`]; the caller counts it database-wide).
    pub fn get(&self, file: FileId, block: u32) -> Option<Arc<DecodedBlock>> {
        let found = self.cache.as_ref().and_then(|c| c.get(&(file, block)));
        let counter = match found {
            Some(_) => ReadCounter::BlockCacheHit,
            None => ReadCounter::BlockCacheMiss,
        };
        count_thread_read(counter, 1);
        found
    }

    /// Caches a block.
    pub fn insert(&self, file: FileId, block: u32, decoded: Arc<DecodedBlock>) {
        if let Some(cache) = &self.cache {
            cache.insert((file, block), decoded);
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
