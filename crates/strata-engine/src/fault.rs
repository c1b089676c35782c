//! Fault injection: make chosen I/O operations fail, to test that a failure leaves the
//! database consistent (nothing half-written, every acknowledged write kept).
//!
//! Every file operation of the engine (WAL writes and syncs, manifest writes, SST puts,
//! renames and deletes) asks the database's [`FaultInjector`], when one is configured in
//! [`crate::Options::faults`], whether it may proceed. Tests arm a rule such as "the third SST
//! write and every later one fails with `StorageFull`" and disarm it to let the database recover.

use std::io;
use std::path::Path;

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

    /// Returns an error if the armed rule says `op` on `path` must fail now.
    pub fn check(&self, op: IoOp, path: &Path) -> io::Result<()> {
        let mut guard = self.rule.lock();
        let Some(rule) = guard.as_mut() else {
            return Ok(());
        };
        if !rule.ops.contains(&op) {
            return Ok(());
        }
        if let Some(needle) = &rule.path_contains
            && !path.to_string_lossy().contains(needle.as_str())
        {
            return Ok(());
        }
        if rule.remaining_ok > 0 {
            rule.remaining_ok -= 1;
            return Ok(());
        }
        if !rule.sticky && rule.fired > 0 {
            return Ok(());
        }
        rule.fired += 1;
        Err(io::Error::new(
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
}
