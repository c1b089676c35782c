//! Reads a view the way the SQL layer's base path does, without the merge: every base file with
//! the `parquet` crate's own reader and the plan's row selection (its deletion vector), base
//! rows whose key the memtable overlay holds dropped, then the overlay's live rows.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::filter_record_batch;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReaderBuilder, RowSelection, RowSelector};
use strata_engine::ReadView;

/// The rows of `view` (user columns) read as base files plus overlay, or `None` when the
/// engine plans no base scan for it.
pub fn base_rows(view: &ReadView) -> Result<Option<Vec<RecordBatch>>, String> {
    let Some(plan) = view.base_scan(None).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let schema = view.table_schema();
    let user: Vec<usize> = (0..schema.user_schema().fields().len()).collect();
    let mut out = Vec::new();
    for file in &plan.files {
        let path = view
            .verified_sst_path(file.meta.id)
            .map_err(|e| e.to_string())?;
        let selection: Vec<RowSelector> = file
            .selection(0, file.meta.rows)
            .into_iter()
            .map(|(live, n)| {
                if live {
                    RowSelector::select(n as usize)
                } else {
                    RowSelector::skip(n as usize)
                }
            })
            .collect();
        let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.with_row_selection(RowSelection::from(selection)).build())
            .map_err(|e| e.to_string())?;
        for batch in reader {
            let batch = batch
                .map_err(|e| e.to_string())?
                .project(&user)
                .map_err(|e| e.to_string())?;
            let keys: Vec<_> = schema
                .key_indices()
                .iter()
                .map(|k| Arc::clone(batch.column(*k)))
                .collect();
            let keep = plan
                .overlay
                .keep_mask(schema, &keys)
                .map_err(|e| e.to_string())?;
            out.push(filter_record_batch(&batch, &keep).map_err(|e| e.to_string())?);
        }
    }
    out.extend(
        plan.overlay
            .rows()
            .batches(usize::MAX)
            .map_err(|e| e.to_string())?,
    );
    Ok(Some(out))
}
