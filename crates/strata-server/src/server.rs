//! Start-up and shutdown of `strata serve` ([`Server`], [`run`]).
//!
//! Start-up: the `strata_server_metrics()` table function and (with PostgreSQL served)
//! `pg_catalog` are added to the session, both listeners are bound (so their addresses can be
//! printed, port 0 included), then served on the caller's tokio runtime.
//!
//! Shutdown, in this order: stop accepting (Flight SQL via tonic's graceful shutdown,
//! PostgreSQL by leaving the accept loop); wait up to the grace period for in-flight
//! statements; cancel those still running (their streams are dropped, which cancels their
//! plans); close the PostgreSQL connections; drop every handle to the session (the
//! `pg_catalog` schema is deregistered first: it refers to the catalog list it sits in); and
//! close the database ([`StrataSession::close`]: WAL synced, lock released). A handle some
//! connection task still holds after the bounded waits does not keep the database open: it is
//! closed through the shared handle and that task's calls fail. Invariant: the database is
//! closed only after no statement can run any more.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use datafusion::catalog::CatalogProvider;
use datafusion_postgres::auth::AuthManager;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog;
use datafusion_postgres::pgwire;
use futures::StreamExt;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use strata_datafusion::StrataSession;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{ServeArgs, ServeConfig, TlsPem};
use crate::exec::Statements;
use crate::flight::StrataFlightSql;
use crate::metrics::{ServerMetrics, ServerMetricsFunction};
use crate::pg::{Connections, StrataPgHandlers, watch_disconnect};

/// Most PostgreSQL connections served at once; more are closed at once.
pub const PG_CONNECTIONS_MAX: usize = 1024;
/// How long cancelled statements get to stop, and connections to close, after the grace period.
const CANCEL_WAIT: Duration = Duration::from_secs(5);

/// A running server.
pub struct Server {
    flight_addr: Option<SocketAddr>,
    pg_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    done: JoinHandle<Result<(), String>>,
}

impl Server {
    /// Serves `session` as `config` says, on the current tokio runtime.
    pub async fn start(config: ServeConfig, session: StrataSession) -> Result<Server, String> {
        let metrics = Arc::new(ServerMetrics::default());
        let catalog_name = session
            .copied_config()
            .options()
            .catalog
            .default_catalog
            .clone();
        if config.pg.is_some() {
            setup_pg_catalog(
                session.context(),
                &catalog_name,
                Arc::new(AuthManager::default()),
            )
            .map_err(|e| format!("cannot set up pg_catalog: {e}"))?;
        }
        let (cancel_tx, cancel_rx) = watch::channel(false);
        let statements = Arc::new(Statements::new(
            Arc::new(session),
            metrics,
            config.memory_limit,
            config.statement_timeout,
            cancel_rx,
        ));
        statements.session().register_udtf(
            "strata_server_metrics",
            Arc::new(ServerMetricsFunction(
                Arc::clone(statements.metrics()),
                Arc::clone(statements.in_flight()),
            )),
        );
        let (stop_tx, stop_rx) = watch::channel(false);

        let mut flight_addr = None;
        let mut flight_task = None;
        if let Some(addr) = config.flight {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen for Flight SQL on {addr}: {e}"))?;
            flight_addr = Some(local_addr(&listener)?);
            let service =
                StrataFlightSql::new(Arc::clone(&statements), config.flight_token.clone())?
                    .into_service();
            let mut builder = tonic::transport::Server::builder();
            if let Some(tls) = &config.tls {
                let identity = tonic::transport::Identity::from_pem(&tls.cert, &tls.key);
                builder = builder
                    .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
                    .map_err(|e| format!("bad TLS certificate or key for Flight SQL: {e}"))?;
            }
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|s| {
                if let Ok(s) = &s {
                    let _ = s.set_nodelay(true);
                }
                s
            });
            let mut stop = stop_rx.clone();
            let router = builder.add_service(service);
            flight_task = Some(tokio::spawn(async move {
                router
                    .serve_with_incoming_shutdown(incoming, async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await
                    .map_err(|e| format!("Flight SQL server: {e}"))
            }));
        }

        let mut pg_addr = None;
        let mut pg_task = None;
        if let Some(addr) = config.pg {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen for PostgreSQL on {addr}: {e}"))?;
            pg_addr = Some(local_addr(&listener)?);
            let tls = config.tls.as_ref().map(pg_tls).transpose()?;
            let connections = Arc::new(Connections::default());
            let handlers = Arc::new(StrataPgHandlers::new(
                Arc::clone(&statements),
                Arc::clone(&connections),
                config.pg_password.clone(),
            ));
            pg_task = Some(tokio::spawn(pg_accept(
                listener,
                tls,
                handlers,
                connections,
                Arc::clone(&statements),
                stop_rx.clone(),
            )));
        }

        let grace = config.shutdown_grace;
        let mut stop = stop_rx;
        let done = tokio::spawn(async move {
            let _ = stop.wait_for(|s| *s).await;
            // Listeners stop accepting now; statements in flight get the grace period.
            let in_flight = Arc::clone(statements.in_flight());
            if tokio::time::timeout(grace, in_flight.wait_idle())
                .await
                .is_err()
            {
                tracing::warn!(
                    "{} statements still running after {grace:?}: cancelling them",
                    in_flight.count()
                );
                let _ = cancel_tx.send(true);
                let _ = tokio::time::timeout(CANCEL_WAIT, in_flight.wait_idle()).await;
            }
            let mut result = Ok(());
            if let Some(mut task) = pg_task {
                // The accept loop closes its connections when it ends. A connection task that
                // is slow to notice (a loaded machine, a result still being encoded for a
                // client that left) is dropped: its statement has already finished or been
                // cancelled above, so nothing it could still do needs to be waited for.
                match tokio::time::timeout(CANCEL_WAIT, &mut task).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => result = Err(format!("PostgreSQL server: {e}")),
                    Err(_) => {
                        tracing::warn!(
                            "PostgreSQL connections still open after {CANCEL_WAIT:?}: dropping them"
                        );
                        task.abort();
                        let _ = task.await;
                    }
                }
            }
            if let Some(mut task) = flight_task {
                // tonic waits for open calls; idle connections may linger: cancel then.
                let _ = cancel_tx.send(true);
                match tokio::time::timeout(CANCEL_WAIT, &mut task).await {
                    Ok(Ok(Ok(()))) => {}
                    Ok(Ok(Err(e))) => result = Err(e),
                    Ok(Err(e)) => result = Err(format!("Flight SQL server: {e}")),
                    Err(_) => {
                        task.abort();
                        let _ = task.await;
                    }
                }
            }
            // A cancelled statement's task, or a connection task dropped above, may still be
            // unwinding on another worker thread with its handle: give it the same bounded
            // wait before closing the database.
            let deadline = tokio::time::Instant::now() + CANCEL_WAIT;
            while Arc::strong_count(&statements) > 1 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let closed = close(statements, &catalog_name);
            result.and(closed)
        });
        Ok(Server {
            flight_addr,
            pg_addr,
            stop: stop_tx,
            done,
        })
    }

    /// The Flight SQL address being served.
    pub fn flight_addr(&self) -> Option<SocketAddr> {
        self.flight_addr
    }

    /// The PostgreSQL address being served.
    pub fn pg_addr(&self) -> Option<SocketAddr> {
        self.pg_addr
    }

    /// Shuts down gracefully (see the module doc) and closes the database.
    pub async fn shutdown(self) -> Result<(), String> {
        let _ = self.stop.send(true);
        self.done
            .await
            .map_err(|e| format!("shutdown failed: {e}"))?
    }
}

/// Drops the last handles to the session and closes the database.
///
/// A task that still holds a handle after the bounded waits of shutdown (a connection task
/// of tonic or pgwire still unwinding on a loaded machine) does not keep the database open:
/// it is closed through the shared handle ([`strata_engine::Db::close_shared`]: WAL synced,
/// background work stopped, lock released) and that task's later calls get "closed" errors.
fn close(statements: Arc<Statements>, catalog_name: &str) -> Result<(), String> {
    let session = match Arc::try_unwrap(statements) {
        Ok(statements) => statements.into_session(),
        Err(statements) => {
            let handles = Arc::strong_count(&statements) - 1;
            return close_under_handles(statements.session(), catalog_name, handles);
        }
    };
    let session = match Arc::try_unwrap(session) {
        Ok(session) => session,
        Err(session) => {
            let handles = Arc::strong_count(&session) - 1;
            return close_under_handles(&session, catalog_name, handles);
        }
    };
    deregister_pg_catalog(&session, catalog_name);
    session
        .close()
        .map_err(|e| format!("cannot close the database: {e}"))
}

/// Closes the database of `session` while `handles` other handles to it remain.
fn close_under_handles(
    session: &StrataSession,
    catalog_name: &str,
    handles: usize,
) -> Result<(), String> {
    tracing::warn!(
        "{handles} handles to the server's session remain after shutdown: closing the database under them"
    );
    deregister_pg_catalog(session, catalog_name);
    session
        .db()
        .close_shared()
        .map_err(|e| format!("cannot close the database: {e}"))
}

/// pg_catalog refers to the catalog list that holds it: deregistered so the session can drop.
fn deregister_pg_catalog(session: &StrataSession, catalog_name: &str) {
    if let Some(catalog) = session.context().catalog(catalog_name)
        && catalog.schema("pg_catalog").is_some()
    {
        let _ = CatalogProvider::deregister_schema(catalog.as_ref(), "pg_catalog", true);
    }
}

fn local_addr(listener: &TcpListener) -> Result<SocketAddr, String> {
    listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))
}

/// The TLS acceptor of the PostgreSQL listener.
fn pg_tls(tls: &TlsPem) -> Result<pgwire::tokio::TlsAcceptor, String> {
    use tokio_rustls::rustls;
    let certs = CertificateDer::pem_slice_iter(&tls.cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad TLS certificate: {e}"))?;
    if certs.is_empty() {
        return Err("the TLS certificate file holds no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(&tls.key).map_err(|e| format!("bad TLS key: {e}"))?;
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("bad TLS certificate or key: {e}"))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Accepts PostgreSQL connections until `stop`; then closes the open ones.
async fn pg_accept(
    listener: TcpListener,
    tls: Option<pgwire::tokio::TlsAcceptor>,
    handlers: Arc<StrataPgHandlers>,
    connections: Arc<Connections>,
    statements: Arc<Statements>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let (socket, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("PostgreSQL accept failed: {e}");
                continue;
            }
        };
        if tasks.len() >= PG_CONNECTIONS_MAX {
            tracing::warn!(
                "refusing a PostgreSQL connection from {peer}: {PG_CONNECTIONS_MAX} open"
            );
            continue;
        }
        let _ = socket.set_nodelay(true);
        ServerMetrics::bump(&statements.metrics().pg_connections);
        let (cancel_tx, cancel_rx) = watch::channel(false);
        let conn = match statements.connection() {
            Ok(c) => c.with_cancel(cancel_rx),
            Err(e) => {
                tracing::warn!("cannot set up a connection for {peer}: {e}");
                continue;
            }
        };
        // A second handle on the socket to notice the client leaving mid-statement.
        let watcher = match dup_socket(&socket) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::debug!("no disconnect watch for {peer}: {e}");
                None
            }
        };
        connections.insert(peer, conn);
        let handlers = Arc::clone(&handlers);
        let connections = Arc::clone(&connections);
        let tls = tls.clone();
        tasks.spawn(async move {
            let watch = watcher.map(|w| tokio::spawn(watch_disconnect(w, cancel_tx)));
            if let Err(e) = pgwire::tokio::process_socket(socket, tls, handlers).await {
                tracing::debug!("PostgreSQL connection from {peer}: {e}");
            }
            if let Some(w) = watch {
                w.abort();
            }
            connections.remove(&peer);
        });
    }
    drop(listener);
    // In-flight statements have had their grace period (see `Server::start`); close the rest.
    tasks.shutdown().await;
}

fn dup_socket(socket: &tokio::net::TcpStream) -> std::io::Result<tokio::net::TcpStream> {
    use std::os::fd::AsFd;
    let owned = socket.as_fd().try_clone_to_owned()?;
    let std = std::net::TcpStream::from(owned);
    std.set_nonblocking(true)?;
    tokio::net::TcpStream::from_std(std)
}

/// `strata serve`: opens the database, serves it until SIGTERM or SIGINT, then shuts down
/// gracefully. Prints one line per listener (`Flight SQL on ADDR`, `PostgreSQL on ADDR`).
pub fn run(args: &ServeArgs) -> Result<(), String> {
    let config = ServeConfig::from_args(args, |k| std::env::var(k).ok())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("strata-serve")
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    rt.block_on(async move {
        let session =
            strata_datafusion::open(&config.data_dir, Default::default()).map_err(|e| {
                format!(
                    "cannot open the database in {}: {e}",
                    config.data_dir.display()
                )
            })?;
        let dir = config.data_dir.clone();
        let tls = config.tls.is_some();
        let server = Server::start(config, session).await?;
        let scheme = if tls { " (TLS)" } else { "" };
        if let Some(a) = server.flight_addr() {
            println!("strata serve: Flight SQL on {a}{scheme}");
        }
        if let Some(a) = server.pg_addr() {
            println!("strata serve: PostgreSQL on {a}{scheme}");
        }
        println!("strata serve: database {}", dir.display());
        use std::io::Write;
        let _ = std::io::stdout().flush();
        wait_for_signal().await?;
        eprintln!("strata serve: shutting down");
        server.shutdown().await?;
        println!("strata serve: stopped, database closed");
        Ok(())
    })
}

async fn wait_for_signal() -> Result<(), String> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| format!("cannot watch SIGTERM: {e}"))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(|e| format!("cannot watch SIGINT: {e}"))?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statements(session: StrataSession) -> Arc<Statements> {
        let (_, shutdown) = watch::channel(false);
        Arc::new(Statements::new(
            Arc::new(session),
            Arc::new(ServerMetrics::default()),
            None,
            None,
            shutdown,
        ))
    }

    /// A handle that outlives shutdown (a connection task still unwinding) does not keep the
    /// database open: it is closed anyway, its data is durable, the directory can be opened
    /// again, and the stray handle gets errors rather than a second writer.
    #[tokio::test]
    async fn a_handle_left_after_shutdown_does_not_keep_the_database_open() {
        let dir = tempfile::tempdir().unwrap();
        let session = strata_datafusion::open(dir.path(), Default::default()).unwrap();
        let name = session
            .copied_config()
            .options()
            .catalog
            .default_catalog
            .clone();
        let statements = statements(session);
        let session = statements.session();
        for sql in [
            "CREATE TABLE t (k BIGINT PRIMARY KEY, v BIGINT)",
            "INSERT INTO t VALUES (1, 10), (2, 20)",
        ] {
            session.sql(sql).await.unwrap().collect().await.unwrap();
        }
        let stray = Arc::clone(&statements);
        close(statements, &name).unwrap();

        let inserted = match stray.session().sql("INSERT INTO t VALUES (3, 30)").await {
            Ok(df) => df.collect().await.map(|_| ()),
            Err(e) => Err(e),
        };
        assert!(inserted.is_err(), "a write through a closed database");
        drop(stray);

        let session = strata_datafusion::open(dir.path(), Default::default()).unwrap();
        let rows = session
            .sql("SELECT k, v FROM t ORDER BY k")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&rows)
            .unwrap()
            .to_string();
        assert!(
            text.contains("| 1 | 10 |") && text.contains("| 2 | 20 |"),
            "{text}"
        );
        assert!(!text.contains("| 3 "), "{text}");
        session.close().unwrap();
    }
}
