//! `lite2pg init`: install change capture in the SQLite file.

use std::process::ExitCode;

use crate::error::{Error, ErrorKind, Result};
use crate::source::Source;
use crate::sqlite::journal_mode;

use super::CommonArgs;

pub(super) fn init(common: &CommonArgs) -> Result<ExitCode> {
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
