"""Key-value basics: put, get, delete, ordered and prefix scans, an atomic write batch, a
flush to a Parquet SST, and a reopen that finds every write again (the Python twin of
examples/kv_basics.rs).

Run: python kv_basics.py [KEYS]   (default 1,000 generated user keys)
"""

import tempfile

import strata
from _common import size_arg


def main() -> None:
    keys = size_arg("KEYS", 1000)
    with tempfile.TemporaryDirectory() as tmp:
        with strata.open(tmp) as db:
            kv = db.kv("settings")
            kv.put("theme", "dark")
            kv.put("language", "en")
            kv.put("theme", "light")
            kv.delete("language")
            print(f"get theme = {kv.get('theme').decode()}, get language = {kv.get('language')}")

            # An atomic batch: all of it or none of it is visible.
            with kv.batch() as batch:
                for i in range(keys):
                    batch.put(f"user:{i:06}", f"name-{i}")
                batch.put("counter", "1")
                batch.delete("theme")
            print(f"write batch: {len(batch)} operations applied atomically")

            first = [f"{k.decode()}={v.decode()}" for k, v in kv.scan(prefix="user:")][:3]
            print("first users in key order:", ", ".join(first))
            users = sum(1 for _ in kv.scan(prefix="user:"))
            total = sum(1 for _ in kv.scan())
            print(f"scan: {users} user keys, {total} keys in total")

            kv.flush()
            files = db.sql("SELECT count(*) AS files, sum(rows) AS rows "
                           "FROM strata_sstables('settings')").to_arrow().to_pylist()[0]
            print(f"flushed: {files['files']} SST file(s), {files['rows']} rows")
            kv.put("after-flush", "only in the WAL")

        with strata.open(tmp) as db:
            kv = db.kv("settings")
            reopened = sum(1 for _ in kv.scan())
            print(f"reopened: {reopened} keys, counter = {kv.get('counter').decode()}, "
                  f"after-flush = {kv.get('after-flush').decode()}, theme = {kv.get('theme')}")
            if reopened != total + 1:
                raise SystemExit(f"expected {total + 1} keys after reopen, found {reopened}")


if __name__ == "__main__":
    main()
