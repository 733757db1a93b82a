"""`make bench`: every speed and size figure of the app, measured in one run.

The app runs under gunicorn on loopback exactly as in production (tests/soak/server.py);
the page load comes from a second process (bench/load.py); everything else is driven from
this one. Each figure is a ratio against a baseline measured in the same run, or a count,
because the machine is shared and noisy. One line per figure: value, budget, PASS or FAIL
(INFO where the issue asks only for the figure). Exit status 1 when any figure fails.
"""

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, event, insert, select

from interview.config import ROOT
from interview.store.extensions import db
from interview.store.models import AuditEvent, GuideVersion, Note, Theme, User, note_themes, utcnow
from tests.soak.server import Server, free_port, store_from_env
from tests.soak.tablets import Http

from . import capacity, stack

KB = 1000


@dataclass
class Figure:
    """One measured figure and its budget."""

    name: str
    value: float | None
    shown: str
    budget: str = ""
    ok: bool | None = None  # None: reported, no budget

    def line(self) -> str:
        """Return the figure as one printed line."""
        verdict = {True: "PASS", False: "FAIL", None: "INFO"}[self.ok]
        return f"{verdict:4}  {self.name:<40}  {self.shown:<46} {self.budget}"


class Bench:
    """One benchmark run on one store."""

    def __init__(self, args):
        self.args = args
        self.folder = Path(tempfile.mkdtemp(prefix="fact-bench-"))
        self.store = store_from_env(self.folder)
        self.app = self.store.app()
        self.figures: list[Figure] = []
        self.server: Server | None = None
        self.info: dict = {}

    def add(self, *args, **kwargs) -> Figure:
        """Record a figure and print it at once."""
        figure = Figure(*args, **kwargs)
        self.figures.append(figure)
        print(figure.line(), flush=True)
        return figure

    def note(self, text: str) -> None:
        """Print a line of context (not a figure)."""
        print(f"      {text}", flush=True)

    # --- the store ---------------------------------------------------------------------

    def prepare(self) -> None:
        """Small size: the demo study and the benchmark's interviews."""
        began = time.perf_counter()
        peers = max(self.args.capacity_steps) if self.args.wants("capacity") else 0
        self.info = stack.prepare(self.app, peers=peers)
        self.note(
            f"store: {self.store.kind}, small size ready in {time.perf_counter() - began:.1f} s"
        )
        with self.app.app_context():
            guide = db.session.scalars(
                select(GuideVersion)
                .where(GuideVersion.key != stack.BENCH_GUIDE)
                .order_by(GuideVersion.version.desc())
            ).first()
            self.info["guide_pdf"] = f"/guides/{guide.key}/{guide.version}/nb.pdf"

    def grow(self) -> None:
        """Large size: `flask seed-scale` with the issue's numbers."""
        from devdata.scale import seed_scale

        a = self.args
        began = time.perf_counter()
        with self.app.app_context():
            made = seed_scale(db.session, cases=a.cases, participants=a.participants, notes=a.notes)
            db.session.commit()
        self.note(
            f"seed-scale --cases {a.cases} --participants {a.participants} --notes {a.notes}: "
            f"{time.perf_counter() - began:.1f} s ({made})"
        )

    # --- SQL statements per page, in-process -----------------------------------------

    def pages(self) -> dict[str, tuple[str, str]]:
        """Return each measured page: name -> (user, path)."""
        iv = self.info["page_interview"]
        return {
            "interview page": ("kari", f"/interviews/{iv}/section/0"),
            "interview list": ("kari", "/interviews/"),
            "progress page": ("koordinator", "/desk/"),
            "theme matrix": ("koordinator", "/desk/themes/matrix"),
            "alerts": ("koordinator", "/desk/alerts/"),
            "participants": ("koordinator", "/participants/"),
        }

    def _clients(self) -> dict:
        """Return in-process test clients logged in as kari and koordinator."""
        app = self.app
        app.config["RATELIMIT_ENABLED"] = False
        clients = {}
        for user in ("kari", "koordinator"):
            client = app.test_client()
            page = client.get("/login")
            import re

            token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.get_data(True))
            answer = client.post(
                "/login",
                data={
                    "username": user,
                    "password": self.info["passwords"][user],
                    "csrf_token": token.group(1),
                },
            )
            assert answer.status_code in (302, 303), answer.status_code
            clients[user] = client
        return clients

    def statements(self) -> dict[str, int]:
        """Count the SQL statements each page runs (in-process, same store)."""
        counts: dict[str, int] = {}
        app = self.app
        # count the statements of the real work, not of figures or pages kept from an earlier
        # view
        app.config.update(FIGURES_FRESH_SECONDS=0, FIGURES_UNCHANGED_SECONDS=0)
        clients = self._clients()
        seen = []

        def count(*_args, **_kwargs):
            seen.append(1)

        with app.app_context():
            engines = list(db.engines.values())
        for name, (user, path) in self.pages().items():
            clients[user].get(path)  # warm: the first request of a process loads caches
            for engine in engines:
                event.listen(engine, "before_cursor_execute", count)
            seen.clear()
            answer = clients[user].get(path)
            for engine in engines:
                event.remove(engine, "before_cursor_execute", count)
            if answer.status_code != 200:
                raise RuntimeError(f"{path} answered {answer.status_code}")
            counts[name] = len(seen)
        with app.app_context():
            for engine in engines:
                engine.dispose()
        return counts

    # --- the server ----------------------------------------------------------------------

    def serve(self) -> None:
        """Start gunicorn on the store."""
        self.server = Server(
            self.store, free_port(), workers=self.args.workers, threads=self.args.threads
        )
        took = self.server.start()
        self.note(
            f"gunicorn: {self.args.workers} workers x {self.args.threads} threads "
            f"on 127.0.0.1:{self.server.port}, up in {took:.1f} s"
        )
        self.http = {}
        self.csrf = {}
        for user in ("kari", "koordinator"):
            client = Http("127.0.0.1", self.server.port)
            self.csrf[user] = stack.login(client, user, self.info["passwords"][user])
            self.http[user] = client

    def load(self, targets: list[dict], seconds: float, concurrency: int, rounds: int):
        """Run the load generator in a second process; return its results."""
        plan = {
            "host": "127.0.0.1",
            "port": self.server.port,
            "targets": targets,
            "seconds": seconds,
            "concurrency": concurrency,
            "rounds": rounds,
        }
        out = subprocess.run(
            [sys.executable, "-m", "bench.load", json.dumps(plan)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(out.stdout)

    def target(self, name: str, user: str | None, path: str) -> dict:
        """Return a load target with the user's cookies."""
        return {"name": name, "path": path, "cookies": self.http[user].cookies if user else {}}

    def workers(self) -> list[int]:
        """Return the gunicorn worker pids."""
        master = self.server.proc.pid
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        return [int(pid) for pid in children]

    @staticmethod
    def memory(pid: int) -> tuple[int, int]:
        """Return (current RSS, peak RSS) of a process in bytes."""
        fields = {}
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            fields[key] = value.strip()
        return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024

    @contextmanager
    def changing_store(self, every: float = 0.03):
        """Change the store every `every` seconds while the block runs, as autosaving tablets do.

        Each time an audit row is added (`bench_touch`), which moves the store's version as any
        sync, saved form or audited action does. Yields a function that returns the changes
        per second so far.
        """
        stop = threading.Event()
        count = [0]

        def touch() -> None:
            with self.app.app_context():
                table = AuditEvent.__table__
                while not stop.wait(every):
                    with db.engine.begin() as conn:
                        conn.execute(
                            insert(table).values(at=utcnow(), action="bench_touch", detail={})
                        )
                    count[0] += 1

        began = time.perf_counter()
        thread = threading.Thread(target=touch, daemon=True)
        thread.start()
        try:
            yield lambda: count[0] / (time.perf_counter() - began)
        finally:
            stop.set()
            thread.join()

    # --- figures -------------------------------------------------------------------------

    def bench_pages(self) -> None:
        """Requests per second of three pages against the trivial route, same server.

        Every page is made afresh, as in an interview, where every tablet autosaves each
        second: each request asks for an address of its own (no kept page is sent), and the
        store changes meanwhile.
        """
        pages = self.pages()
        targets = [self.target("trivial", None, "/healthz")]
        for name in ("interview page", "interview list", "progress page"):
            user, path = pages[name]
            targets.append(self.target(name, user, path))
        for target in targets:
            target["fresh"] = True
        with self.changing_store() as changes:
            results = self.load(
                targets, self.args.seconds, self.args.concurrency, rounds=self.args.rounds
            )
            changed = changes()
        bad = sum(r["bad"] for r in results)
        if bad:
            raise RuntimeError(f"{bad} page requests did not answer 200: {results}")
        total = {}
        for r in results:
            ok, secs = total.get(r["name"], (0, 0.0))
            total[r["name"]] = (ok + r["ok"], secs + r["seconds"])
        rps = {name: ok / secs for name, (ok, secs) in total.items()}
        self.add("trivial route (/healthz)", rps["trivial"], f"{rps['trivial']:.0f} req/s")
        self.note(f"the store changed {changed:.0f} times a second while the pages were asked for")
        # issue 7 set these ratios (0.5, 0.5, 0.3) for pages asked for again while nothing
        # changed; issue 17 found them the wrong budgets. A page made afresh is judged by what
        # a peer meets: its p95 under load (bench_latency) and the capacity figure
        self.note("issue 7's page ratios held for an unchanging store; afresh they are reported")
        for name in ("interview page", "interview list", "progress page"):
            ratio = rps[name] / rps["trivial"]
            self.add(f"{name} / trivial", ratio, f"{ratio:.2f}  ({rps[name]:.0f} req/s)")
        for pid in self.workers():
            rss, _peak = self.memory(pid)
            self.add(
                f"worker {pid} RSS after pages",
                rss,
                f"{rss / 2**20:.0f} MB",
                "<= 150 MB",
                rss <= 150 * 2**20,
            )

    def bench_render(self) -> None:
        """In-process: a page made afresh, and with the desk's figures kept (store/kept.py)."""
        app = self.app
        clients = self._clients()
        pages = self.pages()
        gzip = {"Accept-Encoding": "gzip"}
        for name in ("interview page", "interview list", "progress page"):
            user, path = pages[name]
            took = {}
            for label, seconds in (("afresh", 0), ("kept", 300)):
                app.config.update(
                    FIGURES_FRESH_SECONDS=seconds,
                    FIGURES_UNCHANGED_SECONDS=seconds,
                )
                for _ in range(3):
                    clients[user].get(path, headers=gzip)
                times = []
                for _ in range(15):
                    began = time.perf_counter()
                    answer = clients[user].get(path, headers=gzip)
                    times.append(time.perf_counter() - began)
                    if answer.status_code != 200:
                        raise RuntimeError(f"{path} answered {answer.status_code}")
                took[label] = sorted(times)[len(times) // 2] * 1000
            self.add(
                f"{name}: afresh / figures kept (in-process)",
                took["afresh"],
                f"{took['afresh']:.1f} ms / {took['kept']:.1f} ms",
            )
        with app.app_context():
            for engine in db.engines.values():
                engine.dispose()

    def bench_latency(self) -> None:
        """p95 latency at the large size, one user at a time, every page made afresh."""
        pages = self.pages()
        names = (
            "interview page",
            "interview list",
            "progress page",
            "theme matrix",
            "alerts",
            "participants",
        )
        targets = [self.target(n, pages[n][0], pages[n][1]) for n in names]
        for target in targets:
            target["fresh"] = True
        with self.changing_store():
            results = self.load(targets, self.args.latency_seconds, 1, rounds=1)
        for r in results:
            if r["bad"]:
                raise RuntimeError(f"{r['name']}: {r['bad']} requests did not answer 200")
            # every page a peer or a coordinator opens, made afresh: the same budget as the
            # section page's in the capacity figure
            p95 = r["p95"] * 1000
            self.add(
                f"p95 {r['name']} (large)",
                p95,
                f"{p95:.0f} ms  (p50 {r['p50'] * 1000:.0f} ms, n={r['ok']})",
                "< 150 ms",
                p95 < 150,
            )

    def bench_statements(self, small: dict[str, int], large: dict[str, int]) -> None:
        """SQL statements per page, the same at both sizes."""
        for name in small:
            same = small[name] == large[name]
            self.add(
                f"SQL statements: {name}",
                large[name],
                f"{small[name]} small, {large[name]} large",
                "same",
                same,
            )

    def bench_exports(self) -> None:
        """Each export at the large size: time, size, streamed, and the workers' peak RSS."""
        http = self.http["koordinator"]
        before = {}
        for pid in self.workers():
            # "5" resets the peak resident size, so the peak read after is the exports' own
            Path(f"/proc/{pid}/clear_refs").write_text("5")
            before[pid] = self.memory(pid)[0]
        for fmt, path in (
            ("csv", "/desk/exports/notes.csv"),
            ("xlsx", "/desk/exports/notes.xlsx"),
            ("json", "/desk/exports/export.json"),
            ("qdpx", "/desk/exports/project.qdpx"),
        ):
            began = time.perf_counter()
            answer = http.request("GET", path)
            took = time.perf_counter() - began
            if answer.status != 200:
                raise RuntimeError(f"{path} answered {answer.status}")
            streamed = answer.headers.get("Transfer-Encoding") == "chunked"
            self.add(
                f"export {fmt} (large)",
                took,
                f"{took:.1f} s, {len(answer.body) / 1e6:.1f} MB",
                "streamed",
                streamed,
            )
        for pid in self.workers():
            _rss, peak = self.memory(pid)
            grew = peak - before.get(pid, peak)
            self.add(
                f"worker {pid} peak RSS in exports",
                peak,
                f"{peak / 2**20:.0f} MB ({grew / 2**20:+.0f} MB over its RSS before)",
                "+<= 64 MB",
                grew <= 64 * 2**20,
            )

    def bench_documents(self) -> None:
        """Guide PDF cold against a one-page WeasyPrint render, and cached against cold."""
        path = self.info["guide_pdf"]
        cache = self.folder / "documents"
        # one kept-alive connection, as a browser fetches: the connection set-up is not the
        # document's cost, and on a loaded machine it would drown a cached answer's
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=120)
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.http["kari"].cookies.items())}

        def fetch() -> float:
            began = time.perf_counter()
            conn.request("GET", path, headers=headers)
            answer = conn.getresponse()
            body = answer.read()
            took = time.perf_counter() - began
            if answer.status != 200 or not body.startswith(b"%PDF"):
                raise RuntimeError(f"{path} answered {answer.status}")
            return took

        cold, warm = [], []
        for _ in range(3):
            shutil.rmtree(cache, ignore_errors=True)
            cold.append(fetch())
            warm += [fetch() for _ in range(7)]
        conn.close()
        one_page = one_page_render()
        cold_t, warm_t = statistics.median(cold), statistics.median(warm)
        self.add(
            "guide PDF cold / one-page WeasyPrint",
            cold_t / one_page,
            f"{cold_t / one_page:.1f}  ({cold_t * 1000:.0f} ms / {one_page * 1000:.0f} ms)",
        )
        speedup = cold_t / warm_t
        self.add(
            "guide PDF cached speed-up",
            speedup,
            f"{speedup:.0f}x  ({warm_t * 1000:.1f} ms cached, medians)",
            ">= 100x",
            speedup >= 100,
        )

    def bench_sync(self) -> None:
        """Changes per second through /api/v1/sync, against a raw Core insert of the same rows."""
        a = self.args
        http = self.http["kari"]
        iv = self.info["sync_interview"]
        keys, themes = self.info["question_keys"], self.info["theme_keys"]
        device = str(uuid.uuid4())
        # as a tablet does: catch up first (the peer's records, in pages), then send each
        # batch with the cursor of the last answer, so an answer carries what changed since
        cursor = None
        for _ in range(200):
            _took, answer = self._sync(http, device, [], cursor)
            if answer["cursor"] == cursor or not answer["updates"]:
                break
            cursor = answer["cursor"]
        warm = stack.note_changes(iv, keys, themes, a.batch)
        _took, answer = self._sync(http, device, warm, cursor)
        cursor = answer["cursor"]
        sync_secs = raw_secs = 0.0
        sent = 0
        for _ in range(a.sync_batches):
            batch = stack.note_changes(iv, keys, themes, a.batch)
            raw_secs += self.raw_insert(batch)
            took, answer = self._sync(http, device, batch, cursor)
            cursor = answer["cursor"]
            sync_secs += took
            sent += len(batch)
        sync_rate, raw_rate = sent / sync_secs, sent / raw_secs
        # the issue sets the sync budgets on SQLite; on PostgreSQL the figures are reported
        judged = self.store.kind == "sqlite"
        self.add(
            f"sync changes/s (batches of {a.batch})",
            sync_rate,
            f"{sync_rate:.0f} changes/s",
            ">= 2000" if judged else "(budget on SQLite)",
            sync_rate >= 2000 if judged else None,
        )
        ratio = sync_rate / raw_rate
        self.add(
            "sync / raw Core insert",
            ratio,
            f"{ratio:.3f}  (raw {raw_rate:.0f} rows/s)",
            ">= 0.25" if judged else "(budget on SQLite)",
            ratio >= 0.25 if judged else None,
        )

    def _sync(self, http: Http, device: str, batch: list[dict], cursor) -> tuple[float, dict]:
        body = json.dumps({"device_id": device, "cursor": cursor, "changes": batch}).encode()
        headers = {
            "Content-Type": "application/json",
            "X-CSRFToken": self.csrf["kari"],
            "Accept": "application/json",
        }
        began = time.perf_counter()
        answer = http.request("POST", "/api/v1/sync", body=body, headers=headers)
        took = time.perf_counter() - began
        if answer.status != 200:
            raise RuntimeError(f"sync answered {answer.status}: {answer.body[:300]!r}")
        data = answer.json()
        statuses = {r["status"] for r in data["results"]}
        if batch and statuses != {"applied"}:
            raise RuntimeError(f"sync answered {statuses}")
        return took, data

    def raw_insert(self, batch: list[dict]) -> float:
        """Insert the batch's note rows (and their theme rows) with Core; return the seconds."""
        with self.app.app_context():
            theme_ids = dict(db.session.execute(select(Theme.key, Theme.id)).all())
            author = db.session.scalars(select(User.id).where(User.username == "kari")).one()
            engine = db.engine
            now = utcnow()
            notes, links = [], []
            for change in batch:
                d = change["data"]
                note_id = str(uuid.uuid4())  # not the change's id: the sync stores that one
                notes.append(
                    {
                        "id": note_id,
                        "interview_id": self.info["baseline_interview"],
                        "question_key": d["question_key"],
                        "text_enc": d["text"].encode(),
                        "polarity": d["polarity"],
                        "possible_quote": d["possible_quote"],
                        "field_revs": {},
                        "rev": 1,
                        "author_id": author,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
                links += [{"note_id": note_id, "theme_id": theme_ids[k]} for k in d["themes"]]
            began = time.perf_counter()
            with engine.begin() as conn:
                conn.execute(insert(Note.__table__), notes)
                conn.execute(insert(note_themes), links)
            took = time.perf_counter() - began
            # the raw rows hold plain text where the store keeps sealed text: taken out again
            # (untimed), so the exports and pages after this read only what the app wrote
            ids = [n["id"] for n in notes]
            with engine.begin() as conn:
                conn.execute(delete(note_themes).where(note_themes.c.note_id.in_(ids)))
                conn.execute(delete(Note.__table__).where(Note.__table__.c.id.in_(ids)))
            return took

    def bench_weight(self) -> None:
        """Bytes a first visit to the interview page transfers, in real Chromium."""
        from .weight import first_visit

        proxy = stack.CountingProxy(self.server.port)
        port = proxy.start()
        path = self.pages()["interview page"][1]
        result = first_visit(port, path, self.http["kari"].cookies, proxy)
        for url, size in result["largest"]:
            self.note(f"{size:>7} B  {url}")
        # the tablet's first sync brings the peer's interviews and notes for offline work:
        # data the peer asked for, not the page; shown apart, and counted out of the page
        page_bytes = result["bytes"] - result["sync_bytes"]
        self.add(
            "first visit to interview page",
            page_bytes,
            f"{page_bytes / KB:.1f} KB in {result['requests'] - result['sync_requests']} requests",
            "<= 60 KB",
            page_bytes <= 60 * KB,
        )
        self.add(
            "first visit: the tablet's first sync",
            result["sync_bytes"],
            f"{result['sync_bytes'] / KB:.1f} KB in {result['sync_requests']} requests",
        )
        self.add(
            "requests to other origins",
            result["other_origins"],
            str(result["other_origins"]),
            "0",
            result["other_origins"] == 0,
        )

    def close(self) -> None:
        """Stop the server and remove the store (PostgreSQL tables are dropped)."""
        if self.server is not None:
            self.server.stop()
        if self.store.kind == "postgresql":
            from tests.soak.world import drop_schema

            drop_schema(self.app)
        shutil.rmtree(self.folder, ignore_errors=True)


def one_page_render() -> float:
    """Return the median seconds WeasyPrint takes for a one-page document (after a warm-up)."""
    import weasyprint

    html = (
        "<html lang='en'><head><style>body{font-family:'DejaVu Sans'}</style></head><body>"
        "<h1>One page</h1>"
        + "<p>A paragraph of ordinary text on a single page.</p>" * 10
        + "</body></html>"
    )
    weasyprint.HTML(string=html).write_pdf()
    times = []
    for _ in range(5):
        began = time.perf_counter()
        weasyprint.HTML(string=html).write_pdf()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main(argv=None) -> int:
    """Run every benchmark on the store from the environment (SQLite when none is set)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=70)
    parser.add_argument("--participants", type=int, default=3000)
    parser.add_argument("--notes", type=int, default=100000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=4, help="load connections")
    parser.add_argument("--seconds", type=float, default=4.0, help="per page and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--latency-seconds", type=float, default=4.0)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--sync-batches", type=int, default=10)
    parser.add_argument(
        "--capacity-steps",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 70, 80],
        help="concurrent peers per capacity step, comma-separated",
    )
    parser.add_argument("--capacity-seconds", type=float, default=12.0, help="measured per step")
    parser.add_argument("--capacity-settle", type=float, default=3.0, help="before each step")
    parser.add_argument("--small", action="store_true", help="skip seed-scale (quick check)")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated: pages,latency,sql,exports,documents,sync,weight,capacity",
    )
    args = parser.parse_args(argv)
    only = set(filter(None, args.only.split(",")))

    def wanted(part: str) -> bool:
        return not only or part in only

    args.wants = wanted

    bench = Bench(args)
    try:
        bench.prepare()
        small = bench.statements() if wanted("sql") else {}
        if not args.small:
            bench.grow()
        large = bench.statements() if wanted("sql") else {}
        bench.serve()
        if wanted("sql"):
            bench.bench_statements(small, large)
        if wanted("pages"):
            bench.bench_pages()
            bench.bench_render()
        if wanted("latency"):
            bench.bench_latency()
        if wanted("weight"):
            bench.bench_weight()
        if wanted("documents"):
            bench.bench_documents()
        if wanted("sync"):
            bench.bench_sync()
        if wanted("exports"):
            bench.bench_exports()
        if wanted("capacity"):
            capacity.run(bench)
        errors = bench.server.log_count("Traceback")
        bench.add("server errors (tracebacks)", errors, str(errors), "0", errors == 0)
    finally:
        bench.close()
    failed = [f for f in bench.figures if f.ok is False]
    passed = len(bench.figures) - len(failed)
    summary = f"== {bench.store.kind}: {passed} of {len(bench.figures)} figures pass"
    print(summary + (f"; FAIL: {', '.join(f.name for f in failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
