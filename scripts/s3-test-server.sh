#!/usr/bin/env bash
# Sets up the S3 protocol server the object-storage tests run against: moto in server mode,
# pinned to 5.2.1 (its conditional puts answer 412 Precondition Failed to a failed If-Match or
# If-None-Match, which Strata's commits rely on), in a Python environment in
# target/s3-test-venv (or $STRATA_S3_TEST_VENV).
# Idempotent: an environment whose moto_server is already 5.2.1 is left as it is.
# Prints the path of the moto_server executable on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${STRATA_S3_TEST_VENV:-target/s3-test-venv}"
version='5.2.1'
check="import moto, sys; sys.exit(0 if moto.__version__ == '$version' else 1)"
if ! { [ -x "$venv/bin/moto_server" ] && "$venv/bin/python" -c "$check" 2>/dev/null; }; then
    # Several test processes may run this at once: one creates the venv, the others wait.
    mkdir -p "$(dirname "$venv")"
    exec 9>"$venv.lock"
    flock 9
    if ! { [ -x "$venv/bin/moto_server" ] && "$venv/bin/python" -c "$check" 2>/dev/null; }; then
        python3 -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            "moto[server]==$version"
        "$venv/bin/python" -c "$check"
    fi
fi
echo "$(cd "$venv/bin" && pwd)/moto_server"
