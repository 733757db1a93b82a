"""The coordinator's desk: progress per case, alerts, the codebook and theme matrix, exports,
rescue imports and the audit log — one blueprint each, every route of the desk in this one
module."""

from datetime import datetime, timedelta
from functools import partial

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_babel import format_decimal
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from wtforms import StringField
from wtforms.validators import DataRequired, Length

from interview.desk import alerts, audit_log, codebook, exports, exports_xlsx, listen, refi
from interview.desk.report import progress_context
from interview.store.extensions import db
from interview.store.kept import kept
from interview.store.models import POLARITIES, AlertAck, Case, Theme, User, utcnow
from interview.sync import rescue
from interview.trust import audit
from interview.trust.access import (
    cases_coordinated_by,
    coordinated_case_ids,
    coordinated_case_or_404,
    roles_required,
)
from interview.trust.study_key import StudyKeyError
from interview.web.errors import accepts_upload
from interview.web.i18n import ui_lang
from interview.web.labels import Words, label

COORDINATING = ("coordinator", "admin")


# --- Progress per case (FACT team) ---------------------------------------------------------

bp = Blueprint("desk", __name__, url_prefix="/desk")


def _render(current: Case | None):
    """Render the progress page; below its heading it is kept per worker (store/kept.py)."""
    lang = ui_lang()

    def build() -> Markup:
        context = progress_context(cases_coordinated_by(current_user), current)
        return Markup(render_template("desk/_progress_body.html", **context))

    def page() -> str:
        ids = coordinated_case_ids(current_user)
        key = ("progress", tuple(ids), current.id if current else None, lang)
        body = kept(key, build, db.session)
        return render_template("desk/progress.html", current=current, body=body)

    return page()


@roles_required(*COORDINATING)
def overview():
    """Show the progress of all the coordinator's cases (an admin's: all cases)."""
    return _render(None)


@roles_required(*COORDINATING)
def case_page(code: str):
    """Show the progress of one case the coordinator works in."""
    return _render(coordinated_case_or_404(current_user, code))


bp.add_url_rule("/", view_func=overview)

bp.add_url_rule("/cases/<code>", view_func=case_page)


# --- Alerts --------------------------------------------------------------------------------

alerts_bp = Blueprint("alerts", __name__, url_prefix="/desk/alerts")


def _scope() -> tuple[set[int], dict[int, str]]:
    """The cases whose alerts the current user sees, and their codes."""
    codes = {c.id: c.code for c in cases_coordinated_by(current_user)}
    return set(codes), codes


def open_alerts(
    include_acknowledged: bool = False, under: list[alerts.UnderWay] | None = None
) -> list[alerts.Alert]:
    """The alerts of the current user's cases, as of now."""
    case_ids, codes = _scope()
    config = current_app.config
    return alerts.collect(
        db.session,
        case_ids,
        codes,
        utcnow(),
        timedelta(minutes=config["OVERDUE_GRACE_MINUTES"]),
        timedelta(hours=config["STALE_TABLET_HOURS"]),
        include_acknowledged=include_acknowledged,
        under=under,
    )


def open_alert_count() -> int | None:
    """How many open alerts the current user's teams have, for the nav; once a request.

    The same alerts as the Alerts page (one definition, `alerts.collect`): a fixed handful of
    indexed statements whatever the data. None where it cannot be counted (an error page).
    """
    if "open_alert_count" not in g:
        try:
            g.open_alert_count = len(open_alerts())
        except SQLAlchemyError:
            # the page is an error page already: it shows without the count
            db.session.rollback()
            g.open_alert_count = None
    return g.open_alert_count


def _alert_words() -> Words:
    """The alerts page's fixed words, translated once per page (a day may hold hundreds)."""
    return Words(
        title=Words(
            overdue=_("Interview running late without a check-in"),
            distress_2=_("Distress protocol, stage 2"),
            follow_up=_("The participant needs follow-up from the team"),
            debrief_talk=_("A peer would like a debrief talk"),
            lost_work=_("A tablet may have lost unsent work"),
            debrief_conflict=_("A debrief has two versions"),
            conflict=_("A note has two versions"),
            stale_tablet=_("A tablet has not synced"),
        ),
        overdue=_(
            "No check-in %(minutes)s minutes after the expected end. Call the peer.",
            minutes=current_app.config["OVERDUE_GRACE_MINUTES"],
        ),
        since=_("Since:"),
        distress_2=_(
            "The interview was stopped to care for the participant. Follow up as the protocol says."
        ),
        # the peer's name is put in by the template (`|format`), so these keep their %(peer)s
        follow_up=_("%(peer)s asks the team to follow up the participant."),
        debrief_talk=_("%(peer)s would like to talk the interview through."),
        debrief_conflict=_(
            "%(peer)s's debrief was changed on two tablets at once. Both versions are kept; "
            "talk with the peer about which one stands."
        ),
        conflict=_("Two tablets changed the same note. Choose a version or merge them."),
        team=_("Team"),
        participant=_("Participant"),
        open_interview=_("Open the interview"),
        look_at_versions=_("Look at the two versions"),
        mark_seen=_("Mark as seen"),
    )


@roles_required(*COORDINATING)
def alerts_index():
    """List the open alerts, safety first; with ?all=1 the acknowledged ones too."""
    show_all = request.args.get("all") == "1"
    scope = _scope()
    under = alerts.under_way(db.session, *scope)
    items = open_alerts(include_acknowledged=show_all, under=under)
    if not show_all:
        g.open_alert_count = len(items)  # the nav's count, without collecting twice
    acks = {}
    if show_all:
        rows = db.session.execute(
            select(AlertAck, User.username)
            .outerjoin(User, User.id == AlertAck.acknowledged_by_id)
            .where(AlertAck.key.in_({a.key for a in items} or {""}))
        ).all()
        acks = {(a.kind, a.key): (a, name) for a, name in rows}
    return render_template(
        "desk/alerts.html",
        alerts=items,
        acks=acks,
        show_all=show_all,
        grace=current_app.config["OVERDUE_GRACE_MINUTES"],
        stale_hours=current_app.config["STALE_TABLET_HOURS"],
        identifier_flags=alerts.identifier_flags(db.session, *scope),
        under_way=under,
        words=_alert_words(),
    )


@roles_required(*COORDINATING)
def acknowledge():
    """Mark one open alert as seen; it is recorded in the audit log."""
    kind = request.form.get("kind", "")
    key = request.form.get("key", "")
    if kind not in alerts.KINDS or not key or len(key) > 120:
        abort(400, _("This alert is not one we know."))
    alert = next((a for a in open_alerts() if a.kind == kind and a.key == key), None)
    if alert is None:
        # already acknowledged, settled, or in a case this coordinator does not see
        abort(404, _("This alert is no longer open."))
    if alerts.acknowledge(db.session, alert, current_user.id):
        audit.record("alert_acknowledged", "alert", None, kind=kind, key=key)
    db.session.commit()
    flash(_("The alert is marked as seen."), "success")
    return redirect(url_for("alerts.index"))


alerts_bp.add_url_rule("/", endpoint="index", view_func=alerts_index)
alerts_bp.add_url_rule("/ack", view_func=acknowledge, methods=["POST"])


# --- The codebook and the theme matrix -----------------------------------------------------

codebook_bp = Blueprint("codebook", __name__, url_prefix="/desk/themes")


class ThemeForm(FlaskForm):
    """A theme's name in both languages."""

    name_nb = StringField(
        _l("Name in Norwegian (Bokmål)"),
        validators=[
            DataRequired(_l("Write the name in both languages.")),
            Length(max=200, message=_l("A name can be at most 200 characters.")),
        ],
    )
    name_en = StringField(
        _l("Name in English"),
        validators=[
            DataRequired(_l("Write the name in both languages.")),
            Length(max=200, message=_l("A name can be at most 200 characters.")),
        ],
    )


def _messages() -> dict[str, str]:
    return {
        "names_required": _("Write the name in both languages."),
        "name_too_long": _("A name can be at most 200 characters."),
        "name_taken": _("Another theme already has that name."),
    }


def _theme_or_404(theme_id: int) -> Theme:
    # an id past what the store can hold is simply not there (never an overflow error)
    if theme_id > 2**31 - 1:
        abort(404, _("That theme is not in the codebook."))
    return db.get_or_404(Theme, theme_id, description=_("That theme is not in the codebook."))


def _page(add_form: ThemeForm, status: int = 200, failed: int | None = None, message=None):
    lang = ui_lang()
    return (
        render_template(
            "desk/codebook.html",
            entries=codebook.codebook_entries(db.session, cases_coordinated_by(current_user), lang),
            polarity={p: label("polarity", p) for p in POLARITIES},
            lang=lang,
            form=add_form,
            failed=failed,
            message=message,
        ),
        status,
    )


@roles_required(*COORDINATING)
def themes_index():
    """Show the codebook with the number of notes per theme, and add a theme."""
    form = ThemeForm(prefix="add")
    if request.method == "GET":
        return _page(form)
    if not form.validate_on_submit():
        return _page(form, 400)
    try:
        theme = codebook.add_theme(db.session, form.name_nb.data, form.name_en.data)
    except codebook.CodebookError as err:
        form.name_en.errors = [_messages()[err.code]]
        return _page(form, 400)
    audit.record("theme_added", "theme", theme.id, key=theme.key)
    db.session.commit()
    flash(_("The theme is added to the codebook."), "success")
    return redirect(url_for("codebook.index") + f"#theme-{theme.id}")


@roles_required(*COORDINATING)
def rename(theme_id: int):
    """Rename a theme in both languages; its key and its notes stay."""
    theme = _theme_or_404(theme_id)
    form = ThemeForm(prefix=f"t{theme.id}")
    if not form.validate_on_submit():
        first = next(iter(form.errors.values()), [_messages()["names_required"]])[0]
        return _page(ThemeForm(prefix="add", formdata=None), 400, theme.id, first)
    try:
        changed = codebook.rename_theme(db.session, theme, form.name_nb.data, form.name_en.data)
    except codebook.CodebookError as err:
        db.session.rollback()
        return _page(ThemeForm(prefix="add", formdata=None), 400, theme.id, _messages()[err.code])
    if changed:
        audit.record("theme_renamed", "theme", theme.id, key=theme.key)
        db.session.commit()
        flash(_("The theme is renamed."), "success")
    return redirect(url_for("codebook.index") + f"#theme-{theme.id}")


@roles_required(*COORDINATING)
def retire(theme_id: int):
    """Retire a theme (or bring it back): it is no longer offered, and stays on old notes."""
    theme = _theme_or_404(theme_id)
    wanted = request.form.get("retired")
    if wanted not in ("0", "1"):
        abort(400)
    if codebook.set_retired(theme, wanted == "1"):
        audit.record("theme_retired" if theme.retired else "theme_restored", "theme", theme.id)
        db.session.commit()
        flash(
            _("The theme is retired. Notes that carry it keep it.")
            if theme.retired
            else _("The theme is offered again."),
            "success",
        )
    return redirect(url_for("codebook.index") + f"#theme-{theme.id}")


def _matrix_words() -> dict:
    """The matrix's words, translated once per page rather than once per cell."""
    return {
        "staff": {
            p: _("Named by the staff as %(polarity)s", polarity=label("polarity", p).lower())
            for p in POLARITIES
        },
        "staff_label": {p: label("polarity", p) for p in POLARITIES},
        "polarity": {
            "inhibits": _("inhibits"),
            "promotes": _("promotes"),
            "none": _("not marked"),
        },
        "no_notes": _("no notes"),
    }


@roles_required(*COORDINATING)
def matrix():
    """Themes × cases: how patients' notes were tagged, beside what each team's staff named."""
    cases = cases_coordinated_by(current_user)
    lang = ui_lang()

    def build() -> tuple[datetime, Markup]:
        table = render_template(
            "desk/_matrix_table.html",
            matrix=codebook.theme_matrix(db.session, cases, lang),
            words=_matrix_words(),
            marks=codebook.MARKS,
            lang=lang,
        )
        return utcnow(), Markup(table)

    counted, table = kept(("matrix", tuple(c.id for c in cases), lang), build, db.session)
    return render_template(
        "desk/matrix.html",
        counted=counted if cases else None,
        table=table,
        marks=codebook.MARKS,
    )


@roles_required(*COORDINATING)
def cell(case_code: str, theme_id: int):
    """The notes behind one cell of the matrix (coordinators of that case only)."""
    case = coordinated_case_or_404(current_user, case_code)
    theme = _theme_or_404(theme_id)
    polarity = request.args.get("polarity") or None
    if polarity not in (None, *codebook.POLARITY_COLUMNS):
        abort(400, _("Choose inhibits, promotes or neither."))
    notes = codebook.cell_notes(db.session, case, theme, polarity)
    return render_template(
        "desk/matrix_cell.html", case=case, theme=theme, polarity=polarity, notes=notes
    )


codebook_bp.add_url_rule("/", endpoint="index", view_func=themes_index, methods=["GET", "POST"])
codebook_bp.add_url_rule("/<int:theme_id>", view_func=rename, methods=["POST"])
codebook_bp.add_url_rule("/<int:theme_id>/retire", view_func=retire, methods=["POST"])
codebook_bp.add_url_rule("/matrix", view_func=matrix)
codebook_bp.add_url_rule("/matrix/<case_code>/<int:theme_id>", view_func=cell)


# --- Exports -------------------------------------------------------------------------------

exports_bp = Blueprint("exports", __name__, url_prefix="/desk/exports")

# full Content-Type values (given as content_type, so Flask adds no second charset)
FORMATS = {
    "csv": ("text/csv; charset=utf-8", "csv"),
    "xlsx": (exports_xlsx.MIMETYPE, "xlsx"),
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
def exports_index():
    """List the export formats, with a choice of FACT team."""
    code = (request.args.get("case") or "").strip()
    if code:
        coordinated_case_or_404(current_user, code)
    cases = cases_coordinated_by(current_user)
    chosen = [c.id for c in cases if not code or c.code == code]
    return render_template(
        "desk/exports.html",
        cases=cases,
        case_code=code,
        recordings=listen.count_exported(db.session, chosen),
        debriefs=exports.store_counts(db.session, chosen, debriefs=True)["debriefs"],
    )


def _download(fmt: str):
    cases = _chosen_cases()
    now = utcnow()
    case_ids = [c.id for c in cases]
    codes = [c.code for c in cases]
    # the peers' debriefs only in the JSON, and only when the coordinator ticks the box
    debriefs = fmt == "json" and request.args.get("debriefs") == "1"
    lang = request.args.get("language") or ui_lang()
    lang = lang if lang in ("nb", "en") else ui_lang()
    top = exports.head(db.session, case_ids, user=current_user, now=now, debriefs=debriefs)
    counts = exports.store_counts(db.session, case_ids, debriefs=debriefs)
    detail = {"debriefs": debriefs} if fmt == "json" else {}
    # the recordings go into the REFI-QDA project only when the coordinator asks for them
    audio = fmt == "qdpx" and request.args.get("audio") == "1"
    if fmt == "qdpx":
        detail["audio"] = audio
        if audio:
            detail["recordings"] = listen.count_exported(db.session, case_ids)
    audit.record("export", format=fmt, cases=codes, counts=counts, **detail)
    db.session.commit()
    # read while the response is sent; the CSV and the project need no consents or events
    people = exports.participants(db.session, case_ids, notes_only=fmt != "json", debriefs=debriefs)
    if fmt == "csv":
        body = exports.csv_chunks(people, exports.theme_names(top, lang))
    elif fmt == "xlsx":
        body = exports_xlsx.xlsx_chunks(top, people, lang)
    elif fmt == "json":
        body = exports.json_chunks(top, people)
    else:
        recordings = partial(listen.export_recordings, db.session) if audio else None
        body = refi.qdpx_chunks(top, people, ui_lang(), recordings=recordings)
    mimetype, ext = FORMATS[fmt]
    # case codes are short and plain, but a file name must never carry anything else
    scope = "".join(ch for ch in "-".join(codes) if ch.isalnum() or ch == "-")
    scope = scope if request.args.get("case") and scope else "all"
    filename = f"innofact-{scope}-{now:%Y%m%d-%H%M%S}.{ext}"
    response = Response(stream_with_context(body), content_type=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"
    return response


@roles_required(*COORDINATING)
def csv_export():
    """Download one row per note as CSV."""
    return _download("csv")


@roles_required(*COORDINATING)
def xlsx_export():
    """Download one row per note as a spreadsheet, with a sheet that explains the columns."""
    return _download("xlsx")


@roles_required(*COORDINATING)
def json_export():
    """Download everything as JSON."""
    return _download("json")


@roles_required(*COORDINATING)
def qdpx_export():
    """Download a REFI-QDA project for NVivo, ATLAS.ti or MAXQDA (?audio=1: with the sound)."""
    return _download("qdpx")


exports_bp.add_url_rule("/", endpoint="index", view_func=exports_index)
exports_bp.add_url_rule("/notes.csv", view_func=csv_export)
exports_bp.add_url_rule("/notes.xlsx", view_func=xlsx_export)
exports_bp.add_url_rule("/export.json", view_func=json_export)
exports_bp.add_url_rule("/project.qdpx", view_func=qdpx_export)


# --- Rescue copies from tablets ------------------------------------------------------------

rescue_bp = Blueprint("rescue", __name__, url_prefix="/desk/rescue")


class RescueForm(FlaskForm):
    """One rescue file from a tablet."""

    file = FileField(
        _l("Rescue file"),
        validators=[FileRequired(message=_l("Choose the rescue file the tablet saved."))],
    )


@accepts_upload(rescue.MAX_FILE_BYTES)
@roles_required(*COORDINATING)
def rescue_index():
    """Show the upload form; import a rescue file and show what became of its changes."""
    form = RescueForm()
    report = error = None
    status = 200
    if form.is_submitted():
        if not form.validate():
            status = 400
        else:
            try:
                raw = form.file.data.read(rescue.MAX_FILE_BYTES + 1)
                report = rescue.import_file(
                    db.session, current_user._get_current_object(), raw, current_app.secret_key
                )
            except rescue.RescueRefused as refused:
                db.session.rollback()
                error, status = refused.message, refused.status
            except StudyKeyError:
                db.session.rollback()
                current_app.logger.error("the study key file is missing or unusable")
                error = _l("The study key is not available just now: no rescue file can be opened.")
                status = 503
    return render_template(
        "desk/rescue.html",
        form=form,
        report=report,
        error=error,
        statuses=rescue.STATUSES,
        max_mb=rescue.MAX_FILE_BYTES // (1024 * 1024),
        max_changes=format_decimal(rescue.MAX_RESCUE_CHANGES),
    ), status


rescue_bp.add_url_rule("/", endpoint="index", view_func=rescue_index, methods=["GET", "POST"])


# --- The audit log -------------------------------------------------------------------------

audit_bp = Blueprint("audit", __name__, url_prefix="/desk/audit")


def _audit_scope() -> list[int] | None:
    """The teams whose audit rows the user sees; None for an admin, who sees every row."""
    if current_user.role == "admin":
        return None
    return coordinated_case_ids(current_user)


def _audit_page(filters: audit_log.Filters | None, page=None, error: str | None = None):
    return render_template(
        "desk/audit.html",
        filters=filters or audit_log.Filters(),
        page=page,
        error=error,
        actions=audit_log.known_actions(filters.action if filters else ""),
        object_words=audit_log.object_words(),
        csv_args=filters.args() if filters else {},
    ), (400 if error else 200)


@roles_required(*COORDINATING)
def audit_index():
    """The audit log, newest first, 50 rows a page: who, what, when, about whom; no content."""
    try:
        filters = audit_log.parse_filters(request.args)
        scope = _audit_scope()
        page = audit_log.page_of(db.session, scope, filters)
    except audit_log.FilterError as bad:
        # the typed values are not shown again: they failed the checks that make them safe
        return _audit_page(None, error=bad.message)
    detail = audit_log.view_detail(db.session, scope, filters, page.total)
    audit.record("audit_log_viewed", page=page.number, **detail)
    db.session.commit()
    return _audit_page(filters, page)


@roles_required(*COORDINATING)
def audit_csv():
    """The rows the filters select as CSV, for a data protection officer; audited."""
    try:
        filters = audit_log.parse_filters(request.args)
    except audit_log.FilterError as bad:
        return _audit_page(None, error=bad.message)
    scope = _audit_scope()
    rows = audit_log.count(db.session, scope, filters)
    audit.record("audit_log_exported", **audit_log.view_detail(db.session, scope, filters, rows))
    db.session.commit()
    body = audit_log.csv_chunks(db.session, scope, filters)
    response = Response(stream_with_context(body), content_type="text/csv; charset=utf-8")
    filename = f"audit-log-{utcnow():%Y%m%d-%H%M%S}.csv"
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"
    return response


audit_bp.add_url_rule("/", endpoint="index", view_func=audit_index)
audit_bp.add_url_rule("/audit-log.csv", endpoint="csv", view_func=audit_csv)
