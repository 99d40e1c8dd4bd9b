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

# the benchmark SQLite file with $1 rows in table bench (10 columns: ints, text, real, blob, datetime text),
# made once and reused; prints its path
bench_db() {
  local db="$WORK/snapshot-$1.db"
  if [ ! -f "$db" ]; then
    sqlite3 "$db" >/dev/null <<SQL
PRAGMA journal_mode = WAL;
CREATE TABLE bench(id INTEGER PRIMARY KEY, account INTEGER NOT NULL, big INTEGER, price REAL, ratio REAL,
                   name TEXT NOT NULL, note TEXT, payload BLOB, created DATETIME, flag INTEGER);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1)
INSERT INTO bench SELECT i, abs(random()) % 100000, random(), (abs(random()) % 1000000) / 100.0, random() / 3.0,
       'name-' || hex(randomblob(6)), hex(randomblob(30)), randomblob(48), datetime(1600000000 + i, 'unixepoch'), i % 2
FROM n;
SQL
  fi
  echo "$db"
}
