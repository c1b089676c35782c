"""Threads sharing one database: writers, point readers and SQL queries at the same time,
each seeing every write acknowledged before it started."""

import threading

import pyarrow as pa

SCHEMA = pa.schema([pa.field("id", pa.int64(), nullable=False),
                    pa.field("writer", pa.int32()), pa.field("v", pa.string())])
WRITERS = 4
ROWS_PER_WRITER = 2000
BATCH = 100


def test_threads_share_one_database(db):
    table = db.create_table("t", SCHEMA, primary_key=["id"])
    errors = []
    done = threading.Event()

    def writer(w):
        try:
            t = db.table("t")
            for start in range(0, ROWS_PER_WRITER, BATCH):
                ids = [w * ROWS_PER_WRITER + i for i in range(start, start + BATCH)]
                t.insert({"id": ids, "writer": [w] * BATCH, "v": [f"w{w} r{i}" for i in ids]})
                # Our own acknowledged rows are visible at once, to this and other threads.
                assert t.get(ids[-1])["writer"] == w
                db.kv.put(f"w{w}", str(start + BATCH))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    def reader():
        try:
            while not done.is_set():
                counts = db.sql("SELECT writer, count(*) AS n FROM t GROUP BY writer").to_arrow()
                for w, n in zip(counts["writer"].to_pylist(), counts["n"].to_pylist()):
                    assert n % BATCH == 0 and n <= ROWS_PER_WRITER, (w, n)
                rows = table.scan(start=0, end=ROWS_PER_WRITER).read_all()
                assert rows["id"].to_pylist() == sorted(rows["id"].to_pylist())
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    writers = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    readers = [threading.Thread(target=reader) for _ in range(2)]
    for t in writers + readers:
        t.start()
    for t in writers:
        t.join()
    done.set()
    for t in readers:
        t.join()
    assert not errors, errors
    total = db.sql("SELECT count(*) AS n, count(DISTINCT id) AS d FROM t").to_arrow()
    assert total["n"][0].as_py() == WRITERS * ROWS_PER_WRITER
    assert total["d"][0].as_py() == WRITERS * ROWS_PER_WRITER
    for w in range(WRITERS):
        assert db.kv.get(f"w{w}") == str(ROWS_PER_WRITER).encode()


def test_the_gil_is_released_during_a_query(db):
    # While one thread runs a long query, another thread keeps running Python code.
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(1)
            stop.wait(0.001)

    thread = threading.Thread(target=ticker)
    thread.start()
    before = len(ticks)
    db.sql("SELECT count(*) FROM generate_series(1, 30000000) WHERE value % 3 = 0").to_arrow()
    during = len(ticks) - before
    stop.set()
    thread.join()
    assert during > 10, f"the ticker thread ran {during} times during the query"
