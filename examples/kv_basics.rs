//! Key-value basics: `put`, `get`, `delete`, ordered and prefix `scan`, an atomic
//! [`WriteBatch`], a snapshot read, a flush to a Parquet SST, and a reopen that finds every
//! write again.
//!
//! A key-value store in Strata is a table `(key BINARY PRIMARY KEY, value BINARY NOT NULL)`
//! reached through [`strata::KvStore`]. The database lives in a temporary directory.
//!
//! Run: `cargo run --example kv_basics [KEYS]` (default 1,000 generated user keys).

use std::error::Error;

use strata::{Db, Options, WriteBatch};

fn main() -> Result<(), Box<dyn Error>> {
    let keys: usize = match std::env::args().nth(1) {
        Some(arg) => arg
            .parse()
            .map_err(|_| format!("KEYS must be a number, got '{arg}'"))?,
        None => 1_000,
    };
    let dir = tempfile::tempdir()?;
    let db = Db::open(dir.path(), Options::default())?;
    let kv = db.kv("settings")?;

    // Single puts, a get, an overwrite and a delete.
    kv.put(b"theme", b"dark")?;
    kv.put(b"language", b"en")?;
    kv.put(b"theme", b"light")?;
    kv.delete(b"language")?;
    println!(
        "get theme = {}, get language = {:?}",
        text(&kv.get(b"theme")?.unwrap_or_default()),
        kv.get(b"language")?.map(|v| text(&v))
    );

    // An atomic batch: all of it or none of it is visible.
    let mut batch = WriteBatch::new();
    for i in 0..keys {
        batch.put(format!("user:{i:06}"), format!("name-{i}"));
    }
    batch.put(b"counter", b"1");
    batch.delete(b"theme");
    kv.write(&batch)?;
    println!("write batch: {} operations applied atomically", batch.len());

    // A snapshot keeps seeing the state it was taken at.
    let snapshot = db.snapshot();
    kv.put(b"counter", b"2")?;
    println!(
        "counter now = {}, counter in snapshot = {}",
        text(&kv.get(b"counter")?.unwrap_or_default()),
        text(&kv.get_at(&snapshot, b"counter")?.unwrap_or_default())
    );
    drop(snapshot);

    // Ordered scans: a bounded range and a prefix.
    let first: Vec<String> = kv
        .scan(b"user:".to_vec()..b"user;".to_vec())?
        .take(3)
        .map(|pair| pair.map(|(k, v)| format!("{}={}", text(&k), text(&v))))
        .collect::<Result<_, _>>()?;
    println!("first users in key order: {}", first.join(", "));
    let users = kv.scan(b"user:".to_vec()..b"user;".to_vec())?.count();
    let all = kv.scan(..)?.count();
    println!("scan: {users} user keys, {all} keys in total");

    // Flush the memtable to an SST (a Parquet file), close, reopen.
    kv.flush()?;
    let stats = kv.table().stats();
    println!(
        "flushed: {} SST file(s), {} bytes, {} rows",
        stats.files_per_level.iter().sum::<usize>(),
        stats.sst_bytes,
        stats.sst_rows
    );
    kv.put(b"after-flush", b"only in the WAL")?;
    drop(kv);
    db.close()?;

    let db = Db::open(dir.path(), Options::default())?;
    let kv = db.kv("settings")?;
    let reopened = kv.scan(..)?.count();
    println!(
        "reopened: {reopened} keys, counter = {}, after-flush = {}, theme = {:?}",
        text(&kv.get(b"counter")?.unwrap_or_default()),
        text(&kv.get(b"after-flush")?.unwrap_or_default()),
        kv.get(b"theme")?.map(|v| text(&v))
    );
    if reopened != all + 1 {
        return Err(format!("expected {} keys after reopen, found {reopened}", all + 1).into());
    }
    db.close()?;
    Ok(())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
