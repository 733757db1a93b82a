"""The tablet's API: sync, the session check, the study key, the offline manifest, OpenAPI."""

import json
from datetime import timedelta
from pathlib import Path

from flask import Blueprint, Response, current_app, jsonify, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from flask_wtf.csrf import generate_csrf
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import selectinload
from werkzeug.exceptions import RequestEntityTooLarge

from interview.store.content import guide_of
from interview.store.extensions import db
from interview.store.models import Interview, Participant, utcnow
from interview.sync import waiting
from interview.sync.batch import apply_changes
from interview.sync.devices import (
    BROWSER_COOKIE,
    BROWSER_COOKIE_DAYS,
    browser_id_from,
    new_browser_id,
    owned_by_another,
    record_device,
)
from interview.sync.envelope import EnvelopeError, parse_envelope
from interview.sync.log import updates_since
from interview.sync.recordings import (
    RecordingRefused,
    create_recording,
    end_recording,
    forget_chunk,
    recording_status,
    store_chunk,
    too_large,
)
from interview.sync.rescue import rescue_token
from interview.trust import audit, study_key
from interview.trust.access import interviews_visible_to
from interview.trust.sessions import session_id
from interview.web.errors import accepts_upload, api_error, api_login_required
from interview.web.i18n import ui_lang
from interview.web.security import revalidate_each_time

bp = Blueprint("api", __name__, url_prefix="/api/v1")

OPENAPI = Path(__file__).resolve().parent / "openapi.json"
OFFLINE_DAYS = 14


def sync():
    """Apply a batch of changes and answer with results, a cursor and what changed since."""
    refused = api_login_required()
    if refused:
        return refused
    if not request.is_json:
        return api_error(400, "send the changes as application/json", "envelope")
    body = request.get_json(silent=True)
    if body is None:
        return api_error(400, _unreadable(request.get_data(cache=True)), "envelope")
    try:
        envelope = parse_envelope(body)
    except EnvelopeError as exc:
        return api_error(400, str(exc), "envelope")
    # the user itself, not the proxy: the rules ask who it is for every change
    user = current_user._get_current_object()
    if owned_by_another(db.session, user, envelope.device_id):
        # a device id belongs to the first user who synced with it: nothing is applied, and
        # the tablet makes itself a new id for this user and sends again (docs/sync.md)
        return api_error(
            409,
            _(
                "This tablet's id belongs to another person. Nothing was saved; your changes "
                "are kept on this tablet and are sent again under a new id."
            ),
            "device",
        )
    browser_id = browser_id_from(request.cookies.get(BROWSER_COOKIE))
    fresh_browser = browser_id is None
    if fresh_browser:
        browser_id = new_browser_id()
    try:
        results = apply_changes(db.session, user, envelope.changes, envelope.device_id)
        record_device(
            db.session,
            user,
            envelope.device_id,
            envelope.pending,
            browser_id=browser_id,
            replaces=envelope.replaces,
            pending_interviews=envelope.pending_interviews,
            nothing_new=all(r.status == "duplicate" for r in results),
        )
        waiting.acknowledge(db.session, user.id, envelope.device_id, envelope.refused_seen)
        if envelope.changes:
            counts: dict[str, int] = {}
            for r in results:
                counts[r.status] = counts.get(r.status, 0) + 1
            audit.record("sync_batch", "device", envelope.device_id, **counts)
        db.session.commit()
    except OperationalError as exc:
        # the store could not be written just now (SQLite's lock wait ran out under load, a
        # dropped connection): nothing of the batch is kept and the tablet sends it again.
        # Only the error's class is logged: its message quotes the statement and the words.
        db.session.rollback()
        current_app.logger.warning("sync batch not kept, answered retry: %s", type(exc).__name__)
        return api_error(
            503, _("The case store could not take every change. Sending again."), "retry"
        )
    if any(r.status == "retry" for r in results):
        # what applied is committed; the tablet keeps every entry and sends the batch again
        # (the applied ones come back as duplicates)
        return api_error(
            503, _("The case store could not take every change. Sending again."), "retry"
        )
    updates, cursor = updates_since(db.session, user, envelope.cursor)
    answer = {"results": [r.as_json() for r in results], "cursor": cursor, "updates": updates}
    # changes answered `applied` while they waited, refused since (expired, withdrawn)
    refused = waiting.refusals_to_tell(db.session, user.id, envelope.device_id)
    if refused:
        answer["refused"] = refused
    response = jsonify(answer)
    if fresh_browser:
        _give_browser_cookie(response, browser_id)
    return response


def _unreadable(raw: bytes) -> str:
    """Say why a body that did not decode is refused."""
    try:
        json.loads(raw)
    except RecursionError:
        return "the body is nested too deeply"
    except ValueError:
        pass
    return "the body is not valid JSON"


def _give_browser_cookie(response: Response, browser_id: str) -> None:
    """Name this browser in a cookie the server sets, which outlives a deleted tablet store.

    Safari deletes what a script stored (IndexedDB: the tablet's store) after seven days
    unused, but not cookies the server set: a new store then comes from a browser the server
    knows, and the coordinator can be told that the old store's waiting work may be lost.
    """
    response.set_cookie(
        BROWSER_COOKIE,
        browser_id,
        max_age=BROWSER_COOKIE_DAYS * 24 * 3600,
        path="/",
        secure=current_app.config["SESSION_COOKIE_SECURE"],
        httponly=True,
        samesite="Lax",
    )


def session_info():
    """Tell the tablet who is logged in, with a fresh CSRF token; 401 when nobody is."""
    refused = api_login_required()
    if refused:
        return refused
    try:
        # public: every tablet needs it before it goes offline, and asks this at once anyway
        key = study_key.current().public_info()
    except study_key.StudyKeyError:
        key = None
    response = jsonify(
        {
            "study_key": key,
            "user": current_user.username,
            "user_id": current_user.id,
            "role": current_user.role,
            "lang": ui_lang(),
            "csrf_token": generate_csrf(),
            # sealed into a rescue copy, it proves on the desk whose work the copy holds
            "rescue_token": rescue_token(current_app.secret_key, current_user.id),
            # names this session, so a logout made offline ends this one and no newer one
            "sid": session_id(),
        }
    )
    # the tablet asks this before its first sync: the browser is named once, here, and not by
    # several first syncs at once, each with an id of its own
    if browser_id_from(request.cookies.get(BROWSER_COOKIE)) is None:
        _give_browser_cookie(response, new_browser_id())
    return response


def study_key_info():
    """Give the study's public key: tablets seal signatures and rescue copies to it."""
    try:
        info = study_key.current().public_info()
    except study_key.StudyKeyError:
        current_app.logger.error("the study key file is missing or unusable")
        return api_error(503, _("The study key is not available just now."), "study_key")
    response = jsonify(info)
    revalidate_each_time(response)
    return response


def _interview_pages(interview: Interview) -> list[str]:
    guide = guide_of(interview.guide_version)
    pages = [
        url_for("interviews.overview", interview_id=interview.id),
        url_for("interviews.capacity", interview_id=interview.id),
        url_for("interviews.reschedule", interview_id=interview.id),
        url_for("interviews.consent", interview_id=interview.id),
        url_for("interviews.distress", interview_id=interview.id),
        url_for("interviews.distress_two", interview_id=interview.id),
        url_for("interviews.stop", interview_id=interview.id),
        url_for("interviews.finish", interview_id=interview.id),
        url_for("interviews.debrief", interview_id=interview.id),
    ]
    pages += [
        url_for("interviews.section", interview_id=interview.id, index=i)
        for i in range(len(guide.sections))
    ]
    return pages


def offline_manifest():
    """List the pages a tablet needs to run the user's coming interviews without a network."""
    refused = api_login_required()
    if refused:
        return refused
    horizon = utcnow() + timedelta(days=OFFLINE_DAYS)
    rows = db.session.scalars(
        interviews_visible_to(current_user)
        .where(
            Interview.status.in_(("planned", "in_progress", "paused")),
            Interview.planned_at <= horizon,
        )
        .join(Participant, Participant.id == Interview.participant_id)
        .where(Participant.status != "withdrawn")
        .options(selectinload(Interview.participant), selectinload(Interview.guide_version))
        .order_by(Interview.planned_at)
    )
    interviews = [
        {
            "id": iv.id,
            "code": iv.participant.code,
            "planned_at": iv.planned_at.isoformat() + "Z",
            "language": iv.language,
            "pages": _interview_pages(iv),
        }
        for iv in rows
    ]
    shell = [
        url_for("interviews.mine"),
        url_for("interviews.conflicts"),
        url_for("main.offline_page"),
        url_for("static", filename="css/app.css"),
        url_for("static", filename="js/offline.js"),
        url_for("static", filename="js/tablet.js"),
        url_for("static", filename="js/interview.js"),
        url_for("static", filename="js/notes.js"),
        url_for("static", filename="js/store.js"),
        url_for("static", filename="js/seal.js"),
        url_for("static", filename="js/keeping.js"),
        url_for("static", filename="js/identifiers.js"),
        url_for("static", filename="js/signature.js"),
        url_for("static", filename="js/recording.js"),
        url_for("static", filename="icons/icon.svg"),
        url_for("static", filename="icons/icon-180.png"),
        url_for("main.manifest"),
    ]
    return jsonify({"shell": shell, "interviews": interviews, "lang": ui_lang()})


def openapi():
    """Serve the OpenAPI 3.1 document kept in the repository."""
    return Response(OPENAPI.read_text(encoding="utf-8"), mimetype="application/json")


def openapi_document() -> dict:
    """Return the parsed OpenAPI document (for tests and docs)."""
    return json.loads(OPENAPI.read_text(encoding="utf-8"))


# -- audio recordings (docs/recordings.md): not through the sync envelope ------------------------


def _refused(exc: RecordingRefused):
    db.session.rollback()
    return api_error(exc.status, exc.message, exc.code)


def _not_kept(exc: Exception):
    # only the error's class: its message may quote the statement
    db.session.rollback()
    current_app.logger.warning("recording request not kept, answered retry: %s", type(exc).__name__)
    return api_error(
        503, _("The case store could not take the recording just now. It is sent again."), "retry"
    )


def recording(recording_id: str):
    """GET: what the store holds of a recording. PUT: create it (the same again: 200)."""
    refused = api_login_required()
    if refused:
        return refused
    user = current_user._get_current_object()
    if request.method == "GET":
        try:
            return jsonify(recording_status(db.session, user, recording_id))
        except RecordingRefused as exc:
            return _refused(exc)
    if not request.is_json:
        return api_error(400, _("Send the recording's details as JSON."), "bad_request")
    body = request.get_json(silent=True)
    if body is None:
        return api_error(400, _unreadable(request.get_data(cache=True)), "bad_request")
    try:
        stored = create_recording(db.session, user, recording_id, body)
        db.session.commit()
        answer = recording_status(db.session, user, stored.recording.id)
    except RecordingRefused as exc:
        return _refused(exc)
    except (OperationalError, IntegrityError) as exc:
        return _not_kept(exc)
    return jsonify(answer), 201 if stored.created else 200


@accepts_upload("RECORDING_CHUNK_MAX_BYTES")
def recording_chunk(recording_id: str, seq: int):
    """Keep one chunk of a recording as received (the same bytes again: 200)."""
    refused = api_login_required()
    if refused:
        return refused
    limit = current_app.config["RECORDING_CHUNK_MAX_BYTES"]
    if request.mimetype != "application/octet-stream":
        return api_error(
            400, _("Send the chunk's bytes as application/octet-stream."), "bad_request"
        )
    if request.content_length is not None and request.content_length > limit:
        return _refused(too_large(limit))
    try:
        data = request.get_data(cache=False)
    except RequestEntityTooLarge:
        return _refused(too_large(limit))
    user = current_user._get_current_object()
    stored = None
    try:
        stored = store_chunk(
            db.session,
            user,
            recording_id,
            seq,
            data,
            request.headers.get("X-Chunk-SHA256"),
            request.headers.get("X-Chunk-Start-Ms"),
            request.headers.get("X-Chunk-Duration-Ms"),
        )
        db.session.commit()
    except RecordingRefused as exc:
        return _refused(exc)
    except (OperationalError, IntegrityError, OSError) as exc:
        # the store or the disk could not take it just now (a full disk, say): nothing is kept
        if stored is not None and stored.created:
            forget_chunk(stored.recording.id, seq)  # its row was not kept
        return _not_kept(exc)
    answer = {"seq": seq, "sha256": stored.chunk.sha256}
    return jsonify(answer), 201 if stored.created else 200


def recording_end(recording_id: str):
    """Note a recording's end; say whether every chunk up to its count is stored."""
    refused = api_login_required()
    if refused:
        return refused
    if not request.is_json:
        return api_error(400, _("Send the recording's details as JSON."), "bad_request")
    body = request.get_json(silent=True)
    if body is None:
        return api_error(400, _unreadable(request.get_data(cache=True)), "bad_request")
    user = current_user._get_current_object()
    try:
        answer = end_recording(db.session, user, recording_id, body)
        db.session.commit()
    except RecordingRefused as exc:
        return _refused(exc)
    except (OperationalError, IntegrityError) as exc:
        return _not_kept(exc)
    return jsonify(answer)


bp.add_url_rule("/sync", view_func=sync, methods=["POST"])
bp.add_url_rule("/session", view_func=session_info)
bp.add_url_rule("/study-key", view_func=study_key_info)
bp.add_url_rule("/offline", view_func=offline_manifest)
bp.add_url_rule("/openapi.json", view_func=openapi)
bp.add_url_rule("/recordings/<recording_id>", view_func=recording, methods=["GET", "PUT"])
bp.add_url_rule(
    "/recordings/<recording_id>/chunks/<int:seq>", view_func=recording_chunk, methods=["PUT"]
)
bp.add_url_rule("/recordings/<recording_id>/end", view_func=recording_end, methods=["POST"])
