//! Tables and SQL from Rust: a [`strata::StrataSession`] over a database directory,
//! `CREATE TABLE ... PRIMARY KEY` (a persistent LSM table), `INSERT` as upsert, `UPDATE`,
//! `DELETE`, a join with an aggregate, the DataFrame API, the engine's view of the same
//! table (`strata_sstables`, `Table::get`), and a restart that finds every row again.
//!
//! The database lives in a temporary directory.
//!
//! Run: `cargo run --example tables_and_sql`

use std::error::Error;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::prelude::{col, lit};
use strata::{Options, StrataSession};

/// Runs `sql` and collects its result.
async fn run(session: &StrataSession, sql: &str) -> Result<Vec<RecordBatch>, Box<dyn Error>> {
    Ok(session.sql(sql).await?.collect().await?)
}

/// Runs `sql` and prints its result as a table under `title`.
async fn show(session: &StrataSession, title: &str, sql: &str) -> Result<(), Box<dyn Error>> {
    let batches = run(session, sql).await?;
    println!("{title}:\n{}", pretty_format_batches(&batches)?);
    Ok(())
}

/// The single BIGINT value a query returns.
async fn scalar(session: &StrataSession, sql: &str) -> Result<i64, Box<dyn Error>> {
    let batches = run(session, sql).await?;
    let batch = batches.first().ok_or("the query returned no batch")?;
    Ok(batch.column(0).as_primitive::<Int64Type>().value(0))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let session = strata::open(dir.path(), Options::default())?;

    // Two persistent tables; the primary key is the LSM key.
    run(
        &session,
        "CREATE TABLE customers (id BIGINT PRIMARY KEY, name VARCHAR NOT NULL, city VARCHAR)",
    )
    .await?;
    run(
        &session,
        "CREATE TABLE orders (customer_id BIGINT, order_no INT, amount DOUBLE NOT NULL, \
         PRIMARY KEY (customer_id, order_no))",
    )
    .await?;
    run(
        &session,
        "INSERT INTO customers VALUES (1, 'Ada', 'London'), (2, 'Grace', 'New York'), \
         (3, 'Edsger', 'Nuenen'), (4, 'Barbara', NULL)",
    )
    .await?;
    run(
        &session,
        "INSERT INTO orders VALUES (1, 1, 120.0), (1, 2, 35.5), (2, 1, 99.9), (3, 1, 10.0), \
         (3, 2, 12.5), (3, 3, 7.25), (4, 1, 64.0)",
    )
    .await?;

    // INSERT of an existing key replaces the row (upsert); UPDATE and DELETE by predicate.
    run(
        &session,
        "INSERT INTO customers VALUES (4, 'Barbara', 'Boston')",
    )
    .await?;
    run(
        &session,
        "UPDATE orders SET amount = amount * 2 WHERE customer_id = 2",
    )
    .await?;
    run(
        &session,
        "DELETE FROM orders WHERE customer_id = 3 AND order_no = 3",
    )
    .await?;
    show(
        &session,
        "customers after the upsert",
        "SELECT * FROM customers ORDER BY id",
    )
    .await?;

    // A join with an aggregate.
    show(
        &session,
        "spend per customer (join + GROUP BY)",
        "SELECT c.name, count(*) AS orders, sum(o.amount) AS total \
         FROM customers c JOIN orders o ON o.customer_id = c.id \
         GROUP BY c.name ORDER BY total DESC",
    )
    .await?;

    // The DataFrame API over the same table.
    let frame = session
        .table("orders")
        .await?
        .filter(col("amount").gt(lit(50.0)))?
        .select(vec![col("customer_id"), col("order_no"), col("amount")])?
        .sort(vec![col("amount").sort(false, true)])?;
    println!(
        "DataFrame: orders over 50:\n{}",
        pretty_format_batches(&frame.collect().await?)?
    );

    // The engine underneath: flush the memtable into a Parquet SST and list it.
    run(&session, "SELECT * FROM strata_flush('customers')").await?;
    show(
        &session,
        "customers SSTs",
        "SELECT level, file_id, min_key, max_key, rows FROM strata_sstables('customers')",
    )
    .await?;
    let table = session.db().table("customers")?;
    println!(
        "engine: table 'customers' has primary key {:?} and {} SST rows",
        table.primary_key(),
        table.stats().sst_rows
    );

    // Close, reopen the same directory: tables and rows are still there.
    let before = scalar(&session, "SELECT count(*) FROM orders").await?;
    drop(table);
    session.close()?;
    let session = strata::open(dir.path(), Options::default())?;
    let after = scalar(&session, "SELECT count(*) FROM orders").await?;
    let city = run(&session, "SELECT city FROM customers WHERE id = 4").await?;
    let city = city.first().ok_or("customer 4 is missing")?;
    let city = cast(city.column(0), &DataType::Utf8)?;
    println!(
        "reopened: {after} orders (had {before}), customer 4 lives in {}",
        city.as_string::<i32>().value(0)
    );
    if after != before {
        return Err(format!("expected {before} orders after the restart, found {after}").into());
    }
    session.close()?;
    Ok(())
}
