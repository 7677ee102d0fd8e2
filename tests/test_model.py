import numpy as np

from gtx_stream import model


def test_posterior_placeholder_hand_case() -> None:
    # two labelers at 0.9 agree on 1, one at 0.7 says 0: odds 9 * 9 / (7/3)
    post = model.gtx_posterior([[1, 1, 0]], [[0.9, 0.9, 0.7]])
    odds = 9 * 9 / (0.7 / 0.3)
    np.testing.assert_allclose(post.p1, [odds / (1 + odds)])
