"""Gradient methods that are wrappers around the gradient: SmoothGrad & co., IG, GradientShap.

- :class:`SmoothGrad`, :class:`SquareGrad`, :class:`VarGrad`: a
  :class:`~keras_explain.analyzers.wrappers.NoiseTunnel` around the gradient;
- :class:`IntegratedGradients`: a
  :class:`~keras_explain.analyzers.wrappers.PathIntegral` around the gradient;
- :class:`GradientShap`: a :class:`~keras_explain.analyzers.wrappers.Wrapper`
  around the gradient whose copies are random path points between the input
  (with noise) and random rows of a background set (Captum's ``GradientShap``).

Each is built from ``model`` and Gradient's own keyword arguments (``layer``,
``output_layer``, ...), and runs its copies through the one copy loop,
:meth:`~keras_explain.analyzers.base.Analyzer.run_copies`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from keras_explain import _batching, _validate, random
from keras_explain.analyzers.gradient import Gradient
from keras_explain.analyzers.registry import register
from keras_explain.analyzers.wrappers import NoiseTunnel, PathIntegral, Wrapper, quadrature


class AroundGradient:
    """Mixin: a wrapper built from ``model`` and Gradient's keyword arguments.

    The classes here and :mod:`keras_explain.analyzers.layer_paths` take
    ``model`` and Gradient's parameters (``layer``, ``output_layer``, ...) and
    build the gradient they wrap with :meth:`_split`.
    """

    renamed = {"at_layer": "layer"}  # Gradient's

    @classmethod
    def parameters(cls, **preset: Any) -> list[str]:
        """The wrapper's own parameters and Gradient's."""
        own = [name for name in super().parameters() if name != "kind"]
        return own + [name for name in Gradient.parameters() if name not in own]

    @classmethod
    def _split(cls, model, kwargs: dict) -> Gradient:
        _validate.unexpected_parameters(
            cls.__name__, set(kwargs) - set(cls.parameters()), cls.parameters()
        )
        gradient_kwargs = {
            key: kwargs.pop(key) for key in list(kwargs) if key in Gradient.parameters()
        }
        if "verbose" in gradient_kwargs:
            kwargs["verbose"] = gradient_kwargs.pop("verbose")
        return Gradient(model, **gradient_kwargs)


_NOISE_DOC = """

    A :class:`NoiseTunnel` of kind ``"{kind}"`` around
    :class:`~keras_explain.analyzers.gradient.Gradient`.

    Args:
        model: A Keras model (subclassed models work too).
        samples: Number of noisy copies per input (default 50).
        noise_scale: Noise standard deviation as a fraction of each sample's
            value range: ``sigma = noise_scale * (max(x) - min(x))`` (default 0.1).
        seed: Seed; the same seed gives the same result, whatever ``batch_size``.
        internal_batch_size: Rows per backward pass (default: as many as fit in
            :func:`keras_explain.config.memory_budget`).
        **kwargs: ``layer``, ``output_layer``, ``output_index``,
            ``strip_softmax``, ``verbose``.

    Raises:
        ValueError: For ``samples < 1`` or ``noise_scale < 0``.
        TypeError: For an unexpected parameter.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> kx.{name}(model, samples=8, seed=0).analyze(np.ones((2, 4), "float32")).shape
        (2, 4)
"""


class _NoiseAroundGradient(AroundGradient, NoiseTunnel):
    kind_name = "smoothgrad"

    def __init__(
        self,
        model,
        *,
        samples: int = 50,
        noise_scale: float = 0.1,
        seed: int | None = None,
        internal_batch_size: int | None = None,
        **kwargs: Any,
    ):
        gradient = self._split(model, kwargs)
        super().__init__(
            gradient,
            kind=self.kind_name,
            samples=samples,
            noise_scale=noise_scale,
            seed=seed,
            internal_batch_size=internal_batch_size,
            **kwargs,
        )


@register("smoothgrad")
class SmoothGrad(_NoiseAroundGradient):  # noqa: D101  (docstring built from _NOISE_DOC)
    __doc__ = (
        "SmoothGrad: the mean gradient over noisy copies (Smilkov et al. 2017, arXiv:1706.03825)."
        + _NOISE_DOC.format(kind="smoothgrad", name="SmoothGrad")
    )
    kind_name = "smoothgrad"


@register("squaregrad")
class SquareGrad(_NoiseAroundGradient):  # noqa: D101
    __doc__ = (
        "SquareGrad: the mean squared gradient over noisy copies (Hooker et al. 2019, "
        "arXiv:1806.10758)." + _NOISE_DOC.format(kind="squaregrad", name="SquareGrad")
    )
    kind_name = "squaregrad"


@register("vargrad")
class VarGrad(_NoiseAroundGradient):  # noqa: D101
    __doc__ = (
        "VarGrad: the variance of the gradient over noisy copies (Adebayo et al. 2018, "
        "arXiv:1810.03307)." + _NOISE_DOC.format(kind="vargrad", name="VarGrad")
    )
    kind_name = "vargrad"


@register("integrated_gradients")
class IntegratedGradients(AroundGradient, PathIntegral):
    """Integrated Gradients (Sundararajan et al. 2017, arXiv:1703.01365).

    ``(x - x') * sum_k w_k grad f(x' + alpha_k (x - x'))`` with the quadrature
    points and weights of :func:`quadrature`: a :class:`PathIntegral` around
    :class:`~keras_explain.analyzers.gradient.Gradient`.

    With ``layer=``, Captum's ``LayerIntegratedGradients``: the path runs between
    the layer's values ``a(x')`` and ``a(x)`` on the baseline and on the input,
    the model runs from the layer on with the layer's value replaced by each
    point, and the attributions ``(a(x) − a(x')) ⊙ Σ_k w_k ∂f_t/∂a`` are shaped
    like the layer's value; they sum to about ``f_t(x) − f_t(x; a = a(x'))``,
    which is ``f_t(x) − f_t(x')`` when every path from the input to the output
    goes through the layer. ``attribute_to_layer_input=True`` does the same at
    the layer's input.

    Args:
        model: A Keras model (subclassed models work too, without ``layer``).
        steps: Number of path points (default 64).
        method: ``"trapezoid"`` (default; both end points), ``"riemann_left"``,
            ``"riemann_right"``, ``"riemann_middle"`` or ``"gausslegendre"``.
        baseline: The reference input ``x'``: a scalar, an array shaped like one
            sample, or an array shaped like the batch (default 0). A list for
            a multi-input model. For token inputs: a token id (default 0, the
            padding id) or an embedding array ``(T, D)`` or ``(B, T, D)``; the
            result is per token ``(B, T)``, 0 at masked positions.
        multiply_by_inputs: Multiply by ``x − x'`` (default True, Captum's);
            False returns the path's mean gradient ``Σ_k w_k ∇f_t`` (Captum's
            ``multiply_by_inputs=False``, the "global" attribution).
        internal_batch_size: Rows per backward pass (default: as many as fit in
            :func:`keras_explain.config.memory_budget`).
        **kwargs: ``layer``, ``attribute_to_layer_input``, ``output_layer``,
            ``output_index``, ``strip_softmax``, ``neuron_selection_mode``,
            ``verbose``.

    Returns:
        ``analyze(x)`` returns attributions shaped like x (at a layer: like the
        layer's value) whose sum per sample approximates ``f_t(x) - f_t(x')``
        (completeness).

    Raises:
        ValueError: For a bad ``steps``/``method``, or a baseline of the wrong
            shape.
        TypeError: For an unexpected parameter.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> kx.IntegratedGradients(model, steps=16).analyze(np.ones((2, 4), "float32")).shape
        (2, 4)
    """

    def __init__(
        self,
        model,
        *,
        steps: int = 64,
        method: str = "trapezoid",
        baseline: Any = 0.0,
        internal_batch_size: int | None = None,
        **kwargs: Any,
    ):
        quadrature(method, steps)
        gradient = self._split(model, kwargs)
        super().__init__(
            gradient,
            steps=steps,
            method=method,
            baseline=baseline,
            internal_batch_size=internal_batch_size,
            **kwargs,
        )


@register("gradient_shap")
class GradientShap(AroundGradient, Wrapper):
    """GradientShap (Captum's ``GradientShap``): expected gradients with random baselines.

    Each sample gets ``samples`` copies; copy ``k`` draws a baseline ``x'_k``
    uniformly from the rows of ``background``, Gaussian noise
    ``x̃_k = x + N(0, noise_scale²)`` and a point ``α_k ~ U(0, 1)``, and contributes
    ``(x̃_k − x'_k) ⊙ ∇f_t(x'_k + α_k (x̃_k − x'_k))``; the result is the mean
    over copies (Lundberg & Lee 2017, arXiv:1705.07874; Erion et al. 2021's
    expected gradients with noise). In expectation it sums to about
    ``f_t(x) − E[f_t(x')]``; on a linear model every copy gives exactly
    ``(x̃_k − x'_k) ⊙ w``. The draws of copy ``k`` come from the seed
    ``[seed · 7919 + stream, k]`` and are shared by the samples of a batch
    (each sample still gets ``samples`` independent draws), so a seed gives the
    same result whatever ``batch_size`` and ``internal_batch_size``. For token
    inputs ``background`` holds token ids ``(N, T)``; paths and noise run between
    their embeddings and the explained tokens' (``noise_scale`` in embedding units),
    with the explained tokens' mask.

    With ``layer=``, Captum's ``LayerGradientShap``: the gradient is read at the
    layer's value at each path point and multiplied by ``a(x̃_k) − a(x'_k)``, the
    layer's values on the noisy input and on the baseline; the result is shaped
    like the layer's value.

    Args:
        model: A Keras model (subclassed models work too, without ``layer``).
        background: Baselines shaped ``(N, *sample_shape)``; a list of such
            arrays (same ``N``) for a multi-input model.
        samples: Copies per sample (default 5, Captum's ``n_samples``).
        noise_scale: Standard deviation of the noise added to the input (default
            0.0, Captum's ``stdevs``), in the input's units.
        seed: Seed of the draws (default: fresh every call).
        multiply_by_inputs: Multiply each gradient by ``x̃_k − x'_k`` (default
            True, Captum's); False returns the mean gradient at the path points.
        internal_batch_size: Rows per pass (default: from the memory budget).
        **kwargs: ``layer``, ``attribute_to_layer_input``, ``output_layer``,
            ``output_index``, ``strip_softmax``, ``neuron_selection_mode``,
            ``verbose``.

    Returns:
        ``analyze(x, target)`` returns attributions shaped like x (like the
        layer's value with ``layer``).

    Raises:
        ValueError: For an empty or misshapen background, ``samples < 1`` or
            ``noise_scale < 0``.
        TypeError: For an unexpected parameter.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> background = np.zeros((3, 4), "float32")
        >>> kx.GradientShap(model, background=background, seed=0).analyze(
        ...     np.ones((2, 4), "float32")).shape
        (2, 4)
    """

    renamed = {"stddev": "noise_scale"}
    #: The stream of the baseline indices and path points (the noise uses 0, 1, ...).
    draw_stream = 4099

    def __init__(
        self,
        model,
        *,
        background: Any = None,
        samples: int = 5,
        noise_scale: float = 0.0,
        seed: int | None = None,
        multiply_by_inputs: bool = True,
        internal_batch_size: int | None = None,
        **kwargs: Any,
    ):
        self.samples = _validate.positive_int(samples, "samples")
        self.noise_scale = _validate.non_negative(
            noise_scale, "noise_scale", " (in the input's units)"
        )
        self.seed = seed
        self.multiply_by_inputs = _validate.boolean(
            multiply_by_inputs, "multiply_by_inputs", type(self).__name__
        )
        gradient = self._split(model, kwargs)
        super().__init__(gradient, internal_batch_size=internal_batch_size, **kwargs)
        self.background = _validate.background_set(
            type(self).__name__, background, self._input_specs()
        )

    def call_params(self) -> dict[str, Any]:
        """``samples`` and ``noise_scale``, read at every call (no retracing)."""
        samples = _validate.positive_int(self.samples, "samples")
        noise_scale = _validate.non_negative(self.noise_scale, "noise_scale")
        return {"samples": np.int32(samples), "noise_scale": np.float32(noise_scale)}

    def draws(self, inputs, seed, start, size, noise_scale, background=None):
        """Path points, noisy inputs ``x̃`` and baselines ``x'`` of some copies.

        Copies ``start .. start + size - 1``: each a list (one per input) of
        ``(size, B, ...)`` tensors.

        Args:
            inputs: One tensor per model input (token inputs: their embeddings).
            seed: ``[user_seed, first_row]``, as the compiled function receives it.
            start: The first copy.
            size: The number of copies.
            noise_scale: The noise's standard deviation.
            background: The background as tensors shaped like ``inputs``' rows
                (default: ``self.background``).
        """
        background = self.background if background is None else background
        count = int(background[0].shape[0])
        uniform = random.copy_uniform(seed, start, size, 2, stream=self.draw_stream)
        rows = tf.minimum(tf.cast(uniform[:, 0] * count, tf.int32), count - 1)
        points, noisy_inputs, baselines = [], [], []
        for position, (x, base) in enumerate(zip(inputs, background)):
            if self.analyzer.held_input(position):  # not a feature: x at every copy
                points.append(_batching.copies(x, size))
                noisy_inputs.append(points[-1])
                baselines.append(points[-1])
                continue
            shape = tf.concat([[-1], tf.ones([x.shape.rank], tf.int32)], 0)
            alpha = tf.reshape(tf.cast(uniform[:, 1], x.dtype), shape)
            baseline = tf.gather(tf.cast(base, x.dtype), rows)[:, None]
            noise = random.copy_noise(seed, x, start, size, stream=position)
            noisy = x[None] + tf.cast(noise_scale, x.dtype) * noise
            points.append(baseline + alpha * (noisy - baseline))
            noisy_inputs.append(noisy)
            baselines.append(tf.broadcast_to(baseline, tf.shape(noisy)))
        return points, noisy_inputs, baselines

    def explain_batch(self, inputs, target, indices, seed, params):
        """The mean over copies of ``(x̃ − x') ⊙ ∇f_t`` at random path points."""
        target, indices, _ = self.fixed_target(inputs, target, indices)
        count = params["samples"]
        points = self.analyzer.embed(inputs)  # token inputs: paths between embeddings
        background = self.analyzer.embed([tf.constant(b) for b in self.background])

        at_layer = self.analyzer.layer is not None
        count_inputs = len(inputs)

        def make(start, size):
            drawn, noisy, baselines = self.draws(
                points, seed, start, size, params["noise_scale"], background
            )
            if at_layer:  # the layer's values at x̃ and x' are evaluated with the gradients
                return drawn + noisy + baselines, None
            return drawn, [n - b for n, b in zip(noisy, baselines)]

        def evaluate(flat, size):
            rows = _batching.repeat(indices, size)
            gradients = self.at_points(
                flat[:count_inputs],
                inputs,
                size,
                lambda x: self.analyzer.backward(x, target, rows)[0],
            )
            if not at_layer:
                return gradients
            ends = [
                self.at_points(part, inputs, size, self.analyzer.source_values)[0]
                for part in (flat[count_inputs : 2 * count_inputs], flat[2 * count_inputs :])
            ]
            return [gradients[0], ends[0] - ends[1]]

        def accumulate(totals, values, differences, start, size):
            if at_layer:  # Captum's LayerGradientShap: ∂f/∂a ⊙ (a(x̃) − a(x'))
                values, differences = values[:1], values[1:]
            if not self.multiply_by_inputs:  # the mean gradient (Captum's False)
                return [total + tf.reduce_sum(v, axis=0) for total, v in zip(totals, values)]
            return [
                total + tf.reduce_sum(tf.cast(d, tf.float32) * value, axis=0)
                for total, d, value in zip(totals, differences, values)
            ]

        initial = [tf.zeros(())] * (1 if at_layer else len(inputs))
        totals = self.run_copies(inputs, count, make, evaluate, accumulate, initial, backward=True)
        return self.analyzer.finish(
            [total / tf.cast(count, tf.float32) for total in totals], inputs
        )
