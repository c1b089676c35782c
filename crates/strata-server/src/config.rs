//! The options of `strata serve` ([`ServeArgs`], parsed by clap) and their checked form
//! ([`ServeConfig`]).
//!
//! Owns every start-up check: addresses parse, secrets are read from their environment
//! variable or file (never a default), TLS certificate and key come together, and a listener on
//! a non-loopback address has credentials for its protocol. Invariant: a [`ServeConfig`] only
//! exists when all of these hold, so the server never starts in a state the checks refuse.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Environment variable holding the Flight SQL bearer token.
pub const FLIGHT_TOKEN_ENV: &str = "STRATA_FLIGHT_TOKEN";
/// Environment variable holding the PostgreSQL password.
pub const PG_PASSWORD_ENV: &str = "STRATA_PG_PASSWORD";
/// Flight SQL address when neither `--flight` nor `--pg` is given.
pub const DEFAULT_FLIGHT_ADDR: &str = "127.0.0.1:32010";
/// PostgreSQL address when neither `--flight` nor `--pg` is given.
pub const DEFAULT_PG_ADDR: &str = "127.0.0.1:5432";
/// Longest accepted secret (token or password), in bytes.
const SECRET_MAX: usize = 4096;

/// `strata serve`: serve a database over Arrow Flight SQL and the PostgreSQL wire protocol.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Database directory (created on first use), or a file:// URL of one.
    #[arg(value_name = "DATA_DIR|URL")]
    pub location: Option<String>,

    /// Arrow Flight SQL address, HOST:PORT or PORT (loopback). With neither --flight nor
    /// --pg, both listen: Flight SQL on 127.0.0.1:32010, PostgreSQL on 127.0.0.1:5432.
    #[arg(long, value_name = "ADDR")]
    pub flight: Option<String>,

    /// PostgreSQL wire protocol address, HOST:PORT or PORT (loopback).
    #[arg(long, value_name = "ADDR")]
    pub pg: Option<String>,

    /// File holding the Flight SQL bearer token (else the STRATA_FLIGHT_TOKEN variable).
    #[arg(long, value_name = "FILE")]
    pub flight_token_file: Option<PathBuf>,

    /// File holding the PostgreSQL password (else the STRATA_PG_PASSWORD variable).
    #[arg(long, value_name = "FILE")]
    pub pg_password_file: Option<PathBuf>,

    /// PEM certificate chain: serve both protocols over TLS (with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Memory limit of each connection's statements, e.g. 512MiB (default: none).
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    pub memory_limit: Option<usize>,

    /// Longest a statement may run, e.g. 30s or 500ms (default: none).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub statement_timeout: Option<Duration>,

    /// How long in-flight statements may go on after SIGTERM/SIGINT before they are cancelled.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
}

/// TLS certificate chain and key, PEM, as read from their files.
#[derive(Clone)]
pub struct TlsPem {
    /// The certificate chain.
    pub cert: Vec<u8>,
    /// The private key.
    pub key: Vec<u8>,
}

impl std::fmt::Debug for TlsPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsPem { .. }")
    }
}

/// The checked configuration of a server.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Database directory.
    pub data_dir: PathBuf,
    /// Flight SQL listener, if any.
    pub flight: Option<SocketAddr>,
    /// PostgreSQL listener, if any.
    pub pg: Option<SocketAddr>,
    /// Bearer token Flight SQL clients must present, if any.
    pub flight_token: Option<String>,
    /// Password PostgreSQL clients must give, if any.
    pub pg_password: Option<String>,
    /// TLS for both listeners, if any.
    pub tls: Option<TlsPem>,
    /// Memory limit of each connection's statements.
    pub memory_limit: Option<usize>,
    /// Statement timeout.
    pub statement_timeout: Option<Duration>,
    /// Grace period of in-flight statements at shutdown.
    pub shutdown_grace: Duration,
}

impl ServeConfig {
    /// Checks `args`, reading secrets with `env` (the process environment in `strata serve`).
    pub fn from_args(
        args: &ServeArgs,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ServeConfig, String> {
        let data_dir = data_dir(args.location.as_deref())?;
        let (flight, pg) = match (&args.flight, &args.pg) {
            (None, None) => (
                Some(parse_addr(DEFAULT_FLIGHT_ADDR)?),
                Some(parse_addr(DEFAULT_PG_ADDR)?),
            ),
            (f, p) => (
                f.as_deref().map(parse_addr).transpose()?,
                p.as_deref().map(parse_addr).transpose()?,
            ),
        };
        let flight_token = secret(
            "Flight SQL token",
            args.flight_token_file.as_deref(),
            FLIGHT_TOKEN_ENV,
            &env,
        )?;
        let pg_password = secret(
            "PostgreSQL password",
            args.pg_password_file.as_deref(),
            PG_PASSWORD_ENV,
            &env,
        )?;
        if let Some(addr) = flight
            && !addr.ip().is_loopback()
            && flight_token.is_none()
        {
            return Err(format!(
                "refusing to serve Flight SQL on {addr} without credentials: a non-loopback \
                 address needs a bearer token ({FLIGHT_TOKEN_ENV} or --flight-token-file)"
            ));
        }
        if let Some(addr) = pg
            && !addr.ip().is_loopback()
            && pg_password.is_none()
        {
            return Err(format!(
                "refusing to serve PostgreSQL on {addr} without credentials: a non-loopback \
                 address needs a password ({PG_PASSWORD_ENV} or --pg-password-file)"
            ));
        }
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(TlsPem {
                cert: read_file(cert, "TLS certificate")?,
                key: read_file(key, "TLS key")?,
            }),
            (None, None) => None,
            _ => return Err("--tls-cert and --tls-key go together".into()),
        };
        if args.memory_limit == Some(0) {
            return Err("--memory-limit must be more than 0 bytes".into());
        }
        if args.statement_timeout == Some(Duration::ZERO) {
            return Err("--statement-timeout must be more than 0".into());
        }
        Ok(ServeConfig {
            data_dir,
            flight,
            pg,
            flight_token,
            pg_password,
            tls,
            memory_limit: args.memory_limit,
            statement_timeout: args.statement_timeout,
            shutdown_grace: args.shutdown_grace,
        })
    }
}

/// The directory a `DATA_DIR|URL` argument names: a path, or a `file://` URL of one.
fn data_dir(location: Option<&str>) -> Result<PathBuf, String> {
    let Some(location) = location else {
        return Ok(PathBuf::from("strata-data"));
    };
    if let Some(path) = location.strip_prefix("file://") {
        if path.is_empty() {
            return Err("file:// URL without a path".into());
        }
        return Ok(PathBuf::from(path));
    }
    if let Some((scheme, _)) = location.split_once("://") {
        return Err(format!(
            "cannot serve {location}: only local databases (a directory or a file:// URL) can \
             be served, not {scheme}://"
        ));
    }
    Ok(PathBuf::from(location))
}

/// `PORT` (on 127.0.0.1) or `HOST:PORT` (host names resolved once, at start-up).
fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    text.to_socket_addrs()
        .map_err(|e| format!("bad address {text:?} (HOST:PORT or PORT): {e}"))?
        .next()
        .ok_or_else(|| format!("address {text:?} resolves to nothing"))
}

fn read_file(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))
}

/// A secret from its file (if given) or its environment variable; trailing line ends are
/// dropped, an empty secret is refused.
fn secret(
    what: &str,
    file: Option<&Path>,
    var: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Option<String>, String> {
    let (text, source) = match file {
        Some(path) => {
            let bytes = read_file(path, what)?;
            let text = String::from_utf8(bytes)
                .map_err(|_| format!("the {what} in {} is not UTF-8", path.display()))?;
            (text, path.display().to_string())
        }
        None => match env(var) {
            Some(text) => (text, var.to_string()),
            None => return Ok(None),
        },
    };
    let text = text.trim_end_matches(['\r', '\n']).to_string();
    if text.is_empty() {
        return Err(format!("the {what} in {source} is empty"));
    }
    if text.len() > SECRET_MAX {
        return Err(format!(
            "the {what} in {source} is longer than {SECRET_MAX} bytes"
        ));
    }
    Ok(Some(text))
}

/// Bytes with an optional unit: `1048576`, `64KiB`, `512MiB`, `2GiB` (also K, M, G, KB, MB, GB
/// as powers of 1024).
pub fn parse_bytes(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: usize = digits
        .parse()
        .map_err(|_| format!("bad size {text:?}: expected e.g. 1048576, 64KiB, 512MiB, 2GiB"))?;
    let scale: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => {
            return Err(format!(
                "bad size unit {other:?} in {text:?} (KiB, MiB, GiB)"
            ));
        }
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

/// A duration: `30s`, `500ms`, `2m`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("bad duration {text:?}: expected e.g. 30s, 500ms, 2m"))?;
    match unit.trim() {
        "" | "s" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" | "min" => Ok(Duration::from_secs(n.saturating_mul(60))),
        other => Err(format!(
            "bad duration unit {other:?} in {text:?} (ms, s, m)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn config(argv: &[&str], env: &[(&str, &str)]) -> Result<ServeConfig, String> {
        let mut full = vec!["serve"];
        full.extend_from_slice(argv);
        let cli = Cli::try_parse_from(full).map_err(|e| e.to_string())?;
        ServeConfig::from_args(&cli.serve, |k| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn loopback_by_default_and_both_protocols() {
        let c = config(&["db"], &[]).unwrap();
        assert_eq!(c.flight, Some(DEFAULT_FLIGHT_ADDR.parse().unwrap()));
        assert_eq!(c.pg, Some(DEFAULT_PG_ADDR.parse().unwrap()));
        assert!(c.flight_token.is_none() && c.pg_password.is_none());
        let c = config(&["db", "--pg", "6000"], &[]).unwrap();
        assert_eq!(c.pg, Some("127.0.0.1:6000".parse().unwrap()));
        assert_eq!(c.flight, None);
    }

    #[test]
    fn non_loopback_needs_credentials() {
        let err = config(&["db", "--flight", "0.0.0.0:1"], &[]).unwrap_err();
        assert!(err.contains("STRATA_FLIGHT_TOKEN"), "{err}");
        let err = config(&["db", "--pg", "0.0.0.0:1"], &[]).unwrap_err();
        assert!(err.contains("STRATA_PG_PASSWORD"), "{err}");
        let c = config(
            &["db", "--pg", "0.0.0.0:1"],
            &[("STRATA_PG_PASSWORD", "s3cret\n")],
        )
        .unwrap();
        assert_eq!(c.pg_password.as_deref(), Some("s3cret"));
        let err = config(&["db", "--pg", "1"], &[("STRATA_PG_PASSWORD", "\n")]).unwrap_err();
        assert!(err.contains("empty"), "{err}");
    }

    #[test]
    fn urls_and_units() {
        assert_eq!(
            data_dir(Some("file:///x/y")).unwrap(),
            PathBuf::from("/x/y")
        );
        assert!(
            data_dir(Some("s3://b/k"))
                .unwrap_err()
                .contains("only local")
        );
        assert_eq!(parse_bytes("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("64k").unwrap(), 64 << 10);
        assert!(parse_bytes("5XB").is_err());
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("2h").is_err());
    }

    #[test]
    fn tls_needs_both_files() {
        assert!(config(&["db", "--tls-cert", "c.pem"], &[]).is_err());
    }
}
