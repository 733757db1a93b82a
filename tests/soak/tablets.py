"""A simulated tablet that talks to the real server over HTTP, as static/js/ does.

It logs in through the login form, takes its CSRF token from `GET /api/v1/session`, keeps an
outbox like store.js (one entry per record per request, a sent entry's payload frozen, an edit
behind an unanswered change waiting for its rev, coalescing while unsent) and drains it to
`POST /api/v1/sync`. Faults are injected per request: lost requests, lost answers, the same
batch twice (one after the other or at once), batches out of order (edits before their create,
notes before their interview), expired sessions and stale CSRF tokens.

Every change the tablet makes is written down in its ledger with the answer that took it out
of the outbox, so the store can be checked against what the tablets were told.
"""

import http.client
import json
import random
import re
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import urlencode

FAULTS = ("lost_request", "lost_response", "duplicate", "reorder", "expired", "stale_csrf")
EDITABLE = {
    "note": ("text", "polarity", "themes", "possible_quote", "deleted"),
    "debrief": ("wellbeing", "reflection", "wants_debrief_talk", "participant_follow_up"),
    "interview": ("current_section",),
}
DEFAULTS = {"note": {"polarity": None, "themes": [], "possible_quote": False, "deleted": False}}
QUIET_KINDS = ("pause", "resume", "check_in", "distress_1")


def now_iso() -> str:
    """Return the current UTC time as the tablet writes `recorded_at`."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


# --- HTTP -------------------------------------------------------------------------------


class NetworkError(Exception):
    """No answer came back; `after_send` tells whether the request had gone out whole."""

    def __init__(self, message: str, after_send: bool):
        super().__init__(message)
        self.after_send = after_send


class NeedLogin(Exception):
    """The server answered 401: nobody is logged in on this tablet."""


class CsrfExpired(Exception):
    """The server answered 400 csrf: fetch a fresh token and send again."""


class ServerRefused(Exception):
    """Any other answer than 200 to a sync; the outbox keeps every entry."""

    def __init__(self, status: int, body: bytes):
        super().__init__(f"HTTP {status}: {body[:200]!r}")
        self.status = status


@dataclass
class Answer:
    """An HTTP answer."""

    status: int
    headers: Any
    body: bytes

    def json(self) -> Any:
        """Return the body parsed as JSON (an empty dict when it is not JSON)."""
        try:
            return json.loads(self.body)
        except ValueError:
            return {}


class Http:
    """A cookie-keeping HTTP client with a fresh connection per request (servers get killed)."""

    def __init__(self, host: str, port: int, timeout: float = 180.0):
        self.host, self.port, self.timeout = host, port, timeout
        self.cookies: dict[str, str] = {}

    def copy(self) -> "Http":
        """Return a second client holding the same cookies (a second connection at once)."""
        other = Http(self.host, self.port, self.timeout)
        other.cookies = dict(self.cookies)
        return other

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict | None = None,
        drop_answer: bool = False,
        on_sent=None,
    ) -> Answer | None:
        """Send one request; with `drop_answer` hang up once it is sent (a lost answer)."""
        hdrs = dict(headers or {})
        if self.cookies:
            hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            try:
                conn.request(method, path, body=body, headers=hdrs)
            except (OSError, http.client.HTTPException) as exc:
                raise NetworkError(f"{type(exc).__name__}: {exc}", after_send=False) from None
            if on_sent:
                on_sent()
            if drop_answer:
                return None
            try:
                resp = conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                raise NetworkError(f"{type(exc).__name__}: {exc}", after_send=True) from None
            self._take_cookies(resp.headers.get_all("Set-Cookie") or [])
            return Answer(resp.status, resp.headers, data)
        finally:
            conn.close()

    def _take_cookies(self, raw_headers: list[str]) -> None:
        for raw in raw_headers:
            jar = SimpleCookie()
            try:
                jar.load(raw)
            except CookieError:
                continue
            for name, morsel in jar.items():
                gone = morsel["max-age"] == "0" or "1970" in morsel["expires"]
                if gone or morsel.value == "":
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value


# --- shared counters --------------------------------------------------------------------


class Stats:
    """Counters shared by every tablet thread, plus the number of sync requests in flight."""

    def __init__(self):
        self._lock = threading.Lock()
        self.counts: Counter = Counter()
        self.in_flight = 0
        self.in_flight_changes = 0

    def add(self, name: str, n: int = 1) -> None:
        """Add n to a counter."""
        with self._lock:
            self.counts[name] += n

    def flight(self, delta: int, changes: int) -> None:
        """Count a sync request (and the changes it carries) going out or coming back."""
        with self._lock:
            self.in_flight += delta
            self.in_flight_changes += delta * changes

    def get(self, name: str) -> int:
        """Return one counter."""
        with self._lock:
            return self.counts[name]


# --- what a tablet keeps ----------------------------------------------------------------


@dataclass
class Entry:
    """An outbox entry, as store.js keeps it."""

    seq: int
    change_id: str
    entity: str
    id: str
    op: str  # create | edit
    base_rev: int | None
    recorded_at: str
    data: dict
    interview_id: str | None
    sent: bool = False

    @property
    def key(self) -> tuple[str, str]:
        """Return the record this entry changes."""
        return (self.entity, self.id)

    def as_change(self) -> dict:
        """Return the change as the envelope carries it."""
        return {
            "change_id": self.change_id,
            "entity": self.entity,
            "id": self.id,
            "base_rev": self.base_rev,
            "recorded_at": self.recorded_at,
            "data": self.data,
        }


@dataclass
class Record:
    """The tablet's copy of an editable record."""

    entity: str
    id: str
    interview_id: str | None
    rev: int | None
    base: dict
    data: dict
    own: bool = False


@dataclass
class Made:
    """A change this tablet made: what it sent and what it was told."""

    tablet: str
    device: str
    change_id: str
    entity: str
    id: str
    op: str
    interview_id: str | None
    base_rev: int | None = None
    data: dict = field(default_factory=dict)
    sent: int = 0
    status: str | None = None  # applied | conflict | rejected, as the tablet understood it
    raw_status: str | None = None
    rev: int | None = None
    reason: str | None = None
    set_aside: bool = False  # refused with the create it built on, never sent


@dataclass
class Plan:
    """What one tablet works on (made by the soak's world set-up)."""

    username: str
    password: str
    own_participant: str
    own_language: str
    shared_interview: str | None
    question_keys: list[str]
    themes: list[str]
    consent_version: int
    consent_items: list[str]


class Cut:
    """A sync request cut off by a server kill: which of its changes went out fresh in it."""

    def __init__(self, fresh: list[str]):
        self.fresh = fresh


# --- the tablet -------------------------------------------------------------------------


class Tablet:
    """One tablet: a peer's outbox, its copies of records, and a ledger of what it made."""

    def __init__(
        self,
        index: int,
        plan: Plan,
        host: str,
        port: int,
        stats: Stats,
        seed: int,
        faults: bool = True,
        batch_sizes: tuple[int, ...] = (3, 10, 25, 200),
        burst: tuple[int, int] = (1, 6),
    ):
        self.index = index
        self.plan = plan
        self.name = plan.username
        self.http = Http(host, port)
        self.stats = stats
        self.rng = random.Random(seed)
        self.faults = faults
        self.batch_sizes = batch_sizes
        self.burst = burst
        self.device = str(uuid.uuid4())
        self.csrf = ""
        self.cursor: int | None = None
        self.seq = 0
        self.outbox: dict[int, Entry] = {}
        self.records: dict[tuple[str, str], Record] = {}
        self.ledger: dict[str, Made] = {}
        self.rounds = 0
        self.words = 0
        self.own_interview: str | None = None
        self.consented = False
        self.started = False
        self.completed = False
        self.debrief: str | None = None
        self.cut: Cut | None = None
        self.last_refusal: str | None = None
        self.cuts = Counter()  # committed | not_committed | undetermined | half_applied

    # --- logging in -----------------------------------------------------------------

    def login(self) -> None:
        """Log in through the real form, then fetch the API's CSRF token."""
        for attempt in range(20):
            page = self.http.request("GET", "/login")
            if page.status in (302, 303):
                # still logged in: an earlier login went through but what followed was cut off
                self._session(allow_login=False)
                return
            token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.body.decode())
            if token is None:
                token = re.search(r'<meta name="csrf-token" content="([^"]+)"', page.body.decode())
            form = {
                "username": self.plan.username,
                "password": self.plan.password,
                "csrf_token": token.group(1) if token else "",
            }
            answer = self.http.request(
                "POST",
                "/login",
                body=urlencode(form).encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            if answer.status in (302, 303):
                self.stats.add("logins")
                self._session(allow_login=False)
                return
            if answer.status == 429:
                # throttled: a person would wait too
                time.sleep(1 + attempt)
                continue
            if answer.status == 400:
                continue  # the form's token went stale meanwhile: a fresh form
            raise RuntimeError(f"{self.name}: login answered {answer.status}")
        raise RuntimeError(f"{self.name}: could not log in")

    def _session(self, allow_login: bool = True) -> None:
        answer = self.http.request("GET", "/api/v1/session", headers={"Accept": "application/json"})
        if answer.status == 401 and allow_login:
            self.login()
            return
        if answer.status != 200:
            raise ServerRefused(answer.status, answer.body)
        self.csrf = answer.json()["csrf_token"]

    # --- typing (what the person does) ----------------------------------------------

    def _entry(self, entity, record_id, op, base_rev, data, interview_id) -> Entry:
        self.seq += 1
        entry = Entry(
            self.seq,
            str(uuid.uuid4()),
            entity,
            record_id,
            op,
            base_rev,
            now_iso(),
            data,
            interview_id,
        )
        self.outbox[entry.seq] = entry
        self.ledger[entry.change_id] = Made(
            self.name, self.device, entry.change_id, entity, record_id, op, interview_id
        )
        return entry

    def _text(self) -> str:
        self.words += 1
        # plain words: no digits runs, names or addresses the identifier guard would flag
        return f"{self.name} skrev ord {self.words}: tjenestene samarbeider bedre æøå"

    def _entries_of(self, key) -> list[Entry]:
        return sorted((e for e in self.outbox.values() if e.key == key), key=lambda e: e.seq)

    def save_editable(self, entity: str, record_id: str, values: dict) -> None:
        """Save an edit of a note, debrief or interview locally, as saveEditable does."""
        key = (entity, record_id)
        record = self.records[key]
        record.data.update(values)
        fields = EDITABLE[entity]
        entries = self._entries_of(key)
        unsent = next((e for e in entries if not e.sent), None)
        sent = [e for e in entries if e.sent]
        if unsent is not None and unsent.op == "create":
            unsent.data = self._create_payload(record)
            unsent.recorded_at = now_iso()
            self.stats.add("typing_coalesced")
            return
        reference = dict(record.base)
        for e in sent:
            reference.update({k: v for k, v in e.data.items() if k in fields})
        defaults = DEFAULTS.get(entity, {})
        diff = {
            name: record.data[name]
            for name in fields
            if name in record.data and record.data[name] != reference.get(name, defaults.get(name))
        }
        if unsent is not None:
            if not diff:
                del self.outbox[unsent.seq]
                del self.ledger[unsent.change_id]
            else:
                unsent.data = diff
                unsent.recorded_at = now_iso()
            self.stats.add("typing_coalesced")
        elif diff:
            base = None if sent else record.rev
            self._entry(entity, record_id, "edit", base, diff, record.interview_id)

    def _create_payload(self, record: Record) -> dict:
        if record.entity == "note":
            payload = {k: record.data[k] for k in ("interview_id", "question_key")}
            for name in ("text", "polarity", "themes", "possible_quote"):
                payload[name] = record.data[name]
            return payload
        if record.entity == "debrief":
            return {
                "interview_id": record.interview_id,
                **{k: record.data[k] for k in EDITABLE["debrief"]},
            }
        return dict(record.data)

    def create_note(self, interview_id: str) -> None:
        """Write a new note under a question."""
        note_id = str(uuid.uuid4())
        data = {
            "interview_id": interview_id,
            "question_key": self.rng.choice(self.plan.question_keys),
            "text": self._text(),
            "polarity": self.rng.choice((None, "inhibits", "promotes")),
            "themes": sorted(self.rng.sample(self.plan.themes, self.rng.randint(0, 2))),
            "possible_quote": self.rng.random() < 0.2,
        }
        record = Record("note", note_id, interview_id, None, {}, dict(data), own=True)
        self.records[record.entity, note_id] = record
        self._entry("note", note_id, "create", None, self._create_payload(record), interview_id)

    def edit_note(self) -> bool:
        """Edit a note this tablet knows: its own or one the other peer wrote (from updates)."""
        notes = [r for r in self.records.values() if r.entity == "note" and r.rev is not None]
        notes += [
            r
            for r in self.records.values()
            if r.entity == "note" and r.rev is None and self._entries_of(("note", r.id))
        ]
        if not notes:
            return False
        shared = [r for r in notes if r.interview_id == self.plan.shared_interview]
        # recent notes of the shared interview are where two tablets meet: conflicts happen
        if shared and self.rng.random() < 0.6:
            pool = shared[-6:]
        else:
            pool = notes
        record = self.rng.choice(pool)
        if self.rng.random() < 0.75:
            values = {"text": self._text()}
        else:
            values = {
                "polarity": self.rng.choice((None, "inhibits", "promotes")),
                "themes": sorted(self.rng.sample(self.plan.themes, self.rng.randint(0, 3))),
                "possible_quote": self.rng.random() < 0.3,
            }
        self.save_editable("note", record.id, values)
        return True

    def event(self, interview_id: str, kind: str, details: dict | None = None) -> None:
        """Record an interview event (immutable)."""
        data = {"interview_id": interview_id, "kind": kind, "details": details or {}}
        self._entry("event", str(uuid.uuid4()), "create", None, data, interview_id)

    def create_interview(self) -> None:
        """Plan an interview on the tablet for the peer's own participant."""
        interview_id = str(uuid.uuid4())
        data = {
            "participant_id": self.plan.own_participant,
            "language": self.plan.own_language,
            "planned_at": now_iso(),
            "place_kind": "home",
        }
        self.records["interview", interview_id] = Record(
            "interview", interview_id, interview_id, None, {}, {"current_section": 0}, own=True
        )
        self._entry("interview", interview_id, "create", None, data, interview_id)
        self.own_interview = interview_id

    def consent(self) -> None:
        """Record consent on a paper form (the printed name goes to the identity store)."""
        data = {
            "interview_id": self.own_interview,
            "form_version": self.plan.consent_version,
            "language": self.plan.own_language,
            "answers": {k: True for k in self.plan.consent_items},
            "method": "paper",
            "paper_form_number": f"P-{self.index}",
            "printed_name": "Deltaker Signert",
        }
        self._entry("consent", str(uuid.uuid4()), "create", None, data, self.own_interview)
        self.consented = True

    def write_debrief(self) -> None:
        """Finish the interview and write the debrief right after."""
        self.event(self.own_interview, "complete")
        self.completed = True
        debrief_id = str(uuid.uuid4())
        data = {
            "wellbeing": self.rng.randint(1, 5),
            "reflection": self._text(),
            "wants_debrief_talk": self.rng.random() < 0.3,
            "participant_follow_up": False,
        }
        record = Record("debrief", debrief_id, self.own_interview, None, {}, dict(data), own=True)
        self.records["debrief", debrief_id] = record
        self._entry(
            "debrief", debrief_id, "create", None, self._create_payload(record), self.own_interview
        )
        self.debrief = debrief_id

    def type_one(self, near_end: bool) -> None:
        """Do one thing a peer does during an interview."""
        if self.own_interview is None:
            self.create_interview()
        elif not self.consented:
            self.consent()
        elif not self.started:
            details = {"outcome": "ok", "minutes": 75, "understands": True}
            self.event(self.own_interview, "capacity_check", details)
            self.started = True
        elif near_end and not self.completed:
            self.write_debrief()
        else:
            roll = self.rng.random()
            interviews = [self.own_interview]
            if self.plan.shared_interview:
                interviews.append(self.plan.shared_interview)
            if roll < 0.32:
                self.create_note(self.rng.choice(interviews))
            elif roll < 0.84:
                if not self.edit_note():
                    self.create_note(self.rng.choice(interviews))
            elif roll < 0.93:
                self.event(self.rng.choice(interviews), self.rng.choice(QUIET_KINDS))
            elif (roll < 0.97 or self.debrief is None) and self._known(self.own_interview):
                self.save_editable(
                    "interview", self.own_interview, {"current_section": self.rng.randint(0, 6)}
                )
            elif self.debrief is not None:
                self.save_editable("debrief", self.debrief, {"reflection": self._text()})
            else:
                self.create_note(self.own_interview)

    def _known(self, interview_id: str) -> bool:
        # the place in the guide is moved only once the store has the interview: the create
        # cannot carry it (store.js never creates interviews; the simulator does, to test waits)
        record = self.records.get(("interview", interview_id))
        return record is not None and record.rev is not None

    # --- sending ----------------------------------------------------------------------

    def take_batch(self, limit: int, after: list[Entry] = ()) -> list[Entry]:
        """Take entries to send (marking them sent: their payload is frozen from now on).

        With `after`, take the batch that would follow it; a note edit queued behind a create
        in `after` goes along with the rev a new note's create makes (1), so it can arrive
        before its create.
        """
        taken = {e.seq for e in after}
        first_of = {e.key: e for e in after}
        seen: set = set()
        batch: list[Entry] = []
        for e in sorted(self.outbox.values(), key=lambda x: x.seq):
            if e.seq in taken or e.key in seen:
                continue
            seen.add(e.key)
            if e.key in first_of:
                before = first_of[e.key]
                if not (before.op == "create" and e.entity == "note" and e.op == "edit"):
                    continue
                if e.base_rev is None and not e.sent:
                    e.base_rev = 1
                    self.stats.add("reorder_edit_before_create")
            if e.op == "edit" and e.base_rev is None:
                continue
            if len(batch) >= limit:
                break
            self._freeze(e)
            batch.append(e)
        return batch

    def _freeze(self, e: Entry) -> None:
        made = self.ledger[e.change_id]
        if not e.sent:
            e.sent = True
            made.base_rev, made.data = e.base_rev, json.loads(json.dumps(e.data))
            self.stats.add("changes_sent")
        made.sent += 1
        self.stats.add("change_sends")

    def envelope(self, batch: list[Entry]) -> bytes:
        """Return the sync request body for a batch."""
        pending = max(0, len(self.outbox) - len(batch))
        body = {
            "device_id": self.device,
            "cursor": self.cursor,
            "pending": pending,
            "changes": [e.as_change() for e in batch],
        }
        return json.dumps(body).encode()

    def _post(self, body: bytes, changes: int, http: Http | None = None, drop: bool = False):
        http = http or self.http
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "X-CSRFToken": self.csrf,
        }
        flying = []

        def sent():
            flying.append(1)
            self.stats.flight(1, changes)

        try:
            answer = http.request(
                "POST", "/api/v1/sync", body=body, headers=headers, drop_answer=drop, on_sent=sent
            )
        except NetworkError as exc:
            exc.sync = True  # the sync request itself was cut, not a login around it
            raise
        finally:
            if flying:
                self.stats.flight(-1, changes)
        self.stats.add("requests")
        if answer is None:
            return None
        self.stats.add(f"http_{answer.status}")
        if answer.status == 200:
            return answer.json()
        if answer.status == 401:
            raise NeedLogin()
        if answer.status in (400, 403) and answer.json().get("code") == "csrf":
            raise CsrfExpired()
        raise ServerRefused(answer.status, answer.body)

    def deliver(self, body: bytes, changes: int, http: Http | None = None, drop=False):
        """Send a sync request the way offline.js does: fresh CSRF token or login, then again."""
        for _attempt in range(5):
            try:
                return self._post(body, changes, http, drop)
            except CsrfExpired:
                self.stats.add("csrf_refreshed")
                self._session()
            except NeedLogin:
                self.stats.add("relogins")
                self.login()
            if http is not None:
                http.cookies = dict(self.http.cookies)
        raise RuntimeError(f"{self.name}: the server keeps refusing the session")

    def send(self, batch: list[Entry]) -> dict:
        """Send a batch and take in the answer; a cut request is remembered for the crash run."""
        fresh = [self.ledger[e.change_id] for e in batch if self.ledger[e.change_id].sent == 1]
        try:
            answer = self.deliver(self.envelope(batch), len(batch))
        except NetworkError as exc:
            if exc.after_send and batch and getattr(exc, "sync", False):
                if self.cut is not None:
                    self.cuts["undetermined"] += 1
                self.cut = Cut([m.change_id for m in fresh])
            raise
        self._classify_cut(answer)
        self.apply_answer(batch, answer)
        return answer

    def _classify_cut(self, answer: dict) -> None:
        # a cut request was one transaction: its fresh changes are now all duplicates (it
        # committed before the kill) or none is (it rolled back); a mix is a half-applied batch
        if self.cut is None:
            return
        seen = {r["change_id"]: r["status"] for r in answer["results"]}
        statuses = [seen[c] for c in self.cut.fresh if c in seen and seen[c] != "rejected"]
        if statuses:
            dup = sum(1 for s in statuses if s == "duplicate")
            if dup == len(statuses):
                self.cuts["committed"] += 1
            elif dup == 0:
                self.cuts["not_committed"] += 1
            else:
                self.cuts["half_applied"] += 1
        else:
            self.cuts["undetermined"] += 1
        self.cut = None

    def apply_answer(self, batch: list[Entry], answer: dict) -> None:
        """Take in an answer like store.js applyAnswer: results, then updates, then the cursor."""
        by_id = {e.change_id: e for e in batch}
        for result in answer["results"]:
            e = by_id.get(result["change_id"])
            if e is None or e.seq not in self.outbox:
                continue
            status = result["status"]
            if status == "duplicate":
                status = "conflict" if result.get("reason") == "conflict" else "applied"
            if status == "retry":
                continue
            made = self.ledger[e.change_id]
            made.status, made.raw_status = status, result["status"]
            made.rev, made.reason = result.get("rev"), result.get("reason")
            del self.outbox[e.seq]
            later = [x for x in self._entries_of(e.key) if x.op == "edit" and x.base_rev is None]
            record = self.records.get(e.key)
            rev = result.get("rev")
            if status == "applied":
                if record is not None and rev is not None and rev >= (record.rev or 0):
                    fields = EDITABLE.get(e.entity, ())
                    record.base.update({k: v for k, v in e.data.items() if k in fields})
                    record.rev = rev
                for x in later:
                    if rev is not None:
                        x.base_rev = rev
                    elif e.op == "create":
                        # kept waiting for its interview: a new note's create makes rev 1
                        # (store.js leaves such an edit behind until a rev comes; docs/sync.md)
                        x.base_rev = 1
                    else:
                        x.base_rev = e.base_rev
            elif status == "conflict":
                self.stats.add("told_conflict")
                for x in later:
                    x.base_rev = e.base_rev if e.base_rev is not None else rev
            elif status == "rejected":
                self.stats.add("told_rejected")
                if e.op == "create":
                    # the refused record leaves the tablet's copies (store.js keeps it aside)
                    self.records.pop(e.key, None)
                    if e.entity == "debrief":
                        self.debrief = None
                for x in self._entries_of(e.key):
                    if e.op == "create":
                        del self.outbox[x.seq]
                        aside = self.ledger[x.change_id]
                        aside.status, aside.reason, aside.set_aside = "rejected", "create", True
                    elif x.op == "edit" and x.base_rev is None:
                        x.base_rev = e.base_rev
        for update in answer["updates"]:
            self._take_update(update)
        self.cursor = answer["cursor"]

    def _take_update(self, update: dict) -> None:
        entity, record_id = update["entity"], update["id"]
        if entity not in EDITABLE:
            return
        key = (entity, record_id)
        data = update.get("data") or {}
        waiting = self._entries_of(key)
        if data.get("gone"):
            if not waiting:
                self.records.pop(key, None)
            return
        if waiting:
            return  # the tablet's newer words stay until they are sent
        interview_id = record_id if entity == "interview" else data.get("interview_id")
        mine = self.records.get(key)
        self.records[key] = Record(
            entity,
            record_id,
            interview_id,
            update["rev"],
            {k: data.get(k) for k in EDITABLE[entity] if k in data},
            {**data},
            own=bool(mine and mine.own),
        )

    # --- one sync, with a fault -------------------------------------------------------

    def pick_fault(self) -> str | None:
        """Choose this request's fault: each kind once early on, then at random."""
        if not self.faults:
            return None
        if self.rounds < len(FAULTS):
            return FAULTS[(self.rounds + self.index) % len(FAULTS)]
        roll = self.rng.random()
        weights = (0.07, 0.07, 0.06, 0.07, 0.03, 0.03)
        for fault, weight in zip(FAULTS, weights, strict=True):
            if roll < weight:
                return fault
            roll -= weight
        return None

    def sync_round(self, fault: str | None = None) -> None:
        """Send one batch (or two, out of order) with the given fault injected."""
        self.rounds += 1
        limit = self.rng.choice(self.batch_sizes)
        if fault == "expired":
            # the session cookie ran out: the next request is refused and the tablet logs in
            self.http.cookies.clear()
            self.stats.add("fault_expired")
        elif fault == "stale_csrf":
            self.csrf = "stale" + self.csrf[5:]
            self.stats.add("fault_stale_csrf")
        batch = self.take_batch(limit)
        if not batch and fault in ("lost_request", "lost_response", "duplicate", "reorder"):
            fault = None
        if fault == "lost_request":
            self.stats.add("fault_lost_request")
            return
        if fault == "reorder":
            self.stats.add("fault_reorder")
            second = self.take_batch(limit, after=batch)
            if second:
                self.stats.add("reorder_batches_swapped")
                self.send(second)
                self.send(batch)
            else:
                self.stats.add("reorder_batch_reversed")
                self.send(list(reversed(batch)))
            return
        body = self.envelope(batch)
        if fault == "lost_response":
            self.stats.add("fault_lost_response")
            if self.rng.random() < 0.5:
                # hang up as soon as it is sent: the server works on, the retry may race it
                self.deliver(body, len(batch), drop=True)
            else:
                self.deliver(body, len(batch))
            return
        if fault == "duplicate":
            self.stats.add("fault_duplicate")
            if self.rng.random() < 0.5:
                self.deliver(body, len(batch))
                answer = self.deliver(body, len(batch))
            else:
                # the same request on two connections at once
                other = self.http.copy()
                box: list = []
                twin = threading.Thread(
                    target=lambda: box.append(self._twin(body, len(batch), other))
                )
                twin.start()
                answer = self.deliver(body, len(batch))
                twin.join()
                self.stats.add("duplicate_concurrent")
            self.apply_answer(batch, answer)
            return
        self.send(batch)

    def _twin(self, body: bytes, changes: int, http: Http):
        try:
            return self._post(body, changes, http)
        except Exception as exc:  # noqa: BLE001 - the twin's answer is dropped whatever it is
            return exc

    # --- the tablet's life ------------------------------------------------------------

    def sendable(self) -> bool:
        """Tell whether the outbox holds anything to send."""
        return any(not (e.op == "edit" and e.base_rev is None) for e in self.outbox.values())

    def step(self, target: int) -> None:
        """Type a little, then sync once (with a fault now and then)."""
        for _ in range(self.rng.randint(*self.burst)):
            if len(self.ledger) >= target:
                break
            self.type_one(near_end=len(self.ledger) >= target - 3)
        self.guarded(self.pick_fault())

    def guarded(self, fault: str | None) -> bool:
        """Run one sync round; a network error or a refused request keeps the outbox as is."""
        try:
            self.sync_round(fault)
            return True
        except NetworkError as exc:
            self.stats.add("network_errors_after_send" if exc.after_send else "network_errors")
        except ServerRefused as exc:
            self.last_refusal = str(exc)
        except (NeedLogin, CsrfExpired, RuntimeError):
            self.stats.add("session_errors")
        time.sleep(self.rng.uniform(0.05, 0.4))
        return False

    def drain(self, max_rounds: int = 400) -> bool:
        """Send everything without injected faults; True once the outbox is empty."""
        for _ in range(max_rounds):
            if not self.outbox:
                return True
            if not self.sendable():
                return False
            self.guarded(None)
        return not self.outbox

    def run(self, target: int, deadline: float, keep_going=None, settle: float = 300) -> None:
        """Log in, make `target` changes while syncing with faults, then drain the outbox."""
        while time.monotonic() < deadline:
            try:
                self.login()
                break
            except (NetworkError, ServerRefused, RuntimeError):
                time.sleep(0.5)
        while time.monotonic() < deadline:
            if len(self.ledger) >= target and not (keep_going and keep_going(self)):
                break
            self.step(target if not keep_going else max(target, len(self.ledger) + 10))
        # a change the server keeps refusing must fail the run, not hang it
        deadline = min(deadline, time.monotonic() + settle)
        while time.monotonic() < deadline and self.outbox:
            if self.drain(50):
                break
            time.sleep(0.5)
