"""Rules: how the gradient arriving at one op turns into the one leaving it.

A rule is a small object holding hyper-parameters only. The graph engine calls
``rule(step, inputs)`` in place of the op (a :class:`keras_explain.graph.Step`);
the rule computes the op's ordinary forward value (re-using the layer's weights
as tensors, never copies of the variables) and attaches its own backward pass
with ``tf.custom_gradient``. Subclasses implement :meth:`Rule.backward`.

In relevance analyzers, the "gradient" that flows backwards *is* the relevance:
the output receives ``R = one_hot(t) * logit_t`` and every rule maps the
relevance of its op's output to the relevance of its inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from keras import ops


class Rule:
    """Base class: run the op forward, replace its backward pass."""

    def __call__(self, step, inputs: Sequence[tf.Tensor]) -> tf.Tensor:
        """Run the op (see :class:`Rule`)."""
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
            # a float16 model's values arrive in float32 (relevance, their gradient, is
            # carried in float32 between ops): the op runs on them as in the model
            output = widened(forward(*step.as_in_model(tensors)))

            def grad(upstream, variables=None):
                wide = None if weights is None else tuple(widened(w) for w in weights)
                result = self.backward(
                    step, [widened(x) for x in tensors], output, widened(upstream), wide
                )
                result = [narrowed(r, x) for r, x in zip(result, tensors)]
                result = result if len(tensors) > 1 else result[0]
                if variables:  # the op read the layer's variables (a normalization's γ, β)
                    return result, [None] * len(variables)
                return result

            return output, grad

        return apply(*inputs)

    def backward(
        self, step, inputs: list[tf.Tensor], output: tf.Tensor, upstream: tf.Tensor, weights: Any
    ) -> list[tf.Tensor]:
        """Map the gradient (relevance) at the op's output to its inputs.

        Args:
            step: The :class:`~keras_explain.graph.Step` (``step.op`` holds the
                layer and its kind).
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


LOW_PRECISION = (tf.float16, tf.bfloat16)


def widened(value: tf.Tensor | None) -> tf.Tensor | None:
    """A float16 or bfloat16 tensor as float32; any other unchanged.

    Rules do their arithmetic (stabilizer, division, transposed map) in float32
    when a layer computes in float16 or bfloat16 (``mixed_float16``,
    ``mixed_bfloat16``): an ε of 1e-9 is 0 in float16, and a relevance divided by
    a small pre-activation overflows it. The relevance they return is cast back
    to the tensor's dtype.
    """
    if isinstance(value, list | tuple):  # the outputs of an op with several
        return type(value)(widened(item) for item in value)
    if value is None or value.dtype not in LOW_PRECISION:
        return value
    return tf.cast(value, tf.float32)


def narrowed(value: tf.Tensor | None, like: tf.Tensor) -> tf.Tensor | None:
    """``value`` in the dtype of the floating tensor ``like`` (the inverse of :func:`widened`)."""
    if value is None or value.dtype == like.dtype or not like.dtype.is_floating:
        return value
    return tf.cast(value, like.dtype)


def vjp(function, inputs: Sequence[tf.Tensor], upstream: tf.Tensor) -> list[tf.Tensor]:
    """Vector-Jacobian product of ``function`` at ``inputs`` with ``upstream``.

    Inside a ``tf.function`` the recomputed forward value is unused and pruned,
    so for linear maps this costs one transposed map, as a plain gradient does.
    There the product is taken symbolically (``tf.gradients``) from fresh copies of
    the inputs, so only the recomputed op is differentiated: a ``GradientTape`` opened
    inside a backward function keeps the whole traced graph alive after the analyzer
    is dropped (TensorFlow 2.21: an ``Add`` whose gradient returns the upstream tensor
    twice leaks a reference to it; ``tests/test_lifetime.py``).
    """
    inputs = list(inputs)
    if not tf.executing_eagerly():
        inputs = [tf.identity(x) for x in inputs]
        output = function(*inputs)
        upstream = tf.cast(upstream, output.dtype)  # a layer casting widened inputs
        grads = tf.gradients(output, inputs, grad_ys=upstream)
    else:
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            output = function(*inputs)
        upstream = tf.cast(upstream, output.dtype)
        grads = tape.gradient(output, inputs, output_gradients=upstream)
    return [tf.zeros_like(x) if g is None else g for x, g in zip(inputs, grads)]


class Pass(Rule):
    """Identity backward: relevance passes through unchanged (activations)."""

    def backward(self, step, inputs, output, upstream, weights):
        """See :meth:`Rule.backward`."""
        return [upstream]


class GuidedReLU(Rule):
    """Guided backpropagation at a ReLU (Springenberg et al. 2015, arXiv:1412.6806).

    ``g_in = relu(g_out) * relu'(x)``: only positive gradients pass, and only
    where the forward input was positive.
    """

    def backward(self, step, inputs, output, upstream, weights):
        """See :meth:`Rule.backward`."""
        return vjp(step.op.forward, inputs, tf.nn.relu(upstream))


class DeconvReLU(Rule):
    """Deconvnet at a ReLU (Zeiler & Fergus 2014, arXiv:1311.2901): ``g_in = relu(g_out)``."""

    def backward(self, step, inputs, output, upstream, weights):
        """See :meth:`Rule.backward`."""
        return [tf.nn.relu(upstream)]


RELU_ACTIVATIONS = ("relu", "relu6")


def is_relu(step) -> bool:
    """Whether a step is a ReLU: fused, ``Activation``, ``ReLU()`` or ``keras.ops.relu``."""
    return step.op.kind == "activation" and step.op.activation in RELU_ACTIVATIONS


# -- the relevance (LRP) family -------------------------------------------------
#
# Every LRP rule below is one parameterisation of a single generic rule
# (:class:`LinearRule`): for each *share* ``g`` (a denominator), with
# coefficient ``c_g``, terms ``(x_t, W_t)`` (modified inputs and weights) and
# a modified bias ``b_g``,
#
#     z_g   = sum_t apply(x_t, W_t) + b_g
#     R_in  = sum_g c_g * sum_t x_t * vjp(apply(., W_t), R_out / stab(z_g))
#
# ``vjp`` is the gradient trick: the transposed linear map applied to the
# relevance per unit of pre-activation. Rules differ only in their shares.


def stabilize(z: tf.Tensor, epsilon: float) -> tf.Tensor:
    """The LRP stabilizer ``stab(z) = z + epsilon * sign(z)`` with ``sign(0) = +1``."""
    # sign(sign(z) + 1/2) is sign(z) with sign(0) = +1, and cheaper than tf.where
    return z + epsilon * tf.sign(tf.sign(z) + 0.5)


def divide(relevance: tf.Tensor, z: tf.Tensor, epsilon: float, sign: int = 0) -> tf.Tensor:
    """``relevance / stab(z)``; with ``epsilon == 0`` exact zeros of ``z`` give 0.

    ``sign=+1`` (``-1``) says that ``z`` is a sum of non-negative (non-positive)
    terms, so the stabilizer is a plain ``+ε`` (``−ε``): where such a ``z`` is 0
    every term is 0, so the choice of sign there cannot change the result.
    """
    if epsilon == 0:
        return tf.math.divide_no_nan(relevance, z)
    if sign:
        return relevance / (z + sign * epsilon)
    return relevance / stabilize(z, epsilon)


def positive(value):
    """``max(value, 0)`` (None stays None)."""
    return None if value is None else tf.nn.relu(value)


def negative(value):
    """``min(value, 0)`` (None stays None)."""
    return None if value is None else tf.minimum(value, tf.zeros((), value.dtype))


class Share:
    """One denominator of the generic rule: ``coefficient * sum_t x_t * vjp(W_t, R / stab(z))``.

    Attributes:
        coefficient: Multiplies the share's relevance (``alpha``, ``-beta``, 1).
        terms: ``[(x_t, W_t), ...]``, the modified inputs and weights (terms
            whose input is None, e.g. ``x⁻`` of a non-negative input, are dropped).
        bias: The modified bias in the denominator, or None.
        is_output: The denominator is the op's own forward output ``x W + b``
            (LRP-0, LRP-ε), so it is reused instead of recomputed.
        sign: +1 (-1) when every term and the bias are known to be ``>= 0``
            (``<= 0``), else 0; see :func:`divide`.
    """

    __slots__ = ("coefficient", "terms", "bias", "is_output", "sign")

    def __init__(self, coefficient, terms, bias=None, is_output=False, sign=0):
        self.coefficient = coefficient
        self.terms = [(x, w) for x, w in terms if x is not None and w is not None]
        self.bias = bias
        self.is_output = is_output
        self.sign = sign

    def z(self, apply):
        """``sum_t apply(x_t, W_t) + bias``."""
        (x_0, w_0), *rest = self.terms
        z = apply(x_0, w_0, self.bias)
        for x_t, w_t in rest:
            z = z + apply(x_t, w_t, None)
        return z


class LinearRule(Rule):
    """The generic LRP rule for linear ops; subclasses only say what the shares are.

    ``R_in = sum_g c_g * sum_t x_t * vjp(apply(., W_t), R_out / stab(z_g))``
    (Montavon et al. 2019, "Layer-Wise Relevance Propagation: An Overview",
    doi:10.1007/978-3-030-28954-6_10, eq. 1 and the gradient trick of sec. 10.2.3).
    The denominators ``z_g`` are computed in the forward pass, once, and reused by
    the backward pass. Non-linear ops under a linear rule get :class:`Proportional`.

    Args:
        epsilon: The stabilizer added to every denominator (see :func:`stabilize`).
    """

    #: Whether the shares depend on the signs of the input (``x⁺``/``x⁻``): then
    #: inputs known to be non-negative (``Step.nonnegative``) take a cheaper path
    #: without the ``x⁻`` terms.
    splits_signs = False

    def __init__(self, epsilon: float = 1e-7):
        self.epsilon = epsilon

    def shares(self, x, kernel, bias, nonnegative: bool) -> list[Share]:
        """The rule's parameterisation at one linear op.

        Args:
            x: The op's input (in the compute dtype).
            kernel: The layer's kernel as a tensor.
            bias: The layer's bias tensor, or None.
            nonnegative: Whether ``x >= 0`` is known, so that terms in ``x⁻``
                vanish and can be left out.

        Returns:
            The list of shares.
        """
        raise NotImplementedError

    def forward(self, shares: list[Share], x, kernel, bias, apply):
        """The op's output and the shares' denominators (None where ``is_output``).

        The default evaluates the layer's own map once and every share that is not
        the output; rules whose shares partition ``x W + b`` override it to build the
        output from the shares.
        """
        output = apply(x, kernel, bias)
        return output, [
            None if share.is_output or not share.terms else share.z(apply) for share in shares
        ]

    def __call__(self, step, inputs):
        """Run the op (see :class:`Rule`)."""
        op = step.op
        if op.linear is None:
            return Proportional(self.epsilon)(step, inputs)
        kernel, bias = op.linear.weights()
        apply = op.linear.apply
        dtype = op.layer.compute_dtype
        # inputs known to be >= 0 (after a ReLU, or a model input whose batch is >= 0:
        # see Step.nonnegative) leave out the terms in x⁻, which are zero there
        nonnegative = step.nonnegative

        @tf.custom_gradient
        def run(x_in):
            x = tf.cast(x_in, dtype)
            shares = self.shares(x, kernel, bias, nonnegative)
            output, zs = self.forward(shares, x, kernel, bias, apply)
            zs = [output if z is None else z for z in zs]

            def grad(upstream):
                relevance = self.relevance(shares, zs, widened(upstream), apply)
                if relevance is None:
                    return tf.zeros_like(x_in)
                return tf.cast(relevance, x_in.dtype)

            return widened(output), grad  # float32 out of a float16 op (see Rule)

        return run(inputs[0])

    def relevance(self, shares: list[Share], zs, upstream, apply) -> tf.Tensor | None:
        """``R_in = sum_g c_g sum_t x_t * vjp(apply(., W_t), R_out / stab(z_g))`` (or None)."""
        grads: dict[int, list] = {}  # terms with the same input are multiplied once
        for share, z in zip(shares, zs):
            if not share.terms or share.coefficient == 0:
                continue
            scaled = divide(upstream, widened(z), self.epsilon, share.sign)
            if share.coefficient != 1:
                scaled = share.coefficient * scaled
            for x_t, w_t in share.terms:
                entry = grads.setdefault(id(x_t), [widened(x_t), None])
                w_t = widened(w_t)
                (grad,) = vjp(lambda v, w_t=w_t: apply(v, w_t, None), [entry[0]], scaled)
                entry[1] = grad if entry[1] is None else entry[1] + grad
        relevance = None
        for x_t, grad in grads.values():
            term = x_t * grad
            relevance = term if relevance is None else relevance + term
        return relevance

    def backward(self, step, inputs, output, upstream, weights):
        """See :meth:`Rule.backward`."""
        raise NotImplementedError("LinearRule runs its own custom gradient in __call__.")


class Z(LinearRule):
    """LRP-0 (Bach et al. 2015, doi:10.1371/journal.pone.0130140).

    ``R_i = sum_j x_i w_ij / z_j * R_j`` with ``z_j = sum_i x_i w_ij + b_j``; only
    exact zeros of ``z`` are guarded (they pass no relevance).

    Example:
        >>> from keras_explain import rules
        >>> rules.Z()
        Z()
    """

    def __init__(self):
        super().__init__(epsilon=0.0)

    def shares(self, x, kernel, bias, nonnegative):
        """See :meth:`LinearRule.shares`."""
        return [Share(1, [(x, kernel)], is_output=True)]

    def __repr__(self) -> str:
        return "Z()"


class Epsilon(LinearRule):
    """LRP-ε (Bach et al. 2015, doi:10.1371/journal.pone.0130140).

    ``R_i = sum_j x_i w_ij / stab(z_j) * R_j`` with ``z_j = sum_i x_i w_ij + b_j``
    and ``stab(z) = z + ε sign(z)``. Reuses the forward output as ``z``.

    Args:
        epsilon: The stabilizer ε (> 0); default 1e-7.

    Example:
        >>> from keras_explain import rules
        >>> rules.Epsilon(0.1)
        Epsilon(epsilon=0.1)
    """

    def __init__(self, epsilon: float = 1e-7):
        if not epsilon > 0:
            raise ValueError(
                f"Epsilon needs epsilon > 0 (use rules.Z() for 0). Received: epsilon={epsilon!r}."
            )
        super().__init__(epsilon)

    def shares(self, x, kernel, bias, nonnegative):
        """See :meth:`LinearRule.shares`."""
        return [Share(1, [(x, kernel)], is_output=True)]


class AlphaBeta(LinearRule):
    """LRP-αβ (Bach et al. 2015, doi:10.1371/journal.pone.0130140), α − β = 1.

    ``R_i = α R⁺_i − β R⁻_i``. R⁺ redistributes over the positive contributions
    ``(x⁺W⁺, x⁻W⁻)`` with denominator ``Σx⁺W⁺ + Σx⁻W⁻ + b⁺``; R⁻ over the negative
    ones ``(x⁺W⁻, x⁻W⁺)`` with denominator ``Σx⁺W⁻ + Σx⁻W⁺ + b⁻``. The bias is an
    extra input neuron: each part's denominator holds only the bias part of its own
    sign (iNNvestigate 2.1.2 puts the whole bias in both, which breaks conservation).

    Args:
        alpha: Weight of the positive part (default 1).
        beta: Weight of the negative part (default ``alpha - 1``).
        bias: Whether the bias takes part (False: the ``_IB`` variants).
        epsilon: Stabilizer of the denominators.

    Raises:
        ValueError: If ``alpha - beta != 1`` or either is negative.

    Example:
        >>> from keras_explain import rules
        >>> rules.AlphaBeta(2, 1)
        AlphaBeta(alpha=2, beta=1, bias=True, epsilon=1e-07)
    """

    def __init__(
        self,
        alpha: float = 1.0,
        beta: float | None = None,
        bias: bool = True,
        epsilon: float = 1e-7,
    ):
        beta = alpha - 1 if beta is None else beta
        if alpha < 0 or beta < 0 or abs(alpha - beta - 1) > 1e-9:
            raise ValueError(
                "AlphaBeta needs alpha >= 1, beta >= 0 and alpha - beta = 1 (conservation). "
                f"Received: alpha={alpha!r}, beta={beta!r}."
            )
        self.alpha = alpha
        self.beta = beta
        self.bias = bias
        super().__init__(epsilon)

    splits_signs = True

    def shares(self, x, kernel, bias, nonnegative):
        """See :meth:`LinearRule.shares`."""
        w_pos, w_neg = positive(kernel), negative(kernel)
        x_pos = x if nonnegative else positive(x)
        x_neg = None if nonnegative else negative(x)
        bias = bias if self.bias else None
        return [
            Share(self.alpha, [(x_pos, w_pos), (x_neg, w_neg)], positive(bias), sign=1),
            Share(-self.beta, [(x_pos, w_neg), (x_neg, w_pos)], negative(bias), sign=-1),
        ]

    def forward(self, shares, x, kernel, bias, apply):
        """See :meth:`LinearRule.forward`."""
        if not self.beta:  # the negative share is not needed: the layer's own output is
            output = apply(x, kernel, bias)
            return output, [shares[0].z(apply), output]
        # The two shares partition x W (+ b): the output is their sum, so the layer's
        # own map is not evaluated a third time (equal to it up to float rounding).
        zs = [share.z(apply) for share in shares]
        output = zs[0] + zs[1]
        if bias is not None and not self.bias:
            # the bias left out of the shares, broadcast like the output (one sample)
            output = output + _bias_map(apply, x, kernel, bias)
        return output, zs


class ZPlus(AlphaBeta):
    """LRP-z⁺ = AlphaBeta(1, 0) without bias.

    Montavon et al. 2017, doi:10.1016/j.patcog.2016.11.008.

    ``R_i = Σ_j (x⁺_i w⁺_ij + x⁻_i w⁻_ij) / (Σ_i x⁺_i w⁺_ij + x⁻_i w⁻_ij) R_j``.

    Args:
        epsilon: Stabilizer of the denominators.

    Example:
        >>> from keras_explain import rules
        >>> rules.ZPlus()
        ZPlus(epsilon=1e-07)
    """

    def __init__(self, epsilon: float = 1e-7):
        super().__init__(1.0, 0.0, bias=False, epsilon=epsilon)

    def __repr__(self) -> str:
        return f"ZPlus(epsilon={self.epsilon!r})"


class ZPlusFast(LinearRule):
    """LRP-z⁺ for non-negative inputs: ``W⁺`` only, no bias (Montavon et al. 2017).

    ``R_i = Σ_j x_i w⁺_ij / Σ_i x_i w⁺_ij R_j``; assumes ``x ≥ 0`` (after a ReLU).

    Example:
        >>> from keras_explain import rules
        >>> rules.ZPlusFast()
        ZPlusFast(epsilon=1e-07)
    """

    def shares(self, x, kernel, bias, nonnegative):
        """See :meth:`LinearRule.shares`."""
        return [Share(1, [(x, positive(kernel))])]


class Gamma(LinearRule):
    """LRP-γ (Montavon et al. 2019, doi:10.1007/978-3-030-28954-6_10, eq. 3).

    ``R_i = Σ_j x_i (w_ij + γ w⁺_ij) / Σ_i (x_i (w_ij + γ w⁺_ij) + b_j + γ b⁺_j) R_j``.
    The denominator reuses the forward output: ``z + γ (x W⁺ + b⁺)``.

    Args:
        gamma: How much positive contributions are favoured (default 0.25).
        epsilon: Stabilizer of the denominator.

    Example:
        >>> from keras_explain import rules
        >>> rules.Gamma(0.25)
        Gamma(gamma=0.25, epsilon=1e-07)
    """

    def __init__(self, gamma: float = 0.25, epsilon: float = 1e-7):
        if gamma < 0:
            raise ValueError(f"Gamma needs gamma >= 0. Received: gamma={gamma!r}.")
        self.gamma = gamma
        super().__init__(epsilon)

    def shares(self, x, kernel, bias, nonnegative):
        """See :meth:`LinearRule.shares`."""
        bias = None if bias is None else bias + self.gamma * positive(bias)
        return [Share(1, [(x, kernel + self.gamma * positive(kernel))], bias)]


class ZBox(LinearRule):
    """LRP-z^B for the first layer on bounded inputs.

    Montavon et al. 2017, doi:10.1016/j.patcog.2016.11.008.

    ``R_i = Σ_j (x_i w_ij − l_i w⁺_ij − h_i w⁻_ij) / z_j R_j`` with
    ``z_j = Σ_i x_i w_ij − l_i w⁺_ij − h_i w⁻_ij`` (no bias), ``l ≤ x ≤ h``.

    Args:
        low: Lower bound of the input (scalar or array broadcastable to x).
        high: Upper bound of the input.
        epsilon: Stabilizer of the denominator.

    Example:
        >>> from keras_explain import rules
        >>> rules.ZBox(0.0, 1.0)
        ZBox(low=0.0, high=1.0, epsilon=1e-07)
    """

    def __init__(self, low: Any = 0.0, high: Any = 1.0, epsilon: float = 1e-7):
        self.low = low
        self.high = high
        super().__init__(epsilon)

    def shares(self, x, kernel, bias, nonnegative):
        """See :meth:`LinearRule.shares`."""
        low = tf.broadcast_to(tf.cast(self.low, x.dtype), tf.shape(x))
        high = tf.broadcast_to(tf.cast(self.high, x.dtype), tf.shape(x))
        return [Share(1, [(x, kernel), (low, -positive(kernel)), (high, -negative(kernel))])]

    def forward(self, shares, x, kernel, bias, apply):
        """``x W`` once; the bounds' terms on one sample when they are the same for all."""
        (_, _), (low, w_low), (high, w_high) = shares[0].terms
        xw = apply(x, kernel, None)
        if not any(_per_sample(bound, x) for bound in (self.low, self.high)):
            low, high = low[:1], high[:1]
        z = xw + apply(low, w_low, None) + apply(high, w_high, None)
        return xw + _bias_map(apply, x, kernel, bias), [z]


def _per_sample(bound, x) -> bool:
    """Whether a bound has its own value per sample (a leading batch axis > 1)."""
    shape = tuple(getattr(bound, "shape", None) or np.shape(bound))
    return len(shape) == len(x.shape) and shape[0] not in (1,)


def _bias_map(apply, x, kernel, bias):
    """The bias broadcast like the op's output (for one sample), or 0."""
    if bias is None:
        return 0.0
    return apply(tf.zeros_like(x[:1]), tf.zeros_like(kernel), bias)


def _ones(x):
    """Ones shaped like ``x``.

    Not ``tf.ones_like``: inside a ``tf.while_loop`` body (a recurrent layer's
    program), the vector-Jacobian product at a ``tf.ones_like`` tensor comes back
    None in the loop's gradient (TF 2.21), and Flat and WSquare would give zeros.
    """
    return tf.ones(tf.shape(x), x.dtype)


class WSquare(LinearRule):
    """LRP-w² (Montavon et al. 2017, doi:10.1016/j.patcog.2016.11.008): input-independent.

    ``R_i = Σ_j w_ij² / Σ_i w_ij² R_j`` (no bias).

    Example:
        >>> from keras_explain import rules
        >>> rules.WSquare()
        WSquare(epsilon=1e-07)
    """

    def shares(self, x, kernel, bias, nonnegative):
        """See :meth:`LinearRule.shares`."""
        return [Share(1, [(_ones(x), tf.square(kernel))], sign=1)]


class Flat(LinearRule):
    """LRP-flat (Lapuschkin et al. 2019, doi:10.1038/s41467-019-08987-4): all weights 1, no bias.

    ``R_i = Σ_j 1 / Σ_i 1 R_j`` over the receptive field of ``j``.

    Example:
        >>> from keras_explain import rules
        >>> rules.Flat()
        Flat(epsilon=1e-07)
    """

    def shares(self, x, kernel, bias, nonnegative):
        """See :meth:`LinearRule.shares`."""
        return [Share(1, [(_ones(x), tf.ones_like(kernel))], sign=1)]


class Proportional(Rule):
    """The stabilized z-rule for fixed bias-free sums: ``Add``, average pooling.

    ``R_k = x_k * vjp(f, R / stab(f(x)))_k``: each input receives relevance in
    proportion to its contribution (Zennit's ``Norm``; Bach et al. 2015).

    Args:
        epsilon: Stabilizer of the denominator.

    Example:
        >>> from keras_explain import rules
        >>> rules.Proportional()
        Proportional(epsilon=1e-07)
    """

    def __init__(self, epsilon: float = 1e-7):
        self.epsilon = epsilon

    def backward(self, step, inputs, output, upstream, weights):
        """See :meth:`Rule.backward`."""
        scaled = divide(tf.cast(upstream, output.dtype), output, self.epsilon)
        grads = vjp(step.op.forward, inputs, scaled)
        return [x * tf.cast(g, x.dtype) for x, g in zip(inputs, grads)]


class Gradient(Rule):
    """Plain gradient: the op runs unchanged (max pooling, reshapes, bookkeeping).

    Example:
        >>> from keras_explain import rules
        >>> rules.Gradient()
        Gradient()
    """

    def __call__(self, step, inputs):
        """Run the op (see :class:`Rule`): plain autodiff.

        In a float16 or bfloat16 layer of one output, the op's gradient at
        float32 inputs (relevance stays float32).
        """
        if not step.low_precision or len(step.outputs) != 1:
            return step.op.forward(*step.as_in_model(inputs))
        return super().__call__(step, inputs)

    def backward(self, step, inputs, output, upstream, weights):
        """See :meth:`Rule.backward`."""
        return vjp(step.op.forward, inputs, upstream)


# -- products and normalizations -------------------------------------------------------
class SignalTakesAll(Rule):
    """Gates get no relevance: the signal input of a product takes all of it.

    For ``y = signal * gate`` (a squeeze-and-excitation ``Multiply``, an LSTM
    gate), the gate only decides how much of the signal passes, so the
    relevance of ``y`` goes to the signal unchanged and the gate gets none
    (Arras et al. 2017, "Explaining Recurrent Neural Network Predictions in
    Sentiment Analysis", arXiv:1706.07206). Which inputs are gates is read from
    ``step.gates`` (set by :func:`keras_explain.lrp.canonizers.canonize`); a
    product without exactly one non-gate input falls back to
    :class:`ProportionalSplit`.

    Args:
        epsilon: Stabilizer of the fallback.

    Example:
        >>> from keras_explain import rules
        >>> rules.SignalTakesAll()
        SignalTakesAll(epsilon=1e-07)
    """

    def __init__(self, epsilon: float = 1e-7):
        self.epsilon = epsilon

    def backward(self, step, inputs, output, upstream, weights):
        """See :meth:`Rule.backward`."""
        signals = [i for i in range(len(inputs)) if i not in step.gates]
        if len(signals) != 1:
            return ProportionalSplit(self.epsilon).backward(step, inputs, output, upstream, weights)
        upstream = tf.cast(upstream, output.dtype)
        result = []
        for index, x in enumerate(inputs):
            if index == signals[0]:
                result.append(tf.cast(_unbroadcast(upstream, x), x.dtype))
            else:
                result.append(tf.zeros_like(x))
        return result


class ProportionalSplit(Rule):
    """A product's relevance split between its factors in proportion to their values.

    ``R_k = x_k / stab(sum_i x_i) * R`` for ``y = prod_i x_i`` (the "LRP-prop"
    rule of Arras et al. 2019, "Evaluating Recurrent Neural Network
    Explanations", arXiv:1904.11829); the factors' relevances sum to ``R``.
    Use it for a ``Multiply`` layer instead of :class:`SignalTakesAll`
    through a composite entry ``("multiply", rules.ProportionalSplit())``.

    Args:
        epsilon: Stabilizer of the denominator.

    Example:
        >>> from keras_explain import rules
        >>> rules.ProportionalSplit()
        ProportionalSplit(epsilon=1e-07)
    """

    def __init__(self, epsilon: float = 1e-7):
        self.epsilon = epsilon

    def backward(self, step, inputs, output, upstream, weights):
        """See :meth:`Rule.backward`."""
        upstream = tf.cast(upstream, output.dtype)
        full = [tf.broadcast_to(tf.cast(x, output.dtype), tf.shape(output)) for x in inputs]
        scaled = divide(upstream, tf.add_n(full), self.epsilon)
        return [tf.cast(_unbroadcast(f * scaled, x), x.dtype) for f, x in zip(full, inputs)]


class ConstantScale(Rule):
    """The LN-rule: a normalization's scale held constant (Ali et al. 2022).

    LayerNormalization computes ``y = γ (x − μ(x)) / σ(x) + β``. Holding
    ``1 / σ(x)`` constant makes ``x ↦ y − β`` a linear map ``L`` (the op's
    ``linearized`` view), and relevance is redistributed through it by the
    z-rule: ``R_in = x * vjp(L, R / stab(y))``. Relevance is conserved up to
    the share of the bias ``β`` (Ali et al., "XAI for Transformers: Better
    Explanations through Conservative Propagation", ICML 2022,
    arXiv:2202.07304).

    Args:
        epsilon: Stabilizer of the denominator.

    Example:
        >>> from keras_explain import rules
        >>> rules.ConstantScale()
        ConstantScale(epsilon=1e-07)
    """

    def __init__(self, epsilon: float = 1e-7):
        self.epsilon = epsilon

    def backward(self, step, inputs, output, upstream, weights):
        """See :meth:`Rule.backward`."""
        if step.op.linearized is None:
            raise ValueError(
                f"ConstantScale needs a normalization op with a linearized view; op "
                f"{step.op.name!r} of kind {step.op.kind!r} has none."
            )
        x = tf.cast(inputs[0], tf.float32)
        scaled = divide(tf.cast(upstream, tf.float32), tf.cast(output, tf.float32), self.epsilon)
        (grad,) = vjp(step.op.linearized, [x], scaled)
        return [tf.cast(x * grad, inputs[0].dtype)]


class Bilinear(Rule):
    """The uniform rule: a product of computed tensors splits its relevance evenly.

    For ``y = f(a, b)`` bilinear (``query · key``, ``attention · value``, an
    element-wise product such as SwiGLU's ``silu(x W) * (x V)``), each factor
    that is not a gate takes an equal share, redistributed in proportion to its
    contributions: ``R_k = x_k * vjp_k(f, R / stab(f(x))) / n`` for the ``n``
    factors that take part (AttnLRP's uniform rule, Achtibat et al., "AttnLRP:
    Attention-Aware Layer-Wise Relevance Propagation for Transformers", ICML 2024,
    arXiv:2402.05602, eq. 7). The factors' relevances sum to ``R``.

    Factors named in ``step.gates`` (the attention weights of a
    ``MultiHeadAttention``, a normalization's ``1 / σ`` factor, a sigmoid gate)
    take none when ``gates=True``: the other factor takes all of it, and a
    ``MultiHeadAttention`` then holds its attention weights constant (CP-LRP, Ali
    et al., ICML 2022, arXiv:2202.07304). ``gates=False`` lets every factor take
    part, as AttnLRP does for attention weights.

    Args:
        epsilon: Stabilizer of the denominator.
        gates: Whether factors marked as gates are left out.

    Example:
        >>> from keras_explain import rules
        >>> rules.Bilinear(gates=False)
        Bilinear(epsilon=1e-07, gates=False)
    """

    def __init__(self, epsilon: float = 1e-7, gates: bool = True):
        self.epsilon = epsilon
        self.gates = gates

    def backward(self, step, inputs, output, upstream, weights):
        """See :meth:`Rule.backward`; a gate gets None (nothing flows back into it)."""
        taking = [
            index
            for index in range(len(inputs))
            if not (self.gates and index in step.gates and len(step.gates) < len(inputs))
        ]
        scaled = divide(tf.cast(upstream, output.dtype), output, self.epsilon)
        scaled = scaled / len(taking)

        def of_factors(*factors):
            values = list(inputs)
            for index, factor in zip(taking, factors):
                values[index] = factor
            return step.op.forward(*values)

        grads = vjp(of_factors, [inputs[index] for index in taking], scaled)
        result: list = [None] * len(inputs)
        for index, grad in zip(taking, grads):
            result[index] = inputs[index] * tf.cast(grad, inputs[index].dtype)
        return result


class Softmax(Rule):
    """AttnLRP's softmax rule: ``R_in = x * (R_out − s * Σ R_out)``.

    The first-order Taylor decomposition of ``s = softmax(x)`` at ``x`` with the
    bias absorbing the rest (Achtibat et al., ICML 2024, arXiv:2402.05602,
    Proposition 3.1); the sum runs along the softmax's axis. With relevance
    ``R_out = s * g`` this is ``x * J^T g``: gradient × input through the
    softmax, which is how LXT computes it. Inputs besides the first (a mask)
    get none.

    Example:
        >>> from keras_explain import rules
        >>> rules.Softmax()
        Softmax()
    """

    def backward(self, step, inputs, output, upstream, weights):
        """See :meth:`Rule.backward`."""
        x = inputs[0]
        axis = softmax_axis(step.op)
        s = tf.cast(output, tf.float32)
        relevance = tf.cast(upstream, tf.float32)
        total = tf.reduce_sum(relevance, axis=axis, keepdims=True)
        result = tf.cast(x, tf.float32) * (relevance - s * total)
        return [tf.cast(result, x.dtype)] + [None] * (len(inputs) - 1)

    def __repr__(self) -> str:
        return "Softmax()"


def softmax_axis(op) -> int | tuple:
    """The axis of a softmax op: a ``Softmax`` layer's or operation's ``axis``, else -1."""
    if type(op.layer).__name__ == "Softmax":
        axis = op.layer.axis
        return tuple(axis) if isinstance(axis, list) else axis
    return -1


def _unbroadcast(value: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    """Sum ``value`` over the axes along which ``like`` was broadcast to it."""
    if value.shape.rank == like.shape.rank and value.shape == like.shape:
        return value
    shape = tf.shape(like)
    axes = [
        axis
        for axis in range(value.shape.rank)
        if axis >= value.shape.rank - like.shape.rank
        and like.shape[axis - (value.shape.rank - like.shape.rank)] == 1
        and value.shape[axis] != 1
    ] + list(range(value.shape.rank - like.shape.rank))
    return tf.reshape(tf.reduce_sum(value, axis=axes, keepdims=True), shape)
