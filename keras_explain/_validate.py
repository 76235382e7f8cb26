"""Argument checks shared by every analyzer: one rule per kind of argument, one message."""

from __future__ import annotations

import difflib
import functools
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np


def positive_int(value: Any, name: str) -> int:
    """``value`` as an int >= 1.

    Raises:
        ValueError: For anything else (bools and floats included).
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive int. Received: {name}={value!r}.")
    return int(value)


def optional_positive_int(value: Any, name: str, meaning: str) -> int | None:
    """None, or ``value`` as an int >= 1; ``meaning`` says what None does.

    Raises:
        ValueError: For anything else.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(
            f"{name} must be a positive int. Received: {name}={value!r}. Pass None for {meaning}."
        )
    return int(value)


def internal_batch_size(value: Any) -> int | None:
    """Validate ``internal_batch_size``: rows per model pass, or None for the memory budget."""
    return optional_positive_int(
        value,
        "internal_batch_size",
        "rows chosen from the memory budget (keras_explain.config.memory_budget())",
    )


def non_negative(value: Any, name: str, hint: str = "") -> float:
    """``value`` as a float >= 0.

    Raises:
        ValueError: For a negative, NaN or non-numeric value.
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not number >= 0:
        raise ValueError(f"{name} must be >= 0{hint}. Received: {name}={value!r}.")
    return number


def positive(value: Any, name: str) -> float:
    """``value`` as a float > 0.

    Raises:
        ValueError: Otherwise.
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not number > 0:
        raise ValueError(f"{name} must be > 0. Received: {name}={value!r}.")
    return number


def boolean(value: Any, name: str, owner: str, where: str = "") -> bool:
    """``value`` as a bool if it is True or False (numpy's too).

    Raises:
        TypeError: Naming ``owner``, the argument and what was received.
    """
    if not isinstance(value, bool | np.bool_):
        raise TypeError(
            f"{owner}: {name} must be True or False. Received: {name}={value!r}{where}."
        )
    return bool(value)


def one_of(value: Any, name: str, choices: Sequence[Any]) -> Any:
    """``value`` if it is one of ``choices``.

    Raises:
        ValueError: Naming the choices.
    """
    if value not in choices:
        raise ValueError(
            f"Unknown {name}. Received: {name}={value!r}. Expected one of {tuple(choices)}."
        )
    return value


def renamed_keywords(owner: str, kwargs: dict, renamed: dict[str, str]) -> dict:
    """``kwargs`` with the old spellings of renamed keywords replaced by the new ones.

    Each old spelling found gives a ``FutureWarning`` naming both; the old spellings
    are accepted for one release.

    Raises:
        TypeError: If both spellings of one keyword are given.
    """
    found = [old for old in renamed if old in kwargs]
    if not found:
        return kwargs
    kwargs = dict(kwargs)
    for old in found:
        new = renamed[old]
        if new in kwargs:
            raise TypeError(
                f"{owner} got both {old!r} and {new!r}, two spellings of one parameter. "
                f"Pass {new}= only ({old}= is its former name)."
            )
        warnings.warn(
            f"{owner}: the parameter {old}= is now called {new}=; {old}= still works in "
            "this release and will be removed in the next one.",
            FutureWarning,
            stacklevel=3,
        )
        kwargs[new] = kwargs.pop(old)
    return kwargs


def accepts_renamed(**renamed: str) -> Callable:
    """Decorator: a function that also takes the former spellings of renamed keywords.

    ``@accepts_renamed(similarity="measure")`` maps ``similarity=`` to ``measure=``
    with a ``FutureWarning`` (:func:`renamed_keywords`) before the function runs.
    """

    def decorate(function: Callable) -> Callable:
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            return function(*args, **renamed_keywords(function.__name__, kwargs, renamed))

        return wrapper

    return decorate


def _is_methods(value: Any) -> bool:
    """Whether ``value`` names methods: a registry name, a list of them or a ``{name: params}``."""
    if isinstance(value, str | Mapping):
        return True
    return (
        isinstance(value, list | tuple)
        and len(value) > 0
        and all(isinstance(item, str) for item in value)
    )


def methods_first(owner: str, methods: Any, model: Any, x: Any) -> tuple[Any, Any, Any]:
    """``(methods, model, x)`` of a call in the one order of functions taking a method and a model.

    ``create_analyzer(name, model)``, ``explain_dataset(method, model, data)``,
    ``randomization(name, model, x)``, ``evaluate(methods, model, x)``,
    ``report(methods, model, x)``: the method first. A call in the former order
    ``(model, x, methods)`` is recognised (``methods`` last and not first), gives a
    ``FutureWarning`` and is reordered.
    """
    if _is_methods(x) and not _is_methods(methods):
        warnings.warn(
            f"{owner}: the method now comes first, {owner}(methods, model, x, ...), as in "
            "create_analyzer(name, model) and explain_dataset(method, model, data); the "
            "former order (model, x, methods) still works in this release and will be "
            "removed in the next one.",
            FutureWarning,
            stacklevel=3,
        )
        return x, methods, model
    return methods, model, x


def unexpected_parameters(owner: str, received: Iterable[str], valid: Iterable[str]) -> None:
    """Raise for keyword arguments an analyzer does not take.

    Raises:
        TypeError: ``"IntegratedGradients got an unexpected parameter 'stepz'.
            Did you mean 'steps'? Valid: ..."``.
    """
    received = sorted(received)
    if not received:
        return
    valid = sorted(set(valid))
    name = received[0]
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise TypeError(
        f"{owner} got an unexpected parameter {name!r}.{hint} Valid: {', '.join(valid)}."
    )


def baseline(value: Any, sample_shape: Sequence[int | None], name: str = "baseline") -> Any:
    """Check a baseline against one sample's shape, when the analyzer is built.

    A baseline is a scalar, an array shaped like one sample, or an array
    shaped like a whole batch (checked against the batch in ``analyze``).

    Returns:
        The baseline (a float for scalars, else a float32 array).

    Raises:
        ValueError: For any other shape, or non-finite values.
    """
    if isinstance(value, int | float | np.integer | np.floating):
        return float(value)
    array = np.asarray(value, dtype=np.float32)
    if array.ndim == 0:
        return float(array)
    if not np.isfinite(array).all():
        raise ValueError(
            f"{name} contains NaN or Inf values. Received: {name} of shape {array.shape}."
        )
    sample = tuple(sample_shape)
    if matches(array.shape, sample) or (
        len(array.shape) == len(sample) + 1 and matches(array.shape[1:], sample)
    ):
        return array
    raise ValueError(
        f"{name} must be a scalar, shaped like one sample {_shape(sample)} or like a batch "
        f"{_shape((None, *sample))}. Received: shape {array.shape}."
    )


def batch_baseline(value: Any, batch_shape: Sequence[int], split: bool, name: str = "baseline"):
    """Check a baseline against the batch being explained (before tracing).

    Raises:
        ValueError: For a batch-shaped baseline of the wrong batch size, or one
            used while the batch is split (``batch_size``, a dataset).
    """
    if not isinstance(value, np.ndarray) or value.ndim != len(batch_shape):
        return
    if value.shape[0] != batch_shape[0] or split:
        raise ValueError(
            f"{name} must be a scalar, shaped like one sample {tuple(batch_shape[1:])} or like "
            f"the batch {tuple(batch_shape)}. Received: shape {value.shape}. A batch-shaped "
            "baseline needs the whole batch in one call: analyze without batch_size and not "
            "from a tf.data.Dataset, or pass a baseline shaped like one sample."
        )


def matches(shape: Sequence[int], expected: Sequence[int | None]) -> bool:
    return len(shape) == len(expected) and all(
        want is None or got == want for got, want in zip(shape, expected)
    )


def _shape(shape: Sequence[int | None]) -> str:
    return (
        "("
        + ", ".join("batch" if d is None else str(d) for d in shape)
        + (",)" if len(shape) == 1 else ")")
    )


def background_set(owner: str, background: Any, specs) -> list[np.ndarray]:
    """A background set of baselines, one ``(N, *sample_shape)`` float32 array per input.

    Raises:
        ValueError: For a missing or empty background, the wrong number of
            entries for a multi-input model, a shape that does not match one
            sample of the model's input, or non-finite values.
    """
    count = 1 if specs is None else len(specs)
    if background is None:
        raise ValueError(
            f"{owner} needs background=, an array of baselines shaped (N, *sample shape). "
            "Received: background=None."
        )
    if count > 1:
        if not isinstance(background, list | tuple) or len(background) != count:
            received = len(background) if isinstance(background, list | tuple) else "an array"
            raise ValueError(
                f"{owner}: background needs one array per model input ({count}). "
                f"Received: {received}."
            )
        items = list(background)
    else:
        items = [background]
    arrays = []
    for position, item in enumerate(items):
        integer = specs is not None and np.issubdtype(np.dtype(specs[position].dtype), np.integer)
        array = np.asarray(item, dtype=np.int32 if integer else np.float32)  # tokens stay ids
        sample = None if specs is None else tuple(specs[position].shape[1:])
        if array.ndim == 0 or array.shape[0] == 0:
            raise ValueError(
                f"{owner}: background is empty. Received: background of shape {array.shape}. "
                "Pass at least one baseline, shaped (N, *sample shape)."
            )
        if sample is not None and not matches(array.shape[1:], sample):
            raise ValueError(
                f"{owner}: background must be shaped (N, {', '.join(map(str, sample))}), a "
                f"stack of baselines each shaped like one sample. Received: shape {array.shape}."
            )
        if not np.isfinite(array).all():
            raise ValueError(
                f"{owner}: background contains NaN or Inf values. Received: background of "
                f"shape {array.shape}."
            )
        arrays.append(array)
    if len({a.shape[0] for a in arrays}) > 1:
        raise ValueError(
            f"{owner}: every input's background needs the same number of baselines. "
            f"Received: {[a.shape[0] for a in arrays]}."
        )
    return arrays
