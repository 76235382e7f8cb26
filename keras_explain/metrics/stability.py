"""Stability: do the explanations of nearby inputs agree?

Average sensitivity (Yeh et al. 2019), the local Lipschitz estimate
(Alvarez-Melis & Jaakkola 2018), continuity under translation (Montavon et al.
2018) and the relative input, output and representation stabilities (Agarwal et
al. 2022), as Quantus 0.6 defines them. Each re-explains perturbed copies of
the inputs: the copies of all samples are explained in one ``analyze`` call,
in chunks of the analyzer's ``rows_per_pass``
(:func:`~keras_explain.metrics.engine.explainer`), with the target fixed on the
clean input (:func:`~keras_explain.metrics.engine.fixed_target`). Statistics
are computed on the host in float64.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from keras_explain import _validate, config
from keras_explain.analyzers.base import Analyzer
from keras_explain.analyzers.layer_output import LayerLike, LayerOutputs
from keras_explain.metrics.engine import (
    checked,
    continuous_batch,
    explain_copies,
    noisy_copies,
    relative_changes,
)
from keras_explain.metrics.registry import MetricContext, register_metric

#: ``ε_min`` of the relative stabilities (Agarwal et al. 2022; Quantus' ``eps_min``).
EPSILON_MIN = 1e-6
#: What the stabilities do to inputs, for the error on token ids.
SMALL_CHANGES = "perturbs inputs with small continuous changes"


def _flat(array, rows, samples=None):
    array = np.asarray(array, np.float64)
    return array.reshape(rows, -1) if samples is None else array.reshape(rows, samples, -1)


def avg_sensitivity(
    analyzer,
    x,
    target=None,
    *,
    noise_scale: float = 0.02,
    samples: int = 10,
    perturbation: Any = None,
    seed: int = 0,
) -> np.ndarray:
    """Average sensitivity (Yeh et al. 2019), as Quantus' ``AvgSensitivity``.

    ``mean_k ||e(x + d_k) - e(x)|| / ||e(x)||`` (Frobenius norms over each
    sample; a zero ``||e(x)||`` is replaced by 1, as in
    :func:`~keras_explain.metrics.sensitivity_max`), ``d_k`` uniform in the
    L-infinity ball of radius ``noise_scale``: the expectation that
    max-sensitivity bounds from above. Yeh et al. 2019, "On the (in)fidelity
    and sensitivity of explanations", NeurIPS.

    Args:
        analyzer: An analyzer (``kx.Gradient(model)``) or a callable
            ``explain(x, target) -> attributions``.
        x: The batch ``(B, ...)``.
        target: As in :mod:`keras_explain.targets`; ``None`` is the clean
            argmax, fixed for every noisy copy (for an analyzer).
        noise_scale: Half-width of the uniform noise (default 0.02, as
            ``sensitivity_max``; Quantus' default is 0.2).
        samples: Perturbations per sample.
        perturbation: Optional callable: it receives the inputs repeated
            sample-major (``np.repeat(x, samples, axis=0)``) and returns ``d`` of
            the same shape; the explanations are taken at ``x + d``.
        seed: Seed of the noise.

    Returns:
        ``(B,)`` float32 average sensitivities (lower is better).

    Raises:
        ValueError: For a non-positive ``noise_scale`` or ``samples``, or a
            perturbation of the wrong shape.
        TypeError: For an analyzer that is neither an Analyzer nor callable.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        >>> x = np.ones((2, 3), "float32")
        >>> kx.metrics.avg_sensitivity(kx.Gradient(model), x, target=0)
        array([0., 0.], dtype=float32)
    """
    function = "avg_sensitivity"
    x = continuous_batch(x, function, SMALL_CHANGES)
    samples, copies = noisy_copies(x, samples, noise_scale, perturbation, seed, function)
    clean, noisy = explain_copies(analyzer, x, copies, target, function)
    return relative_changes(clean, noisy).mean(axis=1).astype(np.float32)


def _max_ratio(numerators: np.ndarray, denominators: np.ndarray) -> np.ndarray:
    """``max_k numerator_k / denominator_k`` per sample, 0 where a copy equals x."""
    ratios = np.divide(
        numerators,
        denominators,
        out=np.zeros_like(numerators),
        where=denominators > 0,
    )
    return ratios.max(axis=1).astype(np.float32)


def local_lipschitz_estimate(
    analyzer,
    x,
    target=None,
    *,
    noise_scale: float = 0.1,
    samples: int = 10,
    perturbation: Any = None,
    seed: int = 0,
) -> np.ndarray:
    """Local Lipschitz estimate (Alvarez-Melis & Jaakkola 2018), as Quantus' estimator.

    ``max_k ||e(x) - e(x_k)||_2 / ||x - x_k||_2`` over Gaussian copies
    ``x_k = x + N(0, noise_scale²)``: a sampled lower bound of the paper's
    ``max_{x' in B_eps(x)}`` (which it searches by Bayesian or gradient
    optimisation), as Quantus' ``LocalLipschitzEstimate`` samples it. A copy
    equal to ``x`` counts 0 (the paper's maximum is over ``x' != x``).
    Alvarez-Melis & Jaakkola 2018, "On the robustness of interpretability
    methods", ICML WHI workshop.

    Args:
        analyzer: An analyzer (``kx.Gradient(model)``) or a callable
            ``explain(x, target) -> attributions``.
        x: The batch ``(B, ...)``.
        target: As in :mod:`keras_explain.targets`; ``None`` is the clean
            argmax, fixed for every copy (for an analyzer).
        noise_scale: σ of the Gaussian noise (default 0.1, Quantus' ``perturb_std``).
        samples: Perturbations per sample (Quantus' ``nr_samples``, default 200 there).
        perturbation: Optional callable returning ``d`` for
            ``np.repeat(x, samples, axis=0)``; the copies are ``x + d``.
        seed: Seed of the noise.

    Returns:
        ``(B,)`` float32 estimates (lower is better).

    Raises:
        ValueError: For a non-positive ``noise_scale`` or ``samples``, or a
            perturbation of the wrong shape.
        TypeError: For an analyzer that is neither an Analyzer nor callable.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        >>> x = np.ones((2, 3), "float32")
        >>> kx.metrics.local_lipschitz_estimate(kx.Gradient(model), x, target=0)
        array([0., 0.], dtype=float32)
    """
    function = "local_lipschitz_estimate"
    x = continuous_batch(x, function, SMALL_CHANGES)
    samples, copies = noisy_copies(
        x, samples, noise_scale, perturbation, seed, function, gaussian=True
    )
    clean, noisy = explain_copies(analyzer, x, copies, target, function)
    moved = np.linalg.norm(noisy - clean[:, None], axis=2)
    steps = np.linalg.norm(_flat(copies, len(x), samples) - _flat(x, len(x))[:, None], axis=2)
    return _max_ratio(moved, steps)


def _translated(x: np.ndarray, shift: int, baseline: float) -> np.ndarray:
    """Images ``(B, H, W, C)`` moved ``shift`` pixels right (left if negative), padded."""
    width = x.shape[2]
    source = np.arange(width) - shift
    inside = (source >= 0) & (source < width)
    moved = x[:, :, np.clip(source, 0, width - 1)]
    return np.where(inside[None, None, :, None], moved, np.float32(baseline))


def continuity(
    analyzer,
    x,
    target=None,
    *,
    steps: int = 28,
    baseline: float = 0.0,
) -> np.ndarray:
    """Explanation continuity under translation (Montavon et al. 2018), as Quantus 0.6.

    ``max_k ||e(x) - e(x_k)||_1 / ||x - x_k||_2`` over horizontal translations
    ``x_k`` of the image: the strongest variation of the explanation in the
    input domain (Montavon, Samek & Müller 2018, "Methods for interpreting and
    understanding deep neural networks", Digital Signal Processing 73, 1-15).
    The translations are Quantus': with width ``W``, ``dx = (2W + 1) // steps``
    and shifts ``-W + k dx`` pixels for ``k = 1 .. steps``, the uncovered columns
    filled with ``baseline``. A shift of 0 (``x_k = x``) counts 0.

    Only defined for images ``(B, H, W, C)`` (the translation is along the
    width axis).

    Args:
        analyzer: An analyzer (``kx.Gradient(model)``) or a callable
            ``explain(x, target) -> attributions``.
        x: Images ``(B, H, W, C)``.
        target: As in :mod:`keras_explain.targets`; ``None`` is the clean
            argmax, fixed for every translated copy (for an analyzer).
        steps: Number of translations (Quantus' ``nr_steps``, default 28);
            at most ``2W + 1``.
        baseline: The value of the uncovered columns (Quantus pads with each
            image's minimum, ``"black"``: 0 for images in [0, 1] with a black pixel).

    Returns:
        ``(B,)`` float32 values (lower is better: a continuous explanation).

    Raises:
        ValueError: For inputs that are not images, ``steps`` outside
            ``[1, 2W + 1]`` or a non-numeric ``baseline``.
        TypeError: For an analyzer that is neither an Analyzer nor callable.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(),
        ...                           keras.layers.Dense(2)])
        >>> x = np.ones((1, 4, 4, 1), "float32")
        >>> kx.metrics.continuity(kx.Gradient(model), x, target=0, steps=3)
        array([0.], dtype=float32)
    """
    function = "continuity"
    x = continuous_batch(x, function, SMALL_CHANGES)
    if x.ndim != 4:
        raise ValueError(
            f"{function} translates images along their width: it needs x of shape (B, H, W, C). "
            f"Received: x of shape {x.shape}. For tabular or sequence inputs use "
            "local_lipschitz_estimate or avg_sensitivity."
        )
    width = x.shape[2]
    steps = checked(function, _validate.positive_int, steps, "steps")
    if steps > 2 * width + 1:
        raise ValueError(
            f"{function}: steps must be at most 2W + 1 = {2 * width + 1} for images {width} "
            f"pixels wide (the translations are {(2 * width + 1)} // steps pixels apart). "
            f"Received: steps={steps}."
        )
    if isinstance(baseline, bool) or not isinstance(baseline, int | float | np.number):
        raise ValueError(
            f"{function}: baseline must be a number, the value of the uncovered columns. "
            f"Received: baseline={baseline!r}."
        )
    shift = (2 * width + 1) // steps
    shifts = -width + shift * np.arange(1, steps + 1)
    copies = np.stack([_translated(x, int(s), float(baseline)) for s in shifts], axis=1)
    copies = copies.reshape(len(x) * steps, *x.shape[1:])
    clean, moved = explain_copies(analyzer, x, copies, target, function)
    changes = np.abs(moved - clean[:, None]).sum(axis=2)
    distances = np.linalg.norm(_flat(copies, len(x), steps) - _flat(x, len(x))[:, None], axis=2)
    return _max_ratio(changes, distances)


# -- Relative stabilities (Agarwal et al. 2022) --------------------------------------------
def _predictor(analyzer, model, function: str):
    """``predict(inputs) -> (N, ...)``: the outputs that decide the class (and ROS' logits)."""
    if model is None:
        if isinstance(analyzer, Analyzer):
            return analyzer.predict
        raise ValueError(
            f"{function} keeps only the perturbations that do not change the prediction, so "
            "a callable explainer needs the model: pass model=<a Keras model or a callable "
            f"f(x) -> logits>. Received: analyzer={type(analyzer).__name__}, model=None."
        )
    if not callable(model):
        raise TypeError(
            f"{function}: model must be a Keras model or a callable f(x) -> logits. "
            f"Received: model of type {type(model).__name__}."
        )

    def predict(inputs: np.ndarray) -> np.ndarray:
        elements = int(np.prod(inputs.shape[1:]))
        rows = config.rows_per_pass(None, elements, factor=Analyzer.forward_memory_factor)
        return np.concatenate(
            [np.asarray(model(inputs[i : i + rows])) for i in range(0, len(inputs), rows)]
        )

    return predict


def _relative(values: np.ndarray, reference: np.ndarray, epsilon: float) -> np.ndarray:
    """``(reference - values) / reference``, zeros of ``reference`` replaced by ``epsilon``."""
    return (reference - values) / np.where(reference == 0, epsilon, reference)


def _relative_stability(
    function, analyzer, x, target, noise_scale, samples, perturbation, epsilon, model, seed, of
):
    """``max_k ||(e_x - e_k) / e_x|| / max(of(...), ε)`` over the copies that keep the class."""
    x = continuous_batch(x, function, SMALL_CHANGES)
    epsilon = checked(function, _validate.positive, epsilon, "epsilon")
    predict = _predictor(analyzer, model, function)
    samples, copies = noisy_copies(x, samples, noise_scale, perturbation, seed, function)
    clean, noisy = explain_copies(analyzer, x, copies, target, function)
    outputs = np.asarray(predict(np.concatenate([x, copies])), np.float64)
    outputs = outputs.reshape(len(outputs), -1)
    clean_outputs, copy_outputs = outputs[: len(x)], outputs[len(x) :].reshape(len(x), samples, -1)
    kept = copy_outputs.argmax(axis=2) == clean_outputs.argmax(axis=1)[:, None]
    numerators = np.linalg.norm(_relative(noisy, clean[:, None], epsilon), axis=2)
    denominators = np.maximum(of(x, copies, clean_outputs, copy_outputs), epsilon)
    ratios = np.where(kept, numerators / denominators, np.nan)
    with warnings.catch_warnings():  # a sample whose every copy changed class: NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmax(ratios, axis=1).astype(np.float32)


def relative_input_stability(
    analyzer,
    x,
    target=None,
    *,
    noise_scale: float = 0.02,
    samples: int = 10,
    perturbation: Any = None,
    epsilon: float = EPSILON_MIN,
    model: Any = None,
    seed: int = 0,
) -> np.ndarray:
    """Relative input stability (Agarwal et al. 2022), as Quantus' ``RelativeInputStability``.

    ``RIS = max_{x'} ||(e_x - e_x') / e_x||_2 / max(||(x - x') / x||_2, ε_min)``
    over noisy copies ``x' = x + d`` whose predicted class (the argmax of the
    model's output) is the clean input's; the others are discarded, and a
    sample whose every copy changed class gets NaN. Element-wise, zeros of
    ``e_x`` and ``x`` are replaced by ``ε_min`` before dividing (as Quantus).
    Norms are over all the features of a sample. Agarwal et al. 2022,
    "Rethinking stability for attribution-based explanations", ICLR PAIR2Struct.

    Args:
        analyzer: An analyzer (``kx.Gradient(model)``) or a callable
            ``explain(x, target) -> attributions`` (then pass ``model``).
        x: The batch ``(B, ...)``.
        target: As in :mod:`keras_explain.targets`; ``None`` is the clean
            argmax, fixed for every noisy copy (for an analyzer).
        noise_scale: Half-width of the uniform noise ``d`` in the L-infinity
            ball (default 0.02; Quantus adds uniform noise in [0.02, 0.2]).
        samples: Perturbations per sample (Quantus' ``nr_samples``, 200 there).
        perturbation: Optional callable returning ``d`` for
            ``np.repeat(x, samples, axis=0)``; the copies are ``x + d``.
        epsilon: ``ε_min`` (default 1e-6, Quantus' ``eps_min``).
        model: The model whose predictions decide which copies are kept: a
            Keras model or a callable ``f(x) -> logits`` (default: the
            analyzer's explained output; required for a callable explainer).
        seed: Seed of the noise.

    Returns:
        ``(B,)`` float32 values (lower is better).

    Raises:
        ValueError: For a non-positive ``noise_scale``, ``samples`` or
            ``epsilon``, a perturbation of the wrong shape, or a callable
            explainer without ``model``.
        TypeError: For an analyzer that is neither an Analyzer nor callable.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        >>> x = np.ones((2, 3), "float32")
        >>> kx.metrics.relative_input_stability(kx.Gradient(model), x)
        array([0., 0.], dtype=float32)
    """

    def inputs_moved(x, copies, clean_outputs, copy_outputs):
        moved = _flat(copies, len(x), len(copies) // len(x))
        return np.linalg.norm(_relative(moved, _flat(x, len(x))[:, None], epsilon), axis=2)

    return _relative_stability(
        "relative_input_stability",
        analyzer,
        x,
        target,
        noise_scale,
        samples,
        perturbation,
        epsilon,
        model,
        seed,
        inputs_moved,
    )


def relative_output_stability(
    analyzer,
    x,
    target=None,
    *,
    noise_scale: float = 0.02,
    samples: int = 10,
    perturbation: Any = None,
    epsilon: float = EPSILON_MIN,
    model: Any = None,
    seed: int = 0,
) -> np.ndarray:
    """Relative output stability (Agarwal et al. 2022), as Quantus' ``RelativeOutputStability``.

    ``ROS = max_{x'} ||(e_x - e_x') / e_x||_2 / max(||h(x) - h(x')||_2, ε_min)``
    with ``h`` the model's logits (the analyzer's explained output: the
    logits with the default ``strip_softmax=True``), over the noisy copies that
    keep the predicted class (see :func:`relative_input_stability`).

    Args:
        analyzer: An analyzer (``kx.Gradient(model)``) or a callable
            ``explain(x, target) -> attributions`` (then pass ``model``).
        x: The batch ``(B, ...)``.
        target: As in :mod:`keras_explain.targets`; ``None`` is the clean
            argmax, fixed for every noisy copy (for an analyzer).
        noise_scale: Half-width of the uniform noise ``d`` in the L-infinity
            ball (default 0.02; Quantus adds uniform noise in [0.02, 0.2]).
        samples: Perturbations per sample (Quantus' ``nr_samples``, 200 there).
        perturbation: Optional callable returning ``d`` for
            ``np.repeat(x, samples, axis=0)``; the copies are ``x + d``.
        epsilon: ``ε_min`` (default 1e-6, Quantus' ``eps_min``).
        model: The model whose outputs are ``h``: a Keras model or a callable
            ``f(x) -> logits`` (default: the analyzer's explained output;
            required for a callable explainer).
        seed: Seed of the noise.

    Returns:
        ``(B,)`` float32 values (lower is better).

    Raises:
        ValueError: As :func:`relative_input_stability`.
        TypeError: For an analyzer that is neither an Analyzer nor callable.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        >>> x = np.ones((2, 3), "float32")
        >>> kx.metrics.relative_output_stability(kx.Gradient(model), x)
        array([0., 0.], dtype=float32)
    """

    def outputs_moved(x, copies, clean_outputs, copy_outputs):
        return np.linalg.norm(copy_outputs - clean_outputs[:, None], axis=2)

    return _relative_stability(
        "relative_output_stability",
        analyzer,
        x,
        target,
        noise_scale,
        samples,
        perturbation,
        epsilon,
        model,
        seed,
        outputs_moved,
    )


def relative_representation_stability(
    analyzer,
    x,
    target=None,
    *,
    layer: LayerLike,
    noise_scale: float = 0.02,
    samples: int = 10,
    perturbation: Any = None,
    epsilon: float = EPSILON_MIN,
    model: Any = None,
    seed: int = 0,
) -> np.ndarray:
    """Relative representation stability (Agarwal et al. 2022), as Quantus' RRS.

    ``RRS = max_{x'} ||(e_x - e_x') / e_x||_2 / max(||(L_x - L_x') / L_x||_2, ε_min)``
    with ``L`` the output of ``layer`` (computed by the graph engine,
    :class:`~keras_explain.analyzers.layer_output.LayerOutputs`, in batches),
    zeros of ``L_x`` replaced by ``ε_min``, over the noisy copies that keep the
    predicted class (see :func:`relative_input_stability`). Quantus'
    ``RelativeRepresentationStability`` concatenates all hidden layers unless
    told ``layer_names``; here one layer is named.

    Args:
        analyzer: An analyzer (``kx.Gradient(model)``) or a callable
            ``explain(x, target) -> attributions`` (then pass ``model``).
        x: The batch ``(B, ...)``.
        target: As in :mod:`keras_explain.targets`; ``None`` is the clean
            argmax, fixed for every noisy copy (for an analyzer).
        noise_scale: Half-width of the uniform noise ``d`` in the L-infinity
            ball (default 0.02; Quantus adds uniform noise in [0.02, 0.2]).
        samples: Perturbations per sample (Quantus' ``nr_samples``, 200 there).
        perturbation: Optional callable returning ``d`` for
            ``np.repeat(x, samples, axis=0)``; the copies are ``x + d``.
        epsilon: ``ε_min`` (default 1e-6, Quantus' ``eps_min``).
        layer: The layer (name or object, nested models included) whose output is ``L``.
        model: The Keras model holding ``layer`` (default: the analyzer's model;
            required for a callable explainer).
        seed: Seed of the noise.

    Returns:
        ``(B,)`` float32 values (lower is better).

    Raises:
        ValueError: As :func:`relative_input_stability`, and for an unknown layer.
        TypeError: For an analyzer that is neither an Analyzer nor callable.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="logits")])
        >>> x = np.ones((2, 3), "float32")
        >>> kx.metrics.relative_representation_stability(kx.Gradient(model), x, layer="logits")
        array([0., 0.], dtype=float32)
    """
    function = "relative_representation_stability"
    keras_model = analyzer.model if model is None and isinstance(analyzer, Analyzer) else model
    if keras_model is None:
        raise ValueError(
            f"{function} reads a layer of the model, so a callable explainer needs the "
            f"model: pass model=<the Keras model>. Received: analyzer="
            f"{type(analyzer).__name__}, model=None."
        )
    representations = LayerOutputs(keras_model, [layer])

    def representations_moved(x, copies, clean_outputs, copy_outputs):
        rows = representations.rows_per_pass([x.shape[1:]], backward=False)
        values = representations.compute(np.concatenate([x, copies]), batch_size=rows)[0]
        values = _flat(values, len(values))
        clean, moved = values[: len(x)], values[len(x) :].reshape(len(x), len(copies) // len(x), -1)
        return np.linalg.norm(_relative(moved, clean[:, None], epsilon), axis=2)

    return _relative_stability(
        function,
        analyzer,
        x,
        target,
        noise_scale,
        samples,
        perturbation,
        epsilon,
        model,
        seed,
        representations_moved,
    )


# -- The columns of kx.metrics.evaluate (registered once, see kx.metrics.registry) ----------
@register_metric("avg_sensitivity", better="lower", default=False)
def _avg_sensitivity(context: MetricContext) -> np.ndarray:
    """Average sensitivity of the analyzer in the L∞ ball of radius 0.02, 10 samples."""
    return avg_sensitivity(context.analyzer, context.x, context.target, seed=context.seed)


@register_metric("local_lipschitz_estimate", better="lower", default=False)
def _local_lipschitz_estimate(context: MetricContext) -> np.ndarray:
    """Local Lipschitz estimate, Gaussian noise of σ = 0.1, 10 samples."""
    c = context
    return local_lipschitz_estimate(c.analyzer, c.x, c.target, seed=c.seed)


@register_metric("continuity", better="lower", default=False)
def _continuity(context: MetricContext) -> np.ndarray:
    """Continuity under 28 horizontal translations padded with 0 (fewer on narrow images)."""
    x = np.asarray(context.x)
    steps = min(28, 2 * x.shape[2] + 1) if x.ndim == 4 else 28  # others: continuity refuses
    return continuity(context.analyzer, x, context.target, steps=steps)


@register_metric("relative_input_stability", better="lower", default=False)
def _relative_input_stability(context: MetricContext) -> np.ndarray:
    """Relative input stability, uniform noise of radius 0.02, 10 samples."""
    c = context
    return relative_input_stability(c.analyzer, c.x, c.target, seed=c.seed)


@register_metric("relative_output_stability", better="lower", default=False)
def _relative_output_stability(context: MetricContext) -> np.ndarray:
    """Relative output stability (logits), uniform noise of radius 0.02, 10 samples."""
    c = context
    return relative_output_stability(c.analyzer, c.x, c.target, seed=c.seed)
