"""Decompose one Keras layer call into primitive ops for the graph engine.

A layer such as ``Dense(8, activation="relu")`` becomes two ops, a linear map
and an activation, so that rules can treat them apart. Linear layers expose a
:class:`Linear` view: their current weights as tensors and the map evaluated
with any weights of the same shapes (``W+``, ``W**2``, folded BatchNorm, ...).
Only public layer attributes are read here; the graph walk lives in
``_graph.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import keras
from keras import ops

ACTIVATION_OPS = {
    "Relu": "relu",
    "Relu6": "relu6",
    "LeakyRelu": "leaky_relu",
    "Sigmoid": "sigmoid",
    "Tanh": "tanh",
    "Elu": "elu",
    "Selu": "selu",
    "Gelu": "gelu",
    "Silu": "silu",
    "Softplus": "softplus",
    "HardSigmoid": "hard_sigmoid",
    "Softmax": "softmax",
}
RESHAPE_LAYERS = (
    keras.layers.Flatten,
    keras.layers.Reshape,
    keras.layers.Permute,
    keras.layers.Concatenate,
    keras.layers.Dropout,
    keras.layers.SpatialDropout1D,
    keras.layers.SpatialDropout2D,
    keras.layers.SpatialDropout3D,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.AlphaDropout,
    keras.layers.ActivityRegularization,
    keras.layers.Identity,
    keras.layers.ZeroPadding1D,
    keras.layers.ZeroPadding2D,
    keras.layers.ZeroPadding3D,
    keras.layers.Cropping1D,
    keras.layers.Cropping2D,
    keras.layers.Cropping3D,
    keras.layers.RepeatVector,
    keras.layers.UpSampling1D,
    keras.layers.InputLayer,
)
RESHAPE_OPS = {
    "Reshape",
    "Transpose",
    "ExpandDims",
    "Squeeze",
    "Concatenate",
    "Stack",
    "Flatten",
    "Identity",
    "GetItem",
    "Pad",
    "Cast",
}
MAX_POOL_LAYERS = (
    keras.layers.MaxPooling1D,
    keras.layers.MaxPooling2D,
    keras.layers.MaxPooling3D,
    keras.layers.GlobalMaxPooling1D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.GlobalMaxPooling3D,
)
SUM_POOL_LAYERS = (
    keras.layers.AveragePooling1D,
    keras.layers.AveragePooling2D,
    keras.layers.AveragePooling3D,
    keras.layers.GlobalAveragePooling1D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalAveragePooling3D,
    keras.layers.Add,
    keras.layers.Average,
)
SUM_OPS = {"Add", "Mean", "Sum"}


@dataclasses.dataclass(frozen=True, eq=False)
class Linear:
    """An affine layer seen as ``z = apply(x, kernel, bias)``.

    Attributes:
        weights: ``weights() -> (kernel, bias)``, the layer's current values
            as tensors in the compute dtype (``bias`` may be None).
        apply: ``apply(x, kernel, bias)`` evaluates the map with the given
            weights; ``bias=None`` drops the bias.
        elementwise: True when the kernel multiplies element-wise
            (BatchNormalization) instead of contracting an axis.
    """

    weights: Callable[[], tuple[Any, Any]]
    apply: Callable[[Any, Any, Any], Any]
    elementwise: bool = False


def _op(kind, layer, name, forward, activation=None, linear=None, constants=False):
    from keras_explain._graph import Op

    return Op(kind, layer, name, forward, activation, linear, constants)


def _with_bias(z, bias, channel_axis):
    if bias is None:
        return z
    shape = [1] * len(z.shape)
    shape[channel_axis] = -1
    return z + ops.reshape(bias, shape)


def _channel_axis(layer):
    return 1 if getattr(layer, "data_format", "channels_last") == "channels_first" else -1


def _cast(value, dtype):
    return None if value is None else ops.cast(value, dtype)


def _linear_view(layer) -> tuple[Linear, ...] | None:
    """The linear map(s) of a layer, or None when it has none."""
    dtype = layer.compute_dtype
    axis = _channel_axis(layer)

    def weights_of(kernel_attr, bias_attr="bias"):
        def weights():
            bias = getattr(layer, bias_attr, None) if getattr(layer, "use_bias", True) else None
            return _cast(getattr(layer, kernel_attr), dtype), _cast(bias, dtype)

        return weights

    if isinstance(layer, keras.layers.Dense):
        return (Linear(weights_of("kernel"), lambda x, k, b: _with_bias(ops.matmul(x, k), b, -1)),)
    if isinstance(layer, keras.layers.EinsumDense):

        def einsum(x, k, b):
            z = ops.einsum(layer.equation, x, k)
            return z if b is None else z + b

        return (Linear(weights_of("kernel"), einsum),)
    if isinstance(layer, keras.layers.SeparableConv1D | keras.layers.SeparableConv2D):
        rank = 1 if isinstance(layer, keras.layers.SeparableConv1D) else 2

        def depthwise(x, k, b):
            return ops.depthwise_conv(
                x,
                k,
                strides=layer.strides,
                padding=layer.padding,
                dilation_rate=layer.dilation_rate,
                data_format=layer.data_format,
            )

        def pointwise(x, k, b):
            z = ops.conv(x, k, strides=1, padding="valid", data_format=layer.data_format)
            return _with_bias(z, b, axis)

        def depthwise_weights():
            return _cast(layer.depthwise_kernel, dtype), None

        del rank
        return (
            Linear(depthwise_weights, depthwise),
            Linear(weights_of("pointwise_kernel"), pointwise),
        )
    if isinstance(layer, keras.layers.DepthwiseConv1D | keras.layers.DepthwiseConv2D):

        def depthwise_conv(x, k, b):
            z = ops.depthwise_conv(
                x,
                k,
                strides=layer.strides,
                padding=layer.padding,
                dilation_rate=layer.dilation_rate,
                data_format=layer.data_format,
            )
            return _with_bias(z, b, axis)

        return (Linear(weights_of("kernel"), depthwise_conv),)
    if isinstance(
        layer,
        keras.layers.Conv1DTranspose | keras.layers.Conv2DTranspose | keras.layers.Conv3DTranspose,
    ):

        def conv_transpose(x, k, b):
            z = ops.conv_transpose(
                x,
                k,
                strides=list(layer.strides),
                padding=layer.padding,
                output_padding=layer.output_padding,
                dilation_rate=layer.dilation_rate,
                data_format=layer.data_format,
            )
            return _with_bias(z, b, axis)

        return (Linear(weights_of("kernel"), conv_transpose),)
    if isinstance(layer, keras.layers.Conv1D | keras.layers.Conv2D | keras.layers.Conv3D):

        def conv(x, k, b):
            return _with_bias(layer.convolution_op(x, k), b, axis)

        return (Linear(weights_of("kernel"), conv),)
    if isinstance(layer, keras.layers.BatchNormalization):
        return (batch_norm_view(layer),)
    return None


def batch_norm_view(layer) -> Linear:
    """BatchNormalization in inference mode as ``x * scale + shift``."""

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
        shape[layer.axis if isinstance(layer.axis, int) else layer.axis[0]] = -1
        z = ops.cast(x, scale.dtype) * ops.reshape(scale, shape)
        return z if shift is None else z + ops.reshape(shift, shape)

    return Linear(weights, apply, elementwise=True)


def activation_name(function) -> str:
    name = getattr(function, "__name__", type(function).__name__)
    return {"relu6": "relu6", "leaky_relu": "leaky_relu"}.get(name, name)


def decompose(layer, node, prefix) -> list:
    """The primitive ops of ``layer`` as called at ``node``."""
    from keras_explain._graph import call_operation, has_constant_operands

    name = getattr(layer, "name", type(layer).__name__)
    forward = call_operation(layer, node)
    linears = _linear_view(layer) if isinstance(layer, keras.layers.Layer) else None
    if linears is not None:
        result = []
        for index, linear in enumerate(linears):
            suffix = "" if len(linears) == 1 else f"/{index}"

            def linear_forward(x, linear=linear):
                return linear.apply(ops.cast(x, layer.compute_dtype), *linear.weights())

            result.append(_op("linear", layer, name + suffix, linear_forward, linear=linear))
        function = getattr(layer, "activation", None)
        if function is not None and activation_name(function) != "linear":
            act = activation_name(function)
            kind = "softmax" if act == "softmax" else "activation"
            result.append(_op(kind, layer, name + "/activation", function, activation=act))
        return result
    op = _classify(layer, name, forward)
    if not isinstance(layer, keras.layers.Layer) and has_constant_operands(node):
        op = dataclasses.replace(op, constants=True)
    return [op]


def _classify(layer, name, forward):
    class_name = type(layer).__name__
    if isinstance(layer, keras.layers.Embedding):
        return _op("embedding", layer, name, forward)
    if isinstance(layer, keras.layers.Activation):
        act = activation_name(layer.activation)
        return _op("softmax" if act == "softmax" else "activation", layer, name, forward, act)
    if isinstance(layer, keras.layers.Softmax):
        return _op("softmax", layer, name, forward, "softmax")
    if isinstance(layer, keras.layers.ReLU):
        plain = not layer.negative_slope and not layer.threshold
        act = "relu" if plain else "leaky_relu"
        return _op("activation", layer, name, forward, act)
    if isinstance(layer, keras.layers.LeakyReLU | keras.layers.ELU):
        act = "leaky_relu" if isinstance(layer, keras.layers.LeakyReLU) else "elu"
        return _op("activation", layer, name, forward, act)
    if class_name in ACTIVATION_OPS and not isinstance(layer, keras.layers.Layer):
        act = ACTIVATION_OPS[class_name]
        return _op("softmax" if act == "softmax" else "activation", layer, name, forward, act)
    if isinstance(layer, keras.layers.UpSampling2D | keras.layers.UpSampling3D):
        # Nearest-neighbour copies values (bookkeeping); other interpolations
        # are fixed non-negative linear maps without bias (proportional rule).
        nearest = getattr(layer, "interpolation", "nearest") == "nearest"
        return _op("reshape" if nearest else "sum_pool", layer, name, forward)
    if isinstance(layer, MAX_POOL_LAYERS):
        return _op("max_pool", layer, name, forward)
    if isinstance(layer, SUM_POOL_LAYERS):
        return _op("sum_pool", layer, name, forward)
    if isinstance(layer, RESHAPE_LAYERS):
        return _op("reshape", layer, name, forward)
    if not isinstance(layer, keras.layers.Layer):
        if class_name in SUM_OPS:
            return _op("sum_pool", layer, name, forward)
        if class_name in RESHAPE_OPS:
            return _op("reshape", layer, name, forward)
    return _op("other", layer, name, forward)
