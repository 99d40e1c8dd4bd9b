//! Where several sources' tables go in PostgreSQL, and everything that differs between the two layouts: the
//! source column leading a shared table's keys, the condition and parameter that keep one source's rows.

use serde::Deserialize;
use tokio_postgres::types::ToSql;

use crate::ident::quote;

/// The column leading every key of a table shared by several sources (`layout = "shared_tables"`).
pub const SOURCE_COLUMN: &str = "source_id";
/// The session setting that fills `SOURCE_COLUMN` by default: lite2pg sets it for the source whose rows it writes,
/// so COPY stays as it is for one source. Statements name the source as a parameter instead (`this_source`).
pub const SOURCE_SETTING: &str = "lite2pg.source_id";

/// Where several sources' tables go in PostgreSQL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// Each source's tables in a schema of its own, as in SQLite.
    #[default]
    SchemaPerSource,
    /// One set of tables for all sources, with a `source_id` column leading every key.
    SharedTables,
}

impl Layout {
    /// Whether several sources write one table, their rows told apart by `SOURCE_COLUMN`.
    pub fn shares_tables(self) -> bool {
        self == Layout::SharedTables
    }

    /// `columns` as PostgreSQL keys them: led by the source column when tables are shared.
    pub fn scoped(self, columns: &[String]) -> Vec<String> {
        let source = self.shares_tables().then(|| SOURCE_COLUMN.to_string());
        source.into_iter().chain(columns.iter().cloned()).collect()
    }

    /// `columns` without the source column when tables are shared, for matching rows within one source's.
    pub fn unscoped(self, columns: &[String]) -> Vec<String> {
        columns.iter().filter(|c| !self.shares_tables() || c.as_str() != SOURCE_COLUMN).cloned().collect()
    }

    /// `WHERE`-clause condition keeping `alias`'s rows of the source given as parameter `$param`, or nothing when
    /// tables are not shared. A parameter, not the session setting: on Citus, whose workers never see the setting,
    /// the statement then runs on the one shard holding the source's rows.
    pub fn this_source(self, alias: &str, param: usize) -> String {
        match self {
            Layout::SharedTables => format!(" AND {alias}{} = ${param}", quote(SOURCE_COLUMN)),
            Layout::SchemaPerSource => String::new(),
        }
    }

    /// The parameters `this_source` needs: the source id when tables are shared, else none.
    pub fn source_param(self, source_id: &String) -> Vec<&(dyn ToSql + Sync)> {
        match self {
            Layout::SharedTables => vec![source_id],
            Layout::SchemaPerSource => Vec::new(),
        }
    }

    /// The column list's and the select list's leading items of an `INSERT … SELECT` that writes the source given
    /// as parameter `$param` into a shared table; empty when tables are not shared.
    pub fn source_insert(self, param: usize) -> (String, String) {
        match self {
            Layout::SharedTables => (format!("{}, ", quote(SOURCE_COLUMN)), format!("${param}, ")),
            Layout::SchemaPerSource => (String::new(), String::new()),
        }
    }

    /// The definition of the column a shared table starts with, filled from `SOURCE_SETTING` by default.
    pub fn source_column_definition(self) -> Option<String> {
        self.shares_tables()
            .then(|| format!("{} text NOT NULL DEFAULT current_setting('{SOURCE_SETTING}')", quote(SOURCE_COLUMN)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_shared_tables_lead_keys_with_the_source_column() {
        let key = vec!["id".to_string()];
        assert_eq!(Layout::SharedTables.scoped(&key), ["source_id", "id"]);
        assert_eq!(Layout::SharedTables.unscoped(&Layout::SharedTables.scoped(&key)), key);
        assert_eq!(Layout::SchemaPerSource.scoped(&key), key);
        let own_source_column = vec!["source_id".to_string()];
        assert_eq!(Layout::SchemaPerSource.unscoped(&own_source_column), own_source_column);
        assert_eq!(Layout::SchemaPerSource.this_source("t.", 1), "");
        assert_eq!(Layout::SharedTables.this_source("t.", 2), " AND t.\"source_id\" = $2");
    }
}
