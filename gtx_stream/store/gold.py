r"""Gold frames (honeypots): a gold set in Redis, and the book that keeps measuring each person.

The label server slips a gold frame into a person's feed at ``gold.rate`` (and gives a new
person only gold until they qualify); each answer to a gold frame updates the person's
accuracy at once, the Beta(a, b) posterior of :mod:`gtx_stream.core.accuracy`,

.. math::
    \hat\alpha_j = \frac{c_j + a}{n_j + a + b},

with its equal-tailed interval at ``gold.level``.

- **Qualification.** Until a person has answered ``gold.qualification`` gold frames they are
  not registered (not in ``keys.labelers``): the aggregator refuses labels of unregistered
  labelers and never dispatches to them. The answer that reaches the count registers them
  with their gold estimate (source ``gold``); every later answer replaces it, and the
  aggregator re-reads the labelers hash at most a second later (``LabelerBook.params``).
- **Pausing.** From the qualifying answer on, a person whose whole interval lies below
  ``gold.floor`` (its *upper* bound is below it: we are confident, at the interval's level,
  that they are worse than the floor) is paused: ``keys.paused`` holds why, they leave
  ``keys.live`` and are unregistered, like a person who has not qualified. So the
  aggregator asks them nothing more and frames do not wait for them; their labels still to
  come are refused, and those already on open frames weigh nothing (``UNKNOWN_LABELER``;
  below 0.6 they weighed little). The aggregator also leaves paused people out of its pool,
  should a configured accuracy register them again; the label server hands them no frame.
  A pause lasts until an operator runs ``gtx-stream gold reset ID`` (the person then
  qualifies from scratch).
  The upper bound, not the lower: the lower bound of a good person stays below 0.6 for their
  first dozens of answers (9 right of 10 gives [0.59, 0.98]), so pausing on it would pause
  good people by bad luck. Not before the qualifying answer: four wrong answers in a row
  would pause anyone (Beta(1, 5) has its upper bound at 0.52). Simulated with the defaults
  (1,000 people each): a person at 0.5 is paused after a median of 52 gold answers, one at
  0.55 after 180 (96% within 1,000); a person at 0.7 is paused with chance 1.4%, almost all
  early (a median of 11 answers: 3 right of 11, say), one at 0.85 with chance 0.1%.
- **Cost.** Gold answers are assessment, not labels: counted in ``stats`` as ``gold_answers``
  and ``gold_answers:<person>``; they never touch ``keys.budget``.
- **On a Redis Cluster** the gold set, the answers, the scores, the labelers registry, who is
  live and who is paused share the hash tag ``{registry}`` (:meth:`Keys.gold_stats` holds the
  counters there), so ``gold_answer.lua`` still records all of an answer in one step. The
  shards' copies of the registry (:attr:`Keys.script_labelers`, which ``apply_labels.lua``
  checks) are brought in line after it: the person added once registered, taken out once
  paused or reset. A crash between the two leaves a person registered whose labels the shards
  refuse until their next gold answer, or a paused person whom no one asks any more (the
  aggregator leaves paused people out, and the label server hands them nothing).

What a page may see is a :class:`GoldItem`: an id and its image, never the truth.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import redis

from gtx_stream.config import GoldSettings
from gtx_stream.core.accuracy import beta_accuracy
from gtx_stream.core.records import text
from gtx_stream.store.em_params import rests_on_gold
from gtx_stream.store.keys import Keys
from gtx_stream.store.params import LabelerAccuracy, mirror_labelers, unmirror_labelers
from gtx_stream.store.scripts import ScriptCall, ScriptRunner
from gtx_stream.store.shards import layout

AnswerStatus = Literal["recorded", "duplicate", "unknown"]
# Answers of one person racing each other (two tabs of their page): each retry recomputes the
# estimates after a short random pause, so that the racers fall apart.
_RETRIES = 50
_RETRY_PAUSE = 0.002  # seconds, at most


class GoldError(ValueError):
    """A gold set that cannot be loaded, or an answer that cannot be recorded."""


def gold_id_of(pixels: bytes) -> str:
    """A gold item's id: 16 hex digits of the SHA-1 of its decoded pixels, so the same image
    loaded again (at any JPEG quality) is the same item, and the id says nothing of its truth."""
    return hashlib.sha1(pixels).hexdigest()[:16]


@dataclass(frozen=True)
class GoldImage:
    """One gold item to load: its id, the file it came from, its JPEG and its truth."""

    gold_id: str
    name: str
    jpeg: bytes
    truth: int


@dataclass(frozen=True)
class LoadReport:
    added: int  # new items
    kept: int  # items already loaded with the same truth
    total: int  # items in the gold set now


@dataclass(frozen=True)
class GoldItem:
    """A gold frame to show a person: no truth in it."""

    gold_id: str
    image_key: str


@dataclass(frozen=True)
class GoldScore:
    """One person's gold record: answers right, answers given, and the Beta estimate."""

    correct: int
    total: int
    accuracy: float
    lower: float
    upper: float

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, raw: str | bytes) -> GoldScore:
        d = json.loads(raw)
        return cls(int(d["correct"]), int(d["total"]), float(d["accuracy"]),
                   float(d["lower"]), float(d["upper"]))  # fmt: skip


@dataclass(frozen=True)
class GoldResult:
    """What recording an answer did. ``right`` is for statistics and tests: a page that showed
    it would tell the person which frames are gold."""

    status: AnswerStatus
    right: bool | None
    score: GoldScore
    qualified: bool
    paused: bool


@dataclass(frozen=True)
class PersonGold:
    """A person's standing: their score, qualified, paused (and why), gold items left to them."""

    person: str
    score: GoldScore
    qualified: bool
    paused: str | None
    left: int


def load(client: redis.Redis, keys: Keys, images: Sequence[GoldImage]) -> LoadReport:
    """Store gold items (truth, JPEG, file name); loading the same items again adds nothing.

    An item already loaded with another truth, or given twice with two truths, is refused
    before anything is written.
    """
    given: dict[str, GoldImage] = {}
    for img in images:
        if img.truth not in (0, 1):
            raise GoldError(f"{img.name}: truth must be 0 or 1, got {img.truth!r}")
        first = given.get(img.gold_id)
        if first is not None and first.truth != img.truth:
            raise GoldError(f"{img.name} and {first.name} are the same image with truths "
                            f"{img.truth} and {first.truth}")  # fmt: skip
        given.setdefault(img.gold_id, img)
    ids = list(given)
    keys = layout(client, keys)
    stored = client.hmget(keys.gold, ids) if ids else []
    for gid, old in zip(ids, stored, strict=True):
        if old is not None and int(text(old)) != given[gid].truth:
            raise GoldError(f"{given[gid].name}: loaded before with truth {text(old)}, now "
                            f"{given[gid].truth} (gold answers were scored with the old "
                            "truth; gtx-stream gold reset ... or use another prefix)")  # fmt: skip
    pipe = client.pipeline(transaction=True)
    for img in given.values():
        pipe.set(keys.gold_image(img.gold_id), img.jpeg)
        pipe.hset(keys.gold_files, img.gold_id, img.name)
        pipe.hset(keys.gold, img.gold_id, str(img.truth))
    pipe.hlen(keys.gold)
    *_, total = pipe.execute()
    # status reads the count from stats: the gold hash holds the truths, which no service
    # user but the label server's may read
    client.hset(keys.gold_stats, "gold_items", int(total))
    added = sum(old is None for old in stored)
    return LoadReport(added=added, kept=len(ids) - added, total=int(total))


def gold_answer(
    keys: Keys, person: str, gold_id: str, label: int, total_before: int,
    if_right: tuple[str, str, str], if_wrong: tuple[str, str, str],
) -> ScriptCall[tuple[str, int, int]]:  # fmt: skip
    """The call of ``gold_answer.lua``: each ``if_*`` is (score JSON, labelers record JSON or
    '', paused record JSON or '') for that outcome, computed from ``total_before``."""
    keys_ = (keys.gold, keys.gold_answers(person), keys.gold_scores, keys.labelers,
             keys.paused, keys.live, keys.gold_stats)  # fmt: skip
    argv = (person, gold_id, str(label), total_before,
            *(outcome[i] for i in range(3) for outcome in (if_right, if_wrong)))  # fmt: skip
    return ScriptCall(
        "gold_answer", keys_, argv, lambda reply: (text(reply[0]), int(reply[1]), int(reply[2]))
    )


class GoldBook:
    """What the label server asks about gold: draw a gold frame for a person, record an
    answer, a person's standing; and what an operator does: reset a person."""

    def __init__(self, client: redis.Redis, keys: Keys, settings: GoldSettings) -> None:
        self.r = client
        self.keys = layout(client, keys)
        self.s = settings
        self._runner = ScriptRunner(client)

    # --- estimates ---------------------------------------------------------------------------

    def score_of(self, correct: int, total: int) -> GoldScore:
        est = beta_accuracy(correct, total, (self.s.prior_a, self.s.prior_b), self.s.level)
        return GoldScore(correct, total, float(est.accuracy), float(est.lower), float(est.upper))

    def below_floor(self, score: GoldScore) -> bool:
        """The whole interval below the floor, once the person has answered enough gold to
        qualify (see the module's docstring for why)."""
        return score.total >= max(1, self.s.qualification) and score.upper < self.s.floor

    def _outcome(self, person: str, score: GoldScore) -> tuple[str, str, str]:
        qualified = score.total >= self.s.qualification
        record = ""
        if qualified:
            acc = LabelerAccuracy(score.accuracy, score.lower, score.upper, "gold", score.total,
                                  correct=score.correct)  # fmt: skip
            record = acc.check(person).to_json()
        pause = ""
        if self.below_floor(score):
            pause = json.dumps({
                "reason": f"gold accuracy {score.accuracy:.3f}, interval [{score.lower:.3f}, "
                f"{score.upper:.3f}] below the floor {self.s.floor:g} after {score.total} "
                f"gold answers",
                "at": time.time(), "accuracy": score.accuracy, "lower": score.lower,
                "upper": score.upper, "floor": self.s.floor, "n": score.total,
            }, sort_keys=True)  # fmt: skip
        return score.to_json(), record, pause

    # --- the label server --------------------------------------------------------------------

    def _score(self, person: str) -> GoldScore:
        raw = self.r.hget(self.keys.gold_scores, person)
        return self.score_of(0, 0) if raw is None else GoldScore.from_json(raw)

    def draw(self, person: str, rng: random.Random | None = None) -> GoldItem | None:
        """A gold frame for ``person``'s next frame, or None (a real frame, or nothing):
        :meth:`pick` when :meth:`due`; None for a paused person (who gets no frame at all:
        ask :meth:`is_paused`)."""
        rng = rng or random.Random()
        return self.pick(person, rng) if self.due(person, rng) else None

    def due(self, person: str, rng: random.Random) -> bool:
        """Whether ``person``'s next frame is gold: always while they are not qualified, else
        with chance ``gold.rate``; never while they are paused."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hget(self.keys.gold_scores, person)
        pipe.hexists(self.keys.paused, person)
        raw, paused = pipe.execute()
        if paused:
            return False
        total = 0 if raw is None else GoldScore.from_json(raw).total
        return total < self.s.qualification or rng.random() < self.s.rate

    def pick(self, person: str, rng: random.Random) -> GoldItem | None:
        """An item ``person`` has not answered yet, drawn at random; None once they have
        answered every one (their gold is used up: gold measures them no more)."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hkeys(self.keys.gold)
        pipe.hkeys(self.keys.gold_answers(person))
        every, answered = pipe.execute()
        left = sorted({text(x) for x in every} - {text(x) for x in answered})
        if not left:
            return None
        gid = rng.choice(left)
        return GoldItem(gid, self.keys.gold_image(gid))

    def image(self, gold_id: str) -> bytes | None:
        """A gold item's JPEG (None when there is no such item)."""
        data = self.r.get(self.keys.gold_image(gold_id))
        return None if data is None else bytes(data)  # type: ignore[arg-type]

    def answer(self, person: str, gold_id: str, label: int) -> GoldResult:
        """Record ``person``'s ``label`` for a gold item once, atomically with their new score,
        their registration once qualified, and their pause when below the floor.

        A second answer to the same item changes nothing (status ``duplicate``); an unknown
        item is status ``unknown``.
        """
        if label not in (0, 1):
            raise GoldError(f"label must be 0 or 1, got {label!r}")
        for attempt in range(_RETRIES):
            if attempt:
                time.sleep(random.random() * _RETRY_PAUSE)
            now = self._score(person)
            right = self.score_of(now.correct + 1, now.total + 1)
            wrong = self.score_of(now.correct, now.total + 1)
            outcomes = self._outcome(person, right), self._outcome(person, wrong)
            call = gold_answer(self.keys, person, gold_id, label, now.total, *outcomes)
            status, was_right, _ = self._runner.run_one(call)
            if status == "retry":
                continue
            paused = self.is_paused(person)
            if status == "recorded":
                self._mirror(person, paused)
            score = (right if was_right else wrong) if status == "recorded" else now
            if status == "duplicate":
                score = self._score(person)
            return GoldResult(
                status=status,  # type: ignore[arg-type]
                right=None if status == "unknown" else bool(was_right),
                score=score,
                qualified=score.total >= self.s.qualification,
                paused=paused,
            )
        raise GoldError(f"{person}: gold answer not recorded: {_RETRIES} concurrent answers")

    def _mirror(self, person: str, paused: bool) -> None:
        """On a Redis Cluster, the shards' copies of the registry after an answer: the person
        in them while registered, out of them once paused (nothing off a cluster)."""
        if paused:
            unmirror_labelers(self.r, self.keys, [person])
        elif self.keys.cluster and self.r.hexists(self.keys.labelers, person):
            mirror_labelers(self.r, self.keys, [person])

    def is_paused(self, person: str) -> bool:
        return bool(self.r.hexists(self.keys.paused, person))

    def pause_reason(self, person: str) -> str | None:
        """Why ``person`` is paused (None: not paused), one HGET."""
        raw = self.r.hget(self.keys.paused, person)
        return None if raw is None else str(json.loads(raw)["reason"])

    def standing(self, person: str) -> PersonGold:
        pipe = self.r.pipeline(transaction=False)
        pipe.hget(self.keys.gold_scores, person)
        pipe.hget(self.keys.paused, person)
        pipe.hlen(self.keys.gold)
        pipe.hlen(self.keys.gold_answers(person))
        raw, paused, n_gold, n_answered = pipe.execute()
        score = self.score_of(0, 0) if raw is None else GoldScore.from_json(raw)
        return PersonGold(
            person=person,
            score=score,
            qualified=score.total >= self.s.qualification,
            paused=None if paused is None else str(json.loads(paused)["reason"]),
            left=max(0, int(n_gold) - int(n_answered)),
        )

    # --- the operator ------------------------------------------------------------------------

    def reset(self, person: str) -> bool:
        """Forget ``person``'s gold answers and pause; unregister them when gold registered
        them, so that they qualify again. Returns whether there was anything to forget."""
        raw = self.r.hget(self.keys.labelers, person)
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(self.keys.gold_answers(person))
        pipe.hdel(self.keys.gold_scores, person)
        pipe.hdel(self.keys.paused, person)
        if raw is not None and rests_on_gold(raw):
            pipe.hdel(self.keys.labelers, person)
        forgot = any(int(x) for x in pipe.execute())
        if raw is not None and rests_on_gold(raw):
            unmirror_labelers(self.r, self.keys, [person])
        return forgot


def paused_people(client: redis.Redis, keys: Keys) -> dict[str, dict[str, Any]]:
    """person -> their paused record (reason, at, accuracy, lower, upper, floor, n)."""
    return {text(k): json.loads(v) for k, v in client.hgetall(layout(client, keys).paused).items()}
