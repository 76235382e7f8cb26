"""Shared host-side machinery of LIME and KernelSHAP (local surrogate models).

Both run on the host (the ``lime`` and ``shap`` packages are numpy code) and
evaluate the model through :meth:`Perturbation.predict`: a Keras model in one
compiled function, a plain callable on large numpy batches. Images
(``(B, H, W, C)``) are explained over superpixels whose weights are painted
back onto their pixels; 2-D inputs ``(B, features)`` are tabular. The packages'
own explanation objects are kept in ``analyzer.last_explanations`` (one per
sample) for their plots, and ``analyzer.last_timings`` says where the time went.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import tensorflow as tf

from keras_explain import _validate
from keras_explain.analyzers.perturbation import segmentation as segmentation_module
from keras_explain.analyzers.perturbation.engine import Perturbation


class Surrogate(Perturbation):
    """Base of LIME and KernelSHAP: segmentation, timing, scoring numpy rows on the host."""

    compiled = False
    extra = "lime"

    def __init__(self, model, *, samples, segmentation, segmentation_options, seed, **kwargs):
        segmentation_module.check_segmentation(segmentation)
        self.samples = None if samples is None else _validate.positive_int(samples, "samples")
        self.segmentation = segmentation
        self.segmentation_options = segmentation_options
        self.last_explanations: list[Any] = []
        self.last_timings: dict[str, float] = {}
        super().__init__(model, seed=seed, **kwargs)

    def _explain(self, inputs, target, indices, seed, params):
        x = self.single_input(inputs)
        target, indices, _ = self.fixed_target(x, target, indices)
        self._target = target
        self.last_timings = {"segmentation": 0.0, "model": 0.0, "surrogate": 0.0}
        self.last_explanations = []
        seed = np.asarray(seed)
        random_seed = int((seed[0] * 1000003 + seed[1]) % (2**31 - 1))
        start = time.perf_counter()
        if x.shape.rank == 2:
            result = self._tabular(np.asarray(x), np.asarray(indices), random_seed)
        elif x.shape.rank == 4:
            began = time.perf_counter()
            labels = segmentation_module.segment(
                np.asarray(x), self.segmentation, self.segmentation_options, extra=self.extra
            )
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

    def score_function(self, index):
        """``f(rows) -> (n,)``: the fixed target score of numpy rows (timed)."""

        def score(rows):
            began = time.perf_counter()
            rows = np.asarray(rows, dtype=np.float32)
            outputs = tf.convert_to_tensor(self.predict(rows))
            tiled = tf.fill([len(rows)], tf.constant(index, tf.int64))
            scores = np.asarray(self.scores(outputs, self._target, tiled), np.float32)
            self.last_timings["model"] += time.perf_counter() - began
            return scores

        return score

    def masked(self, image, labels, baseline, keep):
        """Copies of ``image`` with the superpixels where ``keep == 0`` replaced."""
        mask = np.asarray(keep, np.float32)[:, labels][..., None]
        return baseline + mask * (image - baseline)


def check_reference_rows(data, x, needs: str, name: str) -> None:
    """Raise unless ``data`` is a 2-D array of rows with ``x``'s features."""
    if data is None or data.ndim != 2 or data.shape[1] != x.shape[1]:
        shape = None if data is None else data.shape
        raise ValueError(
            f"{needs} of shape (n, {x.shape[1]}). Received: {name} with shape {shape}."
        )
