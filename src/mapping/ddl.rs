//! The DDL text for a planned table: `CREATE TABLE`, and what is built after the rows are copied — unique
//! constraints, indexes and foreign keys.

use super::layout::Layout;
use super::table::{column_list, pg_column_names, KeyPlan, TablePlan};
use crate::ident::{qualified, quote};
use crate::sqlite::introspect::{ForeignKey, Index, Table};

/// `CREATE TABLE` with columns, NOT NULL, defaults and the primary key, as `layout` keys it.
pub fn create_table_sql(schema: &str, plan: &TablePlan, layout: Layout) -> String {
    let mut lines: Vec<String> = layout.source_column_definition().into_iter().collect();
    lines.extend(plan.columns.iter().map(|c| {
        let mut line = format!("{} {}", quote(&c.pg_name), c.pg_type.sql());
        if c.not_null {
            line.push_str(" NOT NULL");
        }
        if let Some(default) = &c.default_sql {
            line.push_str(" DEFAULT ");
            line.push_str(default);
        }
        line
    }));
    lines.push(format!("PRIMARY KEY ({})", column_list(&plan.pg_key(layout))));
    format!("CREATE TABLE {} (\n  {}\n)", qualified(schema, &plan.name), lines.join(",\n  "))
}

/// A statement to run after the data is copied, and what to say if PostgreSQL refuses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostDataStatement {
    pub sql: String,
    pub what: String,
}

/// Unique constraints, indexes and foreign keys for `table`, to build after its rows are copied.
/// `referenced_unique` lists column sets other tables' foreign keys point at (those cannot be deferrable).
pub fn post_data_statements(
    schema: &str,
    table: &Table,
    plan: &TablePlan,
    referenced: &[Vec<String>],
    layout: Layout,
) -> Vec<PostDataStatement> {
    let target = qualified(schema, &table.name);
    let referenced: Vec<Vec<String>> = referenced.iter().map(|r| layout.scoped(&pg_column_names(r))).collect();
    let referenced = referenced.as_slice();
    let declared_key_kept = matches!(plan.key, KeyPlan::Columns(_));
    let mut statements = Vec::new();
    if !declared_key_kept && !table.primary_key.is_empty() {
        statements.push(unique_constraint(
            &target,
            &table.name,
            &layout.scoped(&pg_column_names(&table.primary_key)),
            referenced,
            None,
        ));
    }
    for index in &table.indexes {
        if index.origin == "pk" {
            continue;
        }
        match (&index.columns, index.unique && !index.partial) {
            // A CREATE UNIQUE INDEX keeps its name, so that dropping the index in SQLite can drop it here.
            (Some(columns), true) => {
                let name = (index.origin == "c").then_some(index.name.as_str());
                statements.push(unique_constraint(
                    &target,
                    &table.name,
                    &layout.scoped(&pg_column_names(columns)),
                    referenced,
                    name,
                ))
            }
            (Some(columns), false) if !index.partial => statements.push(PostDataStatement {
                sql: format!(
                    "CREATE {}INDEX {} ON {target} ({})",
                    if index.unique { "UNIQUE " } else { "" },
                    quote(&index.name),
                    column_list(&layout.scoped(&pg_column_names(columns)))
                ),
                what: format!("index {}", index.name),
            }),
            _ => statements.extend(expression_index(&target, index)),
        }
    }
    statements
}

fn unique_constraint(
    target: &str,
    table: &str,
    columns: &[String],
    referenced: &[Vec<String>],
    name: Option<&str>,
) -> PostDataStatement {
    let deferral = if referenced.iter().any(|r| r == columns) { "" } else { " DEFERRABLE INITIALLY DEFERRED" };
    let constraint = name.map(|name| format!("CONSTRAINT {} ", quote(name))).unwrap_or_default();
    PostDataStatement {
        sql: format!(
            "ALTER TABLE {target} ADD {constraint}UNIQUE ({}){deferral}",
            columns.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ")
        ),
        what: format!("unique ({}) on {table}", columns.join(", ")),
    }
}

/// Expression and partial indexes: SQLite's own text after `ON table`, tried as is; PostgreSQL may refuse it.
/// Made without UNIQUE while streaming: PostgreSQL checks a unique index at every row (only constraints can be
/// deferred), so a batch that swaps two values would fail in any order; `deferred_unique_indexes` adds it.
fn expression_index(target: &str, index: &Index) -> Option<PostDataStatement> {
    Some(PostDataStatement {
        sql: format!("CREATE INDEX {} ON {target} {}", quote(&index.name), index_body(index)?),
        what: format!("index {}", index.name),
    })
}

/// The index's SQLite text from its column list on: `(terms) [WHERE predicate]`.
fn index_body(index: &Index) -> Option<&str> {
    let sql = index.sql.as_deref()?;
    Some(&sql[sql.find('(')?..])
}

/// Whether PostgreSQL gets `index` without its UNIQUE until cutover.
fn unique_at_cutover(index: &Index) -> bool {
    index.unique && (index.partial || index.columns.is_none())
}

/// For cutover, when PostgreSQL stops following SQLite: the unique expression and partial indexes of `table`,
/// made unique in place of the plain ones streaming used.
pub fn deferred_unique_indexes(schema: &str, table: &Table) -> Vec<PostDataStatement> {
    let target = qualified(schema, &table.name);
    table
        .indexes
        .iter()
        .filter(|index| unique_at_cutover(index))
        .filter_map(|index| {
            Some(PostDataStatement {
                sql: format!(
                    "DROP INDEX IF EXISTS {}; CREATE UNIQUE INDEX {} ON {target} {}",
                    qualified(schema, &index.name),
                    quote(&index.name),
                    index_body(index)?
                ),
                what: format!("unique index {} on {}", index.name, table.name),
            })
        })
        .collect()
}

/// The `n`th foreign key of `table`, deferrable and without actions (SQLite's cascades arrive as their own
/// changes), `NOT VALID` so that rows SQLite let break it do not stop it being made.
pub fn foreign_key_statement(
    schema: &str,
    table: &str,
    n: usize,
    key: &ForeignKey,
    parent_columns: &[String],
    layout: Layout,
) -> PostDataStatement {
    let list = |cols: &[String]| column_list(&layout.scoped(&pg_column_names(cols)));
    PostDataStatement {
        sql: format!(
            "ALTER TABLE {} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} ({}) DEFERRABLE INITIALLY DEFERRED NOT VALID",
            qualified(schema, table),
            quote(&constraint_name(table, n)),
            list(&key.columns),
            qualified(schema, &key.parent_table),
            list(parent_columns)
        ),
        what: format!("foreign key {table}({}) -> {}", key.columns.join(", "), key.parent_table),
    }
}

/// A foreign key's constraint name within PostgreSQL's 63 bytes.
pub fn constraint_name(table: &str, n: usize) -> String {
    let suffix = format!("_fk{n}");
    let mut base = table.to_string();
    while base.len() + suffix.len() > crate::ident::PG_MAX_IDENTIFIER_BYTES {
        base.pop();
    }
    base + &suffix
}
