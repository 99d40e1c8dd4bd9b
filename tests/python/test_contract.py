"""The command line's JSON outputs and flags the Python package reads are a contract: checked here against the
binary itself, so a change on the Rust side that would break the package fails this test."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest

import lite2pg
from lite2pg._sync import COMMON_OPTIONS, RUN_OPTIONS

STATUS_KEYS = {
    "source_id", "sqlite", "postgres", "postgres_error", "snapshot_done", "applied_seq", "newest_seq",
    "pending_changes", "lag_seconds", "tables_to_copy", "rejects", "last_error", "last_error_at", "last_applied_at",
    "daemon", "tables",
}
VERIFY_TABLE_KEYS = {"table", "postgres_table", "sqlite_rows", "postgres_rows", "missing", "extra", "differing",
                     "known_rejects", "pending", "examples"}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([lite2pg.find_binary(), *args], capture_output=True, text=True)


def test_the_package_is_typed_and_runs_the_binary_as_a_module() -> None:
    package = Path(lite2pg.__file__).parent
    assert (package / "py.typed").is_file()
    checked = subprocess.run([sys.executable, "-m", "mypy", "--strict", "-p", "lite2pg"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout
    version = subprocess.run([sys.executable, "-m", "lite2pg", "--version"], capture_output=True, text=True)
    assert version.stdout.startswith("lite2pg "), version.stderr


def test_every_option_sync_takes_is_a_flag_of_run() -> None:
    help_text = cli("run", "--help").stdout
    for option in COMMON_OPTIONS + RUN_OPTIONS + ("exit_with_parent", "log_format"):
        assert "--" + option.replace("_", "-") in help_text, option


def test_status_json(sqlite_file: Path, postgres: str) -> None:
    sync = lite2pg.Sync(sqlite_file, postgres)
    assert cli("--sqlite", str(sqlite_file), "--postgres", postgres, "run", "--once").returncode == 0
    done = cli("--sqlite", str(sqlite_file), "--postgres", postgres, "status", "--json")
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert STATUS_KEYS <= set(status)
    assert status["snapshot_done"] is True and status["daemon"] is None
    assert status["applied_seq"] == status["newest_seq"] and status["pending_changes"] == 0
    assert status["tables"] == [{"table": "notes", "postgres_table": "notes", "sqlite_rows": 3, "postgres_rows": 3}]
    with sqlite3.connect(sqlite_file) as conn:
        conn.execute("INSERT INTO notes (body) VALUES ('pending')")
    conn.close()
    pending = sync.status()
    assert pending["pending_changes"] == 1 and pending["newest_seq"] > pending["applied_seq"]
    assert isinstance(pending["lag_seconds"], float)
    brief = sync.status(brief=True)
    assert brief["tables"] == [] and brief["missing_constraints"] is None
    assert {k: brief[k] for k in ("applied_seq", "newest_seq", "pending_changes", "snapshot_done")} == {
        k: pending[k] for k in ("applied_seq", "newest_seq", "pending_changes", "snapshot_done")
    }


def test_status_json_while_postgres_is_unreachable_exits_1_with_the_report(sqlite_file: Path) -> None:
    assert cli("--sqlite", str(sqlite_file), "init").returncode == 0
    done = cli("--sqlite", str(sqlite_file), "--postgres", "postgres://postgres@127.0.0.1:1/x", "status", "--json")
    assert done.returncode == 1
    status = json.loads(done.stdout)
    assert status["postgres_error"] and status["applied_seq"] is None
    assert lite2pg.Sync(sqlite_file, "postgres://postgres@127.0.0.1:1/x").status()["postgres_error"]


def test_verify_json_and_exit_codes(sqlite_file: Path, postgres: str) -> None:
    assert cli("--sqlite", str(sqlite_file), "--postgres", postgres, "run", "--once").returncode == 0
    equal = cli("--sqlite", str(sqlite_file), "--postgres", postgres, "verify", "--json")
    assert equal.returncode == 0, equal.stderr
    report = json.loads(equal.stdout)
    assert {"source_id", "applied_seq", "tables", "seconds"} <= set(report)
    assert VERIFY_TABLE_KEYS <= set(report["tables"][0])
    with psycopg2.connect(postgres) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM notes WHERE id = 1")
    conn.close()
    different = cli("--sqlite", str(sqlite_file), "--postgres", postgres, "verify", "--json")
    assert different.returncode == 1
    table = json.loads(different.stdout)["tables"][0]
    assert (table["missing"], table["extra"], table["differing"]) == (1, 0, 0)
    assert table["examples"] == [{"kind": "missing", "key": [1]}]


def test_a_failing_command_prints_no_json_and_its_error_on_stderr(tmp_path: Path) -> None:
    done = cli("--sqlite", str(tmp_path / "none.db"), "--postgres", "postgres://x@127.0.0.1:1/x", "verify", "--json")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("error: ")
    with pytest.raises(lite2pg.SyncError, match="none.db"):
        lite2pg.Sync(tmp_path / "none.db", "postgres://x@127.0.0.1:1/x").verify()


def test_run_log_lines_are_json_objects_with_level_and_message(sqlite_file: Path, postgres: str) -> None:
    done = cli("--sqlite", str(sqlite_file), "--postgres", postgres, "--log-format", "json", "run", "--once")
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert lines and all(line["level"] in ("ERROR", "WARN", "INFO", "DEBUG", "TRACE") for line in lines)
    assert all(isinstance(line["fields"]["message"], str) for line in lines)
