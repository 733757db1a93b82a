"""Response headers that keep pages private and scripts our own."""

from flask import Flask, Response, g, request
from werkzeug.middleware.proxy_fix import ProxyFix

# scripts, styles, fonts, workers and connections fall back to default-src ('self'): naming
# each again would change nothing and add bytes to every answer (a first visit has a dozen)
CSP = "; ".join(
    [
        "default-src 'self'",
        "img-src 'self' data: blob:",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ]
)


def _headers(response):
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers["X-Content-Type-Options"] = "nosniff"
    # nothing to other sites; the page's own address to this site, since Flask-WTF refuses a
    # form post over HTTPS that does not name a page of the same site as its referrer
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Frame-Options"] = "DENY"
    if request.is_secure:
        response.headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
    if request.endpoint == "static":
        # says only "show it" and the file's own name: a dozen of them on a first visit
        response.headers.pop("Content-Disposition", None)
    if not request.path.startswith("/static/") and not g.get("private_caching"):
        # Pages may carry research data: never keep them in a shared cache or the back button.
        response.headers["Cache-Control"] = "no-store"
    return response


def allow_private_caching(response: Response, seconds: int) -> None:
    """Let the browser (never a shared cache) keep a response that holds no research data."""
    g.private_caching = True
    response.headers["Cache-Control"] = f"private, max-age={seconds}"


def revalidate_each_time(response: Response) -> None:
    """Let a browser keep a response that holds no data, but only after asking the server."""
    # the study's public key: a tablet must learn of a new key at its next contact
    g.private_caching = True
    response.headers["Cache-Control"] = "no-cache"


def init_app(app: Flask) -> None:
    """Add the security headers to every response; trust the configured proxies' headers."""
    proxies = app.config.get("TRUSTED_PROXIES", 0)
    if proxies:
        # behind a TLS proxy: its X-Forwarded-Proto makes the request secure (cookies, HSTS) and
        # its X-Forwarded-For gives login throttling the real address; never trusted without it
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies)
    app.after_request(_headers)
