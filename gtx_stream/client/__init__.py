"""A small typed client for applications: submit frames, wait for their labels, and read the
finalised labels through a consumer group.

::

    from gtx_stream.client import Client

    with Client() as client:
        frame_id = client.submit(image, source="line3")
        record = client.wait(frame_id, timeout=120)  # a FinalRecord

``FinalRecord`` (from :mod:`gtx_stream.core.records`) is exported here too, for type hints, and
``StateLost``, which ``final_labels`` raises when Redis came back without its consumer group.
"""

from gtx_stream.client.client import Client
from gtx_stream.client.errors import (
    BudgetSpent,
    ClientError,
    FrameDropped,
    PipelineFull,
    RedisUnreachable,
    UnknownFrame,
)
from gtx_stream.core.records import FinalRecord
from gtx_stream.pipeline.aggregate.consumer import StateLost

__all__ = [
    "BudgetSpent",
    "Client",
    "ClientError",
    "FinalRecord",
    "FrameDropped",
    "PipelineFull",
    "RedisUnreachable",
    "StateLost",
    "UnknownFrame",
]
