"""The coordinator's desk: progress per case (FACT team), with small SVG charts."""

from flask import Blueprint, current_app, render_template
from flask_login import current_user
from markupsafe import Markup

from interview.desk.report import progress_context
from interview.store.extensions import db
from interview.store.kept import kept
from interview.store.models import Case
from interview.trust.access import (
    cases_coordinated_by,
    coordinated_case_ids,
    coordinated_case_or_404,
    roles_required,
)
from interview.web.i18n import ui_lang
from interview.web.kept_pages import kept_page

bp = Blueprint("desk", __name__, url_prefix="/desk")

COORDINATING = ("coordinator", "admin")


def _render(current: Case | None):
    """Render the progress page; below its heading it is kept per worker (interview/kept.py)."""
    lang = ui_lang()

    def build() -> Markup:
        context = progress_context(cases_coordinated_by(current_user), current)
        return Markup(render_template("desk/_progress_body.html", **context))

    def page() -> str:
        ids = coordinated_case_ids(current_user)
        key = ("progress", tuple(ids), current.id if current else None, lang)
        body = kept(key, build, db.session)
        return render_template("desk/progress.html", current=current, body=body)

    # the whole page is kept no longer than its figures would be
    return kept_page(page, max_age=current_app.config["FIGURES_UNCHANGED_SECONDS"])


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
