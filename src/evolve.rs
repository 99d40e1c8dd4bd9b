//! Schema evolution in PostgreSQL while streaming: columns widened for values that did not fit, and SQLite's
//! schema changes (tables and columns added, dropped, renamed, rebuilt; indexes) followed without a restart.
//!
//! Contract: every change here is idempotent and leaves PostgreSQL's rows either exact or marked in
//! `lite2pg.tables.resync`, so that the next batch copies that table whole inside its own transaction.

use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::ident::{qualified, quote};
use crate::pg::state;
use crate::schema::TablePlan;
use crate::types::widen_cast;

/// Alters column `column` from its type in `old` to its type in `new` (keeping the default, translated anew).
/// Returns whether the conversion was exact; when not, the table is marked to be copied whole.
pub async fn widen_column(
    client: &mut Client,
    schema: &str,
    source_id: &str,
    old: &TablePlan,
    new: &TablePlan,
    column: usize,
) -> Result<bool> {
    let name = quote(&new.columns[column].name);
    let (from, to) = (old.columns[column].pg_type, new.columns[column].pg_type);
    let (using, exact) = widen_cast(&name, from, to);
    let default = match &new.columns[column].default_sql {
        Some(default) => format!(", ALTER COLUMN {name} SET DEFAULT {default}"),
        None => String::new(),
    };
    let tx = client.transaction().await?;
    tx.batch_execute(&format!(
        "ALTER TABLE {} ALTER COLUMN {name} DROP DEFAULT, ALTER COLUMN {name} TYPE {} USING {using}{default}",
        qualified(schema, &new.name),
        to.sql()
    ))
    .await
    .map_err(|err| {
        Error::from(err)
            .context(format!("cannot widen column {name} of table {:?} from {from} to {to}", new.name))
            .with_hint("widen it by hand (or set on_misfit = \"reject\" for it in lite2pg.toml) and start lite2pg again")
    })?;
    if !exact {
        state::set_resync(&tx, source_id, &new.name, true).await?;
    }
    tx.commit().await?;
    Ok(exact)
}
