"""Meaningful perturbation: the deleted patch, the first Adam step in closed form, errors."""

import helpers
import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import patch_model

import keras_explain as kx


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
