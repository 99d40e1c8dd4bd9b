#!/usr/bin/env bash
# Fan-in onto Citus beside plain PostgreSQL: the same backlog in SOURCES SQLite files (inserts, updates, deletes in
# transactions of ROWS_PER_TX rows) applied by one `lite2pg run --once --config` into
#  - a plain PostgreSQL (one private cluster), and
#  - a Citus cluster of 1 coordinator + 2 workers (three private clusters on this machine),
# in both layouts (a tenant schema per source with citus.enable_schema_based_sharding; shared tables distributed
# by source_id). Every server runs with the same settings (fsync off: the figures are lite2pg's and Citus's work,
# not the disk's). Prints changes/s per case. Needs Citus installed (../shared/citus/build.sh) and the server
# binaries; run as root, the servers run as nobody.
# Then the same with the daemon running while every source commits STREAM_TX single-row transactions ("live").
#     bash bench/citus.sh [SOURCES=4] [TRANSACTIONS_PER_SOURCE=1000] [ROWS_PER_TX=50] [POOL_SIZE=4] [STREAM_TX=2000]
source "$(dirname "$0")/lib.sh"
export RUST_LOG=error PGOPTIONS='-c client_min_messages=warning'
SOURCES=${1:-4} TRANSACTIONS=${2:-1000} ROWS_PER_TX=${3:-50} POOL_SIZE=${4:-4} STREAM_TX=${5:-2000}
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
AS=(); [ "$(id -u)" = 0 ] && AS=(runuser -u nobody --)
HERE=$(mktemp -d); chmod 755 "$HERE"; [ "$(id -u)" = 0 ] && chown nobody "$HERE"
NODES=()
cleanup() {
  for dir in "${NODES[@]}"; do "${AS[@]}" "$BIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true; done
  rm -rf "$HERE"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# starts a node with settings $1; prints its port
start_node() {
  local port dir; port=$(free_port); dir="$HERE/$port"
  "${AS[@]}" mkdir "$dir"
  "${AS[@]}" "$BIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
  printf '%s\nfsync = off\nmax_prepared_transactions = 100\n' "$1" | "${AS[@]}" tee -a "$dir/data/postgresql.conf" >/dev/null
  "${AS[@]}" "$BIN/pg_ctl" -D "$dir/data" -o "-p $port -k $dir -c listen_addresses=127.0.0.1" -l "$dir/log" -w start >/dev/null
  NODES+=("$dir")
  echo "$port"
}

sql() { psql -qAt "postgres://postgres@127.0.0.1:$1/$2" -c "$3" >/dev/null; }

# a fresh database $2 on the servers listed in $1 (first the coordinator); with Citus, the workers joined
fresh() {
  local ports=($1) port
  for port in "${ports[@]}"; do
    sql "$port" postgres "DROP DATABASE IF EXISTS $2 WITH (FORCE)"; sql "$port" postgres "CREATE DATABASE $2"
    [ "${#ports[@]}" -gt 1 ] && sql "$port" "$2" "CREATE EXTENSION citus"
  done
  if [ "${#ports[@]}" -gt 1 ]; then
    sql "${ports[0]}" "$2" "SELECT citus_set_coordinator_host('127.0.0.1', ${ports[0]})"
    for port in "${ports[@]:1}"; do sql "${ports[0]}" "$2" "SELECT citus_add_node('127.0.0.1', $port)"; done
  fi
}

# the source files, snapshotted into $1 with layout $2, then the backlog written; prints the changes logged
prepare() {
  rm -rf "$HERE/files"; mkdir -p "$HERE/files/tenants"
  printf 'postgres = "%s"\nsource_glob = "tenants/*.db"\npool_size = %s\nlayout = "%s"\n' "$1" "$POOL_SIZE" "$2" > "$HERE/files/lite2pg.toml"
  for i in $(seq 1 "$SOURCES"); do
    sqlite3 "$HERE/files/tenants/s$i.db" "PRAGMA journal_mode = WAL;" \
      "CREATE TABLE items(id INTEGER PRIMARY KEY, n INTEGER, note TEXT, price REAL);" >/dev/null
  done
  (cd "$HERE/files" && "$LITE2PG" run --once --config lite2pg.toml >/dev/null 2>&1)
  local total=0
  for i in $(seq 1 "$SOURCES"); do
    {
      for t in $(seq 0 $((TRANSACTIONS - 1))); do
        local first=$((t * ROWS_PER_TX))
        echo "BEGIN;"
        echo "WITH RECURSIVE r(k) AS (SELECT $first UNION ALL SELECT k + 1 FROM r WHERE k < $((first + ROWS_PER_TX - 1)))"
        echo "INSERT INTO items SELECT k, k * 7, 'note ' || k, k / 3.0 FROM r;"
        echo "UPDATE items SET n = n + 1 WHERE id % 3 = 0 AND id >= $first;"
        echo "DELETE FROM items WHERE id % 10 = 9 AND id >= $first;"
        echo "COMMIT;"
      done
    } | sqlite3 "$HERE/files/tenants/s$i.db"
    total=$((total + $(sqlite3 "$HERE/files/tenants/s$i.db" "SELECT count(*) FROM _lite2pg_changes")))
  done
  echo "$total"
}

# $1 = target name, $2 = URL, $3 = layout: applies the backlog with one `run --once` and prints changes/s
measure() {
  local changes seconds
  changes=$(prepare "$2" "$3")
  seconds=$(cd "$HERE/files" && timed "$LITE2PG" run --once --config lite2pg.toml)
  (cd "$HERE/files" && "$LITE2PG" verify --config lite2pg.toml >/dev/null 2>&1) || { echo "verify found differences" >&2; exit 1; }
  printf '%-42s %-25s %8s %8s %10s\n' "$1" "$3" "$changes" "$seconds" "$(echo "$changes / $seconds" | bc -l | xargs printf '%.0f')"
}

# $1 = target name, $2 = URL, $3 = layout: with the daemon running, every source commits STREAM_TX single-row
# transactions at once; prints changes/s from the first write until every source has applied them (small batches:
# each costs a round of statements, and on Citus a two-phase commit)
measure_stream() {
  local daemon began expected i
  TRANSACTIONS=0 prepare "$2" "$3" >/dev/null
  for i in $(seq 1 "$SOURCES"); do
    for n in $(seq 1 "$STREAM_TX"); do echo "INSERT INTO items(n, note, price) VALUES ($n, 'single', $n.5);"; done > "$HERE/files/single-$i.sql"
  done
  (cd "$HERE/files" && exec "$LITE2PG" run --config lite2pg.toml >/dev/null) & daemon=$!
  until [ "$(psql -qAt "$2" -c 'SELECT count(*) FROM lite2pg.sources WHERE applied_seq IS NOT NULL AND snapshot_seq IS NOT NULL' 2>/dev/null)" = "$SOURCES" ]; do sleep 0.1; done
  sleep 1
  # each single-row insert logs one change: the positions reach this sum once every source applied them all
  expected=$(($(psql -qAt "$2" -c 'SELECT sum(applied_seq) FROM lite2pg.sources') + SOURCES * STREAM_TX))
  began=$(now)
  local writers=()
  for i in $(seq 1 "$SOURCES"); do
    (echo ".timeout 10000"; echo "PRAGMA synchronous = OFF;"; cat "$HERE/files/single-$i.sql") | sqlite3 "$HERE/files/tenants/s$i.db" &
    writers+=($!)
  done
  wait "${writers[@]}"
  local deadline=$((SECONDS + 300))
  until [ "$(psql -qAt "$2" -c 'SELECT sum(applied_seq) FROM lite2pg.sources')" = "$expected" ]; do
    [ "$SECONDS" -lt "$deadline" ] || { echo "the sources did not catch up" >&2; exit 1; }
    sleep 0.02
  done
  local seconds; seconds=$(echo "$(now) - $began" | bc -l | xargs printf '%.2f')
  kill "$daemon"; wait "$daemon" || true
  local changes=$((SOURCES * STREAM_TX))
  printf '%-42s %-25s %8s %8s %10s\n' "$1" "$3 (live)" "$changes" "$seconds" "$(echo "$changes / $seconds" | bc -l | xargs printf '%.0f')"
}

build
plain=$(start_node "")
settings="shared_preload_libraries = 'citus'
citus.enable_schema_based_sharding = on"
coordinator=$(start_node "$settings"); worker1=$(start_node "$settings"); worker2=$(start_node "$settings")
echo "$SOURCES sources, each $TRANSACTIONS transactions of $ROWS_PER_TX inserts plus updates and deletes; pool_size $POOL_SIZE; $(nproc) cores"
printf '%-42s %-25s %8s %8s %10s\n' target layout changes seconds changes/s
plain_url="postgres://postgres@127.0.0.1:$plain/bench" citus_url="postgres://postgres@127.0.0.1:$coordinator/bench"
for how in measure measure_stream; do
  for layout in schema_per_source shared_tables; do
    fresh "$plain" bench
    "$how" "PostgreSQL $(psql -qAt "$plain_url" -c 'SHOW server_version' | cut -d' ' -f1)" "$plain_url" "$layout"
    fresh "$coordinator $worker1 $worker2" bench
    "$how" "Citus $(psql -qAt "$citus_url" -c "SELECT split_part(citus_version(), ' ', 2)") (1 coordinator + 2 workers)" "$citus_url" "$layout"
  done
done
