"""A device id belongs to the first user who synced with it (issue 16).

Another user's sync under that id is refused whole with `409 {"code": "device"}` in the user's
language, before any change is applied or the store's row is touched, so nobody can take over
a tablet store's row and hide its `stale_tablet` or `lost_work` alerts. The owner keeps
syncing under it. A rescue file naming another user's store still brings its author's work in,
recorded under no store.
"""

import uuid

import pytest
from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import select

from interview.store.extensions import db
from interview.store.models import AuditEvent, Device, Note, SyncChange, User
from interview.sync.devices import DeviceOfAnother, record_device
from tests.conftest import PASSWORD, get_row
from tests.helpers import (
    changed_tables,
    consented_interview,
    note_change,
    post_sync,
    store_snapshot,
)
from tests.sync.test_openapi import check
from tests.sync.test_rescue import rescue_file, upload

MESSAGE = (
    "This tablet's id belongs to another person. Nothing was saved; your changes are kept on "
    "this tablet and are sent again under a new id."
)


def _login(client, username):
    client.post("/logout")
    assert (
        client.post("/login", data={"username": username, "password": PASSWORD}).status_code == 302
    )


def _device(app, device_id):
    with app.app_context():
        row = db.session.get(Device, device_id)
        if row is None:
            return None
        return {c.name: getattr(row, c.name) for c in Device.__table__.columns}


def _sync(client, changes, device, lang):
    return client.post(
        f"/api/v1/sync?lang={lang}",
        json={"device_id": device, "cursor": None, "pending": 0, "changes": changes},
    )


def _nb(message: str, app) -> str:
    with app.test_request_context("/"), force_locale("nb"):
        return _(message)


def test_another_users_device_id_is_refused_whole_in_their_language(app, client, world):
    iid_a = consented_interview(client, world, "peer_a", "pa")
    device = str(uuid.uuid4())
    first = post_sync(
        client, [note_change(iid_a, str(uuid.uuid4()), "Peer A sitt notat")], device=device
    )
    assert first.status_code == 200
    assert first.get_json()["results"][0]["status"] == "applied"
    owned = _device(app, device)
    assert owned["user_id"] == world.users["peer_a"]

    # peer A2 logs in and syncs under A's device id: refused, nothing of it kept
    client.post("/logout")
    iid_a2 = consented_interview(client, world, "peer_a2", "pa2")
    note_id = str(uuid.uuid4())
    change = note_change(iid_a2, note_id, "Peer A2 sitt notat")
    before = store_snapshot(app, volatile={"user": {"last_login_at", "ui_language"}})
    refused = {}
    for lang in ("en", "nb"):
        answer = _sync(client, [change], device, lang)
        assert answer.status_code == 409, answer.text
        refused[lang] = check("/api/v1/sync", "post", answer)
        assert refused[lang]["code"] == "device"
        assert refused[lang]["status"] == 409
    assert refused["en"]["error"] == MESSAGE
    assert refused["nb"]["error"] == _nb(MESSAGE, app)
    assert (
        changed_tables(
            before, store_snapshot(app, volatile={"user": {"last_login_at", "ui_language"}})
        )
        == []
    )
    with app.app_context():
        assert get_row(Note, note_id) is None
        assert db.session.get(SyncChange, change["change_id"]) is None
    assert _device(app, device) == owned

    # under a device id of their own the same change goes in, and each has their own row
    mine = str(uuid.uuid4())
    answer = post_sync(client, [change], device=mine)
    assert answer.status_code == 200
    assert answer.get_json()["results"][0]["status"] == "applied"
    with app.app_context():
        assert get_row(Note, note_id).text == "Peer A2 sitt notat"
        rows = {d.id: d.user_id for d in db.session.scalars(select(Device))}
    assert rows == {device: world.users["peer_a"], mine: world.users["peer_a2"]}

    # the owner keeps syncing under it
    _login(client, "peer_a")
    again = post_sync(client, [], device=device)
    assert again.status_code == 200
    assert _device(app, device)["user_id"] == world.users["peer_a"]
    assert _device(app, device)["last_sync_at"] >= owned["last_sync_at"]


def test_the_case_is_ignored_in_the_device_id(app, client, world):
    _login(client, "peer_a")
    device = str(uuid.uuid4())
    assert post_sync(client, [], device=device).status_code == 200
    _login(client, "peer_a2")
    answer = post_sync(client, [], device=device.upper())
    assert answer.status_code == 409
    assert answer.get_json()["code"] == "device"


def test_record_device_never_hands_a_row_to_another_user(app, world):
    device = str(uuid.uuid4())
    with app.app_context():
        peer_a = db.session.get(User, world.users["peer_a"])
        peer_a2 = db.session.get(User, world.users["peer_a2"])
        record_device(db.session, peer_a, device, 3, pending_interviews=[str(uuid.uuid4())])
        db.session.commit()
        with pytest.raises(DeviceOfAnother):
            record_device(db.session, peer_a2, device, 0)
        db.session.rollback()
        row = db.session.get(Device, device)
        assert (row.user_id, row.pending) == (peer_a.id, 3)


@pytest.fixture
def rescue_work(app, client, world):
    """peer_a's interview under way and a note of it waiting on the tablet (not synced)."""
    iid = consented_interview(client, world)
    return iid, [note_change(iid, str(uuid.uuid4()), "Reddet notat")]


def test_a_rescue_file_under_another_users_device_id_comes_in_under_no_store(
    app, client, world, rescue_work
):
    _iid, changes = rescue_work
    # made on a shared tablet before ids were kept per person: peer A2 synced last under it
    device = str(uuid.uuid4())
    _login(client, "peer_a2")
    assert post_sync(client, [], device=device).status_code == 200
    owned = _device(app, device)
    raw = rescue_file(app, world.users["peer_a"], changes, device=device)
    _login(client, "coord_a")
    answer = upload(client, raw)
    assert answer.status_code == 200, answer.text
    with app.app_context():
        note = get_row(Note, changes[0]["id"])
        assert (note.text, note.author_id) == ("Reddet notat", world.users["peer_a"])
        kept = db.session.get(SyncChange, changes[0]["change_id"])
        assert (kept.user_id, kept.device_id) == (world.users["peer_a"], None)
        audit = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "rescue_import")
        ).one()
        assert audit.detail["other_store"] is True
    # A2's store row is as it was: an import never touches device rows
    assert _device(app, device) == owned


def test_a_rescue_file_under_the_authors_own_device_id_keeps_it(app, client, world, rescue_work):
    _iid, changes = rescue_work
    device = str(uuid.uuid4())
    _login(client, "peer_a")
    assert post_sync(client, [], device=device).status_code == 200
    raw = rescue_file(app, world.users["peer_a"], changes, device=device)
    _login(client, "coord_a")
    assert upload(client, raw).status_code == 200
    with app.app_context():
        kept = db.session.get(SyncChange, changes[0]["change_id"])
        assert (kept.user_id, kept.device_id) == (world.users["peer_a"], device)
        audit = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "rescue_import")
        ).one()
        assert "other_store" not in audit.detail
