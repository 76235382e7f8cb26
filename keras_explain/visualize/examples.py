"""Training examples beside the test examples they influence (``kx.influence``'s results)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from keras_explain.visualize import _checks
from keras_explain.visualize.maps import as_rgb


def plot_examples(
    test_images: Any,
    train_images: Any,
    proponents: tuple[Any, Any],
    opponents: tuple[Any, Any] | None = None,
    *,
    test_labels: Sequence[Any] | None = None,
    train_labels: Sequence[Any] | None = None,
    cell_size: float = 1.4,
):
    """One row per test image: the image, its proponents, then its opponents.

    Each training image's title is its score (signed, 3 significant digits) and,
    with ``train_labels``, its label; each row starts with the test image and,
    with ``test_labels``, its label.

    Args:
        test_images: ``(n, H, W)`` or ``(n, H, W, C)``.
        train_images: The training images the indices point into, ``(N, H, W[, C])``.
        proponents: ``(indices, scores)``, each ``(n, k)``, as
            :meth:`keras_explain.influence.TracIn.proponents` returns them.
        opponents: Optional ``(indices, scores)`` of the opponents, each ``(n, k')``.
        test_labels: Optional label per test image.
        train_labels: Optional label per training image (``N`` of them).
        cell_size: Size of one cell in inches.

    Returns:
        A ``matplotlib.figure.Figure`` (not registered with pyplot).

    Raises:
        ValueError: For indices and scores of different shapes, rows that are not
            one per test image, indices outside the training images, or labels of
            the wrong length.

    Example:
        >>> import numpy as np
        >>> from keras_explain import visualize
        >>> rng = np.random.default_rng(0)
        >>> train, test = rng.random((10, 8, 8, 3)), rng.random((2, 8, 8, 3))
        >>> indices, scores = np.array([[3, 1], [0, 9]]), np.array([[2.0, 1.0], [0.5, 0.1]])
        >>> figure = visualize.plot_examples(test, train, (indices, scores))
        >>> len(figure.axes)  # 2 rows of 1 test image + 2 proponents
        6
    """
    from matplotlib.figure import Figure

    test = as_rgb(np.asarray(test_images))
    train = np.asarray(train_images)
    groups = [("proponent", proponents)] + ([("opponent", opponents)] if opponents else [])
    columns = []
    for kind, (indices, scores) in groups:
        indices, scores = np.asarray(indices), np.asarray(scores)
        if indices.shape != scores.shape or indices.ndim != 2 or len(indices) != len(test):
            raise ValueError(
                f"plot_examples: the {kind}s' indices and scores must both be (n_test, k) with "
                f"n_test = {len(test)} test images. Received: indices {indices.shape}, scores "
                f"{scores.shape}."
            )
        if indices.size and (indices.min() < 0 or indices.max() >= len(train)):
            raise ValueError(
                f"plot_examples: the {kind}s' indices must index the {len(train)} training "
                f"images. Received: indices from {indices.min()} to {indices.max()}."
            )
        columns += [(kind, indices[:, j], scores[:, j], j + 1) for j in range(indices.shape[1])]
    _checks.labels(test_labels, len(test))
    if train_labels is not None and len(train_labels) != len(train):
        raise ValueError(
            f"plot_examples: train_labels needs one label per training image ({len(train)}). "
            f"Received: {len(train_labels)}."
        )
    figure = Figure(figsize=(cell_size * (1 + len(columns)), cell_size * len(test) + 0.4))
    axes = figure.subplots(len(test), 1 + len(columns), squeeze=False)
    for row in range(len(test)):
        _draw(axes[row, 0], test[row])
        axes[row, 0].set_title("test" if row == 0 else "", fontsize=7)
        if test_labels is not None:
            axes[row, 0].set_ylabel(str(test_labels[row]), fontsize=8)
        for column, (kind, indices, scores, rank) in enumerate(columns, start=1):
            index = int(indices[row])
            _draw(axes[row, column], as_rgb(train[index : index + 1])[0])
            title = f"{scores[row]:+.3g}"
            if train_labels is not None:
                title += f" · {train_labels[index]}"
            header = f"{kind} {rank}\n" if row == 0 else ""
            axes[row, column].set_title(header + title, fontsize=7)
    figure.tight_layout(pad=0.3)
    return figure


def _draw(ax, picture: np.ndarray) -> None:
    ax.imshow(picture, interpolation="nearest", vmin=0.0, vmax=1.0)
    ax.set_xticks([])
    ax.set_yticks([])
