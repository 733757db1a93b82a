"""Fast versions of the soak and the crash test (tests/soak/), run by `make test` and CI.

Both start the real app under gunicorn (two workers) on a free loopback port, on the store
DATABASE_URL / IDENTITY_DATABASE_URL name (PostgreSQL in CI's second pass; the tables are
made fresh and dropped after) or on two SQLite files in a temporary folder. Nothing here
asserts speed: the limits are generous so a loaded two-core machine passes too.
"""

import uuid

from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from interview.store.extensions import db
from interview.store.models import Consent, ConsentFormVersion, ConsentSignature, Note, SyncChange
from tests.soak.crash import run_crash
from tests.soak.soak import run_soak


def test_soak_fast_loses_nothing_whatever_the_network_does():
    lines: list[str] = []
    ok = run_soak(
        tablets=4, changes=30, migrate=False, seed=11, timeout=900, settle=120, out=lines.append
    )
    print("\n".join(lines))
    assert ok, "\n".join(line for line in lines if line.startswith("FAIL"))
    figures = dict(line.split(": ", 1) for line in lines if ": " in line)
    assert figures["lost"] == "0"
    assert figures["duplicated"] == "0"
    # every kind of fault was injected at least once (each tablet starts with one of each)
    for fault in ("lost_request", "lost_response", "duplicate", "reorder", "expired"):
        assert int(figures[f"fault {fault}"]) >= 1, fault


def test_crash_fast_kills_the_server_mid_batch_and_nothing_is_half_applied():
    lines: list[str] = []
    ok = run_crash(
        tablets=3,
        changes=40,
        kills=2,
        migrate=False,
        seed=12,
        timeout=900,
        settle=120,
        out=lines.append,
    )
    print("\n".join(lines))
    assert ok, "\n".join(line for line in lines if line.startswith("FAIL"))
    figures = dict(line.split(": ", 1) for line in lines if ": " in line)
    assert figures["kills (SIGKILL to master and workers)"] == "2"
    assert figures["  half-applied"] == "0"
    assert figures["lost"] == "0"


def test_a_store_that_cannot_be_written_answers_retry_and_keeps_nothing(
    app, client, world, auth, monkeypatch
):
    """SQLite's lock wait running out under load is a 503 retry, never a 500 (found by the soak)."""

    def busy(*_args, **_kwargs):
        db.session.execute(select(func.count()).select_from(Note))
        raise OperationalError("UPDATE sync_counter", {}, Exception("database is locked"))

    monkeypatch.setattr("interview.sync.views.apply_changes", busy)
    auth.login("peer_a")
    change = {
        "change_id": str(uuid.uuid4()),
        "entity": "note",
        "id": str(uuid.uuid4()),
        "base_rev": None,
        "recorded_at": "2026-11-23T10:00:00Z",
        "data": {
            "interview_id": world.interviews["pa"],
            "question_key": "context.services",
            "text": "kept on the tablet",
        },
    }
    answer = client.post(
        "/api/v1/sync", json={"device_id": str(uuid.uuid4()), "cursor": None, "changes": [change]}
    )
    assert answer.status_code == 503
    assert answer.get_json()["code"] == "retry"
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(SyncChange)) == 0
        assert db.session.scalar(select(func.count()).select_from(Note)) == 0


def test_a_consent_cut_between_the_two_stores_commits_can_still_be_sent(app, client, world, auth):
    """The identity store committed the signature, the server was killed before the case store.

    Found by `make crash`: the two stores cannot commit together, and the resend failed on the
    signature's unique consent_id, so that tablet's every sync answered 503 for good. Now the
    identity half commits first (a crash leaves a waiting signature, never a consent without
    one) and the resend reuses the waiting row.
    """
    consent_id = str(uuid.uuid4())
    with app.app_context():
        form = db.session.scalars(select(ConsentFormVersion)).first()
        version, keys = form.version, [item["key"] for item in form.content["items"]]
        db.session.add(
            ConsentSignature(
                id=str(uuid.uuid4()), consent_id=consent_id, participant_id=world.participants["pa"]
            )
        )
        db.session.commit()
    auth.login("peer_a")
    change = {
        "change_id": str(uuid.uuid4()),
        "entity": "consent",
        "id": consent_id,
        "base_rev": None,
        "recorded_at": "2026-11-23T10:00:00Z",
        "data": {
            "interview_id": world.interviews["pa"],
            "form_version": version,
            "language": "nb",
            "answers": {key: True for key in keys},
            "method": "paper",
            "paper_form_number": "P-1",
            "printed_name": "Deltaker Signert",
        },
    }
    answer = client.post(
        "/api/v1/sync", json={"device_id": str(uuid.uuid4()), "cursor": None, "changes": [change]}
    )
    assert answer.status_code == 200, answer.get_json()
    with app.app_context():
        assert db.session.get(Consent, consent_id) is not None
