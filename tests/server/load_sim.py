"""Simulated people and machines labeling together through the label server (load test and
``benchmarks/bench_label_server.py``).

``n_people`` people, each an HTTP client with their session cookie in its own thread, loop
``/api/next`` -> the image -> ``/api/answer`` (right with probability 0.9) and beat every
second; two machine labelers answer at once (captured requests, seeded simulated labels); the
real :class:`Aggregator` runs in a thread. Frames carry distinct JPEG stand-ins
(``frame-<index>``) so each person's client knows which frames it was shown.

On a Redis Cluster (``keys`` in the cluster layout, ``r`` a cluster client, ``queue`` the
standalone Redis of the label requests) the aggregator is a :class:`ShardedAggregator` that
owns every shard, and each machine label goes to its frame's shard.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis

from gtx_stream.config import AggregatorSettings, LabelerSettings, Settings
from gtx_stream.pipeline.aggregate.aggregator import Aggregator
from gtx_stream.pipeline.aggregate.shards import ShardedAggregator
from gtx_stream.store import frame_scripts
from gtx_stream.store.keys import Keys
from gtx_stream.store.people import create_invite
from gtx_stream.store.scripts import ScriptRunner
from tests.aggregator_harness import post_label, register
from tests.server.conftest import MACHINES, SplitEnqueue

CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)">')

POLL_SECONDS = 0.25
"""A person with nothing to label asks again after this (the page waits 2 s)."""

ClientFactory = Callable[[], AbstractContextManager[httpx.Client]]


def load_settings(n_people: int) -> Settings:
    people = [LabelerSettings(id=f"p{i:02d}", backend="human") for i in range(n_people)]
    machines = [LabelerSettings(id=m, accuracy=a) for m, a in MACHINES.items()]
    agg = AggregatorSettings(tau=0.95, kappa=3, sweep_seconds=0.2, block_ms=20)
    return Settings(aggregator=agg, labelers=people + machines,
                    gold={"qualification": 0, "rate": 0.0})  # fmt: skip


@dataclass
class LoadRun:
    frames: list[str]
    seen: dict[str, list[int]] = field(default_factory=dict)
    next_seconds: list[float] = field(default_factory=list)
    server_seconds: list[float] = field(default_factory=list)  # Server-Timing of /api/next
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


def open_frames(r: redis.Redis, keys: Keys, n: int) -> list[str]:
    calls = [frame_scripts.open_frame(
        keys, frame_id=f"load-{i}", frame_index=i, source="load", source_id="load",
        opened_at=time.time(), ttl=3600, max_open_frames=10**6, reserve_per_frame=0,
        jpeg=f"frame-{i}".encode(), fields={"truth": str(i % 2)},
    ) for i in range(n)]  # fmt: skip
    assert set(ScriptRunner(r).run(calls)) == {"opened"}
    return [f"load-{i}" for i in range(n)]


def _person(
    run: LoadRun, r: redis.Redis, keys: Keys, person: str, clients: ClientFactory,
    stop: threading.Event, seed: int, think: float,
) -> None:  # fmt: skip
    rng = random.Random(seed)
    seen: list[int] = []
    with clients() as http:
        try:
            token = create_invite(r, keys, person, 600)
            assert http.get(f"/login/{token}").status_code == 200
            found = CSRF.search(http.get("/").text)
            assert found is not None
            headers = {"X-CSRF-Token": found.group(1)}
            beat = 0.0
            while not stop.is_set():
                if time.monotonic() - beat > 1.0:
                    assert http.post("/api/heartbeat", headers=headers).status_code == 200
                    beat = time.monotonic()
                t0 = time.perf_counter()
                res = http.get("/api/next")
                took = time.perf_counter() - t0
                timing = res.headers.get("server-timing", "app;dur=nan")
                with run.lock:
                    run.next_seconds.append(took)
                    run.server_seconds.append(float(timing.rpartition("=")[2]) / 1000)
                if res.status_code == 204:
                    stop.wait(POLL_SECONDS)
                    continue
                assert res.status_code == 200, res.text
                item = res.json()
                image = http.get(item["image"])
                assert image.status_code == 200, image.text
                index = int(image.content.decode().removeprefix("frame-"))
                if index in seen:
                    run.errors.append(f"{person} was shown frame {index} twice")
                seen.append(index)
                if think:  # a person looks at the frame before pressing a key
                    stop.wait(rng.uniform(0.5 * think, 1.5 * think))
                label = index % 2 if rng.random() < 0.9 else 1 - index % 2
                done = http.post("/api/answer", json={"token": item["token"], "label": label},
                                 headers=headers)  # fmt: skip
                assert done.status_code == 200, done.text
        except Exception as err:  # reported by the caller
            run.errors.append(f"{person}: {type(err).__name__}: {err}")
        finally:
            with run.lock:
                run.seen[person] = seen


def _machines(r: redis.Redis, keys: Keys, enqueue: SplitEnqueue, stop: threading.Event) -> None:
    pending = enqueue.machines.pending
    while not stop.is_set():
        if not pending:
            stop.wait(0.005)
        while pending:  # as tests.aggregator_harness.answer, into the frame's shard
            req = pending.pop(0)
            post_label(r, keys.of_frame(req.frame_id), req, MACHINES)


def finalised(r: redis.Redis, keys: Keys) -> int:
    """Frames finalised: entries in the final stream (every shard's on a Redis Cluster)."""
    return sum(int(r.xlen(shard.final)) for shard in keys.state_shards())


def run_load(
    r: redis.Redis, keys: Keys, settings: Settings, clients: ClientFactory,
    n_frames: int = 500, timeout: float = 120.0, think: float = 0.0,
    queue: redis.Redis | None = None,
) -> LoadRun:  # fmt: skip
    """Label ``n_frames`` with the people of ``settings`` and two machines; returns when every
    frame is finalised (or at ``timeout``). ``think``: mean seconds a person takes to answer
    (0: at once, a stress test). ``queue``: where people's requests are enqueued (RQ; default
    ``r``), a standalone Redis when ``r`` is a Redis Cluster's client."""
    people = [lab.id for lab in settings.labelers if lab.backend == "human"]
    enqueue = SplitEnqueue(people)
    sharded = keys.cluster or settings.aggregator.shards > 1
    agg = (ShardedAggregator if sharded else Aggregator)(
        r, keys, settings.aggregator, consumer="load", enqueue=enqueue,
        labeler_leases=settings.labeler_leases(), queue_client=queue,
    )  # fmt: skip
    # registered first: a sharded aggregator's setup copies them into every shard's registry
    register(r, keys, {p: 0.9 for p in people}, live=False)
    register(r, keys, MACHINES, live=True)
    agg.setup()
    stop = threading.Event()
    run = LoadRun(open_frames(r, keys, n_frames))
    threads = [
        threading.Thread(target=agg.run, args=(stop,), daemon=True),
        threading.Thread(target=_machines, args=(r, keys, enqueue, stop), daemon=True),
    ]
    threads += [threading.Thread(target=_person,
                                 args=(run, r, keys, p, clients, stop, i, think), daemon=True)
                for i, p in enumerate(people)]  # fmt: skip
    t0 = time.monotonic()
    for thread in threads:
        thread.start()
    try:
        while time.monotonic() - t0 < timeout and not run.errors:
            if finalised(r, keys) >= n_frames:
                break
            time.sleep(0.05)
    finally:
        run.seconds = time.monotonic() - t0
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    return run


def held_by(r: redis.Redis, keys: Keys, frame_id: str) -> dict[str, Any]:
    return {k.decode(): v.decode() for k, v in r.hgetall(keys.frame_requests(frame_id)).items()}
