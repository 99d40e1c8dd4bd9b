//! Shared test helpers: a PostgreSQL server (`LITE2PG_TEST_POSTGRES`, the local service, or a private cluster),
//! a fresh database per test that is dropped afterwards, SQLite files in temp dirs, and the comparison that
//! ends every test.

pub mod apps;
pub mod citus;
pub mod cluster;
pub mod daemon;
pub mod fleet;
pub mod http;
pub mod wait;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use lite2pg::options::{SnapshotOptions, SourceOptions};
use lite2pg::pg::PgTarget;
use lite2pg::source::Selection;

/// The server every test uses: a URL to a database we may create databases from.
fn server_url() -> &'static str {
    static SERVER: OnceLock<(String, Option<cluster::PrivateCluster>)> = OnceLock::new();
    &SERVER
        .get_or_init(|| {
            if let Ok(url) = std::env::var("LITE2PG_TEST_POSTGRES") {
                return (url, None);
            }
            if std::net::TcpStream::connect(("127.0.0.1", 5432)).is_ok() {
                return ("postgres://postgres@127.0.0.1:5432/postgres".to_string(), None);
            }
            let cluster = cluster::PrivateCluster::start_new()
                .expect("no PostgreSQL: set LITE2PG_TEST_POSTGRES, start the service, or install the server binaries");
            (cluster.url("postgres"), Some(cluster))
        })
        .0
}

/// A fresh database, dropped when the value is dropped.
pub struct TestDb {
    pub name: String,
    pub target: PgTarget,
    admin: PgTarget,
    admin_url: String,
}

impl TestDb {
    pub async fn new() -> TestDb {
        TestDb::on(server_url()).await
    }

    /// A fresh database on the server at `admin_url`.
    pub async fn on(admin_url: &str) -> TestDb {
        let admin = PgTarget::parse(admin_url).unwrap();
        let mut bytes = [0u8; 6];
        getrandom::getrandom(&mut bytes).unwrap();
        let name = format!("lite2pg_test_{}", lite2pg::mapping::types::hex(&bytes));
        let client = admin.connect().await.unwrap();
        client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
        TestDb { target: admin.with_dbname(&name), name, admin, admin_url: admin_url.to_string() }
    }

    /// The database's URL, for the CLI (the admin URL with the database name replaced).
    pub fn url(&self) -> String {
        let (base, query) = self.admin_url.split_once('?').map_or((self.admin_url.as_str(), None), |(b, q)| (b, Some(q)));
        let host_start = base.find("://").map_or(0, |i| i + 3);
        let server = match base[host_start..].find('/') {
            Some(slash) => &base[..host_start + slash],
            None => base,
        };
        match query {
            Some(query) => format!("{server}/{}?{query}", self.name),
            None => format!("{server}/{}", self.name),
        }
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        self.target.connect().await.unwrap()
    }

    /// Source `sqlite` synced into schema public of this database.
    pub fn source(&self, sqlite: &Path) -> SourceOptions {
        SourceOptions {
            sqlite: sqlite.to_path_buf(),
            target: self.target.clone(),
            schema: "public".to_string(),
            selection: Selection::default(),
            source_id: None,
            policies: Default::default(),
        }
    }

    /// `source`, copied with two connections when it has not been copied yet.
    pub fn options(&self, sqlite: &Path) -> SnapshotOptions {
        SnapshotOptions { source: self.source(sqlite), replace: false, jobs: 2, progress: false }
    }

    /// Asserts that every captured table equals its PostgreSQL copy, value by value.
    pub async fn assert_equal(&self, sqlite: &Path) {
        let report = lite2pg::verify::verify(&self.source(sqlite)).await.unwrap();
        assert!(!report.tables.is_empty(), "nothing was compared");
        for diff in report.tables {
            assert!(diff.is_equal(), "table {} differs: {diff:?}", diff.table);
        }
    }

    /// One column of a query's rows, as text.
    pub async fn texts(&self, sql: &str) -> Vec<Option<String>> {
        let rows = self.client().await.query(sql, &[]).await.unwrap();
        rows.iter().map(|r| r.get(0)).collect()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                if let Ok(client) = admin.connect().await {
                    let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
                }
            });
        })
        .join();
    }
}

/// A temp dir holding `app.db`, made by running `sql`.
pub struct SqliteFile {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl SqliteFile {
    pub fn new(sql: &str) -> SqliteFile {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.db");
        let conn = rusqlite::Connection::open(&path).unwrap();
        // The bundled SQLite enforces foreign keys by default; most applications' SQLite does not.
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA foreign_keys = OFF;").unwrap();
        conn.execute_batch(sql).unwrap();
        SqliteFile { _dir: dir, path }
    }

    pub fn conn(&self) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(&self.path).unwrap();
        conn.busy_timeout(std::time::Duration::from_secs(30)).unwrap();
        conn.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
        conn
    }

    pub fn exec(&self, sql: &str) {
        self.conn().execute_batch(sql).unwrap();
    }
}

/// The lite2pg binary, with logs quiet unless asked.
pub fn lite2pg() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lite2pg"));
    command.env_remove("LITE2PG_POSTGRES").env_remove("POSTGRES_DATABASE_URL").env_remove("LITE2PG_SQLITE");
    command
}

/// `lite2pg run --once` from `file` into `db` (warnings and errors logged), and its output.
pub fn run_once(db: &TestDb, file: &SqliteFile) -> Output {
    let path = file.path.to_str().unwrap();
    lite2pg().args(["run", "--once", "--sqlite", path, "--postgres", &db.url()]).env("RUST_LOG", "warn").output().unwrap()
}

/// Runs lite2pg with `args` and returns its output.
pub fn lite2pg_output(args: &[&str]) -> Output {
    lite2pg().args(args).output().unwrap()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Whether PostgreSQL enforces uniqueness of exactly `column` of `table` (a constraint or a unique index).
pub async fn unique(db: &TestDb, table: &str, column: &str) -> bool {
    let sql = format!(
        "SELECT count(*)::text FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
         WHERE i.indrelid = 'public.{table}'::regclass AND i.indisunique AND NOT i.indisprimary AND i.indnatts = 1
           AND a.attname = '{column}'"
    );
    db.texts(&sql).await != [Some("0".to_string())]
}
