"""The heap of the aggregator, settled once it has started.

Starting an aggregator imports redis-py, RQ, numpy and our own modules and builds its clients:
about 72,000 objects, every one of which each full (generation 2) collection of the cyclic
garbage collector walks again, 27 to 32 ms a time measured in ``benchmarks/bench_shards.py``'s
aggregators (``gc.callbacks``), while none of them will ever be garbage.
:func:`freeze_startup_heap` collects what starting left behind, then moves every object still
alive into the collector's permanent generation (:func:`gc.freeze`): later collections walk
only what the service allocated since. Nothing is leaked but the garbage of cycles among
objects alive at that moment, if any of them is dropped later. Measured: 7 to 10% less
aggregator CPU per label (BENCHMARKS.md, "Sharded aggregators"); in the labeler workers no
difference showed above the runs' spread, so they do not call it.
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> int:
    """Collect, then freeze what is alive; the number of objects frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
