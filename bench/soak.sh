#!/usr/bin/env bash
# Soak: two writer processes per SQLite file for MINUTES while lite2pg is SIGKILLed every few seconds, its own
# local PostgreSQL is restarted every 30 s and every few seconds the files get maintenance or a migration (VACUUM,
# a migration tool's table rebuild adding or removing a column and a UNIQUE, CREATE/DROP INDEX, ADD/DROP COLUMN);
# then a full value-by-value comparison. Prints kills survived, restarts,
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

# One maintenance step on every file, the Nth of a cycle: what applications and their migration tools do.
ACCOUNTS='id INTEGER PRIMARY KEY, email TEXT UNIQUE, balance REAL NOT NULL DEFAULT 0, photo BLOB'
maintain() {
  local sql
  case $(( $1 % 6 )) in
    0) sql="VACUUM;"; vacuums=$((vacuums + 1)) ;;
    1) sql="PRAGMA foreign_keys=OFF; BEGIN; CREATE TABLE new__accounts($ACCOUNTS, tier TEXT NOT NULL DEFAULT 'basic');
            INSERT INTO new__accounts(id, email, balance, photo) SELECT id, email, balance, photo FROM accounts;
            DROP TABLE accounts; ALTER TABLE new__accounts RENAME TO accounts; COMMIT;" ;;
    2) sql="CREATE INDEX IF NOT EXISTS events_kind ON events(kind); ALTER TABLE events ADD COLUMN seen INTEGER;" ;;
    3) sql="PRAGMA foreign_keys=OFF; BEGIN; CREATE TABLE new__accounts(${ACCOUNTS/ UNIQUE/});
            INSERT INTO new__accounts SELECT id, email, balance, photo FROM accounts;
            DROP TABLE accounts; ALTER TABLE new__accounts RENAME TO accounts; COMMIT;" ;;
    4) sql="DROP INDEX IF EXISTS events_kind; ALTER TABLE events DROP COLUMN seen; VACUUM;"; vacuums=$((vacuums + 1)) ;;
    5) sql="PRAGMA foreign_keys=OFF; BEGIN; DELETE FROM accounts WHERE rowid NOT IN (SELECT min(rowid) FROM accounts GROUP BY email);
            CREATE TABLE new__accounts($ACCOUNTS); INSERT INTO new__accounts SELECT id, email, balance, photo FROM accounts;
            DROP TABLE accounts; ALTER TABLE new__accounts RENAME TO accounts; COMMIT;" ;;
  esac
  for db in "$WORK"/soak/*.db; do sqlite3 -cmd ".timeout 30000" "$db" "$sql" >/dev/null; done
}

start_daemon() { RUST_LOG=error "$LITE2PG" run "${sync_args[@]}" >/dev/null 2>>"$WORK/soak-daemon.log" & daemon=$!; }
: > "$WORK/soak-daemon.log"
start_daemon
kills=0; restarts=0; steps=0; vacuums=0; end=$(( $(date +%s) + MINUTES * 60 )); next_restart=$(( $(date +%s) + 30 ))
declare -A rss_max
while [ "$(date +%s)" -lt "$end" ]; do
  for _ in $(seq $(( 2 + RANDOM % 6 ))); do
    rss=$(ps -o rss= -p "$daemon" 2>/dev/null | tr -d ' '); minute=$(( (end - $(date +%s)) / 60 ))
    [ -n "$rss" ] && [ "$rss" -gt "${rss_max[$minute]:-0}" ] && rss_max[$minute]=$rss
    sleep 1
  done
  maintain "$steps"; steps=$((steps + 1))
  # A daemon never stops by itself: one that did is a failure of the soak.
  if ! kill -9 "$daemon" 2>/dev/null; then echo "lite2pg run exited by itself:"; tail -n 5 "$WORK/soak-daemon.log"; exit 1; fi
  wait "$daemon" 2>/dev/null || true; kills=$((kills + 1))
  if [ "$(date +%s)" -ge "$next_restart" ]; then
    "$LITE2PG" local stop >/dev/null; sleep 1; "$LITE2PG" local start >/dev/null 2>&1
    restarts=$((restarts + 1)); next_restart=$(( $(date +%s) + 30 ))
  fi
  start_daemon
done
kill "${writers[@]}"; wait "${writers[@]}" 2>/dev/null || true
kill -TERM "$daemon"; wait "$daemon" 2>/dev/null || true
if ! RUST_LOG=info "$LITE2PG" run --once "${sync_args[@]}" >/dev/null 2>"$WORK/soak-final.log"; then
  echo "the final run --once failed:"; grep -v NOTICE "$WORK/soak-final.log" | tail -n 20; exit 1
fi
# one report, or an array of them (one per source): the same sums either way
"$LITE2PG" verify "${sync_args[@]}" --json | jq -s 'flatten' > "$WORK/soak-verify.json" || true
rows=$(jq '[.[].tables[].sqlite_rows] | add' "$WORK/soak-verify.json")
diffs=$(jq '[.[].tables[] | .missing + .extra + .differing] | add' "$WORK/soak-verify.json")
echo "soak of $MINUTES min, $SOURCES source(s): $kills SIGKILLs of lite2pg survived, $restarts PostgreSQL restarts, $steps maintenance steps and migrations ($vacuums VACUUMs)"
echo "rows compared: $rows, differences: $diffs"
echo -n "lite2pg peak RSS per minute (MB, first to last):"
for m in $(printf '%s\n' "${!rss_max[@]}" | sort -rn); do echo -n " $(( rss_max[$m] / 1024 ))"; done; echo
[ "$diffs" = 0 ]
