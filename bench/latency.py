"""Commit-to-visible latency: single-row transactions at a steady rate into SQLite while `lite2pg run` streams;
a poller sees each row arrive in PostgreSQL. Needs psycopg2 (pip install psycopg2-binary).
    python3 bench/latency.py [RATE_PER_S] [SECONDS]    (LITE2PG_BINARY=path measures another build)"""
import os, sqlite3, subprocess, sys, tempfile, threading, time
import psycopg2

rate, seconds = (int(sys.argv[1]) if len(sys.argv) > 1 else 200), (int(sys.argv[2]) if len(sys.argv) > 2 else 20)
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
admin = os.environ.get("LITE2PG_BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432/postgres")
url = admin.rsplit("/", 1)[0] + "/bench_latency"
conn = psycopg2.connect(admin); conn.autocommit = True
conn.cursor().execute("DROP DATABASE IF EXISTS bench_latency WITH (FORCE)"); conn.cursor().execute("CREATE DATABASE bench_latency")
path = os.path.join(tempfile.mkdtemp(), "app.db")
db = sqlite3.connect(path, isolation_level=None)
db.executescript("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);")
daemon = subprocess.Popen([os.environ.get("LITE2PG_BINARY", os.path.join(root, "target/release/lite2pg")), "run", "--sqlite", path, "--postgres", url],
                          stdout=subprocess.DEVNULL, stderr=open(os.environ.get("LATENCY_DAEMON_LOG", os.devnull), "w"))
pg = psycopg2.connect(url); pg.autocommit = True
while True:
    try:
        pg.cursor().execute("SELECT 1 FROM t LIMIT 1"); break
    except Exception:
        time.sleep(0.05)
committed, seen, done = {}, {}, threading.Event()
cpu_before = open(f"/proc/{daemon.pid}/stat").read().split()[13:15]

def poll():
    cur, last = pg.cursor(), 0
    while not done.is_set() or last < len(committed):
        cur.execute("SELECT coalesce(max(id), 0) FROM t")
        top = cur.fetchone()[0]
        now = time.monotonic()
        for i in range(last + 1, top + 1):
            seen[i] = now
        last = max(last, top)
        time.sleep(0.0005)

poller = threading.Thread(target=poll); poller.start()
start = time.monotonic()
for i in range(1, rate * seconds + 1):
    time.sleep(max(0, start + i / rate - time.monotonic()))
    db.execute("INSERT INTO t VALUES (?, 'x')", (i,))
    committed[i] = time.monotonic()
done.set(); poller.join(timeout=30)
lat = sorted((seen[i] - committed[i]) * 1000 for i in committed if i in seen)
daemon.terminate(); daemon.wait()
p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
print(f"{len(lat)} single-row transactions at {rate}/s: commit-to-visible p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms, max {lat[-1]:.1f} ms")
conn.cursor().execute("DROP DATABASE IF EXISTS bench_latency WITH (FORCE)")
