"""from_env: the settings of the ORM hooks lite2pg replaces, and LITE2PG_*."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import lite2pg
from conftest import pg_rows


@pytest.mark.parametrize("value", ["", "0", "false", "no", "off", "nonsense"])
def test_disabled_gives_none(value: str) -> None:
    env = {"ENABLE_DB_SYNC": value, "POSTGRES_DATABASE_URL": "postgres://u@h/d", "LITE2PG_SQLITE": "app.db"}
    assert lite2pg.from_env(environ=env) is None
    assert lite2pg.from_env(environ={}) is None


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "yes", "on", " On "])
def test_enabled_by_truthy_values(value: str) -> None:
    env = {"ENABLE_DB_SYNC": value, "POSTGRES_DATABASE_URL": "postgres://u:pw@h/d", "LITE2PG_SQLITE": "app.db"}
    sync = lite2pg.from_env(environ=env)
    assert sync is not None and sync.sqlite == "app.db"
    assert "pw" not in repr(sync) and "postgres://u:***@h/d" in repr(sync)


def test_sqlite_from_database_urls_and_arguments_first() -> None:
    base = {"ENABLE_DB_SYNC": "1", "POSTGRES_DATABASE_URL": "postgres://u@h/d"}
    assert lite2pg.from_env(environ={**base, "DATABASE_URL": "sqlite:///instance/app.db"}).sqlite == "instance/app.db"
    assert lite2pg.from_env(environ={**base, "SQLALCHEMY_DATABASE_URI": "sqlite:////var/app.db"}).sqlite == "/var/app.db"
    assert lite2pg.from_env("given.db", environ={**base, "LITE2PG_SQLITE": "env.db"}).sqlite == "given.db"
    assert lite2pg.from_env(environ={**base, "LITE2PG_SQLITE": "env.db", "DATABASE_URL": "sqlite:///u.db"}).sqlite == "env.db"


def test_lite2pg_postgres_wins_over_postgres_database_url() -> None:
    env = {"ENABLE_DB_SYNC": "1", "LITE2PG_SQLITE": "a.db", "POSTGRES_DATABASE_URL": "postgres://old@h/d",
           "LITE2PG_POSTGRES": "postgres://new@h/d"}
    assert "new@h" in repr(lite2pg.from_env(environ=env))


@pytest.mark.parametrize(
    "env, missing",
    [
        ({"POSTGRES_DATABASE_URL": "postgres://u@h/d"}, "no SQLite file"),
        ({"POSTGRES_DATABASE_URL": "postgres://u@h/d", "DATABASE_URL": "postgresql://u@h/d"}, "no SQLite file"),
        ({"LITE2PG_SQLITE": "a.db"}, "no PostgreSQL"),
    ],
)
def test_enabled_without_a_setting_says_which(env: dict, missing: str) -> None:
    with pytest.raises(lite2pg.SyncError, match=missing):
        lite2pg.from_env(environ={"ENABLE_DB_SYNC": "yes", **env})


def test_lite2pg_settings_reach_lite2pg(sqlite_file: Path, postgres: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENABLE_DB_SYNC", "true")
    monkeypatch.setenv("POSTGRES_DATABASE_URL", postgres)
    monkeypatch.setenv("LITE2PG_SQLITE", str(sqlite_file))
    monkeypatch.setenv("LITE2PG_SCHEMA", "from_env")
    sync = lite2pg.from_env()
    assert sync is not None
    with sync:
        with sqlite3.connect(sqlite_file) as conn:
            conn.execute("INSERT INTO notes (body) VALUES ('env')")
        conn.close()
        sync.wait_caught_up()
        assert sync.verify()
    assert pg_rows(postgres, "SELECT count(*) FROM from_env.notes") == [(4,)]
