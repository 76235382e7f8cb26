"""Meaningful perturbation (Fong & Vedaldi 2017): the smallest mask that destroys the score.

A low-resolution mask, upsampled bilinearly to the input, blends the input
with a deleted version of it (blurred, constant or noisy); Adam learns it for
the whole batch inside one compiled ``tf.while_loop``.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from keras_explain import _validate
from keras_explain._spatial import (
    broadcast_baseline,
    gaussian_blur,
    resize_maps,
    spread_over_channels,
)
from keras_explain.analyzers.perturbation.engine import Perturbation
from keras_explain.analyzers.perturbation.rise import mask_lengths
from keras_explain.analyzers.registry import register
from keras_explain.random import row_normal

DELETIONS = ("blur", "constant", "noise")


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

    Unlike the other model-agnostic methods it differentiates the model (the
    mask is learned by gradient descent), so ``model`` must be a Keras model or
    a callable built from TensorFlow ops, and by default it explains class
    probabilities, not logits (see ``probabilities``).

    Args:
        model: A Keras model or a differentiable callable built from
            TensorFlow ops.
        steps: Optimisation steps (default 300).
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
        probabilities: Score the class probability for int/``None`` targets
            (default True): the softmax of the explained output (the logits,
            once ``strip_softmax`` has bypassed a final softmax or sigmoid), or
            its sigmoid when the output has one value per sample (a binary
            classifier). This is the one method that does not explain the
            logits by default, as in Fong & Vedaldi, who delete evidence for
            the softmax probability: a probability is bounded below by 0, so
            once the class is destroyed the L1 and total-variation terms keep
            the deletion small, whereas a logit can be pushed down without
            limit by deleting more. ``False`` scores the logit. A callable
            target receives the output unchanged: return a probability (the
            negative class of a binary model is
            ``lambda out: tf.sigmoid(-out[:, 0])``).
        seed: Seed of the noise deletion.
        **kwargs: ``verbose``, ``output_index``, ``output_layer``,
            ``strip_softmax``, ``neuron_selection_mode``.

    Returns:
        ``analyze(x)`` returns the deletion map ``1 - m`` shaped like x.

    Raises:
        ValueError: For a bad ``deletion``, a non-positive ``steps``,
            ``learning_rate`` or ``mask_size``, or negative coefficients.
        TypeError: At ``analyze``, for a model that cannot be differentiated.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
        ...                           keras.layers.Dense(3)])
        >>> analyzer = kx.MeaningfulPerturbation(model, steps=5, mask_size=4)
        >>> analyzer.analyze(np.ones((2, 8, 8, 1))).shape
        (2, 8, 8, 1)
    """

    execution = "compiled"
    takes_tokens = False
    renamed = {"iterations": "steps", "softmax": "probabilities"}
    baseline_attributes = ("baseline",)

    def __init__(
        self,
        model,
        *,
        steps: int = 300,
        learning_rate: float = 0.1,
        l1_coeff: float = 1e-4,
        tv_coeff: float = 1e-2,
        tv_beta: float = 3.0,
        mask_size: int = 28,
        deletion: str = "blur",
        blur_sigma: float = 10.0,
        baseline: Any = 0.0,
        noise_scale: float = 0.2,
        probabilities: bool = True,
        seed: int | None = None,
        **kwargs,
    ):
        self.deletion = _validate.one_of(deletion, "deletion", DELETIONS)
        self.steps = _validate.positive_int(steps, "steps")
        self.mask_size = _validate.positive_int(mask_size, "mask_size")
        self.learning_rate = _validate.positive(learning_rate, "learning_rate")
        self.blur_sigma = _validate.positive(blur_sigma, "blur_sigma")
        self.l1_coeff = _validate.non_negative(l1_coeff, "l1_coeff")
        self.tv_coeff = _validate.non_negative(tv_coeff, "tv_coeff")
        self.noise_scale = _validate.non_negative(noise_scale, "noise_scale")
        self.tv_beta = _validate.positive(tv_beta, "tv_beta")
        self.probabilities = bool(probabilities)
        super().__init__(model, seed=seed, **kwargs)
        self.baseline = self.checked_baseline(baseline)

    def deleted(self, x: tf.Tensor, seed) -> tf.Tensor:
        """The deletion ``d(x)``: what masked-out input elements become."""
        if self.deletion == "constant":
            return broadcast_baseline(self.baseline, x)
        if self.deletion == "noise":
            axes = list(range(1, x.shape.rank))
            spread = tf.reduce_max(x, axes, keepdims=True) - tf.reduce_min(x, axes, keepdims=True)
            return x + self.noise_scale * spread * row_normal(seed, x)
        return gaussian_blur(x, self.blur_sigma)

    def explain_batch(self, inputs, target, indices, seed, params):
        """The learned deletion mask, upsampled to the input."""
        x = self.single_input(inputs)
        try:
            target, indices, _ = self.fixed_target([x], target, indices)
        except (TypeError, NotImplementedError) as error:
            raise TypeError(
                "MeaningfulPerturbation learns a mask by gradient descent and needs a "
                "differentiable model: a Keras model or a callable built from TensorFlow "
                f"ops. Received: {self.model!r}, which cannot run on symbolic tensors."
            ) from error
        lengths = mask_lengths(x, "MeaningfulPerturbation")
        rank, batch = x.shape.rank, int(x.shape[0])
        deleted = self.deleted(x, seed)
        progress = self.progress()

        def loss_of(mask):
            keep = spread_over_channels(resize_maps(mask, lengths), rank)
            outputs = self.forward([keep * x + (1 - keep) * deleted])[0]
            if self.probabilities and target.mode == "index":
                flat = tf.reshape(outputs, [batch, -1])
                # one logit: p = sigmoid(z) (a softmax of one value is constant 1)
                outputs = tf.sigmoid(flat) if flat.shape[-1] == 1 else tf.nn.softmax(flat)
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
            tick = tf.numpy_function(progress.tick, [i, self.steps], tf.int32, stateful=True)
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
            lambda i, *_: i < self.steps,
            step,
            (tf.constant(0), tf.ones(shape), zeros, zeros),
            parallel_iterations=1,
        )
        tf.numpy_function(progress.finish, [], tf.int32, stateful=True)
        deletion = spread_over_channels(1 - resize_maps(mask, lengths), rank)
        return [tf.broadcast_to(tf.cast(deletion, x.dtype), tf.shape(x))]
