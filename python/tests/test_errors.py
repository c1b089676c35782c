"""Bad input, a locked database, corruption, closed handles and Ctrl-C: each is a Python
exception of the StrataError hierarchy carrying the engine's message, never a crash."""

import os
import signal
import subprocess
import sys
import threading

import pyarrow as pa
import pytest

import strata

SCHEMA = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("v", pa.string())])


def test_hierarchy():
    for cls in (strata.InvalidInputError, strata.CorruptionError, strata.UnavailableError,
                strata.ClosedError, strata.InternalError):
        assert issubclass(cls, strata.StrataError)
    assert issubclass(strata.LockedError, strata.UnavailableError)
    assert issubclass(strata.StrataError, Exception)


def test_bad_open_arguments(tmp_path):
    with pytest.raises(strata.InvalidInputError, match="unknown profile 'fast'"):
        strata.open(tmp_path / "db", profile="fast")
    with pytest.raises(strata.InvalidInputError, match="unknown memtable kind 'heap'"):
        strata.open(tmp_path / "db", memtable="heap")
    with pytest.raises(strata.InvalidInputError, match="only local databases"):
        strata.open("s3://bucket/db")
    with pytest.raises(strata.InvalidInputError):
        strata.open(42)
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(strata.StrataError):
        strata.open(tmp_path / "file")


def test_bad_sql(db):
    with pytest.raises(strata.InvalidInputError, match="(?i)sql|parser|expected"):
        db.sql("SELEC 1")
    with pytest.raises(strata.InvalidInputError, match="nope"):
        db.sql("SELECT * FROM nope").to_arrow()
    db.sql("CREATE TABLE t (k BIGINT PRIMARY KEY, v VARCHAR)")
    with pytest.raises(strata.StrataError, match="(?i)null"):
        db.sql("INSERT INTO t VALUES (NULL, 'x')")
    with pytest.raises(strata.InvalidInputError):
        db.sql(b"SELECT 1")


def test_bad_tables_and_rows(db):
    with pytest.raises(strata.InvalidInputError, match="nope"):
        db.table("nope")
    t = db.create_table("t", SCHEMA, primary_key=["id"])
    with pytest.raises(strata.InvalidInputError, match="t"):
        db.create_table("t", SCHEMA, primary_key=["id"])
    with pytest.raises(strata.InvalidInputError, match="missing"):
        db.create_table("u", SCHEMA, primary_key=["missing"])
    with pytest.raises(strata.InvalidInputError):
        db.create_table("u", "not a schema", primary_key=["id"])
    with pytest.raises(strata.InvalidInputError, match="id"):
        t.insert(pa.table({"v": ["no key column"]}))
    with pytest.raises(strata.InvalidInputError):
        t.insert(pa.table({"id": ["not a number"], "v": ["x"]}))
    with pytest.raises(strata.InvalidInputError, match="(?i)null"):
        t.insert(pa.table({"id": pa.array([None], pa.int64()), "v": ["x"]}))
    with pytest.raises(strata.InvalidInputError, match="cannot insert a int"):
        t.insert(42)
    with pytest.raises(strata.InvalidInputError, match="unsupported key value"):
        t.get(object())
    with pytest.raises(strata.InvalidInputError, match="None"):
        t.get(None)
    with pytest.raises(strata.InvalidInputError):
        t.get("not an int key")
    with pytest.raises(strata.InvalidInputError):
        t.get((1, 2))
    with pytest.raises(strata.InvalidInputError, match="no column 'nope'"):
        t.scan(columns=["nope"])
    with pytest.raises(strata.InvalidInputError):
        db.kv.put(1, b"x")
    with pytest.raises(strata.InvalidInputError):
        db.kv.write("not a batch")
    with pytest.raises(strata.InvalidInputError):
        list(db.kv.scan(prefix="a", start="b"))


def test_locked_database_in_this_and_another_process(db_path):
    with strata.open(db_path):
        with pytest.raises(strata.LockedError, match="already open"):
            strata.open(db_path)
        child = subprocess.run(
            [sys.executable, "-c",
             "import strata, sys\n"
             "try:\n    strata.open(sys.argv[1])\n"
             "except strata.LockedError as e:\n    print('locked:', e)\n",
             str(db_path)],
            capture_output=True, text=True, check=True)
        assert "locked: database" in child.stdout
    strata.open(db_path).close()


def test_corrupt_sst_is_a_corruption_error(db_path):
    with strata.open(db_path) as db:
        t = db.create_table("t", SCHEMA, primary_key=["id"])
        t.insert({"id": list(range(1000)), "v": [f"value {i}" for i in range(1000)]})
        t.flush()
    ssts = [os.path.join(d, f) for d, _, fs in os.walk(db_path) for f in fs
            if f.endswith(".parquet")]
    assert ssts, "the flush wrote no SST"
    for path in ssts:
        size = os.path.getsize(path)
        with open(path, "r+b") as f:
            f.seek(size // 2)
            f.write(b"\xde\xad\xbe\xef" * 8)
    with strata.open(db_path) as db:
        with pytest.raises(strata.CorruptionError, match="(?i)corrupt|checksum"):
            db.table("t").scan().read_all()
        with pytest.raises(strata.CorruptionError):
            db.sql("SELECT * FROM t").to_arrow()


def test_closed_database_and_its_handles(db_path):
    db = strata.open(db_path)
    t = db.create_table("t", SCHEMA, primary_key=["id"])
    kv = db.kv
    db.close()
    with pytest.raises(strata.ClosedError):
        db.sql("SELECT 1")
    with pytest.raises(strata.ClosedError):
        db.table("t")
    with pytest.raises(strata.ClosedError):
        t.insert({"id": [1], "v": ["x"]})
    with pytest.raises(strata.ClosedError):
        kv.put("a", "b")


def test_ctrl_c_cancels_a_running_query(db):
    # Python leaves SIGINT ignored when it starts with it ignored (a job that a non-interactive
    # shell started in the background): install the handler a terminal session has.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _ctrl_c_cancels_a_running_query(db)
    finally:
        signal.signal(signal.SIGINT, previous)


def _ctrl_c_cancels_a_running_query(db):
    # A query that would run for minutes; SIGINT arrives while it runs.
    query = db.sql("SELECT count(*) FROM generate_series(1, 100000000000) WHERE value % 7 = 3")
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            query.to_arrow()
    finally:
        timer.cancel()
    # Streaming too.
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            for _ in db.sql("SELECT value FROM generate_series(1, 100000000000) "
                            "WHERE value % 100000007 = 0").to_batches():
                pass
    finally:
        timer.cancel()
    # The database is still usable.
    assert db.sql("SELECT 1 AS one").to_arrow()["one"][0].as_py() == 1
