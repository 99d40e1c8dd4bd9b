use super::*;
use crate::sqlite::introspect::{Column, Table};

fn table(columns: &[&str]) -> Table {
    Table {
        name: "t".into(),
        columns: columns
            .iter()
            .map(|name| Column {
                name: name.to_string(),
                declared_type: String::new(),
                not_null: false,
                default_sql: None,
                generated: None,
            })
            .collect(),
        without_rowid: false,
        strict: false,
        primary_key: Vec::new(),
        indexes: Vec::new(),
        foreign_keys: Vec::new(),
    }
}

/// A table keyed by (name text, n bigint), with a double and a bytea.
fn composite() -> TablePlan {
    let types = [PgType::Double, PgType::Text, PgType::BigInt, PgType::Bytea];
    TablePlan::new(&table(&["x", "name", "n", "data"]), &types, &["name".to_string(), "n".to_string()])
}

fn text(s: &str) -> SqlValue {
    SqlValue::Text(s.as_bytes().to_vec())
}

fn row_fields(plan: &TablePlan, values: &[SqlValue]) -> Vec<u8> {
    let mut out = Vec::new();
    for (value, column) in values.iter().zip(&plan.columns) {
        push_field(value, column.pg_type, &mut out);
    }
    out
}

/// A binary COPY stream of rows given as their row fields.
fn copy_stream(plan: &TablePlan, rows: &[Vec<u8>]) -> Vec<u8> {
    let mut out = COPY_SIGNATURE.to_vec();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&3u32.to_be_bytes());
    out.extend_from_slice(b"ext");
    for row in rows {
        out.extend_from_slice(&(plan.columns.len() as i16).to_be_bytes());
        out.extend_from_slice(row);
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out
}

#[test]
fn key_fields_are_the_binary_copy_fields_in_key_order() {
    let plan = composite();
    let fields = key_fields(&plan, &[text("ab"), SqlValue::Integer(7)]);
    assert_eq!(fields, [&2i32.to_be_bytes()[..], b"ab", &8i32.to_be_bytes(), &7i64.to_be_bytes()].concat());
}

#[test]
fn buckets_and_row_hashes_are_the_same_on_every_machine() {
    // XXH3's published value for empty input: the hash is the specified one, not a per-process or per-CPU one.
    assert_eq!(xxh3_64(b""), 0x2D06_8005_38D3_94C2);
    let plan = composite();
    let key = key_fields(&plan, &[text("ab"), SqlValue::Integer(7)]);
    // Pinned: a changed bucket encoding must be a deliberate change.
    assert_eq!(bucket_of(&key, MAX_BUCKETS), 58873);
    assert_eq!(bucket_of(&key, 1), 0);
}

#[test]
fn bucket_sums_ignore_row_order() {
    let rows: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 9]).collect();
    let (mut forward, mut backward) = (BucketSum::default(), BucketSum::default());
    rows.iter().for_each(|r| forward.add(r));
    rows.iter().rev().for_each(|r| backward.add(r));
    assert_eq!(forward, backward);
    assert_eq!(BucketSum::rows(&[forward, backward]), 10);
    let mut other = BucketSum::default();
    rows[..4].iter().chain([&vec![9u8; 9]]).for_each(|r| other.add(r));
    assert_ne!(forward, other);
}

#[test]
fn bucket_counts_aim_at_64_rows_within_bounds() {
    assert_eq!(bucket_count(0), 1);
    assert_eq!(bucket_count(64 * 100), 100);
    assert_eq!(bucket_count(u64::MAX), MAX_BUCKETS);
}

#[test]
fn key_fields_decode_back_into_the_key_values() {
    let plan = composite();
    for key in [vec![text("é ✓"), SqlValue::Integer(-3)], vec![SqlValue::Null, SqlValue::Integer(i64::MAX)]] {
        assert_eq!(decode_key(&plan, &key_fields(&plan, &key)).unwrap(), key);
    }
    assert!(decode_key(&plan, &[0, 0, 0, 9, 1]).is_err());
}

#[test]
fn rowid_tables_are_keyed_by_the_rowid_column() {
    let plan = TablePlan::new(&table(&["a"]), &[PgType::Text], &[]);
    let key = key_fields(&plan, &[SqlValue::Integer(12)]);
    assert_eq!(decode_key(&plan, &key).unwrap(), [SqlValue::Integer(12)]);
}

#[test]
fn a_value_its_column_cannot_hold_never_matches_a_value_it_can() {
    let mut misfit = Vec::new();
    push_field(&SqlValue::Integer(1), PgType::Bytea, &mut misfit);
    assert_eq!(misfit[..4], MISFIT_LENGTH.to_be_bytes());
    let mut blob = Vec::new();
    push_field(&SqlValue::Blob(1i64.to_be_bytes().to_vec()), PgType::Bytea, &mut blob);
    assert_ne!(misfit, blob);
}

#[test]
fn copy_records_split_into_key_and_row_fields_whatever_the_chunks() {
    let plan = composite();
    let rows = [
        vec![SqlValue::Real(1.5), text("a"), SqlValue::Integer(1), SqlValue::Blob(vec![0, 1])],
        vec![SqlValue::Null, text(""), SqlValue::Integer(2), SqlValue::Null],
    ];
    let fields: Vec<Vec<u8>> = rows.iter().map(|r| row_fields(&plan, r)).collect();
    let expected: Vec<(Vec<u8>, Vec<u8>)> =
        rows.iter().zip(&fields).map(|(r, f)| (key_fields(&plan, &plan.key_of(r)), f.clone())).collect();
    let stream = copy_stream(&plan, &fields);
    for chunk in 1..=stream.len() {
        let mut records = CopyRecords::new(&plan);
        let mut seen = Vec::new();
        for piece in stream.chunks(chunk) {
            records.feed(piece, &mut |key: &[u8], row: &[u8]| seen.push((key.to_vec(), row.to_vec()))).unwrap();
        }
        records.finish().unwrap();
        assert_eq!(seen, expected, "chunks of {chunk} bytes");
    }
}

#[test]
fn damaged_copy_streams_are_errors() {
    let plan = composite();
    let stream = copy_stream(&plan, &[row_fields(&plan, &[SqlValue::Null, text("a"), SqlValue::Integer(1), SqlValue::Null])]);
    let ignore = &mut |_: &[u8], _: &[u8]| {};
    let mut cut = CopyRecords::new(&plan);
    cut.feed(&stream[..stream.len() - 3], ignore).unwrap();
    assert!(cut.finish().is_err());
    assert!(CopyRecords::new(&plan).feed(b"NOTCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0", ignore).is_err());
    let mut trailing = CopyRecords::new(&plan);
    assert!(trailing.feed(&[stream.as_slice(), &[0, 4]].concat(), ignore).is_err());
}
