"""Receptive fields, top patches and occlusion fields against closed forms.

Expected values: the receptive-field recursion, published numbers for VGG16, gradients
taken with a plain ``tf.GradientTape`` on a Keras sub-model, and the occlusion drop of a
linear unit.
"""

from __future__ import annotations

import math
from itertools import product

import helpers
import keras
import numpy as np
import pytest
from helpers import feature_cnn as small_cnn

import keras_explain as kx
from keras_explain import features

layers = keras.layers


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
