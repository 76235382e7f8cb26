"""KernelSHAP: recovery of linear models (tabular and superpixels), options, seeds.

On a linear model with 12 features and 60 sampled coalitions (of 4096) KernelSHAP is
exact for every sample of coalitions, whatever the seed.
"""

import keras
import numpy as np
import pytest
from helpers import LINEAR_TABULAR_WEIGHTS as WEIGHTS
from helpers import grid_labels, linear_image, linear_tabular, tanh_scorer

import keras_explain as kx

pytest.importorskip("lime")
pytest.importorskip("shap")
pytest.importorskip("skimage")


def test_kernel_shap_linear_model_recovers_weight_times_centered_input():
    model, data = linear_tabular()
    x, background = data[:3], data[100:130]
    analyzer = kx.KernelShap(model, background=background, seed=0)
    values = analyzer.analyze(x, target=0)
    np.testing.assert_allclose(values, WEIGHTS * (x - background.mean(0)), atol=1e-4)
    explanation = analyzer.last_explanations[1]
    np.testing.assert_allclose(explanation.values, values[1])
    np.testing.assert_allclose(
        explanation.base_values + values[1].sum(), model(x[1:2]).numpy()[0, 0], rtol=1e-5
    )


def test_kernel_shap_superpixels_are_exact_on_a_linear_model():
    model, images = linear_image()
    labels = grid_labels()
    kernel = model.layers[-1].kernel.numpy()[:, 1].reshape(12, 12, 3)
    analyzer = kx.KernelShap(model, segmentation=labels, samples=300, baseline=0.0, seed=0)
    values = analyzer.analyze(images, target=1)
    contribution = (kernel * images).sum(-1)  # (B, H, W)
    for segment in range(labels.max() + 1):
        where = labels == segment
        expected = contribution[:, where].sum(1)
        np.testing.assert_allclose(values[:, where, 0][:, 0], expected, rtol=1e-3, atol=1e-4)
    assert np.all(values == values[..., :1])  # painted onto every channel


def test_kernel_shap_options_pass_through():
    f, rows, _ = tanh_scorer()
    rng = np.random.default_rng(2)
    background, x = rng.normal(size=(5, 10)), rng.normal(size=(2, 10))
    rows.clear()
    values = kx.KernelShap(f, background=background, samples=40, seed=0).analyze(x, 0)
    # samples: 40 coalitions, each evaluated on the 5 background rows, per explained row
    assert [len(r) for r in rows].count(200) == 2
    # l1_reg: shap's feature selection keeps exactly two features
    sparse = kx.KernelShap(
        f, background=background, samples=40, seed=0, l1_reg="num_features(2)"
    ).analyze(x, 0)
    assert np.count_nonzero(sparse, axis=1).tolist() == [2, 2]
    assert np.count_nonzero(values, axis=1).tolist() == [10, 10]


@pytest.mark.parametrize("baseline", [0.0, 0.5])
def test_kernel_shap_image_baseline_is_the_value_of_switched_off_superpixels(baseline):
    model, images = linear_image()
    labels = grid_labels()
    kernel = model.layers[-1].kernel.numpy()[:, 0].reshape(12, 12, 3)
    analyzer = kx.KernelShap(model, segmentation=labels, samples=300, baseline=baseline, seed=0)
    values = analyzer.analyze(images, target=0)
    contribution = (kernel * (images - baseline)).sum(-1)  # linear: exact per superpixel
    for segment in range(labels.max() + 1):
        where = labels == segment
        np.testing.assert_allclose(
            values[:, where, 0][:, 0], contribution[:, where].sum(1), rtol=1e-3, atol=1e-4
        )


def test_kernel_shap_seed_reproducibility_and_global_numpy_state():
    f, _, weights = tanh_scorer()
    rng = np.random.default_rng(3)
    background, x = rng.normal(size=(5, 10)), rng.normal(size=(2, 10))
    np.random.seed(123)
    state = np.random.get_state()[1].copy()
    first = kx.KernelShap(f, background=background, samples=40, seed=0).analyze(x, 0)
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # the user's state is kept
    again = kx.KernelShap(f, background=background, samples=40, seed=0).analyze(x, 0)
    np.testing.assert_array_equal(again, first)
    other = kx.KernelShap(f, background=background, samples=40, seed=1).analyze(x, 0)
    assert np.abs(other - first).max() > 1e-3  # 40 < 2**10 coalitions: sampled
    # efficiency holds for every sample of coalitions: sum = f(x) - mean f(background)
    difference = np.tanh(x @ weights)[:, 0] - np.tanh(background @ weights)[:, 0].mean()
    for values in (first, other):
        np.testing.assert_allclose(values.sum(1), difference, rtol=1e-4, atol=1e-5)


# -- KernelSHAP ---------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 7])
def test_kernel_shap_is_exact_on_a_linear_model_with_sampled_coalitions(seed):
    pytest.importorskip("shap")
    rng = np.random.default_rng(1)
    weights = rng.normal(size=12)
    inputs = keras.Input((12,))
    dense = keras.layers.Dense(1)
    model = keras.Model(inputs, dense(inputs))
    dense.set_weights([weights[:, None].astype("float32"), np.array([0.4], "float32")])
    background = rng.normal(size=(8, 12)).astype("float32")
    x = rng.normal(size=(3, 12)).astype("float32")
    # 60 of the 2**12 = 4096 coalitions: the regression is still exact for an additive
    # model, whatever coalitions the seed draws
    values = kx.KernelShap(model, background=background, samples=60, seed=seed).analyze(x, 0)
    np.testing.assert_allclose(values, weights * (x - background.mean(0)), rtol=1e-4, atol=1e-4)
