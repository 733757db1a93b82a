"""Restoring a backup: read and check its manifest, put the stores back, and warn about keys
that do not fit and withdrawals made since the backup (docs/data-protection.md §9).
"""

import json
import os
import shutil
from pathlib import Path

from flask import Flask
from sqlalchemy import select

from interview.store.crypto import KeyError_
from interview.store.extensions import db
from interview.store.identity import get_identity
from interview.store.models import Debrief, IdentityEntry, InterviewEvent, Note, SyncChange
from interview.trust import audit
from interview.trust.backup import (
    FORMAT,
    MANIFEST,
    RECORDINGS,
    STORE_ORDER,
    BackupError,
    RestoreResult,
    Store,
    _connect,
    _dispose_engines,
    _holds_data,
    _tables,
    app_revision,
    copy_recordings,
    integrity_check,
    key_fingerprints,
    key_sources,
    recording_files,
    recordings_entry,
    sha256_file,
    sqlite_copy,
    stores,
    table_counts,
)
from interview.trust.study_key import StudyKeyError, load_key_file


def read_manifest(backup_dir: Path) -> dict:
    """Read a backup's manifest and check every file against it; raise BackupError if off."""
    path = backup_dir / MANIFEST
    if not path.is_file():
        raise BackupError(
            f"{backup_dir} has no {MANIFEST}: it is not a backup made by flask backup"
        )
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise BackupError(f"{path} is not readable JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{path} is not a manifest this version can read")
    entries = manifest.get("stores")
    if not isinstance(entries, dict) or set(entries) != set(STORE_ORDER):
        raise BackupError(f"{path} must list exactly the stores {', '.join(STORE_ORDER)}")
    problems = []
    for name in STORE_ORDER:
        entry = entries[name]
        file_name = entry.get("file") if isinstance(entry, dict) else None
        # a name like ../../x would read (and then restore) a file outside the backup
        if not isinstance(file_name, str) or Path(file_name).name != file_name or not file_name:
            raise BackupError(f"{path}: the {name} entry names no plain file")
        copy = backup_dir / file_name
        if not copy.is_file():
            problems.append(f"{file_name} is missing")
        elif sha256_file(copy) != entry.get("sha256"):
            problems.append(f"{file_name} does not match its sha256 in the manifest")
    problems += _recordings_problems(backup_dir, manifest)
    if problems:
        raise BackupError("the backup is not intact, nothing was restored: " + "; ".join(problems))
    return manifest


def _recordings_problems(backup_dir: Path, manifest: dict) -> list[str]:
    """Check the backup's recordings against the manifest (a backup from before them has none)."""
    if "recordings" not in manifest:
        return []
    entry = manifest["recordings"]
    if not isinstance(entry, dict) or entry.get("folder") != RECORDINGS:
        raise BackupError(f"{backup_dir / MANIFEST}: the recordings entry names no plain folder")
    found = recordings_entry(backup_dir / RECORDINGS)
    if any(found[k] != entry.get(k) for k in ("files", "bytes", "sha256")):
        return [f"{RECORDINGS}/ does not match its files and sha256 in the manifest"]
    return []


def _restore_recordings(app: Flask, backup_dir: Path, manifest: dict) -> str:
    """Put the backup's recordings in place of those there (none, for a backup from before)."""
    target = Path(app.config["RECORDINGS_DIR"])
    target.parent.mkdir(parents=True, exist_ok=True)
    fresh = target.with_name(f".{target.name}.restoring")
    old = target.with_name(f".{target.name}.replaced")
    for leftover in (fresh, old):
        shutil.rmtree(leftover, ignore_errors=True)
    if "recordings" in manifest:
        copy_recordings(backup_dir / RECORDINGS, fresh)
    else:
        fresh.mkdir(mode=0o700)
    if target.exists():
        os.replace(target, old)
    os.replace(fresh, target)
    shutil.rmtree(old, ignore_errors=True)
    entry = recordings_entry(target)
    expected = manifest.get("recordings") or {"files": 0, "bytes": 0}
    if entry["files"] != expected.get("files") or entry["bytes"] != expected.get("bytes"):
        raise BackupError(f"the restored recordings in {target} do not match the manifest")
    return f"{entry['files']} recording chunk file(s) restored into {target}"


def pg_restore_instructions(found: list[Store], recordings: Path | None = None) -> list[str]:
    """Return the commands an operator runs to restore PostgreSQL stores from pg_dump files."""
    variables = {"casestore": "DATABASE_URL", "identity": "IDENTITY_DATABASE_URL"}
    lines = [
        "The stores are PostgreSQL databases: restore them from their pg_dump files with the "
        "app stopped, each into its own database:",
    ]
    for store in found:
        lines.append(
            "  pg_restore --clean --if-exists --no-owner --single-transaction "
            f'--dbname="${variables[store.name]}" {store.name}-<time>.dump'
        )
    lines += [
        "  flask db upgrade",
        "Check the sha256 of each dump first (sha256sum -c SHA256SUMS-<time>), and put the key "
        "files saved with the backup back in place before starting the app.",
    ]
    if recordings is not None:
        lines.append(
            "Put the audio recordings copied with the dumps back in place of those there: "
            f'rm -rf "{recordings}" && cp -a recordings-<time> "{recordings}"'
        )
    return lines


def _withdrawn(path: Path) -> dict[str, str]:
    """Return {participant id: code} of the withdrawn participants in a case store file."""
    if not path.is_file():
        return {}
    conn = _connect(path, readonly=True)
    try:
        if "participant" not in _tables(conn):
            return {}
        rows = conn.execute("SELECT id, code FROM participant WHERE status = 'withdrawn'")
        return dict(rows.fetchall())
    finally:
        conn.close()


def _counter(path: Path) -> int:
    if not path.is_file():
        return 0
    conn = _connect(path, readonly=True)
    try:
        if "sync_counter" not in _tables(conn):
            return 0
        row = conn.execute("SELECT value FROM sync_counter WHERE id = 1").fetchone()
        return row[0] if row and row[0] else 0
    finally:
        conn.close()


def _keep_counter_ahead(path: Path, value: int) -> bool:
    """Never let the sync sequence go back: tablets hold cursors from the store replaced."""
    if value <= _counter(path):
        return False
    conn = _connect(path)
    try:
        with conn:
            done = conn.execute("UPDATE sync_counter SET value = ? WHERE id = 1", (value,))
            if done.rowcount == 0:
                conn.execute("INSERT INTO sync_counter (id, value) VALUES (1, ?)", (value,))
    finally:
        conn.close()
    return True


def key_warnings(app: Flask, manifest: dict) -> list[str]:
    """Check that the keys in place are there, are those of the backup, and open its data."""
    warnings = []
    sources = key_sources(app.config)
    for source in sources:
        if not source.env_value and not source.files():
            warnings.append(
                f"the key {source.setting} is missing ({source.path}): put back the copy kept "
                "with this backup (flask backup --keys-to)"
            )
    now = {k["setting"]: k.get("fingerprint") for k in key_fingerprints(sources)}
    for recorded in manifest.get("keys") or []:
        setting, fingerprint = recorded.get("setting"), recorded.get("fingerprint")
        if fingerprint and setting in now and now[setting] and now[setting] != fingerprint:
            warnings.append(
                STUDY_KEY_CHANGED
                if setting == "STUDY_KEY_FILE"
                else f"the key {setting} in place is not the key in use when this backup was taken"
            )
    warnings += _study_key_warnings(app)
    warnings += _decrypt_warnings(app)
    return warnings


# what the study key opens is sealed again with the identity or research key on arrival, but
# for the recordings' keys: the key that matters is the one tablets hold now, and the older
# one is kept for what was recorded under it (docs/recordings.md)
STUDY_KEY_CHANGED = (
    "the study key in place (STUDY_KEY_FILE) is not the one in use when this backup was "
    "taken: keep the key in place, which the tablets seal to now. Keep the backup's copy as "
    "well: the audio recordings made under it, and a rescue copy sealed to it, open only "
    "with it."
)


def _study_key_warnings(app: Flask) -> list[str]:
    path = Path(app.config.get("STUDY_KEY_FILE") or "")
    if not str(path) or not path.is_file():
        return []  # a missing key file is named above
    try:
        load_key_file(path)
    except StudyKeyError as exc:
        return [
            f"the study key in place cannot be used ({exc}): tablets cannot seal signatures "
            "and rescue copies cannot be opened; put back the copy kept with this backup"
        ]
    return []


def _decrypt_warnings(app: Flask) -> list[str]:
    warnings = []
    with app.app_context():
        _dispose_engines()
        try:
            entry = db.session.scalars(
                select(IdentityEntry)
                .where(
                    (IdentityEntry.name_enc.is_not(None)) | IdentityEntry.contact_enc.is_not(None)
                )
                .limit(1)
            ).first()
            if entry is not None:
                get_identity(entry.participant_id)
        except KeyError_:
            warnings.append(
                "the identity key in place cannot decrypt the restored identity key store: "
                "names and contact details cannot be read until the key kept with this backup "
                "is put back"
            )
        except Exception as exc:  # an older schema, say: the check itself could not run
            warnings.append(_unchecked("identity key store", exc))
            db.session.rollback()
        try:
            # note and debrief text and waiting sync payloads are sealed with the research key:
            # reading one of each proves the key in place opens the restored case store
            for model, attribute in (
                (Note, "text"),
                (Debrief, "reflection"),
                (SyncChange, "payload"),
                (InterviewEvent, "comment"),
            ):
                # the sealed column itself: the store cannot compare sealed words
                column = getattr(model, f"{attribute}_enc")
                row = db.session.scalars(select(model).where(column.is_not(None)).limit(1)).first()
                if row is not None:
                    getattr(row, attribute)
        except KeyError_:
            warnings.append(
                "the research key in place cannot decrypt note or debrief text in the restored "
                "case store: put back the key files kept with this backup"
            )
        except Exception as exc:  # as above
            warnings.append(_unchecked("case store", exc))
        finally:
            db.session.rollback()
            db.session.remove()
    return warnings


def _unchecked(what: str, exc: Exception) -> str:
    return (
        f"the keys could not be checked against the restored {what} ({type(exc).__name__}); "
        "run flask db upgrade, then open a participant's identity page and an interview's notes"
    )


def restore_backup(app: Flask, backup_dir: Path, force: bool = False) -> RestoreResult:
    """Restore both stores from a verified backup folder; refuse over data unless `force`."""
    result = RestoreResult()
    found = stores(app)
    if any(store.path is None for store in found):
        result.instructions = pg_restore_instructions(found, Path(app.config["RECORDINGS_DIR"]))
        return result
    manifest = read_manifest(backup_dir)
    if not force:
        busy = []
        for store in found:
            held = _holds_data(store.path)
            if held:
                busy.append(f"{store.name} ({store.path}: {sum(held.values())} rows)")
        held_recordings = recording_files(Path(app.config["RECORDINGS_DIR"]))
        if held_recordings:
            busy.append(
                f"recordings ({app.config['RECORDINGS_DIR']}: {len(held_recordings)} files)"
            )
        if busy:
            raise BackupError(
                "these stores hold data and would be overwritten: "
                + ", ".join(busy)
                + ". Take a backup of them first, stop the app, then use --force."
            )
    case_path = next(s.path for s in found if s.name == "casestore")
    withdrawn_before = _withdrawn(case_path)
    counter_before = _counter(case_path)

    with app.app_context():
        _dispose_engines()
    for store in found:
        entry = manifest["stores"][store.name]
        store.path.parent.mkdir(parents=True, exist_ok=True)
        sqlite_copy(backup_dir / entry["file"], store.path)
    with app.app_context():
        _dispose_engines()

    for store in found:
        entry = manifest["stores"][store.name]
        check = integrity_check(store.path)
        if check != "ok":
            raise BackupError(f"PRAGMA integrity_check on the restored {store.name}: {check}")
        counts = table_counts(store.path)
        if counts != entry.get("tables"):
            raise BackupError(
                f"the restored {store.name} store does not hold the rows the manifest lists"
            )
        result.restored.append((store, entry))
        result.notes.append(f"PRAGMA integrity_check on {store.name}: ok")
    result.notes.append(_restore_recordings(app, backup_dir, manifest))

    if _keep_counter_ahead(case_path, counter_before):
        result.notes.append(
            f"the sync sequence continues from {counter_before}, so tablets' cursors stay valid"
        )
    back = {pid: code for pid, code in withdrawn_before.items() if pid not in _withdrawn(case_path)}
    if back:
        result.warnings.append(
            f"{len(back)} participant(s) withdrew after this backup was taken and are NOT "
            f"withdrawn in the restored store: {', '.join(sorted(back.values()))}. A coordinator "
            "must record each withdrawal again before anyone uses the store."
        )
    app_head, revisions = (
        app_revision(),
        {e.get("alembic_revision") for e in manifest["stores"].values()},
    )
    if app_head and any(r and r != app_head for r in revisions):
        result.warnings.append(
            f"the backup's schema ({', '.join(sorted(r for r in revisions if r))}) is not this "
            f"app's ({app_head}): run flask db upgrade before starting the app"
        )
    result.warnings += key_warnings(app, manifest)

    with app.app_context():
        try:
            audit.record(
                "store_restored",
                backup=backup_dir.name,
                backup_created_at=manifest.get("created_at"),
            )
            db.session.commit()
        except Exception as exc:  # an older schema: the restore stands, the operator is told
            db.session.rollback()
            result.warnings.append(
                f"the restore could not be written to the audit log ({type(exc).__name__})"
            )
    return result
