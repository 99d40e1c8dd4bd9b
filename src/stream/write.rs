//! The writing side of a batch: one PostgreSQL transaction that copies what the reading thread sends into temp
//! tables, merges them into the targets, stores rejects and the new position, and commits; what to do when it did
//! not (a constraint to relax, a column to widen, plans to make again).

use std::time::Instant;

use bytes::Bytes;
use futures_util::SinkExt;
use rusqlite::Connection;
use tokio::sync::mpsc;
use tokio_postgres::Client;

use crate::constraints::Declared;
use crate::error::{Error, ErrorKind, Result, RetryPolicy};
use crate::mapping::layout::Layout;
use crate::pg::apply::Staged;
use crate::pg::state::{self, Reject};
use crate::pg::tx::Tx;
use crate::sqlite::changes::SeqRange;
use crate::sqlite::introspect::Table;

use super::read::{read_batch, BatchRead, Message, ReadPlan, Widening};
use super::{Applied, BatchStats, Stream};

/// How one try at a batch ended, before its transaction was closed.
enum Attempt {
    /// Committed, with the mark of the log entry at its new position.
    Committed(BatchStats, Option<String>),
    Nothing,
    /// SQLite's schema changed since the plans were made.
    SchemaMoved,
    /// VACUUM renumbered rowids since the last batch: rowid-keyed tables are to be copied whole first.
    Vacuumed,
    /// Another source widened a shared table's column since the plans were made.
    TypesMoved,
    /// A value needs a wider column first.
    Widen(Widening),
}

/// How many times a batch failing on its primary key at one position is tried (another session's row is
/// committed by then, and the batch updates it instead); then the failure stands.
const KEY_TAKEN_TRIES: u32 = 3;

/// What to do when rows SQLite keeps apart are one key in PostgreSQL.
const ONE_KEY_IN_POSTGRES: &str = "nothing of the batch was applied. Rows SQLite keeps apart may have one key in PostgreSQL \
     (text keys differing only in case in a uuid or citext column, one instant written two ways in a timestamp key): \
     give the key column a type that tells them apart and run `lite2pg snapshot --replace`";

/// What became of a PostgreSQL constraint a batch broke.
enum Broken {
    /// Dropped, as SQLite does not hold it: the batch is tried again at once.
    Dropped,
    /// The table's primary key, taken by another session's row at the same time: the batch is tried again later.
    KeyTaken,
    /// Kept: the error stands.
    Kept,
}

/// What a batch wrote before commit.
#[derive(Default)]
struct Written {
    tables: usize,
    /// Per table: name, upserts, deletes.
    per_table: Vec<(String, u64, u64)>,
    upserts: u64,
    deletes: u64,
    rejects: Vec<Reject>,
    /// Per table: gone keys PostgreSQL cannot hold, whose rejects go.
    gone_unheld: Vec<(String, Vec<Vec<crate::mapping::types::SqlValue>>)>,
}

impl Stream {
    /// Reads and applies one batch. Whatever happens, the batch's transaction has ended when this returns (or its
    /// connection is dropped); a constraint PostgreSQL holds and SQLite does not is relaxed here.
    pub(super) async fn apply_batch(&mut self) -> Result<Applied> {
        if self.file.replaced {
            self.reopen()?;
        }
        self.ready().await?;
        if crate::sqlite::schema_version(self.file.reader())? != self.schema_version {
            self.follow_schema().await?;
            return Ok(Applied::Adjusted);
        }
        let started = Instant::now();
        let (attempt, ended) = {
            // Begun while the reader is home: a failure here must find it there.
            let tx = self.client.as_ref().expect("connected above").begin().await?;
            let reader = self.file.reader.take().expect("reader is home between batches");
            let (reader, attempt) = self.attempt_batch(&tx, reader, started).await;
            self.file.reader = Some(reader);
            (attempt, tx.rollback().await)
        };
        if let Err(lost) = ended {
            // Nothing more can be done without the connection; the batch is tried again on a new one.
            self.client = None;
            return Err(match attempt {
                Err(err) if err.is_retryable() => err,
                Err(err) => lost.context(format!("the batch failed ({err}), then")),
                Ok(_) => lost,
            });
        }
        match attempt {
            Ok(Attempt::Committed(stats, mark)) => self.committed(stats, mark, started).await,
            Ok(Attempt::Nothing) => Ok(Applied::Nothing),
            Ok(Attempt::SchemaMoved) => Ok(Applied::Adjusted),
            Ok(Attempt::Vacuumed) => self.copy_rowid_tables_again().await.map(|()| Applied::Adjusted),
            Ok(Attempt::TypesMoved) => {
                // Another source widened a shared column: this source's rejected rows may fit it now.
                self.load_plans().await?;
                self.log_fitting_rejects_again().await.map(|()| Applied::Adjusted)
            }
            Ok(Attempt::Widen(widening)) => self.widen(&widening).await.map(|()| Applied::Adjusted),
            Err(err) if err.kind().retry_policy() == RetryPolicy::Relax => match self.relax_constraint(&err).await? {
                Broken::Dropped => Ok(Applied::Adjusted),
                Broken::KeyTaken if self.key_taken_may_retry() => Err(Error::new(
                    ErrorKind::PgTransient,
                    format!("another session wrote, at the same time, a key this batch writes ({err})"),
                )
                .with_hint("lite2pg expects to be the only writer of the rows it copies; the batch is tried again")),
                Broken::KeyTaken => Err(err.with_hint(format!(
                    "{ONE_KEY_IN_POSTGRES}; or another session keeps writing these keys into the copy: stop it"
                ))),
                // The application's constraints are its own: rows it would refuse stop the sync, never the constraint.
                Broken::Kept if self.policies.into_existing => Err(err.with_hint(
                    "SQLite holds rows this constraint of the application's refuses; nothing of the batch was applied. \
                     Fix those rows in SQLite (or the constraint in PostgreSQL), then start lite2pg again",
                )),
                Broken::Kept => Err(err),
            },
            // An upsert meeting one key twice in a batch.
            Err(err) if err.postgres().is_some_and(|pg| pg.code == "21000") => Err(err.with_hint(ONE_KEY_IN_POSTGRES)),
            Err(err) => Err(err),
        }
    }

    /// One try at a batch in `tx`, which it commits only when the batch is whole; gives the reader back.
    async fn attempt_batch(&self, tx: &Tx<'_>, reader: Connection, started: Instant) -> (Connection, Result<Attempt>) {
        match self.plans_current().await {
            Ok(true) => {}
            Ok(false) => return (reader, Ok(Attempt::TypesMoved)),
            Err(err) => return (reader, Err(err)),
        }
        let (sender, mut receiver) = mpsc::channel::<Message>(4);
        let plan = ReadPlan {
            plans: self.plans.clone(),
            policies: self.policies.clone(),
            whole_tables: self.whole_tables.clone(),
            constraints_due: self.constraints_due,
            schema_version: self.schema_version,
            sqlite: self.file.path.clone(),
            applied_mark: self.applied_mark.clone(),
        };
        let applied = self.applied_seq;
        let read = tokio::task::spawn_blocking(move || {
            let result = read_batch(&reader, &plan, applied, &sender);
            (reader, result)
        });
        let written = self.write_tables(&mut receiver).await;
        drop(receiver);
        let (reader, read_result) = read.await.expect("batch readers do not panic");
        let attempt = match (read_result, written) {
            (Ok(BatchRead::Sent(range, mark)), Ok(written)) => {
                self.finish_batch(tx, range, mark.as_deref(), written, started).await.map(|stats| Attempt::Committed(stats, mark))
            }
            (Ok(BatchRead::Nothing), Ok(_)) => Ok(Attempt::Nothing),
            (Ok(BatchRead::SchemaMoved), _) => Ok(Attempt::SchemaMoved),
            (Ok(BatchRead::Vacuumed), _) => Ok(Attempt::Vacuumed),
            (Ok(BatchRead::Widen(needed)), _) => Ok(Attempt::Widen(needed)),
            // When PostgreSQL refused a statement, the reader only saw the writing side leave: PostgreSQL's
            // error is the cause.
            (_, Err(err)) | (Err(err), Ok(_)) => Err(err),
        };
        (reader, attempt)
    }

    /// Takes a committed batch's position and reports it.
    async fn committed(&mut self, stats: BatchStats, mark: Option<String>, started: Instant) -> Result<Applied> {
        self.applied_seq = stats.to_seq;
        self.applied_mark = mark;
        self.known_rejects |= stats.rejects > 0;
        if !self.whole_tables.is_empty() || self.constraints_due {
            // Keys and unique constraints may have moved; plans are made anew from the tables as they are now.
            self.constraints_due = false;
            self.load_plans().await?;
        }
        tracing::info!(
            "applied {} changes ({} upserts, {} deletes) in {} tables, seq {}→{}, {} ms",
            stats.upserts + stats.deletes,
            stats.upserts,
            stats.deletes,
            stats.tables,
            stats.from_seq,
            stats.to_seq,
            started.elapsed().as_millis()
        );
        Ok(Applied::Batch(stats))
    }

    /// Counts a batch that failed on its table's primary key at the current position; whether it may be tried again.
    fn key_taken_may_retry(&mut self) -> bool {
        let tries = match self.key_taken {
            Some((seq, tries)) if seq == self.applied_seq => tries + 1,
            _ => 1,
        };
        self.key_taken = Some((self.applied_seq, tries));
        tries <= KEY_TAKEN_TRIES
    }

    /// SQLite enforces foreign keys only when the writer asks, holds no constraint PostgreSQL was given by hand,
    /// and its UNIQUE and NOT NULL semantics differ from PostgreSQL's in corner cases. When PostgreSQL refuses a
    /// state SQLite committed, the PostgreSQL constraint is the one that is wrong about this data: drop it
    /// (loudly) so the copy stays equal and the stream does not stall. Only constraints on the tables this stream
    /// writes are dropped, and never a primary key.
    async fn relax_constraint(&self, err: &Error) -> Result<Broken> {
        let Some(pg) = err.postgres() else { return Ok(Broken::Kept) };
        let (Some(schema), Some(table)) = (&pg.schema, &pg.table) else { return Ok(Broken::Kept) };
        if *schema != self.schema || !self.plans.values().any(|plan| &plan.name == table) {
            return Ok(Broken::Kept);
        }
        let client: &Client = self.client.as_ref().expect("connected");
        if let Some(constraint) = &pg.constraint {
            // A batch inserts only keys the target lacked when its statement began. Either another session inserted
            // the same key meanwhile (tried again, the batch updates that row), or rows SQLite keeps apart have one
            // key here. The key is never dropped: every merge matches rows by it.
            let key = crate::pg::catalog::primary_key(client, schema, table).await?;
            if key.is_some_and(|(name, _)| &name == constraint) {
                // A key value too long for the key's index has no way into PostgreSQL: the error stands.
                return Ok(if pg.code == "54000" { Broken::Kept } else { Broken::KeyTaken });
            }
        }
        if self.policies.into_existing {
            return Ok(Broken::Kept);
        }
        let target = crate::ident::qualified(schema, table);
        let (statement, what) = match (pg.code.as_str(), &pg.column, &pg.constraint) {
            ("23502", Some(column), _) => (
                format!("ALTER TABLE {target} ALTER COLUMN {} DROP NOT NULL", crate::ident::quote(column)),
                format!("NOT NULL on column {column:?}"),
            ),
            // A unique index SQLite declares may be a constraint or an index in PostgreSQL: whichever it is goes.
            (_, _, Some(constraint)) => (
                format!(
                    "ALTER TABLE {target} DROP CONSTRAINT IF EXISTS {0}; DROP INDEX IF EXISTS {1}.{0}",
                    crate::ident::quote(constraint),
                    crate::ident::quote(schema)
                ),
                format!("constraint {constraint:?}"),
            ),
            _ => return Ok(Broken::Kept),
        };
        client.batch_execute(&statement).await.map_err(|failed| {
            Error::from(failed).context(format!("cannot drop {what} of {table:?}, which SQLite's rows break ({err})"))
        })?;
        tracing::warn!(
            "SQLite committed rows that break {what} on {table:?} ({}, SQLSTATE {}); it was dropped in PostgreSQL so the copy stays equal; retrying the batch",
            pg.message,
            pg.code
        );
        Ok(Broken::Dropped)
    }

    /// Copies each changed table into its temp table and merges it, as the reading thread sends it; a table
    /// copied whole is emptied and copied straight into its target.
    async fn write_tables(&self, receiver: &mut mpsc::Receiver<Message>) -> Result<Written> {
        let lease = self.client.as_ref().expect("connected above");
        let client: &Client = lease;
        let mut written = Written::default();
        let (mut sink, mut copied_bytes) = (None, 0u64);
        let mut merged_later = Vec::new();
        while let Some(message) = receiver.recv().await {
            match message {
                Message::Data { id, chunk } => {
                    if sink.is_none() {
                        let merge = &self.merges[&id];
                        let copy = match self.whole_tables.contains(&id) && !self.policies.into_existing {
                            true => {
                                merge.delete_all(client, &self.capture.source_id).await.map(|()| merge.copy_whole.as_str())?
                            }
                            false => merge.copy_in.as_str(),
                        };
                        let copy = lease.prepared(copy).await?;
                        sink = Some(Box::pin(client.copy_in::<_, Bytes>(&copy).await?));
                    }
                    copied_bytes += chunk.len() as u64;
                    sink.as_mut().expect("opened above").send(Bytes::from(chunk)).await?;
                }
                Message::End { id, counts } => {
                    sink.take().expect("every table sends data before its end").as_mut().finish().await?;
                    let table = &self.plans[&id].name;
                    let rows = counts.upserts + counts.deletes;
                    let copied = std::mem::take(&mut copied_bytes);
                    let staged = || Staged { rows, truncate: lease.temp_table_written(&self.merges[&id].temp_table, copied) };
                    if self.policies.into_existing {
                        merged_later.push((id, staged()));
                    } else if self.whole_tables.contains(&id) {
                        state::set_resync(client, &self.capture.source_id, table, false).await?;
                    } else {
                        self.merges[&id]
                            .merge(client, &self.capture.source_id, table, staged(), self.known_rejects)
                            .await
                            .map_err(|err| err.context(format!("applying changes to {table:?}")))?;
                    }
                    written.tables += 1;
                    written.per_table.push((table.clone(), counts.upserts, counts.deletes));
                    written.upserts += counts.upserts;
                    written.deletes += counts.deletes;
                    written.rejects.extend(counts.rejects);
                    if !counts.gone_unheld.is_empty() {
                        written.gone_unheld.push((table.clone(), counts.gone_unheld));
                    }
                }
            }
        }
        self.merge_in_key_order(&merged_later).await?;
        Ok(written)
    }

    /// `--into-existing`: merges the copied tables with upserts parent-first and deletes child-first, so that the
    /// application's foreign keys hold after every statement even when they are not deferrable.
    async fn merge_in_key_order(&self, copied: &[(i64, Staged)]) -> Result<()> {
        let client: &Client = self.client.as_ref().expect("connected above");
        let in_order: Vec<(i64, Staged)> =
            self.app_order.iter().filter_map(|id| copied.iter().find(|(copied, _)| copied == id)).copied().collect();
        let context = |id: &i64| format!("applying changes to {:?}", self.plans[id].name);
        for (id, staged) in &in_order {
            let upserted = self.merges[id].upsert(client, &self.capture.source_id, staged.rows).await;
            upserted.map_err(|err| err.context(context(id)))?;
        }
        for (id, staged) in in_order.iter().rev() {
            let (table, whole) = (&self.plans[id].name, self.whole_tables.contains(id));
            let merge = &self.merges[id];
            merge
                .delete(client, &self.capture.source_id, table, whole, self.known_rejects, staged.truncate)
                .await
                .map_err(|err| err.context(context(id)))?;
            if whole {
                state::set_resync(client, &self.capture.source_id, table, false).await?;
            }
        }
        Ok(())
    }

    /// Makes constraints when due, stores rejects and the new position with the mark of its log entry, then commits.
    async fn finish_batch(
        &self,
        tx: &Tx<'_>,
        range: SeqRange,
        mark: Option<&str>,
        written: Written,
        started: Instant,
    ) -> Result<BatchStats> {
        let client: &Client = self.client.as_ref().expect("connected above");
        if self.constraints_due {
            self.make_constraints().await?;
        }
        if !written.rejects.is_empty() {
            // Skipped when empty: its statement's preparing alone is a round trip every small batch would wait on.
            state::store_rejects(client, &self.capture.source_id, &written.rejects).await?;
        }
        for (table, keys) in &written.gone_unheld {
            state::forget_rejects(client, &self.capture.source_id, table, keys).await?;
        }
        let advance = self.client.as_ref().expect("connected above").prepared(state::ADVANCE).await?;
        state::advance(client, &advance, &self.capture.source_id, range.after, range.up_to, mark).await?;
        crate::fail_point!("batch-before-commit");
        tx.commit().await?;
        crate::fail_point!("batch-after-commit");
        self.metrics.batch_applied(&written.per_table, written.rejects.len() as u64, started.elapsed());
        Ok(BatchStats {
            from_seq: range.after,
            to_seq: range.up_to,
            tables: written.tables,
            upserts: written.upserts,
            deletes: written.deletes,
            rejects: written.rejects.len() as u64,
        })
    }

    /// Inside the batch's transaction, once its rows are written (PostgreSQL holds SQLite's rows, so what it
    /// refuses now SQLite's rows do not keep either): makes each table's constraints what SQLite declares.
    async fn make_constraints(&self) -> Result<()> {
        let client: &Client = self.client.as_ref().expect("connected above");
        // PostgreSQL alters no table with deferred checks pending (rows this batch wrote): run them now.
        client.batch_execute("SET CONSTRAINTS ALL IMMEDIATE").await?;
        let known: Vec<&Table> = self.sqlite_schema.tables.iter().collect();
        for (id, plan) in self.plans.iter() {
            let declared = Declared { table: &self.tables[id], plan, tables: &known, layout: Layout::SchemaPerSource };
            crate::constraints::reconcile(client, &self.schema, &declared).await?;
        }
        Ok(())
    }
}
