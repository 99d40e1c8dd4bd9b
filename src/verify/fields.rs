//! The bucket encoding verify compares by: a row is its fields in PostgreSQL's binary COPY form (length, then the
//! type's send form), the hash of its key fields picks a bucket and the hash of its row fields is summed per
//! bucket. Both sides hash in Rust, so both must produce the same bytes: SQLite values through the COPY encoder,
//! PostgreSQL rows as its binary COPY sends them, split here into key and row fields.

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::error::{Error, ErrorKind, Result};
use crate::mapping::table::TablePlan;
use crate::mapping::types::{decode_binary, PgType, SqlValue};
use crate::pg::copy::write_field;

/// Rows per hash bucket aimed at, so a difference costs re-reading about this many rows.
const ROWS_PER_BUCKET: u64 = 64;
const MAX_BUCKETS: u64 = 1 << 16;
/// Keeps the bucket choice independent of the row hash, which also covers the key fields.
const BUCKET_SEED: u64 = 0x6c69_7465_3270_6721;
/// What every binary COPY stream starts with.
const COPY_SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
/// A length PostgreSQL never sends, so a value written after it never matches.
const MISFIT_LENGTH: i32 = -2;

/// How many buckets a table of `rows` rows is hashed into.
pub(super) fn bucket_count(rows: u64) -> u64 {
    (rows / ROWS_PER_BUCKET).clamp(1, MAX_BUCKETS)
}

/// The bucket of a row with these key fields.
pub(super) fn bucket_of(key: &[u8], buckets: u64) -> u32 {
    (xxh3_64_with_seed(key, BUCKET_SEED) % buckets) as u32
}

/// A bucket's row count and the wrapping sum of its rows' hashes (order-free, so the sides may scan in any order).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct BucketSum {
    rows: u64,
    hash_sum: u64,
}

impl BucketSum {
    pub(super) fn add(&mut self, row: &[u8]) {
        self.rows += 1;
        self.hash_sum = self.hash_sum.wrapping_add(xxh3_64(row));
    }

    pub(super) fn rows(sums: &[BucketSum]) -> u64 {
        sums.iter().map(|b| b.rows).sum()
    }
}

/// Appends a value as a binary COPY field (length, then PostgreSQL's binary form). The encoder accepts a value only
/// as itself or in a documented mixed form (a number in a text column), so kinds are compared, not only bytes:
/// integer 1, text '1' and blob x'31' differ. A value its column cannot hold so is written after a length
/// PostgreSQL never sends: it never matches, so its row shows up as a difference (or a known reject).
pub(super) fn push_field(value: &SqlValue, pg_type: PgType, out: &mut Vec<u8>) {
    if write_field(value, pg_type, out).is_err() {
        out.extend_from_slice(&MISFIT_LENGTH.to_be_bytes());
        out.extend_from_slice(value.storage_class().as_bytes());
        out.extend_from_slice(&value.raw_bytes());
    }
}

/// The key fields of a key's values.
pub(super) fn key_fields(plan: &TablePlan, key: &[SqlValue]) -> Vec<u8> {
    let mut out = Vec::new();
    for (value, column) in key.iter().zip(plan.key_columns()) {
        push_field(value, column.pg_type, &mut out);
    }
    out
}

/// The key values of key fields read from PostgreSQL.
pub(super) fn decode_key(plan: &TablePlan, mut fields: &[u8]) -> Result<Vec<SqlValue>> {
    let damaged = || Error::new(ErrorKind::PgQuery, format!("unreadable key fields from table {:?}", plan.name));
    let mut key = Vec::new();
    for column in plan.key_columns() {
        let (length, rest) = fields.split_first_chunk::<4>().ok_or_else(damaged)?;
        let length = i32::from_be_bytes(*length);
        fields = rest;
        if length < 0 {
            key.push(SqlValue::Null);
            continue;
        }
        let (bytes, rest) = fields.split_at_checked(length as usize).ok_or_else(damaged)?;
        key.push(decode_binary(bytes, column.pg_type).ok_or_else(damaged)?);
        fields = rest;
    }
    Ok(key)
}

/// Splits a binary COPY stream of a plan's columns, chunk by chunk, into each row's key fields and row fields.
pub(super) struct CopyRecords {
    table: String,
    key_indexes: Vec<usize>,
    columns: usize,
    header_read: bool,
    ended: bool,
    /// The start of a record cut by a chunk's end.
    carry: Vec<u8>,
    key: Vec<u8>,
    /// Where each field of the current record starts and ends.
    fields: Vec<(usize, usize)>,
}

impl CopyRecords {
    pub(super) fn new(plan: &TablePlan) -> CopyRecords {
        CopyRecords {
            table: plan.name.clone(),
            key_indexes: plan.key_indexes(),
            columns: plan.columns.len(),
            header_read: false,
            ended: false,
            carry: Vec::new(),
            key: Vec::new(),
            fields: Vec::with_capacity(plan.columns.len()),
        }
    }

    /// Calls `each(key fields, row fields)` for every record the chunk completes.
    pub(super) fn feed(&mut self, chunk: &[u8], each: &mut impl FnMut(&[u8], &[u8])) -> Result<()> {
        if self.carry.is_empty() {
            let used = self.parse(chunk, each)?;
            self.carry.extend_from_slice(&chunk[used..]);
        } else {
            let mut data = std::mem::take(&mut self.carry);
            data.extend_from_slice(chunk);
            let used = self.parse(&data, each)?;
            data.drain(..used);
            self.carry = data;
        }
        Ok(())
    }

    /// Fails unless the stream ended where binary COPY ends.
    pub(super) fn finish(&self) -> Result<()> {
        match self.ended && self.carry.is_empty() {
            true => Ok(()),
            false => Err(self.damaged()),
        }
    }

    fn damaged(&self) -> Error {
        Error::new(ErrorKind::PgQuery, format!("unreadable binary COPY data from table {:?}", self.table))
    }

    /// Reads the complete records of `data`; returns how many bytes they took.
    fn parse(&mut self, data: &[u8], each: &mut impl FnMut(&[u8], &[u8])) -> Result<usize> {
        let mut at = 0;
        if !self.header_read {
            let Some(length) = self.header_length(data)? else { return Ok(0) };
            (at, self.header_read) = (length, true);
        }
        while let Some(count) = data.get(at..at + 2) {
            if self.ended {
                return Err(self.damaged());
            }
            let count = i16::from_be_bytes([count[0], count[1]]);
            if count == -1 {
                (at, self.ended) = (at + 2, true);
                continue;
            }
            if count as usize != self.columns {
                return Err(self.damaged());
            }
            let Some(end) = self.find_fields(data, at + 2) else { break };
            self.key.clear();
            for index in &self.key_indexes {
                let (start, end) = self.fields[*index];
                self.key.extend_from_slice(&data[start..end]);
            }
            each(&self.key, &data[at + 2..end]);
            at = end;
        }
        Ok(at)
    }

    /// The length of the header at the start of `data`, if all of it is there.
    fn header_length(&self, data: &[u8]) -> Result<Option<usize>> {
        let fixed = COPY_SIGNATURE.len() + 8;
        let Some(header) = data.get(..fixed) else { return Ok(None) };
        if !header.starts_with(COPY_SIGNATURE) {
            return Err(self.damaged());
        }
        let extension = u32::from_be_bytes(header[fixed - 4..].try_into().expect("four bytes")) as usize;
        Ok((data.len() >= fixed + extension).then_some(fixed + extension))
    }

    /// Records where the fields of the record starting at `at` lie; returns its end, if all of it is there.
    fn find_fields(&mut self, data: &[u8], mut at: usize) -> Option<usize> {
        self.fields.clear();
        for _ in 0..self.columns {
            let length = i32::from_be_bytes(data.get(at..at + 4)?.try_into().expect("four bytes"));
            let end = at + 4 + length.max(0) as usize;
            if end > data.len() {
                return None;
            }
            self.fields.push((at, end));
            at = end;
        }
        Some(at)
    }
}

#[cfg(test)]
mod tests;
