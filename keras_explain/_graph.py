"""Read the layer graph of a Keras 3 model: the only module that touches private Keras attributes.

:func:`walk` flattens a built Sequential or Functional model (nested models
inlined, shared layers, raw ``keras.ops`` calls) into :class:`Call` records in
execution order: which operation runs, on which values, writing which values,
and a ``forward`` function that repeats exactly that call in inference mode.
Values are named by :data:`Key` tuples. Everything public about a model's
structure is built on top of this in :mod:`keras_explain.graph`.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import keras
from keras.src.backend.common.masking import get_keras_mask, set_keras_mask

#: The name of one value of the graph (a tuple of ints).
Key = tuple


@dataclasses.dataclass(frozen=True, eq=False)
class Call:
    """One call of a layer or operation in the flattened graph.

    Attributes:
        operation: The Keras layer or operation.
        forward: ``forward(*tensors)`` repeats the call, in inference mode.
        inputs: Keys of the tensors it reads.
        outputs: Keys of the tensors it writes.
        output_shapes: Their static shapes.
        output_dtypes: Their dtypes (``"bool"`` for a mask).
        constants: The call also reads floating-point operands that are not
            tensors of the graph (a raw ``x + 2.0``).
    """

    operation: Any
    forward: Callable[..., Any]
    inputs: tuple[Key, ...]
    outputs: tuple[Key, ...]
    output_shapes: tuple[tuple, ...]
    output_dtypes: tuple[str, ...]
    constants: bool


@dataclasses.dataclass
class Walk:
    """A model flattened into calls, with its inputs, outputs and layers."""

    input_keys: list[Key]
    input_specs: list[Any]
    output_keys: list[Key]
    calls: list[Call]
    layers: list[Any]
    layer_outputs: dict[int, Key]


def walk(model: keras.Model) -> Walk:
    """Flatten ``model`` into calls, inlining nested models.

    Raises:
        ValueError: If ``model`` is an unbuilt Sequential model.
        TypeError: If ``model`` is a subclassed model with no graph.
    """
    functional = functional_of(model)
    input_keys = [(id(tensor),) for tensor in functional._inputs]
    result = Walk(input_keys, list(functional._inputs), [], [], [], {})
    aliases: dict[Key, Key] = {}
    counter = itertools.count()

    def resolve(key: Key) -> Key:
        while key in aliases:
            key = aliases[key]
        return key

    def inline(graph, prefix: Key, keys: Sequence[Key]) -> None:
        for tensor, key in zip(graph._inputs, keys):
            if prefix + (id(tensor),) != key:
                aliases[prefix + (id(tensor),)] = key
        for node in _nodes_in_order(graph):
            operation = node.operation
            in_keys = tuple(resolve(prefix + (id(t),)) for t in node.input_tensors)
            out_keys = tuple(prefix + (id(t),) for t in node.outputs)
            if not any(item is operation for item in result.layers):
                result.layers.append(operation)
            inner = functional_of(operation, strict=False)
            if inner is not None:
                inner_prefix = prefix + (next(counter),)
                args = node.arguments.args
                flat = keras.tree.flatten(args[0] if len(args) == 1 else args)
                inline(inner, inner_prefix, [resolve(prefix + (id(t),)) for t in flat])
                for outer, inner_output in zip(out_keys, inner._outputs):
                    aliases[outer] = resolve(inner_prefix + (id(inner_output),))
                result.layer_outputs.setdefault(id(operation), resolve(out_keys[0]))
                continue
            result.calls.append(
                Call(
                    operation,
                    _forward(operation, node),
                    in_keys,
                    out_keys,
                    tuple(tuple(t.shape) for t in node.outputs),
                    tuple(str(t.dtype) for t in node.outputs),
                    not isinstance(operation, keras.layers.Layer) and _reads_constants(node),
                )
            )
            result.layer_outputs.setdefault(id(operation), out_keys[0])

    inline(functional, (), input_keys)
    result.output_keys = [resolve((id(tensor),)) for tensor in functional._outputs]
    result.layer_outputs = {k: resolve(v) for k, v in result.layer_outputs.items()}
    return result


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


def keep_mask(operation, inputs: Sequence[Any], result: Any) -> Any:
    """Give ``result`` the Keras mask an ``Embedding`` call attaches to its output.

    Keras passes masks from layer to layer on a private tensor attribute. A hook
    that returns another tensor for an ``Embedding`` call (a substituted value, a
    ``tf.custom_gradient`` output) would drop it, and layers reading it (an
    attention layer, an RNN) would run unmasked; this puts the mask back, as
    ``model(x)`` computes it.
    """
    if not isinstance(operation, keras.layers.Embedding) or not operation.mask_zero:
        return result
    if get_keras_mask(result) is None:
        set_keras_mask(result, operation.compute_mask(inputs[0]))
    return result


def is_graph_model(model: Any) -> bool:
    """Whether ``model`` is a Keras model whose layer graph can be walked."""
    return isinstance(model, keras.Model) and functional_of(model, strict=False) is not None


def _nodes_in_order(functional) -> list:
    nodes = []
    for depth in sorted(functional._nodes_by_depth, reverse=True):
        for node in functional._nodes_by_depth[depth]:
            if node.operation is not None and not node.is_input:
                nodes.append(node)
    return nodes


def _reads_constants(node) -> bool:
    """Whether a call reads floating-point operands that are not symbolic tensors."""
    args, kwargs = node.arguments.args, node.arguments.kwargs
    for value in keras.tree.flatten((args, kwargs)):
        if isinstance(value, keras.KerasTensor):
            continue
        if isinstance(value, float) or (hasattr(value, "dtype") and hasattr(value, "shape")):
            return True
    return False


def _forward(operation, node) -> Callable:
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
