//! Memtable benchmark: the memtable workloads of `shared/BENCHMARKS.md` for all ten
//! `MemtableKind`s plus two reference lines — the bare `BTreeMap` and crossbeam `SkipMap`
//! holding the same internal keys and values, without a lock or the `Memtable` trait — in one
//! run, so ratios come from the same machine state.
//!
//! ```text
//! cargo bench --bench memtables                       # sizes 10k and 100k (a few minutes)
//! cargo bench --bench memtables -- 10k 100k 1m        # sizes as arguments
//! STRATA_BENCH_SIZES=1m STRATA_BENCH_REPEATS=5 cargo bench --bench memtables
//! STRATA_BENCH_ONLY=skiplist,vector cargo bench --bench memtables
//! ```
//!
//! Workloads per variant and size N (16-byte keys `format!("{:016}", 2j)`, 100-byte values, as
//! in BENCHMARKS.md):
//! * insert seq / insert rand: N inserts into a fresh table in key order / in the Fisher-Yates
//!   order of `Rng(1)`, followed by one `get`, so that `vector` pays its deferred sort inside
//!   the figure (a bulk load is only done when the table can be read);
//! * get hit / get miss: min(N, 200k) gets of present keys (`Rng(2)`) / absent keys (`Rng(3)`);
//! * iterate: one full ordered pass; scan 100: 10,000 scans of 100 entries from random starts
//!   (`Rng(4)`);
//! * bytes/entry: live heap bytes after the random load divided by N, from a counting global
//!   allocator (measured, not estimated), beside what the table itself accounts
//!   (`memory_bytes`);
//! * insert 2 threads: the random order split between two threads inserting into one table,
//!   for the variants that are concurrent (and `SkipMap`).
//!
//! Timings are medians of `STRATA_BENCH_REPEATS` (default 3) runs. `linked_list` (O(n) insert)
//! runs only up to 10k entries. The hash variants use a 14-byte prefix (50 keys per prefix)
//! and 65,536 buckets. Writes `benches/results/memtables.md` (the tables) and
//! `benches/results/memtables.svg` (a chart of the largest size); `STRATA_BENCH_RESULTS`
//! names another directory.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use plotters::prelude::*;
use strata_engine::memtable::hash_linked_list::HashLinkedListMemtable;
use strata_engine::memtable::hash_skiplist::HashSkipListMemtable;
use strata_engine::memtable::internal_key::{InternalKey, InternalKeyRef, with_internal_key};
use strata_engine::memtable::skiplist::SkipMap;
use strata_engine::memtable::{EntryRef, Memtable, MemtableKind};
use strata_engine::types::{MAX_SEQ, OpKind};
// `splitmix64` of BENCHMARKS.md, shared with the `events` table function.
use strata_datafusion::functions::events::splitmix64;

// ---------------------------------------------------------------------------------------------
// Counting allocator: live heap bytes of the whole process.

struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the counter is a side
// effect only.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: forwarded with the caller's arguments.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live_bytes() -> isize {
    LIVE_BYTES.load(Ordering::SeqCst)
}

// ---------------------------------------------------------------------------------------------
// Data generators of BENCHMARKS.md.

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// `Rng(seed)`: its k-th output is `splitmix64(seed + k * GOLDEN)`.
struct Rng {
    seed: u64,
    k: u64,
}

impl Rng {
    fn new(seed: u64) -> Self {
        Rng { seed, k: 0 }
    }

    fn next(&mut self) -> u64 {
        let out = splitmix64(self.seed.wrapping_add(self.k.wrapping_mul(GOLDEN)));
        self.k += 1;
        out
    }

    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}

fn key(k: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(format!("{k:016}").as_bytes());
    out
}

fn value(k: u64) -> [u8; 100] {
    let mut rng = Rng::new(k);
    let mut out = [0u8; 100];
    for i in 0..7 {
        let bytes = rng.next().to_le_bytes();
        let n = if i == 6 { 2 } else { 8 };
        out[i * 8..i * 8 + n].copy_from_slice(&bytes[..n]);
    }
    let (head, tail) = out.split_at_mut(50);
    tail.copy_from_slice(head);
    out
}

/// The entries of one size: present key `j` is key number `2j`.
struct Data {
    n: usize,
    keys: Vec<[u8; 16]>,
    missing: Vec<[u8; 16]>,
    values: Vec<[u8; 100]>,
    random_order: Vec<usize>,
    hits: Vec<usize>,
    misses: Vec<usize>,
    scan_starts: Vec<usize>,
}

const GETS_MAX: usize = 200_000;
const SCANS: usize = 10_000;
const SCAN_LEN: usize = 100;

impl Data {
    fn new(n: usize) -> Self {
        let keys = (0..n as u64).map(|j| key(2 * j)).collect();
        let missing = (0..n as u64).map(|j| key(2 * j + 1)).collect();
        let values = (0..n as u64).map(|j| value(2 * j)).collect();
        let mut random_order: Vec<usize> = (0..n).collect();
        let mut rng = Rng::new(1);
        for i in (1..n).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            random_order.swap(i, j);
        }
        let draws = |seed: u64, count: usize| -> Vec<usize> {
            let mut rng = Rng::new(seed);
            (0..count).map(|_| rng.below(n as u64) as usize).collect()
        };
        Data {
            n,
            keys,
            missing,
            values,
            random_order,
            hits: draws(2, n.min(GETS_MAX)),
            misses: draws(3, n.min(GETS_MAX)),
            scan_starts: draws(4, SCANS),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Subjects: the ten memtables and the two bare containers.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Subject {
    Kind(MemtableKind),
    BTreeMap,
    SkipMap,
}

const HASH_PREFIX_LEN: usize = 14;
const HASH_BUCKETS: usize = 65_536;
const LINKED_LIST_MAX: usize = 10_000;

impl Subject {
    fn all() -> Vec<Subject> {
        let mut all: Vec<Subject> = MemtableKind::ALL
            .iter()
            .map(|k| Subject::Kind(*k))
            .collect();
        all.push(Subject::BTreeMap);
        all.push(Subject::SkipMap);
        all
    }

    fn name(self) -> &'static str {
        match self {
            Subject::Kind(kind) => kind.name(),
            Subject::BTreeMap => "BTreeMap (ref)",
            Subject::SkipMap => "SkipMap (ref)",
        }
    }

    fn is_concurrent(self) -> bool {
        match self {
            Subject::Kind(kind) => kind.is_concurrent(),
            Subject::BTreeMap => false,
            Subject::SkipMap => true,
        }
    }

    fn runs_at(self, n: usize) -> bool {
        self != Subject::Kind(MemtableKind::LinkedList) || n <= LINKED_LIST_MAX
    }

    fn empty(self) -> Table {
        match self {
            Subject::Kind(MemtableKind::HashSkipList) => Table::Mem(Arc::new(
                HashSkipListMemtable::with_options(HASH_PREFIX_LEN, HASH_BUCKETS),
            )),
            Subject::Kind(MemtableKind::HashLinkedList) => Table::Mem(Arc::new(
                HashLinkedListMemtable::with_options(HASH_PREFIX_LEN, HASH_BUCKETS),
            )),
            Subject::Kind(kind) => Table::Mem(kind.create()),
            Subject::BTreeMap => Table::BTree(BTreeMap::new()),
            Subject::SkipMap => Table::Skip(SkipMap::new()),
        }
    }
}

type Value = (OpKind, Box<[u8]>);

// One table exists at a time; boxing the SkipMap would put an extra pointer chase in front of
// the reference line.
#[allow(clippy::large_enum_variant)]
enum Table {
    Mem(Arc<dyn Memtable>),
    BTree(BTreeMap<InternalKey, Value>),
    Skip(SkipMap<InternalKey, Value>),
}

impl Table {
    fn insert(&mut self, key: &[u8], seq: u64, value: &[u8]) {
        match self {
            Table::Mem(m) => m.insert(key, seq, OpKind::Put, value),
            Table::BTree(map) => {
                map.insert(InternalKey::new(key, seq), (OpKind::Put, value.into()));
            }
            Table::Skip(map) => {
                map.insert(InternalKey::new(key, seq), (OpKind::Put, value.into()));
            }
        }
    }

    /// Shared insert for the two-thread workload.
    fn insert_shared(&self, key: &[u8], seq: u64, value: &[u8]) {
        match self {
            Table::Mem(m) => m.insert(key, seq, OpKind::Put, value),
            Table::Skip(map) => {
                map.insert(InternalKey::new(key, seq), (OpKind::Put, value.into()));
            }
            Table::BTree(_) => unreachable!("BTreeMap is not concurrent"),
        }
    }

    /// Point read of the newest version; copies the value out like `Memtable::get`.
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        match self {
            Table::Mem(m) => m.get(key, MAX_SEQ).map(|e| e.value),
            Table::BTree(map) => with_internal_key(key, MAX_SEQ, |start| {
                let (k, (_, v)) = map
                    .range::<InternalKeyRef, _>((Bound::Included(start), Bound::Unbounded))
                    .next()?;
                (k.user_key() == key).then(|| v.to_vec())
            }),
            Table::Skip(map) => with_internal_key(key, MAX_SEQ, |start| {
                let entry = map.lower_bound(Bound::Included(start))?;
                (entry.key().user_key() == key).then(|| entry.value().1.to_vec())
            }),
        }
    }

    /// Visits up to `limit` entries from `key`; returns a checksum of what it saw.
    fn scan(&self, key: &[u8], limit: usize) -> usize {
        let mut seen = 0usize;
        let mut sum = 0usize;
        let mut visit = |k: &[u8], v: &[u8]| {
            sum = sum.wrapping_add(k.len() + v.len() + usize::from(k[k.len() - 1]));
            seen += 1;
            seen < limit
        };
        match self {
            Table::Mem(m) => {
                m.visit_from(key, MAX_SEQ, &mut |e: EntryRef<'_>| visit(e.key, e.value))
            }
            Table::BTree(map) => with_internal_key(key, MAX_SEQ, |start| {
                for (k, (_, v)) in
                    map.range::<InternalKeyRef, _>((Bound::Included(start), Bound::Unbounded))
                {
                    if !visit(k.user_key(), v) {
                        break;
                    }
                }
            }),
            Table::Skip(map) => with_internal_key(key, MAX_SEQ, |start| {
                for entry in
                    map.range::<InternalKeyRef, _>((Bound::Included(start), Bound::Unbounded))
                {
                    if !visit(entry.key().user_key(), &entry.value().1) {
                        break;
                    }
                }
            }),
        }
        black_box(seen);
        sum
    }

    fn accounted_bytes(&self) -> Option<usize> {
        match self {
            Table::Mem(m) => Some(m.memory_bytes()),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Measurements.

/// Figures of one subject at one size; rates are operations (or entries, or scans) per second.
#[derive(Default, Clone)]
struct Figures {
    insert_seq: Option<f64>,
    insert_rand: Option<f64>,
    get_hit: Option<f64>,
    get_miss: Option<f64>,
    iterate: Option<f64>,
    scan: Option<f64>,
    bytes_per_entry: Option<f64>,
    accounted_per_entry: Option<f64>,
    insert_2threads: Option<f64>,
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn build(subject: Subject, data: &Data, order: &[usize]) -> Table {
    let mut table = subject.empty();
    for (seq, &j) in order.iter().enumerate() {
        table.insert(&data.keys[j], seq as u64 + 1, &data.values[j]);
    }
    // Make the table readable (the vector sorts here).
    black_box(table.get(&data.keys[0]));
    table
}

/// Median rate of `ops` operations timed by `run` over `repeats` runs.
fn rate(repeats: usize, ops: usize, mut run: impl FnMut()) -> f64 {
    median(
        (0..repeats)
            .map(|_| {
                let start = Instant::now();
                run();
                ops as f64 / start.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn measure(subject: Subject, data: &Data, repeats: usize) -> Figures {
    let n = data.n;
    let sequential: Vec<usize> = (0..n).collect();
    let mut figures = Figures::default();

    let timed_build = |order: &[usize]| {
        median(
            (0..repeats)
                .map(|_| {
                    let start = Instant::now();
                    let table = build(subject, data, order);
                    let elapsed = start.elapsed().as_secs_f64();
                    drop(table);
                    n as f64 / elapsed
                })
                .collect(),
        )
    };
    figures.insert_seq = Some(timed_build(&sequential));
    figures.insert_rand = Some(timed_build(&data.random_order));

    let before = live_bytes();
    let table = build(subject, data, &data.random_order);
    let after = live_bytes();
    figures.bytes_per_entry = Some((after - before) as f64 / n as f64);
    figures.accounted_per_entry = table.accounted_bytes().map(|b| b as f64 / n as f64);

    figures.get_hit = Some(rate(repeats, data.hits.len(), || {
        for &j in &data.hits {
            assert!(black_box(table.get(&data.keys[j])).is_some());
        }
    }));
    figures.get_miss = Some(rate(repeats, data.misses.len(), || {
        for &j in &data.misses {
            assert!(black_box(table.get(&data.missing[j])).is_none());
        }
    }));
    figures.iterate = Some(rate(repeats, n, || {
        black_box(table.scan(b"", usize::MAX));
    }));
    figures.scan = Some(rate(repeats, data.scan_starts.len(), || {
        for &j in &data.scan_starts {
            black_box(table.scan(&data.keys[j], SCAN_LEN));
        }
    }));
    drop(table);

    if subject.is_concurrent() {
        figures.insert_2threads = Some(median(
            (0..repeats)
                .map(|_| {
                    let table = subject.empty();
                    let start = Instant::now();
                    std::thread::scope(|scope| {
                        for t in 0..2 {
                            let table = &table;
                            scope.spawn(move || {
                                for (seq, &j) in data.random_order.iter().enumerate() {
                                    if seq % 2 == t {
                                        table.insert_shared(
                                            &data.keys[j],
                                            seq as u64 + 1,
                                            &data.values[j],
                                        );
                                    }
                                }
                            });
                        }
                    });
                    let elapsed = start.elapsed().as_secs_f64();
                    assert!(table.get(&data.keys[n - 1]).is_some());
                    n as f64 / elapsed
                })
                .collect(),
        ));
    }
    figures
}

// ---------------------------------------------------------------------------------------------
// Output.

fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim().to_ascii_lowercase();
    let (digits, scale) = if let Some(d) = s.strip_suffix('k') {
        (d, 1_000)
    } else if let Some(d) = s.strip_suffix('m') {
        (d, 1_000_000)
    } else {
        (s.as_str(), 1)
    };
    digits
        .parse::<usize>()
        .ok()
        .map(|n| n * scale)
        .filter(|n| *n > 0)
}

fn size_label(n: usize) -> String {
    if n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n.is_multiple_of(1_000) {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}

fn mops(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{:.2}", v / 1e6))
}

fn table_markdown(n: usize, rows: &[(Subject, Figures)]) -> String {
    let mut out = format!(
        "### {} entries\n\n| variant | insert seq (M/s) | insert rand (M/s) | get hit (M/s) | \
         get miss (M/s) | iterate (M entries/s) | scan 100 (k scans/s) | bytes/entry \
         (measured) | bytes/entry (accounted) | insert 2 threads (M/s) |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        size_label(n)
    );
    for (subject, f) in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            subject.name(),
            mops(f.insert_seq),
            mops(f.insert_rand),
            mops(f.get_hit),
            mops(f.get_miss),
            mops(f.iterate),
            f.scan.map_or("—".into(), |v| format!("{:.1}", v / 1e3)),
            f.bytes_per_entry.map_or("—".into(), |v| format!("{v:.0}")),
            f.accounted_per_entry
                .map_or("—".into(), |v| format!("{v:.0}")),
            mops(f.insert_2threads),
        ));
    }
    out
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "n/a".into(),
    }
}

fn find(rows: &[(Subject, Figures)], subject: Subject) -> Figures {
    rows.iter()
        .find(|(s, _)| *s == subject)
        .map(|(_, f)| f.clone())
        .unwrap_or_default()
}

fn targets_markdown(n: usize, rows: &[(Subject, Figures)]) -> String {
    let skiplist = find(rows, Subject::Kind(MemtableKind::SkipList));
    let enhanced = find(rows, Subject::Kind(MemtableKind::EnhancedSkipList));
    let b_skiplist = find(rows, Subject::Kind(MemtableKind::BSkipList));
    let vector = find(rows, Subject::Kind(MemtableKind::Vector));
    let btree = find(rows, Subject::BTreeMap);
    let skipmap = find(rows, Subject::SkipMap);
    let fastest_other_load = rows
        .iter()
        .filter(|(s, _)| *s != Subject::Kind(MemtableKind::Vector))
        .filter_map(|(s, f)| f.insert_rand.map(|v| (s.name(), v)))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    let mut out = format!("Targets at {}:\n\n", size_label(n));
    out.push_str(&format!(
        "* skiplist random insert / BTreeMap: {} (target >= 0.80x)\n",
        ratio(skiplist.insert_rand, btree.insert_rand)
    ));
    out.push_str(&format!(
        "* enhanced_skiplist / SkipMap inserts: seq {}, rand {}, 2 threads {} (target >= 1x); \
         bytes/entry {:.0} vs {:.0} (target <=)\n",
        ratio(enhanced.insert_seq, skipmap.insert_seq),
        ratio(enhanced.insert_rand, skipmap.insert_rand),
        ratio(enhanced.insert_2threads, skipmap.insert_2threads),
        enhanced.bytes_per_entry.unwrap_or(f64::NAN),
        skipmap.bytes_per_entry.unwrap_or(f64::NAN),
    ));
    if let Some((name, best)) = fastest_other_load {
        out.push_str(&format!(
            "* vector random bulk load / fastest other ({name}): {} (target > 1x)\n",
            ratio(vector.insert_rand, Some(best))
        ));
    }
    out.push_str(&format!(
        "* b_skiplist / skiplist: iterate {}, scan 100 {} (target > 1x)\n",
        ratio(b_skiplist.iterate, skiplist.iterate),
        ratio(b_skiplist.scan, skiplist.scan)
    ));
    out
}

/// Horizontal bar charts of the largest size: one panel per figure.
fn draw_chart(
    path: &Path,
    n: usize,
    rows: &[(Subject, Figures)],
) -> Result<(), Box<dyn std::error::Error>> {
    type Pick = fn(&Figures) -> Option<f64>;
    let panels: [(&str, Pick, f64); 6] = [
        ("insert random (M ops/s)", |f| f.insert_rand, 1e6),
        ("insert sequential (M ops/s)", |f| f.insert_seq, 1e6),
        ("get hit (M ops/s)", |f| f.get_hit, 1e6),
        ("scan 100 keys (k scans/s)", |f| f.scan, 1e3),
        ("full iteration (M entries/s)", |f| f.iterate, 1e6),
        (
            "bytes per entry (measured; lower is better)",
            |f| f.bytes_per_entry,
            1.0,
        ),
    ];
    let root = SVGBackend::new(path, (1400, 1250)).into_drawing_area();
    root.fill(&WHITE)?;
    let (title, body) = root.split_vertically(50);
    title.draw(&Text::new(
        format!(
            "Strata memtables, {} entries (16 B keys, 100 B values)",
            size_label(n)
        ),
        (20, 15),
        ("sans-serif", 24).into_font(),
    ))?;
    let names: Vec<&str> = rows.iter().map(|(s, _)| s.name()).collect();
    for (area, (label, pick, scale)) in body.split_evenly((3, 2)).iter().zip(panels) {
        let values: Vec<Option<f64>> = rows
            .iter()
            .map(|(_, f)| pick(f).map(|v| v / scale))
            .collect();
        let max = values
            .iter()
            .flatten()
            .copied()
            .fold(0.0f64, f64::max)
            .max(1e-9)
            * 1.1;
        let mut chart = ChartBuilder::on(area)
            .caption(label, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(25)
            .y_label_area_size(140)
            .build_cartesian_2d(0f64..max, (0..names.len()).into_segmented())?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(names.len())
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                    names.get(*i).copied().unwrap_or("").to_string()
                }
                SegmentValue::Last => String::new(),
            })
            .draw()?;
        let color = |i: usize| -> RGBColor {
            if i >= MemtableKind::ALL.len() {
                RGBColor(150, 150, 150)
            } else {
                let (r, g, b) = Palette99::pick(i).to_rgba().rgb();
                RGBColor(r, g, b)
            }
        };
        chart.draw_series(values.iter().enumerate().filter_map(|(i, v)| {
            v.map(|v| {
                Rectangle::new(
                    [
                        (0.0, SegmentValue::Exact(i)),
                        (v, SegmentValue::Exact(i + 1)),
                    ],
                    color(i).filled(),
                )
            })
        }))?;
    }
    root.present()?;
    Ok(())
}

fn main() {
    let mut sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .filter_map(|a| parse_size(&a))
        .collect();
    if sizes.is_empty() {
        let spec = std::env::var("STRATA_BENCH_SIZES").unwrap_or_else(|_| "10k,100k".into());
        sizes = spec.split(',').filter_map(parse_size).collect();
    }
    assert!(
        !sizes.is_empty(),
        "no valid size given (e.g. 10k, 100k, 1m)"
    );
    let repeats: usize = std::env::var("STRATA_BENCH_REPEATS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3)
        .max(1);
    let only: Option<Vec<String>> = std::env::var("STRATA_BENCH_ONLY")
        .ok()
        .map(|s| s.split(',').map(|x| x.trim().to_string()).collect());
    let subjects: Vec<Subject> = Subject::all()
        .into_iter()
        .filter(|s| {
            only.as_ref()
                .is_none_or(|o| o.iter().any(|x| s.name().starts_with(x.as_str())))
        })
        .collect();

    let mut report = format!(
        "Medians of {repeats} runs; rates in millions per second unless noted; hash variants with \
         a {HASH_PREFIX_LEN}-byte prefix and {HASH_BUCKETS} buckets; linked_list only up to \
         {LINKED_LIST_MAX} entries.\n\n"
    );
    let mut last: Option<(usize, Vec<(Subject, Figures)>)> = None;
    for &n in &sizes {
        eprintln!("generating {} entries", size_label(n));
        let data = Data::new(n);
        let mut rows = Vec::new();
        for &subject in &subjects {
            if !subject.runs_at(n) {
                continue;
            }
            let started = Instant::now();
            let figures = measure(subject, &data, repeats);
            eprintln!(
                "{:>8} {:<20} rand insert {:>6} M/s, get {:>6} M/s, {:>5.0} B/entry ({:.1}s)",
                size_label(n),
                subject.name(),
                mops(figures.insert_rand),
                mops(figures.get_hit),
                figures.bytes_per_entry.unwrap_or(0.0),
                started.elapsed().as_secs_f64()
            );
            rows.push((subject, figures));
        }
        report.push_str(&table_markdown(n, &rows));
        report.push('\n');
        report.push_str(&targets_markdown(n, &rows));
        report.push('\n');
        last = Some((n, rows));
    }
    println!("{report}");
    let dir = std::env::var_os("STRATA_BENCH_RESULTS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/results"),
        std::path::PathBuf::from,
    );
    std::fs::create_dir_all(&dir).expect("create the results directory");
    std::fs::write(dir.join("memtables.md"), &report).expect("write memtables.md");
    if let Some((n, rows)) = last {
        let svg = dir.join("memtables.svg");
        match draw_chart(&svg, n, &rows) {
            Ok(()) => eprintln!(
                "wrote {} and {}",
                dir.join("memtables.md").display(),
                svg.display()
            ),
            Err(e) => eprintln!("chart failed: {e}"),
        }
    }
}
