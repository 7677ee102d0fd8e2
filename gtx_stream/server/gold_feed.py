"""The gold book (:class:`gtx_stream.store.gold.GoldBook`) as the feed's
:class:`~gtx_stream.server.feed.GoldFeed`: what the label server needs of it, and no more.

A person with a configured ``accuracy`` is registered at once, without qualification (README):
they get real frames from the first one, with gold slipped in at ``gold.rate`` only; the book
alone would hand them nothing but gold until they had answered ``gold.qualification`` items.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable
from typing import TYPE_CHECKING

from gtx_stream.server.feed import GoldFeed
from gtx_stream.server.state import ServerState

if TYPE_CHECKING:
    from gtx_stream.store.gold import GoldBook

log = logging.getLogger(__name__)


class _Rolled(random.Random):
    """The rate was rolled already: the book's own roll always says gold; its pick of an item
    stays random."""

    def random(self) -> float:
        return 0.0


class BookFeed:
    def __init__(self, book: GoldBook, configured: Iterable[str] = ()) -> None:
        self.book = book
        self.configured = frozenset(configured)  # people with a configured accuracy
        self._rng = random.Random()
        self._used_up: set[str] = set()  # warned of: every gold item answered

    def draw(self, person: str) -> str | None:
        if person in self.configured:
            if self._rng.random() >= self.book.s.rate:
                return None  # a real frame: qualified by their configured accuracy
            rng: random.Random = _Rolled()
        else:
            rng = random.Random()
        if not self.book.due(person, rng):
            return None
        item = self.book.pick(person, rng)
        if item is None:
            self._warn_used_up(person)
            return None
        self._used_up.discard(person)  # more gold was loaded: warn again when it runs out
        return item.gold_id

    def _warn_used_up(self, person: str) -> None:
        """Once per person (until more gold is loaded for them): they have answered every gold
        item, so gold measures them no more, and one who has not qualified gets no frame."""
        if person in self._used_up:
            return
        self._used_up.add(person)
        st = self.book.standing(person)
        qualified = st.qualified or person in self.configured
        need = (f"they need gold.qualification = {self.book.s.qualification} gold answers to "
                "qualify and get no frame until then")  # fmt: skip
        if st.score.total == 0:  # no gold loaded at all: news only to those who need it
            if not qualified:
                log.warning("person %s: no gold is loaded, and %s; load it with gtx-stream "
                            "gold load DIR --truth CSV", person, need)  # fmt: skip
            return
        then = need if not qualified else (
            f"gold measures them no more (their gold record stays {st.score.correct} right "
            f"of {st.score.total}, and a drop in their accuracy cannot pause them)")  # fmt: skip
        log.warning("person %s has answered every gold item (%d): %s; load more with "
                    "gtx-stream gold load DIR --truth CSV", person, st.score.total,
                    then)  # fmt: skip

    def image(self, gold_id: str) -> bytes | None:
        return self.book.image(gold_id)

    def answer(self, person: str, gold_id: str, label: int) -> bool:
        result = self.book.answer(person, gold_id, label)
        if result.paused and result.status == "recorded":
            # the reason as status and /admin give it, not the score's repr
            why = self.book.pause_reason(person) or "paused"
            log.warning("person %s is paused: %s (gtx-stream gold reset %s lifts it)",
                        person, why, person)  # fmt: skip
        return result.status == "recorded"

    def paused(self, person: str) -> bool:
        return self.book.is_paused(person)


def gold_feed(state: ServerState) -> GoldFeed | None:
    """The gold book of ``state``'s settings; None without one (no gold is slipped in)."""
    try:
        from gtx_stream.store.gold import GoldBook
    except ModuleNotFoundError:
        return None
    configured = [lab.id for lab in state.settings.labelers
                  if lab.backend == "human" and lab.accuracy is not None]  # fmt: skip
    return BookFeed(GoldBook(state.client, state.keys, state.settings.gold), configured)
