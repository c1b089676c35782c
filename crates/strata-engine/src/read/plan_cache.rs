//! The plans of a table's recent base scans, reused and brought up to date while the table's
//! files do not change.
//!
//! Planning a base scan ([`super::plan`]) merges the memtables into the overlay and resolves
//! the overlay's keys against the base files' keys: work proportional to the memtables, done
//! for every query. A table read more often than it is written would redo the same work per
//! query, a query whose answer comes from the plan alone (`count(*)`) would spend all its time
//! there, and a table under constant writes would pay for all of its memtables per query. So
//! each table keeps the plans of its last few distinct scans (by key ranges), and a scan at a
//! read sequence at or past a kept plan's takes that plan and applies only what was written
//! since: the keys each memtable's change log ([`crate::version::MemtableSlot::changes_since`])
//! holds past the position the plan consumed, up to the new read sequence
//! ([`super::plan::update_base_scan`]). No write since: the plan as it is.
//!
//! A plan depends on the table's files and DVs (one immutable [`Version`]), on the memtable
//! entries visible at its read sequence, and on the key ranges. A kept plan is taken only when
//!
//! * the view's version is the very one it was planned from (the same allocation: the cache
//!   holds a [`Weak`] pointer, which keeps the allocation from being reused by another
//!   version, but not the version's files alive), so no memtable was flushed since;
//! * every memtable it consumed is still among the view's (new ones are read from the start
//!   of their logs);
//! * the view reads at or past the plan's read sequence (an older snapshot plans afresh and
//!   its plan is kept only if no newer one for the same ranges is).
//!
//! This holds because a write is in its memtable and change log before its sequence number is
//! visible, and change logs are in sequence order: the entries a plan at sequence `r` saw are
//! exactly each log's prefix of sequence numbers up to `r`.
//!
//! Invariants: at most [`PLAN_CACHE_ENTRIES`] plans per table, at most one per key ranges; a
//! plan whose overlay rows take more than [`PLAN_CACHE_MAX_OVERLAY_BYTES`] is not kept; every
//! plan of another version is dropped at the next lookup, so the cache never holds the
//! overlay of a flushed memtable for longer than one query. A plan taken out of the cache is
//! absent while it is brought up to date (a concurrent scan of the same ranges plans afresh).

use std::sync::{Arc, Mutex, Weak};

use super::KeyRange;
use super::plan::{BaseScan, OverlayIndex};
use crate::types::SeqNo;
use crate::version::{MemtableSlot, Version};

/// Plans kept per table.
pub const PLAN_CACHE_ENTRIES: usize = 4;

/// Largest overlay (bytes of its Arrow rows) whose plan is kept.
pub const PLAN_CACHE_MAX_OVERLAY_BYTES: usize = 32 << 20;

/// A kept plan and the state it was made from.
#[derive(Debug)]
pub(crate) struct CachedPlan {
    version: Weak<Version>,
    ranges: Vec<KeyRange>,
    /// The read sequence the plan is up to date with.
    read_seq: SeqNo,
    /// Each memtable's change-log position the plan consumed.
    consumed: Vec<(Weak<MemtableSlot>, usize)>,
    /// The plan.
    pub(crate) plan: Option<BaseScan>,
    /// Its overlay's keys (see [`OverlayIndex`]).
    pub(crate) index: OverlayIndex,
}

impl CachedPlan {
    /// A plan of `ranges` over `version` and `memtables` at `read_seq`.
    pub(crate) fn new(
        version: &Arc<Version>,
        memtables: &[Arc<MemtableSlot>],
        ranges: &[KeyRange],
        read_seq: SeqNo,
        plan: Option<BaseScan>,
        index: OverlayIndex,
    ) -> CachedPlan {
        CachedPlan {
            version: Arc::downgrade(version),
            ranges: ranges.to_vec(),
            read_seq,
            consumed: memtables
                .iter()
                .map(|m| (Arc::downgrade(m), m.change_log_position(read_seq)))
                .collect(),
            plan,
            index,
        }
    }

    /// The change-log position of `slot` the plan consumed (0 for a memtable it never saw).
    pub(crate) fn consumed(&self, slot: &Arc<MemtableSlot>) -> usize {
        self.consumed
            .iter()
            .find(|(s, _)| std::ptr::eq(s.as_ptr(), Arc::as_ptr(slot)))
            .map_or(0, |(_, position)| *position)
    }

    /// Records that the plan is now up to date with `read_seq`, having consumed `positions`
    /// of `memtables`.
    pub(crate) fn advance(
        &mut self,
        memtables: &[Arc<MemtableSlot>],
        positions: &[usize],
        read_seq: SeqNo,
    ) {
        debug_assert!(read_seq >= self.read_seq);
        debug_assert_eq!(memtables.len(), positions.len());
        self.consumed = memtables
            .iter()
            .zip(positions)
            .map(|(m, p)| (Arc::downgrade(m), *p))
            .collect();
        self.read_seq = read_seq;
    }

    fn same_version(&self, version: &Arc<Version>) -> bool {
        std::ptr::eq(self.version.as_ptr(), Arc::as_ptr(version))
    }

    fn overlay_bytes(&self) -> usize {
        self.plan
            .as_ref()
            .and_then(|p| p.overlay.rows())
            .map_or(0, |rows| rows.get_array_memory_size())
    }
}

/// A table's cached plans (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct PlanCache {
    entries: Mutex<Vec<CachedPlan>>,
}

impl PlanCache {
    /// Takes out the plan of `ranges` that a scan of `version` and `memtables` at `read_seq`
    /// can bring up to date, if one is kept; drops every plan of another version.
    pub(crate) fn take(
        &self,
        version: &Arc<Version>,
        memtables: &[Arc<MemtableSlot>],
        ranges: &[KeyRange],
        read_seq: SeqNo,
    ) -> Option<CachedPlan> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|e| e.same_version(version));
        let found = entries.iter().position(|e| {
            e.ranges == ranges
                && e.read_seq <= read_seq
                && e.consumed.iter().all(|(slot, _)| {
                    memtables
                        .iter()
                        .any(|m| std::ptr::eq(slot.as_ptr(), Arc::as_ptr(m)))
                })
        })?;
        Some(entries.remove(found))
    }

    /// Keeps `plan` (unless its overlay is too large, or a plan of the same ranges at a later
    /// read sequence is kept), evicting the oldest plan when full.
    pub(crate) fn put(&self, plan: CachedPlan) {
        if plan.overlay_bytes() > PLAN_CACHE_MAX_OVERLAY_BYTES {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(upgrade) = plan.version.upgrade() {
            entries.retain(|e| e.same_version(&upgrade));
        }
        if let Some(i) = entries.iter().position(|e| e.ranges == plan.ranges) {
            if entries[i].read_seq > plan.read_seq {
                return;
            }
            entries.remove(i);
        }
        if entries.len() == PLAN_CACHE_ENTRIES {
            entries.remove(0);
        }
        entries.push(plan);
        debug_assert!(entries.len() <= PLAN_CACHE_ENTRIES);
    }

    /// Number of plans held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memtable::MemtableKind;
    use crate::types::OpKind;

    fn range(lower: u8) -> Vec<KeyRange> {
        vec![KeyRange::new(
            std::ops::Bound::Included(vec![lower]),
            std::ops::Bound::Unbounded,
        )]
    }

    #[test]
    fn plans_are_bounded_and_taken_only_for_their_version_ranges_and_later_reads() {
        let version = Arc::new(Version::default());
        let slot = Arc::new(MemtableSlot::new(MemtableKind::default().create()));
        slot.insert(b"k", 1, OpKind::Put, b"v");
        let memtables = [Arc::clone(&slot)];
        let cache = PlanCache::default();
        for lower in 0..(PLAN_CACHE_ENTRIES as u8 + 2) {
            assert!(cache.take(&version, &memtables, &range(lower), 1).is_none());
            cache.put(CachedPlan::new(
                &version,
                &memtables,
                &range(lower),
                1,
                None,
                None,
            ));
        }
        assert_eq!(cache.len(), PLAN_CACHE_ENTRIES);
        // The oldest ranges were evicted.
        assert!(cache.take(&version, &memtables, &range(0), 1).is_none());
        // A read older than the plan does not take it.
        let newest = range(PLAN_CACHE_ENTRIES as u8 + 1);
        assert!(cache.take(&version, &memtables, &newest, 0).is_none());
        // A later one does, with the memtable's log consumed up to the plan's sequence.
        slot.insert(b"l", 2, OpKind::Put, b"w");
        let taken = cache.take(&version, &memtables, &newest, 2).unwrap();
        assert_eq!(taken.consumed(&slot), 1);
        assert_eq!(slot.changes_since(taken.consumed(&slot), 2).keys.len(), 1);
        assert_eq!(cache.len(), PLAN_CACHE_ENTRIES - 1);
        // A plan at an older sequence does not replace a newer one of the same ranges.
        cache.put(CachedPlan::new(
            &version, &memtables, &newest, 2, None, None,
        ));
        cache.put(CachedPlan::new(
            &version, &memtables, &newest, 1, None, None,
        ));
        assert_eq!(
            cache
                .take(&version, &memtables, &newest, 2)
                .unwrap()
                .read_seq,
            2
        );

        // Another version (same files, another allocation): every plan is dropped.
        let other = Arc::new(Version::default());
        assert!(cache.take(&other, &memtables, &range(3), 2).is_none());
        assert_eq!(cache.len(), 0);

        // A plan whose memtable is gone from the view is not taken.
        cache.put(CachedPlan::new(
            &other,
            &memtables,
            &range(3),
            2,
            None,
            None,
        ));
        let fresh = [Arc::new(MemtableSlot::new(
            MemtableKind::default().create(),
        ))];
        assert!(cache.take(&other, &fresh, &range(3), 2).is_none());
    }
}
