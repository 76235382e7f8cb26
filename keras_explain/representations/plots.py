"""Pictures of representations: a layer-similarity matrix and 2-D embeddings (matplotlib)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def plot_similarity(
    matrix: Any,
    names_a: Sequence[str] | None = None,
    names_b: Sequence[str] | None = None,
    *,
    title: str | None = None,
    cmap: str = "magma",
):
    """Draw a layer-similarity matrix (rows: ``model_a``'s layers, columns: ``model_b``'s).

    Args:
        matrix: ``(layers_a, layers_b)`` values, e.g. from :func:`similarity_matrix`
            (``plot_similarity(*similarity_matrix(...))``).
        names_a: Row labels.
        names_b: Column labels.
        title: Figure title.
        cmap: A matplotlib colormap name.

    Returns:
        A ``matplotlib.figure.Figure`` (not registered with pyplot).

    Example:
        >>> import numpy as np
        >>> from keras_explain import representations
        >>> figure = representations.plot_similarity(np.eye(3), ["a", "b", "c"], ["a", "b", "c"])
        >>> len(figure.axes)
        2
    """
    from matplotlib.figure import Figure

    values = np.asarray(matrix, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"plot_similarity needs a 2-D matrix. Received: shape {values.shape}.")
    rows, columns = values.shape
    figure = Figure(figsize=(1.5 + 0.45 * columns, 1.2 + 0.45 * rows), layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(values, cmap=cmap, vmin=min(0.0, np.nanmin(values)), vmax=1.0)
    axes.set_yticks(range(rows), names_a if names_a is not None else range(rows))
    axes.set_xticks(range(columns), names_b if names_b is not None else range(columns))
    axes.tick_params(axis="x", labelrotation=90)
    axes.set_ylabel("model a")
    axes.set_xlabel("model b")
    if title:
        axes.set_title(title)
    figure.colorbar(image, ax=axes)
    return figure


def plot_embedding(points: Any, labels: Any = None, *, title: str | None = None, cmap="tab10"):
    """Scatter 2-D points (from :func:`embed`), coloured by label, with a legend.

    Args:
        points: ``(N, 2)`` (more columns: the first two are drawn).
        labels: Optional ``(N,)`` labels (any values; one colour each).
        title: Figure title.
        cmap: A matplotlib colormap name for the label colours.

    Returns:
        A ``matplotlib.figure.Figure`` (not registered with pyplot).

    Example:
        >>> import numpy as np
        >>> from keras_explain import representations
        >>> figure = representations.plot_embedding(np.zeros((4, 2)), [0, 1, 0, 1])
        >>> len(figure.axes[0].collections)
        2
    """
    import matplotlib
    from matplotlib.figure import Figure

    values = np.asarray(points, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] < 2:
        raise ValueError(
            f"plot_embedding needs points shaped (N, 2). Received: shape {values.shape}."
        )
    figure = Figure(figsize=(5, 5), layout="constrained")
    axes = figure.add_subplot()
    if labels is None:
        axes.scatter(values[:, 0], values[:, 1], s=8)
    else:
        labels = np.asarray(labels)
        if labels.shape != (len(values),):
            raise ValueError(
                f"plot_embedding: labels must have one value per point, shape "
                f"({len(values)},). Received: shape {labels.shape}."
            )
        colours = matplotlib.colormaps[cmap]
        for index, label in enumerate(np.unique(labels)):
            chosen = labels == label
            colour = colours(index % colours.N if colours.N < 256 else index / 10 % 1)
            axes.scatter(values[chosen, 0], values[chosen, 1], s=8, color=colour, label=str(label))
        axes.legend(markerscale=2, fontsize="small")
    if title:
        axes.set_title(title)
    return figure
