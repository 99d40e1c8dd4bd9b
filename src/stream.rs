//! Streaming: read the change log in whole-transaction batches and apply each batch to PostgreSQL in one
//! transaction together with the new position; prune the log only after PostgreSQL committed.
//!
//! Contract (the guarantee, kept here): a batch is every log entry after `applied_seq` visible in one SQLite read
//! snapshot, so it holds only whole committed SQLite transactions; rows are read in that same snapshot; data and
//! `applied_seq` commit together; the log is pruned afterwards. A crash at any point re-applies an idempotent
//! batch or nothing.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::SinkExt;
use rusqlite::Connection;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_postgres::Client;

use crate::error::{Error, ErrorKind, Result, RetryPolicy};
use crate::metrics::Metrics;
use crate::pg::apply::{existing_plan, unique_sets, TableMerge};
use crate::pg::copy::{CopyEncoder, CHUNK_BYTES};
use crate::pg::state::{self, Reject};
use crate::pg::PgTarget;
use crate::schema::TablePlan;
use crate::snapshot::{snapshot, SnapshotOptions, SnapshotReport};
use crate::source::Source;
use crate::sqlite::capture::{self, CaptureState};
use crate::sqlite::changes::{changed_tables, read_changes, Change, SeqRange};
use crate::sqlite::{open, Access};
use crate::types::SqlValue;

/// How often an idle stream looks for new commits.
const POLL_INTERVAL: Duration = Duration::from_millis(5);
/// Longest wait between retries after a failure.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Prune the log once this many entries are applied, or `PRUNE_EVERY` passed.
const PRUNE_ENTRIES: i64 = 10_000;
const PRUNE_EVERY: Duration = Duration::from_secs(1);
/// How often the backlog (pending entries, lag) is measured for metrics.
const BACKLOG_EVERY: Duration = Duration::from_secs(1);

/// Counts of one applied batch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BatchStats {
    pub from_seq: i64,
    pub to_seq: i64,
    pub tables: usize,
    pub upserts: u64,
    pub deletes: u64,
    pub rejects: u64,
}

/// What a `run` did, for `--once` and for tests.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunSummary {
    pub source_id: String,
    pub snapshot: Option<SnapshotSummary>,
    pub batches: u64,
    pub upserts: u64,
    pub deletes: u64,
    pub rejects: u64,
    pub applied_seq: i64,
}

/// The part of a snapshot report `run` shows.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotSummary {
    pub rows: u64,
    pub rejects: u64,
    pub seconds: f64,
}

/// When a `run` stops.
#[derive(Debug, Clone)]
pub enum StopWhen {
    /// Apply what was committed before the start, then return.
    CaughtUp,
    /// Keep streaming until the future resolves (SIGINT/SIGTERM in the CLI).
    Signal(Arc<tokio::sync::Notify>),
}

/// Installs capture (if needed), snapshots (if needed), then streams. PostgreSQL being away at the start is
/// waited out like any other outage. Progress and failures are recorded in `metrics`.
pub async fn run(
    options: &SnapshotOptions,
    stop: StopWhen,
    metrics: Arc<Metrics>,
    on_snapshot: impl Fn(&SnapshotReport),
) -> Result<RunSummary> {
    let mut summary = RunSummary::default();
    let mut failures = 0u32;
    let mut stream = loop {
        match start(options, &mut summary, &on_snapshot).await {
            Ok(stream) => break stream,
            Err(err) if err.is_retryable() => {
                metrics.failed(err.kind());
                failures += 1;
                let pause = backoff(failures);
                if failures == 1 || failures % 10 == 0 {
                    tracing::warn!("{err}; retrying in {:.1}s (attempt {failures})", pause.as_secs_f64());
                }
                if stop.wait(pause).await {
                    return Ok(summary);
                }
            }
            Err(err) => {
                metrics.failed(err.kind());
                return Err(err);
            }
        }
    };
    stream.metrics = metrics;
    let target_seq = match &stop {
        StopWhen::CaughtUp => Some(stream.newest_seq().await?),
        StopWhen::Signal(_) => None,
    };
    stream.run(&mut summary, target_seq, stop).await?;
    summary.applied_seq = stream.applied_seq;
    Ok(summary)
}

async fn start(options: &SnapshotOptions, summary: &mut RunSummary, on_snapshot: &impl Fn(&SnapshotReport)) -> Result<Stream> {
    let mut client = options.target.connect().await?;
    state::ensure_state_schema(&mut client).await?;
    state::refuse_promoted_file(&client, &options.sqlite).await?;
    let capture = {
        let options = options.clone();
        tokio::task::spawn_blocking(move || {
            let source = Source::prepare(&options.sqlite, &options.selection, options.source_id.as_deref())?;
            Ok::<_, Error>(source.capture.clone())
        })
        .await
        .expect("source preparation does not panic")?
    };
    summary.source_id = capture.source_id.clone();
    let needs_snapshot = match state::source(&client, &capture.source_id).await? {
        Some(row) => row.snapshot_seq.is_none(),
        None => true,
    };
    drop(client);
    if needs_snapshot {
        let report = snapshot(options).await?;
        on_snapshot(&report);
        summary.snapshot = Some(SnapshotSummary {
            rows: report.tables.iter().map(|t| t.rows).sum(),
            rejects: report.rejects(),
            seconds: report.seconds,
        });
    }
    Stream::start(options, &capture).await
}

impl StopWhen {
    /// Sleeps for `period`; returns true when asked to stop.
    async fn wait(&self, period: Duration) -> bool {
        match self {
            StopWhen::CaughtUp => {
                tokio::time::sleep(period).await;
                false
            }
            StopWhen::Signal(notify) => tokio::select! {
                _ = tokio::time::sleep(period) => false,
                _ = notify.notified() => true,
            },
        }
    }
}

/// A running stream: the SQLite connections, the PostgreSQL connection and the position.
struct Stream {
    target: PgTarget,
    schema: String,
    /// The file's identity and the captured tables this stream applies.
    capture: CaptureState,
    sqlite: PathBuf,
    reader: Option<Connection>,
    pruner: Connection,
    client: Option<Client>,
    plans: Arc<HashMap<i64, TablePlan>>,
    merges: HashMap<i64, TableMerge>,
    applied_seq: i64,
    pruned_seq: i64,
    last_prune: Instant,
    last_backlog: Option<Instant>,
    known_rejects: bool,
    metrics: Arc<Metrics>,
}

impl Stream {
    async fn start(options: &SnapshotOptions, capture: &CaptureState) -> Result<Stream> {
        let reader = open(&options.sqlite, Access::ReadOnly)?;
        let pruner = open(&options.sqlite, Access::ReadWrite)?;
        pruner.pragma_update(None, "synchronous", "NORMAL")?;
        let mut stream = Stream {
            target: options.target.clone(),
            schema: options.schema.clone(),
            capture: capture.clone(),
            sqlite: options.sqlite.clone(),
            reader: Some(reader),
            pruner,
            client: None,
            plans: Arc::new(HashMap::new()),
            merges: HashMap::new(),
            applied_seq: 0,
            pruned_seq: 0,
            last_prune: Instant::now(),
            last_backlog: None,
            known_rejects: false,
            metrics: Metrics::new(Default::default()),
        };
        stream.connect().await?;
        Ok(stream)
    }

    /// Connects, takes the source lock, checks the file against the stored position and builds table plans.
    async fn connect(&mut self) -> Result<()> {
        let client = self.target.connect().await?;
        state::lock_source(&client, &self.capture.source_id).await?;
        let row = state::source(&client, &self.capture.source_id).await?.ok_or_else(|| {
            Error::new(ErrorKind::State, format!("source {} has no row in lite2pg.sources", self.capture.source_id))
                .with_hint("run `lite2pg snapshot` first")
        })?;
        if row.promoted {
            return Err(Error::new(
                ErrorKind::State,
                format!("source {} was promoted: PostgreSQL is now the application's database", self.capture.source_id),
            )
            .with_hint("nothing more to sync"));
        }
        if row.database_id != self.capture.database_id {
            return Err(Error::new(
                ErrorKind::State,
                format!(
                    "{} is a different database than the one source {} was copied from",
                    self.sqlite.display(),
                    self.capture.source_id
                ),
            )
            .with_hint("if this file replaced the old one on purpose, copy it again with `lite2pg snapshot --replace`"));
        }
        let newest = capture::newest_seq(self.reader.as_ref().expect("reader is home between batches"))?;
        if newest < row.applied_seq {
            return Err(Error::new(
                ErrorKind::State,
                format!(
                    "the SQLite file's change log ends at seq {newest}, before the applied position {}: the file was restored from an older copy",
                    row.applied_seq
                ),
            )
            .with_hint("changes after the backup exist only in PostgreSQL; to start over from the file, run `lite2pg snapshot --replace`"));
        }
        let known_rejects = client
            .query_one("SELECT EXISTS (SELECT 1 FROM lite2pg.rejects WHERE source_id = $1)", &[&self.capture.source_id])
            .await?
            .get(0);
        let (plans, merges) = self.build_plans(&client).await?;
        for merge in merges.values() {
            merge.create_temp_table(&client).await?;
        }
        self.plans = Arc::new(plans);
        self.merges = merges;
        self.applied_seq = row.applied_seq;
        self.known_rejects = known_rejects;
        self.client = Some(client);
        Ok(())
    }

    async fn build_plans(&self, client: &Client) -> Result<(HashMap<i64, TablePlan>, HashMap<i64, TableMerge>)> {
        let schema = crate::sqlite::introspect::read_schema(self.reader.as_ref().expect("reader is home between batches"))?;
        let (mut plans, mut merges) = (HashMap::new(), HashMap::new());
        for captured in &self.capture.tables {
            let table = schema.table(&captured.name).ok_or_else(|| {
                Error::new(ErrorKind::Schema, format!("captured table {:?} no longer exists in SQLite", captured.name))
                    .with_hint("run `lite2pg init` to update capture")
            })?;
            let plan = existing_plan(client, &self.schema, table, &captured.key_columns).await?;
            let uniques = unique_sets(client, &self.schema, &table.name).await?;
            merges.insert(captured.id, TableMerge::new(&self.schema, captured.id, &plan, &uniques));
            plans.insert(captured.id, plan);
        }
        Ok((plans, merges))
    }

    async fn newest_seq(&mut self) -> Result<i64> {
        capture::newest_seq(self.reader.as_ref().expect("reader is home between batches"))
    }

    /// Applies batches until `target_seq` is reached (if given) or `stop` fires.
    async fn run(&mut self, summary: &mut RunSummary, target_seq: Option<i64>, stop: StopWhen) -> Result<()> {
        self.prune().await?;
        let mut failures = 0u32;
        let mut last_version = None;
        loop {
            if target_seq.is_some_and(|target| self.applied_seq >= target) {
                return self.prune().await;
            }
            self.measure_backlog()?;
            let version = self.data_version()?;
            if target_seq.is_none() && last_version == Some(version) && failures == 0 {
                if stop.wait(POLL_INTERVAL).await {
                    return Ok(());
                }
                continue;
            }
            match self.apply_batch().await {
                Ok(stats) => {
                    if stats.is_none() {
                        self.metrics.succeeded();
                    }
                    if failures > 0 {
                        tracing::info!("sync resumed after {failures} failed attempt(s)");
                    }
                    failures = 0;
                    last_version = Some(version);
                    if let Some(stats) = stats {
                        self.last_backlog = None;
                        summary.batches += 1;
                        summary.upserts += stats.upserts;
                        summary.deletes += stats.deletes;
                        summary.rejects += stats.rejects;
                    }
                    self.maybe_prune().await?;
                }
                Err(err) if err.kind().retry_policy() == RetryPolicy::Timed => {
                    self.metrics.failed(err.kind());
                    failures += 1;
                    let backoff = backoff(failures);
                    tracing::debug!("batch failed: {err}");
                    if failures == 1 || failures % 10 == 0 {
                        tracing::warn!("{err}; retrying in {:.1}s (attempt {failures})", backoff.as_secs_f64());
                    }
                    if err.kind() == ErrorKind::PgConnect {
                        self.client = None;
                    }
                    if stop.wait(backoff).await {
                        return Ok(());
                    }
                }
                Err(err) => {
                    self.metrics.failed(err.kind());
                    tracing::debug!(kind = ?err.kind(), "stopping: {err}");
                    self.record_error(&err).await;
                    return Err(err);
                }
            }
        }
    }

    /// Measures pending entries and lag for metrics, at most once per `BACKLOG_EVERY`.
    fn measure_backlog(&mut self) -> Result<()> {
        if self.last_backlog.is_some_and(|at| at.elapsed() < BACKLOG_EVERY) {
            return Ok(());
        }
        let pending = capture::pending(self.reader.as_ref().expect("reader is home between batches"), self.applied_seq)?;
        self.metrics.backlog(pending.entries, pending.lag_seconds());
        self.last_backlog = Some(Instant::now());
        Ok(())
    }

    fn data_version(&self) -> Result<i64> {
        let reader = self.reader.as_ref().expect("reader is home between batches");
        Ok(reader.query_row("PRAGMA data_version", [], |r| r.get(0))?)
    }

    async fn record_error(&self, err: &Error) {
        if let Some(client) = &self.client {
            let _ = state::record_error(client, &self.capture.source_id, &err.to_string()).await;
        }
    }

    /// Reads and applies one batch; `None` when nothing new was committed.
    async fn apply_batch(&mut self) -> Result<Option<BatchStats>> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            self.client = None;
            self.connect().await?;
            tracing::info!("connected to PostgreSQL at {}", self.target.shown());
        }
        let started = Instant::now();
        let (sender, mut receiver) = mpsc::channel::<Message>(4);
        let reader = self.reader.take().expect("reader is home between batches");
        let (plans, applied) = (self.plans.clone(), self.applied_seq);
        let read = tokio::task::spawn_blocking(move || {
            let result = read_batch(&reader, &plans, applied, &sender);
            (reader, result)
        });
        let client = self.client.as_ref().expect("connected above");
        client.batch_execute("BEGIN").await?;
        let written = self.write_tables(&mut receiver).await;
        drop(receiver);
        let (reader, read_result) = read.await.expect("batch readers do not panic");
        self.reader = Some(reader);
        let result = match (read_result, written) {
            (Ok(Some(range)), Ok(written)) => self.finish_batch(range, written, started).await.map(Some),
            (Ok(None), Ok(_)) => Ok(None),
            (Err(err), _) | (_, Err(err)) => Err(err),
        };
        let client = self.client.as_ref().expect("connected above");
        match &result {
            Ok(Some(_)) => {}
            _ if client.is_closed() => {}
            _ => client.batch_execute("ROLLBACK").await?,
        }
        let Some(stats) = result? else {
            return Ok(None);
        };
        self.applied_seq = stats.to_seq;
        self.known_rejects |= stats.rejects > 0;
        tracing::info!(
            "applied {} changes ({} upserts, {} deletes) in {} tables, seq {}→{}, {} ms",
            stats.upserts + stats.deletes,
            stats.upserts,
            stats.deletes,
            stats.tables,
            stats.from_seq,
            stats.to_seq,
            started.elapsed().as_millis()
        );
        Ok(Some(stats))
    }

    /// Copies each changed table into its temp table and merges it, as the reading thread sends it.
    async fn write_tables(&mut self, receiver: &mut mpsc::Receiver<Message>) -> Result<Written> {
        let client = self.client.as_ref().expect("connected above");
        let mut written = Written::default();
        let mut sink = None;
        while let Some(message) = receiver.recv().await {
            match message {
                Message::Data { id, chunk } => {
                    if sink.is_none() {
                        sink = Some(Box::pin(client.copy_in::<_, Bytes>(self.merges[&id].copy_in.as_str()).await?));
                    }
                    sink.as_mut().expect("opened above").send(Bytes::from(chunk)).await?;
                }
                Message::End { id, upserts, deletes, rejects } => {
                    sink.take().expect("every table sends data before its end").as_mut().finish().await?;
                    let table = &self.plans[&id].name;
                    self.merges[&id]
                        .merge(client, &self.capture.source_id, table, upserts + deletes, self.known_rejects)
                        .await
                        .map_err(|err| err.context(format!("applying changes to {table:?}")))?;
                    written.tables += 1;
                    written.per_table.push((table.clone(), upserts, deletes));
                    written.upserts += upserts;
                    written.deletes += deletes;
                    written.rejects.extend(rejects);
                }
            }
        }
        Ok(written)
    }

    /// Stores rejects and the new position, then commits.
    async fn finish_batch(&self, range: SeqRange, written: Written, started: Instant) -> Result<BatchStats> {
        let client = self.client.as_ref().expect("connected above");
        state::store_rejects(client, &self.capture.source_id, &written.rejects).await?;
        state::advance(client, &self.capture.source_id, range.after, range.up_to).await?;
        crate::fail_point!("batch-before-commit");
        if let Err(err) = client.batch_execute("COMMIT").await {
            return Err(match relax_constraint(client, &err).await? {
                Some(relaxed) => Error::new(ErrorKind::PgTransient, relaxed),
                None => err.into(),
            });
        }
        crate::fail_point!("batch-after-commit");
        self.metrics.batch_applied(&written.per_table, written.rejects.len() as u64, started.elapsed());
        Ok(BatchStats {
            from_seq: range.after,
            to_seq: range.up_to,
            tables: written.tables,
            upserts: written.upserts,
            deletes: written.deletes,
            rejects: written.rejects.len() as u64,
        })
    }

    /// Prunes when enough was applied or enough time passed.
    async fn maybe_prune(&mut self) -> Result<()> {
        if self.applied_seq - self.pruned_seq >= PRUNE_ENTRIES
            || (self.applied_seq > self.pruned_seq && self.last_prune.elapsed() >= PRUNE_EVERY)
        {
            self.prune().await?;
        }
        Ok(())
    }

    async fn prune(&mut self) -> Result<()> {
        let deleted = capture::prune(&self.pruner, self.applied_seq)?;
        tracing::debug!(deleted, up_to = self.applied_seq, "pruned change log");
        self.pruned_seq = self.applied_seq;
        self.last_prune = Instant::now();
        Ok(())
    }
}

/// SQLite enforces foreign keys only when the writer asks, and its UNIQUE semantics differ from PostgreSQL's
/// in corner cases. When PostgreSQL refuses a state SQLite committed, the PostgreSQL constraint is the one that
/// is wrong about this data: drop it (loudly) so the copy stays equal and the stream does not stall.
async fn relax_constraint(client: &Client, err: &tokio_postgres::Error) -> Result<Option<String>> {
    use tokio_postgres::error::SqlState;
    let Some(db) = err.as_db_error() else {
        return Ok(None);
    };
    let (Some(schema), Some(table), Some(constraint)) = (db.schema(), db.table(), db.constraint()) else {
        return Ok(None);
    };
    if *db.code() != SqlState::FOREIGN_KEY_VIOLATION && *db.code() != SqlState::UNIQUE_VIOLATION {
        return Ok(None);
    }
    client
        .batch_execute(&format!(
            "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}",
            crate::ident::qualified(schema, table),
            crate::ident::quote(constraint)
        ))
        .await?;
    let message = format!(
        "SQLite committed rows that break constraint {constraint:?} on {table:?} ({}); the constraint was dropped in PostgreSQL so the copy stays equal; retrying the batch",
        db.message()
    );
    Ok(Some(message))
}

fn backoff(failures: u32) -> Duration {
    (Duration::from_millis(100) * 2u32.saturating_pow(failures.min(10))).min(MAX_BACKOFF)
}

/// What the reading thread sends: COPY data for a table's temp table, then the table's counts.
enum Message {
    Data { id: i64, chunk: Vec<u8> },
    End { id: i64, upserts: u64, deletes: u64, rejects: Vec<Reject> },
}

/// What a batch wrote before commit.
#[derive(Default)]
struct Written {
    tables: usize,
    /// Per table: name, upserts, deletes.
    per_table: Vec<(String, u64, u64)>,
    upserts: u64,
    deletes: u64,
    rejects: Vec<Reject>,
}

/// Reads one batch in one SQLite read transaction and sends each changed table's COPY data.
fn read_batch(
    conn: &Connection,
    plans: &HashMap<i64, TablePlan>,
    applied: i64,
    sender: &mpsc::Sender<Message>,
) -> Result<Option<SeqRange>> {
    conn.execute_batch("BEGIN")?;
    let result = read_batch_in_transaction(conn, plans, applied, sender);
    conn.execute_batch("COMMIT")?;
    result
}

fn read_batch_in_transaction(
    conn: &Connection,
    plans: &HashMap<i64, TablePlan>,
    applied: i64,
    sender: &mpsc::Sender<Message>,
) -> Result<Option<SeqRange>> {
    let up_to = capture::newest_seq(conn)?;
    if up_to <= applied {
        return Ok(None);
    }
    let range = SeqRange { after: applied, up_to };
    for id in changed_tables(conn, range)? {
        if let Some(plan) = plans.get(&id) {
            read_table(conn, plan, id, range, sender)?;
        }
    }
    Ok(Some(range))
}

/// Encodes one table's changed keys for its temp table: present rows with `gone = false`, gone keys with the
/// other columns NULL and `gone = true`. Rows PostgreSQL cannot hold are rejected and removed there.
fn read_table(conn: &Connection, plan: &TablePlan, id: i64, range: SeqRange, sender: &mpsc::Sender<Message>) -> Result<()> {
    let send = |message: Message| {
        sender
            .blocking_send(message)
            .map_err(|_| Error::new(ErrorKind::PgConnect, "the PostgreSQL side of the batch stopped early"))
    };
    let mut encoder = CopyEncoder::default();
    let (mut upserts, mut deletes, mut rejects) = (0u64, 0u64, Vec::new());
    let types: Vec<_> = plan.columns.iter().map(|c| c.pg_type).chain([crate::types::PgType::Boolean]).collect();
    let key_indexes = plan.key_indexes();
    let (present, gone) = (SqlValue::Integer(0), SqlValue::Integer(1));
    let mut gone_row = vec![SqlValue::Null; plan.columns.len() + 1];
    read_changes(conn, plan, id, range, |change| {
        let mut push_gone = |encoder: &mut CopyEncoder, key: &[SqlValue]| {
            for (slot, value) in key_indexes.iter().zip(key) {
                gone_row[*slot] = value.clone();
            }
            gone_row[plan.columns.len()] = gone.clone();
            encoder.push_row(gone_row.iter().zip(types.iter().copied()))
        };
        match change {
            Change::Present(row) => {
                let with_flag = row.iter().chain([&present]).zip(types.iter().copied());
                match encoder.push_row(ExactChain(with_flag, row.len() + 1)) {
                    Ok(()) => upserts += 1,
                    Err((column, misfit)) => {
                        let key = plan.key_of(row);
                        rejects.push(Reject {
                            table: plan.name.clone(),
                            key: key.clone(),
                            column: plan.columns[column].name.clone(),
                            reason: misfit.reason,
                            value: row[column].clone(),
                        });
                        push_gone(&mut encoder, &key).map_err(|(_, m)| key_misfit(plan, &m.reason))?;
                        deletes += 1;
                    }
                }
            }
            Change::Gone(key) => {
                push_gone(&mut encoder, key).map_err(|(_, m)| key_misfit(plan, &m.reason))?;
                deletes += 1;
            }
        }
        if encoder.len() >= CHUNK_BYTES {
            send(Message::Data { id, chunk: encoder.take() })?;
        }
        Ok(())
    })?;
    send(Message::Data { id, chunk: encoder.finish() })?;
    send(Message::End { id, upserts, deletes, rejects })
}

fn key_misfit(plan: &TablePlan, reason: &str) -> Error {
    Error::new(ErrorKind::Schema, format!("a key of table {:?} does not fit its PostgreSQL key column: {reason}", plan.name))
        .with_hint("re-create the table with `lite2pg snapshot --replace` so its key type fits every value")
}

/// An iterator with a known length, for chained row values.
struct ExactChain<I>(I, usize);

impl<I: Iterator> Iterator for ExactChain<I> {
    type Item = I::Item;
    fn next(&mut self) -> Option<I::Item> {
        let item = self.0.next();
        if item.is_some() {
            self.1 -= 1;
        }
        item
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.1, Some(self.1))
    }
}

impl<I: Iterator> ExactSizeIterator for ExactChain<I> {}
