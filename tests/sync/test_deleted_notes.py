"""A deleted note loses its words at once (issue 18): the row stays as a tombstone with its
rev, so tablets learn the deletion, a replay gets its first answer and an edit made before the
delete comes back flagged with its own words (docs/sync.md); nothing readable of the deleted
words is left in the case store, read column by column."""

import uuid

from sqlalchemy import select, text

from interview.store.crypto import open_sealed, research_key
from interview.store.extensions import db
from interview.store.models import Note, SyncChange
from interview.trust.keys import RINGS
from tests.conftest import PASSWORD, get_row
from tests.helpers import consented_interview, note_change, post_sync

SECTION = "/interviews/{}/section/0"
WORDS = "Kari bor i Storgata 5, ring 912 34 567"
OTHER = "Hun sa noe annet om bussen"
LATE = "Skrevet før slettingen kom fram"


def _raw_note(note_id: str) -> dict:
    row = db.session.execute(
        text(
            "SELECT text_enc, conflict_enc, identifier_kinds, deleted_at, rev "
            "FROM note WHERE id = :id"
        ),
        {"id": note_id},
    ).one()
    return dict(row._mapping)


def _every_sealed_value() -> list[str]:
    """Open every research-sealed value in the case store, read straight from its column."""
    ring = research_key()
    out = []
    for col in RINGS["research"]:
        table = col.model.__table__
        for key, blob in db.session.execute(
            select(table.c[col.key], table.c[col.column]).where(table.c[col.column].is_not(None))
        ):
            out.append(open_sealed(ring, bytes(blob), col.context(key)))
    return out


def _words_gone(*phrases: str) -> None:
    plain = "\n".join(_every_sealed_value())
    for phrase in phrases:
        assert phrase not in plain


def _login(app, username: str):
    other = app.test_client()
    other.post("/login", data={"username": username, "password": PASSWORD})
    return other


def test_a_note_deleted_on_a_tablet_keeps_no_words_and_a_tombstone(app, world, client):
    iid = consented_interview(client, world)
    tablet_a, tablet_b = str(uuid.uuid4()), str(uuid.uuid4())
    nid = str(uuid.uuid4())
    assert post_sync(client, [note_change(iid, nid, OTHER)], device=tablet_a).status_code == 200
    coordinator = _login(app, "coord_a")
    watcher_cursor = post_sync(coordinator, []).get_json()["cursor"]
    # two tablets edit at once: the second one's words wait beside the first's
    edits = [
        post_sync(client, [note_change(iid, nid, WORDS, base_rev=1)], device=tablet_b),
        post_sync(client, [note_change(iid, nid, OTHER + " igjen", base_rev=1)], device=tablet_a),
    ]
    assert [e.get_json()["results"][0]["status"] for e in edits] == ["applied", "conflict"]
    with app.app_context():
        note = get_row(Note, nid)
        assert note.conflict_text and note.identifier_kinds and note.rev == 3

    # the tablet deletes by emptying the box: the text goes empty and the note is deleted
    delete = note_change(iid, nid, "", base_rev=3, deleted=True)
    answer = post_sync(client, [delete], device=tablet_b).get_json()["results"][0]
    assert answer["status"] == "applied" and answer["rev"] == 4

    with app.app_context():
        raw = _raw_note(nid)
        assert raw["text_enc"] is None and raw["conflict_enc"] is None
        assert raw["identifier_kinds"] is None
        assert raw["deleted_at"] is not None and raw["rev"] == 4
        payloads = db.session.execute(
            text("SELECT count(*) FROM sync_change WHERE payload_enc IS NOT NULL")
        ).scalar()
        assert payloads == 0
        _words_gone(WORDS, "Storgata", OTHER)

    # a tablet that syncs later learns the deletion, without words
    later = post_sync(coordinator, [], cursor=watcher_cursor).get_json()
    mine = [u for u in later["updates"] if u["id"] == nid]
    assert mine and mine[0]["rev"] == 4
    assert mine[0]["data"]["deleted"] is True and mine[0]["data"]["text"] == ""
    assert mine[0]["data"]["conflict"] is None

    # the delete sent again gets its first answer
    again = post_sync(client, [delete], device=tablet_b).get_json()["results"][0]
    assert again == {"change_id": delete["change_id"], "status": "duplicate", "rev": 4}

    # an edit made before the delete arrives late: the note comes back, flagged, with those
    # words beside an empty text, as a delete against an edit does (docs/sync.md)
    late = post_sync(client, [note_change(iid, nid, LATE, base_rev=3)], device=tablet_a)
    assert late.get_json()["results"][0]["status"] == "conflict"
    with app.app_context():
        note = get_row(Note, nid)
        assert note.deleted_at is None and note.text == "" and note.conflict_text == LATE
        _words_gone(WORDS, OTHER)
    assert LATE in client.get("/interviews/conflicts").text


def test_a_note_deleted_with_the_section_form_keeps_no_words(app, world, client):
    iid = consented_interview(client, world)
    nid = str(uuid.uuid4())
    post_sync(client, [note_change(iid, nid, WORDS)])
    form = {f"note-{nid}-text": "", f"note-{nid}-rev": "1", "go": "stay"}
    assert client.post(SECTION.format(iid), data=form).status_code == 302
    with app.app_context():
        raw = _raw_note(nid)
        assert raw["text_enc"] is None and raw["conflict_enc"] is None
        assert raw["identifier_kinds"] is None and raw["deleted_at"] is not None
        _words_gone(WORDS, "Storgata")
    page = client.get(SECTION.format(iid)).text
    assert "Storgata" not in page

    # the form deleted only the note, yet its text went with it: an edit from before the
    # delete meets it as a conflict and brings the note back flagged, never silently lost
    late = post_sync(client, [note_change(iid, nid, LATE, base_rev=1)])
    assert late.get_json()["results"][0]["status"] == "conflict"
    with app.app_context():
        note = get_row(Note, nid)
        assert note.deleted_at is None and note.conflict_text == LATE


def test_a_tag_edit_of_a_deleted_note_leaves_it_deleted_and_wordless(app, world, client):
    iid = consented_interview(client, world)
    nid = str(uuid.uuid4())
    post_sync(client, [note_change(iid, nid, WORDS)])
    post_sync(client, [note_change(iid, nid, "", base_rev=1, deleted=True)])
    tag = {
        "change_id": str(uuid.uuid4()),
        "entity": "note",
        "id": nid,
        "base_rev": 1,
        "recorded_at": "2026-11-23T10:00:00Z",
        "data": {"polarity": "promotes"},
    }
    assert post_sync(client, [tag]).get_json()["results"][0]["status"] == "applied"
    with app.app_context():
        raw = _raw_note(nid)
        assert raw["deleted_at"] is not None and raw["text_enc"] is None


def test_a_note_created_deleted_is_stored_without_words(app, world, client):
    iid = consented_interview(client, world)
    nid = str(uuid.uuid4())
    answer = post_sync(client, [note_change(iid, nid, WORDS, deleted=True)]).get_json()
    assert answer["results"][0]["status"] == "applied"
    with app.app_context():
        raw = _raw_note(nid)
        assert raw["deleted_at"] is not None
        assert raw["text_enc"] is None and raw["identifier_kinds"] is None


def test_a_delete_that_waited_for_its_note_applies_and_keeps_no_words(app, world, client):
    iid = consented_interview(client, world)
    nid, device = str(uuid.uuid4()), str(uuid.uuid4())
    # the delete is sent before the create (the tablet's order is not the store's): it waits,
    # is released when the note arrives, and the later edit meets the tombstone
    changes = [
        note_change(iid, nid, "", base_rev=1, deleted=True),
        note_change(iid, nid, WORDS),
    ]
    results = post_sync(client, changes, device=device).get_json()["results"]
    assert [r["status"] for r in results] == ["applied", "applied"]
    assert results[0]["rev"] == 2
    with app.app_context():
        raw = _raw_note(nid)
        assert raw["deleted_at"] is not None and raw["text_enc"] is None
        rows = db.session.scalars(select(SyncChange).where(SyncChange.record_id == nid)).all()
        assert len(rows) == 2
        assert all(r.payload_enc is None and r.waiting_for is None for r in rows)
        assert all(r.refused_at is None for r in rows)
        _words_gone(WORDS, "Storgata")
    assert "refused" not in post_sync(client, [], device=device).get_json()
