import pytest
import torch

from neurocodec.train.levels import extend_rows


def test_added_levels_keep_the_trained_rows_and_follow_their_trend():
    old = [0.01, 0.04]
    table = torch.tensor([[1.0, 2.0], [2.0, 2.0]])  # channel 0 grows like sqrt(lambda), channel 1 is flat
    out = extend_rows(table, old, [0.0025, 0.01, 0.04, 0.16])
    assert torch.equal(out[1:3], table)
    assert torch.allclose(out[0], torch.tensor([0.5, 2.0])) and torch.allclose(out[3], torch.tensor([4.0, 2.0]))


def test_new_lambdas_must_contain_the_trained_ones_in_order():
    with pytest.raises(ValueError, match="must contain the old ones"):
        extend_rows(torch.ones(2, 3), [0.01, 0.04], [0.005, 0.04, 0.01])
