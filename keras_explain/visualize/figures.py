"""Figure grids: images (plot_explanations), tabular bar charts, 1-D heat strips."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from keras_explain.visualize import _checks
from keras_explain.visualize.maps import (
    ColormapLike,
    as_rgb,
    colormap,
    graymap,
    heatmap,
    overlay,
)


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
        >>> rng = np.random.default_rng(0)
        >>> x = rng.random((2, 8, 8, 1))
        >>> fig = visualize.plot_explanations(x, {"noise": rng.normal(size=(2, 8, 8, 1))})
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
    _checks.labels(labels, samples)
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
    _checks.labels(labels, samples)
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
    _checks.labels(labels, samples)
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
