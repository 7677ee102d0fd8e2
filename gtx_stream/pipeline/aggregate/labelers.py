"""What the aggregator knows of the labelers: parameters, who is live, who is backed off."""

from __future__ import annotations

import time

import redis

from gtx_stream.core.models import LabelerParams, ModelName
from gtx_stream.core.records import text
from gtx_stream.pipeline.dispatch import LabelerPool
from gtx_stream.store.keys import Keys
from gtx_stream.store.params import get_labelers


class LabelerBook:
    """Registered labelers' parameters (re-read at most once a second) and the pool that
    requests may go to now.

    ``model`` says which parameters: ``one_coin``, each labeler's accuracy (``OneCoin``);
    ``two_coin``, its sensitivity and specificity (``TwoCoin``), or its accuracy for both
    when it has none stored (:meth:`~gtx_stream.store.params.LabelerAccuracy.two_coin_params`).
    """

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        live_seconds: float,
        model: ModelName = ModelName.ONE_COIN,
    ) -> None:
        self.r = client
        self.keys = keys
        self.live_seconds = live_seconds
        self.model = ModelName(model)
        self._params: dict[str, LabelerParams] = {}
        self._params_at = -float("inf")

    def params(self, max_age: float = 1.0) -> dict[str, LabelerParams]:
        """labeler id -> the parameters the posterior weighs its labels with."""
        if time.monotonic() - self._params_at > max_age:
            records = get_labelers(self.r, self.keys)
            if self.model is ModelName.TWO_COIN:
                self._params = {lid: rec.two_coin_params() for lid, rec in records.items()}
            else:
                self._params = {lid: rec.one_coin_params() for lid, rec in records.items()}
            self._params_at = time.monotonic()
        return self._params

    def pool(self, with_load: bool) -> LabelerPool:
        """Live labelers not backed off nor paused (and, ``with_load``, everyone's outstanding
        requests), in one round trip, with the parameters decisions are made with (for ``best``
        dispatch). A paused person (``store.gold``) stays out even when a
        heartbeat stamps them live."""
        now = time.time()
        pipe = self.r.pipeline(transaction=False)
        pipe.zrangebyscore(self.keys.live, now - self.live_seconds, "+inf")
        pipe.hgetall(self.keys.backoff)
        pipe.hgetall(self.keys.paused)
        if with_load:
            pipe.hgetall(self.keys.load)
        live, backoff, paused, *load = pipe.execute()
        backed_off = {text(k) for k, until in backoff.items() if float(until) > now}
        left_out = backed_off | {text(x) for x in paused}
        pool = LabelerPool(available={text(x) for x in live} - left_out, params=self.params())
        if load:
            pool.load = {text(k): int(v) for k, v in load[0].items()}
        return pool
