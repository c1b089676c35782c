//! Background work: a bounded pool of threads running flushes, and the interval WAL syncer.
//!
//! Jobs go through a bounded channel (`JOB_QUEUE_CAPACITY`); a table has at most one flush job
//! queued (`TableInner::flush_queued`). A failed job is logged, counted, remembered as the
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
    sender: Mutex<Option<Sender<Job>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    stop: Arc<StopSignal>,
}

impl Background {
    /// Starts the workers (and the WAL syncer in interval mode).
    pub fn start(&self, db: &Arc<DbInner>) -> std::io::Result<()> {
        let (sender, receiver) = crossbeam_channel::bounded(JOB_QUEUE_CAPACITY);
        *self.sender.lock() = Some(sender);
        let mut threads = self.threads.lock();
        for i in 0..db.options.background_threads {
            let (weak, receiver, stop) =
                (Arc::downgrade(db), receiver.clone(), Arc::clone(&self.stop));
            threads.push(
                std::thread::Builder::new()
                    .name(format!("strata-bg-{i}"))
                    .spawn(move || worker(weak, receiver, stop))?,
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
        match self.sender.lock().as_ref().map(|s| s.try_send(job)) {
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
        self.sender.lock().take();
        let current = std::thread::current().id();
        for handle in self.threads.lock().drain(..) {
            if handle.thread().id() != current {
                let _ = handle.join();
            }
        }
    }
}

fn worker(db: Weak<DbInner>, jobs: Receiver<Job>, stop: Arc<StopSignal>) {
    let mut backoff = BACKOFF_MIN;
    while let Ok(job) = jobs.recv() {
        let Some(strong) = db.upgrade() else { return };
        if strong.closed.load(Ordering::Acquire) {
            return;
        }
        let Job::Flush(id) = job;
        let Some(table) = strong.table_by_id(id) else {
            continue;
        };
        table.flush_queued.store(false, Ordering::Release);
        match strong.flush_immutables(&table) {
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
                match db.upgrade() {
                    Some(strong) => strong.schedule_flush(&table),
                    None => return,
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
