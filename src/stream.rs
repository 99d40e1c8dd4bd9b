//! Streaming: read the change log in whole-transaction batches and apply each batch to PostgreSQL in one
//! transaction together with the new position; prune the log only after PostgreSQL committed.
//!
//! Contract (the guarantee, kept here): a batch is every log entry after `applied_seq` visible in one SQLite read
//! snapshot, so it holds only whole committed SQLite transactions; rows are read in that same snapshot; data and
//! `applied_seq` commit together; the log is pruned afterwards. A crash at any point re-applies an idempotent
//! batch or nothing.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::SinkExt;
use rusqlite::Connection;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_postgres::Client;

use crate::config::{MisfitAction, Policies};
use crate::constraints::Declared;
use crate::error::{Error, ErrorKind, Result, RetryPolicy};
use crate::mapping::layout::Layout;
use crate::mapping::table::TablePlan;
use crate::mapping::types::{encode_binary, is_untyped, untyped_target, widened_type, ColumnStats, PgType, SqlValue};
use crate::metrics::{Metrics, SourceMetrics};
use crate::pg::apply::{existing_plan, loosen_unique_indexes, primary_key, unique_sets, Staged, TableMerge};
use crate::pg::copy::{CopyEncoder, CHUNK_BYTES};
use crate::pg::pool::{Lease, Pool};
use crate::pg::state::{self, Reject, StoredReject};
use crate::pg::PgTarget;
use crate::snapshot::{snapshot, SnapshotOptions, SnapshotReport};
use crate::source::Selection;
use crate::sqlite::capture::{self, CaptureState};
use crate::sqlite::changes::{changed_tables, read_all, read_changes, Change, SeqRange};
use crate::sqlite::introspect::{SourceSchema, Table};
use crate::sqlite::scan::column_stats_of;
use crate::sqlite::{open, Access};
use crate::wake::{FileWake, Woken, AFTER_WRITE_POLL};

/// How often a stream looks for new commits: soon after the last one, less often the longer it has been idle
/// (a hundred idle sources in one process then cost little CPU).
const POLL_INTERVAL: Duration = Duration::from_millis(5);
const IDLE_POLL_INTERVAL: Duration = Duration::from_millis(20);
/// After a write, how long and how often the stream looks for the commit to show (`Stream::await_commit`).
const COMMIT_SETTLE: Duration = Duration::from_millis(20);
const COMMIT_SETTLE_POLL: Duration = Duration::from_micros(100);
/// Added to a reject's reason when the column's policy asked to widen it but no type holds the value with the rest.
const NO_WIDER_TYPE: &str = "; no PostgreSQL type holds it together with the column's other values as themselves";
/// Longest wait between retries after a failure.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a one-off run (`StopWhen::CaughtUp`) rides out failures that waiting could fix before giving up.
pub const ONCE_WAIT: Duration = Duration::from_secs(60);
/// Prune the log once this many entries are applied, or `PRUNE_EVERY` passed.
const PRUNE_ENTRIES: i64 = 10_000;
const PRUNE_EVERY: Duration = Duration::from_secs(1);
/// How often the backlog (pending entries, lag) is measured for metrics.
const BACKLOG_EVERY: Duration = Duration::from_secs(1);
/// Into the application's own tables: how often an idle stream looks whether the application migrated PostgreSQL
/// (a column SQLite has may have appeared there, and its table is then copied whole).
const APP_SHAPE_EVERY: Duration = Duration::from_secs(2);

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
    run_in(&Pool::new(options.target.clone(), 1), options, stop, &metrics, on_snapshot).await
}

/// `run` on connections leased from `pool`, shared with other sources.
pub async fn run_in(
    pool: &Arc<Pool>,
    options: &SnapshotOptions,
    stop: StopWhen,
    metrics: &Metrics,
    on_snapshot: impl Fn(&SnapshotReport),
) -> Result<RunSummary> {
    let Some(source_id) = wait_for_identity(options, &stop).await? else {
        return Ok(RunSummary::default());
    };
    let metrics = metrics.source(&source_id);
    let options = SnapshotOptions { source_id: Some(source_id.clone()), ..options.clone() };
    let mut summary = RunSummary { source_id: source_id.clone(), ..RunSummary::default() };
    let mut outage = Outage::default();
    let mut stream = loop {
        let opened = file_identity(&options.sqlite);
        match start(pool, &options, &mut summary, &on_snapshot).await {
            Ok(stream) => break stream,
            // Another file was renamed over the path meanwhile: reading the old one can fail on the new one's
            // journal (see `Stream::look`); the new one is what to start from.
            Err(_) if file_identity(&options.sqlite) != opened => continue,
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
            true => Some(stream.newest_seq()?),
            false => None,
        };
        stream.run(&mut summary, target_seq, stop).await
    }
    .await;
    summary.applied_seq = stream.applied_seq;
    drop(stream);
    pool.unlock_source(&source_id).await;
    result.map(|()| summary)
}

/// `source_identity`, waiting out what waiting can fix as the start does: another process holding the file's lock
/// (a VACUUM, a migration) must not end a daemon that is starting. `None` when asked to stop meanwhile.
async fn wait_for_identity(options: &SnapshotOptions, stop: &StopWhen) -> Result<Option<String>> {
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
fn source_identity(options: &SnapshotOptions) -> Result<String> {
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
    state::refuse_promoted_file(&*client, &options.sqlite).await?;
    // A source already copied resumes with its capture as it is: the stream follows whatever changed in the
    // schema meanwhile (and installing capture first would hide tables rebuilt while lite2pg was stopped).
    let installed = capture::read_state(&open(&options.sqlite, Access::ReadOnly)?)?
        .filter(|installed| options.source_id.as_deref().is_none_or(|id| id == installed.source_id));
    if let Some(installed) = installed {
        if state::source(&*client, &installed.source_id).await?.is_some_and(|row| row.snapshot_seq.is_some()) {
            drop(client);
            return Stream::start(pool, options, &installed).await;
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
    let installed = capture::require_state(&open(&options.sqlite, Access::ReadOnly)?, &options.sqlite)?;
    Stream::start(pool, options, &installed).await
}

/// How long `reapply` waits for a running daemon to apply what it logged.
const REAPPLY_WAIT: Duration = Duration::from_secs(120);

/// Sends rows through the normal apply path again: their keys (per table id) are logged in SQLite as if the rows
/// had just changed, then applied by this process, or by the running daemon when one holds the source. Returns
/// how many keys were logged. Used by `verify --repair` and `rejects --retry`.
pub async fn reapply(options: &SnapshotOptions, source_id: &str, keys: Vec<(i64, Vec<Vec<SqlValue>>)>) -> Result<u64> {
    let mut conn = open(&options.sqlite, Access::ReadWrite)?;
    let (mut logged, mut newest) = (0u64, 0i64);
    for (table_id, keys) in keys.iter().filter(|(_, keys)| !keys.is_empty()) {
        newest = capture::log_keys(&mut conn, *table_id, keys)?;
        logged += keys.len() as u64;
    }
    drop(conn);
    if logged == 0 {
        return Ok(0);
    }
    match run(options, StopWhen::CaughtUp, Metrics::new(Default::default()), |_| {}).await {
        Ok(_) => Ok(logged),
        Err(err) if err.kind() == ErrorKind::Locked => {
            tracing::info!("a running lite2pg holds source {source_id}; waiting for it to apply the logged rows");
            wait_until_applied(options, source_id, newest).await.map(|()| logged)
        }
        Err(err) => Err(err),
    }
}

/// Applies rejected rows again (`lite2pg rejects --retry`): finds their keys in SQLite and re-applies them.
/// A running daemon applies them with its own settings.
pub async fn retry_rejects(
    options: &SnapshotOptions,
    conn: &Connection,
    capture: &CaptureState,
    rejects: &[StoredReject],
) -> Result<u64> {
    let schema = crate::sqlite::introspect::read_schema(conn)?;
    let mut keys = Vec::new();
    for captured in &capture.tables {
        let wanted: Vec<serde_json::Value> =
            rejects.iter().filter(|r| r.table == captured.name).filter_map(|r| serde_json::from_str(&r.key).ok()).collect();
        if let (false, Some(table)) = (wanted.is_empty(), schema.table(&captured.name)) {
            keys.push((captured.id, capture::keys_with_json(conn, table, captured, &wanted)?));
        }
    }
    reapply(options, &capture.source_id, keys).await
}

async fn wait_until_applied(options: &SnapshotOptions, source_id: &str, seq: i64) -> Result<()> {
    let client = options.target.connect().await?;
    let deadline = Instant::now() + REAPPLY_WAIT;
    while Instant::now() < deadline {
        if state::source(&client, source_id).await?.is_some_and(|row| row.applied_seq >= seq) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(Error::new(
        ErrorKind::State,
        format!("the running lite2pg did not apply the logged rows within {}s", REAPPLY_WAIT.as_secs()),
    )
    .with_hint("check it with `lite2pg status`; the entries stay in the log and will be applied"))
}

impl StopWhen {
    /// The same kind of stop for one of several streams, woken by `notify`.
    pub fn own(&self, notify: Arc<tokio::sync::Notify>) -> StopWhen {
        match self {
            StopWhen::Signal(_) => StopWhen::Signal(notify),
            once => once.clone(),
        }
    }

    /// Whether this is a one-off run, which ends once caught up.
    pub fn is_once(&self) -> bool {
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
    pub async fn wait(&self, period: Duration) -> bool {
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
    sqlite: PathBuf,
    /// Device and inode of the file the connections opened: another file renamed over the path is noticed.
    opened_file: Option<FileIdentity>,
    /// The path holds another file than the one opened: reopen and check it before the next batch.
    replaced: bool,
    /// Whether the file was checked and the position and plans read since this process took the source's lock.
    attached: bool,
    reader: Option<Connection>,
    /// Writes to the file (prune, capture changes) off the async thread: a prune may wait for a checkpoint's
    /// fsync, and other sources' streams share that thread.
    pruner: Arc<std::sync::Mutex<Connection>>,
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
    pruned_seq: i64,
    last_prune: Instant,
    last_backlog: Option<Instant>,
    /// When a batch last looked at the application's tables (`--into-existing`).
    last_app_look: Instant,
    known_rejects: bool,
    metrics: Arc<SourceMetrics>,
}

/// Numbers the streams of this process, for their temp tables' names.
static STREAMS: AtomicU64 = AtomicU64::new(0);

impl Stream {
    async fn start(pool: &Arc<Pool>, options: &SnapshotOptions, capture: &CaptureState) -> Result<Stream> {
        let (opened_file, reader, pruner) = open_connections(&options.sqlite)?;
        let mut stream = Stream {
            target: options.target.clone(),
            schema: options.schema.clone(),
            capture: capture.clone(),
            sqlite: options.sqlite.clone(),
            opened_file,
            replaced: false,
            attached: false,
            reader: Some(reader),
            pruner: Arc::new(std::sync::Mutex::new(pruner)),
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
            pruned_seq: 0,
            last_prune: Instant::now(),
            last_backlog: None,
            last_app_look: Instant::now(),
            known_rejects: false,
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

    /// Checks the file against the stored position, then follows the schema and builds table plans.
    async fn attach(&mut self) -> Result<()> {
        let client: &Client = self.client.as_ref().expect("leased before attaching");
        let row = state::source(client, &self.capture.source_id).await?.ok_or_else(|| {
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
        Arc::make_mut(&mut self.policies).into_existing = crate::existing::mode(self.policies.into_existing, Some(&row), false)?;
        let reader = self.reader.as_ref().expect("reader is home between batches");
        capture::check_position(reader, &self.sqlite, row.applied_seq, row.applied_mark.as_deref())?;
        let known_rejects = client
            .query_one("SELECT EXISTS (SELECT 1 FROM lite2pg.rejects WHERE source_id = $1)", &[&self.capture.source_id])
            .await?
            .get(0);
        self.applied_seq = row.applied_seq;
        self.applied_mark = row.applied_mark;
        self.known_rejects = known_rejects;
        self.follow_schema().await
    }

    /// Another file was renamed over the path (a `VACUUM INTO` copy, a restored backup) while the connections
    /// still read the old one: opens the path again, to be checked as at a start (same database, the applied entry
    /// still there) before the next batch.
    fn reopen(&mut self) -> Result<()> {
        tracing::info!("{} is another file now; reading that one", self.sqlite.display());
        let (opened_file, reader, pruner) = open_connections(&self.sqlite)?;
        let installed = capture::require_state(&reader, &self.sqlite)?;
        self.opened_file = opened_file;
        self.reader = Some(reader);
        self.pruner = Arc::new(std::sync::Mutex::new(pruner));
        self.capture.database_id = installed.database_id;
        self.attached = false;
        self.replaced = false;
        Ok(())
    }

    /// Whether the path names another file than the one the connections opened.
    fn file_replaced(&self) -> bool {
        let now = file_identity(&self.sqlite);
        now.is_some() && now != self.opened_file
    }

    /// A VACUUM renumbered rowids: every table keyed by rowid is marked to be copied whole (in PostgreSQL first, so
    /// a crash cannot skip the copy), then the canary is armed again, then the plans take up the marks. A VACUUM
    /// before the arming is in the copy, which reads the tables after it; one after it moves the canary again.
    async fn copy_rowid_tables_again(&mut self) -> Result<()> {
        let client: &Client = self.client.as_ref().expect("connected");
        let rowid_keyed: Vec<&str> =
            self.capture.tables.iter().filter(|t| t.key_columns.is_empty()).map(|t| t.name.as_str()).collect();
        for name in &rowid_keyed {
            state::set_resync(client, &self.capture.source_id, name, true).await?;
        }
        capture::arm_canary(&mut self.pruner.lock().expect("the pruner lock is never poisoned"))?;
        if !rowid_keyed.is_empty() {
            tracing::info!(
                "a VACUUM renumbered SQLite's rowids; copying the tables keyed by rowid again: {}",
                rowid_keyed.join(", ")
            );
        }
        self.load_plans().await
    }

    /// Follows SQLite's schema changes: capture first marks tables that may hold unlogged rows to be copied whole
    /// (in PostgreSQL, so a crash cannot skip the copy), then brings capture along (renames, drops, triggers on
    /// new and rebuilt tables), then PostgreSQL's tables, then the plans.
    async fn follow_schema(&mut self) -> Result<()> {
        loop {
            let reader = self.reader.as_ref().expect("reader is home between batches");
            let version = crate::sqlite::schema_version(reader)?;
            let schema = crate::sqlite::introspect::read_schema(reader)?;
            let drift = capture::drift(reader, &schema, |name| self.selection.wants(name))?;
            let unprobed = self.tables_with_unprobed_indexes(reader, &schema)?;
            let client: &mut Client = self.client.as_mut().expect("connected");
            for name in drift.uncaptured_rows() {
                state::register_table(client, &self.capture.source_id, &self.schema, name, &[], true).await?;
            }
            for name in unprobed {
                state::set_resync(&*client, &self.capture.source_id, &name, true).await?;
            }
            let chosen: Vec<&Table> = schema.tables.iter().filter(|t| self.selection.wants(&t.name)).collect();
            let Some((capture, version)) = capture::follow(
                &mut self.pruner.lock().expect("the pruner lock is never poisoned"),
                version,
                &drift,
                &chosen,
                None,
                true,
            )?
            else {
                continue;
            };
            // The application's own tables are never altered: the plans simply follow both sides.
            if !self.policies.into_existing {
                let mut tables = Vec::new();
                for captured in &capture.tables {
                    let table = schema.table(&captured.name).expect("captured tables exist");
                    let exists = state::table_exists(&*client, &self.schema, &table.name).await?;
                    let scan = |wanted: bool| -> Result<Option<Vec<ColumnStats>>> {
                        Ok(match wanted {
                            true => Some(crate::sqlite::scan::column_stats(reader, table, None)?.1),
                            false => None,
                        })
                    };
                    let stats = scan(!exists)?;
                    let rebuilt = scan(exists && drift.rebuilt.contains(&table.name))?;
                    let renamed_from = drift.renamed.iter().find(|(_, new)| new == &table.name).map(|(old, _)| old.as_str());
                    let previous = self.tables.values().find(|t| t.name == renamed_from.unwrap_or(&table.name));
                    let key_columns = &captured.key_columns;
                    tables.push(crate::evolve::TableNow { table, key_columns, previous, renamed_from, stats, rebuilt });
                }
                let target =
                    crate::evolve::Target { schema: &self.schema, source_id: &self.capture.source_id, policies: &self.policies };
                let tx = client.transaction().await?;
                crate::evolve::follow(&tx, &target, &tables, &drift.dropped).await?;
                tx.commit().await?;
            }
            self.capture = CaptureState { tables: capture.tables, ..self.capture.clone() };
            self.schema_version = version;
            self.sqlite_schema = schema;
            // Shared tables are only loosened: another source's rows may not keep a constraint this one declares.
            self.constraints_due = !self.policies.layout.shares_tables() && !self.policies.into_existing;
            return self.load_plans().await;
        }
    }

    /// Captured tables with a unique index their capture triggers do not probe yet (made since they were
    /// installed): a REPLACE through it may have displaced rows unlogged, so the table is copied whole (marked
    /// before `follow` installs the new triggers, like new tables, so a crash cannot skip the copy).
    fn tables_with_unprobed_indexes(&self, reader: &rusqlite::Connection, schema: &SourceSchema) -> Result<Vec<String>> {
        let mut found = Vec::new();
        for captured in &self.capture.tables {
            let Some(table) = schema.table(&captured.name) else { continue };
            let unprobed = capture::unprobed_indexes(reader, table, captured)?;
            if !unprobed.is_empty() {
                tracing::info!(
                    "table {:?} has unique indexes capture did not watch ({}): copying it whole, as a REPLACE through them may have gone unlogged",
                    table.name,
                    unprobed.join(", ")
                );
                found.push(table.name.clone());
            }
        }
        Ok(found)
    }

    /// Builds the table plans from SQLite's schema as last followed and PostgreSQL's column types as they are
    /// now, and reads which tables are to be copied whole.
    async fn load_plans(&mut self) -> Result<()> {
        let client: &Client = self.client.as_ref().expect("connected");
        let schema = &self.sqlite_schema;
        let into_existing = self.policies.into_existing;
        let captured_names: Vec<String> = self.capture.tables.iter().map(|t| crate::ident::pg_name(&t.name)).collect();
        if into_existing {
            // Before the plans: a migration in between shows as a changed shape at the next batch.
            self.app_shape = crate::existing::shape(client, &self.schema, &captured_names).await?;
        }
        let (mut plans, mut merges, mut tables) = (HashMap::new(), HashMap::new(), HashMap::new());
        for captured in &self.capture.tables {
            let table = schema.table(&captured.name).ok_or_else(|| {
                Error::new(ErrorKind::Schema, format!("captured table {:?} no longer exists in SQLite", captured.name))
                    .with_hint("run `lite2pg init` to update capture")
            })?;
            let plan = match into_existing {
                true => match self.app_plan(table, &captured.key_columns).await? {
                    Some(plan) => plan,
                    None => continue,
                },
                false => existing_plan(client, &self.schema, table, &captured.key_columns).await?,
            };
            let mut uniques = unique_sets(client, &self.schema, &table.name).await?;
            if into_existing {
                // A unique column SQLite lacks is not in the temp table; its values are the application's.
                uniques.retain(|set| set.iter().all(|c| plan.columns.iter().any(|p| &p.pg_name == c)));
            } else {
                loosen_unique_indexes(client, &self.schema, &table.name).await?;
            }
            let temp_table = format!("{}{}", self.temp_prefix, captured.id);
            let layout = self.policies.layout;
            let mut merge = TableMerge::new(&self.schema, temp_table, &plan, &uniques, layout);
            let current = primary_key(client, &self.schema, &table.name).await?;
            if !into_existing && current.as_ref().is_none_or(|(_, columns)| columns != &plan.pg_key(layout)) {
                if layout.shares_tables() {
                    return Err(Error::new(
                        ErrorKind::Schema,
                        format!(
                            "the primary key of {:?} changed in source {}, but the table is shared",
                            table.name, self.capture.source_id
                        ),
                    )
                    .with_hint("every source's copy of a shared table must have the same primary key"));
                }
                // A rebuild moved the key: the next batch empties the table, moves the key and copies it whole.
                merge.rekey(&self.schema, &table.name, current.as_ref().map(|(name, _)| name.as_str()), &plan.pg_key(layout));
                state::set_resync(client, &self.capture.source_id, &table.name, true).await?;
            }
            merges.insert(captured.id, merge);
            plans.insert(captured.id, plan);
            tables.insert(captured.id, table.clone());
        }
        if into_existing {
            let ordered = crate::existing::parent_first(client, &self.schema, &captured_names).await?;
            self.app_order = ordered
                .iter()
                .filter_map(|name| plans.iter().find(|(_, p): &(&i64, &TablePlan)| &crate::ident::pg_name(&p.name) == name))
                .map(|(id, _)| *id)
                .collect();
        }
        let resync = state::tables_to_resync(client, &self.capture.source_id).await?;
        self.whole_tables = Arc::new(
            self.capture.tables.iter().filter(|t| resync.contains(&t.name) && plans.contains_key(&t.id)).map(|t| t.id).collect(),
        );
        self.plans = Arc::new(plans);
        self.plans_version += 1;
        self.merges = merges;
        self.tables = tables;
        Ok(())
    }

    /// `--into-existing`: the plan of `table` into the application's table, when PostgreSQL has it. When the
    /// columns both sides have changed since the last plan (a column or the table appeared on the other side),
    /// the table is marked to be copied whole, so values written before both sides had it are not left behind.
    async fn app_plan(&self, table: &Table, key_columns: &[String]) -> Result<Option<TablePlan>> {
        let client: &Client = self.client.as_ref().expect("connected");
        let source_id = &self.capture.source_id;
        let plan = crate::existing::app_plan(client, &self.schema, table, key_columns).await?;
        let now = crate::existing::synced_columns(plan.as_ref());
        if state::synced_columns(client, source_id, &table.name).await?.as_ref() != Some(&now) {
            state::register_table(client, source_id, &self.schema, &table.name, key_columns, plan.is_some()).await?;
            state::set_synced_columns(client, source_id, &table.name, &now).await?;
            match &plan {
                Some(_) => tracing::info!(
                    "table {:?}: the columns both sides have are now ({}); copying it whole into PostgreSQL",
                    table.name,
                    now.join(", ")
                ),
                None => {
                    tracing::info!("table {:?} is not in PostgreSQL schema {}: not written until it is", table.name, self.schema)
                }
            }
        }
        Ok(plan)
    }

    fn newest_seq(&mut self) -> Result<i64> {
        capture::newest_seq(self.reader.as_ref().expect("reader is home between batches"))
    }

    /// Applies batches until `target_seq` is reached (if given) or `stop` fires.
    async fn run(&mut self, summary: &mut RunSummary, target_seq: Option<i64>, stop: StopWhen) -> Result<()> {
        self.prune().await?;
        let mut outage = Outage::default();
        let mut last_version = None;
        let mut poll = POLL_INTERVAL;
        let wake = FileWake::watch(&self.sqlite);
        loop {
            let owed = !self.whole_tables.is_empty() || self.constraints_due;
            if target_seq.is_some_and(|target| self.applied_seq >= target) && !owed {
                return self.prune().await;
            }
            if self.pool.contended() {
                // Another source waits for a connection: this one goes back, one batch per turn.
                self.client = None;
            }
            let version = match self.look() {
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
            if target_seq.is_none() && version.is_some() && last_version == version && !outage.ongoing() && !app_look_due {
                // Idle after a burst: the applied entries leave the log now, not at the next write.
                self.maybe_prune().await?;
                poll = match wake.wait(&stop, poll).await {
                    Woken::Stop => return Ok(()),
                    Woken::Write => {
                        self.await_commit(version.expect("idle streams have a version")).await;
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
                        self.last_backlog = None;
                        summary.batches += 1;
                        summary.upserts += stats.upserts;
                        summary.deletes += stats.deletes;
                        summary.rejects += stats.rejects;
                    }
                    self.maybe_prune().await?;
                }
                // Reading the old file tripped over the new one's journal (see `look`): the next batch opens it.
                Err(_) if !self.replaced && self.file_replaced() => self.replaced = true,
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

    /// Between batches: the file's data version (after measuring the backlog), or `None` once another file was
    /// renamed over the path; the next batch opens that one. Until then, reading the old file can trip over the new
    /// one's rollback journal, which has the same name: such an error is the replacement, not a failure.
    fn look(&mut self) -> Result<Option<i64>> {
        if !self.replaced && !self.file_replaced() {
            match self.measure_backlog().and_then(|()| self.data_version()) {
                Ok(version) => return Ok(Some(version)),
                Err(err) if !self.file_replaced() => return Err(err),
                Err(_) => {}
            }
        }
        self.replaced = true;
        Ok(None)
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
        data_version(self.reader.as_ref().expect("reader is home between batches"))
    }

    /// After a write to the file: SQLite shows a commit only once it updated the WAL index (shared memory, which
    /// inotify does not see), after the WAL's fsync, a millisecond or more after the write that woke the stream;
    /// the async timer is too coarse to look again that soon. Looks at the data version on a blocking thread every
    /// `COMMIT_SETTLE_POLL` until it moves from `seen` or `COMMIT_SETTLE` passed. A failing look ends the wait:
    /// the next `look` reports it.
    async fn await_commit(&mut self, seen: i64) {
        let reader = self.reader.take().expect("reader is home between batches");
        let waited = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            while data_version(&reader).is_ok_and(|now| now == seen) && started.elapsed() < COMMIT_SETTLE {
                std::thread::sleep(COMMIT_SETTLE_POLL);
            }
            reader
        });
        self.reader = Some(waited.await.expect("looking at the data version does not panic"));
    }

    /// Stores `err` for `status`, when PostgreSQL can be reached on this stream's connection.
    async fn record_error(&self, err: &Error) {
        if let Some(client) = &self.client {
            if let Err(failed) = state::record_error(&**client, &self.capture.source_id, &err.to_string()).await {
                tracing::debug!("could not record the error for status: {failed}");
            }
        }
    }

    /// Reads and applies one batch. Whatever happens, the batch's transaction has ended when this returns (or its
    /// connection is dropped); a constraint PostgreSQL holds and SQLite does not is relaxed here.
    async fn apply_batch(&mut self) -> Result<Applied> {
        if self.replaced {
            self.reopen()?;
        }
        self.ready().await?;
        if crate::sqlite::schema_version(self.reader.as_ref().expect("reader is home between batches"))? != self.schema_version {
            self.follow_schema().await?;
            return Ok(Applied::Adjusted);
        }
        let started = Instant::now();
        let attempt = self.attempt_batch(started).await;
        if let Err(lost) = self.end_transaction().await {
            // Nothing more can be done without the connection; the batch is tried again on a new one.
            return Err(match attempt {
                Err(err) if err.is_retryable() => err,
                Err(err) => lost.context(format!("the batch failed ({err}), then")),
                Ok(_) => lost,
            });
        }
        match attempt {
            Ok(Attempt::Committed(stats, mark)) => self.committed(stats, mark, started).await,
            Ok(Attempt::Nothing) => Ok(Applied::Nothing),
            Ok(Attempt::SchemaMoved) => Ok(Applied::Adjusted),
            Ok(Attempt::Vacuumed) => self.copy_rowid_tables_again().await.map(|()| Applied::Adjusted),
            Ok(Attempt::TypesMoved) => self.load_plans().await.map(|()| Applied::Adjusted),
            Ok(Attempt::Widen(widening)) => self.widen(&widening).await.map(|()| Applied::Adjusted),
            Err(err) if err.kind().retry_policy() == RetryPolicy::Relax => match self.relax_constraint(&err).await? {
                true => Ok(Applied::Adjusted),
                // The application's constraints are its own: rows it would refuse stop the sync, never the constraint.
                false if self.policies.into_existing => Err(err.with_hint(
                    "SQLite holds rows this constraint of the application's refuses; nothing of the batch was applied. \
                     Fix those rows in SQLite (or the constraint in PostgreSQL), then start lite2pg again",
                )),
                false => Err(err),
            },
            Err(err) => Err(err),
        }
    }

    /// One try at a batch, inside a transaction it leaves open unless it committed.
    async fn attempt_batch(&mut self, started: Instant) -> Result<Attempt> {
        // Before the reader leaves: a failure here must find it home.
        self.client.as_ref().expect("connected above").begin().await?;
        if self.policies.layout.shares_tables() && !self.shared_types_current().await? {
            return Ok(Attempt::TypesMoved);
        }
        if self.policies.into_existing && !self.app_shape_current().await? {
            return Ok(Attempt::TypesMoved);
        }
        let (sender, mut receiver) = mpsc::channel::<Message>(4);
        let reader = self.reader.take().expect("reader is home between batches");
        let plan = ReadPlan {
            plans: self.plans.clone(),
            policies: self.policies.clone(),
            whole_tables: self.whole_tables.clone(),
            constraints_due: self.constraints_due,
            schema_version: self.schema_version,
            sqlite: self.sqlite.clone(),
            applied_mark: self.applied_mark.clone(),
        };
        let applied = self.applied_seq;
        let read = tokio::task::spawn_blocking(move || {
            let result = read_batch(&reader, &plan, applied, &sender);
            (reader, result)
        });
        let written = self.write_tables(&mut receiver).await;
        drop(receiver);
        let (reader, read_result) = read.await.expect("batch readers do not panic");
        self.reader = Some(reader);
        match (read_result, written) {
            (Ok(BatchRead::Sent(range, mark)), Ok(written)) => {
                self.finish_batch(range, mark.as_deref(), written, started).await.map(|stats| Attempt::Committed(stats, mark))
            }
            (Ok(BatchRead::Nothing), Ok(_)) => Ok(Attempt::Nothing),
            (Ok(BatchRead::SchemaMoved), _) => Ok(Attempt::SchemaMoved),
            (Ok(BatchRead::Vacuumed), _) => Ok(Attempt::Vacuumed),
            (Ok(BatchRead::Widen(needed)), _) => Ok(Attempt::Widen(needed)),
            // When PostgreSQL refused a statement, the reader only saw the writing side leave: PostgreSQL's
            // error is the cause.
            (_, Err(err)) | (Err(err), Ok(_)) => Err(err),
        }
    }

    /// Rolls back a batch transaction still open; a connection that cannot is dropped rather than reused.
    async fn end_transaction(&mut self) -> Result<()> {
        let Some(client) = self.client.as_ref().filter(|client| client.in_transaction()) else {
            return Ok(());
        };
        let rolled_back = client.rollback().await;
        if rolled_back.is_err() {
            self.client = None;
        }
        rolled_back
    }

    /// Takes a committed batch's position and reports it.
    async fn committed(&mut self, stats: BatchStats, mark: Option<String>, started: Instant) -> Result<Applied> {
        self.applied_seq = stats.to_seq;
        self.applied_mark = mark;
        self.known_rejects |= stats.rejects > 0;
        if !self.whole_tables.is_empty() || self.constraints_due {
            // Keys and unique constraints may have moved; plans are made anew from the tables as they are now.
            self.constraints_due = false;
            self.load_plans().await?;
        }
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
        Ok(Applied::Batch(stats))
    }

    /// SQLite enforces foreign keys only when the writer asks, holds no constraint PostgreSQL was given by hand,
    /// and its UNIQUE and NOT NULL semantics differ from PostgreSQL's in corner cases. When PostgreSQL refuses a
    /// state SQLite committed, the PostgreSQL constraint is the one that is wrong about this data: drop it
    /// (loudly) so the copy stays equal and the stream does not stall. Only constraints on the tables this stream
    /// writes are dropped; returns false (the error stands) for any other.
    async fn relax_constraint(&self, err: &Error) -> Result<bool> {
        let Some(pg) = err.postgres() else { return Ok(false) };
        if self.policies.into_existing {
            return Ok(false);
        }
        let (Some(schema), Some(table)) = (&pg.schema, &pg.table) else { return Ok(false) };
        if *schema != self.schema || !self.plans.values().any(|plan| &plan.name == table) {
            return Ok(false);
        }
        let target = crate::ident::qualified(schema, table);
        let (statement, what) = match (pg.code.as_str(), &pg.column, &pg.constraint) {
            ("23502", Some(column), _) => (
                format!("ALTER TABLE {target} ALTER COLUMN {} DROP NOT NULL", crate::ident::quote(column)),
                format!("NOT NULL on column {column:?}"),
            ),
            (_, _, Some(constraint)) => (
                format!("ALTER TABLE {target} DROP CONSTRAINT IF EXISTS {}", crate::ident::quote(constraint)),
                format!("constraint {constraint:?}"),
            ),
            _ => return Ok(false),
        };
        let client: &Client = self.client.as_ref().expect("connected");
        client.batch_execute(&statement).await.map_err(|failed| {
            Error::from(failed).context(format!("cannot drop {what} of {table:?}, which SQLite's rows break ({err})"))
        })?;
        tracing::warn!(
            "SQLite committed rows that break {what} on {table:?} ({}, SQLSTATE {}); it was dropped in PostgreSQL so the copy stays equal; retrying the batch",
            pg.message,
            pg.code
        );
        Ok(true)
    }

    /// In the batch's transaction on shared tables: says whose rows it writes, locks the tables against DDL until
    /// it ends, and checks that no other source widened a column since the plans were made (the rows are encoded
    /// in the column types of the plans).
    async fn shared_types_current(&self) -> Result<bool> {
        let client: &Client = self.client.as_ref().expect("connected");
        state::act_as_source(client, &self.capture.source_id, true).await?;
        if self.plans.is_empty() {
            return Ok(true);
        }
        let tables: Vec<String> = self.plans.values().map(|p| crate::ident::qualified(&self.schema, &p.name)).collect();
        client.batch_execute(&format!("LOCK TABLE {} IN ROW EXCLUSIVE MODE", tables.join(", "))).await?;
        let rows = client
            .query(
                "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod)
                 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                 WHERE c.oid = ANY($1::text[]::regclass[]) AND a.attnum > 0 AND NOT a.attisdropped",
                &[&tables],
            )
            .await?;
        let now: HashMap<(String, String), String> = rows.iter().map(|r| ((r.get(0), r.get(1)), r.get(2))).collect();
        Ok(self.plans.values().all(|plan| {
            plan.columns.iter().all(|c| {
                now.get(&(crate::ident::pg_name(&plan.name), c.pg_name.clone())).and_then(|t| PgType::from_format_type(t))
                    == Some(c.pg_type)
            })
        }))
    }

    /// `--into-existing`, in the batch's transaction: whether the application's tables still have the shape the
    /// plans were made from (its migrations may change PostgreSQL's side at any time); then locks the planned ones
    /// against DDL until the batch ends.
    async fn app_shape_current(&self) -> Result<bool> {
        let client: &Client = self.client.as_ref().expect("connected");
        let names: Vec<String> = self.capture.tables.iter().map(|t| crate::ident::pg_name(&t.name)).collect();
        if crate::existing::shape(client, &self.schema, &names).await? != self.app_shape {
            tracing::info!("the application's tables changed in PostgreSQL; matching them again");
            return Ok(false);
        }
        if !self.plans.is_empty() {
            let tables: Vec<String> = self.plans.values().map(|p| crate::ident::qualified(&self.schema, &p.name)).collect();
            client.batch_execute(&format!("LOCK TABLE {} IN ROW EXCLUSIVE MODE", tables.join(", "))).await?;
        }
        Ok(true)
    }

    /// Alters a column to a type that holds the value that did not fit; when the conversion is not exact for
    /// every stored value, the table is marked to be copied whole in the next batch.
    async fn widen(&mut self, widening: &Widening) -> Result<()> {
        let (plan, table) = (&self.plans[&widening.table_id], &self.tables[&widening.table_id]);
        let from = plan.columns[widening.column].pg_type;
        // Its foreign-key partners change with it: PostgreSQL compares keys only within one type.
        let tables: Vec<&Table> = self.tables.values().collect();
        let this = tables.iter().position(|t| t.name == table.name).expect("the table is among its own");
        let columns: Vec<crate::evolve::ColumnWidening> =
            crate::mapping::table::foreign_key_group(&tables, this, widening.column)
                .into_iter()
                .map(|(t, column)| crate::evolve::ColumnWidening { table: tables[t], column, to: widening.to })
                .collect();
        let client: &mut Client = self.client.as_mut().expect("connected");
        let exact = crate::evolve::widen_column(client, &self.schema, &self.capture.source_id, &columns).await?;
        tracing::info!(
            "widened column {:?} of table {:?} in PostgreSQL from {from} to {}: a {} value arrived in the row with key {}{}",
            plan.columns[widening.column].name,
            plan.name,
            widening.to,
            widening.value.storage_class(),
            serde_json::Value::Array(widening.key.iter().map(SqlValue::to_json).collect()),
            if exact { "" } else { "; the table is copied again so every value is exact" }
        );
        self.load_plans().await
    }

    /// Copies each changed table into its temp table and merges it, as the reading thread sends it; a table
    /// copied whole is emptied and copied straight into its target.
    async fn write_tables(&mut self, receiver: &mut mpsc::Receiver<Message>) -> Result<Written> {
        let lease = self.client.as_ref().expect("connected above");
        let client: &Client = lease;
        let mut written = Written::default();
        let (mut sink, mut copied_bytes) = (None, 0u64);
        let mut merged_later = Vec::new();
        while let Some(message) = receiver.recv().await {
            match message {
                Message::Data { id, chunk } => {
                    if sink.is_none() {
                        let merge = &self.merges[&id];
                        let copy = match self.whole_tables.contains(&id) && !self.policies.into_existing {
                            true => {
                                merge.delete_all(client, &self.capture.source_id).await.map(|()| merge.copy_whole.as_str())?
                            }
                            false => merge.copy_in.as_str(),
                        };
                        let copy = lease.prepared(copy).await?;
                        sink = Some(Box::pin(client.copy_in::<_, Bytes>(&copy).await?));
                    }
                    copied_bytes += chunk.len() as u64;
                    sink.as_mut().expect("opened above").send(Bytes::from(chunk)).await?;
                }
                Message::End { id, counts } => {
                    sink.take().expect("every table sends data before its end").as_mut().finish().await?;
                    let table = &self.plans[&id].name;
                    let rows = counts.upserts + counts.deletes;
                    let copied = std::mem::take(&mut copied_bytes);
                    let staged = || Staged { rows, truncate: lease.temp_table_written(&self.merges[&id].temp_table, copied) };
                    if self.policies.into_existing {
                        merged_later.push((id, staged()));
                    } else if self.whole_tables.contains(&id) {
                        state::set_resync(client, &self.capture.source_id, table, false).await?;
                    } else {
                        self.merges[&id]
                            .merge(client, &self.capture.source_id, table, staged(), self.known_rejects)
                            .await
                            .map_err(|err| err.context(format!("applying changes to {table:?}")))?;
                    }
                    written.tables += 1;
                    written.per_table.push((table.clone(), counts.upserts, counts.deletes));
                    written.upserts += counts.upserts;
                    written.deletes += counts.deletes;
                    written.rejects.extend(counts.rejects);
                }
            }
        }
        self.merge_in_key_order(&merged_later).await?;
        Ok(written)
    }

    /// `--into-existing`: merges the copied tables with upserts parent-first and deletes child-first, so that the
    /// application's foreign keys hold after every statement even when they are not deferrable.
    async fn merge_in_key_order(&self, copied: &[(i64, Staged)]) -> Result<()> {
        let client: &Client = self.client.as_ref().expect("connected above");
        let in_order: Vec<(i64, Staged)> =
            self.app_order.iter().filter_map(|id| copied.iter().find(|(copied, _)| copied == id)).copied().collect();
        let context = |id: &i64| format!("applying changes to {:?}", self.plans[id].name);
        for (id, staged) in &in_order {
            let upserted = self.merges[id].upsert(client, &self.capture.source_id, staged.rows).await;
            upserted.map_err(|err| err.context(context(id)))?;
        }
        for (id, staged) in in_order.iter().rev() {
            let (table, whole) = (&self.plans[id].name, self.whole_tables.contains(id));
            let merge = &self.merges[id];
            merge
                .delete(client, &self.capture.source_id, table, whole, self.known_rejects, staged.truncate)
                .await
                .map_err(|err| err.context(context(id)))?;
            if whole {
                state::set_resync(client, &self.capture.source_id, table, false).await?;
            }
        }
        Ok(())
    }

    /// Makes constraints when due, stores rejects and the new position with the mark of its log entry, then commits.
    async fn finish_batch(&self, range: SeqRange, mark: Option<&str>, written: Written, started: Instant) -> Result<BatchStats> {
        let client: &Client = self.client.as_ref().expect("connected above");
        if self.constraints_due {
            self.make_constraints().await?;
        }
        if !written.rejects.is_empty() {
            // Skipped when empty: its statement's preparing alone is a round trip every small batch would wait on.
            state::store_rejects(client, &self.capture.source_id, &written.rejects).await?;
        }
        let lease = self.client.as_ref().expect("connected above");
        let advance = lease.prepared(state::ADVANCE).await?;
        state::advance(client, &advance, &self.capture.source_id, range.after, range.up_to, mark).await?;
        crate::fail_point!("batch-before-commit");
        self.client.as_ref().expect("connected above").commit().await?;
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

    /// Inside the batch's transaction, once its rows are written (PostgreSQL holds SQLite's rows, so what it
    /// refuses now SQLite's rows do not keep either): makes each table's constraints what SQLite declares.
    async fn make_constraints(&self) -> Result<()> {
        let client: &Client = self.client.as_ref().expect("connected above");
        // PostgreSQL alters no table with deferred checks pending (rows this batch wrote): run them now.
        client.batch_execute("SET CONSTRAINTS ALL IMMEDIATE").await?;
        let known: Vec<&Table> = self.sqlite_schema.tables.iter().collect();
        for (id, plan) in self.plans.iter() {
            let declared = Declared { table: &self.tables[id], plan, tables: &known, layout: Layout::SchemaPerSource };
            crate::constraints::reconcile(client, &self.schema, &declared).await?;
        }
        Ok(())
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
        // Never write through the old file's connection once another was renamed over the path: the two share
        // the journal's name, and the application may be writing the new one. The new file is pruned once opened.
        if self.file_replaced() {
            return Ok(());
        }
        let (pruner, up_to) = (self.pruner.clone(), self.applied_seq);
        let deleted = tokio::task::spawn_blocking(move || {
            capture::prune(&pruner.lock().expect("the pruner lock is never poisoned"), up_to)
        })
        .await
        .expect("pruning does not panic");
        let deleted = match deleted {
            Ok(deleted) => deleted,
            // Renamed over meanwhile, and the old file's connection tripped over the new one's journal (see `look`).
            Err(_) if self.file_replaced() => return Ok(()),
            // Another process holds the file's lock a while (a VACUUM, a migration): pruning can wait for a later turn.
            Err(err) if err.is_retryable() => {
                tracing::debug!("pruning postponed: {err}");
                self.last_prune = Instant::now();
                return Ok(());
            }
            Err(err) => return Err(err),
        };
        tracing::debug!(deleted, up_to = self.applied_seq, "pruned change log");
        self.pruned_seq = self.applied_seq;
        self.last_prune = Instant::now();
        Ok(())
    }
}

/// A file's device and inode: another file renamed over a path has others.
type FileIdentity = (u64, u64);

/// Opens the stream's reader and pruner, with the identity of the file at the path taken first (a file renamed
/// over it meanwhile is then noticed as a change).
fn open_connections(path: &Path) -> Result<(Option<FileIdentity>, Connection, Connection)> {
    let identity = file_identity(path);
    let reader = open(path, Access::ReadOnly)?;
    let pruner = open(path, Access::ReadWrite)?;
    pruner.pragma_update(None, "synchronous", "NORMAL")?;
    Ok((identity, reader, pruner))
}

/// The identity of the file at `path`, if it can be read.
#[cfg(unix)]
fn file_identity(path: &Path) -> Option<FileIdentity> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn file_identity(_: &Path) -> Option<FileIdentity> {
    None
}

fn backoff(failures: u32) -> Duration {
    (Duration::from_millis(100) * 2u32.saturating_pow(failures.min(10))).min(MAX_BACKOFF)
}

/// What the reading thread sends: COPY data for a table's temp table, then the table's counts.
enum Message {
    Data { id: i64, chunk: Vec<u8> },
    End { id: i64, counts: TableCounts },
}

/// One table's share of a batch.
#[derive(Default)]
struct TableCounts {
    upserts: u64,
    deletes: u64,
    rejects: Vec<Reject>,
}

/// How one try at a batch ended, before its transaction was closed.
enum Attempt {
    /// Committed, with the mark of the log entry at its new position.
    Committed(BatchStats, Option<String>),
    Nothing,
    /// SQLite's schema changed since the plans were made.
    SchemaMoved,
    /// VACUUM renumbered rowids since the last batch: rowid-keyed tables are to be copied whole first.
    Vacuumed,
    /// Another source widened a shared table's column since the plans were made.
    TypesMoved,
    /// A value needs a wider column first.
    Widen(Widening),
}

/// What one attempt at a batch did.
enum Applied {
    /// Nothing was committed in SQLite since the position.
    Nothing,
    Batch(BatchStats),
    /// PostgreSQL's tables were adjusted; the batch is to be tried again at once.
    Adjusted,
}

/// What the reading thread found.
enum BatchRead {
    /// Nothing committed since the position, no table to copy again and no constraint to make.
    Nothing,
    /// SQLite's schema changed since the plans were made: follow it first.
    SchemaMoved,
    /// A VACUUM renumbered rowids: tables keyed by rowid are to be copied whole first.
    Vacuumed,
    /// Changes up to `up_to` were sent; the mark of the log entry there.
    Sent(SeqRange, Option<String>),
    /// A value needs a wider column first; what was sent must be rolled back.
    Widen(Widening),
}

/// A column to widen before a batch can be applied, and the value that asks for it.
#[derive(Debug, Clone)]
struct Widening {
    table_id: i64,
    column: usize,
    to: PgType,
    key: Vec<SqlValue>,
    value: SqlValue,
}

/// What the reading thread works from: the plans, the policies and which tables are copied whole.
#[derive(Clone)]
struct ReadPlan {
    plans: Arc<HashMap<i64, TablePlan>>,
    policies: Arc<Policies>,
    whole_tables: Arc<HashSet<i64>>,
    /// Forces a batch even when nothing was committed, for the constraints it makes.
    constraints_due: bool,
    schema_version: i64,
    /// The file, for messages, and the mark of the entry at the position the batch starts from.
    sqlite: PathBuf,
    applied_mark: Option<String>,
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

/// The file's data version as `reader` sees it: it moves when another connection commits.
fn data_version(reader: &Connection) -> Result<i64> {
    Ok(reader.prepare_cached("PRAGMA data_version")?.query_row([], |r| r.get(0))?)
}

/// Reads one batch in one SQLite read transaction and sends each changed table's COPY data.
fn read_batch(conn: &Connection, read: &ReadPlan, applied: i64, sender: &mpsc::Sender<Message>) -> Result<BatchRead> {
    conn.execute_batch("BEGIN")?;
    let result = read_batch_in_transaction(conn, read, applied, sender);
    conn.execute_batch("COMMIT")?;
    result
}

fn read_batch_in_transaction(
    conn: &Connection,
    read: &ReadPlan,
    applied: i64,
    sender: &mpsc::Sender<Message>,
) -> Result<BatchRead> {
    if crate::sqlite::schema_version(conn)? != read.schema_version {
        return Ok(BatchRead::SchemaMoved);
    }
    // The file must still be the one the position was applied from, and its rowids those of the last batch.
    let up_to = capture::check_position(conn, &read.sqlite, applied, read.applied_mark.as_deref())?;
    if capture::vacuumed(conn)? {
        return Ok(BatchRead::Vacuumed);
    }
    if up_to == applied && read.whole_tables.is_empty() && !read.constraints_due {
        return Ok(BatchRead::Nothing);
    }
    let range = SeqRange { after: applied, up_to };
    let mut ids = changed_tables(conn, range)?;
    ids.extend(read.whole_tables.iter().filter(|id| !ids.contains(id)).copied().collect::<Vec<_>>());
    for id in ids {
        let Some(plan) = read.plans.get(&id) else { continue };
        let table = TableRead { conn, plan, id, policies: &read.policies, sender };
        if let Some(widening) = table.send(range, read.whole_tables.contains(&id))? {
            return Ok(BatchRead::Widen(widening));
        }
    }
    Ok(BatchRead::Sent(range, capture::entry_mark(conn, up_to)?))
}

/// One table's part of a batch on the reading thread.
struct TableRead<'a> {
    conn: &'a Connection,
    plan: &'a TablePlan,
    id: i64,
    policies: &'a Policies,
    sender: &'a mpsc::Sender<Message>,
}

impl TableRead<'_> {
    /// Encodes the table's changed keys for its temp table: present rows with `gone = false`, gone keys with the
    /// other columns NULL and `gone = true`; or, `whole_table`, every row for the target itself. A row holding a
    /// value its column cannot hold follows the column's misfit policy; `Some` asks for a wider column first.
    fn send(&self, range: SeqRange, whole_table: bool) -> Result<Option<Widening>> {
        let plan = self.plan;
        let mut encoder = CopyEncoder::default();
        let mut counts = TableCounts::default();
        let mut widening = None;
        let mut stored_kinds = HashMap::new();
        let types: Vec<_> = plan.columns.iter().map(|c| c.pg_type).chain([PgType::Boolean]).collect();
        // Rows for the target itself carry no gone flag; into existing tables every table goes through the temp table.
        let flag_columns = usize::from(!whole_table || self.policies.into_existing);
        let key_indexes = plan.key_indexes();
        let (present, gone) = (SqlValue::Integer(0), SqlValue::Integer(1));
        let mut key_row = vec![SqlValue::Null; plan.columns.len() + 1];
        // A key with its flag: `gone`, or NULL to keep the row PostgreSQL has as it is (neither deleted nor
        // upserted). A key PostgreSQL's key column cannot hold has no row there, so there is nothing to delete.
        let mut push_key = |encoder: &mut CopyEncoder, key: &[SqlValue], flag: &SqlValue| {
            for (slot, value) in key_indexes.iter().zip(key) {
                key_row[*slot] = value.clone();
            }
            key_row[plan.columns.len()] = flag.clone();
            encoder.push_row(key_row.iter().zip(types.iter().copied())).is_ok()
        };
        let on_change = |change: Change<'_>| {
            match change {
                Change::Present(row) => {
                    let with_flag = row.iter().chain([&present]).zip(types.iter().copied()).take(row.len() + flag_columns);
                    match encoder.push_row(ExactChain(with_flag, row.len() + flag_columns)) {
                        Ok(()) => counts.upserts += 1,
                        Err((column, misfit)) => {
                            let mut reject = Reject {
                                table: plan.name.clone(),
                                key: plan.key_of(row),
                                column: plan.columns[column].name.clone(),
                                reason: misfit.reason,
                                value: row[column].clone(),
                            };
                            let (column_type, declared) = (plan.columns[column].pg_type, &plan.columns[column].declared_type);
                            let action = match self.awaits_first_type(column, &mut stored_kinds)? {
                                true => MisfitAction::Widen,
                                false => {
                                    self.policies.misfit(&plan.name, &reject.column).action(&reject.value, column_type, declared)
                                }
                            };
                            // The application's column is never altered: what would widen it is rejected.
                            let action = match (action, self.policies.into_existing) {
                                (MisfitAction::Widen, true) => MisfitAction::Reject,
                                (action, _) => action,
                            };
                            match action {
                                MisfitAction::Reject => {}
                                MisfitAction::Stop => return Err(reject.stop_error()),
                                MisfitAction::Widen => match self.wider_type(column, &reject.value, &mut stored_kinds)? {
                                    Some(to) => {
                                        widening = Some(Widening {
                                            table_id: self.id,
                                            column,
                                            to,
                                            key: reject.key,
                                            value: reject.value,
                                        });
                                        return Err(Error::new(ErrorKind::Schema, "a column must be widened first"));
                                    }
                                    None => reject.reason.push_str(NO_WIDER_TYPE),
                                },
                            }
                            if self.policies.into_existing {
                                // Deleting the row could break the application's foreign keys (or cascade):
                                // PostgreSQL keeps the version it has, and verify counts it as a known reject.
                                push_key(&mut encoder, &reject.key, &SqlValue::Null);
                            } else if !whole_table {
                                counts.deletes += u64::from(push_key(&mut encoder, &reject.key, &gone));
                            }
                            counts.rejects.push(reject);
                        }
                    }
                }
                Change::Gone(key) => counts.deletes += u64::from(push_key(&mut encoder, key, &gone)),
            }
            if encoder.len() >= CHUNK_BYTES {
                self.send_message(Message::Data { id: self.id, chunk: encoder.take() })?;
            }
            Ok(())
        };
        let read = match whole_table {
            true => read_all(self.conn, plan, on_change),
            false => read_changes(self.conn, plan, self.id, range, on_change),
        };
        if widening.is_some() {
            return Ok(widening);
        }
        read?;
        self.send_message(Message::Data { id: self.id, chunk: encoder.finish() })?;
        self.send_message(Message::End { id: self.id, counts })?;
        Ok(None)
    }

    /// The type column `column` widens to so that it holds `value` as itself along with its other values, if one
    /// does. A column whose declaration names no kind takes its type from what SQLite stores in it now (one scan
    /// per batch and column, kept in `stored_kinds`), so it also leaves a type an older version chose; any other
    /// column moves one step up from its current type.
    fn wider_type(
        &self,
        column: usize,
        value: &SqlValue,
        stored_kinds: &mut HashMap<usize, ColumnStats>,
    ) -> Result<Option<PgType>> {
        let current = &self.plan.columns[column];
        let to = match is_untyped(&current.declared_type) {
            true => untyped_target(current.pg_type, value, self.stored_kinds(column, stored_kinds)?),
            false => widened_type(current.pg_type, value),
        };
        Ok(to.filter(|to| *to != current.pg_type && encode_binary(value, *to, &mut Vec::new()).is_ok()))
    }

    /// Whether column `column` has no type of its own yet: declared without a kind and still bytea while SQLite
    /// stores no blob in it (empty at the snapshot, or bytes an older version wrote for numbers and text). It then
    /// takes one whatever its misfit policy, which governs the values that come after.
    fn awaits_first_type(&self, column: usize, stored_kinds: &mut HashMap<usize, ColumnStats>) -> Result<bool> {
        let current = &self.plan.columns[column];
        Ok(is_untyped(&current.declared_type)
            && current.pg_type == PgType::Bytea
            && self.stored_kinds(column, stored_kinds)?.blobs == 0)
    }

    /// What SQLite stores in column `column` now, in the batch's read transaction: scanned once per batch, and
    /// only for columns without a declared kind.
    fn stored_kinds<'k>(&self, column: usize, stored_kinds: &'k mut HashMap<usize, ColumnStats>) -> Result<&'k ColumnStats> {
        Ok(match stored_kinds.entry(column) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => entry.insert(column_stats_of(self.conn, &self.plan.name, &self.plan.columns[column].name)?),
        })
    }

    fn send_message(&self, message: Message) -> Result<()> {
        self.sender
            .blocking_send(message)
            .map_err(|_| Error::new(ErrorKind::PgConnect, "the PostgreSQL side of the batch stopped early"))
    }
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
