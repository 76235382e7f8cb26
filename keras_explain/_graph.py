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
import inspect
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import keras
import tensorflow as tf

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
        input_names: The call argument each input fills (``"query"``,
            ``"mask"``, ...; None inside a nested structure).
        input_dtypes: The dtypes of the inputs.
        options: The call's keyword arguments that are not tensors
            (``use_causal_mask=True``, ...).
    """

    operation: Any
    forward: Callable[..., Any]
    inputs: tuple[Key, ...]
    outputs: tuple[Key, ...]
    output_shapes: tuple[tuple, ...]
    output_dtypes: tuple[str, ...]
    constants: bool
    input_names: tuple[str | None, ...] = ()
    input_dtypes: tuple[str, ...] = ()
    options: dict = dataclasses.field(default_factory=dict)


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

    def produced() -> set[Key]:
        return {key for call in result.calls for key in call.outputs} | set(input_keys)

    def mask_key(prefix: Key, mask) -> Key:
        """The key of a Keras mask, adding the ops that compute it when the graph lacks them.

        A mask only an attention layer reads (from its input's ``_keras_mask``) is
        computed by ops that are not nodes of the functional graph's traversal.
        """
        key = resolve(prefix + (id(mask),))
        if key in produced():
            return key
        operation, node_index, _ = mask._keras_history
        node = operation._inbound_nodes[node_index]
        in_keys = tuple(mask_key(prefix, tensor) for tensor in node.input_tensors)
        result.calls.append(
            Call(
                operation,
                _forward(operation, node),
                in_keys,
                tuple(prefix + (id(t),) for t in node.outputs),
                tuple(tuple(t.shape) for t in node.outputs),
                tuple(str(t.dtype) for t in node.outputs),
                False,
                _input_names(operation, node),
                tuple(str(t.dtype) for t in node.input_tensors),
            )
        )
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
            names = _input_names(operation, node)
            masks = _implicit_masks(operation, node, names)
            in_keys += tuple(mask_key(prefix, mask) for _, mask in masks)
            names += tuple(name for name, _ in masks)
            options = {
                name: value
                for name, value in node.arguments.kwargs.items()
                if not isinstance(value, keras.KerasTensor)
            }
            result.calls.append(
                Call(
                    operation,
                    _forward(operation, node, [name for name, _ in masks]),
                    in_keys,
                    out_keys,
                    tuple(tuple(t.shape) for t in node.outputs),
                    tuple(str(t.dtype) for t in node.outputs),
                    not isinstance(operation, keras.layers.Layer) and _reads_constants(node),
                    names,
                    tuple(str(t.dtype) for t in node.input_tensors)
                    + tuple(str(mask.dtype) for _, mask in masks),
                    options,
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


def _input_names(operation, node) -> tuple[str | None, ...]:
    """The call argument each of the node's input tensors fills."""
    call = getattr(operation, "call", None)
    try:
        parameters = list(inspect.signature(call).parameters) if call else []
    except (TypeError, ValueError):
        parameters = []
    names = []
    flat = keras.tree.flatten_with_path((node.arguments.args, node.arguments.kwargs))
    for path, value in flat:
        if not isinstance(value, keras.KerasTensor):
            continue
        if path[0] == 1:  # a keyword argument
            name = path[1] if len(path) == 2 else None
        else:
            position = path[1]
            name = parameters[position] if len(path) == 2 and position < len(parameters) else None
        names.append(name)
    return tuple(names)


#: Attention layers read their inputs' Keras masks inside ``call``: those masks become
#: explicit inputs of the call, so a re-execution sees them whatever carries the tensors.
_MASKED_ARGUMENTS = ("query", "value", "key")


def _implicit_masks(operation, node, names) -> list[tuple[str, Any]]:
    """``(argument_mask, mask)`` pairs for masks a layer reads from its inputs' tensors."""
    if not isinstance(operation, keras.layers.MultiHeadAttention):
        return []
    masks = []
    for name, tensor in zip(names, node.input_tensors):
        mask = getattr(tensor, "_keras_mask", None)
        wanted = f"{name}_mask"
        if name in _MASKED_ARGUMENTS and mask is not None and wanted not in names:
            if all(item[0] != wanted for item in masks):
                masks.append((wanted, mask))
    return masks


def _forward(operation, node, mask_names=()) -> Callable:
    """A function computing ``operation`` as called at ``node``, in inference mode.

    ``mask_names`` name the Keras masks appended to the node's tensors as inputs
    (see :func:`_implicit_masks`); they are passed as keyword arguments, and a
    query mask is also set on the query tensor, where MultiHeadAttention reads it.
    """
    arguments = node.arguments
    tensor_ids = [id(t) for t in node.input_tensors]
    takes_training = getattr(operation, "_call_has_training_arg", False)
    count = len(tensor_ids)

    def forward(*tensors):
        args, kwargs = arguments.fill_in(dict(zip(tensor_ids, tensors[:count])))
        for name, mask in zip(mask_names, tensors[count:]):
            if name == "query_mask":
                query = tf.identity(args[0] if args else kwargs["query"])
                query._keras_mask = mask
                if args:
                    args = (query, *args[1:])
                else:
                    kwargs["query"] = query
            else:
                kwargs[name] = mask
        if takes_training:
            kwargs["training"] = False
        return operation(*args, **kwargs)

    return forward
