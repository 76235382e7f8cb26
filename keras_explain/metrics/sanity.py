"""Sanity checks: model-parameter randomization (Adebayo et al. 2018) and map similarity.

(The module was ``metrics/randomization.py``; it is named for the paper's checks so
that ``kx.metrics.randomization`` is only the function.)

An explanation that does not change when the model's weights are replaced by
random ones cannot be explaining what the model learned. :func:`randomization`
re-initializes layers of a **clone** of the model (``keras.models.clone_model``
plus a copy of the weights; the user's model is never touched), recomputes the
explanation after each step, and compares it with the original one.
"""

from __future__ import annotations

import collections
import concurrent.futures
from typing import Any

import keras
import numpy as np

from keras_explain import _graph, _validate
from keras_explain._clone import cloned, leaf_layers
from keras_explain.analyzers.registry import create_analyzer, parameters
from keras_explain.metrics.engine import as_batch, checked, feature_key, fixed_target
from keras_explain.metrics.registry import MetricContext, register_metric

MODES = ("cascading", "independent")
SIMILARITIES = ("spearman_abs", "spearman", "pearson", "ssim")


def similarity(first, second, measure: str = "spearman_abs") -> np.ndarray:
    """Per-sample similarity of two batches of explanations.

    - ``"spearman_abs"``: Spearman rank correlation of ``|a|`` and ``|b|`` (all
      elements of a sample; the value of scipy.stats.spearmanr: the Pearson
      correlation of the average ranks of scipy.stats.rankdata);
    - ``"spearman"``: Spearman rank correlation of ``a`` and ``b``;
    - ``"pearson"``: Pearson correlation of ``a`` and ``b`` (as
      scipy.stats.pearsonr; computed for every sample at once);
    - ``"ssim"``: structural similarity (scikit-image) of the maps ``|a|`` summed
      over channels, each divided by its maximum (so in [0, 1], ``data_range=1``),
      as Adebayo et al. compare normalized absolute maps.

    Args:
        first: ``(B, ...)`` explanations.
        second: ``(B, ...)`` explanations of the same shape.
        measure: One of ``"spearman_abs"``, ``"spearman"``, ``"pearson"``, ``"ssim"``.

    Returns:
        ``(B,)`` float32 similarities (NaN for a correlation with a constant side).

    Raises:
        ValueError: For an unknown measure or shapes that differ.
        ImportError: For ``"ssim"`` without scikit-image.

    Example:
        >>> import numpy as np, keras_explain as kx
        >>> a = np.array([[1.0, 2.0, 3.0, 4.0]])
        >>> kx.metrics.similarity(a, -a, "spearman_abs"), kx.metrics.similarity(a, -a, "spearman")
        (array([1.], dtype=float32), array([-1.], dtype=float32))
    """
    _known("similarity", measure)
    first = np.asarray(first, dtype=np.float64)
    second = np.asarray(second, dtype=np.float64)
    if first.shape != second.shape or first.ndim < 2:
        raise ValueError(
            "similarity compares two batches (B, ...) of the same shape. Received: shapes "
            f"{first.shape} and {second.shape}."
        )
    if measure == "ssim":
        return _ssim(first, second)
    return _correlate(_prepared(first, measure), _prepared(second, measure))


def _prepared(array: np.ndarray, measure: str) -> np.ndarray:
    """Each sample flattened, as its correlation needs it: ``|a|``, average ranks."""
    flat = np.asarray(array).reshape(len(array), -1)
    if measure == "spearman_abs":
        flat = np.abs(flat)
    if measure in ("spearman", "spearman_abs"):
        return average_ranks(flat)  # Spearman = Pearson of the average ranks
    return flat.astype(np.float64)


def average_ranks(rows: np.ndarray) -> np.ndarray:
    """``scipy.stats.rankdata(rows, axis=1)``: per row, ranks from 1, ties averaged.

    The same values, about twice as fast on explanation maps (32 maps of 12,288
    values: 17.6 ms against 37.5 ms, measured on 2 busy cores): the order comes from
    numpy's default (SIMD) sort, where rankdata asks for a stable merge sort, which
    tied values do not need since they share their average rank.

    Args:
        rows: ``(B, n)`` values (no NaN).

    Returns:
        ``(B, n)`` float64 ranks.
    """
    count = rows.shape[1]
    order = np.argsort(rows, axis=1)
    ordered = np.take_along_axis(rows, order, axis=1)
    positions = np.broadcast_to(np.arange(count), rows.shape)
    first = np.ones(rows.shape, bool)  # the first of a run of equal values
    first[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    last = np.ones(rows.shape, bool)  # the last of a run
    last[:, :-1] = first[:, 1:]
    start = np.maximum.accumulate(np.where(first, positions, 0), axis=1)
    end = np.minimum.accumulate(np.where(last, positions, count - 1)[:, ::-1], axis=1)[:, ::-1]
    ranks = np.empty(rows.shape)
    np.put_along_axis(ranks, order, (start + end) / 2.0 + 1.0, axis=1)
    return ranks


def _correlate(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Row-wise Pearson correlation of two ``(B, n)`` arrays; NaN for a constant row."""
    first = first - first.mean(axis=1, keepdims=True)
    second = second - second.mean(axis=1, keepdims=True)
    scale = np.sqrt(np.einsum("ij,ij->i", first, first) * np.einsum("ij,ij->i", second, second))
    product = np.einsum("ij,ij->i", first, second)
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.where(scale > 0, np.clip(product / scale, -1.0, 1.0), np.nan)
    return values.astype(np.float32)


_compare = similarity  # randomization's argument `similarity` shadows the function

#: Clones kept for reuse, with their analyzer, most recent last: a second
#: randomization of the same model with the same method does not clone and trace again.
_CLONES: collections.OrderedDict = collections.OrderedDict()
_KEEP = 2


def _ssim(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    from keras_explain.analyzers.perturbation.segmentation import require

    metrics = require("skimage.metrics", "metrics", "measure='ssim'")

    def maps(array):
        array = np.abs(array)
        array = array.sum(axis=-1) if array.ndim == 4 else array
        if array.ndim != 3:
            raise ValueError(
                "measure='ssim' compares images (B, H, W, C) or maps (B, H, W). "
                f"Received: shape {first.shape}. Use a correlation for other inputs."
            )
        peak = array.reshape(len(array), -1).max(axis=1)
        return array / np.where(peak > 0, peak, 1.0)[:, None, None]

    return np.asarray(
        [
            metrics.structural_similarity(one, two, data_range=1.0)
            for one, two in zip(maps(first), maps(second))
        ],
        dtype=np.float32,
    )


def _known(function: str, measure: str) -> None:
    if measure not in SIMILARITIES:
        raise ValueError(
            f"{function}: unknown measure. Received: measure={measure!r}. Expected one "
            f"of {SIMILARITIES}."
        )


def takes_seed(analyzer_name: str) -> bool:
    """Whether the analyzer registered as ``analyzer_name`` takes a ``seed`` (draws noise)."""
    try:
        return "seed" in parameters(analyzer_name)
    except KeyError:  # create_analyzer explains an unknown name
        return False


def _initializer_of(layer: keras.Layer, variable, function: str) -> keras.initializers.Initializer:
    """The initializer of one of the layer's variables (``kernel_initializer``, ...).

    It is looked for on the innermost sublayer holding the variable first (a
    Transformer block's LayerNormalization holds its ``gamma``), then outwards.
    """
    name = variable.name.split("/")[-1].split(":")[0]
    owners = [
        inner
        for inner in reversed([layer, *_graph.sublayers(layer)])
        if any(weight is variable for weight in inner.weights)
    ]
    for owner in owners:
        for attribute in (f"{name}_initializer", f"{name.replace('_kernel', '')}_initializer"):
            initializer = getattr(owner, attribute, None)
            if initializer is not None:
                return keras.initializers.get(initializer)
    raise ValueError(
        f"{function}: layer {layer.name!r} has no initializer for its variable {name!r} "
        f"(looked for {name}_initializer). Pass layers=[...] without {layer.name!r}."
    )


def _reinitialize(layer: keras.Layer, seed: int, function: str) -> None:
    """Draw fresh values for every variable of ``layer`` from its own initializers.

    Raises:
        ValueError: For a variable without an initializer, prefixed by ``function``.
    """
    for offset, variable in enumerate(layer.weights):
        initializer = _initializer_of(layer, variable, function)
        config = initializer.get_config()
        if "seed" in config:
            config["seed"] = int(seed) * 1009 + offset
            initializer = type(initializer).from_config(config)
        variable.assign(initializer(tuple(variable.shape), dtype=variable.dtype))


@_validate.accepts_renamed(similarity="measure")
def randomization(
    analyzer_name: str,
    model: keras.Model,
    x,
    target=None,
    *,
    mode: str = "cascading",
    layers: list[str] | None = None,
    measure: str = "spearman_abs",
    seed: int = 0,
    **analyzer_params: Any,
) -> dict[str, np.ndarray]:
    """Model-parameter randomization test (Adebayo et al. 2018, "Sanity checks").

    The layers with weights (nested models included) are re-initialized from the
    top (output side) down, each with its own initializers
    (``kernel_initializer``, ``bias_initializer``, ...; seeded from ``seed``), on
    a clone of ``model``: ``"cascading"`` keeps the layers above randomized,
    ``"independent"`` restores the trained weights before randomizing the next
    layer. After each layer the explanation (of ``analyzer_name``, for the class
    the trained model predicts when ``target=None``) is compared with the
    original. A method that passes the check has similarities that drop as more
    layers are randomized.

    Args:
        analyzer_name: A registry name (``kx.analyzers.names()``).
        model: A Keras model (Sequential or Functional); it is not modified.
        x: The batch ``(B, ...)``.
        target: As in :mod:`keras_explain.targets`.
        mode: ``"cascading"`` (default) or ``"independent"``.
        layers: Names of the layers to randomize (default: every layer with
            weights); always randomized top-down.
        measure: ``"spearman_abs"`` (default), ``"spearman"``, ``"pearson"`` or
            ``"ssim"`` (see :func:`similarity`); formerly ``similarity=``.
        seed: Seed of the re-initialization, and of the method if it takes a
            ``seed`` (SmoothGrad, occlusion, RISE, ...): the original and every
            randomized explanation then use the same random draws.
        **analyzer_params: Passed to :func:`keras_explain.create_analyzer`.

    Returns:
        ``{layer name: (B,) similarities}``, in the order randomized.

    Raises:
        ValueError: For an unknown mode, similarity or layer name.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, name="hidden"),
        ...                           keras.layers.Dense(2, name="logits")])
        >>> x = np.random.default_rng(0).normal(size=(3, 6)).astype("float32")
        >>> result = kx.metrics.randomization("gradient", model, x, target=0)
        >>> list(result), result["logits"].shape
        (['logits', 'hidden'], (3,))
    """
    function = "randomization"
    explanations = randomized_explanations(
        function,
        analyzer_name,
        model,
        x,
        target,
        mode=mode,
        layers=layers,
        seed=seed,
        analyzer_params=analyzer_params,
    )
    return compared(function, explanations, measure)


def compared(function: str, explanations, measure: str) -> dict[str, np.ndarray]:
    """``{name: (B,) similarities}`` of each explanation after the first with the first.

    Args:
        function: The metric's name, for error messages.
        explanations: ``(name, explanation)`` pairs, the first the original
            (as :func:`randomized_explanations` yields them).
        measure: As in :func:`similarity`.

    Returns:
        The similarities, in the order given (the first left out).

    Raises:
        ValueError: For an unknown measure.
    """
    _known(function, measure)
    _, original = next(explanations)
    if measure == "ssim":
        return {
            name: _compare(original, explanation, measure) for name, explanation in explanations
        }
    prepared = _prepared(original, measure)  # the original's ranks, once

    def similarity_to_original(explanation):
        return _correlate(prepared, _prepared(explanation, measure))

    # each explanation is ranked on a second thread while the next one is computed
    # (numpy's sort releases the GIL)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pending = {
            name: pool.submit(similarity_to_original, explanation)
            for name, explanation in explanations
        }
        return {name: future.result() for name, future in pending.items()}


def randomized_explanations(
    function: str,
    analyzer_name: str,
    model: keras.Model,
    x,
    target=None,
    *,
    mode: str = "cascading",
    layers: list[str] | None = None,
    seed: int = 0,
    analyzer_params: dict[str, Any] | None = None,
    wrap: Any = None,
    every_layer: bool = True,
):
    """Explanations of a clone of ``model`` as its layers are re-initialized top-down.

    The one loop of the randomization checks (:func:`randomization`,
    ``smooth_mprt``, ``efficient_mprt``): yields ``(None, explanation)`` of the
    trained model, then ``(layer name, explanation)`` after each layer is
    re-initialized as :func:`randomization` describes (``mode``, ``layers``,
    ``seed``). The clone is back at the trained weights when the generator ends.

    Args:
        function: The metric's name, for error messages.
        analyzer_name, model, x, target, mode, layers, seed: As in :func:`randomization`.
        analyzer_params: Passed to :func:`keras_explain.create_analyzer`.
        wrap: Optional ``wrap(analyzer) -> analyzer`` explaining instead (a
            :class:`~keras_explain.NoiseTunnel` around it, for smooth MPRT).
        every_layer: Explain after every layer; if False only once, after the
            last (with ``"cascading"``: the fully randomized model).

    Yields:
        ``(name, (B, ...) explanation)`` pairs, the trained model's first.

    Raises:
        ValueError: For an unknown mode or layer name.
        TypeError: For a model that is not a Keras model.
    """
    mode = checked(function, _validate.one_of, mode, "mode", MODES)
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"{function} re-initializes a clone of a Keras model. Received: model of type "
            f"{type(model).__name__}."
        )
    key = feature_key(x, function)  # a dict x: its feature input's attributions compared
    x = as_batch(x, function) if key is None else dict(x)
    analyzer_params = dict(analyzer_params or {})
    if takes_seed(analyzer_name):
        # a sampling method (smoothgrad, occlusion, ...) draws the same noise for the
        # original and every randomized explanation, so only the weights differ
        analyzer_params = {"seed": seed, **analyzer_params}
    clone, analyzer = clone_and_analyzer(model, analyzer_name, analyzer_params)
    trained = model.get_weights()
    clone.set_weights(trained)
    candidates = [layer for layer in leaf_layers(clone) if layer.weights]
    if layers is not None:
        names = [layer.name for layer in candidates]
        unknown = [name for name in layers if name not in names]
        if unknown:
            raise ValueError(
                f"{function}: unknown layer {unknown[0]!r}, or a layer without weights. "
                f"Received: layers={list(layers)!r}. Layers with weights: {names}."
            )
        candidates = [layer for layer in candidates if layer.name in layers]
    target = fixed_target(analyzer, x, target)
    explainer = analyzer if wrap is None else wrap(analyzer)

    def explain() -> np.ndarray:
        result = explainer.analyze(x, target)
        return result if key is None else result[key]

    try:
        yield None, explain()
        top_down = list(reversed(candidates))
        for index, layer in enumerate(top_down):
            if mode == "independent" and index:
                clone.set_weights(trained)
            _reinitialize(layer, seed * 7919 + index, function)
            if every_layer or index == len(top_down) - 1:
                yield layer.name, explain()
    finally:
        clone.set_weights(trained)  # a reused clone starts from trained weights anyway


def clone_and_analyzer(model: keras.Model, name: str, params: dict[str, Any]) -> tuple:
    """A clone of ``model`` and the analyzer ``name`` on it, reused for the same arguments.

    The analyzer reads the clone's variables, so assigning weights to the clone
    needs no new trace; the clone is reused while ``model`` is the same object
    with the same number of weights (its values are copied on every call).
    """
    key = (id(model), name, repr(sorted(params.items())))
    entry = _CLONES.get(key)
    if entry is not None and entry[0] is model and len(entry[1].weights) == len(model.weights):
        _CLONES.move_to_end(key)
        return entry[1], entry[2]
    clone = cloned(model)
    analyzer = create_analyzer(name, clone, **params)
    _CLONES[key] = (model, clone, analyzer)
    while len(_CLONES) > _KEEP:
        _CLONES.popitem(last=False)
    return clone, analyzer


# -- The columns of kx.metrics.evaluate (registered once, see kx.metrics.registry) ----------
@register_metric("randomization", better="lower")
def _randomization(context: MetricContext) -> np.ndarray:
    """Spearman of ``|a|`` after cascading randomization of every layer (the last step)."""
    c = context
    # randomization's `seed` seeds the re-initialization and the method's draws
    # (the same for the original and every randomized explanation)
    method_params = {key: value for key, value in c.params.items() if key != "seed"}
    similarities = randomization(
        c.name, c.model, c.x, c.target, seed=c.seed, **{"verbose": 0, **method_params}
    )
    return list(similarities.values())[-1]
