"""The coordinator's exports: CSV, JSON and REFI-QDA, parsed back and checked against the store."""

import csv
import io
import json
import uuid
import zipfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from sqlalchemy import event, func, select
from sqlalchemy.orm import selectinload

from interview.desk import exports, refi
from interview.desk import views as desk_views
from interview.participants.registry import register
from interview.store.consents import consent_in_force
from interview.store.extensions import db
from interview.store.models import (
    POLARITIES,
    AuditEvent,
    Case,
    CaseStaffTheme,
    Consent,
    ConsentFormVersion,
    Debrief,
    GuideVersion,
    Interview,
    InterviewEvent,
    Note,
    Participant,
    Theme,
    User,
    utcnow,
)
from tests.helpers import CONSENT_ALL_YES, signature_data_url, start_interview

# a copy of ../shared/standards/refi-qda-project-1.0.xsd, kept in the repo so CI always validates
XSD = Path(__file__).resolve().parents[2] / "standards" / "refi-qda-project-1.0.xsd"
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
    return build_data(app, client, auth, world)


def build_data(app, client, auth, world):
    """Write the `data` fixture's notes (also used by test_exports_formats.py)."""
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
            assert row["author"] == exports.author_pseudonym(note.author_id)
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
    for risky in ("=1+1", "+1+2", "-1+2", "-A1", "-cmd|' /C calc'!A0", "@SUM(A1)", "\tx", "\rx"):
        assert exports.safe_cell(risky) == "'" + risky
    # what a spreadsheet shows as text stays as written: no apostrophe to see
    for text in ("-5 points", "- a list item\n- another", "-2", "+47 000", "-"):
        assert exports.safe_cell(text) == text
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
        # the peers' debriefs stay out unless asked for (test_exports_formats.py)
        assert all("debriefs" not in i for p in case["participants"] for i in p["interviews"])
        assert body["study"]["debriefs_included"] is False

    # the same store gives the same bytes, apart from the export's own time
    again = json.loads(_download(client, "/desk/exports/export.json").data)
    body["study"]["exported_at"] = again["study"]["exported_at"]
    assert again == body


def _validate(project_xml: bytes) -> etree._Element:
    schema = etree.XMLSchema(etree.parse(str(XSD)))
    doc = etree.fromstring(project_xml)
    schema.assertValid(doc)
    return doc


def test_qdpx_is_deterministic_and_valid_when_empty(app, world):
    with app.app_context():
        coordinator = db.session.scalars(select(User).where(User.username == "coord_b")).one()
        case_b = db.session.scalars(select(Case).where(Case.code == "B")).one()
        now = datetime(2026, 11, 23, 10, 0, 0)
        first = exports.collect(db.session, [case_b.id], user=coordinator, now=now)
        second = exports.collect(db.session, [case_b.id], user=coordinator, now=now)
        blob = refi.to_qdpx(first)
        assert blob == refi.to_qdpx(second)
        assert exports.to_csv(first) == exports.to_csv(second)
        assert exports.to_json(first) == exports.to_json(second)
        with zipfile.ZipFile(io.BytesIO(blob)) as zf:
            assert zf.namelist() == ["project.qde"]  # no notes: no sources
            doc = _validate(zf.read("project.qde"))
        assert doc.find("q:Sources", NS) is None
        nothing = exports.collect(db.session, [], user=coordinator, now=now)
        _validate(zipfile.ZipFile(io.BytesIO(refi.to_qdpx(nothing))).read("project.qde"))
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
            assert row.detail.get("debriefs", False) is False
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
    for endpoint in ("notes.xlsx", "notes.csv", "export.json", "project.qdpx"):
        assert f'formaction="/desk/exports/{endpoint}"' in page.text
    assert page.text.count('class="button primary"') == 4
    assert client.get("/desk/exports/?case=A").status_code == 200
    assert client.get("/desk/exports/?case=B").status_code == 404


# -- streamed exports: the same bytes as the in-memory exports, with bounded memory -----------
#
# The reference below is the exports as they were written before they were streamed: read
# everything into one dict, then build each file whole in memory. It is kept verbatim (apart
# from names), so the streamed writers are checked against it byte for byte.


def _reference_interview(interview: Interview, quotes: bool) -> dict[str, Any]:
    order, texts = exports._question_order(interview.guide_version)
    live = [n for n in interview.notes if n.deleted_at is None]
    live.sort(
        key=lambda n: (order.get(n.question_key, len(order)), n.question_key, n.created_at, n.id)
    )
    return {
        "id": interview.id,
        "status": interview.status,
        "language": interview.language,
        "place_kind": interview.place_kind,
        "guide": {
            "key": interview.guide_version.key,
            "version": interview.guide_version.version,
        },
        "planned_at": exports.iso(interview.planned_at),
        "first_planned_at": exports.iso(interview.first_planned_at),
        "started_at": exports.iso(interview.started_at),
        "ended_at": exports.iso(interview.ended_at),
        "expected_end_at": exports.iso(interview.expected_end_at),
        "notes": [exports._note(n, texts, interview.language, quotes) for n in live],
        "events": [
            {"kind": e.kind, "recorded_at": exports.iso(e.recorded_at), "data": e.details}
            for e in sorted(interview.events, key=lambda e: (e.recorded_at, e.id))
        ],
        # since format 2 the peers' debriefs are left out unless asked for
    }


def _reference_collect(session, case_ids, user=None, now=None) -> dict[str, Any]:
    case_stmt = (
        select(Case)
        .options(selectinload(Case.staff_themes).selectinload(CaseStaffTheme.theme))
        .order_by(Case.code)
    )
    if case_ids is not None:
        case_stmt = case_stmt.where(Case.id.in_(list(case_ids) or [-1]))
    cases = list(session.scalars(case_stmt))
    interview_loads = selectinload(Participant.interviews)
    participants = list(
        session.scalars(
            select(Participant)
            .where(
                Participant.case_id.in_([c.id for c in cases] or [-1]),
                Participant.status != "withdrawn",
            )
            .options(
                interview_loads.selectinload(Interview.notes).selectinload(Note.themes),
                interview_loads.selectinload(Interview.events),
                interview_loads.selectinload(Interview.debriefs),
                interview_loads.selectinload(Interview.guide_version),
                selectinload(Participant.consents).selectinload(Consent.form_version),
            )
            .order_by(Participant.code)
        )
    )
    themes = list(session.scalars(select(Theme).order_by(Theme.key)))
    guides: dict[int, GuideVersion] = {}
    by_case: dict[int, list[dict]] = {c.id: [] for c in cases}
    for p in participants:
        interviews = sorted(p.interviews, key=lambda i: (i.planned_at, i.id))
        # since partial withdrawal: the consent in force, and quotes only under it
        state = consent_in_force(p.consents)
        quotes = state is not None and state.allows("quotes")
        for i in interviews:
            guides[i.guide_version.id] = i.guide_version
        by_case[p.case_id].append(
            {
                "code": p.code,
                "case": next(c.code for c in cases if c.id == p.case_id),
                "status": p.status,
                "preferred_language": p.preferred_language,
                "created_at": exports.iso(p.created_at),
                "consents": [
                    exports._consent(c)
                    for c in sorted(p.consents, key=lambda c: (c.obtained_at, c.id))
                ],
                "consent_in_force": exports._in_force(state),
                "interviews": [_reference_interview(i, quotes) for i in interviews],
            }
        )
    return {
        "$schema": exports.SCHEMA_ID,
        "study": {
            "name": exports.STUDY,
            "origin": exports.ORIGIN,
            "format_version": exports.FORMAT_VERSION,
            "exported_at": exports.iso(now or utcnow()),
            "exported_by": None if user is None else {"id": user.id, "username": user.username},
            "cases": [c.code for c in cases],
            "debriefs_included": False,
        },
        "codebook": [
            {
                "key": t.key,
                "name": {"nb": t.name_nb, "en": t.name_en},
                "retired": bool(t.retired),
                "created_at": exports.iso(t.created_at),
            }
            for t in themes
        ],
        "guides": [
            {
                "key": g.key,
                "version": g.version,
                "published": g.published,
                "checksum": g.checksum,
                "content": g.content,
            }
            for g in sorted(guides.values(), key=lambda g: (g.key, g.version))
        ],
        "cases": [
            {
                "code": c.code,
                "name": {"nb": c.name_nb, "en": c.name_en},
                "staff_themes": sorted(
                    ({"theme": s.theme.key, "polarity": s.polarity} for s in c.staff_themes),
                    key=lambda s: (s["polarity"], s["theme"]),
                ),
                "participants": by_case[c.id],
            }
            for c in cases
        ],
    }


def _reference_csv(data: dict, lang: str = "en") -> bytes:
    names = {t["key"]: t["name"][lang] for t in data["codebook"]}
    buf = io.StringIO()
    writer = csv.writer(buf, quoting=csv.QUOTE_MINIMAL)
    writer.writerow(exports.CSV_COLUMNS)
    guides = {(g["key"], g["version"]): g for g in data["guides"]}
    for case, participant, interview in exports.iter_interviews(data):
        guide = guides[(interview["guide"]["key"], interview["guide"]["version"])]
        for note in interview["notes"]:
            row = (
                case["code"],
                participant["code"],
                interview["id"],
                exports.guide_label(guide),
                interview["language"],
                note["question_key"],
                note["question_text"],
                note["id"],
                note["text"],
                note["author"],
                note["polarity"],
                ";".join(note["themes"]),
                ";".join(names[k] for k in note["themes"]),
                note["possible_quote"],
                note["created_at"],
                note["updated_at"],
            )
            writer.writerow([exports.safe_cell(v) for v in row])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def _reference_json(data: dict) -> bytes:
    return json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True).encode("utf-8") + b"\n"


WHEN = datetime(2026, 11, 23, 10, 0, 0)
# words that trip up CSV, JSON and XML writers: quotes, markup, formula starts, line breaks
AWKWARD = [
    SERVICES,
    DURATION,
    SECOND,
    COOPERATION,
    "<b>&amp; \"sitert\" 'enkelt' ]]> & <",
    "-1 + 1",
    "\tinnrykk",
    "Linje\r\nCRLF\rCR",
    "   ",
    "",
    "Vanlig notat om bolig og jobb",
    "+47 er ikke et telefonnummer her",
]


@pytest.fixture
def many(app, world):
    """Teams A and B with varied records written straight to the store; team C stays empty.

    Several participants per team (one withdrawn in each, one with no interviews), one to three
    interviews each (two planned for the same minute, one on a newer guide version), notes
    with every kind of tag, blank and deleted notes, notes under a question the guide does not
    know, conflicts, events with comments, debriefs and consents.
    """
    return build_many(app, world)


def build_many(app, world):
    """Write the `many` fixture's records (also used by test_exports_formats.py)."""
    with app.app_context():
        cases = {c.code: c for c in db.session.scalars(select(Case))}
        users = {u.username: u for u in db.session.scalars(select(User))}
        guide = db.session.scalars(select(GuideVersion)).one()
        form = db.session.scalars(select(ConsentFormVersion)).first()
        themes = list(db.session.scalars(select(Theme).order_by(Theme.key)))
        keys = [q["key"] for s in guide.content["sections"] for q in s["questions"]]
        newer, unused = (
            GuideVersion(
                key=guide.key,
                version=v,
                published=guide.published,
                checksum=guide.checksum,
                content=guide.content,
            )
            for v in (2, 3)
        )
        db.session.add_all([newer, unused])
        base = datetime(2026, 3, 2, 9, 0)
        n = 0
        withdrawn = []
        for case_code, peer, coordinator, count in (
            ("A", "peer_a", "coord_a", 5),
            ("B", "peer_b", "coord_b", 4),
        ):
            for k in range(count):
                p = register(
                    cases[case_code], ("en", "nb")[k % 2], [users[peer]], users[coordinator]
                )
                db.session.add(
                    Consent(
                        participant=p,
                        form_version=form,
                        language=p.preferred_language,
                        answers={"participate": True, "quotes": k % 2 == 0, "audio": False},
                        method="tablet",
                        obtained_at=base + timedelta(days=k),
                    )
                )
                if k == 4:
                    continue  # registered, never interviewed
                if k == 3:
                    p.status = "withdrawn"
                    withdrawn.append(p.code)
                for j in range(1 + k % 3):
                    planned = base + timedelta(days=k, hours=0 if j < 2 else j)
                    iv = Interview(
                        participant=p,
                        guide_version=newer if j == 2 else guide,
                        language=p.preferred_language,
                        place_kind="home",
                        planned_at=planned,
                        first_planned_at=planned,
                        started_at=planned + timedelta(minutes=5) if j != 1 else None,
                        status="completed" if j != 1 else "planned",
                    )
                    db.session.add(iv)
                    db.session.flush()
                    db.session.add(
                        InterviewEvent(
                            interview_id=iv.id,
                            kind="stop",
                            data={"reason": "other", "comment": f"Kommentar <{n}> & «sitat»"},
                            recorded_at=planned + timedelta(minutes=30),
                        )
                    )
                    db.session.add(
                        Debrief(
                            interview_id=iv.id,
                            wellbeing=1 + n % 5,
                            reflection=AWKWARD[n % len(AWKWARD)],
                            wants_debrief_talk=n % 2 == 0,
                            author_id=users[peer].id,
                            created_at=planned + timedelta(hours=1),
                        )
                    )
                    blank_only = case_code == "B" and k == 1 and j == 0
                    for i in range(7):
                        n += 1
                        note = Note(
                            interview_id=iv.id,
                            question_key="unknown.question" if i == 6 else keys[(n + i) % 4],
                            text="  " if blank_only else AWKWARD[n % len(AWKWARD)],
                            polarity=(None, *POLARITIES)[n % 3],
                            possible_quote=n % 4 == 0,
                            themes=[themes[n % len(themes)], themes[(n + 5) % len(themes)]][
                                : n % 3
                            ],
                            # the same minute for several notes: the id breaks the tie
                            created_at=planned + timedelta(minutes=n % 3),
                            updated_at=planned + timedelta(minutes=10),
                        )
                        if n % 5 == 0:
                            note.conflict = {"text": f"Den andre versjonen {n}"}
                        if n % 9 == 0:
                            note.deleted_at = planned + timedelta(hours=2)
                        db.session.add(note)
        db.session.scalars(select(Theme).where(Theme.key == "peer_support")).one().retired = True
        db.session.commit()
        return {"withdrawn": withdrawn, "cases": {c: cases[c].id for c in cases}}


def _streamed(session, fmt: str, case_ids, user, *, batch_size: int, lang: str = "en"):
    top = exports.head(session, case_ids, user=user, now=WHEN)
    people = exports.participants(
        session, case_ids, notes_only=fmt != "json", batch_size=batch_size
    )
    if fmt == "csv":
        chunks = exports.csv_chunks(people, exports.theme_names(top, lang))
    elif fmt == "json":
        chunks = exports.json_chunks(top, people)
    else:
        chunks = refi.qdpx_chunks(top, people, lang)
    return b"".join(chunks)


def _assert_same_project(blob: bytes, data: dict, lang: str = "en") -> list[str]:
    """The streamed .qdpx is the in-memory one, byte for byte, written front to back.

    What it holds is read back with a third-party REFI-QDA reader in tests/desk/test_refi.py.
    """
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        assert zf.testzip() is None
        names = zf.namelist()
        # the texts first, in export order, then the project
        assert names == [*(n for n in names if n.startswith("sources/")), "project.qde"]
        for info in zf.infolist():
            assert info.compress_type == zipfile.ZIP_DEFLATED
            assert info.date_time == (2026, 11, 23, 10, 0, 0)
        _validate(zf.read("project.qde"))
    assert blob == refi.to_qdpx(data, lang)
    return names


@pytest.mark.parametrize("batch_size", [1, 2, 3, exports.BATCH_SIZE])
def test_streamed_exports_are_byte_for_byte_the_in_memory_ones(app, many, batch_size):
    with app.app_context():
        admin = db.session.scalars(select(User).where(User.username == "admin")).one()
        for case_ids in (None, list(many["cases"].values()), [many["cases"]["B"]], []):
            reference = _reference_collect(db.session, case_ids, user=admin, now=WHEN)
            assert exports.collect(db.session, case_ids, user=admin, now=WHEN) == reference
            assert exports.store_counts(db.session, case_ids) == exports.counts(reference)
            db.session.expunge_all()

            streamed = _streamed(db.session, "csv", case_ids, admin, batch_size=batch_size)
            assert streamed == _reference_csv(reference)
            streamed = _streamed(db.session, "json", case_ids, admin, batch_size=batch_size)
            assert streamed == _reference_json(reference)
            for lang in ("en", "nb"):
                blob = _streamed(
                    db.session, "qdpx", case_ids, admin, batch_size=batch_size, lang=lang
                )
                _assert_same_project(blob, reference, lang)
            # the one-piece writers give the same bytes as well
            assert exports.to_csv(reference) == _reference_csv(reference)
            assert exports.to_json(reference) == _reference_json(reference)
            _assert_same_project(refi.to_qdpx(reference), reference)


def test_the_fixture_covers_what_the_writers_must_handle(app, many):
    with app.app_context():
        data = exports.collect(db.session, None, now=WHEN)
    rows = list(exports.iter_interviews(data))
    notes = [n for _c, _p, i in rows for n in i["notes"]]
    assert [c["code"] for c in data["cases"]] == ["A", "B", "C"]
    assert data["cases"][2]["participants"] == []  # a team with nobody: an empty list
    assert [g["version"] for g in data["guides"]] == [1, 2]  # version 3 is used by nobody
    assert any(not p["interviews"] for c in data["cases"] for p in c["participants"])
    assert any(not n["text"].strip() for n in notes)
    assert any(n["conflict_text"] for n in notes) and any(n["themes"] for n in notes)
    assert any(not any(n["text"].strip() for n in i["notes"]) and i["notes"] for *_, i in rows)
    planned = [i["planned_at"] for *_, i in rows]
    assert len(set(planned)) < len(planned)
    codes = {p["code"] for c in data["cases"] for p in c["participants"]}
    assert len(codes) > 3 * 3  # several batches of the small batch sizes, across teams
    assert len(many["withdrawn"]) == 2 and not codes & set(many["withdrawn"])


def test_json_writer_matches_json_dumps_for_streamed_parts():
    def later():
        return [{"b": 1, "a": [{}]}, []]

    value = {
        "z": iter([{"x": iter([]), "y": 'æ\n"ø"'}, {"x": iter([1, {"k": []}]), "w": None}]),
        "a": later,
        "m": iter([]),
        "c": {"nested": [1, 2]},
    }
    plain = {
        "z": [{"x": [], "y": 'æ\n"ø"'}, {"x": [1, {"k": []}], "w": None}],
        "a": later(),
        "m": [],
        "c": {"nested": [1, 2]},
    }
    written = "".join(exports._json(value, 0))
    assert written == json.dumps(plain, ensure_ascii=False, indent=2, sort_keys=True)


@pytest.mark.parametrize("path", ["notes.csv", "export.json", "project.qdpx"])
def test_downloads_are_streamed_and_match_the_reference(
    app, client, auth, world, many, monkeypatch, path
):
    monkeypatch.setattr(desk_views, "utcnow", lambda: WHEN)
    # small pieces: many chunks, each boundary crossed
    monkeypatch.setattr(exports, "CHUNK_SIZE", 512)
    sent = []

    @app.after_request
    def keep(response):
        # the view's own response (the test client wraps every body in an iterator)
        sent.append((response.is_streamed, response.headers.get("Content-Length")))
        return response

    auth.login("admin")
    response = client.get(f"/desk/exports/{path}?lang=en")
    assert response.status_code == 200
    # one charset, never two (Flask adds one to a bare text mimetype)
    assert response.headers["Content-Type"].count("charset") <= 1
    assert sent[-1] == (True, None)
    assert "Content-Length" not in response.headers
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="innofact-all-20261123-100000.{path.rsplit(".", 1)[1]}"'
    )
    pieces = list(response.response)
    assert len(pieces) > 2
    blob = b"".join(pieces)
    with app.app_context():
        admin = db.session.scalars(select(User).where(User.username == "admin")).one()
        reference = _reference_collect(db.session, None, user=admin, now=WHEN)
        (audit,) = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "export"))
        assert audit.detail["counts"] == exports.counts(reference)
    if path == "notes.csv":
        assert blob == _reference_csv(reference)
    elif path == "export.json":
        assert blob == _reference_json(reference)
    else:
        _assert_same_project(blob, reference)
    for code in many["withdrawn"]:
        content = _unzip_all(blob) if path.endswith("qdpx") else blob
        assert code.encode() not in content


def test_audit_is_written_before_the_first_byte(app, client, auth, world, many):
    auth.login("coord_a")
    response = client.get("/desk/exports/export.json", buffered=False)
    assert response.status_code == 200
    with app.app_context():
        (audit,) = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "export"))
        assert audit.detail["cases"] == ["A"]
        assert audit.detail["counts"] == exports.store_counts(db.session, [many["cases"]["A"]])
    assert json.loads(response.get_data())["study"]["cases"] == ["A"]


BATCH_ROWS = (Participant, Interview, Note, Theme, InterviewEvent, Debrief, Consent)


@pytest.mark.parametrize("notes_only", [False, True])
def test_the_reader_holds_one_batch_of_rows_at_a_time(app, many, notes_only):
    batch_size = 2
    with app.app_context():
        session = db.session()
        per_participant = session.scalars(
            select(func.count(Note.id))
            .join(Interview, Interview.id == Note.interview_id)
            .group_by(Interview.participant_id)
        )
        most_notes = max(per_participant)
        session.expunge_all()
        held = {"participants": 0, "notes": 0, "loaded": 0}

        def loaded(_session, instance):
            held["loaded"] += isinstance(instance, Note)
            rows = list(session.identity_map.values())
            held["participants"] = max(
                held["participants"], sum(isinstance(r, Participant) for r in rows)
            )
            held["notes"] = max(held["notes"], sum(isinstance(r, Note) for r in rows))

        event.listen(session, "loaded_as_persistent", loaded)
        try:
            codes = []
            for participant in exports.participants(
                session, None, notes_only=notes_only, batch_size=batch_size
            ):
                codes.append(participant["code"])
                # while a batch is handed on, the session holds none of its rows
                assert not any(isinstance(r, BATCH_ROWS) for r in session.identity_map.values())
        finally:
            event.remove(session, "loaded_as_persistent", loaded)
        assert len(codes) > 3 * batch_size
        assert held["participants"] == batch_size
        # never more notes than two participants have, of all those read
        assert 0 < held["notes"] <= batch_size * most_notes < held["loaded"]


def test_store_counts_leave_out_withdrawn_and_deleted(app, world, data):
    with app.app_context():
        a = db.session.scalars(select(Case).where(Case.code == "A")).one()
        assert exports.store_counts(db.session, [a.id]) == {
            "participants": 1,
            "interviews": 1,
            "notes": 4,
        }
        assert exports.store_counts(db.session, []) == {
            "participants": 0,
            "interviews": 0,
            "notes": 0,
        }
        everything = exports.collect(db.session, None)
        assert exports.store_counts(db.session, None) == exports.counts(everything)
