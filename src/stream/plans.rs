//! The table plans a stream applies with: built from SQLite's schema as last followed and PostgreSQL's tables as
//! they are now, and checked in each batch's transaction against tables another source or the application may
//! have changed meanwhile.

use std::collections::HashMap;
use std::sync::Arc;

use tokio_postgres::Client;

use crate::error::{Error, ErrorKind, Result};
use crate::mapping::table::TablePlan;
use crate::mapping::types::PgType;
use crate::pg::apply::{existing_plan, loosen_unique_indexes, PresentRows, TableMerge};
use crate::pg::catalog::{primary_key, unique_sets};
use crate::pg::state;
use crate::sqlite::introspect::Table;

use super::Stream;

impl Stream {
    /// Builds the table plans from SQLite's schema as last followed and PostgreSQL's column types as they are
    /// now, and reads which tables are to be copied whole.
    pub(super) async fn load_plans(&mut self) -> Result<()> {
        let client: &Client = self.client.as_ref().expect("connected");
        let schema = &self.sqlite_schema;
        let into_existing = self.policies.into_existing;
        let captured_names: Vec<String> = self.capture.tables.iter().map(|t| crate::ident::pg_name(&t.name)).collect();
        if into_existing {
            // Before the plans: a migration in between shows as a changed shape at the next batch.
            self.app_shape = crate::existing::shape(client, &self.schema, &captured_names).await?;
        }
        let (mut plans, mut merges, mut tables) = (HashMap::new(), HashMap::new(), HashMap::new());
        let present_rows = PresentRows::for_target(client, self.policies.layout, into_existing).await?;
        for captured in &self.capture.tables {
            let table = schema.table(&captured.name).ok_or_else(|| {
                Error::new(ErrorKind::Schema, format!("captured table {:?} no longer exists in SQLite", captured.name))
                    .with_hint("run `lite2pg init` to update capture")
            })?;
            let plan = match into_existing {
                true => match self.app_plan(table, &captured.key_columns).await? {
                    Some(plan) => plan,
                    None => continue,
                },
                false => existing_plan(client, &self.schema, table, &captured.key_columns).await?,
            };
            let mut uniques = unique_sets(client, &self.schema, &table.name).await?;
            if into_existing {
                // A unique column SQLite lacks is not in the temp table; its values are the application's.
                uniques.retain(|set| set.iter().all(|c| plan.columns.iter().any(|p| &p.pg_name == c)));
            } else {
                loosen_unique_indexes(client, &self.schema, &table.name).await?;
            }
            let temp_table = format!("{}{}", self.temp_prefix, captured.id);
            let layout = self.policies.layout;
            let mut merge = TableMerge::new(&self.schema, temp_table, &plan, &uniques, layout, present_rows);
            let current = primary_key(client, &self.schema, &table.name).await?;
            if !into_existing && current.as_ref().is_none_or(|(_, columns)| columns != &plan.pg_key(layout)) {
                if layout.shares_tables() {
                    return Err(Error::new(
                        ErrorKind::Schema,
                        format!(
                            "the primary key of {:?} changed in source {}, but the table is shared",
                            table.name, self.capture.source_id
                        ),
                    )
                    .with_hint("every source's copy of a shared table must have the same primary key"));
                }
                // A rebuild moved the key: the next batch empties the table, moves the key and copies it whole.
                let current = current.as_ref().map(|(name, columns)| (name.as_str(), columns.as_slice()));
                merge.rekey(&self.schema, &table.name, current, &plan.pg_key(layout));
                state::set_resync(client, &self.capture.source_id, &table.name, true).await?;
            }
            merges.insert(captured.id, merge);
            plans.insert(captured.id, plan);
            tables.insert(captured.id, table.clone());
        }
        if into_existing {
            let ordered = crate::existing::parent_first(client, &self.schema, &captured_names).await?;
            self.app_order = ordered
                .iter()
                .filter_map(|name| plans.iter().find(|(_, p): &(&i64, &TablePlan)| &crate::ident::pg_name(&p.name) == name))
                .map(|(id, _)| *id)
                .collect();
        }
        let resync = state::tables_to_resync(client, &self.capture.source_id).await?;
        self.whole_tables = Arc::new(
            self.capture.tables.iter().filter(|t| resync.contains(&t.name) && plans.contains_key(&t.id)).map(|t| t.id).collect(),
        );
        self.plans = Arc::new(plans);
        self.plans_version += 1;
        self.merges = merges;
        self.tables = tables;
        Ok(())
    }

    /// `--into-existing`: the plan of `table` into the application's table, when PostgreSQL has it. When the
    /// columns both sides have changed since the last plan (a column or the table appeared on the other side),
    /// the table is marked to be copied whole, so values written before both sides had it are not left behind.
    async fn app_plan(&self, table: &Table, key_columns: &[String]) -> Result<Option<TablePlan>> {
        let client: &Client = self.client.as_ref().expect("connected");
        let source_id = &self.capture.source_id;
        let plan = crate::existing::app_plan(client, &self.schema, table, key_columns).await?;
        let now = crate::existing::synced_columns(plan.as_ref());
        if state::synced_columns(client, source_id, &table.name).await?.as_ref() != Some(&now) {
            state::register_table(client, source_id, &self.schema, &table.name, key_columns, plan.is_some()).await?;
            state::set_synced_columns(client, source_id, &table.name, &now).await?;
            match &plan {
                Some(_) => tracing::info!(
                    "table {:?}: the columns both sides have are now ({}); copying it whole into PostgreSQL",
                    table.name,
                    now.join(", ")
                ),
                None => {
                    tracing::info!("table {:?} is not in PostgreSQL schema {}: not written until it is", table.name, self.schema)
                }
            }
        }
        Ok(plan)
    }

    /// In the batch's transaction: whether the tables are still those the plans were made for (another source or
    /// the application may have changed them), locked against DDL until the batch ends.
    pub(super) async fn plans_current(&self) -> Result<bool> {
        if self.policies.layout.shares_tables() && !self.shared_types_current().await? {
            return Ok(false);
        }
        Ok(!self.policies.into_existing || self.app_shape_current().await?)
    }

    /// In the batch's transaction on shared tables: says whose rows it writes, locks the tables against DDL until
    /// it ends, and checks that no other source widened a column since the plans were made (the rows are encoded
    /// in the column types of the plans).
    async fn shared_types_current(&self) -> Result<bool> {
        let client: &Client = self.client.as_ref().expect("connected");
        state::act_as_source(client, &self.capture.source_id, true).await?;
        if self.plans.is_empty() {
            return Ok(true);
        }
        let tables: Vec<String> = self.plans.values().map(|p| crate::ident::qualified(&self.schema, &p.name)).collect();
        client.batch_execute(&format!("LOCK TABLE {} IN ROW EXCLUSIVE MODE", tables.join(", "))).await?;
        let names: Vec<String> = self.plans.values().map(|p| crate::ident::pg_name(&p.name)).collect();
        let columns = crate::pg::catalog::columns_of_tables(client, &self.schema, &names).await?;
        let now: HashMap<(String, String), String> =
            columns.into_iter().map(|(table, column, type_name, _)| ((table, column), type_name)).collect();
        Ok(self.plans.values().all(|plan| {
            plan.columns.iter().all(|c| {
                now.get(&(crate::ident::pg_name(&plan.name), c.pg_name.clone())).and_then(|t| PgType::from_format_type(t))
                    == Some(c.pg_type)
            })
        }))
    }

    /// `--into-existing`, in the batch's transaction: whether the application's tables still have the shape the
    /// plans were made from (its migrations may change PostgreSQL's side at any time); then locks the planned ones
    /// against DDL until the batch ends.
    async fn app_shape_current(&self) -> Result<bool> {
        let client: &Client = self.client.as_ref().expect("connected");
        let names: Vec<String> = self.capture.tables.iter().map(|t| crate::ident::pg_name(&t.name)).collect();
        if crate::existing::shape(client, &self.schema, &names).await? != self.app_shape {
            tracing::info!("the application's tables changed in PostgreSQL; matching them again");
            return Ok(false);
        }
        if !self.plans.is_empty() {
            let tables: Vec<String> = self.plans.values().map(|p| crate::ident::qualified(&self.schema, &p.name)).collect();
            client.batch_execute(&format!("LOCK TABLE {} IN ROW EXCLUSIVE MODE", tables.join(", "))).await?;
        }
        Ok(true)
    }
}
