"""Build a classifier or regressor from a :class:`~reglab.config.ModelConfig` and the data shape.

``model.kind=custom`` calls the user's ``model.factory=package.module:function`` as
``function(input_shape, n_outputs)``; it must return an ``nn.Module`` mapping a batch shaped
``(N, *input_shape)`` to ``(N, n_outputs)``. Its ``nn.Dropout`` (``Dropout1d``, ``Dropout2d``)
layers are swapped for reglab's counter-based dropout of the same rate (``reglab.models.dropout``).
The module is imported as Python would import it, with the current directory on the path (as
``python -m`` has it): a config that names a factory runs that code, as any Python import does. Whatever the import, the call or a first forward pass raises
is reported in one line that names the factory.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Callable

import torch
from torch import nn

from reglab.config import ModelConfig
from reglab.errors import UserError
from reglab.memory import check_fits, model_bytes
from reglab.models.dropout import CountedDropout, count_dropout_

ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
}


class Net(nn.Module):
    """``features`` (conv blocks or nothing) → flatten → ``body`` (dense layers) → ``head``."""

    def __init__(self, features: nn.Module, body: nn.Module, head: nn.Linear):
        super().__init__()
        self.features = features
        self.body = body
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(torch.flatten(self.features(x), 1)))


def dense_stack(sizes: list[int], width_in: int, cfg: ModelConfig) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    for index, width in enumerate(sizes):
        layers.append(nn.Linear(width_in, width))
        if cfg.batchnorm:
            layers.append(nn.BatchNorm1d(width))
        layers.append(ACTIVATIONS[cfg.activation]())
        if cfg.dropout > 0:
            layers.append(CountedDropout(cfg.dropout, layer=index))
        width_in = width
    return nn.Sequential(*layers), width_in


def conv_stack(cfg: ModelConfig, input_shape: tuple[int, ...]) -> tuple[nn.Sequential, int]:
    """Conv blocks: conv (same padding) → [batchnorm] → activation → [max-pool 2]."""
    if len(input_shape) not in (2, 3):
        raise UserError(
            f"model.kind=cnn needs inputs shaped (C, L) or (C, H, W); the data has shape "
            f"{tuple(input_shape)}: use model.kind=mlp or linear"
        )
    two_d = len(input_shape) == 3
    conv, norm, pool = (
        (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d) if two_d else (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d)
    )
    channels_in, *spatial = input_shape
    layers: list[nn.Module] = []
    for channels in cfg.channels:
        layers.append(conv(channels_in, channels, cfg.kernel_size, padding=cfg.kernel_size // 2))
        if cfg.batchnorm:
            layers.append(norm(channels))
        layers.append(ACTIVATIONS[cfg.activation]())
        if cfg.pool and min(spatial) >= 2:
            layers.append(pool(2))
            spatial = [s // 2 for s in spatial]
        channels_in = channels
    stack = nn.Sequential(*layers)
    with torch.no_grad():  # in eval mode: the probe of the width must not move batch norm's running statistics
        width = stack.eval()(torch.zeros(1, *input_shape)).flatten(1).shape[1]
    return stack.train(), width


def first_line(exc: BaseException) -> str:
    """``TypeName: the first line of the message`` of an exception."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def load_factory(text: str) -> Callable[..., nn.Module]:
    """The function named by ``package.module:function``; a name that does not resolve, or a module
    that fails while it is imported (importing runs its code), is a UserError naming the factory."""
    module_name, _, function_name = text.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"model.factory={text}: cannot import '{module_name}' ({exc})") from None
    except (Exception, SystemExit) as exc:
        raise UserError(f"model.factory={text}: importing '{module_name}' failed ({first_line(exc)})") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise UserError(f"model.factory={text}: '{module_name}' has no function '{function_name}'")
    return function


def custom_model(cfg: ModelConfig, input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
    """``factory(input_shape, n_outputs)``, checked: whatever it raises (``SystemExit`` included)
    and a result that is not an ``nn.Module`` are UserErrors naming the factory. Its dropout layers
    are counter-based ones (:func:`~reglab.models.dropout.count_dropout_`)."""
    factory = load_factory(cfg.factory)
    if cfg.dropout > 0:
        raise UserError(f"model.dropout={cfg.dropout} (or reg=dropout) does not apply to model.kind=custom: "
                        "set model.dropout=0 and put dropout layers in your factory's model")
    try:
        model = factory(tuple(input_shape), n_outputs)
    except (Exception, SystemExit) as exc:
        raise UserError(f"model.factory={cfg.factory} failed when called as {factory_call(input_shape, n_outputs)}: "
                        f"{first_line(exc)}") from None
    if not isinstance(model, nn.Module):
        raise UserError(f"model.factory={cfg.factory} returned a {type(model).__name__}, not a torch nn.Module "
                        f"(it is called as {factory_call(input_shape, n_outputs)})")
    return count_dropout_(model)


def factory_call(input_shape: tuple[int, ...], n_outputs: int) -> str:
    return f"function({tuple(input_shape)}, {n_outputs})"


def build_model(cfg: ModelConfig, input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
    """A fresh model for inputs of ``input_shape`` (one example) and ``n_outputs`` outputs. A
    built-in one is first built on the ``meta`` device (shapes, no numbers) and refused when
    training it would not fit in memory (:mod:`reglab.memory`)."""
    if cfg.kind == "custom":
        return custom_model(cfg, input_shape, n_outputs)
    with torch.device("meta"):
        parameters = sum(p.numel() for p in builtin_model(cfg, input_shape, n_outputs).parameters())
    sizes = {"linear": "", "mlp": f" model.hidden={cfg.hidden}",
             "cnn": f" model.channels={cfg.channels} model.dense={cfg.dense}"}[cfg.kind]
    check_fits(model_bytes(parameters), f"model.kind={cfg.kind}{sizes} ({parameters:,} parameters for inputs "
               f"{tuple(input_shape)})", "make the model smaller")
    return builtin_model(cfg, input_shape, n_outputs)


def builtin_model(cfg: ModelConfig, input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
    """A linear, mlp or cnn model on the current default device."""
    flat = 1
    for size in input_shape:
        flat *= int(size)
    if cfg.kind == "linear":
        return Net(nn.Identity(), nn.Identity(), nn.Linear(flat, n_outputs))
    if cfg.kind == "mlp":
        body, width = dense_stack(cfg.hidden, flat, cfg)
        return Net(nn.Identity(), body, nn.Linear(width, n_outputs))
    features, width = conv_stack(cfg, tuple(input_shape))
    body, width = dense_stack(cfg.dense, width, cfg)
    return Net(features, body, nn.Linear(width, n_outputs))


def check_input(model: nn.Module, input_shape: tuple[int, ...], n_outputs: int, factory: str | None = None) -> None:
    """Run two dummy examples through the model; whatever goes wrong (an error, an output that is
    not a tensor of shape ``(2, n_outputs)``) is a UserError, naming ``factory`` when a user's
    factory built the model."""
    who = f"the model of model.factory={factory}" if factory else "the model"
    try:
        with torch.no_grad():
            out = model.eval()(torch.zeros(2, *input_shape))
    except (Exception, SystemExit) as exc:
        raise UserError(f"{who} does not fit the data's input shape {tuple(input_shape)}: "
                        f"{first_line(exc) if factory else str(exc).splitlines()[0]}") from None
    if not isinstance(out, torch.Tensor):
        raise UserError(f"{who} returns a {type(out).__name__}, not a tensor")
    if out.shape != (2, n_outputs):
        raise UserError(f"{who} returns shape {tuple(out.shape[1:])}, the data needs ({n_outputs},)")
