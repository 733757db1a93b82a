"""Database set-up: SQLite pragmas for the embedded store, engine options per backend."""

from flask import Flask, g, has_app_context
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from .extensions import db


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cur = dbapi_connection.cursor()
    # WAL lets readers and one writer work at once; NORMAL is durable enough with WAL.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


def _note_writes(_conn, _cursor, statement: str, *_args) -> None:
    # anything but a plain read (an insert, an update, a savepoint, a SET) marks the request
    if has_app_context() and not g.get("store_wrote"):
        if statement.lstrip()[:6].upper() != "SELECT":
            g.store_wrote = True


def end_reads(session: Session, wrote: bool, failed: bool) -> str:
    """End a request's transaction: COMMIT when it only read, else leave it to the rollback.

    psycopg forgets its prepared statements at every ROLLBACK, and Flask-SQLAlchemy ends each
    request with one, so PostgreSQL planned every statement of every page anew. A
    transaction that wrote nothing ends the same way with COMMIT, and keeps them.
    Returns what was done ("commit" or "rollback").
    """
    if failed or wrote or session.new or session.dirty or session.deleted:
        return "rollback"
    if not session.in_transaction():
        return "rollback"
    # the session is closed next; what it loaded stays as it was read (as after a rollback
    # and close), for code that still holds it after the request or app context
    expire, session.expire_on_commit = session.expire_on_commit, False
    try:
        session.commit()
    except Exception:
        session.rollback()
        return "rollback"
    finally:
        session.expire_on_commit = expire
    return "commit"


def init_app(app: Flask) -> None:
    """Bind SQLAlchemy to the app and set SQLite pragmas on every new connection."""
    db.init_app(app)
    with app.app_context():
        engines = [db.engine, *(db.engines[k] for k in app.config["SQLALCHEMY_BINDS"])]
    for engine in engines:
        if engine.dialect.name == "sqlite":
            _listen_once(engine)
    if any(engine.dialect.name == "postgresql" for engine in engines):
        for engine in engines:
            if not event.contains(engine, "before_cursor_execute", _note_writes):
                event.listen(engine, "before_cursor_execute", _note_writes)

        # registered after Flask-SQLAlchemy's own teardown, so it runs before it
        @app.teardown_appcontext
        def _end_reads(exc) -> None:
            end_reads(db.session(), bool(g.get("store_wrote")), exc is not None)


def _listen_once(engine: Engine) -> None:
    if not event.contains(engine, "connect", _sqlite_pragmas):
        event.listen(engine, "connect", _sqlite_pragmas)
