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

    def draw(self, person: str) -> str | None:
        if person in self.configured:
            if self._rng.random() >= self.book.s.rate:
                return None  # a real frame: qualified by their configured accuracy
            item = self.book.draw(person, rng=_Rolled())
        else:
            item = self.book.draw(person)
        return None if item is None else item.gold_id

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
