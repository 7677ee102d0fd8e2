"""Several sources in one ingester process: one thread per source, each its own
:func:`~gtx_stream.pipeline.ingest.ingester.run_ingest`.

A source that fails (a file that cannot be read, a camera that is gone for good) ends with its
error and the others go on; a camera or stream that drops out is reopened with backoff, as
with one source. ``stop`` ends them all after their current frame. A sources file lists one
source per line, ``SOURCE [NAME]`` (NAME: its source id; default a hash of SOURCE); blank
lines and lines starting with ``#`` are left out.
"""

from __future__ import annotations

import logging
import shlex
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import redis

from gtx_stream.config import Settings
from gtx_stream.pipeline.ingest.ingester import IngestReport, run_ingest
from gtx_stream.pipeline.ingest.sources import SourceError
from gtx_stream.store.keys import Keys
from gtx_stream.store.shards import configured_keys

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceSpec:
    source: str
    source_id: str | None = None


@dataclass
class SourceOutcome:
    spec: SourceSpec
    report: IngestReport | None = None
    error: str | None = None

    def summary(self) -> str:
        if self.report is not None:
            return self.report.summary()
        return f"ingest {self.spec.source}: failed: {self.error}"


def read_sources_file(path: str | Path) -> list[SourceSpec]:
    """The sources of a sources file (module docstring); SourceError for a bad line."""
    file = Path(path)
    if not file.is_file():
        raise SourceError(f"{file}: no such sources file")
    out = []
    for n, line in enumerate(file.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            words = shlex.split(line)
        except ValueError as err:
            raise SourceError(f"{file}: line {n}: {err}") from None
        if len(words) > 2:
            raise SourceError(f"{file}: line {n}: expected 'SOURCE [NAME]', got {line!r}")
        out.append(SourceSpec(words[0], words[1] if len(words) == 2 else None))
    if not out:
        raise SourceError(f"{file}: no source in it")
    return out


def check_unique(specs: Sequence[SourceSpec]) -> None:
    seen: set[str] = set()
    for spec in specs:
        key = spec.source_id or spec.source
        if key in seen:
            raise SourceError(f"source {key!r} is given twice")
        seen.add(key)


def run_many(
    client: redis.Redis,
    keys: Keys,
    settings: Settings,
    specs: Sequence[SourceSpec],
    stop: threading.Event,
) -> list[SourceOutcome]:
    """Ingest every source at once until each ends; one outcome per source, in order."""
    check_unique(specs)
    keys = configured_keys(client, keys, settings.aggregator.shards)  # once, before any thread
    outcomes = [SourceOutcome(spec) for spec in specs]

    def one(out: SourceOutcome) -> None:
        try:
            out.report = run_ingest(client, keys, settings, out.spec.source, stop_event=stop,
                                    source_id=out.spec.source_id)  # fmt: skip
        except (SourceError, redis.RedisError, OSError) as err:
            out.error = str(err)
            log.error("source %s failed, the others go on: %s", out.spec.source, err)
        except Exception as err:  # one source's bug must not take the others down
            out.error = f"{type(err).__name__}: {err}"
            log.exception("source %s failed, the others go on", out.spec.source)

    threads = [
        threading.Thread(target=one, args=(out,), name=f"ingest-{i}", daemon=True)
        for i, out in enumerate(outcomes)
    ]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(timeout=0.5)
    return outcomes
