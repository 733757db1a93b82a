"""Security headers on every route's answer, and no markup the Content-Security-Policy blocks."""

import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from interview.config import ROOT
from interview.store.extensions import db
from interview.store.models import Consent, ConsentFormVersion, GuideVersion, Theme
from interview.trust import policy
from tests.conftest import PASSWORD
from tests.helpers import give_paper_consent, note_change, start_interview
from tests.listen_helpers import make_recording

TEMPLATES = ROOT / "templates"
# print templates are rendered by WeasyPrint into PDFs, never sent to a browser as HTML
PRINT_ONLY = TEMPLATES / "documents"
# guides and blank consent forms: the same for every user, no research data (README)
KEPT_PRIVATELY = {"documents.guide_pdf", "documents.consent_pdf"}
# the study's public key: kept, but asked for again before each use (a restore may change it)
REVALIDATED = {"api.study_key_info"}
ONE_YEAR = 31_536_000


@dataclass
class Page:
    """Where one GET route is, and who opens it."""

    actor: str
    url: str
    status: int = 200
    # interview steps redirect by the interview's state; the tablet's offline copy never does
    offline_copy: bool = False


@pytest.fixture
def pages(app, client, world) -> dict[str, Page]:
    """Every GET route of the policy table with real ids, in a store with something in it.

    pa's interview runs, with consent and a note in two versions (a conflict and an alert);
    pa2's was stopped (so its debrief and archive record exist).
    """
    pa, pa2 = world.interviews["pa"], world.interviews["pa2"]
    client.post("/login", data={"username": "peer_a", "password": PASSWORD})
    assert start_interview(client, pa).status_code == 302
    assert give_paper_consent(client, pa).status_code == 302
    note = str(uuid.uuid4())
    for change in (
        note_change(pa, note, "first"),
        note_change(pa, note, "second", base_rev=1),
        note_change(pa, note, "other", base_rev=1),
    ):
        body = {"device_id": str(uuid.uuid4()), "cursor": None, "changes": [change]}
        assert client.post("/api/v1/sync", json=body).status_code == 200
    client.post("/logout")
    client.post("/login", data={"username": "peer_a2", "password": PASSWORD})
    assert client.post(f"/interviews/{pa2}/stop", data={"reason": "other"}).status_code == 302
    client.post("/logout")
    with app.app_context():
        guide = db.session.scalars(select(GuideVersion)).first()
        form = db.session.scalars(select(ConsentFormVersion)).first()
        theme = db.session.scalars(select(Theme)).first().id
        consent = db.session.scalars(select(Consent.id)).one()
    g = f"{guide.key}/{guide.version}"
    with app.app_context():
        recording = make_recording(pa, [b"sound"])
    c = f"{form.key}/{form.version}"
    iv = f"/interviews/{pa}"
    pid = world.participants["pa"]
    return {
        "static": Page("anonymous", "/static/css/app.css"),
        "main.healthz": Page("anonymous", "/healthz"),
        "main.offline_page": Page("anonymous", "/offline"),
        "main.service_worker": Page("anonymous", "/sw.js"),
        "main.manifest": Page("anonymous", "/manifest.webmanifest"),
        "auth.signed_out": Page("anonymous", "/signed-out"),
        "main.home": Page("peer_a", "/", 302),
        "auth.login": Page("anonymous", "/login"),
        "api.openapi": Page("anonymous", "/api/v1/openapi.json"),
        "api.study_key_info": Page("anonymous", "/api/v1/study-key"),
        "api.session_info": Page("peer_a", "/api/v1/session"),
        "api.offline_manifest": Page("peer_a", "/api/v1/offline"),
        # a recording the store does not hold: gone (tests/sync/test_recordings_api.py)
        "api.recording": Page("peer_a", f"/api/v1/recordings/{uuid.UUID(int=5)}", 410),
        "documents.index": Page("peer_a", "/guides/"),
        "documents.guide_page": Page("peer_a", f"/guides/{g}"),
        "documents.guide_pdf": Page("peer_a", f"/guides/{g}/nb.pdf"),
        "documents.consent_pdf": Page("peer_a", f"/consent-forms/{c}/en.pdf"),
        "interviews.mine": Page("peer_a", "/interviews/"),
        "interviews.conflicts": Page("peer_a", "/interviews/conflicts"),
        "interviews.overview": Page("peer_a", iv),
        "interviews.capacity": Page("peer_a", f"{iv}/capacity", 302, offline_copy=True),
        "interviews.reschedule": Page("peer_a", f"{iv}/reschedule", 302, offline_copy=True),
        "interviews.consent": Page("peer_a", f"{iv}/consent", 302, offline_copy=True),
        "interviews.section": Page("peer_a", f"{iv}/section/0"),
        "interviews.distress": Page("peer_a", f"{iv}/distress"),
        "interviews.distress_two": Page("peer_a", f"{iv}/distress/stage-2"),
        "interviews.stop": Page("peer_a", f"{iv}/stop"),
        "interviews.finish": Page("peer_a", f"{iv}/finish"),
        "interviews.debrief": Page("peer_a2", f"/interviews/{pa2}/debrief"),
        "coordinator.participants": Page("coord_a", "/participants/"),
        "coordinator.consent_forms": Page("coord_a", "/participants/consent-forms"),
        "coordinator.new_participant": Page("coord_a", "/participants/new"),
        "coordinator.detail": Page("coord_a", f"/participants/{pid}"),
        "coordinator.withdraw_participant": Page("coord_a", f"/participants/{pid}/withdraw"),
        "coordinator.withdraw_consent_items": Page(
            "coord_a", f"/participants/{pid}/withdraw-items"
        ),
        "desk.overview": Page("coord_a", "/desk/"),
        "desk.case_page": Page("coord_a", "/desk/cases/A"),
        "alerts.index": Page("coord_a", "/desk/alerts/"),
        "rescue.index": Page("coord_a", "/desk/rescue/"),
        "codebook.index": Page("coord_a", "/desk/themes/"),
        "codebook.matrix": Page("coord_a", "/desk/themes/matrix"),
        "codebook.cell": Page("coord_a", f"/desk/themes/matrix/A/{theme}"),
        "exports.index": Page("coord_a", "/desk/exports/"),
        "exports.csv_export": Page("coord_a", "/desk/exports/notes.csv"),
        "exports.xlsx_export": Page("coord_a", "/desk/exports/notes.xlsx"),
        "exports.json_export": Page("coord_a", "/desk/exports/export.json"),
        "exports.qdpx_export": Page("coord_a", "/desk/exports/project.qdpx"),
        "audit.index": Page("coord_a", "/desk/audit/"),
        "audit.csv": Page("admin", "/desk/audit/audit-log.csv"),
        "documents.record_pdf": Page("coord_a", f"/desk/interviews/{pa2}/record/en.pdf"),
        "documents.consent_record": Page("coord_a", f"/desk/consents/{consent}/record.pdf"),
        "listen.page": Page("coord_a", f"/desk/recordings/{recording}"),
        "listen.audio": Page("coord_a", f"/desk/recordings/{recording}/audio"),
        "documents.progress_report": Page("coord_a", "/desk/report/nb.pdf"),
        "documents.case_progress_report": Page("coord_a", "/desk/cases/A/report/en.pdf"),
    }


# -- what a response must carry ---------------------------------------------------------------


def csp_problems(value: str | None) -> list[str]:
    """What is wrong with a Content-Security-Policy header, as a list of complaints."""
    if not value:
        return ["no Content-Security-Policy"]
    directives = {}
    for part in value.split(";"):
        words = part.split()
        if words:
            directives[words[0].lower()] = words[1:]
    problems = []
    if "'unsafe-inline'" in value or "'unsafe-eval'" in value:
        problems.append("allows unsafe-inline or unsafe-eval")
    for name, wanted in (
        ("object-src", ["'none'"]),
        ("base-uri", ["'none'"]),
        ("frame-ancestors", ["'none'"]),
        ("form-action", ["'self'"]),
    ):
        if directives.get(name) != wanted:
            problems.append(f"{name} is {directives.get(name)}, not {wanted}")
    scripts = directives.get("script-src", directives.get("default-src"))
    if not scripts or any(s in ("*", "data:", "blob:", "http:", "https:") for s in scripts):
        problems.append(f"script-src is {scripts}")
    if "default-src" not in directives:
        problems.append("no default-src")
    return problems


def header_problems(response, endpoint: str | None, https: bool = False) -> list[str]:
    """Every header rule of issue 6 that the response breaks."""
    h = response.headers
    problems = csp_problems(h.get("Content-Security-Policy"))
    if h.get("X-Content-Type-Options") != "nosniff":
        problems.append(f"X-Content-Type-Options is {h.get('X-Content-Type-Options')}")
    if h.get("Referrer-Policy") != "same-origin":
        problems.append(f"Referrer-Policy is {h.get('Referrer-Policy')}")
    hsts = h.get("Strict-Transport-Security")
    if https:
        match = re.fullmatch(r"max-age=(\d+)(; includeSubDomains)?", hsts or "")
        if not match or int(match.group(1)) < ONE_YEAR:
            problems.append(f"HSTS over HTTPS is {hsts}")
    elif hsts:
        problems.append("HSTS over plain HTTP")
    cache = h.get("Cache-Control", "")
    if endpoint in KEPT_PRIVATELY and response.status_code in (200, 304):
        if cache != "private, max-age=3600":
            problems.append(f"Cache-Control of a guide or blank form is {cache!r}")
    elif endpoint in REVALIDATED and response.status_code == 200:
        if cache != "no-cache":
            problems.append(f"Cache-Control of the study key is {cache!r}")
    elif endpoint != "static" and "no-store" not in cache.split(", "):
        problems.append(f"Cache-Control is {cache!r}, not no-store")
    if "public" in cache:
        problems.append("Cache-Control lets a shared cache keep it")
    return problems


_TAG = re.compile(r"<[a-zA-Z][^>]*>", re.S)
_SCRIPT = re.compile(r"<script\b([^>]*)>(.*?)</script\s*>", re.S | re.I)


def inline_problems(html: str) -> list[str]:
    """Markup the CSP would block: style attributes or elements, inline scripts and handlers."""
    problems = []
    for tag in _TAG.findall(html):
        if re.search(r"\sstyle\s*=", tag, re.I):
            problems.append(f"style attribute: {tag[:80]}")
        if re.search(r"\son[a-z]+\s*=", tag, re.I):
            problems.append(f"event handler attribute: {tag[:80]}")
        if re.search(r"""=\s*["']?\s*javascript:""", tag, re.I):
            problems.append(f"javascript: URL: {tag[:80]}")
    if re.search(r"<style\b", html, re.I):
        problems.append("<style> element")
    for attrs, body in _SCRIPT.findall(html):
        # a JSON data block is never run, so the CSP lets it be
        data_block = re.search(r"""type\s*=\s*["']application/json["']""", attrs)
        if body.strip() and not data_block:
            problems.append(f"inline script: {body.strip()[:60]}")
        if not body.strip() and "src=" not in attrs:
            problems.append("script element without src")
    return problems


def _html(response) -> str | None:
    if response.mimetype == "text/html":
        return response.get_data(as_text=True)
    return None


# -- the tests --------------------------------------------------------------------------------

GET_ENDPOINTS = sorted(r.endpoint for r in policy.ROUTES if "GET" in r.methods)


def test_every_get_route_has_a_page_here(pages):
    assert set(pages) == set(GET_ENDPOINTS)


@pytest.mark.parametrize("endpoint", GET_ENDPOINTS)
def test_get_route_headers_and_markup(app, pages, endpoint):
    page = pages[endpoint]
    client = app.test_client()
    if page.actor != "anonymous":
        client.post("/login", data={"username": page.actor, "password": PASSWORD})
    response = client.get(page.url)
    assert response.status_code == page.status, response.headers.get("Location")
    assert header_problems(response, endpoint) == []
    html = _html(response)
    if page.offline_copy:
        response = client.get(page.url, headers={"X-Offline-Copy": "1"})
        assert response.status_code == 200
        assert header_problems(response, endpoint) == []
        html = _html(response)
    if html is not None:
        assert inline_problems(html) == []


def test_a_kept_guide_revalidates_with_the_same_headers(app, pages):
    """A 304 for a guide the browser kept still carries every header."""
    client = app.test_client()
    client.post("/login", data={"username": "peer_a", "password": PASSWORD})
    url = pages["documents.guide_pdf"].url
    again = client.get(url, headers={"If-None-Match": client.get(url).get_etag()[0]})
    assert again.status_code == 304
    assert header_problems(again, "documents.guide_pdf") == []
    assert again.headers["Cache-Control"] == "private, max-age=3600"


@pytest.mark.parametrize(
    ("actor", "method", "url", "status"),
    [
        ("anonymous", "GET", "/no-such-page", 404),
        ("anonymous", "GET", "/interviews/", 302),
        ("anonymous", "GET", "/api/v1/session", 401),
        ("anonymous", "POST", "/api/v1/sync", 401),
        ("anonymous", "GET", "/logout", 405),
        ("peer_a", "GET", "/desk/", 403),
        ("peer_a", "GET", f"/interviews/{uuid.UUID(int=1)}", 404),
        ("coord_a", "GET", "/desk/cases/B", 404),
        ("coord_a", "POST", "/api/v1/sync", 400),
    ],
)
def test_refusals_and_errors_carry_the_headers_too(app, client, world, actor, method, url, status):
    if actor != "anonymous":
        client.post("/login", data={"username": actor, "password": PASSWORD})
    response = client.open(url, method=method, json={} if method == "POST" else None)
    assert response.status_code == status
    assert header_problems(response, None) == []
    html = _html(response)
    if html is not None:
        assert inline_problems(html) == []


@pytest.mark.parametrize(
    ("actor", "url", "endpoint"),
    [
        ("anonymous", "/login", "auth.login"),
        ("anonymous", "/static/css/app.css", "static"),
        ("anonymous", "/api/v1/session", None),
        ("peer_a", "/interviews/", "interviews.mine"),
        ("peer_a", "/api/v1/offline", "api.offline_manifest"),
    ],
)
def test_hsts_over_https(app, world, actor, url, endpoint):
    client = app.test_client()
    if actor != "anonymous":
        client.post(
            "/login",
            data={"username": actor, "password": PASSWORD},
            base_url="https://localhost",
        )
    response = client.get(url, base_url="https://localhost")
    assert response.status_code in (200, 401)
    assert header_problems(response, endpoint, https=True) == []


def _served_templates() -> list[Path]:
    return sorted(p for p in TEMPLATES.rglob("*.html") if PRINT_ONLY not in p.parents)


@pytest.mark.parametrize("path", _served_templates(), ids=lambda p: str(p.relative_to(TEMPLATES)))
def test_template_has_no_inline_script_style_or_handlers(path):
    assert inline_problems(path.read_text(encoding="utf-8")) == []


def test_print_templates_never_reach_a_browser():
    """The print templates may carry a <style> element: only WeasyPrint ever reads them."""
    sources = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "interview").glob("*.py"))
    assert not re.search(r"render_template\(\s*[\"']documents/", sources)


@pytest.mark.parametrize(
    ("html", "kind"),
    [
        ('<p style="color: red">', "style attribute"),
        ("<button onclick='go()'>", "event handler"),
        ('<a href="javascript:go()">', "javascript:"),
        ("<style>p { color: red }</style>", "<style>"),
        ("<script>go()</script>", "inline script"),
        ('<script type="module">go()</script>', "inline script"),
        ("<script></script>", "without src"),
    ],
)
def test_the_markup_scan_sees_what_the_csp_would_block(html, kind):
    """Control: the scan above is not blind."""
    assert any(kind in problem for problem in inline_problems(html))


def test_the_markup_scan_lets_data_blocks_and_script_files_be():
    html = (
        '<script type="application/json" id="x">{"a": 1}</script>'
        '<script type="module" src="/static/js/offline.js"></script>'
        '<div data-on="1" class="ongoing"></div>'
    )
    assert inline_problems(html) == []
