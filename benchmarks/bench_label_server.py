"""Latency of the label server's "next request" (GET /api/next) under load.

Run:  .venv/bin/python benchmarks/bench_label_server.py [--people 20] [--frames 500]
          [--think 0] [--cluster [--shards 4]]

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
            run, baseline = _measure(r, keys, settings, port, args, queue, stop)
        finally:  # the server goes before its Redis (the context's exit)
            stop.set()
            web.terminate()
            web.wait(timeout=10)
        if run.errors:
            raise SystemExit(f"errors: {run.errors[:5]}")
        _report(args, finalised(r, keys), run, baseline)


def _measure(
    r: Any, keys: Keys, settings: Settings, port: int, args: argparse.Namespace, queue: Any,
    stop: threading.Event,
) -> tuple[LoadRun, list[float]]:  # fmt: skip
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
        clients = lambda: httpx.Client(base_url=base)  # noqa: E731
        run = run_load(r, keys, settings, clients, n_frames=args.frames, timeout=600,
                       think=args.think, queue=queue)  # fmt: skip
    finally:
        stop.set()
        prober.join()
    return run, baseline


def _report(args: argparse.Namespace, done: int, run: LoadRun, baseline: list[float]) -> None:
    labels = sum(len(s) for s in run.seen.values())
    where = f"a 3-master cluster, {args.shards} shards" if args.cluster else "redis-server"
    print(f"label server on {where}: {args.people} people (think {args.think:g} s) + "
          f"2 machines: {done}/{args.frames} frames finalised in {run.seconds:.1f} s, "
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
