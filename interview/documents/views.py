"""Guides and forms on screen, and every printable PDF: thin views over `documents`."""

import io
from datetime import date

from flask import Blueprint, abort, current_app, render_template, send_file
from flask_babel import force_locale
from flask_babel import gettext as _
from flask_login import current_user, login_required
from sqlalchemy import select

from interview.desk.report import progress_context
from interview.documents.consent_record import ensure_record
from interview.documents.consent_record import record_pdf as consent_record_pdf
from interview.documents.render import document_cache, render_pdf
from interview.field.records import ENDED, interview_record, people_of
from interview.store.consent_form import consent_letter
from interview.store.content import guide_of
from interview.store.extensions import db
from interview.store.models import (
    LANGUAGES,
    Consent,
    ConsentFormVersion,
    GuideVersion,
    User,
    utcnow,
)
from interview.trust import audit
from interview.trust.access import (
    cases_coordinated_by,
    coordinated_case_or_404,
    interview_or_404,
    participant_or_404,
    roles_required,
)
from interview.web import security
from interview.web.forms import stop_reason_choices, wellbeing_choices

bp = Blueprint("documents", __name__)

COORDINATING = ("coordinator", "admin")
# a version number the store's integer column can hold; anything larger is simply not there
MAX_VERSION = 2**31 - 1
WRITE_LINES = 9


def _lang_or_404(lang: str) -> str:
    if lang not in LANGUAGES:
        abort(404, _("Documents are printed in Norwegian Bokmål (nb) or English (en) only."))
    return lang


def _version_or_404(model, key: str, version: int, message: str):
    found = None
    if version <= MAX_VERSION and len(key) <= 80:
        found = db.session.scalars(
            select(model).where(model.key == key, model.version == version)
        ).first()
    if found is None:
        abort(404, message)
    return found


def _guide_or_404(key: str, version: int) -> GuideVersion:
    return _version_or_404(
        GuideVersion, key, version, _("There is no interview guide with that name and version.")
    )


def _consent_form_or_404(key: str, version: int) -> ConsentFormVersion:
    return _version_or_404(
        ConsentFormVersion, key, version, _("There is no consent form with that name and version.")
    )


def _study() -> str:
    return current_app.config["STUDY_NAME"]


def _published(value: str) -> date:
    return date.fromisoformat(value)


def _pdf_response(pdf: bytes, filename: str, *, key: str | None = None, cached: bool = False):
    """Send a PDF to show in the browser; only a cached document (no research data) is kept."""
    response = send_file(
        io.BytesIO(pdf),
        mimetype="application/pdf",
        download_name=filename,
        as_attachment=False,
        etag=key or False,
        conditional=key is not None,
        max_age=None,
    )
    if key is None:
        # research data: never kept by a browser or a proxy
        response.headers["Cache-Control"] = "no-store"
    else:
        # a guide or blank form: the same for everyone who may see it, and never changing
        security.allow_private_caching(response, seconds=3600)
        response.headers["X-Document-Cache"] = "hit" if cached else "miss"
    return response


@login_required
def index():
    """List the guide and consent-form versions, with their printable PDFs."""
    guides = db.session.scalars(
        select(GuideVersion).order_by(GuideVersion.key, GuideVersion.version.desc())
    ).all()
    forms = db.session.scalars(
        select(ConsentFormVersion).order_by(
            ConsentFormVersion.key, ConsentFormVersion.version.desc()
        )
    ).all()
    return render_template(
        "guides/index.html", guides=guides, forms=forms, published=_published, languages=LANGUAGES
    )


@login_required
def guide_page(key: str, version: int):
    """Show a guide version on screen, in the UI language, ready for the browser's Print."""
    stored = _guide_or_404(key, version)
    return render_template(
        "guides/guide.html",
        stored=stored,
        guide=guide_of(stored),
        published=_published(stored.published),
        languages=LANGUAGES,
    )


@login_required
def guide_pdf(key: str, version: int, language: str):
    """The printable guide of a version in one language (cached: it never changes)."""
    lang = _lang_or_404(language)
    stored = _guide_or_404(key, version)
    guide = guide_of(stored)

    def render() -> bytes:
        return render_pdf(
            "guide.html",
            lang,
            guide=guide,
            published=_published(stored.published),
            study=_study(),
            question_count=len(guide.question_keys),
            write_lines=WRITE_LINES,
        ).pdf

    name = f"guide-{stored.key}-v{stored.version}-{lang}"
    parts = {"checksum": stored.checksum, "lang": lang, "lines": WRITE_LINES, "study": _study()}
    pdf, key, hit = document_cache().get_or_render(name, parts, render)
    return _pdf_response(pdf, f"{name}.pdf", key=key, cached=hit)


@login_required
def consent_pdf(key: str, version: int, language: str):
    """The blank consent form of a version in one language, for signing on paper (cached)."""
    lang = _lang_or_404(language)
    stored = _consent_form_or_404(key, version)
    content = stored.content

    def render() -> bytes:
        return render_pdf(
            "consent.html",
            lang,
            form=content,
            letter=consent_letter(content, lang),
            version=stored.version,
            withdrawal_text=content["withdrawal"][lang],
            published=_published(stored.published),
            study=_study(),
        ).pdf

    name = f"consent-{stored.key}-v{stored.version}-{lang}"
    parts = {"checksum": stored.checksum, "lang": lang, "study": _study()}
    pdf, key, hit = document_cache().get_or_render(name, parts, render)
    return _pdf_response(pdf, f"{name}.pdf", key=key, cached=hit)


@roles_required(*COORDINATING)
def record_pdf(interview_id, language: str):
    """The record of one ended interview, for the archive (coordinators only, audited)."""
    lang = _lang_or_404(language)
    interview = interview_or_404(interview_id)
    if interview.status not in ENDED:
        abort(409, _("The interview record can be printed once the interview has ended."))
    ids = people_of(interview)
    usernames = dict(
        db.session.execute(select(User.id, User.username).where(User.id.in_(ids))).all()
        if ids
        else []
    )
    record = interview_record(interview, guide_of(interview.guide_version), usernames)
    with force_locale(lang):
        stop_reasons = {k: str(v) for k, v in stop_reason_choices() if k}
        wellbeing = {int(k): str(v) for k, v in wellbeing_choices()}
    pdf = render_pdf(
        "record.html",
        lang,
        record=record,
        interview=interview,
        study=_study(),
        printed_at=utcnow(),
        printed_by=current_user.username,
        stop_reasons=stop_reasons,
        wellbeing=wellbeing,
    ).pdf
    audit.record(
        "interview_record_printed",
        "interview",
        interview.id,
        language=lang,
        notes=record.note_count,
    )
    db.session.commit()
    return _pdf_response(pdf, f"interview-record-{interview.participant.code}-{lang}.pdf")


@roles_required(*COORDINATING)
def consent_record(consent_id):
    """A consent's signed record as rendered when it arrived (the team's coordinators, audited)."""
    consent = db.session.get(Consent, str(consent_id))
    if consent is None or consent.kind != "consent":
        abort(404)
    participant = participant_or_404(consent.participant_id)
    # rendered now if the render after its arrival did not happen (a failure, a restart)
    record = ensure_record(consent.id)
    if record is None:
        abort(404)
    audit.record("consent_record_downloaded", "consent", consent.id)
    db.session.commit()
    return _pdf_response(
        consent_record_pdf(record), f"consent-record-{participant.code}-{consent.language}.pdf"
    )


def _progress_pdf(current, lang: str):
    cases = cases_coordinated_by(current_user)
    with force_locale(lang):
        context = progress_context(cases, current)
    pdf = render_pdf(
        "progress.html",
        lang,
        study=_study(),
        printed_by=current_user.username,
        **context,
    ).pdf
    audit.record(
        "progress_report_printed",
        "case" if current else None,
        current.code if current else None,
        language=lang,
    )
    db.session.commit()
    scope = current.code if current else "all"
    return _pdf_response(pdf, f"progress-{scope}-{lang}.pdf")


@roles_required(*COORDINATING)
def progress_report(language: str):
    """The progress report of all the coordinator's teams (an admin's: the whole study)."""
    lang = _lang_or_404(language)
    return _progress_pdf(None, lang)


@roles_required(*COORDINATING)
def case_progress_report(code: str, language: str):
    """The progress report of one team the coordinator works in."""
    lang = _lang_or_404(language)
    return _progress_pdf(coordinated_case_or_404(current_user, code), lang)


# -- URL table -------------------------------------------------------------------------------
bp.add_url_rule("/guides/", view_func=index)
bp.add_url_rule("/guides/<key>/<int:version>", view_func=guide_page)
bp.add_url_rule("/guides/<key>/<int:version>/<language>.pdf", view_func=guide_pdf)
bp.add_url_rule("/consent-forms/<key>/<int:version>/<language>.pdf", view_func=consent_pdf)
bp.add_url_rule("/desk/interviews/<uuid:interview_id>/record/<language>.pdf", view_func=record_pdf)
bp.add_url_rule("/desk/consents/<uuid:consent_id>/record.pdf", view_func=consent_record)
bp.add_url_rule("/desk/report/<language>.pdf", view_func=progress_report)
bp.add_url_rule("/desk/cases/<code>/report/<language>.pdf", view_func=case_progress_report)
