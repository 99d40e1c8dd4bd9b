"""The child never outlives the app, also when the app is SIGKILLed; several worker processes run one sync."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import List

import lite2pg
from conftest import children_named, pid_alive, pg_rows, wait_for

WORKER = Path(__file__).with_name("worker.py")


def start_worker(sqlite_file: Path, postgres: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(WORKER), str(sqlite_file), postgres], stdout=subprocess.PIPE, text=True)


def role(worker: subprocess.Popen) -> str:
    assert worker.stdout is not None
    return worker.stdout.readline().split()[0]


def stop_all(workers: List[subprocess.Popen]) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.kill()
        worker.wait()


def test_the_child_stops_when_the_app_is_killed(sqlite_file: Path, postgres: str) -> None:
    app = start_worker(sqlite_file, postgres)
    try:
        assert role(app) == "leader"
        [child] = children_named(app.pid)
        app.send_signal(signal.SIGKILL)
        app.wait()
        wait_for(lambda: not pid_alive(child), timeout=10, what="lite2pg to exit after its parent was killed")
        status = lite2pg.Sync(sqlite_file, postgres).status()
        assert status["daemon"] is None, "the source lock is released"
    finally:
        stop_all([app])


def test_the_child_stops_when_the_app_ends_on_sigterm(sqlite_file: Path, postgres: str) -> None:
    app = start_worker(sqlite_file, postgres)
    try:
        assert role(app) == "leader"
        [child] = children_named(app.pid)
        app.send_signal(signal.SIGTERM)  # Python's default: exits at once, no atexit handlers
        app.wait()
        wait_for(lambda: not pid_alive(child), timeout=10, what="lite2pg to exit after its parent ended")
    finally:
        stop_all([app])


def test_four_workers_run_one_sync_and_a_follower_takes_over(sqlite_file: Path, postgres: str) -> None:
    workers = [start_worker(sqlite_file, postgres) for _ in range(4)]
    try:
        roles = {worker.pid: role(worker) for worker in workers}
        assert sorted(roles.values()) == ["follower"] * 3 + ["leader"], roles
        assert sum(len(children_named(worker.pid)) for worker in workers) == 1, "one lite2pg process, not four"
        [leader] = [w for w in workers if roles[w.pid] == "leader"]
        followers = [w for w in workers if w is not leader]
        leader.send_signal(signal.SIGKILL)
        leader.wait()
        took_over = wait_for_any_line(followers, "took over")
        with sqlite3.connect(sqlite_file) as conn:
            conn.execute("INSERT INTO notes (body) VALUES ('after the leader died')")
        conn.close()
        watcher = lite2pg.Sync(sqlite_file, postgres)
        wait_for(lambda: watcher.status()["daemon"] is not None, what="the new leader's lite2pg to hold the source")
        watcher.wait_caught_up(timeout=30)
        assert watcher.verify()
        assert pg_rows(postgres, "SELECT count(*) FROM notes") == [(4,)]
        assert sum(len(children_named(w.pid)) for w in followers) == 1
        assert len(children_named(took_over.pid)) == 1
    finally:
        stop_all(workers)


def wait_for_any_line(workers: List[subprocess.Popen], line: str) -> subprocess.Popen:
    """The worker that prints `line` (the others print nothing more)."""
    import selectors

    chooser = selectors.DefaultSelector()
    for worker in workers:
        chooser.register(worker.stdout, selectors.EVENT_READ, worker)
    events = chooser.select(timeout=30)
    assert events, f"no worker printed {line!r} within 30s"
    worker = events[0][0].data
    assert worker.stdout.readline().strip() == line
    return worker


def test_a_second_sync_in_one_process_follows(sqlite_file: Path, postgres: str) -> None:
    with lite2pg.Sync(sqlite_file, postgres) as first, lite2pg.Sync(sqlite_file, postgres) as second:
        assert first.leader and not second.leader and not second.running
        assert len(children_named(os.getpid())) == 1
        assert "following" in repr(second)
    assert children_named(os.getpid()) == []
