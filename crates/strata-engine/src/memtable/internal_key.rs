//! The internal key: a user key plus a sequence number, ordered key ascending then sequence
//! descending, stored as one byte string `user_key || seq (8 bytes, big-endian)`.
//!
//! [`InternalKey`] owns the bytes; [`InternalKeyRef`] is the borrowed, unsized form, so ordered
//! maps keyed by `InternalKey` can be searched with a stack-built `&InternalKeyRef` and no
//! allocation (`BTreeMap::range`, `SkipMap::range` through `Borrow`).

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;

use crate::types::SeqNo;

/// Length of the sequence-number suffix.
pub const SEQ_SUFFIX_LEN: usize = 8;

/// Borrowed internal key (`user_key || seq_be`). Always at least 8 bytes long.
#[repr(transparent)]
pub struct InternalKeyRef([u8]);

impl InternalKeyRef {
    /// Views `bytes` (which must end with the 8-byte sequence suffix) as an internal key.
    pub fn from_bytes(bytes: &[u8]) -> &InternalKeyRef {
        debug_assert!(bytes.len() >= SEQ_SUFFIX_LEN);
        // SAFETY: `InternalKeyRef` is `repr(transparent)` over `[u8]`, so the pointer cast
        // keeps layout and metadata (the slice length).
        unsafe { &*(bytes as *const [u8] as *const InternalKeyRef) }
    }

    /// The user key.
    #[inline]
    pub fn user_key(&self) -> &[u8] {
        &self.0[..self.0.len() - SEQ_SUFFIX_LEN]
    }

    /// The sequence number.
    #[inline]
    pub fn seq(&self) -> SeqNo {
        let suffix = &self.0[self.0.len() - SEQ_SUFFIX_LEN..];
        let mut buf = [0u8; SEQ_SUFFIX_LEN];
        buf.copy_from_slice(suffix);
        u64::from_be_bytes(buf)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl PartialEq for InternalKeyRef {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl Eq for InternalKeyRef {}

impl PartialOrd for InternalKeyRef {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for InternalKeyRef {
    #[inline]
    fn cmp(&self, other: &Self) -> Ordering {
        self.user_key()
            .cmp(other.user_key())
            .then_with(|| other.seq().cmp(&self.seq()))
    }
}

impl fmt::Debug for InternalKeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}@{}", self.user_key(), self.seq())
    }
}

/// Owned internal key.
#[derive(Clone, PartialEq, Eq)]
pub struct InternalKey(Box<[u8]>);

impl InternalKey {
    /// Builds the internal key of `(key, seq)`.
    pub fn new(key: &[u8], seq: SeqNo) -> Self {
        let mut bytes = Vec::with_capacity(key.len() + SEQ_SUFFIX_LEN);
        bytes.extend_from_slice(key);
        bytes.extend_from_slice(&seq.to_be_bytes());
        InternalKey(bytes.into_boxed_slice())
    }

    /// Bytes of heap memory held by this key.
    pub fn heap_bytes(&self) -> usize {
        self.0.len()
    }
}

impl std::ops::Deref for InternalKey {
    type Target = InternalKeyRef;
    fn deref(&self) -> &InternalKeyRef {
        InternalKeyRef::from_bytes(&self.0)
    }
}

impl Borrow<InternalKeyRef> for InternalKey {
    fn borrow(&self) -> &InternalKeyRef {
        self
    }
}

impl PartialOrd for InternalKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for InternalKey {
    fn cmp(&self, other: &Self) -> Ordering {
        (**self).cmp(&**other)
    }
}

impl fmt::Debug for InternalKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

/// Calls `f` with the borrowed internal key of `(key, seq)`, built on the stack when short.
#[inline]
pub fn with_internal_key<R>(key: &[u8], seq: SeqNo, f: impl FnOnce(&InternalKeyRef) -> R) -> R {
    const STACK: usize = 120;
    if key.len() + SEQ_SUFFIX_LEN <= STACK {
        let mut buf = [0u8; STACK];
        buf[..key.len()].copy_from_slice(key);
        buf[key.len()..key.len() + SEQ_SUFFIX_LEN].copy_from_slice(&seq.to_be_bytes());
        f(InternalKeyRef::from_bytes(
            &buf[..key.len() + SEQ_SUFFIX_LEN],
        ))
    } else {
        let owned = InternalKey::new(key, seq);
        f(&owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_key_ascending_then_seq_descending() {
        let mut keys = [
            InternalKey::new(b"b", 1),
            InternalKey::new(b"a", 1),
            InternalKey::new(b"ab", 9),
            InternalKey::new(b"a", 5),
            InternalKey::new(b"", 3),
        ];
        keys.sort();
        let got: Vec<(&[u8], u64)> = keys.iter().map(|k| (k.user_key(), k.seq())).collect();
        assert_eq!(
            got,
            vec![
                (b"".as_ref(), 3),
                (b"a".as_ref(), 5),
                (b"a".as_ref(), 1),
                (b"ab".as_ref(), 9),
                (b"b".as_ref(), 1)
            ]
        );
    }

    #[test]
    fn stack_and_heap_lookups_agree() {
        let long = vec![7u8; 500];
        with_internal_key(&long, 42, |k| {
            assert_eq!(k.user_key(), long.as_slice());
            assert_eq!(k.seq(), 42);
        });
        with_internal_key(b"short", u64::MAX, |k| {
            assert_eq!(k.user_key(), b"short");
            assert_eq!(k.seq(), u64::MAX);
        });
    }
}
