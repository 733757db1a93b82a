"""The identifier guard on every free text a person types, not only notes: the comment of a
stop or a distress stage 2, and the debrief's reflection — through sync and through the forms,
in both languages; the kinds are kept (never the words) and counted for the coordinator."""

import json
import logging
import uuid

import pytest
from sqlalchemy import select

from interview.store.extensions import db
from interview.store.models import AuditEvent, Debrief, Interview, InterviewEvent, Participant
from tests.helpers import consented_interview, post_sync

PHONE = "912 34 567"
EMAIL = "kari@example.no"
# in Norwegian and in English: what a peer might write, with an identifier in it
TEXTS = {
    "nb": (f"Hun ba meg ringe søsteren på {PHONE} i kveld.", ["phone"]),
    "en": (f"She asked me to write to {EMAIL} tonight.", ["email"]),
}
NAME_TEXT = {
    "nb": ("Broren heter Piotr og kom innom.", ["name"]),
    "en": ("Her support worker is Kari Nordmann, who was there too.", ["name"]),
}
CLEAN = {"nb": "Sliten, men ville fortsette en annen dag.", "en": "Tired, wanted to go on later."}

WARNING = {
    "phone": {
        "en": "This text may contain a phone number.",
        "nb": "Denne teksten kan inneholde et telefonnummer.",
    },
    "email": {
        "en": "This text may contain an e-mail address.",
        "nb": "Denne teksten kan inneholde en e-postadresse.",
    },
    "name": {
        "en": "This text may contain a person&#39;s name.",
        "nb": "Denne teksten kan inneholde et personnavn.",
    },
}
NOT_STOPPED = {
    "en": "The interview is not stopped yet.",
    "nb": "Intervjuet er ikke stoppet ennå.",
}
FLAGGED_AFTER = {
    "en": "The comment you wrote may hold something that tells who the participant is.",
    "nb": "Kommentaren du skrev kan inneholde noe som forteller hvem deltakeren er.",
}
DEBRIEF_SAVED = {
    "en": "Your debrief is saved. Your reflection may hold something",
    "nb": "Debriefen din er lagret. Refleksjonen din kan inneholde noe",
}


def _event(iid: str, kind: str, details: dict, minutes: int = 0) -> dict:
    return {
        "change_id": str(uuid.uuid4()),
        "entity": "event",
        "id": str(uuid.uuid4()),
        "base_rev": None,
        "recorded_at": f"2026-11-23T10:{minutes:02d}:00Z",
        "data": {"interview_id": iid, "kind": kind, "details": details},
    }


def _debrief(iid: str, debrief_id: str, reflection: str, base_rev=None) -> dict:
    data = {"reflection": reflection}
    if base_rev is None:
        data.update(interview_id=iid, wellbeing=4)
    return {
        "change_id": str(uuid.uuid4()),
        "entity": "debrief",
        "id": debrief_id,
        "base_rev": base_rev,
        "recorded_at": "2026-11-23T11:00:00Z",
        "data": data,
    }


def _results(client, changes) -> list[dict]:
    response = post_sync(client, changes)
    assert response.status_code == 200
    return response.get_json()["results"]


# --- through sync ------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", ["nb", "en"])
def test_sync_warns_of_a_stop_comment_and_keeps_its_kinds(client, world, app, lang):
    iid = consented_interview(client, world)
    text, kinds = TEXTS[lang]
    stop = _event(iid, "stop", {"reason": "other", "comment": text})
    first = _results(client, [stop])[0]
    assert first["status"] == "applied" and first["warnings"] == kinds
    # sent again (the first answer lost): warned again; the words are never in the answer
    again = _results(client, [stop])[0]
    assert again["status"] == "duplicate" and again["warnings"] == kinds
    assert PHONE not in json.dumps([first, again]) and EMAIL not in json.dumps([first, again])
    with app.app_context():
        event = db.session.get(InterviewEvent, stop["id"])
        assert event.comment == text  # warned, never refused
        assert event.identifier_kinds == " ".join(kinds)
        assert db.session.get(Interview, iid).status == "stopped"


@pytest.mark.parametrize("lang", ["nb", "en"])
def test_sync_warns_of_a_distress_comment(client, world, app, lang):
    iid = consented_interview(client, world)
    text, kinds = NAME_TEXT[lang]
    distress = _event(iid, "distress_2", {"contact_team": True, "comment": text})
    calm = _event(iid, "stop", {"reason": "distress", "comment": ""}, minutes=1)
    results = _results(client, [distress, calm])
    assert results[0]["status"] == "applied" and results[0]["warnings"] == kinds
    assert results[1]["status"] == "applied" and "warnings" not in results[1]
    with app.app_context():
        assert db.session.get(InterviewEvent, distress["id"]).identifier_kinds == "name"
        assert db.session.get(InterviewEvent, calm["id"]).identifier_kinds is None


@pytest.mark.parametrize("lang", ["nb", "en"])
def test_sync_warns_of_a_debrief_reflection_and_follows_its_edits(client, world, app, lang):
    iid = consented_interview(client, world)
    _results(client, [_event(iid, "stop", {"reason": "other"})])
    text, kinds = TEXTS[lang]
    debrief_id = str(uuid.uuid4())
    created = _results(client, [_debrief(iid, debrief_id, text)])[0]
    assert created["status"] == "applied" and created["warnings"] == kinds
    with app.app_context():
        assert db.session.get(Debrief, debrief_id).identifier_kinds == " ".join(kinds)
    # written around: no warning, and the kinds go with the words
    fixed = _results(client, [_debrief(iid, debrief_id, CLEAN[lang], base_rev=1)])[0]
    assert fixed["status"] == "applied" and "warnings" not in fixed
    with app.app_context():
        db.session.expire_all()
        debrief = db.session.get(Debrief, debrief_id)
        assert debrief.reflection == CLEAN[lang] and debrief.identifier_kinds is None
    # a change of the flags alone carries no text: nothing to check
    flags = _debrief(iid, debrief_id, "x", base_rev=2)
    flags["data"] = {"wants_debrief_talk": True}
    assert "warnings" not in _results(client, [flags])[0]


def test_a_refused_change_carries_no_warning(client, world):
    consented_interview(client, world)
    # peer_a may not touch peer_b's interview: refused, and nothing is said about its words
    other = _event(world.interviews["pb"], "stop", {"reason": "other", "comment": TEXTS["nb"][0]})
    refused = _results(client, [other])[0]
    assert refused["status"] == "rejected" and "warnings" not in refused


# --- through the forms -------------------------------------------------------------------------


@pytest.mark.parametrize("lang", ["nb", "en"])
def test_stop_form_warns_beside_the_comment_before_it_is_kept(client, world, app, lang, caplog):
    caplog.set_level(logging.DEBUG)
    iid = consented_interview(client, world)
    client.get(f"/?lang={lang}")
    text, kinds = TEXTS[lang]
    page = client.post(f"/interviews/{iid}/stop", data={"reason": "other", "comment": text})
    # an event is never edited once recorded: the warning comes before, and nothing is kept yet
    assert page.status_code == 200
    html = page.text
    assert WARNING[kinds[0]][lang] in html
    assert NOT_STOPPED[lang] in html
    assert 'id="comment-identifiers"' in html and 'aria-describedby="comment-identifiers"' in html
    assert 'name="identifiers_seen" value="1"' in html
    assert text in html  # the words stay in the box, so nothing typed is lost
    with app.app_context():
        assert db.session.get(Interview, iid).status == "in_progress"
        assert not db.session.scalars(
            select(InterviewEvent).where(InterviewEvent.kind == "stop")
        ).all()
    # pressed again as it is: stopped, the comment kept with its kinds
    kept = client.post(
        f"/interviews/{iid}/stop",
        data={"reason": "other", "comment": text, "identifiers_seen": "1"},
    )
    assert kept.status_code == 302 and kept.headers["Location"].endswith("/debrief")
    with app.app_context():
        assert db.session.get(Interview, iid).status == "stopped"
        event = db.session.scalars(
            select(InterviewEvent).where(InterviewEvent.kind == "stop")
        ).one()
        assert event.comment == text and event.identifier_kinds == " ".join(kinds)
        audit = json.dumps([[a.action, a.detail] for a in db.session.scalars(select(AuditEvent))])
    for words in (PHONE, EMAIL):
        assert words not in audit and words not in caplog.text


@pytest.mark.parametrize("lang", ["nb", "en"])
def test_stop_form_written_around_stops_at_once(client, world, app, lang):
    iid = consented_interview(client, world)
    client.get(f"/?lang={lang}")
    done = client.post(f"/interviews/{iid}/stop", data={"reason": "other", "comment": CLEAN[lang]})
    assert done.status_code == 302
    with app.app_context():
        event = db.session.scalars(
            select(InterviewEvent).where(InterviewEvent.kind == "stop")
        ).one()
        assert event.comment == CLEAN[lang] and event.identifier_kinds is None


@pytest.mark.parametrize("lang", ["nb", "en"])
def test_stop_form_refused_for_another_reason_still_shows_the_warning(client, world, lang):
    iid = consented_interview(client, world)
    client.get(f"/?lang={lang}")
    text, kinds = TEXTS[lang]
    page = client.post(f"/interviews/{iid}/stop", data={"reason": "", "comment": text})
    assert page.status_code == 400
    assert WARNING[kinds[0]][lang] in page.text


@pytest.mark.parametrize("lang", ["nb", "en"])
def test_distress_form_stops_at_once_and_warns_afterwards(client, world, app, lang):
    """A safety stop is never held back to write around an identifier."""
    iid = consented_interview(client, world)
    client.post(f"/interviews/{iid}/distress")
    client.get(f"/?lang={lang}")
    text, kinds = NAME_TEXT[lang]
    url = f"/interviews/{iid}/distress/stage-2"
    form = client.get(url).text
    assert 'id="identifier-guard"' in form  # the tablet's rules for the live warning
    stopped = client.post(url, data={"contact_team": "y", "comment": text})
    assert stopped.status_code == 302
    with app.app_context():
        event = db.session.scalars(
            select(InterviewEvent).where(InterviewEvent.kind == "distress_2")
        ).one()
        assert event.comment == text and event.identifier_kinds == "name"
        assert event.data == {"contact_team": True}
    page = client.get(stopped.headers["Location"]).text
    assert FLAGGED_AFTER[lang] in page


@pytest.mark.parametrize("lang", ["nb", "en"])
def test_debrief_form_keeps_the_reflection_and_warns_beside_it(client, world, app, lang):
    iid = consented_interview(client, world)
    client.post(f"/interviews/{iid}/stop", data={"reason": "other"})
    client.get(f"/?lang={lang}")
    text, kinds = TEXTS[lang]
    saved = client.post(f"/interviews/{iid}/debrief", data={"wellbeing": "4", "reflection": text})
    # saved, as a note is (a debrief can be edited): back to the page, the warning beside it
    assert saved.status_code == 302
    assert saved.headers["Location"].endswith(f"/interviews/{iid}/debrief")
    page = client.get(saved.headers["Location"]).text
    assert DEBRIEF_SAVED[lang] in page
    assert WARNING[kinds[0]][lang] in page
    assert "91\u2022 \u2022\u2022 \u2022\u2022\u2022" in page or "k\u2022\u2022\u2022@" in page
    assert 'aria-describedby="reflection-identifiers"' in page
    with app.app_context():
        debrief = db.session.scalars(select(Debrief)).one()
        assert debrief.reflection == text and debrief.identifier_kinds == " ".join(kinds)
    # written around: saved, and the warning is gone
    again = client.post(
        f"/interviews/{iid}/debrief", data={"wellbeing": "4", "reflection": CLEAN[lang]}
    )
    assert again.headers["Location"].endswith(f"/interviews/{iid}")
    assert "identifier-warning" not in client.get(f"/interviews/{iid}/debrief").text
    with app.app_context():
        db.session.expire_all()
        assert db.session.scalars(select(Debrief)).one().identifier_kinds is None


def test_pages_with_free_text_carry_the_guard_for_the_tablet(client, world):
    iid = consented_interview(client, world)
    page = client.get(f"/interviews/{iid}/stop?lang=en").text
    assert "data-identifier-field" in page and 'id="identifier-guard"' in page
    assert "This text may contain a phone number." in page  # the words the tablet shows
    assert "identifier-warning" not in page  # nothing typed, nothing to warn of


# --- the coordinator's count -------------------------------------------------------------------


def test_alerts_count_flagged_comments_and_reflections_per_team(client, auth, world, app):
    iid = consented_interview(client, world)
    results = _results(
        client,
        [
            _event(iid, "distress_2", {"contact_team": False, "comment": TEXTS["nb"][0]}),
            _event(iid, "stop", {"reason": "distress", "comment": ""}, minutes=1),
        ],
    )
    assert [r["status"] for r in results] == ["applied", "applied"]
    _results(client, [_debrief(iid, str(uuid.uuid4()), NAME_TEXT["en"][0])])
    auth.logout()
    auth.login("coord_a")
    page = client.get("/desk/alerts/?lang=en")
    assert page.status_code == 200
    text = page.text
    assert "Written texts that may tell who a participant is" in text
    assert "Flagged comments" in text and "Flagged debrief reflections" in text
    with app.app_context():
        code = db.session.get(Participant, world.participants["pa"]).code
    # no note, one comment, one reflection; two texts in the interview
    assert "<td>0</td>\n              <td>1</td>\n              <td>1</td>" in text
    assert f"{code}</span> (2)" in text
    for words in (PHONE, "Nordmann"):
        assert words not in text
    auth.logout()
    auth.login("coord_b")
    other = client.get("/desk/alerts/?lang=en").text
    assert "Written texts that may tell who a participant is" not in other
    auth.logout()
    # withdrawn: out of the count
    with app.app_context():
        db.session.get(Participant, world.participants["pa"]).status = "withdrawn"
        db.session.commit()
    auth.login("coord_a")
    assert "Written texts that may tell" not in client.get("/desk/alerts/?lang=en").text
