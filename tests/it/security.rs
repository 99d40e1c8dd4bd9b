//! Security: TLS modes against a real server, and passwords never printed.

use crate::support::{lite2pg_output, stderr, SqliteFile, TestDb};

#[tokio::test]
async fn tls_modes_encrypt_and_verify_as_libpq_does() {
    let db = TestDb::new().await;
    let ssl_on: String = db.client().await.query_one("SHOW ssl", &[]).await.unwrap().get(0);
    if ssl_on != "on" {
        eprintln!("skipped: the test server has ssl off");
        return;
    }
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
