//! `trie`: a byte-wise adaptive radix trie (ART-style node sizes, path compression) with
//! ordered iteration and prefix scans.
//!
//! * Structure: nodes live in one vector and refer to their children by index. A node holds
//!   a compressed path (the bytes after the branching byte that leads to it), its children in
//!   one of four layouts chosen by fan-out — `N4` and `N16` (sorted byte arrays), `N48` (a
//!   256-entry byte index into 48 slots), `N256` (a direct array) — growing to the next layout
//!   when full, and the versions of the key that ends at the node. A key's bytes are the path
//!   from the root, so keys sharing prefixes store them once.
//! * Versions: every version of a key is kept in its node, sorted by sequence number
//!   (ascending in memory; appending is O(1) since sequence numbers grow); reads and visits
//!   walk them from the newest, which gives internal order (key ascending, sequence
//!   descending). Values are stored in a [`ChunkedBytes`] store.
//! * Complexity: insert and get O(k) for a k-byte key (at most one node per key byte, fewer
//!   with path compression; child lookup O(1) in `N48`/`N256`, a scan of at most 16 bytes
//!   otherwise), independent of the number of entries; ordered iteration is a depth-first walk
//!   with an explicit stack (no recursion, so deep tries cannot overflow the call stack),
//!   O(1) amortised per entry; a seek is O(k); [`TrieMemtable::visit_prefix`] walks only the
//!   subtree of a prefix.
//! * Concurrency: one `RwLock`; inserts take it exclusively, reads and visits share it (a
//!   visit holds it while its visitor runs).
//! * Memory: node structs, compressed paths, child arrays (the size of each layout), version
//!   slots and value bytes; `memory_bytes` adds what every insert allocates.

use std::mem::size_of;

use parking_lot::RwLock;

use super::chunked::{ChunkedBytes, Loc};
use super::{EntryRef, Memtable, MemtableEntry, MemtableKind};
use crate::types::{OpKind, SeqNo};

/// Index of the root node; never anyone's child, so `0` also means "no child".
const ROOT: u32 = 0;
const NO_CHILD: u32 = 0;

/// One stored version of the key ending at a node.
#[derive(Debug, Clone, Copy)]
struct Version {
    seq: SeqNo,
    op: OpKind,
    value: Loc,
}

/// Children with up to `N` entries, sorted by byte.
#[derive(Debug)]
struct Sorted<const N: usize> {
    len: u8,
    bytes: [u8; N],
    kids: [u32; N],
}

impl<const N: usize> Sorted<N> {
    fn new() -> Self {
        Sorted {
            len: 0,
            bytes: [0; N],
            kids: [NO_CHILD; N],
        }
    }

    fn len(&self) -> usize {
        usize::from(self.len)
    }

    fn get(&self, byte: u8) -> u32 {
        let len = self.len();
        match self.bytes[..len].binary_search(&byte) {
            Ok(i) => self.kids[i],
            Err(_) => NO_CHILD,
        }
    }

    fn insert(&mut self, byte: u8, kid: u32) {
        let len = self.len();
        debug_assert!(len < N);
        let at = self.bytes[..len].partition_point(|b| *b < byte);
        debug_assert!(at == len || self.bytes[at] != byte, "child {byte} exists");
        self.bytes.copy_within(at..len, at + 1);
        self.kids.copy_within(at..len, at + 1);
        self.bytes[at] = byte;
        self.kids[at] = kid;
        self.len += 1;
    }

    fn iter(&self) -> impl DoubleEndedIterator<Item = (u8, u32)> + '_ {
        let len = self.len();
        self.bytes[..len]
            .iter()
            .copied()
            .zip(self.kids[..len].iter().copied())
    }
}

/// Children with up to 48 entries: a byte-indexed table of slot numbers (0 = none).
#[derive(Debug)]
struct Indexed48 {
    len: u8,
    slot_of: [u8; 256],
    kids: [u32; 48],
}

/// The adaptive child layouts.
#[derive(Debug, Default)]
enum Children {
    #[default]
    Empty,
    N4(Box<Sorted<4>>),
    N16(Box<Sorted<16>>),
    N48(Box<Indexed48>),
    N256(Box<[u32; 256]>),
}

impl Children {
    fn get(&self, byte: u8) -> u32 {
        match self {
            Children::Empty => NO_CHILD,
            Children::N4(n) => n.get(byte),
            Children::N16(n) => n.get(byte),
            Children::N48(n) => match n.slot_of[usize::from(byte)] {
                0 => NO_CHILD,
                slot => n.kids[usize::from(slot) - 1],
            },
            Children::N256(n) => n[usize::from(byte)],
        }
    }

    /// Adds a child, growing the layout when full; returns the bytes newly allocated.
    fn insert(&mut self, byte: u8, kid: u32) -> usize {
        debug_assert!(kid != NO_CHILD);
        let mut grown = 0;
        let full = match self {
            Children::Empty => true,
            Children::N4(n) => n.len() == 4,
            Children::N16(n) => n.len() == 16,
            Children::N48(n) => n.len == 48,
            Children::N256(_) => false,
        };
        if full {
            grown = self.grow();
        }
        match self {
            Children::Empty => unreachable!("grow replaces an empty layout"),
            Children::N4(n) => n.insert(byte, kid),
            Children::N16(n) => n.insert(byte, kid),
            Children::N48(n) => {
                debug_assert_eq!(n.slot_of[usize::from(byte)], 0);
                n.kids[usize::from(n.len)] = kid;
                n.len += 1;
                n.slot_of[usize::from(byte)] = n.len;
            }
            Children::N256(n) => {
                debug_assert_eq!(n[usize::from(byte)], NO_CHILD);
                n[usize::from(byte)] = kid;
            }
        }
        grown
    }

    /// Moves the children into the next larger layout; returns its size in bytes.
    fn grow(&mut self) -> usize {
        let old = std::mem::take(self);
        let (next, bytes) = match old {
            Children::Empty => (
                Children::N4(Box::new(Sorted::new())),
                size_of::<Sorted<4>>(),
            ),
            Children::N4(n) => {
                let mut next = Box::new(Sorted::<16>::new());
                for (b, k) in n.iter() {
                    next.insert(b, k);
                }
                (Children::N16(next), size_of::<Sorted<16>>())
            }
            Children::N16(n) => {
                let mut next = Box::new(Indexed48 {
                    len: 0,
                    slot_of: [0; 256],
                    kids: [NO_CHILD; 48],
                });
                for (b, k) in n.iter() {
                    next.kids[usize::from(next.len)] = k;
                    next.len += 1;
                    next.slot_of[usize::from(b)] = next.len;
                }
                (Children::N48(next), size_of::<Indexed48>())
            }
            Children::N48(n) => {
                let mut next = Box::new([NO_CHILD; 256]);
                for (b, slot) in n.slot_of.iter().enumerate() {
                    if *slot != 0 {
                        next[b] = n.kids[usize::from(*slot) - 1];
                    }
                }
                (Children::N256(next), size_of::<[u32; 256]>())
            }
            Children::N256(n) => (Children::N256(n), 0),
        };
        *self = next;
        bytes
    }

    /// Pushes `(byte, child)` for every child whose byte is greater than `after` (all when
    /// `None`), in descending byte order, so that popping yields ascending order.
    fn push_desc(&self, after: Option<u8>, out: &mut impl FnMut(u8, u32)) {
        let keep = |b: u8| after.is_none_or(|a| b > a);
        match self {
            Children::Empty => {}
            Children::N4(n) => n
                .iter()
                .rev()
                .filter(|(b, _)| keep(*b))
                .for_each(|(b, k)| out(b, k)),
            Children::N16(n) => n
                .iter()
                .rev()
                .filter(|(b, _)| keep(*b))
                .for_each(|(b, k)| out(b, k)),
            Children::N48(n) => {
                for b in (0..=255u8).rev().filter(|b| keep(*b)) {
                    let slot = n.slot_of[usize::from(b)];
                    if slot != 0 {
                        out(b, n.kids[usize::from(slot) - 1]);
                    }
                }
            }
            Children::N256(n) => {
                for b in (0..=255u8).rev().filter(|b| keep(*b)) {
                    if n[usize::from(b)] != NO_CHILD {
                        out(b, n[usize::from(b)]);
                    }
                }
            }
        }
    }
}

/// One trie node.
#[derive(Debug, Default)]
struct Node {
    /// Compressed path: key bytes after the branching byte that leads here.
    path: Box<[u8]>,
    children: Children,
    /// Versions of the key ending here, ascending by sequence number.
    versions: Vec<Version>,
}

/// A pending subtree of the ordered walk: `node`, reached by appending `byte` (none for the
/// root) to the first `parent_len` bytes of the key buffer.
#[derive(Debug, Clone, Copy)]
struct Frame {
    node: u32,
    parent_len: usize,
    byte: Option<u8>,
}

#[derive(Debug)]
struct Trie {
    nodes: Vec<Node>,
    values: ChunkedBytes,
    len: usize,
    memory_bytes: usize,
}

fn common_prefix_len(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl Trie {
    fn new() -> Self {
        Trie {
            nodes: vec![Node::default()],
            values: ChunkedBytes::new(),
            len: 0,
            memory_bytes: size_of::<Node>(),
        }
    }

    fn push_node(&mut self, node: Node) -> u32 {
        let id = u32::try_from(self.nodes.len()).expect("fewer than 2^32 trie nodes");
        self.memory_bytes += size_of::<Node>() + node.path.len();
        self.nodes.push(node);
        id
    }

    fn insert(&mut self, key: &[u8], seq: SeqNo, op: OpKind, value: &[u8]) {
        let used_before = self.values.used_bytes();
        let version = Version {
            seq,
            op,
            value: self.values.push_value(value),
        };
        self.memory_bytes += self.values.used_bytes() - used_before;
        let mut cur = ROOT;
        let mut depth = 0;
        loop {
            let path_len = self.nodes[cur as usize].path.len();
            let common = common_prefix_len(&self.nodes[cur as usize].path, &key[depth..]);
            if common < path_len {
                self.split(cur, common);
            }
            depth += common;
            if depth == key.len() {
                self.add_version(cur, version);
                break;
            }
            let byte = key[depth];
            let child = self.nodes[cur as usize].children.get(byte);
            if child != NO_CHILD {
                cur = child;
                depth += 1;
                continue;
            }
            let leaf = self.push_node(Node {
                path: key[depth + 1..].into(),
                children: Children::Empty,
                versions: Vec::new(),
            });
            self.add_version(leaf, version);
            self.memory_bytes += self.nodes[cur as usize].children.insert(byte, leaf);
            break;
        }
        self.len += 1;
    }

    /// Splits `cur`'s path after `at` bytes: a new child takes the rest of the path, the
    /// children and the versions.
    fn split(&mut self, cur: u32, at: usize) {
        let node = &mut self.nodes[cur as usize];
        let path = std::mem::take(&mut node.path);
        let lower = Node {
            path: path[at + 1..].into(),
            children: std::mem::take(&mut node.children),
            versions: std::mem::take(&mut node.versions),
        };
        node.path = path[..at].into();
        let lower_id = self.push_node(lower);
        self.memory_bytes += self.nodes[cur as usize].children.insert(path[at], lower_id);
    }

    fn add_version(&mut self, node: u32, version: Version) {
        let versions = &mut self.nodes[node as usize].versions;
        if versions.last().is_none_or(|last| last.seq < version.seq) {
            versions.push(version);
        } else {
            let at = versions.partition_point(|v| v.seq < version.seq);
            debug_assert!(
                versions.get(at).is_none_or(|v| v.seq != version.seq),
                "(key, seq) inserted twice"
            );
            versions.insert(at, version);
        }
        // One slot per version; vector slack is not counted.
        self.memory_bytes += size_of::<Version>();
    }

    /// The node whose key is exactly `key`.
    fn find(&self, key: &[u8]) -> Option<&Node> {
        let mut cur = ROOT;
        let mut depth = 0;
        loop {
            let node = &self.nodes[cur as usize];
            if !key[depth..].starts_with(&node.path) {
                return None;
            }
            depth += node.path.len();
            if depth == key.len() {
                return Some(node);
            }
            let child = node.children.get(key[depth]);
            if child == NO_CHILD {
                return None;
            }
            cur = child;
            depth += 1;
        }
    }

    fn entry<'a>(&'a self, key: &'a [u8], version: &Version) -> EntryRef<'a> {
        EntryRef {
            key,
            seq: version.seq,
            op: version.op,
            value: self.values.value(version.value),
        }
    }

    /// Walks pending subtrees in order; false when the visitor stopped.
    fn drain(
        &self,
        stack: &mut Vec<Frame>,
        key: &mut Vec<u8>,
        visitor: &mut dyn FnMut(EntryRef<'_>) -> bool,
    ) -> bool {
        while let Some(frame) = stack.pop() {
            key.truncate(frame.parent_len);
            key.extend(frame.byte);
            let node = &self.nodes[frame.node as usize];
            key.extend_from_slice(&node.path);
            for version in node.versions.iter().rev() {
                if !visitor(self.entry(key, version)) {
                    return false;
                }
            }
            let parent_len = key.len();
            node.children.push_desc(None, &mut |byte, child| {
                stack.push(Frame {
                    node: child,
                    parent_len,
                    byte: Some(byte),
                });
            });
        }
        true
    }

    fn visit_from(&self, start: &[u8], seq: SeqNo, visitor: &mut dyn FnMut(EntryRef<'_>) -> bool) {
        let mut stack: Vec<Frame> = Vec::new();
        let mut key: Vec<u8> = Vec::with_capacity(start.len() + 16);
        let mut frame = Frame {
            node: ROOT,
            parent_len: 0,
            byte: None,
        };
        let mut depth = 0;
        loop {
            let node = &self.nodes[frame.node as usize];
            let rest = &start[depth..];
            let common = common_prefix_len(&node.path, rest);
            if common < node.path.len() {
                // The start key ends inside this path, or differs from it: the whole subtree
                // sorts after the start (then walk it) or before it (then skip it).
                if common == rest.len() || node.path[common] > rest[common] {
                    stack.push(frame);
                }
                break;
            }
            key.extend_from_slice(&node.path);
            depth += common;
            let parent_len = key.len();
            if depth == start.len() {
                for version in node.versions.iter().rev().filter(|v| v.seq <= seq) {
                    if !visitor(self.entry(&key, version)) {
                        return;
                    }
                }
                node.children.push_desc(None, &mut |byte, child| {
                    stack.push(Frame {
                        node: child,
                        parent_len,
                        byte: Some(byte),
                    });
                });
                break;
            }
            let byte = start[depth];
            node.children.push_desc(Some(byte), &mut |b, child| {
                stack.push(Frame {
                    node: child,
                    parent_len,
                    byte: Some(b),
                });
            });
            let child = node.children.get(byte);
            if child == NO_CHILD {
                break;
            }
            frame = Frame {
                node: child,
                parent_len,
                byte: Some(byte),
            };
            key.push(byte);
            depth += 1;
        }
        self.drain(&mut stack, &mut key, visitor);
    }

    fn visit_prefix(&self, prefix: &[u8], visitor: &mut dyn FnMut(EntryRef<'_>) -> bool) {
        let mut key: Vec<u8> = Vec::with_capacity(prefix.len() + 16);
        let mut frame = Frame {
            node: ROOT,
            parent_len: 0,
            byte: None,
        };
        let mut depth = 0;
        loop {
            let node = &self.nodes[frame.node as usize];
            let rest = &prefix[depth..];
            if node.path.starts_with(rest) {
                // Every key of this subtree starts with the prefix.
                break;
            }
            if !rest.starts_with(&node.path) {
                return;
            }
            key.extend_from_slice(&node.path);
            depth += node.path.len();
            let byte = prefix[depth];
            let child = node.children.get(byte);
            if child == NO_CHILD {
                return;
            }
            frame = Frame {
                node: child,
                parent_len: key.len(),
                byte: Some(byte),
            };
            key.push(byte);
            depth += 1;
        }
        self.drain(&mut vec![frame], &mut key, visitor);
    }
}

/// The `trie` memtable (see the module docs).
#[derive(Debug)]
pub struct TrieMemtable {
    trie: RwLock<Trie>,
}

impl Default for TrieMemtable {
    fn default() -> Self {
        Self::new()
    }
}

impl TrieMemtable {
    /// An empty memtable.
    pub fn new() -> Self {
        TrieMemtable {
            trie: RwLock::new(Trie::new()),
        }
    }

    /// Visits, in internal order, every entry whose key starts with `prefix`, until `visitor`
    /// returns `false`. Only the prefix's subtree is walked.
    pub fn visit_prefix(&self, prefix: &[u8], visitor: &mut dyn FnMut(EntryRef<'_>) -> bool) {
        self.trie.read().visit_prefix(prefix, visitor);
    }

    /// Number of trie nodes (for tests and diagnostics).
    pub fn node_count(&self) -> usize {
        self.trie.read().nodes.len()
    }
}

impl Memtable for TrieMemtable {
    fn kind(&self) -> MemtableKind {
        MemtableKind::Trie
    }

    fn insert(&self, key: &[u8], seq: SeqNo, op: OpKind, value: &[u8]) {
        self.trie.write().insert(key, seq, op, value);
    }

    fn get(&self, key: &[u8], read_seq: SeqNo) -> Option<MemtableEntry> {
        let trie = self.trie.read();
        let node = trie.find(key)?;
        let newer = node.versions.partition_point(|v| v.seq <= read_seq);
        let version = node.versions[..newer].last()?;
        Some(MemtableEntry {
            seq: version.seq,
            op: version.op,
            value: trie.values.value(version.value).to_vec(),
        })
    }

    fn visit_from(&self, key: &[u8], seq: SeqNo, visitor: &mut dyn FnMut(EntryRef<'_>) -> bool) {
        self.trie.read().visit_from(key, seq, visitor);
    }

    fn memory_bytes(&self) -> usize {
        self.trie.read().memory_bytes
    }

    fn len(&self) -> usize {
        self.trie.read().len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys_of(table: &TrieMemtable, prefix: &[u8]) -> Vec<(Vec<u8>, SeqNo)> {
        let mut out = Vec::new();
        table.visit_prefix(prefix, &mut |e| {
            out.push((e.key.to_vec(), e.seq));
            true
        });
        out
    }

    #[test]
    fn prefix_scans_walk_only_their_subtree() {
        let table = TrieMemtable::new();
        let keys: [&[u8]; 8] = [
            b"app", b"apple", b"apply", b"ape", b"b", b"ap", b"apple", b"",
        ];
        for (i, key) in keys.iter().enumerate() {
            table.insert(key, i as SeqNo + 1, OpKind::Put, b"v");
        }
        let names = |v: Vec<(Vec<u8>, SeqNo)>| -> Vec<(String, SeqNo)> {
            v.into_iter()
                .map(|(k, s)| (String::from_utf8(k).unwrap(), s))
                .collect()
        };
        assert_eq!(
            names(keys_of(&table, b"appl")),
            vec![
                ("apple".into(), 7),
                ("apple".into(), 2),
                ("apply".into(), 3)
            ]
        );
        assert_eq!(
            names(keys_of(&table, b"ap")),
            vec![
                ("ap".into(), 6),
                ("ape".into(), 4),
                ("app".into(), 1),
                ("apple".into(), 7),
                ("apple".into(), 2),
                ("apply".into(), 3)
            ]
        );
        assert_eq!(keys_of(&table, b"").len(), 8);
        assert!(keys_of(&table, b"apx").is_empty());
        assert!(keys_of(&table, b"applesauce").is_empty());
        assert!(keys_of(&table, b"c").is_empty());
    }

    #[test]
    fn nodes_grow_through_every_layout() {
        let table = TrieMemtable::new();
        for (i, b) in (0..=255u8).rev().enumerate() {
            table.insert(&[b'x', b], i as SeqNo + 1, OpKind::Put, b"");
            let mut count = 0;
            let mut last = None;
            table.visit_from(b"", SeqNo::MAX, &mut |e| {
                assert!(last.as_deref().is_none_or(|l: &[u8]| l < e.key));
                last = Some(e.key.to_vec());
                count += 1;
                true
            });
            assert_eq!(count, i + 1);
        }
        // Root, the "x" branch node, 256 leaves.
        assert_eq!(table.node_count(), 258);
    }

    #[test]
    fn deep_chains_do_not_recurse() {
        let table = TrieMemtable::new();
        let mut key = Vec::new();
        for i in 0..2_000u64 {
            key.push(b'a');
            table.insert(&key, i + 1, OpKind::Put, b"");
        }
        let mut count = 0;
        table.visit_from(b"", SeqNo::MAX, &mut |_| {
            count += 1;
            true
        });
        assert_eq!(count, 2_000);
        drop(table);
    }
}
