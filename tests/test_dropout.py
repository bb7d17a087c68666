"""Dropout masks from a counter-based stream: a function of (seed, step, layer), the same for a
model alone or in a batch."""

import pytest
import torch
import torch.nn.functional as F

from reglab.config import load_config
from reglab.counter_random import seed_of
from reglab.models.dropout import CountedDropout, dropout_masks
from reglab.runs import load_weights
from reglab.train import run
from reglab.train.batched import run_many

SHAPE = torch.Size([64, 300])


def masks(seeds, step, layer, keep):
    return dropout_masks(torch.tensor(seeds, dtype=torch.int32), step, layer, SHAPE,
                         torch.tensor(keep, dtype=torch.float64), torch.float32)


def test_a_models_masks_are_the_same_alone_and_in_a_batch():
    batch = masks([3, 11, 3], 7, 1, [0.8, 0.5, 0.9])
    for k, (seed, keep) in enumerate([(3, 0.8), (11, 0.5), (3, 0.9)]):
        assert torch.equal(batch[k], masks([seed], 7, 1, [keep])[0])


def test_masks_keep_1_minus_p_scaled_by_1_over_1_minus_p_and_change_with_seed_step_and_layer():
    m = masks([5], 0, 0, [0.8])[0]
    assert m.unique().tolist() == [0.0, pytest.approx(1 / 0.8)]
    kept = (m > 0).double().mean().item()
    assert abs(kept - 0.8) < 4 * (0.8 * 0.2 / SHAPE.numel()) ** 0.5  # four standard errors
    others = [masks([6], 0, 0, [0.8]), masks([5], 1, 0, [0.8]), masks([5], 0, 1, [0.8])]
    for other in others:
        agree = ((other[0] > 0) == (m > 0)).double().mean().item()
        assert abs(agree - (0.8**2 + 0.2**2)) < 0.01  # as independent draws agree
    assert torch.equal(masks([5], 0, 0, [0.8])[0], m)  # a pure function


def test_the_module_is_dropout_with_these_masks_and_counts_its_steps():
    torch.manual_seed(42)
    layer = CountedDropout(0.3, layer=2)
    assert layer.seed == seed_of(42)
    x = torch.randn(SHAPE)
    for step in range(3):
        expected = x * masks([seed_of(42)], step, 2, [0.7])[0]
        assert torch.equal(layer(x), expected)
    assert layer.step == 3
    assert torch.equal(layer.eval()(x), x)
    # the same expectation as torch's dropout: E[dropout(x)] = x
    ones = torch.ones(200_000)
    assert layer.train()(ones).mean().item() == pytest.approx(F.dropout(ones, 0.3).mean().item(), abs=0.01)


def test_seeds_of_any_size_become_int32():
    for seed in (0, 1, 2**31 - 1, 2**31, 2**32 + 5, 2**63 - 1):
        assert -(2**31) <= seed_of(seed) < 2**31
    assert seed_of(2**32 + 5) == 5


def test_batched_and_separate_dropout_runs_are_equal_bit_for_bit(tmp_path):
    base = ["data.n_train=200", "train.epochs=2", "model.hidden=[16,8]", "train.plots=false",
            "train.clip_norm=null", "reg=none"]
    configs = [load_config("mlp-l2", base + [f"seed={s}", f"model.dropout={p}"]) for s, p in ((0, 0.2), (1, 0.5))]
    separate = [run(config, tmp_path / "separate", progress=False) for config in configs]  # each alone
    together = run_many(configs, tmp_path / "together", progress=False)
    for s, t in zip(separate, together):
        assert t.summary["vectorized"] and s.summary["val_loss"] == t.summary["val_loss"]
        ws, wt = load_weights(s.path), load_weights(t.path)
        assert all(torch.equal(ws[name], wt[name]) for name in ws)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_masks_are_the_same_on_cuda():
    seeds, keep = torch.tensor([3, 11], dtype=torch.int32), torch.tensor([0.8, 0.5], dtype=torch.float64)
    cpu = dropout_masks(seeds, 9, 1, SHAPE, keep, torch.float32)
    cuda = dropout_masks(seeds.cuda(), 9, 1, SHAPE, keep.cuda(), torch.float32)
    assert torch.equal(cpu, cuda.cpu())
