//! `lite2pg bench`: measures lite2pg on this machine against the user's PostgreSQL, each measure beside its raw
//! limit taken in the same run, on a synthetic database in a temporary directory and scratch schemas that are
//! removed afterwards (also when interrupted).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, TryStreamExt};
use rusqlite::Connection;
use serde::Serialize;
use tokio::sync::Notify;

use crate::error::{Error, ErrorKind, Result};
use crate::ident::{qualified, quote};
use crate::metrics::Metrics;
use crate::options::{SnapshotOptions, SourceOptions};
use crate::pg::PgTarget;
use crate::snapshot::snapshot;
use crate::source::{Selection, Source};
use crate::stream::StopWhen;

/// Single-row transactions for the latency measure.
const SINGLE_ROW_TRANSACTIONS: u64 = 1000;
/// Single-row transactions for the capture measures, as many as issue 18's table: enough commits that the
/// trigger's share stands out of the fsyncs' noise.
const CAPTURE_SINGLE_ROW_TRANSACTIONS: u64 = 5000;
/// Rate of the latency measure.
const LATENCY_TX_PER_SECOND: u64 = 200;

/// A part of the benchmark, to run only some (`bench --only`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// The snapshot and the verify of its copy (verify needs the copy).
    #[value(alias = "verify")]
    Snapshot,
    /// Capture overhead on the application's writes.
    Capture,
    /// Catch-up of a backlog.
    CatchUp,
    /// Commit-to-visible latency.
    Latency,
}

/// One line of the result table.
#[derive(Debug, Clone, Serialize)]
pub struct Measure {
    pub measure: String,
    pub unit: &'static str,
    pub lite2pg: f64,
    /// The same work done the plainest way, in the same run.
    pub raw_limit: f64,
    /// How many times the raw limit's cost lite2pg's costs (times: lite2pg / raw; rates: raw / lite2pg), so
    /// above 1 is always slower than the limit.
    pub ratio: f64,
    pub raw_limit_is: String,
}

impl Measure {
    fn new(
        measure: impl Into<String>,
        unit: &'static str,
        lite2pg: f64,
        raw_limit: f64,
        raw_limit_is: impl Into<String>,
    ) -> Measure {
        let is_rate = unit.ends_with("/s");
        let ratio = if is_rate { raw_limit / lite2pg } else { lite2pg / raw_limit };
        Measure { measure: measure.into(), unit, lite2pg, raw_limit, ratio, raw_limit_is: raw_limit_is.into() }
    }
}

/// What `bench` measured, with where.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub rows: u64,
    pub cores: usize,
    pub memory_gib: f64,
    pub postgres_version: String,
    pub measures: Vec<Measure>,
}

/// The scratch places of one run.
struct Scratch {
    dir: PathBuf,
    target: PgTarget,
    schema: String,
    raw_schema: String,
    source_id: String,
}

/// Runs the measures of `parts` (every one when empty) with `rows` rows; `progress` receives a line per step.
pub async fn bench(target: &PgTarget, rows: u64, parts: &[Part], progress: impl Fn(&str)) -> Result<BenchReport> {
    let tag = format!("{}_{}", std::process::id(), Instant::now().elapsed().subsec_nanos());
    let scratch = Scratch {
        dir: std::env::temp_dir().join(format!("lite2pg-bench-{tag}")),
        target: target.clone(),
        schema: format!("lite2pg_bench_{tag}"),
        raw_schema: format!("lite2pg_bench_raw_{tag}"),
        source_id: format!("bench-{tag}"),
    };
    std::fs::create_dir_all(&scratch.dir)
        .map_err(|err| Error::new(ErrorKind::Usage, format!("cannot create {}: {err}", scratch.dir.display())))?;
    let interrupted = tokio::signal::ctrl_c();
    let result = tokio::select! {
        result = measure_all(&scratch, rows, parts, &progress) => result,
        _ = interrupted => Err(Error::new(ErrorKind::Usage, "interrupted; scratch data removed")),
    };
    scratch.clean_up().await;
    result
}

impl Scratch {
    fn options(&self, sqlite: &Path, schema: &str, source_id: &str) -> SnapshotOptions {
        SnapshotOptions {
            source: SourceOptions {
                sqlite: sqlite.to_path_buf(),
                target: self.target.clone(),
                schema: schema.to_string(),
                selection: Selection::default(),
                source_id: Some(source_id.to_string()),
                policies: Default::default(),
            },
            replace: true,
            jobs: 2,
            progress: false,
        }
    }

    async fn clean_up(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let Ok(client) = self.target.connect().await else { return };
        for schema in [&self.schema, &self.raw_schema] {
            let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", quote(schema))).await;
        }
        let _ = crate::pg::state::forget_sources_with_prefix(&client, &self.source_id).await;
    }
}

async fn measure_all(scratch: &Scratch, rows: u64, parts: &[Part], progress: &impl Fn(&str)) -> Result<BenchReport> {
    let client = scratch.target.connect().await?;
    let (_, postgres_version) = crate::pg::state::server_version(&client).await?;
    let runs = |part| parts.is_empty() || parts.contains(&part);
    let mut measures = Vec::new();
    if runs(Part::Snapshot) {
        progress(&format!("making a {rows}-row SQLite database"));
        let sqlite = scratch.dir.join("bench.db");
        make_bench_database(&sqlite, rows)?;
        progress("snapshot: lite2pg, then the raw limit");
        measures.extend(measure_snapshot_and_verify(scratch, &sqlite, rows).await?);
    }
    if runs(Part::Capture) {
        progress("capture overhead on the application's writes");
        measures.extend(measure_capture(&scratch.dir, rows)?);
    }
    if runs(Part::CatchUp) {
        progress("catch-up of a backlog");
        measures.extend(measure_catch_up(scratch, rows).await?);
    }
    if runs(Part::Latency) {
        progress("commit-to-visible latency");
        measures.extend(measure_latency(scratch).await?);
    }
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next()?.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / (1024.0 * 1024.0));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Ok(BenchReport { rows, cores, memory_gib, postgres_version, measures })
}

/// The benchmark table's columns: integers, reals, text, a blob and datetime text.
const WIDE_COLUMNS: &str = "(id INTEGER PRIMARY KEY, account INTEGER NOT NULL, big INTEGER, price REAL, ratio REAL, \
                            name TEXT NOT NULL, note TEXT, payload BLOB, created DATETIME, flag INTEGER)";

/// Inserts rows 1 to `rows` into a table of `WIDE_COLUMNS`.
fn insert_wide_rows(table: &str, rows: u64) -> String {
    format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
         INSERT INTO {table} SELECT i, abs(random()) % 100000, random(), (abs(random()) % 1000000) / 100.0, random() / 3.0,
                'name-' || hex(randomblob(6)), hex(randomblob(30)), randomblob(48), datetime(1600000000 + i, 'unixepoch'), i % 2
         FROM n;"
    )
}

/// The benchmark table: 10 columns.
fn make_bench_database(path: &Path, rows: u64) -> Result<()> {
    let conn = Connection::open(path)?;
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; CREATE TABLE bench{WIDE_COLUMNS}; {}",
        insert_wide_rows("bench", rows)
    ))?;
    Ok(())
}

fn seconds_of<T>(work: impl FnOnce() -> Result<T>) -> Result<f64> {
    let started = Instant::now();
    work()?;
    Ok(started.elapsed().as_secs_f64())
}

/// Reads every value of a table, as a plain scan would.
fn scan_all(path: &Path, table: &str) -> Result<u64> {
    let conn = Connection::open(path)?;
    let mut stmt = conn.prepare(&format!("SELECT * FROM {}", quote(table)))?;
    let columns = stmt.column_count();
    let mut rows = stmt.query([])?;
    let mut bytes = 0u64;
    while let Some(row) = rows.next()? {
        for i in 0..columns {
            bytes += crate::mapping::types::SqlValue::from_ref(row.get_ref(i)?).raw_bytes().len() as u64;
        }
    }
    Ok(bytes)
}

async fn measure_snapshot_and_verify(scratch: &Scratch, sqlite: &Path, rows: u64) -> Result<Vec<Measure>> {
    let options = scratch.options(sqlite, &scratch.schema, &scratch.source_id);
    let copied = snapshot(&options).await?.seconds;
    let client = scratch.target.connect().await?;
    let copy_in = plain_copy(&client, scratch, "bench", Keyed::No).await?;
    let scan = seconds_of(|| scan_all(sqlite, "bench"))?;
    let both_at_once = scan_and_copy_out(&client, scratch, sqlite, "bench").await?;
    let verified = crate::verify::verify(&options.source).await?;
    if !verified.is_equal() {
        return Err(Error::new(ErrorKind::State, "the benchmark copy did not verify equal").with_hint("report this as a bug"));
    }
    Ok(vec![
        Measure::new(
            format!("snapshot of {rows} rows"),
            "s",
            copied,
            scan + copy_in,
            "SQLite scan + binary COPY in, one after the other",
        ),
        Measure::new(
            format!("verify of the equal {rows}-row copy"),
            "s",
            verified.seconds,
            both_at_once,
            "SQLite scan and binary COPY out, both at once, no comparing",
        ),
    ])
}

/// The time to scan `table` in SQLite while PostgreSQL sends it by binary COPY out, as verify reads both sides.
async fn scan_and_copy_out(client: &tokio_postgres::Client, scratch: &Scratch, sqlite: &Path, table: &str) -> Result<f64> {
    let started = Instant::now();
    let scanning = {
        let (sqlite, table) = (sqlite.to_path_buf(), table.to_string());
        tokio::task::spawn_blocking(move || scan_all(&sqlite, &table))
    };
    copy_out(client, &qualified(&scratch.schema, table)).await?;
    scanning.await.expect("the SQLite scan does not panic")?;
    Ok(started.elapsed().as_secs_f64())
}

/// All of `table` in PostgreSQL's binary COPY form.
async fn copy_out(client: &tokio_postgres::Client, table: &str) -> Result<Bytes> {
    Ok(client
        .copy_out(format!("COPY {table} TO STDOUT (FORMAT binary)").as_str())
        .await?
        .try_fold(BytesMut::new(), |mut acc, chunk| async move {
            acc.extend_from_slice(&chunk);
            Ok(acc)
        })
        .await?
        .freeze())
}

/// Whether the raw limit's table has the primary key (and the other indexes) of the table it copies.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Keyed {
    No,
    Yes,
}

/// Copies `table` from the bench schema to a new table in the raw schema by binary COPY out, then in; returns the
/// time of COPY in.
async fn plain_copy(client: &tokio_postgres::Client, scratch: &Scratch, table: &str, keyed: Keyed) -> Result<f64> {
    let (including, raw_name) = match keyed {
        Keyed::No => ("INCLUDING DEFAULTS", table.to_string()),
        Keyed::Yes => ("INCLUDING DEFAULTS INCLUDING INDEXES", format!("{table}_keyed")),
    };
    let (source, raw_table) = (qualified(&scratch.schema, table), qualified(&scratch.raw_schema, &raw_name));
    let data = copy_out(client, &source).await?;
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {}; CREATE TABLE {raw_table} (LIKE {source} {including})",
            quote(&scratch.raw_schema)
        ))
        .await?;
    let started = Instant::now();
    let sink = client.copy_in::<_, Bytes>(format!("COPY {raw_table} FROM STDIN (FORMAT binary)").as_str()).await?;
    futures_util::pin_mut!(sink);
    sink.send(data).await?;
    sink.as_mut().finish().await?;
    Ok(started.elapsed().as_secs_f64())
}

/// The narrow table of the capture and catch-up measures.
const NARROW_TABLE: &str = "CREATE TABLE t(id INTEGER PRIMARY KEY, a INTEGER, b TEXT, c REAL);";

/// What watches the application's writes in a capture measure.
#[derive(Clone, Copy, Debug)]
enum Watched {
    /// Nothing: the raw limit.
    No,
    /// A per-row AFTER INSERT trigger that does nothing: the floor of any capture by per-row triggers.
    ByAnEmptyTrigger,
    /// lite2pg's capture.
    ByLite2pg,
}

/// The application's writes with and without capture: one bulk transaction into the narrow table and into the
/// benchmark's 10-column table with two indexes (a table as applications have them), and single-row transactions.
fn measure_capture(dir: &Path, rows: u64) -> Result<Vec<Measure>> {
    let bulk = rows / 2;
    let wide_table =
        format!("CREATE TABLE t{WIDE_COLUMNS}; CREATE INDEX t_account ON t(account); CREATE INDEX t_created ON t(created);");
    let writes =
        |watched: Watched, table: &str, synchronous: &str, insert: &dyn Fn(&mut Connection) -> Result<()>| -> Result<f64> {
            let path = dir.join(format!("capture-{watched:?}-{synchronous}.db"));
            let mut conn = Connection::open(&path)?;
            conn.execute_batch(&format!("PRAGMA journal_mode = WAL; {table}"))?;
            match watched {
                Watched::No => {}
                Watched::ByAnEmptyTrigger => {
                    conn.execute_batch("CREATE TRIGGER does_nothing AFTER INSERT ON t BEGIN SELECT 1; END")?
                }
                Watched::ByLite2pg => {
                    Source::prepare(&path, &Selection::default(), None)?;
                }
            }
            conn.pragma_update(None, "synchronous", synchronous)?;
            let seconds = seconds_of(|| insert(&mut conn))?;
            drop(conn);
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
            Ok(seconds)
        };
    let narrow_bulk = |conn: &mut Connection| -> Result<()> {
        let tx = conn.transaction()?;
        tx.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
             INSERT INTO t SELECT i, i * 7, 'row ' || i, i / 3.0 FROM n",
            [bulk],
        )?;
        Ok(tx.commit()?)
    };
    let wide_bulk = |conn: &mut Connection| -> Result<()> {
        let tx = conn.transaction()?;
        tx.execute_batch(&insert_wide_rows("t", bulk))?;
        Ok(tx.commit()?)
    };
    let single_rows = |conn: &mut Connection| -> Result<()> {
        for i in 0..CAPTURE_SINGLE_ROW_TRANSACTIONS {
            conn.execute("INSERT INTO t(a, b, c) VALUES (?1, 'row ' || ?1, ?1 / 3.0)", [i])?;
        }
        Ok(())
    };
    let pair =
        |name: String, table: &str, synchronous: &str, insert: &dyn Fn(&mut Connection) -> Result<()>| -> Result<Measure> {
            Ok(Measure::new(
                name,
                "s",
                writes(Watched::ByLite2pg, table, synchronous, insert)?,
                writes(Watched::No, table, synchronous, insert)?,
                "the same writes without capture",
            ))
        };
    let narrow_bulk_name = format!("{bulk}-row insert, one transaction");
    let narrow = pair(narrow_bulk_name.clone(), NARROW_TABLE, "FULL", &narrow_bulk)?;
    let beside_an_empty_trigger = Measure::new(
        narrow_bulk_name,
        "s",
        narrow.lite2pg,
        writes(Watched::ByAnEmptyTrigger, NARROW_TABLE, "FULL", &narrow_bulk)?,
        "the same writes with a per-row trigger that does nothing",
    );
    Ok(vec![
        narrow,
        beside_an_empty_trigger,
        pair(format!("{bulk}-row insert, one transaction, 10 columns, 2 indexes"), &wide_table, "FULL", &wide_bulk)?,
        pair(
            format!("{CAPTURE_SINGLE_ROW_TRANSACTIONS} single-row transactions, WAL, synchronous=FULL"),
            NARROW_TABLE,
            "FULL",
            &single_rows,
        )?,
        pair(
            format!("{CAPTURE_SINGLE_ROW_TRANSACTIONS} single-row transactions, WAL, synchronous=NORMAL"),
            NARROW_TABLE,
            "NORMAL",
            &single_rows,
        )?,
    ])
}

/// A backlog of `rows` changes (half inserts, 30% updates, 20% deletes) applied by `run --once`, against a plain
/// COPY of the rows that result.
async fn measure_catch_up(scratch: &Scratch, rows: u64) -> Result<Vec<Measure>> {
    let path = scratch.dir.join("catch-up.db");
    let conn = Connection::open(&path)?;
    conn.execute_batch(&format!("PRAGMA journal_mode = WAL; {NARROW_TABLE}"))?;
    let options = scratch.options(&path, &scratch.schema, &format!("{}-catch-up", scratch.source_id));
    snapshot(&options).await?;
    let (inserts, updates, deletes) = (rows / 2, rows * 3 / 10, rows / 5);
    conn.execute_batch(&format!(
        "BEGIN;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {inserts})
         INSERT INTO t SELECT i, i * 7, 'row ' || i, i / 3.0 FROM n;
         UPDATE t SET a = a + 1 WHERE id <= {updates};
         DELETE FROM t WHERE id > {inserts} - {deletes};
         COMMIT;"
    ))?;
    let started = Instant::now();
    crate::stream::run(&options, StopWhen::CaughtUp, Metrics::new(Default::default()), |_| {}).await?;
    let applied = started.elapsed().as_secs_f64();
    let client = scratch.target.connect().await?;
    let resulting: i64 =
        client.query_one(&format!("SELECT count(*) FROM {}", qualified(&scratch.schema, "t")), &[]).await?.get(0);
    let copy_in = plain_copy(&client, scratch, "t", Keyed::No).await?;
    let keyed_copy_in = plain_copy(&client, scratch, "t", Keyed::Yes).await?;
    // The raw limits are rates of the same changes, as if applying them cost only writing the rows they leave.
    let rate = |seconds: f64| rows as f64 / seconds;
    let name = format!("catch-up of {rows} changes");
    Ok(vec![
        Measure::new(
            name.clone(),
            "changes/s",
            rate(applied),
            rate(copy_in),
            format!("binary COPY in of the {resulting} resulting rows"),
        ),
        Measure::new(
            name,
            "changes/s",
            rate(applied),
            rate(keyed_copy_in),
            format!("binary COPY in of the {resulting} resulting rows, into a table with the primary key"),
        ),
    ])
}

/// Commit-to-visible latency of single-row transactions at a steady rate while `run` streams, against a
/// single-row INSERT committed straight into PostgreSQL.
async fn measure_latency(scratch: &Scratch) -> Result<Vec<Measure>> {
    let path = scratch.dir.join("latency.db");
    Connection::open(&path)?.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, at REAL);")?;
    let options = scratch.options(&path, &scratch.schema, &format!("{}-latency", scratch.source_id));
    snapshot(&options).await?;
    let stop = Arc::new(Notify::new());
    let streaming = {
        let (options, stop) = (options.clone(), stop.clone());
        std::thread::spawn(move || -> Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime starts");
            runtime.block_on(crate::stream::run(&options, StopWhen::Signal(stop), Metrics::new(Default::default()), |_| {}))?;
            Ok(())
        })
    };
    let commits = {
        let path = path.clone();
        std::thread::spawn(move || -> Result<Vec<Instant>> {
            let conn = Connection::open(&path)?;
            let mut committed = Vec::new();
            let period = Duration::from_micros(1_000_000 / LATENCY_TX_PER_SECOND);
            let started = Instant::now();
            for id in 0..SINGLE_ROW_TRANSACTIONS {
                std::thread::sleep((started + period * id as u32).saturating_duration_since(Instant::now()));
                conn.execute("INSERT INTO t(id, at) VALUES (?1, 0)", [id])?;
                committed.push(Instant::now());
            }
            Ok(committed)
        })
    };
    let client = scratch.target.connect().await?;
    let newest = format!("SELECT coalesce(max(id), -1) FROM {}", qualified(&scratch.schema, "t"));
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while (seen.len() as u64) < SINGLE_ROW_TRANSACTIONS {
        let visible: i64 = client.query_one(newest.as_str(), &[]).await?.get(0);
        let now = Instant::now();
        while (seen.len() as i64) <= visible {
            seen.push(now);
        }
        if now > deadline {
            stop.notify_one();
            return Err(Error::new(ErrorKind::State, "the latency measure's rows did not reach PostgreSQL within 120 s"));
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    let committed = commits.join().expect("the latency writer does not panic")?;
    stop.notify_one();
    streaming.join().expect("the latency stream does not panic")?;
    let synced: Vec<f64> =
        committed.iter().zip(&seen).map(|(c, s)| s.saturating_duration_since(*c).as_secs_f64() * 1000.0).collect();
    let raw_table = qualified(&scratch.raw_schema, "latency");
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {}; CREATE TABLE {raw_table} (id bigint PRIMARY KEY, at float8)",
            quote(&scratch.raw_schema)
        ))
        .await?;
    let insert = client.prepare(&format!("INSERT INTO {raw_table} VALUES ($1, 0)")).await?;
    let mut direct = Vec::new();
    for id in 0..SINGLE_ROW_TRANSACTIONS as i64 {
        let started = Instant::now();
        client.execute(&insert, &[&id]).await?;
        direct.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let what = "a single-row INSERT committed straight into PostgreSQL";
    Ok([("p50", 0.5), ("p99", 0.99)]
        .into_iter()
        .map(|(name, quantile)| {
            let measure = format!("commit-to-visible {name} at {LATENCY_TX_PER_SECOND} tx/s");
            Measure::new(measure, "ms", percentile(&synced, quantile), percentile(&direct, quantile), what)
        })
        .collect())
}

fn percentile(values: &[f64], quantile: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(((sorted.len() as f64 - 1.0) * quantile).round() as usize).copied().unwrap_or(0.0)
}
