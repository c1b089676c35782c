//! Compaction: choosing which SST files to merge (strategies, pure functions of a version) and
//! the analysis of a version's key ranges they rest on. Running a chosen task lives in
//! `db::compact`.
//!
//! ## Sorted runs and levels
//!
//! A *sorted run* is a set of files that do not overlap: every file in level 1 and deeper forms
//! one run per level, and in level 0 the files written by one flush or one compaction share a
//! run id ([`SstMeta::run`]). Level 0 runs are ordered by age (newest first); for any key, its
//! versions in newer runs are newer than those in older runs, and L0 holds newer versions than
//! L1, L1 than L2, and so on. Every task a strategy proposes keeps that order:
//!
//! * Leveled: an L0 compaction takes *all* L0 files (so none older is left above the output);
//!   an Ln compaction (n ≥ 1) takes one file and every file of Ln+1 it overlaps.
//! * Size-tiered: a merge takes a *window of consecutive runs* in age order, never skipping one.
//! * A merge that writes to level `n` takes every file of level `n` that overlaps it, so level
//!   `n` stays non-overlapping (L0 is exempt: its runs may overlap).
//!
//! ## Tombstones
//!
//! A task may drop tombstones only if no file outside it can hold an older version of any of its
//! keys ([`can_drop_tombstones`]): no file deeper than the output level, and no older level-0
//! run outside the task, overlaps its key range. The merge also keeps every version a live
//! snapshot still sees, and never changes a sequence number.

mod leveled;
mod tiered;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use leveled::Leveled;
pub use tiered::SizeTiered;
pub(crate) use tiered::sorted_runs;

use crate::error::{Error, Result};
use crate::sst::SstMeta;
use crate::types::FileId;

const MIB: u64 = 1024 * 1024;

/// The compaction strategy of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StrategyKind {
    /// Levels of growing target size; one non-overlapping run per level (low read and space
    /// amplification, more write amplification).
    #[default]
    Leveled,
    /// Merge sorted runs of similar size (low write amplification, more space and read
    /// amplification).
    SizeTiered,
    /// No background compaction (manual compaction still works).
    None,
}

impl StrategyKind {
    /// Every strategy.
    pub const ALL: &'static [StrategyKind] = &[
        StrategyKind::Leveled,
        StrategyKind::SizeTiered,
        StrategyKind::None,
    ];

    /// The name accepted by [`FromStr`].
    pub fn name(self) -> &'static str {
        match self {
            StrategyKind::Leveled => "leveled",
            StrategyKind::SizeTiered => "size_tiered",
            StrategyKind::None => "none",
        }
    }

    /// The strategy's picker (`None` for [`StrategyKind::None`]).
    pub fn strategy(self) -> Option<&'static dyn CompactionStrategy> {
        match self {
            StrategyKind::Leveled => Some(&Leveled),
            StrategyKind::SizeTiered => Some(&SizeTiered),
            StrategyKind::None => None,
        }
    }
}

impl fmt::Display for StrategyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for StrategyKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "leveled" | "level" => Ok(StrategyKind::Leveled),
            "size_tiered" | "tiered" | "universal" => Ok(StrategyKind::SizeTiered),
            "none" | "off" => Ok(StrategyKind::None),
            _ => Err(Error::InvalidArgument(format!(
                "unknown compaction strategy '{s}'; valid strategies: leveled, size_tiered, none"
            ))),
        }
    }
}

/// How a leveled compaction picks the file of level n ≥ 1 to push down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilePick {
    /// The file whose overlap with the next level is smallest relative to its size (least
    /// rewriting per byte pushed down: RocksDB's default).
    #[default]
    MinOverlapRatio,
    /// The file overlapping the most bytes of the next level (merges the most versions).
    MostOverlap,
    /// The file holding the oldest data.
    Oldest,
}

/// Compaction settings of a table (part of [`crate::TableOptions`], stored with it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CompactionOptions {
    /// The strategy. Default leveled.
    pub strategy: StrategyKind,
    /// Level-0 files (leveled) or sorted runs (size-tiered) that trigger a compaction.
    /// Size-tiered considers space amplification and size ratios from this many runs on, and
    /// forces a merge of the newest runs only above it. Default 4.
    pub l0_compaction_trigger: usize,
    /// Level-0 files or runs at which writes are slowed down. Default 20.
    pub l0_slowdown_trigger: usize,
    /// Level-0 files or runs at which writes stall until compaction catches up. Default 36.
    pub l0_stop_trigger: usize,
    /// Target size of level 1 (leveled). Default 256 MiB.
    pub level_base_bytes: u64,
    /// Each level's target is this many times the previous one (leveled). Default 10.
    pub level_size_multiplier: u32,
    /// Deepest level is `max_levels - 1`. Default 7.
    pub max_levels: usize,
    /// Size at which a compaction starts a new output file (at a key boundary). Default 64 MiB.
    pub target_file_size_bytes: u64,
    /// Which file a leveled compaction of level n ≥ 1 picks. Default min overlap ratio.
    pub file_pick: FilePick,
    /// Size-tiered: the next run joins a merge when its size is at most this much larger (in
    /// percent) than the runs taken so far. Default 1.
    pub tier_size_ratio_percent: u32,
    /// Size-tiered: fewest runs in a merge. Default 2.
    pub tier_min_merge_width: usize,
    /// Size-tiered: most runs in a merge. Default 32.
    pub tier_max_merge_width: usize,
    /// Size-tiered: merge every run when the runs other than the oldest take this much space
    /// (percent of the oldest). Default 200.
    pub tier_max_space_amplification_percent: u32,
    /// Memory budget of one compaction: the merge reads each input run in batches sized so
    /// all of them fit in half of it, output row groups and upload parts take at most a quarter.
    /// Parquet decoders add about one page per column per input file on top (and the
    /// dictionary of each dictionary-encoded column, at most
    /// `TableOptions::sst_scan_dictionary_page_size_bytes`), so the measured
    /// peak is a small multiple of the budget (2.6x for a 12-run merge of a table ten times the
    /// budget, `tests/compaction_memory.rs`), independent of the table's size. Default 256 MiB.
    pub memory_bytes_max: u64,
    /// Estimated bytes waiting for compaction at which writes are slowed down. Default 64 GiB.
    pub pending_bytes_slowdown: u64,
    /// Estimated bytes waiting for compaction at which writes stall. Default 256 GiB.
    pub pending_bytes_stop: u64,
}

impl Default for CompactionOptions {
    fn default() -> Self {
        CompactionOptions {
            strategy: StrategyKind::Leveled,
            l0_compaction_trigger: 4,
            l0_slowdown_trigger: 20,
            l0_stop_trigger: 36,
            level_base_bytes: 256 * MIB,
            level_size_multiplier: 10,
            max_levels: 7,
            target_file_size_bytes: 64 * MIB,
            file_pick: FilePick::MinOverlapRatio,
            tier_size_ratio_percent: 1,
            tier_min_merge_width: 2,
            tier_max_merge_width: 32,
            tier_max_space_amplification_percent: 200,
            memory_bytes_max: 256 * MIB,
            pending_bytes_slowdown: 64 * 1024 * MIB,
            pending_bytes_stop: 256 * 1024 * MIB,
        }
    }
}

impl CompactionOptions {
    /// Checks the relations between fields.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::InvalidArgument(m.to_string()));
        if self.l0_compaction_trigger == 0 {
            return bad("l0_compaction_trigger must be at least 1");
        }
        if !(self.l0_compaction_trigger <= self.l0_slowdown_trigger
            && self.l0_slowdown_trigger <= self.l0_stop_trigger)
        {
            return bad(
                "triggers must satisfy l0_compaction_trigger <= l0_slowdown_trigger <= l0_stop_trigger",
            );
        }
        if !(2..=64).contains(&self.max_levels) {
            return bad("max_levels must be between 2 and 64");
        }
        if self.level_size_multiplier < 2 {
            return bad("level_size_multiplier must be at least 2");
        }
        if self.target_file_size_bytes < 64 * 1024
            || self.level_base_bytes < self.target_file_size_bytes
        {
            return bad(
                "target_file_size_bytes must be at least 64 KiB and at most level_base_bytes",
            );
        }
        if self.tier_min_merge_width < 2 || self.tier_max_merge_width < self.tier_min_merge_width {
            return bad(
                "tier merge widths must satisfy 2 <= tier_min_merge_width <= tier_max_merge_width",
            );
        }
        if self.memory_bytes_max < 4 * MIB {
            return bad("memory_bytes_max must be at least 4 MiB");
        }
        if self.pending_bytes_slowdown > self.pending_bytes_stop {
            return bad("pending_bytes_slowdown must not exceed pending_bytes_stop");
        }
        Ok(())
    }

    /// Target size of `level` (leveled; level 0 has none).
    pub fn level_target_bytes(&self, level: usize) -> u64 {
        debug_assert!(level >= 1);
        let mut target = self.level_base_bytes;
        for _ in 1..level {
            target = target.saturating_mul(u64::from(self.level_size_multiplier));
        }
        target
    }
}

/// What a task does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    /// Merge the inputs into new files.
    Merge,
    /// Move one file to the output level unchanged (it overlaps nothing there).
    Move,
}

/// A unit of compaction work proposed by a strategy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactionTask {
    /// Merge or move.
    pub kind: TaskKind,
    /// The input files.
    pub inputs: Vec<SstMeta>,
    /// The level the output goes to.
    pub output_level: u32,
    /// Whether tombstones may be dropped (see [`can_drop_tombstones`]).
    pub drop_tombstones: bool,
    /// Why the strategy chose this task (for logs and `strata_levels`).
    pub reason: String,
}

impl CompactionTask {
    /// Ids of the input files.
    pub fn input_ids(&self) -> Vec<FileId> {
        self.inputs.iter().map(|f| f.id).collect()
    }

    /// Total bytes of the inputs.
    pub fn input_bytes(&self) -> u64 {
        self.inputs.iter().map(|f| f.size_bytes).sum()
    }

    /// A merge task with the tombstone rule applied.
    pub fn merge(
        levels: &[Vec<SstMeta>],
        inputs: Vec<SstMeta>,
        output_level: u32,
        reason: String,
    ) -> Self {
        let drop_tombstones = can_drop_tombstones(levels, &inputs, output_level);
        CompactionTask {
            kind: TaskKind::Merge,
            inputs,
            output_level,
            drop_tombstones,
            reason,
        }
    }
}

/// Picks compaction work from a version. Implementations are pure: no I/O, no clock.
pub trait CompactionStrategy: Send + Sync + fmt::Debug {
    /// The next task for the version whose files are `levels` (level 0 first), if any.
    fn pick(&self, levels: &[Vec<SstMeta>], options: &CompactionOptions) -> Option<CompactionTask>;

    /// How many level-0 files (leveled) or sorted runs (size-tiered) hold writes back.
    fn write_pressure(&self, levels: &[Vec<SstMeta>]) -> usize;

    /// Estimated bytes a compaction still has to rewrite to bring the version in shape.
    fn pending_bytes(&self, levels: &[Vec<SstMeta>], options: &CompactionOptions) -> u64;
}

/// The smallest and largest key of `files`.
pub fn key_span<'a>(files: impl IntoIterator<Item = &'a SstMeta>) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut span: Option<(Vec<u8>, Vec<u8>)> = None;
    for file in files {
        span = Some(match span {
            None => (file.min_key.clone(), file.max_key.clone()),
            Some((lo, hi)) => (lo.min(file.min_key.clone()), hi.max(file.max_key.clone())),
        });
    }
    span
}

/// True when `file` overlaps the inclusive key range `[lo, hi]`.
pub fn overlaps(file: &SstMeta, lo: &[u8], hi: &[u8]) -> bool {
    file.min_key.as_slice() <= hi && lo <= file.max_key.as_slice()
}

/// True when no file outside `inputs` can hold an older version of a key of `inputs` once
/// the output is at `output_level`: no file deeper than the output, and no level-0 file of an
/// older run, overlaps the inputs' key range.
pub fn can_drop_tombstones(levels: &[Vec<SstMeta>], inputs: &[SstMeta], output_level: u32) -> bool {
    let Some((lo, hi)) = key_span(inputs) else {
        return false;
    };
    let ids: Vec<FileId> = inputs.iter().map(|f| f.id).collect();
    let oldest_input = inputs.iter().map(|f| f.min_seq).min().unwrap_or(0);
    for (level, files) in levels.iter().enumerate() {
        for file in files
            .iter()
            .filter(|f| !ids.contains(&f.id) && overlaps(f, &lo, &hi))
        {
            let deeper = level as u32 > output_level;
            let older_l0 = level == 0 && output_level == 0 && file.max_seq < oldest_input;
            if deeper || older_l0 {
                return false;
            }
        }
    }
    true
}

/// Level-0 files grouped into sorted runs, newest run first.
pub fn l0_runs(level0: &[SstMeta]) -> Vec<Vec<SstMeta>> {
    let mut runs: Vec<Vec<SstMeta>> = Vec::new();
    for file in level0 {
        match runs.iter_mut().find(|r| r[0].run() == file.run()) {
            Some(run) => run.push(file.clone()),
            None => runs.push(vec![file.clone()]),
        }
    }
    for run in &mut runs {
        run.sort_by(|a, b| a.min_key.cmp(&b.min_key));
    }
    runs.sort_by_key(|r| std::cmp::Reverse(r.iter().map(|f| f.max_seq).max().unwrap_or(0)));
    runs
}

/// The largest number of files that cover one key among `files` (a sweep over their key
/// ranges): how many files a point read may have to probe.
pub fn overlap_depth<'a>(files: impl IntoIterator<Item = &'a SstMeta>) -> usize {
    let mut events: Vec<(&[u8], i32)> = Vec::new();
    for file in files {
        events.push((&file.min_key, 1));
        events.push((&file.max_key, -1));
    }
    // At equal keys, starts before ends: ranges are inclusive.
    events.sort_by(|a, b| a.0.cmp(b.0).then(b.1.cmp(&a.1)));
    let (mut depth, mut max) = (0i32, 0i32);
    for (_, delta) in events {
        depth += delta;
        max = max.max(depth);
    }
    max as usize
}

/// One row of a version's shape, for `strata_levels` and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelSummary {
    /// Level number.
    pub level: usize,
    /// Files in the level.
    pub files: usize,
    /// Sorted runs in the level (1 for levels ≥ 1 that hold files).
    pub runs: usize,
    /// Bytes of the level's files.
    pub bytes: u64,
    /// Rows (all versions) in the level.
    pub rows: u64,
    /// Smallest key in the level.
    pub min_key: Option<Vec<u8>>,
    /// Largest key in the level.
    pub max_key: Option<Vec<u8>>,
    /// Largest number of the level's files covering one key.
    pub overlap_depth: usize,
    /// Target size (leveled levels ≥ 1).
    pub target_bytes: Option<u64>,
}

/// Summarises every level of a version.
pub fn analyze(levels: &[Vec<SstMeta>], options: &CompactionOptions) -> Vec<LevelSummary> {
    levels
        .iter()
        .enumerate()
        .map(|(level, files)| {
            let span = key_span(files);
            LevelSummary {
                level,
                files: files.len(),
                runs: if level == 0 {
                    l0_runs(files).len()
                } else {
                    usize::from(!files.is_empty())
                },
                bytes: files.iter().map(|f| f.size_bytes).sum(),
                rows: files.iter().map(|f| f.rows).sum(),
                min_key: span.as_ref().map(|s| s.0.clone()),
                max_key: span.map(|s| s.1),
                overlap_depth: overlap_depth(files),
                target_bytes: (level >= 1 && options.strategy == StrategyKind::Leveled)
                    .then(|| options.level_target_bytes(level)),
            }
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod test_support {
    use crate::sst::SstMeta;

    /// A file for strategy tests: keys `lo..=hi` as 4-byte big-endian numbers.
    pub fn file(id: u64, level: u32, lo: u32, hi: u32, size: u64, seq: u64) -> SstMeta {
        SstMeta {
            id,
            table_id: 1,
            level,
            run_id: id,
            size_bytes: size,
            crc32c: 0,
            rows: size / 100,
            tombstones: 0,
            older_versions: 0,
            min_key: lo.to_be_bytes().to_vec(),
            max_key: hi.to_be_bytes().to_vec(),
            min_seq: seq,
            max_seq: seq + 9,
            created_at_ms: 0,
        }
    }

    /// Files arranged by level.
    pub fn levels(files: Vec<SstMeta>) -> Vec<Vec<SstMeta>> {
        let mut levels: Vec<Vec<SstMeta>> = Vec::new();
        for f in files {
            let l = f.level as usize;
            if levels.len() <= l {
                levels.resize_with(l + 1, Vec::new);
            }
            levels[l].push(f);
        }
        levels
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{file, levels};
    use super::*;

    #[test]
    fn strategies_parse() {
        for kind in StrategyKind::ALL {
            assert_eq!(kind.name().parse::<StrategyKind>().unwrap(), *kind);
        }
        assert_eq!(
            "universal".parse::<StrategyKind>().unwrap(),
            StrategyKind::SizeTiered
        );
        assert!(
            "fifo"
                .parse::<StrategyKind>()
                .unwrap_err()
                .to_string()
                .contains("leveled, size_tiered, none")
        );
    }

    #[test]
    fn overlap_depth_counts_files_covering_one_key() {
        let files = [
            file(1, 0, 0, 10, 1, 1),
            file(2, 0, 5, 20, 1, 2),
            file(3, 0, 10, 12, 1, 3),
            file(4, 0, 30, 40, 1, 4),
        ];
        assert_eq!(overlap_depth(&files), 3);
        assert_eq!(overlap_depth(&files[3..]), 1);
        assert_eq!(overlap_depth(&[]), 0);
    }

    #[test]
    fn tombstones_drop_only_at_the_bottom_of_their_keys() {
        let version = levels(vec![
            file(1, 0, 0, 10, 1, 50),
            file(2, 1, 0, 10, 1, 20),
            file(3, 2, 20, 30, 1, 5),
        ]);
        let l0_l1: Vec<SstMeta> = vec![version[0][0].clone(), version[1][0].clone()];
        // Nothing deeper overlaps keys 0..=10.
        assert!(can_drop_tombstones(&version, &l0_l1, 1));
        let with_deeper = levels(vec![
            file(1, 0, 0, 10, 1, 50),
            file(2, 1, 0, 10, 1, 20),
            file(3, 2, 5, 30, 1, 5),
        ]);
        let inputs: Vec<SstMeta> = vec![with_deeper[0][0].clone(), with_deeper[1][0].clone()];
        assert!(
            !can_drop_tombstones(&with_deeper, &inputs, 1),
            "L2 may hold older versions"
        );
        // Level-0 output: an older overlapping run outside the merge holds it back.
        let runs = levels(vec![file(5, 0, 0, 10, 1, 100), file(6, 0, 0, 10, 1, 10)]);
        assert!(!can_drop_tombstones(&runs, &[runs[0][0].clone()], 0));
        assert!(
            can_drop_tombstones(&runs, &[runs[0][1].clone()], 0),
            "a newer run does not matter"
        );
    }

    #[test]
    fn l0_runs_group_by_run_id_newest_first() {
        let mut a = file(1, 0, 0, 10, 1, 10);
        let mut b = file(2, 0, 11, 20, 1, 12);
        a.run_id = 9;
        b.run_id = 9;
        let c = file(3, 0, 0, 20, 1, 50);
        let runs = l0_runs(&[a, c, b]);
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0][0].id, 3);
        assert_eq!(runs[1].iter().map(|f| f.id).collect::<Vec<_>>(), vec![1, 2]);
    }
}
