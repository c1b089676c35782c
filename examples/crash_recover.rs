//! Crash and recover: every acknowledged write survives a SIGKILL.
//!
//! The example starts itself again as a child process. The child opens a database with
//! `SyncMode::Always`, writes atomic batches of keys as fast as it can and prints `ack N`
//! after each `write` returns. The parent reads those acknowledgements, kills the child with
//! SIGKILL in the middle of the stream (`std::process::Child::kill`), reopens the database
//! (which replays the WAL) and checks that every acknowledged batch is present in full, and
//! that every batch, acknowledged or not, is all-or-nothing. Small memtables make the child
//! flush SSTs while it runs, so the kill can also land in the middle of a flush.
//!
//! Run: `cargo run --example crash_recover [ACKS_BEFORE_KILL]` (default 300).

use std::collections::BTreeMap;
use std::error::Error;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use strata::engine::SyncMode;
use strata::{Db, Options, TableOptions, WriteBatch};

/// Set in the child's environment to the database directory.
const CHILD_ENV: &str = "STRATA_EXAMPLE_CRASH_CHILD";
/// Keys written by each batch.
const KEYS_PER_BATCH: u64 = 4;
/// The child stops on its own after this many batches (if it was never killed).
const CHILD_BATCHES_MAX: u64 = 1_000_000;

fn options() -> Options {
    Options {
        sync_mode: SyncMode::Always,
        wal_segment_size_bytes: 64 * 1024,
        write_buffer_budget_bytes: 1 << 20,
        table_defaults: TableOptions {
            memtable_size_bytes: 64 * 1024,
            ..TableOptions::default()
        },
        ..Options::default()
    }
}

fn key(batch: u64, i: u64) -> Vec<u8> {
    format!("batch{batch:09}-{i}").into_bytes()
}

/// The child: writes batches until it is killed, acknowledging each on stdout.
fn child(dir: &Path) -> Result<(), Box<dyn Error>> {
    let db = Db::open(dir, options())?;
    let kv = db.kv("events")?;
    let mut out = std::io::stdout().lock();
    for batch_id in 0..CHILD_BATCHES_MAX {
        let mut batch = WriteBatch::new();
        let value = format!("{batch_id}:{}", "x".repeat(100));
        for i in 0..KEYS_PER_BATCH {
            batch.put(key(batch_id, i), &value);
        }
        kv.write(&batch)?;
        // A closed pipe (the parent is gone) ends the child.
        writeln!(out, "ack {batch_id}")?;
        out.flush()?;
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        return child(Path::new(&dir));
    }
    let kill_after: u64 = match std::env::args().nth(1) {
        Some(arg) => arg
            .parse()
            .map_err(|_| format!("ACKS_BEFORE_KILL must be a number, got '{arg}'"))?,
        None => 300,
    };
    let dir = tempfile::tempdir()?;
    let mut child = Command::new(std::env::current_exe()?)
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("child has no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut acked: Vec<u64> = Vec::new();
    for line in lines.by_ref() {
        acked.push(parse_ack(&line?)?);
        if acked.len() as u64 >= kill_after {
            break;
        }
    }
    child.kill()?; // SIGKILL on Unix: no destructor, no close, no flush runs in the child.
    let status = child.wait()?;
    // Acknowledgements already in the pipe when the kill landed are acknowledged writes too.
    for line in lines {
        match line {
            Ok(line) => acked.push(parse_ack(&line)?),
            Err(_) => break,
        }
    }
    let last_acked = *acked.last().ok_or("the child acknowledged nothing")?;
    println!(
        "child killed ({status}) after {} acknowledged batches (last ack {last_acked})",
        acked.len()
    );

    let db = Db::open(dir.path(), options())?;
    let kv = db.kv("events")?;
    let stats = kv.table().stats();
    println!(
        "reopened: {} SST file(s) on disk, {} entries replayed from the WAL into the memtable",
        stats.files_per_level.iter().sum::<usize>(),
        stats.memtable_entries
    );
    let mut found: BTreeMap<u64, u64> = BTreeMap::new();
    for pair in kv.scan(..)? {
        let (key, value) = pair?;
        let text = String::from_utf8(key)?;
        let batch_id: u64 = text["batch".len()..text.find('-').ok_or("bad key")?].parse()?;
        let expected = format!("{batch_id}:{}", "x".repeat(100));
        if value != expected.as_bytes() {
            return Err(format!("key {text} holds a wrong value").into());
        }
        *found.entry(batch_id).or_default() += 1;
    }
    let missing: Vec<u64> = acked
        .iter()
        .copied()
        .filter(|b| found.get(b) != Some(&KEYS_PER_BATCH))
        .collect();
    let torn: Vec<u64> = found
        .iter()
        .filter(|(_, n)| **n != KEYS_PER_BATCH)
        .map(|(b, _)| *b)
        .collect();
    let unacked = found.keys().filter(|b| **b > last_acked).count();
    println!(
        "recovered {} batches: all {} acknowledged batches present, {} torn, {} written but not yet acknowledged when killed",
        found.len(),
        acked.len() - missing.len(),
        torn.len(),
        unacked
    );
    if !missing.is_empty() || !torn.is_empty() {
        return Err(format!("lost acknowledged batches {missing:?}, torn batches {torn:?}").into());
    }
    drop(kv);
    db.close()?;
    println!("every acknowledged write survived the crash");
    Ok(())
}

fn parse_ack(line: &str) -> Result<u64, Box<dyn Error>> {
    line.strip_prefix("ack ")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("unexpected line from the child: '{line}'").into())
}
