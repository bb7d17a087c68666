"""Studies: a grid (or TPE search) of config overrides × seeds × CV folds, held in Optuna storage.

* :mod:`~reglab.study.grid` parses ``--grid`` and ``--seeds``; :mod:`~reglab.study.points`
  normalizes and names the points; :mod:`~reglab.study.spec` is what identifies a study;
* :mod:`~reglab.study.storage` opens SQLite or PostgreSQL; :mod:`~reglab.study.queue` creates,
  resumes and opens studies; :mod:`~reglab.study.worker` trains their trials;
* :mod:`~reglab.study.records` reads the results (``load_study``); :mod:`~reglab.study.choose`
  decides which config won on validation (``choose_point``);
* :mod:`~reglab.study.sweep` is what ``reglab sweep / worker / studies`` do.

See docs/studies.md.
"""

from reglab.study.choose import Choice, choose_point
from reglab.study.records import TrialRecord, load_study

__all__ = ["Choice", "TrialRecord", "choose_point", "load_study"]
