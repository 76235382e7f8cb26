"""Layer attribution along the input path: internal influence and layer conductance.

Both walk the straight path ``x_k = x' + α_k (x − x')`` in input space, as
Integrated Gradients does, and read the gradient ``g_k = ∂f_t/∂a`` at a layer's
value ``a``:

- :class:`InternalInfluence` (Leino et al. 2018, arXiv:1802.03788; Captum's
  ``InternalInfluence``): the path's mean gradient at the layer, ``Σ_k w_k g_k``;
- :class:`LayerConductance` (Dhamdhere et al. 2018, arXiv:1805.12233; Captum's
  ``LayerConductance``): how much of the output's change flows through each
  unit of the layer, ``Σ_k g_k ⊙ (a(x_{k+1}) − a(x_k))`` over ``steps + 1``
  ordered points, which sums over the layer to about ``f_t(x) − f_t(x')``;
- :class:`NeuronConductance` (the same paper; Captum's ``NeuronConductance``):
  one unit's conductance split over the input features, Integrated Gradients
  of the gradient that flows through that unit (:class:`ThroughNeuron`).

Integrated Gradients at a layer (``kx.IntegratedGradients(model, layer=...)``,
Captum's ``LayerIntegratedGradients``) walks the path between the layer's own
values instead: :class:`~keras_explain.analyzers.gradient_wrappers.IntegratedGradients`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from keras_explain import _batching
from keras_explain.analyzers.gradient import Gradient
from keras_explain.analyzers.gradient_wrappers import AroundGradient
from keras_explain.analyzers.wrappers import PathIntegral, quadrature

_ARGS = """
    Args:
        model: A Functional or Sequential Keras model.
        layer: The layer (name or object) whose units are attributed.
        steps: {steps}
        method: ``"trapezoid"`` (default; both end points), ``"riemann_left"``,
            ``"riemann_right"``, ``"riemann_middle"`` or ``"gausslegendre"``
            (Captum's default).
        baseline: The reference input ``x'``: a scalar, an array shaped like one
            sample or like the batch (default 0); a list for several inputs.
        internal_batch_size: Rows per backward pass (default: from the memory budget).
        **kwargs: ``attribute_to_layer_input``, ``output_layer``,
            ``output_index``, ``strip_softmax``, ``neuron_selection_mode``,
            ``verbose``.

    Returns:
        ``analyze(x, target)`` returns float32 attributions shaped like the
        layer's value (its input with ``attribute_to_layer_input=True``).

    Raises:
        ValueError: Without ``layer``, for an unknown layer, a bad
            ``steps``/``method`` or a baseline of the wrong shape.
        TypeError: For an unexpected parameter.
"""


class _InputPathAtLayer(AroundGradient, PathIntegral):
    """A path integral in input space of the gradient at a layer."""

    layer_path = False  # the path runs between inputs, the gradient is read at the layer

    def __init__(
        self,
        model,
        *,
        layer: Any = None,
        steps: int = 50,
        method: str = "trapezoid",
        baseline: Any = 0.0,
        internal_batch_size: int | None = None,
        **kwargs: Any,
    ):
        if layer is None:
            raise ValueError(
                f"{type(self).__name__} attributes the units of a layer; pass "
                "layer=<name or layer object>. Received: layer=None."
            )
        quadrature(method, steps)
        kwargs = {**kwargs, "layer": layer}
        gradient = self._split(model, kwargs)  # takes Gradient's parameters out of kwargs
        super().__init__(
            gradient,
            steps=steps,
            method=method,
            baseline=baseline,
            multiply_by_inputs=False,
            internal_batch_size=internal_batch_size,
            **kwargs,
        )

    @classmethod
    def parameters(cls, **preset: Any) -> list[str]:
        """Gradient's parameters and the path's (``multiply_by_inputs`` is not one)."""
        return [name for name in super().parameters() if name != "multiply_by_inputs"]

    def _path(self, inputs):
        """The points' inputs and baselines in input space (token inputs: embeddings)."""
        baselines = (
            self.baseline if isinstance(self.baseline, list) else [self.baseline] * len(inputs)
        )
        points = self.analyzer.embed(inputs)
        return points, self.analyzer.baseline_points(baselines, inputs, points)


class InternalInfluence(_InputPathAtLayer):  # noqa: D101  (docstring below)
    __doc__ = (
        """Internal influence (Leino et al. 2018, arXiv:1802.03788; Captum's InternalInfluence).

    ``Σ_k w_k ∂f_t/∂a (x' + α_k (x − x'))``: the gradient of the explained score
    at the layer's value ``a``, averaged along the straight path from the
    baseline to the input with the quadrature weights of :func:`quadrature`.
    It is Integrated Gradients at the layer without the multiplication, with
    the path in input space.
"""
        + _ARGS.format(steps="Number of path points (default 50, Captum's).")
        + """
    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((4,)),
        ...                           keras.layers.Dense(5, activation="relu", name="hidden"),
        ...                           keras.layers.Dense(3)])
        >>> kx.InternalInfluence(model, layer="hidden", steps=8).analyze(
        ...     np.ones((2, 4), "float32")).shape
        (2, 5)
    """
    )


class LayerConductance(_InputPathAtLayer):  # noqa: D101  (docstring below)
    __doc__ = (
        """Layer conductance (Dhamdhere et al. 2018, arXiv:1805.12233; Captum's LayerConductance).

    With ``steps + 1`` ordered points ``α_0 < … < α_steps`` of :func:`quadrature`
    (Captum's construction), ``x_k = x' + α_k (x − x')``, the layer's value
    ``a_k = a(x_k)`` and its gradient ``g_k = ∂f_t/∂a (x_k)``, the conductance of
    each unit is ``Σ_{k<steps} g_k ⊙ (a_{k+1} − a_k)``: the chain rule through
    the unit, integrated along the path. With ``"trapezoid"`` (both end points)
    it sums over the layer to about ``f_t(x) − f_t(x')`` when every path from
    the input to the output goes through the layer.
"""
        + _ARGS.format(steps="Path steps (default 50, Captum's): ``steps + 1`` points.")
        + """
    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((4,)),
        ...                           keras.layers.Dense(5, activation="relu", name="hidden"),
        ...                           keras.layers.Dense(3)])
        >>> kx.LayerConductance(model, layer="hidden", steps=8).analyze(
        ...     np.ones((2, 4), "float32")).shape
        (2, 5)
    """
    )

    def explain_batch(self, inputs, target, indices, seed, params):
        """``Σ_k g_k ⊙ (a_{k+1} − a_k)`` over consecutive points, carried across passes."""
        target, indices, _ = self.fixed_target(inputs, target, indices)
        points, baselines = self._path(inputs)
        count = params["steps"] + 1
        alphas, _ = tf.numpy_function(
            quadrature, [params["method"], count], [tf.float64, tf.float64], stateful=False
        )

        def make(start, size):
            copies = []
            for x, base in zip(points, baselines):
                shape = tf.concat([[-1], tf.ones([x.shape.rank], tf.int32)], 0)
                alpha = tf.reshape(tf.cast(alphas[start : start + size], x.dtype), shape)
                copies.append(base[None] + alpha * (x - base)[None])
            return copies, None

        def evaluate(flat, size):
            rows = _batching.repeat(indices, size)

            def run(model_inputs):
                gradients, values = self.analyzer.backward(model_inputs, target, rows)
                return [gradients[0], values[0]]

            return self.at_points(flat, inputs, size, run)

        def accumulate(carried, values, aux, start, size):
            total, last_gradient, last_value = carried
            gradient, value = values
            within = tf.reduce_sum(gradient[:-1] * (value[1:] - value[:-1]), axis=0)
            across = last_gradient * (value[0] - last_value)  # the previous pass's last point
            return total + within + across, gradient[-1], value[-1]

        initial = (tf.zeros(()), tf.zeros(()), tf.zeros(()))
        total, _, _ = self.run_copies(
            inputs, count, make, evaluate, accumulate, initial, backward=True
        )
        return self.analyzer.finish([total], inputs)


class ThroughNeuron(Gradient):
    """The gradient that flows through one unit of a layer: ``∂f_t/∂y_n · ∂y_n/∂x``.

    The backward pass of :class:`~keras_explain.analyzers.gradient.Gradient`
    with the signal at ``layer``'s output kept at unit ``neuron`` and zeroed at
    every other unit; the path integral of it is :class:`NeuronConductance`.

    Args:
        model: A Functional or Sequential Keras model.
        layer: The layer (name or object) holding the unit.
        neuron: The unit: an int, its index in the layer's output flattened per
            sample, or a tuple indexing one sample's output (Captum's
            ``neuron_selector``).
        **kwargs: ``output_layer``, ``output_index``, ``strip_softmax``,
            ``neuron_selection_mode``, ``verbose``.

    Raises:
        ValueError: For an unknown layer, a layer of unknown shape, or a
            ``neuron`` outside the layer's output.
    """

    def __init__(self, model, *, layer: Any = None, neuron: Any = None, **kwargs: Any):
        super().__init__(model, **kwargs)
        name = type(self).__name__
        if layer is None or self.plan is None:
            raise ValueError(
                f"{name} selects a unit of a layer of a Functional or Sequential model; pass "
                f"layer=<name or layer object> and neuron=<index>. Received: layer={layer!r}."
            )
        self.neuron_layer = self.plan.find_layer(layer, "layer")
        self.neuron_key = self.plan.output_key_of(self.neuron_layer)
        shape = self.plan.shape_of(self.neuron_key)
        if shape is None or any(dim is None for dim in shape[1:]):
            raise ValueError(
                f"{name} needs the static shape of layer {self.neuron_layer.name!r}'s output to "
                f"select a unit; it is {shape}. Received: layer={layer!r}."
            )
        self.neuron = neuron
        self.neuron_mask = _unit_mask(name, tuple(shape[1:]), neuron)

    def hook(self, step, inputs):
        """Run the op; at the layer's output, let the gradient through ``neuron`` only."""
        output = super().hook(step, inputs)
        if step.outputs[0] != self.neuron_key:
            return output
        mask = tf.constant(self.neuron_mask)

        @tf.custom_gradient
        def only_through(value):
            return tf.identity(value), lambda upstream: upstream * tf.cast(mask, upstream.dtype)

        return only_through(output)


def _unit_mask(owner: str, shape: tuple, neuron: Any) -> np.ndarray:
    """A one-hot array of one sample's ``shape`` at ``neuron`` (a flat index or a tuple)."""
    size = int(np.prod(shape))
    if isinstance(neuron, int | np.integer) and not isinstance(neuron, bool):
        if not 0 <= neuron < size:
            raise ValueError(
                f"{owner}: neuron={neuron} is outside the layer's {size} units per sample "
                f"(output shape {shape}). Pass an int in [0, {size}) or a tuple index."
            )
        index = np.unravel_index(int(neuron), shape)
    elif isinstance(neuron, tuple) and len(neuron) == len(shape):
        if not all(0 <= int(i) < dim for i, dim in zip(neuron, shape)):
            raise ValueError(
                f"{owner}: neuron={neuron} is outside the layer's output shape {shape}."
            )
        index = tuple(int(i) for i in neuron)
    else:
        raise ValueError(
            f"{owner}: neuron selects one unit of the layer's output (shape {shape} per "
            f"sample): an int (flat index) or a tuple of {len(shape)} ints. Received: "
            f"neuron={neuron!r}."
        )
    mask = np.zeros(shape, np.float32)
    mask[index] = 1.0
    return mask


class NeuronConductance(AroundGradient, PathIntegral):
    """Neuron conductance (Dhamdhere et al. 2018, arXiv:1805.12233; Captum's NeuronConductance).

    How much of the output's change flows through one unit ``y_n`` of a layer,
    per input feature: ``(x − x') ⊙ Σ_k w_k (∂f_t/∂y_n · ∂y_n/∂x)(x' + α_k (x − x'))``,
    Integrated Gradients of :class:`ThroughNeuron`'s backward pass. Summed over
    the features it is the unit's :class:`LayerConductance` (up to the quadrature);
    summed over every unit of the layer, Integrated Gradients.

    Args:
        model: A Functional or Sequential Keras model.
        layer: The layer (name or object) holding the unit.
        neuron: The unit: an int (flat index per sample) or a tuple index.
        steps: Number of path points (default 50, Captum's).
        method: As for :class:`~keras_explain.analyzers.gradient_wrappers.IntegratedGradients`.
        baseline: The reference input ``x'`` (default 0).
        internal_batch_size: Rows per backward pass (default: from the memory budget).
        **kwargs: ``output_layer``, ``output_index``, ``strip_softmax``,
            ``neuron_selection_mode``, ``verbose``.

    Returns:
        ``analyze(x, target)`` returns attributions shaped like x.

    Raises:
        ValueError: Without ``layer`` or ``neuron``, for a ``neuron`` outside the
            layer, a bad ``steps``/``method`` or a baseline of the wrong shape.
        TypeError: For an unexpected parameter.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((4,)),
        ...                           keras.layers.Dense(5, activation="relu", name="hidden"),
        ...                           keras.layers.Dense(3)])
        >>> kx.NeuronConductance(model, layer="hidden", neuron=2, steps=8).analyze(
        ...     np.ones((2, 4), "float32")).shape
        (2, 4)
    """

    def __init__(
        self,
        model,
        *,
        layer: Any = None,
        neuron: Any = None,
        steps: int = 50,
        method: str = "trapezoid",
        baseline: Any = 0.0,
        internal_batch_size: int | None = None,
        **kwargs: Any,
    ):
        quadrature(method, steps)
        through = {key: kwargs.pop(key) for key in list(kwargs) if key in Gradient.parameters()}
        if "verbose" in through:
            kwargs["verbose"] = through.pop("verbose")
        analyzer = ThroughNeuron(model, layer=layer, neuron=neuron, **through)
        super().__init__(
            analyzer,
            steps=steps,
            method=method,
            baseline=baseline,
            internal_batch_size=internal_batch_size,
            **kwargs,
        )

    @classmethod
    def parameters(cls, **preset: Any) -> list[str]:
        """The path's parameters, ``layer``, ``neuron`` and Gradient's."""
        own = [name for name in super().parameters() if name != "multiply_by_inputs"]
        return own + [name for name in ("neuron",) if name not in own]
