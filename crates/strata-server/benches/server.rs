//! `strata serve` throughput: statements per second for point queries and single-row upserts
//! over Flight SQL and PostgreSQL at 1, 4 and 16 clients beside the same statements run in
//! process, and bulk-fetch rows per second over each protocol.
//!
//! Run: `cargo bench -p strata-server --bench server` (release profile). The server runs in
//! this process on loopback (one tokio runtime), so clients and server share the machine's
//! cores as they would on one host. `STRATA_BENCH_ROWS` sets the bulk-fetch table size
//! (default 1,000,000), `STRATA_BENCH_OPS` the statements per client and case (default 2,000).

use std::sync::Arc;
use std::time::Instant;

use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::{StreamExt, TryStreamExt};
use strata_server::{ServeConfig, Server};
use tonic::transport::Channel;

const TABLE_ROWS: i64 = 100_000;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(dir: &std::path::Path) -> ServeConfig {
    ServeConfig {
        data_dir: dir.to_path_buf(),
        flight: Some("127.0.0.1:0".parse().unwrap()),
        pg: Some("127.0.0.1:0".parse().unwrap()),
        flight_token: None,
        pg_password: None,
        tls: None,
        memory_limit: None,
        statement_timeout: None,
        shutdown_grace: std::time::Duration::from_secs(10),
    }
}

async fn flight(addr: std::net::SocketAddr) -> FlightSqlServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    FlightSqlServiceClient::new(channel)
}

async fn pg(addr: std::net::SocketAddr) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(
        &format!("host={} port={} user=bench", addr.ip(), addr.port()),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

async fn flight_fetch(c: &mut FlightSqlServiceClient<Channel>, sql: &str) -> usize {
    let info = c.execute(sql.to_string(), None).await.unwrap();
    let mut rows = 0;
    for e in info.endpoint {
        let mut s = c.do_get(e.ticket.unwrap()).await.unwrap();
        while let Some(b) = s.next().await {
            rows += b.unwrap().num_rows();
        }
    }
    rows
}

#[derive(Clone, Copy, Debug)]
enum Proto {
    InProcess,
    Flight,
    Pg,
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Point,
    Upsert,
}

/// Statements per second of `clients` clients each running `ops` statements.
async fn run_case(
    session: Arc<strata_datafusion::StrataSession>,
    server: &Server,
    proto: Proto,
    op: Op,
    clients: usize,
    ops: usize,
) -> f64 {
    let mut tasks = Vec::new();
    let start = Instant::now();
    for id in 0..clients {
        let session = Arc::clone(&session);
        let faddr = server.flight_addr().unwrap();
        let paddr = server.pg_addr().unwrap();
        tasks.push(tokio::spawn(async move {
            let mut key = (id as i64 * 7919) % TABLE_ROWS;
            let mut next = move || {
                key = (key * 48271 + 11) % TABLE_ROWS;
                key
            };
            match proto {
                Proto::InProcess => {
                    for i in 0..ops {
                        let k = next();
                        let sql = match op {
                            Op::Point => format!("SELECT v FROM bench WHERE k = {k}"),
                            Op::Upsert => format!("INSERT INTO bench VALUES ({k}, {i})"),
                        };
                        let batches = session.sql(&sql).await.unwrap().collect().await.unwrap();
                        assert!(!batches.is_empty());
                    }
                }
                Proto::Flight => {
                    let mut c = flight(faddr).await;
                    for i in 0..ops {
                        let k = next();
                        match op {
                            Op::Point => {
                                let n = flight_fetch(
                                    &mut c,
                                    &format!("SELECT v FROM bench WHERE k = {k}"),
                                )
                                .await;
                                assert_eq!(n, 1);
                            }
                            Op::Upsert => {
                                let n = c
                                    .execute_update(
                                        format!("INSERT INTO bench VALUES ({k}, {i})"),
                                        None,
                                    )
                                    .await
                                    .unwrap();
                                assert_eq!(n, 1);
                            }
                        }
                    }
                }
                Proto::Pg => {
                    let c = pg(paddr).await;
                    let stmt = match op {
                        Op::Point => c.prepare("SELECT v FROM bench WHERE k = $1").await.unwrap(),
                        Op::Upsert => c
                            .prepare("INSERT INTO bench VALUES ($1, $2)")
                            .await
                            .unwrap(),
                    };
                    for i in 0..ops {
                        let k = next();
                        match op {
                            Op::Point => {
                                let rows = c.query(&stmt, &[&k]).await.unwrap();
                                assert_eq!(rows.len(), 1);
                            }
                            Op::Upsert => {
                                let n = c.execute(&stmt, &[&k, &(i as i64)]).await.unwrap();
                                assert_eq!(n, 1);
                            }
                        }
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (clients * ops) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken from the command line.
    let ops = env_usize("STRATA_BENCH_OPS", 2000);
    let bulk_rows = env_usize("STRATA_BENCH_ROWS", 1_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    rt.block_on(async move {
        let session = strata_datafusion::open(dir.path(), Default::default()).unwrap();
        session
            .sql(&format!(
                "CREATE TABLE bench (k BIGINT PRIMARY KEY, v BIGINT) AS \
                 SELECT value AS k, value * 2 AS v FROM generate_series(0, {}) ",
                TABLE_ROWS - 1
            ))
            .await
            .unwrap();
        session
            .sql(&format!(
                "CREATE TABLE bulk (k BIGINT PRIMARY KEY, a BIGINT, b DOUBLE, s VARCHAR) AS \
                 SELECT value, value % 1000, value / 3.0, concat('row-', value) \
                 FROM generate_series(1, {bulk_rows})"
            ))
            .await
            .unwrap();
        let _ = session
            .sql("SELECT * FROM strata_flush()")
            .await
            .unwrap()
            .collect()
            .await;
        // The in-process figures use a second session over the same database handle.
        let db = Arc::clone(session.db());
        let local = Arc::new(strata_datafusion::StrataSession::from_db(db, None).unwrap());
        let server = Server::start(config(dir.path()), session).await.unwrap();

        println!("| protocol | statement | 1 client | 4 clients | 16 clients |");
        println!("|---|---|---:|---:|---:|");
        for proto in [Proto::InProcess, Proto::Flight, Proto::Pg] {
            for op in [Op::Point, Op::Upsert] {
                let mut cells = Vec::new();
                for clients in [1, 4, 16] {
                    let per_client = (ops / clients).max(50);
                    let rate =
                        run_case(Arc::clone(&local), &server, proto, op, clients, per_client).await;
                    cells.push(format!("{rate:.0}"));
                }
                println!("| {proto:?} | {op:?} | {} |", cells.join(" | "));
            }
        }

        println!();
        println!("| protocol | rows | seconds | rows/s |");
        println!("|---|---:|---:|---:|");
        let sql = "SELECT k, a, b, s FROM bulk";
        let t = Instant::now();
        let mut stream = local
            .sql(sql)
            .await
            .unwrap()
            .execute_stream()
            .await
            .unwrap();
        let mut n = 0;
        while let Some(b) = stream.next().await {
            n += b.unwrap().num_rows();
        }
        let secs = t.elapsed().as_secs_f64();
        println!("| InProcess | {n} | {secs:.2} | {:.0} |", n as f64 / secs);
        let mut f = flight(server.flight_addr().unwrap()).await;
        let t = Instant::now();
        let n = flight_fetch(&mut f, sql).await;
        let secs = t.elapsed().as_secs_f64();
        println!("| Flight SQL | {n} | {secs:.2} | {:.0} |", n as f64 / secs);
        let c = pg(server.pg_addr().unwrap()).await;
        let t = Instant::now();
        let rows = c.query_raw(sql, std::iter::empty::<i64>()).await.unwrap();
        let n = rows
            .try_fold(0usize, |n, _| async move { Ok(n + 1) })
            .await
            .unwrap();
        let secs = t.elapsed().as_secs_f64();
        println!("| PostgreSQL | {n} | {secs:.2} | {:.0} |", n as f64 / secs);
        drop(local);
        drop(f);
        drop(c);
        server.shutdown().await.unwrap();
    });
}
