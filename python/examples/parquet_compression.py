"""Parquet codecs with pyarrow: the same table written uncompressed and with snappy,
zstd(3), lz4_raw, gzip(6) and brotli(4), each file's size and ratio, each read back and
compared with the input; then the file Strata itself wrote for the same rows (its SSTs are
plain Parquet files) is read by pyarrow.parquet (the twin of examples/parquet_compression.rs).

Run: python parquet_compression.py [ROWS]   (default 50,000)
"""

import os
import tempfile

import pyarrow as pa
import pyarrow.parquet as pq

import strata
from _common import size_arg

CODECS = [("none", "none", None), ("snappy", "snappy", None), ("zstd(3)", "zstd", 3),
          ("lz4_raw", "lz4", None), ("gzip(6)", "gzip", 6), ("brotli(4)", "brotli", 4)]


def data(rows: int) -> pa.Table:
    return pa.table({
        "id": pa.array(range(rows), pa.int64()),
        "sensor": [f"sensor-{i % 50:02}" for i in range(rows)],
        "reading": [round(20 + (i * 7919 % 1000) / 100.0, 2) for i in range(rows)],
        "note": [("ok", "ok", "ok", "recalibrated", "ok")[i % 5] for i in range(rows)],
    })


def main() -> None:
    rows = size_arg("ROWS", 50_000)
    table = data(rows)
    with tempfile.TemporaryDirectory() as tmp:
        plain = None
        for label, codec, level in CODECS:
            path = os.path.join(tmp, f"data.{codec}.parquet")
            pq.write_table(table, path, compression=codec, compression_level=level)
            size = os.path.getsize(path)
            plain = plain or size
            back = pq.read_table(path)
            if not back.equals(table):
                raise SystemExit(f"{label}: the file did not read back identical")
            codec_in_file = pq.ParquetFile(path).metadata.row_group(0).column(0).compression
            print(f"{label:<10} {size:>10} bytes  {plain / size:5.2f}x  ({codec_in_file})")

        schema = table.schema.set(0, pa.field("id", pa.int64(), nullable=False))
        with strata.open(os.path.join(tmp, "db")) as db:
            t = db.create_table("readings", schema, primary_key=["id"])
            t.insert(table)
            t.flush()
        ssts = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(tmp, "db"))
                for f in fs if f.endswith(".parquet")]
        sst = pq.read_table(ssts[0], columns=table.column_names)
        codec_in_sst = pq.ParquetFile(ssts[0]).metadata.row_group(0).column(0).compression
        if not sst.cast(table.schema).sort_by("id").equals(table):
            raise SystemExit("the Strata SST did not hold the input rows")
        print(f"strata SST {os.path.getsize(ssts[0]):>10} bytes  ({codec_in_sst}), "
              f"read by pyarrow.parquet")
    print("every file read back identical to the input")


if __name__ == "__main__":
    main()
