"""Zero-copy reading of a memory-mapped Arrow IPC file (Feather v2) with pyarrow: the file
is mapped with pyarrow.memory_map, its record batches decoded in place (every buffer of every
column lies inside the mapping, no copy), inserted into a Strata table and checked with SQL
(the twin of examples/mmap_ipc.rs).

Run: python mmap_ipc.py [ROWS]   (default 100,000)
"""

import os
import tempfile

import pyarrow as pa

import strata
from _common import size_arg

BATCH_ROWS = 8192


def main() -> None:
    rows = size_arg("ROWS", 100_000)
    schema = pa.schema([pa.field("id", pa.int64(), nullable=False), ("name", pa.string()),
                        ("score", pa.float64())])
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "data.arrow")
        with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            for start in range(0, rows, BATCH_ROWS):
                ids = list(range(start, min(start + BATCH_ROWS, rows)))
                writer.write_batch(pa.record_batch(
                    [ids, [f"name-{i}" for i in ids], [i * 0.25 if i % 10 else None for i in ids]],
                    schema=schema))
        print(f"wrote {os.path.basename(path)} ({os.path.getsize(path)} bytes, {rows} rows)")

        allocated = pa.total_allocated_bytes()
        with pa.memory_map(path, "r") as mapped:
            whole = mapped.read_buffer()
            low, high = whole.address, whole.address + whole.size
            table = pa.ipc.open_file(whole).read_all()
            inside = total = 0
            for column in table.columns:
                for chunk in column.chunks:
                    for buf in chunk.buffers():
                        if buf is not None and buf.size > 0:
                            total += 1
                            inside += low <= buf.address and buf.address + buf.size <= high
            if inside != total:
                raise SystemExit(f"{total - inside} of {total} buffers were copied")
            copied = pa.total_allocated_bytes() - allocated
            print(f"read {table.num_rows} rows in {table.column(0).num_chunks} batches: "
                  f"{inside} of {total} buffers inside the mapping, {copied} bytes allocated "
                  f"(zero-copy)")

            with strata.open(os.path.join(tmp, "db")) as db:
                db.create_table("data", schema, primary_key=["id"]).insert(table)
                id_sum = db.sql("SELECT sum(id) AS s FROM data").to_arrow()["s"][0].as_py()
            del table, whole
        if id_sum != rows * (rows - 1) // 2:
            raise SystemExit(f"sum(id) = {id_sum}, expected {rows * (rows - 1) // 2}")
        print(f"sum(id) = {id_sum}, as written")


if __name__ == "__main__":
    main()
