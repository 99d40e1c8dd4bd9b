//! The SQLite side: opening the file safely, reading its schema, installing change capture and reading changes.

pub mod capture;
pub mod changes;
pub mod index_sql;
pub mod introspect;
pub mod scan;

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, ErrorKind, Result};

/// How long lite2pg waits for another process's SQLite lock before giving up on one attempt.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether lite2pg needs to write to the file (capture, pruning) or only read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

/// Opens an existing SQLite database; never creates a file, and checks that it really is a database.
pub fn open(path: &Path, access: Access) -> Result<Connection> {
    let shown = path.display();
    let metadata = std::fs::metadata(path).map_err(|err| {
        Error::new(ErrorKind::SqliteOpen, format!("cannot open SQLite file {shown}: {err}"))
            .with_hint("check the --sqlite path (lite2pg never creates an empty database)")
    })?;
    if metadata.is_dir() {
        return Err(Error::new(ErrorKind::SqliteOpen, format!("{shown} is a directory, not a SQLite file"))
            .with_hint("give the path of the database file itself"));
    }
    let flags = match access {
        Access::ReadOnly => OpenFlags::SQLITE_OPEN_READ_ONLY,
        Access::ReadWrite => OpenFlags::SQLITE_OPEN_READ_WRITE,
    } | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|err| Error::from(err).context(format!("cannot open SQLite file {shown}")))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    check_is_database(&conn, path)?;
    Ok(conn)
}

fn check_is_database(conn: &Connection, path: &Path) -> Result<()> {
    match conn.query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get::<_, i64>(0)) {
        Ok(_) => Ok(()),
        Err(err) if err.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase) => {
            Err(Error::new(ErrorKind::SqliteOpen, format!("{} is not a SQLite database (or it is encrypted)", path.display()))
                .with_hint("check the --sqlite path; encrypted databases must be decrypted first"))
        }
        Err(err) => Err(Error::from(err).context(format!("cannot read SQLite file {}", path.display()))),
    }
}

/// The SQLite file's journal mode (`wal`, `delete`, …).
pub fn journal_mode(conn: &Connection) -> Result<String> {
    Ok(conn.query_row("PRAGMA journal_mode", [], |row| row.get(0))?)
}

/// The schema's version number, which SQLite bumps on every schema change (ours included).
pub fn schema_version(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("PRAGMA schema_version", [], |r| r.get(0))?)
}
