//! The SQLite side: opening the file safely, reading its schema, installing change capture and reading changes.

pub mod capture;
pub mod changes;
pub mod index_sql;
pub mod introspect;
pub mod scan;

use std::path::{Path, PathBuf};
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
///
/// Read-only access works on a file and directory this user cannot write. A WAL file there is read normally
/// while its -wal and -shm files exist (a writer has it open); without them SQLite cannot create them, and the
/// file is opened `immutable=1`: no locks and no WAL, which reads correctly only while no process writes it.
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
    // SQLite would make a new database in it; and a file copied into place (`cp backup app.db`) is empty first.
    let mut wal = path.as_os_str().to_os_string();
    wal.push("-wal");
    let wal_written = std::fs::metadata(&wal).is_ok_and(|wal| wal.len() > 0);
    if metadata.len() == 0 && !wal_written {
        return Err(Error::new(
            ErrorKind::SqliteOpen,
            format!("{shown} is empty (0 bytes): no database yet, or one being copied into place"),
        )
        .with_hint("lite2pg never writes into an empty file: start it again once the database is in place"));
    }
    let flags = match access {
        Access::ReadOnly => OpenFlags::SQLITE_OPEN_READ_ONLY,
        Access::ReadWrite => OpenFlags::SQLITE_OPEN_READ_WRITE,
    } | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|err| Error::from(err).context(format!("cannot open SQLite file {shown}")))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    match check_is_database(&conn) {
        Err(err) if access == Access::ReadOnly && cannot_create_wal_files(&err) => open_immutable(path),
        Err(err) => Err(database_error(err, path)),
        Ok(()) => Ok(conn),
    }
}

fn check_is_database(conn: &Connection) -> rusqlite::Result<()> {
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get::<_, i64>(0)).map(|_| ())
}

/// A WAL file in a directory this user cannot write, with no -wal and -shm files for SQLite to use.
fn cannot_create_wal_files(err: &rusqlite::Error) -> bool {
    err.sqlite_error().is_some_and(|e| e.extended_code == rusqlite::ffi::SQLITE_READONLY_DIRECTORY)
}

/// Opens a WAL file that no process has open (it has no -wal file) in a read-only directory as immutable.
fn open_immutable(path: &Path) -> Result<Connection> {
    let shown = path.display();
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
        return Err(Error::new(
            ErrorKind::SqliteOpen,
            format!("cannot read {shown}: it is in WAL mode, and SQLite cannot create its -shm file in a directory this user cannot write"),
        )
        .with_hint("run as a user who may write the directory, or while the application has the file open"));
    }
    tracing::warn!(
        "{shown} is in WAL mode in a directory this user cannot write: reading it as immutable, which is correct only while no process writes it"
    );
    let absolute = path
        .canonicalize()
        .map_err(|err| Error::new(ErrorKind::SqliteOpen, format!("cannot open SQLite file {shown}: {err}")))?;
    let uri = format!("file:{}?immutable=1", uri_path(&absolute));
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(uri, flags)
        .map_err(|err| Error::from(err).context(format!("cannot open SQLite file {shown}")))?;
    check_is_database(&conn).map_err(|err| database_error(err, path))?;
    Ok(conn)
}

/// A path for a `file:` URI: every byte but unreserved characters and `/` percent-encoded.
fn uri_path(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str()
        .as_bytes()
        .iter()
        .map(|&b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn database_error(err: rusqlite::Error, path: &Path) -> Error {
    if err.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase) {
        return Error::new(ErrorKind::SqliteOpen, format!("{} is not a SQLite database (or it is encrypted)", path.display()))
            .with_hint("check the --sqlite path; encrypted databases must be decrypted first");
    }
    Error::from(err).context(format!("cannot read SQLite file {}", path.display()))
}

/// The SQLite file's journal mode (`wal`, `delete`, …).
pub fn journal_mode(conn: &Connection) -> Result<String> {
    Ok(conn.query_row("PRAGMA journal_mode", [], |row| row.get(0))?)
}

/// Starts a read transaction on `conn` and checks that the schema is still at `expected`: reads made from a schema
/// read earlier would otherwise meet tables and columns a migration has just changed.
pub fn begin_read_at(conn: &Connection, expected: i64) -> Result<()> {
    conn.execute_batch("BEGIN")?;
    let now = schema_version(conn)?;
    if now != expected {
        conn.execute_batch("ROLLBACK")?;
        return Err(Error::new(
            ErrorKind::SchemaMoved,
            "the SQLite schema changed while lite2pg was reading the file (a migration ran)",
        )
        .with_hint("lite2pg reads it again from the new schema by itself"));
    }
    Ok(())
}

/// The schema's version number, which SQLite bumps on every schema change (ours included).
pub fn schema_version(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("PRAGMA schema_version", [], |r| r.get(0))?)
}

/// Whether the main database holds an ordinary table named `name`.
pub fn table_exists(conn: &Connection, name: &str) -> Result<bool> {
    Ok(conn.query_row("SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1", [name], |r| r.get(0))?)
}
