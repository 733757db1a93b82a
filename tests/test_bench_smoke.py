"""`make bench` keeps working: a short run on a small store prints every figure it measured.

The budgets are not asserted here (speed belongs in the benchmark, not in unit tests); this
checks that the harness starts gunicorn, drives it from a second process and reports.
"""

import os
import re
import subprocess
import sys

from interview.config import ROOT

FIGURE = re.compile(r"^(PASS|FAIL|INFO)  (.+?) {2,}(\S.*?)\s*$")


def test_a_short_benchmark_run_prints_its_figures():
    env = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "IDENTITY_DATABASE_URL")
    }
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run",
            "--small",
            "--only",
            "sql,pages,latency,documents,sync,capacity",
            "--capacity-steps",
            "1",
            "--capacity-seconds",
            "0.5",
            "--capacity-settle",
            "0.2",
            "--seconds",
            "0.3",
            "--rounds",
            "1",
            "--latency-seconds",
            "0.3",
            "--batch",
            "20",
            "--sync-batches",
            "2",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode in (0, 1), run.stderr[-3000:]  # 1: a budget missed on a busy machine
    assert "Traceback" not in run.stdout + run.stderr
    figures = {}
    for line in run.stdout.splitlines():
        match = FIGURE.match(line)
        if match:
            figures[match.group(2).strip()] = (match.group(1), match.group(3))
    for name in (
        "SQL statements: interview page",
        "SQL statements: progress page",
        "trivial route (/healthz)",
        "interview page / trivial",
        "capacity (peers)",
        "interview list / trivial",
        "progress page / trivial",
        "p95 interview page (large)",
        "p95 alerts (large)",
        "interview page: afresh / figures kept (in-process)",
        "progress page: afresh / figures kept (in-process)",
        "guide PDF cold / one-page WeasyPrint",
        "guide PDF cached speed-up",
        "sync changes/s (batches of 20)",
        "sync / raw Core insert",
        "server errors (tracebacks)",
    ):
        assert name in figures, f"{name} missing from:\n{run.stdout}"
    assert figures["SQL statements: progress page"][0] == "PASS"  # same store: same statements
    assert figures["server errors (tracebacks)"][0] == "PASS"
    assert float(figures["trivial route (/healthz)"][1].split()[0]) > 0
    assert run.stdout.rstrip().splitlines()[-1].startswith("== sqlite:")
