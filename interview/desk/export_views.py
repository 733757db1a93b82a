"""The coordinator's exports page and downloads: thin views over `exports`, each one audited.

A download is streamed: the audit record is written and committed first, then `exports`
reads the store a batch of participants at a time while the response is being sent, so the
server's memory does not grow with the number of notes.
"""

from flask import Blueprint, Response, render_template, request, stream_with_context
from flask_login import current_user

from interview.desk import exports, refi
from interview.store.extensions import db
from interview.store.models import Case, utcnow
from interview.trust import audit
from interview.trust.access import cases_coordinated_by, coordinated_case_or_404, roles_required
from interview.web.i18n import ui_lang

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
    case_ids = [c.id for c in cases]
    codes = [c.code for c in cases]
    top = exports.head(db.session, case_ids, user=current_user, now=now)
    counts = exports.store_counts(db.session, case_ids)
    audit.record("export", format=fmt, cases=codes, counts=counts)
    db.session.commit()
    # read while the response is sent; the CSV and the project need no consents or events
    people = exports.participants(db.session, case_ids, notes_only=fmt != "json")
    if fmt == "csv":
        body = exports.csv_chunks(people)
    elif fmt == "json":
        body = exports.json_chunks(top, people)
    else:
        body = refi.qdpx_chunks(top, people, ui_lang())
    mimetype, ext = FORMATS[fmt]
    # case codes are short and plain, but a file name must never carry anything else
    scope = "".join(ch for ch in "-".join(codes) if ch.isalnum() or ch == "-")
    scope = scope if request.args.get("case") and scope else "all"
    filename = f"innofact-{scope}-{now:%Y%m%d-%H%M%S}.{ext}"
    response = Response(stream_with_context(body), mimetype=mimetype)
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
