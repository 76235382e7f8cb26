"""TracIn (Pruthi et al. 2020): influence traced through the checkpoints of training."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np

from keras_explain import _shards, _validate
from keras_explain.influence import cache, engine
from keras_explain.influence.base import InfluenceMethod, checked_model


class TracIn(InfluenceMethod):
    """TracInCP (Pruthi et al. 2020, NeurIPS, arXiv:2002.08484), Captum's ``TracInCP``.

    The influence of training example ``z`` on test example ``z'`` is the sum over
    checkpoints ``c`` of the learning rate times the dot product of their loss
    gradients:

    ``TracIn(z, z') = sum_c η_c ∇L(θ_c, z) · ∇L(θ_c, z')``.

    Positive scores mark *proponents* (a gradient step on ``z`` lowered the loss of
    ``z'``), negative ones *opponents*. ``self_influence()`` is
    ``sum_c η_c ||∇L(θ_c, z)||²``: high for examples the model struggled to fit,
    mislabelled ones first.

    With ``layers=[name]`` of the model's last ``Dense`` layer (the classifier head)
    the gradients are the closed form ``a ⊗ δ`` plus the bias' ``δ``, kept as factors
    (Captum's ``TracInCPFast`` trick; Captum's version leaves the bias out, so
    this equals Captum's ``TracInCP`` on that layer); otherwise they are one
    example's gradient tape vectorized over the batch, over the chosen layers' (or
    every) trainable variables. ``projection_dim=d`` replaces each gradient by a
    seeded Gaussian projection of dimension ``d`` (Captum's
    ``TracInCPFastRandProj``; scores then carry a relative error of order
    ``1/sqrt(d)``); ``self_influence`` stays exact. Gradients are taken in inference
    mode (``training=False``: no dropout, BatchNorm's moving statistics). The
    training set's features are computed at the first query and kept.

    Args:
        model: A Keras model (never modified; checkpoints are loaded into a clone).
        train: ``(x, y)`` arrays, or a ``tf.data.Dataset`` of ``(x, y)``.
        checkpoints: None (the model's current weights), a
            :class:`~keras_explain.callbacks.Checkpoints` callback, or a list of
            ``model.get_weights()`` lists or ``.weights.h5`` paths.
        learning_rates: None (the callback's rates, else 1.0), a number, or one per
            checkpoint.
        loss: The training loss (see :func:`~keras_explain.influence.engine.per_example_loss`;
            None: the model's compiled loss).
        layers: Names of the layers whose weights the gradients cover (None: all).
        projection_dim: Dimension of the random projection, or None (exact).
        seed: Seed of the projection.
        cache_dir: A directory for the training set's features, one folder of
            resumable shards per checkpoint (:mod:`keras_explain.influence.cache`),
            memory-mapped once complete; None keeps them in memory.

    Raises:
        TypeError: For a model that is not a Keras model, or bad ``train``,
            ``checkpoints`` or ``loss``.
        ValueError: For an empty training set, checkpoints of another architecture,
            an unknown layer, a bad ``projection_dim``, or a ``cache_dir`` that cannot
            be written (at the first query: one written for other settings).

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="head")])
        >>> x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
        >>> y = np.array([0, 1] * 4)
        >>> loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        >>> tracin = kx.influence.TracIn(model, (x, y), loss=loss, layers=["head"])
        >>> tracin.influence(x[:2], y[:2]).shape
        (2, 8)
        >>> indices, scores = tracin.proponents(x[:2], y[:2], k=3)
        >>> indices.shape, bool((scores[:, :-1] >= scores[:, 1:]).all())  # highest first
        ((2, 3), True)
    """

    owner = "TracIn"

    def __init__(
        self,
        model,
        train,
        *,
        checkpoints: Any = None,
        learning_rates: Any = None,
        loss: Any = None,
        layers: Any = None,
        projection_dim: int | None = None,
        seed: int = 0,
        cache_dir: Any = None,
    ):
        owner = self.owner
        self.model = checked_model(model, owner)
        self.training = engine.TrainingSet(train, owner, engine.input_rank(model))
        self.loss = engine.per_example_loss(loss, model, owner)
        self.checkpoints = engine.checkpoints_of(model, checkpoints, learning_rates, owner)
        projection_dim = engine.checked(
            owner, _validate.optional_positive_int, projection_dim, "projection_dim", "exact"
        )
        chosen = engine.chosen_layers(model, layers, owner)
        self.gradients = engine.GradientFeatures(model, self.loss, chosen, projection_dim, seed)
        self.cache_dir = None if cache_dir is None else cache.directory(cache_dir, owner)
        self.layers = None if chosen is None else [layer.name for layer in chosen]
        self._train: list[engine.Features] | None = None

    @property
    def fast(self) -> bool:
        """Whether the closed-form last-layer gradients are used."""
        return self.gradients.dense is not None

    def _training_features(self) -> list[engine.Features]:
        if self._train is None:
            rows = self.gradients.rows()
            features = []
            for number, checkpoint in enumerate(self.checkpoints):
                engine.load(self.gradients.clone, checkpoint)
                chunks = self.training.chunks(rows)
                if self.cache_dir is None:
                    features.append(self.gradients.features(chunks))
                    continue
                folder = os.path.join(self.cache_dir, f"checkpoint-{number:04d}")
                identity = self._identity(checkpoint, rows)
                compute = self.gradients.checked_of
                features.append(
                    cache.cached_features(folder, identity, chunks, compute, self.owner)
                )
            self._train = features
        return self._train

    def _identity(self, checkpoint: engine.Checkpoint, rows: int) -> dict[str, Any]:
        """What a checkpoint's cached features depend on (a resume must match all of it)."""
        weights = checkpoint.weights
        if isinstance(weights, str | os.PathLike):  # a weight file: its bytes
            with open(weights, "rb") as handle:
                weights = hashlib.sha256(handle.read()).hexdigest()
        loss = getattr(self.loss, "__self__", None)  # a keras.losses.Loss' bound call
        return {
            "keras_explain": _shards.version(),
            "method": self.owner,
            "model": self.model.name,
            "checkpoint": _shards.describe(weights),
            "layers": self.layers,
            "projection_dim": self.gradients.projection_dim,
            "seed": self.gradients.seed,
            "loss": _shards.describe(
                [type(loss).__name__, loss.get_config()]
                if hasattr(loss, "get_config")
                else self.loss
            ),
            "examples": self.training.size,
            "rows": rows,
        }

    def influence(self, x: Any, y: Any = None) -> np.ndarray:
        """``(n_test, n_train)`` TracIn scores, float64.

        Args:
            x: Test inputs ``(n_test, ...)``.
            y: Their labels, as the loss expects them.

        Returns:
            The sum over checkpoints of ``η_c`` times the gradients' dot products.

        Raises:
            ValueError: For labels that are not one per test example, or that the
                loss cannot take with the model's outputs.
        """
        x, y = engine.query_pair(x, y, self.owner)
        training = self._training_features()
        rows = self.gradients.rows()
        total = np.zeros((len(y), self.training.size))
        for checkpoint, features in zip(self.checkpoints, training):
            engine.load(self.gradients.clone, checkpoint)
            test = self.gradients.features(engine.chunked(x, y, rows))
            total += checkpoint.learning_rate * test.dot(features)
        return total

    def self_influence(self) -> np.ndarray:
        """``(n_train,)`` ``sum_c η_c ||∇L(θ_c, z)||²`` of every training example (exact)."""
        training = self._training_features()
        return sum(c.learning_rate * f.squared_norms for c, f in zip(self.checkpoints, training))
