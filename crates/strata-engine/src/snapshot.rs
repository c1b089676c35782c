//! Snapshots: a registered sequence number. Reads through a snapshot see exactly the writes
//! up to it; flushes and compactions keep every version a live snapshot can see.

use std::sync::Arc;

use crate::db::DbInner;
use crate::types::SeqNo;

/// A consistent point-in-time view of the whole database, released on drop.
pub struct Snapshot {
    db: Arc<DbInner>,
    seq: SeqNo,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").field("seq", &self.seq).finish()
    }
}

impl Snapshot {
    pub(crate) fn new(db: Arc<DbInner>) -> Self {
        let mut snapshots = db.snapshots.lock();
        let seq = db.visible_seq();
        *snapshots.entry(seq).or_insert(0) += 1;
        drop(snapshots);
        Snapshot { db, seq }
    }

    /// The sequence number the snapshot reads at.
    pub fn seq(&self) -> SeqNo {
        self.seq
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        let mut snapshots = self.db.snapshots.lock();
        if let Some(count) = snapshots.get_mut(&self.seq) {
            *count -= 1;
            if *count == 0 {
                snapshots.remove(&self.seq);
            }
        }
    }
}
