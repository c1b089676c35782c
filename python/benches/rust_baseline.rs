//! The Rust side of the Python overhead benchmark (`python/benches/bench.py` runs it): the
//! same operations on the same data through the Rust API, timed the same way.
//!
//! * insert: `ROWS` rows of `generate_events` (one batch, cast to the table's schema before
//!   the clock starts) into a fresh table, in writes of `INSERT_CHUNK_ROWS` rows as the Python
//!   `Table.insert` does;
//! * Q2 and Q6 of the SQL benchmark, collected, on that table after a flush and compaction;
//! * `Table::get` of `GETS` keys spread over the table (after an untimed pass over them).
//!
//! Each figure is the median of `RUNS` runs, printed as `name seconds` lines.
//! Run: `cargo bench -p strata-python --bench rust_baseline -- [ROWS] [GETS] [RUNS]`.

use std::error::Error;
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::compute::cast;
use strata_datafusion::functions::events_create_table_sql;
use strata_engine::{KeyValue, Options};

/// Rows per engine write, as the Python package's `Table.insert`.
const INSERT_CHUNK_ROWS: usize = 64 * 1024;

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .filter(|a| !a.starts_with('-'))
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let rows = arg(1, 1_000_000);
    let gets = arg(2, 100_000);
    let runs = arg(3, 5);

    let mut inserts = Vec::new();
    let mut q2 = Vec::new();
    let mut q6 = Vec::new();
    let mut get = Vec::new();
    for run in 0..runs {
        let dir = tempfile::tempdir()?;
        let session = strata_datafusion::open(dir.path(), Options::default())?;
        session
            .sql(&events_create_table_sql("events"))
            .await?
            .collect()
            .await?;
        let table = session.db().table("events")?;
        let schema = table.schema();
        let source = session
            .sql(&format!("SELECT * FROM generate_events({rows})"))
            .await?
            .collect()
            .await?;
        let batch = arrow::compute::concat_batches(&source[0].schema(), &source)?;
        let columns = batch
            .columns()
            .iter()
            .zip(schema.fields())
            .map(|(c, f)| cast(c, f.data_type()))
            .collect::<Result<Vec<_>, _>>()?;
        let batch = RecordBatch::try_new(schema, columns)?;

        let started = Instant::now();
        let mut offset = 0;
        while offset < batch.num_rows() {
            let len = INSERT_CHUNK_ROWS.min(batch.num_rows() - offset);
            table.insert(&batch.slice(offset, len))?;
            offset += len;
        }
        inserts.push(started.elapsed().as_secs_f64());

        table.flush()?;
        table.compact()?;
        for (sql, out) in [
            (
                "SELECT kind, sum(amount) FROM events GROUP BY kind",
                &mut q2,
            ),
            ("SELECT count(DISTINCT user_id) FROM events", &mut q6),
        ] {
            let started = Instant::now();
            let batches = session.sql(sql).await?.collect().await?;
            out.push(started.elapsed().as_secs_f64());
            assert!(!batches.is_empty());
        }

        let step = (rows / gets).max(1) as i128;
        for i in 0..gets as i128 {
            // Warms the caches (untimed), as the Python side does.
            table.get(&[KeyValue::Int(i * step % rows as i128)])?;
        }
        let started = Instant::now();
        let mut found = 0;
        for i in 0..gets as i128 {
            found += table
                .get(&[KeyValue::Int(i * step % rows as i128)])?
                .is_some() as usize;
        }
        get.push(started.elapsed().as_secs_f64());
        assert_eq!(found, gets);
        drop(table);
        session.close()?;
        eprintln!("run {} of {runs} done", run + 1);
    }
    println!("insert {:.6}", median(inserts));
    println!("q2 {:.6}", median(q2));
    println!("q6 {:.6}", median(q6));
    println!("get {:.6}", median(get));
    Ok(())
}
