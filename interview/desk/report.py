"""The progress figures and their charts, in the current language, as the progress page and
the printed progress report show them.
"""

from flask_babel import gettext as _
from markupsafe import Markup

from interview.desk.charts import Bar, bar_chart, share_chart
from interview.desk.progress import (
    CONSENT_ITEMS,
    COUNTED_STATUSES,
    CaseProgress,
    case_progress,
)
from interview.store.extensions import db
from interview.store.models import INTERVIEW_STATUSES, Case, utcnow
from interview.web.i18n import ui_lang
from interview.web.labels import label

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
            [Bar(s, label("participant", s), progress.participants[s]) for s in COUNTED_STATUSES],
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
        participant_statuses=COUNTED_STATUSES,
        interview_statuses=INTERVIEW_STATUSES,
        consent_items=CONSENT_ITEMS,
    )
