"""What a sweep prints and how run folders are named.

A one-worker sweep piped prints a line per run whose times add up to the wall clock; on a terminal
(a real pty) it shows one bar and no per-run line. Run folders are named by their point's label and
seed (a single run: recipe, penalty and λ, seed), unique and safe as file names."""

import os
import pty
import re
import subprocess
import sys
import time

from cli_runner import cli

from reglab.study.sweep import sweep

TINY = ["train.epochs=30", "train.plots=false", "train.save_weights=false"]
RUN_LINE = re.compile(r"^(none|l2 .*) seed \d: val_loss [0-9.e-]+( \((?P<alone>[0-9.]+) s\))?$")
GROUP_LINE = re.compile(r"^  (\d+) runs trained together \((?P<seconds>[0-9.]+) s\)$")
TOTAL_LINE = re.compile(r"^9 trials done, 0 failed, of 9 \((?P<seconds>[0-9.]+) s\)$")
SAFE = re.compile(r"^[A-Za-z0-9.=+,~_-]+$")


def piped_sweep(tmp_path, name, batch):
    lines = []
    started = time.perf_counter()
    result = sweep("ridge-gd", TINY, ["reg=none,l2", "reg.lam=1e-3,1e-1"], "0-2", studies_dir=tmp_path, name=name,
                   batch=batch, echo=lines.append)
    return result, lines, time.perf_counter() - started


def test_piped_a_line_per_run_and_the_times_add_up_to_the_wall_clock(tmp_path):
    for name, batch in (("stacked", 16), ("alone", 1)):
        result, lines, wall = piped_sweep(tmp_path, name, batch)
        assert result.finished
        runs = [m for m in map(RUN_LINE.match, lines) if m]
        groups = [m for m in map(GROUP_LINE.match, lines) if m]
        assert len(runs) == 3 * 3  # none and l2 at two λ, three seeds
        times = [float(m["alone"]) for m in runs if m["alone"]] + [float(m["seconds"]) for m in groups]
        if batch == 1:
            assert not groups and len(times) == 9
        else:
            assert groups and sum(int(m[1]) for m in groups) + sum(bool(m["alone"]) for m in runs) == 9
        # the printed times cut the sweep's wall clock at each result, from its start (creating the
        # study counts in the first): they add up to the total it prints, all but the choice made
        # and stored after the last result (a few storage reads: a second on a busy machine, which
        # is much of a sweep this small); the total is the wall clock seen from outside
        (total,) = [float(m[1]) for m in map(TOTAL_LINE.match, lines) if m]
        assert 0.75 * total - 1.0 <= sum(times) <= total + 0.1 and total <= wall + 0.1, (times, total, wall)
        assert total >= 0.9 * wall - 0.5


def test_on_a_terminal_one_bar_and_no_per_run_line(tmp_path):
    main, child = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "reglab.cli", "sweep", "ridge-gd", *TINY, "--grid", "reg.l2=1e-3,1e-1",
                             "--seeds", "0-1", "--batch", "1", "--name", "tty", "--dir", str(tmp_path)],
                            stdin=child, stdout=child, stderr=child, env=env, close_fds=True)
    os.close(child)
    out = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the child closed its end
            break
        if not chunk:
            break
        out += chunk
    assert proc.wait(timeout=300) == 0
    os.close(main)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.decode(errors="replace"))
    assert "trials" in text and "4/4" in text  # the bar, at its end
    assert "chosen on validation" in text
    assert not re.search(r"seed \d: val_loss", text) and "runs trained together" not in text
    assert "progress:" not in text


def test_a_studys_run_folders_are_named_by_label_and_seed(tmp_path):
    result, _, _ = piped_sweep(tmp_path, "names", 16)
    names = sorted(p.name for p in (result.folder / "runs" / "ridge-gd").iterdir())
    assert names == sorted(f"{label}_s{seed}" for label in ("none", "l2_lam=1e-3", "l2_lam=0.1") for seed in range(3))


def test_a_single_run_is_named_by_recipe_penalty_and_seed_and_kept_unique(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["run", "ridge-gd", "reg.l2=1e-3", "seed=2", "train.epochs=3", "train.plots=false"]
    assert cli(monkeypatch, capsys, *args)[0] == 0
    assert cli(monkeypatch, capsys, *args)[0] == 0
    assert cli(monkeypatch, capsys, "run", "ridge-gd", "reg=none", "train.epochs=3", "train.plots=false")[0] == 0
    folders = sorted(p.name for p in (tmp_path / "runs" / "ridge-gd").iterdir())
    assert folders == ["ridge-gd_l2_lam=1e-3_s2", "ridge-gd_l2_lam=1e-3_s2-2", "ridge-gd_s0"]
    code, out, err = cli(monkeypatch, capsys, "show", str(tmp_path / "runs" / "ridge-gd" / "ridge-gd_l2_lam=1e-3_s2-2"))
    assert code == 0, err


def test_folder_names_are_safe_and_long_ones_cut_apart():
    from reglab.runs import MAX_NAME, safe_name

    assert safe_name("l2 model.factory=pkg/mod:make λ=1e-3") == "l2_model.factory=pkg_mod_make_=1e-3"
    assert safe_name("../..") == "run" and safe_name("a  b") == "a_b"
    long_a, long_b = "l2 " + "model.hidden=[64,64] " * 10 + "a", "l2 " + "model.hidden=[64,64] " * 10 + "b"
    cut_a, cut_b = safe_name(long_a), safe_name(long_b)
    assert len(cut_a) == len(cut_b) == MAX_NAME and cut_a != cut_b and cut_a[:-9] == cut_b[:-9]
    assert all(SAFE.match(n) for n in (cut_a, cut_b))
