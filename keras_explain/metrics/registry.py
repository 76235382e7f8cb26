"""The metric columns: each registered once, every table, default and check read from here.

A column of :func:`keras_explain.metrics.evaluate` is a :class:`Metric`: its
name, which direction is better, whether it needs ground-truth masks, whether
``evaluate`` and :func:`keras_explain.report` compute it by default, and a
function that turns a :class:`MetricContext` into one value per sample.
:func:`register_metric` adds one; from then on it is in
:data:`keras_explain.metrics.METRICS`, in ``evaluate``'s default columns (unless
``default=False``), accepted by ``evaluate(metrics=...)``, ``kx.report(metrics=...)``
and ``ExplanationLogger(metrics=...)`` (all three check names with
:func:`check_metrics`), in ``keras-explain benchmark``'s table and its "better"
arrows, and in the report's sortable metrics table. Columns keep the order in
which they were registered. The built-in ones are registered by their family's
module, next to the function they call, in the order
:mod:`keras_explain.metrics` imports those modules (alphabetical); this module
imports none of them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from keras_explain import _validate

#: The two values ``better`` may take.
DIRECTIONS = ("higher", "lower")
#: Keys of every row of :func:`keras_explain.metrics.evaluate` that are not metrics.
ROW_KEYS = ("method", "seconds_per_sample")


@dataclasses.dataclass(frozen=True)
class MetricContext:
    """What a metric column is computed from: one method's explanation of one batch.

    Attributes:
        model: The Keras model (or callable ``f(x) -> scores``) explained.
        x: The batch, a float32 numpy array ``(B, ...)``.
        attributions: The method's explanation of ``x`` (as ``analyze`` returned it).
        target: As in :mod:`keras_explain.targets`.
        analyzer: The analyzer that produced ``attributions`` (sensitivity-max
            runs it again on noisy inputs).
        name: The analyzer's registry name (``randomization`` rebuilds it on a
            randomized clone), ``None`` when it was given as an object.
        params: The analyzer's parameters, ``{parameter: value}``.
        masks: Ground-truth masks ``(B, H, W)``, or ``None``.
        steps: Steps of the deletion and insertion curves.
        seed: Seed of every random metric.
    """

    model: Any
    x: np.ndarray
    attributions: Any
    target: Any
    analyzer: Any
    name: str | None
    params: Mapping[str, Any]
    masks: Any
    steps: int
    seed: int


@dataclasses.dataclass(frozen=True)
class Metric:
    """One registered metric column.

    Attributes:
        name: The column name (a row key of :func:`keras_explain.metrics.evaluate`).
        better: ``"higher"`` or ``"lower"``: which direction is better.
        values: ``values(context: MetricContext)`` returns one value per sample ``(B,)``;
            :func:`keras_explain.metrics.evaluate` writes their NaN-ignoring mean.
        needs_masks: Whether the column compares with ground-truth masks (it is
            then left out of the defaults without masks, and refused by the checks).
        default: Whether :func:`keras_explain.metrics.evaluate` (and so
            ``keras-explain benchmark``) computes it when ``metrics=None``.
        report_default: Whether :func:`keras_explain.report` computes it when
            ``metrics=None`` (cheap columns: the report runs on every call).
    """

    name: str
    better: str
    values: Callable[[MetricContext], Any]
    needs_masks: bool = False
    default: bool = True
    report_default: bool = False


_REGISTRY: dict[str, Metric] = {}


def register_metric(
    name: str,
    *,
    better: str,
    needs_masks: bool = False,
    default: bool = True,
    report_default: bool = False,
) -> Callable[[Callable[[MetricContext], Any]], Callable[[MetricContext], Any]]:
    """Decorator: register a function ``values(context) -> (B,)`` as the metric column ``name``.

    This one registration is all a new metric needs: the catalogue
    (:data:`keras_explain.metrics.METRICS`), the defaults, the name checks of
    ``evaluate``, ``kx.report`` and ``ExplanationLogger``, and the benchmark's
    "better" arrows read it.

    Args:
        name: The column name; not one of :data:`ROW_KEYS` nor a registered name.
        better: ``"higher"`` or ``"lower"``.
        needs_masks: Whether the column needs ground-truth masks (``context.masks``).
        default: Whether :func:`keras_explain.metrics.evaluate` computes it by default.
        report_default: Whether :func:`keras_explain.report` computes it by default.

    Returns:
        The decorator, which registers the function and returns it unchanged.

    Raises:
        ValueError: For a taken or reserved name, or ``better`` not in :data:`DIRECTIONS`.
        TypeError: If the decorated object is not callable, or a flag is not a bool.

    Example:
        >>> import numpy as np, keras_explain as kx
        >>> @kx.metrics.register_metric("positive_share", better="higher", default=False)
        ... def positive_share(context):
        ...     flat = np.asarray(context.attributions).reshape(len(context.x), -1)
        ...     return (flat > 0).mean(axis=1)
        >>> "positive_share" in kx.metrics.METRICS
        True
        >>> kx.metrics.registry.unregister_metric("positive_share").better
        'higher'
    """
    if not isinstance(name, str) or not name or name in ROW_KEYS:
        raise ValueError(
            f"register_metric: name must be a non-empty string other than {ROW_KEYS} (the "
            f"other keys of a row). Received: name={name!r}."
        )
    if name in _REGISTRY:
        raise ValueError(
            f"register_metric: the metric {name!r} is already registered. Pick another name, "
            f"or call kx.metrics.registry.unregister_metric({name!r}) first."
        )
    if better not in DIRECTIONS:
        raise ValueError(
            f"register_metric: better must be one of {DIRECTIONS}. Received: better={better!r} "
            f"for the metric {name!r}."
        )
    flags = {"needs_masks": needs_masks, "default": default, "report_default": report_default}
    for flag, value in flags.items():
        _validate.boolean(value, flag, "register_metric", f" for the metric {name!r}")

    def decorate(values: Callable[[MetricContext], Any]) -> Callable[[MetricContext], Any]:
        if not callable(values):
            raise TypeError(
                f"register_metric: the metric {name!r} needs a function values(context) -> (B,) "
                f"values. Received: {values!r}."
            )
        _REGISTRY[name] = Metric(name, better, values, **flags)
        return values

    return decorate


def unregister_metric(name: str) -> Metric:
    """Remove the metric column ``name`` from the registry.

    Args:
        name: A registered name.

    Returns:
        The removed :class:`Metric` (register it again with its fields).

    Raises:
        ValueError: For a name that is not registered.

    Example:
        >>> import keras_explain as kx
        >>> def zero(context):
        ...     return 0.0
        >>> kx.metrics.register_metric("zero", better="lower")(zero) is zero
        True
        >>> kx.metrics.registry.unregister_metric("zero").name
        'zero'
    """
    return _REGISTRY.pop(get_metric(name, "unregister_metric").name)


def get_metric(name: str, caller: str = "get_metric") -> Metric:
    """The :class:`Metric` registered as ``name``.

    Args:
        name: A registered name.
        caller: The function named first in the error message.

    Returns:
        The :class:`Metric`.

    Raises:
        ValueError: For a name that is not registered; the message lists the names.
    """
    metric = _REGISTRY.get(name) if isinstance(name, str) else None
    if metric is None:
        raise ValueError(
            f"{caller}: unknown metric. Received: {name!r}. Expected some of {names()}."
        )
    return metric


def registered() -> tuple[Metric, ...]:
    """Every registered :class:`Metric`, in the order of registration (the column order)."""
    return tuple(_REGISTRY.values())


def names() -> tuple[str, ...]:
    """The registered column names, in order: :data:`keras_explain.metrics.METRICS`."""
    return tuple(_REGISTRY)


def directions() -> dict[str, str]:
    """``{name: "higher" or "lower"}``: which direction is better, per column."""
    return {metric.name: metric.better for metric in _REGISTRY.values()}


def default_metrics(*, masks: bool, report: bool = False) -> list[str]:
    """The columns computed when ``metrics=None``, in order.

    Args:
        masks: Whether ground-truth masks are given (else the columns that need
            them are left out).
        report: The defaults of :func:`keras_explain.report` (``report_default``)
            instead of those of :func:`keras_explain.metrics.evaluate` (``default``).

    Returns:
        The column names.
    """
    return [
        metric.name
        for metric in _REGISTRY.values()
        if (metric.report_default if report else metric.default)
        and (masks or not metric.needs_masks)
    ]


def check_metrics(
    metrics: str | Sequence[Any], *, masks: bool, caller: str, callables: bool = False
) -> list[Any]:
    """The one check of metric names, for ``evaluate``, ``kx.report`` and ``ExplanationLogger``.

    Args:
        metrics: A column name or a sequence of them.
        masks: Whether ground-truth masks are given.
        caller: The name that starts each error message (``"evaluate"``, ...).
        callables: Whether a callable is accepted in place of a name (it is
            passed through unchecked).

    Returns:
        The metrics as a list, in the order given.

    Raises:
        ValueError: For a name that is not registered (the message lists the
            registered names), or a column that needs masks when ``masks`` is false.

    Example:
        >>> from keras_explain.metrics import registry
        >>> registry.check_metrics("sparseness", masks=False, caller="evaluate")
        ['sparseness']
    """
    chosen = [metrics] if isinstance(metrics, str) else list(metrics)
    for name in chosen:
        if callables and callable(name):
            continue
        metric = _REGISTRY.get(name) if isinstance(name, str) else None
        if metric is None:
            also = " or a callable metric(model, x, attributions, target)" if callables else ""
            raise ValueError(
                f"{caller}: unknown metric. Received: {name!r}. Expected some of {names()}{also}."
            )
        if metric.needs_masks and not masks:
            raise ValueError(
                f"{caller}: metric {name!r} compares with ground-truth masks. Received: "
                "masks=None. Pass masks=(B, H, W) booleans (e.g. from kx.datasets.shapes), or "
                "leave the metric out."
            )
    return chosen


def metric_values(
    metric: str,
    model,
    x: np.ndarray,
    attributions: Any,
    target: Any,
    *,
    analyzer: Any,
    name: str | None,
    params: Mapping[str, Any],
    masks: Any,
    steps: int,
    seed: int,
) -> np.ndarray:
    """The per-sample values ``(B,)`` of one registered column, as ``evaluate`` computes them.

    ``kx.report`` and ``ExplanationLogger`` call it too, so their numbers are the table's.

    Args:
        metric: A registered name.
        model, x, attributions, target, analyzer, name, params, masks, steps, seed:
            The fields of the :class:`MetricContext` passed to the column's function.

    Returns:
        The values, a numpy array.

    Raises:
        ValueError: For an unknown name; whatever the column's function raises.
    """
    column = get_metric(metric, "metric_values")
    context = MetricContext(
        model=model,
        x=x,
        attributions=attributions,
        target=target,
        analyzer=analyzer,
        name=name,
        params=params,
        masks=masks,
        steps=steps,
        seed=seed,
    )
    return np.asarray(column.values(context))
