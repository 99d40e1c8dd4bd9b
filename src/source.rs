//! The source: one SQLite file, the tables chosen from it, and its capture state — opened, checked and made
//! ready the same way by every command.

use std::path::{Path, PathBuf};

use rusqlite::Connection;

use crate::error::{Error, ErrorKind, Result};
use crate::sqlite::capture::{self, CaptureState};
use crate::sqlite::introspect::{read_schema, SourceSchema, Table};
use crate::sqlite::{open, Access};

/// Which tables to replicate: all by default, or only `include`, minus `exclude`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

impl Selection {
    /// Whether a table of this name is chosen (for tables appearing while streaming).
    pub fn wants(&self, name: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|n| n == name)) && !self.exclude.iter().any(|n| n == name)
    }

    /// The chosen tables; names that match no table are an error listing the tables there are.
    pub fn apply<'s>(&self, schema: &'s SourceSchema) -> Result<Vec<&'s Table>> {
        for name in self.include.iter().chain(&self.exclude) {
            if schema.table(name).is_none() {
                let known: Vec<&str> = schema.tables.iter().map(|t| t.name.as_str()).collect();
                return Err(Error::new(ErrorKind::Usage, format!("no table named {name:?} in the SQLite file"))
                    .with_hint(format!("tables there: {}", known.join(", "))));
            }
        }
        Ok(schema.tables.iter().filter(|t| self.wants(&t.name)).collect())
    }
}

/// An opened source with capture installed on its chosen tables.
#[derive(Debug)]
pub struct Source {
    pub path: PathBuf,
    pub conn: Connection,
    pub schema: SourceSchema,
    pub capture: CaptureState,
    /// SQLite's schema version `schema` and `capture` are of.
    pub schema_version: i64,
}

impl Source {
    /// Opens the file, reads its schema and installs (or upgrades) capture on the chosen tables (names PostgreSQL
    /// cannot hold are shortened where PostgreSQL statements are written: `ident::pg_name`).
    /// The schema is read again if it changes before capture is installed (an application migrating meanwhile).
    pub fn prepare(path: &Path, selection: &Selection, source_id: Option<&str>) -> Result<Source> {
        let mut conn = open(path, Access::ReadWrite)?;
        loop {
            let version = crate::sqlite::schema_version(&conn)?;
            let schema = read_schema(&conn)?;
            let tables = selection.apply(&schema)?;
            let no_drift = capture::SchemaDrift::default();
            if let Some((capture, schema_version)) = capture::follow(&mut conn, version, &no_drift, &tables, source_id, false)? {
                return Ok(Source { path: path.to_path_buf(), conn, schema, capture, schema_version });
            }
        }
    }

    /// The chosen tables with their registry entries, in name order.
    pub fn captured_tables(&self) -> Vec<(&Table, &capture::CapturedTable)> {
        self.schema.tables.iter().filter_map(|t| self.capture.table(&t.name).map(|c| (t, c))).collect()
    }

    /// The absolute path, as recorded in PostgreSQL.
    pub fn display_path(&self) -> String {
        std::fs::canonicalize(&self.path).unwrap_or_else(|_| self.path.clone()).display().to_string()
    }
}
