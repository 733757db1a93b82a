"""Printable documents: HTML from Jinja templates turned into PDF by WeasyPrint.

Rendering never reaches the network: the URL fetcher serves the app's own static files
and refuses everything else. Documents that depend only on versioned content (guides,
blank consent forms) are cached on disk by a key built from that content, the document
language and the templates, styles and translations that shape them.
"""

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote, urlsplit

import weasyprint
from flask import current_app, render_template
from flask_babel import force_locale
from flask_babel import gettext as _
from markupsafe import Markup
from weasyprint.urls import URLFetcher, URLFetcherResponse

from interview.web.forms import one_kind_of_line_break

# the origin the document HTML is resolved against; it exists only inside the fetcher
DOCUMENT_ORIGIN = "https://documents.fact-interview.invalid"
STATIC_PREFIX = DOCUMENT_ORIGIN + "/static/"
# images a document carries from the store (a signature), handed to the fetcher by name
INLINE_PREFIX = DOCUMENT_ORIGIN + "/inline/"
# fonts that carry æ, ø and å; DejaVu is on every Debian machine, the rest are fallbacks. Noto
# Emoji ships with the app (@font-face in the stylesheet): it comes after the text fonts so that
# letters and digits never come from it, and before the system's fonts, which may have no emoji
FONT_STACK = '"DejaVu Sans", "Noto Sans", "Liberation Sans", Arial, "Noto Emoji", sans-serif'
EMOJI_FONT = "fonts/NotoEmoji-Regular.ttf"
TEMPLATE_DIR = "documents"
PDF_VARIANT = "pdf/ua-1"
# raise when the rendering code changes what a cached document looks like
DOCUMENT_FORMAT = 3
STYLESHEET = "css/documents.css"
STALE_AFTER_SECONDS = 24 * 3600

log = logging.getLogger(__name__)


class StaticOnlyFetcher(URLFetcher):
    """Serve the app's static files to WeasyPrint; refuse every other address."""

    def __init__(self, static_folder: str, inline: dict[str, bytes] | None = None):
        super().__init__(fail_on_errors=False)
        self._root = Path(static_folder).resolve()
        self._inline = inline or {}
        self.refused: list[str] = []

    def fetch(self, url, headers=None):
        """Return a static file for the document origin's /static/ paths, refuse the rest."""
        if url.startswith(INLINE_PREFIX) and url[len(INLINE_PREFIX) :] in self._inline:
            data = self._inline[url[len(INLINE_PREFIX) :]]
            return URLFetcherResponse(url, data, {"Content-Type": "image/png"})
        if url.startswith(STATIC_PREFIX):
            relative = unquote(urlsplit(url).path[len("/static/") :])
            path = (self._root / relative).resolve()
            if path.is_file() and path.is_relative_to(self._root):
                return URLFetcherResponse(url, path.read_bytes(), {"Content-Type": _mime(path)})
        # the address itself may be in the template's content: count it, do not log it
        self.refused.append(url)
        raise ValueError("the document renderer fetches nothing outside the app")


def _mime(path: Path) -> str:
    return {
        ".css": "text/css",
        ".svg": "image/svg+xml",
        ".png": "image/png",
        ".woff2": "font/woff2",
        ".ttf": "font/ttf",
    }.get(path.suffix, "application/octet-stream")


def css_string(value: str) -> Markup:
    """Quote a text as a CSS string literal, safe inside a <style> element."""
    # a block rendered by Jinja arrives HTML-escaped; a <style> element reads it raw
    plain = value.unescape() if isinstance(value, Markup) else str(value)
    escaped = (
        plain.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\a ").replace("<", "\\3c ")
    )
    return Markup(f'"{escaped}"')


def page_counter_content(pattern: str) -> Markup:
    """Turn a translated 'page %(page)s of %(pages)s' text into a CSS `content` value."""
    parts: list[str] = []
    rest = pattern
    while rest:
        at = min(
            (i for i in (rest.find("%(page)s"), rest.find("%(pages)s")) if i >= 0),
            default=-1,
        )
        if at < 0:
            parts.append(css_string(rest))
            break
        if at:
            parts.append(css_string(rest[:at]))
        if rest.startswith("%(pages)s", at):
            parts.append("counter(pages)")
            rest = rest[at + len("%(pages)s") :]
        else:
            parts.append("counter(page)")
            rest = rest[at + len("%(page)s") :]
    return Markup(" ".join(parts))


def paragraphs(text: str | None) -> list[str]:
    """Split a note into paragraphs at its blank lines; a single line break stays inside one."""
    plain = one_kind_of_line_break(str(text or ""))
    return [part.strip() for part in re.split(r"\n[ \t]*\n", plain) if part.strip()]


# the PDF structure's names for what an HTML <th scope> says
_SCOPES = {"row": "/Row", "rowgroup": "/Row", "col": "/Column", "colgroup": "/Column"}


def scope_table_headers(document, pdf) -> None:
    """Give each TH of the PDF's structure tree the scope of its <th> (PDF/UA, Matterhorn 15-003).

    WeasyPrint links data cells to their headers by ID but writes no /Scope; it keeps each
    cell's structure element on the cell's box, where this finisher finds it.
    """
    for page in document.pages:
        for box in page._page_box.descendants():
            element = getattr(box, "mark", None)
            if element is None or box.element_tag != "th" or "A" not in element:
                continue
            scope = (box.element.get("scope") or "col").lower()
            element["A"]["Scope"] = _SCOPES.get(scope, "/Column")


@dataclass
class RenderResult:
    """A rendered PDF and what the fetcher refused while making it."""

    pdf: bytes
    refused: list[str] = field(default_factory=list)


def render_pdf(
    template: str,
    lang: str,
    *,
    variant: str = PDF_VARIANT,
    inline: dict[str, bytes] | None = None,
    **context,
) -> RenderResult:
    """Render a document template in the given language and return the PDF.

    `inline` holds PNG images by name, which the template refers to as INLINE_PREFIX + name.
    """
    with force_locale(lang):
        html = render_template(
            f"{TEMPLATE_DIR}/{template}",
            doc_lang=lang,
            font_stack=Markup(FONT_STACK),
            # the counters are CSS, so the translated words are split around them
            page_counter=page_counter_content(_("page %(page)s of %(pages)s")),
            stylesheet=STATIC_PREFIX + STYLESHEET,
            inline_prefix=INLINE_PREFIX,
            **context,
        )
    fetcher = StaticOnlyFetcher(current_app.static_folder, inline)
    pdf = weasyprint.HTML(string=html, base_url=DOCUMENT_ORIGIN + "/", url_fetcher=fetcher)
    # PDF/UA: tagged, with the document's language and title, so a screen reader can read it
    result = RenderResult(
        pdf.write_pdf(pdf_variant=variant, finisher=scope_table_headers), fetcher.refused
    )
    if result.refused:
        # a count only: the addresses may come from content
        log.warning("document %s: %d outside addresses refused", template, len(result.refused))
    return result


@lru_cache(maxsize=4)
def _fingerprint(template_folder: str, static_folder: str, translations: str) -> str:
    """Hash everything that shapes a document besides its content: templates, style, words."""
    digest = hashlib.sha256(
        f"{weasyprint.__version__}|{PDF_VARIANT}|{FONT_STACK}|{DOCUMENT_FORMAT}".encode()
    )
    files = sorted(Path(template_folder, TEMPLATE_DIR).glob("*.html"))
    files += [Path(static_folder, STYLESHEET), Path(static_folder, EMOJI_FONT)]
    files += sorted(Path(translations).glob("*/LC_MESSAGES/messages.mo"))
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def document_fingerprint() -> str:
    """Return the fingerprint of this release's document templates, styles and translations."""
    app = current_app
    return _fingerprint(
        str(Path(app.root_path, app.template_folder)),
        app.static_folder,
        app.config["BABEL_TRANSLATION_DIRECTORIES"],
    )


@dataclass
class CacheStats:
    """How often the document cache answered, for tests and the benchmark."""

    hits: int = 0
    misses: int = 0


class DocumentCache:
    """PDFs on disk, named by what they are and keyed by everything that shapes them."""

    def __init__(self, directory: str):
        self.directory = Path(directory)
        self.stats = CacheStats()
        self._lock = threading.Lock()
        self._rendering: dict[str, threading.Lock] = {}

    def path_for(self, name: str, parts: dict) -> Path:
        """Return the file a document with this name and these parts is kept in."""
        key = hashlib.sha256(
            json.dumps({**parts, "fingerprint": document_fingerprint()}, sort_keys=True).encode()
        ).hexdigest()[:32]
        return self.directory / f"{name}--{key}.pdf"

    def get_or_render(self, name: str, parts: dict, render) -> tuple[bytes, str, bool]:
        """Return a document's PDF, its key and whether it came from the cache.

        Where the folder cannot be written, the fresh PDF is returned all the same: a full
        disk must never stop a peer from printing a guide.
        """
        path = self.path_for(name, parts)
        key = path.stem.rsplit("--", 1)[-1]
        cached = self._read(path)
        if cached is not None:
            self._count(hit=True)
            return cached, key, True
        with self._lock_for(path):
            # another request in this process may have rendered it while this one waited
            cached = self._read(path)
            if cached is not None:
                self._count(hit=True)
                return cached, key, True
            pdf = render()
            self._count(hit=False)
            try:
                self._keep(name, path, pdf)
            except OSError as err:
                log.warning("document cache not written (%s): serving uncached", type(err).__name__)
        return pdf, key, False

    @staticmethod
    def _read(path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except OSError:
            return None

    def _keep(self, name: str, path: Path, pdf: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        # written whole, then moved into place: a reader never sees half a PDF
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".pdf")
        with os.fdopen(fd, "wb") as fh:
            fh.write(pdf)
        os.replace(tmp, path)
        # renderings by an earlier release go after a day; a release running beside this
        # one (a rolling restart) keeps its files until then
        too_old = time.time() - STALE_AFTER_SECONDS
        for old in self.directory.glob(f"{name}--*.pdf"):
            if old != path:
                with contextlib.suppress(OSError):
                    if old.stat().st_mtime < too_old:
                        old.unlink()

    def _lock_for(self, path: Path) -> threading.Lock:
        with self._lock:
            return self._rendering.setdefault(str(path), threading.Lock())

    def _count(self, hit: bool) -> None:
        with self._lock:
            if hit:
                self.stats.hits += 1
            else:
                self.stats.misses += 1


def document_cache() -> DocumentCache:
    """Return the app's document cache."""
    return current_app.extensions["document_cache"]


def init_app(app) -> None:
    """Set up the document cache in the configured folder (the instance folder by default)."""
    directory = app.config.get("DOCUMENT_CACHE_DIR") or os.path.join(app.instance_path, "documents")
    app.extensions["document_cache"] = DocumentCache(directory)
    app.jinja_env.filters["css_string"] = css_string
    app.jinja_env.filters["paragraphs"] = paragraphs
