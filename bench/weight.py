"""The weight of a first visit: real Chromium, an empty cache, bytes counted on the wire.

Chromium talks to the app through `stack.CountingProxy`, which counts every byte the server
sends back (status lines, headers, bodies, as compressed as they were sent), including what
the service worker fetches, which a page-level listener would miss. Requests to any other
origin are counted (and stopped) by a route on the whole browser context.
"""

from urllib.parse import urlsplit

from tests.chromium import CHROMIUM_ARGS, chromium_path


def first_visit(port: int, path: str, cookies: dict[str, str], proxy) -> dict:
    """Load `path` once in a fresh context (logged in by cookie); return bytes and requests."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    if executable is None:
        raise RuntimeError("Chromium is not installed (apt-get install -y chromium)")
    origin = f"http://127.0.0.1:{port}"
    seen: list[str] = []
    other: list[str] = []
    sizes: list[tuple[str, int]] = []  # (URL, bytes) per request: a URL asked twice counts twice
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1024, "height": 768}, locale="nb-NO")
        context.add_cookies([{"name": k, "value": v, "url": origin} for k, v in cookies.items()])

        def route(r):
            url = r.request.url
            if urlsplit(url)._replace(path="", query="", fragment="").geturl() != origin:
                other.append(url)
                r.abort()
            else:
                r.continue_()

        context.route("**/*", route)
        page = context.new_page()

        def finished(request):
            seen.append(request.url)
            try:
                s = request.sizes()
                sizes.append((request.url, s["responseHeadersSize"] + s["responseBodySize"]))
            except Exception:  # a request served from the service worker has no sizes
                pass

        page.on("requestfinished", finished)
        proxy.reset()
        page.goto(origin + path, wait_until="networkidle")
        page.wait_for_timeout(1500)  # the tablet's first sync and the service worker settle
        received = proxy.received
        status = page.evaluate("document.documentElement.lang")
        browser.close()
    sync = [n for u, n in sizes if urlsplit(u).path == "/api/v1/sync"]
    largest = sorted(sizes, key=lambda kv: -kv[1])[:8]
    return {
        "bytes": received,
        "requests": len(seen),
        "other_origins": len(other),
        "sync_bytes": sum(sync),
        "sync_requests": len(sync),
        "lang": status,
        "largest": [(urlsplit(u).path, n) for u, n in largest],
    }
