//! Size-tiered compaction: the table is a list of sorted runs (level-0 runs newest first, then
//! each non-empty deeper level); runs of similar size are merged into one.
//!
//! Nothing happens below `l0_compaction_trigger` runs. Then, in order:
//! 1. Space amplification: when the runs other than the oldest take more than
//!    `tier_max_space_amplification_percent` of the oldest's size, every run is merged.
//! 2. Size ratio: from the newest run on, a window grows while the next run is at most
//!    `tier_size_ratio_percent` larger than the window so far; the first window of at least
//!    `tier_min_merge_width` runs (at most `tier_max_merge_width`) is merged.
//! 3. Run count: otherwise, once there are *more* than `l0_compaction_trigger` runs, the
//!    newest runs are merged, enough to get back to the trigger. At exactly the trigger
//!    nothing is forced: merging then would rewrite a small run into a larger one early
//!    and raise write amplification (RocksDB's universal compaction draws the line at the
//!    same place).
//!
//! A window is always a run of consecutive runs in age order. Its output goes to the deepest
//! level in the window (level 0 when the window holds only level-0 runs), as one new run.

use super::{CompactionOptions, CompactionStrategy, CompactionTask, l0_runs};
use crate::sst::SstMeta;

/// The size-tiered strategy.
#[derive(Debug, Clone, Copy, Default)]
pub struct SizeTiered;

/// One sorted run and where it lives.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    files: Vec<SstMeta>,
    level: u32,
    /// The bytes of its files.
    pub bytes: u64,
}

/// Every sorted run of the version, newest first.
pub(crate) fn sorted_runs(levels: &[Vec<SstMeta>]) -> Vec<Run> {
    let mut runs: Vec<Run> = levels
        .first()
        .map(|l0| l0_runs(l0))
        .unwrap_or_default()
        .into_iter()
        .map(|files| Run {
            bytes: files.iter().map(|f| f.size_bytes).sum(),
            files,
            level: 0,
        })
        .collect();
    for (level, files) in levels.iter().enumerate().skip(1) {
        if !files.is_empty() {
            runs.push(Run {
                files: files.clone(),
                level: level as u32,
                bytes: files.iter().map(|f| f.size_bytes).sum(),
            });
        }
    }
    runs
}

fn merge_window(levels: &[Vec<SstMeta>], window: &[Run], reason: String) -> CompactionTask {
    let output_level = window.iter().map(|r| r.level).max().unwrap_or(0);
    let inputs = window
        .iter()
        .flat_map(|r| r.files.iter().cloned())
        .collect();
    CompactionTask::merge(levels, inputs, output_level, reason)
}

impl CompactionStrategy for SizeTiered {
    fn pick(&self, levels: &[Vec<SstMeta>], options: &CompactionOptions) -> Option<CompactionTask> {
        let runs = sorted_runs(levels);
        if runs.len() < options.l0_compaction_trigger.max(2) {
            return None;
        }
        let total: u64 = runs.iter().map(|r| r.bytes).sum();
        let oldest = runs.last().map_or(0, |r| r.bytes);
        let newer = total - oldest;
        if oldest > 0
            && newer.saturating_mul(100)
                >= oldest.saturating_mul(u64::from(options.tier_max_space_amplification_percent))
        {
            let reason = format!(
                "space amplification {}% over the oldest run: merge all {} runs",
                newer * 100 / oldest,
                runs.len()
            );
            return Some(merge_window(levels, &runs, reason));
        }
        let (min_width, max_width) = (options.tier_min_merge_width, options.tier_max_merge_width);
        for start in 0..runs.len() {
            let mut sum = runs[start].bytes;
            let mut end = start + 1;
            while end < runs.len()
                && end - start < max_width
                && runs[end].bytes.saturating_mul(100)
                    <= sum.saturating_mul(100 + u64::from(options.tier_size_ratio_percent))
            {
                sum += runs[end].bytes;
                end += 1;
            }
            if end - start >= min_width {
                let reason = format!("size ratio: runs {start}..{end} of {}", runs.len());
                return Some(merge_window(levels, &runs[start..end], reason));
            }
        }
        if runs.len() <= options.l0_compaction_trigger {
            return None;
        }
        let width = (runs.len() + 1 - options.l0_compaction_trigger)
            .clamp(min_width, max_width)
            .min(runs.len());
        let reason = format!("{} runs: merge the newest {width}", runs.len());
        Some(merge_window(levels, &runs[..width], reason))
    }

    fn write_pressure(&self, levels: &[Vec<SstMeta>]) -> usize {
        sorted_runs(levels).len()
    }

    fn pending_bytes(&self, levels: &[Vec<SstMeta>], options: &CompactionOptions) -> u64 {
        let runs = sorted_runs(levels);
        if runs.len() < options.l0_compaction_trigger {
            return 0;
        }
        runs.iter().rev().skip(1).map(|r| r.bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{file, levels};
    use super::*;

    fn options() -> CompactionOptions {
        CompactionOptions {
            strategy: super::super::StrategyKind::SizeTiered,
            l0_compaction_trigger: 3,
            tier_size_ratio_percent: 10,
            ..CompactionOptions::default()
        }
    }

    #[test]
    fn too_few_runs_do_nothing() {
        let version = levels(vec![file(1, 0, 0, 10, 100, 20), file(2, 0, 0, 10, 100, 10)]);
        assert_eq!(SizeTiered.pick(&version, &options()), None);
    }

    #[test]
    fn similar_sized_runs_merge_newest_first_in_age_order() {
        // Sizes newest first: 100, 105, 2000, 10000 (oldest). Space amplification is low.
        let version = levels(vec![
            file(1, 0, 0, 10, 100, 40),
            file(2, 0, 0, 10, 105, 30),
            file(3, 0, 0, 10, 2_000, 20),
            file(4, 0, 0, 10, 10_000, 10),
        ]);
        let task = SizeTiered.pick(&version, &options()).unwrap();
        assert_eq!(task.input_ids(), vec![1, 2]);
        assert_eq!(task.output_level, 0);
        assert!(!task.drop_tombstones, "older runs overlap");
    }

    #[test]
    fn space_amplification_merges_everything_and_drops_tombstones() {
        let version = levels(vec![
            file(1, 0, 0, 10, 500, 40),
            file(2, 0, 0, 10, 700, 30),
            // Newer runs take 1200 bytes, 300% of the oldest run's 400.
            file(3, 1, 0, 10, 400, 0),
        ]);
        let task = SizeTiered.pick(&version, &options()).unwrap();
        let mut ids = task.input_ids();
        ids.sort();
        assert_eq!(ids, vec![1, 2, 3]);
        assert_eq!(task.output_level, 1, "the output replaces the deepest run");
        assert!(task.drop_tombstones);
    }

    #[test]
    fn at_the_trigger_runs_of_unlike_sizes_are_left_alone() {
        // Three runs (the trigger), sizes 1, 100, 10000: no window, low space amplification.
        let version = levels(vec![
            file(1, 0, 0, 10, 1, 40),
            file(2, 0, 0, 10, 100, 30),
            file(3, 0, 0, 10, 10_000, 20),
        ]);
        assert_eq!(SizeTiered.pick(&version, &options()), None);
    }

    #[test]
    fn run_count_fallback_merges_the_newest_runs() {
        // Sizes that never fall within the ratio: 1, 100, 10000, 1000000.
        let version = levels(vec![
            file(1, 0, 0, 10, 1, 40),
            file(2, 0, 0, 10, 100, 30),
            file(3, 0, 0, 10, 10_000, 20),
            file(4, 0, 0, 10, 1_000_000, 10),
        ]);
        let task = SizeTiered.pick(&version, &options()).unwrap();
        assert_eq!(task.input_ids(), vec![1, 2]);
        assert_eq!(SizeTiered.write_pressure(&version), 4);
    }
}
