"""The validation objective a study chooses λ on, by task: what "better" means for a run.

* supervised: ``val_acc`` (maximized) for classification, ``val_loss`` (minimized) for regression;
* adversarial training (attacks evaluated): ``robust_val_acc``, the PGD accuracy at ``adv.eps`` on
  validation examples (maximized): robustness is what it trains for;
* GAN with a mode judge (2-D mixtures): ``reverse_kl``, KL(q ‖ uniform) of the high-quality
  samples' mode shares (minimized). A GAN has no held-out split for it: it is measured on the
  run's own samples.
"""

from __future__ import annotations

from reglab.adversarial.config import wants_attacks


def objective(config, classification: bool) -> tuple[str, str]:
    """``(summary key, "maximize" | "minimize")`` for runs of ``config``."""
    if config.task == "gan":
        return "reverse_kl", "minimize"
    if wants_attacks(config):
        return "robust_val_acc", "maximize"
    return ("val_acc", "maximize") if classification else ("val_loss", "minimize")
