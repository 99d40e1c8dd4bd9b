//! The file's identity over time: the VACUUM canary, the marker entry a snapshot's position starts at, and the
//! mark of the entry at the applied position that tells a restored, rewound or replaced file from the live one.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::log::newest_seq;
use super::{CANARY_ROWID, CANARY_TABLE, CHANGES_TABLE, MARKER_TABLE_ID, WRITTEN_AT};
use crate::error::{Error, ErrorKind, Result};

/// Creates the canary, armed, unless it exists (a moved canary must stay moved until a batch has seen it).
pub(super) fn ensure_canary(conn: &Connection) -> Result<()> {
    let exists: bool =
        conn.query_row("SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1", [CANARY_TABLE], |r| {
            r.get(0)
        })?;
    if !exists {
        conn.execute_batch(&format!("CREATE TABLE {CANARY_TABLE} (armed INTEGER)"))?;
        arm_canary_in(conn)?;
    }
    Ok(())
}

fn arm_canary_in(conn: &Connection) -> Result<()> {
    conn.execute_batch(&format!(
        "DELETE FROM {CANARY_TABLE}; INSERT INTO {CANARY_TABLE} (rowid, armed) VALUES ({CANARY_ROWID}, 1);"
    ))?;
    Ok(())
}

/// Puts the canary back at its rowid, so the next VACUUM is noticed too. The caller has recorded first what the
/// last one requires (tables to copy again), so nothing is lost between.
pub fn arm_canary(conn: &mut Connection) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    arm_canary_in(&tx)?;
    tx.commit()?;
    Ok(())
}

/// Whether a VACUUM renumbered rowids since the canary was armed (its row moved, or is gone).
pub fn vacuumed(conn: &Connection) -> Result<bool> {
    let armed: bool = conn
        .prepare_cached(&format!("SELECT count(*) = 1 AND max(rowid) = {CANARY_ROWID} FROM {CANARY_TABLE}"))?
        .query_row([], |r| r.get(0))?;
    Ok(!armed)
}

/// Starts a snapshot's position: arms the canary (the copy that follows holds the rowids as they are then) and
/// appends a marker entry of lite2pg's own, so even an empty log has an entry at the position to check the file
/// by. Returns the marker's seq and mark.
pub fn mark_position(conn: &mut Connection) -> Result<(i64, Option<String>)> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    arm_canary_in(&tx)?;
    let seq = append_marker(&tx)?;
    let mark = entry_mark(&tx, seq)?;
    tx.commit()?;
    Ok((seq, mark))
}

/// Appends an entry of lite2pg's own to the log (no table's: batches skip it); returns its seq.
pub(super) fn append_marker(tx: &Connection) -> Result<i64> {
    tx.execute(&format!("INSERT INTO {CHANGES_TABLE} (tbl, {WRITTEN_AT}) VALUES ({MARKER_TABLE_ID}, julianday('now'))"), [])?;
    Ok(tx.last_insert_rowid())
}

/// What tells the log entry at `seq` from any other entry that could take that seq in a restored or replaced
/// file: its table id and write time (a Julian day with milliseconds). `None` when there is no such entry.
pub fn entry_mark(conn: &Connection, seq: i64) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached(&format!("SELECT tbl, {WRITTEN_AT} FROM {CHANGES_TABLE} WHERE seq = ?1"))?
        .query_row([seq], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Option<f64>>(1)?)))
        .optional()?
        .map(|(tbl, written_at)| format!("{tbl}@{}", written_at.map_or_else(|| "?".to_string(), |at| at.to_string()))))
}

/// Checks that the file still holds the entry PostgreSQL's position was applied up to (`applied_mark`, when
/// recorded), and returns the newest seq. A missing or different entry means the file was restored from an older
/// copy, rewound or replaced: the changes applied after that copy exist only in PostgreSQL.
pub fn check_position(conn: &Connection, path: &std::path::Path, applied_seq: i64, applied_mark: Option<&str>) -> Result<i64> {
    let newest = newest_seq(conn)?;
    let restored = |what: String| {
        Error::new(
            ErrorKind::State,
            format!("{what}: the file {} was restored from an older copy, rewound or replaced", path.display()),
        )
        .with_hint("changes applied after that copy exist only in PostgreSQL; to start over from the file as it is now, run `lite2pg snapshot --replace`")
    };
    if newest < applied_seq {
        return Err(restored(format!(
            "the SQLite file's change log ends at seq {newest}, before the applied position {applied_seq}"
        )));
    }
    if let Some(applied_mark) = applied_mark {
        if entry_mark(conn, applied_seq)?.as_deref() != Some(applied_mark) {
            return Err(restored(format!(
                "the SQLite file's change log entry at the applied position {applied_seq} is not the one applied"
            )));
        }
    }
    Ok(newest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::capture::test_support::setup;
    use crate::sqlite::capture::{newest_seq, uninstall, CHANGES_TABLE};

    #[test]
    fn the_canary_moves_when_vacuum_renumbers_rowids() -> Result<()> {
        let (mut conn, _) = setup("CREATE TABLE t(x); INSERT INTO t VALUES (1), (2); DELETE FROM t WHERE x = 1;")?;
        assert!(!vacuumed(&conn)?);
        conn.execute_batch("VACUUM")?;
        assert!(vacuumed(&conn)?);
        assert_eq!(conn.query_row("SELECT rowid FROM t", [], |r| r.get::<_, i64>(0))?, 1, "the table was renumbered too");
        arm_canary(&mut conn)?;
        assert!(!vacuumed(&conn)?);
        assert!(uninstall(&mut conn)?);
        let left: i64 = conn.query_row("SELECT count(*) FROM sqlite_master WHERE name LIKE '%lite2pg%'", [], |r| r.get(0))?;
        assert_eq!(left, 0);
        Ok(())
    }

    #[test]
    fn a_rewritten_log_is_told_from_the_applied_one() -> Result<()> {
        let (mut conn, _) = setup("CREATE TABLE t(id INTEGER PRIMARY KEY);")?;
        let (seq, mark) = mark_position(&mut conn)?;
        let path = std::path::Path::new("app.db");
        assert_eq!(check_position(&conn, path, seq, mark.as_deref())?, seq, "an empty log gets an entry to check");
        conn.execute_batch("INSERT INTO t VALUES (1);")?;
        let applied = newest_seq(&conn)?;
        let applied_mark = entry_mark(&conn, applied)?;
        // A restored copy from before that insert, then more writes than were lost: the seq comes again.
        conn.execute_batch(&format!("DELETE FROM {CHANGES_TABLE} WHERE seq = {applied};"))?;
        assert!(check_position(&conn, path, applied, applied_mark.as_deref()).is_err(), "the log ends before the position");
        std::thread::sleep(std::time::Duration::from_millis(5));
        conn.execute_batch("INSERT INTO t VALUES (2); INSERT INTO t VALUES (3);")?;
        let err = check_position(&conn, path, applied, applied_mark.as_deref()).unwrap_err();
        assert!(err.message().contains("restored from an older copy"), "{err}");
        assert_eq!(err.kind(), ErrorKind::State);
        Ok(())
    }
}
