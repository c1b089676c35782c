"""Shared fixtures: a fresh database per test in pytest's temporary directory."""

import os
import sys

import pytest

import strata

# The package under test is the one on PYTHONPATH (tests/pytest.rs puts the freshly built
# extension there); make the examples directory importable for test_examples.py.
PYTHON_DIR = os.environ.get("STRATA_PYTHON_DIR", os.path.dirname(os.path.dirname(__file__)))
sys.path.insert(0, os.path.join(PYTHON_DIR, "examples"))


@pytest.fixture
def db(tmp_path):
    database = strata.open(tmp_path / "db")
    yield database
    database.close()


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "db"
