"""The report page in headless Chromium: every image loads and the console stays silent.

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
  document.getElementById("seen").textContent = JSON.stringify({{title: doc ? doc.title : null, images}});
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
    return json.loads(seen.group(1).replace("&quot;", '"').replace("&amp;", "&")), console


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
