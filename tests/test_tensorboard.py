"""TensorBoard: ``train.tensorboard=true`` writes the per-epoch record, grouped by metric, and as
hparams the keys that set the run apart, read back here with TensorBoard's own reader."""

import json
import sys

import pytest

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.plugins.hparams import metadata as hparams_metadata  # noqa: E402

from reglab.config import load_config  # noqa: E402
from reglab.train import run  # noqa: E402

TAGS = {"train_loss": "loss/train", "val_loss": "loss/val", "train_acc": "acc/train", "val_acc": "acc/val",
        "batch_loss": "loss/batch", "gap_loss": "gap/loss", "penalty/l2": "penalty/l2", "lr": "lr",
        "weight_l2": "weight_l2", "zeros_total": "zeros_total"}


def read_events(folder):
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    return events


def hparams_of(events):
    """The hparams the run wrote (name → value) and the metric tags of its experiment."""
    content = events.PluginTagToContent(hparams_metadata.PLUGIN_NAME)
    start = hparams_metadata.parse_session_start_info_plugin_data(content[hparams_metadata.SESSION_START_INFO_TAG])
    experiment = hparams_metadata.parse_experiment_plugin_data(content[hparams_metadata.EXPERIMENT_TAG])
    values = {k: json_value(v) for k, v in start.hparams.items()}
    return values, {m.name.tag for m in experiment.metric_infos}


def json_value(value):
    kind = value.WhichOneof("kind")
    return getattr(value, kind)


def test_scalars_grouped_by_metric_and_hparams_only_what_the_command_line_changed(tmp_path):
    config = load_config("mlp-l2", ["data.n_train=200", "train.epochs=3", "model.hidden=[16]", "reg.l2=1e-3",
                                    "train.tensorboard=true", "train.plots=false"])
    result = run(config, root=tmp_path, progress=False)
    assert result.ok
    records = [json.loads(line) for line in (result.path / "metrics.jsonl").read_text().splitlines()]
    events = read_events(result.path)
    tags = set(events.Tags()["scalars"])
    for key, tag in TAGS.items():
        assert tag in tags, tag
        scalars = events.Scalars(tag)
        assert [s.step for s in scalars] == [r["epoch"] for r in records]
        assert [s.value for s in scalars] == pytest.approx([r[key] for r in records], rel=1e-6)
    assert not tags & {"step", "epoch", "train_loss", "val_loss", "train_acc", "val_acc", "batch_loss"}
    summary = json.loads((result.path / "summary.json").read_text())
    assert events.Scalars("final/test_acc")[0].value == pytest.approx(summary["test_acc"], rel=1e-6)
    values, metrics = hparams_of(events)
    # the recipe has l2 and hidden [512, 256, 128]: the command line changed these four keys
    assert values == {"data.n_train": 200, "train.epochs": 3, "model.hidden": "[16]", "reg.lam": pytest.approx(1e-3)}
    assert metrics == {"final/val_loss"}  # mlp-l2 monitors val_loss


def test_off_by_default(tmp_path):
    config = load_config("mlp-l2", ["data.n_train=200", "train.epochs=1", "model.hidden=[8]", "train.plots=false"])
    result = run(config, root=tmp_path, progress=False)
    assert not list(result.path.glob("events.out.tfevents.*"))


def test_a_sweeps_runs_hold_the_grids_keys_and_the_seed_as_hparams_batched_or_not(tmp_path, monkeypatch, capsys):
    from reglab.cli import main
    from reglab.study.records import load_study

    monkeypatch.setattr(sys, "argv", ["reglab", "sweep", "mlp-l2", "data.n_train=200", "train.epochs=2",
                                      "model.hidden=[8]", "model.dropout=0", "train.plots=false",
                                      "--grid", "reg=none,l2", "--grid", "reg.lam=1e-3,1e-1", "--seeds", "0-1",
                                      "--tensorboard", "--dir", str(tmp_path), "--name", "tb"])
    main()
    out = capsys.readouterr().out
    assert "training 2 models at once (vectorized)" in out or "training 4 models at once (vectorized)" in out
    spec, _ = load_study(tmp_path / "tb")
    folders = [p.parent for p in (tmp_path / "tb" / "runs").glob("*/*/summary.json")]
    assert len(folders) == 6  # none (one point) and l2 at two λ, on two seeds
    for folder in folders:
        records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        config = load_config(str(folder / "config.yaml"))
        events = read_events(folder)
        assert [s.value for s in events.Scalars("loss/val")] == pytest.approx([r["val_loss"] for r in records])
        values, metrics = hparams_of(events)
        assert values == {"reg.penalty": config.reg.penalty, "reg.lam": pytest.approx(config.reg.lam),
                          "seed": config.seed}
        assert metrics == {f"final/{spec['metric']}"}
