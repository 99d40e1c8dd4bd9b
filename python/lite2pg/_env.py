"""``from_env``: the sync an application's environment asks for, with the settings of the ORM hooks lite2pg replaces."""

from __future__ import annotations

import os
import urllib.parse
from typing import Any, Mapping, Optional

from ._errors import SyncError
from ._sync import Sync

TRUTHY = ("1", "true", "yes", "on")


def from_env(
    sqlite: Optional[str] = None,
    postgres: Optional[str] = None,
    *,
    environ: Optional[Mapping[str, str]] = None,
    **options: Any,
) -> Optional[Sync]:
    """The ``Sync`` the environment asks for, or None when ``ENABLE_DB_SYNC`` is not 1/true/yes/on.

    PostgreSQL: the ``postgres`` argument, else ``LITE2PG_POSTGRES``, else ``POSTGRES_DATABASE_URL``.
    SQLite: the ``sqlite`` argument, else ``LITE2PG_SQLITE``, else a ``sqlite:///…`` URL in ``DATABASE_URL`` or
    ``SQLALCHEMY_DATABASE_URI`` (what Flask-SQLAlchemy apps set). The other ``LITE2PG_*`` settings
    (``LITE2PG_SCHEMA``, ``LITE2PG_SOURCE_ID``, ``LITE2PG_CONFIG``, ``LITE2PG_METRICS_ADDR``, …) are read by lite2pg
    itself; ``options`` are passed to ``Sync``. Raises ``SyncError`` when sync is enabled but a setting is missing.
    """
    env = os.environ if environ is None else environ
    if env.get("ENABLE_DB_SYNC", "").strip().lower() not in TRUTHY:
        return None
    path = sqlite or env.get("LITE2PG_SQLITE") or _sqlite_path(env.get("DATABASE_URL") or env.get("SQLALCHEMY_DATABASE_URI"))
    if not path:
        raise SyncError(
            "ENABLE_DB_SYNC is on but no SQLite file is named: set LITE2PG_SQLITE (or a sqlite:/// DATABASE_URL)"
        )
    url = postgres or env.get("LITE2PG_POSTGRES") or env.get("POSTGRES_DATABASE_URL")
    if not url:
        raise SyncError("ENABLE_DB_SYNC is on but no PostgreSQL is named: set POSTGRES_DATABASE_URL (or LITE2PG_POSTGRES)")
    return Sync(path, url, env=env, **options)


def _sqlite_path(url: Optional[str]) -> Optional[str]:
    """``sqlite:///app.db`` -> ``app.db``, ``sqlite:////var/app.db`` -> ``/var/app.db``; None for other URLs."""
    if not url:
        return None
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.split("+")[0] != "sqlite" or not parts.path.startswith("/") or parts.path == "/:memory:":
        return None
    return urllib.parse.unquote(parts.path[1:]) or None
