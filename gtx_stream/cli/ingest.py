"""`gtx-stream ingest SOURCE`: read frames and open them for labeling."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import replace
from types import FrameType
from typing import TYPE_CHECKING, Any

from gtx_stream.cli.options import add_config_option
from gtx_stream.config import EXIT_CONFIG, ConfigError, load_settings
from gtx_stream.core.signals import set_from_signal

if TYPE_CHECKING:
    from gtx_stream.config import Settings
    from gtx_stream.pipeline.ingest.many import SourceSpec


def register(sub: Any) -> None:
    p = sub.add_parser(
        "ingest",
        help="read a video, camera, stream or image folder and open its frames for labeling",
        description=(
            "Read SOURCE with OpenCV, sample it, store each kept frame as JPEG in Redis and "
            "open it for labeling. SOURCE is a video file, a camera index (0, 1, ...), a "
            "stream URL (rtsp://, http://...) or a folder of images (in name order). Several "
            "SOURCEs (or --sources FILE) are read at once, one thread each; a source that "
            "fails ends alone and the others go on."
        ),
    )
    p.add_argument("source", nargs="*", metavar="SOURCE", help="video, camera, URL or folder")
    p.add_argument(
        "--sources",
        metavar="FILE",
        help=(
            "read the sources listed in FILE, one 'SOURCE [NAME] [truth=CSV]' per line (NAME: "
            "its id; CSV: its frame_index,truth file, relative to FILE's folder)"
        ),
    )
    add_config_option(p)
    p.add_argument("--fps", type=float, help="target sampling rate (frames per second)")
    p.add_argument("--every", type=int, metavar="N", help="keep every N-th frame")
    p.add_argument("--max-frames", type=int, metavar="N", help="stop after N sampled frames")
    p.add_argument(
        "--skip-still",
        action="store_true",
        default=None,
        help="skip frames that barely differ from the last kept one (ingest.still_threshold)",
    )
    p.add_argument("--truth", metavar="CSV", help="frame_index,truth file: known truth per frame")
    p.add_argument(
        "--source-id",
        metavar="NAME",
        help="frame ids are NAME-<index> (default: a hash of the source's path or URL)",
    )
    p.add_argument(
        "--tasks",
        metavar="DATASET_DIR",
        help="open one frame per task of a crowd dataset (truth.csv, answers.csv) instead",
    )
    p.set_defaults(func=_run)


def _error(message: str) -> None:
    print(f"gtx-stream ingest: error: {message}", file=sys.stderr)


def _check_sources(
    specs: Sequence[SourceSpec], truths: Sequence[dict[int, int] | None], settings: Settings
) -> str:
    """Why several sources cannot be ingested as given ("" when they can), before any starts.

    Each would fail in its own thread otherwise, with a traceback and exit 1, or race with a
    twin of itself for the same frame ids (``line.avi`` and ``./line.avi`` share one id), or,
    under two NAMEs, have its frames labeled (and paid for) twice.
    """
    from gtx_stream.pipeline.ingest.ingester import SOURCE_ID
    from gtx_stream.pipeline.ingest.sources import parse_source

    simulated = [lab.backend == "simulated" for lab in settings.labelers]
    bare = [spec.source for spec, truth in zip(specs, truths, strict=True) if truth is None]
    if bare and simulated and all(simulated):
        return (
            f"no truth for {', '.join(bare)}, and every configured labeler is simulated (it "
            "draws its labels from a frame's truth): give each source its truth in a sources "
            "file ('SOURCE [NAME] truth=CSV'), or configure a labeler that is not simulated"
        )
    seen: dict[str, str] = {}
    uris: dict[str, str] = {}  # one file, camera or URL under two NAMEs is labeled twice
    for spec in specs:
        if spec.source_id is not None and not SOURCE_ID.fullmatch(spec.source_id):
            return f"source id {spec.source_id!r}: use letters, digits, '_', '.', '-'"
        source = parse_source(spec.source, reconnect_max_seconds=0.0, stop=threading.Event())
        sid = spec.source_id or source.source_id
        if sid in seen:
            return f"source id {sid!r} is given twice ({seen[sid]!r} and {spec.source!r})"
        if source.uri in uris:
            return (f"{source.uri} is given twice ({uris[source.uri]!r} and {spec.source!r}, "
                    "under two names): its frames would be labeled twice")  # fmt: skip
        seen[sid] = spec.source
        uris[source.uri] = spec.source
    return ""


def _run(args: argparse.Namespace) -> int:
    import cv2
    import redis
    from pydantic import ValidationError

    from gtx_stream.pipeline.ingest.ingester import InputError, SourceError, run_ingest
    from gtx_stream.pipeline.ingest.many import (
        SourceSpec,
        read_sources_file,
        read_truths,
        run_many,
    )
    from gtx_stream.store.connection import connect, redacted
    from gtx_stream.store.keys import Keys

    specs = [SourceSpec(s) for s in args.source]
    if args.sources:
        try:
            specs += read_sources_file(args.sources)
        except SourceError as err:
            _error(str(err))
            return EXIT_CONFIG
    if bool(specs) == (args.tasks is not None):
        _error("give either SOURCE (or --sources FILE) or --tasks DATASET_DIR")
        return EXIT_CONFIG
    if len(specs) > 1 and (args.truth or args.source_id):
        _error(
            "--truth and --source-id go with one SOURCE (a sources file gives each source "
            "its NAME and truth=CSV)"
        )
        return EXIT_CONFIG
    if args.truth and specs:
        if specs[0].truth is not None:
            _error("--truth and the sources file's truth=CSV both give the source a truth")
            return EXIT_CONFIG
        specs = [replace(specs[0], truth=args.truth)]
    try:  # every truth file, before any source starts
        truths = read_truths(specs)
    except SourceError as err:
        _error(str(err))
        return EXIT_CONFIG
    settings = load_settings(args.config)
    if len(specs) > 1:
        problem = _check_sources(specs, truths, settings)
        if problem:
            _error(problem)
            return EXIT_CONFIG
    overrides = {
        "fps": args.fps,
        "every": args.every,
        "max_frames": args.max_frames,
        "skip_still": args.skip_still,
    }
    for name, value in overrides.items():
        if value is None:
            continue
        try:
            setattr(settings.ingest, name, value)
        except ValidationError as err:
            msg = err.errors()[0]["msg"]
            raise ConfigError(
                f"config error: --{name.replace('_', '-')}: {msg} (got {value!r})"
            ) from None
    # no PING: the ingester rides out a Redis that is not up yet; a bad URL stops it here
    client = connect(settings, check=False)

    # OpenCV's and FFmpeg's own messages would bury the one-line error of an unreadable
    # source; with --log-level DEBUG they stay. FFmpeg reads its level on first use.
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        set_from_signal(stop)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        if len(specs) > 1:
            outcomes = run_many(client, Keys(settings.redis.prefix), settings, specs, stop,
                                truths)  # fmt: skip
            for out in outcomes:
                print(out.summary())
            failed = [out for out in outcomes if out.error]
            if not failed:
                return 0
            # 1 unless a restart would fail the same way for every source that failed
            return EXIT_CONFIG if all(out.input_error for out in failed) else 1
        report = run_ingest(
            client,
            Keys(settings.redis.prefix),
            settings,
            specs[0].source if specs else None,
            truth_csv=None if specs else args.truth,  # --tasks with --truth
            truths=truths[0] if specs else None,
            tasks_dir=args.tasks,
            stop_event=stop,
            source_id=args.source_id or (specs[0].source_id if specs else None),
        )
    except SourceError as err:
        _error(str(err))
        # a missing file, say, fails again after a restart; a camera not there yet may not
        return EXIT_CONFIG if isinstance(err, InputError) else 1
    except redis.RedisError as err:
        # a cluster node reached as one Redis: MOVED, or CROSSSLOT for a script's keys
        on_cluster_node = isinstance(err, redis.exceptions.MovedError) or (
            "hash to the same slot" in str(err))  # fmt: skip
        _error(f"redis at {redacted(settings.redis.url.get_secret_value())} is a Redis "
               "Cluster node: set redis.cluster = true (GTX_REDIS__CLUSTER) and a standalone "
               "redis.queue_url" if on_cluster_node else f"Redis: {err}")  # fmt: skip
        return 1
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        client.close()
    print(report.summary())
    return 0
