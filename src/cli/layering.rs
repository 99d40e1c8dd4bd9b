//! The config file laid under the command line: a flag wins over the file, the file over the environment.

use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::ArgMatches;

use crate::config::ConfigFile;
use crate::error::Result;
use crate::fleet::Fleet;
use crate::mapping::layout::Layout;

use super::{Cli, Command};

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
        let schema = if !schema_given && file.schema.is_none() && common.policies.layout == Layout::SchemaPerSource {
            crate::fleet::SOURCE_ID_PLACEHOLDER.to_string()
        } else {
            common.schema.clone()
        };
        common.fleet = Fleet { entries: file.source.clone(), glob: file.source_glob.clone(), schema };
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
    file: &'a Path,
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
