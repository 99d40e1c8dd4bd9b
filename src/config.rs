//! Settings: the policies the pipeline follows (what to do with a value that does not fit, with a dropped table,
//! which PostgreSQL type a column gets) and the `lite2pg.toml` file they can come from.
//!
//! Order, highest first: command-line flags, the config file, environment variables, built-in defaults. An
//! environment variable the file overrides is reported in the log, never ignored silently.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, ErrorKind, Result};
use crate::mapping::layout::Layout;
use crate::mapping::types::{is_untyped, same_kind, PgType, SqlValue};

/// The file looked for next to the SQLite file when `--config` is not given.
pub const DEFAULT_FILE_NAME: &str = "lite2pg.toml";

/// What happens to a row holding a value its PostgreSQL column cannot hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum MisfitPolicy {
    /// `widen` for a value of the column's own kind (a number in a number column, text in a date, time, uuid,
    /// JSON or varchar column) and for every value in a column whose declaration names no kind, `reject` for anything else: the
    /// stream never stalls and no value disappears.
    #[default]
    Auto,
    /// Alter the PostgreSQL column to a type holding both, then apply the row.
    Widen,
    /// Keep the row out of PostgreSQL and record it in `lite2pg.rejects`; apply the rest.
    Reject,
    /// Stop applying, leaving the position before the batch.
    Stop,
}

/// What the policy decides for one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MisfitAction {
    Widen,
    Reject,
    Stop,
}

impl MisfitPolicy {
    /// The action for `value` arriving in a column of type `column_type` declared as `declared` in SQLite.
    pub fn action(self, value: &SqlValue, column_type: PgType, declared: &str) -> MisfitAction {
        match self {
            MisfitPolicy::Widen => MisfitAction::Widen,
            MisfitPolicy::Reject => MisfitAction::Reject,
            MisfitPolicy::Stop => MisfitAction::Stop,
            MisfitPolicy::Auto if is_untyped(declared) || same_kind(value, column_type) => MisfitAction::Widen,
            MisfitPolicy::Auto => MisfitAction::Reject,
        }
    }
}

/// What happens in PostgreSQL when a captured table is dropped in SQLite.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DroppedTables {
    /// Keep the PostgreSQL table with the rows it had; only capture stops.
    #[default]
    Keep,
    /// Drop the PostgreSQL table too.
    Drop,
}

/// The policies the pipeline follows, per table and column where the file sets them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policies {
    pub on_misfit: MisfitPolicy,
    pub dropped_tables: DroppedTables,
    pub layout: Layout,
    /// Sync into the application's own tables (`--into-existing`): their DDL is never changed, so a value that
    /// does not fit is rejected where `widen` would alter the column.
    pub into_existing: bool,
    tables: BTreeMap<String, TableSettings>,
}

impl Policies {
    /// The misfit policy of one column: the column's, else its table's, else the default.
    pub fn misfit(&self, table: &str, column: &str) -> MisfitPolicy {
        let table = self.tables.get(table);
        table
            .and_then(|t| t.columns.get(column))
            .and_then(|c| c.on_misfit)
            .or_else(|| table.and_then(|t| t.on_misfit))
            .unwrap_or(self.on_misfit)
    }

    /// The PostgreSQL type the file asks for a column, if any.
    pub fn type_override(&self, table: &str, column: &str) -> Option<PgType> {
        self.tables.get(table)?.columns.get(column)?.pg_type
    }
}

/// `[[source]]` in the config file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceEntry {
    pub sqlite: PathBuf,
    /// Overrides the id stored in the file (else the stored one, else the file's name without extension).
    pub source_id: Option<String>,
}

/// `lite2pg.toml`. Paths in it are relative to the file's directory.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub sqlite: Option<PathBuf>,
    pub postgres: Option<String>,
    pub schema: Option<String>,
    pub source_id: Option<String>,
    pub include: Option<Vec<String>>,
    pub exclude: Option<Vec<String>>,
    pub metrics_addr: Option<String>,
    pub jobs: Option<usize>,
    pub on_misfit: Option<MisfitPolicy>,
    pub dropped_tables: Option<DroppedTables>,
    #[serde(default)]
    pub table: BTreeMap<String, TableSettings>,
    /// `[[source]]`: several SQLite files synced by one process.
    #[serde(default)]
    pub source: Vec<SourceEntry>,
    /// Every file matching it is a source, also those that appear while running.
    pub source_glob: Option<String>,
    /// PostgreSQL connections shared by the sources for applying batches.
    pub pool_size: Option<usize>,
    pub layout: Option<Layout>,
}

/// `[table.NAME]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSettings {
    pub on_misfit: Option<MisfitPolicy>,
    #[serde(default)]
    pub columns: BTreeMap<String, ColumnSettings>,
}

/// `[table.NAME.columns.COLUMN]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnSettings {
    #[serde(rename = "type", default, deserialize_with = "pg_type_name")]
    pub pg_type: Option<PgType>,
    pub on_misfit: Option<MisfitPolicy>,
}

fn pg_type_name<'de, D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Option<PgType>, D::Error> {
    let name = String::deserialize(deserializer)?;
    PgType::from_setting(&name).map(Some).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "unknown type {name:?}: lite2pg writes {}",
            PgType::SETTING_NAMES.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
        ))
    })
}

impl ConfigFile {
    /// Reads the file at `explicit`, or `lite2pg.toml` next to the SQLite file when there is one.
    pub fn find(explicit: Option<&Path>, sqlite: Option<&Path>) -> Result<Option<(PathBuf, ConfigFile)>> {
        let path = match (explicit, sqlite) {
            (Some(path), _) => path.to_path_buf(),
            (None, Some(sqlite)) => {
                let beside = sqlite.parent().unwrap_or(Path::new(".")).join(DEFAULT_FILE_NAME);
                if !beside.is_file() {
                    return Ok(None);
                }
                beside
            }
            (None, None) => return Ok(None),
        };
        let text = std::fs::read_to_string(&path).map_err(|err| {
            Error::new(ErrorKind::Usage, format!("cannot read config file {}: {err}", path.display()))
                .with_hint("check the --config path")
        })?;
        let mut file = ConfigFile::parse(&text).map_err(|err| err.context(format!("config file {}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        file.sqlite = file.sqlite.map(|sqlite| base.join(sqlite));
        for entry in &mut file.source {
            entry.sqlite = base.join(&entry.sqlite);
        }
        file.source_glob = file.source_glob.map(|pattern| base.join(pattern).to_string_lossy().to_string());
        Ok(Some((path, file)))
    }

    /// Parses the file's text; unknown keys are an error naming them.
    pub fn parse(text: &str) -> Result<ConfigFile> {
        toml::from_str(text).map_err(|err| {
            Error::new(ErrorKind::Usage, err.to_string().trim_end().to_string())
                .with_hint("the keys lite2pg knows are listed in docs/configuration.md")
        })
    }

    /// The policies the file sets, under the defaults.
    pub fn policies(&self) -> Policies {
        Policies {
            on_misfit: self.on_misfit.unwrap_or_default(),
            dropped_tables: self.dropped_tables.unwrap_or_default(),
            layout: self.layout.unwrap_or_default(),
            into_existing: false,
            tables: self.table.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_settings_win_over_table_and_default() -> Result<()> {
        let file = ConfigFile::parse(
            r#"
            on_misfit = "stop"
            [table.orders]
            on_misfit = "reject"
            [table.orders.columns.price]
            type = "numeric"
            on_misfit = "widen"
            "#,
        )?;
        let policies = file.policies();
        assert_eq!(policies.misfit("orders", "price"), MisfitPolicy::Widen);
        assert_eq!(policies.misfit("orders", "note"), MisfitPolicy::Reject);
        assert_eq!(policies.misfit("users", "name"), MisfitPolicy::Stop);
        assert_eq!(policies.type_override("orders", "price"), Some(PgType::Numeric));
        Ok(())
    }

    #[test]
    fn unknown_keys_and_types_are_named() {
        let err = ConfigFile::parse("postgress = 'x'").unwrap_err().to_string();
        assert!(err.contains("postgress"), "{err}");
        let err = ConfigFile::parse("[table.t.columns.c]\ntype = 'varchar2'").unwrap_err().to_string();
        assert!(err.contains("varchar2") && err.contains("bigint"), "{err}");
        let err = ConfigFile::parse("on_misfit = 'ignore'").unwrap_err().to_string();
        assert!(err.contains("ignore"), "{err}");
    }
}
