"""Python clients of `strata serve`: the ADBC Flight SQL driver and psycopg 3.

Run by the `python_adbc_flight_sql_and_psycopg_clients` test with the server's Flight SQL URI
and PostgreSQL connection string: DDL, upserts, deletes, queries, errors and prepared
statements through each client, and parameters of every supported type through psycopg.
Prints "adbc ok" and "psycopg ok"; any failed check raises (non-zero exit).
"""

import datetime
import decimal
import sys

import adbc_driver_flightsql.dbapi as flightsql
import adbc_driver_manager
import psycopg
import pyarrow as pa


def check_adbc(uri):
    with flightsql.connect(uri, autocommit=True) as conn:
        cur = conn.cursor()
        cur.execute("CREATE TABLE adbc_t (k BIGINT PRIMARY KEY, name VARCHAR, score DOUBLE)")
        cur.execute("INSERT INTO adbc_t VALUES (1, 'a', 1.5), (2, 'b', 2.5), (3, 'c', 3.5)")
        cur.execute("INSERT INTO adbc_t VALUES (2, 'B', 20.0)")  # upsert of key 2
        cur.execute("DELETE FROM adbc_t WHERE k = 3")
        cur.execute("SELECT k, name, score FROM adbc_t ORDER BY k")
        assert cur.fetchall() == [(1, "a", 1.5), (2, "B", 20.0)], "adbc rows"

        # Prepared statements with parameters (one row, then many).
        cur.execute("SELECT name FROM adbc_t WHERE k = $1", parameters=(2,))
        assert cur.fetchall() == [("B",)], "adbc parameter query"
        cur.executemany(
            "INSERT INTO adbc_t VALUES ($1, $2, $3)",
            [(10, "ten", 10.0), (11, "eleven", 11.0)],
        )
        cur.execute("SELECT count(*) FROM adbc_t")
        assert cur.fetchone()[0] == 4, "adbc executemany"

        # Arrow results stay Arrow.
        cur.execute("SELECT k, score FROM adbc_t WHERE k >= 10 ORDER BY k")
        table = cur.fetch_arrow_table()
        assert table.column("k").to_pylist() == [10, 11], "adbc arrow"

        # Errors are client errors; the connection goes on.
        for bad in ["SELECT * FROM no_such_table", "SELEKT 1"]:
            try:
                cur.execute(bad)
                cur.fetchall()
            except adbc_driver_manager.Error as e:
                assert "no_such_table" in str(e) or "SELEKT" in str(e) or "parser" in str(e), str(e)
            else:
                raise AssertionError(f"no error for {bad}")
        cur.execute("SELECT 1 + 1")
        assert cur.fetchone()[0] == 2

        # Catalog listing (get_objects).
        objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
        names = [
            t["table_name"]
            for c in objects
            for s in (c["catalog_db_schemas"] or [])
            for t in (s["db_schema_tables"] or [])
        ]
        assert "adbc_t" in names, names
        cur.close()
    print("adbc ok")


def check_psycopg(conninfo):
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE pg_t (k BIGINT PRIMARY KEY, b BOOLEAN, i INT, s SMALLINT, "
            "f DOUBLE, r REAL, t VARCHAR, d DATE, ts TIMESTAMP, by BYTEA, n DECIMAL(10, 2))"
        )
        row = (
            1,
            True,
            -7,
            3,
            2.25,
            0.5,
            "héllo",
            datetime.date(2024, 2, 29),
            datetime.datetime(2024, 2, 29, 13, 14, 15),
            b"\x00\xff",
            decimal.Decimal("12.34"),
        )
        conn.execute(
            "INSERT INTO pg_t VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", row
        )
        got = conn.execute("SELECT * FROM pg_t WHERE k = %s", (1,)).fetchone()
        assert got == row, got
        # NULL parameters, upsert, update, delete.
        conn.execute("INSERT INTO pg_t (k, t) VALUES (%s, %s)", (2, None))
        conn.execute("INSERT INTO pg_t (k, t) VALUES (%s, %s)", (3, "three"))
        conn.execute("INSERT INTO pg_t (k, t) VALUES (%s, %s)", (3, "THREE"))
        cur = conn.execute("UPDATE pg_t SET i = %s WHERE k = %s", (42, 2))
        assert cur.rowcount == 1
        cur = conn.execute("DELETE FROM pg_t WHERE k = %s", (1,))
        assert cur.rowcount == 1
        rows = conn.execute("SELECT k, i, t FROM pg_t ORDER BY k").fetchall()
        assert rows == [(2, 42, None), (3, None, "THREE")], rows
        # Prepared statements (psycopg prepares a query it runs repeatedly).
        for k in (2, 3, 2, 3, 2, 3):
            conn.execute("SELECT t FROM pg_t WHERE k = %s", (k,), prepare=True).fetchall()
        # Errors.
        for bad in ["SELECT * FROM no_such_table", "SELEKT 1"]:
            try:
                conn.execute(bad)
            except psycopg.Error as e:
                assert e.diag.message_primary, e
            else:
                raise AssertionError(f"no error for {bad}")
        assert conn.execute("SELECT 2 * 21").fetchone()[0] == 42
        # DBeaver-style listing of tables and columns.
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
        assert ("pg_t",) in tables, tables
        cols = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'pg_t' "
            "ORDER BY ordinal_position"
        ).fetchall()
        assert [c[0] for c in cols][:3] == ["k", "b", "i"], cols
        rel = conn.execute(
            "SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'"
        ).fetchall()
        assert ("pg_t",) in rel, rel
    # A transaction block as psycopg opens one by default: each statement is atomic.
    with psycopg.connect(conninfo) as conn:
        conn.execute("INSERT INTO pg_t (k, t) VALUES (%s, %s)", (9, "nine"))
        conn.commit()
        assert conn.execute("SELECT t FROM pg_t WHERE k = 9").fetchone() == ("nine",)
    print("psycopg ok")


if __name__ == "__main__":
    check_adbc(sys.argv[1])
    check_psycopg(sys.argv[2])
