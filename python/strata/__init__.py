"""Strata from Python: an embedded LSM-tree database whose tables are Parquet files,
queried with DataFusion SQL, with pyarrow in and out (zero copy through the Arrow C data
interface).

    import strata
    with strata.open("my-data") as db:
        db.create_table("users", pa.schema([("id", pa.int64()), ("name", pa.string())]),
                        primary_key=["id"])
        db.table("users").insert(pandas_frame)
        df = db.sql("SELECT name FROM users WHERE id < 10").to_pandas()

The native module ``strata._strata`` does the work; this module adds the conversions
(pandas, polars, rows as dicts) and the ``db.kv`` facade. Every error is a
:class:`StrataError` (see its subclasses); the GIL is released during engine calls and
queries, and Ctrl-C cancels a running query.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Iterator

import pyarrow as pa

from . import _strata
from ._strata import (
    ClosedError,
    CorruptionError,
    InternalError,
    InvalidInputError,
    LockedError,
    StrataError,
    UnavailableError,
)

__all__ = [
    "open",
    "memory",
    "Database",
    "Result",
    "Table",
    "KvStore",
    "WriteBatch",
    "StrataError",
    "InvalidInputError",
    "CorruptionError",
    "UnavailableError",
    "LockedError",
    "ClosedError",
    "InternalError",
]

_BAD_INPUT = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError,
              ValueError, OverflowError)


def open(path_or_url: str | os.PathLike, profile: str | None = None,
         memtable: str | None = None) -> "Database":
    """Opens (or creates) the database in a directory (a path or a ``file://`` URL).

    ``profile``: ``"balanced"`` (default), ``"high_performance"`` or ``"memory_efficient"``.
    ``memtable``: the memtable of new tables (``"skiplist"``, ``"enhanced_skiplist"``, ...).
    """
    if not isinstance(path_or_url, (str, os.PathLike)):
        raise InvalidInputError(
            f"expected a path or a file:// URL, got {type(path_or_url).__name__}")
    return Database(_strata.open(os.fspath(path_or_url), profile=profile, memtable=memtable))


def memory(profile: str | None = None, memtable: str | None = None) -> "Database":
    """A throw-away database in a temporary directory, deleted when it is closed."""
    return Database(_strata.memory(profile=profile, memtable=memtable))


class Database:
    """An open database; a context manager that closes it."""

    def __init__(self, native: Any):
        self._db = native
        self._kv: KvStore | None = None

    def __enter__(self) -> "Database":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<strata.Database {self.path!r} ({state})>"

    @property
    def path(self) -> str:
        """The database directory."""
        return self._db.path

    @property
    def closed(self) -> bool:
        return self._db.closed

    def close(self) -> None:
        """Syncs the WAL and releases the directory; later calls raise ClosedError."""
        self._db.close()

    def sql(self, query: str) -> "Result":
        """Runs one SQL statement. DDL and DML run now; a query runs when its result is read
        (``to_arrow``, ``to_pandas``, ``to_polars``, ``to_batches``, ``show``)."""
        if not isinstance(query, str):
            raise InvalidInputError(f"expected SQL text, got {type(query).__name__}")
        return Result(self._db.sql(query))

    def create_table(self, name: str, schema: pa.Schema | Iterable[Any],
                     primary_key: list[str] | tuple[str, ...] | str = ()) -> "Table":
        """Creates a table with an Arrow ``schema`` keyed by the ``primary_key`` columns
        (none: an append-only table keyed by a hidden row id)."""
        if isinstance(primary_key, str):
            primary_key = [primary_key]
        try:
            schema = schema if isinstance(schema, pa.Schema) else pa.schema(schema)
        except _BAD_INPUT as e:
            raise InvalidInputError(f"not an Arrow schema: {e}") from e
        return Table(self._db.create_table(name, schema, list(primary_key)))

    def table(self, name: str) -> "Table":
        """The table ``name``."""
        return Table(self._db.table(name))

    def tables(self) -> list[str]:
        """Names of the tables (key-value stores included)."""
        return self._db.tables()

    @property
    def kv(self) -> "KvStore":
        """The default key-value store (named ``kv``); ``db.kv("name")`` opens another."""
        if self._kv is None:
            self._kv = KvStore(self._db, self._db.kv("kv"))
        return self._kv

    def flush(self) -> None:
        """Flushes every table's memtables to Parquet SSTs."""
        self._db.flush()


class Result:
    """The result of :meth:`Database.sql`. Each read runs the query again."""

    def __init__(self, native: Any):
        self._result = native

    @property
    def schema(self) -> pa.Schema:
        return self._result.schema

    def to_arrow(self) -> pa.Table:
        """The whole result as a ``pyarrow.Table`` (zero copy)."""
        schema, batches = self._result.collect()
        return pa.Table.from_batches(batches, schema=schema)

    def to_pandas(self, **kwargs: Any):
        """The whole result as a ``pandas.DataFrame``."""
        return self.to_arrow().to_pandas(**kwargs)

    def to_polars(self):
        """The whole result as a ``polars.DataFrame`` (needs polars installed)."""
        try:
            import polars
        except ImportError as e:
            raise ImportError("to_polars() needs polars: pip install polars") from e
        return polars.from_arrow(self.to_arrow())

    def to_batches(self) -> Iterator[pa.RecordBatch]:
        """Streams the result as ``pyarrow.RecordBatch``es while the query runs."""
        return iter(self._result.stream())

    def to_reader(self) -> pa.RecordBatchReader:
        """The streaming result as a ``pyarrow.RecordBatchReader``."""
        stream = self._result.stream()
        return pa.RecordBatchReader.from_batches(stream.schema, stream)

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object:
        return self.to_reader().__arrow_c_stream__(requested_schema)

    def show(self, limit: int = 20) -> None:
        """Prints the first ``limit`` rows as a table."""
        print(self._result.format(limit))

    def __repr__(self) -> str:
        return self._result.format(10)


def _as_stream(data: Any, schema: pa.Schema) -> Any:
    """Anything insertable as an Arrow stream of ``schema``: pyarrow Table, RecordBatch,
    RecordBatchReader, a pandas DataFrame, or any object with ``__arrow_c_stream__``."""
    if isinstance(data, pa.RecordBatchReader):
        return data.cast(schema) if data.schema != schema else data
    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    elif not isinstance(data, pa.Table) and type(data).__module__.startswith("pandas"):
        return pa.Table.from_pandas(data, schema=schema, preserve_index=False)
    elif isinstance(data, (list, dict)):
        data = pa.Table.from_pylist(data, schema=schema) if isinstance(data, list) \
            else pa.Table.from_pydict(data, schema=schema)
    if isinstance(data, pa.Table):
        if data.schema != schema:
            data = data.select(schema.names).cast(schema)
        return data
    if hasattr(data, "__arrow_c_stream__"):
        return data
    raise InvalidInputError(
        "cannot insert a " + type(data).__name__ + ": expected a pyarrow Table, RecordBatch or "
        "RecordBatchReader, a pandas DataFrame, rows as a list of dicts, or columns as a dict")


class Table:
    """One table. ``insert`` upserts by primary key."""

    def __init__(self, native: Any):
        self._table = native

    def __repr__(self) -> str:
        return f"<strata.Table {self.name!r} primary_key={self.primary_key}>"

    @property
    def name(self) -> str:
        return self._table.name

    @property
    def primary_key(self) -> list[str]:
        return self._table.primary_key

    @property
    def schema(self) -> pa.Schema:
        return self._table.schema

    def insert(self, data: Any) -> int:
        """Upserts rows (a pyarrow Table / RecordBatch / RecordBatchReader, a pandas
        DataFrame, a list of row dicts or a dict of columns); returns the rows written."""
        try:
            stream = _as_stream(data, self.schema)
        except KeyError as e:
            raise InvalidInputError(f"missing column {e} for table {self.name}") from e
        except _BAD_INPUT as e:
            raise InvalidInputError(f"cannot insert into {self.name}: {e}") from e
        return self._table.insert_stream(stream)

    def delete(self, keys: Any) -> int:
        """Deletes rows by key: one key, a list of keys (tuples for a composite key), or a
        pyarrow Table / RecordBatch of the key columns. Returns the number of keys."""
        if isinstance(keys, pa.Table):
            keys = keys.combine_chunks().to_batches()
            return sum(self._table.delete_batch(b) for b in keys)
        if isinstance(keys, pa.RecordBatch):
            return self._table.delete_batch(keys)
        if isinstance(keys, (list, set, frozenset)) or (
                hasattr(keys, "__iter__") and not isinstance(keys, (str, bytes, tuple))):
            return self._table.delete_keys(list(keys))
        return self._table.delete_keys([keys])

    def get(self, key: Any) -> dict[str, Any] | None:
        """The row with ``key`` (a tuple for a composite key) as a dict, or None."""
        row = self._table.get_row(key)
        if row is None or isinstance(row, dict):
            return row
        return row.to_pylist()[0]  # a column type the native side leaves to pyarrow

    def scan(self, start: Any = None, end: Any = None,
             columns: list[str] | None = None) -> pa.RecordBatchReader:
        """Streams rows with ``start <= key < end`` in key order (a bound may be a key
        prefix), only ``columns`` if given, as a ``pyarrow.RecordBatchReader``."""
        batches = self._table.scan(start=start, end=end, columns=columns)
        return pa.RecordBatchReader.from_batches(batches.schema, batches)

    def flush(self) -> None:
        """Flushes the table's memtables to Parquet SSTs."""
        self._table.flush()

    def compact(self) -> None:
        """Compacts the whole table."""
        self._table.compact()

    def __datafusion_table_provider__(self, session: Any) -> object:
        """The table for datafusion-python: ``SessionContext().register_table("t", table)``."""
        return self._table.__datafusion_table_provider__(session)


def _key(key: Any) -> Any:
    if isinstance(key, (bytes, str)):
        return key
    if isinstance(key, (bytearray, memoryview)):
        return bytes(key)
    raise InvalidInputError(f"expected bytes or str, got {type(key).__name__}")


class WriteBatch:
    """Puts and deletes applied atomically by :meth:`KvStore.write`."""

    def __init__(self, store: "KvStore | None" = None):
        self._batch = _strata.WriteBatch()
        self._store = store

    def put(self, key: bytes | str, value: bytes | str) -> "WriteBatch":
        self._batch.put(_key(key), _key(value))
        return self

    def delete(self, key: bytes | str) -> "WriteBatch":
        self._batch.delete(_key(key))
        return self

    def clear(self) -> None:
        self._batch.clear()

    def __len__(self) -> int:
        return len(self._batch)

    def __enter__(self) -> "WriteBatch":
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None and self._store is not None:
            self._store.write(self)


class KvStore:
    """A key-value store: bytes (or str, as UTF-8) keys and values in key order."""

    def __init__(self, db: Any, native: Any):
        self._db = db
        self._kv = native

    def __call__(self, name: str) -> "KvStore":
        """The key-value store ``name`` of the same database, created on first use."""
        return KvStore(self._db, self._db.kv(name))

    def __repr__(self) -> str:
        return f"<strata.KvStore {self.name!r}>"

    @property
    def name(self) -> str:
        return self._kv.name

    def put(self, key: bytes | str, value: bytes | str) -> None:
        self._kv.put(_key(key), _key(value))

    def get(self, key: bytes | str) -> bytes | None:
        return self._kv.get(_key(key))

    def delete(self, key: bytes | str) -> None:
        self._kv.delete(_key(key))

    def scan(self, start: bytes | str | None = None, end: bytes | str | None = None,
             prefix: bytes | str | None = None) -> Iterator[tuple[bytes, bytes]]:
        """``(key, value)`` pairs with ``start <= key < end`` (or starting with ``prefix``)
        in key order."""
        if prefix is not None:
            if start is not None or end is not None:
                raise InvalidInputError("scan takes either prefix or start/end, not both")
            start = _key(prefix)
            start = start.encode() if isinstance(start, str) else start
            end = _prefix_end(start)
        return iter(self._kv.scan(
            start=None if start is None else _key(start),
            end=None if end is None else _key(end)))

    def batch(self) -> WriteBatch:
        """A write batch; as a context manager it is written when the block ends."""
        return WriteBatch(self)

    def write(self, batch: WriteBatch) -> None:
        """Applies every operation of ``batch`` atomically."""
        if not isinstance(batch, WriteBatch):
            raise InvalidInputError(f"expected a WriteBatch, got {type(batch).__name__}")
        self._kv.write(batch._batch)

    def flush(self) -> None:
        self._kv.flush()


def _prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key after every key starting with ``prefix`` (None: no bound)."""
    b = bytearray(prefix)
    while b and b[-1] == 0xFF:
        b.pop()
    if not b:
        return None
    b[-1] += 1
    return bytes(b)
