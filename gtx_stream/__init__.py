"""gtx-stream: Ground Truth Extension (GTX) labels for video frames, on Redis."""

__version__ = "0.1.0"
