"""WMV, weighted majority vote: the paper's confidence is the share of weight."""

from __future__ import annotations

import pytest

from gtx_stream.core.models.wmv import WMVModel, weighted_majority_vote


def test_weighted_majority_vote_confidence_is_share_of_weight() -> None:
    post = weighted_majority_vote([[1, 0, 0]], [[0.9, 0.6, 0.7]])
    assert post.p1[0] == pytest.approx(0.9 / 2.2)
    assert post.label[0] == 0 and post.confidence[0] == pytest.approx(1.3 / 2.2)


def test_the_model_reads_the_accuracy() -> None:
    got = WMVModel().posterior([[1, 0]], {"accuracy": [[0.9, 0.6]]})
    assert got.p1[0] == pytest.approx(0.9 / 1.5)
