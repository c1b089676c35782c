//! Configuration: database [`Options`], per-table [`TableOptions`], and the three named
//! profiles.
//!
//! Every limit the engine enforces lives here as an explicit, documented field; relations
//! between them are checked by [`Options::validate`] when a database opens. Table options are
//! persisted in the manifest with the table, so a table keeps its settings across restarts.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::compaction::CompactionOptions;
use crate::error::{Error, Result};
use crate::fault::FaultInjector;
use crate::memtable::MemtableKind;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
const GIB: u64 = 1024 * 1024 * 1024;

/// When the write-ahead log is forced to stable storage.
///
/// Every commit is written to the operating system before it is acknowledged, whatever the
/// mode, so a crash of the *process* never loses an acknowledged write; the mode decides what a
/// crash of the *machine* (power loss) may lose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncMode {
    /// `fdatasync` before acknowledging each commit group (concurrent writers share one).
    Always,
    /// `fdatasync` in the background at most this many milliseconds after a write.
    IntervalMs(u64),
    /// Never sync explicitly (segments are still synced when they are closed).
    Never,
}

impl fmt::Display for SyncMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncMode::Always => f.write_str("always"),
            SyncMode::IntervalMs(ms) => write!(f, "interval:{ms}ms"),
            SyncMode::Never => f.write_str("never"),
        }
    }
}

impl FromStr for SyncMode {
    type Err = Error;

    /// Parses `always`, `never`, or `interval:<ms>` / a bare number of milliseconds.
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim().to_ascii_lowercase();
        match s.as_str() {
            "always" => Ok(SyncMode::Always),
            "never" => Ok(SyncMode::Never),
            other => {
                let ms = other.trim_start_matches("interval:").trim_end_matches("ms");
                ms.parse().map(SyncMode::IntervalMs).map_err(|_| {
                    Error::InvalidArgument(format!(
                        "unknown sync mode '{s}'; expected always, never or interval:<ms>"
                    ))
                })
            }
        }
    }
}

/// Compression codec of SST (Parquet) data pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SstCompression {
    /// No compression.
    None,
    /// Snappy: fast, read by every Parquet tool (default).
    Snappy,
    /// LZ4 (raw): fastest decompression.
    Lz4,
    /// Zstandard at the given level (1..=22): smallest files.
    Zstd(i32),
}

impl fmt::Display for SstCompression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SstCompression::None => f.write_str("none"),
            SstCompression::Snappy => f.write_str("snappy"),
            SstCompression::Lz4 => f.write_str("lz4"),
            SstCompression::Zstd(level) => write!(f, "zstd({level})"),
        }
    }
}

impl FromStr for SstCompression {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim().to_ascii_lowercase();
        match s.as_str() {
            "none" | "uncompressed" => Ok(SstCompression::None),
            "snappy" => Ok(SstCompression::Snappy),
            "lz4" | "lz4_raw" => Ok(SstCompression::Lz4),
            "zstd" => Ok(SstCompression::Zstd(3)),
            other => other
                .strip_prefix("zstd(")
                .and_then(|rest| rest.strip_suffix(')'))
                .and_then(|level| level.parse().ok())
                .filter(|level| (1..=22).contains(level))
                .map(SstCompression::Zstd)
                .ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "unknown compression '{s}'; expected none, snappy, lz4, zstd or zstd(1..22)"
                    ))
                }),
        }
    }
}

/// A named bundle of settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// Large memtables and caches, lock-free memtable, background WAL sync.
    HighPerformance,
    /// Small memtables and caches, compact memtable, zstd SSTs.
    MemoryEfficient,
    /// The defaults.
    #[default]
    Balanced,
}

impl Profile {
    /// Every profile.
    pub const ALL: &'static [Profile] = &[
        Profile::HighPerformance,
        Profile::MemoryEfficient,
        Profile::Balanced,
    ];

    /// The profile's name as accepted by [`FromStr`].
    pub fn name(self) -> &'static str {
        match self {
            Profile::HighPerformance => "high_performance",
            Profile::MemoryEfficient => "memory_efficient",
            Profile::Balanced => "balanced",
        }
    }

    /// Database options of this profile.
    pub fn options(self) -> Options {
        match self {
            Profile::HighPerformance => Options::high_performance(),
            Profile::MemoryEfficient => Options::memory_efficient(),
            Profile::Balanced => Options::balanced(),
        }
    }

    /// Table options of this profile.
    pub fn table_options(self) -> TableOptions {
        self.options().table_defaults
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Profile {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let wanted = s.trim().to_ascii_lowercase().replace('-', "_");
        Profile::ALL
            .iter()
            .copied()
            .find(|p| p.name() == wanted)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "unknown profile '{s}'; valid profiles: high_performance, memory_efficient, balanced"
                ))
            })
    }
}

/// Settings of one table, chosen at creation and stored in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TableOptions {
    /// Memtable variant. Default `enhanced_skiplist`.
    pub memtable_kind: MemtableKind,
    /// Size at which the active memtable becomes immutable and is flushed. Default 64 MiB.
    pub memtable_size_bytes: usize,
    /// Immutable memtables waiting for flush at which writers stall; at half of it they are
    /// slowed down. Default 4.
    pub max_immutable_memtables: usize,
    /// Maximum rows per Parquet row group. Smaller row groups make row group pruning finer;
    /// DataFusion scans them nearly as fast (`benches/README.md`, "SST layout"). A point
    /// lookup finds its block's pages by a binary search of the offset index, whatever the
    /// row group's size. Default 65,536.
    pub sst_row_group_rows: usize,
    /// Maximum rows per row group of the files compactions and bulk loads write (the scan
    /// layout, `sst::SstLayout`; flushes use `sst_row_group_rows`). Large row groups let a
    /// value column of many repeated values stay dictionary encoded (see
    /// `sst_scan_dictionary_page_size_bytes`); a writer buffers one row group, at most
    /// `sst_row_group_bytes_max`. Default 1,048,576 (DataFusion's Parquet writer's default).
    pub sst_scan_row_group_rows: usize,
    /// Largest dictionary page of a value column in the files compactions and bulk loads
    /// write. A column whose distinct values per row group would not fit, or would save less
    /// than a quarter of the plain bytes (as estimated from the file's first rows), is written
    /// plain. A point lookup into such a file decodes the dictionary once per row group and
    /// keeps it while the file is open. Default 1 MiB (DataFusion's Parquet writer's default).
    pub sst_scan_dictionary_page_size_bytes: usize,
    /// Target size of a Parquet data page (and the largest dictionary page: a column whose
    /// dictionary outgrows it falls back to plain encoding). A point lookup that misses the
    /// block cache reads and decompresses the pages holding its block's rows in every column
    /// (and a dictionary page when one of them is dictionary encoded), so smaller pages make
    /// lookups cheaper; larger ones may compress better. Default 8 KiB.
    pub sst_page_size_bytes: usize,
    /// Target size of a data page of the value columns (neither key columns nor `_seq` /
    /// `_op`), at most `sst_page_size_bytes`. A point lookup decompresses the page of each
    /// value column that holds its row, so smaller value pages make lookups cheaper (more
    /// page headers for scans to walk). Default 8 KiB.
    pub sst_value_page_size_bytes: usize,
    /// Rows per entry of the SST's sparse key index (see `sst`); also the unit of the block
    /// cache. Default 256.
    pub sst_index_block_rows: usize,
    /// Compression of SST pages. Default Snappy.
    pub sst_compression: SstCompression,
    /// Least fraction of a column's bytes a fast codec (`snappy`, `lz4`) must save for the
    /// column to be compressed in the files compactions and bulk loads write: a column that
    /// would save less (random numbers, dictionary indices) is stored uncompressed, so its
    /// readers copy its pages instead of decompressing them. Estimated per column from the
    /// file's first rows (`sst::writer`). The files grow by what the codec would have saved
    /// (under 2 % in `benches/README.md`'s events table), which cold reads from object
    /// storage fetch. 0 compresses every column; `zstd` (chosen for size) and flushed files
    /// always compress every column. Default 0.2.
    pub sst_compression_min_saving: f64,
    /// Largest row group in bytes while it is being written (it is buffered in memory whole);
    /// bounds the memory of flushes and compactions. Default 128 MiB.
    pub sst_row_group_bytes_max: usize,
    /// False-positive rate of the Parquet bloom filters on key columns. Default 0.01.
    pub bloom_filter_fpp: f64,
    /// Compaction strategy and its settings.
    pub compaction: CompactionOptions,
    /// Maintain deletion vectors (see `dv`): flushes, loads and compactions mark the rows of
    /// older files that newer data supersedes, so scans read the files as they are instead of
    /// merging them. Costs a pass over the key columns of the older files a new file overlaps.
    /// Off: scans of tables with overlapping files or tombstones merge. Default on.
    pub deletion_vectors: bool,
}

impl Default for TableOptions {
    fn default() -> Self {
        TableOptions {
            // The measured best general-purpose variant (benches/README.md, "Profiles"): as
            // fast as `skiplist` or faster, lock-free, and 18% fewer bytes per entry.
            memtable_kind: MemtableKind::EnhancedSkipList,
            memtable_size_bytes: 64 * MIB,
            max_immutable_memtables: 4,
            sst_row_group_rows: 64 * 1024,
            sst_scan_row_group_rows: 1024 * 1024,
            sst_scan_dictionary_page_size_bytes: MIB,
            sst_page_size_bytes: 8 * KIB,
            sst_value_page_size_bytes: 8 * KIB,
            sst_index_block_rows: 256,
            sst_compression: SstCompression::Snappy,
            sst_compression_min_saving: 0.2,
            sst_row_group_bytes_max: 128 * MIB,
            bloom_filter_fpp: 0.01,
            compaction: CompactionOptions::default(),
            deletion_vectors: true,
        }
    }
}

impl TableOptions {
    /// Checks the relations between fields.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::InvalidArgument(m.to_string()));
        if self.memtable_size_bytes < 64 * KIB {
            return bad("memtable_size_bytes must be at least 64 KiB");
        }
        if self.max_immutable_memtables == 0 {
            return bad("max_immutable_memtables must be at least 1");
        }
        if self.sst_row_group_rows < self.sst_index_block_rows {
            return bad("sst_row_group_rows must be at least sst_index_block_rows");
        }
        if self.sst_scan_row_group_rows < self.sst_index_block_rows {
            return bad("sst_scan_row_group_rows must be at least sst_index_block_rows");
        }
        if self.sst_scan_dictionary_page_size_bytes < self.sst_page_size_bytes {
            return bad("sst_scan_dictionary_page_size_bytes must be at least sst_page_size_bytes");
        }
        if !(16..=1 << 20).contains(&self.sst_index_block_rows) {
            return bad("sst_index_block_rows must be between 16 and 1,048,576");
        }
        if self.sst_page_size_bytes < KIB {
            return bad("sst_page_size_bytes must be at least 1 KiB");
        }
        if self.sst_value_page_size_bytes < KIB {
            return bad("sst_value_page_size_bytes must be at least 1 KiB");
        }
        if self.sst_row_group_bytes_max < self.sst_page_size_bytes {
            return bad("sst_row_group_bytes_max must be at least sst_page_size_bytes");
        }
        if !(self.bloom_filter_fpp > 0.0 && self.bloom_filter_fpp < 1.0) {
            return bad("bloom_filter_fpp must be between 0 and 1");
        }
        if !(0.0..1.0).contains(&self.sst_compression_min_saving) {
            return bad("sst_compression_min_saving must be at least 0 and below 1");
        }
        self.compaction.validate()
    }
}

/// Settings of a database, given to [`crate::Db::open`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Create the database if the directory holds none. Default true.
    pub create_if_missing: bool,
    /// WAL durability; see [`SyncMode`]. Default `IntervalMs(100)`.
    pub sync_mode: SyncMode,
    /// Size at which the WAL starts a new segment. Default 64 MiB.
    pub wal_segment_size_bytes: u64,
    /// Memory budget of all memtables of all tables together: at 1x the largest memtable is
    /// flushed early, at 2x writers stall until flushes catch up. Default 512 MiB.
    pub write_buffer_budget_bytes: usize,
    /// Largest encoded primary key. Default 64 KiB.
    pub key_size_bytes_max: usize,
    /// Largest encoded row (non-key columns). Default 16 MiB.
    pub value_size_bytes_max: usize,
    /// Largest write batch (one WAL record). Default 256 MiB.
    pub write_batch_bytes_max: usize,
    /// Largest commit group written with one `write` call. Default 4 MiB.
    pub commit_group_bytes_max: usize,
    /// Background threads for flushes (and compactions). Default 2.
    pub background_threads: usize,
    /// Bytes of decoded SST data kept in memory for point lookups and the first blocks of
    /// scans (`sst::cache`): key blocks, whole blocks, and row pages. Default 256 MiB.
    pub block_cache_bytes: usize,
    /// The share of `block_cache_bytes`, in percent (0 to 90), kept for *row pages*: the
    /// decoded page of each column holding a row a point lookup returned, so the next lookup
    /// of a row in that page reads nothing. Key blocks and scan blocks get the rest, and the
    /// two shares never evict each other's entries. 0: every lookup reads its row's pages.
    /// Default 50.
    pub row_page_cache_percent: u8,
    /// Bytes of SST primary keys kept in memory (`sst::key_cache`): scans resolve their
    /// memtable overlay against them, flushes find the rows they supersede. A file whose keys
    /// need more than a quarter of it is not cached. Default 256 MiB.
    pub key_cache_bytes: usize,
    /// After opening a local database, read the keys of its files into the key cache in the
    /// background (a thread of its own, the files of the deepest levels and most rows first,
    /// until the cache is full), so the first scans, flushes and point lookups find them
    /// there instead of reading key columns on their own path. Not done for a database on
    /// object storage, where it would GET key columns no query may need. Default true.
    pub key_cache_warm_on_open: bool,
    /// Milliseconds between passes of the scan-plan refresher, a background thread that
    /// keeps the plans of the key ranges queries scanned in the last two seconds up to date
    /// with the latest writes, flushes and compactions (`read::plan_cache`), so a query on a
    /// table under writes plans only what was written in the last interval. It rests at
    /// least four times as long as its last pass took (at most a fifth of a core), and while
    /// no table was scanned recently it sleeps until a scan wakes it. 0: no refresher; each
    /// query brings its plan up to date itself. Default 5.
    pub scan_plan_refresh_ms: u64,
    /// Milliseconds between retries of obsolete-file deletions held back by a query lease or
    /// a failed lease listing (`crate::purge`; a held-back file is also retried whenever
    /// another is released). Default 10,000.
    pub obsolete_file_retry_ms: u64,
    /// Verify each SST file's checksum before its first use in this process. Default true.
    pub verify_sst_checksums: bool,
    /// Manifest size at which it is rewritten as one snapshot record. Default 4 MiB.
    pub manifest_rewrite_bytes: u64,
    /// Settings for tables created without explicit options.
    pub table_defaults: TableOptions,
    /// Fault injection for tests (I/O errors on chosen operations). Default none.
    pub faults: Option<Arc<FaultInjector>>,
    /// For a database on object storage (`s3://bucket/prefix`): the local directory holding
    /// its WAL (under `wal/`) and its `LOCK` file, the *local-WAL mode* (see
    /// [`crate::storage`]: writes not yet flushed exist on this disk only). Default `None`:
    /// `$XDG_DATA_HOME/strata/<scheme>/<bucket>/<prefix>` (`~/.local/share/...` without
    /// `XDG_DATA_HOME`). Not used by a local database, whose WAL is in its directory.
    pub local_wal_dir: Option<std::path::PathBuf>,
    /// For a database on object storage: the local directory of its disk cache of SST byte
    /// ranges (see [`crate::disk_cache`]), which survives restarts. Default `None`: `cache/`
    /// in the local WAL directory. Not used by a local database.
    pub disk_cache_dir: Option<std::path::PathBuf>,
    /// The most bytes the disk cache holds (0: no disk cache; every read of an SST byte
    /// range not in the memory block cache is a GET). Default 4 GiB (`high_performance`:
    /// 16 GiB, `memory_efficient`: 1 GiB). Not used by a local database.
    pub disk_cache_bytes: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            create_if_missing: true,
            sync_mode: SyncMode::IntervalMs(100),
            wal_segment_size_bytes: 64 * MIB as u64,
            write_buffer_budget_bytes: 512 * MIB,
            key_size_bytes_max: 64 * KIB,
            value_size_bytes_max: 16 * MIB,
            write_batch_bytes_max: 256 * MIB,
            commit_group_bytes_max: 4 * MIB,
            background_threads: 2,
            block_cache_bytes: 256 * MIB,
            row_page_cache_percent: 50,
            key_cache_bytes: 256 * MIB,
            key_cache_warm_on_open: true,
            scan_plan_refresh_ms: 5,
            obsolete_file_retry_ms: 10_000,
            verify_sst_checksums: true,
            manifest_rewrite_bytes: 4 * MIB as u64,
            table_defaults: TableOptions::default(),
            faults: None,
            local_wal_dir: None,
            disk_cache_dir: None,
            disk_cache_bytes: 4 * GIB,
        }
    }
}

impl Options {
    /// The balanced profile: the defaults.
    pub fn balanced() -> Self {
        Options::default()
    }

    /// Throughput first: 128 MiB memtables, 1 GiB write budget, 512 MiB block and key caches, WAL synced
    /// in the background every 200 ms, LZ4 SSTs, a 16 GiB disk cache (object storage).
    pub fn high_performance() -> Self {
        Options {
            sync_mode: SyncMode::IntervalMs(200),
            write_buffer_budget_bytes: 1024 * MIB,
            block_cache_bytes: 512 * MIB,
            key_cache_bytes: 512 * MIB,
            disk_cache_bytes: 16 * GIB,
            background_threads: 2,
            table_defaults: TableOptions {
                memtable_kind: MemtableKind::EnhancedSkipList,
                memtable_size_bytes: 128 * MIB,
                max_immutable_memtables: 6,
                sst_compression: SstCompression::Lz4,
                ..TableOptions::default()
            },
            ..Options::default()
        }
    }

    /// Memory first: 8 MiB memtables, 64 MiB write budget, 16 MiB block and key caches, a 1 GiB
    /// disk cache (object storage), zstd SSTs, and
    /// the `enhanced_skiplist` memtable, the smallest general-purpose variant measured (155
    /// bytes per entry against 186 for `sorted`; `vector` and `linked_list` are smaller but
    /// O(n) per read or per insert).
    pub fn memory_efficient() -> Self {
        Options {
            write_buffer_budget_bytes: 64 * MIB,
            block_cache_bytes: 16 * MIB,
            key_cache_bytes: 16 * MIB,
            disk_cache_bytes: GIB,
            background_threads: 1,
            commit_group_bytes_max: MIB,
            table_defaults: TableOptions {
                memtable_kind: MemtableKind::EnhancedSkipList,
                memtable_size_bytes: 8 * MIB,
                max_immutable_memtables: 2,
                sst_compression: SstCompression::Zstd(3),
                ..TableOptions::default()
            },
            ..Options::default()
        }
    }

    /// Options of a named profile.
    pub fn profile(profile: Profile) -> Self {
        profile.options()
    }

    /// Checks the relations between fields.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::InvalidArgument(m.to_string()));
        self.table_defaults.validate()?;
        if self.background_threads == 0 {
            return bad("background_threads must be at least 1");
        }
        if self.obsolete_file_retry_ms == 0 {
            return bad("obsolete_file_retry_ms must be at least 1");
        }
        if self.wal_segment_size_bytes < 64 * KIB as u64 {
            return bad("wal_segment_size_bytes must be at least 64 KiB");
        }
        if self.write_buffer_budget_bytes < self.table_defaults.memtable_size_bytes {
            return bad("write_buffer_budget_bytes must be at least the default memtable size");
        }
        if self.write_batch_bytes_max >= u32::MAX as usize {
            return bad("write_batch_bytes_max must be below 4 GiB (the WAL length field)");
        }
        if self.commit_group_bytes_max > self.write_batch_bytes_max {
            return bad("commit_group_bytes_max must not exceed write_batch_bytes_max");
        }
        if self.row_page_cache_percent > 90 {
            return bad("row_page_cache_percent must be at most 90");
        }
        if self.key_size_bytes_max == 0 || self.value_size_bytes_max == 0 {
            return bad("key and value size limits must be positive");
        }
        if let SyncMode::IntervalMs(0) = self.sync_mode {
            return bad("sync interval must be at least 1 ms (use SyncMode::Always)");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_are_valid_and_parse() {
        for profile in Profile::ALL {
            profile.options().validate().unwrap();
            assert_eq!(profile.name().parse::<Profile>().unwrap(), *profile);
        }
        assert!("fast".parse::<Profile>().is_err());
        assert_eq!(
            "high-performance".parse::<Profile>().unwrap(),
            Profile::HighPerformance
        );
    }

    #[test]
    fn parse_modes_and_codecs() {
        assert_eq!("always".parse::<SyncMode>().unwrap(), SyncMode::Always);
        assert_eq!(
            "interval:50ms".parse::<SyncMode>().unwrap(),
            SyncMode::IntervalMs(50)
        );
        assert_eq!(
            "zstd(7)".parse::<SstCompression>().unwrap(),
            SstCompression::Zstd(7)
        );
        assert!("zstd(99)".parse::<SstCompression>().is_err());
        assert!("gzip".parse::<SstCompression>().is_err());
    }

    #[test]
    fn invalid_relations_are_rejected() {
        let options = Options {
            write_buffer_budget_bytes: 1024,
            ..Options::default()
        };
        assert!(options.validate().is_err());
        // Row pages may take at most 90 % of the block cache.
        for (percent, valid) in [(0, true), (90, true), (91, false)] {
            let options = Options {
                row_page_cache_percent: percent,
                ..Options::default()
            };
            assert_eq!(options.validate().is_ok(), valid, "{percent} %");
        }
        let table = TableOptions {
            bloom_filter_fpp: 1.5,
            ..TableOptions::default()
        };
        assert!(table.validate().is_err());
        for saving in [-0.1, 1.0, f64::NAN] {
            let table = TableOptions {
                sst_compression_min_saving: saving,
                ..TableOptions::default()
            };
            assert!(table.validate().is_err(), "{saving}");
        }
        // The scan layout's row groups hold whole index blocks; its dictionaries are at least
        // the lookup layout's.
        let table = TableOptions {
            sst_scan_row_group_rows: 128,
            ..TableOptions::default()
        };
        assert!(table.validate().is_err());
        let table = TableOptions {
            sst_scan_dictionary_page_size_bytes: 4 * KIB,
            ..TableOptions::default()
        };
        assert!(table.validate().is_err());
        let table = TableOptions {
            sst_scan_row_group_rows: 256,
            sst_scan_dictionary_page_size_bytes: 8 * KIB,
            ..TableOptions::default()
        };
        table.validate().unwrap();
    }

    #[test]
    fn table_options_round_trip_through_json() {
        let options = Options::memory_efficient().table_defaults;
        let json = serde_json::to_string(&options).unwrap();
        let back: TableOptions = serde_json::from_str(&json).unwrap();
        assert_eq!(back, options);
        // Missing fields take defaults, so options written by older versions still load.
        let partial: TableOptions = serde_json::from_str(r#"{"memtable_kind":"sorted"}"#).unwrap();
        assert_eq!(partial.memtable_kind, MemtableKind::Sorted);
        assert_eq!(
            partial.memtable_size_bytes,
            TableOptions::default().memtable_size_bytes
        );
    }
}
