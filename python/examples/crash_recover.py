"""Crash and recover: every acknowledged write survives a SIGKILL.

The example starts itself again as a child process. The child writes atomic batches of keys
as fast as it can and prints "ack N" after each write returns. The parent reads those
acknowledgements, kills the child with SIGKILL in the middle of the stream, reopens the
database (which replays the WAL) and checks that every acknowledged batch is there in full,
and that every batch, acknowledged or not, is all-or-nothing (the twin of
examples/crash_recover.rs).

Run: python crash_recover.py [ACKS_BEFORE_KILL]   (default 300)
"""

import os
import signal
import subprocess
import sys
import tempfile

import strata
from _common import size_arg

KEYS_PER_BATCH = 4


def key(batch: int, i: int) -> str:
    return f"batch{batch:09}-{i}"


def child(path: str) -> None:
    with strata.open(path, profile="memory_efficient") as db:
        kv = db.kv("events")
        n = 0
        while True:
            with kv.batch() as batch:
                for i in range(KEYS_PER_BATCH):
                    batch.put(key(n, i), f"{n}:" + "x" * 100)
            print(f"ack {n}", flush=True)
            n += 1


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
        return
    acks = size_arg("ACKS_BEFORE_KILL", 300)
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--child", tmp],
                                stdout=subprocess.PIPE, text=True)
        acked = -1
        for line in proc.stdout:
            acked = int(line.split()[1])
            if acked + 1 >= acks:
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        print(f"killed the writer (SIGKILL) after {acked + 1} acknowledged batches")

        with strata.open(tmp) as db:
            found = {}
            for k, _ in db.kv("events").scan():
                found.setdefault(int(k[5:14]), []).append(k)
            missing = [n for n in range(acked + 1) if len(found.get(n, [])) != KEYS_PER_BATCH]
            partial = [n for n, keys in found.items() if len(keys) != KEYS_PER_BATCH]
            print(f"reopened: {len(found)} batches present, {len(found) - acked - 1} "
                  "written but not acknowledged")
            if missing or partial:
                raise SystemExit(f"lost acknowledged batches {missing[:5]}, "
                                 f"partial batches {partial[:5]}")
    print("every acknowledged write survived the crash")


if __name__ == "__main__":
    main()
