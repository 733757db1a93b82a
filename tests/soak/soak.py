"""Soak: 20 tablets x 500 changes against the real app under gunicorn, with faults.

    python -m tests.soak.soak [--tablets 20] [--changes 500] [--workers 2] [--threads 4]

The store is DATABASE_URL / IDENTITY_DATABASE_URL when set (PostgreSQL), else two SQLite files
in a temporary folder. The tablets lose requests and answers, send batches twice (one after the
other and at once) and out of order, and lose their sessions and CSRF tokens; two tablets share
each interview, so conflicts happen. Then the store is read directly: 0 lost, 0 duplicated,
every conflict visible, integrity intact. Exits 1 on any failure.
"""

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .checks import Report, check_changes, check_integrity
from .server import Server, Store, free_port, store_from_env
from .tablets import FAULTS, Stats, Tablet
from .world import build, drop_schema, fresh_schema


class Run:
    """A store with its schema and people, a server on it, and the tablets."""

    def __init__(
        self, tablets: int, workers: int, threads: int, migrate: bool, seed: int, settle: float
    ):
        self.settle_seconds = settle
        self.folder = Path(tempfile.mkdtemp(prefix="fact-soak-"))
        self.store: Store = store_from_env(self.folder)
        self.app = self.store.app()
        fresh_schema(self.app, migrate)
        self.plans = build(self.app, tablets)
        self.server = Server(self.store, free_port(), workers, threads)
        self.stats = Stats()
        self.seed = seed
        self.tablets: list[Tablet] = []
        self.errors: list[str] = []

    def make_tablets(self, **options) -> list[Tablet]:
        """Give every plan a tablet."""
        self.tablets = [
            Tablet(
                i, plan, "127.0.0.1", self.server.port, self.stats, self.seed * 1000 + i, **options
            )
            for i, plan in enumerate(self.plans)
        ]
        return self.tablets

    def drive(self, target: int, deadline: float, keep_going: Callable | None = None):
        """Start one thread per tablet; return the threads."""

        def life(tablet: Tablet):
            try:
                tablet.run(target, deadline, keep_going, self.settle_seconds)
            except Exception as exc:  # noqa: BLE001 - a crashed tablet is a failed run, not a hang
                self.errors.append(f"{tablet.name}: {type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=life, args=(t,), daemon=True) for t in self.tablets]
        for thread in threads:
            thread.start()
        return threads

    def settle(self, deadline: float) -> None:
        """Drain every tablet that still holds changes (no faults), for a while at most."""
        deadline = min(deadline, time.monotonic() + self.settle_seconds)
        for _round in range(50):
            if time.monotonic() > deadline or not any(t.outbox for t in self.tablets):
                return
            for tablet in self.tablets:
                if tablet.outbox:
                    tablet.drain(20)

    def check(self) -> tuple[Report, Report]:
        """Read the store: the tablets' changes, then its integrity."""
        return check_changes(self.app, self.tablets), check_integrity(self.app, self.store.kind)

    def close(self, keep_schema: bool = False) -> None:
        """Stop the server, drop the tables (a shared database is left empty) and the folder."""
        self.server.stop()
        if os.environ.get("SOAK_KEEP"):
            # for a post-mortem: the store, the keys and the server's logs stay where they are
            print(f"kept: {self.folder} ({self.store.case_url})")
            return
        if not keep_schema:
            drop_schema(self.app)
        shutil.rmtree(self.folder, ignore_errors=True)


def traffic(run: Run, report: Report) -> None:
    """Add the request and fault figures to a report; a 500 is a failure."""
    counts = run.stats.counts
    if any(counts[f"fault_{fault}"] for fault in FAULTS):
        for fault in FAULTS:
            report.figures[f"fault {fault}"] = counts[f"fault_{fault}"]
        report.figures["  reorder: edits sent before their create"] = counts[
            "reorder_edit_before_create"
        ]
        report.figures["  reorder: batches swapped / reversed"] = (
            f"{counts['reorder_batches_swapped']} / {counts['reorder_batch_reversed']}"
        )
        report.figures["  duplicates sent at the same moment"] = counts["duplicate_concurrent"]
    report.figures["logins (incl. after expiry)"] = counts["logins"]
    report.figures["CSRF tokens refreshed"] = counts["csrf_refreshed"]
    report.figures["sync requests"] = counts["requests"]
    statuses = {k[5:]: v for k, v in sorted(counts.items()) if k.startswith("http_")}
    report.figures["answers by HTTP status"] = statuses
    report.figures["network errors (before / after send)"] = (
        f"{counts['network_errors']} / {counts['network_errors_after_send']}"
    )
    report.figures["keystrokes coalesced into unsent entries"] = counts["typing_coalesced"]
    took = sorted(seconds for _status, seconds in run.server.latencies())
    if took:
        report.figures["sync request time (median / 95% / max)"] = (
            f"{took[len(took) // 2]:.2f} / {took[int(len(took) * 0.95)]:.2f} / {took[-1]:.2f} s"
        )
    slow_errors = [f"{s:.2f}" for status, s in run.server.latencies() if status >= 500]
    if slow_errors:
        report.figures["sync 5xx answered after (s)"] = ", ".join(slow_errors[:10])
    errors = run.server.log_count("unhandled ")
    report.figures["unhandled errors in the server log"] = errors
    if statuses.get("500") or errors:
        report.fail(f"the server answered 500 ({statuses.get('500', 0)}), {errors} logged")
        for excerpt in run.server.log_excerpts("unhandled "):
            report.fail("server log:\n" + excerpt)
    for message in run.errors:
        report.fail(f"tablet stopped: {message}")
    for tablet in run.tablets:
        if tablet.outbox:
            report.fail(
                f"{tablet.name} still holds {len(tablet.outbox)} changes; "
                f"the server's last refusal: {tablet.last_refusal}"
            )


def show(title: str, reports: list[Report], out=print) -> bool:
    """Print the figures and failures of some reports; return True when all passed."""
    out(f"== {title}")
    ok = True
    for report in reports:
        for name, value in report.figures.items():
            out(f"{name}: {value}")
    for report in reports:
        for failure in report.failures:
            out(f"FAIL {failure}")
        ok = ok and report.ok
    out(f"result: {'PASS' if ok else 'FAIL'}")
    return ok


def run_soak(
    tablets: int = 20,
    changes: int = 500,
    workers: int = 2,
    threads: int = 4,
    migrate: bool = True,
    seed: int = 1,
    timeout: float = 3600,
    settle: float = 300,
    keep_schema: bool = False,
    out=print,
) -> bool:
    """Run the soak and print its figures; return True when nothing was lost or doubled."""
    began = time.monotonic()
    deadline = began + timeout
    run = Run(tablets, workers, threads, migrate, seed, settle)
    try:
        boot = run.server.start()
        run.make_tablets()
        for thread in run.drive(changes, deadline):
            thread.join(max(1.0, deadline - time.monotonic()))
        run.settle(deadline)
        wall = time.monotonic() - began
        run.server.stop()
        changes_report, integrity = run.check()
        changes_report.figures = {
            "store": run.store.kind,
            "server": f"gunicorn, {workers} workers x {threads} threads (start-up {boot:.1f} s)",
            "tablets x changes": f"{tablets} x {changes}",
            **changes_report.figures,
        }
        traffic(run, changes_report)
        changes_report.figures["wall time"] = f"{wall:.0f} s"
        if time.monotonic() > deadline:
            changes_report.fail(f"did not converge within {timeout:.0f} s")
        return show("soak", [changes_report, integrity], out)
    finally:
        if run.server.proc is not None:
            out(run.server.tail(20))
        run.close(keep_schema)


def main(argv=None) -> int:
    """Command line: run the soak, exit 1 on any loss."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tablets", type=int, default=20)
    parser.add_argument("--changes", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--settle", type=float, default=300, help="seconds to drain at the end")
    args = parser.parse_args(argv)
    ok = run_soak(
        args.tablets,
        args.changes,
        args.workers,
        args.threads,
        seed=args.seed,
        timeout=args.timeout,
        settle=args.settle,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
