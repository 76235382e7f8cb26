"""The batched evaluator of perturbed inputs: the engine of the model-agnostic family.

:class:`Perturbation` is the base of occlusion, Shapley sampling, RISE,
meaningful perturbation, LIME and KernelSHAP. It knows one thing: how to push
many perturbed copies of a batch through the model, in passes of bounded size.

- A Keras model is evaluated inside the analyzer's compiled function: the
  copies are generated pass by pass inside one ``tf.while_loop``
  (:func:`keras_explain._batching.run_in_passes`), each pass going through
  the model in one call.
- A plain callable ``f(x) -> scores`` (e.g. a scikit-learn pipeline's
  ``predict_proba``) is numpy-only and cannot be traced: the same code runs
  eagerly and the callable receives numpy arrays of many rows at a time.

A pass holds at most ``internal_batch_size`` rows (default: as many as fit in
:func:`keras_explain.config.memory_budget`). The target is resolved once on the
clean input (``None`` becomes the argmax of ``f(x)``) and then fixed for every
perturbation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_explain import _batching, _validate
from keras_explain.analyzers.base import Analyzer
from keras_explain.targets import Target, fix_target


class Perturbation(Analyzer):
    """Base class of the model-agnostic analyzers.

    Args:
        model: A Keras model, or any callable ``f(x) -> scores`` returning one
            row of scores per input row, e.g. ``pipeline.predict_proba``.
        seed: Seed of the random perturbations; the same seed gives the same
            result.
        internal_batch_size: Rows per model call (default: as many as fit in
            :func:`keras_explain.config.memory_budget`).
        **kwargs: ``output_index``, ``output_layer``, ``strip_softmax``,
            ``neuron_selection_mode``, ``verbose`` (see
            :class:`~keras_explain.analyzers.base.Analyzer`).

    Raises:
        ValueError: For a bad ``internal_batch_size`` or a model with several
            inputs.
    """

    accepts_callable = True
    float_tokens = True
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
        **kwargs,
    ):
        self.seed = seed
        self.internal_batch_size = _validate.internal_batch_size(internal_batch_size)
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

    #: Attributes holding baselines, checked against the input when known.
    baseline_attributes: tuple[str, ...] = ()

    def checked_baseline(self, value: Any, name: str = "baseline") -> Any:
        """A baseline checked against one sample's shape, if the model's input shape is known.

        Otherwise it is checked at ``analyze``, before anything is traced.
        """
        specs = self._input_specs()
        if specs:
            return _validate.baseline(value, tuple(specs[0].shape[1:]), name)
        return float(value) if np.ndim(value) == 0 else np.asarray(value, np.float32)

    def _check_batch(self, shapes, split):
        for name in self.baseline_attributes:
            value = getattr(self, name)
            if isinstance(value, float) or value is None:
                continue
            value = _validate.baseline(value, shapes[0][1:], name)
            _validate.batch_baseline(value, shapes[0], split, name)

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
        return self.rows_per_pass(
            [tuple(sample_shape)], backward=False, override=self.internal_batch_size
        )

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The explained output for a numpy array of any number of rows, on the host.

        A Keras model runs in one compiled function, pass by pass; a callable
        receives passes of :meth:`rows_per_call` rows.

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
        initial: Any = None,
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
                per pass with its ``(size, B)`` scores; then the scores
                themselves are not kept.
            initial: Initial accumulator.

        Returns:
            The float32 ``(count, B)`` scores, or the accumulator when
            ``accumulate`` is given.
        """
        batch = int(x.shape[0])
        per_pass = max(1, self.rows_per_call(x.shape[1:]) // batch)

        def scores_of(start, size):
            copies, aux = make(start, size)
            flat = tf.reshape(copies, tf.concat([[-1], tf.shape(copies)[2:]], 0))
            tiled = tf.tile(indices, tf.reshape(size, [1])) if indices is not None else None
            scores = self.scores(self.outputs_of(flat), target, tiled)
            return tf.reshape(tf.cast(scores, tf.float32), tf.stack([size, batch])), aux

        if accumulate is not None:

            def body(start, size, acc):
                scores, aux = scores_of(start, size)
                return accumulate(acc, aux, scores)

            return _batching.run_in_passes(count, per_pass, body, initial, self.progress())
        if isinstance(count, int | np.integer) and count <= per_pass:
            return scores_of(0, int(count))[0]
        passes = (tf.cast(count, tf.int32) + per_pass - 1) // per_pass
        array = tf.TensorArray(
            tf.float32, size=passes, infer_shape=False, element_shape=tf.TensorShape([None, batch])
        )

        def collect(start, size, array):
            return array.write(start // per_pass, scores_of(start, size)[0])

        return _batching.run_in_passes(count, per_pass, collect, array, self.progress()).concat()
