"""SV, soft vote: each labeler spreads a weight of 1 by its accuracy."""

from __future__ import annotations

import pytest

from gtx_stream.core.models.sv import SVModel, soft_vote


def test_soft_vote_spreads_each_vote() -> None:
    # labeler 1 says 1 at 0.9: 0.9 to "1", 0.1 to "0"; labeler 2 says 0 at 0.6: 0.4 to "1"
    post = soft_vote([[1, 0]], [[0.9, 0.6]])
    assert post.p1[0] == pytest.approx((0.9 + 0.4) / 2)
    assert post.confidence[0] == pytest.approx(0.65) and post.label[0] == 1


def test_one_label_is_only_as_sure_as_its_labeler() -> None:
    # unlike MV and WMV, SV is not certain after one label: a threshold means something to it
    post = SVModel().posterior([[0]], {"accuracy": [[0.8]]})
    assert post.label[0] == 0 and post.confidence[0] == pytest.approx(0.8)
