//! Following SQLite's file and schema: checking a (re)opened file against the stored position, taking up a new
//! file renamed over the path, SQLite's schema changes (capture first, then PostgreSQL's tables, then the plans),
//! a VACUUM that renumbered rowids, and widening a column a value does not fit.

use std::sync::Arc;

use tokio_postgres::Client;

use crate::error::{Error, ErrorKind, Result};
use crate::mapping::types::{ColumnStats, SqlValue};
use crate::pg::state;
use crate::sqlite::capture::{self, CaptureState};
use crate::sqlite::introspect::{SourceSchema, Table};

use super::read::Widening;
use super::Stream;

impl Stream {
    /// Checks the file against the stored position, then follows the schema and builds table plans.
    pub(super) async fn attach(&mut self) -> Result<()> {
        let client: &Client = self.client.as_ref().expect("leased before attaching");
        let row = state::source(client, &self.capture.source_id).await?.ok_or_else(|| {
            Error::new(ErrorKind::State, format!("source {} has no row in lite2pg.sources", self.capture.source_id))
                .with_hint("run `lite2pg snapshot` first")
        })?;
        if row.promoted {
            return Err(Error::new(
                ErrorKind::State,
                format!("source {} was promoted: PostgreSQL is now the application's database", self.capture.source_id),
            )
            .with_hint("nothing more to sync"));
        }
        if row.database_id != self.capture.database_id {
            return Err(Error::new(
                ErrorKind::State,
                format!(
                    "{} is a different database than the one source {} was copied from",
                    self.file.path.display(),
                    self.capture.source_id
                ),
            )
            .with_hint("if this file replaced the old one on purpose, copy it again with `lite2pg snapshot --replace`"));
        }
        Arc::make_mut(&mut self.policies).into_existing = crate::existing::mode(self.policies.into_existing, Some(&row), false)?;
        capture::check_position(self.file.reader(), &self.file.path, row.applied_seq, row.applied_mark.as_deref())?;
        let known_rejects = state::has_rejects(client, &self.capture.source_id).await?;
        self.applied_seq = row.applied_seq;
        self.applied_mark = row.applied_mark;
        self.known_rejects = known_rejects;
        self.follow_schema().await?;
        if known_rejects {
            // A column may have been widened since they were rejected (by another source of a shared table, or
            // by a batch that failed before it retried them).
            self.log_fitting_rejects_again().await?;
        }
        Ok(())
    }

    /// Another file was renamed over the path: reads that one, to be checked as at a start before the next batch.
    pub(super) fn reopen(&mut self) -> Result<()> {
        self.capture.database_id = self.file.reopen()?.database_id;
        self.attached = false;
        Ok(())
    }

    /// A VACUUM renumbered rowids: every table keyed by rowid is marked to be copied whole (in PostgreSQL first, so
    /// a crash cannot skip the copy), then the canary is armed again, then the plans take up the marks. A VACUUM
    /// before the arming is in the copy, which reads the tables after it; one after it moves the canary again.
    pub(super) async fn copy_rowid_tables_again(&mut self) -> Result<()> {
        let client: &Client = self.client.as_ref().expect("connected");
        let rowid_keyed: Vec<&str> =
            self.capture.tables.iter().filter(|t| t.key_columns.is_empty()).map(|t| t.name.as_str()).collect();
        for name in &rowid_keyed {
            state::set_resync(client, &self.capture.source_id, name, true).await?;
        }
        capture::arm_canary(&mut self.file.pruner())?;
        if !rowid_keyed.is_empty() {
            tracing::info!(
                "a VACUUM renumbered SQLite's rowids; copying the tables keyed by rowid again: {}",
                rowid_keyed.join(", ")
            );
        }
        self.load_plans().await
    }

    /// Follows SQLite's schema changes: capture first marks tables that may hold unlogged rows to be copied whole
    /// (in PostgreSQL, so a crash cannot skip the copy), then brings capture along (renames, drops, triggers on
    /// new and rebuilt tables), then PostgreSQL's tables, then the plans.
    pub(super) async fn follow_schema(&mut self) -> Result<()> {
        loop {
            let reader = self.file.reader();
            let version = crate::sqlite::schema_version(reader)?;
            let schema = crate::sqlite::introspect::read_schema(reader)?;
            let drift = capture::drift(reader, &schema, |name| self.selection.wants(name))?;
            let unprobed = self.tables_with_unprobed_indexes(reader, &schema)?;
            let client: &mut Client = self.client.as_mut().expect("connected");
            for name in drift.uncaptured_rows() {
                state::register_table(client, &self.capture.source_id, &self.schema, name, &[], true).await?;
            }
            for name in unprobed {
                state::set_resync(&*client, &self.capture.source_id, &name, true).await?;
            }
            let chosen: Vec<&Table> = schema.tables.iter().filter(|t| self.selection.wants(&t.name)).collect();
            let Some((capture, version)) = capture::follow(&mut self.file.pruner(), version, &drift, &chosen, None, true)? else {
                continue;
            };
            // The application's own tables are never altered: the plans simply follow both sides.
            if !self.policies.into_existing {
                let mut tables = Vec::new();
                for captured in &capture.tables {
                    let table = schema.table(&captured.name).expect("captured tables exist");
                    let exists = crate::pg::catalog::table_exists(&*client, &self.schema, &table.name).await?;
                    let scan = |wanted: bool| -> Result<Option<Vec<ColumnStats>>> {
                        Ok(match wanted {
                            true => Some(crate::sqlite::scan::column_stats(reader, table, None)?.1),
                            false => None,
                        })
                    };
                    let stats = scan(!exists)?;
                    let rebuilt = scan(exists && drift.rebuilt.contains(&table.name))?;
                    let renamed_from = drift.renamed.iter().find(|(_, new)| new == &table.name).map(|(old, _)| old.as_str());
                    let previous = self.tables.values().find(|t| t.name == renamed_from.unwrap_or(&table.name));
                    let key_columns = &captured.key_columns;
                    tables.push(crate::evolve::TableNow { table, key_columns, previous, renamed_from, stats, rebuilt });
                }
                let target =
                    crate::evolve::Target { schema: &self.schema, source_id: &self.capture.source_id, policies: &self.policies };
                let tx = client.transaction().await?;
                crate::evolve::follow(&tx, &target, &tables, &drift.dropped).await?;
                tx.commit().await?;
            }
            // A table marked to be copied whole at an in-between state a migration passed through (Alembic's
            // `_alembic_tmp_x`, renamed over `x` since) has nothing left to copy: its mark would hold `status` short
            // of caught up for ever.
            let captured: Vec<String> =
                capture.tables.iter().flat_map(|t| [t.name.clone(), crate::ident::pg_name(&t.name)]).collect();
            state::clear_resync_except(&*client, &self.capture.source_id, &captured).await?;
            self.capture = CaptureState { tables: capture.tables, ..self.capture.clone() };
            self.schema_version = version;
            self.sqlite_schema = schema;
            // Shared tables are only loosened: another source's rows may not keep a constraint this one declares.
            self.constraints_due = !self.policies.layout.shares_tables() && !self.policies.into_existing;
            return self.load_plans().await;
        }
    }

    /// Captured tables with a unique index their capture triggers do not probe yet (made since they were
    /// installed): a REPLACE through it may have displaced rows unlogged, so the table is copied whole (marked
    /// before `follow` installs the new triggers, like new tables, so a crash cannot skip the copy).
    fn tables_with_unprobed_indexes(&self, reader: &rusqlite::Connection, schema: &SourceSchema) -> Result<Vec<String>> {
        let mut found = Vec::new();
        for captured in &self.capture.tables {
            let Some(table) = schema.table(&captured.name) else { continue };
            let unprobed = capture::unprobed_indexes(reader, table, captured)?;
            if !unprobed.is_empty() {
                tracing::info!(
                    "table {:?} has unique indexes capture did not watch ({}): copying it whole, as a REPLACE through them may have gone unlogged",
                    table.name,
                    unprobed.join(", ")
                );
                found.push(table.name.clone());
            }
        }
        Ok(found)
    }

    /// Alters a column to a type that holds the value that did not fit; when the conversion is not exact for
    /// every stored value, the table is marked to be copied whole in the next batch.
    pub(super) async fn widen(&mut self, widening: &Widening) -> Result<()> {
        let (plan, table) = (&self.plans[&widening.table_id], &self.tables[&widening.table_id]);
        let from = plan.columns[widening.column].pg_type;
        // Its foreign-key partners change with it: PostgreSQL compares keys only within one type.
        let tables: Vec<&Table> = self.tables.values().collect();
        let this = tables.iter().position(|t| t.name == table.name).expect("the table is among its own");
        let columns: Vec<crate::evolve::ColumnWidening> =
            crate::mapping::table::foreign_key_group(&tables, this, widening.column)
                .into_iter()
                .map(|(t, column)| crate::evolve::ColumnWidening { table: tables[t], column, to: widening.to })
                .collect();
        let client: &mut Client = self.client.as_mut().expect("connected");
        let exact = crate::evolve::widen_column(client, &self.schema, &self.capture.source_id, &columns).await?;
        tracing::info!(
            "widened column {:?} of table {:?} in PostgreSQL from {from} to {}: a {} value arrived in the row with key {}{}",
            plan.columns[widening.column].name,
            plan.name,
            widening.to,
            widening.value.storage_class(),
            serde_json::Value::Array(widening.key.iter().map(SqlValue::to_json).collect()),
            if exact { "" } else { "; the table is copied again so every value is exact" }
        );
        self.load_plans().await?;
        self.log_fitting_rejects_again().await
    }

    /// Logs again the keys of rejected rows that fit the columns as they are now, so that the next batch applies
    /// them: after a widening (this source's or, in a shared table, another's) a value that did not fit may fit.
    pub(super) async fn log_fitting_rejects_again(&mut self) -> Result<()> {
        let client: &Client = self.client.as_ref().expect("connected");
        let rejects = state::rejects(client, &self.capture.source_id).await?;
        for captured in &self.capture.tables {
            let wanted: Vec<serde_json::Value> =
                rejects.iter().filter(|r| r.table == captured.name).filter_map(|r| serde_json::from_str(&r.key).ok()).collect();
            let (Some(table), Some(plan)) = (self.tables.get(&captured.id), self.plans.get(&captured.id)) else { continue };
            if wanted.is_empty() {
                continue;
            }
            let fits = |values: &[SqlValue]| crate::pg::copy::CopyEncoder::fits(plan, values);
            let keys = capture::fitting_rows_with_json(self.file.reader(), table, captured, plan, &wanted, fits)?;
            if !keys.is_empty() {
                // They are no longer values PostgreSQL cannot hold; should applying them fail, verify says so.
                let client: &Client = self.client.as_ref().expect("connected");
                state::forget_rejects(client, &self.capture.source_id, &captured.name, &keys).await?;
                capture::log_keys(&mut self.file.pruner(), captured.id, &keys)?;
                tracing::info!(
                    "{} rejected row(s) of table {:?} fit their columns now: applying them",
                    keys.len(),
                    captured.name
                );
            }
        }
        Ok(())
    }
}
