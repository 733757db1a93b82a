"""gzip for text answers, so a tablet on a weak mobile connection gets a page in few bytes.

The app compresses by itself, so the saving does not depend on how a proxy is set up (a proxy
leaves an answer that is already compressed as it is). Static files are compressed once per
version (their ETag) and kept in memory; pages and JSON are compressed per answer at a fast
level. Streamed answers (exports), PDFs, images other than SVG, partial (Range) answers and
bodies too small to gain are sent as they are.

BREACH (guessing a secret in a compressed page from its size) needs an attacker's page to make
the victim's browser send many requests with the session cookie: the session cookie is
SameSite=Lax, so such requests carry no session except top-level navigations (see
docs/deploy.md).
"""

import gzip
import re
import threading

from flask import Flask, Request, Response, request

TYPES = {
    "text/html",
    "text/css",
    "text/javascript",
    "application/javascript",
    "application/json",
    "application/manifest+json",
    "image/svg+xml",
    "text/plain",
}
MIN_BYTES = 600
PAGE_LEVEL = 6  # per answer: most of level 9's saving at a fraction of its time (0.5 ms more than
# level 5 on a 170 KB section page, 160 bytes fewer: a first visit is counted in bytes)
STATIC_LEVEL = 9  # once per file version
STATIC_KEPT = 64

# comments and indentation are for the people who read the source, not for a tablet on a
# mobile connection: the compressed form of our own scripts leaves out whole-line // comments
# and each line's indentation (none of our scripts has a string that runs over a line, where
# such a line would be text: tests/web/test_compression.py checks it), and of our style
# sheets the /* */ comments (no style sheet puts these characters in a string) and indentation
JS_COMMENT_LINE = re.compile(rb"(?m)^[ \t]*//.*\n")
CSS_COMMENT = re.compile(rb"/\*.*?\*/", re.S)
INDENT = re.compile(rb"(?m)^[ \t]+")

_static: dict[tuple[str, str], bytes] = {}
_lock = threading.Lock()


def accepts_gzip(req: Request) -> bool:
    """Return whether the client takes gzip (q=0 refuses it)."""
    return req.accept_encodings["gzip"] > 0


def compress(response: Response) -> Response:
    """Return the answer gzip-compressed where that helps and the client accepts it."""
    if (
        response.status_code != 200
        or (response.is_streamed and not response.direct_passthrough)
        or "Content-Encoding" in response.headers
        or response.mimetype not in TYPES
    ):
        return response
    response.vary.add("Accept-Encoding")
    if not accepts_gzip(request):
        return response
    etag, _weak = response.get_etag()
    if response.direct_passthrough:
        # a static file: read it (small) and keep its compressed form per version
        response.direct_passthrough = False
    key = (request.path, etag) if etag and request.endpoint == "static" else None
    body = _static.get(key) if key else None
    if body is None:
        raw = response.get_data()
        if len(raw) < MIN_BYTES:
            return response
        if key and response.mimetype == "text/javascript":
            raw = INDENT.sub(b"", JS_COMMENT_LINE.sub(b"", raw))
        elif key and response.mimetype == "text/css":
            raw = INDENT.sub(b"", CSS_COMMENT.sub(b"", raw))
        body = gzip.compress(raw, STATIC_LEVEL if key else PAGE_LEVEL, mtime=0)
        if key:
            with _lock:
                if len(_static) >= STATIC_KEPT:
                    _static.clear()
                _static[key] = body
    response.set_data(body)
    response.headers["Content-Encoding"] = "gzip"
    if etag:
        # the same version in another encoding: weak, so If-None-Match still matches it
        response.set_etag(etag, weak=True)
    return response


def init_app(app: Flask) -> None:
    """Compress every eligible answer."""
    app.after_request(compress)
