"""The recordings' upload API (docs/recordings.md): chunks kept once, as received, encrypted;
only where the participant consented to audio; answers as the OpenAPI document has them."""

import uuid

import pytest
from sqlalchemy import select

from interview.store.extensions import db
from interview.store.models import AuditEvent, Recording, RecordingChunk
from interview.store.recordings import RecordingError, audio_stream
from interview.trust.sealed_box import unwrap_key
from tests.helpers import store_snapshot
from tests.sync.recording_tablet import (
    MAGIC,
    Tablet,
    audio_consented,
    fake_sound,
    log_in,
    recording_files,
    sha,
)
from tests.sync.test_openapi import assert_valid, check

RECORDING = "/api/v1/recordings/{id}"
CHUNK = "/api/v1/recordings/{id}/chunks/{seq}"
END = "/api/v1/recordings/{id}/end"


@pytest.fixture
def peer(app, world):
    """peer_a, logged in, in pa's interview under way with consent to audio."""
    client = log_in(app, "peer_a")
    audio_consented(client, world)
    return client


@pytest.fixture
def tablet(app, world, peer) -> Tablet:
    """A recording of pa's interview, created."""
    made = Tablet(app, peer, world.interviews["pa"])
    assert made.create().status_code == 201
    return made


def decrypted(app, recording_id: str) -> bytes:
    """The recording as the coordinator's browser hears it: decrypted on the server."""
    with app.app_context():
        recording = db.session.get(Recording, recording_id)
        key = unwrap_key(recording.wrapped_key, recording.kid)
        return b"".join(audio_stream(recording, key))


def chunk_rows(app, recording_id: str) -> list[tuple[int, str, int]]:
    with app.app_context():
        return [
            tuple(r)
            for r in db.session.execute(
                select(RecordingChunk.seq, RecordingChunk.sha256, RecordingChunk.size)
                .where(RecordingChunk.recording_id == recording_id)
                .order_by(RecordingChunk.seq)
            )
        ]


def snapshot(app) -> tuple[dict, list]:
    """Every row of both stores and every recording file, to compare before and after."""
    files = [(p, p.read_bytes()) for p in recording_files(app)]
    return store_snapshot(app), files


# -- the round trip ------------------------------------------------------------------------------


def test_create_send_end_and_the_sound_opens_again_on_the_server(app, world, peer):
    made = Tablet(app, peer, world.interviews["pa"])
    created = made.create()
    assert created.status_code == 201
    assert check(RECORDING, "put", created) == {"id": made.id, "chunks": [], "ended": False}
    assert_valid("RecordingCreate", made.body())
    again = made.create()
    assert again.status_code == 200
    check(RECORDING, "put", again)

    plains, sent = [], []
    for seq in range(4):
        plain = fake_sound(seq)
        answer, data = made.send(seq, plain)
        assert answer.status_code == 201
        assert check(CHUNK, "put", answer) == {"seq": seq, "sha256": sha(data)}
        plains.append(plain)
        sent.append(data)
    status = made.status()
    assert check(RECORDING, "get", status) == {
        "id": made.id,
        "chunks": [{"seq": s, "sha256": sha(d)} for s, d in enumerate(sent)],
        "ended": False,
    }
    ended = made.end(4)
    assert ended.status_code == 200
    assert check(END, "post", ended) == {"id": made.id, "complete": True}
    assert made.status().get_json()["ended"] is True
    assert made.end(4).get_json() == {"id": made.id, "complete": True}  # the same end again

    # kept exactly as received: ciphertext only, no container's magic anywhere on disk
    files = recording_files(app)
    assert [p.read_bytes() for p in files] == sent
    for path in files:
        assert not any(magic in path.read_bytes() for magic in MAGIC)
        assert path.stat().st_mode & 0o777 == 0o600
        assert path.parent.stat().st_mode & 0o777 == 0o700
    assert decrypted(app, made.id) == b"".join(plains)
    with app.app_context():
        recording = db.session.get(Recording, made.id)
        assert recording.bytes == sum(len(d) for d in sent)
        assert recording.expected_chunks == 4 and recording.end_reason == "interview_ended"
        assert recording.user_id == world.users["peer_a"]
        assert [r.start_ms for r in recording.chunks] == [0, 5000, 10000, 15000]
        rows = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action.like("recording_%")).order_by(AuditEvent.id)
        ).all()
        assert [(r.action, r.object_id) for r in rows] == [
            ("recording_created", world.interviews["pa"]),
            ("recording_ended", world.interviews["pa"]),
        ]
        assert rows[1].detail == {
            "recording": made.id,
            "chunks": 4,
            "stored": 4,
            "complete": True,
            "reason": "interview_ended",
        }


def test_a_chunk_sent_twice_is_stored_once_and_other_bytes_are_refused(app, tablet):
    first, data = tablet.send(0)
    assert first.status_code == 201
    twice = tablet.put(0, data)
    assert twice.status_code == 200
    assert check(CHUNK, "put", twice) == {"seq": 0, "sha256": sha(data)}
    assert chunk_rows(app, tablet.id) == [(0, sha(data), len(data))]

    other = tablet.seal(0, b"other sound" * 50)
    refused = tablet.put(0, other)
    assert refused.status_code == 409
    assert check(CHUNK, "put", refused)["code"] == "chunk"
    assert [p.read_bytes() for p in recording_files(app)] == [data]
    with app.app_context():
        assert db.session.get(Recording, tablet.id).bytes == len(data)


def test_a_chunk_replayed_under_another_number_does_not_take_its_place(app, tablet):
    _, first = tablet.send(0)
    # the same bytes (their checksum right) under number 1, and a chunk of another recording
    replayed = tablet.put(1, first)
    assert replayed.status_code == 400
    assert check(CHUNK, "put", replayed)["code"] == "chunk"
    foreign = tablet.seal(1, fake_sound(1), recording_id=str(uuid.uuid4()))
    assert tablet.put(1, foreign).status_code == 400
    assert chunk_rows(app, tablet.id) == [(0, sha(first), len(first))]
    # the real chunk 1 still finds its place
    assert tablet.send(1)[0].status_code == 201
    assert decrypted(app, tablet.id) == fake_sound(0) + fake_sound(1)


def test_a_file_changed_on_disk_does_not_open(app, tablet):
    tablet.send(0)
    path = recording_files(app)[0]
    data = bytearray(path.read_bytes())
    data[20] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(RecordingError):
        decrypted(app, tablet.id)


def test_chunks_sent_out_of_order_make_the_same_recording(app, tablet):
    for seq in (2, 0, 3, 1):
        assert tablet.send(seq)[0].status_code == 201
    assert [s for s, _, _ in chunk_rows(app, tablet.id)] == [0, 1, 2, 3]
    assert tablet.end(4).get_json()["complete"] is True
    assert decrypted(app, tablet.id) == b"".join(fake_sound(s) for s in range(4))


def test_an_end_before_every_chunk_is_in_says_so_and_the_rest_follows(app, tablet):
    tablet.send(0)
    assert tablet.end(3).get_json() == {"id": tablet.id, "complete": False}
    assert tablet.send(2)[0].status_code == 201
    assert tablet.send(1)[0].status_code == 201
    assert tablet.end(3).get_json()["complete"] is True
    # nothing after the end, and the end's count does not change
    late = tablet.send(3)[0]
    assert late.status_code == 409 and late.get_json()["code"] == "chunk"
    other = tablet.end(5)
    assert other.status_code == 409
    assert check(END, "post", other)["code"] == "ended"


def test_an_end_naming_fewer_chunks_than_are_stored_is_refused(app, tablet):
    for seq in range(3):
        tablet.send(seq)
    refused = tablet.end(2)
    assert refused.status_code == 409
    assert check(END, "post", refused)["code"] == "chunk"
    with app.app_context():
        assert db.session.get(Recording, tablet.id).ended_at is None


# -- consent and access -------------------------------------------------------------------------


@pytest.mark.parametrize("audio", ["no", None])
def test_without_consent_to_audio_nothing_is_stored(app, world, audio):
    client = log_in(app, "peer_a")
    if audio:
        audio_consented(client, world, audio=audio)
    made = Tablet(app, client, world.interviews["pa"])
    before = snapshot(app)
    refused = made.create()
    assert refused.status_code == 403
    assert check(RECORDING, "put", refused)["code"] == "no_audio_consent"
    assert "audio" in refused.get_json()["error"]
    assert snapshot(app) == before
    assert recording_files(app) == []


@pytest.mark.parametrize("who", ["peer_a2", "peer_b", "coord_b"])
def test_who_may_not_see_the_interview_gets_404_and_changes_nothing(app, world, tablet, who):
    tablet.send(0)
    other = log_in(app, who)
    stranger = Tablet(app, other, world.interviews["pa"], recording_id=tablet.id)
    before = snapshot(app)
    answers = [
        stranger.create(),
        stranger.status(),
        stranger.send(1)[0],
        stranger.put(0, recording_files(app)[0].read_bytes()),
        stranger.end(1),
    ]
    assert [a.status_code for a in answers] == [404] * 5
    assert all(a.get_json()["code"] == "not_found" for a in answers)
    fresh = Tablet(app, other, world.interviews["pa"])
    assert fresh.create().status_code == 404
    assert snapshot(app) == before


@pytest.mark.parametrize("who", ["coord_a", "admin"])
def test_the_coordinator_sees_the_status_but_adds_nothing_to_anothers_recording(
    app, world, tablet, who
):
    _, data = tablet.send(0)
    coordinator = log_in(app, who)
    theirs = Tablet(app, coordinator, world.interviews["pa"], recording_id=tablet.id)
    seen = theirs.status()
    assert seen.status_code == 200
    assert seen.get_json()["chunks"] == [{"seq": 0, "sha256": sha(data)}]
    before = snapshot(app)
    answers = [theirs.create(), theirs.put(1, tablet.seal(1, b"x" * 100)), theirs.end(1)]
    assert [(a.status_code, a.get_json()["code"]) for a in answers] == [(409, "recording")] * 3
    assert snapshot(app) == before


def test_an_id_of_another_interview_is_refused(app, world, peer, tablet):
    peer_two = log_in(app, "peer_a2")
    audio_consented(peer_two, world, key="pa2")
    taken = Tablet(app, peer_two, world.interviews["pa2"], recording_id=tablet.id)
    answer = taken.create()
    assert answer.status_code == 409
    assert check(RECORDING, "put", answer)["code"] == "recording"
    mine = Tablet(app, peer, world.interviews["pa"], recording_id=tablet.id)
    assert mine.create(interview_id=world.interviews["pa2"]).status_code == 404


def test_an_unknown_recording_is_gone(app, world, peer):
    made = Tablet(app, peer, world.interviews["pa"])
    for answer, path, method in (
        (made.status(), RECORDING, "get"),
        (made.send(0)[0], CHUNK, "put"),
        (made.end(1), END, "post"),
    ):
        assert answer.status_code == 410
        assert check(path, method, answer)["code"] == "gone"
    assert recording_files(app) == []


def test_logged_out_is_401_and_nothing_is_stored(app, world, tablet):
    anonymous = app.test_client()
    stranger = Tablet(app, anonymous, world.interviews["pa"], recording_id=tablet.id)
    for answer in (stranger.create(), stranger.status(), stranger.send(0)[0], stranger.end(1)):
        assert answer.status_code == 401
        assert answer.get_json()["code"] == "login"
    assert recording_files(app) == []


def test_every_write_needs_the_csrf_token(app, world, peer):
    app.config["WTF_CSRF_ENABLED"] = True
    made = Tablet(app, peer, world.interviews["pa"])
    refused = made.create()
    assert refused.status_code == 400
    assert check(RECORDING, "put", refused)["code"] == "csrf"
    token = peer.get("/api/v1/session").get_json()["csrf_token"]
    headers = {"X-CSRFToken": token}
    assert peer.put(made.url, json=made.body(), headers=headers).status_code == 201
    data = made.seal(0, fake_sound(0))
    assert made.put(0, data).status_code == 400
    assert made.put(0, data, **headers).status_code == 201
    unsent = peer.post(made.url + "/end", json={"chunks": 1, "ended_at": "2026-11-23T10:00:00Z"})
    assert unsent.status_code == 400
    ended = peer.post(
        made.url + "/end", json={"chunks": 1, "ended_at": "2026-11-23T10:00:00Z"}, headers=headers
    )
    assert ended.status_code == 200


# -- what is refused, and stores nothing ----------------------------------------------------------


def test_a_body_that_does_not_match_its_checksum_stores_nothing(app, tablet):
    data = tablet.seal(0, fake_sound(0))
    before = snapshot(app)
    wrong = tablet.put(0, data, checksum=sha(data[:-1]))
    assert wrong.status_code == 400
    assert check(CHUNK, "put", wrong)["code"] == "checksum"
    for checksum in ("", "abc", "z" * 64, sha(data) + "00"):
        assert tablet.put(0, data, checksum=checksum or " ").status_code == 400
    missing = tablet.client.put(
        f"{tablet.url}/chunks/0", data=data, content_type="application/octet-stream"
    )
    assert missing.status_code == 400
    as_form = tablet.client.put(
        f"{tablet.url}/chunks/0", data={"x": "y"}, headers={"X-Chunk-SHA256": sha(data)}
    )
    assert as_form.status_code == 400
    assert snapshot(app) == before


def test_sizes_past_the_limits_are_refused_and_nothing_is_stored(app, tablet):
    app.config["RECORDING_CHUNK_MAX_BYTES"] = 2000
    big = tablet.seal(0, b"s" * 2000)
    before = snapshot(app)
    too_big = tablet.put(0, big)
    assert too_big.status_code == 413
    assert check(CHUNK, "put", too_big)["code"] == "too_large"
    assert snapshot(app) == before

    app.config["RECORDING_CHUNK_MAX_BYTES"] = 1_000_000
    first = tablet.seal(0, b"s" * 1000)
    app.config["RECORDING_MAX_BYTES"] = len(first) + 10
    assert tablet.put(0, first).status_code == 201
    before = snapshot(app)
    full = tablet.put(1, tablet.seal(1, b"s" * 1000))
    assert full.status_code == 413
    assert check(CHUNK, "put", full)["code"] == "quota"
    assert snapshot(app) == before

    app.config["RECORDING_MAX_BYTES"] = 10**9
    app.config["RECORDINGS_MAX_BYTES"] = len(first) + 10
    study_full = tablet.put(1, tablet.seal(1, b"s" * 1000))
    assert study_full.status_code == 413
    assert study_full.get_json()["code"] == "quota"
    assert "coordinator" in study_full.get_json()["error"]
    assert snapshot(app) == before


def test_a_body_larger_than_any_request_is_a_json_413(app, tablet):
    app.config["RECORDING_CHUNK_MAX_BYTES"] = 10 * 1024 * 1024
    data = b"x" * (3 * 1024 * 1024)
    answer = tablet.client.put(
        f"{tablet.url}/chunks/0",
        data=data,
        content_type="application/octet-stream",
        headers={"X-Chunk-SHA256": sha(data)},
    )
    assert answer.status_code in (400, 413)  # the body's own limit, or the chunk does not open
    check(CHUNK, "put", answer)
    app.config["RECORDING_CHUNK_MAX_BYTES"] = 1000
    answer = tablet.put(0, data)
    assert answer.status_code == 413
    assert answer.get_json()["code"] == "too_large"


def test_a_key_that_does_not_open_is_refused(app, world, peer):
    made = Tablet(app, peer, world.interviews["pa"])
    before = snapshot(app)
    for changes in (
        {"wrapped_key": "AAAA"},
        {"wrapped_key": made.wrapped[:-8] + "AAAAAAA="},
        {"kid": "0123456789abcdef"},
    ):
        answer = made.create(**changes)
        assert answer.status_code == 400, changes
        assert check(RECORDING, "put", answer)["code"] == "key"
    assert snapshot(app) == before


GARBAGE = [
    None,
    "",
    " ",
    "\x00",
    "\ud800",
    "ø" * 5000,
    "𝄞🎙️ قَلَم",
    -1,
    2**63,
    1.5,
    True,
    [],
    {},
    ["a"],
    {"a": {"b": [1]}},
]


CREATE_FIELDS = ("interview_id", "mime", "kid", "wrapped_key", "started_at", "device_id")
END_FIELDS = ("chunks", "duration_ms", "ended_at", "reason")


def test_garbage_in_every_field_is_a_4xx_never_a_500(app, world, peer):
    made = Tablet(app, peer, world.interviews["pa"])
    before = snapshot(app)
    for name in (*CREATE_FIELDS, "extra"):
        for value in GARBAGE:
            if name == "device_id" and value is None:
                continue  # may be left out
            answer = made.create(**{name: value})
            assert 400 <= answer.status_code < 500, (name, value, answer.status_code)
            check(RECORDING, "put", answer)
    for body in (b"[]", b"1", b'"x"', b"null", b"{", b"[" * 5000, b'{"a": NaN}', "ø".encode()):
        answer = peer.put(made.url, data=body, content_type="application/json")
        assert answer.status_code == 400, body[:10]
        check(RECORDING, "put", answer)
    assert peer.put(made.url, data=b"{}", content_type="text/plain").status_code == 400
    for bad_id in ("x", "ø", "%F0%9F%8E%99", "1" * 300, str(uuid.uuid4()) + "0"):
        assert 400 <= peer.put(f"/api/v1/recordings/{bad_id}", json=made.body()).status_code < 500
        assert 400 <= peer.get(f"/api/v1/recordings/{bad_id}").status_code < 500
    assert snapshot(app) == before

    assert made.create().status_code == 201
    before = snapshot(app)
    for name in (*END_FIELDS, "extra"):
        for value in GARBAGE:
            if name in ("duration_ms", "reason") and value is None:
                continue  # may be left out
            answer = made.end(1, **{name: value})
            assert 400 <= answer.status_code < 500, (name, value, answer.status_code)
            check(END, "post", answer)
    data = made.seal(0, fake_sound(0))
    for header in ("X-Chunk-Start-Ms", "X-Chunk-Duration-Ms"):
        for value in ("-1", "1.5", "x", "99999999999999999999", "٣", "90000000"):
            answer = made.put(0, data, **{header: value})
            assert answer.status_code == 400, (header, value)
            check(CHUNK, "put", answer)
    for seq in ("-1", "x", "99999999999999999999999", "1000000"):
        answer = made.client.put(
            f"{made.url}/chunks/{seq}",
            data=data,
            content_type="application/octet-stream",
            headers={"X-Chunk-SHA256": sha(data)},
        )
        assert 400 <= answer.status_code < 500, seq
        assert answer.is_json
    assert snapshot(app) == before
