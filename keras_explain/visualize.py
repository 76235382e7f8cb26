"""Turn relevance into pictures: heatmaps, graymaps, overlays and figure grids.

Everything here is numpy plus matplotlib's colormaps (which need no display),
so it runs in a training callback or on a headless server; only
:func:`plot_explanations` (images), :func:`plot_features` (tabular data: signed
bar charts), :func:`plot_sequences` (1-D sequences: heat strips) and
:func:`plot_text` (tokens) build a matplotlib Figure; :func:`text_heatmap`
returns HTML for token attributions.

Shapes: the first axis is the batch axis. Relevance of an image batch is
``(B, H, W, C)`` (channels last, as Keras' default) and is reduced over the
channel axis; CAM-family maps are already ``(B, H, W)``. A single map
``(H, W)`` is accepted too. Pictures come back as float32 RGB in ``[0, 1]``,
shaped ``(B, H, W, 3)`` (or ``(H, W, 3)``).

Normalization: relevance is scaled per sample by a high percentile of its
magnitude (default 99.5), so that one extreme pixel does not wash out the
rest, then clipped. Signed relevance is scaled symmetrically to ``[-1, 1]``
(zero stays zero, drawn white by the default diverging colormap: red for
positive, blue for negative evidence); non-negative relevance to ``[0, 1]``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
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
        >>> visualize.heatmap(np.random.randn(2, 8, 8, 3)).shape
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
        >>> visualize.graymap(np.random.randn(2, 8, 8, 1)).shape
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
        >>> x = np.random.rand(2, 8, 8, 1)
        >>> visualize.overlay(x, np.random.randn(2, 8, 8, 1)).shape
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


def plot_explanations(
    images: Any,
    explanations: Mapping[str, Any],
    *,
    kind: str = "heatmap",
    labels: Sequence[str] | None = None,
    cell_size: float = 1.4,
    show_input: bool = True,
    max_columns: int | None = None,
    **options: Any,
):
    """A grid of explanations: one row per sample, one column per method.

    Unused cells of the last band (with ``max_columns``) are hidden; every
    axis of the figure is in ``figure.axes`` in row-major order.

    Args:
        images: The explained inputs, ``(B, H, W, C)`` or ``(B, H, W)``.
        explanations: ``{method name: relevance}``, each ``(B, H, W, C)`` shaped
            like ``images`` or a CAM map ``(B, H, W)``.
        kind: ``"heatmap"`` (default), ``"overlay"`` (heatmap over the image)
            or ``"graymap"``.
        labels: Optional row labels, one per sample (e.g. the predicted class).
        cell_size: Size of one cell in inches.
        show_input: Add a first column with the input images.
        max_columns: Wrap many methods into bands of at most this many method
            columns, stacked vertically (each band repeats the input column).
            Default: one band.
        **options: Passed to :func:`heatmap`, :func:`overlay` or :func:`graymap`
            (``cmap``, ``percentile``, ``reduce``, ...).

    Returns:
        A ``matplotlib.figure.Figure`` (not registered with pyplot; display it
        in a notebook by returning it, or save it with ``fig.savefig(path)``).

    Raises:
        ValueError: For an unknown ``kind``, an empty ``explanations``, or
            arrays whose batch size differs from ``images``.
        ImportError: If matplotlib is not installed.

    Example:
        >>> import numpy as np
        >>> from keras_explain import visualize
        >>> x = np.random.rand(2, 8, 8, 1)
        >>> fig = visualize.plot_explanations(x, {"noise": np.random.randn(2, 8, 8, 1)})
        >>> len(fig.axes)
        4
    """
    drawers = {"heatmap": heatmap, "overlay": None, "graymap": graymap}
    if kind not in drawers:
        raise ValueError(
            f"Unknown kind. Received: kind={kind!r}. Expected one of {sorted(drawers)}."
        )
    if not explanations:
        raise ValueError("explanations is empty; pass {method name: relevance}.")
    try:
        from matplotlib.figure import Figure
    except ImportError as error:  # pragma: no cover - matplotlib is a core dependency
        raise ImportError(
            'plot_explanations needs matplotlib: pip install "keras-explainer".'
        ) from error
    if np.ndim(images) not in (3, 4):
        raise ValueError(
            "images must be a batch, (batch, H, W) or (batch, H, W, C). Received: "
            f"shape {np.shape(images)}; add the batch axis, e.g. x[None]. For tabular "
            "attributions (batch, features) use plot_features; for 1-D sequences "
            "plot_sequences."
        )
    rgb = as_rgb(images)
    samples = rgb.shape[0]
    columns: list[tuple[str, np.ndarray]] = [("input", rgb)] if show_input else []
    for name, relevance in explanations.items():
        relevance = np.asarray(relevance)
        if relevance.shape[0] != samples:
            raise ValueError(
                f"Explanation {name!r} has {relevance.shape[0]} samples but images has "
                f"{samples}. Received: shape {relevance.shape}."
            )
        if kind == "overlay":
            picture = overlay(images, relevance, **options)
        else:
            picture = drawers[kind](relevance, **options)
        columns.append((name, picture))
    _check_labels(labels, samples)
    input_column = columns[:1] if show_input else []
    methods = columns[len(input_column) :]
    per_band = len(methods) if not max_columns else max(1, int(max_columns))
    bands = [
        input_column + methods[start : start + per_band]
        for start in range(0, len(methods), per_band)
    ]
    width = max(len(band) for band in bands)
    figure = Figure(figsize=(cell_size * width, (cell_size * samples + 0.3) * len(bands)))
    axes = figure.subplots(samples * len(bands), width, squeeze=False)
    for band_index, band in enumerate(bands):
        for column in range(width):
            for row in range(samples):
                ax = axes[band_index * samples + row, column]
                if column >= len(band):
                    ax.set_axis_off()
                    continue
                name, pictures = band[column]
                ax.imshow(pictures[row], interpolation="nearest", vmin=0.0, vmax=1.0)
                ax.set_xticks([])
                ax.set_yticks([])
                if row == 0:
                    ax.set_title(_wrap(name, int(cell_size * 11)), fontsize=7)
                if column == 0 and labels is not None:
                    ax.set_ylabel(str(labels[row]), fontsize=8)
    figure.tight_layout(pad=0.3)
    return figure


def plot_features(
    explanations: Mapping[str, Any],
    feature_names: Sequence[str] | None = None,
    *,
    labels: Sequence[str] | None = None,
    cell_size: float = 2.0,
    cmap: ColormapLike = "bwr",
):
    """Signed bar charts of tabular attributions: one row per sample, one column per method.

    Each cell is a horizontal bar chart with one bar per feature, in feature
    order from top to bottom, of the raw attribution (not normalized): red for
    positive, blue for negative evidence, deeper for larger magnitudes. All
    cells of a method share one symmetric value axis (its largest magnitude),
    so samples compare within a method; methods have their own axes, as their
    units differ (a logit change, a LIME weight, ...).

    Args:
        explanations: ``{method name: attributions}``, each ``(B, F)`` (or one
            sample ``(F,)``), all of the same shape.
        feature_names: ``F`` names for the value axis (default ``x0, x1, ...``).
        labels: Optional row labels, one per sample.
        cell_size: Width of one cell in inches (its height grows with ``F``).
        cmap: Diverging colormap of the bars (see :func:`colormap`); the
            attribution ``v`` of a method with largest magnitude ``m`` gets the
            colour at ``(v / m + 1) / 2``.

    Returns:
        A ``matplotlib.figure.Figure``; ``figure.axes`` are in row-major order.

    Raises:
        ValueError: For an empty ``explanations``, arrays that are not
            ``(B, F)`` or differ in shape, or ``feature_names`` / ``labels`` of
            the wrong length.

    Example:
        >>> import numpy as np
        >>> from keras_explain import visualize
        >>> fig = visualize.plot_features({"lime": [[0.5, -0.2, 0.0]]}, ["age", "bmi", "bp"])
        >>> [round(float(bar.get_width()), 2) for bar in fig.axes[0].patches]
        [0.5, -0.2, 0.0]
    """
    arrays = _batched(explanations, "plot_features", rank=2, hint="(batch, features)")
    samples, count = next(iter(arrays.values())).shape
    names = [f"x{i}" for i in range(count)] if feature_names is None else list(feature_names)
    if len(names) != count:
        raise ValueError(
            f"plot_features needs one feature name per feature ({count}). Received "
            f"{len(names)} feature_names; pass {count} names or None."
        )
    _check_labels(labels, samples)
    from matplotlib.figure import Figure

    height = 0.25 + 0.18 * count
    figure = Figure(figsize=(cell_size * len(arrays), height * samples + 0.3))
    axes = figure.subplots(samples, len(arrays), squeeze=False)
    positions = np.arange(count)
    for column, (name, values) in enumerate(arrays.items()):
        largest = float(np.abs(values).max())
        scale = largest if largest > 0 else 1.0
        colours = colormap((values / scale + 1.0) / 2.0, cmap)
        for row in range(samples):
            ax = axes[row, column]
            ax.barh(
                positions,
                values[row],
                color=colours[row],
                height=0.8,
                edgecolor="0.5",
                linewidth=0.3,
            )
            ax.axvline(0.0, color="0.3", linewidth=0.6)
            ax.set_xlim(-1.05 * scale, 1.05 * scale)
            ax.set_ylim(count - 0.5, -0.5)  # first feature on top
            ax.set_yticks(positions)
            ax.set_yticklabels(names if column == 0 else [], fontsize=7)
            ax.tick_params(axis="x", labelsize=6)
            if row == 0:
                ax.set_title(_wrap(name, int(cell_size * 11)), fontsize=7)
            if row < samples - 1:
                ax.set_xticklabels([])
            if column == 0 and labels is not None:
                ax.set_ylabel(str(labels[row]), fontsize=8)
    figure.tight_layout(pad=0.3)
    return figure


def plot_sequences(
    explanations: Mapping[str, Any],
    sequences: Any = None,
    *,
    labels: Sequence[str] | None = None,
    cell_size: tuple[float, float] = (3.5, 0.7),
    cmap: ColormapLike = None,
    percentile: float = 99.5,
    symmetric: bool | None = None,
    reduce: str = "sum",
):
    """Heat strips of 1-D attributions: one row per sample, one column per method.

    Each cell is the sample's attribution along the sequence as a coloured
    strip, coloured as :func:`heatmap` colours an image (channels reduced with
    :func:`reduce_channels`, each sample scaled with :func:`normalize`), with
    the input signal drawn over it when ``sequences`` is given.

    Args:
        explanations: ``{method name: attributions}``, each ``(B, L)`` or
            ``(B, L, C)`` (a Conv1D or recurrent model's input shape).
        sequences: The explained inputs, ``(B, L)`` or ``(B, L, C)``, drawn as
            one line per channel, scaled to the strip's height. Optional.
        labels: Optional row labels, one per sample.
        cell_size: ``(width, height)`` of one cell in inches.
        cmap: Colormap (see :func:`heatmap`).
        percentile: See :func:`normalize`.
        symmetric: See :func:`normalize`.
        reduce: Channel reduction of ``(B, L, C)`` attributions (default ``"sum"``).

    Returns:
        A ``matplotlib.figure.Figure``; ``figure.axes`` are in row-major order,
        each cell's strip is ``ax.images[0]`` (RGB, ``(1, L, 3)``).

    Raises:
        ValueError: For an empty ``explanations``, arrays that are not
            ``(B, L)`` or ``(B, L, C)`` or whose batch size or length differ, or
            ``labels`` of the wrong length.

    Example:
        >>> import numpy as np
        >>> from keras_explain import visualize
        >>> signal = np.sin(np.linspace(0, 6, 50))[None, :, None]
        >>> fig = visualize.plot_sequences({"gradient": signal}, signal)
        >>> fig.axes[0].images[0].get_array().shape
        (1, 50, 3)
    """
    arrays = _batched(explanations, "plot_sequences", rank=(2, 3), hint="(batch, length[, C])")
    samples, length = next(iter(arrays.values())).shape[:2]
    for name, values in arrays.items():
        if values.shape[:2] != (samples, length):
            raise ValueError(
                f"plot_sequences needs every explanation shaped (batch, length[, C]) alike; "
                f"{name!r} has shape {values.shape}, expected ({samples}, {length}, ...)."
            )
    lines = None
    if sequences is not None:
        lines = np.asarray(sequences, dtype=np.float32)
        lines = lines[..., None] if lines.ndim == 2 else lines
        if lines.ndim != 3 or lines.shape[:2] != (samples, length):
            raise ValueError(
                f"plot_sequences needs sequences shaped ({samples}, {length}) or "
                f"({samples}, {length}, C), like the explanations. Received: shape "
                f"{np.shape(sequences)}."
            )
    _check_labels(labels, samples)
    from matplotlib.figure import Figure

    width, height = cell_size
    figure = Figure(figsize=(width * len(arrays), height * samples + 0.4))
    axes = figure.subplots(samples, len(arrays), squeeze=False)
    extent = (-0.5, length - 0.5, 0.0, 1.0)
    for column, (name, values) in enumerate(arrays.items()):
        # (B, 1, L[, C]): a one-row image per sample, coloured like heatmap()
        strips = heatmap(
            values[:, None], cmap=cmap, percentile=percentile, symmetric=symmetric, reduce=reduce
        )
        for row in range(samples):
            ax = axes[row, column]
            ax.imshow(strips[row], aspect="auto", interpolation="nearest", extent=extent)
            if lines is not None:
                signal = lines[row]
                low, high = signal.min(), signal.max()
                scaled = (signal - low) / (high - low) if high > low else signal * 0 + 0.5
                ax.plot(np.arange(length), 0.1 + 0.8 * scaled, color="black", linewidth=0.8)
            ax.set_ylim(0.0, 1.0)
            ax.set_yticks([])
            ax.tick_params(axis="x", labelsize=6)
            if row < samples - 1:
                ax.set_xticks([])
            if row == 0:
                ax.set_title(_wrap(name, int(width * 11)), fontsize=7)
            if column == 0 and labels is not None:
                ax.set_ylabel(str(labels[row]), fontsize=8, rotation=0, ha="right")
    figure.tight_layout(pad=0.3)
    return figure


def _batched(explanations, function: str, rank, hint: str) -> dict[str, np.ndarray]:
    """The explanations as float32 arrays with a batch axis; checks ranks and batch sizes."""
    if not explanations:
        raise ValueError(f"{function}: explanations is empty; pass {{method name: attributions}}.")
    ranks = (rank,) if isinstance(rank, int) else tuple(rank)
    arrays, batch = {}, None
    for name, values in explanations.items():
        array = np.asarray(values, dtype=np.float32)
        if array.ndim == ranks[0] - 1:
            array = array[None]  # one sample
        if array.ndim not in ranks:
            other = "plot_explanations" if array.ndim == 4 else "plot_features or plot_sequences"
            raise ValueError(
                f"{function} draws attributions shaped {hint}; {name!r} has shape "
                f"{np.shape(values)}. For this shape use {other}."
            )
        if batch is not None and array.shape[0] != batch:
            raise ValueError(
                f"{function}: every explanation needs the same batch size; {name!r} has "
                f"{array.shape[0]} samples, the first one {batch}."
            )
        if rank == 2 and arrays and array.shape != next(iter(arrays.values())).shape:
            raise ValueError(
                f"{function}: every explanation needs the same shape; {name!r} has shape "
                f"{array.shape}, the first one {next(iter(arrays.values())).shape}."
            )
        batch = array.shape[0]
        arrays[name] = array
    return arrays


def _check_labels(labels, samples: int) -> None:
    if labels is not None and len(labels) != samples:
        raise ValueError(f"labels needs one entry per sample ({samples}). Received {len(labels)}.")


def _wrap(name: str, width: int) -> str:
    """Break a method name after ``.`` or ``_`` so that lines fit ``width`` characters."""
    lines, current = [], ""
    for piece in re.split(r"(?<=[._])", name):
        if current and len(current) + len(piece) > width:
            lines.append(current)
            current = ""
        current += piece
    lines.append(current)
    return "\n".join(lines)


# -- text ------------------------------------------------------------------------------
def token_strings(ids: Any, vocabulary: Sequence[str] | None = None) -> list[str]:
    """Words for token ids: ``vocabulary[id]``, or the id itself without a vocabulary.

    Args:
        ids: A sequence of int token ids (one sample).
        vocabulary: The words by id, e.g. ``TextVectorization.get_vocabulary()``
            or ``StringLookup.get_vocabulary()``; None shows the ids.

    Returns:
        A list of strings, one per id.

    Raises:
        ValueError: For an id outside ``vocabulary``.

    Example:
        >>> from keras_explain import visualize
        >>> visualize.token_strings([2, 1, 0], ["", "[UNK]", "good"])
        ['good', '[UNK]', '']
        >>> visualize.token_strings([5, 7])
        ['5', '7']
    """
    values = [int(i) for i in np.asarray(ids).reshape(-1)]
    if vocabulary is None:
        return [str(i) for i in values]
    words = list(vocabulary)
    bad = [i for i in values if not 0 <= i < len(words)]
    if bad:
        raise ValueError(
            f"token_strings: token id {bad[0]} is outside the vocabulary of {len(words)} "
            f"words. Received: ids from {min(values)} to {max(values)}. Pass the vocabulary "
            "the model's ids come from (e.g. TextVectorization.get_vocabulary())."
        )
    return [words[i] for i in values]


def _token_positions(scores: np.ndarray, signed: bool) -> np.ndarray:
    """Colormap positions: signed ``0.5 + 0.5 s / max|s|``, else ``s / max s`` (0 if all 0)."""
    peak = float(np.max(np.abs(scores))) if scores.size else 0.0
    if peak == 0.0 or not np.isfinite(peak):
        return np.full(scores.shape, 0.5 if signed else 0.0)
    if signed:
        return 0.5 + 0.5 * scores / peak
    return np.clip(scores, 0.0, None) / peak


def _text_rows(tokens: Any, scores: Any, function: str) -> list[tuple[list[str], np.ndarray]]:
    """``(tokens, scores)`` as rows: one sample, or a batch (list of token lists, (B, T))."""
    values = np.asarray(scores, dtype=np.float64)
    items = list(tokens)
    batched = values.ndim == 2
    rows = list(zip(items, values)) if batched else [(items, values)]
    if values.ndim not in (1, 2) or (batched and len(items) != len(values)):
        raise ValueError(
            f"{function} needs scores shaped (T,) for one sample or (B, T) with B token lists. "
            f"Received: scores of shape {values.shape} for {len(items)} token entries."
        )
    result = []
    for words, row in rows:
        words = [str(word) for word in words]
        if len(words) != len(row):
            raise ValueError(
                f"{function} needs one score per token. Received: {len(words)} tokens and "
                f"{len(row)} scores. Drop the padding from both, or pass the padded tokens."
            )
        if not np.isfinite(row).all():
            raise ValueError(f"{function}: scores contain NaN or Inf. Received: {row.tolist()}.")
        result.append((words, row))
    return result


def text_heatmap(
    tokens: Any,
    scores: Any,
    *,
    cmap: ColormapLike = "bwr",
    signed: bool = True,
) -> str:
    """Token attributions as HTML: each token on a background coloured by its score.

    Colours are scaled per sample: with ``signed=True`` a score ``s`` sits at
    ``0.5 + 0.5 s / max|s|`` of the colormap, so the token of largest ``|s|``
    gets one end of the colormap exactly and 0 its centre (white in ``"bwr"``:
    red for evidence for the target, blue against); with ``signed=False`` at
    ``s / max s`` (negative scores clipped to 0), for colormaps such as
    ``"Reds"``. Tokens are escaped with :func:`html.escape`; each span's
    ``title`` holds the score (shown on hover). Show it in a notebook with
    ``IPython.display.HTML``.

    Args:
        tokens: The words of one sample (strings or ids), or a list of such
            lists for several samples (one line each).
        scores: ``(T,)`` for one sample, ``(B, T)`` for several.
        cmap: A matplotlib colormap name or callable (see :func:`colormap`).
        signed: Diverging scale around 0 (default) or ``[0, max]``.

    Returns:
        An HTML string: a ``<div>`` per sample of ``<span>`` tokens.

    Raises:
        ValueError: For a different number of tokens and scores, non-finite
            scores, or an unknown colormap.

    Example:
        >>> from keras_explain import visualize
        >>> html = visualize.text_heatmap(["not", "<b>good</b>"], [-1.0, 0.5])
        >>> html.count("<span"), "&lt;b&gt;good&lt;/b&gt;" in html
        (2, True)
    """
    import html as html_module

    from matplotlib.colors import to_hex

    lines = []
    for words, row in _text_rows(tokens, scores, "text_heatmap"):
        colours = colormap(_token_positions(row, signed), cmap)
        spans = []
        for word, score, colour in zip(words, row, colours):
            ink = "#000000" if _luminance(colour) > 0.45 else "#ffffff"
            spans.append(
                f'<span class="kx-token" title="{score:.4g}" '
                f'style="background-color: {to_hex(colour)}; '
                f'color: {ink}; padding: 1px 3px; margin: 1px; border-radius: 3px">'
                f"{html_module.escape(word)}</span>"
            )
        lines.append('<div class="kx-text" style="line-height: 1.9">' + " ".join(spans) + "</div>")
    return "\n".join(lines)


def _luminance(rgb: np.ndarray) -> float:
    """Relative luminance (ITU-R BT.709 weights) of an RGB colour in [0, 1]."""
    return float(np.dot(rgb[:3], [0.2126, 0.7152, 0.0722]))


def plot_text(
    tokens: Any,
    scores: Any,
    *,
    cmap: ColormapLike = "bwr",
    signed: bool = True,
    width: int = 60,
    labels: Sequence[str] | None = None,
):
    """Token attributions as a matplotlib Figure (the variant of :func:`text_heatmap`).

    The same colours as :func:`text_heatmap`; tokens are set in a monospace
    font, left to right, wrapped at ``width`` characters; one block per sample.

    Args:
        tokens: The words of one sample, or a list of such lists.
        scores: ``(T,)`` or ``(B, T)``.
        cmap: A matplotlib colormap name or callable.
        signed: Diverging scale around 0 (default) or ``[0, max]``.
        width: Characters per line before wrapping.
        labels: Optional titles, one per sample.

    Returns:
        A ``matplotlib.figure.Figure`` with one axis per sample; each token is
        an entry of ``ax.texts`` whose ``get_bbox_patch().get_facecolor()`` is
        its colour.

    Raises:
        ValueError: As :func:`text_heatmap`, or ``labels`` of the wrong length.

    Example:
        >>> from keras_explain import visualize
        >>> fig = visualize.plot_text(["not", "good"], [-1.0, 0.5])
        >>> [t.get_text() for t in fig.axes[0].texts]
        ['not', 'good']
    """
    from matplotlib.figure import Figure

    rows = _text_rows(tokens, scores, "plot_text")
    if labels is not None:
        _check_labels(labels, len(rows))
    layouts = [_wrap_tokens(words, width) for words, _ in rows]
    heights = [max(1, lines) * 0.32 + (0.3 if labels is not None else 0.1) for _, lines in layouts]
    figure = Figure(figsize=(0.11 * width + 0.4, sum(heights)))
    axes = figure.subplots(len(rows), 1, squeeze=False, height_ratios=heights)[:, 0]
    for index, (ax, (words, row), (places, lines)) in enumerate(zip(axes, rows, layouts)):
        colours = colormap(_token_positions(row, signed), cmap)
        ax.set_xlim(0, width)
        ax.set_ylim(max(1, lines), 0)
        ax.axis("off")
        for word, colour, (column, line) in zip(words, colours, places):
            ink = "black" if _luminance(colour) > 0.45 else "white"
            ax.text(
                column,
                line + 0.5,
                word,
                family="monospace",
                va="center",
                color=ink,
                bbox={"facecolor": tuple(colour), "edgecolor": "none", "pad": 1.5},
            )
        if labels is not None:
            ax.set_title(labels[index], fontsize=9, loc="left")
    return figure


def _wrap_tokens(words: Sequence[str], width: int) -> tuple[list[tuple[int, int]], int]:
    """``(column, line)`` of each word, wrapping at ``width`` characters; and the line count."""
    places, column, line = [], 0, 0
    for word in words:
        if column and column + len(word) > width:
            column, line = 0, line + 1
        places.append((column, line))
        column += len(word) + 1
    return places, line + 1
