"""The identifier guard (DESIGN §6): what it flags, what it leaves alone, and where it warns."""

import json
import logging
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from sqlalchemy import select

from interview.store.extensions import db
from interview.store.identifiers import (
    KINDS,
    find_identifiers,
    given_names,
    summarise,
    valid_national_id,
    warning_kinds,
)
from interview.store.models import AuditEvent, Note, Participant
from interview.sync.views import OPENAPI
from tests.helpers import (
    consented_interview,
    give_paper_consent,
    new_note_on_page,
    note_change,
    start_interview,
)

ROOT = Path(__file__).resolve().parents[2]

W1 = (3, 7, 6, 1, 8, 9, 4, 5, 2)
W2 = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)


def _control(digits, weights):
    rest = 11 - sum(d * w for d, w in zip(digits, weights, strict=False)) % 11
    return 0 if rest == 11 else rest


def make_national_id(date6: str, first: int = 100) -> str:
    """A number with valid mod-11 control digits for a (fictional) date: the first that works."""
    for individual in range(first, 1000):
        digits = [int(c) for c in f"{date6}{individual:03d}"]
        k1 = _control(digits, W1)
        if k1 == 10:
            continue
        k2 = _control([*digits, k1], W2)
        if k2 == 10:
            continue
        return f"{date6}{individual:03d}{k1}{k2}"
    raise AssertionError("no valid number for this date")


def wrong_control(number: str) -> str:
    """The same number with its last control digit changed."""
    return number[:10] + str((int(number[10]) + 1) % 10)


FNR = make_national_id("010170")  # 1 January 1970, fictional
D_NUMBER = make_national_id("410185")  # D-number: day 01 + 40
H_NUMBER = make_national_id("154299")  # H-number: month 02 + 40
YOUNG = make_national_id("290204", 500)  # 29 February 2004


def kinds(text: str) -> set[str]:
    return summarise(find_identifiers(text))


# --- national identity numbers -----------------------------------------------------------------

NATIONAL_ID_TRUE = [
    f"Fødselsnummeret er {FNR}.",
    f"fnr {FNR[:6]} {FNR[6:]} står i journalen",
    f"D-nummer {D_NUMBER}",
    f"H-nummer {H_NUMBER} i pasientlista",
    f"Født 2004: {YOUNG}",
]
NATIONAL_ID_FALSE = [
    f"Feil siffer: {wrong_control(FNR)}",
    f"Feil siffer med mellomrom: {wrong_control(FNR)[:6]} {wrong_control(FNR)[6:]}",
    # valid control digits, impossible date (day 32)
    f"Ingen dato: {make_national_id('320170')}",
    # valid control digits, impossible date (month 13)
    f"Ingen måned: {make_national_id('011370')}",
    "Kontonummer 1234 56 78901",
    "Tolv sifre 123456789012",
    f"En del av et lengre tall: 9{FNR}",
]


@pytest.mark.parametrize("text", NATIONAL_ID_TRUE)
def test_national_id_with_valid_control_digits_is_flagged(text):
    assert kinds(text) == {"national_id"}


@pytest.mark.parametrize("text", NATIONAL_ID_FALSE)
def test_eleven_digits_without_valid_control_digits_or_date_are_not(text):
    assert "national_id" not in kinds(text)


def test_control_digit_algorithm():
    assert valid_national_id(FNR) and valid_national_id(D_NUMBER) and valid_national_id(H_NUMBER)
    assert not valid_national_id(wrong_control(FNR))
    assert not valid_national_id(FNR[:10])
    assert not valid_national_id("0101701234a")


# --- phone numbers -------------------------------------------------------------------------------

PHONE_TRUE = [
    "Ring 91234567 i morgen",
    "mobil 912 34 567",
    "tlf. 22 33 44 55 på kontoret",
    "Nummeret er 9123 4567.",
    "Hun har +47 912 34 567",
    "0047 41234567",
    "+4791234567",
    "Broren i London: +44 20 7946 0958",
    "I Sverige: +46 70 123 45 67",
    "Nummer (911) er ikke med, men 48 12 34 56 er",
]
PHONE_FALSE = [
    "Vi startet i 2026 og fortsetter i 2027.",
    "Møtet er kl. 14.30 på torsdag.",
    "Det kostet 12 000 kroner.",
    "Lønna er kr 45 000 000 i året",
    "Budsjettet var 35000000 kr",
    "Datoen var 12.03.2024.",
    "Datoen var 20240312 i skjemaet, og 31122024 i det andre.",
    "Sesongen 2024 2025 var tung.",
    "Spørsmål 12 og 13 i guiden, avsnitt 3.2.",
    "12345678 er bare et eksempel",  # no Norwegian number starts with 1
    "01234567",
    "Kontonummer 1234 56 78901",
    "Rekka 12 34 56 78 90 er ikke et nummer",
    "Hun scoret 3 av 5, 75 %",
    "Org.nr. 923 456 789",
]


@pytest.mark.parametrize("text", PHONE_TRUE)
def test_phone_numbers_are_flagged(text):
    assert kinds(text) == {"phone"}


@pytest.mark.parametrize("text", PHONE_FALSE)
def test_numbers_that_are_not_phones_are_not(text):
    assert kinds(text) == set()


# --- e-mail --------------------------------------------------------------------------------------

EMAIL_TRUE = [
    "Skriv til kari.nordmann@example.no",
    "e-post: K.N+fact@helse-sor.example.com.",
    "ola_90@eksempel.no",
]
EMAIL_FALSE = [
    "Hun sendte en e-post til teamet.",
    "@teamet sa ja",
    "Adressen sluttet med kari@",
    "a@b er ikke en adresse",
    "Vi bruker Teams og e-post.",
]


@pytest.mark.parametrize("text", EMAIL_TRUE)
def test_email_addresses_are_flagged(text):
    assert kinds(text) == {"email"}


@pytest.mark.parametrize("text", EMAIL_FALSE)
def test_words_near_email_are_not(text):
    assert kinds(text) == set()


# --- street addresses ----------------------------------------------------------------------------

ADDRESS_TRUE = [
    "Hun bor i Storgata 12.",
    "Hun bor i storgata 12",
    "Leiligheten i Kirkeveien 3B er liten",
    "Møllergata 5 B",
    "Tollbugaten 14, 2. etasje",
    "Hjemme i Lia-vegen 7",
    "Gangstien 2",
    "Bislettplassen 10",
    "Bygdøy allé 23",
    "Thereses gate 4",
    "ute ved Karl Johans gate 22",
    "Solbakken 7",
    "He lives at 12 Baker Street.",
    "221B Baker Street",
    "flat at 4 Mill Lane",
    "near 10 Downing Road",
    "5 Fifth Avenue",
]
ADDRESS_FALSE = [
    "Han gikk i veien for meg.",
    "Kirkeveien er lang.",
    "Vi tok en omvei 2 ganger.",
    "Hjemveien tok 3 timer.",
    "Det er en gate 3 km unna",
    "Arbeidsplassen 3 år",
    "Bakken 3 ganger",
    "Storgata",
    "veien 12",
    "There are 12 streets in Baker.",
    "Team 3 on the road",
]


@pytest.mark.parametrize("text", ADDRESS_TRUE)
def test_street_addresses_are_flagged(text):
    assert kinds(text) == {"address"}


@pytest.mark.parametrize("text", ADDRESS_FALSE)
def test_street_words_without_a_house_number_are_not(text):
    assert kinds(text) == set()


# --- personal names ------------------------------------------------------------------------------

NAME_TRUE = [
    "Vi snakket med Kari Nordmann om bolig.",
    "Per Olsen fra teamet ringte.",
    "Anne-Lise Hansen var med.",
    "Kontakten er Ola Nordmann-Berg",
    "Mohammed Ali kom også",
    "Hun heter Kari.",
    "broren het Piotr",
    "Han kalles Tor av alle",
    "She is called Grace.",
    "My name is Ahmed",
    "The nurse Mary Smith was kind",
]
NAME_FALSE = [
    "Kari sa at det hjalp.",
    "Per uke får hun to besøk.",
    "Det koster 100 kroner per dag.",
    "FACT-teamet kom hjem til henne.",
    "NAV og FACT-teamet samarbeider.",
    "Kari NAV",
    "Anne Mandag",
    "I August var det bedre.",
    "Helse Sør-Øst og Oslo Universitetssykehus",
    "Distriktspsykiatrisk Senter",
    "Kari.\nHun kom tilbake.",
    "Ola\nNordmann",
    "Det heter ikke noe.",
    "hun heter kari",
    "Eva. Tor. Liv.",
]


@pytest.mark.parametrize("text", NAME_TRUE)
def test_personal_names_are_flagged(text):
    assert kinds(text) == {"name"}


@pytest.mark.parametrize("text", NAME_FALSE)
def test_names_alone_and_capitalised_words_are_not(text):
    assert kinds(text) == set()


def test_name_list_is_plain_given_names():
    names = given_names()
    assert 300 <= len(names) <= 1000
    assert {"Kari", "Ola", "Per", "Mohammed", "Piotr", "Fatima", "James", "Mary"} <= names
    assert all(n[0].isupper() and " " not in n for n in names)


# --- findings, excerpts, speed -------------------------------------------------------------------


def test_findings_are_in_order_with_spans_and_kinds():
    text = f"Kari Nordmann, {FNR}, 912 34 567, kari@example.no, Storgata 12."
    found = find_identifiers(text)
    assert [f.kind for f in found] == ["name", "national_id", "phone", "email", "address"]
    assert [text[f.start : f.end] for f in found] == [
        "Kari Nordmann",
        FNR,
        "912 34 567",
        "kari@example.no",
        "Storgata 12",
    ]
    assert summarise(found) == set(KINDS)
    assert warning_kinds(text) == list(KINDS)
    assert warning_kinds("") == [] and warning_kinds(None) == []


@pytest.mark.parametrize("text", NATIONAL_ID_TRUE + PHONE_TRUE + EMAIL_TRUE + NAME_TRUE)
def test_excerpt_never_repeats_the_identifier(text):
    for finding in find_identifiers(text):
        found = text[finding.start : finding.end]
        assert found not in finding.excerpt
        assert "\u2022" in finding.excerpt


def test_excerpt_masks_every_identifier_around_it():
    text = f"Ring Kari Nordmann på 912 34 567 eller skriv til kari@example.no i dag {FNR}"
    for finding in find_identifiers(text):
        for word in ("Nordmann", "912 34 567", "34", "kari@", FNR[6:]):
            assert word not in finding.excerpt
    first = find_identifiers("Ring 912 34 567 i morgen")[0]
    assert first.excerpt == "Ring 91\u2022 \u2022\u2022 \u2022\u2022\u2022 i morgen"


def test_long_notes_are_checked_quickly():
    text = ("Hun fortalte om hverdagen med FACT-teamet og NAV, 12 000 kroner, kl. 14.30. " * 260)[
        :20_000
    ]
    started = time.perf_counter()
    assert find_identifiers(text) == []
    assert find_identifiers(text[:-40] + " 912 34 567")[-1].kind == "phone"
    assert time.perf_counter() - started < 1.0


# --- the tablet runs the same rules --------------------------------------------------------------

ALL_CASES = (
    NATIONAL_ID_TRUE
    + NATIONAL_ID_FALSE
    + PHONE_TRUE
    + PHONE_FALSE
    + EMAIL_TRUE
    + EMAIL_FALSE
    + ADDRESS_TRUE
    + ADDRESS_FALSE
    + NAME_TRUE
    + NAME_FALSE
    + [f"Kari Nordmann, {FNR}, 912 34 567, kari@example.no, Storgata 12."]
)


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_identifiers_js_finds_what_python_finds(tmp_path):
    module = tmp_path / "identifiers.mjs"
    module.write_text((ROOT / "static/js/identifiers.js").read_text(encoding="utf-8"))
    (tmp_path / "cases.json").write_text(
        json.dumps({"texts": ALL_CASES, "names": sorted(given_names())}), encoding="utf-8"
    )
    script = tmp_path / "run.mjs"
    script.write_text(
        'import { readFileSync } from "node:fs";\n'
        'import { findIdentifiers } from "./identifiers.mjs";\n'
        'const { texts, names } = JSON.parse(readFileSync(process.argv[2], "utf8"));\n'
        "const set = new Set(names);\n"
        "console.log(JSON.stringify(texts.map((t) => findIdentifiers(t, set))));\n"
    )
    out = subprocess.run(
        ["node", str(script), str(tmp_path / "cases.json")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    from_js = json.loads(out.stdout)
    for text, js in zip(ALL_CASES, from_js, strict=True):
        py = [
            {"kind": f.kind, "start": f.start, "end": f.end, "excerpt": f.excerpt}
            for f in find_identifiers(text)
        ]
        assert js == py, text


# --- where the guard warns -----------------------------------------------------------------------

DOC = json.loads(OPENAPI.read_text(encoding="utf-8"))
RESULT = Draft202012Validator(
    {"$ref": "urn:openapi#/components/schemas/SyncResult"},
    registry=Registry().with_resource(
        "urn:openapi", Resource.from_contents(DOC, default_specification=DRAFT202012)
    ),
)
PHONE = "912 34 567"
NOTE_WITH_PHONE = f"Hun ba meg ringe Kari Nordmann på {PHONE} etter møtet."


def _sync(client, changes):
    body = {"device_id": str(uuid.uuid4()), "cursor": None, "changes": changes}
    response = client.post("/api/v1/sync", json=body)
    assert response.status_code == 200
    results = response.get_json()["results"]
    for result in results:
        assert RESULT.is_valid(result), result
    return results


def test_sync_answer_names_the_kinds_and_keeps_the_note(client, auth, world, app):
    iid = consented_interview(client, world)
    nid = str(uuid.uuid4())
    create = note_change(iid, nid, NOTE_WITH_PHONE)
    first = _sync(client, [create])[0]
    assert first["status"] == "applied"
    assert first["warnings"] == ["phone", "name"]
    # a replay (the first answer lost) warns again; the words are never in the answer
    again = _sync(client, [create])[0]
    assert again["status"] == "duplicate" and again["warnings"] == ["phone", "name"]
    assert PHONE not in json.dumps([first, again]) and "Nordmann" not in json.dumps(first)
    with app.app_context():
        assert db.session.get(Note, nid).text == NOTE_WITH_PHONE  # warned, never refused


def test_sync_answer_without_findings_carries_no_warnings(client, auth, world):
    iid = consented_interview(client, world)
    nid = str(uuid.uuid4())
    created = _sync(client, [note_change(iid, nid, "Kari sa at teamet kom hver uke.")])[0]
    assert created["status"] == "applied" and "warnings" not in created
    # a tags-only edit carries no text: nothing to check
    tags = note_change(iid, nid, "x", base_rev=1)
    tags["data"] = {"possible_quote": True}
    assert "warnings" not in _sync(client, [tags])[0]
    # an edit that writes around the identifier answers without warnings
    fixed = _sync(client, [note_change(iid, nid, "Hun ga meg et nummer (ikke skrevet).", 2)])
    assert fixed[0]["status"] == "applied" and "warnings" not in fixed[0]


def test_sync_conflict_warns_and_rejected_change_does_not(client, auth, world):
    iid = consented_interview(client, world)
    nid = str(uuid.uuid4())
    _sync(client, [note_change(iid, nid, "Første versjon")])
    _sync(client, [note_change(iid, nid, "Andre versjon", base_rev=1)])
    conflict = _sync(client, [note_change(iid, nid, "Skriv til kari@example.no", base_rev=1)])
    assert conflict[0]["status"] == "conflict" and conflict[0]["warnings"] == ["email"]
    other = note_change(world.interviews["pb"], str(uuid.uuid4()), NOTE_WITH_PHONE)
    refused = _sync(client, [other])[0]
    assert refused["status"] == "rejected" and "warnings" not in refused


def _new_note_form(client, iid, text, go):
    page = client.get(f"/interviews/{iid}/section/0")
    new_id, fields = new_note_on_page(page.text, "context.services")
    response = client.post(
        f"/interviews/{iid}/section/0",
        data={**fields, "new-context.services-text": text, "go": go},
    )
    assert response.status_code == 302
    return new_id, response


def test_section_page_warns_beside_the_saved_note(client, auth, world, app, caplog):
    caplog.set_level(logging.DEBUG)
    iid = consented_interview(client, world)
    client.get("/?lang=en")
    nid, response = _new_note_form(client, iid, NOTE_WITH_PHONE, "stay")
    assert PHONE.replace(" ", "") not in response.headers["Location"].replace(" ", "")
    page = client.get(response.headers["Location"]).text
    assert "This note may contain a phone number." in page
    assert "This note may contain a person&#39;s name." in page
    assert "Write around it: the study must never hold who the participant is." in page
    assert "91\u2022 \u2022\u2022 \u2022\u2022\u2022" in page  # the masked excerpt
    assert 'data-identifiers="phone name"' in page
    # the note is saved, with every word
    with app.app_context():
        assert db.session.get(Note, nid).text == NOTE_WITH_PHONE
        audit = json.dumps(
            [[a.action, a.object_id, a.detail] for a in db.session.scalars(select(AuditEvent))]
        )
    assert "34 567" not in audit and "Nordmann" not in audit
    assert "34 567" not in caplog.text and "Nordmann" not in caplog.text


def test_leaving_the_section_flashes_a_warning_without_the_words(client, auth, world):
    iid = consented_interview(client, world)
    client.get("/?lang=en")
    _nid, response = _new_note_form(client, iid, NOTE_WITH_PHONE, "next")
    assert response.headers["Location"].endswith(f"/interviews/{iid}/section/1")
    with client.session_transaction() as session:
        flashes = json.dumps(session.get("_flashes", []))
    assert "may hold something that tells who the participant is" in flashes
    assert "section 1" in flashes
    assert "34 567" not in flashes and "Nordmann" not in flashes
    page = client.get(response.headers["Location"]).text
    assert "may hold something that tells who the participant is" in page


def test_section_page_without_findings_shows_no_warning(client, auth, world):
    iid = consented_interview(client, world)
    _nid, response = _new_note_form(client, iid, "Kari sa at teamet kom hver uke.", "next")
    with client.session_transaction() as session:
        assert not session.get("_flashes")
    page = client.get(f"/interviews/{iid}/section/0").text
    assert "identifier-warning" not in page
    assert 'id="identifier-guard"' in page  # the tablet's rules get their name list


def test_coordinator_sees_flagged_notes_per_team_without_the_words(client, auth, world, app):
    iid = consented_interview(client, world)
    _sync(
        client,
        [
            note_change(iid, str(uuid.uuid4()), NOTE_WITH_PHONE),
            note_change(iid, str(uuid.uuid4()), f"fnr {FNR}"),
            note_change(iid, str(uuid.uuid4()), "Ingenting å se her."),
        ],
    )
    deleted = str(uuid.uuid4())
    _sync(client, [note_change(iid, deleted, "kari@example.no")])
    gone = note_change(iid, deleted, "x", base_rev=1)
    gone["data"] = {"deleted": True}
    _sync(client, [gone])
    # another peer's flagged note in team A (peer_a2's participant)
    auth.logout()
    auth.login("peer_a2")
    iid2 = world.interviews["pa2"]
    start_interview(client, iid2)
    give_paper_consent(client, iid2)
    _sync(client, [note_change(iid2, str(uuid.uuid4()), "Bor i Storgata 12")])
    auth.logout()

    auth.login("coord_a")
    page = client.get("/desk/alerts/?lang=en")
    assert page.status_code == 200
    text = page.text
    assert "Written texts that may tell who a participant is" in text
    with app.app_context():
        code = db.session.get(Participant, world.participants["pa"]).code
        code2 = db.session.get(Participant, world.participants["pa2"]).code
    assert "<td>3</td>" in text  # two of pa's notes and one of pa2's; the deleted one not
    assert f"/interviews/{iid}" in text and f"{code}</span> (2)" in text
    assert f"{code2}</span> (1)" in text
    for words in (PHONE, "Nordmann", FNR, "Storgata", "kari@example.no"):
        assert words not in text
    auth.logout()

    # another team's coordinator sees none of team A's
    auth.login("coord_b")
    other = client.get("/desk/alerts/?lang=en").text
    assert "Written texts that may tell who a participant is" not in other
    assert iid not in other
    auth.logout()
    auth.login("peer_a")
    assert client.get("/desk/alerts/").status_code == 403


def test_identifier_flags_leave_out_withdrawn_participants(app, world):
    from interview.desk import alerts
    from interview.store.models import Case

    with app.app_context():
        case_a = db.session.scalar(select(Case).where(Case.code == "A"))
        db.session.add(
            Note(
                interview_id=world.interviews["pa"],
                question_key="context.services",
                text=f"Telefon {PHONE}",
                rev=1,
                field_revs={},
            )
        )
        db.session.commit()
        flags = alerts.identifier_flags(db.session, {case_a.id}, {case_a.id: "A"})
        assert [(f.case_code, f.notes) for f in flags] == [("A", 1)]
        db.session.get(Participant, world.participants["pa"]).status = "withdrawn"
        db.session.commit()
        assert alerts.identifier_flags(db.session, {case_a.id}, {case_a.id: "A"}) == []


def test_the_flag_is_kept_with_the_sealed_text_and_follows_every_edit(app, world):
    from interview.store.models import Note

    with app.app_context():
        note = Note(
            interview_id=world.interviews["pa"],
            question_key="context.services",
            text="Ring henne på 912 34 567",
        )
        db.session.add(note)
        db.session.commit()
        assert note.identifier_kinds == "phone"
        note.text = "Skriv til ola@example.org eller ring 912 34 567"
        db.session.commit()
        db.session.expire_all()
        assert db.session.get(Note, note.id).identifier_kinds == "phone email"
        db.session.get(Note, note.id).text = "Ingenting som peker på noen."
        db.session.commit()
        db.session.expire_all()
        assert db.session.get(Note, note.id).identifier_kinds is None
