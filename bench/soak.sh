#!/usr/bin/env bash
# Soak: two writer processes per SQLite file for MINUTES while lite2pg is SIGKILLed every few seconds and its own
# local PostgreSQL is restarted every 30 s; then a full value-by-value comparison. Prints kills survived, restarts,
# rows compared, differences (must be 0) and lite2pg's memory high-water mark per minute (must stay flat). With
# SOURCES > 1, one `lite2pg run --config` syncs that many files (fan-in). Not run by CI.
#   bench/soak.sh [MINUTES] [SOURCES]
source "$(dirname "$0")/lib.sh"
MINUTES=${1:-5}
SOURCES=${2:-1}
build
export LITE2PG_DATA_DIR="$WORK/soak-data"
rm -rf "$LITE2PG_DATA_DIR" && mkdir -p "$LITE2PG_DATA_DIR" && chmod 755 "$WORK" "$LITE2PG_DATA_DIR"
rm -rf "$WORK/soak" && mkdir -p "$WORK/soak"
url=$("$LITE2PG" local start 2>/dev/null)
WRITER="$ROOT/target/release/examples/writer"
writers=()
for n in $(seq "$SOURCES"); do
  db="$WORK/soak/s$n.db"
  sqlite3 "$db" "PRAGMA journal_mode=WAL;" < "$ROOT/examples/writer_schema.sql" >/dev/null
  "$WRITER" "$db" $((2 * n)) 100000000 & writers+=($!)
  "$WRITER" "$db" $((2 * n + 1)) 100000000 & writers+=($!)
done
trap 'kill ${writers[*]} $daemon 2>/dev/null || true; "$LITE2PG" local stop >/dev/null || true' EXIT
if [ "$SOURCES" = 1 ]; then
  sync_args=(--sqlite "$WORK/soak/s1.db" --postgres "$url")
else
  printf 'postgres = "%s"\nsource_glob = "soak/*.db"\n' "$url" > "$WORK/soak.toml"
  sync_args=(--config "$WORK/soak.toml")
fi

start_daemon() { RUST_LOG=error "$LITE2PG" run "${sync_args[@]}" >/dev/null & daemon=$!; }
start_daemon
kills=0; restarts=0; end=$(( $(date +%s) + MINUTES * 60 )); next_restart=$(( $(date +%s) + 30 ))
declare -A rss_max
while [ "$(date +%s)" -lt "$end" ]; do
  for _ in $(seq $(( 2 + RANDOM % 6 ))); do
    rss=$(ps -o rss= -p "$daemon" 2>/dev/null | tr -d ' '); minute=$(( (end - $(date +%s)) / 60 ))
    [ -n "$rss" ] && [ "$rss" -gt "${rss_max[$minute]:-0}" ] && rss_max[$minute]=$rss
    sleep 1
  done
  kill -9 "$daemon" 2>/dev/null; wait "$daemon" 2>/dev/null || true; kills=$((kills + 1))
  if [ "$(date +%s)" -ge "$next_restart" ]; then
    "$LITE2PG" local stop >/dev/null; sleep 1; "$LITE2PG" local start >/dev/null 2>&1
    restarts=$((restarts + 1)); next_restart=$(( $(date +%s) + 30 ))
  fi
  start_daemon
done
kill "${writers[@]}"; wait "${writers[@]}" 2>/dev/null || true
kill -TERM "$daemon"; wait "$daemon" 2>/dev/null || true
RUST_LOG=error "$LITE2PG" run --once "${sync_args[@]}" >/dev/null
# one report, or an array of them (one per source): the same sums either way
"$LITE2PG" verify "${sync_args[@]}" --json | jq -s 'flatten' > "$WORK/soak-verify.json" || true
rows=$(jq '[.[].tables[].sqlite_rows] | add' "$WORK/soak-verify.json")
diffs=$(jq '[.[].tables[] | .missing + .extra + .differing] | add' "$WORK/soak-verify.json")
echo "soak of $MINUTES min, $SOURCES source(s): $kills SIGKILLs of lite2pg survived, $restarts PostgreSQL restarts"
echo "rows compared: $rows, differences: $diffs"
echo -n "lite2pg peak RSS per minute (MB, first to last):"
for m in $(printf '%s\n' "${!rss_max[@]}" | sort -rn); do echo -n " $(( rss_max[$m] / 1024 ))"; done; echo
[ "$diffs" = 0 ]
