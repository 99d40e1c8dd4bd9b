//! PostgreSQL's binary COPY format, written by hand so that rows are encoded on the SQLite reading thread and
//! the network side only forwards finished buffers.

use crate::mapping::table::TablePlan;
use crate::mapping::types::{encode_binary, Misfit, SqlValue};

/// COPY data is handed to the network in buffers of about this size.
pub const CHUNK_BYTES: usize = 1 << 20;

const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
const TRAILER: &[u8] = &(-1i16).to_be_bytes();

/// Why a row whose key holds NULL is rejected.
pub const NULL_IN_KEY: &str = "the primary key holds NULL here, which SQLite allows in a rowid table and no PostgreSQL \
     key can hold; give the row a key in SQLite";

/// A buffer of binary COPY rows; `take` hands out what was written so far.
#[derive(Debug)]
pub struct CopyEncoder {
    buf: Vec<u8>,
    rows: u64,
}

impl Default for CopyEncoder {
    fn default() -> Self {
        CopyEncoder { buf: HEADER.to_vec(), rows: 0 }
    }
}

impl CopyEncoder {
    /// Appends one row; on a value that does not fit, the row is left out and the offending column returned.
    pub fn push_row<'v>(
        &mut self,
        values: impl ExactSizeIterator<Item = (&'v SqlValue, crate::mapping::types::PgType)>,
    ) -> Result<(), (usize, Misfit)> {
        let row_start = self.buf.len();
        self.buf.extend_from_slice(&(values.len() as i16).to_be_bytes());
        for (column, (value, pg_type)) in values.enumerate() {
            if let Err(misfit) = self.push_value(value, pg_type) {
                self.buf.truncate(row_start);
                return Err((column, misfit));
            }
        }
        self.rows += 1;
        Ok(())
    }

    fn push_value(&mut self, value: &SqlValue, pg_type: crate::mapping::types::PgType) -> Result<(), Misfit> {
        write_field(value, pg_type, &mut self.buf)
    }

    /// Appends a row of a table's columns.
    pub fn push_table_row(&mut self, plan: &TablePlan, values: &[SqlValue]) -> Result<(), (usize, Misfit)> {
        self.push_row(values.iter().zip(plan.columns.iter().map(|c| c.pg_type)))
    }

    /// Whether PostgreSQL can hold `values`, a row of `plan`'s table, as it is now: every value fits its column and
    /// the key holds no NULL.
    pub fn fits(plan: &TablePlan, values: &[SqlValue]) -> bool {
        !plan.key_holds_null(values) && CopyEncoder::default().push_table_row(plan, values).is_ok()
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Rows pushed since the encoder was made.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Hands out the bytes written so far (the header comes with the first ones).
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// Hands out the remaining bytes with the trailer that ends the COPY.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(TRAILER);
        self.buf
    }
}

/// Appends one binary COPY field: the length (-1 for NULL), then the value in PostgreSQL's binary form. On a
/// value that does not fit, `out` is left as it was.
pub fn write_field(value: &SqlValue, pg_type: crate::mapping::types::PgType, out: &mut Vec<u8>) -> Result<(), Misfit> {
    if *value == SqlValue::Null {
        out.extend_from_slice(&(-1i32).to_be_bytes());
        return Ok(());
    }
    let length_at = out.len();
    out.extend_from_slice(&[0; 4]);
    if let Err(misfit) = encode_binary(value, pg_type, out) {
        out.truncate(length_at);
        return Err(misfit);
    }
    let length = (out.len() - length_at - 4) as i32;
    out[length_at..length_at + 4].copy_from_slice(&length.to_be_bytes());
    Ok(())
}

/// One field of a binary COPY row: its bytes, or `None` for NULL. Decoding is for the tests' round trips.
#[cfg(test)]
pub type Field = Option<Vec<u8>>;

/// Splits binary COPY output into rows of fields.
#[cfg(test)]
pub fn decode_rows(data: &[u8]) -> Result<Vec<Vec<Field>>, String> {
    let body = data.strip_prefix(HEADER).ok_or("binary COPY data does not start with the PGCOPY header")?;
    let mut rest = body;
    let mut take = |n: usize| -> Result<&[u8], String> {
        if rest.len() < n {
            return Err("binary COPY data ends in the middle of a row".to_string());
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let mut rows = Vec::new();
    loop {
        let count = i16::from_be_bytes(take(2)?.try_into().expect("two bytes"));
        if count == -1 {
            return Ok(rows);
        }
        let mut row = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let length = i32::from_be_bytes(take(4)?.try_into().expect("four bytes"));
            row.push(if length < 0 { None } else { Some(take(length as usize)?.to_vec()) });
        }
        rows.push(row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::types::PgType;

    #[test]
    fn rows_round_trip_through_the_binary_format() {
        let mut encoder = CopyEncoder::default();
        let values = [SqlValue::Integer(7), SqlValue::Null, SqlValue::Text(b"x".to_vec())];
        let types = [PgType::BigInt, PgType::Text, PgType::Text];
        encoder.push_row(values.iter().zip(types)).unwrap();
        let bad = [SqlValue::Text(b"a\0".to_vec())];
        assert_eq!(encoder.push_row(bad.iter().zip([PgType::Text])).unwrap_err().0, 0);
        let rows = decode_rows(&encoder.finish()).unwrap();
        assert_eq!(rows, [vec![Some(7i64.to_be_bytes().to_vec()), None, Some(b"x".to_vec())]]);
    }
}
