#!/usr/bin/env bash
# The Python package's tests, as a user gets the package: a fresh virtual environment, `pip install .` (maturin,
# fetched from PyPI by pip, compiles the binary into the wheel), then pytest against the real PostgreSQL.
# The wheel is built with the dev profile so it reuses what `cargo test` compiled into target/ (seconds instead of
# the minutes a release build takes); users' `pip install .` builds the release profile. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv="$(mktemp -d)/venv"
trap 'rm -rf "$(dirname "$venv")"' EXIT
python3 -m venv "$venv"
pip=("$venv/bin/pip" install -q --disable-pip-version-check)
# What the tests and examples use beside the package (the package itself needs nothing but the standard library).
"${pip[@]}" 'pytest>=7' 'mypy>=1' psycopg2-binary 'sqlalchemy>=2' 'django>=5.1' 'flask>=2.2'
MATURIN_PEP517_ARGS="${MATURIN_PEP517_ARGS:---profile dev}" "${pip[@]}" .
# No server given and none on 127.0.0.1:5432 (a machine with only PostgreSQL's binaries): the tests use a private
# cluster, made and stopped here by the installed lite2pg's own `local` command.
if [ -z "${LITE2PG_TEST_POSTGRES:-}" ] && ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
  export LITE2PG_DATA_DIR="$(dirname "$venv")/pg"
  chmod 755 "$(dirname "$venv")"
  url=$("$venv/bin/lite2pg" local start 2>/dev/null)
  trap '"$venv/bin/lite2pg" local stop >/dev/null 2>&1; rm -rf "$(dirname "$venv")"' EXIT
  export LITE2PG_TEST_POSTGRES="${url%/*}/postgres"
  echo "python tests: no PostgreSQL on 127.0.0.1:5432; using a private cluster at $LITE2PG_TEST_POSTGRES"
fi
cd tests/python
# Run from here, so `import lite2pg` is the installed package, not the checkout's python/ directory.
"$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
