//! Constraints as the application relied on them in SQLite, remade by `cutover`. While streaming, lite2pg's
//! UNIQUE constraints are deferred to commit and its foreign keys carry no actions (SQLite's cascades arrive as
//! logged changes of their own); an application writing PostgreSQL itself needs what SQLite did: a duplicate
//! refused by the statement that writes it (so a savepoint catches it, and `ON CONFLICT` can use the constraint),
//! and `ON DELETE` / `ON UPDATE` actions carried out by the database.

use tokio_postgres::Client;

use crate::error::Result;
use crate::ident::{qualified, quote};
use crate::mapping::table::pg_column_names;
use crate::sqlite::introspect::{ForeignKey, Table};

/// Statements that make the schema's deferred UNIQUE constraints immediate, as SQLite's are. PostgreSQL cannot
/// alter a unique constraint's timing: it is dropped and made again, and the foreign keys that lean on its index
/// are dropped before and made again after, as they were.
pub async fn immediate_unique(client: &Client, schema: &str) -> Result<Vec<String>> {
    let rows = client
        .query(
            "SELECT u.conrelid::regclass::text, u.conname::text,
                    array(SELECT quote_ident(a.attname) FROM unnest(u.conkey) WITH ORDINALITY AS k(attnum, ord)
                          JOIN pg_attribute a ON a.attrelid = u.conrelid AND a.attnum = k.attnum ORDER BY k.ord),
                    array(SELECT format('ALTER TABLE %s DROP CONSTRAINT %I', f.conrelid::regclass, f.conname)
                          FROM pg_constraint f WHERE f.contype = 'f' AND f.conindid = u.conindid ORDER BY f.oid),
                    array(SELECT format('ALTER TABLE %s ADD CONSTRAINT %I %s', f.conrelid::regclass, f.conname,
                                        pg_get_constraintdef(f.oid))
                          FROM pg_constraint f WHERE f.contype = 'f' AND f.conindid = u.conindid ORDER BY f.oid)
             FROM pg_constraint u JOIN pg_namespace n ON n.oid = u.connamespace
             WHERE n.nspname = $1 AND u.contype = 'u' AND u.condeferrable ORDER BY u.oid",
            &[&schema],
        )
        .await?;
    let mut drop_keys = Vec::new();
    let mut remake_unique = Vec::new();
    let mut remake_keys = Vec::new();
    for row in rows {
        let (relation, name, columns): (String, String, Vec<String>) = (row.get(0), row.get(1), row.get(2));
        drop_keys.extend(row.get::<_, Vec<String>>(3));
        remake_unique.push(format!(
            "ALTER TABLE {relation} DROP CONSTRAINT {0}, ADD CONSTRAINT {0} UNIQUE ({1})",
            quote(&name),
            columns.join(", ")
        ));
        remake_keys.extend(row.get::<_, Vec<String>>(4));
    }
    Ok(drop_keys.into_iter().chain(remake_unique).chain(remake_keys).collect())
}

/// Statements that give `table`'s foreign keys in `schema` the actions SQLite declares for them, each made
/// again NOT VALID and then validated (a refusal leaves it NOT VALID, listed by cutover).
pub async fn foreign_key_actions(client: &Client, schema: &str, table: &Table) -> Result<Vec<String>> {
    let mut statements = Vec::new();
    for key in table.foreign_keys.iter().filter(|key| has_actions(key)) {
        let child = qualified(schema, &table.name);
        let row = client
            .query_opt(
                "SELECT c.conname::text, c.confrelid::regclass::text,
                        array(SELECT quote_ident(a.attname) FROM unnest(c.confkey) WITH ORDINALITY AS k(attnum, ord)
                              JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum ORDER BY k.ord)
                 FROM pg_constraint c
                 WHERE c.conrelid = to_regclass($1) AND c.contype = 'f' AND c.confrelid = to_regclass($2)
                   AND array(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
                             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum ORDER BY k.ord) = $3",
                &[&child, &qualified(schema, &key.parent_table), &pg_column_names(&key.columns)],
            )
            .await?;
        // A key PostgreSQL lacks is listed by cutover as a missing constraint.
        let Some(row) = row else { continue };
        let (name, parent, parent_columns): (String, String, Vec<String>) = (row.get(0), row.get(1), row.get(2));
        let columns = pg_column_names(&key.columns).iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ");
        statements.push(format!(
            "ALTER TABLE {child} DROP CONSTRAINT {0}, ADD CONSTRAINT {0} FOREIGN KEY ({columns}) REFERENCES {parent} ({1}) \
             ON DELETE {2} ON UPDATE {3} DEFERRABLE INITIALLY DEFERRED NOT VALID",
            quote(&name),
            parent_columns.join(", "),
            action(&key.on_delete),
            action(&key.on_update),
        ));
        statements.push(format!("ALTER TABLE {child} VALIDATE CONSTRAINT {}", quote(&name)));
    }
    Ok(statements)
}

fn has_actions(key: &ForeignKey) -> bool {
    action(&key.on_delete) != "NO ACTION" || action(&key.on_update) != "NO ACTION"
}

/// SQLite's action as PostgreSQL SQL; only the five both know are ever written.
fn action(sqlite: &str) -> &'static str {
    match sqlite.to_ascii_uppercase().as_str() {
        "CASCADE" => "CASCADE",
        "SET NULL" => "SET NULL",
        "SET DEFAULT" => "SET DEFAULT",
        "RESTRICT" => "RESTRICT",
        _ => "NO ACTION",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_actions_are_written() {
        assert_eq!(action("cascade"), "CASCADE");
        assert_eq!(action("SET NULL"), "SET NULL");
        assert_eq!(action("NO ACTION"), "NO ACTION");
        assert_eq!(action("DROP TABLE x; --"), "NO ACTION");
    }
}
