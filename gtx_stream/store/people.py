"""What the label server keeps in Redis for people (``backend = "human"`` labelers).

- **Invites**: a one-time login token, stored as its SHA-256 only, with a TTL; redeeming it
  deletes it (``GETDEL``), so a link works once.
- **Sessions**: a random session id (the cookie; stored as its SHA-256) -> the labeler id and
  the session's CSRF token, with a TTL.
- **The hand**: the requests a person holds (the one on screen and up to ``prefetch`` more,
  taken from their RQ queue by the label server), each under an opaque random token, so that a
  reload shows the same frame and the page never sees a request id.
- **Answers**: ``answer_request.lua`` checks that the token is still in the person's hand,
  removes it and XADDs the label (or the skip) in one step: a replayed answer finds nothing and
  never reaches the labels stream twice.

Keys live here (:class:`PeopleKeys`) rather than in :mod:`gtx_stream.store.keys`: they belong
to the label server alone.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

import redis

from gtx_stream.core.records import LabelEntry, text
from gtx_stream.store.keys import Keys
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
        return f"{self.keys.prefix}:person:session:{_digest(session_id)}"

    def hand(self, labeler_id: str) -> str:
        """HASH token -> JSON :class:`HandItem`: the requests a person holds now."""
        return f"{self.keys.prefix}:person:{labeler_id}:hand"

    def answered(self, labeler_id: str, day: str) -> str:
        """STRING counter of the answers a person gave on ``day`` (UTC, ``YYYY-MM-DD``)."""
        return f"{self.keys.prefix}:person:{labeler_id}:answered:{day}"


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
    """A new session for ``labeler_id``: (session id for the cookie, the session)."""
    session_id = secrets.token_urlsafe(32)
    session = Session(labeler_id, secrets.token_urlsafe(32))
    key = PeopleKeys(keys).session(session_id)
    with client.pipeline(transaction=True) as pipe:
        pipe.hset(key, mapping={"labeler": labeler_id, "csrf": session.csrf,
                                "created_at": repr(time.time())})  # fmt: skip
        pipe.expire(key, ttl)
        pipe.execute()
    return session_id, session


def get_session(client: redis.Redis, keys: Keys, session_id: str) -> Session | None:
    raw = client.hmget(PeopleKeys(keys).session(session_id), ["labeler", "csrf"])
    if raw[0] is None or raw[1] is None:
        return None
    return Session(text(raw[0]), text(raw[1]))


def end_session(client: redis.Redis, keys: Keys, session_id: str) -> None:
    client.delete(PeopleKeys(keys).session(session_id))


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
    raw = client.hgetall(PeopleKeys(keys).hand(labeler_id))
    out = []
    for token, value in raw.items():
        item = HandItem.decode(value)
        if item is not None:
            out.append((text(token), item, text(value)))
    out.sort(key=lambda t: (t[1].taken_at, t[0]))
    return out


def hold(client: redis.Redis, keys: Keys, labeler_id: str, items: list[HandItem]) -> list[str]:
    """Put ``items`` into the person's hand; their new tokens."""
    tokens = [new_token() for _ in items]
    if items:
        client.hset(
            PeopleKeys(keys).hand(labeler_id),
            mapping={t: item.encode() for t, item in zip(tokens, items, strict=True)},
        )
    return tokens


def drop(client: redis.Redis, keys: Keys, labeler_id: str, tokens: list[str]) -> None:
    if tokens:
        client.hdel(PeopleKeys(keys).hand(labeler_id), *tokens)


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
) -> ScriptCall[AnswerResult]:
    """Take ``token`` out of the person's hand if it still holds ``held``, and XADD ``entry``
    (a label, a skip; None: nothing, a gold answer) to the labels stream.

    ``sent``: done; ``taken``: the token is no longer in the hand (answered already, or
    dropped); ``gone``: it holds something else now.
    """
    pk = PeopleKeys(keys)
    fields = entry.to_fields() if entry is not None else {}
    counted = "1" if entry is None or not entry.failed else "0"
    flat = [x for pair in fields.items() for x in pair]
    # the labels stream of the frame's shard (a gold answer adds nothing: any shard's name does)
    labels = keys.of_frame(entry.frame_id if entry is not None else "").labels
    return ScriptCall(
        "answer_request",
        (pk.hand(labeler_id), labels, pk.answered(labeler_id, today(now))),
        (token, held, counted, DAY_COUNTER_TTL, *flat),
        _answer_reply,
    )


def send_answer(
    client: redis.Redis,
    keys: Keys,
    labeler_id: str,
    token: str,
    held: str,
    entry: LabelEntry | None,
) -> AnswerResult:
    keys = stored_keys(client, keys)  # the pipeline's shard count, whatever this one's config
    return ScriptRunner(client).run_one(answer_request(keys, labeler_id, token, held, entry))


def answered_today(client: redis.Redis, keys: Keys, labeler_id: str) -> int:
    raw = client.get(PeopleKeys(keys).answered(labeler_id, today()))
    return int(raw) if raw is not None else 0
