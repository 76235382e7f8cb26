"""LIME and KernelSHAP wrappers: recovery of linear models, images, errors."""

import sys
import warnings

import helpers
import keras
import numpy as np
import pytest

import keras_explain as kx

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
    helpers.seeded(0)
    model = keras.Sequential(
        [keras.Input((size, size, 3)), keras.layers.Flatten(), keras.layers.Dense(2)],
        name="linear_image",
    )
    images = np.random.default_rng(1).random((2, size, size, 3)).astype("float32")
    return model, images


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


@pytest.mark.parametrize("segmentation", ["quickshift", "slic", "felzenszwalb"])
def test_named_segmentations_run(segmentation):
    model, images = linear_image(16)
    result = kx.create_analyzer(
        "lime", model, segmentation=segmentation, samples=30, seed=0
    ).analyze(images[:1])
    assert result.shape == (1, 16, 16, 3) and np.isfinite(result).all()


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


# -- options reach the wrapped packages ---------------------------------------------------
def tanh_scorer(seed=0, features=10):
    """A numpy callable f(x) = tanh(x W) with 2 outputs, recording the rows it receives."""
    weights = np.random.default_rng(seed).normal(size=(features, 2))
    rows = []

    def f(z):
        rows.append(np.asarray(z).copy())
        return np.tanh(np.asarray(z) @ weights)

    return f, rows, weights


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
