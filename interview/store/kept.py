"""The desk's aggregate figures, kept in each worker for a short while.

At a study's full size (70 teams, 100,000 notes) the progress page and the theme matrix count
every participant, interview and tagged note of the coordinator's teams. Counting on each
page view would make the desk slow exactly when the study is busiest, so each worker keeps
what it rendered:
- for `FIGURES_FRESH_SECONDS` (30) whatever happens meanwhile: under a stream of syncs the
  figures are recounted at most twice a minute per worker;
- for `FIGURES_UNCHANGED_SECONDS` (300) while the store has not changed: nothing was synced,
  saved or audited since (the highest update-log and audit-log numbers are the same).
Every page says when its figures were counted. Setting both to 0 counts on every view.
What is kept holds counts and team names only, never research text or identity data.
"""

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from interview.store.models import AuditEvent, UpdateLog

MAX_ENTRIES = 256


def version_columns() -> tuple:
    """Return the two columns of the store's version, to read beside other columns."""
    return (
        select(func.max(UpdateLog.seq)).scalar_subquery(),
        select(func.max(AuditEvent.id)).scalar_subquery(),
    )


# built once: it is asked on every desk page
_VERSION = select(*version_columns())


def store_version(session: Session) -> tuple[int, int]:
    """Return numbers that change whenever anything is synced, saved or audited."""
    # on the session's connection, without the ORM's handling a plain pair of numbers needs not
    row = session.connection().execute(_VERSION).one()
    return (row[0] or 0, row[1] or 0)


class Kept:
    """Results kept per key with the time and store version they were made at."""

    def __init__(self):
        self._entries: dict[Hashable, tuple[Any, float, tuple[int, int]]] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(
        self,
        key: Hashable,
        build: Callable[[], Any],
        session: Session,
        fresh: float,
        unchanged: float,
    ) -> Any:
        """Return a kept result for `key` if still good, else `build()` (and keep it)."""
        if fresh <= 0 and unchanged <= 0:
            return build()
        now = time.monotonic()
        version = store_version(session)
        entry = self._entries.get(key)
        if entry is not None:
            value, made_at, made_version = entry
            age = now - made_at
            if age < fresh or (made_version == version and age < unchanged):
                self.hits += 1
                return value
        self.misses += 1
        value = build()
        with self._lock:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[key] = (value, now, version)
        return value

    def clear(self) -> None:
        """Forget everything (after a change this worker knows the others will see late)."""
        with self._lock:
            self._entries.clear()


def kept(key: Hashable, build: Callable[[], Any], session: Session) -> Any:
    """Return `build()`, or what the current app kept for `key` (see the module's rules)."""
    app = current_app._get_current_object()
    return app.extensions["kept_figures"].get(
        key,
        build,
        session,
        app.config["FIGURES_FRESH_SECONDS"],
        app.config["FIGURES_UNCHANGED_SECONDS"],
    )


def init_app(app) -> None:
    """Give the app its store of kept figures."""
    app.config.setdefault("FIGURES_FRESH_SECONDS", 30)
    app.config.setdefault("FIGURES_UNCHANGED_SECONDS", 300)
    app.extensions["kept_figures"] = Kept()
