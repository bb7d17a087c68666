"""A sweep's process imports what its work uses: a supervised run on mnist1d (cached) imports neither
matplotlib nor the mnist1d package (which imports matplotlib), while the standard MNIST-1D stays
mnist1d's own."""

import subprocess
import sys

from mnist1d.data import get_dataset_args

from reglab.data import builtin

WORKER_PATH = """
import sys
import reglab.cli, reglab.study.sweep, reglab.study.worker, reglab.train.batched
from reglab.config import load_config
from reglab.train.experiment import prepare
prepare(load_config("mlp-l2", ["train.plots=false"]))
print(" ".join(m for m in ("matplotlib", "mnist1d") if m in sys.modules))
"""


def test_the_default_mnist1d_arguments_are_the_packages_own():
    expected = get_dataset_args(as_dict=True)
    expected.pop("url")
    assert builtin.mnist1d_args() == expected
    assert builtin.mnist1d_args(100) == {**expected, "num_samples": 100}


def test_a_supervised_run_on_cached_mnist1d_imports_neither_matplotlib_nor_mnist1d():
    builtin.mnist1d(builtin.DataConfig(name="mnist1d"))  # the cache exists before the process starts
    out = subprocess.run([sys.executable, "-c", WORKER_PATH], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
