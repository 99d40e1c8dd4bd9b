"""lite2pg for Python applications: run the sync of a SQLite file to PostgreSQL beside the app.

    import lite2pg
    with lite2pg.Sync(sqlite="app.db", postgres="postgres://app@db/app") as sync:
        ...                       # the application writes to app.db
        sync.wait_caught_up()
        sync.verify()             # True, or raises lite2pg.NotEqual with the differences

``lite2pg.from_env()`` builds the same from ``ENABLE_DB_SYNC``, ``POSTGRES_DATABASE_URL`` and ``LITE2PG_*``.
The ``lite2pg`` command itself is installed with this package (``python -m lite2pg`` runs it too).
"""

from ._binary import find_binary
from ._env import from_env
from ._errors import NotEqual, SyncError, SyncTimeout
from ._sync import Sync

__all__ = ["Sync", "SyncError", "SyncTimeout", "NotEqual", "from_env", "find_binary"]
