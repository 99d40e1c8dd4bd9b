//! The table plan: how one SQLite table becomes one PostgreSQL table — its columns and their types, and the key
//! that identifies rows in the change log and in PostgreSQL — and the columns foreign keys join across tables.

use super::defaults::translate_default;
use super::layout::Layout;
use super::types::{choose_pg_type, ColumnStats, PgType, SqlValue};
use crate::config::Policies;
use crate::ident::quote;
use crate::sqlite::introspect::Table;

/// Name of the column added to PostgreSQL tables that have no usable primary key: it holds the SQLite rowid.
pub const ROWID_COLUMN: &str = "__lite2pg_rowid";

/// One PostgreSQL column.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnPlan {
    /// The SQLite name, for reading SQLite.
    pub name: String,
    /// The name in PostgreSQL (`pg_column_name`), for every PostgreSQL statement.
    pub pg_name: String,
    pub declared_type: String,
    pub pg_type: PgType,
    pub not_null: bool,
    /// The default as PostgreSQL SQL, when it translates.
    pub default_sql: Option<String>,
}

/// How rows of a table are identified, in the change log and in PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPlan {
    /// The declared primary key: indexes into `columns`, in key order.
    Columns(Vec<usize>),
    /// The SQLite rowid, kept in PostgreSQL as the last column, `ROWID_COLUMN`.
    Rowid,
}

/// Everything needed to create, copy and apply one table.
#[derive(Debug, Clone, PartialEq)]
pub struct TablePlan {
    pub name: String,
    pub columns: Vec<ColumnPlan>,
    pub key: KeyPlan,
    /// How the rowid is reached in SQLite (`None` for WITHOUT ROWID).
    pub rowid_name: Option<&'static str>,
}

impl TablePlan {
    /// Chooses every column's type from the stored-value scan (for a new PostgreSQL table), unless the
    /// settings name one.
    pub fn from_stats(table: &Table, stats: &[ColumnStats], key_columns: &[String], policies: &Policies) -> TablePlan {
        let types: Vec<PgType> = table
            .columns
            .iter()
            .zip(stats)
            .map(|(c, s)| policies.type_override(&table.name, &c.name).unwrap_or_else(|| choose_pg_type(&c.declared_type, s)))
            .collect();
        TablePlan::new(table, &types, key_columns)
    }

    /// Builds the plan for `table` with the given PostgreSQL column types and the key the change log uses
    /// (`key_columns` empty means the rowid).
    pub fn new(table: &Table, pg_types: &[PgType], key_columns: &[String]) -> TablePlan {
        let mut columns: Vec<ColumnPlan> = table
            .columns
            .iter()
            .zip(pg_types)
            .map(|(column, &pg_type)| ColumnPlan {
                name: column.name.clone(),
                pg_name: pg_column_name(&column.name),
                declared_type: column.declared_type.clone(),
                pg_type,
                not_null: column.not_null || (table.without_rowid && table.primary_key.contains(&column.name)),
                default_sql: column.default_sql.as_deref().and_then(|sql| translate_default(sql, pg_type)),
            })
            .collect();
        let key = if key_columns.is_empty() {
            columns.push(ColumnPlan {
                name: ROWID_COLUMN.to_string(),
                pg_name: ROWID_COLUMN.to_string(),
                declared_type: "rowid".to_string(),
                pg_type: PgType::BigInt,
                not_null: true,
                default_sql: None,
            });
            KeyPlan::Rowid
        } else {
            KeyPlan::Columns(
                key_columns
                    .iter()
                    .map(|k| columns.iter().position(|c| &c.name == k).expect("key columns come from the table"))
                    .collect(),
            )
        };
        TablePlan { name: table.name.clone(), columns, key, rowid_name: table.rowid_name() }
    }

    /// Indexes of the key columns in `columns`, in key order.
    pub fn key_indexes(&self) -> Vec<usize> {
        match &self.key {
            KeyPlan::Columns(indexes) => indexes.clone(),
            KeyPlan::Rowid => vec![self.columns.len() - 1],
        }
    }

    /// Whether `row` (in plan column order) holds NULL in a key column, as SQLite allows in rowid tables and no
    /// PostgreSQL key does. Checked per row, so it reads the key's indexes in place.
    pub fn key_holds_null(&self, row: &[SqlValue]) -> bool {
        match &self.key {
            KeyPlan::Columns(indexes) => indexes.iter().any(|i| row[*i] == SqlValue::Null),
            KeyPlan::Rowid => row[self.columns.len() - 1] == SqlValue::Null,
        }
    }

    /// The key columns, in key order.
    pub fn key_columns(&self) -> impl ExactSizeIterator<Item = &ColumnPlan> + '_ {
        self.key_indexes().into_iter().map(move |i| &self.columns[i])
    }

    /// The key values of a full row, in key order.
    pub fn key_of(&self, row: &[SqlValue]) -> Vec<SqlValue> {
        self.key_indexes().into_iter().map(|i| row[i].clone()).collect()
    }

    /// The SQLite expressions that read a full row, in PostgreSQL column order, for a table aliased `alias`.
    pub fn select_list(&self, alias: &str) -> String {
        self.columns
            .iter()
            .map(|c| match (&self.key, c.name.as_str()) {
                (KeyPlan::Rowid, ROWID_COLUMN) => format!("{alias}.{}", self.rowid_name.expect("rowid tables have a rowid")),
                _ => format!("{alias}.{}", quote(&c.name)),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The SQLite expressions for the key, in key order, for a table aliased `alias`.
    pub fn key_select_list(&self, alias: &str) -> Vec<String> {
        match &self.key {
            KeyPlan::Rowid => vec![format!("{alias}.{}", self.rowid_name.expect("rowid tables have a rowid"))],
            KeyPlan::Columns(indexes) => indexes.iter().map(|i| format!("{alias}.{}", quote(&self.columns[*i].name))).collect(),
        }
    }

    /// The quoted PostgreSQL column list, for COPY and INSERT.
    pub fn pg_column_list(&self) -> String {
        self.columns.iter().map(|c| quote(&c.pg_name)).collect::<Vec<_>>().join(", ")
    }

    /// The PostgreSQL columns of the PostgreSQL primary key: the key, as `layout` scopes it.
    pub fn pg_key(&self, layout: Layout) -> Vec<String> {
        let key: Vec<String> = self.key_columns().map(|c| c.pg_name.clone()).collect();
        layout.scoped(&key)
    }
}

/// `(parent table, parent columns)` for every foreign key, with the parent's primary key filled in.
pub fn referenced_columns(tables: &[&Table]) -> Vec<(String, Vec<String>)> {
    tables
        .iter()
        .flat_map(|t| &t.foreign_keys)
        .filter_map(|fk| {
            let parent = tables.iter().find(|t| t.name == fk.parent_table)?;
            let columns = if fk.parent_columns.is_empty() { parent.primary_key.clone() } else { fk.parent_columns.clone() };
            Some((parent.name.clone(), columns))
        })
        .collect()
}

/// Columns that foreign keys join, directly or through other keys, as groups of `(table, column)` indexes into
/// `tables`, each with at least two members. A key without parent columns points at the parent's primary key;
/// keys to tables not in `tables`, or naming columns they lack, join nothing.
pub fn foreign_key_groups(tables: &[&Table]) -> Vec<Vec<(usize, usize)>> {
    let members: Vec<(usize, usize)> =
        tables.iter().enumerate().flat_map(|(t, table)| (0..table.columns.len()).map(move |c| (t, c))).collect();
    let offsets: Vec<usize> = tables.iter().scan(0, |next, t| Some(std::mem::replace(next, *next + t.columns.len()))).collect();
    let id = |t: usize, c: usize| offsets[t] + c;
    let position = |table: &Table, name: &str| table.columns.iter().position(|c| c.name.eq_ignore_ascii_case(name));
    let mut leader: Vec<usize> = (0..members.len()).collect();
    fn root(leader: &mut [usize], mut i: usize) -> usize {
        while leader[i] != i {
            leader[i] = leader[leader[i]];
            i = leader[i];
        }
        i
    }
    for (t, table) in tables.iter().enumerate() {
        for key in &table.foreign_keys {
            let Some(p) = tables.iter().position(|parent| parent.name.eq_ignore_ascii_case(&key.parent_table)) else { continue };
            let parent_columns = if key.parent_columns.is_empty() { &tables[p].primary_key } else { &key.parent_columns };
            if parent_columns.len() != key.columns.len() {
                continue;
            }
            for (child, parent) in key.columns.iter().zip(parent_columns) {
                if let (Some(c), Some(pc)) = (position(table, child), position(tables[p], parent)) {
                    let (a, b) = (root(&mut leader, id(t, c)), root(&mut leader, id(p, pc)));
                    leader[a] = b;
                }
            }
        }
    }
    let mut groups: Vec<Vec<(usize, usize)>> = Vec::new();
    let mut group_of_root: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
    for (i, member) in members.iter().enumerate() {
        let r = root(&mut leader, i);
        let g = *group_of_root.entry(r).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(*member);
    }
    groups.retain(|g| g.len() > 1);
    groups
}

/// The group of columns `column` of `tables[table]` is joined with by foreign keys (itself alone when none).
pub fn foreign_key_group(tables: &[&Table], table: usize, column: usize) -> Vec<(usize, usize)> {
    foreign_key_groups(tables).into_iter().find(|g| g.contains(&(table, column))).unwrap_or_else(|| vec![(table, column)])
}

/// The PostgreSQL name of a SQLite column (never lite2pg's own rowid column name, which a user column gives up).
pub fn pg_column_name(name: &str) -> String {
    crate::ident::pg_column_name(name, ROWID_COLUMN)
}

/// `pg_column_name` of each of `columns`.
pub fn pg_column_names(columns: &[String]) -> Vec<String> {
    columns.iter().map(|c| pg_column_name(c)).collect()
}

/// `columns` quoted, comma-separated.
pub fn column_list(columns: &[String]) -> String {
    columns.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_keys_group_the_columns_they_join() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE p(a TEXT, b INT, c INT UNIQUE, PRIMARY KEY (a, b));
             CREATE TABLE q(x, y, z REFERENCES p(c), FOREIGN KEY (x, y) REFERENCES P);
             CREATE TABLE r(w REFERENCES q(z), v REFERENCES missing(k), u REFERENCES p(nope));",
        )
        .unwrap();
        let schema = crate::sqlite::introspect::read_schema(&conn).unwrap();
        let tables: Vec<&Table> = schema.tables.iter().collect();
        let name = |(t, c): (usize, usize)| format!("{}.{}", tables[t].name, tables[t].columns[c].name);
        let mut groups: Vec<Vec<String>> =
            foreign_key_groups(&tables).into_iter().map(|g| g.into_iter().map(name).collect()).collect();
        groups.sort();
        assert_eq!(groups, [vec!["p.a", "q.x"], vec!["p.b", "q.y"], vec!["p.c", "q.z", "r.w"]]);
        let alone = foreign_key_group(&tables, 2, 1);
        assert_eq!(alone.into_iter().map(name).collect::<Vec<_>>(), ["r.v"]);
    }
}
