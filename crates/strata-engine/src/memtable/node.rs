//! Arena nodes: one entry stored inline in an [`Arena`], shared by the lock-free variants.
//!
//! ## Layout
//!
//! ```text
//! offset 0   seq       u64      sequence number
//!        8   key_len   u32
//!       12   value_len u32
//!       16   op        u8       OpKind
//!       17   links     u8       number of link slots that follow the header
//!       20   aux       u32      atomic, free for the owning structure (a rotating node's level)
//!       24   links     links x AtomicPtr<Node>   (tower, bucket list `next`, wheel pointer)
//!            key       key_len bytes
//!            value     value_len bytes
//! ```
//!
//! One allocation per entry and no per-node heap allocation: key and value bytes live right
//! after the links (as in RocksDB's `InlineSkipList`), so a search touches one cache line for
//! the header, the first link and the start of the key.
//!
//! ## Invariants
//!
//! * Header, key and value are written once, before the node is published by a release store
//!   or compare-and-swap of some link that points to it; afterwards only the atomics change.
//! * A [`NodeRef`] is only created from a pointer returned by [`NodeRef::alloc`] (or loaded from
//!   a link), so it carries the provenance of the whole arena block; it must not outlive the
//!   arena, which its owner guarantees by tying the lifetime to a borrow of the memtable.

use std::cmp::Ordering;
use std::marker::PhantomData;
use std::mem::{align_of, size_of};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicPtr, AtomicU32};

use super::EntryRef;
use super::arena::{ALIGN, Arena};
use crate::types::{OpKind, SeqNo};

/// The fixed header of every arena node (see the module docs for the full layout).
#[repr(C)]
pub struct Node {
    seq: SeqNo,
    key_len: u32,
    value_len: u32,
    op: OpKind,
    links: u8,
    aux: AtomicU32,
}

/// Bytes of the header; link slots start right after it.
pub const HEADER_BYTES: usize = size_of::<Node>();
/// Bytes of one link slot.
pub const LINK_BYTES: usize = size_of::<AtomicPtr<Node>>();

const _: () = assert!(HEADER_BYTES == 24);
const _: () = assert!(HEADER_BYTES.is_multiple_of(ALIGN) && align_of::<Node>() <= ALIGN);
const _: () = assert!(align_of::<AtomicPtr<Node>>() <= ALIGN);

/// A shared reference to a node living in an arena that outlives `'a`.
#[derive(Clone, Copy)]
pub struct NodeRef<'a> {
    ptr: NonNull<Node>,
    _arena: PhantomData<&'a Arena>,
}

impl std::fmt::Debug for NodeRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}@{}", self.key(), self.seq())
    }
}

impl PartialEq for NodeRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.ptr == other.ptr
    }
}
impl Eq for NodeRef<'_> {}

/// Bytes a node with `links` link slots takes for this entry, before arena rounding.
pub fn node_bytes(links: usize, key_len: usize, value_len: usize) -> usize {
    HEADER_BYTES + links * LINK_BYTES + key_len + value_len
}

impl<'a> NodeRef<'a> {
    /// Allocates and fills a node with `links` null link slots.
    ///
    /// Panics if a key or value is 4 GiB or larger (the engine's limits are far below).
    pub fn alloc(
        arena: &'a Arena,
        links: usize,
        key: &[u8],
        seq: SeqNo,
        op: OpKind,
        value: &[u8],
    ) -> NodeRef<'a> {
        let links_u8 = u8::try_from(links).expect("at most 255 link slots");
        let key_len = u32::try_from(key.len()).expect("memtable keys are below 4 GiB");
        let value_len = u32::try_from(value.len()).expect("memtable values are below 4 GiB");
        let raw = arena.alloc(node_bytes(links, key.len(), value.len()));
        let base = raw.as_ptr();
        // SAFETY: the arena returned `node_bytes(..)` writable, `ALIGN`-aligned bytes owned by
        // this call alone; the header, the link slots and the key/value bytes are written
        // inside that range (the offsets add up to exactly `node_bytes`).
        unsafe {
            base.cast::<Node>().write(Node {
                seq,
                key_len,
                value_len,
                op,
                links: links_u8,
                aux: AtomicU32::new(0),
            });
            let slots = base.add(HEADER_BYTES).cast::<AtomicPtr<Node>>();
            for i in 0..links {
                slots.add(i).write(AtomicPtr::new(ptr::null_mut()));
            }
            let data = base.add(HEADER_BYTES + links * LINK_BYTES);
            ptr::copy_nonoverlapping(key.as_ptr(), data, key.len());
            ptr::copy_nonoverlapping(value.as_ptr(), data.add(key.len()), value.len());
        }
        NodeRef {
            ptr: raw.cast(),
            _arena: PhantomData,
        }
    }

    /// Wraps a non-null pointer loaded from a link.
    ///
    /// # Safety
    /// `ptr` must come from [`NodeRef::alloc`] on an arena that outlives `'a` (directly or
    /// through a link that was written with such a pointer).
    #[inline]
    pub unsafe fn from_ptr(ptr: NonNull<Node>) -> NodeRef<'a> {
        NodeRef {
            ptr,
            _arena: PhantomData,
        }
    }

    /// Wraps a pointer loaded from a link; `None` for null.
    ///
    /// # Safety
    /// As [`NodeRef::from_ptr`].
    #[inline]
    pub unsafe fn from_raw(ptr: *mut Node) -> Option<NodeRef<'a>> {
        // SAFETY: forwarded to the caller.
        NonNull::new(ptr).map(|p| unsafe { NodeRef::from_ptr(p) })
    }

    /// The raw pointer, for storing in a link.
    #[inline]
    pub fn as_ptr(self) -> *mut Node {
        self.ptr.as_ptr()
    }

    #[inline]
    fn header(self) -> &'a Node {
        // SAFETY: the header was initialised before the node was published, lives as long as
        // the arena (`'a`), and is only mutated through its atomic field.
        unsafe { self.ptr.as_ref() }
    }

    /// Link slot `i` (`i < links`).
    #[inline]
    pub fn link(self, i: usize) -> &'a AtomicPtr<Node> {
        debug_assert!(
            i < usize::from(self.header().links),
            "link {i} out of range"
        );
        // SAFETY: slot `i` lies inside this node's allocation (checked above in debug builds;
        // callers only use slots they allocated), was initialised in `alloc`, and the pointer
        // keeps the provenance of the arena block.
        unsafe {
            &*self
                .ptr
                .as_ptr()
                .cast::<u8>()
                .add(HEADER_BYTES + i * LINK_BYTES)
                .cast::<AtomicPtr<Node>>()
        }
    }

    /// The auxiliary atomic word (meaning chosen by the owning structure).
    #[inline]
    pub fn aux(self) -> &'a AtomicU32 {
        &self.header().aux
    }

    /// Number of link slots.
    #[inline]
    pub fn links(self) -> usize {
        usize::from(self.header().links)
    }

    #[inline]
    fn data(self) -> *const u8 {
        // SAFETY: the data starts right after the link slots inside this node's allocation.
        unsafe {
            self.ptr
                .as_ptr()
                .cast::<u8>()
                .add(HEADER_BYTES + self.links() * LINK_BYTES)
        }
    }

    /// The user key.
    #[inline]
    pub fn key(self) -> &'a [u8] {
        let len = self.header().key_len as usize;
        // SAFETY: `alloc` copied `key_len` bytes here before publication; they never change
        // and live as long as the arena.
        unsafe { std::slice::from_raw_parts(self.data(), len) }
    }

    /// The value bytes.
    #[inline]
    pub fn value(self) -> &'a [u8] {
        let header = self.header();
        // SAFETY: as for `key`; the value follows the key.
        unsafe {
            std::slice::from_raw_parts(
                self.data().add(header.key_len as usize),
                header.value_len as usize,
            )
        }
    }

    /// The sequence number.
    #[inline]
    pub fn seq(self) -> SeqNo {
        self.header().seq
    }

    /// Put or delete.
    #[inline]
    pub fn op(self) -> OpKind {
        self.header().op
    }

    /// Internal-key order of this node against `(key, seq)`: key ascending, then sequence
    /// number descending.
    #[inline]
    pub fn cmp_to(self, key: &[u8], seq: SeqNo) -> Ordering {
        self.key()
            .cmp(key)
            .then_with(|| seq.cmp(&self.header().seq))
    }

    /// True when this node sorts strictly before `(key, seq)`.
    #[inline]
    pub fn is_before(self, key: &[u8], seq: SeqNo) -> bool {
        self.cmp_to(key, seq) == Ordering::Less
    }

    /// The entry as the memtable trait hands it out.
    #[inline]
    pub fn entry(self) -> EntryRef<'a> {
        EntryRef {
            key: self.key(),
            seq: self.seq(),
            op: self.op(),
            value: self.value(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_links_start_null() {
        let arena = Arena::new();
        let node = NodeRef::alloc(&arena, 3, b"key", 42, OpKind::Delete, b"value!");
        assert_eq!(node.key(), b"key");
        assert_eq!(node.value(), b"value!");
        assert_eq!(node.seq(), 42);
        assert_eq!(node.op(), OpKind::Delete);
        assert_eq!(node.links(), 3);
        for i in 0..3 {
            assert!(
                node.link(i)
                    .load(std::sync::atomic::Ordering::Relaxed)
                    .is_null()
            );
        }
        assert_eq!(node.cmp_to(b"key", 41), Ordering::Less);
        assert_eq!(node.cmp_to(b"key", 43), Ordering::Greater);
        assert_eq!(node.cmp_to(b"kez", 0), Ordering::Less);
        let empty = NodeRef::alloc(&arena, 0, b"", 1, OpKind::Put, b"");
        assert!(empty.key().is_empty() && empty.value().is_empty());
    }
}
