//! Meta-commands: the backslash commands of the shell, their parsing and the tables they show.
//!
//! Parsing is pure ([`Command::from_str`]); running a command needs the shell's state and lives
//! in `exec`. The reports (`\dt`, `\d`, `\metrics`) are built here as record batches from the
//! engine's own API so that they print in every output format. Invariant: [`COMMANDS`] lists
//! every command accepted by the parser (help and completion read it).

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::error::ArrowError;
use strata_engine::{Db, TableInfo, TableOptions};

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
         Ctrl-D or \\q quits. Table functions: strata_sstables('t'), strata_levels('t'),\n\
         strata_memtables(), strata_metrics(), generate_events(rows).",
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

fn strings(values: Vec<String>) -> ArrayRef {
    Arc::new(StringArray::from(values))
}

fn counts(values: Vec<u64>) -> ArrayRef {
    Arc::new(UInt64Array::from(values))
}

fn batch(fields: Vec<(&str, DataType)>, columns: Vec<ArrayRef>) -> Result<RecordBatch, ArrowError> {
    let schema = Schema::new(
        fields
            .into_iter()
            .map(|(n, t)| Field::new(n, t, false))
            .collect::<Vec<_>>(),
    );
    RecordBatch::try_new(Arc::new(schema), columns)
}

/// `\dt`: one row per table with its estimated rows, size, SST files and memtable kind.
pub fn tables_report(tables: &[TableInfo]) -> Result<RecordBatch, ArrowError> {
    let files = |t: &TableInfo| t.stats.files_per_level.iter().sum::<usize>() as u64;
    let size = |t: &TableInfo| t.stats.sst_bytes + t.stats.memtable_bytes;
    batch(
        vec![
            ("table", DataType::Utf8),
            ("primary_key", DataType::Utf8),
            ("rows_estimate", DataType::UInt64),
            ("size", DataType::Utf8),
            ("sst_files", DataType::UInt64),
            ("memtable", DataType::Utf8),
        ],
        vec![
            strings(
                tables
                    .iter()
                    .map(|t| strata_datafusion::functions::name_label(&t.namespace, &t.name))
                    .collect(),
            ),
            strings(tables.iter().map(|t| t.primary_key.join(", ")).collect()),
            counts(tables.iter().map(|t| t.stats.estimated_rows).collect()),
            strings(tables.iter().map(|t| human_bytes(size(t))).collect()),
            counts(tables.iter().map(files).collect()),
            strings(
                tables
                    .iter()
                    .map(|t| t.options.memtable_kind.to_string())
                    .collect(),
            ),
        ],
    )
}

/// `\d TABLE`: columns, then properties and options, then SSTables per level.
pub fn describe_report(db: &Db, name: &str) -> Result<Vec<RecordBatch>, String> {
    let table =
        strata_datafusion::functions::resolve_table(db, "\\d", name).map_err(|e| e.to_string())?;
    let schema = table.schema();
    let key = table.primary_key().to_vec();
    let columns = batch(
        vec![
            ("column", DataType::Utf8),
            ("type", DataType::Utf8),
            ("nullable", DataType::Boolean),
            ("primary_key", DataType::Boolean),
        ],
        vec![
            strings(schema.fields().iter().map(|f| f.name().clone()).collect()),
            strings(
                schema
                    .fields()
                    .iter()
                    .map(|f| f.data_type().to_string())
                    .collect(),
            ),
            Arc::new(BooleanArray::from(
                schema
                    .fields()
                    .iter()
                    .map(|f| f.is_nullable())
                    .collect::<Vec<_>>(),
            )),
            Arc::new(BooleanArray::from(
                schema
                    .fields()
                    .iter()
                    .map(|f| key.contains(f.name()))
                    .collect::<Vec<_>>(),
            )),
        ],
    )
    .map_err(|e| e.to_string())?;

    let stats = table.stats();
    let options = table.options();
    let mut props: Vec<(String, String)> = vec![
        (
            "primary_key".into(),
            if key.is_empty() {
                "(none: hidden row id)".into()
            } else {
                key.join(", ")
            },
        ),
        ("rows_estimate".into(), stats.estimated_rows.to_string()),
        (
            "memtable_entries".into(),
            stats.memtable_entries.to_string(),
        ),
        ("memtable_bytes".into(), human_bytes(stats.memtable_bytes)),
        (
            "immutable_memtables".into(),
            stats.immutable_memtables.to_string(),
        ),
        ("sst_bytes".into(), human_bytes(stats.sst_bytes)),
        ("sst_rows".into(), stats.sst_rows.to_string()),
        ("sst_tombstones".into(), stats.sst_tombstones.to_string()),
    ];
    props.extend(option_rows(&options));
    let properties = batch(
        vec![("property", DataType::Utf8), ("value", DataType::Utf8)],
        vec![
            strings(props.iter().map(|(k, _)| k.clone()).collect()),
            strings(props.iter().map(|(_, v)| v.clone()).collect()),
        ],
    )
    .map_err(|e| e.to_string())?;

    let levels = table.levels();
    let level_batch = batch(
        vec![
            ("level", DataType::UInt64),
            ("sst_files", DataType::UInt64),
            ("runs", DataType::UInt64),
            ("rows", DataType::UInt64),
            ("size", DataType::Utf8),
        ],
        vec![
            counts(levels.iter().map(|l| l.level as u64).collect()),
            counts(levels.iter().map(|l| l.files as u64).collect()),
            counts(levels.iter().map(|l| l.runs as u64).collect()),
            counts(levels.iter().map(|l| l.rows).collect()),
            strings(levels.iter().map(|l| human_bytes(l.bytes)).collect()),
        ],
    )
    .map_err(|e| e.to_string())?;
    Ok(vec![columns, properties, level_batch])
}

/// The table options as `(name, value)` pairs.
fn option_rows(o: &TableOptions) -> Vec<(String, String)> {
    let c = &o.compaction;
    vec![
        ("memtable".into(), o.memtable_kind.to_string()),
        (
            "memtable_size".into(),
            human_bytes(o.memtable_size_bytes as u64),
        ),
        (
            "max_immutable_memtables".into(),
            o.max_immutable_memtables.to_string(),
        ),
        ("sst_compression".into(), o.sst_compression.to_string()),
        (
            "sst_row_group_rows".into(),
            o.sst_row_group_rows.to_string(),
        ),
        (
            "sst_page_size".into(),
            human_bytes(o.sst_page_size_bytes as u64),
        ),
        (
            "sst_index_block_rows".into(),
            o.sst_index_block_rows.to_string(),
        ),
        ("bloom_filter_fpp".into(), o.bloom_filter_fpp.to_string()),
        ("compaction".into(), c.strategy.to_string()),
        (
            "l0_compaction_trigger".into(),
            c.l0_compaction_trigger.to_string(),
        ),
        ("max_levels".into(), c.max_levels.to_string()),
        (
            "target_file_size".into(),
            human_bytes(c.target_file_size_bytes),
        ),
    ]
}

/// The second part of `\metrics`: `strata_compaction_stats()` of every table (per level and
/// in total: files, bytes, flush and compaction counters, write and space amplification,
/// stall time).
pub fn compaction_report(db: &Db) -> Result<RecordBatch, String> {
    let tables = db
        .list_tables()
        .iter()
        .filter_map(|info| db.table_in(&info.namespace, &info.name).ok())
        .collect::<Vec<_>>();
    strata_datafusion::functions::compaction_stats_batch(db, &tables).map_err(|e| e.to_string())
}

/// `\metrics`: every counter and gauge of the database.
pub fn metrics_report(db: &Db) -> Result<RecordBatch, ArrowError> {
    let m = db.metrics();
    batch(
        vec![("metric", DataType::Utf8), ("value", DataType::UInt64)],
        vec![
            strings(m.values.iter().map(|(k, _)| k.to_string()).collect()),
            counts(m.values.iter().map(|(_, v)| *v).collect()),
        ],
    )
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
    fn sizes_are_human() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.0 MiB");
    }
}
