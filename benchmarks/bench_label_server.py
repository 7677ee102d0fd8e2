"""Latency of the label server's "next request" (GET /api/next) under load.

Run:  .venv/bin/python benchmarks/bench_label_server.py [--people 20] [--frames 500]
          [--think 0] [--cluster [--shards 4]] [--progress-every 10 | --no-progress]

The label server runs as ``gtx-stream label-server`` (uvicorn, a process of its own, real
HTTP on a local port) over a fresh redis-server of its own. ``--people`` simulated people
(httpx clients with their session cookies, one thread each) and 2 machine labelers label
``--frames`` frames with the real aggregator (tests/server/load_sim.py).

``--cluster``: the same load with the state and streams on a fresh local Redis Cluster of 3
masters, no replicas (``tests/cluster_fixtures.py``; ``redis.cluster = true``,
``redis.wait_replicas = 0``), ``aggregator.shards = --shards`` (a ShardedAggregator in the
benchmark's process owns them all) and the label requests (RQ) on a standalone redis-server
(``redis.queue_url``). A person's hand is then kept per shard (``gtx:{s<k>}:person:<id>:hand``),
so /api/next reads one hand per shard, pipelined.

Each person also asks GET /api/progress as the page (label.js) does: once when the page
loads, after every answer, when new work reaches an empty screen and every 10 s
(``--progress-every``; 0: no timer), from a thread of its own with the person's cookie (the
page does not wait for it; a call asked for while one is in flight is made once after it).
``--no-progress``: they never ask it (the benchmark before it did). Printed for it: p50, p95,
p99, its app time (Server-Timing) and the ``waiting`` counts it returned, which grow with the
person's RQ queue (one HGETALL per queued job).

Every person's GET /api/next is timed and, as the baseline of the same run, a probe GETs a
static file (/static/label.css: HTTP, routing and the event loop, no Redis) every 10 ms.
``--think`` gives each person a mean time per answer (default 0: answers at once, a stress
test). Printed: p50, p95, p99 of both (and of the app's own time in /api/next, from its
Server-Timing header), their ratio, and the target (p95 of /api/next below 50 ms).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gtx_stream.config import Settings  # noqa: E402
from gtx_stream.ops.embedded import EmbeddedRedis  # noqa: E402
from gtx_stream.store.cluster import cluster_client  # noqa: E402
from gtx_stream.store.keys import Keys  # noqa: E402
from tests.cluster_fixtures import LocalCluster  # noqa: E402
from tests.server.load_sim import LoadRun, finalised, load_settings, run_load  # noqa: E402

TARGET_P95_MS = 50.0
PAGE_PROGRESS_SECONDS = 10.0  # label.js: setInterval(progress, 10000)


@dataclass
class Progress:
    """Every GET /api/progress of the run: its time, its app time, the ``waiting`` it said."""

    seconds: list[float] = field(default_factory=list)
    server_seconds: list[float] = field(default_factory=list)
    waiting: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Page(httpx.Client):
    """A person's client that also asks /api/progress when label.js would: once the page
    (``/``) is loaded, after each answer, when /api/next hands work to an empty screen (the
    previous one said 204), and every ``every`` seconds (0: no timer). The calls run in a
    thread of their own, with the person's cookies, as the page does not wait for them."""

    def __init__(self, base: str, every: float, stats: Progress, stop: threading.Event) -> None:
        super().__init__(base_url=base)
        self._every, self._stats, self._stop = every, stats, stop
        self._wake, self._done = threading.Event(), threading.Event()
        self._poller: threading.Thread | None = None
        self._idle = True  # nothing on screen yet

    def request(self, method: str, url: Any, *args: Any, **kwargs: Any) -> httpx.Response:
        res = super().request(method, url, *args, **kwargs)
        path = str(url)
        if path == "/" and self._poller is None:
            self._poller = threading.Thread(target=self._poll, daemon=True)
            self._poller.start()
        elif path == "/api/answer" and res.status_code == 200:
            self._wake.set()
        elif path == "/api/next":
            if res.status_code == 200 and self._idle:
                self._wake.set()
            self._idle = res.status_code != 200
        return res

    def _poll(self) -> None:
        with httpx.Client(base_url=self.base_url, cookies=self.cookies) as http:
            while not self._done.is_set():
                t0 = time.perf_counter()
                try:
                    res = http.get("/api/progress")
                except httpx.HTTPError as err:  # the server is gone once the run is over
                    if not self._stop.is_set():
                        self._stats.errors.append(f"/api/progress: {err!r}")
                    return
                took = time.perf_counter() - t0
                with self._stats.lock:
                    if res.status_code != 200:
                        self._stats.errors.append(f"/api/progress {res.status_code}")
                        return
                    timing = res.headers.get("server-timing", "app;dur=nan")
                    self._stats.seconds.append(took)
                    self._stats.server_seconds.append(float(timing.rpartition("=")[2]) / 1000)
                    self._stats.waiting.append(int(res.json()["waiting"]))
                self._wake.wait(self._every or None)
                self._wake.clear()

    def close(self) -> None:
        self._done.set()
        self._wake.set()
        if self._poller is not None:
            self._poller.join(timeout=10)
        super().close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ms(values: list[float]) -> dict[str, float]:
    a = np.asarray(values) * 1000
    return {q: float(np.percentile(a, p)) for q, p in (("p50", 50), ("p95", 95), ("p99", 99))}


@contextlib.contextmanager
def _standalone(settings: Settings) -> Iterator[tuple[Any, Keys, Settings, dict[str, str], Any]]:
    """The state and the label requests on one fresh redis-server."""
    with EmbeddedRedis() as server:
        r = redis.Redis.from_url(server.url)
        try:
            yield r, Keys(), settings, {"GTX_REDIS__URL": server.url}, None
        finally:
            r.close()


@contextlib.contextmanager
def _cluster(
    settings: Settings, shards: int
) -> Iterator[tuple[Any, Keys, Settings, dict[str, str], Any]]:
    """The state and streams on a fresh 3-master Redis Cluster, ``shards`` shards; the label
    requests on a fresh standalone redis-server."""
    agg = settings.aggregator.model_copy(update={"shards": shards})
    settings = settings.model_copy(update={"aggregator": agg})
    with LocalCluster(replicas=0) as cluster, EmbeddedRedis() as queue_server:
        r = cluster_client(cluster.url, wait_replicas=0)
        queue = redis.Redis.from_url(queue_server.url)
        env = {"GTX_REDIS__URL": cluster.url, "GTX_REDIS__CLUSTER": "true",
               "GTX_REDIS__QUEUE_URL": queue_server.url, "GTX_REDIS__WAIT_REPLICAS": "0",
               "GTX_AGGREGATOR__SHARDS": str(shards)}  # fmt: skip
        try:
            yield r, Keys(shards=shards, cluster=True), settings, env, queue
        finally:
            r.close()
            queue.close()


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
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="the state on a local 3-master Redis Cluster, RQ on a standalone redis-server",
    )
    parser.add_argument("--shards", type=int, default=4, help="aggregator.shards with --cluster")
    parser.add_argument(
        "--progress-every",
        type=float,
        default=PAGE_PROGRESS_SECONDS,
        help="seconds between a person's timed GET /api/progress, besides those after each "
        "answer (default 10, the page's; 0: no timer)",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="people never ask GET /api/progress"
    )
    args = parser.parse_args()
    settings = load_settings(args.people)
    backend = _cluster(settings, args.shards) if args.cluster else _standalone(settings)
    with backend as (r, keys, settings, redis_env, queue):
        port = _free_port()
        env = {**os.environ, **redis_env,
               "GTX_LABELERS": json.dumps([lab.model_dump() for lab in settings.labelers]),
               "GTX_GOLD": json.dumps({"qualification": 0, "rate": 0.0})}  # fmt: skip
        web = subprocess.Popen(
            [sys.executable, "-m", "gtx_stream", "--log-level", "WARNING", "label-server",
             "--port", str(port)], env=env,
        )  # fmt: skip
        stop = threading.Event()
        try:
            run, baseline, progress = _measure(r, keys, settings, port, args, queue, stop)
        finally:  # the server goes before its Redis (the context's exit)
            stop.set()
            web.terminate()
            web.wait(timeout=10)
        if run.errors or progress.errors:
            raise SystemExit(f"errors: {(run.errors + progress.errors)[:5]}")
        _report(args, finalised(r, keys), run, baseline, progress)


def _measure(
    r: Any, keys: Keys, settings: Settings, port: int, args: argparse.Namespace, queue: Any,
    stop: threading.Event,
) -> tuple[LoadRun, list[float], Progress]:  # fmt: skip
    """The load against the server on ``port``, with the static-file probe meanwhile."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz")
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    base = f"http://127.0.0.1:{port}"
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
    try:
        progress = Progress()
        clients = (lambda: httpx.Client(base_url=base)) if args.no_progress else (
            lambda: _Page(base, args.progress_every, progress, stop))  # fmt: skip
        run = run_load(r, keys, settings, clients, n_frames=args.frames, timeout=600,
                       think=args.think, queue=queue)  # fmt: skip
    finally:
        stop.set()
        prober.join()
    return run, baseline, progress


def _report(
    args: argparse.Namespace, done: int, run: LoadRun, baseline: list[float], progress: Progress
) -> None:
    labels = sum(len(s) for s in run.seen.values())
    where = f"a 3-master cluster, {args.shards} shards" if args.cluster else "redis-server"
    print(f"label server on {where}: {args.people} people (think {args.think:g} s) + "
          f"2 machines: {done}/{args.frames} frames finalised in {run.seconds:.1f} s, "
          f"{labels} labels by people")  # fmt: skip
    polling = "off" if args.no_progress else f"every {args.progress_every:g} s and per answer"
    print(f"/api/progress polling: {polling}")
    rows = [("GET /api/next", run.next_seconds), ("  in the app (Server-Timing)",
            run.server_seconds), ("GET /api/progress", progress.seconds),
            ("  in the app (Server-Timing)", progress.server_seconds),
            ("GET /static (baseline)", baseline)]  # fmt: skip
    for name, values in rows:
        if not values:
            continue
        q = _ms(values)
        print(f"{name:<30} n={len(values):6d}  p50 {q['p50']:7.2f} ms  "
              f"p95 {q['p95']:7.2f} ms  p99 {q['p99']:7.2f} ms")  # fmt: skip
    nxt, static = _ms(run.next_seconds)["p95"], _ms(baseline)["p95"]
    print(f"ratio p95 next/static: {nxt / static:.2f}; target p95 < {TARGET_P95_MS:g} ms: "
          f"{'met' if nxt < TARGET_P95_MS else 'MISSED'}")  # fmt: skip
    if progress.seconds:
        w = np.asarray(progress.waiting)
        print(f"ratio p95 progress/static: {_ms(progress.seconds)['p95'] / static:.2f}; "
              f"waiting: median {np.median(w):g}, p95 {np.percentile(w, 95):g}, "
              f"max {w.max()}")  # fmt: skip
        app = np.asarray(progress.server_seconds) * 1000
        edges = [0, 10, 50, 100, 250, 500, 1000, 10**9]
        for lo, hi in zip(edges, edges[1:], strict=False):
            mask = (w >= lo) & (w < hi)
            if mask.any():
                print(f"  waiting {lo}..{min(hi, int(w.max()) + 1) - 1}: n={int(mask.sum()):5d}  "
                      f"app p50 {np.median(app[mask]):7.2f} ms  "
                      f"p95 {np.percentile(app[mask], 95):7.2f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
