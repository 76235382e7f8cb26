"""CAM options: signed maps (``rectify=False``), ``interpolation``, Faster Score-CAM
(``max_n``) and 3-D volumes, each against a numpy reference written from its definition.

The resizing reference is a separable matrix per axis with half-pixel centers
(output ``i`` samples the input at ``(i + 0.5) * old / new - 0.5``), clamped at the
edges: linear, nearest (input ``floor((i + 0.5) * old / new)``, the scale in float32
as TensorFlow computes it) and Keys' cubic (a = -0.5, taps outside the input dropped
and the weights renormalized, the fraction rounded to 1/1024 as TensorFlow's
coefficient table does). It is checked against ``scipy.ndimage.zoom`` (``grid_mode=True``:
half-pixel centers) for the linear and nearest cases.
"""

import helpers
import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

import keras_explain as kx
from keras_explain._spatial import resize

layers = keras.layers
RECTIFIED = [kx.GradCAM, kx.GradCAMPlusPlus, kx.LayerCAM, kx.ScoreCAM]


# -- references ------------------------------------------------------------------------
def keys_cubic(distance, a=-0.5):
    d = np.abs(distance)
    near = (a + 2) * d**3 - (a + 3) * d**2 + 1
    far = a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def interpolation_matrix(old, new, interpolation):
    """``(new, old)`` weights of one axis, half-pixel centers."""
    out = np.arange(new)
    matrix = np.zeros((new, old))
    if interpolation == "nearest":
        scale = np.float32(old) / np.float32(new)
        source = np.floor((out.astype(np.float32) + np.float32(0.5)) * scale).astype(int)
        matrix[out, np.minimum(source, old - 1)] = 1.0
        return matrix
    position = (out + 0.5) * old / new - 0.5
    base = np.floor(position).astype(int)
    fraction = position - base
    if interpolation == "bilinear":
        for tap, weight in ((base, 1 - fraction), (base + 1, fraction)):
            np.add.at(matrix, (out, np.clip(tap, 0, old - 1)), weight)
        return matrix
    fraction = np.rint(fraction * 1024) / 1024
    for offset in (-1, 0, 1, 2):
        tap = base + offset
        inside = (tap >= 0) & (tap < old)
        np.add.at(matrix, (out[inside], tap[inside]), keys_cubic(fraction - offset)[inside])
    return matrix / matrix.sum(axis=1, keepdims=True)


def resize_reference(maps, size, interpolation="bilinear"):
    """Separable resize of ``(B, *spatial)`` maps to ``(B, *size)``."""
    out = np.asarray(maps, np.float64)
    for axis, new in enumerate(size, start=1):
        matrix = interpolation_matrix(out.shape[axis], new, interpolation)
        out = np.moveaxis(np.tensordot(matrix, np.moveaxis(out, axis, 0), axes=1), 0, axis)
    return out


def grad_cam_signed(activations, gradient):
    """``sum_c mean(d y / d A_c) A_c``, no ReLU (Selvaraju et al. before their ReLU)."""
    weights = gradient.mean(axis=tuple(range(1, gradient.ndim - 1)))
    return np.einsum("b...c,bc->b...", activations, weights)


def score_cam_reference(activations, x, scores_of, interpolation="bilinear", max_n=None):
    """Wang et al. 2020, and Faster Score-CAM for ``max_n``: written sample by sample.

    Faster Score-CAM (tf-keras-vis ``Scorecam(max_N=...)``): keep the ``max_n``
    channels whose activation map has the largest variance; the masks, the softmax
    over channels and the weighted sum use those channels only. No ReLU here.
    """
    size = x.shape[1:-1]
    result = []
    for b in range(len(x)):
        channels = np.arange(activations.shape[-1])
        if max_n is not None:
            variance = activations[b].reshape(-1, activations.shape[-1]).var(axis=0)
            channels = np.argsort(-variance, kind="stable")[:max_n]
        scores = []
        for k in channels:
            mask = resize_reference(activations[b : b + 1, ..., k], size, interpolation)[0]
            span = mask.max() - mask.min()
            mask = (mask - mask.min()) / span if span > 0 else np.zeros_like(mask)
            scores.append(scores_of((x[b] * mask[..., None]).astype(np.float32)[None], b))
        weights = np.exp(np.array(scores) - max(scores))
        weights /= weights.sum()
        result.append(np.einsum("...c,c->...", activations[b][..., channels], weights))
    return np.stack(result)


# -- models ----------------------------------------------------------------------------
def pre_activation_cnn(seed=0):
    """Conv (no activation) -> ReLU -> Conv -> GAP -> Dense: a layer with signed maps."""
    helpers.seeded(seed)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 2)),
            layers.Conv2D(4, 3, padding="same", name="conv_pre"),
            layers.ReLU(name="relu"),
            layers.MaxPooling2D(name="pool"),
            layers.Conv2D(5, 3, padding="same", name="last_conv"),
            layers.GlobalAveragePooling2D(),
            layers.Dense(3, name="head"),
        ],
        name="pre_activation_cnn",
    )
    return helpers.randomize_biases(model)


def conv1d_model(seed=0):
    helpers.seeded(seed)
    model = keras.Sequential(
        [
            keras.Input((12, 2)),
            layers.Conv1D(4, 3, activation="relu", name="c1"),
            layers.MaxPooling1D(name="p1"),
            layers.Conv1D(5, 3, padding="same", name="c2"),
            layers.GlobalAveragePooling1D(),
            layers.Dense(3, name="head"),
        ],
        name="conv1d",
    )
    return helpers.randomize_biases(model)


def conv3d_model(seed=0):
    """Volumes (4, 6, 8, 1): Conv3D -> MaxPooling3D (2, 2, 4) -> Conv3D -> GAP -> Dense."""
    helpers.seeded(seed)
    model = keras.Sequential(
        [
            keras.Input((4, 6, 8, 1)),
            layers.Conv3D(3, 3, padding="same", activation="relu", name="conv_a"),
            layers.MaxPooling3D((2, 2, 4), name="pool"),
            layers.Conv3D(4, 3, padding="same", activation="relu", name="last_conv"),
            layers.GlobalAveragePooling3D(name="gap"),
            layers.Dense(3, name="head"),
        ],
        name="conv3d",
    )
    return helpers.randomize_biases(model)


def split(model, name):
    """front/back callables of a Sequential model cut after layer ``name`` (eager calls)."""
    cut = [layer.name for layer in model.layers].index(name) + 1

    def front(x):
        for layer in model.layers[:cut]:
            x = layer(x)
        return x

    def back(h):
        for layer in model.layers[cut:-1]:
            h = layer(h)
        return helpers.logits_of(model.layers[-1], h)

    return front, back


def scorer(model, layer, x):
    """Activations of ``layer`` (float64), and the predicted class's logit of an input."""
    front, back = split(model, layer)
    activations = front(tf.constant(x)).numpy().astype(np.float64)
    predicted = np.argmax(back(front(tf.constant(x))).numpy(), 1)

    def scores_of(masked, b):
        return float(back(front(tf.constant(masked))).numpy()[0, predicted[b]])

    return activations, scores_of


# -- resizing --------------------------------------------------------------------------
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest", "bicubic"])
@pytest.mark.parametrize(
    "old, new",
    [
        ((3,), (12,)),
        ((5,), (12,)),
        ((3, 4), (8, 7)),
        ((2, 3, 4), (5, 7, 6)),
        ((2, 3, 4), (8, 6, 16)),
    ],
)
def test_resize_matches_the_separable_reference(interpolation, old, new):
    values = np.random.default_rng(0).normal(size=(2, *old, 3)).astype("float32")
    resized = resize(tf.constant(values), list(new), interpolation).numpy()
    assert resized.shape == (2, *new, 3)
    expected = np.stack(
        [resize_reference(values[..., c], new, interpolation) for c in range(3)], axis=-1
    )
    np.testing.assert_allclose(resized, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("old, new", [((3,), (12,)), ((5,), (12,)), ((2, 3, 4), (5, 7, 6))])
def test_resize_reference_is_scipy_zoom_with_half_pixel_centers(old, new):
    values = np.random.default_rng(1).normal(size=(2, *old))
    factors = (1, *(n / o for o, n in zip(old, new, strict=True)))
    for order, interpolation in ((1, "bilinear"), (0, "nearest")):
        zoomed = ndimage.zoom(values, factors, order=order, grid_mode=True, mode="nearest")
        np.testing.assert_allclose(
            resize_reference(values, new, interpolation), zoomed, rtol=1e-12, atol=1e-12
        )


def test_volume_resize_is_the_2d_resize_of_each_slice_when_depth_is_kept():
    values = np.random.default_rng(2).normal(size=(2, 3, 4, 5, 2)).astype("float32")
    for interpolation in ("bilinear", "nearest", "bicubic"):
        volume = resize(tf.constant(values), [3, 7, 9], interpolation).numpy()
        for depth in range(3):
            planes = tf.image.resize(values[:, depth], [7, 9], method=interpolation).numpy()
            np.testing.assert_array_equal(volume[:, depth], planes)


# -- rectify ---------------------------------------------------------------------------
def test_grad_cam_signed_map_is_the_closed_form_before_the_relu():
    model, x = pre_activation_cnn(), helpers.cam_images()
    activations, gradient = helpers.tape_values(*split(model, "last_conv"), x, 1)
    signed = kx.GradCAM(model, rectify=False, upsample=False).analyze(x, 1)
    expected = grad_cam_signed(activations, gradient)
    assert (expected < 0).any() and (expected > 0).any()
    np.testing.assert_allclose(signed, expected, rtol=1e-5, atol=1e-6)
    rectified = kx.GradCAM(model, upsample=False).analyze(x, 1)
    np.testing.assert_array_equal(rectified, np.maximum(signed, 0))
    upsampled = kx.GradCAM(model, rectify=False).analyze(x, 1)
    np.testing.assert_allclose(upsampled, resize_reference(expected, (8, 8)), atol=1e-6)


@pytest.mark.parametrize("method", RECTIFIED, ids=lambda method: method.__name__)
def test_rectify_false_is_the_map_before_the_relu(method):
    """Nearest resizing copies values, so it commutes with the ReLU: exact equality."""
    model, x = pre_activation_cnn(seed=3), helpers.cam_images(batch=2)
    signed = method(model, rectify=False, interpolation="nearest").analyze(x, 2)
    rectified = method(model, interpolation="nearest").analyze(x, 2)
    assert (signed < 0).any() and rectified.max() > 0
    np.testing.assert_array_equal(rectified, np.maximum(signed, 0))


def test_score_cam_signed_map_matches_the_reference():
    model, x = pre_activation_cnn(), helpers.cam_images(batch=2)
    activations, scores_of = scorer(model, "last_conv", x)
    expected = resize_reference(score_cam_reference(activations, x, scores_of), (8, 8))
    maps = kx.ScoreCAM(model, rectify=False).analyze(x)
    np.testing.assert_allclose(maps, expected, rtol=1e-4, atol=1e-5)


def test_rectify_is_checked_and_cam_has_none():
    with pytest.raises(TypeError, match=r"GradCAM: rectify must be True or False\. Received"):
        kx.GradCAM(pre_activation_cnn(), rectify="no")
    with pytest.raises(TypeError, match=r"CAM got an unexpected parameter 'rectify'"):
        kx.CAM(pre_activation_cnn(), rectify=False)
    assert "rectify" in kx.GuidedGradCAM.parameters()
    assert "rectify" not in kx.CAM.parameters()


# -- interpolation ---------------------------------------------------------------------
@pytest.mark.parametrize("interpolation", ["nearest", "bicubic"])
@pytest.mark.parametrize(
    "model_of, shape", [(pre_activation_cnn, (8, 8, 2)), (conv1d_model, (12, 2))]
)
def test_maps_are_upsampled_with_the_interpolation(interpolation, model_of, shape):
    model, x = model_of(), helpers.cam_images(shape)
    for method in (kx.GradCAM, kx.CAM):
        small = method(model, upsample=False).analyze(x, 0)
        large = method(model, interpolation=interpolation).analyze(x, 0)
        assert large.shape == (3, *shape[:-1])
        expected = resize_reference(small, shape[:-1], interpolation)
        np.testing.assert_allclose(large, expected, rtol=1e-5, atol=1e-6)


def test_guided_grad_cam_takes_the_options():
    model, x = pre_activation_cnn(), helpers.cam_images()
    options = {"interpolation": "nearest", "rectify": False}
    result = kx.GuidedGradCAM(model, **options).analyze(x, 1)
    maps = kx.GradCAM(model, **options).analyze(x, 1)
    np.testing.assert_array_equal(result, kx.GuidedBackprop(model).analyze(x, 1) * maps[..., None])


def test_score_cam_masks_use_the_interpolation():
    model, x = pre_activation_cnn(), helpers.cam_images(batch=2)
    activations, scores_of = scorer(model, "last_conv", x)
    for interpolation in ("nearest", "bicubic"):
        signed = score_cam_reference(activations, x, scores_of, interpolation)
        expected = resize_reference(signed, (8, 8), interpolation)
        maps = kx.ScoreCAM(model, interpolation=interpolation, rectify=False).analyze(x)
        np.testing.assert_allclose(maps, expected, rtol=1e-4, atol=1e-5)


def test_unknown_interpolation_is_rejected():
    with pytest.raises(
        ValueError,
        match=r"Unknown interpolation\. Received: interpolation='area'\. Expected one of "
        r"\('bilinear', 'nearest', 'bicubic'\)",
    ):
        kx.GradCAM(pre_activation_cnn(), interpolation="area")


# -- Faster Score-CAM ------------------------------------------------------------------
def test_max_n_of_every_channel_is_plain_score_cam():
    model, x = pre_activation_cnn(), helpers.cam_images()
    np.testing.assert_array_equal(
        kx.ScoreCAM(model, max_n=5).analyze(x), kx.ScoreCAM(model).analyze(x)
    )


@pytest.mark.parametrize("max_n", [1, 3])
def test_max_n_keeps_the_channels_of_largest_variance(max_n):
    model, x = pre_activation_cnn(), helpers.cam_images(batch=3)
    x = x * np.array([(3, 0), (0, 3), (1, -1)], "float32")[:, None, None, :]
    activations, scores_of = scorer(model, "last_conv", x)
    variance = activations.reshape(3, -1, 5).var(axis=1)
    tops = [frozenset(np.argsort(-row)[:max_n]) for row in variance]
    assert len(set(tops)) > 1  # the samples keep different channels
    expected = resize_reference(score_cam_reference(activations, x, scores_of, max_n=max_n), (8, 8))
    analyzer = kx.ScoreCAM(model, max_n=max_n, rectify=False)  # signed: every value counts
    maps = analyzer.analyze(x)
    np.testing.assert_allclose(maps, expected, rtol=1e-4, atol=1e-5)
    assert not np.allclose(maps, kx.ScoreCAM(model, rectify=False).analyze(x), atol=1e-3)
    # each sample keeps its own channels: its map does not depend on its batch
    np.testing.assert_allclose(analyzer.analyze(x, batch_size=1), maps, rtol=1e-6, atol=1e-7)


def test_bad_max_n_is_rejected():
    with pytest.raises(ValueError, match=r"max_n must be a positive int\. Received: max_n=0"):
        kx.ScoreCAM(pre_activation_cnn(), max_n=0)
    with pytest.raises(
        ValueError,
        match=r"ScoreCAM: max_n must be at most the 5 channels of layer 'last_conv'\. "
        r"Received: max_n=6",
    ):
        kx.ScoreCAM(pre_activation_cnn(), max_n=6)


# -- 3-D volumes -----------------------------------------------------------------------
def test_grad_cam_on_volumes_is_the_closed_form():
    model, x = conv3d_model(), helpers.cam_images((4, 6, 8, 1))
    analyzer = kx.GradCAM(model, upsample=False)
    assert analyzer.layer.name == "last_conv"
    activations, gradient = helpers.tape_values(*split(model, "last_conv"), x, 2)
    expected = np.maximum(grad_cam_signed(activations, gradient), 0)
    assert expected.shape == (3, 2, 3, 2) and expected.max() > 0
    np.testing.assert_allclose(analyzer.analyze(x, 2), expected, rtol=1e-5, atol=1e-6)
    for interpolation in ("bilinear", "nearest"):
        maps = kx.GradCAM(model, interpolation=interpolation).analyze(x, 2)
        assert maps.shape == (3, 4, 6, 8)
        np.testing.assert_allclose(
            maps, resize_reference(expected, (4, 6, 8), interpolation), rtol=1e-5, atol=1e-6
        )


@pytest.mark.parametrize(
    "name, reference",
    [
        ("grad_cam_pp", helpers.grad_cam_pp_reference),
        ("layer_cam", helpers.layer_cam_reference),
    ],
)
def test_gradient_weighted_variants_on_volumes(name, reference):
    model, x = conv3d_model(), helpers.cam_images((4, 6, 8, 1))
    activations, gradient = helpers.tape_values(*split(model, "last_conv"), x, 1)
    maps = kx.create_analyzer(name, model, upsample=False).analyze(x, 1)
    np.testing.assert_allclose(maps, reference(activations, gradient), rtol=1e-4, atol=1e-6)
    assert kx.create_analyzer(name, model).analyze(x, 1).shape == (3, 4, 6, 8)


def test_cam_on_volumes_is_the_gap_weight_formula():
    model, x = conv3d_model(), helpers.cam_images((4, 6, 8, 1))
    activations = split(model, "last_conv")[0](tf.constant(x)).numpy()
    kernel = model.get_layer("head").kernel.numpy()
    expected = np.einsum("bdhwc,c->bdhw", activations, kernel[:, 0])
    np.testing.assert_allclose(
        kx.CAM(model, upsample=False).analyze(x, 0), expected, rtol=1e-5, atol=1e-6
    )


def test_score_cam_and_guided_grad_cam_on_volumes():
    model, x = conv3d_model(), helpers.cam_images((4, 6, 8, 1), batch=2)
    activations, scores_of = scorer(model, "last_conv", x)
    for max_n in (None, 2):
        signed = score_cam_reference(activations, x, scores_of, max_n=max_n)
        expected = resize_reference(np.maximum(signed, 0), (4, 6, 8))
        assert expected.max() > 0
        maps = kx.ScoreCAM(model, max_n=max_n).analyze(x)
        np.testing.assert_allclose(maps, expected, rtol=1e-4, atol=1e-5)
    assert kx.GuidedGradCAM(model).analyze(x).shape == x.shape
