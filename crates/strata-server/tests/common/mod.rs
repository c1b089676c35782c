//! Shared set-up of the server tests: a real `strata serve` process on 127.0.0.1 port 0.
//!
//! The process is this test binary run again with `STRATA_TEST_SERVE` set: its `child_server`
//! test then parses those arguments as `strata serve` does and calls [`strata_server::run`],
//! the function the `strata serve` subcommand calls, so the tests exercise the command, its
//! signal handling and its shutdown in a process of their own.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};

use arrow::array::RecordBatch;
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;
use tonic::transport::Channel;

/// Environment variable carrying the child's `strata serve` arguments, separated by 0x1f.
pub const SERVE_ENV: &str = "STRATA_TEST_SERVE";

/// Runs `strata serve` when this process is a server child; returns otherwise.
pub fn child_main() {
    let Ok(spec) = std::env::var(SERVE_ENV) else {
        return;
    };
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        serve: strata_server::ServeArgs,
    }
    let argv: Vec<&str> = std::iter::once("serve").chain(spec.split('\x1f')).collect();
    let cli = <Cli as clap::Parser>::parse_from(argv);
    match strata_server::run(&cli.serve) {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("Error: {e}");
            std::process::exit(1)
        }
    }
}

/// A server process.
pub struct ServerProc {
    child: Option<Child>,
    stdout: BufReader<ChildStdout>,
    /// Flight SQL address.
    pub flight: SocketAddr,
    /// PostgreSQL address.
    pub pg: SocketAddr,
}

/// Starts a server over `dir` with both protocols on loopback port 0, plus `extra` arguments
/// and `env` variables.
pub fn start(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> ServerProc {
    try_start(dir, extra, env).unwrap_or_else(|e| panic!("server did not start: {e}"))
}

/// [`start`], returning the child's error output when it does not start.
pub fn try_start(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Result<ServerProc, String> {
    let mut args = vec![dir.to_str().unwrap()];
    for flag in ["--flight", "--pg"] {
        if !extra.contains(&flag) {
            args.extend([flag, "127.0.0.1:0"]);
        }
    }
    args.extend_from_slice(extra);
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["child_server", "--exact", "--nocapture", "--test-threads=1"])
        .env(SERVE_ENV, args.join("\x1f"))
        .env_remove("STRATA_FLIGHT_TOKEN")
        .env_remove("STRATA_PG_PASSWORD")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let (mut flight, mut pg) = (None, None);
    let mut line = String::new();
    while flight.is_none() || pg.is_none() {
        line.clear();
        if stdout.read_line(&mut line).unwrap() == 0 {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            let _ = child.wait();
            return Err(err);
        }
        // libtest may print "test child_server ... " before the server's first line.
        let addr = |l: &str, what: &str| -> Option<SocketAddr> {
            let rest = &l[l.find(what)? + what.len()..];
            rest.split_whitespace().next()?.parse().ok()
        };
        flight = flight.or_else(|| addr(&line, "strata serve: Flight SQL on "));
        pg = pg.or_else(|| addr(&line, "strata serve: PostgreSQL on "));
    }
    Ok(ServerProc {
        child: Some(child),
        stdout,
        flight: flight.unwrap(),
        pg: pg.unwrap(),
    })
}

impl ServerProc {
    /// Sends SIGTERM and waits for the process; returns its status and the rest of its output.
    pub fn terminate(mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().unwrap();
        let ok = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).unwrap();
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            e.read_to_string(&mut err).unwrap();
        }
        let status = child.wait().unwrap();
        (status, format!("{rest}{err}"))
    }

    /// A libpq connection string for this server.
    pub fn pg_conninfo(&self, extra: &str) -> String {
        format!(
            "host={} port={} user=strata dbname=strata {extra}",
            self.pg.ip(),
            self.pg.port()
        )
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A tokio-postgres client of `server` (its connection driven by a spawned task).
pub async fn pg_client(server: &ServerProc) -> tokio_postgres::Client {
    pg_client_with(server, "").await.unwrap()
}

/// [`pg_client`] with extra connection options.
pub async fn pg_client_with(
    server: &ServerProc,
    extra: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) =
        tokio_postgres::connect(&server.pg_conninfo(extra), tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// A tokio-postgres client and the task driving its connection: aborting the task closes the
/// socket at once (dropping the client waits for the running statement first).
pub async fn pg_client_and_connection(
    server: &ServerProc,
) -> (tokio_postgres::Client, tokio::task::JoinHandle<()>) {
    let (client, conn) = tokio_postgres::connect(&server.pg_conninfo(""), tokio_postgres::NoTls)
        .await
        .unwrap();
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    (client, task)
}

/// A Flight SQL client of `server`.
pub async fn flight_client(server: &ServerProc) -> FlightSqlServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{}", server.flight))
        .unwrap()
        .connect()
        .await
        .unwrap();
    FlightSqlServiceClient::new(channel)
}

/// A plain-text Flight SQL client of `server`, or the connection error.
pub async fn flight_client_result(
    server: &ServerProc,
) -> Result<FlightSqlServiceClient<Channel>, tonic::transport::Error> {
    let channel = Channel::from_shared(format!("http://{}", server.flight))
        .unwrap()
        .connect()
        .await?;
    Ok(FlightSqlServiceClient::new(channel))
}

/// Runs a query over Flight SQL and returns its batches.
pub async fn flight_query(
    client: &mut FlightSqlServiceClient<Channel>,
    sql: &str,
) -> Result<Vec<RecordBatch>, arrow_flight::error::FlightError> {
    let info = client.execute(sql.to_string(), None).await?;
    let mut batches = Vec::new();
    for endpoint in info.endpoint {
        let ticket = endpoint.ticket.expect("ticket");
        let stream = client.do_get(ticket).await?;
        let got: Vec<RecordBatch> = stream.try_collect().await?;
        batches.extend(got);
    }
    Ok(batches)
}

/// Runs `psql` with `args` against `server`; returns (success, stdout, stderr).
/// Installs the clients these tests drive (psql, and a Python environment with the ADBC Flight
/// SQL driver, psycopg 3 and pyarrow) with the project's own script, once per test process:
/// the script is idempotent and installs from the package registries, so `cargo test
/// --workspace` runs these tests on a fresh machine too.
pub fn ensure_clients() {
    static SETUP: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let setup = SETUP.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let out = Command::new("bash")
            .arg(root.join("scripts/server-test-venv.sh"))
            .current_dir(&root)
            .output()
            .map_err(|e| format!("running scripts/server-test-venv.sh: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "scripts/server-test-venv.sh failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    if let Err(error) = setup {
        panic!("{error}");
    }
}

pub fn psql(server: &ServerProc, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    ensure_clients();
    let mut cmd = Command::new("psql");
    cmd.args([
        "-X",
        "-h",
        &server.pg.ip().to_string(),
        "-p",
        &server.pg.port().to_string(),
        "-U",
        "strata",
        "-d",
        "strata",
        "-v",
        "ON_ERROR_STOP=1",
    ])
    .args(args)
    .env("PGCONNECT_TIMEOUT", "10")
    .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .expect("psql is needed for these tests (Debian package postgresql-client)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The value of counter `name` of `strata_server_metrics()`, read over PostgreSQL.
pub async fn metric(client: &tokio_postgres::Client, name: &str) -> u64 {
    let row = client
        .query_one(
            &format!(
                "SELECT CAST(value AS BIGINT) FROM strata_server_metrics() WHERE name = '{name}'"
            ),
            &[],
        )
        .await
        .unwrap();
    let v: i64 = row.get(0);
    v as u64
}
