"""The engine of every method that pulls a (possibly modified) signal back from the output.

:class:`Backpropagation` runs the model through the graph engine with a per-op
hook (where rules modify the backward pass), seeds the explained output with
the gradient of the target score (or, for relevance methods, with the score
itself) and pulls the signal back to the *sources*: the model inputs, the
outputs of the ``Embedding`` layers behind integer inputs, or the output of
``layer``. The gradient, relevance and CAM families subclass it; the
wrappers (:mod:`keras_explain.analyzers.wrappers`) call it on many copies.
"""

from __future__ import annotations

import contextlib

import keras
import numpy as np
import tensorflow as tf

from keras_explain import _spatial, _validate
from keras_explain.analyzers.base import Analyzer
from keras_explain.graph import call_op


class Backpropagation(Analyzer):
    """Base of analyzers that propagate a signal back from the explained output.

    Args:
        model: A Keras model.
        layer: Return attributions of this layer's output (name or object)
            instead of the input's (layer attribution); the result then has
            that layer output's shape.
        **kwargs: See :class:`~keras_explain.analyzers.base.Analyzer`.
    """

    #: Seed the output with ``d score / d output * output`` (relevance)
    #: instead of ``d score / d output`` (gradient).
    relevance_seed = False

    renamed = {"at_layer": "layer"}

    def __init__(
        self,
        model,
        *,
        layer: str | keras.Layer | None = None,
        attribute_to_layer_input: bool = False,
        **kwargs,
    ):
        super().__init__(model, **kwargs)
        self.layer = None
        self.returns_maps = False
        self.attribute_to_layer_input = _validate.boolean(
            attribute_to_layer_input, "attribute_to_layer_input", type(self).__name__
        )
        if self.attribute_to_layer_input and layer is None:
            raise ValueError(
                f"{type(self).__name__}: attribute_to_layer_input=True attributes the input of "
                "the layer given as layer=, and no layer was given. Received: layer=None. "
                "Pass layer=<name or layer object>."
            )
        if layer is not None:
            if self.plan is None:
                raise ValueError(
                    "layer needs a Functional or Sequential model whose layers can "
                    f"be walked. Received: layer={layer!r} for "
                    f"{type(self.model).__name__}."
                )
            self.layer = self.plan.find_layer(layer, "layer")
            self.returns_maps = True
        # source_keys: the keys of the values attributed (the model inputs, the
        # Embedding outputs behind token inputs, or the layer's output; None without
        # a graph); embedded: per source, whether it is a token input's embedding
        self.source_keys, self.embedded = self.attributed_values()
        self._substitutes: dict = {}

    def hook(self, step, inputs):
        """The engine hook; the default runs every op unchanged."""
        return call_op(step, inputs)

    def attributed_values(self) -> tuple[list | None, list[bool]]:
        """Keys of the values attributed, and which of them are embeddings.

        Subclasses that attribute other values (CAM: a layer's output) override it.
        """
        if self.plan is None:
            return None, []
        if self.layer is not None and self.attribute_to_layer_input:
            return [self._layer_input_key()], [False]
        if self.layer is not None:
            return [self.plan.output_key_of(self.layer)], [False]
        keys, embedded = [], []
        for position, (key, spec) in enumerate(zip(self.plan.input_keys, self.plan.input_specs)):
            if self.held_input(position):  # not a feature: no gradient is asked of it
                keys.append(key)
                embedded.append(False)
                continue
            if tf.as_dtype(spec.dtype).is_integer:
                # a Keras mask (Embedding(mask_zero=True)'s not_equal) reads the
                # tokens too; it carries no gradient and reaches its layers as in model(x)
                consumers = [step for step in self.plan.consumers(key) if not self._is_mask(step)]
                if not consumers or any(s.op.kind != "embedding" for s in consumers):
                    names = [s.op.name for s in consumers]
                    raise ValueError(
                        f"Input {position} of model {self.model.name!r} is an integer "
                        f"input consumed by {names}, not by an Embedding layer, so it "
                        "has no gradient. Feed floats, or explain layer=<a float layer>."
                    )
                keys.append(consumers[0].outputs[0])
                embedded.append(True)
            else:
                keys.append(key)
                embedded.append(False)
        if len(self.constant_inputs) == len(keys):
            raise ValueError(
                f"{type(self).__name__}: every input of model {self.model.name!r} is held "
                f"constant ({self.input_names}), so nothing is left to attribute. Pass "
                "constant_inputs=[...] naming only the inputs that are not features."
            )
        return keys, embedded

    def _layer_input_key(self):
        """The one value ``layer`` reads (``attribute_to_layer_input=True``)."""
        keys = self.plan.input_keys_of(self.layer)
        if len(keys) != 1:
            raise ValueError(
                f"{type(self).__name__}: attribute_to_layer_input=True needs a layer that reads "
                f"one tensor once; layer {self.layer.name!r} reads {len(keys)} (several inputs, "
                f"or called several times). Received: layer={self.layer.name!r}. Attribute its "
                "output, or the output of the layer before it."
            )
        return keys[0]

    def source_values(self, inputs) -> list[tf.Tensor]:
        """The attributed values of a batch (the layer's output or input): one forward pass."""
        _, values = self.forward(inputs)
        return [values[key] for key in self.source_keys]

    @contextlib.contextmanager
    def sources_substituted(self, values):
        """Within the block, the attributed values (``layer=``'s) take ``values``, one per source.

        The model runs on the inputs it is given up to the layer; the layer's value
        is replaced, and everything after it reads the replacement (Captum's
        layer hooks, without hooks).
        """
        self._substitutes = dict(zip(self.source_keys, values))
        try:
            yield
        finally:
            self._substitutes = {}

    def held_input(self, position: int) -> bool:
        """Whether model input ``position`` is held constant (``constant_inputs``)."""
        return position in self.constant_inputs

    def _input_sources(self) -> bool:
        """Whether the sources are the model inputs (not a layer's output)."""
        return self.layer is None

    def _is_mask(self, step) -> bool:
        dtypes = [self.plan.dtype_of(key) for key in step.outputs]
        return all(dtype == "bool" for dtype in dtypes)

    def backward(self, inputs: list[tf.Tensor], target, indices):
        """Pull the signal back to the sources.

        Returns:
            ``(gradients, source_values)``, one per source.
        """
        with tf.GradientTape(persistent=False) as tape:
            if self.source_keys is None:
                tape.watch(inputs)
                output, _ = self.forward(inputs)
                sources = inputs
            else:
                floats = [x for x in inputs if x.dtype.is_floating]
                tape.watch(floats)
                output, values = self.forward(
                    inputs, self.hook, watch=(tape, set(self.source_keys))
                )
                sources = [values.get(key, None) for key in self.source_keys]
                sources = [inputs[i] if s is None else s for i, s in enumerate(sources)]
        grads = tape.gradient(
            output, sources, output_gradients=self.output_seed(output, target, indices)
        )
        held = self._input_sources()
        grads = [
            tf.zeros_like(s) if g is None or (held and self.held_input(i)) else g
            for i, (g, s) in enumerate(zip(grads, sources))
        ]
        return grads, sources

    def output_seed(self, output, target, indices) -> tf.Tensor:
        """What the backward pass starts from at the explained output.

        The gradient of the target scores, times the output for relevance methods
        (:attr:`relevance_seed`).
        """
        with tf.GradientTape() as seed_tape:
            seed_tape.watch(output)
            scores = self.scores(output, target, indices)
        seed = seed_tape.gradient(scores, output)
        return seed * output if self.relevance_seed else seed

    def attribution(self, grads, sources):
        """Turn gradients at the sources into attributions (default: identity)."""
        return grads

    def output_count(self, input_count: int) -> int:
        """How many tensors :meth:`_explain` returns for a model with ``input_count`` inputs."""
        return input_count if self.source_keys is None else len(self.source_keys)

    def attribute(self, inputs: list[tf.Tensor], target, indices) -> list[tf.Tensor]:
        """The attributions of one batch, before :meth:`finish` (wrappers call it on copies)."""
        return self.attribution(*self.backward(inputs, target, indices))

    def explain_batch(self, inputs, target, indices, seed, params):
        """The backward pass's attributions of the sources, finished (per token, masked)."""
        return self.finish(self.attribute(inputs, target, indices), inputs)

    def finish(self, attributions, inputs=None):
        """Per-token attributions of token inputs; cast to float32.

        The attributions of an ``Embedding`` output are summed over the embedding
        axis, and, given the ``inputs`` (the tokens), set to exactly 0 where the
        Embedding's mask (``mask_zero=True``) is False.
        """
        embedded = self.embedded or [False] * len(attributions)
        masks = [None] * len(attributions)  # one per source (analyze_layers: many)
        if inputs is not None:
            masks[: len(inputs)] = self.token_masks(inputs)[: len(attributions)]
        results = []
        for attribution, emb, mask in zip(attributions, embedded, masks):
            attribution = tf.cast(
                tf.reduce_sum(attribution, axis=-1) if emb else attribution, tf.float32
            )
            if mask is not None:
                attribution = tf.where(mask, attribution, tf.zeros_like(attribution))
            results.append(attribution)
        return results

    # -- token inputs ---------------------------------------------------------------
    def embedding_layer(self, position: int):
        """The ``Embedding`` layer reading token input ``position`` (None for a float input)."""
        if position >= len(self.embedded) or not self.embedded[position]:
            return None
        return self.plan.producer(self.source_keys[position]).op.layer

    def token_masks(self, inputs) -> list:
        """Per input, the Embedding mask of its tokens (``(B, T)`` bool), or None."""
        masks = []
        for position, x in enumerate(inputs):
            layer = self.embedding_layer(position)
            masks.append(layer.compute_mask(x) if layer is not None and layer.mask_zero else None)
        return masks

    def embed(self, inputs) -> list[tf.Tensor]:
        """The values the analyzer attributes: the Embedding output of token inputs.

        Float inputs are returned as they are; token inputs ``(B, T)`` become
        their embeddings ``(B, T, D)``, where wrappers put noise and paths. Inputs
        held constant are returned as they are, and wrappers leave them so.
        """
        return [
            x if self.embedding_layer(i) is None else self._embedding_forward(i, x)
            for i, x in enumerate(inputs)
        ]

    def _embedding_forward(self, position: int, tokens):
        return self.plan.producer(self.source_keys[position]).op.forward(tokens)

    @contextlib.contextmanager
    def substituted(self, points):
        """Within the block, Embedding outputs take the values ``points`` (one per input).

        The model runs on the tokens it is given (they set the Keras masks, as in
        ``model(x)``) with the output of each Embedding replaced by the input's
        entry of ``points``; float inputs' entries are ignored.
        """
        self._substitutes = {
            key: point
            for key, point, emb in zip(self.source_keys or [], points, self.embedded)
            if emb
        }
        try:
            yield
        finally:
            self._substitutes = {}

    def forward(self, inputs, hook=None, watch=()):
        """Run the model (see :meth:`Analyzer.forward`), with any substituted embeddings."""
        if not self._substitutes:
            return super().forward(inputs, hook, watch)
        inner, substitutes = hook or call_op, self._substitutes
        if any(key in substitutes for key in self.plan.input_keys):  # a layer reading an input
            inputs = [substitutes.get(key, x) for key, x in zip(self.plan.input_keys, inputs)]
            if watch:
                tape, keys = watch
                tape.watch([x for key, x in zip(self.plan.input_keys, inputs) if key in keys])

        def substituting(step, args):
            key = step.outputs[0]
            return substitutes[key] if key in substitutes else inner(step, args)

        return super().forward(inputs, substituting, watch)

    def checked_token_baselines(self, owner: str, baselines: list) -> list:
        """Check the baselines of token inputs when the analyzer is built.

        A token input's baseline is a token id (an int in ``[0, input_dim)``;
        0, the padding id, by default) or an embedding array ``(T, D)`` or
        ``(B, T, D)``; float inputs' baselines are returned unchanged.

        Raises:
            ValueError: For a token id out of the vocabulary, a non-integer
                scalar, or an array of another shape.
        """
        checked = []
        for position, baseline in enumerate(baselines):
            layer = self.embedding_layer(position)
            if layer is None:
                checked.append(baseline)
                continue
            array = np.asarray(baseline)
            if array.ndim == 0:
                if not float(array).is_integer() or not 0 <= int(array) < layer.input_dim:
                    raise ValueError(
                        f"{owner}: the baseline of token input {position} is a token id of "
                        f"Embedding {layer.name!r}, an int in [0, {layer.input_dim}). "
                        f"Received: baseline={baseline!r}. Pass a token id (0, the padding "
                        "id, by default) or an embedding array shaped (T, D) or (B, T, D)."
                    )
                checked.append(int(array))
                continue
            length = self.plan.input_specs[position].shape[1]
            checked.append(_validate.baseline(array, (length, layer.output_dim), name="baseline"))
        return checked

    def baseline_points(self, baselines: list, inputs, points) -> list[tf.Tensor]:
        """Baselines broadcast to ``points`` (:meth:`embed`); token ids become embeddings."""
        result = []
        for position, (baseline, x, point) in enumerate(zip(baselines, inputs, points)):
            if self.held_input(position):  # a constant input is its own baseline
                result.append(point)
                continue
            layer = self.embedding_layer(position)
            if layer is not None and isinstance(baseline, int):
                tokens = tf.fill(tf.shape(x), tf.cast(baseline, x.dtype))
                baseline = self._embedding_forward(position, tokens)
            result.append(_spatial.broadcast_baseline(baseline, point))
        return result

    def batch_shapes(self, shapes: list[tuple]) -> list[tuple]:
        """The shapes of the attributed values of a batch of ``shapes`` (tokens get ``D``)."""
        return [
            shape
            if self.embedding_layer(i) is None
            else (*shape, self.embedding_layer(i).output_dim)
            for i, shape in enumerate(shapes)
        ]
