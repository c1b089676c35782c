//! Leveled compaction: L0 holds flushed files (runs may overlap); level n ≥ 1 is one
//! non-overlapping run whose target size grows by `level_size_multiplier` per level.
//!
//! Scores: L0 = files / `l0_compaction_trigger`; Ln = bytes / target(n). The highest score of
//! at least 1 wins (the lower level on ties). An L0 compaction merges every L0 file with the
//! L1 files they overlap; an Ln compaction pushes one file (chosen by [`FilePick`]) into Ln+1,
//! merging it with the Ln+1 files it overlaps, or moving it unchanged when it overlaps none.
//! The deepest level (`max_levels - 1`) is never compacted further.

use super::{
    CompactionOptions, CompactionStrategy, CompactionTask, FilePick, TaskKind, key_span, overlaps,
};
use crate::sst::SstMeta;

/// The leveled strategy.
#[derive(Debug, Clone, Copy, Default)]
pub struct Leveled;

fn level_bytes(files: &[SstMeta]) -> u64 {
    files.iter().map(|f| f.size_bytes).sum()
}

impl Leveled {
    /// The level to compact and its score, if any score reaches 1.
    fn choose_level(levels: &[Vec<SstMeta>], options: &CompactionOptions) -> Option<(usize, f64)> {
        let mut best: Option<(usize, f64)> = None;
        let l0 = levels.first().map_or(0, Vec::len);
        if l0 > 0 {
            best = Some((0, l0 as f64 / options.l0_compaction_trigger as f64));
        }
        let last = options.max_levels - 1;
        for (level, files) in levels.iter().enumerate().take(last).skip(1) {
            let score = level_bytes(files) as f64 / options.level_target_bytes(level) as f64;
            if best.is_none_or(|(_, b)| score > b) {
                best = Some((level, score));
            }
        }
        best.filter(|(_, score)| *score >= 1.0)
    }

    fn compact_l0(levels: &[Vec<SstMeta>], score: f64) -> Option<CompactionTask> {
        let l0 = levels.first()?;
        let (lo, hi) = key_span(l0)?;
        let next: Vec<SstMeta> = levels
            .get(1)
            .map(|l| {
                l.iter()
                    .filter(|f| overlaps(f, &lo, &hi))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        if l0.len() == 1 && next.is_empty() {
            return Some(CompactionTask {
                kind: TaskKind::Move,
                inputs: l0.clone(),
                output_level: 1,
                drop_tombstones: false,
                reason: format!("L0 score {score:.2}: move the only L0 file down"),
            });
        }
        let reason = format!(
            "L0 score {score:.2}: {} L0 files with {} L1 files",
            l0.len(),
            next.len()
        );
        let inputs = l0.iter().cloned().chain(next).collect();
        Some(CompactionTask::merge(levels, inputs, 1, reason))
    }

    fn compact_level(
        levels: &[Vec<SstMeta>],
        level: usize,
        score: f64,
        options: &CompactionOptions,
    ) -> Option<CompactionTask> {
        let empty = Vec::new();
        let next = levels.get(level + 1).unwrap_or(&empty);
        let overlap_of = |f: &SstMeta| -> (Vec<SstMeta>, u64) {
            let files: Vec<SstMeta> = next
                .iter()
                .filter(|n| overlaps(n, &f.min_key, &f.max_key))
                .cloned()
                .collect();
            let bytes = level_bytes(&files);
            (files, bytes)
        };
        let candidates = levels.get(level)?;
        let chosen = match options.file_pick {
            FilePick::MinOverlapRatio => candidates.iter().min_by(|a, b| {
                let ratio = |f: &SstMeta| overlap_of(f).1 as f64 / f.size_bytes.max(1) as f64;
                ratio(a).total_cmp(&ratio(b))
            }),
            FilePick::MostOverlap => candidates.iter().max_by_key(|f| overlap_of(f).1),
            FilePick::Oldest => candidates.iter().min_by_key(|f| f.max_seq),
        }?;
        let (overlap, _) = overlap_of(chosen);
        let output_level = level as u32 + 1;
        if overlap.is_empty() {
            return Some(CompactionTask {
                kind: TaskKind::Move,
                inputs: vec![chosen.clone()],
                output_level,
                drop_tombstones: false,
                reason: format!("L{level} score {score:.2}: move file {} down", chosen.id),
            });
        }
        let reason = format!(
            "L{level} score {score:.2}: file {} with {} L{output_level} files",
            chosen.id,
            overlap.len()
        );
        let inputs = std::iter::once(chosen.clone()).chain(overlap).collect();
        Some(CompactionTask::merge(levels, inputs, output_level, reason))
    }
}

impl CompactionStrategy for Leveled {
    fn pick(&self, levels: &[Vec<SstMeta>], options: &CompactionOptions) -> Option<CompactionTask> {
        let (level, score) = Self::choose_level(levels, options)?;
        if level == 0 {
            Self::compact_l0(levels, score)
        } else {
            Self::compact_level(levels, level, score, options)
        }
    }

    fn write_pressure(&self, levels: &[Vec<SstMeta>]) -> usize {
        levels.first().map_or(0, Vec::len)
    }

    fn pending_bytes(&self, levels: &[Vec<SstMeta>], options: &CompactionOptions) -> u64 {
        let l0 = levels.first().map_or(&[][..], Vec::as_slice);
        let mut pending = if l0.len() >= options.l0_compaction_trigger {
            level_bytes(l0)
        } else {
            0
        };
        for (level, files) in levels
            .iter()
            .enumerate()
            .take(options.max_levels - 1)
            .skip(1)
        {
            pending += level_bytes(files).saturating_sub(options.level_target_bytes(level));
        }
        pending
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{file, levels};
    use super::*;

    fn options() -> CompactionOptions {
        CompactionOptions {
            l0_compaction_trigger: 2,
            level_base_bytes: 1_000,
            target_file_size_bytes: 100,
            level_size_multiplier: 10,
            ..CompactionOptions::default()
        }
    }

    #[test]
    fn nothing_to_do_below_the_triggers() {
        let version = levels(vec![file(1, 0, 0, 10, 100, 1), file(2, 1, 0, 50, 900, 0)]);
        assert_eq!(Leveled.pick(&version, &options()), None);
    }

    #[test]
    fn l0_takes_every_l0_file_and_the_overlapping_l1_files() {
        let version = levels(vec![
            file(1, 0, 10, 20, 100, 30),
            file(2, 0, 15, 40, 100, 20),
            file(3, 1, 0, 9, 300, 5),
            file(4, 1, 18, 25, 300, 5),
            file(5, 1, 41, 60, 300, 5),
        ]);
        let task = Leveled.pick(&version, &options()).unwrap();
        assert_eq!(task.kind, TaskKind::Merge);
        assert_eq!(task.output_level, 1);
        let mut ids = task.input_ids();
        ids.sort();
        assert_eq!(ids, vec![1, 2, 4]);
        assert!(task.drop_tombstones, "nothing below L1");
    }

    #[test]
    fn the_fullest_level_pushes_one_file_down() {
        let version = levels(vec![
            file(1, 1, 0, 10, 600, 5),
            file(2, 1, 20, 30, 600, 5),
            file(3, 2, 0, 5, 5_000, 1),
            file(4, 2, 6, 12, 5_000, 1),
            file(5, 3, 0, 100, 1, 0),
        ]);
        // L1 = 1200 bytes over a 1000-byte target; file 2 overlaps nothing in L2: the
        // minimum overlap ratio moves it without rewriting.
        let task = Leveled.pick(&version, &options()).unwrap();
        assert_eq!(
            (task.kind, task.input_ids(), task.output_level),
            (TaskKind::Move, vec![2], 2)
        );
        let most = CompactionOptions {
            file_pick: FilePick::MostOverlap,
            ..options()
        };
        let task = Leveled.pick(&version, &most).unwrap();
        assert_eq!(task.kind, TaskKind::Merge);
        assert_eq!(task.input_ids(), vec![1, 3, 4]);
        assert!(!task.drop_tombstones, "L3 overlaps the keys");
    }

    #[test]
    fn a_single_l0_file_with_nothing_below_moves() {
        let mut o = options();
        o.l0_compaction_trigger = 1;
        let version = levels(vec![file(1, 0, 0, 10, 100, 1)]);
        let task = Leveled.pick(&version, &o).unwrap();
        assert_eq!(task.kind, TaskKind::Move);
    }

    #[test]
    fn pressure_and_pending_bytes() {
        let version = levels(vec![
            file(1, 0, 0, 10, 100, 1),
            file(2, 0, 0, 10, 100, 2),
            file(3, 1, 0, 10, 1_500, 0),
        ]);
        assert_eq!(Leveled.write_pressure(&version), 2);
        assert_eq!(Leveled.pending_bytes(&version, &options()), 200 + 500);
    }
}
