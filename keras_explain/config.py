"""Library-wide settings: the memory budget of one pass through the model.

Methods that evaluate the model on many copies of each input (Integrated
Gradients' path points, SmoothGrad's noisy copies, occlusion windows, RISE
masks, Score-CAM's masked inputs) run them in passes of at most
``memory_budget()`` bytes, estimated from the model's static shapes (see
:func:`rows_per_pass`), and accumulate the results as running sums. Memory then
stays flat however many steps or samples are asked for; an analyzer's
``internal_batch_size`` overrides the estimate.

The default is 1 GiB on a machine with a GPU and 512 MiB otherwise (a CPU is
saturated by far smaller passes). Raise it on large GPUs for throughput,
lower it when memory is tight.

Example:
    >>> import keras_explain as kx
    >>> previous = kx.config.memory_budget()
    >>> kx.config.set_memory_budget(256 * 2**20)
    >>> kx.config.memory_budget()
    268435456
    >>> kx.config.set_memory_budget(previous)
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

_budget: int | None = None

#: Activation bytes per input byte assumed for a model whose activations cannot
#: be read from static shapes (subclassed models, callables); keras.applications
#: models have 20 to 150.
UNKNOWN_MODEL_FACTOR = 64
#: Passes never hold more rows than this (progress bars need several passes).
MAX_ROWS = 4096


def memory_budget() -> int:
    """The bytes of activations one pass may hold (see the module docstring).

    Returns:
        The budget in bytes.
    """
    if _budget is not None:
        return _budget
    return 2**30 if tf.config.list_logical_devices("GPU") else 2**29


def set_memory_budget(budget: int | None) -> None:
    """Set the memory budget of one pass, in bytes; None restores the default.

    Args:
        budget: A positive int (bytes), or None.

    Raises:
        ValueError: For a non-positive or non-integer budget.

    Example:
        >>> import keras_explain as kx
        >>> kx.config.set_memory_budget(0)
        Traceback (most recent call last):
        ...
        ValueError: The memory budget must be a positive int (bytes) or None (the default). \
Received: budget=0.
    """
    global _budget
    if budget is not None and (
        isinstance(budget, bool) or not isinstance(budget, int | np.integer) or budget < 1
    ):
        raise ValueError(
            "The memory budget must be a positive int (bytes) or None (the default). "
            f"Received: budget={budget!r}."
        )
    _budget = None if budget is None else int(budget)


def rows_per_pass(
    bytes_per_row: int | None,
    input_elements: int,
    *,
    factor: float,
    override: int | None = None,
) -> int:
    """Rows of one pass through the model within the memory budget.

    Args:
        bytes_per_row: Bytes of all the values of the model's graph for one row
            (:meth:`keras_explain.graph.Plan.bytes_per_sample`), or None when unknown.
        input_elements: Elements of one input row (the fallback estimate).
        factor: Peak bytes of a pass per ``bytes_per_row`` byte, for the kind of
            pass (an analyzer's ``forward_memory_factor`` or
            ``backward_memory_factor``: about 0.2 for forward passes,
            0.35 for gradients, 1.1 for LRP's modified backward pass, measured
            on keras.applications models by ``benchmarks/bench_memory.py``).
        override: An analyzer's ``internal_batch_size``, used as is.

    Returns:
        A positive number of rows.
    """
    if override is not None:
        return int(override)
    if bytes_per_row is None:
        bytes_per_row = 4 * UNKNOWN_MODEL_FACTOR * max(1, input_elements)
    cost = max(1.0, bytes_per_row * factor)
    return int(max(1, min(MAX_ROWS, memory_budget() // cost)))
