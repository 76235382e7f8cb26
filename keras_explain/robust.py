"""``kx.robust``: adversarial attacks, the smallest attack that flips a prediction, fragility.

The counterpart of Captum's ``captum.robust`` (commit faac087): FGSM
(``captum/robust/_core/fgsm.py``), PGD (``pgd.py``) and ``MinParamPerturbation``
(``metrics/min_param_perturbation.py``), so one can ask whether an explanation
survives an attack (Ghorbani, Abid & Zou 2019, "Interpretation of Neural Networks is
Fragile", AAAI, arXiv:1710.10547).

- :func:`fgsm`: one step ``x' = x + ε·d(∇x L)`` (Goodfellow et al. 2015, arXiv:1412.6572);
- :func:`pgd`: ``steps`` such steps of size ``step_size``, each projected back onto the
  ball of ``radius`` around ``x`` (Madry et al. 2018, arXiv:1706.06083);
- :func:`minimal_perturbation`: per sample, the smallest parameter on a grid whose
  attack changes the prediction (linear or binary search, as ``MinParamPerturbation``);
- :func:`explanation_fragility`: top-k intersection and Spearman rank correlation of
  the explanations of ``x`` and of an attacked ``x'`` (Ghorbani et al.'s measures).

``d`` is the steepest-ascent direction of the norm: ``sign(g)`` for ``"linf"``,
``g / ‖g‖₂`` per sample for ``"l2"``. ``L`` is by default the cross-entropy of the
logits for ``target`` (a final softmax or sigmoid is bypassed, as by every analyzer's
``strip_softmax``): on a model ending in a softmax it equals Captum's default loss
``-log(output[target])`` (fgsm.py:179-183). Untargeted attacks increase the loss of
the true class, targeted ones (``targeted=True``) decrease the loss of ``target``.

An attack runs as an analyzer (:class:`~keras_explain.analyzers.base.Analyzer`): the
input checks, ``target`` (:mod:`keras_explain.targets`: None is the clean argmax, an
int, a ``(B,)`` int array, or a callable score, whose negative is the loss), one
compiled function per input shape (the parameters are its tensor arguments) and
per-sample stateless seeds (:mod:`keras_explain.random`) are the library's own. The
model is never modified and no global random state is touched.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import keras
import numpy as np
import tensorflow as tf

from keras_explain import _validate, random
from keras_explain.analyzers.base import Analyzer
from keras_explain.targets import parse_target

NORMS = ("linf", "l2")
SEARCH_MODES = ("linear", "binary")
ATTACKS = ("fgsm", "pgd")


class _Attack(Analyzer):
    """PGD (FGSM being one step from ``x`` without random start) as an analyzer's batch.

    ``epsilon``-like parameters are per-sample ``(B,)`` tensors passed at every call
    (:meth:`call_params`), so one trace serves every radius, step size and step count.
    """

    def __init__(
        self, model, *, owner, norm, targeted, loss, value_range, random_start, seed, strip_softmax
    ):
        super().__init__(model, strip_softmax=strip_softmax, verbose=0)
        self.owner = owner
        self.norm = _validate.one_of(norm, "norm", NORMS)
        self.targeted = _validate.boolean(targeted, "targeted", owner)
        self.random_start = _validate.boolean(random_start, "random_start", owner)
        if loss is not None and not callable(loss):
            raise TypeError(
                f"{owner}: loss must be a callable loss(outputs, labels) -> (batch,) or None "
                f"(cross-entropy of the logits). Received: loss={loss!r}."
            )
        self.loss = loss
        self.value_range = _value_range(value_range, owner)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer)):
            raise TypeError(f"{owner}: seed must be an int or None. Received: seed={seed!r}.")
        self.seed = None if seed is None else int(seed)
        self._params: dict[str, Any] = {}

    def call_params(self) -> dict[str, Any]:
        return self._params

    def standardize(self, x) -> np.ndarray:
        """``x`` checked by the analyzers' input rules: one float array."""
        inputs = self._standardize(x)
        if len(inputs) != 1 or not tf.as_dtype(inputs[0].dtype).is_floating:
            raise ValueError(
                f"{self.owner} attacks models with one float input. Received: {len(inputs)} "
                f"input(s) of dtype {[tf.as_dtype(item.dtype).name for item in inputs]}."
            )
        return np.asarray(inputs[0])

    def output_size(self, x: np.ndarray) -> int | None:
        """Values per sample of the explained output."""
        return self._output_size([x])

    def run(self, x, target, radius, step_size, steps, names=("radius", "step_size")):
        """The attacked ``x``, float32; ``names`` spell the two parameters in messages."""
        inputs = [self.standardize(x)]
        size = int(inputs[0].shape[0])
        if isinstance(target, str) or (self.loss is not None and callable(target)):
            raise ValueError(
                f"{self.owner}: target must be None (the clean argmax), an int, an int array of "
                "shape (batch,), or a callable score (without loss=). "
                f"Received: target={target!r}."
            )
        self._params = {
            "radius": _per_sample(radius, names[0], size, self.owner),
            "step_size": _per_sample(step_size, names[1], size, self.owner),
            "steps": np.int32(steps),
        }
        return self.analyze(inputs[0], target)

    def explain_batch(self, inputs, target, indices, seed, params):
        x = inputs[0]
        target, indices, _ = self.fixed_target(inputs, target, indices)
        shape = (-1,) + (1,) * (len(x.shape) - 1)
        radius = tf.reshape(tf.cast(params["radius"], x.dtype), shape)
        step_size = tf.reshape(tf.cast(params["step_size"], x.dtype), shape)
        sign = -1.0 if self.targeted else 1.0  # fgsm.py:212: targeted attacks descend

        def loss_gradient(point):
            with tf.GradientTape() as tape:
                tape.watch(point)
                outputs = self.forward([point])[0]
                if target.mode == "callable":
                    losses = -self.scores(outputs, target, indices)
                elif self.loss is not None:
                    losses = self.loss(outputs, indices)
                else:
                    logits = tf.reshape(outputs, (tf.shape(outputs)[0], -1))
                    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(
                        indices, tf.cast(logits, tf.float32)
                    )
                total = tf.reduce_sum(losses)  # per-sample losses: the gradients stay per sample
            gradient = tape.gradient(total, point)
            return tf.zeros_like(point) if gradient is None else gradient

        def body(step, point):
            direction = _steepest(loss_gradient(point), self.norm)
            point = _project(point + sign * step_size * direction, x, radius, self.norm)
            return step + 1, self._bounded(point)

        start = x
        if self.random_start:  # pgd.py:180-188, 211-234, from per-sample stateless seeds
            start = self._bounded(x + radius * _ball_point(x, self.norm, seed))
        _, point = tf.while_loop(
            lambda step, point: step < params["steps"], body, (tf.constant(0), start)
        )
        return [point]

    def _bounded(self, point):
        if self.value_range is None:
            return point
        low, high = self.value_range
        return tf.clip_by_value(point, tf.cast(low, point.dtype), tf.cast(high, point.dtype))


def _steepest(gradient: tf.Tensor, norm: str) -> tf.Tensor:
    """The unit step of steepest ascent: sign(g) (L∞) or g/‖g‖₂ per sample (L2; 0 for g=0)."""
    if norm == "linf":
        return tf.sign(gradient)
    length = tf.norm(tf.reshape(gradient, (tf.shape(gradient)[0], -1)), axis=1)
    length = tf.reshape(length, (-1,) + (1,) * (len(gradient.shape) - 1))
    return tf.math.divide_no_nan(gradient, length)


def _project(point: tf.Tensor, center: tf.Tensor, radius: tf.Tensor, norm: str) -> tf.Tensor:
    """The point of the ball ``‖point - center‖ <= radius`` nearest ``point`` (pgd.py:161-168)."""
    delta = point - center
    if norm == "linf":
        return center + tf.clip_by_value(delta, -radius, radius)
    length = tf.norm(tf.reshape(delta, (tf.shape(delta)[0], -1)), axis=1)
    length = tf.reshape(length, tf.shape(radius))
    return center + delta * tf.minimum(1.0, tf.math.divide_no_nan(radius, length))


def _ball_point(x: tf.Tensor, norm: str, seed: tf.Tensor) -> tf.Tensor:
    """A uniform point of the unit ball per sample (pgd.py:218-232), from per-row seeds."""
    seeds = random.row_seeds(seed, tf.shape(x)[0], stream=1)
    shape = tf.shape(x)[1:]
    if norm == "linf":
        return tf.map_fn(
            lambda row: tf.random.stateless_uniform(shape, row, -1.0, 1.0, dtype=x.dtype),
            seeds,
            fn_output_signature=x.dtype,
        )
    normal = tf.map_fn(
        lambda row: tf.random.stateless_normal(shape, row, dtype=x.dtype),
        seeds,
        fn_output_signature=x.dtype,
    )
    dims = tf.cast(tf.reduce_prod(shape), x.dtype)
    radius = tf.map_fn(  # r = U^(1/d): uniform in volume
        lambda row: tf.random.stateless_uniform((), row, dtype=x.dtype),
        random.row_seeds(seed, tf.shape(x)[0], stream=2),
        fn_output_signature=x.dtype,
    ) ** (1.0 / dims)
    return _steepest(normal, "l2") * tf.reshape(radius, (-1,) + (1,) * (len(x.shape) - 1))


def _value_range(value: Any, owner: str) -> tuple[float, float] | None:
    if value is None:
        return None
    try:
        low, high = (float(bound) for bound in value)
    except (TypeError, ValueError):
        low, high = math.nan, math.nan
    if not low < high:
        raise ValueError(
            f"{owner}: value_range must be None or (low, high) with low < high, the range of "
            f"valid input values, e.g. (0.0, 1.0). Received: value_range={value!r}."
        )
    return low, high


def _per_sample(value: Any, name: str, size: int, owner: str) -> np.ndarray:
    """A parameter as a float32 ``(size,)`` array: a number >= 0 or one per sample."""
    array = np.asarray(value, dtype=np.float64) if _numeric(value) else None
    if array is None or array.ndim > 1 or (array.ndim == 1 and len(array) != size):
        raise ValueError(
            f"{owner}: {name} must be a number >= 0 or an array of shape ({size},), one per "
            f"sample. Received: {name}={value!r}."
        )
    if not (np.isfinite(array).all() and (array >= 0).all()):
        raise ValueError(f"{owner}: {name} must be finite and >= 0. Received: {name}={value!r}.")
    return np.broadcast_to(array, (size,)).astype(np.float32)


def _numeric(value: Any) -> bool:
    try:
        return np.asarray(value).dtype.kind in "iuf"
    except (TypeError, ValueError):
        return False


def fgsm(
    model: keras.Model,
    x: Any,
    target: Any = None,
    *,
    epsilon: float | np.ndarray,
    norm: str = "linf",
    targeted: bool = False,
    loss: Callable | None = None,
    value_range: tuple[float, float] | None = None,
    strip_softmax: bool = True,
) -> np.ndarray:
    """The fast gradient sign method: ``x' = x ± ε·sign(∇x L)`` (``"l2"``: ``ε·g/‖g‖₂``).

    Goodfellow, Shlens & Szegedy 2015, arXiv:1412.6572; Captum's ``FGSM.perturb``
    (``captum/robust/_core/fgsm.py:84-193``). Unlike Captum, gradient entries below
    1e-6 are not treated as zero (fgsm.py:81, 212-219): only exact zeros give no step.

    Args:
        model: A Keras model with one float input.
        x: The inputs, ``(B, ...)``.
        target: The class whose loss is increased (untargeted) or decreased
            (``targeted=True``): None (the clean argmax), an int, an int array
            ``(B,)``, or a callable ``score(outputs) -> (B,)`` whose negative is the loss.
        epsilon: The step, a number >= 0 or one per sample ``(B,)``.
        norm: ``"linf"`` (sign of the gradient) or ``"l2"`` (the gradient scaled to
            length 1 per sample).
        targeted: Move towards ``target`` instead of away from it.
        loss: ``loss(outputs, labels) -> (B,)`` on the explained output (the logits
            with ``strip_softmax``) and the ``(B,)`` int labels; default: softmax
            cross-entropy of the flattened output.
        value_range: ``(low, high)``: the result is clipped to it (e.g. ``(0, 1)``).
        strip_softmax: Compute the loss on the logits before a final softmax or
            sigmoid (default True), as the analyzers do.

    Returns:
        float32 array shaped like ``x``.

    Raises:
        ValueError: For a negative or misshaped ``epsilon``, an unknown ``norm``, a
            bad ``value_range`` or ``target``, or a model with several or integer inputs.
        TypeError: For a non-callable ``loss`` or a non-bool ``targeted``.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, use_bias=False)])
        >>> model.set_weights([np.array([[1.0, -1.0], [-2.0, 2.0]])])
        >>> print(kx.robust.fgsm(model, np.array([[0.5, 0.0]]), 0, epsilon=0.1))
        [[0.4 0.1]]
    """
    attack = _Attack(
        model,
        owner="fgsm",
        norm=norm,
        targeted=targeted,
        loss=loss,
        value_range=value_range,
        random_start=False,
        seed=None,
        strip_softmax=strip_softmax,
    )
    return attack.run(x, target, epsilon, epsilon, 1, names=("epsilon", "epsilon"))


def pgd(
    model: keras.Model,
    x: Any,
    target: Any = None,
    *,
    radius: float | np.ndarray,
    step_size: float | np.ndarray,
    steps: int,
    norm: str = "linf",
    targeted: bool = False,
    random_start: bool = False,
    seed: int | None = None,
    loss: Callable | None = None,
    value_range: tuple[float, float] | None = None,
    strip_softmax: bool = True,
) -> np.ndarray:
    """Projected gradient descent: ``steps`` FGSM steps, each projected onto the ball.

    ``x_{t+1} = clip(Π(x_t ± step_size·d(∇L(x_t))))`` with ``Π`` the projection onto
    ``{‖x' - x‖ <= radius}`` (L∞: clipping; L2: rescaling ``x' - x``) and ``clip`` to
    ``value_range`` (Madry et al. 2018, arXiv:1706.06083; Captum's ``PGD.perturb``,
    ``captum/robust/_core/pgd.py:75-209``). All steps run in one compiled
    ``tf.while_loop``. Captum takes sign steps for L2 too (pgd.py:189-201); here an L2
    step follows ``g/‖g‖₂``, the steepest ascent of that norm.

    Args:
        model: A Keras model with one float input.
        x: The inputs, ``(B, ...)``.
        target: As for :func:`fgsm`.
        radius: Of the ball around ``x``, a number >= 0 or one per sample.
        step_size: Of each step, a number >= 0 or one per sample.
        steps: Number of steps (an int >= 1).
        norm: ``"linf"`` or ``"l2"``.
        targeted: Move towards ``target`` instead of away from it.
        random_start: Start from a uniform point of the ball (pgd.py:180-188), drawn
            per sample from ``seed`` (the same whatever the batch's other rows).
        seed: The seed of the random start; None draws a fresh one (no global
            random state is read or changed).
        loss: As for :func:`fgsm`.
        value_range: ``(low, high)`` the iterates are clipped to.
        strip_softmax: As for :func:`fgsm`.

    Returns:
        float32 array shaped like ``x``.

    Raises:
        ValueError: As :func:`fgsm`, and for ``steps`` that is not a positive int.
        TypeError: As :func:`fgsm`, and for a seed that is not an int.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, use_bias=False)])
        >>> model.set_weights([np.array([[1.0, -1.0], [-2.0, 2.0]])])
        >>> x = np.array([[0.5, 0.0]])
        >>> kx.robust.pgd(model, x, 0, radius=0.25, step_size=0.1, steps=5).round(3).tolist()
        [[0.25, 0.25]]
    """
    steps = _validate.positive_int(steps, "steps")
    attack = _Attack(
        model,
        owner="pgd",
        norm=norm,
        targeted=targeted,
        loss=loss,
        value_range=value_range,
        random_start=random_start,
        seed=seed,
        strip_softmax=strip_softmax,
    )
    return attack.run(x, target, radius, step_size, steps)


class MinimalPerturbation(NamedTuple):
    """The result of :func:`minimal_perturbation`, one entry per sample.

    Attributes:
        parameter: float64 ``(B,)``: the smallest grid value whose attack changes the
            prediction; NaN where no value in the range does.
        x: float32 array shaped like the input: the input attacked with that value;
            NaN rows where no value does.
        flipped: bool ``(B,)``: whether a value was found.
    """

    parameter: np.ndarray
    x: np.ndarray
    flipped: np.ndarray


def minimal_perturbation(
    model: keras.Model,
    x: Any,
    target: Any = None,
    *,
    attack: str | Callable = "fgsm",
    low: float = 0.0,
    high: float,
    step: float,
    mode: str = "linear",
    strip_softmax: bool = True,
    **attack_kwargs: Any,
) -> MinimalPerturbation:
    """Per sample, the smallest attack parameter that changes the prediction.

    Captum's ``MinParamPerturbation`` (``captum/robust/_core/metrics/
    min_param_perturbation.py:47-492``): the parameter runs over the grid
    ``low, low + step, ...`` below ``high`` (``high`` excluded, as ``drange``, lines
    20-30); ``"linear"`` tries the values in order, ``"binary"`` bisects the grid,
    assuming that an attack that works keeps working at larger values (lines
    286-367). An attack works when the argmax of the explained output differs from
    ``target`` (with ``targeted=True``: equals it), Captum's ``default_correct_fn``
    (lines 33-39) taken per sample instead of over the whole batch. Each step of the
    search attacks the whole batch in one call, with one parameter per sample.

    Args:
        model: A Keras classifier with one float input.
        x: The inputs, ``(B, ...)``.
        target: The class to move away from (None: the clean argmax), an int or an
            int array ``(B,)``; with ``targeted=True`` the class to reach.
        attack: ``"fgsm"`` (searches ``epsilon``), ``"pgd"`` (searches ``radius``;
            ``steps`` defaults to 10 and ``step_size`` to ``2.5 · radius / steps``, Madry
            et al.'s choice) or a callable ``attack(x, values) -> x'`` taking the batch
            and one float32 value per sample (e.g. the scale of added noise).
        low: The first value of the grid.
        high: The end of the grid (excluded).
        step: The spacing of the grid, > 0.
        mode: ``"linear"`` or ``"binary"``.
        strip_softmax: As for :func:`fgsm`.
        **attack_kwargs: Passed to :func:`fgsm` or :func:`pgd` (``norm``, ``targeted``,
            ``loss``, ``value_range``, and for PGD ``steps``, ``step_size``,
            ``random_start``, ``seed``).

    Returns:
        A :class:`MinimalPerturbation` ``(parameter, x, flipped)``.

    Raises:
        ValueError: For an empty grid, an unknown ``mode`` or ``attack``, a target
            that is not None or indices, or a callable attack's result of the wrong shape.
        TypeError: For an argument the attack does not take.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(2)])
        >>> model.set_weights([np.array([[1.0, -1.0]]), np.zeros(2)])
        >>> found = kx.robust.minimal_perturbation(model, np.array([[0.3]]), high=1.0, step=0.05)
        >>> found.parameter.round(2).tolist(), found.flipped.tolist()
        ([0.35], [True])
    """
    mode = _validate.one_of(mode, "mode", SEARCH_MODES)
    low, high, step = float(low), float(high), _validate.positive(step, "step")
    grid = low + step * np.arange(max(0, math.ceil((high - low) / step)))
    grid = grid[grid < high]
    if not len(grid) or not np.isfinite(grid).all():
        raise ValueError(
            "minimal_perturbation: the grid low, low + step, ... below high is empty. "
            f"Received: low={low}, high={high}, step={step}. Pass high > low."
        )
    if callable(attack):
        _validate.unexpected_parameters(
            "minimal_perturbation", set(attack_kwargs) - {"targeted"}, ["targeted"]
        )
        targeted = attack_kwargs.get("targeted", False)
        predictor = _Attack(
            model,
            owner="minimal_perturbation",
            norm="linf",
            targeted=targeted,
            loss=None,
            value_range=None,
            random_start=False,
            seed=None,
            strip_softmax=strip_softmax,
        )
    else:
        attack = _validate.one_of(attack, "attack", ATTACKS)
        predictor, parameters = _search_attack(model, attack, attack_kwargs, strip_softmax)
        targeted = predictor.targeted
    inputs = predictor.standardize(x)
    size = inputs.shape[0]
    parsed = parse_target(target, size, predictor.output_size(inputs))
    if parsed.mode not in ("index", "max"):
        raise ValueError(
            "minimal_perturbation compares predicted classes, so target must be None (the "
            f"clean argmax), an int or an int array of shape (batch,). Received: {target!r}."
        )
    if targeted and target is None:
        raise ValueError(
            "minimal_perturbation with targeted=True needs the class to reach: pass target= "
            "(an int or an int array of shape (batch,)). Received: target=None."
        )
    labels = np.broadcast_to(predictor.resolve_target(inputs, target), (size,))

    def attacked(values):
        values = values.astype(np.float32)
        if callable(attack):
            result = np.asarray(attack(inputs, values), dtype=np.float32)
            if result.shape != inputs.shape:
                raise ValueError(
                    "minimal_perturbation: the attack must return an array shaped like x "
                    f"{inputs.shape}. Received: shape {result.shape}."
                )
        else:
            result = predictor.run(inputs, labels, *parameters(values))
        predicted = predictor.predict(result).reshape(size, -1).argmax(axis=1)
        return result, (predicted == labels) if targeted else (predicted != labels)

    found = np.full(size, -1)
    perturbed = np.full(inputs.shape, np.nan, np.float32)
    if mode == "linear":
        for index, value in enumerate(grid):
            result, success = attacked(np.full(size, value))
            new = success & (found < 0)
            found[new], perturbed[new] = index, result[new]
            if (found >= 0).all():
                break
    else:
        lower, upper = np.zeros(size, int), np.full(size, len(grid))
        while (lower < upper).any():
            active = lower < upper
            middle = np.where(active, (lower + upper) // 2, 0)
            result, success = attacked(grid[middle])
            hit, miss = active & success, active & ~success
            found[hit], perturbed[hit], upper[hit] = middle[hit], result[hit], middle[hit]
            lower[miss] = middle[miss] + 1
    flipped = found >= 0
    parameter = np.where(flipped, grid[np.maximum(found, 0)], np.nan)
    return MinimalPerturbation(parameter, perturbed, flipped)


def _search_attack(model, name: str, kwargs: dict, strip_softmax: bool):
    """The attack object of a search and ``parameters(values) -> run's parameters``."""
    shared = ["norm", "targeted", "loss", "value_range"]
    valid = shared + (["steps", "step_size", "random_start", "seed"] if name == "pgd" else [])
    owner = f"minimal_perturbation(attack={name!r})"
    _validate.unexpected_parameters(owner, set(kwargs) - set(valid), valid)
    attack = _Attack(
        model,
        owner=owner,
        norm=kwargs.get("norm", "linf"),
        targeted=kwargs.get("targeted", False),
        loss=kwargs.get("loss"),
        value_range=kwargs.get("value_range"),
        random_start=kwargs.get("random_start", False),
        seed=kwargs.get("seed", random.fresh_seed()),  # one random start for every value
        strip_softmax=strip_softmax,
    )
    if name == "fgsm":
        return attack, lambda values: (values, values, 1, ("epsilon", "epsilon"))
    steps = _validate.positive_int(kwargs.get("steps", 10), "steps")
    step_size = kwargs.get("step_size")
    return attack, lambda values: (
        values,
        2.5 * values / steps if step_size is None else step_size,
        steps,
    )


class Fragility(NamedTuple):
    """The result of :func:`explanation_fragility`, one entry per sample.

    Attributes:
        top_k_intersection: float64 ``(B,)``: the fraction of the ``top_k`` most
            important features of the clean explanation that stay among the
            ``top_k`` most important of the attacked one (1: unchanged).
        spearman: float64 ``(B,)``: Spearman's rank correlation of the two maps
            (NaN where a map is constant).
    """

    top_k_intersection: np.ndarray
    spearman: np.ndarray


def explanation_fragility(
    analyzer: Analyzer, x: Any, x_adv: Any, target: Any = None, *, top_k: int | None = None
) -> Fragility:
    """How much an explanation changes under an attack (Ghorbani, Abid & Zou 2019).

    Both inputs are explained for the same ``target`` (None: the class predicted for
    the clean ``x``). Feature importance is the absolute attribution, summed over the
    channel axis for images ``(B, H, W, C)`` (as Ghorbani et al. do); the measures
    are their top-k intersection and Spearman's rank correlation
    (``scipy.stats.spearmanr``) per sample.

    Args:
        analyzer: Any analyzer of the library (``kx.Gradient(model)``, ``kx.GradCAM``...)
            of a model with one input.
        x: The clean inputs.
        x_adv: The attacked inputs, shaped like ``x`` (e.g. :func:`pgd`'s result).
        target: As for ``analyzer.analyze``; None is resolved on ``x``.
        top_k: The number of top features compared; default 10% of the features of
            one map (at least 1).

    Returns:
        A :class:`Fragility` ``(top_k_intersection, spearman)``.

    Raises:
        ValueError: For ``x_adv`` not shaped like ``x``, a ``top_k`` that is not a
            positive int, or an analyzer returning one map per input.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        >>> x = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
        >>> same = kx.robust.explanation_fragility(kx.InputTimesGradient(model), x, x, top_k=2)
        >>> same.top_k_intersection.tolist(), same.spearman.round(6).tolist()
        ([1.0, 1.0, 1.0], [1.0, 1.0, 1.0])
    """
    from scipy import stats

    x, x_adv = np.asarray(x), np.asarray(x_adv)
    if x.shape != x_adv.shape:
        raise ValueError(
            "explanation_fragility: x_adv must be shaped like x. Received: x of shape "
            f"{x.shape}, x_adv of shape {x_adv.shape}."
        )
    target = analyzer.resolve_target(x, target)
    maps = [analyzer.analyze(item, target) for item in (x, x_adv)]
    if isinstance(maps[0], list | dict):
        raise ValueError(
            "explanation_fragility compares one map per sample; the analyzer returned one "
            "per model input. Received: a model with several inputs."
        )
    maps = [np.abs(np.asarray(item, np.float64)) for item in maps]
    if maps[0].ndim == 4 and not analyzer.returns_maps:
        maps = [item.sum(axis=-1) for item in maps]
    before, after = (item.reshape(len(x), -1) for item in maps)
    features = before.shape[1]
    top_k = max(1, features // 10) if top_k is None else _validate.positive_int(top_k, "top_k")
    top_k = min(top_k, features)
    first = np.argsort(-before, axis=1, kind="stable")[:, :top_k]
    second = np.argsort(-after, axis=1, kind="stable")[:, :top_k]
    intersection = np.array([len(np.intersect1d(a, b)) / top_k for a, b in zip(first, second)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)  # NaN for a constant map
        spearman = np.array([stats.spearmanr(a, b).statistic for a, b in zip(before, after)])
    return Fragility(intersection, spearman.astype(np.float64))
