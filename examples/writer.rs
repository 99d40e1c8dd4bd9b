//! A stand-in application: writes random inserts, updates and deletes to a SQLite file in small transactions,
//! some of them rolled back. Used by the tests as a separate writer process.
//!
//!     cargo run --example writer -- app.db SEED TRANSACTIONS

use std::time::Duration;

use rusqlite::{params, Connection};

/// The tables this writer writes (created when missing).
const SCHEMA: &str = include_str!("writer_schema.sql");

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, path, seed, count] = args.as_slice() else {
        eprintln!("usage: writer DB SEED TRANSACTIONS");
        std::process::exit(2);
    };
    let mut rng = Rng(seed.parse::<u64>().expect("seed is a number") | 1);
    let conn = Connection::open(path).expect("open");
    conn.busy_timeout(Duration::from_secs(30)).expect("busy timeout");
    conn.execute_batch(SCHEMA).expect("schema");
    for _ in 0..count.parse::<u64>().expect("count is a number") {
        let tx = conn.unchecked_transaction().expect("begin");
        for _ in 0..1 + rng.below(5) {
            write_one(&tx, &mut rng).expect("write");
        }
        if rng.below(10) == 0 {
            tx.rollback().expect("rollback");
        } else {
            tx.commit().expect("commit");
        }
    }
}

fn write_one(conn: &Connection, rng: &mut Rng) -> rusqlite::Result<()> {
    let id = rng.below(200) as i64;
    match rng.below(8) {
        0 | 1 => conn
            .execute(
                "INSERT OR REPLACE INTO accounts(id, email, balance, photo) VALUES (?1, ?2, ?3, ?4)",
                params![
                    id,
                    format!("user{}@example.com", rng.below(150)),
                    rng.real(),
                    vec![rng.below(256) as u8; rng.below(4) as usize]
                ],
            )
            .map(drop),
        2 => conn.execute("UPDATE accounts SET balance = balance + ?2 WHERE id = ?1", params![id, rng.real()]).map(drop),
        3 => conn.execute("DELETE FROM accounts WHERE id = ?1", params![id]).map(drop),
        4 => conn
            .execute(
                "INSERT INTO entries VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO UPDATE SET amount = excluded.amount",
                params![id, rng.below(5) as i64, rng.real(), "memo ✓"],
            )
            .map(drop),
        5 => conn.execute("DELETE FROM entries WHERE account_id = ?1", params![id]).map(drop),
        6 => conn.execute("INSERT INTO events(kind, payload) VALUES ('tick', ?1)", params![rng.real()]).map(drop),
        _ => conn.execute("DELETE FROM events WHERE rowid IN (SELECT rowid FROM events ORDER BY random() LIMIT 1)", []).map(drop),
    }
}

/// xorshift64: enough randomness for a workload, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn real(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 * 1000.0 - 500.0
    }
}
