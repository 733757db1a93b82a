"""Printable documents: every PDF is read back as text and checked against the store and guide."""

import io
import re
import shutil
import uuid
from pathlib import Path

import pypdf
import pytest
from sqlalchemy import select

from interview.documents import render as documents
from interview.documents import views as document_views
from interview.store.content import guide_of
from interview.store.extensions import db
from interview.store.identity import set_identity
from interview.store.models import (
    AuditEvent,
    ConsentFormVersion,
    GuideVersion,
    Interview,
    Participant,
    Theme,
)
from tests.helpers import CONSENT_ALL_YES, give_paper_consent, start_interview

GUIDE = "/guides/innofact-patient/1"
CONSENT = "/consent-forms/innofact-consent/1"

# the words a document prints itself (not its content), in each language
FIXED = {
    "nb": [
        "Deltakerkode",
        "Dato",
        "Medforskerens navn",
        "Oppfølgingsspørsmål",
        "Guideversjon",
        "Språk",
        "Innledning som leses høyt",
        "Publisert",
        "Prosjekt",
        "Del 1 av 6",
        "20 spørsmål, 6 deler",
    ],
    "en": [
        "Participant code",
        "Date",
        "Interviewer's name",
        "Probes",
        "Guide version",
        "Language",
        "Introduction to read out",
        "Published",
        "Study",
        "Part 1 of 6",
        "20 questions, 6 parts",
    ],
}


def squash(text: str) -> str:
    """Text without any whitespace: PDF extraction splits words at kerning and line ends."""
    return re.sub(r"\s+", "", text)


def pdf_pages(data: bytes) -> list[str]:
    """Return the text of each page of a PDF."""
    assert data.startswith(b"%PDF-"), data[:200]
    return [page.extract_text() for page in pypdf.PdfReader(io.BytesIO(data)).pages]


def pdf_fonts(data: bytes) -> set[str]:
    """Return the base names of the fonts a PDF embeds."""
    names = set()
    for page in pypdf.PdfReader(io.BytesIO(data)).pages:
        fonts = page["/Resources"].get_object().get("/Font", {})
        for ref in fonts.values():
            names.add(str(ref.get_object()["/BaseFont"]))
    return names


@pytest.fixture
def guide(app, world):
    """The parsed guide version 1."""
    with app.app_context():
        return guide_of(db.session.scalars(select(GuideVersion)).one())


@pytest.fixture
def consent_form(app, world):
    """The consent form version 1's content."""
    with app.app_context():
        return db.session.scalars(select(ConsentFormVersion)).one().content


# -- the interview guide -----------------------------------------------------------------------


@pytest.mark.parametrize("lang,other", [("nb", "en"), ("en", "nb")])
def test_guide_pdf_has_every_question_in_its_language_and_the_header_on_every_page(
    client, auth, guide, lang, other
):
    auth.login("peer_a")
    response = client.get(f"{GUIDE}/{lang}.pdf")
    assert response.status_code == 200
    assert response.mimetype == "application/pdf"
    pages = pdf_pages(response.data)
    everything = squash("\n".join(pages))
    assert len(pages) > 5

    # every question and probe of every section, in the document's language and not the other
    for section in guide.sections:
        assert squash(section.title[lang]) in everything
        for q in section.questions:
            assert squash(q.text[lang]) in everything, q.key
            assert squash(q.text[other]) not in everything, q.key
            for probe in q.probes:
                assert squash(probe[lang]) in everything
    assert squash(guide.intro[lang].split("\n\n")[0]) in everything

    # the write-in header and "page X of Y" on every page, in the document's language
    page_word, of_word = ("side", "av") if lang == "nb" else ("page", "of")
    for number, text in enumerate(pages, start=1):
        flat = squash(text)
        for label in FIXED[lang][:3]:
            assert squash(label) in flat, (number, label)
        assert f"{page_word}{number}{of_word}{len(pages)}" in flat, number
        footer = "versjon 1, publisert" if lang == "nb" else "version 1, published"
        assert squash(footer) in flat

    # the title page: study, version, date and language
    title = squash(pages[0])
    assert "INNOFACT" in title
    assert squash("1. november 2026" if lang == "nb" else "November 1, 2026") in title
    assert squash("Norsk (bokmål)" if lang == "nb" else "English") in title


@pytest.mark.parametrize("lang,other", [("nb", "en"), ("en", "nb")])
def test_guide_fixed_labels_are_never_in_the_other_language(client, auth, world, lang, other):
    auth.login("peer_a")
    text = "\n".join(pdf_pages(client.get(f"{GUIDE}/{lang}.pdf").data))
    for label in FIXED[lang]:
        assert label in text or squash(label) in squash(text), label
    for label in FIXED[other]:
        # whole words only: "Dato" must not match inside a longer word, nor "Date" in "Update"
        assert not re.search(rf"(?<!\w){re.escape(label)}(?!\w)", text), label
    english_page = "page 1 of" if lang == "nb" else "side 1 av"
    assert english_page not in text.lower()


def test_guide_pdf_uses_a_font_that_carries_norwegian_letters(client, auth, world):
    auth.login("peer_a")
    data = client.get(f"{GUIDE}/nb.pdf").data
    fonts = pdf_fonts(data)
    assert fonts and all("DejaVu" in f for f in fonts), fonts
    text = "\n".join(pdf_pages(data))
    for letter in "æøå":
        assert letter in text


@pytest.mark.parametrize("lang", ["nb", "en"])
def test_documents_are_tagged_pdfs_in_their_language_with_a_title(client, auth, world, ended, lang):
    auth.login("coord_a")
    for url in (
        f"{GUIDE}/{lang}.pdf",
        f"{CONSENT}/{lang}.pdf",
        f"/desk/interviews/{ended}/record/{lang}.pdf",
        f"/desk/report/{lang}.pdf",
    ):
        reader = pypdf.PdfReader(io.BytesIO(client.get(url).data))
        root = reader.trailer["/Root"]
        assert root["/Lang"] == lang, url
        assert bool(root["/MarkInfo"]["/Marked"]), url
        assert "/StructTreeRoot" in root, url
        assert reader.metadata.title, url


def test_guide_pdf_is_cached_and_the_second_request_renders_nothing(
    app, client, auth, world, monkeypatch
):
    auth.login("peer_a")
    first = client.get(f"{GUIDE}/nb.pdf")
    assert first.headers["X-Document-Cache"] == "miss"
    # no research data in a guide: the browser may keep it, a shared cache may not
    assert first.headers["Cache-Control"] == "private, max-age=3600"

    def no_rendering(*args, **kwargs):
        raise AssertionError("a cached document was rendered again")

    monkeypatch.setattr(document_views, "render_pdf", no_rendering)
    second = client.get(f"{GUIDE}/nb.pdf")
    assert second.status_code == 200
    assert second.headers["X-Document-Cache"] == "hit"
    assert second.data == first.data
    # the browser may revalidate with the ETag and get a 304 without the body
    again = client.get(f"{GUIDE}/nb.pdf", headers={"If-None-Match": second.headers["ETag"]})
    assert again.status_code == 304
    with app.app_context():
        assert documents.document_cache().stats.hits == 2
        assert documents.document_cache().stats.misses == 1
    # another language is another document
    monkeypatch.undo()
    assert client.get(f"{GUIDE}/en.pdf").headers["X-Document-Cache"] == "miss"


def test_the_cache_key_follows_content_language_and_templates(app, world, monkeypatch):
    with app.test_request_context():
        cache = documents.document_cache()
        base = cache.path_for("guide", {"checksum": "a", "lang": "nb"})
        assert base == cache.path_for("guide", {"checksum": "a", "lang": "nb"})
        assert base != cache.path_for("guide", {"checksum": "b", "lang": "nb"})
        assert base != cache.path_for("guide", {"checksum": "a", "lang": "en"})
        # a release with other templates, styles or translations makes new files
        monkeypatch.setattr(documents, "document_fingerprint", lambda: "another release")
        assert cache.path_for("guide", {"checksum": "a", "lang": "nb"}) != base


def test_the_fingerprint_changes_with_a_template_the_style_a_font_or_a_translation(app, tmp_path):
    root = Path(app.root_path).parent
    templates, static, translations = tmp_path / "t", tmp_path / "s", tmp_path / "tr"
    shutil.copytree(root / "templates" / "documents", templates / "documents")
    shutil.copytree(root / "static" / "css", static / "css")
    shutil.copytree(root / "static" / "fonts", static / "fonts")
    shutil.copytree(root / "translations", translations)
    mo = translations / "nb" / "LC_MESSAGES" / "messages.mo"
    if not mo.exists():
        mo.write_bytes(b"compiled")

    def fingerprint():
        documents._fingerprint.cache_clear()
        return documents._fingerprint(str(templates), str(static), str(translations))

    seen = {fingerprint()}
    assert fingerprint() in seen  # the same files, the same fingerprint
    (templates / "documents" / "guide.html").write_text("{# changed #}", encoding="utf-8")
    seen.add(fingerprint())
    with (static / documents.STYLESHEET).open("a") as fh:
        fh.write("p { color: red; }")
    seen.add(fingerprint())
    with (static / documents.EMOJI_FONT).open("ab") as fh:
        fh.write(b"\0")
    seen.add(fingerprint())
    mo.write_bytes(mo.read_bytes() + b"x")
    seen.add(fingerprint())
    documents._fingerprint.cache_clear()
    assert len(seen) == 5


def test_real_documents_fetch_nothing_from_outside(client, auth, world, ended, monkeypatch):
    results = []
    original = document_views.render_pdf

    def watched(*args, **kwargs):
        result = original(*args, **kwargs)
        results.append((args[0], result.refused))
        return result

    monkeypatch.setattr(document_views, "render_pdf", watched)
    auth.login("coord_a")
    for url in (
        f"{GUIDE}/nb.pdf",
        f"{CONSENT}/en.pdf",
        f"/desk/interviews/{ended}/record/nb.pdf",
        "/desk/cases/A/report/en.pdf",
    ):
        assert client.get(url).status_code == 200
    assert results == [
        ("guide.html", []),
        ("consent.html", []),
        ("record.html", []),
        ("progress.html", []),
    ]


def test_the_stylesheet_reaches_the_document(app, world):
    # with documents.css the header is a running element: without it, it would be body text
    with app.test_request_context():
        html = "<html><head><link rel=stylesheet href='{}'></head><body>{}</body></html>"
        body = "<div class='running-header'>HEADER</div>" + "<p>x</p>" * 200
        fetcher = documents.StaticOnlyFetcher(app.static_folder)
        import weasyprint

        pdf = weasyprint.HTML(
            string=html.format(documents.STATIC_PREFIX + documents.STYLESHEET, body),
            base_url=documents.DOCUMENT_ORIGIN + "/",
            url_fetcher=fetcher,
        ).write_pdf()
    pages = pdf_pages(pdf)
    assert fetcher.refused == []
    assert len(pages) > 1 and all("HEADER" in p for p in pages)


def test_guide_and_consent_pdfs_need_a_login(client, world):
    for url in (f"{GUIDE}/nb.pdf", f"{CONSENT}/nb.pdf", "/guides/", GUIDE):
        response = client.get(url)
        assert response.status_code == 302
        assert "/login" in response.headers["Location"]


@pytest.mark.parametrize(
    "url,message",
    [
        ("/guides/innofact-patient/2/nb.pdf", "no interview guide with that name and version"),
        ("/guides/no-such-guide/1/nb.pdf", "no interview guide with that name and version"),
        ("/guides/innofact-patient/99999999999999999999/en.pdf", "no interview guide"),
        ("/guides/innofact-patient/1/de.pdf", "Bokmål (nb) or English (en) only"),
        ("/guides/innofact-patient/1/NB.pdf", "Bokmål (nb) or English (en) only"),
        ("/guides/innofact-patient/7", "no interview guide with that name and version"),
        ("/consent-forms/innofact-consent/3/nb.pdf", "no consent form with that name and version"),
        ("/consent-forms/innofact-consent/1/sv.pdf", "Bokmål (nb) or English (en) only"),
    ],
)
def test_unknown_versions_and_languages_are_a_404_that_says_why(client, auth, world, url, message):
    auth.login("peer_a")
    response = client.get(url + "?lang=en")
    assert response.status_code == 404
    assert message in response.get_data(as_text=True)


def test_unknown_version_message_in_bokmal(client, auth, world):
    auth.login("peer_a")
    response = client.get("/guides/innofact-patient/2/nb.pdf?lang=nb")
    assert response.status_code == 404
    assert "Det finnes ingen intervjuguide" in response.get_data(as_text=True)


# -- the blank consent form --------------------------------------------------------------------


@pytest.mark.parametrize("lang,other", [("nb", "en"), ("en", "nb")])
def test_blank_consent_form_has_every_item_signature_lines_and_page_numbers(
    client, auth, consent_form, lang, other
):
    auth.login("coord_a")
    response = client.get(f"{CONSENT}/{lang}.pdf")
    assert response.status_code == 200
    pages = pdf_pages(response.data)
    flat = squash("\n".join(pages))
    assert squash(consent_form["title"][lang]) in flat
    for item in consent_form["items"]:
        assert squash(item["text"][lang]) in flat
        assert squash(item["text"][other]) not in flat
    assert squash(consent_form["withdrawal"][lang].split("\n\n")[0]) in flat
    assert squash("innofact@example.org") in flat
    signatures = (
        ["Deltakerens underskrift", "Sted og dato", "Deltakerens navn med blokkbokstaver"]
        if lang == "nb"
        else ["Participant's signature", "Place and date", "Participant's name in capital letters"]
    )
    for words in signatures:
        assert squash(words) in flat, words
    number_label = "Nummer på papirskjemaet" if lang == "nb" else "Paper form number"
    page_word = "side{n}av{total}" if lang == "nb" else "page{n}of{total}"
    for n, text in enumerate(pages, start=1):
        assert squash(number_label) in squash(text)
        assert page_word.format(n=n, total=len(pages)) in squash(text)
        assert squash("version 1") in squash(text).lower() or "versjon1" in squash(text)


def test_consent_pdf_is_cached(client, auth, world, monkeypatch):
    auth.login("peer_a")
    assert client.get(f"{CONSENT}/en.pdf").headers["X-Document-Cache"] == "miss"
    monkeypatch.setattr(document_views, "render_pdf", lambda *a, **k: 1 / 0)
    assert client.get(f"{CONSENT}/en.pdf").headers["X-Document-Cache"] == "hit"


# -- where the documents are found -------------------------------------------------------------


def test_guides_page_lists_every_version_with_pdf_links(client, auth, world):
    auth.login("peer_a")
    html = client.get("/guides/?lang=nb").get_data(as_text=True)
    assert "Guider og skjemaer" in html
    for href in (f"{GUIDE}/nb.pdf", f"{GUIDE}/en.pdf", f"{CONSENT}/nb.pdf", f"{CONSENT}/en.pdf"):
        assert f'href="{href}"' in html
    assert f'href="{GUIDE}"' in html
    # every page's menu leads here
    assert 'href="/guides/"' in client.get("/interviews/").get_data(as_text=True)


def test_guide_page_shows_the_whole_guide_in_the_ui_language(client, auth, guide):
    auth.login("peer_a")
    nb = client.get(f"{GUIDE}?lang=nb").get_data(as_text=True)
    en = client.get(f"{GUIDE}?lang=en").get_data(as_text=True)
    for section in guide.sections:
        for q in section.questions:
            assert _html_text(q.text["nb"]) in nb
            assert _html_text(q.text["en"]) in en
    assert "Oppfølgingsspørsmål" in nb and "Probes" in en


def _html_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("'", "&#39;").replace('"', "&#34;")


def test_interview_page_links_the_guide_and_consent_form_in_the_interview_language(
    client, auth, world
):
    auth.login("peer_a2")  # pa2's interview is in English
    html = client.get(f"/interviews/{world.interviews['pa2']}?lang=nb").get_data(as_text=True)
    assert f'href="{GUIDE}/en.pdf"' in html
    assert f'href="{CONSENT}/en.pdf"' in html
    # a peer never gets the archive record link
    assert "/record/" not in html


# -- the fetcher -------------------------------------------------------------------------------


def test_renderer_fetches_only_the_apps_static_files(app, world):
    html = """<html><head>
      <link rel="stylesheet" href="https://documents.fact-interview.invalid/static/css/documents.css">
      <link rel="stylesheet" href="https://fonts.example.org/font.css">
      </head><body><p>Hei</p>
      <img src="http://127.0.0.1:9/tracker.png">
      <img src="file:///etc/passwd">
      <img src="https://documents.fact-interview.invalid/static/../interview/config.py">
      <img src="https://documents.fact-interview.invalid/static/icons/icon.svg">
      </body></html>"""
    with app.test_request_context():
        fetcher = documents.StaticOnlyFetcher(app.static_folder)
        import weasyprint

        pdf = weasyprint.HTML(
            string=html, base_url=documents.DOCUMENT_ORIGIN + "/", url_fetcher=fetcher
        ).write_pdf()
    assert pdf.startswith(b"%PDF-")
    assert len(fetcher.refused) == 4, fetcher.refused
    assert "https://fonts.example.org/font.css" in fetcher.refused
    assert "http://127.0.0.1:9/tracker.png" in fetcher.refused
    assert "file:///etc/passwd" in fetcher.refused
    assert any(url.endswith("/interview/config.py") for url in fetcher.refused)


def test_page_counter_turns_translated_words_into_css():
    assert (
        documents.page_counter_content("side %(page)s av %(pages)s")
        == '"side " counter(page) " av " counter(pages)'
    )
    assert (
        documents.page_counter_content("%(page)s/%(pages)s") == 'counter(page) "/" counter(pages)'
    )
    assert documents.css_string('a "b" </style>') == '"a \\"b\\" \\3c /style>"'


# -- the interview record ----------------------------------------------------------------------

SERVICES = "Får hjelp med bolig – æøå, og medisiner hver uke."
COOPERATION = "Teamet samarbeider godt med NAV når noen ringer."
REFLECTION = "Tungt tema, men en god samtale."
STOP_COMMENT = "Deltakeren ble sliten etter en time."


@pytest.fixture
def ended(app, client, auth, world):
    """Interview pa (case A, Bokmål) run through the peer's real forms and finished."""
    iid = world.interviews["pa"]
    with app.app_context():
        set_identity(world.participants["pa"], "Test Person", "98765432")
        db.session.commit()
    auth.login("peer_a")
    assert start_interview(client, iid).status_code == 302
    assert give_paper_consent(client, iid, number="PF-77").status_code == 302
    with app.app_context():
        themes = {t.key: t.id for t in db.session.scalars(select(Theme))}
    first = client.post(
        f"/interviews/{iid}/section/0",
        data={
            "new-context.services-id": str(uuid.uuid4()),
            "new-context.services-text": SERVICES,
            "new-context.services-polarity": "promotes",
            "new-context.services-theme": [str(themes["housing"])],
            "new-context.services-quote": "1",
            "go": "stay",
        },
    )
    assert first.status_code == 302
    second = client.post(
        f"/interviews/{iid}/section/1",
        data={
            "new-promotes.cooperation-id": str(uuid.uuid4()),
            "new-promotes.cooperation-text": COOPERATION,
            "new-promotes.cooperation-polarity": "inhibits",
            "go": "stay",
        },
    )
    assert second.status_code == 302
    assert client.post(f"/interviews/{iid}/pause").status_code == 302
    assert client.post(f"/interviews/{iid}/resume").status_code == 302
    stop = client.post(
        f"/interviews/{iid}/stop", data={"reason": "participant_wish", "comment": STOP_COMMENT}
    )
    assert stop.status_code == 302
    debrief = client.post(
        f"/interviews/{iid}/debrief",
        data={"wellbeing": "4", "reflection": REFLECTION, "wants_debrief_talk": "y"},
    )
    assert debrief.status_code == 302
    auth.logout()
    return iid


def _record(iid: str, lang: str) -> str:
    return f"/desk/interviews/{iid}/record/{lang}.pdf"


def test_interview_record_holds_consent_notes_events_and_debrief(app, client, auth, world, ended):
    auth.login("coord_a")
    response = client.get(_record(ended, "nb"))
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    pages = pdf_pages(response.data)
    flat = squash("\n".join(pages))
    with app.app_context():
        code = db.session.get(Participant, world.participants["pa"]).code
    for words in (
        "Intervjureferat",
        code,
        SERVICES,
        COOPERATION,
        REFLECTION,
        STOP_COMMENT,
        "Fremmer",  # polarity of the first note
        "Hemmer",
        "Bolig",  # its theme
        "Mulig sitat",
        "Nummer på papirskjemaet PF-77",
        "På pause",
        "Gjenopptatt",
        "Stoppet",
        "Deltakeren ville stoppe",
        "Bra",  # wellbeing 4
        "Kan kontaktes igjen",
    ):
        assert squash(words) in flat, words
    # each note comes after its own question
    with app.app_context():
        guide = guide_of(db.session.get(Interview, ended).guide_version)
    q1 = squash(guide.question("context.services").text["nb"])
    q2 = squash(guide.question("promotes.cooperation").text["nb"])
    assert flat.index(q1) < flat.index(squash(SERVICES)) < flat.index(q2)
    assert flat.index(q2) < flat.index(squash(COOPERATION))
    # identity data never: the registered name and phone are in the identity store only
    assert "TestPerson" not in flat
    assert "98765432" not in flat
    for n, text in enumerate(pages, start=1):
        assert f"side{n}av{len(pages)}" in squash(text)
        assert squash(code) in squash(text)


def test_interview_record_is_audited(app, client, auth, world, ended):
    auth.login("coord_a")
    assert client.get(_record(ended, "en")).status_code == 200
    with app.app_context():
        events = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "interview_record_printed")
        ).all()
        assert len(events) == 1
        assert events[0].object_id == ended
        assert events[0].detail == {"language": "en", "notes": 2}
        assert events[0].user_id == world.users["coord_a"]


def test_interview_record_in_english_has_english_labels(client, auth, world, ended):
    auth.login("admin")
    flat = squash("\n".join(pdf_pages(client.get(_record(ended, "en")).data)))
    for words in ("Interview record", "Paper form number PF-77", "Promotes", "Paused", "page 1 of"):
        assert squash(words) in flat, words
    assert "Intervjureferat" not in flat


@pytest.mark.parametrize(
    "user,status",
    [("peer_a", 403), ("peer_b", 403), ("coord_b", 404), ("coord_a", 200), ("admin", 200)],
)
def test_interview_record_access(client, auth, world, ended, user, status):
    auth.login(user)
    assert client.get(_record(ended, "nb")).status_code == status


def test_interview_record_needs_login(client, world, ended):
    response = client.get(_record(ended, "nb"))
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_interview_record_of_a_running_or_withdrawn_interview(app, client, auth, world, ended):
    auth.login("coord_a")
    running = client.get(_record(world.interviews["pa2"], "nb") + "?lang=en")
    assert running.status_code == 409
    assert "once the interview has ended" in running.get_data(as_text=True)
    assert client.get(_record(uuid.uuid4(), "nb")).status_code == 404
    assert client.get(_record(ended, "fr")).status_code == 404
    with app.app_context():
        db.session.get(Participant, world.participants["pa"]).status = "withdrawn"
        db.session.commit()
    assert client.get(_record(ended, "nb")).status_code == 404
    with app.app_context():
        assert not db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "interview_record_printed")
        ).all()


def test_coordinator_pages_link_the_record(client, auth, world, ended):
    auth.login("coord_a")
    detail = client.get(f"/participants/{world.participants['pa']}").get_data(as_text=True)
    assert f'href="{_record(ended, "nb")}"' in detail
    overview = client.get(f"/interviews/{ended}").get_data(as_text=True)
    assert f'href="{_record(ended, "nb")}"' in overview


# -- the progress report -----------------------------------------------------------------------


def test_progress_report_for_all_teams_and_one_team(app, client, auth, world, ended):
    auth.login("admin")
    response = client.get("/desk/report/en.pdf")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    pages = pdf_pages(response.data)
    flat = squash("\n".join(pages))
    for words in (
        "Progress per FACT team",
        "Participants by status",
        "Interviews by status",
        "Consent items given",
        "Per team",
        "peer_a",  # interviews per interviewer
    ):
        assert squash(words) in flat, words
    for n, text in enumerate(pages, start=1):
        assert f"page{n}of{len(pages)}" in squash(text)

    auth.logout()
    auth.login("coord_a")
    nb = squash("\n".join(pdf_pages(client.get("/desk/cases/A/report/nb.pdf").data)))
    assert squash("Deltakere etter status") in nb
    assert squash("Intervjuer etter status") in nb
    assert "Progressper" not in nb and "Participantsbystatus" not in nb
    with app.app_context():
        printed = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "progress_report_printed")
        ).all()
        assert [(e.object_id, e.detail["language"]) for e in printed] == [
            (None, "en"),
            ("A", "nb"),
        ]


def test_progress_report_counts_match_the_store(app, client, auth, world, ended):
    auth.login("coord_a")
    flat = squash("\n".join(pdf_pages(client.get("/desk/cases/A/report/en.pdf").data)))
    # case A: pa consented (its interview was stopped), pa2 only invited
    # the withdrawn are not counted: said beside the table, never a row inside its total
    assert "StatusNumberInvited1Consented1Interviewed0Total2" in flat
    assert "0participantshavewithdrawn,with0interviews." in flat
    assert "StatusNumberPlanned1Inprogress0Paused0Completed0Stopped1Total2" in flat
    # per interviewer: peer_a stopped one, peer_a2 has one planned
    assert "peer_a000011" in flat and "peer_a2100001" in flat


@pytest.mark.parametrize(
    "user,url,status",
    [
        ("peer_a", "/desk/report/nb.pdf", 403),
        ("peer_a", "/desk/cases/A/report/nb.pdf", 403),
        ("coord_b", "/desk/cases/A/report/nb.pdf", 404),
        ("coord_a", "/desk/cases/Z/report/nb.pdf", 404),
        ("coord_a", "/desk/report/xx.pdf", 404),
    ],
)
def test_progress_report_access(client, auth, world, user, url, status):
    auth.login(user)
    assert client.get(url).status_code == status


def test_progress_page_links_the_report(client, auth, world):
    auth.login("coord_a")
    html = client.get("/desk/").get_data(as_text=True)
    assert 'href="/desk/report/nb.pdf"' in html and 'href="/desk/report/en.pdf"' in html
    case = client.get("/desk/cases/A").get_data(as_text=True)
    assert 'href="/desk/cases/A/report/en.pdf"' in case


def test_consent_answers_in_the_record_are_the_stored_ones(app, client, auth, world, ended):
    auth.login("coord_a")
    text = "\n".join(pdf_pages(client.get(_record(ended, "en")).data))
    # CONSENT_ALL_YES says no to audio recording and yes to the rest
    assert CONSENT_ALL_YES["item-audio"] == "no"
    assert re.search(r"Audio recording\s*No", text)
    assert re.search(r"Take part\s*Yes", text)


def test_an_unwritable_cache_folder_still_gives_the_pdf(app, client, auth, world, tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder should be")
    with app.app_context():
        documents.document_cache().directory = blocked / "documents"
    auth.login("peer_a")
    response = client.get(f"{GUIDE}/en.pdf")
    assert response.status_code == 200
    assert squash("Interview guide") in squash(pdf_pages(response.data)[0])
    assert response.headers["X-Document-Cache"] == "miss"


def test_two_requests_at_once_render_a_document_once(app, world):
    import threading

    renders = []
    barrier = threading.Barrier(4)

    def render():
        renders.append(1)
        return b"%PDF-1.7 fake"

    results = []

    def ask():
        with app.app_context():
            barrier.wait()
            results.append(documents.document_cache().get_or_render("x", {"n": 1}, render))

    with app.app_context():
        documents.document_cache()  # the cache exists before the threads ask
    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(renders) == 1
    assert sorted(hit for _, _, hit in results) == [False, True, True, True]
