"""The REFI-QDA project (.qdpx), read back by a third-party reader (tests/desk/refi_reader.py):
every selection is its note's exact words, coded by the peer who wrote it; each team is a
case that holds its interviews, with variables of its own apart from the interviews'."""

import io
import unicodedata
import uuid
import zipfile

import pytest
from sqlalchemy import select

from interview.desk import exports, refi
from interview.store.consents import consent_in_force
from interview.store.extensions import db
from interview.store.models import Case, Interview, Note, Participant, Theme, User, utcnow
from tests.desk.refi_reader import qualcoder_view, read_qdpx
from tests.desk.test_exports import WHEN, many  # noqa: F401 (a fixture)
from tests.helpers import CONSENT_ALL_YES, signature_data_url, start_interview

# æøå, emoji (one code point, four UTF-8 bytes, two UTF-16 units), a flag and a skin tone
# (several code points), a line break, and a word in NFD (a + combining ring): the
# selections must hold them exactly as written, never normalised
HOUSING = "Får hjelp med bolig – æøå ÆØÅ 🙂 og 🇳🇴 👍🏽"
NFD = unicodedata.normalize("NFD", "Bråte og Ærø: blåbær på tå")
LINES = "Linje én\nLinje to 🎉"
OTHER_PEER = "Samarbeid med NAV ✨ (skrevet av en annen medforsker)"
NO_AUTHOR = "Notat fra team B uten kjent forfatter"
DELETED = "Slettet notat"


def _theme(key: str) -> Theme:
    return db.session.scalars(select(Theme).where(Theme.key == key)).one()


def _begin(client, auth, peer: str, iid: str) -> None:
    auth.login(peer)
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


@pytest.fixture
def notes(app, client, auth, world):
    """Team A: peer_a's notes in pa's interview, peer_a2's in pa2's, through the peers' own
    forms; a deleted note; team B: a note written straight to the store, with no author."""
    with app.app_context():
        housing, communication = _theme("housing").id, _theme("communication").id
        attitudes = _theme("attitudes").id
    ids = {k: str(uuid.uuid4()) for k in ("housing", "nfd", "lines", "other", "deleted")}
    _begin(client, auth, "peer_a", world.interviews["pa"])
    page = client.post(
        f"/interviews/{world.interviews['pa']}/section/0",
        data={
            "new-context.services-id": ids["housing"],
            "new-context.services-text": HOUSING,
            "new-context.services-polarity": "promotes",
            "new-context.services-theme": [str(housing), str(communication)],
            "new-context.services-quote": "1",
            "new-context.duration-id": ids["nfd"],
            "new-context.duration-text": NFD,
            "new-context.duration-polarity": "inhibits",
            "new-context.contact-id": ids["deleted"],
            "new-context.contact-text": DELETED,
            "go": "stay",
        },
    )
    assert page.status_code == 302
    page = client.post(
        f"/interviews/{world.interviews['pa']}/section/0",
        data={"new-context.services-id": ids["lines"], "new-context.services-text": LINES},
    )
    assert page.status_code == 302
    auth.logout()
    _begin(client, auth, "peer_a2", world.interviews["pa2"])
    page = client.post(
        f"/interviews/{world.interviews['pa2']}/section/1",
        data={
            "new-promotes.cooperation-id": ids["other"],
            "new-promotes.cooperation-text": OTHER_PEER,
            "new-promotes.cooperation-theme": [str(attitudes)],
            "go": "stay",
        },
    )
    assert page.status_code == 302
    auth.logout()
    with app.app_context():
        db.session.get(Note, ids["deleted"]).deleted_at = utcnow()
        db.session.add(
            Note(
                interview_id=world.interviews["pb"], question_key="context.services", text=NO_AUTHOR
            )
        )
        db.session.commit()
        stored = db.session.get(Note, ids["nfd"])
        # the store keeps the words as typed: the NFD test is a real one
        assert stored.text == NFD != unicodedata.normalize("NFC", NFD)
        assert stored.author_id == world.users["peer_a"]
        assert db.session.get(Note, ids["other"]).author_id == world.users["peer_a2"]
    return ids


def _expected(case_codes: set[str]) -> dict[str, Note]:
    """The notes an export of these teams holds, read straight from the store."""
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
    return {n.id: n for n in rows if n.text.strip()}


def _download(client, query: str) -> bytes:
    response = client.get(f"/desk/exports/project.qdpx?{query}")
    assert response.status_code == 200
    return response.data


def _check_every_note(reading, expected: dict[str, Note], lang: str = "en") -> None:
    """Each note is one selection: its exact words, its author's, coded with its tags."""
    names = {g: n for g, n in reading.codes.items()}
    for note in expected.values():
        selection = reading.selections[refi.guid("note", note.id)]
        assert selection.words == note.text  # code point for code point: no normalising
        author = refi.user_label(note.author_id)
        assert selection.user == author
        assert selection.coders == [author] * len(selection.codes)
        theme_names = [t.name_nb if lang == "nb" else t.name_en for t in note.themes]
        coded = sorted(names[c] for c in selection.codes)
        want = [*theme_names, *([note.polarity.capitalize()] if note.polarity else [])]
        # a possible quote only where the participant's consent in force covers quotes
        state = consent_in_force(note.interview.participant.consents)
        if note.possible_quote and state is not None and state.allows("quotes"):
            want.append("Possible quote")
        assert coded == sorted(want)
    note_guids = {refi.guid("note", i) for i in expected}
    text_selections = {g for g, s in reading.selections.items() if s.words is not None}
    # besides the notes, only each text's whole-text selection for its team (below)
    assert text_selections - note_guids == {
        refi.guid("case-text", source) for source in reading.texts
    }


def test_each_selection_is_its_notes_exact_words_coded_by_its_author(
    app, client, auth, world, notes, tmp_path
):
    auth.login("coord_a")
    blob = _download(client, "case=A&lang=en")
    reading = read_qdpx(blob, tmp_path)
    with app.app_context():
        expected = _expected({"A"})
        assert set(expected) == {notes[k] for k in ("housing", "nfd", "lines", "other")}
        _check_every_note(reading, expected)
        usernames = set(db.session.scalars(select(User.username)))
    # the offsets count code points: the emoji before the NFD note would move UTF-8 or UTF-16
    nfd = reading.selections[refi.guid("note", notes["nfd"])]
    assert nfd.span[0] != len(reading.texts[nfd.source][: nfd.span[0]].encode("utf-16-le")) // 2

    # the exporter first (QualCoder's coder on import), then each peer who wrote a note here,
    # named by a pseudonymous label: no username leaves in the project
    assert list(reading.users.values()) == [
        refi.user_label(world.users["coord_a"]),
        *sorted(
            (refi.user_label(world.users[p]) for p in ("peer_a", "peer_a2")),
            # in the order of their pseudonymous ids, which the label begins with
        ),
    ]
    assert not set(reading.users.values()) & usernames
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        project = zf.read("project.qde").decode("utf-8")
    assert not any(f'"{name}"' in project for name in usernames)

    # QualCoder owns each coding by its selection's creatingUser: the peers, not the exporter
    imported = qualcoder_view(reading)
    owners = {owner for *_rest, owner in imported.code_texts}
    assert owners == {refi.user_label(world.users[p]) for p in ("peer_a", "peer_a2")}
    with app.app_context():
        codings = sum(
            len(n.themes) + bool(n.polarity) + bool(n.possible_quote) for n in expected.values()
        )
    assert len(imported.code_texts) == codings


def test_each_team_is_a_case_holding_its_interviews_for_the_schema_and_qualcoder(
    app, client, auth, world, notes, tmp_path
):
    auth.login("admin")
    reading = read_qdpx(_download(client, "lang=en"), tmp_path)
    with app.app_context():
        cases = {c.code: c for c in db.session.scalars(select(Case))}
        expected = _expected(set(cases))
        by_case = {code: set() for code in cases}
        for note in expected.values():
            interview = note.interview
            code = db.session.get(Case, interview.participant.case_id).code
            by_case[code].add(refi.guid("interview", interview.id))
        _check_every_note(reading, expected)
        names = {code: f"{code} – {case.name_en}" for code, case in cases.items()}
    assert by_case["A"] and by_case["B"]
    # a note with no known author is "user-unknown"'s, never the exporter's
    (no_author,) = [n for n in expected.values() if n.author_id is None]
    assert reading.selections[refi.guid("note", no_author.id)].user == "user-unknown"

    imported = qualcoder_view(reading)
    for code, sources in by_case.items():
        case_guid = refi.guid("case", code)
        assert reading.case_names[case_guid] == names[code]
        # the standard's link: the case lists its sources
        assert reading.case_sources[case_guid] == sources
        # QualCoder's: the code of the case's GUID codes the whole of each of its texts
        whole = {(s, 0, len(reading.texts[s])) for s in sources}
        assert imported.case_texts[names[code]] == whole
        if sources:
            assert reading.case_code_refs[case_guid] == {case_guid}
            assert reading.codes[case_guid] == names[code]
        else:  # a team with no texts has no code to be
            assert case_guid not in reading.codes
    # the case codes are the exporter's work, not a peer's, and code no note
    for source in reading.texts:
        whole = reading.selections[refi.guid("case-text", source)]
        assert whole.user == whole.coders[0] == refi.user_label(world.users["admin"])
    assert not {c for *_r, c in imported.code_texts} & set(names.values())


@pytest.mark.parametrize("lang", ["en", "nb"])
def test_case_and_source_variables_are_apart_and_keep_their_values(
    app, client, auth, world, notes, tmp_path, lang
):
    auth.login("coord_a")
    reading = read_qdpx(_download(client, f"case=A&lang={lang}"), tmp_path)
    imported = qualcoder_view(reading)
    variables = {name: kind for name, kind in reading.variables.values()}
    assert len(variables) == len(reading.variables)  # no two variables share a name
    (case_variable,) = imported.case_variables
    assert variables[case_variable] == "Text"
    # no variable is both a case's and a source's: QualCoder would re-type it
    case_guids = {g for values in reading.case_values.values() for g in values}
    source_guids = {g for values in reading.source_values.values() for g in values}
    assert case_guids and source_guids and not case_guids & source_guids
    assert reading.case_values[refi.guid("case", "A")] == {
        refi.guid("variable", "case", "team"): "A"
    }
    words = {g: name for g, (name, _kind) in reading.variables.items()}
    date = words[refi.guid("variable", "date")]
    assert variables[date] == "Date"
    with app.app_context():
        for participant in ("pa", "pa2"):
            interview = db.session.get(Interview, world.interviews[participant])
            source = refi.guid("interview", interview.id)
            values = imported.file_values[source]  # what QualCoder shows for the source
            assert values == {
                words[refi.guid("variable", "team")]: "A",
                words[refi.guid("variable", "participant")]: interview.participant.code,
                words[refi.guid("variable", "language")]: interview.language,
                words[refi.guid("variable", "guide")]: "innofact-patient v1",
                date: interview.started_at.date().isoformat(),
            }
    assert imported.file_variables == set(words.values()) - {case_variable}


def test_streamed_project_is_the_in_memory_one_and_reads_back(app, many, tmp_path):  # noqa: F811
    with app.app_context():
        admin = db.session.scalars(select(User).where(User.username == "admin")).one()
        everything = [*many["cases"].values()]
        data = exports.collect(db.session, everything, user=admin, now=WHEN)
        for lang in ("en", "nb"):
            whole = refi.to_qdpx(data, lang)
            for batch_size in (1, 3, exports.BATCH_SIZE):
                top = exports.head(db.session, everything, user=admin, now=WHEN)
                people = exports.participants(
                    db.session, everything, notes_only=True, batch_size=batch_size
                )
                assert b"".join(refi.qdpx_chunks(top, people, lang)) == whole
                db.session.expunge_all()
        reading = read_qdpx(refi.to_qdpx(data, "en"), tmp_path)
        expected = _expected({"A", "B", "C"})
        assert expected
        _check_every_note(reading, expected)
        # the awkward words (markup, CR and CRLF, tabs) come back exactly
        assert any("\r" in n.text for n in expected.values())
    assert refi.to_qdpx(data, "en") == refi.to_qdpx(data, "en")


def test_texts_head_notes_with_their_question_and_codes_follow_the_language(
    app, client, auth, world, notes, tmp_path
):
    """What the export's first REFI test checked (moved here from test_exports.py)."""
    auth.login("coord_a")
    blob = _download(client, "case=A&lang=en")
    reading = read_qdpx(blob, tmp_path / "en")
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        assert zf.namelist()[-1] == "project.qde"
        project = zf.read("project.qde")
    assert b'origin="' + exports.ORIGIN.encode() + b'"' in project
    with app.app_context():
        note = db.session.get(Note, notes["housing"])
        guide = note.interview.guide_version.content
        question = next(
            q["text"][note.interview.language]
            for section in guide["sections"]
            for q in section["questions"]
            if q["key"] == note.question_key
        )
    selection = reading.selections[refi.guid("note", notes["housing"])]
    # each question's text heads its notes, in the interview's language
    assert reading.texts[selection.source][: selection.span[0]].endswith(question + "\n\n")
    polarity = refi.guid("code", "polarity")
    assert reading.codes[polarity] == "Polarity"
    assert [reading.codes[refi.guid("code", "polarity", p)] for p in ("inhibits", "promotes")] == [
        "Inhibits",
        "Promotes",
    ]
    # a category codes nothing: only its children are codable
    assert polarity not in {c for s in reading.selections.values() for c in s.codes}

    bokmal = read_qdpx(_download(client, "case=A&lang=nb"), tmp_path / "nb")
    assert "Bolig" in bokmal.codes.values() and "Housing" not in bokmal.codes.values()
    # the same GUIDs whatever the language, so coded work can be merged across exports
    assert set(bokmal.codes) == set(reading.codes)
    assert set(bokmal.selections) == set(reading.selections)
