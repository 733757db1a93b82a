"""The OpenAPI document (DESIGN §4): served as kept, and real responses match its schemas."""

import json
import uuid

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from interview.sync.views import OPENAPI, openapi_document
from tests.helpers import consented_interview
from tests.helpers import note_change as _note_change

DOC = json.loads(OPENAPI.read_text(encoding="utf-8"))
REGISTRY = Registry().with_resource(
    "urn:openapi", Resource.from_contents(DOC, default_specification=DRAFT202012)
)


def validator(name: str) -> Draft202012Validator:
    """A validator for one of the document's component schemas, with its refs resolvable."""
    return Draft202012Validator(
        {"$ref": f"urn:openapi#/components/schemas/{name}"}, registry=REGISTRY
    )


def assert_valid(name: str, instance) -> None:
    errors = sorted(validator(name).iter_errors(instance), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def response_schema_name(path: str, method: str, status: int) -> str:
    """The component a path's documented response points at (so paths and schemas agree)."""
    response = DOC["paths"][path][method]["responses"][str(status)]
    return response["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]


def check(path: str, method: str, response) -> dict:
    """Validate a real response against the schema the document gives for its status."""
    body = response.get_json()
    assert_valid(response_schema_name(path, method, response.status_code), body)
    return body


def _sync(client, changes, cursor=None, valid=True):
    body = {"device_id": str(uuid.uuid4()), "cursor": cursor, "changes": changes}
    if valid:  # the requests the tests send are documented ones, unless meant to be malformed
        assert_valid("SyncRequest", body)
    else:
        assert not validator("SyncRequest").is_valid(body)
    return client.post("/api/v1/sync", json=body)


def test_served_document_is_the_file_and_openapi_3_1(client, app):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == DOC == openapi_document()
    assert DOC["openapi"] == "3.1.0"
    for path in ("/api/v1/sync", "/api/v1/session", "/api/v1/offline", "/api/v1/openapi.json"):
        assert path in DOC["paths"]
    for status in ("200", "400", "401", "413"):
        assert status in DOC["paths"]["/api/v1/sync"]["post"]["responses"]


def test_every_component_schema_is_valid_2020_12():
    for schema in DOC["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


def test_sync_applied_duplicate_conflict_rejected_and_updates_match(client, auth, world):
    iid = consented_interview(client, world)
    # the first sync with cursor null: everything visible, interview and consent included
    first = check("/api/v1/sync", "post", _sync(client, []))
    assert first["results"] == []
    assert {u["entity"] for u in first["updates"]} >= {"interview", "consent"}
    cursor = first["cursor"]

    nid = str(uuid.uuid4())
    create = _note_change(iid, nid, "Første notat")
    applied = check("/api/v1/sync", "post", _sync(client, [create], cursor))
    assert applied["results"][0]["status"] == "applied"
    assert any(u["entity"] == "note" and u["id"] == nid for u in applied["updates"])

    again = check("/api/v1/sync", "post", _sync(client, [create]))
    assert again["results"][0]["status"] == "duplicate"

    both = check(
        "/api/v1/sync",
        "post",
        _sync(
            client,
            [
                _note_change(iid, nid, "B", base_rev=1),
                {"change_id": "not-a-uuid", "entity": "note"},
                _note_change(iid, nid, "C", base_rev=1),
                {"entity": "nothing"},
            ],
            applied["cursor"],
            valid=False,
        ),
    )
    assert [r["status"] for r in both["results"]] == ["applied", "rejected", "conflict", "rejected"]
    assert all(r.get("reason") for r in both["results"] if r["status"] == "rejected")
    note = next(u for u in both["updates"] if u["id"] == nid)
    assert note["data"]["conflict"]["text"] == "C"

    # a change for a record that nothing is creating is refused, with a reason
    orphan = check(
        "/api/v1/sync", "post", _sync(client, [_note_change(iid, str(uuid.uuid4()), "x", 1)])
    )
    assert orphan["results"][0]["status"] == "rejected"
    assert "not in the case store" in orphan["results"][0]["reason"]


def test_sync_errors_match(client, auth, world):
    logged_out = client.post("/api/v1/sync", json={"device_id": str(uuid.uuid4()), "changes": []})
    assert logged_out.status_code == 401
    assert check("/api/v1/sync", "post", logged_out)["code"] == "login"

    auth.login("peer_a")
    bad = client.post("/api/v1/sync", json={"device_id": "nope", "changes": []})
    assert bad.status_code == 400
    assert check("/api/v1/sync", "post", bad)["code"] == "envelope"
    not_json = client.post("/api/v1/sync", data="x", content_type="text/plain")
    assert not_json.status_code == 400
    check("/api/v1/sync", "post", not_json)

    big = client.post(
        "/api/v1/sync", data=b"{" + b" " * (3 * 1024 * 1024) + b"}", content_type="application/json"
    )
    assert big.status_code == 413
    assert check("/api/v1/sync", "post", big)["code"] == "too_large"


def test_session_and_offline_match(client, auth, world):
    assert check("/api/v1/session", "get", client.get("/api/v1/session"))["code"] == "login"
    check("/api/v1/offline", "get", client.get("/api/v1/offline"))

    auth.login("peer_a")
    session = check("/api/v1/session", "get", client.get("/api/v1/session"))
    assert session["user"] == "peer_a" and session["role"] == "peer"
    offline = check("/api/v1/offline", "get", client.get("/api/v1/offline"))
    assert offline["shell"]
    assert world.interviews["pa"] in [iv["id"] for iv in offline["interviews"]]
    assert all(iv["pages"] for iv in offline["interviews"])


GOOD_RESPONSE = {
    "results": [{"change_id": str(uuid.uuid4()), "status": "applied", "rev": 1}],
    "cursor": 3,
    "updates": [],
}


@pytest.mark.parametrize(
    "name, instance",
    [
        (
            "SyncResponse",
            dict(GOOD_RESPONSE, results=[dict(GOOD_RESPONSE["results"][0], extra=1)]),
        ),
        (
            "SyncResponse",
            dict(GOOD_RESPONSE, results=[dict(GOOD_RESPONSE["results"][0], status="waiting")]),
        ),
        ("SyncResponse", dict(GOOD_RESPONSE, cursor=None)),
        ("SyncResponse", {"results": [], "cursor": 1}),
        (
            "SyncResponse",
            dict(
                GOOD_RESPONSE,
                updates=[{"entity": "note", "id": "x", "rev": 1, "data": {"text": "only"}}],
            ),
        ),
        ("Error", {"error": "x", "code": "login", "status": 401, "detail": "extra"}),
        ("Error", {"error": "x", "code": "login"}),
        ("Session", {"user": "a", "user_id": 1, "role": "guest", "lang": "nb", "csrf_token": "t"}),
    ],
)
def test_drift_fails_validation(name, instance):
    assert_valid("SyncResponse", GOOD_RESPONSE)
    assert not validator(name).is_valid(instance)
