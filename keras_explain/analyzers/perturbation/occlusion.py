"""Occlusion: slide a baseline window over the input and watch the score change.

All occluded copies of a batch go through the model in passes (see
:class:`~keras_explain.analyzers.perturbation.engine.Perturbation`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import tensorflow as tf

from keras_explain._spatial import blend, spatial_axes, spread_over_channels
from keras_explain.analyzers.perturbation.engine import Perturbation, attribution_dtype
from keras_explain.analyzers.registry import register


def _per_axis(value: Any, name: str) -> tuple[int, ...] | None:
    """Validate ``window``/``stride``: None, a positive int or a tuple of them."""
    if value is None:
        return None
    items = tuple(value) if isinstance(value, list | tuple) else (value,)
    if not items or not all(
        isinstance(v, int | np.integer) and not isinstance(v, bool) and v >= 1 for v in items
    ):
        raise ValueError(
            f"{name} must be a positive int or a tuple of positive ints, one per "
            f"spatial axis. Received: {name}={value!r}."
        )
    return tuple(int(v) for v in items)


@register("occlusion")
class Occlusion(Perturbation):
    """Occlusion (Zeiler & Fergus 2014, arXiv:1311.2901): slide a baseline window.

    Every element gets the mean, over the windows that cover it, of
    ``f_t(x) - f_t(x with that window set to the baseline)``. Windows slide
    over the spatial axes (all axes but the batch and channel axes; the feature
    axis of a 2-D input) and span all channels. Window starts are
    ``0, stride, 2 * stride, ...``, plus one window flush with the end of the
    axis when the stride does not reach it, so every element is covered.

    Args:
        model: A Keras model or a callable ``f(x) -> scores``.
        window: Window size: an int (every spatial axis) or a tuple with one
            entry per spatial axis. Default: ``ceil(length / 8)`` per axis.
        stride: Step between windows, int or tuple (default: the window, i.e.
            non-overlapping windows).
        baseline: Replacement value: scalar, one sample or the batch (default 0).
        **kwargs: ``internal_batch_size``, ``verbose``, ``output_index``,
            ``output_layer``, ``strip_softmax``, ``neuron_selection_mode``.

    Returns:
        ``analyze(x)`` returns attributions shaped like x.

    Raises:
        ValueError: For a non-positive window or stride, a tuple of the wrong
            length, or a window larger than the input.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
        ...                           keras.layers.Dense(3)])
        >>> kx.Occlusion(model, window=4, stride=2).analyze(np.ones((2, 8, 8, 1))).shape
        (2, 8, 8, 1)
    """

    def __init__(
        self,
        model,
        *,
        window: int | tuple[int, ...] | None = None,
        stride: int | tuple[int, ...] | None = None,
        baseline: Any = 0.0,
        **kwargs,
    ):
        self.window = _per_axis(window, "window")
        self.stride = _per_axis(stride, "stride")
        super().__init__(model, **kwargs)
        self.baseline = self.checked_baseline(baseline)
        specs = self._input_specs()
        if specs and all(d is not None for d in specs[0].shape[1:]):
            self.covers((None, *specs[0].shape[1:]))

    baseline_attributes = ("baseline",)

    def covers(self, shape) -> list[np.ndarray]:
        """Per spatial axis, the 0/1 matrix ``(windows, length)`` of window coverage.

        Raises:
            ValueError: For a bad window or stride for inputs of ``shape``.
        """
        axes = spatial_axes(len(shape))
        lengths = [int(shape[a]) for a in axes]
        windows = self.window or tuple(math.ceil(n / 8) for n in lengths)
        strides = self.stride or windows
        for name, values in (("window", windows), ("stride", strides)):
            if len(values) == 1:
                values = values * len(lengths)
            if len(values) != len(lengths):
                raise ValueError(
                    f"{name} needs one entry per spatial axis {tuple(lengths)} of inputs "
                    f"of shape {tuple(shape)}. Received: {name}={values!r}."
                )
            if name == "window":
                windows = values
            else:
                strides = values
        result = []
        for length, window, stride in zip(lengths, windows, strides):
            if window > length:
                raise ValueError(
                    f"window {tuple(windows)} is larger than the spatial shape "
                    f"{tuple(lengths)} of inputs of shape {tuple(shape)}. Received: "
                    f"window={self.window!r}; use a window <= the input size."
                )
            starts = list(range(0, length - window + 1, stride))
            if starts[-1] != length - window:
                starts.append(length - window)
            cover = np.zeros((len(starts), length), np.float32)
            for row, start in enumerate(starts):
                cover[row, start : start + window] = 1.0
            result.append(cover)
        return result

    def explain_batch(self, inputs, target, indices, seed, params):
        """Per element, the mean score drop of the windows that cover it."""
        x = self.single_input(inputs)
        target, indices, clean = self.clean_scores(x, target, indices)
        covers = [tf.constant(c, x.dtype) for c in self.covers(x.shape)]
        counts = [int(c.shape[0]) for c in covers]
        rank = x.shape.rank

        def make(start, size):
            ids = tf.range(start, start + size)
            positions = tf.unravel_index(ids, counts) if len(counts) > 1 else ids[None]
            mask = None
            for axis, cover in enumerate(covers):
                rows = tf.gather(cover, positions[axis])
                shape = [-1] + [1] * len(covers)
                shape[1 + axis] = int(cover.shape[1])
                rows = tf.reshape(rows, shape)
                mask = rows if mask is None else mask * rows
            return blend(x, self.baseline, 1 - spread_over_channels(mask, rank)[:, None]), None

        scores = self.evaluate(x, make, math.prod(counts), target, indices)
        diffs = tf.reshape(tf.transpose(clean[None] - scores), [-1, *counts])
        dtype = attribution_dtype(x)
        totals = tf.cast(diffs, dtype)
        coverage = tf.ones(counts, dtype)
        for cover in covers:  # sum over the windows covering each element, axis by axis
            cover = tf.cast(cover, dtype)
            totals = tf.tensordot(totals, cover, axes=[[1], [0]])
            coverage = tf.tensordot(coverage, cover, axes=[[0], [0]])
        result = spread_over_channels(totals / coverage[None], rank)
        return [tf.broadcast_to(result, tf.shape(x))]
