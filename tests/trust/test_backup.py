"""`flask backup` and `flask restore`: online copies, checksums, key files kept apart."""

import json
import sqlite3
import stat
import threading
import time
import uuid
from pathlib import Path

import pytest
from flask.cli import FlaskGroup
from sqlalchemy import delete, select

from interview import create_app
from interview.participants.registry import register
from interview.participants.withdrawal import today_in_oslo, withdraw
from interview.store.crypto import app_key, open_sealed
from interview.store.extensions import db
from interview.store.identity import get_identity
from interview.store.models import (
    Case,
    ConsentSignature,
    IdentityEntry,
    Note,
    Participant,
    Recording,
    User,
)
from interview.store.recordings import audio_stream, delete_all_recordings, write_chunk
from interview.trust.backup import MANIFEST, stores
from interview.trust.sealed_box import unwrap_key
from interview.trust.study_key import new_private_key, pem_of
from tests.conftest import PASSWORD, make_config
from tests.helpers import CONSENT_ALL_YES, note_change, signature_data_url, start_interview
from tests.sync.recording_tablet import (
    MAGIC,
    Tablet,
    audio_consented,
    fake_sound,
    log_in,
    recording_files,
)

NOTE_TEXTS = ("Hjelpen fra teamet kom for sent.", "Likeperson gjorde forskjellen.")


def sqlite_config(tmp_path) -> dict:
    """Two SQLite stores in tmp_path, whatever DATABASE_URL says: the copying path is SQLite's
    (on PostgreSQL the command prints pg_dump instructions, tested below)."""
    return make_config(
        tmp_path,
        IDENTITY_KEY=None,
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'casestore.db'}",
        SQLALCHEMY_BINDS={"identity": f"sqlite:///{tmp_path / 'identity.db'}"},
    )


@pytest.fixture
def app(tmp_path):
    """The conftest app, with the identity key in a key file (as in production) not the env."""
    application = create_app(sqlite_config(tmp_path))
    with application.app_context():
        db.drop_all()
        db.create_all()
    yield application
    with application.app_context():
        db.session.remove()
        db.drop_all()
        for engine in db.engines.values():
            engine.dispose()


def _group(application):
    return FlaskGroup(create_app=lambda: application, load_dotenv=False, set_debug_flag=False)


@pytest.fixture
def cli(app, runner):
    """Run a command the way `flask ...` runs it (FlaskGroup pushes the app context)."""

    def invoke(args, application=None):
        return runner.invoke(cli=_group(application or app), args=args)

    return invoke


def _paths(app) -> dict[str, Path]:
    return {s.name: s.path for s in stores(app)}


def _dump(app) -> dict[str, dict[str, list]]:
    """Every row of every table of both SQLite stores, in a stable order."""
    out = {}
    for name, path in _paths(app).items():
        conn = sqlite3.connect(path)
        try:
            tables = [
                r[0]
                for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
                )
            ]
            out[name] = {
                t: sorted(conn.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr) for t in tables
            }
        finally:
            conn.close()
    return out


def _build_data(app, client, world) -> dict:
    """A consent signed on the tablet, notes, an ended interview with a debrief, identities."""
    client.post("/login", data={"username": "peer_a", "password": PASSWORD})
    iid = world.interviews["pa"]
    assert start_interview(client, iid).status_code == 302
    consent = client.post(
        f"/interviews/{iid}/consent",
        data={
            **CONSENT_ALL_YES,
            "method": "tablet",
            "printed_name": "Test Person",
            "signature": signature_data_url(),
        },
    )
    assert consent.status_code == 302
    changes = [note_change(iid, str(uuid.uuid4()), text) for text in NOTE_TEXTS]
    answer = client.post(
        "/api/v1/sync", json={"device_id": str(uuid.uuid4()), "cursor": None, "changes": changes}
    ).get_json()
    assert [r["status"] for r in answer["results"]] == ["applied", "applied"]
    assert client.post(f"/interviews/{iid}/finish").status_code == 302
    debrief = client.post(
        f"/interviews/{iid}/debrief", data={"wellbeing": "3", "reflection": "Et tungt tema."}
    )
    assert debrief.status_code == 302
    with app.app_context():
        case = db.session.scalars(select(Case).where(Case.code == "B")).one()
        coordinator = db.session.get(User, world.users["coord_b"])
        peer = db.session.get(User, world.users["peer_b"])
        extra = register(case, "en", [peer], coordinator, "Ola Nordmann", "+47 912 34 567")
        db.session.commit()
        return {"interview": iid, "extra": extra.id}


def _backup_folder(dest: Path) -> Path:
    folders = [p for p in dest.iterdir() if p.name.startswith("fact-backup-")]
    assert len(folders) == 1, folders
    return folders[0]


def _key_files(app) -> list[Path]:
    names = [k for k in app.config if k.endswith("_KEY_FILE")]
    return [Path(app.config[k]) for k in names if Path(app.config[k]).is_file()]


# --- the round trip ---------------------------------------------------------------------


def test_round_trip_restores_every_row_and_identity_still_opens(app, client, world, cli, tmp_path):
    made = _build_data(app, client, world)
    before = _dump(app)
    assert before["casestore"]["note"] and before["identity"]["identity_entry"]
    dest = tmp_path / "backups"

    with app.app_context():
        # the app holds a session with a read transaction open while the backup runs
        db.session.scalars(select(Participant)).all()
        result = cli(["backup", str(dest)])
        db.session.rollback()
    assert result.exit_code == 0, result.output
    folder = _backup_folder(dest)
    assert f"Backup written to {folder}" in result.output
    assert sorted(p.name for p in folder.iterdir()) == [
        "casestore.db",
        "identity.db",
        MANIFEST,
        "recordings",
    ]
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "recordings").stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in folder.iterdir() if p.is_file())

    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["created_at"].endswith("Z")
    assert manifest["alembic_head"]
    for name in ("casestore", "identity"):
        entry = manifest["stores"][name]
        assert entry["file"] == f"{name}.db"
        assert len(entry["sha256"]) == 64
        assert entry["tables"] == {t: len(rows) for t, rows in before[name].items()}

    # the stores change after the backup: rows go, a participant arrives
    with app.app_context():
        db.session.execute(delete(Note))
        db.session.execute(delete(IdentityEntry))
        case = db.session.scalars(select(Case).where(Case.code == "A")).one()
        register(case, "nb", [], None, "Kommer Etterpå")
        db.session.commit()

    refused = cli(["restore", str(folder)])
    assert refused.exit_code != 0
    assert "hold data" in refused.output
    with app.app_context():
        assert db.session.scalars(select(Note)).all() == []

    restored = cli(["restore", str(folder), "--force"])
    assert restored.exit_code == 0, restored.output
    assert "integrity_check on casestore: ok" in restored.output
    assert "integrity_check on identity: ok" in restored.output
    assert "WARNING" not in restored.output
    assert "The keys in place open the restored data." in restored.output

    after = _dump(app)
    assert after["identity"] == before["identity"]
    for table, rows in before["casestore"].items():
        if table not in ("audit_event", "sync_counter"):
            assert after["casestore"][table] == rows, table
    # the sync sequence never goes back: it goes on from the store that was replaced
    assert after["casestore"]["sync_counter"][0][1] >= before["casestore"]["sync_counter"][0][1]
    # the audit log is back whole, plus the record of the restore itself
    new_audit = [
        r for r in after["casestore"]["audit_event"] if r not in before["casestore"]["audit_event"]
    ]
    assert len(new_audit) == 1 and "store_restored" in new_audit[0]
    assert len(after["casestore"]["audit_event"]) == len(before["casestore"]["audit_event"]) + 1

    with app.app_context():
        assert get_identity(world.participants["pa"])["name"] == "Test Person"
        assert get_identity(made["extra"]) == {"name": "Ola Nordmann", "contact": "+47 912 34 567"}
        sig = db.session.scalars(select(ConsentSignature)).one()
        printed = open_sealed(
            app_key(), sig.printed_name_enc, f"consent_signature.printed_name.{sig.id}"
        )
        assert printed == "Test Person"
        assert sorted(n.text for n in db.session.scalars(select(Note))) == sorted(NOTE_TEXTS)


def test_restore_into_wiped_stores_needs_no_force(app, client, world, cli, tmp_path):
    _build_data(app, client, world)
    before = _dump(app)
    assert cli(["backup", str(tmp_path / "b")]).exit_code == 0
    folder = _backup_folder(tmp_path / "b")
    with app.app_context():
        db.session.remove()
        db.drop_all()
        db.create_all()
    restored = cli(["restore", str(folder)])
    assert restored.exit_code == 0, restored.output
    after = _dump(app)
    assert after["identity"] == before["identity"]
    assert after["casestore"]["note"] == before["casestore"]["note"]
    assert after["casestore"]["participant"] == before["casestore"]["participant"]


def test_backup_while_another_connection_writes(app, world, cli, tmp_path):
    path = _paths(app)["casestore"]
    stop = threading.Event()
    written = []

    def writer():
        conn = sqlite3.connect(path, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        try:
            while not stop.is_set():
                with conn:
                    conn.execute(
                        "INSERT INTO audit_event (at, action, detail) "
                        "VALUES (CURRENT_TIMESTAMP, 'load_test', '{}')"
                    )
                written.append(1)
                # a busy writer, not a lock held for good: on a loaded machine a loop with no
                # pause starved the backup's own audit entry past SQLite's busy timeout
                time.sleep(0.001)
        finally:
            conn.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while len(written) < 50 and time.monotonic() < deadline:
            time.sleep(0.001)
        result = cli(["backup", str(tmp_path / "b")])
        during = len(written)
    finally:
        stop.set()
        thread.join()
    assert result.exit_code == 0, result.output
    assert during > 50
    folder = _backup_folder(tmp_path / "b")
    manifest = json.loads((folder / MANIFEST).read_text())
    copy = sqlite3.connect(folder / "casestore.db")
    try:
        assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        counted = copy.execute("SELECT count(*) FROM audit_event").fetchone()[0]
    finally:
        copy.close()
    # one consistent snapshot: the manifest counts what the copy holds, mid-stream
    assert manifest["stores"]["casestore"]["tables"]["audit_event"] == counted
    assert 50 <= counted <= len(written)
    assert not list(folder.glob("*-wal")) and not list(folder.glob("*-shm"))


# --- a damaged or tampered backup -------------------------------------------------------


def _tamper_file(folder: Path) -> None:
    conn = sqlite3.connect(folder / "casestore.db")
    with conn:
        conn.execute("UPDATE participant SET status = 'withdrawn'")
    conn.close()


def _tamper_manifest(folder: Path) -> None:
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["stores"]["identity"]["sha256"] = "0" * 64
    (folder / MANIFEST).write_text(json.dumps(manifest))


def _climb_out(folder: Path) -> None:
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["stores"]["casestore"]["file"] = "../casestore.db"
    (folder / MANIFEST).write_text(json.dumps(manifest))


def _lose_file(folder: Path) -> None:
    (folder / "identity.db").unlink()


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (_tamper_file, "casestore.db does not match its sha256"),
        (_tamper_manifest, "identity.db does not match its sha256"),
        (_climb_out, "names no plain file"),
        (_lose_file, "identity.db is missing"),
    ],
)
def test_a_tampered_backup_is_refused(app, world, cli, tmp_path, tamper, message):
    assert cli(["backup", str(tmp_path / "b")]).exit_code == 0
    folder = _backup_folder(tmp_path / "b")
    tamper(folder)
    with app.app_context():
        db.session.execute(delete(Note))
        case = db.session.scalars(select(Case).where(Case.code == "C")).one()
        marker = register(case, "nb", [], None).id
        db.session.commit()
    result = cli(["restore", str(folder), "--force"])
    assert result.exit_code != 0
    assert message in result.output
    assert "nothing was restored" in result.output or "no plain file" in result.output
    with app.app_context():
        assert db.session.get(Participant, marker) is not None


def test_restore_of_a_folder_without_manifest_is_refused(cli, world, tmp_path):
    empty = tmp_path / "not-a-backup"
    empty.mkdir()
    result = cli(["restore", str(empty), "--force"])
    assert result.exit_code != 0
    assert "no manifest.json" in result.output


# --- key files ---------------------------------------------------------------------------


def test_key_files_stay_out_of_the_backup_by_default(app, world, cli, tmp_path):
    keys = _key_files(app)
    assert keys, "the identity key lives in a file in this test"
    result = cli(["backup", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    assert "Key files NOT copied" in result.output
    assert f"IDENTITY_KEY_FILE: {keys[0]}" in result.output
    folder = _backup_folder(tmp_path / "b")
    secrets = [k.read_bytes().strip() for k in keys]
    for path in (tmp_path / "b").rglob("*"):
        if path.is_file():
            assert not path.name.endswith(".key")
            body = path.read_bytes()
            assert not any(s in body for s in secrets), path
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["keys_copied_separately"] is False
    recorded = {k["setting"]: k for k in manifest["keys"]}
    assert recorded["IDENTITY_KEY_FILE"]["source"] == "file"
    assert len(recorded["IDENTITY_KEY_FILE"]["fingerprint"]) == 16


def test_keys_to_copies_the_keys_apart_with_0600(app, world, cli, tmp_path):
    vault = tmp_path / "vault"
    result = cli(["backup", str(tmp_path / "b"), "--keys-to", str(vault)])
    assert result.exit_code == 0, result.output
    assert "Key files written to" in result.output
    folders = list(vault.iterdir())
    assert len(folders) == 1 and folders[0].name.startswith("fact-keys-")
    assert stat.S_IMODE(folders[0].stat().st_mode) == 0o700
    copied = folders[0] / "identity_key_file" / "identity.key"
    assert copied.read_bytes() == Path(app.config["IDENTITY_KEY_FILE"]).read_bytes()
    assert stat.S_IMODE(copied.stat().st_mode) == 0o600
    listed = json.loads((folders[0] / "keys.json").read_text())
    assert listed["backup"] == _backup_folder(tmp_path / "b").name
    assert {k["restore_to"] for k in listed["keys"]} >= {app.config["IDENTITY_KEY_FILE"]}
    assert not any(p.name.endswith(".key") for p in (tmp_path / "b").rglob("*"))


@pytest.mark.parametrize(
    ("dest", "keys_to"),
    [("b", "b/keys"), ("b", "b"), ("vault/b", "vault")],
)
def test_keys_to_in_the_same_tree_as_the_backup_is_refused(cli, world, tmp_path, dest, keys_to):
    result = cli(["backup", str(tmp_path / dest), "--keys-to", str(tmp_path / keys_to)])
    assert result.exit_code != 0
    assert "kept apart from the data" in result.output
    assert not list(tmp_path.rglob("fact-backup-*"))
    assert not list(tmp_path.rglob("fact-keys-*"))


def test_a_backup_folder_that_holds_a_key_is_refused(app, cli, world, tmp_path):
    # tmp_path is this app's instance-like folder: the identity key file is in it
    assert Path(app.config["IDENTITY_KEY_FILE"]).parent == tmp_path
    result = cli(["backup", str(tmp_path)])
    assert result.exit_code != 0
    assert "holds the key" in result.output
    assert not list(tmp_path.glob("fact-backup-*"))


def test_restore_warns_when_the_key_is_missing(app, client, world, cli, tmp_path):
    _build_data(app, client, world)
    assert cli(["backup", str(tmp_path / "b")]).exit_code == 0
    folder = _backup_folder(tmp_path / "b")
    key_file = Path(app.config["IDENTITY_KEY_FILE"])
    key_file.unlink()
    research = Path(app.config.get("RESEARCH_KEY_FILE") or tmp_path / "absent")
    if research.is_file() and not app.config.get("RESEARCH_KEY"):
        research.unlink()
    # a new start of the app finds no key file and makes a new key, which opens nothing old
    fresh = create_app(sqlite_config(tmp_path))
    assert key_file.is_file()
    result = cli(["restore", str(folder), "--force"], application=fresh)
    assert result.exit_code == 0, result.output
    assert "integrity_check on identity: ok" in result.output
    assert "WARNING: the key IDENTITY_KEY_FILE in place is not the key in use" in result.output
    assert "WARNING: the identity key in place cannot decrypt" in result.output
    if app.config.get("RESEARCH_KEY_FILE") and not app.config.get("RESEARCH_KEY"):
        assert "WARNING: the research key in place cannot decrypt note" in result.output
    with fresh.app_context():
        for engine in db.engines.values():
            engine.dispose()


# --- PostgreSQL --------------------------------------------------------------------------


def test_postgresql_prints_pg_dump_instructions(app, cli, tmp_path):
    app.config["SQLALCHEMY_DATABASE_URI"] = "postgresql+psycopg://fact:s3cret@db.example/cases"
    app.config["SQLALCHEMY_BINDS"] = {
        **app.config["SQLALCHEMY_BINDS"],
        "identity": "postgresql+psycopg://fact:s3cret@db.example/identity",
    }
    dest = tmp_path / "b"
    result = cli(["backup", str(dest), "--keys-to", str(tmp_path / "vault")])
    assert result.exit_code == 0, result.output
    assert result.output.count("pg_dump --format=custom") == 2
    assert '"$DATABASE_URL"' in result.output
    assert '"$IDENTITY_DATABASE_URL"' in result.output
    assert "pg_restore" in result.output
    assert "postgresql://fact:***@db.example/identity" in result.output
    assert "s3cret" not in result.output
    assert not dest.exists() or not list(dest.glob("fact-backup-*"))
    # the keys are still handled, apart
    assert list((tmp_path / "vault").rglob("identity.key"))

    assert f'cp -a "{app.config["RECORDINGS_DIR"]}"' in result.output

    restore = cli(["restore", str(tmp_path)])
    assert restore.exit_code == 0, restore.output
    assert "pg_restore --clean --if-exists" in restore.output
    assert "cp -a recordings-<time>" in restore.output


# --- what a restore must not undo --------------------------------------------------------


def test_restore_names_withdrawals_made_after_the_backup_and_keeps_the_sync_cursor(
    app, client, world, cli, tmp_path
):
    _build_data(app, client, world)
    assert cli(["backup", str(tmp_path / "b")]).exit_code == 0
    folder = _backup_folder(tmp_path / "b")
    with app.app_context():
        participant = db.session.get(Participant, world.participants["pa"])
        code = participant.code
        withdraw(
            db.session,
            participant,
            withdrawn_on=today_in_oslo(),  # the study's calendar: Oslo's date, not UTC's
            keep_data=False,
            keep_identity=False,
            user=db.session.get(User, world.users["coord_a"]),
        )
        db.session.commit()
    path = _paths(app)["casestore"]
    conn = sqlite3.connect(path)
    counter = conn.execute("SELECT value FROM sync_counter").fetchone()[0]
    conn.close()

    result = cli(["restore", str(folder), "--force"])
    assert result.exit_code == 0, result.output
    assert "withdrew after this backup was taken" in result.output
    assert code in result.output
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM sync_counter").fetchone()[0] >= counter
    conn.close()


def test_commands_are_registered(app):
    assert {"backup", "restore"} <= set(app.cli.commands)


# --- the study key pair ------------------------------------------------------------------


def test_the_study_key_is_kept_apart_and_checked_like_the_other_keys(
    app, client, world, cli, tmp_path
):
    _build_data(app, client, world)
    study = Path(app.config["STUDY_KEY_FILE"])
    plain = cli(["backup", str(tmp_path / "a")])
    assert f"STUDY_KEY_FILE: {study}" in plain.output  # named among the keys NOT copied
    vault = tmp_path / "vault"
    result = cli(["backup", str(tmp_path / "b"), "--keys-to", str(vault)])
    assert result.exit_code == 0, result.output
    (keys,) = list(vault.iterdir())
    copied = keys / "study_key_file" / "study-key.pem"
    assert copied.read_bytes() == study.read_bytes()
    assert stat.S_IMODE(copied.stat().st_mode) == 0o600
    listed = json.loads((keys / "keys.json").read_text())
    assert {k["restore_to"] for k in listed["keys"]} >= {str(study)}
    folder = _backup_folder(tmp_path / "b")
    manifest = json.loads((folder / MANIFEST).read_text())
    recorded = {k["setting"]: k for k in manifest["keys"]}
    assert len(recorded["STUDY_KEY_FILE"]["fingerprint"]) == 16
    assert b"PRIVATE KEY" not in b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())

    # another study key in place (made after the backup): the stores do not need the old one
    study.write_bytes(pem_of(new_private_key()))
    restored = cli(["restore", str(folder), "--force"])
    assert restored.exit_code == 0, restored.output
    assert "the study key in place (STUDY_KEY_FILE) is not the one in use" in restored.output
    assert "keep the key in place" in restored.output

    # a study key file that is no key is named too
    study.write_text("not a key")
    broken = cli(["restore", str(folder), "--force"])
    assert "the study key in place cannot be used" in broken.output


# --- the recordings -----------------------------------------------------------------------


def test_the_recordings_travel_with_the_backup_and_come_back(app, world, cli, tmp_path):
    peer = log_in(app, "peer_a")
    audio_consented(peer, world)
    made = Tablet(app, peer, world.interviews["pa"])
    assert made.create().status_code == 201
    sent = [made.send(seq)[1] for seq in range(3)]
    live = {
        p.relative_to(app.config["RECORDINGS_DIR"]): p.read_bytes() for p in recording_files(app)
    }
    assert sorted(live.values()) == sorted(sent)

    result = cli(["backup", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    assert "3 encrypted recording chunk files" in result.output
    folder = _backup_folder(tmp_path / "b")
    copied = folder / "recordings" / made.id
    assert stat.S_IMODE(copied.stat().st_mode) == 0o700
    assert {p.relative_to(folder / "recordings"): p.read_bytes() for p in copied.iterdir()} == live
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in copied.iterdir())
    for path in copied.iterdir():
        assert not any(magic in path.read_bytes() for magic in MAGIC)
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["recordings"]["files"] == 3
    assert manifest["recordings"]["bytes"] == sum(len(d) for d in sent)

    # after the backup the recordings go (a withdrawal of audio, say)
    with app.app_context():
        delete_all_recordings(db.session)
        db.session.commit()
    assert recording_files(app) == []
    restored = cli(["restore", str(folder), "--force"])
    assert restored.exit_code == 0, restored.output
    assert "3 recording chunk file(s) restored" in restored.output
    after = {
        p.relative_to(app.config["RECORDINGS_DIR"]): p.read_bytes() for p in recording_files(app)
    }
    assert after == live
    with app.app_context():
        recording = db.session.get(Recording, made.id)
        key = unwrap_key(recording.wrapped_key, recording.kid)
        assert b"".join(audio_stream(recording, key)) == b"".join(fake_sound(s) for s in range(3))


def test_a_backup_whose_recordings_changed_is_refused(app, world, cli, tmp_path):
    peer = log_in(app, "peer_a")
    audio_consented(peer, world)
    made = Tablet(app, peer, world.interviews["pa"])
    made.create()
    made.send(0)
    assert cli(["backup", str(tmp_path / "b")]).exit_code == 0
    folder = _backup_folder(tmp_path / "b")
    (chunk,) = (folder / "recordings" / made.id).iterdir()
    chunk.write_bytes(chunk.read_bytes()[:-1] + b"!")
    result = cli(["restore", str(folder), "--force"])
    assert result.exit_code != 0
    assert "recordings/ does not match" in result.output
    assert "nothing was restored" in result.output


def test_recordings_in_place_count_as_data_a_restore_would_overwrite(app, world, cli, tmp_path):
    assert cli(["backup", str(tmp_path / "b")]).exit_code == 0
    folder = _backup_folder(tmp_path / "b")
    with app.app_context():
        write_chunk(str(uuid.uuid4()), 0, b"x" * 40)
    with app.app_context():
        db.session.remove()
        db.drop_all()
        db.create_all()
    refused = cli(["restore", str(folder)])
    assert refused.exit_code != 0
    assert "recordings (" in refused.output
    assert cli(["restore", str(folder), "--force"]).exit_code == 0
    assert recording_files(app) == []
