"""Users' own models for tests/test_stack_any_model.py, each a ``model.factory`` called as
``function(input_shape, n_outputs)``: mnist1d's examples of shape (1, 40), read as 10 tokens of 4
where a model takes sequences."""

import math

import torch
from torch import nn


def mlp(input_shape, n_outputs):
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), 32), nn.ReLU(), nn.Dropout(0.2),
                         nn.Linear(32, n_outputs))


class BatchNormCNN(nn.Module):
    """conv → batch norm → tanh → channel dropout → conv → batch norm → tanh → average pool → linear."""

    def __init__(self, length: int, n_outputs: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, 4, 5, padding=2, bias=False), nn.BatchNorm1d(4), nn.Tanh(), nn.Dropout1d(0.1),
            nn.Conv1d(4, 8, 5, padding=2, bias=False), nn.BatchNorm1d(8), nn.Tanh(), nn.AvgPool1d(2))
        self.head = nn.Linear(8 * (length // 2), n_outputs)

    def forward(self, x):
        return self.head(self.features(x.view(len(x), 1, -1)).flatten(1))


def cnn(input_shape, n_outputs):
    return BatchNormCNN(math.prod(input_shape), n_outputs)


class TokenTransformer(nn.Module):
    """10 tokens of 4 → width 16 → one encoder layer (dropout 0.1, attention dropout 0) → mean → linear."""

    def __init__(self, n_outputs: int):
        super().__init__()
        self.embed = nn.Linear(4, 16)
        self.encoder = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.1, batch_first=True)
        self.encoder.self_attn.dropout = 0.0
        self.head = nn.Linear(16, n_outputs)

    def forward(self, x):
        return self.head(self.encoder(self.embed(x.view(len(x), 10, 4))).mean(1))


def transformer(input_shape, n_outputs):
    return TokenTransformer(n_outputs)


class LSTMClassifier(nn.Module):
    """10 tokens of 4 → LSTM of width 16 → its last output → linear."""

    def __init__(self, n_outputs: int):
        super().__init__()
        self.lstm = nn.LSTM(4, 16, batch_first=True)
        self.head = nn.Linear(16, n_outputs)

    def forward(self, x):
        out, _ = self.lstm(x.view(len(x), 10, 4))
        return self.head(out[:, -1])


def lstm(input_shape, n_outputs):
    return LSTMClassifier(n_outputs)


class Branching(nn.Module):
    """A model that takes a branch by its data: ``vmap`` cannot stack it."""

    def __init__(self, width: int, n_outputs: int):
        super().__init__()
        self.linear = nn.Linear(width, n_outputs)

    def forward(self, x):
        x = x.flatten(1)
        if x.sum() > 0:
            return self.linear(x)
        return self.linear(torch.flip(x, [1]))


def branching(input_shape, n_outputs):
    return Branching(math.prod(input_shape), n_outputs)


class Unused(nn.Module):
    """A model with a layer its forward never uses: that layer takes no gradient."""

    def __init__(self):
        super().__init__()
        self.used, self.unused = nn.Linear(4, 2), nn.Linear(4, 2)

    def forward(self, x):
        return self.used(x)
