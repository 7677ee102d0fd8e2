"""`gtx-stream estimator`: re-learn labeler parameters by EM from every final label."""

from __future__ import annotations

import argparse
import logging
import threading
from typing import Any

from gtx_stream.cli.aggregator import stop_on_signals
from gtx_stream.cli.options import add_config_option

log = logging.getLogger("gtx_stream.pipeline.estimate.service")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "estimator",
        help="run the estimator: refit labeler parameters by EM from final labels plus gold",
        description=(
            "Every estimator.every_seconds (or estimator.every_labels new final labels), run "
            "semi-supervised Dawid-Skene EM over the labels of the latest finalised frames "
            "(at most estimator.window_labels) plus each labeler's gold answers, and write the "
            "parameters (source em, with intervals and the time of the fit) for the "
            "aggregator's next decisions; a period with no new final label and no labeler "
            "record changed since the last fit fits and writes nothing (logged at DEBUG). "
            "One estimator per pipeline is enough. SIGTERM or "
            "Ctrl-C finish the current fit, then exit 0."
        ),
    )
    add_config_option(p)
    p.add_argument("--once", action="store_true", help="fit once now, print what was written")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from gtx_stream.config import ConfigError, load_settings
    from gtx_stream.pipeline.estimate import Estimator
    from gtx_stream.store.connection import connect
    from gtx_stream.store.keys import Keys

    settings = load_settings(args.config)
    s = settings.estimator
    if s.min_labels > s.window_labels:  # the window never holds enough labels for a fit
        raise ConfigError(
            f"config error: estimator.min_labels = {s.min_labels} is above "
            f"estimator.window_labels = {s.window_labels}: no fit would ever run"
        )
    client = connect(settings)
    est = Estimator(client, Keys(settings.redis.prefix), settings.estimator, settings.aggregator)
    if args.once:
        report = est.fit_once()
        if report is None:
            print(f"fewer than estimator.min_labels = {settings.estimator.min_labels} final "
                  f"labels ({est.window.n_labels}): nothing fitted")  # fmt: skip
            return 0
        print(f"EM over {report.labels} labels of {report.frames} frames plus "
              f"{report.gold_answers} gold answers in {report.seconds:.3f} s: "
              f"wrote {', '.join(report.written) or 'nothing'}"
              + (f"; changed meanwhile, kept: {', '.join(report.skipped)}" if report.skipped
                 else ""))  # fmt: skip
        if report.written:
            from gtx_stream.cli.labelers import stored_table
            from gtx_stream.store.em_params import registered

            stored = registered(client, Keys(settings.redis.prefix))
            print(stored_table({lid: stored[lid].raw for lid in report.written
                                if lid in stored}))  # fmt: skip
        return 0
    stop = threading.Event()
    stop_on_signals(stop, log, work="fit")
    log.info(
        "estimator: model=%s every %ss or %s labels, window %d labels",
        settings.aggregator.model, settings.estimator.every_seconds,
        settings.estimator.every_labels or "-", settings.estimator.window_labels,
    )  # fmt: skip
    est.run(stop)
    log.info("estimator stopped")
    return 0
