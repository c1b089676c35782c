#!/usr/bin/env bash
# Sets up the clients the `strata serve` tests use: psql (Debian's postgresql-client, installed
# when missing) and a Python environment with the ADBC Flight SQL driver, psycopg 3 and pyarrow
# from PyPI, in target/server-test-venv (or $STRATA_TEST_VENV).
# Idempotent: an environment that already imports all three is left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v psql >/dev/null; then
    apt-get update -qq && apt-get install -y -qq postgresql-client >/dev/null
fi
venv="${STRATA_TEST_VENV:-target/server-test-venv}"
check='import adbc_driver_flightsql.dbapi, psycopg, pyarrow'
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "$check" 2>/dev/null; then
    echo "server test venv: $venv (ready)"
    exit 0
fi
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    'adbc-driver-flightsql>=1.0' 'adbc-driver-manager>=1.0' 'psycopg[binary]>=3.1' 'pyarrow>=15'
"$venv/bin/python" -c "$check"
echo "server test venv: $venv (created)"
