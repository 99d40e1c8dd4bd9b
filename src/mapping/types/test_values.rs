//! Values and types the type mapping's property tests draw from.

use super::{PgType, SqlValue};

/// Every type lite2pg writes, with parameters.
pub(super) const ALL_TYPES: [PgType; 21] = [
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
    PgType::Varchar(None),
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

pub(super) fn any_value() -> impl proptest::strategy::Strategy<Value = SqlValue> {
    use proptest::prelude::*;
    let text = |pattern: &'static str| pattern.prop_map(|t| SqlValue::Text(t.into_bytes()));
    prop_oneof![
        any::<i64>().prop_map(SqlValue::Integer),
        (-40000i64..40000).prop_map(SqlValue::Integer),
        any::<f64>().prop_map(SqlValue::Real),
        any::<f32>().prop_map(|f| SqlValue::Real(f64::from(f))),
        (-100000i64..100000).prop_map(|cents| SqlValue::Real(cents as f64 / 100.0)),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(SqlValue::Text),
        text("[0-9]{4}-[0-9]{2}-[0-9]{2}( [0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{3})?)?"),
        text("(19|20)[0-9]{2}-0[1-9]-[0-2][0-9]([ T][0-2][0-9]:[0-5][0-9](:[0-5][0-9](\\.[0-9]{1,7})?)?(Z|[+-][01][0-9](:?[0-5][0-9])?)?)?"),
        text("[0-2][0-9]:[0-5][0-9](:[0-5][0-9](\\.[0-9]{1,6})?)?"),
        text("[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"),
        text("-?[0-9]{1,12}(\\.[0-9]{1,3})?"),
        text("[ ]?(\\{\"[a-c]{0,2}\": ?(-?[0-9]{1,3}(\\.[0-9]{1,2})?([eE][+-]?[0-9])?|\"[^\"\\\\]{0,3}\"|true|null|\\[\\]),? ?){0,3}\\}?"),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(SqlValue::Blob),
        proptest::collection::vec(any::<u8>(), 16).prop_map(SqlValue::Blob),
    ]
}

pub(super) fn value_ref(value: &SqlValue) -> rusqlite::types::ValueRef<'_> {
    use rusqlite::types::ValueRef;
    match value {
        SqlValue::Null => ValueRef::Null,
        SqlValue::Integer(i) => ValueRef::Integer(*i),
        SqlValue::Real(f) => ValueRef::Real(*f),
        SqlValue::Text(t) => ValueRef::Text(t),
        SqlValue::Blob(b) => ValueRef::Blob(b),
    }
}

pub(super) fn text(t: &str) -> SqlValue {
    SqlValue::Text(t.as_bytes().to_vec())
}
