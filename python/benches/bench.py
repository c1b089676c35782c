"""Python overhead against the Rust API, on the same machine and data: insert of ROWS rows
from a pyarrow Table, sql(Q2).to_arrow() and sql(Q6).to_arrow(), and get of GETS keys (one
call per key, after one untimed pass that warms the caches). The Rust side is
benches/rust_baseline.rs (same operations, same data, same chunking), run by this script with
--rust (it needs cargo; a release build). `get` returns a dict; the events table has a
timestamp column, which the native row conversion leaves to pyarrow, so the "RecordBatch"
line (the native call alone) is the binding's own per-call cost.

Run (in a venv with the package built by `maturin develop --release`):
    python benches/bench.py [--rows 1000000] [--gets 100000] [--runs 5] [--rust]
Figures are medians of RUNS runs; benches/README.md records them.
"""

import argparse
import os
import statistics
import subprocess
import tempfile
import time

import pyarrow as pa

import strata

Q2 = "SELECT kind, sum(amount) FROM events GROUP BY kind"
Q6 = "SELECT count(DISTINCT user_id) FROM events"
CREATE = ("CREATE TABLE events (id BIGINT NOT NULL, user_id INT NOT NULL, kind VARCHAR NOT NULL, "
          "amount DOUBLE NOT NULL, ts TIMESTAMP(6) NOT NULL, PRIMARY KEY (id))")


def python_side(rows: int, gets: int, runs: int) -> dict:
    times = {"insert": [], "q2": [], "q6": [], "get": [], "get_batch": []}
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp, strata.open(tmp) as db:
            db.sql(CREATE)
            table = db.table("events")
            data = db.sql(f"SELECT * FROM generate_events({rows})").to_arrow()
            data = data.cast(table.schema).combine_chunks()  # the table's exact schema

            started = time.perf_counter()
            table.insert(data)
            times["insert"].append(time.perf_counter() - started)

            table.flush()
            table.compact()
            for name, sql in (("q2", Q2), ("q6", Q6)):
                started = time.perf_counter()
                result = db.sql(sql).to_arrow()
                times[name].append(time.perf_counter() - started)
                assert result.num_rows > 0

            step = max(rows // gets, 1)
            keys = [i * step % rows for i in range(gets)]
            native = table._table
            for k in keys:  # warm the caches, as the Rust side does
                native.get(k)
            started = time.perf_counter()
            found = sum(table.get(k) is not None for k in keys)
            times["get"].append(time.perf_counter() - started)
            assert found == gets
            started = time.perf_counter()
            found = sum(native.get(k) is not None for k in keys)
            times["get_batch"].append(time.perf_counter() - started)
            assert found == gets
    return {k: statistics.median(v) for k, v in times.items()}


def rust_side(rows: int, gets: int, runs: int) -> dict:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        ["cargo", "bench", "-q", "-p", "strata-python", "--bench", "rust_baseline", "--",
         str(rows), str(gets), str(runs)],
        cwd=root, check=True, capture_output=True, text=True).stdout
    return {name: float(value) for name, value in (line.split() for line in out.splitlines())}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--gets", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rust", action="store_true", help="run the Rust baseline too")
    args = parser.parse_args()

    rust = rust_side(args.rows, args.gets, args.runs) if args.rust else {}
    py = python_side(args.rows, args.gets, args.runs)
    print(f"{args.rows} rows, {args.gets} gets, median of {args.runs} runs, pyarrow "
          f"{pa.__version__}")
    print(f"{'operation':<28} {'python':>10} {'rust':>10} {'ratio':>7}")
    labels = {"insert": f"insert {args.rows} rows", "q2": "sql(Q2).to_arrow()",
              "q6": "sql(Q6).to_arrow()", "get": f"get x{args.gets} (dict)",
              "get_batch": f"get x{args.gets} (RecordBatch)"}
    for key, label in labels.items():
        r = rust.get("get" if key == "get_batch" else key)
        ratio = f"{py[key] / r:6.2f}x" if r else ""
        rust_text = f"{r:9.3f}s" if r else ""
        print(f"{label:<28} {py[key]:9.3f}s {rust_text:>10} {ratio:>7}")
    if rust:
        per_call = (py["get"] - rust["get"]) / args.gets * 1e6
        per_call_batch = (py["get_batch"] - rust["get"]) / args.gets * 1e6
        print(f"get overhead per call: {per_call:.1f} us (dict), {per_call_batch:.1f} us "
              f"(RecordBatch)")


if __name__ == "__main__":
    main()
