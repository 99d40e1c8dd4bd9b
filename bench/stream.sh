#!/usr/bin/env bash
# Streaming benchmarks, side by side in one run:
#  - capture overhead on the application's writes with the sqlite3 shell (500k-row insert in one transaction;
#    5k single-row transactions in WAL mode with synchronous FULL and NORMAL), without and with capture;
#  - catch-up: a backlog of 1M changes (500k inserts, 300k updates, 200k deletes) applied by `run --once`.
source "$(dirname "$0")/lib.sh"
build
SCHEMA="CREATE TABLE t(id INTEGER PRIMARY KEY, a INTEGER, b TEXT, c REAL);"
BULK="WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500000) INSERT INTO t SELECT i, i * 7, 'row ' || i, i / 3.0 FROM n;"
for i in $(seq 1 5000); do echo "INSERT INTO t(a, b, c) VALUES ($i, 'row $i', $i.5);"; done > "$WORK/single.sql"

# $1 = with capture (yes/no), $2 = synchronous, $3 = workload file or SQL; prints seconds (median of 3)
run_writes() {
  local times=()
  for _ in 1 2 3; do
    rm -f "$WORK/cap.db"*
    sqlite3 "$WORK/cap.db" "PRAGMA journal_mode = WAL;" "$SCHEMA" >/dev/null
    [ "$1" = yes ] && "$LITE2PG" init --sqlite "$WORK/cap.db" >/dev/null 2>&1
    if [ -f "$3" ]; then
      times+=("$(timed sh -c "(echo 'PRAGMA synchronous = $2;'; cat '$3') | sqlite3 '$WORK/cap.db'")")
    else
      times+=("$(timed sqlite3 "$WORK/cap.db" "PRAGMA synchronous = $2;" "BEGIN;" "$3" "COMMIT;")")
    fi
  done
  printf '%s\n' "${times[@]}" | sort -n | sed -n 2p
}

echo "capture overhead (median of 3, sqlite3 $(sqlite3 --version | cut -d' ' -f1))"
printf '%-44s %8s %8s %6s\n' workload plain capture ratio
for case in "500k-row insert, one transaction|FULL|$BULK" "5k single-row transactions, sync=FULL|FULL|$WORK/single.sql" "5k single-row transactions, sync=NORMAL|NORMAL|$WORK/single.sql"; do
  IFS='|' read -r name sync work <<<"$case"
  plain=$(run_writes no "$sync" "$work"); captured=$(run_writes yes "$sync" "$work")
  printf '%-44s %8s %8s %6s\n' "$name" "$plain" "$captured" "$(ratio "$captured" "$plain")"
done

rm -f "$WORK/catchup.db"*
sqlite3 "$WORK/catchup.db" "PRAGMA journal_mode = WAL;" "$SCHEMA" >/dev/null
url=$(fresh_db bench_catchup)
"$LITE2PG" snapshot --sqlite "$WORK/catchup.db" --postgres "$url" >/dev/null 2>&1
sqlite3 "$WORK/catchup.db" "BEGIN;" "$BULK" "COMMIT;" \
  "UPDATE t SET c = c + 1 WHERE id <= 300000;" "DELETE FROM t WHERE id > 300000;"
backlog=$(sqlite3 "$WORK/catchup.db" "SELECT count(*) FROM _lite2pg_changes")
t0=$(now)
/usr/bin/time -f "%M" -o "$WORK/rss" "$LITE2PG" run --once --sqlite "$WORK/catchup.db" --postgres "$url" >/dev/null 2>&1
catchup_s=$(echo "$(now) - $t0" | bc -l | xargs printf '%.2f')
sqlite3 -csv "$WORK/catchup.db" "SELECT * FROM t" > "$WORK/t.csv"
raw_url=$(fresh_db bench_catchup_raw)
psql -q "$raw_url" -c "CREATE TABLE t(id bigint PRIMARY KEY, a bigint, b text, c float8)"
copy_s=$(timed psql -q "$raw_url" -c "COPY t FROM '$WORK/t.csv' (FORMAT csv)")
echo
echo "catch-up of $backlog logged changes (500k inserts, 300k updates, 200k deletes)"
echo "  lite2pg run --once: $catchup_s s = $(echo "$backlog / $catchup_s" | bc) changes/s, peak RSS $(( $(cat "$WORK/rss") / 1024 )) MB"
echo "  plain COPY of the 300k resulting rows: $copy_s s"
drop_db bench_catchup; drop_db bench_catchup_raw; rm -f "$WORK/cap.db"* "$WORK/catchup.db"* "$WORK/t.csv" "$WORK/single.sql"
