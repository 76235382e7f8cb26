"""Localisation and complexity: are the attributions on the object, and how concentrated?

Pointing game (Zhang et al. 2018), relevance mass and relevance rank accuracy
(Arras et al. 2022) against ground-truth masks ``(B, H, W)`` (such as the masks of
:func:`keras_explain.datasets.shapes`), and sparseness (the Gini index of
Chalasani et al. 2020). Attributions are shaped like ``x`` (channels last; they
are summed over the channels) or CAM maps ``(B, H, W)``. No model is evaluated.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from keras_explain.metrics.engine import masks_like
from keras_explain.metrics.registry import MetricContext, register_metric


def _maps(attributions: Any, function: str) -> np.ndarray:
    array = np.asarray(attributions, dtype=np.float64)
    if array.ndim == 4:
        return array.sum(axis=-1)
    if array.ndim == 3:
        return array
    raise ValueError(
        f"{function}: attributions must be images (B, H, W, C) or maps (B, H, W). "
        f"Received: attributions of shape {array.shape}."
    )


def pointing_game(attributions, masks) -> np.ndarray:
    """Pointing game (Zhang et al. 2018): 1.0 when the maximum of the map is on the object.

    The map is the attribution summed over channels. A sample scores 1.0 when
    every pixel that attains the map's maximum lies inside its mask (so a
    constant map only scores where the mask covers the whole image), else 0.0.

    Args:
        attributions: ``(B, H, W, C)`` or maps ``(B, H, W)``.
        masks: Boolean ground truth ``(B, H, W)``.

    Returns:
        ``(B,)`` float32 hits, 1.0 or 0.0.

    Raises:
        ValueError: For attributions or masks of the wrong shape.

    Example:
        >>> import numpy as np, keras_explain as kx
        >>> maps = np.zeros((1, 3, 3)); maps[0, 1, 1] = 1.0
        >>> masks = np.zeros((1, 3, 3), bool); masks[0, 1, :] = True
        >>> kx.metrics.pointing_game(maps, masks)
        array([1.], dtype=float32)
    """
    maps = _maps(attributions, "pointing_game")
    masks = masks_like(masks, maps.shape, "pointing_game")
    flat = maps.reshape(len(maps), -1)
    peaks = flat == flat.max(axis=1, keepdims=True)
    inside = masks.reshape(len(maps), -1)
    return np.all(~peaks | inside, axis=1).astype(np.float32)


def relevance_mass(attributions, masks) -> np.ndarray:
    """Relevance mass accuracy (Arras et al. 2022): share of positive relevance in the mask.

    ``sum_{mask} max(R, 0) / sum max(R, 0)``, ``R`` the map summed over
    channels; 0.0 for a map with no positive relevance.

    Args:
        attributions: ``(B, H, W, C)`` or maps ``(B, H, W)``.
        masks: Boolean ground truth ``(B, H, W)``.

    Returns:
        ``(B,)`` float32 shares in [0, 1].

    Raises:
        ValueError: For attributions or masks of the wrong shape.

    Example:
        >>> import numpy as np, keras_explain as kx
        >>> maps = np.array([[[3.0, 1.0], [-2.0, 0.0]]])
        >>> kx.metrics.relevance_mass(maps, np.array([[[True, False], [True, False]]]))
        array([0.75], dtype=float32)
    """
    maps = _maps(attributions, "relevance_mass")
    masks = masks_like(masks, maps.shape, "relevance_mass")
    positive = np.maximum(maps, 0).reshape(len(maps), -1)
    inside = (positive * masks.reshape(len(maps), -1)).sum(axis=1)
    total = positive.sum(axis=1)
    return np.where(total > 0, inside / np.where(total > 0, total, 1.0), 0.0).astype(np.float32)


def relevance_rank(attributions, masks) -> np.ndarray:
    """Relevance rank accuracy (Arras et al. 2022): the top-K pixels that are in the mask.

    ``K`` is the mask's size; the share of the ``K`` highest values of the map
    (summed over channels; ties in row-major order) that lie inside the mask.
    0.0 for an empty mask.

    Args:
        attributions: ``(B, H, W, C)`` or maps ``(B, H, W)``.
        masks: Boolean ground truth ``(B, H, W)``.

    Returns:
        ``(B,)`` float32 shares in [0, 1].

    Raises:
        ValueError: For attributions or masks of the wrong shape.

    Example:
        >>> import numpy as np, keras_explain as kx
        >>> maps = np.array([[[3.0, 1.0], [2.0, 0.0]]])
        >>> kx.metrics.relevance_rank(maps, np.array([[[True, True], [False, False]]]))
        array([0.5], dtype=float32)
    """
    maps = _maps(attributions, "relevance_rank")
    masks = masks_like(masks, maps.shape, "relevance_rank")
    flat = maps.reshape(len(maps), -1)
    inside = masks.reshape(len(maps), -1)
    order = np.argsort(-flat, axis=1, kind="stable")
    sizes = inside.sum(axis=1)
    hits = np.take_along_axis(inside, order, axis=1) & (
        np.arange(flat.shape[1])[None] < sizes[:, None]
    )
    return np.where(sizes > 0, hits.sum(axis=1) / np.maximum(sizes, 1), 0.0).astype(np.float32)


def sparseness(attributions) -> np.ndarray:
    """Sparseness: the Gini index of ``|a|`` (Chalasani et al. 2020; Hurley & Rickard 2009).

    With ``v_(1) <= ... <= v_(d)`` the sorted absolute attributions of a sample
    (all its elements),
    ``G = sum_k (2k - d - 1) v_(k) / (d sum_k v_(k))``: 0 when every element is
    equal, ``1 - 1/d`` when one element holds everything. 0.0 for all-zero
    attributions.

    Args:
        attributions: Any batch ``(B, ...)``.

    Returns:
        ``(B,)`` float32 Gini indices in [0, 1).

    Example:
        >>> import numpy as np, keras_explain as kx
        >>> kx.metrics.sparseness(np.array([[0.0, 0.0, 0.0, 5.0], [1.0, -1.0, 1.0, 1.0]]))
        array([0.75, 0.  ], dtype=float32)
    """
    array = np.abs(np.asarray(attributions, dtype=np.float64))
    if array.ndim < 2:
        raise ValueError(
            "sparseness needs a batch of attributions (B, ...). Received: attributions of "
            f"shape {array.shape}. Add the batch axis, e.g. a[None]."
        )
    values = np.sort(array.reshape(len(array), -1), axis=1)
    count = values.shape[1]
    weights = 2 * np.arange(1, count + 1) - count - 1
    total = values.sum(axis=1)
    gini = (values * weights).sum(axis=1) / (count * np.where(total > 0, total, 1.0))
    return np.where(total > 0, gini, 0.0).astype(np.float32)


# -- The columns of kx.metrics.evaluate (registered once, see kx.metrics.registry) ----------
@register_metric("pointing_game", better="higher", needs_masks=True, report_default=True)
def _pointing_game(context: MetricContext) -> np.ndarray:
    """Pointing game against ``context.masks``."""
    return pointing_game(context.attributions, context.masks)


@register_metric("relevance_mass", better="higher", needs_masks=True, report_default=True)
def _relevance_mass(context: MetricContext) -> np.ndarray:
    """Share of the positive relevance inside ``context.masks``."""
    return relevance_mass(context.attributions, context.masks)


@register_metric("sparseness", better="higher", report_default=True)
def _sparseness(context: MetricContext) -> np.ndarray:
    """Gini index of ``|a|``."""
    return sparseness(context.attributions)
