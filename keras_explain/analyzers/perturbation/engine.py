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
  eagerly and the callable receives numpy arrays of many rows at a time
  (:attr:`~keras_explain.analyzers.base.Analyzer.execution` ``"compiled_models"``).

The copies go through :meth:`Analyzer.run_copies
<keras_explain.analyzers.base.Analyzer.run_copies>`, the loop every multiplying
method shares: a pass holds at most ``internal_batch_size`` rows (default: as many
as fit in :func:`keras_explain.config.memory_budget`). The target is resolved once
on the clean input (:meth:`Analyzer.fixed_target
<keras_explain.analyzers.base.Analyzer.fixed_target>`: ``None`` becomes the argmax
of ``f(x)``) and then fixed for every perturbation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from keras_explain import _batching, _validate
from keras_explain.analyzers.base import Analyzer
from keras_explain.targets import Target


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
    #: Whether the method can explain integer token ids (it replaces them whole).
    takes_tokens = True
    #: Whether a host method explains token ids beside constant inputs (one sample
    #: at a time, its constant inputs repeated: KernelSHAP).
    host_tokens = False
    execution = "compiled_models"

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
        self.feature_input = 0
        self._companions: list | None = None
        specs = self._input_specs()
        if self.plan is not None and len(self.plan.input_keys) > 1:
            names = self.input_names
            features = [i for i in range(len(names)) if i not in self.constant_inputs]
            tokens = len(features) == 1 and tf.as_dtype(specs[features[0]].dtype).is_integer
            if self.execution == "host" and not (self.host_tokens and tokens):
                also = " (KernelSHAP does, for token ids)" if tokens else ""
                raise ValueError(
                    f"{type(self).__name__} explains models with one input (it scores numpy "
                    f"rows on the host); model {self.model.name!r} has inputs {names}. Use "
                    "'occlusion' or 'shapley_sampling', which hold masks and segment ids "
                    f"constant{also}, or wrap the model in a callable of one input."
                )
            if len(features) != 1:
                raise ValueError(
                    f"{type(self).__name__} explains models with one feature input; model "
                    f"{self.model.name!r} has inputs {names}, of which "
                    f"{[names[i] for i in features]} are features. Name the others in "
                    "constant_inputs=[...] (masks, segment ids), or wrap the model in a "
                    "callable of one (concatenated) input."
                )
            self.feature_input = features[0]
        if (
            not self.takes_tokens
            and specs
            and tf.as_dtype(specs[self.feature_input].dtype).is_integer
        ):
            raise ValueError(
                f"{type(self).__name__} blends inputs with soft masks, which token ids "
                f"cannot take: input {self.feature_input} of model {self.model.name!r} is "
                f"{tf.as_dtype(specs[self.feature_input].dtype).name}. Use 'occlusion' or "
                "'shapley_sampling' (tokens replaced by the baseline id), or a gradient method."
            )

    #: Attributes holding baselines, checked against the input when known.
    baseline_attributes: tuple[str, ...] = ()
    #: :meth:`explain_batch` explains the one feature input (wrappers read this).
    single_feature_input = True

    def held_input(self, position: int) -> bool:
        """Whether input ``position`` is held constant (not perturbed)."""
        return position in self.constant_inputs

    def output_count(self, input_count: int) -> int:
        """:meth:`explain_batch` returns the attributions of the feature input only."""
        return 1

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

    def single_input(self, inputs) -> tf.Tensor:
        """The one feature input of the batch; the others ride along unchanged.

        A model whose other inputs are held constant (a padding mask, segment ids:
        ``constant_inputs``) gets them with every perturbed copy of the feature
        input (see :meth:`forward`).
        """
        if len(inputs) == 1:
            return inputs[0]
        self._companions = list(inputs)
        return inputs[self.feature_input]

    def forward(self, inputs, hook=None, watch=()):
        """The model on copies of the feature input, with the constant inputs repeated."""
        companions = self._companions
        if companions is not None and len(inputs) == 1 and len(companions) > 1:
            (x,) = inputs
            size = tf.shape(x)[0] // tf.shape(companions[0])[0]  # copies per sample
            inputs = [
                x if i == self.feature_input else _batching.repeat(c, size)
                for i, c in enumerate(companions)
            ]
        return super().forward(inputs, hook, watch)

    def prepare_batch(self, batch, target, first_row):
        """As the base's; with several inputs, zeros for those held constant."""
        function, arguments = super().prepare_batch(batch, target, first_row)
        if len(batch) == 1:
            return function, arguments
        shapes = [tuple(item.shape) for item in batch]

        def per_input(*args):
            (result,) = function(*args)
            return [
                result if i == self.feature_input else tf.zeros(shape, tf.float32)
                for i, shape in enumerate(shapes)
            ]

        return per_input, arguments

    def clean_scores(self, x: tf.Tensor, target: Target, indices: tf.Tensor):
        """The target fixed on the clean input and its scores there.

        Returns:
            ``(target, indices, clean_scores)``: see :meth:`Analyzer.fixed_target
            <keras_explain.analyzers.base.Analyzer.fixed_target>`; ``clean_scores``
            is ``f_t(x)``, ``(B,)`` float32.
        """
        target, indices, outputs = self.fixed_target([x], target, indices)
        return target, indices, tf.cast(self.scores(outputs, target, indices), tf.float32)

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

        :meth:`Analyzer.run_copies <keras_explain.analyzers.base.Analyzer.run_copies>`
        with forward passes that score the copies.

        Args:
            x: The batch, ``(B, ...)``; B must be static.
            make: ``make(start, size) -> (copies, aux)``: perturbations
                ``start .. start + size - 1`` as a ``(size, B, ...)`` tensor, and
                anything ``accumulate`` needs (or None).
            count: Number of perturbations (int or scalar tensor).
            target: A fixed target (see :meth:`clean_scores`).
            indices: ``(B,)`` target indices.
            accumulate: Optional ``accumulate(acc, aux, scores) -> acc``, called
                per pass with its ``(size, B)`` scores; then the scores
                themselves are not kept.
            initial: Initial accumulator.

        Returns:
            The float32 ``(count, B)`` scores, or the accumulator when
            ``accumulate`` is given.
        """

        def make_copies(start, size):
            copies, aux = make(start, size)
            return [copies], aux

        def scores_of(flat, size):
            outputs = self.forward(flat)[0]
            return [self.scores(outputs, target, _batching.repeat(indices, size))]

        if accumulate is None:
            return self.run_copies([x], count, make_copies, scores_of, backward=False)

        def fold(acc, values, aux, start, size):
            return accumulate(acc, aux, values[0])

        return self.run_copies([x], count, make_copies, scores_of, fold, initial, backward=False)


def group_labels(feature_mask: Any, owner: str) -> np.ndarray | None:
    """The int group labels of a ``feature_mask``, renumbered ``0 .. groups - 1``.

    The one check of the feature masks of the family (Shapley sampling, feature
    ablation and permutation): labels keep their shape and order; equal labels stay
    one group.

    Args:
        feature_mask: Int labels, or None.
        owner: The analyzer's class name, for the error message.

    Returns:
        The renumbered labels (same shape), or None.

    Raises:
        ValueError: For labels that are not integers.

    Example:
        >>> from keras_explain.analyzers.perturbation.engine import group_labels
        >>> group_labels([[7, 7], [3, 9]], "FeatureAblation").tolist()
        [[1, 1], [0, 2]]
    """
    if feature_mask is None:
        return None
    labels = np.asarray(feature_mask)
    if not np.issubdtype(labels.dtype, np.integer) or labels.size == 0:
        raise ValueError(
            f"{owner}: feature_mask must hold int group labels. Received: dtype "
            f"{labels.dtype}, shape {labels.shape}. Pass an int array, e.g. "
            "mask.astype('int32')."
        )
    return np.unique(labels, return_inverse=True)[1].reshape(labels.shape)


def attribution_dtype(x: tf.Tensor) -> tf.DType:
    """The dtype of attributions of ``x``: its own, float32 for token ids."""
    return x.dtype if x.dtype.is_floating else tf.float32
