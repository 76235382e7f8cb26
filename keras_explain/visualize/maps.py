"""Relevance as pictures: channel reduction, normalization, colormaps, heatmaps, overlays."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

REDUCTIONS = ("sum", "abs_sum", "max", "abs_max", "none")

ColormapLike = str | Callable[[np.ndarray], np.ndarray] | None


def reduce_channels(relevance: Any, method: str = "sum", *, channel_axis: int = -1) -> np.ndarray:
    """Reduce the channel axis of a relevance batch ``(B, H, W, C)`` to maps ``(B, H, W)``.

    Arrays of rank 2 (one map) or 3 (a batch of maps, e.g. CAM) are returned
    unchanged, as float32.

    Args:
        relevance: Relevance shaped ``(B, H, W, C)``, ``(B, H, W)`` or ``(H, W)``.
        method: ``"sum"`` (signed sum over channels, the default), ``"abs_sum"``
            (sum of absolute values), ``"max"`` (maximum), ``"abs_max"``
            (maximum absolute value), or ``"none"`` (no reduction; a single
            channel is squeezed).
        channel_axis: The channel axis of a rank-4 array (default -1).

    Returns:
        A float32 array ``(B, H, W)`` (or the input's shape for rank 2 and 3).

    Raises:
        ValueError: For an unknown ``method``, a rank other than 2, 3 or 4, or
            ``method="none"`` with several channels.

    Example:
        >>> import numpy as np
        >>> from keras_explain import visualize
        >>> visualize.reduce_channels(np.ones((2, 4, 4, 3)), "abs_sum").shape
        (2, 4, 4)
    """
    if method not in REDUCTIONS:
        raise ValueError(
            f"Unknown channel reduction. Received: method={method!r}. Expected one of {REDUCTIONS}."
        )
    array = np.asarray(relevance, dtype=np.float32)
    if array.ndim in (2, 3):
        return array
    if array.ndim != 4:
        raise ValueError(
            "Relevance must be maps (H, W) or (batch, H, W), or images (batch, H, W, C). "
            f"Received: shape {array.shape}."
        )
    if method == "sum":
        return array.sum(axis=channel_axis)
    if method == "abs_sum":
        return np.abs(array).sum(axis=channel_axis)
    if method == "max":
        return array.max(axis=channel_axis)
    if method == "abs_max":
        return np.abs(array).max(axis=channel_axis)
    if array.shape[channel_axis] != 1:
        raise ValueError(
            "method='none' needs a single channel. Received: shape "
            f"{array.shape}; use 'sum', 'abs_sum', 'max' or 'abs_max'."
        )
    return np.squeeze(array, axis=channel_axis)


def normalize(
    relevance: Any, *, percentile: float = 99.5, symmetric: bool | None = None
) -> np.ndarray:
    """Scale relevance per sample into ``[-1, 1]`` (signed) or ``[0, 1]``.

    With ``symmetric=True`` each sample is divided by the ``percentile``-th
    percentile of its absolute values and clipped to ``[-1, 1]``: zero stays
    zero and the sign is kept. With ``symmetric=False`` each sample is mapped
    linearly from ``[P_(100 - p), P_p]`` of its values to ``[0, 1]`` and
    clipped. A sample whose scale is zero (a constant map) becomes zeros.

    Args:
        relevance: An array whose first axis is the batch axis (any rank >= 2);
            a rank-2 array is one map ``(H, W)``.
        percentile: The percentile in ``(0, 100]`` that maps to 1 (default 99.5;
            100 is max-abs scaling).
        symmetric: Keep the sign (see above). Default: True if any value is
            negative, else False.

    Returns:
        A float32 array of the input's shape.

    Raises:
        ValueError: For a percentile outside ``(0, 100]``, or non-finite values.

    Example:
        >>> import numpy as np
        >>> from keras_explain import visualize
        >>> maps = np.array([[[-2.0, 1.0]], [[0.0, 4.0]]])  # two 1x2 maps
        >>> visualize.normalize(maps, percentile=100).tolist()
        [[[-1.0, 0.5]], [[0.0, 1.0]]]
    """
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100]. Received: percentile={percentile!r}.")
    array = np.asarray(relevance, dtype=np.float32)
    if not np.all(np.isfinite(array)):
        raise ValueError("Relevance contains NaN or Inf values; cannot normalize it.")
    single = array.ndim == 2
    batch = array[None] if single else array
    flat = batch.reshape(batch.shape[0], -1)
    if symmetric is None:
        symmetric = bool(np.any(flat < 0))
    if symmetric:
        scale = np.percentile(np.abs(flat), percentile, axis=1, keepdims=True)
        safe = np.where(scale > 0, scale, 1.0)
        result = np.where(scale > 0, np.clip(flat / safe, -1.0, 1.0), 0.0)
    else:
        low = np.percentile(flat, 100.0 - percentile, axis=1, keepdims=True)
        high = np.percentile(flat, percentile, axis=1, keepdims=True)
        span = high - low
        safe = np.where(span > 0, span, 1.0)
        result = np.where(span > 0, np.clip((flat - low) / safe, 0.0, 1.0), 0.0)
    result = result.reshape(batch.shape).astype(np.float32)
    return result[0] if single else result


def colormap(values: Any, cmap: ColormapLike = "bwr") -> np.ndarray:
    """Map values in ``[0, 1]`` to RGB colours with a matplotlib colormap.

    Args:
        values: Array of positions in ``[0, 1]`` (clipped).
        cmap: The name of any matplotlib colormap (``"bwr"``, ``"Reds"``,
            ``"inferno"``, ...; case-insensitive) or a callable mapping values
            in ``[0, 1]`` to RGB or RGBA, e.g. ``matplotlib.colormaps["inferno"]``.

    Returns:
        float32 RGB in ``[0, 1]``, shaped ``values.shape + (3,)``.

    Raises:
        ValueError: For an unknown colormap name.

    Example:
        >>> from keras_explain import visualize
        >>> visualize.colormap([0.0, 0.5, 1.0]).round(2).tolist()
        [[0.0, 0.0, 1.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]
    """
    positions = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)
    function = cmap if callable(cmap) else _named_colormap(cmap)
    colours = np.asarray(function(positions), dtype=np.float32)
    return np.clip(colours[..., :3], 0.0, 1.0)


def _named_colormap(name: str):
    import matplotlib

    colormaps = matplotlib.colormaps
    if name in colormaps:
        return colormaps[name]
    by_lower_name = {known.lower(): known for known in colormaps}
    if isinstance(name, str) and name.lower() in by_lower_name:
        return colormaps[by_lower_name[name.lower()]]
    raise ValueError(
        f"Unknown colormap. Received: cmap={name!r}. Expected the name of a matplotlib "
        "colormap (e.g. 'bwr', 'seismic', 'Reds', 'inferno'; see matplotlib.colormaps) or a "
        "callable such as matplotlib.colormaps['inferno']."
    )


def heatmap(
    relevance: Any,
    *,
    cmap: ColormapLike = None,
    percentile: float = 99.5,
    symmetric: bool | None = None,
    reduce: str = "sum",
) -> np.ndarray:
    """Colour relevance: red for positive, blue for negative, white for zero.

    The channels are reduced with :func:`reduce_channels`, each sample is
    scaled with :func:`normalize`, and the result is coloured. Signed maps in
    ``[-1, 1]`` go through the diverging colormap at ``(v + 1) / 2``;
    non-negative maps in ``[0, 1]`` go through a sequential one at ``v``.

    Args:
        relevance: ``(B, H, W, C)``, ``(B, H, W)`` or ``(H, W)``.
        cmap: Colormap (see :func:`colormap`). Default ``"bwr"`` for signed
            relevance and ``"Reds"`` (white to dark red) for non-negative relevance.
        percentile: See :func:`normalize`.
        symmetric: See :func:`normalize`.
        reduce: Channel reduction (see :func:`reduce_channels`).

    Returns:
        float32 RGB in ``[0, 1]``: ``(B, H, W, 3)`` or ``(H, W, 3)``.

    Example:
        >>> import numpy as np
        >>> from keras_explain import visualize
        >>> rng = np.random.default_rng(0)
        >>> visualize.heatmap(rng.normal(size=(2, 8, 8, 3))).shape
        (2, 8, 8, 3)
    """
    maps = reduce_channels(relevance, reduce)
    if symmetric is None:
        symmetric = bool(np.any(maps < 0))
    values = normalize(maps, percentile=percentile, symmetric=symmetric)
    if symmetric:
        return colormap((values + 1.0) / 2.0, cmap or "bwr")
    return colormap(values, cmap or "Reds")


def graymap(relevance: Any, *, percentile: float = 99.5, reduce: str = "abs_sum") -> np.ndarray:
    """Relevance magnitude in gray levels (black = none, white = most).

    Args:
        relevance: ``(B, H, W, C)``, ``(B, H, W)`` or ``(H, W)``.
        percentile: See :func:`normalize`.
        reduce: Channel reduction (default ``"abs_sum"``); the reduced maps'
            absolute values are shown.

    Returns:
        float32 RGB in ``[0, 1]`` (three equal channels): ``(B, H, W, 3)`` or
        ``(H, W, 3)``.

    Example:
        >>> import numpy as np
        >>> from keras_explain import visualize
        >>> rng = np.random.default_rng(0)
        >>> visualize.graymap(rng.normal(size=(2, 8, 8, 1))).shape
        (2, 8, 8, 3)
    """
    maps = np.abs(reduce_channels(relevance, reduce))
    values = normalize(maps, percentile=percentile, symmetric=True)
    return np.repeat(values[..., None], 3, axis=-1)


def as_rgb(images: Any, *, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Bring images to float32 RGB in ``[0, 1]`` for display.

    Args:
        images: ``(B, H, W, C)`` with C = 1 or 3 (other channel counts are
            averaged to gray), ``(B, H, W)`` gray, or ``(H, W)``.
        value_range: ``(low, high)`` of the input values. Default: each image
            is min-max scaled.

    Returns:
        float32 RGB: ``(B, H, W, 3)`` or ``(H, W, 3)``.

    Raises:
        ValueError: For a rank other than 2, 3 or 4.

    Example:
        >>> import numpy as np
        >>> from keras_explain import visualize
        >>> visualize.as_rgb(np.zeros((2, 8, 8, 1)), value_range=(0, 1)).shape
        (2, 8, 8, 3)
    """
    array = np.asarray(images, dtype=np.float32)
    if array.ndim not in (2, 3, 4):
        raise ValueError(
            "Images must be (H, W), (batch, H, W) or (batch, H, W, C). Received: "
            f"shape {array.shape}."
        )
    single = array.ndim == 2
    if single:
        array = array[None]
    if array.ndim == 3:
        array = array[..., None]
    if array.shape[-1] not in (1, 3):
        array = array.mean(axis=-1, keepdims=True)
    if value_range is None:
        axes = (1, 2, 3)
        low = array.min(axis=axes, keepdims=True)
        span = array.max(axis=axes, keepdims=True) - low
        array = np.where(span > 0, (array - low) / np.where(span > 0, span, 1.0), 0.0)
    else:
        low, high = value_range
        array = (array - low) / (high - low)
    array = np.clip(array, 0.0, 1.0)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    array = array.astype(np.float32)
    return array[0] if single else array


def overlay(
    images: Any,
    relevance: Any,
    *,
    alpha: float = 0.7,
    cmap: ColormapLike = None,
    percentile: float = 99.5,
    symmetric: bool | None = None,
    reduce: str = "sum",
    value_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Draw the heatmap of ``relevance`` over grayscale ``images``.

    Each pixel blends the image (averaged over its channels to gray, then
    scaled as in :func:`as_rgb`) with the heatmap colour
    with weight ``alpha * |v|``, where ``v`` is the normalized relevance, so
    pixels without relevance show the image unchanged.

    Args:
        images: ``(B, H, W, C)``, ``(B, H, W)`` or ``(H, W)`` (see :func:`as_rgb`).
        relevance: Relevance of the same height and width: shaped like
            ``images`` or CAM maps ``(B, H, W)``.
        alpha: Opacity of the strongest relevance, in ``[0, 1]``.
        cmap: See :func:`heatmap`.
        percentile: See :func:`normalize`.
        symmetric: See :func:`normalize`.
        reduce: Channel reduction (see :func:`reduce_channels`).
        value_range: See :func:`as_rgb`.

    Returns:
        float32 RGB in ``[0, 1]``: ``(B, H, W, 3)`` or ``(H, W, 3)``.

    Raises:
        ValueError: If the batch, height or width of the two arguments differ,
            or ``alpha`` is outside ``[0, 1]``.

    Example:
        >>> import numpy as np
        >>> from keras_explain import visualize
        >>> rng = np.random.default_rng(0)
        >>> x = rng.random((2, 8, 8, 1))
        >>> visualize.overlay(x, rng.normal(size=(2, 8, 8, 1))).shape
        (2, 8, 8, 3)
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1]. Received: alpha={alpha!r}.")
    pixels = np.asarray(images, dtype=np.float32)
    if pixels.ndim == 4:
        pixels = pixels.mean(axis=-1)
    gray = as_rgb(pixels, value_range=value_range)
    maps = reduce_channels(relevance, reduce)
    if maps.shape != gray.shape[:-1]:
        raise ValueError(
            "Relevance and images must have the same batch size, height and width. "
            f"Received: images of shape {np.shape(images)} and relevance of shape "
            f"{np.shape(relevance)}."
        )
    if symmetric is None:
        symmetric = bool(np.any(maps < 0))
    values = normalize(maps, percentile=percentile, symmetric=symmetric)
    colours = heatmap(maps, cmap=cmap, percentile=percentile, symmetric=symmetric)
    weight = alpha * np.abs(values)[..., None]
    return ((1.0 - weight) * gray + weight * colours).astype(np.float32)


def to_uint8(pictures: Any) -> np.ndarray:
    """Convert pictures in ``[0, 1]`` to uint8 by rounding (``round(255 * v)``).

    Example:
        >>> from keras_explain import visualize
        >>> visualize.to_uint8([0.0, 0.5, 1.0]).tolist()
        [0, 128, 255]
    """
    array = np.clip(np.asarray(pictures, dtype=np.float32), 0.0, 1.0)
    return np.round(array * 255.0).astype(np.uint8)
