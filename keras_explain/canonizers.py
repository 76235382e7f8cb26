"""Canonizers: give the rules the model form they need, at analysis time only.

A canonizer rewrites the analysis-time step list of a :class:`~keras_explain._graph.Plan`
(the flat list of primitive ops the engine runs), never the user's model: the
result is a *view* of the plan with other steps, whose ops still read the
layers' own variables every time they run.

- :class:`BatchNormFold` folds a ``BatchNormalization`` that directly follows a
  linear layer into that layer (the exact affine fold).
- Fused activations (``Dense(8, activation="relu")``) need no canonizer: the
  graph engine (``_layers.decompose``) already splits every linear layer into
  a linear op and an activation op, and the fold relies on that split (the
  linear op's output feeds the BatchNormalization only when the layer has no
  activation).
- :func:`mark_nonnegative` records which linear ops read values known to be
  ``>= 0`` (straight from a ReLU, possibly through pooling or reshapes), so
  that rules can skip the ``x⁻`` terms there (exactly: those terms are zero).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Sequence

import keras
import tensorflow as tf

from keras_explain import _graph, _layers, rules


class Canonizer:
    """Base class: ``canonizer(plan, steps, keep) -> steps``."""

    def __call__(self, plan: _graph.Plan, steps: list, keep: set) -> list:
        """Rewrite ``steps``; values whose keys are in ``keep`` must still be computed."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


_DEPTHWISE = (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)
_TRANSPOSED = (
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
)
_FOLDABLE = (
    keras.layers.Dense,
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.SeparableConv1D,
    keras.layers.SeparableConv2D,
    *_DEPTHWISE,
    *_TRANSPOSED,
)


class BatchNormFold(Canonizer):
    """Fold ``BatchNormalization`` into the linear layer right before it.

    For a linear op ``z = x W + b`` whose output is read only by a
    BatchNormalization (inference mode, ``k = γ / sqrt(σ² + ε)``), the pair is
    replaced by one linear op with ``W' = W k`` (over the output channel axis)
    and ``b' = (b − μ) k + β``. The folded weights are computed from the live
    variables every time the op runs; the model is not modified.

    A BatchNormalization anywhere else (after an activation, a pooling, at the
    input) stays an element-wise linear op under the composite's rule.

    Example:
        >>> from keras_explain import canonizers
        >>> canonizers.BatchNormFold()
        BatchNormFold()
    """

    def __call__(self, plan, steps, keep):
        """Replace each (linear, BatchNormalization) pair by one folded linear step."""
        consumers: dict = {}
        for step in steps:
            for key in step.inputs:
                consumers.setdefault(key, []).append(step)
        result, folded = [], set()
        for step in steps:
            if step in folded:
                continue
            partner = self._partner(plan, step, consumers, keep)
            if partner is None:
                result.append(step)
                continue
            folded.add(partner)
            linear = fold_linear(step.op, partner.op)
            name = f"{step.op.name}+{partner.op.name}"
            forward = _folded_forward(step.op.layer, linear)
            op = _graph.Op("linear", step.op.layer, name, forward, linear=linear)
            result.append(dataclasses.replace(step, op=op, outputs=partner.outputs))
        return result

    @staticmethod
    def _partner(plan, step, consumers, keep):
        """The BatchNormalization step to fold into ``step``, or None."""
        op = step.op
        if op.kind != "linear" or op.linear.elementwise or not isinstance(op.layer, _FOLDABLE):
            return None
        if any(key in keep for key in step.outputs) or len(step.outputs) != 1:
            return None
        readers = consumers.get(step.outputs[0], [])
        if len(readers) != 1:
            return None
        (reader,) = readers
        layer = reader.op.layer
        if reader.op.kind != "linear" or not isinstance(layer, keras.layers.BatchNormalization):
            return None
        shape = plan.shape_of(reader.outputs[0])
        if shape is None:
            return None
        rank = len(shape)
        bn_axis = layer.axis if isinstance(layer.axis, int) else layer.axis[0]
        channels_first = getattr(op.layer, "data_format", "channels_last") == "channels_first"
        channel_axis = 1 if channels_first else rank - 1
        if bn_axis % rank != channel_axis:
            return None
        return reader


def _folded_forward(layer, linear):
    def forward(x):
        return linear.apply(tf.cast(x, layer.compute_dtype), *linear.weights())

    return forward


def fold_linear(linear_op: _graph.Op, batch_norm_op: _graph.Op) -> _layers.Linear:
    """The linear map of ``linear_op`` followed by ``batch_norm_op``, folded into one.

    Args:
        linear_op: A linear op (Dense, convolution) without activation.
        batch_norm_op: The BatchNormalization op reading its output.

    Returns:
        A Linear whose ``weights()`` returns the folded ``(W k, (b − μ) k + β)``.
    """
    linear, norm, layer = linear_op.linear, batch_norm_op.linear, linear_op.layer

    def weights():
        kernel, bias = linear.weights()
        scale, shift = norm.weights()
        scale = tf.cast(scale, kernel.dtype)
        shift = tf.cast(shift, kernel.dtype)
        rank = len(kernel.shape)
        if isinstance(layer, _DEPTHWISE):
            factor = tf.reshape(scale, [1] * (rank - 2) + list(kernel.shape[-2:]))
        else:
            shape = [1] * rank
            shape[-2 if isinstance(layer, _TRANSPOSED) else -1] = -1
            factor = tf.reshape(scale, shape)
        new_bias = shift if bias is None else bias * scale + shift
        return kernel * factor, new_bias

    return _layers.Linear(weights, linear.apply)


def mark_nonnegative(plan: _graph.Plan, steps: Sequence) -> list:
    """Mark the steps whose inputs are all known to be ``>= 0``.

    A value is known non-negative when it comes out of a ReLU, or out of max or
    average pooling, ``Add``, a concatenation or a reshape of non-negative values.
    """
    known: set = set()
    result = []
    for step in steps:
        inputs_known = bool(step.inputs) and all(key in known for key in step.inputs)
        kind = step.op.kind
        if rules.is_relu(step):
            known.update(step.outputs)
        elif inputs_known and kind in ("max_pool", "sum_pool", "reshape"):
            # a raw pad may pad with negatives; a raw ``x + c`` may add them
            if type(step.op.layer).__name__ != "Pad" and not step.op.constants:
                known.update(step.outputs)
        if inputs_known and kind == "linear":
            step = dataclasses.replace(step, nonnegative=True)
        result.append(step)
    return result


def canonize(
    plan: _graph.Plan, canonizers: Iterable[Canonizer], keep: Iterable = ()
) -> _graph.Plan:
    """A view of ``plan`` with the canonizers applied and non-negative inputs marked.

    Args:
        plan: The model's plan (left unchanged).
        canonizers: Canonizers to apply, in order.
        keep: Keys of values that must still be computed (explained output,
            attributed layers).

    Returns:
        A shallow copy of the plan whose ``steps`` are the rewritten steps.
    """
    keep = set(keep) | set(plan.output_keys) | set(plan.input_keys)
    steps = list(plan.steps)
    for canonizer in canonizers:
        steps = canonizer(plan, steps, keep)
    view = copy.copy(plan)
    view.steps = mark_nonnegative(plan, steps)
    return view
