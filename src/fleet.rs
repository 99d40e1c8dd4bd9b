//! Many SQLite files into one PostgreSQL from one process: which files are sources (a list, and a glob that picks
//! up new files as they appear), what each is called and where its tables go, and one stream task per source,
//! all leasing connections from one pool.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tracing::Instrument;

pub use crate::config::SourceEntry;
use crate::error::{Error, ErrorKind, Result};
use crate::mapping::layout::Layout;
use crate::metrics::Metrics;
use crate::options::{FleetOptions, SnapshotOptions, SourceOptions};
use crate::pg::pool::Pool;
use crate::sqlite::{capture, open, Access};
use crate::stream::{RunSummary, StopWhen};

/// Where `{source_id}` goes in a schema name, one schema per source.
pub const SOURCE_ID_PLACEHOLDER: &str = "{source_id}";
/// How often the glob is looked at again for new files.
const GLOB_EVERY: Duration = Duration::from_secs(2);

/// The sources of one process.
#[derive(Debug, Clone, Default)]
pub struct Fleet {
    pub entries: Vec<SourceEntry>,
    /// Files matching it are sources too, also those that appear while running.
    pub glob: Option<String>,
    /// The target schema, with `{source_id}` replaced per source (one schema for all with shared tables).
    pub schema: String,
}

/// One source found: its file and its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundSource {
    pub sqlite: PathBuf,
    pub source_id: String,
}

/// The sources found, and the matched files that are not (yet) sources, with the reason.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    pub found: Vec<FoundSource>,
    pub skipped: Vec<(PathBuf, String)>,
}

/// What a fleet `run` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FleetSummary {
    pub sources: Vec<RunSummary>,
    /// Sources that stopped with an error: id and message.
    pub failed: Vec<(String, String)>,
}

impl Fleet {
    /// Whether more than the single `--sqlite` file is configured.
    pub fn is_configured(&self) -> bool {
        !self.entries.is_empty() || self.glob.is_some()
    }

    /// Refuses settings that would put two sources' tables in one schema under `layout` (the policies' one).
    pub fn check(&self, layout: Layout) -> Result<()> {
        if layout == Layout::SharedTables && self.schema.contains(SOURCE_ID_PLACEHOLDER) {
            return Err(Error::new(ErrorKind::Usage, format!("schema {:?}: shared tables live in one schema", self.schema))
                .with_hint("name one schema, e.g. schema = \"public\", or use layout = \"schema_per_source\""));
        }
        if self.is_configured() && layout == Layout::SchemaPerSource && !self.schema.contains(SOURCE_ID_PLACEHOLDER) {
            return Err(Error::new(ErrorKind::Usage, format!("schema {:?} would hold the tables of every source", self.schema))
                .with_hint("put {source_id} in it, e.g. schema = \"{source_id}\" or schema = \"tenant_{source_id}\""));
        }
        Ok(())
    }

    /// The schema of source `id`.
    pub fn schema_of(&self, id: &str) -> String {
        self.schema.replace(SOURCE_ID_PLACEHOLDER, id)
    }

    /// The listed files, then the glob's matches, each with its id. Two listed files under one id are refused;
    /// a matched file whose id cannot be read or is taken is skipped with the reason (it may be half copied).
    pub fn sources(&self) -> Result<Scan> {
        let mut found: Vec<FoundSource> = Vec::new();
        for entry in &self.entries {
            let source_id = match &entry.source_id {
                Some(id) => id.clone(),
                None => stored_or_default_id(&entry.sqlite)?,
            };
            admit(&mut found, FoundSource { sqlite: entry.sqlite.clone(), source_id })?;
        }
        let mut skipped = Vec::new();
        for sqlite in self.glob_matches()? {
            if found.iter().any(|f| same_file(&f.sqlite, &sqlite)) {
                continue;
            }
            let admitted = stored_or_default_id(&sqlite)
                .and_then(|source_id| admit(&mut found, FoundSource { sqlite: sqlite.clone(), source_id }));
            if let Err(err) = admitted {
                skipped.push((sqlite, err.to_string()));
            }
        }
        Ok(Scan { found, skipped })
    }

    fn glob_matches(&self) -> Result<Vec<PathBuf>> {
        let Some(pattern) = &self.glob else { return Ok(Vec::new()) };
        let paths = glob::glob(pattern).map_err(|err| {
            Error::new(ErrorKind::Usage, format!("source_glob {pattern:?} is not a valid pattern: {err}"))
                .with_hint("use * and ? as in a shell, e.g. source_glob = \"/data/tenants/*.db\"")
        })?;
        Ok(paths.filter_map(|p| p.ok()).filter(|p| p.is_file() && !is_sqlite_side_file(p)).collect())
    }

    /// The options of one source: what all share, with its file, id and schema. Its snapshot shows no progress
    /// bars (several may run at once) and never replaces tables.
    pub fn options_for(&self, shared: &FleetOptions, source: &FoundSource) -> SnapshotOptions {
        SnapshotOptions {
            source: SourceOptions {
                sqlite: source.sqlite.clone(),
                target: shared.target.clone(),
                schema: self.schema_of(&source.source_id),
                selection: shared.selection.clone(),
                source_id: Some(source.source_id.clone()),
                policies: shared.policies.clone(),
            },
            replace: false,
            jobs: shared.jobs,
            progress: false,
        }
    }
}

/// Adds `source` unless its id is not a usable name or another file has it.
fn admit(found: &mut Vec<FoundSource>, source: FoundSource) -> Result<()> {
    crate::ident::check_pg_identifier("source id", &source.source_id)?;
    if let Some(other) = found.iter().find(|f| f.source_id == source.source_id) {
        return Err(Error::new(
            ErrorKind::Usage,
            format!("{} and {} are both source {:?}", other.sqlite.display(), source.sqlite.display(), source.source_id),
        )
        .with_hint("give one of them its own source_id in a [[source]] entry"));
    }
    found.push(source);
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> bool {
    a == b || std::fs::canonicalize(a).ok().zip(std::fs::canonicalize(b).ok()).is_some_and(|(a, b)| a == b)
}

/// SQLite's own files beside a database (`-wal`, `-shm`, `-journal`) are never sources.
fn is_sqlite_side_file(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    ["-wal", "-shm", "-journal"].iter().any(|suffix| name.ends_with(suffix))
}

/// The id stored in the file by an earlier `init`, else the file's name without its extension.
fn stored_or_default_id(sqlite: &Path) -> Result<String> {
    if let Some(state) = capture::read_state(&open(sqlite, Access::ReadOnly)?)? {
        return Ok(state.source_id);
    }
    let stem = sqlite.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
    Ok(stem)
}

/// Streams every source until `stop` (or, with `StopWhen::CaughtUp`, until each has applied what was committed
/// when it started). At most `pool_size` PostgreSQL connections apply batches at once, handed out first come,
/// first served; a new source's snapshot takes its turn, one at a time. A source that fails for good stops
/// alone, logged with its id; the others go on.
pub async fn run(
    fleet: &Fleet,
    shared: &FleetOptions,
    pool_size: usize,
    stop: StopWhen,
    metrics: Arc<Metrics>,
) -> Result<FleetSummary> {
    fleet.check(shared.policies.layout)?;
    // A stream keeps its SQLite connections across awaits, so the streams share one thread; their reads run on
    // blocking threads and PostgreSQL's connections on the runtime.
    tokio::task::LocalSet::new().run_until(run_local(fleet, shared, pool_size, stop, metrics)).await
}

async fn run_local(
    fleet: &Fleet,
    shared: &FleetOptions,
    pool_size: usize,
    stop: StopWhen,
    metrics: Arc<Metrics>,
) -> Result<FleetSummary> {
    let pool = Pool::new(shared.target.clone(), pool_size);
    let watching = fleet.glob.is_some() && matches!(stop, StopWhen::Signal(_));
    let mut tasks = JoinSet::new();
    let mut running: HashMap<String, Arc<Notify>> = HashMap::new();
    let mut warned: HashSet<PathBuf> = HashSet::new();
    let mut summary = FleetSummary::default();
    let (mut first, mut warned_error) = (true, None::<String>);
    loop {
        // The listed files must all be there at the start; later, one going missing does not stop the others.
        let Scan { found, skipped } = match fleet.sources() {
            Ok(scan) => scan,
            Err(err) if first => return Err(err),
            Err(err) => {
                if warned_error.replace(err.to_string()).as_deref() != Some(&err.to_string()) {
                    tracing::warn!("looking for new sources: {err}");
                }
                Scan::default()
            }
        };
        first = false;
        for (path, reason) in skipped {
            if warned.insert(path.clone()) {
                tracing::warn!("{} is not synced: {reason}", path.display());
            }
        }
        for source in found {
            if running.contains_key(&source.source_id) {
                continue;
            }
            let notify = Arc::new(Notify::new());
            running.insert(source.source_id.clone(), notify.clone());
            tasks.spawn_local(run_source(pool.clone(), fleet.options_for(shared, &source), stop.own(notify), metrics.clone()));
        }
        tokio::select! {
            Some(finished) = tasks.join_next() => record(&mut summary, finished),
            asked = stop.wait(GLOB_EVERY) => if asked {
                running.values().for_each(|notify| notify.notify_one());
                break;
            },
        }
        if tasks.is_empty() && !watching {
            break;
        }
    }
    while let Some(finished) = tasks.join_next().await {
        record(&mut summary, finished);
    }
    Ok(summary)
}

async fn run_source(
    pool: Arc<Pool>,
    options: SnapshotOptions,
    stop: StopWhen,
    metrics: Arc<Metrics>,
) -> (String, Result<RunSummary>) {
    let id = options.source.source_id.clone().expect("fleet sources have ids");
    let span = tracing::info_span!("source", id = %id);
    let result = async {
        tracing::info!("syncing {} into schema {:?}", options.source.sqlite.display(), options.source.schema);
        crate::stream::run_in(&pool, &options, stop, &metrics, |report| {
            let rows: u64 = report.tables.iter().map(|t| t.rows).sum();
            tracing::info!("copied {rows} rows in {:.1}s", report.seconds);
        })
        .await
    }
    .instrument(span)
    .await;
    (id, result)
}

fn record(summary: &mut FleetSummary, finished: std::result::Result<(String, Result<RunSummary>), tokio::task::JoinError>) {
    match finished {
        Ok((_, Ok(run))) => summary.sources.push(run),
        Ok((id, Err(err))) => {
            tracing::error!("source {id} stopped: {err}");
            summary.failed.push((id, err.to_string()));
        }
        Err(err) => summary.failed.push(("?".to_string(), format!("a source's task ended abnormally: {err}"))),
    }
}
