"""Recurrent and attention layers as primitive ops, re-executed step by step.

``LSTM``, ``GRU``, ``SimpleRNN``, ``Bidirectional`` and ``MultiHeadAttention``
run as one opaque op for the gradient family. For rule-based analyzers this
module also describes them as an :class:`Inner` program: a few primitive
:class:`~keras_explain._layer_views.Part` objects (a linear map of
``[x_t, h_{t-1}]``, the activations, gated products, sums) and a ``run``
function that re-executes the layer from them over a ``tf.while_loop`` (one
trace whatever the sequence length), calling ``apply(name, tensors)`` for every
primitive op, where an analyzer puts its rules. With ``apply`` running each op
unchanged, ``run`` equals the layer's own call (masks, ``go_backwards`` and
Bidirectional's merge included).

The decompositions follow the LRP literature: in an LSTM (Arras et al. 2017,
arXiv:1706.07206) the gates multiply a signal (``"multiply"`` parts whose
``gates`` name the gate input) and the cell update ``c_t = f c_{t-1} + i g`` is
a sum (``"sum_pool"``); in attention (Ali et al. 2022, arXiv:2202.07304) the
attention weights are computed under ``tf.stop_gradient``, so that the
attention is a linear map of the values (a ``"sum_pool"`` part).

The layer table (``_layer_views``) has their entries, which point to the
builders :func:`recurrent`, :func:`bidirectional` and :func:`attention` here.
Only public layer attributes are read here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import keras
import tensorflow as tf

from keras_explain._layer_views import Linear, Part, activation_name, linear_maps

Apply = Callable[[str, list], Any]


class Inner(NamedTuple):
    """A layer as a program of primitive ops.

    Attributes:
        parts: The primitive ops, by name.
        run: ``run(inputs, apply)`` re-executes the layer from the call's
            tensors, calling ``apply(name, tensors)`` for every primitive op.
    """

    parts: dict[str, Part]
    run: Callable[[list, Apply], Any]


#: The layers whose cells ``_recurrent`` re-executes (also inside Bidirectional).
RECURRENT_LAYERS = (keras.layers.LSTM, keras.layers.GRU, keras.layers.SimpleRNN)


# -- the program builders the layer table points to (``_layer_views``) -------------------
# Each returns the one part of a call, ``[part]``, whose ``inner`` is the program; when
# the configuration has none, the part has kind "other" and its note says why.
# ``names``: the call argument each input fills ("mask", "query", ...); ``dtypes``: the
# inputs' dtypes; ``options``: the call's non-tensor keyword arguments.
def recurrent(layer: Any, names: tuple, dtypes: tuple, options: dict) -> list[Part]:
    """The part of an LSTM, GRU or SimpleRNN call."""
    reason = _recurrent_unsupported(layer, names, dtypes)
    inner = None if reason else _recurrent(layer, "", names)
    return [_part("recurrent", layer, inner, reason)]


def bidirectional(layer: Any, names: tuple, dtypes: tuple, options: dict) -> list[Part]:
    """The part of a Bidirectional call."""
    reason = _bidirectional_unsupported(layer, names, dtypes)
    inner = None if reason else _bidirectional(layer, names)
    return [_part("recurrent", layer, inner, reason)]


def attention(layer: Any, names: tuple, dtypes: tuple, options: dict) -> list[Part]:
    """The part of a MultiHeadAttention call."""
    reason = _attention_unsupported(layer, names, options)
    inner = None if reason else _attention(layer, names, options)
    return [_part("attention", layer, inner, reason)]


def _part(kind, layer, inner, reason) -> Part:
    if inner is None:
        return Part("other", "", None, note=reason)
    return Part(kind, "", None, inner=inner)


# -- which configurations have a program ------------------------------------------------
def _recurrent_unsupported(layer, names, dtypes) -> str | None:
    if getattr(layer, "return_state", False):
        return "return_state=True (several outputs)"
    if getattr(layer, "stateful", False):
        return "stateful=True (its state lives across calls)"
    extra = [name for name, dtype in zip(names[1:], dtypes[1:]) if dtype != "bool"]
    if extra:
        return f"an initial_state is passed ({extra})"
    return None


def _bidirectional_unsupported(layer, names, dtypes) -> str | None:
    if layer.merge_mode not in ("concat", "sum", "ave"):
        return (
            f"merge_mode={layer.merge_mode!r} (supported: 'concat', 'sum', 'ave'; a "
            "product of the two directions has no signal-and-gate reading)"
        )
    for inner in (layer.forward_layer, layer.backward_layer):
        if not isinstance(inner, RECURRENT_LAYERS):
            return f"it wraps a {type(inner).__name__} (supported: LSTM, GRU, SimpleRNN)"
        reason = _recurrent_unsupported(inner, names, dtypes)
        if reason:
            return reason
    return None


def _attention_unsupported(layer, names, options) -> str | None:
    config = layer.get_config()
    if config.get("attention_axes") not in (None, (1,), [1], 1):
        return f"attention_axes={config['attention_axes']!r} (supported: the default)"
    if config.get("use_gate"):
        return "use_gate=True"
    if config.get("sliding_window") is not None:
        return f"sliding_window={config['sliding_window']!r}"
    if options.get("return_attention_scores"):
        return "return_attention_scores=True (several outputs)"
    return None


# -- shared pieces -----------------------------------------------------------------------
def _matmul(x, kernel, bias):
    z = tf.matmul(x, kernel)
    return z if bias is None else z + bias


class _Once:
    """Weights read once per run of a program, not once per time step.

    Inside :meth:`hold` the wrapped ``weights()`` returns the tensors computed on
    entry (outside the time loop, so the loop reads loop invariants instead of
    concatenating and casting the kernels at every step); outside, it reads the
    layer's variables as usual.
    """

    def __init__(self):
        self.values: dict[int, Any] = {}

    def wrap(self, weights: Callable) -> Callable:
        def held():
            value = self.values.get(id(weights))
            return weights() if value is None else value

        held.source = weights
        return held

    def hold(self, functions, body):
        self.values = {id(f.source): f.source() for f in functions}
        try:
            return body()
        finally:
            self.values = {}


def _linear_part(suffix: str, weights: Callable, layer=None) -> Part:
    linear = Linear(weights, _matmul)

    def forward(x, linear=linear):
        return linear.apply(x, *linear.weights())

    return Part("linear", suffix, forward, linear=linear, layer=layer)


def _activation_part(suffix: str, function) -> Part:
    name = activation_name(function)
    return Part("softmax" if name == "softmax" else "activation", suffix, function, name)


def _gated(signal, gate):
    return signal * gate


def _add(first, second):
    return first + second


def _average(first, second):
    return (first + second) / 2


def _cast(value, dtype):
    return None if value is None else tf.cast(value, dtype)


def _scan(cell, apply, x, mask, states, go_backwards, zero_output, sequences):
    """Run ``cell(apply, x_t, states) -> (output, states)`` over time, as Keras' RNN does.

    A masked step keeps the previous states (its output is the previous output, or
    0 with ``zero_output``); ``go_backwards`` walks the sequence from its end and
    returns the outputs in that order.
    """
    inputs = tf.transpose(x, [1, 0, 2])
    if mask is not None:
        mask = tf.transpose(tf.cast(mask, tf.bool), [1, 0])
    if go_backwards:
        inputs = tf.reverse(inputs, [0])
        mask = None if mask is None else tf.reverse(mask, [0])
    length = tf.shape(inputs)[0]
    outputs = tf.TensorArray(x.dtype, size=length)
    # read through a TensorArray: the gradient of inputs[time] would be a dense
    # (T, B, F) tensor per step, O(T²) work in the backward loop
    inputs = tf.TensorArray(x.dtype, size=length).unstack(inputs)

    def body(time, states, outputs):
        output, new_states = cell(apply, inputs.read(time), states)
        if mask is not None:
            keep = mask[time][:, None]
            new_states = [tf.where(keep, new, old) for new, old in zip(new_states, states)]
            output = tf.where(keep, output, tf.zeros_like(output) if zero_output else new_states[0])
        return time + 1, new_states, outputs.write(time, output)

    _, states, outputs = tf.while_loop(
        lambda time, *_: time < length, body, (tf.constant(0), list(states), outputs)
    )
    stacked = outputs.stack()
    if sequences:
        return tf.transpose(stacked, [1, 0, 2])
    return stacked[-1]


# -- recurrent layers --------------------------------------------------------------------
def _recurrent(layer, prefix: str, names: tuple) -> Inner:
    """The program of an LSTM, GRU or SimpleRNN layer (names of parts start with ``prefix``)."""
    cell = layer.cell
    dtype = layer.compute_dtype
    units = cell.units
    once = _Once()
    if isinstance(layer, keras.layers.LSTM):
        parts, step = _lstm_cell(cell, dtype, prefix, once)
    elif isinstance(layer, keras.layers.GRU):
        parts, step = _gru_cell(cell, dtype, prefix, units, once)
    else:
        parts, step = _simple_cell(cell, dtype, prefix, once)
    state_count = 2 if isinstance(layer, keras.layers.LSTM) else 1
    weights = [part.linear.weights for part in parts.values() if part.linear is not None]

    def run(inputs, apply):
        x = tf.cast(inputs[0], dtype)
        mask = next((t for t in inputs[1:] if t.dtype == tf.bool), None)
        zeros = tf.zeros(tf.stack([tf.shape(x)[0], units]), dtype)
        return once.hold(
            weights,
            lambda: _scan(
                step,
                apply,
                x,
                mask,
                [zeros] * state_count,
                layer.go_backwards,
                bool(getattr(layer, "zero_output_for_mask", False)),
                layer.return_sequences,
            ),
        )

    return Inner(parts, run)


def _joint_weights(cell, dtype) -> Callable:
    """``weights() -> ([W; U], b)``: the cell's map of ``[x_t, h_{t-1}]``."""

    def weights():
        kernel = tf.concat([_cast(cell.kernel, dtype), _cast(cell.recurrent_kernel, dtype)], 0)
        return kernel, _cast(cell.bias, dtype) if cell.use_bias else None

    return weights


def _lstm_cell(cell, dtype, prefix, once):
    """LSTM, gates in Keras' order i, f, c, o; ``c_t = f c_{t-1} + i g``, ``h_t = o act(c_t)``."""
    parts = {
        prefix + "gates": _linear_part(f"/{prefix}gates", once.wrap(_joint_weights(cell, dtype))),
        prefix + "recurrent_activation": _activation_part(
            f"/{prefix}recurrent_activation", cell.recurrent_activation
        ),
        prefix + "activation": _activation_part(f"/{prefix}activation", cell.activation),
        prefix + "gated": Part("multiply", f"/{prefix}gated", _gated, gates=(1,)),
        prefix + "carry": Part("sum_pool", f"/{prefix}carry", _add),
    }

    def step(apply, x, states):
        h, c = states
        z = apply(prefix + "gates", [tf.concat([x, h], -1)])
        z_if, z_c, z_o = tf.split(z, [2 * cell.units, cell.units, cell.units], axis=-1)
        i, f = tf.split(apply(prefix + "recurrent_activation", [z_if]), 2, axis=-1)
        o = apply(prefix + "recurrent_activation", [z_o])
        g = apply(prefix + "activation", [z_c])
        kept = apply(prefix + "gated", [c, f])
        written = apply(prefix + "gated", [g, i])
        c = apply(prefix + "carry", [kept, written])
        h = apply(prefix + "gated", [apply(prefix + "activation", [c]), o])
        return h, [h, c]

    return parts, step


def _gru_cell(cell, dtype, prefix, units, once):
    """GRU (Keras' gate order z, r, h), ``reset_after`` True or False.

    ``h_t = z h_{t-1} + (1 − z) ĥ`` is a sum of two gated signals; the candidate's
    pre-activation is ``x W_h + r (h U_h + b_r)`` (reset after: a sum of a linear
    map of ``x`` and a gated linear map of ``h``) or ``[x, r h] [W_h; U_h]``.
    """

    def biases():
        if not cell.use_bias:
            return None, None
        bias = _cast(cell.bias, dtype)
        return (bias[0], bias[1]) if cell.reset_after else (bias, None)

    def gate_weights():
        kernel = tf.concat(
            [
                _cast(cell.kernel, dtype)[:, : 2 * units],
                _cast(cell.recurrent_kernel, dtype)[:, : 2 * units],
            ],
            0,
        )
        input_bias, recurrent_bias = biases()
        if input_bias is None:
            return kernel, None
        bias = input_bias[: 2 * units]
        return kernel, bias if recurrent_bias is None else bias + recurrent_bias[: 2 * units]

    def input_weights():
        input_bias = biases()[0]
        bias = None if input_bias is None else input_bias[2 * units :]
        return _cast(cell.kernel, dtype)[:, 2 * units :], bias

    def recurrent_weights():
        recurrent_bias = biases()[1]
        bias = None if recurrent_bias is None else recurrent_bias[2 * units :]
        return _cast(cell.recurrent_kernel, dtype)[:, 2 * units :], bias

    def candidate_weights():
        kernel = tf.concat([input_weights()[0], recurrent_weights()[0]], 0)
        return kernel, input_weights()[1]

    parts = {
        prefix + "gates": _linear_part(f"/{prefix}gates", once.wrap(gate_weights)),
        prefix + "recurrent_activation": _activation_part(
            f"/{prefix}recurrent_activation", cell.recurrent_activation
        ),
        prefix + "activation": _activation_part(f"/{prefix}activation", cell.activation),
        prefix + "gated": Part("multiply", f"/{prefix}gated", _gated, gates=(1,)),
        prefix + "update": Part("sum_pool", f"/{prefix}update", _add),
    }
    if cell.reset_after:
        parts[prefix + "input"] = _linear_part(f"/{prefix}input", once.wrap(input_weights))
        parts[prefix + "recurrent"] = _linear_part(
            f"/{prefix}recurrent", once.wrap(recurrent_weights)
        )
    else:
        parts[prefix + "candidate"] = _linear_part(
            f"/{prefix}candidate", once.wrap(candidate_weights)
        )

    def step(apply, x, states):
        (h,) = states
        gates = apply(
            prefix + "recurrent_activation", [apply(prefix + "gates", [tf.concat([x, h], -1)])]
        )
        z, r = tf.split(gates, 2, axis=-1)
        if cell.reset_after:
            recurrent = apply(prefix + "gated", [apply(prefix + "recurrent", [h]), r])
            pre = apply(prefix + "update", [apply(prefix + "input", [x]), recurrent])
        else:
            reset = apply(prefix + "gated", [h, r])
            pre = apply(prefix + "candidate", [tf.concat([x, reset], -1)])
        candidate = apply(prefix + "activation", [pre])
        kept = apply(prefix + "gated", [h, z])
        written = apply(prefix + "gated", [candidate, 1 - z])
        h = apply(prefix + "update", [kept, written])
        return h, [h]

    return parts, step


def _simple_cell(cell, dtype, prefix, once):
    """SimpleRNN: ``h_t = act([x_t, h_{t-1}] [W; U] + b)``."""
    parts = {
        prefix + "linear": _linear_part(f"/{prefix}linear", once.wrap(_joint_weights(cell, dtype))),
        prefix + "activation": _activation_part(f"/{prefix}activation", cell.activation),
    }

    def step(apply, x, states):
        (h,) = states
        h = apply(prefix + "activation", [apply(prefix + "linear", [tf.concat([x, h], -1)])])
        return h, [h]

    return parts, step


def _bidirectional(layer, names) -> Inner:
    """Both directions' programs; the merge (``sum``, ``ave``) is a sum, ``concat`` bookkeeping."""
    forward = _recurrent(layer.forward_layer, "forward/", names)
    backward = _recurrent(layer.backward_layer, "backward/", names)
    parts = {**forward.parts, **backward.parts}
    if layer.merge_mode in ("sum", "ave"):
        function = _add if layer.merge_mode == "sum" else _average
        parts["merge"] = Part("sum_pool", "/merge", function)
    dtype = layer.compute_dtype

    def run(inputs, apply):
        y = tf.cast(forward.run(inputs, apply), dtype)
        y_reversed = tf.cast(backward.run(inputs, apply), dtype)
        if layer.return_sequences:
            y_reversed = tf.reverse(y_reversed, [1])
        if layer.merge_mode == "concat":
            return tf.concat([y, y_reversed], -1)
        return apply("merge", [y, y_reversed])

    return Inner(parts, run)


# -- attention ---------------------------------------------------------------------------
def _attend(values, weights):
    """``Σ_s A[b, n, t, s] v[b, s, n, h]``: the values mixed by the attention weights."""
    return tf.einsum("acbe,aecd->abcd", weights, values)


def _attention(layer, names, options) -> Inner:
    """MultiHeadAttention as its primitive ops: projections, two products, a softmax.

    The attention weights are a gate of the values (``gates=(1,)``): rules that
    respect gates hold them constant (CP-LRP, Ali et al. 2022); AttnLRP's uniform
    rule lets relevance flow into them, through the softmax to query and key.
    """
    parts = {
        name: Part(
            "linear",
            f"/{name}",
            lambda x, linear=linear: linear.apply(x, *linear.weights()),
            linear=linear,
            layer=getattr(layer, f"{name}_dense"),
        )
        for name in ("query", "key", "value", "output")
        for linear in linear_maps(getattr(layer, f"{name}_dense"))[:1]
    }
    scale = 1.0 / float(layer.key_dim) ** 0.5

    def scores(key, query):
        """``Σ_h k[b, s, n, h] q[b, t, n, h] / √d`` as ``(B, N, T, S)``."""
        return tf.einsum("aecd,abcd->acbe", key, query * tf.cast(scale, query.dtype))

    parts["scores"] = Part("bilinear", "/scores", scores)
    parts["softmax"] = Part("softmax", "/softmax", tf.nn.softmax, "softmax")
    parts["attention"] = Part("bilinear", "/attention", _attend, gates=(1,))
    causal = bool(options.get("use_causal_mask", False))
    dtype = layer.compute_dtype

    def run(inputs, apply):
        given = {name: tensor for name, tensor in zip(names, inputs) if name}
        query = tf.cast(given["query"], dtype)
        value = tf.cast(given["value"], dtype)
        key = tf.cast(given.get("key", given["value"]), dtype)
        logits = apply("scores", [apply("key", [key]), apply("query", [query])])
        mask = _attention_mask(given, query, value, causal)
        if mask is not None:
            mask = mask[:, None]  # the heads axis
            logits = tf.where(mask, logits, tf.cast(-1e9, logits.dtype))
        weights = apply("softmax", [logits])
        if mask is not None:
            weights = tf.where(mask, weights, tf.zeros_like(weights))
        values = apply("value", [value])
        return apply("output", [apply("attention", [values, weights])])

    return Inner(parts, run)


def _attention_mask(given, query, value, causal):
    """The ``(B, T, S)`` mask MultiHeadAttention builds from its inputs' masks, or None."""
    mask = None

    def combine(current, new):
        return new if current is None else tf.logical_and(current, new)

    if given.get("query_mask") is not None:
        mask = combine(mask, tf.cast(given["query_mask"], tf.bool)[:, :, None])
    for name in ("value_mask", "key_mask"):
        if given.get(name) is not None:
            mask = combine(mask, tf.cast(given[name], tf.bool)[:, None, :])
    if causal:
        length_q, length_v = tf.shape(query)[1], tf.shape(value)[1]
        lower = tf.linalg.band_part(tf.ones(tf.stack([length_q, length_v]), tf.bool), -1, 0)
        mask = combine(mask, lower[None])
    if given.get("attention_mask") is not None:
        mask = combine(mask, tf.cast(given["attention_mask"], tf.bool))
    return mask
