"""Where a unit looks: exact receptive fields, top dataset patches, occlusion fields.

:func:`receptive_field` follows the model's :class:`~keras_explain.graph.Plan`
from the input to a layer and composes, per spatial axis, the closed form of
each op: a window of ``k`` taps with dilation ``d``, stride ``s`` and
``p`` cells of padding before the first element maps a field ``(r, j, o)``
(size, jump between neighbouring units, input index of unit 0's first pixel) to

    r' = r + (k - 1) d j,    j' = j s,    o' = o - p j.

Which closed form an op has is its layer's ``field`` in the layer table
(:func:`keras_explain.graph.entry_of`): a window (convolutions, pooling),
padding, cropping, or ``"pointwise"``: element-wise and channel-wise ops
(activations, normalizations, Dense on the channel axis, ``Add``, ``Multiply``,
channel concatenation) keep the field. Several inputs merge into the union of
their fields.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_explain import _validate, graph
from keras_explain.analyzers.layer_output import LayerOutputs, activations
from keras_explain.analyzers.perturbation.occlusion import Occlusion


@dataclasses.dataclass(frozen=True)
class ReceptiveField:
    """The input region each unit of a layer depends on, per spatial axis.

    Unit ``i`` (along an axis) reads input indices
    ``offset + i * stride .. offset + i * stride + size - 1``; parts outside
    ``0 .. input_shape - 1`` are padding.

    Attributes:
        size: Field size per spatial axis.
        stride: Input distance between neighbouring units.
        offset: Input index of the first pixel of unit 0 (negative with padding).
        input_shape: The input's spatial shape (None where unknown).
        output_shape: The layer's spatial shape.
    """

    size: tuple[int, ...]
    stride: tuple[int, ...]
    offset: tuple[int, ...]
    input_shape: tuple[int | None, ...]
    output_shape: tuple[int | None, ...]
    _key: Any = dataclasses.field(repr=False, compare=False, default=None)
    _input: Any = dataclasses.field(repr=False, compare=False, default=None)
    _windows: tuple = dataclasses.field(repr=False, compare=False, default=())

    @property
    def center(self) -> tuple[float, ...]:
        """Input coordinate of the centre of unit 0's field."""
        return tuple(o + (s - 1) / 2 for o, s in zip(self.offset, self.size))

    def patch(self, image: np.ndarray, position: Sequence[int], fill: float = 0.0) -> np.ndarray:
        """The input patch ``(*size, channels)`` the unit at ``position`` reads.

        Args:
            image: One input ``(*spatial, channels)``.
            position: The unit's position in the layer.
            fill: The value of the parts of the field outside the image.

        Returns:
            The field's pixels, in place within the full field size.
        """
        patch = np.full((*self.size, image.shape[-1]), fill, image.dtype)
        region = self.region(position)
        inside = []
        for axis_slice, offset, i, stride in zip(region, self.offset, position, self.stride):
            start = offset + int(i) * stride
            inside.append(slice(axis_slice.start - start, axis_slice.stop - start))
        patch[tuple(inside)] = image[region]
        return patch

    def region(self, position: Sequence[int]) -> tuple[slice, ...]:
        """The input slices the unit at ``position`` depends on, exactly.

        The window ``offset + i * stride`` ``+ [0, size)`` clipped to the input,
        and further clipped wherever a layer on the way pads: cells of padding
        read no input.
        """
        intervals = {self._key: [(int(i), int(i)) for i in position]}
        for inputs, output, window in reversed(self._windows):
            if output not in intervals:
                continue
            span = []
            for (low, high), (k, s, d, p, n) in zip(intervals[output], window):
                low, high = max(low * s - p, 0), high * s - p + (k - 1) * d
                span.append((low, high if n is None else min(high, n - 1)))
            if any(low > high for low, high in span):
                continue  # the unit reads only padding here
            for key in inputs:
                old = intervals.get(key, span)
                intervals[key] = [(min(a[0], b[0]), max(a[1], b[1])) for a, b in zip(old, span)]
        return tuple(slice(low, high + 1) for low, high in intervals[self._input])


def receptive_field(model: keras.Model, layer: Any) -> ReceptiveField:
    """The exact receptive field of a layer's units, computed from the graph.

    Handles convolutions (stride, dilation, ``"valid"``, ``"same"`` and
    ``"causal"`` padding; depthwise and separable ones), max and average
    pooling, zero padding, cropping, and every op that works on each position
    separately; nested models are followed.

    Args:
        model: A built Functional or Sequential model with one input,
            channels last.
        layer: A layer name or object with spatial axes.

    Returns:
        The :class:`ReceptiveField`.

    Raises:
        ValueError: For an unknown layer, a layer without spatial axes
            (Dense after Flatten, global pooling), or an op on the way whose
            geometry is not a window (upsampling, transposed convolutions,
            reshapes).

    Example:
        >>> import keras
        >>> from keras_explain import features
        >>> model = keras.Sequential([keras.Input((32, 32, 3)),
        ...     keras.layers.Conv2D(4, 3, name="a"), keras.layers.MaxPooling2D(),
        ...     keras.layers.Conv2D(4, 3, name="b")])
        >>> field = features.receptive_field(model, "b")
        >>> field.size, field.stride, field.offset
        ((8, 8), (2, 2), (0, 0))
    """
    plan = graph.Plan(model)
    target = plan.find_layer(layer, "layer")
    key = plan.output_key_of(target)
    if len(plan.input_keys) != 1:
        raise ValueError(
            f"receptive_field needs a model with one input; model {model.name!r} has "
            f"{len(plan.input_keys)}."
        )
    input_shape = tuple(plan.input_specs[0].shape)
    output_shape = plan.shape_of(key)
    if output_shape is None or len(output_shape) < 3 or len(input_shape) != len(output_shape):
        raise ValueError(
            f"Layer {target.name!r} has no spatial axes matching the input's (output shape "
            f"{output_shape}, input shape {input_shape}), so its units have no receptive "
            f"field. Received: layer={layer!r}; pick a convolution or pooling layer."
        )
    rank = len(input_shape) - 2
    fields = {plan.input_keys[0]: ((1,) * rank, (1,) * rank, (0,) * rank)}
    windows = []
    needed, _ = plan.upstream([key])
    for step in plan.steps:
        if step not in needed:
            continue
        inputs = [k for k in step.inputs if k in fields]
        window = _step_window(plan, step, rank)
        merged = _union([fields[k] for k in inputs], step.op.name)
        fields[step.outputs[0]] = _apply(window, merged)
        windows.append((tuple(inputs), step.outputs[0], window))
    size, stride, offset = fields[key]
    return ReceptiveField(
        size,
        stride,
        offset,
        input_shape[1:-1],
        tuple(output_shape[1:-1]),
        key,
        plan.input_keys[0],
        tuple(windows),
    )


def _step_window(plan: graph.Plan, step: graph.Step, rank: int) -> tuple:
    """The op of ``step`` as one window per spatial axis.

    Each axis gets ``(k, s, d, p, n)``: taps, stride, dilation, cells of padding
    before the first element (negative: cropping) and input length (None: unknown).
    The layer table says which (:func:`_field_of`); the later ops of one layer
    call (a separable convolution's pointwise half, a fused activation) act on
    each position.
    """
    layer = step.op.layer
    lengths = _spatial_shape(plan, _source(plan, step.inputs[0])) or (None,) * rank
    identity = tuple((1, 1, 1, 0, n) for n in lengths)
    if _source(plan, step.inputs[0]) != step.inputs[0]:
        return identity  # a later op of the same layer call
    field = _field_of(layer)
    if field == "window":
        return _window(layer, lengths)
    if field in ("padding", "cropping"):
        amounts = layer.padding if field == "padding" else layer.cropping
        sign = 1 if field == "padding" else -1
        before = [pair[0] for pair in _pairs(amounts, rank)]
        return tuple((1, 1, 1, sign * p, n) for p, n in zip(before, lengths))
    in_shape = _spatial_shape(plan, step.inputs[0])
    out_shape = _spatial_shape(plan, step.outputs[0])
    if field != "pointwise" or out_shape is None or out_shape != in_shape:
        raise ValueError(
            f"receptive_field cannot follow layer {step.op.name!r} ({type(layer).__name__}, "
            f"spatial shape {in_shape} -> {out_shape}): its output is not a window of its "
            "input. Supported: convolutions, pooling, zero padding, cropping and ops on each "
            "position separately (the layer table's field; kx.graph.register_layer adds a "
            "layer)."
        )
    return identity


def _field_of(layer) -> str | None:
    """How the layer's receptive field composes: its entry's ``field`` in the layer table.

    A raw ``keras.ops`` call the table does not know (``ops.abs(x)``) counts as
    element-wise, and the spatial shape must then be kept; an unknown layer
    cannot be followed.
    """
    entry = graph.entry_of(layer)
    if entry is not None:
        return entry.field
    return None if isinstance(layer, keras.layers.Layer) else "pointwise"


def _window(layer, lengths) -> tuple:
    rank = len(lengths)
    kernel = _per_axis(getattr(layer, "kernel_size", None) or layer.pool_size, rank)
    strides = _per_axis(layer.strides or kernel, rank)
    dilation = _per_axis(getattr(layer, "dilation_rate", 1), rank)
    result = []
    for k, s, d, n in zip(kernel, strides, dilation, lengths):
        extent = (k - 1) * d + 1
        if layer.padding == "same":
            if n is None:
                raise ValueError(
                    f"receptive_field: layer {layer.name!r} pads 'same' on an input of unknown "
                    "size; give the model a fixed input size."
                )
            before = max((math.ceil(n / s) - 1) * s + extent - n, 0) // 2
        elif layer.padding == "causal":
            before = extent - 1
        else:
            before = 0
        result.append((k, s, d, before, n))
    return tuple(result)


def _apply(window: tuple, field: tuple) -> tuple:
    """The field after one op: r + (k - 1) d j, j s, o - p j per axis."""
    size, stride, offset = field
    return (
        tuple(r + (k - 1) * d * j for r, j, (k, _, d, _, _) in zip(size, stride, window)),
        tuple(j * s for j, (_, s, _, _, _) in zip(stride, window)),
        tuple(o - p * j for o, j, (_, _, _, p, _) in zip(offset, stride, window)),
    )


def _union(fields: list, name: str) -> tuple:
    if len(fields) == 1:
        return fields[0]
    strides = {field[1] for field in fields}
    if len(strides) != 1:
        raise ValueError(
            f"receptive_field: layer {name!r} merges values with different strides "
            f"{sorted(strides)}; their units have no common field."
        )
    starts = [min(f[2][a] for f in fields) for a in range(len(fields[0][0]))]
    ends = [max(f[2][a] + f[0][a] for f in fields) for a in range(len(fields[0][0]))]
    return tuple(e - s for s, e in zip(starts, ends)), fields[0][1], tuple(starts)


def _source(plan, key):
    """Follow the split parts of one layer call back to the value the layer read."""
    while "pre" in key:
        key = plan.producer(key).inputs[0]
    return key


def _spatial_shape(plan, key) -> tuple | None:
    shape = plan.shape_of(key)
    return None if shape is None else tuple(shape[1:-1])


def _per_axis(value, rank: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, tuple | list) else (int(value),) * rank


def _pairs(value, rank: int) -> tuple:
    if isinstance(value, int):
        return ((value, value),) * rank
    value = tuple(value)
    if rank == 1 and len(value) == 2 and isinstance(value[0], int):
        return (value,)
    return tuple((v, v) if isinstance(v, int) else tuple(v) for v in value)


@dataclasses.dataclass(frozen=True)
class Patches:
    """The dataset patches that activate a channel most.

    Attributes:
        patches: ``(k, *field.size, C)`` input patches, each the receptive field
            of the unit; parts of the field outside the image hold ``fill``.
        activations: ``(k,)`` the unit's activation, in decreasing order.
        samples: ``(k,)`` index of each patch's sample in ``x``.
        positions: ``(k, spatial axes)`` position of the unit in the layer.
        field: The layer's :class:`ReceptiveField`.
    """

    patches: np.ndarray
    activations: np.ndarray
    samples: np.ndarray
    positions: np.ndarray
    field: ReceptiveField


def top_patches(
    model: keras.Model,
    layer: Any,
    x: Any,
    channel: int,
    *,
    k: int = 9,
    batch_size: int | None = None,
    fill: float = 0.0,
) -> Patches:
    """The ``k`` inputs that activate a channel most, cut at the unit's receptive field.

    Each sample contributes at most one patch, at the position where the
    channel is largest (as Zeiler & Fergus 2014 show one patch per image).
    Activations are computed batch by batch with
    :class:`~keras_explain.analyzers.layer_output.LayerOutputs`; only the
    current best ``k`` patches are kept, so ``x`` may be a large dataset.

    Args:
        model: A built Functional or Sequential model with one input.
        layer: A layer name or object with spatial axes.
        x: Inputs: an array, a tensor, or a ``tf.data.Dataset`` of ``x`` or ``(x, y)``.
        channel: The channel of ``layer``.
        k: Number of patches.
        batch_size: Samples per batch for arrays (None: all at once).
        fill: Value of the parts of a field outside the image.

    Returns:
        The :class:`Patches`.

    Raises:
        ValueError: For an unknown layer, a layer without spatial axes, a
            channel out of range or ``k < 1``.

    Example:
        >>> import keras, numpy as np
        >>> from keras_explain import features
        >>> model = keras.Sequential([keras.Input((12, 12, 1)),
        ...                           keras.layers.Conv2D(2, 3, name="conv")])
        >>> x = np.random.default_rng(0).normal(size=(6, 12, 12, 1))
        >>> features.top_patches(model, "conv", x, 1, k=4).patches.shape
        (4, 3, 3, 1)
    """
    field = receptive_field(model, layer)
    outputs = LayerOutputs(model, [layer])
    channels = outputs.plan.shape_of(outputs.keys[0])[-1]
    _check_channel(channel, channels, outputs.layers[0].name, "top_patches")
    k = _validate.positive_int(k, "k")
    best: list[tuple] = []  # (activation, sample, position, patch)
    start = 0
    for inputs in _input_batches(x, batch_size):
        values = outputs.compute(inputs)[0][..., channel]
        flat = values.reshape(len(values), -1)
        for row, index in enumerate(np.argmax(flat, axis=1)):
            position = np.unravel_index(index, values.shape[1:])
            patch = field.patch(np.asarray(inputs[row]), position, fill)
            best.append((float(flat[row, index]), start + row, position, patch))
        best = sorted(best, key=lambda item: -item[0])[:k]
        start += len(values)
    return Patches(
        np.stack([item[3] for item in best]).astype(np.float32),
        np.array([item[0] for item in best], np.float32),
        np.array([item[1] for item in best], np.int64),
        np.array([item[2] for item in best], np.int64),
        field,
    )


@dataclasses.dataclass(frozen=True)
class OcclusionField:
    """Empirical receptive fields of a unit, one map per sample (Zhou et al. 2015).

    Attributes:
        maps: ``(B, *input spatial shape)``: at each input position, the mean
            over the occluding windows covering it of the unit's activation
            drop ``a(x) - a(x occluded)``.
        positions: ``(B, spatial axes)`` the unit's position in the layer.
    """

    maps: np.ndarray
    positions: np.ndarray

    def mean(self) -> np.ndarray:
        """The maps averaged over samples.

        Zhou et al. re-centre the maps on the unit first; with ``position``
        given, the unit is at the same place in every map.
        """
        return self.maps.mean(axis=0)


def occlusion_receptive_field(
    model: keras.Model,
    layer: Any,
    x: Any,
    channel: int,
    *,
    position: tuple[int, ...] | None = None,
    window: int = 3,
    stride: int = 1,
    baseline: Any = 0.0,
    batch_size: int | None = None,
) -> OcclusionField:
    """The empirical receptive field of a unit by occlusion (Zhou et al. 2015).

    Windows of the ``baseline`` slide over each input
    (:class:`~keras_explain.Occlusion` explaining the unit, so every occluded
    copy goes through the perturbation engine's batched passes), and each input
    position gets the mean drop of the unit's activation over the windows that
    cover it. Zhou et al. ("Object detectors emerge in deep scene CNNs", ICLR
    2015) occlude with 11 x 11 random patches at stride 3; here the window,
    stride and baseline are arguments.

    Args:
        model: A built Functional or Sequential model with one input.
        layer: A layer name or object with spatial axes.
        x: Inputs ``(B, ...)`` (array or tensor).
        channel: The channel of ``layer``.
        position: The unit's spatial position in ``layer`` (the same for every
            sample); None: per sample, where the channel is largest.
        window: Occluding window size (pixels, every spatial axis).
        stride: Step between windows.
        baseline: Value of the occluded pixels.
        batch_size: Samples per batch.

    Returns:
        The :class:`OcclusionField`.

    Raises:
        ValueError: For an unknown layer, a layer without spatial axes, a
            channel or position out of range, or a bad window or stride.

    Example:
        >>> import keras, numpy as np
        >>> from keras_explain import features
        >>> model = keras.Sequential([keras.Input((8, 8, 1)),
        ...                           keras.layers.Conv2D(2, 3, name="conv")])
        >>> x = np.ones((1, 8, 8, 1))
        >>> maps = features.occlusion_receptive_field(model, "conv", x, 0, position=(0, 0),
        ...                                           window=1).maps
        >>> changed = np.abs(maps[0]) > 1e-4  # beyond float32 rounding
        >>> np.argwhere(changed).max(axis=0).tolist()  # only the 3 x 3 field
        [2, 2]
    """
    field = receptive_field(model, layer)
    occlusion = Occlusion(
        model,
        window=window,
        stride=stride,
        baseline=baseline,
        output_layer=layer,
        strip_softmax=False,
        verbose=0,
    )
    shape = field.output_shape
    channels = occlusion.plan.shape_of(occlusion.output_key)[-1]
    _check_channel(channel, channels, occlusion.output_layer.name, "occlusion_receptive_field")
    x = np.asarray(x, np.float32)
    if position is None:
        values = activations(model, layer, x, batch_size=batch_size)[..., channel]
        flat = np.argmax(values.reshape(len(values), -1), axis=1)
        positions = np.stack(np.unravel_index(flat, values.shape[1:]), axis=1)
    else:
        position = tuple(int(p) for p in position)
        if len(position) != len(shape) or not all(0 <= p < n for p, n in zip(position, shape)):
            raise ValueError(
                f"occlusion_receptive_field: layer {occlusion.output_layer.name!r} has spatial "
                f"shape {shape}. Received: position={position}; give one index per axis, in range."
            )
        positions = np.tile(np.asarray(position), (len(x), 1))
    spatial = np.ravel_multi_index(tuple(positions.T), shape)
    target = spatial * channels + channel  # index into the flattened (*shape, channels) output
    maps = occlusion.analyze(x, target=target, batch_size=batch_size)
    return OcclusionField(maps[..., 0] if maps.ndim > 2 else maps, positions)


def _input_batches(x: Any, batch_size: int | None) -> Iterator[np.ndarray]:
    if isinstance(x, tf.data.Dataset):
        for element in x:
            yield np.asarray(element[0] if isinstance(element, tuple) else element)
        return
    x = np.asarray(x)
    chunk = len(x) if batch_size is None else _validate.positive_int(batch_size, "batch_size")
    for start in range(0, len(x), chunk):
        yield x[start : start + chunk]


def _check_channel(channel: Any, channels: int, name: str, function: str) -> None:
    if isinstance(channel, bool) or not isinstance(channel, int | np.integer):
        ok = False
    else:
        ok = 0 <= channel < channels
    if not ok:
        raise ValueError(
            f"{function}: layer {name!r} has {channels} channels. Received: channel={channel!r}; "
            f"use 0 <= channel < {channels}."
        )
