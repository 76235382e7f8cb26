"""Concept Relevance Propagation: heatmaps conditioned on a layer's channels.

Achtibat et al., "From attribution maps to human-understandable explanations through
Concept Relevance Propagation", Nature Machine Intelligence 2023, arXiv:2206.03208
(zennit-crp is the PyTorch reference).

One LRP pass gives the relevance ``R_l`` at the output of layer ``l``. The
*conditional* heatmap of a concept (a channel, or a group of channels) is the LRP
pass from ``l`` down to the input started from ``R_l`` with every other channel
set to zero. Every LRP rule is linear in the relevance it receives (the forward
activations held fixed), so:

- the conditional heatmaps of all channels of ``l`` sum to the heatmap of the
  relevance that passes through ``l`` (the whole heatmap when every path to the
  output goes through ``l``);
- a concept's heatmap sums to its *concept relevance*, the relevance of its
  channels at ``l`` (where the rules below ``l`` conserve relevance).

The forward pass and the backward pass from the output to ``l`` run once per batch;
the passes below ``l`` run for a group of concepts at once, vectorized over the
group (``tf.vectorized_map`` of the backward pass, the forward activations shared),
so a group costs one batched backward pass, not one pass per concept.

Channels are the last axis of the layer's output (Keras' ``channels_last``).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_explain.analyzers.relevance import LRP

#: Concepts propagated together in one vectorized backward pass, at most.
CONCEPT_GROUP = 32


class ConditionalLRP(LRP):
    """LRP whose relevance at ``condition``'s output is masked to groups of channels.

    ``analyze(x)`` returns ``(B, n_concepts, *shape)``: for each group of channels
    (a row of :attr:`masks`), the relevance that reaches the sources (the inputs,
    or ``layer=``'s output) through those channels only. The masks are passed to
    the compiled function at every call, so changing them does not retrace.

    Args:
        model: A Keras model (as :class:`~keras_explain.LRP`).
        composite: As :class:`~keras_explain.LRP`.
        condition: The layer (name or object) whose channels are the concepts.
        masks: ``(n_concepts, channels)`` 0/1 rows, one per concept.
        **kwargs: As :class:`~keras_explain.LRP` (``layer=`` attributes a lower
            layer's output instead of the input).

    Raises:
        ValueError: As :class:`~keras_explain.LRP`, and for a ``condition`` that is
            not a layer of the model.
    """

    def __init__(self, model, composite=None, *, condition: Any, masks: np.ndarray, **kwargs):
        self.condition = condition
        self._masks = np.asarray(masks, np.float32)
        super().__init__(model, composite, **kwargs)
        self.condition_key = self.plan.output_key_of(self.plan.find_layer(condition, "layer"))
        below = self.plan.upstream([self.condition_key])[1]  # what the condition reads
        if self.layer is not None and not set(self.source_keys) <= below:
            raise ValueError(
                f"CRP: layer {self.layer.name!r} is not below layer "
                f"{self.plan.find_layer(condition, 'layer').name!r}: the relevance of its "
                f"concepts never reaches it. Received: lower={self.layer.name!r}. Pass a "
                "layer the concept layer reads from, directly or further down."
            )

    def use_masks(self, masks: np.ndarray) -> None:
        """Condition the next calls on these ``(n_concepts, channels)`` masks.

        The same ``n_concepts`` reuses the compiled function (the masks are one of
        its arguments).
        """
        self._masks = np.asarray(masks, np.float32)

    def kept_keys(self) -> list:
        """The condition layer's output: no canonizer folds it away."""
        return [self.plan.output_key_of(self.plan.find_layer(self.condition, "layer"))]

    def call_params(self) -> dict[str, Any]:
        """The concept masks, read at every call."""
        return {"masks": self._masks}

    def explain_batch(self, inputs, target, indices, seed, params):
        """``(B, n_concepts, ...)`` conditional relevance of each source."""
        floats = [x for x in inputs if x.dtype.is_floating]
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(floats)
            keys = {*self.source_keys, self.condition_key}
            output, values = self.forward(inputs, self.hook, watch=(tape, keys))
            sources = [values.get(key) for key in self.source_keys]
            sources = [inputs[i] if s is None else s for i, s in enumerate(sources)]
        relevance = tape.gradient(
            output, values[self.condition_key], self.output_seed(output, target, indices)
        )

        def conditioned(mask):
            grads = tape.gradient(
                values[self.condition_key], sources, output_gradients=relevance * mask
            )
            return [tf.zeros_like(s) if g is None else g for g, s in zip(grads, sources)]

        masks = tf.cast(params["masks"], relevance.dtype)
        per_concept = tf.vectorized_map(conditioned, masks)  # each (n, B, ...)
        count = tf.shape(masks)[0]
        tiled = [tf.tile(x, [count, *[1] * (len(x.shape) - 1)]) for x in inputs]
        flat = [tf.reshape(h, tf.concat([[-1], tf.shape(h)[2:]], 0)) for h in per_concept]
        finished = self.finish(flat, tiled if self._input_sources() else None)
        results = []
        for heatmap in finished:
            shape = tf.concat([[count, -1], tf.shape(heatmap)[1:]], 0)
            heatmap = tf.reshape(heatmap, shape)
            order = [1, 0, *range(2, len(heatmap.shape))]
            results.append(tf.transpose(heatmap, order))
        return results


class ChannelScores(LRP):
    """Per sample, per channel of ``layer=``: a score and where the channel peaks.

    ``analyze(x)`` returns ``(B, channels, 2)`` float32: ``[..., 0]`` the score,
    ``[..., 1]`` the flat index (over the layer's positions) of the channel's
    largest value (exact in float32 below 2**24 positions). With
    ``mode="relevance"`` the score is the channel's relevance at ``layer``'s output
    summed over positions (its concept relevance) and the peak is where that
    relevance is largest; with ``mode="activation"`` the score is the channel's
    largest activation and the peak is where it is (no backward pass). One array,
    so that :func:`keras_explain.explain_dataset` stores it as shards.

    Args:
        model: A Keras model (as :class:`~keras_explain.LRP`).
        composite: As :class:`~keras_explain.LRP`.
        mode: ``"relevance"`` or ``"activation"``.
        **kwargs: As :class:`~keras_explain.LRP`; ``layer=`` is required.
    """

    def __init__(self, model, composite=None, *, mode: str = "relevance", **kwargs):
        self.mode = mode
        super().__init__(model, composite, **kwargs)

    def explain_batch(self, inputs, target, indices, seed, params):
        """``(B, channels, 2)``: score and flat peak position per channel."""
        if self.mode == "activation":
            _, values = self.forward(inputs)
            value = tf.cast(values[self.source_keys[0]], tf.float32)
        else:
            value = self.finish(self.attribute(inputs, target, indices))[0]
        flat = tf.reshape(value, [tf.shape(value)[0], -1, tf.shape(value)[-1]])  # (B, P, C)
        score = tf.reduce_sum(flat, 1) if self.mode == "relevance" else tf.reduce_max(flat, 1)
        peak = tf.cast(tf.argmax(flat, axis=1), tf.float32)
        return [tf.stack([score, peak], axis=-1)]


def carrier(analyzer: LRP, layer: Any, plan: Any) -> keras.Layer:
    """The layer whose output carries ``layer``'s channels in ``analyzer``'s rules.

    ``layer`` itself, or, when a canonizer folded ``layer`` into the
    ``BatchNormalization`` after it (``BatchNormFold``), that BatchNormalization:
    the same channels, scaled per channel, and the value the folded rules produce
    (zennit-crp conditions a folded layer there too).

    Args:
        analyzer: An LRP analyzer on the model (its plan canonized).
        layer: A layer of the model (name or object).
        plan: The model's plan before canonization (:class:`keras_explain.graph.Plan`).
    """
    found = analyzer.plan.find_layer(layer, "layer")
    key = plan.output_key_of(found)
    if any(key in step.outputs for step in analyzer.plan.steps):
        return found
    for step in analyzer.plan.steps:
        if step.op.layer is found:  # folded: the step now ends at the BatchNormalization
            return plan.producer(step.outputs[0]).op.layer
    return found


def channel_count(model: keras.Model, layer: Any, owner: str) -> int:
    """The channels (last axis) of a layer's output.

    Raises:
        ValueError: For a layer of several outputs, or an output without a channel axis.
    """
    found = model.get_layer(layer) if isinstance(layer, str) else layer
    output = found.output
    shape = None if isinstance(output, list | tuple | dict) else tuple(output.shape)
    if shape is None or len(shape) < 2 or shape[-1] is None:
        raise ValueError(
            f"{owner}: layer {found.name!r} has no channel axis to condition on: its output is "
            f"{shape if shape is not None else 'several tensors'}. Received: layer="
            f"{found.name!r}. Pass a layer with one output (batch, ..., channels), such as a "
            "Conv2D or Dense layer."
        )
    return int(shape[-1])


def concept_masks(channels: Any, count: int, owner: str) -> tuple[np.ndarray, list]:
    """``(n_concepts, count)`` 0/1 masks and the concepts as given.

    Args:
        channels: None (every channel its own concept), an int, or a list of ints
            and lists of ints (a list is one concept: a group of channels).
        count: The layer's channels.

    Raises:
        ValueError: For a channel outside ``[0, count)`` or an empty list.
        TypeError: For anything that is not an int or a list of them.
    """
    if channels is None:
        channels = list(range(count))
    elif isinstance(channels, int | np.integer):
        channels = [int(channels)]
    if not isinstance(channels, list | tuple | np.ndarray) or len(channels) == 0:
        raise ValueError(
            f"{owner}: channels must be None, a channel id or a non-empty list of ids (a "
            f"nested list is a group). Received: channels={channels!r}."
        )
    concepts = [list(c) if isinstance(c, list | tuple | np.ndarray) else c for c in channels]
    masks = np.zeros((len(concepts), count), np.float32)
    for row, concept in enumerate(concepts):
        ids = concept if isinstance(concept, list) else [concept]
        for channel in ids:
            if isinstance(channel, bool) or not isinstance(channel, int | np.integer):
                raise TypeError(
                    f"{owner}: channel ids are ints. Received: {channel!r} in "
                    f"channels={channels!r}."
                )
            if not 0 <= channel < count:
                raise ValueError(
                    f"{owner}: channel {channel} is out of range; the layer has {count} "
                    f"channels (0 to {count - 1}). Received: channels={channels!r}."
                )
            masks[row, channel] = 1.0
    return masks, concepts
