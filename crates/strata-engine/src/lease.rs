//! Leases: the SST objects a running query in another process reads, kept from deletion.
//!
//! A query whose scans run on other processes (datafusion-distributed workers reading the
//! SSTs straight from the database's storage) holds no pinned version in those processes, so
//! the writer's compaction could delete an input file while a worker still reads it. Before
//! such a query ships its plan, the coordinator writes a **lease**: an object
//! `leases/<name>.json` on the database's storage naming the objects the plan reads and the
//! time the lease ends. Every deletion of an obsolete SST or deletion-vector object (the
//! purger's, [`crate::purge`], and the orphan removal at open) first reads the live leases
//! ([`leased_objects`]) and skips the objects they name; the purger retries a skipped object
//! until its lease has ended, and what it could not delete before the process ended is removed
//! as an orphan at the next open after the lease has ended.
//!
//! **A lease lives as long as its handle.** [`Lease::acquire`] writes the lease with an expiry
//! one time-to-live ahead (the coordinator's `strata.lease_ttl_secs`, default
//! [`DEFAULT_LEASE_TTL`]) and starts a renewal thread owned by the handle: every third of the
//! time-to-live it rewrites the object with a new expiry one time-to-live ahead, so a query (or
//! a result stream a client reads slowly) keeps its files however long it lives. One renewal
//! is in flight at a time; a failed renewal is logged and tried again at the next tick (two
//! more chances before the lease ends), and never fails the query. Dropping the handle (the
//! query's plan is dropped) stops the thread, waits for a renewal in flight, then deletes the
//! lease object, so no renewal can write it again after it is deleted. A coordinator that dies
//! renews nothing: its lease protects the files until it expires, one time-to-live after the
//! last renewal.
//!
//! Format of a lease object (JSON): `{"expires_at_ms": <Unix ms>, "objects": ["sst/...", ...]}`.
//!
//! Invariants: an object named by a lease whose `expires_at_ms` is in the future is never
//! deleted by the purger or the orphan removal; a lease that cannot be read or parsed protects
//! nothing it cannot name, but a failure to *list* the leases deletes nothing (the deletion is
//! deferred); a live [`Lease`] handle is renewed before its expiry unless the storage fails or
//! the process stalls for two thirds of the time-to-live. Leases compare wall clocks of
//! different machines: the time-to-live must exceed the clock skew between them by far
//! (minutes, not seconds; the default is an hour).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::storage::Storage;

/// Where leases live, relative to the database root.
pub const LEASE_DIR: &str = "leases";

/// The default time-to-live of a lease: how long a lease protects its objects after its last
/// renewal. A live handle renews it every third of this; only a coordinator that died lets it
/// run out, and its files are then reclaimed an hour later (by far more than any clock skew
/// between the machines).
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(60 * 60);

/// The content of a lease object, as read.
#[derive(Debug, Deserialize)]
struct LeaseRecord {
    expires_at_ms: u64,
    objects: Vec<String>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Writes the lease object `object` over `objects`, ending `ttl` from now.
fn write_lease(storage: &Storage, object: &str, objects: &[String], ttl: Duration) -> Result<()> {
    #[derive(Serialize)]
    struct Borrowed<'a> {
        expires_at_ms: u64,
        objects: &'a [String],
    }
    let record = Borrowed {
        expires_at_ms: now_ms().saturating_add(ttl.as_millis() as u64),
        objects,
    };
    let bytes =
        serde_json::to_vec(&record).map_err(|e| Error::internal(format!("lease encoding: {e}")))?;
    storage.put(object, Bytes::from(bytes))
}

/// The renewal thread of a lease and the channel that stops it (dropping the sender).
#[derive(Debug)]
struct Renewer {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

/// A lease held by this process: renewed while the handle lives, deleted when it is dropped
/// (see the module docs).
#[derive(Debug)]
pub struct Lease {
    storage: Storage,
    object: String,
    objects: usize,
    ttl: Duration,
    renewals: Arc<AtomicU64>,
    renewer: Option<Renewer>,
}

impl Lease {
    /// Writes a lease over `objects` (object paths relative to the database root) that ends
    /// `ttl` after its last renewal, and starts renewing it every `ttl / 3` until the handle
    /// is dropped. A zero `ttl` writes a lease that has already ended and renews nothing.
    pub fn acquire(storage: &Storage, objects: Vec<String>, ttl: Duration) -> Result<Lease> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let object = format!(
            "{LEASE_DIR}/{}-{}-{}.json",
            now_ms(),
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        write_lease(storage, &object, &objects, ttl)?;
        let count = objects.len();
        let renewals = Arc::new(AtomicU64::new(0));
        let renewer = if ttl.is_zero() {
            None
        } else {
            let (stop, stopped) = mpsc::channel::<()>();
            let interval = (ttl / 3).max(Duration::from_millis(1));
            let (store, name, renewed) = (storage.clone(), object.clone(), Arc::clone(&renewals));
            let thread = std::thread::Builder::new()
                .name("strata-lease".into())
                .spawn(move || {
                    // Ticks until the handle drops the sender; one renewal at a time.
                    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                        match write_lease(&store, &name, &objects, ttl) {
                            Ok(()) => {
                                renewed.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(error) => tracing::warn!(
                                lease = %name, %error,
                                "could not renew a lease; trying again at the next tick"
                            ),
                        }
                    }
                })
                .map_err(|e| {
                    // Without a renewer the lease would silently end under a long query.
                    let _ = storage.delete(&object);
                    Error::internal(format!("could not start the lease renewal thread: {e}"))
                })?;
            Some(Renewer { stop, thread })
        };
        Ok(Lease {
            storage: storage.clone(),
            object,
            objects: count,
            ttl,
            renewals,
            renewer,
        })
    }

    /// The lease's object path.
    pub fn object(&self) -> &str {
        &self.object
    }

    /// Number of objects the lease protects.
    pub fn objects(&self) -> usize {
        self.objects
    }

    /// How long the lease protects its objects after its last renewal.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Number of successful renewals so far.
    pub fn renewals(&self) -> u64 {
        self.renewals.load(Ordering::Relaxed)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(Renewer { stop, thread }) = self.renewer.take() {
            // Disconnects the channel: the thread ends after a renewal in flight, so none
            // writes the object again once it is deleted below.
            drop(stop);
            if thread.join().is_err() {
                tracing::warn!(lease = %self.object, "the lease renewal thread panicked");
            }
        }
        if let Err(error) = self.storage.delete(&self.object) {
            // It protects its objects until it expires.
            tracing::warn!(lease = %self.object, %error, "could not delete a lease");
        }
    }
}

/// The objects named by the leases of `storage` that have not ended.
pub fn leased_objects(storage: &Storage) -> Result<HashSet<String>> {
    let now = now_ms();
    let mut leased = HashSet::new();
    for object in storage.list(LEASE_DIR)? {
        let Ok(Some((bytes, _))) = storage.get(&object) else {
            continue;
        };
        match serde_json::from_slice::<LeaseRecord>(&bytes) {
            Ok(record) if record.expires_at_ms > now => leased.extend(record.objects),
            Ok(_) => {}
            Err(error) => tracing::warn!(lease = %object, %error, "unreadable lease ignored"),
        }
    }
    Ok(leased)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_leases_not_ended_name_objects() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::new(dir.path(), None).unwrap();
        let _ended =
            Lease::acquire(&storage, vec!["sst/a.parquet".into()], Duration::ZERO).unwrap();
        assert!(leased_objects(&storage).unwrap().is_empty());
        let _live = Lease::acquire(
            &storage,
            vec!["sst/b.parquet".into()],
            Duration::from_secs(600),
        )
        .unwrap();
        let leased = leased_objects(&storage).unwrap();
        assert_eq!(leased.len(), 1);
        assert!(leased.contains("sst/b.parquet"));
    }
}
