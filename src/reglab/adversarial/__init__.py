"""Adversarial robustness: the attacks (:mod:`.attacks`), robust accuracy and its checks
(:mod:`.evaluate`), adversarial training as a task (:mod:`.task`)."""
