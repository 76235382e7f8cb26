"""Run work in passes of bounded size: the one copy loop every multiplying method uses.

:func:`run_in_passes` calls ``body(start, size, accumulator)`` for
``start = 0, per_pass, 2 * per_pass, ...`` and threads the accumulator through:
inside a ``tf.function`` as one ``tf.while_loop`` (one trace, whatever the
count), eagerly as a Python loop (numpy-only callables). :func:`run_copies` is
the loop of every method that evaluates many copies of a batch (noise, path
points, baselines, perturbations, masked inputs): it makes the copies of a pass,
evaluates them in one call, and folds the values into a running accumulator, so
no tensor holds every pass at once. :func:`copies` and :func:`repeat` are the
one way to repeat a batch. :func:`dataset_parts` is the one loop over the
elements of a ``tf.data.Dataset`` given as ``x``. A :class:`Progress` bar
advances from inside the compiled loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

#: Seconds of work before a progress bar appears with ``verbose="auto"``.
PROGRESS_DELAY = 2.0
VERBOSE = ("auto", 0, 1)


class Progress:
    """A progress bar over passes, shown for long work only (tqdm's ``delay``).

    Args:
        verbose: ``"auto"`` (a bar once the work has lasted
            :data:`PROGRESS_DELAY` seconds), ``1`` (always) or ``0`` (never), as
            Keras' ``verbose``.
        description: The bar's label.
        unit: What is counted: ``"pass"`` (:meth:`tick`) or e.g. ``"sample"``
            (:meth:`advance`); tqdm shows the rate in units per second.
    """

    def __init__(self, verbose: Any, description: str, unit: str = "pass"):
        self.verbose = verbose
        self.description = description
        self.unit = unit
        self._bar = None

    def advance(self, count: int, total: int | None = None, done: int = 0) -> None:
        """Record ``count`` more units done; the first call opens the bar.

        Args:
            count: Units just finished.
            total: Units of the whole work, None when unknown (a stream).
            done: Units finished before this bar opened (a resumed run).
        """
        if self.verbose == 0:
            return
        if self._bar is None:
            from tqdm import tqdm

            delay = PROGRESS_DELAY if self.verbose == "auto" else 0.0
            self._bar = tqdm(
                total=total, initial=done, desc=self.description, unit=self.unit, delay=delay
            )
        self._bar.update(count)

    def tick(self, index: Any, total: Any) -> np.int32:
        """Record that pass ``index`` of ``total`` starts (runs on the host; returns 0)."""
        index, total = int(index), int(total)
        if self.verbose == 0 or total <= 1:
            return np.int32(0)
        if index == 0 or self._bar is None:
            from tqdm import tqdm  # plain text: tqdm.auto warns in Jupyter without ipywidgets

            self.finish()
            delay = PROGRESS_DELAY if self.verbose == "auto" else 0.0
            self._bar = tqdm(total=total, desc=self.description, unit="pass", delay=delay)
            self._bar.update(index)
        else:
            self._bar.update(1)
        return np.int32(0)

    def finish(self) -> np.int32:
        """Complete and close the bar, if one is open (returns 0)."""
        if self._bar is not None:
            if self._bar.total is not None:
                self._bar.update(self._bar.total - self._bar.n)
            self._bar.close()
            self._bar = None
        return np.int32(0)


def run_in_passes(
    count: Any,
    per_pass: int,
    body: Callable[[Any, Any, Any], Any],
    initial: Any,
    progress: Progress | None = None,
    relax: bool = False,
) -> Any:
    """Run ``body`` over ``count`` items in passes of at most ``per_pass``.

    Args:
        count: Number of items: a Python int or a scalar int tensor.
        per_pass: Items per pass (a Python int >= 1).
        body: ``body(start, size, accumulator) -> accumulator`` for the items
            ``start .. start + size - 1``; ``start``/``size`` are int32 tensors
            (or Python ints when the work fits in one pass).
        initial: The initial accumulator (any nest of tensors / TensorArrays).
        progress: An optional :class:`Progress`.
        relax: Let the accumulator's tensors change shape in the loop (a running
            sum that starts as a scalar 0 and takes the values' shape).

    Returns:
        The final accumulator.
    """
    if isinstance(count, int | np.integer) and count <= per_pass:
        return body(0, int(count), initial)
    count = tf.cast(count, tf.int32)
    passes = (count + per_pass - 1) // per_pass

    def step(index, accumulator):
        start = index * per_pass
        size = tf.minimum(per_pass, count - start)
        return body(start, size, accumulator)

    if not tf.inside_function():
        accumulator = initial
        for index in range(int(passes)):
            if progress is not None:
                progress.tick(index, int(passes))
            accumulator = step(tf.constant(index), accumulator)
        if progress is not None:
            progress.finish()
        return accumulator

    def loop(index, accumulator):
        if progress is None:
            return index + 1, step(index, accumulator)
        tick = tf.numpy_function(progress.tick, [index, passes], tf.int32, stateful=True)
        with tf.control_dependencies([tick]):
            return index + 1, step(index, accumulator)

    invariants = None
    if relax:
        invariants = (
            tf.TensorShape([]),
            tf.nest.map_structure(lambda _: tf.TensorShape(None), initial),
        )
    _, accumulator = tf.while_loop(
        lambda index, _: index < passes,
        loop,
        (tf.constant(0), initial),
        shape_invariants=invariants,
        parallel_iterations=1,
    )
    if progress is not None:  # close the bar after the loop, before the result is used
        with tf.control_dependencies(_tensors(accumulator)):
            done = tf.numpy_function(progress.finish, [], tf.int32, stateful=True)
        with tf.control_dependencies([done]):
            accumulator = tf.nest.map_structure(_identity, accumulator)
    return accumulator


def _tensors(structure) -> list[tf.Tensor]:
    """The tensors of a nest (a TensorArray's flow)."""
    return [
        item.flow if isinstance(item, tf.TensorArray) else item
        for item in tf.nest.flatten(structure, expand_composites=False)
    ]


def _identity(item):
    return item.identity() if isinstance(item, tf.TensorArray) else tf.identity(item)


def copies(x: tf.Tensor, size: Any) -> tf.Tensor:
    """``size`` copies of a batch, ``(B, ...) -> (size, B, ...)`` (a broadcast, no data copied)."""
    x = tf.convert_to_tensor(x)
    return tf.broadcast_to(x[None], tf.concat([[size], tf.shape(x)], 0))


def repeat(x: tf.Tensor | None, size: Any) -> tf.Tensor | None:
    """``size`` copies of a batch as rows, copy-major: ``(B, ...) -> (size * B, ...)``.

    Row ``c * B + b`` is row ``b`` of ``x``: the layout of a pass of :func:`run_copies`
    (per-sample target indices, token ids). None stays None.
    """
    if x is None:
        return None
    return flatten_copies(copies(x, size))


def flatten_copies(x: tf.Tensor) -> tf.Tensor:
    """``(size, B, ...) -> (size * B, ...)``, copy-major."""
    return tf.reshape(x, tf.concat([[-1], tf.shape(x)[2:]], 0))


def run_copies(
    count: Any,
    per_pass: int,
    make: Callable[[Any, Any], tuple[list[tf.Tensor], Any]],
    evaluate: Callable[[list[tf.Tensor], Any], list[tf.Tensor]],
    accumulate: Callable[..., Any] | None = None,
    initial: Any = None,
    progress: Progress | None = None,
) -> Any:
    """Evaluate ``count`` copies of every sample of a batch, ``per_pass`` copies per pass.

    Args:
        count: Copies of each sample: a Python int or a scalar int tensor.
        per_pass: Copies per pass (a Python int >= 1); a pass evaluates
            ``per_pass * B`` rows in one call.
        make: ``make(start, size) -> (copies, aux)``: copies ``start .. start +
            size - 1`` as a list of ``(size, B, ...)`` tensors, and anything
            ``accumulate`` needs (or None).
        evaluate: ``evaluate(flat, size) -> values``: the copies flattened
            copy-major to ``(size * B, ...)`` (see :func:`repeat` for tensors that
            must follow the same layout), and their values, a list of
            ``(size * B, ...)`` tensors.
        accumulate: ``accumulate(accumulator, values, aux, start, size) ->
            accumulator``, the values cast to float32 and reshaped ``(size, B,
            ...)``; the accumulator may start as scalars and take the values'
            shape. None keeps every value instead (``evaluate`` must then return
            one tensor per pass).
        initial: The initial accumulator (with ``accumulate``).
        progress: An optional :class:`Progress`.

    Returns:
        The final accumulator, or without ``accumulate`` the values of every copy
        as one float32 tensor ``(count, B, ...)``.
    """
    if accumulate is None:
        return _run_copies_kept(count, per_pass, make, evaluate, progress)

    def body(start, size, accumulator):
        made, aux = make(start, size)
        values = _by_copy(evaluate([flatten_copies(c) for c in made], size), size, made)
        return accumulate(accumulator, values, aux, start, size)

    return run_in_passes(count, per_pass, body, initial, progress, relax=True)


def _by_copy(values: list[tf.Tensor], size: Any, made: list[tf.Tensor]) -> list[tf.Tensor]:
    """Values ``(size * B, ...)`` as float32 ``(size, B, ...)``."""
    batch = tf.shape(made[0])[1]
    return [
        tf.reshape(tf.cast(v, tf.float32), tf.concat([[size, batch], tf.shape(v)[1:]], 0))
        for v in values
    ]


def _run_copies_kept(count, per_pass, make, evaluate, progress):
    if isinstance(count, int | np.integer) and count <= per_pass:
        made, _ = make(0, int(count))
        (values,) = _by_copy(evaluate([flatten_copies(c) for c in made], int(count)), count, made)
        return values
    passes = (tf.cast(count, tf.int32) + per_pass - 1) // per_pass
    kept = tf.TensorArray(tf.float32, size=passes, infer_shape=False)
    shape = []  # the static shape of one copy's values, known once the body is traced

    def body(start, size, kept):
        made, _ = make(start, size)
        flat = [flatten_copies(c) for c in made]
        (values,) = _by_copy(evaluate(flat, size), size, made)
        shape[:] = [made[0].shape[1], *values.shape[2:]]
        return kept.write(start // per_pass, values)

    result = run_in_passes(count, per_pass, body, kept, progress).concat()
    result.set_shape([None, *shape])
    return result


def dataset_parts(dataset: tf.data.Dataset, target: Any) -> Any:
    """The elements of a ``tf.data.Dataset`` given as ``x``, with their part of ``target``.

    Yields:
        ``(first_row, x, target)`` per element: the position of its first sample,
        its ``x`` (the first item of ``(x, y)`` elements) and the target of its
        samples (a per-sample target array is sliced, any other target is kept).
    """
    per_sample = None
    if target is not None and not isinstance(target, str) and not callable(target):
        array = np.asarray(target)
        per_sample = array if array.ndim == 1 else None
    offset = 0
    for element in dataset:
        x = element[0] if isinstance(element, tuple) else element
        size = int(keras.tree.flatten(x)[0].shape[0])
        part = target if per_sample is None else per_sample[offset : offset + size]
        yield offset, x, part
        offset += size
