//! The plans of a table's recent base scans, reused and brought up to date while the table's
//! files do not change.
//!
//! Planning a base scan ([`super::plan`]) merges the memtables into the overlay and resolves
//! the overlay's keys against the base files' keys: work proportional to the memtables, done
//! for every query. A table read more often than it is written would redo the same work per
//! query, a query whose answer comes from the plan alone (`count(*)`) would spend all its time
//! there, and a table under constant writes would pay for all of its memtables per query. So
//! each table keeps the plans of its last few distinct scans (by key ranges), and a scan at a
//! read sequence at or past a kept plan's copies that plan and applies only what was written
//! since: the keys each memtable's change log ([`crate::version::MemtableSlot::changes_since`])
//! holds past the position the plan consumed, up to the new read sequence
//! ([`super::plan::update_base_scan`]). No write since: the plan as it is.
//!
//! A plan depends on the table's files and DVs (one immutable [`Version`]), on the memtable
//! entries visible at its read sequence, and on the key ranges. A kept plan is used only when
//!
//! * the view's version is the very one it was planned from (the same allocation: the cache
//!   holds a [`Weak`] pointer, which keeps the allocation from being reused by another
//!   version, but not the version's files alive), so no memtable was flushed since;
//! * every memtable it consumed is still among the view's (new ones are read from the start
//!   of their logs);
//! * the view reads at or past the plan's read sequence (an older snapshot plans afresh and
//!   its plan is kept only if fewer than [`PLANS_PER_RANGES`] newer ones of the same ranges
//!   are).
//!
//! This holds because a write is in its memtable and change log before its sequence number is
//! visible, and change logs are in sequence order: the entries a plan at sequence `r` saw are
//! exactly each log's prefix of sequence numbers up to `r`.
//!
//! Plans are *kept current off the query's path*: the database's plan refresher
//! ([`crate::db::background`], every [`crate::Options::scan_plan_refresh_ms`]) brings the
//! plans of the key ranges queries scanned within [`PLAN_REFRESH_IDLE`] up to the latest
//! write, and makes a new plan after a flush or compaction changed the version, so a query
//! finds a plan that lacks at most the last interval's writes. A query (at read sequence `r`)
//! uses the newest kept plan of its ranges at or below `r`: it takes a *copy* (files and the
//! overlay's settled keys and rows are shared; bringing the copy up to date builds it a new
//! recent part, reading the shared settled one; the refresher consolidates the two) and
//! brings that up to date, so kept
//! plans are never absent while another scan or the refresher works on them, and the two
//! newest plans of each ranges are kept: a query that pinned its read sequence just before
//! the refresher put a newer plan still finds the one before.
//!
//! Invariants: at most [`PLAN_CACHE_RANGES`] distinct key ranges with at most
//! [`PLANS_PER_RANGES`] plans each (the newest by read sequence); a plan whose overlay rows
//! take more than [`PLAN_CACHE_MAX_OVERLAY_BYTES`] is not kept (so a table's kept plans hold
//! at most 8 × 32 MiB of overlay rows; the two plans of one ranges share their files, DVs and
//! settled overlay rows until a consolidation rebuilds those); every plan of another version
//! is dropped at the next lookup, so the cache never holds the overlay of a flushed memtable
//! for longer than one query or refresh.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::KeyRange;
use super::plan::{BaseScan, OverlayIndex};
use crate::types::SeqNo;
use crate::version::{MemtableSlot, Version};

/// Distinct key ranges whose plans are kept per table.
pub const PLAN_CACHE_RANGES: usize = 4;

/// Plans kept per key ranges (the newest by read sequence).
pub const PLANS_PER_RANGES: usize = 2;

/// Largest overlay (bytes of its Arrow rows) whose plan is kept.
pub const PLAN_CACHE_MAX_OVERLAY_BYTES: usize = 32 << 20;

/// How long after a query last scanned some key ranges the refresher keeps their plan current.
pub const PLAN_REFRESH_IDLE: Duration = Duration::from_secs(2);

/// A kept plan and the state it was made from.
#[derive(Debug, Clone)]
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
            .map_or(0, |p| p.overlay.rows().memory_size())
    }
}

/// A table's cached plans (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct PlanCache {
    entries: Mutex<Vec<CachedPlan>>,
    /// The key ranges queries scanned, each with when it was last scanned (at most
    /// [`PLAN_CACHE_RANGES`], the least recent first).
    scanned: Mutex<Vec<(Vec<KeyRange>, Instant)>>,
}

impl PlanCache {
    /// A copy of the newest plan of `ranges` that a scan of `version` and `memtables` at
    /// `read_seq` can bring up to date, if one is kept; drops every plan of another version.
    pub(crate) fn get(
        &self,
        version: &Arc<Version>,
        memtables: &[Arc<MemtableSlot>],
        ranges: &[KeyRange],
        read_seq: SeqNo,
    ) -> Option<CachedPlan> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|e| e.same_version(version));
        entries
            .iter()
            .filter(|e| {
                e.ranges == ranges
                    && e.read_seq <= read_seq
                    && e.consumed.iter().all(|(slot, _)| {
                        memtables
                            .iter()
                            .any(|m| std::ptr::eq(slot.as_ptr(), Arc::as_ptr(m)))
                    })
            })
            .max_by_key(|e| e.read_seq)
            .cloned()
    }

    /// Keeps `plan` (unless its overlay is too large, or the plans kept of its ranges are
    /// [`PLANS_PER_RANGES`] newer ones), dropping the oldest plan of its ranges beyond
    /// [`PLANS_PER_RANGES`] and the plans of the least recently kept ranges beyond
    /// [`PLAN_CACHE_RANGES`].
    pub(crate) fn put(&self, plan: CachedPlan) {
        if plan.overlay_bytes() > PLAN_CACHE_MAX_OVERLAY_BYTES {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(upgrade) = plan.version.upgrade() {
            entries.retain(|e| e.same_version(&upgrade));
        }
        if entries
            .iter()
            .any(|e| e.ranges == plan.ranges && e.read_seq == plan.read_seq)
        {
            // The same state is kept already.
            return;
        }
        let ranges = plan.ranges.clone();
        entries.push(plan);
        let same: Vec<usize> = (0..entries.len())
            .filter(|i| entries[*i].ranges == ranges)
            .collect();
        if same.len() > PLANS_PER_RANGES
            && let Some(oldest) = same.iter().copied().min_by_key(|i| entries[*i].read_seq)
        {
            entries.remove(oldest);
        }
        loop {
            let mut distinct: Vec<&Vec<KeyRange>> = Vec::new();
            for e in entries.iter() {
                if !distinct.contains(&&e.ranges) {
                    distinct.push(&e.ranges);
                }
            }
            if distinct.len() <= PLAN_CACHE_RANGES {
                break;
            }
            let evicted = entries[0].ranges.clone();
            entries.retain(|e| e.ranges != evicted);
        }
        debug_assert!(entries.len() <= PLAN_CACHE_RANGES * PLANS_PER_RANGES);
    }

    /// Records that a query scanned `ranges` now (the refresher keeps their plan current for
    /// [`PLAN_REFRESH_IDLE`]).
    pub(crate) fn note_scan(&self, ranges: &[KeyRange]) {
        let mut scanned = self.scanned.lock().unwrap_or_else(|e| e.into_inner());
        scanned.retain(|(r, _)| r.as_slice() != ranges);
        scanned.push((ranges.to_vec(), Instant::now()));
        if scanned.len() > PLAN_CACHE_RANGES {
            scanned.remove(0);
        }
    }

    /// The key ranges a query scanned within `within` of now.
    pub(crate) fn scanned_within(&self, within: Duration) -> Vec<Vec<KeyRange>> {
        let now = Instant::now();
        self.scanned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, at)| now.duration_since(*at) <= within)
            .map(|(r, _)| r.clone())
            .collect()
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
    fn plans_are_bounded_and_used_only_for_their_version_ranges_and_later_reads() {
        let version = Arc::new(Version::default());
        let slot = Arc::new(MemtableSlot::new(MemtableKind::default().create()));
        slot.insert(b"k", 1, OpKind::Put, b"v");
        let memtables = [Arc::clone(&slot)];
        let cache = PlanCache::default();
        for lower in 0..(PLAN_CACHE_RANGES as u8 + 2) {
            assert!(cache.get(&version, &memtables, &range(lower), 1).is_none());
            cache.put(CachedPlan::new(
                &version,
                &memtables,
                &range(lower),
                1,
                None,
                None,
            ));
        }
        assert_eq!(cache.len(), PLAN_CACHE_RANGES);
        // The oldest ranges were evicted.
        assert!(cache.get(&version, &memtables, &range(0), 1).is_none());
        // A read older than the plan does not take it.
        let newest = range(PLAN_CACHE_RANGES as u8 + 1);
        assert!(cache.get(&version, &memtables, &newest, 0).is_none());
        // A later one does, with the memtable's log consumed up to the plan's sequence.
        slot.insert(b"l", 2, OpKind::Put, b"w");
        let copy = cache.get(&version, &memtables, &newest, 2).unwrap();
        assert_eq!(copy.consumed(&slot), 1);
        assert_eq!(slot.changes_since(copy.consumed(&slot), 2).keys.len(), 1);
        // A copy: the plan stays kept for other scans.
        assert_eq!(cache.len(), PLAN_CACHE_RANGES);
        // The two newest plans of one ranges are kept; a scan uses the newest it can.
        cache.put(CachedPlan::new(
            &version, &memtables, &newest, 2, None, None,
        ));
        assert_eq!(cache.len(), PLAN_CACHE_RANGES + 1);
        let at = |seq| {
            cache
                .get(&version, &memtables, &newest, seq)
                .map(|p| p.read_seq)
        };
        assert_eq!(at(2), Some(2));
        assert_eq!(at(1), Some(1));
        assert_eq!(at(0), None);
        // A third, newer one drops the oldest; an older one is not kept.
        cache.put(CachedPlan::new(
            &version, &memtables, &newest, 3, None, None,
        ));
        assert_eq!(at(1), None);
        assert_eq!(at(2), Some(2));
        assert_eq!(at(5), Some(3));
        cache.put(CachedPlan::new(
            &version, &memtables, &newest, 1, None, None,
        ));
        assert_eq!(at(1), None);
        assert_eq!(cache.len(), PLAN_CACHE_RANGES + 1);

        // Another version (same files, another allocation): every plan is dropped.
        let other = Arc::new(Version::default());
        assert!(cache.get(&other, &memtables, &range(3), 2).is_none());
        assert_eq!(cache.len(), 0);

        // A plan whose memtable is gone from the view is not used.
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
        assert!(cache.get(&other, &fresh, &range(3), 2).is_none());
    }

    /// A query that takes a kept plan shares its overlay index (no key copied); a copy brought
    /// up to date gets an index of its own and leaves the kept one as it was.
    #[test]
    fn copies_of_a_kept_plan_share_its_index_until_one_is_updated() {
        let version = Arc::new(Version::default());
        let slot = Arc::new(MemtableSlot::new(MemtableKind::default().create()));
        let memtables = [Arc::clone(&slot)];
        let cache = PlanCache::default();
        let index = Arc::new(crate::read::plan::OverlayKeys::default());
        cache.put(CachedPlan::new(
            &version,
            &memtables,
            &range(0),
            1,
            None,
            Some(Arc::clone(&index)),
        ));
        let take = || cache.get(&version, &memtables, &range(0), 1).unwrap().index;
        let (mut first, second) = (take(), take());
        assert!(Arc::ptr_eq(first.as_ref().unwrap(), &index));
        assert!(Arc::ptr_eq(second.as_ref().unwrap(), &index));
        // Brought up to date (as `ReadView::plan_scan_for` does): the copy gets a new index.
        first = Some(Arc::new(crate::read::plan::OverlayKeys::default()));
        assert!(!Arc::ptr_eq(first.as_ref().unwrap(), &index));
        assert!(Arc::ptr_eq(take().as_ref().unwrap(), &index));
    }

    #[test]
    fn scanned_ranges_are_bounded_and_age_out() {
        let cache = PlanCache::default();
        for lower in 0..(PLAN_CACHE_RANGES as u8 + 2) {
            cache.note_scan(&range(lower));
        }
        let recent = cache.scanned_within(Duration::from_secs(60));
        assert_eq!(recent.len(), PLAN_CACHE_RANGES);
        assert!(!recent.contains(&range(0)) && !recent.contains(&range(1)));
        // Scanning again moves ranges to the most recent end instead of adding them twice.
        cache.note_scan(&range(2));
        let recent = cache.scanned_within(Duration::from_secs(60));
        assert_eq!(recent.len(), PLAN_CACHE_RANGES);
        assert_eq!(recent.last(), Some(&range(2)));
        std::thread::sleep(Duration::from_millis(20));
        assert!(cache.scanned_within(Duration::from_millis(10)).is_empty());
    }
}
