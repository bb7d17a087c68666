"""Weight statistics of a run: the L2 norm of the weight matrices and exact zeros in percent."""

import math

import torch
from torch import nn

from reglab.train import weight_stats


def test_zeros_are_a_percentage_per_layer_and_in_all():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 4))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[0.0, 1.0], [0.0, 2.0]]))  # 2 of 4 zero
        model[1].weight.fill_(3.0)  # none of 8
    stats = weight_stats(model)
    assert stats["zeros/0.weight"] == 50.0 and stats["zeros/1.weight"] == 0.0
    assert stats["zeros_total"] == 100.0 * 2 / 12
    assert math.isclose(stats["weight_l2"], math.sqrt(1 + 4 + 8 * 9))
