"""Fuzzing POST /api/v1/sync with Hypothesis: never a 5xx, and never a stuck tablet.

For every request, however malformed (docs/sync.md, interview/openapi.json):
- the answer is below 500 (a 503 "retry" for bad input makes the tablet resend it for ever);
- a 4xx carries a JSON body with `error`;
- a 200 has one result per change, each `applied`, `duplicate`, `conflict` or `rejected`, never
  `retry`;
- the same request sent again gets the same answer, but for `applied` (and `conflict`, as the
  docs say) becoming `duplicate`: a replay is stable;
- afterwards an ordinary sync of the same peer still works: a new note is `applied`, an edit
  of it is `applied`, the note comes back in `updates`, and records that fuzzed changes were
  kept waiting for (an edit before its note, a note before its interview) can still be created.

What is thrown at it: full Unicode text with lone surrogates, control characters, NUL, CR/LF
and texts past the 20,000-character limit; lists and objects nested 50-3,000 levels deep (built
with a loop, as raw JSON text, so the test itself never recurses) in `data`, in an event's
`details`, in unknown fields, in the frame fields and as whole changes, with extra weight just
below the depth the server's JSON parser still reads; wrong types for every field of the
envelope and of the changes; unknown entities; change ids reused with other payloads; edits of
records that do not exist; notes for interviews that do not exist; batches of 500 and 501
changes; bodies over the size limit.

The bodies are sent as text made with json.dumps(..., ensure_ascii=True), so a lone surrogate
travels as the escape `\\ud800`, as a browser's JSON.stringify sends one; each request runs on
a fresh thread, so every request starts at the same stack depth. Plain regression tests below:
a waiting edit nested ~1,000 levels deep (or with a list for interview_id) must not break a
coordinator's withdrawal of another participant; a lone surrogate refuses its change only.

Fast by default (about 25 s on SQLite); SYNC_FUZZ_EXAMPLES=1000 searches about 20 times longer.
"""

import json
import logging
import os
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from interview.participants.registry import register
from interview.participants.withdrawal import today_in_oslo
from interview.store.content import guide_of
from interview.store.extensions import db
from interview.store.models import (
    Case,
    ConsentFormVersion,
    GuideVersion,
    Interview,
    Note,
    Participant,
    Theme,
    User,
    utcnow,
)
from interview.sync.envelope import MAX_CHANGES, MAX_TEXT
from tests.conftest import World, app_on_empty_store
from tests.helpers import give_paper_consent, start_interview
from tests.sync.test_fuzz_api import EVENT_SHAPES, _FormPoster, _login

ALLOWED = {"applied", "duplicate", "conflict", "rejected"}
# what a replay of a change may answer, by its first answer (docs/sync.md, "At most once")
REPLAYED = {
    "applied": {"duplicate"},
    "duplicate": {"duplicate"},
    "conflict": {"duplicate"},
    "rejected": {"rejected"},
}
NOW = "2026-11-23T10:00:00Z"
MARK = "fuzz-" + uuid.uuid4().hex  # stands for a raw JSON piece inside json.dumps' output
# examples per fuzzer: fast by default; SYNC_FUZZ_EXAMPLES=1000 searches longer
SCALE = max(1, int(os.environ.get("SYNC_FUZZ_EXAMPLES") or 0) // 50)
OUTCOMES: Counter = Counter()


def _settings(examples: int):
    return settings(
        max_examples=examples * SCALE,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )


# --- bodies as JSON text: deep nesting and raw pieces without recursion --------------------


@dataclass(frozen=True)
class Deep:
    """A list or object nested `depth` levels deep, written as JSON text by a loop."""

    depth: int
    shape: str = "list"  # list, dict or mixed
    leaf: Any = None

    def json(self) -> str:
        opens, closes = [], []
        for level in range(self.depth):
            as_dict = self.shape == "dict" or (self.shape == "mixed" and level % 2 == 1)
            opens.append('{"d":' if as_dict else "[")
            closes.append("}" if as_dict else "]")
        return "".join(opens) + encode(self.leaf) + "".join(reversed(closes))


@dataclass(frozen=True)
class Raw:
    """A piece of JSON text put in as it is (numbers json.dumps does not write)."""

    text: str


def encode(value: Any) -> str:
    """Return the JSON text of a body; lone surrogates as escapes (ensure_ascii)."""
    pieces: dict[str, str] = {}

    def walk(v):
        if isinstance(v, Deep | Raw):
            mark = f"{MARK}-{len(pieces)}"
            pieces[mark] = v.json() if isinstance(v, Deep) else v.text
            return mark
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [walk(x) for x in v]
        return v

    text = json.dumps(walk(value), ensure_ascii=True)
    for mark, piece in pieces.items():
        text = text.replace(f'"{mark}"', piece, 1)
    return text


def _count_changes(body: Any) -> int | None:
    """How many changes a 200 must answer, or None when the body is no envelope."""
    if not isinstance(body, dict):
        return None
    changes = body.get("changes", [])
    if isinstance(changes, list):
        return len(changes)
    if isinstance(changes, Deep) and changes.shape in ("list", "mixed") and changes.depth >= 1:
        return 1
    return None


# --- the peer's tablet -----------------------------------------------------------------------


@pytest.fixture
def app(tmp_path):
    """An app on a fresh store with CSRF protection on, as in production (overrides conftest)."""
    yield from app_on_empty_store(tmp_path, WTF_CSRF_ENABLED=True)


def on_fresh_stack(call):
    """Run a request in a thread of its own and return its answer.

    How deep a body the JSON parser reads, and how deep the code after it may recurse, depend
    on how deep the stack already is; a server's request starts on a short one. Each request
    then starts at the same depth, wherever the test (or Hypothesis) calls it from, so the depth
    found by probing is the one the fuzzers meet.
    """
    out: dict[str, Any] = {}

    def run():
        try:
            out["answer"] = call()
        except BaseException as exc:  # handed to the test's thread
            out["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    return out["answer"]


class _Errors(logging.Handler):
    """Keeps what the app logs at ERROR (the frames of an unhandled exception)."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record):
        self.records.append(record.getMessage())


@dataclass
class Tablet:
    """A logged-in peer with an interview under way, and what the fuzzer aims changes at."""

    app: Any
    client: Any
    token: str
    world: World
    iid: str
    question_keys: list[str]
    themes: list[str]
    form_version: int
    consent_items: list[str]
    note_id: str
    # interviews of peer_a's participants with no consent yet (a consent change can apply)
    fresh_interviews: list[str]
    errors: _Errors
    sent_change_ids: list[str] = field(default_factory=list)

    def post(self, body: Any):
        """Send a body (any value, written as JSON) to /api/v1/sync as the tablet does."""
        return self.post_text(encode(body))

    def post_text(self, text: str):
        """Send JSON text (ASCII: lone surrogates are escapes) to /api/v1/sync."""
        self.errors.records.clear()
        return on_fresh_stack(
            lambda: self.client.post(
                "/api/v1/sync",
                data=text.encode("utf-8"),
                content_type="application/json",
                headers={"X-CSRFToken": self.token},
            )
        )

    def sync(self, changes: list, cursor: int | None = None):
        return self.post({"device_id": DEVICE, "cursor": cursor, "changes": changes})

    def cursor(self) -> int:
        answer = self.sync([])
        assert answer.status_code == 200, answer.get_data(as_text=True)[:300]
        return answer.get_json()["cursor"]

    def note_create(self, note_id: str | None = None, text: str = "Et vanlig notat", **data):
        return _change(
            "note",
            note_id or str(uuid.uuid4()),
            {
                "interview_id": self.iid,
                "question_key": self.question_keys[0],
                "text": text,
                **data,
            },
        )

    def interview_create(self, interview_id: str):
        return _change(
            "interview",
            interview_id,
            {
                "participant_id": self.world.participants["pa"],
                "language": "nb",
                "planned_at": NOW,
                "place_kind": "cafe",
            },
        )

    def consent_create(self, interview_id: str, **data):
        return _change(
            "consent",
            str(uuid.uuid4()),
            {
                "interview_id": interview_id,
                "form_version": self.form_version,
                "language": "nb",
                "answers": {key: True for key in self.consent_items},
                "method": "paper",
                "paper_form_number": "P-1",
                **data,
            },
        )


DEVICE = "7d1c2f0e-4b7a-4f0c-9a55-3c2b8e1f6d10"


def _change(entity, record_id, data, base_rev=None, recorded_at=NOW, change_id=None):
    return {
        "change_id": change_id or str(uuid.uuid4()),
        "entity": entity,
        "id": record_id,
        "base_rev": base_rev,
        "recorded_at": recorded_at,
        "data": data,
    }


@pytest.fixture
def tablet(app, world) -> Tablet:
    client = app.test_client()
    token = _login(client, "peer_a")
    iid = world.interviews["pa"]
    start_interview(_FormPoster(client, token), iid)
    give_paper_consent(_FormPoster(client, token), iid)
    with app.app_context():
        guide = db.session.scalars(select(GuideVersion)).first()
        question_keys = sorted(guide_of(guide).question_keys)
        themes = sorted(db.session.scalars(select(Theme.key)))
        form = db.session.scalars(
            select(ConsentFormVersion).order_by(ConsentFormVersion.version.desc())
        ).first()
        items = [item["key"] for item in form.content["items"]]
        # two more participants of peer_a's without consent: consent changes can reach their
        # checks (the first valid one applies, later ones meet "already recorded")
        case = db.session.scalars(select(Case).where(Case.code == "A")).one()
        peer = db.session.get(User, world.users["peer_a"])
        coord = db.session.get(User, world.users["coord_a"])
        fresh = []
        for _ in range(2):
            participant = register(case, "nb", [peer], coord)
            interview = Interview(
                participant=participant,
                guide_version=guide,
                language="nb",
                place_kind="home",
                planned_at=utcnow(),
            )
            db.session.add(interview)
            db.session.flush()
            fresh.append(interview.id)
        db.session.commit()
        form_version = form.version
        db.session.remove()
    errors = _Errors()
    app.logger.addHandler(errors)
    made = Tablet(
        app=app,
        client=client,
        token=token,
        world=world,
        iid=iid,
        question_keys=question_keys,
        themes=themes,
        form_version=form_version,
        consent_items=items,
        note_id=str(uuid.uuid4()),
        fresh_interviews=fresh,
        errors=errors,
    )
    answer = made.sync([made.note_create(made.note_id, "Det første notatet")])
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.get_json()["results"][0]["status"] == "applied"
    yield made
    app.logger.removeHandler(errors)


# --- the invariant ---------------------------------------------------------------------------


def _describe(tablet: Tablet, text: str, answer) -> str:
    body = text if len(text) <= 400 else text[:300] + f"... ({len(text)} chars)"
    got = answer.get_data(as_text=True)[:400]
    logged = "".join(tablet.errors.records)[-900:]
    return f"\nsent: {body}\nanswer {answer.status_code}: {got}\nlogged: {logged}"


def _check_answer(tablet: Tablet, body: Any, text: str, answer) -> list[dict] | None:
    """The answer is no 5xx; a 4xx says why in JSON; a 200 answers every change, never retry."""
    assert answer.status_code < 500, "a 5xx:" + _describe(tablet, text, answer)
    payload = answer.get_json(silent=True)
    if answer.status_code >= 400:
        assert isinstance(payload, dict) and payload.get("error"), (
            "a 4xx without a JSON error:" + _describe(tablet, text, answer)
        )
        return None
    assert answer.status_code == 200, _describe(tablet, text, answer)
    results = payload["results"]
    expected = _count_changes(body)
    if expected is not None:
        assert len(results) == expected, "not one result per change:" + _describe(
            tablet, text, answer
        )
    statuses = [r.get("status") for r in results]
    assert "retry" not in statuses, "retry for bad input:" + _describe(tablet, text, answer)
    assert set(statuses) <= ALLOWED, _describe(tablet, text, answer)
    return results


def check_request(tablet: Tablet, body: Any, targets: "Targets | None" = None) -> list | None:
    """Send a fuzzed body twice and then an ordinary sync: the whole invariant."""
    cursor = tablet.cursor()
    text = encode(body)
    first = tablet.post_text(text)
    results = _check_answer(tablet, body, text, first)
    OUTCOMES[f"HTTP {first.status_code}"] += 1
    for result in results or []:
        OUTCOMES[f"{result['status']}: {str(result.get('reason'))[:40]}"] += 1
    again = tablet.post_text(text)
    replayed = _check_answer(tablet, body, text, again)
    assert again.status_code == first.status_code, "the replay was answered otherwise:" + (
        _describe(tablet, text, again)
    )
    if results is not None:
        assert replayed is not None and len(replayed) == len(results)
        for before, after in zip(results, replayed, strict=True):
            assert after["status"] in REPLAYED[before["status"]], (
                f"replay of {before} answered {after}:" + _describe(tablet, text, again)
            )
    if isinstance(body, dict) and isinstance(body.get("changes"), list):
        tablet.sent_change_ids += [
            c["change_id"]
            for c in body["changes"]
            if isinstance(c, dict) and isinstance(c.get("change_id"), str)
        ][:5]
        del tablet.sent_change_ids[:-40]
    assert_not_stuck(tablet, cursor, targets or Targets())
    return results


@dataclass
class Targets:
    """Record ids fuzzed changes may wait for: the tablet creates them afterwards."""

    notes: set[str] = field(default_factory=set)
    interviews: set[str] = field(default_factory=set)


def assert_not_stuck(tablet: Tablet, cursor: int, targets: "Targets") -> None:
    """An ordinary sync of the same peer still applies, and its updates still flow."""
    note_id = str(uuid.uuid4())
    answer = tablet.sync([tablet.note_create(note_id, "Etter fuzzing")], cursor=cursor)
    text = f"(a plain note create after the fuzzed request, cursor {cursor})"
    assert answer.status_code == 200, "stuck:" + _describe(tablet, text, answer)
    payload = answer.get_json()
    assert [(r["status"], r["rev"]) for r in payload["results"]] == [("applied", 1)], (
        "stuck:" + _describe(tablet, text, answer)
    )
    assert ("note", note_id) in {(u["entity"], u["id"]) for u in payload["updates"]}, (
        "the new note is not in the updates:" + _describe(tablet, text, answer)
    )
    edit = _change("note", note_id, {"text": "Etter fuzzing, rettet"}, base_rev=1)
    answer = tablet.sync([edit], cursor=payload["cursor"])
    assert answer.status_code == 200, "stuck:" + _describe(tablet, "(an edit of it)", answer)
    assert [(r["status"], r["rev"]) for r in answer.get_json()["results"]] == [("applied", 2)]
    # what fuzzed changes wait for arrives: the waiting changes are released, and the record
    # that arrives is applied whatever they held
    with tablet.app.app_context():
        missing_interviews = sorted(
            i for i in targets.interviews if db.session.get(Interview, i) is None
        )
        db.session.remove()
    for interview_id in missing_interviews:
        answer = tablet.sync([tablet.interview_create(interview_id)])
        label = f"(the interview {interview_id} that fuzzed changes waited for)"
        assert answer.status_code == 200, "stuck:" + _describe(tablet, label, answer)
        assert [r["status"] for r in answer.get_json()["results"]] == ["applied"], (
            "stuck:" + _describe(tablet, label, answer)
        )
    with tablet.app.app_context():
        missing_notes = sorted(n for n in targets.notes if db.session.get(Note, n) is None)
        db.session.remove()
    for note in missing_notes:
        answer = tablet.sync([tablet.note_create(note, "Notatet kom etter endringen")])
        label = f"(the note {note} that fuzzed edits waited for)"
        assert answer.status_code == 200, "stuck:" + _describe(tablet, label, answer)
        assert [r["status"] for r in answer.get_json()["results"]] == ["applied"], (
            "stuck:" + _describe(tablet, label, answer)
        )


# --- strategies ------------------------------------------------------------------------------


def weighted(*options: tuple[int, st.SearchStrategy]) -> st.SearchStrategy:
    """Draw from the strategies by weight (st.one_of treats repeated ones as one)."""
    table = [strategy for weight, strategy in options for _ in range(weight)]
    return st.integers(0, len(table) - 1).flatmap(lambda i: table[i])


SURROGATE = st.integers(0xD800, 0xDFFF).map(chr)
CONTROL = st.sampled_from(
    ["\x00", "\r", "\n", "\r\n", "\t", "\x0b", "\x1b", "\x7f", "\x85", "\u2028", "\ufeff"]
)
ANY_CHAR = st.characters(codec=None, categories=None)  # every code point, surrogates too
SHORT_TEXT = st.one_of(
    st.text(alphabet=ANY_CHAR, max_size=30),
    st.lists(st.one_of(ANY_CHAR, SURROGATE, CONTROL), min_size=1, max_size=12).map("".join),
)
LONG_TEXT = st.builds(
    lambda n, unit, tail: (unit * n)[:n] + tail,
    st.sampled_from([MAX_TEXT - 1, MAX_TEXT, MAX_TEXT + 1, 3 * MAX_TEXT]),
    st.sampled_from(["a", "ø", "😀", "\r\n", "\r", "a\u0301", "\x00"]),
    st.one_of(st.just(""), SURROGATE, CONTROL),
)
TEXT = weighted((3, SHORT_TEXT), (1, LONG_TEXT))
RAW = st.sampled_from(["1e400", "-0", "1" + "0" * 5000, "NaN", "-Infinity", "1.5", "1E2"]).map(Raw)
SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, -1, 1, 2**31 - 1, 2**31, 2**63, 10**30]),
    st.floats(allow_nan=False, allow_infinity=False),
    SHORT_TEXT,
)


def deep(depths) -> st.SearchStrategy:
    return st.builds(
        Deep,
        depth=depths,
        shape=st.sampled_from(["list", "dict", "mixed"]),
        leaf=st.one_of(st.none(), st.just("x"), SURROGATE, st.integers(0, 9)),
    )


def junk(depths) -> st.SearchStrategy:
    """A value of any type: what a broken or hostile tablet may put in any field."""
    return weighted(
        (2, SCALAR),
        (2, TEXT),
        (1, RAW),
        (1, st.lists(SCALAR, max_size=3)),
        (1, st.dictionaries(SHORT_TEXT, SCALAR, max_size=3)),
        (2, deep(depths)),
    )


def depths_near(limit: int) -> st.SearchStrategy:
    """50-3,000 levels, with weight just around the deepest nesting the parser still reads."""
    return weighted((1, st.integers(50, 3000)), (2, st.integers(max(50, limit - 45), limit + 3)))


def _deepest_parsed(tablet: Tablet, make_body, low: int = 10, high: int = 3000) -> int:
    """The largest depth whose body the server reads: anything but a 400 (the whole body too
    deep for the JSON parser), which the fuzzers aim around."""

    def parsed(depth: int) -> bool:
        return tablet.post(make_body(depth)).status_code != 400

    assert parsed(low)
    while low + 1 < high:
        middle = (low + high) // 2
        if parsed(middle):
            low = middle
        else:
            high = middle
    return low


def _envelope_limit(tablet: Tablet) -> int:
    return _deepest_parsed(tablet, lambda d: {"device_id": DEVICE, "x": Deep(d)})


# fields of each kind of change, as interview/sync/ reads them
NOTE_FIELDS = ["interview_id", "question_key", "text", "polarity", "themes", "possible_quote"]
NOTE_EDIT_FIELDS = ["text", "polarity", "themes", "possible_quote", "deleted", "resolve"]
EVENT_FIELDS = ["interview_id", "kind", "details"]
DETAIL_FIELDS = [
    "outcome",
    "minutes",
    "understands",
    "can_explain",
    "not_in_crisis",
    "reason",
    "new_time",
    "comment",
    "contact_team",
]
CONSENT_FIELDS = [
    "interview_id",
    "form_version",
    "language",
    "answers",
    "method",
    "paper_form_number",
    "signature",
    "printed_name",
    "sealed",
]
DEBRIEF_FIELDS = [
    "interview_id",
    "wellbeing",
    "reflection",
    "wants_debrief_talk",
    "participant_follow_up",
]
INTERVIEW_FIELDS = ["participant_id", "language", "planned_at", "place_kind"]
FRAME_FIELDS = ["change_id", "entity", "id", "base_rev", "recorded_at", "data"]
KINDS = [
    "note_create",
    "note_create",
    "note_edit",
    "event",
    "event",
    "consent",
    "debrief_create",
    "debrief_edit",
    "interview_create",
    "interview_edit",
]


@st.composite
def a_change(draw, tablet: Tablet, pool: list[str], values) -> dict | Any:
    """A change of some kind, valid at first, with a few of its fields replaced by `values`."""
    kind = draw(st.sampled_from(KINDS))
    fresh = str(uuid.UUID(int=draw(st.integers(0, 2**128 - 1))))
    somewhere = st.sampled_from([tablet.iid, tablet.iid, *pool])
    if kind == "note_create":
        record = draw(st.sampled_from([fresh, fresh, tablet.note_id, *pool]))
        change = _change(
            "note",
            record,
            {
                "interview_id": draw(somewhere),
                "question_key": draw(st.sampled_from(tablet.question_keys)),
                "text": draw(st.sampled_from(["Et notat", "Jeg heter Ola Nordmann", "x"])),
                "polarity": draw(st.sampled_from([None, "inhibits", "promotes"])),
                "themes": draw(st.lists(st.sampled_from(tablet.themes), max_size=2)),
                "possible_quote": draw(st.booleans()),
            },
        )
        data_fields = NOTE_FIELDS
    elif kind == "note_edit":
        record = draw(st.sampled_from([tablet.note_id, *pool]))
        change = _change(
            "note",
            record,
            {"text": draw(st.sampled_from(["Endret", "Endret igjen"]))},
            base_rev=draw(st.integers(1, 4)),
        )
        data_fields = NOTE_EDIT_FIELDS
    elif kind == "event":
        event_kind, details = draw(st.sampled_from(EVENT_SHAPES))
        data = {"interview_id": draw(somewhere), "kind": event_kind}
        if details is not None:
            data["details"] = dict(details)
        change = _change("event", fresh, data, recorded_at=datetime.now(UTC).isoformat())
        data_fields = EVENT_FIELDS
    elif kind == "consent":
        target = draw(st.sampled_from([*tablet.fresh_interviews, tablet.iid, *pool]))
        change = tablet.consent_create(target)
        change["id"] = fresh
        if draw(st.booleans()):
            change["data"]["printed_name"] = "Test Person"
        data_fields = CONSENT_FIELDS
    elif kind == "debrief_create":
        change = _change(
            "debrief",
            fresh,
            {
                "interview_id": draw(somewhere),
                "wellbeing": draw(st.integers(1, 5)),
                "reflection": "Det gikk bra",
                "wants_debrief_talk": draw(st.booleans()),
                "participant_follow_up": False,
            },
        )
        data_fields = DEBRIEF_FIELDS
    elif kind == "debrief_edit":
        change = _change(
            "debrief", draw(st.sampled_from(pool)), {"reflection": "Rettet"}, base_rev=1
        )
        data_fields = DEBRIEF_FIELDS
    elif kind == "interview_create":
        change = tablet.interview_create(draw(st.sampled_from([fresh, *pool])))
        data_fields = INTERVIEW_FIELDS
    else:
        change = _change(
            "interview",
            draw(st.sampled_from([tablet.iid, *pool])),
            {"current_section": draw(st.integers(0, 3))},
            base_rev=1,
        )
        data_fields = ["current_section"]
    # a few fields replaced, dropped or added: wrong types, wild text, deep nesting
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 1, 2, 3]))):
        where = draw(st.sampled_from(["frame", "data", "data", "unknown", "details", "drop"]))
        value = draw(values)
        if where == "frame":
            change[draw(st.sampled_from(FRAME_FIELDS))] = value
        elif where == "data" and isinstance(change.get("data"), dict):
            change["data"][draw(st.sampled_from(data_fields))] = value
        elif where == "unknown":
            target = draw(st.sampled_from(["frame", "data"]))
            holder = change if target == "frame" else change.get("data")
            if isinstance(holder, dict):
                holder[draw(SHORT_TEXT)] = value
        elif where == "details" and isinstance(change.get("data"), dict):
            details = change["data"].get("details")
            if not isinstance(details, dict):
                details = change["data"]["details"] = {}
            details[draw(st.sampled_from([*DETAIL_FIELDS, "extra"]))] = value
        elif where == "drop":
            key = draw(st.sampled_from(FRAME_FIELDS))
            change.pop(key, None)
    if draw(st.integers(0, 9)) == 0:
        # a change id sent before (a replay or a reuse with another payload)
        at = draw(st.integers(0, 1 << 16))
        if tablet.sent_change_ids:
            change["change_id"] = tablet.sent_change_ids[at % len(tablet.sent_change_ids)]
    return change


@st.composite
def a_batch(draw, tablet: Tablet, values, whole_changes) -> tuple[dict, Targets]:
    pool = [str(u) for u in draw(st.lists(st.uuids(), min_size=2, max_size=2, unique=True))]
    one = a_change(tablet, pool, values)
    changes = draw(st.lists(weighted((5, one), (1, whole_changes)), min_size=1, max_size=6))
    if len(changes) > 1 and draw(st.integers(0, 4)) == 0:
        # one change id twice in a batch: the same payload, or another one
        i, j = draw(st.permutations(range(len(changes))))[:2]
        if isinstance(changes[i], dict) and isinstance(changes[j], dict):
            changes[j] = dict(changes[j], change_id=changes[i].get("change_id"))
    targets = Targets()
    for change in changes:
        if not isinstance(change, dict):
            continue
        data = change.get("data")
        if change.get("id") in pool and change.get("entity") == "note":
            targets.notes.add(change["id"])
        if isinstance(data, dict) and data.get("interview_id") in pool:
            targets.interviews.add(data["interview_id"])
    return {"device_id": DEVICE, "cursor": None, "changes": changes}, targets


# --- the fuzzers -----------------------------------------------------------------------------


def _run_and_report(run, capsys, label: str) -> None:
    """Run a fuzzer and print what its requests were answered (how far the fuzzing reached)."""
    OUTCOMES.clear()
    try:
        run()
    finally:
        with capsys.disabled():
            seen = ", ".join(f"{k} x{v}" for k, v in OUTCOMES.most_common(12))
            print(f"\n[sync fuzz] {label}: {seen}")


def test_fuzz_changes_with_wrong_types_never_5xx_never_stuck(tablet, capsys):
    values = junk(st.integers(50, 3000))

    @_settings(60)
    @given(batch=a_batch(tablet, values, junk(st.integers(50, 3000))))
    def run(batch):
        body, targets = batch
        check_request(tablet, body, targets)

    _run_and_report(run, capsys, "changes_with_wrong_types")


def test_fuzz_unicode_texts_never_5xx_never_stuck(tablet, capsys):
    """Wild text (lone surrogates, controls, NUL, CR/LF, past the limit) in every field."""

    @_settings(50)
    @given(batch=a_batch(tablet, TEXT, TEXT))
    def run(batch):
        body, targets = batch
        check_request(tablet, body, targets)

    _run_and_report(run, capsys, "unicode_texts")


def test_fuzz_deep_nesting_never_5xx_never_stuck(tablet, capsys):
    """Nesting 50-3,000 levels in data, details, unknown fields, frame fields, whole changes."""
    limit = _envelope_limit(tablet)
    nested = deep(depths_near(limit))

    @_settings(50)
    @given(batch=a_batch(tablet, nested, nested))
    def run(batch):
        body, targets = batch
        check_request(tablet, body, targets)

    _run_and_report(run, capsys, "deep_nesting")


def test_fuzz_envelope_never_5xx_never_stuck(tablet, capsys):
    """Wrong types for every field of the envelope, unknown fields, bodies that are no object."""
    limit = _envelope_limit(tablet)
    values = junk(depths_near(limit))
    uuids = st.uuids().map(str)
    valid_changes = st.just([]) | st.builds(lambda: [tablet.note_create()])

    def sometimes(good, bad=values):
        return weighted((5, good), (1, bad))

    @st.composite
    def envelope(draw):
        body = {
            "device_id": draw(sometimes(uuids)),
            "cursor": draw(sometimes(st.one_of(st.none(), st.integers(0, 2**31 - 1)))),
            "changes": draw(sometimes(valid_changes)),
        }
        for name in draw(
            st.lists(
                st.sampled_from(["pending", "replaces", "pending_interviews", "?"]), max_size=2
            )
        ):
            if name == "pending":
                body[name] = draw(sometimes(st.integers(0, 2**31 - 1)))
            elif name == "replaces":
                body[name] = draw(sometimes(st.one_of(st.none(), uuids)))
            elif name == "pending_interviews":
                body[name] = draw(
                    sometimes(
                        st.one_of(
                            st.lists(uuids, max_size=3),
                            st.integers(199, 202).map(lambda n: [DEVICE] * n),
                        ),
                        st.one_of(st.lists(values, max_size=2), values),
                    )
                )
            else:
                body[draw(SHORT_TEXT)] = draw(values)
        if draw(st.integers(0, 5)) == 0:
            body.pop(draw(st.sampled_from(["device_id", "cursor", "changes"])))
        return body

    @_settings(50)
    @given(body=weighted((4, envelope()), (1, values)))
    def run(body):
        check_request(tablet, body)

    _run_and_report(run, capsys, "envelope")


# --- oversized ---------------------------------------------------------------------------------


def test_a_batch_of_500_changes_is_answered_and_501_is_400(tablet):
    notes = [tablet.note_create(text=f"Notat {n}") for n in range(MAX_CHANGES)]
    results = check_request(tablet, {"device_id": DEVICE, "cursor": None, "changes": notes})
    assert results is not None and len(results) == MAX_CHANGES
    assert {r["status"] for r in results} == {"applied"}

    junk_changes = [
        {"change_id": str(uuid.uuid4()), "entity": "??", "n": n} for n in range(MAX_CHANGES)
    ]
    results = check_request(tablet, {"device_id": DEVICE, "cursor": None, "changes": junk_changes})
    assert results is not None and {r["status"] for r in results} == {"rejected"}

    too_many = [tablet.note_create() for _ in range(MAX_CHANGES + 1)]
    answer = tablet.sync(too_many)
    assert answer.status_code == 400, answer.get_data(as_text=True)[:300]
    assert answer.get_json()["error"]
    check_request(tablet, {"device_id": DEVICE, "cursor": None, "changes": too_many})


def test_a_body_over_the_size_limit_is_413_with_an_error(tablet):
    body = {
        "device_id": DEVICE,
        "cursor": None,
        "changes": [tablet.note_create(text="ø" * (3 * 1024 * 1024))],
    }
    answer = tablet.post(body)
    assert answer.status_code == 413, answer.get_data(as_text=True)[:300]
    assert answer.get_json()["error"]
    check_request(tablet, body)
    # many changes that are each fine, together over the limit
    many = [tablet.note_create(text="x" * MAX_TEXT) for _ in range(120)]
    check_request(tablet, {"device_id": DEVICE, "cursor": None, "changes": many})


# --- regressions ---------------------------------------------------------------------------------


def _waiting_edits(tablet: Tablet, make_data, deep: bool) -> list[dict]:
    """Note edits for a note that is not in the store (such an edit may wait), data from
    make_data: nested about 1,000 levels deep (965, 1,000, and the deepest the server reads)."""

    def body(depth):
        edit = _change("note", str(uuid.uuid4()), make_data(depth), base_rev=2)
        return {"device_id": DEVICE, "cursor": None, "changes": [edit]}

    if not deep:
        return [body(0)]
    deepest = _deepest_parsed(tablet, body, low=10, high=1100)
    return [body(depth) for depth in sorted({965, 1000, deepest})]


WAITING_DATA = [
    pytest.param(lambda d: {"text": Deep(d)}, True, id="text-nested-list"),
    pytest.param(lambda d: {"interview_id": Deep(d, "dict")}, True, id="interview_id-nested-dict"),
    pytest.param(lambda d: {"themes": Deep(d, "mixed", "x")}, True, id="themes-nested-mixed"),
    pytest.param(lambda d: {"interview_id": ["x"]}, False, id="interview_id-a-list"),
    pytest.param(lambda d: {"interview_id": {"a": 1}}, False, id="interview_id-an-object"),
]


@pytest.mark.parametrize(("make_data", "deep"), WAITING_DATA)
def test_a_waiting_edit_never_breaks_another_participants_withdrawal(
    app, world, tablet, make_data, deep
):
    for body in _waiting_edits(tablet, make_data, deep):
        text = encode(body)
        answer = tablet.post_text(text)
        results = _check_answer(tablet, body, text, answer)
        if results is not None:
            assert results[0]["status"] in ("applied", "rejected"), results

    # a coordinator withdraws another participant (pa2: peer_a2's, in case A)
    coordinator = app.test_client()
    token = _login(coordinator, "coord_a")
    pid = world.participants["pa2"]
    page = coordinator.get(f"/participants/{pid}/withdraw?lang=en")
    assert page.status_code == 200
    tablet.errors.records.clear()
    done = on_fresh_stack(
        lambda: _FormPoster(coordinator, token).post(
            f"/participants/{pid}/withdraw?lang=en",
            data={"withdrawn_on": today_in_oslo().isoformat(), "keep_identity": "keep"},
        )
    )
    assert done.status_code in (200, 302, 303), (
        f"the withdrawal answered {done.status_code}; logged: "
        + "".join(tablet.errors.records)[-900:]
    )
    with app.app_context():
        assert db.session.get(Participant, pid).status == "withdrawn"
        db.session.remove()
    # and the peer's tablet goes on syncing
    assert_not_stuck(tablet, tablet.cursor(), Targets())


def _one_bad_change(tablet: Tablet, where: str, bad: str) -> dict:
    """A change with the text `bad` in one field, otherwise valid."""
    if where == "note text":
        return tablet.note_create(text=f"Halv emoji {bad}")
    if where == "note question_key":
        change = tablet.note_create()
        change["data"]["question_key"] = bad
        return change
    if where == "note theme":
        return tablet.note_create(themes=[bad])
    if where == "note edit text":
        return _change("note", tablet.note_id, {"text": f"rettet {bad}"}, base_rev=1)
    if where == "stop comment":
        return _change(
            "event",
            str(uuid.uuid4()),
            {
                "interview_id": tablet.iid,
                "kind": "stop",
                "details": {"reason": "other", "comment": f"stoppet {bad}"},
            },
        )
    if where == "distress_2 comment":
        return _change(
            "event",
            str(uuid.uuid4()),
            {
                "interview_id": tablet.iid,
                "kind": "distress_2",
                "details": {"contact_team": True, "comment": bad},
            },
        )
    if where == "reschedule reason":
        return _change(
            "event",
            str(uuid.uuid4()),
            {"interview_id": tablet.iid, "kind": "reschedule", "details": {"reason": bad}},
        )
    if where == "consent printed_name":
        return tablet.consent_create(tablet.fresh_interviews[0], printed_name=f"Ola {bad}")
    if where == "consent paper_form_number":
        return tablet.consent_create(tablet.fresh_interviews[0], paper_form_number=f"P{bad}")
    if where == "debrief reflection":
        return _change(
            "debrief",
            str(uuid.uuid4()),
            {"interview_id": tablet.iid, "wellbeing": 3, "reflection": f"tungt {bad}"},
        )
    if where == "interview language":
        change = tablet.interview_create(str(uuid.uuid4()))
        change["data"]["language"] = bad
        return change
    if where == "unknown field's name":
        return tablet.note_create(**{f"felt{bad}": 1})
    raise AssertionError(where)


BAD_PLACES = [
    "note text",
    "note question_key",
    "note theme",
    "note edit text",
    "stop comment",
    "distress_2 comment",
    "reschedule reason",
    "consent printed_name",
    "consent paper_form_number",
    "debrief reflection",
    "interview language",
    "unknown field's name",
]


@pytest.mark.parametrize("bad", ["\ud800", "\udfff", "a\ud83d"], ids=["d800", "dfff", "half-emoji"])
@pytest.mark.parametrize("where", BAD_PLACES)
def test_a_lone_surrogate_rejects_that_change_only(tablet, where, bad):
    bad_change = _one_bad_change(tablet, where, bad)
    before, after = tablet.note_create(text="Før"), tablet.note_create(text="Etter")
    body = {"device_id": DEVICE, "cursor": None, "changes": [before, bad_change, after]}
    results = check_request(tablet, body)
    assert results is not None, "the batch was not answered 200"
    assert [r["status"] for r in results] == ["applied", "rejected", "applied"], results
    assert "not valid Unicode" in results[1].get("reason", ""), results[1]

    alone = _one_bad_change(tablet, where, bad)
    results = check_request(tablet, {"device_id": DEVICE, "cursor": None, "changes": [alone]})
    assert results is not None, "a batch of the one change was not answered 200"
    assert [r["status"] for r in results] == ["rejected"], results
