"""Walk and re-execute Keras 3 models, one primitive operation at a time.

This is the only module that reads private Keras attributes. It turns a built
Sequential or Functional model (nested models, shared layers and raw
``keras.ops`` calls included) into a flat, static :class:`Plan`: a list of
:class:`Step` objects, each one primitive :class:`Op` reading and writing named
values. Fused activations are split off their linear layer, nested models are
inlined, and every linear map exposes its weights so that a rule can evaluate
the same map with modified weights.

``Plan.run(inputs, hook)`` executes the plan in inference mode. The ``hook`` is
called for every step as ``hook(step, inputs)`` and returns the step's output;
a relevance rule uses it to wrap the op in ``tf.custom_gradient``. The model is
never modified and its weights are never copied: ops read the layers' own
variables every time they run.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import keras
import tensorflow as tf
from keras import ops

from keras_explain import _layers

Key = tuple
Hook = Callable[["Step", list], Any]


@dataclasses.dataclass(frozen=True, eq=False)
class Op:
    """One primitive operation of the analysis-time graph.

    Attributes:
        kind: What the op is, for rules: ``"linear"`` (an affine map with
            weights: Dense, convolutions, BatchNormalization, Embedding),
            ``"activation"`` (element-wise non-linearity), ``"max_pool"``,
            ``"sum_pool"`` (a fixed non-negative linear map without bias:
            average pooling, ``Add``), ``"reshape"`` (bookkeeping: relevance
            follows the gradient), ``"softmax"`` or ``"other"``.
        layer: The Keras layer or operation the op comes from.
        name: Readable name, ``layer.name`` plus a suffix for split parts.
        forward: ``forward(*tensors)`` computes the op on real tensors.
        activation: For activations, the function name (``"relu"``, ...).
        linear: For linear ops, the :class:`_layers.Linear` view of the layer
            (weights and the map evaluated with any weights).
        constants: The op also reads floating-point operands that are not
            tensor inputs (a raw ``x + 2.0``), so its output is not a function
            of its tensor inputs alone.
    """

    kind: str
    layer: Any
    name: str
    forward: Callable[..., Any]
    activation: str | None = None
    linear: _layers.Linear | None = None
    constants: bool = False

    def __repr__(self) -> str:
        return f"Op({self.kind}, {self.name})"


@dataclasses.dataclass(frozen=True, eq=False)
class Step:
    """An op applied to named values, writing named values.

    Attributes:
        first_linear: A linear op with no linear op upstream (the "first layer"
            of composites).
        nonnegative: Every input is known to be ``>= 0``; set by canonization
            (:func:`keras_explain.canonizers.mark_nonnegative`), read by rules.
    """

    op: Op
    inputs: tuple[Key, ...]
    outputs: tuple[Key, ...]
    first_linear: bool = False
    nonnegative: bool = False


def call_hook(step: Step, inputs: list) -> Any:
    """The default hook: run the step's op unchanged."""
    return step.op.forward(*inputs)


class Plan:
    """A model as a flat list of primitive steps.

    Args:
        model: A built Sequential or Functional Keras model.

    Raises:
        ValueError: If ``model`` is an unbuilt Sequential model.
        TypeError: If ``model`` is a subclassed model with no graph.
    """

    def __init__(self, model: keras.Model):
        functional = functional_of(model)
        self.model = model
        self.steps: list[Step] = []
        self.layer_outputs: dict[int, list[Key]] = {}
        self.layers: list[keras.Operation] = []
        self._alias: dict[Key, Key] = {}
        self._counter = itertools.count()
        self.shapes: dict[Key, tuple] = {}
        self.input_keys = [(id(t),) for t in functional._inputs]
        for tensor, key in zip(functional._inputs, self.input_keys):
            self.shapes[key] = tuple(tensor.shape)
        self.input_specs = list(functional._inputs)
        self._inline(functional, prefix=(), input_keys=self.input_keys)
        self.output_keys = [self.resolve((id(t),)) for t in functional._outputs]
        self._mark_first_linear()

    # -- construction ---------------------------------------------------
    def resolve(self, key: Key) -> Key:
        while key in self._alias:
            key = self._alias[key]
        return key

    def _inline(self, functional, prefix: Key, input_keys: Sequence[Key]) -> None:
        for tensor, key in zip(functional._inputs, input_keys):
            own = prefix + (id(tensor),)
            if own != key:
                self._alias[own] = key
        for node in _nodes_in_order(functional):
            operation = node.operation
            in_keys = tuple(self.resolve(prefix + (id(t),)) for t in node.input_tensors)
            out_keys = tuple(prefix + (id(t),) for t in node.outputs)
            if operation not in self.layers:
                self.layers.append(operation)
            inner = functional_of(operation, strict=False)
            if inner is not None:
                inner_prefix = prefix + (next(self._counter),)
                args = node.arguments.args
                flat_in = tuple(
                    self.resolve(prefix + (id(t),))
                    for t in keras.tree.flatten(args[0] if len(args) == 1 else args)
                )
                self._inline(inner, inner_prefix, flat_in)
                for outer, inner_out in zip(out_keys, inner._outputs):
                    self._alias[outer] = self.resolve(inner_prefix + (id(inner_out),))
                self.layer_outputs.setdefault(id(operation), [self.resolve(out_keys[0])])
                continue
            ops_ = _layers.decompose(operation, node, prefix)
            for key, tensor in zip(out_keys, node.outputs):
                self.shapes[key] = tuple(tensor.shape)
            current = in_keys
            for index, op in enumerate(ops_):
                last = index == len(ops_) - 1
                outs = out_keys if last else (out_keys[0] + ("pre", index),)
                if not last:
                    self.shapes[outs[0]] = None
                if op.kind in ("activation", "softmax") and self.shapes.get(current[0]) is None:
                    self.shapes[current[0]] = self.shapes[out_keys[0]]
                self.steps.append(Step(op, current, outs))
                current = outs
            self.layer_outputs.setdefault(id(operation), [out_keys[0]])

    def _mark_first_linear(self) -> None:
        after_linear: set[Key] = set()
        for index, step in enumerate(self.steps):
            upstream = any(key in after_linear for key in step.inputs)
            if step.op.kind == "linear" and not upstream:
                self.steps[index] = dataclasses.replace(step, first_linear=True)
            if upstream or step.op.kind == "linear":
                after_linear.update(step.outputs)

    # -- queries ---------------------------------------------------------
    def all_layers(self) -> list[keras.Operation]:
        """Every layer and operation of the model, nested ones included."""
        return list(self.layers)

    def find_layer(self, layer: str | keras.Operation, argument: str) -> keras.Operation:
        """Look a layer up by name or object, nested models included.

        Raises:
            ValueError: If no layer, or several, match.
        """
        if isinstance(layer, str):
            matches = [item for item in self.layers if getattr(item, "name", None) == layer]
            if len(matches) == 1:
                return matches[0]
            names = [item.name for item in self.layers if isinstance(item, keras.layers.Layer)]
            if not matches:
                raise ValueError(
                    f"No layer named {layer!r} in model {self.model.name!r} "
                    f"(nested models included). Received: {argument}={layer!r}. "
                    f"Available layers: {names}."
                )
            raise ValueError(
                f"Several layers are named {layer!r} in model {self.model.name!r}; "
                f"pass the layer object instead. Received: {argument}={layer!r}."
            )
        if any(item is layer for item in self.layers):
            return layer
        raise ValueError(
            f"Layer {getattr(layer, 'name', layer)!r} is not part of model "
            f"{self.model.name!r}. Received: {argument}={layer!r}."
        )

    def output_key_of(self, layer: keras.Operation) -> Key:
        """The key of a layer's (first call's) output."""
        return self.resolve(self.layer_outputs[id(layer)][0])

    def shape_of(self, key: Key) -> tuple | None:
        """The static shape of a value (None for split-off intermediates)."""
        return self.shapes.get(self.resolve(key))

    def producer(self, key: Key) -> Step | None:
        """The step writing ``key``, or None for a model input."""
        for step in self.steps:
            if key in step.outputs:
                return step
        return None

    def strip_softmax(self, key: Key) -> Key:
        """Follow ``key`` back through a final softmax, if there is one."""
        step = self.producer(key)
        if step is not None and step.op.kind == "softmax":
            return step.inputs[0]
        return key

    def unsupported(self, kinds: set[str]) -> list[Step]:
        """Steps whose op kind is not in ``kinds``."""
        return [step for step in self.steps if step.op.kind not in kinds]

    # -- execution -------------------------------------------------------
    def run(
        self,
        inputs: Sequence[tf.Tensor],
        hook: Hook | None = None,
        targets: Sequence[Key] | None = None,
    ) -> dict[Key, tf.Tensor]:
        """Execute the plan on real tensors.

        Args:
            inputs: One tensor per model input.
            hook: ``hook(step, inputs) -> output`` for every step; the
                default, :func:`call_hook`, runs the op unchanged.
            targets: Keys to compute; steps not needed for them are skipped.

        Returns:
            A dict from keys to computed tensors.
        """
        hook = hook or call_hook
        values: dict[Key, tf.Tensor] = dict(zip(self.input_keys, inputs))
        needed = self._needed(targets) if targets is not None else None
        for step in self.steps:
            if needed is not None and step not in needed:
                continue
            args = [values[key] for key in step.inputs]
            result = hook(step, args)
            if len(step.outputs) == 1:
                values[step.outputs[0]] = result
            else:
                for key, value in zip(step.outputs, keras.tree.flatten(result)):
                    values[key] = value
        return values

    def upstream(self, targets: Sequence[Key]) -> tuple[set[Step], set[Key]]:
        """The steps and values that ``targets`` depend on (targets included)."""
        wanted = set(targets)
        needed = set()
        for step in reversed(self.steps):
            if wanted.intersection(step.outputs):
                needed.add(step)
                wanted.update(step.inputs)
        return needed, wanted

    def _needed(self, targets: Sequence[Key]) -> set[Step]:
        return self.upstream(targets)[0]


def functional_of(model: Any, strict: bool = True):
    """The Functional graph behind a model, or None/raise when there is none."""
    if isinstance(model, keras.Sequential):
        if not model.built or model._functional is None:
            if not strict:
                return None
            raise ValueError(
                f"Sequential model {model.name!r} is not built, so its graph is "
                "unknown. Build it first: give it an input, "
                "`keras.Sequential([keras.Input(shape), ...])`, or call "
                "`model.build((None, *input_shape))`."
            )
        return model._functional
    if isinstance(model, keras.Model) and hasattr(model, "_nodes_by_depth"):
        return model
    if strict:
        raise TypeError(
            f"Model {getattr(model, 'name', model)!r} of class "
            f"{type(model).__name__} is a subclassed model with no layer graph, "
            "so rule-based analyzers cannot walk it. Rebuild it with the "
            "Functional or Sequential API, or use a gradient-based "
            "(`gradient`, `integrated_gradients`, ...) or model-agnostic "
            "(`occlusion`, ...) analyzer."
        )
    return None


def _nodes_in_order(functional) -> list:
    nodes = []
    for depth in sorted(functional._nodes_by_depth, reverse=True):
        for node in functional._nodes_by_depth[depth]:
            if node.operation is None or node.is_input:
                continue
            nodes.append(node)
    return nodes


def has_constant_operands(node) -> bool:
    """Whether a call reads floating-point operands that are not symbolic tensors."""
    args, kwargs = node.arguments.args, node.arguments.kwargs
    for value in keras.tree.flatten((args, kwargs)):
        if isinstance(value, keras.KerasTensor):
            continue
        if isinstance(value, float) or (hasattr(value, "dtype") and hasattr(value, "shape")):
            return True
    return False


def call_operation(operation, node) -> Callable:
    """A function computing ``operation`` as called at ``node``, in inference mode."""
    arguments = node.arguments
    tensor_ids = [id(t) for t in node.input_tensors]
    takes_training = getattr(operation, "_call_has_training_arg", False)

    def forward(*tensors):
        args, kwargs = arguments.fill_in(dict(zip(tensor_ids, tensors)))
        if takes_training:
            kwargs["training"] = False
        return operation(*args, **kwargs)

    return forward


def is_graph_model(model: Any) -> bool:
    """Whether ``model`` is a Keras model whose layer graph can be walked."""
    return isinstance(model, keras.Model) and functional_of(model, strict=False) is not None


def cast_like(value, reference):
    """Cast ``value`` to the dtype of ``reference``."""
    return ops.cast(value, reference.dtype)
