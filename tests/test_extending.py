"""docs/architecture.md "Where a new … goes", followed end to end: each test adds one thing by
touching only what the doc names (a recipe's YAML file; an attack's class and its registration; a
dataset's loader, its registration line and its data shipped beside the loader) and runs it
through ``reglab run``."""

import importlib
import json
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cli_runner import cli
from reglab.adversarial.attacks import ATTACKS
from reglab.config import RECIPE_DIR, load_config
from reglab.counter_random import CounterStream, seed_of
from reglab.data import registry
from reglab.train import prepare

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run_folder(root: Path) -> Path:
    (summary,) = root.glob("**/summary.json")
    return summary.parent


def import_package(tmp_path, monkeypatch, name: str, files: dict[str, str | bytes]):
    """Write a package ``name`` of ``files`` under tmp_path and import it, as code outside reglab is."""
    package = tmp_path / name
    package.mkdir()
    for file, content in files.items():
        (package / file).write_bytes(content if isinstance(content, bytes) else content.encode())
    monkeypatch.syspath_prepend(str(tmp_path))
    return importlib.import_module(name)


# ---------------------------------------------------------------- a recipe: one YAML file


@pytest.fixture
def new_recipe():
    """A recipe written as one YAML file in the recipe folder, without a description; removed after."""
    name = f"new-recipe-{uuid.uuid4().hex[:8]}"
    path = RECIPE_DIR / f"{name}.yaml"
    path.write_text(textwrap.dedent("""\
        data:
          name: synthetic-linear
        model:
          kind: linear
        reg:
          penalty: l2
          lam: 1.0e-2
        optim:
          name: sgd
          lr: 0.1
        train:
          epochs: 3
          batch_size: 0
    """))
    yield name
    path.unlink()


def test_a_recipe_is_one_yaml_file_listed_and_run(new_recipe, monkeypatch, capsys, tmp_path):
    code, out, err = cli(monkeypatch, capsys, "recipes")
    assert code == 0, err  # a recipe without a description is listed, not an IndexError
    assert new_recipe in out and "mlp-l2" in out
    code, _, err = cli(monkeypatch, capsys, "run", new_recipe, "--out", str(tmp_path / "runs"))
    assert code == 0, err
    folder = run_folder(tmp_path / "runs")
    assert folder.parent.name == new_recipe
    assert json.loads((folder / "summary.json").read_text())["status"] == "ok"


# ---------------------------------------------------------------- an attack: its class and its registration

NEW_ATTACK = '''
from dataclasses import dataclass

from reglab.adversarial.attacks import Attack, register_attack


@dataclass(frozen=True)
class UniformNoise(Attack):
    """A random point of the L∞ ball: x' = clip_[0,1](x + δ), δ ~ U(−ε, ε)^d (no gradient)."""

    eps: float
    eval_mode: bool = True

    def _perturb(self, forward, x0, y, noise):
        return (x0 + noise.uniform(x0.shape, -self.eps, self.eps, x0)).clamp(0, 1)


register_attack(NAME, UniformNoise)
'''

TINY_ADV = ["data.name=digits", "data.n_train=200", "model.channels=[4,8]", "model.dense=[16]",
            "train.epochs=1", "adv.eval_eps=[]", "adv.eval_steps=2", "adv.eval_restarts=1",
            "adv.eval_examples=32", "adv.monitor_examples=32", "adv.monitor_steps=2"]  # fmt: skip


@pytest.fixture
def new_attack(tmp_path, monkeypatch):
    name = f"noise-{uuid.uuid4().hex[:8]}"
    package = f"attack_{name.replace('-', '_')}"
    import_package(tmp_path, monkeypatch, package, {"__init__.py": f"NAME = {name!r}\n" + NEW_ATTACK})
    yield name
    ATTACKS.pop(name)
    sys.modules.pop(package)


def test_a_registered_attack_trains_by_its_name(new_attack, monkeypatch, capsys, tmp_path):
    overrides = TINY_ADV + [f"adv.attack={new_attack}", "adv.objective=weighted", "adv.eps=0.2"]
    exp = prepare(load_config("adversarial-l2", overrides))
    model = exp.model.train()
    x, y = (t[:16] for t in exp.tensors["train"])
    # The weighted objective on the new attack's x', its uniform draw the run's counter-based one.
    start = CounterStream(torch.tensor([seed_of(exp.config.seed)], dtype=torch.int32), 0)
    x_adv = (x + start.uniform((1, *x.shape), -0.2, 0.2, x)[0]).clamp(0, 1)
    expected = 0.5 * F.cross_entropy(model(x), y) + 0.5 * F.cross_entropy(model(x_adv), y)
    torch.testing.assert_close(exp.task.loss(model, x, y), expected)

    code, _, err = cli(monkeypatch, capsys, "run", "adversarial-l2", *overrides, "--out", str(tmp_path / "runs"))
    assert code == 0, err
    folder = run_folder(tmp_path / "runs")
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "ok"
    assert f"attack: {new_attack}" in (folder / "config.yaml").read_text()


def test_a_registered_attack_is_checked_by_its_own_class(new_attack, monkeypatch, capsys, tmp_path):
    code, _, err = cli(monkeypatch, capsys, "run", "adversarial-l2", *TINY_ADV, f"adv.attack={new_attack}",
                       "adv.eps=1.5", "--out", str(tmp_path / "runs"))
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert "L∞ budget above 1" in err and not (tmp_path / "runs").exists()


# ---------------------------------------------------------------- a dataset: loader, registration, package data

NEW_DATASET = '''
from importlib.resources import files

import numpy as np

from reglab.data.dataset import Dataset, DatasetInfo
from reglab.data.registry import register_dataset


def load(cfg):
    """Two Gaussian blobs shipped as package data beside this module."""
    with np.load(files(__package__) / "blobs.npz") as arrays:
        return Dataset(NAME, arrays["x"], arrays["y"], "classification", 2, "package data blobs.npz")


register_dataset(NAME, load, DatasetInfo(name=NAME, kind="classification", n_examples=200, shape=(4,),
                                         source="package data", offline=True, description="two blobs",
                                         n_classes=2))
'''


@pytest.fixture
def new_dataset(tmp_path, monkeypatch):
    name = f"blobs-{uuid.uuid4().hex[:8]}"
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 100).astype(np.int64)
    x = (rng.normal(size=(200, 4)) + 3.0 * y[:, None]).astype(np.float32)
    blobs = tmp_path / "blobs.npz"
    np.savez(blobs, x=x, y=y)
    package = f"dataset_{name.replace('-', '_')}"
    import_package(tmp_path, monkeypatch, package,
                   {"__init__.py": f"NAME = {name!r}\n" + NEW_DATASET, "blobs.npz": blobs.read_bytes()})
    yield name, x, y
    registry._REGISTRY.pop(name)
    sys.modules.pop(package)


def test_a_registered_dataset_with_package_data_is_listed_and_trained_on(new_dataset, monkeypatch, capsys, tmp_path):
    name, x, y = new_dataset
    code, out, err = cli(monkeypatch, capsys, "datasets")
    assert code == 0 and name in out, err
    exp = prepare(load_config("mlp-l2", [f"data.name={name}"]))
    splits = exp.splits
    got = np.concatenate([splits.train.x, splits.val.x, splits.test.x])
    assert sorted(map(tuple, got.tolist())) == sorted(map(tuple, x.tolist()))
    code, _, err = cli(monkeypatch, capsys, "run", "mlp-l2", f"data.name={name}", "model.hidden=[8]",
                       "train.epochs=5", "--out", str(tmp_path / "runs"))
    assert code == 0, err
    summary = json.loads((run_folder(tmp_path / "runs") / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["test_acc"] > 0.9  # blobs 3σ apart
