"""A full flow leaves no note text, names or phone numbers in the logs or the audit log."""

import json
import logging
import uuid

from flask.cli import FlaskGroup
from sqlalchemy import select

from interview.participants.withdrawal import today_in_oslo
from interview.store.extensions import db
from interview.store.models import AuditEvent, Case, Participant
from tests.helpers import CONSENT_ALL_YES, note_change, signature_data_url, start_interview

NAME = "Ingrid Loggesen"
PRINTED = "INGRID LOGGESEN"
PHONE = "+47 915 55 123"
NOTE = "Loggprøve: hjelpen fra teamet i Drammen var uvanlig god"
SYNCED = "Synkprøve: fastlegen ringte aldri tilbake"
REFLECTION = "Refleksjonsprøve: tung dag for meg også"
COMMENT = "Stoppkommentarprøve: deltakeren ble sliten"
SECRETS = (NAME, "Loggesen", PRINTED, PHONE, "915 55 123", NOTE, SYNCED, REFLECTION, COMMENT)


def test_a_whole_flow_writes_no_research_or_identity_data_to_any_log(
    app, client, auth, world, caplog
):
    caplog.set_level(logging.DEBUG)
    with app.app_context():
        case_a = db.session.execute(select(Case.id).where(Case.code == "A")).scalar_one()
        before = set(db.session.scalars(select(Participant.id)))

    # the coordinator registers a participant, with identity data, and looks at it
    auth.login("coord_a")
    registered = client.post(
        "/participants/new",
        data={
            "case_id": str(case_a),
            "preferred_language": "nb",
            "interviewers": [str(world.users["peer_a"])],
            "name": NAME,
            "phone": PHONE,
        },
    )
    assert registered.status_code == 302
    with app.app_context():
        (pid,) = set(db.session.scalars(select(Participant.id))) - before
    assert client.post(f"/participants/{pid}/identity").status_code == 200
    planned = client.post(
        f"/participants/{pid}/interviews",
        data={
            "plan-day": "2031-03-04",
            "plan-at": "10:00",
            "plan-place_kind": "home",
            "plan-language": "nb",
        },
    )
    assert planned.status_code == 302
    with app.app_context():
        iid = db.session.get(Participant, pid).interviews[0].id
    auth.logout()

    # the peer runs the interview: consent with a printed name, a note by form and by sync,
    # a stop with a comment, a debrief; one malformed request on the way
    auth.login("peer_a")
    assert start_interview(client, iid).status_code == 302
    consent = client.post(
        f"/interviews/{iid}/consent",
        data={
            **CONSENT_ALL_YES,
            "method": "tablet",
            "printed_name": PRINTED,
            "signature": signature_data_url(),
        },
    )
    assert consent.status_code == 302
    saved = client.post(
        f"/interviews/{iid}/section/0",
        data={
            "new-context.services-id": str(uuid.uuid4()),
            "new-context.services-text": NOTE,
            "go": "stay",
        },
    )
    assert saved.status_code == 302
    device = str(uuid.uuid4())
    synced = client.post(
        "/api/v1/sync",
        json={"device_id": device, "changes": [note_change(iid, str(uuid.uuid4()), SYNCED)]},
    )
    assert synced.status_code == 200
    bad = client.post(
        "/api/v1/sync",
        json={"device_id": device, "changes": [{"entity": "note", "data": {"text": SYNCED}}]},
    )
    assert bad.status_code in (200, 400)
    stop = client.post(f"/interviews/{iid}/stop", data={"reason": "other", "comment": COMMENT})
    assert stop.status_code == 302
    debrief = client.post(
        f"/interviews/{iid}/debrief", data={"wellbeing": "2", "reflection": REFLECTION}
    )
    assert debrief.status_code == 302
    auth.logout()

    # the coordinator exports, prints the record and records a withdrawal
    auth.login("coord_a")
    for url in (
        "/desk/exports/notes.csv",
        "/desk/exports/export.json",
        "/desk/exports/project.qdpx",
        f"/desk/interviews/{iid}/record/nb.pdf",
        "/desk/report/nb.pdf",
        "/desk/alerts/",
    ):
        assert client.get(url).status_code == 200, url
    withdrawn = client.post(
        f"/participants/{pid}/withdraw",
        data={"withdrawn_on": today_in_oslo().isoformat(), "keep_identity": "delete"},
    )
    assert withdrawn.status_code == 302
    auth.logout()

    # an operator rotates the research key
    group = FlaskGroup(create_app=lambda: app, load_dotenv=False, set_debug_flag=False)
    rotated = app.test_cli_runner().invoke(cli=group, args=["keys", "rotate", "--ring", "research"])
    assert rotated.exit_code == 0, rotated.output

    logged = caplog.text
    assert logged, "the flow should have logged something (else this test proves nothing)"
    with app.app_context():
        audit = [
            json.dumps(
                {"a": e.action, "t": e.object_type, "o": e.object_id, "d": e.detail},
                ensure_ascii=False,
            )
            for e in db.session.scalars(select(AuditEvent))
        ]
        actions = {json.loads(a)["a"] for a in audit}
    for secret in SECRETS:
        assert secret not in logged, secret
        for line in audit:
            assert secret not in line, (secret, line)
    # and the audit log did record what happened
    for action in (
        "login",
        "participant_registered",
        "identity_viewed",
        "consent_recorded",
        "sync_batch",
        "export",
        "interview_record_printed",
        "participant_withdrawn",
        "keys_rotated",
        "logout",
    ):
        assert action in actions, action
