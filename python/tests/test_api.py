"""Every call of the package's API, with the values it must return."""

import io
from contextlib import redirect_stdout

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

import strata

USERS = pa.schema([
    pa.field("id", pa.int64(), nullable=False),
    pa.field("name", pa.string()),
    pa.field("score", pa.float64()),
])


def users(db):
    return db.create_table("users", USERS, primary_key=["id"])


def test_open_profiles_memtables_and_urls(tmp_path):
    with strata.open(tmp_path / "a", profile="memory_efficient", memtable="sorted") as db:
        assert db.path.endswith("a")
        assert not db.closed
        db.sql("CREATE TABLE t (k BIGINT PRIMARY KEY, v VARCHAR)")
        db.sql("INSERT INTO t VALUES (1, 'one')")
    assert db.closed
    with strata.open("file://" + str(tmp_path / "a"), profile="high_performance") as db:
        assert db.sql("SELECT v FROM t").to_arrow().column("v").to_pylist() == ["one"]
    with strata.open(str(tmp_path / "a")) as db:
        assert "t" in db.tables()


def test_memory_database_is_deleted_on_close():
    import os
    db = strata.memory()
    path = db.path
    assert os.path.isdir(path)
    db.sql("CREATE TABLE t (k INT PRIMARY KEY)")
    db.close()
    assert not os.path.exists(path)
    db.close()  # idempotent


def test_sql_ddl_dml_run_at_once_and_queries_convert(db):
    db.sql("CREATE TABLE orders (id BIGINT PRIMARY KEY, item VARCHAR, qty INT)")
    db.sql("INSERT INTO orders VALUES (1, 'apple', 3), (2, 'pear', 5), (3, 'fig', 7)")
    db.sql("UPDATE orders SET qty = qty * 10 WHERE id = 2")
    db.sql("DELETE FROM orders WHERE id = 3")
    inserted = db.sql("INSERT INTO orders VALUES (4, 'kiwi', 1)").to_arrow()
    assert inserted.column(0).to_pylist() == [1]

    result = db.sql("SELECT id, item, qty FROM orders ORDER BY id")
    assert result.schema.names == ["id", "item", "qty"]
    table = result.to_arrow()
    assert isinstance(table, pa.Table)
    assert table.to_pydict() == {"id": [1, 2, 4], "item": ["apple", "pear", "kiwi"],
                                 "qty": [3, 50, 1]}
    frame = result.to_pandas()
    assert isinstance(frame, pd.DataFrame)
    assert frame["qty"].tolist() == [3, 50, 1]
    polars_frame = result.to_polars()
    assert isinstance(polars_frame, pl.DataFrame)
    assert polars_frame["item"].to_list() == ["apple", "pear", "kiwi"]

    batches = list(result.to_batches())
    assert all(isinstance(b, pa.RecordBatch) for b in batches)
    assert sum(b.num_rows for b in batches) == 3
    reader = result.to_reader()
    assert isinstance(reader, pa.RecordBatchReader)
    assert reader.read_all().num_rows == 3
    assert pa.table(result).num_rows == 3  # __arrow_c_stream__

    out = io.StringIO()
    with redirect_stdout(out):
        result.show()
    assert "| 2  | pear  | 50  |" in out.getvalue()
    assert "kiwi" in repr(result)


def test_streaming_a_large_result_batch_by_batch(db):
    db.sql("CREATE TABLE n (k BIGINT PRIMARY KEY)")
    db.sql("INSERT INTO n SELECT value FROM generate_series(1, 50000)")
    seen = 0
    for batch in db.sql("SELECT k FROM n").to_batches():
        seen += batch.num_rows
    assert seen == 50000
    assert db.sql("SELECT sum(k) AS s FROM n").to_arrow()["s"][0].as_py() == 50000 * 50001 // 2


def test_create_table_insert_every_input_kind_and_upsert(db):
    t = users(db)
    assert t.name == "users"
    assert t.primary_key == ["id"]
    assert t.schema.names == ["id", "name", "score"]
    assert db.table("users").primary_key == ["id"]
    assert "users" in db.tables()

    assert t.insert(pa.table({"id": [1, 2], "name": ["a", "b"], "score": [1.0, 2.0]},
                             schema=USERS)) == 2
    assert t.insert(pa.RecordBatch.from_pydict({"id": [3], "name": ["c"], "score": [3.0]},
                                               schema=USERS)) == 1
    reader = pa.RecordBatchReader.from_batches(USERS, [
        pa.RecordBatch.from_pydict({"id": [4], "name": ["d"], "score": [4.0]}, schema=USERS)])
    assert t.insert(reader) == 1
    # pandas: int64/object/float64 columns map onto the table's schema.
    assert t.insert(pd.DataFrame({"id": [5, 6], "name": ["e", "f"], "score": [5.0, None]})) == 2
    assert t.insert([{"id": 7, "name": "g", "score": 7.0}]) == 1
    assert t.insert({"id": [8], "name": ["h"], "score": [8.0]}) == 1
    # Narrower types and a different column order are cast to the table's schema.
    assert t.insert(pa.table({"score": pa.array([9.5], pa.float32()),
                              "id": pa.array([9], pa.int32()), "name": ["i"]})) == 1
    # Upsert: the same key replaces the row.
    t.insert(pa.table({"id": [1], "name": ["A"], "score": [10.0]}, schema=USERS))
    assert db.sql("SELECT count(*) AS n FROM users").to_arrow()["n"][0].as_py() == 9
    assert t.get(1) == {"id": 1, "name": "A", "score": 10.0}
    assert t.get(6) == {"id": 6, "name": "f", "score": None}
    assert t.get(9)["score"] == 9.5
    assert t.get(100) is None


def test_delete_get_and_composite_keys(db):
    schema = pa.schema([pa.field("region", pa.string(), nullable=False),
                        pa.field("day", pa.int32(), nullable=False),
                        pa.field("sales", pa.int64())])
    t = db.create_table("sales", schema, primary_key=["region", "day"])
    t.insert(pa.table({"region": ["eu", "eu", "eu", "us", "us"], "day": [1, 2, 3, 1, 2],
                       "sales": [10, 20, 30, 40, 50]}, schema=schema))
    assert t.get(("eu", 2)) == {"region": "eu", "day": 2, "sales": 20}
    assert t.delete(("eu", 2)) == 1
    assert t.get(("eu", 2)) is None
    assert t.delete([("eu", 3), ("us", 1)]) == 2
    assert t.delete(pa.table({"region": ["us"], "day": pa.array([2], pa.int32())})) == 1
    assert db.sql("SELECT region, day FROM sales").to_arrow().to_pylist() == [
        {"region": "eu", "day": 1}]

    single = users(db)
    single.insert({"id": [1, 2, 3], "name": ["a", "b", "c"], "score": [1.0, 2.0, 3.0]})
    assert single.delete(2) == 1
    assert single.delete([1, 3]) == 2
    assert single.delete(pa.RecordBatch.from_pydict({"id": [1]})) == 1
    assert db.sql("SELECT count(*) AS n FROM users").to_arrow()["n"][0].as_py() == 0


def test_scan_ranges_prefixes_and_columns(db):
    t = users(db)
    t.insert({"id": list(range(100)), "name": [f"n{i}" for i in range(100)],
              "score": [float(i) for i in range(100)]})
    everything = t.scan()
    assert isinstance(everything, pa.RecordBatchReader)
    assert everything.read_all()["id"].to_pylist() == list(range(100))
    part = t.scan(start=10, end=20, columns=["id", "name"]).read_all()
    assert part.schema.names == ["id", "name"]
    assert part["id"].to_pylist() == list(range(10, 20))
    assert t.scan(start=95).read_all().num_rows == 5
    assert t.scan(end=3).read_all()["name"].to_pylist() == ["n0", "n1", "n2"]

    schema = pa.schema([pa.field("a", pa.string(), nullable=False),
                        pa.field("b", pa.int64(), nullable=False)])
    c = db.create_table("c", schema, primary_key=["a", "b"])
    c.insert({"a": ["x", "x", "y", "z"], "b": [2, 1, 1, 1]})
    # A one-column bound is a key prefix: every ("x", *) key, in key order.
    rows = c.scan(start=("x",), end=("y",)).read_all().to_pylist()
    assert rows == [{"a": "x", "b": 1}, {"a": "x", "b": 2}]


def test_flush_compact_and_reopen(db_path):
    with strata.open(db_path) as db:
        t = users(db)
        for i in range(3):
            t.insert({"id": [i], "name": [str(i)], "score": [float(i)]})
            t.flush()
        t.compact()
        db.flush()
        files = db.sql("SELECT count(*) AS n FROM strata_sstables('users')").to_arrow()
        assert files["n"][0].as_py() >= 1
        t.insert({"id": [99], "name": ["wal only"], "score": [0.0]})
    with strata.open(db_path) as db:
        t = db.table("users")
        assert t.get(99)["name"] == "wal only"
        assert t.scan().read_all().num_rows == 4


def test_key_value_facade(db):
    kv = db.kv
    kv.put(b"theme", b"dark")
    kv.put("language", "en")
    assert kv.get("theme") == b"dark"
    assert kv.get(b"language") == b"en"
    kv.delete("language")
    assert kv.get("language") is None
    assert kv.name == "kv"

    batch = strata.WriteBatch()
    for i in range(5):
        batch.put(f"user:{i:03}", f"name-{i}")
    batch.delete("theme")
    assert len(batch) == 6
    kv.write(batch)
    assert kv.get("theme") is None
    with kv.batch() as b:
        b.put("counter", "1")
    assert kv.get("counter") == b"1"
    dropped = strata.WriteBatch().put("never", "written").delete("counter")
    dropped.clear()
    assert len(dropped) == 0
    kv.write(dropped)
    assert kv.get("never") is None and kv.get("counter") == b"1"

    assert [k for k, _ in kv.scan(prefix="user:")] == [f"user:{i:03}".encode() for i in range(5)]
    assert list(kv.scan(start="user:001", end="user:003")) == [
        (b"user:001", b"name-1"), (b"user:002", b"name-2")]
    assert len(list(kv.scan())) == 6

    settings = db.kv("settings")
    settings.put("a", "1")
    assert settings.get("a") == b"1"
    assert kv.get("a") is None
    settings.flush()
    assert {"kv", "settings"} <= set(db.tables())


def test_results_stay_readable_and_context_manager_closes(db_path):
    with strata.open(db_path) as db:
        db.sql("CREATE TABLE t (k INT PRIMARY KEY)")
        db.sql("INSERT INTO t VALUES (1), (2)")
        result = db.sql("SELECT k FROM t ORDER BY k")
        assert result.to_arrow()["k"].to_pylist() == [1, 2]
        assert result.to_arrow()["k"].to_pylist() == [1, 2]  # reads run the query again
    # The directory is free again: another handle opens it.
    with strata.open(db_path) as again:
        assert again.sql("SELECT count(*) AS n FROM t").to_arrow()["n"][0].as_py() == 2


def test_get_converts_every_column_type(db):
    import datetime as dt
    schema = pa.schema([pa.field("id", pa.int32(), nullable=False), ("flag", pa.bool_()),
                        ("small", pa.uint8()), ("ratio", pa.float32()), ("blob", pa.binary()),
                        ("text", pa.large_string()), ("day", pa.date32())])
    t = db.create_table("typed", schema, primary_key=["id"])
    t.insert(pa.table({"id": [1, 2], "flag": [True, None], "small": [255, 0],
                       "ratio": [0.5, 1.5], "blob": [b"\x00\x01", b""], "text": ["a", "b"],
                       "day": [dt.date(2026, 1, 2), None]}, schema=schema))
    # A date column: the row comes through pyarrow.
    assert t.get(1) == {"id": 1, "flag": True, "small": 255, "ratio": 0.5, "blob": b"\x00\x01",
                        "text": "a", "day": dt.date(2026, 1, 2)}
    plain = db.create_table("plain", schema.remove(6), primary_key=["id"])
    plain.insert(pa.table({"id": [2], "flag": [None], "small": [0], "ratio": [1.5],
                           "blob": [b""], "text": ["b"]}, schema=schema.remove(6)))
    # Only simple columns: the row is built natively, with the same values pyarrow gives.
    row = plain.get(2)
    assert row == {"id": 2, "flag": None, "small": 0, "ratio": 1.5, "blob": b"", "text": "b"}
    assert row == plain.scan().read_all().to_pylist()[0]
