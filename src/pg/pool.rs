//! PostgreSQL connections shared by every source one process syncs: at most `size` are leased at once, handed
//! out in the order they were asked for (so one busy source cannot starve the others), plus one connection that
//! holds every source's advisory lock for as long as the process syncs it. A connection left inside a
//! transaction is never handed out again: its lease closes it instead.

use std::collections::{HashMap, HashSet};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{Client, Statement};

use crate::error::Result;
use crate::pg::apply::TableMerge;
use crate::pg::state;
use crate::pg::tx::Tx;
use crate::pg::PgTarget;

/// The shared connections and the lock connection.
pub struct Pool {
    target: PgTarget,
    size: usize,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<PooledClient>>,
    waiting: AtomicUsize,
    locks: tokio::sync::Mutex<Locks>,
    /// One snapshot at a time: it opens connections of its own (`jobs` of them).
    snapshots: Arc<Semaphore>,
}

/// The connection holding the advisory locks, and which sources' locks it holds.
#[derive(Default)]
struct Locks {
    client: Option<Client>,
    held: HashSet<String>,
}

/// COPY data a temp table may have taken since it was last truncated. A batch empties its temp tables with DELETE,
/// which is cheap but leaves dead rows (VACUUM never runs on temp tables); TRUNCATE, which takes them away, costs
/// a new file and a catalog update, so it runs only once this much was written.
const TRUNCATE_AFTER_BYTES: u64 = 256 << 10;

/// A connection and the session temp tables made on it, by name.
struct PooledClient {
    client: Client,
    temp_tables: HashMap<String, TempTable>,
    /// Statements every batch runs, prepared once per connection: preparing a statement anew is a round trip.
    prepared: Mutex<HashMap<String, Statement>>,
    /// Between `Lease::begin` and the end of that transaction (`Tx`).
    in_transaction: AtomicBool,
}

/// A session temp table: the plans version it was made for, and the COPY data it took since it was last truncated.
struct TempTable {
    version: u64,
    written: AtomicU64,
}

/// A connection leased from the pool; it goes back when dropped.
pub struct Lease {
    conn: Option<PooledClient>,
    pool: Arc<Pool>,
    _permit: OwnedSemaphorePermit,
}

/// Counts a task waiting for a connection, even when the wait is given up.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Pool {
    /// A pool of at most `size` connections (at least one) to `target`.
    pub fn new(target: PgTarget, size: usize) -> Arc<Pool> {
        let size = size.max(1);
        Arc::new(Pool {
            target,
            size,
            permits: Arc::new(Semaphore::new(size)),
            idle: Mutex::new(Vec::new()),
            waiting: AtomicUsize::new(0),
            locks: tokio::sync::Mutex::new(Locks::default()),
            snapshots: Arc::new(Semaphore::new(1)),
        })
    }

    /// How many connections may be leased at once.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Waits for a free connection (first come, first served) and leases it, connecting when none is idle.
    pub async fn lease(self: &Arc<Self>) -> Result<Lease> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let waiting = Waiting(&self.waiting);
        let permit = self.permits.clone().acquire_owned().await.expect("the pool's semaphore is never closed");
        drop(waiting);
        let idle = loop {
            match self.idle.lock().expect("pool lock is never poisoned").pop() {
                Some(conn) if conn.client.is_closed() => continue,
                found => break found,
            }
        };
        let conn = match idle {
            Some(conn) => conn,
            None => PooledClient {
                client: self.target.connect().await?,
                temp_tables: HashMap::new(),
                prepared: Mutex::default(),
                in_transaction: AtomicBool::new(false),
            },
        };
        Ok(Lease { conn: Some(conn), pool: self.clone(), _permit: permit })
    }

    /// Waits until no other source of this process is being copied; the copy may start while this is held.
    pub async fn snapshot_turn(&self) -> OwnedSemaphorePermit {
        self.snapshots.clone().acquire_owned().await.expect("the snapshot semaphore is never closed")
    }

    /// Whether a source is waiting for a connection: a source holding one gives it back after its batch.
    pub fn contended(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) > 0
    }

    /// Takes source `id`'s advisory lock, or confirms this process still holds it. Returns true when the lock
    /// was taken now (first time, or again after the lock connection was lost): whatever the caller knew of
    /// the source's position may be stale.
    pub async fn lock_source(&self, id: &str) -> Result<bool> {
        let mut locks = self.locks.lock().await;
        if locks.client.as_ref().is_none_or(|client| client.is_closed()) {
            locks.client = Some(self.target.connect().await?);
            locks.held.clear();
        }
        if locks.held.contains(id) {
            return Ok(false);
        }
        state::lock_source(locks.client.as_ref().expect("connected above"), id).await?;
        locks.held.insert(id.to_string());
        Ok(true)
    }

    /// Lets another process take source `id`.
    pub async fn unlock_source(&self, id: &str) {
        let mut locks = self.locks.lock().await;
        if locks.held.remove(id) {
            if let Some(client) = &locks.client {
                let _ = state::unlock_source(client, id).await;
            }
        }
    }
}

impl Lease {
    fn conn(&self) -> &PooledClient {
        self.conn.as_ref().expect("a lease holds its connection until dropped")
    }

    /// Starts a transaction. Until it ends, the connection does not go back to the pool: a lease dropped inside it
    /// (an early return, an error) closes the connection, and PostgreSQL rolls the transaction back.
    pub async fn begin(&self) -> Result<Tx<'_>> {
        Tx::begin_with(&self.conn().client, "BEGIN", Some(&self.conn().in_transaction)).await
    }

    /// Whether a transaction `begin` started has not ended yet.
    pub fn in_transaction(&self) -> bool {
        self.conn().in_transaction.load(Ordering::SeqCst)
    }

    /// `sql` prepared on this connection, once: later batches reuse the statement without a round trip.
    pub async fn prepared(&self, sql: &str) -> Result<Statement> {
        let known = self.conn().prepared.lock().expect("the statement cache is never poisoned").get(sql).cloned();
        if let Some(statement) = known {
            return Ok(statement);
        }
        let statement = self.conn().client.prepare(sql).await?;
        self.conn().prepared.lock().expect("the statement cache is never poisoned").insert(sql.to_string(), statement.clone());
        Ok(statement)
    }

    /// Counts `bytes` of COPY data written into temp table `name`; returns whether it is to be emptied by TRUNCATE
    /// now (`TRUNCATE_AFTER_BYTES`), rather than by DELETE.
    pub fn temp_table_written(&self, name: &str, bytes: u64) -> bool {
        let Some(table) = self.conn().temp_tables.get(name) else { return true };
        let written = table.written.fetch_add(bytes, Ordering::SeqCst) + bytes;
        if written < TRUNCATE_AFTER_BYTES {
            return false;
        }
        table.written.store(0, Ordering::SeqCst);
        true
    }

    /// Makes `merge`'s session temp table unless this connection already made it for plans `version` (temp table
    /// names are unique per stream, and a stream's plans versions only grow).
    pub async fn ensure_temp_table(&mut self, merge: &TableMerge, version: u64) -> Result<()> {
        let conn = self.conn.as_mut().expect("a lease holds its connection until dropped");
        if conn.temp_tables.get(&merge.temp_table).is_some_and(|made| made.version == version) {
            return Ok(());
        }
        conn.client.batch_execute(&merge.temp_table_statement()).await?;
        conn.temp_tables.insert(merge.temp_table.clone(), TempTable { version, written: AtomicU64::new(0) });
        // Statements naming the table that was made again are prepared again too.
        conn.prepared.lock().expect("the statement cache is never poisoned").clear();
        Ok(())
    }
}

impl Deref for Lease {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.conn().client
    }
}

impl DerefMut for Lease {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.conn.as_mut().expect("a lease holds its connection until dropped").client
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let reusable = |conn: &PooledClient| !conn.client.is_closed() && !conn.in_transaction.load(Ordering::SeqCst);
        if let Some(conn) = self.conn.take().filter(reusable) {
            self.pool.idle.lock().expect("pool lock is never poisoned").push(conn);
        }
    }
}
