"""Renewed consent (issue 18): when a new consent form version needs it, the desk shows who
consented on an older one, a coordinator asks for renewal once for the study, and each such
participant's next interview starts with the new form, on the web and through sync."""

import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from interview.participants.renewal import RenewalError, require_renewal
from interview.store.consents import (
    consent_in_force,
    participant_consent,
    renewal_due,
    required_renewals,
)
from interview.store.extensions import db
from interview.store.models import (
    AuditEvent,
    Consent,
    ConsentFormVersion,
    ConsentRenewal,
    GuideVersion,
    Interview,
    Participant,
    User,
    utcnow,
)
from interview.sync.envelope import OLD_FORM_REASON
from tests.conftest import PASSWORD
from tests.helpers import (
    V2_CHANGES,
    ask_renewal,
    consented_interview,
    give_paper_consent,
    post_sync,
    publish_consent_v2,
    start_interview,
)
from tests.sync.test_openapi import assert_valid


def _client_as(app, username):
    other = app.test_client()
    other.post("/login", data={"username": username, "password": PASSWORD})
    return other


def _plan(app, world, key="pa", hours=2) -> str:
    """Plan another interview of the world's participant `key`; return its id."""
    with app.app_context():
        participant = db.session.get(Participant, world.participants[key])
        interview = Interview(
            participant=participant,
            guide_version=db.session.scalars(select(GuideVersion)).first(),
            language=participant.preferred_language,
            place_kind="home",
            planned_at=utcnow() + timedelta(hours=hours),
        )
        db.session.add(interview)
        db.session.commit()
        return interview.id


def _finish(client, iid):
    assert client.post(f"/interviews/{iid}/finish").status_code == 302


def _consented_on_v1_then_v2_asked(app, world, client) -> tuple[str, str]:
    """pa consented on v1 in a finished interview; v2 published and renewal asked; a second
    interview planned. Returns (first interview, second interview); peer_a stays logged in."""
    first = consented_interview(client, world)
    _finish(client, first)
    publish_consent_v2(app)
    second = _plan(app, world)
    ask_renewal(app)
    return first, second


def _consents(app, pid):
    with app.app_context():
        return [
            (c.kind, c.form_version.version, c.interview_id)
            for c in db.session.scalars(
                select(Consent).where(Consent.participant_id == pid).order_by(Consent.obtained_at)
            )
        ]


# --- when renewal is due (no HTTP) ------------------------------------------------------------


def _consent_on(version: int, at: datetime) -> Consent:
    return Consent(
        kind="consent",
        answers={"participate": True, "quotes": True},
        obtained_at=at,
        form_version=ConsentFormVersion(version=version),
    )


def _renewal(version: int, at: datetime) -> ConsentRenewal:
    return ConsentRenewal(form_version=ConsentFormVersion(version=version), required_at=at)


T0 = datetime(2026, 11, 2, 10)


def _interview(consents, started_at=None) -> Interview:
    participant = Participant(consents=consents)
    return Interview(participant=participant, started_at=started_at)


def test_renewal_is_due_before_an_interview_not_begun_and_not_before_one_under_way():
    mark = _renewal(2, T0 + timedelta(days=10))
    consents = [_consent_on(1, T0)]
    planned = _interview(consents)
    due = renewal_due(planned, [mark])
    assert (due.version, due.consented_version, due.consented_at) == (2, 1, T0)
    # begun before the coordinator's decision: it goes on under the consent it began with
    assert renewal_due(_interview(consents, T0 + timedelta(days=9)), [mark]) is None
    # begun after it (on a tablet that had not heard yet): the new form comes first
    assert renewal_due(_interview(consents, T0 + timedelta(days=11)), [mark]) is not None
    # no decision, or none newer than the consent: nothing is due
    assert renewal_due(planned, []) is None
    assert renewal_due(_interview([_consent_on(2, T0)]), [mark]) is None
    # no consent in force at all: that is a first consent, not a renewal
    assert renewal_due(_interview([]), [mark]) is None


def test_a_renewed_consent_is_the_consent_in_force_with_its_own_answers():
    old = _consent_on(1, T0)
    new = _consent_on(2, T0 + timedelta(days=20))
    new.answers = {"participate": True, "quotes": False}
    state = consent_in_force([old, new])
    assert state.consent is new and not state.allows("quotes")
    assert renewal_due(_interview([old, new]), [_renewal(2, T0 + timedelta(days=10))]) is None


# --- the desk ---------------------------------------------------------------------------------


def test_the_desk_shows_who_consented_on_an_older_form_and_asks_once(app, world, client):
    consented_interview(client, world)  # pa consents on v1
    coord = _client_as(app, "coord_a")
    page = coord.get("/participants/consent-forms?lang=en")
    assert page.status_code == 200
    # one version: nobody is on an older one, and there is nothing to ask for yet
    assert "Nobody in your teams has a consent in force given on an older version." in page.text
    publish_consent_v2(app)
    page = coord.get("/participants/consent-forms?lang=en").text
    assert "1 participant consented on an older version" in page
    code = _code(app, world, "pa")
    assert code in page and "Version 1," in page and "Not asked for" in page
    assert "Ask for renewed consent on version 2" in page

    # without the confirmation nothing is decided, and the page says why
    before = _count(app, ConsentRenewal)
    refused = coord.post("/participants/consent-forms/2/renewal?lang=en", data={})
    assert refused.status_code == 400
    assert "Confirm that every participant who consented on an older form" in refused.text
    assert _count(app, ConsentRenewal) == before == 0

    # only the newest version can be marked
    older = coord.post("/participants/consent-forms/1/renewal?lang=en", data={"confirm": "y"})
    assert older.status_code == 409
    assert "on the newest consent form only" in older.text

    done = coord.post(
        "/participants/consent-forms/2/renewal?lang=en",
        data={"confirm": "y"},
        follow_redirects=True,
    )
    assert done.status_code == 200
    said = "Renewed consent is asked for on version 2. 1 participant in the study is asked"
    assert said in done.text
    assert "Asked at the next interview (version 2)" in done.text
    with app.app_context():
        renewal = db.session.scalars(select(ConsentRenewal)).one()
        assert renewal.form_version.version == 2
        assert renewal.required_by_id == world.users["coord_a"]
        audit = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "consent_renewal_required")
        ).one()
        # counts only, no participant named
        assert audit.detail == {"version": 2, "participants": 1, "interviews": 1}
        assert (audit.object_type, audit.object_id) == ("consent_form", "2")

    # asked once: a second time is refused and changes nothing
    again = coord.post("/participants/consent-forms/2/renewal?lang=en", data={"confirm": "y"})
    assert again.status_code == 409
    assert "already asked for" in again.text
    assert _count(app, ConsentRenewal) == 1

    # the participant's own page says it too
    detail = coord.get(f"/participants/{world.participants['pa']}?lang=en").text
    assert "Given on version 1 of the consent form." in detail
    assert "Renewed consent on version 2 is asked for" in detail


def test_the_desk_lists_only_the_coordinators_own_teams(app, world, client):
    consented_interview(client, world)  # pa, team A
    other = app.test_client()
    consented_interview(other, world, username="peer_b", key="pb")  # pb, team B
    publish_consent_v2(app)
    page_a = _client_as(app, "coord_a").get("/participants/consent-forms?lang=en").text
    page_b = _client_as(app, "coord_b").get("/participants/consent-forms?lang=en").text
    code_a, code_b = _code(app, world, "pa"), _code(app, world, "pb")
    assert code_a in page_a and code_b not in page_a
    assert code_b in page_b and code_a not in page_b
    admin = _client_as(app, "admin").get("/participants/consent-forms?lang=en").text
    assert code_a in admin and code_b in admin
    # a peer has no business here
    assert client.get("/participants/consent-forms").status_code == 403


def test_the_page_reads_in_bokmaal(app, world, client):
    consented_interview(client, world)
    publish_consent_v2(app)
    page = _client_as(app, "coord_a").get("/participants/consent-forms?lang=nb").text
    assert 'lang="nb"' in page
    assert "Samtykkeskjemaer" in page
    assert "Be om nytt samtykke på versjon 2" in page


# --- the next interview, on the web -----------------------------------------------------------


def test_the_next_interview_starts_with_the_new_form_and_says_why(app, world, client):
    first, second = _consented_on_v1_then_v2_asked(app, world, client)
    pid = world.participants["pa"]
    # the guide is closed until consent is renewed
    assert (
        client.get(f"/interviews/{second}/section/0")
        .headers["Location"]
        .endswith(f"/interviews/{second}/capacity")
    )
    answer = start_interview(client, second)
    assert answer.headers["Location"].endswith(f"/interviews/{second}/consent")
    page = client.get(f"/interviews/{second}/consent?lang=en")
    assert page.status_code == 200
    text = page.text
    assert 'data-form-version="2"' in text
    assert 'id="renewal-note"' in text and "data-renewal-note hidden" not in text
    assert "The participant consented on version 1 of the consent form" in text
    # what is new, in the interview's language (pa's interviews are in Bokmål)
    assert V2_CHANGES["nb"] in text
    assert (
        client.get(f"/interviews/{second}/section/0")
        .headers["Location"]
        .endswith(f"/interviews/{second}/consent")
    )
    # the page tells a tablet that consent is to be renewed
    assert 'data-consented="1"' in text and 'data-renewal="2"' in text

    assert give_paper_consent(client, second, number="P-200").status_code == 302
    assert _consents(app, pid) == [("consent", 1, first), ("consent", 2, second)]
    with app.app_context():
        state = participant_consent(db.session.get(Participant, pid))
        assert state.consent.form_version.version == 2
    assert client.get(f"/interviews/{second}/section/0").status_code == 200
    # renewed: a third interview goes straight to the guide after the capacity check
    third = _plan(app, world, hours=30)
    assert (
        start_interview(client, third).headers["Location"].endswith(f"/interviews/{third}/consent")
    )
    assert (
        client.get(f"/interviews/{third}/consent")
        .headers["Location"]
        .endswith(f"/interviews/{third}/section/0")
    )
    coord = _client_as(app, "coord_a").get("/participants/consent-forms?lang=en").text
    assert "Nobody in your teams has a consent in force given on an older version." in coord


def test_an_interview_under_way_before_the_decision_goes_on(app, world, client):
    iid = consented_interview(client, world)  # in progress, consent on v1
    publish_consent_v2(app)
    ask_renewal(app)
    assert client.get(f"/interviews/{iid}/section/0").status_code == 200
    page = client.get(f"/interviews/{iid}").text
    assert 'data-renewal=""' in page


def test_the_form_shown_without_renewal_is_the_newest_and_the_note_stays_hidden(app, world, client):
    # consent on v1 in force, v2 published but no renewal asked: nothing asks again
    first = consented_interview(client, world)
    _finish(client, first)
    publish_consent_v2(app)
    second = _plan(app, world)
    start_interview(client, second)
    assert (
        client.get(f"/interviews/{second}/consent")
        .headers["Location"]
        .endswith(f"/interviews/{second}/section/0")
    )
    # a tablet's kept copy of the consent page carries the note hidden, for when it hears
    page = client.get(f"/interviews/{second}/consent?lang=en", headers={"X-Offline-Copy": "1"})
    assert page.status_code == 200
    assert "data-renewal-note hidden" in page.text
    assert "The participant consented on version 1 of the consent form" in page.text


# --- through sync -----------------------------------------------------------------------------


def _consent_change(iid, version, recorded_at=None):
    return {
        "change_id": str(uuid.uuid4()),
        "entity": "consent",
        "id": str(uuid.uuid4()),
        "base_rev": None,
        "recorded_at": recorded_at or utcnow().isoformat() + "Z",
        "data": {
            "interview_id": iid,
            "form_version": version,
            "language": "nb",
            "answers": {"participate": True, "audio": False, "quotes": False, "recontact": True},
            "method": "paper",
            "paper_form_number": "P-300",
        },
    }


def _interview_update(answer, iid):
    return next(u for u in answer["updates"] if u["entity"] == "interview" and u["id"] == iid)


def test_the_tablet_hears_of_the_renewal_and_renews_through_sync(app, world, client):
    first = consented_interview(client, world)
    _finish(client, first)
    publish_consent_v2(app)
    second = _plan(app, world)
    device = str(uuid.uuid4())
    cursor = post_sync(client, [], device=device).get_json()["cursor"]
    ask_renewal(app)
    answer = post_sync(client, [], cursor=cursor, device=device).get_json()
    assert_valid("SyncResponse", answer)
    update = _interview_update(answer, second)
    assert update["data"]["consent_renewal"] == 2
    # the interview finished before the decision hears of it, and nothing is asked of it
    assert _interview_update(answer, first)["data"]["consent_renewal"] is None
    cursor = answer["cursor"]

    start_interview(client, second)
    # a consent on the old form (a tablet that kept the old page) is refused, with the reason
    old = post_sync(client, [_consent_change(second, 1)], cursor=cursor, device=device).get_json()
    assert old["results"][0]["status"] == "rejected"
    assert old["results"][0]["reason"] == OLD_FORM_REASON
    # a clock behind the store's: the renewal still follows the consent it renews
    behind = (utcnow() - timedelta(days=30)).isoformat() + "Z"
    new = post_sync(
        client, [_consent_change(second, 2, behind)], cursor=old["cursor"], device=device
    ).get_json()
    assert new["results"][0]["status"] == "applied", new
    assert_valid("SyncResponse", new)
    pid = world.participants["pa"]
    assert _consents(app, pid) == [("consent", 1, first), ("consent", 2, second)]
    with app.app_context():
        state = participant_consent(db.session.get(Participant, pid))
        assert state.consent.form_version.version == 2 and not state.allows("quotes")
    # the same answer tells the tablet: nothing is due any more, and the items as now given
    update = _interview_update(new, second)
    assert update["data"]["consent_renewal"] is None
    assert update["data"]["consent_items"]["quotes"] is False
    # renewed once: a further consent is refused as before
    again = post_sync(client, [_consent_change(second, 2)], device=device).get_json()
    assert again["results"][0]["status"] == "rejected"
    assert "already recorded" in again["results"][0]["reason"]


def test_the_consent_record_of_a_renewal_is_its_own(app, world, client):
    first, second = _consented_on_v1_then_v2_asked(app, world, client)
    start_interview(client, second)
    give_paper_consent(client, second, number="P-201")
    with app.app_context():
        consents = list(
            db.session.scalars(
                select(Consent)
                .where(Consent.participant_id == world.participants["pa"])
                .order_by(Consent.obtained_at)
            )
        )
    coord = _client_as(app, "coord_a")
    for consent in consents:
        pdf = coord.get(f"/desk/consents/{consent.id}/record.pdf")
        assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF")


# --- the decision itself (no HTTP) ------------------------------------------------------------


def test_asking_needs_confirmation_the_newest_version_and_happens_once(app, world, client):
    consented_interview(client, world)
    publish_consent_v2(app)
    with app.app_context():
        user = db.session.get(User, world.users["coord_a"])
        versions = {v.version: v for v in db.session.scalars(select(ConsentFormVersion)).all()}
        with pytest.raises(RenewalError) as no:
            require_renewal(db.session, user, versions[2], confirmed=False)
        assert no.value.code == "confirm"
        db.session.rollback()
        with pytest.raises(RenewalError) as old:
            require_renewal(db.session, user, versions[1], confirmed=True)
        assert old.value.code == "not_newest"
        db.session.rollback()
        summary = require_renewal(db.session, user, versions[2], confirmed=True)
        db.session.commit()
        assert (summary.version, summary.participants, summary.interviews) == (2, 1, 1)
        assert [r.form_version.version for r in required_renewals(db.session)] == [2]
        with pytest.raises(RenewalError) as twice:
            require_renewal(db.session, user, versions[2], confirmed=True)
        assert twice.value.code == "already"
        db.session.rollback()


def test_a_withdrawn_participant_is_not_asked(app, world, client):
    consented_interview(client, world)
    publish_consent_v2(app)
    with app.app_context():
        db.session.get(Participant, world.participants["pa"]).status = "withdrawn"
        db.session.commit()
        user = db.session.get(User, world.users["coord_a"])
        newest = db.session.scalars(
            select(ConsentFormVersion).where(ConsentFormVersion.version == 2)
        ).one()
        summary = require_renewal(db.session, user, newest, confirmed=True)
        db.session.commit()
        assert summary.participants == 0


def _code(app, world, key):
    with app.app_context():
        return db.session.get(Participant, world.participants[key]).code


def _count(app, model):
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))
