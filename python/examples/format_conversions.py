"""Format conversions with pyarrow: one table of generated events carried through CSV ->
NDJSON -> Parquet -> Feather v2 (Arrow IPC file) -> Arrow IPC stream -> ORC -> a Strata
table, each hop reading the file the previous hop wrote and checking that the rows read back
are exactly the source rows (the twin of examples/format_conversions.rs).

Run: python format_conversions.py [ROWS]   (default 5,000)
"""

import json
import os
import tempfile

import pyarrow as pa
import pyarrow.csv as csv
import pyarrow.feather as feather
import pyarrow.json as pajson
import pyarrow.orc as orc
import pyarrow.parquet as pq

import strata
from _common import size_arg

SCHEMA = pa.schema([pa.field("id", pa.int64(), nullable=False), ("user_id", pa.int32()),
                    ("kind", pa.string()), ("amount", pa.float64()),
                    ("ts", pa.timestamp("us"))])


def events(rows: int) -> pa.Table:
    ids = list(range(rows))
    return pa.table({
        "id": ids,
        "user_id": [i * 7919 % 1000 for i in ids],
        "kind": [("view", "click", "cart", "buy")[i % 4] for i in ids],
        "amount": [round((i * 37 % 10000) / 100.0, 2) for i in ids],
        "ts": pa.array([1_767_225_600_000_000 + i * 1_000_000 for i in ids], pa.timestamp("us")),
    }, schema=SCHEMA)


def same_rows(a: pa.Table, b: pa.Table) -> bool:
    return a.cast(SCHEMA).sort_by("id").equals(b.cast(SCHEMA).sort_by("id"))


def main() -> None:
    rows = size_arg("ROWS", 5000)
    source = events(rows)
    with tempfile.TemporaryDirectory() as tmp:
        def hop(name: str, path: str, table: pa.Table) -> pa.Table:
            if not same_rows(source, table):
                raise SystemExit(f"{name} did not hold the same rows")
            print(f"-> {name:<13} {os.path.getsize(path):>10} bytes  {path[len(tmp) + 1:]}")
            return table

        path = os.path.join(tmp, "events.csv")
        csv.write_csv(source, path)
        table = hop("CSV", path, csv.read_csv(path, convert_options=csv.ConvertOptions(
            column_types=SCHEMA)))

        path = os.path.join(tmp, "events.ndjson")
        with open(path, "w") as f:
            for row in table.to_pylist():
                row["ts"] = row["ts"].isoformat()
                f.write(json.dumps(row) + "\n")
        table = hop("NDJSON", path, pajson.read_json(path, parse_options=pajson.ParseOptions(
            explicit_schema=SCHEMA)))

        path = os.path.join(tmp, "events.parquet")
        pq.write_table(table, path)
        table = hop("Parquet", path, pq.read_table(path))

        path = os.path.join(tmp, "events.feather")
        feather.write_feather(table, path)
        table = hop("Arrow file", path, feather.read_table(path))

        path = os.path.join(tmp, "events.arrows")
        with pa.OSFile(path, "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        with pa.OSFile(path, "rb") as stream:
            table = hop("Arrow stream", path, pa.ipc.open_stream(stream).read_all())

        path = os.path.join(tmp, "events.orc")
        orc.write_table(table, path)
        table = hop("ORC", path, orc.read_table(path))

        with strata.open(os.path.join(tmp, "db")) as db:
            events_table = db.create_table("events", SCHEMA, primary_key=["id"])
            events_table.insert(table)
            events_table.flush()
            hop("Strata", os.path.join(tmp, "db"), db.sql("SELECT * FROM events").to_arrow())
    print(f"every format held the same {rows} rows")


if __name__ == "__main__":
    main()
