"""Activation maximization: inputs that drive objectives up, all in one compiled loop."""

from __future__ import annotations

import dataclasses
import functools
import json
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_explain import _validate, graph
from keras_explain.features.objectives import Objective
from keras_explain.features.parameterization import (
    PARAMETERIZATIONS,
    Pixel,
    Regularizer,
    Transforms,
)

#: Image size when neither ``size`` nor the model's input fixes it.
DEFAULT_SIZE = (128, 128)
#: The learning rate of an optimizer given by name.
DEFAULT_LEARNING_RATE = 0.05
#: Compiled loops kept for later calls with the same model, objectives and options.
CACHED_LOOPS = 4
_LOOPS: dict = {}


def maximize(
    model: keras.Model,
    objective: Objective | Sequence[Objective],
    *,
    size: tuple[int, int] | Sequence[tuple[int, int] | None] | None = None,
    steps: int = 256,
    learning_rate: float | None = None,
    optimizer: str | keras.optimizers.Optimizer = "adam",
    parameterization: str | Sequence[str] = "fourier",
    transforms: str | Transforms | None | Sequence[Any] = "standard",
    regularizers: Sequence[Regularizer] | Sequence[Sequence[Regularizer]] | None = None,
    batch: int = 1,
    seed: int = 0,
    value_range: tuple[float, float] | Sequence[tuple[float, float]] = (0.0, 1.0),
    init: Any = None,
    callback: Callable[[int, Any, np.ndarray], Any] | None = None,
    callback_every: int = 1,
) -> np.ndarray | list[np.ndarray]:
    """Inputs that maximize objectives of a model (feature visualization, Olah et al. 2017).

    Every input ``x = P(θ)`` (``parameterization``) ascends
    ``objective(model(T(x))) - Σ regularizer(x)`` with ``optimizer`` for
    ``steps`` steps, ``T`` being fresh random ``transforms`` at each step.
    Several objectives are optimized together: the batch holds ``batch`` images
    per objective, and the whole optimization is one ``tf.function`` running a
    ``tf.while_loop``, traced once and kept for later calls with the same model,
    objectives and options (the last 4; another ``seed``, ``steps`` or
    ``callback`` reuses it). With a ``callback`` the same compiled loop runs
    ``callback_every`` steps at a time, so the result is the same, bit for bit.
    The model is run by the graph engine up to the layers the objectives read,
    in inference mode; it is not modified.

    A model with several inputs has every input optimized, each with its own
    parameters: image inputs ``(H, W, C)`` as described, any other input
    (a vector ``(D,)``, ...) with the pixel parameterization and no transforms.
    ``size``, ``value_range``, ``parameterization``, ``transforms``,
    ``regularizers`` and ``init`` then take one value for all inputs or a list
    with one entry per input.

    Args:
        model: A built Functional or Sequential model; its inputs are images
            ``(H, W, C)``, channels last, or have a fully known shape.
        objective: An :class:`~keras_explain.features.Objective`, or a list of
            them (one group of ``batch`` images each).
        size: ``(height, width)`` of the images. Default: the model's input
            size, or 128 x 128 when the model accepts any size. Images of
            another size than the model's are resized (bilinear) for it.
        steps: Optimization steps (0 returns the random initial images).
        learning_rate: The learning rate of an optimizer given by name
            (default 0.05). Set an optimizer instance's own rate instead.
        optimizer: ``"adam"`` (Keras' Adam with its defaults), another name
            Keras knows (``"sgd"``, ``"rmsprop"``, ...) or a
            ``keras.optimizers.Optimizer`` instance; the instance is copied
            (``from_config(get_config())``), never used or changed, so every
            call starts from fresh optimizer state.
        parameterization: ``"fourier"`` (decorrelated, 1/f-scaled spectrum)
            or ``"pixel"`` (non-image inputs: always pixel).
        transforms: ``"standard"`` (Lucid's, scaled to the image size), a
            :class:`~keras_explain.features.Transforms`, or None. Image inputs
            only.
        regularizers: Penalties, e.g. ``[features.total_variation(1e-3)]``,
            :func:`~keras_explain.features.lp`,
            :func:`~keras_explain.features.norm`; for several inputs one list
            for all or a list of lists, one per input.
        batch: Images per objective (different random starts).
        seed: The same seed gives the same images.
        value_range: ``(low, high)`` of the model's inputs; images lie
            strictly inside it. Default ``(0, 1)``.
        init: Starting images, ``(N, height, width, C)`` or one
            ``(height, width, C)`` for all, in ``value_range`` (pulled 0.1% of
            the range inside it); None: random parameters (normal, standard
            deviation 0.01), i.e. nearly uniform images at the middle of the
            range. Noise or real images wake up units that are off (a ReLU with
            no gradient) on a uniform image. Several inputs: a list, one entry
            (or None) per input.
        callback: Called as ``callback(step, images, values)`` after steps
            ``callback_every``, ``2 * callback_every``, ... and after the last
            one: ``step`` the number of steps done, ``images`` the current
            images (a numpy array, or a list of them for several inputs) and
            ``values`` the objective of each image (float32 ``(N,)``, without
            the penalties) at the last step's transformed images.
        callback_every: Steps between two callback calls.

    Returns:
        float32 array ``(len(objectives) * batch, height, width, C)``, images of
        objective ``k`` at rows ``k * batch .. (k + 1) * batch - 1``; for a
        model with several inputs a list of such arrays, in input order.

    Raises:
        ValueError: For an unknown layer (the message lists the layers), an
            index out of range, a bad ``size``, ``steps``, ``batch``,
            ``value_range``, ``parameterization``, ``transforms``,
            ``optimizer`` name or ``callback_every``, an input of unknown
            shape, total variation on an input that is not an image; all
            before any optimization.
        TypeError: For an objective that is not an ``Objective``, a
            regularizer that is not a ``Regularizer``, an ``optimizer`` that is
            neither a name nor a Keras optimizer, or a ``callback`` that is not
            callable.

    Example:
        >>> import keras, numpy as np
        >>> from keras_explain import features
        >>> model = keras.Sequential([keras.Input((16, 16, 3)),
        ...                           keras.layers.Conv2D(4, 3, name="conv")])
        >>> images = features.maximize(model, [features.channel("conv", 0),
        ...                                    features.channel("conv", 1)], steps=4)
        >>> images.shape, bool(images.min() > 0 and images.max() < 1)
        ((2, 16, 16, 3), True)
        >>> seen = []
        >>> same = features.maximize(model, [features.channel("conv", 0),
        ...                                  features.channel("conv", 1)], steps=4,
        ...                          callback=lambda step, x, values: seen.append(step),
        ...                          callback_every=2)
        >>> seen, bool(np.array_equal(same, images))
        ([2, 4], True)
    """
    objectives = [objective] if isinstance(objective, Objective) else list(objective)
    if not objectives or not all(isinstance(o, Objective) for o in objectives):
        raise TypeError(
            "maximize needs an Objective (features.channel(...), features.logit(...), ...) or a "
            f"non-empty list of them. Received: objective={objective!r}."
        )
    plan = graph.Plan(model)
    bound = [item.bind(plan) for item in objectives]
    steps = _steps(steps)
    batch = _validate.positive_int(batch, "batch")
    make_optimizer, optimizer_key = _optimizer(optimizer, learning_rate)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ValueError(f"maximize: seed must be an int. Received: seed={seed!r}.")
    if callback is not None and not callable(callback):
        raise TypeError(
            "maximize: callback must be callable as callback(step, images, values). "
            f"Received: callback={callback!r}."
        )
    callback_every = _validate.positive_int(callback_every, "callback_every")
    count = len(objectives) * batch
    inputs = _inputs(plan, count, size, value_range, parameterization, transforms, regularizers)
    inits = _per_input(init, len(inputs), "init", lambda v: not isinstance(v, list))
    starts = [_init(value, item.param) for value, item in zip(inits, inputs)]
    signature = (
        id(model),
        tuple(tuple(_term_key(term) for term in item.terms) for item in objectives),
        batch,
        optimizer_key,
        tuple(item.key for item in inputs),
    )
    loop = _LOOPS.pop(signature, None)
    if loop is None or loop.model is not model:
        loop = _Loop(model, plan, bound, inputs, batch, make_optimizer())
    _LOOPS[signature] = loop  # most recently used last
    while len(_LOOPS) > CACHED_LOOPS:
        del _LOOPS[next(iter(_LOOPS))]
    loop.reset(int(seed), starts)
    single = len(inputs) == 1
    if callback is None:
        images, _ = loop.run(int(seed), 0, steps)
    else:
        for start in range(0, steps, callback_every):
            stop = min(start + callback_every, steps)
            images, values = loop.run(int(seed), start, stop)
            callback(stop, images[0] if single else images, values)
        if steps == 0:
            images, _ = loop.run(int(seed), 0, 0)
    return images[0] if single else images


@dataclasses.dataclass(frozen=True)
class _Input:
    """How one model input is optimized: parameterization, transforms, penalties, model size."""

    param: Pixel
    transform: Transforms | None
    penalties: tuple[Regularizer, ...]
    model_size: tuple[int, int] | None  # (H, W) the model needs, for an image input
    dtype: str
    key: tuple  # what identifies a compiled loop

    @property
    def middle(self) -> float:
        return (self.param.low + self.param.high) / 2


class _Loop:
    """The compiled optimization of one set of objectives on one model (reused across calls).

    Its parameters and the optimizer's state are variables, reset from the seed
    at every call; the seed and the first and last step are arguments, so a
    call with another seed or number of steps, or a run in pieces for a
    callback, runs the same trace.
    """

    def __init__(self, model, plan, bound, inputs, batch, optimizer):
        self.model = model  # (the plan holds it too)
        self.inputs = inputs
        keys = list(dict.fromkeys(key for item_keys, _ in bound for key in item_keys))
        groups = np.repeat(np.eye(len(bound), dtype=np.float32), batch, axis=0)  # (N, K)
        count = groups.shape[0]

        def total(params, seed, step):
            images = [item.param.image(p) for item, p in zip(inputs, params)]
            seen = []
            for index, (item, image) in enumerate(zip(inputs, images)):
                if item.transform is not None:
                    stream = tf.stack([seed, step + 1])
                    if index:
                        stream = tf.random.experimental.stateless_fold_in(stream, index)
                    image = item.transform(image, stream, item.middle)
                if item.model_size is not None and tuple(image.shape[1:3]) != item.model_size:
                    image = tf.image.resize(image, item.model_size)
                seen.append(tf.cast(image, item.dtype))
            values = plan.run(seen, targets=keys)
            scores = tf.stack([score(values) for _, score in bound], axis=1)  # (N, K)
            objective = tf.reduce_sum(scores * groups, axis=1)
            per_image = objective
            for item, image in zip(inputs, images):
                for penalty in item.penalties:
                    per_image -= penalty(image, item.middle)
            return tf.reduce_sum(per_image), objective

        self.params = [tf.Variable(item.param.initial(0)) for item in inputs]
        self.optimizer = optimizer
        self.optimizer.build(self.params)
        self.fresh_state = [variable.numpy() for variable in self.optimizer.variables]

        def run(seed, start, stop):
            def body(step, _):
                with tf.GradientTape() as tape:
                    value, objective = total(self.params, seed, step)
                    loss = -value
                # an input no objective reads gets a zero gradient, not None
                gradients = tape.gradient(
                    loss, self.params, unconnected_gradients=tf.UnconnectedGradients.ZERO
                )
                self.optimizer.apply_gradients(zip(gradients, self.params))
                return step + 1, objective

            initial = (start, tf.zeros([count], tf.float32))
            _, objective = tf.while_loop(lambda step, _: step < stop, body, initial)
            return [item.param.image(p) for item, p in zip(inputs, self.params)], objective

        # A partial has no __code__, so TensorFlow's frequent-retracing warning (keyed
        # by code object) does not count the traces of different loops together.
        self.compiled = tf.function(functools.partial(run), autograph=False)

    def reset(self, seed: int, starts: Sequence[tf.Tensor | None]) -> None:
        """Initial parameters from ``seed`` (or the given starts) and fresh optimizer state."""
        for stream, (variable, item, start) in enumerate(zip(self.params, self.inputs, starts)):
            variable.assign(item.param.initial(seed, stream) if start is None else start)
        for variable, value in zip(self.optimizer.variables, self.fresh_state):
            variable.assign(value)

    def run(self, seed: int, start: int, stop: int) -> tuple[list[np.ndarray], np.ndarray]:
        """Steps ``start .. stop - 1``: the images after them and the last step's objectives."""
        images, objective = self.compiled(
            tf.constant(seed, tf.int32), tf.constant(start, tf.int32), tf.constant(stop, tf.int32)
        )
        return [image.numpy().astype(np.float32) for image in images], objective.numpy()


def _inputs(plan, count, size, value_range, parameterization, transforms, regularizers):
    """One :class:`_Input` per model input, every argument checked."""
    specs = plan.input_specs
    n = len(specs)
    one_size = size is None or _is_pair(size, numbers.Integral)
    sizes = _per_input(size, n, "size", lambda v: one_size)
    ranges = _per_input(value_range, n, "value_range", lambda v: _is_pair(v, numbers.Real))
    kinds = _per_input(parameterization, n, "parameterization", lambda v: isinstance(v, str))
    moves = _per_input(transforms, n, "transforms", lambda v: not isinstance(v, list | tuple))
    penalty_lists = _per_input(
        regularizers,
        n,
        "regularizers",
        lambda v: not isinstance(v, list | tuple) or not any(isinstance(r, Sequence) for r in v),
    )
    inputs = []
    for index, spec in enumerate(specs):
        shape = tuple(spec.shape[1:])
        where = "" if n == 1 else f" (input {index}, {spec.name!r})"
        dtype = plan.dtype_of(plan.input_keys[index])
        if not dtype or "float" not in dtype:
            raise ValueError(
                f"maximize optimizes every model input, and input{where} is {dtype}: integer "
                "inputs (token ids, ...) have no gradient. Wrap the model so that it takes "
                "float inputs (e.g. optimize the embedding's output). "
                f"Received: a model with inputs {[tuple(s.shape) for s in specs]}."
            )
        low, high = _value_range(ranges[index])
        kind = _validate.one_of(kinds[index], "parameterization", tuple(PARAMETERIZATIONS))
        penalties = penalty_lists[index] or ()
        if not isinstance(penalties, list | tuple) or not all(
            isinstance(r, Regularizer) for r in penalties
        ):
            raise TypeError(
                "maximize: regularizers must be a list of features.total_variation(...), "
                f"features.lp(...), features.norm(...) (or one list per input). "
                f"Received: regularizers={regularizers!r}."
            )
        if len(shape) == 3:
            height, width, channels = shape
            image_size = _size(sizes[index], (height, width))
            param = PARAMETERIZATIONS[kind]((count, *image_size, channels), (low, high))
            transform = _transforms(moves[index], image_size)
            model_size = (height or image_size[0], width or image_size[1])
        else:
            if None in shape or (sizes[index] is not None and (n == 1 or not one_size)):
                raise ValueError(
                    f"maximize: input{where} has shape {shape}: an input that is not an image "
                    "(H, W, C) needs a fully known shape, and takes no size. "
                    f"Received: size={size!r}."
                )
            if any(r.kind == "total_variation" for r in penalties):
                raise ValueError(
                    f"maximize: total_variation needs an image input (H, W, C); input{where} "
                    f"has shape {shape}. Give one list of regularizers per input. "
                    f"Received: regularizers={regularizers!r}."
                )
            _transforms(moves[index], (1, 1))  # checked, not used
            param = Pixel((count, *shape), (low, high))
            transform, model_size, kind = None, None, "pixel"
        penalties = tuple(penalties)
        key = (param.shape, (low, high), kind, transform, penalties)
        inputs.append(_Input(param, transform, penalties, model_size, dtype, key))
    return inputs


def _per_input(value: Any, count: int, name: str, single: Callable[[Any], bool]) -> list:
    """``value`` once per input: as given when it is one value, else its entries."""
    if count == 1 or single(value):
        return [value] * count
    if not isinstance(value, list | tuple) or len(value) != count:
        raise ValueError(
            f"maximize: the model has {count} inputs; give {name} once for all of them or as "
            f"a list of {count}, one per input. Received: {name}={value!r}."
        )
    return list(value)


def _is_pair(value: Any, types: tuple) -> bool:
    return (
        isinstance(value, Sequence)
        and len(value) == 2
        and all(isinstance(v, types) and not isinstance(v, bool) for v in value)
    )


def _optimizer(value: Any, learning_rate: Any) -> tuple[Callable[[], Any], tuple]:
    """A factory of fresh optimizers, and what identifies them for the cache of loops."""
    if isinstance(value, keras.optimizers.Optimizer):
        if learning_rate is not None:
            raise ValueError(
                "maximize: learning_rate is for an optimizer given by name; set it on the "
                f"optimizer instance instead. Received: learning_rate={learning_rate!r} and "
                f"optimizer={value!r}."
            )
        config = value.get_config()
        kind = type(value)
        key = (kind, json.dumps(config, sort_keys=True, default=repr))
        return lambda: kind.from_config(config), key
    if not isinstance(value, str):
        raise TypeError(
            'maximize: optimizer must be a name ("adam", "sgd", "rmsprop", ...) or a '
            f"keras.optimizers.Optimizer instance. Received: optimizer={value!r}."
        )
    rate = DEFAULT_LEARNING_RATE if learning_rate is None else learning_rate
    rate = _validate.positive(rate, "learning_rate")
    identifier = {"class_name": value, "config": {"learning_rate": rate}}
    try:
        keras.optimizers.get(identifier)
    except ValueError:
        raise ValueError(
            'maximize: optimizer must be a Keras optimizer name ("adam", "sgd", "rmsprop", '
            f'"adamw", ...) or instance. Received: optimizer={value!r}.'
        ) from None
    return lambda: keras.optimizers.get(identifier), (value, rate)


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
