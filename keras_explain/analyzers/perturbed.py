"""Evaluate many perturbed copies of a batch: the engine of the model-agnostic family.

:class:`Perturbation` is the base of occlusion, Shapley sampling, RISE,
meaningful perturbation, LIME and KernelSHAP. It knows one thing: how to push
many perturbed copies of a batch through the model in large batches.

- A Keras model is evaluated inside the analyzer's compiled function: the
  copies are generated chunk by chunk inside a ``tf.while_loop`` (bounded
  memory, one trace) and each chunk goes through the model in one call.
- A plain callable ``f(x) -> scores`` (e.g. a scikit-learn pipeline's
  ``predict_proba``) is numpy-only and cannot be traced: the same code runs
  eagerly and the callable receives numpy arrays of many rows at a time.

The target is resolved once on the clean input (``None`` becomes the argmax of
``f(x)``) and then fixed for every perturbation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_explain.analyzers.base import Analyzer
from keras_explain.targets import Target, fix_target

#: Input elements (floats) per model call when ``internal_batch_size`` is None.
ELEMENTS_PER_CALL = 2**24
#: Upper bound on rows per model call when ``internal_batch_size`` is None.
MAX_ROWS_PER_CALL = 4096
#: A run that feeds at least this many input elements to the model shows a
#: progress bar when ``progress=None`` (about 450 rows of 224x224x3 images).
LONG_RUN_ELEMENTS = 2**26


def spatial_axes(rank: int) -> list[int]:
    """Axes of a batch of rank ``rank`` that windows, masks and superpixels cover.

    The last axis of an input of rank >= 3 is the channel axis, which every
    perturbation spans; a 2-D input ``(batch, features)`` has no channel axis.
    """
    if rank < 2:
        raise ValueError(
            f"Perturbation methods need a batch of rank >= 2, (batch, features...). "
            f"Received: rank {rank}."
        )
    return [1] if rank == 2 else list(range(1, rank - 1))


def spread_over_channels(values: tf.Tensor, rank: int) -> tf.Tensor:
    """Give a ``(batch, *spatial)`` tensor the channel axis of a rank-``rank`` input."""
    return values if rank == 2 else values[..., None]


def broadcast_baseline(baseline: Any, x: tf.Tensor, name: str = "baseline") -> tf.Tensor:
    """A baseline (scalar, one sample, or the batch) broadcast to the shape of ``x``.

    Raises:
        ValueError: If the baseline has none of those shapes.
    """
    value = tf.cast(tf.convert_to_tensor(baseline), x.dtype)
    sample = tuple(x.shape[1:])
    if value.shape.rank == 0 or tuple(value.shape) == sample:
        return tf.broadcast_to(value, tf.shape(x))
    if tuple(value.shape) == tuple(x.shape):
        return value
    raise ValueError(
        f"{name} must be a scalar, shaped like one sample {sample} or like the batch "
        f"{tuple(x.shape)}. Received: shape {tuple(value.shape)}."
    )


def blend(x: tf.Tensor, baseline: Any, keep: tf.Tensor) -> tf.Tensor:
    """Copies ``keep * x + (1 - keep) * baseline`` with the fewest full-size passes.

    Args:
        x: The batch ``(B, ...)``.
        baseline: The user's baseline (scalar, one sample or the batch).
        keep: Masks broadcastable to ``(n, B, ...)``: 1 keeps ``x``, 0 puts the
            baseline.

    Returns:
        The ``(n, B, ...)`` copies.
    """
    if isinstance(baseline, int | float | np.integer | np.floating):
        if baseline == 0:
            return x[None] * keep
        return (x - baseline)[None] * keep + baseline
    base = broadcast_baseline(baseline, x)
    return (x - base)[None] * keep + base[None]


class Perturbation(Analyzer):
    """Base class of the model-agnostic analyzers.

    Args:
        model: A Keras model, or any callable ``f(x) -> scores`` returning one
            row of scores per input row, e.g. ``pipeline.predict_proba``.
        seed: Seed of the random perturbations; the same seed gives the same
            result.
        internal_batch_size: Rows per model call (default: as many as fit in
            about 64 MB of input, at most 4096).
        progress: Show a progress bar (tqdm if installed, else Keras'
            ``Progbar``): True, False, or None for long runs (at least 2**26
            input elements through the model).
        **kwargs: ``output_index``, ``output_layer``, ``strip_softmax``,
            ``neuron_selection_mode`` (see :class:`~keras_explain.Analyzer`).

    Raises:
        ValueError: For a bad ``internal_batch_size`` or a model with several
            inputs.
    """

    accepts_callable = True
    #: Evaluate plain callables on numpy arrays outside ``tf.function``.
    host_callables = True
    #: Whether ``_explain`` may run inside ``tf.function`` for Keras models.
    compiled = True

    def __init__(
        self,
        model,
        *,
        seed: int | None = None,
        internal_batch_size: int | None = None,
        progress: bool | None = None,
        **kwargs,
    ):
        if internal_batch_size is not None and (
            not isinstance(internal_batch_size, int | np.integer) or internal_batch_size < 1
        ):
            raise ValueError(
                "internal_batch_size must be a positive int (rows per model call) or "
                f"None. Received: internal_batch_size={internal_batch_size!r}."
            )
        self.seed = seed
        self.internal_batch_size = internal_batch_size
        self.progress = progress
        super().__init__(model, **kwargs)
        if self.plan is not None and len(self.plan.input_keys) > 1:
            raise ValueError(
                f"{type(self).__name__} explains models with one input; model "
                f"{self.model.name!r} has {len(self.plan.input_keys)}. Wrap it in a "
                "callable of one (concatenated) input instead."
            )
        self.traceable = self.compiled and (
            isinstance(model, keras.Model) or not self.host_callables
        )
        self._compiled_outputs = None
        self._bar = None

    # -- model evaluation --------------------------------------------------
    def _host_model(self) -> bool:
        return self.host_callables and not isinstance(self.model, keras.Model)

    def forward(self, inputs, hook=None, watch=()):
        """Run the model; plain callables run on numpy arrays (see the base class)."""
        if self._host_model():
            return tf.convert_to_tensor(self.predict(np.asarray(inputs[0]))), {}
        return super().forward(inputs, hook, watch)

    def rows_per_call(self, sample_shape) -> int:
        """Rows per model call for inputs of shape ``(rows, *sample_shape)``."""
        if self.internal_batch_size is not None:
            return int(self.internal_batch_size)
        elements = max(1, int(np.prod([d or 1 for d in sample_shape])))
        return int(max(1, min(MAX_ROWS_PER_CALL, ELEMENTS_PER_CALL // elements)))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The explained output for a numpy array of any number of rows, on the host.

        A Keras model runs in one compiled function, chunk by chunk; a callable
        receives chunks of ``rows_per_call`` rows.

        Raises:
            ValueError: If a callable does not return one row per input row.
        """
        rows = self.rows_per_call(x.shape[1:])
        pieces = []
        for start in range(0, len(x), rows):
            chunk = x[start : start + rows]
            if self._host_model():
                pieces.append(self._call_callable(chunk))
                continue
            if self._compiled_outputs is None:
                self._compiled_outputs = tf.function(
                    lambda batch: super(Perturbation, self).forward([batch])[0],
                    reduce_retracing=True,
                )
            pieces.append(np.asarray(self._compiled_outputs(tf.constant(chunk))))
        return np.concatenate(pieces, axis=0)

    def _call_callable(self, chunk: np.ndarray) -> np.ndarray:
        result = self.model(chunk)
        if isinstance(result, list | tuple):
            result = result[self.output_index or 0]
        result = np.asarray(result, dtype=np.float32)
        if result.ndim == 0 or result.shape[0] != len(chunk):
            raise ValueError(
                "The model callable must return one row of scores per input row, shape "
                f"(n, ...) for n inputs. Received: shape {result.shape} for an input of "
                f"shape {chunk.shape}."
            )
        return result[:, None] if result.ndim == 1 else result

    def outputs_of(self, x: tf.Tensor) -> tf.Tensor:
        """The explained output for a tensor of rows, traced or on the host."""
        if tf.inside_function() or not self._host_model():
            return self.forward([x])[0]
        return tf.convert_to_tensor(self.predict(np.asarray(x)))

    def fixed_target(self, x: tf.Tensor, target: Target, indices: tf.Tensor):
        """Resolve the target on the clean input, once.

        Returns:
            ``(target, indices, clean_scores)``: ``None`` (argmax) becomes the
            fixed index of the clean argmax; ``clean_scores`` is ``f_t(x)``, (B,).
        """
        outputs = self.outputs_of(x)
        target, indices = fix_target(outputs, target, indices)
        return target, indices, tf.cast(self.scores(outputs, target, indices), tf.float32)

    def single_input(self, inputs) -> tf.Tensor:
        """The one input of the batch (these methods explain single-input models)."""
        if len(inputs) != 1:
            raise ValueError(
                f"{type(self).__name__} explains models with one input. Received "
                f"{len(inputs)} inputs."
            )
        return inputs[0]

    def evaluate(
        self,
        x: tf.Tensor,
        make: Callable,
        count,
        target: Target,
        indices: tf.Tensor,
        accumulate: Callable | None = None,
        initial: tf.Tensor | None = None,
    ):
        """Scores ``f_t`` of ``count`` perturbed copies of the batch ``x``.

        Args:
            x: The batch, ``(B, ...)``; B must be static.
            make: ``make(start, size) -> (copies, aux)``: perturbations
                ``start .. start + size - 1`` as a ``(size, B, ...)`` tensor, and
                anything ``accumulate`` needs (or None).
            count: Number of perturbations (int or scalar tensor).
            target: A fixed target (see :meth:`fixed_target`).
            indices: ``(B,)`` target indices.
            accumulate: Optional ``accumulate(acc, aux, scores) -> acc``, called
                per chunk with its ``(size, B)`` scores.
            initial: Initial accumulator.

        Returns:
            ``(scores, acc)``: a float32 ``(count, B)`` tensor and the accumulator.
        """
        batch = int(x.shape[0])
        per_chunk = max(1, self.rows_per_call(x.shape[1:]) // batch)
        accumulate = accumulate or (lambda acc, aux, scores: acc)
        acc = tf.zeros(()) if initial is None else initial

        def run(start, size, acc):
            copies, aux = make(start, size)
            flat = tf.reshape(copies, tf.concat([[-1], tf.shape(copies)[2:]], 0))
            tiled = tf.tile(indices, tf.reshape(size, [1])) if indices is not None else None
            scores = self.scores(self.outputs_of(flat), target, tiled)
            scores = tf.reshape(tf.cast(scores, tf.float32), [size, batch])
            return scores, accumulate(acc, aux, scores)

        if not tf.inside_function():
            count, pieces = int(count), []
            calls = -(-count // per_chunk)
            work = count * int(np.prod(x.shape))
            for call, start in enumerate(range(0, count, per_chunk)):
                self._tick(call, calls, work)
                scores, acc = run(start, min(per_chunk, count - start), acc)
                pieces.append(scores)
            return tf.concat(pieces, axis=0), acc
        if isinstance(count, int) and count <= per_chunk:
            return run(0, count, acc)
        count = tf.cast(count, tf.int32)
        calls = (count + per_chunk - 1) // per_chunk
        work = tf.cast(count, tf.float32) * float(np.prod(x.shape))
        array = tf.TensorArray(
            tf.float32, size=calls, infer_shape=False, element_shape=tf.TensorShape([None, batch])
        )

        def body(call, array, acc):
            tick = tf.numpy_function(self._tick, [call, calls, work], tf.int32, stateful=True)
            with tf.control_dependencies([tick]):
                start = call * per_chunk
                scores, acc = run(start, tf.minimum(per_chunk, count - start), acc)
            return call + 1, array.write(call, scores), acc

        _, array, acc = tf.while_loop(
            lambda call, *_: call < calls, body, (tf.constant(0), array, acc), parallel_iterations=1
        )
        return array.concat(), acc

    def _tick(self, call, calls, work):
        """Advance the progress bar (runs on the host, also from a compiled loop).

        Args:
            call: Index of the model call (or iteration) that starts now.
            calls: Number of calls of the run.
            work: Input elements fed to the model over the run.
        """
        call, calls = int(call), int(calls)
        show = self.progress if self.progress is not None else work >= LONG_RUN_ELEMENTS
        if not show:
            return np.int32(0)
        if call == 0:
            self._bar = _progress_bar(calls, type(self).__name__)
        if self._bar is not None:
            self._bar.update(call + 1) if hasattr(self._bar, "target") else self._bar.update(1)
            if call + 1 == calls:
                if hasattr(self._bar, "close"):
                    self._bar.close()
                self._bar = None
        return np.int32(0)


def _progress_bar(total: int, description: str):
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return keras.utils.Progbar(total, unit_name="model call")
    return tqdm(total=total, desc=description, unit="model call")
