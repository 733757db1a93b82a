"""Rescue copies: a tablet's waiting work, sealed to the study key, imported on the desk.

The file is made here as the tablet makes it (`seal_box` around the rescue token, the store's
id and the sync changes). An import applies the changes as the peer who made them, through the
sync rules, once: a second import, or one after the tablet synced, finds only duplicates. A
file that is not a rescue file, does not open, carries a token this store did not sign, or
belongs to someone outside the coordinator's teams is refused with nothing applied.
"""

import io
import json
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from interview.store.extensions import db
from interview.store.models import AuditEvent, Note
from interview.sync.rescue import MAX_RESCUE_CHANGES, rescue_token
from interview.trust import study_key
from interview.trust.sealed_box import seal_box
from interview.trust.study_key import StudyKey, new_private_key
from tests.conftest import PASSWORD, csrf_from
from tests.helpers import changed_tables, consented_interview, note_change, post_sync
from tests.helpers import store_snapshot as _snapshot

FOREIGN = StudyKey(new_private_key())
TEXTS = ("Hjelpen kom for sent, sa hun.", "Teamet ringte hver uke.")


def snapshot(app):
    """Every table but the audit trail and the language a ?lang= remembers on the user."""
    return _snapshot(app, skip={"audit_event"}, volatile={"user": {"last_login_at", "ui_language"}})


def rescue_file(app, user_id, changes, *, key=None, token=None, device=None, **outer) -> bytes:
    """A rescue file as the tablet makes it."""
    device = device or str(uuid.uuid4())
    with app.app_context():
        key = key or study_key.current()
    if token is None:
        token = rescue_token(app.secret_key, user_id)
    box = seal_box({"token": token, "device_id": device, "changes": changes}, key)
    body = {
        "format": "fact-rescue",
        "v": 1,
        "made_at": "2026-11-24T09:15:00.000Z",
        "store_id": device,
        "count": len(changes),
        "box": box,
    }
    body.update(outer)
    return json.dumps(body).encode()


def upload(client, raw: bytes, lang="en", **extra):
    data = {"file": (io.BytesIO(raw), "fact-rescue.json"), **extra}
    return client.post(f"/desk/rescue/?lang={lang}", data=data, content_type="multipart/form-data")


def _login(client, username):
    client.post("/logout")
    assert (
        client.post("/login", data={"username": username, "password": PASSWORD}).status_code == 302
    )


@pytest.fixture
def work(app, client, world):
    """peer_a's interview under way and two notes of it waiting on the tablet (not synced)."""
    iid = consented_interview(client, world)
    changes = [note_change(iid, str(uuid.uuid4()), text) for text in TEXTS]
    _login(client, "coord_a")
    return iid, changes


def _notes(app):
    with app.app_context():
        return sorted((n.text, n.author_id) for n in db.session.scalars(select(Note)))


def test_a_rescue_file_applies_once_as_the_peer_and_is_audited(app, client, world, work):
    _iid, changes = work
    device = str(uuid.uuid4())
    raw = rescue_file(app, world.users["peer_a"], changes, device=device)
    page = client.get("/desk/rescue/?lang=en")
    assert page.status_code == 200 and 'enctype="multipart/form-data"' in page.text
    answer = upload(client, raw)
    assert answer.status_code == 200, answer.text
    assert "2 changes from peer_a's tablet" in answer.text
    assert 'Saved on the tablet: <time datetime="2026-11-24T09:15:00Z">' in answer.text
    assert _row(answer.text, "Added to the case store") == "2"
    assert _row(answer.text, "Already in the case store") == "0"
    # the peer's words, under the peer's name
    assert _notes(app) == sorted((t, world.users["peer_a"]) for t in TEXTS)
    with app.app_context():
        audit = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "rescue_import")
        ).one()
        assert audit.user_id == world.users["coord_a"]
        assert (audit.object_type, audit.object_id) == ("user", str(world.users["peer_a"]))
        assert audit.detail["applied"] == 2 and audit.detail["changes"] == 2
        assert audit.detail["store"] == device
        assert not any(t in json.dumps(audit.detail, ensure_ascii=False) for t in TEXTS)

    # the same file again: every change is already there, nothing changes
    before = snapshot(app)
    again = upload(client, raw)
    assert again.status_code == 200
    assert _row(again.text, "Already in the case store") == "2"
    assert _row(again.text, "Added to the case store") == "0"
    assert changed_tables(before, snapshot(app)) == []


def _row(html: str, heading: str) -> str:
    part = html.split(f'<th scope="row">{heading}</th><td class="num">', 1)[1]
    return part.split("<", 1)[0]


def test_after_the_tablet_synced_the_file_changes_nothing(app, client, world, work):
    _iid, changes = work
    raw = rescue_file(app, world.users["peer_a"], changes)
    _login(client, "peer_a")
    assert [r["status"] for r in post_sync(client, changes).get_json()["results"]] == [
        "applied",
        "applied",
    ]
    _login(client, "coord_a")
    before = snapshot(app)
    answer = upload(client, raw)
    assert _row(answer.text, "Already in the case store") == "2"
    assert changed_tables(before, snapshot(app)) == []


def test_every_outcome_is_counted_with_its_reasons(app, client, world, work):
    iid, changes = work
    note_id = changes[0]["id"]
    stale = [
        note_change(iid, note_id, "second words", base_rev=1),
        note_change(iid, note_id, "other words", base_rev=1),
    ]
    # an edit before its note in the same file waits for it and is added with it; an edit
    # for a note the file never creates is refused (docs/sync.md, rule 6)
    later_id = str(uuid.uuid4())
    later = note_change(iid, later_id, "an edit before its note", base_rev=1)
    its_note = note_change(iid, later_id, "the note itself")
    orphan = note_change(iid, str(uuid.uuid4()), "an edit of a note never sent", base_rev=1)
    foreign = note_change(world.interviews["pb"], str(uuid.uuid4()), "not peer_a's")
    broken = {"change_id": "nope"}
    raw = rescue_file(
        app,
        world.users["peer_a"],
        [*changes, *stale, later, its_note, orphan, foreign, broken],
    )
    answer = upload(client, raw)
    assert answer.status_code == 200
    assert _row(answer.text, "Added to the case store") == "5"
    assert _row(answer.text, "Kept as a second version beside another one") == "1"
    assert _row(answer.text, "Kept until the interview or note it belongs to arrives") == "0"
    assert _row(answer.text, "Refused") == "3"
    assert "Why changes were refused" in answer.text
    assert "change_id must be a UUID (1)" in answer.text
    assert "the record this change belongs to is not in the case store (1)" in answer.text
    assert "not peer_a" not in answer.text  # the reasons never repeat the words


def test_a_file_of_someone_outside_my_teams_is_refused(app, client, world, work):
    _iid, changes = work
    raw = rescue_file(app, world.users["peer_a"], changes)
    _login(client, "coord_b")
    before = snapshot(app)
    answer = upload(client, raw)
    assert answer.status_code == 403
    assert "outside the FACT teams you coordinate" in answer.text
    assert changed_tables(before, snapshot(app)) == []
    # an admin may import anyone's
    _login(client, "admin")
    assert _row(upload(client, raw).text, "Added to the case store") == "2"


def test_a_peer_cannot_import(app, client, world, work):
    _iid, changes = work
    raw = rescue_file(app, world.users["peer_a"], changes)
    _login(client, "peer_a")
    assert client.get("/desk/rescue/").status_code == 403
    before = snapshot(app)
    assert upload(client, raw).status_code == 403
    assert changed_tables(before, snapshot(app)) == []


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("another store's token", "not made by a user of this case store"),
        ("a changed token", "not made by a user of this case store"),
        ("no token", "not made by a user of this case store"),
        ("a user that is gone", "not made by a user of this case store"),
        ("another study key", "could not be opened"),
        ("a changed box", "could not be opened"),
    ],
)
def test_a_file_that_does_not_prove_its_author_is_refused(app, client, world, work, how, message):
    _iid, changes = work
    peer = world.users["peer_a"]
    token = None
    key = None
    if how == "another store's token":
        token = rescue_token("another secret", peer)
    elif how == "a changed token":
        good = rescue_token(app.secret_key, peer)
        token = rescue_token(app.secret_key, world.users["peer_b"]).split(".")[0] + good[-28:]
    elif how == "no token":
        token = ""
    elif how == "a user that is gone":
        token = rescue_token(app.secret_key, 99_999)
    elif how == "another study key":
        key = FOREIGN
    raw = rescue_file(app, peer, changes, token=token, key=key)
    if how == "a changed box":
        body = json.loads(raw)
        data = body["box"]["data"]
        # another first character, always (one box in 64 began with "A" and stayed the same)
        body["box"]["data"] = ("B" if data[0] == "A" else "A") + data[1:]
        raw = json.dumps(body).encode()
    before = snapshot(app)
    answer = upload(client, raw)
    assert answer.status_code == 400
    assert message in answer.text and "Nothing was imported" in answer.text
    assert changed_tables(before, snapshot(app)) == []


GARBAGE = [
    b"",
    b"not json at all",
    b"\xff\xfe\x00{",
    b"[]",
    b"null",
    b'{"format": "fact-rescue"}',
    b'{"format": "fact-rescue", "v": 1, "made_at": "x", "store_id": "x", "box": {}}',
    b'{"a": NaN}',
    b"[" * 50_000 + b"]" * 50_000,
    json.dumps({"format": "fact-rescue", "v": 2}).encode(),
    "\ud800".encode("utf-8", "surrogatepass"),
]


@pytest.mark.parametrize("raw", GARBAGE, ids=range(len(GARBAGE)))
def test_garbage_is_a_clear_400_never_a_500(app, client, world, work, raw):
    before = snapshot(app)
    answer = upload(client, raw)
    assert answer.status_code == 400
    assert "Nothing was imported" in answer.text
    assert changed_tables(before, snapshot(app)) == []


@pytest.mark.parametrize(
    "outer",
    [{"v": True}, {"format": "fact-backup"}, {"store_id": "x"}, {"made_at": 5}, {"box": "x"}],
)
def test_a_wrong_outer_field_is_not_a_rescue_file(app, client, world, work, outer):
    _iid, changes = work
    answer = upload(client, rescue_file(app, world.users["peer_a"], changes, **outer))
    assert answer.status_code == 400
    assert "not a rescue file" in answer.text


def test_more_than_twenty_thousand_changes_is_refused(app, client, world, work):
    many = [{} for _ in range(MAX_RESCUE_CHANGES + 1)]
    answer = upload(client, rescue_file(app, world.users["peer_a"], many))
    assert answer.status_code == 400
    assert "more than 20,000 changes" in answer.text


def test_no_file_or_text_in_its_place_is_a_form_error(app, client, world, work):
    no_file = client.post("/desk/rescue/?lang=en", data={}, content_type="multipart/form-data")
    assert no_file.status_code == 400
    assert "Choose the rescue file the tablet saved." in no_file.text
    text = client.post("/desk/rescue/?lang=en", data={"file": "{}"})
    assert text.status_code == 400


def test_a_file_over_twenty_megabytes_is_a_clear_413(app, client, world, work):
    answer = upload(client, b" " * (21 * 1024 * 1024))
    assert answer.status_code == 413
    assert "at most 20 MB can be sent here" in answer.text


def test_a_stranger_is_cut_off_at_the_usual_limit(app, world):
    stranger = app.test_client()
    answer = upload(stranger, b" " * (3 * 1024 * 1024))
    assert answer.status_code == 413


def test_the_import_needs_the_csrf_token(app, client, world, work):
    _iid, changes = work
    raw = rescue_file(app, world.users["peer_a"], changes)
    app.config["WTF_CSRF_ENABLED"] = True
    before = snapshot(app)
    refused = upload(client, raw)
    assert refused.status_code == 400
    assert changed_tables(before, snapshot(app)) == []
    token = csrf_from(client.get("/desk/rescue/").text)
    answer = upload(client, raw, csrf_token=token)
    assert answer.status_code == 200
    assert _row(answer.text, "Added to the case store") == "2"


def test_the_page_speaks_norwegian(app, client, world, work):
    answer = client.get("/desk/rescue/?lang=nb")
    assert answer.status_code == 200
    assert 'lang="nb"' in answer.text


ANYTHING = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(st.characters(codec=None), max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(st.characters(codec=None), max_size=8), inner, max_size=4)
    ),
    max_leaves=15,
)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzzed_rescue_files_never_500(app, world, data):
    client = app.test_client()
    client.post("/login", data={"username": "coord_a", "password": PASSWORD})
    token = rescue_token(app.secret_key, world.users["peer_a"])
    inside = data.draw(
        st.one_of(
            ANYTHING,
            st.fixed_dictionaries(
                {
                    "token": st.one_of(st.just(token), ANYTHING),
                    "device_id": st.one_of(st.just(str(uuid.uuid4())), ANYTHING),
                    "changes": st.lists(ANYTHING, max_size=5),
                }
            ),
        ),
        label="inside",
    )
    with app.app_context():
        box = seal_box(inside, study_key.current())
    body = {
        "format": "fact-rescue",
        "v": 1,
        "made_at": "2026-11-24T09:15:00Z",
        "store_id": str(uuid.uuid4()),
        "count": 1,
        "box": box,
    }
    answer = upload(client, json.dumps(body).encode())
    assert answer.status_code in (200, 400, 403), answer.text[:300]


def test_a_busy_store_stops_the_import_and_a_second_import_finishes_it(
    app, client, world, work, monkeypatch
):
    from sqlalchemy.exc import OperationalError

    from interview.sync import rescue

    iid, _changes = work
    changes = [note_change(iid, str(uuid.uuid4()), f"note {n}") for n in range(501)]
    raw = rescue_file(app, world.users["peer_a"], changes)
    real = rescue.apply_changes
    calls = []

    def busy_the_second_time(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        return real(*args, **kwargs)

    monkeypatch.setattr(rescue, "apply_changes", busy_the_second_time)
    first = upload(client, raw)
    assert first.status_code == 200
    assert _row(first.text, "Added to the case store") == "500"
    assert "Import the same file again" in first.text
    monkeypatch.setattr(rescue, "apply_changes", real)
    again = upload(client, raw)
    assert _row(again.text, "Already in the case store") == "500"
    assert _row(again.text, "Added to the case store") == "1"
    assert len(_notes(app)) == 501
