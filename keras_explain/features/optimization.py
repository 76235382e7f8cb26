"""Activation maximization: images that drive objectives up, all in one compiled loop."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_explain import _validate, graph
from keras_explain.features.objectives import Objective
from keras_explain.features.parameterization import PARAMETERIZATIONS, Regularizer, Transforms

#: Image size when neither ``size`` nor the model's input fixes it.
DEFAULT_SIZE = (128, 128)
#: Compiled loops kept for later calls with the same model, objectives and options.
CACHED_LOOPS = 4
_LOOPS: dict = {}


def maximize(
    model: keras.Model,
    objective: Objective | Sequence[Objective],
    *,
    size: tuple[int, int] | None = None,
    steps: int = 256,
    learning_rate: float = 0.05,
    parameterization: str = "fourier",
    transforms: str | Transforms | None = "standard",
    regularizers: Sequence[Regularizer] | None = None,
    batch: int = 1,
    seed: int = 0,
    value_range: tuple[float, float] = (0.0, 1.0),
    init: Any = None,
) -> np.ndarray:
    """Images that maximize objectives of a model (feature visualization, Olah et al. 2017).

    Every image ``x = P(θ)`` (``parameterization``) ascends
    ``objective(model(T(x))) - Σ regularizer(x)`` with Adam for ``steps`` steps,
    ``T`` being fresh random ``transforms`` at each step. Several objectives are
    optimized together: the batch holds ``batch`` images per objective, and the
    whole optimization is one ``tf.function`` running a ``tf.while_loop``,
    traced once and kept for later calls with the same model, objectives and
    options (the last 4; another ``seed`` or ``steps`` reuses it). The model is
    run by the graph engine up to the layers the objectives read, in inference
    mode; it is not modified.

    Args:
        model: A built Functional or Sequential model with one image input
            ``(H, W, C)``, channels last.
        objective: An :class:`~keras_explain.features.Objective`, or a list of
            them (one group of ``batch`` images each).
        size: ``(height, width)`` of the images. Default: the model's input
            size, or 128 x 128 when the model accepts any size. Images of
            another size than the model's are resized (bilinear) for it.
        steps: Optimization steps (0 returns the random initial images).
        learning_rate: Adam's learning rate.
        parameterization: ``"fourier"`` (decorrelated, 1/f-scaled spectrum)
            or ``"pixel"``.
        transforms: ``"standard"`` (Lucid's, scaled to the image size), a
            :class:`~keras_explain.features.Transforms`, or None.
        regularizers: Penalties, e.g. ``[features.total_variation(1e-3)]``.
        batch: Images per objective (different random starts).
        seed: The same seed gives the same images.
        value_range: ``(low, high)`` of the model's inputs; images lie
            strictly inside it. Default ``(0, 1)``.
        init: Starting images, ``(N, height, width, C)`` or one
            ``(height, width, C)`` for all, in ``value_range`` (pulled 0.1% of
            the range inside it); None: random parameters (normal, standard
            deviation 0.01), i.e. nearly uniform images at the middle of the
            range. Noise or real images wake up units that are off (a ReLU with
            no gradient) on a uniform image.

    Returns:
        float32 array ``(len(objectives) * batch, height, width, C)``, images of
        objective ``k`` at rows ``k * batch .. (k + 1) * batch - 1``.

    Raises:
        ValueError: For an unknown layer (the message lists the layers), an
            index out of range, a bad ``size``, ``steps``, ``batch``,
            ``value_range``, ``parameterization`` or ``transforms``; all before
            any optimization.
        TypeError: For an objective that is not an ``Objective``.

    Example:
        >>> import keras, numpy as np
        >>> from keras_explain import features
        >>> model = keras.Sequential([keras.Input((16, 16, 3)),
        ...                           keras.layers.Conv2D(4, 3, name="conv")])
        >>> images = features.maximize(model, [features.channel("conv", 0),
        ...                                    features.channel("conv", 1)], steps=4)
        >>> images.shape, bool(images.min() > 0 and images.max() < 1)
        ((2, 16, 16, 3), True)
    """
    objectives = [objective] if isinstance(objective, Objective) else list(objective)
    if not objectives or not all(isinstance(o, Objective) for o in objectives):
        raise TypeError(
            "maximize needs an Objective (features.channel(...), features.logit(...), ...) or a "
            f"non-empty list of them. Received: objective={objective!r}."
        )
    plan = graph.Plan(model)
    if len(plan.input_keys) != 1 or len(plan.input_specs[0].shape) != 4:
        raise ValueError(
            f"maximize needs a model with one image input (batch, H, W, C). Model "
            f"{model.name!r} has inputs {[tuple(s.shape) for s in plan.input_specs]}."
        )
    bound = [item.bind(plan) for item in objectives]
    steps = _steps(steps)
    batch = _validate.positive_int(batch, "batch")
    learning_rate = _validate.positive(learning_rate, "learning_rate")
    low, high = _value_range(value_range)
    _, model_h, model_w, channels = plan.input_specs[0].shape
    size = _size(size, (model_h, model_w))
    kind = _validate.one_of(parameterization, "parameterization", tuple(PARAMETERIZATIONS))
    count = len(objectives) * batch
    param = PARAMETERIZATIONS[kind]((count, *size, channels), (low, high))
    transform = _transforms(transforms, size)
    penalties = list(regularizers or [])
    if not all(isinstance(r, Regularizer) for r in penalties):
        raise TypeError(
            "maximize: regularizers must be a list of features.total_variation(...), "
            f"features.l1(...) or features.l2(...). Received: regularizers={regularizers!r}."
        )
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ValueError(f"maximize: seed must be an int. Received: seed={seed!r}.")
    signature = (
        id(model),
        tuple(tuple(_term_key(term) for term in item.terms) for item in objectives),
        batch,
        learning_rate,
        (low, high),
        size,
        kind,
        transform,
        tuple(penalties),
    )
    loop = _LOOPS.pop(signature, None)
    if loop is None or loop.model is not model:
        model_size = (model_h or size[0], model_w or size[1])
        loop = _Loop(
            model, plan, bound, param, transform, penalties, batch, model_size, learning_rate
        )
    _LOOPS[signature] = loop  # most recently used last
    while len(_LOOPS) > CACHED_LOOPS:
        del _LOOPS[next(iter(_LOOPS))]
    return loop(int(seed), steps, _init(init, param))


class _Loop:
    """The compiled optimization of one set of objectives on one model (reused across calls).

    Its parameters and Adam's state are variables, reset from the seed at every
    call; the seed and the step count are arguments, so a call with another
    seed or number of steps runs the same trace.
    """

    def __init__(self, model, plan, bound, param, transform, penalties, batch, model_size, rate):
        self.model = model  # (the plan holds it too)
        self.param = param
        keys = list(dict.fromkeys(key for item_keys, _ in bound for key in item_keys))
        groups = np.repeat(np.eye(len(bound), dtype=np.float32), batch, axis=0)  # (N, K)
        middle = (param.low + param.high) / 2
        dtype = plan.dtype_of(plan.input_keys[0])

        def total(params, seed, step):
            images = param.image(params)
            seen = images
            if transform is not None:
                seen = transform(images, tf.stack([seed, step + 1]), middle)
            if tuple(seen.shape[1:3]) != tuple(model_size):
                seen = tf.image.resize(seen, model_size)
            values = plan.run([tf.cast(seen, dtype)], targets=keys)
            scores = tf.stack([score(values) for _, score in bound], axis=1)  # (N, K)
            per_image = tf.reduce_sum(scores * groups, axis=1)
            for penalty in penalties:
                per_image -= penalty(images, middle)
            return tf.reduce_sum(per_image)

        self.params = tf.Variable(param.initial(0))
        self.optimizer = keras.optimizers.Adam(rate)
        self.optimizer.build([self.params])
        self.fresh_state = [variable.numpy() for variable in self.optimizer.variables]

        def run(seed, steps):
            def body(step):
                with tf.GradientTape() as tape:
                    loss = -total(self.params, seed, step)
                gradient = tape.gradient(loss, self.params)
                self.optimizer.apply_gradients([(gradient, self.params)])
                return (step + 1,)

            tf.while_loop(lambda step: step < steps, body, (tf.constant(0),))
            return param.image(self.params)

        # A partial has no __code__, so TensorFlow's frequent-retracing warning (keyed
        # by code object) does not count the traces of different loops together.
        self.compiled = tf.function(functools.partial(run), autograph=False)

    def __call__(self, seed: int, steps: int, init: tf.Tensor | None) -> np.ndarray:
        self.params.assign(self.param.initial(seed) if init is None else init)
        for variable, value in zip(self.optimizer.variables, self.fresh_state):
            variable.assign(value)
        images = self.compiled(tf.constant(seed, tf.int32), tf.constant(steps, tf.int32))
        return images.numpy().astype(np.float32)


def _init(value: Any, param) -> tf.Tensor | None:
    """The parameters of the starting images, or None."""
    if value is None:
        return None
    images = np.asarray(value, np.float32)
    if images.shape == param.shape[1:]:
        images = np.broadcast_to(images, param.shape)
    if images.shape != param.shape or not np.all(np.isfinite(images)):
        raise ValueError(
            f"maximize: init must be finite images of shape {param.shape} or one of shape "
            f"{param.shape[1:]}. Received: an array of shape {images.shape}."
        )
    margin = 1e-3 * (param.high - param.low)
    return param.params(np.clip(images, param.low + margin, param.high - margin))


def _term_key(term) -> tuple:
    layer = term.layer if term.layer is None or isinstance(term.layer, str) else id(term.layer)
    argument = term.argument
    if isinstance(argument, np.ndarray):
        argument = argument.tobytes()
    return term.kind, layer, argument, term.weight


def _steps(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(f"maximize: steps must be an int >= 0. Received: steps={value!r}.")
    return int(value)


def _value_range(value: Any) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        low = high = float("nan")
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise ValueError(
            "maximize: value_range must be (low, high), finite, low < high: the range of the "
            f"model's inputs, e.g. (0, 1) or (-1, 1). Received: value_range={value!r}."
        )
    return low, high


def _size(value: Any, model_size: tuple) -> tuple[int, int]:
    if value is None:
        if None in model_size:
            return DEFAULT_SIZE
        return int(model_size[0]), int(model_size[1])
    if (
        not isinstance(value, Sequence)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
    ):
        raise ValueError(
            f"maximize: size must be (height, width), two positive ints. Received: size={value!r}."
        )
    return int(value[0]), int(value[1])


def _transforms(value: Any, size: tuple[int, int]) -> Transforms | None:
    if value is None or isinstance(value, Transforms):
        return value
    if value == "standard":
        return Transforms.standard(size)
    raise ValueError(
        'maximize: transforms must be "standard", a features.Transforms(...) or None. '
        f"Received: transforms={value!r}."
    )
