"""Columnar processing with pyarrow.compute, no SQL: cast (text to numbers, bad values
become nulls), filter, arithmetic on whole columns, sort with take, and a group-by; every
result is checked against a plain row-by-row loop, then the same group-by is run by Strata's
SQL over the batch stored as a table (the twin of examples/compute_kernels.rs).

Run: python compute_kernels.py [ROWS]   (default 10,000)
"""

import tempfile

import pyarrow as pa
import pyarrow.compute as pc

import strata
from _common import size_arg

REGIONS = ["north", "south", "east", "west"]


def order_lines(rows: int) -> pa.Table:
    """id, region, quantity (as text, every 97th not a number), unit price, discount."""
    return pa.table({
        "id": pa.array(range(rows), pa.int64()),
        "region": [REGIONS[i * 31 % 4] for i in range(rows)],
        "quantity": ["n/a" if i % 97 == 0 else str(1 + i * 13 % 20) for i in range(rows)],
        "unit_price": [round(1 + (i * 7919 % 5000) / 100.0, 2) for i in range(rows)],
        "discount": [(i % 5) * 0.05 for i in range(rows)],
    })


def main() -> None:
    rows = size_arg("ROWS", 10_000)
    lines = order_lines(rows)

    # cast: text that is all digits becomes an integer, anything else a null.
    text = lines["quantity"]
    quantity = pc.cast(pc.if_else(pc.match_substring_regex(text, r"^[0-9]+$"), text, None),
                       pa.int64())
    print(f"cast: {quantity.null_count} of {rows} quantities are not numbers")

    # filter + arithmetic: net = quantity * unit_price * (1 - discount) of valid lines.
    valid = pc.is_valid(quantity)
    kept = lines.filter(valid).set_column(2, "quantity", quantity.filter(valid))
    net = pc.multiply(pc.multiply(pc.cast(kept["quantity"], pa.float64()), kept["unit_price"]),
                      pc.subtract(1.0, kept["discount"]))
    kept = kept.append_column("net", net)

    # sort + take: the five biggest lines.
    top = kept.take(pc.sort_indices(kept, sort_keys=[("net", "descending"), ("id", "ascending")])[:5])
    print("top lines:", [(r["id"], round(r["net"], 2)) for r in top.to_pylist()])

    # group-by: net and max quantity per region.
    groups = kept.group_by("region").aggregate([("net", "sum"), ("quantity", "max")]) \
        .sort_by("region")

    # The same, row by row.
    expected = {}
    for row in lines.to_pylist():
        if not row["quantity"].isdigit():
            continue
        q = int(row["quantity"])
        value = q * row["unit_price"] * (1 - row["discount"])
        total, biggest = expected.get(row["region"], (0.0, 0))
        expected[row["region"]] = (total + value, max(biggest, q))
    for row in groups.to_pylist():
        total, biggest = expected[row["region"]]
        if abs(row["net_sum"] - total) > 1e-6 * max(1.0, total) or row["quantity_max"] != biggest:
            raise SystemExit(f"region {row['region']}: {row} != {expected[row['region']]}")
        print(f"  {row['region']:<6} net {row['net_sum']:>14.2f}  max quantity {row['quantity_max']}")

    # Strata: store the cleaned lines and let SQL do the same group-by.
    with tempfile.TemporaryDirectory() as tmp, strata.open(tmp) as db:
        schema = kept.schema.set(0, pa.field("id", pa.int64(), nullable=False))
        db.create_table("lines", schema, primary_key=["id"]).insert(kept)
        sql = db.sql("SELECT region, sum(net) AS net FROM lines GROUP BY region ORDER BY region")
        for mine, theirs in zip(groups.to_pylist(), sql.to_arrow().to_pylist()):
            if abs(mine["net_sum"] - theirs["net"]) > 1e-6 * max(1.0, mine["net_sum"]):
                raise SystemExit(f"SQL disagrees: {theirs} vs {mine}")
    print(f"{len(kept)} lines: every kernel result checked against a row-by-row loop and SQL")


if __name__ == "__main__":
    main()
