"""Which parameters a selection picks."""

import pytest
import torch
from torch import nn

import reglab as rl
from reglab import UserError, selection_from_string


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.conv = nn.Conv2d(1, 3, 3)
        self.bn = nn.BatchNorm2d(3)
        self.gn = nn.GroupNorm(1, 3)
        self.fc = nn.Linear(12, 6)
        self.ln = nn.LayerNorm(6)
        self.fc2 = nn.Linear(6, 6, bias=False)
        self.head = nn.Linear(6, 2)


def names(sel, model):
    return [n for n, _ in sel.resolve(model)]


ALL = [n for n, _ in Net().named_parameters()]


def test_default_rule_is_weights_of_linear_and_conv_only():
    m = Net()
    assert names(rl.weights(), m) == ["conv.weight", "fc.weight", "fc2.weight", "head.weight"]
    assert names(rl.biases(), m) == ["conv.bias", "bn.bias", "gn.bias", "fc.bias", "ln.bias", "head.bias"]
    assert names(rl.norms(), m) == ["bn.weight", "bn.bias", "gn.weight", "gn.bias", "ln.weight", "ln.bias"]
    assert names(rl.embeddings(), m) == ["emb.weight"]
    assert names(rl.everything(), m) == ALL


def test_other_weight_layers():
    m = nn.Sequential(nn.Bilinear(2, 3, 4), nn.ConvTranspose2d(4, 2, 3), nn.Conv1d(2, 2, 1), nn.InstanceNorm1d(2, affine=True))
    assert names(rl.weights(), m) == ["0.weight", "1.weight", "2.weight"]
    assert names(rl.norms(), m) == ["3.weight", "3.bias"]


def test_named_and_modules():
    m = Net()
    assert names(rl.named("head.*"), m) == ["head.weight", "head.bias"]
    assert names(rl.named("fc*.weight", "conv.bias"), m) == ["conv.bias", "fc.weight", "fc2.weight"]
    assert names(rl.modules(nn.Conv2d), m) == ["conv.weight", "conv.bias"]
    assert names(rl.modules(nn.Linear, param="bias"), m) == ["fc.bias", "head.bias"]
    assert names(rl.modules(nn.BatchNorm2d, nn.LayerNorm, param="weight"), m) == ["bn.weight", "ln.weight"]


def test_set_algebra_matches_python_sets_and_keeps_model_order():
    m = Net()
    sels = [rl.weights(), rl.biases(), rl.norms(), rl.named("head.*"), rl.modules(nn.Conv2d)]
    for a in sels:
        for b in sels:
            A, B = set(names(a, m)), set(names(b, m))
            for sel, expected in [(a | b, A | B), (a & b, A & B), (a - b, A - B)]:
                got = names(sel, m)
                assert set(got) == expected
                assert len(got) == len(set(got))
                assert got == [n for n in ALL if n in expected]


def test_reprs_are_readable_and_respect_precedence():
    assert repr(rl.weights() - rl.named("head.*")) == "weights() - named('head.*')"
    assert repr((rl.weights() | rl.biases()) - rl.norms()) == "(weights() | biases()) - norms()"
    assert repr(rl.weights() - (rl.named("a") - rl.named("b"))) == "weights() - (named('a') - named('b'))"
    assert repr(rl.weights() | rl.biases() & rl.norms()) == "weights() | biases() & norms()"
    assert repr(rl.modules(nn.Conv2d, param="weight")) == "modules(Conv2d, param='weight')"
    assert (rl.weights() - rl.named("head.*")).label == "weights - head.*"


@pytest.mark.parametrize(
    "text,expected",
    [
        ("weights", rl.weights()),
        ("all", rl.everything()),
        ("everything", rl.everything()),
        ("biases", rl.biases()),
        ("fc*.weight", rl.named("fc*.weight")),
        ("weights - head.*", rl.weights() - rl.named("head.*")),
        ("weights | biases & norms", rl.weights() | (rl.biases() & rl.norms())),
        ("(weights | biases) - head.* - conv.*", ((rl.weights() | rl.biases()) - rl.named("head.*")) - rl.named("conv.*")),
        ("type:Conv2d", rl.modules(nn.Conv2d)),
        ("type:Linear.bias", rl.modules(nn.Linear, param="bias")),
    ],
)
def test_selection_from_string(text, expected):
    m = Net()
    sel = selection_from_string(text)
    assert names(sel, m) == names(expected, m)
    assert repr(sel) == repr(expected)
    assert names(selection_from_string(sel.label), m) == names(sel, m)  # the label parses back


def test_minus_inside_a_name_stays_a_name():
    m = nn.ModuleDict({"block-1": nn.Linear(2, 2), "block-2": nn.Linear(2, 2)})
    assert names(selection_from_string("weights - block-1.*"), m) == ["block-2.weight"]


@pytest.mark.parametrize("text", ["", "   ", "weights -", "(weights", "weights biases", "type:Nope", "| weights", "weights )"])
def test_bad_selection_strings_are_user_errors(text):
    with pytest.raises(UserError):
        selection_from_string(text)


def test_bad_arguments():
    with pytest.raises(UserError):
        rl.named()
    with pytest.raises(UserError):
        rl.modules("Conv2d")
    with pytest.raises(TypeError):
        rl.weights() | "biases"


def test_tied_weights_appear_once():
    emb, head = nn.Embedding(5, 3), nn.Linear(3, 5, bias=False)
    head.weight = emb.weight
    m = nn.ModuleDict({"emb": emb, "head": head})
    assert names(rl.weights(), m) == ["emb.weight"]  # selected through the Linear that shares it
    assert names(rl.everything() | rl.weights(), m) == ["emb.weight"]


def test_parametrized_weight_is_selected_through_its_original():
    m = nn.Sequential(nn.utils.parametrizations.spectral_norm(nn.Linear(3, 3)), nn.Linear(3, 1))
    assert names(rl.weights(), m) == ["0.parametrizations.weight.original", "1.weight"]
    old = nn.Sequential(nn.utils.spectral_norm(nn.Linear(3, 3)))
    assert names(rl.weights(), old) == ["0.weight_orig"]
    assert names(rl.biases(), m) == ["0.bias", "1.bias"]


def test_resolve_returns_the_parameters_themselves():
    m = Net()
    ((n, p),) = rl.named("head.weight").resolve(m)
    assert p is m.head.weight and isinstance(p, torch.nn.Parameter)


def test_attention_and_recurrent_weights_are_in_the_default():
    m = nn.ModuleDict({
        "attn": nn.MultiheadAttention(4, 2),
        "cross": nn.MultiheadAttention(4, 2, kdim=3, vdim=5),  # separate q/k/v projections
        "lstm": nn.LSTM(3, 4, proj_size=2),
        "cell": nn.GRUCell(3, 4),
    })  # fmt: skip
    assert names(rl.weights(), m) == [
        "attn.in_proj_weight", "attn.out_proj.weight",
        "cross.q_proj_weight", "cross.k_proj_weight", "cross.v_proj_weight", "cross.out_proj.weight",
        "lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.weight_hr_l0",
        "cell.weight_ih", "cell.weight_hh",
    ]  # fmt: skip
    assert names(rl.biases(), m) == [
        "attn.in_proj_bias", "attn.out_proj.bias", "cross.in_proj_bias", "cross.out_proj.bias",
        "lstm.bias_ih_l0", "lstm.bias_hh_l0", "cell.bias_ih", "cell.bias_hh",
    ]  # fmt: skip
    assert names(rl.weights(), nn.LSTM(3, 4)) == ["weight_ih_l0", "weight_hh_l0"]
    rl.Regularizer(nn.LSTM(3, 4), rl.L2(1e-4))  # used to raise "selects no parameter"


def test_weight_norm_is_selected_through_g_with_both_apis():
    new = nn.Sequential(nn.utils.parametrizations.weight_norm(nn.Linear(3, 3)))
    assert names(rl.weights(), new) == ["0.parametrizations.weight.original0"]
    with pytest.warns(FutureWarning):
        old = nn.Sequential(nn.utils.weight_norm(nn.Conv1d(2, 3, 3)))
    assert names(rl.weights(), old) == ["0.weight_g"]
    assert names(rl.modules(nn.Conv1d, param="weight"), old) == ["0.weight_g"]
    assert names(rl.biases(), old) == ["0.bias"]


def test_readme_group_lasso_example_touches_conv_kernels_only():
    m = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Flatten(), nn.Linear(4, 2))
    assert names(rl.modules(nn.Conv2d, param="weight"), m) == ["0.weight", "2.weight"]
    assert names(rl.weights() & rl.modules(nn.Conv2d), m) == ["0.weight", "2.weight"]


def test_a_module_registered_under_two_names_keeps_both_names():
    shared = nn.Linear(2, 2)
    m = nn.Module()
    m.a, m.b = shared, shared
    assert [n for n, _, _ in rl.selection.named_parameters(m)] == ["a.weight", "a.bias", "b.weight", "b.bias"]
    assert names(rl.named("b.weight"), m) == ["a.weight"]  # one tensor, listed under its first name
