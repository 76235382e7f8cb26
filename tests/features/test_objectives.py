"""Objectives: each kind's optimum on a linear unit, negation, indices out of range."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import LINEAR_UNIT_L2 as LAMBDA
from helpers import channel_means
from helpers import feature_cnn as small_cnn
from helpers import linear_unit_model as linear_model

from keras_explain import features


# =====================================================================================
# maximize: a linear unit's optimum under an L2 penalty
# =====================================================================================
@pytest.mark.parametrize(
    ("name", "objective", "weights"),
    [
        ("neuron", lambda: features.neuron("dense", 1), lambda w: w[..., 1]),
        ("neuron by position", lambda: features.neuron("dense", (2,)), lambda w: w[..., 2]),
        ("channel", lambda: features.channel("dense", 0), lambda w: w[..., 0]),
        ("logit", lambda: features.logit(2), lambda w: w[..., 2]),
        (
            "direction",
            lambda: features.direction("dense", [1.0, -0.5, 0.25]),
            lambda w: w @ np.array([1.0, -0.5, 0.25]),
        ),
        (
            "combination",
            lambda: 0.5 * features.channel("dense", 0) - features.neuron("dense", 1),
            lambda w: 0.5 * w[..., 0] - w[..., 1],
        ),
    ],
)
def test_linear_unit_optimum_is_its_weights(name, objective, weights):
    # maximize w·x − λ Σ (x − 0.5)² has its optimum at x = 0.5 + w / (2λ); with the pixel
    # parameterization and no transforms, Adam gets there up to its residual oscillation
    model, kernel = linear_model(softmax=name == "logit")
    w = weights(kernel)
    (image,) = features.maximize(
        model,
        objective(),
        parameterization="pixel",
        transforms=None,
        regularizers=[features.l2(LAMBDA)],
        steps=400,
        learning_rate=0.1,
    )
    found = (image - 0.5).ravel()
    cosine = found @ w.ravel() / np.linalg.norm(found) / np.linalg.norm(w)
    assert cosine > 0.99
    np.testing.assert_allclose(image, 0.5 + w / (2 * LAMBDA), atol=0.02)


def test_negated_objective_goes_down():
    model = small_cnn()
    kwargs = dict(seed=2, transforms=None)
    start = features.maximize(model, -features.channel("conv1", 2), steps=0, **kwargs)
    end = features.maximize(model, -features.channel("conv1", 2), steps=32, **kwargs)
    assert channel_means(model, "conv1", end)[0, 2] < channel_means(model, "conv1", start)[0, 2]


@pytest.mark.parametrize(
    ("objective", "message"),
    [
        (lambda: features.channel("conv2", 8), r"has 8 channels.*Received: index 8"),
        (lambda: features.neuron("conv1", (22, 0, 0)), r"outputs \(22, 22, 6\).*\(22, 0, 0\)"),
        (lambda: features.neuron("head", 4), r"4 elements per sample.*Received: index 4"),
        (lambda: features.logit(-1), r"has 4 channels.*Received: index -1"),
        (lambda: features.direction("conv1", [1.0, 2.0]), r"one entry per channel.*\(6\)"),
    ],
)
def test_indices_out_of_range_fail_before_optimizing(objective, message):
    with pytest.raises(ValueError, match=message):
        features.maximize(small_cnn(), objective(), steps=10**9)
