"""What the app compresses is what was asked for, in fewer bytes (web/compression.py)."""

import gzip
import re
from pathlib import Path

import pytest

from interview.config import ROOT
from interview.web import compression

SCRIPTS = sorted((ROOT / "static" / "js").glob("*.js"))
GZIP = {"Accept-Encoding": "gzip"}


def _unzipped(response) -> bytes:
    assert response.headers.get("Content-Encoding") == "gzip"
    assert "Accept-Encoding" in response.headers.get("Vary", "")
    return gzip.decompress(response.get_data())


def _code_lines(text: str) -> list[str]:
    """The lines that carry code: no whole-line comments, no indentation, no blank lines."""
    lines = [line.strip() for line in text.splitlines()]
    return [line for line in lines if line and not line.startswith("//")]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_a_script_keeps_every_line_of_code_and_sheds_comments_and_indentation(client, script):
    answer = client.get(f"/static/js/{script.name}", headers=GZIP)
    assert answer.status_code == 200
    sent = _unzipped(answer).decode()
    source = script.read_text(encoding="utf-8")
    assert _code_lines(sent) == _code_lines(source)
    assert not re.search(r"(?m)^[ \t]", sent), "indentation left in"
    assert not re.search(r"(?m)^//", sent), "a whole-line comment left in"
    assert len(answer.get_data()) < len(gzip.compress(source.encode(), 9))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_no_string_of_a_script_runs_over_a_line(script):
    """The stripping above would change such a string's text: none may exist."""
    for number, line in enumerate(script.read_text(encoding="utf-8").splitlines(), 1):
        code = re.sub(r"\\.", "", line)  # escaped characters are not quotes
        assert code.count("`") % 2 == 0, f"{script.name}:{number}: a template string over lines"
        assert not line.rstrip().endswith("\\"), f"{script.name}:{number}: a string over lines"


def test_a_style_sheet_sheds_comments_and_indentation(client):
    answer = client.get("/static/css/app.css", headers=GZIP)
    sent = _unzipped(answer).decode()
    source = (ROOT / "static" / "css" / "app.css").read_bytes()
    assert "/*" not in sent
    assert _code_lines(sent) == _code_lines(compression.CSS_COMMENT.sub(b"", source).decode())


def test_a_page_comes_back_exactly_as_made(client):
    plain = client.get("/login?lang=en").get_data()
    zipped = client.get("/login?lang=en", headers=GZIP)
    # the CSRF token differs per session; the rest of the page is the same, byte for byte
    token = re.compile(rb'value="[^"]{40,}"|content="[^"]{40,}"')
    assert token.sub(b"", _unzipped(zipped)) == token.sub(b"", plain)


def test_nothing_is_compressed_for_a_client_that_does_not_ask(client):
    answer = client.get("/static/js/store.js")
    assert "Content-Encoding" not in answer.headers
    assert answer.get_data() == Path(ROOT / "static" / "js" / "store.js").read_bytes()
