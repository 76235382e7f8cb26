"""The user's entry to CRP: conditional heatmaps, concept relevances, concept hierarchies."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from keras_explain import graph
from keras_explain.analyzers.relevance import LRP
from keras_explain.crp.engine import (
    CONCEPT_GROUP,
    ConditionalLRP,
    carrier,
    channel_count,
    concept_masks,
)


class CRP:
    """Concept Relevance Propagation at one layer of a model (Achtibat et al. 2023).

    The concepts are the channels of ``layer``'s output (its last axis), alone or in
    groups. A layer that a canonizer folds into the ``BatchNormalization`` after it
    (the default ``BatchNormFold``) is conditioned at that BatchNormalization's
    output: the same channels, and the value the folded rules see (as zennit-crp's
    canonizers do); :attr:`layer` tells which.

    :meth:`conditional` gives, per concept, the heatmap of the relevance that flows
    through it; :meth:`concept_relevance` how much of the output's
    relevance each channel carries; :meth:`hierarchy` which channels of a lower
    layer feed a concept. Every method runs one LRP pass per batch (with the
    composite given), the part below ``layer`` vectorized over a group of up to
    :data:`~keras_explain.crp.engine.CONCEPT_GROUP` concepts.

    Args:
        model: A Keras model LRP runs on (as :class:`~keras_explain.LRP`; never
            modified).
        layer: The layer (name or object) whose channels are the concepts.
        composite: As :class:`~keras_explain.LRP` (None: ε on every linear op,
            LRP's default; ``"epsilon_plus_flat"`` is zennit-crp's usual choice
            for CNNs), and its preset's parameters as keyword arguments.
        canonizers: As :class:`~keras_explain.LRP`.
        **params: The preset's parameters, ``output_index``, ``output_layer``.

    Raises:
        ValueError: For a layer that is not in the model or has no channel axis,
            and as :class:`~keras_explain.LRP`.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((6,)),
        ...     keras.layers.Dense(4, activation="relu", name="hidden", use_bias=False),
        ...     keras.layers.Dense(3, use_bias=False)])
        >>> x = np.abs(np.random.default_rng(0).normal(size=(2, 6))).astype("float32")
        >>> crp = kx.crp.CRP(model, "hidden", composite="z_plus")
        >>> heatmaps = crp.conditional(x)            # one per channel of "hidden"
        >>> heatmaps.shape
        (2, 4, 6)
        >>> whole = kx.LRP(model, "z_plus").analyze(x)
        >>> bool(np.allclose(heatmaps.sum(axis=1), whole, atol=1e-6))  # they add up
        True
    """

    owner = "CRP"

    def __init__(
        self, model, layer: Any, *, composite: Any = None, canonizers: Any = None, **params: Any
    ):
        if not isinstance(model, keras.Model):
            raise TypeError(
                f"{self.owner} runs LRP through a Keras model's graph. Received: model of type "
                f"{type(model).__name__}."
            )
        self.model = model
        self.options = {"composite": composite, "canonizers": canonizers, **params}
        self.channels = channel_count(model, self._layer_object(layer), self.owner)
        self._plain = LRP(model, composite, canonizers=canonizers, **params)
        self._plan = graph.Plan(model)
        #: The layer conditioned on: ``layer``, or the BatchNormalization it is folded into.
        self.layer = carrier(self._plain, layer, self._plan)
        self._analyzers: dict[str | None, ConditionalLRP] = {}  # by lower layer
        self._relevance: LRP | None = None
        self.analyzer(None, np.zeros((1, self.channels), np.float32))  # errors now, not later

    def _layer_object(self, layer: Any) -> keras.Layer:
        if isinstance(layer, keras.Layer):
            return layer
        try:
            return self.model.get_layer(layer)
        except ValueError:
            names = [item.name for item in self.model.layers]
            raise ValueError(
                f"{self.owner}: {layer!r} is not a layer of model {self.model.name!r}. "
                f"Received: layer={layer!r}. Its layers: {names}."
            ) from None

    def analyzer(self, lower: Any, masks: np.ndarray) -> ConditionalLRP:
        """The conditional LRP analyzer attributing ``lower``'s output (None: the input).

        Args:
            lower: A layer below :attr:`layer` (name or object), or None.
            masks: The concept masks its next calls use.

        Returns:
            The analyzer, built once per ``lower`` and reused (its traces too).
        """
        if lower is not None:
            lower = carrier(self._plain, self._layer_object(lower), self._plan)
        key = None if lower is None else lower.name
        analyzer = self._analyzers.get(key)
        if analyzer is None:
            options = dict(self.options)
            composite = options.pop("composite")
            analyzer = ConditionalLRP(
                self.model, composite, condition=self.layer, masks=masks, layer=lower, **options
            )
            self._analyzers[key] = analyzer
        analyzer.use_masks(masks)
        return analyzer

    def conditional(
        self,
        x: Any,
        channels: Any = None,
        *,
        target: Any = None,
        batch_size: int | None = None,
        lower: Any = None,
    ) -> np.ndarray:
        """Heatmaps of the relevance flowing through each concept.

        Args:
            x: Inputs, as for :meth:`keras_explain.LRP.analyze` (one model input).
            channels: None (every channel its own concept), a channel id, or a list
                of ids and lists of ids (a list is one concept: the group's channels
                together).
            target: What to explain, as in ``analyze`` (None: each sample's top class).
            batch_size: Samples per pass.
            lower: Attribute this lower layer's output instead of the input.

        Returns:
            ``(B, n_concepts, *x.shape[1:])`` float32 (``lower``'s output shape with
            ``lower``), in the order of ``channels``.

        Raises:
            ValueError: For a channel out of range, and as ``analyze``.
        """
        masks, _ = concept_masks(channels, self.channels, self.owner)
        group = max(1, min(CONCEPT_GROUP, len(masks)))
        pieces = []
        for start in range(0, len(masks), group):
            part = masks[start : start + group]
            padded = np.concatenate([part, np.zeros((group - len(part), self.channels))])
            result = self.analyzer(lower, padded).analyze(x, target, batch_size=batch_size)
            pieces.append(result[:, : len(part)])
        return np.concatenate(pieces, axis=1)

    def concept_relevance(
        self, x: Any, *, target: Any = None, batch_size: int | None = None
    ) -> np.ndarray:
        """``(B, channels)``: each channel's relevance at :attr:`layer` (summed over positions).

        The relevance the LRP pass puts on the layer's output, so its sum over the
        channels is the output relevance that passes through the layer.

        Args:
            x: Inputs, as for ``analyze``.
            target: What to explain.
            batch_size: Samples per pass.

        Returns:
            float32 concept relevances, one row per sample.
        """
        if self._relevance is None:
            options = dict(self.options)
            composite = options.pop("composite")
            self._relevance = LRP(self.model, composite, layer=self.layer, **options)
        relevance = self._relevance.analyze(x, target, batch_size=batch_size)
        return relevance.reshape(len(relevance), -1, self.channels).sum(axis=1)

    def hierarchy(
        self,
        x: Any,
        channel: int,
        lower: Any,
        *,
        k: int = 5,
        target: Any = None,
        batch_size: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The channels of a lower layer that feed concept ``channel`` most.

        Args:
            x: Inputs, as for ``analyze``.
            channel: The concept at :attr:`layer`.
            lower: A layer below it (name or object).
            k: How many lower channels.
            target: What to explain.
            batch_size: Samples per pass.

        Returns:
            ``(indices, relevances)``, each ``(B, k)``: the lower layer's channels
            with the most relevance conditioned on ``channel``, highest first, and
            that relevance (summed over positions).

        Raises:
            ValueError: For a channel out of range or a bad ``k``.
        """
        lower_channels = channel_count(self.model, self._layer_object(lower), self.owner)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= lower_channels:
            raise ValueError(
                f"{self.owner}: k must be an int from 1 to the lower layer's "
                f"{lower_channels} channels. Received: k={k!r}."
            )
        relevance = self.conditional(
            x, [channel], target=target, batch_size=batch_size, lower=lower
        )[:, 0]
        per_channel = relevance.reshape(len(relevance), -1, relevance.shape[-1]).sum(axis=1)
        order = np.argsort(-per_channel, axis=1, kind="stable")[:, :k]
        return order, np.take_along_axis(per_channel, order, axis=1)


def conditional(
    model, x: Any, *, layer: Any, channels: Any = None, target: Any = None, **options: Any
) -> np.ndarray:
    """``CRP(model, layer, **options).conditional(x, channels, target=target)``."""
    return CRP(model, layer, **options).conditional(x, channels, target=target)


def concept_relevance(model, x: Any, layer: Any, *, target: Any = None, **options) -> np.ndarray:
    """``CRP(model, layer, **options).concept_relevance(x, target=target)``."""
    return CRP(model, layer, **options).concept_relevance(x, target=target)


def hierarchy(
    model, x: Any, layer: Any, channel: int, lower_layer: Any, *, k: int = 5, **options
) -> tuple[np.ndarray, np.ndarray]:
    """``CRP(model, layer, **options).hierarchy(x, channel, lower_layer, k=k)``."""
    target = options.pop("target", None)
    return CRP(model, layer, **options).hierarchy(x, channel, lower_layer, k=k, target=target)
