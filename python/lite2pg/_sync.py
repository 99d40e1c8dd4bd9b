"""``Sync``: runs ``lite2pg run`` as a child process of the application and talks to it through the command line."""

from __future__ import annotations

import atexit
import collections
import json
import logging
import os
import signal
import subprocess
import threading
import time
import urllib.parse
from typing import IO, Any, Deque, Dict, List, Mapping, Optional, Sequence, Set, Union

from ._binary import find_binary
from ._errors import NotEqual, SyncError, SyncTimeout

logger = logging.getLogger("lite2pg")

#: Options every command takes (``status`` and ``verify`` must see the same tables and schema as ``run``).
COMMON_OPTIONS = ("schema", "tables", "exclude", "source_id", "config", "on_misfit", "dropped_tables", "log_level")
#: Options only ``lite2pg run`` takes.
RUN_OPTIONS = ("jobs", "pool_size", "metrics_addr", "health_max_lag", "health_max_outage")

#: How often waits ask ``lite2pg status`` where the sync stands.
POLL_SECONDS = 0.2
#: How often a follower tries to take over the lock of a sync another process runs.
FOLLOW_SECONDS = 1.0
#: Lines of lite2pg's stderr kept for the message of a ``SyncError``.
KEPT_LINES = 20

PathLike = Union[str, "os.PathLike[str]"]


def masked(url: Optional[str]) -> Optional[str]:
    """The URL with its password replaced by ``***``, for reprs and messages."""
    if not url:
        return url
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


class Sync:
    """Keeps PostgreSQL equal to one SQLite file while the application runs.

    ``Sync(sqlite="app.db", postgres="postgres://user:pw@host/db", schema="app")`` takes the options of
    ``lite2pg run`` by their flag names with ``_`` for ``-`` (``tables=["a", "b"]``, ``on_misfit="widen"``,
    ``metrics_addr="127.0.0.1:9187"``). ``postgres=None`` lets lite2pg find the URL as its command line does
    (``LITE2PG_POSTGRES``, ``POSTGRES_DATABASE_URL``, ``lite2pg.toml``). ``env`` is the environment the
    commands run in (default: a copy of this process's, taken now). ``lock=False`` skips the lock file that makes
    one process of several (gunicorn workers) the one that runs the sync. ``binary`` is the lite2pg to run
    (default: ``find_binary()``).
    """

    def __init__(
        self,
        sqlite: PathLike,
        postgres: Optional[str] = None,
        *,
        env: Optional[Mapping[str, str]] = None,
        lock: bool = True,
        binary: Optional[str] = None,
        **options: Any,
    ) -> None:
        unknown = sorted(set(options) - set(COMMON_OPTIONS) - set(RUN_OPTIONS))
        if unknown:
            known = ", ".join(COMMON_OPTIONS + RUN_OPTIONS)
            raise TypeError(f"unknown lite2pg option(s) {', '.join(unknown)}; known: {known}")
        self.sqlite = os.fspath(sqlite)
        self._postgres = postgres
        self._options = options
        self._env = dict(os.environ if env is None else env)
        self._lock_wanted = lock
        self._binary = binary
        self._process: Optional[subprocess.Popen[bytes]] = None
        self._lines: Deque[str] = collections.deque(maxlen=KEPT_LINES)
        self._lock_file: Optional[IO[bytes]] = None
        self._follower: Optional[threading.Thread] = None
        self._log_reader: Optional[threading.Thread] = None
        self._stopping = threading.Event()
        self._mutex = threading.Lock()
        self._owner_pid = os.getpid()

    def __repr__(self) -> str:
        role = "running" if self.running else ("following" if self._follower else "stopped")
        return f"<lite2pg.Sync {self.sqlite} -> {masked(self._postgres) or '(from the environment)'} {role}>"

    # -- life cycle ------------------------------------------------------------------------------------------

    def start(self, timeout: Optional[float] = None) -> "Sync":
        """Starts ``lite2pg run`` and returns once the first copy is in PostgreSQL.

        When another process already runs the sync of this file (another worker of the same application), this
        one becomes a quiet follower: it returns at once and takes over only if that process ends. Raises
        ``SyncError`` with lite2pg's message when it stops, ``SyncTimeout`` (after stopping it) when the first
        copy is not done within ``timeout`` seconds.
        """
        with self._mutex:
            if self._process is not None or self._follower is not None:
                return self
            self._stopping.clear()
            if not self._take_lock():
                self._follow()
                return self
            self._launch()
        try:
            self._wait_first_copy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stops the sync: SIGTERM (lite2pg finishes its batch), then SIGKILL after ``timeout`` seconds."""
        if os.getpid() != self._owner_pid:
            return  # a forked copy of this object (a worker) does not own the parent's child
        self._stopping.set()
        follower = self._follower
        if follower is not None and follower is not threading.current_thread():
            follower.join()
        with self._mutex:
            self._follower = None
            process, self._process = self._process, None
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    logger.warning("lite2pg did not stop within %.0fs of SIGTERM; killing it", timeout)
                    process.kill()
                    process.wait()
            self._release_lock()
        _running.discard(self)

    def __enter__(self) -> "Sync":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether this process's ``lite2pg run`` is alive (False for a follower)."""
        process = self._process
        return process is not None and process.poll() is None

    @property
    def leader(self) -> bool:
        """Whether this process runs the sync (a follower leaves it to another process)."""
        return self._process is not None

    # -- questions -------------------------------------------------------------------------------------------

    def status(self, brief: bool = False) -> Dict[str, Any]:
        """The output of ``lite2pg status --json``: ``applied_seq``, ``newest_seq``, ``pending_changes``,
        ``lag_seconds``, ``tables_to_copy`` (still to be copied whole), ``rejects``, ``last_error``, ``daemon`` (who
        holds the source), ``snapshot_done``, and per table its row counts on both sides. ``brief=True`` leaves out the tables (counting them reads every row).
        PostgreSQL being unreachable is in ``postgres_error``, not raised."""
        code, report, stderr = self._run_json(["status", "--brief"] if brief else ["status"])
        if report is None:
            raise SyncError(_failure("lite2pg status", code, stderr))
        return report

    def wait_caught_up(self, timeout: float = 60.0) -> Dict[str, Any]:
        """Waits until everything committed to SQLite before the call is in PostgreSQL; returns the (brief) status.

        Raises ``SyncTimeout`` after ``timeout`` seconds (with the last error lite2pg recorded), ``SyncError`` when
        this process's ``lite2pg run`` stopped."""
        deadline = time.monotonic() + timeout
        target: Optional[int] = None
        while True:
            self._raise_if_died()
            status = self.status(brief=True)
            if target is None:
                target = status["newest_seq"]
            applied = status.get("applied_seq")
            # A table still to be copied whole (the first copy into an app's existing tables) is not caught up.
            copied = not status.get("tables_to_copy")
            if status.get("snapshot_done") and copied and (status.get("pending_changes") == 0 or (applied or 0) >= target):
                return status
            if time.monotonic() > deadline:
                raise SyncTimeout(f"not caught up after {timeout:.0f}s: {_where(status)}")
            time.sleep(POLL_SECONDS)

    def verify(self, repair: bool = False) -> bool:
        """Compares every table value by value (``lite2pg verify --json``); True when equal.

        Raises ``NotEqual`` (its ``report`` is the JSON output, its ``differing_tables`` the tables that differ)
        when rows differ; with ``repair=True`` differing rows are re-applied first and only what still differs
        raises."""
        code, report, stderr = self._run_json(["verify", "--repair"] if repair else ["verify"])
        if report is None:
            raise SyncError(_failure("lite2pg verify", code, stderr))
        if code == 0:
            return True
        raise NotEqual(report)

    # -- the child process -----------------------------------------------------------------------------------

    def _command(self, subcommand: Sequence[str], options: Sequence[str] = ()) -> List[str]:
        """The command line: the common options, the subcommand, then its own ``options`` of ``self._options``."""
        binary = self._binary or find_binary()
        args = [binary, "--sqlite", self.sqlite]
        url, _ = self._connection()
        if url is not None:
            args += ["--postgres", url]
        args += _flags({k: v for k, v in self._options.items() if k in COMMON_OPTIONS})
        return args + list(subcommand) + _flags({k: v for k, v in self._options.items() if k in options})

    def _connection(self) -> "tuple[Optional[str], Dict[str, str]]":
        """The URL to pass on the command line and the environment to run with. A password moves from the URL to
        PGPASSWORD: a command line is visible to every user of the machine, an environment only to its owner."""
        env = dict(self._env)
        url = self._postgres
        if url is None:
            return None, env
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("postgres", "postgresql"):
            env["LITE2PG_POSTGRES"] = url  # a key=value connection string: passed whole, out of sight
            return None, env
        if parts.password is not None:
            env["PGPASSWORD"] = urllib.parse.unquote(parts.password)
            host = parts.netloc.rsplit("@", 1)[1]
            user = parts.username or ""
            url = urllib.parse.urlunsplit(parts._replace(netloc=f"{user}@{host}" if user else host))
        return url, env

    def _run_json(self, subcommand: List[str]) -> "tuple[int, Optional[Dict[str, Any]], str]":
        """Runs a command with ``--json``; its parsed output is None when it printed none (it failed)."""
        _, env = self._connection()
        args = self._command([*subcommand, "--json"])
        done = subprocess.run(args, env=env, stdin=subprocess.DEVNULL, capture_output=True)
        stderr = done.stderr.decode(errors="replace")
        try:
            return done.returncode, json.loads(done.stdout), stderr
        except ValueError:
            return done.returncode, None, stderr

    def _launch(self) -> None:
        _, env = self._connection()
        args = self._command(["run", "--exit-with-parent", "--log-format", "json"], RUN_OPTIONS)
        self._lines.clear()
        process = subprocess.Popen(
            args,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            # Its own session: a Ctrl-C meant for the application reaches the application, which stops it.
            start_new_session=True,
        )
        self._process = process
        self._log_reader = threading.Thread(target=self._forward_logs, args=(process,), name="lite2pg-logs", daemon=True)
        self._log_reader.start()
        _running.add(self)

    def _forward_logs(self, process: "subprocess.Popen[bytes]") -> None:
        """Passes lite2pg's log lines to the ``lite2pg`` logger at their level; keeps the last ones for errors."""
        assert process.stderr is not None
        for raw in process.stderr:
            line = raw.decode(errors="replace").rstrip()
            if not line:
                continue
            try:
                record = json.loads(line)
                level = _LEVELS.get(str(record.get("level", "")).upper(), logging.INFO)
                message = record.get("fields", {}).get("message", line)
            except (ValueError, AttributeError):
                level, message = logging.ERROR, line  # lite2pg prints its final error as plain text
            self._lines.append(message)
            logger.log(level, "%s", message)
        code = process.wait()
        if not self._stopping.is_set():
            logger.error("lite2pg run for %s exited with status %s", self.sqlite, code)

    def _raise_if_died(self) -> None:
        process = self._process
        if process is not None and process.poll() is not None:
            if self._log_reader is not None:
                self._log_reader.join(timeout=5)  # its last lines hold lite2pg's error
            raise SyncError(_failure("lite2pg run", process.returncode, "\n".join(self._lines)))

    def _wait_first_copy(self, timeout: Optional[float]) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        status: Optional[Dict[str, Any]] = None
        while True:
            self._raise_if_died()
            try:
                status = self.status(brief=True)
                if status.get("snapshot_done"):
                    return
            except SyncError:
                pass  # capture is not installed yet: the child is starting
            if deadline is not None and time.monotonic() > deadline:
                where = _where(status) if status else "; ".join(self._lines) or "no output"
                raise SyncTimeout(f"the first copy was not done within {timeout:.0f}s: {where}")
            time.sleep(POLL_SECONDS)

    # -- one sync per file, however many processes ---------------------------------------------------------------

    def _lock_path(self) -> str:
        return os.path.realpath(self.sqlite) + "-lite2pg.lock"

    def _take_lock(self) -> bool:
        """Takes the lock file beside the SQLite file without waiting; True when this process runs the sync.

        Without fcntl (Windows) or a writable directory there is no lock file: every process starts lite2pg, and
        lite2pg's own source lock in PostgreSQL keeps the extra ones waiting as standbys."""
        if not self._lock_wanted:
            return True
        try:
            import fcntl
        except ImportError:
            return True
        if self._lock_file is None:
            try:
                self._lock_file = open(self._lock_path(), "ab")
            except OSError as err:
                logger.debug("no lock file beside %s (%s); lite2pg's own lock decides", self.sqlite, err)
                return True
        try:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _release_lock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing releases the flock
            self._lock_file = None

    def _follow(self) -> None:
        """Waits in a thread for the process running the sync to end, then runs it here."""
        logger.info("another process runs the sync of %s; this one follows", self.sqlite)

        def take_over() -> None:
            while not self._stopping.wait(FOLLOW_SECONDS):
                with self._mutex:
                    if self._stopping.is_set() or not self._take_lock():
                        continue
                    logger.info("the process running the sync of %s ended; running it here", self.sqlite)
                    self._launch()
                    return

        self._follower = threading.Thread(target=take_over, name="lite2pg-follower", daemon=True)
        self._follower.start()


_LEVELS = {"ERROR": logging.ERROR, "WARN": logging.WARNING, "INFO": logging.INFO, "DEBUG": logging.DEBUG}


def _flags(options: Mapping[str, Any]) -> List[str]:
    """``{"on_misfit": "widen", "tables": ["a", "b"]}`` -> ``["--on-misfit", "widen", "--tables", "a,b"]``."""
    flags: List[str] = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            flags.append(flag)
        elif isinstance(value, (list, tuple)):
            flags += [flag, ",".join(str(v) for v in value)]
        else:
            flags += [flag, os.fspath(value) if isinstance(value, os.PathLike) else str(value)]
    return flags


def _failure(what: str, code: Optional[int], stderr: str) -> str:
    message = stderr.strip() or "no message"
    return f"{what} failed (exit status {code}): {message}"


def _where(status: Mapping[str, Any]) -> str:
    parts = [f"applied {status.get('applied_seq')} of {status.get('newest_seq')}"]
    for key in ("postgres_error", "last_error"):
        if status.get(key):
            parts.append(f"{key.replace('_', ' ')}: {status[key]}")
    return "; ".join(parts)


#: The syncs this process runs, stopped when the interpreter exits normally (when it is killed, lite2pg notices by
#: itself: ``--exit-with-parent``).
_running: Set[Sync] = set()


@atexit.register
def _stop_all() -> None:
    for sync in list(_running):
        sync.stop()
