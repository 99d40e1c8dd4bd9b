#!/usr/bin/env bash
# Schema changes while `lite2pg run` streams, on the 1M-row benchmark table:
#  - ADD COLUMN with a default (followed by DDL alone: existing rows get the default in PostgreSQL too);
#  - a migration tool's table rebuild (new table, copy, drop, rename): followed by copying that table whole;
#  each timed from the migration's commit in SQLite until PostgreSQL holds the new shape and every row, beside
#  the raw limit: a fresh `lite2pg snapshot` of the same table.
source "$(dirname "$0")/lib.sh"
build
ROWS=${1:-1000000}
db="$WORK/migrate.db"
rm -f "$db"*
cp "$(bench_db "$ROWS")" "$db"
url=$(fresh_db bench_migrate)
snapshot_s=$(timed "$LITE2PG" snapshot --sqlite "$db" --postgres "$url")
RUST_LOG=warn "$LITE2PG" run --sqlite "$db" --postgres "$url" &
daemon=$!
trap 'kill $daemon 2>/dev/null; drop_db bench_migrate; rm -f "$db"*' EXIT
sleep 2

# seconds from now until the SQL condition $1 holds in PostgreSQL (polled every 10 ms)
until_true() {
  local t0; t0=$(now)
  until [ "$(psql -qtA "$url" -c "SELECT $1" 2>/dev/null)" = t ]; do sleep 0.01; done
  echo "$(now) - $t0" | bc -l | xargs printf '%.2f'
}
caught_up="NOT (SELECT resync FROM lite2pg.tables WHERE table_name = 'bench')"

sqlite3 "$db" "ALTER TABLE bench ADD COLUMN region TEXT NOT NULL DEFAULT 'eu';"
add_s=$(until_true "EXISTS (SELECT 1 FROM bench WHERE region = 'eu') AND $caught_up")

t0=$(now)
sqlite3 "$db" "BEGIN;
  CREATE TABLE _new_bench(id INTEGER PRIMARY KEY, account INTEGER NOT NULL, big INTEGER, price REAL, ratio REAL,
                          name TEXT NOT NULL, note TEXT, payload BLOB, created DATETIME, flag INTEGER, region TEXT);
  INSERT INTO _new_bench SELECT id, account, big, price, ratio, name, note, payload, created, flag, region FROM bench;
  DROP TABLE bench; ALTER TABLE _new_bench RENAME TO bench; COMMIT;"
sqlite_s=$(echo "$(now) - $t0" | bc -l | xargs printf '%.2f')
sqlite3 "$db" "UPDATE bench SET region = 'us' WHERE id = 1;"
rebuild_s=$(until_true "(SELECT region FROM bench WHERE id = 1) = 'us' AND $caught_up")

echo "schema changes on a $ROWS-row table while lite2pg run streams"
echo "  ADD COLUMN … DEFAULT: followed in $add_s s (DDL only)"
echo "  table rebuild: SQLite's own migration took $sqlite_s s; PostgreSQL had the new table $rebuild_s s after it"
echo "  raw limit, a fresh snapshot of the table: $snapshot_s s -> $(ratio "$rebuild_s" "$snapshot_s")x"
