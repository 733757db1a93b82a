"""Listening to a recording: its page with the notes' timeline, and its sound in byte ranges.

The coordinator of the participant's team (or an admin) only: peers never (403), another
team's recording is not there (404). Every listen is audited once (docs/recordings.md).
"""

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    render_template,
    request,
)
from flask_babel import gettext as _
from flask_login import current_user

from interview.desk import listen
from interview.store.extensions import db
from interview.store.models import Recording, utcnow
from interview.trust import audit
from interview.trust.access import interview_or_404, roles_required
from interview.trust.study_key import StudyKeyError
from interview.web.i18n import ui_lang

COORDINATING = ("coordinator", "admin")

bp = Blueprint("listen", __name__, url_prefix="/desk/recordings")
# a recording's length as a clock, on the participant's page too
bp.add_app_template_global(listen.clock, "recording_clock")


def _recording_or_404(recording_id: str) -> Recording:
    """A recording whose interview the current user may see (as for the interview)."""
    recording = listen.get_recording(db.session, recording_id)
    if recording is None:
        abort(404, _("There is no such recording, or it was deleted."))
    interview_or_404(recording.interview_id)
    return recording


def _cannot_open(reason: str):
    if reason == "other_key":
        return _(
            "This recording was sealed to another study key than this server holds. "
            "It can be listened to only where that key is kept."
        )
    return _(
        "This recording cannot be played: part of it is damaged or was changed after it "
        "arrived. Nothing of it was sent. Ask the operator to restore the recordings from "
        "a backup."
    )


def _no_study_key():
    current_app.logger.error("the study key file is missing or unusable")
    message = _("The study key is not available just now: no recording can be opened.")
    return render_template("errors.html", code=503, message=message), 503


def _audit(recording: Recording, via: str) -> None:
    audit.record(
        listen.AUDIT_ACTION, "interview", recording.interview_id, recording=recording.id, via=via
    )


@roles_required(*COORDINATING)
def page(recording_id: str):
    """A recording's page: its facts, the player and the notes begun while it ran."""
    recording = _recording_or_404(recording_id)
    interview = recording.interview
    problem = None
    try:
        listen.open_key(recording)
    except listen.CannotOpen as cannot:
        problem = _cannot_open(cannot.reason)
    except StudyKeyError:
        current_app.logger.error("the study key file is missing or unusable")
        problem = _("The study key is not available just now: no recording can be opened.")
    facts = listen.facts(recording)
    markers = listen.markers(db.session, recording, ui_lang())
    _audit(recording, "page")
    db.session.commit()
    return render_template(
        "desk/listen.html",
        recording=recording,
        interview=interview,
        participant=interview.participant,
        facts=facts,
        markers=markers,
        problem=problem,
    )


def _unsatisfiable(size: int) -> Response:
    response = Response(status=416)
    response.headers["Content-Range"] = f"bytes */{size}"
    response.headers["Accept-Ranges"] = "bytes"
    return response


@roles_required(*COORDINATING)
def audio(recording_id: str):
    """The decrypted recording, whole or one byte range (206); never kept by the browser."""
    recording = _recording_or_404(recording_id)
    size = listen.plain_size(recording)
    # no validator is given, so a range asked "if unchanged" cannot be checked: all of it
    header = None if request.headers.get("If-Range") else request.headers.get("Range")
    try:
        wanted = listen.parse_range(header, size)
    except listen.Unsatisfiable:
        return _unsatisfiable(size)
    start, end = (0, size) if wanted is None else (wanted.start, wanted.end)
    try:
        key = listen.open_key(recording)
    except listen.CannotOpen as cannot:
        abort(409, _cannot_open(cannot.reason))
    except StudyKeyError:
        return _no_study_key()
    if start == 0 and not listen.recently_listened(
        db.session, current_user.id, recording, utcnow()
    ):
        # a listen from the start (not the page's preload after its own row, nor a seek); a
        # listen that finds the recording damaged was still asked for, so it is audited first
        _audit(recording, "audio")
        db.session.commit()
    try:
        # what is sent first is decrypted now; the rest needs no request (listen.sound)
        body = listen.sound(recording, key, start, end)
    except listen.CannotOpen as cannot:
        abort(409, _cannot_open(cannot.reason))
    response = Response(
        body,
        status=200 if wanted is None else 206,
        mimetype=listen.safe_mime(recording.mime),
    )
    response.headers["Content-Length"] = str(end - start)
    response.headers["Accept-Ranges"] = "bytes"
    if wanted is not None:
        response.headers["Content-Range"] = wanted.content_range(size)
    response.headers["Cache-Control"] = "no-store"
    return response


bp.add_url_rule("/<recording_id>", view_func=page)
bp.add_url_rule("/<recording_id>/audio", view_func=audio)
