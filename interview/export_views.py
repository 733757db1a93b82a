"""The coordinator's exports page and downloads: thin views over `exports`, each one audited."""

from flask import Blueprint, Response, render_template, request
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from . import audit, exports
from .access import roles_required
from .extensions import db
from .i18n import ui_lang
from .models import Case, utcnow

bp = Blueprint("exports", __name__, url_prefix="/desk/exports")

COORDINATING = ("coordinator", "admin")
FORMATS = {
    "csv": ("text/csv; charset=utf-8", "csv"),
    "json": ("application/json; charset=utf-8", "json"),
    "qdpx": ("application/zip", "qdpx"),
}


def _my_cases() -> list[Case]:
    if current_user.role == "admin":
        return list(db.session.scalars(select(Case).order_by(Case.code)))
    return list(current_user.cases)


def _not_found():
    # the same answer for a team that does not exist and one that is not yours
    message = _("There is no FACT team with that code among the teams you coordinate.")
    return render_template("errors.html", code=404, message=message), 404


def _chosen_cases() -> list[Case] | None:
    """Return the cases the request asks for (all of mine without a filter), None if not mine."""
    cases = _my_cases()
    code = (request.args.get("case") or "").strip()
    if not code:
        return cases
    chosen = [c for c in cases if c.code == code]
    return chosen or None


@roles_required(*COORDINATING)
def index():
    """List the export formats, with a choice of FACT team."""
    cases = _my_cases()
    code = (request.args.get("case") or "").strip()
    if code and code not in {c.code for c in cases}:
        return _not_found()
    return render_template("desk/exports.html", cases=cases, case_code=code)


def _download(fmt: str):
    cases = _chosen_cases()
    if cases is None:
        return _not_found()
    now = utcnow()
    data = exports.collect(db.session, [c.id for c in cases], user=current_user, now=now)
    if fmt == "csv":
        body = exports.to_csv(data)
    elif fmt == "json":
        body = exports.to_json(data)
    else:
        body = exports.to_qdpx(data, ui_lang())
    codes = [c.code for c in cases]
    audit.record("export", format=fmt, cases=codes, counts=exports.counts(data))
    db.session.commit()
    mimetype, ext = FORMATS[fmt]
    # case codes are short and plain, but a file name must never carry anything else
    scope = "".join(ch for ch in "-".join(codes) if ch.isalnum() or ch == "-")
    scope = scope if request.args.get("case") and scope else "all"
    filename = f"innofact-{scope}-{now:%Y%m%d-%H%M%S}.{ext}"
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"
    return response


@roles_required(*COORDINATING)
def csv_export():
    """Download one row per note as CSV."""
    return _download("csv")


@roles_required(*COORDINATING)
def json_export():
    """Download everything as JSON."""
    return _download("json")


@roles_required(*COORDINATING)
def qdpx_export():
    """Download a REFI-QDA project for NVivo, ATLAS.ti or MAXQDA."""
    return _download("qdpx")


bp.add_url_rule("/", view_func=index)
bp.add_url_rule("/notes.csv", view_func=csv_export)
bp.add_url_rule("/export.json", view_func=json_export)
bp.add_url_rule("/project.qdpx", view_func=qdpx_export)
