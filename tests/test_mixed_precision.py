"""Mixed precision: a ``torch.amp.GradScaler`` with fused and non-fused optimizers, steps the scaler
skips, bf16 autocast and an explicit ``scaler.unscale_``, against torch's own ``weight_decay`` and
AdamW under the same scaler, in a plain loop and under Lightning. On CPU, and on CUDA when present."""

import math

import pytest
import torch
from torch import nn

from reglab import L1, L2, Regularizer, warmup

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
LAM, LR = 0.2, 0.01
SKIPPED = {2, 5}  # the steps at which a gradient is made inf: the scaler skips them
STEPS = 8


def make_model(device):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 2)).to(device)


def batch(device):
    g = torch.Generator().manual_seed(1)
    return torch.randn(32, 6, generator=g).to(device), torch.randn(32, 2, generator=g).to(device)


def weights_and_rest(model, weight_decay):
    """Param groups: torch's ``weight_decay`` on the weight matrices only, as ``weights()`` selects."""
    weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
    rest = [p for n, p in model.named_parameters() if not n.endswith("weight")]
    return [{"params": weights, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


OPTIMIZERS = {
    "sgd": lambda groups, fused: torch.optim.SGD(groups, lr=LR, momentum=0.9, fused=fused),
    "adam": lambda groups, fused: torch.optim.Adam(groups, lr=LR, fused=fused),
    "adamw": lambda groups, fused: torch.optim.AdamW(groups, lr=LR, fused=fused),
}


def scaled_loop(model, optimizer, device, *, unscale=False, after_step=None, autocast=None):
    """``STEPS`` steps under a GradScaler; at the steps in SKIPPED one gradient is inf, so the scaler
    skips them (and halves its scale). ``after_step(taken)`` runs after each step."""
    scaler = torch.amp.GradScaler(device, init_scale=2.0**16, growth_interval=3)
    x, y = batch(device)
    for step in range(STEPS):
        optimizer.zero_grad()
        with torch.autocast(device, dtype=autocast, enabled=autocast is not None):
            loss = nn.functional.mse_loss(model(x).float(), y)
        scaler.scale(loss).backward()
        if step in SKIPPED:
            with torch.no_grad():
                model[0].weight.grad[0, 0] = math.inf
        if unscale:
            scaler.unscale_(optimizer)
        scale = scaler.get_scale()
        scaler.step(optimizer)
        scaler.update()
        taken = scaler.get_scale() >= scale  # the scale shrinks exactly when the step was skipped
        assert taken == (step not in SKIPPED)
        if after_step is not None:
            after_step(taken)


def assert_same(a, b):
    for (name, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fused", [False, True], ids=["plain", "fused"])
@pytest.mark.parametrize("name", ["sgd", "adam"])
@pytest.mark.parametrize("unscale", [False, True], ids=["", "unscale_"])
def test_coupled_l2_equals_weight_decay_under_a_scaler(device, fused, name, unscale):
    ours, theirs = make_model(device), make_model(device)
    reg = Regularizer(ours, L2(LAM))
    scaled_loop(ours, reg.attach(OPTIMIZERS[name](weights_and_rest(ours, 0.0), fused)), device, unscale=unscale)
    scaled_loop(theirs, OPTIMIZERS[name](weights_and_rest(theirs, LAM), fused), device, unscale=unscale)
    assert_same(ours, theirs)
    assert reg.steps == STEPS - len(SKIPPED)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fused", [False, True], ids=["plain", "fused"])
def test_decoupled_l2_with_adam_equals_adamw_under_a_scaler(device, fused):
    ours, theirs = make_model(device), make_model(device)
    reg = Regularizer(ours, L2(LAM), mode="decoupled")
    scaled_loop(ours, reg.attach(OPTIMIZERS["adam"](weights_and_rest(ours, 0.0), fused)), device)
    scaled_loop(theirs, OPTIMIZERS["adamw"](weights_and_rest(theirs, LAM), fused), device)
    assert_same(ours, theirs)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fused", [False, True], ids=["plain", "fused"])
@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_proximal_map_and_schedule_skip_the_skipped_steps(device, fused, name):
    """The prox w ← softshrink(w, lr·λ_t) follows each step taken, never a skipped one, and the
    warm-up's step count t counts only the steps taken."""
    ours, theirs = make_model(device), make_model(device)
    reg = Regularizer(ours, L1(LAM, schedule=warmup(4)), mode="proximal")
    scaled_loop(ours, reg.attach(OPTIMIZERS[name](weights_and_rest(ours, 0.0), fused)), device)
    taken = 0

    def prox(step_taken):
        nonlocal taken
        if step_taken:
            with torch.no_grad():
                for layer in (theirs[0], theirs[2]):
                    layer.weight.copy_(torch.nn.functional.softshrink(layer.weight, LR * LAM * min(1, taken / 4)))
            taken += 1

    scaled_loop(theirs, OPTIMIZERS[name](weights_and_rest(theirs, 0.0), fused), device, after_step=prox)
    assert_same(ours, theirs)
    assert reg.steps == taken == STEPS - len(SKIPPED)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fused", [False, True], ids=["plain", "fused"])
def test_bf16_autocast_is_exact(device, fused):
    ours, theirs = make_model(device), make_model(device)
    reg = Regularizer(ours, L2(LAM))
    scaled_loop(ours, reg.attach(OPTIMIZERS["adam"](weights_and_rest(ours, 0.0), fused)), device,
                autocast=torch.bfloat16)
    scaled_loop(theirs, OPTIMIZERS["adam"](weights_and_rest(theirs, LAM), fused), device, autocast=torch.bfloat16)
    assert_same(ours, theirs)


# -- under Lightning, with a GradScaler in its MixedPrecision plugin ------------------------------


def lightning_fit(device, fused, mode, weight_decay, callback=None):
    L = pytest.importorskip("lightning")
    from lightning.pytorch.plugins.precision import MixedPrecision

    x, y = batch("cpu")
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = make_model("cpu")
            self.backwards = 0

        def training_step(self, data, index):
            return nn.functional.mse_loss(self.net(data[0]).float(), data[1])

        def on_after_backward(self):
            if self.backwards in SKIPPED:
                with torch.no_grad():
                    self.net[0].weight.grad[0, 0] = math.inf
            self.backwards += 1

        def configure_optimizers(self):
            optimizer = OPTIMIZERS["adamw" if weight_decay and mode == "decoupled" else "adam"]
            return optimizer(weights_and_rest(self.net, weight_decay), fused)

    module = Module()
    steps = []

    class Steps(L.Callback):
        def on_train_end(self, trainer, module):
            steps.extend(callback.state_dict()["steps"] if callback else [])

    # Trainer(precision="16-mixed") makes a GradScaler only on CUDA; the plugin is built with one here.
    plugin = MixedPrecision("16-mixed", device, scaler=torch.amp.GradScaler(device, growth_interval=3))
    trainer = L.Trainer(accelerator=device, devices=1, max_epochs=2, plugins=[plugin],
                        callbacks=[callback, Steps()] if callback else [], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, loader)
    return module.net, steps


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fused", [False, True], ids=["plain", "fused"])
@pytest.mark.parametrize("mode", ["coupled", "decoupled"])
def test_under_lightning_with_a_scaler_plugin(device, fused, mode):
    from reglab.lightning import RegularizationCallback

    callback = RegularizationCallback(L2(LAM), mode=mode)
    ours, steps = lightning_fit(device, fused, mode, 0.0, callback)
    theirs, _ = lightning_fit(device, fused, mode, LAM)
    assert_same(ours, theirs)
    assert steps == [8 - len(SKIPPED)]  # the regularizer's step count: the steps taken
