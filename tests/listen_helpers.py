"""Recordings made as a tablet makes them, straight into the store (the upload API apart).

Each chunk is `IV || AES-256-GCM(key, plain, "<id>:<seq>")`, the key wrapped to the study key.
"""

import os
import uuid
from datetime import timedelta

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from interview.store.extensions import db
from interview.store.models import Interview, Note, Recording, RecordingChunk, utcnow
from interview.store.recordings import sha256_hex, write_chunk
from interview.trust import study_key
from interview.trust.sealed_box import wrap_key

CHUNK_MS = 5000


def seal_chunk(key: bytes, recording_id: str, seq: int, plain: bytes) -> bytes:
    """One chunk as the tablet stores and sends it."""
    iv = os.urandom(12)
    return iv + AESGCM(key).encrypt(iv, plain, f"{recording_id}:{seq}".encode())


def make_recording(
    interview_id: str,
    pieces: list[bytes],
    mime: str = "audio/webm;codecs=opus",
    ended: bool = True,
    recording_id: str | None = None,
    kid: str | None = None,
    chunk_ms: int = CHUNK_MS,
) -> str:
    """Store a recording of an interview whose decrypted chunks are `pieces`; return its id.

    Call inside an app context; the caller's session is committed.
    """
    rid = recording_id or str(uuid.uuid4())
    key = AESGCM.generate_key(bit_length=256)
    interview = db.session.get(Interview, interview_id)
    started = utcnow() - timedelta(minutes=30)
    total = 0
    recording = Recording(
        id=rid,
        interview_id=interview_id,
        participant_id=interview.participant_id,
        mime=mime,
        kid=kid or study_key.current().kid,
        wrapped_key=wrap_key(key),
        started_at=started,
        ended_at=started + timedelta(milliseconds=chunk_ms * len(pieces)) if ended else None,
        duration_ms=chunk_ms * len(pieces) if ended else None,
        expected_chunks=len(pieces) if ended else None,
        end_reason="stopped" if ended else None,
    )
    db.session.add(recording)
    db.session.flush()
    for seq, plain in enumerate(pieces):
        sealed = seal_chunk(key, rid, seq, plain)
        write_chunk(rid, seq, sealed)
        total += len(sealed)
        db.session.add(
            RecordingChunk(
                recording_id=rid,
                seq=seq,
                size=len(sealed),
                sha256=sha256_hex(sealed),
                start_ms=seq * chunk_ms,
                duration_ms=chunk_ms,
            )
        )
    recording.bytes = total
    db.session.commit()
    return rid


def note_in_recording(
    interview_id: str,
    recording_id: str,
    offset_ms: int,
    text: str,
    question_key: str,
    author_id: int | None = None,
    polarity: str | None = None,
    themes=(),
) -> str:
    """A note begun `offset_ms` into a recording; return its id (the session is committed)."""
    note = Note(
        interview_id=interview_id,
        question_key=question_key,
        text=text,
        polarity=polarity,
        author_id=author_id,
        recording_id=recording_id,
        recording_offset_ms=offset_ms,
    )
    note.themes = list(themes)
    db.session.add(note)
    db.session.commit()
    return note.id


def sound_bytes(size: int, seed: int = 0) -> bytes:
    """Bytes that stand for sound: never the same twice at two places, so a range shows."""
    out = bytearray()
    n = seed
    while len(out) < size:
        out += n.to_bytes(4, "big")
        n += 1
    return bytes(out[:size])


def opus_webm(seconds: int, hz: int = 440) -> bytes:
    """A tone in Opus in WebM as MediaRecorder writes it: no duration and no cues (the muxer
    cannot seek back into what it wrote). Needs PyAV."""
    import math
    import struct

    import av

    class Pipe:
        """A file that can only be written forward."""

        def __init__(self):
            self.data = bytearray()

        def write(self, data: bytes) -> int:
            self.data += data
            return len(data)

    out = Pipe()
    container = av.open(out, "w", format="webm")
    stream = container.add_stream("libopus", rate=48000)
    stream.layout = "mono"
    total, step, at = 48000 * seconds, 960, 0
    while at < total:
        n = min(step, total - at)
        samples = (int(6000 * math.sin(2 * math.pi * hz * i / 48000)) for i in range(at, at + n))
        frame = av.AudioFrame(format="s16", layout="mono", samples=n)
        frame.planes[0].update(struct.pack(f"<{n}h", *samples))
        frame.sample_rate, frame.pts = 48000, at
        for packet in stream.encode(frame):
            container.mux(packet)
        at += n
    for packet in stream.encode(None):
        container.mux(packet)
    container.close()
    return bytes(out.data)
