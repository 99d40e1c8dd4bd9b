//! One error type for the library: a kind that decides whether retrying can help, a message that says what
//! went wrong, and a hint that says what the user can do about it.

use std::fmt;

/// What went wrong, grouped by what the caller should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Wrong options or settings: fix the command line.
    Usage,
    /// The SQLite file is missing, unreadable or not a database.
    SqliteOpen,
    /// SQLite is locked by another writer for longer than we wait.
    SqliteBusy,
    /// Any other SQLite failure.
    Sqlite,
    /// PostgreSQL cannot be reached or the connection broke.
    PgConnect,
    /// PostgreSQL refused a login.
    PgAuth,
    /// PostgreSQL refused a statement for lack of privilege.
    PgPermission,
    /// PostgreSQL failed a statement in a way retrying may fix (serialization, deadlock, shutdown).
    PgTransient,
    /// PostgreSQL failed a statement in a way retrying will not fix.
    PgQuery,
    /// PostgreSQL refused rows for a constraint (NOT NULL, UNIQUE, foreign key, CHECK) that SQLite did not hold.
    PgConstraint,
    /// The SQLite and PostgreSQL schemas do not fit together.
    Schema,
    /// The SQLite schema changed while lite2pg read the file (a migration ran): reading starts over.
    SchemaMoved,
    /// The stored sync state contradicts the SQLite file (restored backup, other database).
    State,
    /// Another lite2pg process holds the source.
    Locked,
}

/// How a long-running loop should react to an error of a given kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryPolicy {
    /// Wait (with backoff) and try again: the cause is expected to go away by itself.
    Timed,
    /// Drop the PostgreSQL constraint SQLite does not hold (loudly) and try again at once: the copy follows SQLite.
    Relax,
    /// Stop: a person has to change something first.
    Manual,
}

impl ErrorKind {
    /// The single place that decides what retrying can fix.
    pub fn retry_policy(self) -> RetryPolicy {
        match self {
            ErrorKind::SqliteBusy
            | ErrorKind::SchemaMoved
            | ErrorKind::PgConnect
            | ErrorKind::PgTransient
            | ErrorKind::Locked => RetryPolicy::Timed,
            ErrorKind::PgConstraint => RetryPolicy::Relax,
            _ => RetryPolicy::Manual,
        }
    }
}

/// The library's error: kind, message, optional hint and source chain.
#[derive(Debug, thiserror::Error)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    hint: Option<String>,
    postgres: Option<Box<PgDetails>>,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// What PostgreSQL said about a statement it refused: the fields of its error report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PgDetails {
    /// SQLSTATE, e.g. `23514`.
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    pub schema: Option<String>,
    pub table: Option<String>,
    pub column: Option<String>,
    pub constraint: Option<String>,
}

impl PgDetails {
    /// The SQLSTATE class (its first two characters, e.g. `23` for integrity violations).
    pub fn class(&self) -> &str {
        self.code.get(..2).unwrap_or(&self.code)
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with a message saying what went wrong.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), hint: None, postgres: None, source: None }
    }

    /// Adds what the user can do about it.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Keeps the underlying error for `{:#}`-style chains and debugging.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Keeps what PostgreSQL reported, for the relax policy, `status` and metrics.
    pub fn with_postgres(mut self, details: PgDetails) -> Self {
        self.postgres = Some(Box::new(details));
        self
    }

    /// What PostgreSQL reported, when it refused a statement.
    pub fn postgres(&self) -> Option<&PgDetails> {
        self.postgres.as_deref()
    }

    /// What went wrong, grouped by reaction.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// What went wrong, without the hint.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// What the user can do about it, if we know.
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// Whether waiting and retrying can fix it.
    pub fn is_retryable(&self) -> bool {
        self.kind.retry_policy() == RetryPolicy::Timed
    }

    /// Adds context in front of the message, keeping kind and hint.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

impl From<rusqlite::Error> for Error {
    fn from(err: rusqlite::Error) -> Self {
        use rusqlite::ffi::ErrorCode;
        let kind = match err.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => ErrorKind::SqliteBusy,
            Some(ErrorCode::NotADatabase | ErrorCode::CannotOpen | ErrorCode::DatabaseCorrupt) => ErrorKind::SqliteOpen,
            _ => ErrorKind::Sqlite,
        };
        let message = format!("SQLite: {err}");
        let error = Error::new(kind, message);
        let error = match kind {
            ErrorKind::SqliteBusy => error.with_hint("another process holds the SQLite write lock; lite2pg waits and retries"),
            _ => error,
        };
        error.with_source(err)
    }
}
