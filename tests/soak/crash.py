"""Crash: the server (gunicorn master and workers) killed with SIGKILL mid-batch, 20 times.

    python -m tests.soak.crash [--tablets 20] [--changes 300] [--kills 20]

Tablets type in bursts and send big batches. Each kill waits until a batch carrying changes is
in flight, then kills the whole process group at a random moment; the server is started again
at once and the next kill waits until the tablets' retries are answered again. A batch cut by
a kill must have committed whole or not at all: a tablet's next answer names its changes all
`duplicate` or none. At the end every outbox drains, and the store is checked as after the soak
plus SQLite's integrity_check (or, on PostgreSQL, the same foreign-key and half-applied checks).
"""

import argparse
import random
import sys
import time
from collections import Counter

from .soak import Run, show, traffic


def _wait(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def run_crash(
    tablets: int = 20,
    changes: int = 300,
    kills: int = 20,
    workers: int = 2,
    threads: int = 4,
    migrate: bool = True,
    seed: int = 2,
    timeout: float = 3600,
    settle: float = 300,
    keep_schema: bool = False,
    out=print,
) -> bool:
    """Run the crash test and print its figures; return True when the store came through."""
    began = time.monotonic()
    deadline = began + timeout
    rng = random.Random(seed)
    run = Run(tablets, workers, threads, migrate, seed, settle)
    done_killing = []
    kill_log: list[tuple[int, int]] = []
    restarts: list[float] = []
    stalled: list[int] = []
    try:
        run.server.start()
        run.make_tablets(faults=False, batch_sizes=(40, 100, 200), burst=(8, 40))

        def keep_going(tablet):
            # type on until the last kill, so there is always a batch to cut
            return not done_killing and len(tablet.ledger) < changes * 6

        threads_ = run.drive(changes, deadline, keep_going)
        stats = run.stats
        # after each restart the tablets' retries get through again before the next kill
        need = max(2, tablets // 2)
        for number in range(1, kills + 1):
            answered = stats.get("http_200")
            if not _wait(lambda a=answered: stats.get("http_200") >= a + need, 300):
                stalled.append(number)
            if not _wait(lambda: stats.in_flight_changes > 0, 120):
                stalled.append(number)
            time.sleep(rng.uniform(0, 1.5))
            kill_log.append((stats.in_flight, stats.in_flight_changes))
            run.server.kill()
            restarts.append(run.server.start())
        done_killing.append(True)
        for thread in threads_:
            thread.join(max(1.0, deadline - time.monotonic()))
        run.settle(deadline)
        wall = time.monotonic() - began
        run.server.stop()
        report, integrity = run.check()
        cuts = Counter()
        for tablet in run.tablets:
            cuts.update(tablet.cuts)
        report.figures = {
            "store": run.store.kind,
            "server": f"gunicorn, {workers} workers x {threads} threads",
            "kills (SIGKILL to master and workers)": len(kill_log),
            "  with a batch carrying changes in flight": sum(1 for _r, c in kill_log if c),
            "  requests / changes in flight at the kills": (
                f"{sum(r for r, _c in kill_log)} / {sum(c for _r, c in kill_log)}"
            ),
            "restart time (mean / max)": (
                f"{sum(restarts) / max(1, len(restarts)):.1f} / {max(restarts, default=0):.1f} s"
            ),
            "batches cut by a kill": sum(cuts.values()),
            "  committed whole before the kill": cuts["committed"],
            "  rolled back whole (or never started)": cuts["not_committed"],
            "  cut again before an answer (undetermined)": cuts["undetermined"],
            "  half-applied": cuts["half_applied"],
            **report.figures,
        }
        if cuts["half_applied"]:
            report.fail(f"{cuts['half_applied']} batches were half-applied")
        if stalled:
            report.fail(f"tablets did not get through after restarts {sorted(set(stalled))}")
        traffic(run, report)
        report.figures["wall time"] = f"{wall:.0f} s"
        if time.monotonic() > deadline:
            report.fail(f"did not converge within {timeout:.0f} s")
        return show("crash", [report, integrity], out)
    finally:
        done_killing.append(True)
        if run.server.proc is not None:
            out(run.server.tail(20))
        run.close(keep_schema)


def main(argv=None) -> int:
    """Command line: run the crash test, exit 1 on any failure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tablets", type=int, default=20)
    parser.add_argument("--changes", type=int, default=300)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--settle", type=float, default=300, help="seconds to drain at the end")
    args = parser.parse_args(argv)
    ok = run_crash(
        args.tablets,
        args.changes,
        args.kills,
        args.workers,
        args.threads,
        seed=args.seed,
        timeout=args.timeout,
        settle=args.settle,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
