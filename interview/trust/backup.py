"""`flask backup` and `flask restore`: both stores copied online, key files kept apart.

A backup is a folder `fact-backup-<UTC time>` holding a copy of the case store and of the
identity key store (SQLite's online backup API, so the app may keep running) and a manifest
(time, Alembic revisions, file names, sha256, row counts per table). Key files never go into
that folder: the key and the data must never travel together. `--keys-to` copies them to a
separate folder of their own. With PostgreSQL the command prints `pg_dump` / `pg_restore`
instructions instead of copying.

`restore` verifies every checksum first, refuses to overwrite a store that holds data unless
told to, copies the files back with the backup API, runs `PRAGMA integrity_check`, and checks
that the key in place opens the restored data. The study key pair's private half
(`STUDY_KEY_FILE`) is a key file like the others: copied apart with `--keys-to`, checked on
restore.
"""

import hashlib
import json
import os
import re
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import click
from flask import Flask, current_app
from sqlalchemy import select
from sqlalchemy.engine import make_url

from interview.config import ROOT
from interview.participants.registry import get_identity
from interview.store.crypto import KeyError_
from interview.store.extensions import db
from interview.store.models import Debrief, IdentityEntry, InterviewEvent, Note, SyncChange
from interview.trust import audit
from interview.trust.study_key import StudyKeyError, load_key_file

FORMAT = 1
MANIFEST = "manifest.json"
KEYS_MANIFEST = "keys.json"
# the case store is copied first: a participant registered between the two copies then leaves
# an identity entry without its participant (harmless), never a participant without its entry
STORE_ORDER = ("casestore", "identity")
# config names that point at key material kept outside the database
KEY_FILE = re.compile(r"_KEYS?_FILE$")
KEY_DIR = re.compile(r"KEYS?_DIR$")
# tables whose rows say nothing about whether a store holds data
BOOKKEEPING = {"alembic_version"}


class BackupError(Exception):
    """A backup or restore that must not go ahead; the message says why to an operator."""


@dataclass
class Store:
    """One of the two databases: the case store or the identity key store."""

    name: str
    url: str
    path: Path | None  # the SQLite file; None for a server database

    @property
    def file_name(self) -> str:
        """Return the name the store's copy has inside a backup folder."""
        return f"{self.name}.db"


@dataclass
class KeySource:
    """Key material named by one config setting: a file, or a folder of key files."""

    setting: str
    path: Path
    is_dir: bool
    env_setting: str | None = None
    env_value: str | None = None

    def files(self) -> list[Path]:
        """Return the key files that exist now (a folder's regular files, sorted)."""
        if self.is_dir:
            if not self.path.is_dir():
                return []
            return sorted(p for p in self.path.iterdir() if p.is_file() and not p.is_symlink())
        return [self.path] if self.path.is_file() else []


@dataclass
class BackupResult:
    """What `take_backup` wrote (or, for PostgreSQL, what it told the operator to run)."""

    folder: Path | None
    manifest: dict | None
    key_files: list[Path] = field(default_factory=list)
    keys_folder: Path | None = None
    uncopied_keys: list[KeySource] = field(default_factory=list)
    env_keys: list[KeySource] = field(default_factory=list)
    instructions: list[str] = field(default_factory=list)


@dataclass
class RestoreResult:
    """What `restore_backup` did and what the operator must look at."""

    restored: list[tuple[Store, dict]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    instructions: list[str] = field(default_factory=list)


# --- where things are ---------------------------------------------------------------------


def _sqlite_path(url: str, instance_path: str) -> Path | None:
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite"):
        return None
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        raise BackupError(f"cannot back up the SQLite store {url!r}: it is not a plain file")
    path = Path(database)
    # Flask-SQLAlchemy reads a relative SQLite path against the instance folder
    return path if path.is_absolute() else Path(instance_path) / path


def stores(app: Flask) -> list[Store]:
    """Return the case store and the identity key store as the app is configured."""
    identity = app.config["SQLALCHEMY_BINDS"]["identity"]
    if isinstance(identity, dict):
        identity = identity["url"]
    urls = {"casestore": str(app.config["SQLALCHEMY_DATABASE_URI"]), "identity": str(identity)}
    return [
        Store(name, urls[name], _sqlite_path(urls[name], app.instance_path)) for name in STORE_ORDER
    ]


def key_sources(config) -> list[KeySource]:
    """Return every configured key file or key folder (settings ending in _KEY_FILE or KEY_DIR)."""
    found = []
    for setting in sorted(config):
        value = config[setting]
        if not isinstance(value, str | os.PathLike) or not str(value):
            continue
        if KEY_FILE.search(setting):
            env_setting = setting[: -len("_FILE")]
            found.append(
                KeySource(
                    setting,
                    Path(value),
                    is_dir=False,
                    env_setting=env_setting,
                    env_value=config.get(env_setting) or None,
                )
            )
        elif KEY_DIR.search(setting):
            found.append(KeySource(setting, Path(value), is_dir=True))
    return found


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def _fingerprint(data: bytes) -> str:
    # 64 bits of a hash of 256-bit key material: enough to tell keys apart, no help to guess one
    return hashlib.sha256(data.strip()).hexdigest()[:16]


def key_fingerprints(sources: list[KeySource]) -> list[dict]:
    """Return, per key, where it comes from and a short fingerprint (never the key)."""
    out = []
    for source in sources:
        if source.env_value:
            out.append(
                {
                    "setting": source.env_setting,
                    "source": "environment",
                    "fingerprint": _fingerprint(source.env_value.encode()),
                }
            )
            continue
        files = source.files()
        if not files:
            out.append({"setting": source.setting, "source": "missing", "fingerprint": None})
        for path in files:
            name = source.setting if not source.is_dir else f"{source.setting}/{path.name}"
            out.append(
                {
                    "setting": name,
                    "source": "file",
                    "file": path.name,
                    "fingerprint": _fingerprint(path.read_bytes()),
                }
            )
    return out


# --- SQLite -------------------------------------------------------------------------------


def _connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        return sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=30)
    return sqlite3.connect(path, timeout=30)


def sqlite_copy(source: Path, target: Path) -> None:
    """Copy a live SQLite database into `target` with the online backup API."""
    src = _connect(source)
    try:
        dst = _connect(target)
        try:
            # one step: the copy is a single consistent snapshot, and writers (WAL) go on
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()


def _tables(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "ORDER BY name"
    )
    return [r[0] for r in rows]


def table_counts(path: Path) -> dict[str, int]:
    """Return the number of rows in every table of a SQLite file."""
    conn = _connect(path, readonly=True)
    try:
        return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in _tables(conn)}
    finally:
        conn.close()


def integrity_check(path: Path) -> str:
    """Return SQLite's `PRAGMA integrity_check` answer ("ok" when the file is sound)."""
    conn = _connect(path, readonly=True)
    try:
        return "; ".join(r[0] for r in conn.execute("PRAGMA integrity_check"))
    finally:
        conn.close()


def stored_revision(path: Path) -> str | None:
    """Return the Alembic revision recorded in a SQLite file, or None (tables made directly)."""
    conn = _connect(path, readonly=True)
    try:
        if "alembic_version" not in _tables(conn):
            return None
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return row[0] if row else None
    finally:
        conn.close()


def app_revision() -> str | None:
    """Return the newest Alembic revision this version of the app ships."""
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory(str(ROOT / "migrations")).get_heads()
    return heads[0] if len(heads) == 1 else ",".join(sorted(heads)) or None


def sha256_file(path: Path) -> str:
    """Return the sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _holds_data(path: Path) -> dict[str, int]:
    if not path.exists() or path.stat().st_size == 0:
        return {}
    counts = table_counts(path)
    return {t: n for t, n in counts.items() if n and t not in BOOKKEEPING}


def _dispose_engines() -> None:
    # pooled connections must not hold a read snapshot of a file that is being replaced
    db.session.remove()
    for engine in {db.engine, *db.engines.values()}:
        engine.dispose()


# --- backup -------------------------------------------------------------------------------


def _stamp(now: datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%SZ")


def _fresh_folder(parent: Path, name: str) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 100):
        folder = parent / (name if n == 1 else f"{name}-{n}")
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            continue
        os.chmod(folder, 0o700)
        return folder
    raise BackupError(f"too many backups named {name} in {parent}")


def check_apart(dest_dir: Path, keys_to: Path | None, sources: list[KeySource]) -> None:
    """Refuse any layout in which the data and the keys would end up in one folder tree."""
    for source in sources:
        if source.path.exists() and _inside(source.path, dest_dir):
            raise BackupError(
                f"{dest_dir} holds the key {source.path} ({source.setting}); a backup there "
                "would travel with its key. Choose a folder that holds no key files."
            )
    if keys_to is None:
        return
    if _inside(keys_to, dest_dir) or _inside(dest_dir, keys_to):
        raise BackupError(
            f"--keys-to {keys_to} and the backup folder {dest_dir} are one folder tree; the "
            "keys must be kept apart from the data. Choose a folder on other storage."
        )


def pg_dump_instructions(found: list[Store], dest_dir: Path, stamp: str) -> list[str]:
    """Return the commands an operator runs to back up PostgreSQL stores with pg_dump."""
    lines = [
        "The stores are PostgreSQL databases: back them up with pg_dump (a consistent snapshot, "
        "safe while the app runs), each into a file of its own:",
    ]
    variables = {"casestore": "DATABASE_URL", "identity": "IDENTITY_DATABASE_URL"}
    for store in found:
        dump = dest_dir / f"{store.name}-{stamp}.dump"
        lines.append(
            f'  pg_dump --format=custom --no-owner --file="{dump}" "${variables[store.name]}"'
        )
    lines += [
        f'  (cd "{dest_dir}" && sha256sum *-{stamp}.dump > SHA256SUMS-{stamp})',
        "Restore into empty databases, with the app stopped:",
    ]
    for store in found:
        lines.append(
            "  pg_restore --clean --if-exists --no-owner --single-transaction "
            f'--dbname="${variables[store.name]}" "{store.name}-{stamp}.dump"'
        )
    lines.append("  flask db upgrade")
    for store in found:
        shown = make_url(store.url).set(drivername="postgresql")
        lines.append(f"  ({variables[store.name]}: {shown.render_as_string(hide_password=True)})")
    lines.append(
        "pg_dump files are not encrypted: keep them on encrypted storage, never with the keys."
    )
    return lines


def copy_keys(sources: list[KeySource], keys_to: Path, stamp: str, backup_name: str) -> Path:
    """Copy every key file into a new 0700 folder under `keys_to`, each file 0600."""
    folder = _fresh_folder(keys_to, f"fact-keys-{stamp}")
    listed = []
    for source in sources:
        for path in source.files():
            relative = Path(source.setting.lower()) / path.name
            target = folder / relative
            target.parent.mkdir(mode=0o700, exist_ok=True)
            # created 0600 before a byte is written, so the key is never readable by others
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(path.read_bytes())
            os.chmod(target, 0o600)
            listed.append(
                {"setting": source.setting, "file": str(relative), "restore_to": str(path)}
            )
    (folder / KEYS_MANIFEST).write_text(
        json.dumps({"format": FORMAT, "backup": backup_name, "keys": listed}, indent=2) + "\n"
    )
    os.chmod(folder / KEYS_MANIFEST, 0o600)
    return folder


def take_backup(
    app: Flask, dest_dir: Path, keys_to: Path | None = None, now: datetime | None = None
) -> BackupResult:
    """Back up both stores into a new folder under `dest_dir`; copy keys only to `keys_to`."""
    now = now or datetime.now(UTC)
    stamp = _stamp(now)
    found = stores(app)
    sources = key_sources(app.config)
    check_apart(dest_dir, keys_to, sources)
    result = BackupResult(folder=None, manifest=None)
    result.env_keys = [s for s in sources if s.env_value]
    file_sources = [s for s in sources if not s.env_value and s.files()]

    if any(store.path is None for store in found):
        result.instructions = pg_dump_instructions(found, dest_dir, stamp)
    else:
        for store in found:
            if not store.path.is_file():
                raise BackupError(f"the {store.name} store {store.path} does not exist")
        folder = _fresh_folder(dest_dir, f"fact-backup-{stamp}")
        manifest = {
            "format": FORMAT,
            "app": "FACT Interview Companion",
            "created_at": now.replace(microsecond=0).isoformat().replace("+00:00", "Z"),
            "alembic_head": app_revision(),
            "stores": {},
            "keys": key_fingerprints(sources),
            "keys_copied_separately": keys_to is not None,
        }
        for store in found:
            target = folder / store.file_name
            sqlite_copy(store.path, target)
            conn = _connect(target)
            try:
                # one self-contained file: no -wal or -shm beside it
                conn.execute("PRAGMA journal_mode=DELETE")
            finally:
                conn.close()
            os.chmod(target, 0o600)
            check = integrity_check(target)
            if check != "ok":
                raise BackupError(f"the copy of the {store.name} store is damaged: {check}")
            manifest["stores"][store.name] = {
                "file": store.file_name,
                "sha256": sha256_file(target),
                "bytes": target.stat().st_size,
                "alembic_revision": stored_revision(target),
                "tables": table_counts(target),
            }
        path = folder / MANIFEST
        path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        os.chmod(path, 0o600)
        result.folder, result.manifest = folder, manifest

    if keys_to is not None and file_sources:
        backup_name = result.folder.name if result.folder else f"pg_dump {stamp}"
        result.keys_folder = copy_keys(file_sources, keys_to, stamp, backup_name)
        result.key_files = sorted(p for p in result.keys_folder.rglob("*") if p.is_file())
    else:
        result.uncopied_keys = file_sources
    return result


# --- restore ------------------------------------------------------------------------------


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
    if problems:
        raise BackupError("the backup is not intact, nothing was restored: " + "; ".join(problems))
    return manifest


def pg_restore_instructions(found: list[Store]) -> list[str]:
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


# nothing in the stores is sealed to the study key (what it opens is sealed again with the
# identity or research key on arrival): the key that matters is the one tablets hold now
STUDY_KEY_CHANGED = (
    "the study key in place (STUDY_KEY_FILE) is not the one in use when this backup was "
    "taken. The restored stores do not need it: keep the key in place, which the tablets seal "
    "to now. Keep the backup's copy as well: a rescue copy sealed to it opens only with it."
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
        result.instructions = pg_restore_instructions(found)
        return result
    manifest = read_manifest(backup_dir)
    if not force:
        busy = []
        for store in found:
            held = _holds_data(store.path)
            if held:
                busy.append(f"{store.name} ({store.path}: {sum(held.values())} rows)")
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


# --- the commands -------------------------------------------------------------------------


def _short(path: Path) -> str:
    return f"{path.name:<16} {path.stat().st_size:>12,} bytes"


@click.command("backup")
@click.argument("dest_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--keys-to",
    type=click.Path(file_okay=False, path_type=Path),
    help="Copy the key files (0600) into this folder; never one inside DEST_DIR.",
)
def backup_command(dest_dir: Path, keys_to: Path | None) -> None:
    """Back up the case store and the identity key store (online) into DEST_DIR."""
    app = current_app._get_current_object()
    try:
        result = take_backup(app, dest_dir, keys_to)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    except (sqlite3.Error, OSError) as exc:
        raise click.ClickException(f"the backup failed: {exc}") from exc
    for line in result.instructions:
        click.echo(line)
    if result.folder is not None:
        click.echo(f"Backup written to {result.folder}:")
        for name, entry in result.manifest["stores"].items():
            rows = sum(entry["tables"].values())
            click.echo(
                f"  {_short(result.folder / entry['file'])}  sha256 {entry['sha256'][:16]}…  "
                f"{len(entry['tables'])} tables, {rows} rows ({name})"
            )
        click.echo(f"  {_short(result.folder / MANIFEST)}")
        audit.record(
            "backup_taken", backup=result.folder.name, keys_copied=result.keys_folder is not None
        )
        db.session.commit()
    if result.keys_folder is not None:
        click.echo(f"Key files written to {result.keys_folder} (mode 0600):")
        for path in result.key_files:
            click.echo(f"  {path.relative_to(result.keys_folder)}")
        click.echo("Keep that folder on other storage than the backup; never send them together.")
    if result.uncopied_keys:
        click.echo("Key files NOT copied (the key and the data must never travel together):")
        for source in result.uncopied_keys:
            for path in source.files():
                click.echo(f"  {source.setting}: {path}")
        click.echo(
            "Without them the backup's identity data and sealed text cannot be read: copy them "
            "to a separate, protected place, or run again with --keys-to DIR."
        )
    for source in result.env_keys:
        click.echo(
            f"{source.env_setting} comes from the environment: keep it in your secret store; "
            "nothing was copied."
        )


@click.command("restore")
@click.argument("backup_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite stores that hold data.")
def restore_command(backup_dir: Path, force: bool) -> None:
    """Restore both stores from a backup folder made by `flask backup`, after checking it."""
    app = current_app._get_current_object()
    try:
        result = restore_backup(app, backup_dir, force)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    except (sqlite3.Error, OSError) as exc:
        raise click.ClickException(f"the restore failed: {exc}") from exc
    for line in result.instructions:
        click.echo(line)
    for store, entry in result.restored:
        rows = sum(entry["tables"].values())
        click.echo(f"Restored {store.name} into {store.path} ({rows} rows, sha256 verified)")
    for line in result.notes:
        click.echo(f"  {line}")
    for warning in result.warnings:
        click.echo(f"WARNING: {warning}", err=True)
    if result.restored and not result.warnings:
        click.echo("The keys in place open the restored data.")


def init_app(app: Flask) -> None:
    """Register `flask backup` and `flask restore`."""
    app.cli.add_command(backup_command)
    app.cli.add_command(restore_command)
