"""Fan-in: many small SQLite files streamed into one PostgreSQL by one `lite2pg run --config` process.

  1. steady writes: SOURCES files, each committing single-row transactions at RATE/s for SECONDS; reports the
     aggregate changes/s applied, commit-to-visible latency per source (p50, p99; the worst source's p99), and the
     daemon's memory per source;
  2. catch-up: a BACKLOG-row transaction committed to one file while the daemon runs, applied once with the other
     files idle beside it and once with that file alone; reports both rates and their ratio.

Latency is measured in PostgreSQL: each row carries its SQLite commit time, and a column added to the copy
(`seen_at DEFAULT clock_timestamp()`) records when lite2pg inserted it. Needs psycopg2 (pip install psycopg2-binary) and `cargo build --release`.
    python3 bench/fanin.py [SOURCES] [RATE_PER_SOURCE] [SECONDS] [BACKLOG] [POOL_SIZE]
FANIN_LAYOUT=shared_tables measures the shared-tables layout (default: a schema per source)."""
import os, signal, sqlite3, subprocess, sys, tempfile, threading, time
import psycopg2

args = [int(a) for a in sys.argv[1:]]
sources, rate, seconds, backlog, pool_size = (args + [100, 10, 30, 100000, 4][len(args):])[:5]
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
admin = os.environ.get("LITE2PG_BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432/postgres")
url = admin.rsplit("/", 1)[0] + "/bench_fanin"
conn = psycopg2.connect(admin); conn.autocommit = True
conn.cursor().execute("DROP DATABASE IF EXISTS bench_fanin WITH (FORCE)"); conn.cursor().execute("CREATE DATABASE bench_fanin")
work = tempfile.mkdtemp()
os.mkdir(os.path.join(work, "tenants"))
ids = [f"s{i:03}" for i in range(sources)]
paths = {i: os.path.join(work, "tenants", f"{i}.db") for i in ids}
for path in paths.values():
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript("PRAGMA journal_mode=WAL; CREATE TABLE events(id INTEGER PRIMARY KEY, written_ms INTEGER, payload TEXT);")
    db.close()


shared = os.environ.get("FANIN_LAYOUT") == "shared_tables"


def config(name, body):
    path = os.path.join(work, name)
    with open(path, "w") as f:
        f.write(f'postgres = "{url}"\npool_size = {pool_size}\nlayout = "{"shared_tables" if shared else "schema_per_source"}"\n{body}')
    return path


def events_of(source):
    """The events table holding `source`'s rows, and the condition that picks them."""
    return ('public.events', f"source_id = '{source}'") if shared else (f'"{source}".events', "true")


every = config("fleet.toml", 'source_glob = "tenants/*.db"\n')
alone = config("alone.toml", f'[[source]]\nsqlite = "tenants/{ids[0]}.db"\n')


def start(config_path):
    return subprocess.Popen([os.path.join(root, "target/release/lite2pg"), "run", "--config", config_path],
                            stdout=subprocess.DEVNULL, stderr=open(os.environ.get("FANIN_DAEMON_LOG", os.devnull), "a"),
                            env={**os.environ, "RUST_LOG": "warn"})


def stop(daemon):
    daemon.send_signal(signal.SIGTERM); daemon.wait()


pg = psycopg2.connect(url); pg.autocommit = True
cur = pg.cursor()


def wait_caught_up(only=None, timeout=600):
    """Waits until every source (or `only`) applied everything its file logged; returns when that happened."""
    deadline = time.monotonic() + timeout
    wanted = only or ids
    newest = {}
    for i in wanted:
        db = sqlite3.connect(paths[i])
        newest[i] = db.execute("SELECT coalesce(max(seq), 0) FROM _lite2pg_changes").fetchone()[0]
        db.close()
    while time.monotonic() < deadline:
        try:
            cur.execute("SELECT source_id, applied_seq FROM lite2pg.sources WHERE snapshot_seq IS NOT NULL AND source_id = ANY(%s)", (wanted,))
            applied = dict(cur.fetchall())
            if all(applied.get(i, -1) >= newest[i] for i in wanted):
                return time.monotonic()
        except psycopg2.Error:
            pass
        time.sleep(0.02)
    sys.exit("the sources did not catch up")


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])


# 1. steady writes
daemon = start(every)
while daemon.poll() is None:
    try:
        cur.execute("SELECT count(*) FROM lite2pg.sources WHERE snapshot_seq IS NOT NULL")
        if cur.fetchone()[0] == sources:
            break
    except psycopg2.Error:
        pass
    time.sleep(0.1)
else:
    sys.exit("lite2pg run exited; set FANIN_DAEMON_LOG=/some/file to see why")
# One applied change per source shows its stream is attached (attaching follows SQLite's columns).
for path in paths.values():
    db = sqlite3.connect(path, isolation_level=None); db.execute("INSERT INTO events(payload) VALUES ('warm-up')"); db.close()
wait_caught_up()
for i in ids[:1] if shared else ids:
    cur.execute(f'ALTER TABLE {events_of(i)[0]} ADD COLUMN seen_at timestamptz DEFAULT clock_timestamp()')
memory = []


def write(share):
    conns = {i: sqlite3.connect(paths[i], isolation_level=None) for i in share}
    began = time.monotonic()
    for n in range(rate * seconds):
        time.sleep(max(0, began + n / rate - time.monotonic()))
        for db in conns.values():
            db.execute("INSERT INTO events(written_ms, payload) VALUES (?, 'steady')", (int(time.time() * 1000),))


writers = [threading.Thread(target=write, args=(ids[k::4],)) for k in range(4)]
began = time.monotonic()
for w in writers:
    w.start()
while any(w.is_alive() for w in writers):
    memory.append(rss_kib(daemon.pid)); time.sleep(1)
for w in writers:
    w.join()
written = time.monotonic() - began
caught_up = wait_caught_up() - began
rows = sources * rate * seconds
latencies = []
for i in ids:
    table, own = events_of(i)
    cur.execute(f"""SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY extract(epoch FROM seen_at) * 1000 - written_ms)
                    FROM {table} WHERE payload = 'steady' AND {own}""")
    latencies.append(cur.fetchone()[0])
p50s, p99s = sorted(l[0] for l in latencies), sorted(l[1] for l in latencies)
stop(daemon)
print(f"{sources} sources x {rate} single-row transactions/s for {seconds}s, pool_size {pool_size}, {'shared tables' if shared else 'a schema per source'}:")
print(f"  applied {rows} changes in {caught_up:.1f}s of writing {written:.1f}s: {rows / caught_up:.0f} changes/s (offered {sources * rate}/s)")
print(f"  commit-to-visible per source: median p50 {p50s[len(p50s) // 2]:.1f} ms, median p99 {p99s[len(p99s) // 2]:.1f} ms, worst p99 {p99s[-1]:.1f} ms")
print(f"  daemon RSS {max(memory) / 1024:.1f} MiB peak = {max(memory) / sources:.0f} KiB per source")


# 2. catch-up of one source, the daemon running and caught up: beside idle ones, then alone
def catch_up(config_path, sources_in_config):
    daemon = start(config_path)
    wait_caught_up(sources_in_config)
    time.sleep(1)
    db = sqlite3.connect(paths[ids[0]], isolation_level=None)
    db.execute("BEGIN")
    db.executemany("INSERT INTO events(written_ms, payload) VALUES (?, 'backlog')", ((n,) for n in range(backlog)))
    db.execute("COMMIT"); db.close()
    committed = time.monotonic()
    rate = backlog / (wait_caught_up([ids[0]]) - committed)
    stop(daemon)
    return rate


beside = catch_up(every, ids)
solo = catch_up(alone, [ids[0]])
print(f"catch-up of a {backlog}-row transaction in one source, from its commit, the daemon running:")
print(f"  with {sources - 1} idle sources beside it: {beside:.0f} changes/s; alone: {solo:.0f} changes/s; ratio {beside / solo:.2f}")
pg.close()
conn.cursor().execute("DROP DATABASE IF EXISTS bench_fanin WITH (FORCE)")
