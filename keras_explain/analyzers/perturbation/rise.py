"""RISE: saliency as the score-weighted mean of random masks.

Low-resolution random binary grids are upsampled bilinearly to the input,
shifted, and blend the input with a baseline; every masked copy of a batch
goes through the model in passes (see
:class:`~keras_explain.analyzers.perturbation.engine.Perturbation`).
"""

from __future__ import annotations

import math
from typing import Any

import tensorflow as tf

from keras_explain import _validate
from keras_explain._spatial import blend, resize_maps, spatial_axes, spread_over_channels
from keras_explain.analyzers.perturbation.engine import Perturbation
from keras_explain.analyzers.registry import register
from keras_explain.random import shared_seed


def mask_lengths(x: tf.Tensor, name: str) -> list[int]:
    """Spatial lengths of ``x``; masks cover one or two spatial axes."""
    lengths = [int(x.shape[a]) for a in spatial_axes(x.shape.rank)]
    if len(lengths) > 2:
        raise ValueError(
            f"{name} masks cover one or two spatial axes. Received: inputs of shape "
            f"{tuple(x.shape)}."
        )
    return lengths


@register("rise")
class RISE(Perturbation):
    """RISE: Randomized Input Sampling for Explanation (Petsiuk et al. 2018, arXiv:1806.07421).

    ``N = samples`` binary grids of ``cells`` cells per spatial axis, each cell
    kept with probability ``p``, are upsampled bilinearly to
    ``(cells + 1) * ceil(length / cells)`` and cropped at a random shift of
    less than one cell. The saliency is
    ``sum_i f_t(x * M_i + (1 - M_i) * baseline) M_i / (N p)``; the masks
    span all channels and are shared by the samples of a batch.

    Args:
        model: A Keras model or a callable ``f(x) -> scores``.
        samples: Number of masks N (default 4000, as in the paper).
        cells: Mask resolution per spatial axis (default 7).
        probability: Probability p that a cell is kept (default 0.5).
        baseline: Value of the masked-out input (default 0, as in the paper).
        seed: Seed of the masks; the same seed gives the same result.
        **kwargs: ``internal_batch_size``, ``verbose``, ``output_index``,
            ``output_layer``, ``strip_softmax``, ``neuron_selection_mode``.
            RISE scores are usually probabilities: pass
            ``strip_softmax=False`` for a model ending in a softmax.

    Returns:
        ``analyze(x)`` returns saliency shaped like x (equal across channels).

    Raises:
        ValueError: For ``samples < 1``, ``cells < 1``, ``probability`` outside
            (0, 1], or inputs with more than two spatial axes.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
        ...                           keras.layers.Dense(3)])
        >>> kx.RISE(model, samples=64, cells=4, seed=0).analyze(np.ones((2, 8, 8, 1))).shape
        (2, 8, 8, 1)
    """

    takes_tokens = False

    def __init__(
        self,
        model,
        *,
        samples: int = 4000,
        cells: int = 7,
        probability: float = 0.5,
        baseline: Any = 0.0,
        seed: int | None = None,
        **kwargs,
    ):
        self.samples = _validate.positive_int(samples, "samples")
        self.cells = _validate.positive_int(cells, "cells")
        if not 0 < probability <= 1:
            raise ValueError(
                f"probability must be in (0, 1]. Received: probability={probability!r}."
            )
        self.probability = float(probability)
        super().__init__(model, seed=seed, **kwargs)
        self.baseline = self.checked_baseline(baseline)

    baseline_attributes = ("baseline",)

    def explain_batch(self, inputs, target, indices, seed, params):
        """The masks weighted by the scores of the masked inputs."""
        x = self.single_input(inputs)
        seed = shared_seed(seed)  # the same masks for every sample and chunk
        target, indices, _ = self.fixed_target([x], target, indices)
        lengths = mask_lengths(x, "RISE")
        cell_sizes = [math.ceil(n / self.cells) for n in lengths]
        grids = tf.cast(
            tf.random.stateless_uniform([self.samples] + [self.cells] * len(lengths), seed=seed)
            < self.probability,
            x.dtype,
        )
        shifts = [
            tf.random.stateless_uniform(
                [self.samples], seed=seed + 1 + axis, maxval=size, dtype=tf.int32
            )
            for axis, size in enumerate(cell_sizes)
        ]
        rank = x.shape.rank

        def make(start, size):
            masks = resize_maps(
                grids[start : start + size], [(self.cells + 1) * c for c in cell_sizes]
            )
            for axis, length in enumerate(lengths):
                crop = shifts[axis][start : start + size, None] + tf.range(length)[None]
                masks = tf.gather(masks, crop, axis=1 + axis, batch_dims=1)
            return blend(x, self.baseline, spread_over_channels(masks, rank)[:, None]), masks

        def accumulate(total, masks, scores):
            flat = tf.reshape(masks, [tf.shape(masks)[0], -1])
            return total + tf.matmul(scores, tf.cast(flat, tf.float32), transpose_a=True)

        initial = tf.zeros([int(x.shape[0]), math.prod(lengths)])
        total = self.evaluate(x, make, self.samples, target, indices, accumulate, initial)
        saliency = tf.reshape(total / (self.samples * self.probability), [-1, *lengths])
        saliency = spread_over_channels(tf.cast(saliency, x.dtype), rank)
        return [tf.broadcast_to(saliency, tf.shape(x))]
