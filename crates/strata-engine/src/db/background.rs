//! Background work: a bounded pool of threads running flushes and compactions, the interval
//! WAL syncer, the scan-plan refresher (`Options::scan_plan_refresh_ms`; it keeps the
//! plans of recently scanned key ranges current, `crate::read::plan_cache`), and after an open
//! the key-cache warmer (`Options::key_cache_warm_on_open`; one pass, then it ends).
//!
//! Jobs go through two bounded channels (`JOB_QUEUE_CAPACITY` each), one for flushes and one
//! for compactions; a table has at most one job of each kind queued (`flush_queued`,
//! `compaction_queued`). Every worker takes a waiting flush before a compaction, and with two or
//! more threads the last one runs flushes only, so a long compaction never holds back the
//! flushes that writers may be waiting for. A failed job is logged, counted, remembered as the
//! database's background error (naming the table; cleared when that job next succeeds), and
//! retried after a backoff of its own
//! (per table and kind of job) that doubles from 100 ms up to 5 s and resets when the job
//! succeeds. The worker does not wait out the backoff: it goes on with other tables' jobs,
//! and the retry thread queues the failed job again when it is due (a trigger of the same job
//! before then is ignored), so one table that cannot flush neither holds a worker nor spins.
//! Threads hold only a weak reference to the database. `stop` lets a running job finish and
//! joins every thread.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

/// What the plan refresher waits on: a stop, or (while it idles) a query that scanned.
#[derive(Default)]
struct RefreshSignal {
    state: Mutex<RefreshState>,
    changed: Condvar,
}

#[derive(Default)]
struct RefreshState {
    stopped: bool,
    /// The refresher sleeps because no table was scanned recently.
    idle: bool,
    /// A scan happened while it was idle.
    woken: bool,
}

impl RefreshSignal {
    /// Waits up to `timeout`, or, when `idle`, until a scan wakes it; true when stopped.
    /// Wakes while not idle are ignored, so scans never make passes more frequent than the
    /// interval and the rest factor allow.
    fn wait(&self, timeout: Duration, idle: bool) -> bool {
        let mut state = self.state.lock();
        state.idle = idle;
        state.woken = false;
        if !state.stopped {
            self.changed.wait_for(&mut state, timeout);
        }
        state.idle = false;
        state.stopped
    }

    fn wake(&self) {
        let mut state = self.state.lock();
        if state.idle && !state.woken {
            state.woken = true;
            self.changed.notify_all();
        }
    }

    fn stop(&self) {
        self.state.lock().stopped = true;
        self.changed.notify_all();
    }
}

/// Failed jobs: the backoff of each, and when the waiting ones are due again.
#[derive(Default)]
struct Retries {
    state: Mutex<RetryState>,
    changed: Condvar,
}

#[derive(Default)]
struct RetryState {
    /// The last delay of each job whose last run failed.
    backoff: HashMap<Job, Duration>,
    /// When each job waiting for its retry is due.
    due: HashMap<Job, Instant>,
    stopped: bool,
}

impl Retries {
    /// Records a failure of `job` and schedules its retry; returns the delay.
    fn failed(&self, job: Job) -> Duration {
        let mut state = self.state.lock();
        let delay = state
            .backoff
            .get(&job)
            .map_or(BACKOFF_MIN, |d| (*d * 2).min(BACKOFF_MAX));
        debug_assert!((BACKOFF_MIN..=BACKOFF_MAX).contains(&delay));
        state.backoff.insert(job, delay);
        state.due.insert(job, Instant::now() + delay);
        self.changed.notify_all();
        delay
    }

    /// Records a success of `job`: its next failure starts from the shortest backoff.
    fn succeeded(&self, job: Job) {
        self.state.lock().backoff.remove(&job);
    }

    /// True while `job` waits for its retry (a run before then is skipped).
    fn waiting(&self, job: Job) -> bool {
        self.state.lock().due.contains_key(&job)
    }

    /// Forgets `job` (its table is gone).
    fn forget(&self, job: Job) {
        let mut state = self.state.lock();
        state.backoff.remove(&job);
        state.due.remove(&job);
    }

    /// Waits until some jobs are due and returns them; `None` once stopped.
    fn next_due(&self) -> Option<Vec<Job>> {
        let mut state = self.state.lock();
        loop {
            if state.stopped {
                return None;
            }
            let now = Instant::now();
            let due: Vec<Job> = state
                .due
                .iter()
                .filter(|(_, at)| **at <= now)
                .map(|(job, _)| *job)
                .collect();
            if !due.is_empty() {
                due.iter().for_each(|job| {
                    state.due.remove(job);
                });
                return Some(due);
            }
            match state.due.values().min().copied() {
                Some(at) => {
                    self.changed.wait_until(&mut state, at);
                }
                None => self.changed.wait(&mut state),
            }
        }
    }

    fn stop(&self) {
        self.state.lock().stopped = true;
        self.changed.notify_all();
    }
}

/// The background threads of one database.
#[derive(Default)]
pub(crate) struct Background {
    flushes: Mutex<Option<Sender<Job>>>,
    compactions: Mutex<Option<Sender<Job>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    stop: Arc<StopSignal>,
    retries: Arc<Retries>,
    refresh: Arc<RefreshSignal>,
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
            let (weak, retries) = (Arc::downgrade(db), Arc::clone(&self.retries));
            threads.push(
                std::thread::Builder::new()
                    .name(format!("strata-bg-{i}"))
                    .spawn(move || worker(weak, queues, retries))?,
            );
        }
        if count > 0 {
            let (weak, retries) = (Arc::downgrade(db), Arc::clone(&self.retries));
            threads.push(
                std::thread::Builder::new()
                    .name("strata-bg-retry".into())
                    .spawn(move || retrier(weak, retries))?,
            );
        }
        if db.options.scan_plan_refresh_ms > 0 {
            let (weak, signal) = (Arc::downgrade(db), Arc::clone(&self.refresh));
            let interval = Duration::from_millis(db.options.scan_plan_refresh_ms);
            threads.push(
                std::thread::Builder::new()
                    .name("strata-plan-refresh".into())
                    .spawn(move || plan_refresher(weak, signal, interval))?,
            );
        }
        if db.options.key_cache_warm_on_open
            && db.options.key_cache_bytes > 0
            && !db.files.store.is_remote()
        {
            let (weak, stop) = (Arc::downgrade(db), Arc::clone(&self.stop));
            threads.push(
                std::thread::Builder::new()
                    .name("strata-key-warm".into())
                    .spawn(move || key_warmer(weak, stop))?,
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

    /// Tells an idle plan refresher that a query scanned (it refreshes at its interval again).
    pub fn wake_plan_refresher(&self) {
        self.refresh.wake();
    }

    /// Stops and joins every thread (a running job finishes first).
    pub fn stop(&self) {
        *self.stop.stopped.lock() = true;
        self.stop.changed.notify_all();
        self.refresh.stop();
        self.retries.stop();
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

fn worker(db: Weak<DbInner>, queues: Queues, retries: Arc<Retries>) {
    while let Some(job) = queues.next() {
        let Some(strong) = db.upgrade() else { return };
        if strong.closed.load(Ordering::Acquire) {
            return;
        }
        let (Job::Flush(id) | Job::Compact(id)) = job;
        let Some(table) = strong.table_by_id(id) else {
            retries.forget(job);
            continue;
        };
        match job {
            Job::Flush(_) => table.flush_queued.store(false, Ordering::Release),
            Job::Compact(_) => table.compaction_queued.store(false, Ordering::Release),
        }
        if retries.waiting(job) {
            // Failed recently: the retry thread queues it again when its backoff is over.
            continue;
        }
        let result = match job {
            Job::Flush(_) => strong.flush_immutables(&table),
            Job::Compact(_) => strong.compact_picked(&table),
        };
        let what = match job {
            Job::Flush(_) => "flush",
            Job::Compact(_) => "compaction",
        };
        let prefix = format!("{what} of table '{}' failed", table.name);
        match result {
            Ok(()) => {
                retries.succeeded(job);
                // The error this job reported is over.
                let mut last = strong.background_error.lock();
                if last.as_deref().is_some_and(|e| e.starts_with(&prefix)) {
                    *last = None;
                }
            }
            Err(error) => {
                let delay = retries.failed(job);
                tracing::error!(
                    %error,
                    table = %table.name,
                    retry_in_ms = delay.as_millis() as u64,
                    "background {what} failed; retrying"
                );
                Metrics::inc(&strong.metrics.background_errors);
                *strong.background_error.lock() = Some(format!("{prefix}: {error}"));
            }
        }
    }
}

/// Queues failed jobs again when their backoff is over.
fn retrier(db: Weak<DbInner>, retries: Arc<Retries>) {
    while let Some(jobs) = retries.next_due() {
        let Some(db) = db.upgrade() else { return };
        if db.closed.load(Ordering::Acquire) {
            return;
        }
        for job in jobs {
            let (Job::Flush(id) | Job::Compact(id)) = job;
            match (db.table_by_id(id), job) {
                (None, _) => retries.forget(job),
                (Some(table), Job::Flush(_)) => {
                    if !db.schedule_flush(&table) {
                        // The queue is full: try again after a longer wait.
                        retries.failed(job);
                    }
                }
                (Some(table), Job::Compact(_)) => db.schedule_compaction(&table),
            }
        }
    }
}

/// The refresher waits at least this many times as long as its last pass took, so it uses
/// at most a fifth of one core however large the memtables grow.
const REFRESH_REST_FACTOR: u32 = 4;

/// How long the refresher sleeps when no table was scanned recently (a query's scan wakes it).
const REFRESH_IDLE_REST: Duration = Duration::from_secs(5);

/// Keeps the scan plans of recently scanned tables current (`crate::read::plan_cache`), a
/// pass every `interval` (or [`REFRESH_REST_FACTOR`] times the last pass, if longer) while
/// some table was scanned recently; otherwise it sleeps until a scan wakes it. A failed
/// refresh is only logged: the next query plans for itself and reports the error.
fn plan_refresher(db: Weak<DbInner>, signal: Arc<RefreshSignal>, interval: Duration) {
    let (mut rest, mut idle) = (interval, false);
    while !signal.wait(rest, idle) {
        let Some(db) = db.upgrade() else { return };
        if db.closed.load(Ordering::Acquire) {
            return;
        }
        let started = Instant::now();
        let tables: Vec<Arc<crate::table::TableInner>> =
            db.catalog.read().by_id.values().cloned().collect();
        let mut active = false;
        for table in tables {
            match table.refresh_scan_plans(&db) {
                Ok(refreshed) => active |= refreshed,
                Err(error) => {
                    active = true;
                    tracing::debug!(%error, table = %table.name, "scan plan refresh failed");
                }
            }
        }
        idle = !active;
        rest = if active {
            interval.max(started.elapsed() * REFRESH_REST_FACTOR)
        } else {
            REFRESH_IDLE_REST
        };
    }
}

/// Reads the keys of the database's files into the key cache once, after an open
/// (`Options::key_cache_warm_on_open`): the files of the deepest levels first, then those with
/// the most rows (under random writes they hold most live rows, which plans and lookups search
/// first), skipping files already cached or too large to be, and stopping when the next file
/// would not fit in what the cache has left (it would evict keys warmed before it) or when
/// the database closes. A file that cannot be read is left to the query that needs it.
fn key_warmer(db: Weak<DbInner>, stop: Arc<StopSignal>) {
    // Each file with its table; only ids are kept, so a file compacted away meanwhile is not
    // held open (nor its deletion delayed) by the warm-up.
    let files: Vec<(
        Arc<crate::table::TableInner>,
        crate::types::FileId,
        (u32, u64),
    )> = {
        let Some(db) = db.upgrade() else { return };
        let tables: Vec<Arc<crate::table::TableInner>> =
            db.catalog.read().by_id.values().cloned().collect();
        let mut files: Vec<_> = tables
            .iter()
            .flat_map(|t| {
                t.super_version()
                    .version
                    .files()
                    .map(|f| (Arc::clone(t), f.meta().id, (f.meta().level, f.meta().rows)))
                    .collect::<Vec<_>>()
            })
            .collect();
        files.sort_by_key(|(_, _, order)| std::cmp::Reverse(*order));
        files
    };
    for (table, id, _) in files {
        if stop.wait(Duration::ZERO) {
            return;
        }
        let Some(db) = db.upgrade() else { return };
        if db.closed.load(Ordering::Acquire) {
            return;
        }
        // The file as the table's current version holds it (skipped when compacted away).
        let Some(file) = table
            .super_version()
            .version
            .files()
            .find(|f| f.meta().id == id)
            .cloned()
        else {
            continue;
        };
        if file.cached_keys().is_some() || !file.keys_cacheable() {
            continue;
        }
        let keys = &db.files.keys;
        if keys
            .bytes()
            .saturating_add(file.keys_bytes_estimate() as u64)
            > keys.capacity()
        {
            return;
        }
        if let Err(error) = file.warm_keys() {
            tracing::debug!(%error, file = file.meta().id, "key-cache warm-up skipped a file");
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
