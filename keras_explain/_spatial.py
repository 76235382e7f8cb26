"""Spatial helpers shared by CAM maps and perturbation masks (inside traces).

Inputs are channels-last: a batch of rank ``r >= 3`` has spatial axes
``1 .. r - 2`` and its channel axis last; a 2-D batch ``(batch, features)`` has
one "spatial" axis (the features) and no channel axis.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import tensorflow as tf


def spatial_axes(rank: int) -> list[int]:
    """Axes of a batch of rank ``rank`` that windows, masks and superpixels cover.

    Raises:
        ValueError: For a rank below 2.
    """
    if rank < 2:
        raise ValueError(
            f"Perturbation methods need a batch of rank >= 2, (batch, features...). "
            f"Received: rank {rank}."
        )
    return [1] if rank == 2 else list(range(1, rank - 1))


def spread_over_channels(values: tf.Tensor, rank: int) -> tf.Tensor:
    """Give a ``(batch, *spatial)`` tensor the channel axis of a rank-``rank`` input."""
    return values if rank == 2 else values[..., None]


#: How :func:`resize` interpolates: ``tf.image.resize`` methods, half-pixel centers.
#: Each is separable, so it resizes 1, 2 or 3 spatial axes alike ("bilinear" is
#: linear along every axis: trilinear on volumes).
INTERPOLATIONS = ("bilinear", "nearest", "bicubic")


def resize(tensor: tf.Tensor, size, interpolation: str = "bilinear") -> tf.Tensor:
    """Resize ``(B, *spatial, C)`` with 1, 2 or 3 spatial axes, half-pixel centers.

    ``tf.image.resize`` resizes two axes; a length ``(B, L, C)`` is resized as
    an image of width 1, a volume ``(B, D, H, W, C)`` as its ``(H, W)`` slices,
    then its ``D`` axis (an image of height ``D`` and width ``H' W'``). Every
    method is separable and leaves an axis of unchanged size as it is, so the
    two passes are the 3-D interpolation.

    Args:
        tensor: Channels-last values with one, two or three spatial axes.
        size: The new spatial size, ``[L]``, ``[H, W]`` or ``[D, H, W]``.
        interpolation: One of :data:`INTERPOLATIONS`.

    Returns:
        The resized tensor: float32 (``"nearest"`` keeps the dtype).
    """
    rank = tensor.shape.rank
    if rank == 3:
        resized = tf.image.resize(tensor[:, :, None, :], [size[0], 1], method=interpolation)
        return resized[:, :, 0, :]
    if rank == 4:
        return tf.image.resize(tensor, size, method=interpolation)
    shape = tf.shape(tensor)
    slices = tf.reshape(tensor, tf.concat([[-1], shape[2:]], axis=0))  # (B D, H, W, C)
    slices = tf.image.resize(slices, size[1:], method=interpolation)
    columns = tf.reshape(slices, [shape[0], shape[1], -1, shape[4]])  # (B, D, H' W', C)
    columns = tf.image.resize(columns, [size[0], size[1] * size[2]], method=interpolation)
    return tf.reshape(columns, [shape[0], size[0], size[1], size[2], shape[4]])


def resize_maps(maps: tf.Tensor, size, interpolation: str = "bilinear") -> tf.Tensor:
    """:func:`resize` of channel-less maps ``(n, *spatial)`` to ``(n, *size)``."""
    return resize(maps[..., None], size, interpolation)[..., 0]


def broadcast_baseline(baseline: Any, x: tf.Tensor) -> tf.Tensor:
    """A checked baseline (scalar, one sample or the batch) broadcast to ``x``'s shape."""
    value = tf.cast(tf.convert_to_tensor(baseline), x.dtype)
    return tf.broadcast_to(value, tf.shape(x))


def blend(x: tf.Tensor, baseline: Any, keep: tf.Tensor) -> tf.Tensor:
    """Copies ``keep * x + (1 - keep) * baseline`` with the fewest full-size passes.

    Args:
        x: The batch ``(B, ...)``.
        baseline: A checked baseline (a float, one sample or the batch).
        keep: Masks broadcastable to ``(n, B, ...)``: 1 keeps ``x``, 0 puts the
            baseline.

    Returns:
        The ``(n, B, ...)`` copies.
    """
    if isinstance(baseline, float | int):
        if baseline == 0:
            return x[None] * keep
        return (x - baseline)[None] * keep + baseline
    base = broadcast_baseline(baseline, x)
    return (x - base)[None] * keep + base[None]


def gaussian_blur(x: tf.Tensor, sigma: float) -> tf.Tensor:
    """Separable Gaussian blur over the (at most two) spatial axes, symmetric padding."""
    rank = x.shape.rank
    image = {2: lambda t: t[:, :, None, None], 3: lambda t: t[:, :, None, :]}.get(
        rank, lambda t: t
    )(x)
    channels = int(image.shape[-1])
    for axis in (1, 2):
        length = int(image.shape[axis])
        radius = min(math.ceil(3 * sigma), length - 1)
        if radius < 1:
            continue
        offsets = np.arange(-radius, radius + 1, dtype=np.float32)
        kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
        kernel = (kernel / kernel.sum()).astype(np.float32)
        shape = [len(kernel), 1] if axis == 1 else [1, len(kernel)]
        filters = tf.constant(
            np.tile(kernel.reshape(*shape, 1, 1), [1, 1, channels, 1]), image.dtype
        )
        paddings = [[0, 0], [0, 0], [0, 0], [0, 0]]
        paddings[axis] = [radius, radius]
        image = tf.nn.depthwise_conv2d(
            tf.pad(image, paddings, mode="SYMMETRIC"), filters, [1, 1, 1, 1], "VALID"
        )
    return tf.reshape(image, tf.shape(x))
