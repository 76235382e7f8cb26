"""The public, read-only view of a model's graph that rules, composites and canonizers use.

A :class:`Plan` is a model flattened into a static list of :class:`Step`
objects: each step applies one primitive :class:`Op` to named values
(:data:`Key`) and writes named values. Nested models are inlined, shared layers
appear once per call, fused activations are split into their own op, and raw
``keras.ops`` calls are ops too. ``Plan.run(inputs, hook)`` re-executes the model
in inference mode, calling ``hook(step, inputs)`` for every step: this is where
an analyzer puts its rules. The model is never modified and its weights are
never copied: ops read the layers' own variables every time they run.

Op kinds (``op.kind``), what a rule may rely on:

========================  ==============================================================
``"linear"``              an affine map with weights; ``op.linear`` is its
                          :class:`Linear` view (Dense, EinsumDense, convolutions,
                          BatchNormalization, keras.applications' layer scale)
``"rescale"``             input preprocessing, an element-wise affine map
                          (Rescaling, Normalization); ``op.linear`` is its view
``"activation"``          element-wise non-linearity, ``op.activation`` its name
``"softmax"``             a softmax
``"max_pool"``            routes each output to one input (max pooling, ``Maximum``)
``"sum_pool"``            a fixed linear map without weights: average pooling, ``Add``,
                          ``Subtract``, ``x * constant``, bilinear upsampling
``"multiply"``            an element-wise product of tensors (squeeze-and-excitation
                          gates); ``step.gates`` says which inputs are gates
``"bilinear"``            a product of two computed tensors that mixes elements
                          (``einsum``/``matmul`` of query and key, attention and
                          value); ``step.gates`` as for ``"multiply"``
``"normalization"``       LayerNormalization, RMSNormalization, UnitNormalization;
                          ``op.linearized`` is the op with its scale held constant
``"reshape"``             bookkeeping: values move unchanged (Flatten, padding, ...)
``"embedding"``           an ``Embedding`` lookup
``"constant"``            reads its input's shape only (position embeddings, masks)
``"recurrent"``           LSTM, GRU, SimpleRNN, Bidirectional; ``op.inner`` re-executes
                          it step by step from primitive ops (:class:`Inner`)
``"attention"``           MultiHeadAttention; ``op.inner`` as for ``"recurrent"``
``"other"``               anything else (no rule applies by default)
========================  ==============================================================

What each layer class is comes from one table (:func:`entry_of`,
:func:`supported_layers`): its op kind and views, its composite family, its
receptive-field geometry and its role for CAM. :func:`register_layer` adds a
layer to it in one call.

Example:
    >>> import keras
    >>> from keras_explain import graph
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu")])
    >>> [step.op.kind for step in graph.Plan(model).steps]
    ['linear', 'activation']
"""

from __future__ import annotations

import dataclasses
import math
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_explain import _graph, _layer_views
from keras_explain._layer_views import (
    FAMILIES,
    FIELDS,
    KINDS,
    ROLES,
    Entry,
    Linear,
    entry_of,
    supported_layers,
)

Key = _graph.Key
#: Final activations that ``strip_softmax`` bypasses besides a softmax: they turn
#: logits into probabilities (binary and multi-label classifiers).
OUTPUT_SQUASHERS = ("sigmoid",)
Hook = Callable[["Step", list], Any]

__all__ = [
    "FAMILIES",
    "FIELDS",
    "KINDS",
    "ROLES",
    "Entry",
    "Inner",
    "Key",
    "Linear",
    "Op",
    "Plan",
    "Deferred",
    "Step",
    "call_op",
    "entry_of",
    "register_layer",
    "register_op",
    "supported_layers",
    "unregister",
]

Linear.__module__ = __name__
Entry.__module__ = __name__


@dataclasses.dataclass(frozen=True, eq=False)
class Op:
    """One primitive operation.

    Attributes:
        kind: What the op is (see the module docstring), one of :data:`KINDS`.
        layer: The Keras layer or operation the op comes from.
        name: ``layer.name``, plus a suffix for split parts
            (``"dense/activation"``).
        forward: ``forward(*tensors)`` computes the op.
        activation: For activations, the function's name (``"relu"``, ...).
        linear: For linear and rescale ops, the :class:`Linear` view of the map.
        linearized: For normalizations, the op with its data-dependent scale
            under ``tf.stop_gradient`` and without bias: a linear map.
        constants: The op also reads floating-point operands that are not
            tensors of the graph (a raw ``x + 2.0``), so its output is not a
            function of its tensor inputs alone.
        inner: For recurrent and attention layers, the :class:`Inner`
            program that re-executes the layer from primitive ops.
        owner: For an operation of a layer the table does not know, opened into
            its operations, that layer (the outermost), else None.
        deferred: For a layer the table does not know whose call could not be
            opened into its operations on symbolic shapes (a length or batch size
            its code needs), the :class:`Deferred` opening: :meth:`Plan.run`
            opens it when the shapes of a run are known and runs its operations
            through the hook, as if they were steps of the plan.
        note: Why an op of kind ``"other"`` has no program (for messages).
    """

    kind: str
    layer: Any
    name: str
    forward: Callable[..., Any]
    activation: str | None = None
    linear: Linear | None = None
    linearized: Callable[..., Any] | None = None
    constants: bool = False
    inner: Inner | None = None
    note: str | None = None
    deferred: Deferred | None = None
    owner: Any = None

    def __repr__(self) -> str:
        return f"Op({self.kind}, {self.name})"


@dataclasses.dataclass(frozen=True, eq=False)
class Step:
    """An op applied to named values, writing named values.

    Attributes:
        op: The :class:`Op`.
        inputs: Keys of the values it reads.
        outputs: Keys of the values it writes.
        first_linear: A linear op that mixes input elements (not an
            element-wise map such as Rescaling) with no such op upstream:
            the "first layer" of composites.
        nonnegative: Every input is known to be ``>= 0`` (set by
            :func:`keras_explain.lrp.canonizers.canonize`).
        gates: For ``"multiply"`` ops, the positions of the inputs that are
            gates (they come out of a sigmoid-like activation, or are
            broadcast over the other input); set by ``canonize``.
        input_dtypes: The dtypes of its inputs in the model (empty when not
            recorded: the steps of a recurrent or attention program).
    """

    op: Op
    inputs: tuple[Key, ...]
    outputs: tuple[Key, ...]
    first_linear: bool = False
    nonnegative: bool = False
    gates: tuple[int, ...] = ()
    input_dtypes: tuple[str, ...] = ()

    def replace(self, **changes: Any) -> Step:
        """A copy of the step with some fields changed (canonizers use it)."""
        return dataclasses.replace(self, **changes)

    def as_in_model(self, inputs: Sequence[Any]) -> list:
        """``inputs`` in the dtypes the model gives them.

        Rules hand float32 values on between the ops of a ``float16`` or
        ``bfloat16`` model, so that relevance, the gradient of those values, is
        carried in float32; each op is run on its inputs cast back, so its
        forward value is the model's. An input of unrecorded dtype goes to the
        layer's compute dtype.
        """
        result = []
        for index, x in enumerate(inputs):
            wanted = self._dtype_in_model(index)
            if wanted in _LOW_PRECISION and getattr(x, "dtype", None) == tf.float32:
                x = tf.cast(x, wanted)
            result.append(x)
        return result

    @property
    def low_precision(self) -> bool:
        """Whether the step reads or computes float16 or bfloat16 values (:meth:`as_in_model`)."""
        compute = getattr(self.op.layer, "compute_dtype", None)
        return compute in _LOW_PRECISION or any(d in _LOW_PRECISION for d in self.input_dtypes)

    def _dtype_in_model(self, index: int) -> str | None:
        """The recorded dtype of input ``index``; unrecorded: the layer's compute dtype."""
        if index < len(self.input_dtypes):
            return self.input_dtypes[index]
        return getattr(self.op.layer, "compute_dtype", None)

    def __repr__(self) -> str:
        return f"Step({self.op.kind}, {self.op.name})"


@dataclasses.dataclass(frozen=True, eq=False)
class Inner:
    """A layer re-executed step by step from primitive ops (LSTM, attention, ...).

    Attributes:
        steps: The primitive steps by name (their ``inputs`` and ``outputs``
            are empty: the program feeds them itself). Their ops have kinds
            ``"linear"``, ``"activation"``, ``"multiply"`` (with ``gates``
            set), ``"sum_pool"``.
        program: ``program(inputs, apply)``, see :meth:`run`.

    Example:
        >>> import keras, numpy as np
        >>> from keras_explain import graph
        >>> model = keras.Sequential([keras.Input((3, 2)), keras.layers.SimpleRNN(4)])
        >>> step = graph.Plan(model).steps[0]
        >>> step.op.kind, sorted(step.op.inner.steps)
        ('recurrent', ['activation', 'linear'])
        >>> x = np.ones((1, 3, 2), "float32")
        >>> bool(np.allclose(step.op.inner.run([x]), model(x), atol=1e-6))
        True
    """

    steps: dict[str, Step]
    program: Callable[[list, Callable[[str, list], Any]], Any]

    def run(self, inputs: Sequence[tf.Tensor], hook: Hook | None = None) -> Any:
        """Re-execute the layer, calling ``hook(step, tensors)`` for every primitive op.

        Args:
            inputs: The tensors the layer's call reads (the step's inputs).
            hook: As for :meth:`Plan.run`; default :func:`call_op`.

        Returns:
            The layer's output.
        """
        hook = hook or call_op
        return self.program(list(inputs), lambda name, tensors: hook(self.steps[name], tensors))


def call_op(step: Step, inputs: list) -> Any:
    """The default hook: run the step's op unchanged (on its inputs as in the model)."""
    return step.op.forward(*step.as_in_model(inputs))


class Deferred:
    """A layer opened into its operations when the shapes of a run are known.

    Its ``call`` could not run on symbolic tensors of unknown length or batch size
    (KerasHub's decoder blocks build causal masks from the sequence length), so
    :meth:`Plan.run` opens it on the static shapes of the tensors it is given,
    once per shape, and runs the resulting steps through the hook. The opened
    steps must reproduce the layer on a probe input of those shapes (random
    floats, ones for integer inputs), run eagerly once; a layer that cannot be
    opened on the shapes, or whose opened steps differ from it, runs as one step.

    Attributes:
        mixed: Whether a mixing linear op is upstream of the layer (its first
            mixing linear op is then not the "first layer" of composites).
    """

    def __init__(self, reopen: Callable[[Sequence[tuple]], Any], forward: Callable[..., Any]):
        self._reopen = reopen
        self._forward = forward
        self._valid: dict[tuple, bool] = {}  # shapes -> the opened steps reproduce the layer
        # per traced graph: what the call computes from variables alone (a class token
        # tiled to the batch) are ops of that graph, which read the variables at each run
        self._expansions: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.mixed = False

    def steps(self, inputs: Sequence[tf.Tensor]) -> tuple[list, list, list[Step]] | None:
        """``(input_keys, output_keys, steps)`` of the layer opened on ``inputs``' shapes.

        None when a shape is not static or the call cannot be opened on it. Inside a
        ``tf.function`` the opened steps are kept for the traced graph; run eagerly,
        the layer is opened again at every call (its variables are read then).
        """
        shapes = tuple(tuple(x.shape) for x in inputs)
        if any(dim is None for shape in shapes for dim in shape):
            return None
        if shapes not in self._valid:
            with tf.init_scope():  # once per shape, eagerly
                expansion = self._expand(shapes)
                dtypes = [x.dtype for x in inputs]
                self._valid[shapes] = expansion is not None and self._reproduces(
                    expansion, shapes, dtypes
                )
        if not self._valid[shapes]:
            return None
        if tf.executing_eagerly():
            return self._expand(shapes)
        graph = tf.compat.v1.get_default_graph()
        kept = self._expansions.setdefault(graph, {})
        if shapes not in kept:
            kept[shapes] = self._expand(shapes)
        return kept[shapes]

    def _expand(self, shapes) -> tuple[list, list, list[Step]] | None:
        walk = self._reopen(shapes)
        if walk is None:
            return None
        steps = _steps_of(walk, {}, {})
        steps = _mark_first_linear(steps, set(walk.input_keys) if self.mixed else set())
        return list(walk.input_keys), walk.output_keys, steps

    def _reproduces(self, expansion, shapes, dtypes) -> bool:
        """Whether the opened steps equal the layer on a probe input (run eagerly, once)."""
        input_keys, output_keys, steps = expansion
        with tf.init_scope():
            probe = [
                tf.ones(shape, dtype)
                if dtype.is_integer or dtype.is_bool
                else tf.random.stateless_normal(shape, [7, index], dtype=dtype)
                for index, (shape, dtype) in enumerate(zip(shapes, dtypes))
            ]
            try:
                values = dict(zip(input_keys, probe))
                _run_steps(steps, values, call_op)
                opened = [values[key] for key in output_keys]
                whole = keras.tree.flatten(self._forward(*probe))
            except Exception:  # noqa: BLE001  (it cannot run opened: it runs whole)
                return False
            return len(opened) == len(whole) and all(
                a.shape == b.shape
                and bool(
                    tf.reduce_all(
                        tf.abs(tf.cast(a, tf.float32) - tf.cast(b, tf.float32))
                        <= _reproduction_tolerance(b.dtype) * (1 + tf.abs(tf.cast(b, tf.float32)))
                    )
                )
                for a, b in zip(opened, whole)
            )


def _reproduction_tolerance(dtype) -> float:
    """How far an opened layer may be from the whole one: 1e-4, or 16 units of round-off.

    In float16 and bfloat16 the opened operations round at other places than the
    layer's fused call (a Llama block in ``mixed_float16`` differs by 4.3 units of
    float16 round-off, 3.6 of bfloat16's); a wrong opening differs by O(1).
    """
    dtype = tf.as_dtype(dtype)
    if not dtype.is_floating:
        return 1e-4
    return max(1e-4, 16 * float(np.finfo(dtype.as_numpy_dtype).eps))


#: The dtypes whose values rules carry in float32 between ops.
_LOW_PRECISION = ("float16", "bfloat16")


def _run_steps(steps: Sequence[Step], values: dict, hook: Hook, needed=None) -> None:
    """Run ``steps`` through ``hook``, reading and writing ``values``.

    A step whose op is :class:`Deferred` runs as its opened steps when it can be
    opened on the shapes of its inputs.
    """
    for step in steps:
        if needed is not None and step not in needed:
            continue
        arguments = [values[key] for key in step.inputs]
        opened = None if step.op.deferred is None else step.op.deferred.steps(arguments)
        if opened is None:
            result = hook(step, arguments)
        else:
            input_keys, output_keys, inner_steps = opened
            inner = dict(zip(input_keys, arguments))
            _run_steps(inner_steps, inner, hook)
            result = [inner[key] for key in output_keys]
            result = result[0] if len(step.outputs) == 1 else result
        if len(step.outputs) == 1:
            values[step.outputs[0]] = result
        else:
            values.update(zip(step.outputs, keras.tree.flatten(result)))


class Plan:
    """A model as a flat list of primitive steps (read-only).

    Args:
        model: A built Sequential or Functional model (nested models, shared
            layers and raw ``keras.ops`` calls included).

    Attributes:
        model: The model.
        steps: The steps in execution order (a list; treat it as read-only and
            use :meth:`with_steps` to make a plan with other steps).
        input_keys: One key per model input.
        output_keys: One key per model output.
        input_specs: The model's symbolic inputs (``.shape``, ``.dtype``).
        layers: Every layer and operation, nested ones included.

    Raises:
        ValueError: If ``model`` is an unbuilt Sequential model.
        TypeError: If ``model`` is a subclassed model with no graph.
    """

    def __init__(self, model: keras.Model):
        walk = _graph.walk(model, opens=_opening)
        self.model = model
        self.input_keys = list(walk.input_keys)
        self.output_keys = list(walk.output_keys)
        self.input_specs = list(walk.input_specs)
        self.layers = list(walk.layers)
        self._layer_outputs = dict(walk.layer_outputs)
        self._shapes: dict[Key, tuple | None] = {
            key: tuple(spec.shape) for key, spec in zip(self.input_keys, self.input_specs)
        }
        self._dtypes: dict[Key, str] = {
            key: str(spec.dtype) for key, spec in zip(self.input_keys, self.input_specs)
        }
        steps = _steps_of(walk, self._shapes, self._dtypes)
        self._set_steps(_mark_first_linear(steps))

    def _set_steps(self, steps: Iterable[Step]) -> None:
        self.steps = list(steps)
        self._producers = {key: step for step in self.steps for key in step.outputs}

    def with_steps(self, steps: Iterable[Step]) -> Plan:
        """A view of this plan running other steps (canonizers return one).

        Args:
            steps: The new steps, in execution order.

        Returns:
            A new Plan sharing everything but its steps.
        """
        view = object.__new__(Plan)
        view.__dict__.update(self.__dict__)
        view._set_steps(steps)
        return view

    # -- queries ---------------------------------------------------------------------
    def find_layer(self, layer: str | keras.Operation, argument: str = "layer") -> Any:
        """A layer by name or object, nested models included.

        Args:
            layer: A layer name or object.
            argument: The user's argument name, for the error message.

        Returns:
            The layer.

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

    def output_key_of(self, layer: Any) -> Key:
        """The key of a layer's output (its first call's)."""
        return self._layer_outputs[id(layer)]

    def input_keys_of(self, layer: Any) -> list[Key]:
        """The keys of the values a layer's calls read (what its steps read, produced elsewhere).

        A layer called once on one tensor has one; ``Add``, ``Concatenate`` and a
        layer called twice have several. Empty for a layer without steps of its
        own (a nested model, whose steps belong to its layers).
        """
        own = [step for step in self.steps if step.op.layer is layer]
        produced = {key for step in own for key in step.outputs}
        keys: list[Key] = []
        for step in own:
            for key in step.inputs:
                if key not in produced and key not in keys:
                    keys.append(key)
        return keys

    def has_output(self, layer: Any) -> bool:
        """Whether the layer's output is a value of the plan."""
        return id(layer) in self._layer_outputs

    def shape_of(self, key: Key) -> tuple | None:
        """The static shape of a value (batch axis included), or None if unknown."""
        return self._shapes.get(key)

    def dtype_of(self, key: Key) -> str | None:
        """The dtype of a value (``"bool"`` for a Keras mask), or None if unknown."""
        return self._dtypes.get(key)

    def producer(self, key: Key) -> Step | None:
        """The step writing ``key``, or None for a model input."""
        return self._producers.get(key)

    def consumers(self, key: Key) -> list[Step]:
        """The steps reading ``key``."""
        return [step for step in self.steps if key in step.inputs]

    def upstream(self, targets: Sequence[Key]) -> tuple[set[Step], set[Key]]:
        """The steps and values that ``targets`` depend on (targets included)."""
        wanted = set(targets)
        needed = set()
        for step in reversed(self.steps):
            if wanted.intersection(step.outputs):
                needed.add(step)
                wanted.update(step.inputs)
        return needed, wanted

    def strip_softmax(self, key: Key) -> Key:
        """Follow ``key`` back through a final softmax or sigmoid, if there is one.

        A binary (or multi-label) classifier's sigmoid plays the part of a
        multi-class classifier's softmax: both turn logits into probabilities,
        and the logits are what is explained (a fused
        ``Dense(1, activation="sigmoid")``, an ``Activation("sigmoid")`` layer
        or a raw ``keras.ops.sigmoid``).
        """
        step = self.producer(key)
        if step is not None and (
            step.op.kind == "softmax"
            or (step.op.kind == "activation" and step.op.activation in OUTPUT_SQUASHERS)
        ):
            return step.inputs[0]
        return key

    def describe(self, rule: Callable[[Step], str] | None = None) -> str:
        """What the plan runs, one line per step: the plan before it runs.

        Args:
            rule: ``rule(step) -> str``, what an analyzer does at the step (the
                LRP rule); default: nothing.

        Returns:
            A text table: step (layer name), layer class, op kind, the rule, and a
            note (why a layer stays whole; a layer opened into its operations when
            the shapes of a run are known).

        Example:
            >>> import keras
            >>> from keras_explain import graph
            >>> model = keras.Sequential([keras.Input((3,)),
            ...                           keras.layers.Dense(2, activation="relu", name="d")])
            >>> print(graph.Plan(model).describe())
            step          class  kind
            d             Dense  linear
            d/activation  Dense  activation
        """
        rows = []
        for step in self.steps:
            note = step.op.note or ""
            if step.op.deferred is not None:
                note = "opened into its operations when the shapes of a run are known"
            row = [step.op.name, type(step.op.layer).__name__, step.op.kind]
            rows.append((row, rule(step) if rule is not None else None, note))
        header = ["step", "class", "kind"]
        if rule is not None:
            header.append("rule")
        if any(note for _, _, note in rows):
            header.append("note")
        table = [header]
        for row, rule_text, note in rows:
            row = row + ([rule_text] if rule is not None else [])
            table.append(row + ([note] if "note" in header else []))
        widths = [max(len(str(line[i])) for line in table) for i in range(len(header) - 1)]
        return "\n".join(
            "  ".join(
                [str(cell).ljust(width) for cell, width in zip(line[:-1], widths)] + [str(line[-1])]
            ).rstrip()
            for line in table
        )

    def unsupported(self, kinds: set[str]) -> list[Step]:
        """Steps whose op kind is not in ``kinds``."""
        return [step for step in self.steps if step.op.kind not in kinds]

    def bytes_per_sample(self, keys: Iterable[Key] | None = None) -> int | None:
        """Bytes of all values (or of ``keys``) per sample, from static shapes.

        Returns:
            The sum, in the compute dtype of each value's layer (float32 when
            unknown), or None when a shape is not fully known.
        """
        total = 0
        dtypes = {key: _itemsize(step.op.layer) for step in self.steps for key in step.outputs}
        for key in self._shapes if keys is None else keys:
            shape = self._shapes.get(key)
            if shape is None and "pre" in key:
                continue  # inside a separable convolution: its output is counted
            if shape is None or any(dim is None for dim in shape[1:]):
                return None
            total += math.prod(shape[1:]) * dtypes.get(key, 4)
        return total

    # -- execution -------------------------------------------------------------------
    def run(
        self,
        inputs: Sequence[tf.Tensor],
        hook: Hook | None = None,
        targets: Sequence[Key] | None = None,
    ) -> dict[Key, tf.Tensor]:
        """Execute the plan on real tensors.

        Args:
            inputs: One tensor per model input.
            hook: ``hook(step, inputs) -> output`` for every step; the default,
                :func:`call_op`, runs the op unchanged.
            targets: Keys to compute; steps not needed for them are skipped.

        Returns:
            A dict from keys to computed tensors.
        """
        hook = hook or call_op
        values: dict[Key, tf.Tensor] = dict(zip(self.input_keys, inputs))
        needed = self.upstream(targets)[0] if targets is not None else None
        _run_steps(self.steps, values, hook, needed)
        return values


# -- the layer table ---------------------------------------------------------------------
def register_layer(
    layer: type | str,
    *,
    kind: str,
    linear: Callable[[Any], Linear | Sequence[Linear] | None] | None = None,
    linearized: Callable[[Any], Callable[..., Any]] | None = None,
    activation: str | Callable[[Any], str] | None = None,
    kind_of: Callable[[Any, int], str] | None = None,
    program: Callable[..., list] | None = None,
    family: str | None = None,
    field: str | None = None,
    role: str | None = None,
    call: Callable[[Any], Callable[..., Any]] | None = None,
    note: str = "",
) -> Entry:
    """Tell the explainers what a layer computes: one entry of the layer table.

    The entry is all the library needs: the layer's op kind in every
    :class:`Plan` (so LRP rules, composites' families and defaults apply to it),
    its receptive field (:func:`keras_explain.features.receptive_field`), its
    role when CAM picks a default layer, and its line in
    :func:`supported_layers`. Subclasses of ``layer`` inherit the entry. A
    later entry for the same class overrides this one until it is removed with
    :func:`unregister`.

    Args:
        layer: A ``keras.layers.Layer`` subclass, or a class name for layers
            that cannot be imported.
        kind: Its op kind, one of :data:`KINDS`.
        linear: For kinds ``"linear"`` and ``"rescale"``: ``linear(layer)``
            returns the :class:`Linear` view of the layer's map (or a tuple of
            maps applied in order, or None when this configuration has none).
            A fused ``layer.activation`` becomes an op of its own.
        linearized: For kind ``"normalization"``: ``linearized(layer)``
            returns ``f(x)``, the layer with its data-dependent scale under
            ``tf.stop_gradient`` and without bias.
        activation: For kind ``"activation"``: its name (``"relu"``), or
            ``activation(layer) -> name``.
        kind_of: ``kind_of(layer, tensor_inputs) -> kind`` when the kind of a
            call depends on the layer's configuration.
        program: For kinds ``"recurrent"`` and ``"attention"``:
            ``program(layer, names, dtypes, options)``, the layer as a program
            of primitive ops (see ``keras_explain._sequence_views``).
        family: The linear layer family composites name, one of
            :data:`FAMILIES` (``"dense"``, ``"conv"``, ``"batch_norm"``).
        field: How its receptive field composes, one of :data:`FIELDS`:
            ``"window"`` (``kernel_size`` or ``pool_size``, ``strides``,
            ``dilation_rate`` and ``padding`` are read from the layer),
            ``"pointwise"`` (each spatial position separately), ``"padding"``
            (``layer.padding``), ``"cropping"`` (``layer.cropping``); None: it
            cannot be followed.
        role: For CAM, one of :data:`ROLES`: ``"global"`` pooling,
            ``"resampling"`` or ``"bookkeeping"`` (never the default layer);
            kind ``"reshape"`` defaults to ``"bookkeeping"``.
        call: For kind ``"other"``, a layer whose ``call`` cannot run on
            symbolic tensors (it uses backend functions such as ``tf.gather``):
            ``call(layer) -> f``, ``f(*args, **kwargs)`` the same computation in
            ``keras.ops``. The layer is then opened into ``f``'s operations, as an
            unknown layer is into its call's.
        note: A remark shown in :func:`supported_layers`.

    Returns:
        The :class:`Entry`, to pass to :func:`unregister`.

    Raises:
        TypeError: If ``layer`` is neither a Layer subclass nor a class name.
        ValueError: For an unknown kind, family, field or role, or a kind
            without the view it needs (``"linear"`` without ``linear``, ...).

    Example:
        >>> import keras
        >>> from keras_explain import graph
        >>> class Double(keras.layers.Layer):
        ...     def call(self, x):
        ...         return 2.0 * x
        >>> model = keras.Sequential([keras.Input((3,)), Double()])
        >>> entry = graph.register_layer(Double, kind="sum_pool", field="pointwise")
        >>> [(step.op.kind, type(step.op.layer).__name__) for step in graph.Plan(model).steps]
        [('sum_pool', 'Double')]
        >>> graph.unregister(entry)  # unknown again: opened into its keras.ops operations
        >>> [(step.op.kind, type(step.op.layer).__name__) for step in graph.Plan(model).steps]
        [('sum_pool', 'Multiply')]
    """
    if isinstance(layer, type) and not issubclass(layer, keras.layers.Layer):
        raise TypeError(
            f"register_layer needs a keras.layers.Layer subclass or a class name; use "
            f"register_op for keras.ops operations. Received: layer={layer!r}."
        )
    entry = Entry(
        layer,
        kind,
        linear=linear,
        linearized=linearized,
        activation=activation,
        kind_of=kind_of,
        program=program,
        family=family,
        field=field,
        role=role,
        call=call,
        note=note,
    )
    return _layer_views.register(entry)


def register_op(
    name: str,
    *,
    kind: str,
    activation: str | Callable[[Any], str] | None = None,
    kind_of: Callable[[Any, int], str] | None = None,
    field: str | None = "pointwise",
    role: str | None = None,
    note: str = "",
) -> Entry:
    """Tell the explainers what a raw ``keras.ops`` operation is: one entry of the layer table.

    Raw operations in a functional graph (``keras.ops.erf(x)``) are ops of a
    :class:`Plan` too; the table knows them by the class name of the
    operation (``keras.ops.relu`` is ``"Relu"``).

    Args:
        name: The operation's class name.
        kind: Its op kind, one of :data:`KINDS`.
        activation: For kind ``"activation"``: its name.
        kind_of: ``kind_of(op, tensor_inputs) -> kind`` when the kind depends
            on the call (``x * 2`` against ``x * y``).
        field: As for :func:`register_layer`; default ``"pointwise"``.
        role: As for :func:`register_layer`.
        note: A remark shown in :func:`supported_layers`.

    Returns:
        The :class:`Entry`, to pass to :func:`unregister`.

    Raises:
        TypeError: If ``name`` is not a string.
        ValueError: As for :func:`register_layer`.

    Example:
        >>> import keras
        >>> from keras_explain import graph
        >>> inputs = keras.Input((3,))
        >>> model = keras.Model(inputs, keras.ops.erf(inputs))
        >>> entry = graph.register_op("Erf", kind="activation", activation="erf")
        >>> [(step.op.kind, step.op.activation) for step in graph.Plan(model).steps]
        [('activation', 'erf')]
        >>> graph.unregister(entry)
    """
    if not isinstance(name, str):
        raise TypeError(
            f"register_op needs the operation's class name (a string, e.g. 'Erf'). "
            f"Received: name={name!r}."
        )
    entry = Entry(
        name,
        kind,
        op=True,
        activation=activation,
        kind_of=kind_of,
        field=field,
        role=role,
        note=note,
    )
    return _layer_views.register(entry)


def unregister(entry: Entry) -> None:
    """Remove an entry of :func:`register_layer` or :func:`register_op`.

    The entry registered before it for the same class (the library's own, if
    any) applies again.

    Args:
        entry: The entry that registration returned.

    Raises:
        ValueError: If the entry is not registered (removed twice).
    """
    _layer_views.unregister(entry)


def _steps_of(walk: Any, shapes: dict, dtypes: dict) -> list[Step]:
    """The steps of a walk's calls; records their output shapes and dtypes."""
    steps = []
    for call in walk.calls:
        parts = _layer_views.decompose(
            call.operation,
            call.forward,
            len(call.inputs),
            call.input_names,
            call.input_dtypes,
            call.options,
        )
        deferred = None
        if call.note is not None and [part.kind for part in parts] == ["other"]:
            parts = [_layer_views.Part("other", "", call.forward, note=call.note)]
            deferred = None if call.reopen is None else Deferred(call.reopen, call.forward)
        name = getattr(call.operation, "name", type(call.operation).__name__)
        shapes.update(zip(call.outputs, call.output_shapes))
        dtypes.update(zip(call.outputs, call.output_dtypes))
        current = call.inputs
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            outputs = call.outputs if last else (call.outputs[0] + ("pre", index),)
            if not last:  # known when only activations follow (shape-preserving)
                rest = {later.kind for later in parts[index + 1 :]}
                known = rest <= {"activation", "softmax"}
                shapes[outputs[0]] = call.output_shapes[0] if known else None
            op = _op(part, call.operation, name, call.constants)
            if part.forward is None:  # a layer with a program runs as itself
                op = dataclasses.replace(op, forward=call.forward)
            if deferred is not None or call.owner is not None:
                op = dataclasses.replace(op, deferred=deferred, owner=call.owner)
            in_dtypes = call.input_dtypes if index == 0 else call.output_dtypes[:1]
            steps.append(Step(op, current, outputs, input_dtypes=tuple(in_dtypes)))
            current = outputs
    return steps


def _opening(layer: Any) -> Callable[..., Any] | None:
    """What a layer is opened through: its call, a stand-in, or None (not opened).

    Its call when the table does not know it, its entry's stand-in for its call.
    """
    entry = entry_of(layer)
    if entry is None:
        return layer.call
    return None if entry.call is None else entry.call(layer)


def _op(part: _layer_views.Part, layer: Any, name: str, constants: bool = False) -> Op:
    """The Op of a part of a layer call (and of the parts of its program)."""
    inner = None
    if part.inner is not None:
        inner = Inner(
            {
                key: Step(_op(inner_part, layer, name), (), (), gates=inner_part.gates)
                for key, inner_part in part.inner.parts.items()
            },
            part.inner.run,
        )
    return Op(
        part.kind,
        layer if part.layer is None else part.layer,
        name + part.suffix,
        part.forward,
        part.activation,
        part.linear,
        part.linearized,
        constants,
        inner,
        part.note,
    )


def _itemsize(layer) -> int:
    dtype = getattr(layer, "compute_dtype", None) or "float32"
    return tf.as_dtype(dtype).size


def _mark_first_linear(steps: list[Step], after: set[Key] | None = None) -> list[Step]:
    """Mark mixing linear ops with no mixing linear op upstream.

    ``after`` holds the keys known to come after a mixing linear op already.
    """
    after = set() if after is None else set(after)
    result = []
    for step in steps:
        upstream = any(key in after for key in step.inputs)
        mixing = step.op.kind == "linear" and not step.op.linear.elementwise
        if step.op.deferred is not None:  # its own first linear op is found when opened
            step.op.deferred.mixed = upstream
            after.update(step.outputs)
        if step.op.inner is not None:  # mixes inputs; its programs' ops are never "first"
            after.update(step.outputs)
        if mixing and not upstream:
            step = step.replace(first_linear=True)
        if upstream or mixing:
            after.update(step.outputs)
        result.append(step)
    return result
