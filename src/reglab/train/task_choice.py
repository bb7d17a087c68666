"""Which task trains a config: the engine's one place that knows the domain tasks."""

from reglab.adversarial.config import wants_attacks
from reglab.adversarial.task import AdversarialTask
from reglab.gan.task import GanTask
from reglab.tasks.supervised import SupervisedTask


def make_task(config, splits, device):
    """The task for a config: a GAN for ``task=gan``, adversarial when ``wants_attacks``, else
    plain supervised training."""
    if config.task == "gan":
        return GanTask(config, splits, device)
    if wants_attacks(config):
        return AdversarialTask(config, splits, device)
    return SupervisedTask(config, splits, device)
