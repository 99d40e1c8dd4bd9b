//! Quoting of SQL identifiers, the one way names from a SQLite file reach SQL text.

use crate::error::{Error, ErrorKind, Result};

/// PostgreSQL truncates longer identifiers, which would silently merge different names.
pub const PG_MAX_IDENTIFIER_BYTES: usize = 63;

/// Quotes an identifier for SQLite or PostgreSQL: wrapped in double quotes, inner quotes doubled.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes `schema.name`.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", quote(schema), quote(name))
}

/// Checks that PostgreSQL can hold a name as it is, and says how to fix it if not.
pub fn check_pg_identifier(what: &str, name: &str) -> Result<()> {
    if name.contains('\0') {
        return Err(Error::new(ErrorKind::Schema, format!("{what} {name:?} contains a NUL character"))
            .with_hint("rename it in SQLite or leave it out with --exclude"));
    }
    if name.len() > PG_MAX_IDENTIFIER_BYTES {
        return Err(Error::new(
            ErrorKind::Schema,
            format!("{what} {name:?} is {} bytes long; PostgreSQL names hold at most {PG_MAX_IDENTIFIER_BYTES}", name.len()),
        )
        .with_hint("rename it in SQLite or leave the table out with --exclude"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_every_name() {
        assert_eq!(quote("order items"), "\"order items\"");
        assert_eq!(quote("We\"ird"), "\"We\"\"ird\"");
        assert_eq!(qualified("public", "select"), "\"public\".\"select\"");
    }

    proptest::proptest! {
        #[test]
        fn quoting_cannot_be_escaped(name in "\\PC*") {
            let quoted = quote(&name);
            let inner = &quoted[1..quoted.len() - 1];
            proptest::prop_assert_eq!(inner.replace("\"\"", "\""), name);
            proptest::prop_assert!(!inner.replace("\"\"", "").contains('"'));
        }
    }

    #[test]
    fn refuses_names_postgres_would_change() {
        assert!(check_pg_identifier("table", &"x".repeat(63)).is_ok());
        assert!(check_pg_identifier("table", &"x".repeat(64)).is_err());
        assert!(check_pg_identifier("table", "a\0b").is_err());
    }
}
