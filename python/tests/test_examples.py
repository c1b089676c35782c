"""Runs every example in python/examples/ with small data, as the Rust examples are run by
tests/examples.rs: each in a subprocess with its own TMPDIR, checking its exit status, a line
of its output, and that it left no files behind. The set is the same as examples/*.rs."""

import os
import subprocess
import sys
import tempfile

import pytest

PYTHON_DIR = os.environ.get("STRATA_PYTHON_DIR", os.path.dirname(os.path.dirname(__file__)))
EXAMPLES = os.path.join(PYTHON_DIR, "examples")
RUST_EXAMPLES = os.path.join(PYTHON_DIR, "..", "examples")

CASES = {
    "kv_basics": (["200"], ["reopened: 202 keys", "scan: 200 user keys"]),
    "tables_and_sql": ([], ["reopened: 6 orders (had 6), customer 4 lives in Boston",
                            "| Grace   | 1      | 199.8 |"]),
    "format_conversions": (["1000"], ["every format held the same 1000 rows", "-> CSV",
                                      "-> NDJSON", "-> Parquet", "-> Arrow file",
                                      "-> Arrow stream", "-> ORC", "-> Strata"]),
    "mmap_ipc": (["20000"], ["(zero-copy)", "read 20000 rows", "sum(id) = 199990000"]),
    "compute_kernels": (["2000"], ["checked against a row-by-row loop"]),
    "etl_pipeline": (["300"], ["pipeline done", "200 customers after dedupe", "country=DE/"]),
    "parquet_compression": (["5000"], ["every file read back identical to the input",
                                       "snappy", "zstd(3)", "lz4_raw", "gzip(6)", "brotli(4)",
                                       "read by pyarrow.parquet"]),
    "events_analytics": (["5000"], ["5000 events queried", "StrataScanExec: table=events"]),
    "crash_recover": (["50"], ["every acknowledged write survived the crash"]),
}


def run(name, args):
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, TMPDIR=tmp)
        out = subprocess.run([sys.executable, os.path.join(EXAMPLES, name + ".py"), *args],
                             capture_output=True, text=True, env=env, cwd=EXAMPLES)
        left = os.listdir(tmp)
    assert out.returncode == 0, f"{name} failed:\n{out.stdout}\n{out.stderr}"
    assert not left, f"{name} left files behind: {left}"
    return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_example(name):
    args, expected = CASES[name]
    out = run(name, args)
    for text in expected:
        assert text in out.stdout, f"{name} did not print {text!r}:\n{out.stdout}"


def test_bad_arguments_are_reported():
    out = subprocess.run([sys.executable, os.path.join(EXAMPLES, "kv_basics.py"), "lots"],
                         capture_output=True, text=True, cwd=EXAMPLES)
    assert out.returncode != 0
    assert "KEYS must be a number" in out.stderr
    assert "Traceback" not in out.stderr


def test_same_set_as_the_rust_examples():
    python = {f[:-3] for f in os.listdir(EXAMPLES) if f.endswith(".py") and not f.startswith("_")}
    assert python == set(CASES)
    if os.path.isdir(RUST_EXAMPLES):
        rust = {f[:-3] for f in os.listdir(RUST_EXAMPLES) if f.endswith(".rs")}
        assert python == rust
