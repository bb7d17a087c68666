"""TensorBoard: ``train.tensorboard=true`` writes the per-epoch record and the config as hparams into
the run folder, read back here with TensorBoard's own reader."""

import json
import sys

import pytest

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.plugins.hparams import metadata as hparams_metadata  # noqa: E402

from reglab.config import load_config  # noqa: E402
from reglab.train import run  # noqa: E402


def test_scalars_and_hparams_match_the_run_folder(tmp_path):
    config = load_config("mlp-l2", ["data.n_train=200", "train.epochs=3", "model.hidden=[16]", "reg.l2=1e-3",
                                    "train.tensorboard=true", "train.plots=false"])
    result = run(config, root=tmp_path, progress=False)
    assert result.ok
    records = [json.loads(line) for line in (result.path / "metrics.jsonl").read_text().splitlines()]
    events = EventAccumulator(str(result.path), size_guidance={"scalars": 0})
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {k for k, v in records[0].items() if isinstance(v, float)} <= tags
    for key in ("train_loss", "val_loss", "train_acc", "val_acc", "penalty/l2", "weight_l2", "zeros_total"):
        assert key in tags, key
        scalars = events.Scalars(key)
        assert [s.step for s in scalars] == [r["epoch"] for r in records]
        assert [s.value for s in scalars] == pytest.approx([r[key] for r in records], rel=1e-6)
    summary = json.loads((result.path / "summary.json").read_text())
    assert events.Scalars("final/test_acc")[0].value == pytest.approx(summary["test_acc"], rel=1e-6)
    content = events.PluginTagToContent(hparams_metadata.PLUGIN_NAME)
    start = hparams_metadata.parse_session_start_info_plugin_data(content[hparams_metadata.SESSION_START_INFO_TAG])
    assert start.hparams["reg.lam"].number_value == pytest.approx(1e-3)
    assert start.hparams["reg.penalty"].string_value == "l2"
    assert start.hparams["model.hidden"].string_value == "[16]"
    experiment = hparams_metadata.parse_experiment_plugin_data(content[hparams_metadata.EXPERIMENT_TAG])
    assert "final/val_loss" in {m.name.tag for m in experiment.metric_infos}


def test_off_by_default(tmp_path):
    config = load_config("mlp-l2", ["data.n_train=200", "train.epochs=1", "model.hidden=[8]", "train.plots=false"])
    result = run(config, root=tmp_path, progress=False)
    assert not list(result.path.glob("events.out.tfevents.*"))


def test_sweep_tensorboard_flag_reaches_every_run_batched_or_not(tmp_path, monkeypatch, capsys):
    from reglab.cli import main

    monkeypatch.setattr(sys, "argv", ["reglab", "sweep", "mlp-l2", "data.n_train=200", "train.epochs=2",
                                      "model.hidden=[8]", "model.dropout=0", "train.plots=false",
                                      "--grid", "reg.l2=1e-3,1e-1", "--seeds", "0-1", "--tensorboard",
                                      "--dir", str(tmp_path), "--name", "tb"])
    main()
    assert "training 4 models at once (vectorized)" in capsys.readouterr().out
    folders = [p.parent for p in (tmp_path / "tb" / "runs").glob("*/*/summary.json")]
    assert len(folders) == 4
    for folder in folders:
        records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        events = EventAccumulator(str(folder))
        events.Reload()
        assert [s.value for s in events.Scalars("val_loss")] == pytest.approx([r["val_loss"] for r in records])
