"""Fixtures: a PostgreSQL database per test (LITE2PG_TEST_POSTGRES, else 127.0.0.1:5432 user postgres), a SQLite
file per test, and helpers to read PostgreSQL. The lite2pg binary is the one installed with the package under test."""

from __future__ import annotations

import os
import sqlite3
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Callable, Iterator, List, Tuple

import psycopg2
import pytest

import lite2pg

ROOT = Path(__file__).resolve().parents[2]
SERVER = os.environ.get("LITE2PG_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/postgres")


def with_database(url: str, dbname: str) -> str:
    return urllib.parse.urlunsplit(urllib.parse.urlsplit(url)._replace(path="/" + dbname))


@pytest.fixture
def postgres() -> Iterator[str]:
    """The URL of a fresh database, dropped after the test (with whatever still connects to it)."""
    dbname = "lite2pg_py_" + uuid.uuid4().hex[:12]
    admin = psycopg2.connect(SERVER)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{dbname}"')
    try:
        yield with_database(SERVER, dbname)
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Path:
    """A SQLite file in WAL mode with one table of three rows."""
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL, score REAL)")
        conn.executemany("INSERT INTO notes (body, score) VALUES (?, ?)", [("a", 1.5), ("b", None), ("c", -0.25)])
    conn.close()
    return path


def pg_rows(url: str, sql: str) -> List[Tuple]:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(sql)
        rows = cur.fetchall()
    conn.close()
    return rows


def wait_for(condition: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def pid_alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def children_named(pid: int, name: str = "lite2pg") -> List[int]:
    """Pids of the direct children of `pid` running `name`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and comm == name and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found
