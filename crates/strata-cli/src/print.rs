//! Result output: formats, row limits and the writer that turns record batches into text.
//!
//! Human formats (`table`, `markdown`) keep at most `maxrows` rows in memory and count the
//! rest; machine formats (`csv`, `tsv`, `json`, `ndjson`) stream every row through arrow's
//! writers. A [`ResultWriter`] writes into any `Write`; the shell gives it a
//! [`StatementOutput`], which holds the first [`STATEMENT_BUFFER_BYTES`] of a statement's
//! output back so that a statement failing early writes nothing.

use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use comfy_table::{Cell, CellAlignment, ContentArrangement, Table};
use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::csv;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::json::{ArrayWriter, LineDelimitedWriter};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

/// Output bytes of one statement held back before any is written (see [`StatementOutput`]).
pub const STATEMENT_BUFFER_BYTES: usize = 8 * 1024 * 1024;

/// Rows shown per result in table format on a terminal unless set otherwise.
pub const DEFAULT_TERMINAL_MAXROWS: usize = 40;

/// The comfy-table preset of the `table` format (the look of DataFusion's pretty printer).
const TABLE_PRESET: &str = "||--+-++|    ++++++";

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrintFormat {
    /// Aligned table.
    Table,
    /// Comma-separated values with a header line.
    Csv,
    /// Tab-separated values with a header line.
    Tsv,
    /// One JSON array of objects.
    Json,
    /// One JSON object per line.
    NdJson,
    /// A GitHub-flavoured Markdown table.
    Markdown,
}

impl PrintFormat {
    /// Every format, in the order shown in help texts.
    pub const ALL: &'static [PrintFormat] = &[
        PrintFormat::Table,
        PrintFormat::Csv,
        PrintFormat::Tsv,
        PrintFormat::Json,
        PrintFormat::NdJson,
        PrintFormat::Markdown,
    ];

    /// The format's name as accepted by [`FromStr`].
    pub fn name(self) -> &'static str {
        match self {
            PrintFormat::Table => "table",
            PrintFormat::Csv => "csv",
            PrintFormat::Tsv => "tsv",
            PrintFormat::Json => "json",
            PrintFormat::NdJson => "ndjson",
            PrintFormat::Markdown => "markdown",
        }
    }

    /// True for formats read by people, to which `maxrows` applies.
    pub fn is_human(self) -> bool {
        matches!(self, PrintFormat::Table | PrintFormat::Markdown)
    }
}

impl fmt::Display for PrintFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for PrintFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let wanted = s.trim().to_ascii_lowercase();
        let wanted = match wanted.as_str() {
            "jsonl" | "json_lines" => "ndjson",
            "md" => "markdown",
            other => other,
        };
        PrintFormat::ALL
            .iter()
            .copied()
            .find(|f| f.name() == wanted)
            .ok_or_else(|| {
                let names: Vec<&str> = PrintFormat::ALL.iter().map(|f| f.name()).collect();
                format!("unknown format '{s}'; valid formats: {}", names.join(", "))
            })
    }
}

/// The most rows printed per result in human formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxRows {
    /// Every row.
    Unlimited,
    /// At most this many rows.
    Limited(usize),
}

impl fmt::Display for MaxRows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaxRows::Unlimited => f.write_str("unlimited"),
            MaxRows::Limited(n) => write!(f, "{n}"),
        }
    }
}

impl FromStr for MaxRows {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("unlimited") || s.eq_ignore_ascii_case("all") {
            return Ok(MaxRows::Unlimited);
        }
        s.parse::<usize>()
            .map(MaxRows::Limited)
            .map_err(|_| format!("invalid row limit '{s}'; expected a number or 'unlimited'"))
    }
}

/// Settings of a [`ResultWriter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrintOptions {
    /// Output format.
    pub format: PrintFormat,
    /// Row limit of human formats.
    pub maxrows: MaxRows,
    /// Fit tables to the terminal's width (only when writing to a terminal).
    pub fit_width: bool,
}

/// What a finished result printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Printed {
    /// Rows in the result.
    pub rows: usize,
    /// Rows written (fewer than `rows` when a human format was truncated).
    pub shown: usize,
}

enum Sink<W: Write> {
    Kept {
        out: W,
        kept: Vec<RecordBatch>,
        kept_rows: usize,
    },
    Csv(Box<csv::Writer<W>>),
    Json(ArrayWriter<W>),
    NdJson(LineDelimitedWriter<W>),
}

/// Writes one result (a schema and a stream of batches) in a [`PrintFormat`].
pub struct ResultWriter<W: Write> {
    schema: SchemaRef,
    options: PrintOptions,
    sink: Sink<W>,
    rows: usize,
}

impl<W: Write> ResultWriter<W> {
    /// A writer for results of `schema`.
    pub fn new(out: W, schema: SchemaRef, options: PrintOptions) -> Self {
        let sink = match options.format {
            PrintFormat::Table | PrintFormat::Markdown => Sink::Kept {
                out,
                kept: Vec::new(),
                kept_rows: 0,
            },
            PrintFormat::Csv => Sink::Csv(Box::new(
                csv::WriterBuilder::new().with_header(true).build(out),
            )),
            PrintFormat::Tsv => Sink::Csv(Box::new(
                csv::WriterBuilder::new()
                    .with_header(true)
                    .with_delimiter(b'\t')
                    .build(out),
            )),
            PrintFormat::Json => Sink::Json(ArrayWriter::new(out)),
            PrintFormat::NdJson => Sink::NdJson(LineDelimitedWriter::new(out)),
        };
        ResultWriter {
            schema,
            options,
            sink,
            rows: 0,
        }
    }

    /// Adds one batch of the result.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), ArrowError> {
        self.rows += batch.num_rows();
        match &mut self.sink {
            Sink::Kept {
                kept, kept_rows, ..
            } => {
                let room = match self.options.maxrows {
                    MaxRows::Unlimited => usize::MAX,
                    MaxRows::Limited(n) => n.saturating_sub(*kept_rows),
                };
                let take = room.min(batch.num_rows());
                if take > 0 {
                    kept.push(batch.slice(0, take));
                    *kept_rows += take;
                }
                Ok(())
            }
            Sink::Csv(w) => w.write(batch),
            Sink::Json(w) => w.write(batch),
            Sink::NdJson(w) => w.write(batch),
        }
    }

    /// Writes what is still held (tables, closing brackets) and returns the output.
    pub fn finish(self) -> Result<(Printed, W), ArrowError> {
        let rows = self.rows;
        let mut shown = rows;
        let out = match self.sink {
            Sink::Kept {
                mut out,
                kept,
                kept_rows,
            } => {
                shown = kept_rows;
                let text = match self.options.format {
                    PrintFormat::Markdown => markdown(&self.schema, &kept)?,
                    _ => table(&self.schema, &kept, self.options.fit_width)?,
                };
                writeln!(out, "{text}")?;
                out
            }
            Sink::Csv(mut w) => {
                if rows == 0 {
                    // The header is written with the first batch.
                    w.write(&RecordBatch::new_empty(self.schema.clone()))?;
                }
                w.into_inner()
            }
            Sink::Json(mut w) => {
                // An empty result is written as `[]` by the writer itself.
                w.finish()?;
                let mut out = w.into_inner();
                out.write_all(b"\n")?;
                out
            }
            Sink::NdJson(mut w) => {
                w.finish()?;
                w.into_inner()
            }
        };
        Ok((Printed { rows, shown }, out))
    }
}

/// Formats batches as an aligned text table (numbers right-aligned, NULL shown as `NULL`).
pub fn table(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    fit_width: bool,
) -> Result<String, ArrowError> {
    let mut t = Table::new();
    t.load_preset(TABLE_PRESET);
    if fit_width {
        t.set_content_arrangement(ContentArrangement::Dynamic);
    } else {
        t.force_no_tty();
        t.set_content_arrangement(ContentArrangement::Disabled);
    }
    t.set_header(schema.fields().iter().map(|f| Cell::new(f.name())));
    let numeric: Vec<bool> = schema
        .fields()
        .iter()
        .map(|f| f.data_type().is_numeric())
        .collect();
    for_each_row(batches, "NULL", |cells| {
        t.add_row(cells.into_iter().zip(&numeric).map(|(v, &n)| {
            let cell = Cell::new(v);
            if n {
                cell.set_alignment(CellAlignment::Right)
            } else {
                cell
            }
        }));
    })?;
    Ok(t.to_string())
}

/// Formats batches as a Markdown table (`|` escaped, line breaks as `<br>`).
pub fn markdown(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<String, ArrowError> {
    let escape = |s: &str| s.replace('|', "\\|").replace('\n', "<br>");
    let mut out = String::new();
    let names: Vec<String> = schema.fields().iter().map(|f| escape(f.name())).collect();
    out.push_str(&format!("| {} |\n", names.join(" | ")));
    let rules: Vec<&str> = schema
        .fields()
        .iter()
        .map(|f| {
            if f.data_type().is_numeric() {
                "---:"
            } else {
                "---"
            }
        })
        .collect();
    out.push_str(&format!("|{}|", rules.join("|")));
    for_each_row(batches, "NULL", |cells| {
        let cells: Vec<String> = cells.iter().map(|c| escape(c)).collect();
        out.push_str(&format!("\n| {} |", cells.join(" | ")));
    })?;
    Ok(out)
}

/// Calls `f` with the formatted cells of every row.
fn for_each_row(
    batches: &[RecordBatch],
    null: &str,
    mut f: impl FnMut(Vec<String>),
) -> Result<(), ArrowError> {
    let options = FormatOptions::default().with_null(null);
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref() as &dyn Array, &options))
            .collect::<Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            f(formatters
                .iter()
                .map(|c| c.value(row).to_string())
                .collect());
        }
    }
    Ok(())
}

/// The output of the shell, shared by the statements that write to it.
pub type SharedOut = Arc<Mutex<Box<dyn Write + Send>>>;

/// One statement's output: the first `limit` bytes are held back and written at
/// [`StatementOutput::commit`]; later bytes go straight through. Dropping it without a
/// commit (the statement failed or was cancelled) discards what was held back.
pub struct StatementOutput {
    target: SharedOut,
    held: Vec<u8>,
    limit: usize,
    spilled: bool,
}

impl StatementOutput {
    /// Output into `target`, holding back up to `limit` bytes.
    pub fn new(target: SharedOut, limit: usize) -> Self {
        StatementOutput {
            target,
            held: Vec::new(),
            limit,
            spilled: false,
        }
    }

    /// Writes what was held back and flushes the target.
    pub fn commit(mut self) -> io::Result<()> {
        let mut target = lock_out(&self.target);
        target.write_all(&self.held)?;
        self.held.clear();
        target.flush()
    }
}

/// Locks the shared output, also after a panic of another writer.
pub fn lock_out(out: &SharedOut) -> std::sync::MutexGuard<'_, Box<dyn Write + Send>> {
    out.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Write for StatementOutput {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.spilled {
            return lock_out(&self.target).write(buf);
        }
        self.held.extend_from_slice(buf);
        if self.held.len() > self.limit {
            lock_out(&self.target).write_all(&self.held)?;
            self.held.clear();
            self.spilled = true;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.spilled {
            lock_out(&self.target).flush()
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 22, 3])),
                Arc::new(StringArray::from(vec![Some("a|b"), None, Some("c,d")])),
            ],
        )
        .unwrap()
    }

    fn render(format: PrintFormat, maxrows: MaxRows, batches: &[RecordBatch]) -> (String, Printed) {
        let schema = batch().schema();
        let options = PrintOptions {
            format,
            maxrows,
            fit_width: false,
        };
        let mut w = ResultWriter::new(Vec::new(), schema, options);
        for b in batches {
            w.write(b).unwrap();
        }
        let (printed, out) = w.finish().unwrap();
        (String::from_utf8(out).unwrap(), printed)
    }

    #[test]
    fn every_format_renders_rows() {
        let b = batch();
        let all = MaxRows::Unlimited;
        let (table, p) = render(PrintFormat::Table, all, std::slice::from_ref(&b));
        assert_eq!(p, Printed { rows: 3, shown: 3 });
        assert_eq!(
            table,
            "+----+------+\n| id | name |\n+----+------+\n|  1 | a|b  |\n| 22 | NULL |\n|  3 | c,d  |\n+----+------+\n"
        );
        let (csv, _) = render(PrintFormat::Csv, all, std::slice::from_ref(&b));
        assert_eq!(csv, "id,name\n1,a|b\n22,\n3,\"c,d\"\n");
        let (tsv, _) = render(PrintFormat::Tsv, all, std::slice::from_ref(&b));
        assert_eq!(tsv, "id\tname\n1\ta|b\n22\t\n3\tc,d\n");
        let (json, _) = render(PrintFormat::Json, all, std::slice::from_ref(&b));
        assert_eq!(
            json,
            "[{\"id\":1,\"name\":\"a|b\"},{\"id\":22},{\"id\":3,\"name\":\"c,d\"}]\n"
        );
        let (ndjson, _) = render(PrintFormat::NdJson, all, std::slice::from_ref(&b));
        assert_eq!(
            ndjson,
            "{\"id\":1,\"name\":\"a|b\"}\n{\"id\":22}\n{\"id\":3,\"name\":\"c,d\"}\n"
        );
        let (md, _) = render(PrintFormat::Markdown, all, std::slice::from_ref(&b));
        assert_eq!(
            md,
            "| id | name |\n|---:|---|\n| 1 | a\\|b |\n| 22 | NULL |\n| 3 | c,d |\n"
        );
    }

    #[test]
    fn empty_results_keep_their_header() {
        let (csv, p) = render(PrintFormat::Csv, MaxRows::Unlimited, &[]);
        assert_eq!((csv.as_str(), p.rows), ("id,name\n", 0));
        let (json, _) = render(PrintFormat::Json, MaxRows::Unlimited, &[]);
        assert_eq!(json, "[]\n");
        let (ndjson, _) = render(PrintFormat::NdJson, MaxRows::Unlimited, &[]);
        assert_eq!(ndjson, "");
        let (table, _) = render(PrintFormat::Table, MaxRows::Unlimited, &[]);
        assert_eq!(
            table,
            "+----+------+\n| id | name |\n+----+------+\n+----+------+\n"
        );
    }

    #[test]
    fn maxrows_truncates_human_formats_only() {
        let b = batch();
        let batches = [b.clone(), b];
        let (table, p) = render(PrintFormat::Table, MaxRows::Limited(4), &batches);
        assert_eq!(p, Printed { rows: 6, shown: 4 });
        assert_eq!(table.lines().filter(|l| l.starts_with("| ")).count(), 5);
        let (_, p) = render(PrintFormat::Markdown, MaxRows::Limited(0), &batches);
        assert_eq!(p, Printed { rows: 6, shown: 0 });
        let (csv, p) = render(PrintFormat::Csv, MaxRows::Limited(1), &batches);
        assert_eq!(p, Printed { rows: 6, shown: 6 });
        assert_eq!(csv.lines().count(), 7);
    }

    #[test]
    fn formats_and_limits_parse() {
        for f in PrintFormat::ALL {
            assert_eq!(f.name().parse::<PrintFormat>(), Ok(*f));
        }
        assert_eq!("JSONL".parse::<PrintFormat>(), Ok(PrintFormat::NdJson));
        assert!(
            "xml"
                .parse::<PrintFormat>()
                .unwrap_err()
                .contains("csv, tsv")
        );
        assert_eq!("25".parse::<MaxRows>(), Ok(MaxRows::Limited(25)));
        assert_eq!("unlimited".parse::<MaxRows>(), Ok(MaxRows::Unlimited));
        assert!("-1".parse::<MaxRows>().is_err());
    }

    #[test]
    fn statement_output_holds_back_until_commit() {
        let target: SharedOut = Arc::new(Mutex::new(Box::new(SharedVec)));
        // SharedVec appends to a thread-local buffer, read back here.
        let read = |_: &SharedOut| SHARED.with(|s| s.borrow().clone());
        SHARED.with(|s| s.borrow_mut().clear());
        let mut out = StatementOutput::new(target.clone(), 4);
        out.write_all(b"abc").unwrap();
        assert_eq!(read(&target), b"");
        drop(out);
        assert_eq!(read(&target), b"", "dropped output is discarded");
        let mut out = StatementOutput::new(target.clone(), 4);
        out.write_all(b"abcdef").unwrap();
        assert_eq!(read(&target), b"abcdef", "over the limit it streams");
        out.write_all(b"g").unwrap();
        out.commit().unwrap();
        assert_eq!(read(&target), b"abcdefg");
    }

    thread_local! {
        static SHARED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    #[derive(Default)]
    struct SharedVec;

    impl Write for SharedVec {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            SHARED.with(|s| s.borrow_mut().extend_from_slice(buf));
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
}
