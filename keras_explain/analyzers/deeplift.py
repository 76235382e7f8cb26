"""DeepLIFT family: DeepLIFT (Rescale rule) and DeepLiftShap.

:class:`DeepLift` (Shrikumar et al. 2017, "Learning Important Features Through
Propagating Activation Differences", arXiv:1704.02685) explains the difference
``f_t(x) − f_t(x')`` from a baseline ``x'``. The model runs once, through the
graph engine, on the stacked batch ``[x; x']``; every op's backward pass then
carries *multipliers* ``m = Δy / Δx`` instead of derivatives:

- element-wise activations (op kind ``"activation"``): the Rescale rule
  ``m = (f(x) − f(x')) / (x − x')``, and the ordinary derivative ``f'(x)``
  where ``|x − x'| < epsilon`` (Captum's ``eps``, default 1e-10);
- max pooling and ``Maximum`` (kind ``"max_pool"``): Captum's rule, which
  routes ``max(y, y') − y'`` to the input's maximum and ``y − max(y, y')`` to
  the baseline's, then divides by ``Δx`` (gradient where ``|Δx| < epsilon``);
- every other op (linear maps, BatchNormalization in inference, pooling sums,
  reshapes) passes the gradient: for a linear op the multiplier *is* the
  weight. Gates (``Multiply``), normalizations and softmaxes inside the network
  also pass the gradient, so summation-to-delta is then approximate.

The attribution is ``(x − x') ⊙ m``; it sums per sample to ``f_t(x) − f_t(x')``
(summation-to-delta) on networks of linear maps, activations and max pooling.
The rules are ``tf.custom_gradient`` closures made per call of an op, so a
layer used twice (a shared ``ReLU``) gets the multipliers of each call
(Captum's issue #1082 does not arise).

:class:`DeepLiftShap` averages DeepLIFT over a background set of baselines
(Captum's ``DeepLiftShap``). Captum's ``GradientShap`` is a wrapper around the
gradient: :class:`~keras_explain.analyzers.gradient_wrappers.GradientShap`.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from keras_explain import _batching, _validate
from keras_explain.analyzers.backprop import Backpropagation
from keras_explain.analyzers.registry import register
from keras_explain.lrp.rules import vjp


@register("deeplift")
class DeepLift(Backpropagation):
    """DeepLIFT with the Rescale rule (Shrikumar et al. 2017, arXiv:1704.02685).

    See :mod:`keras_explain.analyzers.deeplift` for the rules of each op kind.

    Args:
        model: A Functional or Sequential Keras model (float inputs, or
            integer token ids feeding an ``Embedding``).
        baseline: The reference input ``x'``: a scalar, an array shaped like
            one sample, or an array shaped like the batch (default 0); a list
            with one entry per input for a multi-input model. For token inputs:
            a token id (default 0, the padding id) or embeddings ``(T, D)`` or
            ``(B, T, D)``; the result is per token ``(B, T)`` (the attribution
            of the Embedding output summed over its last axis, 0 at masked
            positions), both halves of ``[x; x']`` run with ``x``'s mask.
        epsilon: Where ``|x − x'| < epsilon`` at a non-linearity's input, its multiplier
            is the ordinary derivative instead of ``Δy / Δx`` (default 1e-10,
            Captum's; the limit of ``Δy / Δx`` as ``Δx → 0``).
        multiply_by_inputs: Multiply the multipliers by ``Δ`` (default True,
            Captum's); False returns the multipliers ``m`` themselves.
        **kwargs: ``layer`` (Captum's ``LayerDeepLift``: attribute the layer's
            value, ``(a(x) − a(x')) ⊙ m``, shaped like it), ``attribute_to_layer_input``,
            ``output_layer``, ``output_index``, ``strip_softmax``,
            ``neuron_selection_mode``, ``verbose``.

    Returns:
        ``analyze(x, target)`` returns attributions shaped like x (like the
        layer's value with ``layer``) that sum per sample to ``f_t(x) − f_t(x')``
        (summation-to-delta; at a layer, when every path from the input to the
        output goes through it).

    Raises:
        TypeError: For a subclassed model (its non-linearities cannot be found).
        ValueError: For a negative ``epsilon``, a baseline of the wrong shape or
            a baseline token id outside the vocabulary.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((4,)),
        ...                           keras.layers.Dense(5, activation="relu"),
        ...                           keras.layers.Dense(3)])
        >>> kx.DeepLift(model, baseline=0.0).analyze(np.ones((2, 4), "float32")).shape
        (2, 4)
    """

    requires_graph = True
    #: The stacked batch [x; x'] doubles the rows of every pass.
    backward_memory_factor = 0.7
    #: A path integral of multipliers means nothing (PathIntegral refuses it).
    path_integrable = False

    renamed = {"eps": "epsilon"}

    def __init__(
        self,
        model,
        *,
        baseline: Any = 0.0,
        epsilon: float = 1e-10,
        multiply_by_inputs: bool = True,
        **kwargs: Any,
    ):
        super().__init__(model, **kwargs)
        self.epsilon = _validate.non_negative(epsilon, "epsilon")
        self.multiply_by_inputs = _validate.boolean(
            multiply_by_inputs, "multiply_by_inputs", type(self).__name__
        )
        self.baseline = self._checked_baselines(baseline)

    def _checked_baselines(self, baseline):
        specs = self._input_specs()
        single = not isinstance(baseline, list | tuple)
        baselines = [baseline] * len(specs) if single else list(baseline)
        if len(baselines) != len(specs):
            raise ValueError(
                f"{type(self).__name__}: baseline needs one entry per model input "
                f"({len(specs)}). Received {len(baselines)}."
            )
        baselines = self.checked_token_baselines(type(self).__name__, baselines)
        return [
            b if self.embedding_layer(i) is not None else _validate.baseline(b, spec)
            for i, (b, spec) in enumerate(zip(baselines, (tuple(s.shape[1:]) for s in specs)))
        ]

    def _check_batch(self, shapes, split):
        for base, shape in zip(self.baseline, self.batch_shapes(shapes)):
            _validate.batch_baseline(base, shape, split)

    # -- the rules --------------------------------------------------------------
    def hook(self, step, inputs):
        """Rescale at activations, Captum's rule at max pooling, the gradient elsewhere."""
        if step.op.kind == "activation":
            return _rescale(step.op.forward, inputs, self.epsilon)
        if step.op.kind == "max_pool":
            return _max_pool(step.op.forward, inputs, self.epsilon)
        return step.op.forward(*inputs)

    # -- the pass -----------------------------------------------------------------
    def multipliers(self, inputs, baselines, target, indices) -> tuple[list, list]:
        """Differences ``Δ`` and multipliers ``d(f_t(x) − f_t(x'))/dΔ``, one pass over ``[x; x']``.

        ``Δ`` is ``x − x'`` at the inputs, or ``a(x) − a(x')`` at ``layer=``'s
        value (Captum's ``LayerDeepLift``: the layer's values on the two halves).

        Args:
            inputs: One ``(B, ...)`` tensor per model input.
            baselines: One tensor per input, shaped like :meth:`embed` of the
                inputs (token inputs: embeddings ``(B, T, D)``).
            target: A parsed target; ``indices`` its per-row indices.

        Token inputs are differentiated at their Embedding output; both halves
        of the stacked batch run with the explained tokens' mask.
        """
        batch = tf.shape(inputs[0])[0]
        points = self.embed(inputs)
        stacked = [tf.concat([x, tf.cast(b, x.dtype)], 0) for x, b in zip(points, baselines)]
        model_inputs = [
            tf.concat([x, x], 0) if emb else values
            for x, values, emb in zip(inputs, stacked, self.embedded or [False] * len(inputs))
        ]
        at_layer = self.layer is not None
        with tf.GradientTape() as tape:
            tape.watch([value for value in stacked if value.dtype.is_floating])
            watch = (tape, set(self.source_keys)) if at_layer else ()
            with self.substituted(stacked):
                output, values = self.forward(model_inputs, self.hook, watch)
            scores = self.scores(output[:batch], target, indices)
        if at_layer:
            sources = [values[key] for key in self.source_keys]
            differences = [value[:batch] - value[batch:] for value in sources]
        else:
            sources = stacked
            differences = [x - tf.cast(b, x.dtype) for x, b in zip(points, baselines)]
        grads = tape.gradient(scores, sources)
        multipliers = [
            tf.zeros_like(d) if g is None else g[:batch] for d, g in zip(differences, grads)
        ]
        return differences, multipliers

    def deltas(self, inputs, baselines, target, indices) -> list[tf.Tensor]:
        """The attributions ``Δ ⊙ m`` of one batch (float32, before :meth:`finish`).

        ``m`` alone with ``multiply_by_inputs=False``. A token input's baseline is
        given as embeddings, or as token ids (embedded here).
        """
        baselines = [
            self._embedding_forward(i, b)
            if self.embedding_layer(i) is not None and b.dtype.is_integer
            else b
            for i, b in enumerate(baselines)
        ]
        differences, multipliers = self.multipliers(inputs, baselines, target, indices)
        if not self.multiply_by_inputs:
            return [tf.cast(m, tf.float32) for m in multipliers]
        return [tf.cast(d * m, tf.float32) for d, m in zip(differences, multipliers)]

    def attribute(self, inputs, target, indices):
        """DeepLIFT from the analyzer's baseline (wrappers call it on copies)."""
        return self.deltas(
            inputs, self.baseline_points(self.baseline, inputs, self.embed(inputs)), target, indices
        )


def _rescale(forward, inputs, eps):
    """An element-wise activation on ``[x; x']`` whose backward pass is the Rescale rule."""

    @tf.custom_gradient
    def apply(stacked):
        output = forward(stacked)

        def grad(upstream, variables=None):
            half = tf.shape(stacked)[0] // 2
            delta_in = stacked[:half] - stacked[half:]
            delta_out = tf.cast(output[:half] - output[half:], delta_in.dtype)
            small = tf.abs(delta_in) < eps
            ratio = delta_out / tf.where(small, tf.ones_like(delta_in), delta_in)
            ratio = tf.concat([ratio, ratio], 0)
            small = tf.concat([small, small], 0)
            derivative = vjp(forward, [stacked], upstream)[0]
            result = tf.where(small, derivative, tf.cast(upstream, ratio.dtype) * ratio)
            if variables:  # PReLU reads its slopes
                return result, [None] * len(variables)
            return result

        return output, grad

    return apply(*inputs)


def _max_pool(forward, inputs, eps):
    """Max pooling (or ``Maximum``) on ``[x; x']`` with Captum's DeepLIFT rule.

    With ``y = pool(x)``, ``y' = pool(x')`` and ``u = max(y, y')``, the
    difference ``Δy = (u − y') + (y − u)`` is split: ``u − y' ≥ 0`` goes to the
    input's maximum (the gradient of the pool at ``x``), ``y − u ≤ 0`` to the
    baseline's (the gradient at ``x'``); dividing by ``Δx`` gives multipliers,
    the gradient at ``x`` where ``|Δx| < eps``.
    """

    @tf.custom_gradient
    def apply(*stacked):
        output = forward(*stacked)

        def grad(upstream, variables=None):
            half = tf.shape(output)[0] // 2
            actual = [s[:half] for s in stacked]
            reference = [s[half:] for s in stacked]
            y, y_ref = output[:half], output[half:]
            top = tf.maximum(y, y_ref)
            g = upstream[:half]
            to_input = vjp(forward, actual, g * (top - y_ref))
            to_reference = vjp(forward, reference, g * (y - top))
            derivative = vjp(forward, list(stacked), upstream)
            result = []
            for x, x_ref, a, b, d in zip(actual, reference, to_input, to_reference, derivative):
                delta_in = x - x_ref
                small = tf.abs(delta_in) < eps
                ratio = (a + b) / tf.where(small, tf.ones_like(delta_in), delta_in)
                result.append(
                    tf.where(tf.concat([small, small], 0), d, tf.concat([ratio, ratio], 0))
                )
            result = result if len(result) > 1 else result[0]
            if variables:
                return result, [None] * len(variables)
            return result

        return output, grad

    return apply(*inputs)


@register("deeplift_shap")
class DeepLiftShap(DeepLift):
    """DeepLIFT averaged over a background set of baselines (Captum's ``DeepLiftShap``).

    ``(1/N) Σ_j DeepLift(x; x'_j)`` over the ``N`` rows of ``background``
    (Lundberg & Lee 2017, "A Unified Approach to Interpreting Model
    Predictions", arXiv:1705.07874); it sums per sample to
    ``f_t(x) − mean_j f_t(x'_j)``. The background rows run in passes within
    the memory budget (one ``tf.while_loop``), each pass stacking its copies of
    the batch with their baselines; the target is fixed on the input.

    Args:
        model: A Functional or Sequential Keras model with float inputs.
        background: Baselines shaped ``(N, *sample_shape)``; a list of such
            arrays (same ``N``) for a multi-input model.
        epsilon: As for :class:`DeepLift`.
        internal_batch_size: Rows per pass (default: from the memory budget).
        **kwargs: ``output_layer``, ``output_index``, ``strip_softmax``,
            ``neuron_selection_mode``, ``verbose``.

    Returns:
        ``analyze(x, target)`` returns attributions shaped like x.

    Raises:
        TypeError: For ``baseline=`` (pass ``background=``).
        ValueError: For an empty or misshapen background, as for :class:`DeepLift`.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((4,)),
        ...                           keras.layers.Dense(5, activation="relu"),
        ...                           keras.layers.Dense(3)])
        >>> background = np.random.default_rng(0).normal(size=(8, 4))
        >>> kx.DeepLiftShap(model, background=background).analyze(
        ...     np.ones((2, 4), "float32")).shape
        (2, 4)
    """

    def __init__(
        self,
        model,
        *,
        background: Any = None,
        epsilon: float = 1e-10,
        internal_batch_size: int | None = None,
        **kwargs: Any,
    ):
        if "baseline" in kwargs:
            raise TypeError(
                f"{type(self).__name__} averages over background=, an array of baselines "
                f"shaped (N, *sample shape). Received: baseline={kwargs['baseline']!r}; use "
                "kx.DeepLift for a single baseline."
            )
        super().__init__(model, epsilon=epsilon, **kwargs)
        self.internal_batch_size = _validate.internal_batch_size(internal_batch_size)
        self.background = _validate.background_set(
            type(self).__name__, background, self._input_specs()
        )

    def _check_batch(self, shapes, split):
        pass

    def explain_batch(self, inputs, target, indices, seed, params):
        """The mean of DeepLIFT over the background rows, in passes of copies."""
        target, indices, _ = self.fixed_target(inputs, target, indices)
        background = [tf.cast(tf.constant(b), x.dtype) for b, x in zip(self.background, inputs)]

        def make(start, size):
            # copies of the batch, then each copy's baseline row for every sample
            rows = [base[start : start + size][:, None] for base in background]
            shapes = [tf.concat([[size], tf.shape(x)], 0) for x in inputs]
            baselines = [
                _batching.copies(x, size)  # an input held constant is its own baseline
                if self.held_input(position)
                else tf.broadcast_to(row, shape)
                for position, (x, row, shape) in enumerate(zip(inputs, rows, shapes))
            ]
            return [_batching.copies(x, size) for x in inputs] + baselines, None

        def evaluate(flat, size):
            count = len(inputs)
            rows = _batching.repeat(indices, size)
            return self.deltas(flat[:count], flat[count:], target, rows)

        def accumulate(totals, values, aux, start, size):
            return [total + tf.reduce_sum(value, axis=0) for total, value in zip(totals, values)]

        count = int(self.background[0].shape[0])
        initial = [tf.zeros(())] * len(inputs)
        # the backward memory factor counts both halves of the stacked [x; x'] batch
        totals = self.run_copies(inputs, count, make, evaluate, accumulate, initial, backward=True)
        return self.finish([total / count for total in totals], inputs)
