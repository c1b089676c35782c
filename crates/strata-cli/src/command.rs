//! Meta-commands: the backslash commands of the shell, their parsing and the tables they show.
//!
//! Parsing is pure ([`Command::from_str`]); running a command needs the shell's state and lives
//! in `exec`. The commands that touch the database (`\dt`, `\d`, `\flush`, `\compact`,
//! `\metrics`) are SQL queries over Strata's table functions (`strata_tables()`,
//! `strata_columns('t')`, `strata_flush(...)`, ...), built here and run by `exec` through the
//! same path as typed SQL, so the shell, a server and a program reach the engine the same way;
//! all this module adds is presentation ([`humanize`] byte counts). Invariants: [`COMMANDS`]
//! lists every command accepted by the parser (help and completion read it); a table argument
//! reaches the functions unchanged, as one SQL string literal ([`sql_literal`]).

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, UInt64Type};
use datafusion::arrow::error::ArrowError;

use crate::print::{MaxRows, PrintFormat};

/// Default number of rows loaded by `\demo`.
pub const DEMO_DEFAULT_ROWS: u64 = 100_000;

/// Most rows `\demo` loads (a bound on the time and space one command takes).
pub const DEMO_MAX_ROWS: u64 = 100_000_000;

/// Every meta-command with its argument synopsis and description.
pub const COMMANDS: &[(&str, &str, &str)] = &[
    ("\\?", "", "show this help (also \\help)"),
    ("\\help", "", "show this help"),
    ("\\q", "", "quit (also Ctrl-D)"),
    ("\\dt", "", "list tables with row estimates and sizes"),
    (
        "\\d",
        "TABLE",
        "describe a table: columns, key, memtable, options, SSTs per level",
    ),
    (
        "\\timing",
        "[on|off]",
        "show elapsed time after each statement",
    ),
    (
        "\\format",
        "[NAME]",
        "output format: table, csv, tsv, json, ndjson, markdown",
    ),
    (
        "\\maxrows",
        "[N|unlimited]",
        "most rows shown per result in table and markdown formats",
    ),
    ("\\i", "FILE", "run the statements of a script file"),
    (
        "\\o",
        "[FILE]",
        "send results to a file; without FILE, back to standard output",
    ),
    (
        "\\flush",
        "[TABLE]",
        "flush memtables to SSTables (one table or all)",
    ),
    ("\\compact", "TABLE", "compact a table's SSTables"),
    (
        "\\metrics",
        "",
        "show the database's counters, then compaction by table and level",
    ),
    (
        "\\demo",
        "[ROWS]",
        "create and load the sample `events` table (deterministic)",
    ),
];

/// A parsed meta-command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `\?`, `\help`.
    Help,
    /// `\q`.
    Quit,
    /// `\dt` (and `\d` without an argument).
    ListTables,
    /// `\d TABLE`.
    Describe(String),
    /// `\timing [on|off]`; `None` toggles.
    Timing(Option<bool>),
    /// `\format [NAME]`; `None` shows the current format.
    Format(Option<PrintFormat>),
    /// `\maxrows [N|unlimited]`; `None` shows the current limit.
    MaxRows(Option<MaxRows>),
    /// `\i FILE`.
    Include(PathBuf),
    /// `\o [FILE]`.
    Output(Option<PathBuf>),
    /// `\flush [TABLE]`.
    Flush(Option<String>),
    /// `\compact TABLE`.
    Compact(String),
    /// `\metrics`.
    Metrics,
    /// `\demo [ROWS]`.
    Demo(u64),
}

impl FromStr for Command {
    type Err = String;

    fn from_str(line: &str) -> Result<Command, String> {
        let line = line.trim().trim_end_matches(';').trim_end();
        let (name, rest) = match line.find(char::is_whitespace) {
            Some(i) => (&line[..i], line[i..].trim()),
            None => (line, ""),
        };
        let arg = (!rest.is_empty()).then(|| unquote(rest));
        // A table argument keeps its double quotes: they quote SQL identifiers (`"s2.t"` is
        // the default schema's table named s2.t, `s2.t` table t of schema s2), which
        // `resolve_table` reads; single quotes wrap it as in `strata_flush('s2.t')`.
        let table = (!rest.is_empty()).then(|| unquote_single(rest));
        let no_arg = |c: Command| match &arg {
            None => Ok(c),
            Some(_) => Err(format!("{name} takes no argument")),
        };
        let need = |what: &str| {
            arg.clone()
                .ok_or_else(|| format!("{name} needs {what} (see \\?)"))
        };
        match name {
            "\\?" | "\\help" | "\\h" => Ok(Command::Help),
            "\\q" | "\\quit" => no_arg(Command::Quit),
            "\\dt" => no_arg(Command::ListTables),
            "\\d" => Ok(table.map_or(Command::ListTables, Command::Describe)),
            "\\timing" => match arg.as_deref().map(str::to_ascii_lowercase).as_deref() {
                None => Ok(Command::Timing(None)),
                Some("on") => Ok(Command::Timing(Some(true))),
                Some("off") => Ok(Command::Timing(Some(false))),
                Some(other) => Err(format!("\\timing expects on or off, not '{other}'")),
            },
            "\\format" | "\\pset" => Ok(Command::Format(arg.map(|a| a.parse()).transpose()?)),
            "\\maxrows" => Ok(Command::MaxRows(arg.map(|a| a.parse()).transpose()?)),
            "\\i" | "\\include" => Ok(Command::Include(PathBuf::from(need("a file name")?))),
            "\\o" | "\\out" => Ok(Command::Output(arg.map(PathBuf::from))),
            "\\flush" => Ok(Command::Flush(table)),
            "\\compact" => match table {
                Some(table) => Ok(Command::Compact(table)),
                None => Err(format!("{name} needs a table name (see \\?)")),
            },
            "\\metrics" => no_arg(Command::Metrics),
            "\\demo" => match arg {
                None => Ok(Command::Demo(DEMO_DEFAULT_ROWS)),
                Some(n) => {
                    let rows = n
                        .replace('_', "")
                        .parse::<u64>()
                        .map_err(|_| format!("\\demo expects a number of rows, not '{n}'"))?;
                    if rows == 0 || rows > DEMO_MAX_ROWS {
                        return Err(format!("\\demo loads between 1 and {DEMO_MAX_ROWS} rows"));
                    }
                    Ok(Command::Demo(rows))
                }
            },
            _ => Err(format!("unknown command '{name}'; type \\? for the list")),
        }
    }
}

/// Strips one pair of matching single or double quotes.
fn unquote(s: &str) -> String {
    for q in ['\'', '"'] {
        if s.len() >= 2 && s.starts_with(q) && s.ends_with(q) {
            return s[1..s.len() - 1].to_string();
        }
    }
    s.to_string()
}

/// Strips one pair of single quotes (a table argument written as the table functions take it).
fn unquote_single(s: &str) -> String {
    if s.len() >= 2 && s.starts_with('\'') && s.ends_with('\'') {
        return s[1..s.len() - 1].to_string();
    }
    s.to_string()
}

/// The help text of `\?`.
pub fn help_text() -> String {
    let mut out = String::from("Meta-commands:\n");
    for (name, args, about) in COMMANDS {
        let synopsis = if args.is_empty() {
            name.to_string()
        } else {
            format!("{name} {args}")
        };
        out.push_str(&format!("  {synopsis:<22} {about}\n"));
    }
    out.push_str(
        "SQL statements end with ';' and may span lines. Ctrl-C cancels a running statement,\n\
         Ctrl-D or \\q quits. Table functions: strata_tables(), strata_columns('t'),\n\
         strata_table_properties('t'), strata_sstables('t'), strata_levels('t'),\n\
         strata_memtables(), strata_metrics(), strata_compaction_stats(), strata_flush(),\n\
         strata_compact('t'), generate_events(rows).",
    );
    out
}

/// Formats a byte count with a binary unit (`1.5 MiB`).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A SQL string literal of `text` (single quotes, inner ones doubled).
pub fn sql_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The query of `\dt`: one row per table with its estimated rows, size, SST files and
/// memtable kind.
pub const LIST_TABLES_SQL: &str = "SELECT table_name AS \"table\", primary_key, rows_estimate, \
     bytes AS size, sst_files, memtable_kind AS memtable FROM strata_tables()";

/// The queries of `\d TABLE` for a Strata table: its columns, then its properties and
/// options, then its SSTables per level.
pub fn describe_sql(table: &str) -> [String; 3] {
    let t = sql_literal(table);
    [
        format!(
            "SELECT column_name AS \"column\", data_type AS \"type\", nullable, primary_key \
             FROM strata_columns({t})"
        ),
        format!("SELECT property, value FROM strata_table_properties({t})"),
        format!(
            "SELECT level, files AS sst_files, runs, rows, bytes AS size FROM strata_levels({t})"
        ),
    ]
}

/// The query of `\flush [TABLE]`.
pub fn flush_sql(table: Option<&str>) -> String {
    let arg = table.map(sql_literal).unwrap_or_default();
    format!("SELECT table_name, entries_flushed FROM strata_flush({arg})")
}

/// The query of `\compact TABLE`.
pub fn compact_sql(table: &str) -> String {
    format!(
        "SELECT table_name, files_before, files_after FROM strata_compact({})",
        sql_literal(table)
    )
}

/// The queries of `\metrics`: the database's counters and gauges, then compaction by table
/// and level (`strata_compaction_stats()`: per level and in total files, bytes, flush and
/// compaction counters, write and space amplification, stall time). The counters keep the
/// engine's order: a table function produces one batch, which no repartitioning splits.
pub const METRICS_SQL: [&str; 2] = [
    "SELECT name AS metric, value FROM strata_metrics() WHERE table_name IS NULL",
    "SELECT * FROM strata_compaction_stats()",
];

/// Shows byte counts of a meta-command's result for people: a `UInt64` column named `size`,
/// and in a `property`/`value` result the value of every property whose name ends in
/// `_bytes`, become [`human_bytes`] text. Other batches pass unchanged.
pub fn humanize(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    let schema = batch.schema();
    let mut fields: Vec<Field> = Vec::with_capacity(schema.fields().len());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    let properties = schema
        .column_with_name("property")
        .and_then(|(i, _)| batch.column(i).as_string_opt::<i32>());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        let sizes = column.as_primitive_opt::<UInt64Type>();
        let values = column.as_string_opt::<i32>();
        match (field.name().as_str(), sizes, properties, values) {
            ("size", Some(sizes), _, _) => {
                let text: StringArray = sizes.iter().map(|v| v.map(human_bytes)).collect();
                fields.push(Field::new("size", DataType::Utf8, field.is_nullable()));
                columns.push(Arc::new(text));
            }
            ("value", None, Some(names), Some(values)) => {
                let text: StringArray = names
                    .iter()
                    .zip(values.iter())
                    .map(|(name, value)| match (name, value) {
                        (Some(name), Some(value)) if name.ends_with("_bytes") => Some(
                            value
                                .parse::<u64>()
                                .map_or_else(|_| value.to_string(), human_bytes),
                        ),
                        (_, value) => value.map(str::to_string),
                    })
                    .collect();
                fields.push(field.as_ref().clone());
                columns.push(Arc::new(text));
            }
            _ => {
                fields.push(field.as_ref().clone());
                columns.push(Arc::clone(column));
            }
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Command, String> {
        s.parse()
    }

    #[test]
    fn parses_every_command() {
        assert_eq!(parse("\\?"), Ok(Command::Help));
        assert_eq!(parse("\\help"), Ok(Command::Help));
        assert_eq!(parse("\\q"), Ok(Command::Quit));
        assert_eq!(parse("\\dt;"), Ok(Command::ListTables));
        assert_eq!(parse("\\d"), Ok(Command::ListTables));
        assert_eq!(
            parse("\\d  events "),
            Ok(Command::Describe("events".into()))
        );
        assert_eq!(parse("\\timing"), Ok(Command::Timing(None)));
        assert_eq!(parse("\\timing OFF"), Ok(Command::Timing(Some(false))));
        assert_eq!(
            parse("\\format csv"),
            Ok(Command::Format(Some(PrintFormat::Csv)))
        );
        assert_eq!(parse("\\format"), Ok(Command::Format(None)));
        assert_eq!(
            parse("\\maxrows 5"),
            Ok(Command::MaxRows(Some(MaxRows::Limited(5))))
        );
        assert_eq!(
            parse("\\maxrows unlimited"),
            Ok(Command::MaxRows(Some(MaxRows::Unlimited)))
        );
        assert_eq!(parse("\\maxrows"), Ok(Command::MaxRows(None)));
        assert_eq!(
            parse("\\i 'my script.sql'"),
            Ok(Command::Include("my script.sql".into()))
        );
        assert_eq!(
            parse("\\o out.csv"),
            Ok(Command::Output(Some("out.csv".into())))
        );
        assert_eq!(parse("\\o"), Ok(Command::Output(None)));
        assert_eq!(parse("\\flush"), Ok(Command::Flush(None)));
        assert_eq!(parse("\\flush t"), Ok(Command::Flush(Some("t".into()))));
        assert_eq!(parse("\\compact t"), Ok(Command::Compact("t".into())));
        // Table arguments keep the double quotes of SQL identifiers; single quotes go.
        assert_eq!(
            parse("\\d \"s2.t\""),
            Ok(Command::Describe("\"s2.t\"".into()))
        );
        assert_eq!(
            parse("\\flush '\"S\".\"T\"'"),
            Ok(Command::Flush(Some("\"S\".\"T\"".into())))
        );
        assert_eq!(
            parse("\\compact 's2.t'"),
            Ok(Command::Compact("s2.t".into()))
        );
        assert_eq!(parse("\\metrics"), Ok(Command::Metrics));
        assert_eq!(parse("\\demo"), Ok(Command::Demo(DEMO_DEFAULT_ROWS)));
        assert_eq!(parse("\\demo 1_000"), Ok(Command::Demo(1000)));
    }

    #[test]
    fn bad_commands_say_why() {
        assert!(
            parse("\\frobnicate")
                .unwrap_err()
                .contains("unknown command '\\frobnicate'")
        );
        assert!(
            parse("\\compact")
                .unwrap_err()
                .contains("needs a table name")
        );
        assert!(parse("\\timing maybe").unwrap_err().contains("on or off"));
        assert!(parse("\\format xml").unwrap_err().contains("valid formats"));
        assert!(parse("\\maxrows lots").unwrap_err().contains("unlimited"));
        assert!(parse("\\demo 0").is_err());
        assert!(parse("\\demo ten").is_err());
        assert!(parse("\\q now").unwrap_err().contains("takes no argument"));
    }

    #[test]
    fn help_lists_every_command() {
        let help = help_text();
        for (name, _, _) in COMMANDS {
            assert!(help.contains(name), "{name}");
        }
        for name in ["\\dt", "\\d", "\\flush", "\\compact", "\\demo"] {
            assert!(
                parse(&format!("{name} x")).is_ok() || parse(name).is_ok(),
                "{name}"
            );
        }
    }

    #[test]
    fn table_arguments_reach_the_functions_as_one_literal() {
        assert_eq!(sql_literal("it's"), "'it''s'");
        assert_eq!(
            flush_sql(Some("\"s2.t\"")),
            "SELECT table_name, entries_flushed FROM strata_flush('\"s2.t\"')"
        );
        assert!(flush_sql(None).ends_with("strata_flush()"));
        assert!(compact_sql("a'b").ends_with("strata_compact('a''b')"));
        for sql in describe_sql("s2.t") {
            assert!(sql.ends_with("('s2.t')"), "{sql}");
        }
    }

    #[test]
    fn byte_counts_are_shown_human() {
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("property", DataType::Utf8, false),
                Field::new("value", DataType::Utf8, false),
            ])),
            vec![
                Arc::new(StringArray::from(vec![
                    "memtable_size_bytes",
                    "rows_estimate",
                ])),
                Arc::new(StringArray::from(vec!["8388608", "1536"])),
            ],
        )
        .unwrap();
        let shown = humanize(&batch).unwrap();
        let values = shown.column(1).as_string::<i32>();
        assert_eq!(values.value(0), "8.0 MiB");
        assert_eq!(values.value(1), "1536");
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("rows", DataType::UInt64, false),
                Field::new("size", DataType::UInt64, false),
            ])),
            vec![
                Arc::new(datafusion::arrow::array::UInt64Array::from(vec![1536u64])),
                Arc::new(datafusion::arrow::array::UInt64Array::from(vec![1536u64])),
            ],
        )
        .unwrap();
        let shown = humanize(&batch).unwrap();
        assert_eq!(shown.column(0).data_type(), &DataType::UInt64);
        assert_eq!(shown.column(1).as_string::<i32>().value(0), "1.5 KiB");
    }

    #[test]
    fn sizes_are_human() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.0 MiB");
    }
}
