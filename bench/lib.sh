# Shared helpers for the benchmark scripts: where things are, how to time them, a scratch PostgreSQL database.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LITE2PG="$ROOT/target/release/lite2pg"
PG_ADMIN=${LITE2PG_BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres}
WORK=${LITE2PG_BENCH_DIR:-/tmp/lite2pg-bench}
mkdir -p "$WORK"

build() { (cd "$ROOT" && cargo build --release --quiet --bins --examples); }

# seconds since the epoch, with nanoseconds
now() { date +%s.%N; }

# elapsed SECONDS of running "$@"
timed() { local t0; t0=$(now); "$@" >/dev/null; echo "$(now) - $t0" | bc -l | xargs printf '%.2f'; }

# a fresh database named $1 on the bench server; prints its URL
fresh_db() {
  psql -q "$PG_ADMIN" -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1" >/dev/null
  echo "${PG_ADMIN%/*}/$1"
}

drop_db() { psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" >/dev/null; }

ratio() { echo "$1 / $2" | bc -l | xargs printf '%.2f'; }
