//! Security: TLS modes against a real server, and passwords never printed.

use crate::support::cluster::PrivateCluster;
use crate::support::{lite2pg_output, stderr, SqliteFile, TestDb};

#[tokio::test]
async fn tls_modes_encrypt_and_verify_as_libpq_does() {
    let db = TestDb::new().await;
    let ssl_on: String = db.client().await.query_one("SHOW ssl", &[]).await.unwrap().get(0);
    // A skipped test proves nothing: a server without TLS fails it (Debian's postgresql package turns ssl on).
    assert_eq!(ssl_on, "on", "this test needs a PostgreSQL server with ssl on; set LITE2PG_TEST_POSTGRES to one");
    let file = SqliteFile::new("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'secret data');");
    let path = file.path.to_str().unwrap();
    let with = |query: &str| format!("{}?{query}", db.url());
    let output = lite2pg_output(&["run", "--once", "--sqlite", path, "--postgres", &with("sslmode=require")]);
    assert!(output.status.success(), "{}", stderr(&output));
    db.assert_equal(&file.path).await;

    let host = db.url().split('@').nth(1).unwrap().split(':').next().unwrap().to_string();
    if host.parse::<std::net::IpAddr>().is_ok() {
        let refused = lite2pg_output(&[
            "status",
            "--sqlite",
            path,
            "--postgres",
            &with("sslmode=verify-full&sslrootcert=/nonexistent.pem"),
        ]);
        assert_eq!(refused.status.code(), Some(1));
        let text = String::from_utf8_lossy(&refused.stdout).into_owned() + &stderr(&refused);
        assert!(text.contains("cannot read root certificates from /nonexistent.pem"), "{text}");
    }
    let bad_mode = lite2pg_output(&["status", "--sqlite", path, "--postgres", &with("sslmode=sometimes")]);
    assert_eq!(bad_mode.status.code(), Some(2));
    assert!(stderr(&bad_mode).contains("unknown sslmode \"sometimes\""), "{}", stderr(&bad_mode));
}

#[test]
fn a_password_file_is_read_and_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("password");
    std::fs::write(&secret, "hunter2\n").unwrap();
    let file = SqliteFile::new("CREATE TABLE t(x);");
    let output = crate::support::lite2pg()
        .args(["doctor", "--sqlite", file.path.to_str().unwrap(), "--postgres", "postgres://app@127.0.0.1:1/x"])
        .env("LITE2PG_PASSWORD_FILE", &secret)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &stderr(&output);
    assert!(text.contains("127.0.0.1:1"), "{text}");
    assert!(!text.contains("hunter2"), "the password leaked: {text}");
    let missing = crate::support::lite2pg()
        .args(["status", "--sqlite", file.path.to_str().unwrap(), "--postgres", "postgres://app@127.0.0.1:1/x"])
        .env("LITE2PG_PASSWORD_FILE", dir.path().join("absent"))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("cannot read the password file"), "{}", stderr(&missing));
}

#[tokio::test]
async fn runs_with_only_the_documented_grants() {
    let db = TestDb::new().await;
    let role = format!("lite2pg_least_{}", db.name.trim_start_matches("lite2pg_test_"));
    let admin = db.client().await;
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
             REVOKE CREATE ON SCHEMA public FROM PUBLIC;
             CREATE SCHEMA lite2pg AUTHORIZATION {role};
             GRANT CREATE, USAGE ON SCHEMA public TO {role};"
        ))
        .await
        .unwrap();
    let file = SqliteFile::new("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a');");
    let path = file.path.to_str().unwrap();
    let url = db.url().replacen("postgres://postgres@", &format!("postgres://{role}@"), 1);
    let results: Vec<(String, std::process::Output)> = [vec!["run", "--once"], vec!["verify"], vec!["status"], vec!["doctor"]]
        .into_iter()
        .map(|args| {
            if args[0] == "verify" {
                file.exec("UPDATE t SET v = 'b'; INSERT INTO t VALUES (2, 'c');");
                let _ = lite2pg_output(&["run", "--once", "--sqlite", path, "--postgres", &url]);
            }
            let output = lite2pg_output(&[&args[..], &["--sqlite", path, "--postgres", &url]].concat());
            (args.join(" "), output)
        })
        .collect();
    admin.batch_execute(&format!("DROP OWNED BY {role} CASCADE")).await.unwrap();
    for (command, output) in &results {
        assert!(
            output.status.success(),
            "`{command}` as a least-privileged role: {}{}",
            String::from_utf8_lossy(&output.stdout),
            stderr(output)
        );
    }
    drop(db);
    let server = crate::support::TestDb::new().await;
    let _ = server.client().await.batch_execute(&format!("DROP ROLE IF EXISTS {role}")).await;
}

#[tokio::test]
async fn a_read_only_postgres_and_damaged_files_get_clear_errors() {
    let db = TestDb::new().await;
    db.client().await.batch_execute(&format!("ALTER DATABASE {} SET default_transaction_read_only = on", db.name)).await.unwrap();
    let file = SqliteFile::new("CREATE TABLE t(x); INSERT INTO t VALUES (1);");
    let output = lite2pg_output(&["snapshot", "--sqlite", file.path.to_str().unwrap(), "--postgres", &db.url()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("read-only"), "{}", stderr(&output));

    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(&file.path).unwrap();
    let truncated = dir.path().join("truncated.db");
    std::fs::write(&truncated, &good[..good.len().min(100)]).unwrap();
    let random = dir.path().join("encrypted.db");
    std::fs::write(&random, (0..8192u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect::<Vec<u8>>()).unwrap();
    for (damaged, expected) in [(&truncated, "truncated.db"), (&random, "is not a SQLite database")] {
        let output = lite2pg_output(&["init", "--sqlite", damaged.to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
        assert!(stderr(&output).contains(expected) && !stderr(&output).contains("panicked"), "{}", stderr(&output));
    }
}

#[tokio::test]
async fn hostile_names_and_large_values_copy_exactly() {
    let long = "n".repeat(63);
    let file = SqliteFile::new(&format!(
        r#"CREATE TABLE "we""ird tab le" ("select" INTEGER PRIMARY KEY, "ümlaut col" TEXT, "{long}" BLOB, "from" REAL);
           INSERT INTO "we""ird tab le" VALUES (1, 'x', zeroblob(50 * 1024 * 1024), 0.1);
           INSERT INTO "we""ird tab le" VALUES (2, printf('%.*c', 5000000, 'y'), x'00ff', -0.0);"#
    ));
    let db = TestDb::new().await;
    let output = lite2pg_output(&["run", "--once", "--sqlite", file.path.to_str().unwrap(), "--postgres", &db.url()]);
    assert!(output.status.success(), "{}", stderr(&output));
    file.exec(r#"UPDATE "we""ird tab le" SET "{long}" = randomblob(10 * 1024 * 1024) WHERE "select" = 2"#.replace("{long}", &long).as_str());
    let output = lite2pg_output(&["run", "--once", "--sqlite", file.path.to_str().unwrap(), "--postgres", &db.url()]);
    assert!(output.status.success(), "{}", stderr(&output));
    db.assert_equal(&file.path).await;
}

/// Whether a connection made by lite2pg with `url` is encrypted, as the server sees it.
async fn lite2pg_connection_is_encrypted(url: &str) -> bool {
    let client = lite2pg::pg::PgTarget::parse(url).unwrap().connect().await.unwrap();
    client.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn a_self_signed_v1_certificate_is_used_unverified_under_prefer_and_require_as_libpq_does() {
    let cluster = PrivateCluster::init_new().expect("this test needs PostgreSQL's server binaries for a private cluster");
    let certificate = cluster.enable_tls_with_v1_certificate();
    cluster.start();
    let db = TestDb::on(&cluster.url("postgres")).await;
    let file = SqliteFile::new("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'secret data');");
    let path = file.path.to_str().unwrap();
    let with = |query: &str| format!("{}?{query}", db.url());
    // The default settings (prefer), then require: encrypted, the certificate's form not judged.
    let output = lite2pg_output(&["run", "--once", "--sqlite", path, "--postgres", &db.url()]);
    assert!(output.status.success(), "{}", stderr(&output));
    file.exec("INSERT INTO t VALUES (2, 'more')");
    let output = lite2pg_output(&["run", "--once", "--sqlite", path, "--postgres", &with("sslmode=require")]);
    assert!(output.status.success(), "{}", stderr(&output));
    db.assert_equal(&file.path).await;
    assert!(lite2pg_connection_is_encrypted(&db.url()).await, "prefer did not encrypt");
    assert!(lite2pg_connection_is_encrypted(&with("sslmode=require")).await, "require did not encrypt");
    // verify-ca checks the certificate: without its root it is refused, with a message saying what to do.
    let root = certificate.to_str().unwrap();
    let missing_root = std::env::temp_dir().join("lite2pg-no-such-root.pem");
    for (query, expected) in [
        (format!("sslmode=verify-ca&sslrootcert={}", missing_root.display()), "cannot read root certificates from"),
        (format!("sslmode=verify-ca&sslrootcert={root}"), "X.509 v1"),
        ("sslmode=verify-ca".to_string(), "sslmode=require"),
    ] {
        let refused = lite2pg_output(&["status", "--sqlite", path, "--postgres", &with(&query)]);
        assert_ne!(refused.status.code(), Some(0), "{query} was not refused");
        let text = String::from_utf8_lossy(&refused.stdout).into_owned() + &stderr(&refused);
        assert!(text.contains(expected), "{query}: {text}");
    }
}
