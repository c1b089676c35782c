//! The purger: deletes obsolete SST and deletion-vector objects on a thread of its own.
//!
//! An SST or DV object becomes obsolete when an installed version stops naming it (a
//! compaction replaced the file, a newer DV superseded the old one, the table was dropped); it
//! may be deleted once no version holds it, which is when its last handle
//! ([`crate::version::SstHandle`], [`crate::dv::DeletionVector`]) is dropped. That happens on
//! whichever thread lets go last: a flush or compaction, the scan-plan refresher, or a query's
//! tokio worker ending its stream. The handle's `Drop` only hands the object's path to the
//! [`Purger`] ([`Purger::release`], a push under a lock); the purger's thread does the storage
//! work: one listing of the live leases ([`crate::lease`]) per batch of released objects, then
//! one DELETE per object no lease names. So no query thread waits on storage to let go of a
//! file, and files released together cost one lease listing, not one each.
//!
//! **Held back.** An object a live lease names is kept and tried again at every later batch
//! and, while any is held, every `retry` interval (`Options::obsolete_file_retry_ms`); a failed
//! lease listing holds its whole batch back the same way (a failure to list deletes nothing).
//! A failed DELETE is logged and the object left to the next open, which removes what the
//! manifest does not name (`db::open`'s orphan removal), as it does with what a crash or an
//! exit left in the queue.
//!
//! **Bounded.** At most `capacity` objects wait, queued and held back together
//! ([`PURGE_QUEUE_CAPACITY`] for a database); an object released while that many wait is left
//! to the next open (logged, counted in `obsolete_files_left`), so a `Drop` never blocks.
//!
//! Invariants: an object is deleted only after its last handle dropped (only that `Drop`
//! releases it) and only when no live lease names it in a listing made after its release;
//! [`Purger::wait_idle`] returns once every object released before the call was deleted, held
//! back or left; the thread ends when the [`Purger`] is dropped and the queue is empty.

use std::collections::HashSet;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::error::{Error, Result};
use crate::lease::leased_objects;
use crate::metrics::Metrics;
use crate::storage::Storage;

/// The most obsolete objects a database's purger keeps waiting (queued and held back).
pub const PURGE_QUEUE_CAPACITY: usize = 65_536;

/// What kind of object is obsolete (for the counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObsoleteKind {
    /// An SST file.
    Sst,
    /// A deletion-vector file.
    DeletionVector,
}

#[derive(Debug)]
struct Obsolete {
    object: String,
    kind: ObsoleteKind,
}

#[derive(Debug, Default)]
struct State {
    /// Released, not yet taken by the thread.
    queued: Vec<Obsolete>,
    /// Named by a live lease (or the listing failed) at the last pass.
    held: Vec<Obsolete>,
    /// Objects ever released (queued or left).
    released: u64,
    /// Released objects a pass has finished with (deleted, held back or left).
    finished: u64,
    /// Passes finished.
    passes: u64,
    /// The thread is in a pass.
    busy: bool,
    /// Retry the held-back objects at the next pass even if nothing new is queued.
    retry_now: bool,
    /// The [`Purger`] was dropped: finish the queue, then end.
    closed: bool,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// Signalled when work is queued or the purger closes.
    work: Condvar,
    /// Signalled at the end of every pass.
    passed: Condvar,
}

/// Deletes released obsolete objects on its own thread (see the module docs).
#[derive(Debug)]
pub struct Purger {
    shared: Arc<Shared>,
    capacity: usize,
    metrics: Arc<Metrics>,
    thread: JoinHandle<()>,
}

impl Purger {
    /// Starts the purger of `storage`'s obsolete objects, retrying held-back ones every
    /// `retry`, with at most `capacity` objects waiting.
    pub fn start(
        storage: Storage,
        metrics: Arc<Metrics>,
        retry: Duration,
        capacity: usize,
    ) -> Result<Purger> {
        debug_assert!(capacity > 0 && !retry.is_zero());
        let shared = Arc::new(Shared::default());
        let thread = {
            let shared = Arc::clone(&shared);
            let metrics = Arc::clone(&metrics);
            std::thread::Builder::new()
                .name("strata-purge".into())
                .spawn(move || run(&shared, &storage, &metrics, retry))
                .map_err(|e| Error::io(std::path::Path::new("strata-purge thread"), e))?
        };
        Ok(Purger {
            shared,
            capacity,
            metrics,
            thread,
        })
    }

    /// Hands `object`, whose last handle is being dropped, to the purger. Never blocks on
    /// storage; when `capacity` objects already wait, the object is left to the next open.
    pub fn release(&self, object: String, kind: ObsoleteKind) {
        let mut state = self.shared.state.lock();
        state.released += 1;
        if state.closed || state.queued.len() + state.held.len() >= self.capacity {
            state.finished += 1;
            drop(state);
            Metrics::inc(&self.metrics.obsolete_files_left);
            tracing::warn!(file = %object, "obsolete file left to the next open: the purge queue is full");
            return;
        }
        state.queued.push(Obsolete { object, kind });
        drop(state);
        self.shared.work.notify_one();
    }

    /// Waits until every object released before the call was deleted, held back by a lease
    /// or left to the next open.
    pub fn wait_idle(&self) {
        let mut state = self.shared.state.lock();
        let target = state.released;
        self.wait_for_passes(&mut state, |state| state.finished >= target);
    }

    /// Deletes now what can be deleted: waits for the objects released so far and tries the
    /// held-back ones again; returns how many stay held back by live leases.
    pub fn purge_now(&self) -> usize {
        let mut state = self.shared.state.lock();
        let target = state.released;
        // A pass in flight may have started before the request: wait for the one after it.
        let passes = state.passes + if state.busy { 2 } else { 1 };
        state.retry_now = true;
        self.shared.work.notify_one();
        self.wait_for_passes(&mut state, |state| {
            state.finished >= target && state.passes >= passes
        });
        state.held.len()
    }

    /// Waits, at the end of each pass, until `done` holds (or the thread has ended).
    fn wait_for_passes(&self, state: &mut MutexGuard<'_, State>, done: impl Fn(&State) -> bool) {
        while !done(state) && !self.thread.is_finished() {
            self.shared
                .passed
                .wait_for(state, Duration::from_millis(100));
        }
    }

    /// Objects held back by live leases (or a failed lease listing) at the last pass.
    pub fn held_back(&self) -> usize {
        self.shared.state.lock().held.len()
    }
}

impl Drop for Purger {
    fn drop(&mut self) {
        // Not joined: the last handle may be dropped on a query's thread, which must not wait
        // for storage. The thread finishes the queue and ends; held-back objects are left to
        // the next open.
        self.shared.state.lock().closed = true;
        self.shared.work.notify_one();
    }
}

/// The purger thread: a pass per batch of released objects (and per `retry` while some are
/// held back) until closed with nothing queued.
fn run(shared: &Shared, storage: &Storage, metrics: &Metrics, retry: Duration) {
    loop {
        let (batch, released) = {
            let mut state = shared.state.lock();
            loop {
                if !state.queued.is_empty() || state.retry_now {
                    break;
                }
                if state.closed {
                    return;
                }
                if state.held.is_empty() {
                    shared.work.wait(&mut state);
                } else if shared.work.wait_for(&mut state, retry).timed_out() {
                    break;
                }
            }
            state.busy = true;
            state.retry_now = false;
            let queued = std::mem::take(&mut state.queued);
            let released = queued.len() as u64;
            let mut batch = std::mem::take(&mut state.held);
            batch.extend(queued);
            (batch, released)
        };
        let held = purge(storage, metrics, batch);
        let mut state = shared.state.lock();
        state.held.extend(held);
        state.finished += released;
        state.passes += 1;
        state.busy = false;
        debug_assert!(state.finished <= state.released);
        drop(state);
        shared.passed.notify_all();
    }
}

/// Deletes the objects of `batch` no live lease names; returns those held back.
fn purge(storage: &Storage, metrics: &Metrics, batch: Vec<Obsolete>) -> Vec<Obsolete> {
    if batch.is_empty() {
        return batch;
    }
    let leased: HashSet<String> = match leased_objects(storage) {
        Ok(leased) => leased,
        Err(error) => {
            // Deleting nothing is safe; the batch is tried again later.
            tracing::warn!(%error, files = batch.len(), "obsolete files held back: the leases could not be listed");
            Metrics::add(
                &metrics.obsolete_file_deletions_deferred,
                batch.len() as u64,
            );
            return batch;
        }
    };
    let mut held = Vec::new();
    for obsolete in batch {
        if leased.contains(&obsolete.object) {
            tracing::info!(file = %obsolete.object, "deletion deferred: a query lease names the file");
            Metrics::inc(&metrics.obsolete_file_deletions_deferred);
            held.push(obsolete);
            continue;
        }
        match storage.delete(&obsolete.object) {
            Ok(()) => Metrics::inc(match obsolete.kind {
                ObsoleteKind::Sst => &metrics.sst_files_deleted,
                ObsoleteKind::DeletionVector => &metrics.dv_files_deleted,
            }),
            Err(error) => {
                Metrics::inc(&metrics.obsolete_files_left);
                tracing::warn!(file = %obsolete.object, %error, "could not delete an obsolete file; the next open removes it");
            }
        }
    }
    held
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::Lease;
    use bytes::Bytes;

    fn storage_with(dir: &std::path::Path, objects: &[&str]) -> Storage {
        let storage = Storage::new(dir, None).unwrap();
        for object in objects {
            storage.put(object, Bytes::from_static(b"x")).unwrap();
        }
        storage
    }

    fn exists(storage: &Storage, object: &str) -> bool {
        storage.size(object).unwrap().is_some()
    }

    /// A purger of `storage` retrying every `retry`, with room for `capacity`, and its
    /// counters.
    fn start(storage: &Storage, retry: Duration, capacity: usize) -> (Purger, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::default());
        let purger = Purger::start(storage.clone(), Arc::clone(&metrics), retry, capacity).unwrap();
        (purger, metrics)
    }

    /// Polls `condition` (bounded at 30 s) until it holds; returns whether it does.
    fn eventually(condition: impl Fn() -> bool) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !condition() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        condition()
    }

    #[test]
    fn released_objects_are_deleted_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let storage = storage_with(dir.path(), &["sst/a.parquet", "sst/a.dv"]);
        let (purger, metrics) = start(&storage, Duration::from_secs(60), 16);
        purger.release("sst/a.parquet".into(), ObsoleteKind::Sst);
        purger.release("sst/a.dv".into(), ObsoleteKind::DeletionVector);
        purger.wait_idle();
        assert!(!exists(&storage, "sst/a.parquet"));
        assert!(!exists(&storage, "sst/a.dv"));
        let counters = metrics.snapshot();
        assert_eq!(counters.get("sst_files_deleted"), Some(1));
        assert_eq!(counters.get("dv_files_deleted"), Some(1));
        assert_eq!(purger.held_back(), 0);
    }

    #[test]
    fn a_leased_object_is_held_back_and_deleted_by_a_retry_once_the_lease_ends() {
        let dir = tempfile::tempdir().unwrap();
        let storage = storage_with(dir.path(), &["sst/a.parquet", "sst/b.parquet"]);
        let (purger, metrics) = start(&storage, Duration::from_millis(20), 16);
        let lease = Lease::acquire(
            &storage,
            vec!["sst/a.parquet".into()],
            Duration::from_secs(600),
        )
        .unwrap();
        purger.release("sst/a.parquet".into(), ObsoleteKind::Sst);
        purger.release("sst/b.parquet".into(), ObsoleteKind::Sst);
        assert_eq!(purger.purge_now(), 1);
        assert!(exists(&storage, "sst/a.parquet"), "deleted under its lease");
        assert!(!exists(&storage, "sst/b.parquet"));
        assert!(metrics.snapshot().get("obsolete_file_deletions_deferred") >= Some(1));
        drop(lease);
        // No new release and no explicit call: the timed retry deletes it.
        assert!(
            eventually(|| !exists(&storage, "sst/a.parquet")),
            "left after its lease"
        );
        assert_eq!(purger.purge_now(), 0);
    }

    #[test]
    fn an_expired_lease_protects_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let storage = storage_with(dir.path(), &["sst/a.parquet"]);
        let (purger, _) = start(&storage, Duration::from_secs(60), 16);
        let _lease =
            Lease::acquire(&storage, vec!["sst/a.parquet".into()], Duration::ZERO).unwrap();
        purger.release("sst/a.parquet".into(), ObsoleteKind::Sst);
        assert_eq!(purger.purge_now(), 0);
        assert!(!exists(&storage, "sst/a.parquet"));
    }

    #[test]
    fn a_full_queue_leaves_objects_to_the_next_open_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let storage = storage_with(dir.path(), &["sst/a.parquet", "sst/b.parquet"]);
        let (purger, metrics) = start(&storage, Duration::from_secs(60), 1);
        // A lease holds the first object, which fills the queue of one.
        let _lease = Lease::acquire(
            &storage,
            vec!["sst/a.parquet".into()],
            Duration::from_secs(600),
        )
        .unwrap();
        purger.release("sst/a.parquet".into(), ObsoleteKind::Sst);
        assert_eq!(purger.purge_now(), 1);
        purger.release("sst/b.parquet".into(), ObsoleteKind::Sst);
        purger.wait_idle();
        assert!(exists(&storage, "sst/b.parquet"), "left to the next open");
        assert_eq!(metrics.snapshot().get("obsolete_files_left"), Some(1));
    }

    #[test]
    fn the_thread_finishes_its_queue_after_the_purger_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<String> = (0..50).map(|i| format!("sst/{i}.parquet")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let storage = storage_with(dir.path(), &refs);
        let (purger, _) = start(&storage, Duration::from_secs(60), 64);
        for name in &names {
            purger.release(name.clone(), ObsoleteKind::Sst);
        }
        let shared = Arc::clone(&purger.shared);
        drop(purger);
        assert!(
            eventually(|| Arc::strong_count(&shared) == 1),
            "the thread ended"
        );
        assert!(names.iter().all(|name| !exists(&storage, name)));
    }
}
