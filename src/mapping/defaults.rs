//! A SQLite column default as PostgreSQL SQL, written by lite2pg from the value, never copied as text.

use super::types::{decode_binary, encode_binary, real_to_plain_decimal, scaled_decimal, PgType, SqlValue};

/// Translates a SQLite column default into PostgreSQL SQL, or `None` when it does not translate faithfully.
/// Literals are re-written, never passed through.
pub fn translate_default(sqlite_sql: &str, pg_type: PgType) -> Option<String> {
    let mut trimmed = sqlite_sql.trim();
    // SQLite keeps expression defaults in parentheses: DEFAULT (datetime('now')).
    while let Some(inner) = trimmed.strip_prefix('(').and_then(|s| s.strip_suffix(')')) {
        trimmed = inner.trim();
    }
    let upper: String = trimmed.to_ascii_uppercase().split_whitespace().collect();
    match upper.as_str() {
        "CURRENT_TIMESTAMP" | "DATETIME('NOW')" => return timestamp_default(pg_type, "YYYY-MM-DD HH24:MI:SS"),
        "CURRENT_DATE" | "DATE('NOW')" => return timestamp_default(pg_type, "YYYY-MM-DD"),
        "CURRENT_TIME" | "TIME('NOW')" => return time_default(pg_type),
        "STRFTIME('%S','NOW')" | "UNIXEPOCH()" | "UNIXEPOCH('NOW')" if pg_type == PgType::BigInt => {
            return Some("extract(epoch from now())::bigint".into())
        }
        "TRUE" => return literal_default(&SqlValue::Integer(1), pg_type),
        "FALSE" => return literal_default(&SqlValue::Integer(0), pg_type),
        _ => {}
    }
    if let Some(inner) = trimmed.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        return literal_default(&SqlValue::Text(inner.replace("''", "'").into_bytes()), pg_type);
    }
    if let Ok(i) = trimmed.parse::<i64>() {
        return literal_default(&SqlValue::Integer(i), pg_type);
    }
    match trimmed.parse::<f64>() {
        Ok(f) if f.is_finite() => literal_default(&SqlValue::Real(f), pg_type),
        _ => None,
    }
}

fn timestamp_default(pg_type: PgType, text_format: &str) -> Option<String> {
    let with_time = text_format.len() > 10;
    match pg_type {
        PgType::Text => Some(format!("to_char(timezone('UTC', now()), '{text_format}')")),
        PgType::TimestampTz if with_time => Some("now()".into()),
        PgType::Timestamp | PgType::TimestampSeconds | PgType::TimestampMillis if with_time => {
            Some("timezone('UTC', now())".into())
        }
        PgType::Date => Some("(timezone('UTC', now()))::date".into()),
        _ => None,
    }
}

/// SQLite's `CURRENT_TIME`: UTC, whole seconds.
fn time_default(pg_type: PgType) -> Option<String> {
    let now = "date_trunc('second', timezone('UTC', now()))";
    match pg_type {
        PgType::Text => Some(format!("to_char({now}, 'HH24:MI:SS')")),
        PgType::Time => Some(format!("{now}::time")),
        _ => None,
    }
}

/// A literal default, only when the value fits the column type; written by lite2pg, not copied from the file.
/// Dates and times are written in their canonical form (an instant with its UTC offset), so PostgreSQL reads
/// the same value whatever the session's time zone.
fn literal_default(value: &SqlValue, pg_type: PgType) -> Option<String> {
    let mut bytes = Vec::new();
    encode_binary(value, pg_type, &mut bytes).ok()?;
    let quoted = |text: &[u8]| format!("'{}'", String::from_utf8_lossy(text).replace('\'', "''"));
    Some(match (value, pg_type) {
        (SqlValue::Integer(i), PgType::Boolean) => (if *i == 1 { "true" } else { "false" }).to_string(),
        (SqlValue::Integer(i), PgType::SmallInt | PgType::Integer | PgType::BigInt | PgType::Numeric) => i.to_string(),
        (SqlValue::Real(f), PgType::Double | PgType::Numeric) => real_to_plain_decimal(*f),
        (_, PgType::NumericScaled { precision, scale }) => scaled_decimal(value, precision, scale).ok()?,
        (SqlValue::Integer(_) | SqlValue::Real(_), PgType::Text | PgType::Varchar(_)) => quoted(&value.raw_bytes()),
        (SqlValue::Text(t), PgType::Text | PgType::Varchar(_) | PgType::Json) => quoted(t),
        (SqlValue::Text(_), PgType::TimestampTz) => quoted(&[canonical(&bytes, pg_type)?, b"+00".to_vec()].concat()),
        (
            SqlValue::Text(_),
            PgType::Timestamp | PgType::TimestampSeconds | PgType::TimestampMillis | PgType::Date | PgType::Time,
        ) => quoted(&canonical(&bytes, pg_type)?),
        _ => return None,
    })
}

/// The canonical text of a value PostgreSQL holds in binary form.
fn canonical(bytes: &[u8], pg_type: PgType) -> Option<Vec<u8>> {
    match decode_binary(bytes, pg_type)? {
        SqlValue::Text(text) => Some(text),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_translate_only_when_faithful() {
        assert_eq!(translate_default("'it''s'", PgType::Text).as_deref(), Some("'it''s'"));
        assert_eq!(translate_default("1", PgType::Boolean).as_deref(), Some("true"));
        assert_eq!(translate_default("-5", PgType::BigInt).as_deref(), Some("-5"));
        assert_eq!(translate_default("2.5", PgType::Double).as_deref(), Some("2.5"));
        assert_eq!(translate_default("'x'", PgType::BigInt), None);
        assert_eq!(translate_default("7", PgType::Bytea), None, "bytea holds blobs only, not 7 as its bytes");
        assert_eq!(translate_default("(datetime('now'))", PgType::Text), translate_default("CURRENT_TIMESTAMP", PgType::Text));
        assert_eq!(translate_default("(date( 'now' ))", PgType::Date).as_deref(), Some("(timezone('UTC', now()))::date"));
        assert_eq!(
            translate_default("(strftime('%s','now'))", PgType::BigInt).as_deref(),
            Some("extract(epoch from now())::bigint")
        );
        assert_eq!(translate_default("(random())", PgType::BigInt), None);
        assert!(translate_default("CURRENT_TIMESTAMP", PgType::Text).unwrap().starts_with("to_char"));
        assert_eq!(translate_default("CURRENT_TIMESTAMP", PgType::TimestampTz).as_deref(), Some("now()"));
        assert_eq!(translate_default("CURRENT_TIMESTAMP", PgType::Timestamp).as_deref(), Some("timezone('UTC', now())"));
        assert_eq!(translate_default("CURRENT_DATE", PgType::TimestampTz), None, "a date is not an instant");
        let instant = translate_default("'2024-01-02T05:04:05+02:00'", PgType::TimestampTz);
        assert_eq!(instant.as_deref(), Some("'2024-01-02 03:04:05+00'"), "the instant, whatever the session's zone");
        assert_eq!(translate_default("'07:08'", PgType::Time).as_deref(), Some("'07:08:00'"));
        assert_eq!(translate_default("'abc'", PgType::Varchar(Some(2))), None);
        assert_eq!(translate_default("'ab'", PgType::Varchar(Some(2))).as_deref(), Some("'ab'"));
        assert_eq!(translate_default("7", PgType::SmallInt).as_deref(), Some("7"));
        let money = PgType::NumericScaled { precision: 12, scale: 2 };
        assert_eq!(translate_default("0", money).as_deref(), Some("0.00"));
        assert_eq!(translate_default("'1.5'", money).as_deref(), Some("1.50"));
        assert_eq!(translate_default("1.005", money), None);
        assert_eq!(
            translate_default("CURRENT_TIME", PgType::Time).as_deref(),
            Some("date_trunc('second', timezone('UTC', now()))::time")
        );
    }
}
