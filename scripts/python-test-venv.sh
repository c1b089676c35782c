#!/usr/bin/env bash
# Sets up the Python environment the `strata` Python package's tests use (python/tests/pytest.rs
# runs it once per test process): pytest, pyarrow, pandas, polars, datafusion-python 55 and
# maturin, pinned, from PyPI, in target/python-test-venv (or $STRATA_PYTHON_VENV).
# Needs only python3 with its venv module; no Python headers (the extension is built by cargo).
# Idempotent: an environment that already has every pinned package is left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${STRATA_PYTHON_VENV:-target/python-test-venv}"
pins=(pytest==9.2.0 pyarrow==26.0.1 pandas==3.1.1 polars==2.1.0 datafusion==55.0.0 maturin==1.16.0)
stamp="$venv/.strata-pins"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "${pins[*]}" ]; then
    echo "python test venv: $venv (ready)"
    exit 0
fi
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${pins[@]}"
"$venv/bin/python" -c 'import pytest, pyarrow, pandas, polars, datafusion'
echo "${pins[*]}" > "$stamp"
echo "python test venv: $venv (created)"
