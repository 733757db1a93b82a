"""Database set-up: SQLite pragmas for the embedded store, engine options per backend."""

import logging
import sqlite3
from collections.abc import Iterable

from flask import Flask, g, has_app_context
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from interview.store.extensions import db

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000
# a checkpoint after a withdrawal waits this long for a reader, then leaves the rest to a
# later one rather than hold up the coordinator's page
CHECKPOINT_WAIT_MS = 1000


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cur = dbapi_connection.cursor()
    # WAL lets readers and one writer work at once; NORMAL is durable enough with WAL.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    # deleted rows and replaced values are overwritten with zeros, so a withdrawn
    # participant's sealed text does not stay readable in freed space of the file
    cur.execute("PRAGMA secure_delete=ON")
    cur.close()


def scrub_sqlite_files(binds: Iterable[str | None] = (None, "identity")) -> bool:
    """Checkpoint and truncate the WAL of each SQLite store; return whether all of them finished.

    The WAL keeps the old copies of the pages a deletion changed until a checkpoint copies the
    new ones back; TRUNCATE then empties it. Run outside any transaction, after the commit.
    PostgreSQL stores are left alone (docs/data-protection.md §8).
    """
    done = True
    for bind in binds:
        engine = db.engines[bind]
        if engine.dialect.name != "sqlite":
            continue
        name = bind or "case"
        try:
            with engine.connect() as conn:
                raw = conn.connection.driver_connection
                raw.execute(f"PRAGMA busy_timeout={CHECKPOINT_WAIT_MS}")
                try:
                    busy, _log_frames, _copied = raw.execute(
                        "PRAGMA wal_checkpoint(TRUNCATE)"
                    ).fetchone()
                finally:
                    raw.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        except (sqlite3.Error, DBAPIError) as exc:
            # locked or busy past the wait: the deletion is committed all the same
            log.info("WAL checkpoint of the %s store failed: %s", name, type(exc).__name__)
            done = False
            continue
        if busy:
            # another connection is reading: a later checkpoint (or SQLite's own) finishes it
            log.info("WAL checkpoint of the %s store left for later: a reader was busy", name)
            done = False
    return done


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
