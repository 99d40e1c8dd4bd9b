//! The demo: a sample shop database written by several threads for a while, streamed to PostgreSQL as it is
//! written, then verified. Shows the whole guarantee in one command.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection};
use tokio::sync::Notify;

use crate::error::{Error, ErrorKind, Result};
use crate::metrics::Metrics;
use crate::options::{SnapshotOptions, SourceOptions};
use crate::pg::PgTarget;
use crate::source::Selection;
use crate::stream::StopWhen;
use crate::verify::VerifyReport;

/// The database the demo fills on the PostgreSQL server.
pub const DEMO_DATABASE: &str = "lite2pg_demo";
const WRITERS: u64 = 2;

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT UNIQUE, balance REAL NOT NULL DEFAULT 0);
CREATE TABLE orders(id INTEGER PRIMARY KEY AUTOINCREMENT, customer_id INTEGER NOT NULL REFERENCES customers ON DELETE CASCADE,
                    total REAL NOT NULL, placed_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE receipts(order_id INTEGER PRIMARY KEY REFERENCES orders ON DELETE CASCADE, scan BLOB NOT NULL);
CREATE TABLE page_views(path TEXT, seconds REAL);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500)
INSERT INTO customers(id, name, email, balance) SELECT i, 'customer ' || i, 'c' || i || '@example.com', i * 1.25 FROM n;";

/// What the demo did.
pub struct DemoReport {
    pub sqlite: PathBuf,
    pub postgres_url: String,
    pub transactions: u64,
    pub verify: VerifyReport,
}

/// Runs the demo for `seconds` against the server of `admin_url`, in `dir`.
pub async fn demo(admin: &PgTarget, dir: &Path, seconds: u64) -> Result<DemoReport> {
    let sqlite = make_database(dir)?;
    let client = admin.connect().await?;
    client.batch_execute(&format!("DROP DATABASE IF EXISTS {DEMO_DATABASE} WITH (FORCE)")).await?;
    client.batch_execute(&format!("CREATE DATABASE {DEMO_DATABASE}")).await?;
    let target = admin.with_dbname(DEMO_DATABASE);
    let options = SnapshotOptions {
        source: SourceOptions {
            sqlite: sqlite.clone(),
            target: target.clone(),
            schema: "public".into(),
            selection: Selection::default(),
            source_id: Some("demo".into()),
            policies: Default::default(),
        },
        replace: false,
        jobs: 2,
        progress: false,
    };
    println!(
        "Demo: {WRITERS} writer threads insert, update and delete in {} for {seconds}s while lite2pg streams them",
        sqlite.display()
    );
    let metrics = Metrics::new(Default::default());
    let stop = Arc::new(Notify::new());
    let transactions = Arc::new(AtomicU64::new(0));
    let writing = Arc::new(AtomicBool::new(true));
    let writers: Vec<_> = (0..WRITERS).map(|seed| spawn_writer(&sqlite, seed, transactions.clone(), writing.clone())).collect();
    let watcher = tokio::spawn(watch(seconds, metrics.clone(), transactions.clone(), writing.clone(), stop.clone()));
    crate::stream::run(&options, StopWhen::Signal(stop), metrics.clone(), |_| {}).await?;
    watcher.await.expect("the watcher does not panic");
    for writer in writers {
        writer.join().expect("demo writers do not panic")?;
    }
    // What the writers committed after the stop request.
    crate::stream::run(&options, StopWhen::CaughtUp, metrics, |_| {}).await?;
    let verify = crate::verify::verify(&options.source).await?;
    Ok(DemoReport {
        sqlite,
        postgres_url: format!("postgres://{}", target.shown()),
        transactions: transactions.load(Ordering::Relaxed),
        verify,
    })
}

fn make_database(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .map_err(|err| Error::new(ErrorKind::Usage, format!("cannot create {}: {err}", dir.display())))?;
    let path = dir.join("shop.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.join(format!("shop.db{suffix}")));
    }
    let conn = Connection::open(&path)?;
    conn.execute_batch(SCHEMA)?;
    Ok(path)
}

/// Prints live counters once a second and asks the stream to stop after `seconds`.
async fn watch(seconds: u64, metrics: Arc<Metrics>, transactions: Arc<AtomicU64>, writing: Arc<AtomicBool>, stop: Arc<Notify>) {
    let started = Instant::now();
    let terminal = std::io::stdout().is_terminal();
    let mut last_applied = 0;
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (applied, pending, lag) = metrics.progress();
        let line = format!(
            "{:>4.0}s  {} transactions written, {} changes applied ({}/s), pending {pending}, lag {lag:.2}s",
            started.elapsed().as_secs_f64(),
            transactions.load(Ordering::Relaxed),
            applied,
            applied - last_applied
        );
        last_applied = applied;
        if terminal {
            print!("\r{line}   ");
            let _ = std::io::stdout().flush();
        } else {
            println!("{line}");
        }
    }
    if terminal {
        println!();
    }
    writing.store(false, Ordering::Relaxed);
    stop.notify_one();
}

/// A writer thread: small transactions of inserts, updates and deletes, with a cascade, a blob and a key-less
/// table, until `writing` turns false.
fn spawn_writer(
    path: &Path,
    seed: u64,
    transactions: Arc<AtomicU64>,
    writing: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Result<()>> {
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let mut conn = Connection::open(&path)?;
        conn.busy_timeout(Duration::from_secs(30))?;
        conn.execute_batch("PRAGMA foreign_keys = ON")?;
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = move |below: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % below
        };
        while writing.load(Ordering::Relaxed) {
            let tx = conn.transaction()?;
            let customer = 1 + next(600) as i64;
            match next(6) {
                0 => {
                    tx.execute(
                        "INSERT OR REPLACE INTO customers(id, name, email, balance) VALUES (?1, ?2, ?3, 0)",
                        params![customer, format!("customer {customer}"), format!("c{customer}@example.com")],
                    )?;
                }
                1 => {
                    tx.execute(
                        "UPDATE customers SET balance = balance + ?2 WHERE id = ?1",
                        params![customer, next(1000) as f64 / 7.0],
                    )?;
                }
                2 => {
                    tx.execute("DELETE FROM customers WHERE id = ?1", [customer])?;
                }
                _ => {
                    let placed = tx.execute(
                        "INSERT INTO orders(customer_id, total) SELECT id, ?2 FROM customers WHERE id = ?1",
                        params![customer, next(100_000) as f64 / 100.0],
                    )?;
                    if placed == 1 {
                        let scan: Vec<u8> = (0..64).map(|_| next(256) as u8).collect();
                        tx.execute("INSERT INTO receipts VALUES (last_insert_rowid(), ?1)", [scan])?;
                    }
                    tx.execute(
                        "INSERT INTO page_views VALUES (?1, ?2)",
                        params![format!("/customers/{customer}"), next(5000) as f64 / 1000.0],
                    )?;
                }
            }
            tx.commit()?;
            transactions.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    })
}
