//! Running statements and meta-commands: the shell's state and its three front ends
//! (command-line inputs, a script on standard input, the interactive REPL).
//!
//! Output rules: results go to the shell's output (standard output, or the file of `\o`);
//! status lines (row counts, timings, what a command did) and progress go to standard error
//! and are silenced by `--quiet`; errors go to standard error as one line starting with
//! `Error: `. A statement runs as a Tokio task; in the REPL, Ctrl-C aborts that task (the
//! session stays), and a statement that fails or is cancelled writes nothing of its result
//! (up to [`STATEMENT_BUFFER_BYTES`] are held back). Scripts stop at the first error unless
//! `continue_on_error` is set, and always at a Ctrl-C (the rest of an input or `\i` script
//! is dropped). Scripts are read as they arrive, one statement at a time (at most
//! [`SCRIPT_STATEMENT_BYTES_MAX`] pending). A `COPY ... TO` a local path that fails or is
//! cancelled has the file or directory it created removed.

use std::fs::File;
use std::io::{self, BufRead, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::physical_plan::execute_stream;
use datafusion::sql::parser::{DFParser, Statement as DFStatement};
use futures::{FutureExt, StreamExt};
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{Config, Editor};
use strata_datafusion::StrataSession;
use strata_engine::Db;
use tokio::runtime::Runtime;

use crate::command::{self, Command};
use crate::helper::{Names, StrataHelper};
use crate::print::{
    MaxRows, PrintFormat, PrintOptions, Printed, ResultWriter, STATEMENT_BUFFER_BYTES, SharedOut,
    StatementOutput, lock_out,
};
use crate::progress::{Counter, Progress};
use crate::split::{Piece, split};

/// Deepest nesting of `\i` scripts.
pub const INCLUDE_DEPTH_MAX: usize = 16;

/// Most tables whose columns are offered for completion.
pub const COMPLETION_TABLES_MAX: usize = 256;

/// Environment variable naming the history file (empty: no history).
pub const HISTORY_ENV: &str = "STRATA_HISTORY";

/// Longest wait at exit for work of cancelled statements still running on blocking threads.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(30);

/// Most bytes of one pending statement read from a script (a bound on the memory a script
/// without `;` can take).
pub const SCRIPT_STATEMENT_BYTES_MAX: usize = 256 * 1024 * 1024;

/// Settings of a shell that the user can change while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Output format.
    pub format: PrintFormat,
    /// Row limit of human formats.
    pub maxrows: MaxRows,
    /// Show elapsed time after each statement.
    pub timing: bool,
    /// No status lines.
    pub quiet: bool,
    /// Keep going after a failed statement in scripts.
    pub continue_on_error: bool,
}

/// Why a step stopped.
#[derive(Debug)]
enum StepError {
    /// An error to report as one line.
    Message(String),
    /// An error already reported (inside an included script).
    Reported,
}

impl From<String> for StepError {
    fn from(message: String) -> Self {
        StepError::Message(message)
    }
}

type Step = Result<(), StepError>;

/// Interrupts (Ctrl-C) seen while a statement runs in the REPL.
struct Interrupts {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
}

impl Interrupts {
    /// Installs the handler; from now on Ctrl-C no longer ends the process.
    fn install(rt: &Runtime) -> io::Result<Interrupts> {
        let _guard = rt.enter();
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Interrupts {
                signal: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Interrupts {})
    }

    /// Forgets interrupts that arrived while no statement was running.
    fn clear(&mut self) {
        #[cfg(unix)]
        while let Some(Some(())) = self.signal.recv().now_or_never() {}
    }

    /// Waits for the next interrupt.
    async fn next(&mut self) {
        #[cfg(unix)]
        {
            if self.signal.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// One open database and the state of the shell over it.
pub struct Shell {
    rt: Runtime,
    session: Arc<StrataSession>,
    db: Arc<Db>,
    settings: Settings,
    out: SharedOut,
    /// True while results go to a terminal (standard output, no `\o`).
    out_is_terminal: bool,
    stderr_is_terminal: bool,
    interrupts: Option<Interrupts>,
    include_depth: usize,
    /// Set when Ctrl-C cancelled a statement of the current input.
    interrupted: bool,
    quit: bool,
    errors: usize,
    /// The directory of a `--memory` database, removed after the database is closed.
    temp: Option<tempfile::TempDir>,
}

impl Shell {
    /// A shell over `session`, writing results to standard output. `temp` is the directory of
    /// a throw-away database, removed when the shell closes.
    pub fn new(
        rt: Runtime,
        session: StrataSession,
        settings: Settings,
        temp: Option<tempfile::TempDir>,
    ) -> Shell {
        let db = Arc::clone(session.db());
        Shell {
            rt,
            session: Arc::new(session),
            db,
            settings,
            out: Arc::new(std::sync::Mutex::new(Box::new(io::stdout()))),
            out_is_terminal: io::stdout().is_terminal(),
            stderr_is_terminal: io::stderr().is_terminal(),
            interrupts: None,
            include_depth: 0,
            interrupted: false,
            quit: false,
            errors: 0,
            temp,
        }
    }

    /// The current settings.
    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// Number of errors reported so far.
    pub fn errors(&self) -> usize {
        self.errors
    }

    /// True once `\q` ran.
    pub fn quit_requested(&self) -> bool {
        self.quit
    }

    /// Flushes every table and closes the database (releasing its lock), then removes a
    /// throw-away database's directory. A table that cannot be flushed is a warning, not a
    /// failure: its rows stay in the WAL.
    pub fn close(self) -> Result<(), String> {
        let Shell {
            rt,
            session,
            db,
            out,
            temp,
            ..
        } = self;
        // A table that cannot be flushed does not fail the exit: its rows are safe in the
        // write-ahead log (synced at close) and replayed at the next open.
        let flushed = if temp.is_none() {
            match db.flush_tables() {
                Ok(failed) => {
                    for (table, error) in failed {
                        eprintln!(
                            "Warning: table '{table}' could not be flushed at exit ({}); its \
                             rows stay in the write-ahead log and are replayed at the next open",
                            one_line(&error.to_string())
                        );
                    }
                    Ok(())
                }
                Err(e) => Err(format!("flushing at exit failed: {e}")),
            }
        } else {
            Ok(())
        };
        drop(db);
        let output = lock_out(&out)
            .flush()
            .map_err(|e| format!("writing output failed: {e}"));
        drop(out);
        // Work of a cancelled statement may still run on a blocking thread holding the
        // session; shutting the runtime down waits for it (bounded).
        rt.shutdown_timeout(SHUTDOWN_WAIT);
        let closed = match Arc::try_unwrap(session) {
            Ok(session) => session
                .close()
                .map_err(|e| format!("closing the database failed: {}", error_line(&e))),
            Err(_) => Err("the database is still in use at exit".into()),
        };
        drop(temp);
        flushed.and(output).and(closed)
    }

    fn status(&self, message: &str) {
        if !self.settings.quiet {
            eprintln!("{message}");
        }
    }

    fn report(&mut self, message: &str, location: Option<(&str, usize)>) {
        self.errors += 1;
        let message = one_line(message);
        match location {
            Some((source, line)) => eprintln!("Error: {message} ({source}:{line})"),
            None => eprintln!("Error: {message}"),
        }
    }

    /// Runs a script: its statements and meta-commands in order. `source` names the file in
    /// error lines. Returns false when it stopped at (or, with `continue_on_error`, met) an
    /// error.
    pub fn run_script(&mut self, script: &str, source: Option<&str>) -> bool {
        self.run_input(&mut script.as_bytes(), source)
    }

    /// Runs a script read from `input` as it arrives: each complete statement runs before
    /// the next is read, so piped input and large files are never held whole. Returns false
    /// when it stopped at (or met) an error.
    pub fn run_input(&mut self, input: &mut dyn BufRead, source: Option<&str>) -> bool {
        match self.script(input, source) {
            Ok(()) => true,
            Err(StepError::Reported) => false,
            Err(StepError::Message(m)) => {
                self.report(&m, None);
                false
            }
        }
    }

    fn script(&mut self, input: &mut dyn BufRead, source: Option<&str>) -> Step {
        let mut failed = false;
        // Text read but not run yet, starting on line `first_line` of the script.
        let mut pending = String::new();
        let mut first_line = 1;
        let mut lines = 0;
        let mut line = String::new();
        while !self.quit {
            line.clear();
            let eof = input
                .read_line(&mut line)
                .map_err(|e| format!("cannot read {}: {e}", source.unwrap_or("the script")))?
                == 0;
            if !eof {
                lines += 1;
                pending.push_str(&line);
            }
            // Only a `;` or a meta-command line can end a statement.
            let may_end = eof || line.contains(';') || line.trim_start().starts_with('\\');
            if !may_end {
                if pending.len() > SCRIPT_STATEMENT_BYTES_MAX {
                    return Err(format!(
                        "a statement of the script (from line {first_line}) is longer than \
                         {SCRIPT_STATEMENT_BYTES_MAX} bytes; is a ';' missing?"
                    )
                    .into());
                }
                continue;
            }
            let split = split(&pending);
            if !eof && !split.is_complete() {
                continue;
            }
            for piece in split.into_all() {
                if self.quit {
                    break;
                }
                let at = first_line + piece.line() - 1;
                let error = match self.run_piece(piece) {
                    Ok(()) => continue,
                    Err(StepError::Reported) => None,
                    Err(StepError::Message(m)) => Some(m),
                };
                if let Some(m) = error {
                    self.report(&m, source.map(|s| (s, at)));
                }
                failed = true;
                if !self.settings.continue_on_error || self.interrupted {
                    return Err(StepError::Reported);
                }
            }
            pending.clear();
            first_line = lines + 1;
            if eof {
                break;
            }
        }
        if failed {
            Err(StepError::Reported)
        } else {
            Ok(())
        }
    }

    fn run_piece(&mut self, piece: Piece) -> Step {
        match piece {
            Piece::Sql { text, .. } => self.run_sql(&text),
            Piece::Meta { text, .. } => {
                let command: Command = text.parse()?;
                self.run_command(command)
            }
        }
    }

    /// Runs a script file (for `-f`).
    pub fn run_file(&mut self, path: &Path) -> bool {
        match File::open(path) {
            Ok(file) => self.run_input(
                &mut io::BufReader::new(file),
                Some(&path.display().to_string()),
            ),
            Err(e) => {
                self.report(&format!("cannot read {}: {e}", path.display()), None);
                false
            }
        }
    }

    fn print_options(&self) -> PrintOptions {
        PrintOptions {
            format: self.settings.format,
            maxrows: self.settings.maxrows,
            fit_width: self.out_is_terminal,
        }
    }

    /// Runs a future on the runtime as a task; in the REPL, Ctrl-C aborts it.
    fn run_task<T: Send + 'static>(
        &mut self,
        task: impl std::future::Future<Output = Result<T, String>> + Send + 'static,
    ) -> Result<T, String> {
        let handle = self.rt.spawn(task);
        let interrupts = &mut self.interrupts;
        let mut cancelled = false;
        let cancelled_flag = &mut cancelled;
        let result = self.rt.block_on(async move {
            let mut handle = handle;
            let joined = match interrupts {
                Some(interrupts) => {
                    interrupts.clear();
                    tokio::select! {
                        joined = &mut handle => joined,
                        _ = interrupts.next() => {
                            handle.abort();
                            let _ = handle.await;
                            *cancelled_flag = true;
                            return Err("cancelled (Ctrl-C)".to_string());
                        }
                    }
                }
                None => handle.await,
            };
            joined.map_err(|e| format!("statement failed: {e}"))?
        });
        self.interrupted |= cancelled;
        result
    }

    /// Runs one SQL statement and prints its result.
    fn run_sql(&mut self, sql: &str) -> Step {
        self.run_sql_titled(sql, "running", true)
    }

    /// Runs one SQL statement with progress titled `title`; `print: false` runs it for its
    /// effect only (no result, no status line).
    fn run_sql_titled(&mut self, sql: &str, title: &str, print: bool) -> Step {
        let session = Arc::clone(&self.session);
        let db = Arc::clone(&self.db);
        let options = self.print_options();
        let out = Arc::clone(&self.out);
        let counter = Counter::for_sql(sql);
        let show_progress = self.stderr_is_terminal && !self.settings.quiet;
        // A failed COPY would leave a partial file behind: remove what it created.
        let created = copy_target(sql).filter(|p| !p.exists());
        let sql = sql.to_string();
        let title = title.to_string();
        let started = Instant::now();
        let result = self.run_task(async move {
            let progress = counter.map(|c| Progress::start(&db, c, &title, show_progress));
            execute(&session, &sql, options, out, progress, print)
                .await
                .map_err(|e| error_line(&e))
        });
        let printed = match result {
            Ok(printed) => printed,
            Err(e) => {
                if let Some(path) = created {
                    remove_output(&path);
                }
                return Err(e.into());
            }
        };
        if print {
            self.summary(printed, started.elapsed());
        }
        Ok(())
    }

    fn summary(&self, printed: Option<Printed>, elapsed: Duration) {
        let time = if self.settings.timing {
            format!(" ({:.3}s)", elapsed.as_secs_f64())
        } else {
            String::new()
        };
        let text = match printed {
            None => format!("OK{time}"),
            Some(p) if p.shown < p.rows => {
                // Shown even when quiet: the output is incomplete.
                eprintln!(
                    "{} rows, {} shown{time} (\\maxrows to change)",
                    p.rows, p.shown
                );
                return;
            }
            Some(p) => format!("{} row{}{time}", p.rows, if p.rows == 1 { "" } else { "s" }),
        };
        self.status(&text);
    }

    /// Runs one query of a meta-command through the session, as typed SQL runs, and returns
    /// its schema and rows (a meta-command's result is small: a row per table, column, level
    /// or metric). `counter` drives progress while it runs; Ctrl-C cancels it.
    fn query(
        &mut self,
        sql: &str,
        title: &str,
        counter: Option<Counter>,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), String> {
        let session = Arc::clone(&self.session);
        let db = Arc::clone(&self.db);
        let show = self.stderr_is_terminal && !self.settings.quiet;
        let sql = sql.to_string();
        let title = title.to_string();
        self.run_task(async move {
            let _progress = counter.map(|c| Progress::start(&db, c, &title, show));
            let collect = async {
                let mut stream = session.sql(&sql).await?.execute_stream().await?;
                let schema = stream.schema();
                let mut batches = Vec::new();
                while let Some(batch) = stream.next().await {
                    batches.push(batch?);
                }
                Ok::<_, DataFusionError>((schema, batches))
            };
            collect.await.map_err(|e| error_line(&e))
        })
    }

    /// Runs the query of a report (`\dt`, a part of `\d` or `\metrics`) and prints its
    /// result with byte counts shown for people ([`command::humanize`]); `skip_empty` prints
    /// nothing when it has no rows.
    fn report_query(&mut self, sql: &str, skip_empty: bool) -> Step {
        let (schema, batches) = self.query(sql, "reading", None)?;
        self.print_report(schema, &batches, skip_empty)
    }

    /// Prints the result of a report's query (see [`Shell::report_query`]).
    fn print_report(
        &mut self,
        schema: SchemaRef,
        batches: &[RecordBatch],
        skip_empty: bool,
    ) -> Step {
        if skip_empty && batches.iter().all(|b| b.num_rows() == 0) {
            return Ok(());
        }
        let shown = batches
            .iter()
            .map(command::humanize)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let schema = command::humanize(&RecordBatch::new_empty(schema))
            .map_err(|e| e.to_string())?
            .schema();
        self.print_batches(schema, &shown)
    }

    /// Prints batches of one report in the current format.
    fn print_batches(&mut self, schema: SchemaRef, batches: &[RecordBatch]) -> Step {
        let target = StatementOutput::new(Arc::clone(&self.out), STATEMENT_BUFFER_BYTES);
        let mut writer = ResultWriter::new(target, schema, self.print_options());
        for b in batches {
            writer.write(b).map_err(|e| e.to_string())?;
        }
        let (printed, out) = writer.finish().map_err(|e| e.to_string())?;
        out.commit()
            .map_err(|e| format!("writing output failed: {e}"))?;
        if printed.shown < printed.rows {
            eprintln!("{} rows, {} shown", printed.rows, printed.shown);
        }
        Ok(())
    }

    fn write_text(&mut self, text: &str) -> Step {
        let mut out = lock_out(&self.out);
        writeln!(out, "{text}")
            .and_then(|_| out.flush())
            .map_err(|e| StepError::Message(format!("writing output failed: {e}")))
    }

    /// Runs one meta-command.
    fn run_command(&mut self, command: Command) -> Step {
        match command {
            Command::Help => self.write_text(&command::help_text()),
            Command::Quit => {
                self.quit = true;
                Ok(())
            }
            Command::ListTables => self.report_query(command::LIST_TABLES_SQL, false),
            Command::Describe(name) => self.describe(&name),
            Command::Timing(on) => {
                self.settings.timing = on.unwrap_or(!self.settings.timing);
                let state = if self.settings.timing { "on" } else { "off" };
                self.status(&format!("Timing is {state}."));
                Ok(())
            }
            Command::Format(format) => {
                if let Some(format) = format {
                    self.settings.format = format;
                }
                // Asked for, so shown even when quiet.
                eprintln!("Output format is {}.", self.settings.format);
                Ok(())
            }
            Command::MaxRows(maxrows) => {
                if let Some(maxrows) = maxrows {
                    self.settings.maxrows = maxrows;
                }
                eprintln!("Showing at most {} rows per result.", self.settings.maxrows);
                Ok(())
            }
            Command::Include(path) => self.include(&path),
            Command::Output(None) => {
                self.out = Arc::new(std::sync::Mutex::new(Box::new(io::stdout())));
                self.out_is_terminal = io::stdout().is_terminal();
                self.status("Output goes to standard output.");
                Ok(())
            }
            Command::Output(Some(path)) => {
                let file = File::create(&path)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                self.out = Arc::new(std::sync::Mutex::new(Box::new(BufWriter::new(file))));
                self.out_is_terminal = false;
                self.status(&format!("Output goes to {}.", path.display()));
                Ok(())
            }
            Command::Flush(table) => self.flush(table),
            Command::Compact(name) => self.compact(&name),
            Command::Metrics => {
                let [counters, tables] = command::METRICS_SQL;
                self.report_query(counters, false)?;
                self.report_query(tables, true)
            }
            Command::Demo(rows) => self.demo(rows),
        }
    }

    fn include(&mut self, path: &Path) -> Step {
        if self.include_depth >= INCLUDE_DEPTH_MAX {
            return Err(format!("\\i nested more than {INCLUDE_DEPTH_MAX} deep").into());
        }
        let file = File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        self.include_depth += 1;
        let result = self.script(
            &mut io::BufReader::new(file),
            Some(&path.display().to_string()),
        );
        self.include_depth -= 1;
        result
    }

    /// `\d TABLE`: a Strata table's columns, properties and levels, each a query over the
    /// table functions; any other table of the session (external table, view) has only its
    /// columns.
    fn describe(&mut self, name: &str) -> Step {
        let [columns, properties, levels] = command::describe_sql(name);
        match self.query(&columns, "reading", None) {
            Ok((schema, batches)) => {
                self.print_report(schema, &batches, false)?;
                for sql in [properties, levels] {
                    self.report_query(&sql, false)?;
                }
                Ok(())
            }
            Err(not_strata) if !self.interrupted => {
                let Ok(provider) = self.rt.block_on(self.session.table_provider(name)) else {
                    return Err(not_strata.into());
                };
                let report = columns_report(&provider.schema()).map_err(|e| e.to_string())?;
                self.print_batches(report.schema(), &[report])
            }
            Err(cancelled) => Err(cancelled.into()),
        }
    }

    /// `\flush [TABLE]`: runs `strata_flush` and says what it wrote.
    fn flush(&mut self, table: Option<String>) -> Step {
        let started = Instant::now();
        let sql = command::flush_sql(table.as_deref());
        let (_, batches) = self.query(&sql, "flushing", Some(Counter::FlushRows))?;
        let rows: u64 = batches.iter().map(|b| column_sum(b, 1)).sum();
        let what = match table {
            None => "every table".to_string(),
            Some(name) => format!("table {}", first_text(&batches, 0).unwrap_or(name)),
        };
        self.status(&format!(
            "Flushed {what}: {rows} rows written to SSTables ({:.3}s).",
            started.elapsed().as_secs_f64()
        ));
        Ok(())
    }

    /// `\compact TABLE`: runs `strata_compact` and says how many files it left.
    fn compact(&mut self, name: &str) -> Step {
        let started = Instant::now();
        let sql = command::compact_sql(name);
        let (_, batches) = self.query(&sql, "compacting", Some(Counter::ScanRows))?;
        let label = first_text(&batches, 0).unwrap_or_else(|| name.to_string());
        self.status(&format!(
            "Compacted table {label}: {} SSTables before, {} after ({:.3}s).",
            batches.iter().map(|b| column_sum(b, 1)).sum::<u64>(),
            batches.iter().map(|b| column_sum(b, 2)).sum::<u64>(),
            started.elapsed().as_secs_f64()
        ));
        Ok(())
    }

    fn demo(&mut self, rows: u64) -> Step {
        const NAME: &str = "events";
        let exists = self
            .session
            .context()
            .table_exist(NAME)
            .map_err(|e| error_line(&e))?;
        if exists {
            return Err(format!(
                "table {NAME} already exists; DROP TABLE {NAME} first to reload it"
            )
            .into());
        }
        let started = Instant::now();
        self.run_sql_titled(
            &strata_datafusion::functions::events_create_table_sql(NAME),
            "creating events",
            false,
        )?;
        let loaded = self.run_sql_titled(
            &format!("INSERT INTO {NAME} SELECT * FROM generate_events({rows})"),
            "loading events",
            false,
        );
        if let Err(e) = loaded {
            // No half-made sample: a failed or cancelled load leaves no table behind.
            if let Err(drop_error) =
                self.run_sql_titled(&format!("DROP TABLE IF EXISTS {NAME}"), "dropping", false)
            {
                tracing::warn!(?drop_error, "dropping the unfinished demo table");
            }
            return Err(e);
        }
        self.status(&format!(
            "Loaded {rows} rows into table {NAME} (id BIGINT primary key, user_id INT, kind \
             VARCHAR, amount DOUBLE, ts TIMESTAMP) in {:.3}s. Try:\n  \
             SELECT kind, count(*) AS n, round(avg(amount), 2) AS avg_amount FROM {NAME} \
             GROUP BY kind ORDER BY n DESC LIMIT 5;",
            started.elapsed().as_secs_f64()
        ));
        Ok(())
    }

    /// The names the completer offers: every table of the session and their columns.
    fn names(&self) -> Names {
        let mut names = Names::default();
        let ctx = self.session.context();
        for catalog_name in ctx.catalog_names() {
            let Some(catalog) = ctx.catalog(&catalog_name) else {
                continue;
            };
            for schema_name in catalog.schema_names() {
                if schema_name == "information_schema" {
                    continue;
                }
                let Some(schema) = catalog.schema(&schema_name) else {
                    continue;
                };
                for table in schema.table_names() {
                    if names.tables.len() < COMPLETION_TABLES_MAX
                        && let Ok(Some(provider)) = self.rt.block_on(schema.table(&table))
                    {
                        names
                            .columns
                            .extend(provider.schema().fields().iter().map(|f| f.name().clone()));
                    }
                    names.tables.push(table);
                }
            }
        }
        for info in self.db.list_tables() {
            names
                .columns
                .extend(info.schema.fields().iter().map(|f| f.name().clone()));
            names.tables.push(info.name);
        }
        names.tables.sort();
        names.tables.dedup();
        names.columns.sort();
        names.columns.dedup();
        names
    }

    /// The interactive loop: reads statements with rustyline until `\q` or Ctrl-D.
    pub fn repl(&mut self, history: Option<PathBuf>) -> Result<(), String> {
        let config = Config::builder()
            .auto_add_history(false)
            .max_history_size(10_000)
            .map_err(|e| e.to_string())?
            .build();
        let names = Arc::new(RwLock::new(Names::default()));
        let mut editor: Editor<StrataHelper, DefaultHistory> = Editor::with_config(config)
            .map_err(|e| format!("cannot start the line editor: {e}"))?;
        editor.set_helper(Some(StrataHelper::new(Arc::clone(&names))));
        if let Some(path) = &history {
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            // A missing history file is normal on first use.
            let _ = editor.load_history(path);
        }
        self.interrupts =
            Some(Interrupts::install(&self.rt).map_err(|e| format!("cannot handle Ctrl-C: {e}"))?);
        while !self.quit {
            *names.write().unwrap_or_else(|p| p.into_inner()) = self.names();
            match editor.readline("strata> ") {
                Ok(input) => {
                    if input.trim().is_empty() {
                        continue;
                    }
                    let _ = editor.add_history_entry(input.trim_end());
                    if let Some(path) = &history {
                        // History survives a crash of the session.
                        let _ = editor.append_history(path);
                    }
                    let previous = self.settings.continue_on_error;
                    self.settings.continue_on_error = true;
                    self.interrupted = false;
                    self.run_script(&input, None);
                    self.settings.continue_on_error = previous;
                }
                Err(ReadlineError::Interrupted) => {
                    // Ctrl-C at the prompt clears the line.
                    continue;
                }
                Err(ReadlineError::Eof) => break,
                Err(e) => return Err(format!("reading input failed: {e}")),
            }
        }
        Ok(())
    }
}

/// Runs `sql` and writes its result (unless `print` is false); `None` for statements without
/// a result set. `progress` follows the statement's plan and is cleared before the result is
/// written.
async fn execute(
    session: &StrataSession,
    sql: &str,
    options: PrintOptions,
    out: SharedOut,
    progress: Option<Progress>,
    print: bool,
) -> Result<Option<Printed>, DataFusionError> {
    let df = session.sql(sql).await?;
    let task_ctx = Arc::new(df.task_ctx());
    let plan = df.create_physical_plan().await?;
    if let Some(progress) = &progress {
        progress.follow_plan(&plan);
    }
    let mut stream = execute_stream(plan, task_ctx)?;
    let schema = stream.schema();
    if !print || schema.fields().is_empty() {
        while let Some(batch) = stream.next().await {
            batch?;
        }
        return Ok(None);
    }
    let target = StatementOutput::new(out, STATEMENT_BUFFER_BYTES);
    let mut writer = ResultWriter::new(target, schema, options);
    while let Some(batch) = stream.next().await {
        writer.write(&batch?)?;
    }
    let (printed, target) = writer.finish()?;
    drop(progress);
    target.commit()?;
    Ok(Some(printed))
}

/// The local file or directory a `COPY ... TO` statement writes, if `sql` is one.
pub fn copy_target(sql: &str) -> Option<PathBuf> {
    let mut statements = DFParser::parse_sql(sql).ok()?;
    if statements.len() != 1 {
        return None;
    }
    let DFStatement::CopyTo(copy) = statements.pop_front()? else {
        return None;
    };
    match copy.target.split_once("://") {
        None => Some(PathBuf::from(copy.target)),
        Some(("file", path)) => Some(PathBuf::from(path)),
        Some(_) => None,
    }
}

/// Removes the output of a failed `COPY` (a file, or a directory of partitioned files it
/// created).
fn remove_output(path: &Path) {
    let removed = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else if path.exists() {
        std::fs::remove_file(path)
    } else {
        Ok(())
    };
    if let Err(error) = removed {
        tracing::warn!(%error, path = %path.display(), "removing the output of a failed COPY");
    }
}

/// The sum of the `UInt64` column `index` of `batch` (0 if it is not one).
fn column_sum(batch: &RecordBatch, index: usize) -> u64 {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::UInt64Type;
    batch
        .column(index)
        .as_primitive_opt::<UInt64Type>()
        .map_or(0, |values| values.iter().flatten().sum())
}

/// The first value of the text column `index` of `batches`.
fn first_text(batches: &[RecordBatch], index: usize) -> Option<String> {
    use datafusion::arrow::array::{Array, AsArray};
    let values = batches.iter().find(|b| b.num_rows() > 0)?.column(index);
    let values = values.as_string_opt::<i32>()?;
    (!values.is_null(0)).then(|| values.value(0).to_string())
}

/// A one-row-per-column report of a schema (for tables that are not Strata tables).
fn columns_report(
    schema: &datafusion::arrow::datatypes::SchemaRef,
) -> Result<RecordBatch, datafusion::arrow::error::ArrowError> {
    use datafusion::arrow::array::{BooleanArray, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    let fields = schema.fields();
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("column", DataType::Utf8, false),
            Field::new("type", DataType::Utf8, false),
            Field::new("nullable", DataType::Boolean, false),
        ])),
        vec![
            Arc::new(StringArray::from_iter_values(
                fields.iter().map(|f| f.name().clone()),
            )),
            Arc::new(StringArray::from_iter_values(
                fields.iter().map(|f| f.data_type().to_string()),
            )),
            Arc::new(BooleanArray::from(
                fields.iter().map(|f| f.is_nullable()).collect::<Vec<_>>(),
            )),
        ],
    )
}

/// The message of a DataFusion error in one line, without backtraces; parser errors keep
/// their `Line: L, Column: C` position.
pub fn error_line(error: &DataFusionError) -> String {
    let root = match error {
        DataFusionError::Context(..) | DataFusionError::Shared(_) => error,
        other => other.find_root(),
    };
    let text = match root {
        DataFusionError::SQL(e, _) => e.to_string(),
        DataFusionError::External(e) => e.to_string(),
        other => other.strip_backtrace(),
    };
    // Wrapped errors repeat their kind ("Parquet error: Parquet error: ..."): say it once.
    let mut parts: Vec<&str> = Vec::new();
    for part in text.split(": ") {
        if parts.last() != Some(&part) {
            parts.push(part);
        }
    }
    one_line(&parts.join(": "))
}

/// Joins the lines of a message with spaces.
pub fn one_line(text: &str) -> String {
    text.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The history file: `$STRATA_HISTORY` if set (empty disables history), else
/// `<user data dir>/strata/history`.
pub fn history_path() -> Option<PathBuf> {
    match std::env::var_os(HISTORY_ENV) {
        Some(v) if v.is_empty() => None,
        Some(v) => Some(PathBuf::from(v)),
        None => dirs::data_dir().map(|d| d.join("strata").join("history")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_targets_are_local_paths_only() {
        assert_eq!(
            copy_target("COPY (SELECT 1) TO 'out/x.csv' STORED AS CSV"),
            Some(PathBuf::from("out/x.csv"))
        );
        assert_eq!(
            copy_target("copy t to 'file:///tmp/y.parquet'"),
            Some(PathBuf::from("/tmp/y.parquet"))
        );
        assert_eq!(copy_target("COPY t TO 's3://bucket/y.parquet'"), None);
        assert_eq!(copy_target("SELECT 1"), None);
        assert_eq!(copy_target("COPY t TO 'a.csv'; COPY t TO 'b.csv'"), None);
    }

    #[test]
    fn errors_are_one_line_with_positions() {
        let e = datafusion::sql::parser::DFParser::parse_sql("SELECT 1;\nSELEC 2").unwrap_err();
        let line = error_line(&e);
        assert!(line.starts_with("sql parser error: "), "{line}");
        assert!(line.contains("Line: 2, Column: 1"), "{line}");
        assert!(!line.contains('\n'));
        let e = DataFusionError::Plan("a\nb".into());
        assert_eq!(error_line(&e), "Error during planning: a b");
        let e = DataFusionError::Execution("Parquet error: Parquet error: bad footer".into());
        assert_eq!(error_line(&e), "Execution error: Parquet error: bad footer");
    }
}
