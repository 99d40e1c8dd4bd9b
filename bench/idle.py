"""Idle cost: the CPU share `lite2pg run --config` uses while SOURCES files receive no writes at all.

Starts one daemon over SOURCES fresh SQLite files (a schema each), waits until every source is attached, then
reads the process's CPU time (user + system) over SECONDS of idleness. Needs psycopg2 and `cargo build --release`.
    python3 bench/idle.py [SOURCES] [SECONDS] [LITE2PG_BINARY]"""
import os, signal, sqlite3, subprocess, sys, tempfile, time
import psycopg2

args = sys.argv[1:]
sources = int(args[0]) if args else 100
seconds = float(args[1]) if len(args) > 1 else 30
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
binary = args[2] if len(args) > 2 else os.path.join(root, "target/release/lite2pg")
admin = os.environ.get("LITE2PG_BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432/postgres")
url = admin.rsplit("/", 1)[0] + "/bench_idle"
conn = psycopg2.connect(admin); conn.autocommit = True
conn.cursor().execute("DROP DATABASE IF EXISTS bench_idle WITH (FORCE)"); conn.cursor().execute("CREATE DATABASE bench_idle")
work = tempfile.mkdtemp()
os.mkdir(os.path.join(work, "tenants"))
for i in range(sources):
    db = sqlite3.connect(os.path.join(work, "tenants", f"s{i:03}.db"), isolation_level=None)
    db.executescript("PRAGMA journal_mode=WAL; CREATE TABLE events(id INTEGER PRIMARY KEY, payload TEXT);")
    db.close()
config = os.path.join(work, "idle.toml")
with open(config, "w") as f:
    f.write(f'postgres = "{url}"\npool_size = 4\nsource_glob = "tenants/*.db"\n')
daemon = subprocess.Popen([binary, "run", "--config", config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          env={**os.environ, "RUST_LOG": "warn"})
pg = psycopg2.connect(url); pg.autocommit = True
cur = pg.cursor()
while daemon.poll() is None:
    try:
        cur.execute("SELECT count(*) FROM lite2pg.sources WHERE snapshot_seq IS NOT NULL")
        if cur.fetchone()[0] == sources:
            break
    except psycopg2.Error:
        pass
    time.sleep(0.1)
else:
    sys.exit("lite2pg run exited")
time.sleep(5)  # past the first looks and prunes


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


before, started = cpu_seconds(daemon.pid), time.monotonic()
time.sleep(seconds)
used, elapsed = cpu_seconds(daemon.pid) - before, time.monotonic() - started
daemon.send_signal(signal.SIGTERM); daemon.wait()
pg.close()
conn.cursor().execute("DROP DATABASE IF EXISTS bench_idle WITH (FORCE)")
print(f"{sources} idle sources for {elapsed:.0f} s: {100 * used / elapsed:.2f}% of one core")
