"""Database set-up: SQLite pragmas for the embedded store, engine options per backend."""

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine

from .extensions import db


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cur = dbapi_connection.cursor()
    # WAL lets readers and one writer work at once; NORMAL is durable enough with WAL.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


def init_app(app: Flask) -> None:
    """Bind SQLAlchemy to the app and set SQLite pragmas on every new connection."""
    db.init_app(app)
    with app.app_context():
        engines = [db.engine, *(db.engines[k] for k in app.config["SQLALCHEMY_BINDS"])]
    for engine in engines:
        if engine.dialect.name == "sqlite":
            _listen_once(engine)


def _listen_once(engine: Engine) -> None:
    if not event.contains(engine, "connect", _sqlite_pragmas):
        event.listen(engine, "connect", _sqlite_pragmas)
