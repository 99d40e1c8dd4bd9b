"""Applications that start a Sync themselves: a SQLAlchemy ORM app (examples/sqlalchemy_app.py), the Flask example (test client) and the Django
example (its real server, `manage.py runserver`), each writing and ending equal in PostgreSQL."""

from __future__ import annotations

import datetime
import importlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

import lite2pg
from conftest import ROOT, children_named, pg_rows, pid_alive, wait_for

EXAMPLES = ROOT / "examples"


@pytest.fixture
def example_path() -> Iterator[None]:
    sys.path[:0] = [str(EXAMPLES), str(EXAMPLES / "python" / "flask_app")]
    try:
        yield
    finally:
        del sys.path[:2]


def test_a_sqlalchemy_app_starts_a_sync_writes_waits_verifies_and_stops(
    tmp_path: Path, postgres: str, example_path: None
) -> None:
    shop = importlib.import_module("sqlalchemy_app")
    path = tmp_path / "shop.db"
    shop.main(str(path), 50)  # the tables and a first set of rows, before the sync starts
    with lite2pg.Sync(path, postgres) as sync:
        shop.main(str(path), 400)  # the ORM writes while lite2pg streams
        sync.wait_caught_up(timeout=60)
        assert sync.verify() is True
    for table in ("customers", "orders"):
        with sqlite3.connect(path) as conn:
            rows = conn.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()
        conn.close()
        copied = [tuple(as_sqlite_stores(v) for v in row) for row in pg_rows(postgres, f"SELECT * FROM {table} ORDER BY id")]
        assert rows and rows == copied, table


def as_sqlite_stores(value: object) -> object:
    """A PostgreSQL value as SQLAlchemy stored it in SQLite: bytes for bytea, and a DateTime column (timestamptz in
    PostgreSQL, the instant) as its naive UTC text, microseconds always written."""
    if isinstance(value, memoryview):
        return bytes(value)
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


def test_the_flask_example_syncs_what_its_requests_write(
    tmp_path: Path, postgres: str, example_path: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENABLE_DB_SYNC", "1")
    monkeypatch.setenv("POSTGRES_DATABASE_URL", postgres)
    flask_app = importlib.import_module("app")
    app = flask_app.create_app(str(tmp_path / "notes.db"))
    sync = app.extensions["lite2pg"]
    try:
        client = app.test_client()
        ids = [client.post("/notes", data={"body": f"note {n}"}).get_json()["id"] for n in range(20)]
        assert client.delete(f"/notes/{ids[0]}").status_code == 204
        sync.wait_caught_up(timeout=30)
        assert client.get("/sync").get_json()["enabled"] is True
        assert sync.verify() is True
        assert pg_rows(postgres, "SELECT count(*), min(body) FROM notes") == [(19, "note 1")]
    finally:
        sync.stop()


def test_the_django_example_served_by_runserver_syncs_and_stops_with_it(tmp_path: Path, postgres: str) -> None:
    project = EXAMPLES / "python" / "django_app"
    database = tmp_path / "notes.db"
    env = {**os.environ, "APP_DATABASE": str(database), "ENABLE_DB_SYNC": "true", "POSTGRES_DATABASE_URL": postgres}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=project, env=env, check=True)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"], cwd=project, env=env
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: answers(base + "/sync"), timeout=60, what="the Django server")
        for n in range(10):
            body = urllib.parse.urlencode({"body": f"django {n}", "pinned": "1" if n % 2 else "0"}).encode()
            urllib.request.urlopen(base + "/notes", data=body).read()
        assert json.load(urllib.request.urlopen(base + "/sync"))["enabled"] is True
        [child] = children_named(server.pid)
        watcher = lite2pg.Sync(database, postgres)
        watcher.wait_caught_up(timeout=30)
        assert watcher.verify() is True
        assert pg_rows(postgres, "SELECT count(*), count(*) FILTER (WHERE pinned) FROM notes_note") == [(10, 5)]
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        wait_for(lambda: not pid_alive(child), timeout=10, what="lite2pg to stop with the server")
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).read()
        return True
    except OSError:
        return False
