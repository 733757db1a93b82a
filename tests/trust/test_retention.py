"""Retention (issue 18): `flask retention run` removes old sync bookkeeping that nothing needs
any more, clears deleted notes' words, says what it removed, audits the counts, and changes no
tablet's answer, whatever its cursor (docs/sync.md, Retention)."""

import uuid
from datetime import timedelta

import pytest
from flask.cli import FlaskGroup
from sqlalchemy import func, select, text, update

from interview.store.extensions import db
from interview.store.models import (
    AuditEvent,
    Device,
    Note,
    SyncChange,
    UpdateLog,
    User,
    utcnow,
)
from interview.sync.log import updates_since
from interview.trust.retention import run_retention
from tests.conftest import get_row
from tests.helpers import consented_interview, note_change, post_sync

OLD = timedelta(days=200)


@pytest.fixture
def cli(app, runner):
    """Run a command the way `flask ...` runs it."""
    group = FlaskGroup(create_app=lambda: app, load_dotenv=False, set_debug_flag=False)

    def invoke(args, input=None):
        return runner.invoke(cli=group, args=args, input=input)

    return invoke


def _user_id(username: str) -> int:
    return db.session.scalar(select(User.id).where(User.username == username))


def _change(user_id, device_id, received_at, **extra) -> str:
    change_id = str(uuid.uuid4())
    values = {"status": "applied", "rev": 1} | extra
    db.session.add(
        SyncChange(
            change_id=change_id,
            user_id=user_id,
            device_id=device_id,
            entity="note",
            record_id=str(uuid.uuid4()),
            digest="0" * 64,
            received_at=received_at,
            **values,
        )
    )
    return change_id


def _device(user_id, last_sync_at, pending=0, **extra) -> str:
    device_id = str(uuid.uuid4())
    db.session.add(
        Device(id=device_id, user_id=user_id, last_sync_at=last_sync_at, pending=pending, **extra)
    )
    return device_id


def test_answered_changes_silent_tablets_and_superseded_log_rows_go(app, world):
    now = utcnow()
    old = now - OLD
    with app.app_context():
        peer = _user_id("peer_a")
        synced = _device(peer, now - timedelta(hours=1))  # synced since, nothing pending
        holding = _device(peer, now - timedelta(hours=1), pending=3)
        silent = _device(peer, old)  # nothing pending, silent for long: goes
        stale = _device(peer, old, pending=2)  # still holds work: the alert needs it
        lost = _device(peer, old, lost_at=old, replaced_by=synced)
        gone = {
            "answered": _change(peer, synced, old),
            "told": _change(
                peer, synced, old, status="rejected", rev=None, refused_at=old, told_at=old
            ),
            "form": _change(peer, None, old),
            "silent tablet's untold refusal": _change(
                peer, silent, old, status="rejected", rev=None, refused_at=old
            ),
            "never seen tablet": _change(peer, str(uuid.uuid4()), old),
        }
        kept = {
            "young": _change(peer, synced, now - timedelta(days=10)),
            "tablet still holds work": _change(peer, holding, old),
            "waiting": _change(peer, synced, old, rev=None, waiting_for=str(uuid.uuid4())),
            "untold refusal": _change(
                peer, synced, old, status="rejected", rev=None, refused_at=old
            ),
        }
        # update log: r1 changed three times (two of them long ago), r2 once, r3 twice lately
        # (after the rows the world's records wrote, all of them recent)
        base = db.session.scalar(select(func.max(UpdateLog.seq))) or 0
        r1, r2, r3 = (str(uuid.uuid4()) for _ in range(3))
        rows = [(1, r1, old), (2, r1, old), (3, r2, old), (4, r3, now), (5, r1, now), (6, r3, now)]
        for seq, record, at in rows:
            db.session.add(UpdateLog(seq=base + seq, entity="note", record_id=record, at=at))
        db.session.commit()

        report = run_retention(db.session, now=now)
        db.session.commit()
        assert (report.sync_changes, report.devices, report.update_log) == (5, 1, 2)
        left = set(db.session.scalars(select(SyncChange.change_id)))
        assert left == set(kept.values()), {k for k, v in gone.items() if v in left}
        assert set(db.session.scalars(select(Device.id))) == {synced, holding, stale, lost}
        mine = select(UpdateLog.seq).where(UpdateLog.seq > base).order_by(UpdateLog.seq)
        assert [seq - base for seq in db.session.scalars(mine)] == [3, 4, 5, 6]
        audit = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "retention_run")
        ).one()
        assert audit.detail == {
            "days": 90,
            "notes_cleared": 0,
            "waiting_refused": 0,
            "sync_changes": 5,
            "devices": 1,
            "update_log": 2,
        }

        # idempotent: the second run finds nothing, and says so in its audit row too
        again = run_retention(db.session, now=now)
        db.session.commit()
        assert again.removed == 0


def test_the_period_is_a_setting(app, world):
    now = utcnow()
    with app.app_context():
        peer = _user_id("peer_a")
        device = _device(peer, now)
        change = _change(peer, device, now - timedelta(days=20))
        db.session.commit()
        assert run_retention(db.session, now=now).sync_changes == 0
        app.config["RETENTION_SYNC_DAYS"] = 14
        assert run_retention(db.session, now=now).sync_changes == 1
        assert db.session.get(SyncChange, change) is None
        app.config["RETENTION_SYNC_DAYS"] = 0
        with pytest.raises(ValueError):
            run_retention(db.session, now=now)


def test_deleted_notes_that_kept_their_words_are_cleared(app, world, client):
    iid = consented_interview(client, world)
    deleted, live = str(uuid.uuid4()), str(uuid.uuid4())
    post_sync(
        client, [note_change(iid, deleted, "Ola ringer 912 34 567"), note_change(iid, live, "Blir")]
    )
    with app.app_context():
        # as a note deleted before this release was left: marked deleted, words still there
        db.session.execute(update(Note).where(Note.id == deleted).values(deleted_at=utcnow()))
        db.session.commit()
        report = run_retention(db.session)
        db.session.commit()
        assert report.notes_cleared == 1
        raw = db.session.execute(
            text("SELECT text_enc, conflict_enc, identifier_kinds FROM note WHERE id = :id"),
            {"id": deleted},
        ).one()
        assert tuple(raw) == (None, None, None)
        assert get_row(Note, live).text == "Blir"
        assert run_retention(db.session).notes_cleared == 0


def _answers(app, username: str, cursors) -> dict:
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == username))
        return {c: updates_since(db.session, user, c) for c in cursors}


def test_no_cursor_gets_another_answer_after_the_log_is_compacted(app, world, client):
    iid = consented_interview(client, world)
    notes = [str(uuid.uuid4()) for _ in range(4)]
    post_sync(client, [note_change(iid, n, f"Notat {i}") for i, n in enumerate(notes)])
    for rev in range(1, 4):
        post_sync(client, [note_change(iid, notes[0], f"Ny tekst {rev}", base_rev=rev)])
    post_sync(client, [note_change(iid, notes[1], "", base_rev=1, deleted=True)])
    post_sync(client, [note_change(iid, notes[2], "Senere", base_rev=1)])
    with app.app_context():
        db.session.execute(update(UpdateLog).values(at=utcnow() - OLD))
        db.session.commit()
        top = db.session.scalar(select(func.max(UpdateLog.seq)))
        before_rows = db.session.scalar(select(func.count()).select_from(UpdateLog))
    cursors = [None, *range(0, top + 1)]
    before = {u: _answers(app, u, cursors) for u in ("peer_a", "coord_a", "coord_b")}
    with app.app_context():
        removed = run_retention(db.session).update_log
        db.session.commit()
        after_rows = db.session.scalar(select(func.count()).select_from(UpdateLog))
    assert removed > 0 and after_rows == before_rows - removed
    after = {u: _answers(app, u, cursors) for u in ("peer_a", "coord_a", "coord_b")}
    assert after == before
    # and through the API: a tablet whose cursor is older than everything removed
    answer = post_sync(client, [], cursor=0).get_json()
    seen = {u["id"]: u for u in answer["updates"] if u["entity"] == "note"}
    assert set(seen) == set(notes)
    assert seen[notes[0]]["data"]["text"] == "Ny tekst 3"
    assert seen[notes[1]]["data"]["deleted"] is True


def test_the_command_reports_counts_in_the_terminals_language(app, world, cli, monkeypatch):
    now = utcnow()
    with app.app_context():
        peer = _user_id("peer_a")
        device = _device(peer, now)
        for _ in range(2):
            _change(peer, device, now - OLD)
        db.session.commit()
    for name in ("LC_ALL", "LC_MESSAGES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANG", "en_GB.UTF-8")
    first = cli(["retention", "run"])
    assert first.exit_code == 0, first.output
    assert "older than 90 days" in first.output
    assert "2 answered sync changes removed" in first.output
    assert "0 changes waiting for deleted notes refused" in first.output
    assert "0 silent tablet stores removed" in first.output
    second = cli(["retention", "run"])
    assert "Nothing was left to remove." in second.output
    monkeypatch.setenv("LANG", "nb_NO.UTF-8")
    norsk = cli(["retention", "run"])
    assert norsk.exit_code == 0, norsk.output
    assert "eldre enn 90 dager" in norsk.output
    assert "Ingenting var igjen å fjerne." in norsk.output
    with app.app_context():
        runs = db.session.scalars(
            select(AuditEvent.detail).where(AuditEvent.action == "retention_run")
        ).all()
        assert [d["sync_changes"] for d in runs] == [2, 0, 0]


def test_a_change_left_waiting_for_a_deleted_note_is_refused_and_its_words_dropped(
    app, world, client
):
    iid = consented_interview(client, world)
    nid, device = str(uuid.uuid4()), str(uuid.uuid4())
    post_sync(client, [note_change(iid, nid, "Første ord")], device=device)
    post_sync(client, [note_change(iid, nid, "", base_rev=1, deleted=True)], device=device)
    left = str(uuid.uuid4())
    with app.app_context():
        # what a release the server failed in leaves behind: an edit of this note still waiting
        db.session.add(
            SyncChange(
                change_id=left,
                user_id=_user_id("peer_a"),
                device_id=device,
                entity="note",
                record_id=nid,
                digest="0" * 64,
                status="applied",
                waiting_for=nid,
                payload=note_change(iid, nid, "Ord som ventet", base_rev=1),
                participant_id=world.participants["pa"],
            )
        )
        db.session.commit()
        assert run_retention(db.session).waiting_refused == 1
        db.session.commit()
        row = get_row(SyncChange, left)
        assert row.payload_enc is None and row.waiting_for is None
        assert row.status == "rejected" and row.refused_at is not None
        assert run_retention(db.session).waiting_refused == 0
    told = post_sync(client, [], device=device).get_json()
    assert [r["change_id"] for r in told.get("refused", [])] == [left]
