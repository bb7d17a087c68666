"""What is trained and how it is scored: the train step's loss and the metrics.

:class:`~reglab.tasks.base.Task` is the contract between the engine and a task. The shared parts
live here (plain supervised training, optimizers, the linear-regression reference); the domain
tasks live with their domain (:mod:`reglab.adversarial.task`, :mod:`reglab.gan.task`) and
:mod:`reglab.train.task_choice` picks one for a config.
"""
