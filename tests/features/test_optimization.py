"""``features.maximize``: optima under penalties, groups, seeds, value range, bad arguments.

Expected values come from closed forms: the optimum of a linear unit under an L2
penalty, with an L1 soft threshold, and lower total variation.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import LINEAR_UNIT_L2 as LAMBDA
from helpers import channel_means
from helpers import feature_cnn as small_cnn
from helpers import linear_unit_model as linear_model

from keras_explain import features


def test_l1_and_total_variation_penalties_change_the_optimum():
    # with λ1 Σ|x − 0.5| added, coordinates with |w_i| < λ1 stay at 0.5 (soft threshold),
    # the others move to 0.5 + (w_i − λ1 sign w_i) / (2 λ2)
    model, kernel = linear_model()
    w = kernel[..., 0]
    l1_weight = 0.5
    (image,) = features.maximize(
        model,
        features.channel("dense", 0),
        parameterization="pixel",
        transforms=None,
        regularizers=[features.l2(LAMBDA), features.l1(l1_weight)],
        steps=400,
        learning_rate=0.1,
    )
    expected = 0.5 + np.sign(w) * np.maximum(np.abs(w) - l1_weight, 0) / (2 * LAMBDA)
    np.testing.assert_allclose(image, expected, atol=0.03)
    smooth = features.maximize(
        model,
        features.channel("dense", 0),
        parameterization="pixel",
        transforms=None,
        regularizers=[features.l2(LAMBDA), features.total_variation(0.2)],
        steps=200,
        learning_rate=0.1,
    )
    rough = 0.5 + w / (2 * LAMBDA)  # the optimum without the total variation term

    def variation(image):  # Σ |x[i+1, j] − x[i, j]| + |x[i, j+1] − x[i, j]|
        return np.abs(np.diff(image, axis=0)).sum() + np.abs(np.diff(image, axis=1)).sum()

    assert variation(smooth[0]) < 0.7 * variation(rough)


# =====================================================================================
# maximize on a small CNN: the objective goes up, groups, seeds, value range
# =====================================================================================
def test_objectives_go_up_each_in_its_own_group():
    model = small_cnn()
    objectives = [features.channel("conv2", 3), features.channel("conv2", 5)]
    kwargs = dict(batch=2, seed=1)
    start = features.maximize(model, objectives, steps=0, **kwargs)
    end = features.maximize(model, objectives, steps=48, **kwargs)
    assert end.shape == (4, 24, 24, 3) and end.dtype == np.float32
    before, after = channel_means(model, "conv2", start), channel_means(model, "conv2", end)
    # rows 0, 1 optimize channel 3, rows 2, 3 channel 5: each group raises its own channel
    # and beats the other group on it
    assert np.all(after[:2, 3] > before[:2, 3] + 0.05)
    assert np.all(after[2:, 5] > before[2:, 5] + 0.05)
    assert after[:2, 3].min() > after[2:, 3].max()
    assert after[2:, 5].min() > after[:2, 5].max()


def test_same_seed_same_image_and_value_range():
    model = small_cnn()
    kwargs = dict(steps=8, value_range=(-1.0, 1.0))
    first = features.maximize(model, features.logit(1), seed=3, **kwargs)
    again = features.maximize(model, features.logit(1), seed=3, **kwargs)
    other = features.maximize(model, features.logit(1), seed=4, **kwargs)
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 1e-3
    # strictly inside (-1, 1) and centred on its middle 0, not on (0, 1)'s 0.5
    assert -1 < first.min() and first.max() < 1
    assert abs(float(first.mean())) < 0.2


def test_init_starts_from_the_given_images():
    model = small_cnn()
    start = np.random.default_rng(5).uniform(0.2, 0.8, (2, 24, 24, 3)).astype("float32")
    for parameterization in ("pixel", "fourier"):
        same = features.maximize(
            model, [features.logit(0)] * 2, steps=0, init=start, parameterization=parameterization
        )
        np.testing.assert_allclose(same, start, atol=1e-5)
    one = features.maximize(model, features.logit(0), steps=0, init=start[0])
    np.testing.assert_allclose(one[0], start[0], atol=1e-5)
    with pytest.raises(ValueError, match=r"init must be finite images of shape \(1, 24, 24, 3\)"):
        features.maximize(model, features.logit(0), init=np.zeros((24, 24)))


def test_size_other_than_the_model_input_is_resized_for_it():
    model = small_cnn()
    images = features.maximize(model, features.channel("conv1", 0), size=(40, 32), steps=2)
    assert images.shape == (1, 40, 32, 3)


# =====================================================================================
# Bad input: clear errors, raised before any optimization
# =====================================================================================
def test_unknown_layer_lists_the_layers_before_optimizing():
    model = small_cnn()
    with pytest.raises(ValueError, match=r"No layer named 'conv9'.*Available layers: \[.*'conv1'"):
        features.maximize(model, features.channel("conv9", 0), steps=10**9)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"value_range": (1.0, 0.0)}, r"value_range must be \(low, high\).*\(1.0, 0.0\)"),
        ({"size": (0, 5)}, r"size must be \(height, width\).*\(0, 5\)"),
        ({"steps": -1}, r"steps must be an int >= 0.*steps=-1"),
        ({"parameterization": "wavelet"}, r"Received: parameterization='wavelet'"),
        ({"transforms": "heavy"}, r"transforms must be \"standard\".*'heavy'"),
        ({"regularizers": ["tv"]}, r"regularizers must be a list.*\['tv'\]"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError if "regularizers" not in kwargs else TypeError, match=message):
        features.maximize(small_cnn(), features.logit(0), **kwargs)


def test_objective_of_the_wrong_type():
    with pytest.raises(TypeError, match=r"needs an Objective.*Received: objective='conv1'"):
        features.maximize(small_cnn(), "conv1")
    with pytest.raises(ValueError, match=r"non-negative weight.*weight=-1"):
        features.l2(-1)
