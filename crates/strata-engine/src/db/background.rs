//! Background work: a bounded pool of threads running flushes and compactions, and the
//! interval WAL syncer.
//!
//! Jobs go through two bounded channels (`JOB_QUEUE_CAPACITY` each), one for flushes and one
//! for compactions; a table has at most one job of each kind queued (`flush_queued`,
//! `compaction_queued`). Every worker takes a waiting flush before a compaction, and with two or
//! more threads the last one runs flushes only, so a long compaction never holds back the
//! flushes that writers may be waiting for. A failed job is logged, counted, remembered as the
//! database's background error, and retried after a backoff that doubles up to 5 s. Threads
//! hold only a weak reference to the database. `stop` lets a running job finish and joins every
//! thread.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::{Condvar, Mutex};

use super::DbInner;
use crate::metrics::Metrics;
use crate::options::SyncMode;
use crate::types::TableId;

/// Most jobs waiting at once.
const JOB_QUEUE_CAPACITY: usize = 1024;
/// First retry delay of a failed job.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest retry delay.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A unit of background work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Job {
    /// Flush the immutable memtables of a table.
    Flush(TableId),
    /// Run the compactions a table's strategy picks.
    Compact(TableId),
}

#[derive(Default)]
struct StopSignal {
    stopped: Mutex<bool>,
    changed: Condvar,
}

impl StopSignal {
    /// Waits up to `timeout`; true when stopped.
    fn wait(&self, timeout: Duration) -> bool {
        let mut stopped = self.stopped.lock();
        if !*stopped {
            self.changed.wait_for(&mut stopped, timeout);
        }
        *stopped
    }
}

/// The background threads of one database.
#[derive(Default)]
pub(crate) struct Background {
    flushes: Mutex<Option<Sender<Job>>>,
    compactions: Mutex<Option<Sender<Job>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    stop: Arc<StopSignal>,
}

impl Background {
    /// Starts the workers (and the WAL syncer in interval mode).
    pub fn start(&self, db: &Arc<DbInner>) -> std::io::Result<()> {
        let (flush_sender, flushes) = crossbeam_channel::bounded(JOB_QUEUE_CAPACITY);
        let (compact_sender, compactions) = crossbeam_channel::bounded(JOB_QUEUE_CAPACITY);
        *self.flushes.lock() = Some(flush_sender);
        *self.compactions.lock() = Some(compact_sender);
        let mut threads = self.threads.lock();
        let count = db.options.background_threads;
        for i in 0..count {
            let flush_only = count >= 2 && i == count - 1;
            let queues = Queues {
                flushes: flushes.clone(),
                compactions: (!flush_only).then(|| compactions.clone()),
            };
            let (weak, stop) = (Arc::downgrade(db), Arc::clone(&self.stop));
            threads.push(
                std::thread::Builder::new()
                    .name(format!("strata-bg-{i}"))
                    .spawn(move || worker(weak, queues, stop))?,
            );
        }
        if let SyncMode::IntervalMs(ms) = db.options.sync_mode {
            let (weak, stop) = (Arc::downgrade(db), Arc::clone(&self.stop));
            threads.push(
                std::thread::Builder::new()
                    .name("strata-wal-sync".into())
                    .spawn(move || syncer(weak, stop, Duration::from_millis(ms)))?,
            );
        }
        Ok(())
    }

    /// Queues a job; false when the queue is full or stopped.
    pub fn submit(&self, job: Job) -> bool {
        let queue = match job {
            Job::Flush(_) => &self.flushes,
            Job::Compact(_) => &self.compactions,
        };
        match queue.lock().as_ref().map(|s| s.try_send(job)) {
            Some(Ok(())) => true,
            Some(Err(TrySendError::Full(_))) => {
                tracing::warn!(
                    ?job,
                    "background queue full; job dropped until the next trigger"
                );
                false
            }
            _ => false,
        }
    }

    /// Stops and joins every thread (a running job finishes first).
    pub fn stop(&self) {
        *self.stop.stopped.lock() = true;
        self.stop.changed.notify_all();
        self.flushes.lock().take();
        self.compactions.lock().take();
        let current = std::thread::current().id();
        for handle in self.threads.lock().drain(..) {
            if handle.thread().id() != current {
                let _ = handle.join();
            }
        }
    }
}

/// The queues a worker takes jobs from.
struct Queues {
    flushes: Receiver<Job>,
    /// `None` for the flush-only worker.
    compactions: Option<Receiver<Job>>,
}

impl Queues {
    /// The next job, flushes first; `None` once the queues are closed.
    fn next(&self) -> Option<Job> {
        if let Ok(job) = self.flushes.try_recv() {
            return Some(job);
        }
        match &self.compactions {
            None => self.flushes.recv().ok(),
            Some(compactions) => crossbeam_channel::select_biased! {
                recv(self.flushes) -> job => job.ok(),
                recv(compactions) -> job => job.ok(),
            },
        }
    }
}

fn worker(db: Weak<DbInner>, queues: Queues, stop: Arc<StopSignal>) {
    let mut backoff = BACKOFF_MIN;
    while let Some(job) = queues.next() {
        let Some(strong) = db.upgrade() else { return };
        if strong.closed.load(Ordering::Acquire) {
            return;
        }
        let (Job::Flush(id) | Job::Compact(id)) = job;
        let Some(table) = strong.table_by_id(id) else {
            continue;
        };
        let result = match job {
            Job::Flush(_) => {
                table.flush_queued.store(false, Ordering::Release);
                strong.flush_immutables(&table)
            }
            Job::Compact(_) => {
                table.compaction_queued.store(false, Ordering::Release);
                strong.compact_picked(&table)
            }
        };
        match result {
            Ok(()) => backoff = BACKOFF_MIN,
            Err(error) => {
                tracing::error!(%error, ?job, "background job failed; retrying");
                Metrics::inc(&strong.metrics.background_errors);
                *strong.background_error.lock() = Some(error.to_string());
                drop(strong);
                if stop.wait(backoff) {
                    return;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                let Some(strong) = db.upgrade() else { return };
                match job {
                    Job::Flush(_) => strong.schedule_flush(&table),
                    Job::Compact(_) => strong.schedule_compaction(&table),
                }
            }
        }
    }
}

fn syncer(db: Weak<DbInner>, stop: Arc<StopSignal>, interval: Duration) {
    while !stop.wait(interval) {
        let Some(db) = db.upgrade() else { return };
        if let Err(error) = db.wal.sync() {
            tracing::error!(%error, "background WAL sync failed");
            *db.background_error.lock() = Some(error.to_string());
            Metrics::inc(&db.metrics.background_errors);
        }
    }
}
