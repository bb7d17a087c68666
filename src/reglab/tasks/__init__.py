"""What is trained and how it is scored: the train step's loss and the metrics.

The shared parts live here (plain supervised training, optimizers, the linear-regression reference);
the domain tasks live with their domain (:mod:`reglab.adversarial.task`, :mod:`reglab.gan.task`) and
:mod:`reglab.train.task_choice` picks one for a config. The trainer calls only the task's interface:
``model``, ``targets``, ``attach_regularizer``, ``train_step``, ``evaluate``, ``penalty_values``,
``epoch_metrics``, ``final_metrics`` and ``scheduler``; a task that sets ``stop_reason`` (a string)
in ``epoch_metrics`` ends training after that epoch; a task with ``write_plots(folder, history)``
adds its own plots to the run folder.
"""
