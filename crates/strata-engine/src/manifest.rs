//! The manifest: the durable record of which tables exist and which SST files make up each
//! table, as an append-only log of [`VersionEdit`]s.
//!
//! Every structural change (create or drop a table, a flush adding a file, a compaction swapping
//! files, table options) is one edit, appended and synced before it takes effect in memory, so
//! after a crash the database is exactly the result of the edits that were acknowledged.
//!
//! ## Files (format version 1)
//!
//! * `MANIFEST-<n:06>`: the log. `CURRENT` holds the name of the live log followed by `\n`, and
//!   is replaced atomically (write `CURRENT.tmp`, sync, rename, sync the directory) when the log
//!   is rewritten as one snapshot edit after passing `manifest_rewrite_bytes`.
//!
//! ```text
//! header:  0..8    magic "STRATAMF"
//!          8..12   format version, u32 LE (= 1)
//!          12..16  crc32c of bytes 0..12, u32 LE
//! record:  0..4    payload length N, u32 LE
//!          4..8    crc32c of the payload, u32 LE
//!          8..12   crc32c of bytes 0..8 (header checksum), u32 LE
//!          12..    payload: one VersionEdit as JSON (UTF-8), N bytes
//! ```
//!
//! Keys inside edits are base64 of the Strata key encoding, table schemas base64 of an Arrow
//! IPC stream holding only the schema, table options JSON objects with defaults for missing
//! fields (so older manifests load).
//!
//! Fields added within format 1, each absent when empty/false and defaulted when missing, so
//! older logs load unchanged and a database that uses none of them writes what format 1
//! always wrote:
//!
//! * `TableDef.namespace` (string; empty = the default namespace), `TableDef.properties`
//!   (object of strings, metadata of the layer above, e.g. SQL column defaults) and
//!   `TableDef.staging` (bool).
//! * `VersionEdit.create_namespaces` / `drop_namespaces` (string arrays) and
//!   `publish_tables` (table ids).
//! * `VersionEdit.set_dvs` (deletion-vector records, [`DvMeta`]: each replaces the DV of its
//!   SST), `drop_dvs` (`(table, SST file)` pairs whose DV is now empty) and
//!   `maintain_dvs` (tables whose DVs are complete from this edit on: every file's DV is
//!   named or empty). A table of an older log has no DVs and is not maintained until the
//!   engine builds them (at open). An edit that adds files to a table without listing it in
//!   `maintain_dvs` leaves the table's DVs incomplete. Removing a file removes its DV.
//!
//! * `VersionEdit.writer_epoch` (number): the epoch of the writer that owns a database on
//!   object storage from this edit on (see below).
//!
//! An edit applies in this order: namespaces created, tables created, options, files removed
//! (with their DVs), files added, DVs dropped, DVs set, DV maintenance, flushed sequences,
//! tables dropped, staging tables published, namespaces dropped. So one edit can drop a table and publish its staged replacement under the same
//! name (an atomic `CREATE OR REPLACE`), or drop a namespace with its tables.
//!
//! ## On an object store
//!
//! An object store cannot append, so a database there ([`crate::storage`]) keeps no log: each
//! commit creates the next object `MANIFEST-<n+1>` holding the whole new state, in the same
//! format (the header, then one snapshot record), with a create-if-absent put; `CURRENT` is
//! moved forward after it with a put conditional on its last seen version. Of two writers
//! that read manifest `n`, one creates `n + 1` and the other gets [`Error::Fenced`] and
//! changes nothing. Opening a database there is itself a commit, raising `writer_epoch` by
//! one, so the newest writer wins: an older one is fenced at its next commit. File ids are
//! partitioned by epoch (a writer of epoch `e` allocates from `e << 32` on), so two writers,
//! one of them not yet fenced, never write an object of the same name. Since every commit
//! writes the whole state, a commit costs one PUT of the manifest's size (plus one of
//! `CURRENT`) instead of an append of one edit.
//!
//! ## Recovery policy and invariants
//!
//! Edits are synced before they take effect, so a record that never reached the file whole was
//! never acknowledged and is truncated (with a warning), as in the WAL (see its module doc for
//! what crashes leave on disk). At the first record that fails a check, the rest of the log is
//! such a torn tail exactly when it is shorter than a record header, or the record's header
//! checksum holds and the file ends before the record does, or every byte from the payload's
//! start to the end of the file is zero, or the record's *last* byte and everything after it
//! are zero: a written payload is JSON, which starts with `{` and ends with `}`, never zero
//! (asserted when an edit is framed), so a zero there was never written. Any other failure (a
//! checksum mismatch in a record whose last byte is there, wherever it is, a bad header
//! checksum followed by non-zero bytes) is [`Error::Corruption`] with the file and offset, and
//! nothing is truncated. Before every
//! write, the edit is applied to a copy of the state and [`ManifestState::check_invariants`]
//! must hold: table names unique among the published tables of a namespace (a staging table
//! may share the name of a published one), every table in a live namespace, every file in a
//! live table, ids below their counters, files of
//! levels 1 and deeper non-overlapping, flushed sequence numbers not beyond the last sequence,
//! every DV naming a live file of its table with no more positions than the file has rows.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use serde::{Deserialize, Serialize};

use crate::dv::DvMeta;
use crate::error::{Error, Result};
use crate::fault::{self, FaultInjector, IoOp};
use crate::fsutil::{sync_dir, write_atomic};
use crate::options::TableOptions;
use crate::sst::{SstMeta, base64_decode, base64_encode};
use crate::storage::{ObjectVersion, PutCondition, PutOutcome, Storage};
use crate::types::{FileId, SeqNo, TableId};

const MAGIC: &[u8; 8] = b"STRATAMF";
const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 16;
const RECORD_HEADER_LEN: usize = 12;
/// Name of the pointer file.
pub const CURRENT: &str = "CURRENT";

/// The definition of a table as stored in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableDef {
    /// Table id.
    pub id: TableId,
    /// Table name (unique among the published tables of its namespace).
    pub name: String,
    /// The namespace holding the table; empty for the default namespace (every table of a
    /// manifest older than namespaces).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// The user schema as an Arrow IPC stream with no batches.
    #[serde(with = "b64")]
    pub schema_ipc: Vec<u8>,
    /// Primary-key column names in key order (empty: append-only with a hidden row id).
    pub primary_key: Vec<String>,
    /// Table options.
    pub options: TableOptions,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: u64,
    /// Free-form metadata a layer above the engine keeps with the table (the SQL layer stores
    /// column defaults here), written in the edit that creates the table.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
    /// A staging table: being filled, invisible by name, until an edit publishes it; dropped
    /// at open if a crash left it unpublished.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub staging: bool,
}

/// One atomic change to the database's structure.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VersionEdit {
    /// Namespaces created (applied first, so tables of this edit may live in them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub create_namespaces: Vec<String>,
    /// Tables created.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub create_tables: Vec<TableDef>,
    /// Tables dropped.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drop_tables: Vec<TableId>,
    /// Staging tables made visible under their names (applied after `drop_tables`, so one
    /// edit can drop a table and publish its replacement under the same name).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub publish_tables: Vec<TableId>,
    /// Namespaces dropped (applied last; they must hold no table by then).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drop_namespaces: Vec<String>,
    /// SST files added (each names its table and level).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub add_files: Vec<SstMeta>,
    /// SST files removed: `(table, file)`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remove_files: Vec<(TableId, FileId)>,
    /// Deletion vectors written: each replaces the DV of its SST.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub set_dvs: Vec<DvMeta>,
    /// `(table, SST file)` whose DV is dropped (the file keeps no deleted rows).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drop_dvs: Vec<(TableId, FileId)>,
    /// Tables whose deletion vectors are complete from this edit on.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub maintain_dvs: Vec<TableId>,
    /// Per table, the sequence number up to which all its writes are in SSTs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flushed_seqs: Vec<(TableId, SeqNo)>,
    /// New options of existing tables.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub table_options: Vec<(TableId, TableOptions)>,
    /// Next file id to allocate.
    pub next_file_id: Option<FileId>,
    /// Next table id to allocate.
    pub next_table_id: Option<TableId>,
    /// Highest sequence number used so far.
    pub last_seq: Option<SeqNo>,
    /// The epoch of the writer owning the database from this edit on (databases on object
    /// storage; absent elsewhere).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writer_epoch: Option<u64>,
}

/// What the manifest says about one table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableState {
    /// The definition.
    pub def: TableDef,
    /// Live files by id.
    pub files: BTreeMap<FileId, SstMeta>,
    /// The deletion vector of each file that has deleted rows, by SST file id.
    pub dvs: BTreeMap<FileId, DvMeta>,
    /// True when `dvs` is complete (every file not in it has no deleted rows).
    pub dvs_maintained: bool,
    /// All writes with sequence numbers up to this are in SSTs.
    pub flushed_seq: SeqNo,
}

/// The state the edits add up to.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestState {
    /// Live tables by id (staging tables included).
    pub tables: BTreeMap<TableId, TableState>,
    /// Namespaces besides the default one (which always exists and has the empty name).
    pub namespaces: BTreeSet<String>,
    /// Next file id.
    pub next_file_id: FileId,
    /// Next table id.
    pub next_table_id: TableId,
    /// Highest sequence number recorded.
    pub last_seq: SeqNo,
    /// The epoch of the writer owning the database (0: none recorded).
    pub writer_epoch: u64,
}

impl Default for ManifestState {
    fn default() -> Self {
        ManifestState {
            tables: BTreeMap::new(),
            namespaces: BTreeSet::new(),
            next_file_id: 1,
            next_table_id: 1,
            last_seq: 0,
            writer_epoch: 0,
        }
    }
}

impl ManifestState {
    /// Applies an edit (no invariant check; see [`ManifestState::check_invariants`]).
    pub fn apply(&mut self, edit: &VersionEdit) -> Result<()> {
        let bad = |m: String| Err(Error::internal(format!("invalid manifest edit: {m}")));
        for namespace in &edit.create_namespaces {
            if namespace.is_empty() || !self.namespaces.insert(namespace.clone()) {
                return bad(format!("namespace '{namespace}' created twice"));
            }
        }
        for def in &edit.create_tables {
            if self.tables.contains_key(&def.id) {
                return bad(format!("table id {} created twice", def.id));
            }
            self.tables.insert(
                def.id,
                TableState {
                    def: def.clone(),
                    files: BTreeMap::new(),
                    dvs: BTreeMap::new(),
                    dvs_maintained: false,
                    flushed_seq: 0,
                },
            );
            self.next_table_id = self.next_table_id.max(def.id + 1);
        }
        for (table, options) in &edit.table_options {
            match self.tables.get_mut(table) {
                Some(state) => state.def.options = options.clone(),
                None => return bad(format!("options for unknown table {table}")),
            }
        }
        for (table, file) in &edit.remove_files {
            let removed = self.tables.get_mut(table).and_then(|t| {
                t.dvs.remove(file);
                t.files.remove(file)
            });
            if removed.is_none() {
                return bad(format!("removing unknown file {file} of table {table}"));
            }
        }
        for meta in &edit.add_files {
            let Some(table) = self.tables.get_mut(&meta.table_id) else {
                return bad(format!(
                    "file {} added to unknown table {}",
                    meta.id, meta.table_id
                ));
            };
            // Files added without maintaining the table's deletion vectors make them
            // incomplete (see `maintain_dvs`).
            if !edit.maintain_dvs.contains(&meta.table_id) {
                table.dvs_maintained = false;
            }
        }
        for meta in &edit.add_files {
            let Some(table) = self.tables.get_mut(&meta.table_id) else {
                return bad(format!(
                    "file {} added to unknown table {}",
                    meta.id, meta.table_id
                ));
            };
            if table.files.insert(meta.id, meta.clone()).is_some() {
                return bad(format!("file {} added twice", meta.id));
            }
            self.next_file_id = self.next_file_id.max(meta.id + 1);
            self.last_seq = self.last_seq.max(meta.max_seq);
        }
        for (table, file) in &edit.drop_dvs {
            match self.tables.get_mut(table) {
                Some(state) => {
                    state.dvs.remove(file);
                }
                None => return bad(format!("deletion vector of unknown table {table}")),
            }
        }
        for dv in &edit.set_dvs {
            let Some(table) = self.tables.get_mut(&dv.table_id) else {
                return bad(format!("deletion vector of unknown table {}", dv.table_id));
            };
            table.dvs.insert(dv.file, dv.clone());
            self.next_file_id = self.next_file_id.max(dv.id + 1);
        }
        for table in &edit.maintain_dvs {
            match self.tables.get_mut(table) {
                Some(state) => state.dvs_maintained = true,
                None => return bad(format!("deletion vectors of unknown table {table}")),
            }
        }
        for (table, seq) in &edit.flushed_seqs {
            match self.tables.get_mut(table) {
                Some(state) => state.flushed_seq = state.flushed_seq.max(*seq),
                None => return bad(format!("flushed sequence for unknown table {table}")),
            }
        }
        for table in &edit.drop_tables {
            if self.tables.remove(table).is_none() {
                return bad(format!("dropping unknown table {table}"));
            }
        }
        for table in &edit.publish_tables {
            match self.tables.get_mut(table) {
                Some(state) if state.def.staging => state.def.staging = false,
                _ => return bad(format!("publishing table {table}, which is not staged")),
            }
        }
        for namespace in &edit.drop_namespaces {
            if !self.namespaces.remove(namespace) {
                return bad(format!("dropping unknown namespace '{namespace}'"));
            }
        }
        if let Some(n) = edit.next_file_id {
            self.next_file_id = self.next_file_id.max(n);
        }
        if let Some(n) = edit.next_table_id {
            self.next_table_id = self.next_table_id.max(n);
        }
        if let Some(n) = edit.last_seq {
            self.last_seq = self.last_seq.max(n);
        }
        if let Some(epoch) = edit.writer_epoch {
            self.writer_epoch = self.writer_epoch.max(epoch);
            // Each writer's file ids start at its epoch's partition (see the module docs).
            self.next_file_id = self.next_file_id.max(epoch << 32);
        }
        Ok(())
    }

    /// Checks the manifest invariants (see the module docs).
    pub fn check_invariants(&self) -> Result<()> {
        let bad = |m: String| Err(Error::internal(format!("manifest invariant violated: {m}")));
        let mut names = std::collections::HashSet::new();
        for (id, table) in &self.tables {
            if *id != table.def.id || *id >= self.next_table_id {
                return bad(format!("table id {id} inconsistent"));
            }
            let namespace = table.def.namespace.as_str();
            if !namespace.is_empty() && !self.namespaces.contains(namespace) {
                return bad(format!("table {id} is in unknown namespace '{namespace}'"));
            }
            if !table.def.staging && !names.insert((namespace, table.def.name.as_str())) {
                return bad(format!("table name '{}' used twice", table.def.name));
            }
            if table.flushed_seq > self.last_seq {
                return bad(format!("table {id} flushed beyond the last sequence"));
            }
            let mut by_level: BTreeMap<u32, Vec<&SstMeta>> = BTreeMap::new();
            for (file_id, meta) in &table.files {
                if *file_id != meta.id || meta.table_id != *id || *file_id >= self.next_file_id {
                    return bad(format!("file {file_id} of table {id} inconsistent"));
                }
                if meta.min_key > meta.max_key
                    || meta.min_seq > meta.max_seq
                    || meta.max_seq > self.last_seq
                {
                    return bad(format!("file {file_id} has inverted ranges"));
                }
                by_level.entry(meta.level).or_default().push(meta);
            }
            for (file_id, dv) in &table.dvs {
                let rows = table.files.get(file_id).map(|f| f.rows);
                if dv.file != *file_id
                    || dv.table_id != *id
                    || dv.id >= self.next_file_id
                    || rows.is_none_or(|rows| dv.cardinality > rows)
                {
                    return bad(format!(
                        "deletion vector {} of file {file_id} of table {id} inconsistent",
                        dv.id
                    ));
                }
            }
            for (level, mut files) in by_level.into_iter().filter(|(l, _)| *l > 0) {
                files.sort_by(|a, b| a.min_key.cmp(&b.min_key));
                for pair in files.windows(2) {
                    if pair[0].max_key >= pair[1].min_key {
                        return bad(format!(
                            "files {} and {} of table {id} overlap in level {level}",
                            pair[0].id, pair[1].id
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// One edit that recreates this state from nothing.
    pub fn snapshot_edit(&self) -> VersionEdit {
        VersionEdit {
            create_namespaces: self.namespaces.iter().cloned().collect(),
            create_tables: self.tables.values().map(|t| t.def.clone()).collect(),
            add_files: self
                .tables
                .values()
                .flat_map(|t| t.files.values().cloned())
                .collect(),
            set_dvs: self
                .tables
                .values()
                .flat_map(|t| t.dvs.values().cloned())
                .collect(),
            maintain_dvs: self
                .tables
                .values()
                .filter(|t| t.dvs_maintained)
                .map(|t| t.def.id)
                .collect(),
            flushed_seqs: self
                .tables
                .values()
                .map(|t| (t.def.id, t.flushed_seq))
                .collect(),
            next_file_id: Some(self.next_file_id),
            next_table_id: Some(self.next_table_id),
            last_seq: Some(self.last_seq),
            writer_epoch: (self.writer_epoch > 0).then_some(self.writer_epoch),
            ..VersionEdit::default()
        }
    }
}

mod b64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::base64_encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        super::base64_decode(&text).ok_or_else(|| serde::de::Error::custom("invalid base64"))
    }
}

/// The name of manifest log `n`.
pub fn manifest_file_name(n: u64) -> String {
    format!("MANIFEST-{n:06}")
}

fn parse_manifest_file_name(name: &str) -> Option<u64> {
    name.strip_prefix("MANIFEST-")?.parse().ok()
}

fn file_header() -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    let crc = crc32c::crc32c(&header[..12]);
    header[12..16].copy_from_slice(&crc.to_le_bytes());
    header
}

fn frame(edit: &VersionEdit) -> Result<Vec<u8>> {
    let payload = serde_json::to_vec(edit).map_err(|e| Error::internal(e.to_string()))?;
    // Recovery tells a torn record by a zero at its end (see the module docs).
    debug_assert!(payload.first() == Some(&b'{') && payload.last() == Some(&b'}'));
    let mut out = Vec::with_capacity(RECORD_HEADER_LEN + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    let header_crc = crc32c::crc32c(&out[..8]);
    out.extend_from_slice(&header_crc.to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Where the manifest is kept.
#[derive(Debug)]
enum Log {
    /// An append-only log file in a local directory.
    Local { dir: PathBuf, file: File },
    /// One object per commit on an object store; `current` is the version of `CURRENT` this
    /// writer last wrote or read (`None`: not known to exist).
    Remote {
        storage: Storage,
        current: Option<ObjectVersion>,
    },
}

/// The open manifest of a database.
#[derive(Debug)]
pub struct Manifest {
    log: Log,
    number: u64,
    bytes: u64,
    state: ManifestState,
    rewrite_bytes: u64,
    faults: Option<Arc<FaultInjector>>,
}

/// Commits a writer retries at open when another writer committed in between.
const OPEN_ATTEMPTS: usize = 3;

impl Manifest {
    /// True when `dir` holds a `CURRENT` file.
    pub fn exists(dir: &Path) -> bool {
        dir.join(CURRENT).exists()
    }

    /// Creates the manifest of a new database in `dir`.
    pub fn create(
        dir: &Path,
        rewrite_bytes: u64,
        faults: Option<Arc<FaultInjector>>,
    ) -> Result<Manifest> {
        let state = ManifestState::default();
        let (file, bytes) = write_log(dir, 1, &state, faults.as_deref())?;
        install_current(dir, 1, faults.as_deref())?;
        Ok(Manifest {
            log: Log::Local {
                dir: dir.to_path_buf(),
                file,
            },
            number: 1,
            bytes,
            state,
            rewrite_bytes,
            faults,
        })
    }

    /// Opens the manifest of an existing database, replaying its log.
    pub fn open(
        dir: &Path,
        rewrite_bytes: u64,
        faults: Option<Arc<FaultInjector>>,
    ) -> Result<Manifest> {
        let current_path = dir.join(CURRENT);
        let current =
            std::fs::read_to_string(&current_path).map_err(|e| Error::io(&current_path, e))?;
        let number = parse_current(&current, &current_path)?;
        let path = dir.join(manifest_file_name(number));
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let (state, valid_bytes) = replay(&path, &bytes)?;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let length = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        if length > valid_bytes {
            tracing::warn!(file = %path.display(), bytes = length - valid_bytes, "truncating torn manifest tail");
            file.set_len(valid_bytes).map_err(|e| Error::io(&path, e))?;
            file.sync_all().map_err(|e| Error::io(&path, e))?;
        }
        Ok(Manifest {
            log: Log::Local {
                dir: dir.to_path_buf(),
                file,
            },
            number,
            bytes: valid_bytes,
            state,
            rewrite_bytes,
            faults,
        })
    }

    /// Opens the manifest of the database on object storage `storage` as its writer (or
    /// creates it, when `create_if_missing`): reads the newest manifest and commits a new
    /// writer epoch, which fences every earlier writer. `None` when there is no database and
    /// `create_if_missing` is false.
    pub fn open_remote(
        storage: &Storage,
        create_if_missing: bool,
        faults: Option<Arc<FaultInjector>>,
    ) -> Result<Option<Manifest>> {
        debug_assert!(storage.is_remote());
        let mut last_error = None;
        for _ in 0..OPEN_ATTEMPTS {
            let Some((number, state, current)) = read_remote(storage)? else {
                if !create_if_missing {
                    return Ok(None);
                }
                match create_remote(storage, faults.clone())? {
                    Some(manifest) => return Ok(Some(manifest)),
                    // Another process created it first: open theirs.
                    None => continue,
                }
            };
            let epoch = state.writer_epoch + 1;
            let mut manifest = Manifest {
                log: Log::Remote {
                    storage: storage.clone(),
                    current,
                },
                number,
                bytes: 0,
                state,
                rewrite_bytes: u64::MAX,
                faults: faults.clone(),
            };
            match manifest.apply(VersionEdit {
                writer_epoch: Some(epoch),
                ..VersionEdit::default()
            }) {
                Ok(()) => return Ok(Some(manifest)),
                // Another writer committed between our read and our commit: read again.
                Err(error @ Error::Fenced { .. }) => last_error = Some(error),
                Err(error) => return Err(error),
            }
        }
        Err(last_error.unwrap_or_else(|| Error::internal("manifest open attempts exhausted")))
    }

    /// The current state.
    pub fn state(&self) -> &ManifestState {
        &self.state
    }

    /// The live log's file name.
    pub fn file_name(&self) -> String {
        manifest_file_name(self.number)
    }

    /// Allocates a file id (made durable by the edit that adds the file).
    pub fn allocate_file_id(&mut self) -> FileId {
        let id = self.state.next_file_id;
        self.state.next_file_id += 1;
        id
    }

    /// Allocates a table id.
    pub fn allocate_table_id(&mut self) -> TableId {
        let id = self.state.next_table_id;
        self.state.next_table_id += 1;
        id
    }

    /// Makes `edit` durable and applies it. On error nothing changes; on an object store,
    /// [`Error::Fenced`] when another writer committed first.
    pub fn apply(&mut self, mut edit: VersionEdit) -> Result<()> {
        edit.next_file_id = Some(self.state.next_file_id);
        edit.next_table_id = Some(self.state.next_table_id);
        let mut next = self.state.clone();
        next.apply(&edit)?;
        next.check_invariants()?;
        let (dir, file) = match &mut self.log {
            Log::Local { dir, file } => (dir, file),
            Log::Remote { .. } => {
                self.commit_remote(&next)?;
                self.state = next;
                return Ok(());
            }
        };
        let record = frame(&edit)?;
        let path = dir.join(manifest_file_name(self.number));
        let written = fault::check(self.faults.as_deref(), IoOp::ManifestWrite, &path)
            .and_then(|()| (&*file).write_all(&record))
            .and_then(|()| file.sync_data());
        if let Err(error) = written {
            // Cut off whatever part of the record reached the file.
            let _ = file.set_len(self.bytes);
            return Err(Error::io(&path, error));
        }
        self.bytes += record.len() as u64;
        self.state = next;
        if self.bytes > self.rewrite_bytes
            && let Err(error) = self.rewrite()
        {
            tracing::warn!(%error, "manifest rewrite failed; continuing with the current log");
        }
        Ok(())
    }

    /// Creates the next manifest object holding `next`, then moves `CURRENT` to it.
    fn commit_remote(&mut self, next: &ManifestState) -> Result<()> {
        let Log::Remote { storage, current } = &mut self.log else {
            return Err(Error::internal("remote commit of a local manifest"));
        };
        let number = self.number + 1;
        let name = manifest_file_name(number);
        let mut contents = file_header().to_vec();
        contents.extend_from_slice(&frame(&next.snapshot_edit())?);
        let size = contents.len() as u64;
        match storage.put_if(&name, Bytes::from(contents), PutCondition::Create)? {
            PutOutcome::Written(_) => {}
            PutOutcome::Conflict => {
                return Err(Error::Fenced {
                    path: storage.root().display().to_string(),
                    manifest: name,
                });
            }
        }
        self.number = number;
        self.bytes = size;
        // CURRENT only moves forward: the put is conditional on the version last seen.
        let pointer = Bytes::from(format!("{name}\n"));
        let condition = match current.take() {
            Some(version) => PutCondition::Matches(version),
            None => PutCondition::Create,
        };
        match storage.put_if(CURRENT, pointer, condition.clone()) {
            Ok(PutOutcome::Written(version)) => *current = Some(version),
            Ok(PutOutcome::Conflict) => {
                // A newer writer moved it; this one is fenced at its next commit.
                tracing::warn!(manifest = %name, "CURRENT was moved by another writer");
            }
            Err(error) => {
                // The commit stands (open reads past a lagging CURRENT); retry next time.
                if let PutCondition::Matches(version) = condition {
                    *current = Some(version);
                }
                tracing::warn!(%error, manifest = %name, "could not move CURRENT forward");
            }
        }
        // Keep the two manifests before this one for readers that just read CURRENT.
        if number > 3 {
            let old = manifest_file_name(number - 3);
            if let Err(error) = storage.delete(&old) {
                tracing::warn!(%error, manifest = %old, "could not delete an old manifest");
            }
        }
        Ok(())
    }

    /// Writes the state as a new log of one snapshot edit and points `CURRENT` at it (on an
    /// object store every manifest already is one snapshot: nothing to do).
    pub fn rewrite(&mut self) -> Result<()> {
        let Log::Local { dir, file } = &mut self.log else {
            return Ok(());
        };
        let number = self.number + 1;
        let (new_file, bytes) = write_log(dir, number, &self.state, self.faults.as_deref())?;
        install_current(dir, number, self.faults.as_deref())?;
        let old = dir.join(manifest_file_name(self.number));
        self.number = number;
        *file = new_file;
        self.bytes = bytes;
        if let Err(error) = std::fs::remove_file(&old) {
            tracing::warn!(file = %old.display(), %error, "could not remove the old manifest");
        }
        Ok(())
    }

    /// Removes manifest logs other than the live one (left by a crash during a rewrite); on
    /// an object store, the manifests older than the two before the live one.
    pub fn remove_stale_logs(&self) -> Result<()> {
        let dir = match &self.log {
            Log::Local { dir, .. } => dir,
            Log::Remote { storage, .. } => {
                for name in storage.list_root("MANIFEST-")? {
                    if parse_manifest_file_name(&name).is_some_and(|n| n + 2 < self.number) {
                        storage.delete(&name)?;
                    }
                }
                return Ok(());
            }
        };
        let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let stale = parse_manifest_file_name(&name).is_some_and(|n| n != self.number)
                || name == "CURRENT.tmp";
            if stale {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }
}

/// The manifest number `CURRENT` holds.
fn parse_current(current: &str, path: &Path) -> Result<u64> {
    let name = current.trim_end_matches('\n');
    parse_manifest_file_name(name)
        .filter(|_| current.ends_with('\n'))
        .ok_or_else(|| Error::corruption(path, 0, format!("CURRENT holds {current:?}")))
}

/// Creates the manifest of a new database on an object store (writer epoch 1); `None` if
/// another process created one first.
fn create_remote(
    storage: &Storage,
    faults: Option<Arc<FaultInjector>>,
) -> Result<Option<Manifest>> {
    let mut state = ManifestState::default();
    state.apply(&VersionEdit {
        writer_epoch: Some(1),
        ..VersionEdit::default()
    })?;
    let name = manifest_file_name(1);
    let mut contents = file_header().to_vec();
    contents.extend_from_slice(&frame(&state.snapshot_edit())?);
    let size = contents.len() as u64;
    if let PutOutcome::Conflict =
        storage.put_if(&name, Bytes::from(contents), PutCondition::Create)?
    {
        return Ok(None);
    }
    let current = match storage.put_if(
        CURRENT,
        Bytes::from(format!("{name}\n")),
        PutCondition::Create,
    )? {
        PutOutcome::Written(version) => Some(version),
        PutOutcome::Conflict => None,
    };
    Ok(Some(Manifest {
        log: Log::Remote {
            storage: storage.clone(),
            current,
        },
        number: 1,
        bytes: size,
        state,
        rewrite_bytes: u64::MAX,
        faults,
    }))
}

/// The newest manifest of a database on an object store: the one `CURRENT` names, or a later
/// one (CURRENT lags when a writer stopped between its two puts). `None` when there is no
/// database.
fn read_remote(storage: &Storage) -> Result<Option<(u64, ManifestState, Option<ObjectVersion>)>> {
    let current_path = storage.local_path(CURRENT);
    let (mut number, current) = match storage.get(CURRENT)? {
        Some((bytes, version)) => {
            let text = String::from_utf8_lossy(&bytes);
            (parse_current(&text, &current_path)?, Some(version))
        }
        None if storage.size(&manifest_file_name(1))?.is_some() => (1, None),
        None => return Ok(None),
    };
    while storage.size(&manifest_file_name(number + 1))?.is_some() {
        number += 1;
    }
    let name = manifest_file_name(number);
    let path = storage.local_path(&name);
    let Some((bytes, _)) = storage.get(&name)? else {
        return Err(Error::corruption(
            &path,
            0,
            "the manifest CURRENT names does not exist",
        ));
    };
    let (state, valid_bytes) = replay(&path, &bytes)?;
    if valid_bytes != bytes.len() as u64 {
        // A put is all or nothing: a manifest object never has a torn tail.
        return Err(Error::corruption(
            &path,
            valid_bytes,
            "manifest object ends in an incomplete record",
        ));
    }
    Ok(Some((number, state, current)))
}

fn write_log(
    dir: &Path,
    number: u64,
    state: &ManifestState,
    faults: Option<&FaultInjector>,
) -> Result<(File, u64)> {
    let path = dir.join(manifest_file_name(number));
    let mut contents = file_header().to_vec();
    contents.extend_from_slice(&frame(&state.snapshot_edit())?);
    let result = (|| {
        fault::check(faults, IoOp::ManifestWrite, &path)?;
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)?;
        file.write_all(&contents)?;
        file.sync_all()?;
        sync_dir(dir)?;
        OpenOptions::new().append(true).open(&path)
    })();
    let file = result.map_err(|e| Error::io(&path, e))?;
    Ok((file, contents.len() as u64))
}

fn install_current(dir: &Path, number: u64, faults: Option<&FaultInjector>) -> Result<()> {
    let path = dir.join(CURRENT);
    fault::check(faults, IoOp::ManifestWrite, &path)
        .and_then(|()| {
            write_atomic(
                &path,
                format!("{}\n", manifest_file_name(number)).as_bytes(),
            )
        })
        .map_err(|e| Error::io(&path, e))
}

/// Replays a manifest log (the contents `bytes` of `path`); returns the state and the length
/// of the valid prefix.
fn replay(path: &Path, bytes: &[u8]) -> Result<(ManifestState, u64)> {
    let corrupt = |offset: usize, reason: &str| Error::corruption(path, offset as u64, reason);
    if bytes.len() < HEADER_LEN
        || &bytes[..8] != MAGIC
        || crc32c::crc32c(&bytes[..12])
            != u32::from_le_bytes(bytes[12..16].try_into().unwrap_or_default())
    {
        return Err(corrupt(0, "bad manifest header"));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap_or_default());
    if version != FORMAT_VERSION {
        return Err(corrupt(
            8,
            &format!("unknown manifest format version {version}"),
        ));
    }
    let mut state = ManifestState::default();
    let mut pos = HEADER_LEN;
    let mut records = 0;
    // Where the run of zeros that ends the file starts.
    let zeros_from = crate::wal::zero_filled_from(bytes);
    while pos < bytes.len() {
        // The torn-tail rule of the module docs: `break` truncates the rest of the log.
        let rest = &bytes[pos..];
        if rest.len() < RECORD_HEADER_LEN {
            break; // the append stopped inside the header
        }
        let no_payload_written = zeros_from <= pos + RECORD_HEADER_LEN;
        let word = |i: usize| u32::from_le_bytes(rest[i..i + 4].try_into().unwrap_or_default());
        if crc32c::crc32c(&rest[..8]) != word(8) {
            if no_payload_written {
                break; // a partial or zeroed header, then zeros
            }
            return Err(corrupt(pos, "manifest record header checksum mismatch"));
        }
        let len = word(0) as usize;
        let end = RECORD_HEADER_LEN + len;
        if rest.len() < end {
            break; // the append stopped inside the payload
        }
        let payload = &rest[RECORD_HEADER_LEN..end];
        if crc32c::crc32c(payload) != word(4) {
            // The payload's last byte (a written one is `}`) and everything after it are zero
            // (which includes a payload never written at all): its end never reached the
            // file. Any other mismatch is damage.
            if zeros_from < pos + end {
                break;
            }
            return Err(corrupt(pos, "manifest record checksum mismatch"));
        }
        let edit: VersionEdit = serde_json::from_slice(payload)
            .map_err(|e| corrupt(pos, &format!("unreadable manifest edit: {e}")))?;
        state
            .apply(&edit)
            .and_then(|()| state.check_invariants())
            .map_err(|e| corrupt(pos, &e.to_string()))?;
        records += 1;
        pos += end;
    }
    if records == 0 {
        return Err(corrupt(HEADER_LEN, "manifest holds no snapshot record"));
    }
    Ok((state, pos as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(id: TableId, name: &str) -> TableDef {
        TableDef {
            id,
            name: name.into(),
            schema_ipc: vec![1, 2, 3],
            primary_key: vec!["k".into()],
            options: TableOptions::default(),
            created_at_ms: 0,
            namespace: String::new(),
            properties: BTreeMap::new(),
            staging: false,
        }
    }

    fn file(table: TableId, id: FileId, level: u32, min: &[u8], max: &[u8], seq: SeqNo) -> SstMeta {
        SstMeta {
            id,
            table_id: table,
            level,
            run_id: 0,
            size_bytes: 10,
            crc32c: 0,
            rows: 1,
            tombstones: 0,
            older_versions: 0,
            min_key: min.to_vec(),
            max_key: max.to_vec(),
            min_seq: seq,
            max_seq: seq,
            created_at_ms: 0,
        }
    }

    #[test]
    fn edits_survive_reopen_and_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Manifest::create(dir.path(), 1 << 20, None).unwrap();
        let id = m.allocate_table_id();
        m.apply(VersionEdit {
            create_tables: vec![def(id, "t")],
            ..Default::default()
        })
        .unwrap();
        let f1 = m.allocate_file_id();
        m.apply(VersionEdit {
            add_files: vec![file(id, f1, 0, b"a", b"m", 5)],
            flushed_seqs: vec![(id, 5)],
            last_seq: Some(5),
            ..Default::default()
        })
        .unwrap();
        let before = m.state().clone();
        drop(m);
        let mut m = Manifest::open(dir.path(), 1 << 20, None).unwrap();
        assert_eq!(m.state(), &before);
        m.rewrite().unwrap();
        assert_eq!(m.file_name(), "MANIFEST-000002");
        drop(m);
        let m = Manifest::open(dir.path(), 1 << 20, None).unwrap();
        assert_eq!(m.state(), &before);
        assert!(!dir.path().join("MANIFEST-000001").exists());
    }

    #[test]
    fn invariants_reject_bad_edits_and_nothing_changes() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Manifest::create(dir.path(), 1 << 20, None).unwrap();
        let a = m.allocate_table_id();
        let b = m.allocate_table_id();
        m.apply(VersionEdit {
            create_tables: vec![def(a, "t")],
            ..Default::default()
        })
        .unwrap();
        let before = m.state().clone();
        assert!(
            m.apply(VersionEdit {
                create_tables: vec![def(b, "t")],
                ..Default::default()
            })
            .is_err()
        );
        let f1 = m.allocate_file_id();
        let f2 = m.allocate_file_id();
        let overlapping = VersionEdit {
            add_files: vec![file(a, f1, 1, b"a", b"m", 1), file(a, f2, 1, b"k", b"z", 2)],
            last_seq: Some(2),
            ..Default::default()
        };
        assert!(m.apply(overlapping).is_err());
        assert!(
            m.apply(VersionEdit {
                remove_files: vec![(a, 99)],
                ..Default::default()
            })
            .is_err()
        );
        let mut after = m.state().clone();
        after.next_file_id = before.next_file_id;
        assert_eq!(after, before);
        drop(m);
        assert_eq!(
            Manifest::open(dir.path(), 1 << 20, None)
                .unwrap()
                .state()
                .tables,
            before.tables
        );
    }

    #[test]
    fn automatic_rewrite_keeps_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Manifest::create(dir.path(), 2_000, None).unwrap();
        let id = m.allocate_table_id();
        m.apply(VersionEdit {
            create_tables: vec![def(id, "t")],
            ..Default::default()
        })
        .unwrap();
        for seq in 1..50u64 {
            let f = m.allocate_file_id();
            m.apply(VersionEdit {
                add_files: vec![file(id, f, 0, b"a", b"b", seq)],
                last_seq: Some(seq),
                ..Default::default()
            })
            .unwrap();
        }
        assert!(m.file_name() != "MANIFEST-000001");
        let state = m.state().clone();
        drop(m);
        let m = Manifest::open(dir.path(), 2_000, None).unwrap();
        assert_eq!(m.state(), &state);
        assert_eq!(m.state().tables[&id].files.len(), 49);
    }

    /// A manifest log creating tables t0, t1 and t2: its directory, path and bytes.
    fn log_of_three_tables() -> (tempfile::TempDir, PathBuf, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Manifest::create(dir.path(), 1 << 20, None).unwrap();
        for i in 0..3 {
            let id = m.allocate_table_id();
            m.apply(VersionEdit {
                create_tables: vec![def(id, &format!("t{i}"))],
                ..Default::default()
            })
            .unwrap();
        }
        drop(m);
        let path = dir.path().join("MANIFEST-000001");
        let full = std::fs::read(&path).unwrap();
        (dir, path, full)
    }

    #[test]
    fn torn_tail_is_truncated_and_damage_is_corruption() {
        let (dir, path, full) = log_of_three_tables();
        // Every truncation opens with a prefix of the tables.
        for cut in (HEADER_LEN + 1)..full.len() {
            std::fs::write(&path, &full[..cut]).unwrap();
            match Manifest::open(dir.path(), 1 << 20, None) {
                Ok(m) => assert!(m.state().tables.len() <= 3),
                Err(e) => assert!(e.is_corruption(), "cut {cut}: {e}"),
            }
        }
        // Every single-byte flip is corruption, never a different (or shorter) state.
        for position in 0..full.len() {
            let mut damaged = full.clone();
            damaged[position] ^= 0x20;
            std::fs::write(&path, &damaged).unwrap();
            match Manifest::open(dir.path(), 1 << 20, None) {
                Ok(m) => panic!(
                    "flip at {position} went unnoticed: {:?}",
                    m.state().tables.len()
                ),
                Err(e) => assert!(e.is_corruption(), "flip at {position}: {e}"),
            }
        }
    }

    #[test]
    fn staging_publish_and_namespaces_apply_reload_and_check() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Manifest::create(dir.path(), 1 << 20, None).unwrap();
        let old = m.allocate_table_id();
        m.apply(VersionEdit {
            create_tables: vec![def(old, "t")],
            ..Default::default()
        })
        .unwrap();
        // A staging table may share the name of a published one.
        let new = m.allocate_table_id();
        let mut staged = def(new, "t");
        staged.staging = true;
        staged.properties.insert("default.v".into(), "42".into());
        m.apply(VersionEdit {
            create_tables: vec![staged],
            ..Default::default()
        })
        .unwrap();
        // Publishing it beside the old table would make the name ambiguous.
        assert!(
            m.apply(VersionEdit {
                publish_tables: vec![new],
                ..Default::default()
            })
            .is_err()
        );
        // Only a staging table can be published.
        assert!(
            m.apply(VersionEdit {
                drop_tables: vec![new],
                publish_tables: vec![old],
                ..Default::default()
            })
            .is_err()
        );
        m.apply(VersionEdit {
            drop_tables: vec![old],
            publish_tables: vec![new],
            ..Default::default()
        })
        .unwrap();
        // Namespaces: a table needs its namespace, a namespace with a table cannot go.
        let mut in_ns = def(m.allocate_table_id(), "t");
        in_ns.namespace = "s".into();
        assert!(
            m.apply(VersionEdit {
                create_tables: vec![in_ns.clone()],
                ..Default::default()
            })
            .is_err()
        );
        m.apply(VersionEdit {
            create_namespaces: vec!["s".into(), "empty".into()],
            create_tables: vec![in_ns.clone()],
            ..Default::default()
        })
        .unwrap();
        assert!(
            m.apply(VersionEdit {
                drop_namespaces: vec!["s".into()],
                ..Default::default()
            })
            .is_err()
        );
        assert!(
            m.apply(VersionEdit {
                create_namespaces: vec!["s".into()],
                ..Default::default()
            })
            .is_err()
        );
        let state = m.state().clone();
        assert_eq!(state.tables.len(), 2);
        assert!(!state.tables[&new].def.staging);
        assert_eq!(state.tables[&new].def.properties["default.v"], "42");
        drop(m);
        let mut m = Manifest::open(dir.path(), 1 << 20, None).unwrap();
        assert_eq!(m.state(), &state);
        m.rewrite().unwrap();
        drop(m);
        let mut m = Manifest::open(dir.path(), 1 << 20, None).unwrap();
        assert_eq!(m.state(), &state);
        m.apply(VersionEdit {
            drop_tables: vec![in_ns.id],
            drop_namespaces: vec!["s".into()],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(m.state().namespaces.len(), 1);
    }

    #[test]
    fn edits_written_before_namespaces_and_staging_still_load() {
        // A table definition and an edit as format 1 wrote them before these fields existed.
        let old = r#"{"create_tables":[{"id":1,"name":"t","schema_ipc":"AQID","primary_key":["k"],
            "options":{},"created_at_ms":5}],"next_file_id":1,"next_table_id":2,"last_seq":0}"#;
        let edit: VersionEdit = serde_json::from_str(old).unwrap();
        let def = &edit.create_tables[0];
        assert!(def.namespace.is_empty() && def.properties.is_empty() && !def.staging);
        // And a definition without them is written as before.
        let text = serde_json::to_string(def).unwrap();
        assert!(!text.contains("namespace") && !text.contains("staging"));
    }

    /// Offsets of the records of a manifest log.
    fn record_offsets(bytes: &[u8]) -> Vec<usize> {
        let mut offsets = Vec::new();
        let mut pos = HEADER_LEN;
        while pos < bytes.len() {
            offsets.push(pos);
            let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
            pos += RECORD_HEADER_LEN + len;
        }
        offsets
    }

    #[test]
    fn a_damaged_last_edit_is_corruption_and_only_an_unwritten_one_is_torn() {
        let (dir, path, full) = log_of_three_tables();
        let last = *record_offsets(&full).last().unwrap();
        let payload_at = last + RECORD_HEADER_LEN;
        // Damage to the last record, also next to a zero-filled end of the file: corruption at
        // its offset, and the file is left as it was.
        let mut damaged_in_front_of_zeros = full.clone();
        damaged_in_front_of_zeros[payload_at + 3] ^= 0x01;
        damaged_in_front_of_zeros.extend_from_slice(&[0u8; 512]);
        let mut header_damaged = full.clone();
        header_damaged[last + 9] ^= 0x01;
        for (what, bytes) in [
            ("payload byte", {
                let mut b = full.clone();
                b[payload_at + 10] ^= 0x04;
                b
            }),
            (
                "payload byte, zeros after the record",
                damaged_in_front_of_zeros,
            ),
            ("header checksum", header_damaged),
        ] {
            std::fs::write(&path, &bytes).unwrap();
            match Manifest::open(dir.path(), 1 << 20, None) {
                Err(Error::Corruption { file, offset, .. }) => {
                    assert_eq!(file, path, "{what}");
                    assert_eq!(offset, last as u64, "{what}");
                }
                Err(e) => panic!("{what}: {e}"),
                Ok(_) => panic!("{what}: damage went unnoticed"),
            }
            assert_eq!(std::fs::read(&path).unwrap(), bytes, "{what}: file changed");
        }
        // Torn: cut short, header only, the payload's end or all of it zeros, a zero tail.
        let mut end_zeroed = full.clone();
        let len = end_zeroed.len();
        end_zeroed[len - 7..].fill(0);
        let mut payload_zeroed = full.clone();
        payload_zeroed[payload_at..].fill(0);
        let mut partial_header = full.clone();
        partial_header[last + 5..].fill(0);
        for (what, bytes, tables) in [
            ("cut inside the header", full[..last + 5].to_vec(), 2),
            ("header only", full[..payload_at].to_vec(), 2),
            ("cut inside the payload", full[..full.len() - 1].to_vec(), 2),
            ("zero-filled end", end_zeroed, 2),
            ("payload zeros", payload_zeroed, 2),
            ("partial header, then zeros", partial_header, 2),
            ("zero tail", [&full[..], &[0u8; 100]].concat(), 3),
        ] {
            std::fs::write(&path, &bytes).unwrap();
            let m =
                Manifest::open(dir.path(), 1 << 20, None).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(m.state().tables.len(), tables, "{what}");
            let kept = if tables == 3 { full.len() } else { last };
            assert_eq!(std::fs::read(&path).unwrap(), &full[..kept], "{what}");
        }
    }
}
