//! Fan-in onto a real Citus cluster (a coordinator and two workers on free ports) in both layouts, with the default
//! connection settings: Citus's own self-signed certificate under sslmode `prefer`. Writers on every file while the
//! daemon is killed and restarted and a worker node restarts; every source ends equal, `verify` and `status` work
//! through the coordinator, and schema changes are followed or refused with a clear message.

use std::path::PathBuf;

use crate::support::citus::CitusCluster;
use crate::support::daemon::wait_for;
use crate::support::daemon::writer;
use crate::support::fleet::Tenants;
use crate::support::wait::{wait_all_caught_up, wait_sources, wait_until, CATCH_UP};
use crate::support::{lite2pg_output, stderr, TestDb};

const SOURCES: [&str; 3] = ["north", "south", "east"];

#[tokio::test]
async fn fan_in_onto_citus_puts_each_source_in_a_tenant_schema_and_keeps_lite2pgs_on_the_coordinator() {
    let cluster = CitusCluster::start("citus.enable_schema_based_sharding = on");
    let db = cluster.database().await;
    let tenants = Tenants::new(&db, 2);
    let files = tenants.add_all(&SOURCES);
    let _daemon = stream_through_kill_and_worker_restart(&cluster, &db, &tenants, &files).await;
    let tenant_schemas =
        "SELECT string_agg(schemaid::regnamespace::text, ',' ORDER BY schemaid::regnamespace::text) FROM pg_dist_schema";
    assert_eq!(db.texts(tenant_schemas).await, [Some("east,north,south".into())]);
    let distributed_state = "SELECT count(*)::text FROM pg_dist_partition WHERE logicalrelid::text LIKE 'lite2pg.%'";
    assert_eq!(db.texts(distributed_state).await, [Some("0".into())], "lite2pg's tables stay on the coordinator");
    // A schema change Citus allows is followed on the tenant's node.
    let conn = rusqlite::Connection::open(&files[0].0).unwrap();
    conn.execute_batch("ALTER TABLE accounts ADD COLUMN nick TEXT; UPDATE accounts SET nick = 'n' || id;").unwrap();
    wait_all_caught_up(&db, &files).await;
    tenants.assert_all_equal(&db, &files).await;
    assert_eq!(db.texts("SELECT count(*)::text FROM north.accounts WHERE nick IS NULL").await, [Some("0".into())]);
}

#[tokio::test]
async fn fan_in_onto_citus_distributes_shared_tables_by_source_co_located() {
    let cluster = CitusCluster::start("");
    let db = cluster.database().await;
    let tenants = Tenants::shared(&db, 2);
    let files = tenants.add_all(&SOURCES);
    let _daemon = stream_through_kill_and_worker_restart(&cluster, &db, &tenants, &files).await;
    let layout = "SELECT count(*) || ' tables, ' || count(DISTINCT colocationid) || ' group, by '
                         || string_agg(DISTINCT column_to_column_name(logicalrelid, partkey), ',')
                  FROM pg_dist_partition WHERE logicalrelid IN ('accounts'::regclass, 'entries'::regclass, 'events'::regclass)";
    assert_eq!(db.texts(layout).await, [Some("3 tables, 1 group, by source_id".into())]);
    // A schema change that the shared, distributed tables cannot take stops that source alone, saying why.
    let conn = rusqlite::Connection::open(&files[1].0).unwrap();
    conn.execute_batch(
        "BEGIN; CREATE TABLE new_entries(account_id INTEGER NOT NULL, n INTEGER NOT NULL, amount REAL, memo TEXT,
           PRIMARY KEY (account_id)) WITHOUT ROWID; DROP TABLE entries; ALTER TABLE new_entries RENAME TO entries; COMMIT;",
    )
    .unwrap();
    let error = wait_for_error(&db, files[1].1).await;
    assert!(error.contains("is keyed by (source_id, account_id, n), this source's table by (source_id, account_id)"), "{error}");
    // Changes Citus allows: a column added, a table created (distributed and co-located like the others).
    let conn = rusqlite::Connection::open(&files[0].0).unwrap();
    conn.execute_batch(
        "ALTER TABLE accounts ADD COLUMN nick TEXT; UPDATE accounts SET nick = 'n' || id;
         CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes VALUES (1, 'new');",
    )
    .unwrap();
    let others = [files[0].clone(), files[2].clone()];
    wait_all_caught_up(&db, &others).await;
    tenants.assert_all_equal(&db, &others).await;
    let layout = layout.replace("'events'::regclass", "'events'::regclass, 'notes'::regclass");
    assert_eq!(db.texts(&layout).await, [Some("4 tables, 1 group, by source_id".into())]);
}

/// Writers on every file; meanwhile the daemon is killed and started again and a worker node restarts. Ends with
/// every source caught up and equal, checked by `verify` and `status` too; returns the running daemon.
async fn stream_through_kill_and_worker_restart(
    cluster: &CitusCluster,
    db: &TestDb,
    tenants: &Tenants,
    files: &[(PathBuf, &str)],
) -> crate::support::daemon::Daemon {
    let ssl: String = db.client().await.query_one("SHOW ssl", &[]).await.unwrap().get(0);
    assert_eq!(ssl, "on", "Citus turns TLS on with a self-signed certificate, which the default settings must accept");
    let mut daemon = tenants.daemon(&[]);
    wait_sources(db, "snapshot_seq IS NOT NULL", files.len()).await;
    let writers = files.iter().enumerate().map(|(i, (path, _))| writer(path, 40 + i as u64, 300)).collect();
    wait_sources(db, "applied_seq > snapshot_seq", files.len()).await;
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
    drop(daemon);
    let mut daemon = tenants.daemon(&[]);
    wait_for(writers);
    // Batches meet the worker down (connection errors, waited out with backoff) and go on once it is back.
    let worker = &cluster.workers[0];
    let retries = daemon.retries();
    worker.stop();
    let writers = files.iter().enumerate().map(|(i, (path, _))| writer(path, 50 + i as u64, 50)).collect();
    wait_for(writers);
    daemon.wait_retry_after(retries);
    worker.start();
    wait_all_caught_up(db, files).await;
    assert!(daemon.child.try_wait().unwrap().is_none(), "the daemon rode out the worker's restart");
    tenants.assert_all_equal(db, files).await;
    let config = tenants.config();
    let verify = lite2pg_output(&["verify", "--config", config.to_str().unwrap(), "--source", files[0].1]);
    assert!(verify.status.success(), "{}", stderr(&verify));
    assert!(String::from_utf8_lossy(&verify.stdout).contains("EQUAL"));
    let status = lite2pg_output(&["status", "--json", "--config", config.to_str().unwrap()]);
    let statuses: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    for source in statuses.as_array().unwrap() {
        assert_eq!(source["pending_changes"], 0, "{source}");
    }
    daemon
}

/// Waits for source `id` to record an error, and returns it.
async fn wait_for_error(db: &TestDb, id: &str) -> String {
    let client = db.client().await;
    wait_until(&format!("source {id} to record an error"), CATCH_UP, || async {
        let row = client.query_opt("SELECT last_error FROM lite2pg.sources WHERE source_id = $1", &[&id]).await.unwrap();
        row.and_then(|r| r.get::<_, Option<String>>(0)).ok_or_else(|| "no error".to_string())
    })
    .await
}
