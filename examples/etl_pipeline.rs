//! An ETL pipeline in SQL: messy CSV in, cleaned, joined, aggregated, written as
//! hive-partitioned Parquet, and loaded into a Strata table.
//!
//! 1. *Extract*: generated CSV exports — `customers.csv` (names with stray spaces, country
//!    codes in mixed case or missing, duplicate rows) and one `orders/2026-MM.csv` per month
//!    (amounts that are not numbers or not positive, cancelled orders, orders exported twice,
//!    orders of unknown customers) — read as `CREATE EXTERNAL TABLE ... STORED AS CSV`, the
//!    orders as one table over the directory.
//! 2. *Transform*: views that trim, normalise, `TRY_CAST` and deduplicate, counting what they
//!    reject; a join of orders to customers.
//! 3. *Load*: `COPY (...) TO 'lake/orders/' STORED AS PARQUET PARTITIONED BY (country)`
//!    (one `country=XX/` directory per value), read back as a partitioned table (a query on
//!    one country reads only its directory), then a monthly aggregate inserted into the Strata
//!    table `monthly_sales` keyed by `(country, month)`, flushed to an SST and checked
//!    against the cleaned input.
//!
//! Run: `cargo run --example etl_pipeline [ORDERS_PER_MONTH]` (default 2,000).

use std::error::Error;
use std::fmt::Write as _;
use std::path::Path;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Float64Type, Int64Type};
use datafusion::arrow::util::pretty::pretty_format_batches;
use strata::{Options, StrataSession};

/// Customers in the export (before duplicates).
const CUSTOMERS: u64 = 200;
/// Country codes as a careless export spells them; "" is a missing country.
const COUNTRIES: [&str; 8] = ["de", " DE", "fr", "FR ", "nl", "Nl", "se", ""];
/// Months exported (January to March 2026).
const MONTHS: u32 = 3;

/// A small deterministic generator (a 64-bit LCG).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// Writes the CSV exports under `dir`.
fn extract(dir: &Path, orders_per_month: u64) -> Result<(), Box<dyn Error>> {
    let mut rng = Rng(7);
    let mut customers = String::from("customer_id,name,country\n");
    for id in 1..=CUSTOMERS {
        let country = COUNTRIES[(rng.next() % COUNTRIES.len() as u64) as usize];
        let line = format!("{id},  customer {id:03} ,{country}\n");
        customers.push_str(&line);
        if id % 25 == 0 {
            // The same customer exported twice, differently spaced.
            writeln!(customers, "{id},customer {id:03},{country}")?;
        }
    }
    std::fs::write(dir.join("customers.csv"), customers)?;

    let orders_dir = dir.join("orders");
    std::fs::create_dir_all(&orders_dir)?;
    let mut order_id = 0u64;
    for month in 1..=MONTHS {
        let mut csv = String::from("order_id,customer_id,order_date,amount,status\n");
        for i in 0..orders_per_month {
            order_id += 1;
            // Customer ids 1..=210: a few orders belong to no known customer.
            let customer = 1 + rng.next() % (CUSTOMERS + 10);
            let day = 1 + rng.next() % 28;
            let amount = match i % 50 {
                7 => "n/a".to_string(),
                19 => String::new(),
                31 => format!("-{}.00", rng.next() % 100),
                _ => format!("{}.{:02}", 5 + rng.next() % 500, rng.next() % 100),
            };
            let status = if i % 40 == 3 { "Cancelled" } else { "shipped" };
            let line =
                format!("{order_id},{customer},2026-{month:02}-{day:02},{amount},{status}\n");
            csv.push_str(&line);
            if i % 100 == 11 {
                csv.push_str(&line); // exported twice
            }
        }
        std::fs::write(orders_dir.join(format!("2026-{month:02}.csv")), csv)?;
    }
    Ok(())
}

/// Runs `sql` and collects its result.
async fn run(session: &StrataSession, sql: &str) -> Result<Vec<RecordBatch>, Box<dyn Error>> {
    Ok(session.sql(sql).await?.collect().await?)
}

/// Runs `sql` and prints its result under `title`.
async fn show(session: &StrataSession, title: &str, sql: &str) -> Result<(), Box<dyn Error>> {
    let batches = run(session, sql).await?;
    println!("{title}:\n{}", pretty_format_batches(&batches)?);
    Ok(())
}

/// The BIGINT in the first column of a one-row query.
async fn count(session: &StrataSession, sql: &str) -> Result<i64, Box<dyn Error>> {
    let batches = run(session, sql).await?;
    let batch = batches.first().ok_or("the query returned no batch")?;
    Ok(batch.column(0).as_primitive::<Int64Type>().value(0))
}

/// The DOUBLE in the first column of a one-row query.
async fn total(session: &StrataSession, sql: &str) -> Result<f64, Box<dyn Error>> {
    let batches = run(session, sql).await?;
    let batch = batches.first().ok_or("the query returned no batch")?;
    Ok(batch.column(0).as_primitive::<Float64Type>().value(0))
}

/// The files under `dir`, relative to it, sorted.
fn files_under(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(relative) = path.strip_prefix(dir) {
                files.push(relative.display().to_string());
            }
        }
    }
    files.sort();
    Ok(files)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let orders_per_month: u64 =
        match std::env::args().nth(1) {
            Some(arg) => arg.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                format!("ORDERS_PER_MONTH must be a positive number, got '{arg}'")
            })?,
            None => 2_000,
        };
    let dir = tempfile::tempdir()?;
    extract(dir.path(), orders_per_month)?;
    let session = strata::open(dir.path().join("db"), Options::default())?;

    // 1. Extract: the CSV exports as external tables (the orders over a directory).
    run(
        &session,
        &format!(
            "CREATE EXTERNAL TABLE raw_customers (customer_id BIGINT, name VARCHAR, country VARCHAR) \
             STORED AS CSV LOCATION '{}' OPTIONS ('format.has_header' 'true')",
            dir.path().join("customers.csv").display()
        ),
    )
    .await?;
    run(
        &session,
        &format!(
            "CREATE EXTERNAL TABLE raw_orders (order_id BIGINT, customer_id BIGINT, order_date DATE, \
             amount VARCHAR, status VARCHAR) \
             STORED AS CSV LOCATION '{}/' OPTIONS ('format.has_header' 'true')",
            dir.path().join("orders").display()
        ),
    )
    .await?;

    // 2. Transform: normalise, type, drop what cannot be used, deduplicate.
    run(
        &session,
        "CREATE VIEW customers AS SELECT DISTINCT customer_id, trim(name) AS name, \
           coalesce(nullif(upper(trim(country)), ''), 'XX') AS country \
         FROM raw_customers",
    )
    .await?;
    run(
        &session,
        "CREATE VIEW orders AS SELECT DISTINCT order_id, customer_id, order_date, \
           TRY_CAST(amount AS DOUBLE) AS amount \
         FROM raw_orders \
         WHERE lower(status) <> 'cancelled' AND TRY_CAST(amount AS DOUBLE) > 0",
    )
    .await?;
    let raw_customers = count(&session, "SELECT count(*) FROM raw_customers").await?;
    let customers = count(&session, "SELECT count(*) FROM customers").await?;
    let raw_orders = count(&session, "SELECT count(*) FROM raw_orders").await?;
    let orders = count(&session, "SELECT count(*) FROM orders").await?;
    let bad_amount = count(
        &session,
        "SELECT count(*) FROM raw_orders WHERE TRY_CAST(amount AS DOUBLE) IS NULL \
         OR TRY_CAST(amount AS DOUBLE) <= 0",
    )
    .await?;
    let cancelled = count(
        &session,
        "SELECT count(*) FROM raw_orders WHERE lower(status) = 'cancelled'",
    )
    .await?;
    println!(
        "extract: {raw_customers} customer rows -> {customers} customers after dedupe; \
         {raw_orders} order rows -> {orders} clean orders \
         ({bad_amount} bad amounts, {cancelled} cancelled, duplicates removed)"
    );
    if customers != CUSTOMERS as i64 {
        return Err(format!("expected {CUSTOMERS} customers, found {customers}").into());
    }
    run(
        &session,
        "CREATE VIEW sales AS SELECT c.country, o.order_id, o.customer_id, o.order_date, o.amount \
         FROM orders o JOIN customers c ON o.customer_id = c.customer_id",
    )
    .await?;
    let sales = count(&session, "SELECT count(*) FROM sales").await?;
    println!(
        "join: {sales} orders matched a customer, {} had an unknown customer",
        orders - sales
    );

    // 3a. Load: hive-partitioned Parquet, one directory per country.
    let lake = dir.path().join("lake").join("orders");
    run(
        &session,
        &format!(
            "COPY (SELECT * FROM sales) TO '{}/' STORED AS PARQUET PARTITIONED BY (country) \
             OPTIONS ('format.compression' 'zstd(3)')",
            lake.display()
        ),
    )
    .await?;
    let files = files_under(&lake)?;
    println!("partitioned Parquet: {} files", files.len());
    for file in &files {
        println!("  lake/orders/{file}");
    }
    run(
        &session,
        &format!(
            "CREATE EXTERNAL TABLE lake STORED AS PARQUET LOCATION '{}/' PARTITIONED BY (country)",
            lake.display()
        ),
    )
    .await?;
    let plan = run(
        &session,
        "EXPLAIN SELECT sum(amount) FROM lake WHERE country = 'DE'",
    )
    .await?;
    let plan = pretty_format_batches(&plan)?.to_string();
    let scan = plan
        .lines()
        .find(|line| line.contains("DataSourceExec"))
        .unwrap_or_default();
    let (de_files, any_files) = (
        scan.matches("country=DE/").count(),
        scan.matches("country=").count(),
    );
    println!(
        "a query on country = 'DE' scans {de_files} of {} files, all under country=DE/ (partition pruning)",
        files.len()
    );
    if de_files == 0 || de_files != any_files {
        return Err(format!("the DE query scans other partitions: {scan}").into());
    }

    // 3b. Load: monthly aggregates into a Strata table keyed by (country, month).
    run(
        &session,
        "CREATE TABLE monthly_sales (country VARCHAR NOT NULL, month DATE NOT NULL, \
         orders BIGINT NOT NULL, customers BIGINT NOT NULL, revenue DOUBLE NOT NULL, \
         PRIMARY KEY (country, month))",
    )
    .await?;
    run(
        &session,
        "INSERT INTO monthly_sales \
         SELECT CAST(country AS VARCHAR), CAST(date_trunc('month', order_date) AS DATE), \
                count(*), count(DISTINCT customer_id), round(sum(amount), 2) \
         FROM lake GROUP BY 1, 2",
    )
    .await?;
    run(&session, "SELECT * FROM strata_flush('monthly_sales')").await?;
    show(
        &session,
        "monthly_sales (a Strata table)",
        "SELECT * FROM monthly_sales ORDER BY country, month",
    )
    .await?;
    show(
        &session,
        "its SST",
        "SELECT level, rows, bytes, min_key, max_key FROM strata_sstables('monthly_sales')",
    )
    .await?;

    // Check the load against the cleaned input.
    let loaded = count(&session, "SELECT sum(orders) FROM monthly_sales").await?;
    let revenue = total(&session, "SELECT sum(revenue) FROM monthly_sales").await?;
    let expected = total(&session, "SELECT sum(amount) FROM sales").await?;
    println!(
        "check: {loaded} orders and revenue {revenue:.2} in monthly_sales; \
         {sales} orders and revenue {expected:.2} in the joined input"
    );
    let cells = count(&session, "SELECT count(*) FROM monthly_sales").await?;
    if loaded != sales || (revenue - expected).abs() > 0.01 * cells as f64 {
        return Err("monthly_sales does not match the cleaned input".into());
    }
    session.close()?;
    println!("pipeline done");
    Ok(())
}
