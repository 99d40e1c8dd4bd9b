"""The exceptions the package raises."""

from __future__ import annotations

from typing import Any, Dict, List


class SyncError(Exception):
    """lite2pg failed or could not be run; the message is lite2pg's own (never with a password in it)."""


class SyncTimeout(SyncError, TimeoutError):
    """A wait (``start``, ``wait_caught_up``) took longer than its timeout."""


class NotEqual(SyncError):
    """``verify()`` found rows that differ between SQLite and PostgreSQL.

    ``report`` is the parsed output of ``lite2pg verify --json``; ``differing_tables`` lists the tables
    that are not equal, each a dict with ``missing``, ``extra``, ``differing`` counts and up to ten ``examples``.
    """

    def __init__(self, report: Dict[str, Any]) -> None:
        self.report = report
        self.differing_tables: List[Dict[str, Any]] = [
            t for t in report.get("tables", []) if t.get("missing") or t.get("extra") or t.get("differing")
        ]
        summary = ", ".join(
            f"{t['table']}: {t['missing']} missing, {t['extra']} extra, {t['differing']} differing"
            for t in self.differing_tables
        )
        super().__init__(f"SQLite and PostgreSQL differ ({summary}); `lite2pg verify --repair` re-applies them")
