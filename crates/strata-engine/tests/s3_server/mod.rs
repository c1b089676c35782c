//! The S3 protocol server of the object-storage tests: `moto` in server mode, installed by
//! `scripts/s3-test-server.sh` (pinned version), started once per test process on a free port
//! of 127.0.0.1 and stopped when the process exits (a watchdog shell kills it). Shared by the
//! engine's and the SQL layer's tests (`#[path]` module).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The moto server of this test process: its endpoint.
pub fn server() -> &'static str {
    static SERVER: OnceLock<String> = OnceLock::new();
    SERVER.get_or_init(|| {
        // The workspace's scripts/, above the crate that includes this module.
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .map(|dir| dir.join("scripts/s3-test-server.sh"))
            .find(|script| script.exists())
            .expect("scripts/s3-test-server.sh above the crate");
        let out = Command::new(script)
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/s3-test-server.sh");
        assert!(out.status.success(), "scripts/s3-test-server.sh failed");
        let stdout = String::from_utf8(out.stdout).unwrap();
        let moto = stdout.lines().last().expect("moto_server path").to_string();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // The watchdog stops the server when this process is gone.
        let script = format!(
            "'{moto}' -H 127.0.0.1 -p {port} >/dev/null 2>&1 & m=$!; \
             while kill -0 {} 2>/dev/null && kill -0 $m 2>/dev/null; do sleep 1; done; \
             kill $m 2>/dev/null",
            std::process::id()
        );
        let mut watchdog = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .spawn()
            .expect("start moto_server");
        // Reaped when it ends (after this process, in practice).
        std::thread::spawn(move || watchdog.wait());
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let endpoint = format!("http://127.0.0.1:{port}");
        // SAFETY: set once, before any database of this process reads them (every test calls
        // `server()` first and waits here until it returns).
        unsafe {
            std::env::set_var("AWS_ENDPOINT", &endpoint);
            std::env::set_var("AWS_ALLOW_HTTP", "true");
            std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
            std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
            std::env::set_var("AWS_REGION", "us-east-1");
        }
        endpoint
    })
}

/// Environment a child process needs to reach the server.
pub fn child_env(cmd: &mut Command) {
    cmd.env("AWS_ENDPOINT", server())
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1");
}

/// A fresh bucket on the server; returns its name.
pub fn bucket(name: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let endpoint = server();
    let bucket = format!(
        "{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let addr = endpoint.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "PUT /{bucket} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "create bucket: {response}"
    );
    bucket
}
