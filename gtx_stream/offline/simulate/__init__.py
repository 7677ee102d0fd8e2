"""The paper's synthetic experiments (section 3), vectorised across trials.

- :mod:`.cohorts`: labeler cohorts (section 3.2) and everything random in a trial, drawn up front;
- :mod:`.threshold`: section 3.3, strategy 1, a confidence threshold on a budget (Table 1,
  Figure 1); MV and WMV take a fixed k;
- :mod:`.sweep`: section 3.3 for GTX and SV, every tau of a sweep in one pass over the labels;
- :mod:`.uncertainty`: section 3.4, strategy 2, uncertainty sampling (Table 2, Figure 2);
- :mod:`.results`: per-setting results and Table 1's choice of the best setting.

Every posterior comes from :func:`gtx_stream.core.models.aggregate` and every decision from
:mod:`gtx_stream.core.decision`, the code the aggregator runs; the simulator only decides which
labels each example gets, for all trials at once.
"""

from gtx_stream.core.accuracy import Estimator
from gtx_stream.offline.simulate.cohorts import (
    ACCURATE,
    COHORTS,
    LESS_ACCURATE,
    Cohort,
    Draws,
    Experiment,
    draw,
)
from gtx_stream.offline.simulate.results import TABLE_ORDER, Outcome, best_outcomes
from gtx_stream.offline.simulate.sweep import Sweep, sweep
from gtx_stream.offline.simulate.threshold import PAPER_TAUS, run_threshold, simulate_threshold
from gtx_stream.offline.simulate.uncertainty import Curves, run_uncertainty, simulate_uncertainty

__all__ = [
    "ACCURATE",
    "COHORTS",
    "LESS_ACCURATE",
    "PAPER_TAUS",
    "TABLE_ORDER",
    "Cohort",
    "Curves",
    "Draws",
    "Estimator",
    "Experiment",
    "Outcome",
    "Sweep",
    "best_outcomes",
    "draw",
    "run_threshold",
    "run_uncertainty",
    "simulate_threshold",
    "simulate_uncertainty",
    "sweep",
]
