"""Every Redis key and stream name of one pipeline, in one place.

Global keys are ``<prefix>:<name>``; per-frame keys carry a hash tag, ``<prefix>:{f:<id>}:...``,
so all keys of one frame live in one cluster slot.

With ``aggregator.shards`` above 1 the frames are split into shards (:func:`shard_of`), and the
keys an aggregator sweeps and consumes are one set per shard, under one hash tag per shard:
``<prefix>:{s<k>}:labels``, ``opened``, ``leases``, ``unsent``, ``waiting`` (and
``waiting:seeded``). A :class:`Keys` names them for one shard (:meth:`Keys.for_shard`,
:meth:`Keys.of_frame`); with one shard every name is the unsharded one of before.

On a Redis Cluster (``redis.cluster``; :attr:`Keys.cluster`) every key a script touches is per
shard, so that every script call touches one slot: the frames' own keys
(``<prefix>:{s<k>}:f:<id>:frame``), and the state the scripts keep, one copy per shard (open set,
final and dead streams, budget, stats, load, failures, backoff, a source's high-water mark, a
mirror of the labelers hash). What stays global is read and written outside scripts (shard
owners), by one-key scripts (the budget pool, ``<prefix>:budget``, that shards lease chunks of:
:mod:`gtx_stream.store.budget_lease`), or by the gold book's script: the labelers registry, who
is live, who is paused and the gold set share the hash tag ``{registry}``
(``<prefix>:{registry}:labelers``, ...; :meth:`Keys._registry`), so that ``gold_answer.lua``
records an answer, a score, a registration and a pause in one slot. People's hands are per
shard there (:mod:`gtx_stream.store.people`).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace


def shard_of(frame_id: str, shards: int) -> int:
    """The shard of a frame: CRC-32 of its id modulo the shard count (stable across processes
    and Python versions, unlike ``hash``)."""
    return zlib.crc32(frame_id.encode()) % shards if shards > 1 else 0


@dataclass(frozen=True)
class Keys:
    prefix: str = "gtx"
    shards: int = 1
    """``aggregator.shards``: how many shards the frames are split into."""
    shard: int | None = None
    """The shard whose per-shard keys these are (None: none chosen; with ``shards`` 1, 0)."""
    cluster: bool = False
    """Redis Cluster layout: every key a script touches carries its shard's hash tag."""

    def for_shard(self, shard: int) -> Keys:
        """The keys of one shard (its streams, leases and waiting set)."""
        if not 0 <= shard < self.shards:
            raise ValueError(f"shard {shard} out of range: {self.shards} shards")
        return replace(self, shard=shard)

    def of_frame(self, frame_id: str) -> Keys:
        """The keys of the shard ``frame_id`` belongs to."""
        return self if self.shards == 1 else self.for_shard(shard_of(frame_id, self.shards))

    def every_shard(self) -> list[Keys]:
        """One :class:`Keys` per shard, in shard order."""
        return [self.for_shard(k) for k in range(self.shards)]

    def _per_shard(self, name: str) -> str:
        if self.shards == 1 and not self.cluster:
            return f"{self.prefix}:{name}"
        shard = 0 if self.shard is None and self.shards == 1 else self.shard
        if shard is None:
            raise ValueError(f"{self.prefix}:{name} is per shard ({self.shards} shards): "
                             "name the shard (Keys.for_shard or Keys.of_frame)")  # fmt: skip
        return f"{self.prefix}:{{s{shard}}}:{name}"

    def _state(self, name: str) -> str:
        """A key of the state the scripts keep: global, or per shard on a Redis Cluster."""
        return self._per_shard(name) if self.cluster else f"{self.prefix}:{name}"

    def _registry(self, name: str) -> str:
        """A key of the labelers registry and the gold book: global; on a Redis Cluster under
        the one hash tag ``{registry}``, so that ``gold_answer.lua`` touches one slot."""
        return f"{self.prefix}:{{registry}}:{name}" if self.cluster else f"{self.prefix}:{name}"

    def _of_frame(self, frame_id: str, name: str) -> str:
        if self.cluster:
            return f"{self.prefix}:{{s{shard_of(frame_id, self.shards)}}}:f:{frame_id}:{name}"
        return f"{self.prefix}:{{f:{frame_id}}}:{name}"

    def state_shards(self) -> list[Keys]:
        """The copies of the scripts' state: one per shard on a Redis Cluster (each shard's
        final stream, stats, open set...), else one, these keys."""
        return self.every_shard() if self.cluster else [self]

    def shard_of_stream(self, stream: str) -> Keys:
        """The shard whose ``final`` or ``dead`` stream ``stream`` is (these keys when the
        streams are global)."""
        for shard in self.state_shards():
            if stream in (shard.final, shard.dead):
                return shard
        raise ValueError(f"{stream} is no final or dead stream of pipeline {self.prefix!r}")

    # sharding (pipeline/aggregate/shards.py)
    @property
    def shard_count(self) -> str:
        """STRING: the pipeline's shard count, written by the first service that starts; a
        service configured with another count refuses to start."""
        return f"{self.prefix}:shards"

    def shard_owner(self, shard: int) -> str:
        """STRING with a TTL: the consumer name of the aggregator that owns ``shard``."""
        return f"{self.prefix}:shard:{shard}:owner"

    @property
    def aggregators(self) -> str:
        """ZSET consumer name -> last heartbeat (unix seconds) of each sharded aggregator."""
        return f"{self.prefix}:aggregators"

    # streams
    @property
    def final(self) -> str:
        """Finalised labels, one entry per frame."""
        return self._state("final")

    @property
    def dead(self) -> str:
        """Dead letters: anything that could not be applied, with a reason."""
        return self._state("dead")

    @property
    def labels(self) -> str:
        """Labels coming back from labeler workers (per shard)."""
        return self._per_shard("labels")

    @property
    def opened(self) -> str:
        """One entry per frame opened by an ingester: wakes the aggregator up (per shard)."""
        return self._per_shard("opened")

    # global state
    @property
    def open_frames(self) -> str:
        """ZSET frame_id -> opened_at: frames not finalised yet (backpressure, sweeps)."""
        return self._state("open")

    @property
    def waiting(self) -> str:
        """ZSET frame_id -> unix seconds from which the sweep looks at it again: every open
        frame with no outstanding request (the others are found through :attr:`leases`).
        Written by the script that leaves a frame so, removed by the one that asks or ends it.
        Per shard."""
        return self._per_shard("waiting")

    @property
    def waiting_seeded(self) -> str:
        """STRING: set once every open frame was put in :attr:`waiting` (the one-time walk of
        the open set an aggregator makes when it finds a Redis from before :attr:`waiting`).
        Per shard."""
        return self._per_shard("waiting:seeded")

    @property
    def budget(self) -> str:
        """HASH limit, spent: the label budget. ``spent`` counts labels obtained or outstanding:
        ``ask.lua`` takes one per request, a request reported failed gives it back."""
        return self._state("budget")

    # strategy 2, uncertainty sampling (pipeline/aggregate/uncertainty.py); unused otherwise
    @property
    def uncertain(self) -> str:
        """ZSET frame_id -> uncertainty (equation 5) of the open frames that may be asked next:
        labeled, nothing outstanding, under kappa, a labeler left; ties in frame-id order."""
        return self._state("uncertain")

    @property
    def unlabeled(self) -> str:
        """ZSET frame_id -> 0: open frames still without a label (no pick while any is)."""
        return self._state("unlabeled")

    @property
    def uncertainty(self) -> str:
        """HASH ``picks``: requests made by uncertainty sampling after the first labels (the
        index of the next tie-break draw)."""
        return self._state("uncertainty")

    @property
    def labelers(self) -> str:
        """HASH labeler_id -> JSON {accuracy, lower, upper, source}: registered labelers."""
        return self._registry("labelers")

    @property
    def script_labelers(self) -> str:
        """The labelers hash ``apply_labels.lua`` checks a label's labeler in: :attr:`labelers`,
        or on a Redis Cluster the shard's copy of it (written with it, ``store/params.py``)."""
        return self._per_shard("labelers") if self.cluster else self.labelers

    @property
    def budget_pool(self) -> str:
        """HASH limit, spent, leased:<shard>, returned:<shard>: on a Redis Cluster the global
        budget, which shards lease chunks of into their own :attr:`budget` and give back to
        (``spent`` counts labels leased out, less those given back); else :attr:`budget`
        itself."""
        return f"{self.prefix}:budget"

    def source_index(self, source_id: str) -> str:
        """The hash ``reserve_index.lua`` hands a source's indices out of: :meth:`source`, or
        on a Redis Cluster a global one (a source's high-water marks are per shard there)."""
        return f"{self.prefix}:source:{source_id}" if self.cluster else self.source(source_id)

    @property
    def live(self) -> str:
        """ZSET labeler_id -> last heartbeat (unix seconds) of a worker serving it."""
        return self._registry("live")

    @property
    def load(self) -> str:
        """HASH labeler_id -> outstanding requests (for least-loaded dispatch)."""
        return self._state("load")

    @property
    def leases(self) -> str:
        """ZSET :func:`lease_member` -> lease deadline (unix seconds). Per shard."""
        return self._per_shard("leases")

    @property
    def unsent(self) -> str:
        """HASH journal token -> JSON of the requests one ``ask.lua`` call granted, until the
        aggregator has enqueued them (:mod:`gtx_stream.store.unsent`). Per shard."""
        return self._per_shard("unsent")

    @property
    def failures(self) -> str:
        """HASH labeler_id -> requests it failed in a row (a good label resets it)."""
        return self._state("failures")

    @property
    def backoff(self) -> str:
        """HASH labeler_id -> unix seconds until which it is not dispatched to (backed off)."""
        return self._state("backoff")

    @property
    def stats(self) -> str:
        """HASH counters: frames_opened, frames_finalised, labels_applied, ..."""
        return self._state("stats")

    @property
    def dashboard_samples(self) -> str:
        """ZSET of JSON counter samples (score = unix seconds) the /admin dashboard writes every
        few seconds and reads rates per minute from; capped by age."""
        return f"{self.prefix}:dashboard:samples"

    def admin_session(self, token_hash: str) -> str:
        """HASH of one /admin session (csrf, created_at), with a TTL; named by the SHA-256 of
        the session cookie, so Redis never holds the cookie itself."""
        return f"{self.prefix}:admin:session:{token_hash}"

    @property
    def admin_login_failures(self) -> str:
        """STRING counter of refused /admin passwords in the current minute (with a TTL)."""
        return f"{self.prefix}:admin:login_failures"

    # gold frames (store/gold.py): the label server slips them into people's feeds
    @property
    def gold(self) -> str:
        """HASH gold id -> truth (``0`` or ``1``): the loaded gold set."""
        return self._registry("gold")

    @property
    def gold_files(self) -> str:
        """HASH gold id -> the file name it was loaded from."""
        return self._registry("gold:files")

    def gold_image(self, gold_id: str) -> str:
        """STRING: a gold item's JPEG (no TTL: the gold set stays until it is cleared)."""
        return self._registry(f"gold:jpeg:{gold_id}")

    def gold_answers(self, person: str) -> str:
        """HASH gold id -> the label one person gave it: each gold item is counted once."""
        return self._registry(f"gold:answers:{person}")

    @property
    def gold_scores(self) -> str:
        """HASH person -> JSON {correct, total, accuracy, lower, upper}: their gold record."""
        return self._registry("gold:scores")

    @property
    def gold_stats(self) -> str:
        """HASH of the gold book's counters (``gold_items``, ``gold_answers``,
        ``gold_answers:<person>``): :attr:`stats`; on a Redis Cluster a hash of the registry's
        slot, which ``gtx-stream status`` adds to the shards' counters."""
        return self._registry("gold:stats") if self.cluster else self._state("stats")

    @property
    def paused(self) -> str:
        """HASH labeler_id -> JSON {reason, at, accuracy, lower, upper, floor}: people paused
        because their accuracy interval fell below ``gold.floor``; not dispatched to."""
        return self._registry("paused")

    def source(self, source_id: str) -> str:
        """HASH of one ingest source: uri, last_index (high-water mark of opened frames),
        next_index (the next index ``reserve_index.lua`` hands to ``client.submit``)."""
        return self._state(f"source:{source_id}")

    def source_open(self, source_id: str) -> str:
        """ZSET frame_id -> opened_at: one source's frames opened under
        ``ingest.max_open_per_source`` and not yet seen final (``open_frame.lua`` prunes it)."""
        return self._state(f"source:{source_id}:open")

    def queue(self, labeler_id: str) -> str:
        """RQ queue name (not a key) of one labeler."""
        return f"{self.prefix}.labeler.{labeler_id}"

    # per frame
    def frame(self, frame_id: str) -> str:
        """HASH of one frame: state, source, frame_index, opened_at, n_labels, truth, ..."""
        return self._of_frame(frame_id, "frame")

    def image(self, frame_id: str) -> str:
        """STRING: the frame's JPEG bytes (with the frame TTL)."""
        return self._of_frame(frame_id, "jpeg")

    def frame_labels(self, frame_id: str) -> str:
        """LIST of JSON [labeler, label] in arrival order."""
        return self._of_frame(frame_id, "labels")

    def frame_requests(self, frame_id: str) -> str:
        """HASH labeler_id -> request state (:class:`gtx_stream.core.records.RequestState`):
        ``out:<request id>``, ``late:<request id>``, ``failed:<request id>`` or
        ``done:<labels-stream entry id>``."""
        return self._of_frame(frame_id, "requests")


def source_of(frame_id: str) -> str:
    """The source id in a frame id ``<source id>-<frame index>`` (the ingester's and the
    client's ids); an id of another form is its own source."""
    head, _, tail = frame_id.rpartition("-")
    return head if head and tail.isdigit() else frame_id


def lease_member(frame_id: str, labeler_id: str) -> str:
    """The member of :attr:`Keys.leases` for one request (one per frame and labeler)."""
    return f"{frame_id}|{labeler_id}"


def split_lease_member(member: str) -> tuple[str, str]:
    """``(frame_id, labeler_id)`` of a :func:`lease_member` (labeler ids hold no ``|``)."""
    frame_id, _, labeler_id = member.rpartition("|")
    return frame_id, labeler_id
