"""Real Chromium against the app served on loopback."""

import os
import threading

import pytest
from werkzeug.serving import make_server

from tests.chromium import CHROMIUM_ARGS, chromium_path


@pytest.fixture
def live_server(app, world):
    """Serve the test app on a free loopback port for the length of a test."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)


@pytest.fixture
def browser():
    """A headless Chromium; missing Chromium is a failure when REQUIRE_BROWSER=1."""
    path = chromium_path()
    if path is None:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail("Chromium is not installed but REQUIRE_BROWSER=1")
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)
        yield instance
        instance.close()


@pytest.fixture
def server(app, world):
    """The test app on a loopback port that a test may take down and bring back."""
    from tests.browser.helpers import Server

    srv = Server(app)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def started(app, client, world):
    """Interview pa under way with consent and one saved note of peer_a; peer_a2 joins it."""
    from tests.browser.helpers import _started_with_note

    return _started_with_note(app, client, world, "Første notat")
