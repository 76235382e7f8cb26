"""Gradients averaged over many inputs: SmoothGrad, SquareGrad, VarGrad, Integrated Gradients.

All evaluations of a batch (noisy copies, path points) are stacked into large
batches and pulled back through the model in one compiled function. The
target is resolved on the clean input first, so every noisy copy or path point
explains the same output.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_explain.analyzers.base import row_seeds
from keras_explain.analyzers.gradient import Backpropagation
from keras_explain.analyzers.registry import register
from keras_explain.targets import fix_target

QUADRATURES = ("trapezoid", "riemann_left", "riemann_right", "riemann_middle", "gausslegendre")


def quadrature(method: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Points ``alpha_k`` in [0, 1] and weights ``w_k`` (summing to 1) of a rule.

    Args:
        method: One of ``QUADRATURES``. ``"trapezoid"`` evaluates both end
            points, with half weights there.
        steps: Number of points (at least 2 for ``"trapezoid"``).

    Returns:
        ``(alphas, weights)``, float64 arrays of length ``steps``.

    Raises:
        ValueError: For an unknown method or too few steps.
    """
    if method not in QUADRATURES:
        raise ValueError(
            f"Unknown method. Received: method={method!r}. Expected one of {QUADRATURES}."
        )
    minimum = 2 if method == "trapezoid" else 1
    if not isinstance(steps, int | np.integer) or steps < minimum:
        raise ValueError(
            f"steps must be an int >= {minimum} for method={method!r}. Received: steps={steps!r}."
        )
    k = np.arange(steps, dtype=np.float64)
    if method == "trapezoid":
        weights = np.full(steps, 1.0 / (steps - 1))
        weights[[0, -1]] *= 0.5
        return k / (steps - 1), weights
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return (nodes + 1) / 2, weights / 2
    offset = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}[method]
    return (k + offset) / steps, np.full(steps, 1.0 / steps)


class _Stacked(Backpropagation):
    """Gradients at many perturbed copies of each input, stacked in large batches."""

    def __init__(self, model, *, internal_batch_size: int | None = None, **kwargs):
        if internal_batch_size is not None and int(internal_batch_size) < 1:
            raise ValueError(
                "internal_batch_size must be a positive int (rows per pass) or None "
                f"(all at once). Received: internal_batch_size={internal_batch_size!r}."
            )
        self.internal_batch_size = internal_batch_size
        super().__init__(model, **kwargs)
        if any(self._embedded):
            raise ValueError(
                f"{type(self).__name__} perturbs the input, which is impossible for the "
                f"integer input of model {self.model.name!r}; use at_layer=<the "
                "Embedding layer> with Gradient or InputTimesGradient instead."
            )

    def _fixed_target(self, inputs, target, indices):
        if target.mode != "max":
            return target, indices
        return fix_target(self.forward(inputs)[0], target, indices)

    def _gradients(self, copies, target, indices):
        """Gradients at ``copies``: a list (per input) of (K, B, ...) tensors."""
        count, batch = copies[0].shape[0], tf.shape(copies[0])[1]
        per_pass = count
        if self.internal_batch_size is not None:
            rows = int(self.internal_batch_size)
            static_batch = copies[0].shape[1] or 1
            per_pass = max(1, rows // static_batch)
        chunks = []
        for start in range(0, count, per_pass):
            stop = min(start + per_pass, count)
            flat = [
                tf.reshape(c[start:stop], tf.concat([[-1], tf.shape(c)[2:]], 0)) for c in copies
            ]
            tiled = tf.tile(indices, [stop - start])
            grads, _ = self.backward(flat, target, tiled)
            chunks.append(
                [
                    tf.reshape(g, tf.concat([[stop - start, batch], tf.shape(g)[1:]], 0))
                    for g in grads
                ]
            )
        return [tf.concat(parts, axis=0) for parts in zip(*chunks)]


class _Noise(_Stacked):
    """SmoothGrad-style averaging over Gaussian noise."""

    def __init__(
        self,
        model,
        *,
        samples: int = 50,
        noise_scale: float = 0.1,
        seed: int | None = None,
        **kwargs,
    ):
        if not isinstance(samples, int | np.integer) or samples < 1:
            raise ValueError(f"samples must be a positive int. Received: samples={samples!r}.")
        if not noise_scale >= 0:
            raise ValueError(
                f"noise_scale must be >= 0 (a fraction of each sample's value range). "
                f"Received: noise_scale={noise_scale!r}."
            )
        self.samples = int(samples)
        self.noise_scale = float(noise_scale)
        self.seed = seed
        super().__init__(model, **kwargs)

    def noisy_copies(self, inputs, seed):
        """``samples`` noisy copies of each input: a list of (K, B, ...) tensors.

        Each sample's noise is drawn from its own seed (:func:`row_seeds`), so
        results do not depend on ``batch_size``.
        """
        copies = []
        for position, x in enumerate(inputs):
            axes = list(range(1, x.shape.rank))
            spread = tf.reduce_max(x, axis=axes, keepdims=True) - tf.reduce_min(
                x, axis=axes, keepdims=True
            )
            sigma = self.noise_scale * spread
            shape = tf.concat([[self.samples], tf.shape(x)[1:]], 0)
            noise = tf.map_fn(
                lambda row_seed, shape=shape, dtype=x.dtype: tf.random.stateless_normal(
                    shape, seed=row_seed, dtype=dtype
                ),
                row_seeds(seed, tf.shape(x)[0], stream=position),
                fn_output_signature=x.dtype,
            )
            noise = tf.transpose(noise, [1, 0] + list(range(2, x.shape.rank + 1)))
            copies.append(x[None] + noise * sigma[None])
        return copies

    def _explain(self, inputs, target, indices, seed):
        target, indices = self._fixed_target(inputs, target, indices)
        grads = self._gradients(self.noisy_copies(inputs, seed), target, indices)
        return self.finish([self.reduce(g) for g in grads])

    def reduce(self, grads):
        """Combine the (K, B, ...) gradients into one attribution."""
        return tf.reduce_mean(grads, axis=0)


def _noise_doc(summary: str, name: str) -> str:
    return (
        summary
        + f"""

    Args:
        model: A Keras model (subclassed models work too).
        samples: Number of noisy copies per input (default 50).
        noise_scale: Noise standard deviation as a fraction of each sample's
            value range: ``sigma = noise_scale * (max(x) - min(x))`` (default 0.1).
        seed: Seed; the same seed gives the same result, whatever ``batch_size``.
        internal_batch_size: Rows per backward pass (default: all copies at once).
        **kwargs: ``at_layer``, ``output_layer``, ``output_index``, ``strip_softmax``.

    Raises:
        ValueError: For ``samples < 1`` or ``noise_scale < 0``.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> kx.{name}(model, samples=8, seed=0).analyze(np.ones((2, 4), "float32")).shape
        (2, 4)
    """
    )


@register("smoothgrad")
class SmoothGrad(_Noise):  # noqa: D101  (docstring built below)
    __doc__ = _noise_doc(
        "SmoothGrad: the mean gradient over noisy copies (Smilkov et al. 2017, arXiv:1706.03825).",
        "SmoothGrad",
    )


@register("squaregrad")
class SquareGrad(_Noise):  # noqa: D101
    __doc__ = _noise_doc(
        "SquareGrad: the mean squared gradient over noisy copies (Hooker et al. 2019, "
        "arXiv:1806.10758).",
        "SquareGrad",
    )

    def reduce(self, grads):
        """Mean of the squared gradients."""
        return tf.reduce_mean(tf.square(grads), axis=0)


@register("vargrad")
class VarGrad(_Noise):  # noqa: D101
    __doc__ = _noise_doc(
        "VarGrad: the variance of the gradient over noisy copies (Adebayo et al. "
        "2018, arXiv:1810.03307).",
        "VarGrad",
    )

    def reduce(self, grads):
        """Variance of the gradients."""
        return tf.math.reduce_variance(grads, axis=0)


@register("integrated_gradients")
class IntegratedGradients(_Stacked):
    """Integrated Gradients (Sundararajan et al. 2017, arXiv:1703.01365).

    ``(x - x') * sum_k w_k grad f(x' + alpha_k (x - x'))`` with the quadrature
    points and weights of :func:`quadrature`; all path points of a batch go
    through the model stacked together.

    Args:
        model: A Keras model (subclassed models work too).
        steps: Number of path points (default 64).
        method: ``"trapezoid"`` (default; both end points), ``"riemann_left"``,
            ``"riemann_right"``, ``"riemann_middle"`` or ``"gausslegendre"``.
        baseline: The reference input ``x'``: a scalar, an array shaped like one
            sample, or an array shaped like the batch (default 0). A list for
            a multi-input model.
        internal_batch_size: Rows per backward pass (default: all at once).
        **kwargs: ``output_layer``, ``output_index``, ``strip_softmax``,
            ``neuron_selection_mode``.

    Returns:
        ``analyze(x)`` returns attributions shaped like x whose sum per sample
        approximates ``f_t(x) - f_t(x')`` (completeness).

    Raises:
        ValueError: For a bad ``steps``/``method``, a baseline of the wrong
            shape, or ``at_layer`` (not supported: use Captum-style layer IG
            via a sub-model instead).

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> kx.IntegratedGradients(model, steps=16).analyze(np.ones((2, 4), "float32")).shape
        (2, 4)
    """

    def __init__(
        self, model, *, steps: int = 64, method: str = "trapezoid", baseline=0.0, **kwargs
    ):
        if kwargs.get("at_layer") is not None:
            raise ValueError(
                "IntegratedGradients integrates along a path in input space and does "
                f"not support at_layer. Received: at_layer={kwargs['at_layer']!r}. Build "
                "a sub-model that starts at that layer and explain its input instead."
            )
        self.alphas, self.weights = quadrature(method, steps)
        self.steps, self.method = int(steps), method
        self.baseline = baseline
        super().__init__(model, **kwargs)

    def _baselines(self, inputs):
        if isinstance(self.baseline, list | tuple):
            baselines = self.baseline
        else:  # one baseline (e.g. the default 0) for every input
            baselines = [self.baseline] * len(inputs)
        if len(baselines) != len(inputs):
            raise ValueError(
                f"baseline needs one entry per model input ({len(inputs)}). Received "
                f"{len(baselines)}."
            )
        result = []
        for x, base in zip(inputs, baselines):
            base = tf.cast(tf.convert_to_tensor(base), x.dtype)
            if base.shape.rank not in (0, x.shape.rank - 1, x.shape.rank) or (
                base.shape.rank > 0
                and not base.shape.is_compatible_with(
                    x.shape[-base.shape.rank :] if base.shape.rank < x.shape.rank else x.shape
                )
            ):
                raise ValueError(
                    "baseline must be a scalar, shaped like one sample "
                    f"{tuple(x.shape[1:])} or like the batch {tuple(x.shape)}. Received: "
                    f"shape {tuple(base.shape)}."
                    + (
                        " A batch-shaped baseline needs the whole batch in one call: "
                        "analyze without batch_size and not from a tf.data.Dataset, or "
                        "pass a baseline shaped like one sample."
                        if base.shape.rank == x.shape.rank
                        else ""
                    )
                )
            result.append(tf.broadcast_to(base, tf.shape(x)))
        return result

    def _explain(self, inputs, target, indices, seed):
        target, indices = self._fixed_target(inputs, target, indices)
        baselines = self._baselines(inputs)
        alphas = tf.constant(self.alphas, inputs[0].dtype)
        weights = tf.constant(self.weights, inputs[0].dtype)
        paths = []
        for x, base in zip(inputs, baselines):
            shape = [-1] + [1] * x.shape.rank
            paths.append(base[None] + tf.reshape(alphas, shape) * (x - base)[None])
        grads = self._gradients(paths, target, indices)
        result = []
        for g, x, base in zip(grads, inputs, baselines):
            shape = [-1] + [1] * x.shape.rank
            mean = tf.reduce_sum(tf.reshape(weights, shape) * g, axis=0)
            result.append((x - base) * mean)
        return self.finish(result)
