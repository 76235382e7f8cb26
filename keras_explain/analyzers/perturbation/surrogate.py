"""Shared host-side machinery of LIME and KernelSHAP (local surrogate models).

Both run on the host (the ``lime`` and ``shap`` packages are numpy code) and
evaluate the model through :meth:`Perturbation.predict`: a Keras model in one
compiled function, a plain callable on large numpy batches. Images
(``(B, H, W, C)``) are explained over superpixels whose weights are painted
back onto their pixels; 2-D inputs ``(B, features)`` are tabular. A
switched-off superpixel takes the ``baseline`` value (:func:`switched_off`). The packages'
own explanation objects are kept in ``analyzer.last_explanations`` (one per
sample) for their plots, and ``analyzer.last_timings`` says where the time went.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import tensorflow as tf

from keras_explain import _validate
from keras_explain._spatial import gaussian_blur
from keras_explain.analyzers.perturbation import segmentation as segmentation_module
from keras_explain.analyzers.perturbation.engine import Perturbation


class Surrogate(Perturbation):
    """Base of LIME and KernelSHAP: segmentation, timing, scoring numpy rows on the host."""

    execution = "host"
    extra = "lime"

    def __init__(
        self, model, *, samples, segmentation, segmentation_options, baseline, seed, **kwargs
    ):
        self.superpixels = segmentation_module.Superpixels(
            segmentation, segmentation_options, extra=self.extra, owner=type(self).__name__
        )
        self.samples = None if samples is None else _validate.positive_int(samples, "samples")
        self.segmentation = segmentation
        self.segmentation_options = segmentation_options
        self.baseline = check_switched_off(baseline, type(self).__name__)
        self.last_explanations: list[Any] = []
        self.last_timings: dict[str, float] = {}
        super().__init__(model, seed=seed, **kwargs)

    def explain_batch(self, inputs, target, indices, seed, params):
        """Fit the package's surrogate per sample, on the host."""
        x = self.single_input(inputs)
        target, indices, _ = self.fixed_target([x], target, indices)
        self._target = target
        self.last_timings = {"segmentation": 0.0, "model": 0.0, "surrogate": 0.0}
        self.last_explanations = []
        seed = np.asarray(seed)
        random_seed = int((seed[0] * 1000003 + seed[1]) % (2**31 - 1))
        start = time.perf_counter()
        if x.dtype.is_integer and x.shape.rank == 2 and self.host_tokens:
            result = self._tokens(np.asarray(x), np.asarray(indices), random_seed)
        elif x.shape.rank == 2:
            result = self._tabular(np.asarray(x), np.asarray(indices), random_seed)
        elif x.shape.rank == 4:
            began = time.perf_counter()
            labels = self.superpixels(np.asarray(x))
            self.last_timings["segmentation"] = time.perf_counter() - began
            result = self._images(np.asarray(x), labels, np.asarray(indices), random_seed)
        else:
            raise ValueError(
                f"{type(self).__name__} explains tabular inputs (batch, features) and images "
                f"(batch, H, W, C). Received: inputs of shape {tuple(x.shape)}."
            )
        spent = time.perf_counter() - start
        timings = self.last_timings
        timings["surrogate"] = spent - timings["model"] - timings["segmentation"]
        return [tf.constant(result.astype(np.float32))]

    def score_function(self, index, sample: int | None = None):
        """``f(rows) -> (n,)``: the fixed target score of numpy rows (timed).

        Rows of token ids stay integers; with constant inputs (a padding mask),
        those of batch row ``sample`` go with every row.
        """

        def score(rows):
            began = time.perf_counter()
            rows = np.asarray(rows)
            rows = rows if np.issubdtype(rows.dtype, np.integer) else rows.astype(np.float32)
            inputs = rows
            if self._companions is not None:
                inputs = [
                    rows
                    if i == self.feature_input
                    else np.repeat(np.asarray(c)[sample : sample + 1], len(rows), 0)
                    for i, c in enumerate(self._companions)
                ]
            outputs = tf.convert_to_tensor(self.predict(inputs))
            tiled = tf.fill([len(rows)], tf.constant(index, tf.int64))
            scores = np.asarray(self.scores(outputs, self._target, tiled), np.float32)
            self.last_timings["model"] += time.perf_counter() - began
            return scores

        return score

    def masked(self, image, labels, baseline, keep):
        """Copies of ``image`` with the superpixels where ``keep == 0`` replaced."""
        mask = np.asarray(keep, np.float32)[:, labels][..., None]
        return baseline + mask * (image - baseline)


def check_switched_off(baseline: Any, owner: str) -> Any:
    """A checked ``baseline`` of switched-off superpixels: a name or a finite number.

    Raises:
        ValueError: For an unknown name or a non-finite number.
        TypeError: For anything else (arrays included).
    """
    if baseline is None:
        return None
    if isinstance(baseline, str):
        if baseline in segmentation_module.SWITCHED_OFF:
            return baseline
        raise ValueError(
            f"{owner}: unknown baseline. Received: baseline={baseline!r}. Expected a number "
            f"or one of {segmentation_module.SWITCHED_OFF}."
        )
    if not isinstance(baseline, int | float | np.number) or isinstance(baseline, bool):
        raise TypeError(
            f"{owner}: baseline (the value of switched-off superpixels) must be a number or "
            f"one of {segmentation_module.SWITCHED_OFF}. Received: {type(baseline).__name__}."
        )
    if not math.isfinite(float(baseline)):
        raise ValueError(f"{owner}: baseline must be finite. Received: baseline={baseline!r}.")
    return float(baseline)


def blur_sigma(height: int, width: int) -> float:
    """The Gaussian blur of ``baseline="blur"``: ``sqrt(H * W) / 8`` pixels."""
    return math.sqrt(height * width) / 8


def switched_off(image: np.ndarray, labels: np.ndarray, baseline: Any) -> np.ndarray:
    """What every pixel of ``image`` becomes when its superpixel is switched off.

    Args:
        image: ``(H, W, C)``.
        labels: ``(H, W)`` int superpixel labels numbered 0 .. n-1.
        baseline: A checked ``baseline``: a number (every channel), ``"mean"`` (the
            image's per-channel mean), ``"blur"`` (a Gaussian blur of the image,
            :func:`blur_sigma`), or ``"superpixel_mean"`` / None (each superpixel's
            own mean colour, lime's ``hide_color=None``).

    Returns:
        float32 ``(H, W, C)``.
    """
    image = np.asarray(image, np.float32)
    if not isinstance(baseline, str | None):
        return np.full(image.shape, baseline, np.float32)
    if baseline == "mean":
        return np.broadcast_to(image.mean(axis=(0, 1)), image.shape).astype(np.float32)
    if baseline == "blur":
        sigma = blur_sigma(*image.shape[:2])
        return np.asarray(gaussian_blur(tf.constant(image[None]), sigma)[0])
    # "superpixel_mean" or None
    flat = image.reshape(-1, image.shape[-1]).astype(np.float64)
    count = int(labels.max()) + 1
    sums = np.stack(
        [np.bincount(labels.ravel(), flat[:, c], count) for c in range(flat.shape[1])], 1
    )
    sizes = np.bincount(labels.ravel(), minlength=count)[:, None]
    return (sums / np.maximum(sizes, 1))[labels].astype(np.float32)


def check_reference_rows(data, x, needs: str, name: str) -> None:
    """Raise unless ``data`` is a 2-D array of rows with ``x``'s features."""
    if data is None or data.ndim != 2 or data.shape[1] != x.shape[1]:
        shape = None if data is None else data.shape
        raise ValueError(
            f"{needs} of shape (n, {x.shape[1]}). Received: {name} with shape {shape}."
        )
