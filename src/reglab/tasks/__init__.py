"""What is trained and how it is scored: the train step's loss and the metrics.

``make_task`` picks the task for a config; the trainer calls only the task's interface:
``model``, ``targets``, ``attach_regularizer``, ``train_step``, ``evaluate``, ``penalty_values``,
``epoch_metrics``, ``final_metrics`` and ``scheduler``.
"""

from reglab.tasks.supervised import SupervisedTask


def make_task(config, splits, device):
    """The task for a config: plain supervised training of the data's kind."""
    return SupervisedTask(config, splits, device)


__all__ = ["SupervisedTask", "make_task"]
