"""The identity key store: apart from research data, encrypted at rest, useless without the key."""

import logging
import os
import re
import stat

import pytest
from sqlalchemy import func, inspect, select, text

from interview.participants.registry import register
from interview.store.crypto import KeyError_, load_key, open_sealed
from interview.store.extensions import db
from interview.store.identity import get_identity
from interview.store.models import AuditEvent, Case, IdentityEntry, Participant, User
from tests.conftest import get_row

NAME = "Åse Testesen"
PHONE = "000 11 222"
IDENTITY_TABLES = {"identity_entry", "consent_signature", "consent_record"}


def _register(app, world, name=NAME, phone=PHONE) -> str:
    with app.app_context():
        case = db.session.execute(select(Case).where(Case.code == "A")).scalar_one()
        peer = db.session.get(User, world.users["peer_a"])
        coord = db.session.get(User, world.users["coord_a"])
        participant = register(case, "nb", [peer], coord, name, phone)
        db.session.commit()
        return participant.id


def _raw_entry(app, participant_id: str):
    """The identity row as the database holds it, read past the models."""
    with app.app_context():
        with db.engines["identity"].connect() as conn:
            return conn.execute(
                text(
                    "SELECT id, participant_id, name_enc, contact_enc FROM identity_entry"
                    " WHERE participant_id = :pid"
                ),
                {"pid": participant_id},
            ).one()


def _as_bytes(value) -> bytes:
    return bytes(value) if value is not None else b""


def test_name_and_phone_are_not_stored_in_plain_text(app, world):
    pid = _register(app, world)
    row = _raw_entry(app, pid)
    name_enc, contact_enc = _as_bytes(row.name_enc), _as_bytes(row.contact_enc)
    assert name_enc and contact_enc
    for secret in (NAME, "Testesen", "Åse"):
        assert secret.encode("utf-8") not in name_enc
        assert secret.encode("utf-8") not in contact_enc
    for secret in (PHONE, "11 222", "00011222"):
        assert secret.encode("utf-8") not in contact_enc
        assert secret.encode("utf-8") not in name_enc
    # two sealings of the same name differ (random nonce): nothing to compare or count
    other = _raw_entry(app, _register(app, world))
    assert _as_bytes(other.name_enc) != name_enc


def test_get_identity_returns_the_plaintext_with_the_key(app, world):
    pid = _register(app, world)
    with app.app_context():
        assert get_identity(pid) == {"name": NAME, "contact": PHONE}


def test_identity_without_name_or_phone(app, world):
    pid = _register(app, world, name=None, phone=None)
    with app.app_context():
        assert get_identity(pid) is None
        # the world's participant pa has a name only
        assert get_identity(world.participants["pa"]) == {"name": "Test Person", "contact": ""}


def test_another_key_cannot_decrypt(app, world):
    pid = _register(app, world)
    row = _raw_entry(app, pid)
    other_key = os.urandom(32)
    with pytest.raises(KeyError_):
        open_sealed(other_key, _as_bytes(row.name_enc), f"identity_entry.name.{row.id}")
    with pytest.raises(KeyError_):
        open_sealed(other_key, _as_bytes(row.contact_enc), f"identity_entry.contact.{row.id}")


def test_the_app_with_another_key_cannot_read_the_store(app, world):
    pid = _register(app, world)
    with app.app_context():
        right = app.extensions["identity_key"]
        app.extensions["identity_key"] = os.urandom(32)
        try:
            with pytest.raises(KeyError_):
                get_identity(pid)
        finally:
            app.extensions["identity_key"] = right
        assert get_identity(pid)["name"] == NAME


def test_a_forged_key_id_still_does_not_decrypt(app, world):
    """Even a value re-labelled with the wrong key's id fails: AES-GCM checks the tag."""
    from interview.store.crypto import PREFIX, key_id

    pid = _register(app, world)
    row = _raw_entry(app, pid)
    other_key = os.urandom(32)
    blob = _as_bytes(row.name_enc)
    forged = PREFIX + key_id(other_key) + blob[6:]
    with pytest.raises(KeyError_):
        open_sealed(other_key, forged, f"identity_entry.name.{row.id}")


def test_ciphertext_moved_to_another_row_fails(app, world):
    first = _register(app, world, name="Åse Testesen", phone=PHONE)
    second = _register(app, world, name="Bjørn Prøvesen", phone="000 99 888")
    row_1 = _raw_entry(app, first)
    with app.app_context():
        with db.engines["identity"].begin() as conn:
            conn.execute(
                text("UPDATE identity_entry SET name_enc = :v WHERE participant_id = :pid"),
                {"v": _as_bytes(row_1.name_enc), "pid": second},
            )
        db.session.expire_all()
        with pytest.raises(KeyError_):
            get_identity(second)
        # the row it came from still reads fine
        assert get_identity(first)["name"] == "Åse Testesen"


def test_ciphertext_moved_to_another_column_fails(app, world):
    pid = _register(app, world)
    row = _raw_entry(app, pid)
    with app.app_context():
        with db.engines["identity"].begin() as conn:
            conn.execute(
                text("UPDATE identity_entry SET contact_enc = :v WHERE participant_id = :pid"),
                {"v": _as_bytes(row.name_enc), "pid": pid},
            )
        db.session.expire_all()
        with pytest.raises(KeyError_):
            get_identity(pid)


def test_tampered_ciphertext_fails(app, world):
    pid = _register(app, world)
    row = _raw_entry(app, pid)
    blob = bytearray(_as_bytes(row.name_enc))
    blob[-1] ^= 0x01
    with app.app_context():
        with db.engines["identity"].begin() as conn:
            conn.execute(
                text("UPDATE identity_entry SET name_enc = :v WHERE participant_id = :pid"),
                {"v": bytes(blob), "pid": pid},
            )
        db.session.expire_all()
        with pytest.raises(KeyError_):
            get_identity(pid)


def test_identity_tables_live_in_the_identity_store_only(app, world):
    # the models: identity tables belong to the identity bind's metadata, and only there
    assert set(db.metadatas["identity"].tables) == IDENTITY_TABLES
    assert not IDENTITY_TABLES & set(db.metadatas[None].tables)
    assert IdentityEntry.__table__.metadata is db.metadatas["identity"]
    with app.app_context():
        same_database = db.engines["identity"].url == db.engine.url
        case_store = set(inspect(db.engine).get_table_names())
        identity_store = set(inspect(db.engines["identity"]).get_table_names())
    assert IDENTITY_TABLES <= identity_store
    assert "participant" in case_store
    if not same_database:
        # separate databases (SQLite files, or IDENTITY_DATABASE_URL): nothing crosses over
        assert not IDENTITY_TABLES & case_store
        assert "participant" not in identity_store
        assert "note" not in identity_store


def test_research_tables_hold_no_name_or_contact_column(app, world):
    with app.app_context():
        insp = inspect(db.engine)
        columns = {c["name"] for c in insp.get_columns("participant")}
        assert "code" in columns
        assert not {c for c in columns if re.search(r"name|phone|contact|address|birth", c)}
        for table in ("interview", "note", "consent", "debrief", "interview_event"):
            cols = {c["name"] for c in insp.get_columns(table)}
            assert not {c for c in cols if re.search(r"name|phone|contact|signature", c)}, table


def test_generated_key_file_is_private_and_reused(tmp_path):
    path = tmp_path / "keys" / "k.key"
    key = load_key(None, str(path))
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    content = path.read_bytes()
    again = load_key(None, str(path))
    assert again == key
    assert path.read_bytes() == content
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_key_from_environment_wins_and_must_be_32_bytes(tmp_path):
    import base64

    raw = os.urandom(32)
    path = tmp_path / "unused.key"
    assert load_key(base64.urlsafe_b64encode(raw).decode(), str(path)) == raw
    assert not path.exists()
    with pytest.raises(KeyError_):
        load_key(base64.urlsafe_b64encode(os.urandom(16)).decode(), str(path))


def test_a_broken_key_file_is_refused(tmp_path):
    import base64

    path = tmp_path / "short.key"
    path.write_bytes(base64.urlsafe_b64encode(os.urandom(8)))
    with pytest.raises(KeyError_):
        load_key(None, str(path))


# --- registering through the coordinator's form ----------------------------------------


def _case_store_dump(app) -> str:
    """Every value of every case-store table, as one text."""
    parts = []
    with app.app_context():
        insp = inspect(db.engine)
        with db.engine.connect() as conn:
            for table in insp.get_table_names():
                for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                    for value in row:
                        if isinstance(value, bytes | bytearray | memoryview):
                            parts.append(bytes(value).decode("utf-8", "ignore"))
                        else:
                            parts.append(str(value))
    return "\n".join(parts)


def _register_by_form(app, client, auth, world):
    with app.app_context():
        case_a = db.session.execute(select(Case.id).where(Case.code == "A")).scalar_one()
        before = set(db.session.scalars(select(Participant.id)))
    auth.login("coord_a")
    response = client.post(
        "/participants/new?lang=en",
        data={
            "case_id": str(case_a),
            "preferred_language": "nb",
            "interviewers": [str(world.users["peer_a"])],
            "name": NAME,
            "phone": PHONE,
        },
    )
    assert response.status_code == 302, response.text
    with app.app_context():
        (new_id,) = set(db.session.scalars(select(Participant.id))) - before
    return response, new_id


def test_form_registration_keeps_the_name_out_of_the_case_store(app, client, auth, world):
    _response, pid = _register_by_form(app, client, auth, world)
    dump = _case_store_dump(app)
    assert pid in dump  # the dump does see the new participant
    for secret in (NAME, "Testesen", PHONE, "Test Person"):
        assert secret not in dump
    with app.app_context():
        assert get_identity(pid) == {"name": NAME, "contact": PHONE}
        participant = get_row(Participant, pid)
        assert re.match(r"^A-[2-9A-HJ-NP-Z]{4}$", participant.code)
        assert [u.username for u in participant.interviewers] == ["peer_a"]


def test_form_registration_is_audited_without_the_name(app, client, auth, world):
    _response, pid = _register_by_form(app, client, auth, world)
    with app.app_context():
        events = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "participant_registered")
        ).all()
        assert [(e.object_type, e.object_id, e.user_id) for e in events] == [
            ("participant", pid, world.users["coord_a"])
        ]
        everything = " ".join(
            f"{e.action} {e.object_type} {e.object_id} {e.detail}"
            for e in db.session.scalars(select(AuditEvent))
        )
    assert NAME not in everything
    assert PHONE not in everything


def test_form_registration_shows_the_code_not_the_name(app, client, auth, world):
    response, pid = _register_by_form(app, client, auth, world)
    assert pid in response.headers["Location"]
    page = client.get(response.headers["Location"] + "?lang=en")
    assert page.status_code == 200
    with app.app_context():
        code = get_row(Participant, pid).code
    assert f"Participant {code} is registered." in page.text
    assert NAME not in page.text
    assert PHONE not in page.text
    # only the audited look-up shows it
    shown = client.post(f"/participants/{pid}/identity")
    assert shown.status_code == 200
    assert NAME in shown.text
    assert "no-store" in shown.headers["Cache-Control"]


def test_form_registration_writes_no_name_to_the_log(app, client, auth, world, caplog):
    caplog.set_level(logging.DEBUG)
    _register_by_form(app, client, auth, world)
    assert NAME not in caplog.text
    assert PHONE not in caplog.text


def test_form_registration_with_a_bad_phone_stores_nothing(app, client, auth, world):
    with app.app_context():
        case_a = db.session.execute(select(Case.id).where(Case.code == "A")).scalar_one()
        count = db.session.scalar(select(func.count()).select_from(Participant))
        entries = db.session.scalar(select(func.count()).select_from(IdentityEntry))
    auth.login("coord_a")
    response = client.post(
        "/participants/new?lang=en",
        data={
            "case_id": str(case_a),
            "preferred_language": "nb",
            "interviewers": [str(world.users["peer_a"])],
            "name": NAME,
            "phone": "call me maybe",
        },
    )
    assert response.status_code == 400
    assert "Write the phone number with digits only." in response.text
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Participant)) == count
        assert db.session.scalar(select(func.count()).select_from(IdentityEntry)) == entries


def test_no_plain_name_in_any_database_file(app, client, auth, world, tmp_path):
    _response, pid = _register_by_form(app, client, auth, world)
    if os.environ.get("DATABASE_URL"):
        # PostgreSQL: every row of every table of both stores, as the server renders it
        with app.app_context():
            dumps = []
            for engine in db.engines.values():
                with engine.connect() as conn:
                    for table in inspect(engine).get_table_names():
                        rows = conn.exec_driver_sql(f'SELECT CAST(t AS text) FROM "{table}" t')
                        dumps.extend(r[0] for r in rows)
        dumped = "\n".join(dumps)
        assert pid in dumped  # control: the dump does hold the new participant
        for secret in (NAME, PHONE, "Test Person"):
            assert secret not in dumped
        return
    with app.app_context():
        db.session.remove()
        for engine in db.engines.values():
            engine.dispose()  # checkpoint the WAL into the file
    files = [p for p in tmp_path.iterdir() if p.name.startswith(("casestore.db", "identity.db"))]
    assert any(p.name == "identity.db" for p in files)
    # control: the files are readable as they are, the new participant's id is in there
    assert any(pid.encode() in p.read_bytes() for p in files if p.name.startswith("casestore"))
    for path in files:
        data = path.read_bytes()
        assert NAME.encode("utf-8") not in data, path.name
        assert PHONE.encode("utf-8") not in data, path.name
        assert b"Test Person" not in data, path.name
