"""Models built from config: ``linear``, ``mlp`` and ``cnn`` (1-D or 2-D, sized from the input).

Every model names its last layer ``head`` so selections such as ``named("head.*")`` read well.
"""

from reglab.models.build import build_model

__all__ = ["build_model"]
