//! The engine's error type.
//!
//! One enum for the whole crate. Variants are grouped by what a caller can do about them
//! ([`ErrorKind`]): fix the input (`Invalid`), retry later (`Unavailable`), stop using the handle
//! (`Closed`), restore from a backup (`Corruption`), or report a bug (`Internal`).
//! Corruption is always its own variant carrying the file and the byte offset, never an I/O error
//! with a string, so callers and tests can tell "the disk said no" from "the bytes are wrong".

use std::path::PathBuf;

/// Result alias used throughout the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a caller can do about an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is wrong (bad schema, NULL key, unknown table, limit exceeded): fix the input.
    Invalid,
    /// The environment failed (I/O error, disk full, database locked): retry or fix the machine.
    Unavailable,
    /// The database or handle was closed.
    Closed,
    /// Stored bytes failed a checksum or a format check.
    Corruption,
    /// A broken internal invariant: a bug in Strata.
    Internal,
}

/// Every error the engine returns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system I/O error on a named file.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// An object-store error (SST files are written and read through `object_store`).
    #[error("object store error on {path}: {message}")]
    ObjectStore {
        /// The object path.
        path: String,
        /// The store's message.
        message: String,
    },

    /// Stored data failed a checksum or format check. Never returned as data.
    #[error("corruption in {file} at byte {offset}: {reason}")]
    Corruption {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset of the damaged record, page or footer.
        offset: u64,
        /// What check failed.
        reason: String,
    },

    /// The directory exists but is not a Strata database.
    #[error("{path} is not a Strata database: {reason}")]
    NotADatabase {
        /// The directory.
        path: PathBuf,
        /// Why it was rejected.
        reason: String,
    },

    /// Another process (or another `Db` in this process) holds the database lock.
    #[error("database {path} is already open in another process or handle (lock file {lock})")]
    Locked {
        /// The database directory.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },

    /// No database exists at the path and `create_if_missing` is false.
    #[error("no Strata database at {0} (set create_if_missing to create one)")]
    DatabaseNotFound(PathBuf),

    /// A table name that does not exist.
    #[error("table '{0}' does not exist")]
    TableNotFound(String),

    /// A table name that is already taken.
    #[error("table '{0}' already exists")]
    TableExists(String),

    /// A write or schema that does not match the table.
    #[error("schema mismatch: {0}")]
    SchemaMismatch(String),

    /// A NULL in a primary-key column.
    #[error("NULL value in primary key column '{column}' (row {row})")]
    NullKey {
        /// The key column.
        column: String,
        /// Row index inside the rejected batch.
        row: usize,
    },

    /// A configured limit was exceeded (key size, value size, batch size).
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),

    /// Any other invalid argument.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// A column type the engine cannot store in this position.
    #[error("unsupported type: {0}")]
    UnsupportedType(String),

    /// A write waited too long for flushes to make room (backpressure).
    #[error("{0}")]
    WriteStalled(String),

    /// The database was closed, or a background failure made it read-only.
    #[error("database is closed{}", .0.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    Closed(Option<String>),

    /// Another writer took over the database on object storage (it opened it after this
    /// handle did, or committed first): this handle can no longer commit, and stops writing.
    #[error(
        "fenced: another writer took over the database {path} (it committed {manifest} first); \
         this handle can no longer write. Reopen the database to continue from the other \
         writer's state"
    )]
    Fenced {
        /// The database.
        path: String,
        /// The manifest object the other writer created.
        manifest: String,
    },

    /// An Arrow error while building or reading batches.
    #[error("arrow error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),

    /// A Parquet error while writing or reading an SST.
    #[error("parquet error in {file}: {message}")]
    Parquet {
        /// The SST file.
        file: String,
        /// The Parquet library's message.
        message: String,
    },

    /// A broken internal invariant.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The action class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { .. }
            | Error::ObjectStore { .. }
            | Error::Locked { .. }
            | Error::WriteStalled(_) => ErrorKind::Unavailable,
            Error::Corruption { .. } | Error::NotADatabase { .. } => ErrorKind::Corruption,
            Error::Closed(_) | Error::Fenced { .. } => ErrorKind::Closed,
            Error::Internal(_) => ErrorKind::Internal,
            Error::Parquet { .. } => ErrorKind::Corruption,
            Error::DatabaseNotFound(_)
            | Error::TableNotFound(_)
            | Error::TableExists(_)
            | Error::SchemaMismatch(_)
            | Error::NullKey { .. }
            | Error::LimitExceeded(_)
            | Error::InvalidArgument(_)
            | Error::UnsupportedType(_)
            | Error::Arrow(_) => ErrorKind::Invalid,
        }
    }

    /// True when this is a [`Error::Corruption`] (or another integrity failure).
    pub fn is_corruption(&self) -> bool {
        self.kind() == ErrorKind::Corruption
    }

    /// Builds an [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Builds an [`Error::Corruption`].
    pub fn corruption(file: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        Error::Corruption {
            file: file.into(),
            offset,
            reason: reason.into(),
        }
    }

    /// Builds an [`Error::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        Error::Internal(message.into())
    }

    /// A short copy of this error for places that must hand the same failure to several
    /// waiters (group commit followers, background-error latch) or report it again (a file
    /// found corrupt); integrity failures keep their kind.
    pub(crate) fn duplicate(&self) -> Error {
        match self {
            Error::Io { path, source } => Error::Io {
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            Error::Corruption {
                file,
                offset,
                reason,
            } => Error::Corruption {
                file: file.clone(),
                offset: *offset,
                reason: reason.clone(),
            },
            Error::ObjectStore { path, message } => Error::ObjectStore {
                path: path.clone(),
                message: message.clone(),
            },
            Error::Parquet { file, message } => Error::Parquet {
                file: file.clone(),
                message: message.clone(),
            },
            Error::NotADatabase { path, reason } => Error::NotADatabase {
                path: path.clone(),
                reason: reason.clone(),
            },
            Error::Closed(reason) => Error::Closed(reason.clone()),
            Error::WriteStalled(reason) => Error::WriteStalled(reason.clone()),
            Error::LimitExceeded(reason) => Error::LimitExceeded(reason.clone()),
            other => Error::Internal(other.to_string()),
        }
    }
}
