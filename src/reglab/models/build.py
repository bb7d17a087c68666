"""Build a classifier or regressor from a :class:`~reglab.config.ModelConfig` and the data shape.

``model.kind=custom`` calls the user's ``model.factory=package.module:function`` as
``function(input_shape, n_outputs)``; it must return an ``nn.Module`` mapping a batch shaped
``(N, *input_shape)`` to ``(N, n_outputs)``. The module is imported as Python would import it, with
the current directory on the path (as ``python -m`` has it).
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
from reglab.models.dropout import CountedDropout

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


def load_factory(text: str) -> Callable[..., nn.Module]:
    """The function named by ``package.module:function``; a name that does not resolve is a UserError."""
    module_name, _, function_name = text.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"model.factory={text}: cannot import '{module_name}' ({exc})") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise UserError(f"model.factory={text}: '{module_name}' has no function '{function_name}'")
    return function


def custom_model(cfg: ModelConfig, input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
    factory = load_factory(cfg.factory)
    if cfg.dropout > 0:
        raise UserError(f"model.dropout={cfg.dropout} (or reg=dropout) does not apply to model.kind=custom: "
                        "set model.dropout=0 and put dropout layers in your factory's model")
    model = factory(tuple(input_shape), n_outputs)
    if not isinstance(model, nn.Module):
        raise UserError(f"model.factory={cfg.factory} returned a {type(model).__name__}, not a torch nn.Module")
    return model


def build_model(cfg: ModelConfig, input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
    """A fresh model for inputs of ``input_shape`` (one example) and ``n_outputs`` outputs."""
    if cfg.kind == "custom":
        return custom_model(cfg, input_shape, n_outputs)
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


def check_input(model: nn.Module, input_shape: tuple[int, ...], n_outputs: int) -> None:
    """Run one dummy example through the model; a shape error becomes a UserError."""
    try:
        with torch.no_grad():
            out = model.eval()(torch.zeros(2, *input_shape))
    except RuntimeError as exc:
        raise UserError(
            f"the model does not fit the data's input shape {tuple(input_shape)}: "
            f"{str(exc).splitlines()[0]}"
        ) from None
    if out.shape != (2, n_outputs):
        raise UserError(f"the model returns shape {tuple(out.shape[1:])}, the data needs ({n_outputs},)")


