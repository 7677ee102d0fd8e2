"""The gold book (:class:`gtx_stream.store.gold.GoldBook`) as the feed's
:class:`~gtx_stream.server.feed.GoldFeed`: what the label server needs of it, and no more."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from gtx_stream.server.feed import GoldFeed
from gtx_stream.server.state import ServerState

if TYPE_CHECKING:
    from gtx_stream.store.gold import GoldBook

log = logging.getLogger(__name__)


class BookFeed:
    def __init__(self, book: GoldBook) -> None:
        self.book = book

    def draw(self, person: str) -> str | None:
        item = self.book.draw(person)
        return None if item is None else item.gold_id

    def image(self, gold_id: str) -> bytes | None:
        return self.book.image(gold_id)

    def answer(self, person: str, gold_id: str, label: int) -> None:
        result = self.book.answer(person, gold_id, label)
        if result.paused:
            log.warning("person %s is paused: %s", person, result.score)

    def paused(self, person: str) -> bool:
        return self.book.is_paused(person)


def gold_feed(state: ServerState) -> GoldFeed | None:
    """The gold book of ``state``'s settings; None without one (no gold is slipped in)."""
    try:
        from gtx_stream.store.gold import GoldBook
    except ModuleNotFoundError:
        return None
    return BookFeed(GoldBook(state.client, state.keys, state.settings.gold))
