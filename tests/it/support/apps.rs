//! Real applications run by Python against a test's SQLite file (or PostgreSQL): Django's `manage.py` and
//! Alembic's steps, failing the test with Python's output when they fail.

use std::path::Path;
use std::process::Command;

use super::{SqliteFile, TestDb};

pub const DJANGO_PROJECT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/apps/django");
pub const ALEMBIC_STEPS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/apps/alembic_steps.py");

/// Runs `python3 args…` with `SHOP_SQLITE` naming the file, and fails the test with Python's output if it fails.
pub fn python(file: &Path, dir: &str, args: &[&str]) {
    python_with(file, dir, args, &[]);
}

/// `python` with more environment variables (`SHOP_POSTGRES` points Django at PostgreSQL).
pub fn python_with(file: &Path, dir: &str, args: &[&str], env: &[(&str, &str)]) {
    let mut command = Command::new("python3");
    command.current_dir(dir).args(args).env("SHOP_SQLITE", file).envs(env.iter().copied());
    let output = command.output().unwrap_or_else(|err| {
        panic!("cannot run python3 ({err}): install Python 3 with Django and Alembic (`bash .ci/run` does)")
    });
    assert!(
        output.status.success(),
        "python3 {args:?} failed (`bash .ci/run` installs Django and Alembic):\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

pub fn manage(file: &SqliteFile, args: &[&str]) {
    python(&file.path, DJANGO_PROJECT, &[&["manage.py"], args, &["-v0"]].concat());
}

/// `manage.py args…` with Django pointed at the test database (`SHOP_POSTGRES`, schema `public`) instead of the file.
pub fn manage_on_postgres(file: &SqliteFile, db: &TestDb, args: &[&str]) {
    let url = db.url();
    python_with(&file.path, DJANGO_PROJECT, &[&["manage.py"], args, &["-v0"]].concat(), &[("SHOP_POSTGRES", url.as_str())]);
}

/// Migrates every app on one side, with the ledger app at `ledger` (`None`: its newest migration).
pub fn migrate_all(migrate: impl Fn(&[&str]), ledger: Option<&str>) {
    for app in ["contenttypes", "auth", "admin", "sessions", "shop"] {
        migrate(&["migrate", app]);
    }
    migrate(&[&["migrate", "ledger"][..], ledger.as_slice()].concat());
}
