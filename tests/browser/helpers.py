"""Helpers for the browser tests: a server that can be taken down, logging in, waiting."""

import threading
import time

from sqlalchemy import select
from werkzeug.serving import make_server

from interview.store.extensions import db
from interview.store.models import Note, Participant, User
from tests.conftest import PASSWORD
from tests.helpers import give_paper_consent, new_note_on_page, start_interview

TABLET = {"width": 1024, "height": 768}
ALL_SAVED = {"nb": "Alt er lagret i saksarkivet", "en": "All saved to the case store"}


class Server:
    """The app on a fixed loopback port that can be taken down and brought back."""

    def __init__(self, app):
        self.app = app
        self.port = 0
        self._server = None
        self._thread = None

    def start(self):
        self._server = make_server("127.0.0.1", self.port, self.app, threaded=True)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self):
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._server = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"


def _watch_errors(page, errors):
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and "Failed to load resource" not in msg.text
            else None
        ),
    )


def _login(page, base, username, lang="en"):
    page.goto(f"{base}/login?lang={lang}")
    page.locator("#username").fill(username)
    page.locator("#password").fill(PASSWORD)
    page.locator("form button[type=submit]").click()
    page.wait_for_url("**/interviews/")


def _status(page) -> str:
    return page.locator("#sync-status").inner_text()


def _wait_status(page, text, timeout=20000):
    page.wait_for_function(
        "text => (document.getElementById('sync-status')?.textContent || '').includes(text)",
        arg=text,
        timeout=timeout,
    )


def _wait_saved_locally(page, timeout=10000):
    """Wait until the tablet's outbox holds the typed changes (autosave ran)."""
    page.wait_for_function(
        "() => ['offline', 'waiting', 'login'].includes("
        "document.getElementById('sync-status').dataset.state)",
        timeout=timeout,
    )


def _sign(page):
    pad = page.locator("#signature-pad")
    pad.scroll_into_view_if_needed()
    box = pad.bounding_box()
    page.mouse.move(box["x"] + 20, box["y"] + 60)
    page.mouse.down()
    for step in range(1, 15):
        page.mouse.move(box["x"] + 20 + step * 20, box["y"] + 60 + (step % 3) * 15)
    page.mouse.up()


def _started_with_note(app, client, world, text):
    """Interview pa under way with paper consent and one note by peer_a; peer_a2 joins it."""
    iid = world.interviews["pa"]
    client.post("/login", data={"username": "peer_a", "password": PASSWORD})
    start_interview(client, iid)
    give_paper_consent(client, iid)
    page = client.get(f"/interviews/{iid}/section/0").text
    new_id, fields = new_note_on_page(page, "context.services")
    client.post(
        f"/interviews/{iid}/section/0",
        data={**fields, "new-context.services-text": text, "go": "stay"},
    )
    client.post("/logout")
    with app.app_context():
        participant = db.session.get(Participant, world.participants["pa"])
        participant.interviewers.append(db.session.get(User, world.users["peer_a2"]))
        db.session.commit()
        return iid, new_id


def notes_with(app, text):
    """The notes in the store whose text is exactly `text`."""
    with app.app_context():
        db.session.expire_all()
        return [n for n in db.session.scalars(select(Note)) if n.text == text]


def until(page, expression, arg=None, timeout=20.0):
    """Evaluate a promise-returning expression until it is true.

    Playwright's wait_for_function takes a promise that resolves to false as a true answer
    and returns at once; page.evaluate waits for the promise and gives its value.
    """
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression, arg):
        assert time.monotonic() < deadline, f"still not true after {timeout} s: {expression}"
        page.wait_for_timeout(100)
