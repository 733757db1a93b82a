"""The pages the tablet keeps for offline use: offline copies, state hooks and the manifest."""

import json
import re
from pathlib import Path

import pytest

from interview.config import ROOT
from tests.helpers import give_paper_consent, start_interview

COPY = {"X-Offline-Copy": "1"}
SCRIPTS = Path(ROOT, "static", "js")


@pytest.mark.parametrize(
    ("page", "redirect_to"),
    [
        ("section/0", "/capacity"),
        ("consent", "/capacity"),
        ("finish", ""),
        ("distress", ""),
        ("distress/stage-2", ""),
        ("debrief", ""),
    ],
)
def test_an_offline_copy_is_the_page_itself_whatever_the_state(
    client, auth, world, page, redirect_to
):
    iid = world.interviews["pa"]  # planned: the server would send the peer elsewhere
    auth.login("peer_a")
    plain = client.get(f"/interviews/{iid}/{page}")
    assert plain.status_code == 302
    assert plain.headers["Location"].endswith(f"/interviews/{iid}{redirect_to}")
    copy = client.get(f"/interviews/{iid}/{page}", headers=COPY)
    assert copy.status_code == 200
    assert f'data-interview-id="{iid}"' in copy.text
    assert 'data-status="planned"' in copy.text
    assert copy.headers["Cache-Control"] == "no-store"


def test_an_offline_copy_is_no_way_around_access(client, auth, world):
    auth.login("peer_b")
    for page in ("section/0", "consent", "debrief", ""):
        response = client.get(f"/interviews/{world.interviews['pa']}/{page}", headers=COPY)
        assert response.status_code == 404, page


def test_an_offline_copy_never_takes_a_message_meant_for_the_person(client, auth, world):
    iid = world.interviews["pa"]
    client.get("/login?lang=en")
    auth.login("peer_a")
    start_interview(client, iid)
    give_paper_consent(client, iid)  # flashes "Consent is recorded"
    copy = client.get(f"/interviews/{iid}/section/1", headers=COPY)
    # the message is looked for where pages show messages: the tablet's own words for its
    # confirmations (in the tablet-strings JSON) carry the same sentence on every page
    assert "Consent is recorded" not in _flashes(copy.text)
    page = client.get(f"/interviews/{iid}/section/0")
    assert "Consent is recorded" in _flashes(page.text)


def _flashes(html: str) -> str:
    """The text of the page's flash messages."""
    return " ".join(re.findall(r'<p class="flash [^"]*">([^<]*)</p>', html))


def test_every_state_of_the_controls_is_on_the_page_with_the_wrong_ones_hidden(client, auth, world):
    iid = world.interviews["pa"]
    auth.login("peer_a")
    start_interview(client, iid)
    give_paper_consent(client, iid)
    page = client.get(f"/interviews/{iid}/section/0").text
    pause = re.search(r'<button[^>]*value="pause"[^>]*>', page).group(0)
    resume = re.search(r'<button[^>]*value="resume"[^>]*>', page).group(0)
    assert "hidden" not in pause and 'data-show-when="in_progress"' in pause
    assert "hidden" in resume and 'data-show-when="paused"' in resume
    assert 'data-consented="1"' in page
    assert re.search(r'<div class="note"[^>]*data-new', page)  # an empty box per question
    assert 'data-key="' in page  # themes are named by key for the sync API
    client.post(f"/interviews/{iid}/pause")
    page = client.get(f"/interviews/{iid}/section/0").text
    resume = re.search(r'<button[^>]*value="resume"[^>]*>', page).group(0)
    assert "hidden" not in resume


def test_the_tablet_gets_its_words_in_the_interface_language(client, auth, world):
    auth.login("peer_a")
    for lang, waiting in (("nb", "endringer venter"), ("en", "changes waiting")):
        page = client.get(f"/interviews/?lang={lang}").text
        blob = re.search(
            r'<script type="application/json" id="tablet-strings">(.*?)</script>', page, re.S
        ).group(1)
        strings = json.loads(blob)
        assert waiting in strings["waiting"]
        assert "%(n)s" in strings["waiting"]
        assert set(strings["status"]) == {
            "planned",
            "in_progress",
            "paused",
            "completed",
            "stopped",
        }
    assert 'src="/static/js/offline.js"' in page
    assert 'id="prepare-offline"' in page


def _tablet_strings(page: str) -> dict:
    blob = re.search(
        r'<script type="application/json" id="tablet-strings">(.*?)</script>', page, re.S
    ).group(1)
    return json.loads(blob)


def test_every_counted_tablet_word_has_its_singular(client, auth, world):
    """A refused check-in once read "1 changes were refused by the case store"."""
    auth.login("peer_a")
    for lang in ("nb", "en"):
        strings = _tablet_strings(client.get(f"/interviews/?lang={lang}").text)
        counted = [k for k, v in strings.items() if isinstance(v, str) and "%(n)s" in v]
        assert "rejected" in counted
        for key in counted:
            assert f"{key}_one" in strings, f"{lang}: {key} has no singular"
            assert "%(n)s" not in strings[f"{key}_one"], key
            # the other words (the reason, the file) are in the singular too
            rest = set(re.findall(r"%\((\w+)\)s", strings[key])) - {"n"}
            assert rest == set(re.findall(r"%\((\w+)\)s", strings[f"{key}_one"])), key
    assert strings["rejected_one"] == "1 change was refused by the case store: %(reason)s"


def test_the_scripts_show_counted_words_through_count():
    """`count()` picks the singular; a counted word put through `fmt()` alone never would."""
    scripts = "\n".join(p.read_text() for p in sorted(SCRIPTS.glob("*.js")))
    plain = re.findall(r"fmt\(strings\.(\w+), \{ n:", scripts)
    assert plain == [], f"counted words shown without their singular: {plain}"
    assert 'count("rejected", 1,' in (SCRIPTS / "interview.js").read_text()


def test_the_scripts_are_not_on_pages_for_people_not_logged_in(client):
    page = client.get("/login").text
    assert "offline.js" not in page
    assert "tablet-strings" not in page


def test_the_offline_page_and_the_worker_are_served_and_kept(client, auth, world):
    assert client.get("/offline").status_code == 200
    worker = client.get("/sw.js")
    assert worker.status_code == 200
    assert worker.headers["Cache-Control"] == "no-store"  # the browser checks for a new one
    assert "fact-pages-v1" in worker.text
    auth.login("peer_a")
    manifest = client.get("/api/v1/offline").get_json()
    assert "/offline" in manifest["shell"]
    for path in manifest["shell"]:
        assert client.get(path).status_code == 200, path
    (interview,) = manifest["interviews"]
    for path in interview["pages"]:
        response = client.get(path, headers=COPY)
        assert response.status_code == 200, path


def test_the_words_of_one_page_travel_only_with_that_page(client, auth, world):
    """Preparing for offline, consent and recording words ride only with their pages (a first
    visit is counted in bytes); every other word of the tablet's scripts is on every page."""
    from interview.field.tablet import PAGE_WORDS

    iid = world.interviews["pa"]
    auth.login("peer_a")
    mine = _tablet_strings(client.get("/interviews/?lang=en").text)
    consent = _tablet_strings(client.get(f"/interviews/{iid}/consent", headers=COPY).text)
    section = _tablet_strings(client.get(f"/interviews/{iid}/section/0", headers=COPY).text)
    recording = PAGE_WORDS["recording"]
    assert PAGE_WORDS["keeping"] <= set(mine) and not PAGE_WORDS["consent"] & set(mine)
    assert PAGE_WORDS["consent"] <= set(consent) and not PAGE_WORDS["keeping"] & set(consent)
    assert not (PAGE_WORDS["keeping"] | PAGE_WORDS["consent"]) & set(section)
    # the record control's words ride only with the guide's pages, where recording happens
    assert recording <= set(section) and not recording & (set(mine) | set(consent))
    assert (
        set(mine) - PAGE_WORDS["keeping"]
        == set(section) - recording
        == set(consent) - PAGE_WORDS["consent"]
    )
    assert mine["prepare_done_one"] == "Ready offline: 1 interview."
