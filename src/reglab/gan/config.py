"""The ``gan`` config section, its regularizer presets and the rules across sections for ``task: gan``."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from reglab.errors import UserError
from reglab.sections import Beta, Section, Width

if TYPE_CHECKING:
    from reglab.config import Config


class GanConfig(Section):
    """The GAN task (``task: gan``): loss, D/G schedule, nets, Adam settings, regularizers.

    The weight penalty (L1/L2 in any mode) is the ``reg`` section, put on G, D or both by
    ``reg_on``. A ``regularizer`` other than ``custom`` is a preset for studies: it switches on
    exactly one regularizer at ``strength`` × its reference λ (``GAN_PRESETS``) and the others off.
    """

    loss: Literal["ns", "hinge", "wasserstein"] = "ns"
    """GAN loss: ns (non-saturating), hinge or wasserstein"""
    n_critic: int = Field(1, ge=1)
    """D steps per G step"""
    latent_dim: int = Field(2, ge=1)
    """size of G's latent input"""
    g_hidden: list[Width] = [128, 128, 128]
    """widths of G's hidden layers"""
    d_hidden: list[Width] = [128, 128, 128]
    """widths of D's hidden layers"""
    lr_g: float = Field(1e-3, gt=0)
    """G's Adam learning rate"""
    lr_d: float = Field(1e-3, gt=0)
    """D's Adam learning rate"""
    betas: tuple[Beta, Beta] = (0.5, 0.999)
    """Adam's (β1, β2) for G and D"""
    reg_on: Literal["g", "d", "both"] = "both"
    """which nets the reg.* weight penalty is put on: g, d or both"""
    gp: float = Field(0.0, ge=0)
    """gradient-penalty weight on D (0: off)"""
    r1: float = Field(0.0, ge=0)
    """R1 penalty weight on D's gradient at real data (0: off)"""
    spectral_norm: bool = False
    """spectral normalization of D's layers"""
    clip: float | None = Field(None, gt=0)
    """clip D's weights to ±this (null: no clipping)"""
    label_smoothing: float = Field(0.0, ge=0, lt=0.5)
    """one-sided label smoothing of D's real targets (ns loss only)"""
    regularizer: Literal["custom", "none", "l1", "l2", "gp", "r1", "sn"] = "custom"
    """a preset for studies (none, l1, l2, gp, r1, sn) or custom (set the keys yourself)"""
    strength: float = Field(1.0, gt=0)
    """multiplies the preset's reference λ"""
    eval_every: int = Field(5, ge=1)
    """epochs between mode-coverage evaluations"""
    n_eval_samples: int = Field(2500, ge=10)
    """samples drawn from G for each evaluation"""


# What each gan.regularizer preset sets; a number is the reference λ that gan.strength multiplies.
GAN_PRESET_OFF = {"reg.penalty": "none", "reg.lam": 0.0, "gan.gp": 0.0, "gan.r1": 0.0,
                  "gan.spectral_norm": False, "gan.clip": None}  # fmt: skip
GAN_PRESETS = {
    "none": {},
    "l1": {"reg.penalty": "l1", "reg.lam": 1e-4},
    "l2": {"reg.penalty": "l2", "reg.lam": 1e-3},
    "gp": {"gan.gp": 0.1},
    "r1": {"gan.r1": 0.1},
    "sn": {"gan.spectral_norm": True},
}


def apply_gan_preset(config: Config) -> None:
    """Set the keys of the ``gan.regularizer`` preset; refuse a value that contradicts it."""
    preset, strength = config.gan.regularizer, config.gan.strength
    wanted = dict(GAN_PRESET_OFF)
    for key, ref in GAN_PRESETS[preset].items():
        wanted[key] = ref * strength if isinstance(ref, float) else ref
    for key, value in wanted.items():
        section, name = key.split(".")
        node = getattr(config, section)
        current = getattr(node, name)
        default = type(node).model_fields[name].default
        same = current == value or (isinstance(value, float) and math.isclose(current, value))
        if not same and current != default:
            raise UserError(f"gan.regularizer={preset} sets {key}, which is also given as {current!r}; "
                            f"leave it out (gan.strength scales the preset) or use gan.regularizer=custom")  # fmt: skip
        setattr(node, name, value)


def check_gan(config: Config) -> None:
    """The rules across sections for ``task: gan``; each broken rule is one readable UserError."""
    if config.task != "gan":
        if config.gan != GanConfig():
            raise UserError("gan.* keys apply only to task=gan")
        return
    gan, train = config.gan, config.train
    unused = [name for name in ("model", "optim", "adv")
              if getattr(config, name) != type(getattr(config, name))()]  # fmt: skip
    if unused:
        raise UserError(f"{unused[0]}.* does not apply to task=gan: G and D are set by gan.g_hidden, "
                        f"gan.d_hidden and trained by Adam with gan.lr_g, gan.lr_d, gan.betas")  # fmt: skip
    if gan.label_smoothing > 0 and gan.loss != "ns":
        raise UserError(f"gan.label_smoothing needs the discriminator's output to be a probability "
                        f"(gan.loss=ns); gan.loss={gan.loss} gives an unbounded score")  # fmt: skip
    if train.early_stopping is not None or train.restore_best or train.schedule == "plateau":
        raise UserError("the D loss does not measure a GAN's samples: task=gan needs "
                        "train.early_stopping=null, train.restore_best=false and no plateau schedule")  # fmt: skip
    if gan.regularizer != "custom":
        apply_gan_preset(config)
    elif gan.strength != 1.0:
        raise UserError("gan.strength scales a gan.regularizer preset; with gan.regularizer=custom set λ directly")
