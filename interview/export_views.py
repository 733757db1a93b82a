"""The coordinator's exports page and downloads: thin views over `exports`, each one audited."""

from flask import Blueprint, Response, render_template, request
from flask_login import current_user

from . import audit, exports
from .access import cases_coordinated_by, coordinated_case_or_404, roles_required
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


def _chosen_cases() -> list[Case]:
    """Return the cases the request asks for: all of mine without a filter, else one of mine."""
    code = (request.args.get("case") or "").strip()
    if not code:
        return cases_coordinated_by(current_user)
    return [coordinated_case_or_404(current_user, code)]


@roles_required(*COORDINATING)
def index():
    """List the export formats, with a choice of FACT team."""
    code = (request.args.get("case") or "").strip()
    if code:
        coordinated_case_or_404(current_user, code)
    return render_template(
        "desk/exports.html", cases=cases_coordinated_by(current_user), case_code=code
    )


def _download(fmt: str):
    cases = _chosen_cases()
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
