"""Occlusion, Shapley sampling, RISE and meaningful perturbation: the mathematics."""

import re

import helpers
import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_explain as kx


def linear_image_model(seed=0):
    helpers.seeded(seed)
    return keras.Sequential(
        [keras.Input((6, 6, 2)), keras.layers.Flatten(), keras.layers.Dense(3, use_bias=False)],
        name="linear_image",
    )


def patch_model(size=16):
    """Class 1 logit = 4 (mean(patch) - mean(background)); class 0 logit = 0."""
    patch = np.zeros((size, size, 1), "float32")
    patch[2:8, 8:14] = 1
    weights = patch.ravel() / patch.sum() - (1 - patch.ravel()) / (1 - patch).sum()
    inputs = keras.Input((size, size, 1))
    dense = keras.layers.Dense(2)
    model = keras.Model(inputs, dense(keras.layers.Flatten()(inputs)), name="patch")
    dense.set_weights(
        [np.stack([0 * weights, 4 * weights], 1).astype("float32"), np.zeros(2, "float32")]
    )
    images = 0.2 * np.random.default_rng(0).random((2, size, size, 1)) + 0.8 * patch[None]
    return model, images.astype("float32"), patch[..., 0] > 0


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


def test_callable_with_wrong_output_shape():
    x = helpers.data((6,), batch=4)
    with pytest.raises(
        ValueError,
        match=r"must return one row of scores per input row.*"
        r"Received: shape \(1, 3\) for an input of shape",
    ):
        kx.Occlusion(lambda z: np.zeros((1, 3)), window=1).analyze(x)


def test_shapley_exact_enumeration_and_efficiency():
    model = helpers.dense_sequential(softmax=False)
    x = helpers.data((6,), seed=4, batch=3)
    mask = np.array([0, 0, 1, 2, 3, 3])
    baseline = np.linspace(-0.5, 0.5, 6).astype("float32")

    def f(batch):
        return model(batch).numpy()[:, 2]

    expected = helpers.exact_shapley(f, x, baseline, mask, 4)
    analyzer = kx.ShapleySampling(model, samples=24, feature_mask=mask, baseline=baseline)
    result = analyzer.analyze(x, target=2)
    np.testing.assert_allclose(result[:, [0, 2, 3, 4]], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(result[:, 0], result[:, 1])
    np.testing.assert_allclose(result[:, [0, 2, 3, 4]].sum(1), f(x) - f(baseline[None]), rtol=1e-5)
    # samples >= 4! = 24 enumerates every order: the seed cannot matter. (Sampling with
    # fewer samples than orders is tested in test_sampling.py.)
    for seed in (1, 2):
        again = kx.ShapleySampling(
            model, samples=24, feature_mask=mask, baseline=baseline, seed=seed
        ).analyze(x, target=2)
        np.testing.assert_array_equal(again, result)


def test_shapley_efficiency_on_images_with_few_samples():
    model = helpers.conv_sequential()
    x = helpers.data((8, 8, 2), seed=5, batch=2)
    mask = np.arange(64).reshape(8, 8) // 8  # 8 row groups spanning both channels
    result = kx.ShapleySampling(model, samples=5, feature_mask=mask, seed=3).analyze(x, target=1)
    values = result[:, ::1, 0, 0]  # one value per row group
    difference = model(x).numpy()[:, 1] - model(np.zeros_like(x)).numpy()[:, 1]
    np.testing.assert_allclose(values.sum(1), difference, rtol=1e-4, atol=1e-5)
    assert np.all(result == result[:, :, :1, :1])  # every element of a group gets its value


def test_shapley_superpixels_and_sklearn_pipeline():
    pytest.importorskip("skimage")
    model = helpers.conv_sequential()
    x = helpers.data((8, 8, 2), seed=6, batch=2)
    result = kx.ShapleySampling(model, samples=4, segmentation="slic", seed=0).analyze(x)
    assert result.shape == x.shape and np.isfinite(result).all()

    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = helpers.data((6,), seed=7, batch=60)
    labels = (data[:, 0] > 0).astype(int) + (data[:, 1] > 0)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression()).fit(data, labels)
    rows = data[:3]
    result = kx.create_analyzer(
        "shapley_sampling", pipeline.predict_proba, samples=6, seed=0
    ).analyze(rows)
    probabilities = pipeline.predict_proba(rows)
    chosen = probabilities.argmax(1)
    empty = pipeline.predict_proba(np.zeros_like(rows))[np.arange(3), chosen]
    np.testing.assert_allclose(result.sum(1), probabilities.max(1) - empty, atol=1e-5)


def test_same_seed_same_result():
    model = helpers.conv_sequential()
    x = helpers.data((8, 8, 2), seed=8, batch=2)
    for cls, kwargs in (
        (kx.RISE, {"samples": 40, "cells": 3}),
        (kx.ShapleySampling, {"samples": 3}),
    ):
        first = cls(model, seed=11, **kwargs).analyze(x)
        np.testing.assert_array_equal(first, cls(model, seed=11, **kwargs).analyze(x))
        assert not np.allclose(first, cls(model, seed=12, **kwargs).analyze(x))


def test_rise_constant_model_and_linearity():
    x = helpers.data((8, 8, 1), seed=9, batch=2)
    constant = kx.RISE(lambda z: np.full((len(z), 2), 3.0), samples=800, cells=4, seed=0)
    np.testing.assert_allclose(constant.analyze(x, target=0), 3.0, atol=0.25)
    # For a fixed mask set the saliency is linear in the score: with the masks of
    # a constant score c, saliency(c) = c * mean(M) / p, so f = 2c doubles it.
    one = kx.RISE(lambda z: np.ones((len(z), 1)), samples=50, cells=3, seed=4).analyze(x)
    two = kx.RISE(lambda z: 2 * np.ones((len(z), 1)), samples=50, cells=3, seed=4).analyze(x)
    np.testing.assert_allclose(two, 2 * one, rtol=1e-6)


def test_rise_matches_reference_with_the_same_masks():
    # Record the masked copies that a plain callable receives (baseline 0, so a
    # copy is M_i * x), recover the masks, and apply the paper's formula.
    model = helpers.conv_sequential(seed=1)
    x2 = np.abs(helpers.data((8, 8, 2), seed=10, batch=2)) + 0.5
    analyzer = kx.RISE(model, samples=30, cells=3, probability=0.4, seed=5)
    result = analyzer.analyze(x2, target=2)
    recorded = []

    def recorder(z):
        recorded.append(np.asarray(z))
        return model(z).numpy()

    kx.RISE(recorder, samples=30, cells=3, probability=0.4, seed=5).analyze(x2, target=2)
    copies = np.concatenate(recorded)[-60:]  # before: output size and clean target
    masks = copies[0::2, :, :, 0] / x2[0, :, :, 0]  # copies alternate sample 0, 1

    def f(batch):
        return model(batch).numpy()[:, 2]

    expected = helpers.rise_reference(f, x2, masks, 0.4)
    np.testing.assert_allclose(result[..., 0], expected, rtol=1e-3, atol=1e-4)


def localisation(saliency, patch):
    """Fraction of the above-mean saliency mass that lies on the patch."""
    excess = np.maximum(saliency - saliency.mean(), 0)
    return float(excess[patch].sum() / excess.sum())


def test_rise_localises_the_patch():
    model, images, patch = patch_model()
    result = kx.RISE(model, samples=1000, cells=8, seed=0).analyze(images)[..., 0]
    fractions = [localisation(r, patch) for r in result]
    print(f"RISE above-mean mass on the patch: {fractions} (patch area {patch.mean():.3f})")
    assert min(fractions) > 0.6


def test_meaningful_perturbation_deletes_the_patch():
    model, images, patch = patch_model()
    result = kx.MeaningfulPerturbation(model, deletion="constant").analyze(images, target=1)
    deletion = result[..., 0]
    fractions = [float(d[patch].sum() / d.sum()) for d in deletion]
    print(
        f"meaningful perturbation deletion mass on the patch: {fractions} "
        f"(patch area {patch.mean():.3f}); mean deletion patch "
        f"{deletion[:, patch].mean():.3f}, background {deletion[:, ~patch].mean():.3f}"
    )
    assert deletion[:, patch].mean() > 0.9 and deletion[:, ~patch].mean() < 0.3
    assert min(fractions) > 0.4
    blurred = kx.MeaningfulPerturbation(model, steps=60, blur_sigma=2.0).analyze(images)[..., 0]
    print(
        f"blur deletion: patch {blurred[:, patch].mean():.3f}, background "
        f"{blurred[:, ~patch].mean():.3f}"
    )
    assert blurred[:, patch].mean() > 0.9 and blurred[:, ~patch].mean() < 0.7


def test_meaningful_perturbation_needs_a_differentiable_model():
    x = helpers.data((6,), batch=2)
    with pytest.raises(TypeError, match="needs a differentiable model"):
        kx.MeaningfulPerturbation(lambda z: np.asarray(z)[:, :3], steps=2).analyze(x)


def test_progress_bar_counts_the_model_calls_of_the_compiled_loop(capsys):
    model = helpers.conv_sequential()
    x = helpers.data((8, 8, 2), batch=1)
    # 20 masks, 6 rows per call (one sample): ceil(20 / 6) = 4 calls of the compiled loop
    chunked = kx.RISE(model, samples=20, cells=2, seed=0, internal_batch_size=6, verbose=1)
    result = chunked.analyze(x)
    bar = capsys.readouterr().err
    assert "RISE" in bar
    assert re.findall(r"(\d+)/(\d+) \[", bar)[-1] == ("4", "4")
    whole = kx.RISE(model, samples=20, cells=2, seed=0, verbose=0).analyze(x)
    assert capsys.readouterr().err == ""
    np.testing.assert_allclose(result, whole, rtol=1e-5, atol=1e-6)


def test_one_input_only_and_rise_parameter_errors():
    with pytest.raises(
        ValueError,
        match=r"Occlusion explains models with one input; model 'multi_input' has 2\. Wrap it",
    ):
        kx.Occlusion(helpers.multi_input())
    model = helpers.conv_sequential()
    with pytest.raises(
        ValueError, match=r"probability must be in \(0, 1\]\. Received: probability=0\.0\."
    ):
        kx.RISE(model, probability=0.0)
    for name in ("samples", "cells"):
        with pytest.raises(
            ValueError, match=rf"{name} must be a positive int\. Received: {name}=0\."
        ):
            kx.RISE(model, **{name: 0})
    with pytest.raises(ValueError, match=r"RISE masks cover one or two spatial axes"):
        volume = keras.Sequential([keras.Input((4, 4, 4, 1)), keras.layers.Flatten()])
        kx.RISE(volume, samples=2).analyze(np.ones((1, 4, 4, 4, 1), "float32"))


# -- one spatial axis: sequences (B, L, C) and tabular rows (B, F) -------------------------
def one_axis_model(shape, seed=0):
    helpers.seeded(seed)
    model = keras.Sequential(
        [
            keras.Input(shape),
            keras.layers.Flatten(),
            keras.layers.Dense(8, activation="tanh"),
            keras.layers.Dense(3),
        ],
        name="one_axis",
    )
    return helpers.randomize_biases(model)


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


@pytest.mark.parametrize("shape", [(12, 2), (12,)], ids=["sequence", "tabular"])
def test_rise_on_one_spatial_axis_matches_reference_with_the_same_masks(shape):
    model = one_axis_model(shape, seed=1)
    x = np.abs(helpers.data(shape, seed=13, batch=2)) + 0.5
    params = {"samples": 25, "cells": 4, "probability": 0.3, "seed": 2}
    result = kx.RISE(model, **params).analyze(x, target=1)
    recorded = []

    def recorder(z):
        recorded.append(np.asarray(z))
        return model(z).numpy()

    kx.RISE(recorder, **params).analyze(x, target=1)
    copies = np.concatenate(recorded)[-50:]  # 25 masks x 2 samples, sample-minor
    masks = copies[0::2] / x[0]  # baseline 0: a copy is M_i * x
    masks = masks[..., 0] if len(shape) == 2 else masks
    assert masks.shape == (25, 12) and masks.std(axis=1).max() > 0.1  # they vary along L

    def f(batch):
        return model(batch).numpy()[:, 1]

    expected = helpers.rise_reference(f, x, masks, 0.3)
    got = result[..., 0] if len(shape) == 2 else result
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-5)
    if len(shape) == 2:  # one mask spans all channels
        np.testing.assert_array_equal(result[..., 0], result[..., 1])


# -- meaningful perturbation: the first Adam step in closed form -------------------------
# From m = 1 one Adam step moves every mask cell by -lr * g / (|g| + 1e-8) with g the
# gradient of the loss; L1 and total variation have zero gradient at m = 1 (|0| and a
# constant mask), so g = d score / d m. With mask_size equal to the input size the
# upsampling is the identity: the deletion map 1 - clip(m) is lr where g > 0, else 0.
def linear_image_scorer(kernel):
    """Flatten -> Dense with a fixed kernel (no bias) on (8, 8, C) images."""
    inputs = keras.Input(kernel.shape[:-1])
    dense = keras.layers.Dense(kernel.shape[-1], use_bias=False)
    model = keras.Model(inputs, dense(keras.layers.Flatten()(inputs)), name="scorer")
    dense.set_weights([kernel.reshape(-1, kernel.shape[-1]).astype("float32")])
    return model


def one_step(model, x, target, **params):
    analyzer = kx.MeaningfulPerturbation(model, steps=1, learning_rate=0.3, mask_size=8, **params)
    return analyzer.analyze(x, target)[..., 0]


def test_meaningful_perturbation_softmax_option_changes_the_score():
    # logits z0 = sum(x), z1 = 2 sum(x), target 0, constant deletion to 0, x > 0:
    # without softmax g = x > 0 (delete everything); with softmax
    # g = p0 p1 (1 - 2) x < 0 (delete nothing).
    kernel = np.stack([np.ones((8, 8, 1)), 2 * np.ones((8, 8, 1))], -1)
    model = linear_image_scorer(kernel)
    x = np.random.default_rng(0).uniform(0.5, 1.0, (2, 8, 8, 1)).astype("float32")
    common = {"deletion": "constant", "baseline": 0.0}
    plain = one_step(model, x, 0, probabilities=False, **common)
    np.testing.assert_allclose(plain, 0.3, rtol=1e-4)  # lr * g / (|g| + 1e-8)
    with_softmax = one_step(model, x, 0, **common)  # probabilities=True is the default
    np.testing.assert_array_equal(with_softmax, 0.0)


def test_meaningful_perturbation_one_logit_scores_the_sigmoid():
    # one logit z = sum(x) ~ 0.5: p = sigmoid(z), g = sigmoid'(z) x > 0, so the first
    # step deletes everything (lr). A softmax of the single value would be the
    # constant 1 (g = 0, nothing deleted).
    model = linear_image_scorer(np.ones((8, 8, 1, 1)))
    x = np.random.default_rng(0).uniform(0.005, 0.01, (2, 8, 8, 1)).astype("float32")
    common = {"deletion": "constant", "baseline": 0.0}
    np.testing.assert_allclose(one_step(model, x, 0, **common), 0.3, rtol=1e-4)
    # the negative class as a probability, 1 - p = sigmoid(-z): g < 0, nothing deleted
    negative = one_step(model, x, lambda out: tf.sigmoid(-out[:, 0]), **common)
    np.testing.assert_array_equal(negative, 0.0)


def test_meaningful_perturbation_of_a_sigmoid_model_equals_its_logits_twin():
    """strip_softmax bypasses the sigmoid, and probabilities=True puts the same sigmoid back."""
    model, logits_model = helpers.binary_classifier("fused sigmoid")
    x = helpers.data((6,), seed=4, batch=3)[:, :, None]  # (B, 6, 1): a 1-D signal
    inputs = keras.Input((6, 1))
    flat = keras.layers.Flatten()(inputs)
    params = {"steps": 20, "mask_size": 3, "deletion": "constant"}
    on_model = kx.MeaningfulPerturbation(keras.Model(inputs, model(flat)), **params)
    on_logits = kx.MeaningfulPerturbation(keras.Model(inputs, logits_model(flat)), **params)
    result = on_model.analyze(x, target=0)
    np.testing.assert_allclose(result, on_logits.analyze(x, target=0), rtol=1e-5, atol=1e-6)
    assert result.max() > 0


def test_meaningful_perturbation_blur_deletion_matches_a_numpy_blur():
    rng = np.random.default_rng(1)
    kernel = rng.normal(size=(8, 8, 2, 1))
    model = linear_image_scorer(kernel)
    x = rng.uniform(0, 1, (2, 8, 8, 2)).astype("float32")
    result = one_step(model, x, 0, probabilities=False, deletion="blur", blur_sigma=1.5)
    # g = sum_c w (x - blur(x)) per cell
    gradient = (kernel[None, ..., 0] * (x - helpers.gaussian_blur_reference(x, 1.5))).sum(-1)
    clear = np.abs(gradient) > 1e-3
    assert clear.mean() > 0.9 and 0.2 < (gradient > 0).mean() < 0.8
    np.testing.assert_allclose(result[clear], np.where(gradient > 0, 0.3, 0.0)[clear], atol=1e-5)


def test_meaningful_perturbation_noise_deletion():
    # f = sum(x): g = sum_c (x - d(x)) = -noise_scale * range(x) * sum_c noise, so a cell is
    # deleted exactly where its noise sum is negative: about half the cells, drawn per
    # sample from the seed.
    model = linear_image_scorer(np.ones((8, 8, 2, 1)))
    base = np.random.default_rng(2).uniform(0, 1, (1, 8, 8, 2)).astype("float32")
    x = np.concatenate([base, base, 2 * base])  # two identical rows

    def run(**params):
        return one_step(model, x, 0, probabilities=False, deletion="noise", **params)

    first = run(seed=3)
    deleted = first > 0.15
    np.testing.assert_allclose(first, np.where(deleted, 0.3, 0.0), rtol=1e-4)
    # 3 x 64 fair coins: within 4 standard deviations (sqrt(0.25 / 192)) of one half
    assert abs(deleted.mean() - 0.5) < 4 * np.sqrt(0.25 / deleted.size)
    assert (deleted[0] != deleted[1]).any()  # identical rows get their own noise
    np.testing.assert_array_equal(run(seed=3), first)
    assert (run(seed=4) != first).any()
    analyzer = kx.MeaningfulPerturbation(
        model,
        steps=1,
        learning_rate=0.3,
        mask_size=8,
        probabilities=False,
        deletion="noise",
        seed=3,
    )
    np.testing.assert_array_equal(analyzer.analyze(x, 0, batch_size=1)[..., 0], first)
    # noise_scale=0: the deletion is x itself, the gradient is exactly 0, nothing moves
    np.testing.assert_array_equal(run(seed=3, noise_scale=0.0), 0.0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"steps": 0}, r"steps must be a positive int\. Received: steps=0\."),
        ({"mask_size": 0}, r"mask_size must be a positive int\. Received: mask_size=0\."),
        ({"learning_rate": 0.0}, r"learning_rate must be > 0\. Received: learning_rate=0\.0\."),
        ({"blur_sigma": -1.0}, r"blur_sigma must be > 0\. Received: blur_sigma=-1\.0\."),
        ({"l1_coeff": -1.0}, r"l1_coeff must be >= 0\. Received: l1_coeff=-1\.0\."),
        ({"tv_coeff": -1.0}, r"tv_coeff must be >= 0\. Received: tv_coeff=-1\.0\."),
        ({"noise_scale": -0.1}, r"noise_scale must be >= 0\. Received: noise_scale=-0\.1\."),
        (
            {"deletion": "erase"},
            r"Unknown deletion\. Received: deletion='erase'\. Expected one of "
            r"\('blur', 'constant', 'noise'\)\.",
        ),
    ],
)
def test_meaningful_perturbation_parameter_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kx.MeaningfulPerturbation(helpers.conv_sequential(), **kwargs)
