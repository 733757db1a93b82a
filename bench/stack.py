"""The app as the benchmarks run it: a store filled at the small and the large size, gunicorn
serving it on loopback, logged-in HTTP clients, and a proxy that counts the bytes a browser
receives.

The server and store come from the soak runs (`tests/soak/server.py`), so both runs start the
app the same way: `python -m gunicorn app:app`, configured through the environment only.
"""

import asyncio
import re
import secrets
import threading
import uuid
from datetime import timedelta
from urllib.parse import urlencode

from sqlalchemy import select

from devdata.demo import seed_cases, seed_participants, seed_users
from interview.participants.registry import register
from interview.store.content import checksum, load_all
from interview.store.extensions import db
from interview.store.models import (
    Case,
    Consent,
    ConsentFormVersion,
    GuideVersion,
    Interview,
    InterviewEvent,
    Note,
    Theme,
    User,
    utcnow,
)
from interview.trust.passwords import hash_password
from tests.soak.tablets import Http
from tests.soak.world import fresh_schema

BENCH_GUIDE = "bench-guide"
NOTES_PER_QUESTION = 2
NOTE_TEXT = (
    "Teamet kom hjem til meg da det var vanskelig, og de snakket med fastlegen slik at jeg "
    "slapp å fortelle alt på nytt. Ventetiden på avrusning var likevel lang."
)


def one_section_guide(source: GuideVersion) -> dict:
    """Return the guide's content with every question in one section (the long page)."""
    content = dict(source.content)
    sections = content["sections"]
    merged = dict(sections[0])
    merged["questions"] = [q for s in sections for q in s["questions"]]
    content["sections"] = [merged]
    content["key"] = BENCH_GUIDE
    return content


def prepare(app, peers: int = 0) -> dict:
    """Build the store: the demo study plus the benchmark's own interviews; return logins.

    With `peers`, also that many peers (`bench-peer-01`, ... in team A, one password), each
    with an interview of their own under way on the long guide, with its notes: the capacity
    figure's interviewing peers (bench/capacity.py).
    """
    fresh_schema(app, migrate=True)
    with app.app_context():
        load_all(db.session)
        seed_cases()
        passwords = seed_users()
        seed_participants()
        db.session.flush()
        guide = db.session.scalars(
            select(GuideVersion).order_by(GuideVersion.version.desc())
        ).first()
        content = one_section_guide(guide)
        long_guide = GuideVersion(
            key=BENCH_GUIDE,
            version=1,
            published=guide.published,
            checksum=checksum(content),
            content=content,
        )
        db.session.add(long_guide)
        db.session.flush()
        form = db.session.scalars(
            select(ConsentFormVersion).order_by(ConsentFormVersion.version.desc())
        ).first()
        peer = db.session.scalars(select(User).where(User.username == "kari")).one()
        case = db.session.scalars(select(Case).where(Case.code == "A")).one()
        themes = list(db.session.scalars(select(Theme).where(Theme.retired.is_(False))))
        page = _started_interview(long_guide, form, peer, case, themes, NOTES_PER_QUESTION)
        sync = _started_interview(long_guide, form, peer, case, themes, 0)
        baseline = _started_interview(long_guide, form, peer, case, themes, 0)
        theme_keys = sorted(t.key for t in themes)
        peer_password = secrets.token_urlsafe(12)
        peer_hash = hash_password(peer_password)
        capacity_peers = []
        for n in range(1, peers + 1):
            user = User(username=f"bench-peer-{n:02}", role="peer", cases=[case])
            user.password_hash = peer_hash
            db.session.add(user)
            db.session.flush()
            capacity_peers.append(
                {
                    "username": user.username,
                    "interview": _started_interview(
                        long_guide, form, user, case, themes, NOTES_PER_QUESTION
                    ),
                }
            )
        passwords.update({p["username"]: peer_password for p in capacity_peers})
        db.session.commit()
        questions = len(content["sections"][0]["questions"])
    return {
        "passwords": passwords,
        "page_interview": page,
        "sync_interview": sync,
        "baseline_interview": baseline,
        "questions": questions,
        "question_keys": [q["key"] for q in content["sections"][0]["questions"]],
        "theme_keys": theme_keys,
        "peers": capacity_peers,
    }


def _started_interview(guide, form, peer, case, themes, notes_per_question: int) -> str:
    participant = register(case, "nb", [peer], None, None, None)
    participant.status = "consented"
    started = utcnow().replace(microsecond=0) - timedelta(minutes=20)
    interview = Interview(
        participant=participant,
        guide_version=guide,
        language="nb",
        place_kind="home",
        planned_at=started,
        started_at=started,
        expected_end_at=started + timedelta(minutes=75),
        status="in_progress",
    )
    db.session.add(interview)
    db.session.flush()
    db.session.add(
        Consent(
            participant_id=participant.id,
            interview_id=interview.id,
            form_version_id=form.id,
            language="nb",
            answers={item["key"]: True for item in form.content["items"]},
            method="paper",
            paper_form_number="B-0001",
            obtained_at=started + timedelta(minutes=2),
            obtained_by_id=peer.id,
        )
    )
    for minutes, kind in ((0, "capacity_check"), (3, "start")):
        db.session.add(
            InterviewEvent(
                interview_id=interview.id,
                kind=kind,
                data={"outcome": "ok"} if kind == "capacity_check" else {},
                recorded_at=started + timedelta(minutes=minutes),
                recorded_by_id=peer.id,
            )
        )
    keys = [q["key"] for s in guide.content["sections"] for q in s["questions"]]
    for n, key in enumerate(k for k in keys for _ in range(notes_per_question)):
        db.session.add(
            Note(
                interview_id=interview.id,
                question_key=key,
                text=NOTE_TEXT,
                polarity=("inhibits", "promotes", None)[n % 3],
                themes=[themes[n % len(themes)]],
                possible_quote=n % 4 == 0,
                author_id=peer.id,
                created_at=started + timedelta(minutes=5 + n),
                updated_at=started + timedelta(minutes=5 + n),
            )
        )
    return interview.id


def login(http: Http, username: str, password: str) -> str:
    """Log in through the real form; return the API's CSRF token."""
    page = http.request("GET", "/login")
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.body.decode())
    form = {"username": username, "password": password, "csrf_token": token.group(1)}
    answer = http.request(
        "POST",
        "/login",
        body=urlencode(form).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    if answer.status not in (302, 303):
        raise RuntimeError(f"login as {username} answered {answer.status}")
    session = http.request("GET", "/api/v1/session", headers={"Accept": "application/json"})
    return session.json()["csrf_token"]


def note_changes(interview_id: str, question_keys: list[str], themes: list[str], n: int):
    """Return `n` note-create changes as a tablet sends them."""
    from tests.soak.tablets import now_iso

    return [
        {
            "change_id": str(uuid.uuid4()),
            "entity": "note",
            "id": str(uuid.uuid4()),
            "base_rev": None,
            "recorded_at": now_iso(),
            "data": {
                "interview_id": interview_id,
                "question_key": question_keys[i % len(question_keys)],
                "text": f"{NOTE_TEXT} ({i})",
                "polarity": ("inhibits", "promotes", None)[i % 3],
                "themes": [themes[i % len(themes)]],
                "possible_quote": i % 4 == 0,
            },
        }
        for i in range(n)
    ]


class CountingProxy:
    """A loopback TCP proxy that counts every byte the server sends back (headers included)."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.received = 0
        self.connections = 0
        self.port = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> int:
        """Start listening; return the port."""
        self._thread.start()
        self._ready.wait(10)
        return self.port

    def reset(self) -> None:
        """Start counting from zero."""
        self.received = 0
        self.connections = 0

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _serve(self, reader, writer) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)

        async def pipe(src, dst, count: bool) -> None:
            try:
                while data := await src.read(65536):
                    if count:
                        self.received += len(data)
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer, False), pipe(up_reader, writer, True))
