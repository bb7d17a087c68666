"""The forward pass of M models of one ``Net`` architecture on stacked parameters, for the batched
engine (:mod:`reglab.train.stacked`)."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import vmap

from reglab.models.build import ACTIVATIONS, Net
from reglab.models.dropout import CountedDropout

BATCHED_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.MaxPool1d, nn.MaxPool2d, nn.BatchNorm1d, nn.BatchNorm2d, CountedDropout,
                  *ACTIVATIONS.values())  # fmt: skip


def layer_plan(model: nn.Module) -> list[tuple[str, nn.Module | None]]:
    """``Net``'s layers in forward order, by parameter prefix; ``None`` marks the flatten."""
    if not isinstance(model, Net):
        raise ValueError(f"the stacked backend trains reglab's Net, not {type(model).__name__}")
    plan: list[tuple[str, nn.Module | None]] = []
    for part in ("features", "body"):
        plan += [(f"{part}.{name}", layer) for name, layer in getattr(model, part).named_children()]
        if part == "features":
            plan.append(("flatten", None))
    plan.append(("head", model.head))
    for name, layer in plan:
        if layer is not None and not isinstance(layer, BATCHED_LAYERS):
            raise ValueError(f"layer {name} ({type(layer).__name__}) has no batched form")
    return plan


class BatchedLinear(torch.autograd.Function):
    """h·Wᵀ + b for each model, as ``baddbmm``; the backward gives ∂h = g·W, ∂W = gᵀ·h (laid out
    as W, like ``addmm``'s) and ∂b = Σ_batch g."""

    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        ctx.save_for_backward(h, weight)
        return torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx, g: Tensor):
        h, weight = ctx.saved_tensors
        grad_h = torch.bmm(g, weight) if ctx.needs_input_grad[0] else None
        return grad_h, torch.bmm(g.transpose(1, 2), h), g.sum(1)


def batch_norm(h: Tensor, params: dict[str, Tensor], buffers: dict[str, Tensor], name: str,
               layer: nn.BatchNorm1d | nn.BatchNorm2d, train: bool) -> Tensor:
    """Each model's batch normalization of its own batch ``h`` [M, B, C, ...], as ``nn.BatchNorm``
    computes it, with its own running statistics ``[M, C]``:

        y = (h − μ) / √(σ² + ε) · γ + β,

    in training μ, σ² the mean and biased variance over the model's batch (and positions), and
    running ← (1 − momentum)·running + momentum·(μ, σ²·n/(n − 1)), ``num_batches_tracked`` + 1; in
    eval mode μ, σ² the running statistics. The models' channels are laid side by side as M·C
    channels of one ``F.batch_norm``, which keeps each channel's statistics apart."""
    m, b, c = h.shape[:3]
    running_mean, running_var = buffers[f"{name}.running_mean"], buffers[f"{name}.running_var"]
    if train:
        buffers[f"{name}.num_batches_tracked"].add_(1)
    side_by_side = h.movedim(0, 1).reshape(b, m * c, *h.shape[3:])
    out = F.batch_norm(side_by_side, running_mean.view(-1), running_var.view(-1), params[f"{name}.weight"].reshape(-1),
                       params[f"{name}.bias"].reshape(-1), train, layer.momentum, layer.eps)
    return out.reshape(b, m, c, *h.shape[3:]).movedim(1, 0)


class BatchedNet:
    """The forward pass of M models of one ``Net`` architecture: stacked parameters and buffers
    ``{name: [M, ...]}`` and inputs ``[M, B, ...]`` give outputs ``[M, B, n_outputs]``.

    Linear: h ← h·Wᵀ + b per model (:class:`BatchedLinear`); convolutions under ``vmap`` (a single
    model: its own convolution, as its module runs it); batch normalization per model
    (:func:`batch_norm`); activations act elementwise and pooling per example, on the models and
    examples as one batch.
    """

    def __init__(self, model: Net):
        self.plan = layer_plan(model)

    def __call__(self, params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor,
                 dropout: Callable[[CountedDropout, torch.Size, torch.dtype], Tensor] | None = None) -> Tensor:
        """Training mode when ``dropout`` is given: ``dropout(layer, shape, dtype)`` gives each model's
        scaled masks [M, *shape] for one model's ``h`` of that shape, and batch normalization uses and updates the batch statistics; None means
        eval mode."""
        h = x
        for name, layer in self.plan:
            if layer is None:
                h = h.flatten(2)
            elif isinstance(layer, nn.Linear):
                h = BatchedLinear.apply(h, params[f"{name}.weight"], params[f"{name}.bias"])
            elif isinstance(layer, (nn.Conv1d, nn.Conv2d)):
                conv = F.conv2d if isinstance(layer, nn.Conv2d) else F.conv1d

                def one(xm, wm, bm, conv=conv, layer=layer):
                    return conv(xm, wm, bm, layer.stride, layer.padding, layer.dilation, layer.groups)

                weight, bias = params[f"{name}.weight"], params[f"{name}.bias"]
                # one model: its own convolution (vmap's grouped form costs layout copies)
                h = one(h[0], weight[0], bias[0]).unsqueeze(0) if len(h) == 1 else vmap(one)(h, weight, bias)
            elif isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
                h = batch_norm(h, params, buffers, name, layer, dropout is not None)
            elif isinstance(layer, CountedDropout):
                if dropout is not None:
                    h = h * dropout(layer, h.shape[1:], h.dtype)
            elif isinstance(layer, (nn.MaxPool1d, nn.MaxPool2d)):
                h = layer(h.flatten(0, 1)).unflatten(0, h.shape[:2])
            else:
                h = layer(h)  # an elementwise activation
        return h

