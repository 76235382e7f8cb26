"""Superpixels: the named algorithms, defaults at small sizes, the grid fallback, missing extras."""

import sys
import warnings

import helpers
import numpy as np
import pytest
from helpers import linear_image, linear_tabular

import keras_explain as kx

pytest.importorskip("lime")
pytest.importorskip("shap")
pytest.importorskip("skimage")


@pytest.mark.parametrize("segmentation", ["quickshift", "slic", "felzenszwalb"])
def test_named_segmentations_run(segmentation):
    model, images = linear_image(16)
    result = kx.create_analyzer(
        "lime", model, segmentation=segmentation, samples=30, seed=0
    ).analyze(images[:1])
    assert result.shape == (1, 16, 16, 3) and np.isfinite(result).all()


@pytest.mark.parametrize(
    "blocked, analyzer, kwargs, extra",
    [
        ("lime", kx.Lime, {"training_data": "data"}, "lime"),
        ("shap", kx.KernelShap, {"background": "data"}, "shap"),
        ("skimage", kx.KernelShap, {"segmentation": "slic"}, "shap"),
        ("skimage", kx.Lime, {"segmentation": "quickshift"}, "lime"),
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
    with pytest.raises(ImportError, match=rf'pip install "keras-explainer\[{extra}\]"'):
        analyzer(model, samples=10, **kwargs).analyze(x[:1])


# -- superpixels at every image size, switched off by a value that can hide any region ----
def segment_counts(analyzer):
    """Superpixels per image of the last call: lime's label maps or shap's values."""
    return [
        len(np.unique(item.segments)) if hasattr(item, "segments") else len(item.values)
        for item in analyzer.last_explanations
    ]


@pytest.mark.parametrize("algorithm", ["quickshift", "slic", "felzenszwalb"])
@pytest.mark.parametrize("size", [28, 32, 64])
def test_default_segmentations_give_tens_of_superpixels_at_small_sizes(algorithm, size):
    # lime's and skimage's defaults gave 1-2 segments on these images at 32 and 64 pixels
    images, _, _ = helpers.colour_square_task(2, size)
    f = lambda z: np.asarray(z).reshape(len(z), -1).mean(1, keepdims=True)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no grid fallback at these sizes
        analyzer = kx.Lime(f, segmentation=algorithm, samples=10, seed=0)
        analyzer.analyze(images, target=0)
    assert all(15 <= count <= 150 for count in segment_counts(analyzer))


def test_given_segmentation_options_are_used_as_they_are():
    images, _, _ = helpers.colour_square_task(2, 32)
    f = lambda z: np.asarray(z).reshape(len(z), -1).mean(1, keepdims=True)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # few segments asked for: no fallback, no warning
        analyzer = kx.KernelShap(
            f, segmentation_options={"n_segments": 4, "sigma": 1.0}, samples=20, seed=0
        )
        analyzer.analyze(images, target=0)
    assert all(count <= 4 for count in segment_counts(analyzer))
    # quickshift with lime's options (made for 224 pixels) gives 1-2 segments here
    lime = kx.Lime(
        f,
        segmentation_options={"kernel_size": 4, "max_dist": 200, "ratio": 0.2},
        samples=10,
        seed=0,
    )
    lime.analyze(images, target=0)
    assert all(count < 8 for count in segment_counts(lime))


FALLBACK = (
    r"{owner}: segmentation='quickshift' with its default options gave \d segment\(s\) on "
    r"{failed} of {batch} images of 8x8 pixels \(fewer than 8\); those images use a regular "
    r"grid of 64 cells of 1x1 pixels instead. To choose the superpixels, pass "
    r"segmentation_options= \(the scikit-image function's keyword arguments\) or "
    r"segmentation= \(another algorithm, a callable image -> labels, or a label map\)."
)


def test_tiny_images_fall_back_to_a_grid_and_warn_once():
    images, labels, masks = helpers.colour_square_task(10, 8)
    model = helpers.colour_square_model(8)
    analyzer = kx.Lime(model, seed=0)
    with pytest.warns(UserWarning, match=FALLBACK.format(owner="Lime", failed=10, batch=10)):
        result = analyzer.analyze(images)
    pixels = np.arange(64).reshape(8, 8)  # about 50 cells: one pixel each at 8x8
    for explanation in analyzer.last_explanations:
        np.testing.assert_array_equal(explanation.segments, pixels)
    assert helpers.top_inside(result, masks).mean() >= 0.9
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per analyzer
        analyzer.analyze(images[:2])
    shapley = kx.ShapleySampling(model, segmentation="quickshift", samples=4, seed=0)
    with pytest.warns(
        UserWarning, match=FALLBACK.format(owner="ShapleySampling", failed=3, batch=3)
    ):
        shapley.analyze(images[:3])


GROUND_TRUTH = {
    "lime": lambda model: kx.Lime(model, seed=0),
    "kernel_shap": lambda model: kx.KernelShap(model, seed=0),
    "shapley_sampling": lambda model: kx.ShapleySampling(model, segmentation="slic", seed=0),
}


def check_ground_truth(method, size, count):
    images, labels, masks = helpers.colour_square_task(count, size, seed=1)
    model = helpers.colour_square_model(size)
    np.testing.assert_array_equal(model(images).numpy().argmax(1), labels)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # default segmentation, no grid fallback
        result = GROUND_TRUTH[method](model).analyze(images)
    assert helpers.top_inside(result, masks).mean() >= 0.9


@pytest.mark.parametrize("method", sorted(GROUND_TRUTH))
@pytest.mark.parametrize("size", [32, 64])
def test_defaults_find_the_square_that_decides_the_class(method, size):
    # the model's class is the colour of one small uniform square (see helpers): the
    # largest attribution must fall inside it on >= 90% of images, with default settings
    check_ground_truth(method, size, count=8)


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(GROUND_TRUTH))
@pytest.mark.parametrize("size", [32, 64])
def test_defaults_find_the_square_that_decides_the_class_on_32_images(method, size):
    check_ground_truth(method, size, count=32)
