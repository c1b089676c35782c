"""A writer process killed with SIGKILL in the middle of its writes: after reopening, every
write it acknowledged is there, and every write batch is all-or-nothing."""

import os
import signal
import subprocess
import sys

import strata

WRITER = r"""
import sys
import pyarrow as pa
import strata

db = strata.open(sys.argv[1])
schema = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("v", pa.string())])
table = db.create_table("rows", schema, primary_key=["id"])
kv = db.kv
n = 0
while True:
    with kv.batch() as batch:
        for i in range(4):
            batch.put(f"batch{n:09}-{i}", f"{n}:" + "x" * 100)
    table.insert({"id": [2 * n, 2 * n + 1], "v": [f"row {n}", f"row {n}"]})
    print(f"ack {n}", flush=True)
    n += 1
"""

ACKS_BEFORE_KILL = 300


def test_acknowledged_writes_survive_sigkill(db_path):
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(db_path)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    acked = -1
    try:
        for line in child.stdout:
            assert line.startswith("ack "), line
            acked = int(line.split()[1])
            if acked + 1 >= ACKS_BEFORE_KILL:
                break
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()
        err = child.stderr.read()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL, err
    assert acked + 1 == ACKS_BEFORE_KILL, err

    with strata.open(db_path) as db:
        batches = {}
        for key, value in db.kv.scan():
            n = int(key[5:14])
            batches.setdefault(n, set()).add(key)
            assert value == f"{n}:".encode() + b"x" * 100
        for n in range(acked + 1):
            assert len(batches.get(n, ())) == 4, f"acknowledged batch {n} is missing keys"
        for n, keys in batches.items():
            assert len(keys) == 4, f"batch {n} is partly there: {sorted(keys)}"
        ids = set(db.table("rows").scan(columns=["id"]).read_all()["id"].to_pylist())
        for n in range(acked + 1):
            assert {2 * n, 2 * n + 1} <= ids, f"acknowledged insert {n} is missing"
        # The reopened database takes writes again.
        db.kv.put("after", "crash")
        assert db.kv.get("after") == b"crash"
