"""The forward pass of M models of any one ``nn.Module`` architecture on stacked parameters, for
the stacked backend (:mod:`reglab.train.stacked`): ``torch.func.functional_call`` under ``vmap`` over
the model dimension, and the check that a model stacks (:func:`stack_problem`).

Model m's outputs are ``functional_call(template, (params[m], buffers[m]), x[m])``, all M at once.
The template is a copy of the model with four layers in a form ``vmap`` takes:

* ``nn.Linear`` (with a bias) is :class:`AddmmLinear`, whose products add in the order of the
  model's own, so that a stacked linear layer gives each model its own numbers bit for bit;

* its counter-based dropout (``reglab.models.dropout``; a user's ``nn.Dropout`` layers are swapped
  for it when the model is built) multiplies by model m's own mask, drawn for all models in one
  call outside ``vmap`` and picked by the model's index;
* batch normalization uses and updates each model's own running statistics in place (its buffers
  are stacked ``[M, C]`` like its parameters, and ``vmap`` updates row m from model m's batch);
* ``nn.LSTM`` runs as :class:`~reglab.train.gated_lstm.GatedLSTM` (``aten::lstm`` has no batching
  rule).

Attention runs by torch's math kernel of ``scaled_dot_product_attention``, with the fused fast path
of ``nn.TransformerEncoderLayer`` off (:func:`batchable_kernels`): ``vmap`` batches the math kernel,
where for the fused ones it would loop over the models.

What ``vmap`` refuses (data-dependent control flow such as ``if x.sum() > 0``, ``.item()``, torch's
own random numbers such as ``nn.MultiheadAttention``'s attention dropout) and what gives another
result stacked than alone is found by :func:`stack_problem` on a small batch before training.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

from reglab.models.build import first_line
from reglab.models.dropout import CountedDropout, dropout_masks
from reglab.train.batched_net import BatchedLinear
from reglab.train.gated_lstm import GatedLSTM

Masks = Callable[[CountedDropout, torch.Size, torch.dtype], Tensor]
"""``masks(layer, shape, dtype)``: every model's scaled dropout masks for ``layer``, [M, *shape]."""

RTOL = 1e-4
"""How far (relative to the largest value) stacked and alone may differ in :func:`stack_problem`:
kernels that add in another order differ by float rounding, a model that does not stack by far more."""


class AddmmLinear(torch.autograd.Function):
    """h·Wᵀ + b for 2-D h, as ``nn.Linear`` computes it (``addmm``); under ``vmap`` it is
    :class:`~reglab.train.batched_net.BatchedLinear` on the models' rows (``baddbmm``, and the
    backward ∂h = g·W, ∂W = gᵀ·h, ∂b = Σ_batch g per model), which adds in the order of the single
    model's own forward and backward (``vmap`` of ``F.linear`` adds the bias after the product and
    lays the weight's gradient out the other way)."""

    @staticmethod
    def forward(h: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        return torch.addmm(bias, h, weight.T)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(inputs[0], inputs[1])

    @staticmethod
    def backward(ctx, g: Tensor):
        h, weight = ctx.saved_tensors
        return g @ weight if ctx.needs_input_grad[0] else None, g.T @ h, g.sum(0)

    @staticmethod
    def vmap(info, in_dims, h: Tensor, weight: Tensor, bias: Tensor):
        rows = [t.movedim(d, 0) if d is not None else t.expand(info.batch_size, *t.shape)
                for t, d in zip((h, weight, bias), in_dims)]
        return BatchedLinear.apply(*rows), 0


class StackedLinear(nn.Module):
    """An ``nn.Linear`` of the template: :class:`AddmmLinear` on the inputs' rows (all leading
    dimensions as one, as ``nn.Linear`` folds them); without a bias, ``F.linear``."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.weight, self.bias = linear.weight, linear.bias

    def forward(self, x: Tensor) -> Tensor:
        if self.bias is None:
            return F.linear(x, self.weight)
        out = AddmmLinear.apply(x.reshape(-1, x.shape[-1]), self.weight, self.bias)
        return out.view(*x.shape[:-1], out.shape[-1])


class StackedDropout(nn.Module):
    """A :class:`CountedDropout` of the template: model m's mask is row m of the masks of all models."""

    def __init__(self, counted: CountedDropout, net: FunctionalNet):
        super().__init__()
        self.counted, self.net = counted, net

    def forward(self, x: Tensor) -> Tensor:
        net = self.net
        if not self.training or self.counted.p == 0 or net.masks is None:
            return x
        masks = net.masks(self.counted, self.counted.mask_shape(x.shape), x.dtype)
        return x * masks[net.index]


def template_of(model: nn.Module, net: FunctionalNet) -> nn.Module:
    """A copy of ``model`` whose linear, dropout and LSTM layers take their stacked form (module docstring);
    a layer with no stacked form raises ValueError."""
    attention = [f"{name} (dropout={m.dropout})" for name, m in model.named_modules()
                 if isinstance(m, nn.MultiheadAttention) and m.dropout > 0]
    if attention:
        raise ValueError(f"the attention dropout of nn.MultiheadAttention {attention[0]} draws from torch's "
                         "own generator: set it to 0 to stack the model")
    template = copy.deepcopy(model)
    for parent in list(template.modules()):
        for name, child in parent.named_children():
            setattr(parent, name, stacked_form(child, net))
    return stacked_form(template, net)


def stacked_form(module: nn.Module, net: FunctionalNet) -> nn.Module:
    """The template's form of one layer: itself, or its stacked form (module docstring)."""
    if isinstance(module, CountedDropout):
        return StackedDropout(module, net)
    if type(module) is nn.LSTM:
        return GatedLSTM(module)
    if type(module) is nn.Linear:
        return StackedLinear(module)
    return module


class FunctionalNet:
    """The forward pass of M models of ``model``'s architecture: stacked parameters and buffers
    ``{name: [M, ...]}`` and inputs ``[M, B, ...]`` give outputs ``[M, B, ...]``."""

    def __init__(self, model: nn.Module):
        self.masks: Masks | None = None
        self.index: Tensor | None = None  # inside vmap: the model's row
        self.template = template_of(model, self)

    def __call__(self, params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor,
                 masks: Masks | None = None) -> Tensor:
        """Training mode when ``masks`` is given (dropout by them, batch normalization by each
        model's batch statistics, updating its running ones); None means eval mode."""
        self.template.train(masks is not None)

        def one(p: dict[str, Tensor], b: dict[str, Tensor], index: Tensor, xm: Tensor) -> Tensor:
            self.index = index
            return functional_call(self.template, (p, b), (xm,))

        self.masks = masks
        try:
            with batchable_kernels():
                return vmap(one)(params, buffers, torch.arange(len(x), device=x.device), x)
        finally:
            self.masks, self.index = None, None


@contextmanager
def batchable_kernels() -> Iterator[None]:
    """Attention by the math kernel, and ``nn.TransformerEncoderLayer``'s fused fast path off, while
    inside; the previous setting is restored after."""
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


def stack_problem(model: nn.Module, x: Tensor) -> str | None:
    """Why ``model`` does not stack, or None: two copies of it stacked must give on the example
    batch ``x`` what each gives alone (training-mode outputs, gradients of their sum and running
    statistics; eval-mode outputs) to :data:`RTOL`; a parameter that takes no gradient (unused,
    or frozen) does not stack. ``model`` itself is left as it is."""
    try:
        net = FunctionalNet(model)
        copies = [copy.deepcopy(model).train() for _ in range(2)]
        params, buffers = stack_module_state(copies)

        def masks(layer: CountedDropout, shape: torch.Size, dtype: torch.dtype) -> Tensor:
            seeds = torch.full((2,), layer.seed, dtype=torch.int32, device=x.device)
            keep = torch.full((2,), 1 - layer.p, dtype=torch.float64, device=x.device)
            return dropout_masks(seeds, layer.step, layer.layer, shape, keep, dtype)

        inputs = x.expand(2, *x.shape)
        stacked = net(params, buffers, inputs, masks)
        grads = torch.autograd.grad(stacked.sum(), list(params.values()), allow_unused=True)
        with torch.no_grad():
            stacked_eval = net(params, buffers, inputs)
        alone, alone_eval = [], []
        for one in copies:
            out = one(x)
            out.sum().backward()
            alone.append(out.detach())
            with torch.no_grad():
                alone_eval.append(one.eval()(x))
    except Exception as exc:  # whatever vmap or the stacked forward refuses
        return f"it cannot be stacked ({first_line(exc).split('. ')[0]})"
    unused = [name for name, g in zip(params, grads) if g is None]
    if unused:  # the stacked step differentiates every parameter
        return f"its parameter {unused[0]} takes no gradient (it is not used)"
    pairs = [("outputs", stacked, torch.stack(alone)), ("outputs in eval mode", stacked_eval, torch.stack(alone_eval))]
    for (name, p), g in zip(params.items(), grads):
        own = [dict(c.named_parameters())[name].grad for c in copies]
        pairs.append((f"the gradient of {name}", g, torch.stack(own)))
    pairs += [(name, b, torch.stack([dict(c.named_buffers())[name] for c in copies])) for name, b in buffers.items()]
    for what, a, b in pairs:
        if a.shape != b.shape or not close(a.detach(), b):
            return f"stacked, its {what} differ from the model's own"
    return None


def close(a: Tensor, b: Tensor) -> bool:
    """Equal to :data:`RTOL` of the largest magnitude (NaN where both are NaN)."""
    if not a.is_floating_point():
        return torch.equal(a, b)
    scale = float(b.abs().nan_to_num().max()) if b.numel() else 0.0
    return torch.allclose(a.double(), b.double(), rtol=0, atol=RTOL * (1 + scale), equal_nan=True)
