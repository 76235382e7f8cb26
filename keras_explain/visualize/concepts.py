"""A concept atlas: what each concept of a layer is and where it acts (``kx.crp``'s results)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from keras_explain.visualize.maps import as_rgb, overlay


def plot_concept_atlas(
    image: Any,
    heatmaps: Any,
    relevances: Any,
    references: Any = None,
    *,
    channels: Sequence[Any] | None = None,
    cell_size: float = 1.4,
):
    """One row per concept: where it acts in ``image``, and what it is in the dataset.

    Each row shows the concept's conditional heatmap over the image, titled with its
    channel and its share of the summed relevance of the concepts shown. With
    ``references``, the row goes on with the concept's reference samples (their
    receptive-field crops), titled with their scores.

    Args:
        image: One image ``(H, W)`` or ``(H, W, C)``.
        heatmaps: ``(n, H, W[, C])`` its conditional heatmaps, one per concept
            (:meth:`keras_explain.crp.CRP.conditional` of the image, row 0).
        relevances: ``(n,)`` the concepts' relevances
            (:meth:`keras_explain.crp.CRP.concept_relevance`, at those channels).
        references: :class:`keras_explain.crp.ReferenceSamples` of the same
            channels, in the same order (with patches), or None.
        channels: The channel of each row (default: ``references.channels``, else
            0 to n-1).
        cell_size: Size of one cell in inches.

    Returns:
        A ``matplotlib.figure.Figure`` (not registered with pyplot).

    Raises:
        ValueError: For heatmaps, relevances, channels or references that are not one
            per concept, or references without patches.

    Example:
        >>> import numpy as np
        >>> from keras_explain import visualize
        >>> rng = np.random.default_rng(0)
        >>> figure = visualize.plot_concept_atlas(rng.random((8, 8, 3)),
        ...     rng.normal(size=(2, 8, 8, 3)), np.array([0.7, 0.3]), channels=[5, 9])
        >>> [axis.get_title() for axis in figure.axes]
        ['channel 5 · 70.0%', 'channel 9 · 30.0%']
    """
    from matplotlib.figure import Figure

    image = np.asarray(image)
    heatmaps, relevances = np.asarray(heatmaps), np.asarray(relevances, np.float64)
    count = len(heatmaps)
    if relevances.shape != (count,):
        raise ValueError(
            f"plot_concept_atlas needs one relevance per heatmap ({count}). Received: "
            f"relevances of shape {relevances.shape}."
        )
    if references is not None:
        if references.patches is None or len(references.patches) != count:
            raise ValueError(
                "plot_concept_atlas needs the references of the same concepts, with patches "
                f"(crop=True). Received: {count} heatmaps and references of "
                f"{len(references.channels)} channels"
                f"{'' if references.patches is not None else ' without patches'}."
            )
        channels = references.channels if channels is None else channels
    channels = list(range(count)) if channels is None else list(channels)
    if len(channels) != count:
        raise ValueError(
            f"plot_concept_atlas needs one channel per heatmap ({count}). Received: "
            f"{len(channels)} channels."
        )
    shown = overlay(np.broadcast_to(image, (count, *image.shape)), heatmaps)
    total = np.abs(relevances).sum()
    k = 0 if references is None else references.patches.shape[1]
    figure = Figure(figsize=(cell_size * (1 + k), cell_size * count + 0.3))
    axes = figure.subplots(count, 1 + k, squeeze=False)
    for row in range(count):
        share = relevances[row] / total if total > 0 else 0.0
        _draw(axes[row, 0], shown[row], f"channel {channels[row]} · {share:.1%}")
        for column in range(k):
            patch = as_rgb(references.patches[row, column][None])[0]
            _draw(axes[row, 1 + column], patch, f"{references.scores[row, column]:.3g}")
    figure.tight_layout(pad=0.3)
    return figure


def _draw(ax, picture: np.ndarray, title: str) -> None:
    ax.imshow(picture, interpolation="nearest", vmin=0.0, vmax=1.0)
    ax.set_title(title, fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])
