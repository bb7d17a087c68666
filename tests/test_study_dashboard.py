"""What optuna-dashboard reads: a grid study seen through Optuna's public API only."""

import json
import os
import statistics
import time

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from reglab.study.storage import default_url
from reglab.study.sweep import sweep

TINY = ["train.epochs=6", "train.plots=false", "train.save_weights=false"]


def test_grid_trials_carry_params_learning_curves_and_the_chosen_point(tmp_path):
    result = sweep("ridge-gd", TINY, ["reg.l2=1e-3:1e-1:log:3", "reg.mode=coupled,decoupled"], "0-1",
                   studies_dir=tmp_path, name="dash", echo=lambda line: None)
    assert result.finished and result.folder == tmp_path / "dash"
    study = optuna.load_study(study_name="dash", storage=default_url(tmp_path / "dash"))
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 3 * 2 * 2
    for trial in trials:
        assert trial.params == {"reg.l2": trial.user_attrs["point"]["reg.l2"],
                                "reg.mode": trial.user_attrs["point"]["reg.mode"]}
        assert trial.distributions["reg.l2"] == FloatDistribution(1e-3, 1e-1, log=True)
        assert trial.distributions["reg.mode"] == CategoricalDistribution(["coupled", "decoupled"])
        run_dir = trial.user_attrs["run_dir"]
        metrics = [json.loads(line) for line in open(f"{run_dir}/metrics.jsonl").read().splitlines()]
        assert trial.intermediate_values == pytest.approx({m["epoch"]: m["val_loss"] for m in metrics})
    assert sorted({t.params["reg.l2"] for t in trials}) == pytest.approx([1e-3, 1e-2, 1e-1])
    # the chosen point is stored for the dashboard: the best mean of the trials' values over seeds
    # (each trial's value is one seed's val_loss); no per-point means are kept in storage
    means = {}
    for point in {(t.params["reg.l2"], t.params["reg.mode"]) for t in trials}:
        seeds = [t for t in trials if (t.params["reg.l2"], t.params["reg.mode"]) == point]
        means[seeds[0].user_attrs["label"]] = statistics.mean(t.value for t in seeds)
    chosen = study.user_attrs["chosen"]
    assert chosen["label"] == min(means, key=means.get) and chosen["seeds"] == 2
    assert chosen["score"] == pytest.approx(min(means.values())) and chosen["metric"] == "val_loss"
    assert not any(key.startswith("mean ") for key in study.user_attrs)
    # the params make Optuna's own analysis work: importance of each grid key for the objective
    importance = optuna.importance.get_param_importances(study)
    assert set(importance) == {"reg.l2", "reg.mode"}


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_the_dashboard_sees_the_metric_name_plain_small_attributes_and_the_chosen_config(tmp_path, backend):
    """What optuna-dashboard lists: the objective named, user attributes without nulls or big
    blobs (a run's numbers are system attributes, still read back by reglab), the chosen config's
    trials marked ``chosen`` and no other."""
    from reglab.study.choose import choose_point
    from reglab.study.records import load_study

    url, name = None, "plain"
    if backend == "postgres":
        url = os.environ.get("REGLAB_TEST_POSTGRES_URL") or pytest.skip("REGLAB_TEST_POSTGRES_URL is not set")
        name = f"plain-{time.time_ns()}"
    result = sweep("ridge-gd", TINY, ["reg=none,l2", "reg.lam=1e-3,1e-1"], "0-1", studies_dir=tmp_path, name=name,
                   storage_url=url, echo=lambda line: None)
    assert result.finished
    study = optuna.load_study(study_name=name, storage=url or default_url(tmp_path / name))
    assert study.metric_names == ["val_loss"]
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 3 * 2  # none, l2 at two λ; two seeds
    for trial in trials:
        assert None not in trial.user_attrs.values()
        assert not {"summary", "history", "runs"} & set(trial.user_attrs)
        assert all(len(json.dumps(v)) < 200 for v in trial.user_attrs.values())
        assert trial.system_attrs["summary"]["val_loss"] == trial.value
    none = [t for t in trials if t.user_attrs["label"] == "none"]
    assert "lam" not in none[0].user_attrs and "fold" not in none[0].user_attrs
    spec, records = load_study((url or default_url(tmp_path / name), name))
    assert {r.lam for r in records} == {None, 1e-3, 1e-1} and {r.fold for r in records} == {None}
    assert all(r.summary["val_loss"] and r.history for r in records)
    choice = choose_point(spec, records)
    marked = {t.number for t in trials if t.user_attrs.get("chosen") is True}
    assert marked == {t.number for t in trials if t.user_attrs["label"] == choice.label} and len(marked) == 2
    assert study.user_attrs["chosen"]["label"] == choice.label
    if backend == "postgres":
        optuna.delete_study(study_name=name, storage=url)


@pytest.mark.postgres
def test_workers_that_mark_the_choice_at_once_all_succeed_and_agree():
    """Workers that end together each write the choice (``store_choice``); on PostgreSQL the second
    writer must see the first one's rows, or it inserts a trial's ``chosen`` twice (a unique key)."""
    import threading

    from reglab.study.storage import open_storage
    from reglab.study.transactions import mark_chosen

    url = os.environ.get("REGLAB_TEST_POSTGRES_URL") or pytest.skip("REGLAB_TEST_POSTGRES_URL is not set")
    name = f"marks-{time.time_ns()}"
    storage = open_storage(url)
    study = optuna.create_study(storage=storage, study_name=name)
    for i in range(6):
        study.add_trial(optuna.trial.create_trial(value=float(i), user_attrs={"label": f"p{i % 3}"}))
    study_id = storage.get_study_id_from_name(name)
    trials = storage.get_all_trials(study_id)
    chosen = [t._trial_id for t in trials if t.user_attrs["label"] == "p1"]
    errors, barrier = [], threading.Barrier(4)

    def mark():
        for _ in range(10):
            barrier.wait()
            try:
                mark_chosen(storage, study_id, {"label": "p1"}, chosen)
            except Exception as exc:  # noqa: BLE001 - the race shows as an IntegrityError
                errors.append(exc)

    threads = [threading.Thread(target=mark) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        marked = {t._trial_id for t in storage.get_all_trials(study_id) if t.user_attrs.get("chosen")}
        assert marked == set(chosen) and storage.get_study_user_attrs(study_id)["chosen"] == {"label": "p1"}
    finally:
        optuna.delete_study(study_name=name, storage=storage)
