"""Whole pages kept per session while the store has not changed.

A peer moves between the interview list and a section of twenty questions many times in an
interview, and each of those pages used to be rendered, and compressed, anew on every load.
A page is now kept by each worker, ready compressed, for one session and one address, and sent
again as long as nothing in the store has changed since (the highest update-log and audit-log
numbers, `kept.store_version`), it is the same day in Oslo and the page is younger than
`KEPT_PAGES_SECONDS` (300). Any sync, saved form or audited action makes the next load render
afresh, so a kept page never shows less than the store holds.

What a page kept for one session holds is what that session was shown: the person's own
page, with the session's own form token (valid for the session's whole life). A page is not
kept while a message waits to be shown (a flash), for a form sent back with errors, or for
anything but a plain GET.

A page may carry one value that must differ on every load: `page_load()`, an id from which the
server derives the ids of the section page's new notes, so two loads of one page never offer
the same new note. It stands near the end of the page (`{% block tail %}`): the kept part
before it is compressed once, and each answer adds only the few bytes after it, uncompressed
(a stored deflate block), and the checksum of the whole.

What is kept is the HTML the session was shown; it is held in the worker's memory only (never
on disk), within `KEPT_PAGES_MAX_BYTES`, and forgotten with the worker (docs/data-protection.md
§3.4).
"""

import hashlib
import secrets
import struct
import threading
import time
import uuid
import zlib
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from flask import Response, current_app, g, request, session
from flask_login import current_user

from interview.store.extensions import db
from interview.store.kept import store_version
from interview.web.compression import accepts_gzip
from interview.web.i18n import today_in_oslo, ui_lang

# stands in the page for the per-load value while a page is rendered to be kept; random per
# process, so no text a person typed can be taken for it
HOLE = "kept" + secrets.token_hex(16)
LEVEL = 6
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # no name, no time, unknown OS


@dataclass
class Page:
    """One kept page: the part before its first hole, compressed, and what follows it."""

    version: tuple[int, int]
    day: object
    made_at: float
    head: bytes  # the HTML before the first hole
    head_gz: bytes  # `head` as raw deflate, ending on a byte boundary (sync flush)
    head_crc: int
    rest: list[bytes]  # the HTML between and after the holes
    whole_gz: bytes | None  # the whole gzip answer when the page has no hole

    @property
    def size(self) -> int:
        """Bytes held for this page."""
        return len(self.head) + len(self.head_gz) + sum(map(len, self.rest))


def split(html: str) -> tuple[bytes, list[bytes]]:
    """Return the page's bytes before its first hole and the pieces between the holes."""
    parts = [p.encode("utf-8") for p in html.split(HOLE)]
    return parts[0], parts[1:]


def compressed_head(head: bytes) -> bytes:
    """Return `head` as raw deflate that another block may follow."""
    packer = zlib.compressobj(LEVEL, zlib.DEFLATED, -15)
    return packer.compress(head) + packer.flush(zlib.Z_SYNC_FLUSH)


def gzip_answer(head_gz: bytes, head_crc: int, head_len: int, tail: bytes) -> bytes:
    """Return a gzip member: the compressed head, then `tail` in stored blocks, then trailer."""
    blocks = []
    for start in range(0, len(tail), 0xFFFF):
        piece = tail[start : start + 0xFFFF]
        final = start + 0xFFFF >= len(tail)
        blocks.append(
            struct.pack("<BHH", 1 if final else 0, len(piece), len(piece) ^ 0xFFFF) + piece
        )
    if not tail:
        blocks.append(b"\x03\x00")  # an empty final block
    crc = zlib.crc32(tail, head_crc)
    size = (head_len + len(tail)) & 0xFFFFFFFF
    return GZIP_HEADER + head_gz + b"".join(blocks) + struct.pack("<II", crc, size)


def make_page(html: str, version: tuple[int, int], day, now: float) -> Page:
    """Prepare a rendered page for keeping."""
    head, rest = split(html)
    head_gz = compressed_head(head)
    head_crc = zlib.crc32(head)
    page = Page(version, day, now, head, head_gz, head_crc, rest, None)
    if not rest:
        page.whole_gz = gzip_answer(head_gz, head_crc, len(head), b"")
    return page


def answer(page: Page, gzip: bool) -> Response:
    """Return the kept page as an answer, with a fresh value in each hole."""
    tail = b""
    if page.rest:
        tail = str(uuid.uuid4()).encode().join([b""] + page.rest)
    if gzip:
        body = page.whole_gz or gzip_answer(page.head_gz, page.head_crc, len(page.head), tail)
    else:
        body = page.head + tail
    response = Response(body, 200, mimetype="text/html")
    response.vary.add("Accept-Encoding")
    if gzip:
        response.headers["Content-Encoding"] = "gzip"
    return response


class KeptPages:
    """Pages kept per slot (session, address, language, ...), the oldest dropped first."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._pages: OrderedDict[Hashable, Page] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, slot: Hashable) -> Page | None:
        """Return the page kept for `slot`, if any."""
        return self._pages.get(slot)

    def put(self, slot: Hashable, page: Page, max_age: float) -> None:
        """Keep `page` for `slot` (in place of what it held), within the byte budget.

        Pages older than `max_age` go first: no page is held long after it could be sent.
        """
        with self._lock:
            old = self._pages.pop(slot, None)
            if old is not None:
                self._bytes -= old.size
            # the oldest page is first: each page is put at the end
            too_old = page.made_at - max_age
            while self._pages and next(iter(self._pages.values())).made_at <= too_old:
                self._bytes -= self._pages.popitem(last=False)[1].size
            if page.size > self.max_bytes:
                return
            self._pages[slot] = page
            self._bytes += page.size
            while self._bytes > self.max_bytes:
                self._bytes -= self._pages.popitem(last=False)[1].size

    def forget(self, user_identity: str) -> None:
        """Drop every page kept for a person's sessions (they logged out)."""
        with self._lock:
            for slot in [s for s in self._pages if s[2] == user_identity]:
                self._bytes -= self._pages.pop(slot).size

    @property
    def size(self) -> int:
        """Bytes held in all."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._pages)

    def clear(self) -> None:
        """Forget every page."""
        with self._lock:
            self._pages.clear()
            self._bytes = 0


def page_load() -> str:
    """Return this load's own id (a hole in a page rendered to be kept)."""
    if g.get("_keeping_page"):
        return HOLE
    if "_page_load" not in g:
        g._page_load = str(uuid.uuid4())
    return g._page_load


def _session_mark() -> str | None:
    # the session's form secret tells one session from another (a new login starts a new one)
    secret = session.get("csrf_token")
    if not secret:
        return None
    return hashlib.sha256(secret.encode()).hexdigest()


def kept_page(
    render: Callable[[], Any],
    max_age: float | None = None,
    version: tuple[int, int] | None = None,
) -> Any:
    """Return `render()`, or the page this session was shown for this address, if still good.

    `render` must depend only on the store, the person, the address, the language and the day.
    It returns the page's HTML, which is kept, or an answer of its own (a redirect), which is
    not. `version` is the store's version where the view has just read it (with its access
    check, access.interview_visible_or_404).
    """
    app = current_app._get_current_object()
    seconds = app.config["KEPT_PAGES_SECONDS"]
    if max_age is not None:
        seconds = min(seconds, max_age)
    mark = _session_mark()
    if (
        seconds <= 0
        or request.method not in ("GET", "HEAD")
        or not current_user.is_authenticated
        or mark is None
        or "_flashes" in session
    ):
        return render()
    pages: KeptPages = app.extensions["kept_pages"]
    slot = (
        request.endpoint,
        request.full_path,
        current_user.get_id(),
        mark,
        ui_lang(),
        request.headers.get("X-Offline-Copy") == "1",
    )
    # the version is read before the page, so a kept page is never older than its version
    if version is None:
        version = store_version(db.session)
    day = today_in_oslo()
    now = time.monotonic()
    gzip = accepts_gzip(request)
    page = pages.get(slot)
    if page is not None and page.version == version and page.day == day:
        if now - page.made_at < seconds:
            pages.hits += 1
            return answer(page, gzip)
    pages.misses += 1
    g._keeping_page = True
    try:
        html = render()
    finally:
        g._keeping_page = False
    if not isinstance(html, str):
        return html
    if "_flashes" in session:
        # the page said something meant for this load only: send it, keep nothing
        return html.replace(HOLE, page_load())
    page = make_page(html, version, day, now)
    pages.put(slot, page, app.config["KEPT_PAGES_SECONDS"])
    return answer(page, gzip)


def forget_user() -> None:
    """Drop the pages kept for the current user (at logout, or when a session ends)."""
    if current_user.is_authenticated:
        current_app.extensions["kept_pages"].forget(current_user.get_id())


def init_app(app) -> None:
    """Give the app its kept pages and templates their `page_load()`."""
    app.config.setdefault("KEPT_PAGES_SECONDS", 300)
    app.config.setdefault("KEPT_PAGES_MAX_BYTES", 16 * 2**20)
    app.extensions["kept_pages"] = KeptPages(app.config["KEPT_PAGES_MAX_BYTES"])
    app.add_template_global(page_load)
