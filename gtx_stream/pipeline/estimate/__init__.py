"""``gtx-stream estimator``: labeler parameters re-learned by EM from the labels of finalised
frames plus gold (:mod:`.service`, over the sliding window of :mod:`.window`)."""

from gtx_stream.pipeline.estimate.service import Estimator, FitReport

__all__ = ["Estimator", "FitReport"]
