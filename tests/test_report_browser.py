"""The report page in headless Chromium: every image loads, the console stays silent, and the page
shows what the report must say (for a ridge study from run folders, a small study like the demo's,
and an adversarial study).

Chromium loads a small harness page that holds the report in an iframe; once everything has
loaded, the harness writes what it sees (each image's ``complete`` and ``naturalWidth``) into
its own DOM, which ``--dump-dom`` prints. Console messages and uncaught exceptions of both pages
are read from Chromium's log (``--enable-logging=stderr``). The report has no script, so any
console message is a fault. A page with a missing image and a console error checks the checker.
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from reglab.config import load_config
from reglab.report import build_report
from reglab.train import run

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("REGLAB_CHROMIUM") or shutil.which("chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars"]
HARNESS = """<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>
<pre id="seen">not loaded</pre><iframe id="page" src="{src}" width="1280" height="900"></iframe>
<script>
window.addEventListener("load", () => {{
  const doc = document.getElementById("page").contentDocument;
  const images = doc ? Array.from(doc.images, img => ({{complete: img.complete, width: img.naturalWidth,
                                                        alt: img.alt}})) : null;
  const text = doc && doc.body ? doc.body.innerText : null;
  document.getElementById("seen").textContent = JSON.stringify({{title: doc ? doc.title : null, images, text}});
}});
</script></body></html>
"""
BROKEN = """<!DOCTYPE html><html><head><title>broken</title></head><body>
<img src="missing.png" alt="missing"><script>console.error("broken on purpose");</script></body></html>"""

if not CHROMIUM or not Path(CHROMIUM).exists():
    pytest.skip("headless Chromium not found (set REGLAB_CHROMIUM or put chromium on PATH)", allow_module_level=True)


def chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                          timeout=120)


def inspect(page: Path, tmp: Path) -> tuple[dict, list[str]]:
    """What the harness saw of ``page`` (title, images), and every console line Chromium logged."""
    harness = tmp / f"harness-{page.stem}.html"
    harness.write_text(HARNESS.format(src=page.resolve().as_uri()))
    proc = chromium(["--allow-file-access-from-files", "--enable-logging=stderr", "--v=0",
                     "--virtual-time-budget=10000", "--dump-dom", harness.resolve().as_uri()], tmp / "profile")
    assert proc.returncode == 0, proc.stderr[-2000:]
    seen = re.search(r'<pre id="seen">(.*?)</pre>', proc.stdout, re.S)
    assert seen is not None, proc.stdout[:2000]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    unescaped = seen.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return json.loads(unescaped), console


@pytest.fixture(scope="module")
def report_page(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    tiny = ["train.epochs=150", "train.plots=false", "train.save_weights=false"]
    for seed in (0, 1):
        run(load_config("ridge-gd", [*tiny, "reg=none", f"seed={seed}"]), root=root, progress=False)
        for lam in (0.01, 0.1, 1.0):
            run(load_config("ridge-gd", [*tiny, "reg=l2", f"reg.lam={lam}", f"seed={seed}"]), root=root, progress=False)
    out = tmp_path_factory.mktemp("report")
    return build_report([root], out).index


def test_the_checker_sees_a_missing_image_and_a_console_error(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text(BROKEN)
    seen, console = inspect(page, tmp_path)
    assert seen["title"] == "broken"
    assert seen["images"] == [{"complete": True, "width": 0, "alt": "missing"}]
    assert any("broken on purpose" in line for line in console)


def test_every_image_loads_and_the_console_is_silent(report_page, tmp_path):
    seen, console = inspect(report_page, tmp_path)
    assert seen["title"].startswith("reglab report")
    images = seen["images"]
    assert len(images) == len(list((report_page.parent / "plots").glob("*.png"))) == 5
    for image in images:
        assert image["complete"] and image["width"] > 0, image
    assert console == []


def test_screenshot_of_the_report(report_page, tmp_path):
    shot = tmp_path / "report.png"
    proc = chromium(["--window-size=1280,2400", f"--screenshot={shot}", report_page.resolve().as_uri()],
                    tmp_path / "profile")
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000


TINY = ["data.n_train=200", "train.epochs=3", "model.hidden=[16]", "model.dropout=0", "train.plots=false",
        "train.save_weights=false"]
TINY_ADV = ["data.name=digits", "data.n_train=200", "model.channels=[4]", "model.dense=[8]", "train.epochs=2",
            "adv.eval_eps=[0.1,0.2]", "adv.eval_examples=50", "adv.eval_restarts=1", "adv.eval_steps=3",
            "adv.monitor_examples=32", "adv.monitor_steps=2", "train.plots=false", "train.save_weights=false"]


def study_report(tmp_path_factory, recipe: str, overrides: list[str], grids: list[str], seeds: str) -> Path:
    from reglab.study.sweep import sweep

    root = tmp_path_factory.mktemp(recipe)
    sweep(recipe, overrides, grids, seeds=seeds, workers=1, studies_dir=root, echo=lambda line: None, name="s")
    return build_report([root / "s"], root / "report").index


@pytest.fixture(scope="module")
def demo_page(tmp_path_factory) -> Path:
    """The demo's study made small: none, L2 and dropout over a grid, on 2 seeds."""
    return study_report(tmp_path_factory, "mlp-l2", TINY, ["reg=none,l2,dropout", "reg.lam=1e-4,1e-3",
                                                           "reg.dropout=0.1,0.3"], "0-1")


@pytest.fixture(scope="module")
def adversarial_page(tmp_path_factory) -> Path:
    """PGD training with and without L2 at one λ, on 2 seeds."""
    return study_report(tmp_path_factory, "adversarial-l2", TINY_ADV, ["reg=none,l2", "reg.lam=1e-3"], "0-1")


def loaded(page: Path, tmp_path: Path) -> str:
    """The page's text, once every image of it has loaded in Chromium with a silent console."""
    seen, console = inspect(page, tmp_path)
    assert console == []
    images = seen["images"]
    assert len(images) == len(list((page.parent / "plots").glob("*.png"))) > 0
    for image in images:
        assert image["complete"] and image["width"] > 0, image
    return seen["text"]


def test_the_demo_like_study_reads_in_chromium(demo_page, tmp_path):
    text = loaded(demo_page, tmp_path)
    assert "fewer than 5 seeds (n = 2): no 95% intervals and no P(improvement)" in text
    assert "At the edge of the grid" in text and re.search(r"l2: λ_\w+( = λ_1se)? = 1e-[34] is the (largest|smallest) λ", text)
    assert "Published reference" not in text and "No published reference for these configs" in text
    families = re.search(r"families: ([^·]*)·", text).group(1)
    assert families.split(", ") == ["none", "dropout", "l2 "], families  # train.plots etc. set in the overrides
    assert "l2 λ=1e-3" in text and "λ=0.001" not in text
    assert "P(improvement) =" not in text
    for title in ("Accuracy vs λ", "Train and validation curves per λ", "Generalization gap vs λ"):
        assert title in text, title


def test_the_adversarial_study_reads_in_chromium(adversarial_page, tmp_path):
    text = loaded(adversarial_page, tmp_path)
    for column in ("val robust accuracy (%)", "test robust accuracy (%)", "robust gap", "val clean accuracy (%)",
                   "test clean accuracy (%)"):
        assert column in text, column
    assert "clean test accuracy" in text and "Accuracy vs ε" in text
    assert "Robust accuracy vs λ" not in text  # one λ: no λ plot
    assert not (adversarial_page.parent / "plots" / "metric_vs_lambda.png").exists()
    assert (adversarial_page.parent / "plots" / "robust_vs_eps.png").is_file()
