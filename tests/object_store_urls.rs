//! `gs://` and `az://` databases and SQL locations in the `strata` shell, as far as they can
//! be tested here: no Google Cloud Storage or Azure Blob Storage server can be installed on
//! this machine (the emulators are a Go program and an npm package; the Python GCS emulator
//! on PyPI ignores conditional puts), so each test runs `strata` with its settings in the
//! child's environment, pointed at a loopback listener of this test that records the requests
//! it gets and answers every one with a plain status (404 to reads, 503 to writes). That shows
//! which store a URL reached, at which bucket and prefix, with which credentials and
//! conditional-put headers, and that the shell ends with a clear error instead of hanging;
//! it does not show that a real GCS or Azure accepts the requests (that would take the real
//! service or an emulator; the same code path is tested against an S3 server in
//! `tests/s3_cli.rs` and `crates/strata-engine/tests/s3.rs`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

/// One request the listener got.
#[derive(Debug, Clone)]
struct Request {
    method: String,
    /// Path and query, percent-decoded (GCS encodes the `/` of object names).
    target: String,
    /// Header names in lower case.
    headers: BTreeMap<String, String>,
}

/// A loopback HTTP listener that records requests and answers each with an empty body:
/// 404 to `GET` and `HEAD`, 503 to everything else. It serves until the test process ends.
struct Recorder {
    port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Recorder {
    fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&requests);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let recorded = Arc::clone(&recorded);
                std::thread::spawn(move || serve(stream, &recorded));
            }
        });
        Recorder { port, requests }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

/// Serves the requests of one connection (keep-alive) until the client closes it.
fn serve(stream: TcpStream, recorded: &Mutex<Vec<Request>>) {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
            return;
        };
        let mut headers = BTreeMap::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
            }
        }
        let length: u64 = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if std::io::copy(&mut (&mut reader).take(length), &mut std::io::sink()).is_err() {
            return;
        }
        let status = match method {
            "GET" | "HEAD" => "404 Not Found",
            _ => "503 Service Unavailable",
        };
        recorded.lock().unwrap().push(Request {
            method: method.to_string(),
            target: percent_decoded(target),
            headers,
        });
        let response = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs `strata <args>` with only `env` (plus `HOME` and `XDG_DATA_HOME` in `home`) as its
/// environment, so that no store setting of the test's own environment reaches it. Fails
/// the test if it runs for more than two minutes (a hang, not a measured time).
fn strata(args: &[&str], home: &Path, env: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(STRATA);
    cmd.args(args)
        .env_clear()
        .env("HOME", home)
        .env("XDG_DATA_HOME", home.join("data"))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("strata {args:?} did not finish");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Settings of a GCS store at `recorder`: a service-account key (read from
/// `GOOGLE_SERVICE_ACCOUNT_KEY`) naming the recorder as its GCS endpoint, without OAuth.
fn gcs_env(recorder: &Recorder) -> Vec<(&'static str, String)> {
    let key = format!(
        r#"{{"private_key": "", "private_key_id": "", "client_email": "strata@test", "gcs_base_url": "{}", "disable_oauth": true}}"#,
        recorder.url()
    );
    vec![("GOOGLE_SERVICE_ACCOUNT_KEY", key)]
}

/// Settings of an Azure store at `recorder` (the emulator mode of `object_store`'s Azure
/// builder, with the account and key from `AZURE_STORAGE_ACCOUNT_NAME` and `_KEY`).
fn azure_env(recorder: &Recorder) -> Vec<(&'static str, String)> {
    vec![
        ("AZURE_STORAGE_USE_EMULATOR", "true".into()),
        ("AZURITE_BLOB_STORAGE_URL", recorder.url()),
        ("AZURE_STORAGE_ACCOUNT_NAME", "strataacct".into()),
        // base64 of "strata-test-key"
        ("AZURE_STORAGE_ACCOUNT_KEY", "c3RyYXRhLXRlc3Qta2V5".into()),
    ]
}

/// The first request whose method is `method` and whose target starts with `prefix`.
fn find(requests: &[Request], method: &str, prefix: &str) -> Option<Request> {
    requests
        .iter()
        .find(|r| r.method == method && r.target.starts_with(prefix))
        .cloned()
}

#[test]
fn a_gs_database_reads_its_settings_from_the_environment_and_creates_with_a_conditional_put() {
    let recorder = Recorder::start();
    let home = tempfile::tempdir().unwrap();
    let out = strata(
        &["gs://stratabucket/warehouse/db", "-c", "SELECT 1"],
        home.path(),
        &gcs_env(&recorder),
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("cannot open the database in gs://stratabucket/warehouse/db")
            && err.contains("MANIFEST-000001"),
        "{err}"
    );
    let requests = recorder.requests();
    // The open looked for the database under the bucket and prefix of the URL...
    assert!(
        find(&requests, "GET", "/stratabucket/warehouse/db/CURRENT").is_some(),
        "{requests:#?}"
    );
    // ...and created its first manifest only if absent (GCS: generation 0).
    let put = find(
        &requests,
        "PUT",
        "/stratabucket/warehouse/db/MANIFEST-000001",
    )
    .unwrap_or_else(|| panic!("{requests:#?}"));
    assert_eq!(
        put.headers
            .get("x-goog-if-generation-match")
            .map(String::as_str),
        Some("0"),
        "{put:#?}"
    );
}

#[test]
fn an_az_database_reads_its_account_from_the_environment_and_creates_with_a_conditional_put() {
    let recorder = Recorder::start();
    let home = tempfile::tempdir().unwrap();
    let out = strata(
        &["az://strata-container/db", "-c", "SELECT 1"],
        home.path(),
        &azure_env(&recorder),
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("cannot open the database in az://strata-container/db")
            && err.contains("MANIFEST-000001"),
        "{err}"
    );
    let requests = recorder.requests();
    assert!(
        find(&requests, "GET", "/strataacct/strata-container/db/CURRENT").is_some(),
        "{requests:#?}"
    );
    let put = find(
        &requests,
        "PUT",
        "/strataacct/strata-container/db/MANIFEST-000001",
    )
    .unwrap_or_else(|| panic!("{requests:#?}"));
    assert_eq!(
        put.headers.get("if-none-match").map(String::as_str),
        Some("*"),
        "{put:#?}"
    );
    // Signed with the account's key from the environment.
    assert!(
        put.headers
            .get("authorization")
            .is_some_and(|a| a.starts_with("SharedKey strataacct:")),
        "{put:#?}"
    );
}

#[test]
fn missing_credentials_are_a_clear_error() {
    let home = tempfile::tempdir().unwrap();
    // Azure: no account anywhere; refused before any request.
    let out = strata(
        &["az://strata-container/db", "-c", "SELECT 1"],
        home.path(),
        &[],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("cannot open the database in az://strata-container/db")
            && err.contains("Azure Blob Storage")
            && err.contains("AZURE_STORAGE_ACCOUNT_NAME"),
        "{err}"
    );
    // GCS: no GOOGLE_* setting and no application-default credentials under HOME, so the
    // store asks the instance metadata server for a token; pointed at the loopback listener
    // (GCE_METADATA_HOST, GCE_METADATA_IP), the request fails and so does the open.
    let recorder = Recorder::start();
    let metadata = format!("127.0.0.1:{}", recorder.port);
    let out = strata(
        &["gs://stratabucket/db", "-c", "SELECT 1"],
        home.path(),
        &[
            ("GCE_METADATA_HOST", metadata.clone()),
            ("GCE_METADATA_IP", metadata),
        ],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("cannot open the database in gs://stratabucket/db")
            && err.contains("GOOGLE_SERVICE_ACCOUNT"),
        "{err}"
    );
    let requests = recorder.requests();
    assert!(
        find(
            &requests,
            "GET",
            "/computeMetadata/v1/instance/service-accounts"
        )
        .is_some(),
        "{requests:#?}"
    );
    assert!(
        !requests.iter().any(|r| r.target.contains("stratabucket")),
        "no request reached a bucket without a token: {requests:#?}"
    );
}

#[test]
fn sql_locations_and_copy_targets_reach_gs_and_az_stores() {
    let home = tempfile::tempdir().unwrap();
    let recorder = Recorder::start();
    let out = strata(
        &[
            "--memory",
            "-c",
            "CREATE EXTERNAL TABLE ext STORED AS CSV LOCATION 'gs://stratabucket/export/'",
        ],
        home.path(),
        &gcs_env(&recorder),
    );
    assert!(!out.status.success());
    let requests = recorder.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.target.starts_with("/stratabucket") && r.target.contains("export")),
        "{}\n{requests:#?}",
        stderr(&out)
    );

    let recorder = Recorder::start();
    let out = strata(
        &[
            "--memory",
            "-c",
            "COPY (SELECT 1 AS x) TO 'az://strata-container/out/x.csv' STORED AS CSV",
        ],
        home.path(),
        &azure_env(&recorder),
    );
    assert!(!out.status.success());
    let requests = recorder.requests();
    assert!(
        find(&requests, "PUT", "/strataacct/strata-container/out/x.csv").is_some(),
        "{}\n{requests:#?}",
        stderr(&out)
    );
}
