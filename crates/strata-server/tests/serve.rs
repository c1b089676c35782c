//! `strata serve` end to end: a real server process (see `common`), real clients (psql,
//! tokio-postgres, arrow-flight's Flight SQL client, and Python's ADBC Flight SQL driver and
//! psycopg 3 through `tests/clients.py`).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use common::*;

/// The server process of the other tests (does nothing unless started by them).
#[test]
fn child_server() {
    child_main();
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn int64s(batches: &[RecordBatch], col: usize) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            let a = arrow::compute::cast(b.column(col), &DataType::Int64).unwrap();
            let a = a.as_any().downcast_ref::<Int64Array>().unwrap().clone();
            (0..a.len()).map(move |i| a.value(i)).collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn psql_ddl_dml_queries_catalog_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[], &[]);
    let (ok, out, err) = psql(
        &server,
        &[
            "-c",
            "CREATE TABLE items (id BIGINT PRIMARY KEY, name VARCHAR, price DOUBLE)",
            "-c",
            "INSERT INTO items VALUES (1, 'apple', 1.5), (2, 'pear', 2.0), (3, 'fig', 3.25)",
            "-c",
            "INSERT INTO items VALUES (2, 'pear', 2.5)",
            "-c",
            "UPDATE items SET price = price * 2 WHERE id = 1",
            "-c",
            "DELETE FROM items WHERE id = 3",
            "-c",
            "SELECT id, name, price FROM items ORDER BY id",
            "-c",
            "\\dt",
            "-c",
            "\\d items",
        ],
        &[],
    );
    assert!(ok, "psql failed: {err}\n{out}");
    for expected in [
        "CREATE TABLE",
        "INSERT 0 3",
        "INSERT 0 1",
        "UPDATE 1",
        "DELETE 1",
        "  1 | apple |   3.0",
        "  2 | pear  |   2.5",
        "(2 rows)",
    ] {
        assert!(out.contains(expected), "no {expected:?} in:\n{out}");
    }
    assert!(!out.contains("fig"), "{out}");
    // \dt lists the table, \d its columns with their PostgreSQL types.
    assert!(
        out.lines()
            .any(|l| l.contains("public") && l.contains("items") && l.contains("table")),
        "{out}"
    );
    assert!(out.contains("Table \"public.items\""), "{out}");
    for column in [
        "id     | bigint",
        "name   | text",
        "price  | double precision",
    ] {
        assert!(out.contains(column), "no {column:?} in:\n{out}");
    }
    // Errors: one clear line each, the connection (and server) go on.
    let (ok, _, err) = psql(&server, &["-c", "SELECT * FROM no_such_table"], &[]);
    assert!(
        !ok && err.contains("no_such_table") && err.contains("not found"),
        "{err}"
    );
    let (ok, _, err) = psql(&server, &["-c", "SELEC 1"], &[]);
    assert!(!ok && err.contains("ERROR"), "{err}");
    let (ok, out, err) = psql(&server, &["-c", "SELECT count(*) AS n FROM items"], &[]);
    assert!(ok && out.contains(" 2\n"), "{out}{err}");
    let (status, rest) = server.terminate();
    assert!(status.success(), "{rest}");
    assert!(rest.contains("database closed"), "{rest}");
}

#[test]
fn pg_extended_protocol_parameters_of_every_type() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[], &[]);
    rt().block_on(async {
        let c = pg_client(&server).await;
        c.batch_execute(
            "CREATE TABLE typed (k BIGINT PRIMARY KEY, b BOOLEAN, i2 SMALLINT, i4 INT, \
             f4 REAL, f8 DOUBLE, s VARCHAR, d DATE, ts TIMESTAMP, by BYTEA)",
        )
        .await
        .unwrap();
        let insert = c
            .prepare(
                "INSERT INTO typed (k, b, i2, i4, f4, f8, s, d, ts, by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .await
            .unwrap();
        let day = chrono_date(2024, 2, 29);
        let ts = day.and_hms_opt(13, 14, 15).unwrap();
        for k in 0..3i64 {
            let n = c
                .execute(
                    &insert,
                    &[
                        &k,
                        &(k % 2 == 0),
                        &(k as i16 - 1),
                        &(k as i32 * 1000),
                        &(k as f32 + 0.5),
                        &(k as f64 / 4.0),
                        &format!("s{k} ü"),
                        &day,
                        &ts,
                        &vec![k as u8, 0xff],
                    ],
                )
                .await
                .unwrap();
            assert_eq!(n, 1);
        }
        let rows = c
            .query(
                "SELECT k, b, i2, i4, f4, f8, s, d, ts, by FROM typed WHERE k >= $1 ORDER BY k",
                &[&1i64],
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 2);
        let r = &rows[1];
        assert_eq!(r.get::<_, i64>(0), 2);
        assert!(r.get::<_, bool>(1));
        assert_eq!(r.get::<_, i16>(2), 1);
        assert_eq!(r.get::<_, i32>(3), 2000);
        assert_eq!(r.get::<_, f32>(4), 2.5);
        assert_eq!(r.get::<_, f64>(5), 0.5);
        assert_eq!(r.get::<_, String>(6), "s2 ü");
        assert_eq!(r.get::<_, chrono::NaiveDate>(7), day);
        assert_eq!(r.get::<_, chrono::NaiveDateTime>(8), ts);
        assert_eq!(r.get::<_, Vec<u8>>(9), vec![2u8, 0xff]);
        // Parameters in filters, updates and deletes; a NULL parameter.
        let n = c
            .execute("UPDATE typed SET s = $1 WHERE k = $2", &[&"new", &0i64])
            .await
            .unwrap();
        assert_eq!(n, 1);
        let n = c
            .execute("DELETE FROM typed WHERE k = $1", &[&1i64])
            .await
            .unwrap();
        assert_eq!(n, 1);
        let none: Option<String> = None;
        c.execute("INSERT INTO typed (k, s) VALUES ($1, $2)", &[&7i64, &none])
            .await
            .unwrap();
        let rows = c
            .query("SELECT k, s FROM typed ORDER BY k", &[])
            .await
            .unwrap();
        let got: Vec<(i64, Option<String>)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        assert_eq!(
            got,
            vec![(0, Some("new".into())), (2, Some("s2 ü".into())), (7, None)]
        );
        // A planning error in the extended protocol is an error for this statement only.
        let err = c
            .query("SELECT * FROM nope WHERE k = $1", &[&1i64])
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("nope") || format!("{err:?}").contains("nope"),
            "{err:?}"
        );
        assert_eq!(c.query("SELECT 1", &[]).await.unwrap().len(), 1);
    });
    let (status, rest) = server.terminate();
    assert!(status.success(), "{rest}");
}

fn chrono_date(y: i32, m: u32, d: u32) -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

#[test]
fn flight_sql_statements_prepared_statements_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[], &[]);
    rt().block_on(async {
        let mut c = flight_client(&server).await;
        c.execute_update(
            "CREATE TABLE kv (k BIGINT PRIMARY KEY, v VARCHAR, x DOUBLE)".into(),
            None,
        )
        .await
        .unwrap();
        let n = c
            .execute_update(
                "INSERT INTO kv VALUES (1, 'one', 1.0), (2, 'two', 2.0), (3, 'three', 3.0)".into(),
                None,
            )
            .await
            .unwrap();
        assert_eq!(n, 3);
        // An upsert of an existing key, a delete, an update.
        assert_eq!(
            c.execute_update("INSERT INTO kv VALUES (2, 'TWO', 20.0)".into(), None)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            c.execute_update("DELETE FROM kv WHERE k = 3".into(), None)
                .await
                .unwrap(),
            1
        );
        // DDL and DML sent as queries (as ADBC's execute does) run too.
        flight_query(&mut c, "UPDATE kv SET x = x + 0.5 WHERE k = 1")
            .await
            .unwrap();
        let batches = flight_query(&mut c, "SELECT k, v, x FROM kv ORDER BY k")
            .await
            .unwrap();
        assert_eq!(int64s(&batches, 0), vec![1, 2]);
        let v = batches[0]
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .map(|a| a.value(1).to_string())
            .unwrap_or_else(|| {
                let a = arrow::compute::cast(batches[0].column(1), &DataType::Utf8).unwrap();
                a.as_any()
                    .downcast_ref::<StringArray>()
                    .unwrap()
                    .value(1)
                    .to_string()
            });
        assert_eq!(v, "TWO");
        let x = arrow::compute::cast(batches[0].column(2), &DataType::Float64).unwrap();
        assert_eq!(
            x.as_any().downcast_ref::<Float64Array>().unwrap().value(0),
            1.5
        );

        // Prepared query with a parameter.
        let mut q = c
            .prepare("SELECT v FROM kv WHERE k = $1".into(), None)
            .await
            .unwrap();
        assert_eq!(q.parameter_schema().unwrap().fields().len(), 1);
        let params = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("$1", DataType::Int64, true)])),
            vec![Arc::new(Int64Array::from(vec![2]))],
        )
        .unwrap();
        q.set_parameters(params).unwrap();
        let info = q.execute().await.unwrap();
        let ticket = info.endpoint[0].ticket.clone().unwrap();
        let got: Vec<RecordBatch> =
            futures::TryStreamExt::try_collect(c.do_get(ticket).await.unwrap())
                .await
                .unwrap();
        assert_eq!(got.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
        q.close().await.unwrap();

        // Prepared update with parameters.
        let mut u = c
            .prepare("INSERT INTO kv VALUES ($1, $2, $3)".into(), None)
            .await
            .unwrap();
        let params = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("$1", DataType::Int64, true),
                Field::new("$2", DataType::Utf8, true),
                Field::new("$3", DataType::Float64, true),
            ])),
            vec![
                Arc::new(Int64Array::from(vec![10, 11])),
                Arc::new(StringArray::from(vec!["ten", "eleven"])),
                Arc::new(Float64Array::from(vec![10.0, 11.0])),
            ],
        )
        .unwrap();
        u.set_parameters(params).unwrap();
        assert_eq!(u.execute_update().await.unwrap(), 2);
        u.close().await.unwrap();
        let batches = flight_query(&mut c, "SELECT k FROM kv ORDER BY k")
            .await
            .unwrap();
        assert_eq!(int64s(&batches, 0), vec![1, 2, 10, 11]);

        // Catalog listings (ADBC get_objects, JDBC tools).
        let info = c
            .get_tables(arrow_flight::sql::CommandGetTables {
                catalog: None,
                db_schema_filter_pattern: None,
                table_name_filter_pattern: Some("kv".into()),
                table_types: vec![],
                include_schema: false,
            })
            .await
            .unwrap();
        let ticket = info.endpoint[0].ticket.clone().unwrap();
        let tables: Vec<RecordBatch> =
            futures::TryStreamExt::try_collect(c.do_get(ticket).await.unwrap())
                .await
                .unwrap();
        assert_eq!(tables.iter().map(|b| b.num_rows()).sum::<usize>(), 1);

        // Errors: clear statuses, and the server goes on.
        let err = flight_query(&mut c, "SELECT * FROM missing")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
        let err = c
            .execute_update("CREAT TABLE".into(), None)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("invalid argument") && err.to_string().contains("CREAT"),
            "{err}"
        );
        let batches = flight_query(&mut c, "SELECT count(*) FROM kv")
            .await
            .unwrap();
        assert_eq!(int64s(&batches, 0), vec![4]);
    });
    let (status, rest) = server.terminate();
    assert!(status.success(), "{rest}");
}

#[test]
fn credentials_are_required_off_loopback_checked_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    // A non-loopback address without credentials is refused at start-up.
    let err = try_start(dir.path(), &["--pg", "0.0.0.0:0"], &[])
        .err()
        .expect("started without a password");
    assert!(
        err.contains("refusing to serve PostgreSQL") && err.contains("STRATA_PG_PASSWORD"),
        "{err}"
    );
    let err = try_start(dir.path(), &["--flight", "0.0.0.0:0"], &[])
        .err()
        .expect("started without a token");
    assert!(
        err.contains("refusing to serve Flight SQL") && err.contains("STRATA_FLIGHT_TOKEN"),
        "{err}"
    );

    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "flight-secret\n").unwrap();
    let server = start(
        &dir.path().join("db"),
        &["--flight-token-file", token_file.to_str().unwrap()],
        &[("STRATA_PG_PASSWORD", "pg-secret")],
    );
    // PostgreSQL: a wrong password is refused, the right one works.
    let (ok, _, err) = psql(&server, &["-c", "SELECT 1"], &[("PGPASSWORD", "wrong")]);
    assert!(!ok && err.to_lowercase().contains("password"), "{err}");
    let (ok, out, err) = psql(
        &server,
        &["-c", "SELECT 41 + 1 AS x"],
        &[("PGPASSWORD", "pg-secret")],
    );
    assert!(ok && out.contains("42"), "{out}{err}");
    rt().block_on(async {
        // Flight SQL: no token, a wrong token, a wrong handshake password: refused.
        let mut c = flight_client(&server).await;
        let err = flight_query(&mut c, "SELECT 1").await.unwrap_err();
        assert!(err.to_string().contains("bearer token"), "{err}");
        c.set_token("nope".into());
        assert!(flight_query(&mut c, "SELECT 1").await.is_err());
        let mut h = flight_client(&server).await;
        assert!(h.handshake("any", "wrong").await.is_err());
        // The right token, directly or through the handshake.
        c.set_token("flight-secret".into());
        assert_eq!(
            int64s(&flight_query(&mut c, "SELECT 7").await.unwrap(), 0),
            vec![7]
        );
        h.handshake("any", "flight-secret").await.unwrap();
        assert_eq!(
            int64s(&flight_query(&mut h, "SELECT 8").await.unwrap(), 0),
            vec![8]
        );
        // Counted, visible to clients.
        let pg = pg_client_with(&server, "password=pg-secret").await.unwrap();
        assert!(pg_client_with(&server, "password=bad").await.is_err());
        assert_eq!(metric(&pg, "pg_auth_failures").await, 2);
        assert_eq!(metric(&pg, "flight_auth_failures").await, 3);
    });
    let (status, rest) = server.terminate();
    assert!(status.success(), "{rest}");
}

#[test]
fn bad_input_gets_an_error_and_the_server_keeps_serving() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[], &[]);
    // Garbage bytes on both ports: the connection is dropped, nothing else happens.
    for addr in [server.pg, server.flight] {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        let _ = s.write_all(b"\x00\x00\x00\x08garbage!\xff\xfe\x00\x01GET / HTTP/1.1\r\n\r\n");
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
    rt().block_on(async {
        let c = pg_client(&server).await;
        c.batch_execute("CREATE TABLE t (k BIGINT PRIMARY KEY, v BIGINT)")
            .await
            .unwrap();
        // Malformed SQL, unknown tables and bad DML: errors for this client only.
        for bad in [
            "SELEKT * FROM t",
            "SELECT * FROM t WHERE",
            "SELECT * FROM unknown_table",
            "INSERT INTO t VALUES (1)",
            "INSERT INTO t VALUES (NULL, 1)",
            "DROP TABLE unknown_table",
        ] {
            let err = c.batch_execute(bad).await.unwrap_err();
            let db = err.as_db_error().unwrap_or_else(|| panic!("{bad}: {err:?}"));
            assert!(!db.message().is_empty(), "{bad}");
        }
        c.batch_execute("INSERT INTO t VALUES (1, 10)").await.unwrap();

        // A client that disconnects in the middle of a result stream.
        {
            let (d, conn) = pg_client_and_connection(&server).await;
            let stream = d
                .query_raw("SELECT * FROM generate_series(1, 50000000) AS g(x)", std::iter::empty::<i64>())
                .await
                .unwrap();
            futures::pin_mut!(stream);
            let first = futures::StreamExt::next(&mut stream).await.unwrap().unwrap();
            assert_eq!(first.get::<_, i64>(0), 1);
            conn.abort();
        }
        // A client that disconnects while its statement computes: the statement is cancelled.
        {
            let (d, conn) = pg_client_and_connection(&server).await;
            let slow = tokio::spawn(async move {
                let _ = d
                    .query(
                        "SELECT count(*) FROM generate_series(1, 2000000000) AS a(x) WHERE x % 7 = 3",
                        &[],
                    )
                    .await;
            });
            // Wait until the statement runs, then drop the client (closes its socket).
            let mut waited = 0;
            while metric(&c, "statements_in_flight").await < 1 {
                waited += 1;
                assert!(waited < 600, "the slow statement never started");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            conn.abort();
            slow.abort();
        }
        let mut waited = 0;
        while metric(&c, "statements_cancelled").await < 1 {
            waited += 1;
            assert!(waited < 600, "the disconnected client's statement was never cancelled");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        // The server still serves, over both protocols.
        let rows = c.query("SELECT v FROM t WHERE k = 1", &[]).await.unwrap();
        assert_eq!(rows[0].get::<_, i64>(0), 10);
        let mut f = flight_client(&server).await;
        assert_eq!(int64s(&flight_query(&mut f, "SELECT v FROM t").await.unwrap(), 0), vec![10]);
    });
    let (status, rest) = server.terminate();
    assert!(status.success(), "{rest}");
}

#[test]
fn statement_timeout_and_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        &["--statement-timeout", "300ms", "--memory-limit", "2MiB"],
        &[],
    );
    rt().block_on(async {
        let c = pg_client(&server).await;
        let err = c
            .query(
                "SELECT count(*) FROM generate_series(1, 2000000000) AS a(x) WHERE x % 7 = 3",
                &[],
            )
            .await
            .unwrap_err();
        let db = err.as_db_error().expect("a server error");
        assert_eq!(db.code().code(), "57014", "{db:?}");
        assert!(db.message().contains("statement timeout"), "{db:?}");
        assert_eq!(metric(&c, "statements_timed_out").await, 1);
        // A hash aggregation over more distinct keys than 2 MiB holds.
        let err = c
            .query(
                "SELECT x, count(*) FROM generate_series(1, 1000000) AS a(x) GROUP BY x",
                &[],
            )
            .await
            .unwrap_err();
        let db = err.as_db_error().expect("a server error");
        assert!(
            db.message().contains("Resources exhausted") || db.message().contains("memory"),
            "{db:?}"
        );
        // Small statements still run.
        assert_eq!(c.query("SELECT 1", &[]).await.unwrap().len(), 1);
    });
    let (status, rest) = server.terminate();
    assert!(status.success(), "{rest}");
}

/// One client's share of the load test: its own key range, so its model is exact.
async fn load_client(
    id: u64,
    server_pg: Option<tokio_postgres::Client>,
    mut server_flight: Option<
        arrow_flight::sql::client::FlightSqlServiceClient<tonic::transport::Channel>,
    >,
) -> BTreeMap<i64, i64> {
    let mut model = BTreeMap::new();
    let mut seed = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let base = (id * 1_000_000) as i64;
    for _ in 0..1000 {
        let r = next();
        let key = base + (r % 200) as i64;
        let value = (r >> 20) as i64 % 1_000_000;
        let (sql, write) = match r % 10 {
            0..=3 => (format!("INSERT INTO load VALUES ({key}, {value})"), true),
            4 | 5 => (format!("UPDATE load SET v = {value} WHERE k = {key}"), true),
            6 => (format!("DELETE FROM load WHERE k = {key}"), true),
            7 | 8 => (format!("SELECT v FROM load WHERE k = {key}"), false),
            _ => (
                format!(
                    "SELECT count(*), sum(v) FROM load WHERE k BETWEEN {key} AND {}",
                    key + 20
                ),
                false,
            ),
        };
        // The server's answer.
        let answer: Vec<i64> = if let Some(pg) = &server_pg {
            if write {
                vec![pg.execute(&sql, &[]).await.unwrap() as i64]
            } else {
                let rows = pg.simple_query(&sql).await.unwrap();
                rows.iter()
                    .filter_map(|m| match m {
                        tokio_postgres::SimpleQueryMessage::Row(row) => Some(row),
                        _ => None,
                    })
                    .flat_map(|row| {
                        (0..row.len())
                            .map(|i| row.get(i).map_or(-1, |s| s.parse::<i64>().unwrap()))
                            .collect::<Vec<_>>()
                    })
                    .collect()
            }
        } else {
            let f = server_flight.as_mut().unwrap();
            if write {
                vec![f.execute_update(sql.clone(), None).await.unwrap()]
            } else {
                let batches = flight_query(f, &sql).await.unwrap();
                let mut out = Vec::new();
                for b in &batches {
                    for row in 0..b.num_rows() {
                        for col in 0..b.num_columns() {
                            let a = arrow::compute::cast(b.column(col), &DataType::Int64).unwrap();
                            let a = a.as_any().downcast_ref::<Int64Array>().unwrap();
                            out.push(if a.is_null(row) { -1 } else { a.value(row) });
                        }
                    }
                }
                out
            }
        };
        // The model's answer.
        let expected: Vec<i64> = match r % 10 {
            0..=3 => {
                model.insert(key, value);
                vec![1]
            }
            4 | 5 => match model.get_mut(&key) {
                Some(v) => {
                    *v = value;
                    vec![1]
                }
                None => vec![0],
            },
            6 => vec![model.remove(&key).map_or(0, |_| 1)],
            7 | 8 => model.get(&key).map(|v| vec![*v]).unwrap_or_default(),
            _ => {
                let in_range: Vec<i64> = model.range(key..=key + 20).map(|(_, v)| *v).collect();
                let sum = if in_range.is_empty() {
                    -1
                } else {
                    in_range.iter().sum()
                };
                vec![in_range.len() as i64, sum]
            }
        };
        assert_eq!(answer, expected, "client {id}: {sql}");
    }
    model
}

#[test]
fn load_16_clients_then_sigterm_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[], &[]);
    let model = rt().block_on(async {
        let c = pg_client(&server).await;
        c.batch_execute("CREATE TABLE load (k BIGINT PRIMARY KEY, v BIGINT)")
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for id in 0..16u64 {
            // Half the clients speak PostgreSQL, half Flight SQL.
            if id % 2 == 0 {
                let pg = pg_client(&server).await;
                tasks.push(tokio::spawn(load_client(id, Some(pg), None)));
            } else {
                let f = flight_client(&server).await;
                tasks.push(tokio::spawn(load_client(id, None, Some(f))));
            }
        }
        let mut model = BTreeMap::new();
        for t in tasks {
            model.extend(t.await.unwrap());
        }
        assert_eq!(metric(&c, "statement_errors").await, 0);
        model
    });
    let (status, rest) = server.terminate();
    assert!(status.success(), "{rest}");
    assert!(rest.contains("database closed"), "{rest}");
    // Every acknowledged write is in the reopened database.
    let session = strata_datafusion::open(dir.path(), Default::default()).unwrap();
    let batches = rt().block_on(async {
        session
            .sql("SELECT k, v FROM load ORDER BY k")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap()
    });
    let got: BTreeMap<i64, i64> = int64s(&batches, 0)
        .into_iter()
        .zip(int64s(&batches, 1))
        .collect();
    assert_eq!(got.len(), model.len());
    assert_eq!(got, model);
    session.close().unwrap();
}

#[test]
fn python_adbc_flight_sql_and_psycopg_clients() {
    ensure_clients();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let venv = std::env::var("STRATA_TEST_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| root.join("target/server-test-venv"));
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "{} is missing after scripts/server-test-venv.sh ran",
        python.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[], &[]);
    let out = std::process::Command::new(&python)
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients.py"))
        .arg(format!("grpc://{}", server.flight))
        .arg(server.pg_conninfo(""))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "clients.py failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("adbc ok") && stdout.contains("psycopg ok"),
        "{stdout}"
    );
    let (status, rest) = server.terminate();
    assert!(status.success(), "{rest}");
}

#[test]
fn tls_on_both_protocols() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl makes the test certificate");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let server = start(
        &dir.path().join("db"),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        &[],
    );
    // psql insists on TLS and gets it.
    let (ok, out, err) = psql(
        &server,
        &["-c", "SELECT 6 * 7 AS answer"],
        &[("PGSSLMODE", "require")],
    );
    assert!(ok && out.contains("42"), "{out}{err}");
    rt().block_on(async {
        let pem = std::fs::read(&cert).unwrap();
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(pem))
            .domain_name("localhost");
        let channel = tonic::transport::Channel::from_shared(format!("https://{}", server.flight))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut c = arrow_flight::sql::client::FlightSqlServiceClient::new(channel);
        assert_eq!(
            int64s(&flight_query(&mut c, "SELECT 43").await.unwrap(), 0),
            vec![43]
        );
        // Plain text to the TLS listener gets nowhere.
        let mut plain = flight_client_result(&server).await;
        if let Ok(p) = plain.as_mut() {
            assert!(flight_query(p, "SELECT 1").await.is_err());
        }
    });
    let (status, rest) = server.terminate();
    assert!(status.success(), "{rest}");
}
