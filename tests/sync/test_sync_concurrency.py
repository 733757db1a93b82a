"""The same change delivered at the same moment on several connections applies exactly once."""

import threading
import uuid

from sqlalchemy import func, select

from interview.store.extensions import db
from interview.store.models import Note, SyncChange
from tests.conftest import PASSWORD
from tests.helpers import give_paper_consent, start_interview

DELIVERIES = 6


def test_concurrent_duplicate_deliveries_apply_once(app, world, auth, client):
    auth.login("peer_a")
    iid = world.interviews["pa"]
    start_interview(client, iid)
    give_paper_consent(client, iid)
    note_id, change_id = str(uuid.uuid4()), str(uuid.uuid4())
    envelope = {
        "device_id": str(uuid.uuid4()),
        "cursor": None,
        "changes": [
            {
                "change_id": change_id,
                "entity": "note",
                "id": note_id,
                "base_rev": None,
                "recorded_at": "2026-11-23T10:00:00Z",
                "data": {
                    "interview_id": iid,
                    "question_key": "context.services",
                    "text": "Sendt seks ganger samtidig",
                },
            }
        ],
    }
    clients = []
    for _ in range(DELIVERIES):
        c = app.test_client()
        c.post("/login", data={"username": "peer_a", "password": PASSWORD})
        clients.append(c)
    barrier = threading.Barrier(DELIVERIES)
    answers: list = []
    lock = threading.Lock()

    def deliver(c):
        barrier.wait()
        response = c.post("/api/v1/sync", json=envelope)
        with lock:
            answers.append((response.status_code, response.get_json()))

    threads = [threading.Thread(target=deliver, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(answers) == DELIVERIES
    assert all(code == 200 for code, _ in answers), answers
    results = [body["results"][0] for _, body in answers]
    statuses = sorted(r["status"] for r in results)
    assert statuses == ["applied"] + ["duplicate"] * (DELIVERIES - 1), statuses
    assert {r["rev"] for r in results} == {1}
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Note)) == 1
        assert (
            db.session.scalar(
                select(func.count())
                .select_from(SyncChange)
                .where(SyncChange.change_id == change_id)
            )
            == 1
        )
