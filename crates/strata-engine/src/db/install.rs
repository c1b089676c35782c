//! Installing a change of a table's files: one manifest edit and one super-version swap.
//!
//! Every change of a table's files (a flush, an ingest, a compaction, a rebuild of its
//! deletion vectors) is installed by [`DbInner::install_file_change`], the one place that
//! writes the manifest edit of a file change and installs the new version through the table's
//! [`VersionControl`](crate::version::VersionControl). The caller:
//!
//! 1. takes the table's change lock (`table.versions.lock_changes()`, after commit leadership
//!    if it holds it),
//! 2. computes what the change implies for the version current under that lock
//!    ([`ChangeGuard::version`]): the deletion vectors of `db::dvs`,
//! 3. calls [`DbInner::install_file_change`], which under the manifest lock:
//!    * gives up if the table was dropped (the drop sets `dropped` under the manifest lock, so
//!      a change installed after the check is never lost with its table): the DVs written for
//!      the change are deleted and `Ok(false)` returned;
//!    * applies one manifest edit: the added and removed files, the DVs set and dropped, the
//!      table's flushed sequence number, the database's last sequence number;
//!    * advances the table's flushed sequence number;
//!    * installs the new super version under the `sv` write lock, in one swap: the files of
//!      the change, without the flushed memtable, with the ingest's sequence numbers published
//!      inside the swap (a reader never pairs the new files with an older read sequence, nor
//!      the new sequence with the old files);
//!
//!    then, after the manifest lock, marks the DVs the change replaced obsolete.
//!
//! A failed edit installs nothing and deletes the DVs written for it; the caller deletes the
//! data files it wrote. Lock order: commit leadership → change lock → manifest → `sv`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::DbInner;
use super::dvs::DvUpdate;
use crate::error::Result;
use crate::manifest::VersionEdit;
use crate::table::TableInner;
use crate::types::{FileId, SeqNo};
use crate::version::{ChangeGuard, FileChange, MemtableSlot};

/// One change of a table's files, ready to install.
#[derive(Debug, Default)]
pub(crate) struct FileInstall {
    /// Files added and removed (the DV fields are filled from `dvs`).
    pub change: FileChange,
    /// The DVs computed for the change under the change lock.
    pub dvs: DvUpdate,
    /// Every write of the table up to this sequence number is in its files after the change
    /// (a flush, an ingest).
    pub flushed_seq: Option<SeqNo>,
    /// The memtable whose rows the added file holds (a flush): it leaves the super version in
    /// the same swap as the file arrives.
    pub flushed_memtable: Option<Arc<MemtableSlot>>,
    /// Record the database's last sequence number in the edit: the visible sequence number,
    /// or the flushed one if higher.
    pub record_last_seq: bool,
    /// Publish `flushed_seq` as the database's last and visible sequence number under the
    /// `sv` write lock (an ingest, whose rows are numbered ahead of the writers).
    pub publish_flushed_seq: bool,
    /// Recorded DVs to drop beyond the ones of `dvs` (a rebuild drops the DVs that failed
    /// their checks).
    pub drop_dvs: Vec<FileId>,
}

impl DbInner {
    /// Installs `install` for `table`, whose change lock `guard` is (see the module docs).
    /// `Ok(false)` when the table was dropped meanwhile (nothing installed, the DVs written
    /// for the change deleted); on an error nothing is installed either.
    pub(crate) fn install_file_change(
        &self,
        table: &TableInner,
        guard: &ChangeGuard<'_>,
        install: FileInstall,
    ) -> Result<bool> {
        let FileInstall {
            mut change,
            dvs,
            flushed_seq,
            flushed_memtable,
            record_last_seq,
            publish_flushed_seq,
            drop_dvs,
        } = install;
        debug_assert!(
            !publish_flushed_seq || flushed_seq.is_some(),
            "only a flushed sequence number is published"
        );
        debug_assert!(
            flushed_memtable.is_none()
                || flushed_seq.is_some_and(|s| {
                    flushed_memtable
                        .as_ref()
                        .is_some_and(|m| s == m.switched_at() && s >= m.max_seq())
                }),
            "a flushed memtable's writes are all at or below its switch, the flushed number"
        );
        let mut manifest = self.manifest.lock();
        if table.dropped.load(Ordering::Acquire) {
            dvs.discard();
            return Ok(false);
        }
        let last_seq = record_last_seq.then(|| {
            let visible = self.visible_seq();
            debug_assert!(
                !publish_flushed_seq || flushed_seq.is_some_and(|s| s >= visible),
                "an ingest publishes a sequence number ahead of the writers"
            );
            visible.max(flushed_seq.unwrap_or(0))
        });
        let mut edit = VersionEdit {
            add_files: change.added.iter().map(|f| f.meta().clone()).collect(),
            remove_files: change.removed.iter().map(|id| (table.id, *id)).collect(),
            flushed_seqs: flushed_seq.map(|s| (table.id, s)).into_iter().collect(),
            last_seq,
            ..VersionEdit::default()
        };
        dvs.fill(table, &mut edit, &mut change);
        for file in drop_dvs {
            if !edit.set_dvs.iter().any(|d| d.file == file) {
                edit.drop_dvs.push((table.id, file));
            }
        }
        if let Err(error) = manifest.apply(edit) {
            dvs.discard();
            return Err(error);
        }
        if let Some(seq) = flushed_seq {
            table.flushed_seq.fetch_max(seq, Ordering::AcqRel);
        }
        let version =
            table
                .versions
                .install(guard, &change, flushed_memtable.as_ref(), |current| {
                    if let Some(seq) = flushed_seq.filter(|_| publish_flushed_seq) {
                        // Every earlier write of the table is in the files the load goes over.
                        debug_assert!(
                            current.active.memtable.is_empty() && current.immutables.is_empty(),
                            "an ingest installs over a table without memtable rows"
                        );
                        self.last_seq.store(seq, Ordering::Release);
                        self.visible_seq.store(seq, Ordering::Release);
                    }
                });
        table.refresh_pressure(&version);
        drop(manifest);
        dvs.installed();
        Ok(true)
    }
}
