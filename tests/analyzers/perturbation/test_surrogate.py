"""What LIME and KernelSHAP share: callables, errors, the value of switched-off superpixels."""

import helpers
import keras
import numpy as np
import pytest
from helpers import grid_labels, linear_tabular

import keras_explain as kx

pytest.importorskip("lime")
pytest.importorskip("shap")
pytest.importorskip("skimage")


def test_sklearn_pipeline_predict_proba():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = np.random.default_rng(3).normal(size=(80, 4))
    labels = (data[:, 0] - data[:, 1] > 0).astype(int)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression()).fit(data, labels)
    x = data[:2]
    values = kx.KernelShap(pipeline.predict_proba, background=data[:20], seed=0).analyze(x)
    chosen = pipeline.predict_proba(x).argmax(1)
    expected = pipeline.predict_proba(x)[np.arange(2), chosen] - pipeline.predict_proba(data[:20])[
        :, chosen
    ].mean(0)
    np.testing.assert_allclose(values.sum(1), expected, atol=1e-4)
    lime = kx.Lime(pipeline.predict_proba, training_data=data, samples=500, seed=0)
    lime.analyze(x, target=1)
    for explanation in lime.last_explanations:  # class 1 rises with x0, falls with x1
        weights = dict(explanation.local_exp[1])
        assert weights[0] > 0 and weights[1] < 0


def test_errors():
    model, data = linear_tabular()
    with pytest.raises(ValueError, match=r"needs training_data of shape \(n, 4\)"):
        kx.Lime(model).analyze(data[:2])
    with pytest.raises(ValueError, match=r"needs background data of shape \(n, 4\)"):
        kx.KernelShap(model).analyze(data[:2])
    with pytest.raises(ValueError, match=r"Unknown segmentation. Received: segmentation='sluc'"):
        kx.Lime(model, segmentation="sluc")
    sequence = keras.Sequential(
        [keras.Input((5, 3)), keras.layers.Flatten(), keras.layers.Dense(2)]
    )
    with pytest.raises(ValueError, match=r"tabular inputs \(batch, features\) and images"):
        kx.Lime(sequence).analyze(np.ones((1, 5, 3), "float32"))
    with pytest.raises(ValueError, match=r"must return one row of scores per input row"):
        kx.KernelShap(lambda z: np.ones(3), background=data[:5]).analyze(data[:2])


@pytest.mark.parametrize("analyzer", [kx.Lime, kx.KernelShap])
def test_the_default_switches_a_flat_superpixel_off(analyzer):
    # one superpixel is exactly the deciding square: its own mean colour is its colour,
    # so lime's hide_color=None never changes it; the image mean does
    images, _, masks = helpers.colour_square_task(4, 32, seed=2)
    model = helpers.colour_square_model(32)
    cells = np.arange(32)[:, None] // 8 * 4 + np.arange(32)[None, :] // 8 + 1
    results = {}
    for baseline in ("mean", "superpixel_mean", None):
        labels = np.where(masks, 0, cells[None]).astype(np.int32)
        results[baseline] = analyzer(
            model, segmentation=labels, samples=300, baseline=baseline, seed=0
        ).analyze(images)
    square = [results["mean"][i][masks[i]][0, 0] for i in range(4)]
    outside = [np.abs(results["mean"][i][~masks[i]]).max() for i in range(4)]
    assert all(s > o for s, o in zip(square, outside))
    hidden = [results["superpixel_mean"][i][masks[i]][0, 0] for i in range(4)]
    np.testing.assert_allclose(hidden, 0.0, atol=1e-6)  # the square never changes
    np.testing.assert_array_equal(results[None], results["superpixel_mean"])


def superpixel_means(image, labels):
    result = np.zeros_like(image)
    for segment in np.unique(labels):
        result[labels == segment] = image[labels == segment].mean(0)
    return result


@pytest.mark.parametrize("analyzer", [kx.Lime, kx.KernelShap])
@pytest.mark.parametrize("baseline", ["mean", "blur", "superpixel_mean", 0.25])
def test_switched_off_superpixels_take_the_baseline_value(analyzer, baseline):
    labels = grid_labels()
    image = np.random.default_rng(5).uniform(0.0, 1.0, (12, 12, 3)).astype("float32")
    expected = {
        "mean": np.broadcast_to(image.mean((0, 1)), image.shape),
        "blur": helpers.gaussian_blur_reference(image[None], 12 / 8)[0],  # sqrt(H W) / 8
        "superpixel_mean": superpixel_means(image, labels),
        0.25: np.full(image.shape, 0.25),
    }[baseline]
    recorded = []

    def f(z):
        recorded.append(np.asarray(z).copy())
        return np.asarray(z).reshape(len(z), -1).mean(1, keepdims=True)

    analyzer(f, segmentation=labels, samples=40, baseline=baseline, seed=0).analyze(image[None], 0)
    perturbed = np.concatenate(recorded)[1:]  # after the clean image
    kept = np.isclose(perturbed, image, atol=1e-6)
    hidden = np.isclose(perturbed, expected, atol=1e-5)
    assert np.all(kept | hidden) and (hidden & ~kept).any()


def test_baseline_errors():
    with pytest.raises(ValueError, match=r"Lime: unknown baseline. Received: baseline='median'"):
        kx.Lime(lambda z: z, baseline="median")
    with pytest.raises(TypeError, match=r"KernelShap: baseline \(the value of switched-off"):
        kx.KernelShap(lambda z: z, baseline=np.zeros(3))
