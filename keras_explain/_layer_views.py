"""How each Keras layer and operation looks to the explainers: the one layer table.

Every layer class and raw ``keras.ops`` operation class the library knows has
one :class:`Entry` here, and everything else is read from it:

- what one call is, as primitive ops (:func:`decompose`, read by
  :class:`keras_explain.graph.Plan`): its op *kind* (what rules see), for
  linear maps a :class:`Linear` view (the layer's current weights as tensors
  and the map evaluated with any weights of the same shapes: ``W⁺``, ``W²``, a
  folded BatchNormalization, ...), for normalizations a *linearized* forward
  (the op with its data-dependent scale held constant, without its bias, a
  linear map of its input; Ali et al. 2022), for activations their name, and
  for recurrent and attention layers the builder of their program;
- the linear layer *family* composites name (``"dense"``, ``"conv"``,
  ``"batch_norm"``);
- how the layer's receptive field composes (``field``, read by
  :func:`keras_explain.features.receptive_field`);
- its *role* for CAM's choice of layer (global pooling, resampling, bookkeeping);
- the supported list of error messages and of the docs (:func:`supported_layers`).

Lookup (:func:`entry_of`) follows the class's MRO, so a subclass inherits its
base's entry; layers that cannot be imported (keras.applications' own) and the
``keras.ops`` operation classes (``keras.src`` classes) are keyed by class
name. Layer names and op names are separate: a user layer named ``Add`` is not
the ``keras.ops`` ``Add``. A layer or op with no entry is *unknown*: one op of
kind ``"other"``.

Registering a layer is one :class:`Entry` (:func:`register`; the public form
is :func:`keras_explain.graph.register_layer`). Entries of one key stack:
:func:`unregister` removes one, and the one before it (the library's own, if
any) applies again.

The recurrent and attention builders live in ``_sequence_views``, which imports
this module; their entries here point to them by name and import that module
when a program is first built (:func:`_sequence_program`), so the whole table
is in this file and complete whatever was imported first.

Only public layer attributes are read here; the graph walk lives in ``_graph.py``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import keras
import tensorflow as tf
from keras import ops

from keras_explain import _graph

layers = keras.layers

#: Op kinds: what a rule can rely on.
KINDS = (
    "linear",  # an affine map with weights: Dense, convolutions, BatchNormalization, ...
    "rescale",  # input preprocessing, an element-wise affine map: Rescaling, Normalization
    "activation",  # an element-wise non-linearity
    "softmax",
    "max_pool",  # routes its output to one input element (max pooling, Maximum)
    "sum_pool",  # a fixed linear map without weights: average pooling, Add, x * constant
    "multiply",  # an element-wise product of tensors (gates)
    "bilinear",  # a product of two computed tensors that mixes elements (query · key)
    "normalization",  # LayerNormalization & co.: linear once the scale is held constant
    "reshape",  # bookkeeping: the values move, unchanged
    "embedding",
    "constant",  # reads its input's shape only (position embeddings): passes nothing back
    "recurrent",  # LSTM, GRU, SimpleRNN, Bidirectional: a program of the kinds above
    "attention",  # MultiHeadAttention: a program of the kinds above
    "other",
)
#: Linear layer families, the layer kinds of composites besides the op kinds.
FAMILIES = ("dense", "conv", "batch_norm")
#: How a layer's receptive field composes (None: it cannot be followed).
FIELDS = (
    "window",  # kernel_size or pool_size, strides, dilation_rate, padding read from the layer
    "pointwise",  # each spatial position separately (when the spatial shape is kept)
    "padding",  # zero padding: layer.padding
    "cropping",  # layer.cropping
)
#: What a layer is to CAM's choice of the default layer.
ROLES = (
    "global",  # global pooling
    "resampling",  # pools, resizes, pads or crops the maps of the layer before it
    "bookkeeping",  # values move unchanged (the default of kind "reshape")
)


@dataclasses.dataclass(frozen=True, eq=False)
class Linear:
    """An affine op seen as ``z = apply(x, kernel, bias)``.

    Attributes:
        weights: ``weights() -> (kernel, bias)``, the layer's current values
            as tensors in the compute dtype (``bias`` may be None).
        apply: ``apply(x, kernel, bias)`` evaluates the map with the given
            weights; ``bias=None`` drops the bias.
        elementwise: True when the kernel multiplies element-wise
            (BatchNormalization, Rescaling, layer scale) instead of mixing
            input elements.
        scale_outputs: ``scale_outputs(kernel, scale) -> kernel``: the kernel of
            the map followed by a per-output-channel ``scale`` (how a following
            BatchNormalization folds into it), or None when the kernel has no
            such axis (EinsumDense, a separable convolution's depthwise half).
    """

    weights: Callable[[], tuple[Any, Any]]
    apply: Callable[[Any, Any, Any], Any]
    elementwise: bool = False
    scale_outputs: Callable[[Any, Any], Any] | None = None


def _scale_axis(axis: int) -> Callable[[Any, Any], Any]:
    """``scale_outputs`` of a kernel whose output channels are along ``axis``."""

    def scale_outputs(kernel, scale):
        shape = [1] * len(kernel.shape)
        shape[axis] = -1
        return kernel * ops.reshape(scale, shape)

    return scale_outputs


def _scale_depthwise(kernel, scale):
    """A depthwise kernel ``(..., channels, multiplier)``: output ``c * multiplier + m``."""
    return kernel * ops.reshape(scale, [1] * (len(kernel.shape) - 2) + list(kernel.shape[-2:]))


class Part(NamedTuple):
    """One primitive op of a layer call, before it gets its place in the plan.

    ``gates`` names the gate inputs of a product known from the layer itself (an
    LSTM's), ``layer`` the sublayer an op comes from (an attention's projections),
    ``inner`` the program of a layer re-executed step by step
    (:class:`keras_explain._sequence_views.Inner`), ``note`` why a layer has none.
    """

    kind: str
    suffix: str
    forward: Callable[..., Any]
    activation: str | None = None
    linear: Linear | None = None
    linearized: Callable[..., Any] | None = None
    gates: tuple[int, ...] = ()
    layer: Any = None
    inner: Any = None
    note: str | None = None


# -- the entries ----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class Entry:
    """What the explainers know about one layer or operation class: one row of the table.

    Attributes:
        key: The class, or its name (``"LayerScale"``, a ``keras.ops`` class
            name such as ``"Relu"``); subclasses inherit the entry.
        kind: The op kind of a call (one of :data:`KINDS`). For ``"linear"``
            and ``"rescale"`` the layer's linear map(s), then its fused
            ``activation``, if any, as an op of its own.
        op: True for ``keras.ops`` operation classes (raw ops in a functional
            graph), False for layers.
        linear: ``linear(layer) -> Linear | tuple[Linear, ...] | None``: the
            :class:`Linear` view(s), in execution order (kinds ``"linear"``,
            ``"rescale"``). None for a configuration without one: the call is
            then an op of kind ``"other"``.
        linearized: ``linearized(layer) -> f``, ``f(x)`` the op with its
            data-dependent scale held constant and without bias (kind
            ``"normalization"``).
        activation: The activation's name (``"relu"``), or
            ``activation(layer) -> name`` (kinds ``"activation"``,
            ``"softmax"``; the name ``"softmax"`` makes the kind ``"softmax"``).
        kind_of: ``kind_of(layer, tensor_inputs) -> kind`` when the kind of a
            call depends on the configuration (``UpSampling2D``'s interpolation,
            ``x * c`` against ``x * y``); ``kind`` is then the documented one.
        program: ``program(layer, names, dtypes, options) -> [Part]``: the
            one part of a recurrent or attention call, with its program.
        variant: ``variant(options) -> Entry | None``: the entry of a call whose
            non-tensor options change what the layer computes (KerasHub's
            ``ReversibleEmbedding`` with ``reverse=True`` is a linear map, not a
            lookup); None keeps this entry.
        family: The linear layer family composites name (``"dense"``,
            ``"conv"``, ``"batch_norm"``), or None.
        field: How the receptive field composes (one of :data:`FIELDS`, for the
            layer's first op; later ops of one call, a fused activation or a
            separable convolution's pointwise half, act on each position), or
            None: it cannot be followed.
        role: One of :data:`ROLES` or None; kind ``"reshape"`` defaults to
            ``"bookkeeping"``.
        keeps_sign: For kind ``"sum_pool"``: whether its fixed weights are all
            ``>= 0``, so that inputs ``>= 0`` give outputs ``>= 0`` (``Add``,
            average pooling; not ``Subtract``); or ``keeps_sign(layer) -> bool``
            when it depends on the configuration (bilinear resizing does,
            bicubic does not). Canonizers mark the linear ops behind such sums
            as reading non-negative inputs.
        call: For kind ``"other"``: ``call(layer) -> f``, where ``f(*args,
            **kwargs)`` computes what the layer's call computes, written in
            ``keras.ops``; the layer is opened into ``f``'s operations instead of
            its call's (a call that uses backend functions, such as DeBERTa's
            ``tf.gather``). None: a layer the table knows is never opened.
        note: A remark for the supported list (``"gates"``).
    """

    key: type | str
    kind: str
    op: bool = False
    linear: Callable[[Any], Linear | Sequence[Linear] | None] | None = None
    linearized: Callable[[Any], Callable[..., Any]] | None = None
    activation: str | Callable[[Any], str] | None = None
    kind_of: Callable[[Any, int], str] | None = None
    program: Callable[..., list[Part]] | None = None
    variant: Callable[[dict], Entry | None] | None = None
    family: str | None = None
    field: str | None = None
    role: str | None = None
    keeps_sign: bool | Callable[[Any], bool] = False
    call: Callable[[Any], Callable[..., Any]] | None = None
    note: str = ""

    def __post_init__(self):
        _check_entry(self)
        if self.role is None and self.kind == "reshape":
            object.__setattr__(self, "role", "bookkeeping")

    @property
    def name(self) -> str:
        """The class name."""
        return self.key if isinstance(self.key, str) else self.key.__name__

    def kind_for(self, layer: Any, tensor_inputs: int = 1) -> str:
        """The op kind of one call of ``layer`` reading ``tensor_inputs`` graph tensors."""
        if self.kind_of is not None:
            return self.kind_of(layer, tensor_inputs)
        if self.kind == "activation" and self.activation_for(layer) == "softmax":
            return "softmax"
        return self.kind

    def keeps_sign_for(self, layer: Any) -> bool:
        """Whether this call maps inputs ``>= 0`` to outputs ``>= 0`` (see :attr:`keeps_sign`)."""
        return bool(self.keeps_sign(layer) if callable(self.keeps_sign) else self.keeps_sign)

    def activation_for(self, layer: Any) -> str | None:
        """The activation's name for ``layer``, or None."""
        return self.activation(layer) if callable(self.activation) else self.activation

    def __repr__(self) -> str:
        where = "keras.ops " if self.op else ""
        return f"Entry({where}{self.name}: {self.kind})"


def _check_entry(entry: Entry) -> None:
    key, name = entry.key, f"Entry for {entry.key!r}"
    if isinstance(key, type):
        expected = keras.Operation if entry.op else keras.layers.Layer
        wrong = not issubclass(key, expected) or (entry.op and issubclass(key, keras.layers.Layer))
        if wrong:
            what = "a keras.ops operation class" if entry.op else "a keras.layers.Layer subclass"
            raise TypeError(f"{name}: the key must be {what} or a class name. Received: {key!r}.")
    elif not isinstance(key, str) or not key:
        raise TypeError(f"Entry: the key must be a class or a class name. Received: key={key!r}.")
    for field, value, valid in (
        ("kind", entry.kind, KINDS),
        ("family", entry.family, (None, *FAMILIES)),
        ("field", entry.field, (None, *FIELDS)),
        ("role", entry.role, (None, *ROLES)),
    ):
        if value not in valid:
            raise ValueError(
                f"{name}: {field} must be one of {valid}. Received: {field}={value!r}."
            )
    needs = {
        "linear": "linear",
        "rescale": "linear",
        "normalization": "linearized",
        "activation": "activation",
        "recurrent": "program",
        "attention": "program",
    }.get(entry.kind)
    if needs is not None and getattr(entry, needs) is None:
        raise ValueError(
            f"{name}: kind {entry.kind!r} needs {needs}=... (see the Entry attributes). "
            f"Received: {needs}=None."
        )
    if entry.family is not None and entry.kind != "linear":
        raise ValueError(
            f"{name}: a layer family is a family of linear layers; kind is {entry.kind!r}. "
            f"Received: family={entry.family!r}."
        )
    if entry.call is not None and (entry.kind != "other" or entry.op):
        raise ValueError(
            f"{name}: a stand-in call opens a layer of kind 'other'; kind is {entry.kind!r}"
            f"{' (an operation)' if entry.op else ''}. Received: call={entry.call!r}."
        )


# -- the table: lookup and registration ------------------------------------------------
#: (op?, class or class name) -> the entries registered for it, the last one in force.
_TABLE: dict[tuple[bool, type | str], list[Entry]] = {}


def register(entry: Entry) -> Entry:
    """Add ``entry`` to the table; it overrides an earlier entry for the same key."""
    if not isinstance(entry, Entry):
        raise TypeError(f"register needs an Entry. Received: {entry!r}.")
    _TABLE.setdefault((entry.op, entry.key), []).append(entry)
    return entry


def unregister(entry: Entry) -> None:
    """Remove ``entry``; an earlier entry for the same key (if any) applies again."""
    stack = _TABLE.get((getattr(entry, "op", None), getattr(entry, "key", None)), [])
    if not any(item is entry for item in stack):
        raise ValueError(
            f"This entry is not registered (already removed?). Received: entry={entry!r}."
        )
    stack.remove(entry)


def entry_of(layer: Any) -> Entry | None:
    """The layer table's entry for a layer or ``keras.ops`` operation.

    The class and then its bases are looked up (by class, then by class
    name), so a subclass inherits its base's entry.

    Args:
        layer: A Keras layer or operation (an instance).

    Returns:
        The :class:`Entry` in force, or None when the table does not know the
        layer (it is then one op of kind ``"other"``).

    Example:
        >>> import keras
        >>> from keras_explain import graph
        >>> entry = graph.entry_of(keras.layers.Conv2D(4, 3))
        >>> entry.kind, entry.family, entry.field
        ('linear', 'conv', 'window')
    """
    op = not isinstance(layer, keras.layers.Layer)
    for cls in type(layer).__mro__:
        for key in (cls, cls.__name__):
            stack = _TABLE.get((op, key))
            if stack:
                return stack[-1]
    return None


def entries() -> list[Entry]:
    """The entries in force, in table order."""
    return [stack[-1] for stack in _TABLE.values() if stack]


# -- what one call is -----------------------------------------------------------------
def decompose(
    layer: Any,
    forward: Callable,
    tensor_inputs: int,
    names: tuple = (),
    dtypes: tuple = (),
    options: dict | None = None,
) -> list[Part]:
    """The primitive ops of one call of ``layer``.

    Args:
        layer: A Keras layer or operation.
        forward: The call, ``forward(*tensors)``, in inference mode.
        tensor_inputs: How many graph tensors the call reads.
        names: The call argument each input fills (programs read them).
        dtypes: The inputs' dtypes.
        options: The call's non-tensor keyword arguments.

    Returns:
        The parts, in execution order.
    """
    entry = entry_of(layer)
    if entry is None:  # the one place an unknown layer or op is decided: one opaque op
        return [Part("other", "", forward)]
    if entry.variant is not None:
        entry = entry.variant(options or {}) or entry
    if entry.program is not None:
        return entry.program(layer, names, dtypes, options or {})
    if entry.linear is not None:
        return _linear_parts(layer, entry) or [Part("other", "", forward)]
    linearized = entry.linearized(layer) if entry.linearized is not None else None
    kind = entry.kind_for(layer, tensor_inputs)
    return [Part(kind, "", forward, entry.activation_for(layer), linearized=linearized)]


def _linear_parts(layer, entry: Entry) -> list[Part] | None:
    """The linear map(s) of a layer, then its fused activation; None without a map."""
    maps = linear_maps(layer, entry)
    if maps is None:
        return None
    dtype = getattr(layer, "compute_dtype", None)  # raw keras.ops operations have none
    parts = []
    for index, linear in enumerate(maps):

        def linear_forward(x, *masks, linear=linear):  # a Keras mask changes nothing here
            return linear.apply(x if dtype is None else ops.cast(x, dtype), *linear.weights())

        suffix = "" if len(maps) == 1 else f"/{index}"
        parts.append(Part(entry.kind, suffix, linear_forward, linear=linear))
    inner = layer.layer if isinstance(layer, keras.layers.Wrapper) else layer
    function = getattr(inner, "activation", None)
    if callable(function) and activation_name(function) != "linear":
        name = activation_name(function)
        kind = "softmax" if name == "softmax" else "activation"
        parts.append(Part(kind, "/activation", function, activation=name))
    return parts


def linear_maps(layer, entry: Entry | None = None) -> tuple[Linear, ...] | None:
    """The linear map(s) of a layer (under ``entry``, default its own), or None without."""
    entry = entry_of(layer) if entry is None else entry
    if entry is None or entry.linear is None:
        return None
    maps = entry.linear(layer)
    if maps is None:
        return None
    return (maps,) if isinstance(maps, Linear) else tuple(maps)


def activation_name(function: Any) -> str:
    """The name of an activation function (``"relu"``, ``"silu"``, ...)."""
    return getattr(function, "__name__", type(function).__name__)


# -- the supported list ---------------------------------------------------------------
def supported_layers(markdown: bool = False) -> str:
    """The layers and raw ``keras.ops`` operations the layer table knows.

    Read from the table, so a registered layer is listed too. Names that
    differ only by ``1D``/``2D``/``3D`` are merged (``Conv1D/2D/3D``).

    Args:
        markdown: A Markdown table by op kind, with the layer families of
            composites below it, instead of one line.

    Returns:
        The list.

    Example:
        >>> from keras_explain import graph
        >>> graph.supported_layers().startswith("Dense, EinsumDense, Conv1D/2D/3D")
        True
    """
    current = entries()
    layer_entries = [entry for entry in current if not entry.op]
    op_entries = [entry for entry in current if entry.op]
    if not markdown:
        return (
            f"{', '.join(_labels(layer_entries))}; raw keras.ops: {', '.join(_labels(op_entries))}"
        )
    rows = ["| kind | layers | raw `keras.ops` |", "| --- | --- | --- |"]
    for kind in KINDS:
        names = [
            ", ".join(_labels([e for e in group if e.kind == kind]))
            for group in (layer_entries, op_entries)
        ]
        if any(names):
            rows.append(f'| `"{kind}"` | {names[0]} | {names[1]} |'.replace("|  |", "| |"))
    families = "; ".join(
        f'`"{family}"`: ' + ", ".join(_labels([e for e in layer_entries if e.family == family]))
        for family in FAMILIES
    )
    return "\n".join(rows) + f"\n\nLayer families of composites: {families}.\n"


def _labels(selected: Iterable[Entry]) -> list[str]:
    """Entry names with their notes, ``Conv1D``, ``Conv2D`` merged into ``Conv1D/2D``."""
    groups: dict[tuple, list[str]] = {}
    for entry in selected:
        name = _snake(entry.name) if entry.op else entry.name
        match = None if entry.op else re.fullmatch(r"(.*?)([123]D)(.*)", name)
        if match is None:
            groups.setdefault((name, "", entry.note, True), []).append("")
        else:
            groups.setdefault((match[1], match[3], entry.note, False), []).append(match[2])
    labels = []
    for (prefix, suffix, note, plain), dims in groups.items():
        label = prefix if plain else prefix + "/".join(dims) + suffix
        labels.append(f"{label} ({note})" if note else label)
    return labels


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


# -- linear views ---------------------------------------------------------------------
def _with_bias(z, bias, channel_axis):
    if bias is None:
        return z
    shape = [1] * len(z.shape)
    shape[channel_axis] = -1
    return z + ops.reshape(bias, shape)


def _cast(value, dtype):
    return None if value is None else ops.cast(value, dtype)


def _weights(layer, kernel_attr: str, bias_attr: str = "bias") -> Callable:
    """``weights() -> (kernel, bias)`` read from the layer's attributes, in its compute dtype."""
    dtype = layer.compute_dtype

    def weights():
        bias = getattr(layer, bias_attr, None) if getattr(layer, "use_bias", True) else None
        return _cast(getattr(layer, kernel_attr), dtype), _cast(bias, dtype)

    return weights


def _channel_axis(layer) -> int:
    return 1 if getattr(layer, "data_format", "channels_last") == "channels_first" else -1


def _convolution(layer, function, **options) -> Callable:
    """``apply(x, kernel, bias)`` of a convolution ``function`` plus the bias on the channels."""
    axis = _channel_axis(layer)

    def apply(x, kernel, bias):
        return _with_bias(function(x, kernel, **options), bias, axis)

    return apply


def _window_options(layer) -> dict:
    return {
        "padding": layer.padding,
        "data_format": layer.data_format,
        "dilation_rate": layer.dilation_rate,
    }


def _dense_view(layer) -> Linear:
    def apply(x, kernel, bias):
        return _with_bias(ops.matmul(x, kernel), bias, -1)

    return Linear(_weights(layer, "kernel"), apply, scale_outputs=_scale_axis(-1))


def _einsum_view(layer) -> Linear:
    def einsum(x, kernel, bias):
        z = ops.einsum(layer.equation, x, kernel)
        return z if bias is None else z + bias

    return Linear(_weights(layer, "kernel"), einsum)


def _conv_view(layer) -> Linear:
    if not _depthwise_groups(layer):
        apply = _convolution(layer, layer.convolution_op)
        return Linear(_weights(layer, "kernel"), apply, scale_outputs=_scale_axis(-1))
    # groups == input channels (ConvNeXt's "depthwise" Conv2D): the same map as a
    # depthwise convolution, which TensorFlow runs on CPU without Keras' XLA
    # fallback (a new tf.function per call, and retracing warnings)
    window = _window_options(layer)

    def grouped(x, kernel, bias):
        height, width, _, filters = kernel.shape
        depthwise = ops.reshape(kernel, (height, width, layer.groups, filters // layer.groups))
        z = ops.depthwise_conv(x, depthwise, strides=layer.strides, **window)
        return _with_bias(z, bias, _channel_axis(layer))

    return Linear(_weights(layer, "kernel"), grouped, scale_outputs=_scale_axis(-1))


def _depthwise_groups(layer) -> bool:
    """A channels-last Conv2D with one group per input channel."""
    groups = getattr(layer, "groups", 1)
    return (
        isinstance(layer, layers.Conv2D)
        and groups > 1
        and layer.data_format == "channels_last"
        and layer.kernel.shape[-2] == 1
        and layer.kernel.shape[-1] % groups == 0
    )


def _depthwise_view(layer) -> Linear:
    apply = _convolution(layer, ops.depthwise_conv, strides=layer.strides, **_window_options(layer))
    return Linear(_weights(layer, "kernel"), apply, scale_outputs=_scale_depthwise)


def _separable_views(layer) -> tuple[Linear, Linear]:
    dtype = layer.compute_dtype
    depthwise = _convolution(
        layer, ops.depthwise_conv, strides=layer.strides, **_window_options(layer)
    )
    pointwise = _convolution(
        layer, ops.conv, strides=1, padding="valid", data_format=layer.data_format
    )
    return (
        Linear(lambda: (_cast(layer.depthwise_kernel, dtype), None), depthwise),
        Linear(_weights(layer, "pointwise_kernel"), pointwise, scale_outputs=_scale_axis(-1)),
    )


def _transpose_view(layer) -> Linear:
    apply = _convolution(
        layer,
        ops.conv_transpose,
        strides=list(layer.strides),
        output_padding=layer.output_padding,
        **_window_options(layer),
    )
    return Linear(_weights(layer, "kernel"), apply, scale_outputs=_scale_axis(-2))


def _layer_scale_view(layer) -> Linear | None:
    """keras.applications.ConvNeXt's layer scale: ``x * gamma``."""
    if not hasattr(layer, "gamma"):
        return None
    dtype = layer.compute_dtype
    return Linear(lambda: (_cast(layer.gamma, dtype), None), _scale_shift, True)


def _time_distributed(layer) -> tuple[Linear, ...] | None:
    """``TimeDistributed(layer)``: the wrapped layer's maps on ``(B * T, ...)``."""
    maps = linear_maps(layer.layer)
    if maps is None:
        return None

    def over_time(apply):
        def apply_over_time(x, kernel, bias):
            shape = tf.shape(x)
            folded = tf.reshape(x, tf.concat([[-1], shape[2:]], 0))
            z = apply(folded, kernel, bias)
            result = tf.reshape(z, tf.concat([shape[:2], tf.shape(z)[1:]], 0))
            result.set_shape(x.shape[:2].concatenate(z.shape[1:]))
            return result

        return apply_over_time

    return tuple(
        Linear(linear.weights, over_time(linear.apply), linear.elementwise) for linear in maps
    )


def _scale_shift(x, scale, shift):
    z = x * scale
    return z if shift is None else z + shift


def batch_norm_view(layer) -> Linear:
    """BatchNormalization in inference mode as ``x * scale + shift``."""
    axis = layer.axis if isinstance(layer.axis, int) else layer.axis[0]

    def weights():
        dtype = "float32" if layer.compute_dtype in ("float16", "bfloat16") else layer.compute_dtype
        mean = ops.cast(layer.moving_mean, dtype)
        variance = ops.cast(layer.moving_variance, dtype)
        gamma = ops.cast(layer.gamma, dtype) if layer.scale else ops.ones_like(mean)
        beta = ops.cast(layer.beta, dtype) if layer.center else ops.zeros_like(mean)
        # rsqrt, then gamma: the arithmetic of tf.nn.batch_normalization, so
        # re-execution equals the layer bit for bit.
        scale = ops.rsqrt(variance + layer.epsilon) * gamma
        return scale, beta - mean * scale

    def apply(x, scale, shift):
        shape = [1] * len(x.shape)
        shape[axis] = -1
        z = ops.cast(x, scale.dtype) * ops.reshape(scale, shape)
        return z if shift is None else z + ops.reshape(shift, shape)

    return Linear(weights, apply, elementwise=True)


def _rescaling_view(layer) -> Linear:
    """``Rescaling``: ``x * scale + offset`` (channels-last broadcasting)."""

    def weights():
        dtype = layer.compute_dtype
        return ops.cast(layer.scale, dtype), ops.cast(layer.offset, dtype)

    return Linear(weights, _scale_shift, elementwise=True)


def _normalization_view(layer) -> Linear:
    """``Normalization``: ``(x - mean) / max(sqrt(var), eps)`` (or its inverse) as affine."""

    def weights():
        dtype = layer.compute_dtype
        mean = ops.cast(layer.mean, dtype)
        spread = ops.maximum(ops.sqrt(ops.cast(layer.variance, dtype)), keras.config.epsilon())
        if layer.invert:
            return spread, mean
        return 1.0 / spread, -mean / spread

    return Linear(weights, _scale_shift, elementwise=True)


# -- normalizations with a data-dependent scale: x ↦ (y − bias), the scale held constant --
def _layer_norm_linearized(layer) -> Callable:
    def linearized(x):
        x = tf.cast(x, tf.float32)
        axes = sorted(
            a % x.shape.rank
            for a in (layer.axis if isinstance(layer.axis, list | tuple) else [layer.axis])
        )
        shape = [x.shape[a] if a in axes else 1 for a in range(x.shape.rank)]
        mean, variance = tf.nn.moments(x, axes, keepdims=True)
        scale = tf.stop_gradient(tf.math.rsqrt(variance + layer.epsilon))
        if layer.gamma is not None:
            scale = scale * tf.reshape(tf.cast(layer.gamma, tf.float32), shape)
        centered = x if layer.rms_scaling else x - mean
        return centered * scale

    return linearized


def _rms_linearized(layer) -> Callable:
    def rms(x):
        x = tf.cast(x, tf.float32)
        axes = layer.axis if isinstance(layer.axis, list | tuple) else [layer.axis]
        norm = tf.math.rsqrt(tf.reduce_mean(tf.square(x), axes, keepdims=True) + layer.epsilon)
        return x * tf.stop_gradient(norm) * tf.cast(layer.scale, tf.float32)

    return rms


def _unit_linearized(layer) -> Callable:
    def unit(x):
        x = tf.cast(x, tf.float32)
        squares = tf.reduce_sum(tf.square(x), layer.axis, keepdims=True)
        return x * tf.stop_gradient(tf.math.rsqrt(tf.maximum(squares, 1e-24)))

    return unit


# -- kinds and activations that depend on the configuration -----------------------------
def _activation_layer(layer) -> str:
    return activation_name(layer.activation)


def _relu_name(layer) -> str:
    if layer.negative_slope or layer.threshold:
        return "leaky_relu"
    return "relu6" if layer.max_value == 6 else "relu"


def _interpolated(layer, tensor_inputs) -> str:
    # nearest-neighbour copies values (bookkeeping); other interpolations are
    # fixed linear maps without bias (non-negative weights for bilinear only)
    return "reshape" if getattr(layer, "interpolation", "nearest") == "nearest" else "sum_pool"


def _product(layer, tensor_inputs) -> str:
    return "sum_pool" if tensor_inputs == 1 else "multiply"  # x * c: a fixed linear map of x


def _matrix_product(layer, tensor_inputs) -> str:
    # x W with W a constant (a weight read inside a layer): a fixed linear map of x
    return "sum_pool" if tensor_inputs == 1 else "bilinear"


def _quotient(layer, tensor_inputs) -> str:
    return "sum_pool" if tensor_inputs == 1 else "other"  # x / c: a fixed linear map of x


def _sequence_program(name: str) -> Callable[..., list[Part]]:
    """The program builder ``name`` of ``_sequence_views``, imported when first called.

    ``_sequence_views`` imports this module, so it cannot be imported here at
    module level.
    """

    def program(layer, names, dtypes, options):
        from keras_explain import _sequence_views

        return getattr(_sequence_views, name)(layer, names, dtypes, options)

    program.__qualname__ = f"_sequence_views.{name}"
    return program


def _reverse_embedding_view(layer) -> Linear | None:
    """KerasHub's ``ReversibleEmbedding(x, reverse=True)``: ``x E^T`` (or its own kernel)."""
    if getattr(layer, "logit_soft_cap", None) is not None:
        return None  # tanh(z / c) c after the map: not linear; the layer stays whole

    def weights():
        dtype = getattr(layer, "reverse_dtype", None) or layer.compute_dtype
        kernel = ops.transpose(layer.embeddings) if layer.tie_weights else layer.reverse_embeddings
        return ops.cast(kernel, dtype), None

    def apply(x, kernel, bias):
        z = ops.matmul(ops.cast(x, kernel.dtype), kernel)
        return z if bias is None else z + bias

    return Linear(weights, apply, scale_outputs=_scale_axis(-1))


def _reversed_embedding(options: dict) -> Entry | None:
    if not options.get("reverse"):
        return None
    return Entry("ReversibleEmbedding", "linear", linear=_reverse_embedding_view, family="dense")


# -- the table ----------------------------------------------------------------------------
def _of_one_tensor(operation, tensor_inputs: int) -> str:
    return "activation" if tensor_inputs == 1 else "other"


def _bilinear(layer) -> bool:
    return getattr(layer, "interpolation", None) == "bilinear"


def _rows(keys: Iterable[type | str], kind: str, **fields: Any) -> list[Entry]:
    return [Entry(key, kind, **fields) for key in keys]


def _ops(names: str, kind: str, **fields: Any) -> list[Entry]:
    """keras.ops operation classes, by class name; they act on each position."""
    return [Entry(name, kind, op=True, field="pointwise", **fields) for name in names.split()]


def _activation_ops(names: str) -> list[Entry]:
    """keras.ops activation classes, named by the snake_case of their class name."""
    return [
        Entry(name, "activation", op=True, activation=_snake(name), field="pointwise")
        for name in names.split()
    ]


_CONVOLUTIONS = (layers.Conv1D, layers.Conv2D, layers.Conv3D)
_TRANSPOSED = (layers.Conv1DTranspose, layers.Conv2DTranspose, layers.Conv3DTranspose)
_POINTWISE = {"field": "pointwise"}
_RESAMPLING_WINDOW = {"field": "window", "role": "resampling"}

for _entry in [
    # linear maps with weights
    Entry(layers.Dense, "linear", linear=_dense_view, family="dense", field="pointwise"),
    Entry(layers.EinsumDense, "linear", linear=_einsum_view, family="dense", field="pointwise"),
    *_rows(_CONVOLUTIONS, "linear", linear=_conv_view, family="conv", field="window"),
    *_rows(
        (layers.DepthwiseConv1D, layers.DepthwiseConv2D),
        "linear",
        linear=_depthwise_view,
        family="conv",
        field="window",
    ),
    *_rows(
        (layers.SeparableConv1D, layers.SeparableConv2D),
        "linear",
        linear=_separable_views,
        family="conv",
        field="window",
    ),
    *_rows(_TRANSPOSED, "linear", linear=_transpose_view, family="conv"),
    Entry(
        layers.BatchNormalization,
        "linear",
        linear=batch_norm_view,
        family="batch_norm",
        field="pointwise",
    ),
    Entry(layers.TimeDistributed, "linear", linear=_time_distributed, note="of a linear layer"),
    Entry(
        "LayerScale",
        "linear",
        linear=_layer_scale_view,
        note="keras.applications' ConvNeXt",
        **_POINTWISE,
    ),
    # element-wise affine preprocessing
    Entry(layers.Rescaling, "rescale", linear=_rescaling_view, **_POINTWISE),
    Entry(layers.Normalization, "rescale", linear=_normalization_view, **_POINTWISE),
    # normalizations with a data-dependent scale
    Entry(
        layers.LayerNormalization, "normalization", linearized=_layer_norm_linearized, **_POINTWISE
    ),
    Entry(layers.RMSNormalization, "normalization", linearized=_rms_linearized, **_POINTWISE),
    Entry(layers.UnitNormalization, "normalization", linearized=_unit_linearized, **_POINTWISE),
    # activations
    Entry(layers.Activation, "activation", activation=_activation_layer, **_POINTWISE),
    Entry(layers.ReLU, "activation", activation=_relu_name, **_POINTWISE),
    Entry(layers.LeakyReLU, "activation", activation="leaky_relu", **_POINTWISE),
    Entry(layers.ELU, "activation", activation="elu", **_POINTWISE),
    Entry(layers.PReLU, "activation", activation="prelu", **_POINTWISE),
    Entry(layers.Softmax, "softmax", activation="softmax", **_POINTWISE),
    # pooling and merging
    *_rows(
        (layers.MaxPooling1D, layers.MaxPooling2D, layers.MaxPooling3D),
        "max_pool",
        **_RESAMPLING_WINDOW,
    ),
    *_rows(
        (layers.AveragePooling1D, layers.AveragePooling2D, layers.AveragePooling3D),
        "sum_pool",
        keeps_sign=True,
        **_RESAMPLING_WINDOW,
    ),
    *_rows(
        (layers.GlobalMaxPooling1D, layers.GlobalMaxPooling2D, layers.GlobalMaxPooling3D),
        "max_pool",
        role="global",
    ),
    *_rows(
        (
            layers.GlobalAveragePooling1D,
            layers.GlobalAveragePooling2D,
            layers.GlobalAveragePooling3D,
        ),
        "sum_pool",
        role="global",
        keeps_sign=True,
    ),
    *_rows((layers.Add, layers.Average), "sum_pool", keeps_sign=True, **_POINTWISE),
    Entry(layers.Subtract, "sum_pool", **_POINTWISE),
    *_rows((layers.Maximum, layers.Minimum), "max_pool", **_POINTWISE),
    Entry(layers.Multiply, "multiply", note="gates", **_POINTWISE),
    Entry(  # inputs[0] + inputs[1] * scale
        "CustomScaleLayer",
        "sum_pool",
        note="keras.applications' InceptionResNetV2",
        **_POINTWISE,
    ),
    # resampling
    *_rows(
        (layers.UpSampling2D, layers.UpSampling3D, layers.Resizing),
        "sum_pool",
        kind_of=_interpolated,
        keeps_sign=_bilinear,  # bicubic and lanczos weights can be negative
        role="resampling",
        note='nearest: "reshape"',
    ),
    Entry(layers.UpSampling1D, "reshape", role="resampling"),
    *_rows(
        (layers.ZeroPadding1D, layers.ZeroPadding2D, layers.ZeroPadding3D),
        "reshape",
        field="padding",
        role="resampling",
    ),
    *_rows(
        (layers.Cropping1D, layers.Cropping2D, layers.Cropping3D),
        "reshape",
        field="cropping",
        role="resampling",
    ),
    # bookkeeping: values move, unchanged
    *_rows((layers.Flatten, layers.Reshape, layers.Permute, layers.RepeatVector), "reshape"),
    *_rows(
        (
            layers.Concatenate,
            layers.Dropout,
            layers.SpatialDropout1D,
            layers.SpatialDropout2D,
            layers.SpatialDropout3D,
            layers.GaussianNoise,
            layers.GaussianDropout,
            layers.AlphaDropout,
            layers.ActivityRegularization,
            layers.Identity,
            layers.InputLayer,
            layers.Masking,  # x * (the step is not padding): zeros where masked, x elsewhere
        ),
        "reshape",
        **_POINTWISE,
    ),
    Entry(  # drop path: the identity at inference
        "StochasticDepth", "reshape", note="keras.applications' ConvNeXt", **_POINTWISE
    ),
    Entry(layers.Embedding, "embedding"),
    # KerasHub's layers, by class name (keras_hub is not a dependency)
    Entry(
        "ReversibleEmbedding",
        "embedding",
        variant=_reversed_embedding,
        note="reverse=True: the linear map onto the vocabulary",
    ),
    Entry("PositionEmbedding", "constant", note="its input's length only"),
    Entry("RelativeEmbedding", "constant", note="DeBERTa's: its input's batch size only"),
    Entry(
        "DisentangledSelfAttention",
        "other",
        call=_graph.disentangled_attention,
        note="DeBERTa's: opened, its relative scores gathered in keras.ops",
    ),
    # programs of primitive ops, re-executed step by step (_sequence_views)
    *_rows(
        (layers.LSTM, layers.GRU, layers.SimpleRNN),
        "recurrent",
        program=_sequence_program("recurrent"),
    ),
    Entry(
        layers.Bidirectional,
        "recurrent",
        program=_sequence_program("bidirectional"),
        note="merge concat/sum/ave",
    ),
    Entry(layers.MultiHeadAttention, "attention", program=_sequence_program("attention")),
    # raw keras.ops calls in a functional graph, by class name
    *_ops("Add Mean Sum", "sum_pool", keeps_sign=True),
    # masks: comparisons, selections by a mask, values made from shapes only
    *_ops(
        "Equal NotEqual Greater GreaterEqual Less LessEqual LogicalAnd LogicalOr LogicalNot "
        "All Any ZerosLike OnesLike FullLike Arange",
        "constant",
    ),
    *_ops("Where", "reshape", note="where(mask, x, y): x or y moves, unchanged"),
    *_ops("Subtract Negative", "sum_pool"),
    Entry(
        "Multiply", "multiply", op=True, kind_of=_product, note='x * c: "sum_pool"', **_POINTWISE
    ),
    *_ops("Divide TrueDivide", "sum_pool", kind_of=_quotient, note="x / c"),
    *[
        Entry(name, "bilinear", op=True, kind_of=_matrix_product, note='x W: "sum_pool"')
        for name in "Einsum Matmul Dot Tensordot Inner Outer".split()
    ],
    *_ops("Maximum Minimum Max", "max_pool"),
    *_ops(
        "Reshape Transpose ExpandDims Squeeze Concatenate Stack Flatten Identity GetItem Pad "
        "Cast BroadcastTo Tile Moveaxis Swapaxes Repeat Slice Split Unstack Roll Take "
        "TakeAlongAxis",
        "reshape",
    ),
    *_activation_ops(
        "Relu Relu6 LeakyRelu Sigmoid HardSigmoid Tanh HardTanh Elu Selu Celu Gelu Silu "
        "HardSilu Softplus Softsign Mish"
    ),
    # element-wise functions of one tensor (normalizations written with keras.ops:
    # x * rsqrt(mean(x²) + ε)); of two tensors, "other"
    *[
        Entry(
            name,
            "activation",
            op=True,
            activation=_snake(name),
            kind_of=_of_one_tensor,
            field="pointwise",
        )
        for name in "Exp Expm1 Log Log1p Sqrt Rsqrt Square Reciprocal Abs Absolute Erf Power "
        "Clip Sin Cos".split()
    ],
    Entry("Softmax", "softmax", op=True, activation="softmax", **_POINTWISE),
]:
    register(_entry)
