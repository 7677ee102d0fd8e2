"""Latency of the label server's "next request" (GET /api/next) under load.

Run:  .venv/bin/python benchmarks/bench_label_server.py [--people 20] [--frames 500]

The label server runs as ``gtx-stream label-server`` (uvicorn, a process of its own, real
HTTP on a local port) over a fresh redis-server of its own. ``--people`` simulated people
(httpx clients with their session cookies, one thread each) and 2 machine labelers label
``--frames`` frames with the real aggregator (tests/server/load_sim.py). Every person's
GET /api/next is timed and, as the baseline of the same run, a probe GETs a static file
(/static/label.css: HTTP, routing and the event loop, no Redis) every 10 ms meanwhile.
``--think`` gives each person a mean time per answer (default 0: answers at once, a stress
test). Printed: p50, p95, p99 of both (and of the app's own time in /api/next, from its
Server-Timing header), their ratio, and the target (p95 of /api/next below 50 ms).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gtx_stream.ops.embedded import EmbeddedRedis  # noqa: E402
from gtx_stream.store.keys import Keys  # noqa: E402
from tests.server.load_sim import load_settings, run_load  # noqa: E402

TARGET_P95_MS = 50.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ms(values: list[float]) -> dict[str, float]:
    a = np.asarray(values) * 1000
    return {q: float(np.percentile(a, p)) for q, p in (("p50", 50), ("p95", 95), ("p99", 99))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, default=20)
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument(
        "--think",
        type=float,
        default=0.0,
        help="mean seconds a person takes per answer (0: at once, a stress test)",
    )
    args = parser.parse_args()
    with EmbeddedRedis() as server:
        r = redis.Redis.from_url(server.url)
        keys = Keys()
        settings = load_settings(args.people)
        port = _free_port()
        env = {**os.environ, "GTX_REDIS__URL": server.url,
               "GTX_LABELERS": json.dumps([lab.model_dump() for lab in settings.labelers]),
               "GTX_GOLD": json.dumps({"qualification": 0, "rate": 0.0})}  # fmt: skip
        web = subprocess.Popen(
            [sys.executable, "-m", "gtx_stream", "--log-level", "WARNING", "label-server",
             "--port", str(port)], env=env,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz")
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        base = f"http://127.0.0.1:{port}"
        stop = threading.Event()
        baseline: list[float] = []

        def probe() -> None:
            with httpx.Client(base_url=base) as http:
                while not stop.is_set():
                    t0 = time.perf_counter()
                    assert http.get("/static/label.css").status_code == 200
                    baseline.append(time.perf_counter() - t0)
                    stop.wait(0.01)

        prober = threading.Thread(target=probe, daemon=True)
        prober.start()
        run = run_load(r, keys, settings, lambda: httpx.Client(base_url=base),
                       n_frames=args.frames, timeout=600, think=args.think)  # fmt: skip
        stop.set()
        prober.join()
        web.terminate()
        web.wait(timeout=10)
        if run.errors:
            raise SystemExit(f"errors: {run.errors[:5]}")
        finalised = r.xlen(keys.final)
        labels = sum(len(s) for s in run.seen.values())
        print(f"label server: {args.people} people (think {args.think:g} s) + 2 machines: "
              f"{finalised}/{args.frames} frames finalised in {run.seconds:.1f} s, "
              f"{labels} labels by people")  # fmt: skip
        rows = [("GET /api/next", run.next_seconds), ("  in the app (Server-Timing)",
                run.server_seconds), ("GET /static (baseline)", baseline)]  # fmt: skip
        for name, values in rows:
            q = _ms(values)
            print(f"{name:<30} n={len(values):6d}  p50 {q['p50']:7.2f} ms  "
                  f"p95 {q['p95']:7.2f} ms  p99 {q['p99']:7.2f} ms")  # fmt: skip
        nxt, static = _ms(run.next_seconds)["p95"], _ms(baseline)["p95"]
        print(f"ratio p95 next/static: {nxt / static:.2f}; target p95 < {TARGET_P95_MS:g} ms: "
              f"{'met' if nxt < TARGET_P95_MS else 'MISSED'}")  # fmt: skip


if __name__ == "__main__":
    main()
