"""``nn.LSTM``'s forward written with the operations ``vmap`` batches, for the functional stacked
backend (:mod:`reglab.train.functional_net`): torch's fused ``aten::lstm`` has no batching rule.

At time step t, for each layer (and direction), with the layer's input x_t and its state (h, c):

    (i, f, g, o) = x_t·W_ihᵀ + b_ih + h·W_hhᵀ + b_hh   (four chunks of the hidden size),
    c ← σ(f)·c + σ(i)·tanh(g),   h ← σ(o)·tanh(c),

the backward direction running over t in reverse and its outputs laid after the forward one's, as
torch documents ``nn.LSTM``. The numbers equal torch's to float rounding (its kernel adds in
another order).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class GatedLSTM(nn.Module):
    """``nn.LSTM``'s math on the same parameter names (``weight_ih_l0``, ``bias_hh_l0_reverse``, …),
    so that ``torch.func.functional_call`` takes the stacked ones; inputs (N, T, F) or (T, N, F) by
    ``batch_first``, or unbatched (T, F), and an optional initial state (h₀, c₀)."""

    def __init__(self, lstm: nn.LSTM):
        super().__init__()
        if lstm.proj_size:
            raise ValueError("nn.LSTM with proj_size has no stacked form")
        if lstm.dropout and lstm.num_layers > 1:
            raise ValueError(f"nn.LSTM's dropout={lstm.dropout} between layers draws from torch's own generator")
        self.num_layers, self.batch_first, self.bias = lstm.num_layers, lstm.batch_first, lstm.bias
        self.directions = 2 if lstm.bidirectional else 1
        for name, p in lstm.named_parameters():
            self.register_parameter(name, p)

    def suffix(self, layer: int, direction: int) -> str:
        return f"_l{layer}" + ("_reverse" if direction else "")

    def forward(self, x: Tensor, hx: tuple[Tensor, Tensor] | None = None):
        unbatched = x.dim() == 2
        if unbatched:
            x = x.unsqueeze(1)
        elif self.batch_first:
            x = x.transpose(0, 1)  # (T, N, F)
        if hx is not None and unbatched:
            hx = (hx[0].unsqueeze(1), hx[1].unsqueeze(1))
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(self.directions):
                k = layer * self.directions + direction
                state = None if hx is None else (hx[0][k], hx[1][k])
                out, (h, c) = self.run(x, layer, direction, state)
                outputs.append(out)
                h_n.append(h)
                c_n.append(c)
            x = torch.cat(outputs, 2)
        state = (torch.stack(h_n), torch.stack(c_n))
        if unbatched:
            return x.squeeze(1), (state[0].squeeze(1), state[1].squeeze(1))
        return (x.transpose(0, 1) if self.batch_first else x), state

    def run(self, x: Tensor, layer: int, direction: int, state: tuple[Tensor, Tensor] | None):
        """One layer in one direction over inputs (T, N, F): its outputs (T, N, H) and last state."""
        suffix = self.suffix(layer, direction)
        w_ih, w_hh = getattr(self, f"weight_ih{suffix}"), getattr(self, f"weight_hh{suffix}")
        gates_x = x @ w_ih.T
        if self.bias:
            gates_x = gates_x + getattr(self, f"bias_ih{suffix}") + getattr(self, f"bias_hh{suffix}")
        hidden = w_hh.shape[1]
        if state is None:
            zeros = gates_x.new_zeros(x.shape[1], hidden)
            state = (zeros, zeros)
        h, c = state
        steps = range(len(x) - 1, -1, -1) if direction else range(len(x))
        outputs: list[Tensor | None] = [None] * len(x)
        for t in steps:
            i, f, g, o = (gates_x[t] + h @ w_hh.T).chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outputs[t] = h
        return torch.stack(outputs), (h, c)
