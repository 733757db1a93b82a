"""Kept pages (interview/web/kept_pages.py): a page loaded again while nothing changed is sent as it
was, and anything that changes what it shows, or who may see it, is seen on the next load."""

import gzip
import re
import zlib
from datetime import timedelta

import pytest
from sqlalchemy import delete, select

from interview.store.extensions import db
from interview.store.models import Note, Participant, Theme, participant_interviewers
from interview.web import kept_pages
from interview.web.kept_pages import KeptPages, Page, gzip_answer, make_page
from tests.helpers import (
    consented_interview,
    new_note_on_page,
    page_load,
    statements_of,
)

SECTION = "/interviews/{}/section/0"


def _kept(app) -> KeptPages:
    return app.extensions["kept_pages"]


def _without_load(html: str) -> str:
    return re.sub(r'name="load" value="[0-9a-f-]+"', 'name="load" value=""', html)


@pytest.fixture
def under_way(app, client, world):
    """peer_a logged in, interview pa started with paper consent; its section page's address."""
    iid = consented_interview(client, world)
    return iid, SECTION.format(iid)


# --- the compressed answer -----------------------------------------------------------------


@pytest.mark.parametrize("tail_size", [0, 1, 36, 65535, 65536, 140000])
def test_a_kept_head_and_a_fresh_tail_make_one_valid_gzip_answer(tail_size):
    head = ("<p>Notat om samarbeid – æøå</p>" * 800).encode()
    tail = (b"0123456789abcdef" * (tail_size // 16 + 1))[:tail_size]
    packer = zlib.compressobj(6, zlib.DEFLATED, -15)
    head_gz = packer.compress(head) + packer.flush(zlib.Z_SYNC_FLUSH)
    body = gzip_answer(head_gz, zlib.crc32(head), len(head), tail)
    # gzip.decompress checks the trailer's checksum and length as well
    assert gzip.decompress(body) == head + tail
    assert len(body) < len(head) // 4 + tail_size + 100


def test_a_page_without_a_hole_is_kept_as_one_whole_answer():
    page = make_page("<html><body>" + "x" * 5000 + "</body></html>", (1, 1), None, 0.0)
    assert page.rest == []
    assert gzip.decompress(page.whole_gz) == page.head


def test_each_answer_of_a_page_with_a_hole_has_its_own_value():
    html = f'<form id="f"></form><input name="load" value="{kept_pages.HOLE}" form="f">'
    page = make_page("<main>" + "y" * 3000 + "</main>" + html, (1, 1), None, 0.0)
    first = gzip.decompress(kept_pages.answer(page, gzip=True).get_data()).decode()
    second = kept_pages.answer(page, gzip=False).get_data(as_text=True)
    loads = [re.search(r'value="([0-9a-f-]{36})"', t).group(1) for t in (first, second)]
    assert loads[0] != loads[1]
    assert kept_pages.HOLE not in first + second
    assert first.replace(loads[0], "") == second.replace(loads[1], "")


# --- the store of pages ----------------------------------------------------------------------


def _page(size: int, made_at: float) -> Page:
    return Page((1, 1), None, made_at, b"x" * size, b"", 0, [], b"")


def test_kept_pages_stay_within_their_byte_budget_dropping_the_oldest_first():
    pages = KeptPages(max_bytes=10_000)
    for n in range(5):
        pages.put(("slot", n), _page(3_000, made_at=float(n)), max_age=300)
    assert pages.size <= 10_000
    assert pages.get(("slot", 0)) is None and pages.get(("slot", 1)) is None
    assert pages.get(("slot", 4)) is not None
    pages.put(("slot", "huge"), _page(20_000, made_at=5.0), max_age=300)
    assert pages.get(("slot", "huge")) is None  # larger than the budget: never kept


def test_a_page_older_than_the_limit_is_dropped_when_another_is_kept():
    pages = KeptPages(max_bytes=10**6)
    pages.put(("a", 1, "u:1"), _page(100, made_at=0.0), max_age=300)
    pages.put(("b", 1, "u:1"), _page(100, made_at=200.0), max_age=300)
    pages.put(("c", 1, "u:2"), _page(100, made_at=301.0), max_age=300)
    assert pages.get(("a", 1, "u:1")) is None
    assert len(pages) == 2
    pages.forget("u:1")
    assert len(pages) == 1 and pages.get(("c", 1, "u:2")) is not None


# --- pages in use ----------------------------------------------------------------------------


def test_the_section_page_is_kept_and_each_load_has_its_own_load_id(app, client, under_way):
    _iid, url = under_way
    pages = _kept(app)
    answers = [client.get(url) for _ in range(4)]
    assert [a.status_code for a in answers] == [200] * 4
    assert pages.hits >= 2
    loads = {page_load(a.text) for a in answers}
    assert len(loads) == 4
    assert len({_without_load(a.text) for a in answers[1:]}) == 1


def test_a_browser_taking_gzip_gets_the_same_page(app, client, under_way):
    _iid, url = under_way
    client.get(url)  # shows the message the consent left, once
    plain = client.get(url).text
    for _ in range(2):
        packed = client.get(url, headers={"Accept-Encoding": "gzip"})
        assert packed.headers["Content-Encoding"] == "gzip"
        assert "Accept-Encoding" in packed.headers["Vary"]
        text = gzip.decompress(packed.get_data()).decode()
        assert _without_load(text) == _without_load(plain)


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
    # taken off the participant behind the store's back (no update log, no audit entry): the
    # kept page's version still matches, and the page must still be refused
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


def test_a_message_is_shown_once_and_never_kept(app, client, under_way):
    _iid, url = under_way
    for _ in range(3):
        client.get(url)
    client.post(url, data={"go": "pause"})
    paused = client.get(url).text
    assert '<p class="flash flash-info">Intervjuet er satt på pause.</p>' in paused
    again = client.get(url).text
    assert 'class="flash' not in again
    assert 'class="flash' not in client.get(url).text  # nor on the page kept after it


def test_another_session_and_another_language_get_their_own_pages(app, client, under_way):
    _iid, url = under_way
    for _ in range(3):
        client.get(url)
    other = app.test_client()
    other.post("/login", data={"username": "peer_a", "password": "correct horse battery"})
    hits = _kept(app).hits
    other.get(url)
    other.get(url)
    assert _kept(app).hits == hits  # the other session's first page is its own, not kept yet
    english = client.get(url + "?lang=en")
    assert english.status_code == 200
    assert '<html lang="en">' in english.text


def test_the_day_changing_in_oslo_renders_afresh(app, client, under_way, monkeypatch):
    _iid, url = under_way
    for _ in range(3):
        client.get(url)
    misses = _kept(app).misses
    tomorrow = kept_pages.today_in_oslo() + timedelta(days=1)
    monkeypatch.setattr(kept_pages, "today_in_oslo", lambda: tomorrow)
    client.get(url)
    assert _kept(app).misses == misses + 1


def test_logging_out_drops_the_pages_kept_for_the_person(app, client, under_way):
    _iid, url = under_way
    for _ in range(3):
        client.get(url)
    client.get("/interviews/")
    client.get("/interviews/")
    assert len(_kept(app)) >= 2
    client.post("/logout")
    assert len(_kept(app)) == 0
    assert client.get(url).status_code in (302, 401)


def test_the_interview_list_is_kept_and_follows_the_store(app, client, under_way, world):
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


def test_with_keeping_off_every_load_renders(app, client, under_way):
    _iid, url = under_way
    app.config["KEPT_PAGES_SECONDS"] = 0
    for _ in range(3):
        assert client.get(url).status_code == 200
    assert _kept(app).hits == 0 and len(_kept(app)) == 0


def test_the_progress_page_is_kept_no_longer_than_its_figures(app, client, auth, world):
    app.config.update(FIGURES_FRESH_SECONDS=30, FIGURES_UNCHANGED_SECONDS=300)
    auth.login("coord_a")
    for _ in range(3):
        assert client.get("/desk/").status_code == 200
    assert _kept(app).hits >= 1
    hits = _kept(app).hits
    app.config["FIGURES_UNCHANGED_SECONDS"] = 0
    client.get("/desk/")
    assert _kept(app).hits == hits


def test_a_kept_page_costs_no_more_than_the_checks_and_the_version(app, client, under_way):
    _iid, url = under_way
    for _ in range(3):
        client.get(url)
    # the user; then who may see the interview and the store's version, in one statement
    assert statements_of(app, client, url) == 2
