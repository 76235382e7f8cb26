"""Every relevance registry name, by value, against a layer-by-layer numpy LRP.

The network (:func:`helpers.lrp_net`) has a Conv2D with bias and a BatchNormalization
right after it (folded), max pooling, a ReLU, two branches (a fused-ReLU Conv2D followed
by a BatchNormalization that is a linear layer under the rule, and a 1x1 Conv2D) joined
by ``Add``, average pooling, Flatten, Dense(ReLU) and Dense. The expected relevance is
:func:`helpers.lrp_net_reference`: the network unrolled into explicit matrices, each
rule's formula written in numpy (float64), composed layer by layer. It never calls
keras_explain.

For each registry name the table below writes, by hand, the rule every linear layer
must get, as the literal repr ``rule_of`` returns; the reference rule is built from
that literal text (:func:`helpers.ref_from_repr`), so the table pins both the rule
assignment and the values. Every name is checked at its default parameters and, where
it has any, with non-default parameters passed through (``epsilon=``, ``gamma=``,
``low``/``high``, α from β); a non-default case must change the expected value, so a
parameter that is silently dropped fails the test.
"""

import helpers
import numpy as np
import pytest

import keras_explain as kx
from keras_explain import composites, rules

RELEVANCE_NAMES = sorted(n for n in kx.analyzers.names() if n.startswith(("lrp", "deep_taylor")))

Z = "Z()"
EPS7 = "Epsilon(epsilon=1e-07)"
EPS01 = "Epsilon(epsilon=0.1)"
EPS05 = "Epsilon(epsilon=0.5)"
AB10 = "AlphaBeta(alpha=1, beta=0, bias=True, epsilon=1e-07)"
AB21 = "AlphaBeta(alpha=2, beta=1, bias=True, epsilon=1e-07)"
ZPLUS = "ZPlus(epsilon=1e-07)"
FLAT = "Flat(epsilon=1e-07)"
GAMMA = "Gamma(gamma=0.25, epsilon=1e-07)"
BOX01 = "ZBox(low=0.0, high=1.0, epsilon=1e-07)"
BOX11 = "ZBox(low=-1.0, high=1.0, epsilon=1e-07)"
WSQUARE = "WSquare(epsilon=1e-07)"


def layout(first, conv, dense, batch_norm=None):
    """Expected rule repr of each linear layer of lrp_net.

    ``first`` is conv1 (the only first linear layer; bn_fold is folded into it),
    ``conv`` conv2 and conv3, ``dense`` dense1, logits and (unless given) bn_linear,
    a BatchNormalization that is not folded: "other linear ops" in the presets.
    """
    return {
        "conv1": first,
        "conv2": conv,
        "conv3": conv,
        "bn_linear": dense if batch_norm is None else batch_norm,
        "dense1": dense,
        "logits": dense,
    }


def uniform(rule):
    return layout(rule, rule, rule)


USER_COMPOSITE = composites.Composite(
    [
        ("conv", rules.Gamma(0.6)),
        ("dense", rules.Epsilon(0.2)),
        ("batch_norm", rules.AlphaBeta(2, 1)),
    ],
    first=rules.WSquare(),
)

# (name, keyword arguments, expected rule per linear layer). Defaults first.
DEFAULTS = [
    ("lrp", {}, uniform(EPS7)),
    ("lrp.z", {}, uniform(Z)),
    ("lrp.epsilon", {}, uniform(EPS7)),
    ("lrp.w_square", {}, uniform(WSQUARE)),
    ("lrp.flat", {}, uniform(FLAT)),
    ("lrp.gamma", {}, uniform(GAMMA)),
    ("lrp.alpha_beta", {}, uniform("AlphaBeta(alpha=1.0, beta=0.0, bias=True, epsilon=1e-07)")),
    ("lrp.alpha_2_beta_1", {}, uniform(AB21)),
    ("lrp.alpha_2_beta_1_IB", {}, uniform("AlphaBeta(alpha=2, beta=1, bias=False, epsilon=1e-07)")),
    ("lrp.alpha_1_beta_0", {}, uniform(AB10)),
    ("lrp.alpha_1_beta_0_IB", {}, uniform("AlphaBeta(alpha=1, beta=0, bias=False, epsilon=1e-07)")),
    ("lrp.z_plus", {}, uniform(ZPLUS)),
    ("lrp.z_plus_fast", {}, uniform("ZPlusFast(epsilon=1e-07)")),
    ("lrp.sequential_preset_a", {}, layout(AB10, AB10, EPS01)),
    ("lrp.sequential_preset_b", {}, layout(AB21, AB21, EPS01)),
    ("lrp.sequential_preset_a_flat", {}, layout(FLAT, AB10, EPS01)),
    ("lrp.sequential_preset_b_flat", {}, layout(FLAT, AB21, EPS01)),
    ("lrp.epsilon_plus", {}, layout(AB10, AB10, EPS7)),
    ("lrp.epsilon_plus_flat", {}, layout(FLAT, AB10, EPS7)),
    ("lrp.epsilon_alpha_2_beta_1", {}, layout(AB21, AB21, EPS7)),
    ("lrp.epsilon_gamma_box", {}, layout(BOX01, GAMMA, EPS7)),
    ("deep_taylor", {}, uniform(ZPLUS)),
    ("deep_taylor.bounded", {}, layout(BOX01, ZPLUS, ZPLUS)),
]
PASSED_THROUGH = [
    (
        "lrp",
        {"composite": USER_COMPOSITE},
        layout(WSQUARE, "Gamma(gamma=0.6, epsilon=1e-07)", "Epsilon(epsilon=0.2)", AB21),
    ),
    ("lrp", {"composite": "deep_taylor"}, uniform(ZPLUS)),
    ("lrp.epsilon", {"epsilon": 0.5}, uniform(EPS05)),
    ("lrp.gamma", {"gamma": 0.7, "epsilon": 0.1}, uniform("Gamma(gamma=0.7, epsilon=0.1)")),
    (
        "lrp.alpha_beta",
        {"alpha": 3},
        uniform("AlphaBeta(alpha=3, beta=2, bias=True, epsilon=1e-07)"),
    ),
    ("lrp.alpha_beta", {"beta": 1}, uniform(AB21)),  # alpha = beta + 1
    (
        "lrp.alpha_beta",
        {"alpha": 2, "beta": 1, "bias": False, "epsilon": 0.1},
        uniform("AlphaBeta(alpha=2, beta=1, bias=False, epsilon=0.1)"),
    ),
    (
        "lrp.alpha_2_beta_1",
        {"bias": False, "epsilon": 0.1},
        uniform("AlphaBeta(alpha=2, beta=1, bias=False, epsilon=0.1)"),
    ),
    (
        "lrp.alpha_2_beta_1_IB",
        {"epsilon": 0.1},
        uniform("AlphaBeta(alpha=2, beta=1, bias=False, epsilon=0.1)"),
    ),
    (
        "lrp.alpha_1_beta_0",
        {"bias": False, "epsilon": 0.1},
        uniform("AlphaBeta(alpha=1, beta=0, bias=False, epsilon=0.1)"),
    ),
    (
        "lrp.alpha_1_beta_0_IB",
        {"epsilon": 0.1},
        uniform("AlphaBeta(alpha=1, beta=0, bias=False, epsilon=0.1)"),
    ),
    ("lrp.z_plus", {"epsilon": 0.1}, uniform("ZPlus(epsilon=0.1)")),
    ("lrp.z_plus_fast", {"epsilon": 0.1}, uniform("ZPlusFast(epsilon=0.1)")),
    ("lrp.sequential_preset_a", {"epsilon": 0.5}, layout(AB10, AB10, EPS05)),
    ("lrp.sequential_preset_b", {"epsilon": 0.5}, layout(AB21, AB21, EPS05)),
    ("lrp.sequential_preset_a_flat", {"epsilon": 0.5}, layout(FLAT, AB10, EPS05)),
    ("lrp.sequential_preset_b_flat", {"epsilon": 0.5}, layout(FLAT, AB21, EPS05)),
    ("lrp.epsilon_plus", {"epsilon": 0.5}, layout(AB10, AB10, EPS05)),
    ("lrp.epsilon_plus_flat", {"epsilon": 0.5}, layout(FLAT, AB10, EPS05)),
    ("lrp.epsilon_alpha_2_beta_1", {"epsilon": 0.5}, layout(AB21, AB21, EPS05)),
    (
        "lrp.epsilon_gamma_box",
        {"low": -1.0, "high": 1.0, "gamma": 0.6, "epsilon": 0.5},
        layout(BOX11, "Gamma(gamma=0.6, epsilon=1e-07)", EPS05),
    ),
    ("deep_taylor.bounded", {"low": -1.0, "high": 1.0}, layout(BOX11, ZPLUS, ZPLUS)),
]
WITHOUT_PARAMETERS = ["lrp.z", "lrp.w_square", "lrp.flat", "deep_taylor"]
CASES = [(*case, "default") for case in DEFAULTS] + [(*case, "passed") for case in PASSED_THROUGH]
TARGET = np.array([0, 1, 2, 1])
DEFAULTS_BY_NAME = {name: expected for name, _, expected in DEFAULTS}


def case_id(case):
    name, kwargs, _, _ = case
    return name + ("" if not kwargs else "[" + ",".join(sorted(kwargs)) + "]")


@pytest.fixture(scope="module")
def net():
    return helpers.lrp_net()


def inputs(kind):
    """Defaults run on [0, 1] inputs (the default ZBox bounds hold); passed-through
    parameters on signed inputs in [-1, 1] (the first layer's x⁻ terms run)."""
    low = 0.0 if kind == "default" else -1.0
    return np.random.default_rng(1).uniform(low, 1.0, (4, 8, 8, 2)).astype("float32")


def reference(model, x, expected_layout):
    """The numpy relevance and logits, checked to be insensitive to round-off.

    float32 arithmetic perturbs every sum by about 1e-7 of its terms' magnitude; where
    a denominator nearly cancels, that is amplified. The fixture must be robust: a
    relative perturbation of the input ten times larger than float32 round-off (1e-6)
    may move the reference by at most 1e-5 of its scale, a tenth of the 1e-4
    tolerance. A wrong formula (a dropped bias part, a wrong parameter) moves the
    result by far more.
    """
    rules_by_layer = {name: helpers.ref_from_repr(text) for name, text in expected_layout.items()}
    relevance, logits = helpers.lrp_net_reference(model, x, TARGET, rules_by_layer)
    jitter = 1 + 1e-6 * np.random.default_rng(3).uniform(-1, 1, x.shape)
    moved, _ = helpers.lrp_net_reference(model, x * jitter, TARGET, rules_by_layer)
    sensitivity = np.abs(moved - relevance).max() / np.abs(relevance).max()
    assert sensitivity < 1e-5, f"ill-conditioned fixture: {sensitivity:.1e}"
    return relevance, logits


def test_the_table_covers_every_relevance_name_at_defaults_and_with_its_parameters():
    assert len(RELEVANCE_NAMES) == 23
    assert sorted(name for name, _, _ in DEFAULTS) == RELEVANCE_NAMES
    with_parameters = {name for name, _, _ in PASSED_THROUGH}
    assert with_parameters == set(RELEVANCE_NAMES) - set(WITHOUT_PARAMETERS)


def test_reference_network_is_faithful(net):
    """The numpy forward pass of the reference is the model's own output."""
    for kind in ("default", "passed"):
        x = inputs(kind)
        _, logits = reference(net, x, uniform(EPS7))
        np.testing.assert_allclose(logits, net(x).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_rule_of_every_layer(net, case):
    name, kwargs, expected_layout, _ = case
    analyzer = kx.create_analyzer(name, net, **kwargs)
    fused = ("conv2", "dense1")  # split into a linear op and its ReLU, which passes
    got = {layer.name: [repr(rule) for rule in analyzer.rule_of(layer)] for layer in net.layers[1:]}
    expected = {
        layer: [text] + (["Pass()"] if layer in fused else [])
        for layer, text in expected_layout.items()
    }
    expected.update(
        {
            "bn_fold": [],  # folded into conv1: no op of its own
            "max_pool": ["Gradient()"],
            "relu1": ["Pass()"],
            "add": ["Proportional(epsilon=1e-07)"],
            "avg_pool": ["Proportional(epsilon=1e-07)"],
            "flatten": ["Gradient()"],
        }
    )
    assert got == expected


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_relevance_equals_the_numpy_layer_by_layer_reference(net, case):
    name, kwargs, expected_layout, kind = case
    x = inputs(kind)
    expected, _ = reference(net, x, expected_layout)
    result = kx.create_analyzer(name, net, **kwargs).analyze(x, TARGET)
    assert result.dtype == np.float32 and result.shape == x.shape
    scale = np.abs(expected).max()
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-5 * scale)
    if kind == "passed":
        # the parameters matter on this network: dropping them would fail the check above
        defaults = {
            rule: helpers.ref_from_repr(text) for rule, text in DEFAULTS_BY_NAME[name].items()
        }
        at_defaults, _ = helpers.lrp_net_reference(net, x, TARGET, defaults)
        assert np.abs(at_defaults - expected).max() > 100 * 1e-5 * scale


@pytest.mark.parametrize("per_sample", [False, True])
def test_array_bounds_pass_through_the_box_presets(net, per_sample):
    x = inputs("passed")
    rng = np.random.default_rng(2)
    shape = x.shape if per_sample else x.shape[1:]
    low = (-1.0 - rng.uniform(0, 0.5, shape)).astype("float32")
    high = (1.0 + rng.uniform(0, 0.5, shape)).astype("float32")
    box = helpers.Ref("zbox", low=low.reshape(-1, 128), high=high.reshape(-1, 128))
    for name in ("lrp.epsilon_gamma_box", "deep_taylor.bounded"):
        rules_by_layer = {
            layer: helpers.ref_from_repr(text) for layer, text in DEFAULTS_BY_NAME[name].items()
        }
        rules_by_layer["conv1"] = box
        expected, _ = helpers.lrp_net_reference(net, x, TARGET, rules_by_layer)
        result = kx.create_analyzer(name, net, low=low, high=high).analyze(x, TARGET)
        scale = np.abs(expected).max()
        np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-5 * scale, err_msg=name)


@pytest.mark.parametrize("name", WITHOUT_PARAMETERS)
def test_names_without_parameters_reject_them(net, name):
    with pytest.raises(TypeError, match="epsilon"):
        kx.create_analyzer(name, net, epsilon=0.1)
