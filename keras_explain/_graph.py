"""Read the layer graph of a Keras 3 model: the only module touching private Keras or TF names.

:func:`walk` flattens a built Sequential or Functional model (nested models
inlined, shared layers, raw ``keras.ops`` calls) into :class:`Call` records in
execution order: which operation runs, on which values, writing which values,
and a ``forward`` function that repeats exactly that call in inference mode.
Values are named by :data:`Key` tuples. Everything public about a model's
structure is built on top of this in :mod:`keras_explain.graph`.
"""

from __future__ import annotations

import contextlib
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
        note: Why a layer that was to be opened into its operations could not be
            (for messages), or None.
        reopen: For such a layer, ``reopen(shapes) -> Walk | None``: the walk of
            its call opened on inputs of the given static shapes (the shapes of a
            run), or None when it cannot be opened on them either.
        owner: For a call inside a layer opened into its operations, that layer
            (the outermost one), or None.
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
    note: str | None = None
    reopen: Callable[[Sequence[tuple]], Walk | None] | None = None
    owner: Any = None


@dataclasses.dataclass
class Walk:
    """A model flattened into calls, with its inputs, outputs and layers."""

    input_keys: list[Key]
    input_specs: list[Any]
    output_keys: list[Key]
    calls: list[Call]
    layers: list[Any]
    layer_outputs: dict[int, Key]


def walk(
    model: keras.Model,
    opens: Callable[[Any], Callable | None] | None = None,
    owner: Any = None,
    static: bool = False,
) -> Walk:
    """Flatten ``model`` into calls, inlining nested models and the layers ``opens`` picks.

    A layer to open is called once on symbolic stand-ins of its inputs (its
    ``call``, not ``__call__``), so the ``keras.ops`` operations and the sublayers
    it runs are recorded as a small functional graph, which is inlined as a nested
    model is, recursively. The nodes this adds to the sublayers are removed again
    when the walk ends: the model is not modified. A layer whose ``call`` cannot run
    on symbolic tensors (Python control flow on values, shapes unknown until run
    time, backend calls) stays one call, with the reason as its ``note``.

    Args:
        model: A built Sequential or Functional model.
        opens: ``opens(layer) -> call | None``: the function a layer (not a
            model) is opened through, its ``call`` or a stand-in written in
            ``keras.ops``; None keeps it whole. Default: none is opened.
        owner: The layer ``model`` was opened from, if it is one (its calls say so).
        static: Whether ``model``'s shapes are those of a run (a layer opened when
            they are known): the layers opened inside it keep them, batch size
            included (a ``Reshape`` they build must not see an unknown batch).

    Raises:
        ValueError: If ``model`` is an unbuilt Sequential model.
        TypeError: If ``model`` is a subclassed model with no graph.
    """
    functional = functional_of(model)
    input_keys = [(id(tensor),) for tensor in functional._inputs]
    result = Walk(input_keys, list(functional._inputs), [], [], [], {})
    aliases: dict[Key, Key] = {}
    counter = itertools.count()
    added_nodes: dict[int, tuple[Any, int, int]] = {}  # layer id -> (layer, inbound, outbound)

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

    def inline(graph, prefix: Key, keys: Sequence[Key], owner: Any = owner) -> None:
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
            note = reopen = None
            call = opens(operation) if opens is not None and _openable(operation) else None
            inner_owner = owner
            if inner is not None:
                # a model called as model(x) or as model(inputs=x) (KerasHub's Gemma3CausalLM)
                args = node.arguments.args or tuple(
                    value for name, value in node.arguments.kwargs.items() if name == "inputs"
                )
                flat = keras.tree.flatten(args[0] if len(args) == 1 else args)
                inner_keys = [resolve(prefix + (id(t),)) for t in flat]
                kept = range(len(out_keys))
            elif call is not None:
                try:
                    inner, kept = _opened(operation, call, node, added_nodes, static=static)
                    if any(id(node.outputs[i]) in _consumed(graph) for i in _dropped(node, kept)):
                        raise ValueError("its call returned a non-tensor for an output in use")
                    inner_keys = list(in_keys)
                    inner_owner = owner or operation
                except Exception as error:  # noqa: BLE001  (any failure: the layer stays whole)
                    note = _open_failure(operation, error)
                    reopen = _reopener(operation, call, node, opens, owner or operation)
                    # deferred only if it opens once its unknown dimensions are known
                    # (probed with 2): a call that fails for another reason stays whole
                    shapes = [tuple(tensor.shape) for tensor in node.input_tensors]
                    probe = [tuple(2 if dim is None else dim for dim in s) for s in shapes]
                    if probe == shapes or reopen(probe) is None:
                        reopen = None
            if inner is not None:
                inner_prefix = prefix + (next(counter),)
                inline(inner, inner_prefix, inner_keys, inner_owner)
                for index, inner_output in zip(kept, inner._outputs):
                    aliases[out_keys[index]] = resolve(inner_prefix + (id(inner_output),))
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
                    note,
                    reopen,
                    owner,
                )
            )
            result.layer_outputs.setdefault(id(operation), out_keys[0])

    try:
        inline(functional, (), input_keys)
    finally:  # the symbolic calls of opened layers added nodes to their sublayers
        _remove_added(added_nodes)
    result.output_keys = [resolve((id(tensor),)) for tensor in functional._outputs]
    result.layer_outputs = {k: resolve(v) for k, v in result.layer_outputs.items()}
    return result


def _openable(operation: Any) -> bool:
    """A layer with a ``call`` of its own (not an input, not a model)."""
    return isinstance(operation, keras.layers.Layer) and not isinstance(
        operation, keras.layers.InputLayer | keras.Model
    )


def _remove_added(added_nodes: dict) -> None:
    """Remove the nodes symbolic calls added to layers (``{id: (layer, inbound, outbound)}``)."""
    for layer, inbound, outbound in added_nodes.values():
        del layer._inbound_nodes[inbound:]
        del layer._outbound_nodes[outbound:]


def _reopener(operation, call, node, opens, owner) -> Callable[[Sequence[tuple]], Walk | None]:
    """``reopen(shapes)``: the walk of the layer's call opened on inputs of static ``shapes``."""

    def reopen(shapes: Sequence[tuple]) -> Walk | None:
        added: dict = {}
        try:
            opened, kept = _opened(operation, call, node, added, shapes)
            if _dropped(node, kept):
                return None
            return walk(opened, opens, owner, static=True)
        except Exception:  # noqa: BLE001  (it stays one call, as when the plan was built)
            return None
        finally:
            _remove_added(added)

    return reopen


def _opened(
    operation,
    call: Callable,
    node,
    added_nodes: dict,
    shapes: Sequence[tuple] | None = None,
    static=False,
) -> tuple[Any, list[int]]:
    """The functional graph of one call of a layer, from ``call`` on symbolic stand-ins.

    ``call`` is the layer's ``call``, or a stand-in for it written in ``keras.ops``.
    Returns the graph and the positions of the layer's outputs it computes.

    Its inputs are the stand-ins of the node's input tensors, in their order, shaped
    like them with an unknown batch size (methods run copies of a batch: a batch size
    must not be baked into the opened operations), or exactly like them when
    ``static`` (inside a layer opened on a run's shapes), or with the given ``shapes``.
    """
    for layer in [operation, *sublayers(operation)]:
        if id(layer) not in added_nodes:
            added_nodes[id(layer)] = (
                layer,
                len(layer._inbound_nodes),
                len(layer._outbound_nodes),
            )
    shapes = shapes or [
        tuple(tensor.shape) if static else (None, *tuple(tensor.shape)[1:])
        for tensor in node.input_tensors
    ]
    stand_ins = [
        keras.Input(batch_shape=tuple(shape), dtype=tensor.dtype)
        for tensor, shape in zip(node.input_tensors, shapes)
    ]
    args, kwargs = node.arguments.fill_in(
        {id(tensor): stand_in for tensor, stand_in in zip(node.input_tensors, stand_ins)}
    )
    kwargs = dict(kwargs)
    if getattr(operation, "_call_has_training_arg", False):
        kwargs["training"] = False
    with _tolerant_output_specs(sublayers(operation), traced=static or shapes is not None):
        outputs = keras.tree.flatten(call(*args, **kwargs))
    if len(outputs) != len(node.outputs):
        raise ValueError(
            f"its call returned {len(outputs)} values for the {len(node.outputs)} outputs "
            "of the layer"
        )
    # outputs that are not tensors of its inputs (DeiT's encoder returns empty arrays
    # for the attention scores it was not asked for) are left out: unused, they are
    # not the layer's computation
    kept = [i for i, output in enumerate(outputs) if _symbolic(output)]
    opened = keras.Model(stand_ins, [outputs[i] for i in kept])
    for inner in opened.operations:
        shape = getattr(inner, "newshape", None)  # a reshape's target
        if isinstance(shape, list | tuple) and any(dim is None for dim in shape):
            raise ValueError(
                f"a reshape to {tuple(shape)} holds a dimension unknown on symbolic tensors"
            )
    return opened, kept


def disentangled_attention(layer) -> Callable:
    """KerasHub's DeBERTaV3 attention call, its relative scores gathered in ``keras.ops``.

    On TensorFlow the layer gathers its content-to-position and position-to-content
    scores with ``tf.gather(..., batch_dims=3)``, which symbolic tensors cannot
    enter; ``ops.take_along_axis`` on the last axis is the same gather (the layer's
    own path on the other backends). The stand-in method is an instance attribute
    removed again after the call.
    """

    def relative_scores(query, key, rel_embeddings):
        batch, positions = keras.ops.shape(query)[0], keras.ops.shape(query)[1]
        span = layer.bucket_size
        relative = layer._get_rel_pos(positions)
        shape = (batch, layer.num_heads, positions, positions)
        scores = []
        for projection, other, offsets in (
            (layer._key_dense, query, relative),  # content to position
            (layer._query_dense, key, -relative),  # position to content
        ):
            score = keras.ops.einsum("aecd,abcd->acbe", projection(rel_embeddings), other)
            index = keras.ops.broadcast_to(keras.ops.clip(offsets + span, 0, 2 * span - 1), shape)
            scores.append(keras.ops.take_along_axis(score, index, axis=3))
        to_position, to_content = scores[0], keras.ops.transpose(scores[1], [0, 1, 3, 2])
        return keras.ops.multiply(to_position, layer.scale_factor) + keras.ops.multiply(
            to_content, layer.scale_factor
        )

    def call(*args, **kwargs):
        object.__setattr__(layer, "_compute_disentangled_attention", relative_scores)
        try:
            return layer.call(*args, **kwargs)
        finally:
            object.__delattr__(layer, "_compute_disentangled_attention")

    return call


def _symbolic(output: Any) -> bool:
    """A symbolic tensor that is not a stand-in for a None output (:func:`_absent_as_tensors`)."""
    return isinstance(output, keras.KerasTensor) and not getattr(output, _ABSENT, False)


def _dropped(node, kept: Sequence[int]) -> list[int]:
    """The positions of ``node``'s outputs that its opened call does not produce."""
    return [i for i in range(len(node.outputs)) if i not in kept]


@contextlib.contextmanager
def _tolerant_output_specs(layers, traced: bool = False):
    """Sublayers' ``compute_output_spec`` accepting keyword arguments passed as None.

    A layer may pass a sublayer keyword arguments that the sublayer's
    ``compute_output_spec`` does not name (KerasHub's ``CachedMultiHeadAttention``
    gets ``cache=None``): Keras builds the outer layer by tracing its whole call
    in a backend graph, where that method never runs, but opening calls the
    sublayers on symbolic tensors. Arguments left None are dropped, through
    instance attributes removed on exit (the layers are as before).

    A None a sublayer returns beside its outputs (DeiT's blocks return
    ``(x, None)`` when no attention scores are asked for) becomes a marked
    stand-in tensor, as Keras records only tensors; nothing may read it
    (:func:`_dropped`).

    With ``traced`` (a layer opened on a run's shapes), every sublayer's output
    spec comes from tracing its call instead: a declared output shape keeps the
    unknown axes of its configuration (``EinsumDense(output_shape=(None, 4, 4))``),
    and a ``reshape`` to ``ops.shape`` of that output (Gemma's attention) would
    then hold None.
    """
    patched = []
    for layer in layers:
        spec = layer.compute_output_spec
        method = type(layer).compute_output_spec
        parameters = inspect.signature(method).parameters
        if method is not keras.layers.Layer.compute_output_spec and not any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
        ):
            spec = _dropping_none(spec, set(parameters))
        if traced:
            spec = _traced(layer, spec)
        object.__setattr__(layer, "compute_output_spec", _absent_as_tensors(spec))
        patched.append(layer)
    try:
        yield
    finally:
        for layer in patched:
            object.__delattr__(layer, "compute_output_spec")


def _traced(layer, spec: Callable) -> Callable:
    """``compute_output_spec`` of ``layer`` by tracing its call; ``spec`` if that fails."""

    def traced(*args, **kwargs):
        try:
            return keras.Operation.compute_output_spec(layer, *args, **kwargs)
        except Exception:  # noqa: BLE001  (a call that cannot be traced alone: as declared)
            return spec(*args, **kwargs)

    return traced


#: the attribute marking a stand-in for a None output
_ABSENT = "_keras_explain_absent"


def _absent_as_tensors(method: Callable) -> Callable:
    """``method`` with the None items of a tuple or list it returns replaced by stand-ins."""

    def specified(*args, **kwargs):
        spec = method(*args, **kwargs)
        if not isinstance(spec, tuple | list) or all(item is not None for item in spec):
            return spec
        return type(spec)(_absent() if item is None else item for item in spec)

    return specified


def _absent() -> keras.KerasTensor:
    stand_in = keras.KerasTensor((), dtype="float32")
    setattr(stand_in, _ABSENT, True)
    return stand_in


def _consumed(graph) -> set[int]:
    """The ids of the tensors ``graph``'s nodes read or it returns."""
    read = {id(t) for node in _nodes_in_order(graph) for t in node.input_tensors}
    return read | {id(t) for t in graph._outputs}


def _dropping_none(method: Callable, names: set[str]) -> Callable:
    """``method`` called without the keyword arguments it does not name that are None."""

    def tolerant(*args, **kwargs):
        kept = {k: v for k, v in kwargs.items() if k in names or v is not None}
        return method(*args, **kept)

    return tolerant


def _open_failure(operation, error: Exception) -> str:
    """Why a layer could not be opened into its operations."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return (
        "its call could not run on symbolic tensors to be opened into keras.ops "
        f"operations ({type(error).__name__}: {first[:160]})"
    )


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


def position_limit(layers: Any) -> tuple[str, int] | None:
    """``(layer name, positions)`` of the shortest learned position embedding, or None.

    A learned position embedding (KerasHub's ``PositionEmbedding``,
    ``TokenAndPositionEmbedding``) has a table of ``sequence_length`` rows: longer
    sequences cannot be placed. Rotary embeddings have no limit.

    Args:
        layers: The layers to look at (a plan's steps' layers, or :func:`sublayers`).
    """
    limits = [
        (layer.name, int(layer.sequence_length))
        for layer in layers
        if isinstance(getattr(layer, "sequence_length", None), int)
        and "Position" in type(layer).__name__
    ]
    return min(limits, key=lambda item: item[1]) if limits else None


def sublayers(model: Any) -> list:
    """Every layer inside ``model``, at any depth (not ``model`` itself)."""
    return list(model._flatten_layers(include_self=False))


def release_gradients(graph: Any) -> int:
    """Forget the backward functions ``tf.custom_gradient`` registered for ``graph``.

    In graph mode every ``tf.custom_gradient`` call registers its backward closure in
    TensorFlow's global gradient registry under a fresh name, and nothing ever removes
    it; the closure holds the traced tensors, and with them the whole traced graph
    (about 90 MiB per LRP analyzer on EfficientNetB0 at 64 x 64). An explanation's
    backward pass is taken by the tape inside the trace, which calls the closures
    directly, so once the concrete function exists its registrations are unused.
    Only entries whose forward tensors belong to ``graph`` (or to a graph nested in it,
    a loop body) are removed; a TensorFlow whose registry looks different is left alone.

    Args:
        graph: A traced ``FuncGraph`` (``concrete_function.graph``).

    Returns:
        How many registrations were removed.
    """
    from tensorflow.python.framework import ops as tf_ops  # the registry is not public

    registry = getattr(getattr(tf_ops, "_gradient_registry", None), "_registry", None)
    if not isinstance(registry, dict):
        return 0
    released = [
        name
        for name, entry in list(registry.items())
        if name.startswith("CustomGradient-") and _registered_in(entry, graph)
    ]
    for name in released:
        registry.pop(name, None)
    return len(released)


def _registered_in(entry: Any, graph: Any) -> bool:
    """Whether a gradient-registry entry was made by ``tf.custom_gradient`` in ``graph``."""

    def closure(function) -> dict:
        cells = getattr(function, "__closure__", None) or ()
        names = getattr(getattr(function, "__code__", None), "co_freevars", ())
        return {name: cell.cell_contents for name, cell in zip(names, cells)}

    try:
        backward = closure(entry.get("type")).get("tape_grad_fn")
        result = closure(backward).get("result")
        tensors = tf.nest.flatten(result)
    except (AttributeError, TypeError, ValueError):
        return False
    for tensor in tensors:
        owner = getattr(tensor, "graph", None)
        while owner is not None:
            if owner is graph:
                return True
            owner = getattr(owner, "outer_graph", None)
    return False


def unrecorded(function: Callable) -> Callable:
    """``function`` (a traced explanation) called with gradient recording stopped.

    An analysis run under a user's ``GradientTape`` (a custom training loop that logs
    heatmaps) reads the model's variables, so the tape would record the call and,
    at ``tape.gradient``, look up the backward functions :func:`release_gradients`
    removed. Explanations come out as numpy arrays: there is nothing to record.
    """
    from tensorflow.python.eager import record  # stop_recording is not public

    def call(*arguments):
        with record.stop_recording():
            return function(*arguments)

    return call
