"""Nothing lost: tablets, the server and a fault injector, explored by Hypothesis.

Two tablets (two peers assigned to one participant) create and edit notes offline and sync
through POST /api/v1/sync while requests are lost, answers are lost after commit, batches
arrive twice or in another order and sessions expire. Invariant, once every outbox has
drained: every note a tablet created is in the store exactly once, and each tablet's latest
text of every note is there — as the note's text or kept as a conflict version.
"""

import tempfile
import uuid
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from sqlalchemy import select

from devdata.demo import seed_cases
from interview import create_app
from interview.participants.registry import register
from interview.store.content import load_all
from interview.store.extensions import db
from interview.store.models import Case, GuideVersion, Interview, Note, User
from interview.sync.merge import CONFLICT_SEPARATOR
from interview.trust.passwords import hash_password
from tests.conftest import PASSWORD, make_config
from tests.helpers import give_paper_consent, start_interview

FAULTS = ("none", "lost_request", "lost_response", "twice", "reversed", "expired")


class Tablet:
    """What a tablet keeps: an outbox and its own view of each note."""

    def __init__(self, app, username: str):
        self.client = app.test_client()
        self.username = username
        self.device = str(uuid.uuid4())
        self.outbox: list[dict] = []
        self.known_rev: dict[str, int] = {}
        self.latest: dict[str, dict] = {}  # note id -> the last change this tablet made
        self.answered_rev: dict[str, int] = {}  # change id -> rev the server answered
        self.created: set[str] = set()
        self.cursor = None
        self.login()

    def login(self):
        self.client.post("/login", data={"username": self.username, "password": PASSWORD})

    def send(self, changes):
        return self.client.post(
            "/api/v1/sync",
            json={"device_id": self.device, "cursor": self.cursor, "changes": changes},
        )

    def take(self, body):
        """Process an answer the way the tablet's outbox does."""
        done = {
            r["change_id"]: r
            for r in body["results"]
            if r["status"] in ("applied", "duplicate", "conflict")
        }
        for change in list(self.outbox):
            result = done.get(change["change_id"])
            if result is None:
                continue
            self.outbox.remove(change)
            if result["rev"] is not None and result["status"] != "conflict":
                self.answered_rev[change["change_id"]] = result["rev"]
            if result["rev"] is not None:
                self.known_rev[change["id"]] = max(
                    self.known_rev.get(change["id"], 0), result["rev"]
                )
        for update in body["updates"]:
            if update["entity"] == "note" and update["rev"]:
                self.known_rev[update["id"]] = max(
                    self.known_rev.get(update["id"], 0), update["rev"]
                )
        self.cursor = body["cursor"]


class NothingLost(RuleBasedStateMachine):
    """Tablets writing notes while the network misbehaves."""

    def __init__(self):
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.app = create_app(make_config(Path(self.tmp.name)))
        with self.app.app_context():
            db.drop_all()
            db.create_all()
            load_all(db.session)
            seed_cases()
            case = db.session.scalars(select(Case).where(Case.code == "A")).one()
            peers = [
                User(username=n, role="peer", cases=[case], password_hash=hash_password(PASSWORD))
                for n in ("tab_one", "tab_two")
            ]
            db.session.add_all(peers)
            db.session.flush()
            participant = register(case, "nb", peers, None)
            interview = Interview(
                participant=participant,
                guide_version=db.session.scalars(select(GuideVersion)).first(),
                language="nb",
                planned_at=participant.created_at,
            )
            db.session.add(interview)
            db.session.commit()
            self.interview_id = interview.id
        self.tablets = [Tablet(self.app, "tab_one"), Tablet(self.app, "tab_two")]
        start_interview(self.tablets[0].client, self.interview_id)
        give_paper_consent(self.tablets[0].client, self.interview_id)
        self.counter = 0
        self.edits: list[dict] = []

    def teardown(self):
        with self.app.app_context():
            db.session.remove()
            db.drop_all()
            for engine in db.engines.values():
                engine.dispose()
        self.tmp.cleanup()

    def _text(self, who: int) -> str:
        self.counter += 1
        return f"tablet {who} text {self.counter} æøå"

    def _change(self, note_id, base_rev, data):
        return {
            "change_id": str(uuid.uuid4()),
            "entity": "note",
            "id": note_id,
            "base_rev": base_rev,
            "recorded_at": "2026-11-23T10:00:00Z",
            "data": data,
        }

    @rule(who=st.integers(0, 1))
    def create_note(self, who):
        tablet = self.tablets[who]
        note_id, text = str(uuid.uuid4()), self._text(who)
        change = self._change(
            note_id,
            None,
            {"interview_id": self.interview_id, "question_key": "context.services", "text": text},
        )
        tablet.outbox.append(change)
        tablet.created.add(note_id)
        tablet.latest[note_id] = change
        self.edits.append(change)

    @precondition(lambda self: any(t.known_rev for t in self.tablets))
    @rule(who=st.integers(0, 1), pick=st.integers(0, 50))
    def edit_note(self, who, pick):
        tablet = self.tablets[who]
        if not tablet.known_rev:
            return
        ids = sorted(tablet.known_rev)
        note_id = ids[pick % len(ids)]
        text = self._text(who)
        change = self._change(note_id, tablet.known_rev[note_id], {"text": text})
        tablet.outbox.append(change)
        tablet.latest[note_id] = change
        self.edits.append(change)

    @rule(who=st.integers(0, 1), fault=st.sampled_from(FAULTS))
    def sync(self, who, fault):
        tablet = self.tablets[who]
        batch = list(tablet.outbox)
        if fault == "lost_request":
            return
        if fault == "reversed":
            batch.reverse()
        if fault == "expired":
            tablet.client.post("/logout")
            assert tablet.send(batch).status_code == 401  # entries stay in the outbox
            tablet.login()
            return
        response = tablet.send(batch)
        assert response.status_code == 200, response.get_data(as_text=True)
        if fault == "lost_response":
            return
        if fault == "twice":
            response = tablet.send(batch)
            assert response.status_code == 200
        tablet.take(response.get_json())

    @invariant()
    def never_doubled(self):
        with self.app.app_context():
            ids = list(db.session.scalars(select(Note.id)))
            assert len(ids) == len(set(ids))

    def drain_and_check(self):
        """Deliver everything without faults, then check that no word is missing."""
        for _round in range(4):
            for tablet in self.tablets:
                if tablet.outbox:
                    tablet.take(tablet.send(list(tablet.outbox)).get_json())
        for tablet in self.tablets:
            assert tablet.outbox == [], tablet.outbox
        with self.app.app_context():
            notes = {n.id: n for n in db.session.scalars(select(Note))}
            created = set().union(*(t.created for t in self.tablets))
            assert set(notes) == created
            for tablet in self.tablets:
                for note_id, change in tablet.latest.items():
                    text = change["data"]["text"]
                    note = notes[note_id]
                    kept = [note.text] + (
                        (note.conflict or {}).get("text", "").split(CONFLICT_SEPARATOR)
                        if note.conflict
                        else []
                    )
                    if text in kept:
                        continue
                    # gone only if someone edited on top of it, having seen it
                    seen_at = tablet.answered_rev.get(change["change_id"])
                    assert seen_at is not None, (text, note.text, note.conflict)
                    assert any(
                        e["id"] == note_id
                        and e["base_rev"] is not None
                        and e["base_rev"] >= seen_at
                        and e is not change
                        for e in self.edits
                    ), (text, note.text, note.conflict)


def test_nothing_is_lost_whatever_the_network_does():
    class Checked(NothingLost):
        def teardown(self):
            try:
                self.drain_and_check()
            finally:
                super().teardown()

    from hypothesis.stateful import run_state_machine_as_test

    run_state_machine_as_test(
        Checked,
        settings=settings(
            max_examples=25,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
