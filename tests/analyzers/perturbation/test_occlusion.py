"""Occlusion: linear models in closed form, hand loops, one spatial axis, bad windows."""

import helpers
import keras
import numpy as np
import pytest
from helpers import one_axis_model

import keras_explain as kx


def linear_image_model(seed=0):
    helpers.seeded(seed)
    return keras.Sequential(
        [keras.Input((6, 6, 2)), keras.layers.Flatten(), keras.layers.Dense(3, use_bias=False)],
        name="linear_image",
    )


def test_occlusion_linear_model_is_windowed_input_times_weight():
    model = linear_image_model()
    x = helpers.data((6, 6, 2), seed=1, batch=3)
    kernel = model.layers[-1].kernel.numpy()[:, 1].reshape(6, 6, 2)
    result = kx.Occlusion(model, window=3, stride=2).analyze(x, target=1)
    expected = np.zeros((3, 6, 6))
    count = np.zeros((6, 6))
    for i in (0, 2, 3):  # stride 2 reaches 2; the flush window starts at 3
        for j in (0, 2, 3):
            window_sum = (kernel * x)[:, i : i + 3, j : j + 3].sum(axis=(1, 2, 3))
            expected[:, i : i + 3, j : j + 3] += window_sum[:, None, None]
            count[i : i + 3, j : j + 3] += 1
    expected = np.repeat((expected / count)[..., None], 2, axis=-1)
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-5)


def test_occlusion_nonlinear_model_matches_hand_loop_and_callable_path():
    model = helpers.conv_sequential()
    x = helpers.data((8, 8, 2), seed=2, batch=3)
    target = np.array([0, 3, 1])

    def f(batch):
        return model(batch).numpy()[np.arange(len(batch)), target]

    expected = helpers.occlusion_reference(f, x, window=3, stride=2, baseline=0.5)
    result = kx.Occlusion(model, window=3, stride=2, baseline=0.5).analyze(x, target=target)
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-5)
    # A numpy-only callable runs eagerly on the host; both paths must agree.
    eager = kx.Occlusion(
        lambda z: model(z).numpy(), window=3, stride=2, baseline=0.5, internal_batch_size=7
    ).analyze(x, target=target)
    np.testing.assert_allclose(eager, result, rtol=1e-5, atol=1e-6)


def test_occlusion_of_a_binary_model_explains_the_logit():
    model, logits_model = helpers.binary_classifier("fused sigmoid")
    x = helpers.data((6,), seed=3)

    def logit(batch):
        return logits_model(batch).numpy()[:, 0]

    expected = helpers.occlusion_reference(logit, x, window=2, stride=2)
    result = kx.Occlusion(model, window=2, stride=2).analyze(x, target=0)
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-6)
    negative = kx.Occlusion(model, window=2, stride=2).analyze(x, target=lambda out: -out[:, 0])
    np.testing.assert_allclose(negative, -expected, rtol=1e-4, atol=1e-6)


def test_occlusion_none_target_is_clean_argmax_and_batch_invariant():
    model = helpers.conv_sequential()
    x = helpers.data((8, 8, 2), seed=3, batch=4)
    argmax = model(x).numpy().argmax(1)
    analyzer = kx.create_analyzer("occlusion", model, window=(2, 4), stride=(2, 2))
    result = analyzer.analyze(x)
    np.testing.assert_allclose(result, analyzer.analyze(x, target=argmax), atol=1e-6)
    np.testing.assert_allclose(result, analyzer.analyze(x, batch_size=3), atol=1e-5)
    traces = helpers.tracing_counts(analyzer)
    analyzer.analyze(x + 1)
    assert helpers.tracing_counts(analyzer) == traces


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"window": 9}, r"window \(9, 9\) is larger than the spatial shape \(8, 8\)"),
        ({"window": 0}, r"window must be a positive int .* Received: window=0"),
        ({"window": (2, 2, 2)}, r"window needs one entry per spatial axis \(8, 8\)"),
        ({"stride": -1}, r"stride must be a positive int"),
    ],
)
def test_occlusion_bad_window(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kx.Occlusion(helpers.conv_sequential(), **kwargs)


# -- one spatial axis: sequences (B, L, C) and tabular rows (B, F) -------------------------
@pytest.mark.parametrize("shape", [(11, 3), (11,)], ids=["sequence", "tabular"])
def test_occlusion_on_one_spatial_axis_matches_hand_loop(shape):
    model = one_axis_model(shape)
    x = helpers.data(shape, seed=12, batch=3)
    target = np.array([2, 0, 1])

    def f(batch):
        return model(batch).numpy()[np.arange(len(batch)), target]

    expected = helpers.occlusion_reference(f, x, window=3, stride=2, baseline=0.25)
    result = kx.Occlusion(model, window=3, stride=2, baseline=0.25).analyze(x, target)
    assert result.shape == x.shape
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-6)
