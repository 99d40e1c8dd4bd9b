//! Applying change batches to PostgreSQL: each table's changed keys arrive as one binary COPY into a session
//! temp table (present rows with their values, gone keys flagged), then three set-based statements merge them.
//!
//! Contract: everything for one batch runs in the caller's transaction, together with the position update, so a
//! batch is applied whole or not at all. Merging is idempotent: re-applying a batch leaves the same rows.

use tokio_postgres::{Client, GenericClient};

use crate::error::{Error, ErrorKind, Result};
use crate::ident::{qualified, quote};
use crate::mapping::layout::Layout;
use crate::mapping::table::{column_list, TablePlan, ROWID_COLUMN};
use crate::mapping::types::PgType;
use crate::pg::catalog::{self, table_columns};
use crate::sqlite::introspect::Table;

/// Batches of a table with at least this many keys get planner statistics on their temp table and write present
/// rows the `PresentRows` way; smaller ones upsert.
const LARGE_BATCH_ROWS: u64 = 10_000;

/// Extra column of the temp tables: true for keys whose row is gone.
pub const GONE_COLUMN: &str = "__lite2pg_gone";

/// How a merge writes the temp table's present rows into the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresentRows {
    /// An UPDATE of the rows PostgreSQL has, then an INSERT of the others, in one statement: about half the cost of
    /// an upsert for new rows, as an upsert's speculative insertion checks and confirms every row. For tables only
    /// the stream writes.
    UpdateThenInsert,
    /// One `INSERT … ON CONFLICT`: for tables several sources write, the application's own tables
    /// (`--into-existing`: other sessions may write them, and their BEFORE INSERT triggers see every row), and
    /// Citus, which joins no distributed table with a session temp table in an UPDATE.
    Upsert,
}

impl PresentRows {
    /// The way for the stream's tables on the connected server.
    pub async fn for_target(client: &Client, layout: Layout, into_existing: bool) -> Result<PresentRows> {
        Ok(match layout.shares_tables() || into_existing || crate::pg::citus::is_citus(client).await? {
            true => PresentRows::Upsert,
            false => PresentRows::UpdateThenInsert,
        })
    }
}

/// What a batch copied into a table's temp table: how many rows, and whether to empty it by TRUNCATE afterwards.
#[derive(Debug, Clone, Copy)]
pub struct Staged {
    pub rows: u64,
    pub truncate: bool,
}

/// The statements that merge one table's temp table into the target.
#[derive(Debug, Clone)]
pub struct TableMerge {
    pub temp_table: String,
    create_temp: String,
    /// Empty the temp table inside the batch's transaction (a rolled-back batch leaves it empty too): DELETE, or
    /// TRUNCATE now and then to take its dead rows away (`Staged::truncate`). Not `ON COMMIT DELETE ROWS`: that
    /// empties every such temp table of the session at each commit, and a connection shared by a hundred sources
    /// holds a hundred of them.
    delete_temp: String,
    truncate_temp: String,
    pub copy_in: String,
    /// Deletes gone keys, then rows displaced on each unique key, then upserts present rows: one round trip. The
    /// upsert reads only the temp table, so a small batch costs the same whatever the target's size.
    merge: Vec<String>,
    /// `merge` for a large batch, whose temp table has planner statistics: present rows written the
    /// `PresentRows` way.
    merge_large: Vec<String>,
    /// The parts of `merge`, for running the tables' upserts parent-first and their deletes child-first
    /// (`--into-existing`, where foreign keys may not be deferrable): deletes of gone keys ...
    delete_gone: String,
    /// ... and deletes of displaced rows with the upsert.
    upserts: Vec<String>,
    /// Deletes the target's rows whose key is not in the temp table, when the temp table holds the whole table.
    delete_absent: String,
    /// In a shared table the statements touch one source's rows, named by parameter `$1`.
    layout: Layout,
    /// Empties the target before a batch copies the whole table again, straight into it.
    delete_all: String,
    pub copy_whole: String,
    /// Moves the primary key to the plan's key, when a rebuild changed it (run before a whole-table copy).
    rekey: Option<String>,
    clear_rejects: String,
}

impl TableMerge {
    /// Builds the statements for `plan` in `schema`, given the target's unique column sets besides the key,
    /// staging rows in session temp table `temp_table`. In a shared table they touch only the rows of the
    /// source given as parameter `$1`, and write it into the source column.
    pub fn new(
        schema: &str,
        temp_table: String,
        plan: &TablePlan,
        unique_sets: &[Vec<String>],
        layout: Layout,
        present_rows: PresentRows,
    ) -> TableMerge {
        let own = layout.this_source("t.", 1);
        let target = qualified(schema, &plan.name);
        let columns = plan.pg_column_list();
        let keys: Vec<String> = plan.key_columns().map(|c| quote(&c.pg_name)).collect();
        let key_match = keys.iter().map(|k| format!("t.{k} = s.{k}")).collect::<Vec<_>>().join(" AND ");
        let key_tuple = |alias: &str| format!("({})", keys.iter().map(|k| format!("{alias}.{k}")).collect::<Vec<_>>().join(", "));
        let gone = quote(GONE_COLUMN);
        let key_json = format!("jsonb_build_array({})", keys.iter().map(|k| format!("s.{k}")).collect::<Vec<_>>().join(", "));
        let delete_gone =
            format!("DELETE FROM {target} AS t USING {} AS s WHERE s.{gone} AND {key_match}{own}", quote(&temp_table));
        // One per unique constraint: deletes rows of this batch whose unique values another row of it takes now
        // (their own new values are written next), so that a non-deferrable constraint holds after each row. A row
        // outside the batch is left alone: SQLite did not change it (a row an `INSERT OR REPLACE` displaced is
        // logged as gone by the displacement triggers), so if PostgreSQL's constraint refuses the two rows, the
        // constraint is what disagrees with SQLite, and the batch fails on it instead of deleting a row SQLite has.
        // A row kept as PostgreSQL has it (gone flag NULL: its new values were rejected) is not written again.
        let in_batch = keys
            .iter()
            .map(|k| format!("o.{k} = t.{k}"))
            .chain([format!("o.{gone} IS NOT NULL")])
            .collect::<Vec<_>>()
            .join(" AND ");
        let delete_displaced = unique_sets.iter().map(|set| {
            let same = layout.unscoped(set).iter().map(|c| format!("t.{0} = s.{0}", quote(c))).collect::<Vec<_>>().join(" AND ");
            // The batch's row is found by a join, not a subquery: Citus refuses a subquery on a local table here.
            format!(
                "DELETE FROM {target} AS t USING {temp} AS s, {temp} AS o WHERE NOT s.{gone} AND {same}{own} \
                 AND {} IS DISTINCT FROM {} AND {in_batch}",
                key_tuple("t"),
                key_tuple("s"),
                temp = quote(&temp_table),
            )
        });
        let delete_absent = format!(
            "DELETE FROM {target} AS t WHERE NOT EXISTS (SELECT FROM {} AS s WHERE {key_match}){own}",
            quote(&temp_table)
        );
        let displaced: Vec<String> = delete_displaced.collect();
        let merge_with = |present_rows| {
            let write = write_present(&target, &quote(&temp_table), plan, layout, present_rows, &key_match);
            std::iter::once(delete_gone.clone()).chain(displaced.iter().cloned()).chain([write]).collect::<Vec<_>>()
        };
        let merge = merge_with(PresentRows::Upsert);
        TableMerge {
            merge_large: merge_with(present_rows),
            upserts: merge[1..].to_vec(),
            merge,
            delete_gone,
            delete_absent,
            layout,
            create_temp: format!(
                "CREATE TEMP TABLE IF NOT EXISTS {0} AS SELECT {columns}, NULL::boolean AS {gone} FROM {target} WITH NO DATA",
                quote(&temp_table)
            ),
            copy_in: format!("COPY {} ({columns}, {gone}) FROM STDIN (FORMAT binary)", quote(&temp_table)),
            delete_temp: format!("DELETE FROM {}", quote(&temp_table)),
            truncate_temp: format!("TRUNCATE {}", quote(&temp_table)),
            delete_all: format!("DELETE FROM {target} AS t WHERE true{own}"),
            copy_whole: format!("COPY {target} ({columns}) FROM STDIN (FORMAT binary)"),
            rekey: None,
            clear_rejects: format!(
                "DELETE FROM lite2pg.rejects AS r USING {} AS s WHERE r.source_id = $1 AND r.table_name = $2 AND r.key = {key_json}",
                quote(&temp_table)
            ),
            temp_table,
        }
    }

    /// Drops and makes the session's temp table in the target's current shape; run outside any batch
    /// transaction, so that a rolled-back batch cannot take it away.
    pub fn temp_table_statement(&self) -> String {
        format!("DROP TABLE IF EXISTS pg_temp.{}; {}", quote(&self.temp_table), self.create_temp)
    }

    /// Makes the primary key `key` (its constraint now being `current`, with its columns, if any) when a
    /// whole-table copy runs. The old key's other columns lose the NOT NULL the key gave them (PostgreSQL keeps it
    /// when the key goes): SQLite may hold NULL there now, and the constraints SQLite declares are made again later.
    pub fn rekey(&mut self, schema: &str, table: &str, current: Option<(&str, &[String])>, key: &[String]) {
        let target = qualified(schema, table);
        let drop = current
            .map(|(name, columns)| {
                let loosen: String = columns
                    .iter()
                    .filter(|c| !key.contains(c))
                    .map(|c| format!("ALTER TABLE {target} ALTER COLUMN {} DROP NOT NULL; ", quote(c)))
                    .collect();
                format!("ALTER TABLE {target} DROP CONSTRAINT {}; {loosen}", quote(name))
            })
            .unwrap_or_default();
        let key = key.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ");
        self.rekey = Some(format!("{drop}ALTER TABLE {target} ADD PRIMARY KEY ({key})"));
    }

    /// Empties the target (and moves its key if asked), inside the caller's open transaction, before
    /// `copy_whole` fills it again.
    pub async fn delete_all(&self, client: &Client, source_id: &String) -> Result<()> {
        client.execute(self.delete_all.as_str(), &self.layout.source_param(source_id)).await?;
        if let Some(rekey) = &self.rekey {
            client.batch_execute(rekey).await?;
        }
        Ok(())
    }

    /// Merges what was copied into the temp table, inside the caller's open transaction: deletes gone keys and
    /// rows displaced on a unique key, writes present rows, and clears rejects of rows that now fit.
    pub async fn merge(
        &self,
        client: &Client,
        source_id: &String,
        table: &str,
        staged: Staged,
        clear_rejects: bool,
    ) -> Result<()> {
        self.analyze(client, staged.rows).await?;
        let merge = if staged.rows >= LARGE_BATCH_ROWS { &self.merge_large } else { &self.merge };
        if !clear_rejects && !self.layout.shares_tables() {
            client.batch_execute(&format!("{}; {}", merge.join("; "), self.empty(staged.truncate))).await?;
            return Ok(());
        }
        self.run(client, merge, source_id).await?;
        self.finish(client, source_id, table, clear_rejects, staged.truncate).await
    }

    /// The first half of `merge`, for a table whose parents were upserted before it: deletes rows displaced on a
    /// unique key and writes present rows.
    pub async fn upsert(&self, client: &Client, source_id: &String, rows: u64) -> Result<()> {
        self.analyze(client, rows).await?;
        self.run(client, &self.upserts, source_id).await
    }

    /// The second half of `merge`, for a table whose children were handled before it: deletes gone keys (and,
    /// when the temp table holds the whole table, every row it lacks), clears rejects of rows that now fit.
    pub async fn delete(
        &self,
        client: &Client,
        source_id: &String,
        table: &str,
        whole: bool,
        clear_rejects: bool,
        truncate: bool,
    ) -> Result<()> {
        let delete = if whole { &self.delete_absent } else { &self.delete_gone };
        self.run(client, std::slice::from_ref(delete), source_id).await?;
        self.finish(client, source_id, table, clear_rejects, truncate).await
    }

    /// Runs merge statements in order in one round trip: as one batch, or pipelined with the source as
    /// parameter `$1` in a shared table.
    async fn run(&self, client: &Client, statements: &[String], source_id: &String) -> Result<()> {
        if !self.layout.shares_tables() {
            return Ok(client.batch_execute(&statements.join("; ")).await?);
        }
        let params = self.layout.source_param(source_id);
        futures_util::future::try_join_all(statements.iter().map(|sql| client.execute(sql.as_str(), &params))).await?;
        Ok(())
    }

    async fn analyze(&self, client: &Client, rows: u64) -> Result<()> {
        if rows >= LARGE_BATCH_ROWS {
            // Without statistics the planner misjudges the temp table (how many rows share a key, how many are
            // gone) and picks nested loops. A sample of 300 rows tells it, in 4 ms where the default 30,000 took 50.
            client
                .batch_execute(&format!(
                    "SET LOCAL default_statistics_target = 1; ANALYZE {}; SET LOCAL default_statistics_target = DEFAULT",
                    quote(&self.temp_table)
                ))
                .await?;
        }
        Ok(())
    }

    async fn finish(&self, client: &Client, source_id: &str, table: &str, clear_rejects: bool, truncate: bool) -> Result<()> {
        if clear_rejects {
            client.execute(self.clear_rejects.as_str(), &[&source_id, &table]).await?;
        }
        client.batch_execute(self.empty(truncate)).await?;
        Ok(())
    }

    fn empty(&self, truncate: bool) -> &str {
        match truncate {
            true => &self.truncate_temp,
            false => &self.delete_temp,
        }
    }
}

/// The statement writing the temp table's present rows into `target`, given how `t` (target) and `s` (temp table)
/// rows match by key. OVERRIDING SYSTEM VALUE: an application's `GENERATED ALWAYS AS IDENTITY` key takes SQLite's
/// values too.
fn write_present(
    target: &str,
    temp: &str,
    plan: &TablePlan,
    layout: Layout,
    present_rows: PresentRows,
    key_match: &str,
) -> String {
    let gone = quote(GONE_COLUMN);
    let columns = plan.pg_column_list();
    let key = plan.pg_key(layout);
    let non_key: Vec<String> = plan.columns.iter().filter(|c| !key.contains(&c.pg_name)).map(|c| quote(&c.pg_name)).collect();
    let assign = |from: &str| non_key.iter().map(|c| format!("{c} = {from}{c}")).collect::<Vec<_>>().join(", ");
    // The UPDATE names no source, so a shared table's rows are always upserted; so are rows of key columns only.
    if present_rows == PresentRows::Upsert || layout.shares_tables() || non_key.is_empty() {
        // Only plain EXCLUDED columns in DO UPDATE SET: Citus refuses any function there that is not IMMUTABLE.
        let (source_column, source_value) = layout.source_insert(1);
        let on_conflict = match non_key.is_empty() {
            true => "DO NOTHING".to_string(),
            false => format!("DO UPDATE SET {}", assign("EXCLUDED.")),
        };
        return format!(
            "INSERT INTO {target} ({source_column}{columns}) OVERRIDING SYSTEM VALUE SELECT {source_value}{columns} \
             FROM {temp} WHERE NOT {gone} ON CONFLICT ({}) {on_conflict}",
            column_list(&key)
        );
    }
    // One statement, so one snapshot: a row another session inserts meanwhile makes the INSERT fail on the key (and
    // the batch is tried again), and a row it deletes meanwhile is not updated, so it is inserted.
    let returning = key.iter().map(|k| format!("t.{}", quote(k))).collect::<Vec<_>>().join(", ");
    format!(
        "WITH updated AS (UPDATE {target} AS t SET {} FROM {temp} AS s WHERE NOT s.{gone} AND {key_match} RETURNING {returning}) \
         INSERT INTO {target} ({columns}) OVERRIDING SYSTEM VALUE SELECT {columns} FROM {temp} AS s \
         WHERE NOT s.{gone} AND NOT EXISTS (SELECT FROM updated AS t WHERE {key_match})",
        assign("s.")
    )
}

/// The plan of a table lite2pg created earlier: SQLite's columns with the PostgreSQL types they have now.
pub async fn existing_plan(
    client: &impl GenericClient,
    schema: &str,
    table: &Table,
    key_columns: &[String],
) -> Result<TablePlan> {
    let columns = table_columns(client, schema, &table.name).await?.ok_or_else(|| {
        Error::new(ErrorKind::Schema, format!("table {:?} is captured but missing in PostgreSQL schema {schema}", table.name))
            .with_hint("copy it with `lite2pg snapshot --replace`")
    })?;
    let names: Vec<String> = table.columns.iter().map(|c| crate::mapping::table::pg_column_name(&c.name)).collect();
    let types = pg_types_for(&table.name, &names, &columns)?;
    if key_columns.is_empty() && !columns.iter().any(|(c, _)| c == ROWID_COLUMN) {
        return Err(Error::new(
            ErrorKind::Schema,
            format!("table {:?} in PostgreSQL lacks the {ROWID_COLUMN} column lite2pg keys it by", table.name),
        )
        .with_hint("re-create it with `lite2pg snapshot --replace`"));
    }
    Ok(TablePlan::new(table, &types, key_columns))
}

/// The PostgreSQL types of `names` in a table lite2pg created, in order.
fn pg_types_for(table: &str, names: &[String], columns: &[(String, String)]) -> Result<Vec<PgType>> {
    names
        .iter()
        .map(|name| {
            let (_, type_name) = columns.iter().find(|(c, _)| c == name).ok_or_else(|| {
                Error::new(ErrorKind::Schema, format!("column {name:?} of table {table:?} is missing in PostgreSQL"))
                    .with_hint("re-create the table with `lite2pg snapshot --replace`")
            })?;
            PgType::from_format_type(type_name).ok_or_else(|| {
                Error::new(
                    ErrorKind::Schema,
                    format!(
                        "column {name:?} of table {table:?} has type {type_name} in PostgreSQL, which lite2pg does not write"
                    ),
                )
                .with_hint("change it back or re-create the table with `lite2pg snapshot --replace`")
            })
        })
        .collect()
}

/// Makes the target's unique expression and partial indexes plain ones of the same name, as earlier lite2pg
/// versions made them unique: PostgreSQL checks such an index at every row (only constraints can be deferred),
/// so a batch swapping two values fails in any order, at every retry. Cutover makes them unique again.
pub async fn loosen_unique_indexes(client: &Client, schema: &str, table: &str) -> Result<()> {
    for (name, definition) in catalog::unique_indexes_beyond_constraints(client, schema, table).await? {
        let plain = definition.replacen("CREATE UNIQUE INDEX", "CREATE INDEX", 1);
        // One simple query: the drop and the new index commit together.
        client.batch_execute(&format!("DROP INDEX {}; {plain}", qualified(schema, &name))).await?;
        tracing::info!(
            "index {name} on {table:?} is no longer unique in PostgreSQL while streaming; cutover makes it unique again"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::layout::SOURCE_COLUMN;
    use crate::pg::PgTarget;

    const OWN: Layout = Layout::SchemaPerSource;
    const SHARED: Layout = Layout::SharedTables;

    const TEMP: &str = "batch_t";

    /// The plan of `table` as created by `sql` in SQLite, every column typed `types`, keyed by its primary key.
    fn plan(sql: &str, table: &str, types: &[PgType]) -> TablePlan {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(sql).unwrap();
        let schema = crate::sqlite::introspect::read_schema(&conn).unwrap();
        let table = schema.tables.iter().find(|t| t.name == table).unwrap();
        TablePlan::new(table, types, &table.primary_key)
    }

    fn users() -> TablePlan {
        plan(
            "CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT UNIQUE, name TEXT);",
            "users",
            &[PgType::BigInt, PgType::Text, PgType::Text],
        )
    }

    fn posts() -> TablePlan {
        let sql = "CREATE TABLE posts(user_id INTEGER, n INTEGER, body TEXT, PRIMARY KEY (user_id, n)) WITHOUT ROWID;";
        plan(sql, "posts", &[PgType::BigInt, PgType::BigInt, PgType::Text])
    }

    fn email_unique(layout: Layout) -> Vec<Vec<String>> {
        let columns = if layout.shares_tables() { vec![SOURCE_COLUMN, "email"] } else { vec!["email"] };
        vec![columns.into_iter().map(str::to_string).collect()]
    }

    #[test]
    fn a_simple_key_merges_by_delete_using_then_upsert_or_update_and_insert() {
        let merge = TableMerge::new("public", TEMP.to_string(), &users(), &email_unique(OWN), OWN, PresentRows::UpdateThenInsert);
        assert_eq!(
            merge.merge,
            [
                r#"DELETE FROM "public"."users" AS t USING "batch_t" AS s WHERE s."__lite2pg_gone" AND t."id" = s."id""#,
                r#"DELETE FROM "public"."users" AS t USING "batch_t" AS s, "batch_t" AS o WHERE NOT s."__lite2pg_gone" AND t."email" = s."email" AND (t."id") IS DISTINCT FROM (s."id") AND o."id" = t."id" AND o."__lite2pg_gone" IS NOT NULL"#,
                r#"INSERT INTO "public"."users" ("id", "email", "name") OVERRIDING SYSTEM VALUE SELECT "id", "email", "name" FROM "batch_t" WHERE NOT "__lite2pg_gone" ON CONFLICT ("id") DO UPDATE SET "email" = EXCLUDED."email", "name" = EXCLUDED."name""#,
            ]
        );
        assert_eq!(merge.merge_large[..2], merge.merge[..2]);
        assert_eq!(
            merge.merge_large[2],
            r#"WITH updated AS (UPDATE "public"."users" AS t SET "email" = s."email", "name" = s."name" FROM "batch_t" AS s WHERE NOT s."__lite2pg_gone" AND t."id" = s."id" RETURNING t."id") INSERT INTO "public"."users" ("id", "email", "name") OVERRIDING SYSTEM VALUE SELECT "id", "email", "name" FROM "batch_t" AS s WHERE NOT s."__lite2pg_gone" AND NOT EXISTS (SELECT FROM updated AS t WHERE t."id" = s."id")"#,
            "a large batch updates, then inserts"
        );
        assert_eq!(merge.delete_gone, merge.merge[0], "--into-existing splits the same statements");
        assert_eq!(merge.upserts, merge.merge[1..], "--into-existing always upserts");
        assert_eq!(
            merge.delete_absent,
            r#"DELETE FROM "public"."users" AS t WHERE NOT EXISTS (SELECT FROM "batch_t" AS s WHERE t."id" = s."id")"#
        );
    }

    #[test]
    fn a_composite_key_matches_every_key_column() {
        let merge = TableMerge::new("app", TEMP.to_string(), &posts(), &[], OWN, PresentRows::UpdateThenInsert);
        assert_eq!(
            merge.merge,
            [
                r#"DELETE FROM "app"."posts" AS t USING "batch_t" AS s WHERE s."__lite2pg_gone" AND t."user_id" = s."user_id" AND t."n" = s."n""#,
                r#"INSERT INTO "app"."posts" ("user_id", "n", "body") OVERRIDING SYSTEM VALUE SELECT "user_id", "n", "body" FROM "batch_t" WHERE NOT "__lite2pg_gone" ON CONFLICT ("user_id", "n") DO UPDATE SET "body" = EXCLUDED."body""#,
            ]
        );
        assert_eq!(
            merge.merge_large[1],
            r#"WITH updated AS (UPDATE "app"."posts" AS t SET "body" = s."body" FROM "batch_t" AS s WHERE NOT s."__lite2pg_gone" AND t."user_id" = s."user_id" AND t."n" = s."n" RETURNING t."user_id", t."n") INSERT INTO "app"."posts" ("user_id", "n", "body") OVERRIDING SYSTEM VALUE SELECT "user_id", "n", "body" FROM "batch_t" AS s WHERE NOT s."__lite2pg_gone" AND NOT EXISTS (SELECT FROM updated AS t WHERE t."user_id" = s."user_id" AND t."n" = s."n")"#
        );
        let all_key = plan("CREATE TABLE pairs(a INT, b INT, PRIMARY KEY (a, b)) WITHOUT ROWID;", "pairs", &[PgType::BigInt; 2]);
        let merge = TableMerge::new("app", TEMP.to_string(), &all_key, &[], OWN, PresentRows::UpdateThenInsert);
        assert!(
            merge.merge_large[1].ends_with(r#"ON CONFLICT ("a", "b") DO NOTHING"#),
            "nothing to update: {}",
            merge.merge_large[1]
        );
        let shared = TableMerge::new("app", TEMP.to_string(), &all_key, &[], SHARED, PresentRows::Upsert);
        assert!(shared.merge[1].ends_with(r#"ON CONFLICT ("source_id", "a", "b") DO NOTHING"#), "{}", shared.merge[1]);
    }

    #[test]
    fn a_shared_table_touches_only_the_source_given_as_parameter() {
        let merge = TableMerge::new("public", TEMP.to_string(), &users(), &email_unique(SHARED), SHARED, PresentRows::Upsert);
        assert_eq!(
            merge.merge,
            [
                r#"DELETE FROM "public"."users" AS t USING "batch_t" AS s WHERE s."__lite2pg_gone" AND t."id" = s."id" AND t."source_id" = $1"#,
                r#"DELETE FROM "public"."users" AS t USING "batch_t" AS s, "batch_t" AS o WHERE NOT s."__lite2pg_gone" AND t."email" = s."email" AND t."source_id" = $1 AND (t."id") IS DISTINCT FROM (s."id") AND o."id" = t."id" AND o."__lite2pg_gone" IS NOT NULL"#,
                r#"INSERT INTO "public"."users" ("source_id", "id", "email", "name") OVERRIDING SYSTEM VALUE SELECT $1, "id", "email", "name" FROM "batch_t" WHERE NOT "__lite2pg_gone" ON CONFLICT ("source_id", "id") DO UPDATE SET "email" = EXCLUDED."email", "name" = EXCLUDED."name""#,
            ]
        );
        assert_eq!(merge.delete_all, r#"DELETE FROM "public"."users" AS t WHERE true AND t."source_id" = $1"#);
    }

    /// A fresh database on the test server (`LITE2PG_TEST_POSTGRES`, else the local service), dropped afterwards.
    struct ScratchDb {
        admin: PgTarget,
        name: String,
    }

    impl ScratchDb {
        async fn new() -> ScratchDb {
            let url = std::env::var("LITE2PG_TEST_POSTGRES")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
            let admin = PgTarget::parse(&url).unwrap();
            let mut bytes = [0u8; 6];
            getrandom::getrandom(&mut bytes).unwrap();
            let name = format!("lite2pg_unit_{}", crate::mapping::types::hex(&bytes));
            let client = admin.connect().await.expect("the merge tests need PostgreSQL: set LITE2PG_TEST_POSTGRES");
            client.batch_execute(&format!("CREATE DATABASE {}", quote(&name))).await.unwrap();
            ScratchDb { admin, name }
        }

        async fn client(&self) -> Client {
            self.admin.with_dbname(&self.name).connect().await.unwrap()
        }
    }

    impl Drop for ScratchDb {
        fn drop(&mut self) {
            let (admin, drop) = (self.admin.clone(), format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote(&self.name)));
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                runtime.block_on(async {
                    if let Ok(client) = admin.connect().await {
                        let _ = client.batch_execute(&drop).await;
                    }
                });
            })
            .join();
        }
    }

    /// Makes `plan`'s table in a fresh database, runs `setup` (indexes, rows), stages `staged` in the temp table,
    /// merges them (as source `a` in a shared table) and returns the table's rows as text, ordered, or the SQLSTATE
    /// the merge failed with. Checks that both ways of writing present rows end the same.
    async fn merged(
        plan: &TablePlan,
        unique_sets: &[Vec<String>],
        layout: Layout,
        setup: &str,
        staged: &str,
    ) -> Result<Vec<String>, String> {
        let updated_then_inserted = merged_by(PresentRows::UpdateThenInsert, plan, unique_sets, layout, setup, staged).await;
        let upserted = merged_by(PresentRows::Upsert, plan, unique_sets, layout, setup, staged).await;
        assert_eq!(updated_then_inserted, upserted, "both ways of writing present rows agree");
        upserted
    }

    async fn merged_by(
        present_rows: PresentRows,
        plan: &TablePlan,
        unique_sets: &[Vec<String>],
        layout: Layout,
        setup: &str,
        staged: &str,
    ) -> Result<Vec<String>, String> {
        let db = ScratchDb::new().await;
        let client = db.client().await;
        let merge = TableMerge::new("public", TEMP.to_string(), plan, unique_sets, layout, present_rows);
        client.batch_execute(&crate::mapping::ddl::create_table_sql("public", plan, layout)).await.unwrap();
        client.batch_execute(setup).await.unwrap();
        client.batch_execute(&merge.temp_table_statement()).await.unwrap();
        client.batch_execute(&format!("INSERT INTO {} VALUES {staged}", quote(TEMP))).await.unwrap();
        client.batch_execute("BEGIN").await.unwrap();
        // Counted as a large batch, so that its present rows are written `present_rows`' way.
        let staged = Staged { rows: LARGE_BATCH_ROWS, truncate: false };
        if let Err(err) = merge.merge(&client, &"a".to_string(), &plan.name, staged, false).await {
            return Err(err.postgres().expect("PostgreSQL refused the merge").code.clone());
        }
        client.batch_execute("COMMIT").await.unwrap();
        let left: i64 = client.query_one(&format!("SELECT count(*) FROM {}", quote(TEMP)), &[]).await.unwrap().get(0);
        assert_eq!(left, 0, "the merge empties the temp table");
        let rows = format!("SELECT t::text FROM {} AS t ORDER BY t::text", qualified("public", &plan.name));
        Ok(client.query(&rows, &[]).await.unwrap().iter().map(|r| r.get(0)).collect())
    }

    #[tokio::test]
    async fn merging_a_simple_key_deletes_gone_and_displaced_rows_and_writes_present_ones() {
        let rows = merged(
            &users(),
            &email_unique(OWN),
            OWN,
            "CREATE UNIQUE INDEX ON users (email); INSERT INTO users VALUES (1, 'a@x', 'Ann'), (2, 'b@x', 'Bob'), (3, 'c@x', 'Cy');",
            "(1, NULL, NULL, true), (4, 'b@x', 'replaces Bob', false), (3, 'c@x', 'Cy again', false), (2, 'd@x', 'Bob moves', false)",
        )
        .await;
        assert_eq!(
            rows,
            Ok(vec!["(2,d@x,\"Bob moves\")".to_string(), "(3,c@x,\"Cy again\")".into(), "(4,b@x,\"replaces Bob\")".into()])
        );
    }

    #[tokio::test]
    async fn a_row_outside_the_batch_is_never_deleted_as_displaced() {
        // SQLite keeps them apart (5 and '5' in an untyped column): PostgreSQL's constraint refuses the batch.
        let rows = merged(
            &users(),
            &email_unique(OWN),
            OWN,
            "CREATE UNIQUE INDEX ON users (email); INSERT INTO users VALUES (1, 'a@x', 'Ann'), (2, '5', 'Bob');",
            "(3, '5', 'Five', false)",
        )
        .await;
        assert_eq!(rows, Err("23505".to_string()));
    }

    #[tokio::test]
    async fn merging_a_composite_key_matches_whole_keys() {
        let rows = merged(
            &posts(),
            &[],
            OWN,
            "INSERT INTO posts VALUES (1, 1, 'x'), (1, 2, 'y'), (2, 1, 'z');",
            "(1, 1, NULL, true), (1, 2, 'y2', false), (3, 1, 'new', false)",
        )
        .await;
        assert_eq!(rows.unwrap(), ["(1,2,y2)", "(2,1,z)", "(3,1,new)"]);
    }

    #[tokio::test]
    async fn merging_into_a_shared_table_leaves_other_sources_alone() {
        let rows = merged(
            &users(),
            &email_unique(SHARED),
            SHARED,
            "CREATE UNIQUE INDEX ON users (source_id, email);
             INSERT INTO users VALUES ('a', 1, 'a@x', 'Ann'), ('a', 2, 'b@x', 'Bob'), ('b', 1, 'a@x', 'other Ann'), ('b', 2, 'b@x', 'other Bob');",
            "(1, NULL, NULL, true), (2, NULL, NULL, true), (4, 'b@x', 'replaces Bob', false)",
        )
        .await;
        assert_eq!(rows.unwrap(), ["(a,4,b@x,\"replaces Bob\")", "(b,1,a@x,\"other Ann\")", "(b,2,b@x,\"other Bob\")"]);
    }
}
