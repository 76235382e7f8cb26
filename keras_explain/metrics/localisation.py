"""Localisation and sparseness: are the attributions on the object, and how concentrated?

Against ground-truth masks ``(B, H, W)`` (such as the masks of
:func:`keras_explain.datasets.shapes`): the pointing game (Zhang et al. 2018),
relevance mass and relevance rank accuracy (Arras et al. 2022), top-k
intersection (Theiner et al. 2021), attribution localisation (Kohlbrenner et al.
2020), the ROC AUC of the map as a mask detector (Fawcett 2006), and, against
the tile layouts of :func:`keras_explain.datasets.shapes_mosaics`, Focus
(Arias-Duart et al. 2022). Also sparseness (the Gini index of Chalasani et al.
2020). Attributions are shaped like ``x`` (channels last; they are summed over
the channels) or CAM maps ``(B, H, W)``. No model is evaluated.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from keras_explain import _validate
from keras_explain.metrics.engine import checked, feature_attributions, masks_like, ranks
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


def top_k_intersection(
    attributions, masks, *, k: int = 1000, concept_influence: bool = False
) -> np.ndarray:
    """Top-k intersection (Theiner et al. 2021): the share of the k highest pixels in the mask.

    ``|top_k(R) & M| / k``, ``R`` the map summed over channels (signed; ties in
    row-major order), ``M`` the mask. ``k`` is clipped to the number of pixels
    ``H * W``, so Quantus' default 1000 also runs on small images (where it then
    scores the mask's share of the image). With ``concept_influence`` the share is
    divided by the mask's share of the image, ``|M| / (H W)``: a random map then
    scores 1.0 on average. With ``k = |M|`` it is :func:`relevance_rank`. 0.0 for
    an empty mask.

    Args:
        attributions: ``(B, H, W, C)`` or maps ``(B, H, W)``.
        masks: Boolean ground truth ``(B, H, W)``.
        k: The number of highest pixels, a positive int.
        concept_influence: Divide by the mask's share of the image.

    Returns:
        ``(B,)`` float32 shares in [0, 1] (up to ``H W / |M|`` with ``concept_influence``).

    Raises:
        ValueError: For attributions or masks of the wrong shape, or ``k`` < 1.

    Example:
        >>> import numpy as np, keras_explain as kx
        >>> maps = np.array([[[3.0, 1.0], [2.0, 0.0]]])
        >>> masks = np.array([[[True, False], [False, False]]])
        >>> kx.metrics.top_k_intersection(maps, masks, k=2)
        array([0.5], dtype=float32)
    """
    maps = _maps(attributions, "top_k_intersection")
    masks = masks_like(masks, maps.shape, "top_k_intersection")
    k = checked("top_k_intersection", _validate.positive_int, k, "k")
    _validate.boolean(concept_influence, "concept_influence", "top_k_intersection")
    pixels = maps[0].size
    k = min(k, pixels)
    share = ((ranks(maps) < k) & masks).sum(axis=(1, 2)) / k
    if concept_influence:
        sizes = masks.sum(axis=(1, 2))
        share = np.where(sizes > 0, share * pixels / np.maximum(sizes, 1), 0.0)
    return share.astype(np.float32)


def attribution_localisation(attributions, masks, *, weighted: bool = False) -> np.ndarray:
    """Attribution localisation (Kohlbrenner et al. 2020): relevance mass, optionally weighted.

    ``mu = R_in / R_tot``, the positive relevance inside the mask over the total
    positive relevance (of the map summed over channels): the quantity that
    Arras et al. 2022 call relevance mass accuracy, so this calls
    :func:`relevance_mass`. With ``weighted``, ``mu_w = mu * (H W) / |M|``, ``mu``
    divided by the mask's share of the image: a uniform map scores 1.0 whatever
    the mask's size, a map concentrated in a small mask scores above 1. 0.0 for a
    map with no positive relevance; NaN for ``weighted`` with an empty mask.

    Args:
        attributions: ``(B, H, W, C)`` or maps ``(B, H, W)``.
        masks: Boolean ground truth ``(B, H, W)``.
        weighted: Divide by the mask's share of the image.

    Returns:
        ``(B,)`` float32 shares in [0, 1] (in [0, ``H W / |M|``] when ``weighted``).

    Raises:
        ValueError: For attributions or masks of the wrong shape.

    Example:
        >>> import numpy as np, keras_explain as kx
        >>> maps = np.array([[[3.0, 1.0], [-2.0, 0.0]]])
        >>> masks = np.array([[[True, False], [False, False]]])
        >>> kx.metrics.attribution_localisation(maps, masks, weighted=True)
        array([3.], dtype=float32)
    """
    _validate.boolean(weighted, "weighted", "attribution_localisation")
    maps = _maps(attributions, "attribution_localisation")
    masks = masks_like(masks, maps.shape, "attribution_localisation")
    share = relevance_mass(maps, masks).astype(np.float64)
    if weighted:
        sizes = masks.sum(axis=(1, 2))
        share = np.where(sizes > 0, share * maps[0].size / np.maximum(sizes, 1), np.nan)
    return share.astype(np.float32)


def localisation_auc(attributions, masks) -> np.ndarray:
    """Localisation AUC (Fawcett 2006): the ROC AUC of the map as a detector of the mask.

    Each pixel is one example: its label is the mask, its score the map (summed
    over channels, signed). The area under the ROC curve
    (``sklearn.metrics.roc_auc_score``) is the probability that a random pixel
    of the mask scores above a random pixel outside it, ties counting one half:
    1.0 when the mask's pixels score highest, 0.0 when lowest, 0.5 for a constant
    map. NaN for a mask that is empty or covers the whole image (no ROC curve).

    Args:
        attributions: ``(B, H, W, C)`` or maps ``(B, H, W)``.
        masks: Boolean ground truth ``(B, H, W)``.

    Returns:
        ``(B,)`` float32 areas in [0, 1].

    Raises:
        ValueError: For attributions or masks of the wrong shape.

    Example:
        >>> import numpy as np, keras_explain as kx
        >>> maps = np.array([[[3.0, 1.0], [2.0, 0.0]]])
        >>> masks = np.array([[[True, False], [False, True]]])
        >>> kx.metrics.localisation_auc(maps, masks)
        array([0.5], dtype=float32)
    """
    from sklearn.metrics import roc_auc_score

    maps = _maps(attributions, "localisation_auc")
    masks = masks_like(masks, maps.shape, "localisation_auc")
    areas = np.full(len(maps), np.nan)
    for index, (scores, labels) in enumerate(zip(maps, masks)):
        if 0 < labels.sum() < labels.size:
            areas[index] = roc_auc_score(labels.ravel(), scores.ravel())
    return areas.astype(np.float32)


def focus(attributions, layouts) -> np.ndarray:
    """Focus (Arias-Duart et al. 2022): the share of positive relevance on the class's tiles.

    On 2 x 2 mosaics of which two tiles show the target class (such as those of
    :func:`keras_explain.datasets.shapes_mosaics`), the positive relevance (of
    the map summed over channels) on the tiles where ``layouts`` is True over
    the total positive relevance: :func:`relevance_mass` with those tiles as the
    mask. The tiles split the map at row ``H // 2`` and column ``W // 2``. A map
    blind to the class scores about 0.5; 0.0 for a map with no positive relevance.
    Defined for images and maps only.

    Args:
        attributions: ``(B, H, W, C)`` or maps ``(B, H, W)`` of the mosaics.
        layouts: Booleans ``(B, 2, 2)``: which tiles show the target class.

    Returns:
        ``(B,)`` float32 shares in [0, 1].

    Raises:
        ValueError: For attributions or layouts of the wrong shape.

    Example:
        >>> import numpy as np, keras_explain as kx
        >>> maps = np.array([[[3.0, 1.0], [-2.0, 0.0]]])  # one pixel per tile
        >>> kx.metrics.focus(maps, np.array([[[True, False], [True, False]]]))
        array([0.75], dtype=float32)
    """
    maps = _maps(attributions, "focus")
    layouts = np.asarray(layouts)
    if layouts.shape != (len(maps), 2, 2):
        raise ValueError(
            f"focus: layouts must have shape {(len(maps), 2, 2)}, one boolean per tile of "
            f"each mosaic (as kx.datasets.shapes_mosaics returns them). Received: layouts "
            f"of shape {layouts.shape}."
        )
    height, width = maps.shape[1:]
    rows = (np.arange(height) >= height // 2).astype(int)  # the tile row of each pixel row
    columns = (np.arange(width) >= width // 2).astype(int)
    return relevance_mass(maps, layouts.astype(bool)[:, rows][:, :, columns])


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
    array = np.abs(np.asarray(feature_attributions(attributions, "sparseness"), np.float64))
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


@register_metric("top_k_intersection", better="higher", needs_masks=True, default=False)
def _top_k_intersection(context: MetricContext) -> np.ndarray:
    """Share of the top ``k = 1000`` pixels (at most all) inside ``context.masks``."""
    return top_k_intersection(context.attributions, context.masks)


@register_metric("attribution_localisation", better="higher", needs_masks=True, default=False)
def _attribution_localisation(context: MetricContext) -> np.ndarray:
    """``weighted=True`` against ``context.masks`` (unweighted, it is ``relevance_mass``)."""
    return attribution_localisation(context.attributions, context.masks, weighted=True)


@register_metric("localisation_auc", better="higher", needs_masks=True, default=False)
def _localisation_auc(context: MetricContext) -> np.ndarray:
    """ROC AUC of the map as a detector of ``context.masks``."""
    return localisation_auc(context.attributions, context.masks)
