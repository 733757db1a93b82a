"""The upload of audio recordings: the rules the API answers by, without HTTP (docs/recordings.md).

A tablet creates a recording (its id, the interview, the codec, the AES key wrapped to the
study key), sends its chunks one by one, each with its SHA-256, and ends it. Chunks are kept
exactly as received: still encrypted, under a key only the server's study key opens.

Who may: the user must see the interview as for any interview, the participant must not have
withdrawn, and the consent in force must say yes to `audio`. A recording's chunks and its end
come from the person who created it. A recording the store no longer knows was deleted (a
withdrawal, of audio or of everything, or the study's end): the tablet sends chunks only after
the store answered the recording's create, so such an id is answered `410 gone` and the tablet
drops what it holds of it.

Every write takes the store's write-order lock first (`lock_writes`, as sync batches and
withdrawals do), so a chunk is never written while its recording is being deleted and two
uploads of one chunk never race for its file.
"""

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import current_app
from flask_babel import format_decimal, ngettext
from flask_babel import gettext as _
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from interview.store import recordings as files
from interview.store.consents import PARTIAL, participant_consent
from interview.store.models import Interview, Note, Participant, Recording, RecordingChunk, User
from interview.sync.envelope import (
    MAX_RECORDING_OFFSET_MS,
    RECORDING_STOP_REASONS,
    Reject,
    _choice,
    _is_uuid,
    _unknown_keys,
)
from interview.sync.log import lock_writes
from interview.trust import audit, study_key
from interview.trust.access import can_see_participant
from interview.trust.sealed_box import BoxError, unwrap_key
from interview.trust.study_end import ended_at as study_ended_at

# a recording of a whole day is far longer than any interview: times and counts beyond are
# malformed, not recordings
MAX_MS = 24 * 3600 * 1000
MAX_CHUNKS = 1_000_000
CREATE_FIELDS = ("interview_id", "mime", "kid", "wrapped_key", "started_at", "device_id")
END_FIELDS = ("chunks", "duration_ms", "ended_at", "reason")
# what MediaRecorder names: `audio/webm;codecs=opus`, `audio/mp4`, `audio/ogg; codecs="opus"`
MIME = re.compile(
    r'audio/[a-z0-9][a-z0-9.+-]{0,39}(?: ?; ?codecs="?[a-z0-9][a-z0-9., +-]{0,39}"?)?'
)
SHA256 = re.compile(r"[0-9a-f]{64}")
MIN_YEAR, MAX_YEAR = 2000, 2200


class RecordingRefused(Exception):
    """A request the store does not take: its HTTP status, a code and a message to show."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(code)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class Stored:
    """How a request went: the recording, and whether it (or the chunk) is new."""

    recording: Recording
    created: bool
    chunk: RecordingChunk | None = None


# -- the words of refusal ------------------------------------------------------------------------


def _bad(field: str) -> RecordingRefused:
    return RecordingRefused(
        400, "bad_request", _("The recording's %(field)s is missing or not valid.", field=field)
    )


def _not_found() -> RecordingRefused:
    return RecordingRefused(
        404,
        "not_found",
        _(
            "This interview is not in the case store, or you do not have access to it. "
            "The recording stays on this tablet."
        ),
    )


def _gone(reason: str = "deleted") -> RecordingRefused:
    if reason == "withdrawn":
        message = _(
            "The participant has withdrawn from the study: their recordings are deleted. "
            "The tablet deletes what it holds of this one."
        )
    elif reason == "study_ended":
        message = _(
            "The study has ended: its recordings are deleted and no more are kept. "
            "The tablet deletes what it holds of this one."
        )
    elif reason == "audio":
        message = _(
            "The participant has withdrawn consent to audio recording: their recordings are "
            "deleted. The tablet deletes what it holds of this one."
        )
    else:
        message = _(
            "This recording is no longer in the case store: it was deleted. "
            "The tablet deletes what it holds of it."
        )
    return RecordingRefused(410, "gone", message)


def _not_yours() -> RecordingRefused:
    return RecordingRefused(
        409,
        "recording",
        _("This recording belongs to another interview or another person. Nothing was saved."),
    )


# -- reading what the tablet sent ----------------------------------------------------------------


def _recording_id(value: Any) -> str:
    if not _is_uuid(value):
        raise RecordingRefused(
            400, "bad_request", _("A recording's id is a UUID made on the tablet.")
        )
    return value.lower()


def _time(data: dict, field: str) -> datetime:
    value = data.get(field)
    if not isinstance(value, str) or len(value) > 40:
        raise _bad(field)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _bad(field) from None
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        raise _bad(field)
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def _whole(value: Any, field: str, high: int, required: bool = True) -> int | None:
    if value is None and not required:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= high:
        raise _bad(field)
    return value


def _header_int(value: str | None, field: str, high: int) -> int | None:
    """A number sent in a header (text), or None when the header is absent."""
    if value is None or value == "":
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 10:
        raise _bad(field)
    return _whole(int(value), field, high)


def _object(data: Any, allowed: tuple[str, ...]) -> dict:
    if not isinstance(data, dict):
        raise RecordingRefused(
            400, "bad_request", _("Send the recording's details as a JSON object.")
        )
    extra = sorted(set(data) - set(allowed))
    if extra:
        # the names are the tablet's own keys: cut short, as they may be anything
        raise _bad(", ".join(str(name)[:40] for name in extra[:5]))
    return data


# -- who may ----------------------------------------------------------------------------------


def audio_withdrawn_at(participant: Participant) -> datetime | None:
    """When consent to audio was last withdrawn (alone, or with everything), or None."""
    times = [
        c.obtained_at
        for c in participant.consents
        if c.kind == "withdrawal" or (c.kind == PARTIAL and (c.answers or {}).get("audio") is False)
    ]
    return max(times) if times else None


def _check_participant(user: User, participant: Participant) -> None:
    """Refuse a user who may not see the participant (404), and a withdrawal (410)."""
    if not can_see_participant(user, participant):
        raise _not_found()
    if participant.status == "withdrawn":
        raise _gone("withdrawn")


def _check_audio(participant: Participant, started_at: datetime | None = None) -> None:
    """Refuse when the consent in force does not say yes to audio.

    Withdrawn (alone, or by a renewed consent that says no): 410, the tablet drops what it
    holds. Never given: 403. A recording begun before a withdrawal of audio was deleted with it
    and never comes back, even when audio is consented to again later.
    """
    withdrawn = audio_withdrawn_at(participant)
    state = participant_consent(participant)
    if state is None or not state.allows("audio"):
        if withdrawn is not None or (state is not None and "audio" in state.withdrawn):
            raise _gone("audio")
        raise RecordingRefused(
            403,
            "no_audio_consent",
            _(
                "The participant has not consented to audio recording. "
                "Nothing of the recording was saved."
            ),
        )
    if started_at is not None and withdrawn is not None and started_at < withdrawn:
        raise _gone("audio")


def _visible_recording(session: Session, user: User, recording_id: Any) -> Recording:
    """The recording, when the user may see its interview; else the refusal."""
    recording = session.get(Recording, _recording_id(recording_id))
    if recording is None:
        raise _gone()
    participant = session.get(Participant, recording.participant_id)
    _check_participant(user, participant)
    return recording


def _own_recording(session: Session, user: User, recording_id: Any) -> Recording:
    """The recording, when the user made it and may still add to it (under the write lock)."""
    lock_writes(session)
    # read under the lock: an end, a chunk or a withdrawal committed a moment ago counts
    recording = _visible_recording(session, user, recording_id)
    if recording.user_id != user.id:
        raise _not_yours()
    _check_audio(session.get(Participant, recording.participant_id))
    return recording


# -- the four requests ---------------------------------------------------------------------------


def create_recording(
    session: Session, user: User, recording_id: Any, data: Any, device_id: str | None = None
) -> Stored:
    """Create a recording, or find the same one again (idempotent); the caller commits."""
    recording_id = _recording_id(recording_id)
    data = _object(data, CREATE_FIELDS)
    interview_id = data.get("interview_id")
    if not _is_uuid(interview_id):
        raise _bad("interview_id")
    mime = data.get("mime")
    if not isinstance(mime, str) or len(mime) > 80 or not MIME.fullmatch(mime.lower()):
        raise _bad("mime")
    kid = data.get("kid")
    if not isinstance(kid, str) or not 1 <= len(kid) <= 16:
        raise _bad("kid")
    wrapped = data.get("wrapped_key")
    if not isinstance(wrapped, str) or not 1 <= len(wrapped) <= 1400:
        raise _bad("wrapped_key")
    started_at = _time(data, "started_at")
    device = data.get("device_id", device_id)
    if device is not None and not _is_uuid(device):
        raise _bad("device_id")

    lock_writes(session)
    interview = session.get(Interview, interview_id.lower())
    if interview is None:
        raise _not_found()
    participant = interview.participant  # read under the lock: a withdrawal just made counts
    _check_participant(user, participant)
    existing = session.get(Recording, recording_id)
    if existing is not None:
        if existing.interview_id != interview.id or existing.user_id != user.id:
            raise _not_yours()
        _check_audio(participant, existing.started_at)
        return Stored(existing, created=False)
    _check_audio(participant, started_at)
    if study_ended_at(session) is not None:
        # the end deleted every recording, as the consent form promised: none begins after it
        raise _gone("study_ended")
    _check_key(wrapped, kid)
    recording = Recording(
        id=recording_id,
        interview_id=interview.id,
        participant_id=participant.id,
        user_id=user.id,
        device_id=device.lower() if device else None,
        mime=mime,
        kid=kid,
        wrapped_key=wrapped,
        started_at=started_at,
        bytes=0,
    )
    session.add(recording)
    # a note of another interview that named this id before it arrived does not belong to it
    session.execute(
        update(Note)
        .where(Note.recording_id == recording_id, Note.interview_id != interview.id)
        .values(recording_id=None, recording_offset_ms=None)
        .execution_options(synchronize_session=False)
    )
    session.flush()
    audit.record(
        "recording_created", "interview", interview.id, user_id=user.id, recording=recording_id
    )
    return Stored(recording, created=True)


def _check_key(wrapped: str, kid: str) -> None:
    """Refuse a key that does not open with the study key in place: no one could listen."""
    try:
        key = study_key.current()
    except study_key.StudyKeyError:
        raise RecordingRefused(
            503, "study_key", _("The study key is not available just now.")
        ) from None
    if kid != key.kid:
        raise RecordingRefused(
            400,
            "key",
            _(
                "The recording's key is sealed to another study key than the case store's. "
                "Reload the app while online before recording."
            ),
        )
    try:
        unwrap_key(wrapped, kid, key)
    except BoxError:
        raise RecordingRefused(
            400,
            "key",
            _("The recording's key does not open with the study key. Nothing was saved."),
        ) from None


def recording_status(session: Session, user: User, recording_id: Any) -> dict:
    """What the store holds of a recording, so an interrupted upload goes on where it stopped."""
    recording = _visible_recording(session, user, recording_id)
    _check_audio(session.get(Participant, recording.participant_id))
    rows = session.execute(
        select(RecordingChunk.seq, RecordingChunk.sha256)
        .where(RecordingChunk.recording_id == recording.id)
        .order_by(RecordingChunk.seq)
    ).all()
    return {
        "id": recording.id,
        "chunks": [{"seq": seq, "sha256": sha} for seq, sha in rows],
        "ended": recording.ended_at is not None,
    }


def store_chunk(
    session: Session,
    user: User,
    recording_id: Any,
    seq: int,
    body: bytes,
    sha256: str | None,
    start_ms: str | None = None,
    duration_ms: str | None = None,
) -> Stored:
    """Keep one chunk as received (or find it again); the caller commits.

    The file is written last, once its row is in place: should the commit fail, the caller
    removes it again (`forget_chunk`).
    """
    recording_id = _recording_id(recording_id)
    if not isinstance(seq, int) or not 0 <= seq < MAX_CHUNKS:
        raise _bad("seq")
    sha = (sha256 or "").strip().lower()
    if not SHA256.fullmatch(sha):
        raise _bad("X-Chunk-SHA256")
    start = _header_int(start_ms, "X-Chunk-Start-Ms", MAX_MS)
    duration = _header_int(duration_ms, "X-Chunk-Duration-Ms", MAX_MS)
    config = current_app.config
    limit = config["RECORDING_CHUNK_MAX_BYTES"]
    if len(body) > limit:
        raise too_large(limit)
    if files.sha256_hex(body) != sha:
        raise RecordingRefused(
            400,
            "checksum",
            _("The chunk does not match its checksum. Nothing was saved; it is sent again."),
        )
    if len(body) < files.IV_BYTES + files.TAG_BYTES:
        raise _bad("chunk")

    recording = _own_recording(session, user, recording_id)
    existing = session.get(RecordingChunk, (recording.id, seq))
    if existing is not None:
        if existing.sha256 == sha and existing.size == len(body):
            return Stored(recording, created=False, chunk=existing)
        raise RecordingRefused(
            409,
            "chunk",
            _("Another chunk is already stored under this number. Nothing was saved."),
        )
    _check_opens(recording, seq, body)
    if recording.expected_chunks is not None and seq >= recording.expected_chunks:
        raise RecordingRefused(
            409,
            "chunk",
            _("The recording has ended before this chunk. Nothing was saved."),
        )
    if (recording.bytes or 0) + len(body) > config["RECORDING_MAX_BYTES"]:
        raise RecordingRefused(
            413,
            "quota",
            _("The recording has reached its size limit: nothing more of it can be kept."),
        )
    total = session.scalar(select(func.coalesce(func.sum(Recording.bytes), 0)))
    if total + len(body) > config["RECORDINGS_MAX_BYTES"]:
        raise RecordingRefused(
            413,
            "quota",
            _(
                "The case store has no more room for recordings. Nothing was saved; "
                "tell the coordinator."
            ),
        )
    chunk = RecordingChunk(
        recording_id=recording.id,
        seq=seq,
        size=len(body),
        sha256=sha,
        start_ms=start,
        duration_ms=duration,
    )
    session.add(chunk)
    recording.bytes = (recording.bytes or 0) + len(body)
    session.flush()
    files.write_chunk(recording.id, seq, body)
    return Stored(recording, created=True, chunk=chunk)


def _check_opens(recording: Recording, seq: int, body: bytes) -> None:
    """Refuse a chunk that does not open with its recording's key under its own number.

    A chunk replayed under another number (or from another recording), or damaged on the way,
    would otherwise hold the place of the real one. Opened in memory only and let go at once.
    Under a study key replaced since the recording began there is nothing to open it with
    here: it is kept as received.
    """
    try:
        key = study_key.current()
    except study_key.StudyKeyError:
        return
    if recording.kid != key.kid:
        return
    try:
        files.decrypt_chunk(
            unwrap_key(recording.wrapped_key, recording.kid, key), recording.id, seq, body
        )
    except (BoxError, files.RecordingError):
        raise RecordingRefused(
            400,
            "chunk",
            _(
                "The chunk does not open with its recording's key: it is damaged or sent under "
                "another number. Nothing was saved."
            ),
        ) from None


def too_large(limit: int) -> RecordingRefused:
    """The answer to a chunk over RECORDING_CHUNK_MAX_BYTES."""
    return RecordingRefused(
        413,
        "too_large",
        _("A chunk can be at most %(size)s bytes. Nothing was saved.", size=format_decimal(limit)),
    )


def forget_chunk(recording_id: str, seq: int) -> None:
    """Remove a chunk's file whose row was not kept (the commit failed after it was written)."""
    files.chunk_path(recording_id, seq).unlink(missing_ok=True)


def end_recording(session: Session, user: User, recording_id: Any, data: Any) -> dict:
    """Note the end of a recording and say whether every chunk is in; the caller commits."""
    data = _object(data, END_FIELDS)
    chunks = _whole(data.get("chunks"), "chunks", MAX_CHUNKS)
    duration = _whole(data.get("duration_ms"), "duration_ms", MAX_MS, required=False)
    ended_at = _time(data, "ended_at")
    reason = data.get("reason")
    if reason is not None and reason not in RECORDING_STOP_REASONS:
        raise _bad("reason")
    recording = _own_recording(session, user, recording_id)
    stored = session.scalar(select(func.count()).where(RecordingChunk.recording_id == recording.id))
    highest = session.scalar(
        select(func.max(RecordingChunk.seq)).where(RecordingChunk.recording_id == recording.id)
    )
    if highest is not None and highest >= chunks:
        raise RecordingRefused(
            409,
            "chunk",
            _("More chunks are stored than the end of the recording names. Nothing was changed."),
        )
    if recording.ended_at is None:
        recording.ended_at = ended_at
        recording.expected_chunks = chunks
        recording.duration_ms = duration
        recording.end_reason = reason
        session.flush()
        audit.record(
            "recording_ended",
            "interview",
            recording.interview_id,
            user_id=user.id,
            recording=recording.id,
            chunks=chunks,
            stored=stored,
            complete=stored == chunks,
            **({"reason": reason} if reason else {}),
        )
    elif recording.expected_chunks != chunks:
        raise RecordingRefused(
            409,
            "ended",
            ngettext(
                "The recording has already ended with %(num)d chunk. Nothing was changed.",
                "The recording has already ended with %(num)d chunks. Nothing was changed.",
                recording.expected_chunks,
            ),
        )
    return {"id": recording.id, "complete": stored == recording.expected_chunks}


# -- a note's place in a recording, and the recording events (the sync rules) ---------------------

RECORDING_PLACE = (
    "recording must be {id: a UUID, offset_ms: a whole number of milliseconds "
    f"from 0 to {MAX_RECORDING_OFFSET_MS}}}"
)


def recording_place(place: Any) -> tuple[str, int]:
    """Read a new note's place in a recording: `{id, offset_ms}` (docs/recordings.md)."""
    if (
        not isinstance(place, dict)
        or set(place) != {"id", "offset_ms"}
        or not _is_uuid(place["id"])
    ):
        raise Reject(RECORDING_PLACE)
    offset = place["offset_ms"]
    if (
        not isinstance(offset, int)
        or isinstance(offset, bool)
        or not 0 <= offset <= MAX_RECORDING_OFFSET_MS
    ):
        raise Reject(RECORDING_PLACE)
    return place["id"].lower(), offset


def note_recording(
    session: Session, interview: Interview, place: tuple[str, int] | None
) -> tuple[str, int] | None:
    """Return the place in a recording a new note keeps, or None; refuse another interview's.

    A recording not in the store yet is kept by its id: it is sent beside the sync and may
    come later (its create clears the id from notes of other interviews). Where the consent in
    force no longer covers audio the recording was deleted: the note keeps its words, not the
    place.
    """
    if place is None:
        return None
    recording = session.get(Recording, place[0])
    if recording is not None and recording.interview_id != interview.id:
        raise Reject("the recording belongs to another interview")
    state = participant_consent(interview.participant)
    if state is not None and not state.allows("audio"):
        return None
    return place


def recording_details(kind: str, details: dict) -> dict:
    """recording_started names its recording; recording_stopped says why (and may name it)."""
    if kind == "recording_started":
        _unknown_keys(details, ("recording_id",))
        out: dict[str, Any] = {}
    else:
        _unknown_keys(details, ("reason", "recording_id"))
        out = {"reason": _choice(details, "reason", RECORDING_STOP_REASONS, required=True)}
    recording_id = details.get("recording_id")
    if recording_id is None and kind == "recording_stopped":
        return out
    if not _is_uuid(recording_id):
        raise Reject("details.recording_id must be a UUID")
    out["recording_id"] = recording_id.lower()
    return out
