"""TracIn (Pruthi et al. 2020): influence traced through the checkpoints of training."""

from __future__ import annotations

import functools
import hashlib
import math
import os
from typing import Any

import numpy as np

from keras_explain import _shards, _validate
from keras_explain.influence import cache, engine
from keras_explain.influence.base import InfluenceMethod, checked_model
from keras_explain.influence.index import NearestIndex, faiss_module


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
        train_features: The training set's projected gradients computed elsewhere
            (on a Ray cluster by :class:`keras_explain.ray.TracInFeatures`): a pair
            ``(features, squared_norms)`` of shapes ``(n_train, n_checkpoints,
            projection_dim)`` and ``(n_train, n_checkpoints)``, in the order of
            ``train``, computed with these checkpoints, loss, layers, projection
            and seed; None computes them here.
        index: ``"hnsw"`` answers :meth:`proponents` and :meth:`opponents` from an
            approximate nearest-neighbour index over the projected training set
            (:mod:`keras_explain.influence.index`, faiss; needs ``projection_dim``
            and learning rates ``>= 0``), built at the first such query; None
            (default) ranks the exact scores.

    Raises:
        TypeError: For a model that is not a Keras model, or bad ``train``,
            ``checkpoints`` or ``loss``.
        ValueError: For an empty training set, checkpoints of another architecture,
            an unknown layer, a bad ``projection_dim``, ``train_features`` or
            ``index``, or a ``cache_dir`` that cannot be written (at the first query:
            one written for other settings).
        ImportError: For ``index="hnsw"`` without faiss installed.

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
        train_features: Any = None,
        index: str | None = None,
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
        self._train = None if train_features is None else self._given(train_features)
        self.index = engine.checked(owner, _validate.one_of, index, "index", (None, "hnsw"))
        if self.index is not None:
            self._check_indexable()
        self._nearest: NearestIndex | None = None

    def _given(self, train_features: Any) -> list[engine.Features]:
        """``train_features`` checked, as one :class:`~engine.Features` per checkpoint."""
        count, dimension = len(self.checkpoints), self.gradients.projection_dim
        expected = (self.training.size, count, dimension)
        try:
            features, norms = train_features
            shapes = (tuple(np.shape(features)), tuple(np.shape(norms)))
        except (TypeError, ValueError):
            shapes = None
        if dimension is None or shapes != (expected, expected[:2]):
            raise ValueError(
                f"{self.owner}: train_features must be (features, squared_norms) of shapes "
                f"{expected} and {expected[:2]} (training examples, checkpoints, "
                f"projection_dim), as kx.ray.TracInFeatures computes them. Received: "
                f"{'shapes ' + str(shapes) if shapes else type(train_features).__name__}"
                f"{'' if dimension else ' with projection_dim=None; pass projection_dim'}."
            )
        return [
            engine.Features(features[:, c], squared_norms=np.asarray(norms[:, c], np.float64))
            for c in range(count)
        ]

    def _check_indexable(self) -> None:
        rates = [c.learning_rate for c in self.checkpoints]
        if self.gradients.projection_dim is None or min(rates) < 0:
            raise ValueError(
                f'{self.owner}: index="hnsw" searches the projected gradients scaled by '
                "sqrt(learning rate). Received: "
                f"projection_dim={self.gradients.projection_dim}, learning rates {rates}. "
                "Pass projection_dim (e.g. 256) and learning rates >= 0, or index=None."
            )
        faiss_module(self.owner)

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
        training = self._training_features()
        tests = self.features(x, y)
        total = np.zeros((len(tests[0]), self.training.size))
        for checkpoint, train, test in zip(self.checkpoints, training, tests):
            total += checkpoint.learning_rate * test.dot(train)
        return total

    def features(self, x: Any, y: Any) -> list[engine.Features]:
        """The per-example gradient features of ``(x, y)`` at every checkpoint.

        Args:
            x: Inputs ``(n, ...)``.
            y: Their labels.

        Returns:
            One :class:`~keras_explain.influence.engine.Features` per checkpoint
            (projected with ``projection_dim``).

        Raises:
            ValueError: As :meth:`influence`.
        """
        x, y = engine.query_pair(x, y, self.owner)
        return engine.checkpoint_features(self.gradients, self.checkpoints, x, y)

    def _embedding(self, features: list[engine.Features], start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of ``[sqrt(η_c) g_c R]_c``: TracIn scores are their dots."""
        return np.concatenate(
            [
                math.sqrt(c.learning_rate) * np.asarray(f.full[start:stop], np.float64)
                for c, f in zip(self.checkpoints, features)
            ],
            axis=1,
        )

    def _search(self, x: Any, y: Any, k: int, largest: bool) -> tuple[np.ndarray, np.ndarray]:
        k = engine.checked_k(k, self.training.size, self.owner)
        training = self._training_features()
        if self._nearest is None:
            dimension = len(self.checkpoints) * self.gradients.projection_dim
            rows = functools.partial(self._embedding, training)
            self._nearest = NearestIndex(rows, self.training.size, dimension, self.owner)
        test = self.features(x, y)
        return self._nearest.search(self._embedding(test, 0, len(test[0])), k, largest)

    def proponents(self, x: Any, y: Any = None, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` highest-scoring training examples of each test example.

        With ``index="hnsw"`` they come from the index (approximate; their scores
        exact); otherwise as :meth:`InfluenceMethod.proponents`.
        """
        if self.index is None:
            return super().proponents(x, y, k)
        return self._search(x, y, k, True)

    def opponents(self, x: Any, y: Any = None, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` lowest-scoring training examples, lowest first (as :meth:`proponents`)."""
        if self.index is None:
            return super().opponents(x, y, k)
        return self._search(x, y, k, False)

    def self_influence(self) -> np.ndarray:
        """``(n_train,)`` ``sum_c η_c ||∇L(θ_c, z)||²`` of every training example (exact)."""
        training = self._training_features()
        return sum(c.learning_rate * f.squared_norms for c, f in zip(self.checkpoints, training))
