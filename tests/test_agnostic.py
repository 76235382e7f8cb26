"""LIME and KernelSHAP wrappers: recovery of linear models, images, errors."""

import sys

import keras
import models
import numpy as np
import pytest

from keras_explain.analyzers import create_analyzer
from keras_explain.analyzers.agnostic import KernelShap, Lime

pytest.importorskip("lime")
pytest.importorskip("shap")
pytest.importorskip("skimage")

WEIGHTS = np.array([3.0, -2.0, 1.0, 0.5], "float32")


def linear_tabular():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)], name="linear_tabular")
    kernel = np.stack([WEIGHTS, -WEIGHTS], 1)
    model.layers[0].set_weights([kernel, np.array([0.3, 0.0], "float32")])
    data = np.random.default_rng(0).normal(size=(200, 4)).astype("float32")
    return model, data


def grid_labels(size=12, cell=4):
    rows = np.arange(size) // cell
    return (rows[:, None] * (size // cell) + rows[None, :]).astype(np.int32)


def linear_image(size=12):
    models.seeded(0)
    model = keras.Sequential(
        [keras.Input((size, size, 3)), keras.layers.Flatten(), keras.layers.Dense(2)],
        name="linear_image",
    )
    images = np.random.default_rng(1).random((2, size, size, 3)).astype("float32")
    return model, images


def test_kernel_shap_linear_model_recovers_weight_times_centered_input():
    model, data = linear_tabular()
    x, background = data[:3], data[100:130]
    analyzer = KernelShap(model, background=background, seed=0)
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
    analyzer = KernelShap(model, segmentation=labels, samples=300, baseline=0.0, seed=0)
    values = analyzer.analyze(images, target=1)
    contribution = (kernel * images).sum(-1)  # (B, H, W)
    for segment in range(labels.max() + 1):
        where = labels == segment
        expected = contribution[:, where].sum(1)
        np.testing.assert_allclose(values[:, where, 0][:, 0], expected, rtol=1e-3, atol=1e-4)
    assert np.all(values == values[..., :1])  # painted onto every channel


def test_lime_linear_model_recovers_sign_and_order():
    model, data = linear_tabular()
    analyzer = Lime(model, training_data=data, samples=2000, seed=0)
    weights = analyzer.analyze(data[:3], target=0)
    scale = data.std(0)  # lime fits on standardized features: slope = w * std
    for row in weights:
        np.testing.assert_array_equal(np.sign(row), np.sign(WEIGHTS))
        np.testing.assert_array_equal(
            np.argsort(-np.abs(row)), np.argsort(-np.abs(WEIGHTS * scale))
        )
        np.testing.assert_allclose(row, WEIGHTS * scale, rtol=0.1)
    assert len(analyzer.last_explanations) == 3
    assert analyzer.last_explanations[0].local_exp[1]


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
    analyzer = Lime(model, segmentation=labels, samples=300, baseline=0.0, seed=0)
    result = analyzer.analyze(images, target=0)
    for image in result[..., 0]:
        assert labels.ravel()[np.argmax(image.ravel())] == 4
    assert set(analyzer.last_timings) == {"segmentation", "model", "surrogate"}
    first = analyzer.last_explanations[0]
    assert first.segments.shape == (size, size)
    np.testing.assert_array_equal(
        Lime(model, segmentation=labels, samples=300, baseline=0.0, seed=0).analyze(
            images, target=0
        ),
        result,
    )


@pytest.mark.parametrize("segmentation", ["quickshift", "slic", "felzenszwalb"])
def test_named_segmentations_run(segmentation):
    model, images = linear_image(16)
    result = create_analyzer("lime", model, segmentation=segmentation, samples=30, seed=0).analyze(
        images[:1]
    )
    assert result.shape == (1, 16, 16, 3) and np.isfinite(result).all()


def test_sklearn_pipeline_predict_proba():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = np.random.default_rng(3).normal(size=(80, 4))
    labels = (data[:, 0] - data[:, 1] > 0).astype(int)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression()).fit(data, labels)
    x = data[:2]
    values = KernelShap(pipeline.predict_proba, background=data[:20], seed=0).analyze(x)
    chosen = pipeline.predict_proba(x).argmax(1)
    expected = pipeline.predict_proba(x)[np.arange(2), chosen] - pipeline.predict_proba(data[:20])[
        :, chosen
    ].mean(0)
    np.testing.assert_allclose(values.sum(1), expected, atol=1e-4)
    weights = Lime(pipeline.predict_proba, training_data=data, samples=500, seed=0).analyze(
        x, target=1
    )
    assert np.all(weights[:, 0] > 0) and np.all(weights[:, 1] < 0)


def test_errors():
    model, data = linear_tabular()
    with pytest.raises(ValueError, match=r"needs training_data of shape \(n, 4\)"):
        Lime(model).analyze(data[:2])
    with pytest.raises(ValueError, match=r"needs background data of shape \(n, 4\)"):
        KernelShap(model).analyze(data[:2])
    with pytest.raises(ValueError, match=r"Unknown segmentation. Received: segmentation='sluc'"):
        Lime(model, segmentation="sluc")
    sequence = keras.Sequential(
        [keras.Input((5, 3)), keras.layers.Flatten(), keras.layers.Dense(2)]
    )
    with pytest.raises(ValueError, match=r"tabular inputs \(batch, features\) and images"):
        Lime(sequence).analyze(np.ones((1, 5, 3), "float32"))
    with pytest.raises(ValueError, match=r"must return one row of scores per input row"):
        KernelShap(lambda z: np.ones(3), background=data[:5]).analyze(data[:2])


@pytest.mark.parametrize(
    "blocked, analyzer, kwargs, extra",
    [
        ("lime", Lime, {"training_data": "data"}, "lime"),
        ("shap", KernelShap, {"background": "data"}, "shap"),
        ("skimage", KernelShap, {"segmentation": "slic"}, "shap"),
        ("skimage", Lime, {"segmentation": "quickshift"}, "lime"),
    ],
)
def test_missing_optional_package_names_the_extra(monkeypatch, blocked, analyzer, kwargs, extra):
    for name in list(sys.modules):
        if name == blocked or name.startswith(blocked + "."):
            monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, blocked, None)
    model, data = linear_tabular()
    x = data[:1]
    if "segmentation" in kwargs:
        model, x = linear_image()
    kwargs = {key: data if value == "data" else value for key, value in kwargs.items()}
    with pytest.raises(ImportError, match=rf'pip install "keras-explain\[{extra}\]"'):
        analyzer(model, samples=10, **kwargs).analyze(x[:1])
