//! Appending to the WAL: the open segment, rotation, syncing, and deleting old segments.
//!
//! Only the commit leader appends (see `db::write`), so appends are never concurrent; the
//! mutex also orders appends against `rotate`, the background interval syncer and segment
//! deletion by the flush worker.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{segment_file_name, segment_header};
use crate::error::{Error, Result};
use crate::fault::{self, FaultInjector, IoOp};
use crate::types::SeqNo;

/// A segment that is no longer open for appends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Segment id (increasing).
    pub id: u64,
    /// Highest sequence number of any entry in it (0 if empty).
    pub max_seq: SeqNo,
}

#[derive(Debug)]
struct OpenSegment {
    id: u64,
    path: PathBuf,
    file: File,
    bytes: u64,
    max_seq: SeqNo,
    /// Bytes written since the last sync.
    dirty: bool,
}

#[derive(Debug)]
struct WalState {
    open: OpenSegment,
    /// Closed segments still on disk, oldest first.
    closed: Vec<SegmentInfo>,
    /// Set after a failed sync: the kernel may have dropped the dirty pages, so nothing
    /// written since the last good sync can be trusted; the database must be reopened.
    poisoned: Option<String>,
}

/// The write-ahead log of one database.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    segment_size_bytes: u64,
    faults: Option<Arc<FaultInjector>>,
    state: Mutex<WalState>,
}

impl Wal {
    /// Opens the log in `dir` for appends, starting segment `next_id`. `closed` lists the
    /// segments kept from before (already replayed), oldest first.
    pub fn create(
        dir: &Path,
        next_id: u64,
        closed: Vec<SegmentInfo>,
        segment_size_bytes: u64,
        faults: Option<Arc<FaultInjector>>,
    ) -> Result<Wal> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let open = create_segment(dir, next_id, faults.as_deref())?;
        Ok(Wal {
            dir: dir.to_path_buf(),
            segment_size_bytes,
            faults,
            state: Mutex::new(WalState {
                open,
                closed,
                poisoned: None,
            }),
        })
    }

    /// Appends framed records (`bytes`, built with `BatchPayload::frame_into`) whose highest
    /// sequence number is `max_seq`, then syncs if `sync`. On a write error the segment is cut
    /// back to its previous length, so a failed append leaves no partial record behind.
    pub fn append(&self, bytes: &[u8], max_seq: SeqNo, sync: bool) -> Result<()> {
        let mut state = self.state.lock();
        if let Some(reason) = &state.poisoned {
            return Err(Error::Closed(Some(reason.clone())));
        }
        let faults = self.faults.as_deref();
        let segment = &mut state.open;
        let before = segment.bytes;
        let written = fault::check(faults, IoOp::WalWrite, &segment.path)
            .and_then(|()| (&segment.file).write_all(bytes));
        if let Err(error) = written {
            // Remove whatever part of the records reached the file.
            let cut = segment.file.set_len(before);
            if let Err(cut_error) = cut {
                let reason = format!(
                    "WAL append failed ({error}) and the segment could not be cut back ({cut_error})"
                );
                state.poisoned = Some(reason.clone());
                return Err(Error::Closed(Some(reason)));
            }
            return Err(Error::io(&segment.path, error));
        }
        segment.bytes += bytes.len() as u64;
        segment.max_seq = segment.max_seq.max(max_seq);
        segment.dirty = true;
        if sync {
            Self::sync_locked(&mut state, faults)?;
        }
        Ok(())
    }

    fn sync_locked(state: &mut WalState, faults: Option<&FaultInjector>) -> Result<()> {
        if !state.open.dirty {
            return Ok(());
        }
        let segment = &mut state.open;
        let synced = fault::check(faults, IoOp::WalSync, &segment.path)
            .and_then(|()| segment.file.sync_data());
        match synced {
            Ok(()) => {
                segment.dirty = false;
                Ok(())
            }
            Err(error) => {
                let reason = format!("WAL sync of {} failed: {error}", segment.path.display());
                state.poisoned = Some(reason.clone());
                Err(Error::Closed(Some(reason)))
            }
        }
    }

    /// Syncs the open segment if anything was written since the last sync.
    pub fn sync(&self) -> Result<()> {
        let mut state = self.state.lock();
        Self::sync_locked(&mut state, self.faults.as_deref())
    }

    /// True when the open segment has passed its size target.
    pub fn is_full(&self) -> bool {
        self.state.lock().open.bytes >= self.segment_size_bytes
    }

    /// Closes the open segment (synced) and starts the next one, unless the open segment is
    /// still empty.
    pub fn rotate(&self) -> Result<()> {
        let mut state = self.state.lock();
        if let Some(reason) = &state.poisoned {
            return Err(Error::Closed(Some(reason.clone())));
        }
        if state.open.bytes <= super::SEGMENT_HEADER_LEN as u64 {
            return Ok(());
        }
        Self::sync_locked(&mut state, self.faults.as_deref())?;
        let next = create_segment(&self.dir, state.open.id + 1, self.faults.as_deref())?;
        let old = std::mem::replace(&mut state.open, next);
        state.closed.push(SegmentInfo {
            id: old.id,
            max_seq: old.max_seq,
        });
        Ok(())
    }

    /// Deletes closed segments whose entries all have sequence numbers `< floor` (they are in
    /// SSTs). Returns how many were deleted.
    pub fn delete_segments_below(&self, floor: SeqNo) -> Result<usize> {
        let doomed: Vec<SegmentInfo> = {
            let mut state = self.state.lock();
            let (doomed, kept): (Vec<_>, Vec<_>) =
                state.closed.drain(..).partition(|s| s.max_seq < floor);
            state.closed = kept;
            doomed
        };
        for segment in &doomed {
            let path = self.dir.join(segment_file_name(segment.id));
            fault::check(self.faults.as_deref(), IoOp::Delete, &path)
                .and_then(|()| std::fs::remove_file(&path))
                .or_else(|e| {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })
                .map_err(|e| Error::io(&path, e))?;
        }
        Ok(doomed.len())
    }

    /// Registers segments written before this log was opened (already replayed), so they are
    /// deleted once their entries are flushed.
    pub fn adopt_closed(&self, mut segments: Vec<SegmentInfo>) {
        let mut state = self.state.lock();
        segments.append(&mut state.closed);
        segments.sort_by_key(|s| s.id);
        state.closed = segments;
    }

    /// Ids of the segments on disk (closed ones and the open one), oldest first.
    pub fn segment_ids(&self) -> Vec<u64> {
        let state = self.state.lock();
        state
            .closed
            .iter()
            .map(|s| s.id)
            .chain([state.open.id])
            .collect()
    }

    /// Total bytes of the open segment.
    pub fn open_segment_bytes(&self) -> u64 {
        self.state.lock().open.bytes
    }

    /// Syncs and closes the log (used by `Db::close`).
    pub fn close(&self) -> Result<()> {
        self.sync()
    }

    /// The reason appends are refused, if a sync failed.
    pub fn poisoned(&self) -> Option<String> {
        self.state.lock().poisoned.clone()
    }
}

fn create_segment(dir: &Path, id: u64, faults: Option<&FaultInjector>) -> Result<OpenSegment> {
    let path = dir.join(segment_file_name(id));
    let result = (|| {
        fault::check(faults, IoOp::WalWrite, &path)?;
        let mut file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        file.write_all(&segment_header())?;
        file.sync_all()?;
        crate::fsutil::sync_dir(dir)?;
        Ok::<_, std::io::Error>(file)
    })();
    let file = result.map_err(|e| Error::io(&path, e))?;
    Ok(OpenSegment {
        id,
        path,
        file,
        bytes: super::SEGMENT_HEADER_LEN as u64,
        max_seq: 0,
        dirty: false,
    })
}
