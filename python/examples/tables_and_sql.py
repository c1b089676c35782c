"""Tables and SQL from Python: CREATE TABLE ... PRIMARY KEY (a persistent LSM table),
INSERT as upsert (SQL and a pandas DataFrame), UPDATE, DELETE, a join with an aggregate,
results as pandas and polars, the engine's view of the same table (strata_sstables,
Table.get), and a restart that finds every row again (the twin of examples/tables_and_sql.rs).

Run: python tables_and_sql.py
"""

import tempfile

import pandas as pd

import strata


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        with strata.open(tmp) as db:
            db.sql("CREATE TABLE customers (id BIGINT PRIMARY KEY, name VARCHAR NOT NULL, "
                   "city VARCHAR)")
            db.sql("CREATE TABLE orders (customer_id BIGINT, order_no INT, "
                   "amount DOUBLE NOT NULL, PRIMARY KEY (customer_id, order_no))")
            db.sql("INSERT INTO customers VALUES (1, 'Ada', 'London'), (2, 'Grace', 'New York'), "
                   "(3, 'Edsger', 'Nuenen'), (4, 'Barbara', NULL)")
            # Rows from pandas: the DataFrame's columns are cast to the table's schema.
            db.table("orders").insert(pd.DataFrame({
                "customer_id": [1, 1, 2, 3, 3, 3, 4],
                "order_no": [1, 2, 1, 1, 2, 3, 1],
                "amount": [120.0, 35.5, 99.9, 10.0, 12.5, 7.25, 64.0]}))

            # INSERT of an existing key replaces the row (upsert); UPDATE and DELETE.
            db.table("customers").insert([{"id": 4, "name": "Barbara", "city": "Boston"}])
            db.sql("UPDATE orders SET amount = amount * 2 WHERE customer_id = 2")
            db.sql("DELETE FROM orders WHERE customer_id = 3 AND order_no = 3")
            print("customers after the upsert:")
            db.sql("SELECT * FROM customers ORDER BY id").show()

            print("spend per customer (join + GROUP BY):")
            db.sql("SELECT c.name, count(*) AS orders, sum(o.amount) AS total "
                   "FROM customers c JOIN orders o ON o.customer_id = c.id "
                   "GROUP BY c.name ORDER BY total DESC").show()

            # The result as pandas and polars.
            frame = db.sql("SELECT * FROM orders").to_pandas()
            big = frame[frame.amount > 50].sort_values("amount", ascending=False)
            print("pandas: orders over 50:\n" + big.to_string(index=False))
            polars_frame = db.sql("SELECT customer_id, amount FROM orders").to_polars()
            print("polars: total per customer:",
                  polars_frame.group_by("customer_id").sum().sort("customer_id").rows())

            # The engine underneath: flush to a Parquet SST, list it, a point lookup.
            db.table("customers").flush()
            print("customers SSTs:")
            db.sql("SELECT level, file_id, min_key, max_key, rows "
                   "FROM strata_sstables('customers')").show()
            customers = db.table("customers")
            print(f"engine: table 'customers' has primary key {customers.primary_key}, "
                  f"get(2) = {customers.get(2)}")
            before = db.sql("SELECT count(*) AS n FROM orders").to_arrow()["n"][0].as_py()

        with strata.open(tmp) as db:
            after = db.sql("SELECT count(*) AS n FROM orders").to_arrow()["n"][0].as_py()
            city = db.table("customers").get(4)["city"]
            print(f"reopened: {after} orders (had {before}), customer 4 lives in {city}")
            if after != before:
                raise SystemExit(f"expected {before} orders after the restart, found {after}")


if __name__ == "__main__":
    main()
