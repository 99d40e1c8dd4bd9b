//! Fuzzes the value path: any SQLite value in any column type must encode without panicking, decode back to itself
//! when it is the column's own kind, decode to a value naming the same PostgreSQL value whenever it encodes, and any
//! name must quote into an identifier that unquotes to the same name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lite2pg::mapping::types::{decode_binary, encode_binary, PgType, SqlValue};

const TYPES: [PgType; 20] = [
    PgType::Boolean,
    PgType::SmallInt,
    PgType::Integer,
    PgType::BigInt,
    PgType::Real,
    PgType::Double,
    PgType::Numeric,
    PgType::NumericScaled { precision: 12, scale: 2 },
    PgType::Text,
    PgType::Varchar(Some(5)),
    PgType::Bytea,
    PgType::TimestampTz,
    PgType::Timestamp,
    PgType::TimestampSeconds,
    PgType::TimestampMillis,
    PgType::Date,
    PgType::Time,
    PgType::Uuid,
    PgType::Jsonb,
    PgType::Json,
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let pg_type = TYPES[usize::from(selector) % TYPES.len()];
    let value = match selector / 16 % 4 {
        0 => SqlValue::Integer(i64::from_le_bytes(rest.get(..8).and_then(|b| b.try_into().ok()).unwrap_or([0; 8]))),
        1 => SqlValue::Real(f64::from_le_bytes(rest.get(..8).and_then(|b| b.try_into().ok()).unwrap_or([0; 8]))),
        2 => SqlValue::Text(rest.to_vec()),
        _ => SqlValue::Blob(rest.to_vec()),
    };
    let mut bytes = Vec::new();
    if encode_binary(&value, pg_type, &mut bytes).is_ok() {
        if lite2pg::mapping::types::is_native(&value, pg_type) {
            assert_eq!(decode_binary(&bytes, pg_type), Some(value.clone()), "{value:?} as {pg_type}");
        }
        let decoded = decode_binary(&bytes, pg_type).expect("what was encoded decodes");
        let mut again = Vec::new();
        assert!(encode_binary(&decoded, pg_type, &mut again).is_ok() && again == bytes, "{value:?} as {pg_type}");
    }
    if let Ok(name) = std::str::from_utf8(rest) {
        let quoted = lite2pg::ident::quote(name);
        let inner = &quoted[1..quoted.len() - 1];
        assert_eq!(inner.replace("\"\"", "\""), name);
        assert!(!inner.replace("\"\"", "").contains('"'), "a quote escaped: {quoted}");
    }
});
