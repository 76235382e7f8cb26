"""One table, method × metric: the library function behind ``keras-explain benchmark``."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from keras_explain import _validate
from keras_explain._batching import VERBOSE
from keras_explain._validate import one_of
from keras_explain.analyzers.registry import create_analyzer
from keras_explain.metrics import registry
from keras_explain.metrics.engine import as_batch, spatial_shape


def parse_methods(methods: Any, caller: str = "evaluate") -> dict[str, tuple[str, dict]]:
    """Methods as ``{label: (registry name, {parameter: value})}``.

    Args:
        methods: A registry name, a list of them, or a dict ``{name: {parameter: value}}``.
        caller: The name that starts the error message (``"evaluate"``, ``"report"``).

    Returns:
        The methods, in order; the label is the name.

    Raises:
        ValueError: For anything else, or no methods.
    """
    if isinstance(methods, str):
        methods = [methods]
    if isinstance(methods, Mapping):
        items = [(label, value) for label, value in methods.items()]
    elif isinstance(methods, Sequence):
        items = [(name, {}) for name in methods]
    else:
        items = None
    if not items or not all(
        isinstance(label, str) and isinstance(params, Mapping) for label, params in items
    ):
        raise ValueError(
            f"{caller}: methods must be a list of registry names or a dict {{name: "
            f"{{parameter: value}}}}. Received: methods={methods!r}."
        )
    return {label: (label, dict(params)) for label, params in items}


def evaluate(
    methods,
    model,
    x,
    target=None,
    *,
    masks=None,
    metrics: Sequence[str] | None = None,
    steps: int = 100,
    seed: int = 0,
    verbose: Any = "auto",
) -> list[dict[str, Any]]:
    """Run every method on ``x`` and score it with every metric: one row per method.

    Each row holds ``method``, ``seconds_per_sample`` (the wall-clock time of
    ``analyze`` divided by the batch size) and the mean over the samples of each
    metric: ``deletion_auc`` (zero baseline) and ``insertion_auc`` (blur baseline)
    with ``min(steps, features)`` steps, ``infidelity`` (normalized, σ = 0.1),
    ``sensitivity_max`` (radius 0.02), ``pointing_game`` and ``relevance_mass``
    (with ``masks``), ``randomization`` (Spearman of ``|a|`` after cascading
    randomization of every layer with weights, the last step), ``sparseness``,
    and the columns added with :func:`~keras_explain.metrics.register_metric`.
    NaN values (a constant explanation) are left out of the means.

    Args:
        methods: Registry names (``["gradient", "grad_cam"]``), or a dict
            ``{name: {parameter: value}}``. The method comes first, as in
            ``create_analyzer(name, model)``; a call in the former order
            ``evaluate(model, x, methods)`` still works, with a ``FutureWarning``.
        model: A Keras model.
        x: The batch ``(B, ...)``.
        target: As in :mod:`keras_explain.targets` (``None``: the argmax).
        masks: Ground-truth masks ``(B, H, W)`` for the localisation metrics.
        metrics: The columns to compute, names of :data:`keras_explain.metrics.METRICS`
            (default: the registered columns marked ``default`` that the inputs
            allow; the localisation ones need ``masks``).
        steps: Steps of the deletion and insertion curves (at most the number
            of features).
        seed: Seed of every random metric.
        verbose: ``"auto"`` (a progress bar after two seconds), ``1`` or ``0``.

    Returns:
        A list of dict rows, one per method, in order.

    Raises:
        ValueError: For an unknown metric, a localisation metric without masks,
            or bad methods.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(),
        ...                           keras.layers.Dense(2)])
        >>> x = np.random.default_rng(0).normal(size=(2, 4, 4, 1)).astype("float32")
        >>> rows = kx.metrics.evaluate(["gradient"], model, x, metrics=["sparseness"],
        ...                            verbose=0)
        >>> sorted(rows[0])
        ['method', 'seconds_per_sample', 'sparseness']
    """
    from tqdm import tqdm

    function = "evaluate"
    methods, model, x = _validate.methods_first(function, methods, model, x)
    verbose = one_of(verbose, "verbose", VERBOSE)
    x = as_batch(x, function)
    if metrics is None:
        metrics = registry.default_metrics(masks=masks is not None)
    metrics = registry.check_metrics(metrics, masks=masks is not None, caller=function)
    chosen = parse_methods(methods, function)
    curve_steps = min(steps, math.prod(spatial_shape(x)))
    rows = []
    bar = tqdm(
        total=len(chosen) * (1 + len(metrics)),
        desc="evaluate",
        disable=verbose == 0,
        delay=0 if verbose == 1 else 2.0,
    )
    for label, (name, params) in chosen.items():
        analyzer = create_analyzer(name, model, **{"verbose": 0, **params})
        analyzer.analyze(x[:1], target if not _per_sample(target) else target[:1])  # trace
        start = time.perf_counter()
        attributions = analyzer.analyze(x, target)
        row = {"method": label, "seconds_per_sample": (time.perf_counter() - start) / len(x)}
        bar.update(1)
        for metric in metrics:
            values = registry.metric_values(
                metric,
                model,
                x,
                attributions,
                target,
                analyzer=analyzer,
                name=name,
                params=params,
                masks=masks,
                steps=curve_steps,
                seed=seed,
            )
            values = np.asarray(values, dtype=np.float64)
            defined = values[~np.isnan(values)]  # NaN: undefined for a sample
            row[metric] = float(defined.mean()) if defined.size else float("nan")
            bar.update(1)
        rows.append(row)
    bar.close()
    return rows


def _per_sample(target) -> bool:
    return target is not None and np.ndim(target) == 1 and not callable(target)
