"""A withdrawal leaves nothing readable behind in SQLite's files, WAL included (issue 16, #4)."""

import os
import uuid
from pathlib import Path

import pytest
from flask.cli import FlaskGroup
from sqlalchemy import select

from interview.store.extensions import db
from interview.store.identity import set_identity
from interview.store.models import (
    ConsentSignature,
    Debrief,
    IdentityEntry,
    Interview,
    InterviewEvent,
    Note,
    SyncChange,
)
from tests.conftest import PASSWORD
from tests.helpers import note_change, park_change, post_sync, signature_data_url, start_interview
from tests.participants.test_withdrawal import (
    _change,
    _client_as,
    _newest_form_version,
    _post_withdrawal,
)

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("DATABASE_URL")),
    reason="scans SQLite's raw files; on PostgreSQL deleted tuples stay until VACUUM "
    "(docs/data-protection.md §8)",
)

# fictional, and unlike anything else in the store
NAME = "Gunnhild Tyttebærsen-Qvamme"
PHONE = "+47 419 87 263"
NOTE_FIRST = "Første notat: hun nevnte brødrene Skjærvø og en blå traktor"
NOTE_EDITED = "Endret notat: traktoren var grønn, sa hun, og naboen het Æsøy"
NOTE_SECOND = "Annet notat: bekymret for husleia i Kløverveien 17"
REFLECTION = "Refleksjon: samtalen om Kløverveien var tung for oss begge"
PARKED = "Parkert endring: hun ville legge til noe om Skjærvø-brødrene"
# held for a record that never reached the store: only its participant column names whose it is
NEVER_ARRIVED = "Ventet forgjeves: notatet om Lyngsalpene kom aldri fram"
TEXTS = [NAME, PHONE, NOTE_FIRST, NOTE_EDITED, NOTE_SECOND, REFLECTION, PARKED, NEVER_ARRIVED]

SEALED = [
    (IdentityEntry, ("name_enc", "contact_enc")),
    (ConsentSignature, ("printed_name_enc", "signature_enc")),
    (Note, ("text_enc", "conflict_enc")),
    (Debrief, ("reflection_enc", "conflict_enc")),
    (InterviewEvent, ("comment_enc",)),
    (SyncChange, ("payload_enc",)),
]


def _store_files(app) -> list[Path]:
    with app.app_context():
        bases = [Path(engine.url.database) for engine in db.engines.values()]
    return [
        Path(f"{base}{suffix}")
        for base in bases
        for suffix in ("", "-wal", "-shm")
        if Path(f"{base}{suffix}").exists()
    ]


def _sealed_values(app) -> list[bytes]:
    """Every sealed value in both stores, as stored."""
    with app.app_context():
        found = []
        for model, columns in SEALED:
            for column in columns:
                attr = getattr(model, column)
                found += [
                    bytes(v) for v in db.session.scalars(select(attr).where(attr.is_not(None)))
                ]
        return found


def _stored_data(app, world, client) -> str:
    """Identity, a signed consent, notes (one edited), a debrief and a parked change for pa."""
    pid, iid = world.participants["pa"], world.interviews["pa"]
    with app.app_context():
        set_identity(pid, NAME, PHONE)
        db.session.commit()
    client.post("/login", data={"username": "peer_a", "password": PASSWORD})
    start_interview(client, iid)
    consent = _change(
        "consent",
        str(uuid.uuid4()),
        {
            "interview_id": iid,
            "form_version": _newest_form_version(app),
            "language": "nb",
            "answers": {"participate": True, "audio": False, "quotes": True, "recontact": False},
            "method": "tablet",
            "signature": signature_data_url(),
            "printed_name": NAME,
        },
    )
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    debrief = _change(
        "debrief",
        str(uuid.uuid4()),
        {"interview_id": iid, "wellbeing": 3, "reflection": REFLECTION},
    )
    stop = _change(
        "event",
        str(uuid.uuid4()),
        {"interview_id": iid, "kind": "stop", "details": {"reason": "participant_wish"}},
    )
    changes = [consent, note_change(iid, first, NOTE_FIRST), note_change(iid, second, NOTE_SECOND)]
    answer = post_sync(client, changes).get_json()
    assert [r["status"] for r in answer["results"]] == ["applied"] * 3, answer
    edit = note_change(iid, first, NOTE_EDITED, base_rev=1)
    answer = post_sync(client, [edit, stop, debrief]).get_json()
    assert [r["status"] for r in answer["results"]] == ["applied"] * 3, answer
    # a change held until its record arrives keeps its words in a sealed payload
    park_change(app, world.users["peer_a"], iid, PARKED, digest="e" * 64)
    never = str(uuid.uuid4())
    park_change(
        app, world.users["peer_a"], never, NEVER_ARRIVED, digest="f" * 64, participant_id=pid
    )
    return pid


def _leftovers(files: list[Path], texts: list[str], sealed: list[bytes]) -> list[str]:
    found = []
    for path in files:
        data = path.read_bytes()
        found += [f"{path.name}: {t!r}" for t in texts if t.encode("utf-8") in data]
        # the nonce and the first ciphertext bytes name one sealed value and no other
        found += [f"{path.name}: sealed value {b[6:14].hex()}" for b in sealed if b[6:38] in data]
    return found


def test_withdrawal_leaves_no_name_phone_or_note_text_in_the_raw_files(app, world, client):
    pid = _stored_data(app, world, client)
    before = set(_sealed_values(app))
    with app.app_context():
        iids = list(db.session.scalars(select(Interview.id).where(Interview.participant_id == pid)))
        # as SQLite's own checkpoints do in use: the rows reach the database files themselves
        for engine in db.engines.values():
            with engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    coord = _client_as(app, "coord_a")
    response = _post_withdrawal(coord, pid, keep_identity="delete")
    assert response.status_code == 302

    # only the participant's values went; what was sealed for others is still there
    gone = before - set(_sealed_values(app))
    assert len(gone) >= 8  # name, phone, printed name, signature, 2 notes, debrief, parked
    files = _store_files(app)
    assert {p.name for p in files} >= {"casestore.db", "identity.db"}
    assert _leftovers(files, TEXTS, sorted(gone)) == []
    # the checkpoint finished: the WAL of both stores is empty
    assert all(p.stat().st_size == 0 for p in files if p.name.endswith("-wal"))

    with app.app_context():
        for model in (IdentityEntry, ConsentSignature):
            assert db.session.scalars(select(model).where(model.participant_id == pid)).all() == []
        for model in (Note, Debrief, InterviewEvent):
            assert db.session.scalars(select(model).where(model.interview_id.in_(iids))).all() == []
        held = db.session.scalars(select(SyncChange).where(SyncChange.digest == "e" * 64)).one()
        assert held.payload_enc is None and held.waiting_for is None


def test_secure_delete_is_on_for_both_stores(app):
    with app.app_context():
        for engine in db.engines.values():
            with engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA secure_delete").scalar() == 1


def test_keys_rotate_empties_the_wal_of_the_store_it_resealed(app, world):
    group = FlaskGroup(create_app=lambda: app, load_dotenv=False, set_debug_flag=False)
    result = app.test_cli_runner().invoke(cli=group, args=["keys", "rotate", "--ring", "research"])
    assert result.exit_code == 0, result.output
    wal = [p for p in _store_files(app) if p.name == "casestore.db-wal"]
    assert wal and wal[0].stat().st_size == 0
