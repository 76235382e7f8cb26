"""What every metric shares: the batched evaluator, attribution shapes, baselines, curves.

Every perturbed copy a metric needs goes through the model via
:class:`~keras_explain.analyzers.perturbation.engine.Perturbation`, the engine of
the model-agnostic analyzers: a metric describes its copies as a :class:`Job`
(``make(x, params, start, size) -> (size, B, ...)`` copies, built inside the
compiled function from per-sample ``params``), and :func:`run_job` runs it like an
analyzer runs its perturbations: the target is parsed and resolved exactly as
``analyze`` does it (``None`` is the argmax of the clean input, then fixed), the
copies go through the model in passes of :func:`keras_explain.config.rows_per_pass`
rows inside one compiled ``tf.while_loop``, and a plain callable ``f(x) -> scores``
receives numpy arrays of many rows at a time.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from keras_explain import _batching, _validate
from keras_explain._spatial import gaussian_blur, spatial_axes
from keras_explain.analyzers.base import CONSTANT_INPUT_NAMES
from keras_explain.analyzers.perturbation.engine import Perturbation

#: Names a ``baseline`` may take besides a number or an array.
BASELINE_NAMES = ("blur", "mean")
#: Gaussian σ (pixels) of the ``"blur"`` baseline (Petsiuk et al. 2018 blur with σ = 5).
BLUR_SIGMA = 5.0


@dataclasses.dataclass(frozen=True)
class Job:
    """The perturbed copies of one metric call.

    Attributes:
        count: Number of copies of each sample.
        make: ``make(x, params, start, size)`` returns copies ``start ..
            start + size - 1`` as a ``(size, B, ...)`` tensor (inside the
            compiled function; ``params`` are the arrays below as tensors).
        params: Per-call arrays the copies are made from (masks, ranks, baselines).
    """

    count: int
    make: Callable[..., tf.Tensor]
    params: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


class MetricEvaluator(Perturbation):
    """The engine driven by a :class:`Job` instead of an explanation method.

    ``analyze(x, target)`` returns ``(B, 2 + count)`` float32 columns: the
    resolved target index (-1 for ``"all"`` and callable targets), ``f_t(x)``,
    then ``f_t`` of each copy.
    """

    def __init__(self, model, job: Job, *, probabilities: bool = False, **kwargs):
        self.job = job
        self.probabilities = probabilities
        super().__init__(model, verbose=kwargs.pop("verbose", "auto"), **kwargs)

    def call_params(self) -> dict[str, Any]:
        """The job's arrays, passed to the compiled function as tensors."""
        return self.job.params

    def progress(self) -> _batching.Progress:
        """The progress bar, labelled ``kx.metrics``."""
        return _batching.Progress(self.verbose, "kx.metrics")

    def scores(self, outputs, target, indices):
        """``f_t`` of the outputs, of their softmax with ``probabilities``."""
        if self.probabilities:
            flat = tf.reshape(outputs, (tf.shape(outputs)[0], -1))
            outputs = tf.nn.softmax(tf.cast(flat, tf.float32), axis=-1)
        return super().scores(outputs, target, indices)

    def explain_batch(self, inputs, target, indices, seed, params):
        """The ``(B, 2 + count)`` columns: target index, ``f_t(x)``, ``f_t`` of each copy."""
        x = self.single_input(inputs)
        target, indices, clean = self.clean_scores(x, target, indices)
        columns = [
            tf.fill(tf.shape(clean), -1.0) if indices is None else tf.cast(indices, tf.float32),
            clean,
        ]
        if self.job.count:

            def make(start, size):
                return self.job.make(x, params, start, size), None

            scores = self.evaluate(x, make, self.job.count, target, indices)
            return [tf.concat([tf.stack(columns, axis=1), tf.transpose(scores)], axis=1)]
        return [tf.stack(columns, axis=1)]


#: Evaluators kept for reuse, most recent last: a metric called again on the same
#: model (another batch, other attributions) reuses the compiled function.
_EVALUATORS: collections.OrderedDict = collections.OrderedDict()
_KEEP = 8


def run_job(model, x: np.ndarray, target: Any, job: Job, **kwargs) -> tuple:
    """Run ``job`` through ``model``; returns ``(indices, clean, scores)``.

    The evaluator, and so its compiled function, is reused for the same model,
    ``make`` function, copy count and options (the last :data:`_KEEP` of them);
    only ``job.params`` change between such calls.

    Args:
        model: A Keras model or a callable ``f(x) -> scores``.
        x: The batch.
        target: As in :mod:`keras_explain.targets`.
        job: The copies; ``job.make`` should be a module-level function so that
            calls can share a trace.
        **kwargs: ``probabilities``, and analyzer options (``output_index``,
            ``output_layer``, ``strip_softmax``, ``verbose``).

    Returns:
        ``indices`` (B,) int64 (-1 when the target is not an index),
        ``clean`` (B,) float32 ``f_t(x)`` and ``scores`` (B, count) float32.
    """
    key = (id(model), job.make, job.count, tuple(sorted(kwargs.items(), key=lambda i: i[0])))
    try:
        hash(key)
    except TypeError:  # an unhashable option (an output_layer object): no reuse
        key = None
    evaluator = _EVALUATORS.get(key) if key is not None else None
    if evaluator is None or evaluator.model is not model:
        evaluator = MetricEvaluator(model, job, **kwargs)
        if key is not None:
            _EVALUATORS[key] = evaluator
            while len(_EVALUATORS) > _KEEP:
                _EVALUATORS.popitem(last=False)
    else:
        evaluator.job = job
        _EVALUATORS.move_to_end(key)
    columns = evaluator.analyze(x, target)
    if isinstance(columns, Mapping):  # a dict x: the columns are the feature input's
        columns = columns[evaluator.input_names[evaluator.feature_input]]
    indices = columns[:, 0].astype(np.int64)
    if callable(target) or (isinstance(target, str) and target == "all"):
        indices = np.full_like(indices, -1)  # a sum or a function of outputs: no index
    return indices, columns[:, 1], columns[:, 2:]


def fixed_target(analyzer: Any, x: np.ndarray, target: Any) -> Any:
    """``target=None`` resolved to the clean argmax of an analyzer's explained output.

    Metrics that explain many inputs derived from ``x`` (noisy copies, randomized
    models) use it so that every explanation is of the same output
    (:meth:`Analyzer.resolve_target
    <keras_explain.analyzers.base.Analyzer.resolve_target>`). Other targets, and
    explainers that are plain callables, are returned unchanged.
    """
    from keras_explain.analyzers.base import Analyzer

    if not isinstance(analyzer, Analyzer):
        return target
    return analyzer.resolve_target(x, target)


def explainer(analyzer: Any, function: str) -> Callable[[np.ndarray, Any], Any]:
    """``explain(x, target)`` of an Analyzer or a callable, for metrics that re-explain.

    An :class:`~keras_explain.analyzers.base.Analyzer` explains all the rows it
    is given in one ``analyze`` call, in chunks of its ``rows_per_pass`` (the
    noisy or shifted copies of every sample at once); a callable is returned
    unchanged.

    Raises:
        TypeError: For an object that is neither an Analyzer nor callable.
    """
    from keras_explain.analyzers.base import Analyzer

    if isinstance(analyzer, Analyzer):

        def explain(inputs, target):
            arrays = inputs.values() if isinstance(inputs, Mapping) else [inputs]
            rows = analyzer.rows_per_pass([a.shape[1:] for a in arrays], backward=True)
            return analyzer.analyze(inputs, target, batch_size=max(rows, 1))

        return explain
    if callable(analyzer):
        return analyzer
    raise TypeError(
        f"{function} needs an analyzer (e.g. kx.Gradient(model)) or a callable "
        f"explain(x, target) -> attributions. Received: {type(analyzer).__name__}."
    )


def repeated_target(target: Any, samples: int) -> Any:
    """The target of ``np.repeat(x, samples, axis=0)``: per-sample indices repeated.

    Other targets (an int, a name, a callable, None) apply to any rows unchanged.
    """
    if target is None or isinstance(target, str) or callable(target):
        return target
    indices = np.asarray(target)
    return np.repeat(indices, samples, axis=0) if indices.ndim == 1 else target


def noisy_copies(
    x: np.ndarray,
    samples: Any,
    noise_scale: Any,
    perturbation: Any,
    seed: int,
    function: str,
    *,
    gaussian: bool = False,
) -> tuple[int, np.ndarray]:
    """``(samples, copies)``: ``samples`` noisy copies ``x + d`` of each sample, sample-major.

    Args:
        x: The float32 batch ``(B, ...)``.
        samples: Copies per sample (a positive int).
        noise_scale: Half-width of the uniform noise ``d`` (or its σ with
            ``gaussian``), drawn from ``np.random.default_rng(seed)``.
        perturbation: None, or a callable that receives ``np.repeat(x, samples,
            axis=0)`` and returns ``d`` of the same shape (then ``noise_scale``
            and ``seed`` are unused).
        seed: Seed of the noise.
        function: The metric named in error messages.
        gaussian: Gaussian instead of uniform noise.

    Returns:
        ``samples`` as an int and the float32 copies ``(B * samples, ...)``: copy
        ``k`` of sample ``b`` is row ``b * samples + k``.

    Raises:
        ValueError: For a non-positive ``samples`` or ``noise_scale``, or a
            perturbation of the wrong shape.
    """
    samples = checked(function, _validate.positive_int, samples, "samples")
    repeated = np.repeat(x, samples, axis=0)
    if perturbation is None:
        scale = checked(function, _validate.positive, noise_scale, "noise_scale")
        rng = np.random.default_rng(seed)
        if gaussian:
            delta = rng.normal(0.0, scale, repeated.shape).astype(np.float32)
        else:
            delta = rng.uniform(-scale, scale, repeated.shape).astype(np.float32)
    else:
        delta = np.asarray(perturbation(repeated), dtype=np.float32)
        if delta.shape != repeated.shape:
            raise ValueError(
                f"{function}: the perturbation callable must return d shaped like its input "
                f"{repeated.shape} (x repeated {samples} times, sample-major). Received: "
                f"shape {delta.shape}."
            )
    return samples, repeated + delta


def explain_copies(
    analyzer: Any, x: np.ndarray, copies: np.ndarray, target: Any, function: str
) -> tuple[np.ndarray, np.ndarray]:
    """The explanations of ``x`` and of its copies, flattened, float64.

    ``target`` is fixed on the clean input (:func:`fixed_target`) and repeated
    for the copies (:func:`repeated_target`); the copies of all samples are
    explained in one call (:func:`explainer`).

    Args:
        analyzer: An Analyzer or a callable ``explain(x, target)``.
        x: The batch ``(B, ...)``.
        copies: ``(B * samples, ...)`` copies, sample-major.
        target: As in :mod:`keras_explain.targets`.
        function: The metric named in error messages.

    Returns:
        ``clean`` ``(B, n)`` and ``copies`` ``(B, samples, n)`` explanations.

    Raises:
        TypeError: For an analyzer that is neither an Analyzer nor callable.
    """
    explain = explainer(analyzer, function)
    samples = len(copies) // len(x)
    target = fixed_target(analyzer, x, target)
    clean = np.asarray(explain(x, target), np.float64).reshape(len(x), -1)
    many = np.asarray(explain(copies, repeated_target(target, samples)), np.float64)
    return clean, many.reshape(len(x), samples, -1)


def relative_changes(clean: np.ndarray, noisy: np.ndarray) -> np.ndarray:
    """``||e(x_k) - e(x)|| / ||e(x)||`` per sample and copy, ``(B, samples)``.

    ``clean`` ``(B, n)`` and ``noisy`` ``(B, samples, n)`` as
    :func:`explain_copies` returns them; a zero ``||e(x)||`` divides by 1 (as
    Captum), so an explanation that stays zero scores 0.
    """
    norms = np.linalg.norm(clean, axis=1)
    norms = np.where(norms == 0, 1.0, norms)
    return np.linalg.norm(noisy - clean[:, None], axis=2) / norms[:, None]


def feature_input(x: Any, attributions: Any, function: str) -> tuple[Any, Any, Any]:
    """``(inputs, x, attributions)`` of the one feature input of a dict ``x``.

    A model whose other inputs are a padding mask or segment ids (named like them,
    as the analyzers' ``constant_inputs`` default) is scored on the whole dict
    ``inputs`` with only the feature input perturbed; ``x`` and ``attributions``
    are then that input's batch and attributions. For an array ``x``, ``inputs``
    is None and the others are returned unchanged.

    Raises:
        ValueError: For a dict without exactly one input not named like a mask,
            segment ids or positions.
    """
    key = feature_key(x, function)
    if key is None:
        return None, x, attributions
    if isinstance(attributions, Mapping):
        attributions = attributions[key]
    return dict(x), x[key], attributions


def feature_key(x: Any, function: str) -> Any:
    """The key of a dict ``x``'s one feature input (see :func:`feature_input`), or None."""
    if not isinstance(x, Mapping):
        return None
    features = [key for key in x if not CONSTANT_INPUT_NAMES.search(str(key))]
    if len(features) != 1:
        raise ValueError(
            f"{function}: a dict x needs exactly one feature input beside the masks, "
            f"segment ids and positions (named like them). Received: keys {sorted(x)}, "
            f"features {features}."
        )
    return features[0]


def feature_attributions(attributions: Any, function: str) -> Any:
    """The feature input's entry of dict attributions (see :func:`feature_input`), else as is.

    What ``analyze`` returns for a dict input (token ids, padding mask) is a dict
    with zeros for the constant inputs; metrics of the attributions alone read the
    feature input's.

    Raises:
        ValueError: As :func:`feature_key`.
    """
    key = feature_key(attributions, function)
    return attributions if key is None else attributions[key]


def as_batch(x: Any, function: str) -> np.ndarray:
    """``x`` as a float32 numpy batch of rank >= 2.

    Raises:
        ValueError: For a rank below 2, or a dict (several inputs).
    """
    if isinstance(x, Mapping):
        raise ValueError(
            f"{function} takes one input, an array. Received: a dict with keys {sorted(x)}. "
            "Dict inputs with masks or segment ids are taken by the metrics that remove or "
            "compare features: deletion, insertion, pixel_flipping, faithfulness_correlation, "
            "faithfulness_estimate, monotonicity, sensitivity_n, completeness, non_sensitivity, "
            "consistency, sufficiency, randomization, efficient_mprt and random_logit."
        )
    array = np.asarray(x.numpy() if isinstance(x, tf.Tensor) else x)
    if array.ndim < 2:
        raise ValueError(
            f"{function} needs a batch x of shape (batch, features...). Received: x of "
            f"shape {array.shape}. Add the batch axis, e.g. x[None]."
        )
    return array.astype(np.float32, copy=False)


def continuous_batch(x: Any, function: str, what: str) -> np.ndarray:
    """``x`` as a float32 batch (:func:`as_batch`); integer inputs (token ids) are refused.

    Args:
        what: What the metric does to inputs, for the error message (e.g.
            ``"perturbs inputs with small continuous changes"``).

    Raises:
        ValueError: For integer or boolean inputs, and as :func:`as_batch`.
    """
    features = feature_input(x, None, function)[1]  # a dict's token ids are named
    if np.asarray(features).dtype.kind in "iub":
        raise ValueError(
            f"{function} {what}; it is not defined for integer inputs (token ids). "
            f"Received: x of dtype {np.asarray(features).dtype}. Pass float features, or "
            "explain the embeddings instead of the token ids."
        )
    return as_batch(x, function)


def attributions_like(attributions: Any, x: np.ndarray, function: str) -> np.ndarray:
    """Attributions broadcast to ``x``'s shape: CAM maps ``(B, H, W)`` go over channels.

    Raises:
        ValueError: For any other shape.
    """
    array = np.asarray(attributions, dtype=np.float32)
    if array.shape == x.shape:
        return array
    if x.ndim >= 3 and array.shape == x.shape[:-1]:
        return np.broadcast_to(array[..., None], x.shape)
    maps = f" or maps shaped {x.shape[:-1]} (CAM)" if x.ndim >= 3 else ""
    raise ValueError(
        f"{function}: attributions must be shaped like x {x.shape}{maps}. Received: "
        f"attributions of shape {array.shape}. Pass the output of analyze(x) for this x."
    )


def pixel_maps(attributions: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Attributions summed over channels: one value per feature ``(B, *spatial)``."""
    return attributions if x.ndim == 2 else attributions.sum(axis=-1)


def spatial_shape(x: np.ndarray) -> tuple[int, ...]:
    """The shape of one sample's features: every axis but the batch and channel axes."""
    return tuple(x.shape[a] for a in spatial_axes(x.ndim))


def masks_like(masks: Any, x_or_maps_shape: tuple, function: str) -> np.ndarray:
    """Ground-truth masks as a boolean array of the given ``(B, *spatial)`` shape.

    Raises:
        ValueError: For another shape.
    """
    array = np.asarray(masks)
    if array.shape != tuple(x_or_maps_shape):
        raise ValueError(
            f"{function}: masks must have shape {tuple(x_or_maps_shape)}, one boolean map "
            f"per sample at the attributions' resolution. Received: masks of shape "
            f"{array.shape}."
        )
    return array.astype(bool)


def baseline_of(baseline: Any, x: np.ndarray, function: str) -> np.ndarray:
    """A baseline as an array shaped like ``x``.

    Args:
        baseline: A number, ``"blur"`` (Gaussian blur of x, σ = :data:`BLUR_SIGMA`
            pixels), ``"mean"`` (each sample's per-channel mean over its
            features), an array shaped like one sample or like the batch.

    Raises:
        ValueError: For an unknown name or an array of the wrong shape.
    """
    if isinstance(baseline, str):
        if baseline == "blur":
            return np.asarray(gaussian_blur(tf.constant(x), BLUR_SIGMA))
        if baseline == "mean":
            axes = tuple(spatial_axes(x.ndim))
            return np.broadcast_to(x.mean(axis=axes, keepdims=True), x.shape).copy()
        raise ValueError(
            f"{function}: unknown baseline name. Received: baseline={baseline!r}. Use a "
            f"number, one of {BASELINE_NAMES}, or an array shaped like one sample or the batch."
        )
    try:
        value = _validate.baseline(baseline, x.shape[1:])
    except ValueError as error:
        raise ValueError(f"{function}: {error}") from None
    if isinstance(value, float):
        return np.full(x.shape, value, np.float32)
    if value.ndim == x.ndim and value.shape[0] != x.shape[0]:
        raise ValueError(
            f"{function}: a batch-shaped baseline needs one row per sample, shape {x.shape}. "
            f"Received: baseline of shape {value.shape}."
        )
    return np.broadcast_to(value, x.shape).astype(np.float32)


@tf.function(jit_compile=True, autograph=False, reduce_retracing=True)
def fused_where(condition: tf.Tensor, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """``tf.where(condition, x, y)`` with broadcasting, compiled by XLA into one loop.

    The perturbed copies of a metric are as large as every input the model sees:
    fused, their selection and broadcast write each value once (7 ms instead of
    45 ms for 2,976 copies of 64x64x3 images on a 2-core CPU), and the values are
    exactly ``x`` or ``y``.
    """
    return tf.where(condition, x, y)


def keep_copies(x: tf.Tensor, baseline: tf.Tensor, keep: tf.Tensor) -> tf.Tensor:
    """Copies ``(n, B, ...)`` that are exactly x where ``keep`` (``(n, B, *spatial)``) holds.

    Elsewhere they are the baseline; the mask spans all channels of a feature.
    """
    keep = tf.cast(keep, tf.bool)
    if x.shape.rank > 2:
        keep = keep[..., None]
    return fused_where(keep, x[None], baseline[None])


@dataclasses.dataclass(frozen=True)
class Curve:
    """A perturbation curve per sample: deletion, insertion or pixel flipping.

    Attributes:
        scores: ``(B, steps + 1)`` scores ``f_t`` of the perturbed inputs, from
            the clean input (deletion, pixel flipping) or the baseline
            (insertion) to the last step.
        fractions: ``(steps + 1,)`` the fraction of the features perturbed at
            each step (or of the steps taken, for pixel flipping), from 0 to 1.
    """

    scores: np.ndarray
    fractions: np.ndarray

    @property
    def auc(self) -> np.ndarray:
        """``(B,)`` area under each curve: trapezoid rule over ``fractions`` in [0, 1]."""
        from scipy.integrate import trapezoid

        return trapezoid(self.scores, self.fractions, axis=1).astype(np.float32)

    @property
    def aopc(self) -> np.ndarray:
        """``(B,)`` area over the perturbation curve (Samek et al. 2017).

        ``AOPC = 1 / (L + 1) * sum_{k=0..L} (f(x) - f(x^(k)))``, ``L`` steps,
        ``x^(k)`` the input after ``k`` steps.
        """
        return np.mean(self.scores[:, :1] - self.scores, axis=1).astype(np.float32)


def ranks(values: np.ndarray, descending: bool = True) -> np.ndarray:
    """Each feature's position ``(B, *spatial)`` in its sample's order by ``values``.

    Stable: ties keep the row-major order of the features.
    """
    flat = values.reshape(len(values), -1)
    order = np.argsort(-flat if descending else flat, axis=1, kind="stable")
    position = np.empty_like(order)
    np.put_along_axis(position, order, np.arange(flat.shape[1])[None], axis=1)
    return position.reshape(values.shape).astype(np.int32)


def checked(function: str, check: Callable, *args: Any) -> Any:
    """``check(*args)`` from :mod:`keras_explain._validate`, its error prefixed by ``function``."""
    try:
        return check(*args)
    except ValueError as error:
        raise ValueError(f"{function}: {error}") from None


def positive_steps(steps: Any, features: int, function: str, what: str = "features") -> int:
    """``steps`` as an int in ``[1, features]``.

    Raises:
        ValueError: Otherwise.
    """
    steps = checked(function, _validate.positive_int, steps, "steps")
    if steps > features:
        raise ValueError(
            f"{function}: steps must be at most the number of {what} ({features}) of these "
            f"inputs. Received: steps={steps}. Pass steps <= {features}."
        )
    return steps
