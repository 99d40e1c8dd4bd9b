//! Streaming: read the change log in whole-transaction batches and apply each batch to PostgreSQL in one
//! transaction together with the new position; prune the log only after PostgreSQL committed.
//!
//! Contract (the guarantee, kept here): a batch is every log entry after `applied_seq` visible in one SQLite read
//! snapshot, so it holds only whole committed SQLite transactions; rows are read in that same snapshot; data and
//! `applied_seq` commit together; the log is pruned afterwards. A crash at any point re-applies an idempotent
//! batch or nothing.

mod file;
mod first_copy;
mod follow;
mod plans;
mod read;
mod wake;
mod write;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::Policies;
use crate::error::{Error, ErrorKind, Result};
use crate::mapping::table::TablePlan;
use crate::metrics::{Metrics, SourceMetrics};
use crate::options::{SnapshotOptions, SourceOptions};
use crate::pg::apply::TableMerge;
use crate::pg::pool::{Lease, Pool};
use crate::pg::state;
use crate::pg::PgTarget;
use crate::snapshot::SnapshotReport;
use crate::source::Selection;
use crate::sqlite::capture::{self, CaptureState};
use crate::sqlite::introspect::{SourceSchema, Table};
use crate::sqlite::{open, Access};

pub use first_copy::snapshot;

use file::{file_identity, SqliteFile};
use wake::{FileWake, Woken, AFTER_WRITE_POLL};

/// How often a stream looks for new commits: soon after the last one, less often the longer it has been idle
/// (a hundred idle sources in one process then cost little CPU).
const POLL_INTERVAL: Duration = Duration::from_millis(5);
const IDLE_POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Longest wait between retries after a failure.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a one-off run (`StopWhen::CaughtUp`) rides out failures that waiting could fix before giving up.
const ONCE_WAIT: Duration = Duration::from_secs(60);
/// Into the application's own tables: how often an idle stream looks whether the application migrated PostgreSQL
/// (a column SQLite has may have appeared there, and its table is then copied whole).
const APP_SHAPE_EVERY: Duration = Duration::from_secs(2);

/// Counts of one applied batch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct BatchStats {
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
    /// Apply what was committed before the start, then return; give up when failures waiting could fix (PostgreSQL
    /// unreachable, SQLite busy) last `ONCE_WAIT`.
    CaughtUp,
    /// `CaughtUp`, giving up after failures lasting this long.
    CaughtUpWithin(Duration),
    /// Keep streaming until the future resolves (SIGINT/SIGTERM in the CLI).
    Signal(Arc<tokio::sync::Notify>),
}

/// Installs capture (if needed), snapshots (if needed), then streams, on connections of its own. PostgreSQL
/// being away at the start is waited out like any other outage. Progress and failures are recorded in `metrics`.
pub async fn run(
    options: &SnapshotOptions,
    stop: StopWhen,
    metrics: Arc<Metrics>,
    on_snapshot: impl Fn(&SnapshotReport),
) -> Result<RunSummary> {
    run_in(&Pool::new(options.source.target.clone(), 1), options, stop, &metrics, on_snapshot).await
}

/// `run` on connections leased from `pool`, shared with other sources.
pub(crate) async fn run_in(
    pool: &Arc<Pool>,
    options: &SnapshotOptions,
    stop: StopWhen,
    metrics: &Metrics,
    on_snapshot: impl Fn(&SnapshotReport),
) -> Result<RunSummary> {
    let Some(source_id) = wait_for_identity(&options.source, &stop).await? else {
        return Ok(RunSummary::default());
    };
    let metrics = metrics.source(&source_id);
    let options = options.with_source_id(&source_id);
    let mut summary = RunSummary { source_id: source_id.clone(), ..RunSummary::default() };
    let mut outage = Outage::default();
    let mut stream = loop {
        let opened = file_identity(&options.source.sqlite);
        match start(pool, &options, &mut summary, &on_snapshot).await {
            Ok(stream) => break stream,
            // Another file was renamed over the path meanwhile: reading the old one can fail on the new one's
            // journal (see `Stream::look`); the new one is what to start from.
            Err(_) if file_identity(&options.source.sqlite) != opened => continue,
            // A daemon waits for another process's lock (a standby); a one-off run says who holds it.
            Err(err) if err.is_retryable() && !(err.kind() == ErrorKind::Locked && stop.is_once()) => {
                metrics.failed(&err);
                let pause = outage.failed(&err, &stop)?;
                if stop.wait(pause).await {
                    return Ok(summary);
                }
            }
            Err(err) => {
                metrics.failed(&err);
                return Err(err);
            }
        }
    };
    stream.metrics = metrics;
    let result = async {
        let target_seq = match stop.is_once() {
            true => Some(stream.file.newest_seq()?),
            false => None,
        };
        stream.run(&mut summary, target_seq, stop).await
    }
    .await;
    summary.applied_seq = stream.applied_seq;
    drop(stream);
    pool.unlock_source(&source_id).await;
    result.map(|()| summary).map_err(|err| explained_by_lost_capture(&options.source.sqlite, err))
}

/// A stream's error, or what explains it: the file lost its capture, emptied in place (`cp backup app.db`
/// truncates first) or replaced by one without. Whichever query tripped over that first is beside the point.
fn explained_by_lost_capture(sqlite: &std::path::Path, err: Error) -> Error {
    let lost = std::fs::metadata(sqlite).is_ok_and(|file| file.len() == 0)
        || crate::sqlite::open(sqlite, crate::sqlite::Access::ReadOnly)
            .is_ok_and(|conn| matches!(crate::sqlite::capture::read_state(&conn), Ok(None)));
    match lost {
        true => crate::sqlite::capture::capture_lost(),
        false => err,
    }
}

/// `source_identity`, waiting out what waiting can fix as the start does: another process holding the file's lock
/// (a VACUUM, a migration) must not end a daemon that is starting. `None` when asked to stop meanwhile.
async fn wait_for_identity(options: &SourceOptions, stop: &StopWhen) -> Result<Option<String>> {
    let mut outage = Outage::default();
    loop {
        match source_identity(options) {
            Ok(source_id) => return Ok(Some(source_id)),
            Err(err) if err.is_retryable() => {
                if stop.wait(outage.failed(&err, stop)?).await {
                    return Ok(None);
                }
            }
            Err(err) => return Err(err),
        }
    }
}

/// The source id `run` syncs under: the one asked for, else the one stored in the file, else the one `init`
/// stores now (capture is installed first anyway, and needs no PostgreSQL).
fn source_identity(options: &SourceOptions) -> Result<String> {
    if let Some(id) = &options.source_id {
        return Ok(id.clone());
    }
    if let Some(installed) = capture::read_state(&open(&options.sqlite, Access::ReadOnly)?)? {
        return Ok(installed.source_id);
    }
    Ok(crate::source::Source::prepare(&options.sqlite, &options.selection, None)?.capture.source_id)
}

async fn start(
    pool: &Arc<Pool>,
    options: &SnapshotOptions,
    summary: &mut RunSummary,
    on_snapshot: &impl Fn(&SnapshotReport),
) -> Result<Stream> {
    let mut client = pool.lease().await?;
    state::ensure_state_schema(&mut client).await?;
    state::refuse_promoted_file(&*client, &options.source.sqlite).await?;
    // A source already copied resumes with its capture as it is: the stream follows whatever changed in the
    // schema meanwhile (and installing capture first would hide tables rebuilt while lite2pg was stopped).
    let installed = capture::read_state(&open(&options.source.sqlite, Access::ReadOnly)?)?
        .filter(|installed| options.source.source_id.as_deref().is_none_or(|id| id == installed.source_id));
    if let Some(installed) = installed {
        if state::source(&*client, &installed.source_id).await?.is_some_and(|row| row.snapshot_seq.is_some()) {
            drop(client);
            return Stream::start(pool, &options.source, &installed).await;
        }
    }
    drop(client);
    let turn = pool.snapshot_turn().await;
    let report = snapshot(options).await?;
    drop(turn);
    on_snapshot(&report);
    summary.snapshot = Some(SnapshotSummary {
        rows: report.tables.iter().map(|t| t.rows).sum(),
        rejects: report.rejects(),
        seconds: report.seconds,
    });
    let installed = capture::require_state(&open(&options.source.sqlite, Access::ReadOnly)?, &options.source.sqlite)?;
    Stream::start(pool, &options.source, &installed).await
}

impl StopWhen {
    /// The same kind of stop for one of several streams, woken by `notify`.
    pub(crate) fn own(&self, notify: Arc<tokio::sync::Notify>) -> StopWhen {
        match self {
            StopWhen::Signal(_) => StopWhen::Signal(notify),
            once => once.clone(),
        }
    }

    /// Whether this is a one-off run, which ends once caught up.
    pub(crate) fn is_once(&self) -> bool {
        !matches!(self, StopWhen::Signal(_))
    }

    /// How long a one-off run rides out failures waiting could fix; a daemon never gives up on them.
    fn gives_up_after(&self) -> Option<Duration> {
        match self {
            StopWhen::CaughtUp => Some(ONCE_WAIT),
            StopWhen::CaughtUpWithin(wait) => Some(*wait),
            StopWhen::Signal(_) => None,
        }
    }

    /// Sleeps for `period`; returns true when asked to stop.
    pub(crate) async fn wait(&self, period: Duration) -> bool {
        match self {
            StopWhen::Signal(notify) => tokio::select! {
                _ = tokio::time::sleep(period) => false,
                _ = notify.notified() => true,
            },
            _ => {
                tokio::time::sleep(period).await;
                false
            }
        }
    }
}

/// Failures in a row that waiting could fix: how long to wait before the next attempt, and when a one-off run
/// gives up.
#[derive(Default)]
struct Outage {
    failures: u32,
    since: Option<Instant>,
}

impl Outage {
    /// Counts a failure and warns about it (the first, then every tenth); returns how long to wait before trying
    /// again, or the error itself once a one-off run has waited as long as it may.
    fn failed(&mut self, err: &Error, stop: &StopWhen) -> Result<Duration> {
        self.failures += 1;
        let since = *self.since.get_or_insert_with(Instant::now);
        let mut pause = backoff(self.failures);
        if let Some(limit) = stop.gives_up_after() {
            let left = limit.saturating_sub(since.elapsed());
            if left.is_zero() {
                return Err(Error::new(err.kind(), format!("gave up after {:.0}s of failures: {err}", limit.as_secs_f64())));
            }
            pause = pause.min(left);
        }
        if self.noteworthy() {
            tracing::warn!("{err}; retrying in {:.1}s (attempt {})", pause.as_secs_f64(), self.failures);
        }
        Ok(pause)
    }

    /// Whether this failure is worth a warning (the first, then every tenth).
    fn noteworthy(&self) -> bool {
        self.failures == 1 || self.failures % 10 == 0
    }

    /// Whether the last attempt failed.
    fn ongoing(&self) -> bool {
        self.failures > 0
    }

    /// Ends the outage; says so when there was one.
    fn recovered(&mut self) {
        if self.failures > 0 {
            tracing::info!("sync resumed after {} failed attempt(s)", self.failures);
        }
        *self = Outage::default();
    }
}

/// A running stream: the SQLite connections, the PostgreSQL connection and the position.
struct Stream {
    target: PgTarget,
    schema: String,
    /// The file's identity and the captured tables this stream applies.
    capture: CaptureState,
    /// The SQLite file: its reader and pruner connections.
    file: SqliteFile,
    /// Whether the file was checked and the position and plans read since this process took the source's lock.
    attached: bool,
    pool: Arc<Pool>,
    /// The connection of the current batch; given back between batches when another source waits.
    client: Option<Lease>,
    /// Names this stream's temp tables apart from other sources' on a shared connection.
    temp_prefix: String,
    /// Counts plan rebuilds: a connection's temp tables made for an older plan are made again.
    plans_version: u64,
    plans: Arc<HashMap<i64, TablePlan>>,
    merges: HashMap<i64, TableMerge>,
    /// The SQLite tables the plans were made from.
    tables: HashMap<i64, Table>,
    /// Tables the next batch copies whole (after a schema change or an inexact widening).
    whole_tables: Arc<HashSet<i64>>,
    /// `--into-existing`: the tables' ids in parent-first order of their foreign keys, and the shape of the
    /// application's tables the plans were made from (a migration on the PostgreSQL side changes it).
    app_order: Vec<i64>,
    app_shape: String,
    /// The schema was looked at since constraints were last made: the next batch makes those SQLite declares and
    /// PostgreSQL lacks, once its rows are written.
    constraints_due: bool,
    policies: Arc<Policies>,
    selection: Selection,
    /// SQLite's schema version the plans and capture were made for, and that schema.
    schema_version: i64,
    sqlite_schema: SourceSchema,
    applied_seq: i64,
    /// The mark of the log entry at `applied_seq` (`capture::entry_mark`), when known.
    applied_mark: Option<String>,
    /// When a batch last looked at the application's tables (`--into-existing`).
    last_app_look: Instant,
    known_rejects: bool,
    /// The position a batch last failed at on a table's primary key, and how many times in a row.
    key_taken: Option<(i64, u32)>,
    metrics: Arc<SourceMetrics>,
}

/// Numbers the streams of this process, for their temp tables' names.
static STREAMS: AtomicU64 = AtomicU64::new(0);

impl Stream {
    async fn start(pool: &Arc<Pool>, options: &SourceOptions, capture: &CaptureState) -> Result<Stream> {
        let file = SqliteFile::open(&options.sqlite)?;
        let mut stream = Stream {
            target: options.target.clone(),
            schema: options.schema.clone(),
            capture: capture.clone(),
            file,
            attached: false,
            pool: pool.clone(),
            client: None,
            temp_prefix: format!("_lite2pg_apply_{}_", STREAMS.fetch_add(1, Ordering::Relaxed)),
            plans_version: 0,
            plans: Arc::new(HashMap::new()),
            merges: HashMap::new(),
            tables: HashMap::new(),
            whole_tables: Arc::new(HashSet::new()),
            app_order: Vec::new(),
            app_shape: String::new(),
            constraints_due: false,
            policies: Arc::new(options.policies.clone()),
            selection: options.selection.clone(),
            schema_version: 0,
            sqlite_schema: SourceSchema::default(),
            applied_seq: 0,
            applied_mark: None,
            last_app_look: Instant::now(),
            known_rejects: false,
            key_taken: None,
            metrics: Metrics::new(Default::default()).source(&capture.source_id),
        };
        stream.ready().await?;
        Ok(stream)
    }

    /// Makes sure this stream holds its source's lock and a connection with its temp tables. When the lock was
    /// taken now (at the start, or after the lock connection was lost) or the file was opened again, checks the file
    /// against the stored position and follows the schema first.
    async fn ready(&mut self) -> Result<()> {
        // A connection still inside a transaction (a batch that ended some unforeseen way) is not reused.
        if self.client.as_ref().is_some_and(|client| client.is_closed() || client.in_transaction()) {
            self.client = None;
        }
        if self.client.is_none() {
            self.client = Some(self.pool.lease().await?);
        }
        // A failed attach is tried again before the next batch, though the lock is held by then.
        self.attached &= !self.pool.lock_source(&self.capture.source_id).await?;
        if !self.attached {
            self.attach().await?;
            self.attached = true;
            tracing::info!("connected to PostgreSQL at {}", self.target.shown());
        }
        let client = self.client.as_mut().expect("leased above");
        for merge in self.merges.values() {
            client.ensure_temp_table(merge, self.plans_version).await?;
        }
        Ok(())
    }

    /// Applies batches until `target_seq` is reached (if given) or `stop` fires.
    async fn run(&mut self, summary: &mut RunSummary, target_seq: Option<i64>, stop: StopWhen) -> Result<()> {
        self.file.prune(self.applied_seq).await?;
        let mut outage = Outage::default();
        let mut last_version = None;
        let mut poll = POLL_INTERVAL;
        let wake = FileWake::watch(&self.file.path);
        loop {
            let owed = !self.whole_tables.is_empty() || self.constraints_due;
            if target_seq.is_some_and(|target| self.applied_seq >= target) && !owed {
                return self.file.prune(self.applied_seq).await;
            }
            if self.pool.contended() {
                // Another source waits for a connection: this one goes back, one batch per turn.
                self.client = None;
            }
            let version = match self.file.look(self.applied_seq, &self.metrics) {
                Ok(version) => version,
                // Another process holding the file's lock a while (a VACUUM, a migration) is waited out.
                Err(err) if err.is_retryable() => match self.wait_out(&err, &mut outage, &stop).await? {
                    true => return Ok(()),
                    false => continue,
                },
                Err(err) => return Err(err),
            };
            if version.is_none() {
                last_version = None;
            }
            let app_look_due = self.policies.into_existing && self.last_app_look.elapsed() >= APP_SHAPE_EVERY;
            let idle = version.filter(|_| target_seq.is_none() && last_version == version && !outage.ongoing() && !app_look_due);
            if let Some(seen) = idle {
                // Idle after a burst: the applied entries leave the log now, not at the next write.
                self.file.maybe_prune(self.applied_seq).await?;
                poll = match wake.wait(&stop, poll).await {
                    Woken::Stop => return Ok(()),
                    Woken::Write => {
                        self.file.await_commit(seen).await;
                        AFTER_WRITE_POLL
                    }
                    Woken::Timer => (poll * 2).min(wake.idle_poll(IDLE_POLL_INTERVAL)),
                };
                continue;
            }
            poll = POLL_INTERVAL;
            self.last_app_look = Instant::now();
            match self.apply_batch().await {
                Ok(Applied::Adjusted) => continue,
                Ok(applied) => {
                    if matches!(applied, Applied::Nothing) {
                        self.metrics.succeeded();
                    }
                    outage.recovered();
                    last_version = version;
                    if let Applied::Batch(stats) = applied {
                        self.file.backlog_moved();
                        summary.batches += 1;
                        summary.upserts += stats.upserts;
                        summary.deletes += stats.deletes;
                        summary.rejects += stats.rejects;
                    }
                    self.file.maybe_prune(self.applied_seq).await?;
                }
                // Reading the old file tripped over the new one's journal (see `look`): the next batch opens it.
                Err(_) if !self.file.replaced && self.file.renamed_over() => self.file.replaced = true,
                Err(err) if err.is_retryable() => {
                    if self.wait_out(&err, &mut outage, &stop).await? {
                        return Ok(());
                    }
                }
                Err(err) => {
                    self.metrics.failed(&err);
                    tracing::debug!(kind = ?err.kind(), "stopping: {err}");
                    self.record_error(&err).await;
                    return Err(err);
                }
            }
        }
    }

    /// Counts a failure waiting can fix and waits before the next try; returns whether asked to stop meanwhile, or
    /// the error once a one-off run has waited as long as it may.
    async fn wait_out(&mut self, err: &Error, outage: &mut Outage, stop: &StopWhen) -> Result<bool> {
        self.metrics.failed(err);
        tracing::debug!("batch failed: {err}");
        if err.kind() == ErrorKind::PgConnect {
            self.client = None;
        }
        let pause = outage.failed(err, stop);
        // A daemon that keeps failing shows why in `status`, not only in its log.
        if outage.noteworthy() || pause.is_err() {
            self.record_error(err).await;
        }
        Ok(stop.wait(pause?).await)
    }

    /// Stores `err` for `status`, when PostgreSQL can be reached on this stream's connection.
    async fn record_error(&self, err: &Error) {
        if let Some(client) = &self.client {
            if let Err(failed) = state::record_error(&**client, &self.capture.source_id, &err.to_string()).await {
                tracing::debug!("could not record the error for status: {failed}");
            }
        }
    }
}

fn backoff(failures: u32) -> Duration {
    (Duration::from_millis(100) * 2u32.saturating_pow(failures.min(10))).min(MAX_BACKOFF)
}

/// What one attempt at a batch did.
enum Applied {
    /// Nothing was committed in SQLite since the position.
    Nothing,
    Batch(BatchStats),
    /// PostgreSQL's tables were adjusted; the batch is to be tried again at once.
    Adjusted,
}
