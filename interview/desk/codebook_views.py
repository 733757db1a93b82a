"""The codebook (add, rename, retire themes) and the theme matrix, for coordinators."""

from datetime import datetime

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from markupsafe import Markup
from sqlalchemy import select
from wtforms import StringField
from wtforms.validators import DataRequired, Length

from interview.desk import codebook
from interview.store.extensions import db
from interview.store.kept import kept
from interview.store.models import POLARITIES, Theme, utcnow
from interview.trust import audit
from interview.trust.access import cases_coordinated_by, coordinated_case_or_404, roles_required
from interview.web.i18n import ui_lang
from interview.web.labels import label

bp = Blueprint("codebook", __name__, url_prefix="/desk/themes")

COORDINATING = ("coordinator", "admin")


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
    themes = list(db.session.scalars(select(Theme).order_by(Theme.retired, Theme.key)))
    return (
        render_template(
            "desk/codebook.html",
            themes=themes,
            counts=codebook.note_counts(
                db.session, {c.id for c in cases_coordinated_by(current_user)}
            ),
            form=add_form,
            failed=failed,
            message=message,
        ),
        status,
    )


@roles_required(*COORDINATING)
def index():
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
            matrix=codebook.theme_matrix(db.session, cases),
            words=_matrix_words(),
            lang=lang,
        )
        return utcnow(), Markup(table)

    counted, table = kept(("matrix", tuple(c.id for c in cases), lang), build, db.session)
    return render_template("desk/matrix.html", counted=counted if cases else None, table=table)


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


bp.add_url_rule("/", view_func=index, methods=["GET", "POST"])
bp.add_url_rule("/<int:theme_id>", view_func=rename, methods=["POST"])
bp.add_url_rule("/<int:theme_id>/retire", view_func=retire, methods=["POST"])
bp.add_url_rule("/matrix", view_func=matrix)
bp.add_url_rule("/matrix/<case_code>/<int:theme_id>", view_func=cell)
