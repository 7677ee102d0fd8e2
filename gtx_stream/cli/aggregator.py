"""`gtx-stream aggregator`: apply labels, decide, dispatch and finalise, until stopped."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from typing import Any

from gtx_stream.cli.options import add_config_option
from gtx_stream.core.signals import set_from_signal

log = logging.getLogger("gtx_stream.pipeline.aggregate.aggregator")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "aggregator",
        help="run the aggregator: apply labels, ask labelers, finalise frames (until stopped)",
        description=(
            "Consume the labels stream, apply each label to its frame once, and decide: "
            "finalise, or ask one more labeler. Several aggregators may share the work: "
            "with aggregator.shards above 1 each owns some shards, and the others take a "
            "dead one's over. "
            "SIGTERM or Ctrl-C finish the current batch, then exit 0."
        ),
    )
    add_config_option(p)
    p.add_argument("--consumer", help="consumer name in the group (default: host-pid)")
    p.set_defaults(func=_run)


def stop_on_signals(
    stop: threading.Event, service: logging.Logger = log, work: str = "batch"
) -> None:
    """SIGTERM and SIGINT set ``stop``: the loop finishes its ``work`` (a batch: acknowledges
    it; the estimator's fit), exits 0. The signal is logged under ``service``'s logger (the
    aggregator's by default)."""

    def handler(signum: int, _frame: Any) -> None:
        service.info("signal %d: finishing the current %s", signum, work)
        set_from_signal(stop)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _run(args: argparse.Namespace) -> int:
    from gtx_stream.config import load_settings
    from gtx_stream.pipeline.aggregate.aggregator import Aggregator
    from gtx_stream.pipeline.aggregate.consumer import StateLost
    from gtx_stream.pipeline.aggregate.shards import ShardedAggregator
    from gtx_stream.pipeline.heap import freeze_startup_heap
    from gtx_stream.store.connection import connect_both
    from gtx_stream.store.keys import Keys
    from gtx_stream.store.params import register_configured

    settings = load_settings(args.config)
    client, queue = connect_both(settings)  # the same client unless redis.queue_url is set
    keys = Keys(settings.redis.prefix, shards=settings.aggregator.shards)
    # several shards: own some of them (with other aggregators) and hand them over on death
    sharded = settings.aggregator.shards > 1 or settings.redis.cluster  # a cluster: by shard
    agg: Aggregator | ShardedAggregator = (ShardedAggregator if sharded else Aggregator)(
        client, keys, settings.aggregator, consumer=args.consumer, retention=settings.retention,
        labeler_leases=settings.labeler_leases(), queue_client=queue,
    )  # fmt: skip
    agg.setup()  # refuses a shard count other than the pipeline's (one line, exit 2)
    # configured accuracies fill in; ones loaded from a file or an assessment are kept
    register_configured(client, keys, settings, overwrite=False)
    freeze_startup_heap()  # full collections walk only what the loop allocates
    stop = threading.Event()
    stop_on_signals(stop)
    log.info(
        "aggregator %s: method=%s tau=%s kappa=%s shards=%d", agg.consumer,
        settings.aggregator.method, settings.aggregator.tau, settings.aggregator.kappa,
        settings.aggregator.shards,
    )  # fmt: skip
    try:
        agg.run(stop)
    except StateLost as err:
        log.error("aggregator %s: %s", agg.consumer, err)
        return 1
    log.info("aggregator %s stopped", agg.consumer)
    return 0
