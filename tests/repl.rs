//! The `strata` shell driven through a pseudo-terminal (expectrl): a multi-line statement,
//! TAB completion of a table name, syntax validation, Ctrl-C during a long statement and at
//! the prompt, Ctrl-D, the history file, and a restart that finds the data.
//!
//! Robust on a loaded machine: every wait has a generous deadline, nothing asserts on timing,
//! and Ctrl-C is re-sent until the statement reports its cancellation (a signal that lands
//! before the statement started is dropped by design). `HOME` and `XDG_DATA_HOME` point into
//! the test's temporary directory, so the history goes there.

#![cfg(unix)]

use std::io::{ErrorKind, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use expectrl::Session;
use expectrl::process::unix::WaitStatus;
use expectrl::session::OsSession;

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

/// Longest wait for any one expected output.
const DEADLINE: Duration = Duration::from_secs(180);

/// A running shell and everything it printed so far.
struct Shell {
    session: OsSession,
    output: String,
    /// Bytes of `output` already matched by `expect`.
    seen: usize,
    eof: bool,
}

impl Shell {
    fn spawn(home: &Path, args: &[&str]) -> Shell {
        let mut cmd = Command::new(STRATA);
        cmd.args(args)
            .current_dir(home)
            .env("HOME", home)
            .env("XDG_DATA_HOME", home.join("xdg"))
            .env("TERM", "xterm")
            .env_remove("STRATA_HISTORY")
            .env_remove("RUST_LOG");
        Shell {
            session: Session::spawn(cmd).expect("spawn strata in a pty"),
            output: String::new(),
            seen: 0,
            eof: false,
        }
    }

    /// Reads what is available; false when nothing was.
    fn pump(&mut self) -> bool {
        let mut buf = [0u8; 8192];
        match self.session.try_read(&mut buf) {
            Ok(0) => {
                self.eof = true;
                false
            }
            Ok(n) => {
                self.output.push_str(&String::from_utf8_lossy(&buf[..n]));
                true
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => false,
            // EIO: the child closed the terminal (it exited).
            Err(_) => {
                self.eof = true;
                false
            }
        }
    }

    /// Waits until `needle` appears after what earlier calls matched; `None` at the deadline.
    fn wait_for(&mut self, needle: &str, deadline: Duration) -> Option<String> {
        let start = Instant::now();
        loop {
            if let Some(at) = self.output[self.seen..].find(needle) {
                let end = self.seen + at + needle.len();
                let before = self.output[self.seen..end].to_string();
                self.seen = end;
                return Some(before);
            }
            if self.eof || start.elapsed() > deadline {
                return None;
            }
            if !self.pump() {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    #[track_caller]
    fn expect(&mut self, needle: &str) -> String {
        match self.wait_for(needle, DEADLINE) {
            Some(text) => text,
            None => panic!(
                "{needle:?} did not appear (eof: {}); output so far:\n{}",
                self.eof, self.output
            ),
        }
    }

    fn send(&mut self, text: &str) {
        self.session.write_all(text.as_bytes()).unwrap();
        self.session.flush().unwrap();
    }

    /// Types one line and presses Enter.
    fn line(&mut self, text: &str) {
        self.send(text);
        self.send("\r");
    }

    /// Waits for the process to end (reading its output meanwhile) and returns its exit code.
    #[track_caller]
    /// Sends Ctrl-C until the shell reports the running statement cancelled (the statement
    /// may not have started yet when the first one arrives); fails after 30 tries.
    fn cancel_running_statement(&mut self) {
        for _ in 0..30 {
            self.send("\x03");
            if self
                .wait_for("cancelled (Ctrl-C)", Duration::from_secs(5))
                .is_some()
            {
                return;
            }
        }
        panic!("Ctrl-C did not cancel:\n{}", self.output);
    }

    fn exit_code(&mut self) -> i32 {
        let start = Instant::now();
        loop {
            while self.pump() {}
            match self.session.get_process().status() {
                Ok(WaitStatus::StillAlive) => {}
                Ok(WaitStatus::Exited(_, code)) => return code,
                Ok(other) => panic!("strata ended with {other:?}:\n{}", self.output),
                Err(e) => panic!("waiting for strata failed: {e}:\n{}", self.output),
            }
            assert!(
                start.elapsed() < DEADLINE,
                "strata did not exit:\n{}",
                self.output
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

const PROMPT: &str = "strata> ";

#[test]
fn multi_line_statements_completion_ctrl_d_and_restart() {
    let home = tempfile::tempdir().unwrap();
    let mut sh = Shell::spawn(home.path(), &["zoo"]);
    sh.expect("new database zoo (created)");
    sh.expect(PROMPT);
    sh.line("CREATE TABLE zoo_animals (id INT PRIMARY KEY, name VARCHAR);");
    sh.expect("OK");
    sh.expect(PROMPT);
    // One statement over three lines: Enter before the `;` continues it.
    sh.line("INSERT INTO zoo_animals VALUES");
    sh.line("  (1, 'otter'), (2, 'lynx'),");
    sh.line("  (3, 'heron');");
    sh.expect("| count |");
    sh.expect("1 row");
    sh.expect(PROMPT);
    // TAB completes the table name: the query only works if it did.
    sh.send("SELECT 'animal:' || name AS a FROM zoo_an");
    sh.send("\t");
    sh.expect("zoo_animals");
    sh.line(" WHERE id >= 2 ORDER BY id;");
    sh.expect("animal:lynx");
    sh.expect("animal:heron");
    sh.expect("2 rows");
    sh.expect(PROMPT);
    // A syntax error is shown under the input, which stays to be fixed; Ctrl-C drops it.
    sh.line("SELEC 1;");
    sh.expect("sql parser error");
    sh.send("\x03");
    sh.expect(PROMPT);
    sh.line("\\d zoo_animals");
    sh.expect("primary_key");
    sh.expect(PROMPT);
    // Ctrl-D at an empty prompt: flush, release the lock, exit 0.
    sh.send("\x04");
    assert_eq!(sh.exit_code(), 0, "{}", sh.output);
    let history =
        std::fs::read_to_string(home.path().join("xdg").join("strata").join("history")).unwrap();
    assert!(history.contains("CREATE TABLE zoo_animals"), "{history}");
    assert!(history.contains("zoo_animals WHERE id >= 2"), "{history}");

    // Restart: the rows are there, and they were flushed to an SSTable at exit.
    let mut sh = Shell::spawn(home.path(), &["zoo"]);
    let banner = sh.expect(PROMPT);
    assert!(
        banner.contains("database zoo.") && !banner.contains("created"),
        "{banner}"
    );
    // The history of the first session is loaded: Up recalls its last entry.
    sh.send("\x1b[A");
    sh.send("\r");
    sh.expect("primary_key");
    sh.expect(PROMPT);
    sh.line("SELECT 'rows=' || CAST(count(*) AS VARCHAR) AS r FROM zoo_animals;");
    sh.expect("rows=3");
    sh.expect(PROMPT);
    sh.line(
        "SELECT 'ssts=' || CAST(count(*) AS VARCHAR) AS s FROM strata_sstables('zoo_animals');",
    );
    sh.expect("ssts=1");
    sh.expect(PROMPT);
    sh.line("\\q");
    assert_eq!(sh.exit_code(), 0, "{}", sh.output);
}

#[test]
fn ctrl_c_cancels_a_running_statement_and_the_session_goes_on() {
    let home = tempfile::tempdir().unwrap();
    let mut sh = Shell::spawn(home.path(), &["db"]);
    sh.expect(PROMPT);
    sh.line(
        "CREATE TABLE t (id BIGINT PRIMARY KEY, user_id INT, kind VARCHAR, amount DOUBLE, \
         ts TIMESTAMP);",
    );
    sh.expect("OK");
    sh.expect(PROMPT);
    // Practically endless (10^12 rows); one row in a million reaches the insert.
    sh.line("INSERT INTO t SELECT * FROM generate_events(1000000000000) WHERE id % 1000000 = 7;");
    // The progress bar shows once it runs (stderr is a terminal).
    sh.expect("rows in");
    sh.cancel_running_statement();
    sh.expect(PROMPT);
    // Nothing of the cancelled statement was written: it commits atomically at its end.
    sh.line("SELECT 'rows=' || CAST(count(*) AS VARCHAR) AS r FROM t;");
    sh.expect("rows=0");
    sh.expect(PROMPT);
    // A long query without a progress bar is cancelled the same way, and so is the rest of
    // the input it came with.
    sh.line(
        "SELECT count(*) FROM generate_events(1000000000000) a WHERE a.amount < 0; \
         SELECT 'skipped' || '-too' AS s;",
    );
    sh.cancel_running_statement();
    sh.expect(PROMPT);
    // Ctrl-C at the prompt clears the typed line and keeps the session.
    sh.send("SELECT 'never run'");
    // Wait for the typed line's echo first: its redraws print the prompt too, and a prompt
    // matched among them would send the next line while Ctrl-C is still being handled.
    sh.expect("run'");
    sh.send("\x03");
    sh.expect(PROMPT);
    sh.line("SELECT 40 + 2 AS answer;");
    sh.expect("42 |");
    sh.expect(PROMPT);
    sh.send("\x04");
    assert_eq!(sh.exit_code(), 0, "{}", sh.output);
    assert!(!sh.output.contains("never run |"), "{}", sh.output);
    assert!(!sh.output.contains("skipped-too"), "{}", sh.output);
}
