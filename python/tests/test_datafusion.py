"""Strata tables inside datafusion-python (55.x) through `__datafusion_table_provider__`
(datafusion-ffi's FFI_TableProvider): queries, pushed-down filters pruning SST files, and
the key order kept (no sort for ORDER BY the key)."""

import warnings

import datafusion
import pyarrow as pa
from datafusion import SessionContext, col, lit

SCHEMA = pa.schema([pa.field("id", pa.int64(), nullable=False),
                    pa.field("grp", pa.string()), pa.field("amount", pa.float64())])


def fill(db, files=4, rows_per_file=1000):
    t = db.create_table("t", SCHEMA, primary_key=["id"])
    for f in range(files):
        ids = list(range(f * rows_per_file, (f + 1) * rows_per_file))
        t.insert({"id": ids, "grp": [f"g{i % 5}" for i in ids], "amount": [i * 0.5 for i in ids]})
        t.flush()
    return t


def plan_text(df):
    return "\n".join(str(v) for row in df.collect() for v in row.column(1).to_pylist())


def test_register_and_query(db):
    assert datafusion.__version__.startswith("55.")
    t = fill(db)
    ctx = SessionContext()
    with warnings.catch_warnings():  # datafusion 55 prefers register_table (below)
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.register_table_provider("t", t)
    out = ctx.sql("SELECT grp, count(*) AS n, sum(amount) AS s FROM t GROUP BY grp ORDER BY grp")
    table = pa.Table.from_batches(out.collect())
    assert table["grp"].to_pylist() == ["g0", "g1", "g2", "g3", "g4"]
    assert table["n"].to_pylist() == [800] * 5
    expected = db.sql("SELECT grp, sum(amount) AS s FROM t GROUP BY grp ORDER BY grp").to_arrow()
    assert table["s"].to_pylist() == expected["s"].to_pylist()
    # register_table is the current name; the DataFrame API works on the provider too.
    ctx.register_table("t2", t)
    df = ctx.table("t2").filter(col("id") < lit(3)).select(col("id"))
    assert pa.Table.from_batches(df.collect())["id"].to_pylist() == [0, 1, 2]


def test_filters_prune_and_see_new_writes(db):
    t = fill(db)
    ctx = SessionContext()
    ctx.register_table("t", t)
    rows = pa.Table.from_batches(
        ctx.sql("SELECT id FROM t WHERE id >= 1500 AND id < 1510 ORDER BY id").collect())
    assert rows["id"].to_pylist() == list(range(1500, 1510))
    analyzed = plan_text(ctx.sql(
        "EXPLAIN ANALYZE SELECT id FROM t WHERE id >= 1500 AND id < 1510"))
    scan = next(line for line in analyzed.splitlines() if "StrataScanExec" in line)
    # The filter reached the scan: one file read (of four, or of one after a background
    # compaction merged them), ten rows out of it.
    assert "files_scanned=1," in scan and "output_rows=10," in scan, scan
    # A write after registration is visible to the next query.
    t.insert({"id": [99999], "grp": ["late"], "amount": [1.0]})
    late = ctx.sql("SELECT grp FROM t WHERE id = 99999").collect()
    assert late[0].column(0).to_pylist() == ["late"]


def test_key_order_is_kept(db):
    """The scan hands rows over in key order (several flushed files, one partition). The
    provider declares that ordering; datafusion-ffi 55 passes it as foreign expressions that
    the host's sort elimination does not match, so an ORDER BY id still sorts (already sorted
    input) in datafusion-python, where Strata's own session plans no sort."""
    t = fill(db, files=3, rows_per_file=500)
    ctx = SessionContext()
    ctx.register_table("t", t)
    plan = plan_text(ctx.sql("EXPLAIN SELECT id, amount FROM t"))
    assert "FFI_ExecutionPlan: StrataScanExec" in plan, plan
    ids = [v for b in ctx.sql("SELECT id FROM t").collect() for v in b.column(0).to_pylist()]
    assert ids == list(range(1500))
    native = db.sql("EXPLAIN SELECT id, amount FROM t ORDER BY id").to_arrow()
    assert "SortExec" not in "\n".join(native.column(1).to_pylist())
