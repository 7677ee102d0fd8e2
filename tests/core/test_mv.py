"""MV, majority vote: the paper's confidence is the share of votes."""

from __future__ import annotations

import numpy as np

from gtx_stream.core.models import TIE_LABEL
from gtx_stream.core.models.mv import MVModel, majority_vote


def test_majority_vote_confidence_is_share_of_votes() -> None:
    post = majority_vote([[1, 1, 0], [0, 0, 0]])
    np.testing.assert_allclose(post.p1, [2 / 3, 0.0])
    np.testing.assert_allclose(post.confidence, [2 / 3, 1.0])
    assert list(post.label) == [1, 0]
    four = majority_vote([[1, 0, 0, 0]])
    assert four.confidence[0] == 0.75 and four.label[0] == 0


def test_majority_vote_ignores_masked_slots_and_ties_on_no_label() -> None:
    post = majority_vote([[1, 0, 0], [1, 1, 1]], mask=[[True, False, False], [False] * 3])
    assert post.p1[0] == 1.0 and post.confidence[0] == 1.0  # one vote: certain
    assert post.p1[1] == 0.5 and post.label[1] == TIE_LABEL


def test_the_model_reads_no_labeler_parameter() -> None:
    assert MVModel.reads == ()
    got = MVModel().posterior([[1, 0, 0]], {})
    assert got.p1[0] == 1 / 3
