"""Wrappers over any backward pass: noise (SmoothGrad & co.) and path integrals (IG & co.).

:class:`NoiseTunnel` averages an analyzer's attributions over noisy copies of
the input (Captum's ``NoiseTunnel``); :class:`PathIntegral` integrates an
analyzer's backward pass along the straight path from a baseline to the input
(Integrated Gradients when the backward pass is the gradient). Both wrap any
backpropagation analyzer: gradient, guided backprop, deconvnet, every LRP
analyzer, CAM maps (NoiseTunnel only). NoiseTunnel also wraps any other
analyzer: Integrated Gradients and the other wrappers, the perturbation methods
(one noisy copy per pass, each multiplied by the method itself) and LIME and
KernelSHAP (on the host, where they run). :class:`SmoothGrad`,
:class:`SquareGrad`, :class:`VarGrad` and :class:`IntegratedGradients` are
these wrappers around :class:`~keras_explain.analyzers.gradient.Gradient`
(:mod:`keras_explain.analyzers.gradient_wrappers`).

Memory does not grow with ``samples`` or ``steps``: the copies of a batch run
through :meth:`~keras_explain.analyzers.base.Analyzer.run_copies` in passes of at
most ``internal_batch_size`` rows (default: as many as fit in
:func:`keras_explain.config.memory_budget`), inside one ``tf.while_loop`` of the
analyzer's compiled function, and are accumulated as running sums (VarGrad as
running means and sums of squared deviations, merged as Chan et al. 1979).
``samples`` and ``steps`` are passed to the compiled function as tensors:
changing them between calls does not retrace.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from keras_explain import _batching, _validate, random
from keras_explain.analyzers.backprop import Backpropagation
from keras_explain.analyzers.base import Analyzer, keyword_parameters
from keras_explain.analyzers.cam import LayerMaps
from keras_explain.analyzers.layer_output import LayerOutputs

QUADRATURES = ("trapezoid", "riemann_left", "riemann_right", "riemann_middle", "gausslegendre")
NOISE_KINDS = ("smoothgrad", "squaregrad", "vargrad")


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

    Example:
        >>> from keras_explain.analyzers import quadrature
        >>> quadrature("trapezoid", 3)
        (array([0. , 0.5, 1. ]), array([0.25, 0.5 , 0.25]))
    """
    if isinstance(method, bytes):
        method = method.decode()
    _validate.one_of(method, "method", QUADRATURES)
    minimum = 2 if method == "trapezoid" else 1
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < minimum:
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


def _bound(name: str) -> property:
    """An attribute of the wrapped analyzer, read through the wrapper."""
    return property(
        lambda self: getattr(self.analyzer, name), doc=f"The wrapped analyzer's ``{name}``."
    )


class Wrapper(Analyzer):
    """Base of the wrappers: the analyze contract is the wrapped analyzer's.

    Args:
        analyzer: A backpropagation analyzer (gradient, guided backprop,
            deconvnet, LRP, ...).
        internal_batch_size: Rows per pass through the model (default: as many
            as fit in :func:`keras_explain.config.memory_budget`); a pass holds
            at least one copy of every sample of the batch.
        verbose: Progress bars, as for every analyzer.

    Raises:
        TypeError: If ``analyzer`` is not a backpropagation analyzer, or for
            an unexpected parameter.
        ValueError: For a bad ``internal_batch_size``.

    Token inputs (integer ids feeding an ``Embedding``) are perturbed at the
    Embedding output, with the Keras mask of the explained tokens.
    """

    def __init__(
        self,
        analyzer: Backpropagation,
        *,
        internal_batch_size: int | None = None,
        verbose: Any = "auto",
        jit_compile: bool = False,
        **unexpected: Any,
    ):
        name = type(self).__name__
        _validate.unexpected_parameters(name, unexpected, self.parameters())
        if not isinstance(analyzer, self.wraps):
            raise TypeError(
                f"{name} wraps {self.wraps_description}. Received: {type(analyzer).__name__}. "
                "Model-agnostic methods have their own sampling parameters."
            )
        self.analyzer = analyzer
        self.internal_batch_size = _validate.internal_batch_size(internal_batch_size)
        self._start(verbose, jit_compile)

    #: The analyzers a wrapper accepts, and how its error message names them.
    wraps: type | tuple[type, ...] = Backpropagation
    wraps_description = (
        "a backpropagation analyzer (gradient, guided_backprop, deconvnet, lrp.*, ...)"
    )

    # the contract (model, explained output, target checks) is the wrapped analyzer's
    model = _bound("model")
    plan = _bound("plan")
    output_key = _bound("output_key")
    output_keys = _bound("output_keys")
    output_layer = _bound("output_layer")
    output_index = _bound("output_index")
    strip_softmax = _bound("strip_softmax")
    neuron_selection_mode = _bound("neuron_selection_mode")
    constant_inputs = _bound("constant_inputs")
    returns_maps = _bound("returns_maps")
    backward_memory_factor = _bound("backward_memory_factor")

    embedded = _bound("embedded")

    def held_input(self, position: int) -> bool:
        """Whether input ``position`` is held constant: the wrapped analyzer's answer."""
        return self.analyzer.held_input(position)

    def output_count(self, input_count: int) -> int:
        """Results of :meth:`explain_batch`: the wrapped analyzer's count."""
        return self.analyzer.output_count(input_count)

    @classmethod
    def parameters(cls, **preset: Any) -> list[str]:
        """The wrapper's own keyword parameters (those of ``Wrapper`` and its subclasses)."""
        return keyword_parameters(k for k in cls.__mro__ if issubclass(k, Wrapper))

    def forward(self, inputs, hook=None, watch=()):
        """Run the model (see :meth:`Analyzer.forward`), through the wrapped analyzer."""
        return self.analyzer.forward(inputs, hook, watch)

    def at_points(self, points, inputs, size, run):
        """``run(model_inputs)`` on ``size`` copies ``points`` of the attributed values.

        Args:
            points: One ``(size * B, ...)`` tensor per input, copy-major: copies of
                the wrapped analyzer's attributed values (:meth:`Backpropagation.embed`).
            inputs: The batch, ``(B, ...)`` per input.
            size: Copies per sample.
            run: ``run(model_inputs) -> values``.

        For token inputs ``points`` holds embeddings: the model runs on the tokens,
        repeated once per copy (they set the masks), with the Embedding outputs
        replaced by ``points``.
        """
        embedded = getattr(self.analyzer, "embedded", ())
        if not any(embedded):
            return run(points)
        model_inputs = [
            _batching.repeat(x, size) if emb else values
            for x, values, emb in zip(inputs, points, embedded)
        ]
        with self.analyzer.substituted(points):
            return run(model_inputs)


class NoiseTunnel(Wrapper):
    """Average an analyzer's attributions over noisy copies of the input (Captum's NoiseTunnel).

    Each sample gets ``samples`` copies ``x + N(0, σ²)`` with
    ``σ = noise_scale * (max(x) − min(x))`` per sample (Smilkov et al. 2017);
    for token inputs, ``x`` is the Embedding output (the noise is added to the
    embeddings, the per-token attributions of each copy are combined);
    the wrapped analyzer explains every copy (the target is fixed on the clean
    input), and the attributions ``a_k`` are combined:

    - ``"smoothgrad"``: ``mean_k a_k`` (Smilkov et al. 2017, arXiv:1706.03825);
    - ``"squaregrad"``: ``mean_k a_k²`` (Hooker et al. 2019, arXiv:1806.10758);
    - ``"vargrad"``: ``var_k a_k`` (Adebayo et al. 2018, arXiv:1810.03307).

    Args:
        analyzer: Any analyzer: a backpropagation analyzer (gradient, input ×
            gradient, guided backprop, deconvnet, any LRP analyzer, a CAM
            method), Integrated Gradients or another wrapper (Captum's
            NoiseTunnel around IG), DeepLIFT, or a perturbation method
            (occlusion, Shapley sampling, RISE, LIME, KernelSHAP; single-input
            models, not token ids: the noise is added to the input). A wrapped
            method that draws random numbers gets the tunnel's seed.
        kind: ``"smoothgrad"`` (default), ``"squaregrad"`` or ``"vargrad"``.
        samples: Noisy copies per sample (default 50).
        noise_scale: σ as a fraction of each sample's value range (default 0.1).
        seed: Seed; the same seed gives the same result, whatever ``batch_size``
            and ``internal_batch_size`` (each copy draws from its own seed).
        internal_batch_size: Rows per pass (default: from the memory budget); at
            least one copy of every sample.
        verbose: Progress bars (``"auto"``, ``0``, ``1``).

    Returns:
        ``analyze(x, target)`` returns the combined attributions, shaped like
        the wrapped analyzer's.

    Raises:
        TypeError: If ``analyzer`` is not an analyzer, or returns activations
            (``LayerOutputs``).
        ValueError: For a bad ``kind``, ``samples`` or ``noise_scale``; for a
            non-backpropagation analyzer on token ids or on a model with several
            perturbed inputs.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((4,)),
        ...                           keras.layers.Dense(5, activation="relu"),
        ...                           keras.layers.Dense(3)])
        >>> smooth_lrp = kx.NoiseTunnel(kx.LRP(model, "epsilon"), samples=8, seed=0)
        >>> smooth_lrp.analyze(np.ones((2, 4), "float32")).shape
        (2, 4)
        >>> smooth_ig = kx.NoiseTunnel(kx.IntegratedGradients(model, steps=8), samples=4, seed=0)
        >>> smooth_ig.analyze(np.ones((2, 4), "float32")).shape
        (2, 4)
    """

    def __init__(
        self,
        analyzer: Backpropagation,
        *,
        kind: str = "smoothgrad",
        samples: int = 50,
        noise_scale: float = 0.1,
        seed: int | None = None,
        internal_batch_size: int | None = None,
        verbose: Any = "auto",
        **unexpected: Any,
    ):
        self.kind = _validate.one_of(kind, "kind", NOISE_KINDS)
        self.samples = _validate.positive_int(samples, "samples")
        self.noise_scale = _validate.non_negative(
            noise_scale, "noise_scale", " (a fraction of each sample's value range)"
        )
        self.seed = seed
        super().__init__(
            analyzer, internal_batch_size=internal_batch_size, verbose=verbose, **unexpected
        )
        if not isinstance(analyzer, Backpropagation):
            self._check_copies_of(analyzer)
            # the copies run where the wrapped method runs: in the compiled function,
            # or on the host for LIME and KernelSHAP
            self.execution = analyzer.execution

    wraps = Analyzer
    wraps_description = "an analyzer"

    def _check_copies_of(self, analyzer: Analyzer) -> None:
        """Refuse what noise cannot be added to: token ids, several perturbed inputs."""
        name, wrapped = type(self).__name__, type(analyzer).__name__
        if isinstance(analyzer, LayerOutputs):
            raise TypeError(
                f"{name} averages attributions; {wrapped} returns a layer's activations, "
                f"not attributions. Received: {wrapped}."
            )
        specs = self._input_specs() or []
        features = [i for i in range(len(specs)) if not analyzer.held_input(i)]
        integers = [i for i in features if tf.as_dtype(specs[i].dtype).is_integer]
        if integers or any(getattr(analyzer, "embedded", ())):
            raise ValueError(
                f"{name} adds Gaussian noise to the input, and input {integers or 0} of model "
                f"{self.model.name!r} holds token ids, which {wrapped} explains whole. "
                f"Received: {wrapped}. Wrap a backpropagation analyzer "
                "(kx.NoiseTunnel(kx.Gradient(model))): it adds the noise to the embeddings."
            )
        if getattr(analyzer, "single_feature_input", False) and len(specs) > 1:
            raise ValueError(
                f"{name} around {wrapped} explains models with one input; model "
                f"{self.model.name!r} has {len(specs)}. Received: {wrapped}. Wrap a "
                "backpropagation analyzer or Integrated Gradients instead."
            )

    def _one_copy_per_pass(self) -> bool:
        """A perturbation method multiplies each copy itself and needs a static batch."""
        return bool(getattr(self.analyzer, "single_feature_input", False))

    def copies_per_pass(self, inputs, *, backward: bool) -> int:
        """One noisy copy per pass around a perturbation method, else from the memory budget."""
        if self._one_copy_per_pass():
            return 1
        return super().copies_per_pass(inputs, backward=backward)

    def _points(self, inputs) -> list[tf.Tensor]:
        """The values the noise is added to: the embeddings of token inputs, else the inputs."""
        if isinstance(self.analyzer, Backpropagation):
            return self.analyzer.embed(inputs)
        return list(inputs)

    def call_params(self) -> dict[str, Any]:
        """``samples`` and ``noise_scale``, read at every call (no retracing)."""
        samples = _validate.positive_int(self.samples, "samples")
        noise_scale = _validate.non_negative(self.noise_scale, "noise_scale")
        return {
            "samples": np.int32(samples),
            "noise_scale": np.float32(noise_scale),
            "analyzer": self.analyzer.call_params(),
        }

    def noise(self, inputs, seed, start, size, noise_scale):
        """Copies ``start .. start + size - 1`` of each input: a list of ``(size, B, ...)``."""
        copies = []
        for position, x in enumerate(inputs):
            axes = list(range(1, x.shape.rank))
            spread = tf.reduce_max(x, axes, keepdims=True) - tf.reduce_min(x, axes, keepdims=True)
            if self.analyzer.held_input(position):  # not a feature: no noise
                copies.append(_batching.copies(x, size))
                continue
            sigma = tf.cast(noise_scale, x.dtype) * spread
            noise = random.copy_noise(seed, x, start, size, stream=position)
            copies.append(x[None] + noise * sigma[None])
        return copies

    def noisy_copies(self, inputs, seed) -> list[tf.Tensor]:
        """All ``samples`` noisy copies of each input, ``(samples, B, ...)`` (for inspection).

        Args:
            inputs: One tensor per model input.
            seed: ``[user_seed, first_row]``, as the compiled function receives it.
        """
        points = self._points(inputs)
        return self.noise(points, seed, 0, self.samples, self.noise_scale)

    def explain_batch(self, inputs, target, indices, seed, params):
        """The combined attributions of the noisy copies (mean, mean square or variance)."""
        target, indices, _ = self.fixed_target(inputs, target, indices)
        count = params["samples"]
        outputs = self.analyzer.output_count(len(inputs))
        points = self._points(inputs)

        def make(start, size):
            return self.noise(points, seed, start, size, params["noise_scale"]), None

        def evaluate(flat, size):
            rows = _batching.repeat(indices, size)
            if self._one_copy_per_pass():  # one copy: the batch's static shape
                flat = [tf.ensure_shape(f, x.shape) for f, x in zip(flat, points)]
            return self.at_points(
                flat,
                inputs,
                size,
                lambda x: self.analyzer.explain_batch(x, target, rows, seed, params["analyzer"]),
            )

        if self.kind == "vargrad":
            initial = (tf.zeros(()), [tf.zeros(())] * outputs, [tf.zeros(())] * outputs)
            _, _, squares = self.run_copies(
                inputs, count, make, evaluate, _merge_moments, initial, backward=True
            )
            return [m2 / tf.cast(count, tf.float32) for m2 in squares]
        square = self.kind == "squaregrad"

        def accumulate(totals, values, aux, start, size):
            return [
                total + tf.reduce_sum(tf.square(v) if square else v, axis=0)
                for total, v in zip(totals, values)
            ]

        initial = [tf.zeros(())] * outputs
        totals = self.run_copies(inputs, count, make, evaluate, accumulate, initial, backward=True)
        return [total / tf.cast(count, tf.float32) for total in totals]


def _merge_moments(acc, values, aux, start, size):
    """Fold a pass's values into running (count, means, sums of squared deviations).

    Chan, Golub & LeVeque 1979: exact, and stable where ``E[a²] − E[a]²`` is not.
    """
    count_a, means, squares = acc
    count_b = tf.cast(size, tf.float32)
    count = count_a + count_b
    new_means, new_squares = [], []
    for mean_a, square_a, value in zip(means, squares, values):
        mean_b = tf.reduce_mean(value, axis=0)
        square_b = tf.reduce_sum(tf.square(value - mean_b[None]), axis=0)
        delta = mean_b - mean_a
        new_means.append(mean_a + delta * (count_b / count))
        new_squares.append(square_a + square_b + tf.square(delta) * (count_a * count_b / count))
    return count, new_means, new_squares


class PathIntegral(Wrapper):
    """Integrate an analyzer's backward pass along the path from a baseline to the input.

    ``(x − x') ⊙ Σ_k w_k G(x' + α_k (x − x'))`` with the quadrature points and
    weights of :func:`quadrature`, where ``G`` is the wrapped analyzer's
    backward pass at the input: the gradient for
    :class:`~keras_explain.analyzers.gradient.Gradient` (Integrated Gradients,
    Sundararajan et al. 2017, arXiv:1703.01365), the guided gradient for
    guided backprop, the relevance for an LRP analyzer (as Zennit's
    ``IntegratedGradients`` with a composite). The analyzer's own
    post-processing (``postprocess``, × input) is not applied: the path
    integral replaces it. The target is fixed on the clean input.

    Args:
        analyzer: A backpropagation analyzer explaining its inputs (no
            ``layer``, no CAM method).
        steps: Number of path points (default 64).
        method: ``"trapezoid"`` (default; both end points), ``"riemann_left"``,
            ``"riemann_right"``, ``"riemann_middle"`` or ``"gausslegendre"``.
        baseline: The reference input ``x'``: a scalar, an array shaped like one
            sample, or an array shaped like the batch (default 0); a list with
            one entry per input for a multi-input model. For token inputs
            (integer ids feeding an ``Embedding``) the path runs between
            embeddings: ``baseline`` is a token id (default 0, the padding id)
            or an embedding array ``(T, D)`` or ``(B, T, D)``, as Captum's
            ``LayerIntegratedGradients`` on the embedding layer; the Keras mask
            of the explained tokens is kept along the path.
        internal_batch_size: Rows per pass (default: from the memory budget); at
            least one copy of every sample.
        verbose: Progress bars (``"auto"``, ``0``, ``1``).

    Returns:
        ``analyze(x, target)`` returns attributions shaped like x; with the
        gradient, they sum per sample to about ``f_t(x) − f_t(x')`` (completeness).

    Raises:
        TypeError: If ``analyzer`` is not a backpropagation analyzer.
        ValueError: For a bad ``steps``/``method``, a baseline of the wrong
            shape, an analyzer with ``layer`` or a CAM method.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((4,)),
        ...                           keras.layers.Dense(5, activation="relu"),
        ...                           keras.layers.Dense(3)])
        >>> integrated_guided = kx.PathIntegral(kx.GuidedBackprop(model), steps=16)
        >>> integrated_guided.analyze(np.ones((2, 4), "float32")).shape
        (2, 4)
    """

    def __init__(
        self,
        analyzer: Backpropagation,
        *,
        steps: int = 64,
        method: str = "trapezoid",
        baseline: Any = 0.0,
        multiply_by_inputs: bool = True,
        internal_batch_size: int | None = None,
        verbose: Any = "auto",
        **unexpected: Any,
    ):
        quadrature(method, steps)  # checks both
        self.steps, self.method = int(steps), method
        super().__init__(
            analyzer, internal_batch_size=internal_batch_size, verbose=verbose, **unexpected
        )
        name = type(self).__name__
        self.multiply_by_inputs = _validate.boolean(multiply_by_inputs, "multiply_by_inputs", name)
        if not getattr(analyzer, "path_integrable", True):
            raise ValueError(
                f"{name} integrates an analyzer's backward pass along a path; "
                f"{type(analyzer).__name__} already explains the difference from its own "
                "baseline, so its path integral means nothing. Received: "
                f"{type(analyzer).__name__}. Use it alone, or PathIntegral(kx.Gradient(model))."
            )
        if isinstance(analyzer, LayerMaps):
            raise ValueError(
                f"{name} integrates an attribution along a path and multiplies by the "
                f"difference from the baseline; a CAM map is neither. Received: "
                f"{type(analyzer).__name__} maps. Use kx.NoiseTunnel around a CAM method, or "
                "integrate the gradient at the layer: IntegratedGradients(model, layer=...)."
            )
        self.baseline = self._checked_baselines(baseline)

    #: With a ``layer=`` analyzer, whether the path runs between the layer's values
    #: (Integrated Gradients at a layer) or between inputs (internal influence).
    layer_path = True

    def _checked_baselines(self, baseline):
        specs = self._input_specs()
        baselines = list(baseline) if isinstance(baseline, list | tuple) else None
        if specs is None:
            return baselines if baselines is not None else baseline
        if baselines is None:
            baselines = [baseline] * len(specs)
        if len(baselines) != len(specs):
            raise ValueError(
                f"baseline needs one entry per model input ({len(specs)}). Received "
                f"{len(baselines)}."
            )
        baselines = self.analyzer.checked_token_baselines(type(self).__name__, baselines)
        return [
            b if self.analyzer.embedding_layer(i) is not None else _validate.baseline(b, spec)
            for i, (b, spec) in enumerate(zip(baselines, (tuple(s.shape[1:]) for s in specs)))
        ]

    def call_params(self) -> dict[str, Any]:
        """``steps`` and ``method``, read at every call (no retracing)."""
        quadrature(self.method, self.steps)
        return {"steps": np.int32(self.steps), "method": self.method}

    def _check_batch(self, shapes, split):
        baselines = self.baseline if isinstance(self.baseline, list) else [self.baseline]
        if len(baselines) != len(shapes):
            raise ValueError(
                f"baseline needs one entry per model input ({len(shapes)}). Received "
                f"{len(baselines)}."
            )
        for base, shape in zip(baselines, self.analyzer.batch_shapes(shapes)):
            if not isinstance(base, float | int):
                base = _validate.baseline(base, shape[1:])
            _validate.batch_baseline(base, shape, split)

    def explain_batch(self, inputs, target, indices, seed, params):
        """``(x − x') ⊙ Σ_k w_k G(x' + α_k (x − x'))`` over the quadrature points.

        At a layer (``layer=`` on the wrapped analyzer), ``x`` and ``x'`` are the
        layer's values on the input and on the baseline input, and the model runs
        from the layer on with its value replaced by each point (Captum's
        ``LayerIntegratedGradients``).
        """
        target, indices, _ = self.fixed_target(inputs, target, indices)
        baselines = (
            self.baseline if isinstance(self.baseline, list) else [self.baseline] * len(inputs)
        )
        points = self.analyzer.embed(inputs)
        baselines = self.analyzer.baseline_points(baselines, inputs, points)
        alphas, weights = tf.numpy_function(
            quadrature,
            [params["method"], params["steps"]],
            [tf.float64, tf.float64],
            stateful=False,
        )
        at_layer = self.analyzer.layer is not None and self.layer_path
        if at_layer:  # the path runs between the layer's values
            points = self.analyzer.source_values(inputs)
            baselines = self.at_points(baselines, inputs, 1, self.analyzer.source_values)

        values = points

        def make(start, size):
            points = alphas[start : start + size]
            copies = []
            for x, base in zip(values, baselines):
                shape = tf.concat([[-1], tf.ones([x.shape.rank], tf.int32)], 0)
                alpha = tf.reshape(tf.cast(points, x.dtype), shape)
                copies.append(base[None] + alpha * (x - base)[None])
            return copies, None

        def evaluate(flat, size):
            rows = _batching.repeat(indices, size)
            if at_layer:
                repeated = [_batching.repeat(x, size) for x in inputs]
                with self.analyzer.sources_substituted(flat):
                    return self.analyzer.backward(repeated, target, rows)[0]
            return self.at_points(
                flat, inputs, size, lambda x: self.analyzer.backward(x, target, rows)[0]
            )

        def accumulate(totals, values, aux, start, size):
            weight = tf.cast(weights[start : start + size], tf.float32)
            return [
                total + tf.tensordot(weight, value, axes=1) for total, value in zip(totals, values)
            ]

        initial = [tf.zeros(())] * len(values)
        totals = self.run_copies(
            values, params["steps"], make, evaluate, accumulate, initial, backward=True
        )
        if not self.multiply_by_inputs:  # the path's mean backward pass (Captum's False)
            return self.analyzer.finish(totals, inputs)
        return self.analyzer.finish(
            [
                tf.cast(x - base, tf.float32) * total
                for x, base, total in zip(values, baselines, totals)
            ],
            inputs,
        )
