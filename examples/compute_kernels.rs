//! Columnar processing with Arrow compute kernels, no SQL: `cast` (text to numbers, bad
//! values become nulls), `filter`, arithmetic on whole columns, `sort` with `take`, and a
//! group-by built from `sort` + `partition` + `sum`/`max`.
//!
//! The data is a generated batch of order lines with a text `quantity` column, a few values
//! of which are not numbers. Every result is checked against a plain row-by-row loop.
//!
//! Run: `cargo run --example compute_kernels [ROWS]` (default 10,000).

use std::error::Error;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Float64Array, Int64Array, RecordBatch, Scalar, StringArray, UInt32Array,
};
use arrow::compute::kernels::{cmp, numeric};
use arrow::compute::{
    SortColumn, SortOptions, cast, filter_record_batch, is_not_null, lexsort_to_indices, max,
    partition, sum, take_record_batch,
};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::util::pretty::pretty_format_batches;

const REGIONS: [&str; 4] = ["north", "south", "east", "west"];

/// Deterministic order lines: id, region, quantity (as text, every 97th not a number),
/// unit price, discount.
fn generate(rows: usize) -> Result<RecordBatch, Box<dyn Error>> {
    let mut state: u64 = 0x5eed;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        state >> 33
    };
    let mut ids = Vec::with_capacity(rows);
    let mut regions = Vec::with_capacity(rows);
    let mut quantities = Vec::with_capacity(rows);
    let mut prices = Vec::with_capacity(rows);
    let mut discounts = Vec::with_capacity(rows);
    for i in 0..rows {
        ids.push(i as i64);
        regions.push(REGIONS[(next() % 4) as usize]);
        quantities.push(if i % 97 == 13 {
            "n/a".to_string()
        } else {
            (1 + next() % 20).to_string()
        });
        prices.push((next() % 10_000) as f64 / 100.0);
        discounts.push([0.0, 0.05, 0.1, 0.2][(next() % 4) as usize]);
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("region", DataType::Utf8, false),
        Field::new("quantity", DataType::Utf8, false),
        Field::new("unit_price", DataType::Float64, false),
        Field::new("discount", DataType::Float64, false),
    ]));
    Ok(RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(StringArray::from(regions)),
            Arc::new(StringArray::from(quantities)),
            Arc::new(Float64Array::from(prices)),
            Arc::new(Float64Array::from(discounts)),
        ],
    )?)
}

fn main() -> Result<(), Box<dyn Error>> {
    let rows: usize = match std::env::args().nth(1) {
        Some(arg) => arg
            .parse()
            .map_err(|_| format!("ROWS must be a number, got '{arg}'"))?,
        None => 10_000,
    };
    let raw = generate(rows)?;
    println!(
        "input: {} rows, {} columns",
        raw.num_rows(),
        raw.num_columns()
    );

    // cast: text to Int64; values that are not numbers become nulls (the "safe" cast).
    let quantity = cast(raw.column(2), &DataType::Int64)?;
    println!(
        "cast quantity Utf8 -> Int64: {} values were not numbers (now null)",
        quantity.null_count()
    );
    let typed = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            raw.schema().field(0).clone(),
            raw.schema().field(1).clone(),
            Field::new("quantity", DataType::Int64, true),
            raw.schema().field(3).clone(),
            raw.schema().field(4).clone(),
        ])),
        vec![
            raw.column(0).clone(),
            raw.column(1).clone(),
            quantity,
            raw.column(3).clone(),
            raw.column(4).clone(),
        ],
    )?;

    // filter: drop the rows whose quantity did not parse.
    let clean = filter_record_batch(&typed, &is_not_null(typed.column(2))?)?;
    println!(
        "filter quantity IS NOT NULL: {} rows kept",
        clean.num_rows()
    );

    // arithmetic on whole columns: revenue = quantity * unit_price * (1 - discount).
    let quantity_f = cast(clean.column(2), &DataType::Float64)?;
    let gross = numeric::mul(&quantity_f, clean.column(3))?;
    let keep = numeric::sub(&Scalar::new(Float64Array::from(vec![1.0])), clean.column(4))?;
    let revenue = numeric::mul(&gross, &keep)?;
    let mut columns: Vec<ArrayRef> = clean.columns().to_vec();
    columns.push(revenue.clone());
    let mut fields: Vec<Field> = clean
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new("revenue", DataType::Float64, false));
    let priced = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;

    // filter with a comparison kernel: revenue > 100.
    let big = filter_record_batch(
        &priced,
        &cmp::gt(&revenue, &Scalar::new(Float64Array::from(vec![100.0])))?,
    )?;
    println!("filter revenue > 100: {} rows", big.num_rows());

    // sort + take: the five largest lines.
    let by_revenue = lexsort_to_indices(
        &[SortColumn {
            values: big.column(5).clone(),
            options: Some(SortOptions {
                descending: true,
                nulls_first: false,
            }),
        }],
        Some(5),
    )?;
    let top = take_record_batch(&big, &by_revenue)?;
    println!("top 5 by revenue:\n{}", pretty_format_batches(&[top])?);

    // group by region: sort by the key, find the runs of equal keys, aggregate each run.
    let by_region = lexsort_to_indices(
        &[SortColumn {
            values: priced.column(1).clone(),
            options: None,
        }],
        None,
    )?;
    let sorted = take_record_batch(&priced, &by_region)?;
    let runs = partition(&[sorted.column(1).clone()])?.ranges();
    let mut names = Vec::new();
    let mut counts = Vec::new();
    let mut totals = Vec::new();
    let mut largest = Vec::new();
    let region_col = sorted
        .column(1)
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or("region is not Utf8")?;
    let revenue_col = sorted
        .column(5)
        .as_any()
        .downcast_ref::<Float64Array>()
        .ok_or("revenue is not Float64")?;
    for run in &runs {
        let slice = revenue_col.slice(run.start, run.len());
        names.push(region_col.value(run.start).to_string());
        counts.push(run.len() as u32);
        totals.push((sum(&slice).unwrap_or(0.0) * 100.0).round() / 100.0);
        largest.push(max(&slice).unwrap_or(0.0));
    }
    let grouped = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("region", DataType::Utf8, false),
            Field::new("lines", DataType::UInt32, false),
            Field::new("revenue", DataType::Float64, false),
            Field::new("largest", DataType::Float64, false),
        ])),
        vec![
            Arc::new(StringArray::from(names)),
            Arc::new(UInt32Array::from(counts)),
            Arc::new(Float64Array::from(totals.clone())),
            Arc::new(Float64Array::from(largest)),
        ],
    )?;
    println!(
        "revenue by region (sort + partition + sum/max):\n{}",
        pretty_format_batches(&[grouped])?
    );

    // Check the kernels against a plain loop over the raw rows.
    let (mut loop_rows, mut loop_total) = (0usize, 0.0f64);
    let raw_qty = raw
        .column(2)
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or("quantity is not Utf8")?;
    let raw_price = raw
        .column(3)
        .as_any()
        .downcast_ref::<Float64Array>()
        .ok_or("unit_price is not Float64")?;
    let raw_discount = raw
        .column(4)
        .as_any()
        .downcast_ref::<Float64Array>()
        .ok_or("discount is not Float64")?;
    for i in 0..raw.num_rows() {
        if let Ok(q) = raw_qty.value(i).parse::<i64>() {
            loop_rows += 1;
            loop_total += q as f64 * raw_price.value(i) * (1.0 - raw_discount.value(i));
        }
    }
    let kernel_total: f64 = totals.iter().sum();
    if loop_rows != clean.num_rows() || (kernel_total - loop_total).abs() > 0.01 * runs.len() as f64
    {
        return Err(format!(
            "kernels disagree with the loop: {} vs {loop_rows} rows, {kernel_total:.2} vs {loop_total:.2}",
            clean.num_rows()
        )
        .into());
    }
    println!("checked against a row-by-row loop: {loop_rows} rows, total revenue {loop_total:.2}");
    Ok(())
}
