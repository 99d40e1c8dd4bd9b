//! The PostgreSQL side: connecting (with errors that say where and why), lite2pg's own state schema, DDL,
//! binary COPY and applying change batches.

pub(crate) mod apply;
pub(crate) mod catalog;
pub(crate) mod citus;
pub(crate) mod copy;
pub mod local;
pub mod pool;
pub(crate) mod shared_tables;
pub(crate) mod state;
pub(crate) mod tls;
pub(crate) mod tx;

use std::path::PathBuf;
use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls};

use crate::error::{Error, ErrorKind, PgDetails, Result};

/// A PostgreSQL target: connection settings plus a printable description that never holds the password.
#[derive(Clone)]
pub struct PgTarget {
    config: Config,
    shown: String,
    tls: tls::TlsSettings,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl PgTarget {
    /// Parses a `postgres://` URL or a `key=value` connection string. A password missing from it is taken from
    /// `PGPASSWORD`, the file named by `LITE2PG_PASSWORD_FILE`, or `~/.pgpass` (`PGPASSFILE`), as libpq does.
    /// `sslmode` (also `verify-ca`/`verify-full`) and `sslrootcert` choose TLS, see [`tls`].
    pub fn parse(url: &str) -> Result<PgTarget> {
        let (url, tls) = tls::split_settings(url)?;
        let mut config: Config = url.parse().map_err(|err| {
            Error::new(ErrorKind::Usage, format!("cannot parse the PostgreSQL URL {}: {err}", redact_url(&url)))
                .with_hint("expected postgres://user[:password]@host[:port]/database")
        })?;
        if config.get_password().is_none() {
            if let Ok(password) = std::env::var("PGPASSWORD") {
                config.password(password);
            }
        }
        if config.get_user().is_none() {
            config.user(std::env::var("PGUSER").as_deref().unwrap_or("postgres"));
        }
        if config.get_password().is_none() {
            if let Some(password) = password_from_files(&config)? {
                config.password(password);
            }
        }
        config.ssl_mode(tls.mode.ssl_mode());
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        config.application_name("lite2pg");
        let shown = describe(&config);
        Ok(PgTarget { config, shown, tls })
    }

    /// `user@host:port/dbname`, for messages.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The database name.
    pub fn dbname(&self) -> &str {
        self.config.get_dbname().or(self.config.get_user()).unwrap_or("postgres")
    }

    /// The same server with another database, for tests and tools that create databases.
    pub fn with_dbname(&self, dbname: &str) -> PgTarget {
        let mut config = self.config.clone();
        config.dbname(dbname);
        PgTarget { shown: describe(&config), config, tls: self.tls.clone() }
    }

    /// Opens a connection and drives it on the runtime.
    pub async fn connect(&self) -> Result<Client> {
        if self.tls.mode == tls::TlsMode::Disable {
            let (client, connection) = self.config.connect(NoTls).await.map_err(|err| connect_error(self, err))?;
            tokio::spawn(drive(connection));
            return Ok(client);
        }
        let connector = tls::connector(&self.tls)?;
        let (client, connection) = self.config.connect(connector).await.map_err(|err| connect_error(self, err))?;
        tokio::spawn(drive(connection));
        Ok(client)
    }
}

async fn drive<F: std::future::Future<Output = std::result::Result<(), tokio_postgres::Error>>>(connection: F) {
    if let Err(err) = connection.await {
        tracing::debug!(error = %err, "postgres connection ended");
    }
}

/// A password from `LITE2PG_PASSWORD_FILE` (the whole file, e.g. a container secret), else from the pgpass file
/// (`PGPASSFILE` or `~/.pgpass`) entry matching host, port, database and user.
fn password_from_files(config: &Config) -> Result<Option<String>> {
    if let Some(path) = std::env::var_os("LITE2PG_PASSWORD_FILE") {
        let password = std::fs::read_to_string(&path).map_err(|err| {
            Error::new(ErrorKind::Usage, format!("cannot read the password file {}: {err}", PathBuf::from(&path).display()))
                .with_hint("LITE2PG_PASSWORD_FILE must name a readable file holding the password")
        })?;
        return Ok(Some(password.trim_end_matches(['\n', '\r']).to_string()));
    }
    let file = std::env::var_os("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".pgpass")));
    let Some(contents) = file.and_then(|f| std::fs::read_to_string(f).ok()) else { return Ok(None) };
    let (host, port, user, dbname) = endpoint(config);
    // libpq matches a Unix-socket connection to the host "localhost".
    let host = if host.starts_with('/') { "localhost".to_string() } else { host };
    Ok(pgpass_lookup(&contents, [&host, &port.to_string(), dbname, user]))
}

/// The password of the first pgpass line whose four fields match (`*` matches anything; `\:` and `\\` escape).
fn pgpass_lookup(contents: &str, wanted: [&str; 4]) -> Option<String> {
    contents.lines().filter(|line| !line.starts_with('#')).find_map(|line| {
        let fields = pgpass_fields(line);
        let [host, port, db, user, password] = fields.as_slice() else { return None };
        let matches = [host, port, db, user].iter().zip(wanted).all(|(field, want)| *field == "*" || *field == want);
        matches.then(|| password.clone())
    })
}

fn pgpass_fields(line: &str) -> Vec<String> {
    let (mut fields, mut current, mut chars) = (Vec::new(), String::new(), line.chars());
    while let Some(c) = chars.next() {
        match c {
            '\\' => current.extend(chars.next()),
            ':' if fields.len() < 4 => fields.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    fields.push(current);
    fields
}

/// Host (or socket directory), port, user and database a configuration connects to, with libpq's defaults.
fn endpoint(config: &Config) -> (String, u16, &str, &str) {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("postgres");
    (host, port, user, config.get_dbname().unwrap_or(user))
}

fn describe(config: &Config) -> String {
    let (host, port, user, dbname) = endpoint(config);
    format!("{user}@{host}:{port}/{dbname}")
}

/// Replaces the password in a URL with `***`, for anything printed.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let Some(at) = rest.rfind('@') else {
        return url.to_string();
    };
    match rest[..at].find(':') {
        Some(colon) => format!("{}{}:***{}", &url[..scheme_end + 3], &rest[..colon], &rest[at..]),
        None => url.to_string(),
    }
}

fn connect_error(target: &PgTarget, err: tokio_postgres::Error) -> Error {
    let address = target.shown.split('@').nth(1).unwrap_or(&target.shown).split('/').next().unwrap_or_default().to_string();
    if let Some(db) = err.as_db_error() {
        let code = db.code().clone();
        let user = target.config.get_user().unwrap_or("postgres");
        let (kind, hint) = if code == SqlState::INVALID_PASSWORD || code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
            (ErrorKind::PgAuth, "check the user and password (in the URL, PGPASSWORD or ~/.pgpass)".to_string())
        } else if code == SqlState::INVALID_CATALOG_NAME {
            (ErrorKind::Usage, format!("create it first: createdb -h … {}", target.dbname()))
        } else if code.code().starts_with("57P") || code.code().starts_with("53") {
            (ErrorKind::PgConnect, "the server is starting, stopping or full; lite2pg retries".to_string())
        } else {
            (ErrorKind::PgQuery, "see the PostgreSQL server log".to_string())
        };
        return Error::new(kind, format!("PostgreSQL at {address} refused user {user}: {}", db.message())).with_hint(hint);
    }
    let cause = io_cause(&err).unwrap_or_else(|| err.to_string());
    if cause.contains("certificate") || cause.contains("TLS") || cause.contains("tls") {
        return Error::new(ErrorKind::Usage, format!("TLS with PostgreSQL at {address} failed ({cause})"))
            .with_hint(tls_hint(&cause));
    }
    if cause.contains("server does not support TLS") || err.to_string().contains("does not support TLS") {
        return Error::new(ErrorKind::Usage, format!("PostgreSQL at {address} does not offer TLS"))
            .with_hint("enable ssl on the server, or use sslmode=prefer/disable");
    }
    Error::new(ErrorKind::PgConnect, format!("cannot reach PostgreSQL at {address} ({cause})"))
        .with_hint("is the server running and the address right?")
}

/// What to do about a failed TLS handshake, from rustls's reason.
fn tls_hint(cause: &str) -> &'static str {
    if cause.contains("UnsupportedCertVersion") {
        "the server's certificate is X.509 v1 (as Citus and `openssl x509 -req` make them), which cannot be verified \
         here: use sslmode=require (encrypted, like libpq's default prefer), or give the server a v3 certificate \
         signed by your CA and pass the CA with sslrootcert=/path/ca.pem"
    } else if cause.contains("UnknownIssuer") {
        "the server's certificate is not signed by a CA lite2pg trusts: pass the CA that signed it with \
         sslrootcert=/path/ca.pem, or use sslmode=require to encrypt without verifying"
    } else {
        "with sslmode=verify-full the host in the URL must be a name the server's certificate holds; \
         pass the CA with sslrootcert=/path/ca.pem, or use sslmode=verify-ca / require"
    }
}

fn io_cause(err: &tokio_postgres::Error) -> Option<String> {
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        if let Some(io) = inner.downcast_ref::<std::io::Error>() {
            return Some(match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
                _ => io.to_string(),
            });
        }
        source = inner.source();
    }
    if err.to_string().contains("timeout") {
        return Some("timed out".to_string());
    }
    None
}

/// Every PostgreSQL error becomes a classified one; this lives here, beside `classify`, so that `error` needs
/// nothing from `pg`.
impl From<tokio_postgres::Error> for Error {
    fn from(err: tokio_postgres::Error) -> Self {
        classify(err)
    }
}

/// Turns a statement error into a kind (what retrying can fix, what needs a person, what the relax policy
/// handles) and keeps what PostgreSQL reported: SQLSTATE, message, detail and the table, column and constraint.
pub fn classify(err: tokio_postgres::Error) -> Error {
    let Some(db) = err.as_db_error() else {
        let kind = if err.is_closed() || io_cause(&err).is_some() { ErrorKind::PgConnect } else { ErrorKind::PgQuery };
        let message = format!("PostgreSQL: {err}");
        return Error::new(kind, message).with_source(err);
    };
    let details = PgDetails {
        code: db.code().code().to_string(),
        message: db.message().to_string(),
        detail: db.detail().map(str::to_string),
        schema: db.schema().map(str::to_string),
        table: db.table().map(str::to_string),
        column: db.column().map(str::to_string),
        constraint: db.constraint().map(str::to_string),
    };
    let code = details.code.as_str();
    let kind = match code {
        c if c.starts_with("08") || c.starts_with("57P") => ErrorKind::PgConnect,
        "40001" | "40P01" | "55P03" | "57014" => ErrorKind::PgTransient,
        c if c.starts_with("53") => ErrorKind::PgTransient,
        "42501" => ErrorKind::PgPermission,
        c if c.starts_with("28") => ErrorKind::PgAuth,
        c if c.starts_with("23") => ErrorKind::PgConstraint,
        // A value too long for a btree index (over 2,704 bytes): SQLite's indexes hold it, so the index is relaxed.
        "54000" if details.constraint.is_some() => ErrorKind::PgConstraint,
        _ => ErrorKind::PgQuery,
    };
    let error = Error::new(kind, describe_refusal(&details));
    let error = match kind {
        ErrorKind::PgPermission => error.with_hint("grant lite2pg's user the privilege named above (see docs)"),
        _ if code == "25006" => error.with_hint(
            "this PostgreSQL (or database) is read-only — a standby, or default_transaction_read_only is on: point lite2pg at the primary",
        ),
        _ if code.starts_with("42") => {
            error.with_hint("PostgreSQL's tables no longer fit what lite2pg made: see `lite2pg doctor`, or copy again with `lite2pg snapshot --replace`")
        }
        _ if code == "P0001" => error.with_hint("a trigger or rule in PostgreSQL raised this: change or drop it, then start lite2pg again"),
        _ => error,
    };
    error.with_postgres(details).with_source(err)
}

/// `PostgreSQL: <message> (SQLSTATE 23514, table "s"."t", constraint "c"): <detail>`.
fn describe_refusal(details: &PgDetails) -> String {
    let mut context = vec![format!("SQLSTATE {}", details.code)];
    if let Some(table) = &details.table {
        let name = match &details.schema {
            Some(schema) => crate::ident::qualified(schema, table),
            None => crate::ident::quote(table),
        };
        context.push(format!("table {name}"));
    }
    context.extend(details.column.as_ref().map(|column| format!("column {}", crate::ident::quote(column))));
    context.extend(details.constraint.as_ref().map(|constraint| format!("constraint {}", crate::ident::quote(constraint))));
    let mut message = format!("PostgreSQL: {} ({})", details.message, context.join(", "));
    if let Some(detail) = &details.detail {
        message.push_str(": ");
        message.push_str(detail);
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgpass_lines_match_like_libpq() {
        let file = "# comment\ndb.example:5432:app:me:first\n*:*:*:me:pa\\:ss\n";
        assert_eq!(pgpass_lookup(file, ["db.example", "5432", "app", "me"]).as_deref(), Some("first"));
        assert_eq!(pgpass_lookup(file, ["other", "5433", "x", "me"]).as_deref(), Some("pa:ss"));
        assert_eq!(pgpass_lookup(file, ["other", "5433", "x", "you"]), None);
    }

    #[test]
    fn passwords_never_shown() {
        assert_eq!(redact_url("postgres://app:s3cret@db:5432/x"), "postgres://app:***@db:5432/x");
        assert_eq!(redact_url("postgres://app@db/x"), "postgres://app@db/x");
        let target = PgTarget::parse("postgres://app:s3cret@db:5433/x").unwrap();
        assert_eq!(target.shown(), "app@db:5433/x");
        assert!(!format!("{target:?}").contains("s3cret"));
    }
}
