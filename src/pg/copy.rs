//! PostgreSQL's binary COPY format, written by hand so that rows are encoded on the SQLite reading thread and
//! the network side only forwards finished buffers.

use crate::schema::TablePlan;
use crate::types::{encode_binary, Misfit, SqlValue};

const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
const TRAILER: &[u8] = &(-1i16).to_be_bytes();

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
        values: impl ExactSizeIterator<Item = (&'v SqlValue, crate::types::PgType)>,
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

    fn push_value(&mut self, value: &SqlValue, pg_type: crate::types::PgType) -> Result<(), Misfit> {
        if *value == SqlValue::Null {
            self.buf.extend_from_slice(&(-1i32).to_be_bytes());
            return Ok(());
        }
        let length_at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        encode_binary(value, pg_type, &mut self.buf)?;
        let length = (self.buf.len() - length_at - 4) as i32;
        self.buf[length_at..length_at + 4].copy_from_slice(&length.to_be_bytes());
        Ok(())
    }

    /// Appends a row of a table's columns.
    pub fn push_table_row(&mut self, plan: &TablePlan, values: &[SqlValue]) -> Result<(), (usize, Misfit)> {
        self.push_row(values.iter().zip(plan.columns.iter().map(|c| c.pg_type)))
    }

    /// Appends a row holding only a table's key values.
    pub fn push_key_row(&mut self, plan: &TablePlan, key: &[SqlValue]) -> Result<(), (usize, Misfit)> {
        self.push_row(key.iter().zip(plan.key_columns().map(|c| c.pg_type)))
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether no byte is waiting.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
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
