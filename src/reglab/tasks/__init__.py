"""What is trained and how it is scored: the train step's loss and the metrics.

``make_task`` picks the task for a config; the trainer calls only the task's interface:
``model``, ``targets``, ``attach_regularizer``, ``train_step``, ``evaluate``, ``penalty_values``,
``epoch_metrics``, ``final_metrics`` and ``scheduler``; a task that sets ``stop_reason`` (a string)
in ``epoch_metrics`` ends training after that epoch; a task with ``write_plots(folder, history)``
adds its own plots to the run folder.
"""

from reglab.tasks.adversarial import AdversarialTask
from reglab.tasks.gan import GanTask
from reglab.tasks.supervised import SupervisedTask


def wants_attacks(config) -> bool:
    """Adversarial training, robust evaluation or a robust monitor: standard training is attacked too."""
    adv = config.adv
    robust_monitor = config.train.monitor == "val_robust_acc"
    return adv.method != "none" or bool(adv.eval_eps) or adv.autoattack or robust_monitor


def make_task(config, splits, device):
    """The task for a config: a GAN for ``task=gan``, adversarial when ``wants_attacks``, else
    plain supervised training."""
    if config.task == "gan":
        return GanTask(config, splits, device)
    if wants_attacks(config):
        return AdversarialTask(config, splits, device)
    return SupervisedTask(config, splits, device)


__all__ = ["AdversarialTask", "GanTask", "SupervisedTask", "make_task", "wants_attacks"]
