"""Audio recordings as the tablets encrypted them: the chunk files, their deletion with the
rows, and the one place they are opened again (docs/recordings.md).

A chunk file is `IV (12 bytes) || AES-256-GCM ciphertext || tag`, under the recording's own
AES key, with `<recording id>:<seq>` as additional data; the key is kept only wrapped to the
study key. Files are written whole under a temporary name and renamed, so a chunk file is
either all there or not there.
"""

import hashlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import current_app
from sqlalchemy import delete, event, select, update
from sqlalchemy.orm import Session, scoped_session

from interview.store.models import Note, Recording, RecordingChunk

IV_BYTES = 12
TAG_BYTES = 16


class RecordingError(Exception):
    """A recording that cannot be opened; the message says why, never what it holds."""


def recordings_dir() -> Path:
    """The folder of every recording (made 0700 when missing)."""
    folder = Path(current_app.config["RECORDINGS_DIR"])
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


def _folder(recording_id: str) -> Path:
    return recordings_dir() / recording_id


def chunk_path(recording_id: str, seq: int) -> Path:
    """Where a chunk of a recording is kept."""
    return _folder(recording_id) / f"{seq:06d}.chunk"


def sha256_hex(data: bytes) -> str:
    """The hex SHA-256 of bytes, as the tablet sends it."""
    return hashlib.sha256(data).hexdigest()


def write_chunk(recording_id: str, seq: int, data: bytes) -> None:
    """Keep a chunk's bytes as received (whole or not at all)."""
    folder = _folder(recording_id)
    folder.mkdir(mode=0o700, exist_ok=True)
    final = chunk_path(recording_id, seq)
    tmp = final.with_suffix(".part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, final)


def read_chunk(recording_id: str, seq: int) -> bytes:
    """The bytes of a kept chunk, as received."""
    return chunk_path(recording_id, seq).read_bytes()


# -- deletion ------------------------------------------------------------------------------------


def delete_recordings(session: Session, recording_ids: list[str]) -> int:
    """Delete recordings: their rows now, their files when the transaction commits.

    The folders are renamed aside at once, so nothing can open them from here on; a rollback
    puts them back, a commit removes them. Notes keep their words: only their place in the
    deleted recording goes. Returns how many recordings there were.
    """
    if not recording_ids:
        return 0
    if isinstance(session, scoped_session):
        # the listeners below belong to this transaction's session: on a scoped session they
        # would be put on its factory, and another request's commit would remove the files
        session = session()
    session.execute(delete(RecordingChunk).where(RecordingChunk.recording_id.in_(recording_ids)))
    session.execute(
        update(Note)
        .where(Note.recording_id.in_(recording_ids))
        .values(recording_id=None, recording_offset_ms=None)
    )
    count = session.execute(delete(Recording).where(Recording.id.in_(recording_ids))).rowcount
    aside: list[tuple[Path, Path]] = []
    for rid in recording_ids:
        folder = _folder(rid)
        if folder.exists():
            gone = folder.with_name(f".{rid}.deleted")
            os.replace(folder, gone)
            aside.append((folder, gone))
    if aside:

        @event.listens_for(session, "after_commit", once=True)
        def _remove(_session):
            for _folder_path, gone in aside:
                shutil.rmtree(gone, ignore_errors=True)

        @event.listens_for(session, "after_soft_rollback", once=True)
        def _restore(_session, _previous):
            for folder_path, gone in aside:
                if gone.exists() and not folder_path.exists():
                    os.replace(gone, folder_path)

    return count


def recordings_of_participant(session: Session, participant_id: str) -> list[str]:
    """The ids of a participant's recordings."""
    return list(
        session.scalars(select(Recording.id).where(Recording.participant_id == participant_id))
    )


def delete_participant_recordings(session: Session, participant_id: str) -> int:
    """Delete every recording of a participant (withdrawal of audio, or of everything)."""
    return delete_recordings(session, recordings_of_participant(session, participant_id))


def delete_all_recordings(session: Session) -> int:
    """Delete every recording of the study (its end: docs/data-protection.md §8.4)."""
    return delete_recordings(session, list(session.scalars(select(Recording.id))))


# -- opening them again ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PlainChunk:
    """Where a chunk's sound lies in the decrypted recording."""

    seq: int
    offset: int  # bytes before it in the decrypted recording
    size: int  # its decrypted size


def plain_layout(recording: Recording) -> list[PlainChunk]:
    """The decrypted recording chunk by chunk: contiguous chunks from 0 only (a gap ends it)."""
    layout: list[PlainChunk] = []
    offset = 0
    for expected, chunk in enumerate(recording.chunks):
        if chunk.seq != expected:
            break
        size = max(0, chunk.size - IV_BYTES - TAG_BYTES)
        layout.append(PlainChunk(chunk.seq, offset, size))
        offset += size
    return layout


def decrypt_chunk(aes_key: bytes, recording_id: str, seq: int, data: bytes) -> bytes:
    """Open one chunk; raise RecordingError when it does not open (damaged, or out of place)."""
    if len(data) < IV_BYTES + TAG_BYTES:
        raise RecordingError("a chunk is too short")
    try:
        return AESGCM(aes_key).decrypt(
            data[:IV_BYTES], data[IV_BYTES:], f"{recording_id}:{seq}".encode("ascii")
        )
    except InvalidTag as exc:
        raise RecordingError("a chunk does not open: damaged, changed or out of place") from exc


def audio_stream(
    recording: Recording, aes_key: bytes, start: int = 0, end: int | None = None
) -> Iterator[bytes]:
    """Yield the decrypted recording from byte `start` up to `end` (exclusive; None: all).

    The seam for listening and for a later transcription: sound is decrypted a chunk at a time
    as it is read, never written anywhere in plain form.
    """
    for part in plain_layout(recording):
        if end is not None and part.offset >= end:
            return
        if part.offset + part.size <= start:
            continue
        plain = decrypt_chunk(aes_key, recording.id, part.seq, read_chunk(recording.id, part.seq))
        lo = max(0, start - part.offset)
        hi = part.size if end is None else min(part.size, end - part.offset)
        yield plain[lo:hi]
