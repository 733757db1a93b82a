"""The REFI-QDA project with the recordings: each an AudioSource holding its decrypted sound,
each note begun while it ran an AudioSelection there, coded as its text is."""

import io
import zipfile
from pathlib import Path

import pytest
from lxml import etree
from sqlalchemy import select

from interview.desk import refi
from interview.store.extensions import db
from interview.store.models import AuditEvent, Note, Participant, Theme
from interview.store.recordings import chunk_path
from tests.conftest import PASSWORD
from tests.listen_helpers import make_recording, note_in_recording, sound_bytes

XSD = Path(__file__).resolve().parents[2] / "standards" / "refi-qda-project-1.0.xsd"
NS = {"q": "urn:QDA-XML:project:1.0"}
WORDS = "Teamet hjalp med bolig – æøå 🙂"


@pytest.fixture
def recorded(app, world):
    """pa's interview: a WebM recording with two notes in it and a note outside it; an MP4
    recording with no note; pb's recording (team B); pa2 withdrawn, with a recording."""
    with app.app_context():
        housing = db.session.scalars(select(Theme).where(Theme.key == "housing")).one()
        iid = world.interviews["pa"]
        webm = [sound_bytes(4000, seed=1), sound_bytes(4000, seed=5000)]
        mp4 = [sound_bytes(2500, seed=9000)]
        ids = {
            "webm": make_recording(iid, webm),
            "mp4": make_recording(iid, mp4, mime="audio/mp4"),
            "team_b": make_recording(world.interviews["pb"], [b"team B sound"]),
            "withdrawn": make_recording(world.interviews["pa2"], [b"withdrawn sound"]),
        }
        peer = world.users["peer_a"]
        notes = {
            "first": note_in_recording(
                iid, ids["webm"], 1_500, WORDS, "context.services", peer, "promotes", [housing]
            ),
            "second": note_in_recording(
                iid, ids["webm"], 4_000, "Svar to", "context.duration", peer
            ),
            # begun near the end: its selection stops where the recording does
            "late": note_in_recording(iid, ids["webm"], 9_000, "Sent", "context.duration", peer),
        }
        db.session.add(Note(interview_id=iid, question_key="context.contact", text="Uten lyd"))
        db.session.get(Participant, world.participants["pa2"]).status = "withdrawn"
        db.session.commit()
    return {"ids": ids, "notes": notes, "webm": b"".join(webm), "mp4": b"".join(mp4)}


def _project(client, query: str) -> tuple[etree._Element, dict[str, bytes]]:
    response = client.get(f"/desk/exports/project.qdpx?{query}")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    with zipfile.ZipFile(io.BytesIO(response.data)) as zf:
        assert zf.testzip() is None
        files = {n: zf.read(n) for n in zf.namelist()}
    schema = etree.XMLSchema(etree.parse(str(XSD)))
    doc = etree.fromstring(files["project.qde"])
    schema.assertValid(doc)
    return doc, files


def _login(client, who: str) -> None:
    assert client.post("/login", data={"username": who, "password": PASSWORD}).status_code == 302


def test_with_audio_each_recording_is_a_valid_audio_source_of_its_sound(app, client, recorded):
    _login(client, "coord_a")
    doc, files = _project(client, "case=A&audio=1&lang=en")
    sources = {s.get("guid"): s for s in doc.iterfind("q:Sources/q:AudioSource", NS)}
    webm_guid = refi.guid("recording", recorded["ids"]["webm"])
    mp4_guid = refi.guid("recording", recorded["ids"]["mp4"])
    assert set(sources) == {webm_guid, mp4_guid}  # not team B's, not the withdrawn's
    assert sources[webm_guid].get("path") == f"internal://{webm_guid}.webm"
    assert sources[mp4_guid].get("path") == f"internal://{mp4_guid}.m4a"
    # the zip holds the decrypted sound, byte for byte
    assert files[f"sources/{webm_guid}.webm"] == recorded["webm"]
    assert files[f"sources/{mp4_guid}.m4a"] == recorded["mp4"]
    assert b"team B sound" not in b"".join(files.values())
    assert b"withdrawn sound" not in b"".join(files.values())

    codes = {c.get("guid"): c.get("name") for c in doc.iterfind(".//q:Code", NS)}
    selections = sources[webm_guid].findall("q:AudioSelection", NS)
    found = {}
    by_guid = {
        refi.guid("note-audio", v, recorded["ids"]["webm"]): k for k, v in recorded["notes"].items()
    }
    for selection in selections:
        note = by_guid[selection.get("guid")]
        coded = sorted(codes[c.get("targetGUID")] for c in selection.iterfind(".//q:CodeRef", NS))
        found[note] = (int(selection.get("begin")), int(selection.get("end")), coded)
    # each from where its note was begun to the next note's place, or the end (10 s here)
    assert found == {
        "first": (1_500, 4_000, ["Housing", "Promotes"]),
        "second": (4_000, 9_000, []),
        "late": (9_000, 10_000, []),
    }
    assert sources[mp4_guid].findall("q:AudioSelection", NS) == []
    # the text source is still there, its selections apart from the audio ones
    (text,) = doc.findall("q:Sources/q:TextSource", NS)
    text_guids = {s.get("guid") for s in text.iterfind("q:PlainTextSelection", NS)}
    audio_guids = {s.get("guid") for s in selections}
    assert not text_guids & audio_guids
    # the case lists every source of its interviews
    refs = {r.get("targetGUID") for r in doc.iterfind("q:Cases/q:Case/q:SourceRef", NS)}
    assert {webm_guid, mp4_guid, text.get("guid")} <= refs
    values = sources[webm_guid].iterfind("q:VariableValue/q:TextValue", NS)
    assert "A" in [v.text for v in values]


def test_audio_is_left_out_unless_asked_for_and_the_choice_is_audited(app, client, recorded):
    _login(client, "coord_a")
    doc, files = _project(client, "case=A")
    assert doc.findall(".//q:AudioSource", NS) == []
    assert not [n for n in files if not n.endswith((".txt", ".qde"))]
    assert recorded["webm"] not in b"".join(files.values())
    _project(client, "case=A&audio=1")
    client.get("/desk/exports/notes.csv?case=A&audio=1")
    with app.app_context():
        rows = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "export").order_by(AuditEvent.id)
        ).all()
        details = [r.detail for r in rows]
    assert details[0]["audio"] is False and "recordings" not in details[0]
    assert details[1]["audio"] is True and details[1]["recordings"] == 2
    assert details[2]["format"] == "csv" and "audio" not in details[2]


def test_an_interview_with_only_a_recording_has_an_audio_source(app, client, world):
    with app.app_context():
        rid = make_recording(world.interviews["pb"], [b"only sound"])
    _login(client, "coord_b")
    doc, files = _project(client, "audio=1")
    (source,) = doc.findall("q:Sources/q:AudioSource", NS)
    assert source.get("guid") == refi.guid("recording", rid)
    assert doc.findall("q:Sources/q:TextSource", NS) == []
    assert files[f"sources/{refi.guid('recording', rid)}.webm"] == b"only sound"


def test_a_damaged_chunk_keeps_the_project_whole_and_says_so(app, client, recorded):
    with app.app_context():
        path = chunk_path(recorded["ids"]["webm"], 1)
        path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    _login(client, "coord_a")
    doc, files = _project(client, "case=A&audio=1&lang=en")
    guid = refi.guid("recording", recorded["ids"]["webm"])
    assert files[f"sources/{guid}.webm"] == recorded["webm"][:4000]
    source = next(s for s in doc.iterfind(".//q:AudioSource", NS) if s.get("guid") == guid)
    description = source.findtext("q:Description", namespaces=NS)
    assert "Only the beginning of this recording is here" in description


def test_the_exports_page_offers_the_choice_unticked(client, recorded):
    _login(client, "coord_a")
    page = client.get("/desk/exports/?lang=en").text
    box = '<input type="checkbox" id="export-audio" name="audio" value="1"'
    assert box in page and "checked" not in page.split(box)[1].split(">")[0]
    assert '<label for="export-audio">Include the audio recordings</label>' in page
    assert "2 recordings in the chosen teams." in page


def test_selections_end_at_the_next_note_the_end_or_the_cap():
    notes = [{"id": i} for i in "abcd"]
    offsets = {"a": 0, "b": 0, "c": 100_000, "d": 400_000}
    got = [(n["id"], b, e) for n, b, e in refi.audio_selections(notes, offsets, 410_000)]
    assert got == [
        ("a", 0, 60_000),
        ("b", 0, 60_000),
        ("c", 100_000, 160_000),
        ("d", 400_000, 410_000),
    ]
    assert refi.audio_selections(notes, {"a": 5_000}, 1_000) == [(notes[0], 5_000, 5_000)]
    assert refi.audio_selections(notes, {"a": 5_000}, None) == [(notes[0], 5_000, 65_000)]
