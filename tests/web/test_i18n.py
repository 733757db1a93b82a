"""Bilingual for real: a complete nb catalogue, language choice remembered, Oslo times."""

from datetime import datetime
from pathlib import Path

from babel.messages.pofile import read_po

from interview.web.i18n import oslo_to_utc, utc_to_oslo

PO = Path(__file__).resolve().parents[2] / "translations" / "nb" / "LC_MESSAGES" / "messages.po"


def test_nb_catalogue_is_complete_and_not_fuzzy():
    with PO.open("rb") as fh:
        catalog = read_po(fh)
    messages = [m for m in catalog if m.id]
    assert messages, "the catalogue is empty"
    untranslated = [m.id for m in messages if not m.string]
    fuzzy = [m.id for m in messages if m.fuzzy]
    assert untranslated == []
    assert fuzzy == []
    # a fuzzy header makes `pybabel compile` skip the whole catalogue
    assert catalog.fuzzy is False


def test_nb_catalogue_covers_every_message_in_the_code():
    """Extract afresh from the sources, so a new string cannot slip past an old .pot file."""
    from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir

    root = PO.parent.parent.parent.parent
    keywords = {**DEFAULT_KEYWORDS, "_l": None, "lazy_gettext": None}
    found = set()
    for sub in ("interview", "templates"):
        for _file, _line, message, _comments, _ctx in extract_from_dir(
            root / sub,
            method_map=[("**.py", "python"), ("**.html", "jinja2")],
            keywords=keywords,
        ):
            found.add(message if isinstance(message, str) else message[0])
    with PO.open("rb") as fh:
        catalog = read_po(fh)
    assert len(found) > 100
    missing = sorted(m for m in found if m not in catalog)
    assert missing == [], "run make update-translations and translate these"


def test_placeholders_survive_translation():
    with PO.open("rb") as fh:
        catalog = read_po(fh)
    import re

    for m in catalog:
        if m.id and isinstance(m.id, str):
            assert sorted(re.findall(r"%\(\w+\)[sd]", m.id)) == sorted(
                re.findall(r"%\(\w+\)[sd]", m.string)
            ), m.id


def test_language_choice_is_remembered(client, auth, world):
    auth.login("peer_a")
    assert '<html lang="nb">' in client.get("/interviews/").text
    assert '<html lang="en">' in client.get("/interviews/?lang=en").text
    page = client.get("/interviews/")
    assert '<html lang="en">' in page.text
    assert "My interviews" in page.text
    assert "Mine intervjuer" in client.get("/interviews/?lang=nb").text


def test_unknown_language_is_ignored(client):
    page = client.get("/login?lang=xx")
    assert page.status_code == 200
    assert '<html lang="nb">' in page.text


def test_language_follows_the_user_to_a_new_session(app, world):
    first = app.test_client()
    first.post("/login", data={"username": "peer_a", "password": "correct horse battery"})
    first.get("/interviews/?lang=en")
    second = app.test_client()
    second.post("/login", data={"username": "peer_a", "password": "correct horse battery"})
    assert '<html lang="en">' in second.get("/interviews/").text


def test_times_are_stored_in_utc_and_shown_in_oslo(client, auth, world, app):
    summer = oslo_to_utc(datetime(2030, 7, 1).date(), datetime(2030, 7, 1, 9, 15).time())
    assert summer == datetime(2030, 7, 1, 7, 15)
    assert utc_to_oslo(datetime(2030, 1, 1, 8, 0)).hour == 9
    auth.login("coord_a")
    client.post(
        f"/participants/{world.participants['pa']}/interviews",
        data={
            "plan-day": "2030-07-01",
            "plan-at": "09:15",
            "plan-place_kind": "home",
            "plan-language": "nb",
        },
    )
    page = client.get(f"/participants/{world.participants['pa']}?lang=nb")
    assert "1. juli 2030, 09:15" in page.text
    page = client.get(f"/participants/{world.participants['pa']}?lang=en")
    assert "Jul 1, 2030, 9:15" in page.text


def test_language_link_keeps_the_page_and_its_parameters(client, auth, world):
    auth.login("coord_a")
    page = client.get("/participants/?case=A").text
    assert 'href="/participants/?case=A&amp;lang=en"' in page


def test_when_text_matches_flask_babel_in_both_languages_across_the_year(app):
    """Lists format times with patterns parsed once: the same text as flask-babel's."""
    from datetime import datetime, timedelta

    from flask_babel import force_locale, format_date, format_time

    from interview.web.i18n import when_text

    start = datetime(2026, 1, 1, 0, 0)
    with app.test_request_context("/"):
        for lang in ("nb", "en"):
            with force_locale(lang):
                for i in range(0, 24 * 366, 7):  # every 7 hours, both DST changes included
                    moment = start + timedelta(hours=i, minutes=i % 60)
                    expected = f"{format_date(moment, 'medium')}, {format_time(moment, 'short')}"
                    assert when_text(moment) == expected
            with force_locale(lang):
                # 30 March 2026 00:30 UTC is 02:30 in Oslo, after the clocks went forward
                assert ("02:30" if lang == "nb" else "2:30") in when_text(
                    datetime(2026, 3, 30, 0, 30)
                )
