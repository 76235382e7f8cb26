"""kx.features: activation maximization, receptive fields, top patches, occlusion fields.

Expected values come from closed forms written here: the optimum of a linear unit
under an L2 penalty, the receptive-field recursion, the Fourier parameterization
written with numpy's FFT and Lucid's published colour matrix, gradients taken with
a plain ``tf.GradientTape`` on a Keras sub-model, and the occlusion drop of a
linear unit.
"""

from __future__ import annotations

import math
from itertools import product

import helpers
import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_explain as kx
from keras_explain import features

layers = keras.layers

# Lucid's published colour matrix (lucid/optvis/param/color.py), copied from the source text
LUCID_SVD_SQRT = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])


# =====================================================================================
# maximize: a linear unit's optimum under an L2 penalty
# =====================================================================================
def linear_model(softmax=False, units=3, seed=0):
    """(6, 6, 3) -> Flatten -> Dense(units): every unit is linear in the image."""
    helpers.seeded(seed)
    inputs = keras.Input((6, 6, 3))
    h = layers.Flatten()(inputs)
    dense = layers.Dense(units, name="dense", activation="softmax" if softmax else None)
    model = keras.Model(inputs, dense(h))
    rng = np.random.default_rng(seed)
    kernel = rng.uniform(-1, 1, (108, units)).astype("float32")
    dense.set_weights([kernel, rng.normal(0, 1, units).astype("float32")])
    return model, kernel.reshape(6, 6, 3, units)


LAMBDA = 2.0  # L2 weight: optimum 0.5 + w / (2 λ) lies in (0.25, 0.75), inside (0, 1)


@pytest.mark.parametrize(
    ("name", "objective", "weights"),
    [
        ("neuron", lambda: features.neuron("dense", 1), lambda w: w[..., 1]),
        ("neuron by position", lambda: features.neuron("dense", (2,)), lambda w: w[..., 2]),
        ("channel", lambda: features.channel("dense", 0), lambda w: w[..., 0]),
        ("logit", lambda: features.logit(2), lambda w: w[..., 2]),
        (
            "direction",
            lambda: features.direction("dense", [1.0, -0.5, 0.25]),
            lambda w: w @ np.array([1.0, -0.5, 0.25]),
        ),
        (
            "combination",
            lambda: 0.5 * features.channel("dense", 0) - features.neuron("dense", 1),
            lambda w: 0.5 * w[..., 0] - w[..., 1],
        ),
    ],
)
def test_linear_unit_optimum_is_its_weights(name, objective, weights):
    # maximize w·x − λ Σ (x − 0.5)² has its optimum at x = 0.5 + w / (2λ); with the pixel
    # parameterization and no transforms, Adam gets there up to its residual oscillation
    model, kernel = linear_model(softmax=name == "logit")
    w = weights(kernel)
    (image,) = features.maximize(
        model,
        objective(),
        parameterization="pixel",
        transforms=None,
        regularizers=[features.l2(LAMBDA)],
        steps=400,
        learning_rate=0.1,
    )
    found = (image - 0.5).ravel()
    cosine = found @ w.ravel() / np.linalg.norm(found) / np.linalg.norm(w)
    assert cosine > 0.99
    np.testing.assert_allclose(image, 0.5 + w / (2 * LAMBDA), atol=0.02)


def test_l1_and_total_variation_penalties_change_the_optimum():
    # with λ1 Σ|x − 0.5| added, coordinates with |w_i| < λ1 stay at 0.5 (soft threshold),
    # the others move to 0.5 + (w_i − λ1 sign w_i) / (2 λ2)
    model, kernel = linear_model()
    w = kernel[..., 0]
    l1_weight = 0.5
    (image,) = features.maximize(
        model,
        features.channel("dense", 0),
        parameterization="pixel",
        transforms=None,
        regularizers=[features.l2(LAMBDA), features.l1(l1_weight)],
        steps=400,
        learning_rate=0.1,
    )
    expected = 0.5 + np.sign(w) * np.maximum(np.abs(w) - l1_weight, 0) / (2 * LAMBDA)
    np.testing.assert_allclose(image, expected, atol=0.03)
    smooth = features.maximize(
        model,
        features.channel("dense", 0),
        parameterization="pixel",
        transforms=None,
        regularizers=[features.l2(LAMBDA), features.total_variation(0.2)],
        steps=200,
        learning_rate=0.1,
    )
    rough = 0.5 + w / (2 * LAMBDA)  # the optimum without the total variation term

    def variation(image):  # Σ |x[i+1, j] − x[i, j]| + |x[i, j+1] − x[i, j]|
        return np.abs(np.diff(image, axis=0)).sum() + np.abs(np.diff(image, axis=1)).sum()

    assert variation(smooth[0]) < 0.7 * variation(rough)


# =====================================================================================
# maximize on a small CNN: the objective goes up, groups, seeds, value range
# =====================================================================================
ALIVE = keras.initializers.Constant(0.3)


def small_cnn(seed=0):
    helpers.seeded(seed)
    return keras.Sequential(
        [
            keras.Input((24, 24, 3)),
            # positive biases: conv1's ReLUs are alive on the grey initial images
            layers.Conv2D(6, 3, activation="relu", name="conv1", bias_initializer=ALIVE),
            layers.MaxPooling2D(),
            layers.Conv2D(8, 3, name="conv2", bias_initializer=ALIVE),
            layers.ReLU(),
            layers.GlobalAveragePooling2D(),
            layers.Dense(4, activation="softmax", name="head"),
        ]
    )


def channel_means(model, layer, images):
    """Per-image mean of every channel of ``layer``, from a plain Keras sub-model."""
    sub = keras.Model(model.inputs[0], model.get_layer(layer).output)
    return sub(images).numpy().mean(axis=(1, 2))


def test_objectives_go_up_each_in_its_own_group():
    model = small_cnn()
    objectives = [features.channel("conv2", 3), features.channel("conv2", 5)]
    kwargs = dict(batch=2, seed=1)
    start = features.maximize(model, objectives, steps=0, **kwargs)
    end = features.maximize(model, objectives, steps=48, **kwargs)
    assert end.shape == (4, 24, 24, 3) and end.dtype == np.float32
    before, after = channel_means(model, "conv2", start), channel_means(model, "conv2", end)
    # rows 0, 1 optimize channel 3, rows 2, 3 channel 5: each group raises its own channel
    # and beats the other group on it
    assert np.all(after[:2, 3] > before[:2, 3] + 0.05)
    assert np.all(after[2:, 5] > before[2:, 5] + 0.05)
    assert after[:2, 3].min() > after[2:, 3].max()
    assert after[2:, 5].min() > after[:2, 5].max()


def test_negated_objective_goes_down():
    model = small_cnn()
    kwargs = dict(seed=2, transforms=None)
    start = features.maximize(model, -features.channel("conv1", 2), steps=0, **kwargs)
    end = features.maximize(model, -features.channel("conv1", 2), steps=32, **kwargs)
    assert channel_means(model, "conv1", end)[0, 2] < channel_means(model, "conv1", start)[0, 2]


def test_same_seed_same_image_and_value_range():
    model = small_cnn()
    kwargs = dict(steps=8, value_range=(-1.0, 1.0))
    first = features.maximize(model, features.logit(1), seed=3, **kwargs)
    again = features.maximize(model, features.logit(1), seed=3, **kwargs)
    other = features.maximize(model, features.logit(1), seed=4, **kwargs)
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 1e-3
    # strictly inside (-1, 1) and centred on its middle 0, not on (0, 1)'s 0.5
    assert -1 < first.min() and first.max() < 1
    assert abs(float(first.mean())) < 0.2


def test_init_starts_from_the_given_images():
    model = small_cnn()
    start = np.random.default_rng(5).uniform(0.2, 0.8, (2, 24, 24, 3)).astype("float32")
    for parameterization in ("pixel", "fourier"):
        same = features.maximize(
            model, [features.logit(0)] * 2, steps=0, init=start, parameterization=parameterization
        )
        np.testing.assert_allclose(same, start, atol=1e-5)
    one = features.maximize(model, features.logit(0), steps=0, init=start[0])
    np.testing.assert_allclose(one[0], start[0], atol=1e-5)
    with pytest.raises(ValueError, match=r"init must be finite images of shape \(1, 24, 24, 3\)"):
        features.maximize(model, features.logit(0), init=np.zeros((24, 24)))


def test_size_other_than_the_model_input_is_resized_for_it():
    model = small_cnn()
    images = features.maximize(model, features.channel("conv1", 0), size=(40, 32), steps=2)
    assert images.shape == (1, 40, 32, 3)


def test_transforms_move_the_image_as_documented():
    image = np.random.default_rng(6).uniform(0, 1, (1, 9, 9, 2)).astype("float32")
    seed = tf.constant([0, 1])
    still = features.Transforms(jitter=0, fine_jitter=0, scales=(1.0,), angles=(0,))
    np.testing.assert_allclose(still(image, seed, 0.5), image, atol=1e-6)
    # a quarter turn about the centre of a square image is a permutation of its pixels
    turn = features.Transforms(jitter=0, fine_jitter=0, scales=(1.0,), angles=(90,))
    turned = turn(image, seed, 0.5).numpy()
    assert any(np.allclose(turned, np.rot90(image, k, axes=(1, 2)), atol=1e-5) for k in (1, 3))
    # a shift by (dy, dx) moves the content and brings in the fill value
    moved = features.Transforms(jitter=2, fine_jitter=0, scales=(1.0,), angles=(0,))
    out = moved(image, seed, -1.0).numpy()[0]
    shifts = [
        (dy, dx)
        for dy in range(-2, 3)
        for dx in range(-2, 3)
        if np.allclose(
            out[max(dy, 0) : 9 + min(dy, 0), max(dx, 0) : 9 + min(dx, 0)],
            image[0, max(-dy, 0) : 9 + min(-dy, 0), max(-dx, 0) : 9 + min(-dx, 0)],
            atol=1e-5,
        )
    ]
    assert len(shifts) == 1
    dy, dx = shifts[0]
    assert (dy, dx) != (0, 0) and np.all(out[: max(dy, 0)] == -1.0)


# =====================================================================================
# The Fourier parameterization
# =====================================================================================
@pytest.mark.parametrize(("height", "width", "channels"), [(8, 8, 3), (7, 10, 3), (9, 5, 1)])
def test_fourier_image_matches_the_formula_and_round_trips(height, width, channels):
    rng = np.random.default_rng(0)
    param = features.Fourier((2, height, width, channels), value_range=(-2.0, 3.0))
    params = rng.normal(size=(2, 2, channels, height, width // 2 + 1)).astype("float32")
    # Olah et al. 2017 / Lucid: spectrum * 1 / max(f, 1 / max(H, W)) * sqrt(H W), irfft,
    # / 4, colour mixing by Lucid's matrix normalized to a largest column norm of 1
    f = np.sqrt(np.fft.fftfreq(height)[:, None] ** 2 + np.fft.rfftfreq(width)[None] ** 2)
    scale = np.sqrt(height * width) / np.maximum(f, 1 / max(height, width))
    spectrum = (params[0] + 1j * params[1]) * scale
    t = np.fft.irfft2(spectrum, s=(height, width)).transpose(0, 2, 3, 1) / 4
    if channels == 3:
        t = t @ (LUCID_SVD_SQRT / np.linalg.norm(LUCID_SVD_SQRT, axis=0).max()).T
    expected = -2.0 + 5.0 / (1 + np.exp(-t))
    image = param.image(tf.constant(params)).numpy()
    np.testing.assert_allclose(image, expected, rtol=1e-5, atol=1e-5)
    # image -> spectrum -> image, to float32 rounding
    images = rng.uniform(-1.5, 2.5, (2, height, width, channels)).astype("float32")
    np.testing.assert_allclose(param.image(param.params(images)), images, atol=2e-5)


def test_pixel_parameterization_round_trips():
    param = features.Pixel((1, 4, 5, 2), value_range=(0.0, 255.0))
    images = np.random.default_rng(1).uniform(1, 254, (1, 4, 5, 2)).astype("float32")
    np.testing.assert_allclose(param.image(param.params(images)), images, rtol=1e-5)


# =====================================================================================
# receptive_field: the closed form, and gradients
# =====================================================================================
def closed_form(ops, lengths):
    """The receptive-field recursion, one (kernel, stride, dilation, padding) op at a time.

    r_out = r_in + (k - 1) d j_in,  j_out = j_in s,  start_out = start_in - p_before j_in,
    with p_before = 0 ("valid"), (k - 1) d ("causal"), or half (rounded down) of
    TensorFlow's total "same" padding max((ceil(n / s) - 1) s + (k - 1) d + 1 - n, 0).
    ``("pad", before)`` is zero padding (a negative ``before`` is cropping).
    """
    r, j, start = 1, 1, 0
    n = lengths
    for op in ops:
        if op[0] == "pad":
            start -= op[1] * j
            n = n + op[1] + op[2]
            continue
        k, s, d, padding = op
        extent = (k - 1) * d + 1
        if padding == "same":
            before = max((math.ceil(n / s) - 1) * s + extent - n, 0) // 2
            n = math.ceil(n / s)
        elif padding == "causal":
            before = extent - 1
            n = n
        else:
            before = 0
            n = (n - extent) // s + 1
        r, j, start = r + (k - 1) * d * j, j * s, start - before * j
    return r, j, start


def conv(k, s=1, d=1, padding="valid", name=None):
    return layers.Conv2D(2, k, strides=s, dilation_rate=d, padding=padding, name=name)


CASES = {
    # VGG-style: two 3x3 'same' convolutions and a 2x2 pool, twice, then a 3x3
    "vgg": (
        lambda: (
            [conv(3, padding="same"), conv(3, padding="same"), layers.MaxPooling2D()]
            + [conv(3, padding="same"), conv(3, padding="same"), layers.MaxPooling2D()]
            + [conv(3, padding="same", name="unit")]
        ),
        [(3, 1, 1, "same"), (3, 1, 1, "same"), (2, 2, 1, "valid")] * 2 + [(3, 1, 1, "same")],
    ),
    "strided": (
        lambda: [conv(5, s=2), conv(3, s=2, padding="same", name="unit")],
        [(5, 2, 1, "valid"), (3, 2, 1, "same")],
    ),
    "dilated": (
        lambda: [conv(3, d=2, padding="same"), conv(3, d=3, name="unit")],
        [(3, 1, 2, "same"), (3, 1, 3, "valid")],
    ),
    "padded_and_cropped": (
        lambda: [
            layers.ZeroPadding2D(((2, 1), (3, 0))),
            conv(3, s=2),
            layers.Cropping2D(((1, 0), (0, 2))),
            layers.AveragePooling2D(3, strides=2, padding="same", name="unit"),
        ],
        [("pad", 2, 1), (3, 2, 1, "valid"), ("pad", -1, 0), (3, 2, 1, "same")],
        [("pad", 3, 0), (3, 2, 1, "valid"), ("pad", 0, -2), (3, 2, 1, "same")],
    ),
    "pool_overlapping_and_depthwise": (
        lambda: [
            layers.MaxPooling2D(3, strides=2, padding="same"),
            layers.DepthwiseConv2D(4, strides=2),
            layers.BatchNormalization(),
            layers.ReLU(),
            layers.SeparableConv2D(2, 3, dilation_rate=2, padding="same", name="unit"),
        ],
        [(3, 2, 1, "same"), (4, 2, 1, "valid"), (3, 1, 2, "same")],
    ),
}


def case_model(name, size=(37, 33)):
    helpers.seeded(0)
    return keras.Sequential([keras.Input((*size, 2)), *CASES[name][0]()])


@pytest.mark.parametrize("name", sorted(CASES))
def test_receptive_field_equals_the_closed_form(name):
    size = (37, 33)
    model = case_model(name, size)
    ops_rows, *ops_cols = CASES[name][1:]
    ops_cols = ops_cols[0] if ops_cols else ops_rows
    expected = [closed_form(ops, n) for ops, n in zip((ops_rows, ops_cols), size)]
    field = features.receptive_field(model, "unit")
    assert field.size == tuple(e[0] for e in expected)
    assert field.stride == tuple(e[1] for e in expected)
    assert field.offset == tuple(e[2] for e in expected)
    assert field.output_shape == tuple(model.get_layer("unit").output.shape[1:3])


def test_vgg16_fields_match_the_published_numbers():
    # VGG16's field is 212 pixels at a stride of 32 after its last pooling layer (Araujo
    # et al. 2019, "Computing Receptive Fields of Convolutional Neural Networks", Distill,
    # table of architectures); block5_conv3, before that 2x2 pool at stride 16, sees 196
    model = keras.applications.VGG16(weights=None, include_top=False, input_shape=(64, 64, 3))
    conv5 = features.receptive_field(model, "block5_conv3")
    pool5 = features.receptive_field(model, "block5_pool")
    assert (conv5.size, conv5.stride) == ((196, 196), (16, 16))
    assert (pool5.size, pool5.stride) == ((212, 212), (32, 32))


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradient_of_a_unit_is_nonzero_exactly_inside_its_field(name):
    model = case_model(name)
    sub = keras.Model(model.inputs[0], model.get_layer("unit").output)
    field = features.receptive_field(model, "unit")
    # max pools and ReLUs pass the gradient to some pixels of a sample only: the union over
    # 16 random samples reaches the edges of the field
    x = helpers.data((37, 33, 2), batch=16, seed=1)
    out_h, out_w = field.output_shape
    for position in [(0, 0), (out_h // 2, out_w // 3), (out_h - 1, out_w - 1)]:
        gradient = helpers.tape_gradient(sub, x, lambda out, p=position: out[:, p[0], p[1], 0])
        nonzero = np.argwhere(np.abs(gradient).sum(axis=(0, -1)) > 0)
        region = field.region(position)
        # the smallest box holding the nonzero gradient is the field clipped to the image
        assert tuple(nonzero.min(axis=0)) == (region[0].start, region[1].start)
        assert tuple(nonzero.max(axis=0) + 1) == (region[0].stop, region[1].stop)


def test_receptive_field_through_a_nested_model_and_a_merge():
    helpers.seeded(0)
    inner = keras.Sequential([keras.Input((20, 20, 1)), conv(3), conv(3, s=2)], name="inner")
    inputs = keras.Input((20, 20, 1))
    h = inner(inputs)  # r 5, j 2, start 0
    a = conv(3, padding="same")(h)  # r 9, start -2
    b = conv(1)(h)  # r 5, start 0
    outputs = layers.Add(name="unit")([a, b])  # union: r 9, start -2
    model = keras.Model(inputs, outputs)
    field = features.receptive_field(model, "unit")
    assert (field.size, field.stride, field.offset) == ((9, 9), (2, 2), (-2, -2))
    assert features.receptive_field(model, "inner").size == (5, 5)


@pytest.mark.parametrize(
    "dilations, size, offset, regions",
    [
        # one layer, k = 3: size (k − 1) d + 1; 'same' pads (k − 1) d = 2d cells, d before,
        # so offset −d and unit i reads i − d .. i + d, clipped to 0 .. 19
        ((3,), 7, -3, {0: (0, 4), 10: (7, 14), 19: (16, 20)}),
        ((4,), 9, -4, {0: (0, 5), 10: (6, 15), 19: (15, 20)}),
        # stacked: sizes add their (k − 1) d = 6 + 8 cells, offsets add: −7; i − 7 .. i + 7
        ((3, 4), 15, -7, {0: (0, 8), 10: (3, 18), 19: (12, 20)}),
    ],
)
def test_dilated_same_convolutions_pad_half_their_dilated_extent(dilations, size, offset, regions):
    helpers.seeded(0)
    convolutions = [
        layers.Conv1D(1, 3, dilation_rate=d, padding="same", name=f"conv{i}")
        for i, d in enumerate(dilations)
    ]
    model = keras.Sequential([keras.Input((20, 1)), *convolutions])
    unit = convolutions[-1].name
    field = features.receptive_field(model, unit)
    assert (field.size, field.stride, field.offset) == ((size,), (1,), (offset,))
    assert field.output_shape == (20,)
    # the independent reference: a linear dilated convolution reads taps i + c d, c in
    # {−1, 0, 1} (zero padding elsewhere), so output unit i has a non-zero gradient
    # exactly at i + sum of one tap per layer that lands inside the input
    taps = {
        sum(c * d for c, d in zip(cs, dilations))
        for cs in product((-1, 0, 1), repeat=len(dilations))
    }
    x = helpers.data((20, 1), seed=2, batch=1)
    for position, (start, stop) in regions.items():
        gradient = helpers.tape_gradient(model, x, lambda out, p=position: out[:, p, 0])
        support = set(np.flatnonzero(gradient[0, :, 0]).tolist())
        assert support == {position + t for t in taps if 0 <= position + t < 20}
        assert (min(support), max(support) + 1) == (start, stop)
        assert field.region((position,)) == (slice(start, stop),)


# =====================================================================================
# top_patches and occlusion_receptive_field
# =====================================================================================
def patch_model():
    helpers.seeded(0)
    return keras.Sequential(
        [
            keras.Input((10, 9, 2)),
            layers.Conv2D(3, 3, padding="same", name="a"),
            layers.Conv2D(3, 3, strides=2, name="unit"),
        ]
    )


def test_top_patches_are_the_most_active_samples_cut_at_the_field():
    model = patch_model()
    x = helpers.data((10, 9, 2), batch=7, seed=2)
    result = features.top_patches(model, "unit", x, 2, k=3, batch_size=3, fill=-9.0)
    # reference: the unit's map from a Keras sub-model, one maximum per sample
    maps = keras.Model(model.inputs[0], model.get_layer("unit").output)(x).numpy()[..., 2]
    best = maps.reshape(7, -1).max(axis=1)
    order = np.argsort(-best)[:3]
    np.testing.assert_array_equal(result.samples, order)
    np.testing.assert_allclose(result.activations, best[order], rtol=1e-5)
    assert result.patches.shape == (3, 5, 5, 2)  # two 3x3 convs, the second of stride 2
    for patch, sample in zip(result.patches, result.samples):
        row, col = np.unravel_index(np.argmax(maps[sample]), maps.shape[1:])
        # unit (row, col) reads input rows 2 row - 1 .. 2 row + 3 ('same' pads 1 before)
        padded = np.pad(x[sample], ((1, 4), (1, 4), (0, 0)), constant_values=-9.0)
        np.testing.assert_array_equal(patch, padded[2 * row : 2 * row + 5, 2 * col : 2 * col + 5])


def test_occlusion_field_of_a_linear_unit_is_input_times_gradient():
    # one-pixel windows, baseline 0, a linear unit: the drop at pixel p is Σ_c w_pc x_pc,
    # i.e. (x * ∇a) summed over channels, nonzero only inside the field
    model = patch_model()
    x = helpers.data((10, 9, 2), batch=2, seed=3)
    result = features.occlusion_receptive_field(
        model, "unit", x, 1, position=(2, 1), window=1, stride=1
    )
    sub = keras.Model(model.inputs[0], model.get_layer("unit").output)
    gradient = helpers.tape_gradient(sub, x, lambda out: out[:, 2, 1, 1])
    np.testing.assert_allclose(result.maps, (x * gradient).sum(axis=-1), atol=1e-5)
    # outside the field the clean and occluded passes differ by float32 rounding at most
    # (the two run in batches of different sizes, so the kernels may sum in another order)
    assert np.abs(result.maps[:, 8:, :]).max() < 1e-5 and np.abs(result.maps[:, :, 6:]).max() < 1e-5
    np.testing.assert_array_equal(result.positions, [[2, 1], [2, 1]])


def test_occlusion_field_defaults_to_the_most_active_position():
    model = patch_model()
    x = helpers.data((10, 9, 2), batch=2, seed=4)
    result = features.occlusion_receptive_field(model, "unit", x, 0, window=2)
    maps = keras.Model(model.inputs[0], model.get_layer("unit").output)(x).numpy()[..., 0]
    for sample in range(2):
        expected = np.unravel_index(np.argmax(maps[sample]), maps.shape[1:])
        assert tuple(result.positions[sample]) == tuple(expected)
        # a 2-pixel window changes the unit only when it overlaps its 5x5 field
        region = kx.features.receptive_field(model, "unit").region(expected)
        outside = np.ones((10, 9), bool)
        # windows starting at p - 1 .. q - 1 overlap a field [p, q) and cover pixels p - 1 .. q
        rows = slice(max(region[0].start - 1, 0), region[0].stop + 1)
        outside[rows, max(region[1].start - 1, 0) : region[1].stop + 1] = False
        assert np.abs(result.maps[sample][outside]).max() < 1e-5  # float32 rounding
        assert np.abs(result.maps[sample][~outside]).max() > 1e-2


# =====================================================================================
# Bad input: clear errors, raised before any optimization
# =====================================================================================
def test_unknown_layer_lists_the_layers_before_optimizing():
    model = small_cnn()
    with pytest.raises(ValueError, match=r"No layer named 'conv9'.*Available layers: \[.*'conv1'"):
        features.maximize(model, features.channel("conv9", 0), steps=10**9)


@pytest.mark.parametrize(
    ("objective", "message"),
    [
        (lambda: features.channel("conv2", 8), r"has 8 channels.*Received: index 8"),
        (lambda: features.neuron("conv1", (22, 0, 0)), r"outputs \(22, 22, 6\).*\(22, 0, 0\)"),
        (lambda: features.neuron("head", 4), r"4 elements per sample.*Received: index 4"),
        (lambda: features.logit(-1), r"has 4 channels.*Received: index -1"),
        (lambda: features.direction("conv1", [1.0, 2.0]), r"one entry per channel.*\(6\)"),
    ],
)
def test_indices_out_of_range_fail_before_optimizing(objective, message):
    with pytest.raises(ValueError, match=message):
        features.maximize(small_cnn(), objective(), steps=10**9)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"value_range": (1.0, 0.0)}, r"value_range must be \(low, high\).*\(1.0, 0.0\)"),
        ({"size": (0, 5)}, r"size must be \(height, width\).*\(0, 5\)"),
        ({"steps": -1}, r"steps must be an int >= 0.*steps=-1"),
        ({"parameterization": "wavelet"}, r"Received: parameterization='wavelet'"),
        ({"transforms": "heavy"}, r"transforms must be \"standard\".*'heavy'"),
        ({"regularizers": ["tv"]}, r"regularizers must be a list.*\['tv'\]"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError if "regularizers" not in kwargs else TypeError, match=message):
        features.maximize(small_cnn(), features.logit(0), **kwargs)


def test_objective_of_the_wrong_type():
    with pytest.raises(TypeError, match=r"needs an Objective.*Received: objective='conv1'"):
        features.maximize(small_cnn(), "conv1")
    with pytest.raises(ValueError, match=r"non-negative weight.*weight=-1"):
        features.l2(-1)


def test_layers_without_spatial_axes_have_no_field():
    model = small_cnn()
    with pytest.raises(ValueError, match=r"Layer 'head' has no spatial axes.*layer='head'"):
        features.receptive_field(model, "head")
    with pytest.raises(ValueError, match=r"Layer 'head' has no spatial axes"):
        features.top_patches(model, "head", np.zeros((2, 24, 24, 3)), 0)
    with pytest.raises(ValueError, match=r"layer 'conv2' has 8 channels.*channel=8"):
        features.top_patches(model, "conv2", np.zeros((2, 24, 24, 3)), 8)
    with pytest.raises(ValueError, match=r"spatial shape \(9, 9\).*position=\(9, 0\)"):
        features.occlusion_receptive_field(
            model, "conv2", np.zeros((1, 24, 24, 3)), 0, position=(9, 0)
        )


def test_upsampling_is_not_a_window():
    model = keras.Sequential(
        [keras.Input((8, 8, 1)), layers.UpSampling2D(), layers.Conv2D(1, 3, name="unit")]
    )
    with pytest.raises(ValueError, match=r"cannot follow layer 'up_sampling2d.*\(8, 8\) -> \(16"):
        features.receptive_field(model, "unit")
