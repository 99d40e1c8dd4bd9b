#!/usr/bin/env bash
# Verify benchmark: `lite2pg verify` of an equal 1M-row copy, and of one with 100 drifted rows, beside the raw limit
# of reading both sides once (sqlite3 reading every row + PostgreSQL binary COPY out, to /dev/null), in one run.
#   bench/verify.sh [ROWS]
source "$(dirname "$0")/lib.sh"
ROWS=${1:-1000000}
build
DB=$(bench_db "$ROWS")
cp "$DB" "$WORK/verify.db"
url=$(fresh_db bench_verify)
"$LITE2PG" snapshot --sqlite "$WORK/verify.db" --postgres "$url" --json >/dev/null
verify_equal_s=$(timed "$LITE2PG" verify --sqlite "$WORK/verify.db" --postgres "$url")
psql -q "$url" -c "UPDATE bench SET note = 'drift' WHERE id % 10000 = 0"
verify_drift_s=$(timed bash -c "'$LITE2PG' verify --sqlite '$WORK/verify.db' --postgres '$url' || true")
sqlite_s=$(timed sqlite3 "$DB" "SELECT * FROM bench" -cmd ".output /dev/null")
copy_s=$(timed psql -q "$url" -c "COPY bench TO STDOUT (FORMAT binary)")
raw_s=$(echo "$sqlite_s + $copy_s" | bc -l | xargs printf '%.2f')
echo "verify of $ROWS rows, $(nproc) cores"
printf '%-34s %8s  %s\n' "lite2pg verify (equal)" "$verify_equal_s" "$(echo "$ROWS / $verify_equal_s" | bc) rows/s"
printf '%-34s %8s\n' "lite2pg verify (100 rows drifted)" "$verify_drift_s"
printf '%-34s %8s  (sqlite3 read %s + COPY out %s)\n' "raw limit (read both sides)" "$raw_s" "$sqlite_s" "$copy_s"
echo "lite2pg verify / raw limit: $(ratio "$verify_equal_s" "$raw_s")"
drop_db bench_verify
rm -f "$WORK/verify.db"*
