"""What the tablet does with a recording (static/js/recording.js), written out for the tests.

A fresh AES-256-GCM key per recording, wrapped to the study key; every chunk sealed on its
own: `IV (12) || ciphertext || tag (16)`, with `<recording id>:<seq>` as additional data
(docs/recordings.md).
"""

import hashlib
import os
import uuid
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from interview.trust import study_key
from interview.trust.sealed_box import wrap_key
from tests.conftest import PASSWORD
from tests.helpers import CONSENT_ALL_YES, start_interview

# what a recorder's output begins with: WebM (EBML), MP4 (`ftyp`), Ogg, and Opus's own header
MAGIC = (b"\x1a\x45\xdf\xa3", b"ftyp", b"OggS", b"OpusHead", b"webm")


def fake_sound(seq: int, size: int = 3000) -> bytes:
    """A chunk of "sound" as MediaRecorder gives it: the container's header in the first."""
    head = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01webm\x00OpusHead" if seq == 0 else b"OpusHead"
    body = bytes((seq * 31 + i) % 251 for i in range(size))
    return head + body


def sha(data: bytes) -> str:
    """The hex SHA-256 the tablet sends with a chunk."""
    return hashlib.sha256(data).hexdigest()


def log_in(app, username: str):
    """A fresh client logged in as the user."""
    client = app.test_client()
    assert client.post("/login", data={"username": username, "password": PASSWORD}).status_code
    return client


def audio_consented(client, world, key: str = "pa", audio: str = "yes") -> str:
    """As the peer logged in on `client`: start the interview and record paper consent, with
    the given answer to audio; return the interview id."""
    iid = world.interviews[key]
    assert start_interview(client, iid).status_code == 302
    answer = client.post(
        f"/interviews/{iid}/consent",
        data={
            **CONSENT_ALL_YES,
            "item-audio": audio,
            "method": "paper",
            "paper_form_number": "P-1",
        },
    )
    assert answer.status_code == 302
    return iid


def recording_files(app) -> list[Path]:
    """Every file under RECORDINGS_DIR."""
    folder = Path(app.config["RECORDINGS_DIR"])
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


class Tablet:
    """One recording as a tablet makes and sends it."""

    def __init__(self, app, client, interview_id: str, recording_id: str | None = None):
        self.client = client
        self.interview_id = interview_id
        self.id = recording_id or str(uuid.uuid4())
        self.key = AESGCM.generate_key(bit_length=256)
        with app.app_context():
            key = study_key.current()
            self.kid = key.kid
            self.wrapped = wrap_key(self.key, key)

    @property
    def url(self) -> str:
        """The recording's URL."""
        return f"/api/v1/recordings/{self.id}"

    def body(self, **changes) -> dict:
        """The body of the recording's create."""
        return {
            "interview_id": self.interview_id,
            "mime": "audio/webm;codecs=opus",
            "kid": self.kid,
            "wrapped_key": self.wrapped,
            "started_at": "2026-11-23T10:00:00Z",
            **changes,
        }

    def create(self, **changes):
        """PUT the recording."""
        return self.client.put(self.url, json=self.body(**changes))

    def seal(self, seq: int, plain: bytes, recording_id: str | None = None) -> bytes:
        """Encrypt a chunk as the tablet does."""
        iv = os.urandom(12)
        aad = f"{recording_id or self.id}:{seq}".encode("ascii")
        return iv + AESGCM(self.key).encrypt(iv, plain, aad)

    def put(self, seq: int, data: bytes, checksum: str | None = None, **headers):
        """PUT a chunk's bytes with their checksum (the body's own unless given)."""
        return self.client.put(
            f"{self.url}/chunks/{seq}",
            data=data,
            content_type="application/octet-stream",
            headers={"X-Chunk-SHA256": checksum or sha(data), **headers},
        )

    def send(self, seq: int, plain: bytes | None = None):
        """Seal and send a chunk; return the answer and the bytes sent."""
        data = self.seal(seq, fake_sound(seq) if plain is None else plain)
        headers = {"X-Chunk-Start-Ms": str(seq * 5000), "X-Chunk-Duration-Ms": "5000"}
        return self.put(seq, data, **headers), data

    def status(self):
        """GET what the store holds of the recording."""
        return self.client.get(self.url)

    def end(self, count: int, **changes):
        """POST the recording's end after `count` chunks."""
        body = {
            "chunks": count,
            "duration_ms": count * 5000,
            "ended_at": "2026-11-23T10:30:00Z",
            "reason": "interview_ended",
            **changes,
        }
        return self.client.post(f"{self.url}/end", json=body)
