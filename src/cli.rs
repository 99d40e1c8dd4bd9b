//! The command line: options (flags or environment), one function per subcommand, and human or JSON output.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, Parser, Subcommand};

use crate::config::{ConfigFile, DroppedTables, MisfitPolicy, Policies};
use crate::error::{Error, ErrorKind, Result};
use crate::fleet::Fleet;
use crate::metrics::{HealthLimits, Metrics};
use crate::pg::local::LocalServer;
use crate::pg::PgTarget;
use crate::snapshot::{snapshot, SnapshotOptions, SnapshotReport};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::source::{Selection, Source};
use crate::sqlite::journal_mode;
use crate::stream::StopWhen;

/// Keep a PostgreSQL database equal to a live SQLite file, and prove it.
#[derive(Debug, Parser)]
#[command(name = "lite2pg", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand understands, before or after its name.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// The SQLite database file (never created if missing).
    #[arg(long, env = "LITE2PG_SQLITE", global = true, value_name = "PATH")]
    pub sqlite: Option<PathBuf>,
    /// PostgreSQL URL, e.g. postgres://user@host:5432/db (also read from POSTGRES_DATABASE_URL). Without one,
    /// lite2pg starts and uses its own local PostgreSQL (see `lite2pg local`).
    #[arg(long, env = "LITE2PG_POSTGRES", hide_env_values = true, global = true, value_name = "URL")]
    pub postgres: Option<String>,
    /// PostgreSQL schema for the copied tables.
    #[arg(long, env = "LITE2PG_SCHEMA", global = true, default_value = "public")]
    pub schema: String,
    /// Only these tables (comma-separated).
    #[arg(long, global = true, value_delimiter = ',', value_name = "TABLES")]
    pub tables: Vec<String>,
    /// Leave these tables out (comma-separated).
    #[arg(long, global = true, value_delimiter = ',', value_name = "TABLES")]
    pub exclude: Vec<String>,
    /// Name of this source in lite2pg.sources (stored in the SQLite file; default: made at first init).
    #[arg(long, env = "LITE2PG_SOURCE_ID", global = true)]
    pub source_id: Option<String>,
    /// Print machine-readable JSON on stdout instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Log lines as human text or as JSON objects for log collectors.
    #[arg(long, env = "LITE2PG_LOG_FORMAT", global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter: a level (error, warn, info, debug, trace) or tracing directives; default: RUST_LOG, else info.
    #[arg(long, env = "LITE2PG_LOG_LEVEL", global = true, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Settings file; default: lite2pg.toml beside the SQLite file, when there is one. Flags win over it, it
    /// wins over the environment.
    #[arg(long, env = "LITE2PG_CONFIG", global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// A value its PostgreSQL column cannot hold: auto (widen a number or a date within its kind, else reject),
    /// widen, reject or stop. Per table and column in the config file.
    #[arg(long, global = true, value_enum)]
    pub on_misfit: Option<MisfitPolicy>,
    /// A captured table dropped in SQLite: keep its PostgreSQL table (default) or drop it.
    #[arg(long, global = true, value_enum)]
    pub dropped_tables: Option<DroppedTables>,
    /// Sync into tables the application made in PostgreSQL (Django's migrate, Alembic…), matched by name,
    /// never changing their DDL. Recorded per source: later commands follow it without the flag.
    #[arg(long, env = "LITE2PG_INTO_EXISTING", global = true)]
    pub into_existing: bool,
    /// With a config file listing several sources: only the source with this id.
    #[arg(long, global = true, value_name = "ID")]
    pub source: Option<String>,
    /// The policies after the config file was read.
    #[arg(skip)]
    pub policies: Policies,
    /// The sources the config file lists, if it lists any.
    #[arg(skip)]
    pub fleet: Fleet,
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the PostgreSQL tables and copy every row (installs change capture first).
    Snapshot(SnapshotArgs),
    /// Install change capture in the SQLite file (no PostgreSQL needed).
    Init,
    /// Snapshot if needed, then apply every committed change until SIGINT/SIGTERM.
    Run(RunArgs),
    /// Remove change capture from the SQLite file; the application's tables are untouched.
    Uninstall,
    /// Compare every replicated table value by value (exit 0 equal, 1 differences).
    Verify(VerifyArgs),
    /// Show where the sync stands: position, pending changes, lag, rejects, row counts.
    Status(StatusArgs),
    /// Check the SQLite file, capture, PostgreSQL and privileges; explain each problem and its fix.
    Doctor,
    /// See it work: a sample database written by threads, streamed to PostgreSQL, then verified.
    Demo(DemoArgs),
    /// Measure lite2pg on this machine and PostgreSQL, each measure beside its raw limit.
    Bench(BenchArgs),
    /// Make PostgreSQL the application's database: last changes, proof, key generators, promotion.
    Cutover(CutoverArgs),
    /// List the values PostgreSQL could not hold (lite2pg.rejects) for this source.
    Rejects(RejectsArgs),
    /// The local PostgreSQL lite2pg runs when no URL is given.
    Local {
        #[command(subcommand)]
        action: LocalAction,
    },
}

/// Options of `demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// How long the writers write.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
}

/// Options of `cutover`.
#[derive(Debug, Clone, Args)]
pub struct CutoverArgs {
    /// Longest wait for the application's writers to release the SQLite write lock (e.g. 30s, 2m).
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub wait_for_writers: Duration,
    /// Leave change capture in the SQLite file.
    #[arg(long)]
    pub keep_capture: bool,
    /// Print every statement it would run in PostgreSQL, change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `30`, `30s`, `2m`.
fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let (number, unit) = text.trim().split_at(text.trim().find(|c: char| !c.is_ascii_digit()).unwrap_or(text.trim().len()));
    let value: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration such as 30s or 2m"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(value)),
        "m" => Ok(Duration::from_secs(value * 60)),
        _ => Err(format!("{text:?} is not a duration such as 30s or 2m")),
    }
}

/// Options of `bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Rows of the synthetic table (and changes of the catch-up backlog).
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: u64,
}

/// What `local` does.
#[derive(Debug, Clone, Subcommand)]
pub enum LocalAction {
    /// Start it (made on first use) and print its URL.
    Start,
    /// Stop it.
    Stop,
    /// Say whether it runs, and where.
    Status,
}

/// Options of `rejects`.
#[derive(Debug, Clone, Args)]
pub struct RejectsArgs {
    /// Apply the rejected rows again under the current policies (e.g. after `--on-misfit widen` or a change in
    /// lite2pg.toml), then list what is still rejected.
    #[arg(long)]
    pub retry: bool,
}

/// Options of `status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Only the position, pending changes, lag, rejects, errors and daemon: no row counts per table and no missing
    /// constraints, which read every table (cheap enough to poll; the Python package waits with it).
    #[arg(long)]
    pub brief: bool,
}

/// Options of `verify`.
#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// Send the differing rows through the apply path again, then verify once more.
    #[arg(long)]
    pub repair: bool,
}

/// Options of `snapshot`.
#[derive(Debug, Clone, Args)]
pub struct SnapshotArgs {
    /// Drop and re-create tables that already exist in PostgreSQL.
    #[arg(long)]
    pub replace: bool,
    /// Parallel copy connections.
    #[arg(long, default_value_t = default_jobs())]
    pub jobs: usize,
}

/// Options of `run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Apply everything committed before it started, then exit.
    #[arg(long)]
    pub once: bool,
    /// With --once: how long to ride out failures waiting could fix (PostgreSQL unreachable, SQLite busy) before
    /// exiting 1 with the last error (e.g. 60s, 2m).
    #[arg(long, env = "LITE2PG_WAIT", default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    pub wait: Duration,
    /// Parallel copy connections for the initial snapshot.
    #[arg(long, default_value_t = default_jobs())]
    pub jobs: usize,
    /// PostgreSQL connections the sources of a config file share for applying batches.
    #[arg(long, env = "LITE2PG_POOL_SIZE", default_value_t = 4, value_name = "N")]
    pub pool_size: usize,
    /// Serve Prometheus metrics on /metrics and health on /healthz at this address.
    #[arg(long, env = "LITE2PG_METRICS_ADDR", value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
    /// /healthz answers 503 when the oldest unapplied change is older than this many seconds.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub health_max_lag: u64,
    /// /healthz answers 503 when batches have failed (e.g. PostgreSQL unreachable) for this many seconds.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub health_max_outage: u64,
    /// Stop (after the current batch) as soon as the process that started this one exits, also when it was killed:
    /// for running lite2pg as a child of an application, as the Python package does.
    #[arg(long)]
    pub exit_with_parent: bool,
}

fn default_jobs() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).clamp(2, 8)
}

impl CommonArgs {
    /// These options for each source the config file lists.
    fn each_source(&self) -> Result<Vec<CommonArgs>> {
        self.fleet.check()?;
        let crate::fleet::Scan { found, skipped } = self.fleet.sources()?;
        for (path, reason) in skipped {
            tracing::warn!("{} is not a source: {reason}", path.display());
        }
        Ok(found
            .into_iter()
            .map(|source| CommonArgs {
                schema: self.fleet.schema_of(&source.source_id),
                sqlite: Some(source.sqlite),
                source_id: Some(source.source_id),
                fleet: Fleet::default(),
                ..self.clone()
            })
            .collect())
    }

    /// These options for the source `--source` names, or the only one the config file lists.
    fn one_source(&self) -> Result<CommonArgs> {
        let mut sources = self.each_source()?;
        let ids = || sources.iter().filter_map(|s| s.source_id.clone()).collect::<Vec<_>>().join(", ");
        match &self.source {
            Some(wanted) => match sources.iter().position(|s| s.source_id.as_deref() == Some(wanted)) {
                Some(at) => Ok(sources.swap_remove(at)),
                None => {
                    Err(Error::new(ErrorKind::Usage, format!("no source {wanted:?} in the config file; it lists: {}", ids()))
                        .with_hint("pass one of those ids to --source"))
                }
            },
            None if sources.len() == 1 => Ok(sources.remove(0)),
            None => Err(Error::new(ErrorKind::Usage, format!("the config file lists {} sources: {}", sources.len(), ids()))
                .with_hint("pick one with --source ID")),
        }
    }

    fn sqlite(&self) -> Result<PathBuf> {
        self.sqlite.clone().ok_or_else(|| {
            Error::new(ErrorKind::Usage, "no SQLite file given").with_hint("pass --sqlite PATH or set LITE2PG_SQLITE")
        })
    }

    /// The given PostgreSQL, or the managed local one when no URL is given anywhere.
    fn postgres(&self) -> Result<PgTarget> {
        match self.postgres.clone().or_else(|| std::env::var("POSTGRES_DATABASE_URL").ok()) {
            Some(url) => PgTarget::parse(&url),
            None => PgTarget::parse(&LocalServer::ensure_running()?),
        }
    }

    fn selection(&self) -> Selection {
        Selection { include: self.tables.clone(), exclude: self.exclude.clone() }
    }

    fn snapshot_options(&self, replace: bool, jobs: usize) -> Result<SnapshotOptions> {
        Ok(SnapshotOptions { sqlite: self.sqlite()?, ..self.snapshot_options_for(replace, jobs)? })
    }

    /// Everything but the SQLite file.
    fn snapshot_options_for(&self, replace: bool, jobs: usize) -> Result<SnapshotOptions> {
        Ok(SnapshotOptions {
            sqlite: PathBuf::new(),
            target: self.postgres()?,
            schema: self.schema.clone(),
            selection: self.selection(),
            replace,
            jobs,
            progress: !self.json && std::io::stderr().is_terminal(),
            source_id: self.source_id.clone(),
            policies: {
                let mut policies = self.policies.clone();
                policies.into_existing = self.into_existing;
                policies
            },
        })
    }
}

impl Cli {
    /// Fills what the command line left open from the config file, in the order documented in `config`.
    pub fn apply_config(&mut self, matches: &ArgMatches) -> Result<()> {
        let (path, file) = match ConfigFile::find(self.common.config.as_deref(), self.common.sqlite.as_deref())? {
            Some((path, file)) => {
                tracing::debug!("settings from {}", path.display());
                (path, file)
            }
            None => (PathBuf::from(crate::config::DEFAULT_FILE_NAME), ConfigFile::default()),
        };
        let layer = Layer { matches, file: &path };
        let common = &mut self.common;
        layer.fill("sqlite", &mut common.sqlite, file.sqlite.clone());
        layer.fill("postgres", &mut common.postgres, file.postgres.clone());
        layer.fill_value("schema", &mut common.schema, file.schema.clone());
        layer.fill("source_id", &mut common.source_id, file.source_id.clone());
        layer.fill_value("tables", &mut common.tables, file.include.clone());
        layer.fill_value("exclude", &mut common.exclude, file.exclude.clone());
        let mut policies = file.policies();
        policies.on_misfit = common.on_misfit.unwrap_or(policies.on_misfit);
        policies.dropped_tables = common.dropped_tables.unwrap_or(policies.dropped_tables);
        common.policies = policies;
        let schema_given = matches!(layer.source("schema"), Some(ValueSource::CommandLine | ValueSource::EnvVariable));
        let shared_tables = common.policies.shared_tables();
        let schema = if !schema_given && file.schema.is_none() && !shared_tables {
            crate::fleet::SOURCE_ID_PLACEHOLDER.to_string()
        } else {
            common.schema.clone()
        };
        common.fleet = Fleet { entries: file.source.clone(), glob: file.source_glob.clone(), schema, shared_tables };
        match &mut self.command {
            Command::Run(args) => {
                layer.fill("metrics_addr", &mut args.metrics_addr, file.metrics_addr.clone());
                layer.fill_value("pool_size", &mut args.pool_size, file.pool_size);
                layer.fill_value("jobs", &mut args.jobs, file.jobs);
            }
            Command::Snapshot(args) => layer.fill_value("jobs", &mut args.jobs, file.jobs),
            _ => {}
        }
        Ok(())
    }
}

/// One config file laid under the command line.
struct Layer<'a> {
    matches: &'a ArgMatches,
    file: &'a std::path::Path,
}

impl Layer<'_> {
    /// Where the value of argument `id` came from, looking into the subcommand too.
    fn source(&self, id: &str) -> Option<ValueSource> {
        let of = |m: &ArgMatches| m.try_contains_id(id).ok().filter(|known| *known).and_then(|_| m.value_source(id));
        of(self.matches).or_else(|| self.matches.subcommand().and_then(|(_, sub)| of(sub)))
    }

    /// Sets `current` to the file's value unless the command line gave one.
    fn fill_value<T>(&self, id: &str, current: &mut T, from_file: Option<T>) {
        let Some(value) = from_file else { return };
        match self.source(id) {
            Some(ValueSource::CommandLine) => {}
            Some(ValueSource::EnvVariable) => {
                tracing::warn!("{id} is set in both the environment and {}; the file's value is used", self.file.display());
                *current = value;
            }
            _ => *current = value,
        }
    }

    fn fill<T>(&self, id: &str, current: &mut Option<T>, from_file: Option<T>) {
        self.fill_value(id, current, from_file.map(Some));
    }
}

/// Runs the parsed command line and returns the process exit code: 0 success, 1 failure, 2 usage error.
pub fn main_with(mut cli: Cli, matches: &ArgMatches) -> ExitCode {
    if let Err(err) = cli.apply_config(matches) {
        eprintln!("error: {err}");
        return ExitCode::from(2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("the tokio runtime starts");
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(if err.kind() == ErrorKind::Usage { 2 } else { 1 })
        }
    }
}

async fn dispatch(cli: Cli) -> Result<ExitCode> {
    let common = &cli.common;
    if !common.fleet.is_configured() {
        return dispatch_one(common, &cli.command).await;
    }
    if common.source.is_some() {
        return dispatch_one(&common.one_source()?, &cli.command).await;
    }
    match &cli.command {
        Command::Run(args) => run_fleet(common, args).await,
        Command::Status(args) => for_each_source(common, |one| async move { status(&one, args).await }).await,
        Command::Verify(args) => for_each_source(common, |one| async move { verify(&one, args).await }).await,
        Command::Doctor => for_each_source(common, |one| async move { doctor(&one).await }).await,
        _ => dispatch_one(&common.one_source()?, &cli.command).await,
    }
}

/// Runs a command for one source.
async fn dispatch_one(common: &CommonArgs, command: &Command) -> Result<ExitCode> {
    match command {
        Command::Snapshot(args) => {
            let report = snapshot(&common.snapshot_options(args.replace, args.jobs)?).await?;
            print_snapshot(&report, common.json);
            Ok(clean_exit(&report))
        }
        Command::Init => init(common),
        Command::Uninstall => uninstall(common),
        Command::Run(args) => run(common, args).await,
        Command::Verify(args) => Ok(print_json(common, verify(common, args).await?)),
        Command::Status(args) => Ok(print_json(common, status(common, args).await?)),
        Command::Doctor => Ok(print_json(common, doctor(common).await?)),
        Command::Demo(args) => demo(common, args).await,
        Command::Bench(args) => bench(common, args).await,
        Command::Cutover(args) => cutover(common, args).await,
        Command::Rejects(args) => rejects(common, args).await,
        Command::Local { action } => local(action),
    }
}

async fn demo(common: &CommonArgs, args: &DemoArgs) -> Result<ExitCode> {
    let admin = common.postgres()?;
    let report = crate::demo::demo(&admin, &crate::pg::local::data_dir().join("demo"), args.seconds).await?;
    println!();
    print_verify(&report.verify);
    println!(
        "\n{} transactions written to {} while lite2pg streamed them.\nLook at the PostgreSQL side: psql {} -c 'SELECT * FROM orders ORDER BY id DESC LIMIT 5'",
        report.transactions,
        report.sqlite.display(),
        report.postgres_url
    );
    Ok(if report.verify.is_equal() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

async fn rejects(common: &CommonArgs, args: &RejectsArgs) -> Result<ExitCode> {
    let options = common.snapshot_options(false, default_jobs())?;
    let conn = crate::sqlite::open(&options.sqlite, crate::sqlite::Access::ReadOnly)?;
    let capture = crate::sqlite::capture::require_state(&conn, &options.sqlite)?;
    let client = options.target.connect().await?;
    let mut rejects = crate::pg::state::rejects(&client, &capture.source_id).await?;
    if args.retry && !rejects.is_empty() {
        let retried = crate::stream::retry_rejects(&options, &conn, &capture, &rejects).await?;
        tracing::info!("applied {retried} rejected row(s) again under the current policies");
        rejects = crate::pg::state::rejects(&client, &capture.source_id).await?;
    }
    if common.json {
        println!("{}", serde_json::to_string_pretty(&rejects).expect("rejects serialize"));
    } else if rejects.is_empty() {
        println!("no rejects: PostgreSQL holds every value of source {}", capture.source_id);
    } else {
        let rows: Vec<Vec<String>> = rejects
            .iter()
            .map(|r| {
                [&r.table, &r.key, &r.column, &r.reason, &r.storage_class, &r.raw, &r.rejected_at].map(String::clone).to_vec()
            })
            .collect();
        print_table(&["table", "key", "column", "reason", "stored as", "raw", "rejected at"], &rows);
        println!("{} row(s) are not in PostgreSQL; each is applied and cleared once its value fits", rejects.len());
    }
    Ok(ExitCode::SUCCESS)
}

async fn cutover(common: &CommonArgs, args: &CutoverArgs) -> Result<ExitCode> {
    let options = crate::cutover::CutoverOptions {
        source: common.snapshot_options(false, default_jobs())?,
        wait_for_writers: args.wait_for_writers,
        keep_capture: args.keep_capture,
        dry_run: args.dry_run,
    };
    let report = crate::cutover::cutover(&options).await?;
    if common.json {
        println!("{}", serde_json::to_string_pretty(&report).expect("reports serialize"));
        return Ok(ExitCode::SUCCESS);
    }
    let verb = if args.dry_run { "Would run" } else { "Ran" };
    println!("{verb} in PostgreSQL:");
    for statement in &report.statements {
        println!("  {statement};");
    }
    if !report.generated.is_empty() {
        println!("\nGenerated columns PostgreSQL computes now (each is now the last column of its table):");
        println!("  {}", report.generated.join(", "));
    }
    if !report.not_carried.is_empty() {
        println!("\nNot carried over (port by hand):");
        for item in &report.not_carried {
            println!("  - {}:\n      {}", item.what, item.sql.replace('\n', "\n      "));
        }
    }
    match (args.dry_run, report.capture_removed) {
        (true, _) => println!(
            "\nDry run: all of the above was tried in PostgreSQL and rolled back; nothing was changed. SQLite and PostgreSQL are equal, so the cutover can go ahead."
        ),
        (false, removed) => println!(
            "\nSource {} is promoted: PostgreSQL is the application's database now{}. Point the application at PostgreSQL.",
            report.source_id,
            if removed { " and capture is removed from the SQLite file" } else { "" }
        ),
    }
    Ok(ExitCode::SUCCESS)
}

async fn bench(common: &CommonArgs, args: &BenchArgs) -> Result<ExitCode> {
    let target = common.postgres()?;
    let started = std::time::Instant::now();
    let report = crate::bench::bench(&target, args.rows, |step| {
        eprintln!("bench [{:>5.1}s] {step}", started.elapsed().as_secs_f64());
    })
    .await?;
    if common.json {
        println!("{}", serde_json::to_string_pretty(&report).expect("reports serialize"));
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "lite2pg {} on {} cores, {:.0} GiB; PostgreSQL {} at {}",
        env!("CARGO_PKG_VERSION"),
        report.cores,
        report.memory_gib,
        report.postgres_version,
        target.shown()
    );
    let rows: Vec<Vec<String>> = report
        .measures
        .iter()
        .map(|m| {
            vec![
                m.measure.clone(),
                format!("{} {}", figure(m.lite2pg), m.unit),
                format!("{} {}", figure(m.raw_limit), m.unit),
                format!("{:.2}x", m.ratio),
                m.raw_limit_is.to_string(),
            ]
        })
        .collect();
    print_table(&["measure", "lite2pg", "raw limit", "cost vs raw", "raw limit is"], &rows);
    Ok(ExitCode::SUCCESS)
}

/// Three significant digits, without exponent.
fn figure(value: f64) -> String {
    match value.abs() {
        v if v >= 100.0 => format!("{value:.0}"),
        v if v >= 10.0 => format!("{value:.1}"),
        _ => format!("{value:.2}"),
    }
}

fn local(action: &LocalAction) -> Result<ExitCode> {
    match action {
        LocalAction::Start => println!("{}", LocalServer::ensure_running()?),
        LocalAction::Stop => match LocalServer::open()?.stop()? {
            true => println!("local PostgreSQL stopped"),
            false => println!("local PostgreSQL was not running"),
        },
        LocalAction::Status => {
            let server = LocalServer::open()?;
            match server.is_running() {
                true => println!("running: {}", server.url(crate::pg::local::LOCAL_DATABASE)),
                false => println!("not running (data in {})", crate::pg::local::data_dir().join("postgres").display()),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What a report-printing command gives back: its JSON form (printed only with `--json`; it printed itself
/// otherwise) and whether it found everything in order.
type Verdict = (serde_json::Value, bool);

/// Prints a command's JSON output when asked, and turns its verdict into the exit code.
fn print_json(common: &CommonArgs, (value, ok): Verdict) -> ExitCode {
    if common.json {
        println!("{}", serde_json::to_string_pretty(&value).expect("reports serialize"));
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Runs `command` for every source the config file lists; with `--json` their outputs form one array.
async fn for_each_source<F, Fut>(common: &CommonArgs, command: F) -> Result<ExitCode>
where
    F: Fn(CommonArgs) -> Fut,
    Fut: std::future::Future<Output = Result<Verdict>>,
{
    let (mut values, mut all_ok) = (Vec::new(), true);
    for one in common.each_source()? {
        if !common.json {
            println!("== source {} ==", one.source_id.as_deref().unwrap_or_default());
        }
        let (value, ok) = command(one).await?;
        values.push(value);
        all_ok &= ok;
    }
    Ok(print_json(common, (serde_json::Value::Array(values), all_ok)))
}

async fn verify(common: &CommonArgs, args: &VerifyArgs) -> Result<Verdict> {
    let report = verify_report(common, args).await?;
    if !common.json {
        print_verify(&report);
    }
    Ok((serde_json::to_value(&report).expect("reports serialize"), report.is_equal()))
}

/// Compares one source, repairing first when asked.
async fn verify_report(common: &CommonArgs, args: &VerifyArgs) -> Result<crate::verify::VerifyReport> {
    let options = common.snapshot_options(false, default_jobs())?;
    let mut report = crate::verify::verify(&options).await?;
    if args.repair && !report.is_equal() {
        if !common.json {
            print_verify(&report);
        }
        let repaired = crate::verify::repair(&options, &report).await?;
        tracing::info!("re-applied {repaired} differing row(s); verifying again");
        report = crate::verify::verify(&options).await?;
    }
    Ok(report)
}

fn print_verify(report: &crate::verify::VerifyReport) {
    println!("Compared source {} at position {} in {:.2}s:", report.source_id, report.applied_seq, report.seconds);
    let rows: Vec<Vec<String>> = report
        .tables
        .iter()
        .map(|t| {
            let mut result: Vec<String> = [(t.missing, "missing"), (t.extra, "extra"), (t.differing, "differing")]
                .into_iter()
                .filter(|(n, _)| *n > 0)
                .map(|(n, what)| format!("{n} {what}"))
                .collect();
            if result.is_empty() {
                result.push("equal".into());
            }
            let known: Vec<String> = [(t.known_rejects, "known reject(s)"), (t.pending, "pending")]
                .into_iter()
                .filter(|(n, _)| *n > 0)
                .map(|(n, what)| format!("{n} {what}"))
                .collect();
            if !known.is_empty() {
                result.push(format!("({})", known.join(", ")));
            }
            vec![
                table_label(&t.table, &t.postgres_table),
                t.sqlite_rows.to_string(),
                t.postgres_rows.to_string(),
                result.join(", "),
            ]
        })
        .collect();
    print_table(&["table", "sqlite rows", "postgres rows", "result"], &rows);
    for table in report.tables.iter().filter(|t| !t.examples.is_empty()) {
        let examples: Vec<String> = table.examples.iter().map(|e| format!("{:?} {}", e.kind, e.key).to_lowercase()).collect();
        println!("  {} examples: {}", table.table, examples.join("; "));
    }
    let rows: u64 = report.tables.iter().map(|t| t.sqlite_rows).sum();
    match report.is_equal() {
        true => println!("EQUAL: {} table(s), {rows} row(s) hold the same values in SQLite and PostgreSQL", report.tables.len()),
        false => {
            println!("DIFFERENT: {} row(s) differ; `lite2pg verify --repair` re-applies them from SQLite", report.differences())
        }
    }
}

async fn status(common: &CommonArgs, args: &StatusArgs) -> Result<Verdict> {
    let status = crate::status::status(&common.snapshot_options(false, default_jobs())?, args.brief).await?;
    if !common.json {
        print_status(&status);
    }
    Ok((serde_json::to_value(&status).expect("statuses serialize"), status.postgres_error.is_none()))
}

fn print_status(status: &crate::status::Status) {
    let or_unknown = |value: Option<String>| value.unwrap_or_else(|| "unknown".into());
    let lines = [
        ("source", status.source_id.clone()),
        ("sqlite", status.sqlite.clone()),
        (
            "postgres",
            match &status.postgres_error {
                Some(err) => format!("{} (unreachable: {err})", status.postgres),
                None => status.postgres.clone(),
            },
        ),
        ("daemon", status.daemon.clone().map_or("not running".into(), |holder| format!("running ({holder})"))),
        ("snapshot", if status.snapshot_done { "done".into() } else { "not done".into() }),
        (
            "target",
            match status.into_existing {
                true => "the application's own tables (--into-existing)".into(),
                false => "tables lite2pg created".into(),
            },
        ),
        (
            "applied seq",
            format!("{} (newest in SQLite {})", or_unknown(status.applied_seq.map(|s| s.to_string())), status.newest_seq),
        ),
        ("pending", or_unknown(status.pending_changes.map(|n| format!("{n} change(s)")))),
        ("lag", or_unknown(status.lag_seconds.map(|s| format!("{s:.1}s")))),
        ("rejects", or_unknown(status.rejects.map(|n| n.to_string()))),
        ("last applied", status.last_applied_at.clone().unwrap_or_else(|| "never".into())),
        (
            "last error",
            match (&status.last_error, &status.last_error_at) {
                (Some(error), Some(at)) => format!("{error} (at {at})"),
                (Some(error), None) => error.clone(),
                (None, _) => "none".into(),
            },
        ),
    ];
    for (label, value) in lines {
        println!("{label:<13}{value}");
    }
    let rows: Vec<Vec<String>> = status
        .tables
        .iter()
        .map(|t| {
            let postgres_rows = or_unknown(t.postgres_rows.map(|n| n.to_string()));
            vec![table_label(&t.table, &t.postgres_table), t.sqlite_rows.to_string(), postgres_rows]
        })
        .collect();
    println!();
    print_table(&["table", "sqlite rows", "postgres rows"], &rows);
    if let Some(gaps) = status.gaps.as_ref().filter(|gaps| !gaps.is_empty()) {
        println!("\nonly on one side:");
        for gap in gaps.sentences() {
            println!("  - {gap}");
        }
    }
    if let Some(missing) = status.missing_constraints.as_ref().filter(|missing| !missing.is_empty()) {
        println!("\nconstraints SQLite declares that PostgreSQL lacks:");
        for constraint in missing {
            println!("  - {constraint}");
        }
    }
}

/// A table's name, with its PostgreSQL name when that is shortened.
fn table_label(sqlite: &str, postgres: &str) -> String {
    match sqlite == postgres {
        true => sqlite.to_string(),
        false => format!("{sqlite} (PostgreSQL: {postgres})"),
    }
}

async fn doctor(common: &CommonArgs) -> Result<Verdict> {
    let findings = crate::doctor::doctor(&common.snapshot_options(false, default_jobs())?).await;
    let failed = findings.iter().any(|f| f.outcome == crate::doctor::Outcome::Fail);
    if !common.json {
        for finding in &findings {
            let mark = match finding.outcome {
                crate::doctor::Outcome::Pass => "ok  ",
                crate::doctor::Outcome::Warn => "warn",
                crate::doctor::Outcome::Fail => "FAIL",
            };
            println!("[{mark}] {}: {}", finding.check, finding.detail);
            if let Some(fix) = &finding.fix {
                println!("       fix: {fix}");
            }
        }
    }
    Ok((serde_json::to_value(&findings).expect("findings serialize"), !failed))
}

fn init(common: &CommonArgs) -> Result<ExitCode> {
    refuse_hiding_rebuilt_tables(common)?;
    let source = Source::prepare(&common.sqlite()?, &common.selection(), common.source_id.as_deref())?;
    let journal_mode = journal_mode(&source.conn)?;
    if common.json {
        let tables: Vec<&str> = source.capture.tables.iter().map(|t| t.name.as_str()).collect();
        let out = serde_json::json!({"source_id": source.capture.source_id, "tables": tables, "journal_mode": journal_mode});
        println!("{out}");
    } else {
        println!(
            "capture installed on {} table(s) in {} (source id {})",
            source.capture.tables.len(),
            source.path.display(),
            source.capture.source_id
        );
    }
    if !journal_mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(
            "the SQLite file uses journal mode {journal_mode}: while lite2pg reads, the application's writers wait; \
             WAL mode lets them go on (sqlite3 {} 'PRAGMA journal_mode=WAL')",
            source.path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Installing capture again on a table a migration rebuilt would hide that rows were written to it unlogged;
/// `run` notices the rebuild and copies the table whole.
fn refuse_hiding_rebuilt_tables(common: &CommonArgs) -> Result<()> {
    let conn = crate::sqlite::open(&common.sqlite()?, crate::sqlite::Access::ReadOnly)?;
    let schema = crate::sqlite::introspect::read_schema(&conn)?;
    let rebuilt = crate::sqlite::capture::drift(&conn, &schema, |name| common.selection().wants(name))?.rebuilt;
    if rebuilt.is_empty() {
        return Ok(());
    }
    Err(Error::new(ErrorKind::Usage, format!("tables {} lost their capture triggers (a migration rebuilt them?)", rebuilt.join(", ")))
        .with_hint("nothing was changed; `lite2pg run` installs capture again and copies those tables whole, so no row written meanwhile is missed"))
}

fn uninstall(common: &CommonArgs) -> Result<ExitCode> {
    let path = common.sqlite()?;
    let mut conn = crate::sqlite::open(&path, crate::sqlite::Access::ReadWrite)?;
    let had_capture = crate::sqlite::capture::uninstall(&mut conn)?;
    match had_capture {
        true => println!("capture removed from {}; the application's tables are untouched", path.display()),
        false => println!("{} had no lite2pg capture installed; nothing changed", path.display()),
    }
    Ok(ExitCode::SUCCESS)
}

fn stop_when(args: &RunArgs) -> StopWhen {
    if args.once {
        return StopWhen::CaughtUpWithin(args.wait);
    }
    let notify = Arc::new(Notify::new());
    tokio::spawn(forward_signals(notify.clone()));
    if args.exit_with_parent {
        tokio::spawn(stop_with_parent(notify.clone()));
    }
    StopWhen::Signal(notify)
}

/// How often `--exit-with-parent` looks whether the parent is still there.
const PARENT_CHECK: Duration = Duration::from_millis(200);

/// Turns the exit of the process that started this one into a stop request. Watching the parent id (the process
/// is re-parented when its parent dies) works on Linux and macOS alike and, unlike Linux's PR_SET_PDEATHSIG, does
/// not fire when only the parent's thread that started us ends (a Python app may start the sync from a thread).
async fn stop_with_parent(notify: Arc<Notify>) {
    #[cfg(unix)]
    {
        let parent = std::os::unix::process::parent_id();
        while std::os::unix::process::parent_id() == parent {
            tokio::time::sleep(PARENT_CHECK).await;
        }
        tracing::info!("stopping: the parent process {parent} exited");
        notify.notify_one();
    }
    #[cfg(not(unix))]
    {
        let _ = notify;
        tracing::warn!("--exit-with-parent is not supported on this platform; stop lite2pg with its parent yourself");
    }
}

/// The metrics of a `run`, served on `--metrics-addr` when given.
async fn served_metrics(args: &RunArgs) -> Result<Arc<Metrics>> {
    let limits = HealthLimits {
        max_lag: Duration::from_secs(args.health_max_lag),
        max_outage: Duration::from_secs(args.health_max_outage),
    };
    let metrics = Metrics::new(limits);
    if let Some(addr) = &args.metrics_addr {
        crate::metrics::serve(addr, metrics.clone()).await?;
    }
    Ok(metrics)
}

fn print_run_summary(summary: &crate::stream::RunSummary) {
    println!(
        "source {} at seq {}: {} batch(es), {} upserts, {} deletes, {} rejects",
        summary.source_id, summary.applied_seq, summary.batches, summary.upserts, summary.deletes, summary.rejects
    );
}

async fn run(common: &CommonArgs, args: &RunArgs) -> Result<ExitCode> {
    let options = common.snapshot_options(false, args.jobs)?;
    let stop = stop_when(args);
    let json = common.json;
    let metrics = served_metrics(args).await?;
    let summary = crate::stream::run(&options, stop, metrics, |report| {
        if !json {
            print_snapshot(report, false);
        }
    })
    .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&summary).expect("summaries serialize"));
    } else {
        print_run_summary(&summary);
    }
    Ok(ExitCode::SUCCESS)
}

/// `run` for every source of the config file, in one process.
async fn run_fleet(common: &CommonArgs, args: &RunArgs) -> Result<ExitCode> {
    let template = common.snapshot_options_for(false, args.jobs)?;
    let stop = stop_when(args);
    let metrics = served_metrics(args).await?;
    let summary = crate::fleet::run(&common.fleet, &template, args.pool_size, stop, metrics).await?;
    if common.json {
        println!("{}", serde_json::to_string_pretty(&summary).expect("summaries serialize"));
    } else {
        for run in &summary.sources {
            print_run_summary(run);
        }
        for (id, err) in &summary.failed {
            println!("source {id} stopped: {err}");
        }
    }
    Ok(if summary.failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Turns SIGINT and SIGTERM into a stop request.
async fn forward_signals(notify: Arc<Notify>) {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM can be watched");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("stopping: finishing the current batch");
    notify.notify_one();
}

/// Exit 1 when values were rejected: the copy is not complete.
fn clean_exit(report: &SnapshotReport) -> ExitCode {
    if report.rejects() == 0 {
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "warning: {} row(s) hold values PostgreSQL cannot hold; they are listed in lite2pg.rejects, not copied",
        report.rejects()
    );
    ExitCode::from(1)
}

/// Prints a snapshot's mapping, notes and summary.
pub fn print_snapshot(report: &SnapshotReport, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(report).expect("reports serialize"));
        return;
    }
    let mapping: Vec<Vec<String>> = report
        .mapping
        .iter()
        .map(|m| vec![m.table.clone(), m.column.clone(), m.declared_type.clone(), m.stored.clone(), m.pg_type.clone()])
        .collect();
    println!("Type mapping:");
    print_table(&["table", "column", "declared", "stored", "postgres"], &mapping);
    if !report.notes.is_empty() {
        println!("\nNotes:");
        for note in &report.notes {
            println!("  - {note}");
        }
    }
    let mut rows: Vec<Vec<String>> = report
        .tables
        .iter()
        .map(|t| {
            vec![t.table.clone(), t.rows.to_string(), human_bytes(t.bytes), format!("{:.2}", t.seconds), t.rejects.to_string()]
        })
        .collect();
    let (rows_total, bytes_total) = report.tables.iter().fold((0, 0), |(r, b), t| (r + t.rows, b + t.bytes));
    rows.push(vec![
        "total".into(),
        rows_total.to_string(),
        human_bytes(bytes_total),
        format!("{:.2}", report.seconds),
        report.rejects().to_string(),
    ]);
    println!("\nCopied into schema {} (source {}, position {}):", report.schema, report.source_id, report.snapshot_seq);
    print_table(&["table", "rows", "bytes", "seconds", "rejects"], &rows);
}

/// Prints rows under headers, columns padded to their widest cell.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("  {}", padded.join("  ").trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

fn human_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}
