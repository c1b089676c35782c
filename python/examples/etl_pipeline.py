"""An ETL pipeline with pyarrow: messy CSV in, cleaned with pyarrow.compute, deduplicated,
joined, written as hive-partitioned Parquet, read back with one partition pruned, and a
monthly aggregate loaded into the Strata table monthly_sales keyed by (country, month),
flushed and checked against the cleaned input (the twin of examples/etl_pipeline.rs).

Run: python etl_pipeline.py [ORDERS_PER_MONTH]   (default 2,000)
"""

import datetime as dt
import os
import tempfile

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as csv
import pyarrow.dataset as ds

import strata
from _common import size_arg

CUSTOMERS = 200
COUNTRIES = ["de", "FR", " us", "Gb", ""]


def extract(tmp: str, per_month: int) -> None:
    """Generated CSV exports with stray spaces, mixed-case or missing countries, duplicate
    customers, bad or non-positive amounts, cancelled and twice-exported orders."""
    with open(os.path.join(tmp, "customers.csv"), "w") as f:
        f.write("customer_id,name,country\n")
        for c in range(CUSTOMERS):
            line = f"{c},  Customer {c} ,{COUNTRIES[c % len(COUNTRIES)]}\n"
            f.write(line)
            if c % 10 == 0:
                f.write(line)  # exported twice
    os.mkdir(os.path.join(tmp, "orders"))
    order_id = 0
    for month in range(1, 4):
        with open(os.path.join(tmp, "orders", f"2026-{month:02}.csv"), "w") as f:
            f.write("order_id,customer_id,order_date,amount,status\n")
            for i in range(per_month):
                order_id += 1
                customer = (order_id * 7919) % (CUSTOMERS + 5)  # a few unknown customers
                amount = ("oops" if order_id % 53 == 0 else
                          "-5" if order_id % 61 == 0 else f"{(order_id * 37) % 500 + 0.5}")
                status = "CANCELLED" if order_id % 41 == 0 else "shipped"
                line = (f"{order_id},{customer},2026-{month:02}-{1 + i % 28:02},"
                        f"{amount},{status}\n")
                f.write(line)
                if order_id % 29 == 0:
                    f.write(line)  # exported twice


def main() -> None:
    per_month = size_arg("ORDERS_PER_MONTH", 2000)
    with tempfile.TemporaryDirectory() as tmp:
        extract(tmp, per_month)
        text = csv.ConvertOptions(column_types={"amount": pa.string(), "country": pa.string()})

        # Transform: trim, normalise, drop bad values, deduplicate.
        raw_customers = csv.read_csv(os.path.join(tmp, "customers.csv"), convert_options=text)
        country = pc.utf8_upper(pc.utf8_trim_whitespace(raw_customers["country"]))
        customers = pa.table({
            "customer_id": raw_customers["customer_id"],
            "name": pc.utf8_trim_whitespace(raw_customers["name"]),
            "country": pc.if_else(pc.equal(country, ""), "UNKNOWN", country),
        }).group_by(["customer_id", "name", "country"]).aggregate([])
        print(f"{raw_customers.num_rows} raw customers, "
              f"{customers.num_rows} customers after dedupe")

        raw_orders = ds.dataset(os.path.join(tmp, "orders"), format=ds.CsvFileFormat(
            convert_options=text)).to_table()
        amount = pc.cast(pc.if_else(
            pc.match_substring_regex(raw_orders["amount"], r"^-?[0-9]+(\.[0-9]+)?$"),
            raw_orders["amount"], None), pa.float64())
        good = pc.and_(pc.greater(amount, 0.0),
                       pc.not_equal(pc.utf8_lower(raw_orders["status"]), "cancelled"))
        orders = raw_orders.set_column(3, "amount", amount).filter(good) \
            .drop_columns(["status"]) \
            .group_by(["order_id", "customer_id", "order_date", "amount"]).aggregate([])
        print(f"{raw_orders.num_rows} raw orders, {orders.num_rows} clean orders "
              f"({raw_orders.num_rows - len(pc.filter(raw_orders['order_id'], good))} rejected)")

        sales = orders.join(customers, "customer_id", join_type="inner")
        print(f"{sales.num_rows} sales with a known customer")

        # Load 1: hive-partitioned Parquet, one country=XX/ directory per country.
        lake = os.path.join(tmp, "lake", "orders")
        ds.write_dataset(sales, lake, format="parquet", partitioning=["country"],
                         partitioning_flavor="hive")
        files = sorted(os.path.relpath(os.path.join(d, f), lake)
                       for d, _, fs in os.walk(lake) for f in fs)
        print(f"partitioned Parquet: {len(files)} files")
        for f in files:
            print(f"  lake/orders/{f}")
        dataset = ds.dataset(lake, format="parquet", partitioning="hive")
        de_files = [f for f in dataset.get_fragments(filter=ds.field("country") == "DE")]
        de_sum = pc.sum(dataset.to_table(filter=ds.field("country") == "DE")["amount"]).as_py()
        print(f"country = 'DE' reads {len(de_files)} of {len(files)} files: sum {de_sum:.2f}")

        # Load 2: the monthly aggregate into a Strata table.
        lake_rows = dataset.to_table()
        month = pc.strftime(lake_rows["order_date"], format="%Y-%m-01")
        monthly = lake_rows.append_column("month", pc.cast(pc.strptime(
            month, format="%Y-%m-%d", unit="s"), pa.date32())) \
            .group_by(["country", "month"]).aggregate([("amount", "sum"), ("order_id", "count")])
        schema = pa.schema([pa.field("country", pa.string(), nullable=False),
                            pa.field("month", pa.date32(), nullable=False),
                            ("revenue", pa.float64()), ("orders", pa.int64())])
        with strata.open(os.path.join(tmp, "db")) as db:
            table = db.create_table("monthly_sales", schema, primary_key=["country", "month"])
            table.insert(pa.table({
                "country": pc.cast(monthly["country"], pa.string()), "month": monthly["month"],
                "revenue": monthly["amount_sum"], "orders": monthly["order_id_count"]},
                schema=schema))
            table.flush()
            db.sql("SELECT * FROM monthly_sales ORDER BY country, month").show(limit=50)
            loaded = db.sql("SELECT sum(orders) AS n, sum(revenue) AS r FROM monthly_sales") \
                .to_arrow().to_pylist()[0]
            first = table.get(("DE", dt.date(2026, 1, 1).toordinal() - dt.date(1970, 1, 1).toordinal()))
        expected = pc.sum(sales["amount"]).as_py()
        if loaded["n"] != sales.num_rows or abs(loaded["r"] - expected) > 1e-6 * expected:
            raise SystemExit(f"monthly_sales holds {loaded}, expected {sales.num_rows} orders "
                             f"and revenue {expected}")
        print(f"monthly_sales: {loaded['n']} orders, revenue {loaded['r']:.2f} as cleaned; "
              f"DE 2026-01: {first['orders'] if first else 0} orders")
    print("pipeline done")


if __name__ == "__main__":
    main()
