"""Error pages in the user's language; JSON for the API; never a bare 500."""

import traceback

from flask import Flask, abort, current_app, jsonify, render_template, request, session
from flask.json.provider import DefaultJSONProvider
from flask_babel import gettext as _
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from interview.store.extensions import db


def _messages() -> dict[int, str]:
    return {
        400: _("Something in the request was not right. Please go back and try again."),
        403: _("You do not have access to this page."),
        404: _("We could not find that page, or you do not have access to it."),
        405: _("That action is not possible here."),
        409: _("That is not possible in the interview's current state."),
        413: _("What you sent is too large."),
        429: _("Too many attempts. Please wait a few minutes and try again."),
        500: _("Something went wrong on our side. What you had saved is safe."),
    }


CODES = {400: "bad_request", 401: "login", 403: "forbidden", 404: "not_found", 413: "too_large"}


def _render(code: int, message: str, kind: str | None = None):
    if request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json":
        body = {"error": message, "status": code, "code": kind or CODES.get(code, "error")}
        return jsonify(body), code
    return render_template("errors.html", code=code, message=message), code


def accepts_upload(max_bytes: int | str):
    """Mark a view whose form takes a file of up to `max_bytes` (no other form takes one).

    `max_bytes` may name a setting instead: the limit is then the configured one.
    """

    def mark(view):
        view.upload_limit = max_bytes
        return view

    return mark


def upload_limit(endpoint: str | None) -> int | None:
    """Return the size limit of an upload view's requests, or None for every other view."""
    view = current_app.view_functions.get(endpoint) if endpoint else None
    limit = getattr(view, "upload_limit", None)
    if isinstance(limit, str):
        limit = current_app.config.get(limit)
    return limit


def _raise_upload_limit(endpoint, _values):
    # before any hook reads the form (the CSRF check does): the request limit of an upload
    # view, for someone logged in only; a stranger's upload is cut off at the usual limit
    limit = upload_limit(endpoint)
    if limit and request.method in ("POST", "PUT") and session.get("_user_id"):
        request.max_content_length = limit


def _refuse_nul_bytes():
    # PostgreSQL cannot store a NUL character; a form carrying one is malformed, not a crash
    for values in (request.args, request.form):
        for _name, value in values.items(multi=True):  # a repeated field's later values too
            if "\x00" in value:
                abort(400)
    # no form of the app takes a file or JSON but the upload views (the API takes JSON): an
    # upload where text belongs, or a number or a list where WTForms expects text, is malformed
    if (request.files and not upload_limit(request.endpoint)) or (
        request.is_json and not request.path.startswith("/api/")
    ):
        abort(400)


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


class StrictJSONProvider(DefaultJSONProvider):
    """Read request JSON strictly: NaN and Infinity, or nesting too deep to parse, are malformed.

    Both then fail as a ValueError, which `request.get_json(silent=True)` answers with None
    (the API's 400), instead of a RecursionError (a 500) or a NaN that PostgreSQL refuses.
    """

    def loads(self, s, **kwargs):
        """Parse JSON text."""
        kwargs.setdefault("parse_constant", _no_constant)
        try:
            return super().loads(s, **kwargs)
        except RecursionError as exc:
            raise ValueError("JSON nested too deeply") from exc


def init_app(app: Flask) -> None:
    """Register the error handlers."""
    app.json = StrictJSONProvider(app)
    # URL value preprocessors run before every before_request hook
    app.url_value_preprocessor(_raise_upload_limit)
    app.before_request(_refuse_nul_bytes)

    @app.errorhandler(CSRFError)
    def _csrf(_err):
        return _render(
            400,
            _(
                "Your session form has expired. Reload the page and try again; "
                "nothing saved was lost."
            ),
            "csrf",
        )

    @app.errorhandler(HTTPException)
    def _http(err: HTTPException):
        code = err.code or 500
        # abort(404, _("...")) names what was not found; werkzeug's own English text never shows
        custom = (
            err.description
            if code in (400, 404, 409) and err.description != type(err).description
            else None
        )
        limit = upload_limit(request.endpoint) if code == 413 else None
        if limit:
            custom = _(
                "The file is too large: at most %(size)s MB can be sent here.",
                size=limit // (1024 * 1024),
            )
        return _render(code, custom or _messages().get(code, err.description or ""))

    @app.errorhandler(Exception)
    def _unexpected(err: Exception):
        db.session.rollback()
        # the traceback's frames, but not the exception's message: it may quote what was typed
        frames = "".join(traceback.format_tb(err.__traceback__))
        app.logger.error(
            "unhandled %s on %s %s\n%s",
            type(err).__name__,
            request.method,
            request.url_rule,
            frames,
        )
        return _render(500, _messages()[500])


def api_error(status: int, message: str, code: str):
    """Answer the tablet's API in JSON: {error, code, status} (docs/sync.md)."""
    return jsonify({"error": message, "code": code, "status": status}), status


def api_login_required():
    """Answer JSON 401 when nobody is logged in (the tablet keeps its outbox); else None."""
    if not current_user.is_authenticated:
        return api_error(
            401, _("Please log in again. Your changes are kept on this tablet."), "login"
        )
    return None
