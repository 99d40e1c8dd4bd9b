//! The reading thread of a batch: in one SQLite read transaction, checks the file and the schema the plans were
//! made for, then reads each changed table's rows (or every row of a table copied whole) and sends them as binary
//! COPY chunks through a bounded channel, following each column's misfit policy.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use rusqlite::Connection;
use tokio::sync::mpsc;

use crate::config::{MisfitAction, Policies};
use crate::error::{Error, ErrorKind, Result};
use crate::mapping::table::TablePlan;
use crate::mapping::types::{encode_binary, is_untyped, untyped_target, widened_type, ColumnStats, PgType, SqlValue};
use crate::pg::copy::{CopyEncoder, CHUNK_BYTES};
use crate::pg::state::Reject;
use crate::sqlite::capture;
use crate::sqlite::changes::{changed_tables, read_all, read_changes, Change, SeqRange};
use crate::sqlite::scan::column_stats_of;

/// Added to a reject's reason when the column's policy asked to widen it but no type holds the value with the rest.
const NO_WIDER_TYPE: &str = "; no PostgreSQL type holds it together with the column's other values as themselves";

/// What the reading thread sends: COPY data for a table's temp table, then the table's counts.
pub(super) enum Message {
    Data { id: i64, chunk: Vec<u8> },
    End { id: i64, counts: TableCounts },
}

/// One table's share of a batch.
#[derive(Default)]
pub(super) struct TableCounts {
    pub(super) upserts: u64,
    pub(super) deletes: u64,
    pub(super) rejects: Vec<Reject>,
    /// Gone keys PostgreSQL's key column cannot hold (so no row to delete): their rejects are forgotten.
    pub(super) gone_unheld: Vec<Vec<SqlValue>>,
}

/// What the reading thread found.
pub(super) enum BatchRead {
    /// Nothing committed since the position, no table to copy again and no constraint to make.
    Nothing,
    /// SQLite's schema changed since the plans were made: follow it first.
    SchemaMoved,
    /// A VACUUM renumbered rowids: tables keyed by rowid are to be copied whole first.
    Vacuumed,
    /// Changes up to `up_to` were sent; the mark of the log entry there.
    Sent(SeqRange, Option<String>),
    /// A value needs a wider column first; what was sent must be rolled back.
    Widen(Widening),
}

/// A column to widen before a batch can be applied, and the value that asks for it.
#[derive(Debug, Clone)]
pub(super) struct Widening {
    pub(super) table_id: i64,
    pub(super) column: usize,
    pub(super) to: PgType,
    pub(super) key: Vec<SqlValue>,
    pub(super) value: SqlValue,
}

/// What the reading thread works from: the plans, the policies and which tables are copied whole.
#[derive(Clone)]
pub(super) struct ReadPlan {
    pub(super) plans: Arc<HashMap<i64, TablePlan>>,
    pub(super) policies: Arc<Policies>,
    pub(super) whole_tables: Arc<HashSet<i64>>,
    /// Forces a batch even when nothing was committed, for the constraints it makes.
    pub(super) constraints_due: bool,
    pub(super) schema_version: i64,
    /// The file, for messages, and the mark of the entry at the position the batch starts from.
    pub(super) sqlite: PathBuf,
    pub(super) applied_mark: Option<String>,
}

/// Reads one batch in one SQLite read transaction and sends each changed table's COPY data.
pub(super) fn read_batch(conn: &Connection, read: &ReadPlan, applied: i64, sender: &mpsc::Sender<Message>) -> Result<BatchRead> {
    conn.execute_batch("BEGIN")?;
    let result = read_batch_in_transaction(conn, read, applied, sender);
    conn.execute_batch("COMMIT")?;
    result
}

fn read_batch_in_transaction(
    conn: &Connection,
    read: &ReadPlan,
    applied: i64,
    sender: &mpsc::Sender<Message>,
) -> Result<BatchRead> {
    if crate::sqlite::schema_version(conn)? != read.schema_version {
        return Ok(BatchRead::SchemaMoved);
    }
    // The file must still be the one the position was applied from, and its rowids those of the last batch.
    let up_to = capture::check_position(conn, &read.sqlite, applied, read.applied_mark.as_deref())?;
    if capture::vacuumed(conn)? {
        return Ok(BatchRead::Vacuumed);
    }
    if up_to == applied && read.whole_tables.is_empty() && !read.constraints_due {
        return Ok(BatchRead::Nothing);
    }
    let range = SeqRange { after: applied, up_to };
    let mut ids = changed_tables(conn, range)?;
    ids.extend(read.whole_tables.iter().filter(|id| !ids.contains(id)).copied().collect::<Vec<_>>());
    for id in ids {
        let Some(plan) = read.plans.get(&id) else { continue };
        let table = TableRead { conn, plan, id, policies: &read.policies, sender };
        if let Some(widening) = table.send(range, read.whole_tables.contains(&id))? {
            return Ok(BatchRead::Widen(widening));
        }
    }
    Ok(BatchRead::Sent(range, capture::entry_mark(conn, up_to)?))
}

/// One table's part of a batch on the reading thread.
struct TableRead<'a> {
    conn: &'a Connection,
    plan: &'a TablePlan,
    id: i64,
    policies: &'a Policies,
    sender: &'a mpsc::Sender<Message>,
}

impl TableRead<'_> {
    /// Encodes the table's changed keys for its temp table: present rows with `gone = false`, gone keys with the
    /// other columns NULL and `gone = true`; or, `whole_table`, every row for the target itself. A row holding a
    /// value its column cannot hold follows the column's misfit policy; `Some` asks for a wider column first.
    fn send(&self, range: SeqRange, whole_table: bool) -> Result<Option<Widening>> {
        let plan = self.plan;
        let mut encoder = CopyEncoder::default();
        let mut counts = TableCounts::default();
        let mut widening = None;
        let mut stored_kinds = HashMap::new();
        let types: Vec<_> = plan.columns.iter().map(|c| c.pg_type).chain([PgType::Boolean]).collect();
        // Rows for the target itself carry no gone flag; into existing tables every table goes through the temp table.
        let flag_columns = usize::from(!whole_table || self.policies.into_existing);
        let key_indexes = plan.key_indexes();
        let (present, gone) = (SqlValue::Integer(0), SqlValue::Integer(1));
        let mut key_row = vec![SqlValue::Null; plan.columns.len() + 1];
        // A key with its flag: `gone`, or NULL to keep the row PostgreSQL has as it is (neither deleted nor
        // upserted). A key PostgreSQL's key column cannot hold has no row there, so there is nothing to delete.
        let mut push_key = |encoder: &mut CopyEncoder, key: &[SqlValue], flag: &SqlValue| {
            for (slot, value) in key_indexes.iter().zip(key) {
                key_row[*slot] = value.clone();
            }
            key_row[plan.columns.len()] = flag.clone();
            encoder.push_row(key_row.iter().zip(types.iter().copied())).is_ok()
        };
        let on_change = |change: Change<'_>| {
            match change {
                Change::Present(row) => {
                    let with_flag = row.iter().chain([&present]).zip(types.iter().copied()).take(row.len() + flag_columns);
                    match encoder.push_row(ExactChain(with_flag, row.len() + flag_columns)) {
                        Ok(()) => counts.upserts += 1,
                        Err((column, misfit)) => {
                            let mut reject = Reject {
                                table: plan.name.clone(),
                                key: plan.key_of(row),
                                column: plan.columns[column].name.clone(),
                                reason: misfit.reason,
                                value: row[column].clone(),
                            };
                            let (column_type, declared) = (plan.columns[column].pg_type, &plan.columns[column].declared_type);
                            let action = match self.awaits_first_type(column, &mut stored_kinds)? {
                                true => MisfitAction::Widen,
                                false => {
                                    self.policies.misfit(&plan.name, &reject.column).action(&reject.value, column_type, declared)
                                }
                            };
                            // The application's column is never altered: what would widen it is rejected.
                            let action = match (action, self.policies.into_existing) {
                                (MisfitAction::Widen, true) => MisfitAction::Reject,
                                (action, _) => action,
                            };
                            match action {
                                MisfitAction::Reject => {}
                                MisfitAction::Stop => return Err(reject.stop_error()),
                                MisfitAction::Widen => match self.wider_type(column, &reject.value, &mut stored_kinds)? {
                                    Some(to) => {
                                        widening = Some(Widening {
                                            table_id: self.id,
                                            column,
                                            to,
                                            key: reject.key,
                                            value: reject.value,
                                        });
                                        return Err(Error::new(ErrorKind::Schema, "a column must be widened first"));
                                    }
                                    None => reject.reason.push_str(NO_WIDER_TYPE),
                                },
                            }
                            if self.policies.into_existing {
                                // Deleting the row could break the application's foreign keys (or cascade):
                                // PostgreSQL keeps the version it has, and verify counts it as a known reject.
                                push_key(&mut encoder, &reject.key, &SqlValue::Null);
                            } else if !whole_table {
                                counts.deletes += u64::from(push_key(&mut encoder, &reject.key, &gone));
                            }
                            counts.rejects.push(reject);
                        }
                    }
                }
                // A key holding NULL was never in PostgreSQL: only its reject goes.
                Change::Gone(key) if key.contains(&SqlValue::Null) => counts.gone_unheld.push(key.to_vec()),
                Change::Gone(key) => match push_key(&mut encoder, key, &gone) {
                    true => counts.deletes += 1,
                    false => counts.gone_unheld.push(key.to_vec()),
                },
                Change::NullKeyed(row) => counts.rejects.extend(Reject::of_null_key(plan, row)),
            }
            if encoder.len() >= CHUNK_BYTES {
                self.send_message(Message::Data { id: self.id, chunk: encoder.take() })?;
            }
            Ok(())
        };
        let read = match whole_table {
            true => read_all(self.conn, plan, on_change),
            false => read_changes(self.conn, plan, self.id, range, on_change),
        };
        if widening.is_some() {
            return Ok(widening);
        }
        read?;
        self.send_message(Message::Data { id: self.id, chunk: encoder.finish() })?;
        self.send_message(Message::End { id: self.id, counts })?;
        Ok(None)
    }

    /// The type column `column` widens to so that it holds `value` as itself along with its other values, if one
    /// does. A column whose declaration names no kind takes its type from what SQLite stores in it now (one scan
    /// per batch and column, kept in `stored_kinds`), so it also leaves a type an older version chose; any other
    /// column moves one step up from its current type.
    fn wider_type(
        &self,
        column: usize,
        value: &SqlValue,
        stored_kinds: &mut HashMap<usize, ColumnStats>,
    ) -> Result<Option<PgType>> {
        let current = &self.plan.columns[column];
        let to = match is_untyped(&current.declared_type) {
            true => untyped_target(current.pg_type, value, self.stored_kinds(column, stored_kinds)?),
            false => widened_type(current.pg_type, value),
        };
        Ok(to.filter(|to| *to != current.pg_type && encode_binary(value, *to, &mut Vec::new()).is_ok()))
    }

    /// Whether column `column` has no type of its own yet: declared without a kind and still bytea while SQLite
    /// stores no blob in it (empty at the snapshot, or bytes an older version wrote for numbers and text). It then
    /// takes one whatever its misfit policy, which governs the values that come after.
    fn awaits_first_type(&self, column: usize, stored_kinds: &mut HashMap<usize, ColumnStats>) -> Result<bool> {
        let current = &self.plan.columns[column];
        Ok(is_untyped(&current.declared_type)
            && current.pg_type == PgType::Bytea
            && self.stored_kinds(column, stored_kinds)?.blobs == 0)
    }

    /// What SQLite stores in column `column` now, in the batch's read transaction: scanned once per batch, and
    /// only for columns without a declared kind.
    fn stored_kinds<'k>(&self, column: usize, stored_kinds: &'k mut HashMap<usize, ColumnStats>) -> Result<&'k ColumnStats> {
        Ok(match stored_kinds.entry(column) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => entry.insert(column_stats_of(self.conn, &self.plan.name, &self.plan.columns[column].name)?),
        })
    }

    fn send_message(&self, message: Message) -> Result<()> {
        self.sender
            .blocking_send(message)
            .map_err(|_| Error::new(ErrorKind::PgConnect, "the PostgreSQL side of the batch stopped early"))
    }
}

/// An iterator with a known length, for chained row values.
struct ExactChain<I>(I, usize);

impl<I: Iterator> Iterator for ExactChain<I> {
    type Item = I::Item;
    fn next(&mut self) -> Option<I::Item> {
        let item = self.0.next();
        if item.is_some() {
            self.1 -= 1;
        }
        item
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.1, Some(self.1))
    }
}

impl<I: Iterator> ExactSizeIterator for ExactChain<I> {}
