//! Fault injection: make chosen I/O operations fail, to test that a failure leaves the
//! database consistent (nothing half-written, every acknowledged write kept).
//!
//! Every file operation of the engine (WAL writes and syncs, manifest writes, SST puts,
//! renames and deletes) asks the database's [`FaultInjector`], when one is configured in
//! [`crate::Options::faults`], whether it may proceed. Tests arm a rule such as "the third SST
//! write and every later one fails with `StorageFull`" and disarm it to let the database recover.
//!
//! A rule either fails operations or delays them ([`FaultInjector::delay`]). On an object
//! store ([`crate::storage`]) the injector is consulted for every HTTP request, below
//! `object_store`'s retries: a failure is answered as a server error (`500`, or `503 SlowDown`
//! for [`io::ErrorKind::QuotaExceeded`], throttling) and retried like a real one, so
//! [`FaultInjector::fail_times`] with a count within the retry budget tests retries, and a
//! sticky rule tests the error after them.

use std::io;
use std::path::Path;
use std::time::Duration;

use parking_lot::Mutex;

/// The kinds of I/O operation a rule can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IoOp {
    /// Appending a record to a WAL segment.
    WalWrite,
    /// `fdatasync` of a WAL segment.
    WalSync,
    /// Appending or syncing the manifest, or replacing `CURRENT`.
    ManifestWrite,
    /// Writing an SST file.
    SstWrite,
    /// Reading an SST file.
    SstRead,
    /// Deleting a file.
    Delete,
}

#[derive(Debug)]
struct Rule {
    ops: Vec<IoOp>,
    /// Matching operations allowed before failures start.
    remaining_ok: u64,
    kind: io::ErrorKind,
    /// Whether the rule keeps failing after the first failure.
    sticky: bool,
    fired: u64,
    /// Only paths containing this text match (all paths when `None`).
    path_contains: Option<String>,
    /// Most failures before matching operations pass again (no limit when `None`).
    limit: Option<u64>,
    /// Delay matching operations by this much instead of failing them.
    delay: Option<Duration>,
}

/// What an operation must do, by the armed rule.
#[derive(Debug)]
pub enum FaultAction {
    /// Go ahead.
    Proceed,
    /// Wait this long, then go ahead.
    Delay(Duration),
    /// Fail with this error.
    Fail(io::Error),
}

/// A set of failure rules shared by all files of one database.
#[derive(Debug, Default)]
pub struct FaultInjector {
    rule: Mutex<Option<Rule>>,
}

impl FaultInjector {
    /// An injector with no rule armed.
    pub fn new() -> Self {
        Self::default()
    }

    /// After `ok_before` more operations of the kinds in `ops` succeed, fail the next one and
    /// every later one (until [`FaultInjector::disarm`]) with an error of `kind`.
    pub fn fail_after(&self, ops: &[IoOp], ok_before: u64, kind: io::ErrorKind) {
        *self.rule.lock() = Some(Rule {
            ops: ops.to_vec(),
            remaining_ok: ok_before,
            kind,
            sticky: true,
            fired: 0,
            path_contains: None,
            limit: None,
            delay: None,
        });
    }

    /// Fails every operation of the kinds in `ops` on a path containing `path_contains`
    /// (say `sst/t000002/`, the SST directory of table 2), until [`FaultInjector::disarm`];
    /// operations on other paths proceed.
    pub fn fail_paths_containing(&self, ops: &[IoOp], path_contains: &str, kind: io::ErrorKind) {
        *self.rule.lock() = Some(Rule {
            ops: ops.to_vec(),
            remaining_ok: 0,
            kind,
            sticky: true,
            fired: 0,
            path_contains: Some(path_contains.to_string()),
            limit: None,
            delay: None,
        });
    }

    /// Like [`FaultInjector::fail_after`], but only one operation fails.
    pub fn fail_once_after(&self, ops: &[IoOp], ok_before: u64, kind: io::ErrorKind) {
        *self.rule.lock() = Some(Rule {
            ops: ops.to_vec(),
            remaining_ok: ok_before,
            kind,
            sticky: false,
            fired: 0,
            path_contains: None,
            limit: None,
            delay: None,
        });
    }

    /// Fails the next `times` operations of the kinds in `ops` with an error of `kind`; later
    /// ones proceed (a transient failure, such as throttling).
    pub fn fail_times(&self, ops: &[IoOp], times: u64, kind: io::ErrorKind) {
        *self.rule.lock() = Some(Rule {
            ops: ops.to_vec(),
            remaining_ok: 0,
            kind,
            sticky: true,
            fired: 0,
            path_contains: None,
            limit: Some(times),
            delay: None,
        });
    }

    /// Delays every operation of the kinds in `ops` by `delay` (a slow disk or store), until
    /// [`FaultInjector::disarm`].
    pub fn delay(&self, ops: &[IoOp], delay: Duration) {
        *self.rule.lock() = Some(Rule {
            ops: ops.to_vec(),
            remaining_ok: 0,
            kind: io::ErrorKind::Other,
            sticky: true,
            fired: 0,
            path_contains: None,
            limit: None,
            delay: Some(delay),
        });
    }

    /// Removes the armed rule.
    pub fn disarm(&self) {
        *self.rule.lock() = None;
    }

    /// How many operations the current rule has failed.
    pub fn failures(&self) -> u64 {
        self.rule.lock().as_ref().map_or(0, |r| r.fired)
    }

    /// Returns an error if the armed rule says `op` on `path` must fail now (after sleeping,
    /// if it says to delay it).
    pub fn check(&self, op: IoOp, path: &Path) -> io::Result<()> {
        match self.action(op, path) {
            FaultAction::Proceed => Ok(()),
            FaultAction::Delay(delay) => {
                std::thread::sleep(delay);
                Ok(())
            }
            FaultAction::Fail(error) => Err(error),
        }
    }

    /// What the armed rule says `op` on `path` must do now.
    pub fn action(&self, op: IoOp, path: &Path) -> FaultAction {
        let mut guard = self.rule.lock();
        let Some(rule) = guard.as_mut() else {
            return FaultAction::Proceed;
        };
        if !rule.ops.contains(&op) {
            return FaultAction::Proceed;
        }
        if let Some(needle) = &rule.path_contains
            && !path.to_string_lossy().contains(needle.as_str())
        {
            return FaultAction::Proceed;
        }
        if rule.remaining_ok > 0 {
            rule.remaining_ok -= 1;
            return FaultAction::Proceed;
        }
        if let Some(delay) = rule.delay {
            rule.fired += 1;
            return FaultAction::Delay(delay);
        }
        if (!rule.sticky && rule.fired > 0) || rule.limit.is_some_and(|l| rule.fired >= l) {
            return FaultAction::Proceed;
        }
        rule.fired += 1;
        FaultAction::Fail(io::Error::new(
            rule.kind,
            format!("injected {:?} failure on {}", op, path.display()),
        ))
    }
}

/// Checks `faults` (if any) for `op` on `path`.
pub(crate) fn check(faults: Option<&FaultInjector>, op: IoOp, path: &Path) -> io::Result<()> {
    match faults {
        Some(f) => f.check(op, path),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fails_after_count_and_only_matching_ops() {
        let f = FaultInjector::new();
        f.fail_after(&[IoOp::WalWrite], 2, io::ErrorKind::StorageFull);
        let p = Path::new("x");
        assert!(f.check(IoOp::WalWrite, p).is_ok());
        assert!(f.check(IoOp::SstWrite, p).is_ok());
        assert!(f.check(IoOp::WalWrite, p).is_ok());
        let err = f.check(IoOp::WalWrite, p).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert!(f.check(IoOp::WalWrite, p).is_err());
        assert_eq!(f.failures(), 2);
        f.disarm();
        assert!(f.check(IoOp::WalWrite, p).is_ok());
    }

    #[test]
    fn once_rules_fail_a_single_operation() {
        let f = FaultInjector::new();
        f.fail_once_after(&[IoOp::SstWrite], 0, io::ErrorKind::Other);
        let p = Path::new("x");
        assert!(f.check(IoOp::SstWrite, p).is_err());
        assert!(f.check(IoOp::SstWrite, p).is_ok());
    }

    #[test]
    fn counted_rules_fail_that_many_and_delays_never_fail() {
        let f = FaultInjector::new();
        f.fail_times(&[IoOp::SstRead], 2, io::ErrorKind::QuotaExceeded);
        let p = Path::new("x");
        assert!(f.check(IoOp::SstRead, p).is_err());
        assert!(f.check(IoOp::SstRead, p).is_err());
        assert!(f.check(IoOp::SstRead, p).is_ok());
        assert_eq!(f.failures(), 2);
        f.delay(&[IoOp::SstRead], Duration::from_millis(1));
        assert!(matches!(f.action(IoOp::SstRead, p), FaultAction::Delay(_)));
        assert!(matches!(f.action(IoOp::SstWrite, p), FaultAction::Proceed));
        assert!(f.check(IoOp::SstRead, p).is_ok());
    }
}
