//! Many SQLite files into one PostgreSQL from one `lite2pg run --config`: writers on every file at once, a file
//! that appears while running, connections bounded by the pool, metrics per source, and a full comparison per
//! source at the end.

use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use crate::support::daemon::{wait_for, writer};
use crate::support::fleet::Tenants;
use crate::support::http::{free_port, http_get};
use crate::support::wait::{check, wait_all_caught_up, wait_sources, wait_until};
use crate::support::{lite2pg_output, stderr, TestDb};

/// One writer process per file (seeds from `seed` up), each committing `transactions`; waits for all.
fn write_each(files: &[(PathBuf, &str)], seed: u64, transactions: u64) {
    wait_for(files.iter().enumerate().map(|(i, (path, _))| writer(path, seed + i as u64, transactions)).collect());
}

#[tokio::test]
async fn sources_written_at_once_each_end_equal_in_their_own_schema() {
    let db = TestDb::new().await;
    sources_written_at_once_end_equal(&db, Tenants::new(&db, 2)).await;
}

#[tokio::test]
async fn sources_written_at_once_each_end_equal_in_shared_tables() {
    let db = TestDb::new().await;
    sources_written_at_once_end_equal(&db, Tenants::shared(&db, 2)).await;
    let keys = "SELECT string_agg(attname, ',' ORDER BY array_position(conkey, attnum)) FROM pg_constraint
                JOIN pg_attribute ON attrelid = conrelid AND attnum = ANY(conkey)
                WHERE conrelid = 'public.entries'::regclass AND contype = 'p'";
    assert_eq!(db.texts(keys).await, [Some("source_id,account_id,n".into())]);
    let sources = "SELECT count(DISTINCT source_id)::text FROM public.accounts";
    assert_eq!(db.texts(sources).await, [Some("5".into())]);
}

async fn sources_written_at_once_end_equal(db: &TestDb, tenants: Tenants) {
    let ids = ["north", "south", "east", "west"];
    let mut files = tenants.add_all(&ids);
    let port = free_port();
    let _daemon = tenants.daemon(&["--metrics-addr", &format!("127.0.0.1:{port}")]);
    let writers: Vec<Child> = files.iter().enumerate().map(|(i, (path, _))| writer(path, i as u64, 300)).collect();
    wait_sources(db, "applied_seq > snapshot_seq", ids.len()).await;
    files.push((tenants.add("late"), "late"));
    let late_writer = writer(&files[4].0, 99, 100);
    wait_for(writers);
    wait_for(vec![late_writer]);
    wait_all_caught_up(db, &files).await;
    tenants.assert_all_equal(db, &files).await;
    let (code, metrics) = http_get(port, "/metrics");
    assert_eq!(code, 200);
    for id in ids.iter().chain(["late"].iter()) {
        assert!(metrics.contains(&format!("lite2pg_up{{source=\"{id}\"}} 1")), "no metrics for {id}:\n{metrics}");
    }
    let verify = lite2pg_output(&["verify", "--config", tenants.config().to_str().unwrap(), "--source", "east"]);
    assert!(verify.status.success(), "{}", stderr(&verify));
    assert!(String::from_utf8_lossy(&verify.stdout).contains("Compared source east"));
    let status = lite2pg_output(&["status", "--json", "--config", tenants.config().to_str().unwrap()]);
    let statuses: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let mut listed: Vec<&str> = statuses.as_array().unwrap().iter().map(|s| s["source_id"].as_str().unwrap()).collect();
    listed.sort();
    assert_eq!(listed, ["east", "late", "north", "south", "west"]);
}

#[tokio::test]
async fn connections_stay_within_the_pool_however_many_sources() {
    let db = TestDb::new().await;
    let tenants = Tenants::new(&db, 2);
    let files: Vec<(PathBuf, String)> = (0..8).map(|i| (tenants.add(&format!("t{i}")), format!("t{i}"))).collect();
    let _daemon = tenants.daemon(&[]);
    let named: Vec<(PathBuf, &str)> = files.iter().map(|(p, id)| (p.clone(), id.as_str())).collect();
    wait_all_caught_up(&db, &named).await;
    let client = db.client().await;
    let connections = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()";
    let mut most = 0;
    for round in 0..40 {
        for (i, (path, _)) in files.iter().enumerate() {
            let conn = rusqlite::Connection::open(path).unwrap();
            conn.execute("INSERT INTO events(kind, payload) VALUES ('tick', ?1)", [round * 10 + i as i64]).unwrap();
        }
        let count: i64 = client.query_one(connections, &[]).await.unwrap().get(0);
        most = most.max(count);
        // The sampling rate of the connection count, not a stand-in for a condition.
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(most <= 3, "{most} connections for 8 sources with pool_size = 2 (plus one for the locks)");
    wait_all_caught_up(&db, &named).await;
    tenants.assert_all_equal(&db, &named).await;
}

#[tokio::test]
async fn a_config_with_sources_asks_which_one_and_refuses_a_shared_schema() {
    let db = TestDb::new().await;
    let tenants = Tenants::new(&db, 2);
    tenants.add("a");
    tenants.add("b");
    let config = tenants.config();
    let init = lite2pg_output(&["init", "--config", config.to_str().unwrap()]);
    assert_eq!(init.status.code(), Some(2));
    assert!(stderr(&init).contains("lists 2 sources: a, b") && stderr(&init).contains("--source"), "{}", stderr(&init));
    let unknown = lite2pg_output(&["status", "--config", config.to_str().unwrap(), "--source", "c"]);
    assert!(stderr(&unknown).contains("no source \"c\""), "{}", stderr(&unknown));
    let shared = lite2pg_output(&["run", "--once", "--config", config.to_str().unwrap(), "--schema", "public"]);
    assert_eq!(shared.status.code(), Some(2));
    assert!(stderr(&shared).contains("{source_id}"), "{}", stderr(&shared));
}

#[tokio::test]
async fn a_second_process_on_the_same_sources_stands_by_and_takes_over() {
    let db = TestDb::new().await;
    let tenants = Tenants::new(&db, 2);
    let files = tenants.add_all(&["a", "b", "c"]);
    let first = tenants.daemon(&[]);
    wait_all_caught_up(&db, &files).await;
    let once = lite2pg_output(&["run", "--once", "--config", tenants.config().to_str().unwrap(), "--source", "b"]);
    assert_eq!(once.status.code(), Some(1), "a one-off run does not wait for the daemon's lock");
    assert!(stderr(&once).contains("is being synced by another lite2pg"), "{}", stderr(&once));
    let _standby = tenants.daemon(&[]);
    write_each(&files, 0, 100);
    wait_all_caught_up(&db, &files).await;
    drop(first);
    write_each(&files, 10, 100);
    wait_all_caught_up(&db, &files).await;
    tenants.assert_all_equal(&db, &files).await;
}

#[tokio::test]
async fn terminated_connections_including_the_lock_connection_are_ridden_out() {
    let db = TestDb::new().await;
    let tenants = Tenants::new(&db, 2);
    let files = tenants.add_all(&["a", "b", "c"]);
    let _daemon = tenants.daemon(&[]);
    wait_all_caught_up(&db, &files).await;
    let writers: Vec<Child> = files.iter().enumerate().map(|(i, (path, _))| writer(path, 40 + i as u64, 400)).collect();
    let admin = db.client().await;
    let terminate = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                     WHERE application_name = 'lite2pg' AND datname = current_database() AND pid <> pg_backend_pid()";
    let mut terminated = 0;
    for _ in 0..3 {
        // Terminations spread over the writers' run: the pacing is the test, not a stand-in for a condition.
        tokio::time::sleep(Duration::from_millis(400)).await;
        terminated += admin.query_one(terminate, &[]).await.unwrap().get::<_, i64>(0);
    }
    assert!(terminated >= 3, "only {terminated} connections were terminated");
    wait_for(writers);
    wait_all_caught_up(&db, &files).await;
    tenants.assert_all_equal(&db, &files).await;
}

#[tokio::test]
async fn two_processes_creating_the_same_shared_tables_at_once_both_land() {
    let db = TestDb::new().await;
    let tenants = Tenants::shared(&db, 2);
    let files = tenants.add_all(&["a", "b", "c", "d"]);
    let list = |ids: &[&str]| ids.iter().map(|id| format!("[[source]]\nsqlite = \"tenants/{id}.db\"\n")).collect::<String>();
    let first = tenants.write_config("first.toml", &db, &list(&["a", "b"]));
    let second = tenants.write_config("second.toml", &db, &list(&["c", "d"]));
    let _one = tenants.daemon_with(&first, &[]);
    let _two = tenants.daemon_with(&second, &[]);
    write_each(&files, 60, 150);
    wait_all_caught_up(&db, &files).await;
    tenants.assert_all_equal(&db, &files).await;
    let tables = "SELECT count(*)::text FROM pg_tables WHERE schemaname = 'public'";
    assert_eq!(db.texts(tables).await, [Some("3".into())], "one set of tables for all four sources");
}

#[tokio::test]
async fn a_source_changing_its_schema_changes_only_its_rows_of_shared_tables() {
    let db = TestDb::new().await;
    let tenants = Tenants::shared(&db, 2);
    let files = tenants.add_all(&["a", "b"]);
    let _daemon = tenants.daemon(&["--dropped-tables", "drop"]);
    write_each(&files, 80, 100);
    wait_all_caught_up(&db, &files).await;
    let a = rusqlite::Connection::open(&files[0].0).unwrap();
    a.execute_batch(
        "ALTER TABLE accounts ADD COLUMN tier TEXT DEFAULT 'basic';
         ALTER TABLE accounts ADD COLUMN nick TEXT;
         UPDATE accounts SET tier = 'gold', nick = 'n' || id WHERE id IN (SELECT id FROM accounts LIMIT 3);
         ALTER TABLE accounts RENAME COLUMN nick TO handle;
         DROP TABLE events;",
    )
    .unwrap();
    write_each(&files, 90, 100);
    wait_all_caught_up(&db, &files).await;
    // The writers create events again in a: the shared table takes a's new rows.
    tenants.assert_all_equal(&db, &files).await;
    let gold = "SELECT string_agg(DISTINCT source_id || ':' || tier, ',' ORDER BY source_id || ':' || tier) FROM accounts WHERE tier IS NOT NULL";
    let tiers = db.texts(gold).await;
    assert!(tiers[0].as_deref().is_some_and(|t| t.starts_with("a:") && !t.contains("b:")), "{tiers:?}");
}

#[tokio::test]
async fn a_column_one_source_widens_is_written_right_by_the_others() {
    let db = TestDb::new().await;
    let tenants = Tenants::shared(&db, 2);
    let schema = "CREATE TABLE m(id INTEGER PRIMARY KEY, n INTEGER); INSERT INTO m VALUES (1, 1);";
    let files: Vec<(PathBuf, &str)> = ["a", "b"].iter().map(|id| (tenants.add_with(id, schema), *id)).collect();
    let _daemon = tenants.daemon(&["--on-misfit", "widen"]);
    wait_all_caught_up(&db, &files).await;
    let write = |n: usize, sql: &str| rusqlite::Connection::open(&files[n].0).unwrap().execute_batch(sql).unwrap();
    write(0, "INSERT INTO m VALUES (2, 'text now')");
    wait_all_caught_up(&db, &files).await;
    assert_eq!(
        db.texts("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'm'::regclass AND attname = 'n'")
            .await,
        [Some("text".into())]
    );
    // New batch connections (the lock connection stays): b's staging tables are made again, in the widened shape.
    let terminate = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                     WHERE application_name = 'lite2pg' AND datname = current_database() AND pid <> pg_backend_pid()
                       AND pid NOT IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory')";
    db.client().await.query_one(terminate, &[]).await.unwrap();
    // Its eight bytes read as text "ABCDEFGH": written in the old binary form, it would land silently wrong.
    write(1, "INSERT INTO m VALUES (2, 4702394921427289928)");
    wait_all_caught_up(&db, &files).await;
    tenants.assert_all_equal(&db, &files).await;
    assert_eq!(db.texts("SELECT n FROM m WHERE source_id = 'b' AND id = 2").await, [Some("4702394921427289928".into())]);
}

#[tokio::test]
async fn a_source_postgres_refuses_stops_alone_and_leaves_no_connection_in_a_transaction() {
    let db = TestDb::new().await;
    let tenants = Tenants::new(&db, 1);
    let schema = "CREATE TABLE m(id INTEGER PRIMARY KEY, n INTEGER); INSERT INTO m VALUES (1, 1);";
    let files: Vec<(PathBuf, &str)> = ["good", "bad"].iter().map(|id| (tenants.add_with(id, schema), *id)).collect();
    let mut daemon = tenants.daemon(&[]);
    wait_all_caught_up(&db, &files).await;
    db.client()
        .await
        .batch_execute(
            "CREATE FUNCTION bad.refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'closed'; END $$;
             CREATE TRIGGER refuse BEFORE INSERT ON bad.m FOR EACH ROW EXECUTE FUNCTION bad.refuse();",
        )
        .await
        .unwrap();
    let write =
        |n: usize, id: i64| rusqlite::Connection::open(&files[n].0).unwrap().execute("INSERT INTO m VALUES (?1, 2)", [id]);
    write(1, 2).unwrap();
    let client = db.client().await;
    let stopped = "SELECT last_error FROM lite2pg.sources WHERE source_id = 'bad' AND last_error IS NOT NULL";
    wait_until("the refused source to record an error", Duration::from_secs(20), || async {
        check(client.query_opt(stopped, &[]).await.unwrap().is_some(), || "no error".to_string())
    })
    .await;
    // The one pooled connection the refused batch ran on serves the other source.
    for id in 2..20 {
        write(0, id).unwrap();
    }
    wait_all_caught_up(&db, &files[..1]).await;
    tenants.assert_equal(&db, &files[0].0, "good").await;
    let in_transaction = "SELECT count(*) FROM pg_stat_activity
                          WHERE application_name = 'lite2pg' AND datname = current_database() AND state LIKE 'idle in transaction%'";
    assert_eq!(client.query_one(in_transaction, &[]).await.unwrap().get::<_, i64>(0), 0);
    assert!(daemon.child.try_wait().unwrap().is_none(), "the other source keeps the daemon running");
}

#[tokio::test]
async fn a_rebuild_that_loosens_a_shared_tables_constraints_lets_its_source_write_what_they_refused() {
    let db = TestDb::new().await;
    let tenants = Tenants::shared(&db, 2);
    let schema = "CREATE TABLE m(id INTEGER PRIMARY KEY, k TEXT NOT NULL UNIQUE); INSERT INTO m VALUES (1, 'x'), (2, 'y');";
    let files: Vec<(PathBuf, &str)> = ["a", "b"].iter().map(|id| (tenants.add_with(id, schema), *id)).collect();
    let _daemon = tenants.daemon(&[]);
    wait_all_caught_up(&db, &files).await;
    let write = |n: usize, sql: &str| rusqlite::Connection::open(&files[n].0).unwrap().execute_batch(sql).unwrap();
    write(
        0,
        "PRAGMA foreign_keys=OFF; BEGIN; CREATE TABLE new__m(id INTEGER PRIMARY KEY, k TEXT); INSERT INTO new__m SELECT * FROM m;
         DROP TABLE m; ALTER TABLE new__m RENAME TO m; COMMIT;",
    );
    wait_all_caught_up(&db, &files).await;
    write(0, "INSERT INTO m VALUES (3, NULL), (4, 'x');");
    write(1, "INSERT OR REPLACE INTO m VALUES (3, 'y');");
    wait_all_caught_up(&db, &files).await;
    tenants.assert_all_equal(&db, &files).await;
    let rows = "SELECT string_agg(source_id || id || coalesce(k, '-'), ',' ORDER BY source_id, id) FROM m";
    assert_eq!(db.texts(rows).await, [Some("a1x,a2y,a3-,a4x,b1x,b3y".into())]);
}
