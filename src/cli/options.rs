//! The options every subcommand understands, and what a command builds from them for one source.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::config::{DroppedTables, MisfitPolicy, Policies};
use crate::error::{Error, ErrorKind, Result};
use crate::fleet::Fleet;
use crate::options::{FleetOptions, SnapshotOptions, SourceOptions};
use crate::pg::local::LocalServer;
use crate::pg::PgTarget;
use crate::source::Selection;

use super::LogFormat;

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

/// `30`, `30s`, `2m`.
pub(super) fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let (number, unit) = text.trim().split_at(text.trim().find(|c: char| !c.is_ascii_digit()).unwrap_or(text.trim().len()));
    let value: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration such as 30s or 2m"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(value)),
        "m" => Ok(Duration::from_secs(value * 60)),
        _ => Err(format!("{text:?} is not a duration such as 30s or 2m")),
    }
}

pub(super) fn default_jobs() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).clamp(2, 8)
}

impl CommonArgs {
    /// These options for each source the config file lists.
    pub(super) fn each_source(&self) -> Result<Vec<CommonArgs>> {
        self.fleet.check(self.policies.layout)?;
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
    pub(super) fn one_source(&self) -> Result<CommonArgs> {
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

    pub(super) fn sqlite(&self) -> Result<PathBuf> {
        self.sqlite.clone().ok_or_else(|| {
            Error::new(ErrorKind::Usage, "no SQLite file given").with_hint("pass --sqlite PATH or set LITE2PG_SQLITE")
        })
    }

    /// The given PostgreSQL, or the managed local one when no URL is given anywhere.
    pub(super) fn postgres(&self) -> Result<PgTarget> {
        match self.postgres.clone().or_else(|| std::env::var("POSTGRES_DATABASE_URL").ok()) {
            Some(url) => PgTarget::parse(&url),
            None => PgTarget::parse(&LocalServer::ensure_running()?),
        }
    }

    pub(super) fn selection(&self) -> Selection {
        Selection { include: self.tables.clone(), exclude: self.exclude.clone() }
    }

    /// The source these options name, for the commands that never copy it whole.
    pub(super) fn source_options(&self) -> Result<SourceOptions> {
        Ok(SourceOptions {
            sqlite: self.sqlite()?,
            target: self.postgres()?,
            schema: self.schema.clone(),
            selection: self.selection(),
            source_id: self.source_id.clone(),
            policies: self.policies(),
        })
    }

    /// The source these options name, copied whole when it has not been yet (or `replace` asks for it again).
    pub(super) fn snapshot_options(&self, replace: bool, jobs: usize) -> Result<SnapshotOptions> {
        Ok(SnapshotOptions {
            source: self.source_options()?,
            replace,
            jobs,
            progress: !self.json && std::io::stderr().is_terminal(),
        })
    }

    /// What every source of the config file shares, for streaming them all in one process.
    pub(super) fn fleet_options(&self, jobs: usize) -> Result<FleetOptions> {
        Ok(FleetOptions { target: self.postgres()?, selection: self.selection(), policies: self.policies(), jobs })
    }

    fn policies(&self) -> Policies {
        let mut policies = self.policies.clone();
        policies.into_existing = self.into_existing;
        policies
    }
}
