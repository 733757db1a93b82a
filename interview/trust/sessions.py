"""Session lifetime: an idle timeout and an absolute lifetime, without losing tablet work.

A session records when it began and when its user last did something. A request after
either limit ends the session: pages send the person to the login page with a calm
message, and the tablet's API answers 401, so the tablet keeps every change in its outbox
and sends it after the next login (docs/sync.md).
"""

import secrets
from datetime import UTC, datetime

from flask import Flask, flash, g, request, session
from flask_babel import gettext as _
from flask_login import current_user, logout_user

from interview.store.extensions import db
from interview.trust import audit

STARTED = "_started"
SEEN = "_seen"
SID = "_sid"
SEEN_GRANULARITY = 30  # seconds


def _now() -> float:
    return datetime.now(UTC).timestamp()


def expired(
    started: float | None, seen: float | None, now: float, idle: int, absolute: int
) -> str | None:
    """Return why a session has ended ('idle' or 'absolute'), or None while it is valid."""
    if started is None or seen is None:
        return None
    if now - started > absolute:
        return "absolute"
    if now - seen > idle:
        return "idle"
    return None


def _is_activity() -> bool:
    # the tablet's background checks are not a person at work: only a sync that carries
    # changes, or any page or form, keeps the session from going idle
    if request.path.startswith("/api/"):
        if request.endpoint != "api.sync":
            return False
        body = request.get_json(silent=True)
        return isinstance(body, dict) and bool(body.get("changes"))
    return not request.path.startswith("/static/")


def start(now: float | None = None) -> None:
    """Mark the start of a fresh session (call right after login)."""
    now = _now() if now is None else now
    session[STARTED] = now
    session[SEEN] = now
    # names this session to the tablet, so a logout made offline later ends this session and
    # never a newer one (docs/sync.md, "Logging out")
    session[SID] = secrets.token_urlsafe(12)


def renew() -> None:
    """Drop everything the session holds but the UI language (call right before login)."""
    # a CSRF secret read before login (on a shared tablet, by the person before) must not stay
    # valid in the new session: Flask-WTF makes a new one when the next token is asked for
    lang = session.get("lang")
    session.clear()
    g.pop("csrf_token", None)
    if lang:
        session["lang"] = lang


def session_id() -> str | None:
    """Return this session's id (made at login), or None for a session from before ids."""
    return session.get(SID)


def _check(app: Flask):
    def check():
        if not current_user.is_authenticated or request.endpoint == "static":
            return None
        now = _now()
        why = expired(
            session.get(STARTED),
            session.get(SEEN),
            now,
            app.config["SESSION_IDLE_MINUTES"] * 60,
            app.config["SESSION_ABSOLUTE_HOURS"] * 3600,
        )
        if why is None:
            if session.get(STARTED) is None:
                # a session from before this rule: its clock starts now
                start(now)
            elif _is_activity() and now - (session.get(SEEN) or 0) >= SEEN_GRANULARITY:
                # to the half minute: marking every request would sign and send the session
                # cookie anew on each one, and idleness is counted in tens of minutes
                session[SEEN] = now
            return None
        audit.record("session_ended", "user", current_user.id, reason=why)
        db.session.commit()
        logout_user()
        lang = session.get("lang")
        session.clear()
        if lang:
            session["lang"] = lang
        if not request.path.startswith("/api/"):
            if why == "idle":
                flash(
                    _(
                        "You were logged out after a while without activity. Log in again "
                        "to go on; what this tablet holds is kept."
                    ),
                    "info",
                )
            else:
                flash(
                    _(
                        "Your session has ended. Log in again to go on; "
                        "what this tablet holds is kept."
                    ),
                    "info",
                )
        # the view now sees an anonymous user: login_required and the API's check answer
        return None

    return check


def init_app(app: Flask) -> None:
    """End sessions that have been idle, or open, for too long."""
    app.before_request(_check(app))
