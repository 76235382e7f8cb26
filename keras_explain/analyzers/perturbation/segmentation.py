"""Superpixels: segment images into feature groups and paint group weights back.

Used by LIME, KernelSHAP and Shapley sampling on images. scikit-image is
imported lazily, only when a named algorithm is used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

SEGMENTATIONS = ("quickshift", "slic", "felzenszwalb")
DEFAULTS = {
    "quickshift": {"kernel_size": 4, "max_dist": 200, "ratio": 0.2},
    "slic": {"n_segments": 50, "compactness": 10.0, "start_label": 0},
    "felzenszwalb": {"scale": 100.0, "sigma": 0.5, "min_size": 20},
}


def require(package: str, extra: str, purpose: str) -> Any:
    """Import an optional package, or raise ImportError naming the extra to install."""
    import importlib
    import warnings

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
) -> np.ndarray:
    """Superpixel labels of a batch of images, numbered 0 .. n-1 per image.

    Args:
        images: ``(B, H, W, C)`` array.
        segmentation: ``"quickshift"``, ``"slic"``, ``"felzenszwalb"`` (from
            scikit-image), a callable ``image (H, W, C) -> (H, W)`` int labels,
            or a precomputed int label map ``(H, W)`` (shared) or ``(B, H, W)``.
        options: Keyword arguments of the scikit-image function (defaults in
            ``DEFAULTS``).
        extra: The extra named by the ImportError when scikit-image is missing.

    Returns:
        int32 array ``(B, H, W)`` with contiguous labels starting at 0.

    Raises:
        ImportError: If scikit-image is needed and missing.
        ValueError: For a label map or a callable result of the wrong shape.
    """
    batch, height, width = images.shape[:3]
    if isinstance(segmentation, str):
        function = _algorithm(segmentation, options or {}, extra)
        labels = np.stack([function(image) for image in images])
    elif callable(segmentation):
        labels = np.stack([np.asarray(segmentation(image)) for image in images])
    else:
        labels = np.asarray(segmentation)
        if labels.shape == (height, width):
            labels = np.broadcast_to(labels, (batch, height, width))
    if labels.shape != (batch, height, width) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"Superpixel labels must be ints of shape (H, W) = {(height, width)} per image. "
            f"Received: labels of shape {labels.shape} and dtype {labels.dtype}."
        )
    return np.stack(
        [np.unique(item, return_inverse=True)[1].reshape(height, width) for item in labels]
    ).astype(np.int32)


def _algorithm(name: str, options: dict, extra: str) -> Callable:
    segmentation = require("skimage.segmentation", extra, f"segmentation={name!r}")
    kwargs = {**DEFAULTS[name], **options}
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
