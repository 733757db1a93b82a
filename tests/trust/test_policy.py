"""The access policy table: it names every route, and every route answers as it says.

The expected answers come from the table's roles and rules and from who the `world` fixture
made responsible for what (written out below), never from running the app.
"""

import hashlib
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select

from interview.store.content import guide_of
from interview.store.extensions import db
from interview.store.models import (
    Consent,
    ConsentFormVersion,
    GuideVersion,
    Note,
    Participant,
    Recording,
    SyncChange,
    Theme,
    User,
)
from interview.sync.batch import apply_changes
from interview.trust import policy, study_key
from interview.trust.sealed_box import wrap_key
from tests.conftest import PASSWORD
from tests.helpers import store_snapshot
from tests.listen_helpers import make_recording

# -- the world fixture, written out (tests/conftest.py) --------------------------------------
ROLE = {
    "anonymous": policy.ANONYMOUS,
    "peer_a": policy.PEER,
    "peer_a2": policy.PEER,
    "peer_b": policy.PEER,
    "coord_a": policy.COORDINATOR,
    "coord_b": policy.COORDINATOR,
    "admin": policy.ADMIN,
}
ACTORS = tuple(ROLE)
# pa: case A, assigned to peer_a; pa2: case A, peer_a2; pb: case B, peer_b
CASE_OF = {"pa": "A", "pa2": "A", "pb": "B"}
ASSIGNED = {"pa": "peer_a", "pa2": "peer_a2", "pb": "peer_b"}
COORDINATES = {"coord_a": {"A"}, "coord_b": {"B"}, "admin": {"A", "B", "C"}}


def sees(actor: str, participant: str) -> bool:
    """The rule of access.can_see_participant, applied to the world as written out above."""
    if ROLE[actor] == policy.PEER:
        return ASSIGNED[participant] == actor
    return CASE_OF[participant] in COORDINATES.get(actor, set())


# -- what an answer is -----------------------------------------------------------------------
ALLOWED, LOGIN, FORBIDDEN, HIDDEN = "allowed", "login", "403", "404"
# objects in the URL: every actor meets records of someone else's, and most also their own
OBJECTS = ("pa", "pb")
VISIBILITY_RULES = {policy.PARTICIPANT, policy.INTERVIEW, policy.NOTE, policy.RECORDING}
CASE_RULES = {policy.CASE_IN_URL, policy.OPEN_ALERT, policy.OWN_CASES_FILTER}
PLAIN_RULES = {
    policy.PUBLIC,
    policy.ANY_USER,
    policy.OWN_SESSION,
    policy.PUBLISHED,
    policy.VISIBLE_ONLY,
    policy.OWN_CASES,
    policy.CODEBOOK,
    policy.CONSENT_FORMS,
    policy.EACH_CHANGE,
}


def expect(route: policy.Route, actor: str, obj: str | None) -> str:
    """The answer the policy table promises this actor on this route and object."""
    if ROLE[actor] not in route.roles:
        return LOGIN if actor == "anonymous" else FORBIDDEN
    if route.rule in VISIBILITY_RULES:
        return ALLOWED if sees(actor, obj) else HIDDEN
    if route.rule in CASE_RULES:
        return ALLOWED if CASE_OF[obj] in COORDINATES.get(actor, set()) else HIDDEN
    return ALLOWED


# -- how to call each route ------------------------------------------------------------------
@dataclass
class Ids:
    """Ids of the records the routes name, besides the world's."""

    interviews: dict[str, str]
    participants: dict[str, str]
    users: dict[str, int]
    theme: int
    guide: tuple[str, int]
    consent_form: tuple[str, int]
    notes: dict[str, tuple[str, int]]  # participant -> (conflicted note id, its rev)
    consents: dict[str, str] = field(default_factory=dict)  # participant -> a paper consent
    # participant -> a recording their interviewer made, and its chunk 0 (given_recording)
    recordings: dict[str, str] = field(default_factory=dict)
    chunks: dict[str, bytes] = field(default_factory=dict)
    study_kid: str = ""
    wrapped_key: str = ""
    # participant -> a recording made at the store for the desk routes (listen_helpers)
    listen: dict[str, str] = field(default_factory=dict)


@dataclass
class Call:
    """A route's URL and form data; `ok` is each method's answer when the actor is allowed."""

    url: Callable[[Ids, str | None], str]
    ok: dict[str, set[int]]
    data: Callable[[Ids, str | None], dict] = lambda ids, obj: {}
    takes_object: bool = False
    json: bool = False
    ok_anonymous: dict[str, set[int]] = field(default_factory=dict)
    # a raw body (bytes from `data`) with the headers made from it, as the tablet sends a chunk
    headers: Callable[[bytes], dict[str, str]] | None = None


def _iv(path: str = "", ok: dict[str, set[int]] | None = None, data=None) -> Call:
    return Call(
        lambda ids, o: f"/interviews/{ids.interviews[o]}{path}",
        ok or {"GET": {200}},
        data or (lambda ids, o: {}),
        takes_object=True,
    )


def _pt(path: str = "", ok: dict[str, set[int]] | None = None, data=None) -> Call:
    return Call(
        lambda ids, o: f"/participants/{ids.participants[o]}{path}",
        ok or {"GET": {200}},
        data or (lambda ids, o: {}),
        takes_object=True,
    )


def _plain(url: str, ok: dict[str, set[int]] | None = None, data=None) -> Call:
    return Call(lambda ids, o: url, ok or {"GET": {200}}, data or (lambda ids, o: {}))


def _case(url: str, ok: dict[str, set[int]] | None = None) -> Call:
    """A route naming a case, in the path or as ?case=."""
    return Call(
        lambda ids, o: url.format(case=CASE_OF[o], theme=ids.theme),
        ok or {"GET": {200}},
        takes_object=True,
    )


PLAN = {
    "plan-day": "2031-03-04",
    "plan-at": "10:00",
    "plan-place_kind": "home",
    "plan-language": "nb",
}


def _chunk_headers(body: bytes) -> dict[str, str]:
    return {"X-Chunk-SHA256": hashlib.sha256(body).hexdigest()}


def _recording_body(ids: Ids, obj: str | None) -> dict:
    return {
        "interview_id": ids.interviews[obj],
        "mime": "audio/webm;codecs=opus",
        "kid": ids.study_kid,
        "wrapped_key": ids.wrapped_key,
        "started_at": "2026-11-23T10:00:00Z",
    }


START = {"understands": "y", "can_explain": "y", "not_in_crisis": "y", "minutes": "75", "go": "ok"}
# the world's interviews are planned: many steps redirect to the one that comes first, or
# answer 409; both mean the request got past every access check
CALLS: dict[str, Call] = {
    "static": _plain("/static/css/app.css"),
    "main.healthz": _plain("/healthz"),
    "main.offline_page": _plain("/offline"),
    "main.service_worker": _plain("/sw.js"),
    "main.manifest": _plain("/manifest.webmanifest"),
    "auth.signed_out": _plain("/signed-out"),
    "main.home": _plain("/", {"GET": {302}}),
    "auth.login": Call(
        lambda ids, o: "/login",
        {"GET": {302}, "POST": {302}},
        lambda ids, o: {"username": "peer_a", "password": PASSWORD},
        ok_anonymous={"GET": {200}},
    ),
    "auth.logout": _plain("/logout", {"POST": {302}}),
    "api.openapi": _plain("/api/v1/openapi.json"),
    "api.study_key_info": _plain("/api/v1/study-key"),
    "api.session_info": _plain("/api/v1/session"),
    "api.offline_manifest": _plain("/api/v1/offline"),
    "api.sync": Call(
        lambda ids, o: "/api/v1/sync",
        {"POST": {200}},
        lambda ids, o: {"device_id": str(uuid.uuid4()), "cursor": None, "changes": []},
        json=True,
    ),
    # the interviewer who made the recording gets 200/201; others who see the interview 409
    "api.recording": Call(
        lambda ids, o: f"/api/v1/recordings/{ids.recordings[o]}",
        {"GET": {200}, "PUT": {200, 409}},
        _recording_body,
        takes_object=True,
        json=True,
    ),
    "api.recording_chunk": Call(
        lambda ids, o: f"/api/v1/recordings/{ids.recordings[o]}/chunks/0",
        {"PUT": {200, 201, 409}},
        lambda ids, o: ids.chunks[o],
        takes_object=True,
        headers=_chunk_headers,
    ),
    "api.recording_end": Call(
        lambda ids, o: f"/api/v1/recordings/{ids.recordings[o]}/end",
        {"POST": {200, 409}},
        lambda ids, o: {"chunks": 1, "ended_at": "2026-11-23T10:05:00Z"},
        takes_object=True,
        json=True,
    ),
    "documents.index": _plain("/guides/"),
    "documents.guide_page": Call(lambda ids, o: "/guides/{}/{}".format(*ids.guide), {"GET": {200}}),
    "documents.guide_pdf": Call(
        lambda ids, o: "/guides/{}/{}/nb.pdf".format(*ids.guide), {"GET": {200}}
    ),
    "documents.consent_pdf": Call(
        lambda ids, o: "/consent-forms/{}/{}/en.pdf".format(*ids.consent_form), {"GET": {200}}
    ),
    "interviews.mine": _plain("/interviews/"),
    "interviews.conflicts": _plain("/interviews/conflicts"),
    "interviews.resolve_conflict": Call(
        lambda ids, o: f"/interviews/conflicts/{ids.notes[o][0]}",
        {"POST": {302}},
        lambda ids, o: {"choice": "mine", "rev": str(ids.notes[o][1])},
        takes_object=True,
    ),
    "interviews.overview": _iv(),
    "interviews.capacity": _iv("/capacity", {"GET": {200}, "POST": {302}}, lambda i, o: START),
    "interviews.reschedule": _iv(
        "/reschedule", {"GET": {200}, "POST": {302}}, lambda i, o: {"reason": "practical"}
    ),
    "interviews.consent": _iv("/consent", {"GET": {302}, "POST": {302}}),
    "interviews.section": _iv("/section/0", {"GET": {302}, "POST": {302}}),
    "interviews.pause": _iv("/pause", {"POST": {409}}),
    "interviews.resume": _iv("/resume", {"POST": {409}}),
    "interviews.check_in": _iv("/check-in", {"POST": {409}}),
    "interviews.distress": _iv("/distress", {"GET": {302}, "POST": {409}}),
    "interviews.distress_two": _iv("/distress/stage-2", {"GET": {302}, "POST": {302}}),
    "interviews.stop": _iv(
        "/stop", {"GET": {200}, "POST": {302}}, lambda i, o: {"reason": "other"}
    ),
    "interviews.finish": _iv("/finish", {"GET": {302}, "POST": {302}}),
    "interviews.debrief": _iv("/debrief", {"GET": {302}, "POST": {302}}),
    "coordinator.participants": _plain("/participants/"),
    "coordinator.consent_forms": _plain("/participants/consent-forms"),
    # without the confirmation nothing is decided (400)
    "coordinator.ask_renewal": Call(
        lambda ids, o: f"/participants/consent-forms/{ids.consent_form[1]}/renewal",
        {"POST": {400}},
    ),
    "coordinator.new_participant": _plain("/participants/new", {"GET": {200}, "POST": {400}}),
    "coordinator.detail": _pt(),
    "coordinator.assign": _pt(
        "/interviewers",
        {"POST": {302}},
        lambda ids, o: {"assign-interviewers": [str(ids.users[ASSIGNED[o]])]},
    ),
    "coordinator.plan_interview": _pt("/interviews", {"POST": {302}}, lambda ids, o: PLAN),
    "coordinator.identity": _pt("/identity", {"POST": {200}}),
    "coordinator.withdraw_participant": _pt("/withdraw", {"GET": {200}, "POST": {400}}),
    # no item chosen is a form error (400), once every access check has passed; a participant
    # with no consent in force has nothing to withdraw (409)
    "coordinator.withdraw_consent_items": _pt(
        "/withdraw-items", {"GET": {200}, "POST": {400, 409}}
    ),
    "desk.overview": _plain("/desk/"),
    "desk.case_page": _case("/desk/cases/{case}"),
    "alerts.index": _plain("/desk/alerts/"),
    "alerts.acknowledge": Call(
        lambda ids, o: "/desk/alerts/ack",
        {"POST": {302}},
        lambda ids, o: {"kind": "conflict", "key": "{}@{}".format(*ids.notes[o])},
        takes_object=True,
    ),
    # a post without a rescue file is a form error, once every access check has passed
    "rescue.index": _plain("/desk/rescue/", {"GET": {200}, "POST": {400}}),
    "codebook.index": _plain("/desk/themes/", {"GET": {200}, "POST": {400}}),
    "codebook.rename": Call(lambda ids, o: f"/desk/themes/{ids.theme}", {"POST": {400}}),
    "codebook.retire": Call(
        lambda ids, o: f"/desk/themes/{ids.theme}/retire",
        {"POST": {302}},
        lambda ids, o: {"retired": "0"},
    ),
    "codebook.matrix": _plain("/desk/themes/matrix"),
    "codebook.cell": _case("/desk/themes/matrix/{case}/{theme}"),
    "exports.index": _case("/desk/exports/?case={case}"),
    "exports.csv_export": _case("/desk/exports/notes.csv?case={case}"),
    "exports.xlsx_export": _case("/desk/exports/notes.xlsx?case={case}"),
    "exports.json_export": _case("/desk/exports/export.json?case={case}"),
    "exports.qdpx_export": _case("/desk/exports/project.qdpx?case={case}"),
    "audit.index": _plain("/desk/audit/"),
    "audit.csv": _plain("/desk/audit/audit-log.csv"),
    # a planned interview has no record yet: 409 once every access check has passed
    "documents.record_pdf": Call(
        lambda ids, o: f"/desk/interviews/{ids.interviews[o]}/record/nb.pdf",
        {"GET": {409}},
        takes_object=True,
    ),
    # the consent's record, rendered on first download where its render after arrival is missing
    "documents.consent_record": Call(
        lambda ids, o: f"/desk/consents/{ids.consents[o]}/record.pdf",
        {"GET": {200}},
        takes_object=True,
    ),
    "listen.page": Call(
        lambda ids, o: f"/desk/recordings/{ids.listen[o]}", {"GET": {200}}, takes_object=True
    ),
    "listen.audio": Call(
        lambda ids, o: f"/desk/recordings/{ids.listen[o]}/audio",
        {"GET": {200}},
        takes_object=True,
    ),
    "documents.progress_report": _plain("/desk/report/en.pdf"),
    "documents.case_progress_report": _case("/desk/cases/{case}/report/nb.pdf"),
}


# -- the store, before and after --------------------------------------------------------------
def snapshot(app, skip: frozenset[str] = frozenset()) -> dict:
    """Every row of every table in both stores (as digests), to compare before and after."""
    return store_snapshot(app, skip)


def _change(entity: str, record_id: str, data: dict, base_rev=None, minutes: int = 0) -> dict:
    at = datetime(2026, 11, 23, 10, 0, tzinfo=UTC) + timedelta(minutes=minutes)
    return {
        "change_id": str(uuid.uuid4()),
        "entity": entity,
        "id": record_id,
        "base_rev": base_rev,
        "recorded_at": at.isoformat().replace("+00:00", "Z"),
        "data": data,
    }


def _apply(user_id: int, changes: list[dict]) -> list:
    user = db.session.get(User, user_id)
    results = apply_changes(db.session, user, changes)
    db.session.commit()
    return results


def _question_key(interview_id: str) -> str:
    from interview.store.models import Interview

    iv = db.session.get(Interview, interview_id)
    return sorted(guide_of(iv.guide_version).question_keys)[0]


def _conflicted_note(world, who: str, participant: str) -> tuple[str, int]:
    """A note with two versions in the participant's interview (an open 'conflict' alert)."""
    note_id = str(uuid.uuid4())
    iid = world.interviews[participant]
    uid = world.users[who]
    create = {"interview_id": iid, "question_key": _question_key(iid), "text": "first words"}
    _apply(uid, [_change("note", note_id, create)])
    _apply(uid, [_change("note", note_id, {"text": "second words"}, base_rev=1, minutes=1)])
    results = _apply(uid, [_change("note", note_id, {"text": "other words"}, 1, minutes=2)])
    assert results[0].status == "conflict"
    note = db.session.get(Note, note_id)
    return note.id, note.rev


@pytest.fixture
def ids(app, world) -> Ids:
    """The world's ids, a theme, the published guide and consent form."""
    with app.app_context():
        guide = db.session.scalars(select(GuideVersion)).first()
        form = db.session.scalars(select(ConsentFormVersion)).first()
        theme = db.session.scalars(select(Theme).where(Theme.retired.is_(False))).first()
        return Ids(
            interviews=world.interviews,
            participants=world.participants,
            users=world.users,
            theme=theme.id,
            guide=(guide.key, guide.version),
            consent_form=(form.key, form.version),
            notes={},
            # a recording of each interview, its chunks sealed as a tablet seals them
            listen={p: make_recording(world.interviews[p], [b"sound"]) for p in OBJECTS},
        )


def fresh_note(app, world, ids: Ids, participant: str) -> None:
    """Give the participant's interview a new note with two versions (and so an open alert)."""
    with app.app_context():
        ids.notes[participant] = _conflicted_note(world, ASSIGNED[participant], participant)


def given_consent(app, world, ids: Ids, participant: str) -> None:
    """Give the participant a paper consent (written as the store has it, no record yet)."""
    if participant in ids.consents:
        return
    with app.app_context():
        form = db.session.scalars(select(ConsentFormVersion)).first()
        consent = Consent(
            participant_id=world.participants[participant],
            interview_id=world.interviews[participant],
            form_version_id=form.id,
            language="nb",
            answers={item["key"]: True for item in form.content["items"]},
            method="paper",
            paper_form_number="P-1",
            obtained_by_id=world.users[ASSIGNED[participant]],
        )
        db.session.add(consent)
        db.session.commit()
        ids.consents[participant] = consent.id


def given_recording(app, world, ids: Ids, participant: str) -> None:
    """Give the participant consent to audio and a recording their interviewer made."""
    given_consent(app, world, ids, participant)
    if participant in ids.recordings:
        return
    with app.app_context():
        key = study_key.current()
        aes_key = AESGCM.generate_key(bit_length=256)
        ids.study_kid = key.kid
        ids.wrapped_key = wrap_key(aes_key, key)
        recording_id = str(uuid.uuid4())
        iv = os.urandom(12)
        sealed = AESGCM(aes_key).encrypt(iv, b"sound" * 20, f"{recording_id}:0".encode())
        ids.chunks[participant] = iv + sealed
        recording = Recording(
            id=recording_id,
            interview_id=world.interviews[participant],
            participant_id=world.participants[participant],
            user_id=world.users[ASSIGNED[participant]],
            mime="audio/webm;codecs=opus",
            kid=key.kid,
            wrapped_key=ids.wrapped_key,
            started_at=datetime(2026, 11, 23, 10, 0),
        )
        db.session.add(recording)
        db.session.commit()
        ids.recordings[participant] = recording.id


def login(client, actor: str) -> None:
    """Log in through the form (or stay anonymous)."""
    if actor != "anonymous":
        response = client.post("/login", data={"username": actor, "password": PASSWORD})
        assert response.status_code == 302, f"{actor} could not log in"


def send(client, method: str, url: str, call: Call, data: dict):
    """Send the request the way a browser (or the tablet, for JSON) would."""
    if method == "GET":
        return client.get(url)
    if call.headers is not None:
        return client.open(
            url,
            method=method,
            data=data,
            headers=call.headers(data),
            content_type="application/octet-stream",
        )
    if call.json:
        return client.open(url, method=method, json=data)
    return client.post(url, data=data)


# -- the table names every route, and only routes --------------------------------------------


def _app_routes(app) -> dict[str, set[str]]:
    routes: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        routes.setdefault(rule.endpoint, set()).update(rule.methods - {"HEAD", "OPTIONS"})
    return routes


def test_every_route_is_in_the_policy_table(app):
    routes = _app_routes(app)
    missing = {
        f"{endpoint} {method}"
        for endpoint, methods in routes.items()
        for method in methods
        if endpoint not in policy.POLICY or method not in policy.POLICY[endpoint].methods
    }
    assert not missing, f"routes missing from interview/trust/policy.py: {sorted(missing)}"


def test_every_table_row_is_a_route(app):
    routes = _app_routes(app)
    extra = {
        f"{r.endpoint} {method}"
        for r in policy.ROUTES
        for method in r.methods
        if method not in routes.get(r.endpoint, set())
    }
    assert not extra, f"policy rows that are no route: {sorted(extra)}"


def test_the_table_is_well_formed():
    assert len(policy.POLICY) == len(policy.ROUTES), "an endpoint is listed twice"
    for r in policy.ROUTES:
        assert r.methods and r.methods <= {"GET", "POST", "PUT"}, r.endpoint
        assert r.roles and r.roles <= policy.EVERYONE, r.endpoint
        assert r.why.strip(), r.endpoint
        # public means everyone; anyone else must log in first
        assert (r.rule == policy.PUBLIC) == (policy.ANONYMOUS in r.roles), r.endpoint
    assert VISIBILITY_RULES | CASE_RULES == set(policy.OBJECT_RULES)
    assert {r.rule for r in policy.ROUTES} <= VISIBILITY_RULES | CASE_RULES | PLAIN_RULES


def test_every_route_has_a_call_in_this_test():
    assert set(CALLS) == set(policy.POLICY)
    for endpoint, call in CALLS.items():
        route = policy.POLICY[endpoint]
        assert set(call.ok) == set(route.methods), endpoint
        assert call.takes_object == (route.rule in policy.OBJECT_RULES), endpoint


# -- the matrix ------------------------------------------------------------------------------


def _routes():
    for route in policy.ROUTES:
        for method in sorted(route.methods):
            yield pytest.param(route.endpoint, method, id=f"{route.endpoint} {method}")


def check(app, ids: Ids, endpoint: str, method: str, actor: str, obj: str | None) -> str | None:
    """Send one request of the matrix; return what was wrong with the answer, if anything."""
    route = policy.POLICY[endpoint]
    call = CALLS[endpoint]
    expected = expect(route, actor, obj)
    client = app.test_client()
    login(client, actor)
    before = snapshot(app)
    response = send(client, method, call.url(ids, obj), call, call.data(ids, obj))
    status = response.status_code
    location = response.headers.get("Location", "")
    if expected == ALLOWED:
        ok = call.ok[method]
        if actor == "anonymous":
            ok = call.ok_anonymous.get(method, ok)
        if status not in ok or "next=" in location:
            return f"allowed, so {sorted(ok)} expected; got {status} {location}"
        return None
    if expected == LOGIN and endpoint.startswith("api."):
        body = response.get_json(silent=True) or {}
        if status != 401 or body.get("code") != "login":
            return f"expected the API's 401 login answer, got {status} {body}"
    elif expected == LOGIN:
        if status != 302 or not (location.startswith("/login?") and "next=" in location):
            return f"expected a redirect to log in, got {status} {location}"
    elif status != int(expected):
        return f"expected {expected}, got {status}"
    if snapshot(app) != before:
        return f"refused with {status}, yet the store changed"
    return None


@pytest.mark.parametrize(("endpoint", "method"), list(_routes()))
def test_route_answers_as_the_table_says(app, world, ids, endpoint, method):
    """Every actor, on every object: the answer the policy table promises, and nothing else.

    Refusals change nothing, so one store serves all actors of a route; the allowed requests
    here leave every later actor's answer the same, except that a settled note or an
    acknowledged alert is gone: those get a fresh one before each actor.
    """
    call = CALLS[endpoint]
    objects = OBJECTS if call.takes_object else (None,)
    wrong = []
    for obj in objects:
        for actor in ACTORS:
            if endpoint in ("interviews.resolve_conflict", "alerts.acknowledge"):
                fresh_note(app, world, ids, obj)
            if endpoint == "documents.consent_record":
                given_consent(app, world, ids, obj)
            if endpoint.startswith("api.recording"):
                given_recording(app, world, ids, obj)
            problem = check(app, ids, endpoint, method, actor, obj)
            if problem:
                wrong.append(f"{endpoint} {method} {obj or ''} as {actor}: {problem}")
    assert not wrong, "\n".join(wrong)


def test_unlisted_endpoint_is_refused(app, client, world):
    """Defence in depth: a route added without a row in the table answers 404 to everyone."""

    def hidden():
        return "research data"

    app.add_url_rule("/not-in-the-table", "not_in_the_table", hidden)
    for actor in ("anonymous", "peer_a", "admin"):
        login(client, actor)
        assert client.get("/not-in-the-table").status_code == 404
        client.post("/logout")


@pytest.mark.parametrize(
    ("actor", "expected"), [("anonymous", 302), ("peer_a", 403), ("coord_a", 200)]
)
def test_unguarded_view_gets_the_tables_roles(app, client, world, actor, expected):
    """A coordinator-only row guards its view even when the view itself forgot to check."""

    def unguarded():
        return "research data"

    app.view_functions["desk.overview"] = unguarded
    login(client, actor)
    assert client.get("/desk/").status_code == expected


def test_withdrawn_participants_interviews_answer_404_to_everyone(app, client, world, ids):
    """The interview rule: a withdrawn participant's interview is open to nobody."""
    fresh_note(app, world, ids, "pa")
    given_recording(app, world, ids, "pa")
    with app.app_context():
        db.session.get(Participant, ids.participants["pa"]).status = "withdrawn"
        db.session.commit()
    routes = [
        r for r in policy.ROUTES if r.rule in (policy.INTERVIEW, policy.NOTE, policy.RECORDING)
    ]
    for actor in ("peer_a", "coord_a", "admin"):
        login(client, actor)
        before = snapshot(app)
        for route in routes:
            call = CALLS[route.endpoint]
            if ROLE[actor] not in route.roles:
                continue
            for method in route.methods:
                response = send(client, method, call.url(ids, "pa"), call, call.data(ids, "pa"))
                # the upload API says 410 (gone): the tablet drops what it holds of it
                gone = 410 if route.endpoint.startswith("api.recording") else 404
                assert response.status_code == gone, (actor, route.endpoint, method)
        assert snapshot(app) == before
        client.post("/logout")


# -- the sync API: every entity, every actor --------------------------------------------------

SYNC_LOG = frozenset({"sync_change", "device", "audit_event"})


@dataclass
class Records:
    """What the interviewers have written through sync, per participant."""

    interview: dict[str, str]
    note: dict[str, str]
    event: dict[str, str]
    consent: dict[str, str]
    debrief: dict[str, str]
    event_data: dict[str, dict]
    consent_data: dict[str, dict]
    form_version: int
    question_key: str


def _consent_data(iid: str, version: int, keys: list[str]) -> dict:
    return {
        "interview_id": iid,
        "form_version": version,
        "language": "nb",
        "answers": {k: True for k in keys},
        "method": "paper",
        "paper_form_number": "P-1",
    }


def _interview_done(world, participant: str, form: ConsentFormVersion, records: Records) -> None:
    """The assigned peer runs the whole interview from a tablet: consent, a note, a debrief."""
    iid = world.interviews[participant]
    uid = world.users[ASSIGNED[participant]]
    keys = [item["key"] for item in form.content["items"]]
    ids = {k: str(uuid.uuid4()) for k in ("note", "event", "consent", "debrief")}
    capacity = {"interview_id": iid, "kind": "capacity_check", "details": {"outcome": "ok"}}
    consent = _consent_data(iid, form.version, keys)
    note = {"interview_id": iid, "question_key": _question_key(iid), "text": "words of " + iid}
    debrief = {"interview_id": iid, "wellbeing": 3, "reflection": "went well"}
    results = _apply(
        uid,
        [
            _change("event", ids["event"], capacity),
            _change("consent", ids["consent"], consent, minutes=1),
            _change("note", ids["note"], note, minutes=2),
            _change("event", str(uuid.uuid4()), {"interview_id": iid, "kind": "complete"}, None, 3),
            _change("debrief", ids["debrief"], debrief, minutes=4),
        ],
    )
    assert [r.status for r in results] == ["applied"] * 5
    records.interview[participant] = iid
    for kind, record_id in ids.items():
        getattr(records, kind)[participant] = record_id
    records.event_data[participant] = capacity
    records.consent_data[participant] = consent


@pytest.fixture
def records(app, world) -> Records:
    """Every participant's interview run to its end, through sync, by its assigned peer."""
    with app.app_context():
        form = db.session.scalars(select(ConsentFormVersion)).first()
        key = _question_key(world.interviews["pa"])
        out = Records({}, {}, {}, {}, {}, {}, {}, form.version, key)
        for participant in ("pa", "pa2", "pb"):
            _interview_done(world, participant, form, out)
        return out


def _sync_change(kind: str, r: Records) -> dict:
    """One change of each kind, about participant pa's records (written by peer_a)."""
    iv = r.interview["pa"]
    new = str(uuid.uuid4())
    if kind == "note create":
        data = {"interview_id": iv, "question_key": r.question_key, "text": "new words"}
        return _change("note", new, data, minutes=10)
    if kind == "note edit":
        return _change("note", r.note["pa"], {"text": "changed words"}, base_rev=1, minutes=10)
    if kind == "note delete":
        return _change("note", r.note["pa"], {"deleted": True}, base_rev=1, minutes=10)
    if kind == "note resolve":
        return _change("note", r.note["pa"], {"resolve": True}, base_rev=1, minutes=10)
    if kind == "event create":
        # recorded while the interview ran (it completed at minute 3), arriving late: it counts
        return _change("event", new, {"interview_id": iv, "kind": "check_in"}, minutes=2)
    if kind == "event again":
        # a tablet resending a known event under a new change_id
        return _change("event", r.event["pa"], r.event_data["pa"])
    if kind == "consent create":
        return _change("consent", new, dict(r.consent_data["pa"]), minutes=10)
    if kind == "consent again":
        return _change("consent", r.consent["pa"], r.consent_data["pa"], minutes=1)
    if kind == "debrief create":
        return _change("debrief", new, {"interview_id": iv, "wellbeing": 1}, minutes=10)
    if kind == "debrief edit":
        return _change("debrief", r.debrief["pa"], {"reflection": "not mine"}, 1, minutes=10)
    if kind == "interview create":
        data = {"participant_id": None, "language": "nb", "planned_at": "2031-01-01T10:00:00Z"}
        return _change("interview", new, data)
    if kind == "interview edit":
        return _change("interview", iv, {"current_section": 2}, base_rev=1, minutes=10)
    raise AssertionError(kind)


SYNC_KINDS = (
    "note create",
    "note edit",
    "note delete",
    "note resolve",
    "event create",
    "event again",
    "consent create",
    "consent again",
    "debrief create",
    "debrief edit",
    "interview create",
    "interview edit",
)


def sync_expect(kind: str, actor: str) -> str:
    """The sync rules (docs/sync.md): the participant decides; a debrief is its author's."""
    if not sees(actor, "pa"):
        return "rejected"
    if kind == "debrief edit" and actor != ASSIGNED["pa"]:
        return "rejected"  # a debrief is changed only by the one who wrote it
    if kind == "debrief create" and actor == ASSIGNED["pa"]:
        return "rejected"  # one debrief per interviewer: peer_a wrote theirs already
    if kind == "consent create":
        return "rejected"  # as on the consent page: pa's consent is in force, the interview over
    return "applied"


def sync_check(app, world, records: Records, kind: str, actor: str) -> str | None:
    """Send one change of the kind as the actor; return what was wrong with the answer."""
    change = _sync_change(kind, records)
    if kind == "interview create":
        change["data"]["participant_id"] = world.participants["pa"]
    expected = sync_expect(kind, actor)
    client = app.test_client()
    login(client, actor)
    before = snapshot(app, SYNC_LOG)
    body = {"device_id": str(uuid.uuid4()), "cursor": None, "changes": [change]}
    response = client.post("/api/v1/sync", json=body)
    if response.status_code != 200:
        return f"expected 200, got {response.status_code}"
    result = response.get_json()["results"][0]
    if result["change_id"] != change["change_id"] or result["status"] != expected:
        return f"expected {expected}, got {result}"
    if expected == "applied":
        return None if result["rev"] is not None else f"applied without a rev: {result}"
    if not result.get("reason"):
        return "rejected without a reason"
    # nothing created, nothing changed (the sync log records the refusal itself)
    if snapshot(app, SYNC_LOG) != before:
        return "rejected, yet the store changed"
    again = client.post("/api/v1/sync", json=body).get_json()["results"][0]
    if again["status"] != "rejected" or snapshot(app, SYNC_LOG) != before:
        return f"sent again: {again}"
    return None


@pytest.mark.parametrize("kind", SYNC_KINDS)
def test_sync_change_answers_by_the_participant(app, world, records, kind):
    """Each entity's changes about pa's records, from every actor (docs/sync.md rule 4).

    Refusals change nothing; the allowed ones repeat the same values or make new records, so
    every actor meets the same store as far as their answer goes.
    """
    wrong = []
    for actor in ACTORS[1:]:
        problem = sync_check(app, world, records, kind, actor)
        if problem:
            wrong.append(f"{kind} as {actor}: {problem}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("actor", ["peer_a2", "peer_b", "coord_b"])
def test_sync_edit_for_a_record_not_in_the_store_is_refused_at_once(app, client, world, actor):
    """An outsider's edit for a note that is not there is refused, never kept: nothing changes."""
    note_id = str(uuid.uuid4())
    login(client, actor)
    edit = _change("note", note_id, {"text": "an outsider's words"}, base_rev=1, minutes=5)
    body = {"device_id": str(uuid.uuid4()), "cursor": None, "changes": [edit]}
    result = client.post("/api/v1/sync", json=body).get_json()["results"][0]
    assert result["status"] == "rejected" and "not in the case store" in result["reason"]
    with app.app_context():
        held = db.session.get(SyncChange, edit["change_id"])
        assert held.status == "rejected" and held.waiting_for is None and held.payload is None
        iid = world.interviews["pa"]
        create = {"interview_id": iid, "question_key": _question_key(iid), "text": "own words"}
        _apply(world.users["peer_a"], [_change("note", note_id, create)])
        db.session.expire_all()
        note = db.session.get(Note, note_id)
        assert (note.text, note.rev, note.conflict) == ("own words", 1, None)


def _participant_of(update: dict, world) -> str:
    by_interview = {iid: p for p, iid in world.interviews.items()}
    by_participant = {pid: p for p, pid in world.participants.items()}
    data = update["data"]
    if update["entity"] == "participant":
        return by_participant[update["id"]]
    if "participant_id" in data:
        return by_participant[data["participant_id"]]
    return by_interview[data["interview_id"]]


def test_sync_updates_carry_only_what_the_actor_may_see(app, world, records):
    with app.app_context():
        # a coordinator's own debrief of pa's interview: theirs and coordinators', not a peer's
        coord = {"interview_id": world.interviews["pa"], "wellbeing": 4, "reflection": "seen"}
        result = _apply(world.users["coord_a"], [_change("debrief", str(uuid.uuid4()), coord)])
        assert result[0].status == "applied"
    for actor in ACTORS[1:]:
        client = app.test_client()
        login(client, actor)
        body = {"device_id": str(uuid.uuid4()), "cursor": None, "changes": []}
        updates = client.post("/api/v1/sync", json=body).get_json()["updates"]
        got = {(u["entity"], _participant_of(u, world)) for u in updates}
        visible = {p for p in CASE_OF if sees(actor, p)}
        assert {p for _e, p in got} == visible, actor
        # every kind of record of each visible participant arrives: the filter is not "nothing"
        for p in visible:
            kinds = {e for e, q in got if q == p}
            assert kinds >= {"note", "event", "consent", "debrief", "interview"}, (actor, p)
        for u in updates:
            if u["entity"] == "debrief" and ROLE[actor] == policy.PEER:
                assert u["data"]["mine"] is True, actor
            # no user id of anyone (the reader's own neither) travels to a tablet
            assert "author_id" not in u["data"] and "by" not in (u["data"].get("conflict") or {})
