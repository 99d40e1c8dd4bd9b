"""Sync end to end against the real PostgreSQL: start, write, wait, verify, stop, errors, and the binary found."""

from __future__ import annotations

import logging
import os
import sqlite3
import sysconfig
import urllib.parse
from pathlib import Path

import psycopg2
import pytest

import lite2pg
from conftest import children_named, pg_rows, with_database


def test_the_binary_is_the_one_installed_with_the_package() -> None:
    binary = lite2pg.find_binary()
    assert Path(binary).parent == Path(sysconfig.get_path("scripts"))
    assert os.access(binary, os.X_OK)


def test_start_copies_streams_verifies_and_stops(sqlite_file: Path, postgres: str) -> None:
    with lite2pg.Sync(sqlite_file, postgres) as sync:
        assert sync.running and sync.leader
        assert pg_rows(postgres, "SELECT count(*) FROM notes") == [(3,)], "start returns once the first copy is in"
        with sqlite3.connect(sqlite_file) as conn:
            conn.execute("INSERT INTO notes (body, score) VALUES ('d', 4.0)")
            conn.execute("UPDATE notes SET body = 'A' WHERE id = 1")
            conn.execute("DELETE FROM notes WHERE id = 2")
        conn.close()
        status = sync.wait_caught_up(timeout=30)
        assert status["pending_changes"] == 0 and status["applied_seq"] == status["newest_seq"]
        assert sync.verify() is True
        lite2pg_pid = children_named(os.getpid())
        assert len(lite2pg_pid) == 1
    assert not sync.running
    assert children_named(os.getpid()) == [], "stop ends the child"
    assert pg_rows(postgres, "SELECT id, body, score FROM notes ORDER BY id") == [
        (1, "A", 1.5),
        (3, "c", -0.25),
        (4, "d", 4.0),
    ]


def test_verify_raises_not_equal_with_the_differences_and_repairs(sqlite_file: Path, postgres: str) -> None:
    with lite2pg.Sync(sqlite_file, postgres) as sync:
        with psycopg2.connect(postgres) as conn, conn.cursor() as cur:
            cur.execute("UPDATE notes SET body = 'drifted' WHERE id = 3")
        conn.close()
        with pytest.raises(lite2pg.NotEqual) as raised:
            sync.verify()
        assert [t["table"] for t in raised.value.differing_tables] == ["notes"]
        assert raised.value.differing_tables[0]["differing"] == 1
        assert "notes: 0 missing, 0 extra, 1 differing" in str(raised.value)
        assert sync.verify(repair=True) is True
    assert pg_rows(postgres, "SELECT body FROM notes WHERE id = 3") == [("c",)]


def test_options_reach_the_command_line(sqlite_file: Path, postgres: str) -> None:
    with sqlite3.connect(sqlite_file) as conn:
        conn.execute("CREATE TABLE secrets (id INTEGER PRIMARY KEY, v TEXT)")
    conn.close()
    with lite2pg.Sync(sqlite_file, postgres, schema="app", exclude=["secrets"], jobs=1) as sync:
        assert [t["table"] for t in sync.status()["tables"]] == ["notes"]
    assert pg_rows(postgres, "SELECT count(*) FROM app.notes") == [(3,)]
    assert pg_rows(postgres, "SELECT to_regclass('app.secrets') IS NULL") == [(True,)]


def test_unknown_options_are_refused_at_once(sqlite_file: Path) -> None:
    with pytest.raises(TypeError, match="unknown lite2pg option.*schemaa"):
        lite2pg.Sync(sqlite_file, "postgres://x@y/z", schemaa="app")


def test_start_raises_lite2pg_own_message_without_the_password(tmp_path: Path, postgres: str) -> None:
    parts = urllib.parse.urlsplit(postgres)
    with_password = urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username}:s3cr3t-pw@{parts.hostname}:{parts.port or 5432}"))
    sync = lite2pg.Sync(tmp_path / "missing.db", with_password)
    assert "s3cr3t-pw" not in repr(sync)
    with pytest.raises(lite2pg.SyncError) as raised:
        sync.start(timeout=60)
    assert "missing.db" in str(raised.value)
    assert "s3cr3t-pw" not in str(raised.value)
    assert not sync.running


def test_start_times_out_naming_what_holds_it_and_leaves_nothing_running(sqlite_file: Path, postgres: str) -> None:
    unreachable = with_database("postgres://postgres@127.0.0.1:1", "nowhere")
    sync = lite2pg.Sync(sqlite_file, unreachable)
    with pytest.raises(lite2pg.SyncTimeout) as raised:
        sync.start(timeout=3)
    assert "first copy was not done within 3s" in str(raised.value)
    assert "127.0.0.1:1" in str(raised.value)
    assert not sync.running and children_named(os.getpid()) == []


def test_log_lines_reach_python_logging(sqlite_file: Path, postgres: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="lite2pg")
    with lite2pg.Sync(sqlite_file, postgres) as sync:
        with sqlite3.connect(sqlite_file) as conn:
            conn.execute("INSERT INTO notes (body) VALUES ('logged')")
        conn.close()
        sync.wait_caught_up()
    messages = [r.getMessage() for r in caplog.records if r.name == "lite2pg"]
    assert any(m.startswith("applied 1 changes") for m in messages), messages
    assert all("s3cr3t" not in m for m in messages)
