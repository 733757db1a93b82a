"""The coordinator's exports: CSV, JSON and REFI-QDA, parsed back and checked against the store."""

import csv
import io
import json
import uuid
import zipfile
from datetime import datetime
from pathlib import Path

import pytest
from lxml import etree
from sqlalchemy import select

from interview import exports
from interview.extensions import db
from interview.models import (
    AuditEvent,
    Case,
    Interview,
    Note,
    Participant,
    Theme,
    User,
    utcnow,
)
from tests.helpers import CONSENT_ALL_YES, signature_data_url, start_interview

# a copy of ../shared/standards/refi-qda-project-1.0.xsd, kept in the repo so CI always validates
XSD = Path(__file__).resolve().parents[1] / "standards" / "refi-qda-project-1.0.xsd"
NS = {"q": "urn:QDA-XML:project:1.0"}

# æøå and emoji: an emoji is one code point but four UTF-8 bytes (and two UTF-16 units), so a
# wrong offset unit shows up as a selection that misses the note
SERVICES = "Får hjelp med bolig – æøå ÆØÅ 🙂 og medisiner."
DURATION = '=SUM(A1) "sitat", med komma; og 🎉'
SECOND = "Linje én\nLinje to 👍🏽 på kveldstid"
COOPERATION = "@teamet samarbeider godt med NAV ✨"
DELETED = "Slettet notat som aldri skal ut"
WITHDRAWN = "Ord fra en som trakk seg"
TEAM_B = "Notat fra team B"


def _theme_id(key: str) -> int:
    return db.session.execute(select(Theme.id).where(Theme.key == key)).scalar_one()


@pytest.fixture
def data(app, client, auth, world):
    """Notes in case A through the peer's real forms; a deleted note; a withdrawn participant."""
    with app.app_context():
        communication = _theme_id("communication")
        attitudes = _theme_id("attitudes")
        housing = _theme_id("housing")
    iid = world.interviews["pa"]
    auth.login("peer_a")
    assert start_interview(client, iid).status_code == 302
    consent = client.post(
        f"/interviews/{iid}/consent",
        data={
            **CONSENT_ALL_YES,
            "method": "tablet",
            "printed_name": "Test Person",
            "signature": signature_data_url(),
        },
    )
    assert consent.status_code == 302
    ids = {k: str(uuid.uuid4()) for k in ("services", "duration", "second", "coop", "deleted")}
    first = client.post(
        f"/interviews/{iid}/section/0",
        data={
            "new-context.services-id": ids["services"],
            "new-context.services-text": SERVICES,
            "new-context.services-polarity": "promotes",
            "new-context.services-theme": [str(housing), str(communication)],
            "new-context.services-quote": "1",
            "new-context.duration-id": ids["duration"],
            "new-context.duration-text": DURATION,
            "new-context.duration-polarity": "inhibits",
            "new-context.contact-id": ids["deleted"],
            "new-context.contact-text": DELETED,
            "go": "stay",
        },
    )
    assert first.status_code == 302
    second = client.post(
        f"/interviews/{iid}/section/0",
        data={"new-context.services-id": ids["second"], "new-context.services-text": SECOND},
    )
    assert second.status_code == 302
    third = client.post(
        f"/interviews/{iid}/section/1",
        data={
            "new-promotes.cooperation-id": ids["coop"],
            "new-promotes.cooperation-text": COOPERATION,
            "new-promotes.cooperation-theme": [str(attitudes)],
            "go": "stay",
        },
    )
    assert third.status_code == 302
    auth.logout()

    with app.app_context():
        db.session.get(Note, ids["deleted"]).deleted_at = utcnow()
        withdrawn = db.session.get(Participant, world.participants["pa2"])
        db.session.add(
            Note(
                interview_id=world.interviews["pa2"],
                question_key="context.services",
                text=WITHDRAWN,
                polarity="inhibits",
            )
        )
        withdrawn.status = "withdrawn"
        db.session.add(
            Note(
                interview_id=world.interviews["pb"],
                question_key="context.services",
                text=TEAM_B,
            )
        )
        # a retired theme stays in the codebook export
        db.session.scalars(select(Theme).where(Theme.key == "peer_support")).one().retired = True
        db.session.commit()
        stored = {n.id: n.text for n in db.session.scalars(select(Note))}
        assert stored[ids["services"]] == SERVICES and stored[ids["coop"]] == COOPERATION
        withdrawn_code = withdrawn.code
    return {"ids": ids, "withdrawn_code": withdrawn_code}


def _expected_notes(app, case_codes: set[str]) -> dict[str, Note]:
    """The notes an export of these cases must hold, read straight from the store."""
    db.session.expire_all()
    rows = db.session.scalars(
        select(Note)
        .join(Interview, Interview.id == Note.interview_id)
        .join(Participant, Participant.id == Interview.participant_id)
        .join(Case, Case.id == Participant.case_id)
        .where(
            Note.deleted_at.is_(None),
            Participant.status != "withdrawn",
            Case.code.in_(case_codes),
        )
    )
    return {n.id: n for n in rows}


def _question_text(note: Note) -> str:
    content = note.interview.guide_version.content
    for section in content["sections"]:
        for q in section["questions"]:
            if q["key"] == note.question_key:
                return q["text"][note.interview.language]
    raise AssertionError(note.question_key)


def _download(client, path: str):
    response = client.get(path)
    assert response.status_code == 200, response.status_code
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Content-Disposition"].startswith("attachment;")
    return response


def _uncell(value: str) -> str:
    """Undo the formula guard, as an analyst's script would."""
    return value[1:] if value[:2] in {"'=", "'+", "'-", "'@"} else value


def _unzip_all(blob: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        return b"".join(zf.read(name) for name in zf.namelist())


def test_csv_has_every_note_once_with_its_fields(app, client, auth, world, data):
    auth.login("coord_a")
    response = _download(client, "/desk/exports/notes.csv")
    assert response.mimetype == "text/csv"
    assert response.data.startswith("\ufeff".encode())
    rows = list(csv.DictReader(io.StringIO(response.data.decode("utf-8-sig"))))
    assert tuple(rows[0].keys()) == exports.CSV_COLUMNS

    with app.app_context():
        expected = _expected_notes(app, {"A"})
        assert data["ids"]["deleted"] not in expected
        assert sorted(r["note_id"] for r in rows) == sorted(expected)
        for row in rows:
            note = expected[row["note_id"]]
            interview = note.interview
            assert row["case"] == "A"
            assert row["participant"] == interview.participant.code
            assert row["interview_id"] == interview.id
            assert row["guide_version"] == (
                f"{interview.guide_version.key} v{interview.guide_version.version}"
            )
            assert row["interview_language"] == interview.language
            assert row["question_key"] == note.question_key
            assert row["question_text"] == _question_text(note)
            assert _uncell(row["note"]) == note.text
            assert row["polarity"] == (note.polarity or "")
            assert row["themes"] == ";".join(sorted(t.key for t in note.themes))
            assert row["possible_quote"] == ("true" if note.possible_quote else "false")
            for column, value in (("created_at", note.created_at), ("updated_at", note.updated_at)):
                assert row[column].endswith("Z")
                parsed = datetime.fromisoformat(row[column].replace("Z", "+00:00"))
                assert parsed.replace(tzinfo=None) == value.replace(microsecond=0)

    by_id = {r["note_id"]: r for r in rows}
    # the note that starts with = is guarded; the multi-line, quoted note survives the round trip
    assert by_id[data["ids"]["duration"]]["note"] == "'" + DURATION
    assert by_id[data["ids"]["coop"]]["note"] == "'" + COOPERATION
    assert by_id[data["ids"]["second"]]["note"] == SECOND
    assert by_id[data["ids"]["services"]]["themes"] == "communication;housing"


def test_safe_cell_guards_formulas_and_leaves_text_alone():
    for risky in ("=1+1", "+47 000", "-2", "@SUM(A1)", "\tx", "\rx"):
        assert exports.safe_cell(risky) == "'" + risky
    assert exports.safe_cell("Får hjelp 🙂") == "Får hjelp 🙂"
    assert exports.safe_cell(None) == ""
    assert exports.safe_cell(True) == "true"


def test_json_holds_everything_in_order_without_identity(app, client, auth, world, data):
    auth.login("coord_a")
    response = _download(client, "/desk/exports/export.json")
    assert response.mimetype == "application/json"
    body = json.loads(response.data)

    assert body["study"]["cases"] == ["A"]
    assert body["study"]["exported_by"]["username"] == "coord_a"
    with app.app_context():
        all_themes = list(db.session.scalars(select(Theme).order_by(Theme.key)))
        assert [t["key"] for t in body["codebook"]] == [t.key for t in all_themes]
        retired = {t["key"] for t in body["codebook"] if t["retired"]}
        assert retired == {"peer_support"}
        assert all(set(t["name"]) == {"nb", "en"} for t in body["codebook"])

        expected = _expected_notes(app, {"A"})
        (case,) = body["cases"]
        assert case["code"] == "A"
        assert {"theme": "poor_communication", "polarity": "inhibits"} in case["staff_themes"]
        codes = [p["code"] for p in case["participants"]]
        assert codes == sorted(codes)
        assert data["withdrawn_code"] not in codes
        notes = [n for p in case["participants"] for i in p["interviews"] for n in i["notes"]]
        assert sorted(n["id"] for n in notes) == sorted(expected)
        for n in notes:
            stored = expected[n["id"]]
            assert n["text"] == stored.text
            assert n["themes"] == sorted(t.key for t in stored.themes)
            assert n["polarity"] == stored.polarity
            assert n["possible_quote"] == stored.possible_quote

        (participant,) = [p for p in case["participants"] if p["interviews"][0]["notes"]]
        assert set(participant) >= {"code", "case", "status"}
        interview = participant["interviews"][0]
        assert interview["guide"] == {"key": "innofact-patient", "version": 1}
        assert interview["started_at"].endswith("Z")
        assert [e["kind"] for e in interview["events"]][:2] == ["capacity_check", "start"]
        (consent,) = participant["consents"]
        assert consent["method"] == "tablet"
        assert consent["answers"] == {
            "audio": False,
            "participate": True,
            "quotes": True,
            "recontact": True,
        }
        assert "paper_form_number" not in consent and "signature" not in json.dumps(consent)
        (guide,) = body["guides"]
        assert guide["content"]["sections"][0]["questions"][0]["key"] == "context.services"

    # the same store gives the same bytes, apart from the export's own time
    again = json.loads(_download(client, "/desk/exports/export.json").data)
    body["study"]["exported_at"] = again["study"]["exported_at"]
    assert again == body


def _validate(project_xml: bytes) -> etree._Element:
    schema = etree.XMLSchema(etree.parse(str(XSD)))
    doc = etree.fromstring(project_xml)
    schema.assertValid(doc)
    return doc


def test_qdpx_validates_and_every_selection_is_its_note(app, client, auth, world, data):
    auth.login("coord_a")
    # code names follow the user's language; English here, Bokmål below
    response = _download(client, "/desk/exports/project.qdpx?lang=en")
    with zipfile.ZipFile(io.BytesIO(response.data)) as zf:
        names = zf.namelist()
        assert "project.qde" in names
        doc = _validate(zf.read("project.qde"))
        files = {n: zf.read(n).decode("utf-8") for n in names if n.startswith("sources/")}
    assert doc.tag == "{urn:QDA-XML:project:1.0}Project"
    assert doc.get("origin") == exports.ORIGIN

    codes = {c.get("guid"): c.get("name") for c in doc.iterfind(".//q:Code", NS)}
    with app.app_context():
        expected = _expected_notes(app, {"A"})
        seen = set()
        sources = doc.findall("q:Sources/q:TextSource", NS)
        assert len(sources) == 1  # only interview pa has notes in case A
        for source in sources:
            path = source.get("plainTextPath")
            assert path == f"internal://{source.get('guid')}.txt"
            text = files["sources/" + path.removeprefix("internal://")]
            assert not text.startswith("\ufeff")
            for selection in source.findall("q:PlainTextSelection", NS):
                note_id = next(
                    i for i in expected if exports.guid("note", i) == selection.get("guid")
                )
                note = expected[note_id]
                start, end = int(selection.get("startPosition")), int(selection.get("endPosition"))
                assert text[start:end] == note.text
                # the offsets count code points: in UTF-8 bytes they would differ here
                if any(ord(ch) > 0xFFFF for ch in text[:end]):
                    assert len(text[:end].encode("utf-8")) != end
                coded = sorted(
                    codes[c.get("targetGUID")] for c in selection.iterfind("q:Coding/q:CodeRef", NS)
                )
                want = sorted(
                    [t.name_en for t in note.themes]
                    + ([note.polarity.capitalize()] if note.polarity else [])
                    + (["Possible quote"] if note.possible_quote else [])
                )
                assert coded == want
                assert text[: start - 2].rstrip("\n").splitlines()  # a heading comes first
                seen.add(note_id)
        assert seen == set(expected)
        # each question's text heads its notes, in the interview's language
        services = expected[data["ids"]["services"]]
        assert _question_text(services) + "\n\n" + SERVICES in text

    polarity = next(c for c in doc.iterfind("q:CodeBook/q:Codes/q:Code", NS))
    assert polarity.get("isCodable") == "false"
    assert [c.get("name") for c in polarity.findall("q:Code", NS)] == ["Inhibits", "Promotes"]
    user = doc.find("q:Users/q:User", NS)
    assert user.get("name") == "coord_a" and doc.get("creatingUserGUID") == user.get("guid")

    bokmal = _download(client, "/desk/exports/project.qdpx?lang=nb").data
    with zipfile.ZipFile(io.BytesIO(bokmal)) as zf:
        nb_doc = _validate(zf.read("project.qde"))
    nb_names = {c.get("name") for c in nb_doc.iterfind(".//q:Code", NS)}
    assert "Bolig" in nb_names and "Housing" not in nb_names
    # the same GUIDs whatever the language, so coded work can be merged across exports
    assert sorted(c.get("guid") for c in nb_doc.iterfind(".//q:Code", NS)) == sorted(codes)


def test_qdpx_is_deterministic_and_valid_when_empty(app, world):
    with app.app_context():
        coordinator = db.session.scalars(select(User).where(User.username == "coord_b")).one()
        case_b = db.session.scalars(select(Case).where(Case.code == "B")).one()
        now = datetime(2026, 11, 23, 10, 0, 0)
        first = exports.collect(db.session, [case_b.id], user=coordinator, now=now)
        second = exports.collect(db.session, [case_b.id], user=coordinator, now=now)
        blob = exports.to_qdpx(first)
        assert blob == exports.to_qdpx(second)
        assert exports.to_csv(first) == exports.to_csv(second)
        assert exports.to_json(first) == exports.to_json(second)
        with zipfile.ZipFile(io.BytesIO(blob)) as zf:
            assert zf.namelist() == ["project.qde"]  # no notes: no sources
            doc = _validate(zf.read("project.qde"))
        assert doc.find("q:Sources", NS) is None
        nothing = exports.collect(db.session, [], user=coordinator, now=now)
        _validate(zipfile.ZipFile(io.BytesIO(exports.to_qdpx(nothing))).read("project.qde"))
        assert exports.counts(nothing) == {"participants": 0, "interviews": 0, "notes": 0}


@pytest.mark.parametrize("path", ["notes.csv", "export.json", "project.qdpx"])
def test_withdrawn_and_identity_never_exported(app, client, auth, world, data, path):
    auth.login("admin")
    blob = _download(client, f"/desk/exports/{path}").data
    content = _unzip_all(blob) if path.endswith("qdpx") else blob
    assert SERVICES.encode() in content  # the check reads the real text
    assert TEAM_B.encode() in content  # the admin exports every case
    assert b"Test Person" not in content
    assert WITHDRAWN.encode() not in content
    assert data["withdrawn_code"].encode() not in content
    assert DELETED.encode() not in content
    assert world.interviews["pa2"].encode() not in content


def test_each_export_is_audited_without_content(app, client, auth, world, data):
    auth.login("coord_a")
    for path in ("notes.csv", "export.json", "project.qdpx"):
        _download(client, f"/desk/exports/{path}?case=A")
    with app.app_context():
        rows = list(
            db.session.scalars(
                select(AuditEvent).where(AuditEvent.action == "export").order_by(AuditEvent.id)
            )
        )
        assert [r.detail["format"] for r in rows] == ["csv", "json", "qdpx"]
        for row in rows:
            assert row.user_id == world.users["coord_a"]
            assert row.detail["cases"] == ["A"]
            assert row.detail["counts"] == {"participants": 1, "interviews": 1, "notes": 4}
            assert "Får" not in json.dumps(row.detail, ensure_ascii=False)


def test_access_to_exports(app, client, auth, world, data):
    paths = ["/desk/exports/", "/desk/exports/notes.csv", "/desk/exports/project.qdpx"]
    for path in paths:
        response = client.get(path)
        assert response.status_code == 302 and "/login" in response.headers["Location"]
    auth.login("peer_a")
    for path in paths:
        assert client.get(path).status_code == 403
    auth.logout()

    auth.login("coord_a")
    for path in paths:
        assert client.get(path + "?case=B").status_code == 404
        missing = client.get(path + "?case=ZZ&lang=en")
        assert missing.status_code == 404
        assert "no FACT team with that code" in missing.text
    with app.app_context():
        assert not db.session.scalars(select(AuditEvent).where(AuditEvent.action == "export")).all()
    auth.logout()

    # a coordinator of another team gets only that team
    auth.login("coord_b")
    body = json.loads(_download(client, "/desk/exports/export.json").data)
    assert [c["code"] for c in body["cases"]] == ["B"]
    assert SERVICES.encode() not in _download(client, "/desk/exports/notes.csv").data
    assert client.get("/desk/exports/notes.csv?case=A").status_code == 404


def test_exports_page_offers_formats_with_a_labelled_case_filter(client, auth, world):
    auth.login("coord_a")
    page = client.get("/desk/exports/?lang=en")
    assert page.status_code == 200
    assert page.headers["Cache-Control"] == "no-store"
    assert '<label for="export-case">' in page.text and 'id="export-case" name="case"' in page.text
    assert 'value="A"' in page.text and 'value="B"' not in page.text
    for endpoint in ("notes.csv", "export.json", "project.qdpx"):
        assert f'formaction="/desk/exports/{endpoint}"' in page.text
    assert page.text.count('class="button primary"') == 3
    assert client.get("/desk/exports/?case=A").status_code == 200
    assert client.get("/desk/exports/?case=B").status_code == 404
