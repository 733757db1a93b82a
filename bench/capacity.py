"""The capacity figure: how many peers can interview at once before the server is too slow.

Each simulated peer runs an interview as the tablet does, with its own session and its own
interview under way: every second a sync (`POST /api/v1/sync`, the real envelope) with an
edit of one of its own notes, made on the rev the last answer gave; about every 30 s a
check-in event in the same batch; and a load of its section page every 2–4 s. Two
coordinators meanwhile go round the progress, alerts and participants pages, one page
every 2–4 s each. The peers come in steps (5, 10, 15, ...); each step settles, then is
measured for a few seconds. A step holds when the section page's p95 stays under 150 ms,
the sync's under 250 ms, and every request answers 200; one that does not is measured once
more. The run stops at the first step that fails twice; the capacity is the largest step
that held.

`run()` is the benchmark's side (bench/run.py, part `capacity`): it starts gunicorn and hands
the run to this module's client, a second process (`python -m bench.capacity`, the plan on
stdin), so the load does not share the benchmark's interpreter. The client prints one JSON
line per step. It uses only the standard library; its own CPU time is measured and shown
beside the server's.
"""

import http.client
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

PAGE_BUDGET_MS = 150
SYNC_BUDGET_MS = 250
BUDGET_PEERS = 30
MIN_PAGES = 40  # section page loads a step is measured on, at least
DESK = ("progress", "alerts", "participants")
DESK_PATHS = {"progress": "/desk/", "alerts": "/desk/alerts/", "participants": "/participants/"}
STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


# --- the client (a second process) ----------------------------------------------------


class Browser:
    """One kept-alive connection with the cookies of one session, as a tablet's browser."""

    def __init__(self, host: str, port: int, jar: dict):
        self.host, self.port, self.jar = host, port, jar
        self.conn = None

    def request(self, method: str, path: str, body=None, headers=None) -> tuple[int, bytes, float]:
        """Send one request; return the status, the body and the seconds it took."""
        headers = {"Accept-Language": "nb", **(headers or {})}
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.jar.items())
            began = time.perf_counter()
            try:
                self.conn.request(method, path, body=body, headers=headers)
                resp = self.conn.getresponse()
                data = resp.read()
            except STALE:
                # the server closed the idle connection (gunicorn's keep-alive is 2 s): a
                # browser opens a new one and sends again, and so do we, timing the new one
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
                continue
            took = time.perf_counter() - began
            for line in resp.msg.get_all("Set-Cookie") or []:
                name, _, value = line.split(";", 1)[0].partition("=")
                self.jar[name.strip()] = value
            return resp.status, data, took
        raise AssertionError("unreachable")


class Client:
    """Every simulated peer and coordinator, and the latencies of the step being measured."""

    def __init__(self, plan: dict):
        self.plan = plan
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.samples: list[tuple[str, float | None, bool]] = []  # kind, seconds, answered 200
        self.cursor = plan["cursor"]  # the latest cursor any answer gave
        self.troubles: dict[str, int] = {}
        self.desk: list[tuple[str, float | None, bool]] = []  # of every step measured

    def record(self, kind: str, seconds: float | None, ok: bool) -> None:
        """Keep one request's latency (None: no answer) for the step being measured."""
        with self.lock:
            self.samples.append((kind, seconds, ok))

    def count(self, kind: str) -> int:
        """Return how many requests of a kind the step being measured has seen."""
        with self.lock:
            return sum(1 for k, _s, _ok in self.samples if k == kind)

    def trouble(self, what: str) -> None:
        """Count an unexpected answer; say it on stderr the first time."""
        with self.lock:
            self.troubles[what] = self.troubles.get(what, 0) + 1
            first = self.troubles[what] == 1
        if first:
            print(f"capacity client: {what}", file=sys.stderr, flush=True)

    def start(self, target, *args) -> None:
        """Run `target(*args)` in a daemon thread."""
        threading.Thread(target=target, args=args, daemon=True).start()

    def every(self, kind: str, low: float, high: float, action) -> None:
        """Call `action()` every `low`–`high` seconds (on a schedule: a slow answer is not
        followed by a burst), starting at a random moment within the first period."""
        due = time.monotonic() + random.uniform(0, high)
        while not self.stop.is_set():
            wait = due - time.monotonic()
            if wait > 0 and self.stop.wait(wait):
                return
            try:
                action()
            except Exception as exc:  # noqa: BLE001 - counted as an error of the step
                self.record(kind, None, False)
                self.trouble(f"{kind}: {type(exc).__name__}: {exc}")
            due = max(due + random.uniform(low, high), time.monotonic())

    # --- a peer ---

    def peer(self, me: dict) -> None:
        """Start one peer: a sync every second and a section page every 2-4 s."""
        host, port = self.plan["host"], self.plan["port"]
        jar = dict(me["cookies"])
        sync, page = Browser(host, port, jar), Browser(host, port, jar)
        notes = [list(n) for n in me["notes"]]  # [id, rev]
        state = {"cursor": self.cursor, "saves": 0, "pending": None, "check_in": None}
        state["check_in"] = time.monotonic() + random.uniform(0, 30)
        device = str(uuid.uuid4())
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "X-CSRFToken": me["csrf"],
        }

        def save() -> None:
            if state["pending"] is None:
                # the peer types on: the note being written changes every five saves
                k = state["saves"]
                note = notes[(k // 5) % len(notes)]
                changes = [change("note", note[0], note[1], {"text": f"{self.plan['text']} {k}"})]
                if time.monotonic() >= state["check_in"]:
                    state["check_in"] += 30
                    details = {"interview_id": me["interview"], "kind": "check_in", "details": {}}
                    changes.append(change("event", str(uuid.uuid4()), None, details))
                state["pending"] = (note, changes)
            note, changes = state["pending"]
            body = {"device_id": device, "cursor": state["cursor"], "changes": changes}
            status, data, took = sync.request(
                "POST", "/api/v1/sync", json.dumps(body).encode(), headers
            )
            self.record("sync", took, status == 200)
            if status != 200:
                self.trouble(f"sync answered {status}: {data[:200]!r}")
                return  # the same changes go again, as the outbox sends them again
            answer = json.loads(data)
            state["cursor"] = answer["cursor"]
            self.cursor = max(self.cursor, answer["cursor"])
            for result in answer["results"]:
                if result["status"] not in ("applied", "duplicate"):
                    self.trouble(f"a change answered {result['status']}")
            if answer["results"][0].get("rev"):
                note[1] = answer["results"][0]["rev"]
            state["pending"] = None
            state["saves"] += 1

        def load_page() -> None:
            path = f"/interviews/{me['interview']}/section/0"
            status, _data, took = page.request("GET", path, headers={"Accept-Encoding": "gzip"})
            self.record("section page", took, status == 200)
            if status != 200:
                self.trouble(f"{path} answered {status}")

        self.start(self.every, "sync", 1.0, 1.0, save)
        self.start(self.every, "section page", 2.0, 4.0, load_page)

    # --- a coordinator ---

    def coordinator(self, me: dict) -> None:
        """Start one coordinator going round the desk pages, one page every 2-4 s."""
        browser = Browser(self.plan["host"], self.plan["port"], dict(me["cookies"]))
        turn = [random.randrange(len(DESK))]

        def load_page() -> None:
            name = DESK[turn[0] % len(DESK)]
            turn[0] += 1
            headers = {"Accept-Encoding": "gzip"}
            status, _data, took = browser.request("GET", DESK_PATHS[name], headers=headers)
            self.record(name, took, status == 200)
            if status != 200:
                self.trouble(f"{DESK_PATHS[name]} answered {status}")

        self.start(self.every, "progress", 2.0, 4.0, load_page)

    # --- the steps ---

    def warm(self) -> None:
        """Load each page a few times, untimed: a fresh worker's first loads fill its caches."""
        host, port = self.plan["host"], self.plan["port"]
        desk, peer = self.plan["coordinators"][0], self.plan["peers"][0]
        paths = [(desk, p) for p in DESK_PATHS.values()]
        paths.append((peer, f"/interviews/{peer['interview']}/section/0"))
        for _ in range(2 * len(self.plan["workers"])):
            for who, path in paths:
                # a new connection each time, so that every worker gets some
                Browser(host, port, dict(who["cookies"])).request("GET", path)

    def measure(self, peers: int) -> dict:
        """Measure the running peers for one step; return its figures."""
        with self.lock:
            self.samples = []
        clock = cpu_clock(self.plan["workers"])
        time.sleep(self.plan["seconds"])
        # a p95 wants some samples: a small step is measured on until it has MIN_PAGES
        # section pages (at most three times as long)
        for _ in range(int(self.plan["seconds"] * 4)):
            if self.count("section page") >= MIN_PAGES:
                break
            time.sleep(0.5)
        with self.lock:
            samples, self.samples = self.samples, []
        self.desk += [s for s in samples if s[0] in DESK]
        return summary(peers, samples, clock, cpu_clock(self.plan["workers"]))

    def run(self) -> None:
        """Run the steps; print one JSON line per measurement; stop after the first step
        that fails twice."""
        plan = self.plan
        self.warm()
        for me in plan["coordinators"]:
            self.coordinator(me)
        running = 0
        for n in plan["steps"]:
            if n > len(plan["peers"]):
                break
            while running < n:
                self.peer(plan["peers"][running])
                running += 1
            time.sleep(plan["settle"])
            # a step that fails is measured once more: one passing hitch of a shared machine
            # does not end the run
            for attempt in (1, 2):
                step = self.measure(n)
                step["attempt"] = attempt
                print(json.dumps(step), flush=True)
                if step["holds"]:
                    break
            if not step["holds"]:
                break
        self.stop.set()
        desk = {}
        for name in DESK:
            times = [s for k, s, _ok in self.desk if k == name and s is not None]
            if times:
                desk[name] = [len(times), *percentiles(times)]
        print(json.dumps({"desk": desk}), flush=True)


def change(entity: str, record: str, base_rev, data: dict) -> dict:
    """Return one change of the sync envelope."""
    return {
        "change_id": str(uuid.uuid4()),
        "entity": entity,
        "id": record,
        "base_rev": base_rev,
        "recorded_at": datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "data": data,
    }


def cpu_clock(workers: list[int]) -> tuple[float, float, float, float]:
    """Return (wall, this process's CPU, the server workers' CPU, the machine's busy) seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    server = 0.0
    for pid in workers:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        server += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    cpu = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = (sum(cpu) - cpu[3] - cpu[4]) / tick  # all but idle and iowait
    return time.monotonic(), time.process_time(), server, busy


def percentiles(times: list[float]) -> tuple[float, float]:
    """Return the p50 and p95 of `times` in milliseconds."""
    times = sorted(times)
    return times[len(times) // 2] * 1000, times[int(len(times) * 0.95)] * 1000


def summary(peers: int, samples: list, before: tuple, after: tuple) -> dict:
    """Return a step's figures: per kind of request its count, errors, p50 and p95 (ms)."""
    kinds: dict[str, dict] = {}
    for group in ("section page", "sync", "desk"):
        names = DESK if group == "desk" else (group,)
        times = [s for k, s, _ok in samples if k in names and s is not None]
        bad = sum(1 for k, _s, ok in samples if k in names and not ok)
        p50, p95 = percentiles(times) if times else (None, None)
        kinds[group] = {"n": len(times), "bad": bad, "p50": p50, "p95": p95}
    wall = after[0] - before[0]
    page, sync = kinds["section page"], kinds["sync"]
    holds = (
        page["n"] > 0
        and sync["n"] > 0
        and page["p95"] < PAGE_BUDGET_MS
        and sync["p95"] < SYNC_BUDGET_MS
        and not any(k["bad"] for k in kinds.values())
    )
    return {
        "peers": peers,
        "kinds": kinds,
        "rps": len(samples) / wall,
        "client_cores": (after[1] - before[1]) / wall,
        "server_cores": (after[2] - before[2]) / wall,
        "machine_cores": (after[3] - before[3]) / wall,
        "holds": holds,
    }


def client_main() -> int:
    """Read the plan from stdin and run it."""
    Client(json.loads(sys.stdin.read())).run()
    return 0


# --- the benchmark's side ---------------------------------------------------------------


def run(bench) -> None:
    """The capacity figure on the bench's store."""
    from tests.soak.server import Server, free_port

    a = bench.args
    began = time.perf_counter()
    logins = sessions(bench)
    server = Server(bench.store, free_port(), workers=a.workers, threads=a.threads)
    server.start()
    try:
        bench.note(f"capacity: gunicorn on 127.0.0.1:{server.port}")
        steps = drive(bench, server, logins)
    finally:
        server.stop()
    # the client stops at the first step that fails twice: every step that held is below
    value = max([s["peers"] for s in steps if s["holds"]], default=0)
    bench.add(
        "capacity (peers)", value, f"{value} peers", f">= {BUDGET_PEERS}", value >= BUDGET_PEERS
    )
    bench.note(f"capacity part: {time.perf_counter() - began:.0f} s")


def sessions(bench) -> dict:
    """Log each peer and two coordinators in (once per store; sessions outlive a restart)."""
    from concurrent.futures import ThreadPoolExecutor

    from bench import stack
    from tests.soak.tablets import Http

    def login(username: str) -> dict:
        client = Http("127.0.0.1", bench.server.port)
        csrf = stack.login(client, username, bench.info["passwords"][username])
        return {"cookies": client.cookies, "csrf": csrf}

    users = [p["username"] for p in bench.info["peers"]] + ["koordinator", "koordinator"]
    with ThreadPoolExecutor(4) as pool:
        done = list(pool.map(login, users))
    peers, coordinators = done[:-2], done[-2:]
    for made, peer in zip(peers, bench.info["peers"], strict=True):
        made["interview"] = peer["interview"]
    return {"peers": peers, "coordinators": coordinators}


def drive(bench, server, logins: dict) -> list[dict]:
    """Run the client against `server`; print and return its steps."""
    from sqlalchemy import func, select

    from interview.store.extensions import db
    from interview.store.models import Note, UpdateLog

    from .stack import NOTE_TEXT

    a = bench.args
    with bench.app.app_context():
        # the peers' notes as their tablets hold them now (revs move from run to run), and a
        # cursor as of now: a peer in mid-interview synced a moment ago
        revs: dict[str, list] = {}
        rows = db.session.execute(
            select(Note.interview_id, Note.id, Note.rev).order_by(Note.created_at, Note.id)
        )
        for interview, note, rev in rows:
            revs.setdefault(interview, []).append([note, rev])
        cursor = db.session.scalar(select(func.max(UpdateLog.seq))) or 0
        db.session.remove()
    master = server.proc.pid
    workers = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    plan = {
        "host": "127.0.0.1",
        "port": server.port,
        "steps": a.capacity_steps,
        "settle": a.capacity_settle,
        "seconds": a.capacity_seconds,
        "cursor": cursor,
        "text": NOTE_TEXT,
        "workers": [int(pid) for pid in workers],
        "peers": [{**p, "notes": revs[p["interview"]]} for p in logins["peers"]],
        "coordinators": logins["coordinators"],
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.capacity"],
        cwd=Path(__file__).resolve().parent.parent,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    proc.stdin.write(json.dumps(plan))
    proc.stdin.close()
    bench.note(
        f"{'peers':>5}  {'section page':>13}  {'sync':>13}  {'desk pages':>13}  "
        f"{'req/s':>5}  {'errors':>6}  cores: server client machine"
    )
    steps = []
    for line in proc.stdout:
        step = json.loads(line)
        if "desk" in step:
            pages = [
                f"{k} {p50:.0f}/{p95:.0f} (n={n})" for k, (n, p50, p95) in step["desk"].items()
            ]
            bench.note(f"desk pages over every step, p50/p95 ms: {', '.join(pages)}")
            continue
        steps.append(step)
        bench.note(row(step))
    if proc.wait() != 0:
        raise RuntimeError(f"the capacity client exited with {proc.returncode}")
    return steps


def row(step: dict) -> str:
    """Return one printed line of the step table (p50/p95 in ms)."""

    def cell(kind: dict) -> str:
        if not kind["n"]:
            return f"{'-':>13}"
        return f"{kind['p50']:>5.0f} /{kind['p95']:>5.0f}"[:13].rjust(13)

    k = step["kinds"]
    bad = sum(x["bad"] for x in k.values())
    return (
        f"{step['peers']:>5}  {cell(k['section page'])}  {cell(k['sync'])}  {cell(k['desk'])}  "
        f"{step['rps']:>5.0f}  {bad:>6}  {step['server_cores']:>12.2f} "
        f"{step['client_cores']:>6.2f} {step['machine_cores']:>7.2f}  "
        f"{'holds' if step['holds'] else 'FAILS'}{', 2nd try' if step['attempt'] == 2 else ''}"
    )


if __name__ == "__main__":
    raise SystemExit(client_main())
