"""LIME: recovery of linear models, the important superpixel, options passed through."""

import keras
import numpy as np
import pytest
from helpers import LINEAR_TABULAR_WEIGHTS as WEIGHTS
from helpers import grid_labels, linear_tabular, tanh_scorer

import keras_explain as kx

pytest.importorskip("lime")
pytest.importorskip("shap")
pytest.importorskip("skimage")


def test_lime_linear_model_recovers_sign_and_order():
    model, data = linear_tabular()
    analyzer = kx.Lime(model, training_data=data, samples=2000, seed=0)
    analyzer.analyze(data[:3], target=0)
    assert len(analyzer.last_explanations) == 3
    scale = data.std(0)  # lime fits on standardized features: slope = w * std
    for explanation in analyzer.last_explanations:  # lime's raw surrogate weights
        row = np.zeros(4)
        for feature, weight in explanation.local_exp[1]:
            row[feature] = weight
        np.testing.assert_array_equal(np.sign(row), np.sign(WEIGHTS))
        np.testing.assert_array_equal(
            np.argsort(-np.abs(row)), np.argsort(-np.abs(WEIGHTS * scale))
        )
        np.testing.assert_allclose(row, WEIGHTS * scale, rtol=0.1)


def test_lime_tabular_contributions_equal_kernel_shap_on_a_linear_model():
    model, data = linear_tabular()
    x = data[:3]
    contributions = kx.Lime(model, training_data=data, samples=2000, seed=0).analyze(x, 0)
    # weight * (x - mean) / std = w * std * (x - mean) / std; ridge shrinkage ~ 1e-3
    np.testing.assert_allclose(contributions, WEIGHTS * (x - data.mean(0)), rtol=1e-2, atol=1e-3)


def test_lime_image_finds_the_important_superpixel():
    size = 12
    labels = grid_labels(size)
    weights = np.where(labels == 4, 1.0, 0.01)  # superpixel 4 carries the class
    inputs = keras.Input((size, size, 3))
    dense = keras.layers.Dense(1)
    model = keras.Model(inputs, dense(keras.layers.Flatten()(inputs)))
    dense.set_weights(
        [
            np.repeat(weights[..., None], 3, -1).reshape(-1, 1).astype("float32"),
            np.zeros(1, "float32"),
        ]
    )
    images = np.random.default_rng(2).random((2, size, size, 3)).astype("float32") + 0.5
    analyzer = kx.Lime(model, segmentation=labels, samples=300, baseline=0.0, seed=0)
    result = analyzer.analyze(images, target=0)
    for image in result[..., 0]:
        assert labels.ravel()[np.argmax(image.ravel())] == 4
    assert set(analyzer.last_timings) == {"segmentation", "model", "surrogate"}
    first = analyzer.last_explanations[0]
    assert first.segments.shape == (size, size)
    np.testing.assert_array_equal(
        kx.Lime(model, segmentation=labels, samples=300, baseline=0.0, seed=0).analyze(
            images, target=0
        ),
        result,
    )


# -- options reach the wrapped packages ---------------------------------------------------
def test_lime_tabular_options_pass_through(monkeypatch):
    import lime.lime_tabular

    received = []
    original = lime.lime_tabular.LimeTabularExplainer

    def recording(*args, **kwargs):
        received.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(lime.lime_tabular, "LimeTabularExplainer", recording)
    f, rows, _ = tanh_scorer()
    data = np.random.default_rng(1).normal(size=(50, 10)).astype("float32")
    analyzer = kx.Lime(
        f,
        training_data=data,
        samples=30,
        kernel_width=0.7,
        explainer_options={"discretize_continuous": True, "discretizer": "decile"},
        seed=0,
    )
    rows.clear()
    analyzer.analyze(data[:2], target=0)
    options = received[-1]
    assert options["kernel_width"] == 0.7 and options["mode"] == "regression"
    assert options["discretize_continuous"] is True and options["discretizer"] == "decile"
    # samples: 30 perturbed rows per explained row (after the clean rows)
    assert [len(r) for r in rows][-2:] == [30, 30]
    # discretized features are explained as intervals
    names = [name for name, _ in analyzer.last_explanations[0].as_list()]
    assert all("<" in name or ">" in name for name in names)
    # the default keeps continuous features (weights are slopes on standardized values)
    plain = kx.Lime(f, training_data=data, samples=30, seed=0)
    plain.analyze(data[:2], target=0)
    assert received[-1]["discretize_continuous"] is False and received[-1]["kernel_width"] is None
    assert sorted(name for name, _ in plain.last_explanations[0].as_list()) == sorted(
        str(i) for i in range(10)
    )


@pytest.mark.parametrize("baseline", [0.0, 0.25])
def test_lime_image_hides_superpixels_with_the_baseline(baseline):
    labels = grid_labels()
    images = np.random.default_rng(4).uniform(0.5, 1.0, (1, 12, 12, 3)).astype("float32")
    recorded = []

    def f(z):
        recorded.append(np.asarray(z).copy())
        return np.asarray(z).reshape(len(z), -1).mean(1, keepdims=True)

    kx.Lime(f, segmentation=labels, samples=40, baseline=baseline, seed=0).analyze(images, 0)
    perturbed = np.concatenate(recorded)[-40:]
    assert len(perturbed) == 40  # samples reach lime's num_samples
    kept = np.isclose(perturbed, images[0])
    hidden = perturbed == np.float32(baseline)
    assert np.all(kept | hidden) and hidden.any()
    for segment in range(labels.max() + 1):  # a superpixel is hidden as a whole
        block = hidden[:, labels == segment]
        assert np.all(block.all(axis=(1, 2)) | ~block.any(axis=(1, 2)))
