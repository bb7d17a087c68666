"""One run-state object (the Tracker) and one result type (reglab.runs.Run) from the engine to the API."""

import reglab as rl
from reglab.config import load_config
from reglab.runs import Run
from reglab.train import Member, prepare, run
from reglab.train.batched import run_many
from reglab.train.engine import stack_of, train_stack

TINY = ["train.epochs=2"]


def test_the_api_and_the_engine_give_one_result_type(tmp_path):
    by_api = rl.run("ridge-gd", *TINY, out=tmp_path / "api")
    by_engine = run(load_config("ridge-gd", TINY), tmp_path / "engine", progress=False)
    (in_a_batch,) = run_many([load_config("ridge-gd", TINY)], tmp_path / "batch", progress=False)
    assert rl.Run is Run
    for result in (by_api, by_engine, in_a_batch):
        assert type(result) is Run and result.ok
        assert list(result.metrics()["epoch"]) == [1, 2]
    assert by_api.summary["train_loss"] == by_engine.summary["train_loss"]


def test_a_member_is_its_trackers_run_and_its_shuffle():
    member = Member.of(prepare(load_config("ridge-gd", TINY)))
    assert member.exp is member.tracker.exp and member.result is None
    train_stack(stack_of([member]), progress=False)
    assert member.result is member.tracker.result and member.result.ok and member.result.path is None
    assert member.result.summary["epochs_run"] == len(member.tracker.history) == 2
