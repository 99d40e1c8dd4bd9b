//! Real applications' own migrations, run against the SQLite file while `lite2pg run` streams: Django's auth,
//! admin and sessions apps and a shop app whose migrations rebuild tables to loosen and tighten NOT NULL and
//! UNIQUE, and Alembic's batch mode. Python, Django and Alembic are installed by `.ci/run`; without them these
//! tests fail rather than skip.

use crate::support::apps::{manage, python, ALEMBIC_STEPS, DJANGO_PROJECT};
use crate::support::daemon::start_daemon;
use crate::support::wait::wait_caught_up;
use crate::support::{unique, SqliteFile, TestDb};

async fn nullable(db: &TestDb, table: &str, column: &str) -> bool {
    let sql = format!(
        "SELECT is_nullable FROM information_schema.columns WHERE table_schema = 'public' AND table_name = '{table}' AND column_name = '{column}'"
    );
    db.texts(&sql).await == [Some("YES".to_string())]
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    db.client().await.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn django_migrations_run_while_streaming_and_the_copy_stays_equal() {
    // Django's default journal mode, not WAL: lite2pg's reads must stay short enough for the migrations.
    let file = SqliteFile::new("PRAGMA journal_mode = DELETE;");
    manage(&file, &["migrate", "shop", "0001"]);
    manage(&file, &["migrate", "auth", "0004"]);
    let db = TestDb::new().await;
    let mut daemon = start_daemon(&db, &file);
    // auth's later migrations rebuild auth_user (last_login becomes nullable, longer names): the first new user has
    // no last_login.
    for app in ["contenttypes", "auth", "admin", "sessions"] {
        manage(&file, &["migrate", app]);
    }
    manage(&file, &["shop_write", "1"]);
    wait_caught_up(&db, &file).await;
    daemon.assert_running();
    assert!(nullable(&db, "auth_user", "last_login").await);
    db.assert_equal(&file.path).await;

    // 0002 rebuilds shop_customer with nickname nullable; stage 2 writes NULL nicknames.
    manage(&file, &["migrate", "shop", "0002"]);
    manage(&file, &["shop_write", "2"]);
    wait_caught_up(&db, &file).await;
    daemon.assert_running();
    assert!(nullable(&db, "shop_customer", "nickname").await);
    assert!(count(&db, "SELECT count(*) FROM shop_customer WHERE nickname IS NULL").await > 0);
    db.assert_equal(&file.path).await;

    // 0003 adds a column and rebuilds shop_customer with email UNIQUE.
    manage(&file, &["migrate", "shop", "0003"]);
    manage(&file, &["shop_write", "3"]);
    wait_caught_up(&db, &file).await;
    daemon.assert_running();
    assert!(unique(&db, "shop_customer", "email").await, "the UNIQUE the rebuild added is missing in PostgreSQL");
    db.assert_equal(&file.path).await;

    // 0004 drops that UNIQUE again; stage 4 writes one email ten times. No row may be taken for displaced.
    manage(&file, &["migrate", "shop", "0004"]);
    manage(&file, &["shop_write", "4"]);
    wait_caught_up(&db, &file).await;
    daemon.assert_running();
    assert!(!unique(&db, "shop_customer", "email").await, "the UNIQUE the rebuild dropped is still in PostgreSQL");
    let shared = "SELECT count(*) FROM shop_customer WHERE email = 'shared@example.com'";
    let in_sqlite: i64 = file.conn().query_row(shared, [], |r| r.get(0)).unwrap();
    assert!(in_sqlite > 1);
    assert_eq!(count(&db, shared).await, in_sqlite);
    db.assert_equal(&file.path).await;

    // 0005 makes nickname NOT NULL again (the rebuild fills NULLs with 'anon') and adds an indexed column.
    manage(&file, &["migrate", "shop"]);
    manage(&file, &["shop_write", "5"]);
    wait_caught_up(&db, &file).await;
    daemon.assert_running();
    assert!(!nullable(&db, "shop_customer", "nickname").await, "NOT NULL the rebuild added is missing in PostgreSQL");
    assert_eq!(count(&db, "SELECT count(*) FROM shop_customer WHERE nickname IS NULL").await, 0);
    db.assert_equal(&file.path).await;

    // Back to 0004 (Django's reverse migration rebuilds again: nickname nullable, status gone), then more writes.
    manage(&file, &["migrate", "shop", "0004"]);
    manage(&file, &["shop_write", "6"]);
    wait_caught_up(&db, &file).await;
    daemon.assert_running();
    assert!(nullable(&db, "shop_customer", "nickname").await);
    db.assert_equal(&file.path).await;
}

#[tokio::test]
async fn alembic_batch_migrations_run_while_streaming_and_the_copy_stays_equal() {
    let file = SqliteFile::new("");
    let step = |name: &str| python(&file.path, DJANGO_PROJECT, &[ALEMBIC_STEPS, name]);
    step("create");
    step("write");
    let db = TestDb::new().await;
    let mut daemon = start_daemon(&db, &file);
    for name in ["loosen", "write_nulls", "tighten", "write", "rename_and_drop", "write"] {
        step(name);
        wait_caught_up(&db, &file).await;
        daemon.assert_running();
        db.assert_equal(&file.path).await;
    }
    assert!(nullable(&db, "item", "label").await);
    assert!(unique(&db, "item", "sku").await, "the UNIQUE Alembic added is missing in PostgreSQL");
    assert!(!nullable(&db, "item", "price").await, "the NOT NULL Alembic added is missing in PostgreSQL");
}
