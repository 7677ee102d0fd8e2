"""Several sources in one ingester process: one thread per source, each its own
:func:`~gtx_stream.pipeline.ingest.ingester.run_ingest`.

A source that fails (a file that cannot be read, a camera that is gone for good) ends with its
error and the others go on; a camera or stream that drops out is reopened with backoff, as
with one source. ``stop`` ends them all after their current frame. A sources file lists one
source per line, ``SOURCE [NAME] [truth=CSV]``, its words split as a shell does (quote a word
with spaces): NAME is its source id (default a hash of SOURCE), CSV its ``frame_index,truth``
file, relative to the sources file's folder. SOURCE is always the first word, and a NAME holds
no ``=``, so a path or URL with ``=`` in it stays a SOURCE. Blank lines and lines starting with
``#`` are left out.
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
from gtx_stream.pipeline.ingest.sources import InputError, SourceError, read_truth_csv
from gtx_stream.store.keys import Keys
from gtx_stream.store.shards import configured_keys

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceSpec:
    source: str
    source_id: str | None = None
    truth: str | None = None  # its frame_index,truth CSV


@dataclass
class SourceOutcome:
    spec: SourceSpec
    report: IngestReport | None = None
    error: str | None = None
    input_error: bool = False  # the error is an InputError: a restart fails the same way

    def summary(self) -> str:
        if self.report is not None:
            return self.report.summary()
        return f"ingest {self.spec.source}: failed: {self.error}"


TRUTH = "truth="
SOURCES_LINE = "SOURCE [NAME] [truth=CSV]"


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
        truths = [w.removeprefix(TRUTH) for w in words[1:] if w.startswith(TRUTH)]
        names = [w for w in words[1:] if not w.startswith(TRUTH)]
        if len(names) > 1 or len(truths) > 1 or "" in truths:
            raise SourceError(f"{file}: line {n}: expected {SOURCES_LINE!r}, got {line!r}")
        truth = str(file.parent / Path(truths[0]).expanduser()) if truths else None
        out.append(SourceSpec(words[0], names[0] if names else None, truth))
    if not out:
        raise SourceError(f"{file}: no source in it")
    return out


def read_truths(specs: Sequence[SourceSpec]) -> list[dict[int, int] | None]:
    """Each source's truth per frame index (None: it has no truth file), all read at once so
    that a missing or malformed file is refused before any source starts (SourceError)."""
    out: list[dict[int, int] | None] = []
    for spec in specs:
        try:
            out.append(read_truth_csv(spec.truth) if spec.truth is not None else None)
        except SourceError as err:
            raise SourceError(f"truth of {spec.source}: {err}") from None
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
    truths: Sequence[dict[int, int] | None] | None = None,
) -> list[SourceOutcome]:
    """Ingest every source at once until each ends; one outcome per source, in order.

    ``truths``: each source's truth per frame index, as :func:`read_truths` gives them (read
    here when not given); each source's frames carry their own.
    """
    check_unique(specs)
    if truths is None:
        truths = read_truths(specs)
    keys = configured_keys(client, keys, settings.aggregator.shards)  # once, before any thread
    outcomes = [SourceOutcome(spec) for spec in specs]

    def one(out: SourceOutcome, truth: dict[int, int] | None) -> None:
        try:
            out.report = run_ingest(client, keys, settings, out.spec.source, stop_event=stop,
                                    source_id=out.spec.source_id, truths=truth)  # fmt: skip
        except (SourceError, redis.RedisError, OSError) as err:
            out.error, out.input_error = str(err), isinstance(err, InputError)
            log.error("source %s failed, the others go on: %s", out.spec.source, err)
        except Exception as err:  # one source's bug must not take the others down
            out.error = f"{type(err).__name__}: {err}"
            log.exception("source %s failed, the others go on", out.spec.source)

    threads = [
        threading.Thread(target=one, args=(out, truth), name=f"ingest-{i}", daemon=True)
        for i, (out, truth) in enumerate(zip(outcomes, truths, strict=True))
    ]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(timeout=0.5)
    return outcomes
