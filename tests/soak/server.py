"""The real app under gunicorn on a free loopback port, and the store it runs on.

The server gets its store and keys through the environment (DATABASE_URL,
IDENTITY_DATABASE_URL, SECRET_KEY, IDENTITY_KEY), so nothing lands in the project's
instance/ folder; this process opens the same store with `create_app` to set it up and to
check it afterwards.
"""

import base64
import http.client
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from interview import create_app
from interview.config import ROOT


def _psycopg(url: str) -> str:
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


@dataclass
class Store:
    """Where the case store and the identity key store live, and the keys the server uses."""

    case_url: str
    identity_url: str
    folder: Path
    secret_key: str
    identity_key: str

    @property
    def kind(self) -> str:
        """Return 'postgresql' or 'sqlite'."""
        return "postgresql" if self.case_url.startswith("postgres") else "sqlite"

    def env(self) -> dict[str, str]:
        """Return the server's environment."""
        env = dict(os.environ)
        env.update(
            DATABASE_URL=self.case_url,
            IDENTITY_DATABASE_URL=self.identity_url,
            SECRET_KEY=self.secret_key,
            IDENTITY_KEY=self.identity_key,
            RESEARCH_KEY_FILE=str(self.folder / "research.key"),
            STUDY_KEY_FILE=str(self.folder / "study-key.pem"),
            DOCUMENT_CACHE_DIR=str(self.folder / "documents"),
            PYTHONUNBUFFERED="1",
        )
        return env

    def app(self):
        """Return an app on this store for setting up and checking (not for serving)."""
        return create_app(
            {
                "SQLALCHEMY_DATABASE_URI": _psycopg(self.case_url),
                "SQLALCHEMY_BINDS": {"identity": _psycopg(self.identity_url)},
                "SECRET_KEY": self.secret_key,
                "IDENTITY_KEY": self.identity_key,
                "IDENTITY_KEY_FILE": str(self.folder / "identity.key"),
                "RESEARCH_KEY_FILE": str(self.folder / "research.key"),
                "STUDY_KEY_FILE": str(self.folder / "study-key.pem"),
                "DOCUMENT_CACHE_DIR": str(self.folder / "documents"),
            }
        )


def store_from_env(folder: Path) -> Store:
    """Use DATABASE_URL / IDENTITY_DATABASE_URL when set, else two SQLite files in `folder`."""
    case_url = os.environ.get("DATABASE_URL")
    identity_url = os.environ.get("IDENTITY_DATABASE_URL")
    if not case_url:
        case_url = f"sqlite:///{folder / 'casestore.db'}"
        identity_url = f"sqlite:///{folder / 'identity.db'}"
    elif not identity_url:
        raise SystemExit("DATABASE_URL is set: set IDENTITY_DATABASE_URL as well")
    return Store(
        case_url,
        identity_url,
        folder,
        secrets.token_hex(32),
        base64.urlsafe_b64encode(os.urandom(32)).decode(),
    )


def _live_members(pgid: int) -> list[int]:
    """Return the processes of a group that still run (zombies hold no socket or connection)."""
    live = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name may hold spaces: the fields after its closing parenthesis are fixed
        fields = stat[stat.rindex(")") + 2 :].split()
        state, group = fields[0], int(fields[2])
        if group == pgid and state not in ("Z", "X"):
            live.append(int(entry.name))
    return live


def free_port() -> int:
    """Return a free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """gunicorn serving app:app; killed as a whole process group, master and workers."""

    def __init__(
        self,
        store: Store,
        port: int,
        workers: int = 2,
        threads: int = 4,
        env: dict[str, str] | None = None,
    ):
        self.store = store
        self.env = env or {}  # settings on top of the store's (e.g. one setting changed for a run)
        self.port = port
        self.workers = workers
        self.threads = threads
        self.proc: subprocess.Popen | None = None
        self.log = store.folder / "gunicorn.log"
        self.access_log = store.folder / "access.log"
        self.starts = 0

    def start(self, timeout: float = 180.0) -> float:
        """Start gunicorn and wait until it answers; return the seconds it took."""
        began = time.monotonic()
        cmd = [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(self.workers),
            "--threads",
            str(self.threads),
            # a big batch on a loaded two-core machine may take a while; never cut it short
            "--timeout",
            "300",
            "--graceful-timeout",
            "30",
            "--access-logfile",
            str(self.access_log),
            "--access-logformat",
            "%(s)s %(D)s %(m)s %(U)s",
            "app:app",
        ]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                env={**self.store.env(), **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: one killpg reaches every worker
            )
        self.starts += 1
        deadline = began + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited at start-up:\n{self.tail()}")
            if self._answers():
                return time.monotonic() - began
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not answer within {timeout:.0f} s:\n{self.tail()}")

    def _answers(self) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", "/api/v1/session", headers={"Accept": "application/json"})
            return conn.getresponse().status == 401
        except OSError:
            return False
        finally:
            conn.close()

    def kill(self) -> None:
        """SIGKILL the master and every worker at once, and wait until all are gone."""
        if self.proc is None:
            return
        pgid = self.proc.pid
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self._wait_group_gone(pgid)
        self.proc = None

    def stop(self) -> None:
        """Stop gracefully (SIGTERM); kill the group if it lingers."""
        if self.proc is None:
            return
        pgid = self.proc.pid
        try:
            os.killpg(pgid, signal.SIGTERM)
            self.proc.wait(timeout=60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self._wait_group_gone(pgid)
        self.proc = None

    @staticmethod
    def _wait_group_gone(pgid: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _live_members(pgid):
                return
            time.sleep(0.05)
        raise RuntimeError(f"process group {pgid} still alive after SIGKILL")

    def tail(self, lines: int = 40) -> str:
        """Return the end of gunicorn's log."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_excerpts(self, needle: str, after: int = 30, limit: int = 3) -> list[str]:
        """Return the log lines from each of the first few lines containing `needle`."""
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return []
        hits = [i for i, line in enumerate(lines) if needle in line][:limit]
        return ["\n".join(lines[i : i + after]) for i in hits]

    def latencies(self, path: str = "/api/v1/sync") -> list[tuple[int, float]]:
        """Return (status, seconds) of every logged request to `path`."""
        out = []
        try:
            lines = self.access_log.read_text(errors="replace").splitlines()
        except OSError:
            return out
        for line in lines:
            parts = line.split()
            if len(parts) == 4 and parts[3] == path and parts[0].isdigit():
                out.append((int(parts[0]), int(parts[1]) / 1e6))
        return out

    def log_count(self, needle: str) -> int:
        """Count log lines containing `needle` (e.g. unhandled errors)."""
        try:
            return sum(needle in line for line in self.log.read_text(errors="replace").splitlines())
        except OSError:
            return 0
