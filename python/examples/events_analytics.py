"""Analytic queries over the generate_events data set from Python: the events of Strata's
SQL benchmarks loaded into a Strata table, flushed and compacted into Parquet SSTs, then
queried into pandas — a point lookup and a key range (pruned by the primary key), top kinds,
hourly revenue, the biggest spenders, a window function, approximate percentiles, and
EXPLAIN ANALYZE of a key range scan (the twin of examples/events_analytics.rs).

Run: python events_analytics.py [ROWS]   (default 50,000)
"""

import tempfile
import time

import strata
from _common import size_arg


def show(db, title: str, sql: str) -> None:
    started = time.perf_counter()
    frame = db.sql(sql).to_pandas()
    elapsed = (time.perf_counter() - started) * 1000
    print(f"{title} ({elapsed:.1f} ms):\n{frame.to_string(index=False)}\n")


def main() -> None:
    rows = size_arg("ROWS", 50_000)
    with tempfile.TemporaryDirectory() as tmp:
        with strata.open(tmp) as db:
            started = time.perf_counter()
            db.sql("CREATE TABLE events (id BIGINT NOT NULL, user_id INT NOT NULL, "
                   "kind VARCHAR NOT NULL, amount DOUBLE NOT NULL, ts TIMESTAMP(6) NOT NULL, "
                   "PRIMARY KEY (id))")
            db.sql(f"INSERT INTO events SELECT * FROM generate_events({rows})")
            events = db.table("events")
            events.flush()
            events.compact()
            print(f"loaded {rows} events in {time.perf_counter() - started:.2f} s")
            db.sql("SELECT level, files, rows, bytes FROM strata_levels('events') "
                   "WHERE files > 0").show()

            probe = rows // 2
            print(f"point lookup through the engine: {events.get(probe)}")
            show(db, "point lookup in SQL", f"SELECT * FROM events WHERE id = {probe}")
            show(db, "a key range of 1000 events",
                 f"SELECT count(*) AS events, round(sum(amount), 2) AS amount FROM events "
                 f"WHERE id >= {probe} AND id < {probe} + 1000")
            show(db, "top kinds", "SELECT kind, count(*) AS events, round(avg(amount), 2) AS "
                 "avg_amount FROM events GROUP BY kind ORDER BY events DESC, kind LIMIT 5")
            show(db, "revenue per hour", "SELECT date_trunc('hour', ts) AS hour, count(*) AS "
                 "events, round(sum(amount), 2) AS revenue FROM events GROUP BY 1 ORDER BY 1 "
                 "LIMIT 5")
            show(db, "biggest spenders", "SELECT user_id, count(*) AS events, "
                 "round(sum(amount), 2) AS spent FROM events GROUP BY user_id "
                 "ORDER BY spent DESC LIMIT 5")
            show(db, "running total of the first user with 3 or more events",
                 "WITH busy AS (SELECT user_id FROM events GROUP BY user_id "
                 "HAVING count(*) >= 3 ORDER BY user_id LIMIT 1) "
                 "SELECT e.user_id, e.id, e.ts, e.amount, round(sum(e.amount) OVER "
                 "(PARTITION BY e.user_id ORDER BY e.ts), 2) AS running_total "
                 "FROM events e JOIN busy b ON e.user_id = b.user_id ORDER BY e.ts LIMIT 5")
            show(db, "amount percentiles",
                 "SELECT round(approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY amount), 2) "
                 "AS p50, round(approx_percentile_cont(0.9) WITHIN GROUP (ORDER BY amount), 2) "
                 "AS p90, max(amount) AS max FROM events")

            # A count alone over a key range reads no row (the engine counts the files' keys),
            # so the query sums a column too.
            plan = db.sql(f"EXPLAIN ANALYZE SELECT count(*), sum(amount) FROM events "
                          f"WHERE id BETWEEN {probe} AND {probe} + 99").to_arrow()
            text = "\n".join(plan.column(1).to_pylist())
            scan = next((line.strip() for line in text.splitlines() if "StrataScan" in line),
                        "(no StrataScan node in the plan)")
            print(f"key range scan in EXPLAIN ANALYZE:\n  {scan}")
            total = db.sql("SELECT count(*) AS n FROM events").to_arrow()["n"][0].as_py()
    print(f"{total} events queried")


if __name__ == "__main__":
    main()
