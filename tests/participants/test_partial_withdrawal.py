"""Partial withdrawal (issue 18): the coordinator records the withdrawal of single consent
items; quotes, audio and re-contact follow the consent in force everywhere, and tablets hear
it at their next sync."""

import csv
import io
import json
import uuid
import zipfile
from datetime import datetime, timedelta

import pypdf
import pytest
from flask_babel import force_locale
from sqlalchemy import func, select

from interview.desk import refi
from interview.desk.progress import case_progress
from interview.participants.partial import (
    PartialWithdrawalError,
    delete_recordings,
    withdraw_items,
)
from interview.participants.withdrawal import today_in_oslo
from interview.store.consents import consent_in_force, participant_consent
from interview.store.extensions import db
from interview.store.models import (
    AuditEvent,
    Consent,
    Interview,
    Note,
    Participant,
    SyncChange,
    UpdateLog,
    User,
)
from interview.sync.envelope import NO_QUOTES_REASON
from tests.conftest import PASSWORD
from tests.helpers import consented_interview, note_change, post_sync
from tests.sync.test_openapi import assert_valid

QUOTE = "Teamet kom hver uke, og det hjalp meg mye."
PLAIN = "Vi snakket om bolig."


def _client_as(app, username):
    other = app.test_client()
    other.post("/login", data={"username": username, "password": PASSWORD})
    return other


def _marked_interview(app, world, client) -> tuple[str, list[str], int]:
    """Interview pa with paper consent (quotes yes) and three notes, two marked as quotes.

    Returns the interview id, the note ids (marked, marked, plain) and the peer's cursor.
    """
    iid = consented_interview(client, world)
    ids = [str(uuid.uuid4()) for _ in range(3)]
    answer = post_sync(
        client,
        [
            note_change(iid, ids[0], QUOTE, possible_quote=True),
            note_change(iid, ids[1], QUOTE + " Igjen.", possible_quote=True),
            note_change(iid, ids[2], PLAIN),
        ],
    ).get_json()
    assert [r["status"] for r in answer["results"]] == ["applied"] * 3, answer
    return iid, ids, answer["cursor"]


def _withdraw(app, world, items, username="coord_a"):
    with app.app_context():
        participant = db.session.get(Participant, world.participants["pa"])
        user = db.session.get(User, world.users[username])
        summary = withdraw_items(
            db.session, participant, items=items, withdrawn_on=today_in_oslo(), user=user
        )
        db.session.commit()
        return summary


def _post(client, pid, items, lang="en", **extra):
    data = {"items": items, "withdrawn_on": today_in_oslo().isoformat(), **extra}
    return client.post(f"/participants/{pid}/withdraw-items?lang={lang}", data=data)


# --- the consent in force, item by item (no store, no HTTP) -----------------------------------


def _record(kind, at, **answers):
    return Consent(kind=kind, answers=answers, obtained_at=datetime(2026, 11, 1) + at)


def test_consent_in_force_applies_later_partial_withdrawals_in_time_order():
    day = timedelta(days=1)
    given = _record("consent", 0 * day, participate=True, audio=True, quotes=True, recontact=True)
    quotes_off = _record("partial", 2 * day, quotes=False)
    audio_off = _record("partial", 3 * day, audio=False)
    # the records in any order: they are read in time order
    state = consent_in_force([audio_off, quotes_off, given])
    assert state.consent is given
    assert state.items == {"participate": True, "audio": False, "quotes": False, "recontact": True}
    assert state.withdrawn == {"quotes": quotes_off.obtained_at, "audio": audio_off.obtained_at}
    assert state.allows("recontact") and not state.allows("quotes")
    # the consent record itself is never changed
    assert given.answers["quotes"] is True

    # a partial withdrawal before any consent withdraws nothing; a new consent starts afresh
    early = _record("partial", -day, recontact=False)
    again = _record("consent", 5 * day, participate=True, audio=False, quotes=True, recontact=True)
    state = consent_in_force([early, given, quotes_off, again])
    assert state.consent is again and state.allows("quotes") and state.withdrawn == {}
    # a full withdrawal ends it all
    assert consent_in_force([given, quotes_off, _record("withdrawal", 4 * day)]) is None
    assert consent_in_force([]) is None


# --- the domain: withdraw_items ---------------------------------------------------------------


def test_withdrawing_quotes_unmarks_notes_through_the_sync_rules(app, world, client):
    iid, ids, _cursor = _marked_interview(app, world, client)
    with app.app_context():
        revs = {n.id: n.rev for n in db.session.scalars(select(Note))}
        interview_rev = db.session.get(Interview, iid).rev
        log_before = db.session.scalar(select(func.max(UpdateLog.seq)))

    summary = _withdraw(app, world, ["quotes"])

    assert summary.items == ["quotes"] and summary.notes_unmarked == 2
    assert summary.recordings_deleted == 0 and summary.interviews == 1
    with app.app_context():
        notes = {n.id: n for n in db.session.scalars(select(Note))}
        assert [notes[i].possible_quote for i in ids] == [False, False, False]
        # the marked ones moved on a rev, with the words untouched; the plain one did not move
        assert [notes[i].rev for i in ids] == [revs[ids[0]] + 1, revs[ids[1]] + 1, revs[ids[2]]]
        assert notes[ids[0]].text == QUOTE
        # through the sync rules: a change each in the sync log, and the update log tells tablets
        changes = db.session.scalars(
            select(SyncChange).where(SyncChange.record_id.in_(ids[:2]))
        ).all()
        assert {c.status for c in changes} == {"applied"}
        logged = set(
            db.session.scalars(select(UpdateLog.record_id).where(UpdateLog.seq > log_before))
        )
        assert {ids[0], ids[1], iid} <= logged and ids[2] not in logged
        assert db.session.get(Interview, iid).rev == interview_rev + 1

        # a new immutable record: the item answered no, the form version, who, when
        (record,) = db.session.scalars(select(Consent).where(Consent.kind == "partial")).all()
        assert record.answers == {"quotes": False}
        assert record.method == "coordinator" and record.obtained_by_id == world.users["coord_a"]
        assert record.form_version.version == 1 and record.interview_id is None
        participant = db.session.get(Participant, world.participants["pa"])
        consent = next(c for c in participant.consents if c.kind == "consent")
        assert consent.answers["quotes"] is True  # the consent itself is never edited
        state = participant_consent(participant)
        assert state.consent.id == consent.id and not state.allows("quotes")
        assert state.withdrawn["quotes"] == record.obtained_at > consent.obtained_at
        assert participant.status != "withdrawn"


def test_withdrawing_audio_calls_the_recording_hook_and_recontact_changes_no_note(
    app, world, client
):
    _marked_interview(app, world, client)
    with app.app_context():
        # the hook a recording store will fill (issue 19): nothing stored, nothing deleted
        assert (
            delete_recordings(db.session, db.session.get(Participant, world.participants["pa"]))
            == 0
        )
    summary = _withdraw(app, world, ["recontact"])
    assert summary.notes_unmarked == 0 and summary.items == ["recontact"]
    with app.app_context():
        assert db.session.scalar(select(func.count()).where(Note.possible_quote.is_(True))) == 2
        state = participant_consent(db.session.get(Participant, world.participants["pa"]))
        assert not state.allows("recontact") and state.allows("quotes")


@pytest.mark.parametrize(
    ("items", "code", "nb_words"),
    [
        ([], "none", "Velg minst"),
        (["participate"], "participate", "full tilbaketrekking"),
        (["photos"], "unknown", "står ikke på deltakerens samtykkeskjema"),
        (["audio"], "not_given", "er ikke en del av samtykket som gjelder"),
    ],
)
def test_bad_items_are_refused_with_a_reason_in_both_languages(
    app, world, client, items, code, nb_words
):
    _marked_interview(app, world, client)  # audio was answered no on the paper form
    with app.app_context():
        participant = db.session.get(Participant, world.participants["pa"])
        user = db.session.get(User, world.users["coord_a"])
        with pytest.raises(PartialWithdrawalError) as refused:
            withdraw_items(
                db.session, participant, items=items, withdrawn_on=today_in_oslo(), user=user
            )
        db.session.rollback()
        assert refused.value.code == code and refused.value.status == 400
        with force_locale("nb"):
            assert nb_words in refused.value.message()
        with force_locale("en"):
            assert "consent" in refused.value.message().lower()
        assert not db.session.scalars(select(Consent).where(Consent.kind == "partial")).all()


def test_an_item_cannot_be_withdrawn_twice_and_nothing_without_consent(app, world, client):
    _marked_interview(app, world, client)
    _withdraw(app, world, ["quotes"])
    with pytest.raises(PartialWithdrawalError) as twice:
        _withdraw(app, world, ["quotes"])
    assert twice.value.code == "not_given"
    with app.app_context():
        pa2 = db.session.get(Participant, world.participants["pa2"])  # no consent yet
        user = db.session.get(User, world.users["coord_a"])
        with pytest.raises(PartialWithdrawalError) as none:
            withdraw_items(
                db.session, pa2, items=["quotes"], withdrawn_on=today_in_oslo(), user=user
            )
        assert none.value.code == "no_consent" and none.value.status == 409


def test_progress_counts_the_items_in_force(app, world, client):
    _marked_interview(app, world, client)
    with app.app_context():
        case_id = db.session.get(Participant, world.participants["pa"]).case_id
        before = case_progress(db.session, [case_id], datetime.utcnow()).cases[0].consent_items
    _withdraw(app, world, ["quotes"])
    with app.app_context():
        after = case_progress(db.session, [case_id], datetime.utcnow()).cases[0].consent_items
    # the consent is still in force (the participant takes part); quotes are no longer given
    assert before.consents == after.consents == 1
    assert before.given == {"audio": 0, "quotes": 1, "recontact": 1}
    assert after.given == {"audio": 0, "quotes": 0, "recontact": 1}


# --- the routes ----------------------------------------------------------------------------------


def test_coordinator_records_it_and_the_participant_page_shows_what_is_in_force(app, world, client):
    _marked_interview(app, world, client)
    coord = _client_as(app, "coord_a")
    pid = world.participants["pa"]
    for lang, words in (
        ("en", ("Withdraw part of the consent", "What will happen", "2 notes")),
        ("nb", ("Trekk tilbake deler av samtykket", "Dette vil skje", "2 notater")),
    ):
        page = coord.get(f"/participants/{pid}/withdraw-items?lang={lang}")
        assert page.status_code == 200
        assert all(w in page.text for w in words), lang
        # only the items in force are offered (audio was answered no)
        assert 'value="quotes"' in page.text and 'value="recontact"' in page.text
        assert 'value="audio"' not in page.text and 'value="participate"' not in page.text

    done = _post(coord, pid, ["quotes", "recontact"])
    assert done.status_code == 302 and done.headers["Location"].endswith(f"/participants/{pid}")
    page = coord.get(f"/participants/{pid}?lang=en")
    assert "Partial withdrawal" in page.text
    assert page.text.count("No: withdrawn") == 2
    assert "Do not contact this participant again" in page.text
    nb = coord.get(f"/participants/{pid}?lang=nb").text
    assert "Delvis tilbaketrekking" in nb and nb.count("Nei: trukket tilbake") == 2

    with app.app_context():
        (event,) = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "consent_items_withdrawn")
        ).all()
        assert event.user_id == world.users["coord_a"] and event.object_id == pid
        assert event.detail["items"] == ["quotes", "recontact"]
        assert event.detail["notes_unmarked"] == 2 and event.detail["recordings_deleted"] == 0
        # counts and items only: no words, no note ids, no names
        assert set(event.detail) == {
            "consent_id",
            "items",
            "withdrawn_on",
            "form_version",
            "notes_unmarked",
            "recordings_deleted",
            "interviews",
        }
        assert QUOTE not in json.dumps(event.detail) and "Test Person" not in json.dumps(
            event.detail
        )

    # nothing left to offer but audio, which was never given: the page says so
    again = coord.get(f"/participants/{pid}/withdraw-items?lang=en")
    assert "Every optional consent item has already been withdrawn" in again.text


@pytest.mark.parametrize("lang", ["en", "nb"])
def test_bad_posts_get_a_4xx_in_the_users_language(app, world, client, lang):
    _marked_interview(app, world, client)
    coord = _client_as(app, "coord_a")
    pid = world.participants["pa"]
    expected = {
        "en": (
            "Choose at least one",
            "consent item is not on the",
            "full withdrawal",
            "is not part of the consent in force",
            "cannot be in the future",
        ),
        "nb": (
            "Velg minst ett",
            "står ikke på deltakerens samtykkeskjema",
            "full tilbaketrekking",
            "er ikke en del av samtykket som gjelder",
            "kan ikke være fram i tid",
        ),
    }[lang]
    for items, words in zip(
        ([], ["photos"], ["participate"], ["audio"]), expected[:4], strict=True
    ):
        answer = _post(coord, pid, items, lang)
        assert answer.status_code == 400, items
        assert words in answer.text, (items, lang)
        assert 'aria-invalid="true"' in answer.text
    future = (today_in_oslo() + timedelta(days=1)).isoformat()
    answer = _post(coord, pid, ["quotes"], lang, withdrawn_on=future)
    assert answer.status_code == 400 and expected[4] in answer.text
    with app.app_context():
        assert not db.session.scalars(select(Consent).where(Consent.kind == "partial")).all()
        assert db.session.scalar(select(func.count()).where(Note.possible_quote.is_(True))) == 2


def test_access_is_checked_per_participant_and_state(app, world, client):
    _marked_interview(app, world, client)
    pid = world.participants["pa"]
    # another team's coordinator does not see the participant; a peer may not use the route
    assert _post(_client_as(app, "coord_b"), pid, ["quotes"]).status_code == 404
    assert _client_as(app, "coord_b").get(f"/participants/{pid}/withdraw-items").status_code == 404
    assert _post(_client_as(app, "peer_a"), pid, ["quotes"]).status_code == 403
    # a participant with no consent in force, and a withdrawn one: 409 with the reason
    coord = _client_as(app, "coord_a")
    none = _post(coord, world.participants["pa2"], ["quotes"], "nb")
    assert none.status_code == 409 and "ingen samtykke som gjelder" in none.text
    with app.app_context():
        db.session.get(Participant, pid).status = "withdrawn"
        db.session.commit()
    gone = _post(coord, pid, ["quotes"], "en")
    assert gone.status_code == 409 and "has withdrawn from the study" in gone.text
    with app.app_context():
        assert not db.session.scalars(select(Consent).where(Consent.kind == "partial")).all()


def test_section_form_refuses_a_quote_mark_beside_the_note(app, world, client):
    iid, ids, _cursor = _marked_interview(app, world, client)
    _withdraw(app, world, ["quotes"])
    page = client.get(f"/interviews/{iid}/section/0?lang=en")
    assert page.status_code == 200
    # every quote box is held off, and the page says why
    assert f'name="note-{ids[0]}-quote" value="1" disabled>' in page.text
    assert "consent does not cover quotes" in page.text
    assert 'id="no-quotes" role="note" hidden' not in page.text
    with app.app_context():
        note = db.session.get(Note, ids[2])
        rev = note.rev
    # a form opened before the withdrawal sends a mark: refused beside that note, nothing saved
    refused = client.post(
        f"/interviews/{iid}/section/0?lang=nb",
        data={
            f"note-{ids[2]}-text": PLAIN + " Endret.",
            f"note-{ids[2]}-rev": str(rev),
            f"note-{ids[2]}-quote": "1",
            "go": "stay",
        },
    )
    assert refused.status_code == 400
    assert f'id="note-{ids[2]}-errors"' in refused.text
    assert "Deltakerens samtykke omfatter ikke sitater" in refused.text
    with app.app_context():
        note = db.session.get(Note, ids[2])
        assert note.text == PLAIN and not note.possible_quote


# --- sync: the tablet hears it, and a later mark is dropped, never the words ----------------


def test_tablet_learns_it_at_next_sync_and_a_later_mark_is_dropped_not_the_words(
    app, world, client
):
    iid, ids, cursor = _marked_interview(app, world, client)
    _withdraw(app, world, ["quotes"])

    body = post_sync(client, [], cursor=cursor).get_json()
    assert_valid("SyncResponse", body)
    by_key = {(u["entity"], u["id"]): u for u in body["updates"]}
    # the interview carries the consent in force; the marked notes come without their mark
    assert by_key[("interview", iid)]["data"]["consent_items"]["quotes"] is False
    assert by_key[("interview", iid)]["data"]["consent_items"]["participate"] is True
    assert by_key[("note", ids[0])]["data"]["possible_quote"] is False
    assert by_key[("note", ids[1])]["data"]["possible_quote"] is False
    (partial,) = [u for u in body["updates"] if u["entity"] == "consent"]
    assert partial["data"]["kind"] == "partial" and partial["data"]["answers"] == {"quotes": False}

    fresh = [str(uuid.uuid4()) for _ in range(3)]
    answer = post_sync(
        client,
        [
            # a run of creates (written in one go when it can be): the marked one goes the
            # usual way, and is kept without its mark
            note_change(iid, fresh[0], "Nytt notat"),
            note_change(iid, fresh[1], "Et sitat", possible_quote=True),
            note_change(iid, fresh[2], "Enda et"),
            # an edit typed on a tablet that had not heard of it yet: the words stay
            {
                **note_change(iid, ids[2], "x", base_rev=1),
                "data": {"text": "Skrevet offline etterpå", "possible_quote": True},
            },
            # an edit that takes a mark off, or leaves it off, is fine
            {**note_change(iid, ids[0], "x", base_rev=2), "data": {"possible_quote": False}},
        ],
        cursor=body["cursor"],
    ).get_json()
    statuses = [(r["status"], r.get("reason")) for r in answer["results"]]
    assert statuses == [
        ("applied", None),
        ("applied", NO_QUOTES_REASON),
        ("applied", None),
        ("applied", NO_QUOTES_REASON),
        ("applied", None),
    ]
    with app.app_context():
        assert db.session.get(Note, fresh[1]).text == "Et sitat"
        assert db.session.get(Note, ids[2]).text == "Skrevet offline etterpå"
        assert db.session.scalar(select(func.count()).where(Note.possible_quote.is_(True))) == 0

    # the tablet can say why in the peer's words
    page = client.get(f"/interviews/{iid}/section/0?lang=nb")
    strings = json.loads(page.text.split('id="tablet-strings">', 1)[1].split("</script>", 1)[0])
    assert strings["reasons"][NO_QUOTES_REASON].startswith("Deltakerens samtykke omfatter ikke")


def test_before_any_consent_the_interview_update_says_so(app, world, client):
    client.post("/login", data={"username": "peer_a", "password": PASSWORD})
    body = post_sync(client, [], cursor=0).get_json()
    assert_valid("SyncResponse", body)
    (interview,) = [u for u in body["updates"] if u["entity"] == "interview"]
    assert interview["data"]["consent_items"] is None


# --- exports: CSV, JSON and REFI-QDA follow the consent in force --------------------------------


def test_exports_never_show_a_quote_without_consent_to_quotes(app, world, client):
    iid, ids, _cursor = _marked_interview(app, world, client)
    _withdraw(app, world, ["quotes"])
    with app.app_context():
        # a mark that got past the rules (an older store, a direct edit): still never a quote
        db.session.get(Note, ids[0]).possible_quote = True
        db.session.commit()
        partial = db.session.scalars(select(Consent).where(Consent.kind == "partial")).one()
        withdrawn_at = partial.obtained_at.replace(microsecond=0).isoformat() + "Z"
    coord = _client_as(app, "coord_a")

    rows = list(
        csv.DictReader(io.StringIO(coord.get("/desk/exports/notes.csv").data.decode("utf-8-sig")))
    )
    assert {r["note_id"] for r in rows} == set(ids)
    assert {r["possible_quote"] for r in rows} == {"false"}

    body = json.loads(coord.get("/desk/exports/export.json").data)
    (participant,) = [
        p for c in body["cases"] for p in c["participants"] if p["interviews"][0]["notes"]
    ]
    notes = participant["interviews"][0]["notes"]
    assert {n["id"] for n in notes} == set(ids) and not any(n["possible_quote"] for n in notes)
    in_force = participant["consent_in_force"]
    assert in_force["items"] == {
        "audio": False,
        "participate": True,
        "quotes": False,
        "recontact": True,
    }
    assert in_force["withdrawn"] == {"quotes": withdrawn_at}
    assert [c["kind"] for c in participant["consents"]] == ["consent", "partial"]

    qdpx = coord.get("/desk/exports/project.qdpx").data
    with zipfile.ZipFile(io.BytesIO(qdpx)) as zf:
        project = zf.read("project.qde").decode()
    quote_guid = refi.guid("code", "possible_quote")
    assert f'targetGUID="{quote_guid}"' not in project
    assert refi.guid("note", ids[0]) in project  # the note is there, only not as a quote


def test_exports_show_quotes_while_consent_to_them_is_in_force(app, world, client):
    _iid, ids, _cursor = _marked_interview(app, world, client)
    coord = _client_as(app, "coord_a")
    rows = list(
        csv.DictReader(io.StringIO(coord.get("/desk/exports/notes.csv").data.decode("utf-8-sig")))
    )
    assert {r["note_id"]: r["possible_quote"] for r in rows} == {
        ids[0]: "true",
        ids[1]: "true",
        ids[2]: "false",
    }
    with zipfile.ZipFile(io.BytesIO(coord.get("/desk/exports/project.qdpx").data)) as zf:
        project = zf.read("project.qde").decode()
    assert project.count(f'targetGUID="{refi.guid("code", "possible_quote")}"') == 2


def test_the_interview_record_follows_the_consent_in_force(app, world, client):
    iid, ids, _cursor = _marked_interview(app, world, client)
    stop = {
        **note_change(iid, str(uuid.uuid4()), "x"),
        "entity": "event",
        "data": {"interview_id": iid, "kind": "stop", "details": {"reason": "participant_wish"}},
    }
    assert post_sync(client, [stop]).get_json()["results"][0]["status"] == "applied"
    coord = _client_as(app, "coord_a")
    url = f"/desk/interviews/{iid}/record/en.pdf"
    before = " ".join(
        p.extract_text() for p in pypdf.PdfReader(io.BytesIO(coord.get(url).data)).pages
    )
    assert before.count("Possible quote") == 2
    _withdraw(app, world, ["quotes"])
    with app.app_context():
        # a mark that got past the rules (an older store, a direct edit): still no quote
        db.session.get(Note, ids[0]).possible_quote = True
        db.session.commit()
    after = " ".join(
        p.extract_text() for p in pypdf.PdfReader(io.BytesIO(coord.get(url).data)).pages
    )
    assert "Possible quote" not in after and "No: withdrawn" in after
