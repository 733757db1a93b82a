"""The load generator: a second process that sends GET requests to the server on loopback.

Run by `bench/run.py` as `python -m bench.load <json>`, where the JSON names the server, the
targets (name, path, cookies) and how long to drive each; it prints one JSON line back with,
per target, the requests answered 200, other answers, requests per second and latencies.
Each of `concurrency` threads keeps one HTTP/1.1 connection open (keep-alive, as a browser
would), sends back the cookies the server sets (as a browser would) and sends the next
request as soon as the last answer is read. A target with `"fresh": true` asks each time for
an address of its own (`?load=<n>`, which the pages ignore), so no page kept for an earlier
request (pages were once kept per address) is ever sent: every answer is made
afresh, as after a change in the store.
"""

import http.client
import itertools
import json
import sys
import threading
import time


def _take_cookies(headers: dict, resp) -> None:
    # as a browser does: a cookie the server sets is sent with the next request (the session
    # cookie moves on every half minute of activity, sessions.SEEN_GRANULARITY)
    changed = resp.msg.get_all("Set-Cookie") or []
    if not changed:
        return
    jar = dict(p.split("=", 1) for p in headers.get("Cookie", "").split("; ") if "=" in p)
    for line in changed:
        name, _, value = line.split(";", 1)[0].partition("=")
        jar[name.strip()] = value
    headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())


def _drive(host, port, paths, headers, until, counts, latencies, lock):
    conn = http.client.HTTPConnection(host, port, timeout=60)
    headers = dict(headers)
    done = bad = 0
    mine = []
    try:
        while time.perf_counter() < until:
            path = next(paths)
            began = time.perf_counter()
            try:
                conn.request("GET", path, headers=headers)
                resp = conn.getresponse()
                resp.read()
                _take_cookies(headers, resp)
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=60)
                bad += 1
                continue
            mine.append(time.perf_counter() - began)
            if resp.status == 200:
                done += 1
            else:
                bad += 1
    finally:
        conn.close()
    with lock:
        counts[0] += done
        counts[1] += bad
        latencies.extend(mine)


def run_target(host, port, target, seconds, concurrency) -> dict:
    """Drive one path with `concurrency` connections for `seconds`; return what came back."""
    headers = {"Accept-Encoding": "gzip", "Accept-Language": "nb"}
    if target.get("cookies"):
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in target["cookies"].items())
    counts, latencies, lock = [0, 0], [], threading.Lock()
    path = target["path"]
    if target.get("fresh"):
        numbers = itertools.count()  # next() on a count is atomic: threads may share it
        joint = "&" if "?" in path else "?"
        paths = map(f"{path}{joint}load={{}}".format, numbers)
    else:
        paths = itertools.repeat(path)
    began = time.perf_counter()
    until = began + seconds
    threads = [
        threading.Thread(
            target=_drive,
            args=(host, port, paths, headers, until, counts, latencies, lock),
        )
        for _ in range(concurrency)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        "name": target["name"],
        "ok": counts[0],
        "bad": counts[1],
        "seconds": elapsed,
        "rps": counts[0] / elapsed,
        "p50": latencies[len(latencies) // 2] if latencies else None,
        "p95": latencies[int(len(latencies) * 0.95)] if latencies else None,
    }


def main() -> int:
    """Read the plan from argv[1], drive each target in turn, print the results as JSON."""
    plan = json.loads(sys.argv[1])
    results = []
    for _round in range(plan.get("rounds", 1)):
        for target in plan["targets"]:
            results.append(
                run_target(plan["host"], plan["port"], target, plan["seconds"], plan["concurrency"])
            )
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
