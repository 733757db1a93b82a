"""The coordinator's desk: progress per case (FACT team), with small SVG charts."""

from flask import Blueprint, current_app, render_template
from flask_babel import gettext as _
from flask_login import current_user
from markupsafe import Markup

from interview.desk.charts import Bar, bar_chart, share_chart
from interview.desk.progress import CONSENT_ITEMS, CaseProgress, case_progress
from interview.field.kept_pages import kept_page
from interview.store.extensions import db
from interview.store.kept import kept
from interview.store.models import INTERVIEW_STATUSES, PARTICIPANT_STATUSES, Case, utcnow
from interview.trust.access import (
    cases_coordinated_by,
    coordinated_case_ids,
    coordinated_case_or_404,
    roles_required,
)
from interview.web.i18n import ui_lang
from interview.web.labels import label

bp = Blueprint("desk", __name__, url_prefix="/desk")

COORDINATING = ("coordinator", "admin")
# above this many teams the overview shows the per-team tables without a chart card per team
# (each team's page has its charts): seventy cards would be slow to build and to read
TEAM_CHARTS_MAX = 8


def _given_of(given: int, total: int) -> str:
    return _("%(given)s of %(total)s", given=given, total=total)


def charts_for(
    progress: CaseProgress, prefix: str, team: str | None = None, scale: tuple[int, int] = (0, 0)
) -> dict[str, Markup]:
    """Return the SVG charts of one case's (or the sum's) figures, with translated labels.

    `team` names the case in the charts' titles; `scale` is the common maximum of the
    participant and interview charts when several cases are shown side by side.
    """

    def title(text: str) -> str:
        return f"{team}: {text}" if team else text

    return {
        "participants": bar_chart(
            [
                Bar(s, label("participant", s), progress.participants[s])
                for s in PARTICIPANT_STATUSES
            ],
            title=title(_("Participants by status")),
            id_prefix=f"{prefix}-participants",
            scale_max=scale[0],
        ),
        "interviews": bar_chart(
            [Bar(s, label("interview", s), progress.interviews[s]) for s in INTERVIEW_STATUSES],
            title=title(_("Interviews by status")),
            id_prefix=f"{prefix}-interviews",
            scale_max=scale[1],
        ),
        "consents": share_chart(
            [(label("consent_item", k), progress.consent_items.given[k]) for k in CONSENT_ITEMS],
            progress.consent_items.consents,
            title=title(_("Consent items given, among valid consents")),
            id_prefix=f"{prefix}-consents",
            value_text=_given_of,
        ),
    }


def progress_context(cases: list[Case], current: Case | None) -> dict:
    """Return the figures and charts of the progress page (and report) in the current language."""
    shown = [current] if current else cases
    progress = case_progress(db.session, [c.id for c in shown], utcnow())
    lang = ui_lang()
    # one scale for the teams' small charts, so a longer bar always means more
    scale = (
        max((max(p.participants.values()) for p in progress.cases), default=0),
        max((max(p.interviews.values()) for p in progress.cases), default=0),
    )
    return dict(
        cases=cases,
        current=current,
        progress=progress,
        charts=charts_for(progress.total, "all"),
        case_charts={
            p.code: charts_for(p, f"case-{p.code}", p.name(lang), scale) for p in progress.cases
        }
        if len(progress.cases) <= TEAM_CHARTS_MAX
        else {},
        participant_statuses=PARTICIPANT_STATUSES,
        interview_statuses=INTERVIEW_STATUSES,
        consent_items=CONSENT_ITEMS,
    )


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
