//! Command-line arguments of the `strata` binary (clap).
//!
//! Owns parsing and validation of flags only: values are checked here (format names, memtable
//! kinds, profiles, row limits) so that the rest of the program receives typed settings.
//! Invariant: [`Args::inputs`] keeps `-c` and `-f` in the order they were given.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use strata_engine::{MemtableKind, Profile};

use crate::print::{MaxRows, PrintFormat};

/// The data directory used when none is given.
pub const DEFAULT_DATA_DIR: &str = "strata-data";

/// `strata`: a SQL shell over an embedded Strata database.
#[derive(Debug, Clone, Parser)]
#[command(name = "strata", version, about, long_about = None)]
pub struct Args {
    /// A subcommand instead of the shell (`strata serve ...`).
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Database directory (created on first use).
    #[arg(value_name = "DATA_DIR", conflicts_with = "memory")]
    pub data_dir: Option<PathBuf>,

    /// Use a throw-away database in a temporary directory, deleted at exit.
    #[arg(long)]
    pub memory: bool,

    /// Run SQL (or a meta-command) and exit; repeatable, runs in the order given.
    #[arg(short = 'c', long = "command", value_name = "SQL")]
    pub commands: Vec<String>,

    /// Run a script file and exit; repeatable, runs in the order given.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Output format of query results.
    #[arg(long, value_name = "FORMAT", default_value = "table", value_parser = parse_format)]
    pub format: PrintFormat,

    /// Memtable kind of tables created in this session.
    #[arg(long, value_name = "KIND", value_parser = parse_memtable)]
    pub memtable: Option<MemtableKind>,

    /// Option profile of the database: high_performance, memory_efficient or balanced.
    #[arg(long, value_name = "NAME", value_parser = parse_profile)]
    pub profile: Option<Profile>,

    /// Most rows printed per result in table format: a number or `unlimited`
    /// (default: 40 on a terminal, unlimited otherwise).
    #[arg(long, value_name = "N|unlimited", value_parser = parse_maxrows)]
    pub maxrows: Option<MaxRows>,

    /// Print only results and errors: no banner, row counts or timings.
    #[arg(short, long)]
    pub quiet: bool,

    /// Keep running a script after a failed statement (the exit code is still 1).
    #[arg(long)]
    pub continue_on_error: bool,

    /// Run queries on these datafusion-distributed workers (`strata worker`), comma-separated
    /// `host:port`; the same as `SET strata.workers = '...'`.
    #[arg(long, value_name = "HOST:PORT,...")]
    pub workers: Option<String>,

    /// Inputs from `-c` and `-f`, in command-line order (filled by [`Args::parse_from_env`]).
    #[arg(skip)]
    pub inputs: Vec<Input>,
}

/// Subcommands of `strata`; without one, the SQL shell runs.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Serve a database over Arrow Flight SQL and the PostgreSQL wire protocol.
    Serve(strata_server::ServeArgs),
    /// Run a worker that executes parts of queries for coordinators started with `--workers`.
    Worker(WorkerArgs),
}

/// `strata worker --listen ADDR [DATABASE]`.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// Address to listen on (`host:port`; port 0 picks a free one, printed at start). Beyond
    /// loopback only with STRATA_WORKER_TOKEN set: calls must then carry the same token.
    #[arg(long, value_name = "ADDR")]
    pub listen: String,
    /// The database (directory or s3:// URL) whose queries this worker runs; without it,
    /// any database a coordinator names (the worker opens it read-only: no lock).
    #[arg(value_name = "DATABASE")]
    pub database: Option<String>,
}

/// One `-c` or `-f` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// SQL text given with `-c`.
    Command(String),
    /// A script file given with `-f`.
    File(PathBuf),
}

impl Args {
    /// Parses the process arguments, exiting with clap's usage message on bad input.
    pub fn parse_from_env() -> Args {
        Self::parse_with(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    /// Parses `argv` (including the program name).
    pub fn parse_with<I, T>(argv: I) -> Result<Args, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let matches = Args::command().try_get_matches_from(argv)?;
        let mut args = Args::from_arg_matches(&matches)?;
        args.inputs = ordered_inputs(&matches, &args);
        Ok(args)
    }

    /// True when the arguments name scripts or commands to run (no interactive session).
    pub fn has_inputs(&self) -> bool {
        !self.inputs.is_empty()
    }
}

/// Interleaves `-c` and `-f` values by their position on the command line.
fn ordered_inputs(matches: &ArgMatches, args: &Args) -> Vec<Input> {
    let mut all: Vec<(usize, Input)> = Vec::new();
    if let Some(indices) = matches.indices_of("commands") {
        all.extend(
            indices
                .zip(&args.commands)
                .map(|(i, c)| (i, Input::Command(c.clone()))),
        );
    }
    if let Some(indices) = matches.indices_of("files") {
        all.extend(
            indices
                .zip(&args.files)
                .map(|(i, f)| (i, Input::File(f.clone()))),
        );
    }
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, input)| input).collect()
}

fn parse_format(s: &str) -> Result<PrintFormat, String> {
    s.parse()
}

fn parse_memtable(s: &str) -> Result<MemtableKind, String> {
    s.parse::<MemtableKind>().map_err(|e| e.to_string())
}

fn parse_profile(s: &str) -> Result<Profile, String> {
    s.parse::<Profile>().map_err(|e| e.to_string())
}

fn parse_maxrows(s: &str) -> Result<MaxRows, String> {
    s.parse()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_files_keep_their_order() {
        let args = Args::parse_with(["strata", "-c", "a", "-f", "x.sql", "-c", "b"]).unwrap();
        assert_eq!(
            args.inputs,
            vec![
                Input::Command("a".into()),
                Input::File("x.sql".into()),
                Input::Command("b".into())
            ]
        );
    }

    #[test]
    fn memory_conflicts_with_a_data_dir() {
        assert!(Args::parse_with(["strata", "--memory", "dir"]).is_err());
        let args = Args::parse_with(["strata", "dir"]).unwrap();
        assert_eq!(args.data_dir, Some(PathBuf::from("dir")));
        assert!(!args.has_inputs());
    }

    #[test]
    fn bad_values_name_the_valid_ones() {
        let err = Args::parse_with(["strata", "--memtable", "skiplst"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("skiplist") && err.contains("b_skiplist"),
            "{err}"
        );
        let err = Args::parse_with(["strata", "--format", "xml"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("markdown"), "{err}");
        let err = Args::parse_with(["strata", "--profile", "fast"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("high_performance"), "{err}");
    }

    #[test]
    fn serve_is_a_subcommand_and_the_shell_stays_the_default() {
        let args = Args::parse_with(["strata", "dir"]).unwrap();
        assert!(args.command.is_none());
        let args = Args::parse_with([
            "strata",
            "serve",
            "db",
            "--flight",
            "127.0.0.1:0",
            "--pg",
            "127.0.0.1:0",
        ])
        .unwrap();
        let Some(Command::Serve(serve)) = args.command else {
            panic!("not serve: {args:?}");
        };
        assert_eq!(serve.location.as_deref(), Some("db"));
        assert_eq!(serve.flight.as_deref(), Some("127.0.0.1:0"));
        assert_eq!(serve.pg.as_deref(), Some("127.0.0.1:0"));
    }

    #[test]
    fn every_memtable_kind_is_accepted() {
        for kind in MemtableKind::ALL {
            let args = Args::parse_with(["strata", "--memtable", kind.name()]).unwrap();
            assert_eq!(args.memtable, Some(*kind));
        }
    }
}
