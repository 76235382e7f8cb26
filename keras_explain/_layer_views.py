"""How each Keras layer looks to the explainers: one table, read by :mod:`keras_explain.graph`.

A layer call decomposes into one or more primitive ops (``Dense(8,
activation="relu")`` is a linear map, then an activation). For each op the
table says its *kind* (what rules see), and gives

- for linear maps, a :class:`Linear` view: the layer's current weights as
  tensors and the map evaluated with any weights of the same shapes (``W⁺``,
  ``W²``, a folded BatchNormalization, ...);
- for normalizations, a *linearized* forward: the op with its data-dependent
  scale held constant (``tf.stop_gradient``), without its bias, so that it is a
  linear map of its input (Ali et al. 2022).

Only public layer attributes are read here; the graph walk lives in ``_graph.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import keras
import tensorflow as tf
from keras import ops

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
    "normalization",  # LayerNormalization & co.: linear once the scale is held constant
    "reshape",  # bookkeeping: the values move, unchanged
    "embedding",
    "recurrent",  # LSTM, GRU, SimpleRNN, Bidirectional: a program of the kinds above
    "attention",  # MultiHeadAttention: a program of the kinds above
    "other",
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
    """

    weights: Callable[[], tuple[Any, Any]]
    apply: Callable[[Any, Any, Any], Any]
    elementwise: bool = False


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


ACTIVATION_OPS = {  # keras.ops classes of element-wise activations
    "Relu": "relu",
    "Relu6": "relu6",
    "LeakyRelu": "leaky_relu",
    "Sigmoid": "sigmoid",
    "HardSigmoid": "hard_sigmoid",
    "Tanh": "tanh",
    "HardTanh": "hard_tanh",
    "Elu": "elu",
    "Selu": "selu",
    "Celu": "celu",
    "Gelu": "gelu",
    "Silu": "silu",
    "HardSilu": "hard_silu",
    "Softplus": "softplus",
    "Softsign": "softsign",
    "Mish": "mish",
    "Softmax": "softmax",
}
#: Element-wise affine preprocessing (op kind "rescale").
PREPROCESSING_LAYERS = (layers.Rescaling, layers.Normalization)
MAX_POOL_LAYERS = (
    layers.MaxPooling1D,
    layers.MaxPooling2D,
    layers.MaxPooling3D,
    layers.GlobalMaxPooling1D,
    layers.GlobalMaxPooling2D,
    layers.GlobalMaxPooling3D,
    layers.Maximum,
    layers.Minimum,
)
SUM_POOL_LAYERS = (
    layers.AveragePooling1D,
    layers.AveragePooling2D,
    layers.AveragePooling3D,
    layers.GlobalAveragePooling1D,
    layers.GlobalAveragePooling2D,
    layers.GlobalAveragePooling3D,
    layers.Add,
    layers.Subtract,
    layers.Average,
)
RESHAPE_LAYERS = (
    layers.Flatten,
    layers.Reshape,
    layers.Permute,
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
    layers.ZeroPadding1D,
    layers.ZeroPadding2D,
    layers.ZeroPadding3D,
    layers.Cropping1D,
    layers.Cropping2D,
    layers.Cropping3D,
    layers.RepeatVector,
    layers.UpSampling1D,
    layers.InputLayer,
    layers.Masking,  # x * (the step is not padding): zeros where masked, x elsewhere
)
RAW_OP_KINDS = {  # keras.ops classes (raw ops in a functional graph)
    "Add": "sum_pool",
    "Subtract": "sum_pool",
    "Negative": "sum_pool",
    "Mean": "sum_pool",
    "Sum": "sum_pool",
    "Maximum": "max_pool",
    "Minimum": "max_pool",
    "Max": "max_pool",
    "Reshape": "reshape",
    "Transpose": "reshape",
    "ExpandDims": "reshape",
    "Squeeze": "reshape",
    "Concatenate": "reshape",
    "Stack": "reshape",
    "Flatten": "reshape",
    "Identity": "reshape",
    "GetItem": "reshape",
    "Pad": "reshape",
    "Cast": "reshape",
    "BroadcastTo": "reshape",
    "Tile": "reshape",
}
#: keras.applications' own layers, by class name.
APPLICATION_LAYER_KINDS = {
    "CustomScaleLayer": "sum_pool",  # InceptionResNetV2: inputs[0] + inputs[1] * scale
    "StochasticDepth": "reshape",  # ConvNeXt's drop path: the identity at inference
}


def decompose(layer: Any, forward: Callable, tensor_inputs: int) -> list[Part]:
    """The primitive ops of one call of ``layer``.

    Args:
        layer: A Keras layer or operation.
        forward: The call, ``forward(*tensors)``, in inference mode.
        tensor_inputs: How many graph tensors the call reads.

    Returns:
        The parts, in execution order.
    """
    maps = linear_maps(layer) if isinstance(layer, keras.layers.Layer) else None
    if maps is None:
        return [_classify(layer, forward, tensor_inputs)]
    dtype = layer.compute_dtype
    parts = []
    for index, linear in enumerate(maps):

        def linear_forward(x, *masks, linear=linear):  # a Keras mask changes nothing here
            return linear.apply(ops.cast(x, dtype), *linear.weights())

        suffix = "" if len(maps) == 1 else f"/{index}"
        kind = "rescale" if isinstance(layer, PREPROCESSING_LAYERS) else "linear"
        parts.append(Part(kind, suffix, linear_forward, linear=linear))
    inner = layer.layer if isinstance(layer, keras.layers.TimeDistributed) else layer
    function = getattr(inner, "activation", None)
    if function is not None and activation_name(function) != "linear":
        name = activation_name(function)
        kind = "softmax" if name == "softmax" else "activation"
        parts.append(Part(kind, "/activation", function, activation=name))
    return parts


def activation_name(function: Any) -> str:
    """The name of an activation function (``"relu"``, ``"silu"``, ...)."""
    return getattr(function, "__name__", type(function).__name__)


def _classify(layer, forward, tensor_inputs) -> Part:
    class_name = type(layer).__name__
    if not isinstance(layer, keras.layers.Layer):  # a raw keras.ops call
        if class_name in ACTIVATION_OPS:
            name = ACTIVATION_OPS[class_name]
            return Part("softmax" if name == "softmax" else "activation", "", forward, name)
        if class_name in ("Multiply", "Divide", "TrueDivide"):
            if tensor_inputs == 1:  # x * c, x / c: a fixed linear map of x
                return Part("sum_pool", "", forward)
            if class_name == "Multiply":
                return Part("multiply", "", forward)
        return Part(RAW_OP_KINDS.get(class_name, "other"), "", forward)
    activation = _activation_of_layer(layer)
    if activation is not None:
        kind = "softmax" if activation == "softmax" else "activation"
        return Part(kind, "", forward, activation)
    if isinstance(layer, keras.layers.Embedding):
        return Part("embedding", "", forward)
    linearized = _linearized(layer)
    if linearized is not None:
        return Part("normalization", "", forward, linearized=linearized)
    if isinstance(layer, keras.layers.Multiply):
        return Part("multiply", "", forward)
    if isinstance(layer, keras.layers.UpSampling2D | keras.layers.UpSampling3D):
        # nearest-neighbour copies values (bookkeeping); other interpolations are
        # fixed linear maps without bias (non-negative weights for bilinear only)
        nearest = getattr(layer, "interpolation", "nearest") == "nearest"
        return Part("reshape" if nearest else "sum_pool", "", forward)
    if isinstance(layer, keras.layers.Resizing):
        nearest = layer.interpolation == "nearest"
        return Part("reshape" if nearest else "sum_pool", "", forward)
    for classes, kind in (
        (MAX_POOL_LAYERS, "max_pool"),
        (SUM_POOL_LAYERS, "sum_pool"),
        (RESHAPE_LAYERS, "reshape"),
    ):
        if isinstance(layer, classes):
            return Part(kind, "", forward)
    return Part(APPLICATION_LAYER_KINDS.get(class_name, "other"), "", forward)


def _activation_of_layer(layer) -> str | None:
    if isinstance(layer, keras.layers.Activation):
        return activation_name(layer.activation)
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    if isinstance(layer, keras.layers.ReLU):
        if layer.negative_slope or layer.threshold:
            return "leaky_relu"
        return "relu6" if layer.max_value == 6 else "relu"
    if isinstance(layer, keras.layers.LeakyReLU):
        return "leaky_relu"
    if isinstance(layer, keras.layers.ELU):
        return "elu"
    if isinstance(layer, keras.layers.PReLU):
        return "prelu"
    return None


# -- linear views ---------------------------------------------------------------------
def _with_bias(z, bias, channel_axis):
    if bias is None:
        return z
    shape = [1] * len(z.shape)
    shape[channel_axis] = -1
    return z + ops.reshape(bias, shape)


def _cast(value, dtype):
    return None if value is None else ops.cast(value, dtype)


def linear_maps(layer) -> tuple[Linear, ...] | None:
    """The linear map(s) of a layer, in execution order, or None when it has none."""
    if isinstance(layer, keras.layers.TimeDistributed):
        return _time_distributed(layer)
    dtype = layer.compute_dtype
    axis = 1 if getattr(layer, "data_format", "channels_last") == "channels_first" else -1

    def weights_of(kernel_attr, bias_attr="bias"):
        def weights():
            bias = getattr(layer, bias_attr, None) if getattr(layer, "use_bias", True) else None
            return _cast(getattr(layer, kernel_attr), dtype), _cast(bias, dtype)

        return weights

    def convolution(function, **options):
        def apply(x, kernel, bias):
            return _with_bias(function(x, kernel, **options), bias, axis)

        return apply

    window = {
        "padding": getattr(layer, "padding", None),
        "data_format": getattr(layer, "data_format", None),
        "dilation_rate": getattr(layer, "dilation_rate", None),
    }
    if isinstance(layer, keras.layers.Dense):
        return (Linear(weights_of("kernel"), lambda x, k, b: _with_bias(ops.matmul(x, k), b, -1)),)
    if isinstance(layer, keras.layers.EinsumDense):

        def einsum(x, kernel, bias):
            z = ops.einsum(layer.equation, x, kernel)
            return z if bias is None else z + bias

        return (Linear(weights_of("kernel"), einsum),)
    if isinstance(layer, keras.layers.SeparableConv1D | keras.layers.SeparableConv2D):
        depthwise = convolution(ops.depthwise_conv, strides=layer.strides, **window)
        pointwise = convolution(ops.conv, strides=1, padding="valid", data_format=layer.data_format)
        return (
            Linear(lambda: (_cast(layer.depthwise_kernel, dtype), None), depthwise),
            Linear(weights_of("pointwise_kernel"), pointwise),
        )
    if isinstance(layer, keras.layers.DepthwiseConv1D | keras.layers.DepthwiseConv2D):
        apply = convolution(ops.depthwise_conv, strides=layer.strides, **window)
        return (Linear(weights_of("kernel"), apply),)
    if isinstance(
        layer,
        keras.layers.Conv1DTranspose | keras.layers.Conv2DTranspose | keras.layers.Conv3DTranspose,
    ):
        apply = convolution(
            ops.conv_transpose,
            strides=list(layer.strides),
            output_padding=layer.output_padding,
            **window,
        )
        return (Linear(weights_of("kernel"), apply),)
    if isinstance(layer, keras.layers.Conv2D) and _depthwise_groups(layer):
        # groups == input channels (ConvNeXt's "depthwise" Conv2D): the same map as a
        # depthwise convolution, which TensorFlow runs on CPU without Keras' XLA
        # fallback (a new tf.function per call, and retracing warnings)
        def grouped(x, kernel, bias):
            height, width, _, filters = kernel.shape
            depthwise = ops.reshape(kernel, (height, width, layer.groups, filters // layer.groups))
            z = ops.depthwise_conv(x, depthwise, strides=layer.strides, **window)
            return _with_bias(z, bias, axis)

        return (Linear(weights_of("kernel"), grouped),)
    if isinstance(layer, keras.layers.Conv1D | keras.layers.Conv2D | keras.layers.Conv3D):
        return (Linear(weights_of("kernel"), convolution(layer.convolution_op)),)
    if isinstance(layer, keras.layers.BatchNormalization):
        return (batch_norm_view(layer),)
    if isinstance(layer, keras.layers.Rescaling):
        return (_rescaling_view(layer),)
    if isinstance(layer, keras.layers.Normalization):
        return (_normalization_view(layer),)
    if type(layer).__name__ == "LayerScale" and hasattr(layer, "gamma"):
        # keras.applications.ConvNeXt's layer scale: x * gamma
        return (Linear(lambda: (_cast(layer.gamma, dtype), None), _scale_shift, True),)
    return None


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


def _depthwise_groups(layer) -> bool:
    """A channels-last Conv2D with one group per input channel."""
    groups = getattr(layer, "groups", 1)
    return (
        groups > 1
        and layer.data_format == "channels_last"
        and layer.kernel.shape[-2] == 1
        and layer.kernel.shape[-1] % groups == 0
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


# -- normalizations with a data-dependent scale -----------------------------------------
def _linearized(layer) -> Callable | None:
    """The normalization ``x ↦ (y − bias)`` with its scale held constant, or None."""
    if isinstance(layer, keras.layers.LayerNormalization):
        return _layer_norm_linearized(layer)
    if isinstance(layer, keras.layers.RMSNormalization):

        def rms(x):
            x = tf.cast(x, tf.float32)
            axes = layer.axis if isinstance(layer.axis, list | tuple) else [layer.axis]
            norm = tf.math.rsqrt(tf.reduce_mean(tf.square(x), axes, keepdims=True) + layer.epsilon)
            return x * tf.stop_gradient(norm) * tf.cast(layer.scale, tf.float32)

        return rms
    if isinstance(layer, keras.layers.UnitNormalization):

        def unit(x):
            x = tf.cast(x, tf.float32)
            squares = tf.reduce_sum(tf.square(x), layer.axis, keepdims=True)
            return x * tf.stop_gradient(tf.math.rsqrt(tf.maximum(squares, 1e-24)))

        return unit
    return None


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
