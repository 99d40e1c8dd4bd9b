//! Quoting of SQL identifiers, the one way names from a SQLite file reach SQL text, and the names PostgreSQL
//! gets for SQLite names it cannot hold as they are.

use crate::error::{Error, ErrorKind, Result};

/// PostgreSQL truncates longer identifiers, which would silently merge different names.
pub const PG_MAX_IDENTIFIER_BYTES: usize = 63;

/// Quotes an identifier for SQLite or PostgreSQL: wrapped in double quotes, inner quotes doubled.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes `schema.name`, the table name as PostgreSQL holds it (`pg_name`: every PostgreSQL table lite2pg
/// names passes here, and the mapping leaves names PostgreSQL can hold alone, so it can be applied again).
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", quote(schema), quote(&pg_name(name)))
}

/// Bytes of a shortened name kept from the SQLite name; `_` and 8 hex digits of its hash follow.
const KEPT_BYTES: usize = PG_MAX_IDENTIFIER_BYTES - 9;

/// The PostgreSQL name of a SQLite table or column name: the name itself when PostgreSQL can hold it (at most 63
/// bytes), else its first bytes (whole characters) and `_` + 8 hex digits of a hash of the whole name, so that
/// names alike at the start stay apart and every run finds the same name.
pub fn pg_name(name: &str) -> String {
    if name.len() <= PG_MAX_IDENTIFIER_BYTES {
        return name.to_string();
    }
    shortened(name)
}

/// The columns every PostgreSQL table has: no other column may take their names.
const SYSTEM_COLUMNS: [&str; 6] = ["tableoid", "xmin", "cmin", "xmax", "cmax", "ctid"];

/// The PostgreSQL name of a SQLite column: `pg_name`, and shortened too when PostgreSQL refuses the name for a
/// column (a system column's, such as a bounding box's `xmin`, or the empty name) or it is `reserved` (lite2pg's own
/// rowid column name), so that a user's column never meets lite2pg's.
pub fn pg_column_name(name: &str, reserved: &str) -> String {
    match name.eq_ignore_ascii_case(reserved) || SYSTEM_COLUMNS.contains(&name) || name.is_empty() {
        true => shortened(name),
        false => pg_name(name),
    }
}

fn shortened(name: &str) -> String {
    let mut end = KEPT_BYTES.min(name.len());
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}_{:08x}", &name[..end], fnv1a(name.as_bytes()) as u32)
}

/// FNV-1a, 64 bits: a hash that never changes between builds or platforms.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
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
    fn names_postgres_cannot_hold_are_shortened_the_same_way_every_time() {
        let fits = "x".repeat(63);
        assert_eq!(pg_name(&fits), fits);
        let long = format!("{}ü{}", "a".repeat(53), "b".repeat(20));
        let short = pg_name(&long);
        assert!(short.len() <= PG_MAX_IDENTIFIER_BYTES, "{short}");
        assert!(short.starts_with(&"a".repeat(53)) && !short.contains('ü'), "cut at a character boundary: {short}");
        assert_eq!(pg_name(&short), short, "applying it again changes nothing");
        assert_ne!(pg_name(&format!("{long}c")), short, "names alike at the start stay apart");
        assert_eq!(pg_column_name("id", "__lite2pg_rowid"), "id");
        let renamed = pg_column_name("__lite2pg_rowid", "__lite2pg_rowid");
        assert!(renamed.starts_with("__lite2pg_rowid_") && renamed.len() == 24, "{renamed}");
        assert_eq!(qualified("s", &long), format!("\"s\".\"{short}\""));
    }

    #[test]
    fn refuses_names_postgres_would_change() {
        assert!(check_pg_identifier("table", &"x".repeat(63)).is_ok());
        assert!(check_pg_identifier("table", &"x".repeat(64)).is_err());
        assert!(check_pg_identifier("table", "a\0b").is_err());
    }
}
