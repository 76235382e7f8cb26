"""The engine of every method that pulls a (possibly modified) signal back from the output.

:class:`Backpropagation` runs the model through the graph engine with a per-op
hook (where rules modify the backward pass), seeds the explained output with
the gradient of the target score (or, for relevance methods, with the score
itself) and pulls the signal back to the *sources*: the model inputs, the
outputs of the ``Embedding`` layers behind integer inputs, or the output of
``at_layer``. The gradient, relevance and CAM families subclass it; the
wrappers (:mod:`keras_explain.analyzers.wrappers`) call it on many copies.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_explain.analyzers.base import Analyzer
from keras_explain.graph import call_op


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
        return call_op(step, inputs)

    def _source_keys(self):
        """Keys of the values attributed, and which of them are embeddings."""
        if self.plan is None:
            return None, []
        if self.at_layer is not None:
            return [self.plan.output_key_of(self.at_layer)], [False]
        keys, embedded = [], []
        for position, (key, spec) in enumerate(zip(self.plan.input_keys, self.plan.input_specs)):
            if tf.as_dtype(spec.dtype).is_integer:
                # a Keras mask (Embedding(mask_zero=True)'s not_equal) reads the
                # tokens too; it carries no gradient and reaches its layers as in model(x)
                consumers = [step for step in self.plan.consumers(key) if not self._is_mask(step)]
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

    def _is_mask(self, step) -> bool:
        dtypes = [self.plan.dtype_of(key) for key in step.outputs]
        return all(dtype == "bool" for dtype in dtypes)

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

    def output_count(self, input_count: int) -> int:
        """How many tensors :meth:`_explain` returns for a model with ``input_count`` inputs."""
        return input_count if self._sources is None else len(self._sources)

    def attribute(self, inputs: list[tf.Tensor], target, indices) -> list[tf.Tensor]:
        """The attributions of one batch, before :meth:`finish` (wrappers call it on copies)."""
        return self.attribution(*self.backward(inputs, target, indices))

    def _explain(self, inputs, target, indices, seed, params):
        return self.finish(self.attribute(inputs, target, indices))

    def finish(self, attributions):
        """Sum embedding attributions over the embedding axis; cast to float32."""
        embedded = self._embedded or [False] * len(attributions)
        return [
            tf.cast(tf.reduce_sum(a, axis=-1) if emb else a, tf.float32)
            for a, emb in zip(attributions, embedded)
        ]
