"""The experiment schema: YAML plus dotted ``key=value`` overrides, validated by pydantic.

A run is fully described by one :class:`Config`. It is saved with every run, so a run folder alone
is enough to rerun it. Unknown keys are errors that name the closest valid key. Overrides may use
the shorthands of :mod:`reglab.shorthands` (``reg=l2``, ``reg.l2=1e-3``, ``reg=dropout``), and a
config written by an older reglab is read in today's form (:func:`reglab.shorthands.upgraded`).
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from reglab.adversarial.config import AdvConfig
from reglab.bounded import MAX_YAML_BYTES, load_yaml, read_bounded
from reglab.errors import UserError
from reglab.gan.config import GanConfig, check_gan
from reglab.penalties import PENALTIES, Setting, penalty_names
from reglab.sections import STACKED, Beta, OneOf, Section, Width, stacked
from reglab.shorthands import check_rate_applies, plain_overrides, upgraded

RECIPE_DIR = Path(__file__).parent / "recipes"
FACTORY_PATTERN = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
MAX_SEED = 2**32 - 1  # numpy's and torch's generators both take seeds up to this


def check_name(name: str, what: str) -> str:
    """The one rule for names that become folders (runs, studies): letters, digits, ``.``, ``_``
    and ``-``, starting with a letter or digit, at most 100 characters; so no ``/``, no ``..``
    and no markup. Returns ``name``; a bad one is a :class:`UserError` naming ``what`` it is."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise UserError(f"{what} {name!r} must be letters, digits, '.', '_' or '-', start with a letter or "
                        "digit and be at most 100 characters (it names a folder)")
    return name


class DataConfig(Section):
    model_config = ConfigDict(json_schema_extra=stacked())

    name: str = "mnist1d"
    """dataset name (reglab datasets lists them); csv or npz for your own file in data.path"""
    path: str | None = None
    """your own data file (with data.name=csv or npz)"""
    target: str | None = None
    """the CSV column that holds the label or target"""
    kind: Literal["auto", "classification", "regression"] = "auto"
    """classification or regression; auto decides from the targets"""
    n_samples: int | None = Field(None, gt=0)
    """examples to generate or load (null: the dataset's own size)"""
    n_train: int | None = Field(None, gt=0)
    """keep only this many training examples (null: all)"""
    noise: float | None = Field(None, ge=0)
    """noise level of a generated dataset (null: its default)"""
    val_fraction: float = Field(0.15, gt=0, lt=1)
    """fraction of the training part (what the test split leaves) held out for validation (chooses λ, early stopping)"""
    test_fraction: float = Field(0.15, gt=0, lt=1)
    """fraction of the examples held out for the final test (when not the official test split)"""
    test_split: Literal["official", "random"] = "official"
    """official: a dataset's own test set when it has one (MNIST, mnist1d), else random"""
    n_folds: int | None = Field(None, ge=2)
    """K for K-fold cross-validation (null: one train/val split)"""
    fold: int | None = Field(None, ge=0)
    """which fold (0..K-1) is the validation fold"""
    split_seed: int = 0
    """seed of the train/val/test split (kept apart from the training seed)"""

    @model_validator(mode="after")
    def _fold_in_range(self) -> "DataConfig":
        if self.fold is not None and self.n_folds is None:
            raise ValueError("data.fold needs data.n_folds")
        if self.fold is not None and self.n_folds is not None and self.fold >= self.n_folds:
            raise ValueError(f"data.fold={self.fold} must be below data.n_folds={self.n_folds}")
        return self


class ModelConfig(Section):
    model_config = ConfigDict(json_schema_extra=stacked())

    kind: Literal["linear", "mlp", "cnn", "custom"] = "mlp"
    """linear, mlp, cnn (1-D or 2-D by the input shape) or custom (model.factory builds it)"""
    factory: str | None = None
    """with kind=custom: package.module:function, called as function(input_shape, n_outputs) -> nn.Module"""
    hidden: list[Width] = [256, 128]
    """widths of the mlp's hidden layers"""
    activation: Literal["relu", "tanh", "gelu", "leaky_relu", "elu"] = "relu"
    """activation after each hidden or conv layer"""
    dropout: float = Field(0.0, ge=0, lt=1)
    """dropout probability after each hidden layer (0: none)"""
    channels: list[Width] = [32, 64]
    """output channels of the cnn's conv layers"""
    kernel_size: int = Field(3, ge=1)
    """conv kernel size (same padding)"""
    pool: bool = True
    """max-pool by 2 after each conv layer"""
    dense: list[Width] = [128]
    """widths of the dense layers after the cnn's conv layers"""
    batchnorm: bool = False
    """batch normalization after each hidden or conv layer"""

    @model_validator(mode="after")
    def _factory_for_custom(self) -> "ModelConfig":
        if self.kind == "custom" and not self.factory:
            raise PydanticCustomError("factory", "model.kind=custom needs model.factory=package.module:function")
        if self.factory is not None and self.kind != "custom":
            raise PydanticCustomError("factory", "model.factory applies only to model.kind=custom")
        if self.factory is not None and not FACTORY_PATTERN.fullmatch(self.factory):
            raise PydanticCustomError("factory", "model.factory={factory} is not of the form package.module:function",
                                      {"factory": self.factory})
        return self


def penalty_choices() -> tuple[str, ...]:
    """The values of ``reg.penalty``: none and the registered penalties (:mod:`reglab.penalties`)."""
    return ("none", *penalty_names())


def penalty_setting(name: str, penalty: str) -> Setting | None:
    """The setting ``name`` as ``penalty`` declares it, else as the first registered penalty that
    declares it does; None if no registered penalty has it."""
    owners = [PENALTIES[penalty]] if penalty in PENALTIES else []
    for cls in owners + list(PENALTIES.values()):
        setting = next((s for s in cls.settings if s.name == name), None)
        if setting is not None:
            return setting
    return None


def setting_names() -> tuple[str, ...]:
    """Every registered penalty's settings' names: the keys ``reg.NAME`` besides the fields."""
    return tuple(dict.fromkeys(s.name for cls in PENALTIES.values() for s in cls.settings))


def is_penalty_setting(key: str) -> bool:
    """Whether the dotted ``key`` is a penalty's setting (``reg.l1_ratio``): a number per model."""
    return key.startswith("reg.") and key[4:] in setting_names()


class RegConfig(Section):
    """The weight penalty. Besides these keys it holds the settings its penalty class declares
    (``reg.l1_ratio`` of elastic; :class:`reglab.penalties.Setting`), with their defaults; a setting
    of another registered penalty is checked and then dropped, so that configs which train the same
    model are equal; a setting no registered penalty declares is an unknown key."""

    model_config = ConfigDict(**{**Section.model_config, "extra": "allow", "json_schema_extra": stacked()})
    penalty: Annotated[str, OneOf(penalty_choices)] = "none"
    """none or a registered penalty: l2 is λ/2·‖w‖², l1 λ·‖w‖₁, elastic λ·(α‖w‖₁ + (1−α)/2·‖w‖²), group λ·Σ‖w_g‖₂"""
    lam: float = Field(0.0, ge=0)
    """the penalty's strength λ"""
    mode: Literal["coupled", "decoupled", "proximal"] = "coupled"
    """coupled (gradient added), decoupled (applied before the step, like AdamW) or proximal (exact zeros)"""
    on: str = "weights"
    """which parameters the penalty touches: weights, biases, norms, all, type:Conv2d, a name glob; | & - combine"""
    warmup_epochs: int = Field(0, ge=0)
    """epochs over which λ ramps up linearly from 0"""

    @model_validator(mode="before")
    @classmethod
    def _penalty_settings(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        penalty = str(data.get("penalty", "none"))
        kept = {k: v for k, v in data.items() if k in cls.model_fields}
        for key, value in data.items():
            setting = None if key in cls.model_fields else penalty_setting(key, penalty)
            if setting is None and key not in cls.model_fields:
                raise unknown_key_error(f"reg.{key}")
            if setting is not None:
                try:
                    setting.check(value)
                except UserError as exc:
                    raise UserError(f"invalid value for 'reg.{key}': {exc}") from None
        owner = PENALTIES.get(penalty)
        for setting in owner.settings if owner is not None else ():
            kept[setting.name] = setting.check(data.get(setting.name, setting.default))
        return kept

    def penalty_settings(self) -> dict[str, float]:
        """The chosen penalty's settings (``l1_ratio`` of elastic), by name; none for ``none``."""
        return dict(self.__pydantic_extra__ or {})


class OptimConfig(Section):
    model_config = ConfigDict(json_schema_extra=stacked())

    name: Literal["sgd", "adam", "adamw"] = "adam"
    """the optimizer; adam's weight_decay is coupled L2, adamw's is decoupled"""
    lr: float = Field(1e-3, gt=0)
    """learning rate"""
    momentum: float = Field(0.0, ge=0, lt=1)
    """sgd momentum"""
    weight_decay: float = Field(0.0, ge=0)
    """the optimizer's own weight_decay (on every parameter it updates)"""
    betas: tuple[Beta, Beta] = (0.9, 0.999)
    """adam/adamw moment decay rates (β1, β2)"""


class TrainConfig(Section):
    model_config = ConfigDict(json_schema_extra=stacked())

    epochs: int = Field(20, ge=1)
    """passes over the training data"""
    batch_size: int = Field(128, ge=0)
    """examples per step (0: full-batch gradient descent)"""
    schedule: Literal["none", "plateau", "cosine", "step"] = "none"
    """learning-rate schedule: none, plateau (on the monitored value), cosine or step"""
    plateau_factor: float = Field(0.5, gt=0, lt=1)
    """plateau: multiply the LR by this when the monitored value stalls"""
    plateau_patience: int = Field(3, ge=0)
    """plateau: epochs without improvement before the LR drops"""
    step_size: int = Field(10, ge=1)
    """step: epochs between LR drops"""
    step_gamma: float = Field(0.5, gt=0, le=1)
    """step: multiply the LR by this at each drop"""
    clip_norm: float | None = Field(None, gt=0)
    """clip the gradient's total norm to this (null: no clipping)"""
    clip_value: float | None = Field(None, gt=0)
    """clip each gradient entry to ±this (null: no clipping)"""
    early_stopping: int | None = Field(None, ge=1)
    """stop after this many epochs without improvement (null: never)"""
    monitor: Literal["val_loss", "val_acc", "val_robust_acc"] = "val_loss"
    """the validation value for early stopping, restore-best and the plateau schedule"""
    restore_best: bool = True
    """end with the weights of the best epoch by train.monitor"""
    save_weights: bool = True
    """write weights.pt to the run folder"""
    plots: bool = True
    """write the run's plots to plots/"""
    tensorboard: bool = False
    """also write per-epoch scalars and the config as hparams as TensorBoard event files (needs reglab[tensorboard])"""


class PublishedConfig(Section):
    """A published figure that the recipe's result is read against (the report quotes it)."""

    model_config = ConfigDict(json_schema_extra=stacked())

    value: float | None = None
    """the published figure (null: none)"""
    metric: Literal["test_acc", "test_loss"] = "test_acc"
    """which of the run's numbers it is read against"""
    source: str = ""
    """where the figure is published"""


class Config(Section):
    """One experiment. ``train.batch_size=0`` means full-batch gradient descent."""

    name: str = Field("run", json_schema_extra=stacked())
    """the run's name: runs go to <out>/<name>/"""
    description: str = Field("", json_schema_extra=stacked())
    """what the recipe shows"""
    seed: int = Field(0, ge=0, le=MAX_SEED, json_schema_extra=stacked())
    """seed of the initialization, batches and dropout"""
    device: str = Field("auto", json_schema_extra=stacked())
    """auto (CUDA when present, else CPU), cpu or cuda[:N]"""
    out: str = Field("runs", json_schema_extra=stacked())
    """root folder of run folders"""
    data: DataConfig = DataConfig()
    """the dataset and its split"""
    model: ModelConfig = ModelConfig()
    """the network"""
    reg: RegConfig = RegConfig()
    """the weight penalty under study (dropout is model.dropout)"""
    optim: OptimConfig = OptimConfig()
    """the optimizer"""
    train: TrainConfig = TrainConfig()
    """the training loop"""
    adv: AdvConfig = AdvConfig()
    """adversarial training and robust evaluation"""
    task: Literal["supervised", "gan"] = "supervised"
    """supervised (classify or regress) or gan"""
    gan: GanConfig = GanConfig()
    """the GAN task"""
    published: PublishedConfig = PublishedConfig()
    """a published figure to compare with"""

    @field_validator("name")
    @classmethod
    def _name_is_a_folder_name(cls, name: str) -> str:
        try:
            return check_name(name, "the run name (the recipe's file name unless name=… is given)")
        except UserError as exc:
            raise PydanticCustomError("name", "{why}", {"why": str(exc)}) from None

    @model_validator(mode="after")
    def _gan_rules(self) -> "Config":
        check_gan(self)
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


BOOKKEEPING_KEYS = ("name", "description", "device", "out", "train.save_weights", "train.plots", "train.tensorboard")
"""Keys that say what a run is called, where it runs and writes, and what it logs, never what it
learns; with the ``published.*`` figure it is read against, they are never a factor of a study:
not in a point's settings, a family's name or the point of a run folder (:func:`is_bookkeeping`)."""


def is_bookkeeping(key: str) -> bool:
    """Whether the dotted ``key`` is bookkeeping (:data:`BOOKKEEPING_KEYS`, ``published.*``)."""
    return key in BOOKKEEPING_KEYS or key.startswith("published.")


def flat_keys(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config dict as dotted keys: ``{"reg": {"lam": 0.1}}`` → ``{"reg.lam": 0.1}``."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flat_keys(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def valid_keys(model: type[BaseModel] = Config, prefix: str = "") -> list[str]:
    """Every dotted key the schema accepts, e.g. ``reg.lam``."""
    keys = []
    for name, field in model.model_fields.items():
        key = prefix + name
        keys.append(key)
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            keys.extend(valid_keys(sub, key + "."))
    if model is RegConfig:
        keys.extend(prefix + name for name in setting_names())
    return keys


def stacked_keys(model: type[BaseModel] = Config, prefix: str = "") -> set[str]:
    """The dotted keys the stacked backend implements, as the schema marks them
    (:data:`reglab.sections.STACKED`): a field's own mark, else its section's."""
    section = (model.model_config.get("json_schema_extra") or {}).get(STACKED, False)
    keys = set()
    for name, field in model.model_fields.items():
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            keys |= stacked_keys(sub, f"{prefix}{name}.")
        elif (field.json_schema_extra or {}).get(STACKED, section):
            keys.add(prefix + name)
    return keys


def closest_key(key: str) -> str | None:
    matches = difflib.get_close_matches(key, valid_keys(), n=1, cutoff=0.5)
    if not matches:
        leaf = key.rsplit(".", 1)[-1]
        leaves = {k.rsplit(".", 1)[-1]: k for k in valid_keys()}
        near = difflib.get_close_matches(leaf, list(leaves), n=1, cutoff=0.6)
        matches = [leaves[near[0]]] if near else []
    return matches[0] if matches else None


def section_keys(key: str) -> list[str]:
    """The valid keys beside ``key``: those of its section (``reg.*`` for ``reg.lamda``), or the
    top-level ones."""
    section = key.rsplit(".", 1)[0] + "." if "." in key else ""
    while section and not any(k.startswith(section) for k in valid_keys()):
        section = section[:-1].rsplit(".", 1)[0] + "." if "." in section[:-1] else ""
    return [k for k in valid_keys() if k.startswith(section) and "." not in k[len(section):]]


def unknown_key_error(key: str) -> UserError:
    suggestion = closest_key(key)
    hint = f"; did you mean '{suggestion}'?" if suggestion else ""
    return UserError(f"unknown config key '{key}'{hint} (valid: {', '.join(section_keys(key))})")


def parse_value(text: str) -> Any:
    """Parse an override's value as YAML (numbers, booleans, lists), keeping odd strings as is;
    within :mod:`reglab.bounded`'s limits."""
    try:
        return load_yaml(text, f"the override value {text[:40]!r}")
    except yaml.YAMLError:
        return text


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    if key not in valid_keys():
        raise unknown_key_error(key)
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise unknown_key_error(key)
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise UserError(f"override '{text}' is not of the form key=value")
    key, _, raw = text.partition("=")
    key = key.strip()
    if not key:
        raise UserError(f"override '{text}' has no key")
    return key, parse_value(raw.strip())


def apply_overrides(tree: dict[str, Any], overrides: list[tuple[str, Any]]) -> dict[str, Any]:
    for key, value in plain_overrides(overrides):
        set_dotted(tree, key, value)
    return tree


def recipe_path(recipe: str) -> Path:
    """A built-in recipe name or a path to a YAML file."""
    candidate = Path(recipe)
    if candidate.suffix in (".yaml", ".yml"):
        if not candidate.is_file():
            raise UserError(f"config file '{recipe}' does not exist")
        return candidate
    builtin = RECIPE_DIR / f"{recipe}.yaml"
    if builtin.is_file():
        return builtin
    names = sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))
    near = difflib.get_close_matches(recipe, names, n=1)
    hint = f"; did you mean '{near[0]}'?" if near else f"; built-in recipes: {', '.join(names)}"
    raise UserError(f"unknown recipe '{recipe}'{hint}")


def read_yaml(path: Path) -> dict[str, Any]:
    """A config file's mapping, read within :mod:`reglab.bounded`'s limits; an empty file is
    refused (it would silently train the defaults)."""
    try:
        tree = load_yaml(read_bounded(path, MAX_YAML_BYTES, "not a YAML text file"), str(path))
    except yaml.YAMLError as exc:
        raise UserError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if tree is None:
        raise UserError(f"{path} is empty: a config file holds a mapping of config keys")
    if not isinstance(tree, dict):
        raise UserError(f"{path} must hold a mapping of config keys")
    return tree


def check_keys(tree: dict[str, Any], prefix: str = "") -> None:
    allowed = set(valid_keys())
    for key, value in tree.items():
        dotted = prefix + str(key)
        if dotted not in allowed:
            raise unknown_key_error(dotted)
        if isinstance(value, dict) and any(k.startswith(dotted + ".") for k in allowed):
            check_keys(value, dotted + ".")


def validate(tree: dict[str, Any]) -> Config:
    """Validate a raw tree (an older reglab's form included: ``shorthands.upgraded``); a schema violation
    becomes one readable UserError line."""
    tree = upgraded(tree)
    check_keys(tree)
    try:
        config = Config.model_validate(tree)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "config"
        value = err.get("input")
        shown = f" (got {value!r})" if not isinstance(value, dict) else ""
        raise UserError(f"invalid value for '{where}': {err['msg']}{shown}") from None
    return config


def load_config(recipe: str, overrides: list[str] | None = None) -> Config:
    """Read a built-in recipe or YAML file and apply ``key=value`` overrides."""
    tree = read_yaml(recipe_path(recipe))
    tree.setdefault("name", Path(recipe).stem)
    parsed = [parse_override(o) for o in overrides or []]
    check_rate_applies(parsed)
    return validate(apply_overrides(tree, parsed))


def save_config(config: Config, path: Path) -> None:
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
