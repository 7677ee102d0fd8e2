"""What the label server keeps in Redis for people (``backend = "human"`` labelers).

- **Invites**: a one-time login token, stored as its SHA-256 only, with a TTL; redeeming it
  deletes it (``GETDEL``), so a link works once.
- **Sessions**: a random session id (the cookie; stored as its SHA-256) -> the labeler id and
  the session's CSRF token, with a TTL; each person's sessions are also listed (digest ->
  expiry), so that logging out on one device can tell whether another is still logged in.
- **The hand**: the requests a person holds (the one on screen and up to ``prefetch`` more,
  taken from their RQ queue by the label server), each under an opaque random token, so that a
  reload shows the same frame and the page never sees a request id.
- **Answers**: ``answer_request.lua`` checks that the token is still in the person's hand,
  removes it and XADDs the label (or the skip) in one step: a replayed answer finds nothing and
  never reaches the labels stream twice. It counts the person's answers today: labels, real
  or gold; a skip is not an answer.

Keys live here (:class:`PeopleKeys`) rather than in :mod:`gtx_stream.store.keys`: they belong
to the label server alone. On a Redis Cluster a person has one hand and one answered-today
counter per shard, in the slot of that shard's labels stream
(``<prefix>:{s<k>}:person:<id>:hand``): a request is held in the hand of its frame's shard, a
gold frame in shard 0's, so that ``answer_request.lua`` still touches one slot; :func:`hand`
reads them all.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

import redis

from gtx_stream.core.records import LabelEntry, text
from gtx_stream.store.keys import Keys, shard_of
from gtx_stream.store.scripts import ScriptCall, ScriptRunner
from gtx_stream.store.shards import stored_keys

DAY_COUNTER_TTL = 2 * 86400
"""Seconds a person's answered-today counter is kept (it is read for today only)."""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class PeopleKeys:
    """The label server's keys, under the pipeline's prefix."""

    keys: Keys

    def invite(self, token: str) -> str:
        """STRING labeler id, with the invite's TTL; named by the token's SHA-256."""
        return f"{self.keys.prefix}:person:invite:{_digest(token)}"

    def session(self, session_id: str) -> str:
        """HASH labeler, csrf, created_at, with the session's TTL; named by the id's SHA-256."""
        return self.session_of_digest(_digest(session_id))

    def session_of_digest(self, digest: str) -> str:
        return f"{self.keys.prefix}:person:session:{digest}"

    def sessions(self, labeler_id: str) -> str:
        """ZSET session digest -> unix seconds it expires: the person's sessions. One key on a
        Redis Cluster too (in its own slot, like the sessions): no script or transaction
        touches it with another key."""
        return f"{self.keys.prefix}:person:{labeler_id}:sessions"

    def _person(self, labeler_id: str, name: str, shard: int | None) -> str:
        if not self.keys.cluster:
            return f"{self.keys.prefix}:person:{labeler_id}:{name}"
        if shard is None:
            raise ValueError(f"a person's {name} is per shard on a Redis Cluster: name the shard")
        return f"{self.keys.prefix}:{{s{shard}}}:person:{labeler_id}:{name}"

    def hand(self, labeler_id: str, shard: int | None = None) -> str:
        """HASH token -> JSON :class:`HandItem`: the requests a person holds now (on a Redis
        Cluster, those of one shard)."""
        return self._person(labeler_id, "hand", shard)

    def answered(self, labeler_id: str, day: str, shard: int | None = None) -> str:
        """STRING counter of the answers a person gave on ``day`` (UTC, ``YYYY-MM-DD``; on a
        Redis Cluster, those of one shard's hand)."""
        return self._person(labeler_id, f"answered:{day}", shard)

    def shards(self) -> list[int | None]:
        """The shards a person's hand is split over: every shard on a Redis Cluster, else one
        hand (None)."""
        return list(range(self.keys.shards)) if self.keys.cluster else [None]

    def shard_of(self, item: HandItem) -> int | None:
        """The shard whose hand holds ``item`` on a Redis Cluster (None elsewhere): its
        frame's; shard 0's for a gold frame (whatever the shard count, which a server that
        starts before the first aggregator does not know yet)."""
        if not self.keys.cluster:
            return None
        return shard_of(item.frame_id, self.keys.shards) if item.kind == "request" else 0


def today(now: float | None = None) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(time.time() if now is None else now))


# --- invites and sessions ----------------------------------------------------------------


def create_invite(client: redis.Redis, keys: Keys, labeler_id: str, ttl: int) -> str:
    """A new one-time login token for ``labeler_id`` (only its hash is stored)."""
    token = secrets.token_urlsafe(32)
    client.set(PeopleKeys(keys).invite(token), labeler_id, ex=ttl)
    return token


def redeem_invite(client: redis.Redis, keys: Keys, token: str) -> str | None:
    """The labeler id the invite was for, deleting it; None when unknown, used or expired."""
    value = client.getdel(PeopleKeys(keys).invite(token))
    return None if value is None else text(value)


@dataclass(frozen=True)
class Session:
    labeler_id: str
    csrf: str


def create_session(
    client: redis.Redis, keys: Keys, labeler_id: str, ttl: int
) -> tuple[str, Session]:
    """A new session for ``labeler_id``: (session id for the cookie, the session).

    It is listed in the person's sessions before it is written: one listed but never written
    (the server died in between) is found missing by :func:`end_session`, while one written
    but never listed would let a logout elsewhere release the hand this one shows. Separate
    round trips, not one transaction: on a Redis Cluster the list and the session are in two
    slots (a login is rare: each invite link logs in once).
    """
    session_id = secrets.token_urlsafe(32)
    session = Session(labeler_id, secrets.token_urlsafe(32))
    pk = PeopleKeys(keys)
    key, listed, now = pk.session(session_id), pk.sessions(labeler_id), time.time()
    pipe = client.pipeline(transaction=False)
    pipe.zremrangebyscore(listed, "-inf", now)  # those that expired
    pipe.zadd(listed, {_digest(session_id): now + ttl})
    pipe.zrange(listed, -1, -1, withscores=True)
    last = pipe.execute()[-1]
    # the list lasts as long as its longest session, which is not this one when
    # session_ttl_seconds was lowered meanwhile (EXPIRE GT needs a Redis 7 that the embedded
    # server is not)
    client.expire(listed, max(ttl, math.ceil(float(last[0][1]) - time.time()) if last else 0))
    with client.pipeline(transaction=True) as pipe:
        pipe.hset(key, mapping={"labeler": labeler_id, "csrf": session.csrf,
                                "created_at": repr(now)})  # fmt: skip
        pipe.expire(key, ttl)
        pipe.execute()
    return session_id, session


def get_session(client: redis.Redis, keys: Keys, session_id: str) -> Session | None:
    raw = client.hmget(PeopleKeys(keys).session(session_id), ["labeler", "csrf"])
    if raw[0] is None or raw[1] is None:
        return None
    return Session(text(raw[0]), text(raw[1]))


def end_session(client: redis.Redis, keys: Keys, session_id: str, labeler_id: str) -> int:
    """End the session of ``labeler_id``; how many other sessions of theirs are still live
    (not expired, not ended: another device, another browser).

    The session leaves the list before the list is read, so of two sessions ending at the
    same moment the one read last finds neither: the last logout always sees none left.
    """
    pk = PeopleKeys(keys)
    listed = pk.sessions(labeler_id)
    pipe = client.pipeline(transaction=False)
    pipe.delete(pk.session(session_id))
    pipe.zrem(listed, _digest(session_id))
    pipe.zremrangebyscore(listed, "-inf", time.time())
    pipe.zrange(listed, 0, -1)
    others = [text(d) for d in pipe.execute()[-1]]
    if not others:
        return 0
    # listed, but written and still there? (see create_session)
    pipe = client.pipeline(transaction=False)
    for digest in others:
        pipe.hget(pk.session_of_digest(digest), "labeler")
    return sum(1 for raw in pipe.execute() if raw is not None and text(raw) == labeler_id)


# --- the hand ----------------------------------------------------------------------------

Kind = Literal["request", "gold"]


@dataclass(frozen=True)
class HandItem:
    """One thing a person holds: a label request, or a gold frame (``gold_id``)."""

    kind: Kind
    frame_id: str = ""
    request_id: str = ""
    gold_id: str = ""
    taken_at: float = 0.0

    def encode(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def decode(cls, raw: Any) -> HandItem | None:
        try:
            data = json.loads(text(raw))
            return cls(**data)
        except (ValueError, TypeError):
            return None


def new_token() -> str:
    """The opaque token a request is known by on the page."""
    return secrets.token_urlsafe(18)


def hand(client: redis.Redis, keys: Keys, labeler_id: str) -> list[tuple[str, HandItem, str]]:
    """(token, item, raw value) of what the person holds, oldest first."""
    pk = PeopleKeys(keys)
    shards = pk.shards()
    if len(shards) == 1:
        hands = [client.hgetall(pk.hand(labeler_id, shards[0]))]
    else:
        pipe = client.pipeline(transaction=False)
        for shard in shards:
            pipe.hgetall(pk.hand(labeler_id, shard))
        hands = pipe.execute()
    out = []
    for raw in hands:
        for token, value in raw.items():
            item = HandItem.decode(value)
            if item is not None:
                out.append((text(token), item, text(value)))
    out.sort(key=lambda t: (t[1].taken_at, t[0]))
    return out


def _by_hand(
    keys: Keys, labeler_id: str, items: list[tuple[str, HandItem]]
) -> dict[str, list[tuple[str, HandItem]]]:
    pk = PeopleKeys(keys)
    out: dict[str, list[tuple[str, HandItem]]] = {}
    for token, item in items:
        out.setdefault(pk.hand(labeler_id, pk.shard_of(item)), []).append((token, item))
    return out


def hold(client: redis.Redis, keys: Keys, labeler_id: str, items: list[HandItem]) -> list[str]:
    """Put ``items`` into the person's hand; their new tokens."""
    tokens = [new_token() for _ in items]
    pipe = client.pipeline(transaction=False)
    for key, held in _by_hand(keys, labeler_id, list(zip(tokens, items, strict=True))).items():
        pipe.hset(key, mapping={t: item.encode() for t, item in held})
    if items:
        pipe.execute()
    return tokens


def drop(
    client: redis.Redis, keys: Keys, labeler_id: str, held: list[tuple[str, HandItem]]
) -> None:
    """Take ``(token, item)`` pairs out of the person's hand."""
    pipe = client.pipeline(transaction=False)
    for key, items in _by_hand(keys, labeler_id, held).items():
        pipe.hdel(key, *(t for t, _ in items))
    if held:
        pipe.execute()


# --- answer_request.lua ------------------------------------------------------------------

AnswerResult = Literal["sent", "taken", "gone"]


def _answer_reply(reply: Any) -> AnswerResult:
    value = text(reply)
    return "sent" if value not in ("taken", "gone") else value  # type: ignore[return-value]


def answer_request(
    keys: Keys,
    labeler_id: str,
    token: str,
    held: str,
    entry: LabelEntry | None,
    now: float | None = None,
    *,
    answered: bool | None = None,
) -> ScriptCall[AnswerResult]:
    """Take ``token`` out of the person's hand if it still holds ``held``, and XADD ``entry``
    (a label, a skip; None: nothing, a gold frame or a frame decided meanwhile) to the labels
    stream.

    ``answered``: whether it counts in the person's answers today; None: when ``entry`` is a
    label. A skip is never an answer, of a real frame or of a gold one; a gold frame's label
    is (``answered=True``).

    ``sent``: done; ``taken``: the token is no longer in the hand (answered already, or
    dropped); ``gone``: it holds something else now.
    """
    pk = PeopleKeys(keys)
    fields = entry.to_fields() if entry is not None else {}
    if answered is None:
        answered = entry is not None and not entry.failed
    flat = [x for pair in fields.items() for x in pair]
    item = HandItem.decode(held)
    shard = pk.shard_of(item) if item is not None else None
    if shard is None and keys.cluster:
        shard = shard_of(entry.frame_id if entry is not None else "", keys.shards)
    # the labels stream of the frame's shard (a gold answer adds nothing: its hand's shard's
    # name, for the slot)
    labels = (keys.for_shard(shard) if shard is not None
              else keys.of_frame(entry.frame_id if entry is not None else "")).labels  # fmt: skip
    return ScriptCall(
        "answer_request",
        (pk.hand(labeler_id, shard), labels, pk.answered(labeler_id, today(now), shard)),
        (token, held, "1" if answered else "0", DAY_COUNTER_TTL, *flat),
        _answer_reply,
    )


def send_answer(
    client: redis.Redis,
    keys: Keys,
    labeler_id: str,
    token: str,
    held: str,
    entry: LabelEntry | None,
    *,
    answered: bool | None = None,
) -> AnswerResult:
    keys = stored_keys(client, keys)  # the pipeline's shard count, whatever this one's config
    call = answer_request(keys, labeler_id, token, held, entry, answered=answered)
    return ScriptRunner(client).run_one(call)


def count_answered(client: redis.Redis, keys: Keys, labeler_id: str, item: HandItem) -> None:
    """Count one answer today for an ``item`` no longer in the hand (a gold answer recorded
    just as the pause it caused emptied the hand), as ``answer_request.lua`` would have."""
    pk = PeopleKeys(stored_keys(client, keys))
    key = pk.answered(labeler_id, today(), pk.shard_of(item))
    pipe = client.pipeline(transaction=False)
    pipe.incr(key)
    pipe.expire(key, DAY_COUNTER_TTL)
    pipe.execute()


def answered_today(client: redis.Redis, keys: Keys, labeler_id: str) -> int:
    pk = PeopleKeys(keys)
    day = today()
    pipe = client.pipeline(transaction=False)
    for shard in pk.shards():
        pipe.get(pk.answered(labeler_id, day, shard))
    return sum(int(raw) for raw in pipe.execute() if raw is not None)
