"""A zoo of real torch.nn models: what the default selection picks (``describe()`` asserted
exactly) and each mode's first update against the formula computed by hand."""

import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations

import reglab as rl
from reglab import L1, L2, Regularizer


class TiedTransformerLM(nn.Module):
    """A one-layer transformer LM whose head shares the embedding's matrix (GPT-2 style)."""

    def __init__(self, vocab=11, dim=8):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        layer = nn.TransformerEncoderLayer(dim, nhead=2, dim_feedforward=16, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, tokens):
        return self.head(self.encoder(self.emb(tokens)))


class RecurrentLM(nn.Module):
    def __init__(self, rnn, vocab=11, dim=6, hidden=5, **kwargs):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.rnn = rnn(dim, hidden, batch_first=True, **kwargs)
        self.head = nn.Linear(hidden * (2 if kwargs.get("bidirectional") else 1), vocab)

    def forward(self, tokens):
        return self.head(self.rnn(self.emb(tokens))[0])


def weight_normed():
    """Both weight-norm APIs: the parametrization (layer 0) and the deprecated hook (layer 2)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        old = torch.nn.utils.weight_norm(nn.Linear(6, 3))
    return nn.Sequential(parametrizations.weight_norm(nn.Linear(4, 6)), nn.Tanh(), old)


def spectral_normed():
    """Both spectral-norm APIs: the parametrization (layer 0) and the old hook (layer 2)."""
    return nn.Sequential(
        parametrizations.spectral_norm(nn.Linear(4, 6)), nn.Tanh(), torch.nn.utils.spectral_norm(nn.Linear(6, 3))
    )


TOKENS = torch.tensor([[1, 4, 2, 9, 0], [3, 3, 7, 10, 5]])
# model, an input, and the names the default selection must pick (written out by hand)
ZOO = {
    "mlp": (lambda: nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)), (5, 4), ["0.weight", "2.weight"]),
    "cnn": (
        lambda: nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(36, 3)),
        (5, 1, 5, 5),
        ["0.weight", "4.weight"],
    ),
    "transformer": (
        TiedTransformerLM,
        TOKENS,
        ["emb.weight"]
        + [f"encoder.layers.0.{n}" for n in ["self_attn.in_proj_weight", "self_attn.out_proj.weight", "linear1.weight", "linear2.weight"]],
    ),
    "lstm": (
        lambda: RecurrentLM(nn.LSTM, num_layers=2, bidirectional=True),
        TOKENS,
        [f"rnn.weight_{k}_l{i}{r}" for i in (0, 1) for r in ("", "_reverse") for k in ("ih", "hh")] + ["head.weight"],
    ),
    "gru": (lambda: RecurrentLM(nn.GRU), TOKENS, ["rnn.weight_ih_l0", "rnn.weight_hh_l0", "head.weight"]),
    "weight_norm": (weight_normed, (5, 4), ["0.parametrizations.weight.original0", "2.weight_g"]),
    "spectral_norm": (spectral_normed, (5, 4), ["0.parametrizations.weight.original", "2.weight_orig"]),
}

DESCRIBE = {
    "mlp": """\
term l2: L2(lam=0.1)  mode=coupled  schedule=constant()  on=weights()
    0.weight  (8, 4)
    2.weight  (3, 8)
    = 2 tensors, 56 values
untouched: 2 params, 11 values (2 biases)""",
    "cnn": """\
term l2: L2(lam=0.1)  mode=coupled  schedule=constant()  on=weights()
    0.weight  (4, 1, 3, 3)
    4.weight  (3, 36)
    = 2 tensors, 144 values
untouched: 4 params, 15 values (2 biases, 2 norms)""",
    "transformer": """\
term l2: L2(lam=0.1)  mode=coupled  schedule=constant()  on=weights()
    emb.weight = head.weight                    (11, 8)  shared by Embedding emb, Linear head
    encoder.layers.0.self_attn.in_proj_weight   (24, 8)
    encoder.layers.0.self_attn.out_proj.weight  (8, 8)
    encoder.layers.0.linear1.weight             (16, 8)
    encoder.layers.0.linear2.weight             (8, 16)
    = 5 tensors, 600 values
untouched: 8 params, 88 values (4 biases, 4 norms)""",
    "lstm": """\
term l2: L2(lam=0.1)  mode=coupled  schedule=constant()  on=weights()
    rnn.weight_ih_l0          (20, 6)
    rnn.weight_hh_l0          (20, 5)
    rnn.weight_ih_l0_reverse  (20, 6)
    rnn.weight_hh_l0_reverse  (20, 5)
    rnn.weight_ih_l1          (20, 10)
    rnn.weight_hh_l1          (20, 5)
    rnn.weight_ih_l1_reverse  (20, 10)
    rnn.weight_hh_l1_reverse  (20, 5)
    head.weight               (11, 10)
    = 9 tensors, 1,150 values
untouched: 10 params, 237 values (1 embedding, 9 biases)""",
    "gru": """\
term l2: L2(lam=0.1)  mode=coupled  schedule=constant()  on=weights()
    rnn.weight_ih_l0  (15, 6)
    rnn.weight_hh_l0  (15, 5)
    head.weight       (11, 5)
    = 3 tensors, 220 values
untouched: 4 params, 107 values (1 embedding, 3 biases)""",
    "weight_norm": """\
term l2: L2(lam=0.1)  mode=coupled  schedule=constant()  on=weights()
    0.parametrizations.weight.original0  (6, 1)
    2.weight_g                           (3, 1)
    = 2 tensors, 9 values
untouched: 4 params, 51 values (2 biases, 2 other)""",
    "spectral_norm": """\
term l2: L2(lam=0.1)  mode=coupled  schedule=constant()  on=weights()
    0.parametrizations.weight.original  (6, 4)
    2.weight_orig                       (3, 6)
    = 2 tensors, 42 values
untouched: 2 params, 9 values (2 biases)""",
}
HEADER = (
    "default selection weights(): every weight matrix or kernel of a layer that computes with it "
    "(Linear, Bilinear, Conv, ConvTranspose weight; MultiheadAttention in_proj_weight, "
    "q/k/v_proj_weight; RNN/LSTM/GRU weight_ih, weight_hh); not biases, norms, embeddings\n"
)


def build(kind):
    make, shape, _ = ZOO[kind]
    torch.manual_seed(0)
    model = make().double()
    if isinstance(shape, torch.Tensor):
        return model, shape
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return model, x


@pytest.mark.parametrize("kind", ZOO)
def test_describe(kind):
    model, _ = build(kind)
    assert Regularizer(model, L2(0.1)).describe() == HEADER + DESCRIBE[kind]
    assert [n for n, _ in rl.weights().resolve(model)] == ZOO[kind][2]


def loss_of(model, x):
    out = model(x)
    target = torch.randn(out.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    return (out - target).pow(2).mean()


LR, LAM, EPS = 0.1, 0.3, 1e-8


def by_hand(mode, w, g):
    """One step on a selected tensor w with data gradient g (SGD for coupled and proximal, the
    first Adam step for decoupled: Adam's first update is lr·g/(|g| + eps))."""
    if mode == "coupled":  # SGD on data loss + λ/2‖w‖²
        return w - LR * (g + LAM * w)
    if mode == "decoupled":  # w·(1 − lr·λ), then Adam with the data gradient
        return w * (1 - LR * LAM) - LR * g / (g.abs() + EPS)
    z = w - LR * g  # proximal L1: SGD, then soft-threshold at lr·λ
    return torch.sign(z) * (z.abs() - LR * LAM).clamp_min(0)


def plain(mode, w, g):
    return w - LR * g / (g.abs() + EPS) if mode == "decoupled" else w - LR * g


@pytest.mark.parametrize("mode", ["coupled", "decoupled", "proximal"])
@pytest.mark.parametrize("kind", ZOO)
def test_first_update_of_each_mode_by_hand(kind, mode):
    model, x = build(kind)
    reference, _ = build(kind)  # built again: the old weight_norm API cannot be deep-copied
    penalty = L1(LAM) if mode == "proximal" else L2(LAM)
    reg = Regularizer(model, penalty, mode=mode)
    opt_class = torch.optim.Adam if mode == "decoupled" else torch.optim.SGD
    opt = reg.attach(opt_class(model.parameters(), lr=LR))
    opt.zero_grad()
    loss_of(model, x).backward()
    opt.step()

    loss_of(reference, x).backward()
    selected = set(ZOO[kind][2])
    after = {n: p for n, p in model.named_parameters()}
    moved = 0
    with torch.no_grad():
        for n, p in reference.named_parameters():  # the tied tensor appears once, as emb.weight
            expected = (by_hand if n in selected else plain)(mode, p, p.grad)
            torch.testing.assert_close(after[n], expected, atol=1e-12, rtol=0, msg=f"{kind} {mode} {n}")
            moved += n in selected and not torch.allclose(expected, plain(mode, p, p.grad))
    assert moved == len(selected)  # the penalty changed every selected tensor's update


def test_weight_norm_l2_on_g_is_l2_on_the_effective_weight():
    model, x = build("weight_norm")
    model(x)  # the old API computes .weight in a forward pre-hook
    w0, w2 = model[0].weight, model[2].weight
    expected = 0.5 * LAM * (w0.pow(2).sum() + w2.pow(2).sum())
    assert Regularizer(model, L2(LAM)).values()["l2"] == pytest.approx(expected.item(), rel=1e-12)
    # and it does not depend on the scale of v
    with torch.no_grad():
        model[0].parametrizations.weight.original1.mul_(7.0)
        model[2].weight_v.mul_(0.1)
    torch.testing.assert_close(model[0].weight, w0)
    assert Regularizer(model, L2(LAM)).values()["l2"] == pytest.approx(expected.item(), rel=1e-12)
