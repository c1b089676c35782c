//! A compaction of a table far larger than its memory budget streams: the peak of live heap
//! memory while it runs stays within a small multiple of `CompactionOptions::memory_bytes_max`
//! whatever the table's size. Measured with a counting global allocator (its own test binary,
//! one test, so nothing else allocates meanwhile).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::array::{BinaryArray, RecordBatch};
use strata_engine::{
    CompactionOptions, Db, IngestOptions, Options, StrategyKind, TableOptions, kv_schema,
};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded to the system allocator with the caller's layout.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const MEMORY_LIMIT: u64 = 4 << 20;
const ROWS: usize = 360_000;
const CHUNK: usize = 30_000;

#[test]
fn compacting_a_table_ten_times_larger_than_the_budget_stays_within_it() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        block_cache_bytes: 1 << 20,
        table_defaults: TableOptions {
            memtable_size_bytes: 1 << 20,
            compaction: CompactionOptions {
                strategy: StrategyKind::None,
                memory_bytes_max: MEMORY_LIMIT,
                target_file_size_bytes: 8 << 20,
                ..CompactionOptions::default()
            },
            ..TableOptions::default()
        },
        write_buffer_budget_bytes: 16 << 20,
        ..Options::default()
    };
    let db = Db::open(dir.path(), options).unwrap();
    let table = db.kv("big").unwrap().table().clone();
    // Twelve overlapping runs of random keys, 100-byte values that do not compress.
    let batches = (0..ROWS / CHUNK).map(|chunk| {
        let keys: Vec<Vec<u8>> = (0..CHUNK)
            .map(|i| {
                let n = ((chunk * CHUNK + i) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                n.to_be_bytes().to_vec()
            })
            .collect();
        let values: Vec<Vec<u8>> = keys
            .iter()
            .map(|k| {
                (0..100u8)
                    .map(|j| {
                        k[usize::from(j) % 8]
                            .wrapping_mul(31)
                            .wrapping_add(j.wrapping_mul(7))
                    })
                    .collect()
            })
            .collect();
        Ok(RecordBatch::try_new(
            kv_schema(),
            vec![
                Arc::new(BinaryArray::from_iter_values(keys)),
                Arc::new(BinaryArray::from_iter_values(values)),
            ],
        )
        .unwrap())
    });
    table
        .ingest(
            batches,
            &IngestOptions {
                chunk_rows: CHUNK,
                ..IngestOptions::default()
            },
        )
        .unwrap();
    let stats = table.stats();
    assert_eq!(stats.files_per_level, vec![ROWS / CHUNK]);
    assert!(
        stats.sst_bytes > 10 * MEMORY_LIMIT,
        "the table ({} bytes) must dwarf the budget",
        stats.sst_bytes
    );
    let baseline = LIVE.load(Ordering::Relaxed);
    PEAK.store(baseline, Ordering::Relaxed);
    table.compact().unwrap();
    // The outputs' keys go to the key cache as they are written (bounded by its own capacity,
    // `Options::key_cache_bytes`): that memory is the cache's, not the compaction's. The
    // inputs' keys (in the baseline) left the cache with the inputs, so what it holds now is
    // the outputs' keys.
    let outputs_keys = db.metrics().get("key_cache_bytes").unwrap() as usize;
    let peak = PEAK.load(Ordering::Relaxed) - baseline - outputs_keys;
    let after = table.stats();
    assert_eq!(after.sst_rows, ROWS as u64);
    assert!(
        after.files_per_level.iter().sum::<usize>() > 1,
        "outputs are split at the target size"
    );
    eprintln!(
        "compacted {} bytes in {} runs with a peak of {} bytes of heap (budget {MEMORY_LIMIT}) \
         besides the outputs' {outputs_keys} bytes of keys in the key cache",
        stats.sst_bytes,
        ROWS / CHUNK,
        peak
    );
    assert!(
        peak < 4 * MEMORY_LIMIT as usize,
        "peak heap {peak} bytes for a budget of {MEMORY_LIMIT}"
    );
}
