//! The plans of a table's recent base scans, reused while the table does not change.
//!
//! Planning a base scan ([`super::plan`]) merges the memtables into the overlay and resolves
//! the overlay's keys against the base files' keys: work proportional to the memtables, done
//! for every query. A table that is read more often than it is written (a dashboard over a
//! table with a few thousand recent changes) would redo the same work per query, and a query
//! whose answer comes from the plan alone (`count(*)`) would spend all its time there. So
//! each table keeps the plans of its last few distinct scans (by key ranges) and hands out a
//! copy while the state they were planned from is unchanged.
//!
//! A plan depends on the table's files and DVs (one immutable [`Version`]), on the entries of
//! its memtables, on the key ranges, and on the read sequence only through which files and
//! memtable entries are visible. An entry is therefore reused only when
//!
//! * the view's version is the very one it was planned from (the same allocation: the cache
//!   holds a [`Weak`] pointer, which keeps the allocation from being reused by another
//!   version, but not the version's files alive);
//! * the view's memtables are the same slots, each with the same largest sequence number and
//!   the same number of entries (a memtable only grows: an insert changes both);
//! * the read sequence is at or past every memtable's largest sequence number, now and when it
//!   was planned, so every memtable entry is visible both times (a snapshot older than some
//!   memtable entry plans afresh and is not cached), and the version's files are all visible
//!   (a base scan is only planned when they are).
//!
//! Invariants: at most [`PLAN_CACHE_ENTRIES`] plans per table; a plan whose overlay rows take
//! more than [`PLAN_CACHE_MAX_OVERLAY_BYTES`] is not kept; every entry whose version or
//! memtables are no longer the table's current ones is dropped at the next lookup, so the
//! cache never holds the overlay of a flushed memtable for longer than one query.

use std::sync::{Arc, Mutex, Weak};

use super::KeyRange;
use super::plan::BaseScan;
use crate::types::SeqNo;
use crate::version::{MemtableSlot, Version};

/// Plans kept per table.
pub const PLAN_CACHE_ENTRIES: usize = 4;

/// Largest overlay (bytes of its Arrow rows) whose plan is kept.
pub const PLAN_CACHE_MAX_OVERLAY_BYTES: usize = 32 << 20;

/// The state a plan was made from.
#[derive(Debug, Clone)]
pub(crate) struct PlanInputs {
    version: Weak<Version>,
    memtables: Vec<MemtableState>,
    ranges: Vec<KeyRange>,
}

#[derive(Debug, Clone)]
struct MemtableState {
    slot: Weak<MemtableSlot>,
    max_seq: SeqNo,
    entries: usize,
}

impl PlanInputs {
    /// The inputs of a plan of `ranges` over `version` and `memtables` read at `read_seq`, or
    /// `None` when such a plan must not be cached (some memtable entry is newer than
    /// `read_seq`).
    pub(crate) fn new(
        version: &Arc<Version>,
        memtables: &[Arc<MemtableSlot>],
        ranges: &[KeyRange],
        read_seq: SeqNo,
    ) -> Option<PlanInputs> {
        let mut states = Vec::with_capacity(memtables.len());
        for slot in memtables {
            // A write is visible only after its memtable noted its sequence number, so an
            // entry visible at some later read sequence but not counted here changes
            // `max_seq` by then (the entry count is a second check, not relied on).
            let entries = slot.memtable.len();
            let max_seq = slot.max_seq();
            if max_seq > read_seq {
                return None;
            }
            states.push(MemtableState {
                slot: Arc::downgrade(slot),
                max_seq,
                entries,
            });
        }
        Some(PlanInputs {
            version: Arc::downgrade(version),
            memtables: states,
            ranges: ranges.to_vec(),
        })
    }

    /// True when a plan made from `self` is a plan for `current` (same version, memtables and
    /// ranges).
    fn same_as(&self, current: &PlanInputs) -> bool {
        self.same_table_state(current) && self.ranges == current.ranges
    }

    /// True when the version and the memtables are the same (any ranges).
    fn same_table_state(&self, current: &PlanInputs) -> bool {
        Weak::ptr_eq(&self.version, &current.version)
            && self.memtables.len() == current.memtables.len()
            && self.memtables.iter().zip(&current.memtables).all(|(a, b)| {
                Weak::ptr_eq(&a.slot, &b.slot) && a.max_seq == b.max_seq && a.entries == b.entries
            })
    }
}

/// A table's cached plans (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct PlanCache {
    entries: Mutex<Vec<(PlanInputs, Option<BaseScan>)>>,
}

impl PlanCache {
    /// The plan made from `inputs`, if cached; drops every entry made from another table
    /// state.
    pub(crate) fn get(&self, inputs: &PlanInputs) -> Option<Option<BaseScan>> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|(made_from, _)| made_from.same_table_state(inputs));
        entries
            .iter()
            .find(|(made_from, _)| made_from.same_as(inputs))
            .map(|(_, plan)| plan.clone())
    }

    /// Keeps `plan`, made from `inputs` (unless its overlay is too large), evicting the
    /// oldest entry when full.
    pub(crate) fn insert(&self, inputs: PlanInputs, plan: &Option<BaseScan>) {
        let overlay_bytes = plan
            .as_ref()
            .and_then(|p| p.overlay.rows())
            .map_or(0, |rows| rows.get_array_memory_size());
        if overlay_bytes > PLAN_CACHE_MAX_OVERLAY_BYTES {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|(made_from, _)| made_from.same_table_state(&inputs));
        if entries
            .iter()
            .any(|(made_from, _)| made_from.same_as(&inputs))
        {
            return;
        }
        if entries.len() == PLAN_CACHE_ENTRIES {
            entries.remove(0);
        }
        entries.push((inputs, plan.clone()));
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
    fn entries_are_bounded_and_dropped_when_the_table_changes() {
        let version = Arc::new(Version::default());
        let slot = Arc::new(MemtableSlot::new(MemtableKind::default().create()));
        slot.memtable.insert(b"k", 1, OpKind::Put, b"v");
        slot.note_inserted(1, 1);
        let memtables = [Arc::clone(&slot)];
        let cache = PlanCache::default();
        for lower in 0..(PLAN_CACHE_ENTRIES as u8 + 2) {
            let inputs = PlanInputs::new(&version, &memtables, &range(lower), 1).unwrap();
            assert!(cache.get(&inputs).is_none());
            cache.insert(inputs.clone(), &None);
            assert!(matches!(cache.get(&inputs), Some(None)));
        }
        assert_eq!(cache.len(), PLAN_CACHE_ENTRIES);
        // The oldest ranges were evicted, the newest kept.
        let oldest = PlanInputs::new(&version, &memtables, &range(0), 1).unwrap();
        assert!(cache.get(&oldest).is_none());

        // A snapshot older than the memtable's newest entry gets no inputs (is never cached).
        assert!(PlanInputs::new(&version, &memtables, &range(0), 0).is_none());

        // A write to the memtable: every entry is stale and dropped at the next lookup.
        slot.memtable.insert(b"l", 2, OpKind::Put, b"w");
        slot.note_inserted(2, 2);
        let after = PlanInputs::new(&version, &memtables, &range(1), 2).unwrap();
        assert!(cache.get(&after).is_none());
        assert_eq!(cache.len(), 0);

        // Another version (the same files, another allocation) is another table state.
        cache.insert(after.clone(), &None);
        let other = Arc::new(Version::default());
        let moved = PlanInputs::new(&other, &memtables, &range(1), 2).unwrap();
        assert!(cache.get(&moved).is_none());
        assert_eq!(cache.len(), 0);
    }
}
