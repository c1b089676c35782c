//! The `strata` shell over object storage, against a real S3 protocol server on loopback
//! (`moto`, see `crates/strata-engine/tests/s3_server`):
//!
//! * `strata s3://bucket/prefix` opens (creating) a database there; a second run sees the
//!   first run's tables, from the store alone (another local WAL directory);
//! * `COPY ... TO 's3://...'` writes Parquet, CSV and JSON files to the store, and
//!   `CREATE EXTERNAL TABLE ... LOCATION 's3://...'` reads each back;
//! * a store set up without conditional puts (`AWS_CONDITIONAL_PUT=disabled`) is refused at
//!   open with an error saying why, instead of a database running there unfenced.

#[path = "../crates/strata-engine/tests/s3_server/mod.rs"]
mod s3_server;

use std::process::{Command, Output};

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

/// Runs `strata <db> -c <sql>...` with `data_home` as `XDG_DATA_HOME` (where the local WAL
/// of a database on object storage goes by default).
fn strata(db: &str, data_home: &std::path::Path, sql: &[&str]) -> Output {
    let mut cmd = Command::new(STRATA);
    cmd.arg(db).arg("--format").arg("csv");
    for statement in sql {
        cmd.arg("-c").arg(statement);
    }
    cmd.env("XDG_DATA_HOME", data_home);
    s3_server::child_env(&mut cmd);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "strata {db} {sql:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn the_shell_opens_a_database_on_s3_and_copies_to_and_from_it() {
    let bucket = s3_server::bucket("cli");
    let db = format!("s3://{bucket}/warehouse");
    let home = tempfile::tempdir().unwrap();
    strata(
        &db,
        home.path(),
        &[
            "CREATE TABLE t (id BIGINT PRIMARY KEY, name VARCHAR)",
            "INSERT INTO t VALUES (1, 'ada'), (2, 'grace'), (3, 'edsger')",
        ],
    );
    // The WAL was local; flush it to the store by reopening once with the same home, then
    // read from another home: the table comes from the store alone.
    strata(&db, home.path(), &["SELECT * FROM strata_flush('t')"]);
    let other = tempfile::tempdir().unwrap();
    let out = strata(&db, other.path(), &["SELECT id, name FROM t ORDER BY id"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("1,ada") && stdout.contains("3,edsger"),
        "{stdout}"
    );

    for format in ["PARQUET", "CSV", "JSON"] {
        let location = format!("s3://{bucket}/export/{}/", format.to_lowercase());
        let name = format!("ext_{}", format.to_lowercase());
        let options = if format == "CSV" {
            " OPTIONS ('format.has_header' 'true')"
        } else {
            ""
        };
        let out = strata(
            &db,
            home.path(),
            &[
                &format!("COPY (SELECT * FROM t) TO '{location}' STORED AS {format}{options}"),
                &format!(
                    "CREATE EXTERNAL TABLE {name} STORED AS {format} LOCATION '{location}'{options}"
                ),
                &format!("SELECT count(*) AS n, max(name) AS m FROM {name}"),
            ],
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("3,grace"), "{format}: {stdout}");
    }
}

/// A store configured without conditional puts (`AWS_CONDITIONAL_PUT=disabled`) cannot fence
/// writers: the open, which is a commit, fails with an error saying so, and nothing of a
/// database is left in the store (a later open with conditional puts creates it afresh).
#[test]
fn a_store_without_conditional_puts_is_refused() {
    let bucket = s3_server::bucket("nocond");
    let db = format!("s3://{bucket}/db");
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(STRATA);
    cmd.arg(&db).arg("-c").arg("SELECT 1");
    cmd.env("XDG_DATA_HOME", home.path());
    s3_server::child_env(&mut cmd);
    cmd.env("AWS_CONDITIONAL_PUT", "disabled");
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot open the database in {db}"))
            && stderr.contains("does not take conditional puts")
            && stderr.contains("AWS_CONDITIONAL_PUT"),
        "{stderr}"
    );
    let out = strata(&db, home.path(), &["SELECT 1 AS one"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains('1'));
}
