"""The exports as their readers meet them: the .xlsx opened, the CSV's guard, the JSON Schema,
the notes' pseudonymous authors, and the peers' debriefs only on request (audited)."""

import csv
import io
import json
import tracemalloc
import zipfile
from pathlib import Path

import jsonschema
import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from interview.desk import exports, exports_xlsx
from interview.store.consent_form import CONSENT_ITEMS
from interview.store.extensions import db
from interview.store.models import (
    EVENT_KINDS,
    INTERVIEW_STATUSES,
    PLACE_KINDS,
    POLARITIES,
    AuditEvent,
    Debrief,
    Note,
    Theme,
    User,
)
from interview.web.forms import wellbeing_choices
from tests.desk.test_exports import (
    COOPERATION,
    DURATION,
    SERVICES,
    WHEN,
    _download,
    build_data,
    build_many,
)


@pytest.fixture
def data(app, client, auth, world):
    """The notes of test_exports.py's `data`: through the forms, deleted, withdrawn."""
    return build_data(app, client, auth, world)


@pytest.fixture
def many(app, world):
    """The varied records of test_exports.py's `many`, debriefs and events among them."""
    return build_many(app, world)


SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "static" / "export.schema.json").read_text("utf-8")
)
MINUS = "-5 points for waiting"
LIST = "- a list item\n- another item"


def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def _add_plain_notes(app, world) -> dict[str, str]:
    """Two notes that start with "-" and are plain text, in the world's interview pa."""
    with app.app_context():
        ids = {}
        for key, text in (("minus", MINUS), ("list", LIST)):
            note = Note(interview_id=world.interviews["pa"], question_key="x.y", text=text)
            db.session.add(note)
            db.session.flush()
            ids[key] = note.id
        db.session.commit()
        return ids


# -- JSON and its schema ---------------------------------------------------------------------


def test_schema_is_a_valid_2020_12_schema_with_the_files_id():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert SCHEMA["$id"] == exports.SCHEMA_ID
    assert SCHEMA["properties"]["study"]["$ref"] == "#/$defs/study"
    assert SCHEMA["$defs"]["study"]["properties"]["format_version"]["const"] == (
        exports.FORMAT_VERSION
    )


def _documented(definition: dict) -> dict:
    """Return an enumeration's values with their descriptions (null for "not set" aside)."""
    assert definition["description"]
    values = {}
    for option in definition["oneOf"]:
        assert option["description"], option
        if "const" in option:
            values[option["const"]] = option["description"]
    return values


def test_schema_documents_every_enumeration_the_store_knows():
    defs = SCHEMA["$defs"]
    assert tuple(_documented(defs["polarity"])) == POLARITIES
    assert tuple(_documented(defs["event_kind"])) == EVENT_KINDS
    assert tuple(_documented(defs["interview_status"])) == INTERVIEW_STATUSES
    assert tuple(_documented(defs["place_kind"])) == PLACE_KINDS
    assert [str(v) for v in _documented(defs["wellbeing"])] == [
        v for v, _label in wellbeing_choices()
    ]
    answers = defs["consent_answers"]
    assert tuple(answers["properties"]) == CONSENT_ITEMS
    assert all(p["description"] for p in answers["properties"].values())
    assert answers["propertyNames"]["enum"] == list(CONSENT_ITEMS)


def test_downloaded_json_names_and_meets_its_schema(app, client, auth, world, data):
    auth.login("coord_a")
    blob = _download(client, "/desk/exports/export.json").data
    body = json.loads(blob)
    assert body["$schema"] == SCHEMA["$id"]
    _validator().validate(body)
    with app.app_context():
        peer = db.session.scalars(select(User).where(User.username == "peer_a")).one()
        pseudonym = exports.author_pseudonym(peer.id)
    notes = [
        n
        for c in body["cases"]
        for p in c["participants"]
        for i in p["interviews"]
        for n in i["notes"]
    ]
    assert {n["text"] for n in notes} >= {SERVICES, DURATION, COOPERATION}
    # every note the peer wrote carries the peer's pseudonymous id, never their name
    assert {n["author"] for n in notes} == {pseudonym}
    assert b"peer_a" not in blob


def test_every_shape_the_store_holds_meets_the_schema_and_it_bites(app, many):
    validator = _validator()
    with app.app_context():
        for debriefs in (False, True):
            body = json.loads(exports.to_json(exports.collect(db.session, None, debriefs=debriefs)))
            errors = list(validator.iter_errors(body))
            assert errors == [], [e.message for e in errors[:3]]
        interviews = [i for c in body["cases"] for p in c["participants"] for i in p["interviews"]]
        assert any(i["debriefs"] for i in interviews) and any(i["events"] for i in interviews)
    # an unknown polarity, event kind or wellbeing is refused: the enumerations are closed
    note = next(n for i in interviews for n in i["notes"])
    note["polarity"] = "maybe"
    assert not validator.is_valid(body)
    note["polarity"] = None
    interviews[0]["events"].append({"kind": "teleport", "recorded_at": None, "data": None})
    assert not validator.is_valid(body)


def test_debriefs_leave_only_when_asked_for_and_are_audited(app, client, auth, world, many):
    with app.app_context():
        reflections = [d.reflection for d in db.session.scalars(select(Debrief))]
        assert reflections
    auth.login("admin")
    plain = _download(client, "/desk/exports/export.json").data
    assert b'"debriefs":' not in plain and b'"reflection":' not in plain
    assert b'"wellbeing":' not in plain
    asked = _download(client, "/desk/exports/export.json?debriefs=1").data
    body = json.loads(asked)
    assert body["study"]["debriefs_included"] is True
    # the withdrawn participants' debriefs stay out even then
    with app.app_context():
        expected = exports.store_counts(db.session, None, debriefs=True)["debriefs"]
    held = [
        d
        for c in body["cases"]
        for p in c["participants"]
        for i in p["interviews"]
        for d in i["debriefs"]
    ]
    assert len(held) == expected > 0
    assert all(set(d["author"]) <= set("0123456789abcdef-") for d in held)
    # the box does nothing to the notes' formats
    assert b"debrief" not in _download(client, "/desk/exports/notes.csv?debriefs=1").data
    with app.app_context():
        rows = list(
            db.session.scalars(
                select(AuditEvent).where(AuditEvent.action == "export").order_by(AuditEvent.id)
            )
        )
    assert [(r.detail["format"], r.detail.get("debriefs")) for r in rows] == [
        ("json", False),
        ("json", True),
        ("csv", None),
    ]
    assert rows[1].detail["counts"]["debriefs"] == expected
    assert "debriefs" not in rows[0].detail["counts"]
    logged = json.dumps([r.detail for r in rows], ensure_ascii=False)
    assert not any(r in logged for r in reflections if r)


def test_exports_page_offers_the_spreadsheet_and_the_debriefs_box(client, auth, world):
    auth.login("coord_a")
    page = client.get("/desk/exports/?lang=en").text
    assert 'formaction="/desk/exports/notes.xlsx"' in page
    assert '<input type="checkbox" id="export-debriefs" name="debriefs" value="1"' in page
    assert '<label for="export-debriefs">' in page
    assert 'href="/static/export.schema.json"' in page
    assert "“-5 points”" in page  # the CSV's guard, said as it works
    assert client.get("/static/export.schema.json").status_code == 200


# -- CSV -------------------------------------------------------------------------------------


def test_csv_guards_only_formulas_and_names_the_themes(app, client, auth, world, data):
    ids = _add_plain_notes(app, world)
    auth.login("coord_a")
    response = _download(client, "/desk/exports/notes.csv?language=nb")
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    rows = {r["note_id"]: r for r in csv.DictReader(io.StringIO(response.data.decode("utf-8-sig")))}
    assert rows[ids["minus"]]["note"] == MINUS
    assert rows[ids["list"]]["note"] == LIST
    assert rows[data["ids"]["duration"]]["note"] == "'" + DURATION
    assert rows[data["ids"]["coop"]]["note"] == "'" + COOPERATION
    with app.app_context():
        names = {t.key: t.name_nb for t in db.session.scalars(select(Theme))}
    services = rows[data["ids"]["services"]]
    assert services["themes"] == "communication;housing"
    assert services["theme_names"] == f"{names['communication']};{names['housing']}"
    english = _download(client, "/desk/exports/notes.csv?language=en").data.decode("utf-8-sig")
    with app.app_context():
        assert db.session.scalars(select(Theme).where(Theme.key == "housing")).one().name_en in (
            english
        )


# -- the spreadsheet -------------------------------------------------------------------------


def test_xlsx_opens_with_columns_text_never_formulas_and_an_explaining_sheet(
    app, client, auth, world, data
):
    ids = _add_plain_notes(app, world)
    auth.login("coord_a")
    response = _download(client, "/desk/exports/notes.xlsx?case=A&language=en")
    assert response.headers["Content-Type"] == exports_xlsx.MIMETYPE
    assert response.headers["Content-Disposition"].endswith('.xlsx"')
    blob = response.data
    book = load_workbook(io.BytesIO(blob))
    assert book.sheetnames == ["Notes", "About the columns"]
    notes = book["Notes"]
    header = [c.value for c in notes[1]]
    assert header[:3] == ["FACT team", "Participant code", "Interview"]
    assert len(header) == len(exports.CSV_COLUMNS)
    column = {key: n for n, key in enumerate(exports.CSV_COLUMNS)}
    rows = {r[column["note_id"]].value: r for r in notes.iter_rows(min_row=2)}
    assert len(rows) == 4 + 2
    # a note that starts with = or @ is text, exactly as written, never a formula
    for key, text in (("duration", DURATION), ("coop", COOPERATION)):
        cell = rows[data["ids"][key]][column["note"]]
        assert (cell.value, cell.data_type) == (text, "s")
    assert rows[ids["minus"]][column["note"]].value == MINUS
    assert rows[ids["list"]][column["note"]].value == LIST
    services = rows[data["ids"]["services"]]
    assert services[column["note"]].value == SERVICES
    assert services[column["themes"]].value == "communication;housing"
    with app.app_context():
        names = {t.key: t.name_en for t in db.session.scalars(select(Theme))}
    assert services[column["theme_names"]].value == (
        f"{names['communication']}; {names['housing']}"
    )
    assert services[column["possible_quote"]].value is True
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        sheets = [n for n in zf.namelist() if n.startswith("xl/worksheets/")]
        assert not any(b"<f>" in zf.read(n) or b"<f " in zf.read(n) for n in sheets)

    about = book["About the columns"]
    explained = {r[1].value: (r[0].value, r[2].value) for r in about.iter_rows(min_row=4)}
    assert list(explained) == list(exports.CSV_COLUMNS)
    assert explained["note"][0] == "Note" and "32,767" in explained["note"][1]
    assert all(heading and meaning for heading, meaning in explained.values())
    assert "never a formula" in about["A1"].value


def test_xlsx_in_norwegian(app, client, auth, world, data):
    auth.login("coord_a")
    blob = _download(client, "/desk/exports/notes.xlsx?language=nb").data
    book = load_workbook(io.BytesIO(blob))
    assert book.sheetnames == ["Notater", "Om kolonnene"]
    assert book["Notater"]["A1"].value == "FACT-team"
    with app.app_context():
        housing = db.session.scalars(select(Theme).where(Theme.key == "housing")).one().name_nb
    values = [c.value for row in book["Notater"].iter_rows(min_row=2) for c in row]
    assert any(isinstance(v, str) and housing in v for v in values)


def _people(notes: int):
    """Plain participants as exports.participants yields them, ten notes an interview."""
    for p in range(notes // 10):
        yield {
            "case": "A",
            "code": f"P{p:06d}",
            "interviews": [
                {
                    "id": f"iv-{p}",
                    "guide": {"key": "g", "version": 1},
                    "language": "nb",
                    "notes": [
                        {
                            "id": f"n-{p}-{n}",
                            "question_key": "q",
                            "question_text": "Spørsmål",
                            "text": "Et notat med æøå 🙂 " * 8,
                            "author": None,
                            "polarity": "promotes",
                            "themes": ["housing"],
                            "possible_quote": False,
                            "created_at": "2026-11-23T10:00:00Z",
                            "updated_at": None,
                        }
                        for n in range(10)
                    ],
                }
            ],
        }


def test_xlsx_is_written_in_constant_memory(app):
    top = {
        "study": {"exported_at": "2026-11-23T10:00:00Z", "name": "INNOFACT"},
        "codebook": [{"key": "housing", "name": {"nb": "Bolig", "en": "Housing"}}],
    }

    def peak(notes: int) -> tuple[int, int]:
        tracemalloc.start()
        with app.test_request_context():
            size = sum(len(p) for p in exports_xlsx.xlsx_chunks(top, _people(notes), "en"))
        most = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return most, size

    small, small_size = peak(500)
    large, large_size = peak(5_000)
    assert large_size > 5 * small_size  # ten times the notes: the file grows
    # the memory does not: rows go to a temporary file as they are written
    assert large < small * 1.5 + 2**20, (small, large)


@pytest.mark.parametrize("text", ['=HYPERLINK("http://x")', "@SUM(1)", "+1+2", "-1+2"])
def test_xlsx_cell_is_text_whatever_it_starts_with(app, text):
    book = load_workbook(io.BytesIO(b"".join(_one_note_xlsx(app, text))))
    cell = book.worksheets[0].cell(row=2, column=exports.CSV_COLUMNS.index("note") + 1)
    assert (cell.value, cell.data_type) == (text, "s")


def _one_note_xlsx(app, text: str):
    people = list(_people(10))[:1]
    people[0]["interviews"][0]["notes"] = people[0]["interviews"][0]["notes"][:1]
    people[0]["interviews"][0]["notes"][0]["text"] = text
    top = {"study": {"exported_at": WHEN.isoformat() + "Z", "name": "INNOFACT"}, "codebook": []}
    with app.test_request_context():
        return list(exports_xlsx.xlsx_chunks(top, people, "en"))


@pytest.mark.parametrize(
    "path", ["/desk/exports/notes.csv", "/desk/exports/export.json", "/desk/audit/audit-log.csv"]
)
def test_text_downloads_name_their_charset_once(client, auth, world, path):
    auth.login("coord_a")
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["Content-Type"].endswith("; charset=utf-8")
    assert response.headers["Content-Type"].count("charset") == 1
