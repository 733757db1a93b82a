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
import shutil
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from flask import Flask
from sqlalchemy.engine import make_url

from interview.config import ROOT
from interview.store.extensions import db

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

# the recordings' folder inside a backup folder
RECORDINGS = "recordings"
# a recording's folder is named by its id; a folder being deleted (".<id>.deleted") is not one
RECORDING_FOLDER = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


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


def recording_files(folder: Path) -> list[Path]:
    """Return the chunk files of every recording under `folder`, by path (none if no folder)."""
    if not folder.is_dir():
        return []
    found = []
    for sub in sorted(folder.iterdir()):
        if sub.is_dir() and not sub.is_symlink() and RECORDING_FOLDER.fullmatch(sub.name):
            found += sorted(p for p in sub.glob("*.chunk") if p.is_file() and not p.is_symlink())
    return found


def recordings_entry(folder: Path) -> dict:
    """Return the manifest's entry for a recordings folder: files, bytes, one SHA-256 of all."""
    digest = hashlib.sha256()
    files = recording_files(folder)
    total = 0
    for path in files:
        size = path.stat().st_size
        total += size
        relative = path.relative_to(folder).as_posix()
        digest.update(f"{relative}\t{size}\t{sha256_file(path)}\n".encode())
    return {"folder": RECORDINGS, "files": len(files), "bytes": total, "sha256": digest.hexdigest()}


def copy_recordings(source: Path, target: Path) -> None:
    """Copy the chunk files of `source` into a new folder `target` (folders 0700, files 0600)."""
    target.mkdir(mode=0o700)
    os.chmod(target, 0o700)
    for path in recording_files(source):
        folder = target / path.parent.name
        if not folder.exists():
            folder.mkdir(mode=0o700)
        copy = folder / path.name
        fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out, path.open("rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)


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


def recordings_instructions(app: Flask, dest_dir: Path, stamp: str) -> list[str]:
    """Return the commands that copy the recordings beside the pg_dump files, and back."""
    folder = Path(app.config["RECORDINGS_DIR"])
    copy = dest_dir / f"recordings-{stamp}"
    return [
        "The audio recordings are files (encrypted, their keys in the case store): copy them "
        "right after the dumps, and back with the app stopped:",
        f'  cp -a "{folder}" "{copy}"',
        f'  rm -rf "{folder}" && cp -a "{copy}" "{folder}"',
    ]


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
        result.instructions += recordings_instructions(app, dest_dir, stamp)
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
        # after the stores: a chunk that arrives in between is a file without a row (harmless)
        recordings = Path(app.config["RECORDINGS_DIR"])
        copy_recordings(recordings, folder / RECORDINGS)
        manifest["recordings"] = recordings_entry(folder / RECORDINGS)
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
