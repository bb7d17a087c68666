"""Training under PyTorch Lightning (CPU) gives the same weights as the plain loop, with the
regularizer attached in configure_optimizers or through RegularizationCallback, in automatic and
manual optimization."""

import copy
import csv
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import reglab as rl
from reglab import L1, L2, Regularizer

L = pytest.importorskip("lightning")
from reglab.lightning import RegularizationCallback  # noqa: E402

from test_regularizer import make_model  # noqa: E402

EPOCHS, BATCH = 2, 8
CASES = {  # mode → (penalty, optimizer)
    "coupled": (lambda: L2(0.3), lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9)),
    "decoupled": (lambda: L2(0.3), lambda ps: torch.optim.Adam(ps, lr=0.01)),
    "proximal": (lambda: L1(0.05), lambda ps: torch.optim.SGD(ps, lr=0.05)),
}


def dataset():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(32, 2, 6, generator=g, dtype=torch.float64)
    return TensorDataset(x, torch.randn(32, 2, generator=g, dtype=torch.float64))


def plain_loop(model, optimizer):
    for _ in range(EPOCHS):
        for x, y in DataLoader(dataset(), batch_size=BATCH):
            optimizer.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()


class Module(L.LightningModule):
    def __init__(self, net, make_optimizer, reg=None, manual=False):
        super().__init__()
        self.net, self.make_optimizer, self.reg = net, make_optimizer, reg
        self.automatic_optimization = not manual

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        if not self.automatic_optimization:
            opt = self.optimizers()
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()
        return loss

    def configure_optimizers(self):
        opt = self.make_optimizer(self.net.parameters())
        return self.reg.attach(opt) if self.reg is not None else opt  # one line in configure_optimizers

    def train_dataloader(self):
        return DataLoader(dataset(), batch_size=BATCH)


def fit(module, callbacks=()):
    trainer = L.Trainer(
        max_epochs=EPOCHS, accelerator="cpu", devices=1, precision="64-true", logger=False, callbacks=list(callbacks),
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        trainer.fit(module)
    return trainer


def assert_same(a, b, atol=1e-6):
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, atol=atol, rtol=0, msg=n)


def reference(mode, start):
    penalty, make_opt = CASES[mode]
    plain = copy.deepcopy(start)
    plain_loop(plain, Regularizer(plain, penalty(), mode=mode).attach(make_opt(plain.parameters())))
    unregularized = copy.deepcopy(start)
    plain_loop(unregularized, make_opt(unregularized.parameters()))
    assert max((p - q).abs().max().item() for p, q in zip(plain.parameters(), unregularized.parameters())) > 1e-3
    return plain


@pytest.mark.parametrize("mode", CASES)
def test_attached_in_configure_optimizers_equals_the_plain_loop(mode):
    start = make_model()
    penalty, make_opt = CASES[mode]
    net = copy.deepcopy(start)
    fit(Module(net, make_opt, reg=Regularizer(net, penalty(), mode=mode)))
    assert_same(net, reference(mode, start))


@pytest.mark.parametrize("manual", [False, True], ids=["automatic", "manual"])
@pytest.mark.parametrize("mode", CASES)
def test_callback_equals_the_plain_loop(mode, manual):
    start = make_model()
    penalty, make_opt = CASES[mode]
    net = copy.deepcopy(start)
    fit(Module(net, make_opt, manual=manual), [RegularizationCallback(penalty(), mode=mode)])
    assert_same(net, reference(mode, start))


def test_callback_logs_values_norms_and_zeros_per_epoch():
    net = make_model()
    callback = RegularizationCallback([L2(0.3), L1(0.05, on=rl.named("net.6.*"), mode="proximal")])
    trainer = fit(Module(net, lambda ps: torch.optim.SGD(ps, lr=0.05)), [callback])
    metrics = trainer.callback_metrics
    weights = [p.detach() for _, p in rl.weights().resolve(net)]
    head = [net[6].weight.detach(), net[6].bias.detach()]
    assert metrics["reg/l2"].item() == pytest.approx(0.15 * sum(w.pow(2).sum() for w in weights).item(), rel=1e-6)
    assert metrics["reg/l2/norm"].item() == pytest.approx(torch.sqrt(sum(w.pow(2).sum() for w in weights)).item(), rel=1e-6)
    assert metrics["reg/l1:net.6.*"].item() == pytest.approx(0.05 * sum(p.abs().sum() for p in head).item(), rel=1e-6)
    zeros = 100.0 * sum(int((p == 0).sum()) for p in head) / sum(p.numel() for p in head)
    assert metrics["reg/l1:net.6.*/zeros"].item() == pytest.approx(zeros)
    assert callback.regularizers == []  # detached at the end of fit


class TwoOptimizers(L.LightningModule):
    """A generator/discriminator pair with one optimizer each, manual optimization."""

    def __init__(self):
        super().__init__()
        self.automatic_optimization = False
        self.g, self.d = make_model(0), make_model(1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        for net, opt in zip((self.g, self.d), self.optimizers()):
            opt.zero_grad()
            self.manual_backward(nn.functional.mse_loss(net(x), y))
            opt.step()

    def configure_optimizers(self):
        return torch.optim.SGD(self.g.parameters(), lr=0.05), torch.optim.Adam(self.d.parameters(), lr=0.01)

    def train_dataloader(self):
        return DataLoader(dataset(), batch_size=BATCH)


def test_callback_regularizes_each_optimizer_over_its_own_parameters():
    module = TwoOptimizers()
    g, d = copy.deepcopy(module.g), copy.deepcopy(module.d)
    callback = RegularizationCallback(L2(0.3), mode="decoupled")
    trainer = fit(module, [callback])
    plain_loop(g, Regularizer(g, L2(0.3), mode="decoupled").attach(torch.optim.SGD(g.parameters(), lr=0.05)))
    plain_loop(d, Regularizer(d, L2(0.3), mode="decoupled").attach(torch.optim.Adam(d.parameters(), lr=0.01)))
    assert_same(module.g, g)
    assert_same(module.d, d)
    expected = 0.15 * sum(p.detach().pow(2).sum() for _, p in rl.weights().resolve(module)).item()
    assert trainer.callback_metrics["reg/l2"].item() == pytest.approx(expected, rel=1e-6)


def test_import_reglab_works_without_lightning():
    code = (
        "import sys; sys.modules['lightning'] = None\n"
        "import reglab\n"
        "try:\n    import reglab.lightning\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "pip install 'reglab[lightning]'" in out


def test_readme_with_lightning_block_runs(capsys):
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("## With Lightning", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace = {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        exec(compile(code, "README.md", "exec"), namespace)
    assert "reg/l2" in namespace["trainer"].callback_metrics
    assert "tensor(" in capsys.readouterr().out


def test_callback_refuses_a_term_on_parameters_no_optimizer_holds():
    net = make_model()
    module = Module(net, lambda ps: torch.optim.SGD(list(ps)[-2:], lr=0.05))  # the head only
    with pytest.raises(rl.UserError, match="no optimizer holds"):
        fit(module, [RegularizationCallback(L2(0.1))])


class PenaltyInLoss(Module):
    def training_step(self, batch, batch_idx):
        return super().training_step(batch, batch_idx) + self.reg.penalty()


def test_penalty_in_the_loss_and_attached_warns_under_lightning():
    net = make_model()
    module = PenaltyInLoss(net, lambda ps: torch.optim.SGD(ps, lr=0.05), reg=Regularizer(net, L2(0.1)))
    with pytest.warns(UserWarning, match="applied twice"):
        fit(module)


def test_callback_resumes_its_warmup_from_a_checkpoint(tmp_path):
    """One epoch, a checkpoint, one more epoch from it == two epochs in one go."""
    penalty = lambda: L2(0.3, schedule=rl.warmup(6))  # noqa: E731  (4 steps per epoch)
    make_opt = CASES["decoupled"][1]
    start = make_model()
    whole = copy.deepcopy(start)
    fit(Module(whole, make_opt), [RegularizationCallback(penalty(), mode="decoupled")])

    first = copy.deepcopy(start)
    checkpoint = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)
    trainer = L.Trainer(
        max_epochs=1, accelerator="cpu", devices=1, precision="64-true", logger=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[RegularizationCallback(penalty(), mode="decoupled"), checkpoint],
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        trainer.fit(Module(first, make_opt))
    resumed = copy.deepcopy(first)
    callback = RegularizationCallback(penalty(), mode="decoupled")
    trainer = L.Trainer(
        max_epochs=EPOCHS, accelerator="cpu", devices=1, precision="64-true", logger=False, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, callbacks=[callback],
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*callbacks used to create the checkpoint.*")  # ModelCheckpoint
        trainer.fit(Module(resumed, make_opt), ckpt_path=tmp_path / "last.ckpt")
    assert_same(resumed, whole, atol=1e-12)


def test_double_decay_warning_from_the_callback_points_at_the_users_line():
    net = make_model()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(Module(net, lambda ps: torch.optim.AdamW(ps, lr=0.01)), [RegularizationCallback(L2(0.1))])
    (found,) = [w for w in caught if "decayed twice" in str(w.message)]
    assert found.filename == __file__  # the line that calls trainer.fit, not reglab's callback


def sgd(params):
    return torch.optim.SGD(params, lr=0.05)  # a function, not a lambda: DDP's spawned processes unpickle it


def l2_value(net, lam):
    return lam / 2 * sum(p.detach().pow(2).sum() for _, p in rl.weights().resolve(net)).item()


def test_callback_logs_under_each_terms_name_and_in_the_progress_bar():
    net = make_model()
    head = rl.Term(L1(0.05, on=rl.named("net.6.*")), mode="proximal", name="head")
    trainer = fit(Module(net, sgd), [RegularizationCallback([L2(0.3), head], prog_bar=True)])
    assert {"reg/l2", "reg/head", "reg/head/norm", "reg/head/zeros"} <= set(trainer.callback_metrics)
    assert not any(key.startswith("reg/l1") for key in trainer.callback_metrics)
    assert trainer.callback_metrics["reg/head"].item() == pytest.approx(
        0.05 * sum(p.abs().sum() for p in net[6].parameters()).item(), rel=1e-6)
    assert {"reg/l2", "reg/head"} <= set(trainer.progress_bar_metrics)
    plain = fit(Module(make_model(), sgd), [RegularizationCallback(L2(0.3))])
    assert "reg/l2" in plain.callback_metrics and not any(k.startswith("reg/") for k in plain.progress_bar_metrics)


@pytest.mark.parametrize("on_step", [False, True])
def test_callback_logs_every_epoch_or_every_step(on_step, tmp_path):
    net = make_model()
    logger = L.pytorch.loggers.CSVLogger(tmp_path)
    trainer = L.Trainer(max_epochs=EPOCHS, accelerator="cpu", devices=1, precision="64-true", logger=logger,
                        log_every_n_steps=1, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[RegularizationCallback(L2(0.3), on_step=on_step)])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        trainer.fit(Module(net, sgd))
    rows = [row for row in csv.DictReader(open(Path(logger.log_dir) / "metrics.csv")) if row.get("reg/l2")]
    steps_per_epoch = -(-len(dataset()) // BATCH)
    assert len(rows) == (EPOCHS * steps_per_epoch if on_step else EPOCHS)
    assert [int(r["step"]) for r in rows] == (list(range(EPOCHS * steps_per_epoch)) if on_step
                                              else [steps_per_epoch * (e + 1) - 1 for e in range(EPOCHS)])
    assert float(rows[-1]["reg/l2"]) == pytest.approx(l2_value(net, 0.3), rel=1e-6)  # after the last step


def test_callback_syncs_its_logs_under_ddp(capfd):
    """Two CPU processes under DDP (gloo): with sync_dist=True Lightning averages each logged value
    over them, and does not warn that an epoch-level value is logged unsynchronized."""
    net = make_model()
    trainer = L.Trainer(max_epochs=EPOCHS, accelerator="cpu", devices=2, strategy="ddp_spawn", precision="64-true",
                        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[RegularizationCallback(L2(0.3), sync_dist=True)])
    trainer.fit(Module(net, sgd))
    assert "sync_dist=True" not in capfd.readouterr().err  # Lightning's warning for an unsynchronized value
    assert trainer.callback_metrics["reg/l2"].item() == pytest.approx(l2_value(net, 0.3), rel=1e-6)
