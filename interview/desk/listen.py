"""Listening to a recording at the desk: what it is, where its notes were begun, and its
sound a byte range at a time (docs/recordings.md).

Plain functions over the store and `interview/store/recordings.py`; the views add access
checks, the audit and HTTP. The sound is decrypted only while it is sent, never kept.
"""

import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import Flask, current_app
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from interview.store.content import guide_of
from interview.store.models import AuditEvent, Interview, Note, Participant, Recording
from interview.store.recordings import RecordingError, audio_stream, plain_layout
from interview.trust.sealed_box import BoxError, unwrap_key

log = logging.getLogger(__name__)

# an open-ended range (`bytes=a-`, what a media element asks for) is answered with at most
# this much: every byte of a partial answer is decrypted before its status is sent, so a
# damaged chunk is a clear error, never an answer cut short
RANGE_CAP = 1024 * 1024
# a whole answer (no Range) or a long closed range is decrypted this far before it is sent,
# and the rest as it goes
EAGER_BYTES = RANGE_CAP
# a listen is audited once: a request from the first byte within this long after another
# audited one of the same user and recording is the same listen (the page's preload)
LISTEN_WINDOW = timedelta(minutes=10)
AUDIT_ACTION = "recording_listened"
EXCERPT_CHARS = 120

# what may be sent as a recording's Content-Type: an audio type and at most its codecs; the
# tablet names the type, and anything else (text/html) must never reach a browser as such
_MIME = re.compile(r"audio/[a-z0-9][a-z0-9.+-]{0,40}(;\s?codecs=\"?[a-zA-Z0-9.,+-]{1,40}\"?)?")
_EXTENSIONS = {
    "audio/webm": "webm",
    "audio/ogg": "ogg",
    "audio/mp4": "m4a",
    "audio/x-m4a": "m4a",
    "audio/aac": "aac",
    "audio/mpeg": "mp3",
    "audio/wav": "wav",
}
_CODECS = re.compile(r"codecs=\"?([a-zA-Z0-9.,+-]+)")


class Unsatisfiable(ValueError):
    """A Range that asks for no byte the recording has (answered 416)."""


class CannotOpen(Exception):
    """A recording this server cannot open; `reason` is `other_key` or `damaged`."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def safe_mime(mime: str | None) -> str:
    """The recording's type as sent to a browser: its own when it is audio, else bytes."""
    mime = (mime or "").strip().lower()
    return mime if _MIME.fullmatch(mime) else "application/octet-stream"


def extension(mime: str | None) -> str:
    """The file extension of a recording's type (.webm, .m4a), without the dot."""
    base = safe_mime(mime).split(";")[0]
    return _EXTENSIONS.get(base, "bin")


def codec_name(mime: str | None) -> str:
    """A short name of the container and codec, as the page shows it ("webm · opus")."""
    safe = safe_mime(mime)
    if safe == "application/octet-stream":
        return "–"
    container = safe.split(";")[0].split("/")[1]
    codecs = _CODECS.search(safe)
    return f"{container} · {codecs.group(1)}" if codecs else container


def clock(ms: int | None) -> str:
    """A place or length in a recording as a clock: 4:05, or 1:02:03 past the hour."""
    if ms is None:
        return "–"
    seconds = max(0, int(ms)) // 1000
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


# -- what a recording is ------------------------------------------------------------------------


@dataclass(frozen=True)
class Facts:
    """What the listening page says about a recording."""

    id: str
    interview_id: str
    started_at: datetime
    ended_at: datetime | None
    duration_ms: int | None
    mime: str
    codec: str
    chunks: int  # stored
    playable_chunks: int  # from the first, without a gap
    expected_chunks: int | None
    size: int  # decrypted bytes that can be played

    @property
    def complete(self) -> bool:
        """True when every chunk the tablet announced is here, without a gap."""
        return self.expected_chunks is not None and self.playable_chunks == self.expected_chunks

    @property
    def missing(self) -> bool:
        """True when a chunk is known to be missing (a gap, or fewer than announced)."""
        if self.playable_chunks < self.chunks:
            return True
        return self.expected_chunks is not None and self.chunks < self.expected_chunks


def duration_ms(recording: Recording) -> int | None:
    """How long the recording is: as the tablet said at its end, else as its chunks say."""
    if recording.duration_ms is not None:
        return recording.duration_ms
    ends = [
        c.start_ms + c.duration_ms
        for c in recording.chunks
        if c.start_ms is not None and c.duration_ms is not None
    ]
    return max(ends) if ends else None


def plain_size(recording: Recording) -> int:
    """The size of the decrypted recording that can be played (chunks from the first on)."""
    return sum(part.size for part in plain_layout(recording))


def facts(recording: Recording) -> Facts:
    """What there is to say about a recording, from its rows alone."""
    layout = plain_layout(recording)
    return Facts(
        id=recording.id,
        interview_id=recording.interview_id,
        started_at=recording.started_at,
        ended_at=recording.ended_at,
        duration_ms=duration_ms(recording),
        mime=safe_mime(recording.mime),
        codec=codec_name(recording.mime),
        chunks=len(recording.chunks),
        playable_chunks=len(layout),
        expected_chunks=recording.expected_chunks,
        size=sum(part.size for part in layout),
    )


def get_recording(session: Session, recording_id: str) -> Recording | None:
    """A recording with its chunks, or None (an id no recording can have included)."""
    if len(recording_id) > 36:
        return None
    return session.get(Recording, recording_id, options=[selectinload(Recording.chunks)])


def recordings_of_interview(session: Session, interview_id: str) -> list[Recording]:
    """An interview's recordings in the order they were made, with their chunks."""
    return list(
        session.scalars(
            select(Recording)
            .where(Recording.interview_id == interview_id)
            .options(selectinload(Recording.chunks))
            .order_by(Recording.started_at, Recording.id)
        )
    )


# -- the notes on its timeline ------------------------------------------------------------------


@dataclass(frozen=True)
class Marker:
    """A note begun while recording: where, under which question, and how it begins."""

    note_id: str
    offset_ms: int
    question_key: str
    question_text: str
    polarity: str | None
    excerpt: str
    themes: tuple[str, ...] = field(default=())


def excerpt(text: str | None, limit: int = EXCERPT_CHARS) -> str:
    """The start of a note's words on one line, cut at a word where it is long."""
    words = " ".join((text or "").split())
    if len(words) <= limit:
        return words
    cut = words[:limit].rsplit(" ", 1)[0] if " " in words[:limit] else words[:limit]
    return cut + "…"


def markers(session: Session, recording: Recording, lang: str) -> list[Marker]:
    """The notes begun while this recording ran (deleted ones left out), by their offset."""
    notes = session.scalars(
        select(Note)
        .where(Note.recording_id == recording.id, Note.deleted_at.is_(None))
        .options(selectinload(Note.themes))
        .order_by(Note.recording_offset_ms, Note.created_at, Note.id)
    )
    interview = session.get(Interview, recording.interview_id)
    texts = {}
    if interview is not None:
        guide = guide_of(interview.guide_version)
        texts = {q.key: q.text for s in guide.sections for q in s.questions}
    lang = lang if lang in ("nb", "en") else (interview.language if interview else "nb")
    out = []
    for note in notes:
        text = texts.get(note.question_key) or {}
        out.append(
            Marker(
                note_id=note.id,
                offset_ms=max(0, note.recording_offset_ms or 0),
                question_key=note.question_key,
                question_text=text.get(lang) or note.question_key,
                polarity=note.polarity,
                excerpt=excerpt(note.text),
                themes=tuple(t.key for t in note.themes),
            )
        )
    return out


# -- byte ranges --------------------------------------------------------------------------------

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


@dataclass(frozen=True)
class ByteRange:
    """The bytes [start, end) of the decrypted recording a partial answer holds."""

    start: int
    end: int

    def content_range(self, size: int) -> str:
        """The Content-Range header of the answer."""
        return f"bytes {self.start}-{self.end - 1}/{size}"


def parse_range(header: str | None, size: int, cap: int | None = RANGE_CAP) -> ByteRange | None:
    """Read a Range header against a recording of `size` bytes (RFC 9110 §14).

    None: answer the whole recording (no header, one we do not read, or several ranges,
    which a server may ignore). Raises Unsatisfiable when the range holds no byte there is.
    An open-ended range is answered with at most `cap` bytes (None: no cap); a closed one
    exactly, cut at the end of the recording.
    """
    if not header:
        return None
    spec = header.strip()
    if "," in spec:
        return None
    match = _RANGE.fullmatch(spec.replace(" ", ""))
    if not match or not (match.group(1) or match.group(2)):
        return None
    first, last = match.group(1), match.group(2)
    if len(first) > 18 or len(last) > 18:  # no recording is this large: nothing of it is there
        raise Unsatisfiable(header)
    if not first:  # bytes=-n: the last n bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise Unsatisfiable(header)
        return ByteRange(max(0, size - suffix), size)
    start = int(first)
    if last and int(last) < start:
        return None  # not a valid range: the header is ignored
    if start >= size:
        raise Unsatisfiable(header)
    if last:
        return ByteRange(start, min(size, int(last) + 1))
    end = size if cap is None else min(size, start + cap)
    return ByteRange(start, end)


# -- the sound ----------------------------------------------------------------------------------


def open_key(recording: Recording) -> bytes:
    """The recording's AES key, unwrapped with the study key.

    Raises CannotOpen("other_key") when it was wrapped to a study key this server does not
    hold, and lets StudyKeyError (no usable key file: the server's fault) through.
    """
    try:
        return unwrap_key(recording.wrapped_key, recording.kid)
    except BoxError as exc:
        raise CannotOpen("other_key") from exc


def sound(
    recording: Recording,
    aes_key: bytes,
    start: int = 0,
    end: int | None = None,
    eager: int = EAGER_BYTES,
) -> Iterator[bytes]:
    """The decrypted bytes [start, end) as an iterator whose first `eager` bytes are ready.

    Those are decrypted before this returns, so a damaged chunk among them raises
    CannotOpen("damaged") while an answer can still say so (a chunk file changed, or gone).
    A chunk damaged further on ends the iteration early (logged with ids only): the answer is
    then shorter than it said, which the browser sees as a broken transfer.
    """
    stream = audio_stream(recording, aes_key, start, end)
    ready: list[bytes] = []
    have = 0
    try:
        while have < eager:
            piece = next(stream, None)
            if piece is None:
                break
            ready.append(piece)
            have += len(piece)
    except (RecordingError, OSError) as exc:
        # a file changed or gone: the message names the fault, never what the chunk holds
        log.warning("recording %s does not open: %s", recording.id, type(exc).__name__)
        raise CannotOpen("damaged") from exc
    return _then(ready, stream, recording.id, current_app._get_current_object())


def _then(
    ready: list[bytes], rest: Iterator[bytes], recording_id: str, app: Flask
) -> Iterator[bytes]:
    yield from ready
    ready.clear()
    try:
        # the rest is read after the view has returned: the chunk files are found through the
        # app's settings, so the app's context is set up again for as long as it is read (only
        # if it is read: an answer never sent holds nothing open)
        with app.app_context():
            yield from rest
    except (RecordingError, OSError) as exc:
        log.error("recording %s stopped while it was sent: %s", recording_id, type(exc).__name__)


def recently_listened(session: Session, user_id: int, recording: Recording, now: datetime) -> bool:
    """True when this user's listen to this recording was audited within LISTEN_WINDOW."""
    rows = session.scalars(
        select(AuditEvent.detail).where(
            AuditEvent.user_id == user_id,
            AuditEvent.action == AUDIT_ACTION,
            AuditEvent.object_type == "interview",
            AuditEvent.object_id == recording.interview_id,
            AuditEvent.at >= now - LISTEN_WINDOW,
        )
    )
    return any((detail or {}).get("recording") == recording.id for detail in rows)


# -- recordings in an export --------------------------------------------------------------------


@dataclass(frozen=True)
class ExportRecording:
    """A recording as the REFI-QDA project takes it: what it is, its notes, its sound."""

    id: str
    interview_id: str
    extension: str
    started_at: datetime
    duration_ms: int | None
    size: int
    offsets: dict[str, int]  # note id -> where it was begun (ms)
    chunks: Callable[[], Iterator[bytes]]


def export_recordings(session: Session, interview_id: str) -> list[ExportRecording]:
    """An interview's recordings for an export; those this server cannot open are left out.

    The sound is read only when `chunks()` is called, a chunk at a time.
    """
    out = []
    for recording in recordings_of_interview(session, interview_id):
        try:
            key = open_key(recording)
        except CannotOpen:
            log.warning("recording %s is left out of the export: other study key", recording.id)
            continue
        offsets = dict(
            session.execute(
                select(Note.id, Note.recording_offset_ms).where(
                    Note.recording_id == recording.id,
                    Note.deleted_at.is_(None),
                    Note.recording_offset_ms.is_not(None),
                )
            ).all()
        )
        out.append(
            ExportRecording(
                id=recording.id,
                interview_id=recording.interview_id,
                extension=extension(recording.mime),
                started_at=recording.started_at,
                duration_ms=duration_ms(recording),
                size=plain_size(recording),
                offsets=offsets,
                chunks=_reader(recording, key),
            )
        )
    return out


def _reader(recording: Recording, key: bytes) -> Callable[[], Iterator[bytes]]:
    def read() -> Iterator[bytes]:
        return audio_stream(recording, key)

    return read


def count_exported(session: Session, case_ids: list[int] | None) -> int:
    """How many recordings an export of these cases holds (participants not withdrawn)."""
    stmt = (
        select(func.count(Recording.id))
        .join(Participant, Participant.id == Recording.participant_id)
        .where(Participant.status != "withdrawn")
    )
    if case_ids is not None:
        stmt = stmt.where(Participant.case_id.in_(case_ids or [-1]))
    return session.scalar(stmt) or 0
