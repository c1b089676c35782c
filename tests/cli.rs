//! The `strata` binary driven without a terminal: `-c`, `-f` and scripts on standard input,
//! every output format, restart persistence, meta-commands, exit codes and bad input (one
//! clear error line, nothing written).
//!
//! Every run gets its own temporary directory as working directory and as `HOME` /
//! `XDG_DATA_HOME`, so no test touches the user's files or another test's database.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

/// Longest wait for output of a process that runs while the test talks to it.
const DEADLINE: Duration = Duration::from_secs(180);

/// A scratch directory for one test.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.file(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(STRATA);
        cmd.args(args)
            .current_dir(self.path())
            .env("HOME", self.path())
            .env("XDG_DATA_HOME", self.path().join("xdg"))
            .env_remove("STRATA_HISTORY")
            .env_remove("RUST_LOG");
        cmd
    }

    /// Runs `strata ARGS` with `stdin` as its standard input.
    fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Run {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        let script = stdin.to_string();
        let writer = std::thread::spawn(move || {
            // The process may stop reading at an error; a broken pipe is fine then.
            let _ = input.write_all(script.as_bytes());
        });
        let output = child.wait_with_output().unwrap();
        writer.join().unwrap();
        Run::from(output)
    }

    /// Runs `strata ARGS` with an empty standard input.
    fn run(&self, args: &[&str]) -> Run {
        self.run_with_stdin(args, "")
    }
}

/// What one run printed.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8(o.stdout).unwrap(),
            stderr: String::from_utf8(o.stderr).unwrap(),
        }
    }
}

impl Run {
    #[track_caller]
    fn ok(&self) -> &Run {
        assert_eq!(self.code, Some(0), "{self:#?}");
        self
    }

    #[track_caller]
    fn failed(&self) -> &Run {
        assert_eq!(self.code, Some(1), "{self:#?}");
        self
    }

    /// The lines of standard error that report errors.
    fn errors(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("Error: "))
            .collect()
    }

    /// Asserts exactly one error line, containing every one of `parts`.
    #[track_caller]
    fn one_error(&self, parts: &[&str]) -> &Run {
        let errors = self.errors();
        assert_eq!(errors.len(), 1, "{self:#?}");
        for part in parts {
            assert!(errors[0].contains(part), "{part:?} not in {:?}", errors[0]);
        }
        self
    }
}

const QUERY: &str = "SELECT * FROM (VALUES (1, 'a,b', CAST(NULL AS VARCHAR), 1.5), \
                     (22, 'c|d', 'x', -2.0)) AS t(n, s, z, f) ORDER BY n";

#[test]
fn every_format_prints_the_same_rows() {
    let s = Scratch::new();
    let expected = [
        (
            "table",
            "+----+-----+------+------+\n\
             | n  | s   | z    | f    |\n\
             +----+-----+------+------+\n\
             |  1 | a,b | NULL |  1.5 |\n\
             | 22 | c|d | x    | -2.0 |\n\
             +----+-----+------+------+\n",
        ),
        ("csv", "n,s,z,f\n1,\"a,b\",,1.5\n22,c|d,x,-2.0\n"),
        ("tsv", "n\ts\tz\tf\n1\ta,b\t\t1.5\n22\tc|d\tx\t-2.0\n"),
        (
            "json",
            "[{\"n\":1,\"s\":\"a,b\",\"f\":1.5},{\"n\":22,\"s\":\"c|d\",\"z\":\"x\",\"f\":-2.0}]\n",
        ),
        (
            "ndjson",
            "{\"n\":1,\"s\":\"a,b\",\"f\":1.5}\n{\"n\":22,\"s\":\"c|d\",\"z\":\"x\",\"f\":-2.0}\n",
        ),
        (
            "markdown",
            "| n | s | z | f |\n|---:|---|---|---:|\n| 1 | a,b | NULL | 1.5 |\n| 22 | c\\|d | x | -2.0 |\n",
        ),
    ];
    for (format, want) in expected {
        let run = s.run(&["--memory", "--quiet", "--format", format, "-c", QUERY]);
        run.ok();
        assert_eq!(run.stdout, want, "format {format}");
        assert_eq!(run.stderr, "", "format {format}: quiet prints no status");
        // The same through `\format` in a script on standard input.
        let run = s.run_with_stdin(
            &["--memory", "--quiet"],
            &format!("\\format {format}\n{QUERY};\n"),
        );
        run.ok();
        assert_eq!(run.stdout, want, "\\format {format}");
    }
    let run = s.run(&["--memory", "--format", "xml", "-c", "SELECT 1"]);
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert!(run.stderr.contains("markdown"), "{run:#?}");
}

#[test]
fn commands_and_files_run_in_order_and_data_survives_a_restart() {
    let s = Scratch::new();
    let insert = s.write(
        "insert.sql",
        b"-- two rows, one statement over three lines\n\
          INSERT INTO kv VALUES\n  (1, 'one'),\n  (2, 'two');\n\
          INSERT INTO kv VALUES (2, 'TWO'); -- an upsert\n",
    );
    let insert = insert.to_str().unwrap();
    let run = s.run(&[
        "db",
        "-c",
        "CREATE TABLE kv (k INT PRIMARY KEY, v VARCHAR)",
        "-f",
        insert,
        "-c",
        "SELECT k, v FROM kv ORDER BY k",
        "--format",
        "csv",
    ]);
    run.ok();
    assert_eq!(
        run.stdout, "count\n2\ncount\n1\nk,v\n1,one\n2,TWO\n",
        "{run:#?}"
    );
    assert!(
        run.stderr.contains("Created database directory db"),
        "{run:#?}"
    );
    assert!(run.stderr.contains("2 rows ("), "row counts: {run:#?}");
    // A second process on the same directory sees the rows (and could take the lock).
    let run = s.run(&[
        "db",
        "--format",
        "csv",
        "-c",
        "SELECT k, v FROM kv ORDER BY k",
        "-c",
        "SELECT count(*) AS ssts FROM strata_sstables('kv')",
    ]);
    run.ok();
    assert_eq!(
        run.stdout, "k,v\n1,one\n2,TWO\nssts\n1\n",
        "flushed at exit: {run:#?}"
    );
    assert!(!run.stderr.contains("Created"), "{run:#?}");
}

#[test]
fn the_default_data_dir_is_created_in_the_working_directory() {
    let s = Scratch::new();
    s.run(&["-q", "-c", "CREATE TABLE t (a INT PRIMARY KEY)"])
        .ok();
    assert!(s.file("strata-data").is_dir());
    let run = s.run(&["-q", "--format", "csv", "-c", "SHOW TABLES"]);
    run.ok();
    assert!(run.stdout.contains(",public,t,BASE TABLE"), "{run:#?}");
    // A long load draws no progress bar when standard error is not a terminal.
    let run = s.run(&["-c", "\\demo 150000"]);
    run.ok();
    assert_eq!(run.stdout, "");
    assert!(
        !run.stderr.contains("loading") && !run.stderr.contains('\r'),
        "{run:#?}"
    );
    assert!(
        run.stderr
            .starts_with("Loaded 150000 rows into table events"),
        "{run:#?}"
    );
    // A throw-away database leaves nothing behind.
    let other = Scratch::new();
    other
        .run(&["--memory", "-c", "CREATE TABLE t (a INT PRIMARY KEY)"])
        .ok();
    assert!(!other.file("strata-data").exists());
}

#[test]
fn stdin_scripts_run_statements_and_meta_commands() {
    let s = Scratch::new();
    let script = "\\timing off\n\
        CREATE TABLE t (id BIGINT PRIMARY KEY, name VARCHAR);\n\
        /* a comment; with a semicolon */\n\
        INSERT INTO t VALUES (1, 'semi;colon'), (2, 'it''s');\n\
        \\format ndjson\n\
        SELECT *\n  FROM t\n  ORDER BY id;\n\
        \\format csv\n\
        SELECT count(*) AS n FROM t";
    let run = s.run_with_stdin(&["--memory"], script);
    run.ok();
    assert_eq!(
        run.stdout,
        "+-------+\n| count |\n+-------+\n|     2 |\n+-------+\n\
         {\"id\":1,\"name\":\"semi;colon\"}\n{\"id\":2,\"name\":\"it's\"}\nn\n2\n",
        "{run:#?}"
    );
    assert!(run.stderr.contains("Timing is off."), "{run:#?}");
    assert!(!run.stderr.contains("s)"), "no timings: {run:#?}");
}

#[test]
fn included_scripts_and_external_tables() {
    let s = Scratch::new();
    s.write("people.csv", b"id,name\n1,ada\n2,alan\n");
    s.write(
        "load.sql",
        b"CREATE EXTERNAL TABLE people_csv STORED AS CSV LOCATION 'people.csv' \
          OPTIONS ('format.has_header' 'true');\n\
          INSERT INTO people SELECT id, name FROM people_csv;\n",
    );
    let run = s.run_with_stdin(
        &["db", "-q", "--format", "csv"],
        "CREATE TABLE people (id BIGINT PRIMARY KEY, name VARCHAR);\n\
         \\i load.sql\n\
         \\d people_csv\n\
         SELECT name FROM people ORDER BY id;\n",
    );
    run.ok();
    assert_eq!(
        run.stdout,
        "count\n2\ncolumn,type,nullable\nid,Int64,true\nname,Utf8,true\nname\nada\nalan\n",
        "{run:#?}"
    );
}

#[test]
fn stdin_statements_run_as_they_arrive() {
    // The first process holds the database open while it waits for more input; a second one
    // is refused with a clear error.
    let s = Scratch::new();
    let mut first = s
        .command(&["db", "--quiet", "--format", "csv"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = first.stdin.take().unwrap();
    input.write_all(b"SELECT 'ready' AS state;\n").unwrap();
    input.flush().unwrap();
    // Lines of its output arrive on a channel, so that a hang fails the test instead of
    // blocking it.
    let out = BufReader::new(first.stdout.take().unwrap());
    let (tx, lines) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in out.lines() {
            if tx.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    let mut next = || match lines.recv_timeout(DEADLINE) {
        Ok(line) => line,
        Err(e) => {
            let _ = first.kill();
            panic!("no output from the first process: {e}");
        }
    };
    assert_eq!([next(), next()], ["state", "ready"]);
    let run = s.run(&["db", "-c", "SELECT 1"]);
    run.failed()
        .one_error(&["cannot open the database in db", "already open"]);
    assert_eq!(run.stdout, "");
    input.write_all(b"SELECT 2 AS two;\n").unwrap();
    drop(input);
    assert_eq!([next(), next()], ["two", "2"]);
    reader.join().unwrap();
    assert!(first.wait().unwrap().success());
    // Released at exit.
    s.run(&["db", "-c", "SELECT 1"]).ok();
}

#[test]
fn meta_commands_report_tables_and_engine_state() {
    let s = Scratch::new();
    let run = s.run(&[
        "db",
        "--memtable",
        "vector",
        "--format",
        "csv",
        "-c",
        "\\demo 1000",
        "-c",
        "\\dt",
        "-c",
        "\\flush events",
        "-c",
        "\\d events",
        "-c",
        "\\metrics",
        "-c",
        "SELECT count(*) AS n, count(DISTINCT kind) AS kinds FROM events",
    ]);
    run.ok();
    let out = &run.stdout;
    // `\demo` prints no result of its own, only a status line.
    assert!(
        out.starts_with("table,primary_key,rows_estimate,size,sst_files,memtable\nevents,id,1000,"),
        "{run:#?}"
    );
    assert!(out.contains(",vector\n"), "{run:#?}");
    assert!(
        out.contains("column,type,nullable,primary_key\nid,Int64,false,true\n"),
        "{run:#?}"
    );
    assert!(out.contains("memtable,vector\n"), "{run:#?}");
    assert!(
        out.contains("level,sst_files,runs,rows,size\n0,1,1,1000,"),
        "{run:#?}"
    );
    assert!(out.contains("metric,value\n"), "{run:#?}");
    assert!(out.contains("\nflush_rows,1000\n"), "{run:#?}");
    // Then compaction by table and level, and the table's total row.
    assert!(
        out.contains(
            "table_name,level,files,bytes,flushes,bytes_flushed,compactions,moves,bytes_read,\
             bytes_written,micros,write_amp,space_amp,stalls,stall_micros,slowdowns,\
             slowdown_micros\nevents,0,1,"
        ),
        "{run:#?}"
    );
    assert!(out.contains("\nevents,,1,"), "{run:#?}");
    assert!(out.ends_with("n,kinds\n1000,20\n"), "{run:#?}");
    assert!(
        run.stderr.contains("Loaded 1000 rows into table events"),
        "{run:#?}"
    );
    assert!(
        run.stderr
            .contains("Flushed table events: 1000 rows written to SSTables"),
        "{run:#?}"
    );
    // `\demo` is deterministic: the same rows in a fresh database.
    let sum = "SELECT sum(user_id) AS u, round(sum(amount), 2) AS a FROM events";
    let one = s.run(&["--memory", "-q", "-c", "\\demo 500", "-c", sum]);
    let two = s.run(&["--memory", "-q", "-c", "\\demo 500", "-c", sum]);
    assert_eq!(one.ok().stdout, two.ok().stdout);
    // Help lists the commands.
    let run = s.run(&["--memory", "-c", "\\?"]);
    run.ok();
    for name in [
        "\\dt",
        "\\d TABLE",
        "\\timing",
        "\\o [FILE]",
        "\\demo",
        "\\maxrows",
    ] {
        assert!(run.stdout.contains(name), "{name}: {run:#?}");
    }
}

#[test]
fn meta_commands_take_table_names_as_dt_prints_them() {
    // `\dt` prints the default schema's table named `s2.t` as "s2.t", table t of schema s2
    // as s2.t, and a mixed-case schema's table in double quotes; `\d`, `\flush` and
    // `\compact` given those names must reach those tables (the double quotes were
    // stripped, so "s2.t" reached schema s2's t and "Mixed Case"."T.x" nothing).
    let s = Scratch::new();
    let setup = [
        "CREATE SCHEMA s2",
        "CREATE TABLE s2.t (id INT PRIMARY KEY, in_schema INT)",
        "CREATE TABLE \"s2.t\" (id INT PRIMARY KEY, in_public INT)",
        "INSERT INTO \"s2.t\" VALUES (1, 1)",
        "CREATE SCHEMA \"Mixed Case\"",
        "CREATE TABLE \"Mixed Case\".\"T.x\" (id INT PRIMARY KEY, mixed INT)",
        "INSERT INTO \"Mixed Case\".\"T.x\" VALUES (1, 1)",
    ];
    let mut args = vec!["db", "-q", "--format", "csv"];
    for sql in &setup {
        args.extend(["-c", sql]);
    }
    s.run(&args).ok();
    let run = s.run(&["db", "-q", "--format", "csv", "-c", "\\dt"]);
    let listed = &run.ok().stdout;
    assert!(listed.contains("\n\"\"\"s2.t\"\"\",id,"), "{run:#?}");
    assert!(
        listed.contains("\n\"\"\"Mixed Case\"\".\"\"T.x\"\"\",id,"),
        "{run:#?}"
    );
    assert!(listed.contains("\ns2.t,id,"), "{run:#?}");
    for (name, column) in [
        ("\"s2.t\"", "in_public"),
        ("'\"s2.t\"'", "in_public"),
        ("s2.t", "in_schema"),
        ("'s2.t'", "in_schema"),
        ("\"Mixed Case\".\"T.x\"", "mixed"),
    ] {
        let describe = format!("\\d {name}");
        let run = s.run(&["db", "-q", "--format", "csv", "-c", &describe]);
        assert!(
            run.ok().stdout.contains(&format!("\n{column},Int32,")),
            "{name}: {run:#?}"
        );
    }
    // Every table was flushed at the last exit: one new row to flush.
    let run = s.run(&[
        "db",
        "-c",
        "INSERT INTO \"s2.t\" VALUES (2, 2)",
        "-c",
        "\\flush \"s2.t\"",
        "-c",
        "\\compact \"Mixed Case\".\"T.x\"",
    ]);
    run.ok();
    assert!(
        run.stderr
            .contains("Flushed table \"s2.t\": 1 rows written to SSTables"),
        "{run:#?}"
    );
    assert!(
        run.stderr
            .contains("Compacted table \"Mixed Case\".\"T.x\""),
        "{run:#?}"
    );
}

#[test]
fn output_can_go_to_a_file_and_long_results_are_truncated() {
    let s = Scratch::new();
    let run = s.run_with_stdin(
        &["--memory", "--maxrows", "3"],
        "\\o result.csv\n\\format csv\nSELECT * FROM generate_series(1, 5) AS t(v);\n\
         \\o\n\\format table\nSELECT * FROM generate_series(1, 5) AS t(v);\n\\maxrows\n\
         \\maxrows unlimited\nSELECT count(*) FROM generate_series(1, 5);\n",
    );
    run.ok();
    // Machine formats are never truncated.
    assert_eq!(
        std::fs::read_to_string(s.file("result.csv")).unwrap(),
        "v\n1\n2\n3\n4\n5\n"
    );
    assert_eq!(
        run.stdout,
        "+---+\n| v |\n+---+\n| 1 |\n| 2 |\n| 3 |\n+---+\n\
         +----------+\n| count(*) |\n+----------+\n|        5 |\n+----------+\n",
        "{run:#?}"
    );
    assert!(run.stderr.contains("5 rows, 3 shown"), "{run:#?}");
    assert!(
        run.stderr.contains("Showing at most 3 rows per result."),
        "{run:#?}"
    );
}

#[test]
fn a_bad_statement_stops_a_script_with_one_error_line() {
    let s = Scratch::new();
    // A malformed statement: the parser's position (within the statement) is in the line.
    let run = s.run(&["--memory", "-c", "SELECT 1;\nSELEC 2", "-c", "SELECT 3"]);
    run.failed()
        .one_error(&["sql parser error", "SELEC", "Line: 1, Column: 1"]);
    assert!(
        run.stdout.contains("Int64(1)") && !run.stdout.contains("Int64(3)"),
        "{run:#?}"
    );
    // With the continue flag, the rest runs and the exit code still says it failed.
    let run = s.run(&[
        "--memory",
        "--continue-on-error",
        "-c",
        "SELEC 2",
        "-c",
        "SELECT 3 AS three",
    ]);
    run.failed().one_error(&["sql parser error"]);
    assert!(run.stdout.contains("three"), "{run:#?}");
    // In a file, the error names the file and line.
    let script = s.write(
        "bad.sql",
        b"SELECT 1;\n\n-- next\nSELECT * FROM missing_table;\nSELECT 2;\n",
    );
    let run = s.run(&["--memory", "-q", "-f", script.to_str().unwrap()]);
    run.failed().one_error(&[
        "table 'datafusion.public.missing_table' not found",
        "bad.sql:4)",
    ]);
    assert!(!run.stdout.contains("Int64(2)"), "{run:#?}");
    // Same from standard input.
    let run = s.run_with_stdin(&["--memory", "-q"], "SELECT 1;\nSELECT 1/0;\nSELECT 2;\n");
    run.failed().one_error(&["Divide by zero", "(<stdin>:2)"]);
    assert!(!run.stdout.contains("Int64(2)"), "{run:#?}");
    // The continue flag keeps a script going too.
    let run = s.run_with_stdin(
        &["--memory", "-q", "--continue-on-error"],
        "SELECT 1/0;\nSELECT 'went on' AS s;\n",
    );
    run.failed().one_error(&["Divide by zero"]);
    assert!(run.stdout.contains("went on"), "{run:#?}");
}

#[test]
fn unknown_commands_and_missing_files_are_one_error_line() {
    let s = Scratch::new();
    let run = s.run(&["--memory", "-c", "\\frobnicate", "-c", "SELECT 1"]);
    run.failed()
        .one_error(&["unknown command '\\frobnicate'", "\\?"]);
    assert_eq!(run.stdout, "");
    let run = s.run(&["--memory", "-c", "\\i nowhere.sql"]);
    run.failed()
        .one_error(&["cannot read nowhere.sql", "No such file"]);
    let run = s.run(&["--memory", "-f", "nowhere.sql"]);
    run.failed()
        .one_error(&["cannot read nowhere.sql", "No such file"]);
    let run = s.run(&["--memory", "-c", "\\compact"]);
    run.failed().one_error(&["\\compact needs a table name"]);
    let run = s.run(&["--memory", "-c", "\\d no_such_table"]);
    run.failed()
        .one_error(&["table 'no_such_table' does not exist"]);
    // The engine meta-commands are queries over the table functions, and say so in errors.
    for (command, function) in [
        ("\\d no_such_table", "strata_columns"),
        ("\\flush no_such_table", "strata_flush"),
        ("\\compact no_such_table", "strata_compact"),
    ] {
        let run = s.run(&["--memory", "-c", command]);
        run.failed()
            .one_error(&[&format!("{function}: table 'no_such_table' does not exist")]);
    }
    // An external table over a missing file, and a COPY out of it: nothing is written.
    let run = s.run(&[
        "--memory",
        "--continue-on-error",
        "-c",
        "CREATE EXTERNAL TABLE gone STORED AS CSV LOCATION 'gone.csv'",
        "-c",
        "COPY (SELECT * FROM gone) TO 'copied.csv'",
    ]);
    run.failed();
    assert_eq!(run.errors().len(), 2, "{run:#?}");
    assert!(run.errors()[0].contains("gone.csv"), "{run:#?}");
    assert!(!s.file("copied.csv").exists());
    // `\i` of a script that includes a missing one: the error is reported once.
    let outer = s.write("outer.sql", b"SELECT 1;\n\\i also_missing.sql\nSELECT 2;\n");
    let run = s.run(&["--memory", "-q", "-c", &format!("\\i {}", outer.display())]);
    run.failed()
        .one_error(&["cannot read also_missing.sql", "outer.sql:2)"]);
}

#[test]
fn corrupt_input_files_fail_cleanly_and_write_nothing() {
    let s = Scratch::new();
    // A good Parquet file, then the same file cut short.
    let made = s.run(&[
        "--memory",
        "-q",
        "-c",
        "COPY (SELECT * FROM generate_events(2000)) TO 'good.parquet' STORED AS PARQUET",
    ]);
    made.ok();
    let good = std::fs::read(s.file("good.parquet")).unwrap();
    s.write("cut.parquet", &good[..good.len() / 2]);
    s.write("bad.csv", b"a,b\n1,2\n3,not a number\n4,5\n");
    let setup = "CREATE TABLE t (a INT PRIMARY KEY, b INT)";
    let run = s.run(&[
        "db",
        "-q",
        "-c",
        setup,
        "-c",
        "CREATE EXTERNAL TABLE cut STORED AS PARQUET LOCATION 'cut.parquet'",
    ]);
    run.failed().one_error(&["Parquet error", "footer"]);
    assert!(
        !run.errors()[0].contains("Parquet error: Parquet error"),
        "{run:#?}"
    );
    // A CSV with a bad value: the insert and the COPY fail whole.
    let csv = "CREATE EXTERNAL TABLE bad (a INT, b INT) STORED AS CSV LOCATION 'bad.csv' \
               OPTIONS ('format.has_header' 'true')";
    let run = s.run_with_stdin(
        &["db", "-q", "--continue-on-error", "--format", "csv"],
        &format!(
            "{csv};\nINSERT INTO t SELECT * FROM bad;\n\
             COPY (SELECT * FROM bad) TO 'out.parquet' STORED AS PARQUET;\n\
             COPY (SELECT * FROM bad) TO 'out_dir/' STORED AS CSV PARTITIONED BY (a);\n\
             SELECT count(*) AS n FROM t;\n"
        ),
    );
    run.failed();
    let errors = run.errors();
    assert_eq!(errors.len(), 3, "{run:#?}");
    for (e, line) in errors.iter().zip([2, 3, 4]) {
        assert!(
            e.contains("not a number") && e.ends_with(&format!("(<stdin>:{line})")),
            "{e}"
        );
    }
    assert!(run.stdout.ends_with("n\n0\n"), "nothing inserted: {run:#?}");
    assert!(!s.file("out.parquet").exists(), "no partial COPY output");
    assert!(!s.file("out_dir").exists(), "no partial COPY output");
    // Not UTF-8 at all: a script that cannot be read.
    let junk = s.write("junk.sql", &[0xff, 0xfe, 0x00, 0x80, b';']);
    let run = s.run(&["--memory", "-f", junk.to_str().unwrap()]);
    run.failed()
        .one_error(&["cannot read", "junk.sql", "UTF-8"]);
}

#[test]
fn version_help_and_usage_errors() {
    let s = Scratch::new();
    let run = s.run(&["--version"]);
    run.ok();
    assert_eq!(
        run.stdout,
        format!("strata {}\n", env!("CARGO_PKG_VERSION"))
    );
    let run = s.run(&["--help"]);
    run.ok();
    for flag in [
        "[DATA_DIR]",
        "--memory",
        "--command <SQL>",
        "--file <FILE>",
        "--format <FORMAT>",
        "--memtable <KIND>",
        "--profile <NAME>",
        "--quiet",
        "--continue-on-error",
        "--maxrows",
    ] {
        assert!(run.stdout.contains(flag), "{flag}: {run:#?}");
    }
    for args in [
        &["--memory", "dir"][..],
        &["--memtable", "nope"],
        &["--profile", "fast"],
        &["--maxrows", "many"],
        &["--no-such-flag"],
    ] {
        let run = s.run(args);
        assert_eq!(run.code, Some(2), "{args:?}: {run:#?}");
    }
    // A profile changes the options of new tables.
    let run = s.run(&[
        "--memory",
        "--profile",
        "memory_efficient",
        "--format",
        "csv",
        "-c",
        "CREATE TABLE t (a INT PRIMARY KEY)",
        "-c",
        "\\d t",
    ]);
    run.ok();
    assert!(
        run.stdout.contains("memtable_size_bytes,8.0 MiB\n"),
        "{run:#?}"
    );
}
