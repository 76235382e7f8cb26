"""Training examples ranked by how alike a layer represents them (Captum's similarity)."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from keras_explain import _validate, config
from keras_explain.analyzers.layer_output import LayerOutputs
from keras_explain.influence import engine
from keras_explain.influence.base import InfluenceMethod, checked_model

MEASURES = ("cosine", "dot", "euclidean")


class Similarity(InfluenceMethod):
    """Training examples ranked by the similarity of a layer's activations.

    Each example's activations at ``layer`` (flattened) are compared: ``"cosine"``
    (the default; 0 for an all-zero activation), ``"dot"``, or ``"euclidean"``, whose
    score is **minus** the Euclidean distance so that, for every measure, higher
    means more similar and ``proponents`` are the most similar training examples.
    Labels are not used. It measures what the model sees as alike, not what changed
    its prediction; use :class:`~keras_explain.influence.TracIn` for that.

    Args:
        model: A Keras model.
        train: ``(x, y)`` arrays or a ``tf.data.Dataset`` of ``(x, y)`` (``y`` unused),
            or the inputs ``x`` alone.
        layer: The layer's name (or the layer, or its index).
        measure: ``"cosine"``, ``"dot"`` or ``"euclidean"``.

    Raises:
        TypeError: For a model that is not a Keras model.
        ValueError: For an unknown layer or measure, or an empty training set.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="hidden"),
        ...                           keras.layers.Dense(2)])
        >>> x = np.random.default_rng(0).normal(size=(6, 3)).astype("float32")
        >>> similar = kx.influence.Similarity(model, x, "hidden")
        >>> similar.proponents(x[:2], k=1)[0].tolist()  # itself, the most similar
        [[0], [1]]
    """

    owner = "Similarity"

    def __init__(self, model, train, layer: Any, *, measure: str = "cosine"):
        owner = self.owner
        self.model = checked_model(model, owner)
        self.measure = engine.checked(owner, _validate.one_of, measure, "measure", MEASURES)
        if not isinstance(train, tuple | list | tf.data.Dataset):  # the inputs alone
            train = (train, np.zeros(len(tf.nest.flatten(train)[0]), np.int32))
        self.training = engine.TrainingSet(train, owner, engine.input_rank(model))
        self.outputs = LayerOutputs(model, [layer])
        self._train: np.ndarray | None = None

    def _features(self, x: Any) -> np.ndarray:
        rows = self.outputs.rows_per_pass([a.shape[1:] for a in tf.nest.flatten(x)], backward=False)
        values = self.outputs.compute(x, batch_size=max(1, rows))[0].astype(np.float64)
        return values.reshape(len(values), -1)

    def _training_features(self) -> np.ndarray:
        if self._train is None:
            parts = [self._features(x) for x, _ in self.training.chunks(config.MAX_ROWS)]
            self._train = np.concatenate(parts)
        return self._train

    def influence(self, x: Any, y: Any = None) -> np.ndarray:
        """``(n_test, n_train)`` similarities (higher: more alike), float64.

        Args:
            x: Test inputs ``(n_test, ...)``.
            y: Ignored (the labels play no part).

        Returns:
            Cosine similarities, dot products, or minus the Euclidean distances.
        """
        train = self._training_features()
        test = self._features(x)
        if self.measure == "dot":
            return test @ train.T
        if self.measure == "euclidean":
            squared = (test**2).sum(1)[:, None] + (train**2).sum(1)[None] - 2 * test @ train.T
            return -np.sqrt(np.maximum(squared, 0.0))
        return _unit(test) @ _unit(train).T


def _unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms == 0, 1.0, norms)
