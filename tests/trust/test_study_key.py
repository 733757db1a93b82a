"""The study key pair: made at start-up, served public, opening sealed boxes; sealed consents.

A sealed box is what the tablet's WebCrypto makes (RSA-OAEP SHA-256 around an AES-256-GCM
key); `seal_box` makes the same in Python. Whatever arrives, opening it is a BoxError with a
reason or the JSON inside, never anything else, and a consent whose box does not open is
`rejected` (not retried for ever) with a reason the tablet can show.
"""

import base64
import hashlib
import json
import os
import stat
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask.cli import FlaskGroup
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from itsdangerous import URLSafeSerializer
from sqlalchemy import func, select

from interview import create_app
from interview.store.crypto import app_key, open_bytes, open_sealed
from interview.store.extensions import db
from interview.store.models import Consent, ConsentFormVersion, ConsentSignature, SyncChange
from interview.sync.consents import PNG_PREFIX
from interview.sync.envelope import SEALED_UNOPENED
from interview.trust import study_key
from interview.trust.sealed_box import MAX_BOX_CHARS, BoxError, open_box, seal_box
from interview.trust.study_key import StudyKey, new_private_key
from tests.conftest import PASSWORD, make_config
from tests.helpers import (
    blank_signature_data_url,
    post_sync,
    signature_data_url,
    start_interview,
)
from tests.sync.test_openapi import check

# another study's key: a box sealed to it must never open here
FOREIGN = StudyKey(new_private_key())


def _key(app) -> StudyKey:
    with app.app_context():
        return study_key.current()


# --- the key pair ---------------------------------------------------------------------------


def test_the_key_pair_is_made_at_start_up_0600_pkcs8_and_kept(tmp_path):
    path = tmp_path / "instance" / "study-key.pem"
    first = create_app(make_config(tmp_path, STUDY_KEY_FILE=str(path)))
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    pem = path.read_bytes()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS8, not encrypted
    loaded = serialization.load_pem_private_key(pem, password=None)
    assert loaded.key_size == 3072
    assert not list(path.parent.glob(".*.new"))  # no half-written file left behind
    # a second start (another worker) keeps the key that is there
    second = create_app(make_config(tmp_path, STUDY_KEY_FILE=str(path)))
    assert path.read_bytes() == pem
    assert _key(first).kid == _key(second).kid


def test_the_public_key_is_served_to_anyone_and_revalidated(app, client):
    answer = client.get("/api/v1/study-key")
    assert answer.status_code == 200
    body = check("/api/v1/study-key", "get", answer)
    assert set(body) == {"kid", "alg", "spki"}
    assert body["alg"] == "RSA-OAEP-256"
    assert answer.headers["Cache-Control"] == "no-cache"
    spki = base64.b64decode(body["spki"], validate=True)
    assert body["kid"] == hashlib.sha256(spki).hexdigest()[:16]
    public = serialization.load_der_public_key(spki)
    private = serialization.load_pem_private_key(
        Path(app.config["STUDY_KEY_FILE"]).read_bytes(), password=None
    )
    assert public.public_numbers() == private.public_key().public_numbers()
    # only the public half ever leaves: no private number is in the answer
    assert str(private.private_numbers().d) not in answer.get_data(as_text=True)


def test_a_missing_key_file_is_a_503_not_a_500(app, client):
    Path(app.config["STUDY_KEY_FILE"]).unlink()
    answer = client.get("/api/v1/study-key")
    assert answer.status_code == 503
    assert check("/api/v1/study-key", "get", answer)["code"] == "study_key"


def test_keys_status_names_the_study_key(app, runner):
    group = FlaskGroup(create_app=lambda: app, load_dotenv=False, set_debug_flag=False)
    result = runner.invoke(cli=group, args=["keys", "status"])
    assert result.exit_code == 0, result.output
    kid = _key(app).kid
    assert f"study: RSA-3072 key pair in {app.config['STUDY_KEY_FILE']}" in result.output
    assert f"{kid}: opens what tablets sealed to it" in result.output
    Path(app.config["STUDY_KEY_FILE"]).write_text("not a key")
    broken = runner.invoke(cli=group, args=["keys", "status"])
    assert "study: NO usable study key" in broken.output


# --- sealed boxes ---------------------------------------------------------------------------


def test_a_box_opens_to_what_was_sealed(app):
    key = _key(app)
    inside = {"printed_name": "Åse Ødegård", "n": [1, 2.5, None, True], "deep": {"x": "y"}}
    box = seal_box(inside, key)
    assert set(box) == {"v", "kid", "key", "iv", "data"} and box["v"] == 1
    assert len(base64.b64decode(box["key"])) == 384 and len(base64.b64decode(box["iv"])) == 12
    assert open_box(box, key) == inside
    with app.app_context():
        assert open_box(json.loads(json.dumps(box))) == inside  # the app's key by default


def test_a_box_made_as_webcrypto_makes_it_opens(app):
    """The tablet's steps, one by one: RSA-OAEP(SHA-256) around AES-256-GCM, tag appended."""
    key = _key(app)
    public = serialization.load_der_public_key(key.spki)
    aes = os.urandom(32)
    iv = os.urandom(12)
    data = AESGCM(aes).encrypt(iv, json.dumps({"signature": "x"}).encode(), None)
    wrapped = public.encrypt(
        aes,
        padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
    )
    box = {"v": 1, "kid": key.kid, "key": _b64(wrapped), "iv": _b64(iv), "data": _b64(data)}
    assert open_box(box, key) == {"signature": "x"}


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _raw_box(key: StudyKey, plain: bytes, **changes) -> dict:
    """A box around any bytes (not only JSON), with fields changed as asked."""
    aes = os.urandom(32)
    iv = os.urandom(12)
    public = key.private_key.public_key()
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    box = {
        "v": 1,
        "kid": key.kid,
        "key": base64.b64encode(public.encrypt(aes, oaep)).decode(),
        "iv": base64.b64encode(iv).decode(),
        "data": base64.b64encode(AESGCM(aes).encrypt(iv, plain, None)).decode(),
    }
    box.update(changes)
    return box


def _flip(b64: str) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[-1] ^= 1
    return base64.b64encode(bytes(raw)).decode()


def _broken_boxes(key: StudyKey) -> dict[str, object]:
    good = seal_box({"a": 1}, key)
    return {
        "not an object": ["v", 1],
        "null": None,
        "missing field": {k: v for k, v in good.items() if k != "iv"},
        "extra field": dict(good, alg="RSA"),
        "version 2": dict(good, v=2),
        "version true": dict(good, v=True),
        "version text": dict(good, v="1"),
        "kid of another key": dict(good, kid=FOREIGN.kid),
        "kid a number": dict(good, kid=7),
        "sealed to another key": seal_box({"a": 1}, FOREIGN) | {"kid": key.kid},
        "key not base64": dict(good, key="***"),
        "key url-safe base64": dict(good, key=good["key"].replace("+", "-").replace("/", "_"))
        if ("+" in good["key"] or "/" in good["key"])
        else dict(good, key="-_-_"),
        "key with a lone surrogate": dict(good, key="\ud800" + good["key"]),
        "key non-ascii": dict(good, key="ø" * 8),
        "key too short": dict(good, key=base64.b64encode(b"k" * 32).decode()),
        "key tampered": dict(good, key=_flip(good["key"])),
        "iv too short": dict(good, iv=base64.b64encode(b"i" * 8).decode()),
        "iv tampered": dict(good, iv=_flip(good["iv"])),
        "data tampered": dict(good, data=_flip(good["data"])),
        "data too short": dict(good, data=base64.b64encode(b"d" * 8).decode()),
        "data a list": dict(good, data=["x"]),
        "too large": dict(good, data="A" * (MAX_BOX_CHARS + 4)),
        "not UTF-8 inside": _raw_box(key, b"\xff\xfe{}"),
        "not JSON inside": _raw_box(key, b"signature=x"),
        "NaN inside": _raw_box(key, b'{"a": NaN}'),
        "nested past the parser inside": _raw_box(key, b"[" * 100_000 + b"]" * 100_000),
        "empty inside": _raw_box(key, b""),
    }


@pytest.mark.parametrize(
    "name",
    list(_broken_boxes(FOREIGN)),  # the names only; each test builds the boxes for its key
)
def test_every_broken_box_is_a_box_error(app, name):
    key = _key(app)
    with pytest.raises(BoxError) as raised:
        open_box(_broken_boxes(key)[name], key)
    # the reason names the fault, never the contents
    assert "signature" not in str(raised.value)


def test_a_box_of_another_study_opens_with_its_own_key_only(app):
    box = seal_box({"a": 1}, FOREIGN)
    assert open_box(box, FOREIGN) == {"a": 1}
    with pytest.raises(BoxError, match="another study key"):
        open_box(box, _key(app))


JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec=None), max_size=40),  # lone surrogates too
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.text(st.characters(codec=None), max_size=8), inner, max_size=5)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(value=JSONISH)
def test_open_box_on_anything_is_a_box_error_never_a_crash(value):
    try:
        open_box(value, FOREIGN)
    except BoxError:
        pass


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    field=st.sampled_from(["v", "kid", "key", "iv", "data"]),
    value=JSONISH,
    inside=JSONISH,
)
def test_a_real_box_with_one_field_changed_opens_or_is_a_box_error(field, value, inside):
    box = seal_box(inside, FOREIGN)
    assert open_box(box, FOREIGN) == json.loads(json.dumps(inside))
    try:
        open_box(dict(box, **{field: value}), FOREIGN)
    except BoxError:
        pass


# --- sealed consent through sync ------------------------------------------------------------


def _started(client, world, username="peer_a", key="pa") -> str:
    client.post("/login", data={"username": username, "password": PASSWORD})
    iid = world.interviews[key]
    assert start_interview(client, iid).status_code == 302
    return iid


def _consent(app, iid: str, **data) -> dict:
    with app.app_context():
        form = db.session.scalars(select(ConsentFormVersion)).first()
        keys = [item["key"] for item in form.content["items"]]
        version = form.version
    return {
        "change_id": str(uuid.uuid4()),
        "entity": "consent",
        "id": str(uuid.uuid4()),
        "base_rev": None,
        "recorded_at": "2026-11-23T10:00:00Z",
        "data": {
            "interview_id": iid,
            "form_version": version,
            "language": "nb",
            "answers": dict.fromkeys(keys, True),
            "method": "tablet",
            **data,
        },
    }


def _result(client, change) -> dict:
    answer = post_sync(client, [change])
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.get_json()["results"][0]


def test_a_sealed_signature_and_name_are_kept_as_plain_ones_are(app, client, world):
    iid = _started(client, world)
    drawn = signature_data_url()
    sealed = seal_box({"signature": drawn, "printed_name": "Kari Nordmann"}, _key(app))
    change = _consent(app, iid, sealed=sealed)
    assert _result(client, change)["status"] == "applied"
    with app.app_context():
        consent = db.session.get(Consent, change["id"])
        assert consent.method == "tablet"
        sig = db.session.scalars(
            select(ConsentSignature).where(ConsentSignature.consent_id == consent.id)
        ).one()
        name = open_sealed(
            app_key(), sig.printed_name_enc, f"consent_signature.printed_name.{sig.id}"
        )
        image = open_bytes(app_key(), sig.signature_enc, f"consent_signature.signature.{sig.id}")
        assert name == "Kari Nordmann"
        assert image == base64.b64decode(drawn[len(PNG_PREFIX) :])
        # the case store keeps no trace of the box: the claim holds a digest, not the payload
        row = db.session.get(SyncChange, change["change_id"])
        assert row.payload is None
    # the same change again is a duplicate, as any change is
    assert _result(client, change)["status"] == "duplicate"


def test_a_paper_consent_may_seal_only_the_printed_name(app, client, world):
    iid = _started(client, world)
    change = _consent(
        app,
        iid,
        method="paper",
        paper_form_number="P-77",
        sealed=seal_box({"printed_name": "Ola"}, _key(app)),
    )
    assert _result(client, change)["status"] == "applied"


@pytest.mark.parametrize(
    ("inside", "beside", "reason"),
    [
        ({"signature": "x"}, {"signature": "data:image/png;base64,"}, "not beside it"),
        ({"printed_name": "A"}, {"printed_name": "B"}, "not beside it"),
        ({"printed_name": "A"}, {}, "a signature drawn on the tablet is required"),
        ("BLANK", {}, "a signature drawn on the tablet is required"),
        ({"signature": "data:image/gif;base64,R0lG"}, {}, "a signature drawn on the tablet"),
        ({"signature": 42}, {}, "signature must be text"),
        ({"printed_name": "x" * 201, "signature": "SIG"}, {}, "printed_name must be text"),
        ({"printed_name": "Kari\ud800", "signature": "SIG"}, {}, "not valid Unicode"),
        ({"printed_name": "a\x00b", "signature": "SIG"}, {}, "printed_name must be text"),
        ({"signature": "SIG", "address": "Gata 1"}, {}, "unknown fields: address"),
        (["SIG"], {}, "must hold an object"),
        ("just text", {}, "must hold an object"),
    ],
)
def test_a_sealed_consent_is_checked_as_a_plain_one(app, client, world, inside, beside, reason):
    iid = _started(client, world)
    if inside == "BLANK":
        inside = {"signature": blank_signature_data_url()}
    if isinstance(inside, dict) and inside.get("signature") == "SIG":
        inside = dict(inside, signature=signature_data_url())
    change = _consent(app, iid, sealed=seal_box(inside, _key(app)), **beside)
    result = _result(client, change)
    assert result["status"] == "rejected"
    assert reason in result["reason"]
    with app.app_context():
        assert db.session.get(Consent, change["id"]) is None


@pytest.mark.parametrize(
    "sealed",
    [
        None,
        "box",
        {"v": 1},
        "FOREIGN",
        "TAMPERED",
    ],
)
def test_a_box_that_does_not_open_is_rejected_once_and_for_all(app, client, world, sealed):
    iid = _started(client, world)
    key = _key(app)
    if sealed == "FOREIGN":
        sealed = seal_box({"signature": signature_data_url()}, FOREIGN)
    elif sealed == "TAMPERED":
        sealed = seal_box({"signature": signature_data_url()}, key)
        sealed["data"] = _flip(sealed["data"])
    change = _consent(app, iid, sealed=sealed)
    first = _result(client, change)
    assert first == {
        "change_id": change["change_id"],
        "status": "rejected",
        "rev": None,
        "reason": SEALED_UNOPENED,
    }
    # sent again, the same answer: the tablet moves it to its refused list, never retries it
    assert _result(client, change) == first


def test_a_consent_waits_for_the_key_file_rather_than_being_refused(app, client, world):
    """A missing key file is the server's fault: the change is not written down (retry)."""
    iid = _started(client, world)
    change = _consent(app, iid, sealed=seal_box({"signature": signature_data_url()}, _key(app)))
    pem = Path(app.config["STUDY_KEY_FILE"])
    saved = pem.read_bytes()
    pem.unlink()
    answer = post_sync(client, [change])
    assert answer.status_code == 503
    assert answer.get_json()["code"] == "retry"
    fd = os.open(pem, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(saved)
    assert _result(client, change)["status"] == "applied"


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzzed_sealed_consents_are_answered_never_500(app, world, data):
    client = app.test_client()
    client.post("/login", data={"username": "peer_a", "password": PASSWORD})
    iid = world.interviews["pa"]
    inside = data.draw(
        st.one_of(
            JSONISH,
            st.fixed_dictionaries(
                {},
                optional={
                    "signature": st.one_of(JSONISH, st.just(signature_data_url())),
                    "printed_name": JSONISH,
                },
            ),
        ),
        label="inside",
    )
    sealed = data.draw(st.one_of(st.just(seal_box(inside, _key(app))), JSONISH), label="sealed")
    method = data.draw(st.sampled_from(["tablet", "paper"]), label="method")
    change = _consent(app, iid, sealed=sealed, method=method, paper_form_number="P-1")
    body = json.dumps({"device_id": str(uuid.uuid4()), "cursor": None, "changes": [change]})
    answer = client.post("/api/v1/sync", data=body, content_type="application/json")
    assert answer.status_code < 500, answer.get_data(as_text=True)[:300]
    assert answer.get_json()["results"][0]["status"] in ("applied", "rejected")


# --- lone surrogates anywhere in a change ---------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        {"text": "half an emoji \ud83d"},
        {"text": "x", "\udfff": 1},
        {"text": "x", "themes": ["\ud800"]},
    ],
)
def test_a_lone_surrogate_in_a_change_is_rejected_not_a_500(app, client, world, data):
    iid = _started(client, world)
    change = {
        "change_id": str(uuid.uuid4()),
        "entity": "note",
        "id": str(uuid.uuid4()),
        "base_rev": None,
        "recorded_at": "2026-11-23T10:00:00Z",
        "data": {"interview_id": iid, "question_key": "context.services", **data},
    }
    body = json.dumps({"device_id": str(uuid.uuid4()), "cursor": None, "changes": [change]})
    answer = client.post("/api/v1/sync", data=body, content_type="application/json")
    assert answer.status_code == 200
    result = answer.get_json()["results"][0]
    assert result["status"] == "rejected" and "not valid Unicode" in result["reason"]


# --- the rescue token in the session --------------------------------------------------------


def test_the_session_carries_a_rescue_token_naming_the_user(app, client, world):
    client.post("/login", data={"username": "peer_a", "password": PASSWORD})
    body = check("/api/v1/session", "get", client.get("/api/v1/session"))
    loaded = URLSafeSerializer(app.secret_key, salt="fact-rescue").loads(body["rescue_token"])
    assert loaded == {"u": world.users["peer_a"]}
    # the same token at every ask: it does not expire, and a tablet may keep it offline
    assert client.get("/api/v1/session").get_json()["rescue_token"] == body["rescue_token"]


def test_sync_keeps_the_consent_pages_rules_once_and_before_the_end(app, client, world):
    # the consent page takes one consent, and none after the interview has ended; sync too
    iid = _started(client, world)
    first = _consent(app, iid, method="paper", paper_form_number="P-1")
    second = _consent(app, iid, method="paper", paper_form_number="P-2")
    answer = post_sync(client, [first, second]).get_json()["results"]
    assert [r["status"] for r in answer] == ["applied", "rejected"]
    assert "already recorded" in answer[1]["reason"]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Consent)) == 1

    ended = world.interviews["pa2"]
    client.post("/logout")
    client.post("/login", data={"username": "peer_a2", "password": PASSWORD})
    assert start_interview(client, ended).status_code == 302
    assert client.post(f"/interviews/{ended}/stop", data={"reason": "other"}).status_code == 302
    late = _consent(app, ended, method="paper", paper_form_number="P-3")
    result = _result(client, late)
    assert result["status"] == "rejected" and "ended" in result["reason"]
