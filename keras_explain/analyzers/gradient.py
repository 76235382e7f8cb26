"""Gradient family: saliency, input x gradient, guided backprop, deconvnet.

:class:`Backpropagation` is the shared engine of every method that pulls a
(possibly modified) gradient back from the explained output: it handles
``at_layer``, integer (embedding) inputs and the per-op rule hook. The
relevance family subclasses it too, with relevance seeded at the output.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_explain import rules
from keras_explain.analyzers.base import Analyzer
from keras_explain.analyzers.registry import register

POSTPROCESS = (None, "abs", "square")


class Backpropagation(Analyzer):
    """Base of analyzers that propagate a signal back from the explained output.

    Args:
        model: A Keras model.
        at_layer: Return attributions of this layer's output (name or object)
            instead of the input's (layer attribution); the result then has
            that layer output's shape.
        **kwargs: See :class:`~keras_explain.analyzers.base.Analyzer`.
    """

    #: Seed the output with ``d score / d output * output`` (relevance)
    #: instead of ``d score / d output`` (gradient).
    relevance_seed = False

    def __init__(self, model, *, at_layer: str | keras.Layer | None = None, **kwargs):
        super().__init__(model, **kwargs)
        self.at_layer = None
        self.returns_maps = False
        if at_layer is not None:
            if self.plan is None:
                raise ValueError(
                    "at_layer needs a Functional or Sequential model whose layers can "
                    f"be walked. Received: at_layer={at_layer!r} for "
                    f"{type(self.model).__name__}."
                )
            self.at_layer = self.plan.find_layer(at_layer, "at_layer")
            self.returns_maps = True
        self._sources, self._embedded = self._source_keys()

    def hook(self, step, inputs):
        """The engine hook; the default runs every op unchanged."""
        return step.op.forward(*inputs)

    def _source_keys(self):
        """Keys of the values attributed, and which of them are embeddings."""
        if self.plan is None:
            return None, []
        if self.at_layer is not None:
            return [self.plan.output_key_of(self.at_layer)], [False]
        keys, embedded = [], []
        for position, (key, spec) in enumerate(zip(self.plan.input_keys, self.plan.input_specs)):
            if tf.as_dtype(spec.dtype).is_integer:
                consumers = [s for s in self.plan.steps if key in s.inputs]
                if not consumers or any(s.op.kind != "embedding" for s in consumers):
                    names = [s.op.name for s in consumers]
                    raise ValueError(
                        f"Input {position} of model {self.model.name!r} is an integer "
                        f"input consumed by {names}, not by an Embedding layer, so it "
                        "has no gradient. Feed floats, or explain at_layer=<a float layer>."
                    )
                keys.append(consumers[0].outputs[0])
                embedded.append(True)
            else:
                keys.append(key)
                embedded.append(False)
        return keys, embedded

    def backward(self, inputs: list[tf.Tensor], target, indices):
        """Pull the signal back to the sources.

        Returns:
            ``(gradients, source_values)``, one per source.
        """
        with tf.GradientTape(persistent=False) as tape:
            if self._sources is None:
                tape.watch(inputs)
                output, _ = self.forward(inputs)
                sources = inputs
            else:
                floats = [x for x in inputs if x.dtype.is_floating]
                tape.watch(floats)
                output, values = self.forward(inputs, self.hook, watch=(tape, set(self._sources)))
                sources = [values.get(key, None) for key in self._sources]
                sources = [inputs[i] if s is None else s for i, s in enumerate(sources)]
        with tf.GradientTape() as seed_tape:
            seed_tape.watch(output)
            scores = self.scores(output, target, indices)
        seed = seed_tape.gradient(scores, output)
        if self.relevance_seed:
            seed = seed * output
        grads = tape.gradient(output, sources, output_gradients=seed)
        grads = [tf.zeros_like(s) if g is None else g for g, s in zip(grads, sources)]
        return grads, sources

    def attribution(self, grads, sources):
        """Turn gradients at the sources into attributions (default: identity)."""
        return grads

    def _explain(self, inputs, target, indices, seed):
        grads, sources = self.backward(inputs, target, indices)
        return self.finish(self.attribution(grads, sources))

    def finish(self, attributions):
        """Sum embedding attributions over the embedding axis; cast to float32."""
        embedded = self._embedded or [False] * len(attributions)
        return [
            tf.cast(tf.reduce_sum(a, axis=-1) if emb else a, tf.float32)
            for a, emb in zip(attributions, embedded)
        ]


@register("gradient")
class Gradient(Backpropagation):
    """Saliency: the gradient of the target score w.r.t. the input.

    Simonyan et al. 2014, "Deep Inside Convolutional Networks", arXiv:1312.6034.

    Args:
        model: A Keras model (subclassed models work too).
        postprocess: None, ``"abs"`` or ``"square"``, applied to the gradient.
        **kwargs: ``at_layer``, ``output_layer``, ``output_index``,
            ``strip_softmax``, ``neuron_selection_mode``.

    Returns:
        ``analyze(x)`` returns the (post-processed) gradient, shaped like x.

    Raises:
        ValueError: For an unknown ``postprocess``.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> kx.Gradient(model).analyze(np.ones((2, 4), "float32")).shape
        (2, 4)
    """

    def __init__(self, model, *, postprocess: str | None = None, **kwargs):
        if postprocess not in POSTPROCESS:
            raise ValueError(
                f"Unknown postprocess. Received: postprocess={postprocess!r}. "
                f"Expected one of {POSTPROCESS}."
            )
        self.postprocess = postprocess
        super().__init__(model, **kwargs)

    def attribution(self, grads, sources):
        """Apply ``postprocess`` to the gradient."""
        if self.postprocess == "abs":
            return [tf.abs(g) for g in grads]
        if self.postprocess == "square":
            return [tf.square(g) for g in grads]
        return grads


@register("input_t_gradient")
class InputTimesGradient(Backpropagation):
    """Input times gradient (Shrikumar et al. 2016, arXiv:1605.01713).

    Args:
        model: A Keras model.
        **kwargs: See :class:`Gradient`.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> kx.InputTimesGradient(model).analyze(np.ones((2, 4), "float32")).shape
        (2, 4)
    """

    def attribution(self, grads, sources):
        """Gradient times the source values."""
        return [g * tf.cast(s, g.dtype) for g, s in zip(grads, sources)]


class _ReLURuleAnalyzer(Backpropagation):
    requires_graph = True
    relu_rule: rules.Rule

    def hook(self, step, inputs):
        if rules.is_relu(step):
            return self.relu_rule(step, inputs)
        return step.op.forward(*inputs)


@register("guided_backprop")
class GuidedBackprop(_ReLURuleAnalyzer):
    """Guided backpropagation (Springenberg et al. 2015, arXiv:1412.6806).

    At every ReLU (fused ``activation="relu"``, ``Activation("relu")``,
    ``ReLU()``, ``keras.ops.relu``, inside nested models too) the backward pass
    is ``g_in = relu(g_out) * 1[x > 0]``.

    Args:
        model: A Functional or Sequential Keras model.
        **kwargs: See :class:`Gradient`.

    Raises:
        TypeError: For a subclassed model (its ReLUs cannot be found).

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((4,)),
        ...                           keras.layers.Dense(5, activation="relu"),
        ...                           keras.layers.Dense(3)])
        >>> kx.GuidedBackprop(model).analyze(np.ones((2, 4), "float32")).shape
        (2, 4)
    """

    relu_rule = rules.GuidedReLU()


@register("deconvnet")
class Deconvnet(_ReLURuleAnalyzer):
    """Deconvnet (Zeiler & Fergus 2014, arXiv:1311.2901): ``g_in = relu(g_out)`` at every ReLU.

    Args:
        model: A Functional or Sequential Keras model.
        **kwargs: See :class:`Gradient`.

    Raises:
        TypeError: For a subclassed model.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((4,)),
        ...                           keras.layers.Dense(5, activation="relu"),
        ...                           keras.layers.Dense(3)])
        >>> kx.Deconvnet(model).analyze(np.ones((2, 4), "float32")).shape
        (2, 4)
    """

    relu_rule = rules.DeconvReLU()
