"""The public path of :mod:`reglab.adversarial.attacks`: the same module under its documented name."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("reglab.adversarial.attacks")
