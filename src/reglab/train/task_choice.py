"""Which task trains a config: the engine's one place that knows the domain tasks. A domain's task
is imported when a config asks for it: its plots and metrics bring matplotlib and scipy, which a
plain supervised run (a sweep's worker) would otherwise import for nothing."""

from reglab.adversarial.config import wants_attacks
from reglab.tasks.supervised import SupervisedTask


def make_task(config, splits, device):
    """The task for a config: a GAN for ``task=gan``, adversarial when ``wants_attacks``, else
    plain supervised training."""
    if config.task == "gan":
        from reglab.gan.task import GanTask

        return GanTask(config, splits, device)
    if wants_attacks(config):
        from reglab.adversarial.task import AdversarialTask

        return AdversarialTask(config, splits, device)
    return SupervisedTask(config, splits, device)
