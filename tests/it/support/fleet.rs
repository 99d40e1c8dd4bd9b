//! Many tenant files and the config that lists them by glob, for the tests of one daemon serving many sources.

use std::path::{Path, PathBuf};

use lite2pg::mapping::layout::Layout;

use super::daemon::{daemon_command, Daemon};
use super::TestDb;

const WRITER_SCHEMA: &str = include_str!("../../../examples/writer_schema.sql");

/// A directory of SQLite files and the config file that lists them by glob.
pub struct Tenants {
    dir: tempfile::TempDir,
    shared: bool,
}

impl Tenants {
    /// Each source in a schema of its own.
    pub fn new(db: &TestDb, pool_size: usize) -> Tenants {
        Tenants::with_layout(db, pool_size, false)
    }

    /// Every source in one set of tables in `public`.
    pub fn shared(db: &TestDb, pool_size: usize) -> Tenants {
        Tenants::with_layout(db, pool_size, true)
    }

    fn with_layout(db: &TestDb, pool_size: usize, shared: bool) -> Tenants {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tenants")).unwrap();
        let tenants = Tenants { dir, shared };
        tenants.write_config("lite2pg.toml", db, &format!("source_glob = \"tenants/*.db\"\npool_size = {pool_size}\n"));
        tenants
    }

    /// Writes config file `name` with the database, the layout and `rest`.
    pub fn write_config(&self, name: &str, db: &TestDb, rest: &str) -> PathBuf {
        let layout = if self.shared { "layout = \"shared_tables\"\n" } else { "" };
        let path = self.dir.path().join(name);
        std::fs::write(&path, format!("postgres = {:?}\n{layout}{rest}", db.url())).unwrap();
        path
    }

    /// Tenant files made by the writer's schema, named by their ids.
    pub fn add_all<'a>(&self, ids: &[&'a str]) -> Vec<(PathBuf, &'a str)> {
        ids.iter().map(|id| (self.add(id), *id)).collect()
    }

    /// Compares every source of `files` (see `assert_equal`).
    pub async fn assert_all_equal(&self, db: &TestDb, files: &[(PathBuf, &str)]) {
        for (path, id) in files {
            self.assert_equal(db, path, id).await;
        }
    }

    /// Compares source `id` (file `sqlite`) value by value: its schema, or its rows of the shared tables.
    pub async fn assert_equal(&self, db: &TestDb, sqlite: &Path, id: &str) {
        let mut options = lite2pg::options::SourceOptions {
            schema: if self.shared { "public".to_string() } else { id.to_string() },
            ..db.source(sqlite).with_source_id(id)
        };
        options.policies.layout = if self.shared { Layout::SharedTables } else { Layout::SchemaPerSource };
        let report = lite2pg::verify::verify(&options).await.unwrap();
        assert!(!report.tables.is_empty(), "nothing was compared for {id}");
        for diff in report.tables {
            assert!(diff.is_equal(), "source {id}: table {} differs: {diff:?}", diff.table);
        }
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("lite2pg.toml")
    }

    pub fn add(&self, name: &str) -> PathBuf {
        self.add_with(name, WRITER_SCHEMA)
    }

    /// A tenant file made by `sql`.
    pub fn add_with(&self, name: &str, sql: &str) -> PathBuf {
        let path = self.dir.path().join("tenants").join(format!("{name}.db"));
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL;").unwrap();
        conn.execute_batch(sql).unwrap();
        path
    }

    pub fn daemon(&self, extra: &[&str]) -> Daemon {
        self.daemon_with(&self.config(), extra)
    }

    pub fn daemon_with(&self, config: &Path, extra: &[&str]) -> Daemon {
        Daemon::spawn(daemon_command().args(["run", "--config", config.to_str().unwrap()]).args(extra))
    }
}
