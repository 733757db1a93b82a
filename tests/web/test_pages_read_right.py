"""No code on any page: every page a person can open reads as words, in both languages.

Every GET route of the app is rendered (a new route is covered without touching this file), as
each role and anonymously, in nb and en, and the interview pages in each state that shows a
different page. Every form is also sent with input it refuses and its error page read, and so are
the identity look-up (a POST) and the HTML each printable document is made from. The visible
text and the attributes a person hears or sees must hold no Python object (`<built-in method
clear of dict object at 0x…>`), no `None`/`Undefined`, no unformatted placeholder, and no raw
message id or dotted key. That the nb catalogue translates every message in the code is checked
by tests/web/test_i18n.py (a fresh extraction against the .po file); here an nb page must also
not show an English message that the catalogue does translate (a string translated before the
request knew its language).
"""

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from babel.messages.pofile import read_po
from flask import url_for
from sqlalchemy import select

from interview.documents import consent_record
from interview.documents import views as document_views
from interview.store.content import guide_of
from interview.store.extensions import db
from interview.store.models import Consent, ConsentFormVersion, GuideVersion, Interview, Theme
from tests.conftest import PASSWORD
from tests.helpers import consented_interview, new_note_on_page, start_interview
from tests.listen_helpers import make_recording, note_in_recording
from tests.web.test_i18n import PO

# anonymous, the peers of the nb (pa) and the en (pa2) interview, a coordinator, the admin
ROLES = (None, "peer_a", "peer_a2", "coord_a", "admin")
LANGS = ("nb", "en")
STATES = ("planned", "consenting", "in_progress", "paused", "completed", "stopped")
# answers that are files or data, not pages a person reads: PDFs (checked in test_documents),
# CSV/JSON/QDPX exports, the API, the service worker and static files
NOT_PAGES = re.compile(r"\.(pdf|csv|json|qdpx|js)$|^/static/|^/api/")
# attributes whose values a person sees (placeholder, tooltip, button face) or hears (aria)
READ_ATTRS = {"aria-label", "aria-description", "title", "placeholder", "alt"}

CODE_LEAKS = [
    (re.compile(r"<built-in|built-in method|<bound method| object at 0x"), "a Python object"),
    (re.compile(r"\b(None|Undefined)\b"), "None/Undefined"),
    (re.compile(r"%\(|\{\{|\}\}|\{%|%\}"), "an unformatted placeholder"),
]
# a message id or dotted key (consent.participate) standing as a word of its own
RAW_KEY = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")
# ...that is not a file name, a web address or an abbreviation
NOT_KEYS = re.compile(
    r"\.(csv|json|pdf|qdpx|js|toml|db|key|png|html|org|com|no|net)$|^(e\.g|i\.e)$"
)


class _Reader(HTMLParser):
    """Collect the words a person sees or hears: text outside scripts, and telling attributes."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.skip = 0
        self.langs: list[tuple[str, str | None]] = []
        self.texts: list[tuple[str, str]] = []  # (words, language they are in)

    def _lang(self) -> str:
        for _tag, lang in reversed(self.langs):
            if lang:
                return lang
        return ""

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("script", "style", "template"):
            self.skip += 1
        if tag not in VOID:
            self.langs.append((tag, attrs.get("lang")))
        lang = attrs.get("lang") or self._lang()
        for name, value in attrs.items():
            if value and name in READ_ATTRS:
                self.texts.append((value, lang))
        if value := attrs.get("value"):
            if tag == "button" or attrs.get("type") in ("submit", "button", "reset"):
                self.texts.append((value, lang))

    def handle_endtag(self, tag):
        if tag in ("script", "style", "template"):
            self.skip = max(0, self.skip - 1)
        for i in range(len(self.langs) - 1, -1, -1):
            if self.langs[i][0] == tag:
                del self.langs[i:]
                break

    def handle_data(self, data):
        if not self.skip and data.strip():
            self.texts.append((data, self._lang()))


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


def _english_messages() -> list[str]:
    """English messages of three words or more that nb translates differently."""
    with PO.open("rb") as fh:
        catalog = read_po(fh)
    out = []
    for m in catalog:
        if not m.id or not isinstance(m.id, str) or not m.string or m.string == m.id:
            continue
        if "%(" in m.id or len(m.id.split()) < 3:
            continue
        out.append(m.id)
    return out


ENGLISH = _english_messages()


def problems_on(html: str, page_lang: str) -> list[str]:
    """Return what on a page is code or a key rather than words (empty when it reads right)."""
    reader = _Reader()
    reader.feed(html)
    found = []
    for text, _lang in reader.texts:
        found += [f"{what}: {text.strip()[:160]!r}" for p, what in CODE_LEAKS if p.search(text)]
        for word in text.split():
            word = word.strip(".,:;!?()[]«»\"'")
            if RAW_KEY.fullmatch(word) and not NOT_KEYS.search(word):
                found.append(f"a raw key: {word!r} in {text.strip()[:160]!r}")
    if page_lang == "nb":
        # words in the interview's language (lang="en" on an nb page) are English on purpose
        nb_text = " ".join(" ".join(t.split()) for t, lang in reader.texts if lang != "en")
        found += [f"English on an nb page: {m!r}" for m in ENGLISH if m in nb_text]
    return found


def test_the_reader_finds_what_a_person_must_never_see():
    page = (
        '<html lang="nb"><body><button id="c">&lt;built-in method clear of dict object at 0x7f&gt;'
        '</button><p title="None">x</p><p>%(n)s left</p><p>consent.participate</p>'
        "<script>const a = {{x}};</script><p>notes.csv, e.g. here</p>"
        '<p lang="en">Sign with a finger or a stylus in the box.</p>'
        "<p>Sign with a finger or a stylus in the box.</p></body></html>"
    )
    found = problems_on(page, "nb")
    assert [f.split(":")[0] for f in found] == [
        "a Python object",
        "None/Undefined",
        "an unformatted placeholder",
        "a raw key",
        "English on an nb page",
    ]


def _put_in_state(app, client, world, state: str) -> dict[str, str]:
    """Take the world's interview pa (peer_a, nb) and pa2 (peer_a2, en) to a state."""
    iids = {"pa": world.interviews["pa"], "pa2": world.interviews["pa2"]}
    if state == "planned":
        return iids
    if state == "consenting":
        for key, user in (("pa", "peer_a"), ("pa2", "peer_a2")):
            client.post("/login", data={"username": user, "password": PASSWORD})
            start_interview(client, iids[key])
            client.post("/logout")
        return iids
    iid = consented_interview(client, world)
    with app.app_context():
        theme = db.session.scalars(select(Theme).order_by(Theme.id)).first()
        theme_id = theme.id
    page = client.get(f"/interviews/{iid}/section/0").text
    _new_id, fields = new_note_on_page(page, "context.services")
    client.post(
        f"/interviews/{iid}/section/0",
        data={
            **fields,
            "new-context.services-text": "The team listens.",
            "new-context.services-polarity": "promotes",
            "new-context.services-theme": str(theme_id),
            "go": "stay",
        },
    )
    if state == "paused":
        client.post(f"/interviews/{iid}/pause")
    elif state == "completed":
        client.post(f"/interviews/{iid}/finish")
    elif state == "stopped":
        client.post(f"/interviews/{iid}/stop", data={"reason": "practical", "comment": ""})
    client.post("/logout")
    with app.app_context():
        assert db.session.get(Interview, iid).status == state
    return iids


def _values(app, world, iids) -> dict[str, list]:
    """Real values for every URL parameter (a new parameter fails here until it has some)."""
    with app.app_context():
        # a recording of pa's interview, with a note on its timeline (committed first: a commit
        # leaves the rows read below expired)
        recording = make_recording(world.interviews["pa"], [b"sound"])
        note_in_recording(world.interviews["pa"], recording, 1_000, "Ord", "context.services")
        guide = db.session.scalars(select(GuideVersion)).first()
        form = db.session.scalars(select(ConsentFormVersion)).first()
        sections = len(guide_of(guide).sections)
        theme = db.session.scalars(select(Theme).order_by(Theme.id)).first()
        return {
            "recording_id": [recording],
            "interview_id": list(iids.values()),
            "index": sorted({0, sections - 1}),
            "participant_id": [world.participants["pa"]],
            "code": ["A"],
            "case_code": ["A"],
            "theme_id": [theme.id],
            "key": [guide.key, form.key],
            "version": [guide.version],
        }


def _urls(app, values) -> list[tuple[str, str]]:
    """Every GET route of the app with its parameters filled: (endpoint, url)."""
    out = []
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or NOT_PAGES.search(rule.rule):
            continue
        missing = [a for a in rule.arguments if a not in values]
        assert not missing, f"{rule.rule}: give the test real values for {missing}"
        combos = [{}]
        for arg in sorted(rule.arguments):
            combos = [{**c, arg: v} for c in combos for v in values[arg]]
        with app.test_request_context():
            out += [(rule.endpoint, url_for(rule.endpoint, **combo)) for combo in combos]
    return sorted(set(out))


def _client_as(app, username):
    client = app.test_client()
    if username:
        answer = client.post("/login", data={"username": username, "password": PASSWORD})
        assert answer.status_code == 302, username
    return client


def _check_pages(app, urls, headers=None, roles=ROLES) -> tuple[list[str], int]:
    """Open each page as each role in each language (following redirects); return what is amiss
    and how many pages were read."""
    failures, seen = [], 0
    for username in roles:
        client = _client_as(app, username)
        for lang in LANGS:
            for _endpoint, url in urls:
                sep = "&" if "?" in url else "?"
                answer = client.get(f"{url}{sep}lang={lang}", headers=headers or {})
                for _hop in range(3):
                    if answer.status_code not in (301, 302, 303, 307, 308):
                        break
                    answer = client.get(answer.headers["Location"], headers=headers or {})
                if answer.mimetype != "text/html":
                    # a file or data (health check, API), not a page a person reads; a streamed
                    # download holds its request open until it is read or closed, as a server does
                    answer.close()
                    continue
                seen += 1
                for problem in problems_on(answer.get_data(as_text=True), lang):
                    failures.append(f"{username or 'anonymous'} {lang} {url}: {problem}")
    return failures, seen


@pytest.mark.parametrize("state", STATES)
def test_every_page_reads_as_words_in_every_state(app, client, world, state):
    iids = _put_in_state(app, client, world, state)
    urls = _urls(app, _values(app, world, iids))
    interview_urls = [(e, u) for e, u in urls if any(iid in u for iid in iids.values())]
    if state == "in_progress":
        checked = urls  # the pages outside an interview: once, with an interview under way
    else:
        checked = interview_urls
    failures, seen = _check_pages(app, checked)
    # the tablet keeps a copy of each interview page whatever the state: those read right too
    copies, seen_copies = _check_pages(
        app, interview_urls, headers={"X-Offline-Copy": "1"}, roles=("peer_a", "peer_a2")
    )
    assert seen > 20 and seen_copies > 20
    problems = sorted(set(failures + copies))
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)


def test_the_consent_page_is_among_the_pages_checked(app, client, world):
    """The page where code once showed (the Clear signature button) is rendered and read."""
    iids = _put_in_state(app, client, world, "consenting")
    urls = _urls(app, _values(app, world, iids))
    assert ("interviews.consent", f"/interviews/{iids['pa']}/consent") in urls
    peer = _client_as(app, "peer_a")
    for lang in LANGS:
        page = peer.get(f"/interviews/{iids['pa']}/consent?lang={lang}")
        assert page.status_code == 200
        # the button speaks the interview's language (nb for this participant)
        assert ">Fjern underskriften</button>" in page.text
        assert problems_on(page.text, lang) == []
        # and the page that answers a form with nothing filled in reads right too
        refused = peer.post(f"/interviews/{iids['pa']}/consent?lang={lang}", data={})
        assert refused.status_code == 400
        assert 'class="error-summary"' in refused.text
        assert problems_on(refused.text, lang) == []


# -- the pages that answer a form sent with what it cannot take --------------------------------

# where a page shows what is amiss: a field's list, a banner, the consent summary
ERROR_SHOWN = re.compile(r'class="errors"|class="banner error|class="error-summary"|flash-error')
ERROR_ITEMS = re.compile(r'<ul class="errors"[^>]*>(.*?)</ul>', re.S)


def _error_words(html: str) -> list[str]:
    """The words of each field's error list on a page."""
    return [
        " ".join(re.sub(r"<[^>]+>", " ", item).split())
        for block in ERROR_ITEMS.findall(html)
        for item in re.findall(r"<li>(.*?)</li>", block, re.S)
    ]


def _refused_forms(app, client, world) -> list[tuple[str, str, dict, tuple[int, ...]]]:
    """Every form of the app sent with input it refuses: (user, url, data, statuses)."""
    planned = world.interviews["pa2"]  # peer_a2's interview, not begun
    running = consented_interview(client, world)  # peer_a's, under way
    _new_id, note_fields = new_note_on_page(
        client.get(f"/interviews/{running}/section/0").text, "context.services"
    )
    client.post("/logout")
    stopped = world.interviews["pb"]  # peer_b's, stopped before it began
    client.post("/login", data={"username": "peer_b", "password": PASSWORD})
    client.post(f"/interviews/{stopped}/stop", data={"reason": "practical", "comment": ""})
    client.post("/logout")
    with app.app_context():
        theme_id = db.session.scalars(select(Theme).order_by(Theme.id)).first().id
    pa, pa2 = world.participants["pa"], world.participants["pa2"]
    return [
        (None, "/login", {}, (400,)),
        (None, "/login", {"username": "peer_a", "password": "wrong"}, (401,)),
        ("peer_a2", f"/interviews/{planned}/capacity", {"minutes": "5"}, (400,)),
        ("peer_a2", f"/interviews/{planned}/capacity", {"minutes": "many"}, (400,)),
        ("peer_a2", f"/interviews/{planned}/reschedule", {"reason": "nope"}, (400,)),
        (
            "peer_a2",
            f"/interviews/{planned}/reschedule",
            {"reason": "practical", "day": "2026-11-23"},
            (400,),
        ),
        (
            "peer_a2",
            f"/interviews/{planned}/reschedule",
            {"reason": "practical", "day": "23.11.2026", "at": "half past one"},
            (400,),
        ),
        ("peer_a2", f"/interviews/{planned}/stop", {"reason": ""}, (400,)),
        (
            "peer_a",
            f"/interviews/{running}/stop",
            {"reason": "other", "comment": "x" * 2001},
            (400,),
        ),
        ("peer_a", f"/interviews/{running}/distress/stage-2", {"comment": "x" * 2001}, (400,)),
        (
            "peer_a",
            f"/interviews/{running}/section/0",
            {**note_fields, "new-context.services-text": "x" * 20001},
            (400,),
        ),
        ("peer_b", f"/interviews/{stopped}/debrief", {"reflection": "Tungt."}, (400,)),
        ("peer_b", f"/interviews/{stopped}/debrief", {"wellbeing": "9"}, (400,)),
        (
            "coord_a",
            "/participants/new",
            {"preferred_language": "xx", "phone": "call me", "name": "y" * 201},
            (400,),
        ),
        ("coord_a", f"/participants/{pa}/interviews", {"plan-day": "soon"}, (400,)),
        (
            "coord_a",
            f"/participants/{pa}/interviews",
            {"plan-day": "1999-01-01", "plan-at": "25:00", "plan-place_kind": "moon"},
            (400,),
        ),
        ("coord_a", f"/participants/{pa}/interviewers", {}, (400,)),
        ("coord_a", f"/participants/{pa}/withdraw", {"withdrawn_on": "yesterday"}, (400,)),
        ("coord_a", f"/participants/{pa2}/withdraw", {"withdrawn_on": "2099-01-01"}, (400,)),
        ("coord_a", "/desk/themes/", {"add-name_nb": "", "add-name_en": ""}, (400,)),
        ("coord_a", f"/desk/themes/{theme_id}", {f"t{theme_id}-name_nb": "z" * 201}, (400,)),
        ("coord_a", "/desk/rescue/", {}, (400,)),
    ]


def test_every_form_refusing_its_input_reads_as_words(app, client, world):
    """Each form sent with what it refuses answers with its error page, in words, nb and en."""
    failures = []
    for username, url, data, statuses in _refused_forms(app, client, world):
        shown = {}
        for lang in LANGS:
            answer = _client_as(app, username).post(f"{url}?lang={lang}", data=data)
            where = f"{username or 'anonymous'} {lang} POST {url} {sorted(data)}"
            if answer.status_code not in statuses or answer.mimetype != "text/html":
                failures.append(f"{where}: answered {answer.status_code} {answer.mimetype}")
                continue
            html = answer.get_data(as_text=True)
            if not ERROR_SHOWN.search(html):
                failures.append(f"{where}: no error is shown")
            failures += [f"{where}: {p}" for p in problems_on(html, lang)]
            shown[lang] = _error_words(html)
        # an error in English on the nb page: a message the catalogue or WTForms left untold
        if len(shown) == 2:
            english = set(shown["en"])
            failures += [
                f"nb POST {url}: the English error {e!r}"
                for e in shown["nb"]
                if e in english and re.search(r"[A-Za-z]{3}", e)
            ]
    assert not failures, f"{len(failures)} problems:\n" + "\n".join(failures)


def test_the_identity_page_reads_as_words(app, world):
    """The identity look-up answers a POST only, so the GET sweep never reaches it."""
    coordinator = _client_as(app, "coord_a")
    # pa has a name and no phone; pa2 has no identity entry at all
    for key, shown in (("pa", "Test Person"), ("pa2", None)):
        for lang in LANGS:
            url = f"/participants/{world.participants[key]}/identity?lang={lang}"
            answer = coordinator.post(url)
            assert answer.status_code == 200, url
            html = answer.get_data(as_text=True)
            assert 'class="facts"' in html if shown else 'class="facts"' not in html
            assert shown is None or shown in html
            assert problems_on(html, lang) == [], url


def _ended_interviews(app, client, world) -> list[str]:
    """pa stopped and pa2 finished, each with a note, events and a debrief; return their ids."""
    with app.app_context():
        theme_id = db.session.scalars(select(Theme).order_by(Theme.id)).first().id
    ended = []
    for username, key in (("peer_a", "pa"), ("peer_a2", "pa2")):
        iid = consented_interview(client, world, username=username, key=key)
        page = client.get(f"/interviews/{iid}/section/0").text
        _new_id, fields = new_note_on_page(page, "context.services")
        client.post(
            f"/interviews/{iid}/section/0",
            data={
                **fields,
                "new-context.services-text": "The team listens.",
                "new-context.services-polarity": "promotes",
                "new-context.services-theme": str(theme_id),
                "new-context.services-quote": "1",
                "go": "stay",
            },
        )
        client.post(f"/interviews/{iid}/pause")
        client.post(f"/interviews/{iid}/resume")
        client.post(f"/interviews/{iid}/check-in")
        if key == "pa":
            client.post(
                f"/interviews/{iid}/stop", data={"reason": "participant_wish", "comment": "Sliten."}
            )
        else:
            client.post(f"/interviews/{iid}/finish")
        client.post(
            f"/interviews/{iid}/debrief",
            data={"wellbeing": "4", "reflection": "A good talk.", "wants_debrief_talk": "y"},
        )
        client.post("/logout")
        ended.append(iid)
    with app.app_context():
        assert [db.session.get(Interview, i).status for i in ended] == ["stopped", "completed"]
    return ended


def test_every_document_reads_as_words_before_it_becomes_a_pdf(app, client, world, monkeypatch):
    """The HTML each printable document is made from holds no code, in nb and en."""
    import weasyprint

    from interview.documents import render

    fed: list[str] = []

    class Capture:
        """Keep the HTML the renderer hands to WeasyPrint; make no PDF of it."""

        def __init__(self, string, **_kwargs):
            fed.append(string)

        def write_pdf(self, **_kwargs):
            return b"%PDF-1.7 not rendered"

    monkeypatch.setattr(render.weasyprint, "HTML", Capture)
    assert weasyprint.HTML is Capture
    rendered: set[str] = set()
    original = document_views.render_pdf

    def watched(template, *args, **kwargs):
        rendered.add(template)
        return original(template, *args, **kwargs)

    monkeypatch.setattr(document_views, "render_pdf", watched)
    monkeypatch.setattr(consent_record, "render_pdf", watched)
    ended = _ended_interviews(app, client, world)
    values = _values(app, world, {})
    guide_key, form_key = values["key"]
    with app.app_context():
        form_version = db.session.scalars(select(ConsentFormVersion)).first().version
    urls = [
        f"/guides/{guide_key}/{values['version'][0]}/{{lang}}.pdf",
        f"/consent-forms/{form_key}/{form_version}/{{lang}}.pdf",
        *(f"/desk/interviews/{iid}/record/{{lang}}.pdf" for iid in ended),
        "/desk/report/{lang}.pdf",
        "/desk/cases/A/report/{lang}.pdf",
    ]
    coordinator = _client_as(app, "coord_a")
    failures = []
    for url in urls:
        for lang in LANGS:
            fed.clear()
            answer = coordinator.get(url.format(lang=lang))
            assert answer.status_code == 200, url
            assert len(fed) == 1, f"{url}: {len(fed)} documents rendered"
            assert f'lang="{lang}"' in fed[0]
            failures += [f"{url.format(lang=lang)}: {p}" for p in problems_on(fed[0], lang)]
    # the record of each consent, made when the consent reached the store, in its language
    with app.test_request_context():
        consents = list(db.session.scalars(select(Consent).where(Consent.kind == "consent")))
        for consent in consents:
            fed.clear()
            consent_record.render_record(db.session, consent)
            assert len(fed) == 1 and f'lang="{consent.language}"' in fed[0]
            failures += [f"consent record: {p}" for p in problems_on(fed[0], consent.language)]
        assert {c.language for c in consents} == set(LANGS)
    # every document template was read: a new one fails here until a URL above makes it
    # (a partial, _name.html, is read through the documents that import it)
    folder = Path(app.root_path, app.template_folder, "documents")
    documents = {p.name for p in folder.glob("*.html") if not p.name.startswith("_")}
    assert rendered == documents - {"base.html"}
    assert not failures, f"{len(failures)} problems:\n" + "\n".join(failures)
