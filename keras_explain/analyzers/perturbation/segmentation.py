"""Superpixels: segment images into feature groups and paint group weights back.

Used by LIME, KernelSHAP and Shapley sampling on images. scikit-image is
imported lazily, only when a named algorithm is used.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

SEGMENTATIONS = ("quickshift", "slic", "felzenszwalb")
SEGMENTS = 50  # the number of superpixels the default options aim at, whatever the size
TOO_FEW = 8  # fewer segments than this from the default options: a regular grid instead
SWITCHED_OFF = ("mean", "blur", "superpixel_mean")


def default_options(name: str, height: int, width: int) -> dict:
    """The default options of a scikit-image algorithm, scaled to an image's size.

    They aim at about :data:`SEGMENTS` superpixels at any size: ``slic`` asks for
    them (``n_segments``) after a Gaussian pre-smoothing of one pixel (``sigma=1``,
    without which pixel noise breaks slic's clusters and its connectivity step
    merges them into a couple of segments); ``quickshift`` keeps lime's
    ``kernel_size=4`` at 224 pixels and scales it with the side (at least 1), with
    ``max_dist`` ten kernel widths; ``felzenszwalb`` scales its ``scale`` with the
    side and its ``min_size`` with the area (1/100 of the image).

    Args:
        name: ``"quickshift"``, ``"slic"`` or ``"felzenszwalb"``.
        height: The image height in pixels.
        width: The image width in pixels.

    Returns:
        The keyword arguments of the scikit-image function.
    """
    side = math.sqrt(height * width)
    if name == "quickshift":
        kernel = max(1.0, 4.0 * side / 224)
        return {"kernel_size": kernel, "max_dist": 10.0 * kernel, "ratio": 0.2}
    if name == "slic":
        return {"n_segments": SEGMENTS, "compactness": 10.0, "sigma": 1.0, "start_label": 0}
    return {"scale": 100.0 * side / 224, "sigma": 0.5, "min_size": max(1, height * width // 100)}


def grid(height: int, width: int, cell: int | None = None) -> np.ndarray:
    """A regular grid of square cells, ``(H, W)`` int labels, row-major from 0.

    The cell side is ``cell`` pixels, by default ``round(sqrt(H * W / SEGMENTS))``
    (about :data:`SEGMENTS` cells), at least 1; cells at the right and bottom edges
    may be smaller.
    """
    if cell is None:
        cell = max(1, round(math.sqrt(height * width / SEGMENTS)))
    columns = -(-width // cell)
    rows, cols = np.arange(height) // cell, np.arange(width) // cell
    return (rows[:, None] * columns + cols[None, :]).astype(np.int32)


def require(package: str, extra: str, purpose: str) -> Any:
    """Import an optional package, or raise ImportError naming the extra to install."""
    import importlib

    try:
        with warnings.catch_warnings():
            # lime imports tqdm.auto, which warns in Jupyter without ipywidgets; its
            # bars are silenced anyway (verbose)
            warnings.filterwarnings("ignore", message="IProgress not found")
            return importlib.import_module(package)
    except ImportError as error:
        raise ImportError(
            f"{purpose} needs the optional package {package!r}. Install it with: "
            f'pip install "keras-explainer[{extra}]"'
        ) from error


def check_segmentation(segmentation: Any) -> None:
    """Validate a ``segmentation`` argument at construction.

    Raises:
        ValueError: For an unknown algorithm name.
        TypeError: For anything but a name, a callable or an int array.
    """
    if isinstance(segmentation, str):
        if segmentation not in SEGMENTATIONS:
            raise ValueError(
                f"Unknown segmentation. Received: segmentation={segmentation!r}. Expected "
                f"one of {SEGMENTATIONS}, a callable image -> labels, or a label map."
            )
    elif not callable(segmentation) and not np.issubdtype(
        np.asarray(segmentation).dtype, np.integer
    ):
        raise TypeError(
            "segmentation must be an algorithm name, a callable image -> (H, W) int "
            "labels, or an int label map of shape (H, W) or (batch, H, W). Received: "
            f"{type(segmentation).__name__}."
        )


def segment(
    images: np.ndarray,
    segmentation: Any = "quickshift",
    options: dict | None = None,
    extra: str = "lime",
    owner: str = "segment",
) -> np.ndarray:
    """Superpixel labels of a batch of images, numbered 0 .. n-1 per image.

    A named algorithm without ``options`` runs with :func:`default_options` scaled
    to the image; when it still gives fewer than :data:`TOO_FEW` segments on an
    image (tiny or featureless images), that image gets the regular :func:`grid`
    instead, with a warning. Given ``options`` are used as they are (keys not given
    keep the scaled defaults), with no grid fallback. Analyzers warn once through
    :class:`Superpixels`; this function warns on every fallback.

    Args:
        images: ``(B, H, W, C)`` array.
        segmentation: ``"quickshift"``, ``"slic"``, ``"felzenszwalb"`` (from
            scikit-image), a callable ``image (H, W, C) -> (H, W)`` int labels,
            or a precomputed int label map ``(H, W)`` (shared) or ``(B, H, W)``.
        options: Keyword arguments of the scikit-image function.
        extra: The extra named by the ImportError when scikit-image is missing.
        owner: The class named by the fallback warning.

    Returns:
        int32 array ``(B, H, W)`` with contiguous labels starting at 0.

    Raises:
        ImportError: If scikit-image is needed and missing.
        ValueError: For a label map or a callable result of the wrong shape.

    Example:
        >>> import numpy as np
        >>> from keras_explain.analyzers.perturbation.segmentation import segment
        >>> images = np.random.default_rng(0).uniform(size=(2, 32, 32, 3))
        >>> labels = segment(images, "slic")
        >>> labels.shape, labels.dtype.name, int(labels.max()) + 1 >= 8
        ((2, 32, 32), 'int32', True)
    """
    return Superpixels(segmentation, options, extra=extra, owner=owner)(images)


class Superpixels:
    """The superpixels of one analyzer: its segmentation, options and one fallback warning.

    Calling it on ``(B, H, W, C)`` images returns the labels of :func:`segment`; the
    warning about a grid fallback is given once per instance (once per analyzer).

    Args:
        segmentation: As in :func:`segment`.
        options: As in :func:`segment`.
        extra: The extra named by the ImportError when scikit-image is missing.
        owner: The class named by the fallback warning.
    """

    def __init__(self, segmentation: Any, options: dict | None, *, extra: str, owner: str):
        check_segmentation(segmentation)
        self.segmentation = segmentation
        self.options = None if options is None else dict(options)
        self.extra = extra
        self.owner = owner
        self.warned = False

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """The int32 labels ``(B, H, W)`` of ``(B, H, W, C)`` images, as :func:`segment`."""
        images = np.asarray(images)
        batch, height, width = images.shape[:3]
        segmentation = self.segmentation
        if isinstance(segmentation, str):
            function = _algorithm(segmentation, self.options, height, width, self.extra)
            labels = np.stack([function(image) for image in images])
            if self.options is None:
                labels = self._fallback(labels, height, width)
        elif callable(segmentation):
            labels = np.stack([np.asarray(segmentation(image)) for image in images])
        else:
            labels = np.asarray(segmentation)
            if labels.shape == (height, width):
                labels = np.broadcast_to(labels, (batch, height, width))
        if labels.shape != (batch, height, width) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(
                f"Superpixel labels must be ints of shape (H, W) = {(height, width)} per "
                f"image. Received: labels of shape {labels.shape} and dtype {labels.dtype}."
            )
        return np.stack(
            [np.unique(item, return_inverse=True)[1].reshape(height, width) for item in labels]
        ).astype(np.int32)

    def _fallback(self, labels, height, width):
        counts = np.array([len(np.unique(item)) for item in labels])
        few = counts < TOO_FEW
        if not few.any():
            return labels
        cells = grid(height, width)
        if not self.warned:
            self.warned = True
            cell = max(1, round(math.sqrt(height * width / SEGMENTS)))
            warnings.warn(
                f"{self.owner}: segmentation={self.segmentation!r} with its default options "
                f"gave {counts[few].min()} segment(s) on {few.sum()} of {len(labels)} images "
                f"of {height}x{width} pixels (fewer than {TOO_FEW}); those images use a "
                f"regular grid of {cells.max() + 1} cells of {cell}x{cell} pixels instead. "
                "To choose the superpixels, pass segmentation_options= (the scikit-image "
                "function's keyword arguments) or segmentation= (another algorithm, a "
                "callable image -> labels, or a label map).",
                UserWarning,
                stacklevel=2,
            )
        labels = labels.copy()
        labels[few] = cells
        return labels


def _algorithm(name: str, options: dict | None, height: int, width: int, extra: str) -> Callable:
    segmentation = require("skimage.segmentation", extra, f"segmentation={name!r}")
    kwargs = {**default_options(name, height, width), **(options or {})}
    function = getattr(segmentation, name)

    def run(image):
        image = np.asarray(image, dtype=np.float64)
        if name == "quickshift":
            if image.shape[-1] == 1:
                image = np.repeat(image, 3, axis=-1)
            if image.shape[-1] != 3:
                raise ValueError(
                    "quickshift segments RGB images (3 channels). Received an image with "
                    f"{image.shape[-1]} channels; use segmentation='slic' or "
                    "'felzenszwalb'."
                )
            return function(image, **kwargs)
        return function(image, channel_axis=-1, **kwargs)

    return run


def paint(weights: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Paint one weight per superpixel back onto its pixels: ``weights[labels]``."""
    return np.asarray(weights, dtype=np.float32)[labels]
