"""Fuzzing the tablet API with schemathesis, in-process against the Flask app (issue 6).

Every operation of /api/v1/openapi.json gets generated requests, both fitting the schema
(positive) and not (negative), sent as a logged-in peer with a real CSRF token. The answer is
never a 5xx and conforms to the documented responses; a request the server rejects (4xx) leaves
every stored record as it was, and so does a sync batch whose changes were all rejected. The
same operations with forged session cookies answer 401 and change nothing. Raw bodies that no
schema generator sends (NaN, Infinity, nesting past the parser's depth, broken encodings) are
fuzzed with plain Hypothesis. What the fuzzing found is kept below as plain regression tests.

Fast by default (FAST_EXAMPLES per operation and mode); FUZZ_EXAMPLES=500 runs a longer search.
"""

import json
import os
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import select

from interview.store.extensions import db
from interview.store.models import ConsentFormVersion, GuideVersion, Note, Theme
from interview.sync.views import openapi_document
from tests import helpers
from tests.conftest import PASSWORD, World, app_on_empty_store, csrf_from
from tests.helpers import changed_tables, give_paper_consent, start_interview

FAST_EXAMPLES = 40
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES") or FAST_EXAMPLES)

# bookkeeping a request may touch even when it changes no research data: who logged in when,
# the UI language remembered on the user, the audit trail
VOLATILE_COLUMNS = {"user": {"last_login_at", "ui_language"}}
ALWAYS_SKIPPED = {"audit_event"}
# a sync batch whose changes were all rejected still notes the device and the refused
# change_ids (so a replay is answered the same); none of that is research data
SYNC_BOOKKEEPING = {"sync_change", "device", "sync_counter", "update_log"}


def store_snapshot(app, skip: set[str] = frozenset()) -> dict[str, tuple[int, str]]:
    """Every table of both stores but the audit trail, as counts and digests."""
    return helpers.store_snapshot(app, ALWAYS_SKIPPED | set(skip), VOLATILE_COLUMNS)


# --- the app under test: CSRF on, a peer logged in, an interview under way ----------------


@pytest.fixture
def app(tmp_path):
    """An app on a fresh store with CSRF protection on, as in production (overrides conftest)."""
    yield from app_on_empty_store(tmp_path, WTF_CSRF_ENABLED=True)


def _login(client, username: str) -> str:
    """Log in through the real form (with its CSRF token); return the API's CSRF token."""
    token = csrf_from(client.get("/login").get_data(as_text=True))
    answer = client.post(
        "/login", data={"username": username, "password": PASSWORD, "csrf_token": token}
    )
    assert answer.status_code == 302, answer.status_code
    return client.get("/api/v1/session").get_json()["csrf_token"]


def _known_records(app, world: World) -> dict:
    """Ids and keys the fuzzer mixes into generated changes so they reach the deep code paths."""
    with app.app_context():
        guide = db.session.scalars(select(GuideVersion)).first()
        from interview.store.content import guide_of

        known = {
            "interviews": sorted(world.interviews.values()),
            "participants": sorted(world.participants.values()),
            "question_keys": sorted(guide_of(guide).question_keys),
            "themes": sorted(db.session.scalars(select(Theme.key))),
            "form_versions": sorted(db.session.scalars(select(ConsentFormVersion.version))),
            "notes": sorted(db.session.scalars(select(Note.id))),
        }
        db.session.remove()
    return known


# event kinds with details of the right shape (docs in the EventData schema)
EVENT_SHAPES = [
    ("capacity_check", {"outcome": "ok", "minutes": 60}),
    ("capacity_check", {"outcome": "reschedule", "understands": False}),
    ("reschedule", {"reason": "practical", "new_time": "2031-05-01T10:00:00Z"}),
    ("start", None),
    ("pause", None),
    ("resume", None),
    ("check_in", None),
    ("distress_1", None),
    ("distress_2", {"contact_team": True, "comment": "Kontakt teamet"}),
    ("stop", {"reason": "participant_wish", "comment": ""}),
    ("complete", None),
]


def _steer(body, rnd, known: dict, sent_change_ids: list[str]):
    """Point some generated changes at records that exist, so they pass the first checks."""
    if not isinstance(body, dict) or not isinstance(body.get("changes"), list):
        return body
    body = json.loads(json.dumps(body))
    for change in body["changes"]:
        if not isinstance(change, dict) or rnd.random() < 0.3:
            continue
        data = change.get("data")
        if isinstance(data, dict):
            if "interview_id" in data or rnd.random() < 0.5:
                data["interview_id"] = rnd.choice(known["interviews"])
            if change.get("entity") == "note" and rnd.random() < 0.6:
                data["question_key"] = rnd.choice(known["question_keys"])
                if "themes" in data and known["themes"]:
                    data["themes"] = rnd.sample(known["themes"], k=min(2, len(known["themes"])))
            if change.get("entity") == "consent" and rnd.random() < 0.6:
                data["form_version"] = rnd.choice(known["form_versions"])
            if change.get("entity") == "interview" and "participant_id" in data:
                data["participant_id"] = rnd.choice(known["participants"])
        if rnd.random() < 0.7:
            at = datetime.now(UTC) + timedelta(minutes=rnd.randint(-600, 600))
            change["recorded_at"] = at.isoformat()
        if change.get("entity") == "event" and isinstance(data, dict) and rnd.random() < 0.5:
            data["kind"], data["details"] = rnd.choice(EVENT_SHAPES)
        # these two lists grow while the test runs: the draws are made every time and over a
        # fixed range, since Hypothesis replays draws and refuses ones whose range has changed
        take_note, note_id = rnd.random() < 0.3, _pick(rnd, known["notes"])
        if change.get("entity") == "note" and note_id and take_note:
            change["id"] = note_id
        replay, change_id = rnd.random() < 0.15, _pick(rnd, sent_change_ids)
        if change_id and replay:
            change["change_id"] = change_id  # a replay, maybe with new data
    return body


def _pick(rnd, items: list):
    """Return an item of a list that may be empty or grow, by a draw that does not depend on it."""
    at = rnd.randrange(1 << 16)
    return items[at % len(items)] if items else None


def _results(response) -> list[dict]:
    try:
        payload = json.loads(response.content)
    except ValueError:
        return []
    results = payload.get("results") if isinstance(payload, dict) else None
    return [r for r in results if isinstance(r, dict)] if isinstance(results, list) else []


def _all_rejected(response) -> bool:
    return all(r.get("status") == "rejected" for r in _results(response))


def _changes_sent(case) -> list[str]:
    body = case.body if isinstance(case.body, dict) else {}
    changes = body.get("changes") if isinstance(body.get("changes"), list) else []
    return [c["change_id"] for c in changes if isinstance(c, dict) and "change_id" in c]


OUTCOMES: Counter = Counter()

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _fuzz_settings(examples: int):
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )


def _fuzz(strategy, examples: int, check) -> None:
    """Run `check` on up to `examples` cases drawn from `strategy`."""

    @_fuzz_settings(examples)
    @given(case=strategy)
    def run(case):
        check(case)

    run()


def _check_case(app, client, operation, case, counts, key, sent_change_ids) -> None:
    before = store_snapshot(app)
    response = case.call(session=client)
    counts[key] += 1
    case.validate_response(response, checks=CHECKS)
    status = response.status_code
    OUTCOMES[f"HTTP {status}"] += 1
    for result in _results(response):
        OUTCOMES[f"change {result.get('status')}"] += 1
    if 400 <= status < 500:
        changed = changed_tables(before, store_snapshot(app))
        assert changed == [], f"{operation.label} answered {status} but changed {changed}"
    elif status == 200 and operation.method.upper() == "POST" and _all_rejected(response):
        after = store_snapshot(app, skip=SYNC_BOOKKEEPING)
        kept = {k: v for k, v in before.items() if k not in SYNC_BOOKKEEPING}
        changed = changed_tables(kept, after)
        assert changed == [], f"a sync batch with every change rejected changed {changed}"
    sent_change_ids.extend(_changes_sent(case)[:5])
    del sent_change_ids[:-50]


def _check_anonymous(app, anonymous, operation, case, counts) -> None:
    before = store_snapshot(app)
    response = case.call(session=anonymous)
    counts[(operation.label, "anonymous")] += 1
    case.validate_response(response, checks=CHECKS)
    # a public operation (the study's public key) answers anyone; the rest ask for a login
    spec = openapi_document()["paths"][operation.path][operation.method.lower()]
    expected = (200,) if spec.get("security") == [] else (400, 401)
    assert response.status_code in expected, response.status_code
    assert changed_tables(before, store_snapshot(app)) == []


def test_api_fuzz_never_500_and_rejections_change_nothing(app, world, capsys):
    client = app.test_client()
    token = _login(client, "peer_a")
    # an interview under way with consent, and a note on it, so edits and events have a target
    iid = world.interviews["pa"]
    start_interview(_FormPoster(client, token), iid)
    give_paper_consent(_FormPoster(client, token), iid)
    created = client.post(
        "/api/v1/sync",
        json={
            "device_id": str(uuid.uuid4()),
            "cursor": None,
            "changes": [
                {
                    "change_id": str(uuid.uuid4()),
                    "entity": "note",
                    "id": str(uuid.uuid4()),
                    "base_rev": None,
                    "recorded_at": datetime.now(UTC).isoformat(),
                    "data": {
                        "interview_id": iid,
                        "question_key": _known_records(app, world)["question_keys"][0],
                        "text": "A first note",
                    },
                }
            ],
        },
        headers={"X-CSRFToken": token},
    )
    assert created.status_code == 200, created.get_data(as_text=True)
    assert created.get_json()["results"][0]["status"] == "applied"

    known = _known_records(app, world)
    sent_change_ids: list[str] = []
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)

    @schema.hook
    def flatmap_body(context, body):  # noqa: ARG001 - schemathesis hook signature
        return st.randoms(use_true_random=False).map(
            lambda rnd: _steer(body, rnd, known, sent_change_ids)
        )

    cookies = {"session": client.get_cookie("session").value}
    # schemathesis's in-process (WSGI) calls ask for gzip but do not unpack it, as an HTTP
    # client would: the app compresses what a client accepts (interview/web/compression.py)
    headers = {"X-CSRFToken": token, "Accept-Encoding": "identity"}
    counts: Counter = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    # schemathesis leaves out the document it was loaded from; every other path is fuzzed
    assert {op.path for op in operations} == set(openapi_document()["paths"]) - {
        "/api/v1/openapi.json"
    }
    document = openapi_document()
    assert client.get("/api/v1/openapi.json").get_json() == document
    for operation in operations:
        spec = document["paths"][operation.path][operation.method.lower()]
        takes_input = "requestBody" in spec or bool(spec.get("parameters"))
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            if mode is GenerationMode.NEGATIVE and not takes_input:
                continue  # only the session cookie and token go in, and those are the real ones
            _fuzz(
                # the real session cookie and CSRF token, not generated ones
                operation.as_strategy(generation_mode=mode, cookies=cookies, headers=headers),
                EXAMPLES,
                lambda case, op=operation, mode=mode: _check_case(
                    app, client, op, case, counts, (op.label, mode.value), sent_change_ids
                ),
            )

    # the same operations with generated (forged) session cookies and tokens: 401, no change
    anonymous = app.test_client()
    for operation in operations:
        _fuzz(
            operation.as_strategy(
                generation_mode=GenerationMode.POSITIVE, headers={"Accept-Encoding": "identity"}
            ),
            max(5, EXAMPLES // 4),
            lambda case, op=operation: _check_anonymous(app, anonymous, op, case, counts),
        )

    with capsys.disabled():
        total = sum(counts.values())
        print(f"\n[fuzz api] {total} cases ran (FUZZ_EXAMPLES={EXAMPLES}):")
        for (label, mode), n in sorted(counts.items()):
            print(f"[fuzz api]   {label:<28} {mode:<9} {n}")
        print(
            "[fuzz api]   outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(OUTCOMES.items()))
        )
    assert total >= len(operations) * 2


NOW = "2026-11-23T10:00:00Z"
# what the fuzzer found: each once answered 500 (an overflow shifting year 1 to UTC) or 503 for
# ever (an expected end past year 9999), so the tablet would have retried it without end
FOUND = [
    ("note", {"text": "x", "question_key": "q"}, "0001-01-01T01:02:00.0+04:00"),
    ("debrief", {}, "0001-01-01T01:02:00.0+04:00"),
    (
        "event",
        {"kind": "capacity_check", "details": {"outcome": "ok", "minutes": 240}},
        "9999-12-31T23:00:00",
    ),
    (
        "event",
        {
            "kind": "reschedule",
            "details": {"reason": "practical", "new_time": "9999-12-31T23:59:59-01:00"},
        },
        "2026-11-23T10:00:00Z",
    ),
    # PostgreSQL stores no NUL: a theme key with one reached a query (503 there), an unknown
    # field's name with one was written into the rejection's reason (500 there)
    ("note", {"text": "x", "question_key": "context.services", "themes": ["\x00"]}, NOW),
    ("note", {"text": "x", "question_key": "context.services", "a\x00b": 1}, NOW),
]


@pytest.mark.parametrize(("entity", "data", "recorded_at"), FOUND)
def test_api_fuzz_findings_are_rejected_not_500(app, world, entity, data, recorded_at):
    client = app.test_client()
    token = _login(client, "peer_a")
    before = store_snapshot(app, skip=SYNC_BOOKKEEPING)
    change = {
        "change_id": str(uuid.uuid4()),
        "entity": entity,
        "id": str(uuid.uuid4()),
        "base_rev": 1 if entity == "debrief" else None,
        "recorded_at": recorded_at,
        "data": {"interview_id": world.interviews["pa"], **data},
    }
    answer = client.post(
        "/api/v1/sync",
        json={"device_id": str(uuid.uuid4()), "cursor": None, "changes": [change]},
        headers={"X-CSRFToken": token},
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert [r["status"] for r in answer.get_json()["results"]] == ["rejected"]
    assert changed_tables(before, store_snapshot(app, skip=SYNC_BOOKKEEPING)) == []


def test_api_a_note_id_already_taken_elsewhere_is_rejected(app, world):
    """Found by fuzzing: a create reusing another note's id wrote a conflict onto that note."""
    client = app.test_client()
    token = _login(client, "peer_a")
    iid = world.interviews["pa"]
    start_interview(_FormPoster(client, token), iid)
    give_paper_consent(_FormPoster(client, token), iid)
    keys = _known_records(app, world)["question_keys"]
    note_id = str(uuid.uuid4())

    def create(question_key, text):
        change = {
            "change_id": str(uuid.uuid4()),
            "entity": "note",
            "id": note_id,
            "base_rev": None,
            "recorded_at": datetime.now(UTC).isoformat(),
            "data": {"interview_id": iid, "question_key": question_key, "text": text},
        }
        answer = client.post(
            "/api/v1/sync",
            json={"device_id": str(uuid.uuid4()), "cursor": None, "changes": [change]},
            headers={"X-CSRFToken": token},
        )
        return answer.get_json()["results"][0]

    assert create(keys[0], "Første")["status"] == "applied"
    assert create(keys[0], "Første")["status"] == "applied"  # the same note sent again
    before = store_snapshot(app, skip=SYNC_BOOKKEEPING)
    assert create(keys[1], "Et annet spørsmål")["status"] == "rejected"
    assert changed_tables(before, store_snapshot(app, skip=SYNC_BOOKKEEPING)) == []


DEVICE = "1b4e28ba-2fa1-41d2-883f-0016d3cca427"
# bodies no schema-driven generator sends: JSON that Python reads but the stores do not
# (NaN, Infinity), nesting deeper than the parser's recursion, broken encodings, other types
RAW_BODIES = st.one_of(
    st.integers(1, 200_000).map(lambda n: "[" * n + "]" * n),
    st.integers(1, 200_000).map(lambda n: '{"a":' * n),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-0", "null", '""', "[]"]).map(
        lambda c: f'{{"device_id": "{DEVICE}", "cursor": {c}, "changes": []}}'
    ),
    st.sampled_from(["NaN", "Infinity", "1e400", str(2**64)]).map(
        lambda c: json.dumps(
            {
                "device_id": DEVICE,
                "cursor": None,
                "changes": [
                    {
                        "change_id": str(uuid.uuid4()),
                        "entity": "note",
                        "id": DEVICE,
                        "base_rev": 3,
                        "recorded_at": "2026-11-23T10:00:00Z",
                        "data": {"text": "PLACEHOLDER"},
                    }
                ],
            }
        ).replace('"PLACEHOLDER"', c)
    ),
    st.binary(max_size=64).map(lambda b: b.decode("latin-1")),
    st.text(max_size=64),
)


def test_api_raw_bodies_never_500_and_change_nothing(app, world, capsys):
    client = app.test_client()
    token = _login(client, "peer_a")
    ran = Counter()

    @_fuzz_settings(max(20, EXAMPLES))
    @given(text=RAW_BODIES, encoding=st.sampled_from(["utf-8", "utf-16", "latin-1"]))
    def run(text, encoding):
        before = store_snapshot(app, skip=SYNC_BOOKKEEPING)
        answer = client.post(
            "/api/v1/sync",
            data=text.encode(encoding, "replace"),
            content_type="application/json",
            headers={"X-CSRFToken": token},
        )
        ran[answer.status_code] += 1
        assert answer.status_code < 500, answer.get_data(as_text=True)[:300]
        assert answer.is_json
        after = store_snapshot(app, skip=SYNC_BOOKKEEPING)
        if answer.status_code >= 400 or all(
            r.get("status") == "rejected" for r in answer.get_json().get("results", [])
        ):
            assert changed_tables(before, after) == []

    run()
    with capsys.disabled():
        print(
            f"\n[fuzz api] raw bodies: {sum(ran.values())} cases ran ({dict(sorted(ran.items()))})"
        )


class _FormPoster:
    """Adds the CSRF token to the helpers' form posts (the fuzzing app has CSRF on)."""

    def __init__(self, client, token: str):
        self._client, self._token = client, token

    def post(self, url, data=None, **kwargs):
        return self._client.post(url, data={**(data or {}), "csrf_token": self._token}, **kwargs)


__all__ = ["changed_tables", "store_snapshot"]
