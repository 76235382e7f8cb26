"""Canonizers: give the rules the model form they need, at analysis time only.

A canonizer turns a :class:`~keras_explain.graph.Plan` into another plan (a view
with other steps, :meth:`~keras_explain.graph.Plan.with_steps`), never touching
the user's model: the new ops still read the layers' own variables every time
they run.

- :class:`BatchNormFold` folds a ``BatchNormalization`` that directly follows a
  linear layer into that layer (the exact affine fold).
- Fused activations (``Dense(8, activation="relu")``) need no canonizer: the
  graph already splits every linear layer into a linear op and an activation
  op, and the fold relies on that split (the linear op's output feeds the
  BatchNormalization only when the layer has no activation).

After the canonizers, :func:`canonize` annotates the steps for the rules: which
linear ops read values known to be ``>= 0`` (``Step.nonnegative``: straight from
a ReLU, possibly through pooling or reshapes), and which inputs of a product
are gates (``Step.gates``).
"""

from __future__ import annotations

from collections.abc import Iterable

import tensorflow as tf

from keras_explain.graph import Key, Linear, Op, Plan, Step, entry_of
from keras_explain.lrp import rules


class Canonizer:
    """Base class: ``canonizer(plan, keep) -> plan``.

    Subclasses implement :meth:`__call__`.
    """

    def __call__(self, plan: Plan, keep: set[Key]) -> Plan:
        """Rewrite ``plan``; the values whose keys are in ``keep`` must still be computed.

        Args:
            plan: The plan to rewrite (left unchanged).
            keep: Keys of values that must still be computed (the model's
                inputs and outputs, the explained output, attributed layers).

        Returns:
            The rewritten plan (``plan.with_steps(...)``).
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class BatchNormFold(Canonizer):
    """Fold ``BatchNormalization`` into the linear layer right before it.

    For a linear op ``z = x W + b`` whose output is read only by a
    BatchNormalization (inference mode, ``k = γ / sqrt(σ² + ε)``) over the
    layer's channel axis, the pair is replaced by one linear op with
    ``W' = W k`` (over the output channel axis) and ``b' = (b − μ) k + β``. The
    folded weights are computed from the live variables every time the op
    runs; the model is not modified.

    A BatchNormalization anywhere else (after an activation, a pooling, at the
    input) stays an element-wise linear op under the composite's rule.

    Example:
        >>> from keras_explain import canonizers
        >>> canonizers.BatchNormFold()
        BatchNormFold()
    """

    def __call__(self, plan: Plan, keep: set[Key]) -> Plan:
        """Replace each (linear, BatchNormalization) pair by one folded linear step."""
        result, folded = [], set()
        for step in plan.steps:
            if step in folded:
                continue
            partner = self._partner(plan, step, keep)
            if partner is None:
                result.append(step)
                continue
            folded.add(partner)
            linear = fold_linear(step.op, partner.op)
            dtype = step.op.layer.compute_dtype

            def forward(x, linear=linear, dtype=dtype):
                return linear.apply(tf.cast(x, dtype), *linear.weights())

            name = f"{step.op.name}+{partner.op.name}"
            op = Op("linear", step.op.layer, name, forward, linear=linear)
            result.append(step.replace(op=op, outputs=partner.outputs))
        return plan.with_steps(result)

    @staticmethod
    def _partner(plan: Plan, step: Step, keep: set[Key]) -> Step | None:
        """The BatchNormalization step to fold into ``step``, or None."""
        op = step.op
        if op.kind != "linear" or op.linear.elementwise or op.linear.scale_outputs is None:
            return None  # only a map whose kernel has an output-channel axis folds exactly
        if len(step.outputs) != 1 or step.outputs[0] in keep:
            return None
        readers = plan.consumers(step.outputs[0])
        if len(readers) != 1:
            return None
        (reader,) = readers
        layer = reader.op.layer
        entry = entry_of(layer)
        if reader.op.kind != "linear" or entry is None or entry.family != "batch_norm":
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


def fold_linear(linear_op: Op, batch_norm_op: Op) -> Linear:
    """The linear map of ``linear_op`` followed by ``batch_norm_op``, folded into one.

    Args:
        linear_op: A linear op (Dense, convolution) without activation.
        batch_norm_op: The BatchNormalization op reading its output.

    Returns:
        A Linear whose ``weights()`` returns the folded ``(W k, (b − μ) k + β)``.
    """
    linear, norm = linear_op.linear, batch_norm_op.linear

    def weights():
        kernel, bias = linear.weights()
        scale, shift = norm.weights()
        scale = tf.cast(scale, kernel.dtype)
        shift = tf.cast(shift, kernel.dtype)
        new_bias = shift if bias is None else bias * scale + shift
        return linear.scale_outputs(kernel, scale), new_bias

    return Linear(weights, linear.apply)


def canonize(
    plan: Plan,
    canonizers: Iterable[Canonizer],
    keep: Iterable[Key] = (),
    nonnegative: Iterable[Key] = (),
) -> Plan:
    """A view of ``plan`` with the canonizers applied and the steps annotated.

    Args:
        plan: The model's plan (left unchanged).
        canonizers: Canonizers to apply, in order.
        keep: Keys of values that must still be computed (explained output,
            attributed layers); the model's inputs and outputs always are.
        nonnegative: Keys of model inputs known to be ``>= 0`` (the batch being
            explained, checked by the analyzer).

    Returns:
        The canonized plan, with ``Step.nonnegative`` and ``Step.gates`` set.
    """
    keep = set(keep) | set(plan.output_keys) | set(plan.input_keys)
    for canonizer in canonizers:
        plan = canonizer(plan, keep)
    return plan.with_steps(_annotate(plan, set(nonnegative)))


#: Activations whose output lies in [0, 1]: a product reading one is gated.
GATE_ACTIVATIONS = ("sigmoid", "hard_sigmoid")
#: Activations whose output is >= 0 (besides the ReLUs).
NONNEGATIVE_ACTIVATIONS = ("sigmoid", "hard_sigmoid", "softplus")


def _annotate(plan: Plan, known: set[Key]) -> list[Step]:
    """Set ``nonnegative`` on linear steps and ``gates`` on products.

    ``known`` holds the values known to be ``>= 0`` so far (model inputs).
    """
    known = set(known)
    gated: set[Key] = set()  # values that come out of a gate activation
    result = []
    for step in plan.steps:
        kind = step.op.kind
        inputs_known = bool(step.inputs) and all(key in known for key in step.inputs)
        passes = _keeps_sign(step)
        if rules.is_relu(step) or (
            kind == "activation" and step.op.activation in NONNEGATIVE_ACTIVATIONS
        ):
            known.update(step.outputs)
        elif inputs_known and passes:
            known.update(step.outputs)
        if kind == "activation" and step.op.activation in GATE_ACTIVATIONS:
            gated.update(step.outputs)
        elif kind in ("reshape", "sum_pool") and len(step.inputs) == 1 and step.inputs[0] in gated:
            gated.update(step.outputs)  # a reshaped or rescaled gate (x * 1/6)
        if inputs_known and kind == "linear":
            step = step.replace(nonnegative=True)
        if kind == "multiply":
            step = step.replace(gates=_gates(plan, step, gated))
        result.append(step)
    return result


def _keeps_sign(step: Step) -> bool:
    """Whether the op maps values >= 0 to values >= 0 (pooling, sums, reshapes, ...)."""
    op = step.op
    if op.constants:  # a raw x + c, x * c may make values negative
        return False
    name = type(op.layer).__name__
    if op.kind in ("max_pool", "reshape"):
        return name != "Pad"  # a raw pad may pad with negatives
    if op.kind != "sum_pool":
        return False
    entry = entry_of(op.layer)  # the layer table says which sums have weights >= 0
    return entry is not None and entry.keeps_sign_for(op.layer)


def _gates(plan: Plan, step: Step, gated: set[Key]) -> tuple[int, ...]:
    """Positions of a product's gate inputs: gate activations, else broadcast inputs."""
    marked = tuple(i for i, key in enumerate(step.inputs) if key in gated)
    if 0 < len(marked) < len(step.inputs):
        return marked
    return broadcast_gates([plan.shape_of(key) for key in step.inputs])


def broadcast_gates(shapes) -> tuple[int, ...]:
    """The factors of a product broadcast to the others' shape: gates (a ``1 / σ`` scale).

    A factor is a gate when it has size 1 along an axis where another factor has
    more (or an unknown number of) elements, and is nowhere larger than the
    others: ``x * rsqrt(mean(x², -1, keepdims=True))`` gates ``x``.

    Args:
        shapes: The factors' static shapes (batch axis first; None for an
            unknown shape, None entries for unknown sizes).

    Returns:
        The positions of the gates; none when a shape is unknown or when no
        factor is only broadcast (an outer product ``(3, 1) * (1, 2)``).
    """
    if not shapes or any(shape is None for shape in shapes):
        return ()
    rank = max(len(shape) for shape in shapes)
    padded = [(1,) * (rank - len(shape)) + tuple(shape) for shape in shapes]

    def broadcast(i):
        mine = padded[i]
        others = [shape for j, shape in enumerate(padded) if j != i]
        stretched = any(
            mine[a] == 1 and any(other[a] != 1 for other in others) for a in range(1, rank)
        )
        larger = any(
            mine[a] != 1 and any(other[a] == 1 for other in others) for a in range(1, rank)
        )
        return stretched and not larger

    gates = tuple(i for i in range(len(padded)) if broadcast(i))
    return gates if len(gates) < len(padded) else ()
