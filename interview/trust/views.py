"""Logging in and out; a session lives only as long as the user's session version."""

from datetime import UTC
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import func, select

from interview.store.extensions import db, limiter, login_manager
from interview.store.models import User, utcnow
from interview.trust import audit, sessions
from interview.trust.passwords import hash_password, needs_rehash, verify_password
from interview.web.forms import LoginForm

bp = Blueprint("auth", __name__)

# Verifying against a dummy hash when the user is unknown keeps the answer time the same.
_DUMMY = {}


def _dummy_hash() -> str:
    key = current_app.config["ARGON2_TIME_COST"], current_app.config["ARGON2_MEMORY_COST"]
    if key not in _DUMMY:
        _DUMMY[key] = hash_password("not-a-password")
    return _DUMMY[key]


def _username_key() -> str:
    return "user:" + (request.form.get("username") or "").strip().lower()


def _login_limit() -> str:
    return current_app.config["LOGIN_LIMIT"]


def _failed(response) -> bool:
    return response.status_code == 401


@limiter.limit(_login_limit, methods=["POST"], deduct_when=_failed)
@limiter.limit(_login_limit, methods=["POST"], key_func=_username_key, deduct_when=_failed)
def login():
    """Show the login form and log the user in."""
    if current_user.is_authenticated:
        return redirect(url_for("main.home"))
    form = LoginForm()
    if form.validate_on_submit():
        username = form.username.data.strip()
        user = db.session.execute(
            select(User).where(func.lower(User.username) == username.lower())
        ).scalar_one_or_none()
        stored = user.password_hash if user else _dummy_hash()
        ok = verify_password(stored, form.password.data)
        if user and ok and user.active:
            if needs_rehash(user.password_hash):
                user.password_hash = hash_password(form.password.data)
            user.last_login_at = utcnow()
            sessions.renew()
            login_user(user)
            sessions.start()
            audit.record("login", "user", user.id, user_id=user.id)
            db.session.commit()
            if user.ui_language in current_app.config["LANGUAGES"]:
                session.setdefault("lang", user.ui_language)
            return redirect(_safe_next() or url_for("main.home"))
        audit.record("login_failed", user_id=user.id if user else None)
        db.session.commit()
        form.password.errors = [_("The username or password is not right. Please try again.")]
        return render_template("auth/login.html", form=form), 401
    status = 400 if request.method == "POST" else 200
    return render_template("auth/login.html", form=form), status


def _safe_next() -> str | None:
    target = request.args.get("next", "")
    # browsers drop tabs and newlines and read "\\" as "/", so "/\t/evil" would leave the site
    if any(ch.isspace() or ord(ch) < 32 or ch == "\\" for ch in target):
        return None
    parts = urlsplit(target)
    if target.startswith("/") and not target.startswith("//") and not parts.netloc:
        return target
    return None


@login_required
def logout():
    """End the session everywhere: the session version moves on."""
    user = db.session.get(User, current_user.id)
    # A tablet that was logged out without a network ends its old session when it next
    # reaches the store ("deferred"). By then the peer may have logged in elsewhere: only when
    # this is still their latest session do all their sessions end, as at a normal logout.
    started = session.get(sessions.STARTED)
    newer_login = (
        request.form.get("deferred") == "1"
        and started is not None
        and user.last_login_at is not None
        and user.last_login_at.replace(tzinfo=UTC).timestamp() > started + 1
    )
    if not newer_login:
        user.session_version += 1
    deferred = {"deferred": True} if request.form.get("deferred") == "1" else {}
    audit.record("logout", "user", user.id, **deferred)
    db.session.commit()
    logout_user()
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang
    flash(_("You are logged out."), "info")
    return redirect(url_for("auth.login"))


def signed_out():
    """The page a signed-out tablet shows: it names nobody, so it can be kept offline."""
    return render_template("auth/signed_out.html", signed_out_frame=True)


bp.add_url_rule("/login", view_func=login, methods=["GET", "POST"])
bp.add_url_rule("/logout", view_func=logout, methods=["POST"])
bp.add_url_rule("/signed-out", view_func=signed_out)


def _load_user(identity: str) -> User | None:
    try:
        user_id, version = (int(p) for p in identity.split(":", 1))
    except ValueError:
        return None
    user = db.session.get(User, user_id)
    if user is None or user.session_version != version or not user.active:
        return None
    return user


def init_app(app: Flask) -> None:
    """Wire Flask-Login to the user table."""
    login_manager.init_app(app)
    login_manager.user_loader(_load_user)
    login_manager.login_view = "auth.login"
    login_manager.login_message = _l("Please log in to see this page.")
    login_manager.login_message_category = "info"
    sessions.init_app(app)
