"""env.json's process-wide part (versions, platform, git commit) is looked up once per process, not
once per run folder: a sweep writes hundreds of folders, and each lookup runs three git commands."""

import subprocess

import torch

from reglab import runs
from reglab.config import load_config


def test_the_git_commands_run_once_per_process_not_once_per_run_folder(monkeypatch):
    config = load_config("ridge-gd")
    first = runs.environment(config, torch.device("cpu"))
    calls = []
    real_run = subprocess.run

    def counted(*args, **kwargs):
        calls.append(args[0])
        return real_run(*args, **kwargs)

    monkeypatch.setattr(runs.subprocess, "run", counted)
    second = runs.environment(load_config("ridge-gd", ["seed=3"]), torch.device("cpu"))
    assert calls == []
    assert second["git_commit"] == first["git_commit"] and second["seed"] == 3
