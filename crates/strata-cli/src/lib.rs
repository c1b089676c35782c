//! # strata-cli
//!
//! The `strata` command-line front end: a SQL shell over an embedded Strata database.
//!
//! `strata serve [DATA_DIR|URL] --flight ADDR --pg ADDR` serves a database over Arrow Flight
//! SQL and the PostgreSQL wire protocol instead (the `strata-server` crate).
//!
//! `strata worker --listen ADDR [DATA_DIR|URL]` runs a datafusion-distributed worker for
//! coordinators started with `strata --workers host1:port,host2:port ...` (see
//! `strata_datafusion::distributed`); it prints `strata worker listening on <addr>` once it
//! accepts connections and stops on SIGTERM or Ctrl-C.
//!
//! `strata [DATA_DIR]` opens (creating on first use) a database directory, `--memory` a
//! throw-away one; `-c SQL` and `-f FILE` run statements and exit, a script piped to standard
//! input runs the same way, and otherwise an interactive session starts (rustyline: history,
//! multi-line statements, completion, Ctrl-C to cancel a statement, Ctrl-D to leave).
//!
//! Module map: `args` (clap flags), `split` (statements and meta-commands of a script),
//! `exec` (the shell: running statements, meta-commands and the REPL), `command`
//! (meta-command parsing and reports), `helper` (rustyline completion, validation, hints),
//! `print` (output formats), `progress` (progress bars of long statements).
//!
//! Exit codes: 0 on success, 1 when a statement, command or file failed (with
//! `--continue-on-error`, after running everything), 2 for bad command-line usage.

#![warn(missing_docs)]

pub mod args;
pub mod command;
pub mod exec;
pub mod helper;
pub mod print;
pub mod progress;
pub mod split;

use std::io::IsTerminal;
use std::process::ExitCode;

use crate::args::{Args, DEFAULT_DATA_DIR, Input};
use crate::exec::{Settings, Shell};
use crate::print::{DEFAULT_TERMINAL_MAXROWS, MaxRows};

/// The version shown by `--version` and the banner.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Entry point of the `strata` binary: parses the process arguments and runs.
pub fn main() -> ExitCode {
    let args = Args::parse_from_env();
    init_logging();
    if let Some(args::Command::Serve(serve)) = &args.command {
        return match strata_server::run(serve) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("Error: {message}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(args::Command::Worker(worker)) = &args.command {
        return match run_worker(worker) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("Error: {message}");
                ExitCode::FAILURE
            }
        };
    }
    run(args)
}

/// `strata worker`: serves datafusion-distributed's worker service until SIGTERM or Ctrl-C.
fn run_worker(worker: &args::WorkerArgs) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("strata-worker")
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(&worker.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", worker.listen))?;
        let address = listener
            .local_addr()
            .map_err(|e| format!("cannot listen on {}: {e}", worker.listen))?;
        let token = strata_datafusion::distributed::channel::WORKER_TOKEN_ENV;
        if !address.ip().is_loopback()
            && strata_datafusion::distributed::channel::worker_token().is_none()
        {
            return Err(format!(
                "refusing to serve on {address} without credentials: set {token} (the same \
                 secret in the coordinator's environment) to listen beyond loopback"
            ));
        }
        if !address.ip().is_loopback() && worker.database.is_none() {
            eprintln!(
                "Warning: this worker runs plans naming any database its credentials reach; \
                 give it its DATABASE"
            );
        }
        println!("strata worker listening on {address}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let stop = async {
            use tokio::signal::unix::{SignalKind, signal};
            match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => std::future::pending::<()>().await,
            }
        };
        strata_datafusion::distributed::serve_worker(listener, worker.database.as_deref(), stop)
            .await
            .map_err(|e| exec::error_line(&e))
    })
}

/// Logs to standard error, filtered by `RUST_LOG` (default: warnings).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs the program with parsed arguments and returns its exit code.
pub fn run(args: Args) -> ExitCode {
    match run_inner(args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("Error: {}", exec::one_line(&message));
            ExitCode::FAILURE
        }
    }
}

fn run_inner(args: Args) -> Result<ExitCode, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("strata-cli")
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let mut options = args.profile.map(|p| p.options()).unwrap_or_default();
    if let Some(kind) = args.memtable {
        options.table_defaults.memtable_kind = kind;
    }
    let interactive = !args.has_inputs() && std::io::stdin().is_terminal();
    let (session, temp, location) = if args.memory {
        let dir = tempfile::Builder::new()
            .prefix("strata-memory-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
        let session = strata_datafusion::open(dir.path(), options)
            .map_err(|e| format!("cannot open a temporary database: {}", exec::error_line(&e)))?;
        let what = format!(
            "a throw-away database in {} (deleted at exit)",
            dir.path().display()
        );
        (session, Some(dir), what)
    } else {
        let path = args
            .data_dir
            .clone()
            .unwrap_or_else(|| DEFAULT_DATA_DIR.into());
        // A database on object storage (`s3://bucket/prefix`) is opened or created there.
        let remote = strata_engine::storage::is_url(&path);
        let existed = remote || path.exists();
        let session = strata_datafusion::open(&path, options).map_err(|e| {
            format!(
                "cannot open the database in {}: {}",
                path.display(),
                exec::error_line(&e)
            )
        })?;
        let what = if existed {
            format!("database {}", path.display())
        } else {
            format!("new database {} (created)", path.display())
        };
        if !existed && !interactive && !args.quiet {
            eprintln!("Created database directory {}", path.display());
        }
        (session, None, what)
    };
    if let Some(workers) = &args.workers {
        let workers: Vec<&str> = workers.split(',').map(str::trim).collect();
        session
            .set_workers(&workers)
            .map_err(|e| format!("--workers: {}", exec::error_line(&e)))?;
    }
    let settings = Settings {
        format: args.format,
        maxrows: args.maxrows.unwrap_or(if std::io::stdout().is_terminal() {
            MaxRows::Limited(DEFAULT_TERMINAL_MAXROWS)
        } else {
            MaxRows::Unlimited
        }),
        timing: true,
        quiet: args.quiet,
        continue_on_error: args.continue_on_error,
    };
    let mut shell = Shell::new(rt, session, settings, temp);
    let mut ok = true;
    if args.has_inputs() {
        for input in &args.inputs {
            let done = match input {
                Input::Command(sql) => shell.run_script(sql, None),
                Input::File(path) => shell.run_file(path),
            };
            ok &= done;
            if (!done && !args.continue_on_error) || shell.quit_requested() {
                break;
            }
        }
    } else if !interactive {
        ok = shell.run_input(&mut std::io::stdin().lock(), Some("<stdin>"));
    } else {
        if !args.quiet {
            println!(
                "strata {VERSION}: SQL over {location}.\n\
                 Type \\? for help, \\demo to load sample data, \\q or Ctrl-D to quit."
            );
        }
        shell.repl(exec::history_path())?;
    }
    shell.close()?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
