"""Listening to a recording at the desk: who may, what is sent, what is audited.

Recordings are made here as a tablet makes them (tests/listen_helpers.py): chunks sealed with
AES-GCM under a key wrapped to the study key, kept as files beside their rows.
"""

import re

import pytest
from sqlalchemy import select

from interview.desk import listen
from interview.store.extensions import db
from interview.store.models import AuditEvent, Participant, Recording, Theme
from interview.store.recordings import chunk_path, plain_layout
from tests.conftest import PASSWORD
from tests.listen_helpers import make_recording, note_in_recording, sound_bytes

SIZES = (3000, 5000, 4000)  # the decrypted sizes of the three chunks
NOTE_WORDS = "Hun sa at teamet kom hjem til henne før frokost"


@pytest.fixture
def rec(app, world):
    """A recording of pa's interview in three chunks, with two notes begun while it ran."""
    with app.app_context():
        pieces = [sound_bytes(n, seed=i * 10_000) for i, n in enumerate(SIZES)]
        iid = world.interviews["pa"]
        rid = make_recording(iid, pieces)
        theme = db.session.scalars(select(Theme).where(Theme.key == "housing")).one()
        first = note_in_recording(
            iid, rid, 2_000, "Først", "context.services", world.users["peer_a"], "promotes"
        )
        second = note_in_recording(
            iid, rid, 7_500, NOTE_WORDS, "context.duration", world.users["peer_a"], themes=[theme]
        )
    return {"id": rid, "plain": b"".join(pieces), "notes": [first, second], "interview": iid}


def login(client, who: str) -> None:
    """Log in with the form."""
    assert client.post("/login", data={"username": who, "password": PASSWORD}).status_code == 302


def listens(app) -> list[AuditEvent]:
    """The audit rows of listens, oldest first."""
    with app.app_context():
        return list(
            db.session.scalars(
                select(AuditEvent)
                .where(AuditEvent.action == "recording_listened")
                .order_by(AuditEvent.id)
            )
        )


# -- the domain, without HTTP ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 100, None),
        ("", 100, None),
        ("bytes=0-9", 100, (0, 10)),
        ("bytes=90-200", 100, (90, 100)),  # a closed range is cut at the end
        ("bytes=10-", 100, (10, 100)),
        ("bytes=-10", 100, (90, 100)),
        ("bytes=-500", 100, (0, 100)),  # a suffix longer than the whole: all of it
        ("bytes=0-", 5 * 1024 * 1024, (0, listen.RANGE_CAP)),  # open-ended: at most the cap
        ("bytes=0-1,5-9", 100, None),  # several ranges: the whole is sent instead
        ("bytes=9-3", 100, None),  # not a valid range: ignored
        ("items=0-9", 100, None),  # another unit: ignored
        ("bytes=-", 100, None),
        ("bytes=abc", 100, None),
    ],
)
def test_ranges_are_read_as_rfc_9110_says(header, size, expected):
    got = listen.parse_range(header, size)
    assert (None if got is None else (got.start, got.end)) == expected


@pytest.mark.parametrize(
    ("header", "size"),
    [("bytes=100-", 100), ("bytes=100-200", 100), ("bytes=-0", 100), ("bytes=-5", 0),
     ("bytes=0-", 0), ("bytes=99999999999999999999-", 100)],
)  # fmt: skip
def test_a_range_with_no_byte_there_is_unsatisfiable(header, size):
    with pytest.raises(listen.Unsatisfiable):
        listen.parse_range(header, size)


def test_only_audio_types_are_sent_as_such():
    assert listen.safe_mime("audio/webm;codecs=opus") == "audio/webm;codecs=opus"
    assert listen.safe_mime("audio/mp4") == "audio/mp4"
    for bad in ("text/html", "audio/webm\r\nX-Evil: 1", "image/svg+xml", "", None):
        assert listen.safe_mime(bad) == "application/octet-stream"
    assert listen.extension("audio/webm;codecs=opus") == "webm"
    assert listen.extension("audio/mp4") == "m4a"
    assert listen.extension("text/html") == "bin"
    assert listen.codec_name("audio/webm;codecs=opus") == "webm · opus"


def test_clock_and_excerpt():
    assert listen.clock(0) == "0:00"
    assert listen.clock(65_400) == "1:05"
    assert listen.clock(3_723_000) == "1:02:03"
    assert listen.clock(None) == "–"
    assert listen.excerpt("  a\n b  ") == "a b"
    long = listen.excerpt("ord " * 100)
    assert len(long) <= listen.EXCERPT_CHARS + 1 and long.endswith("…")


def test_facts_markers_and_the_decrypted_sound(app, rec):
    with app.app_context():
        recording = listen.get_recording(db.session, rec["id"])
        facts = listen.facts(recording)
        assert (facts.chunks, facts.expected_chunks, facts.size) == (3, 3, sum(SIZES))
        assert facts.complete and not facts.missing and facts.duration_ms == 15_000
        marks = listen.markers(db.session, recording, "en")
        assert [(m.note_id, m.offset_ms) for m in marks] == list(
            zip(rec["notes"], (2_000, 7_500), strict=True)
        )
        assert marks[1].excerpt == NOTE_WORDS and marks[1].themes == ("housing",)
        key = listen.open_key(recording)
        assert b"".join(listen.sound(recording, key)) == rec["plain"]
        assert b"".join(listen.sound(recording, key, 2990, 3010)) == rec["plain"][2990:3010]
        assert listen.get_recording(db.session, "x" * 37) is None


# -- who may listen ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "status"),
    [("peer_a", 403), ("peer_a2", 403), ("peer_b", 403), ("coord_b", 404), ("coord_a", 200),
     ("admin", 200)],
)  # fmt: skip
def test_only_the_teams_coordinator_or_an_admin_listens(app, client, rec, who, status):
    login(client, who)
    for path in ("", "/audio"):
        response = client.get(f"/desk/recordings/{rec['id']}{path}")
        assert response.status_code == status, (path, response.status_code)
        if status != 200:
            assert rec["plain"][:64] not in response.data
    assert len(listens(app)) == (1 if status == 200 else 0)


def test_anonymous_is_sent_to_log_in(client, rec):
    for path in ("", "/audio"):
        response = client.get(f"/desk/recordings/{rec['id']}{path}")
        assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_a_recording_that_is_not_there_and_a_withdrawn_participants_are_404(
    app, client, world, rec
):
    login(client, "admin")
    assert client.get("/desk/recordings/00000000-0000-0000-0000-000000000000").status_code == 404
    assert client.get("/desk/recordings/" + "a" * 300 + "/audio").status_code == 404
    with app.app_context():
        db.session.get(Participant, world.participants["pa"]).status = "withdrawn"
        db.session.commit()
    for path in ("", "/audio"):
        assert client.get(f"/desk/recordings/{rec['id']}{path}").status_code == 404


# -- what is sent --------------------------------------------------------------------------------


def test_the_whole_recording_is_the_original_sound_never_kept(client, rec):
    login(client, "coord_a")
    response = client.get(f"/desk/recordings/{rec['id']}/audio")
    assert response.status_code == 200
    assert response.data == rec["plain"]
    assert response.headers["Content-Type"] == "audio/webm;codecs=opus"
    assert response.headers["Content-Length"] == str(len(rec["plain"]))
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.headers["Cache-Control"] == "no-store"
    assert "Content-Range" not in response.headers
    assert "Content-Encoding" not in response.headers


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-99", 0, 100),  # the first bytes, as a player asks for them
        ("bytes=2500-8499", 2500, 8500),  # the middle, across the first and second chunks
        ("bytes=2990-8010", 2990, 8011),  # the first chunk, all the second, the third
        ("bytes=-1000", sum(SIZES) - 1000, sum(SIZES)),  # the last bytes
        ("bytes=7999-", 7999, sum(SIZES)),  # from a place to the end
    ],
)
def test_a_range_is_answered_206_with_exactly_those_bytes(client, rec, header, start, end):
    login(client, "coord_a")
    response = client.get(f"/desk/recordings/{rec['id']}/audio", headers={"Range": header})
    assert response.status_code == 206
    assert response.data == rec["plain"][start:end]
    assert response.headers["Content-Range"] == f"bytes {start}-{end - 1}/{sum(SIZES)}"
    assert response.headers["Content-Length"] == str(end - start)
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Accept-Ranges"] == "bytes"


def test_an_open_range_of_a_long_recording_is_answered_a_part_at_a_time(app, client, world):
    with app.app_context():
        pieces = [sound_bytes(700_000, seed=i) for i in range(3)]
        rid = make_recording(world.interviews["pa"], pieces)
    plain = b"".join(pieces)
    login(client, "coord_a")
    response = client.get(f"/desk/recordings/{rid}/audio", headers={"Range": "bytes=100-"})
    assert response.status_code == 206
    end = 100 + listen.RANGE_CAP
    assert response.headers["Content-Range"] == f"bytes 100-{end - 1}/{len(plain)}"
    assert response.data == plain[100:end]
    rest = client.get(f"/desk/recordings/{rid}/audio", headers={"Range": f"bytes={end}-"})
    assert rest.data == plain[end : end + listen.RANGE_CAP]


def test_an_unsatisfiable_range_is_416_with_the_size(client, rec):
    login(client, "coord_a")
    for header in (f"bytes={sum(SIZES)}-", "bytes=-0", "bytes=20000-30000"):
        response = client.get(f"/desk/recordings/{rec['id']}/audio", headers={"Range": header})
        assert response.status_code == 416, header
        assert response.headers["Content-Range"] == f"bytes */{sum(SIZES)}"
        assert response.data == b""


def test_a_range_asked_if_unchanged_gets_the_whole(client, rec):
    """No validator is given out, so If-Range cannot match: the whole recording is sent."""
    login(client, "coord_a")
    response = client.get(
        f"/desk/recordings/{rec['id']}/audio",
        headers={"Range": "bytes=10-19", "If-Range": '"x"'},
    )
    assert response.status_code == 200 and response.data == rec["plain"]


def test_a_type_that_is_not_audio_is_sent_as_bytes(app, client, world):
    with app.app_context():
        rid = make_recording(world.interviews["pa"], [b"<script>alert(1)</script>"], "text/html")
    login(client, "coord_a")
    response = client.get(f"/desk/recordings/{rid}/audio")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_a_gap_ends_what_can_be_played_and_the_page_says_so(app, client, world):
    with app.app_context():
        pieces = [sound_bytes(1000, seed=i * 1000) for i in range(3)]
        rid = make_recording(world.interviews["pa"], pieces)
        recording = db.session.get(Recording, rid)
        db.session.delete(recording.chunks[1])
        db.session.commit()
    login(client, "coord_a")
    response = client.get(f"/desk/recordings/{rid}/audio")
    assert response.data == pieces[0]
    page = client.get(f"/desk/recordings/{rid}?lang=en")
    assert "Some parts of this recording have not reached the case store" in page.text


# -- when it cannot be opened --------------------------------------------------------------------


@pytest.mark.parametrize("seq", [0, 1])
def test_a_damaged_chunk_is_a_clear_error_with_no_sound(app, client, rec, seq):
    with app.app_context():
        path = chunk_path(rec["id"], seq)
        data = bytearray(path.read_bytes())
        data[20] ^= 0x01  # one bit of the ciphertext
        path.write_bytes(bytes(data))
    login(client, "coord_a")
    for headers in ({}, {"Range": "bytes=0-"}, {"Range": "bytes=2990-3010"}):
        response = client.get(
            f"/desk/recordings/{rec['id']}/audio?lang=en", headers=headers, buffered=True
        )
        assert response.status_code == 409, headers
        assert "part of it is damaged or was changed" in response.text
        assert response.mimetype == "text/html"
        # nothing of the sound, not even the chunks before the damaged one
        assert rec["plain"][:32] not in response.data
        assert rec["plain"][3000:3032] not in response.data
    # a range wholly before the damage is still sent
    if seq == 1:
        ok = client.get(f"/desk/recordings/{rec['id']}/audio", headers={"Range": "bytes=0-99"})
        assert ok.status_code == 206 and ok.data == rec["plain"][:100]


def test_a_chunk_swapped_for_another_does_not_open(app, client, rec):
    """Chunks are sealed to their place: the second's file under the first's number fails."""
    with app.app_context():
        first, second = chunk_path(rec["id"], 0), chunk_path(rec["id"], 1)
        first.write_bytes(second.read_bytes())
    login(client, "coord_a")
    response = client.get(f"/desk/recordings/{rec['id']}/audio")
    assert response.status_code == 409


def test_a_missing_chunk_file_is_a_clear_error(app, client, rec):
    with app.app_context():
        chunk_path(rec["id"], 0).unlink()
    login(client, "coord_a")
    response = client.get(f"/desk/recordings/{rec['id']}/audio?lang=en")
    assert response.status_code == 409
    assert "part of it is damaged" in response.text


def test_a_recording_sealed_to_another_study_key_says_so(app, client, world):
    with app.app_context():
        rid = make_recording(world.interviews["pa"], [b"sound"], kid="0123456789abcdef")
    login(client, "coord_a")
    page = client.get(f"/desk/recordings/{rid}?lang=en")
    assert page.status_code == 200
    assert "sealed to another study key" in page.text
    assert "<audio" not in page.text
    audio = client.get(f"/desk/recordings/{rid}/audio?lang=en")
    assert audio.status_code == 409 and "another study key" in audio.text


def test_no_study_key_file_is_503(app, client, rec, monkeypatch):
    from interview.trust import study_key

    def missing():
        raise study_key.StudyKeyError("no key")

    monkeypatch.setattr(study_key, "current", missing)
    login(client, "coord_a")
    response = client.get(f"/desk/recordings/{rec['id']}/audio?lang=en")
    assert response.status_code == 503
    assert "The study key is not available" in response.text
    page = client.get(f"/desk/recordings/{rec['id']}?lang=en")
    assert page.status_code == 200 and "The study key is not available" in page.text


# -- the audit log -------------------------------------------------------------------------------


def test_a_listen_is_audited_once_with_ids_only(app, client, world, rec):
    login(client, "coord_a")
    assert client.get(f"/desk/recordings/{rec['id']}").status_code == 200
    # the player's first request (from byte 0) and later ranges are the same listen
    client.get(f"/desk/recordings/{rec['id']}/audio", headers={"Range": "bytes=0-"})
    client.get(f"/desk/recordings/{rec['id']}/audio", headers={"Range": "bytes=5000-"})
    rows = listens(app)
    assert len(rows) == 1
    (row,) = rows
    assert row.user_id == world.users["coord_a"]
    assert (row.object_type, row.object_id) == ("interview", rec["interview"])
    assert row.detail == {"recording": rec["id"], "via": "page"}

    # the sound fetched on its own, by someone who did not open the page, is audited too
    other = app.test_client()
    login(other, "admin")
    assert other.get(f"/desk/recordings/{rec['id']}/audio").status_code == 200
    other.get(f"/desk/recordings/{rec['id']}/audio", headers={"Range": "bytes=10-20"})
    rows = listens(app)
    assert len(rows) == 2
    assert rows[1].user_id == world.users["admin"] and rows[1].detail["via"] == "audio"
    for row in rows:
        assert NOTE_WORDS not in str(row.detail)


def test_the_audit_page_names_the_listen(app, client, rec):
    login(client, "coord_a")
    client.get(f"/desk/recordings/{rec['id']}")
    page = client.get("/desk/audit/?lang=en")
    assert "Audio recording listened to" in page.text
    assert rec["id"] in page.text  # the recording's id, shown as a safe detail


# -- the page --------------------------------------------------------------------------------


def test_the_page_has_a_player_and_the_notes_as_a_timeline(app, client, rec):
    login(client, "coord_a")
    page = client.get(f"/desk/recordings/{rec['id']}?lang=en")
    assert page.status_code == 200
    assert page.headers["Cache-Control"] == "no-store"
    html = page.text
    audio = re.search(r"<audio [^>]*>", html).group(0)
    assert "controls" in audio and 'preload="metadata"' in audio
    assert f'src="/desk/recordings/{rec["id"]}/audio"' in audio
    assert 'src="/static/js/listen.js"' in html
    jumps = re.findall(r'<button type="button" class="button quiet timeline-jump" '
                       r'data-offset-ms="(\d+)"', html)  # fmt: skip
    assert jumps == ["2000", "7500"]
    assert "0:02" in html and "0:07" in html
    assert NOTE_WORDS in html  # the words are on the page, as on other desk pages
    for url in re.findall(r'(?:href|src|action)="([^"]*)"', html):
        assert "Hun" not in url and "Først" not in url, url
    assert "Parts received" in html and "3 of 3" in html
    assert "webm · opus" in html and "0:15" in html


def test_a_deleted_note_is_not_on_the_timeline(app, client, rec):
    from interview.store.models import Note, utcnow

    with app.app_context():
        db.session.get(Note, rec["notes"][1]).deleted_at = utcnow()
        db.session.commit()
    login(client, "coord_a")
    html = client.get(f"/desk/recordings/{rec['id']}?lang=en").text
    assert NOTE_WORDS not in html
    assert html.count("timeline-jump") == 1


def test_the_participants_page_links_each_recording(app, client, world, rec):
    login(client, "coord_a")
    page = client.get(f"/participants/{world.participants['pa']}?lang=en").text
    assert f'href="/desk/recordings/{rec["id"]}"' in page
    assert ">Listen<" in page
    other = client.get(f"/participants/{world.participants['pa2']}?lang=en").text
    assert "/desk/recordings/" not in other


def test_plain_layout_is_what_is_sent(app, rec):
    """The page's sizes and the route's come from the same layout (store/recordings.py)."""
    with app.app_context():
        recording = db.session.get(Recording, rec["id"])
        assert [p.size for p in plain_layout(recording)] == list(SIZES)
        assert listen.plain_size(recording) == sum(SIZES)


def test_damage_past_what_was_decrypted_ahead_ends_the_sound_early(app, rec, caplog):
    """A long answer is decrypted ahead only so far: damage further on cuts it short, logged
    with the recording's id and nothing of the sound."""
    with app.app_context():
        path = chunk_path(rec["id"], 2)
        path.write_bytes(path.read_bytes()[:-1] + b"\x00")
        recording = listen.get_recording(db.session, rec["id"])
        sound = listen.sound(recording, listen.open_key(recording), eager=10)
        assert b"".join(sound) == rec["plain"][:8000]
    assert rec["id"] in caplog.text and "stopped while it was sent" in caplog.text


def test_head_says_the_size_without_the_sound(client, rec):
    login(client, "coord_a")
    response = client.head(f"/desk/recordings/{rec['id']}/audio")
    assert response.status_code == 200
    assert response.headers["Content-Length"] == str(sum(SIZES))
    assert response.data == b""
