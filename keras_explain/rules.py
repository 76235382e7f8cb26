"""Rules: how the gradient arriving at one op turns into the one leaving it.

A rule is a small object holding hyper-parameters only. The graph engine calls
``rule(step, inputs)`` in place of the op; the rule computes the op's ordinary
forward value (re-using the layer's weights as tensors, never copies of the
variables) and attaches its own backward pass with ``tf.custom_gradient``.
Subclasses implement :meth:`Rule.backward`.

In relevance analyzers, the "gradient" that flows backwards *is* the relevance:
the output receives ``R = one_hot(t) * logit_t`` and every rule maps the
relevance of its op's output to the relevance of its inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tensorflow as tf
from keras import ops


class Rule:
    """Base class: run the op forward, replace its backward pass."""

    def __call__(self, step, inputs: Sequence[tf.Tensor]) -> tf.Tensor:
        op = step.op
        if op.linear is not None:
            weights = op.linear.weights()
            dtype = op.layer.compute_dtype

            def forward(x):
                return op.linear.apply(ops.cast(x, dtype), *weights)
        else:
            weights = None
            forward = op.forward

        @tf.custom_gradient
        def apply(*tensors):
            output = forward(*tensors)

            def grad(upstream):
                result = self.backward(step, list(tensors), output, upstream, weights)
                return result if len(tensors) > 1 else result[0]

            return output, grad

        return apply(*inputs)

    def backward(self, step, inputs: list[tf.Tensor], output: tf.Tensor,
                 upstream: tf.Tensor, weights: Any) -> list[tf.Tensor]:
        """Map the gradient (relevance) at the op's output to its inputs.

        Args:
            step: The engine step (``step.op`` holds the layer and its kind).
            inputs: The op's forward inputs.
            output: The op's forward output.
            upstream: What arrives at the output in the backward pass.
            weights: ``(kernel, bias)`` for linear ops, else None.

        Returns:
            One tensor per input.
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        params = ", ".join(f"{key}={value!r}" for key, value in vars(self).items())
        return f"{type(self).__name__}({params})"


def vjp(function, inputs: Sequence[tf.Tensor], upstream: tf.Tensor) -> list[tf.Tensor]:
    """Vector-Jacobian product of ``function`` at ``inputs`` with ``upstream``.

    Inside a ``tf.function`` the recomputed forward value is unused and pruned,
    so for linear maps this costs one transposed map, as a plain gradient does.
    """
    inputs = list(inputs)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        output = function(*inputs)
    grads = tape.gradient(output, inputs, output_gradients=upstream)
    return [tf.zeros_like(x) if g is None else g for x, g in zip(inputs, grads)]


class Pass(Rule):
    """Identity backward: relevance passes through unchanged (activations)."""

    def backward(self, step, inputs, output, upstream, weights):
        return [upstream]


class GuidedReLU(Rule):
    """Guided backpropagation at a ReLU (Springenberg et al. 2015, arXiv:1412.6806).

    ``g_in = relu(g_out) * relu'(x)``: only positive gradients pass, and only
    where the forward input was positive.
    """

    def backward(self, step, inputs, output, upstream, weights):
        return vjp(step.op.forward, inputs, tf.nn.relu(upstream))


class DeconvReLU(Rule):
    """Deconvnet at a ReLU (Zeiler & Fergus 2014, arXiv:1311.2901): ``g_in = relu(g_out)``."""

    def backward(self, step, inputs, output, upstream, weights):
        return [tf.nn.relu(upstream)]


RELU_ACTIVATIONS = ("relu", "relu6")


def is_relu(step) -> bool:
    """Whether a step is a ReLU: fused, ``Activation``, ``ReLU()`` or ``keras.ops.relu``."""
    return step.op.kind == "activation" and step.op.activation in RELU_ACTIVATIONS
