"""Saliency from masks: RISE (random masks) and meaningful perturbation (a learned mask).

Both build low-resolution masks over the spatial axes, upsample them
bilinearly to the input and blend the input with a replacement. The classes
are registered as ``rise`` and ``meaningful_perturbation`` and re-exported by
:mod:`keras_explain.analyzers.perturbation`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import tensorflow as tf

from keras_explain.analyzers.base import row_seeds, shared_seed
from keras_explain.analyzers.perturbed import (
    Perturbation,
    blend,
    broadcast_baseline,
    spatial_axes,
    spread_over_channels,
)
from keras_explain.analyzers.registry import register

DELETIONS = ("blur", "constant", "noise")


def _spatial(x: tf.Tensor, name: str) -> list[int]:
    """Spatial lengths of ``x``; masks cover one or two spatial axes."""
    lengths = [int(x.shape[a]) for a in spatial_axes(x.shape.rank)]
    if len(lengths) > 2:
        raise ValueError(
            f"{name} masks cover one or two spatial axes. Received: inputs of shape "
            f"{tuple(x.shape)}."
        )
    return lengths


def upsample(masks: tf.Tensor, size: list[int]) -> tf.Tensor:
    """Bilinear (half-pixel) upsampling of ``(n, *low)`` masks to ``(n, *size)``."""
    if len(size) == 1:
        return tf.image.resize(masks[:, :, None, None], [size[0], 1])[:, :, 0, 0]
    return tf.image.resize(masks[..., None], size)[..., 0]


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
        **kwargs: ``internal_batch_size``, ``progress``, ``output_index``,
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
        for name, value in (("samples", samples), ("cells", cells)):
            if not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"{name} must be a positive int. Received: {name}={value!r}.")
        if not 0 < probability <= 1:
            raise ValueError(
                f"probability must be in (0, 1]. Received: probability={probability!r}."
            )
        self.samples, self.cells, self.probability = int(samples), int(cells), float(probability)
        self.baseline = baseline
        super().__init__(model, seed=seed, **kwargs)

    def _explain(self, inputs, target, indices, seed):
        x = self.single_input(inputs)
        seed = shared_seed(seed)  # the same masks for every sample and chunk
        target, indices, _ = self.fixed_target(x, target, indices)
        lengths = _spatial(x, "RISE")
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
            masks = upsample(
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
        _, total = self.evaluate(x, make, self.samples, target, indices, accumulate, initial)
        saliency = tf.reshape(total / (self.samples * self.probability), [-1, *lengths])
        saliency = spread_over_channels(tf.cast(saliency, x.dtype), rank)
        return [tf.broadcast_to(saliency, tf.shape(x))]


@register("meaningful_perturbation")
class MeaningfulPerturbation(Perturbation):
    """Meaningful perturbation (Fong & Vedaldi 2017, arXiv:1704.03296).

    Learns, for every sample of the batch together, a low-resolution mask
    ``m`` in [0, 1] (1 keeps, 0 deletes), upsampled bilinearly to the input,
    that deletes as little as possible while destroying the target score:
    minimize ``f_t(m * x + (1 - m) * d(x)) + l1_coeff * sum|1 - m| +
    tv_coeff * sum |grad m|^tv_beta`` with Adam, clipping m to [0, 1] after each
    step, starting from m = 1. The deletion ``d(x)`` is a Gaussian blur, a
    constant ``baseline`` or ``x`` plus fixed Gaussian noise. The result is the
    deletion map ``1 - m`` at input resolution. (The paper's blur varies its
    radius with m and adds random jitter; this implementation blends with one
    fixed blur and does not jitter.)

    Args:
        model: A Keras model or a differentiable callable built from
            TensorFlow ops.
        iterations: Optimisation steps (default 300).
        learning_rate: Adam learning rate (default 0.1).
        l1_coeff: λ1, weight of the L1 norm of ``1 - m`` (default 1e-4).
        tv_coeff: λ2, weight of the total variation (default 1e-2).
        tv_beta: β, exponent of the total variation (default 3).
        mask_size: Mask cells per spatial axis (default 28, capped at the input
            size).
        deletion: ``"blur"`` (default), ``"constant"`` or ``"noise"``.
        blur_sigma: Gaussian blur standard deviation in pixels (default 10).
        baseline: The constant of ``deletion="constant"`` (default 0).
        noise_scale: Noise standard deviation of ``deletion="noise"``, as a
            fraction of each sample's value range (default 0.2).
        softmax: Score the softmax of the explained output for index targets
            (default True), as the paper deletes evidence for the class
            probability; set False for outputs that are already probabilities.
        seed: Seed of the noise deletion.
        **kwargs: ``progress``, ``output_index``, ``output_layer``,
            ``strip_softmax``, ``neuron_selection_mode``.

    Returns:
        ``analyze(x)`` returns the deletion map ``1 - m`` shaped like x.

    Raises:
        ValueError: For a bad ``deletion``, a non-positive ``iterations``,
            ``learning_rate`` or ``mask_size``, or negative coefficients.
        TypeError: At ``analyze``, for a model that cannot be differentiated.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
        ...                           keras.layers.Dense(3)])
        >>> analyzer = kx.MeaningfulPerturbation(model, iterations=5, mask_size=4)
        >>> analyzer.analyze(np.ones((2, 8, 8, 1))).shape
        (2, 8, 8, 1)
    """

    host_callables = False

    def __init__(
        self,
        model,
        *,
        iterations: int = 300,
        learning_rate: float = 0.1,
        l1_coeff: float = 1e-4,
        tv_coeff: float = 1e-2,
        tv_beta: float = 3.0,
        mask_size: int = 28,
        deletion: str = "blur",
        blur_sigma: float = 10.0,
        baseline: Any = 0.0,
        noise_scale: float = 0.2,
        softmax: bool = True,
        seed: int | None = None,
        **kwargs,
    ):
        if deletion not in DELETIONS:
            raise ValueError(
                f"Unknown deletion. Received: deletion={deletion!r}. Expected one of {DELETIONS}."
            )
        for name, value in (("iterations", iterations), ("mask_size", mask_size)):
            if not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"{name} must be a positive int. Received: {name}={value!r}.")
        for name, value in (("learning_rate", learning_rate), ("blur_sigma", blur_sigma)):
            if not value > 0:
                raise ValueError(f"{name} must be > 0. Received: {name}={value!r}.")
        for name, value in (
            ("l1_coeff", l1_coeff),
            ("tv_coeff", tv_coeff),
            ("noise_scale", noise_scale),
        ):
            if not value >= 0:
                raise ValueError(f"{name} must be >= 0. Received: {name}={value!r}.")
        self.iterations, self.learning_rate = int(iterations), float(learning_rate)
        self.l1_coeff, self.tv_coeff, self.tv_beta = float(l1_coeff), float(tv_coeff), tv_beta
        self.mask_size, self.deletion, self.blur_sigma = int(mask_size), deletion, blur_sigma
        self.baseline, self.noise_scale, self.softmax = baseline, float(noise_scale), softmax
        super().__init__(model, seed=seed, **kwargs)

    def deleted(self, x: tf.Tensor, seed) -> tf.Tensor:
        """The deletion ``d(x)``: what masked-out input elements become."""
        if self.deletion == "constant":
            return broadcast_baseline(self.baseline, x)
        if self.deletion == "noise":
            axes = list(range(1, x.shape.rank))
            spread = tf.reduce_max(x, axes, keepdims=True) - tf.reduce_min(x, axes, keepdims=True)
            noise = tf.map_fn(  # per-sample seeds: independent of batch_size
                lambda row_seed: tf.random.stateless_normal(
                    tf.shape(x)[1:], seed=row_seed, dtype=x.dtype
                ),
                row_seeds(seed, tf.shape(x)[0]),
                fn_output_signature=x.dtype,
            )
            return x + self.noise_scale * spread * noise
        return gaussian_blur(x, self.blur_sigma)

    def _explain(self, inputs, target, indices, seed):
        x = self.single_input(inputs)
        try:
            target, indices, _ = self.fixed_target(x, target, indices)
        except (TypeError, NotImplementedError) as error:
            raise TypeError(
                "MeaningfulPerturbation learns a mask by gradient descent and needs a "
                "differentiable model: a Keras model or a callable built from TensorFlow "
                f"ops. Received: {self.model!r}, which cannot run on symbolic tensors."
            ) from error
        lengths = _spatial(x, "MeaningfulPerturbation")
        rank, batch = x.shape.rank, int(x.shape[0])
        deleted = self.deleted(x, seed)
        work = float(self.iterations * 3 * np.prod(x.shape))

        def loss_of(mask):
            keep = spread_over_channels(upsample(mask, lengths), rank)
            outputs = self.forward([keep * x + (1 - keep) * deleted])[0]
            if self.softmax and target.mode == "index":
                outputs = tf.nn.softmax(tf.reshape(outputs, [batch, -1]))
            score = tf.cast(self.scores(outputs, target, indices), tf.float32)
            sparsity = tf.reduce_sum(tf.abs(1 - mask), axis=list(range(1, mask.shape.rank)))
            variation = 0.0
            for axis in range(1, mask.shape.rank):
                difference = tf.experimental.numpy.diff(mask, axis=axis)
                variation += tf.reduce_sum(
                    tf.abs(difference) ** self.tv_beta, axis=list(range(1, mask.shape.rank))
                )
            return tf.reduce_sum(score + self.l1_coeff * sparsity + self.tv_coeff * variation)

        def step(i, mask, first, second):
            tick = tf.numpy_function(self._tick, [i, self.iterations, work], tf.int32)
            with tf.control_dependencies([tick]), tf.GradientTape() as tape:
                tape.watch(mask)
                loss = loss_of(mask)
            grad = tape.gradient(loss, mask)
            if grad is None:
                raise TypeError(
                    "MeaningfulPerturbation needs gradients of the model output with "
                    f"respect to its input; none flow through {self.model!r}."
                )
            t = tf.cast(i + 1, tf.float32)
            first = 0.9 * first + 0.1 * grad
            second = 0.999 * second + 0.001 * tf.square(grad)
            update = (first / (1 - 0.9**t)) / (tf.sqrt(second / (1 - 0.999**t)) + 1e-8)
            mask = tf.clip_by_value(mask - self.learning_rate * update, 0.0, 1.0)
            return i + 1, mask, first, second

        shape = [batch] + [min(self.mask_size, n) for n in lengths]
        zeros = tf.zeros(shape)
        _, mask, _, _ = tf.while_loop(
            lambda i, *_: i < self.iterations,
            step,
            (tf.constant(0), tf.ones(shape), zeros, zeros),
            parallel_iterations=1,
        )
        deletion = spread_over_channels(1 - upsample(mask, lengths), rank)
        return [tf.broadcast_to(tf.cast(deletion, x.dtype), tf.shape(x))]


def gaussian_blur(x: tf.Tensor, sigma: float) -> tf.Tensor:
    """Separable Gaussian blur over the spatial axes, with symmetric padding."""
    rank = x.shape.rank
    image = {2: lambda t: t[:, :, None, None], 3: lambda t: t[:, :, None, :]}.get(
        rank, lambda t: t
    )(x)
    channels = int(image.shape[-1])
    for axis in (1, 2):
        length = int(image.shape[axis])
        radius = min(math.ceil(3 * sigma), length - 1)
        if radius < 1:
            continue
        offsets = np.arange(-radius, radius + 1, dtype=np.float32)
        kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
        kernel = (kernel / kernel.sum()).astype(np.float32)
        shape = [len(kernel), 1] if axis == 1 else [1, len(kernel)]
        filters = tf.constant(
            np.tile(kernel.reshape(*shape, 1, 1), [1, 1, channels, 1]), image.dtype
        )
        paddings = [[0, 0], [0, 0], [0, 0], [0, 0]]
        paddings[axis] = [radius, radius]
        image = tf.nn.depthwise_conv2d(
            tf.pad(image, paddings, mode="SYMMETRIC"), filters, [1, 1, 1, 1], "VALID"
        )
    return tf.reshape(image, tf.shape(x))
