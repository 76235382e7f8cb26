"""Composites: presets put the right rule on each layer; a user composite's first match wins."""

import helpers
import keras
import pytest

import keras_explain as kx
from keras_explain import composites, rules

layers = keras.layers


def test_presets_put_the_right_rule_on_the_right_layer():
    model = helpers.randomize(
        keras.Sequential(
            [
                keras.Input((8, 8, 2)),
                layers.Conv2D(4, 3, activation="relu", name="first"),
                layers.Conv2D(4, 3, activation="relu", name="conv"),
                layers.BatchNormalization(name="bn"),  # after a ReLU: not folded
                layers.Flatten(),
                layers.Dense(5, activation="relu", name="dense"),
                layers.Dense(3, name="last"),
            ]
        )
    )

    def rule_names(analyzer):
        return {
            name: repr(analyzer.rule_of(name)[0])
            for name in ("first", "conv", "bn", "dense", "last")
        }

    eps01 = "Epsilon(epsilon=0.1)"
    ab10 = "AlphaBeta(alpha=1, beta=0, bias=True, epsilon=1e-07)"
    ab21 = "AlphaBeta(alpha=2, beta=1, bias=True, epsilon=1e-07)"
    assert rule_names(kx.LRPSequentialPresetA(model)) == {
        "first": ab10,
        "conv": ab10,
        "bn": eps01,
        "dense": eps01,
        "last": eps01,
    }
    assert rule_names(kx.LRPSequentialPresetBFlat(model)) == {
        "first": "Flat(epsilon=1e-07)",
        "conv": ab21,
        "bn": eps01,
        "dense": eps01,
        "last": eps01,
    }
    assert rule_names(kx.create_analyzer("lrp.epsilon_gamma_box", model, low=-1.0, high=2.0)) == {
        "first": "ZBox(low=-1.0, high=2.0, epsilon=1e-07)",
        "conv": "Gamma(gamma=0.25, epsilon=1e-07)",
        "bn": "Epsilon(epsilon=1e-07)",
        "dense": "Epsilon(epsilon=1e-07)",
        "last": "Epsilon(epsilon=1e-07)",
    }
    bounded = rule_names(kx.create_analyzer("deep_taylor.bounded", model, low=0.0, high=1.0))
    assert bounded["first"] == "ZBox(low=0.0, high=1.0, epsilon=1e-07)"
    assert {bounded[k] for k in ("conv", "bn", "dense", "last")} == {"ZPlus(epsilon=1e-07)"}
    uniform = rule_names(kx.LRPEpsilon(model, epsilon=0.5))
    assert set(uniform.values()) == {"Epsilon(epsilon=0.5)"}
    # fused activations pass, reshapes follow the gradient
    analyzer = kx.LRPEpsilon(model)
    assert [repr(rule) for rule in analyzer.rule_of("first")] == [
        "Epsilon(epsilon=1e-07)",
        "Pass()",
    ]
    assert [repr(rule) for rule in analyzer.rule_of(model.layers[3])] == ["Gradient()"]


def test_user_composite_first_match_wins_and_layer_classes():
    model = helpers.conv_sequential()
    composite = composites.Composite(
        [
            (layers.Dense, rules.Z()),
            ("linear", rules.Epsilon(0.3)),
            ("conv", rules.Flat()),  # never reached: "linear" matched first
        ],
        first=rules.WSquare(),
    )
    analyzer = kx.LRP(model, composite)
    assert [repr(analyzer.rule_of(layer)[0]) for layer in model.layers if layer.weights] == [
        "WSquare(epsilon=1e-07)",
        "Epsilon(epsilon=0.3)",
        "Z()",
    ]
    # a class entry matches the Dense's linear op, not its fused activation
    assert len(analyzer.rule_of(model.layers[-1])) == 1
    assert analyzer.analyze(helpers.data((8, 8, 2))).shape == (4, 8, 8, 2)
    with pytest.raises(ValueError, match="Unknown composite.*'nope'"):
        kx.LRP(model, "nope")
    with pytest.raises(TypeError, match="layer_kind, rule"):
        composites.Composite([("conv", "epsilon")])
