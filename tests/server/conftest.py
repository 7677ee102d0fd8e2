"""The label server against a real Redis and the real aggregator, in one process.

People are Starlette ``TestClient``s (httpx) holding their session cookie; the aggregator
(:class:`Aggregator`, stepped by the test) enqueues people's requests as real RQ jobs on their
queues (the label server pops them) and machine labelers' requests into a
:class:`~tests.aggregator_harness.Capture`, answered with seeded simulated labels.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from starlette.testclient import TestClient

from gtx_stream.config import AggregatorSettings, LabelerSettings, Settings
from gtx_stream.core.records import LabelRequest
from gtx_stream.pipeline.aggregate.aggregator import Aggregator
from gtx_stream.pipeline.label.requests import enqueue_requests
from gtx_stream.server.app import build_app
from gtx_stream.server.state import ServerState
from gtx_stream.store.keys import Keys
from gtx_stream.store.people import create_invite
from tests.aggregator_harness import Capture, answer, register

PEOPLE = ("alice", "bob")
MACHINES = {"m1": 0.8, "m2": 0.75}


def make_settings(people: Sequence[str] = PEOPLE, **aggregator: Any) -> Settings:
    labelers = [LabelerSettings(id=p, backend="human") for p in people]
    labelers += [LabelerSettings(id=m, accuracy=a) for m, a in MACHINES.items()]
    agg = AggregatorSettings(**{"sweep_seconds": 0.05, "tau": 0.95, "kappa": 3, **aggregator})
    # no gold in these feeds: test_gold_feed.py slips it in
    no_gold = {"gold": {"qualification": 0, "rate": 0.0}} if "gold" in Settings.model_fields else {}
    return Settings(aggregator=agg, labelers=labelers, **no_gold)


class SplitEnqueue:
    """People's requests become RQ jobs; machines' are captured (answered by the test)."""

    def __init__(self, people: Sequence[str]) -> None:
        self.people = set(people)
        self.machines = Capture()

    def __call__(
        self, client: redis.Redis, keys: Keys, requests: Sequence[LabelRequest], lease: float
    ) -> None:
        human = [r for r in requests if r.labeler_id in self.people]
        if human:
            enqueue_requests(client, keys, human, lease)
        self.machines(client, keys, [r for r in requests if r.labeler_id not in self.people], 0)


@dataclass
class Pipeline:
    r: redis.Redis  # bytes replies, the server's client
    keys: Keys
    settings: Settings
    agg: Aggregator
    enqueue: SplitEnqueue
    app: Any
    clients: list[TestClient] = field(default_factory=list)

    def step(self, n: int = 1, machines: bool = True) -> None:
        """Step the aggregator ``n`` times, machines answering what they were asked."""
        for _ in range(n):
            self.agg.step(block_ms=1)
            if machines:
                answer(self.r, self.keys, self.enqueue.machines, MACHINES)

    def person(self, labeler_id: str) -> PersonClient:
        client = TestClient(self.app, base_url="http://testserver")
        self.clients.append(client)
        token = create_invite(self.r, self.keys, labeler_id, 3600)
        return PersonClient(client, labeler_id, token)

    def final(self) -> dict[str, dict[str, str]]:
        out = {}
        for _, fields in self.r.xrange(self.keys.final):
            rec = {k.decode(): v.decode() for k, v in fields.items()}
            out[rec["frame_id"]] = rec
        return out


CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


@dataclass
class PersonClient:
    http: TestClient
    labeler_id: str
    invite: str
    csrf: str = ""

    def login(self) -> None:
        res = self.http.get(f"/login/{self.invite}")
        assert res.status_code == 200, res.text
        page = self.http.get("/")
        assert page.status_code == 200
        found = CSRF.search(page.text)
        assert found
        self.csrf = found.group(1)

    def post(self, path: str, body: Any = None, csrf: bool = True) -> Any:
        headers = {"X-CSRF-Token": self.csrf} if csrf else {}
        return self.http.post(path, json=body if body is not None else {}, headers=headers)

    def beat(self) -> None:
        assert self.post("/api/heartbeat").status_code == 200

    def next(self) -> dict[str, Any] | None:
        res = self.http.get("/api/next")
        assert res.status_code in (200, 204), res.text
        return res.json() if res.status_code == 200 else None

    def answer(self, token: str, label: int) -> Any:
        return self.post("/api/answer", {"token": token, "label": label})

    def skip(self, token: str) -> Any:
        return self.post("/api/skip", {"token": token})


def open_frames(p: Pipeline, n: int, start: int = 0) -> list[str]:
    from tests.aggregator_harness import open_frame

    return [open_frame(p.r, p.keys, start + i, truth=(start + i) % 2) for i in range(n)]


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def build_pipeline(
    raw: redis.Redis, settings: Settings, people: Sequence[str], machines: bool = False
) -> Pipeline:
    """People (and, with ``machines``, the machine labelers) registered; nobody live yet."""
    keys = Keys(settings.redis.prefix)
    enqueue = SplitEnqueue(people)
    agg = Aggregator(raw, keys, settings.aggregator, consumer="a1", enqueue=enqueue,
                     labeler_leases=settings.labeler_leases())  # fmt: skip
    agg.setup()
    register(raw, keys, {p: 0.9 for p in people}, live=False)
    if machines:
        register(raw, keys, MACHINES, live=False)
    app = build_app(ServerState(raw, keys, settings))
    return Pipeline(raw, keys, settings, agg, enqueue, app)


@pytest.fixture
def pipeline(raw: redis.Redis) -> Iterator[Pipeline]:
    p = build_pipeline(raw, make_settings(), PEOPLE)
    yield p
    for client in p.clients:
        client.close()


def machines_live(p: Pipeline) -> None:
    p.r.zadd(p.keys.live, {m: time.time() + 3600 for m in MACHINES})
