"""A Flask app on SQLite whose data lite2pg keeps in PostgreSQL.

    pip install lite2pg flask
    ENABLE_DB_SYNC=1 POSTGRES_DATABASE_URL=postgres://user@host/db flask --app app run
    curl -X POST -d body=hello localhost:5000/notes        # written to notes.db, then in PostgreSQL's notes
    curl localhost:5000/sync                               # where the sync stands

The sync starts with the app: with `gunicorn -w 4 'app:create_app()'` each worker calls `from_env().start()` and one
of them runs lite2pg (the others follow and take over if it ends). Without ENABLE_DB_SYNC the app runs unsynced.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Optional

from flask import Flask, g, jsonify, request

import lite2pg


def create_app(database: Optional[str] = None) -> Flask:
    app = Flask(__name__)
    app.config["DATABASE"] = database or os.environ.get("APP_DATABASE", "notes.db")
    create_schema(app.config["DATABASE"])
    sync = lite2pg.from_env(sqlite=app.config["DATABASE"])
    if sync is not None:
        sync.start()  # returns once PostgreSQL holds a first copy; stopped when the process exits
    app.extensions["lite2pg"] = sync

    @app.post("/notes")
    def add_note():
        cursor = db().execute("INSERT INTO notes (body) VALUES (?)", (request.form["body"],))
        db().commit()
        return jsonify(id=cursor.lastrowid), 201

    @app.delete("/notes/<int:note_id>")
    def delete_note(note_id: int):
        db().execute("DELETE FROM notes WHERE id = ?", (note_id,))
        db().commit()
        return "", 204

    @app.get("/notes")
    def list_notes():
        rows = db().execute("SELECT id, body FROM notes ORDER BY id").fetchall()
        return jsonify([{"id": id_, "body": body} for id_, body in rows])

    @app.get("/sync")
    def sync_status():
        if sync is None:
            return jsonify(enabled=False)
        status = sync.status()
        return jsonify(enabled=True, applied_seq=status["applied_seq"], lag_seconds=status["lag_seconds"])

    @app.teardown_appcontext
    def close_db(_exc: Optional[BaseException]) -> None:
        conn = g.pop("db", None)
        if conn is not None:
            conn.close()

    def db() -> sqlite3.Connection:
        if "db" not in g:
            g.db = sqlite3.connect(app.config["DATABASE"], timeout=30)
        return g.db

    return app


def create_schema(path: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")  # the app's writers go on while lite2pg reads
        conn.execute("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
    conn.close()
