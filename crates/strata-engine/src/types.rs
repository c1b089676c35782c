//! Small shared vocabulary: sequence numbers, operation kinds, identifiers.

/// A global, monotonically increasing write sequence number. Every row written gets one;
/// a newer version of a key has a larger sequence number. `0` is never assigned to a write.
pub type SeqNo = u64;

/// The largest sequence number; a read at this sequence sees everything.
pub const MAX_SEQ: SeqNo = u64::MAX;

/// Identifier of a table inside one database; never reused after a drop.
pub type TableId = u32;

/// Identifier of an SST file; allocated from the manifest's file counter, never reused.
pub type FileId = u64;

/// What a stored version of a key says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum OpKind {
    /// The key holds this row.
    Put = 0,
    /// The key was deleted (a tombstone); it hides every older version.
    Delete = 1,
}

impl OpKind {
    /// The on-disk byte (`_op` column, WAL entries).
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// Parses the on-disk byte.
    pub fn from_u8(byte: u8) -> Option<OpKind> {
        match byte {
            0 => Some(OpKind::Put),
            1 => Some(OpKind::Delete),
            _ => None,
        }
    }
}
