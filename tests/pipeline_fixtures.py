"""Helpers for the process tests: a pipeline config in a temporary folder, its services as real
processes (:class:`gtx_stream.ops.supervisor.Supervisor`), waiting on Redis, and record checks.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import redis

from gtx_stream.ops.demo import write_config
from gtx_stream.ops.supervisor import Service, Supervisor
from gtx_stream.store.keys import Keys

FINAL_FIELDS = (
    "frame_id",
    "source",
    "frame_index",
    "label",
    "confidence",
    "p1",
    "n_labels",
    "labelers",
    "labels",
    "reason",
    "opened_at",
    "finalised_at",
)
REASONS = {"confident", "kappa", "exhausted", "budget"}


@dataclass
class Pipeline:
    """One pipeline's services, config file and Redis client (``decode_responses=True``)."""

    sup: Supervisor
    client: redis.Redis
    keys: Keys
    config: Path

    def start(self, name: str, *command: str) -> Service:
        return self.sup.start(name, *command)

    def logs(self, lines: int = 15) -> str:
        return "\n".join(
            f"--- {s.name} (exit {s.returncode}) ---\n{s.tail(lines)}"
            for s in self.sup.services.values()
        )

    def wait_until(
        self,
        predicate: Callable[[], bool],
        what: str,
        timeout: float = 60.0,
        allow_exit: Sequence[str] = (),
    ) -> None:
        """Poll ``predicate`` until true; fail (with the logs) on timeout or a failed service.

        Services must keep running meanwhile, except the ingester (it ends with its input) and
        those named in ``allow_exit`` (stopped by the test).
        """
        deadline = time.monotonic() + timeout
        while True:
            if predicate():
                return
            failed = self.sup.failed()
            if failed:
                raise AssertionError(
                    f"{failed[0].name} exited with {failed[0].returncode} while waiting for "
                    f"{what}\n{self.logs()}"
                )
            gone = [
                s.name
                for s in self.sup.services.values()
                if s.returncode == 0 and s.name not in allow_exit and s.name != "ingester"
            ]
            if gone:
                raise AssertionError(f"{gone} exited while waiting for {what}\n{self.logs()}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out ({timeout:.0f} s) waiting for {what}\n{self.logs()}"
                )
            time.sleep(0.1)

    def wait_live(self, labeler_ids: Sequence[str], timeout: float = 30.0) -> None:
        """Until every labeler has a worker heartbeat (dispatch sees all of them from the start)."""
        want = set(labeler_ids)

        def all_live() -> bool:
            return want <= set(self.client.zrange(self.keys.live, 0, -1))

        self.wait_until(all_live, f"labelers {sorted(want)} to be live", timeout)

    def wait_aggregator_group(self, timeout: float = 30.0) -> None:
        """Until the aggregator has created its consumer group (it is reading)."""

        def has_group() -> bool:
            try:
                return bool(self.client.xinfo_groups(self.keys.opened))
            except redis.ResponseError:
                return False

        self.wait_until(has_group, "the aggregator's consumer group", timeout)

    def finished(self, n_frames: int | None = None) -> bool:
        """The ingester has exited and nothing is open (and ``n_frames`` are final, if given)."""
        ingester = self.sup.services.get("ingester")
        if ingester is not None and ingester.running:
            return False
        if self.client.zcard(self.keys.open_frames):
            return False
        return n_frames is None or self.client.xlen(self.keys.final) >= n_frames


@contextmanager
def pipeline(
    tmp_path: Path,
    redis_url: str,
    *,
    prefix: str = "gtx",
    aggregator: dict[str, Any] | None = None,
    ingest: dict[str, Any] | None = None,
    labelers: Sequence[dict[str, Any]] = (),
    retention: dict[str, Any] | None = None,
) -> Iterator[Pipeline]:
    """Write ``pipeline.toml`` for the test's Redis; stop every service started, on exit."""
    config = tmp_path / "pipeline.toml"
    sections: dict[str, dict[str, Any]] = {"redis": {"url": redis_url, "prefix": prefix}}
    if aggregator:
        sections["aggregator"] = aggregator
    if ingest:
        sections["ingest"] = ingest
    if retention:
        sections["retention"] = retention
    write_config(config, sections, list(labelers))
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    sup = Supervisor(config=config, log_dir=tmp_path / "logs")
    try:
        yield Pipeline(sup, client, Keys(prefix), config)
    finally:
        sup.stop_all(timeout=10)
        client.close()


def final_records(client: redis.Redis, keys: Keys) -> list[dict[str, str]]:
    return [dict(fields) for _, fields in cast(list[Any], client.xrange(keys.final))]


def stream_entries(client: redis.Redis, stream: str) -> list[dict[str, str]]:
    return [dict(fields) for _, fields in cast(list[Any], client.xrange(stream))]


def check_final_records(records: Sequence[dict[str, str]], tau: float, kappa: int) -> None:
    """What every finalised record must satisfy, whatever happened on the way.

    Fields present, one record per frame, labelers drawn without replacement (invariant 1),
    label counts and lists that agree, a reason that fits the numbers.
    """
    frame_ids = [f["frame_id"] for f in records]
    assert len(set(frame_ids)) == len(frame_ids), "a frame was finalised twice"
    for f in records:
        missing = [name for name in FINAL_FIELDS if name not in f]
        assert not missing, f"{f.get('frame_id')}: missing fields {missing}"
        labelers = json.loads(f["labelers"])
        labels = json.loads(f["labels"])
        n = int(f["n_labels"])
        assert len(labelers) == len(labels) == n, f
        assert len(set(labelers)) == n, f"{f['frame_id']}: a labeler labeled twice: {labelers}"
        assert set(labels) <= {0, 1}, f
        assert f["label"] in ("0", "1"), f
        assert 1 <= n <= kappa, f
        p1, confidence = float(f["p1"]), float(f["confidence"])
        assert abs(confidence - max(p1, 1.0 - p1)) < 1e-12, f
        if p1 != 0.5:
            assert int(f["label"]) == int(p1 > 0.5), f
        assert f["reason"] in REASONS, f
        if f["reason"] == "confident":
            assert confidence >= tau, f
        if f["reason"] == "kappa":
            assert n == kappa, f
        assert float(f["finalised_at"]) >= float(f["opened_at"]) > 0, f
