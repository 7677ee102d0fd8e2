"""The paper's synthetic experiments (section 3), vectorised across trials.

- :mod:`.cohorts`: labeler cohorts (section 3.2) and everything random in a trial, drawn up front;
- :mod:`.threshold`: section 3.3, strategy 1, a confidence threshold on a budget (Table 1,
  Figure 1); MV and WMV take a fixed k;
- :mod:`.sweep`: section 3.3 for GTX and SV, every tau of a sweep in one pass over the labels;
- :mod:`.uncertainty`: section 3.4, strategy 2, uncertainty sampling (Table 2, Figure 2);
- :mod:`.em_stream`: section 3.3 with labeler parameters learned by EM as labels are bought;
- :mod:`.results`: per-setting results and Table 1's choice of the best setting.

GTX's labeler model is one-coin (the paper's) or two-coin (:class:`Coins`: a sensitivity and a
specificity per labeler); the baselines stay one-coin.

Every posterior comes from :func:`gtx_stream.core.models.aggregate` and every decision from
:mod:`gtx_stream.core.decision`, the code the aggregator runs; the simulator only decides which
labels each example gets, for all trials at once.
"""

from gtx_stream.core.accuracy import Estimator
from gtx_stream.offline.simulate.cohorts import (
    ACCURATE,
    ALL_COHORTS,
    CLASS_CONDITIONAL,
    COHORTS,
    LESS_ACCURATE,
    MISSES_POSITIVES,
    TWO_COIN_COHORTS,
    Cohort,
    Coins,
    Draws,
    Experiment,
    draw,
)
from gtx_stream.offline.simulate.em_stream import (
    DEFAULT_EVERY,
    Accuracy,
    em_stream,
    simulate_threshold_em,
)
from gtx_stream.offline.simulate.results import TABLE_ORDER, Outcome, best_outcomes
from gtx_stream.offline.simulate.sweep import Sweep, sweep
from gtx_stream.offline.simulate.threshold import PAPER_TAUS, run_threshold, simulate_threshold
from gtx_stream.offline.simulate.uncertainty import Curves, run_uncertainty, simulate_uncertainty

__all__ = [
    "ACCURATE",
    "ALL_COHORTS",
    "CLASS_CONDITIONAL",
    "COHORTS",
    "DEFAULT_EVERY",
    "LESS_ACCURATE",
    "MISSES_POSITIVES",
    "PAPER_TAUS",
    "TABLE_ORDER",
    "TWO_COIN_COHORTS",
    "Accuracy",
    "Cohort",
    "Coins",
    "Curves",
    "Draws",
    "Estimator",
    "Experiment",
    "Outcome",
    "Sweep",
    "best_outcomes",
    "draw",
    "em_stream",
    "run_threshold",
    "run_uncertainty",
    "simulate_threshold",
    "simulate_threshold_em",
    "simulate_uncertainty",
    "sweep",
]
