#!/usr/bin/env bash
# Snapshot benchmark: a 1M-row, 10-column table (ints, text, real, blob, datetime text) copied by lite2pg, by
# pgloader, and by the raw limit (sqlite3 CSV export, then server-side COPY FROM the file), in one run.
#   bench/snapshot.sh [ROWS]
source "$(dirname "$0")/lib.sh"
ROWS=${1:-1000000}
build
DB=$(bench_db "$ROWS")
size=$(du -m "$DB" | cut -f1)
# Capture is installed by lite2pg snapshot; run it on a copy so every tool reads the same file.
cp "$DB" "$WORK/lite2pg.db"

url=$(fresh_db bench_lite2pg)
/usr/bin/time -f "%M" -o "$WORK/rss" "$LITE2PG" snapshot --sqlite "$WORK/lite2pg.db" --postgres "$url" --json > "$WORK/lite2pg.json"
lite2pg_s=$(jq .seconds "$WORK/lite2pg.json" | xargs printf '%.2f')
lite2pg_rss=$(( $(cat "$WORK/rss") / 1024 ))

url=$(fresh_db bench_raw)
psql -q "$url" -c "CREATE TABLE bench(id bigint, account bigint, big bigint, price float8, ratio float8, name text, note text, payload text, created timestamp, flag bigint)"
export_s=$(timed sqlite3 -csv "$DB" "SELECT id, account, big, price, ratio, name, note, hex(payload), created, flag FROM bench" -cmd ".output $WORK/bench.csv")
copy_s=$(timed psql -q "$url" -c "COPY bench FROM '$WORK/bench.csv' (FORMAT csv)")
raw_s=$(echo "$export_s + $copy_s" | bc -l | xargs printf '%.2f')

pgloader_s=skipped
if command -v pgloader >/dev/null; then
  url=$(fresh_db bench_pgloader)
  # pgloader has been seen to hang on this machine after loading; bound it.
  pgloader_s=$(timed timeout 180 pgloader --quiet "sqlite://$DB" "$url" || echo "failed/timeout")
fi

echo "snapshot of $ROWS rows ($size MB SQLite file), $(nproc) cores"
printf '%-28s %8s\n' "tool" "seconds"
printf '%-28s %8s  (peak RSS %s MB)\n' "lite2pg snapshot" "$lite2pg_s" "$lite2pg_rss"
printf '%-28s %8s  (export %s + COPY %s)\n' "raw limit (sqlite3 + COPY)" "$raw_s" "$export_s" "$copy_s"
printf '%-28s %8s\n' "pgloader" "$pgloader_s"
echo "lite2pg / raw limit: $(ratio "$lite2pg_s" "$raw_s")"
[ "$pgloader_s" != skipped ] && echo "lite2pg / pgloader:  $(ratio "$lite2pg_s" "$pgloader_s")"
drop_db bench_lite2pg; drop_db bench_raw; drop_db bench_pgloader
rm -f "$WORK/bench.csv" "$WORK/lite2pg.db"*
