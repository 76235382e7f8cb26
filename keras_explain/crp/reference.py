"""Reference samples: the dataset examples that show what a concept is (relevance maximization).

A channel is named by the examples it stands for. Achtibat et al. (2023) choose
them by *relevance*: the samples where the channel carries the most relevance for
the model's decision, rather than those where it is most *activated* (activation
maximization, Zeiler & Fergus 2014), which can be examples the channel fires on
without the model using it. Each is cut to the receptive field of the position
where the channel peaks (zennit-crp's ``FeatureVisualization``).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np
import tensorflow as tf

from keras_explain import _validate
from keras_explain.crp.engine import ChannelScores, concept_masks
from keras_explain.crp.explainer import CRP
from keras_explain.features.fields import ReceptiveField, receptive_field

MODES = ("relevance", "activation")


@dataclasses.dataclass
class ReferenceSamples:
    """The ``k`` reference samples of each channel.

    Attributes:
        channels: The channels, in the order asked.
        samples: ``(n_channels, k)`` positions of the samples in the data, best first.
        scores: ``(n_channels, k)`` their scores (summed relevance, or the largest
            activation).
        positions: ``(n_channels, k, spatial axes)`` where the channel peaks in the
            layer, per sample.
        patches: ``(n_channels, k, *field size, C)`` the receptive-field crops of
            those peaks, or None (``crop=False``, or a layer without spatial axes).
        field: The layer's :class:`~keras_explain.features.ReceptiveField`, or None.
        layer: The name of the layer whose channels these are.
    """

    channels: list
    samples: np.ndarray
    scores: np.ndarray
    positions: np.ndarray
    patches: np.ndarray | None
    field: ReceptiveField | None
    layer: str


def reference_samples(
    model,
    data: Any,
    layer: Any,
    channels: Any = None,
    *,
    mode: str = "relevance",
    k: int = 8,
    crop: bool = True,
    composite: Any = None,
    target: Any = None,
    batch_size: int = 64,
    out_dir: str | os.PathLike | None = None,
    verbose: Any = "auto",
) -> ReferenceSamples:
    """The samples of a dataset that maximise each channel's relevance (or activation).

    One pass over ``data`` computes, per sample and channel, the score and the
    position where the channel peaks. With ``out_dir``, the pass is
    :func:`keras_explain.explain_dataset`'s: shards on disk, bounded memory, resumed
    after an interruption. The best ``k`` samples of each channel are then taken,
    and, with ``crop``, cut to the receptive field of their peak.

    Args:
        model: A Keras model LRP runs on.
        data: An array (``np.memmap`` included) or a ``tf.data.Dataset`` of ``x`` or
            ``(x, y)``; with ``out_dir``, anything ``explain_dataset`` reads.
        layer: The layer (name or object) whose channels are the concepts (a layer
            folded into its BatchNormalization is scored at the BatchNormalization, as
            :class:`~keras_explain.crp.CRP`).
        channels: None (every channel), a channel id or a list of ids.
        mode: ``"relevance"``: the channel's relevance summed over positions, for the
            explained class (relevance maximization); ``"activation"``: its largest
            activation (activation maximization).
        k: Samples per channel.
        crop: Cut each sample to the receptive field of the channel's peak.
        composite: The LRP composite (as :class:`~keras_explain.LRP`).
        target: What to explain, as in ``analyze`` (None: each sample's top class);
            with ``out_dir``, ``"labels"`` takes the ``y`` of ``(x, y)`` batches.
        batch_size: Samples per pass.
        out_dir: A directory for the per-sample scores (resumable shards), or None
            (kept in memory: ``n × channels × 2`` floats).
        verbose: ``explain_dataset``'s progress bar.

    Returns:
        The :class:`ReferenceSamples`.

    Raises:
        ValueError: For a bad mode, ``k`` larger than the data, a channel out of
            range, a layer without channels.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((8, 8, 1)),
        ...     keras.layers.Conv2D(3, 3, activation="relu", name="conv"),
        ...     keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
        >>> x = np.random.default_rng(0).uniform(size=(20, 8, 8, 1)).astype("float32")
        >>> found = kx.crp.reference_samples(model, x, "conv", [0, 2], k=4)
        >>> found.samples.shape, found.patches.shape  # 3x3 receptive fields
        ((2, 4), (2, 4, 3, 3, 1))
    """
    owner = "reference_samples"
    try:
        mode = _validate.one_of(mode, "mode", MODES)
        k = _validate.positive_int(k, "k")
        crop = _validate.boolean(crop, "crop", owner)
    except ValueError as error:
        raise ValueError(f"{owner}: {error}") from None
    crp = CRP(model, layer, composite=composite)
    _, concepts = concept_masks(channels, crp.channels, owner)
    if any(isinstance(concept, list) for concept in concepts):
        raise ValueError(
            f"{owner} ranks samples per channel; a group has no single peak. Received: "
            f"channels={channels!r}. Pass channel ids."
        )
    scorer = ChannelScores(model, composite, layer=crp.layer, mode=mode, verbose=0)
    if out_dir is None:
        packed = scorer.analyze(data, target, batch_size=batch_size)
    else:
        from keras_explain.streaming import explain_dataset

        packed = explain_dataset(
            scorer,
            model,
            data,
            out_dir=out_dir,
            batch_size=batch_size,
            target=target,
            verbose=verbose,
        )
    packed = np.asarray(packed)
    if k > len(packed):
        raise ValueError(
            f"{owner}: k is larger than the data ({len(packed)} samples). Received: k={k}."
        )
    scores = packed[:, concepts, 0].T  # (n_channels, n)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    shape = scorer.plan.shape_of(scorer.source_keys[0])[1:-1]
    peaks = np.take_along_axis(packed[:, concepts, 1].T, order, axis=1).astype(np.int64)
    positions = np.stack(np.unravel_index(peaks, shape), axis=-1) if shape else peaks[..., None]
    field = patches = None
    if crop and len(shape):
        field = receptive_field(model, crp.layer)
        images = _gathered(data, np.unique(order))
        if len(images) < len(np.unique(order)):
            raise ValueError(
                f"{owner}: the crops need a second pass over data, and it yielded "
                f"{len(images)} of the {len(np.unique(order))} samples chosen (a one-shot "
                "generator?). Pass a tf.data.Dataset or an array, or crop=False."
            )
        patches = np.stack(
            [
                np.stack([field.patch(images[s], p) for s, p in zip(row, where)])
                for row, where in zip(order, positions)
            ]
        )
    return ReferenceSamples(
        channels=list(concepts),
        samples=order,
        scores=np.take_along_axis(scores, order, axis=1),
        positions=positions,
        patches=patches,
        field=field,
        layer=crp.layer.name,
    )


def _gathered(data: Any, wanted: np.ndarray) -> dict[int, np.ndarray]:
    """The samples at positions ``wanted`` of ``data`` (an array, or one pass over batches)."""
    if isinstance(data, np.ndarray | tf.Tensor):
        return {int(i): np.asarray(data[int(i)]) for i in wanted}
    found, position, wanted_set = {}, 0, {int(i) for i in wanted}
    for element in data:
        x = element[0] if isinstance(element, tuple) else element
        x = np.asarray(x)
        for row in range(len(x)):
            if position + row in wanted_set:
                found[position + row] = x[row]
        position += len(x)
        if len(found) == len(wanted_set):
            break
    return found
