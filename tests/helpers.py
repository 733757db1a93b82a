"""Small helpers shared by the flow tests."""

import base64
import copy
import hashlib
import io
import json
import re
import uuid
from datetime import datetime

from PIL import Image, ImageDraw
from sqlalchemy import event, select

from interview.field.notes import new_note_id
from interview.store.extensions import db


def signature_data_url() -> str:
    """Return a PNG data URL with a drawn stroke, as the signature pad would send."""
    img = Image.new("RGBA", (300, 100), (0, 0, 0, 0))
    ImageDraw.Draw(img).line([(10, 80), (120, 20), (280, 70)], fill=(0, 0, 0, 255), width=3)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def blank_signature_data_url() -> str:
    """Return a PNG data URL of an empty canvas."""
    img = Image.new("RGBA", (300, 100), (0, 0, 0, 0))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


CONSENT_ALL_YES = {
    "item-participate": "yes",
    "item-audio": "no",
    "item-quotes": "yes",
    "item-recontact": "yes",
}


def page_load(page_text: str) -> str:
    """Return a section page's load id, as a browser without JavaScript sends it back."""
    found = re.search(
        r'<input type="hidden" name="load" value="([0-9a-f-]+)" form="section-form">', page_text
    )
    assert found, "the section page carries no load id"
    return found.group(1)


def new_note_on_page(page_text: str, question_key: str) -> tuple[str, dict[str, str]]:
    """Return the id a section page gives its new note under a question, and the fields that
    carry it when the page is sent without JavaScript (the load id, an empty note id)."""
    load = page_load(page_text)
    return new_note_id(load, question_key), {"load": load, f"new-{question_key}-id": ""}


def start_interview(client, interview_id: str, minutes: int = 75):
    """Pass the capacity check."""
    return client.post(
        f"/interviews/{interview_id}/capacity",
        data={
            "understands": "y",
            "can_explain": "y",
            "not_in_crisis": "y",
            "minutes": str(minutes),
            "go": "ok",
        },
    )


def give_paper_consent(client, interview_id: str, number: str = "P-123"):
    """Record consent on a paper form."""
    return client.post(
        f"/interviews/{interview_id}/consent",
        data={**CONSENT_ALL_YES, "method": "paper", "paper_form_number": number},
    )


def consented_interview(client, world, username: str = "peer_a", key: str = "pa") -> str:
    """Log in as a peer and take the world's interview past the capacity check and paper
    consent, as the peer would; return its id (the peer stays logged in)."""
    from tests.conftest import PASSWORD

    client.post("/login", data={"username": username, "password": PASSWORD})
    iid = world.interviews[key]
    start_interview(client, iid)
    give_paper_consent(client, iid)
    return iid


def post_sync(client, changes, cursor=None, device=None):
    """Send one sync batch as a tablet does; return the answer."""
    return client.post(
        "/api/v1/sync",
        json={"device_id": device or str(uuid.uuid4()), "cursor": cursor, "changes": changes},
    )


def note_change(iid, note_id, text, base_rev=None, change_id=None, **extra):
    """Return a sync change for a note: a create without base_rev, else an edit of text."""
    data = {"text": text, **extra}
    if base_rev is None:
        data.update(interview_id=iid, question_key="context.services")
    return {
        "change_id": change_id or str(uuid.uuid4()),
        "entity": "note",
        "id": note_id,
        "base_rev": base_rev,
        "recorded_at": "2026-11-23T10:00:00Z",
        "data": data,
    }


def _plain(value):
    if isinstance(value, bytes | memoryview):
        return hashlib.sha256(bytes(value)).hexdigest()
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def store_snapshot(app, skip=frozenset(), volatile=None) -> dict[str, tuple[int, str]]:
    """Row count and a digest of every table of both stores, to compare before and after.

    `skip` names tables left out; `volatile` maps a table to columns left out (bookkeeping a
    refused request may still touch, such as the user's last login).
    """
    volatile = {"user": {"last_login_at"}} if volatile is None else volatile
    out: dict[str, tuple[int, str]] = {}
    with app.app_context():
        for bind_key, metadata in db.metadatas.items():
            connection = db.session.connection(bind_arguments={"bind": db.engines[bind_key]})
            for table in metadata.sorted_tables:
                if table.name in skip:
                    continue
                left_out = volatile.get(table.name, set())
                columns = [c for c in table.columns if c.name not in left_out]
                order = list(table.primary_key.columns) or columns
                rows = connection.execute(select(*columns).order_by(*order)).all()
                blob = json.dumps(
                    [[_plain(v) for v in row] for row in rows], default=str, sort_keys=True
                )
                out[table.name] = (len(rows), hashlib.sha256(blob.encode()).hexdigest())
        db.session.remove()
    return out


def changed_tables(before: dict, after: dict) -> list[str]:
    """Name the tables whose rows differ between two snapshots."""
    return sorted(
        name for name in before.keys() | after.keys() if before.get(name) != after.get(name)
    )


def statements_of(app, client, path: str) -> int:
    """Return how many SQL statements one GET of `path` runs (it must answer 200)."""
    seen = []

    def count(*_args, **_kwargs):
        seen.append(1)

    with app.app_context():
        engines = list(db.engines.values())
    for engine in engines:
        event.listen(engine, "before_cursor_execute", count)
    try:
        answer = client.get(path)
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", count)
    assert answer.status_code == 200, answer.status_code
    return len(seen)


def park_change(
    app, user_id: int, interview_id: str, text: str, digest: str, participant_id=None
) -> None:
    """Store a note change held until its interview arrives, its words in the payload."""
    from interview.store.extensions import db as _db
    from interview.store.models import SyncChange

    with app.app_context():
        _db.session.add(
            SyncChange(
                change_id=str(uuid.uuid4()),
                user_id=user_id,
                entity="note",
                record_id=str(uuid.uuid4()),
                digest=digest,
                status="applied",
                waiting_for=interview_id,
                participant_id=participant_id,
                payload={"data": {"interview_id": interview_id, "text": text}},
            )
        )
        _db.session.commit()


V2_CHANGES = {
    "nb": "Lydopptaket slettes senest når prosjektet avsluttes.",
    "en": "The audio recording is deleted when the project ends at the latest.",
}


def publish_consent_v2(app, changes=None) -> int:
    """Publish version 2 of the world's consent form (v1's text, with what changed); return 2."""
    from interview.store.models import ConsentFormVersion

    with app.app_context():
        v1 = db.session.scalars(
            select(ConsentFormVersion).where(ConsentFormVersion.version == 1)
        ).one()
        content = copy.deepcopy(v1.content)
        content.update(version=2, published="2026-12-01", changes=changes or V2_CHANGES)
        db.session.add(
            ConsentFormVersion(
                key=v1.key, version=2, published="2026-12-01", checksum="2" * 64, content=content
            )
        )
        db.session.commit()
    return 2


def ask_renewal(app, username="coord_a") -> None:
    """Record, as a coordinator, that the newest consent form needs renewed consent."""
    from interview.participants.renewal import require_renewal
    from interview.store.models import ConsentFormVersion, User

    with app.app_context():
        user = db.session.scalars(select(User).where(User.username == username)).one()
        newest = db.session.scalars(
            select(ConsentFormVersion).order_by(ConsentFormVersion.version.desc())
        ).first()
        require_renewal(db.session, user, newest, confirmed=True)
        db.session.commit()
