"""What the stacked backend implements is marked on the config schema, and read from there."""

from pydantic import BaseModel, ConfigDict, Field

from reglab.config import Config, flat_keys, load_config, stacked_keys
from reglab.sections import Section, stacked
from reglab.train.stacked import unsupported


def test_the_marks_of_the_schema():
    keys = stacked_keys()
    assert {"seed", "data.name", "model.hidden", "reg.lam", "optim.betas", "train.clip_norm", "adv.attack",
            "published.value"} <= keys
    assert "task" not in keys and "model.factory" in keys and not any(k.startswith("gan.") for k in keys)
    assert keys <= set(flat_keys(Config().to_dict()))


def test_a_fields_mark_wins_over_its_sections_and_an_unmarked_key_is_not_implemented():
    class Marked(Section):
        model_config = ConfigDict(json_schema_extra=stacked())
        a: int = 0
        b: int = Field(0, json_schema_extra=stacked(False))

    class Unmarked(Section):
        c: int = 0
        d: int = Field(0, json_schema_extra=stacked())

    class Top(BaseModel):
        marked: Marked = Marked()
        unmarked: Unmarked = Unmarked()
        e: int = 0

    assert stacked_keys(Top) == {"marked.a", "unmarked.d"}


def test_a_key_off_the_marks_set_away_from_its_default_leaves_the_stacked_backend():
    assert unsupported(load_config("mlp-l2", ["train.clip_norm=1"])) is None
    assert unsupported(load_config("gan-l1")) == "task is not vectorized"
