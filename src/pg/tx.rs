//! PostgreSQL transactions begun by statement on a shared `&Client`: a guard that ends the transaction on every
//! path (rolled back when dropped unfinished), and savepoints that let one statement be refused without failing
//! the transaction around it.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::FutureExt;
use tokio_postgres::{Client, GenericClient};

use crate::error::{Error, Result};

/// An open transaction on `client`. End it with `commit` or `rollback`; dropped open (an early `?`), it queues a
/// ROLLBACK, which PostgreSQL runs before any later statement on the connection. A pooled connection's `dirty`
/// flag stays set until the transaction ended by an answered COMMIT or ROLLBACK, so the pool closes a connection
/// whose transaction may still be open instead of handing it out again.
pub struct Tx<'c> {
    client: &'c Client,
    open: AtomicBool,
    dirty: Option<&'c AtomicBool>,
}

impl<'c> Tx<'c> {
    /// `BEGIN` on `client`.
    pub async fn begin(client: &'c Client) -> Result<Tx<'c>> {
        Tx::begin_with(client, "BEGIN", None).await
    }

    /// Starts a transaction with `statement` (`BEGIN` with its isolation and access mode). `dirty` is set first: a
    /// BEGIN whose answer is lost may still have started the transaction.
    pub async fn begin_with(client: &'c Client, statement: &str, dirty: Option<&'c AtomicBool>) -> Result<Tx<'c>> {
        if let Some(dirty) = dirty {
            dirty.store(true, Ordering::SeqCst);
        }
        let tx = Tx { client, open: AtomicBool::new(true), dirty };
        client.batch_execute(statement).await?;
        Ok(tx)
    }

    /// Commits. A COMMIT PostgreSQL refuses rolls the transaction back, so it has ended either way.
    pub async fn commit(&self) -> Result<()> {
        let committed = self.client.batch_execute("COMMIT").await;
        self.ended();
        Ok(committed?)
    }

    /// Rolls back, unless the transaction already ended.
    pub async fn rollback(&self) -> Result<()> {
        if self.open.load(Ordering::SeqCst) {
            self.client.batch_execute("ROLLBACK").await?;
            self.ended();
        }
        Ok(())
    }

    fn ended(&self) {
        self.open.store(false, Ordering::SeqCst);
        if let Some(dirty) = self.dirty {
            dirty.store(false, Ordering::SeqCst);
        }
    }
}

impl std::ops::Deref for Tx<'_> {
    type Target = Client;

    fn deref(&self) -> &Client {
        self.client
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if self.open.load(Ordering::SeqCst) {
            // Polled once, the statement is queued on the connection; its answer is not waited for, so `dirty`
            // stays set.
            let _ = self.client.batch_execute("ROLLBACK").now_or_never();
        }
    }
}

/// Runs `body` in a savepoint inside the transaction open on `client`: kept when it returns `Ok(Ok(_))`, undone
/// when it returns `Ok(Err(refusal))` (the transaction goes on without it either way). An `Err` is returned as
/// is: the transaction is then to be abandoned.
pub(crate) async fn savepoint<T, R, Fut>(
    client: &impl GenericClient,
    body: impl FnOnce() -> Fut,
) -> Result<std::result::Result<T, R>>
where
    Fut: Future<Output = Result<std::result::Result<T, R>>>,
{
    // Nested savepoints may share the name: each is released when it ends, so the names always mean the newest.
    client.batch_execute("SAVEPOINT lite2pg_savepoint").await?;
    let outcome = body().await?;
    if outcome.is_err() {
        client.batch_execute("ROLLBACK TO SAVEPOINT lite2pg_savepoint").await?;
    }
    client.batch_execute("RELEASE SAVEPOINT lite2pg_savepoint").await?;
    Ok(outcome)
}

/// Runs `sql` in a savepoint; a refusal is returned (and rolled back) instead of failing the transaction.
pub(crate) async fn attempt(tx: &impl GenericClient, sql: &str) -> Result<Option<Error>> {
    let outcome = savepoint(tx, || async move {
        match tx.batch_execute(sql).await {
            Ok(()) => Ok(Ok(())),
            Err(err) if err.as_db_error().is_some() => Ok(Err(Error::from(err))),
            Err(err) => Err(err.into()),
        }
    })
    .await?;
    Ok(outcome.err())
}
