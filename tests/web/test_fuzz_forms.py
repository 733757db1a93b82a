"""Fuzzing every HTML form of the app with Hypothesis (issue 6).

Each form is posted, as the user it belongs to, with arbitrary field values: any unicode, NUL
bytes, huge strings, numbers and dates far out of range, fields left out, fields repeated,
files where text belongs, JSON where a form belongs. For every answer:

- never a 5xx;
- a rejected request (a 4xx, or the form shown again with errors) leaves every stored record as
  it was (both stores; only the audit trail and the user's last login and language may move);
- the error texts of a rejected page are in the user's language (all posts carry ?lang=nb).

Accepted posts change the record they target, so the next case gets a fresh one. The GET
filters (exports, participants, alerts, the theme matrix) are fuzzed too: they never change
anything. Fast by default; FUZZ_EXAMPLES=500 runs a longer search.
"""

import html
import io
import json
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import wtforms
from babel.support import Translations
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

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
from tests.conftest import PASSWORD
from tests.helpers import (
    blank_signature_data_url,
    give_paper_consent,
    signature_data_url,
    start_interview,
)
from tests.sync.test_fuzz_api import changed_tables, store_snapshot

FAST_EXAMPLES = 15
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES") or FAST_EXAMPLES)
ROOT = Path(__file__).resolve().parents[2]

# --- arbitrary values -----------------------------------------------------------------------

ODD_STRINGS = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\r\n",
    "null",
    "None",
    "true",
    "on",
    "0",
    "-1",
    "1e309",
    "NaN",
    "inf",
    "9" * 40,
    "-9" * 20,
    "0x10",
    "2026-02-30",
    "99999-01-01",
    "0000-00-00",
    "24:00",
    "13:60",
    "<script>alert(1)</script>",
    "'; DROP TABLE note; --",
    "%s%n%(x)s{0}",
    "{{ 7*7 }}",
    "\u202eevil",
    "\ufeff",
    "ÆØÅ æøå",
    "😀" * 5,
    "\U0010ffff",
    "../../etc/passwd",
]
NASTY = st.one_of(
    st.text(max_size=40),
    st.sampled_from(ODD_STRINGS),
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.floats().map(str),
    st.dates(min_value=date(1, 1, 1)).map(date.isoformat),
    st.times().map(lambda t: t.isoformat()),
    # around and past every length limit of the forms (40, 80, 200, 2000, 20 000, 700 000);
    # the largest pass the 2 MiB limit on a request only as plain ASCII
    st.builds(
        lambda ch, n: ch * n,
        st.sampled_from(["x", "ø", "😀", "\x00", "\n", " "]),
        st.sampled_from([41, 81, 201, 2001, 20_001, 41, 81, 201, 2001, 20_001, 700_001]),
    ),
)


def entry(good: st.SearchStrategy) -> st.SearchStrategy:
    """One field in a wild case: a good value, an odd one, left out, or repeated."""
    return st.one_of(
        good,
        good,
        good,
        NASTY,
        st.just(None),
        st.lists(st.one_of(good, NASTY), min_size=2, max_size=3),
    )


@st.composite
def body(draw, fields: dict[str, st.SearchStrategy]):
    """The form's fields, plus a few unknown ones.

    A third of the cases are clean (good values, some left out), a third spoil one field, a
    third are wild: so the checks behind the first one are reached too.
    """
    mode = draw(st.sampled_from(["clean", "one", "wild"]), label="mode")
    named: dict[str, Any] = {}
    for name, good in fields.items():
        strategy = entry(good) if mode == "wild" else st.one_of(good, good, good, st.just(None))
        named[name] = draw(strategy, label=name)
    if mode == "one" and fields:
        name = draw(st.sampled_from(sorted(fields)), label="spoilt")
        named[name] = draw(
            st.one_of(NASTY, st.lists(st.one_of(fields[name], NASTY), min_size=2, max_size=3))
        )
    wild = mode == "wild"
    extras = draw(st.dictionaries(st.text(max_size=12), NASTY, max_size=2)) if wild else {}
    return named, extras


ENCODINGS = ["form"] * 12 + ["multipart", "file", "json", "raw"]


JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
KEEP = object()
# JSON where a form belongs: per field, keep the drawn text or put another JSON type there
RETYPED = st.lists(st.one_of(st.just(KEEP), JSON_VALUES), min_size=20, max_size=20)


def encode(drawn, how: str, retyped: list | None = None) -> dict[str, Any]:
    """Turn drawn fields into test-client arguments: a form, multipart, JSON or raw bytes."""
    named, extras = drawn
    pairs: list[tuple[str, Any]] = []
    for name, value in [*named.items(), *extras.items()]:
        if value is None:
            continue
        for one in value if isinstance(value, list) else [value]:
            pairs.append((name, one))
    if how == "json":
        plain = {}
        for i, (name, value) in enumerate(pairs):
            other = (retyped or [KEEP])[i % len(retyped or [KEEP])]
            plain[name] = value if other is KEEP else other
        return {"data": json.dumps(plain), "content_type": "application/json"}
    if how == "raw":
        return {
            "data": b"\xff\xfe\x00a=%zz&&=&b",
            "content_type": "application/x-www-form-urlencoded",
        }
    data = MultiDict(pairs)
    if how == "file":  # a file where text belongs (the first field, or a made-up one)
        name, value = pairs[0] if pairs else ("file", "")
        data.setlist(name, [(io.BytesIO(value.encode("utf-8", "surrogatepass")), "x.txt")])
    if how in ("multipart", "file"):
        return {"data": data, "content_type": "multipart/form-data"}
    return {"data": data}


# --- the user's language in error texts --------------------------------------------------


def _pattern(message: str) -> str:
    escaped = re.escape(" ".join(message.split()))
    return re.sub(r"%\\\(\w+\\\)[sd]|%[sd]", ".+?", escaped)


def _catalogue_patterns():
    """Regexes of every Bokmål message (app and WTForms) and of English ones that differ."""
    nb, en = [], []
    for dirname, domain in (
        (ROOT / "translations", "messages"),
        (Path(wtforms.__file__).parent / "locale", "wtforms"),
    ):
        catalogue = Translations.load(str(dirname), ["nb"], domain=domain)._catalog
        for key, msgstr in catalogue.items():
            msgid = key[0] if isinstance(key, tuple) else key
            if not msgid or not msgstr:
                continue
            nb.append(_pattern(msgstr))
            if msgstr != msgid:
                en.append(_pattern(msgid))
    return re.compile("|".join(f"(?:{p})" for p in nb)), re.compile(
        "|".join(f"(?:{p})" for p in en)
    )


NB_TEXT, EN_TEXT = _catalogue_patterns()
ERROR_BITS = re.compile(
    r'<ul class="errors"[^>]*>(.*?)</ul>|<p class="banner error"[^>]*>(.*?)</p>', re.S
)


def error_texts(page: str) -> list[str]:
    """The error messages a page shows: field errors, error banners, an error page's heading."""
    texts = []
    for listed, banner in ERROR_BITS.findall(page):
        if listed:
            texts += re.findall(r"<li>(.*?)</li>", listed, re.S)
        if banner:
            texts.append(banner)
    if not texts and '<section class="card narrow">' in page:
        texts += re.findall(r"<h1>(.*?)</h1>", page, re.S)
    return [" ".join(html.unescape(re.sub(r"<[^>]+>", "", t)).split()) for t in texts]


def assert_in_bokmal(page: str, where: str) -> None:
    """Every error text is a Bokmål message, and none is an English one."""
    texts = error_texts(page)
    assert texts, f"{where}: a rejected page shows no error text"
    for text in texts:
        assert NB_TEXT.fullmatch(text), f"{where}: error text not in Bokmål: {text!r}"
        assert not (EN_TEXT.fullmatch(text) and not NB_TEXT.fullmatch(text)), text


# --- the world the forms act on -----------------------------------------------------------


class Scene:
    """Clients logged in as the right users, and fresh records for the forms to act on."""

    def __init__(self, app, world):
        self.app, self.world = app, world
        self.peer = self._client("peer_a")
        self.coord = self._client("coord_a")
        self.anonymous = app.test_client()
        with app.app_context():
            form = db.session.scalars(
                select(ConsentFormVersion).order_by(ConsentFormVersion.version.desc())
            ).first()
            self.consent_items = [item["key"] for item in form.content["items"]]
            guide = db.session.scalars(select(GuideVersion)).first()
            parsed = guide_of(guide)
            self.sections = [[q.key for q in s.questions] for s in parsed.sections]
            self.case_ids = {c.code: c.id for c in db.session.scalars(select(Case))}
            db.session.remove()
        self._foreign: str | None = None

    def _client(self, username: str):
        client = self.app.test_client()
        answer = client.post("/login", data={"username": username, "password": PASSWORD})
        assert answer.status_code == 302
        client.get("/?lang=nb")
        return client

    def theme_ids(self) -> list[int]:
        with self.app.app_context():
            ids = list(db.session.scalars(select(Theme.id).where(Theme.retired.is_(False))))
            db.session.remove()
        return ids

    def participant(self, consent: bool = False) -> str:
        """A fresh participant in case A, interviewed by peer_a."""
        with self.app.app_context():
            case = db.session.scalar(select(Case).where(Case.code == "A"))
            peer = db.session.get(User, self.world.users["peer_a"])
            coord = db.session.get(User, self.world.users["coord_a"])
            participant = register(case, "nb", [peer], coord, "Fuzz Person", "+47 900 00 000")
            db.session.commit()
            pid = participant.id
            db.session.remove()
        if consent:
            iid = self._interview_of(pid)
            start_interview(self.peer, iid)
            give_paper_consent(self.peer, iid)
        return pid

    def _interview_of(self, pid: str) -> str:
        with self.app.app_context():
            participant = db.session.get(Participant, pid)
            guide = db.session.scalars(select(GuideVersion)).first()
            interview = Interview(
                participant=participant,
                guide_version=guide,
                language="nb",
                place_kind="home",
                planned_at=utcnow() + timedelta(hours=1),
            )
            db.session.add(interview)
            db.session.commit()
            iid = interview.id
            db.session.remove()
        return iid

    def interview(self, state: str) -> str:
        """A fresh interview of peer_a's in the given state."""
        iid = self._interview_of(self.participant())
        if state == "planned":
            return iid
        start_interview(self.peer, iid)
        if state == "started":  # under way, no consent yet
            return iid
        assert give_paper_consent(self.peer, iid).status_code == 302
        if state == "paused":
            self.peer.post(f"/interviews/{iid}/pause")
        elif state == "completed":
            self.peer.post(f"/interviews/{iid}/finish")
        elif state == "stopped":
            self.peer.post(f"/interviews/{iid}/stop", data={"reason": "practical"})
        elif state == "distress_2":
            self.peer.post(f"/interviews/{iid}/distress/stage-2", data={"contact_team": "y"})
        elif state == "withdrawn":
            self.withdraw(self.participant_of(iid))
        return iid

    def withdraw(self, pid: str) -> None:
        """Mark a participant withdrawn (the withdrawal itself is tested in test_withdrawal)."""
        with self.app.app_context():
            db.session.get(Participant, pid).status = "withdrawn"
            db.session.commit()
            db.session.remove()

    def participant_of(self, iid: str) -> str:
        with self.app.app_context():
            pid = db.session.get(Interview, iid).participant_id
            db.session.remove()
        return pid

    def sync(self, *changes) -> list[dict]:
        answer = self.peer.post(
            "/api/v1/sync",
            json={"device_id": str(uuid.uuid4()), "cursor": None, "changes": list(changes)},
        )
        assert answer.status_code == 200, answer.get_data(as_text=True)
        return answer.get_json()["results"]

    def note(self, iid: str, qkey: str, text: str = "Første notat") -> str:
        note_id = str(uuid.uuid4())
        self.sync(_change("note", note_id, None, interview_id=iid, question_key=qkey, text=text))
        return note_id

    def foreign_note(self) -> str:
        """A note in peer_b's interview (case B), which peer_a may not see."""
        if self._foreign is None:
            peer_b = self._client("peer_b")
            iid = self.world.interviews["pb"]
            start_interview(peer_b, iid)
            give_paper_consent(peer_b, iid)
            self._foreign = str(uuid.uuid4())
            change = _change(
                "note",
                self._foreign,
                None,
                interview_id=iid,
                question_key=self.sections[0][0],
                text="Peer B sitt notat",
            )
            answer = peer_b.post(
                "/api/v1/sync",
                json={"device_id": str(uuid.uuid4()), "cursor": None, "changes": [change]},
            )
            assert answer.get_json()["results"][0]["status"] == "applied", answer.get_json()
        return self._foreign

    def conflicted_note(self) -> str:
        """A note edited on two tablets from the same rev: it has two versions."""
        iid = self.interview("running")
        note_id = self.note(iid, self.sections[0][0])
        self.sync(_change("note", note_id, 1, text="Versjon én"))
        results = self.sync(_change("note", note_id, 1, text="Versjon to"))
        assert results[0]["status"] == "conflict", results
        return note_id

    def note_rev(self, note_id: str) -> int:
        with self.app.app_context():
            note = db.session.get(Note, note_id)
            rev = note.rev if note else 1
            db.session.remove()
        return rev

    def theme(self) -> int:
        answer = self.coord.post(
            "/desk/themes/",
            data={
                "add-name_nb": f"Fuzztema {uuid.uuid4().hex[:8]}",
                "add-name_en": f"Fuzz {uuid.uuid4().hex[:8]}",
            },
        )
        assert answer.status_code == 302, answer.status_code
        return int(answer.headers["Location"].rsplit("-", 1)[1])

    def open_alerts(self) -> list[tuple[str, str]]:
        page = self.coord.get("/desk/alerts/").get_data(as_text=True)
        kinds = re.findall(r'name="kind" value="([^"]*)"', page)
        keys = re.findall(r'name="key" value="([^"]*)"', page)
        return [(html.unescape(k), html.unescape(v)) for k, v in zip(kinds, keys, strict=True)]


def _change(entity, record_id, base_rev, **data):
    return {
        "change_id": str(uuid.uuid4()),
        "entity": entity,
        "id": record_id,
        "base_rev": base_rev,
        "recorded_at": utcnow().isoformat() + "Z",
        "data": data,
    }


# --- the forms ----------------------------------------------------------------------------


@dataclass
class Target:
    """What one case posts to: the address and the good values of its fields."""

    path: str
    fields: dict[str, st.SearchStrategy]
    read_only: bool = False


@dataclass
class Form:
    """A form of the app: who posts it, and how to make a record for it to act on."""

    name: str
    role: str  # peer, coord or anonymous
    make: Callable[[Scene, Any], Target]  # (scene, state) -> target
    states: tuple = ("-",)
    method: str = "POST"
    notes: dict = field(default_factory=dict)


YES = st.sampled_from(["y", "on", "1", "true", ""])
UUIDS = st.uuids().map(str)


def _day(offset_days=(-400, 400)) -> st.SearchStrategy:
    low, high = offset_days
    return st.integers(low, high).map(lambda n: (date.today() + timedelta(days=n)).isoformat())


TIMES = st.sampled_from(["09:00", "13:30", "23:59", "00:00", "9:5", "12:00:00"])


def _interview_path(scene: Scene, state: str, suffix: str) -> str:
    iid = str(uuid.uuid4()) if state == "missing" else scene.interview(state)
    return f"/interviews/{iid}/{suffix}"


def _login(scene, state):
    return Target(
        "/login",
        {
            "username": st.sampled_from(["peer_a", "coord_a", "PEER_A ", "nobody", "admin"]),
            "password": st.sampled_from([PASSWORD, "wrong", PASSWORD + " "]),
        },
    )


def _new_participant(scene, state):
    # mostly what the form offers; a peer and a team of another case now and then
    peers = [str(scene.world.users[k]) for k in ("peer_a", "peer_a2", "peer_a", "peer_b")]
    case_a, case_b = str(scene.case_ids["A"]), str(scene.case_ids["B"])
    return Target(
        "/participants/new",
        {
            "case_id": st.sampled_from([case_a, case_a, case_a, case_b]),
            "preferred_language": st.sampled_from(["nb", "en"]),
            "interviewers": st.sampled_from(peers),
            "name": st.sampled_from(["Ola Nordmann", "Åse Øvre-Ås"]),
            "phone": st.sampled_from(["+47 900 00 000", "(22) 33-44-55"]),
        },
    )


def _participant_path(scene, state, suffix=""):
    if state == "missing":
        return f"/participants/{uuid.uuid4()}{suffix}"
    if state == "other_case":
        return f"/participants/{scene.world.participants['pb']}{suffix}"
    pid = scene.participant(consent=state == "consented")
    if state == "withdrawn":
        scene.withdraw(pid)
    return f"/participants/{pid}{suffix}"


def _plan(scene, state):
    return Target(
        _participant_path(scene, state, "/interviews"),
        {
            "plan-day": _day(),
            "plan-at": TIMES,
            "plan-place_kind": st.sampled_from(["home", "cafe", "team_office", "other", "moon"]),
            "plan-language": st.sampled_from(["nb", "en"]),
        },
    )


def _assign(scene, state):
    peers = [str(scene.world.users[k]) for k in ("peer_a", "peer_a2", "peer_b", "admin")]
    return Target(
        _participant_path(scene, state, "/interviewers"),
        {"assign-interviewers": st.sampled_from(peers)},
    )


def _identity(scene, state):
    return Target(_participant_path(scene, state, "/identity"), {}, read_only=True)


def _withdraw(scene, state):
    today = today_in_oslo()
    return Target(
        _participant_path(scene, state, "/withdraw"),
        {
            "withdrawn_on": st.sampled_from(
                [today.isoformat(), (today - timedelta(days=1)).isoformat()]
            )
            | _day((-3, 3)),
            "keep_data": st.sampled_from(["keep", "delete", "maybe"]),
            "keep_identity": st.sampled_from(["keep", "delete"]),
        },
    )


def _withdraw_items(scene, state):
    today = today_in_oslo()
    return Target(
        _participant_path(scene, state, "/withdraw-items"),
        {
            "items": st.sampled_from(["quotes", "recontact", "audio", "participate", "x", ""]),
            "withdrawn_on": st.sampled_from([today.isoformat()]) | _day((-3, 3)),
        },
    )


def _capacity(scene, state):
    return Target(
        _interview_path(scene, state, "capacity"),
        {
            "understands": YES,
            "can_explain": YES,
            "not_in_crisis": YES,
            "minutes": st.sampled_from(["15", "75", "240", "14", "241"]),
            "go": st.sampled_from(["ok", "reschedule"]),
        },
    )


def _reschedule(scene, state):
    return Target(
        _interview_path(scene, state, "reschedule"),
        {
            "reason": st.sampled_from(["capacity", "participant_asked", "practical"]),
            "day": _day(),
            "at": TIMES,
        },
    )


def _consent(scene, state):
    items = {f"item-{k}": st.sampled_from(["yes", "no", "maybe"]) for k in scene.consent_items}
    return Target(
        _interview_path(scene, state, "consent"),
        {
            **items,
            "method": st.sampled_from(["tablet", "paper"]),
            "signature": st.sampled_from(
                [signature_data_url(), blank_signature_data_url(), "data:image/png;base64,AAAA"]
            ),
            "paper_form_number": st.sampled_from(["P-1", " "]),
            "printed_name": st.sampled_from(["KARI NORDMANN"]),
        },
    )


def _section(scene, state):
    if state == "missing":
        return Target(f"/interviews/{uuid.uuid4()}/section/0", {})
    kind, index = state.split("@")
    index = int(index)
    iid = scene.interview("running" if kind == "with_notes" else kind)
    keys = scene.sections[index]
    fields: dict[str, st.SearchStrategy] = {}
    known_ids = [scene.foreign_note()]
    if kind == "with_notes":
        for qkey in keys[:2]:
            note_id = scene.note(iid, qkey)
            known_ids.append(note_id)
            prefix = f"note-{note_id}"
            fields[f"{prefix}-text"] = st.sampled_from(["Endret notat", "", "  "])
            fields[f"{prefix}-rev"] = st.sampled_from(["1", "1", "2", "0", "-1", str(2**31)])
            fields[f"{prefix}-resolve"] = st.just("1")
    themes = st.sampled_from([str(t) for t in scene.theme_ids()] or ["1"])
    for qkey in keys[:3]:
        prefix = f"new-{qkey}"
        # a fresh id, or one that is already a note here or in someone else's interview
        fields[f"{prefix}-id"] = st.one_of(UUIDS, UUIDS, st.sampled_from(known_ids))
        fields[f"{prefix}-text"] = st.sampled_from(
            ["Et nytt notat", "Tjenestene henger ikke sammen"]
        )
        fields[f"{prefix}-polarity"] = st.sampled_from(["inhibits", "promotes", ""])
        fields[f"{prefix}-theme"] = themes
        fields[f"{prefix}-quote"] = st.just("1")
    for note_field in ("-polarity", "-theme", "-quote"):
        for prefix in [k[: -len("-text")] for k in fields if k.endswith("-text")]:
            fields.setdefault(prefix + note_field, themes if note_field == "-theme" else YES)
    fields["go"] = st.sampled_from(
        ["stay", "next", "back", "finish", "pause", "resume", "check_in", "distress", "stop"]
        + ["section-1", "section-999", "section-x"]
    )
    return Target(f"/interviews/{iid}/section/{index}", fields)


def _no_fields(suffix):
    def make(scene, state):
        return Target(_interview_path(scene, state, suffix), {})

    return make


def _distress_two(scene, state):
    return Target(
        _interview_path(scene, state, "distress/stage-2"),
        {"contact_team": YES, "comment": st.sampled_from(["Deltakeren ble urolig", ""])},
    )


def _stop(scene, state):
    return Target(
        _interview_path(scene, state, "stop"),
        {
            "reason": st.sampled_from(["participant_wish", "distress", "practical", "other", ""]),
            "comment": st.sampled_from(["Praktiske grunner", ""]),
        },
    )


def _debrief(scene, state):
    return Target(
        _interview_path(scene, state, "debrief"),
        {
            "wellbeing": st.sampled_from(["1", "3", "5", "0", "6"]),
            "reflection": st.sampled_from(["Det gikk fint", ""]),
            "wants_debrief_talk": YES,
            "participant_follow_up": YES,
        },
    )


def _resolve(scene, state):
    if state == "missing":
        note_id = str(uuid.uuid4())
    elif state == "plain_note":
        note_id = scene.note(scene.interview("running"), scene.sections[0][0])
    else:
        note_id = scene.conflicted_note()
    rev = scene.note_rev(note_id)
    return Target(
        f"/interviews/conflicts/{note_id}",
        {
            "choice": st.sampled_from(["mine", "other", "merged", "both"]),
            "rev": st.sampled_from([str(rev), str(rev - 1), "x"]),
            "text": st.sampled_from(["Slått sammen", "", " "]),
        },
    )


def _codebook_add(scene, state):
    return Target(
        "/desk/themes/",
        {
            "add-name_nb": st.sampled_from(["Samarbeid", "Nytt tema", "Kontinuitet"]),
            "add-name_en": st.sampled_from(["Cooperation", "New theme", "Continuity"]),
        },
    )


def _codebook_rename(scene, state):
    theme_id = "999999" if state == "missing" else str(scene.theme())
    return Target(
        f"/desk/themes/{theme_id}",
        {
            f"t{theme_id}-name_nb": st.sampled_from(["Omdøpt tema", "Samarbeid"]),
            f"t{theme_id}-name_en": st.sampled_from(["Renamed theme", "Cooperation"]),
        },
    )


def _codebook_retire(scene, state):
    theme_id = str(2**63) if state == "missing" else str(scene.theme())
    return Target(f"/desk/themes/{theme_id}/retire", {"retired": st.sampled_from(["0", "1"])})


def _alert_ack(scene, state):
    if state == "open_alert":
        scene.interview("distress_2")
    alerts = scene.open_alerts() or [("distress_2", "none")]
    return Target(
        "/desk/alerts/ack",
        {
            "kind": st.sampled_from(sorted({k for k, _ in alerts}) + ["overdue"]),
            "key": st.sampled_from([k for _, k in alerts] + ["x" * 121]),
        },
    )


def _get_filter(path, fields):
    def make(scene, state):
        return Target(path(scene), fields(scene), read_only=True)

    return make


CASES = st.sampled_from(["A", "B", "C", "Z", "a", " A "])
FORMS = [
    Form("login", "anonymous", _login),
    Form("register participant", "coord", _new_participant),
    Form("plan interview", "coord", _plan, ("invited", "withdrawn", "missing", "other_case")),
    Form("assign interviewers", "coord", _assign, ("invited", "missing", "other_case")),
    Form("identity view", "coord", _identity, ("invited", "missing", "other_case")),
    Form("withdraw participant", "coord", _withdraw, ("invited", "consented", "withdrawn")),
    Form(
        "withdraw consent items",
        "coord",
        _withdraw_items,
        ("consented", "invited", "withdrawn", "other_case", "missing"),
    ),
    Form("capacity check", "peer", _capacity, ("planned", "running", "withdrawn", "missing")),
    Form("reschedule", "peer", _reschedule, ("planned", "running", "missing")),
    Form("consent", "peer", _consent, ("started", "running", "withdrawn", "stopped")),
    Form(
        "section notes",
        "peer",
        _section,
        ("running@0", "with_notes@0", "with_notes@1", "completed@1", "withdrawn@0", "missing"),
    ),
    Form("pause", "peer", _no_fields("pause"), ("running", "paused", "planned", "withdrawn")),
    Form("resume", "peer", _no_fields("resume"), ("paused", "running", "completed")),
    Form("check in", "peer", _no_fields("check-in"), ("running", "planned", "stopped")),
    Form("distress stage 1", "peer", _no_fields("distress"), ("running", "planned", "missing")),
    Form("distress stage 2", "peer", _distress_two, ("running", "paused", "completed")),
    Form("stop", "peer", _stop, ("running", "planned", "completed", "withdrawn")),
    Form("finish", "peer", _no_fields("finish"), ("running", "started", "completed", "missing")),
    Form("debrief", "peer", _debrief, ("completed", "stopped", "running", "withdrawn")),
    Form("resolve conflict", "peer", _resolve, ("conflict", "plain_note", "missing")),
    Form("codebook add", "coord", _codebook_add),
    Form("codebook rename", "coord", _codebook_rename, ("theme", "missing")),
    Form("codebook retire", "coord", _codebook_retire, ("theme", "missing")),
    Form("alert acknowledge", "coord", _alert_ack, ("open_alert", "none")),
    Form(
        "exports filter",
        "coord",
        _get_filter(
            lambda s: "/desk/exports/",
            lambda s: {"case": CASES},
        ),
        method="GET",
    ),
    Form(
        "export downloads",
        "coord",
        lambda scene, state: Target(f"/desk/exports/{state}", {"case": CASES}, read_only=True),
        ("notes.csv", "export.json", "project.qdpx"),
        method="GET",
    ),
    Form(
        "participants filter",
        "coord",
        _get_filter(lambda s: "/participants/", lambda s: {"case": CASES}),
        method="GET",
    ),
    Form(
        "alerts filter",
        "coord",
        _get_filter(lambda s: "/desk/alerts/", lambda s: {"all": st.sampled_from(["1", "0"])}),
        method="GET",
    ),
    Form(
        "theme matrix cell",
        "coord",
        _get_filter(
            lambda s: f"/desk/themes/matrix/A/{s.theme_ids()[0]}",
            lambda s: {"polarity": st.sampled_from(["inhibits", "promotes", "none", "x"])},
        ),
        method="GET",
    ),
]


def _rejected(answer) -> bool:
    if 400 <= answer.status_code < 500:
        return True
    if answer.status_code == 200 and answer.mimetype == "text/html":
        return bool(ERROR_BITS.search(answer.get_data(as_text=True)))
    return False


@pytest.mark.parametrize("form", FORMS, ids=[f.name for f in FORMS])
def test_form_fuzz(app, world, form: Form, capsys):
    scene = Scene(app, world)
    targets: dict[str, Target] = {}
    outcomes: dict[str, int] = {}
    stored: list[dict] = []  # the store's snapshot, while nothing has changed it since
    ran = [0]

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    @given(data=st.data())
    def run(data):
        state = data.draw(st.sampled_from(form.states), label="state")
        if state not in targets:
            targets[state] = form.make(scene, state)
            stored.clear()
        target = targets[state]
        how = "form"
        if form.method == "POST":
            how = data.draw(st.sampled_from(ENCODINGS), label="encoding")
        drawn = data.draw(body(target.fields), label="fields")
        client = {"peer": scene.peer, "coord": scene.coord, "anonymous": scene.anonymous}[form.role]
        if not stored:
            stored.append(store_snapshot(app))
        before = stored.pop()
        if form.method == "GET":
            query = encode(drawn, "form")["data"]
            query.add("lang", "nb")
            answer = client.get(target.path, query_string=query)
        else:
            retyped = data.draw(RETYPED, label="json types") if how == "json" else None
            answer = client.post(target.path + "?lang=nb", **encode(drawn, how, retyped))
        ran[0] += 1
        status = answer.status_code
        outcomes[str(status)] = outcomes.get(str(status), 0) + 1
        where = f"{form.name} ({state}, {how}) -> {status}"
        assert status < 500, f"{where}: {answer.get_data(as_text=True)[:500]}"
        rejected = _rejected(answer)
        if rejected or target.read_only:
            after = store_snapshot(app)
            changed = changed_tables(before, after)
            assert changed == [], f"{where}: a rejected request changed {changed}"
            stored.append(after)  # the next case starts from the same store
        if rejected and answer.mimetype == "text/html":
            assert_in_bokmal(answer.get_data(as_text=True), where)
        if not rejected and not target.read_only:
            targets.pop(state, None)  # it may have acted on the record: a fresh one next time
            if form.role == "anonymous" and status == 302:
                scene.anonymous = app.test_client()

    run()
    with capsys.disabled():
        summary = ", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items()))
        print(f"\n[fuzz forms] {form.name}: {ran[0]} cases ran ({summary})", end="")
    assert ran[0] > 0


# --- what the fuzzing found, kept as plain regression tests ---------------------------------


def _rejected_unchanged(app, answer, before, status=400):
    assert answer.status_code == status, answer.status_code
    assert changed_tables(before, store_snapshot(app)) == []
    assert_in_bokmal(answer.get_data(as_text=True), "finding")


def test_finding_a_file_where_text_belongs_is_a_400(app, world):
    """A multipart file in the password field reached Length() and answered 500."""
    scene = Scene(app, world)
    before = store_snapshot(app)
    answer = scene.anonymous.post(
        "/login?lang=nb",
        data={"username": "peer_a", "password": (io.BytesIO(b"x"), "x.txt")},
        content_type="multipart/form-data",
    )
    _rejected_unchanged(app, answer, before)


def test_finding_json_where_a_form_belongs_is_a_400(app, world):
    """Flask-WTF reads a JSON body as the form: `true` as a password answered 500."""
    scene = Scene(app, world)
    before = store_snapshot(app)
    answer = scene.anonymous.post("/login?lang=nb", json={"username": "peer_a", "password": True})
    _rejected_unchanged(app, answer, before)


def test_finding_an_interviewer_not_offered_is_refused_in_bokmal(app, world):
    """WTForms' own 'not a valid choice for this field' has no Bokmål: it showed in English."""
    scene = Scene(app, world)
    before = store_snapshot(app)
    answer = scene.coord.post(
        "/participants/new?lang=nb",
        data={"case_id": str(scene.case_ids["A"]), "preferred_language": "nb", "interviewers": "0"},
    )
    _rejected_unchanged(app, answer, before)
    assert "Velg medforskere som jobber i dette FACT-teamet." in error_texts(
        answer.get_data(as_text=True)
    )


def test_finding_planning_for_a_withdrawn_participant_says_why(app, world):
    """The 400 put its message on a form the page of a withdrawn participant does not show."""
    scene = Scene(app, world)
    pid = scene.participant()
    scene.withdraw(pid)
    before = store_snapshot(app)
    answer = scene.coord.post(
        f"/participants/{pid}/interviews?lang=nb",
        data={"plan-day": today_in_oslo().isoformat(), "plan-at": "10:00"},
    )
    _rejected_unchanged(app, answer, before, status=409)
    assert "Denne deltakeren har trukket seg" in answer.get_data(as_text=True)


@pytest.mark.parametrize("damage", ["rev 0", "rev too large", "id of a note not seen"])
def test_finding_a_refused_note_saves_nothing_of_the_section(app, world, damage):
    """One refused note answered 400 while the other notes of the form were saved."""
    scene = Scene(app, world)
    iid = scene.interview("running")
    keys = scene.sections[0]
    note_id = scene.note(iid, keys[0])
    data = {f"new-{keys[1]}-id": str(uuid.uuid4()), f"new-{keys[1]}-text": "Et nytt notat"}
    if damage == "id of a note not seen":
        data.update({f"new-{keys[2]}-id": scene.foreign_note(), f"new-{keys[2]}-text": "Kapret"})
    else:
        rev = "0" if damage == "rev 0" else str(2**31)
        data.update({f"note-{note_id}-text": "Endret", f"note-{note_id}-rev": rev})
    before = store_snapshot(app)
    answer = scene.peer.post(f"/interviews/{iid}/section/0?lang=nb", data=data)
    _rejected_unchanged(app, answer, before)
    assert "Et nytt notat" in answer.get_data(as_text=True)  # nothing typed is lost
