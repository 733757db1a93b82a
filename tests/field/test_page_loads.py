"""Every load of a page shows the store as it is, and every load of a section page has its own
id: two loads never offer the same new note, and one page sent twice saves its notes once."""

import re

import pytest
from sqlalchemy import delete, select

from interview.store.extensions import db
from interview.store.models import Note, Participant, Theme, participant_interviewers
from tests.helpers import consented_interview, new_note_on_page, page_load

SECTION = "/interviews/{}/section/0"


def _without_load(html: str) -> str:
    """The page without its load id, nor its CSRF token (signed with the second it was made)."""
    html = re.sub(r'name="load" value="[0-9a-f-]+"', 'name="load" value=""', html)
    html = re.sub(r'(name="csrf-token" content=|name="csrf_token" value=)"[^"]*"', r'\1""', html)
    return html


@pytest.fixture
def under_way(app, client, world):
    """peer_a logged in, interview pa started with paper consent; its section page's address."""
    iid = consented_interview(client, world)
    return iid, SECTION.format(iid)


def test_each_load_of_the_section_page_has_its_own_load_id(app, client, under_way):
    _iid, url = under_way
    answers = [client.get(url) for _ in range(4)]
    assert [a.status_code for a in answers] == [200] * 4
    assert len({page_load(a.text) for a in answers}) == 4
    assert len({_without_load(a.text) for a in answers[1:]}) == 1


def test_a_saved_note_is_on_the_next_load(app, client, under_way):
    iid, url = under_way
    for _ in range(3):
        page = client.get(url).text
    _id, fields = new_note_on_page(page, "context.services")
    saved = client.post(
        url, data={**fields, "new-context.services-text": "Bussen går for sjelden.", "go": "stay"}
    )
    assert saved.status_code == 302
    assert "Bussen går for sjelden." in client.get(url).text

    # a change that reaches the store by another way (a tablet's sync writes the same way)
    with app.app_context():
        note = db.session.scalars(select(Note).where(Note.interview_id == iid)).one()
        note.text = "Bussen går for sjelden, sier hun."
        db.session.commit()
    assert "Bussen går for sjelden, sier hun." in client.get(url).text


def test_a_new_theme_in_the_codebook_is_offered_on_the_next_load(app, client, under_way):
    _iid, url = under_way
    for _ in range(3):
        client.get(url)
    with app.app_context():
        db.session.add(Theme(key="night_calls", name_nb="Nattevakt på telefon", name_en="Night"))
        db.session.flush()
        from interview.trust import audit

        audit.record("theme_added", "theme", 999)
        db.session.commit()
    assert "Nattevakt på telefon" in client.get(url).text


def test_who_may_see_the_interview_is_checked_on_every_load(app, client, under_way, world):
    _iid, url = under_way
    for _ in range(3):
        assert client.get(url).status_code == 200
    # taken off the participant behind the store's back (no update log, no audit entry)
    with app.app_context():
        db.session.execute(
            delete(participant_interviewers).where(
                participant_interviewers.c.participant_id == world.participants["pa"]
            )
        )
        db.session.commit()
    assert client.get(url).status_code == 404


def test_two_loads_never_share_a_new_note_and_a_double_tap_saves_once(app, client, under_way):
    iid, url = under_way
    first = client.get(url).text
    second = client.get(url).text
    first_id, first_fields = new_note_on_page(first, "context.services")
    second_id, second_fields = new_note_on_page(second, "context.services")
    assert first_id != second_id
    for fields, text in ((first_fields, "Fra første fane."), (second_fields, "Fra andre fane.")):
        for _ in range(2):  # each page sent twice
            answer = client.post(
                url, data={**fields, "new-context.services-text": text, "go": "stay"}
            )
            assert answer.status_code == 302
    with app.app_context():
        notes = {
            n.id: n.text for n in db.session.scalars(select(Note).where(Note.interview_id == iid))
        }
    assert notes == {first_id: "Fra første fane.", second_id: "Fra andre fane."}


def test_a_form_without_a_valid_load_id_is_refused_and_keeps_the_text(client, under_way):
    _iid, url = under_way
    answer = client.post(
        url,
        data={
            "load": "not-an-id",
            "new-context.services-id": "",
            "new-context.services-text": "Tekst som ikke må forsvinne",
            "go": "stay",
        },
    )
    assert answer.status_code == 400
    assert "Tekst som ikke må forsvinne" in answer.text
    assert "Last inn siden på nytt" in answer.text


def test_a_message_is_shown_once(app, client, under_way):
    _iid, url = under_way
    for _ in range(3):
        client.get(url)
    client.post(url, data={"go": "pause"})
    paused = client.get(url).text
    assert '<p class="flash flash-info">Intervjuet er satt på pause.</p>' in paused
    again = client.get(url).text
    assert 'class="flash' not in again
    assert 'class="flash' not in client.get(url).text


def test_the_interview_list_follows_the_store(app, client, under_way, world):
    for _ in range(3):
        first = client.get("/interviews/")
    assert first.status_code == 200
    with app.app_context():
        code = db.session.get(Participant, world.participants["pa"]).code
        assert code in first.text
        participant = db.session.get(Participant, world.participants["pa"])
        participant.status = "withdrawn"
        db.session.commit()
    assert code not in client.get("/interviews/").text
