"""``reglab config`` (the resolved config with each key's type, default and meaning), the unknown-key
error that lists its section's keys, ``reglab --version``, help text, and the git commit in env.json."""

import json
import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from reglab.config import setting_names, Config, RegConfig, Section, TrainConfig, load_config, valid_keys
from cli_runner import cli as reglab


@pytest.mark.parametrize("recipe", ["mlp-l2", "adversarial-l2", "gan-ring"])
def test_config_prints_every_key_with_type_default_and_meaning(recipe, monkeypatch, capsys):
    code, out, err = reglab(monkeypatch, capsys, "config", recipe, "seed=3")
    assert code == 0 and err == ""
    config = load_config(recipe, ["seed=3"])
    assert Config.model_validate(yaml.safe_load(out)) == config  # the output is the resolved config
    comments = {}
    path: list[str] = []
    for line in out.splitlines():
        text, _, comment = line.partition("  # ")
        depth = (len(text) - len(text.lstrip())) // 2
        key = yaml.safe_load(text.strip().split(":")[0])
        path = path[:depth] + [key]
        comments[".".join(path)] = comment
    others = {f"reg.{name}" for name in setting_names() if name not in config.reg.penalty_settings()}
    assert set(comments) == set(valid_keys()) - others  # of the penalties' settings, its penalty's
    assert all(comment.strip() for comment in comments.values())
    assert comments["seed"] == "int (>= 0, <= 4294967295); default 0; " + Config.model_fields["seed"].description
    assert comments["reg.lam"] == "float (>= 0); default 0.0; " + RegConfig.model_fields["lam"].description
    assert comments["train.clip_norm"].startswith("float or null (> 0); default null; ")
    assert comments["reg.mode"].startswith("one of coupled|decoupled|proximal; default coupled; ")
    assert comments["train.tensorboard"].endswith(TrainConfig.model_fields["tensorboard"].description)


def test_every_key_has_a_meaning():
    def fields(model):
        for name, field in model.model_fields.items():
            yield name, field
            if isinstance(field.annotation, type) and issubclass(field.annotation, Section):
                yield from fields(field.annotation)

    missing = [name for name, field in fields(Config) if not field.description]
    assert missing == []


def test_unknown_key_lists_the_valid_keys_of_its_section(monkeypatch, capsys):
    code, out, err = reglab(monkeypatch, capsys, "config", "mlp-l2", "train.epoch=3")
    assert code == 2 and out == ""
    assert err == ("error: unknown config key 'train.epoch'; did you mean 'train.epochs'? (valid: "
                   + ", ".join(k for k in valid_keys() if k.startswith("train.")) + ")\n")
    code, _, err = reglab(monkeypatch, capsys, "config", "mlp-l2", "sed=3")
    assert code == 2 and "(valid: name, description, seed, device, out, data, model," in err


def test_version_and_help_text(monkeypatch, capsys):
    code, out, _ = reglab(monkeypatch, capsys, "--version")
    assert code == 0 and out == f"reglab {version('reglab')}\n"
    code, out, _ = reglab(monkeypatch, capsys, "--help")
    assert code == 0 and "`" not in out and "config" in out


def test_env_json_records_the_git_commit_of_a_checkout(tmp_path):
    from reglab.train import run

    source = Path(__file__).parents[1]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    config = load_config("ridge-gd", ["train.epochs=2", "train.plots=false"])
    env = json.loads((run(config, root=tmp_path, progress=False).path / "env.json").read_text())
    assert env["git_commit"].removesuffix("-dirty") == head.stdout.strip()


def test_show_prints_a_long_folder_name_whole(tmp_path, monkeypatch, capsys):
    from reglab.train import run

    config = load_config("ridge-gd", ["train.epochs=2", "train.plots=false", "name=" + "a-very-long-run-name" * 4])
    folder = run(config, root=tmp_path, progress=False).path
    code, out, _ = reglab(monkeypatch, capsys, "show", str(folder))
    assert code == 0 and out.splitlines()[0] == str(folder)
    assert "status" in out and "ok" in out
